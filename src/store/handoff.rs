//! Human-handoff sessions: at most one per openid, in the `handoffs` tree as JSON, mirrored in
//! memory.
//!
//! Every user message asks whether its sender is talking to a person; almost never, and a sled
//! miss costs several µs. Sessions are few (one per conversation with an agent), so all of them
//! are kept in memory: loaded on open, every change written to sled first and then to the
//! mirror, under one lock so the two never disagree.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

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

/// All open sessions by openid (ordered, so listings come out sorted like the tree).
pub(super) struct HandoffMirror(Mutex<BTreeMap<String, HandoffSession>>);

impl HandoffMirror {
    pub(super) fn load(tree: &sled::Tree) -> Result<HandoffMirror, StoreError> {
        let mut map = BTreeMap::new();
        for v in tree.iter().values() {
            let s: HandoffSession = decode_json("handoffs", &v?)?;
            map.insert(s.openid.clone(), s);
        }
        Ok(HandoffMirror(Mutex::new(map)))
    }

    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<String, HandoffSession>>, StoreError> {
        Ok(crate::sync::lock(&self.0))
    }
}

impl Store {
    /// The open session of `openid`, if any.
    pub fn handoff_get(&self, openid: &OpenId) -> Result<Option<HandoffSession>, StoreError> {
        Ok(self
            .inner
            .handoffs_mem
            .lock()?
            .get(openid.as_str())
            .cloned())
    }

    /// Creates or replaces the session keyed by `session.openid`.
    pub fn handoff_put(&self, session: &HandoffSession) -> Result<(), StoreError> {
        check_part("openid", &session.openid)?;
        let mut mem = self.inner.handoffs_mem.lock()?;
        self.db()?
            .handoffs
            .insert(session.openid.as_bytes(), encode_json(session))?;
        mem.insert(session.openid.clone(), session.clone());
        Ok(())
    }

    /// Removes and returns the session of `openid`.
    pub fn handoff_close(&self, openid: &OpenId) -> Result<Option<HandoffSession>, StoreError> {
        let mut mem = self.inner.handoffs_mem.lock()?;
        self.db()?.handoffs.remove(openid.as_str().as_bytes())?;
        Ok(mem.remove(openid.as_str()))
    }

    /// Makes `backend`'s sessions those of the mirror (after the store reopened its data dir:
    /// writes sled had not synced were dropped with the old handle, the mirror kept them).
    pub(super) fn rewrite_handoffs(&self, backend: &super::Backend) -> Result<(), StoreError> {
        let mem = self.inner.handoffs_mem.lock()?;
        let mut batch = sled::Batch::default();
        for k in backend.handoffs.iter().keys() {
            let k = k?;
            if !mem.contains_key(String::from_utf8_lossy(&k).as_ref()) {
                batch.remove(k);
            }
        }
        for s in mem.values() {
            batch.insert(s.openid.as_bytes(), encode_json(s));
        }
        backend.handoffs.apply_batch(batch)?;
        Ok(())
    }

    /// Every open session, ordered by openid.
    pub fn handoffs(&self) -> Result<Vec<HandoffSession>, StoreError> {
        Ok(self.inner.handoffs_mem.lock()?.values().cloned().collect())
    }
}
