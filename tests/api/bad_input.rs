//! Bad input gets a clear 4xx, and the server keeps serving.

use crate::helpers::*;
use mpgate::wechat::signature;

/// A signed safe-mode query around an arbitrary `Encrypt` text (the signature is valid).
fn signed_encrypt(enc: &str) -> Signed {
    let (ts, n) = (now().to_string(), nonce());
    let msg_sig = signature::sign(&[TOKEN, &ts, &n, enc]);
    let sig = signature::sign(&[TOKEN, &ts, &n]);
    Signed {
        query: format!("signature={sig}&timestamp={ts}&nonce={n}&encrypt_type=aes&msg_signature={msg_sig}"),
        body: format!("<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"),
        nonce: n,
    }
}

async fn assert_refused(app: &TestApp, s: &Signed, status: u16, reason: &str) {
    let r = app.send(s).await;
    assert_eq!(
        r.status, status,
        "expected {status} ({reason}), got {}: {}",
        r.status, r.raw
    );
    assert!(
        r.raw.to_lowercase().contains(&reason.to_lowercase()),
        "reason should mention {reason:?}: {}",
        r.raw
    );
    assert!(r.raw.len() < 300, "short reason: {}", r.raw);
}

async fn still_serving(app: &TestApp) {
    assert_eq!(app.get("/healthz").await.status(), 200);
    let r = app.say("oStill", "hello").await;
    assert_eq!(
        r.content().as_deref(),
        Some("Hello from mpgate!"),
        "{}",
        r.raw
    );
}

#[tokio::test]
async fn signature_and_replay_failures_are_403() {
    let app = spawn_app(Options::default()).await;
    let xml = text_xml("oBad", "hello", 1);
    // Wrong msg_signature.
    let mut s = seal_push(&xml, AES_KEY, APP_ID, now(), &nonce());
    s.query = s.query.replace("msg_signature=", "msg_signature=0");
    assert_refused(&app, &s, 403, "signature").await;
    // Signed with another token.
    let (ts, n) = (now().to_string(), nonce());
    let enc = cipher(AES_KEY).encrypt(&xml, &mpgate::wechat::types::AppId::new(APP_ID));
    let forged = signature::sign(&["someoneelse", &ts, &n, &enc]);
    let s = Signed {
        query: format!("timestamp={ts}&nonce={n}&encrypt_type=aes&msg_signature={forged}"),
        body: format!("<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"),
        nonce: n,
    };
    assert_refused(&app, &s, 403, "signature").await;
    // Replays: an hour old, an hour ahead.
    for skew in [-3600, 3600] {
        let s = seal_push(&xml, AES_KEY, APP_ID, now() + skew, &nonce());
        assert_refused(&app, &s, 403, "replay").await;
    }
    still_serving(&app).await;
}

#[tokio::test]
async fn missing_or_malformed_parameters_are_400() {
    let app = spawn_app(Options::default()).await;
    let s = seal_push(
        &text_xml("oBad", "hello", 2),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let without = |p: &str| {
        s.query
            .split('&')
            .filter(|kv| !kv.starts_with(&format!("{p}=")))
            .collect::<Vec<_>>()
            .join("&")
    };
    for p in ["timestamp", "nonce", "msg_signature"] {
        let r = app.post_raw(&without(p), s.body.clone()).await;
        assert_eq!(r.status(), 400, "without {p}");
        assert!(r.text().await.unwrap().contains(p));
    }
    let r = app
        .post_raw(
            &s.query.replace("timestamp=", "timestamp=x"),
            s.body.clone(),
        )
        .await;
    assert_eq!(r.status(), 400);
    still_serving(&app).await;
}

#[tokio::test]
async fn undecryptable_pushes_with_valid_signatures_are_400() {
    let app = spawn_app(Options::default()).await;
    let xml = text_xml("oBad", "hello", 3);
    // Another account's AES key, another account's app id.
    assert_refused(
        &app,
        &seal_push(&xml, OTHER_AES_KEY, APP_ID, now(), &nonce()),
        400,
        "decrypt",
    )
    .await;
    assert_refused(
        &app,
        &seal_push(&xml, AES_KEY, "wx0000000000000000", now(), &nonce()),
        400,
        "decrypt",
    )
    .await;
    // Not base64; a ciphertext that is not a whole number of 32-byte blocks.
    assert_refused(&app, &signed_encrypt("!!!not-base64!!!"), 400, "decrypt").await;
    assert_refused(&app, &signed_encrypt("YWJj"), 400, "decrypt").await;
    // Bad PKCS#7 padding (the published negative case, same key).
    let bad_pad = "eCyIe0+uiijGBq44Xutxnr1+WeGoBKA51g52eoqXieE7Dk/pjxllYh6ymcgrmGWJ4b3ZoxOcC7VOaNBj3DrH9Vo0K+0JNsP4RW+rzrfcTfXT7gPTuc/T+YWY4OfYaCGy";
    assert_refused(&app, &signed_encrypt(bad_pad), 400, "decrypt").await;
    // No Encrypt element at all.
    let mut s = signed_encrypt("x");
    s.body = "<xml><ToUserName>gh</ToUserName></xml>".into();
    assert_refused(&app, &s, 400, "encrypt").await;
    still_serving(&app).await;
}

#[tokio::test]
async fn mode_mismatches_are_400() {
    let safe = spawn_app(Options::default()).await;
    let s = sign_plain(&text_xml("oBad", "hello", 4), now(), &nonce());
    assert_refused(&safe, &s, 400, "plaintext").await;

    let plain = spawn_app(Options::plaintext()).await;
    let s = seal_push(
        &text_xml("oBad", "hello", 5),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    assert_refused(&plain, &s, 400, "EncodingAESKey").await;
    still_serving(&safe).await;
    still_serving(&plain).await;
}

#[tokio::test]
async fn hostile_or_broken_xml_is_400_in_both_layers() {
    let plain = spawn_app(Options::plaintext()).await;
    let safe = spawn_app(Options::default()).await;
    let deep = format!("<xml>{}x{}</xml>", "<a>".repeat(200), "</a>".repeat(200));
    let cases: Vec<(&str, String)> = vec![
        ("not xml", "this is not xml".into()),
        ("json", r#"{"MsgType":"text"}"#.into()),
        ("truncated", text_xml("oBad", "hello", 6)[..60].to_string()),
        (
            "doctype",
            r#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>"#.into(),
        ),
        (
            "entity",
            "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol;</Content><MsgId>1</MsgId></xml>".into(),
        ),
        ("deep", deep),
        ("empty", String::new()),
    ];
    for (what, xml) in &cases {
        let r = plain.send(&sign_plain(xml, now(), &nonce())).await;
        assert_eq!(r.status, 400, "plaintext {what}: {}", r.raw);
        let r = safe
            .send(&seal_push(xml, AES_KEY, APP_ID, now(), &nonce()))
            .await;
        assert_eq!(r.status, 400, "encrypted {what}: {}", r.raw);
        // The envelope itself, hostile.
        let s = seal_push(
            &text_xml("oBad", "hello", 7),
            AES_KEY,
            APP_ID,
            now(),
            &nonce(),
        );
        let r = safe.post_raw(&s.query, xml.clone()).await;
        assert_eq!(r.status(), 400, "envelope {what}");
    }
    still_serving(&plain).await;
    still_serving(&safe).await;
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let app = spawn_app(Options::plaintext()).await;
    let s = sign_plain("", now(), &nonce());
    let mut body = b"<xml><Content>".to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    body.extend_from_slice(b"</Content></xml>");
    let r = app.post_raw(&s.query, body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("UTF-8"));
    still_serving(&app).await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app(Options::default()).await;
    let s = seal_push(
        &text_xml("oBig", &"x".repeat(200_000), 8),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let r = app.post_raw(&s.query, s.body.clone()).await;
    assert_eq!(r.status(), 413);
    still_serving(&app).await;
}

#[tokio::test]
async fn a_body_cut_off_in_transit_does_not_hurt_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Options::default()).await;
    let s = seal_push(
        &text_xml("oCut", "hello", 9),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST /wechat?{} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        s.query,
        s.body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&s.body.as_bytes()[..s.body.len() / 2])
        .await
        .unwrap();
    conn.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut buf),
    )
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        !text.starts_with("HTTP/1.1 2") && !text.starts_with("HTTP/1.1 5"),
        "{text}"
    );
    still_serving(&app).await;
}
