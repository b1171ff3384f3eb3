//! Message templates: a minijinja environment built at run time from the templates dir (operators
//! edit files there without rebuilding) plus the inline templates written in `keywords.toml`.
//!
//! Owns the template environment, the variables a template may use ([`Vars`]) and the sample
//! values used to prove every template renders before rules go live. Undefined variables are
//! errors (strict mode) so a typo is caught at load time, not in front of a subscriber.
//! May depend on: minijinja, serde, chrono(-tz), foldhash. Knows nothing of rules or the protocol; `rules` compiles into it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Why a template could not be added or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{message}")]
    Template {
        /// Template name (file name relative to the templates dir, or `inline:…`).
        name: String,
        /// 1-based line inside the template, when minijinja knows it.
        line: Option<usize>,
        message: String,
    },
}

impl RenderError {
    fn from_mj(name: &str, e: &minijinja::Error) -> Self {
        let mut message = e.kind().to_string();
        if let Some(d) = e.detail() {
            message.push_str(": ");
            message.push_str(d);
        }
        RenderError::Template {
            name: e.name().unwrap_or(name).to_string(),
            line: e.line(),
            message,
        }
    }

    pub fn line(&self) -> Option<usize> {
        match self {
            RenderError::Template { line, .. } => *line,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RenderError::Template { name, .. } => name,
        }
    }
}

/// The variables every template sees. Dates are kept raw and formatted only when a template
/// reads them, so a reply that does not mention `now` never pays for time-zone formatting.
#[derive(Clone, Debug)]
pub struct Vars {
    pub openid: String,
    /// The QR-code scene the subscriber came from, if any.
    pub channel: Option<String>,
    pub tags: Vec<String>,
    /// Unix seconds; shown to templates as "YYYY-MM-DD" in the account time zone.
    pub subscribed_since: Option<i64>,
    /// The matched keyword as written in keywords.toml, else the user's text.
    pub keyword: String,
    /// Regex groups: `captures[0]` is the whole match.
    pub captures: Vec<Option<String>>,
    /// Named regex groups.
    pub groups: BTreeMap<String, String>,
    /// Shown to templates as "YYYY-MM-DD HH:MM" in the account time zone.
    pub now: DateTime<Utc>,
    /// The account time zone, for `now` and `subscribed_since`.
    pub tz: Tz,
    /// The user's text (or voice recognition), empty for events.
    pub text: String,
}

impl Vars {
    /// Two sample contexts a template must render against at load time: one with every optional
    /// value present and one with every optional value absent.
    pub fn samples(captures: usize, groups: &[String]) -> [Vars; 2] {
        let full = Vars {
            openid: "oSAMPLE_openid".into(),
            channel: Some("sample-channel".into()),
            tags: vec!["sample-tag".into()],
            subscribed_since: Some(1_767_225_600),
            keyword: "sample".into(),
            captures: (0..=captures).map(|_| Some("sample".into())).collect(),
            groups: groups
                .iter()
                .map(|g| (g.clone(), "sample".to_string()))
                .collect(),
            now: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
            tz: chrono_tz::Asia::Shanghai,
            text: "sample".into(),
        };
        let empty = Vars {
            channel: None,
            tags: Vec::new(),
            subscribed_since: None,
            ..full.clone()
        };
        [full, empty]
    }
}

const VAR_NAMES: &[&str] = &[
    "openid",
    "channel",
    "tags",
    "subscribed_since",
    "keyword",
    "captures",
    "groups",
    "now",
    "text",
];

/// Templates read variables straight from the struct instead of a serialised copy: routing
/// renders on every message, and most templates touch one or two variables.
impl minijinja::value::Object for Vars {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        use minijinja::Value;
        let opt = |o: &Option<String>| o.as_deref().map_or(Value::from(()), Value::from);
        Some(match key.as_str()? {
            "openid" => Value::from(self.openid.as_str()),
            "channel" => opt(&self.channel),
            "tags" => Value::from_serialize(&self.tags),
            "subscribed_since" => self
                .subscribed_since
                .and_then(|t| self.tz.timestamp_opt(t, 0).single())
                .map_or(Value::from(()), |d| {
                    Value::from(d.format("%Y-%m-%d").to_string())
                }),
            "keyword" => Value::from(self.keyword.as_str()),
            "captures" => Value::from_serialize(&self.captures),
            "groups" => Value::from_serialize(&self.groups),
            "now" => Value::from(
                self.now
                    .with_timezone(&self.tz)
                    .format("%Y-%m-%d %H:%M")
                    .to_string(),
            ),
            "text" => Value::from(self.text.as_str()),
            _ => return None,
        })
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(VAR_NAMES)
    }
}

/// The string variables a [`Plain`] template can print, borrowed from the push being answered.
/// Each holds what [`Vars`] would show a template under the same name.
#[derive(Clone, Copy, Debug)]
pub struct PlainVars<'a> {
    pub openid: &'a str,
    pub keyword: &'a str,
    pub text: &'a str,
    pub channel: Option<&'a str>,
}

#[derive(Clone, Copy, Debug)]
enum PlainVar {
    Openid,
    Keyword,
    Text,
    Channel,
}

#[derive(Debug)]
enum Piece {
    Text(Box<str>),
    Var(PlainVar),
}

/// A template that is only text and `{{ name }}` of a string variable, the common shape of a
/// reply ("已收到你的「{{ keyword }}」请求"). Routing renders one on many pushes, and the engine's
/// context and VM were a quarter of routing's instructions on the bench mix (docs/performance-history.md,
/// "What each feature costs"), so such a template is also kept as pieces and rendered by
/// concatenation. Every template still goes through the engine at load (compile errors, the
/// sample check); anything this reader is unsure of is left to the engine, which is the
/// reference: `plain_templates_render_as_the_engine_does` compares the two.
#[derive(Debug)]
struct Plain {
    pieces: Vec<Piece>,
    text_bytes: usize,
}

impl Plain {
    /// The pieces of `source` when it is plain, else `None` (the engine renders it).
    fn parse(name: &str, source: &str) -> Option<Plain> {
        // Auto-escaping (`.html`, `.xml`) would change what a variable prints.
        if minijinja::default_auto_escape_callback(name) != minijinja::AutoEscape::None {
            return None;
        }
        // The engine drops one trailing newline, then one trailing carriage return.
        let src = source.strip_suffix('\n').unwrap_or(source);
        let mut rest = src.strip_suffix('\r').unwrap_or(src);
        let mut pieces = Vec::new();
        let mut text_bytes = 0;
        loop {
            let bytes = rest.as_bytes();
            // The engine's tags start at `{` followed by `{`, `%` or `#`; any other `{` is text.
            let start = bytes
                .windows(2)
                .position(|w| w[0] == b'{' && matches!(w[1], b'{' | b'%' | b'#'));
            let Some(start) = start else {
                if !rest.is_empty() {
                    text_bytes += rest.len();
                    pieces.push(Piece::Text(rest.into()));
                }
                return Some(Plain { pieces, text_bytes });
            };
            if bytes[start + 1] != b'{' {
                return None;
            }
            if start > 0 {
                text_bytes += start;
                pieces.push(Piece::Text(rest[..start].into()));
            }
            let expr = &rest[start + 2..];
            // `{{-`/`{{+` trim or keep whitespace around the tag: the engine's business.
            if expr.starts_with(['-', '+']) {
                return None;
            }
            let inner = expr.trim_start_matches([' ', '\t', '\n', '\r']);
            let ident_len = inner
                .bytes()
                .enumerate()
                .take_while(|&(i, b)| {
                    b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit())
                })
                .count();
            let var = match &inner[..ident_len] {
                "openid" => PlainVar::Openid,
                "keyword" => PlainVar::Keyword,
                "text" => PlainVar::Text,
                "channel" => PlainVar::Channel,
                _ => return None,
            };
            let after = inner[ident_len..].trim_start_matches([' ', '\t', '\n', '\r']);
            rest = after.strip_prefix("}}")?;
            pieces.push(Piece::Var(var));
        }
    }

    /// The rendered text, or `None` when a variable has no value (the engine prints `none`).
    fn render(&self, v: &PlainVars<'_>) -> Option<String> {
        let mut out = String::with_capacity(self.text_bytes + 64);
        for p in &self.pieces {
            out.push_str(match p {
                Piece::Text(t) => t,
                Piece::Var(PlainVar::Openid) => v.openid,
                Piece::Var(PlainVar::Keyword) => v.keyword,
                Piece::Var(PlainVar::Text) => v.text,
                Piece::Var(PlainVar::Channel) => v.channel?,
            });
        }
        Some(out)
    }
}

/// The compiled templates of one rules load. Immutable once built; shared by routing threads.
pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
    /// The templates that are plain text and variables, by name (see [`Plain`]).
    plain: HashMap<String, Plain, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("dir", &self.dir).finish()
    }
}

impl Templates {
    /// An environment whose `{% include %}`s resolve under `dir`.
    pub fn new(dir: &Path) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let from_dir = minijinja::path_loader(dir);
        env.set_loader(move |name| match from_dir(name)? {
            Some(src) => Ok(Some(src)),
            None => Ok(builtin_page(name).map(str::to_string)),
        });
        Templates {
            env,
            dir: dir.to_path_buf(),
            plain: HashMap::default(),
        }
    }

    /// The directory templates are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compiles one template under `name` (a file name relative to the dir, or `inline:…`).
    pub fn add(&mut self, name: &str, source: String) -> Result<(), RenderError> {
        let plain = Plain::parse(name, &source);
        self.env
            .add_template_owned(name.to_string(), source)
            .map_err(|e| RenderError::from_mj(name, &e))?;
        match plain {
            Some(p) => self.plain.insert(name.to_string(), p),
            None => self.plain.remove(name),
        };
        Ok(())
    }

    /// Renders `name` without the engine when it is a plain template and every variable it
    /// prints has a value; `None` means "ask [`Templates::render`]".
    pub fn render_plain(&self, name: &str, vars: &PlainVars<'_>) -> Option<String> {
        self.plain.get(name)?.render(vars)
    }

    /// Renders a compiled template against any serialisable context.
    pub fn render<S: Serialize>(&self, name: &str, ctx: &S) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::from_mj(name, &e))?;
        t.render(ctx).map_err(|e| RenderError::from_mj(name, &e))
    }

    /// Renders a compiled template with the message variables (the routing path).
    pub fn render_vars(&self, name: &str, vars: Vars) -> Result<String, RenderError> {
        self.render(name, &minijinja::Value::from_object(vars))
    }

    /// Renders once against each sample context: a template that fails here is a config error.
    pub fn check(&self, name: &str, captures: usize, groups: &[String]) -> Result<(), RenderError> {
        for vars in Vars::samples(captures, groups) {
            self.render_vars(name, vars)?;
        }
        Ok(())
    }
}

/// The page templates shipped in the binary, used when the operator's templates dir has no
/// file of that name: a rules directory without pages still serves articles and link errors.
pub fn builtin_page(name: &str) -> Option<&'static str> {
    Some(match name {
        "_page.html" => include_str!("../../templates/_page.html"),
        "article.html" => include_str!("../../templates/article.html"),
        "paywall.html" => include_str!("../../templates/paywall.html"),
        "link_error.html" => include_str!("../../templates/link_error.html"),
        "admin/_layout.html" => include_str!("../../templates/admin/_layout.html"),
        "admin/_tables.html" => include_str!("../../templates/admin/_tables.html"),
        "admin/sign_in.html" => include_str!("../../templates/admin/sign_in.html"),
        "admin/overview.html" => include_str!("../../templates/admin/overview.html"),
        "admin/channels.html" => include_str!("../../templates/admin/channels.html"),
        "admin/retention.html" => include_str!("../../templates/admin/retention.html"),
        "admin/articles.html" => include_str!("../../templates/admin/articles.html"),
        "admin/unanswered.html" => include_str!("../../templates/admin/unanswered.html"),
        "admin/assistant.html" => include_str!("../../templates/admin/assistant.html"),
        "admin/handoffs.html" => include_str!("../../templates/admin/handoffs.html"),
        "admin/outbox.html" => include_str!("../../templates/admin/outbox.html"),
        "admin/orders.html" => include_str!("../../templates/admin/orders.html"),
        "admin/subscribers.html" => include_str!("../../templates/admin/subscribers.html"),
        _ => return None,
    })
}

/// Every template file under `dir` (recursively, sorted), skipping hidden files and editor
/// backups (`.x.swp`, `x~`) so a half-written swap file neither changes the version nor
/// triggers a reload.
pub fn template_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => out.push(e.path()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Whether a string needs the template engine at all (plain text is sent as written).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_undefined_is_an_error() {
        let mut t = Templates::new(Path::new("/nonexistent"));
        t.add("inline:a", "hi {{ opnid }}".into())
            .expect("compiles");
        let err = t.check("inline:a", 0, &[]).expect_err("typo caught");
        assert_eq!(err.line(), Some(1));
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn syntax_error_has_line() {
        let mut t = Templates::new(Path::new("/nonexistent"));
        let err = t
            .add("inline:b", "line one\n{% if x %}\nno end".into())
            .expect_err("syntax");
        assert!(err.line().is_some());
    }

    fn vars(openid: &str, keyword: &str, text: &str, channel: Option<&str>) -> Vars {
        Vars {
            openid: openid.into(),
            keyword: keyword.into(),
            text: text.into(),
            channel: channel.map(str::to_string),
            ..Vars::samples(0, &[])[0].clone()
        }
    }

    /// What the engine renders, for comparison with the plain path.
    fn engine(name: &str, src: &str, v: Vars) -> Result<String, RenderError> {
        let mut t = Templates::new(Path::new("/nonexistent"));
        t.add(name, src.to_string())?;
        t.render_vars(name, v)
    }

    #[test]
    fn reply_shaped_templates_take_the_plain_path() {
        let mut t = Templates::new(Path::new("/nonexistent"));
        let src =
            "已收到你的「{{ keyword }}」请求：{{text}} 👌 {来自 {{\tchannel\n}}} {{ openid }}\n";
        t.add("inline:r:reply", src.into()).expect("compiles");
        let pv = PlainVars {
            openid: "oABC",
            keyword: "课程",
            text: "课程 2026",
            channel: Some("poster-metro"),
        };
        let fast = t.render_plain("inline:r:reply", &pv).expect("plain");
        assert_eq!(
            fast,
            "已收到你的「课程」请求：课程 2026 👌 {来自 poster-metro} oABC"
        );
        let slow = t
            .render_vars(
                "inline:r:reply",
                vars("oABC", "课程", "课程 2026", Some("poster-metro")),
            )
            .expect("renders");
        assert_eq!(fast, slow);
        // No channel: the engine prints `none`, so the plain path steps aside.
        let pv = PlainVars {
            channel: None,
            ..pv
        };
        assert_eq!(t.render_plain("inline:r:reply", &pv), None);
    }

    #[test]
    fn anything_beyond_text_and_string_variables_is_left_to_the_engine() {
        for (name, src) in [
            ("inline:a", "{{- keyword }}"),
            ("inline:a", "{{ keyword -}}"),
            ("inline:a", "{{+ keyword }}"),
            ("inline:a", "{{ keyword|upper }}"),
            ("inline:a", "{{ now }}"),
            ("inline:a", "{{ tags }}"),
            ("inline:a", "{% if channel %}{{ channel }}{% endif %}"),
            ("inline:a", "{# note #}{{ keyword }}"),
            ("inline:a", "{{ keyword }"),
            ("inline:a", "{{{ keyword }}"),
            ("reply.html", "{{ keyword }}"),
            ("reply.xml.j2", "{{ keyword }}"),
        ] {
            assert!(Plain::parse(name, src).is_none(), "{name}: {src}");
        }
        assert!(Plain::parse("reply.txt", "{{ keyword }}").is_some());
        assert!(Plain::parse("inline:a", "only text, { and } and %").is_some());
    }

    #[test]
    fn replacing_a_plain_template_with_one_that_is_not_drops_the_plain_copy() {
        let mut t = Templates::new(Path::new("/nonexistent"));
        t.add("inline:a", "{{ keyword }}".into()).expect("compiles");
        t.add("inline:a", "{{ keyword|upper }}".into())
            .expect("compiles");
        let pv = PlainVars {
            openid: "o",
            keyword: "k",
            text: "t",
            channel: None,
        };
        assert_eq!(t.render_plain("inline:a", &pv), None);
    }

    mod plain_vs_engine {
        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = String> {
            let ws = prop::sample::select(vec!["", " ", "  ", "\t", "\n", "\r\n", "-", "+"]);
            let name = prop::sample::select(vec![
                "openid", "keyword", "text", "channel", "now", "tags", "nope", "",
            ]);
            prop_oneof![
                "[a-z 中文😀{}%#+\\-\n\r\t]{0,6}",
                (ws.clone(), name, ws).prop_map(|(a, n, b)| format!("{{{{{a}{n}{b}}}}}")),
            ]
        }

        proptest! {
            /// Whenever the plain reader takes a template, the engine compiles and renders it,
            /// and prints exactly what the plain path prints.
            #[test]
            fn plain_templates_render_as_the_engine_does(
                pieces in prop::collection::vec(piece(), 0..6),
                name in prop::sample::select(vec!["inline:r:reply", "reply.txt", "page.html"]),
                openid in "[a-zA-Z0-9_{}<>&-]{0,8}",
                keyword in "[a-z 中文😀{}<>&]{0,6}",
                text in "[a-z 中文😀{}<>&\n]{0,8}",
                channel in prop::option::of("[a-z{}<>&-]{0,6}"),
            ) {
                let src: String = pieces.concat();
                if let Some(plain) = Plain::parse(name, &src) {
                    let slow = engine(name, &src, vars(&openid, &keyword, &text, channel.as_deref()));
                    let slow = slow.map_err(|e| TestCaseError::fail(format!("{src:?}: {e}")))?;
                    let pv = PlainVars {
                        openid: &openid,
                        keyword: &keyword,
                        text: &text,
                        channel: channel.as_deref(),
                    };
                    if let Some(fast) = plain.render(&pv) {
                        prop_assert_eq!(fast, slow, "template {:?}", src);
                    } else {
                        prop_assert!(channel.is_none());
                    }
                }
            }
        }
    }

    #[test]
    fn optional_values_render_in_both_samples() {
        let mut t = Templates::new(Path::new("/nonexistent"));
        t.add(
            "inline:c",
            "{% if channel %}来自 {{ channel }}{% endif %} {{ now }} {{ tags|join(',') }}".into(),
        )
        .expect("compiles");
        t.check("inline:c", 0, &[]).expect("renders");
    }
}
