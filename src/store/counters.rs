//! Daily counters: counted in memory on the hot path, merged into the `counters` tree
//! (`YYYY-MM-DD\0name` → u64 BE) by [`Store::flush_counters`].
//!
//! The payment counters (`order:`, `paid:`, `revenue:`, …) skip the memory: they are added to
//! the tree inside the order's own transaction ([`add_in`]), so a crash never loses a
//! payment's count nor counts one twice. Reads merge both the same way.

use crate::sync::lock;
use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::{Store, StoreError};

/// Counts not yet merged into the tree, keyed by the counter itself: naming it (a `format!`)
/// waits for the flush instead of costing every push.
pub(super) type Pending = HashMap<(NaiveDate, Counter), u64, foldhash::fast::RandomState>;

/// Length of `YYYY-MM-DD`.
const DAY_LEN: usize = 10;

/// Something worth counting per day. [`Counter::name`] is its stable name in the tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A subscribe; `channel` is the QR scene, `""` for a direct follow.
    Subscribe {
        channel: String,
    },
    /// An unsubscribe, by the follower's original channel (`""` = direct or unknown).
    Unsubscribe {
        channel: String,
    },
    RuleHit {
        rule: String,
    },
    TeaserShown {
        article: String,
    },
    LinkIssued {
        article: String,
    },
    PageOpened {
        article: String,
    },
    Push {
        msg_type: String,
    },
    /// An order created (the payment platform not asked yet).
    OrderCreated {
        article: String,
    },
    /// An order paid: counted with its grant, in the order's transaction.
    OrderPaid {
        article: String,
    },
    /// Fen paid for `article` (added by the order's amount).
    Revenue {
        article: String,
    },
    /// An order fully refunded (and its grant revoked).
    OrderRefunded {
        article: String,
    },
    /// Fen refunded for `article` (added by the refund's amount).
    RefundedFen {
        article: String,
    },
    /// An order created by a subscriber of this channel (QR scene; `""` = direct or unknown).
    OrderByChannel {
        channel: String,
    },
    /// An order paid by a subscriber of this channel.
    PaidByChannel {
        channel: String,
    },
    /// Fen paid by subscribers of this channel.
    RevenueByChannel {
        channel: String,
    },
    /// A verified payment event that could not be applied, by its kind (`unknown_order`, …).
    PayAnomaly {
        kind: String,
    },
    // The analytics' bookkeeping (see `crate::analytics` for the definitions). `channel` is
    // the subscriber's channel (`Subscriber::channel`, `""` for none), not the event's scene.
    /// A subscribe that made someone a follower (a first follow or a return).
    Follow {
        channel: String,
    },
    /// An unsubscribe that ended a follow.
    Unfollow {
        channel: String,
    },
    /// A follower mpgate did not see arrive (from before mpgate), first seen through a push.
    SeenFollower {
        channel: String,
    },
    /// A counted follower took another channel (a first-time subscribe of someone already
    /// counted as following): out of `channel`…
    MovedFrom {
        channel: String,
    },
    /// …and into this one.
    MovedTo {
        channel: String,
    },
    /// A first follow: one member of the day's cohort.
    FirstFollow {
        channel: String,
    },
    /// Keyed at the COHORT day: a member active while following on cohort day + 1 / 7 / 30.
    Retained1 {
        channel: String,
    },
    Retained7 {
        channel: String,
    },
    Retained30 {
        channel: String,
    },
    /// Keyed at the cohort day: a member who unfollowed within 7×24 h of the first follow.
    Unfollow7 {
        channel: String,
    },
    /// Keyed at the cohort day: a member whose first paid order came within 7×24 h / 30×24 h of
    /// the first follow (counted in the payment's transaction).
    FirstBuy7 {
        channel: String,
    },
    FirstBuy30 {
        channel: String,
    },
    /// A reader's first paid order ever (by the payment's day).
    Buyer {
        channel: String,
    },
    /// A reader's second paid order ever (by the payment's day).
    RepeatBuyer {
        channel: String,
    },
    /// The paywall page of an article opened by someone without access (a genuine link or
    /// none): the funnel's step between the teaser and the order.
    PaywallPage {
        article: String,
    },
    /// The full article served to an entitled reader.
    Read {
        article: String,
    },
    /// A question the assistant took (passed gating, quotas and the blocklist) under `rule`.
    AssistantQuestion {
        rule: String,
    },
    /// An assistant answer delivered, by path: `passive`, `retry_held`, `customer_service`,
    /// `pull`, `fallback`.
    AssistantAnswer {
        path: String,
    },
    /// A question the assistant refused, by reason: `teaser`, `quota`, `budget`, `rate`,
    /// `blocked`.
    AssistantRefused {
        reason: String,
    },
    /// Tokens the model endpoint reported (added by the count); detail is empty.
    AssistantTokens,
}

impl Counter {
    /// The stable name: `kind:detail`, e.g. `subscribe:course2026`, `rule:price`,
    /// `teaser:rust-101`. A direct subscribe is `subscribe:` (empty detail), so no channel name
    /// can collide with it.
    pub fn name(&self) -> String {
        let (kind, detail) = match self {
            Counter::Subscribe { channel } => ("subscribe", channel),
            Counter::Unsubscribe { channel } => ("unsubscribe", channel),
            Counter::RuleHit { rule } => ("rule", rule),
            Counter::TeaserShown { article } => ("teaser", article),
            Counter::LinkIssued { article } => ("link", article),
            Counter::PageOpened { article } => ("page", article),
            Counter::Push { msg_type } => ("push", msg_type),
            Counter::OrderCreated { article } => ("order", article),
            Counter::OrderPaid { article } => ("paid", article),
            Counter::Revenue { article } => ("revenue", article),
            Counter::OrderRefunded { article } => ("refund", article),
            Counter::RefundedFen { article } => ("refunded_fen", article),
            Counter::OrderByChannel { channel } => ("order_channel", channel),
            Counter::PaidByChannel { channel } => ("paid_channel", channel),
            Counter::RevenueByChannel { channel } => ("revenue_channel", channel),
            Counter::PayAnomaly { kind } => ("pay_anomaly", kind),
            Counter::Follow { channel } => ("follow", channel),
            Counter::Unfollow { channel } => ("unfollow", channel),
            Counter::SeenFollower { channel } => ("seen_follower", channel),
            Counter::MovedFrom { channel } => ("moved_from", channel),
            Counter::MovedTo { channel } => ("moved_to", channel),
            Counter::FirstFollow { channel } => ("first_follow", channel),
            Counter::Retained1 { channel } => ("retained1", channel),
            Counter::Retained7 { channel } => ("retained7", channel),
            Counter::Retained30 { channel } => ("retained30", channel),
            Counter::Unfollow7 { channel } => ("unfollow7", channel),
            Counter::FirstBuy7 { channel } => ("first_buy7", channel),
            Counter::FirstBuy30 { channel } => ("first_buy30", channel),
            Counter::Buyer { channel } => ("buyer", channel),
            Counter::RepeatBuyer { channel } => ("repeat_buyer", channel),
            Counter::PaywallPage { article } => ("paywall", article),
            Counter::Read { article } => ("read", article),
            Counter::AssistantQuestion { rule } => ("assistant_question", rule),
            Counter::AssistantAnswer { path } => ("assistant_answer", path),
            Counter::AssistantRefused { reason } => ("assistant_refused", reason),
            Counter::AssistantTokens => return "assistant_tokens:".to_string(),
        };
        format!("{kind}:{detail}")
    }
}

pub(super) fn tree_key(day: NaiveDate, name: &str) -> Vec<u8> {
    let mut k = day.format("%Y-%m-%d").to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(super) fn day_prefix(day: NaiveDate) -> Vec<u8> {
    day.format("%Y-%m-%d").to_string().into_bytes()
}

pub(super) fn parse_tree_key(k: &[u8]) -> Result<(NaiveDate, String), StoreError> {
    let bad = || StoreError::Corrupt("malformed key in tree counters".into());
    if k.len() <= DAY_LEN || k[DAY_LEN] != 0 {
        return Err(bad());
    }
    let day = std::str::from_utf8(&k[..DAY_LEN]).map_err(|_| bad())?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| bad())?;
    let name = String::from_utf8(k[DAY_LEN + 1..].to_vec()).map_err(|_| bad())?;
    Ok((day, name))
}

/// Adds `n` to a day's counter inside a caller's transaction (the order transitions).
pub(super) fn add_in(
    counters: &sled::transaction::TransactionalTree,
    day: NaiveDate,
    c: &Counter,
    n: u64,
) -> super::TxResult<()> {
    let k = tree_key(day, &c.name());
    // An undecodable old value is replaced, as a period does, rather than wedging payments.
    let old = counters
        .get(k.as_slice())?
        .and_then(|v| decode_count(v.as_ref()).ok())
        .unwrap_or(0);
    counters.insert(k.as_slice(), &old.saturating_add(n).to_be_bytes())?;
    Ok(())
}

pub(super) fn decode_count(v: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("counter value has {} bytes, not 8", v.len())))
}

impl Store {
    /// Adds `n` to a day's counter, in memory only (cheap: it is on the callback hot path).
    pub fn count(&self, c: Counter, day: NaiveDate, n: u64) {
        let mut pending = lock(&self.inner.pending_counts);
        let slot = pending.entry((day, c)).or_insert(0);
        *slot = slot.saturating_add(n);
    }

    /// Merges the in-memory counts into the tree (one write-behind period with everything
    /// due).
    pub fn flush_counters(&self) -> Result<(), StoreError> {
        self.write_period(true).map(|_| ())
    }

    /// Takes the counts a period merges (called with the commit gate held exclusively).
    pub(super) fn take_counts(&self) -> Pending {
        std::mem::take(&mut *lock(&self.inner.pending_counts))
    }

    /// Adds counts back to memory (a failed period's, or one whose fate was unknown and turned
    /// out not to have landed: see `period`).
    pub(super) fn restore_counts(&self, counts: Pending) {
        let mut pending = lock(&self.inner.pending_counts);
        for (k, n) in counts {
            let slot = pending.entry(k).or_insert(0);
            *slot = slot.saturating_add(n);
        }
    }

    /// Counts per day and name for `from..=to`, including counts not yet flushed.
    pub fn counters(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, BTreeMap<String, u64>>, StoreError> {
        let _gate = lock(&self.inner.counters_gate);
        let mut out: BTreeMap<NaiveDate, BTreeMap<String, u64>> = BTreeMap::new();
        if from > to {
            return Ok(out);
        }
        let start = day_prefix(from);
        let mut end = day_prefix(to);
        // Every key of day `to` is `to\0…`, below `to\x01`.
        end.push(1);
        for kv in self.db()?.counters.range(start..end) {
            let (k, v) = kv?;
            let (day, name) = parse_tree_key(&k)?;
            *out.entry(day).or_default().entry(name).or_insert(0) += decode_count(&v)?;
        }
        let unconfirmed = self.unconfirmed_counts();
        let pending = lock(&self.inner.pending_counts);
        for ((day, counter), n) in pending
            .iter()
            .chain(unconfirmed.iter().map(|(k, n)| (k, n)))
        {
            if (from..=to).contains(day) {
                let slot = out
                    .entry(*day)
                    .or_default()
                    .entry(counter.name())
                    .or_insert(0);
                *slot = slot.saturating_add(*n);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        let c = |c: Counter| c.name();
        assert_eq!(
            c(Counter::Subscribe {
                channel: "course2026".into()
            }),
            "subscribe:course2026"
        );
        assert_eq!(
            c(Counter::Subscribe {
                channel: String::new()
            }),
            "subscribe:"
        );
        assert_eq!(
            c(Counter::RuleHit {
                rule: "price".into()
            }),
            "rule:price"
        );
        assert_eq!(
            c(Counter::TeaserShown {
                article: "rust-101".into()
            }),
            "teaser:rust-101"
        );
        assert_eq!(
            c(Counter::LinkIssued {
                article: "a".into()
            }),
            "link:a"
        );
        assert_eq!(
            c(Counter::PageOpened {
                article: "a".into()
            }),
            "page:a"
        );
        assert_eq!(
            c(Counter::Push {
                msg_type: "text".into()
            }),
            "push:text"
        );
        assert_eq!(
            c(Counter::Unsubscribe {
                channel: "x".into()
            }),
            "unsubscribe:x"
        );
        let a = || "rust-101".to_string();
        for (counter, name) in [
            (Counter::OrderCreated { article: a() }, "order:rust-101"),
            (Counter::OrderPaid { article: a() }, "paid:rust-101"),
            (Counter::Revenue { article: a() }, "revenue:rust-101"),
            (Counter::OrderRefunded { article: a() }, "refund:rust-101"),
            (
                Counter::RefundedFen { article: a() },
                "refunded_fen:rust-101",
            ),
            (
                Counter::OrderByChannel {
                    channel: "qr1".into(),
                },
                "order_channel:qr1",
            ),
            (
                Counter::PaidByChannel {
                    channel: String::new(),
                },
                "paid_channel:",
            ),
            (
                Counter::RevenueByChannel {
                    channel: "qr1".into(),
                },
                "revenue_channel:qr1",
            ),
            (
                Counter::PayAnomaly {
                    kind: "unknown_order".into(),
                },
                "pay_anomaly:unknown_order",
            ),
        ] {
            assert_eq!(counter.name(), name);
        }
        let ch = || "qr1".to_string();
        for (counter, name) in [
            (Counter::Follow { channel: ch() }, "follow:qr1"),
            (
                Counter::Unfollow {
                    channel: String::new(),
                },
                "unfollow:",
            ),
            (Counter::SeenFollower { channel: ch() }, "seen_follower:qr1"),
            (Counter::MovedFrom { channel: ch() }, "moved_from:qr1"),
            (Counter::MovedTo { channel: ch() }, "moved_to:qr1"),
            (Counter::FirstFollow { channel: ch() }, "first_follow:qr1"),
            (Counter::Retained1 { channel: ch() }, "retained1:qr1"),
            (Counter::Retained7 { channel: ch() }, "retained7:qr1"),
            (Counter::Retained30 { channel: ch() }, "retained30:qr1"),
            (Counter::Unfollow7 { channel: ch() }, "unfollow7:qr1"),
            (Counter::FirstBuy7 { channel: ch() }, "first_buy7:qr1"),
            (Counter::FirstBuy30 { channel: ch() }, "first_buy30:qr1"),
            (Counter::Buyer { channel: ch() }, "buyer:qr1"),
            (Counter::RepeatBuyer { channel: ch() }, "repeat_buyer:qr1"),
            (Counter::PaywallPage { article: a() }, "paywall:rust-101"),
            (Counter::Read { article: a() }, "read:rust-101"),
        ] {
            assert_eq!(counter.name(), name);
        }
    }

    #[test]
    fn tree_keys_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 9).expect("valid date");
        let k = tree_key(day, "rule:price");
        assert_eq!(&k[..], b"2026-03-09\0rule:price");
        assert_eq!(
            parse_tree_key(&k).ok(),
            Some((day, "rule:price".to_string()))
        );
        assert!(parse_tree_key(b"2026-03-09").is_err());
        assert!(parse_tree_key(b"2026-13-09\0x").is_err());
    }
}
