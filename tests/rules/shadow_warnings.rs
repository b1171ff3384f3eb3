//! Rules and keywords that can never fire are pointed out (warnings; the rules still load).

use super::*;

#[test]
fn shadowed_rules_and_keywords_are_warned_about() {
    let loaded = RuleSet::load(&fixtures().join("shadowed.toml")).expect("warnings only");
    let w: Vec<String> = loaded
        .warnings
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    assert!(loaded
        .warnings
        .iter()
        .all(|d| d.severity == Severity::Warning));
    assert!(
        w.iter()
            .any(|m| m.starts_with("7:8 rule `exact-price` can never fire")
                && m.contains("`anything-about-price`")),
        "{w:#?}"
    );
    // Only one of hello-world's keywords is shadowed: the warning is on that keyword.
    assert!(
        w.iter().any(
            |m| m.starts_with("18:19 this keyword of rule `hello-world` never matches")
                && m.contains("prefix \"hello\"")
        ),
        "{w:#?}"
    );
    assert!(!w.iter().any(|m| m.contains("timed-other")), "{w:#?}");
    assert_eq!(w.len(), 2, "{w:#?}");
    let mut out = Vec::new();
    assert_eq!(
        cli::check(&fixtures().join("shadowed.toml"), &no_grants(), &mut out),
        0
    );
    assert!(String::from_utf8_lossy(&out).contains(": warning: "));
}

#[test]
fn catch_all_shadows_later_message_rules() {
    let res = RuleSet::from_source(
        r#"
        [[rule]]
        name = "everything"
        when = { any = true }
        reply = { text = "x" }
        [[rule]]
        name = "later"
        when = { exact = ["hi"] }
        reply = { text = "y" }
        [[rule]]
        name = "click"
        when = { click = "A" }
        reply = { text = "events are unaffected" }
        "#,
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect("loads");
    let w: Vec<&str> = res.warnings.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("rule `later` can never fire"), "{w:#?}");
}

#[test]
fn event_rules_shadowed_by_an_earlier_unconditional_rule_are_warned_about() {
    let loaded = RuleSet::from_source(
        r#"
        [[rule]]
        name = "about"
        when = { click = "ABOUT" }
        reply = { text = "a" }
        [[rule]]
        name = "about-again"
        when = { click = "ABOUT" }
        reply = { text = "never" }
        [[rule]]
        name = "welcome-new"
        when = { event = "subscribe", first_time = true }
        reply = { text = "conditional: does not shadow" }
        [[rule]]
        name = "welcome"
        when = { event = "subscribe" }
        reply = { text = "w" }
        [[rule]]
        name = "welcome-qr"
        when = { event = "subscribe", channel = ["qr"] }
        reply = { text = "never" }
        "#,
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect("loads");
    let w: Vec<&str> = loaded.warnings.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("rule `about-again` can never fire"),
        "{w:#?}"
    );
    assert!(
        w[1].starts_with("rule `welcome-qr` can never fire"),
        "{w:#?}"
    );
}
