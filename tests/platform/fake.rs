//! A fake of the platform's active API on a real HTTP server (127.0.0.1, any port):
//! `/cgi-bin/token`, `/cgi-bin/menu/create`, `/cgi-bin/message/custom/send`,
//! `/cgi-bin/message/custom/typing`, with programmable
//! behaviour and a record of everything received.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

pub const APP_ID: &str = "wxfakeplatform0001";
pub const APP_SECRET: &str = "fake-app-secret-0123456789abcdef";

/// One request to a POST endpoint, as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// The raw body, to check how it was encoded.
    pub raw: String,
    pub body: Value,
    /// The errcode the fake answered with (0 = ok).
    pub answered: i64,
}

#[derive(Default)]
pub struct State {
    token_fetches: AtomicUsize,
    issued: AtomicUsize,
    valid_tokens: Mutex<HashSet<String>>,
    expires_in: AtomicI64,
    token_delay_ms: AtomicU64,
    fail_next: Mutex<VecDeque<i64>>,
    /// HTTP statuses (e.g. 503) for the next POSTs carrying a valid token, before `fail_next`.
    fail_next_http: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
    /// The account whose AppID the token endpoint accepts.
    app_id: Mutex<String>,
}

/// The running fake; dropping it leaves the server running until the test's runtime ends.
#[derive(Clone)]
pub struct FakePlatform {
    pub base: String,
    pub state: Arc<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakePlatform {
    pub async fn start() -> FakePlatform {
        Self::start_for(APP_ID).await
    }

    /// A fake that issues tokens to `app_id` (with [`APP_SECRET`]).
    pub async fn start_for(app_id: &str) -> FakePlatform {
        let state = Arc::new(State::default());
        *lock(&state.app_id) = app_id.to_string();
        state.expires_in.store(7200, Ordering::SeqCst);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake platform");
        let port = listener.local_addr().expect("local addr").port();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/cgi-bin/token", web::get().to(token))
                .route("/cgi-bin/menu/create", web::post().to(post_api))
                .route("/cgi-bin/message/custom/send", web::post().to(post_api))
                .route("/cgi-bin/message/custom/typing", web::post().to(post_api))
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        FakePlatform {
            base: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    pub fn token_fetches(&self) -> usize {
        self.state.token_fetches.load(Ordering::SeqCst)
    }

    /// The lifetime given to tokens issued from now on.
    pub fn set_expires_in(&self, secs: i64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Makes token fetches slow, so concurrent callers really overlap.
    pub fn set_token_delay(&self, d: Duration) {
        self.state
            .token_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every token issued so far stops working (the platform answers 40001).
    pub fn expire_tokens(&self) {
        lock(&self.state.valid_tokens).clear();
    }

    /// The next `n` POSTs carrying a valid token are answered with `errcode`.
    pub fn fail_next(&self, n: usize, errcode: i64) {
        lock(&self.state.fail_next).extend(std::iter::repeat_n(errcode, n));
    }

    /// The next `n` POSTs carrying a valid token are answered with HTTP `status` and no JSON
    /// (a proxy in front of the platform having a bad moment); recorded as `-status`.
    pub fn fail_next_http(&self, n: usize, status: u16) {
        lock(&self.state.fail_next_http).extend(std::iter::repeat_n(status, n));
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        lock(&self.state.received)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Bodies of custom sends the fake accepted.
    pub fn delivered(&self) -> Vec<Value> {
        self.received("/cgi-bin/message/custom/send")
            .into_iter()
            .filter(|r| r.answered == 0)
            .map(|r| r.body)
            .collect()
    }
}

fn errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40125 => "invalid appsecret",
        45015 => "response out of time limit or subscription is canceled",
        45009 => "reach max api daily quota limit",
        _ => "fake error",
    }
}

async fn token(state: web::Data<State>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    let delay = state.token_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    state.token_fetches.fetch_add(1, Ordering::SeqCst);
    let ok = q.get("grant_type").map(String::as_str) == Some("client_credential")
        && q.get("appid") == Some(&*lock(&state.app_id))
        && q.get("secret").map(String::as_str) == Some(APP_SECRET);
    if !ok {
        return HttpResponse::Ok().json(json!({"errcode": 40125, "errmsg": errmsg(40125)}));
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("fake-token-{n}");
    lock(&state.valid_tokens).insert(token.clone());
    HttpResponse::Ok().json(json!({
        "access_token": token,
        "expires_in": state.expires_in.load(Ordering::SeqCst),
    }))
}

async fn post_api(
    state: web::Data<State>,
    req: actix_web::HttpRequest,
    q: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let json_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let token_ok = q
        .get("access_token")
        .is_some_and(|t| lock(&state.valid_tokens).contains(t));
    if token_ok {
        let status = lock(&state.fail_next_http).pop_front();
        if let Some(status) = status {
            lock(&state.received).push(Received {
                path: req.path().to_string(),
                raw,
                body: parsed,
                answered: -i64::from(status),
            });
            let status = actix_web::http::StatusCode::from_u16(status).expect("a valid status");
            return HttpResponse::build(status).body("busy");
        }
    }
    let code = if !token_ok {
        40001
    } else if parsed.is_null() || !json_type {
        47001
    } else {
        lock(&state.fail_next).pop_front().unwrap_or(0)
    };
    lock(&state.received).push(Received {
        path: req.path().to_string(),
        raw,
        body: parsed,
        answered: code,
    });
    let msg = if code == 0 { "ok" } else { errmsg(code) };
    HttpResponse::Ok().json(json!({"errcode": code, "errmsg": msg}))
}
