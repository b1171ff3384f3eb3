//! Human-handoff sessions: at most one per openid, in the `handoffs` tree as JSON, mirrored in
//! memory.
//!
//! Every user message asks whether its sender is talking to a person; almost never, and a sled
//! miss costs several µs. Sessions are few (one per conversation with an agent), so all of them
//! are kept in memory, loaded on open. The mirror is the truth: a change is made there and
//! marked, and the next write-behind period (`period`) writes it with the rest of the push that
//! made it (opening a hand-off and the push's stored answer reach the disk together).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use super::{check_part, decode_json, Store, StoreError};
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

/// All open sessions by openid (ordered, so listings come out sorted like the tree), and the
/// openids whose session changed since the last period.
pub(super) struct HandoffMirror(Mutex<Mirror>);

#[derive(Default)]
struct Mirror {
    sessions: BTreeMap<String, HandoffSession>,
    changed: BTreeSet<String>,
}

/// A session change a period writes: the session, or `None` for a closed one.
pub(super) type HandoffChange = (String, Option<HandoffSession>);

impl HandoffMirror {
    pub(super) fn load(tree: &sled::Tree) -> Result<HandoffMirror, StoreError> {
        let mut map = BTreeMap::new();
        for v in tree.iter().values() {
            let s: HandoffSession = decode_json("handoffs", &v?)?;
            map.insert(s.openid.clone(), s);
        }
        Ok(HandoffMirror(Mutex::new(Mirror {
            sessions: map,
            changed: BTreeSet::new(),
        })))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Mirror>, StoreError> {
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
            .sessions
            .get(openid.as_str())
            .cloned())
    }

    /// Creates or replaces the session keyed by `session.openid` (written behind).
    pub fn handoff_put(&self, session: &HandoffSession) -> Result<(), StoreError> {
        check_part("openid", &session.openid)?;
        let mut mem = self.inner.handoffs_mem.lock()?;
        mem.sessions.insert(session.openid.clone(), session.clone());
        mem.changed.insert(session.openid.clone());
        Ok(())
    }

    /// Removes and returns the session of `openid` (written behind).
    pub fn handoff_close(&self, openid: &OpenId) -> Result<Option<HandoffSession>, StoreError> {
        let mut mem = self.inner.handoffs_mem.lock()?;
        let closed = mem.sessions.remove(openid.as_str());
        if closed.is_some() {
            mem.changed.insert(openid.as_str().to_owned());
        }
        Ok(closed)
    }

    /// Takes the session changes a period writes (called with the commit gate held
    /// exclusively).
    pub(super) fn take_handoff_changes(&self) -> Result<Vec<HandoffChange>, StoreError> {
        let mut mem = self.inner.handoffs_mem.lock()?;
        let changed = std::mem::take(&mut mem.changed);
        Ok(changed
            .into_iter()
            .map(|o| {
                let s = mem.sessions.get(&o).cloned();
                (o, s)
            })
            .collect())
    }

    /// A failed period's changes are marked again, so the next one writes the mirror's
    /// (possibly newer) state of those sessions.
    pub(super) fn restore_handoff_changes(&self, taken: &[HandoffChange]) {
        if let Ok(mut mem) = self.inner.handoffs_mem.lock() {
            mem.changed.extend(taken.iter().map(|(o, _)| o.clone()));
        }
    }

    /// Every open session, ordered by openid.
    pub fn handoffs(&self) -> Result<Vec<HandoffSession>, StoreError> {
        Ok(self
            .inner
            .handoffs_mem
            .lock()?
            .sessions
            .values()
            .cloned()
            .collect())
    }
}
