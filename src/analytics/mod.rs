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
//! - **Assistant** per day: questions taken (past gating, quotas and the blocklist), answers by
//!   how they reached the subscriber (passive, retry-held, customer service, pull, fallback),
//!   questions refused by reason (teaser, quota, budget, rate, blocked), and tokens as the model
//!   endpoint reported them (`assistant_question:<rule>`, `assistant_answer:<path>`,
//!   `assistant_refused:<reason>`, `assistant_tokens:`).
//!
//! The counters behind these (`follow:`, `unfollow:`, `seen_follower:`, `moved_from:`/
//! `moved_to:`, `first_follow:`, `retained1/7/30:`, `unfollow7:`, `first_buy7/30:`, `buyer:`,
//! `repeat_buyer:`, `paywall:`, `read:`) are named in [`crate::store::Counter`]; cohort-based
//! ones are kept at the cohort's day. Figures start when this bookkeeping was deployed: a data
//! dir from before counts its followers and buyers in once, as its starting point (see
//! `store::analytics`), and has no cohorts, funnel steps or follows before that day.
//!
//! # Cost
//! Nothing per push beyond a date compare (the first activity of a subscriber's day, a follow
//! or a payment count a few counters). Reports read daily counters by day and kind through the
//! store's cache of each day's report counters ([`Store::visit_counts`]), never subscriber
//! records: a 365-day report over a year at ~800 report counters a day takes ~15–75 ms in a
//! debug build once the days are cached, ~1 s for the first read of the year after a start
//! (`cargo run --example analyticsprobe`).
//!
//! May depend on: `store`. Never actix, never the rules (titles are the caller's).

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::store::{Store, StoreError, REPORT_KINDS};

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

/// One day of the assistant (or a range's totals, `day` `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssistantDay {
    pub day: Option<NaiveDate>,
    /// Questions the assistant took (past gating, quotas and the blocklist), all rules.
    pub questions: u64,
    /// Answers delivered, by path (see [`AssistantAnswers`]).
    pub answers: AssistantAnswers,
    /// Questions refused, by reason (see [`AssistantRefusals`]).
    pub refused: AssistantRefusals,
    /// Tokens the model endpoint reported.
    pub tokens: u64,
}

/// Answers by how they reached the subscriber (`assistant_answer:<path>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssistantAnswers {
    /// Within the budget, as the passive reply.
    pub passive: u64,
    /// As the passive reply to one of the platform's retries.
    pub retry_held: u64,
    /// As customer-service messages.
    pub customer_service: u64,
    /// As the reply to the subscriber's continue word.
    pub pull: u64,
    /// The rule's fallback (the model endpoint failed).
    pub fallback: u64,
}

impl AssistantAnswers {
    /// Every answer, the fallback included.
    pub fn total(&self) -> u64 {
        self.passive + self.retry_held + self.customer_service + self.pull + self.fallback
    }
}

/// Refusals by reason (`assistant_refused:<reason>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssistantRefusals {
    /// Not in the rule's audience: the teaser.
    pub teaser: u64,
    /// The subscriber's daily questions used up.
    pub quota: u64,
    /// The account's daily tokens used up.
    pub budget: u64,
    /// Too many questions in a minute.
    pub rate: u64,
    /// The question hit the blocklist.
    pub blocked: u64,
}

impl AssistantRefusals {
    pub fn total(&self) -> u64 {
        self.teaser + self.quota + self.budget + self.rate + self.blocked
    }
}

/// The assistant over a range: per day (oldest first, every day of the range), the totals,
/// and questions per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssistantReport {
    pub days: Vec<AssistantDay>,
    pub total: AssistantDay,
    /// `(rule, questions)`, most questions first.
    pub rules: Vec<(String, u64)>,
}

impl AssistantDay {
    /// Adds one counter (`kind:detail`) to this day; names it does not know change nothing.
    fn add(&mut self, name: &str, n: u64) {
        let (k, detail) = name.split_once(':').unwrap_or((name, ""));
        let a = &mut self.answers;
        let r = &mut self.refused;
        let slot = match (k, detail) {
            ("assistant_question", _) => &mut self.questions,
            ("assistant_tokens", _) => &mut self.tokens,
            ("assistant_answer", "passive") => &mut a.passive,
            ("assistant_answer", "retry_held") => &mut a.retry_held,
            ("assistant_answer", "customer_service") => &mut a.customer_service,
            ("assistant_answer", "pull") => &mut a.pull,
            ("assistant_answer", "fallback") => &mut a.fallback,
            ("assistant_refused", "teaser") => &mut r.teaser,
            ("assistant_refused", "quota") => &mut r.quota,
            ("assistant_refused", "budget") => &mut r.budget,
            ("assistant_refused", "rate") => &mut r.rate,
            ("assistant_refused", "blocked") => &mut r.blocked,
            _ => return,
        };
        *slot = slot.saturating_add(n);
    }
}

/// The assistant's daily counters (`store::Counter::Assistant*`).
const ASSISTANT_KINDS: [&str; 4] = [
    "assistant_question:",
    "assistant_answer:",
    "assistant_refused:",
    "assistant_tokens:",
];

/// The figures over one store.
#[derive(Clone)]
pub struct Analytics {
    store: Store,
}

impl Analytics {
    pub fn new(store: Store) -> Analytics {
        Analytics { store }
    }

    /// Reads every counted day up to `today` into the store's cache, so the first dashboard
    /// page after a start does not pay for it (call it off the request path, e.g. in a
    /// blocking task at start-up).
    pub fn warm(&self, today: NaiveDate) -> Result<(), StoreError> {
        if let Some(first) = self.store.first_counter_day()? {
            self.store
                .visit_counts(first, today, REPORT_KINDS, |_, _, _| {})?;
        }
        Ok(())
    }

    /// Today, the last 7 and the last 30 days (each ending with `today`), and the last 30 days
    /// per day for the chart.
    pub fn overview(&self, today: NaiveDate) -> Result<Overview, StoreError> {
        let range = Range::last(30, today);
        let series = self.growth(range, None)?;
        let mut windows = [1u32, 7, 30].map(|days| Window {
            days,
            cumulative: series.last().map_or(0, |g| g.cumulative),
            ..Window::default()
        });
        let starts = windows.clone().map(|w| Range::last(w.days, today).from);
        for g in &series {
            for (w, from) in windows.iter_mut().zip(starts) {
                if g.day >= Some(from) {
                    w.follows += g.follows;
                    w.unfollows += g.unfollows;
                }
            }
        }
        self.store.visit_counts(
            range.from,
            range.to,
            &["push:", "paid:", "revenue:"],
            |day, name, n| {
                for (w, from) in windows.iter_mut().zip(starts) {
                    if day >= from {
                        match kind(name) {
                            "push" => w.pushes += n,
                            "paid" => w.paid_orders += n,
                            "revenue" => w.revenue_fen += n,
                            _ => {}
                        }
                    }
                }
            },
        )?;
        for w in &mut windows {
            w.net = signed(w.follows) - signed(w.unfollows);
        }
        let [today, last_7, last_30] = windows;
        Ok(Overview {
            today,
            last_7,
            last_30,
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
        let mut out: Vec<DayGrowth> = range
            .from
            .iter_days()
            .take_while(|d| *d <= range.to)
            .map(|day| DayGrowth {
                day: Some(day),
                ..DayGrowth::default()
            })
            .collect();
        // Changes of the followers, per day of the range; before it, summed.
        let mut change = vec![0i64; out.len()];
        let mut before = 0i64;
        self.movements(range.to, |day, ch, m, n| {
            if channel.is_some_and(|want| want != ch) {
                return;
            }
            let Some(i) = index(range, day) else {
                before += m.change(n);
                return;
            };
            change[i] += m.change(n);
            match m {
                Move::Follow => out[i].follows += n,
                Move::Unfollow => out[i].unfollows += n,
                _ => {}
            }
        })?;
        let mut cumulative = before;
        for (g, c) in out.iter_mut().zip(change) {
            cumulative += c;
            g.net = signed(g.follows) - signed(g.unfollows);
            g.cumulative = cumulative;
        }
        Ok(out)
    }

    /// One row per channel with figures in `range` (or followers at its end), most first
    /// follows first.
    pub fn channels(&self, range: Range) -> Result<Vec<ChannelRow>, StoreError> {
        let mut rows: HashMap<String, (ChannelRow, u64)> = HashMap::new();
        fn row<'a>(
            rows: &'a mut HashMap<String, (ChannelRow, u64)>,
            ch: &str,
        ) -> &'a mut (ChannelRow, u64) {
            if !rows.contains_key(ch) {
                let r = ChannelRow {
                    channel: ch.to_owned(),
                    ..ChannelRow::default()
                };
                rows.insert(ch.to_owned(), (r, 0));
            }
            rows.get_mut(ch).expect("inserted above")
        }
        self.movements(range.to, |day, ch, m, n| {
            let (r, _) = row(&mut rows, ch);
            r.cumulative += m.change(n);
            if day >= range.from {
                match m {
                    Move::Follow => r.follows += n,
                    Move::Unfollow => r.unfollows += n,
                    _ => {}
                }
            }
        })?;
        self.store.visit_counts(
            range.from,
            range.to,
            &[
                "first_follow:",
                "unfollow7:",
                "first_buy7:",
                "first_buy30:",
                "revenue_channel:",
            ],
            |_, name, n| {
                let (k, ch) = split(name);
                let (r, unfollowed_7d) = row(&mut rows, ch);
                match k {
                    "first_follow" => r.first_follows += n,
                    "unfollow7" => *unfollowed_7d += n,
                    "first_buy7" => r.first_purchase_7d += n,
                    "first_buy30" => r.first_purchase_30d += n,
                    "revenue_channel" => r.revenue_fen += n,
                    _ => {}
                }
            },
        )?;
        let mut out: Vec<ChannelRow> = rows
            .into_values()
            .filter(|(r, _)| {
                r.follows + r.unfollows + r.first_follows + r.revenue_fen > 0 || r.cumulative != 0
            })
            .map(|(mut r, unfollowed_7d)| {
                r.net = signed(r.follows) - signed(r.unfollows);
                r.unfollow_7d_rate = ratio(unfollowed_7d, r.first_follows);
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
        // size, retained on day 1, 7, 30, unfollowed within 7 days: per day of the range.
        let mut sums = vec![[0u64; 5]; index(range, range.to).map_or(0, |i| i + 1)];
        self.store.visit_counts(
            range.from,
            range.to,
            &[
                "first_follow:",
                "retained1:",
                "retained7:",
                "retained30:",
                "unfollow7:",
            ],
            |day, name, n| {
                let Some(i) = index(range, day) else { return };
                let at = match kind(name) {
                    "first_follow" => 0,
                    "retained1" => 1,
                    "retained7" => 2,
                    "retained30" => 3,
                    _ => 4,
                };
                sums[i][at] += n;
            },
        )?;
        let come = |day: NaiveDate, n: i64| day + chrono::Duration::days(n) <= today;
        let mut rows: Vec<CohortRow> = range
            .from
            .iter_days()
            .zip(sums)
            .filter(|(_, s)| s[0] > 0)
            .map(|(day, s)| CohortRow {
                day: Some(day),
                size: s[0],
                day1: come(day, 1).then_some(s[1]),
                day7: come(day, 7).then_some(s[2]),
                day30: come(day, 30).then_some(s[3]),
                unfollowed_7d: s[4],
            })
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// Per article, most paid first.
    pub fn funnel(&self, range: Range) -> Result<Vec<FunnelRow>, StoreError> {
        let mut rows: HashMap<String, FunnelRow> = HashMap::new();
        self.store.visit_counts(
            range.from,
            range.to,
            &[
                "teaser:", "paywall:", "order:", "paid:", "read:", "revenue:",
            ],
            |_, name, n| {
                let (k, article) = name.split_once(':').unwrap_or((name, ""));
                if !rows.contains_key(article) {
                    let r = FunnelRow {
                        article: article.to_owned(),
                        ..FunnelRow::default()
                    };
                    rows.insert(article.to_owned(), r);
                }
                let Some(r) = rows.get_mut(article) else {
                    return;
                };
                match k {
                    "teaser" => r.teasers += n,
                    "paywall" => r.pages += n,
                    "order" => r.orders += n,
                    "paid" => r.paid += n,
                    "read" => r.reads += n,
                    "revenue" => r.revenue_fen += n,
                    _ => {}
                }
            },
        )?;
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
        self.store.visit_counts(
            range.from,
            range.to,
            &["paid:", "revenue:", "refund:", "refunded_fen:"],
            |_, name, n| match kind(name) {
                "paid" => s.paid_orders += n,
                "revenue" => s.revenue_fen += n,
                "refund" => s.refunds += n,
                "refunded_fen" => s.refunded_fen += n,
                _ => {}
            },
        )?;
        if let Some(first) = self.store.first_counter_day()? {
            self.store.visit_counts(
                first,
                range.to,
                &["buyer:", "repeat_buyer:"],
                |_, name, n| match kind(name) {
                    "buyer" => s.buyers += n,
                    "repeat_buyer" => s.repeat_buyers += n,
                    _ => {}
                },
            )?;
        }
        s.repurchase_rate = ratio(s.repeat_buyers, s.buyers);
        s.average_order_fen = ratio(s.revenue_fen, s.paid_orders);
        Ok(s)
    }

    /// The assistant per day over `range`: questions, answers by path, refusals by reason,
    /// tokens; the totals; questions per rule. Read from the day counters only.
    pub fn assistant(&self, range: Range) -> Result<AssistantReport, StoreError> {
        let mut days: Vec<AssistantDay> = range
            .from
            .iter_days()
            .take_while(|d| *d <= range.to)
            .map(|day| AssistantDay {
                day: Some(day),
                ..AssistantDay::default()
            })
            .collect();
        let mut total = AssistantDay::default();
        let mut rules: HashMap<String, u64> = HashMap::new();
        self.store
            .visit_counts(range.from, range.to, &ASSISTANT_KINDS, |day, name, n| {
                let Some(i) = index(range, day) else { return };
                days[i].add(name, n);
                total.add(name, n);
                if let Some(rule) = name.strip_prefix("assistant_question:") {
                    let slot = rules.entry(rule.to_owned()).or_insert(0);
                    *slot = slot.saturating_add(n);
                }
            })?;
        let mut rules: Vec<(String, u64)> = rules.into_iter().collect();
        rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(AssistantReport { days, total, rules })
    }

    /// The texts no rule answered in `range`, most frequent first, at most `limit`.
    pub fn unanswered(&self, range: Range, limit: usize) -> Result<Vec<Unanswered>, StoreError> {
        Ok(self
            .store
            .unanswered_top(range.from, range.to, limit)?
            .into_iter()
            .map(|(text, count, last)| Unanswered {
                text,
                count,
                last_day: Some(last),
            })
            .collect())
    }

    /// Every movement of the followers from the first counted day to `to`: `f(day, channel,
    /// what, how many)`, the channel as shown ([`NO_CHANNEL`] for none).
    fn movements(
        &self,
        to: NaiveDate,
        mut f: impl FnMut(NaiveDate, &str, Move, u64),
    ) -> Result<(), StoreError> {
        let Some(first) = self.store.first_counter_day()? else {
            return Ok(());
        };
        self.store
            .visit_counts(first, to, &GROWTH_KINDS, |day, name, n| {
                let (k, ch) = split(name);
                let m = match k {
                    "follow" => Move::Follow,
                    "unfollow" => Move::Unfollow,
                    "seen_follower" => Move::Seen,
                    "moved_to" => Move::In,
                    "moved_from" => Move::Out,
                    _ => return,
                };
                f(day, ch, m, n);
            })
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

/// What moves the number of a channel's followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Follow,
    Unfollow,
    /// A follower mpgate did not see arrive.
    Seen,
    /// A counted follower took this channel / left it for another.
    In,
    Out,
}

impl Move {
    /// The change of the followers `n` such movements make.
    fn change(self, n: u64) -> i64 {
        match self {
            Move::Follow | Move::Seen | Move::In => signed(n),
            Move::Unfollow | Move::Out => -signed(n),
        }
    }
}

/// The position of `day` in `range`.
fn index(range: Range, day: NaiveDate) -> Option<usize> {
    if day < range.from || day > range.to {
        return None;
    }
    usize::try_from((day - range.from).num_days()).ok()
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

#[cfg(test)]
mod tests {
    //! The definitions' edges, through the store's bookkeeping calls (the pipeline's own
    //! classification of pushes is tested in `pipeline::state`; whole histories in
    //! `tests/analytics.rs`).

    use super::*;
    use crate::store::{Order, OrderState, StoreConfig, Touch};
    use crate::wechat::types::OpenId;

    /// Noon UTC of 1 March 2026 + `d` days, and that day (the tests count in UTC).
    const T0: i64 = 1_772_366_400;
    const D: i64 = 24 * 3600;

    fn day(d: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 1).expect("date") + chrono::Duration::days(d)
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
        (dir, store)
    }

    fn u(s: &str) -> OpenId {
        OpenId::new(s)
    }

    fn all(a: &Analytics, from: i64, to: i64) -> Range {
        let _ = a;
        Range {
            from: day(from),
            to: day(to),
        }
    }

    fn message(store: &Store, who: &str, at: i64) {
        store
            .touch_on(
                &u(who),
                Touch {
                    at,
                    day: day((at - T0).div_euclid(D)),
                    user_message: true,
                    active: true,
                },
            )
            .expect("touch");
    }

    fn subscribe(store: &Store, who: &str, scene: Option<&str>, at: i64) {
        store
            .subscribe_on(&u(who), scene, at, day((at - T0).div_euclid(D)))
            .expect("subscribe");
    }

    fn unsubscribe(store: &Store, who: &str, at: i64) {
        store
            .unsubscribe_on(&u(who), at, day((at - T0).div_euclid(D)))
            .expect("unsubscribe");
    }

    fn channel<'a>(rows: &'a [ChannelRow], name: &str) -> &'a ChannelRow {
        rows.iter()
            .find(|r| r.channel == name)
            .unwrap_or_else(|| panic!("no row for {name} in {rows:?}"))
    }

    #[test]
    fn a_return_is_a_follow_of_the_first_channel_but_not_a_second_cohort_member() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        subscribe(&store, "oA", Some("qr1"), T0);
        unsubscribe(&store, "oA", T0 + 60);
        subscribe(&store, "oA", Some("qr2"), T0 + D);
        let g = a.growth(all(&a, 0, 1), None).expect("growth");
        assert_eq!(
            (g[0].follows, g[0].unfollows, g[0].net, g[0].cumulative),
            (1, 1, 0, 0)
        );
        assert_eq!((g[1].follows, g[1].cumulative), (1, 1));
        let rows = a.channels(all(&a, 0, 1)).expect("channels");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let qr1 = channel(&rows, "qr1");
        assert_eq!((qr1.follows, qr1.first_follows, qr1.cumulative), (2, 1, 1));
        let cohorts = a.retention(all(&a, 0, 1), day(1)).expect("retention");
        assert_eq!(cohorts.len(), 1);
        assert_eq!((cohorts[0].size, cohorts[0].unfollowed_7d), (1, 1));
    }

    #[test]
    fn a_second_subscribe_while_following_is_no_follow() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        subscribe(&store, "oA", None, T0);
        subscribe(&store, "oA", None, T0 + 5);
        let g = a.growth(all(&a, 0, 0), Some(NO_CHANNEL)).expect("growth");
        assert_eq!((g[0].follows, g[0].cumulative), (1, 1));
    }

    #[test]
    fn followers_from_before_mpgate_count_in_the_cumulative_but_are_no_follows() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        // One writes, one leaves: mpgate never saw either arrive.
        message(&store, "oOld", T0);
        unsubscribe(&store, "oLeaver", T0 + 10);
        let g = a.growth(all(&a, 0, 0), None).expect("growth");
        assert_eq!(
            (g[0].follows, g[0].unfollows, g[0].net, g[0].cumulative),
            (0, 1, -1, 1),
            "followers at the end of the day are the records that say following"
        );
        // Their later subscribe is a follow, but not a first one: no cohort.
        unsubscribe(&store, "oOld", T0 + D);
        subscribe(&store, "oOld", Some("qr1"), T0 + D + 5);
        let rows = a.channels(all(&a, 0, 1)).expect("channels");
        let none = channel(&rows, NO_CHANNEL);
        assert_eq!(
            (none.follows, none.first_follows, none.cumulative),
            (1, 0, 1)
        );
        assert!(a.retention(all(&a, 0, 1), day(1)).expect("r").is_empty());
    }

    #[test]
    fn a_counted_follower_who_follows_through_a_qr_code_moves_to_its_channel() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        // A location report only (no message): a follower of no channel yet...
        store
            .touch_on(
                &u("oQuiet"),
                Touch {
                    at: T0,
                    day: day(0),
                    user_message: false,
                    active: false,
                },
            )
            .expect("touch");
        // ...whose first-time subscribe gives them a channel without a second follow.
        subscribe(&store, "oQuiet", Some("qr9"), T0 + 60);
        let rows = a.channels(all(&a, 0, 0)).expect("channels");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let qr9 = channel(&rows, "qr9");
        assert_eq!((qr9.follows, qr9.cumulative, qr9.first_follows), (0, 1, 0));
        assert_eq!(a.growth(all(&a, 0, 0), None).expect("g")[0].cumulative, 1);
    }

    #[test]
    fn unfollowing_counts_within_seven_times_24_hours_and_not_at_it() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        subscribe(&store, "oIn", Some("qr1"), T0);
        subscribe(&store, "oOut", Some("qr1"), T0);
        unsubscribe(&store, "oIn", T0 + 7 * D - 1);
        unsubscribe(&store, "oOut", T0 + 7 * D);
        // A second unfollow within the week counts the person once.
        subscribe(&store, "oIn", None, T0 + 7 * D);
        let cohort = a.retention(all(&a, 0, 7), day(7)).expect("retention");
        assert_eq!((cohort[0].size, cohort[0].unfollowed_7d), (2, 1));
        let qr1 = a.channels(all(&a, 0, 7)).expect("channels");
        assert_eq!(channel(&qr1, "qr1").unfollow_7d_rate, Some(0.5));
    }

    #[test]
    fn retention_counts_each_member_once_on_day_n_while_following() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        for who in ["oA", "oB", "oC"] {
            subscribe(&store, who, None, T0);
        }
        // oA twice on day 1, oB on day 2 only, oC on day 1 after leaving (a late push).
        message(&store, "oA", T0 + D);
        message(&store, "oA", T0 + D + 60);
        message(&store, "oB", T0 + 2 * D);
        unsubscribe(&store, "oC", T0 + D - 60);
        message(&store, "oC", T0 + D);
        let on = |today: i64| a.retention(all(&a, 0, 0), day(today)).expect("r")[0].clone();
        assert_eq!(on(0).day1, None, "day 1 has not come");
        let row = on(1);
        assert_eq!(
            (row.size, row.day1, row.day7, row.day30),
            (3, Some(1), None, None)
        );
        message(&store, "oB", T0 + 7 * D);
        message(&store, "oB", T0 + 30 * D);
        let row = on(30);
        assert_eq!((row.day1, row.day7, row.day30), (Some(1), Some(1), Some(1)));
    }

    fn order(store: &Store, no: &str, who: &str, fen: u64, at: i64) {
        let o = Order {
            out_trade_no: no.into(),
            openid: who.into(),
            article: "art".into(),
            description: "art".into(),
            amount_fen: fen,
            channel: store
                .subscriber(&u(who))
                .expect("read")
                .and_then(|s| s.channel)
                .unwrap_or_default(),
            state: OrderState::Created,
            created_at: at,
            expires_at: at + 3600,
            prepay_id: None,
            transaction_id: None,
            paid_at: None,
            refunded_at: None,
            closed_at: None,
            refunds: Vec::new(),
            anomaly: None,
            updated_at: at,
        };
        let d = day((at - T0).div_euclid(D));
        store.order_create(&o, d).expect("order");
        store.order_paid(no, "tx", at, d).expect("paid");
    }

    #[test]
    fn a_first_purchase_converts_within_7_and_30_times_24_hours_and_buyers_are_all_time() {
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        subscribe(&store, "oWeek", Some("qr1"), T0);
        subscribe(&store, "oMonth", Some("qr1"), T0);
        subscribe(&store, "oLate", Some("qr1"), T0);
        order(&store, "NO-week-1", "oWeek", 900, T0 + 7 * D - 1);
        order(&store, "NO-month1", "oMonth", 1900, T0 + 7 * D);
        order(&store, "NO-late-01", "oLate", 100, T0 + 30 * D);
        // A second purchase is no first one (and makes a repeat buyer).
        order(&store, "NO-week-2", "oWeek", 900, T0 + 8 * D);
        let rows = a.channels(all(&a, 0, 30)).expect("channels");
        let qr1 = channel(&rows, "qr1");
        assert_eq!(
            (
                qr1.first_follows,
                qr1.first_purchase_7d,
                qr1.first_purchase_30d
            ),
            (3, 1, 2)
        );
        assert_eq!(qr1.revenue_fen, 3800);
        assert_eq!(qr1.revenue_per_follower_fen, Some(3800.0 / 3.0));
        // (The test's days start at noon: the first order is on day 6.) 客单价 over days 7–8;
        // 复购率 all-time as of day 8: two buyers, one of them twice.
        let s = a.sales(all(&a, 7, 8)).expect("sales");
        assert_eq!((s.paid_orders, s.revenue_fen), (2, 2800));
        assert_eq!(s.average_order_fen, Some(1400.0));
        assert_eq!((s.buyers, s.repeat_buyers), (2, 1));
        assert_eq!(s.repurchase_rate, Some(0.5));
        let buyers_by = |d: i64| a.sales(all(&a, 0, d)).expect("sales").buyers;
        assert_eq!((buyers_by(5), buyers_by(6), buyers_by(30)), (0, 1, 3));
    }

    #[test]
    fn the_assistant_report_sums_its_day_counters_by_day_path_reason_and_rule() {
        use crate::store::Counter;
        let (_d, store) = store();
        let a = Analytics::new(store.clone());
        let q = |rule: &str| Counter::AssistantQuestion { rule: rule.into() };
        let ans = |path: &str| Counter::AssistantAnswer { path: path.into() };
        let no = |reason: &str| Counter::AssistantRefused {
            reason: reason.into(),
        };
        // Day 0 flushed to the tree, day 1 still in memory, day 3 outside the range.
        store.count(q("course"), day(0), 3);
        store.count(q("faq"), day(0), 1);
        store.count(ans("passive"), day(0), 2);
        store.count(ans("customer_service"), day(0), 1);
        store.count(no("quota"), day(0), 4);
        store.count(Counter::AssistantTokens, day(0), 700);
        store.flush_counters().expect("flush");
        store.count(q("course"), day(1), 2);
        store.count(ans("retry_held"), day(1), 1);
        store.count(ans("pull"), day(1), 1);
        store.count(ans("fallback"), day(1), 1);
        store.count(no("teaser"), day(1), 1);
        store.count(no("blocked"), day(1), 1);
        store.count(Counter::AssistantTokens, day(1), 55);
        // A question on day 1 counted again in the same flush period adds up.
        store.count(q("course"), day(1), 1);
        store.count(q("course"), day(3), 100);
        // Other counters are not the assistant's.
        store.count(
            Counter::RuleHit {
                rule: "course".into(),
            },
            day(0),
            9,
        );
        let r = a.assistant(all(&a, 0, 2)).expect("assistant");
        assert_eq!(r.days.len(), 3);
        let d0 = &r.days[0];
        assert_eq!(d0.day, Some(day(0)));
        assert_eq!((d0.questions, d0.tokens), (4, 700));
        assert_eq!(
            d0.answers,
            AssistantAnswers {
                passive: 2,
                customer_service: 1,
                ..AssistantAnswers::default()
            }
        );
        assert_eq!(d0.refused.quota, 4);
        let d1 = &r.days[1];
        assert_eq!((d1.questions, d1.tokens), (3, 55));
        assert_eq!(
            (d1.answers.retry_held, d1.answers.pull, d1.answers.fallback),
            (1, 1, 1)
        );
        assert_eq!((d1.refused.teaser, d1.refused.blocked), (1, 1));
        assert_eq!(
            r.days[2],
            AssistantDay {
                day: Some(day(2)),
                ..AssistantDay::default()
            }
        );
        assert_eq!(r.total.day, None);
        assert_eq!((r.total.questions, r.total.tokens), (7, 755));
        assert_eq!((r.total.answers.total(), r.total.refused.total()), (6, 6));
        assert_eq!(
            r.rules,
            vec![("course".to_string(), 6), ("faq".to_string(), 1)]
        );
    }

    #[test]
    fn empty_store_gives_empty_reports_not_errors() {
        let (_d, store) = store();
        let a = Analytics::new(store);
        let o = a.overview(day(0)).expect("overview");
        assert_eq!(o.series.len(), 30);
        assert_eq!(
            o.last_30,
            Window {
                days: 30,
                ..Window::default()
            }
        );
        assert!(a.channels(all(&a, 0, 0)).expect("c").is_empty());
        assert!(a.funnel(all(&a, 0, 0)).expect("f").is_empty());
        assert_eq!(a.sales(all(&a, 0, 0)).expect("s").repurchase_rate, None);
    }
}
