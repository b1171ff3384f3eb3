//! Hand-off to human customer service: the session's state machine.
//!
//! A `handoff` rule opens a session: within working hours the push is answered with
//! `transfer_customer_service` and the session is `Open`; outside them the subscriber hears the
//! offline text and the request is `Queued` for the operators. Agents' events move an open
//! session along (`kf_create_session` → `Taken`, `kf_switch_session`, `kf_close_session` closes
//! it). While a session is open or taken, every user message is transferred, except the exit
//! keyword (which closes it with the exit reply) and a message after the idle timeout (which
//! closes it and returns the subscriber to the bot). Idle sessions are also closed by a minute
//! sweep ([`Handoffs::close_idle`]), and operators list and close them ([`Handoffs::list`],
//! [`Handoffs::close`]).
//!
//! Owns the rules of that state machine; the sessions themselves live in the store. May depend
//! on `store` (sessions), `rules` (the action and the `[handoff]` settings), `wechat` (the
//! message and the reply) and `platform::CustomerService` (the notice, which a transfer reply
//! cannot carry).

use crate::platform::{CustomMessage, CustomerService};
use crate::rules::{HandoffAction, RuleSet};
use crate::store::{HandoffSession, HandoffState, Store, StoreError};
use crate::wechat::message::{Event, Inbound, InboundKind};
use crate::wechat::reply::Reply;
use crate::wechat::types::OpenId;

/// The hand-off service: sessions in the store, notices through customer service.
#[derive(Clone)]
pub struct Handoffs {
    store: Store,
    cs: CustomerService,
}

/// A session as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waiting {
    pub waiting_secs: i64,
    pub idle_secs: i64,
    pub session: HandoffSession,
}

impl Handoffs {
    pub fn new(store: Store, cs: CustomerService) -> Self {
        Handoffs { store, cs }
    }

    /// The session's part of a push: `Some(reply)` when the session handles it, `None` when
    /// the bot does.
    pub fn step(
        &self,
        rules: &RuleSet,
        inbound: &Inbound,
        at: i64,
    ) -> Result<Option<Reply>, StoreError> {
        let openid = &inbound.header.from_user;
        let taken = |kf: &str| HandoffState::Taken {
            kf_account: kf.to_string(),
        };
        match &inbound.kind {
            InboundKind::Event(Event::KfCreateSession { kf_account }) => {
                self.update(openid, at, taken(kf_account), Some(kf_account))?;
                return Ok(Some(Reply::None));
            }
            InboundKind::Event(Event::KfSwitchSession { to_kf_account, .. }) => {
                self.update(openid, at, taken(to_kf_account), Some(to_kf_account))?;
                return Ok(Some(Reply::None));
            }
            InboundKind::Event(Event::KfCloseSession { .. }) => {
                self.store.handoff_close(openid)?;
                return Ok(Some(Reply::None));
            }
            _ if !inbound.is_user_message() => return Ok(None),
            _ => {}
        }
        let Some(mut session) = self.store.handoff_get(openid)? else {
            return Ok(None);
        };
        if session.state == HandoffState::Queued {
            return Ok(None);
        }
        if at - session.last_activity > idle_secs(rules) {
            self.store.handoff_close(openid)?;
            return Ok(None);
        }
        if inbound
            .text_for_matching()
            .is_some_and(|t| rules.is_exit_keyword(t))
        {
            self.store.handoff_close(openid)?;
            return Ok(Some(Reply::Text {
                content: rules.handoff().exit_reply.clone(),
            }));
        }
        session.last_activity = at;
        let kf_account = session.kf_account.clone();
        self.store.handoff_put(&session)?;
        Ok(Some(Reply::TransferCustomerService { kf_account }))
    }

    /// A `handoff` rule fired: within working hours the conversation goes to customer service
    /// and a session opens; outside them the subscriber hears so and the request is queued for
    /// the operators.
    pub fn open(
        &self,
        h: &HandoffAction,
        openid: &OpenId,
        rule: Option<&str>,
        at: i64,
    ) -> Result<Reply, StoreError> {
        let rule = rule.unwrap_or_default().to_string();
        let session = |state| HandoffSession {
            openid: openid.as_str().to_string(),
            state,
            kf_account: h.kf_account.clone(),
            opened_at: at,
            last_activity: at,
            rule: rule.clone(),
        };
        if h.in_hours {
            // A transfer reply carries no text, so the notice goes out as a customer-service
            // message.
            if let Some(notice) = h.notice.as_deref().filter(|n| !n.trim().is_empty()) {
                self.cs.send(
                    CustomMessage::Text {
                        to: openid.as_str().to_string(),
                        content: notice.to_string(),
                    },
                    &format!("handoff:{rule}"),
                );
            }
            self.store.handoff_put(&session(HandoffState::Open))?;
            Ok(Reply::TransferCustomerService {
                kf_account: h.kf_account.clone(),
            })
        } else {
            if self.store.handoff_get(openid)?.is_none() {
                self.store.handoff_put(&session(HandoffState::Queued))?;
            }
            Ok(match &h.offline {
                Some(text) => Reply::Text {
                    content: text.clone(),
                },
                None => Reply::None,
            })
        }
    }

    fn update(
        &self,
        openid: &OpenId,
        at: i64,
        state: HandoffState,
        kf: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut session = self
            .store
            .handoff_get(openid)?
            .unwrap_or_else(|| HandoffSession {
                openid: openid.as_str().to_string(),
                state: HandoffState::Open,
                kf_account: None,
                opened_at: at,
                last_activity: at,
                rule: String::new(),
            });
        session.state = state;
        session.kf_account = kf.map(str::to_string);
        session.last_activity = at;
        self.store.handoff_put(&session)
    }

    /// Closes sessions idle for longer than the rules allow (queued requests wait for an
    /// operator and are kept); returns how many.
    pub fn close_idle(&self, rules: &RuleSet, now: i64) -> Result<usize, StoreError> {
        let idle = idle_secs(rules);
        let mut closed = 0;
        for s in self.store.handoffs()? {
            if s.state != HandoffState::Queued && now - s.last_activity > idle {
                self.store.handoff_close(&OpenId::new(s.openid))?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Open and queued sessions, longest waiting first.
    pub fn list(&self, now: i64) -> Result<Vec<Waiting>, StoreError> {
        let mut list = self.store.handoffs()?;
        list.sort_by_key(|s| s.opened_at);
        Ok(list
            .into_iter()
            .map(|session| Waiting {
                waiting_secs: now - session.opened_at,
                idle_secs: now - session.last_activity,
                session,
            })
            .collect())
    }

    /// An operator closes a session; `None` when there was none.
    pub fn close(&self, openid: &OpenId) -> Result<Option<HandoffSession>, StoreError> {
        self.store.handoff_close(openid)
    }
}

fn idle_secs(rules: &RuleSet) -> i64 {
    i64::from(rules.handoff().idle_timeout_minutes) * 60
}
