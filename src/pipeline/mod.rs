//! One push through mpgate, with no HTTP in sight: authenticate and open it ([`auth`]), lead it
//! or wait for the attempt that does ([`single_flight`]), record what it changes about its
//! subscriber ([`state`]), let an open hand-off take it ([`crate::handoff`]), route it through
//! the rules, carry out the rule's action (a reply, the paywall's answer, a hand-off, a
//! webhook, the assistant), remember the answer for retries, and seal it.
//!
//! An assistant question outlives the request that asked it ([`crate::assistant`]): its
//! answer is taken by whichever of the platform's requests for the push is open when it is
//! ready, so those requests look for it before the single flight and the stored answers.
//!
//! [`Gateway::post`] is what `POST /wechat` calls and what the in-process benchmark drives.
//! The pipeline orchestrates: each decision lives in the module named above, and this file only
//! puts them in order. Errors are [`CallbackError`]s, which the HTTP layer maps to statuses in
//! one place (`http::error`).
//!
//! May depend on: `wechat`, `rules`, `reload`, `store`, `paywall`, `handoff`, `platform`,
//! `assistant`, `settings`, `metrics` (each push counted and timed once, in [`Gateway::post`]); never actix.

pub mod auth;
pub mod single_flight;
mod state;

use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};

use crate::assistant::{flight::Held, Assistant, Intercept, Prepared};
use crate::handoff::Handoffs;
use crate::metrics::{Metrics, Outcome, PushType, RetryFrom};
use crate::operator::Operator;
use crate::paywall::{LinkSigner, Paywall};
use crate::platform::webhook::{WebhookClient, WebhookPayload};
use crate::platform::{CustomMessage, CustomerService};
use crate::reload::LiveRules;
use crate::rules::{Decision, Special, SubscriberView, WebhookAction};
use crate::settings::Settings;
use crate::store::{Store, StoredAnswer};
use crate::wechat::message::{Event, Inbound, InboundKind};
use crate::wechat::reply::{self, Rendered, Reply, ReplyContext};

use auth::Auth;
use single_flight::{SingleFlight, Turn};

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
}

/// Long-lived state for handling pushes: the services each step calls.
pub struct Gateway {
    auth: Auth,
    store: Store,
    rules: LiveRules,
    paywall: Paywall,
    handoffs: Handoffs,
    operator: Operator,
    /// Customer-service messages (hand-off notices, late answers, long texts); off without an
    /// AppSecret.
    cs: CustomerService,
    webhook: WebhookClient,
    /// Pushes being handled right now: a retry that arrives meanwhile waits there.
    flights: SingleFlight,
    /// WeChat Pay from the paywall page; off without `MPGATE_PAY_*`.
    payments: Option<crate::pay::Payments>,
    /// This gateway's own registry (`/metrics`); lent to the jobs start-up spawns.
    metrics: Metrics,
    /// The `assistant` rule action: questions being answered, memory, quotas.
    assistant: Assistant,
}

impl Gateway {
    pub fn new(
        settings: &Settings,
        store: Store,
        rules: LiveRules,
        link_secret: [u8; 32],
    ) -> Gateway {
        let cs = CustomerService::default();
        let metrics = Metrics::new();
        let paywall = Paywall::new(
            store.clone(),
            LinkSigner::new(link_secret),
            settings.public_url.clone(),
            settings.link_ttl,
        );
        Gateway {
            auth: Auth::new(settings),
            assistant: Assistant::new(
                settings,
                store.clone(),
                paywall.clone(),
                cs.clone(),
                metrics.clone(),
            ),
            paywall,
            handoffs: Handoffs::new(store.clone(), cs.clone()),
            operator: Operator::new(store.clone()),
            store,
            rules,
            cs,
            webhook: WebhookClient::new(settings.webhook_secret.clone())
                .with_metrics(metrics.clone()),
            flights: SingleFlight::default(),
            payments: None,
            metrics,
        }
    }

    /// Turns on selling from the paywall page.
    pub fn with_payments(mut self, cfg: Option<crate::pay::PayConfig>) -> Gateway {
        if let Some(cfg) = cfg {
            self.paywall = self.paywall.clone().selling(true);
            self.payments = Some(
                crate::pay::Payments::new(
                    cfg,
                    self.store.clone(),
                    self.paywall.clone(),
                    self.rules.clone(),
                )
                .with_metrics(self.metrics.clone()),
            );
        }
        self
    }

    pub fn payments(&self) -> Option<&crate::pay::Payments> {
        self.payments.as_ref()
    }

    /// Enables messages outside the passive reply (needs the platform client).
    pub fn with_outbox(self, outbox: Option<crate::platform::OutboxHandle>) -> Gateway {
        self.with_cs(CustomerService::new(outbox))
    }

    /// Lets the assistant show the typing indicator while a late answer is written.
    pub fn with_platform_client(self, client: Option<crate::platform::PlatformClient>) -> Gateway {
        let cs = self.cs.clone().with_client(client);
        self.with_cs(cs)
    }

    /// Every service that sends outside the passive reply, through `cs`.
    fn with_cs(mut self, cs: CustomerService) -> Gateway {
        self.handoffs = Handoffs::new(self.store.clone(), cs.clone());
        self.assistant = self.assistant.clone().with_cs(cs.clone());
        self.cs = cs;
        self
    }

    /// The assistant, for the operator's commands (forgetting a subscriber's memory).
    pub fn assistant(&self) -> &Assistant {
        &self.assistant
    }

    /// The store, for process wiring (start-up, shutdown flush) and the benchmark probes.
    /// Request handlers use the narrow services below instead.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the store can write (and why not): what `/healthz` reports.
    pub fn store_health(&self) -> crate::store::Health {
        self.store.health()
    }

    pub fn rules(&self) -> &LiveRules {
        &self.rules
    }

    pub fn paywall(&self) -> &Paywall {
        &self.paywall
    }

    pub fn handoffs(&self) -> &Handoffs {
        &self.handoffs
    }

    pub fn operator(&self) -> &Operator {
        &self.operator
    }

    /// What `/metrics` counts; start-up hands clones to the jobs it spawns.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `/metrics`' text: the counts, and the figures read from the store and the rules now.
    /// Reads the store (bounded: see [`crate::metrics`]); call it off the async workers.
    pub fn render_metrics(&self, now: DateTime<Utc>) -> String {
        let today = self.today(now);
        let following = self
            .analytics()
            .growth(crate::analytics::Range::last(1, today), None)
            .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read the followers"))
            .ok()
            .and_then(|days| days.last().map(|d| d.cumulative));
        self.metrics.render(&crate::metrics::Scrape {
            store: &self.store,
            rules: &self.rules,
            following,
            today,
        })
    }

    /// The operators' figures over this gateway's store.
    pub fn analytics(&self) -> crate::analytics::Analytics {
        crate::analytics::Analytics::new(self.store.clone())
    }

    /// Today in the account's time zone (the live rules'), the day every figure is counted on.
    pub fn today(&self, now: DateTime<Utc>) -> chrono::NaiveDate {
        self.rules
            .current()
            .timezone()
            .from_utc_datetime(&now.naive_utc())
            .date_naive()
    }

    /// `GET /wechat`: URL verification.
    pub fn verify_url(&self, q: &CallbackQuery) -> Result<String, CallbackError> {
        self.auth.verify_url(q)
    }

    /// `POST /wechat`: the whole pipeline. Returns the response body.
    pub async fn post(
        &self,
        q: &CallbackQuery,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Answer, CallbackError> {
        let started = Instant::now();
        let opened = self
            .auth
            .open(q, body, now)
            .inspect_err(|e| self.metrics.refused(e))?;
        let kind = PushType::of(&opened.inbound);
        let label = opened.inbound.type_label().to_string();
        let answered = self.answer(&opened.inbound, now, started).await;
        let outcome = match &answered {
            Ok((_, Some(from))) => {
                self.metrics.retry(*from);
                Outcome::Retry
            }
            Ok((plain, None)) if plain.is_empty() => Outcome::Success,
            Ok(_) => Outcome::Replied,
            Err(_) => Outcome::Error,
        };
        self.metrics.push(kind, outcome, Some(started.elapsed()));
        let (plain, _) = answered?;
        Ok(Answer {
            body: self.auth.seal(&opened, plain, q, now),
            msg_type: label,
            encrypted: opened.encrypted(),
        })
    }

    /// The plaintext reply XML for a push ("" = `success`), exactly once per dedupe key, and
    /// for a retry, where its answer came from.
    ///
    /// A retry of an answered push gets the stored reply; a retry that arrives while the first
    /// attempt is still being handled waits for its answer. Side effects happen only in the
    /// leader.
    async fn answer(
        &self,
        inbound: &Inbound,
        now: DateTime<Utc>,
        arrived: Instant,
    ) -> Result<(String, Option<RetryFrom>), CallbackError> {
        let key = inbound.dedupe_key();
        let leader = loop {
            match self.flights.join(&key).await {
                Turn::Lead(leader) => break leader,
                // Put before the leader said so, and kept for the whole retention.
                Turn::Answered => {
                    if let Some(stored) = self.store.dedupe_get(&key)? {
                        return Ok((replay(&stored, inbound), Some(RetryFrom::Memory)));
                    }
                }
            }
        };
        if let Some(pending) = self.assistant.pending(&key) {
            // A retry of a push whose question the assistant is answering: the first request
            // ended its turn once the question was registered, so this one leads, and gives
            // the turn back at once (the answer is taken in `Pending::attempt`).
            drop(leader);
            let held = pending.attempt(arrived).await;
            let plain = self.held_reply(held, &pending, &key, inbound, now)?;
            return Ok((plain, Some(RetryFrom::Memory)));
        }
        if let Some(stored) = self.store.dedupe_get(&key)? {
            leader.answered();
            return Ok((replay(&stored, inbound), Some(RetryFrom::Store)));
        }
        // A new push is handled only when its effects can reach the disk: otherwise 503, and
        // the platform retries (retries of answered pushes, above, still get their answers).
        self.store.check_writable()?;
        // The effects and the stored answer are one unit for the write-behind (`store::period`):
        // made inside one commit scope, so a crash keeps all of them or none.
        let scope = self.store.commit_scope();
        let (call, payload) = match self.handle(inbound, now)? {
            Handled::Done(rendered) => {
                self.store
                    .dedupe_put(&key, &stored_answer(rendered.as_ref(), now))?;
                drop(scope);
                leader.answered();
                return Ok((rendered.map(Rendered::into_xml).unwrap_or_default(), None));
            }
            Handled::Assistant(question) => {
                // As for a webhook: the effects are made, `success` stands in for the answer
                // after a crash. The question is registered before this request's turn ends,
                // so a retry waiting on it finds the question, not the stand-in.
                self.store.dedupe_put(&key, &stored_answer(None, now))?;
                drop(scope);
                let pending = self.assistant.start(key.clone(), *question);
                drop(leader);
                let held = pending.attempt(arrived).await;
                let plain = self.held_reply(held, &pending, &key, inbound, now)?;
                return Ok((plain, None));
            }
            Handled::Pull => {
                self.store.dedupe_put(&key, &stored_answer(None, now))?;
                drop(scope);
                let rules = self.rules.current();
                let content = self
                    .assistant
                    .pull(&rules, &inbound.header.from_user, now.timestamp(), arrived)
                    .await;
                let plain = self.remember_reply(&key, Some(content), inbound, now)?;
                leader.answered();
                return Ok((plain, None));
            }
            Handled::Webhook { call, payload } => {
                // The effects are made; the answer waits for the operator's endpoint, and no
                // scope may be held across that wait. `success` is stored meanwhile with them:
                // a retry after a crash right now gets it instead of handling the push again
                // (a second subscribe, a second count). In this process retries wait for the
                // real answer (single flight), which replaces it below.
                self.store.dedupe_put(&key, &stored_answer(None, now))?;
                (call, payload)
            }
        };
        drop(scope);
        let to = inbound.header.from_user.as_str();
        let text = self
            .webhook
            .answer_within(&call, *payload, to, &self.cs)
            .await;
        let plain = self.remember_reply(&key, text, inbound, now)?;
        leader.answered();
        Ok((plain, None))
    }

    /// What a request for a push the assistant is answering replies: the answer it took, the
    /// continue prompt, `success`, or the reply another request already gave.
    fn held_reply(
        &self,
        held: Held,
        pending: &crate::assistant::flight::Pending,
        key: &str,
        inbound: &Inbound,
        now: DateTime<Utc>,
    ) -> Result<String, CallbackError> {
        let rules = self.rules.current();
        match held {
            Held::Answer { finished, attempt } => {
                let content = self
                    .assistant
                    .reply_with(&rules, pending, finished, attempt);
                self.remember_reply(key, Some(content), inbound, now)
            }
            Held::Prompt => {
                let content = rules.assistant().pull_prompt.clone();
                self.remember_reply(key, Some(content), inbound, now)
            }
            Held::Success => Ok(String::new()),
            Held::Replay => Ok(self
                .store
                .dedupe_get(key)?
                .map(|stored| replay(&stored, inbound))
                .unwrap_or_default()),
        }
    }

    /// Renders `content` as the push's reply (`None`: `success`) and stores it for the push's
    /// later retries: the end of a push whose answer came after its commit scope.
    fn remember_reply(
        &self,
        key: &str,
        content: Option<String>,
        inbound: &Inbound,
        now: DateTime<Utc>,
    ) -> Result<String, CallbackError> {
        let rendered = content
            .and_then(|content| self.render(&Reply::Text { content }, inbound, now.timestamp()));
        let _scope = self.store.commit_scope();
        self.store
            .dedupe_put(key, &stored_answer(rendered.as_ref(), now))?;
        Ok(rendered.map(Rendered::into_xml).unwrap_or_default())
    }

    /// The side effects and the decision for one new push: the reply (`None` = `success`), or
    /// a webhook still to ask.
    fn handle(&self, inbound: &Inbound, now: DateTime<Utc>) -> Result<Handled, CallbackError> {
        let rules = self.rules.current();
        let day = rules
            .timezone()
            .from_utc_datetime(&now.naive_utc())
            .date_naive();
        let at = now.timestamp();
        let openid = &inbound.header.from_user;
        let Some(state::Recorded {
            subscriber,
            first_time,
        }) = state::record(&self.store, inbound, at, day)?
        else {
            // Nothing can be shown to someone who just left.
            return Ok(Handled::Done(None));
        };

        // While a person is handling the conversation, no bot rule fires.
        if let Some(reply) = self.handoffs.step(&rules, inbound, at)? {
            return Ok(Handled::Done(self.render(&reply, inbound, at)));
        }

        // The assistant's continue and clear words come before the rules.
        if rules.has_assistant() {
            match self
                .assistant
                .intercept(&rules, openid, inbound.text_for_matching(), at)?
            {
                Some(Intercept::Reply(content)) => {
                    return Ok(Handled::Done(self.render(
                        &Reply::Text { content },
                        inbound,
                        at,
                    )))
                }
                Some(Intercept::Pull) => return Ok(Handled::Pull),
                None => {}
            }
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
            self.metrics.rule_hit(rule);
        }
        state::apply(&self.store, openid, &decision, day)?;
        state::note_unanswered(&self.store, inbound, &decision, day);
        let reply = match &decision.special {
            None => decision.reply.clone(),
            Some(Special::Article { id }) => {
                self.paywall.article_reply(&rules, id, openid, at, day)?
            }
            Some(Special::Handoff(h)) => {
                // A person takes over: the assistant's turn ends, and a late answer of its
                // own is not sent over the person's.
                if rules.has_assistant() {
                    self.assistant.forget(openid)?;
                }
                self.handoffs
                    .open(h, openid, decision.rule.as_deref(), at)?
            }
            Some(Special::Assistant(action)) => {
                match self.assistant.prepare(
                    &rules,
                    action,
                    decision.rule.as_deref().unwrap_or_default(),
                    &subscriber,
                    inbound.text_for_matching(),
                    &decision.why,
                    at,
                    day,
                )? {
                    Prepared::Reply(None) => Reply::None,
                    Prepared::Reply(Some(content)) => Reply::Text { content },
                    Prepared::Ask(question) => return Ok(Handled::Assistant(question)),
                }
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
        if let Reply::Text { content } = reply {
            if self.cs.is_on() && content.len() > reply::TEXT_MAX_BYTES {
                self.cs.send(
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

    /// Closes hand-off sessions idle for longer than the live rules allow; returns how many.
    pub fn close_idle_handoffs(&self, now: i64) -> Result<usize, CallbackError> {
        Ok(self.handoffs.close_idle(&self.rules.current(), now)?)
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

/// What is stored to answer a push's retries. Every reply is rendered with `now` as its
/// CreateTime: the stored time gives it back. Stored headless: the head is ~40 % of a reply, and
/// `replay` rebuilds it.
fn stored_answer(rendered: Option<&Rendered>, now: DateTime<Utc>) -> StoredAnswer<&str> {
    StoredAnswer {
        at: now.timestamp(),
        body: rendered.map_or("", Rendered::tail),
        headless: true,
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
    /// The reply is the assistant's answer to this question.
    Assistant(Box<crate::assistant::Question>),
    /// The continue word: the reply is the assistant's kept answer.
    Pull,
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
    use crate::rules::RuleSet;
    use crate::store::StoreConfig;
    use crate::wechat::crypto::Cipher;
    use crate::wechat::crypto::EncodingAesKey;
    use crate::wechat::signature;
    use crate::wechat::types::AppId;
    use std::time::Duration;

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
        assert!(gw.flights.is_empty(), "no entry is left behind");
    }
}
