//! `/metrics` as Prometheus scrapes it: a scripted day of pushes, refusals, a reload, a webhook,
//! a hand-off, an outbox failure and a payment, with every figure read back from the scrape and
//! compared with what the story did; who may scrape, where; and no openid or message text in it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::fake::{FakePlatform, APP_SECRET};
use crate::fakepay::{FakePay, Tweak};
use crate::helpers::*;

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN";

/// Openids of the story's subscribers: none may appear in a scrape.
const ANNA: &str = "oMetricsAnna0000000000000001";
const BORIS: &str = "oMetricsBoris000000000000002";
const CHEN: &str = "oMetricsChen0000000000000003";
const DANA: &str = "oMetricsDana0000000000000004";
const READER: &str = "oMetricsReader00000000000005";

/// What subscribers say: none may appear in a scrape either (no rule is named like one).
const TEXTS: &[&str] = &[
    "good morning",
    "ask the crm",
    "ask slowly",
    "talk to a person",
    "rust please",
    "nothing matches this",
];

/// One scrape, parsed: `name{label="v",…}` → value, and the families' `# TYPE` lines.
struct Scrape {
    raw: String,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    fn parse(raw: String) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in raw.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.insert((name.to_string(), labels), value);
        }
        assert!(
            raw.ends_with("# EOF\n"),
            "an OpenMetrics exposition ends with # EOF"
        );
        Scrape { raw, samples }
    }

    /// The sample's value; `None` when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The sample's value, 0 when absent (a counter not yet moved).
    fn v(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    fn has_family(&self, name: &str) -> bool {
        self.raw.lines().any(|l| {
            l.strip_prefix("# TYPE ")
                .is_some_and(|rest| rest.split(' ').next() == Some(name))
        })
    }

    /// Label sets of every sample of `name`.
    fn series(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let end = after.find('"').expect("closing quote");
        out.insert(key.to_string(), after[..end].to_string());
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

impl TestApp {
    async fn scrape_with(&self, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn scrape(&self) -> Scrape {
        let r = self.scrape_with(Some(METRICS_TOKEN)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        Scrape::parse(r.text().await.unwrap())
    }

    /// Scrapes until `check` holds (the outbox and the reload watcher work in the background).
    async fn scrape_until(&self, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let s = self.scrape().await;
            if check(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what} never showed:\n{}", s.raw);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn say_as(&self, from: &str, text: &str, msg_id: u64) -> Reply {
        self.push(&text_xml(from, text, msg_id)).await
    }
}

/// A push as the platform seals it now, with the test app's key.
fn sealed(xml: &str) -> Signed {
    seal_push(xml, AES_KEY, APP_ID, now(), &nonce())
}

/// The operator's endpoint for webhook rules: `/crm` answers at once, `/slow` after 400 ms.
fn start_hook() -> String {
    async fn crm() -> HttpResponse {
        HttpResponse::Ok().json(json!({ "text": "The CRM says hello." }))
    }
    async fn slow() -> HttpResponse {
        tokio::time::sleep(Duration::from_millis(400)).await;
        HttpResponse::Ok().json(json!({ "text": "The CRM took its time." }))
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new()
            .route("/crm", web::post().to(crm))
            .route("/slow", web::post().to(slow))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

fn keywords(hook: &str) -> String {
    format!(
        r#"[account]
timezone = "Asia/Shanghai"

[[rule]]
name = "greeting"
when = {{ exact = ["good morning"] }}
reply = {{ text = "Good morning to you." }}

[[rule]]
name = "crm"
when = {{ exact = ["ask the crm"] }}
webhook = {{ url = "{hook}/crm", timeout_ms = 2000 }}

[[rule]]
name = "slow-crm"
when = {{ exact = ["ask slowly"] }}
webhook = {{ url = "{hook}/slow", timeout_ms = 2000 }}

[[rule]]
name = "desk"
when = {{ exact = ["talk to a person"] }}
handoff = {{ kf_account = "alice@test", notice = "Connecting you to a person." }}

[[rule]]
name = "paid-article"
when = {{ contains = ["rust"] }}
article = "rust-101"

[[rule]]
name = "welcome"
when = {{ event = "subscribe" }}
reply = {{ text = "Welcome!" }}

[[rule]]
name = "fallback"
fallback = true
reply = {{ text = "Sorry, I did not get that." }}

[[article]]
id = "rust-101"
title = "Rust 101"
teaser = "Ownership in ten minutes."
cover = "https://img.test/rust.png"
price = "19.90"
body_template = "rust-101.html"

[handoff]
exit_keywords = ["bye"]
idle_timeout_minutes = 30
"#
    )
}

fn saved_by_rename(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("toml.swp~");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The families an operator can count on, each present from the first scrape.
const FAMILIES: &[&str] = &[
    "mpgate_pushes",
    "mpgate_push_duration_seconds",
    "mpgate_push_retries",
    "mpgate_push_refusals",
    "mpgate_rule_hits",
    "mpgate_rules_reloads",
    "mpgate_rules_generation",
    "mpgate_rules_info",
    "mpgate_outbox_messages",
    "mpgate_outbox_sends",
    "mpgate_outbox_send_failures",
    "mpgate_handoffs",
    "mpgate_webhook_duration_seconds",
    "mpgate_webhook_calls",
    "mpgate_webhook_over_budget",
    "mpgate_pay_notifications",
    "mpgate_order_transitions",
    "mpgate_orders_open",
    "mpgate_store_size_bytes",
    "mpgate_store_writable",
    "mpgate_subscribers_following",
    "mpgate_assistant_answers",
    "mpgate_assistant_answer_seconds",
    "mpgate_assistant_tokens",
    "mpgate_assistant_tokens_today",
    "mpgate_assistant_refused",
    "mpgate_assistant_model_errors",
];

const PUSHES: &str = "mpgate_pushes_total";
const REFUSALS: &str = "mpgate_push_refusals_total";
const LATENCY_COUNT: &str = "mpgate_push_duration_seconds_count";

#[tokio::test]
async fn every_figure_moves_as_a_scripted_day_of_pushes_says_and_no_personal_data_shows() {
    let platform = FakePlatform::start_for(APP_ID).await;
    let hook = start_hook();
    let pay = FakePay::start().await;
    let mut opts = Options::default()
        .env("MPGATE_METRICS_TOKEN", METRICS_TOKEN)
        .env("MPGATE_APP_SECRET", APP_SECRET)
        .env("MPGATE_API_BASE", &platform.base);
    if let Some(pay) = &pay {
        for (k, v) in pay.env() {
            opts = opts.env(&k, &v);
        }
    }
    opts.keywords = Some(keywords(&hook));
    let app = spawn_app(opts).await;

    let before = app.scrape().await;
    assert_eq!(before.get("mpgate_store_writable", &[]), Some(1.0));
    assert!(before.v("mpgate_store_size_bytes", &[]) > 0.0);
    assert_eq!(before.get("mpgate_rules_generation", &[]), Some(0.0));
    let version = |s: &Scrape| {
        let series = s.series("mpgate_rules_info");
        assert_eq!(series.len(), 1, "one live version: {series:?}");
        series[0]["version"].clone()
    };
    let healthz_version = async || {
        app.get("/healthz").await.json::<Value>().await.unwrap()["rules_version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(version(&before), healthz_version().await);

    // Two follow, one says good morning twice (the platform retries the second: same MsgId),
    // one leaves; a text no rule knows.
    let subscribe = |who: &str| event_xml(who, "subscribe", "", now());
    assert_eq!(
        app.push(&subscribe(ANNA)).await.content().as_deref(),
        Some("Welcome!")
    );
    assert_eq!(
        app.push(&subscribe(BORIS)).await.content().as_deref(),
        Some("Welcome!")
    );
    assert!(app
        .push(&event_xml(BORIS, "unsubscribe", "", now()))
        .await
        .is_success());
    let morning = sealed(&text_xml(ANNA, "good morning", 81_000_001));
    let first = app.send(&morning).await;
    assert_eq!(first.content().as_deref(), Some("Good morning to you."));
    let again = app.send(&morning).await;
    assert_eq!(
        again.content(),
        first.content(),
        "the retry gets the stored answer"
    );
    assert_eq!(
        app.say_as(ANNA, "nothing matches this", 81_000_002)
            .await
            .content()
            .as_deref(),
        Some("Sorry, I did not get that.")
    );

    // A webhook rule, and a retry that arrives while the slow webhook's push is in flight.
    assert_eq!(
        app.say_as(CHEN, "ask the crm", 81_000_003)
            .await
            .content()
            .as_deref(),
        Some("The CRM says hello.")
    );
    let slow = sealed(&text_xml(CHEN, "ask slowly", 81_000_004));
    let (first, retry) = tokio::join!(app.send(&slow), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.send(&slow).await
    });
    assert_eq!(first.content().as_deref(), Some("The CRM took its time."));
    assert_eq!(
        retry.content(),
        first.content(),
        "the waiting retry gets the same answer"
    );

    let s = app.scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| s.v(name, labels) - before.v(name, labels);
    assert_eq!(
        moved(
            PUSHES,
            &[("type", "event:subscribe"), ("outcome", "replied")]
        ),
        2.0
    );
    assert_eq!(
        moved(
            PUSHES,
            &[("type", "event:unsubscribe"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(
        moved(PUSHES, &[("type", "text"), ("outcome", "replied")]),
        4.0
    );
    assert_eq!(
        moved(PUSHES, &[("type", "text"), ("outcome", "retry")]),
        2.0
    );
    assert_eq!(
        moved("mpgate_push_retries_total", &[("answered_from", "store")]),
        1.0
    );
    assert_eq!(
        moved("mpgate_push_retries_total", &[("answered_from", "memory")]),
        1.0
    );
    assert_eq!(moved(LATENCY_COUNT, &[]), 9.0, "every opened push is timed");
    assert_eq!(
        s.v("mpgate_push_duration_seconds_bucket", &[("le", "+Inf")]),
        s.v(LATENCY_COUNT, &[])
    );
    // The slow webhook's push took its 400 ms: above the 250 ms edge, within 1 s.
    assert!(
        s.v("mpgate_push_duration_seconds_bucket", &[("le", "0.25")])
            < s.v("mpgate_push_duration_seconds_bucket", &[("le", "1.0")])
    );
    for (rule, hits) in [
        ("welcome", 2.0),
        ("greeting", 1.0),
        ("fallback", 1.0),
        ("crm", 1.0),
        ("slow-crm", 1.0),
    ] {
        assert_eq!(
            moved("mpgate_rule_hits_total", &[("rule", rule)]),
            hits,
            "{rule}"
        );
    }
    assert_eq!(
        moved("mpgate_webhook_calls_total", &[("outcome", "reply")]),
        2.0
    );
    assert_eq!(moved("mpgate_webhook_duration_seconds_count", &[]), 2.0);
    assert_eq!(s.v("mpgate_webhook_over_budget_total", &[]), 0.0);

    // Refusals: a forged signature, a replay, not XML, too big, sealed with another key.
    let before = s;
    let mut forged = sealed(&text_xml(DANA, "good morning", 81_000_005));
    forged.query = forged.query.replace("msg_signature=", "msg_signature=0");
    assert_eq!(app.send(&forged).await.status, 403);
    let stale = seal_push(
        &text_xml(DANA, "good morning", 81_000_006),
        AES_KEY,
        APP_ID,
        now() - 3_600,
        &nonce(),
    );
    assert_eq!(app.send(&stale).await.status, 403);
    let query = sealed(&text_xml(DANA, "good morning", 81_000_007)).query;
    assert_eq!(app.post_raw(&query, "this is not XML").await.status(), 400);
    assert_eq!(
        app.post_raw(&query, "x".repeat(70 * 1024)).await.status(),
        413
    );
    let wrong_key = seal_push(
        &text_xml(DANA, "good morning", 81_000_008),
        OTHER_AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let enc = mpgate::wechat::xml::parse(&wrong_key.body).unwrap();
    let code = cipher(AES_KEY)
        .decrypt(
            enc.child_text("Encrypt").unwrap(),
            &mpgate::wechat::types::AppId::new(APP_ID),
        )
        .expect_err("another key's push does not open")
        .code()
        .to_string();
    assert_eq!(app.send(&wrong_key).await.status, 400);
    let s = app.scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| s.v(name, labels) - before.v(name, labels);
    for (reason, code) in [
        ("signature", ""),
        ("replay", ""),
        ("xml", ""),
        ("body_size", ""),
        ("decrypt", code.as_str()),
    ] {
        assert_eq!(
            moved(REFUSALS, &[("reason", reason), ("code", code)]),
            1.0,
            "{reason} {code}:\n{}",
            s.raw
        );
    }
    assert_eq!(
        moved(PUSHES, &[("type", "unopened"), ("outcome", "refused")]),
        5.0
    );
    assert_eq!(
        moved(LATENCY_COUNT, &[]),
        0.0,
        "refusals are not timed as answers"
    );

    // A hand-off whose notice the platform refuses for good (outside the 48-hour window), and
    // one it delivers.
    platform.fail_next(1, 45015);
    let r = app.say_as(DANA, "talk to a person", 81_000_009).await;
    assert_eq!(
        r.msg_type().as_deref(),
        Some("transfer_customer_service"),
        "{}",
        r.raw
    );
    let s = app
        .scrape_until("the refused notice", |s| {
            s.get("mpgate_outbox_messages", &[("state", "failed")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        s.v(
            "mpgate_outbox_send_failures_total",
            &[("reason", "api"), ("errcode", "45015")]
        ),
        1.0
    );
    assert_eq!(
        s.v("mpgate_outbox_sends_total", &[("outcome", "failed")]),
        1.0
    );
    app.say_as(CHEN, "talk to a person", 81_000_010).await;
    let s = app
        .scrape_until("the delivered notice", |s| {
            s.get("mpgate_outbox_messages", &[("state", "sent")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        s.v("mpgate_outbox_sends_total", &[("outcome", "sent")]),
        1.0
    );
    assert_eq!(
        s.get("mpgate_outbox_messages", &[("state", "pending")]),
        Some(0.0)
    );
    assert_eq!(s.get("mpgate_handoffs", &[("state", "open")]), Some(2.0));
    assert_eq!(s.get("mpgate_handoffs", &[("state", "queued")]), Some(0.0));
    assert_eq!(s.v("mpgate_rule_hits_total", &[("rule", "desk")]), 2.0);

    // A reader buys the article; WeChat Pay notifies, and a notification sealed with another
    // APIv3 key is refused.
    match &pay {
        Some(pay) => {
            let r = app.say_as(READER, "rust please", 81_000_011).await;
            let link = r
                .xml
                .expect("a news reply")
                .child("Articles")
                .unwrap()
                .child("item")
                .unwrap()
                .child_text("Url")
                .unwrap()
                .to_string();
            let url = reqwest::Url::parse(&link).unwrap();
            let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let order: Value = app
                .client
                .post(app.url("/pay/orders"))
                .header("user-agent", WECHAT_UA)
                .json(&json!({"article": "rust-101", "u": q["u"], "e": q["e"], "s": q["s"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let no = order["out_trade_no"]
                .as_str()
                .expect("an order")
                .to_string();
            let s = app.scrape().await;
            assert_eq!(
                s.v("mpgate_order_transitions_total", &[("state", "created")]),
                1.0
            );
            assert_eq!(s.get("mpgate_orders_open", &[]), Some(1.0));
            let notify = app.url("/pay/notify");
            assert_eq!(pay.notify_paid(&no, &notify).await.status, 204);
            let resource = pay.transaction(&no);
            let refused = pay
                .notify_custom(
                    &notify,
                    "TRANSACTION.SUCCESS",
                    resource,
                    Tweak::WrongApiV3Key,
                )
                .await;
            assert!(refused.status >= 400, "{refused:?}");
            let s = app.scrape().await;
            assert_eq!(
                s.v(
                    "mpgate_pay_notifications_total",
                    &[("event", "transaction"), ("result", "paid")]
                ),
                1.0
            );
            assert_eq!(
                s.v(
                    "mpgate_pay_notifications_total",
                    &[("event", "unopened"), ("result", "refused_decrypt")]
                ),
                1.0
            );
            assert_eq!(
                s.v("mpgate_order_transitions_total", &[("state", "paid")]),
                1.0
            );
            assert_eq!(s.get("mpgate_orders_open", &[]), Some(0.0));
        }
        None => eprintln!("skipping the payment part: no WeChat Pay conformance files"),
    }

    // The operator renames a rule: the reload counts, the version moves, and only the live
    // rules' names stay in the hits.
    let before = app.scrape().await;
    let original = std::fs::read_to_string(&app.keywords_path).unwrap();
    let renamed = original.replace("name = \"greeting\"", "name = \"morning\"");
    saved_by_rename(&app.keywords_path, &renamed);
    let s = app
        .scrape_until("the reload", |s| {
            s.get("mpgate_rules_generation", &[]) == Some(1.0)
        })
        .await;
    assert_eq!(s.v("mpgate_rules_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(
        s.v("mpgate_rules_reloads_total", &[("result", "error")]),
        0.0
    );
    assert_ne!(version(&s), version(&before));
    assert_eq!(version(&s), healthz_version().await);
    assert!(
        s.get("mpgate_rule_hits_total", &[("rule", "greeting")])
            .is_none(),
        "a rule that is gone has no series:\n{}",
        s.raw
    );
    app.say_as(ANNA, "good morning", 81_000_012).await;
    let s = app.scrape().await;
    assert_eq!(s.v("mpgate_rule_hits_total", &[("rule", "morning")]), 1.0);
    // A typo: refused, counted, the live rules stay.
    saved_by_rename(
        &app.keywords_path,
        &renamed.replace("reply = { text", "replly = { text"),
    );
    let s = app
        .scrape_until("the failed reload", |s| {
            s.get("mpgate_rules_reloads_total", &[("result", "error")]) == Some(1.0)
        })
        .await;
    assert_eq!(s.get("mpgate_rules_generation", &[]), Some(1.0));
    assert_eq!(version(&s), healthz_version().await);

    // Every family is there once the story has touched it.
    for family in FAMILIES {
        if pay.is_none() && family.contains("pay_") {
            continue;
        }
        assert!(s.has_family(family), "{family} is missing:\n{}", s.raw);
    }

    // Nothing personal: no openid, no message text, anywhere in the scrape.
    for secret in [ANNA, BORIS, CHEN, DANA, READER].iter().chain(TEXTS) {
        assert!(
            !s.raw.contains(secret),
            "`{secret}` leaked into the scrape:\n{}",
            s.raw
        );
    }
    assert!(!s.raw.contains("oMetrics"), "no openid prefix either");
}

/// `mpgate_subscribers_following` is the analytics' cumulative followers for today (issue 18's
/// analytics work fills `Analytics::growth`; until it lands this test fails with 0).
#[tokio::test]
async fn subscribers_following_is_the_number_still_following() {
    let app = spawn_app(Options::default().env("MPGATE_METRICS_TOKEN", METRICS_TOKEN)).await;
    for who in [ANNA, BORIS, CHEN] {
        app.push(&event_xml(who, "subscribe", "", now())).await;
    }
    app.push(&event_xml(BORIS, "unsubscribe", "", now())).await;
    let s = app.scrape().await;
    assert_eq!(
        s.get("mpgate_subscribers_following", &[]),
        Some(2.0),
        "{}",
        s.raw
    );
}

#[tokio::test]
async fn the_main_listener_wants_the_bearer_token() {
    let app = spawn_app(Options::default().env("MPGATE_METRICS_TOKEN", METRICS_TOKEN)).await;
    let r = app.scrape_with(None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body = r.text().await.unwrap();
    assert!(!body.contains("mpgate_pushes"), "{body}");
    let r = app
        .scrape_with(Some("metrics-token-0123456789abcdeX"))
        .await;
    assert_eq!(r.status(), 401);
    let r = app.scrape_with(Some(&METRICS_TOKEN[..10])).await;
    assert_eq!(r.status(), 401, "a prefix of the token is not the token");
    assert_eq!(app.scrape_with(Some(METRICS_TOKEN)).await.status(), 200);
}

#[tokio::test]
async fn without_a_token_or_a_listener_there_is_no_metrics_route() {
    let app = spawn_app(Options::default()).await;
    assert_eq!(app.scrape_with(None).await.status(), 404);
    assert_eq!(app.scrape_with(Some(METRICS_TOKEN)).await.status(), 404);
    assert!(app.metrics_port.is_none());
}

#[tokio::test]
async fn the_separate_listener_serves_without_a_token_and_counts_peers_outside_the_allow_list() {
    // Only 10/8 may push: this test's own pushes come from 127.0.0.1.
    let app = spawn_app(
        Options::default()
            .env("MPGATE_METRICS_LISTEN", "127.0.0.1:0")
            .env("MPGATE_CALLBACK_ALLOW", "10.0.0.0/8"),
    )
    .await;
    let port = app.metrics_port.expect("the metrics listener is up");
    assert_ne!(port, app.port);
    assert_eq!(app.say(ANNA, "hello").await.status, 403);
    let r = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = Scrape::parse(r.text().await.unwrap());
    assert_eq!(
        s.v(REFUSALS, &[("reason", "not_allowed"), ("code", "")]),
        1.0
    );
    assert_eq!(
        s.v(PUSHES, &[("type", "unopened"), ("outcome", "refused")]),
        1.0
    );
    // Without a token the main listener does not serve it; the metrics listener serves nothing
    // else.
    assert_eq!(app.scrape_with(None).await.status(), 404);
    let r = app
        .client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
