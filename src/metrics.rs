//! The operators' numbers for Prometheus: one [`Metrics`] per gateway over its own
//! `prometheus_client` registry (no global one: several apps run in one test process).
//!
//! Two kinds of figures live here:
//! - **Counted as they happen**, through one-line hooks where the event is known: pushes by type
//!   and outcome and their latency ([`Metrics::push`]), retries ([`Metrics::retry`]), refusals
//!   ([`Metrics::refused`], [`Metrics::edge_refused`]), rule hits, outbox sends, webhook calls,
//!   payment notifications and order transitions.
//! - **Read at scrape time** ([`Metrics::render`]): the store's size and health, outbox items by
//!   state, hand-offs by state, open orders, subscribers following, the live rules' version and
//!   reload counts. Each is a bounded read (an index or a small tree, never every subscriber).
//!
//! Every label value is one of a fixed set spelled here (or a rule name from keywords.toml, kept
//! to the live rules'), never an openid, a message text or other free text.
//!
//! The push path's hooks cost a few atomic adds: the push counter is resolved once per (type,
//! outcome) and kept in a slot, so a push allocates nothing here.
//!
//! May depend on: `wechat` (message types, crypto codes), `pipeline::CallbackError`,
//! `platform::PlatformError`, `pay` (notification types), `store` and `reload` (scrape-time
//! reads), `prometheus_client`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::pay::notify::{NotifyError, PayEvent, RefundKind};
use crate::pay::Applied;
use crate::pipeline::CallbackError;
use crate::platform::PlatformError;
use crate::reload::LiveRules;
use crate::store::{HandoffState, Store};
use crate::sync::lock;
use crate::wechat::message::{Inbound, InboundKind};
use crate::wechat::names::{EventType, MsgType};

/// The `Content-Type` of [`Metrics::render`]'s text (OpenMetrics 1.0, which Prometheus
/// negotiates and scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bucket edges (seconds) of the push latency histogram: fine below 100 ms where answers
/// normally are, then close steps up to the platform's 5-second budget, so "p99 near the
/// budget" reads straight off the buckets.
pub const PUSH_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0,
];

/// Bucket edges (seconds) of the assistant's answer time: around the passive budget (4.5 s and
/// the platform's 5 s) finely, then the retry-held (~15 s) and customer-service paths up to a
/// minute, so "answers that miss the passive reply" read straight off the buckets.
pub const ASSISTANT_BUCKETS: [f64; 11] =
    [0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 10.0, 15.0, 30.0, 60.0];

/// How a push ended, for `mpgate_pushes_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a reply.
    Replied,
    /// Answered `success` (no reply).
    Success,
    /// A retry answered with the first attempt's answer.
    Retry,
    /// Refused as the client's fault (signature, replay, bad XML, …): 4xx.
    Refused,
    /// Ours (the store could not read or write): 5xx, the platform retries.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Replied,
        Outcome::Success,
        Outcome::Retry,
        Outcome::Refused,
        Outcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Replied => "replied",
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// Where a retry's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryFrom {
    /// It waited on the first attempt, still in flight, and took its answer.
    Memory,
    /// The answer was already stored.
    Store,
}

/// A push's type as a bounded label: the known `MsgType`s and events by their log label
/// (`text`, `event:CLICK`), `event:other` and `other` for names the platform may add, and
/// `unopened` for a push refused before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushType(usize);

const MSG_TYPES: usize = MsgType::ALL.len();
const EVENT_TYPES: usize = EventType::ALL.len();
const OTHER_EVENT: usize = MSG_TYPES + EVENT_TYPES;
const OTHER_MSG: usize = OTHER_EVENT + 1;
const UNOPENED: usize = OTHER_MSG + 1;
const PUSH_TYPES: usize = UNOPENED + 1;

impl PushType {
    /// A push refused before its type was known.
    pub const UNOPENED: PushType = PushType(UNOPENED);

    pub fn of(inbound: &Inbound) -> PushType {
        PushType(match &inbound.kind {
            InboundKind::Event(e) => match e.event_type() {
                Some(t) => MSG_TYPES + t as usize,
                None => OTHER_EVENT,
            },
            other => other.type_of().map_or(OTHER_MSG, |t| t as usize),
        })
    }

    pub fn label(self) -> &'static str {
        match self.0 {
            i if i < MSG_TYPES => MsgType::ALL[i].type_label(),
            i if i < OTHER_EVENT => EventType::ALL[i - MSG_TYPES].type_label(),
            OTHER_EVENT => "event:other",
            OTHER_MSG => "other",
            _ => "unopened",
        }
    }
}

/// A refusal at the edge, before the pipeline: the allow-list (403), a stalled body (408) or
/// an oversized one (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeRefusal {
    NotAllowed,
    Timeout,
    BodySize,
}

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type RuleLabel = [(&'static str, String); 1];
type VersionLabel = [(&'static str, String); 1];

/// What [`Metrics::render`] reads at scrape time.
pub struct Scrape<'a> {
    pub store: &'a Store,
    pub rules: &'a LiveRules,
    /// Subscribers following now, from the analytics (`None` when they cannot be read).
    pub following: Option<i64>,
    /// Today in the account's time zone (the live rules'): the day the assistant's tokens are
    /// counted on.
    pub today: chrono::NaiveDate,
}

/// How an assistant answer reached the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnswerPath {
    /// Within the budget, as the passive reply.
    Passive,
    /// As the passive reply to one of the platform's retries.
    RetryHeld,
    /// As customer-service messages through the outbox.
    CustomerService,
    /// As the passive reply to the subscriber's continue word.
    Pull,
    /// The rule's fallback, because the endpoint failed.
    Fallback,
}

impl AnswerPath {
    const ALL: [AnswerPath; 5] = [
        AnswerPath::Passive,
        AnswerPath::RetryHeld,
        AnswerPath::CustomerService,
        AnswerPath::Pull,
        AnswerPath::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnswerPath::Passive => "passive",
            AnswerPath::RetryHeld => "retry_held",
            AnswerPath::CustomerService => "customer_service",
            AnswerPath::Pull => "pull",
            AnswerPath::Fallback => "fallback",
        }
    }
}

/// Why the assistant did not ask the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssistantRefusal {
    /// Not in the rule's audience: the teaser.
    Teaser,
    /// The subscriber's daily questions are used up.
    Quota,
    /// The account's daily tokens are used up.
    Budget,
    /// Too many questions in a minute.
    Rate,
    /// The question hit the blocklist.
    Blocked,
}

impl AssistantRefusal {
    const ALL: [AssistantRefusal; 5] = [
        AssistantRefusal::Teaser,
        AssistantRefusal::Quota,
        AssistantRefusal::Budget,
        AssistantRefusal::Rate,
        AssistantRefusal::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssistantRefusal::Teaser => "teaser",
            AssistantRefusal::Quota => "quota",
            AssistantRefusal::Budget => "budget",
            AssistantRefusal::Rate => "rate",
            AssistantRefusal::Blocked => "blocked",
        }
    }
}

/// The gateway's metrics. Cheap to clone: clones count into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

struct Inner {
    registry: Registry,
    pushes: Family<Labels2, Counter>,
    /// `pushes`' counters by (type, outcome), resolved on first use: a push then costs one
    /// atomic add, no label hashing or lock.
    push_slots: Box<[OnceLock<Counter>]>,
    push_seconds: Histogram,
    retries: Family<Labels1, Counter>,
    refusals: Family<Labels2, Counter>,
    rule_hits: Family<RuleLabel, Counter>,
    /// `rule_hits`' counters by rule name, so a hit looks up a `&str` without allocating.
    rule_slots: Mutex<foldhash::HashMap<Box<str>, Counter>>,
    reloads: Family<Labels1, Counter>,
    rules_generation: Gauge,
    rules_info: Family<VersionLabel, Gauge>,
    outbox_items: Family<Labels1, Gauge>,
    outbox_sends: Family<Labels1, Counter>,
    outbox_failures: Family<Labels2, Counter>,
    handoffs: Family<Labels1, Gauge>,
    webhook_seconds: Histogram,
    webhook_calls: Family<Labels1, Counter>,
    webhook_over_budget: Counter,
    pay_notifications: Family<Labels2, Counter>,
    order_transitions: Family<Labels1, Counter>,
    orders_open: Gauge,
    store_bytes: Gauge,
    store_writable: Gauge,
    following: Gauge,
    assistant_answers: Family<Labels1, Counter>,
    assistant_seconds: Histogram,
    assistant_tokens: Counter,
    assistant_tokens_today: Gauge,
    assistant_refusals: Family<Labels1, Counter>,
    assistant_model_errors: Family<Labels1, Counter>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let pushes = Family::<Labels2, Counter>::default();
        r.register(
            "mpgate_pushes",
            "Pushes on POST /wechat by message type and outcome: replied, success (no reply), \
             retry (answered from the first attempt), refused (client's fault, 4xx; see \
             mpgate_push_refusals_total for why), error (ours, 5xx: check mpgate_store_writable)",
            pushes.clone(),
        );
        let push_seconds = Histogram::new(PUSH_BUCKETS);
        r.register_with_unit(
            "mpgate_push_duration",
            "Time to answer a push that was opened (authenticated and parsed), from then to the \
             answer. The platform gives up after 5 s and retries: answers near 5 s mean a slow \
             disk or a slow webhook",
            Unit::Seconds,
            push_seconds.clone(),
        );
        let retries = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_push_retries",
            "Platform retries answered with the first attempt's answer: answered_from=memory \
             (waited on the first attempt still in flight) or store (its stored answer). Many \
             means answers are slower than the platform waits",
            retries.clone(),
        );
        let refusals = Family::<Labels2, Counter>::default();
        r.register(
            "mpgate_push_refusals",
            "Pushes refused, by reason: signature (wrong MPGATE_TOKEN or a forgery), decrypt \
             (code = the platform's error code; -40005 is another app id, -40007 usually a wrong \
             MPGATE_ENCODING_AES_KEY), replay (clock skew or a replayed request), xml, body_size, \
             timeout (body stalled), not_allowed (peer outside MPGATE_CALLBACK_ALLOW), plaintext \
             (a plaintext push to an encrypted server), missing_param, bad_timestamp, \
             invalid_utf8, no_aes_key, no_encrypt",
            refusals.clone(),
        );
        let rule_hits = Family::<RuleLabel, Counter>::default();
        r.register(
            "mpgate_rule_hits",
            "Pushes each rule of the live keywords.toml answered, by rule name",
            rule_hits.clone(),
        );
        let reloads = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_rules_reloads",
            "Rules reloads since start, by result: ok, or error (the file did not compile or \
             would drop what it does not confirm; the previous rules stay live and the log says \
             why)",
            reloads.clone(),
        );
        let rules_generation = Gauge::default();
        r.register(
            "mpgate_rules_generation",
            "How many times the live rules were swapped since start (0: the rules loaded at \
             start)",
            rules_generation.clone(),
        );
        let rules_info = Family::<VersionLabel, Gauge>::default();
        r.register(
            "mpgate_rules_info",
            "Always 1, labelled with the live rules' version (the hash /healthz shows)",
            rules_info.clone(),
        );
        let outbox_items = Family::<Labels1, Gauge>::default();
        r.register(
            "mpgate_outbox_messages",
            "Customer-service messages in the outbox by state: pending (waiting or backing off; \
             growing means the platform refuses or is unreachable), failed (given up, kept 30 \
             days: `mpgate outbox --state failed`), sent (kept 7 days)",
            outbox_items.clone(),
        );
        let outbox_sends = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_outbox_sends",
            "Outbox send attempts by outcome: sent, or failed (see \
             mpgate_outbox_send_failures_total for why; a failed attempt is retried unless the \
             platform refused for good)",
            outbox_sends.clone(),
        );
        let outbox_failures = Family::<Labels2, Counter>::default();
        r.register(
            "mpgate_outbox_send_failures",
            "Outbox send attempts that failed, by reason (api: the platform's errcode, e.g. \
             45015 = outside the 48-hour window, 45047 = too many messages, 40001 = token; http: \
             unreachable, timeout or an HTTP error; decode: an unexpected answer)",
            outbox_failures.clone(),
        );
        let handoffs = Family::<Labels1, Gauge>::default();
        r.register(
            "mpgate_handoffs",
            "Hand-off sessions by state: queued (asked outside working hours, waiting for an \
             agent), open (transferred, no agent yet), taken (an agent has it)",
            handoffs.clone(),
        );
        let webhook_seconds = Histogram::new(PUSH_BUCKETS);
        r.register_with_unit(
            "mpgate_webhook_duration",
            "Time webhook rules' endpoints took to answer (or fail). Past a rule's timeout_ms \
             the push is answered success and the answer follows as a customer-service message",
            Unit::Seconds,
            webhook_seconds.clone(),
        );
        let webhook_calls = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_webhook_calls",
            "Webhook calls by outcome: reply, no_reply, http_error (unreachable or timed out), \
             bad_status (non-2xx), bad_answer (not {\"text\": …}); failures get the rule's \
             fallback",
            webhook_calls.clone(),
        );
        let webhook_over_budget = Counter::default();
        r.register(
            "mpgate_webhook_over_budget",
            "Webhook calls still running at their rule's timeout_ms: the push was answered \
             success, the answer goes out later as a customer-service message",
            webhook_over_budget.clone(),
        );
        let pay_notifications = Family::<Labels2, Counter>::default();
        r.register(
            "mpgate_pay_notifications",
            "WeChat Pay notifications on POST /pay/notify by event (transaction, refund_success, \
             refund_abnormal, refund_closed, other, unopened) and result: what applying it did \
             (paid, already_paid, refunded, recorded, closed, open, anomaly, ignored), or refused \
             (verify: signature or certificate; decrypt: wrong APIv3 key; malformed) or error \
             (store; WeChat Pay retries)",
            pay_notifications.clone(),
        );
        let order_transitions = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_order_transitions",
            "Orders that entered a state since start, from the buy button, notifications and \
             reconciliation: created, paid, refunded, closed, anomaly (see GET /admin/orders)",
            order_transitions.clone(),
        );
        let orders_open = Gauge::default();
        r.register(
            "mpgate_orders_open",
            "Orders created and not yet paid or closed (reconciliation asks WeChat Pay about \
             them)",
            orders_open.clone(),
        );
        let store_bytes = Gauge::default();
        r.register_with_unit(
            "mpgate_store_size",
            "The data dir's size on disk (sled's estimate)",
            Unit::Bytes,
            store_bytes.clone(),
        );
        let store_writable = Gauge::default();
        r.register(
            "mpgate_store_writable",
            "1 while the store can write; 0 when the disk is full or failing (new pushes get \
             503, /healthz says why)",
            store_writable.clone(),
        );
        let following = Gauge::default();
        r.register(
            "mpgate_subscribers_following",
            "Subscribers following the account now",
            following.clone(),
        );
        let assistant_answers = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_assistant_answers",
            "Assistant answers delivered, by path: passive (within the budget, as the reply), \
             retry_held (as the reply to one of the platform's retries), customer_service (as \
             customer-service messages through the outbox), pull (as the reply to the continue \
             word), fallback (the rule's fallback: the model endpoint failed, see \
             mpgate_assistant_model_errors_total)",
            assistant_answers.clone(),
        );
        let assistant_seconds = Histogram::new(ASSISTANT_BUCKETS);
        r.register_with_unit(
            "mpgate_assistant_answer",
            "Time from an assistant question's arrival to its answer's delivery, any path. Past \
             the passive budget (4.5 s) an answer goes by a slower path: many answers there mean \
             the model is slow for the platform's 5 seconds",
            Unit::Seconds,
            assistant_seconds.clone(),
        );
        let assistant_tokens = Counter::default();
        r.register(
            "mpgate_assistant_tokens",
            "Tokens the model endpoint reported (prompt and completion) since start",
            assistant_tokens.clone(),
        );
        let assistant_tokens_today = Gauge::default();
        r.register(
            "mpgate_assistant_tokens_today",
            "Tokens the account used today (the account's day, as the daily budget counts them)",
            assistant_tokens_today.clone(),
        );
        let assistant_refusals = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_assistant_refused",
            "Questions the assistant did not send to the model, by reason: teaser (not in the \
             rule's audience), quota (the subscriber's daily questions used up), budget (the \
             account's daily tokens used up), rate (too many questions in a minute), blocked \
             (the question hit the blocklist)",
            assistant_refusals.clone(),
        );
        let assistant_model_errors = Family::<Labels1, Counter>::default();
        r.register(
            "mpgate_assistant_model_errors",
            "Model calls that failed, by kind: http (unreachable), status (a non-2xx answer), \
             malformed (an unreadable stream), timeout, empty (no answer text); each gives the \
             rule's fallback",
            assistant_model_errors.clone(),
        );
        // The bounded label sets are there from the first scrape, at 0: an alert's `increase()`
        // then sees the first event too, and a dashboard shows 0 rather than nothing.
        for from in ["memory", "store"] {
            retries.get_or_create_owned(&[("answered_from", from)]);
        }
        for reason in REFUSAL_REASONS {
            refusals.get_or_create_owned(&[("reason", reason), ("code", "")]);
        }
        for code in DECRYPT_CODES {
            refusals.get_or_create_owned(&[("reason", "decrypt"), ("code", code)]);
        }
        for result in ["ok", "error"] {
            reloads.get_or_create_owned(&[("result", result)]);
        }
        for outcome in ["sent", "failed"] {
            outbox_sends.get_or_create_owned(&[("outcome", outcome)]);
        }
        for outcome in WEBHOOK_OUTCOMES {
            webhook_calls.get_or_create_owned(&[("outcome", outcome)]);
        }
        for state in ORDER_STATES {
            order_transitions.get_or_create_owned(&[("state", state)]);
        }
        for path in AnswerPath::ALL {
            assistant_answers.get_or_create_owned(&[("path", path.as_str())]);
        }
        for reason in AssistantRefusal::ALL {
            assistant_refusals.get_or_create_owned(&[("reason", reason.as_str())]);
        }
        for kind in MODEL_ERRORS {
            assistant_model_errors.get_or_create_owned(&[("kind", kind)]);
        }
        Metrics {
            inner: Arc::new(Inner {
                registry: r,
                pushes,
                push_slots: (0..PUSH_TYPES * Outcome::ALL.len())
                    .map(|_| OnceLock::new())
                    .collect(),
                push_seconds,
                retries,
                refusals,
                rule_hits,
                rule_slots: Mutex::default(),
                reloads,
                rules_generation,
                rules_info,
                outbox_items,
                outbox_sends,
                outbox_failures,
                handoffs,
                webhook_seconds,
                webhook_calls,
                webhook_over_budget,
                pay_notifications,
                order_transitions,
                orders_open,
                store_bytes,
                store_writable,
                following,
                assistant_answers,
                assistant_seconds,
                assistant_tokens,
                assistant_tokens_today,
                assistant_refusals,
                assistant_model_errors,
            }),
        }
    }

    /// One push ended with `outcome`; `took` is observed in the latency histogram unless the
    /// push was refused before it was opened (`None`).
    pub fn push(&self, kind: PushType, outcome: Outcome, took: Option<Duration>) {
        let i = kind.0 * Outcome::ALL.len() + outcome as usize;
        let inner = &*self.inner;
        inner.push_slots[i]
            .get_or_init(|| {
                inner
                    .pushes
                    .get_or_create_owned(&[("type", kind.label()), ("outcome", outcome.label())])
            })
            .inc();
        if let Some(took) = took {
            inner.push_seconds.observe(took.as_secs_f64());
        }
    }

    /// A retry answered without handling the push again.
    pub fn retry(&self, from: RetryFrom) {
        let from = match from {
            RetryFrom::Memory => "memory",
            RetryFrom::Store => "store",
        };
        self.inner
            .retries
            .get_or_create(&[("answered_from", from)])
            .inc();
    }

    /// A push the pipeline refused or failed before it was opened: counted as a refusal with
    /// its reason (a client's fault) or as an error (ours).
    pub fn refused(&self, e: &CallbackError) {
        let (reason, code) = match e {
            CallbackError::MissingParam(_) => ("missing_param", ""),
            CallbackError::BadTimestamp => ("bad_timestamp", ""),
            CallbackError::Replay { .. } => ("replay", ""),
            CallbackError::BadSignature => ("signature", ""),
            CallbackError::InvalidUtf8 => ("invalid_utf8", ""),
            CallbackError::NoAesKey => ("no_aes_key", ""),
            CallbackError::PlaintextRefused => ("plaintext", ""),
            CallbackError::BadXml(_) => ("xml", ""),
            CallbackError::NoEncrypt => ("no_encrypt", ""),
            CallbackError::Decrypt { code, .. } => ("decrypt", decrypt_code(*code)),
            CallbackError::Store(_) => {
                self.push(PushType::UNOPENED, Outcome::Error, None);
                return;
            }
        };
        self.count_refusal(reason, code);
    }

    /// A `/wechat` push refused at the edge, before the pipeline.
    pub fn edge_refused(&self, why: EdgeRefusal) {
        let reason = match why {
            EdgeRefusal::NotAllowed => "not_allowed",
            EdgeRefusal::Timeout => "timeout",
            EdgeRefusal::BodySize => "body_size",
        };
        self.count_refusal(reason, "");
    }

    fn count_refusal(&self, reason: &'static str, code: &'static str) {
        self.push(PushType::UNOPENED, Outcome::Refused, None);
        self.inner
            .refusals
            .get_or_create(&[("reason", reason), ("code", code)])
            .inc();
    }

    /// A rule of the live rules answered a push.
    pub fn rule_hit(&self, rule: &str) {
        let inner = &*self.inner;
        let mut slots = lock(&inner.rule_slots);
        if let Some(c) = slots.get(rule) {
            c.inc();
            return;
        }
        let counter = inner
            .rule_hits
            .get_or_create_owned(&[("rule", rule.to_string())]);
        counter.inc();
        slots.insert(rule.into(), counter);
    }

    /// One outbox send attempt: `Ok` sent, or why it failed.
    pub fn outbox_send(&self, result: Result<(), &PlatformError>) {
        let inner = &*self.inner;
        let Err(e) = result else {
            inner
                .outbox_sends
                .get_or_create(&[("outcome", "sent")])
                .inc();
            return;
        };
        inner
            .outbox_sends
            .get_or_create(&[("outcome", "failed")])
            .inc();
        let (reason, errcode) = match e {
            PlatformError::Api { errcode, .. } => ("api", errcode_label(*errcode)),
            PlatformError::Http(_) => ("http", ""),
            PlatformError::Decode(_) => ("decode", ""),
            PlatformError::NotConfigured => ("not_configured", ""),
        };
        inner
            .outbox_failures
            .get_or_create(&[("reason", reason), ("errcode", errcode)])
            .inc();
    }

    /// A webhook call finished after `took`; `outcome` as [`Metrics::new`]'s help text names
    /// them.
    pub fn webhook_call(&self, outcome: WebhookOutcome, took: Duration) {
        let inner = &*self.inner;
        inner.webhook_seconds.observe(took.as_secs_f64());
        let outcome = match outcome {
            WebhookOutcome::Reply => "reply",
            WebhookOutcome::NoReply => "no_reply",
            WebhookOutcome::HttpError => "http_error",
            WebhookOutcome::BadStatus => "bad_status",
            WebhookOutcome::BadAnswer => "bad_answer",
        };
        inner
            .webhook_calls
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// A webhook call outlived its rule's budget.
    pub fn webhook_over_budget(&self) {
        self.inner.webhook_over_budget.inc();
    }

    /// An assistant answer delivered by `path`, `took` after its question arrived.
    pub fn assistant_answer(&self, path: AnswerPath, took: Duration) {
        let inner = &*self.inner;
        inner
            .assistant_answers
            .get_or_create(&[("path", path.as_str())])
            .inc();
        inner.assistant_seconds.observe(took.as_secs_f64());
    }

    /// Tokens the model endpoint reported for one answer.
    pub fn assistant_tokens(&self, tokens: u64) {
        self.inner.assistant_tokens.inc_by(tokens);
    }

    /// A question the assistant did not send to the model.
    pub fn assistant_refused(&self, reason: AssistantRefusal) {
        self.inner
            .assistant_refusals
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// A model call that failed (`kind`: `http`, `status`, `malformed`, `timeout`, `empty`;
    /// any other is counted as `other`, so the label set stays bounded).
    pub fn assistant_model_error(&self, kind: &'static str) {
        let kind = MODEL_ERRORS
            .iter()
            .copied()
            .find(|k| *k == kind)
            .unwrap_or("other");
        self.inner
            .assistant_model_errors
            .get_or_create(&[("kind", kind)])
            .inc();
    }

    /// A payment notification was applied (`Ok`) or failed in the store (`Err`).
    pub fn pay_notification(&self, event: &PayEvent, result: Result<Applied, ()>) {
        let event = match event {
            PayEvent::Transaction(_) => "transaction",
            PayEvent::Refund { kind, .. } => match kind {
                RefundKind::Success => "refund_success",
                RefundKind::Abnormal => "refund_abnormal",
                RefundKind::Closed => "refund_closed",
            },
            PayEvent::Other => "other",
        };
        let result = match result {
            Ok(a) => applied_label(a),
            Err(()) => "error",
        };
        self.inner
            .pay_notifications
            .get_or_create(&[("event", event), ("result", result)])
            .inc();
    }

    /// A payment notification that did not verify or decrypt.
    pub fn pay_refused(&self, e: &NotifyError) {
        let result = match e {
            NotifyError::Verify(_) => "refused_verify",
            NotifyError::Decrypt => "refused_decrypt",
            NotifyError::Malformed(_) => "refused_malformed",
        };
        self.inner
            .pay_notifications
            .get_or_create(&[("event", "unopened"), ("result", result)])
            .inc();
    }

    /// What applying a payment fact did to its order: counted when it moved the order.
    pub fn order_applied(&self, a: Applied) {
        let to = match a {
            Applied::Paid => "paid",
            Applied::Refunded => "refunded",
            Applied::Closed => "closed",
            Applied::Anomaly => "anomaly",
            Applied::AlreadyPaid | Applied::Recorded | Applied::Open | Applied::Ignored => return,
        };
        self.order_entered(to);
    }

    /// An order entered state `to` (`created`, `paid`, `refunded`, `closed`, `anomaly`).
    pub fn order_entered(&self, to: &'static str) {
        self.inner
            .order_transitions
            .get_or_create(&[("state", to)])
            .inc();
    }

    /// Sets the scrape-time figures from `s`, then encodes everything in the OpenMetrics text
    /// format ([`CONTENT_TYPE`]). A figure that cannot be read keeps its last value, and the
    /// reason is logged.
    pub fn render(&self, s: &Scrape<'_>) -> String {
        self.refresh(s);
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }

    fn refresh(&self, s: &Scrape<'_>) {
        let inner = &*self.inner;
        let health = s.store.health();
        inner.store_writable.set(i64::from(health.writable));
        note(
            "store size",
            s.store.size_on_disk().map(|b| {
                inner.store_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
            }),
        );
        note(
            "outbox",
            s.store.outbox_counts().map(|c| {
                for (state, n) in [
                    ("pending", c.pending),
                    ("sent", c.sent),
                    ("failed", c.failed),
                ] {
                    inner
                        .outbox_items
                        .get_or_create(&[("state", state)])
                        .set(gauge(n));
                }
            }),
        );
        note(
            "hand-offs",
            s.store.handoffs().map(|sessions| {
                let (mut queued, mut open, mut taken) = (0, 0, 0);
                for h in &sessions {
                    match h.state {
                        HandoffState::Queued => queued += 1,
                        HandoffState::Open => open += 1,
                        HandoffState::Taken { .. } => taken += 1,
                    }
                }
                for (state, n) in [("queued", queued), ("open", open), ("taken", taken)] {
                    inner.handoffs.get_or_create(&[("state", state)]).set(n);
                }
            }),
        );
        note(
            "open orders",
            s.store
                .orders_to_reconcile(i64::MAX, OPEN_ORDERS_READ)
                .map(|open| {
                    inner.orders_open.set(gauge(open.len()));
                }),
        );
        if let Some(n) = s.following {
            inner.following.set(n);
        }
        note(
            "the assistant's tokens today",
            s.store.assistant_tokens(s.today).map(|n| {
                inner
                    .assistant_tokens_today
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }),
        );
        let rules = s.rules.current();
        let reloads = s.rules.reloads();
        inner
            .reloads
            .get_or_create(&[("result", "ok")])
            .inner()
            .store(reloads.ok, std::sync::atomic::Ordering::Relaxed);
        inner
            .reloads
            .get_or_create(&[("result", "error")])
            .inner()
            .store(reloads.failed, std::sync::atomic::Ordering::Relaxed);
        inner
            .rules_generation
            .set(i64::try_from(reloads.ok).unwrap_or(i64::MAX));
        let version = rules.version();
        let label = [("version", version.to_string())];
        if inner.rules_info.get(&label).is_none() {
            inner.rules_info.clear();
            inner.rules_info.get_or_create(&label).set(1);
        }
        // Only the live rules' names: a renamed or removed rule's series goes.
        let mut slots = lock(&inner.rule_slots);
        slots.retain(|name, _| {
            let live = rules.rule_names().any(|n| n == &**name);
            if !live {
                inner.rule_hits.remove(&[("rule", name.to_string())]);
            }
            live
        });
    }
}

/// `mpgate_push_refusals_total`'s reasons other than `decrypt`.
const REFUSAL_REASONS: [&str; 12] = [
    "signature",
    "replay",
    "bad_timestamp",
    "missing_param",
    "invalid_utf8",
    "no_aes_key",
    "plaintext",
    "xml",
    "no_encrypt",
    "body_size",
    "timeout",
    "not_allowed",
];
/// The codes `wechat::crypto` gives a push that does not open.
const DECRYPT_CODES: [&str; 4] = ["-40005", "-40007", "-40008", "-40010"];
const WEBHOOK_OUTCOMES: [&str; 5] = [
    "reply",
    "no_reply",
    "http_error",
    "bad_status",
    "bad_answer",
];
const ORDER_STATES: [&str; 5] = ["created", "paid", "refunded", "closed", "anomaly"];
/// `mpgate_assistant_model_errors_total`'s kinds (the model client's failures, and `other`).
const MODEL_ERRORS: [&str; 6] = ["http", "status", "malformed", "timeout", "empty", "other"];

/// How many open orders a scrape reads at most: orders stay open for the order TTL (a day at
/// most) before reconciliation closes them.
const OPEN_ORDERS_READ: usize = 100_000;

/// A webhook call's outcome for `mpgate_webhook_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Reply,
    NoReply,
    HttpError,
    BadStatus,
    BadAnswer,
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn note<E: std::fmt::Display>(what: &str, r: Result<(), E>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "metrics: cannot read {what}; its figure keeps its last value");
    }
}

fn applied_label(a: Applied) -> &'static str {
    match a {
        Applied::Paid => "paid",
        Applied::AlreadyPaid => "already_paid",
        Applied::Refunded => "refunded",
        Applied::Recorded => "recorded",
        Applied::Closed => "closed",
        Applied::Open => "open",
        Applied::Anomaly => "anomaly",
        Applied::Ignored => "ignored",
    }
}

/// The platform's decrypt error codes (WXBizMsgCrypt's), as label values.
fn decrypt_code(code: i32) -> &'static str {
    match code {
        -40001 => "-40001",
        -40002 => "-40002",
        -40003 => "-40003",
        -40004 => "-40004",
        -40005 => "-40005",
        -40006 => "-40006",
        -40007 => "-40007",
        -40008 => "-40008",
        -40009 => "-40009",
        -40010 => "-40010",
        -40011 => "-40011",
        _ => "other",
    }
}

/// The errcodes operators act on, as label values; any other is `other`.
fn errcode_label(code: i64) -> &'static str {
    const KNOWN: &[(i64, &str)] = &[
        (-1, "-1"),
        (40001, "40001"),
        (40003, "40003"),
        (40007, "40007"),
        (40008, "40008"),
        (40013, "40013"),
        (40014, "40014"),
        (40033, "40033"),
        (40125, "40125"),
        (42001, "42001"),
        (43004, "43004"),
        (43019, "43019"),
        (44002, "44002"),
        (44003, "44003"),
        (44004, "44004"),
        (45002, "45002"),
        (45008, "45008"),
        (45009, "45009"),
        (45011, "45011"),
        (45015, "45015"),
        (45047, "45047"),
        (47001, "47001"),
        (48001, "48001"),
    ];
    KNOWN
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("other", |(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_types_are_the_name_tables_rows_and_a_few_catch_alls() {
        for &t in MsgType::ALL {
            assert_eq!(
                MsgType::ALL[t as usize],
                t,
                "declaration order is table order"
            );
        }
        for &t in EventType::ALL {
            assert_eq!(
                EventType::ALL[t as usize],
                t,
                "declaration order is table order"
            );
        }
        let labels: Vec<&str> = (0..PUSH_TYPES).map(|i| PushType(i).label()).collect();
        assert!(labels.contains(&"text") && labels.contains(&"event:CLICK"));
        assert_eq!(labels[OTHER_EVENT..], ["event:other", "other", "unopened"]);
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "no two types share a label");
    }

    #[test]
    fn a_push_counts_under_its_type_and_outcome_and_its_time_in_the_histogram() {
        let m = Metrics::new();
        let text = PushType(MsgType::Text as usize);
        m.push(text, Outcome::Replied, Some(Duration::from_millis(3)));
        m.push(text, Outcome::Replied, Some(Duration::from_millis(4600)));
        m.push(PushType::UNOPENED, Outcome::Refused, None);
        let out = render_detached(&m);
        assert!(out.contains("mpgate_pushes_total{type=\"text\",outcome=\"replied\"} 2\n"));
        assert!(out.contains("mpgate_pushes_total{type=\"unopened\",outcome=\"refused\"} 1\n"));
        assert!(out.contains("mpgate_push_duration_seconds_count 2\n"));
        assert!(out.contains("mpgate_push_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("mpgate_push_duration_seconds_bucket{le=\"4.5\"} 1\n"));
        assert!(out.contains("mpgate_push_duration_seconds_bucket{le=\"5.0\"} 2\n"));
    }

    #[test]
    fn refusals_name_their_reason_and_a_decrypt_failure_its_code() {
        let m = Metrics::new();
        m.refused(&CallbackError::Decrypt {
            code: -40007,
            reason: "secret detail".into(),
        });
        m.refused(&CallbackError::BadXml("<private text>".into()));
        m.edge_refused(EdgeRefusal::BodySize);
        let out = render_detached(&m);
        assert!(out.contains("mpgate_push_refusals_total{reason=\"decrypt\",code=\"-40007\"} 1"));
        assert!(out.contains("mpgate_push_refusals_total{reason=\"xml\",code=\"\"} 1"));
        assert!(out.contains("mpgate_push_refusals_total{reason=\"body_size\",code=\"\"} 1"));
        assert!(!out.contains("secret") && !out.contains("private"));
    }

    #[test]
    fn errcodes_outside_the_known_set_are_other() {
        assert_eq!(errcode_label(45015), "45015");
        assert_eq!(errcode_label(12345), "other");
        assert_eq!(decrypt_code(-40005), "-40005");
        assert_eq!(decrypt_code(7), "other");
    }

    /// The value of the one sample line starting with `series ` (the name and labels as
    /// rendered); panics when it is not there exactly once.
    fn sample(out: &str, series: &str) -> f64 {
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
            .collect();
        assert_eq!(lines.len(), 1, "{series} in\n{out}");
        lines[0][series.len() + 1..].parse().expect("a number")
    }

    #[test]
    fn every_answer_path_refusal_and_model_error_is_there_from_the_start_at_zero() {
        let out = render_detached(&Metrics::new());
        for path in [
            "passive",
            "retry_held",
            "customer_service",
            "pull",
            "fallback",
        ] {
            let series = format!("mpgate_assistant_answers_total{{path=\"{path}\"}}");
            assert_eq!(sample(&out, &series), 0.0);
        }
        for reason in ["teaser", "quota", "budget", "rate", "blocked"] {
            let series = format!("mpgate_assistant_refused_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&out, &series), 0.0);
        }
        for kind in ["http", "status", "malformed", "timeout", "empty", "other"] {
            let series = format!("mpgate_assistant_model_errors_total{{kind=\"{kind}\"}}");
            assert_eq!(sample(&out, &series), 0.0);
        }
        assert_eq!(sample(&out, "mpgate_assistant_tokens_total"), 0.0);
        assert_eq!(sample(&out, "mpgate_assistant_answer_seconds_count"), 0.0);
        assert!(out.contains("# TYPE mpgate_assistant_answer_seconds histogram\n"));
        assert!(out.contains("# TYPE mpgate_assistant_tokens_today gauge\n"));
    }

    #[test]
    fn an_answer_counts_once_under_its_path_and_its_time_lands_in_its_bucket() {
        let m = Metrics::new();
        m.assistant_answer(AnswerPath::Passive, Duration::from_millis(1200));
        m.assistant_answer(AnswerPath::Passive, Duration::from_millis(4400));
        m.assistant_answer(AnswerPath::RetryHeld, Duration::from_secs(12));
        m.assistant_answer(AnswerPath::CustomerService, Duration::from_secs(40));
        m.assistant_answer(AnswerPath::Pull, Duration::from_secs(90));
        let out = render_detached(&m);
        let answers = |path: &str| {
            sample(
                &out,
                &format!("mpgate_assistant_answers_total{{path=\"{path}\"}}"),
            )
        };
        assert_eq!(
            [
                answers("passive"),
                answers("retry_held"),
                answers("customer_service"),
                answers("pull"),
                answers("fallback"),
            ],
            [2.0, 1.0, 1.0, 1.0, 0.0]
        );
        let le = |edge: &str| {
            sample(
                &out,
                &format!("mpgate_assistant_answer_seconds_bucket{{le=\"{edge}\"}}"),
            )
        };
        // Cumulative buckets: 1.2 s, 4.4 s | 12 s | 40 s | 90 s (past the last edge).
        assert_eq!(le("1.0"), 0.0);
        assert_eq!(le("2.0"), 1.0);
        assert_eq!(le("4.5"), 2.0);
        assert_eq!(le("5.0"), 2.0);
        assert_eq!(le("15.0"), 3.0);
        assert_eq!(le("60.0"), 4.0);
        assert_eq!(le("+Inf"), 5.0);
        assert_eq!(sample(&out, "mpgate_assistant_answer_seconds_count"), 5.0);
        let sum = sample(&out, "mpgate_assistant_answer_seconds_sum");
        assert!((sum - 147.6).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn tokens_add_up_and_refusals_and_model_errors_count_under_their_reason() {
        let m = Metrics::new();
        m.assistant_tokens(160);
        m.assistant_tokens(0);
        m.assistant_tokens(1_000_000);
        m.assistant_refused(AssistantRefusal::Quota);
        m.assistant_refused(AssistantRefusal::Quota);
        m.assistant_refused(AssistantRefusal::Blocked);
        m.assistant_model_error("timeout");
        m.assistant_model_error("status");
        m.assistant_model_error("status");
        // A kind the model client may add later stays one bounded label.
        m.assistant_model_error("tls handshake to secret.example");
        let out = render_detached(&m);
        assert_eq!(sample(&out, "mpgate_assistant_tokens_total"), 1_000_160.0);
        let refused = |r: &str| {
            sample(
                &out,
                &format!("mpgate_assistant_refused_total{{reason=\"{r}\"}}"),
            )
        };
        assert_eq!(
            [
                refused("quota"),
                refused("blocked"),
                refused("teaser"),
                refused("budget"),
                refused("rate"),
            ],
            [2.0, 1.0, 0.0, 0.0, 0.0]
        );
        let errors = |k: &str| {
            sample(
                &out,
                &format!("mpgate_assistant_model_errors_total{{kind=\"{k}\"}}"),
            )
        };
        assert_eq!(
            [
                errors("timeout"),
                errors("status"),
                errors("other"),
                errors("http")
            ],
            [1.0, 2.0, 1.0, 0.0]
        );
        assert!(!out.contains("secret"), "free text never becomes a label");
    }

    /// A scrape with a real store and rules (UTC): what `Gateway::render_metrics` passes.
    fn scrape_of(m: &Metrics, store: &Store, today: chrono::NaiveDate) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keywords.toml");
        std::fs::write(
            &path,
            "[[rule]]\nname = \"hi\"\nwhen = { exact = [\"hi\"] }\nreply = { text = \"hello\" }\n",
        )
        .expect("write rules");
        let rules = LiveRules::new(crate::rules::RuleSet::load(&path).expect("rules").rules);
        m.render(&Scrape {
            store,
            rules: &rules,
            following: None,
            today,
        })
    }

    #[test]
    fn the_tokens_today_gauge_reads_the_stores_count_for_the_accounts_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), crate::store::StoreConfig::default()).expect("store");
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let yesterday = today.pred_opt().expect("date");
        let m = Metrics::new();
        let out = scrape_of(&m, &store, today);
        assert_eq!(sample(&out, "mpgate_assistant_tokens_today"), 0.0);
        store
            .assistant_add_tokens(yesterday, 999)
            .expect("add tokens");
        store.assistant_add_tokens(today, 1200).expect("add tokens");
        store.assistant_add_tokens(today, 34).expect("add tokens");
        let out = scrape_of(&m, &store, today);
        assert_eq!(sample(&out, "mpgate_assistant_tokens_today"), 1234.0);
        let out = scrape_of(&m, &store, yesterday);
        assert_eq!(sample(&out, "mpgate_assistant_tokens_today"), 999.0);
    }

    /// The registry's text alone, without the scrape-time reads.
    fn render_detached(m: &Metrics) -> String {
        let mut out = String::new();
        encode(&mut out, &m.inner.registry).unwrap();
        out
    }
}
