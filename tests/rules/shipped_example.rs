//! The shipped `keywords.toml`: what a new operator starts from loads cleanly and does what it says.

use super::*;

#[test]
fn shipped_keywords_toml_passes_check_without_warnings() {
    let path = manifest().join("keywords.toml");
    let mut out = Vec::new();
    let code = cli::check(&path, &no_grants(), &mut out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("warning"), "{text}");
    assert!(text.starts_with("ok: "), "{text}");
    assert!(text.contains("menu with 3 buttons"), "{text}");
}

#[test]
fn shipped_keywords_toml_routes_the_advertised_keywords() {
    let loaded = RuleSet::load(&manifest().join("keywords.toml")).expect("loads");
    let rs = loaded.rules;
    assert_eq!(winner(&route(&rs, &text("价格"))), "price");
    assert_eq!(winner(&route(&rs, &text("有优惠吗"))), "discount");
    assert_eq!(winner(&route(&rs, &text("想学 Rust"))), "rust-article");
    assert_eq!(winner(&route(&rs, &text("人工"))), "human");
    assert_eq!(winner(&route(&rs, &text("订单 123456"))), "order-status");
    assert_eq!(
        reply_text(&route(&rs, &text("订单 123456"))),
        "订单 123456 已收到，我们会在 24 小时内核对后回复你。"
    );
    assert_eq!(winner(&route(&rs, &text("随便说点什么"))), "fallback");
    assert!(reply_text(&route(&rs, &text("随便说点什么"))).contains("「随便说点什么」"));
    let mut s = Sub::new();
    s.first_time = true;
    let d = rs.route(&subscribe(Some("course2026")), &s.view(), friday_morning());
    assert_eq!(winner(&d), "welcome-course-qr");
    assert_eq!(d.add_tags, vec!["from-course-qr".to_string()]);
    let d = rs.route(&subscribe(None), &s.view(), friday_morning());
    assert_eq!(winner(&d), "welcome");
    assert!(
        reply_text(&d).contains("今天是 2026-11-20"),
        "{}",
        reply_text(&d)
    );
    assert!(rs.is_exit_keyword(" 结束 "));
    assert_eq!(rs.handoff().idle_timeout_minutes, 30);
    assert!(rs.article("rust-101").is_some());
}
