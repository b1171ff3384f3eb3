//! A reader buys an article on the paywall page, in a real browser: headless Chromium driven
//! through ChromeDriver's WebDriver HTTP API, with a stub `WeixinJSBridge` standing in for
//! WeChat's in-app browser and the fake WeChat Pay (tests/api/fakepay.rs) behind mpgate.
//!
//! The browser resolves `mp.test` (the test server's public URL) to the test server, so the
//! page is opened exactly by the link the bot sent and the fresh link it is sent to afterwards
//! works too. Without Chromium or ChromeDriver these tests say they skip; under `CI=true` that
//! is a failure (`scripts/install-test-deps.sh` installs both). Screenshots at phone width
//! (390 px) are saved under `target/screenshots/` for people to look at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::admin::ADMIN;
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
/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

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

/// Where ChromeDriver is: `MPGATE_CHROMEDRIVER` (a path or a name on `PATH`), else
/// `chromedriver` on `PATH`; `None` after saying so (a failure under `CI=true`).
fn chromedriver() -> Option<PathBuf> {
    let name = std::env::var("MPGATE_CHROMEDRIVER")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "chromedriver".into());
    let candidate = Path::new(&name);
    let found = if candidate.components().count() > 1 {
        candidate.is_file().then(|| candidate.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(&name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no ChromeDriver found (MPGATE_CHROMEDRIVER or chromedriver on PATH), which CI needs \
             for the buy-flow test: install it with scripts/install-test-deps.sh"
        );
        eprintln!(
            "skipping the browser buy flow: no ChromeDriver found \
             (install it with scripts/install-test-deps.sh, or set MPGATE_CHROMEDRIVER)"
        );
    }
    found
}

/// A ChromeDriver process on a free port. Dropped (also when a test fails half-way), it quits
/// the browsers it started, then ends: killing ChromeDriver alone would leave them running.
struct Driver {
    child: Child,
    port: u16,
    base: String,
    http: reqwest::Client,
    sessions: std::sync::Mutex<Vec<String>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let sessions = std::mem::take(
            &mut *self
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for id in sessions {
            quit_blocking(self.port, &id);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DELETE /session/{id}` without an async runtime (Drop may run while a test unwinds).
fn quit_blocking(port: u16, id: &str) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
}

impl Driver {
    async fn start(bin: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let driver = Driver {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            sessions: std::sync::Mutex::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await;
            if let Ok(r) = ready {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return driver;
                    }
                }
            }
            assert!(Instant::now() < deadline, "ChromeDriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A headless phone-sized browser with `user_agent`, `mp.test` resolved to `app`, and
    /// `stub` run before every page's own scripts.
    async fn browser(
        &self,
        chromium: &Path,
        app: &TestApp,
        user_agent: &str,
        stub: Option<&str>,
    ) -> Browser<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-proxy-server",
                    "--window-size=390,844",
                    format!("--user-agent={user_agent}"),
                    format!("--host-resolver-rules=MAP mp.test 127.0.0.1:{}", app.port),
                ],
            },
        }}});
        let v = self.call("POST", "/session", Some(caps)).await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id.clone());
        let b = Browser { driver: self, id };
        b.cmd(
            "POST",
            "/window/rect",
            json!({"width": 390, "height": 844, "x": 0, "y": 0}),
        )
        .await;
        if let Some(source) = stub {
            b.cmd(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": source}}),
            )
            .await;
        }
        b
    }

    /// One WebDriver call; its `value`. A WebDriver error fails the test with its message.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }
}

/// One browser session.
struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Browser<'_> {
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(method, &path, Some(body)).await
    }

    async fn open(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn text(&self) -> String {
        self.js("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn click(&self, css: &str) {
        let el = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let id = el[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {el}"))
            .to_string();
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Polls `script` until it returns something truthy (its value), or fails after `secs`
    /// with what the page shows.
    async fn wait_for(&self, what: &str, script: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.js(script).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let url = self.js("return location.href").await;
                panic!(
                    "waited {secs} s for {what}; the page at {url} shows:\n{}",
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG for people to look at; nothing is asserted about its pixels.
    async fn screenshot(&self, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", Value::Null).await;
        let Some(png) = b64
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        else {
            return;
        };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map(|t| t.join("screenshots"))
            .unwrap_or_else(|| PathBuf::from("target/screenshots"));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }

    async fn close(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call("DELETE", &path, None).await;
        self.driver
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|s| *s != self.id);
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
