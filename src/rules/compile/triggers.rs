//! Triggers: a rule's `when` → entries in the routing index, plus the conditions routing checks
//! on the candidate (time window, first-time, scan-result prefix).
//!
//! Owns keyword normalisation at load, regex limits, the `msg_type` and `event` names (checked
//! against [`crate::wechat::names`], with did-you-mean), event shorthands (`click`, `scan`,
//! `scancode`, `location`), channels, and time windows. Records what shadow analysis needs in
//! [`Triggers`]. May depend on: [`crate::rules::raw`], [`crate::rules::model`],
//! [`crate::rules::window`], [`crate::wechat::names`], regex.

use std::ops::Range;

use super::shadow::Triggers;
use super::Compiler;
use crate::rules::diag::allowed_help;
use crate::rules::model::{PatKind, Rule};
use crate::rules::raw::{RawHours, RawWhen, S};
use crate::rules::window::{normalize, Window, WindowField};
use crate::wechat::names::{EventType, MsgType};

/// One way a `when` names an event: the kinds it covers, the keys (none: any key), where.
type EventSpec = (Vec<EventType>, Option<Vec<String>>, Range<usize>);

impl Compiler<'_> {
    pub(super) fn when(
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
                match MsgType::from_rules_name(t.trim()) {
                    Some(k) => self.builder.msg_type(idx, k),
                    None => self.sink.error_help(
                        mt.span(),
                        format!("unknown msg_type `{t}`"),
                        allowed_help(t.trim(), &MsgType::rules_names().collect::<Vec<_>>()),
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
            match EventType::from_rules_name(e.get_ref().trim()) {
                Some(k) => {
                    let keys = wr.key.as_ref().map(|k| k.get_ref().to_vec());
                    ev.push((vec![k], keys, e.span()));
                }
                None => self.sink.error_help(
                    e.span(),
                    format!("unknown event `{}`", e.get_ref()),
                    allowed_help(
                        &e.get_ref().to_ascii_lowercase(),
                        &EventType::rules_names().collect::<Vec<_>>(),
                    ),
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
            (&wr.click, vec![EventType::Click]),
            (&wr.scan, vec![EventType::Scan]),
            (
                &wr.scancode,
                vec![EventType::ScancodePush, EventType::ScancodeWaitmsg],
            ),
        ];
        for (field, kinds) in shorthand {
            if let Some(f) = field {
                ev.push((kinds, Some(f.get_ref().to_vec()), f.span()));
            }
        }
        if let Some(l) = &wr.location {
            if *l.get_ref() {
                ev.push((vec![EventType::Location], None, l.span()));
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
        let mut kinds_here: Vec<EventType> = Vec::new();
        if let Some((kinds, keys, span)) = ev.into_iter().next() {
            if user {
                self.sink.error_help(
                    span.clone(),
                    "a rule matches either user messages or events, not both",
                    "split it into two rules",
                );
            }
            let mut keys = keys;
            let subscribe = kinds.contains(&EventType::Subscribe);
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
            if kinds.contains(&EventType::Location) && keys.is_some() {
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
            if kinds_here.contains(&EventType::Subscribe) {
                rule.first_time = Some(*ft.get_ref());
            } else {
                self.sink.error(
                    ft.span(),
                    "`first_time` only applies to event = \"subscribe\"",
                );
            }
        }
        if let Some(p) = &wr.scan_result_prefix {
            if kinds_here.contains(&EventType::ScancodePush)
                || kinds_here.contains(&EventType::ScancodeWaitmsg)
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

    pub(super) fn window(&mut self, h: &S<RawHours>) -> Option<Window> {
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
}

#[cfg(test)]
mod tests {
    use crate::rules::compile::testing::{assert_one_has, errors, rules};
    use crate::wechat::names::{EventType, MsgType};

    fn rule(when: &str) -> String {
        format!("[[rule]]\nname = \"r\"\nwhen = {{ {when} }}\nreply = {{ text = \"ok\" }}\n")
    }

    #[test]
    fn keywords_are_indexed_normalised_and_remembered_as_written() {
        let rs = rules(&rule("exact = [\"  ＰＲＩＣＥ \"], prefix = [\"Buy\"]"));
        let hits = rs
            .index
            .exact
            .get("price")
            .expect("normalised exact keyword");
        assert_eq!(hits, &vec![(0, "ＰＲＩＣＥ".to_string())]);
        assert_eq!(rs.index.ac_pats.len(), 1);
    }

    #[test]
    fn event_shorthands_fill_the_event_buckets() {
        let rs = rules(&rule("click = \"ABOUT\""));
        let click = rs
            .index
            .events
            .get(&EventType::Click)
            .expect("click bucket");
        assert_eq!(click.by_key.get("ABOUT"), Some(&vec![0]));
        let rs = rules(&rule("scancode = [\"S1\"]"));
        for kind in [EventType::ScancodePush, EventType::ScancodeWaitmsg] {
            let b = rs.index.events.get(&kind).expect("scancode bucket");
            assert_eq!(b.by_key.get("S1"), Some(&vec![0]), "{kind:?}");
        }
        let rs = rules(&rule("location = true"));
        let b = rs.index.events.get(&EventType::Location).expect("location");
        assert_eq!(b.any, vec![0]);
    }

    #[test]
    fn event_names_are_read_from_the_table_in_any_case() {
        for name in EventType::rules_names() {
            let upper = name.to_ascii_uppercase();
            let key = if name == "subscribe" || name == "location" {
                String::new()
            } else {
                ", key = \"K\"".to_string()
            };
            let rs = rules(&rule(&format!("event = \"{upper}\"{key}")));
            assert_eq!(rs.index.events.len(), 1, "{name}");
        }
    }

    #[test]
    fn an_unknown_event_gets_a_did_you_mean_from_the_table() {
        let e = errors(&rule("event = \"clik\", key = \"A\""));
        assert_one_has(
            &e,
            &[
                "unknown event `clik`",
                "did you mean `click`?",
                "view_miniprogram",
            ],
        );
        let e = errors(&rule("event = \"unsubscribe\""));
        assert_one_has(
            &e,
            &["unknown event `unsubscribe`", "Allowed: subscribe, scan"],
        );
    }

    #[test]
    fn msg_type_names_come_from_the_table_and_stay_case_sensitive() {
        let rs = rules(&rule("msg_type = [\"image\", \"shortvideo\"]"));
        assert!(rs.index.msg_type.contains_key(&MsgType::Image));
        assert!(rs.index.msg_type.contains_key(&MsgType::ShortVideo));
        let e = errors(&rule("msg_type = \"Imag\""));
        assert_one_has(
            &e,
            &["unknown msg_type `Imag`", "Allowed: text, image, voice"],
        );
        let e = errors(&rule("msg_type = \"event\""));
        assert_one_has(&e, &["unknown msg_type `event`"]);
    }

    #[test]
    fn conditions_that_do_not_fit_the_trigger_are_refused() {
        let e = errors(&rule("exact = [\"x\"], first_time = true"));
        assert_one_has(&e, &["`first_time` only applies to event = \"subscribe\""]);
        let e = errors(&rule("click = \"A\", scan_result_prefix = \"http\""));
        assert_one_has(
            &e,
            &["`scan_result_prefix` only applies to scancode events"],
        );
        let e = errors(&rule("exact = [\"x\"], click = \"A\""));
        assert_one_has(
            &e,
            &["either user messages or events", "split it into two rules"],
        );
        let e = errors(&rule("click = \"A\", scan = \"B\""));
        assert_one_has(&e, &["a rule names one event"]);
    }

    #[test]
    fn a_bad_time_window_points_at_the_field() {
        let src = rule(
            "exact = [\"x\"], hours = { days = \"mon-fri\", from = \"25:00\", to = \"18:00\" }",
        );
        let line = src.lines().nth(2).unwrap_or("");
        let column = line.find("\"25:00\"").map_or(0, |c| c + 1);
        assert_one_has(&errors(&src), &[&format!("3:{column} "), "bad time window"]);
        let rs = rules(&rule(
            "exact = [\"x\"], hours = { days = \"mon-fri\", from = \"09:00\", to = \"18:00\" }",
        ));
        assert!(rs.rules[0].window.is_some());
    }

    #[test]
    fn a_bad_regex_is_refused_with_the_reason() {
        let e = errors(&rule("regex = [\"(unclosed\"]"));
        assert_one_has(&e, &["bad regex `(unclosed`", "Rust `regex` syntax"]);
    }
}
