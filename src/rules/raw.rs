//! The raw serde mirror of `keywords.toml`: exactly what an operator may write, nothing compiled.
//!
//! Strict on purpose (`deny_unknown_fields` everywhere) so a typo is an error with a position, not
//! a silently ignored key. Positions the compiler needs for its own errors are kept with
//! [`toml::Spanned`]. May depend on: serde, toml.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub account: Option<S<RawAccount>>,
    #[serde(default)]
    pub rule: Vec<S<RawRule>>,
    #[serde(default)]
    pub article: Vec<S<RawArticle>>,
    #[serde(default)]
    pub handoff: Option<S<RawHandoffSettings>>,
    #[serde(default)]
    // Not `Spanned`: `[menu]` is usually implicit (only `[[menu.button]]`), which toml 0.8
    // cannot span.
    pub menu: Option<RawMenu>,
    #[serde(default)]
    pub reload: Option<RawReload>,
    #[serde(default)]
    pub assistant: Option<S<RawAssistantSettings>>,
}

/// `[reload]`: what the operator confirms a hot reload of this file may drop.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    /// A file with no rules and no articles may replace a live set that has some.
    #[serde(default)]
    pub allow_empty: bool,
    /// Article ids the file may stop declaring although subscribers hold active grants.
    #[serde(default)]
    pub confirm_remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    pub timezone: Option<S<String>>,
    pub templates_dir: Option<S<String>>,
    /// `false`: the account cannot use the customer-service API (an unverified 订阅号).
    pub customer_service: Option<S<bool>>,
}

/// A string or a list of strings (`click = "ABOUT"` or `click = ["A", "B"]`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: S<String>,
    pub when: Option<S<RawWhen>>,
    pub fallback: Option<S<bool>>,
    pub reply: Option<S<RawReply>>,
    pub replies: Option<S<Vec<S<RawReply>>>>,
    pub article: Option<S<String>>,
    pub handoff: Option<S<RawHandoffAction>>,
    pub webhook: Option<S<RawWebhook>>,
    pub assistant: Option<S<RawAssistant>>,
    pub tag: Option<S<OneOrMany>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhen {
    pub exact: Option<Vec<S<String>>>,
    pub prefix: Option<Vec<S<String>>>,
    pub contains: Option<Vec<S<String>>>,
    pub regex: Option<Vec<S<String>>>,
    pub msg_type: Option<S<OneOrMany>>,
    pub any: Option<S<bool>>,
    pub event: Option<S<String>>,
    pub key: Option<S<OneOrMany>>,
    pub channel: Option<S<OneOrMany>>,
    pub first_time: Option<S<bool>>,
    pub click: Option<S<OneOrMany>>,
    pub scan: Option<S<OneOrMany>>,
    pub scancode: Option<S<OneOrMany>>,
    pub scan_result_prefix: Option<S<String>>,
    pub location: Option<S<bool>>,
    pub hours: Option<S<RawHours>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHours {
    pub days: Option<S<String>>,
    pub from: Option<S<String>>,
    pub to: Option<S<String>>,
}

/// One reply; exactly one kind per table (`{ text = "…" }`, `{ template = "x.txt" }`, …).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawReply {
    Text(S<String>),
    Template(S<String>),
    Image(S<String>),
    Voice(S<String>),
    Video(RawVideo),
    Music(RawMusic),
    News(S<Vec<RawNewsItem>>),
    Transfer(RawTransfer),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVideo {
    pub media_id: String,
    pub title: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMusic {
    pub title: Option<String>,
    pub description: Option<String>,
    pub music_url: Option<String>,
    pub hq_music_url: Option<String>,
    pub thumb_media_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNewsItem {
    pub title: S<String>,
    #[serde(default)]
    pub description: Option<S<String>>,
    #[serde(default)]
    pub pic_url: String,
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransfer {
    pub kf_account: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHandoffAction {
    pub kf_account: Option<String>,
    pub notice: Option<S<String>>,
    pub hours: Option<S<RawHours>>,
    pub offline: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub url: S<String>,
    pub timeout_ms: Option<S<u64>>,
    pub fallback: Option<S<String>>,
}

/// `assistant = { model, system, … }`: a model answers from the creator's articles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssistant {
    pub model: S<String>,
    /// A template file under the templates dir.
    pub system: Option<S<String>>,
    /// Wide integers so an out-of-range value gets the compiler's message, not serde's.
    pub max_tokens: Option<S<i64>>,
    pub temperature: Option<S<f64>>,
    pub turns: Option<S<i64>>,
    pub passages: Option<S<i64>>,
    pub timeout_ms: Option<S<i64>>,
    pub for_tag: Option<S<String>>,
    pub for_article: Option<S<String>>,
    pub teaser: Option<S<String>>,
    pub fallback: Option<S<String>>,
    pub api_base: Option<S<String>>,
    pub api_key_env: Option<S<String>>,
    /// Accepted only to be refused with a hint (`api_key_env`): a key never lives in this
    /// file. Its value is never printed.
    pub api_key: Option<S<toml::Value>>,
}

/// `[assistant]`: account-wide settings of the `assistant` action; every key optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssistantSettings {
    pub continue_word: Option<S<String>>,
    pub clear_words: Option<Vec<S<String>>>,
    pub cleared_reply: Option<S<String>>,
    pub memory_minutes: Option<S<i64>>,
    pub daily_questions: Option<S<i64>>,
    pub daily_tokens: Option<S<i64>>,
    pub per_minute: Option<S<i64>>,
    pub blocklist: Option<Vec<S<String>>>,
    pub blocked_question_reply: Option<S<String>>,
    pub blocked_answer_reply: Option<S<String>>,
    pub quota_reply: Option<S<String>>,
    pub budget_reply: Option<S<String>>,
    pub rate_reply: Option<S<String>>,
    pub pull_prompt: Option<S<String>>,
    pub pull_pending_reply: Option<S<String>>,
    /// Extra Markdown/HTML/text files to index, relative to the templates dir.
    pub documents: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHandoffSettings {
    #[serde(default)]
    pub exit_keywords: Vec<S<String>>,
    pub idle_timeout_minutes: Option<S<u32>>,
    /// What the subscriber hears after an exit keyword.
    pub exit_reply: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArticle {
    pub id: S<String>,
    pub title: String,
    #[serde(default)]
    pub teaser: String,
    #[serde(default)]
    pub cover: String,
    /// Yuan as the operator writes it (`"19.90"`, `"¥9.9"`, `"29元"`); absent = not for sale.
    pub price: Option<S<RawPrice>>,
    /// The order description the payment shows (≤ 127 characters); defaults to the title.
    pub description: Option<S<String>>,
    pub body_template: Option<S<String>>,
    pub body_url: Option<S<String>>,
    pub purchase_url: Option<S<String>>,
}

/// `price = "19.90"`: the text as written (the compiler reads it). A TOML number is refused here
/// with a hint, since `19.9` as a float is not the exact amount an operator means.
#[derive(Debug)]
pub(crate) struct RawPrice(pub String);

impl<'de> Deserialize<'de> for RawPrice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl V {
            fn number<E: serde::de::Error>(n: impl std::fmt::Display) -> E {
                E::custom(format!(
                    "price {n} is a number; write it as a string in yuan, like price = \"{n}\""
                ))
            }
        }
        impl serde::de::Visitor<'_> for V {
            type Value = RawPrice;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a price in yuan as a string, like \"19.90\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPrice, E> {
                Ok(RawPrice(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawPrice, E> {
                Err(V::number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawPrice, E> {
                Err(V::number(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawPrice, E> {
                Err(V::number(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMenu {
    #[serde(default)]
    pub button: Vec<S<RawButton>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawButton {
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub name: S<String>,
    pub key: Option<S<String>>,
    pub url: Option<S<String>>,
    pub appid: Option<S<String>>,
    pub pagepath: Option<S<String>>,
    pub media_id: Option<S<String>>,
    pub article_id: Option<S<String>>,
    pub sub_button: Option<Vec<S<RawButton>>>,
}
