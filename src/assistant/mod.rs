//! The `assistant` rule action: a model answers the subscriber from the creator's own
//! articles, and the answer always reaches them, however slow the model is.
//!
//! - [`retrieval`]: the articles split into passages and ranked for a question (pure).
//! - [`client`]: the OpenAI-compatible streaming endpoint.
//! - [`policy`]: what an answer may contain, how a long one is split, the blocklist (pure).
//! - [`prompt`]: the messages sent to the model (pure).
//! - [`flight`]: one question being answered, and who takes its answer.
//! - [`Assistant`]: the service the pipeline calls: gating, quotas and memory before the
//!   model; the model called once per push in its own task; the answer delivered by the
//!   account's capability (passive reply, customer-service messages, the platform's retries,
//!   the continue word).
//!
//! The five-second contract: a request waits for the answer at most the rule's budget
//! (default 4.5 s). With the customer-service API, a late answer goes out through the durable
//! outbox while the subscriber sees the typing indicator. Without it, the first two requests
//! are held until the platform gives up on them, so it retries, and the retry that is open when
//! the answer is ready replies with it; the last retry replies with a prompt to send the
//! continue word, and the answer is kept in the store for it.
//!
//! Nothing about a conversation is logged at info level or above.
//!
//! May depend on: `rules` (the action and `[assistant]`), `store` (memory, kept answers,
//! quotas), `paywall` (entitlements, signed links), `platform::CustomerService`, `metrics`,
//! `settings`, `wechat`.

pub mod client;
pub mod flight;
pub mod policy;
pub mod prompt;
pub mod retrieval;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone};

use crate::metrics::{AnswerPath, AssistantRefusal, Metrics};
use crate::paywall::Paywall;
use crate::platform::{CustomMessage, CustomerService};
use crate::rules::{AssistantAction, Audience, RuleSet};
use crate::settings::{Secret, Settings};
use crate::store::assistant::{KeptAnswer, Turn};
use crate::store::Counter;
use crate::store::{Store, StoreError, Subscriber};
use crate::sync::lock;
use crate::wechat::types::OpenId;

use client::{ChatRequest, ModelClient, ModelError};
use flight::{Fate, Finished, Mode, Pending};

/// Longest a model may take: after a minute the subscriber has moved on.
pub const MODEL_LIMIT: Duration = Duration::from_secs(60);
/// Longest answer kept, in chars, before it is split into parts.
pub const ANSWER_MAX_CHARS: usize = 6000;
/// Largest part, in bytes: one passive reply (2047 bytes) with room for the "more" line.
pub const PART_BYTES: usize = 1900;
/// How long a ready answer waits for a request to take it before the task delivers it.
const GRACE: Duration = Duration::from_secs(6);
/// How long a kept answer waits for the continue word.
pub const KEPT_SECS: i64 = 24 * 3600;
/// The typing indicator lasts about 15 s; it is shown again this often while the model writes.
const TYPING_EVERY: Duration = Duration::from_secs(12);
/// The platform's errcode for an API this account may not use (an unverified 订阅号).
const API_UNAUTHORIZED: i64 = 48001;
/// Said when a rule has no fallback of its own and the endpoint fails.
const DEFAULT_FALLBACK: &str = "助教暂时答不上来，请稍后再问，或留言给作者。";

/// What the pipeline does with a push before routing it.
#[derive(Debug)]
pub enum Intercept {
    /// Reply with this text (the memory was cleared).
    Reply(String),
    /// The continue word: give the kept answer ([`Assistant::pull`]).
    Pull,
}

/// What an assistant rule decided for a push.
#[derive(Debug)]
pub enum Prepared {
    /// Reply with this text now (a teaser, a quota or blocklist reply); `None`: `success`.
    Reply(Option<String>),
    /// Ask the model ([`Assistant::start`]).
    Ask(Box<Question>),
}

/// A question that passed every check, with its prompt built.
#[derive(Debug)]
pub struct Question {
    openid: OpenId,
    rule: String,
    day: NaiveDate,
    at: i64,
    text: String,
    request: ChatRequest,
    turns: u32,
    budget: Duration,
    fallback: String,
    blocked_answer_reply: String,
    blocklist: policy::Blocklist,
    mode: Mode,
}

/// The assistant service: cheap to clone, clones share their state.
#[derive(Clone)]
pub struct Assistant {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    paywall: Paywall,
    cs: CustomerService,
    client: ModelClient,
    metrics: Metrics,
    api_base: Option<String>,
    api_key: Option<Secret>,
    /// Questions being answered, by the push's dedupe key.
    pending: Mutex<foldhash::HashMap<String, Arc<Pending>>>,
    /// The latest question being answered per subscriber, for the continue word.
    by_openid: Mutex<foldhash::HashMap<String, Arc<Pending>>>,
    /// `pending.len()`, read without the lock on every push.
    in_flight: AtomicUsize,
    /// When each subscriber asked lately (unix seconds), for the per-minute limit.
    recent: Mutex<foldhash::HashMap<String, VecDeque<i64>>>,
    /// The platform refused the customer-service API (48001): hold retries from now on.
    cs_refused: AtomicBool,
    /// Subscribers whose kept answer is a whole one not yet counted as delivered, and when its
    /// question was asked: its first part, taken with the continue word, counts it (in
    /// memory: a restart undercounts).
    uncounted: Mutex<foldhash::HashMap<String, Instant>>,
}

impl Assistant {
    pub fn new(
        settings: &Settings,
        store: Store,
        paywall: Paywall,
        cs: CustomerService,
        metrics: Metrics,
    ) -> Assistant {
        Assistant::build(
            store,
            paywall,
            cs,
            metrics,
            settings.assistant_api_base.clone(),
            settings.assistant_api_key.clone(),
        )
    }

    /// The same assistant delivering late answers through `cs` (for start-up's wiring: it
    /// starts with nothing in flight).
    pub fn with_cs(self, cs: CustomerService) -> Assistant {
        let i = &self.inner;
        Assistant::build(
            i.store.clone(),
            i.paywall.clone(),
            cs,
            i.metrics.clone(),
            i.api_base.clone(),
            i.api_key.clone(),
        )
    }

    fn build(
        store: Store,
        paywall: Paywall,
        cs: CustomerService,
        metrics: Metrics,
        api_base: Option<String>,
        api_key: Option<Secret>,
    ) -> Assistant {
        Assistant {
            inner: Arc::new(Inner {
                store,
                paywall,
                cs,
                client: ModelClient::new(),
                metrics,
                api_base,
                api_key,
                pending: Mutex::default(),
                by_openid: Mutex::default(),
                in_flight: AtomicUsize::new(0),
                recent: Mutex::default(),
                cs_refused: AtomicBool::new(false),
                uncounted: Mutex::default(),
            }),
        }
    }

    /// The question being answered for the push with this dedupe key, if any. One atomic load
    /// when nothing is being answered, which is every push of an account without the
    /// assistant.
    pub fn pending(&self, key: &str) -> Option<Arc<Pending>> {
        if self.inner.in_flight.load(Ordering::Acquire) == 0 {
            return None;
        }
        lock(&self.inner.pending).get(key).cloned()
    }

    /// How late answers reach subscribers of this account now.
    pub fn mode(&self, rules: &RuleSet) -> Mode {
        let i = &self.inner;
        if i.cs.is_on()
            && rules.customer_service() != Some(false)
            && !i.cs_refused.load(Ordering::Acquire)
        {
            Mode::CustomerService
        } else {
            Mode::Hold
        }
    }

    /// The continue and clear words, before routing (only when a rule uses the assistant).
    pub fn intercept(
        &self,
        rules: &RuleSet,
        openid: &OpenId,
        text: Option<&str>,
        now: i64,
    ) -> Result<Option<Intercept>, StoreError> {
        let Some(text) = text else { return Ok(None) };
        if rules.is_clear_word(text) {
            self.forget(openid)?;
            return Ok(Some(Intercept::Reply(
                rules.assistant().cleared_reply.clone(),
            )));
        }
        if rules.is_continue_word(text)
            && (self
                .inner
                .store
                .assistant_has_kept(openid, now - KEPT_SECS)?
                || lock(&self.inner.by_openid)
                    .get(openid.as_str())
                    .is_some_and(|p| matches!(p.fate(), Fate::Open | Fate::Kept)))
        {
            return Ok(Some(Intercept::Pull));
        }
        Ok(None)
    }

    /// Forgets what `openid` asked (the clear word, the operator, a hand-off): the memory, a
    /// kept answer, and an answer still being written.
    pub fn forget(&self, openid: &OpenId) -> Result<bool, StoreError> {
        lock(&self.inner.uncounted).remove(openid.as_str());
        if let Some(p) = lock(&self.inner.by_openid).get(openid.as_str()) {
            p.drop_answer();
        }
        self.inner.store.assistant_forget(openid)
    }

    /// The checks an assistant rule makes before the model is asked (`why`: how the rule
    /// matched `text`), in this order: who may
    /// ask (the teaser), the blocklist, the per-minute limit, the account's tokens, the
    /// subscriber's questions today (counted only when asked). Then the prompt.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        rules: &RuleSet,
        action: &AssistantAction,
        rule: &str,
        subscriber: &Subscriber,
        text: Option<&str>,
        why: &crate::rules::Why,
        at: i64,
        day: NaiveDate,
    ) -> Result<Prepared, StoreError> {
        // The question is the text after the rule's prefix keyword ("问 …").
        let question = text.map(|t| match why {
            crate::rules::Why::Prefix(k) => question_after_prefix(t, k),
            _ => t,
        });
        let i = &self.inner;
        let settings = rules.assistant();
        let openid = OpenId::new(subscriber.openid.clone());
        let entitled: Vec<String> = i
            .store
            .entitlements_of(&openid)?
            .into_iter()
            .filter(|e| e.is_active())
            .map(|e| e.article)
            .collect();
        let allowed = match &action.audience {
            Audience::All => true,
            Audience::Tag(t) => subscriber.tags.iter().any(|x| x == t),
            Audience::Entitled(a) => entitled.iter().any(|x| x == a),
        };
        let refuse = |reason: AssistantRefusal, reply: Option<String>| {
            i.metrics.assistant_refused(reason);
            i.store.count(
                Counter::AssistantRefused {
                    reason: reason.as_str().to_string(),
                },
                day,
                1,
            );
            Ok(Prepared::Reply(reply))
        };
        if !allowed {
            return refuse(AssistantRefusal::Teaser, action.teaser.clone());
        }
        let Some(text) = question.map(str::trim).filter(|t| !t.is_empty()) else {
            // A voice message without recognition, a picture: nothing to ask.
            return Ok(Prepared::Reply(action.fallback.clone()));
        };
        let blocklist = policy::Blocklist::new(&settings.blocklist);
        if blocklist.hits(text) {
            return refuse(
                AssistantRefusal::Blocked,
                Some(settings.blocked_question_reply.clone()),
            );
        }
        if !self.within_rate(openid.as_str(), settings.per_minute, at) {
            return refuse(AssistantRefusal::Rate, Some(settings.rate_reply.clone()));
        }
        if settings.daily_tokens > 0 && i.store.assistant_tokens(day)? >= settings.daily_tokens {
            return refuse(
                AssistantRefusal::Budget,
                Some(settings.budget_reply.clone()),
            );
        }
        if !i
            .store
            .assistant_ask(&openid, day, settings.daily_questions)?
        {
            return refuse(AssistantRefusal::Quota, Some(settings.quota_reply.clone()));
        }
        i.store.count(
            Counter::AssistantQuestion {
                rule: rule.to_string(),
            },
            day,
            1,
        );

        let Some(api_base) = action.api_base.clone().or_else(|| i.api_base.clone()) else {
            tracing::warn!(
                rule,
                "assistant rule has no endpoint: set MPGATE_ASSISTANT_API_BASE or the rule's api_base"
            );
            return Ok(Prepared::Reply(action.fallback.clone()));
        };
        let api_key = match &action.api_key_env {
            Some(name) => std::env::var(name).ok().map(Secret::new),
            None => i.api_key.clone(),
        };
        let since = at - i64::from(settings.memory_minutes) * 60;
        let turns = if action.turns == 0 {
            Vec::new()
        } else {
            i.store.assistant_turns(&openid, since)?
        };
        let hits = rules.corpus().map_or_else(Vec::new, |c| {
            c.search(text, action.passages, &|article| {
                entitled.iter().any(|x| x == article)
            })
        });
        let sources: Vec<prompt::Source> = hits
            .iter()
            .map(|h| prompt::Source {
                title: h.title,
                passage: h.passage,
                link: h.paid_article.map(|a| i.paywall.read_url(a, &openid, at)),
            })
            .collect();
        let system = match &action.system {
            Some(template) => {
                let ctx = crate::rules::AssistantPromptVars {
                    tags: subscriber.tags.clone(),
                    channel: subscriber.channel.clone(),
                    entitlements: entitled.clone(),
                };
                match rules.render_assistant_system(template, &ctx) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(rule, error = %e, "assistant system prompt failed to render; using the built-in one");
                        prompt::DEFAULT_SYSTEM.to_string()
                    }
                }
            }
            None => prompt::DEFAULT_SYSTEM.to_string(),
        };
        let keep = usize::try_from(action.turns).unwrap_or(usize::MAX);
        let past = &turns[turns.len().saturating_sub(keep)..];
        let messages = prompt::messages(&system, &sources, past, text);
        Ok(Prepared::Ask(Box::new(Question {
            openid,
            rule: rule.to_string(),
            day,
            at,
            text: text.to_string(),
            request: ChatRequest {
                api_base,
                api_key,
                model: action.model.clone(),
                messages,
                max_tokens: action.max_tokens,
                temperature: action.temperature,
            },
            turns: action.turns,
            budget: action.budget,
            fallback: action
                .fallback
                .clone()
                .unwrap_or_else(|| DEFAULT_FALLBACK.to_string()),
            blocked_answer_reply: settings.blocked_answer_reply.clone(),
            blocklist,
            mode: self.mode(rules),
        })))
    }

    /// Whether `openid` may ask now under `per_minute` (0: no limit); counts the question.
    fn within_rate(&self, openid: &str, per_minute: u32, at: i64) -> bool {
        if per_minute == 0 {
            return true;
        }
        let mut recent = lock(&self.inner.recent);
        if recent.len() > 10_000 {
            recent.retain(|_, q| q.back().is_some_and(|&t| t > at - 60));
        }
        let q = recent.entry(openid.to_string()).or_default();
        while q.front().is_some_and(|&t| t <= at - 60) {
            q.pop_front();
        }
        if q.len() >= per_minute as usize {
            return false;
        }
        q.push_back(at);
        true
    }

    /// Asks the model for `question` in its own task, registered under the push's dedupe key
    /// so the platform's retries find it. Call before the push's single-flight turn ends.
    pub fn start(&self, key: String, question: Question) -> Arc<Pending> {
        let pending = Arc::new(Pending::new(
            question.openid.as_str().to_string(),
            question.mode,
            question.budget,
            Instant::now(),
        ));
        {
            let mut map = lock(&self.inner.pending);
            map.insert(key.clone(), pending.clone());
            self.inner.in_flight.store(map.len(), Ordering::Release);
        }
        lock(&self.inner.by_openid).insert(pending.openid.clone(), pending.clone());
        let this = self.clone();
        let p = pending.clone();
        tokio::spawn(async move { this.answer(key, question, p).await });
        pending
    }

    /// The task: the model, then the answer to whoever takes it.
    async fn answer(self, key: String, q: Question, p: Arc<Pending>) {
        let typing = (p.mode == Mode::CustomerService).then(|| {
            let this = self.clone();
            let p = p.clone();
            tokio::spawn(async move { this.typing_while_open(&p).await })
        });
        let result = self.inner.client.complete(&q.request, MODEL_LIMIT).await;
        if let Some(t) = typing {
            t.abort();
        }
        let finished = self.finish(&q, result);
        let (fate, back) = p.finish(finished);
        let delivered = match (fate, back) {
            (Fate::Open, _) => p.unclaimed_after(GRACE).await.map(|f| (p.fate(), f)),
            (fate, Some(f)) => Some((fate, f)),
            (_, None) => None,
        };
        if let Some((fate, finished)) = delivered {
            match fate {
                Fate::ByCustomerService => self.send(&q, &p, finished).await,
                Fate::Kept => self.keep(&q, &p, finished.parts),
                _ => {}
            }
        }
        {
            let mut map = lock(&self.inner.pending);
            map.remove(&key);
            self.inner.in_flight.store(map.len(), Ordering::Release);
        }
        let mut by = lock(&self.inner.by_openid);
        if by.get(&p.openid).is_some_and(|x| Arc::ptr_eq(x, &p)) {
            by.remove(&p.openid);
        }
    }

    /// Shows the typing indicator from the moment the passive reply is given up until the
    /// answer is written (the caller aborts this task then).
    async fn typing_while_open(&self, p: &Pending) {
        tokio::time::sleep(p.budget).await;
        loop {
            if p.fate() != Fate::ByCustomerService {
                return;
            }
            match self.inner.cs.typing(&p.openid).await {
                None => return,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    if e.errcode() == Some(API_UNAUTHORIZED) {
                        self.learn_no_customer_service();
                    }
                    tracing::debug!(error = %e, "typing indicator refused");
                    return;
                }
            }
            tokio::time::sleep(TYPING_EVERY).await;
        }
    }

    fn learn_no_customer_service(&self) {
        if !self.inner.cs_refused.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "the platform refused the customer-service API (48001): late assistant answers are delivered through the platform's retries and the continue word from now on (set [account] customer_service = false to say so)"
            );
        }
    }

    /// The model's answer made fit for the chat (or the fallback), counted and remembered.
    fn finish(&self, q: &Question, result: Result<client::Completion, ModelError>) -> Finished {
        let i = &self.inner;
        let c = match result {
            Ok(c) => c,
            Err(e) => {
                i.metrics.assistant_model_error(model_error_kind(&e));
                tracing::warn!(rule = %q.rule, error = %e, "assistant model call failed; answering with the fallback");
                return Finished {
                    parts: policy::split_parts(&q.fallback, PART_BYTES),
                    fallback: true,
                };
            }
        };
        let tokens = c.usage.map_or_else(
            // Without the endpoint's figure, count a token per char of prompt and answer: an
            // overestimate for Chinese, which keeps the budget a cap.
            || {
                let prompt: usize = q
                    .request
                    .messages
                    .iter()
                    .map(|m| m.content.chars().count())
                    .sum();
                (prompt + c.text.chars().count()) as u64
            },
            |u| u.total_tokens,
        );
        if let Err(e) = i.store.assistant_add_tokens(q.day, tokens) {
            tracing::error!(error = %e, "cannot count the assistant's tokens");
        }
        i.store.count(Counter::AssistantTokens, q.day, tokens);
        i.metrics.assistant_tokens(tokens);
        let mut text = policy::sanitize(&c.text, ANSWER_MAX_CHARS);
        if text.is_empty() {
            i.metrics.assistant_model_error("empty");
            text.clone_from(&q.fallback);
        } else if q.blocklist.hits(&text) {
            tracing::info!(rule = %q.rule, "an assistant answer hit the blocklist and was replaced");
            text.clone_from(&q.blocked_answer_reply);
        } else if q.turns > 0 {
            let turn = Turn {
                at: q.at,
                question: q.text.clone(),
                answer: text.clone(),
            };
            if let Err(e) = i
                .store
                .assistant_remember(&q.openid, turn, q.turns as usize)
            {
                tracing::error!(error = %e, "cannot remember an assistant turn");
            }
        }
        Finished {
            parts: policy::split_parts(&text, PART_BYTES),
            fallback: false,
        }
    }

    /// The reply for the request that took `finished`: its first part; the rest follows as
    /// customer-service messages, or is kept for the continue word.
    pub fn reply_with(
        &self,
        rules: &RuleSet,
        p: &Pending,
        finished: Finished,
        attempt: u32,
    ) -> String {
        let path = if finished.fallback {
            AnswerPath::Fallback
        } else if attempt <= 1 {
            AnswerPath::Passive
        } else {
            AnswerPath::RetryHeld
        };
        self.delivered(path, p.asked, today(rules));
        self.first_and_rest(
            rules,
            &OpenId::new(p.openid.clone()),
            p.mode,
            finished.parts,
        )
    }

    /// The first part of `parts` as a reply, with a line saying more follows; the rest sent by
    /// `mode`.
    fn first_and_rest(
        &self,
        rules: &RuleSet,
        openid: &OpenId,
        mode: Mode,
        parts: Vec<String>,
    ) -> String {
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let rest: Vec<String> = parts.collect();
        if rest.is_empty() {
            return first;
        }
        match mode {
            Mode::CustomerService => {
                for part in rest {
                    self.inner.cs.send(
                        CustomMessage::Text {
                            to: openid.as_str().to_string(),
                            content: part,
                        },
                        "assistant",
                    );
                }
                first
            }
            Mode::Hold => {
                let left = rest.len();
                let kept = KeptAnswer {
                    at: chrono::Utc::now().timestamp(),
                    parts: rest,
                };
                if let Err(e) = self.inner.store.assistant_keep(openid, &kept) {
                    tracing::error!(error = %e, "cannot keep the rest of an assistant answer");
                    return first;
                }
                more(&first, left, &rules.assistant().continue_word)
            }
        }
    }

    /// Counts an answer delivered by `path` (metrics, and the day's counter).
    fn delivered(&self, path: AnswerPath, asked: Instant, day: NaiveDate) {
        self.inner.metrics.assistant_answer(path, asked.elapsed());
        self.inner.store.count(
            Counter::AssistantAnswer {
                path: path.as_str().to_string(),
            },
            day,
            1,
        );
    }

    /// Sends a late answer as customer-service messages, in order, and follows them: an answer
    /// counts as delivered only when the platform took every part. A refusal of the API itself
    /// (48001) switches the account to holding retries and keeps the answer for the continue
    /// word.
    async fn send(&self, q: &Question, p: &Pending, finished: Finished) {
        let i = &self.inner;
        if i.store.handoff_get(&q.openid).ok().flatten().is_some() {
            tracing::debug!("a hand-off began: the late assistant answer is not sent");
            return;
        }
        let mut ids = Vec::new();
        for part in &finished.parts {
            match i.cs.send_tracked(
                CustomMessage::Text {
                    to: q.openid.as_str().to_string(),
                    content: part.clone(),
                },
                &format!("assistant:{}", q.rule),
            ) {
                Ok(more) => ids.extend(more),
                Err(e) => {
                    tracing::error!(error = %e, "cannot queue an assistant answer; keeping it for the continue word");
                    self.keep(q, p, finished.parts.clone());
                    return;
                }
            }
        }
        let path = if finished.fallback {
            AnswerPath::Fallback
        } else {
            AnswerPath::CustomerService
        };
        let followed = Instant::now();
        while followed.elapsed() < MODEL_LIMIT {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut sent = 0;
            for id in &ids {
                match i.cs.outbox_item(*id) {
                    Ok(Some(item)) => match &item.state {
                        crate::store::platform::OutboxState::Sent { .. } => sent += 1,
                        crate::store::platform::OutboxState::Failed { reason, .. } => {
                            if reason.contains(&format!("errcode {API_UNAUTHORIZED}")) {
                                self.learn_no_customer_service();
                                self.keep(q, p, finished.parts.clone());
                            } else {
                                tracing::warn!(%reason, "the platform refused an assistant answer");
                            }
                            return;
                        }
                        crate::store::platform::OutboxState::Pending => {}
                    },
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot follow an assistant answer in the outbox");
                        return;
                    }
                }
            }
            if sent == ids.len() {
                self.delivered(path, p.asked, q.day);
                return;
            }
        }
    }

    /// Keeps an answer no request could take for the subscriber's continue word.
    fn keep(&self, q: &Question, p: &Pending, parts: Vec<String>) {
        if p.fate() == Fate::Dropped {
            return;
        }
        let kept = KeptAnswer {
            at: chrono::Utc::now().timestamp(),
            parts,
        };
        match self.inner.store.assistant_keep(&q.openid, &kept) {
            Ok(()) => {
                lock(&self.inner.uncounted).insert(q.openid.as_str().to_string(), p.asked);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot keep an assistant answer for the continue word")
            }
        }
    }

    /// The continue word: the next part of the kept answer, or the answer still being written
    /// if it comes within the budget, or the "still writing" reply.
    pub async fn pull(
        &self,
        rules: &RuleSet,
        openid: &OpenId,
        now: i64,
        arrived: Instant,
    ) -> String {
        let i = &self.inner;
        let settings = rules.assistant();
        if let Some(text) = self.next_part(rules, openid, now) {
            return text;
        }
        let pending = lock(&i.by_openid).get(openid.as_str()).cloned();
        let deadline = arrived + pending.as_ref().map_or(Duration::ZERO, |p| p.budget);
        // The answer is being written: it is either taken here straight from the task, or
        // kept by the task (in the store) a moment later; look at both until the budget ends.
        while let Some(p) = &pending {
            if let Some(finished) = p.pull(Duration::from_millis(50)).await {
                self.delivered(AnswerPath::Pull, p.asked, today(rules));
                return self.first_and_rest(rules, openid, Mode::Hold, finished.parts);
            }
            if let Some(text) = self.next_part(rules, openid, now) {
                return text;
            }
            // Taken by a request, sent as messages, or dropped: nothing comes here.
            if Instant::now() >= deadline || !matches!(p.fate(), Fate::Open | Fate::Kept) {
                break;
            }
        }
        settings.pull_pending_reply.clone()
    }

    fn next_part(&self, rules: &RuleSet, openid: &OpenId, now: i64) -> Option<String> {
        match self
            .inner
            .store
            .assistant_take_part(openid, now - KEPT_SECS)
        {
            Ok(Some((part, left))) => {
                let asked = lock(&self.inner.uncounted).remove(openid.as_str());
                if let Some(asked) = asked {
                    self.delivered(AnswerPath::Pull, asked, today(rules));
                }
                Some(more(&part, left, &rules.assistant().continue_word))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a kept assistant answer");
                None
            }
        }
    }
}

/// Today in the account's time zone, the day an answer is counted on.
fn today(rules: &RuleSet) -> NaiveDate {
    rules
        .timezone()
        .from_utc_datetime(&chrono::Utc::now().naive_utc())
        .date_naive()
}

/// The question a text asks when its rule matched it by the prefix keyword `prefix` (as the
/// rules normalise it): the text after the keyword ("问 所有权是什么" → "所有权是什么"), or the
/// whole text when its first chars do not normalise to the keyword.
pub fn question_after_prefix<'a>(text: &'a str, prefix: &str) -> &'a str {
    let t = text.trim_start();
    let n = prefix.chars().count();
    let cut = t.char_indices().nth(n).map_or(t.len(), |(i, _)| i);
    if crate::rules::normalize(&t[..cut]) == prefix && cut < t.len() {
        let rest = t[cut..].trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, ':' | '：' | ',' | '，')
        });
        if !rest.is_empty() {
            return rest;
        }
    }
    text
}

/// `part`, and when more parts wait, how to get the next.
fn more(part: &str, left: usize, continue_word: &str) -> String {
    if left == 0 {
        part.to_string()
    } else {
        format!("{part}\n\n（还有 {left} 段，回复「{continue_word}」继续看）")
    }
}

fn model_error_kind(e: &ModelError) -> &'static str {
    match e {
        ModelError::Http(_) => "http",
        ModelError::Status { .. } => "status",
        ModelError::Malformed(_) => "malformed",
        ModelError::Timeout(_) => "timeout",
        ModelError::Empty => "empty",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_is_the_text_after_its_prefix_keyword() {
        assert_eq!(
            question_after_prefix("问 所有权是什么", "问"),
            "所有权是什么"
        );
        assert_eq!(question_after_prefix("问：借用呢", "问"), "借用呢");
        assert_eq!(
            question_after_prefix("Ask what is a trait", "ask"),
            "what is a trait"
        );
        assert_eq!(
            question_after_prefix("问", "问"),
            "问",
            "nothing after it: the text"
        );
        assert_eq!(
            question_after_prefix("请问", "问"),
            "请问",
            "not at the start"
        );
    }
}
