//! A reader buys an article on the paywall page, in a real browser: headless Chromium driven
//! through ChromeDriver's WebDriver HTTP API, with a stub `WeixinJSBridge` standing in for
//! WeChat's in-app browser and the fake WeChat Pay (tests/api/fakepay.rs) behind mpgate.
//!
//! The browser resolves `mp.test` (the test server's public URL) to the test server, so the
//! page is opened exactly by the link the bot sent and the fresh link it is sent to afterwards
//! works too. Without Chromium or ChromeDriver these tests say they skip; under `CI=true` that
//! is a failure (`scripts/install-test-deps.sh` installs both). Screenshots at phone width
//! (390 px) are saved under `target/screenshots/` for people to look at.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::admin::ADMIN;
use crate::browser::{chromedriver, Driver};
use crate::fakepay::FakePay;
use crate::helpers::*;
use crate::pages::chromium;

const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323c) \
    NetType/WIFI Language/zh_CN";
const SAFARI_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
/// The body of the fixture article (tests/fixtures/api/templates/rust-101.html).
const ARTICLE_BODY: &str = "Every value has one owner.";

/// WeChat's bridge as the page sees it inside WeChat: `invoke` records what the page asked for
/// in `window.__pay` and answers `err_msg` a moment later, as the real payment sheet does.
fn bridge_stub(err_msg: &str, late: bool) -> String {
    let install = r"
        window.__pay = null;
        window.WeixinJSBridge = {
          invoke: function (name, params, cb) {
            window.__pay = { name: name, params: params };
            setTimeout(function () { cb({ err_msg: ERR_MSG }); }, 100);
          }
        };"
    .replace("ERR_MSG", &Value::from(err_msg).to_string());
    if late {
        // The bridge WeChat injects some time after the page has loaded, announced by an event.
        format!(
            "window.__pay = null; document.addEventListener('DOMContentLoaded', function () {{ \
             setTimeout(function () {{ {install} \
             document.dispatchEvent(new Event('WeixinJSBridgeReady')); }}, 800); }});"
        )
    } else {
        install
    }
}

/// A shop that sells the fixture's `rust-101` for ¥19.90 through the fake WeChat Pay, and the
/// browser tools; `None` (after saying why) when any of them is missing.
async fn shop() -> Option<(TestApp, FakePay, PathBuf, Driver)> {
    let chromium = chromium()?;
    let driver_bin = chromedriver()?;
    let pay = FakePay::start().await?;
    let mut opts = Options {
        keywords: Some(std::fs::read_to_string(fixture("paybrowser-keywords.toml")).unwrap()),
        ..Options::default()
    }
    .env("MPGATE_ADMIN_TOKEN", ADMIN);
    for (k, v) in pay.env() {
        opts = opts.env(&k, &v);
    }
    let app = spawn_app(opts).await;
    let driver = Driver::start(&driver_bin).await;
    Some((app, pay, chromium, driver))
}

/// The link of the teaser the bot answers `openid`'s "rust" with, as sent (http://mp.test/…).
async fn teaser_link(app: &TestApp, openid: &str) -> String {
    let r = app.say(openid, "rust").await;
    let xml = r.xml.unwrap_or_else(|| panic!("no news reply: {}", r.raw));
    let url = xml
        .child("Articles")
        .and_then(|a| a.child("item"))
        .and_then(|i| i.child_text("Url"))
        .unwrap_or_else(|| panic!("no article item: {}", r.raw))
        .to_string();
    assert!(
        url.starts_with("http://mp.test/a/rust-101?") && url.contains("&s="),
        "the teaser of a priced article carries a signed link: {url}"
    );
    url
}

#[tokio::test]
async fn a_reader_in_wechat_taps_buy_pays_and_the_article_opens_by_itself() {
    let Some((app, pay, chromium, driver)) = shop().await else {
        return;
    };
    let link = teaser_link(&app, "oBrowserBuyer").await;
    let stub = bridge_stub("get_brand_wcpay_request:ok", false);
    let b = driver
        .browser(&chromium, &app, WECHAT_UA, Some(&stub))
        .await;

    b.open(&link).await;
    let page = b.text().await;
    assert!(page.contains("¥19.90"), "{page}");
    assert!(!page.contains(ARTICLE_BODY), "{page}");
    let label = b
        .js("return document.getElementById('buy').textContent")
        .await;
    assert_eq!(label, "购买并阅读 ¥19.90");
    b.screenshot("pay-1-paywall-in-wechat").await;

    b.click("#buy").await;
    let asked = b
        .wait_for(
            "the page to invoke the payment sheet",
            "return window.__pay",
            15,
        )
        .await;
    assert_eq!(asked["name"], "getBrandWCPayRequest", "{asked}");
    let p = &asked["params"];
    assert_eq!(p["appId"], APP_ID, "{asked}");
    assert_eq!(p["signType"], "RSA", "{asked}");
    for field in ["timeStamp", "nonceStr", "paySign"] {
        assert!(
            p[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} in {asked}"
        );
    }
    let package = p["package"].as_str().unwrap_or_default();
    let prepay_id = package
        .strip_prefix("prepay_id=")
        .unwrap_or_else(|| panic!("package {package:?}"));
    let orders = pay.orders();
    let order = orders
        .iter()
        .find(|o| o.prepay_id == prepay_id)
        .unwrap_or_else(|| panic!("the platform never issued {prepay_id}"));
    assert_eq!(order.amount_fen(), 1990);
    assert_eq!(order.openid(), "oBrowserBuyer");
    assert_eq!(
        order.body["description"], "Rust 101 · 所有权",
        "the article's description, not its title"
    );

    // The sheet said ok; that alone opens nothing: the page waits for the server.
    b.wait_for(
        "the page to say it is confirming",
        "return document.body.innerText.indexOf('正在确认支付…') >= 0",
        10,
    )
    .await;
    b.screenshot("pay-2-confirming").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!b.text().await.contains(ARTICLE_BODY));
    assert_eq!(
        b.js("return document.getElementById('buy').disabled").await,
        true,
        "no second order while one is being confirmed"
    );

    let delivered = pay
        .notify_paid(&order.out_trade_no, &app.url("/pay/notify"))
        .await;
    assert_eq!(delivered.status, 204, "{}", delivered.body);

    let url = b
        .wait_for(
            "the article to open",
            &format!(
                "return document.body.innerText.indexOf({}) >= 0 && location.href",
                Value::from(ARTICLE_BODY)
            ),
            15,
        )
        .await;
    let url = url.as_str().unwrap_or_default().to_string();
    assert!(
        url.starts_with("http://mp.test/a/rust-101?") && url != link,
        "a freshly signed link: {url}"
    );
    assert_eq!(pay.orders().len(), 1, "one order, one payment");
    b.screenshot("pay-3-article").await;
    b.close().await;
}

#[tokio::test]
async fn a_reader_who_cancels_the_payment_sheet_is_told_so_and_can_try_again() {
    let Some((app, pay, chromium, driver)) = shop().await else {
        return;
    };
    let link = teaser_link(&app, "oBrowserCancel").await;
    // The bridge arrives after the page, as it may in WeChat: the page waits for it.
    let stub = bridge_stub("get_brand_wcpay_request:cancel", true);
    let b = driver
        .browser(&chromium, &app, WECHAT_UA, Some(&stub))
        .await;
    b.open(&link).await;
    b.click("#buy").await;

    b.wait_for(
        "the page to say the payment was cancelled",
        "return document.getElementById('pay-status').textContent === '已取消支付'",
        15,
    )
    .await;
    let asked = b.js("return window.__pay").await;
    assert_eq!(asked["name"], "getBrandWCPayRequest", "{asked}");
    assert_eq!(
        b.js("return document.getElementById('buy').disabled").await,
        false,
        "the button works again"
    );
    assert!(!b.text().await.contains(ARTICLE_BODY));
    b.screenshot("pay-4-cancelled").await;

    // Trying again reuses the same unpaid order.
    b.js("window.__pay = null; return true").await;
    b.click("#buy").await;
    b.wait_for("a second payment sheet", "return window.__pay", 15)
        .await;
    assert_eq!(pay.orders().len(), 1, "{:?}", pay.orders());
    b.close().await;
}

#[tokio::test]
async fn outside_wechat_the_page_asks_to_open_the_link_in_wechat_and_offers_no_button() {
    let Some((app, pay, chromium, driver)) = shop().await else {
        return;
    };
    let link = teaser_link(&app, "oBrowserSafari").await;
    let b = driver.browser(&chromium, &app, SAFARI_UA, None).await;
    b.open(&link).await;
    let page = b.text().await;
    assert!(page.contains("¥19.90"), "{page}");
    assert!(page.contains("请在微信中打开此链接完成购买"), "{page}");
    assert_eq!(
        b.js("return document.querySelectorAll('button, #buy, script').length")
            .await,
        0,
        "no button and no script outside WeChat"
    );
    b.screenshot("pay-5-outside-wechat").await;
    assert!(pay.orders().is_empty());
    b.close().await;
}
