//! The operator's side of the state: grants and revocations (with the one grant rule), a
//! subscriber and their entitlements, who may read an article, daily counters, the outbox,
//! orders with payment anomalies, and forgetting what the assistant remembers of a subscriber. One service for the admin API and the CLI's direct path, so
//! both follow the same rules.
//!
//! May depend on `store` and `wechat::types`; never on HTTP.

use chrono::NaiveDate;

use crate::store::platform::{OutboxFilter, OutboxItem};
use crate::store::{
    Entitlement, GrantOutcome, Order, OrderFilter, OrderState, PayAnomaly, RevokeOutcome, Store,
    StoreError, Subscriber,
};
use crate::wechat::types::OpenId;

/// The operator's service over the store. Cheap to clone.
#[derive(Clone)]
pub struct Operator {
    store: Store,
}

/// A subscriber as operators see them.
#[derive(Debug, serde::Serialize)]
pub struct SubscriberView {
    pub subscriber: Subscriber,
    pub entitlements: Vec<Entitlement>,
}

/// An operator's grant, as the admin API and the CLI take it.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    pub openid: &'a OpenId,
    pub article: &'a str,
    /// Who grants (e.g. `"admin"`, `"shop"`, `"cli"`).
    pub source: &'a str,
    /// An order id or similar: a second grant with the same reference changes nothing.
    pub reference: Option<&'a str>,
    /// Grant although mpgate has never seen this openid, creating its subscriber record.
    pub create: bool,
}

/// At most this many orders (the newest) and as many anomalies in one listing: narrow the dates
/// for more.
pub const ORDERS_LIST_LIMIT: usize = 5000;

/// Which orders an operator lists: by state, and by the account's days of creation (both
/// included; either may be open).
#[derive(Debug, Clone, Copy)]
pub struct OrdersQuery {
    pub state: Option<OrderState>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// The account's time zone (the rules'): the days are its days, as for the counters.
    pub tz: chrono_tz::Tz,
}

/// Orders and payment anomalies, as `GET /admin/orders` and `mpgate orders` show them. The
/// anomalies are listed with no state filter or with `anomaly`, by the same days.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct OrdersView {
    pub orders: Vec<Order>,
    pub anomalies: Vec<PayAnomaly>,
}

/// The unix time `day` starts at in `tz` (a zone whose clocks skip midnight: when the gap ends).
fn day_start(tz: chrono_tz::Tz, day: NaiveDate) -> i64 {
    use chrono::TimeZone;
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    (0..=2)
        .find_map(|h| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc().timestamp(), |t| t.timestamp())
}

/// Why [`Operator::grant`] refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The openid is unknown and the request did not ask to create it (a typo guard).
    #[error("unknown subscriber `{0}` (never seen by mpgate)")]
    UnknownSubscriber(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Operator {
    pub fn new(store: Store) -> Self {
        Operator { store }
    }

    /// The one grant rule, for the admin API and the CLI alike: an openid mpgate has never seen is
    /// refused unless the request says `create`; then its subscriber record is created (marked as
    /// made by the operator) together with the grant. Both are durable on return. A grant refused
    /// for its reference ([`GrantOutcome::ReferenceConflict`]) creates nothing.
    pub fn grant(&self, req: &GrantRequest<'_>, at: i64) -> Result<GrantOutcome, GrantError> {
        let store = &self.store;
        let known = store.subscriber(req.openid)?.is_some();
        if !known && !req.create {
            return Err(GrantError::UnknownSubscriber(
                req.openid.as_str().to_owned(),
            ));
        }
        // Grant first: a crash between the two leaves a grant without its record, which the
        // operator's retry (with `create` again) completes, rather than a record without a grant.
        let out = store.grant(req.openid, req.article, req.source, req.reference, at)?;
        if !known && !matches!(out, GrantOutcome::ReferenceConflict(_)) {
            store.create_subscriber_by_operator(req.openid)?;
        }
        Ok(out)
    }

    /// Revokes a grant (a refund): links already sent stop working at once.
    pub fn revoke(
        &self,
        openid: &OpenId,
        article: &str,
        at: i64,
    ) -> Result<RevokeOutcome, StoreError> {
        self.store.revoke(openid, article, at)
    }

    /// The subscriber and their entitlements; `None` for an openid mpgate has never seen.
    pub fn subscriber(&self, openid: &OpenId) -> Result<Option<SubscriberView>, StoreError> {
        let Some(subscriber) = self.store.subscriber(openid)? else {
            return Ok(None);
        };
        Ok(Some(SubscriberView {
            subscriber,
            entitlements: self.store.entitlements_of(openid)?,
        }))
    }

    /// Who may read `article` now.
    pub fn readers(&self, article: &str) -> Result<Vec<Entitlement>, StoreError> {
        self.store.entitled_subscribers(article)
    }

    /// Daily counters from `from` to `to`, both included (the account's dates).
    pub fn counters(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<
        std::collections::BTreeMap<NaiveDate, std::collections::BTreeMap<String, u64>>,
        StoreError,
    > {
        self.store.counters(from, to)
    }

    /// Orders (newest first) and, unless another state is asked for, payment anomalies.
    pub fn orders(&self, q: &OrdersQuery) -> Result<OrdersView, StoreError> {
        let from = q.from.map(|d| day_start(q.tz, d));
        let to = q.to.and_then(|d| d.succ_opt()).map(|d| day_start(q.tz, d));
        let orders = self.store.orders(&OrderFilter {
            state: q.state,
            from,
            to,
            limit: ORDERS_LIST_LIMIT,
        })?;
        let anomalies = match q.state {
            None | Some(OrderState::Anomaly) => {
                self.store.pay_anomalies(from, to, ORDERS_LIST_LIMIT)?
            }
            Some(_) => Vec::new(),
        };
        Ok(OrdersView { orders, anomalies })
    }

    /// Customer-service messages in the outbox.
    pub fn outbox(&self, filter: OutboxFilter) -> Result<Vec<OutboxItem>, StoreError> {
        self.store.outbox_list(filter)
    }

    /// Forgets what the assistant remembers of a subscriber (their last turns and any answer
    /// kept for the continue word), on disk before it returns; whether there was anything.
    pub fn assistant_forget(&self, openid: &OpenId) -> Result<bool, StoreError> {
        let forgot = self.store.assistant_forget(openid)?;
        self.store.flush()?;
        Ok(forgot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    #[test]
    fn an_account_day_starts_at_its_own_midnight() {
        // 2026-03-01 00:00 in Shanghai (UTC+8) is 2026-02-28 16:00 UTC.
        assert_eq!(
            day_start(chrono_tz::Asia::Shanghai, date(2026, 3, 1)),
            1_772_294_400
        );
        assert_eq!(day_start(chrono_tz::UTC, date(2026, 3, 1)), 1_772_323_200);
        // São Paulo skipped midnight on 2018-11-04 (00:00 → 01:00): the day began at 01:00.
        assert_eq!(
            day_start(chrono_tz::America::Sao_Paulo, date(2018, 11, 4)),
            1_541_300_400
        );
    }
}
