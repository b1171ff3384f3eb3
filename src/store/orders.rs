//! Orders (WeChat Pay) and the payment anomalies the operator must see: the state machine, its
//! indexes, and the grant or revoke a payment or a refund makes, all in one transaction.
//!
//! # State machine
//! `Created → Paid → Refunded`, `Created → Closed`, and `Closed → Paid` (the platform's word
//! that an order was paid wins over our expiry). A refund before payment, or a verified event
//! that contradicts the order (amount, payer, app id), makes a `Created`/`Closed` order an
//! `Anomaly`; a `Paid` or `Refunded` order keeps its state (the grant stays, the anomaly is
//! listed). Every transition is idempotent: repeating it returns what is stored and writes
//! nothing.
//!
//! # Trees (see the table in the store's module doc)
//! `orders` holds the records; `orders_by_reader` finds a reader's open order to reuse,
//! `orders_by_time` lists by creation time, `orders_open` holds exactly the `Created` ones (for
//! reconciliation without scanning every order). `pay_anomalies` lists anomalies by time and
//! `pay_anomaly_events` makes a notification's anomaly idempotent. Each transition writes the
//! order, its indexes, the entitlement trees (through [`super::entitlements::grant_in`] /
//! [`super::entitlements::revoke_in`], the very code of [`Store::grant`]) and the payment
//! counters in one sled transaction, synced before it returns.

use chrono::NaiveDate;
use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::analytics::{count_purchase_in, BuyerInfo};
use super::counters::{add_in, Counter};
use super::entitlements::{grant_in, revoke_in, EntitlementTrees};
use super::{
    abort, check_part, decode_json, encode_json, join_key, time_key, GrantOutcome, RevokeOutcome,
    Store, StoreError, TxResult,
};
use crate::wechat::types::OpenId;

/// The source of the entitlements payments make.
pub const PAYMENT_SOURCE: &str = "wechatpay";

/// The refund status that completes a refund (the others are recorded only).
const REFUND_SUCCESS: &str = "SUCCESS";

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    /// Stored, not paid (yet): the reader may still pay it.
    Created,
    /// Paid; the reader was granted the article in the same transaction.
    Paid,
    /// Fully refunded; the grant was revoked in the same transaction.
    Refunded,
    /// Expired unpaid and closed at the platform.
    Closed,
    /// A verified payment event contradicted it ([`Order::anomaly`] says how).
    Anomaly,
}

impl OrderState {
    /// The lower-case name, as the admin API and the CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Paid => "paid",
            OrderState::Refunded => "refunded",
            OrderState::Closed => "closed",
            OrderState::Anomaly => "anomaly",
        }
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrderState {
    type Err = String;

    /// `created`, `paid`, `refunded`, `closed` or `anomaly`, as operators type them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "created" => Ok(OrderState::Created),
            "paid" => Ok(OrderState::Paid),
            "refunded" => Ok(OrderState::Refunded),
            "closed" => Ok(OrderState::Closed),
            "anomaly" => Ok(OrderState::Anomaly),
            other => Err(format!(
                "state must be created, paid, refunded, closed or anomaly, not `{other}`"
            )),
        }
    }
}

/// One order of one article by one reader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// mpgate's order number (`[0-9A-Za-z_-]{6,32}`), the reference of the grant it makes.
    pub out_trade_no: String,
    pub openid: String,
    pub article: String,
    pub description: String,
    pub amount_fen: u64,
    /// the subscriber's channel (QR scene) when the order was created; "" for none
    pub channel: String,
    pub state: OrderState,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub prepay_id: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub paid_at: Option<i64>,
    #[serde(default)]
    pub refunded_at: Option<i64>,
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// Every refund event received, in order (one per `out_refund_no` and status).
    #[serde(default)]
    pub refunds: Vec<RefundNote>,
    /// why it became an anomaly (amount or payer differ, refund before payment, ...)
    #[serde(default)]
    pub anomaly: Option<String>,
    /// The time of the last change, as its event gives it (never moves back).
    pub updated_at: i64,
}

/// One refund event on an order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefundNote {
    pub out_refund_no: String,
    #[serde(default)]
    pub refund_id: Option<String>,
    /// `SUCCESS`, `ABNORMAL` or `CLOSED`, as the platform says.
    pub status: String,
    pub refund_fen: u64,
    pub at: i64,
}

/// A verified payment event mpgate could not apply (unknown order, amount/payer mismatch, refund
/// before payment, ...): listed and counted for the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayAnomaly {
    pub at: i64,
    pub out_trade_no: String,
    /// A short stable slug: `unknown_order`, `amount_mismatch`, `payer_mismatch`,
    /// `appid_mismatch`, `refund_before_payment`, …
    pub kind: String,
    /// For the operator: no secrets; openids only truncated if any.
    pub detail: String,
    /// The notification's id, when it came from one: the same event and kind are recorded once.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// The result of [`Store::order_paid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaidOutcome {
    /// Now paid, with the grant made in the same transaction.
    Paid { order: Order, grant: GrantOutcome },
    /// Already paid: nothing was written.
    AlreadyPaid(Order),
    /// Refunded or an anomaly: nothing changed.
    NotPayable(Order),
}

/// The result of [`Store::order_refund`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// A full, successful refund of a paid order: refunded, and the grant revoked with it.
    Refunded { order: Order, revoke: RevokeOutcome },
    /// Noted on the order (partial, abnormal or closed refund, or one already refunded) or a
    /// repeat of a note already there (nothing written); the grant stays.
    Recorded(Order),
    /// The order was never paid: it became an anomaly and a [`PayAnomaly`] was recorded.
    BeforePayment(Order),
}

/// The result of [`Store::order_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed(Order),
    /// Not `Created`: nothing changed.
    NotOpen(Order),
}

/// Which orders [`Store::orders`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFilter {
    pub state: Option<OrderState>,
    /// `created_at >= from`.
    pub from: Option<i64>,
    /// `created_at < to`.
    pub to: Option<i64>,
    /// At most this many (the newest).
    pub limit: usize,
}

/// `time_key(at) ‖ suffix`: the time indexes' key layout.
fn timed(at: i64, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + suffix.len());
    k.extend_from_slice(&time_key(at));
    k.extend_from_slice(suffix);
    k
}

/// `openid \0 article \0`: the prefix of one reader's orders of one article.
fn reader_prefix(openid: &str, article: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = join_key(&[("openid", openid), ("article", article)])?;
    k.push(0);
    Ok(k)
}

/// The part of a time index key after its 8 time bytes, as an order number.
fn no_after_time(k: &[u8], tree: &str) -> Result<String, StoreError> {
    k.get(8..)
        .filter(|no| !no.is_empty())
        .and_then(|no| std::str::from_utf8(no).ok())
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Corrupt(format!("malformed key in tree {tree}")))
}

/// The entries of a time-keyed tree with `from <= time < to`; `None` for an empty range
/// (sled refuses a range whose end is before its start).
fn time_range(tree: &sled::Tree, from: Option<i64>, to: Option<i64>) -> Option<sled::Iter> {
    let start = time_key(from.unwrap_or(i64::MIN)).to_vec();
    match to {
        Some(to) if to <= from.unwrap_or(i64::MIN) => None,
        Some(to) => Some(tree.range(start..time_key(to).to_vec())),
        None => Some(tree.range(start..)),
    }
}

fn read_order(orders: &TransactionalTree, no: &str) -> TxResult<Option<Order>> {
    match orders.get(no.as_bytes())? {
        None => Ok(None),
        Some(v) => decode_json("orders", &v).map(Some).map_err(abort),
    }
}

fn must_read(orders: &TransactionalTree, no: &str) -> TxResult<Order> {
    read_order(orders, no)?.ok_or_else(|| abort(StoreError::UnknownOrder(no.to_owned())))
}

/// Writes a changed order and keeps `orders_open` exactly the `Created` ones. `created_at`
/// never changes, so the other indexes are only written by [`Store::order_create`].
fn put(orders: &TransactionalTree, open: &TransactionalTree, order: &Order) -> TxResult<()> {
    orders.insert(order.out_trade_no.as_bytes(), encode_json(order))?;
    let k = timed(order.created_at, order.out_trade_no.as_bytes());
    if order.state == OrderState::Created {
        open.insert(k, &[] as &[u8])?;
    } else {
        open.remove(k)?;
    }
    Ok(())
}

/// Records an anomaly in `pay_anomalies` under `key`, once per (event id, kind). Returns
/// whether it was new.
fn record_anomaly(
    list: &TransactionalTree,
    events: &TransactionalTree,
    key: &[u8],
    a: &PayAnomaly,
) -> TxResult<bool> {
    if let Some(event) = &a.event_id {
        let ek = join_key(&[("event id", event), ("anomaly kind", &a.kind)]).map_err(abort)?;
        if events.get(&ek)?.is_some() {
            return Ok(false);
        }
        events.insert(ek, key)?;
    }
    list.insert(key, encode_json(a))?;
    Ok(true)
}

impl Order {
    fn touch(&mut self, at: i64) {
        self.updated_at = self.updated_at.max(at);
    }
}

impl Store {
    /// A fresh unique key in `pay_anomalies` for an anomaly at `at`.
    fn anomaly_key(&self, at: i64) -> Result<Vec<u8>, StoreError> {
        let id = self.db()?.db.generate_id()?;
        Ok(timed(at, &id.to_be_bytes()))
    }

    /// Stores a new order (state Created). Refuses an existing out_trade_no. Durable on return.
    /// Counts `order:<article>` and `order_channel:<channel>` for `day` in the same transaction.
    pub fn order_create(&self, order: &Order, day: NaiveDate) -> Result<(), StoreError> {
        check_part("out_trade_no", &order.out_trade_no)?;
        let by_reader = {
            let mut k = reader_prefix(&order.openid, &order.article)?;
            k.extend_from_slice(&timed(order.created_at, order.out_trade_no.as_bytes()));
            k
        };
        let by_time = timed(order.created_at, order.out_trade_no.as_bytes());
        let mut order = order.clone();
        order.state = OrderState::Created;
        let record = encode_json(&order);
        let i = self.db()?;
        (
            &i.orders,
            &i.orders_by_reader,
            &i.orders_by_time,
            &i.orders_open,
            &i.counters,
        )
            .transaction(|(orders, readers, times, open, counters)| {
                if orders.get(order.out_trade_no.as_bytes())?.is_some() {
                    return Err(abort(StoreError::DuplicateOrder(
                        order.out_trade_no.clone(),
                    )));
                }
                orders.insert(order.out_trade_no.as_bytes(), record.as_slice())?;
                readers.insert(by_reader.as_slice(), &[] as &[u8])?;
                times.insert(by_time.as_slice(), &[] as &[u8])?;
                open.insert(by_time.as_slice(), &[] as &[u8])?;
                add_in(
                    counters,
                    day,
                    &Counter::OrderCreated {
                        article: order.article.clone(),
                    },
                    1,
                )?;
                add_in(
                    counters,
                    day,
                    &Counter::OrderByChannel {
                        channel: order.channel.clone(),
                    },
                    1,
                )
            })?;
        self.counters_changed([day]);
        self.sync()
    }

    /// The order `out_trade_no`, in whatever state.
    pub fn order(&self, out_trade_no: &str) -> Result<Option<Order>, StoreError> {
        check_part("out_trade_no", out_trade_no)?;
        self.db()?
            .orders
            .get(out_trade_no.as_bytes())?
            .map(|v| decode_json("orders", &v))
            .transpose()
    }

    /// The newest Created order of this reader for this article whose expires_at > valid_until
    /// (the caller passes now + a margin), to be reused instead of creating a second one.
    pub fn order_open_for(
        &self,
        openid: &str,
        article: &str,
        valid_until: i64,
    ) -> Result<Option<Order>, StoreError> {
        let prefix = reader_prefix(openid, article)?;
        let db = self.db()?;
        for k in db.orders_by_reader.scan_prefix(&prefix).keys().rev() {
            let k = k?;
            let no = no_after_time(&k[prefix.len()..], "orders_by_reader")?;
            let Some(v) = db.orders.get(no.as_bytes())? else {
                return Err(StoreError::Corrupt(
                    "orders_by_reader names a missing order".into(),
                ));
            };
            let order: Order = decode_json("orders", &v)?;
            if order.state == OrderState::Created && order.expires_at > valid_until {
                return Ok(Some(order));
            }
        }
        Ok(None)
    }

    /// Remembers the platform's prepay id of a `Created` order (other states: unchanged, and
    /// returned as they are). Durable on return.
    pub fn order_set_prepay(
        &self,
        out_trade_no: &str,
        prepay_id: &str,
        at: i64,
    ) -> Result<Order, StoreError> {
        check_part("out_trade_no", out_trade_no)?;
        let i = self.db()?;
        let order = (&i.orders, &i.orders_open).transaction(|(orders, open)| {
            let mut order = must_read(orders, out_trade_no)?;
            if order.state != OrderState::Created || order.prepay_id.as_deref() == Some(prepay_id) {
                return Ok(order);
            }
            order.prepay_id = Some(prepay_id.to_owned());
            order.touch(at);
            put(orders, open, &order)?;
            Ok(order)
        })?;
        self.sync()?;
        Ok(order)
    }

    /// Created (or Closed: the platform's word that it was paid wins) → Paid, and the grant
    /// (reference = out_trade_no, source "wechatpay", at = paid_at) in ONE transaction with the
    /// counters `paid:<article>`, `revenue:<article>` (+amount_fen), `paid_channel:<channel>`,
    /// `revenue_channel:<channel>` for `day`, and the reader's purchase in `buyers` (a first
    /// or second paid order ever counts `buyer:`/`repeat_buyer:`, and a first one within 7 or
    /// 30 days of the first follow `first_buy7:`/`first_buy30:` at the cohort day). Paid → AlreadyPaid (nothing written). Idempotent:
    /// two concurrent calls → exactly one Paid.
    ///
    /// The grant follows [`Store::grant`]'s rules: a reader who already holds the article gets
    /// [`GrantOutcome::AlreadyGranted`] (the order is paid all the same: the money came), and a
    /// reference an operator already used for someone else gives
    /// [`GrantOutcome::ReferenceConflict`], for the caller to report.
    pub fn order_paid(
        &self,
        out_trade_no: &str,
        transaction_id: &str,
        paid_at: i64,
        day: NaiveDate,
    ) -> Result<PaidOutcome, StoreError> {
        check_part("out_trade_no", out_trade_no)?;
        // The reader's cohort and channel for the buyer counters: read before the transaction
        // (sled transactions read single keys of their trees only); none of it changes once set.
        let who = match self.order(out_trade_no)? {
            Some(o) if check_part("openid", &o.openid).is_ok() => self
                .subscriber(&OpenId::new(&o.openid))?
                .map(|s| BuyerInfo {
                    channel: s.channel.clone().unwrap_or_default(),
                    cohort: s.cohort,
                    first_follow_at: s.first_subscribed,
                })
                .unwrap_or_default(),
            _ => BuyerInfo::default(),
        };
        let i = self.db()?;
        let outcome = (
            &i.orders,
            &i.orders_open,
            &i.entitlements,
            &i.entitled_by_article,
            &i.references,
            &i.counters,
            &i.buyers,
        )
            .transaction(|(orders, open, ents, by_article, refs, counters, buyers)| {
                let mut order = must_read(orders, out_trade_no)?;
                match order.state {
                    OrderState::Paid => return Ok(PaidOutcome::AlreadyPaid(order)),
                    OrderState::Refunded | OrderState::Anomaly => {
                        return Ok(PaidOutcome::NotPayable(order))
                    }
                    OrderState::Created | OrderState::Closed => {}
                }
                order.state = OrderState::Paid;
                order.transaction_id = Some(transaction_id.to_owned());
                order.paid_at = Some(paid_at);
                order.touch(paid_at);
                put(orders, open, &order)?;
                let t = EntitlementTrees {
                    ents,
                    by_article,
                    refs,
                };
                let grant = grant_in(
                    &t,
                    &order.openid,
                    &order.article,
                    PAYMENT_SOURCE,
                    Some(out_trade_no),
                    paid_at,
                )?;
                let (article, channel) = (&order.article, &order.channel);
                for (c, n) in [
                    (
                        Counter::OrderPaid {
                            article: article.clone(),
                        },
                        1,
                    ),
                    (
                        Counter::Revenue {
                            article: article.clone(),
                        },
                        order.amount_fen,
                    ),
                    (
                        Counter::PaidByChannel {
                            channel: channel.clone(),
                        },
                        1,
                    ),
                    (
                        Counter::RevenueByChannel {
                            channel: channel.clone(),
                        },
                        order.amount_fen,
                    ),
                ] {
                    add_in(counters, day, &c, n)?;
                }
                count_purchase_in(buyers, counters, &order.openid, &who, paid_at, day)?;
                Ok(PaidOutcome::Paid { order, grant })
            })?;
        self.counters_changed([day].into_iter().chain(who.cohort));
        // Also when nothing was written: a retried notification must not be answered before
        // the first one's payment is on disk.
        self.sync()?;
        Ok(outcome)
    }

    /// Records a refund event on the order. `full && note.status == "SUCCESS"` on a Paid order →
    /// Refunded + revoke in one transaction + counters `refund:<article>`, `refunded_fen:<article>`.
    /// The same out_refund_no twice → Recorded, nothing new. On a Created/Closed order → BeforePayment
    /// (order becomes Anomaly, a PayAnomaly is recorded, counted `pay_anomaly:refund_before_payment`).
    ///
    /// "The same" is the same `out_refund_no` with the same status: a refund the platform first
    /// reports `ABNORMAL` and later `SUCCESS` is noted twice, and the second one refunds.
    pub fn order_refund(
        &self,
        out_trade_no: &str,
        note: RefundNote,
        full: bool,
        day: NaiveDate,
    ) -> Result<RefundOutcome, StoreError> {
        check_part("out_trade_no", out_trade_no)?;
        let anomaly_key = self.anomaly_key(note.at)?;
        let i = self.db()?;
        let outcome = (
            &i.orders,
            &i.orders_open,
            &i.entitlements,
            &i.entitled_by_article,
            &i.counters,
            &i.pay_anomalies,
            &i.pay_anomaly_events,
        )
            .transaction(|(orders, open, ents, by_article, counters, list, events)| {
                let mut order = must_read(orders, out_trade_no)?;
                let seen = order
                    .refunds
                    .iter()
                    .any(|r| r.out_refund_no == note.out_refund_no && r.status == note.status);
                if seen {
                    return Ok(RefundOutcome::Recorded(order));
                }
                order.refunds.push(note.clone());
                order.touch(note.at);
                match order.state {
                    OrderState::Created | OrderState::Closed => {
                        let why = format!(
                            "refund {} ({}) before payment",
                            note.out_refund_no, note.status
                        );
                        order.state = OrderState::Anomaly;
                        order.anomaly = Some(why.clone());
                        put(orders, open, &order)?;
                        let kind = "refund_before_payment";
                        record_anomaly(
                            list,
                            events,
                            &anomaly_key,
                            &PayAnomaly {
                                at: note.at,
                                out_trade_no: out_trade_no.to_owned(),
                                kind: kind.to_owned(),
                                detail: why,
                                event_id: None,
                            },
                        )?;
                        add_in(
                            counters,
                            day,
                            &Counter::PayAnomaly {
                                kind: kind.to_owned(),
                            },
                            1,
                        )?;
                        Ok(RefundOutcome::BeforePayment(order))
                    }
                    OrderState::Paid if full && note.status == REFUND_SUCCESS => {
                        order.state = OrderState::Refunded;
                        order.refunded_at = Some(note.at);
                        put(orders, open, &order)?;
                        let revoke =
                            revoke_in(ents, by_article, &order.openid, &order.article, note.at)?;
                        add_in(
                            counters,
                            day,
                            &Counter::OrderRefunded {
                                article: order.article.clone(),
                            },
                            1,
                        )?;
                        add_in(
                            counters,
                            day,
                            &Counter::RefundedFen {
                                article: order.article.clone(),
                            },
                            note.refund_fen,
                        )?;
                        Ok(RefundOutcome::Refunded { order, revoke })
                    }
                    OrderState::Paid | OrderState::Refunded | OrderState::Anomaly => {
                        put(orders, open, &order)?;
                        Ok(RefundOutcome::Recorded(order))
                    }
                }
            })?;
        self.counters_changed([day]);
        self.sync()?;
        Ok(outcome)
    }

    /// Created → Closed (expired unpaid order, closed at the platform). Anything else: NotOpen.
    pub fn order_close(&self, out_trade_no: &str, at: i64) -> Result<CloseOutcome, StoreError> {
        check_part("out_trade_no", out_trade_no)?;
        let i = self.db()?;
        let outcome = (&i.orders, &i.orders_open).transaction(|(orders, open)| {
            let mut order = must_read(orders, out_trade_no)?;
            if order.state != OrderState::Created {
                return Ok(CloseOutcome::NotOpen(order));
            }
            order.state = OrderState::Closed;
            order.closed_at = Some(at);
            order.touch(at);
            put(orders, open, &order)?;
            Ok(CloseOutcome::Closed(order))
        })?;
        self.sync()?;
        Ok(outcome)
    }

    /// Records an anomaly; if the order exists and is not Paid/Refunded, it becomes Anomaly (its
    /// `anomaly` says why). A Paid order keeps its state (the grant stays; the anomaly is listed).
    /// Counted `pay_anomaly:<kind>`. Idempotent per (event_id, kind) when event_id is Some.
    pub fn pay_anomaly(&self, a: &PayAnomaly, day: NaiveDate) -> Result<(), StoreError> {
        check_part("anomaly kind", &a.kind)?;
        // The order number comes from the platform and may name nothing we hold (that is
        // often the anomaly): only a well-formed one is looked up.
        let no = (check_part("out_trade_no", &a.out_trade_no).is_ok()).then_some(&a.out_trade_no);
        let key = self.anomaly_key(a.at)?;
        let i = self.db()?;
        (
            &i.orders,
            &i.orders_open,
            &i.counters,
            &i.pay_anomalies,
            &i.pay_anomaly_events,
        )
            .transaction(|(orders, open, counters, list, events)| {
                if !record_anomaly(list, events, &key, a)? {
                    return Ok(());
                }
                if let Some(no) = no {
                    if let Some(mut order) = read_order(orders, no)? {
                        if matches!(order.state, OrderState::Created | OrderState::Closed) {
                            order.state = OrderState::Anomaly;
                            order.anomaly = Some(format!("{}: {}", a.kind, a.detail));
                            order.touch(a.at);
                            put(orders, open, &order)?;
                        }
                    }
                }
                add_in(
                    counters,
                    day,
                    &Counter::PayAnomaly {
                        kind: a.kind.clone(),
                    },
                    1,
                )
            })?;
        self.counters_changed([day]);
        self.sync()
    }

    /// Newest first.
    pub fn orders(&self, filter: &OrderFilter) -> Result<Vec<Order>, StoreError> {
        let db = self.db()?;
        // The Created ones have their own (small) index.
        let (tree, name) = if filter.state == Some(OrderState::Created) {
            (&db.orders_open, "orders_open")
        } else {
            (&db.orders_by_time, "orders_by_time")
        };
        let keys = match time_range(tree, filter.from, filter.to) {
            Some(keys) => keys,
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for k in keys.keys().rev() {
            if out.len() >= filter.limit {
                break;
            }
            let no = no_after_time(&k?, name)?;
            let Some(v) = db.orders.get(no.as_bytes())? else {
                return Err(StoreError::Corrupt(format!("{name} names a missing order")));
            };
            let order: Order = decode_json("orders", &v)?;
            if filter.state.is_none_or(|s| s == order.state) {
                out.push(order);
            }
        }
        Ok(out)
    }

    /// Payment anomalies with `from <= at < to`, newest first, at most `limit`.
    pub fn pay_anomalies(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        limit: usize,
    ) -> Result<Vec<PayAnomaly>, StoreError> {
        let db = self.db()?;
        let Some(items) = time_range(&db.pay_anomalies, from, to) else {
            return Ok(Vec::new());
        };
        items
            .values()
            .rev()
            .take(limit)
            .map(|v| decode_json("pay_anomalies", &v?))
            .collect()
    }

    /// Created orders with created_at <= created_before, oldest first (for reconciliation),
    /// without scanning every order (keep an index of open orders).
    pub fn orders_to_reconcile(
        &self,
        created_before: i64,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let db = self.db()?;
        let keys = match created_before.checked_add(1) {
            Some(end) => db.orders_open.range(..time_key(end).to_vec()),
            None => db.orders_open.range::<Vec<u8>, _>(..),
        };
        let mut out = Vec::new();
        for k in keys.keys().take(limit) {
            let no = no_after_time(&k?, "orders_open")?;
            let Some(v) = db.orders.get(no.as_bytes())? else {
                return Err(StoreError::Corrupt(
                    "orders_open names a missing order".into(),
                ));
            };
            out.push(decode_json("orders", &v)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_their_names_and_a_wrong_one_names_them_all() {
        for s in [
            OrderState::Created,
            OrderState::Paid,
            OrderState::Refunded,
            OrderState::Closed,
            OrderState::Anomaly,
        ] {
            assert_eq!(s.as_str().parse::<OrderState>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::String(s.as_str().into()))
            );
        }
        let e = "bogus".parse::<OrderState>().unwrap_err();
        assert!(
            e.contains("created, paid, refunded, closed or anomaly"),
            "{e}"
        );
        assert!(e.contains("`bogus`"), "{e}");
    }

    #[test]
    fn time_index_keys_give_back_the_order_number() {
        let k = timed(-5, b"NO-123456");
        assert_eq!(no_after_time(&k, "t").ok().as_deref(), Some("NO-123456"));
        assert!(no_after_time(&k[..8], "t").is_err());
    }
}
