//! What the analytics read (`crate::analytics`), and the one piece of their bookkeeping that is
//! not a subscriber change: the `buyers` tree (openid → paid orders ever, u64 BE), updated in a
//! payment's own transaction so a reader's first and second purchases are counted exactly once
//! (`buyer:`, `repeat_buyer:`, and `first_buy7:`/`first_buy30:` at the cohort day).
//!
//! Reads go by day and counter kind (`YYYY-MM-DD\0kind:` prefixes), so a report over a year
//! reads the few counters it needs, never every counter of every day, nor any subscriber.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use sled::transaction::TransactionalTree;

use super::counters::{add_in, day_prefix, decode_count, parse_tree_key, Counter};
use super::subscribers::{MONTH_SECS, WEEK_SECS};
use super::{Backend, Store, StoreError, TxResult};
use crate::sync::lock;

/// Per day, per counter name (`kind:detail`), the sums.
pub type DayCounts = BTreeMap<NaiveDate, BTreeMap<String, u64>>;

/// The counter kinds the reports read (and the cache keeps).
pub const REPORT_KINDS: &[&str] = &[
    "follow:",
    "unfollow:",
    "seen_follower:",
    "moved_from:",
    "moved_to:",
    "first_follow:",
    "retained1:",
    "retained7:",
    "retained30:",
    "unfollow7:",
    "first_buy7:",
    "first_buy30:",
    "buyer:",
    "repeat_buyer:",
    "push:",
    "teaser:",
    "paywall:",
    "order:",
    "paid:",
    "read:",
    "revenue:",
    "refund:",
    "refunded_fen:",
    "revenue_channel:",
    "assistant_question:",
    "assistant_answer:",
    "assistant_refused:",
    "assistant_tokens:",
];

/// One day's counters of [`REPORT_KINDS`] as the tree holds them.
type Day = Arc<[(Arc<str>, u64)]>;

/// The reports' share of each day's counters in the tree, read once and kept: a year of
/// dashboard reads the tree only for days whose counters changed since (today, mostly; cohort
/// days a month back when a member comes back or buys), so a page does not pay a prefix scan
/// per day and kind. Names are shared (a few hundred distinct ones), so a year at a busy
/// account's cardinality (~800 report counters a day) holds ~7 MB.
///
/// Correct without any hook on the push path: counts not yet merged are read from memory on
/// every report (they are not cached), and everything that merges into the tree says which
/// days it changed ([`Store::counters_changed`]: the write-behind period, under the counters
/// gate readers also hold; the order transactions, after they commit). A day read while an
/// order's transaction commits is not kept (the change epoch), so it cannot go stale.
#[derive(Default)]
pub(super) struct CountsCache {
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Bumped by every change.
    epoch: u64,
    /// The epoch of each day's last change.
    changed: HashMap<NaiveDate, u64>,
    days: HashMap<NaiveDate, Day>,
    names: HashSet<Arc<str>>,
}

impl CountsCache {
    fn day(
        &self,
        day: NaiveDate,
        read: impl FnOnce() -> Result<Vec<(sled::IVec, u64)>, StoreError>,
    ) -> Result<Day, StoreError> {
        let started = {
            let st = lock(&self.state);
            if let Some(d) = st.days.get(&day) {
                return Ok(d.clone());
            }
            st.epoch
        };
        let fresh = read()?;
        let mut st = lock(&self.state);
        let entries: Day = fresh
            .iter()
            .map(|(key, n)| (st.intern(name_of(key)), *n))
            .collect();
        if st.changed.get(&day).is_none_or(|e| *e <= started) {
            st.days.insert(day, entries.clone());
        }
        Ok(entries)
    }

    /// Forgets every day (the backend was reopened).
    pub(super) fn clear(&self) {
        let mut st = lock(&self.state);
        st.epoch += 1;
        let epoch = st.epoch;
        let days: Vec<NaiveDate> = st.days.keys().copied().collect();
        for day in days {
            st.changed.insert(day, epoch);
        }
        st.days.clear();
    }

    fn changed(&self, days: impl IntoIterator<Item = NaiveDate>) {
        let mut st = lock(&self.state);
        st.epoch += 1;
        let epoch = st.epoch;
        for day in days {
            st.changed.insert(day, epoch);
            st.days.remove(&day);
        }
    }
}

impl CacheState {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }
}

/// A day's counters of [`REPORT_KINDS`] in the tree: one range read of the day. Keys are
/// checked in place (a year is ~370,000 of them at a busy account's cardinality): only the
/// report kinds are kept, and their names are copied once, when interned.
fn read_day(db: &Backend, day: NaiveDate) -> Result<Vec<(sled::IVec, u64)>, StoreError> {
    let mut start = day_prefix(day);
    start.push(0);
    let mut end = day_prefix(day);
    end.push(1);
    let prefix = start.len();
    let mut out = Vec::new();
    for kv in db.counters.range(start..end) {
        let (k, v) = kv?;
        let name = k
            .get(prefix..)
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| StoreError::Corrupt("malformed key in tree counters".into()))?;
        if REPORT_KINDS.iter().any(|kind| name.starts_with(kind)) {
            out.push((k, decode_count(&v)?));
        }
    }
    Ok(out)
}

/// The name part of a key `read_day` kept (checked there).
fn name_of(key: &[u8]) -> &str {
    key.get(DAY_KEY_PREFIX..)
        .and_then(|n| std::str::from_utf8(n).ok())
        .unwrap_or_default()
}

/// `YYYY-MM-DD\0`.
const DAY_KEY_PREFIX: usize = 11;

/// What a payment's transaction needs to know about its reader, read before it (none of it
/// changes once set).
#[derive(Debug, Clone, Default)]
pub(super) struct BuyerInfo {
    pub channel: String,
    pub cohort: Option<NaiveDate>,
    pub first_follow_at: Option<i64>,
}

/// Counts a paid order of `openid` in `buyers` and, for the reader's first and second paid
/// orders ever, the buyer counters (inside the payment's transaction).
pub(super) fn count_purchase_in(
    buyers: &TransactionalTree,
    counters: &TransactionalTree,
    openid: &str,
    who: &BuyerInfo,
    paid_at: i64,
    day: NaiveDate,
) -> TxResult<()> {
    let before = buyers
        .get(openid.as_bytes())?
        .and_then(|v| decode_count(v.as_ref()).ok())
        .unwrap_or(0);
    let now = before.saturating_add(1);
    buyers.insert(openid.as_bytes(), &now.to_be_bytes())?;
    let channel = || who.channel.clone();
    match now {
        1 => {
            add_in(counters, day, &Counter::Buyer { channel: channel() }, 1)?;
            if let (Some(cohort), Some(first)) = (who.cohort, who.first_follow_at) {
                let after = paid_at - first;
                if (0..WEEK_SECS).contains(&after) {
                    add_in(
                        counters,
                        cohort,
                        &Counter::FirstBuy7 { channel: channel() },
                        1,
                    )?;
                }
                if (0..MONTH_SECS).contains(&after) {
                    add_in(
                        counters,
                        cohort,
                        &Counter::FirstBuy30 { channel: channel() },
                        1,
                    )?;
                }
            }
        }
        2 => add_in(
            counters,
            day,
            &Counter::RepeatBuyer { channel: channel() },
            1,
        )?,
        _ => {}
    }
    Ok(())
}

impl Store {
    /// Counts per day and name for `from..=to` of the counters whose names start with one of
    /// `kinds` (each `"kind:"`, e.g. `"follow:"`, one of [`REPORT_KINDS`]), including counts
    /// not yet flushed.
    pub fn counter_kinds(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kinds: &[&str],
    ) -> Result<DayCounts, StoreError> {
        let mut out = DayCounts::new();
        self.visit_counts(from, to, kinds, |day, name, n| {
            let slot = out
                .entry(day)
                .or_default()
                .entry(name.to_owned())
                .or_insert(0);
            *slot = slot.saturating_add(n);
        })?;
        Ok(out)
    }

    /// Calls `f(day, name, n)` for the counters of `from..=to` whose names start with one of
    /// `kinds` (each one of [`REPORT_KINDS`]): first what the tree holds (a day's share read
    /// once and kept, see `CountsCache`), then the counts not yet flushed (so a day and name
    /// may come twice: callers add).
    pub fn visit_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kinds: &[&str],
        mut f: impl FnMut(NaiveDate, &str, u64),
    ) -> Result<(), StoreError> {
        debug_assert!(kinds.iter().all(|k| REPORT_KINDS.contains(k)), "{kinds:?}");
        let _gate = lock(&self.inner.counters_gate);
        if from > to {
            return Ok(());
        }
        let db = self.db()?;
        let wanted = |name: &str| kinds.iter().any(|k| name.starts_with(k));
        for day in from.iter_days().take_while(|d| *d <= to) {
            let entries = self.inner.counts_cache.day(day, || read_day(&db, day))?;
            for (name, n) in entries.iter() {
                if wanted(name) {
                    f(day, name, *n);
                }
            }
        }
        let unconfirmed = self.unconfirmed_counts();
        let pending = lock(&self.inner.pending_counts);
        for ((day, counter), n) in pending
            .iter()
            .chain(unconfirmed.iter().map(|(k, n)| (k, n)))
        {
            if (from..=to).contains(day) {
                let name = counter.name();
                if wanted(&name) {
                    f(*day, &name, *n);
                }
            }
        }
        Ok(())
    }

    /// Tells the reports' cache that the tree's counters of `days` changed (a period's merge,
    /// an order's transaction).
    pub(super) fn counters_changed(&self, days: impl IntoIterator<Item = NaiveDate>) {
        self.inner.counts_cache.changed(days);
    }

    /// The first day any counter was counted on (`None` for a store that never counted).
    pub fn first_counter_day(&self) -> Result<Option<NaiveDate>, StoreError> {
        let _gate = lock(&self.inner.counters_gate);
        let on_disk = match self.db()?.counters.first()? {
            Some((k, _)) => Some(parse_tree_key(&k)?.0),
            None => None,
        };
        let unconfirmed = self.unconfirmed_counts();
        let pending = lock(&self.inner.pending_counts);
        let in_memory = pending
            .keys()
            .chain(unconfirmed.iter().map(|(k, _)| k))
            .map(|(day, _)| *day)
            .min();
        Ok(on_disk.into_iter().chain(in_memory).min())
    }

    /// Paid orders ever of `openid` (as the `buyers` tree counts them).
    pub fn paid_orders_of(&self, openid: &str) -> Result<u64, StoreError> {
        self.db()?
            .buyers
            .get(openid.as_bytes())?
            .map_or(Ok(0), |v| decode_count(&v))
    }
}

/// `meta` key set once the analytics' starting point is recorded.
const META_BASELINE: &[u8] = b"analytics_baseline";

/// A data dir from before the analytics holds followers and paid orders no analytics counter
/// knows: once, at the first open by this version, its followers are counted as followers
/// mpgate did not see arrive (`seen_follower:<channel>`, on the day of its last counter, so the
/// cumulative is right from then on) and its readers' paid orders go into `buyers` and the
/// `buyer:`/`repeat_buyer:` counters of that day (so their next purchase is not taken for a
/// first one, and 复购率 counts them). One transaction with the `meta` mark; a fresh
/// dir only gets the mark. Reads every subscriber record once (seconds at 1,000,000).
pub(super) fn baseline(db: &Backend) -> Result<(), StoreError> {
    if db.meta.get(META_BASELINE)?.is_some() {
        return Ok(());
    }
    // An undecodable record is skipped here (the figures are off by it; the store reports it
    // where it is used) rather than refusing to open the data dir.
    let mut followers: BTreeMap<String, u64> = BTreeMap::new();
    for v in db.subscribers.iter().values() {
        let Ok(s) = super::decode_json::<super::Subscriber>("subscribers", &v?) else {
            continue;
        };
        if s.subscribed {
            *followers.entry(s.channel.unwrap_or_default()).or_default() += 1;
        }
    }
    // Per reader: paid orders, and the channel of the first one.
    let mut paid: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for v in db.orders.iter().values() {
        let Ok(o) = super::decode_json::<super::Order>("orders", &v?) else {
            continue;
        };
        if o.paid_at.is_some()
            && matches!(
                o.state,
                super::OrderState::Paid | super::OrderState::Refunded
            )
        {
            paid.entry(o.openid).or_insert((0, o.channel)).0 += 1;
        }
    }
    let day = match db.counters.last()? {
        Some((k, _)) => parse_tree_key(&k)?.0,
        None => chrono::Utc::now().date_naive(),
    };
    use sled::Transactional;
    (&db.meta, &db.counters, &db.buyers).transaction(|(meta, counters, buyers)| {
        for (channel, n) in &followers {
            let c = Counter::SeenFollower {
                channel: channel.clone(),
            };
            add_in(counters, day, &c, *n)?;
        }
        for (openid, (n, channel)) in &paid {
            buyers.insert(openid.as_bytes(), &n.to_be_bytes())?;
            let buyer = Counter::Buyer {
                channel: channel.clone(),
            };
            add_in(counters, day, &buyer, 1)?;
            if *n >= 2 {
                let repeat = Counter::RepeatBuyer {
                    channel: channel.clone(),
                };
                add_in(counters, day, &repeat, 1)?;
            }
        }
        meta.insert(META_BASELINE, &[1u8] as &[u8])?;
        Ok(())
    })?;
    if !followers.is_empty() || !paid.is_empty() {
        tracing::info!(
            followers = followers.values().sum::<u64>(),
            buyers = paid.len(),
            %day,
            "analytics: the followers and buyers of this data dir counted in as their starting point"
        );
    }
    db.db.flush()?;
    Ok(())
}
