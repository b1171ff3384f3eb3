//! The routing index, built: triggers go in one by one, [`Index`] comes out with one
//! Aho-Corasick automaton for every prefix/contains keyword and one `RegexSet` for every regex.
//!
//! Owns the shapes' construction limits (regex set sizes) and the keyword de-duplication in the
//! automaton. May depend on: [`crate::rules::model`], [`crate::wechat::names`], aho-corasick,
//! regex.

use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use regex::Regex;

use crate::rules::model::{Bucket, Index, Map, PatKind};
use crate::wechat::names::{EventType, MsgType};

/// Accumulates triggers during compilation.
#[derive(Default)]
pub(super) struct IndexBuilder {
    exact: Map<String, Vec<(u32, String)>>,
    ac_strings: Vec<String>,
    ac_lookup: HashMap<String, usize>,
    ac_pats: Vec<Vec<(u32, PatKind, String)>>,
    regexes: Vec<(u32, Regex)>,
    msg_type: Map<MsgType, Vec<u32>>,
    any: Vec<u32>,
    events: Map<EventType, Bucket>,
    pub fallback: Option<u32>,
}

impl IndexBuilder {
    pub(super) fn exact(&mut self, rule: u32, norm: String, written: String) {
        self.exact.entry(norm).or_default().push((rule, written));
    }

    pub(super) fn pattern(&mut self, rule: u32, kind: PatKind, norm: String, written: String) {
        let id = match self.ac_lookup.get(&norm) {
            Some(&id) => id,
            None => {
                let id = self.ac_strings.len();
                self.ac_strings.push(norm.clone());
                self.ac_lookup.insert(norm, id);
                self.ac_pats.push(Vec::new());
                id
            }
        };
        self.ac_pats[id].push((rule, kind, written));
    }

    pub(super) fn regex(&mut self, rule: u32, re: Regex) {
        self.regexes.push((rule, re));
    }

    pub(super) fn msg_type(&mut self, rule: u32, kind: MsgType) {
        self.msg_type.entry(kind).or_default().push(rule);
    }

    pub(super) fn any(&mut self, rule: u32) {
        self.any.push(rule);
    }

    pub(super) fn event(&mut self, rule: u32, kind: EventType, key: Option<String>) {
        let b = self.events.entry(kind).or_default();
        match key {
            Some(k) => b.by_key.entry(k).or_default().push(rule),
            None => b.any.push(rule),
        }
    }

    pub(super) fn build(self) -> Result<Index, String> {
        let ac = if self.ac_strings.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&self.ac_strings).map_err(|e| e.to_string())?)
        };
        let regex_set = if self.regexes.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(self.regexes.iter().map(|(_, r)| r.as_str()))
                    .case_insensitive(true)
                    .size_limit(64 << 20)
                    .dfa_size_limit(16 << 20)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Index {
            exact: self.exact,
            ac,
            ac_pats: self.ac_pats,
            regex_set,
            regexes: self.regexes,
            msg_type: self.msg_type,
            any: self.any,
            events: self.events,
            fallback: self.fallback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::IndexBuilder;
    use crate::rules::model::PatKind;
    use crate::wechat::names::EventType;

    #[test]
    fn nothing_in_means_no_automaton_and_no_regex_set() {
        let ix = IndexBuilder::default().build().expect("builds");
        assert!(ix.ac.is_none());
        assert!(ix.regex_set.is_none());
        assert!(ix.exact.is_empty() && ix.events.is_empty() && ix.fallback.is_none());
    }

    #[test]
    fn one_keyword_used_by_two_rules_is_one_automaton_pattern() {
        let mut b = IndexBuilder::default();
        b.pattern(0, PatKind::Prefix, "价格".into(), "价格".into());
        b.pattern(3, PatKind::Contains, "价格".into(), "價格".into());
        b.pattern(4, PatKind::Contains, "优惠".into(), "优惠".into());
        let ix = b.build().expect("builds");
        assert_eq!(ix.ac_pats.len(), 2);
        assert_eq!(
            ix.ac_pats[0],
            vec![
                (0, PatKind::Prefix, "价格".to_string()),
                (3, PatKind::Contains, "價格".to_string())
            ]
        );
        let ac = ix.ac.expect("automaton");
        assert_eq!(ac.find_overlapping_iter("有优惠价格吗").count(), 2);
    }

    #[test]
    fn events_with_and_without_key_go_to_their_own_lists() {
        let mut b = IndexBuilder::default();
        b.event(1, EventType::Click, Some("ABOUT".into()));
        b.event(2, EventType::Click, None);
        let ix = b.build().expect("builds");
        let click = &ix.events[&EventType::Click];
        assert_eq!(click.by_key["ABOUT"], vec![1]);
        assert_eq!(click.any, vec![2]);
    }

    #[test]
    fn regexes_share_one_case_insensitive_set() {
        let mut b = IndexBuilder::default();
        b.regex(0, regex::Regex::new("^order-(\\d+)$").expect("regex"));
        let ix = b.build().expect("builds");
        let set = ix.regex_set.expect("set");
        assert!(set.is_match("ORDER-42"));
    }
}
