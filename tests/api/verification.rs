//! The console's URL verification: `GET /wechat`.

use crate::helpers::*;
use mpgate::wechat::signature;

#[tokio::test]
async fn a_correct_signature_gets_echostr_back_verbatim() {
    let app = spawn_app(Options::default()).await;
    let (ts, n) = (now().to_string(), "1514711492");
    let sig = signature::sign(&[TOKEN, &ts, n]);
    let resp = app
        .get(&format!(
            "/wechat?signature={sig}&timestamp={ts}&nonce={n}&echostr=4375120948345356249"
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "4375120948345356249");
}

#[tokio::test]
async fn the_published_verification_example_passes_with_its_token() {
    // developers.weixin.qq.com worked example: token AAAAA (read from the conformance vectors
    // when present; the numbers are the doc's and checked there too).
    let app = spawn_app(Options::default().env("MPGATE_TOKEN", "AAAAA")).await;
    let resp = app
        .get("/wechat?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&timestamp=1714036504&nonce=1514711492&echostr=4375120948345356249")
        .await;
    assert_eq!(
        resp.status(),
        200,
        "verification has no replay window: the console may repeat it"
    );
    assert_eq!(resp.text().await.unwrap(), "4375120948345356249");
}

#[tokio::test]
async fn a_wrong_signature_is_refused_and_echoes_nothing() {
    let app = spawn_app(Options::default()).await;
    let ts = now().to_string();
    let mut sig = signature::sign(&[TOKEN, &ts, "42"]);
    sig.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    let resp = app
        .get(&format!(
            "/wechat?signature={sig}&timestamp={ts}&nonce=42&echostr=secret-echo"
        ))
        .await;
    assert_eq!(resp.status(), 403);
    assert!(!resp.text().await.unwrap().contains("secret-echo"));
}

#[tokio::test]
async fn missing_parameters_get_a_short_reason() {
    let app = spawn_app(Options::default()).await;
    for q in [
        "",
        "?signature=x&timestamp=1&nonce=2",
        "?timestamp=1&nonce=2&echostr=3",
    ] {
        let resp = app.get(&format!("/wechat{q}")).await;
        assert_eq!(resp.status(), 400, "query {q:?}");
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("missing query parameter"));
    }
}

#[tokio::test]
async fn other_methods_are_405() {
    let app = spawn_app(Options::default()).await;
    let resp = app.client.put(app.url("/wechat")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn healthz_answers_with_the_live_rules_version() {
    let app = spawn_app(Options::default()).await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert!(v["rules_version"].as_str().is_some_and(|s| !s.is_empty()));
}
