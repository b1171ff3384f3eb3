//! Paying for an article with WeChat Pay, through the real server and the fake platform
//! (`fakepay.rs`): a reader asks, gets the teaser, opens the page, orders, pays, reads; a refund
//! locks the article again; hostile or odd notifications change nothing they should not; a lost
//! notification is recovered; a platform outage is a clear 503.

use std::time::Duration;

use serde_json::{json, Value};

use crate::admin::ADMIN;
use crate::fakepay::{FakePay, Tweak};
use crate::helpers::*;

/// WeChat's in-app browser on a phone.
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN";
const ARTICLE_BODY: &str = "Every value has one owner";
const READER: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// The test server selling `rust-101` at ¥19.90 through a fake WeChat Pay.
struct Shop {
    app: TestApp,
    pay: FakePay,
}

async fn shop() -> Option<Shop> {
    shop_with(&[]).await
}

async fn shop_with(extra: &[(&str, &str)]) -> Option<Shop> {
    let pay = FakePay::start().await?;
    let mut opts = Options {
        keywords: Some(std::fs::read_to_string(fixture("pay-keywords.toml")).unwrap()),
        ..Options::default()
    }
    .env("MPGATE_ADMIN_TOKEN", ADMIN);
    for (k, v) in pay.env() {
        opts = opts.env(&k, &v);
    }
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    let app = spawn_app(opts).await;
    Some(Shop { app, pay })
}

/// The proof a signed article link carries, as the page posts it.
fn proof(link: &str) -> Value {
    let url = reqwest::Url::parse(link).unwrap_or_else(|e| panic!("{link}: {e}"));
    let article = url.path().strip_prefix("/a/").expect("an article link");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    json!({"article": article, "u": q["u"], "e": q["e"], "s": q["s"]})
}

impl Shop {
    fn notify_url(&self) -> String {
        self.app.url("/pay/notify")
    }

    /// A link or path as this test server serves it (the public URL is http://mp.test).
    fn local(&self, link: &str) -> String {
        if link.starts_with('/') {
            self.app.url(link)
        } else {
            link.replace("http://mp.test", &self.app.base)
        }
    }

    /// The reader asks for the article; the URL of the news item the bot answers with.
    async fn ask(&self, openid: &str) -> String {
        let r = self.app.say(openid, "rust please").await;
        assert_eq!(r.msg_type().as_deref(), Some("news"), "{}", r.raw);
        let xml = r.xml.expect("a news reply");
        let item = xml.child("Articles").unwrap().child("item").unwrap();
        assert!(item.child_text("Title").unwrap().contains("Rust 101"));
        item.child_text("Url").unwrap().to_string()
    }

    /// Opens a page inside WeChat's browser: status and HTML.
    async fn open(&self, link: &str) -> (u16, String) {
        let r = self
            .app
            .client
            .get(self.local(link))
            .header("user-agent", WECHAT_UA)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The page's buy button: `POST /pay/orders` with the link's proof.
    async fn buy(&self, link: &str) -> (u16, Value) {
        let r = self
            .app
            .client
            .post(self.app.url("/pay/orders"))
            .header("user-agent", WECHAT_UA)
            .json(&proof(link))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST /pay/orders {status}: not JSON ({e}): {text}"));
        (status, body)
    }

    /// Orders and expects the platform to have accepted the order.
    async fn ordered(&self, link: &str) -> Value {
        let (status, body) = self.buy(link).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The page's poll: `GET status_url`.
    async fn status(&self, status_url: &str) -> Value {
        let r = self
            .app
            .client
            .get(self.local(status_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// `GET /admin/orders`: the operator's list.
    async fn admin_orders(&self) -> Value {
        let r = self.app.admin_get("/admin/orders").await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The order as the operator sees it.
    async fn order_state(&self, out_trade_no: &str) -> String {
        let all = self.admin_orders().await;
        let o = all["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["out_trade_no"] == out_trade_no)
            .unwrap_or_else(|| panic!("{out_trade_no} is not listed: {all}"));
        o["state"].as_str().unwrap().to_string()
    }

    /// The anomalies the operator sees for an order.
    async fn anomalies(&self, out_trade_no: &str) -> Vec<Value> {
        self.admin_orders().await["anomalies"]
            .as_array()
            .expect("anomalies are listed")
            .iter()
            .filter(|a| a["out_trade_no"] == out_trade_no)
            .cloned()
            .collect()
    }

    /// The reader's active entitlements (none for someone mpgate has never seen).
    async fn grants(&self, openid: &str) -> Vec<Value> {
        let r = self
            .app
            .admin_get(&format!("/admin/subscribers/{openid}"))
            .await;
        if r.status() == 404 {
            return Vec::new();
        }
        let v: Value = r.json().await.unwrap();
        v["entitlements"]
            .as_array()
            .unwrap_or_else(|| panic!("no entitlements in {v}"))
            .iter()
            .filter(|e| e["revoked_at"].is_null())
            .cloned()
            .collect()
    }

    /// Today's counter `name` in `/admin/stats`.
    async fn counter(&self, name: &str) -> u64 {
        let v: Value = self
            .app
            .admin_get("/admin/stats")
            .await
            .json()
            .await
            .unwrap();
        let days = v["days"].as_object().expect("days");
        days.values().map(|d| d[name].as_u64().unwrap_or(0)).sum()
    }

    /// A reader who has asked and ordered: the teaser link and the order answer.
    async fn reader_with_order(&self, openid: &str) -> (String, Value) {
        let link = self.ask(openid).await;
        let order = self.ordered(&link).await;
        (link, order)
    }
}

fn out_trade_no(order: &Value) -> String {
    order["out_trade_no"]
        .as_str()
        .expect("out_trade_no")
        .to_string()
}

/// minijinja writes `/` as `&#x2f;` in HTML; a script may write it as `\/`.
fn unescape(page: &str) -> String {
    page.replace("&#x2f;", "/").replace("\\/", "/")
}

#[tokio::test]
async fn a_reader_pays_inside_wechat_reads_and_a_refund_locks_the_article_again() {
    let Some(shop) = shop().await else { return };

    // The teaser carries a signed link, so the page knows who reads it.
    let link = shop.ask(READER).await;
    assert!(link.starts_with("http://mp.test/a/rust-101?"), "{link}");
    assert_eq!(proof(&link)["u"], READER);

    // Inside WeChat the page shows the price and the way to buy, not the article.
    let (status, page) = shop.open(&link).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("id=\"paywall\""), "{page}");
    assert!(page.contains("¥19.90"), "the price: {page}");
    assert!(
        unescape(&page).contains("/pay/orders"),
        "the buy button: {page}"
    );
    assert!(!page.contains(ARTICLE_BODY));

    // The buy button: an order at the platform, signed by the merchant, for this reader.
    let order = shop.ordered(&link).await;
    let no = out_trade_no(&order);
    assert!(
        (6..=32).contains(&no.len())
            && no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)),
        "{no}"
    );
    assert_eq!(order["amount_fen"], 1990);
    let placed = shop.pay.orders();
    assert_eq!(placed.len(), 1, "one order at the platform");
    let placed = &placed[0];
    assert_eq!(placed.out_trade_no, no);
    assert_eq!(placed.body["appid"], APP_ID);
    assert_eq!(placed.body["mchid"], shop.pay.config().mchid);
    assert_eq!(
        placed.body["amount"],
        json!({"total": 1990, "currency": "CNY"})
    );
    assert_eq!(placed.body["payer"]["openid"], READER);
    assert_eq!(placed.body["notify_url"], "http://mp.test/pay/notify");
    assert_eq!(
        placed.body["description"], "Rust 101",
        "defaults to the title"
    );
    let key_id = shop.pay.config().platform_key_id.clone();
    assert!(
        shop.pay
            .seen()
            .iter()
            .all(|s| s.wechatpay_serial.as_deref() == Some(key_id.as_str())),
        "public-key mode names the platform key in Wechatpay-Serial: {:?}",
        shop.pay.seen()
    );
    assert!(
        shop.pay.seen().iter().all(|s| s.status == 200),
        "every request was signed as the platform requires: {:?}",
        shop.pay.seen()
    );

    // What the page hands to WeixinJSBridge, signed with the merchant key.
    let p = &order["pay"];
    assert_eq!(p["appId"], APP_ID);
    assert_eq!(p["signType"], "RSA");
    assert_eq!(p["package"], format!("prepay_id={}", placed.prepay_id));
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        p["appId"].as_str().unwrap(),
        p["timeStamp"].as_str().expect("timeStamp is a string"),
        p["nonceStr"].as_str().unwrap(),
        p["package"].as_str().unwrap()
    );
    let merchant_public =
        std::fs::read_to_string(shop.pay.dir.join("merchant_public_key.pem")).unwrap();
    assert!(
        crate::fakepay::rsa_verify(
            &merchant_public,
            message.as_bytes(),
            p["paySign"].as_str().unwrap()
        ),
        "paySign verifies with the merchant public key: {p}"
    );
    let status_url = order["status_url"]
        .as_str()
        .expect("status_url")
        .to_string();
    assert!(
        status_url.starts_with(&format!("/pay/orders/{no}?")),
        "{status_url}"
    );
    let s = shop.status(&status_url).await;
    assert_eq!(s["state"], "created");
    assert!(s.get("read_url").is_none_or(Value::is_null), "{s}");

    // The platform says it is paid: mpgate acknowledges with an empty 204.
    let d = shop.pay.notify_paid(&no, &shop.notify_url()).await;
    assert_eq!((d.status, d.body.as_str()), (204, ""), "{}", d.body);

    // The page's poll sees it and opens the article with a fresh link.
    let s = shop.status(&status_url).await;
    assert_eq!(s["state"], "paid", "{s}");
    assert_eq!(s["out_trade_no"], no.as_str());
    let read_url = s["read_url"]
        .as_str()
        .expect("read_url once paid")
        .to_string();
    let (status, page) = shop.open(&read_url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(ARTICLE_BODY), "{page}");
    let grants = shop.grants(READER).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["reference"], no.as_str());
    assert_eq!(grants[0]["source"], "wechatpay");

    // The bot now answers the keyword with the article itself.
    let link = shop.ask(READER).await;
    let (status, page) = shop.open(&link).await;
    assert_eq!(status, 200);
    assert!(page.contains(ARTICLE_BODY));

    // A full refund: acknowledged, and the article locks again everywhere.
    let d = shop.pay.refund(&no, 1990, &shop.notify_url()).await;
    assert_eq!((d.status, d.body.as_str()), (204, ""), "{}", d.body);
    let (status, page) = shop.open(&read_url).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("id=\"paywall\""));
    assert!(!page.contains(ARTICLE_BODY));
    let link = shop.ask(READER).await;
    let (status, page) = shop.open(&link).await;
    assert_eq!(status, 403, "the keyword gives the teaser again");
    assert!(!page.contains(ARTICLE_BODY));
    assert!(shop.grants(READER).await.is_empty());
    assert_eq!(shop.order_state(&no).await, "refunded");
    assert_eq!(shop.status(&status_url).await["state"], "refunded");
}

#[tokio::test]
async fn forged_stale_or_undecryptable_notifications_are_refused_and_change_nothing() {
    let Some(shop) = shop().await else { return };
    let (_, order) = shop.reader_with_order(READER).await;
    let no = out_trade_no(&order);
    // The reader did pay; what arrives claiming so is what is on trial.
    shop.pay.pay(&no);
    let paid = shop.pay.transaction(&no);
    for tweak in [
        Tweak::TamperBody,
        Tweak::UnknownSerial,
        Tweak::StaleTimestamp,
        Tweak::WrongApiV3Key,
        Tweak::WrongSigningKey,
    ] {
        let d = shop
            .pay
            .notify_custom(
                &shop.notify_url(),
                "TRANSACTION.SUCCESS",
                paid.clone(),
                tweak,
            )
            .await;
        assert!(
            (400..500).contains(&d.status),
            "{tweak:?}: {} {}",
            d.status,
            d.body
        );
        assert_eq!(d.json()["code"], "FAIL", "{tweak:?}: {}", d.body);
        assert!(
            d.json()["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{tweak:?}: {}",
            d.body
        );
        assert_eq!(shop.order_state(&no).await, "created", "{tweak:?}");
        assert!(shop.grants(READER).await.is_empty(), "{tweak:?} granted");
    }
    assert_eq!(shop.counter("paid:rust-101").await, 0);

    // The genuine one, then its replay: one grant.
    let (headers, body) = shop
        .pay
        .notification("TRANSACTION.SUCCESS", &paid, Tweak::None);
    for _ in 0..2 {
        let d = shop.pay.deliver(&shop.notify_url(), &headers, &body).await;
        assert_eq!((d.status, d.body.as_str()), (204, ""));
    }
    assert_eq!(shop.order_state(&no).await, "paid");
    assert_eq!(shop.grants(READER).await.len(), 1);
    assert_eq!(shop.counter("paid:rust-101").await, 1);
    assert_eq!(shop.counter("revenue:rust-101").await, 1990);
}

#[tokio::test]
async fn two_identical_notifications_at_once_make_exactly_one_grant() {
    let Some(shop) = shop().await else { return };
    let (_, order) = shop.reader_with_order(READER).await;
    let no = out_trade_no(&order);
    shop.pay.pay(&no);
    let (headers, body) = shop.pay.notification(
        "TRANSACTION.SUCCESS",
        &shop.pay.transaction(&no),
        Tweak::None,
    );
    let url = shop.notify_url();
    let (a, b) = tokio::join!(
        shop.pay.deliver(&url, &headers, &body),
        shop.pay.deliver(&url, &headers, &body)
    );
    assert_eq!((a.status, b.status), (204, 204), "{} / {}", a.body, b.body);
    // And the platform's next retry, a separately signed notification for the same payment.
    let d = shop.pay.notify_paid(&no, &url).await;
    assert_eq!(d.status, 204);
    let grants = shop.grants(READER).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["reference"], no.as_str());
    assert_eq!(shop.counter("paid:rust-101").await, 1);
    assert!(shop.anomalies(&no).await.is_empty());
}

#[tokio::test]
async fn a_refund_before_any_payment_is_acknowledged_and_listed_as_an_anomaly() {
    let Some(shop) = shop().await else { return };
    let (_, order) = shop.reader_with_order(READER).await;
    let no = out_trade_no(&order);
    let refund = shop.pay.refund_resource(&no, 1990);
    let d = shop
        .pay
        .notify_custom(&shop.notify_url(), "REFUND.SUCCESS", refund, Tweak::None)
        .await;
    assert_eq!(
        (d.status, d.body.as_str()),
        (204, ""),
        "retrying would not fix it"
    );
    let anomalies = shop.anomalies(&no).await;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0]["kind"], "refund_before_payment");
    assert!(shop.grants(READER).await.is_empty());
}

#[tokio::test]
async fn a_payment_of_another_amount_or_by_another_payer_grants_nothing_and_is_listed() {
    let Some(shop) = shop().await else { return };
    let (_, cheap) = shop.reader_with_order(READER).await;
    let cheap = out_trade_no(&cheap);
    let other_reader = "oUpF8uMuAJO_M2pxb1Q9zNjWeS7p";
    let (_, swapped) = shop.reader_with_order(other_reader).await;
    let swapped = out_trade_no(&swapped);
    shop.pay.pay(&cheap);
    shop.pay.pay(&swapped);

    let mut t = shop.pay.transaction(&cheap);
    t["amount"]["total"] = json!(1);
    t["amount"]["payer_total"] = json!(1);
    let d = shop
        .pay
        .notify_custom(&shop.notify_url(), "TRANSACTION.SUCCESS", t, Tweak::None)
        .await;
    assert_eq!(d.status, 204, "{}", d.body);
    let a = shop.anomalies(&cheap).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["kind"], "amount_mismatch");
    assert!(shop.grants(READER).await.is_empty());

    let mut t = shop.pay.transaction(&swapped);
    t["payer"]["openid"] = json!("oSomeoneElse_M2pxb1Q9zNjWeS8q");
    let d = shop
        .pay
        .notify_custom(&shop.notify_url(), "TRANSACTION.SUCCESS", t, Tweak::None)
        .await;
    assert_eq!(d.status, 204, "{}", d.body);
    let a = shop.anomalies(&swapped).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["kind"], "payer_mismatch");
    assert!(shop.grants(other_reader).await.is_empty());
    assert!(shop
        .grants("oSomeoneElse_M2pxb1Q9zNjWeS8q")
        .await
        .is_empty());
    assert_eq!(shop.counter("paid:rust-101").await, 0);
}

#[tokio::test]
async fn a_payment_for_an_order_mpgate_never_made_is_acknowledged_and_listed() {
    let Some(shop) = shop().await else { return };
    let (_, order) = shop.reader_with_order(READER).await;
    shop.pay.pay(&out_trade_no(&order));
    let mut t = shop.pay.transaction(&out_trade_no(&order));
    t["out_trade_no"] = json!("mpgNeverMadeHere01");
    let d = shop
        .pay
        .notify_custom(&shop.notify_url(), "TRANSACTION.SUCCESS", t, Tweak::None)
        .await;
    assert_eq!(d.status, 204, "{}", d.body);
    let a = shop.anomalies("mpgNeverMadeHere01").await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["kind"], "unknown_order");
    assert!(shop.grants(READER).await.is_empty());
}

#[tokio::test]
async fn ordering_twice_reuses_the_order_and_a_buyer_is_sent_to_the_article() {
    let Some(shop) = shop().await else { return };
    let link = shop.ask(READER).await;
    let first = shop.ordered(&link).await;
    let second = shop.ordered(&link).await;
    assert_eq!(out_trade_no(&first), out_trade_no(&second));
    assert_eq!(shop.pay.orders().len(), 1, "one order at the platform");

    let d = shop
        .pay
        .notify_paid(&out_trade_no(&first), &shop.notify_url())
        .await;
    assert_eq!(d.status, 204);
    let (status, body) = shop.buy(&link).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "already bought");
    let read_url = body["read_url"].as_str().expect("read_url");
    let (status, page) = shop.open(read_url).await;
    assert_eq!(status, 200);
    assert!(page.contains(ARTICLE_BODY));
    assert_eq!(shop.pay.orders().len(), 1, "nothing new at the platform");
}

#[tokio::test]
async fn a_lost_notification_is_recovered_by_the_page_asking_the_platform() {
    let Some(shop) = shop().await else { return };
    let (_, order) = shop.reader_with_order(READER).await;
    let no = out_trade_no(&order);
    let status_url = order["status_url"].as_str().unwrap().to_string();
    // The reader paid; the notification never arrives.
    shop.pay.pay(&no);
    let started = std::time::Instant::now();
    let s = loop {
        let s = shop.status(&status_url).await;
        if s["state"] == "paid" || started.elapsed() > Duration::from_secs(15) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(s["state"], "paid", "after {:?}: {s}", started.elapsed());
    assert!(shop.pay.queries() >= 1, "the route asked the platform");
    let (status, page) = shop.open(s["read_url"].as_str().expect("read_url")).await;
    assert_eq!(status, 200);
    assert!(page.contains(ARTICLE_BODY));
    let grants = shop.grants(READER).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["reference"], no.as_str());
}

#[tokio::test]
async fn a_lost_notification_is_recovered_by_reconciliation() {
    let Some(shop) = shop_with(&[("MPGATE_PAY_RECONCILE_AFTER_SECS", "1")]).await else {
        return;
    };
    let (_, paid) = shop.reader_with_order(READER).await;
    let paid = out_trade_no(&paid);
    let (_, unpaid) = shop.reader_with_order("oUpF8uMuAJO_M2pxb1Q9zNjWeS7p").await;
    let unpaid = out_trade_no(&unpaid);
    shop.pay.pay(&paid);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = shop
        .app
        .admin_post("/admin/orders/reconcile", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["queried"], 2, "{v}");
    assert_eq!(v["paid"], 1, "{v}");
    assert_eq!(shop.order_state(&paid).await, "paid");
    assert_eq!(
        shop.order_state(&unpaid).await,
        "created",
        "still within its time"
    );
    assert_eq!(shop.grants(READER).await.len(), 1);
    assert_eq!(shop.counter("paid:rust-101").await, 1);
    // The notification arrives after all: nothing new.
    let d = shop.pay.notify_paid(&paid, &shop.notify_url()).await;
    assert_eq!(d.status, 204);
    assert_eq!(shop.grants(READER).await.len(), 1);
    assert_eq!(shop.counter("paid:rust-101").await, 1);
}

#[tokio::test]
async fn a_platform_outage_or_a_forged_answer_is_a_503_and_grants_nothing() {
    let Some(shop) = shop().await else { return };
    let link = shop.ask(READER).await;

    shop.pay.fail_next(20);
    let (status, body) = shop.buy(&link).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["error"].as_str().expect("a short reason");
    assert!(!reason.is_empty() && reason.len() < 200, "{reason}");
    shop.pay.fail_next(0);

    // An answer whose signature does not verify is not the platform's.
    shop.pay.sign_badly_next(20);
    let (status, body) = shop.buy(&link).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    shop.pay.sign_badly_next(0);
    assert!(shop.grants(READER).await.is_empty());

    // Once the platform is back, the reader's order goes through.
    let order = shop.ordered(&link).await;
    assert!(order["pay"]["paySign"].is_string(), "{order}");
    assert!(
        shop.grants(READER).await.is_empty(),
        "ordering is not paying"
    );
}
