//! Stage two of loading: the raw mirror → a [`RuleSet`], collecting every error and warning.
//!
//! Owns the compiled rule representation ([`Rule`], [`Action`], [`ReplySpec`]), template loading
//! for the rules (files read here, once, at load), the version hash, and the "this rule can never
//! fire" analysis. May depend on: [`super::raw`], [`super::diag`], [`super::route`],
//! [`super::menu`], [`super::window`], [`crate::render`], regex, toml, sha2.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::diag::{allowed_help, did_you_mean, Diagnostic, Severity, Sink};
use super::raw::{RawFile, RawHours, RawReply, RawWhen, S};
use super::route::{EventKind, IndexBuilder, MsgKind, PatKind};
use super::window::{normalize, Window, WindowField};
use super::{menu, ArticleBody, ArticleDef, ConfigErrors, HandoffSettings, Loaded, RuleSet};
use crate::render::{is_template, template_files, RenderError, Templates};

/// Literal text is sent as written; anything with `{{`/`{%` is a compiled template.
#[derive(Debug, Clone)]
pub(crate) enum TextSpec {
    Literal(String),
    Template(String),
}

#[derive(Debug)]
pub(crate) struct NewsSpec {
    pub title: TextSpec,
    pub description: TextSpec,
    pub pic_url: String,
    pub url: String,
}

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

#[derive(Debug)]
pub(crate) struct HandoffSpec {
    pub kf_account: Option<String>,
    pub notice: Option<TextSpec>,
    pub window: Option<Window>,
    pub offline: Option<TextSpec>,
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

#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    pub action: Action,
    pub tags: Vec<String>,
    pub window: Option<Window>,
    pub first_time: Option<bool>,
    pub scan_result_prefix: Option<String>,
}

/// What the never-fires analysis needs to know about one rule's triggers.
#[derive(Default)]
struct Triggers {
    name_span: Range<usize>,
    unconditional: bool,
    exact: Vec<(String, Range<usize>)>,
    prefix: Vec<(String, Range<usize>)>,
    contains: Vec<(String, Range<usize>)>,
    /// Regex or msg_type triggers: not analysed, so the rule may still fire through them.
    other: bool,
    any: bool,
    events: Vec<(EventKind, Option<String>)>,
    fallback: bool,
}

/// One way a `when` names an event: the kinds it covers, the keys (none: any key), where.
type EventSpec = (Vec<EventKind>, Option<Vec<String>>, Range<usize>);

/// Where a template lives, for pointing diagnostics at it.
#[derive(Clone)]
enum TplLoc {
    File(String),
    Inline(Range<usize>),
}

struct Compiler<'a> {
    sink: Sink<'a>,
    templates: Templates,
    tdir: PathBuf,
    /// Template files already read: name → compiled fine.
    files: HashMap<String, bool>,
    builder: IndexBuilder,
}

/// Two-stage load of `src` (as read from `path`).
pub(crate) fn compile(src: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
    let mut sink = Sink::new(path.display().to_string(), src);
    let raw: RawFile = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            shape_errors(src, &mut sink, &e);
            return Err(ConfigErrors(sink.diags));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let mut tz = chrono_tz::Asia::Shanghai;
    let mut tdir = base.join("templates");
    if let Some(acc) = &raw.account {
        let acc = acc.get_ref();
        if let Some(t) = &acc.timezone {
            match t.get_ref().parse::<chrono_tz::Tz>() {
                Ok(z) => tz = z,
                Err(_) => sink.error_help(
                    t.span(),
                    format!("unknown time zone `{}`", t.get_ref()),
                    "use an IANA name such as \"Asia/Shanghai\" or \"Asia/Hong_Kong\"",
                ),
            }
        }
        if let Some(d) = &acc.templates_dir {
            tdir = base.join(d.get_ref());
        }
    }

    let mut c = Compiler {
        sink,
        templates: Templates::new(&tdir),
        tdir,
        files: HashMap::new(),
        builder: IndexBuilder::default(),
    };

    let (articles, article_ix) = c.articles(&raw);
    let handoff = c.handoff_settings(&raw);

    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut triggers = Vec::with_capacity(raw.rule.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut fallback_at: Option<(String, usize)> = None;
    for (i, rr) in raw.rule.iter().enumerate() {
        let idx = u32::try_from(i).unwrap_or(u32::MAX);
        let (rule, trig) = c.rule(idx, rr, &mut names, &mut fallback_at, &article_ix, &handoff);
        rules.push(rule);
        triggers.push(trig);
    }

    let menu = raw.menu.as_ref().map(|m| menu::compile(m, &mut c.sink));

    let builder = std::mem::take(&mut c.builder);
    let index = match builder.build() {
        Ok(ix) => Some(ix),
        Err(e) => {
            c.sink.error_help(
                0..0,
                format!("cannot build the keyword index: {e}"),
                "too many or too large regexes; simplify them",
            );
            None
        }
    };

    if let Some(ix) = &index {
        shadow_warnings(&mut c.sink, &triggers, &rules, ix);
        if let Some((_, keys)) = &menu {
            for (key, span) in keys {
                // Key-less rules for kinds a menu key can trigger also answer the button.
                let keyed = [
                    EventKind::Click,
                    EventKind::ScancodePush,
                    EventKind::ScancodeWaitmsg,
                    EventKind::PicSysphoto,
                    EventKind::PicPhotoOrAlbum,
                    EventKind::PicWeixin,
                    EventKind::LocationSelect,
                ];
                let has_rule = keyed
                    .iter()
                    .filter_map(|k| ix.events.get(k))
                    .any(|b| b.by_key.contains_key(key.as_str()) || !b.any.is_empty());
                if !has_rule {
                    c.sink.warn(
                        span.clone(),
                        format!("menu key `{key}` has no rule: pressing it answers nothing"),
                    );
                }
            }
        }
    }

    let version = version(src, &c.tdir);
    let mut diags = std::mem::take(&mut c.sink.diags);
    let main_file = path.display().to_string();
    diags.sort_by(|a, b| {
        (a.file != main_file, &a.file, a.line, a.column).cmp(&(
            b.file != main_file,
            &b.file,
            b.line,
            b.column,
        ))
    });
    let (Some(index), false) = (index, diags.iter().any(|d| d.severity == Severity::Error)) else {
        return Err(ConfigErrors(diags));
    };
    Ok(Loaded {
        rules: RuleSet {
            version,
            tz,
            source_path: path.to_path_buf(),
            rules,
            index,
            articles,
            article_ix,
            menu: menu.map(|(b, _)| b),
            handoff,
            templates: c.templates,
        },
        warnings: diags,
    })
}

/// serde stops at the first error; to report every shape error at once, each `[[rule]]` and
/// `[[article]]` table is re-parsed alone, with the rest of the file blanked out byte for byte
/// so positions stay those of the original file. The original error is always reported.
fn shape_errors(src: &str, sink: &mut Sink<'_>, first: &toml::de::Error) {
    use serde::de::IgnoredAny;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        rule: Vec<S<toml::Value>>,
        #[serde(default)]
        article: Vec<S<toml::Value>>,
    }
    #[derive(Deserialize)]
    struct OnlyRules {
        #[allow(dead_code)]
        rule: Vec<super::raw::RawRule>,
    }
    #[derive(Deserialize)]
    struct OnlyArticles {
        #[allow(dead_code)]
        article: Vec<super::raw::RawArticle>,
    }
    /// Everything but rules and articles, still strict.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rest {
        account: Option<super::raw::RawAccount>,
        handoff: Option<super::raw::RawHandoffSettings>,
        menu: Option<super::raw::RawMenu>,
        rule: Option<IgnoredAny>,
        article: Option<IgnoredAny>,
    }

    let mut errors: Vec<toml::de::Error> = Vec::new();
    if let Ok(loose) = toml::from_str::<Loose>(src) {
        for r in &loose.rule {
            if let Err(e) = toml::from_str::<OnlyRules>(&mask_bytes(src, r.span())) {
                errors.push(e);
            }
        }
        for a in &loose.article {
            if let Err(e) = toml::from_str::<OnlyArticles>(&mask_bytes(src, a.span())) {
                errors.push(e);
            }
        }
        if let Err(e) = toml::from_str::<Rest>(src) {
            errors.push(e);
        }
    }
    let same = |a: &toml::de::Error| a.span() == first.span() && a.message() == first.message();
    if !errors.iter().any(same) {
        errors.push(first.clone());
    }
    errors.sort_by_key(|e| e.span().map_or(0, |s| s.start));
    errors.dedup_by(|a, b| a.span() == b.span() && a.message() == b.message());
    for e in &errors {
        toml_error(sink, e);
    }
}

/// `src` with every byte outside `keep` turned into a space (newlines kept), so a parse of the
/// result reports the same byte offsets, lines and columns as the original.
fn mask_bytes(src: &str, keep: Range<usize>) -> String {
    let bytes: Vec<u8> = src
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            if keep.contains(&i) || b == b'\n' {
                b
            } else {
                b' '
            }
        })
        .collect();
    // Blanking whole multi-byte characters outside `keep` keeps the text valid UTF-8; a span
    // always starts and ends on character boundaries.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Turns serde/toml errors into a diagnostic, with a did-you-mean for unknown names.
fn toml_error(sink: &mut Sink<'_>, e: &toml::de::Error) {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message().trim();
    for what in ["unknown field", "unknown variant"] {
        if let Some(rest) = msg.strip_prefix(what) {
            let quoted: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            if let Some((got, allowed)) = quoted.split_first() {
                let help = if allowed.is_empty() {
                    "this table takes no fields".to_string()
                } else {
                    allowed_help(got, allowed)
                };
                let kind = if what == "unknown variant" {
                    "unknown reply kind"
                } else {
                    what
                };
                sink.error_help(span, format!("{kind} `{got}`"), help);
                return;
            }
        }
    }
    if msg.contains("untagged enum OneOrMany") {
        sink.error(span, "expected a string or a list of strings");
        return;
    }
    if msg.contains("wrong number of keys") || msg.contains("wanted exactly 1 element") {
        sink.error_help(
            span,
            "a reply names exactly one kind",
            "write e.g. { text = \"…\" } or { template = \"x.txt\" }; use `replies = [...]` for a random choice",
        );
        return;
    }
    sink.error(span, msg.replace('\n', " "));
}

impl Compiler<'_> {
    fn articles(&mut self, raw: &RawFile) -> (Vec<ArticleDef>, HashMap<String, usize>) {
        let mut out = Vec::new();
        let mut ix = HashMap::new();
        for a in &raw.article {
            let r = a.get_ref();
            let id = r.id.get_ref().trim().to_string();
            if id.is_empty() {
                self.sink.error(r.id.span(), "article id is empty");
                continue;
            }
            if ix.contains_key(&id) {
                self.sink
                    .error(r.id.span(), format!("duplicate article id `{id}`"));
                continue;
            }
            let body = match (&r.body_template, &r.body_url) {
                (Some(t), None) => {
                    // Body templates get their variables from the article page, so they are
                    // compiled here but not sample-rendered.
                    self.file_template(t);
                    ArticleBody::Template(t.get_ref().clone())
                }
                (None, Some(u)) => {
                    self.http_url(u);
                    ArticleBody::Url(u.get_ref().clone())
                }
                _ => {
                    self.sink.error_help(
                        a.span(),
                        format!("article `{id}` needs exactly one of `body_template` and `body_url`"),
                        "body_template = \"articles/x.html\" (under the templates dir) or body_url = \"https://…\"",
                    );
                    continue;
                }
            };
            if let Some(u) = &r.purchase_url {
                self.http_url(u);
            }
            ix.insert(id.clone(), out.len());
            out.push(ArticleDef {
                id,
                title: r.title.clone(),
                teaser: r.teaser.clone(),
                cover: r.cover.clone(),
                price: r.price.clone(),
                body,
                purchase_url: r.purchase_url.as_ref().map(|u| u.get_ref().clone()),
            });
        }
        (out, ix)
    }

    fn http_url(&mut self, u: &S<String>) {
        let s = u.get_ref();
        if !(s.starts_with("https://") || s.starts_with("http://")) {
            self.sink.error_help(
                u.span(),
                format!("`{s}` is not an http(s) URL"),
                "links must start with https:// or http://",
            );
        }
    }

    fn handoff_settings(&mut self, raw: &RawFile) -> HandoffSettings {
        let Some(h) = &raw.handoff else {
            return HandoffSettings::default();
        };
        let h = h.get_ref();
        let mut exit = Vec::new();
        for k in &h.exit_keywords {
            let n = normalize(k.get_ref());
            if n.is_empty() {
                self.sink.error(k.span(), "empty exit keyword");
            } else {
                exit.push(n);
            }
        }
        let mut minutes = HandoffSettings::default().idle_timeout_minutes;
        if let Some(m) = &h.idle_timeout_minutes {
            if *m.get_ref() == 0 {
                self.sink
                    .error(m.span(), "idle_timeout_minutes must be at least 1");
            } else {
                minutes = *m.get_ref();
            }
        }
        HandoffSettings {
            exit_keywords: exit,
            idle_timeout_minutes: minutes,
            exit_reply: h
                .exit_reply
                .clone()
                .unwrap_or_else(|| HandoffSettings::default().exit_reply),
            configured: true,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &mut self,
        idx: u32,
        rr: &S<super::raw::RawRule>,
        names: &mut HashMap<String, usize>,
        fallback_at: &mut Option<(String, usize)>,
        article_ix: &HashMap<String, usize>,
        handoff: &HandoffSettings,
    ) -> (Rule, Triggers) {
        let r = rr.get_ref();
        let name = r.name.get_ref().trim().to_string();
        let name_span = r.name.span();
        if name.is_empty() {
            self.sink.error(name_span.clone(), "rule name is empty");
        } else if let Some(&first) = names.get(&name) {
            let (line, _) = self.sink.lines.line_col(first);
            self.sink.error_help(
                name_span.clone(),
                format!("duplicate rule name `{name}`"),
                format!("rule names must be unique; the first `{name}` is on line {line}"),
            );
        } else {
            names.insert(name.clone(), name_span.start);
        }
        let mut rule = Rule {
            name: name.clone(),
            action: Action::TagOnly,
            tags: Vec::new(),
            window: None,
            first_time: None,
            scan_result_prefix: None,
        };
        let mut trig = Triggers {
            name_span: name_span.clone(),
            ..Triggers::default()
        };
        let mut captures = 0usize;
        let mut groups: Vec<String> = Vec::new();

        let is_fallback = r.fallback.as_ref().is_some_and(|f| *f.get_ref());
        if is_fallback {
            trig.fallback = true;
            if let Some(w) = &r.when {
                self.sink.error_help(
                    w.span(),
                    "a fallback rule takes no `when`",
                    "the fallback answers user messages no other rule matched; remove `when`",
                );
            }
            if let Some((first, line)) = fallback_at {
                let (l, _) = self.sink.lines.line_col(*line);
                self.sink.error_help(
                    r.fallback.as_ref().map_or(name_span.clone(), |f| f.span()),
                    format!("two fallback rules: `{first}` (line {l}) and `{name}`"),
                    "keep at most one rule with fallback = true",
                );
            } else {
                *fallback_at = Some((name.clone(), name_span.start));
                self.builder.fallback = Some(idx);
            }
        } else if let Some(w) = &r.when {
            self.when(idx, w, &mut rule, &mut trig, &mut captures, &mut groups);
        } else {
            self.sink.error_help(
                name_span.clone(),
                format!("rule `{name}` has no `when`"),
                "add when = { exact = [\"…\"] } (or contains/prefix/regex/msg_type/event/click…), or fallback = true",
            );
        }

        if let Some(t) = &r.tag {
            for tag in t.get_ref().to_vec() {
                let tag = tag.trim().to_string();
                if tag.is_empty() {
                    self.sink.error(t.span(), "empty tag");
                } else {
                    rule.tags.push(tag);
                }
            }
        }

        let actions = [
            r.reply.is_some(),
            r.replies.is_some(),
            r.article.is_some(),
            r.handoff.is_some(),
            r.webhook.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if actions > 1 {
            self.sink.error_help(
                name_span.clone(),
                format!("rule `{name}` has more than one action"),
                "choose one of `reply`, `replies`, `article`, `handoff`, `webhook`",
            );
        }
        let cx = (captures, groups.as_slice());
        if let Some(rep) = &r.reply {
            if let Some(spec) = self.reply(&name, "reply", rep, cx) {
                rule.action = Action::Reply(spec);
            }
        } else if let Some(reps) = &r.replies {
            if reps.get_ref().is_empty() {
                self.sink
                    .error(reps.span(), "`replies` is empty; list at least one reply");
            }
            let mut specs = Vec::new();
            for (i, rep) in reps.get_ref().iter().enumerate() {
                if let Some(spec) = self.reply(&name, &format!("replies[{i}]"), rep, cx) {
                    specs.push(spec);
                }
            }
            rule.action = Action::Random(specs);
        } else if let Some(a) = &r.article {
            let id = a.get_ref();
            if !article_ix.contains_key(id.as_str()) {
                let ids: Vec<&str> = article_ix.keys().map(String::as_str).collect();
                let help = match did_you_mean(id, &ids) {
                    Some(s) => {
                        format!("did you mean `{s}`? Define it with [[article]] id = \"{id}\"")
                    }
                    None => format!("define it with [[article]] id = \"{id}\""),
                };
                self.sink
                    .error_help(a.span(), format!("unknown article id `{id}`"), help);
            }
            rule.action = Action::Article(id.clone());
        } else if let Some(h) = &r.handoff {
            if !handoff.configured {
                self.sink.error_help(
                    h.span(),
                    format!("rule `{name}` hands off to customer service but there is no [handoff] section"),
                    "add [handoff] with exit_keywords = [\"结束\"] and idle_timeout_minutes = 30",
                );
            }
            let hr = h.get_ref();
            let notice = hr
                .notice
                .as_ref()
                .and_then(|t| self.text(&name, "handoff.notice", t, cx));
            let offline = hr
                .offline
                .as_ref()
                .and_then(|t| self.text(&name, "handoff.offline", t, cx));
            let window = hr.hours.as_ref().and_then(|w| self.window(w));
            if window.is_some() && offline.is_none() {
                self.sink.warn(
                    h.span(),
                    format!("handoff in rule `{name}` has hours but no `offline` text: out of hours the user gets no answer"),
                );
            }
            rule.action = Action::Handoff(super::compile::HandoffSpec {
                kf_account: hr.kf_account.clone(),
                notice,
                window,
                offline,
            });
        } else if let Some(w) = &r.webhook {
            let wr = w.get_ref();
            let url = wr.url.get_ref().trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                self.sink.error_help(
                    wr.url.span(),
                    format!("webhook url `{url}` is not an http(s) URL"),
                    "write the full address, e.g. url = \"https://crm.example.com/wechat\"",
                );
            }
            let mut ms = WEBHOOK_DEFAULT_MS;
            if let Some(t) = &wr.timeout_ms {
                if !(100..=WEBHOOK_MAX_MS).contains(t.get_ref()) {
                    self.sink.error_help(
                        t.span(),
                        format!("timeout_ms = {} is outside 100..={WEBHOOK_MAX_MS}", t.get_ref()),
                        "the platform waits 5 s for the whole answer; later answers arrive as customer-service messages",
                    );
                } else {
                    ms = *t.get_ref();
                }
            }
            let fallback = wr
                .fallback
                .as_ref()
                .and_then(|t| self.text(&name, "webhook.fallback", t, cx));
            rule.action = Action::Webhook(WebhookSpec {
                url: url.to_string(),
                timeout: std::time::Duration::from_millis(ms),
                fallback,
            });
        } else if rule.tags.is_empty() {
            self.sink.error_help(
                name_span,
                format!("rule `{name}` does nothing"),
                "add reply = { text = \"…\" }, replies, article, handoff, webhook, or tag",
            );
        }
        trig.unconditional =
            rule.window.is_none() && rule.first_time.is_none() && rule.scan_result_prefix.is_none();
        (rule, trig)
    }

    fn when(
        &mut self,
        idx: u32,
        w: &S<RawWhen>,
        rule: &mut Rule,
        trig: &mut Triggers,
        captures: &mut usize,
        groups: &mut Vec<String>,
    ) {
        let wr = w.get_ref();
        let mut user = false;
        let kw_lists = [
            (&wr.exact, "exact"),
            (&wr.prefix, "prefix"),
            (&wr.contains, "contains"),
        ];
        for (list, what) in kw_lists {
            for kw in list.iter().flatten() {
                user = true;
                let norm = normalize(kw.get_ref());
                if norm.is_empty() {
                    self.sink.error(kw.span(), format!("empty {what} keyword"));
                    continue;
                }
                let written = kw.get_ref().trim().to_string();
                let entry = (norm.clone(), kw.span());
                match what {
                    "exact" => {
                        self.builder.exact(idx, norm, written);
                        trig.exact.push(entry);
                    }
                    "prefix" => {
                        self.builder.pattern(idx, PatKind::Prefix, norm, written);
                        trig.prefix.push(entry);
                    }
                    _ => {
                        self.builder.pattern(idx, PatKind::Contains, norm, written);
                        trig.contains.push(entry);
                    }
                }
            }
        }
        for re in wr.regex.iter().flatten() {
            user = true;
            trig.other = true;
            match regex::RegexBuilder::new(re.get_ref())
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
            {
                Ok(compiled) => {
                    *captures = (*captures).max(compiled.captures_len().saturating_sub(1));
                    for n in compiled.capture_names().flatten() {
                        if !groups.iter().any(|g| g == n) {
                            groups.push(n.to_string());
                        }
                    }
                    self.builder.regex(idx, compiled);
                }
                Err(e) => {
                    let detail = e.to_string();
                    let last = detail.lines().last().unwrap_or("").trim();
                    let last = last.trim_start_matches("error: ");
                    self.sink.error_help(
                        re.span(),
                        format!("bad regex `{}`: {last}", re.get_ref()),
                        "regexes use Rust `regex` syntax and run on the normalised (lower-case) text; remember to double backslashes inside \"…\" or use '…'",
                    );
                }
            }
        }
        if let Some(mt) = &wr.msg_type {
            if user {
                self.sink.error_help(
                    mt.span(),
                    "`msg_type` cannot be combined with keyword conditions",
                    "keywords already match text (and voice recognition); split this into two rules",
                );
            }
            user = true;
            trig.other = true;
            for t in mt.get_ref().to_vec() {
                match MsgKind::parse(t.trim()) {
                    Some(k) => self.builder.msg_type(idx, k),
                    None => self.sink.error_help(
                        mt.span(),
                        format!("unknown msg_type `{t}`"),
                        allowed_help(t.trim(), MsgKind::NAMES),
                    ),
                }
            }
        }
        if let Some(a) = &wr.any {
            if user {
                self.sink.error(
                    a.span(),
                    "`any` matches every message; do not combine it with other conditions",
                );
            }
            if *a.get_ref() {
                user = true;
                trig.any = true;
                self.builder.any(idx);
            } else {
                self.sink
                    .error(a.span(), "`any = false` matches nothing; remove it");
            }
        }

        // Events: exactly one way of naming the event.
        let mut ev: Vec<EventSpec> = Vec::new();
        if let Some(e) = &wr.event {
            match EventKind::parse(e.get_ref().trim()) {
                Some(k) => {
                    let keys = wr.key.as_ref().map(|k| k.get_ref().to_vec());
                    ev.push((vec![k], keys, e.span()));
                }
                None => self.sink.error_help(
                    e.span(),
                    format!("unknown event `{}`", e.get_ref()),
                    allowed_help(&e.get_ref().to_ascii_lowercase(), EventKind::NAMES),
                ),
            }
        } else if let Some(k) = &wr.key {
            self.sink.error_help(
                k.span(),
                "`key` needs `event`",
                "write e.g. when = { event = \"view\", key = \"https://…\" }, or use click = \"KEY\"",
            );
        }
        let shorthand = [
            (&wr.click, vec![EventKind::Click]),
            (&wr.scan, vec![EventKind::Scan]),
            (
                &wr.scancode,
                vec![EventKind::ScancodePush, EventKind::ScancodeWaitmsg],
            ),
        ];
        for (field, kinds) in shorthand {
            if let Some(f) = field {
                ev.push((kinds, Some(f.get_ref().to_vec()), f.span()));
            }
        }
        if let Some(l) = &wr.location {
            if *l.get_ref() {
                ev.push((vec![EventKind::Location], None, l.span()));
            } else {
                self.sink
                    .error(l.span(), "`location = false` matches nothing; remove it");
            }
        }
        if ev.len() > 1 {
            self.sink.error_help(
                ev[1].2.clone(),
                "a rule names one event",
                "use one of event/click/scan/scancode/location per rule",
            );
        }
        let mut kinds_here: Vec<EventKind> = Vec::new();
        if let Some((kinds, keys, span)) = ev.into_iter().next() {
            if user {
                self.sink.error_help(
                    span.clone(),
                    "a rule matches either user messages or events, not both",
                    "split it into two rules",
                );
            }
            let mut keys = keys;
            let subscribe = kinds.contains(&EventKind::Subscribe);
            if let Some(ch) = &wr.channel {
                if subscribe {
                    keys = Some(ch.get_ref().to_vec());
                } else {
                    self.sink.error_help(
                        ch.span(),
                        "`channel` only applies to event = \"subscribe\"",
                        "for an existing follower scanning a QR code use scan = \"scene\"",
                    );
                }
            } else if subscribe && keys.is_some() {
                self.sink.error_help(
                    span.clone(),
                    "subscribe rules name their QR-code scenes with `channel`",
                    "write channel = [\"scene\"] instead of key",
                );
                keys = None;
            }
            if kinds.contains(&EventKind::Location) && keys.is_some() {
                self.sink
                    .error(span.clone(), "LOCATION events carry no key");
                keys = None;
            }
            match keys {
                Some(list) if list.is_empty() => {
                    self.sink.error(span, "empty key list matches nothing");
                }
                Some(list) => {
                    for k in &kinds {
                        for key in &list {
                            self.builder.event(idx, *k, Some(key.clone()));
                            trig.events.push((*k, Some(key.clone())));
                        }
                    }
                }
                None => {
                    for k in &kinds {
                        self.builder.event(idx, *k, None);
                        trig.events.push((*k, None));
                    }
                }
            }
            kinds_here = kinds;
        } else if let Some(ch) = &wr.channel {
            self.sink.error_help(
                ch.span(),
                "`channel` needs event = \"subscribe\"",
                "write when = { event = \"subscribe\", channel = [\"scene\"] }",
            );
        } else if !user {
            self.sink.error_help(
                w.span(),
                "`when` has no trigger",
                "add exact/prefix/contains/regex, msg_type, any = true, or an event (event/click/scan/scancode/location)",
            );
        }
        if let Some(ft) = &wr.first_time {
            if kinds_here.contains(&EventKind::Subscribe) {
                rule.first_time = Some(*ft.get_ref());
            } else {
                self.sink.error(
                    ft.span(),
                    "`first_time` only applies to event = \"subscribe\"",
                );
            }
        }
        if let Some(p) = &wr.scan_result_prefix {
            if kinds_here.contains(&EventKind::ScancodePush)
                || kinds_here.contains(&EventKind::ScancodeWaitmsg)
            {
                rule.scan_result_prefix = Some(p.get_ref().clone());
            } else {
                self.sink.error(
                    p.span(),
                    "`scan_result_prefix` only applies to scancode events",
                );
            }
        }
        if let Some(h) = &wr.hours {
            rule.window = self.window(h);
        }
    }

    fn window(&mut self, h: &S<RawHours>) -> Option<Window> {
        let r = h.get_ref();
        fn s(o: &Option<S<String>>) -> Option<&str> {
            o.as_ref().map(|v| v.get_ref().as_str())
        }
        match Window::parse(s(&r.days), s(&r.from), s(&r.to)) {
            Ok(w) => Some(w),
            Err((field, msg)) => {
                let span = match field {
                    WindowField::Days => r.days.as_ref().map(|v| v.span()),
                    WindowField::From => r.from.as_ref().map(|v| v.span()),
                    WindowField::To => r.to.as_ref().map(|v| v.span()),
                }
                .unwrap_or_else(|| h.span());
                self.sink.error_help(
                    span,
                    format!("bad time window: {msg}"),
                    "hours = { days = \"mon-fri\", from = \"09:00\", to = \"18:00\" } (times in the account time zone; to < from wraps past midnight)",
                );
                None
            }
        }
    }

    fn reply(
        &mut self,
        rule: &str,
        what: &str,
        rep: &S<RawReply>,
        cx: (usize, &[String]),
    ) -> Option<ReplySpec> {
        let non_empty = |sink: &mut Sink<'_>, v: &str, field: &str| {
            if v.trim().is_empty() {
                sink.error(rep.span(), format!("`{field}` is empty"));
            }
        };
        Some(match rep.get_ref() {
            RawReply::Text(t) => ReplySpec::Text(self.text(rule, what, t, cx)?),
            RawReply::Template(t) => {
                let name = self.file_template(t)?;
                self.check_template(&name, TplLoc::File(self.file_label(&name)), cx);
                ReplySpec::Text(TextSpec::Template(name))
            }
            RawReply::Image(m) => {
                non_empty(&mut self.sink, m.get_ref(), "image");
                ReplySpec::Image(m.get_ref().clone())
            }
            RawReply::Voice(m) => {
                non_empty(&mut self.sink, m.get_ref(), "voice");
                ReplySpec::Voice(m.get_ref().clone())
            }
            RawReply::Video(v) => {
                non_empty(&mut self.sink, &v.media_id, "media_id");
                ReplySpec::Video {
                    media_id: v.media_id.clone(),
                    title: v.title.clone(),
                    description: v.description.clone(),
                }
            }
            RawReply::Music(m) => {
                non_empty(&mut self.sink, &m.thumb_media_id, "thumb_media_id");
                ReplySpec::Music {
                    title: m.title.clone(),
                    description: m.description.clone(),
                    music_url: m.music_url.clone(),
                    hq_music_url: m.hq_music_url.clone(),
                    thumb_media_id: m.thumb_media_id.clone(),
                }
            }
            RawReply::News(items) => {
                let n = items.get_ref().len();
                if n == 0 || n > 8 {
                    self.sink.error_help(
                        items.span(),
                        format!("news reply has {n} items; the platform allows 1 to 8"),
                        "to a user message the platform shows only the first item; keep one where you can",
                    );
                }
                let mut out = Vec::new();
                for (i, it) in items.get_ref().iter().enumerate() {
                    let title =
                        self.text(rule, &format!("{what}.news[{i}].title"), &it.title, cx)?;
                    let description = match &it.description {
                        Some(d) => {
                            self.text(rule, &format!("{what}.news[{i}].description"), d, cx)?
                        }
                        None => TextSpec::Literal(String::new()),
                    };
                    for (u, field) in [(&it.url, "url"), (&it.pic_url, "pic_url")] {
                        if !(u.is_empty() || u.starts_with("https://") || u.starts_with("http://"))
                        {
                            self.sink.error(
                                items.span(),
                                format!("news item {i}: `{field}` `{u}` is not an http(s) URL"),
                            );
                        }
                    }
                    out.push(NewsSpec {
                        title,
                        description,
                        pic_url: it.pic_url.clone(),
                        url: it.url.clone(),
                    });
                }
                ReplySpec::News(out)
            }
            RawReply::Transfer(t) => ReplySpec::Transfer(t.kf_account.clone()),
        })
    }

    /// An inline text: literal, or compiled and sample-rendered as a template.
    fn text(
        &mut self,
        rule: &str,
        what: &str,
        t: &S<String>,
        cx: (usize, &[String]),
    ) -> Option<TextSpec> {
        let s = t.get_ref();
        if !is_template(s) {
            return Some(TextSpec::Literal(s.clone()));
        }
        let name = format!("inline:{rule}:{what}");
        if let Err(e) = self.templates.add(&name, s.clone()) {
            self.template_error(&TplLoc::Inline(t.span()), &e);
            return None;
        }
        self.check_template(&name, TplLoc::Inline(t.span()), cx);
        Some(TextSpec::Template(name))
    }

    fn file_label(&self, name: &str) -> String {
        self.tdir.join(name).display().to_string()
    }

    /// Reads and compiles a template file once; `None` (with a diagnostic) if it cannot be used.
    fn file_template(&mut self, t: &S<String>) -> Option<String> {
        let name = t.get_ref().trim().to_string();
        let p = Path::new(&name);
        if name.is_empty()
            || p.is_absolute()
            || p.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            self.sink.error_help(
                t.span(),
                format!("bad template name `{name}`"),
                "name a file relative to the templates dir, e.g. \"welcome.txt\" or \"articles/x.html\"",
            );
            return None;
        }
        if let Some(ok) = self.files.get(&name) {
            return ok.then_some(name);
        }
        let full = self.tdir.join(&name);
        let ok = match std::fs::read_to_string(&full) {
            Ok(src) => match self.templates.add(&name, src) {
                Ok(()) => true,
                Err(e) => {
                    self.template_error(&TplLoc::File(full.display().to_string()), &e);
                    false
                }
            },
            Err(e) => {
                let help = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("create {} or fix the name", full.display())
                } else {
                    e.to_string()
                };
                self.sink.error_help(
                    t.span(),
                    format!(
                        "template file `{name}` not found in {}",
                        self.tdir.display()
                    ),
                    help,
                );
                false
            }
        };
        self.files.insert(name.clone(), ok);
        ok.then_some(name)
    }

    fn check_template(&mut self, name: &str, loc: TplLoc, cx: (usize, &[String])) {
        if let Err(e) = self.templates.check(name, cx.0, cx.1) {
            // An error inside an included file points at that file, not at the includer.
            let loc = if e.name() != name && !e.name().starts_with("inline:") {
                TplLoc::File(self.file_label(e.name()))
            } else {
                loc
            };
            self.template_error(&loc, &e);
        }
    }

    fn template_error(&mut self, loc: &TplLoc, e: &RenderError) {
        let tline = e.line().unwrap_or(1).max(1);
        let help = Some(
            "templates use minijinja syntax; variables: openid, channel, tags, subscribed_since, keyword, captures, groups, now, text".to_string(),
        );
        match loc {
            TplLoc::File(file) => self.sink.diags.push(Diagnostic {
                severity: Severity::Error,
                file: file.clone(),
                line: tline,
                column: 1,
                message: format!("template error: {e}"),
                help,
            }),
            TplLoc::Inline(span) => {
                let (l, c) = self.sink.lines.line_col(span.start);
                let (line, column) = if tline == 1 {
                    (l, c)
                } else {
                    (l + tline - 1, 1)
                };
                self.sink.diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: self.sink.file.clone(),
                    line,
                    column,
                    message: format!("template error: {e}"),
                    help,
                });
            }
        }
    }
}

/// Warnings for keywords and rules that can never fire because an earlier, unconditional rule
/// always wins. Uses the routing indexes themselves, so it stays fast at 10,000 rules.
fn shadow_warnings(
    sink: &mut Sink<'_>,
    trig: &[Triggers],
    rules: &[Rule],
    ix: &super::route::Index,
) {
    let uncond = |r: u32, j: usize| {
        (r as usize) < j && trig.get(r as usize).is_some_and(|t| t.unconditional)
    };
    let name = |r: u32| rules.get(r as usize).map_or("?", |x| x.name.as_str());
    let first_any = trig
        .iter()
        .enumerate()
        .find(|(_, t)| t.any && t.unconditional)
        .map(|(i, _)| i);
    for (j, t) in trig.iter().enumerate() {
        // An earlier catch-all swallows every later user-message rule and the fallback.
        if let Some(a) = first_any {
            let user_rule = t.fallback
                || t.any
                || t.other
                || !t.exact.is_empty()
                || !t.prefix.is_empty()
                || !t.contains.is_empty();
            if a < j && user_rule {
                sink.warn(
                    t.name_span.clone(),
                    format!(
                        "rule `{}` can never fire: the earlier rule `{}` matches every message",
                        name(j as u32),
                        name(a as u32)
                    ),
                );
                continue;
            }
        }
        let mut shadowed: Vec<(Range<usize>, String, u32)> = Vec::new();
        let mut total = 0;
        let groups = [(&t.exact, 0u8), (&t.prefix, 1), (&t.contains, 2)];
        for (list, kind) in groups {
            for (kw, span) in list.iter() {
                total += 1;
                let mut best: Option<(u32, String)> = None;
                let mut consider = |r: u32, why: String| {
                    if uncond(r, j) && best.as_ref().is_none_or(|(b, _)| r < *b) {
                        best = Some((r, why));
                    }
                };
                if kind == 0 {
                    for (r, w) in ix.exact.get(kw).into_iter().flatten() {
                        consider(*r, format!("the same exact keyword {w:?}"));
                    }
                }
                if let Some(ac) = &ix.ac {
                    for m in ac.find_overlapping_iter(kw.as_str()) {
                        for (r, pk, w) in
                            ix.ac_pats.get(m.pattern().as_usize()).into_iter().flatten()
                        {
                            match pk {
                                PatKind::Contains => consider(*r, format!("contains {w:?}")),
                                PatKind::Prefix if m.start() == 0 && kind != 2 => {
                                    consider(*r, format!("prefix {w:?}"))
                                }
                                PatKind::Prefix => {}
                            }
                        }
                    }
                }
                if let Some((r, why)) = best {
                    shadowed.push((span.clone(), why, r));
                }
            }
        }
        // Events: an earlier unconditional rule for the same key (or for any key) always wins.
        let mut ev_shadowed = 0;
        for (k, key) in &t.events {
            if let Some(b) = ix.events.get(k) {
                let by_key = key
                    .as_ref()
                    .and_then(|key| b.by_key.get(key))
                    .into_iter()
                    .flatten();
                if by_key.chain(b.any.iter()).any(|&r| uncond(r, j)) {
                    ev_shadowed += 1;
                }
            }
        }
        if !t.events.is_empty() && ev_shadowed == t.events.len() {
            sink.warn(
                t.name_span.clone(),
                format!(
                    "rule `{}` can never fire: an earlier unconditional rule handles the same event",
                    name(j as u32)
                ),
            );
        }
        if shadowed.is_empty() {
            continue;
        }
        if shadowed.len() == total && !t.other && !t.any {
            let (_, why, r) = &shadowed[0];
            sink.warn(
                t.name_span.clone(),
                format!(
                    "rule `{}` can never fire: every keyword is caught first by an earlier rule (e.g. `{}` with {why})",
                    name(j as u32),
                    name(*r)
                ),
            );
        } else {
            for (span, why, r) in shadowed {
                sink.warn(
                    span,
                    format!(
                        "this keyword of rule `{}` never matches: the earlier rule `{}` wins with {why}",
                        name(j as u32),
                        name(r)
                    ),
                );
            }
        }
    }
}

/// Short hash of the rules file and every template file (names and contents).
pub(crate) fn version(src: &str, tdir: &Path) -> String {
    let mut h = Sha256::new();
    h.update(src.as_bytes());
    for f in template_files(tdir) {
        let rel = f.strip_prefix(tdir).unwrap_or(&f);
        h.update([0u8]);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0u8]);
        if let Ok(bytes) = std::fs::read(&f) {
            h.update(&bytes);
        }
    }
    hex::encode(&h.finalize()[..6])
}
