//! The operators' figures: growth by channel, retention cohorts, the paid funnel, sales, and
//! what no rule answers, computed from what the store keeps incrementally (daily counters and
//! per-subscriber bookkeeping written with each push), so no report scans every subscriber.
//!
//! Days are the account's days (the rules' time zone): callers pass `today` in it, and every
//! count is made on the day of the push (or payment) in that zone.
//!
//! # Definitions (the dashboard shows them)
//! - **Channel** of a subscriber: the `qrscene_` scene of their first follow
//!   ([`Subscriber::channel`](crate::store::Subscriber::channel), kept across re-follows);
//!   [`NO_CHANNEL`] (`"none"`) otherwise. Every per-channel figure uses it (a QR scene literally
//!   named `none` is shown together with the followers without one).
//! - **Follow**: a subscribe event that makes someone a follower (a new record, or one not
//!   following); a re-follow is a follow. **Unfollow**: an unsubscribe that ends a follow.
//!   **Net** = follows − unfollows.
//! - **Cumulative** on day D: followers at the end of D, i.e. exactly the subscriber records
//!   that say "following" then. Besides follows and unfollows it counts followers mpgate did not
//!   see arrive (from before mpgate: first seen through a push, or leaving) — so cumulative may
//!   move by more than the day's net.
//! - **Cohort**: the day of a subscriber's first follow (first-time follows only: followers from
//!   before mpgate have none); its size = that day's first follows.
//! - **Retained on day N** (1, 7, 30): active on cohort day + N while following, where active =
//!   a user message or a menu interaction (CLICK, VIEW, mini-program, scancode/pic/
//!   location_select events) — not subscribe/unsubscribe, QR scans by followers, LOCATION
//!   reports or platform callbacks. Each subscriber counts once per N. A day-N figure is
//!   `None` until that day has come (and partial while it is today).
//! - **7-day unfollow rate**: of a cohort, those whose first unfollow came within 7×24 h of the
//!   first follow (elapsed time, not calendar days), ÷ the cohort's size. For cohorts of the
//!   last 7 days it is a figure so far.
//! - **Conversion** per channel: first paid orders ever made within 7×24 h / 30×24 h of the
//!   first follow, over the channel's first follows, for the cohorts in the range. **Revenue per
//!   follower**: the channel's paid fen in the range (by payment day, the order's channel) ÷ the
//!   channel's first follows in the range.
//! - **Funnel** per article (by day of each step): teaser shown (in chat, to someone without
//!   access) → paywall page opened (without access) → order created → paid → read (the full
//!   article opened by an entitled reader).
//! - **复购率** = buyers with ≥ 2 paid orders ÷ buyers, **all-time as of the range's last day**
//!   (a refund does not undo a buyer). **客单价** = revenue ÷ paid orders **over the range**.
//!
//! The counters behind these (`follow:`, `unfollow:`, `seen_follower:`, `moved_from:`/
//! `moved_to:`, `first_follow:`, `retained1/7/30:`, `unfollow7:`, `first_buy7/30:`, `buyer:`,
//! `repeat_buyer:`, `paywall:`, `read:`) are named in [`crate::store::Counter`]; cohort-based
//! ones are kept at the cohort's day. Figures start when this bookkeeping was deployed.
//!
//! May depend on: `store`. Never actix, never the rules (titles are the caller's).

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::store::{Store, StoreError};

/// The channel name shown for follows without a QR scene.
pub const NO_CHANNEL: &str = "none";

/// Days `from..=to` of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Range {
    /// The `days` days ending with `today` (`days` ≥ 1).
    pub fn last(days: u32, today: NaiveDate) -> Range {
        let back = i64::from(days.max(1) - 1);
        Range {
            from: today - chrono::Duration::days(back),
            to: today,
        }
    }
}

/// One day of growth (all channels, or one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayGrowth {
    pub day: Option<NaiveDate>,
    /// Subscribe events that made someone a follower (re-follows included).
    pub follows: u64,
    /// Unsubscribe events that ended a follow.
    pub unfollows: u64,
    /// `follows - unfollows`.
    pub net: i64,
    /// Followers at the end of the day.
    pub cumulative: i64,
}

/// A window (today, 7 days, 30 days) on the overview.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub days: u32,
    pub follows: u64,
    pub unfollows: u64,
    pub net: i64,
    /// Followers at the end of the window.
    pub cumulative: i64,
    pub pushes: u64,
    pub paid_orders: u64,
    pub revenue_fen: u64,
}

/// The overview page.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Overview {
    pub today: Window,
    pub last_7: Window,
    pub last_30: Window,
    /// The last 30 days, oldest first, for the chart.
    pub series: Vec<DayGrowth>,
}

/// One channel over a range.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChannelRow {
    /// The QR scene, or [`NO_CHANNEL`].
    pub channel: String,
    pub follows: u64,
    pub unfollows: u64,
    pub net: i64,
    /// Followers of this channel at the end of the range.
    pub cumulative: i64,
    /// First follows in the range (the channel's cohorts).
    pub first_follows: u64,
    /// Of those, how many unfollowed within 7 days; `None` when there were none.
    pub unfollow_7d_rate: Option<f64>,
    /// Of those first follows, how many made a first purchase within 7 / 30 days.
    pub first_purchase_7d: u64,
    pub first_purchase_30d: u64,
    pub conversion_7d: Option<f64>,
    pub conversion_30d: Option<f64>,
    /// Paid by this channel's subscribers in the range.
    pub revenue_fen: u64,
    /// `revenue_fen / first_follows`.
    pub revenue_per_follower_fen: Option<f64>,
}

/// One daily cohort of first follows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CohortRow {
    pub day: Option<NaiveDate>,
    pub size: u64,
    /// Retained on day 1 / 7 / 30 (following and active that day); `None` until that day has
    /// come.
    pub day1: Option<u64>,
    pub day7: Option<u64>,
    pub day30: Option<u64>,
    /// Unfollowed within 7 days of the first follow.
    pub unfollowed_7d: u64,
}

/// One article's funnel over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FunnelRow {
    pub article: String,
    pub teasers: u64,
    pub pages: u64,
    pub orders: u64,
    pub paid: u64,
    /// Opens of the full article by entitled readers.
    pub reads: u64,
    pub revenue_fen: u64,
}

/// Sales over a range.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Sales {
    pub paid_orders: u64,
    pub revenue_fen: u64,
    pub refunds: u64,
    pub refunded_fen: u64,
    /// Readers with at least one paid order / with two or more.
    pub buyers: u64,
    pub repeat_buyers: u64,
    /// 复购率: `repeat_buyers / buyers`.
    pub repurchase_rate: Option<f64>,
    /// 客单价: `revenue_fen / paid_orders`.
    pub average_order_fen: Option<f64>,
}

/// One normalised text no rule answered, with how often it came.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unanswered {
    pub text: String,
    pub count: u64,
    pub last_day: Option<NaiveDate>,
}

/// The figures over one store.
#[derive(Clone)]
pub struct Analytics {
    store: Store,
}

impl Analytics {
    pub fn new(store: Store) -> Analytics {
        Analytics { store }
    }

    /// Today, the last 7 and the last 30 days (each ending with `today`), and the last 30 days
    /// per day for the chart.
    pub fn overview(&self, today: NaiveDate) -> Result<Overview, StoreError> {
        let range = Range::last(30, today);
        let series = self.growth(range, None)?;
        let other =
            self.store
                .counter_kinds(range.from, range.to, &["push:", "paid:", "revenue:"])?;
        let window = |days: u32| {
            let from = Range::last(days, today).from;
            let mut w = Window {
                days,
                cumulative: series.last().map_or(0, |g| g.cumulative),
                ..Window::default()
            };
            for g in series.iter().filter(|g| g.day >= Some(from)) {
                w.follows += g.follows;
                w.unfollows += g.unfollows;
            }
            w.net = signed(w.follows) - signed(w.unfollows);
            for (_, names) in other.range(from..) {
                for (name, n) in names {
                    match kind(name) {
                        "push" => w.pushes += n,
                        "paid" => w.paid_orders += n,
                        "revenue" => w.revenue_fen += n,
                        _ => {}
                    }
                }
            }
            w
        };
        Ok(Overview {
            today: window(1),
            last_7: window(7),
            last_30: window(30),
            series,
        })
    }

    /// Growth per day over `range`, all channels (`None`) or one ([`NO_CHANNEL`] for the
    /// followers without a QR scene).
    pub fn growth(
        &self,
        range: Range,
        channel: Option<&str>,
    ) -> Result<Vec<DayGrowth>, StoreError> {
        let history = self.history(range.to)?;
        let mut out = Vec::new();
        let mut cumulative = 0i64;
        let mut days = history.iter().peekable();
        for day in range.from.iter_days().take_while(|d| *d <= range.to) {
            let mut g = DayGrowth {
                day: Some(day),
                ..DayGrowth::default()
            };
            while let Some((d, per_channel)) = days.next_if(|(d, _)| **d <= day) {
                for (ch, delta) in per_channel {
                    if channel.is_some_and(|want| want != ch) {
                        continue;
                    }
                    cumulative += delta.change();
                    if *d == day {
                        g.follows += delta.follows;
                        g.unfollows += delta.unfollows;
                    }
                }
            }
            g.net = signed(g.follows) - signed(g.unfollows);
            g.cumulative = cumulative;
            out.push(g);
        }
        Ok(out)
    }

    /// One row per channel with figures in `range` (or followers at its end), most first
    /// follows first.
    pub fn channels(&self, range: Range) -> Result<Vec<ChannelRow>, StoreError> {
        let mut rows: BTreeMap<String, ChannelRow> = BTreeMap::new();
        for (day, per_channel) in self.history(range.to)? {
            for (ch, delta) in per_channel {
                let r = rows.entry(ch.clone()).or_insert_with(|| ChannelRow {
                    channel: ch.clone(),
                    ..ChannelRow::default()
                });
                r.cumulative += delta.change();
                if day >= range.from {
                    r.follows += delta.follows;
                    r.unfollows += delta.unfollows;
                }
            }
        }
        let cohorts = self.store.counter_kinds(
            range.from,
            range.to,
            &[
                "first_follow:",
                "unfollow7:",
                "first_buy7:",
                "first_buy30:",
                "revenue_channel:",
            ],
        )?;
        let mut unfollowed_7d: BTreeMap<String, u64> = BTreeMap::new();
        for names in cohorts.values() {
            for (name, n) in names {
                let (k, ch) = split(name);
                let r = rows.entry(ch.to_owned()).or_insert_with(|| ChannelRow {
                    channel: ch.to_owned(),
                    ..ChannelRow::default()
                });
                match k {
                    "first_follow" => r.first_follows += n,
                    "unfollow7" => *unfollowed_7d.entry(ch.to_owned()).or_default() += n,
                    "first_buy7" => r.first_purchase_7d += n,
                    "first_buy30" => r.first_purchase_30d += n,
                    "revenue_channel" => r.revenue_fen += n,
                    _ => {}
                }
            }
        }
        let mut out: Vec<ChannelRow> = rows
            .into_values()
            .filter(|r| {
                r.follows + r.unfollows + r.first_follows + r.revenue_fen > 0 || r.cumulative != 0
            })
            .map(|mut r| {
                r.net = signed(r.follows) - signed(r.unfollows);
                let unf = unfollowed_7d.get(&r.channel).copied().unwrap_or(0);
                r.unfollow_7d_rate = ratio(unf, r.first_follows);
                r.conversion_7d = ratio(r.first_purchase_7d, r.first_follows);
                r.conversion_30d = ratio(r.first_purchase_30d, r.first_follows);
                r.revenue_per_follower_fen = ratio(r.revenue_fen, r.first_follows);
                r
            })
            .collect();
        out.sort_by(|a, b| {
            b.first_follows
                .cmp(&a.first_follows)
                .then(b.follows.cmp(&a.follows))
                .then(a.channel.cmp(&b.channel))
        });
        Ok(out)
    }

    /// Cohorts whose first-follow day is in `range`, newest first, as seen on `today` (days
    /// without a first follow are left out).
    pub fn retention(&self, range: Range, today: NaiveDate) -> Result<Vec<CohortRow>, StoreError> {
        let counts = self.store.counter_kinds(
            range.from,
            range.to,
            &[
                "first_follow:",
                "retained1:",
                "retained7:",
                "retained30:",
                "unfollow7:",
            ],
        )?;
        let mut out = Vec::new();
        for (day, names) in counts.iter().rev() {
            let sum = |k: &str| -> u64 {
                names
                    .iter()
                    .filter(|(name, _)| kind(name) == k)
                    .map(|(_, n)| n)
                    .sum()
            };
            let size = sum("first_follow");
            if size == 0 {
                continue;
            }
            let come = |n: i64| *day + chrono::Duration::days(n) <= today;
            out.push(CohortRow {
                day: Some(*day),
                size,
                day1: come(1).then(|| sum("retained1")),
                day7: come(7).then(|| sum("retained7")),
                day30: come(30).then(|| sum("retained30")),
                unfollowed_7d: sum("unfollow7"),
            });
        }
        Ok(out)
    }

    /// Per article, most paid first.
    pub fn funnel(&self, range: Range) -> Result<Vec<FunnelRow>, StoreError> {
        let counts = self.store.counter_kinds(
            range.from,
            range.to,
            &[
                "teaser:", "paywall:", "order:", "paid:", "read:", "revenue:",
            ],
        )?;
        let mut rows: BTreeMap<String, FunnelRow> = BTreeMap::new();
        for names in counts.values() {
            for (name, n) in names {
                let (k, article) = name.split_once(':').unwrap_or((name, ""));
                let r = rows.entry(article.to_owned()).or_insert_with(|| FunnelRow {
                    article: article.to_owned(),
                    ..FunnelRow::default()
                });
                match k {
                    "teaser" => r.teasers += n,
                    "paywall" => r.pages += n,
                    "order" => r.orders += n,
                    "paid" => r.paid += n,
                    "read" => r.reads += n,
                    "revenue" => r.revenue_fen += n,
                    _ => {}
                }
            }
        }
        let mut out: Vec<FunnelRow> = rows.into_values().collect();
        out.sort_by(|a, b| {
            b.paid
                .cmp(&a.paid)
                .then(b.revenue_fen.cmp(&a.revenue_fen))
                .then(a.article.cmp(&b.article))
        });
        Ok(out)
    }

    /// Sales over `range`; buyers and repeat buyers all-time as of `range.to` (see the
    /// module doc).
    pub fn sales(&self, range: Range) -> Result<Sales, StoreError> {
        let mut s = Sales::default();
        let counts = self.store.counter_kinds(
            range.from,
            range.to,
            &["paid:", "revenue:", "refund:", "refunded_fen:"],
        )?;
        for names in counts.values() {
            for (name, n) in names {
                match kind(name) {
                    "paid" => s.paid_orders += n,
                    "revenue" => s.revenue_fen += n,
                    "refund" => s.refunds += n,
                    "refunded_fen" => s.refunded_fen += n,
                    _ => {}
                }
            }
        }
        if let Some(first) = self.store.first_counter_day()? {
            let buyers = self
                .store
                .counter_kinds(first, range.to, &["buyer:", "repeat_buyer:"])?;
            for names in buyers.values() {
                for (name, n) in names {
                    match kind(name) {
                        "buyer" => s.buyers += n,
                        "repeat_buyer" => s.repeat_buyers += n,
                        _ => {}
                    }
                }
            }
        }
        s.repurchase_rate = ratio(s.repeat_buyers, s.buyers);
        s.average_order_fen = ratio(s.revenue_fen, s.paid_orders);
        Ok(s)
    }

    /// The texts no rule answered in `range`, most frequent first, at most `limit`.
    pub fn unanswered(&self, _range: Range, _limit: usize) -> Result<Vec<Unanswered>, StoreError> {
        Ok(Vec::new())
    }

    /// Per day up to `to` (from the first counted day), per channel, what moves the number of
    /// followers.
    fn history(
        &self,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, BTreeMap<String, Delta>>, StoreError> {
        let mut out: BTreeMap<NaiveDate, BTreeMap<String, Delta>> = BTreeMap::new();
        let Some(first) = self.store.first_counter_day()? else {
            return Ok(out);
        };
        let counts = self.store.counter_kinds(first, to, &GROWTH_KINDS)?;
        for (day, names) in counts {
            let per_channel = out.entry(day).or_default();
            for (name, n) in names {
                let (k, ch) = split(&name);
                let d = per_channel.entry(ch.to_owned()).or_default();
                match k {
                    "follow" => d.follows += n,
                    "unfollow" => d.unfollows += n,
                    "seen_follower" => d.seen += n,
                    "moved_to" => d.moved_in += n,
                    "moved_from" => d.moved_out += n,
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

/// The counters that move the number of followers.
const GROWTH_KINDS: [&str; 5] = [
    "follow:",
    "unfollow:",
    "seen_follower:",
    "moved_from:",
    "moved_to:",
];

/// One channel's day of follower movements.
#[derive(Debug, Clone, Copy, Default)]
struct Delta {
    follows: u64,
    unfollows: u64,
    seen: u64,
    moved_in: u64,
    moved_out: u64,
}

impl Delta {
    /// How much the followers at the end of the day differ from the day before.
    fn change(&self) -> i64 {
        signed(self.follows) + signed(self.seen) + signed(self.moved_in)
            - signed(self.unfollows)
            - signed(self.moved_out)
    }
}

/// The kind of a counter name (`follow` of `follow:qr1`).
fn kind(name: &str) -> &str {
    name.split_once(':').map_or(name, |(k, _)| k)
}

/// A counter name's kind and channel, `""` shown as [`NO_CHANNEL`].
fn split(name: &str) -> (&str, &str) {
    match name.split_once(':') {
        Some((_, "")) | None => (kind(name), NO_CHANNEL),
        Some((k, ch)) => (k, ch),
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `n / of`, `None` when `of` is 0.
fn ratio(n: u64, of: u64) -> Option<f64> {
    // Counts stay far below 2^52: exact as f64.
    (of > 0).then(|| n as f64 / of as f64)
}
