//! An operator makes mistakes: every error reported at once, with a position and a fix.

use super::*;

/// Each broken file: (file, line:column, message substring, help substring).
const BROKEN: &[(&str, &str, &str, &str)] = &[
    (
        "unknown_field.toml",
        "4:1",
        "unknown field `replly`",
        "did you mean `reply`?",
    ),
    (
        "unknown_reply_kind.toml",
        "4:11",
        "unknown reply kind `txt`",
        "did you mean `text`?",
    ),
    ("syntax_error.toml", "2:14", "invalid basic string", ""),
    (
        "bad_regex.toml",
        "3:19",
        "bad regex `^order(\\d+$`",
        "regex",
    ),
    (
        "missing_template.toml",
        "4:22",
        "template file `nope.txt` not found",
        "create",
    ),
    (
        "inline_undefined_var.toml",
        "4:18",
        "template error",
        "variables: openid",
    ),
    (
        "unknown_article.toml",
        "4:11",
        "unknown article id `rust-10`",
        "did you mean `rust-101`?",
    ),
    (
        "duplicate_rule.toml",
        "7:8",
        "duplicate rule name `hello`",
        "line 2",
    ),
    (
        "duplicate_article.toml",
        "7:6",
        "duplicate article id `a`",
        "",
    ),
    (
        "two_fallbacks.toml",
        "8:12",
        "two fallback rules",
        "at most one",
    ),
    (
        "bad_window.toml",
        "3:61",
        "bad time window: bad time `25:00`",
        "hours = {",
    ),
    ("bad_days.toml", "3:43", "bad day list `mon-fry`", ""),
    (
        "unknown_timezone.toml",
        "2:12",
        "unknown time zone `Asia/Shanghia`",
        "IANA",
    ),
    (
        "menu_too_many_buttons.toml",
        "16:1",
        "4 top-level buttons",
        "sub_button",
    ),
    ("menu_too_many_sub_buttons.toml", "9:3", "6 sub-buttons", ""),
    ("menu_name_too_long.toml", "3:8", "36 bytes", "3 bytes"),
    (
        "menu_view_without_url.toml",
        "5:8",
        "`view` button `官网` needs `url`",
        "",
    ),
    ("menu_bad_url.toml", "4:7", "not http(s)", "https://"),
    (
        "menu_miniprogram_incomplete.toml",
        "2:8",
        "needs `pagepath`",
        "",
    ),
    (
        "handoff_without_config.toml",
        "4:11",
        "no [handoff] section",
        "exit_keywords",
    ),
    (
        "unknown_event.toml",
        "3:18",
        "unknown event `subscribed`",
        "did you mean `subscribe`?",
    ),
    (
        "reply_with_two_kinds.toml",
        "4:9",
        "a reply names exactly one kind",
        "replies = [...]",
    ),
    (
        "price_too_many_decimals.toml",
        "5:9",
        "price \"19.999\" has more than two decimals",
        "write it in yuan like \"19.90\"",
    ),
    (
        "price_zero.toml",
        "5:9",
        "price \"0\" is zero",
        "has no `price`",
    ),
    (
        "price_negative.toml",
        "5:9",
        "price \"-5\" is negative",
        "more than zero",
    ),
    (
        "price_not_a_number.toml",
        "5:9",
        "price \"九块九\" is not a number",
        "\"19.90\"",
    ),
    (
        "price_too_large.toml",
        "5:9",
        "price \"1990000.00\" is more than 1,000,000 yuan",
        "yuan, not fen",
    ),
    (
        "description_too_long.toml",
        "6:15",
        "description has 128 characters, more than 127",
        "shorten it",
    ),
    (
        "title_too_long_for_sale.toml",
        "1:1",
        "article `long` is for sale and its title (128 characters) cannot be the order description",
        "add description = ",
    ),
];

#[test]
fn broken_files_report_position_message_and_help() {
    let mut failures = Vec::new();
    for (file, at, msg, help) in BROKEN {
        let path = fixtures().join(file);
        let err = match RuleSet::load(&path) {
            Ok(_) => {
                failures.push(format!("{file}: loaded without error"));
                continue;
            }
            Err(e) => e,
        };
        let (line, col) = at.split_once(':').expect("line:col");
        let hit = err.0.iter().find(|d| {
            d.severity == Severity::Error
                && format!("{}:{}", d.line, d.column) == *at
                && d.message.contains(msg)
                && d.help.as_deref().unwrap_or("").contains(help)
        });
        if hit.is_none() {
            failures.push(format!(
                "{file}: expected {line}:{col} `{msg}` / help `{help}`, got:\n{err}"
            ));
        }
        // The printed form is what operators see.
        let printed = err.to_string();
        let prefix = format!("{}:{at}: error: ", path.display());
        if !printed.contains(&prefix) {
            failures.push(format!("{file}: printed form lacks `{prefix}`:\n{printed}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn template_file_errors_point_into_the_template() {
    let err = RuleSet::load(&fixtures().join("template_file_syntax.toml")).expect_err("broken");
    let d = err
        .0
        .iter()
        .find(|d| d.file.ends_with("templates/broken.txt"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("template error"), "{}", d.message);
    assert!(
        d.line >= 2,
        "block opened on line 2, reported line {}",
        d.line
    );
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let err = RuleSet::load(&fixtures().join("many_errors.toml")).expect_err("broken");
    let msgs: Vec<String> = err
        .0
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    let want = [
        "2:12 unknown time zone `Mars/Olympus`",
        "6:19 bad regex",
        "10:8 duplicate rule name `a`",
        "12:22 template file `missing.txt` not found",
    ];
    for w in want {
        assert!(
            msgs.iter().any(|m| m.starts_with(w)),
            "missing `{w}` in {msgs:#?}"
        );
    }
}

#[test]
fn every_unknown_field_is_reported_not_just_the_first() {
    let err = RuleSet::load(&fixtures().join("several_unknown_fields.toml")).expect_err("broken");
    let got: Vec<String> = err
        .0
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    let want = [
        "4:1 unknown field `replly`",
        "8:1 unknown field `whenn`",
        "13:1 unknown field `titel`",
        "17:1 unknown field `colour`",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing `{w}` in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}
