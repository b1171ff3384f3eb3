//! Pushes in every mode and of every type, as the platform sends them.

use std::path::PathBuf;

use crate::helpers::*;
use mpgate::wechat::types::AppId;

/// `../shared/conformance` (or `MPGATE_CONFORMANCE_DIR`); absent in a user's own clone, where
/// these tests say so and skip, but never under CI.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MPGATE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    if dir.join("messages").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "conformance dir {} is missing under CI",
        dir.display()
    );
    eprintln!("skipping: conformance dir not found at {}", dir.display());
    None
}

#[tokio::test]
async fn every_sample_message_type_is_accepted_in_safe_mode() {
    let Some(dir) = conformance_dir() else { return };
    let app = spawn_app(Options::default()).await;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("messages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the full sample set, found {}",
        files.len()
    );
    for f in files {
        let xml = std::fs::read_to_string(&f).unwrap();
        let r = app.push(&xml).await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.raw);
        if let Some(x) = &r.xml {
            // Whatever the rules answer, it is addressed back to the sender from the account.
            let sent = mpgate::wechat::xml::parse(&xml).unwrap();
            assert_eq!(
                x.child_text("ToUserName"),
                sent.child_text("FromUserName"),
                "{}",
                f.display()
            );
            assert_eq!(
                x.child_text("FromUserName"),
                sent.child_text("ToUserName"),
                "{}",
                f.display()
            );
        }
    }
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_keyword_gets_a_sealed_text_reply_addressed_back() {
    let app = spawn_app(Options::default()).await;
    let r = app.say("oUser1", "hello").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.raw.contains("<Encrypt>") && r.raw.contains("<MsgSignature>"));
    assert_eq!(r.msg_type().as_deref(), Some("text"));
    assert_eq!(r.field("ToUserName").as_deref(), Some("oUser1"));
    assert_eq!(r.field("FromUserName").as_deref(), Some(ACCOUNT));
    assert_eq!(r.content().as_deref(), Some("Hello from mpgate!"));
    let ct = r.field("CreateTime").unwrap().parse::<i64>().unwrap();
    assert!((ct - now()).abs() < 10);
}

#[tokio::test]
async fn plaintext_mode_answers_in_plaintext() {
    let app = spawn_app(Options::plaintext()).await;
    let r = app.say("oUser1", "hello").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(!r.raw.contains("<Encrypt>"));
    assert_eq!(r.content().as_deref(), Some("Hello from mpgate!"));
}

#[tokio::test]
async fn compatible_mode_is_answered_sealed() {
    let app = spawn_app(Options::default()).await;
    let s = seal_push_compat(
        &text_xml("oUser2", "hello", 9_100_000_000_000_000_001),
        AES_KEY,
        now(),
        &nonce(),
    );
    assert!(s.body.contains("<Content>") && s.body.contains("<Encrypt>"));
    let r = app.send(&s).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.raw.contains("<Encrypt>"));
    assert_eq!(r.content().as_deref(), Some("Hello from mpgate!"));
}

#[tokio::test]
async fn during_key_rotation_a_push_sealed_with_the_previous_key_is_answered_with_it() {
    let app = spawn_app(Options {
        aes_key: Some(OTHER_AES_KEY.to_string()),
        previous_key: Some(AES_KEY.to_string()),
        ..Default::default()
    })
    .await;
    let s = seal_push(
        &text_xml("oUser3", "hello", 9_100_000_000_000_000_002),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let r = app.send(&s).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let outer = mpgate::wechat::xml::parse(&r.raw).unwrap();
    let enc = outer.child_text("Encrypt").unwrap();
    assert!(
        cipher(AES_KEY).decrypt(enc, &AppId::new(APP_ID)).is_ok(),
        "sealed with the key that worked"
    );
    assert!(cipher(OTHER_AES_KEY)
        .decrypt(enc, &AppId::new(APP_ID))
        .is_err());
    // And the current key keeps working.
    let s = seal_push(
        &text_xml("oUser3", "hello", 9_100_000_000_000_000_003),
        OTHER_AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    assert_eq!(
        app.send(&s).await.content().as_deref(),
        Some("Hello from mpgate!")
    );
}

#[tokio::test]
async fn a_message_type_from_tomorrow_gets_success() {
    let app = spawn_app(Options::default()).await;
    let xml = format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[oU]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[hologram]]></MsgType><Depth>3</Depth><MsgId>42</MsgId></xml>",
        now()
    );
    let r = app.push(&xml).await;
    assert!(r.is_success(), "{} {}", r.status, r.raw);
    let r = app
        .push(&event_xml(
            "oU",
            "teleport",
            "<EventKey><![CDATA[x]]></EventKey>",
            now(),
        ))
        .await;
    assert!(r.is_success(), "{} {}", r.status, r.raw);
}

#[tokio::test]
async fn chinese_emoji_split_cdata_and_raw_control_characters_survive_the_round_trip() {
    let app = spawn_app(Options::default()).await;
    // The platform sends user text raw, control characters included; `]]>` arrives split.
    let r = app
        .say("oUser4", "echo 你好👋🏽 a]]>b \u{1}\u{8}\u{1f}end")
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let content = r.content().unwrap();
    assert!(content.contains("你好👋🏽 a]]>b"), "{content:?}");
    assert!(content.ends_with("end"), "{content:?}");
    assert!(
        !content
            .chars()
            .any(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}')),
        "a reply never carries characters XML 1.0 forbids: {content:?}"
    );
}

#[tokio::test]
async fn a_long_reply_is_cut_at_a_character_boundary() {
    let app = spawn_app(Options::default()).await;
    let long = "长".repeat(1500); // 4,500 bytes of UTF-8
    let r = app.say("oUser5", &format!("echo {long}")).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let content = r.content().unwrap();
    assert!(
        content.len() <= mpgate::wechat::reply::TEXT_MAX_BYTES,
        "{} bytes",
        content.len()
    );
    assert!(content.ends_with('长'));
}

#[tokio::test]
async fn subscribe_through_a_channel_qr_code_gets_that_channels_welcome() {
    let app = spawn_app(Options::default()).await;
    let r = app
        .push(&event_xml(
            "oNew1",
            "subscribe",
            "<EventKey><![CDATA[qrscene_course2026]]></EventKey><Ticket><![CDATA[T]]></Ticket>",
            now(),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.content().as_deref(), Some("Welcome, course2026 friend!"));
    let r = app.push(&event_xml("oNew2", "subscribe", "", now())).await;
    assert_eq!(r.content().as_deref(), Some("Welcome!"));
}

#[tokio::test]
async fn a_menu_click_can_answer_with_several_articles() {
    let app = spawn_app(Options::default()).await;
    let r = app
        .push(&event_xml(
            "oUser6",
            "CLICK",
            "<EventKey><![CDATA[CATALOG]]></EventKey>",
            now(),
        ))
        .await;
    assert_eq!(r.msg_type().as_deref(), Some("news"), "{}", r.raw);
    assert_eq!(r.field("ArticleCount").as_deref(), Some("3"));
    // After a user message the platform shows one article only, so mpgate sends one.
    let r = app.say("oUser6", "catalog").await;
    assert_eq!(r.msg_type().as_deref(), Some("news"), "{}", r.raw);
    assert_eq!(r.field("ArticleCount").as_deref(), Some("1"));
}
