//! Rule action `webhook`, customer-service messages and the 5-second budget, against a fake
//! operator endpoint and a fake platform (both real HTTP servers).

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::fake::{FakePlatform, APP_SECRET};
use crate::helpers::*;

const HOOK_SECRET: &str = "hook-secret-0123456789";

#[derive(Default)]
struct Hook {
    bodies: Mutex<Vec<serde_json::Value>>,
}

async fn fast(req: HttpRequest, body: web::Bytes, hook: web::Data<Hook>) -> HttpResponse {
    let ts: i64 = req
        .headers()
        .get("x-mpgate-timestamp")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let sig = req
        .headers()
        .get("x-mpgate-signature")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        sig,
        mpgate::platform::webhook::WebhookClient::signature(HOOK_SECRET, ts, &body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    hook.bodies.lock().unwrap().push(v.clone());
    HttpResponse::Ok().json(
        serde_json::json!({ "text": format!("CRM says hi to {}", v["openid"].as_str().unwrap()) }),
    )
}

async fn slow() -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    HttpResponse::Ok().json(serde_json::json!({ "text": "late answer" }))
}

async fn broken() -> HttpResponse {
    HttpResponse::InternalServerError().body("boom")
}

fn start_hook() -> (String, Arc<Hook>) {
    let hook = Arc::new(Hook::default());
    let data = web::Data::from(hook.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/fast", web::post().to(fast))
            .route("/slow", web::post().to(slow))
            .route("/broken", web::post().to(broken))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), hook)
}

async fn app_with_hooks() -> (TestApp, FakePlatform, Arc<Hook>) {
    let platform = FakePlatform::start_for(APP_ID).await;
    let (hook_base, hook) = start_hook();
    let fixture = std::fs::read_to_string(fixture("keywords.toml")).unwrap();
    let keywords = format!(
        "{fixture}
[[rule]]
name = \"ask-fast\"
when = {{ exact = [\"ask fast\"] }}
webhook = {{ url = \"{hook_base}/fast\", timeout_ms = 2000 }}

[[rule]]
name = \"ask-slow\"
when = {{ exact = [\"ask slow\"] }}
webhook = {{ url = \"{hook_base}/slow\", timeout_ms = 300, fallback = \"Sorry, try later.\" }}

[[rule]]
name = \"ask-broken\"
when = {{ exact = [\"ask broken\"] }}
webhook = {{ url = \"{hook_base}/broken\", fallback = \"Sorry, try later.\" }}

[[rule]]
name = \"human-with-notice\"
when = {{ exact = [\"agent please\"] }}
handoff = {{ notice = \"An agent will be with you shortly.\" }}
"
    );
    let mut opts = Options::default()
        .env("MPGATE_APP_SECRET", APP_SECRET)
        .env("MPGATE_API_BASE", &platform.base)
        .env("MPGATE_WEBHOOK_SECRET", HOOK_SECRET)
        .env("MPGATE_ADMIN_TOKEN", crate::admin::ADMIN);
    opts.keywords = Some(keywords);
    (spawn_app(opts).await, platform, hook)
}

async fn delivered_within(
    platform: &FakePlatform,
    content: &str,
    limit: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(m) = platform
            .delivered()
            .into_iter()
            .find(|m| m["text"]["content"] == content)
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no customer-service message {content:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fast_webhook_answers_in_the_reply() {
    let (app, _platform, hook) = app_with_hooks().await;
    let r = app.say("oHook1", "ask fast").await;
    assert_eq!(
        r.content().as_deref(),
        Some("CRM says hi to oHook1"),
        "{}",
        r.raw
    );
    let sent = hook.bodies.lock().unwrap()[0].clone();
    assert_eq!(sent["msg_type"], "text");
    assert_eq!(sent["text"], "ask fast");
    assert_eq!(sent["rule"], "ask-fast");
}

#[tokio::test]
async fn a_slow_webhook_is_answered_success_at_once_and_delivered_later() {
    let (app, platform, _hook) = app_with_hooks().await;
    let started = Instant::now();
    let r = app.say("oHook2", "ask slow").await;
    let took = started.elapsed();
    assert!(r.is_success(), "{} {}", r.status, r.raw);
    assert!(
        took < Duration::from_millis(1200),
        "answered within the budget, took {took:?}"
    );
    let m = delivered_within(&platform, "late answer", Duration::from_secs(5)).await;
    assert_eq!(m["touser"], "oHook2");
    assert_eq!(m["msgtype"], "text");
}

#[tokio::test]
async fn a_failing_webhook_gets_the_fallback() {
    let (app, _platform, _hook) = app_with_hooks().await;
    let r = app.say("oHook3", "ask broken").await;
    assert_eq!(
        r.content().as_deref(),
        Some("Sorry, try later."),
        "{}",
        r.raw
    );
}

#[tokio::test]
async fn a_retry_during_a_slow_webhook_waits_and_gets_the_same_answer() {
    let (app, platform, _hook) = app_with_hooks().await;
    let xml = text_xml("oHook4", "ask slow", 8_700_000_000_000_000_001);
    let a = seal_push(&xml, AES_KEY, APP_ID, now(), &nonce());
    let b = seal_push(&xml, AES_KEY, APP_ID, now(), &nonce());
    let (ra, rb) = tokio::join!(app.send(&a), app.send(&b));
    assert!(ra.is_success() && rb.is_success());
    delivered_within(&platform, "late answer", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let n = platform
        .delivered()
        .iter()
        .filter(|m| m["touser"] == "oHook4")
        .count();
    assert_eq!(
        n, 1,
        "one late answer for one push, however often it was retried"
    );
}

#[tokio::test]
async fn a_handoff_notice_goes_out_as_a_customer_service_message() {
    let (app, platform, _hook) = app_with_hooks().await;
    let r = app.say("oHook5", "agent please").await;
    assert_eq!(r.msg_type().as_deref(), Some("transfer_customer_service"));
    let m = delivered_within(
        &platform,
        "An agent will be with you shortly.",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(m["touser"], "oHook5");
}

#[tokio::test]
async fn a_text_too_long_for_a_passive_reply_goes_out_whole_as_a_customer_service_message() {
    let (app, platform, _hook) = app_with_hooks().await;
    let long = "长".repeat(1500); // 4,500 bytes: over the passive reply's limit
    let r = app.say("oLong", &format!("echo {long}")).await;
    assert!(r.is_success(), "{} {}", r.status, r.raw);
    let m = delivered_within(&platform, &format!("echo {long}"), Duration::from_secs(5)).await;
    assert_eq!(m["touser"], "oLong");
}
