//! The operators' figures: growth by channel, retention cohorts, the paid funnel, sales, and
//! what no rule answers, computed from what the store keeps incrementally (daily counters and
//! per-subscriber bookkeeping written with each push), so no report scans every subscriber.
//!
//! Days are the account's days (the rules' time zone): callers pass `today` in it.
//!
//! SKELETON (issue 18, being built): the types are the contract the dashboard and the admin API
//! use; the computations return empty reports until the analytics work lands.
//!
//! May depend on: `store`. Never actix, never the rules (titles are the caller's).

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

    pub fn overview(&self, _today: NaiveDate) -> Result<Overview, StoreError> {
        let _ = &self.store;
        Ok(Overview::default())
    }

    /// Growth per day over `range`, all channels (`None`) or one.
    pub fn growth(
        &self,
        _range: Range,
        _channel: Option<&str>,
    ) -> Result<Vec<DayGrowth>, StoreError> {
        Ok(Vec::new())
    }

    pub fn channels(&self, _range: Range) -> Result<Vec<ChannelRow>, StoreError> {
        Ok(Vec::new())
    }

    /// Cohorts whose first-follow day is in `range`, newest first, as seen on `today`.
    pub fn retention(
        &self,
        _range: Range,
        _today: NaiveDate,
    ) -> Result<Vec<CohortRow>, StoreError> {
        Ok(Vec::new())
    }

    /// Per article, most paid first.
    pub fn funnel(&self, _range: Range) -> Result<Vec<FunnelRow>, StoreError> {
        Ok(Vec::new())
    }

    pub fn sales(&self, _range: Range) -> Result<Sales, StoreError> {
        Ok(Sales::default())
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
}
