//! Stage two of loading: the raw mirror → the [`super::model`] inside a [`RuleSet`], collecting
//! every error and warning at once.
//!
//! This file owns the order of the work and the file-wide parts (time zone, templates dir,
//! articles, `[handoff]`, rule names, the fallback, menu keys without a rule, the version hash).
//! The rest is one job per file, each with its own tests:
//! - [`shape`]: the file does not fit the raw mirror → every shape error, with did-you-mean;
//! - [`triggers`]: a rule's `when` → index entries and conditions;
//! - [`actions`]: a rule's action → [`Action`];
//! - [`assistant`]: the `assistant` action, `[assistant]`, and the documents it answers from;
//! - [`templates`]: template files and inline templates, compiled and sample-rendered;
//! - [`index`]: the routing [`super::model::Index`], built;
//! - [`shadow`]: rules and keywords that can never fire.
//!
//! May depend on: [`super::raw`], [`super::diag`], [`super::model`], [`super::menu`],
//! [`super::window`], [`crate::wechat::names`], [`crate::render`],
//! [`crate::assistant::retrieval`] (the corpus it builds), regex, toml, sha2. Never on
//! [`super::route`].

mod actions;
mod assistant;
mod index;
pub(crate) mod price;
mod shadow;
mod shape;
mod templates;
mod triggers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::diag::{Severity, Sink};
use super::model::{Action, Rule};
use super::raw::{RawFile, S};
use super::window::normalize;
use super::{menu, ArticleBody, ArticleDef, ConfigErrors, HandoffSettings, Loaded, RuleSet};
use crate::render::{template_files, Templates};
use crate::wechat::names::EventType;
use index::IndexBuilder;
use shadow::{shadow_warnings, Triggers};
use shape::shape_errors;

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
    let mut customer_service = None;
    if let Some(acc) = &raw.account {
        let acc = acc.get_ref();
        customer_service = acc.customer_service.as_ref().map(|c| *c.get_ref());
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
    let assistant = c.assistant_settings(raw.assistant.as_ref());
    c.paid_documents(raw.assistant.as_ref(), &articles);

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
    let has_assistant = rules
        .iter()
        .any(|r| matches!(r.action, Action::Assistant(_)));
    if has_assistant {
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        c.assistant_word_clashes(&assistant, &triggers, &names);
        c.questionless_assistants(&rules, &triggers);
    }

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
                    EventType::Click,
                    EventType::ScancodePush,
                    EventType::ScancodeWaitmsg,
                    EventType::PicSysphoto,
                    EventType::PicPhotoOrAlbum,
                    EventType::PicWeixin,
                    EventType::LocationSelect,
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
    // Indexed only once the file is known good, and only when a rule asks: a file without an
    // assistant rule pays nothing for it.
    let corpus = has_assistant.then(|| {
        let docs = assistant::gather_docs(&c.tdir, &articles, &assistant.documents);
        std::sync::Arc::new(crate::assistant::retrieval::Corpus::build(docs))
    });
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
            reload: super::ReloadConfirms::from_raw(raw.reload.as_ref()),
            assistant,
            corpus,
            customer_service,
        },
        warnings: diags,
    })
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
            let price_fen = r.price.as_ref().and_then(|p| self.price(p));
            let description = self.order_description(a, r.price.is_some());
            ix.insert(id.clone(), out.len());
            out.push(ArticleDef {
                id,
                title: r.title.clone(),
                teaser: r.teaser.clone(),
                cover: r.cover.clone(),
                price: price_fen.map(price::display_fen).unwrap_or_default(),
                price_fen,
                description,
                body,
                purchase_url: r.purchase_url.as_ref().map(|u| u.get_ref().clone()),
            });
        }
        (out, ix)
    }

    /// `price = "19.90"` → fen, or an error at the value.
    fn price(&mut self, p: &S<super::raw::RawPrice>) -> Option<u64> {
        match price::parse_yuan(&p.get_ref().0) {
            Ok(fen) => Some(fen),
            Err(e) => {
                let help = e.help();
                self.sink.error_help(p.span(), e.to_string(), help);
                None
            }
        }
    }

    /// `description`, checked against WeChat Pay's limit; for an article for sale without one,
    /// the title (which becomes the order description) is checked instead.
    fn order_description(
        &mut self,
        a: &S<super::raw::RawArticle>,
        for_sale: bool,
    ) -> Option<String> {
        let r = a.get_ref();
        let max = super::ORDER_DESCRIPTION_MAX_CHARS;
        let Some(d) = &r.description else {
            let n = r.title.trim().chars().count();
            if for_sale && (n == 0 || n > max) {
                self.sink.error_help(
                    a.span(),
                    format!(
                        "article `{}` is for sale and its title ({n} characters) cannot be the order description (1–{max})",
                        r.id.get_ref().trim()
                    ),
                    format!("add description = \"…\" (at most {max} characters)"),
                );
            }
            return None;
        };
        let text = d.get_ref().trim();
        let n = text.chars().count();
        if n == 0 {
            self.sink.error_help(
                d.span(),
                "description is empty",
                "remove it (the title is used) or write what the reader buys",
            );
            return None;
        }
        if n > max {
            self.sink.error_help(
                d.span(),
                format!("description has {n} characters, more than {max}"),
                format!("WeChat Pay shows at most {max} characters; shorten it"),
            );
            return None;
        }
        if !for_sale {
            self.sink.warn(
                d.span(),
                "description is only used for an article with a `price`; this one is not for sale",
            );
        }
        Some(text.to_string())
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

        let cx = (captures, groups.as_slice());
        let tagged = !rule.tags.is_empty();
        rule.action = self.action(&name, r, name_span, cx, (article_ix, handoff), tagged);
        trig.unconditional =
            rule.window.is_none() && rule.first_time.is_none() && rule.scan_result_prefix.is_none();
        (rule, trig)
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

/// Loading a rules file from a string, for the unit tests of each compile step.
#[cfg(test)]
pub(super) mod testing {
    use std::path::Path;

    use super::compile;
    use crate::rules::{Diagnostic, Loaded, RuleSet, Severity};

    pub(crate) fn load(src: &str) -> Result<Loaded, Vec<Diagnostic>> {
        compile(src, Path::new("/nonexistent/keywords.toml")).map_err(|e| e.0)
    }

    /// The rules, which must load.
    pub(crate) fn rules(src: &str) -> RuleSet {
        match load(src) {
            Ok(l) => l.rules,
            Err(e) => panic!("rules did not load: {e:#?}"),
        }
    }

    /// The warnings of a file that must load.
    pub(crate) fn warnings(src: &str) -> Vec<String> {
        match load(src) {
            Ok(l) => l.warnings.iter().map(|d| d.message.clone()).collect(),
            Err(e) => panic!("rules did not load: {e:#?}"),
        }
    }

    /// The errors of a file that must not load, each as `line:column message | help`.
    pub(crate) fn errors(src: &str) -> Vec<String> {
        match load(src) {
            Ok(_) => panic!("rules loaded but should not have"),
            Err(e) => e
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| {
                    format!(
                        "{}:{} {} | {}",
                        d.line,
                        d.column,
                        d.message,
                        d.help.as_deref().unwrap_or("")
                    )
                })
                .collect(),
        }
    }

    /// Asserts one of `list` contains every one of `needles`.
    pub(crate) fn assert_one_has(list: &[String], needles: &[&str]) {
        assert!(
            list.iter().any(|l| needles.iter().all(|n| l.contains(n))),
            "no entry has all of {needles:?}: {list:#?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_one_has, errors, load, rules, warnings};
    use super::version;

    #[test]
    fn rule_names_must_be_unique_and_the_error_points_at_the_first() {
        let e = errors(
            "[[rule]]\nname = \"a\"\nwhen = { exact = [\"x\"] }\nreply = { text = \"1\" }\n\n\
             [[rule]]\nname = \"a\"\nwhen = { exact = [\"y\"] }\nreply = { text = \"2\" }\n",
        );
        assert_one_has(&e, &["7:8", "duplicate rule name `a`", "is on line 2"]);
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_an_example() {
        let e = errors("[account]\ntimezone = \"Asia/Shangai\"\n");
        assert_one_has(&e, &["unknown time zone `Asia/Shangai`", "Asia/Shanghai"]);
    }

    #[test]
    fn two_fallbacks_are_refused() {
        let e = errors(
            "[[rule]]\nname = \"f1\"\nfallback = true\nreply = { text = \"1\" }\n\n\
             [[rule]]\nname = \"f2\"\nfallback = true\nreply = { text = \"2\" }\n",
        );
        assert_one_has(&e, &["two fallback rules: `f1` (line 2) and `f2`"]);
    }

    #[test]
    fn the_account_zone_defaults_to_shanghai() {
        assert_eq!(rules("").timezone(), chrono_tz::Asia::Shanghai);
        let hk = rules("[account]\ntimezone = \"Asia/Hong_Kong\"\n");
        assert_eq!(hk.timezone(), chrono_tz::Asia::Hong_Kong);
    }

    #[test]
    fn a_menu_key_without_a_rule_is_a_warning() {
        let menu = "[[menu.button]]\nname = \"关于\"\ntype = \"click\"\nkey = \"ABOUT\"\n";
        let w = warnings(menu);
        assert_one_has(&w, &["menu key `ABOUT` has no rule"]);
        let answered = format!(
            "{menu}\n[[rule]]\nname = \"about\"\nwhen = {{ click = \"ABOUT\" }}\nreply = {{ text = \"hi\" }}\n"
        );
        assert_eq!(warnings(&answered), Vec::<String>::new());
    }

    #[test]
    fn the_version_changes_with_the_file_and_is_short_hex() {
        let dir = std::path::Path::new("/nonexistent");
        let a = version("a = 1", dir);
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!(a, version("a = 1", dir));
        assert_ne!(a, version("a = 2", dir));
        assert!(load("").is_ok());
    }
}
