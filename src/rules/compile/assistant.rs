//! The `assistant` rule action and `[assistant]`: their checks, and the documents the
//! assistant answers from, gathered at load for [`crate::assistant::retrieval::Corpus`].
//!
//! Owns the limits of an assistant rule (tokens, temperature, turns, passages, wait), who may
//! ask (a tag or an entitlement), the system prompt template's check, the account-wide
//! settings, and which files become documents: every `[[article]]` body (paid), the other
//! files under `templates/articles/` and `[assistant] documents` (free). Files are read here,
//! as templates are, because loading is the only place the rules read files; the documents
//! all live under the templates dir, so the rule set's version (and hot reload) covers them.
//! May depend on: [`crate::rules::raw`], [`crate::rules::model`], [`crate::render`],
//! [`crate::assistant::retrieval`] (its `Doc` type).

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};

use super::actions::Cx;
use super::shadow::Triggers;
use super::Compiler;
use crate::assistant::retrieval::{Doc, DocFormat};
use crate::render::template_files;
use crate::rules::diag::{did_you_mean, Diagnostic, Severity};
use crate::rules::model::{
    Action, AssistantSpec, Rule, ASSISTANT_DEFAULT_MAX_TOKENS, ASSISTANT_DEFAULT_MS,
    ASSISTANT_DEFAULT_PASSAGES, ASSISTANT_DEFAULT_TEMPERATURE, ASSISTANT_DEFAULT_TURNS,
    ASSISTANT_MAX_MS, ASSISTANT_MAX_PASSAGES, ASSISTANT_MAX_TOKENS, ASSISTANT_MAX_TURNS,
    ASSISTANT_MIN_MS,
};
use crate::rules::raw::{RawAssistant, RawAssistantSettings, S};
use crate::rules::window::normalize;
use crate::rules::{ArticleBody, ArticleDef, AssistantPromptVars, AssistantSettings, Audience};

/// The folder under the templates dir whose files the assistant reads besides the articles.
pub(crate) const ARTICLES_DIR: &str = "articles";

impl Compiler<'_> {
    /// An `assistant = { … }` action, every value checked (defaults where a value is wrong:
    /// the error stops the load anyway).
    pub(super) fn assistant_action(
        &mut self,
        name: &str,
        a: &S<RawAssistant>,
        cx: Cx<'_>,
        article_ix: &HashMap<String, usize>,
    ) -> AssistantSpec {
        let r = a.get_ref();
        if let Some(k) = &r.api_key {
            // Never echo the value: it is a secret written where it must not be.
            self.sink.error_help(
                k.span(),
                format!("rule `{name}` writes an API key into keywords.toml"),
                "put the key in an environment variable and name it: api_key_env = \"MY_KEY\" (or set MPGATE_ASSISTANT_API_KEY for every rule); then remove this line and rotate the key if the file was shared",
            );
        }
        let model = r.model.get_ref().trim().to_string();
        if model.is_empty() {
            self.sink.error_help(
                r.model.span(),
                "assistant `model` is empty",
                "name the model your endpoint serves, e.g. model = \"gpt-4o-mini\"",
            );
        }
        let api_base = r.api_base.as_ref().map(|u| {
            let s = u.get_ref().trim();
            let host = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"));
            if host.is_none_or(|h| h.trim_matches('/').is_empty()) {
                self.sink.error_help(
                    u.span(),
                    format!("api_base `{s}` is not an http(s) URL"),
                    "write the endpoint's base, e.g. api_base = \"https://api.openai.com/v1\" (chat/completions is added)",
                );
            }
            s.trim_end_matches('/').to_string()
        });
        let api_key_env = r.api_key_env.as_ref().map(|e| {
            let s = e.get_ref().trim();
            let is_name = !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !is_name {
                // Not shown: an operator who pasted the key here must not see it echoed.
                self.sink.error_help(
                    e.span(),
                    "api_key_env is not an environment variable name",
                    "it names the variable that holds the key (letters, digits, _), e.g. api_key_env = \"COURSE_AI_KEY\"; the key itself goes in that variable",
                );
            }
            s.to_string()
        });
        let system = r.system.as_ref().and_then(|t| self.system_prompt(t));
        let max_tokens = self.ranged(
            r.max_tokens.as_ref(),
            "max_tokens",
            1..=i64::from(ASSISTANT_MAX_TOKENS),
            "an answer of a few messages is 300-800 tokens; the platform cuts one message at 2048 bytes",
        );
        let max_tokens = max_tokens.map_or(ASSISTANT_DEFAULT_MAX_TOKENS, |v| {
            u32::try_from(v).unwrap_or(ASSISTANT_DEFAULT_MAX_TOKENS)
        });
        let temperature = match &r.temperature {
            Some(t) => {
                let v = *t.get_ref();
                if (0.0..=2.0).contains(&v) {
                    // f32 is far finer than any temperature means.
                    v as f32
                } else {
                    self.sink.error_help(
                        t.span(),
                        format!("temperature = {v} is outside 0 to 2"),
                        "0 answers the same way every time, 2 is very loose; 0.3 suits answers from articles",
                    );
                    ASSISTANT_DEFAULT_TEMPERATURE
                }
            }
            None => ASSISTANT_DEFAULT_TEMPERATURE,
        };
        let turns = self
            .ranged(
                r.turns.as_ref(),
                "turns",
                0..=i64::from(ASSISTANT_MAX_TURNS),
                "past question/answer pairs sent along; 0 remembers nothing, each turn costs tokens",
            )
            .map_or(ASSISTANT_DEFAULT_TURNS, |v| {
                u32::try_from(v).unwrap_or(ASSISTANT_DEFAULT_TURNS)
            });
        let passages = self
            .ranged(
                r.passages.as_ref(),
                "passages",
                1..=ASSISTANT_MAX_PASSAGES as i64,
                "passages of your articles put into the prompt; 3 is usually enough",
            )
            .map_or(ASSISTANT_DEFAULT_PASSAGES, |v| {
                usize::try_from(v).unwrap_or(ASSISTANT_DEFAULT_PASSAGES)
            });
        let ms = self
            .ranged(
                r.timeout_ms.as_ref(),
                "timeout_ms",
                ASSISTANT_MIN_MS as i64..=ASSISTANT_MAX_MS as i64,
                "how long the passive reply waits: the platform gives the whole push 5 s; a slower answer arrives later",
            )
            .map_or(ASSISTANT_DEFAULT_MS, |v| {
                u64::try_from(v).unwrap_or(ASSISTANT_DEFAULT_MS)
            });
        let audience = self.audience(name, r, article_ix);
        let teaser = r
            .teaser
            .as_ref()
            .and_then(|t| self.text(name, "assistant.teaser", t, cx));
        if let (Some(t), Audience::All) = (&r.teaser, &audience) {
            self.sink.warn(
                t.span(),
                format!("the teaser of rule `{name}` is never sent: everyone may ask (no `for_tag` or `for_article`)"),
            );
        }
        let fallback = r
            .fallback
            .as_ref()
            .and_then(|t| self.text(name, "assistant.fallback", t, cx));
        AssistantSpec {
            model,
            api_base,
            api_key_env,
            system,
            max_tokens,
            temperature,
            turns,
            passages,
            budget: std::time::Duration::from_millis(ms),
            audience,
            teaser,
            fallback,
        }
    }

    /// `Some(value)` when present and inside `range`; an error at the value otherwise.
    fn ranged(
        &mut self,
        v: Option<&S<i64>>,
        what: &str,
        range: std::ops::RangeInclusive<i64>,
        help: &str,
    ) -> Option<i64> {
        let v = v?;
        let n = *v.get_ref();
        if range.contains(&n) {
            return Some(n);
        }
        self.sink.error_help(
            v.span(),
            format!(
                "{what} = {n} is outside {}..={}",
                range.start(),
                range.end()
            ),
            help,
        );
        None
    }

    fn audience(
        &mut self,
        name: &str,
        r: &RawAssistant,
        article_ix: &HashMap<String, usize>,
    ) -> Audience {
        match (&r.for_tag, &r.for_article) {
            (Some(t), Some(_)) => {
                self.sink.error_help(
                    t.span(),
                    format!("rule `{name}` has both `for_tag` and `for_article`"),
                    "keep one: for_tag = \"会员\" (subscribers with the tag) or for_article = \"id\" (readers entitled to the article); to combine, grant the article to the tag's members",
                );
                Audience::All
            }
            (Some(t), None) => {
                let tag = t.get_ref().trim();
                if tag.is_empty() {
                    self.sink.error_help(
                        t.span(),
                        "for_tag is empty",
                        "name the tag members carry, e.g. for_tag = \"会员\", or remove it to let everyone ask",
                    );
                }
                Audience::Tag(tag.to_string())
            }
            (None, Some(a)) => {
                let id = a.get_ref().trim();
                if !article_ix.contains_key(id) {
                    let ids: Vec<&str> = article_ix.keys().map(String::as_str).collect();
                    let help = match did_you_mean(id, &ids) {
                        Some(s) => format!("did you mean `{s}`? for_article names an [[article]] id"),
                        None => format!("for_article names an [[article]] id; define it with [[article]] id = \"{id}\""),
                    };
                    self.sink
                        .error_help(a.span(), format!("unknown article id `{id}`"), help);
                }
                Audience::Entitled(id.to_string())
            }
            (None, None) => Audience::All,
        }
    }

    /// The system prompt: a template file, compiled and sample-rendered with the variables a
    /// prompt sees ([`AssistantPromptVars`]), not a reply's.
    fn system_prompt(&mut self, t: &S<String>) -> Option<String> {
        let name = self.file_template(t)?;
        for sample in AssistantPromptVars::samples() {
            if let Err(e) = self.templates.render(&name, &sample) {
                let file = if e.name() != name && !e.name().starts_with("inline:") {
                    self.file_label(e.name())
                } else {
                    self.file_label(&name)
                };
                self.sink.diags.push(Diagnostic {
                    severity: Severity::Error,
                    file,
                    line: e.line().unwrap_or(1).max(1),
                    column: 1,
                    message: format!("template error in the assistant's system prompt: {e}"),
                    help: Some(
                        "a system prompt may use: tags (a list), channel (may be none), entitlements (article ids)"
                            .to_string(),
                    ),
                });
                return None;
            }
        }
        Some(name)
    }

    /// `[assistant]`, checked; the defaults where it is absent or a value is wrong.
    pub(super) fn assistant_settings(
        &mut self,
        raw: Option<&S<RawAssistantSettings>>,
    ) -> AssistantSettings {
        let mut out = AssistantSettings::default();
        let Some(raw) = raw else {
            return out;
        };
        let r = raw.get_ref();
        if let Some(w) = &r.continue_word {
            let n = normalize(w.get_ref());
            if n.is_empty() {
                self.sink.error_help(
                    w.span(),
                    "continue_word is empty",
                    "a subscriber sends this word to get an answer that was not ready in time; remove the line for the default 「继续」",
                );
            } else {
                out.continue_word = n;
            }
        }
        if let Some(words) = &r.clear_words {
            out.clear_words.clear();
            for w in words {
                let n = normalize(w.get_ref());
                if n.is_empty() {
                    self.sink.error(w.span(), "empty clear word");
                } else if n == out.continue_word {
                    self.sink.error_help(
                        w.span(),
                        format!("clear word `{}` is also the continue word", w.get_ref().trim()),
                        "one word cannot both fetch a kept answer and clear the memory; change one of them",
                    );
                } else {
                    out.clear_words.push(n);
                }
            }
        }
        let replies = [
            (&r.cleared_reply, "cleared_reply", &mut out.cleared_reply),
            (
                &r.blocked_question_reply,
                "blocked_question_reply",
                &mut out.blocked_question_reply,
            ),
            (
                &r.blocked_answer_reply,
                "blocked_answer_reply",
                &mut out.blocked_answer_reply,
            ),
            (&r.quota_reply, "quota_reply", &mut out.quota_reply),
            (&r.budget_reply, "budget_reply", &mut out.budget_reply),
            (&r.rate_reply, "rate_reply", &mut out.rate_reply),
            (&r.pull_prompt, "pull_prompt", &mut out.pull_prompt),
            (
                &r.pull_pending_reply,
                "pull_pending_reply",
                &mut out.pull_pending_reply,
            ),
        ];
        for (v, what, slot) in replies {
            let Some(v) = v else { continue };
            let t = v.get_ref().trim();
            if t.is_empty() {
                self.sink.error_help(
                    v.span(),
                    format!("{what} is empty"),
                    "write what the subscriber reads, or remove the line for the default",
                );
            } else {
                *slot = t.to_string();
            }
        }
        if let Some(m) = &r.memory_minutes {
            let n = *m.get_ref();
            match u32::try_from(n) {
                Ok(n) if n >= 1 => out.memory_minutes = n,
                _ => self.sink.error_help(
                    m.span(),
                    format!("memory_minutes = {n} must be at least 1"),
                    "how long a past turn is remembered; to remember nothing, set turns = 0 on the rule",
                ),
            }
        }
        let small = u64::from(u32::MAX);
        if let Some(n) = self.limit(r.daily_questions.as_ref(), "daily_questions", small) {
            out.daily_questions = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = self.limit(r.daily_tokens.as_ref(), "daily_tokens", u64::MAX) {
            out.daily_tokens = n;
        }
        if let Some(n) = self.limit(r.per_minute.as_ref(), "per_minute", small) {
            out.per_minute = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(list) = &r.blocklist {
            for w in list {
                let t = w.get_ref().trim();
                if normalize(t).is_empty() {
                    self.sink.error_help(
                        w.span(),
                        "empty blocklist entry",
                        "an empty word would block every question; remove it",
                    );
                } else {
                    out.blocklist.push(t.to_string());
                }
            }
        }
        if let Some(docs) = &r.documents {
            for d in docs {
                if let Some(name) = self.document(d) {
                    if !out.documents.contains(&name) {
                        out.documents.push(name);
                    }
                }
            }
        }
        out
    }

    /// A daily or per-minute limit: 0 (none) up to `max`.
    fn limit(&mut self, v: Option<&S<i64>>, what: &str, max: u64) -> Option<u64> {
        let v = v?;
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(ok) if ok <= max => Some(ok),
            _ => {
                self.sink.error_help(
                    v.span(),
                    format!("{what} = {n} is not a limit"),
                    format!("write 0 for no limit, or a number up to {max}"),
                );
                None
            }
        }
    }

    /// One `[assistant] documents` entry: a file under the templates dir that exists.
    fn document(&mut self, d: &S<String>) -> Option<String> {
        let name = d.get_ref().trim();
        let p = Path::new(name);
        if name.is_empty()
            || p.is_absolute()
            || p.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            self.sink.error_help(
                d.span(),
                format!("bad document name `{name}`"),
                "name a file relative to the templates dir, e.g. \"faq.md\" or \"docs/course.html\"",
            );
            return None;
        }
        let full = self.tdir.join(p);
        if !full.is_file() {
            self.sink.error_help(
                d.span(),
                format!("document `{name}` not found in {}", self.tdir.display()),
                format!(
                    "create {} or remove it from [assistant] documents",
                    full.display()
                ),
            );
            return None;
        }
        if let Err(e) = std::fs::read_to_string(&full) {
            let help = if e.kind() == std::io::ErrorKind::InvalidData {
                "documents are Markdown, HTML or plain text in UTF-8; convert it (a PDF or Word file cannot be read)".to_string()
            } else {
                e.to_string()
            };
            self.sink.error_help(
                d.span(),
                format!("document `{name}` cannot be read as text"),
                help,
            );
            return None;
        }
        Some(rel_key(p))
    }

    /// A paid article's body listed in `documents` would be free to everyone: it stays paid.
    pub(super) fn paid_documents(
        &mut self,
        raw: Option<&S<RawAssistantSettings>>,
        articles: &[ArticleDef],
    ) {
        let Some(docs) = raw.and_then(|r| r.get_ref().documents.as_ref()) else {
            return;
        };
        for d in docs {
            let key = rel_key(Path::new(d.get_ref().trim()));
            if let Some(a) = articles
                .iter()
                .find(|a| body_key(a).as_deref() == Some(key.as_str()))
            {
                self.sink.warn(
                    d.span(),
                    format!(
                        "document `{key}` is the body of article `{}`: it is indexed once, as that paid article, for entitled readers only",
                        a.id
                    ),
                );
            }
        }
    }

    /// The continue and clear words are read before the rules while an assistant rule
    /// exists, so a rule keyword equal to one of them may never answer.
    pub(super) fn assistant_word_clashes(
        &mut self,
        settings: &AssistantSettings,
        triggers: &[Triggers],
        rule_names: &[&str],
    ) {
        for (i, t) in triggers.iter().enumerate() {
            for (kw, span) in &t.exact {
                let which = if *kw == settings.continue_word {
                    "continue word"
                } else if settings.clear_words.contains(kw) {
                    "clear word"
                } else {
                    continue;
                };
                let rule = rule_names.get(i).copied().unwrap_or("?");
                self.sink.push(
                    Severity::Warning,
                    span.clone(),
                    format!("exact keyword `{kw}` of rule `{rule}` is also the assistant's {which}"),
                    Some(format!(
                        "the assistant may take `{kw}` first; change the keyword or set [assistant] {} to another word",
                        if which == "continue word" { "continue_word" } else { "clear_words" }
                    )),
                );
            }
        }
    }
}

impl Compiler<'_> {
    /// An assistant rule fired only by events (a menu click, a subscribe) gets no question:
    /// the model would be asked about an empty text.
    pub(super) fn questionless_assistants(&mut self, rules: &[Rule], triggers: &[Triggers]) {
        for (rule, t) in rules.iter().zip(triggers) {
            let texts = !(t.exact.is_empty() && t.prefix.is_empty() && t.contains.is_empty());
            if matches!(rule.action, Action::Assistant(_))
                && !t.events.is_empty()
                && !(texts || t.other || t.any || t.fallback)
            {
                self.sink.push(
                    Severity::Warning,
                    t.name_span.clone(),
                    format!("assistant rule `{}` fires only on events, which carry no question", rule.name),
                    Some("answer the event with a reply inviting a question, and let a text rule (prefix, contains or fallback) ask the assistant".to_string()),
                );
            }
        }
    }
}

/// The documents the assistant answers from: every `[[article]]` body template (paid, for
/// readers entitled to the article), then the other text files under `templates/articles/`,
/// then `documents` (both free). A file is one document, first role wins; a file that cannot
/// be read as text is skipped (load-time checks report the ones the operator named).
pub(crate) fn gather_docs(tdir: &Path, articles: &[ArticleDef], documents: &[String]) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    for a in articles {
        let Some(key) = body_key(a) else { continue };
        if !taken.insert(key.clone()) {
            // Two articles sharing one body: the first owns its passages.
            continue;
        }
        let Ok(text) = std::fs::read_to_string(tdir.join(&key)) else {
            continue;
        };
        let format = match format_of(Path::new(&key)) {
            // An article body is a page fragment unless it says it is Markdown or text.
            DocFormat::Text if !has_ext(Path::new(&key), &["txt", "text"]) => DocFormat::Html,
            f => f,
        };
        docs.push(Doc {
            id: a.id.clone(),
            title: a.title.clone(),
            paid_article: Some(a.id.clone()),
            format,
            text: strip_template_syntax(&text),
        });
    }
    let texts = ["md", "markdown", "html", "htm", "txt", "text"];
    let mut free: Vec<String> = template_files(&tdir.join(ARTICLES_DIR))
        .iter()
        .filter(|f| has_ext(f, &texts))
        .filter_map(|f| f.strip_prefix(tdir).ok().map(rel_key))
        .collect();
    free.extend(documents.iter().cloned());
    for key in free {
        if !taken.insert(key.clone()) {
            continue;
        }
        let path = tdir.join(&key);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let format = format_of(&path);
        let text = strip_template_syntax(&text);
        let title = first_heading(&text, format).unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(|| key.clone(), |s| s.to_string_lossy().into_owned())
        });
        docs.push(Doc {
            id: key,
            title,
            paid_article: None,
            format,
            text,
        });
    }
    docs
}

/// A relative path as one string with `/` between components (how ids and names compare).
fn rel_key(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn body_key(a: &ArticleDef) -> Option<String> {
    match &a.body {
        ArticleBody::Template(t) => Some(rel_key(Path::new(t.trim()))),
        ArticleBody::Url(_) => None,
    }
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// `.md` Markdown, `.html`/`.htm` HTML, anything else plain text.
fn format_of(p: &Path) -> DocFormat {
    if has_ext(p, &["md", "markdown"]) {
        DocFormat::Markdown
    } else if has_ext(p, &["html", "htm"]) {
        DocFormat::Html
    } else {
        DocFormat::Text
    }
}

/// A template's text without its minijinja tags (`{{ … }}`, `{% … %}`, `{# … #}`): the
/// literal words are what a reader sees, the tags are not. An unclosed tag drops the rest.
fn strip_template_syntax(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find('{') {
        let close = match rest.as_bytes().get(i + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
                continue;
            }
        };
        out.push_str(&rest[..i]);
        match rest[i + 2..].find(close) {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// The document's first heading: `# …` in Markdown, `<title>` or `<h1>`–`<h6>` in HTML.
fn first_heading(text: &str, format: DocFormat) -> Option<String> {
    let found = match format {
        DocFormat::Markdown => text.lines().find_map(|l| {
            let l = l.trim_start();
            let t = l.trim_start_matches('#');
            (t.len() < l.len() && l.len() - t.len() <= 6 && t.starts_with([' ', '\t']))
                .then(|| t.trim().trim_end_matches('#').trim().to_string())
        }),
        DocFormat::Html => html_heading(text),
        DocFormat::Text => None,
    };
    found.filter(|t| !t.is_empty())
}

fn html_heading(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let tags = ["title", "h1", "h2", "h3", "h4", "h5", "h6"];
    let (start, tag) = tags
        .iter()
        .filter_map(|t| {
            let open = format!("<{t}");
            // `<h1>` or `<h1 class=…>`, not `<header>`.
            lower.match_indices(&open).find_map(|(i, _)| {
                let next = lower.as_bytes().get(i + open.len()).copied();
                matches!(next, Some(b'>' | b' ' | b'\t' | b'\n')).then_some((i, *t))
            })
        })
        .min_by_key(|(i, _)| *i)?;
    let body_start = start + lower.get(start..)?.find('>')? + 1;
    let end = body_start + lower.get(body_start..)?.find(&format!("</{tag}"))?;
    let inner = text.get(body_start..end)?;
    let mut plain = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    Some(plain.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::{first_heading, strip_template_syntax};
    use crate::assistant::retrieval::DocFormat;
    use crate::rules::compile::testing::{assert_one_has, errors, load, rules, warnings};
    use crate::rules::model::Action;
    use crate::rules::{AssistantSettings, Audience};

    fn ask(action: &str) -> String {
        format!("[[rule]]\nname = \"ask\"\nwhen = {{ prefix = [\"问\"] }}\n{action}\n")
    }

    const GUIDE: &str = "\n[[article]]\nid = \"rust-101\"\ntitle = \"Rust 入门\"\nprice = \"9.9\"\nbody_url = \"https://x.example/r\"\n";

    #[test]
    fn an_assistant_rule_takes_the_defaults_the_issue_names() {
        let rs = rules(&ask("assistant = { model = \"gpt-4o-mini\" }"));
        let Action::Assistant(a) = &rs.rules[0].action else {
            panic!("{:?}", rs.rules[0].action)
        };
        assert_eq!(a.model, "gpt-4o-mini");
        assert_eq!(a.max_tokens, 512);
        assert!((a.temperature - 0.3).abs() < f32::EPSILON);
        assert_eq!((a.turns, a.passages), (4, 3));
        assert_eq!(a.budget.as_millis(), 4500);
        assert_eq!(a.audience, Audience::All);
        assert_eq!((a.system.as_deref(), a.api_base.as_deref()), (None, None));
        assert!(rs.has_assistant(), "an assistant rule indexes the articles");
        assert_eq!(rs.assistant(), &AssistantSettings::default());
        assert!(!rules(&ask("reply = { text = \"答\" }")).has_assistant());
    }

    #[test]
    fn every_value_is_read_and_the_endpoint_loses_its_trailing_slash() {
        let rs = rules(&format!(
            "{}{GUIDE}",
            ask("assistant = { model = \" m \", max_tokens = 8192, temperature = 2, turns = 0, passages = 10, timeout_ms = 500, for_article = \"rust-101\", teaser = \"会员专享\", fallback = \"稍后再试\", api_base = \"https://ai.example.com/v1/\", api_key_env = \"COURSE_AI_KEY\" }")
        ));
        let Action::Assistant(a) = &rs.rules[0].action else {
            panic!("{:?}", rs.rules[0].action)
        };
        assert_eq!(a.model, "m");
        assert_eq!((a.max_tokens, a.turns, a.passages), (8192, 0, 10));
        assert!((a.temperature - 2.0).abs() < f32::EPSILON);
        assert_eq!(a.budget.as_millis(), 500);
        assert_eq!(a.audience, Audience::Entitled("rust-101".into()));
        assert_eq!(a.api_base.as_deref(), Some("https://ai.example.com/v1"));
        assert_eq!(a.api_key_env.as_deref(), Some("COURSE_AI_KEY"));
        let rs = rules(&ask(
            "assistant = { model = \"m\", for_tag = \" 会员 \", teaser = \"t\" }",
        ));
        let Action::Assistant(a) = &rs.rules[0].action else {
            panic!("{:?}", rs.rules[0].action)
        };
        assert_eq!(a.audience, Audience::Tag("会员".into()));
    }

    #[test]
    fn each_limit_is_refused_at_its_value_with_a_hint() {
        let cases = [
            ("max_tokens = 0", "max_tokens = 0 is outside 1..=8192"),
            ("max_tokens = 9000", "max_tokens = 9000 is outside 1..=8192"),
            ("temperature = 2.5", "temperature = 2.5 is outside 0 to 2"),
            ("temperature = -0.1", "temperature = -0.1 is outside 0 to 2"),
            ("turns = 21", "turns = 21 is outside 0..=20"),
            ("passages = 0", "passages = 0 is outside 1..=10"),
            ("passages = 11", "passages = 11 is outside 1..=10"),
            (
                "timeout_ms = 4600",
                "timeout_ms = 4600 is outside 500..=4500",
            ),
            ("timeout_ms = 100", "timeout_ms = 100 is outside 500..=4500"),
            (
                "api_base = \"ai.example.com/v1\"",
                "api_base `ai.example.com/v1` is not an http(s) URL",
            ),
            (
                "api_base = \"https://\"",
                "api_base `https://` is not an http(s) URL",
            ),
            ("model = \"\"", "assistant `model` is empty"),
        ];
        for (kv, msg) in cases {
            let model = if kv.starts_with("model") {
                ""
            } else {
                "model = \"m\", "
            };
            let e = errors(&ask(&format!("assistant = {{ {model}{kv} }}")));
            let col = format!(
                "4:{}",
                "assistant = { ".len() + model.len() + kv.find('=').unwrap_or(0) + 3
            );
            assert_one_has(&e, &[&col, msg, "| "]);
            assert!(
                e.iter().all(|l| !l.ends_with("| ")),
                "every error has a hint: {e:#?}"
            );
        }
    }

    #[test]
    fn an_api_key_written_in_the_file_is_refused_and_never_echoed() {
        let e = errors(&ask(
            "assistant = { model = \"m\", api_key = \"sk-live-0123456789\" }",
        ));
        assert_one_has(
            &e,
            &["4:", "writes an API key into keywords.toml", "api_key_env"],
        );
        let e2 = errors(&ask(
            "assistant = { model = \"m\", api_key_env = \"sk-live-0123456789\" }",
        ));
        assert_one_has(
            &e2,
            &[
                "api_key_env is not an environment variable name",
                "COURSE_AI_KEY",
            ],
        );
        for line in e.iter().chain(&e2) {
            assert!(!line.contains("0123456789"), "the key leaked: {line}");
        }
    }

    #[test]
    fn who_may_ask_is_a_tag_or_an_article_never_both() {
        let e = errors(&format!(
            "{}{GUIDE}",
            ask("assistant = { model = \"m\", for_tag = \"会员\", for_article = \"rust-101\" }")
        ));
        assert_one_has(&e, &["has both `for_tag` and `for_article`", "keep one"]);
        let e = errors(&format!(
            "{}{GUIDE}",
            ask("assistant = { model = \"m\", for_article = \"rust-11\" }")
        ));
        assert_one_has(
            &e,
            &["unknown article id `rust-11`", "did you mean `rust-101`?"],
        );
        let e = errors(&ask("assistant = { model = \"m\", for_tag = \" \" }"));
        assert_one_has(&e, &["for_tag is empty"]);
        let w = warnings(&ask("assistant = { model = \"m\", teaser = \"会员专享\" }"));
        assert_one_has(&w, &["the teaser of rule `ask` is never sent"]);
    }

    #[test]
    fn the_assistant_is_one_action_not_an_addition() {
        let e = errors(&ask(
            "assistant = { model = \"m\" }\nreply = { text = \"a\" }",
        ));
        assert_one_has(&e, &["rule `ask` has more than one action", "`assistant`"]);
        let e = errors(&ask("assistant = { model = \"m\", modle = \"x\" }"));
        assert_one_has(&e, &["unknown field `modle`", "did you mean `model`?"]);
    }

    #[test]
    fn an_assistant_rule_on_a_menu_click_is_warned_about_its_empty_question() {
        let src = "[[rule]]\nname = \"menu-ask\"\nwhen = { click = \"ASK\" }\nassistant = { model = \"m\" }\n";
        assert_one_has(
            &warnings(src),
            &["assistant rule `menu-ask` fires only on events, which carry no question"],
        );
        assert_eq!(
            warnings(&ask("assistant = { model = \"m\" }")),
            Vec::<String>::new()
        );
        let voice = "[[rule]]\nname = \"voice\"\nwhen = { msg_type = \"voice\" }\nassistant = { model = \"m\" }\n";
        assert_eq!(warnings(voice), Vec::<String>::new());
    }

    #[test]
    fn the_system_prompt_is_a_template_file_that_must_exist() {
        let e = errors(&ask(
            "assistant = { model = \"m\", system = \"assistant.txt\" }",
        ));
        assert_one_has(
            &e,
            &[
                "4:",
                "template file `assistant.txt` not found in /nonexistent/templates",
            ],
        );
    }

    #[test]
    fn assistant_settings_are_read_normalised_and_checked() {
        let rs = rules(
            "[assistant]\ncontinue_word = \" ＧＯ \"\nclear_words = [\"忘掉\", \"RESET\"]\nmemory_minutes = 10\ndaily_questions = 0\ndaily_tokens = 200000\nper_minute = 5\nblocklist = [\" 秘密 \"]\nquota_reply = \"明天见\"\n",
        );
        let a = rs.assistant();
        assert_eq!(a.continue_word, "go");
        assert_eq!(a.clear_words, ["忘掉", "reset"]);
        assert_eq!(
            (
                a.memory_minutes,
                a.daily_questions,
                a.daily_tokens,
                a.per_minute
            ),
            (10, 0, 200_000, 5)
        );
        assert_eq!(a.blocklist, ["秘密"]);
        assert_eq!(a.quota_reply, "明天见");
        assert_eq!(a.rate_reply, AssistantSettings::default().rate_reply);

        let e = errors(
            "[assistant]\ncontinue_word = \" \"\nclear_words = [\"\"]\nmemory_minutes = 0\ndaily_questions = -1\nblocklist = [\"\"]\nrate_reply = \"\"\n",
        );
        assert_one_has(&e, &["2:17 continue_word is empty", "继续"]);
        assert_one_has(&e, &["3:16 empty clear word"]);
        assert_one_has(
            &e,
            &["4:18 memory_minutes = 0 must be at least 1", "turns = 0"],
        );
        assert_one_has(
            &e,
            &["5:19 daily_questions = -1 is not a limit", "0 for no limit"],
        );
        assert_one_has(&e, &["6:14 empty blocklist entry"]);
        assert_one_has(&e, &["7:14 rate_reply is empty"]);
        let e = errors("[assistant]\nclear_words = [\"继续\"]\n");
        assert_one_has(&e, &["clear word `继续` is also the continue word"]);
        let e = errors("[assistant]\ncontinue_wrd = \"继续\"\n");
        assert_one_has(
            &e,
            &[
                "unknown field `continue_wrd`",
                "did you mean `continue_word`?",
            ],
        );
    }

    #[test]
    fn a_document_must_be_a_file_under_the_templates_dir() {
        let e = errors("[assistant]\ndocuments = [\"faq.md\", \"../secret.md\"]\n");
        assert_one_has(
            &e,
            &[
                "2:14 document `faq.md` not found in /nonexistent/templates",
                "create /nonexistent/templates/faq.md",
            ],
        );
        assert_one_has(
            &e,
            &[
                "bad document name `../secret.md`",
                "relative to the templates dir",
            ],
        );
    }

    #[test]
    fn the_account_says_whether_it_has_the_customer_service_api() {
        assert_eq!(rules("").customer_service(), None);
        let rs = rules("[account]\ncustomer_service = false\n");
        assert_eq!(rs.customer_service(), Some(false));
        let e = errors("[account]\ncustomer_service = \"no\"\n");
        assert_one_has(&e, &["2:20"]);
    }

    #[test]
    fn a_keyword_equal_to_the_continue_word_is_a_warning_only_with_an_assistant_rule() {
        let more = "[[rule]]\nname = \"more\"\nwhen = { exact = [\"继续\", \"清除记忆\"] }\nreply = { text = \"下一页\" }\n\n";
        let w = warnings(&format!("{more}{}", ask("assistant = { model = \"m\" }")));
        assert_one_has(
            &w,
            &["exact keyword `继续` of rule `more` is also the assistant's continue word"],
        );
        assert_one_has(
            &w,
            &["exact keyword `清除记忆` of rule `more` is also the assistant's clear word"],
        );
        assert_eq!(warnings(more), Vec::<String>::new());
        let diags = load(&format!("{more}{}", ask("assistant = { model = \"m\" }")))
            .map(|l| l.warnings)
            .unwrap_or_default();
        assert!(
            diags.iter().all(|d| d.help.is_some() && d.line == 3),
            "{diags:#?}"
        );
    }

    /// A templates dir with two article bodies (one also listed as a document), a free
    /// article page, a cover image, and an extra FAQ outside `articles/`.
    fn course_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: [(&str, &[u8]); 7] = [
            (
                "articles/rust-101.html",
                "<h1>标题</h1><p>所有权 {{ openid }}</p>".as_bytes(),
            ),
            ("articles/async.md", b"# Async\nfutures"),
            ("articles/free-intro.md", "# 免费导读\n欢迎".as_bytes()),
            ("articles/notes.txt", b"plain notes"),
            ("articles/cover.png", b"\x89PNG\r\n"),
            (
                "docs/faq.html",
                "<title>常见问题</title><p>退款</p>".as_bytes(),
            ),
            ("welcome.txt", b"not a document"),
        ];
        for (name, bytes) in files {
            let p = dir.path().join("templates").join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, bytes).expect("write");
        }
        dir
    }

    #[test]
    fn articles_are_paid_documents_and_the_rest_of_the_folder_and_the_listed_files_are_free() {
        let dir = course_dir();
        let src = format!(
            "{}\n[[article]]\nid = \"rust-101\"\ntitle = \"Rust 入门\"\nbody_template = \"articles/rust-101.html\"\n\n[[article]]\nid = \"async\"\ntitle = \"异步\"\nbody_template = \"articles//async.md\"\n\n[[article]]\nid = \"linked\"\ntitle = \"外链\"\nbody_url = \"https://x.example/a\"\n",
            ask("assistant = { model = \"m\" }")
        );
        let rs = rules_in(dir.path(), &src);
        let docs = super::gather_docs(
            &dir.path().join("templates"),
            rs.articles(),
            &[
                "docs/faq.html".to_string(),
                "articles/rust-101.html".to_string(),
            ],
        );
        let seen: Vec<(&str, &str, Option<&str>, DocFormat)> = docs
            .iter()
            .map(|d| {
                (
                    d.id.as_str(),
                    d.title.as_str(),
                    d.paid_article.as_deref(),
                    d.format,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("rust-101", "Rust 入门", Some("rust-101"), DocFormat::Html),
                ("async", "异步", Some("async"), DocFormat::Markdown),
                (
                    "articles/free-intro.md",
                    "免费导读",
                    None,
                    DocFormat::Markdown
                ),
                ("articles/notes.txt", "notes", None, DocFormat::Text),
                ("docs/faq.html", "常见问题", None, DocFormat::Html),
            ]
        );
        assert_eq!(
            docs[0].text, "<h1>标题</h1><p>所有权 </p>",
            "template tags are not words"
        );
        assert!(rs.has_assistant());
    }

    #[test]
    fn a_document_that_is_not_text_is_refused_at_load() {
        let dir = course_dir();
        let src = "[assistant]\ndocuments = [\"articles/cover.png\"]\n";
        let e = super::super::compile(src, &dir.path().join("keywords.toml")).expect_err("binary");
        let d = &e.0[0];
        assert_eq!((d.line, d.column), (2, 14));
        assert_eq!(
            d.message,
            "document `articles/cover.png` cannot be read as text"
        );
        assert!(d.help.as_deref().unwrap_or("").contains("UTF-8"), "{d}");
    }

    #[test]
    fn an_article_body_listed_as_a_document_stays_paid_with_a_warning() {
        let dir = course_dir();
        let src = format!(
            "[assistant]\ndocuments = [\"articles/rust-101.html\"]\n\n{}\n[[article]]\nid = \"rust-101\"\ntitle = \"Rust 入门\"\nbody_template = \"articles/rust-101.html\"\n",
            ask("assistant = { model = \"m\" }")
        );
        let loaded = super::super::compile(&src, &dir.path().join("keywords.toml")).expect("loads");
        let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_one_has(&w, &["keywords.toml:2:14: warning: document `articles/rust-101.html` is the body of article `rust-101`"]);
        let docs = super::gather_docs(
            &dir.path().join("templates"),
            loaded.rules.articles(),
            &loaded.rules.assistant().documents,
        );
        let rust: Vec<_> = docs.iter().filter(|d| d.text.contains("所有权")).collect();
        assert_eq!(rust.len(), 1);
        assert_eq!(rust[0].paid_article.as_deref(), Some("rust-101"));
    }

    fn rules_in(dir: &std::path::Path, src: &str) -> crate::rules::RuleSet {
        match super::super::compile(src, &dir.join("keywords.toml")) {
            Ok(l) => l.rules,
            Err(e) => panic!("rules did not load: {e}"),
        }
    }

    #[test]
    fn template_tags_are_stripped_and_the_words_kept() {
        assert_eq!(
            strip_template_syntax("<p>你好 {{ openid }}，{% if x %}会员{% endif %}{# note #}!</p>"),
            "<p>你好 ，会员!</p>"
        );
        assert_eq!(strip_template_syntax("a { b } {{ c"), "a { b } ");
    }

    #[test]
    fn a_title_is_the_first_heading() {
        assert_eq!(
            first_heading("intro\n## 安装 Rust ##\n# later", DocFormat::Markdown).as_deref(),
            Some("安装 Rust")
        );
        assert_eq!(first_heading("#hashtag only", DocFormat::Markdown), None);
        assert_eq!(
            first_heading(
                "<header>x</header><H2 class=\"t\">所有权 <em>入门</em></H2>",
                DocFormat::Html
            )
            .as_deref(),
            Some("所有权 入门")
        );
        assert_eq!(first_heading("# not markdown", DocFormat::Text), None);
    }
}
