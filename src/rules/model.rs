//! The compiled rules: what [`super::compile`] builds and [`super::route`] reads.
//!
//! Owns the compiled rule ([`Rule`]), its action ([`Action`], [`ReplySpec`], [`TextSpec`], …) and
//! the routing tables ([`Index`]). Data only: building it is `compile`'s job, reading it per push
//! is `route`'s, and neither of them imports the other. Adding a rule action means a variant of
//! [`Action`] here, its compilation in `compile/actions.rs` and its outcome in `route.rs`.
//! May depend on: [`super::window`], [`crate::wechat::names`], aho-corasick, regex, foldhash.

use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet};

use super::window::Window;
use crate::wechat::names::{EventType, MsgType};

/// The routing tables are probed once or twice per push; foldhash is several times cheaper than
/// SipHash on keys this short, and they are the operator's own keywords.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One `[[rule]]`, compiled.
#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub action: Action,
    pub tags: Vec<String>,
    /// Only inside these hours (account time zone).
    pub window: Option<Window>,
    /// Subscribe rules only: first-time (`true`) or returning (`false`) followers.
    pub first_time: Option<bool>,
    /// Scancode rules only: the scanned text must start with this.
    pub scan_result_prefix: Option<String>,
}

/// What a rule does when it wins.
#[derive(Debug)]
pub(crate) enum Action {
    TagOnly,
    Reply(ReplySpec),
    Random(Vec<ReplySpec>),
    Article(String),
    Handoff(HandoffSpec),
    Webhook(WebhookSpec),
    Assistant(AssistantSpec),
}

/// Literal text is sent as written; anything with `{{`/`{%` is a compiled template.
#[derive(Debug, Clone)]
pub(crate) enum TextSpec {
    Literal(String),
    /// The template's name in the rule set's templates.
    Template(String),
}

#[derive(Debug)]
pub(crate) struct NewsSpec {
    pub title: TextSpec,
    pub description: TextSpec,
    pub pic_url: String,
    pub url: String,
}

/// A passive reply, with its texts still to render.
#[derive(Debug)]
pub(crate) enum ReplySpec {
    Text(TextSpec),
    Image(String),
    Voice(String),
    Video {
        media_id: String,
        title: Option<String>,
        description: Option<String>,
    },
    Music {
        title: Option<String>,
        description: Option<String>,
        music_url: Option<String>,
        hq_music_url: Option<String>,
        thumb_media_id: String,
    },
    News(Vec<NewsSpec>),
    Transfer(Option<String>),
}

/// A compiled `handoff = { kf_account, notice, hours, offline }`.
#[derive(Debug)]
pub(crate) struct HandoffSpec {
    pub kf_account: Option<String>,
    pub notice: Option<TextSpec>,
    pub window: Option<Window>,
    pub offline: Option<TextSpec>,
}

/// A compiled `webhook = { url, timeout_ms, fallback }`.
#[derive(Debug)]
pub(crate) struct WebhookSpec {
    pub url: String,
    pub timeout: std::time::Duration,
    pub fallback: Option<TextSpec>,
}

/// Default and ceiling of a webhook's wait: the platform gives the whole push 5 s, and
/// decrypting, state and sealing need a margin.
pub(crate) const WEBHOOK_DEFAULT_MS: u64 = 3000;
pub(crate) const WEBHOOK_MAX_MS: u64 = 4500;

/// A compiled `assistant = { model, system, … }`; [`super::route`] turns it into
/// [`crate::rules::AssistantAction`] with the texts rendered.
#[derive(Debug)]
pub(crate) struct AssistantSpec {
    pub model: String,
    pub api_base: Option<String>,
    pub api_key_env: Option<String>,
    /// The system prompt's template name (a file under the templates dir).
    pub system: Option<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub turns: u32,
    pub passages: usize,
    pub budget: std::time::Duration,
    pub audience: crate::rules::Audience,
    pub teaser: Option<TextSpec>,
    pub fallback: Option<TextSpec>,
}

/// Limits of an assistant rule. The wait shares the webhook's ceiling (the platform gives the
/// whole push 5 s); below 500 ms hardly any model answers, so every question would go late.
pub(crate) const ASSISTANT_DEFAULT_MS: u64 = 4500;
pub(crate) const ASSISTANT_MIN_MS: u64 = 500;
pub(crate) const ASSISTANT_MAX_MS: u64 = WEBHOOK_MAX_MS;
pub(crate) const ASSISTANT_DEFAULT_MAX_TOKENS: u32 = 512;
/// The most a rule may ask for: beyond this an answer no longer fits a few messages.
pub(crate) const ASSISTANT_MAX_TOKENS: u32 = 8192;
pub(crate) const ASSISTANT_DEFAULT_TEMPERATURE: f32 = 0.3;
pub(crate) const ASSISTANT_DEFAULT_TURNS: u32 = 4;
pub(crate) const ASSISTANT_MAX_TURNS: u32 = 20;
pub(crate) const ASSISTANT_DEFAULT_PASSAGES: usize = 3;
pub(crate) const ASSISTANT_MAX_PASSAGES: usize = 10;

/// How a prefix/contains pattern must sit in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatKind {
    Prefix,
    Contains,
}

/// Event rules of one kind: by key (menu key, scene, url) and key-less.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub by_key: Map<String, Vec<u32>>,
    pub any: Vec<u32>,
}

/// Every lookup structure routing needs. Rule numbers are indexes into the rule list, in file
/// order; the lowest candidate whose conditions hold wins.
#[derive(Debug)]
pub(crate) struct Index {
    /// Normalised keyword → (rule, keyword as written).
    pub exact: Map<String, Vec<(u32, String)>>,
    pub ac: Option<AhoCorasick>,
    /// Per automaton pattern: (rule, kind, keyword as written).
    pub ac_pats: Vec<Vec<(u32, PatKind, String)>>,
    pub regex_set: Option<RegexSet>,
    /// Per `RegexSet` pattern: (rule, the same regex, for captures).
    pub regexes: Vec<(u32, Regex)>,
    pub msg_type: Map<MsgType, Vec<u32>>,
    pub any: Vec<u32>,
    pub events: Map<EventType, Bucket>,
    pub fallback: Option<u32>,
}
