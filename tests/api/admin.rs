//! The operator's API: grants, revokes, subscribers, counters, behind a bearer token.

use crate::helpers::*;

pub const ADMIN: &str = "test-admin-token-0123456789";

pub async fn admin_app() -> TestApp {
    spawn_app(Options::default().env("MPGATE_ADMIN_TOKEN", ADMIN)).await
}

impl TestApp {
    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_off() {
    let app = spawn_app(Options::default()).await;
    let r = app
        .client
        .get(app.url("/admin/stats"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_the_right_one_works() {
    let app = admin_app().await;
    let r = app
        .client
        .get(app.url("/admin/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = app
        .client
        .get(app.url("/admin/stats"))
        .bearer_auth("test-admin-token-012345678X")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/admin/stats"))
        .header("authorization", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the Bearer scheme is required");
    let r = app.admin_get("/admin/stats").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_purchase_unlocks_the_article_and_a_refund_locks_it_again() {
    let app = admin_app().await;
    // Before buying: the teaser and a way to buy.
    let r = app.say("oBuyer", "rust please").await;
    assert_eq!(r.msg_type().as_deref(), Some("news"), "{}", r.raw);
    let xml = r.xml.as_ref().unwrap();
    let item = xml.child("Articles").unwrap().child("item").unwrap();
    assert!(item.child_text("Title").unwrap().contains("Rust 101"));
    assert_eq!(item.child_text("Url"), Some("https://shop.test/rust-101"));

    // The shop calls the admin API after payment; retried with the same order id.
    for expect in ["granted", "already_granted"] {
        let r = app
            .admin_post("/admin/grants", serde_json::json!({"openid": "oBuyer", "article": "rust-101", "reference": "order-1"}))
            .await;
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], expect);
    }
    let r = app.say("oBuyer", "rust please").await;
    let xml = r.xml.as_ref().unwrap();
    let url = xml
        .child("Articles")
        .unwrap()
        .child("item")
        .unwrap()
        .child_text("Url")
        .unwrap()
        .to_string();
    assert!(url.starts_with("http://mp.test/a/rust-101?"), "{url}");

    let v: serde_json::Value = app
        .admin_get("/admin/subscribers/oBuyer")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["entitlements"].as_array().unwrap().len(), 1);
    let v: serde_json::Value = app
        .admin_get("/admin/articles/rust-101/subscribers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 1);

    let r = app
        .admin_post(
            "/admin/revocations",
            serde_json::json!({"openid": "oBuyer", "article": "rust-101"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = app
        .admin_get("/admin/articles/rust-101/subscribers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 0);
    let r = app.say("oBuyer", "rust please").await;
    let xml = r.xml.as_ref().unwrap();
    assert_eq!(
        xml.child("Articles")
            .unwrap()
            .child("item")
            .unwrap()
            .child_text("Url"),
        Some("https://shop.test/rust-101"),
        "after a refund, the teaser again"
    );
}

#[tokio::test]
async fn operator_mistakes_get_clear_4xx() {
    let app = admin_app().await;
    app.say("oKnown", "hello").await;
    let bad_json = app
        .client
        .post(app.url("/admin/grants"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oKnown", "article": "no-such"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("unknown article"));
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oTypo", "article": "rust-101"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("unknown subscriber"));
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oTypo", "article": "rust-101", "create": true}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "an explicit create grants to a subscriber not seen yet"
    );
    let r = app.admin_get("/admin/subscribers/oNobody").await;
    assert_eq!(r.status(), 404);
    let r = app.admin_get("/admin/stats?from=2026-13-01").await;
    assert_eq!(r.status(), 400);
    let r = app
        .admin_post(
            "/admin/revocations",
            serde_json::json!({"openid": "oKnown", "article": "rust-101"}),
        )
        .await;
    assert_eq!(r.status(), 404, "nothing to revoke");
}

#[tokio::test]
async fn daily_counters_show_subscribes_rule_hits_and_teasers() {
    let app = admin_app().await;
    app.push(&event_xml(
        "oC1",
        "subscribe",
        "<EventKey><![CDATA[qrscene_course2026]]></EventKey>",
        now(),
    ))
    .await;
    app.say("oC1", "hello").await;
    app.say("oC1", "rust").await;
    let v: serde_json::Value = app.admin_get("/admin/stats").await.json().await.unwrap();
    let days = v["days"].as_object().unwrap();
    let today = days.values().next_back().expect("today has counters");
    assert_eq!(today["subscribe:course2026"], 1);
    assert_eq!(today["rule:hello"], 1);
    assert_eq!(today["teaser:rust-101"], 1);
}

/// The defect: a grant with `"create": true` answered 200 but left no subscriber behind, so the
/// subscriber was 404, a second grant without `create` was refused and the CLI knew nothing.
#[tokio::test]
async fn grant_with_create_creates_the_subscriber() {
    let app = admin_app().await;
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oGift", "article": "rust-101", "create": true, "reference": "gift-1"}),
        )
        .await;
    assert_eq!(r.status(), 200);

    let r = app.admin_get("/admin/subscribers/oGift").await;
    assert_eq!(r.status(), 200, "the grant created the subscriber");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["subscriber"]["created_by_operator"], true);
    assert_eq!(
        v["subscriber"]["subscribed"], false,
        "nothing says they follow"
    );
    assert_eq!(v["subscriber"]["first_subscribed"], serde_json::Value::Null);
    assert_eq!(v["entitlements"].as_array().unwrap().len(), 1);

    // Known now: the shop's retry, without `create`, is the same grant.
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oGift", "article": "rust-101", "reference": "gift-1"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "already_granted");

    // The person never followed: their first follow is a first-time follow.
    let r = app.push(&event_xml("oGift", "subscribe", "", now())).await;
    assert_eq!(r.content().as_deref(), Some("Welcome!"), "{}", r.raw);
    let v: serde_json::Value = app
        .admin_get("/admin/subscribers/oGift")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["subscriber"]["subscribed"], true);
    assert_eq!(
        v["subscriber"]["created_by_operator"], true,
        "the record keeps its origin"
    );
    assert!(v["subscriber"]["first_subscribed"].is_i64());
}

#[tokio::test]
async fn a_grant_refused_for_its_reference_creates_no_subscriber() {
    let app = admin_app().await;
    app.say("oPayer", "hello").await;
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oPayer", "article": "rust-101", "reference": "order-7"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oStranger", "article": "rust-101", "reference": "order-7", "create": true}),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        app.admin_get("/admin/subscribers/oStranger").await.status(),
        404
    );
}

/// Openids are parsed at the edge: an operator's typo with a space or a stray character is a
/// 400 that names the field, not a grant to a subscriber who can never exist.
#[tokio::test]
async fn an_openid_of_the_wrong_shape_is_refused_naming_the_field() {
    let app = admin_app().await;
    for bad in ["o user", "", "o\u{0}x", "用户"] {
        let r = app
            .admin_post(
                "/admin/grants",
                serde_json::json!({"openid": bad, "article": "rust-101", "create": true}),
            )
            .await;
        assert_eq!(r.status(), 400, "{bad:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("`openid`"),
            "{bad:?}: {body}"
        );
    }
    let r = app.admin_get("/admin/subscribers/o%20user").await;
    assert_eq!(r.status(), 400);
    let r = app
        .admin_post("/admin/handoffs/o%2Fx/close", serde_json::json!({}))
        .await;
    assert_eq!(r.status(), 400);
}

// ── orders (WeChat Pay) ─────────────────────────────────────────────────────────────────────

/// A Created order of rust-101 by `openid`, created `at`.
fn order(no: &str, openid: &str, at: i64) -> mpgate::store::Order {
    mpgate::store::Order {
        out_trade_no: no.to_string(),
        openid: openid.to_string(),
        article: "rust-101".to_string(),
        description: "Rust 101".to_string(),
        amount_fen: 1990,
        channel: "course2026".to_string(),
        state: mpgate::store::OrderState::Created,
        created_at: at,
        expires_at: at + 1800,
        prepay_id: None,
        transaction_id: None,
        paid_at: None,
        refunded_at: None,
        closed_at: None,
        refunds: Vec::new(),
        anomaly: None,
        updated_at: at,
    }
}

/// Three orders made through the store the app runs on (one paid, one open, one an anomaly),
/// on the account's day `today`.
fn three_orders(store: &mpgate::store::Store, today: chrono::NaiveDate, t: i64) {
    for (no, who, at) in [
        ("MPGADMIN001", "oOrdPaid", t - 30),
        ("MPGADMIN002", "oOrdOpen", t - 20),
        ("MPGADMIN003", "oOrdOdd", t - 10),
    ] {
        store.order_create(&order(no, who, at), today).unwrap();
    }
    store
        .order_paid("MPGADMIN001", "4200000001", t - 5, today)
        .unwrap();
    store
        .pay_anomaly(
            &mpgate::store::PayAnomaly {
                at: t - 4,
                out_trade_no: "MPGADMIN003".into(),
                kind: "amount_mismatch".into(),
                detail: "paid 1 fen, order 1990 fen".into(),
                event_id: Some("EV-ADMIN-1".into()),
            },
            today,
        )
        .unwrap();
}

fn numbers(v: &serde_json::Value) -> Vec<String> {
    v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["out_trade_no"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_operator_lists_orders_and_payment_anomalies_by_state_and_day() {
    let app = admin_app().await;
    let tz = app.gateway.rules().current().timezone();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    three_orders(app.gateway.store(), today, now());

    let r = app.admin_get("/admin/orders").await;
    assert_eq!(r.status(), 200);
    let all: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        numbers(&all),
        ["MPGADMIN003", "MPGADMIN002", "MPGADMIN001"],
        "newest first"
    );
    let paid = &all["orders"][2];
    assert_eq!(paid["state"], "paid");
    assert_eq!(paid["transaction_id"], "4200000001");
    assert_eq!(paid["amount_fen"], 1990);
    assert_eq!(all["orders"][0]["state"], "anomaly");
    assert_eq!(all["anomalies"].as_array().unwrap().len(), 1);
    assert_eq!(all["anomalies"][0]["kind"], "amount_mismatch");
    assert_eq!(all["anomalies"][0]["out_trade_no"], "MPGADMIN003");

    let v: serde_json::Value = app
        .admin_get("/admin/orders?state=paid")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(numbers(&v), ["MPGADMIN001"]);
    assert_eq!(v["anomalies"], serde_json::json!([]), "only with anomaly");
    let v: serde_json::Value = app
        .admin_get("/admin/orders?state=anomaly")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(numbers(&v), ["MPGADMIN003"]);
    assert_eq!(v["anomalies"].as_array().unwrap().len(), 1);

    let v: serde_json::Value = app
        .admin_get(&format!("/admin/orders?from={today}&to={today}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(numbers(&v).len(), 3, "today's orders, to included");
    let tomorrow = today.succ_opt().unwrap();
    let v: serde_json::Value = app
        .admin_get(&format!("/admin/orders?from={tomorrow}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!({"orders": [], "anomalies": []}));

    for (query, field) in [
        ("state=bogus", "`state`"),
        ("from=2026-13-01", "`from`"),
        ("to=yesterday", "`to`"),
    ] {
        let r = app.admin_get(&format!("/admin/orders?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
    }
    let r = app
        .admin_get(&format!("/admin/orders?from={tomorrow}&to={today}"))
        .await;
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .get(app.url("/admin/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "behind the token like every admin route");
}

#[tokio::test]
async fn payments_refunds_and_anomalies_show_in_the_daily_counters() {
    let app = admin_app().await;
    let store = app.gateway.store();
    let tz = app.gateway.rules().current().timezone();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let t = now();
    three_orders(store, today, t);
    store
        .order_refund(
            "MPGADMIN001",
            mpgate::store::RefundNote {
                out_refund_no: "RADMIN001".into(),
                refund_id: None,
                status: "SUCCESS".into(),
                refund_fen: 1990,
                at: t,
            },
            true,
            today,
        )
        .unwrap();

    let v: serde_json::Value = app.admin_get("/admin/stats").await.json().await.unwrap();
    let day = &v["days"][today.to_string()];
    for (name, n) in [
        ("order:rust-101", 3),
        ("order_channel:course2026", 3),
        ("paid:rust-101", 1),
        ("revenue:rust-101", 1990),
        ("paid_channel:course2026", 1),
        ("revenue_channel:course2026", 1990),
        ("refund:rust-101", 1),
        ("refunded_fen:rust-101", 1990),
        ("pay_anomaly:amount_mismatch", 1),
    ] {
        assert_eq!(day[name], n, "{name}: {v}");
    }
}

/// `mpgate orders` prints the same listing through the running server (which holds its data
/// dir) as on a data dir of its own.
#[tokio::test]
async fn mpgate_orders_lists_the_same_through_the_running_server_and_on_the_data_dir() {
    let app = admin_app().await;
    let tz = app.gateway.rules().current().timezone();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let t = now();
    three_orders(app.gateway.store(), today, t);
    let keywords = app.keywords_path.clone();
    let cli = move |data: &std::path::Path, args: &[&str], base: Option<&str>| {
        let mut c = crate::process::binary();
        c.args(args)
            .env("MPGATE_TOKEN", TOKEN)
            .env("MPGATE_APP_ID", APP_ID)
            .env("MPGATE_DATA_DIR", data)
            .env("MPGATE_KEYWORDS", &keywords);
        if let Some(base) = base {
            c.env("MPGATE_ADMIN_URL", base)
                .env("MPGATE_ADMIN_TOKEN", ADMIN);
        }
        let out = c.output().expect("mpgate runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let served = app._dirs.path().join("state");
    let base = app.base.clone();
    let own = tempfile::tempdir().unwrap();
    let own_dir = own.path().to_path_buf();
    let (remote_all, remote_paid, refused, local_all) = tokio::task::spawn_blocking(move || {
        let remote_all = cli(&served, &["orders"], Some(&base));
        let remote_paid = cli(&served, &["orders", "--state", "paid"], Some(&base));
        let refused = cli(&served, &["orders", "--state", "bogus"], Some(&base));
        {
            let store = mpgate::store::Store::open(&own_dir, mpgate::store::StoreConfig::default())
                .unwrap();
            three_orders(&store, today, t);
        }
        // sled lets go of its file lock a moment after the last handle drops.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let local_all = loop {
            let r = cli(&own_dir, &["orders"], None);
            if r.0 || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        (remote_all, remote_paid, refused, local_all)
    })
    .await
    .unwrap();
    assert!(remote_all.0, "{}", remote_all.2);
    let listed: serde_json::Value = serde_json::from_str(&remote_all.1).unwrap();
    assert_eq!(
        numbers(&listed),
        ["MPGADMIN003", "MPGADMIN002", "MPGADMIN001"]
    );
    assert_eq!(listed["anomalies"][0]["kind"], "amount_mismatch");
    assert!(remote_paid.0, "{}", remote_paid.2);
    let paid: serde_json::Value = serde_json::from_str(&remote_paid.1).unwrap();
    assert_eq!(numbers(&paid), ["MPGADMIN001"]);
    assert!(!refused.0);
    assert!(
        refused
            .2
            .contains("created, paid, refunded, closed or anomaly"),
        "{}",
        refused.2
    );
    assert!(local_all.0, "{}", local_all.2);
    assert_eq!(local_all.1, remote_all.1);
}

/// Gives `who` a remembered question and answer.
fn remember_a_turn(store: &mpgate::store::Store, who: &mpgate::wechat::types::OpenId) {
    let turn = mpgate::store::assistant::Turn {
        at: now(),
        question: "What is ownership?".into(),
        answer: "Each value has one owner.".into(),
    };
    store.assistant_remember(who, turn, 10).unwrap();
    assert_eq!(store.assistant_turns(who, 0).unwrap().len(), 1);
}

/// The operator makes the assistant forget a subscriber (a privacy request) through the admin
/// API, and through `mpgate assistant forget`, which goes through the running server.
#[tokio::test]
async fn the_operator_makes_the_assistant_forget_a_subscriber_through_the_api_and_the_cli() {
    let app = admin_app().await;
    let path = "/admin/subscribers/oForgetMe/assistant";
    let r = app.client.delete(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 401, "the bearer token is required");
    let r = app
        .client
        .delete(app.url("/admin/subscribers/not%20an%20openid/assistant"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("openid"));

    let forget = || async {
        let r = app
            .client
            .delete(app.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    };
    // Nothing remembered (never seen, even): nothing to forget, and no error.
    assert_eq!(forget().await, serde_json::json!({"forgot": false}));

    let store = app.gateway.store().clone();
    let who = mpgate::wechat::types::OpenId::new("oForgetMe");
    remember_a_turn(&store, &who);
    assert_eq!(forget().await, serde_json::json!({"forgot": true}));
    assert!(store.assistant_turns(&who, 0).unwrap().is_empty());
    assert_eq!(forget().await, serde_json::json!({"forgot": false}));

    // The CLI, while the server holds the data dir: through its admin API.
    let cli = {
        let keywords = app.keywords_path.clone();
        let data = app._dirs.path().join("state");
        let base = app.base.clone();
        move |openid: &str| {
            let out = crate::process::binary()
                .args(["assistant", "forget", openid])
                .env("MPGATE_TOKEN", TOKEN)
                .env("MPGATE_APP_ID", APP_ID)
                .env("MPGATE_DATA_DIR", &data)
                .env("MPGATE_KEYWORDS", &keywords)
                .env("MPGATE_ADMIN_URL", &base)
                .env("MPGATE_ADMIN_TOKEN", ADMIN)
                .output()
                .expect("mpgate runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    remember_a_turn(&store, &who);
    let (first, again, bad) =
        tokio::task::spawn_blocking(move || (cli("oForgetMe"), cli("oForgetMe"), cli("o/../x")))
            .await
            .unwrap();
    assert!(first.0, "{}", first.2);
    assert_eq!(
        first.1,
        "forgot what the assistant remembered of oForgetMe\n"
    );
    assert!(again.0, "{}", again.2);
    assert_eq!(again.1, "the assistant remembered nothing of oForgetMe\n");
    assert!(!bad.0, "{}", bad.1);
    assert!(bad.2.contains("openid"), "{}", bad.2);
}
