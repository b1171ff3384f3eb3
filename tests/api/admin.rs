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
