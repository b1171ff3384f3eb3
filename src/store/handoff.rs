//! Human-handoff sessions: at most one per openid, in the `handoffs` tree as JSON.

use super::{check_part, decode_json, encode_json, Store, StoreError};
use crate::wechat::types::OpenId;

/// Where a handoff to the customer-service desk stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HandoffState {
    /// Waiting for an agent.
    Queued,
    /// Opened on the platform, no agent yet.
    Open,
    /// An agent took the session.
    Taken { kf_account: String },
}

/// One user's conversation handed to a human.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandoffSession {
    pub openid: String,
    pub state: HandoffState,
    /// The agent account requested or assigned, if any.
    #[serde(default)]
    pub kf_account: Option<String>,
    pub opened_at: i64,
    pub last_activity: i64,
    /// The rule that started the handoff.
    pub rule: String,
}

impl Store {
    /// The open session of `openid`, if any.
    pub fn handoff_get(&self, openid: &OpenId) -> Result<Option<HandoffSession>, StoreError> {
        self.inner
            .handoffs
            .get(openid.as_str().as_bytes())?
            .map(|v| decode_json("handoffs", &v))
            .transpose()
    }

    /// Creates or replaces the session keyed by `session.openid`.
    pub fn handoff_put(&self, session: &HandoffSession) -> Result<(), StoreError> {
        check_part("openid", &session.openid)?;
        self.inner
            .handoffs
            .insert(session.openid.as_bytes(), encode_json(session))?;
        Ok(())
    }

    /// Removes and returns the session of `openid`.
    pub fn handoff_close(&self, openid: &OpenId) -> Result<Option<HandoffSession>, StoreError> {
        self.inner
            .handoffs
            .remove(openid.as_str().as_bytes())?
            .map(|v| decode_json("handoffs", &v))
            .transpose()
    }

    /// Every open session, ordered by openid.
    pub fn handoffs(&self) -> Result<Vec<HandoffSession>, StoreError> {
        self.inner
            .handoffs
            .iter()
            .values()
            .map(|v| decode_json("handoffs", &v?))
            .collect()
    }
}
