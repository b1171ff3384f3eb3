//! A subscriber writes something: which rule answers, and with which keyword.

use super::*;

#[test]
fn first_matching_rule_wins_in_file_order() {
    let rs = rules(
        r#"
        [[rule]]
        name = "broad"
        when = { contains = ["课"] }
        reply = { text = "broad" }
        [[rule]]
        name = "narrow"
        when = { exact = ["课程表"] }
        reply = { text = "narrow" }
        [[rule]]
        name = "other"
        when = { exact = ["目录"] }
        reply = { text = "other" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &text("课程表"))), "broad");
    assert_eq!(winner(&route(&rs, &text("目录"))), "other");
}

#[test]
fn text_is_normalised_nfkc_lowercase_trimmed() {
    let rs = rules(
        r#"
        [[rule]]
        name = "abc"
        when = { exact = ["ABC1"] }
        reply = { text = "ok" }
        [[rule]]
        name = "full-width-keyword"
        when = { exact = ["ｐｒｉｃｅ"] }
        reply = { text = "ok" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &text("  ａｂｃ１ \n"))), "abc");
    assert_eq!(winner(&route(&rs, &text("abc1"))), "abc");
    assert_eq!(winner(&route(&rs, &text("PRICE"))), "full-width-keyword");
    assert_eq!(route(&rs, &text("abc12")).rule, None);
}

#[test]
fn exact_prefix_contains_and_regex_differ() {
    let rs = rules(
        r#"
        [[rule]]
        name = "exact"
        when = { exact = ["hi"] }
        reply = { text = "exact" }
        [[rule]]
        name = "prefix"
        when = { prefix = ["help"] }
        reply = { text = "prefix" }
        [[rule]]
        name = "contains"
        when = { contains = ["price"] }
        reply = { text = "contains" }
        [[rule]]
        name = "regex"
        when = { regex = ['^(\d{3})-(?P<tail>\d+)$'] }
        reply = { text = "{{ captures[1] }}/{{ groups.tail }}/{{ keyword }}" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &text("hi"))), "exact");
    assert_eq!(route(&rs, &text("hi there")).rule, None);
    assert_eq!(winner(&route(&rs, &text("help me"))), "prefix");
    assert_eq!(route(&rs, &text("please help")).rule, None);
    assert_eq!(winner(&route(&rs, &text("what is the PRICE?"))), "contains");
    let d = route(&rs, &text("123-4567"));
    assert_eq!(winner(&d), "regex");
    assert_eq!(reply_text(&d), "123/4567/123-4567");
    assert!(d.why.to_string().starts_with("regex"), "{}", d.why);
    assert_eq!(route(&rs, &text("12-4567")).rule, None);
}

#[test]
fn regex_is_case_insensitive_over_normalised_text() {
    let rs = rules(
        r#"
        [[rule]]
        name = "order"
        when = { regex = ['^ORDER\s+(\d+)$'] }
        reply = { text = "No.{{ captures[1] }}" }
        "#,
    );
    let d = route(&rs, &text(" Ｏｒｄｅｒ ４２ "));
    assert_eq!(winner(&d), "order");
    assert_eq!(reply_text(&d), "No.42");
}

#[test]
fn keyword_variable_is_the_keyword_as_written() {
    let rs = rules(
        r#"
        [[rule]]
        name = "price"
        when = { exact = ["价格", "Price"] }
        reply = { text = "[{{ keyword }}] [{{ text }}]" }
        "#,
    );
    let d = route(&rs, &text(" PRICE "));
    assert_eq!(reply_text(&d), "[Price] [ PRICE ]");
    assert_eq!(d.why.to_string(), "exact keyword \"Price\"");
}

#[test]
fn voice_matches_on_recognition_and_by_msg_type() {
    let rs = rules(
        r#"
        [[rule]]
        name = "price"
        when = { contains = ["价格"] }
        reply = { text = "price" }
        [[rule]]
        name = "any-voice"
        when = { msg_type = "voice" }
        reply = { text = "voice" }
        "#,
    );
    assert_eq!(
        winner(&route(&rs, &voice(Some("请问价格是多少？")))),
        "price"
    );
    assert_eq!(winner(&route(&rs, &voice(None))), "any-voice");
    assert_eq!(winner(&route(&rs, &voice(Some("你好")))), "any-voice");
}

#[test]
fn msg_type_rules_and_fallback_for_user_messages_only() {
    let rs = rules(
        r#"
        [[rule]]
        name = "photo"
        when = { msg_type = ["image", "video"] }
        reply = { text = "photo" }
        [[rule]]
        name = "fallback"
        fallback = true
        reply = { text = "fallback" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &image())), "photo");
    assert_eq!(winner(&route(&rs, &voice(None))), "fallback");
    assert_eq!(winner(&route(&rs, &text("zzz"))), "fallback");
    // Events and unknown message types never reach the fallback.
    let d = route(&rs, &event(Event::Click { key: "NOPE".into() }));
    assert_eq!((d.rule, d.reply), (None, Reply::None));
    let unknown = Inbound {
        header: header(),
        kind: InboundKind::Unknown {
            msg_type: "miniprogrampage".into(),
            msg_id: None,
        },
    };
    assert_eq!(route(&rs, &unknown).rule, None);
    let unknown_event = event(Event::Unknown {
        event: "new_thing".into(),
        event_key: None,
    });
    assert_eq!(route(&rs, &unknown_event).rule, None);
}

#[test]
fn no_match_and_no_fallback_is_reply_none() {
    let rs = rules(
        r#"
        [[rule]]
        name = "a"
        when = { exact = ["a"] }
        reply = { text = "a" }
        "#,
    );
    let d = route(&rs, &text("b"));
    assert_eq!(d.rule, None);
    assert_eq!(d.reply, Reply::None);
    assert!(d.add_tags.is_empty());
}
