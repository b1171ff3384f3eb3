//! The rules engine: `keywords.toml` (written by operators who never touch Rust) → a compiled,
//! immutable [`RuleSet`] → a routing [`Decision`] for each inbound push.
//!
//! Two stages, like every operator file in mpgate: [`raw`] is a strict serde mirror of the file,
//! [`compile`] turns it into the compiled [`model`] and collects *every* problem as a
//! [`Diagnostic`] with file:line:column and a hint. Routing ([`route`]) reads the model and never
//! scans rules one by one: exact keywords live in a hash map, prefix/contains keywords in one
//! Aho-Corasick automaton, regexes in one `RegexSet`, events in maps keyed by (event, key); the
//! winner is the lowest-numbered candidate whose remaining conditions (time window, first-time,
//! …) hold. `compile` and `route` both depend on `model`, never on each other.
//!
//! Message and event names (`msg_type = "image"`, `event = "click"`) are the ones in
//! [`crate::wechat::names`]. Adding a rule action: [`raw`] (the field), [`model`] (the
//! `Action` variant), `compile/actions.rs` (checks), [`route`] (the outcome), and tests.
//!
//! Pure over a parsed message, a [`SubscriberView`] and a clock: no sled, no actix, no HTTP.
//! Files are read only by the `load`/`from_source` entry points (keywords.toml and templates).
//! What a reload may drop ([`RuleSet::unconfirmed_drops`]) is judged over facts passed in (the
//! active grants per article), never read here.
//! May depend on: [`crate::wechat`] types, [`crate::render`], regex, aho-corasick, chrono(-tz).

pub mod cli;
mod compile;
mod diag;
mod menu;
mod model;
mod raw;
mod route;
mod window;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use crate::render::{RenderError, Templates};
use crate::wechat::types::OpenId;

pub(crate) use compile::price::display_fen;
pub use diag::{ConfigErrors, Diagnostic, Severity};
pub use menu::MenuButton;
pub(crate) use window::normalize;

/// A rules file compiled and ready to route. Immutable; share it behind an `Arc`.
#[derive(Debug)]
pub struct RuleSet {
    version: String,
    tz: Tz,
    source_path: PathBuf,
    rules: Vec<model::Rule>,
    index: model::Index,
    articles: Vec<ArticleDef>,
    article_ix: HashMap<String, usize>,
    menu: Option<Vec<MenuButton>>,
    handoff: HandoffSettings,
    templates: Templates,
    reload: ReloadConfirms,
    /// `[assistant]`, the account-wide settings of the `assistant` action.
    assistant: AssistantSettings,
    /// The creator's articles indexed for the assistant; built only when a rule uses it.
    corpus: Option<std::sync::Arc<crate::assistant::retrieval::Corpus>>,
    /// `[account] customer_service`: `Some(false)` when the account cannot use the
    /// customer-service API (an unverified 订阅号), whatever the AppSecret.
    customer_service: Option<bool>,
}

/// A successful load: the rules plus any warnings worth showing the operator.
#[derive(Debug)]
pub struct Loaded {
    pub rules: RuleSet,
    pub warnings: Vec<Diagnostic>,
}

/// What a subscriber looks like to the rules (the store's answer, borrowed).
#[derive(Clone, Copy, Debug)]
pub struct SubscriberView<'a> {
    pub openid: &'a OpenId,
    /// A subscribe event from someone who has never subscribed before.
    pub first_time: bool,
    /// The QR-code scene they first came from.
    pub channel: Option<&'a str>,
    pub tags: &'a [String],
    /// Unix seconds.
    pub subscribed_since: Option<i64>,
}

/// The outcome of routing one push.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The rule that won; `None` when nothing matched (reply `success`).
    pub rule: Option<String>,
    /// Human-readable reason, e.g. `exact keyword "价格"`, `fallback`, `CLICK key ABOUT`
    /// (its `Display`). Kept as a value so the callback does not format a sentence per push.
    pub why: Why,
    /// The rendered reply. `Reply::None` for article and handoff rules: the special action decides.
    pub reply: crate::wechat::reply::Reply,
    pub add_tags: Vec<String>,
    pub special: Option<Special>,
}

/// Why a [`Decision`] was taken; `Display` renders the sentence `mpgate simulate` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    NoRule,
    NoEventRule,
    Internal,
    Exact(String),
    Prefix(String),
    Contains(String),
    Regex(String),
    MsgType(&'static str),
    Any,
    Event {
        /// e.g. `CLICK key`, `subscribe`.
        label: &'static str,
        key: Option<String>,
        /// A subscribe through a QR channel.
        via_channel: bool,
        first_time: Option<bool>,
    },
    Fallback,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NoRule => f.write_str("no rule matched"),
            Why::NoEventRule => f.write_str("no rule for this event"),
            Why::Internal => f.write_str("internal: rule index out of range"),
            Why::Exact(k) => write!(f, "exact keyword {k:?}"),
            Why::Prefix(k) => write!(f, "prefix {k:?}"),
            Why::Contains(k) => write!(f, "contains {k:?}"),
            Why::Regex(re) => write!(f, "regex {re:?}"),
            Why::MsgType(k) => write!(f, "msg_type {k}"),
            Why::Any => f.write_str("any message"),
            Why::Event {
                label,
                key,
                via_channel,
                first_time,
            } => {
                match (via_channel, key) {
                    (true, Some(key)) => write!(f, "subscribe via channel {key}")?,
                    (_, Some(key)) => write!(f, "{label} {key}")?,
                    (_, None) => f.write_str(label)?,
                }
                match first_time {
                    Some(true) => f.write_str(" (first time)"),
                    Some(false) => f.write_str(" (returning)"),
                    None => Ok(()),
                }
            }
            Why::Fallback => f.write_str("fallback"),
        }
    }
}

/// Actions the rules engine names but other modules carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Special {
    /// Show the paywalled article with this id.
    Article { id: String },
    /// Hand the conversation to human customer service.
    Handoff(HandoffAction),
    /// Ask the operator's endpoint for the reply.
    Webhook(WebhookAction),
    /// Ask the model, grounded in the creator's articles (see [`crate::assistant`]). Boxed:
    /// the action is three times the size of the others, and every push moves a decision.
    Assistant(Box<AssistantAction>),
}

/// An `assistant = { … }` rule action, decided at routing time.
#[derive(Clone, Debug, PartialEq)]
pub struct AssistantAction {
    pub model: String,
    /// Overrides `MPGATE_ASSISTANT_API_BASE`.
    pub api_base: Option<String>,
    /// The name of an environment variable holding this rule's API key; overrides
    /// `MPGATE_ASSISTANT_API_KEY` (a key is never written into keywords.toml).
    pub api_key_env: Option<String>,
    /// The system prompt's template name in the rule set (render it with
    /// [`RuleSet::render_assistant_system`]); `None`: the built-in prompt.
    pub system: Option<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Past question/answer pairs sent along (0: none).
    pub turns: u32,
    /// Passages of the creator's articles put into the prompt.
    pub passages: usize,
    /// How long the passive reply waits for the answer (≤ 4.5 s).
    pub budget: std::time::Duration,
    /// Who may ask.
    pub audience: Audience,
    /// Rendered text for those who may not ask (`None`: `success`).
    pub teaser: Option<String>,
    /// Rendered text for when the endpoint fails or times out.
    pub fallback: Option<String>,
}

/// Who may use an assistant rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    All,
    /// Subscribers carrying this tag.
    Tag(String),
    /// Subscribers entitled to this article.
    Entitled(String),
}

/// `[assistant]`: account-wide settings of the `assistant` action (defaults when absent).
#[derive(Clone, Debug, PartialEq)]
pub struct AssistantSettings {
    /// Normalised word that fetches a kept answer (`继续`).
    pub continue_word: String,
    /// Normalised words that clear the subscriber's memory (`清除记忆`).
    pub clear_words: Vec<String>,
    pub cleared_reply: String,
    /// How long a remembered turn counts.
    pub memory_minutes: u32,
    /// Questions a subscriber may ask per day (0: no limit).
    pub daily_questions: u32,
    /// Tokens the whole account may use per day (0: no limit).
    pub daily_tokens: u64,
    /// Questions a subscriber may ask per minute (0: no limit).
    pub per_minute: u32,
    /// Words refused in questions and replaced in answers (as written; match normalised).
    pub blocklist: Vec<String>,
    pub blocked_question_reply: String,
    pub blocked_answer_reply: String,
    pub quota_reply: String,
    pub budget_reply: String,
    pub rate_reply: String,
    /// The answer to the platform's last retry when the answer is not ready yet.
    pub pull_prompt: String,
    /// The answer to the continue word while the answer is still being written.
    pub pull_pending_reply: String,
    /// Extra documents to index, relative to the templates dir (Markdown, HTML or text).
    pub documents: Vec<String>,
}

impl Default for AssistantSettings {
    fn default() -> Self {
        AssistantSettings {
            continue_word: "继续".into(),
            clear_words: vec!["清除记忆".into()],
            cleared_reply: "好的，之前的对话我已经忘掉了。".into(),
            memory_minutes: 30,
            daily_questions: 20,
            daily_tokens: 0,
            per_minute: 3,
            blocklist: Vec::new(),
            blocked_question_reply: "这个问题我不能回答，换个问题试试吧。".into(),
            blocked_answer_reply: "这个问题我暂时答不好，换个问法试试吧。".into(),
            quota_reply: "今天的提问次数用完了，明天再来问吧。".into(),
            budget_reply: "助教今天已经下班了，明天再来问吧。".into(),
            rate_reply: "问得有点快，歇一分钟再问吧。".into(),
            pull_prompt: "回答还在生成中，稍后回复「继续」获取回答。".into(),
            pull_pending_reply: "还在想，请过几秒再回复「继续」。".into(),
            documents: Vec::new(),
        }
    }
}

/// The variables an assistant rule's system prompt template sees: render it with
/// [`RuleSet::render_assistant_system`] and this context. Every prompt is sample-rendered
/// against these at load (strict: any other variable is a load error).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AssistantPromptVars {
    /// The subscriber's tags.
    pub tags: Vec<String>,
    /// The QR-code scene the subscriber first came from.
    pub channel: Option<String>,
    /// Ids of the articles the subscriber is entitled to.
    pub entitlements: Vec<String>,
}

impl AssistantPromptVars {
    /// Two contexts a prompt must render against at load: every value present, and none.
    pub(crate) fn samples() -> [AssistantPromptVars; 2] {
        [
            AssistantPromptVars {
                tags: vec!["sample-tag".into()],
                channel: Some("sample-channel".into()),
                entitlements: vec!["sample-article".into()],
            },
            AssistantPromptVars::default(),
        ]
    }
}

/// A webhook call, decided at routing time.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookAction {
    pub url: String,
    /// How long the callback waits before answering `success` and delivering later.
    pub timeout: std::time::Duration,
    /// Rendered text for when the endpoint fails.
    pub fallback: Option<String>,
}

/// A handoff, evaluated at routing time.
#[derive(Clone, Debug, PartialEq)]
pub struct HandoffAction {
    /// Target agent (`alice@gh_xxx`); `None` lets the platform pick.
    pub kf_account: Option<String>,
    /// Rendered notice to send when connecting.
    pub notice: Option<String>,
    /// Whether `now` is inside the rule's service hours (true when it has none).
    pub in_hours: bool,
    /// Rendered text to send outside service hours.
    pub offline: Option<String>,
}

/// Account-wide handoff settings (`[handoff]`).
#[derive(Clone, Debug, PartialEq)]
pub struct HandoffSettings {
    /// Normalised (NFKC, lower-case, trimmed) keywords that end a handoff.
    pub exit_keywords: Vec<String>,
    pub idle_timeout_minutes: u32,
    /// Sent after an exit keyword closes a session (`exit_reply`).
    pub exit_reply: String,
    /// Whether the file had a `[handoff]` section at all.
    pub configured: bool,
}

impl Default for HandoffSettings {
    fn default() -> Self {
        HandoffSettings {
            exit_keywords: Vec::new(),
            idle_timeout_minutes: 30,
            exit_reply: "已结束人工客服，回到自动回复。有需要随时再叫我们。".to_string(),
            configured: false,
        }
    }
}

/// One paywalled article (`[[article]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ArticleDef {
    pub id: String,
    pub title: String,
    pub teaser: String,
    pub cover: String,
    /// The display form of [`ArticleDef::price_fen`] (`"¥19.90"`), `""` when not for sale.
    pub price: String,
    /// The price in fen (> 0, at most 1,000,000 yuan); `None`: not for sale, grants only.
    pub price_fen: Option<u64>,
    /// The order description as written (≤ 127 characters); see
    /// [`ArticleDef::order_description`].
    pub description: Option<String>,
    pub body: ArticleBody,
    pub purchase_url: Option<String>,
}

impl ArticleDef {
    /// What a payment order for this article says it is for: `description`, else the title.
    pub fn order_description(&self) -> &str {
        self.description.as_deref().unwrap_or(&self.title)
    }
}

/// The most characters an order description may have (WeChat Pay's `description`, 1–127).
pub const ORDER_DESCRIPTION_MAX_CHARS: usize = 127;

/// Where an article's body comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ArticleBody {
    /// A template file relative to the templates dir (compiled at load).
    Template(String),
    Url(String),
}

/// `[reload]` in keywords.toml: what the operator confirms a hot reload of this file may drop.
/// Without it, a reload that would drop every rule, or an article subscribers paid for, is
/// refused (see [`RuleSet::unconfirmed_drops`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadConfirms {
    /// `allow_empty = true`: a file with no rules and no articles may replace a live set.
    pub allow_empty: bool,
    /// `confirm_remove = ["id", …]`: articles that may go although subscribers hold grants.
    pub confirm_remove: Vec<String>,
}

impl ReloadConfirms {
    fn from_raw(raw: Option<&raw::RawReload>) -> Self {
        raw.map(|r| ReloadConfirms {
            allow_empty: r.allow_empty,
            confirm_remove: r.confirm_remove.clone(),
        })
        .unwrap_or_default()
    }
}

/// Something a rules file would drop that its `[reload]` table does not confirm. `Display` says
/// what would be lost; [`UnconfirmedDrop::hint`] says how to confirm it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnconfirmedDrop {
    /// The file has no rules and no articles (an emptied or truncated file looks like this).
    /// The counts are what the live set has (both 0 for `mpgate check`, where nothing is live).
    Everything {
        live_rules: usize,
        live_articles: usize,
    },
    /// An article subscribers hold active grants for is not declared: their links would 404.
    Article { id: String, active_grants: usize },
}

impl std::fmt::Display for UnconfirmedDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnconfirmedDrop::Everything {
                live_rules: 0,
                live_articles: 0,
            } => f.write_str("the file has no rules and no articles: every push would get `success`"),
            UnconfirmedDrop::Everything {
                live_rules,
                live_articles,
            } => write!(
                f,
                "the new file has no rules and no articles (the live set has {} and {})",
                count(*live_rules, "rule", "rules"),
                count(*live_articles, "article", "articles")
            ),
            UnconfirmedDrop::Article { id, active_grants } => write!(
                f,
                "article `{id}` is not declared but {} active grants for it (their links would stop working)",
                count(*active_grants, "subscriber holds", "subscribers hold")
            ),
        }
    }
}

/// `1 rule`, `2 rules`: operators read these lines.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl UnconfirmedDrop {
    /// How the operator confirms this drop, or avoids it.
    pub fn hint(&self) -> String {
        match self {
            UnconfirmedDrop::Everything { .. } => {
                "if that is meant, add `[reload]` with `allow_empty = true` to the file".to_string()
            }
            UnconfirmedDrop::Article { id, .. } => format!(
                "if that is meant, add `[reload]` with `confirm_remove = [\"{id}\"]` to the file, or revoke the grants first (`mpgate revoke`) and save it again"
            ),
        }
    }
}

impl RuleSet {
    /// Reads `path` and every template it names, compiles, and validates.
    pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![Diagnostic {
                severity: Severity::Error,
                file: path.display().to_string(),
                line: 1,
                column: 1,
                message: format!("cannot read rules file: {e}"),
                help: None,
            }])
        })?;
        Self::from_source(&src, path)
    }

    /// Compiles `src` as if read from `path`; templates are resolved beside `path`.
    pub fn from_source(src: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
        compile::compile(src, path)
    }

    /// Short hex hash of keywords.toml and every file under the templates dir.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The rules file this set was compiled from.
    pub fn source_path(&self) -> &Path {
        &self.source_path
    }

    /// The templates dir (watched by [`crate::reload`]).
    pub fn templates_dir(&self) -> &Path {
        self.templates.dir()
    }

    pub fn article(&self, id: &str) -> Option<&ArticleDef> {
        self.article_ix.get(id).and_then(|&i| self.articles.get(i))
    }

    pub fn articles(&self) -> &[ArticleDef] {
        &self.articles
    }

    /// Renders an article's body template (for [`ArticleBody::Template`]) with the page's own
    /// context; the page renderer decides the variables.
    pub fn render_article_body<S: serde::Serialize>(
        &self,
        id: &str,
        ctx: &S,
    ) -> Option<Result<String, RenderError>> {
        match &self.article(id)?.body {
            ArticleBody::Template(name) => Some(self.templates.render(name, ctx)),
            ArticleBody::Url(_) => None,
        }
    }

    /// Renders a page template (`article.html`, `paywall.html`, `link_error.html`, …) from the
    /// templates dir with the page's own context. Loaded lazily and cached with this rule set,
    /// so an edit takes effect on the next reload like every other template.
    pub fn render_page<S: serde::Serialize>(
        &self,
        name: &str,
        ctx: &S,
    ) -> Result<String, RenderError> {
        self.templates.render(name, ctx)
    }

    /// The body of the platform's `menu/create` call, when the file defines a menu.
    pub fn menu_json(&self) -> Option<serde_json::Value> {
        let menu = self.menu.as_ref()?;
        serde_json::to_value(menu::MenuBody { button: menu }).ok()
    }

    /// The menu as typed buttons (field order matches the platform's JSON).
    pub fn menu(&self) -> Option<&[MenuButton]> {
        self.menu.as_deref()
    }

    pub fn handoff(&self) -> &HandoffSettings {
        &self.handoff
    }

    /// `[assistant]` (defaults when the file has none).
    pub fn assistant(&self) -> &AssistantSettings {
        &self.assistant
    }

    /// Whether any rule uses the `assistant` action: when not, the continue and clear words
    /// are ordinary text and no push pays for the assistant.
    pub fn has_assistant(&self) -> bool {
        self.corpus.is_some()
    }

    /// The creator's articles indexed for the assistant (`Some` exactly when
    /// [`RuleSet::has_assistant`]).
    pub fn corpus(&self) -> Option<&crate::assistant::retrieval::Corpus> {
        self.corpus.as_deref()
    }

    /// `[account] customer_service`, when the file says.
    pub fn customer_service(&self) -> Option<bool> {
        self.customer_service
    }

    /// The system prompt of an assistant rule (`template` from [`AssistantAction::system`]).
    pub fn render_assistant_system<S: serde::Serialize>(
        &self,
        template: &str,
        ctx: &S,
    ) -> Result<String, RenderError> {
        self.templates.render(template, ctx)
    }

    /// Whether `text` (normalised as keywords are) is the assistant's continue word. Always
    /// false, without normalising, when no rule uses the assistant: then the word is ordinary
    /// text and a push pays nothing for the check.
    pub fn is_continue_word(&self, text: &str) -> bool {
        self.has_assistant() && normalize(text) == self.assistant.continue_word
    }

    /// Whether `text` (normalised) is one of the assistant's clear words; false without an
    /// assistant rule, as [`RuleSet::is_continue_word`].
    pub fn is_clear_word(&self, text: &str) -> bool {
        self.has_assistant() && self.assistant.clear_words.contains(&normalize(text))
    }

    /// Whether `text` (normalised) is one of the handoff exit keywords.
    pub fn is_exit_keyword(&self, text: &str) -> bool {
        let t = normalize(text);
        self.handoff.exit_keywords.contains(&t)
    }

    /// Whether the files on disk (rules file and templates) differ from what this set was
    /// compiled from. Reads them; meant for the watcher's first look, not for every request.
    pub fn is_stale(&self) -> bool {
        match std::fs::read_to_string(&self.source_path) {
            Ok(src) => compile::version(&src, self.templates.dir()) != self.version,
            Err(_) => true,
        }
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// What this file confirms a reload of it may drop (`[reload]`).
    pub fn reload_confirms(&self) -> &ReloadConfirms {
        &self.reload
    }

    /// No rules and no articles: the set answers every push with `success`.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.articles.is_empty()
    }

    /// Articles `live` declares and this set does not.
    pub fn removed_articles<'a>(&'a self, live: &'a RuleSet) -> impl Iterator<Item = &'a str> {
        live.articles
            .iter()
            .filter(|a| self.article(&a.id).is_none())
            .map(|a| a.id.as_str())
    }

    /// What putting this set in place of `live` would drop that its `[reload]` does not
    /// confirm; empty when the swap may go ahead. `grants` is active grants per article id, a
    /// fact from the store passed in (the rules never read it).
    ///
    /// With `live`: every rule, when this set is empty and `live` is not; and each article
    /// `live` declares, this set does not, and subscribers hold grants for. Without (`mpgate
    /// check`, nothing is live): this set being empty, and each article with grants that this
    /// set does not declare.
    pub fn unconfirmed_drops(
        &self,
        live: Option<&RuleSet>,
        grants: &BTreeMap<String, usize>,
    ) -> Vec<UnconfirmedDrop> {
        let mut drops = Vec::new();
        let live_has_some = live.is_none_or(|l| !l.is_empty());
        if self.is_empty() && live_has_some && !self.reload.allow_empty {
            drops.push(UnconfirmedDrop::Everything {
                live_rules: live.map_or(0, |l| l.rules.len()),
                live_articles: live.map_or(0, |l| l.articles.len()),
            });
        }
        let gone: Vec<&str> = match live {
            Some(l) => self.removed_articles(l).collect(),
            None => grants
                .keys()
                .map(String::as_str)
                .filter(|id| self.article(id).is_none())
                .collect(),
        };
        for id in gone {
            let active_grants = grants.get(id).copied().unwrap_or(0);
            if active_grants > 0 && !self.reload.confirm_remove.iter().any(|c| c == id) {
                drops.push(UnconfirmedDrop::Article {
                    id: id.to_string(),
                    active_grants,
                });
            }
        }
        drops
    }
}
