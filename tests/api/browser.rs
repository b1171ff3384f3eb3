//! ChromeDriver helpers for the browser stories (`paybrowser.rs`, `dashbrowser.rs`): a driver
//! process on a free port, headless Chromium sessions with `mp.test` resolved to the test
//! server, and the few WebDriver calls the stories make. Without ChromeDriver a story says it
//! skips; under `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// The WebDriver key of an element reference.
pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `target/screenshots/` (under the target dir in use).
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/screenshots"))
}

/// Where ChromeDriver is: `MPGATE_CHROMEDRIVER` (a path or a name on `PATH`), else
/// `chromedriver` on `PATH`; `None` after saying so (a failure under `CI=true`).
pub fn chromedriver() -> Option<PathBuf> {
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
             for the browser stories: install it with scripts/install-test-deps.sh"
        );
        eprintln!(
            "skipping this browser story: no ChromeDriver found \
             (install it with scripts/install-test-deps.sh, or set MPGATE_CHROMEDRIVER)"
        );
    }
    found
}

/// A ChromeDriver process on a free port. Dropped (also when a test fails half-way), it quits
/// the browsers it started, then ends: killing ChromeDriver alone would leave them running.
pub struct Driver {
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
    pub async fn start(bin: &Path) -> Driver {
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
    pub async fn browser(
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
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
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
pub struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Browser<'_> {
    pub async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.id);
        self.driver.call(method, &path, Some(body)).await
    }

    pub async fn open(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    pub async fn text(&self) -> String {
        self.js("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn click(&self, css: &str) {
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
    pub async fn wait_for(&self, what: &str, script: &str, secs: u64) -> Value {
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
    pub async fn screenshot(&self, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", Value::Null).await;
        let Some(png) = b64
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        else {
            return;
        };
        let dir = screenshots_dir();
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }

    /// Resizes the window (the viewport follows: headless Chromium has no window frame).
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height, "x": 0, "y": 0}),
        )
        .await;
    }

    /// Types `text` into the element `css` names.
    pub async fn type_into(&self, css: &str, text: &str) {
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
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// A PNG of the whole page, beyond the viewport (Chromium's DevTools call), for people to
    /// look at; nothing is asserted about its pixels.
    pub async fn screenshot_page(&self, name: &str) {
        let v = self
            .cmd(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Page.captureScreenshot", "params": {"format": "png", "captureBeyondViewport": true}}),
            )
            .await;
        let Some(png) = v["data"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        else {
            return self.screenshot(name).await;
        };
        let _ = std::fs::create_dir_all(screenshots_dir());
        let _ = std::fs::write(screenshots_dir().join(format!("{name}.png")), png);
    }

    pub async fn close(self) {
        let path = format!("/session/{}", self.id);
        self.driver.call("DELETE", &path, None).await;
        self.driver
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|s| *s != self.id);
    }
}
