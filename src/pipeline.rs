//! One push through mpgate, with no HTTP in sight: authenticate → decrypt → parse → dedupe →
//! subscriber state → rules → special actions (paywall, handoff) → reply XML → seal.
//!
//! [`Gateway::post`] is what `POST /wechat` calls and what the in-process benchmark drives.
//! Errors are [`CallbackError`]s, which the HTTP layer maps to statuses in one place.
//!
//! May depend on: `wechat`, `rules`, `reload`, `store`, `paywall`, `settings`; never actix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Notify;

use crate::paywall::LinkSigner;
use crate::platform::webhook::{WebhookClient, WebhookPayload};
use crate::platform::CustomMessage;
use crate::reload::LiveRules;
use crate::rules::{Decision, HandoffAction, RuleSet, Special, SubscriberView, WebhookAction};
use crate::settings::Settings;
use crate::store::{Counter, HandoffSession, HandoffState, Store, StoredAnswer};
use crate::wechat::crypto::{Cipher, CryptoError};
use crate::wechat::message::{self, Event, Inbound, InboundKind};
use crate::wechat::reply::{self, Article, Rendered, Reply, ReplyContext};
use crate::wechat::signature;
use crate::wechat::types::{AppId, OpenId, Token};

/// The query string of a callback request, as the platform sends it.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct CallbackQuery {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
    pub openid: Option<String>,
}

/// Why a callback request is refused. Every variant is the client's fault except `Store`.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("missing query parameter `{0}`")]
    MissingParam(&'static str),
    #[error("query parameter `timestamp` is not a unix time")]
    BadTimestamp,
    #[error("timestamp outside the accepted window ({skew_secs} s from server time): refused as a replay")]
    Replay { skew_secs: i64 },
    #[error("signature mismatch")]
    BadSignature,
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    #[error("encrypted push, but this server has no EncodingAESKey configured")]
    NoAesKey,
    #[error("plaintext push refused: this server is configured for encrypted (safe) mode")]
    PlaintextRefused,
    #[error("bad XML: {0}")]
    BadXml(String),
    #[error("no <Encrypt> element in an encrypted push")]
    NoEncrypt,
    #[error("cannot decrypt push ({code}): {reason}")]
    Decrypt { code: i32, reason: String },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("shutting down")]
    Unavailable,
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, CallbackError> {
    v.as_deref().ok_or(CallbackError::MissingParam(name))
}

/// What came in, once authenticated: which key opened it, if any.
struct Opened {
    inbound: Inbound,
    /// Index into `Gateway::ciphers` of the key that decrypted the push; `None` for plaintext.
    key: Option<usize>,
}

/// One push being handled: its answer once known, and a bell for the retries waiting on it.
///
/// Lighter than a `watch` channel (one `Notify`, rung once, instead of eight behind a lock on
/// every send): nearly every push has no retry waiting on it.
#[derive(Default)]
struct Inflight {
    /// Set once the answer is in the dedupe memory: a waiting retry reads it from there, as a
    /// later retry would. (Nearly no push has a waiter, so nothing is copied for one.)
    answered: AtomicBool,
    /// Set when the leader's future ends, answered or not; a waiter that sees it without an
    /// answer becomes the leader.
    ended: AtomicBool,
    bell: Notify,
}

/// Long-lived state for handling pushes.
pub struct Gateway {
    token: Token,
    app_id: AppId,
    /// Current key first, then the previous one (rotation).
    ciphers: Vec<Cipher>,
    allow_plaintext: bool,
    replay_window: Option<Duration>,
    store: Store,
    rules: LiveRules,
    signer: LinkSigner,
    public_url: String,
    link_ttl: Duration,
    /// Customer-service messages (handoff notices, late answers); `None` without an AppSecret.
    outbox: Option<crate::platform::OutboxHandle>,
    webhook: WebhookClient,
    /// Pushes being handled right now, by dedupe key: a retry that arrives meanwhile waits here.
    inflight: Mutex<foldhash::HashMap<String, Arc<Inflight>>>,
}

/// Removes an in-flight entry however the leader's future ends (answer, error or cancellation),
/// then wakes its waiters: they take the answer, or loop and one of them leads.
struct InflightGuard<'a> {
    map: &'a Mutex<foldhash::HashMap<String, Arc<Inflight>>>,
    key: &'a str,
    slot: Arc<Inflight>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(self.key);
        }
        self.slot.ended.store(true, Ordering::Release);
        self.slot.bell.notify_waiters();
    }
}

/// How long a retry waits for the first attempt's answer before handling the push itself.
const INFLIGHT_WAIT: Duration = Duration::from_secs(4);

impl Gateway {
    pub fn new(
        settings: &Settings,
        store: Store,
        rules: LiveRules,
        link_secret: [u8; 32],
    ) -> Gateway {
        let ciphers = settings
            .encoding_aes_key
            .iter()
            .chain(settings.encoding_aes_key_previous.iter())
            .map(Cipher::new)
            .collect();
        Gateway {
            token: settings.token.clone(),
            app_id: settings.app_id.clone(),
            ciphers,
            allow_plaintext: settings.allow_plaintext,
            replay_window: settings.replay_window,
            store,
            rules,
            signer: LinkSigner::new(link_secret),
            public_url: settings.public_url.clone(),
            link_ttl: settings.link_ttl,
            outbox: None,
            webhook: WebhookClient::new(settings.webhook_secret.clone()),
            inflight: Mutex::new(foldhash::HashMap::default()),
        }
    }

    /// Enables messages outside the passive reply (needs the platform client).
    pub fn with_outbox(mut self, outbox: Option<crate::platform::OutboxHandle>) -> Gateway {
        self.outbox = outbox;
        self
    }

    /// Queues a customer-service message; logs and drops it when the platform client is off.
    fn send_later(&self, msg: CustomMessage, origin: &str) {
        match &self.outbox {
            Some(o) => {
                if let Err(e) = o.enqueue(msg, origin) {
                    tracing::error!(error = %e, origin, "cannot queue a customer-service message");
                }
            }
            None => tracing::debug!(
                origin,
                "customer-service message skipped: no MPGATE_APP_SECRET"
            ),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn rules(&self) -> &LiveRules {
        &self.rules
    }

    pub fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    /// `GET /wechat`: URL verification. Answers `echostr` when the 3-field signature holds.
    ///
    /// No replay window here: verification changes nothing, and the console's check may be
    /// repeated with the same parameters.
    pub fn verify_url(&self, q: &CallbackQuery) -> Result<String, CallbackError> {
        let sig = required(&q.signature, "signature")?;
        let ts = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let echostr = required(&q.echostr, "echostr")?;
        if !signature::verify(sig, &[self.token.expose(), ts, nonce]) {
            return Err(CallbackError::BadSignature);
        }
        Ok(echostr.to_string())
    }

    /// `POST /wechat`: the whole pipeline. Returns the response body.
    pub async fn post(
        &self,
        q: &CallbackQuery,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Answer, CallbackError> {
        let opened = self.open(q, body, now)?;
        let label = opened.inbound.type_label().to_string();
        let plain = self.answer(&opened.inbound, now).await?;
        let body = match opened.key {
            _ if plain.is_empty() => "success".to_string(),
            None => plain,
            Some(k) => {
                // The platform's reference code echoes the URL nonce in the reply envelope.
                let nonce = q.nonce.as_deref().unwrap_or_default();
                reply::seal(
                    &self.ciphers[k],
                    &self.app_id,
                    &self.token,
                    &plain,
                    now.timestamp(),
                    nonce,
                )
            }
        };
        Ok(Answer {
            body,
            msg_type: label,
            encrypted: opened.key.is_some(),
        })
    }

    /// Authenticates and decrypts a push into a typed message.
    fn open(
        &self,
        q: &CallbackQuery,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Opened, CallbackError> {
        let ts = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let ts_num: i64 = ts.trim().parse().map_err(|_| CallbackError::BadTimestamp)?;
        if let Some(window) = self.replay_window {
            let skew = now.timestamp() - ts_num;
            if skew.unsigned_abs() > window.as_secs() {
                return Err(CallbackError::Replay { skew_secs: skew });
            }
        }
        let text = std::str::from_utf8(body).map_err(|_| CallbackError::InvalidUtf8)?;
        let encrypted = q
            .encrypt_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("aes"));
        if encrypted {
            if self.ciphers.is_empty() {
                return Err(CallbackError::NoAesKey);
            }
            let msg_sig = required(&q.msg_signature, "msg_signature")?;
            let env =
                message::parse_envelope(text).map_err(|e| CallbackError::BadXml(e.to_string()))?;
            let enc = env.encrypt.ok_or(CallbackError::NoEncrypt)?;
            // Verify before decrypting: integrity comes only from the signature.
            if !signature::verify(msg_sig, &[self.token.expose(), ts, nonce, &enc]) {
                return Err(CallbackError::BadSignature);
            }
            let mut last: Option<CryptoError> = None;
            for (i, c) in self.ciphers.iter().enumerate() {
                match c.decrypt(&enc, &self.app_id) {
                    Ok(xml) => {
                        if i > 0 {
                            tracing::warn!("push decrypted with the PREVIOUS EncodingAESKey; finish the key rotation");
                        }
                        let inbound = message::parse(&xml)
                            .map_err(|e| CallbackError::BadXml(e.to_string()))?;
                        return Ok(Opened {
                            inbound,
                            key: Some(i),
                        });
                    }
                    Err(e) => last = Some(e),
                }
            }
            let e = last.expect("at least one cipher was tried");
            Err(CallbackError::Decrypt {
                code: e.code(),
                reason: e.to_string(),
            })
        } else {
            if !self.ciphers.is_empty() && !self.allow_plaintext {
                return Err(CallbackError::PlaintextRefused);
            }
            let sig = required(&q.signature, "signature")?;
            if !signature::verify(sig, &[self.token.expose(), ts, nonce]) {
                return Err(CallbackError::BadSignature);
            }
            let inbound = message::parse(text).map_err(|e| CallbackError::BadXml(e.to_string()))?;
            Ok(Opened { inbound, key: None })
        }
    }

    /// The plaintext reply XML for a push ("" = `success`), exactly once per dedupe key.
    ///
    /// A retry of an answered push gets the stored reply; a retry that arrives while the first
    /// attempt is still being handled waits for its answer. Side effects happen only in the
    /// leader.
    async fn answer(&self, inbound: &Inbound, now: DateTime<Utc>) -> Result<String, CallbackError> {
        let key = inbound.dedupe_key();
        loop {
            let (slot, leader) = {
                let mut map = self
                    .inflight
                    .lock()
                    .map_err(|_| CallbackError::Unavailable)?;
                match map.get(&key) {
                    Some(slot) => (slot.clone(), false),
                    None => {
                        let slot = Arc::new(Inflight::default());
                        map.insert(key.clone(), slot.clone());
                        (slot, true)
                    }
                }
            };
            if !leader {
                // Armed before the checks, so a bell rung between them is not missed.
                let rung = slot.bell.notified();
                tokio::pin!(rung);
                rung.as_mut().enable();
                if !slot.answered.load(Ordering::Acquire) && !slot.ended.load(Ordering::Acquire) {
                    // On timeout, loop: wait again, or lead if the leader is gone.
                    let _ = tokio::time::timeout(INFLIGHT_WAIT, rung).await;
                }
                if slot.answered.load(Ordering::Acquire) {
                    // Put before `answered` was set, and kept for the whole retention.
                    if let Some(stored) = self.store.dedupe_get(&key)? {
                        return Ok(replay(&stored, inbound));
                    }
                }
                // The leader failed or was cancelled: loop, and become the leader.
                continue;
            }
            let guard = InflightGuard {
                map: &self.inflight,
                key: &key,
                slot,
            };
            if let Some(stored) = self.store.dedupe_get(&key)? {
                guard.slot.answered.store(true, Ordering::Release);
                return Ok(replay(&stored, inbound));
            }
            let rendered = match self.handle(inbound, now)? {
                Handled::Done(rendered) => rendered,
                Handled::Webhook { call, payload } => {
                    self.webhook_answer(inbound, call, *payload, now).await
                }
            };
            // Every reply is rendered with `now` as its CreateTime: the stored time gives it back.
            // Stored headless: the head is ~40 % of a reply, and `replay` rebuilds it.
            let body = rendered.as_ref().map_or("", Rendered::tail);
            let answer = StoredAnswer {
                at: now.timestamp(),
                body,
                headless: true,
            };
            self.store.dedupe_put(&key, &answer)?;
            guard.slot.answered.store(true, Ordering::Release);
            return Ok(rendered.map(Rendered::into_xml).unwrap_or_default());
        }
    }

    /// Waits for the operator's endpoint at most the rule's timeout. A late answer is not
    /// lost: the push is answered `success` now and the answer follows as a customer-service
    /// message. A failure gets the rule's fallback.
    async fn webhook_answer(
        &self,
        inbound: &Inbound,
        call: WebhookAction,
        payload: WebhookPayload,
        now: DateTime<Utc>,
    ) -> Option<Rendered> {
        let client = self.webhook.clone();
        let url = call.url.clone();
        let origin = format!("webhook:{}", payload.rule);
        let mut task = tokio::spawn(async move { client.call(&url, &payload).await });
        let fallback = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, origin = %origin, "webhook failed; answering with the fallback");
            call.fallback.clone()
        };
        let text = match tokio::time::timeout(call.timeout, &mut task).await {
            Ok(Ok(Ok(text))) => text,
            Ok(Ok(Err(e))) => fallback(&e),
            Ok(Err(e)) => fallback(&e),
            Err(_) => {
                tracing::info!(origin = %origin, "webhook slower than its budget; answering later");
                let outbox = self.outbox.clone();
                let to = inbound.header.from_user.as_str().to_string();
                let late_fallback = call.fallback.clone();
                tokio::spawn(async move {
                    let text = match task.await {
                        Ok(Ok(text)) => text,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, origin = %origin, "late webhook failed");
                            late_fallback
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, origin = %origin, "late webhook task failed");
                            late_fallback
                        }
                    };
                    match (text, outbox) {
                        (Some(content), Some(o)) => {
                            if let Err(e) = o.enqueue(CustomMessage::Text { to, content }, &origin)
                            {
                                tracing::error!(error = %e, "cannot queue the late webhook answer");
                            }
                        }
                        (Some(_), None) => {
                            tracing::warn!(
                                "late webhook answer dropped: MPGATE_APP_SECRET is not set"
                            )
                        }
                        (None, _) => {}
                    }
                });
                return None;
            }
        };
        text.and_then(|content| self.render(&Reply::Text { content }, inbound, now.timestamp()))
    }

    /// The side effects and the decision for one new push: the reply (`None` = `success`), or
    /// a webhook still to ask.
    fn handle(&self, inbound: &Inbound, now: DateTime<Utc>) -> Result<Handled, CallbackError> {
        let rules = self.rules.current();
        let tz = rules.timezone();
        let day = tz.from_utc_datetime(&now.naive_utc()).date_naive();
        let at = now.timestamp();
        let openid = &inbound.header.from_user;
        self.store.count(
            Counter::Push {
                msg_type: inbound.type_label().to_string(),
            },
            day,
            1,
        );

        let (subscriber, first_time) = match &inbound.kind {
            InboundKind::Event(Event::Subscribe { scene, .. }) => {
                let out = self.store.on_subscribe(openid, scene.as_deref(), at)?;
                self.store.count(
                    Counter::Subscribe {
                        channel: scene.clone().unwrap_or_default(),
                    },
                    day,
                    1,
                );
                (out.subscriber, out.first_time)
            }
            InboundKind::Event(Event::Unsubscribe) => {
                let channel = self
                    .store
                    .subscriber(openid)?
                    .and_then(|s| s.channel)
                    .unwrap_or_default();
                self.store.on_unsubscribe(openid, at)?;
                self.store.count(Counter::Unsubscribe { channel }, day, 1);
                // Nothing can be shown to someone who just left.
                return Ok(Handled::Done(None));
            }
            _ => (
                self.store.touch(openid, at, inbound.is_user_message())?,
                false,
            ),
        };

        // While a person is handling the conversation, no bot rule fires.
        if let Some(reply) = self.handoff_step(&rules, inbound, at)? {
            return Ok(Handled::Done(self.render(&reply, inbound, at)));
        }

        let view = SubscriberView {
            openid,
            first_time,
            channel: subscriber.channel.as_deref(),
            tags: &subscriber.tags,
            subscribed_since: subscriber.first_subscribed,
        };
        let decision: Decision = rules.route(inbound, &view, now);
        if let Some(rule) = &decision.rule {
            self.store
                .count(Counter::RuleHit { rule: rule.clone() }, day, 1);
        }
        if !decision.add_tags.is_empty() {
            self.store.add_tags(openid, &decision.add_tags)?;
        }
        let reply = match &decision.special {
            None => decision.reply.clone(),
            Some(Special::Article { id }) => self.article_reply(&rules, id, openid, now, day)?,
            Some(Special::Handoff(h)) => {
                self.open_handoff(h, openid, decision.rule.as_deref(), at)?
            }
            Some(Special::Webhook(call)) => {
                let payload = WebhookPayload {
                    openid: openid.as_str().to_string(),
                    msg_type: inbound.type_label().to_string(),
                    text: inbound.text_for_matching().map(str::to_string),
                    event_key: event_key(inbound),
                    create_time: inbound.header.create_time,
                    rule: decision.rule.clone().unwrap_or_default(),
                    tags: subscriber.tags.clone(),
                    channel: subscriber.channel.clone(),
                };
                return Ok(Handled::Webhook {
                    call: call.clone(),
                    payload: Box::new(payload),
                });
            }
        };
        Ok(Handled::Done(self.render(&reply, inbound, at)))
    }

    /// The reply's XML with `at` as its CreateTime; `None` for `success`.
    fn render(&self, reply: &Reply, inbound: &Inbound, at: i64) -> Option<Rendered> {
        // A passive reply cuts text at TEXT_MAX_BYTES. With the platform client on, a longer
        // text goes out whole as customer-service messages instead, and the push is answered
        // `success`.
        if let (Reply::Text { content }, Some(_)) = (reply, &self.outbox) {
            if content.len() > reply::TEXT_MAX_BYTES {
                self.send_later(
                    CustomMessage::Text {
                        to: inbound.header.from_user.as_str().to_string(),
                        content: content.clone(),
                    },
                    "long-reply",
                );
                return None;
            }
        }
        reply::render_parts(reply, &reply_context(inbound, at))
    }

    /// A `handoff` rule fired: within working hours the conversation goes to customer service
    /// and a session opens; outside them the subscriber hears so and the request is queued for
    /// the operators.
    fn open_handoff(
        &self,
        h: &HandoffAction,
        openid: &OpenId,
        rule: Option<&str>,
        at: i64,
    ) -> Result<Reply, CallbackError> {
        let rule = rule.unwrap_or_default().to_string();
        if h.in_hours {
            // A transfer reply carries no text, so the notice goes out as a customer-service
            // message.
            if let Some(notice) = h.notice.as_deref().filter(|n| !n.trim().is_empty()) {
                self.send_later(
                    CustomMessage::Text {
                        to: openid.as_str().to_string(),
                        content: notice.to_string(),
                    },
                    &format!("handoff:{rule}"),
                );
            }
            self.store.handoff_put(&HandoffSession {
                openid: openid.as_str().to_string(),
                state: HandoffState::Open,
                kf_account: h.kf_account.clone(),
                opened_at: at,
                last_activity: at,
                rule,
            })?;
            Ok(Reply::TransferCustomerService {
                kf_account: h.kf_account.clone(),
            })
        } else {
            if self.store.handoff_get(openid)?.is_none() {
                self.store.handoff_put(&HandoffSession {
                    openid: openid.as_str().to_string(),
                    state: HandoffState::Queued,
                    kf_account: h.kf_account.clone(),
                    opened_at: at,
                    last_activity: at,
                    rule,
                })?;
            }
            Ok(match &h.offline {
                Some(text) => Reply::Text {
                    content: text.clone(),
                },
                None => Reply::None,
            })
        }
    }

    /// The customer-service session's part of a push: agents' events move it along, and while
    /// it is open every user message is transferred, except the exit keyword and after the idle
    /// timeout, which return the subscriber to the bot. `None`: the bot handles the push.
    fn handoff_step(
        &self,
        rules: &RuleSet,
        inbound: &Inbound,
        at: i64,
    ) -> Result<Option<Reply>, CallbackError> {
        let openid = &inbound.header.from_user;
        let taken = |kf: &str| HandoffState::Taken {
            kf_account: kf.to_string(),
        };
        match &inbound.kind {
            InboundKind::Event(Event::KfCreateSession { kf_account }) => {
                self.update_handoff(openid, at, taken(kf_account), Some(kf_account))?;
                return Ok(Some(Reply::None));
            }
            InboundKind::Event(Event::KfSwitchSession { to_kf_account, .. }) => {
                self.update_handoff(openid, at, taken(to_kf_account), Some(to_kf_account))?;
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
        let idle = i64::from(rules.handoff().idle_timeout_minutes) * 60;
        if at - session.last_activity > idle {
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

    fn update_handoff(
        &self,
        openid: &OpenId,
        at: i64,
        state: HandoffState,
        kf: Option<&str>,
    ) -> Result<(), CallbackError> {
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
        self.store.handoff_put(&session)?;
        Ok(())
    }

    /// Closes sessions idle for longer than the rules allow; returns how many.
    pub fn close_idle_handoffs(&self, now: i64) -> Result<usize, CallbackError> {
        let idle = i64::from(self.rules.current().handoff().idle_timeout_minutes) * 60;
        let mut closed = 0;
        for s in self.store.handoffs()? {
            if s.state != HandoffState::Queued && now - s.last_activity > idle {
                self.store.handoff_close(&OpenId::new(s.openid))?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// An entitled subscriber gets the article with a link signed for them; anyone else the teaser.
    fn article_reply(
        &self,
        rules: &RuleSet,
        id: &str,
        openid: &OpenId,
        now: DateTime<Utc>,
        day: chrono::NaiveDate,
    ) -> Result<Reply, CallbackError> {
        let Some(a) = rules.article(id) else {
            // `check` refuses unknown ids, so this is a reload race at worst.
            return Ok(Reply::None);
        };
        if self.store.is_entitled(openid, id)? {
            let expires = now.timestamp() + self.link_ttl.as_secs() as i64;
            let url = self
                .signer
                .url(&self.public_url, id, openid.as_str(), expires);
            self.store.count(
                Counter::LinkIssued {
                    article: id.to_string(),
                },
                day,
                1,
            );
            Ok(Reply::News {
                articles: vec![Article {
                    title: a.title.clone(),
                    description: a.teaser.clone(),
                    pic_url: a.cover.clone(),
                    url,
                }],
            })
        } else {
            self.store.count(
                Counter::TeaserShown {
                    article: id.to_string(),
                },
                day,
                1,
            );
            let description = if a.price.is_empty() {
                a.teaser.clone()
            } else {
                format!("{}\n{}", a.teaser, a.price)
            };
            Ok(Reply::News {
                articles: vec![Article {
                    title: format!("🔒 {}", a.title),
                    description,
                    pic_url: a.cover.clone(),
                    // Without a shop link, the paywall page explains how to buy.
                    url: a.purchase_url.clone().unwrap_or_else(|| {
                        format!(
                            "{}/a/{}",
                            self.public_url,
                            crate::paywall::percent_encode(id)
                        )
                    }),
                }],
            })
        }
    }
}

/// Who a reply to `inbound` goes to, and its CreateTime.
fn reply_context(inbound: &Inbound, at: i64) -> ReplyContext<'_> {
    ReplyContext {
        to_user: inbound.header.from_user.as_str(),
        from_user: &inbound.header.to_user,
        create_time: at,
        after_user_message: inbound.is_user_message(),
    }
}

/// The reply XML a stored answer stands for, for a retry of the push it answered: a headless
/// one (the reply's XML after its head: `<xml>`, the addresses and `CreateTime`) gets its head
/// back from the retry's own addresses and the answer's time, which is what the first attempt
/// got. Answers stored before headless ones existed are whole replies.
fn replay(stored: &StoredAnswer, inbound: &Inbound) -> String {
    if stored.headless {
        reply::with_head(&stored.body, &reply_context(inbound, stored.at))
    } else {
        stored.body.to_string()
    }
}

/// What [`Gateway::handle`] decided.
enum Handled {
    /// The reply, or `None` for `success`.
    Done(Option<Rendered>),
    /// The reply depends on the operator's endpoint.
    Webhook {
        call: WebhookAction,
        payload: Box<WebhookPayload>,
    },
}

/// The key an event carries (menu key, QR scene), for webhook payloads.
fn event_key(inbound: &Inbound) -> Option<String> {
    match &inbound.kind {
        InboundKind::Event(e) => match e {
            Event::Subscribe {
                scene, event_key, ..
            } => scene.clone().or_else(|| event_key.clone()),
            Event::Scan { scene, .. } => Some(scene.clone()),
            Event::Click { key }
            | Event::ScancodePush { key, .. }
            | Event::ScancodeWaitmsg { key, .. }
            | Event::PicSysphoto { key, .. }
            | Event::PicPhotoOrAlbum { key, .. }
            | Event::PicWeixin { key, .. }
            | Event::LocationSelect { key, .. } => Some(key.clone()),
            Event::View { url, .. } => Some(url.clone()),
            Event::Unknown { event_key, .. } => event_key.clone(),
            _ => None,
        },
        _ => None,
    }
}

/// A response body and what to log about it.
#[derive(Debug)]
pub struct Answer {
    pub body: String,
    pub msg_type: String,
    pub encrypted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use crate::wechat::crypto::EncodingAesKey;

    const TOKEN: &str = "pipelinetoken";
    const APP_ID: &str = "wx00000000000000aa";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    /// A gateway whose only rule calls a webhook that accepts the connection and never answers,
    /// with a 600 ms budget.
    fn gateway(dir: &std::path::Path, hook: &std::net::TcpListener) -> Gateway {
        let rules = dir.join("keywords.toml");
        std::fs::write(
            &rules,
            format!(
                "[[rule]]\nname = \"hang\"\nwhen = {{ exact = [\"hang\"] }}\nwebhook = {{ url = \"http://{}/hook\", timeout_ms = 600, fallback = \"fallback\" }}\n",
                hook.local_addr().unwrap()
            ),
        )
        .unwrap();
        let data = dir.join("data");
        let settings = Settings::for_tests(&[
            ("MPGATE_TOKEN", TOKEN),
            ("MPGATE_APP_ID", APP_ID),
            ("MPGATE_ENCODING_AES_KEY", KEY),
            ("MPGATE_DATA_DIR", data.to_str().unwrap()),
        ])
        .unwrap();
        let store = Store::open(&data, StoreConfig::default()).unwrap();
        let rules = RuleSet::load(&rules).unwrap().rules;
        let secret = store.link_secret().unwrap();
        Gateway::new(&settings, store, LiveRules::new(rules), secret)
    }

    fn push(now: DateTime<Utc>, nonce: &str) -> (CallbackQuery, String) {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oWaiter]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hang]]></Content><MsgId>424242</MsgId></xml>",
            now.timestamp()
        );
        let cipher = Cipher::new(&EncodingAesKey::parse(KEY).unwrap());
        let enc = cipher.encrypt(&xml, &AppId::new(APP_ID));
        let ts = now.timestamp().to_string();
        let q = CallbackQuery {
            timestamp: Some(ts.clone()),
            nonce: Some(nonce.into()),
            encrypt_type: Some("aes".into()),
            msg_signature: Some(signature::sign(&[TOKEN, &ts, nonce, &enc])),
            ..Default::default()
        };
        (
            q,
            format!("<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"),
        )
    }

    /// The platform gives up on a connection after 5 s and retries; if the first attempt's
    /// future is dropped meanwhile, the retry waiting on it must take over at once, not sit out
    /// its whole wait.
    #[tokio::test]
    async fn a_retry_waiting_on_a_cancelled_first_attempt_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gw = gateway(dir.path(), &hook);
        let now = Utc::now();
        let (q1, b1) = push(now, "n1");
        let (q2, b2) = push(now, "n2");
        let started = std::time::Instant::now();
        let first =
            tokio::time::timeout(Duration::from_millis(150), gw.post(&q1, b1.as_bytes(), now));
        let retry = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let a = gw.post(&q2, b2.as_bytes(), now).await;
            (a, started.elapsed())
        };
        let (first, (retry, took)) = tokio::join!(first, retry);
        assert!(first.is_err(), "the first attempt was cut off mid-webhook");
        // Led by the retry from 150 ms: its own 600 ms budget runs out, so `success` now (the
        // late answer would go out as a customer-service message).
        assert_eq!(retry.unwrap().body, "success");
        assert!(
            took < Duration::from_millis(2500),
            "the retry waited {took:?} for a leader that was gone"
        );
        assert!(
            gw.inflight.lock().unwrap().is_empty(),
            "no entry is left behind"
        );
    }
}
