//! What the analytics read (`crate::analytics`), and the one piece of their bookkeeping that is
//! not a subscriber change: the `buyers` tree (openid → paid orders ever, u64 BE), updated in a
//! payment's own transaction so a reader's first and second purchases are counted exactly once
//! (`buyer:`, `repeat_buyer:`, and `first_buy7:`/`first_buy30:` at the cohort day).
//!
//! Reads go by day and counter kind (`YYYY-MM-DD\0kind:` prefixes), so a report over a year
//! reads the few counters it needs, never every counter of every day, nor any subscriber.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sled::transaction::TransactionalTree;

use super::counters::{add_in, day_prefix, decode_count, parse_tree_key, Counter};
use super::subscribers::{MONTH_SECS, WEEK_SECS};
use super::{Store, StoreError, TxResult};
use crate::sync::lock;

/// Per day, per counter name (`kind:detail`), the sums.
pub type DayCounts = BTreeMap<NaiveDate, BTreeMap<String, u64>>;

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
    /// `kinds` (each `"kind:"`, e.g. `"follow:"`), including counts not yet flushed. One
    /// prefix read per day and kind.
    pub fn counter_kinds(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kinds: &[&str],
    ) -> Result<DayCounts, StoreError> {
        let _gate = lock(&self.inner.counters_gate);
        let mut out = DayCounts::new();
        if from > to {
            return Ok(out);
        }
        let db = self.db()?;
        for day in from.iter_days().take_while(|d| *d <= to) {
            let mut prefix = day_prefix(day);
            prefix.push(0);
            let base = prefix.len();
            for kind in kinds {
                prefix.truncate(base);
                prefix.extend_from_slice(kind.as_bytes());
                for kv in db.counters.scan_prefix(&prefix) {
                    let (k, v) = kv?;
                    let (day, name) = parse_tree_key(&k)?;
                    *out.entry(day).or_default().entry(name).or_insert(0) += decode_count(&v)?;
                }
            }
        }
        let unconfirmed = self.unconfirmed_counts();
        let pending = lock(&self.inner.pending_counts);
        for ((day, counter), n) in pending
            .iter()
            .chain(unconfirmed.iter().map(|(k, n)| (k, n)))
        {
            if !(from..=to).contains(day) {
                continue;
            }
            let name = counter.name();
            if kinds.iter().any(|k| name.starts_with(k)) {
                let slot = out.entry(*day).or_default().entry(name).or_insert(0);
                *slot = slot.saturating_add(*n);
            }
        }
        Ok(out)
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
