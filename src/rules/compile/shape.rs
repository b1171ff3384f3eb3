//! Shape errors: when serde cannot read the file into the raw mirror, every wrong table is
//! still reported at once, each with its position and, for unknown names, a did-you-mean.
//!
//! Owns re-parsing each `[[rule]]`/`[[article]]` alone over a masked copy of the file, and the
//! translation of toml/serde messages into [`crate::rules::Diagnostic`]s. May depend on:
//! [`crate::rules::raw`], [`crate::rules::diag`], toml, serde.

use std::ops::Range;

use crate::rules::diag::{allowed_help, Sink};
use crate::rules::raw::S;

/// serde stops at the first error; to report every shape error at once, each `[[rule]]` and
/// `[[article]]` table is re-parsed alone, with the rest of the file blanked out byte for byte
/// so positions stay those of the original file. The original error is always reported.
pub(super) fn shape_errors(src: &str, sink: &mut Sink<'_>, first: &toml::de::Error) {
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
        rule: Vec<crate::rules::raw::RawRule>,
    }
    #[derive(Deserialize)]
    struct OnlyArticles {
        #[allow(dead_code)]
        article: Vec<crate::rules::raw::RawArticle>,
    }
    /// Everything but rules and articles, still strict.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rest {
        account: Option<crate::rules::raw::RawAccount>,
        handoff: Option<crate::rules::raw::RawHandoffSettings>,
        menu: Option<crate::rules::raw::RawMenu>,
        reload: Option<crate::rules::raw::RawReload>,
        assistant: Option<crate::rules::raw::RawAssistantSettings>,
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

#[cfg(test)]
mod tests {
    use super::mask_bytes;
    use crate::rules::compile::testing::{assert_one_has, errors};

    #[test]
    fn masking_keeps_offsets_newlines_and_utf8() {
        let src = "a = \"名\"\n[x]\nb = 1\n";
        let keep = src.find("[x]").unwrap_or(0)..src.len();
        let masked = mask_bytes(src, keep.clone());
        assert_eq!(masked.len(), src.len());
        assert_eq!(&masked[keep.clone()], &src[keep]);
        assert_eq!(masked.matches('\n').count(), 3);
        assert!(masked.starts_with("   "), "{masked:?}");
    }

    #[test]
    fn a_typo_in_two_rules_is_reported_twice_with_did_you_mean() {
        let e = errors(
            "[[rule]]\nname = \"a\"\nwehn = { exact = [\"x\"] }\nreply = { text = \"1\" }\n\n\
             [[rule]]\nname = \"b\"\nwhen = { exact = [\"y\"] }\nrepyl = { text = \"2\" }\n",
        );
        assert_one_has(&e, &["3:1", "unknown field `wehn`", "did you mean `when`?"]);
        assert_one_has(
            &e,
            &["9:1", "unknown field `repyl`", "did you mean `reply`?"],
        );
    }

    #[test]
    fn a_shape_error_in_a_rule_does_not_make_reload_or_assistant_unknown() {
        let e = errors(
            "[reload]\nallow_empty = true\n\n[assistant]\nquota_reply = \"明天见\"\n\n\
             [[rule]]\nname = \"a\"\nwehn = { exact = [\"x\"] }\nreply = { text = \"1\" }\n",
        );
        assert_one_has(&e, &["9:1", "unknown field `wehn`"]);
        assert_eq!(e.len(), 1, "{e:#?}");
    }

    #[test]
    fn an_unknown_reply_kind_says_so() {
        let e =
            errors("[[rule]]\nname = \"a\"\nwhen = { exact = [\"x\"] }\nreply = { txt = \"1\" }\n");
        assert_one_has(&e, &["unknown reply kind `txt`", "did you mean `text`?"]);
    }

    #[test]
    fn a_reply_naming_two_kinds_is_explained() {
        let e = errors(
            "[[rule]]\nname = \"a\"\nwhen = { exact = [\"x\"] }\nreply = { text = \"1\", image = \"m\" }\n",
        );
        assert_one_has(&e, &["a reply names exactly one kind"]);
    }
}
