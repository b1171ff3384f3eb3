//! The operator's commands: `mpgate check`, `mpgate simulate`, `mpgate menu show`.

use super::*;

#[test]
fn check_prints_diagnostics_and_exits_1_on_errors() {
    let mut out = Vec::new();
    let code = cli::check(
        &fixtures().join("unknown_field.toml"),
        &no_grants(),
        &mut out,
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 1);
    assert!(text.contains("unknown_field.toml:4:1: error: unknown field `replly`\n  help: did you mean `reply`? Allowed: "), "{text}");
}

#[test]
fn menu_show_prints_the_menu_create_body() {
    let mut out = Vec::new();
    assert_eq!(
        cli::menu_show(&manifest().join("keywords.toml"), &mut out),
        0
    );
    let json = String::from_utf8(out).expect("utf8");
    assert!(json.starts_with("{\n  \"button\": ["), "{json}");
    // Non-ASCII stays readable, and keys come in the platform's order.
    assert!(json.contains("\"name\": \"训练营\""), "{json}");
    let i_type = json.find("\"type\": \"view\"").expect("type");
    let i_name = json.find("\"name\": \"2026 训练营\"").expect("name");
    let i_url = json
        .find("\"url\": \"https://mp.example.com/camp/2026\"")
        .expect("url");
    assert!(i_type < i_name && i_name < i_url, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert_eq!(v["button"].as_array().map(Vec::len), Some(3));
    let rs = RuleSet::load(&manifest().join("keywords.toml"))
        .expect("loads")
        .rules;
    assert_eq!(rs.menu_json(), Some(v));
}

#[test]
fn simulate_prints_rule_reason_tags_and_reply() {
    let path = manifest().join("keywords.toml");
    let mut out = Vec::new();
    let args = SimulateArgs {
        event: Some("subscribe".into()),
        scene: Some("course2026".into()),
        first_time: true,
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.contains(
            "matched: rule `welcome-course-qr` (subscribe via channel course2026 (first time))"
        ),
        "{s}"
    );
    assert!(s.contains("tags added: from-course-qr"), "{s}");
    assert!(s.contains("欢迎来到码农成长营 2026 训练营"), "{s}");

    let mut out = Vec::new();
    let args = SimulateArgs {
        text: Some("价格".into()),
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.contains("matched: rule `price` (exact keyword \"价格\")"),
        "{s}"
    );

    let mut out = Vec::new();
    let args = SimulateArgs {
        click: Some("NO_SUCH_KEY".into()),
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    assert!(String::from_utf8_lossy(&out).contains("matched: nothing"));
}

/// `mpgate simulate --event` takes every event name a rule can name (the names table), so an
/// operator can try each rule before it goes live; pic_* and view_miniprogram were sent as
/// unknown events before.
#[test]
fn simulate_reaches_a_rule_for_every_event_name_rules_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keywords.toml");
    let mut src = String::new();
    for name in EventType::rules_names() {
        let key = match name {
            "subscribe" | "location" => "",
            "scan" => ", key = \"S\"",
            _ => ", key = \"K\"",
        };
        src.push_str(&format!(
            "[[rule]]\nname = \"on-{name}\"\nwhen = {{ event = \"{name}\"{key} }}\nreply = {{ text = \"{name}\" }}\n\n"
        ));
    }
    std::fs::write(&path, src).expect("write rules");
    for name in EventType::rules_names() {
        let mut out = Vec::new();
        let args = SimulateArgs {
            event: Some(name.to_ascii_uppercase()),
            scene: Some("S".into()),
            click: Some("K".into()),
            ..SimulateArgs::default()
        };
        assert_eq!(cli::simulate(&path, &args, &mut out), 0, "{name}");
        let s = String::from_utf8_lossy(&out);
        assert!(
            s.contains(&format!("matched: rule `on-{name}`")),
            "{name}: {s}"
        );
    }
}

/// `mpgate check` on a file in a temp dir (with an empty templates dir); its output and code.
fn check_src(src: &str, grants: &cli::GrantsSeen) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    let path = dir.path().join("keywords.toml");
    std::fs::write(&path, src).expect("write");
    let mut out = Vec::new();
    let code = cli::check(&path, grants, &mut out);
    (code, String::from_utf8(out).expect("utf8"))
}

fn paid(pairs: &[(&str, usize)]) -> cli::GrantsSeen {
    cli::GrantsSeen::Known(pairs.iter().map(|(a, n)| (a.to_string(), *n)).collect())
}

const ONE_RULE: &str = r#"
[[rule]]
name = "hello"
when = { exact = ["hello"] }
reply = { text = "hi" }
"#;

#[test]
fn check_warns_that_an_empty_file_answers_nothing_unless_it_says_so() {
    for empty in ["", "[account]\ntimezone = \"Asia/Shanghai\"\n"] {
        let (code, text) = check_src(empty, &no_grants());
        assert_eq!(code, 0, "usable, with a warning: {text}");
        assert!(
            text.contains("keywords.toml: warning: the file has no rules and no articles"),
            "{text}"
        );
        assert!(
            text.contains("help: if that is meant, add `[reload]` with `allow_empty = true`"),
            "{text}"
        );
    }
    let (code, text) = check_src("[reload]\nallow_empty = true\n", &no_grants());
    assert_eq!(code, 0);
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn check_warns_about_an_article_subscribers_paid_for_that_the_file_no_longer_declares() {
    let (code, text) = check_src(ONE_RULE, &paid(&[("rust-101", 2)]));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: article `rust-101` is not declared but 2 subscribers hold active grants for it"),
        "{text}"
    );
    assert!(text.contains("confirm_remove = [\"rust-101\"]"), "{text}");

    // Confirmed in the file: no warning.
    let confirmed = format!("[reload]\nconfirm_remove = [\"rust-101\"]\n{ONE_RULE}");
    let (_, text) = check_src(&confirmed, &paid(&[("rust-101", 2)]));
    assert!(!text.contains("warning"), "{text}");

    // Still declared: no warning.
    let declared = format!(
        "{ONE_RULE}\n[[article]]\nid = \"rust-101\"\ntitle = \"Rust 101\"\nbody_url = \"https://example.com/r\"\n"
    );
    let (_, text) = check_src(&declared, &paid(&[("rust-101", 2)]));
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn check_says_when_it_could_not_look_at_the_grants() {
    let (code, text) = check_src(
        ONE_RULE,
        &cli::GrantsSeen::Skipped("the running server holds the data dir /srv/data".into()),
    );
    assert_eq!(code, 0);
    assert!(
        text.contains("note: active grants not checked against the articles: the running server holds the data dir /srv/data"),
        "{text}"
    );
    assert!(text.contains("ok: 1 rules"), "{text}");
}
