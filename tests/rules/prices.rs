//! An operator prices an article in yuan, the way they would write it anywhere else; mpgate
//! holds it as fen and shows it one way everywhere.

use super::*;

/// One article with `extra` lines added to its table.
fn article_with(extra: &str) -> String {
    format!(
        "[[article]]\nid = \"guide\"\ntitle = \"Rust 入门\"\nbody_url = \"https://example.com/guide\"\n{extra}\n"
    )
}

fn guide(extra: &str) -> mpgate::rules::ArticleDef {
    let rs = rules(&article_with(extra));
    rs.article("guide").expect("the article loads").clone()
}

#[test]
fn every_price_form_operators_write_is_read_as_fen_and_shown_with_two_decimals() {
    for (written, fen, shown) in [
        ("19.90", 1990, "¥19.90"),
        ("19.9", 1990, "¥19.90"),
        ("¥9.9", 990, "¥9.90"),
        ("￥29", 2900, "¥29.00"),
        ("29元", 2900, "¥29.00"),
        ("29", 2900, "¥29.00"),
        ("0.01", 1, "¥0.01"),
        ("1000000", 100_000_000, "¥1000000.00"),
    ] {
        let a = guide(&format!("price = \"{written}\""));
        assert_eq!(a.price_fen, Some(fen), "price = \"{written}\"");
        assert_eq!(a.price, shown, "price = \"{written}\"");
    }
}

#[test]
fn an_article_without_a_price_is_grant_only_and_shows_no_price() {
    let a = guide("");
    assert_eq!(a.price_fen, None);
    assert_eq!(a.price, "");
}

#[test]
fn the_order_description_defaults_to_the_title_and_can_be_set() {
    let a = guide("price = \"19.90\"");
    assert_eq!(a.description, None);
    assert_eq!(a.order_description(), "Rust 入门");
    let a = guide("price = \"19.90\"\ndescription = \"  码农成长营 · Rust 入门  \"");
    assert_eq!(a.description.as_deref(), Some("码农成长营 · Rust 入门"));
    assert_eq!(a.order_description(), "码农成长营 · Rust 入门");
    let exactly_max = "长".repeat(127);
    let a = guide(&format!("price = \"1\"\ndescription = \"{exactly_max}\""));
    assert_eq!(a.order_description(), exactly_max);
}

#[test]
fn a_description_on_an_article_not_for_sale_is_a_warning_not_an_error() {
    let loaded = RuleSet::from_source(
        &article_with("description = \"x\""),
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect("loads");
    let w: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    assert!(
        w.iter()
            .any(|m| m
                .contains("5:15: warning: description is only used for an article with a `price`")),
        "{w:#?}"
    );
}

#[test]
fn check_reports_every_bad_price_at_once_with_its_position() {
    let src = "[[article]]\nid = \"a\"\ntitle = \"A\"\nbody_url = \"https://example.com/a\"\nprice = \"19.999\"\n\n\
               [[article]]\nid = \"b\"\ntitle = \"B\"\nbody_url = \"https://example.com/b\"\nprice = \"-1\"\n";
    let err = RuleSet::from_source(src, Path::new("/nonexistent/keywords.toml"))
        .expect_err("two bad prices");
    let printed = err.to_string();
    assert!(
        printed.contains("keywords.toml:5:9: error: price \"19.999\" has more than two decimals\n  help: write it in yuan like \"19.90\""),
        "{printed}"
    );
    assert!(
        printed.contains("keywords.toml:11:9: error: price \"-1\" is negative"),
        "{printed}"
    );
}

#[test]
fn a_price_written_as_a_toml_number_is_refused_at_its_position() {
    let err = RuleSet::from_source(
        &article_with("price = 19.9"),
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect_err("a float price");
    let printed = err.to_string();
    assert!(
        printed.contains(
            "keywords.toml:5:9: error: price 19.9 is a number; write it as a string in yuan, like price = \"19.9\""
        ),
        "{printed}"
    );
    let err = RuleSet::from_source(
        &article_with("price = 29"),
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect_err("an integer price");
    assert!(err.to_string().contains("like price = \"29\""), "{err}");
}

#[test]
fn the_shipped_articles_are_for_sale_at_their_advertised_prices() {
    let rs = RuleSet::load(&manifest().join("keywords.toml"))
        .expect("loads")
        .rules;
    let fen = |id: &str| rs.article(id).and_then(|a| a.price_fen);
    assert_eq!(fen("rust-101"), Some(990));
    assert_eq!(fen("go-concurrency"), Some(1990));
    assert_eq!(fen("career-map"), Some(2900));
    assert_eq!(
        rs.article("go-concurrency").map(|a| a.order_description()),
        Some("Go 并发模式实战")
    );
}
