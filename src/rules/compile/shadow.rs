//! "This rule can never fire": warnings for rules and keywords that an earlier, unconditional
//! rule always beats.
//!
//! Owns [`Triggers`] (what the analysis needs to know about each rule's `when`, filled in by
//! `triggers.rs`) and the analysis itself, which probes the routing [`Index`] rather than
//! comparing rules pairwise, so it stays fast at 10,000 rules. Warnings only: nothing here stops
//! a load. May depend on: [`crate::rules::model`], [`crate::rules::diag`].

use std::ops::Range;

use crate::rules::diag::Sink;
use crate::rules::model::{Index, PatKind, Rule};
use crate::wechat::names::EventType;

/// What the never-fires analysis needs to know about one rule's triggers.
#[derive(Default)]
pub(super) struct Triggers {
    pub name_span: Range<usize>,
    pub unconditional: bool,
    pub exact: Vec<(String, Range<usize>)>,
    pub prefix: Vec<(String, Range<usize>)>,
    pub contains: Vec<(String, Range<usize>)>,
    /// Regex or msg_type triggers: not analysed, so the rule may still fire through them.
    pub other: bool,
    pub any: bool,
    pub events: Vec<(EventType, Option<String>)>,
    pub fallback: bool,
}

/// Warnings for keywords and rules that can never fire because an earlier, unconditional rule
/// always wins. Uses the routing indexes themselves, so it stays fast at 10,000 rules.
pub(super) fn shadow_warnings(sink: &mut Sink<'_>, trig: &[Triggers], rules: &[Rule], ix: &Index) {
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

#[cfg(test)]
mod tests {
    use crate::rules::compile::testing::{assert_one_has, warnings};

    fn rule(name: &str, when: &str) -> String {
        format!(
            "[[rule]]\nname = \"{name}\"\nwhen = {{ {when} }}\nreply = {{ text = \"{name}\" }}\n\n"
        )
    }

    #[test]
    fn an_exact_keyword_caught_by_an_earlier_contains_is_warned_about() {
        let src = rule("early", "contains = [\"价格\"]") + &rule("late", "exact = [\"价格多少\"]");
        assert_one_has(
            &warnings(&src),
            &[
                "rule `late` can never fire",
                "`early` with contains \"价格\"",
            ],
        );
    }

    #[test]
    fn only_the_caught_keyword_is_warned_about_when_others_still_match() {
        let src = rule("early", "exact = [\"hi\"]") + &rule("late", "exact = [\"hi\", \"hello\"]");
        assert_one_has(
            &warnings(&src),
            &[
                "this keyword of rule `late` never matches",
                "the same exact keyword \"hi\"",
            ],
        );
    }

    #[test]
    fn an_earlier_rule_with_office_hours_shadows_nothing() {
        let src = rule(
            "early",
            "exact = [\"hi\"], hours = { days = \"mon-fri\", from = \"09:00\", to = \"18:00\" }",
        ) + &rule("late", "exact = [\"hi\"]");
        assert_eq!(warnings(&src), Vec::<String>::new());
    }

    #[test]
    fn a_prefix_does_not_shadow_a_contains_keyword() {
        let src = rule("early", "prefix = [\"买\"]") + &rule("late", "contains = [\"买\"]");
        assert_eq!(warnings(&src), Vec::<String>::new());
    }

    #[test]
    fn a_catch_all_shadows_the_fallback_and_an_event_rule_its_twin() {
        let src = rule("all", "any = true")
            + "[[rule]]\nname = \"fb\"\nfallback = true\nreply = { text = \"?\" }\n\n"
            + &rule("c1", "click = \"A\"")
            + &rule("c2", "click = \"A\"");
        let w = warnings(&src);
        assert_one_has(
            &w,
            &["rule `fb` can never fire", "`all` matches every message"],
        );
        assert_one_has(&w, &["rule `c2` can never fire", "handles the same event"]);
    }
}
