//! What a winning rule does: reply kinds, random replies, tags, articles, hand-offs, templates.

use super::*;

#[test]
fn random_replies_pick_from_the_set() {
    let rs = rules(
        r#"
        [[rule]]
        name = "greet"
        when = { exact = ["hi"] }
        replies = [ { text = "one" }, { text = "two" }, { text = "three" } ]
        "#,
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let d = route(&rs, &text("hi"));
        let t = reply_text(&d).to_string();
        assert!(["one", "two", "three"].contains(&t.as_str()), "{t}");
        seen.insert(t);
    }
    // Each miss has probability (2/3)^300: all three show up.
    assert_eq!(seen.len(), 3);
}

#[test]
fn tags_with_and_without_reply() {
    let rs = rules(
        r#"
        [[rule]]
        name = "tag-and-reply"
        when = { contains = ["vip"] }
        reply = { text = "welcome vip {{ tags|join(',') }}" }
        tag = ["vip", "asked"]
        [[rule]]
        name = "tag-only"
        when = { contains = ["newsletter"] }
        tag = "newsletter"
        "#,
    );
    let mut s = Sub::new();
    s.tags = vec!["old".into()];
    let d = rs.route(&text("I am VIP"), &s.view(), friday_morning());
    assert_eq!(d.add_tags, vec!["vip".to_string(), "asked".to_string()]);
    assert_eq!(reply_text(&d), "welcome vip old");
    let d = route(&rs, &text("newsletter please"));
    assert_eq!((winner(&d), &d.reply), ("tag-only", &Reply::None));
    assert_eq!(d.add_tags, vec!["newsletter".to_string()]);
}

#[test]
fn article_and_handoff_are_special_actions() {
    let rs = rules(
        r#"
        [[rule]]
        name = "rust"
        when = { contains = ["rust"] }
        article = "rust-101"
        [[rule]]
        name = "human"
        when = { exact = ["人工"] }
        handoff = { kf_account = "alice@gh_x", notice = "转接中 {{ openid }}", hours = { days = "mon-sat", from = "09:00", to = "21:00" }, offline = "下班了" }
        [[article]]
        id = "rust-101"
        title = "Rust"
        body_url = "https://example.com/rust"
        [handoff]
        exit_keywords = ["结束"]
        idle_timeout_minutes = 15
        "#,
    );
    let d = route(&rs, &text("learn Rust"));
    assert_eq!(d.reply, Reply::None);
    assert_eq!(
        d.special,
        Some(Special::Article {
            id: "rust-101".into()
        })
    );
    let d = route_at(&rs, &text("人工"), sh(2026, 11, 20, 10, 0));
    let Some(Special::Handoff(h)) = d.special else {
        panic!("expected handoff, got {:?}", d.special)
    };
    assert_eq!(h.kf_account.as_deref(), Some("alice@gh_x"));
    assert_eq!(h.notice.as_deref(), Some("转接中 o_user_1"));
    assert!(h.in_hours);
    assert_eq!(h.offline.as_deref(), Some("下班了"));
    let d = route_at(&rs, &text("人工"), sh(2026, 11, 22, 10, 0)); // Sunday
    assert!(matches!(d.special, Some(Special::Handoff(ref h)) if !h.in_hours));
    assert_eq!(rs.handoff().idle_timeout_minutes, 15);
    assert!(rs.is_exit_keyword("結束") || rs.is_exit_keyword("结束"));
}

#[test]
fn every_reply_kind_compiles_and_renders() {
    let rs = rules(
        r#"
        [[rule]]
        name = "image"
        when = { exact = ["image"] }
        reply = { image = "MEDIA_I" }
        [[rule]]
        name = "voice"
        when = { exact = ["voice"] }
        reply = { voice = "MEDIA_V" }
        [[rule]]
        name = "video"
        when = { exact = ["video"] }
        reply = { video = { media_id = "MEDIA_VID", title = "T" } }
        [[rule]]
        name = "music"
        when = { exact = ["music"] }
        reply = { music = { title = "song", music_url = "https://m/1.mp3", thumb_media_id = "TH" } }
        [[rule]]
        name = "news"
        when = { exact = ["news"] }
        reply = { news = [ { title = "Hi {{ keyword }}", description = "d", pic_url = "https://p/1.jpg", url = "https://u/1" } ] }
        [[rule]]
        name = "transfer"
        when = { exact = ["transfer"] }
        reply = { transfer = { kf_account = "bob@gh_x" } }
        "#,
    );
    assert_eq!(
        route(&rs, &text("image")).reply,
        Reply::Image {
            media_id: "MEDIA_I".into()
        }
    );
    assert_eq!(
        route(&rs, &text("voice")).reply,
        Reply::Voice {
            media_id: "MEDIA_V".into()
        }
    );
    assert!(
        matches!(route(&rs, &text("video")).reply, Reply::Video { ref media_id, .. } if media_id == "MEDIA_VID")
    );
    assert!(
        matches!(route(&rs, &text("music")).reply, Reply::Music { ref thumb_media_id, .. } if thumb_media_id == "TH")
    );
    match route(&rs, &text("news")).reply {
        Reply::News { articles } => assert_eq!(articles[0].title, "Hi news"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        route(&rs, &text("transfer")).reply,
        Reply::TransferCustomerService {
            kf_account: Some("bob@gh_x".into())
        }
    );
}

#[test]
fn file_templates_are_rendered_from_the_templates_dir() {
    let path = fixtures().join("valid_with_template.toml");
    let rs = RuleSet::load(&path).expect("loads").rules;
    let d = route(&rs, &text("hello"));
    // minijinja drops the one trailing newline every text editor adds.
    assert_eq!(reply_text(&d), "hello o_user_1");
    assert_eq!(rs.version().len(), 12);
}

#[test]
fn news_replies_are_limited_to_eight_items() {
    let items = (0..9)
        .map(|i| format!("{{ title = \"t{i}\", url = \"https://e/{i}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let src = format!(
        "[[rule]]\nname = \"n\"\nwhen = {{ exact = [\"n\"] }}\nreply = {{ news = [ {items} ] }}\n"
    );
    let err =
        RuleSet::from_source(&src, Path::new("/nonexistent/keywords.toml")).expect_err("9 items");
    assert!(
        err.to_string()
            .contains("news reply has 9 items; the platform allows 1 to 8"),
        "{err}"
    );
}
