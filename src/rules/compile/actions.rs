//! Rule actions: `reply`, `replies`, `article`, `handoff`, `webhook`, `assistant` (and tag-only
//! rules) → [`Action`], with the diagnostics an operator sees when one is wrong (the
//! assistant's own checks live in [`super::assistant`]).
//!
//! Owns the "one action per rule" check, reply kinds and their platform limits, and inline texts
//! (literal, or a template compiled and sample-rendered here). A new action is a field in
//! [`crate::rules::raw`], a variant of [`Action`] in the model, a branch here, and its outcome in
//! `route.rs`. May depend on: [`crate::rules::raw`], [`crate::rules::model`], [`crate::render`]
//! and the compiler's [`super::templates`] helpers.

use std::collections::HashMap;
use std::ops::Range;

use super::templates::TplLoc;
use super::Compiler;
use crate::render::is_template;
use crate::rules::diag::{did_you_mean, Sink};
use crate::rules::model::{
    Action, HandoffSpec, NewsSpec, ReplySpec, TextSpec, WebhookSpec, WEBHOOK_DEFAULT_MS,
    WEBHOOK_MAX_MS,
};
use crate::rules::raw::{RawReply, RawRule, S};
use crate::rules::HandoffSettings;

/// What templates of a rule may use: the number of regex captures and the named groups.
pub(super) type Cx<'a> = (usize, &'a [String]);

impl Compiler<'_> {
    /// The action of rule `name`; `Action::TagOnly` (with a diagnostic unless the rule tags) when
    /// it names none or its one action does not compile.
    pub(super) fn action(
        &mut self,
        name: &str,
        r: &RawRule,
        name_span: Range<usize>,
        cx: Cx<'_>,
        (article_ix, handoff): (&HashMap<String, usize>, &HandoffSettings),
        tagged: bool,
    ) -> Action {
        let actions = [
            r.reply.is_some(),
            r.replies.is_some(),
            r.article.is_some(),
            r.handoff.is_some(),
            r.webhook.is_some(),
            r.assistant.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if actions > 1 {
            self.sink.error_help(
                name_span.clone(),
                format!("rule `{name}` has more than one action"),
                "choose one of `reply`, `replies`, `article`, `handoff`, `webhook`, `assistant`",
            );
        }
        if let Some(rep) = &r.reply {
            self.reply(name, "reply", rep, cx)
                .map_or(Action::TagOnly, Action::Reply)
        } else if let Some(reps) = &r.replies {
            if reps.get_ref().is_empty() {
                self.sink
                    .error(reps.span(), "`replies` is empty; list at least one reply");
            }
            let mut specs = Vec::new();
            for (i, rep) in reps.get_ref().iter().enumerate() {
                if let Some(spec) = self.reply(name, &format!("replies[{i}]"), rep, cx) {
                    specs.push(spec);
                }
            }
            Action::Random(specs)
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
            Action::Article(id.clone())
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
                .and_then(|t| self.text(name, "handoff.notice", t, cx));
            let offline = hr
                .offline
                .as_ref()
                .and_then(|t| self.text(name, "handoff.offline", t, cx));
            let window = hr.hours.as_ref().and_then(|w| self.window(w));
            if window.is_some() && offline.is_none() {
                self.sink.warn(
                    h.span(),
                    format!("handoff in rule `{name}` has hours but no `offline` text: out of hours the user gets no answer"),
                );
            }
            Action::Handoff(HandoffSpec {
                kf_account: hr.kf_account.clone(),
                notice,
                window,
                offline,
            })
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
                .and_then(|t| self.text(name, "webhook.fallback", t, cx));
            Action::Webhook(WebhookSpec {
                url: url.to_string(),
                timeout: std::time::Duration::from_millis(ms),
                fallback,
            })
        } else if let Some(a) = &r.assistant {
            Action::Assistant(self.assistant_action(name, a, cx, article_ix))
        } else {
            if !tagged {
                self.sink.error_help(
                    name_span,
                    format!("rule `{name}` does nothing"),
                    "add reply = { text = \"…\" }, replies, article, handoff, webhook, assistant, or tag",
                );
            }
            Action::TagOnly
        }
    }

    fn reply(
        &mut self,
        rule: &str,
        what: &str,
        rep: &S<RawReply>,
        cx: Cx<'_>,
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
    pub(super) fn text(
        &mut self,
        rule: &str,
        what: &str,
        t: &S<String>,
        cx: Cx<'_>,
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
}

#[cfg(test)]
mod tests {
    use crate::rules::compile::testing::{assert_one_has, errors, rules, warnings};
    use crate::rules::model::{Action, ReplySpec, TextSpec};

    fn rule(action: &str) -> String {
        format!("[[rule]]\nname = \"r\"\nwhen = {{ exact = [\"x\"] }}\n{action}\n")
    }

    #[test]
    fn a_literal_text_stays_literal_and_a_template_is_compiled() {
        let rs = rules(&rule("reply = { text = \"你好\" }"));
        assert!(matches!(
            &rs.rules[0].action,
            Action::Reply(ReplySpec::Text(TextSpec::Literal(t))) if t == "你好"
        ));
        let rs = rules(&rule("reply = { text = \"你好 {{ keyword }}\" }"));
        assert!(matches!(
            &rs.rules[0].action,
            Action::Reply(ReplySpec::Text(TextSpec::Template(name))) if name == "inline:r:reply"
        ));
    }

    #[test]
    fn a_rule_with_two_actions_is_refused() {
        let e = errors(&rule("reply = { text = \"a\" }\narticle = \"guide\""));
        assert_one_has(&e, &["rule `r` has more than one action", "choose one of"]);
    }

    #[test]
    fn a_rule_that_does_nothing_is_refused_unless_it_tags() {
        let e = errors(&rule(""));
        assert_one_has(&e, &["rule `r` does nothing"]);
        let rs = rules(&rule("tag = \"vip\""));
        assert!(matches!(rs.rules[0].action, Action::TagOnly));
        assert_eq!(rs.rules[0].tags, ["vip"]);
    }

    #[test]
    fn an_unknown_article_gets_a_did_you_mean() {
        let src = format!(
            "{}\n[[article]]\nid = \"guide\"\ntitle = \"t\"\nteaser = \"t\"\ncover = \"https://x/c.jpg\"\nprice = \"1\"\nbody_url = \"https://x/\"\n",
            rule("article = \"gide\"")
        );
        let e = errors(&src);
        assert_one_has(&e, &["unknown article id `gide`", "did you mean `guide`?"]);
    }

    #[test]
    fn a_handoff_needs_the_handoff_section_and_warns_without_offline_text() {
        let e = errors(&rule("handoff = { notice = \"稍等\" }"));
        assert_one_has(&e, &["there is no [handoff] section"]);
        let src = format!(
            "[handoff]\nexit_keywords = [\"结束\"]\n\n{}",
            rule("handoff = { hours = { days = \"mon-fri\", from = \"09:00\", to = \"18:00\" } }")
        );
        assert_one_has(&warnings(&src), &["has hours but no `offline` text"]);
    }

    #[test]
    fn a_webhook_waits_3_s_by_default_and_at_most_4_5_s() {
        let rs = rules(&rule("webhook = { url = \"https://crm.example.com/h\" }"));
        match &rs.rules[0].action {
            Action::Webhook(w) => assert_eq!(w.timeout.as_millis(), 3000),
            other => panic!("{other:?}"),
        }
        let e = errors(&rule(
            "webhook = { url = \"https://crm.example.com/h\", timeout_ms = 5000 }",
        ));
        assert_one_has(&e, &["timeout_ms = 5000 is outside 100..=4500"]);
        let e = errors(&rule("webhook = { url = \"crm.example.com\" }"));
        assert_one_has(&e, &["webhook url `crm.example.com` is not an http(s) URL"]);
    }

    #[test]
    fn news_needs_one_to_eight_items_with_http_links() {
        let item = "{ title = \"t\", url = \"https://x/\", pic_url = \"ftp://x/p.jpg\" }";
        let e = errors(&rule(&format!("reply = {{ news = [{item}] }}")));
        assert_one_has(
            &e,
            &["news item 0: `pic_url` `ftp://x/p.jpg` is not an http(s) URL"],
        );
        let e = errors(&rule("reply = { news = [] }"));
        assert_one_has(&e, &["news reply has 0 items; the platform allows 1 to 8"]);
    }
}
