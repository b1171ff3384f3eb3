//! A fake of an OpenAI-compatible chat-completions API on a real HTTP server (127.0.0.1, any
//! port): `POST /v1/chat/completions` checked as the real API checks it and answered with a
//! server-sent-event stream in OpenAI's chunk format, scripted per question.
//!
//! What a script controls (see [`Script`]): the answer and how it is cut into chunks, delays
//! before the response and between chunks, the usage it reports, an HTTP error instead of an
//! answer, a garbage `data:` line mid-stream, and a stream that never ends.
//!
//! Where it differs from the real API, on purpose:
//! - It only streams: a request without `stream: true` is refused (400), because mpgate never
//!   asks for a whole answer at once and a client that forgot to ask must fail loudly here.
//! - Any `Authorization` is accepted (and recorded): tests check what was sent, and a
//!   [`Script::status`] of 401 plays the refusal of a bad key.
//! - `finish_reason: "stop"` rides on the last content chunk, as several compatible servers do,
//!   not on a separate empty chunk.

use std::net::TcpListener;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The path the real API answers chat completions on, below the host.
pub const COMPLETIONS: &str = "/v1/chat/completions";

/// How the fake answers one request.
#[derive(Clone, Debug)]
pub struct Script {
    /// Streamed as `delta.content` chunks of `chunk_chars` characters.
    pub answer: String,
    /// Before the response starts (its status line and headers included).
    pub first_delay: Duration,
    /// Between chunks.
    pub chunk_delay: Duration,
    /// Characters (not bytes) per content chunk; 0 is read as 1.
    pub chunk_chars: usize,
    /// `(prompt, completion)` tokens in a final usage chunk, sent when the request asked for it
    /// with `stream_options.include_usage`.
    pub usage: Option<(u64, u64)>,
    /// Answer this HTTP status with an OpenAI-style error JSON instead of a stream.
    pub status: Option<u16>,
    /// A garbage `data:` line after this many content chunks (the stream then goes on).
    pub malformed_after: Option<usize>,
    /// Never end the stream after the content chunks (no usage, no `[DONE]`); the fake lets go
    /// when the client hangs up.
    pub hang: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            answer: "好的。".to_string(),
            first_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunk_chars: 8,
            usage: Some((120, 40)),
            status: None,
            malformed_after: None,
            hang: false,
        }
    }
}

impl Script {
    /// The default script with this answer.
    pub fn answer(text: &str) -> Script {
        Script {
            answer: text.to_string(),
            ..Script::default()
        }
    }
}

#[derive(Default)]
struct State {
    default: Mutex<Script>,
    /// `(needle, script)` in insertion order.
    on: Mutex<Vec<(String, Script)>>,
    /// Every request to [`COMPLETIONS`], refused or not: its JSON body (`Null` when the body
    /// is not JSON) and its `Authorization` header.
    received: Mutex<Vec<(Value, Option<String>)>>,
    seq: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake. Clones share it; the server runs until the test's runtime ends.
#[derive(Clone)]
pub struct FakeAi {
    base: String,
    state: Arc<State>,
}

impl FakeAi {
    /// A fake on 127.0.0.1 and a port of the system's choosing, answering [`Script::default`].
    pub async fn start() -> FakeAi {
        let state = Arc::new(State::default());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake model API");
        let port = listener.local_addr().expect("local addr").port();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(serve))
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        FakeAi {
            base: format!("http://127.0.0.1:{port}/v1"),
            state,
        }
    }

    /// The API base an operator would configure: `http://127.0.0.1:PORT/v1`.
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// The script for questions no [`FakeAi::on`] needle matches.
    pub fn set_default(&self, s: Script) {
        *lock(&self.state.default) = s;
    }

    /// The script for requests whose last user message contains `needle`; the first needle
    /// added that matches wins.
    pub fn on(&self, needle: &str, s: Script) {
        lock(&self.state.on).push((needle.to_string(), s));
    }

    /// Chat-completion requests received, refused ones included.
    pub fn calls(&self) -> usize {
        lock(&self.state.received).len()
    }

    /// Their JSON bodies, in order (`Null` for a body that was not JSON).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state.received)
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    /// Their `Authorization` headers, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        lock(&self.state.received)
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
}

/// An OpenAI-style error answer.
fn error(status: u16, kind: &str, code: Option<&str>, message: &str) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    }))
}

/// The error body the real API gives for a status a script asks for.
fn scripted_error(status: u16) -> HttpResponse {
    let (kind, code, message) = match status {
        400 => ("invalid_request_error", None, "The request was not valid."),
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
            "Country, region, or territory not supported",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist or you do not have access to it.",
        ),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests.",
        ),
        503 => (
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.",
        ),
        _ => (
            "server_error",
            None,
            "The server had an error while processing your request.",
        ),
    };
    error(status, kind, code, message)
}

/// Why a request is not one the real API would take, as its 400 says.
fn check_request(req: &HttpRequest, body: &Value) -> Result<(), (String, Option<&'static str>)> {
    let json_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_type {
        return Err(("Content-Type must be application/json.".into(), None));
    }
    if body.is_null() {
        return Err((
            "We could not parse the JSON body of your request.".into(),
            None,
        ));
    }
    if body["model"].as_str().is_none_or(str::is_empty) {
        return Err(("you must provide a model parameter".into(), Some("model")));
    }
    let Some(messages) = body["messages"].as_array() else {
        return Err((
            "Missing required parameter: 'messages'.".into(),
            Some("messages"),
        ));
    };
    if messages.is_empty() {
        return Err((
            "Invalid 'messages': empty array. Expected an array with minimum length 1.".into(),
            Some("messages"),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let role_ok = m["role"]
            .as_str()
            .is_some_and(|r| ["system", "developer", "user", "assistant", "tool"].contains(&r));
        let content_ok = m["content"].is_string() || m["content"].is_array();
        if !role_ok || !content_ok {
            return Err((
                format!("Invalid 'messages[{i}]': expected an object with 'role' and 'content'."),
                Some("messages"),
            ));
        }
    }
    if body["stream"] != json!(true) {
        return Err((
            "This fake only streams: set 'stream': true.".into(),
            Some("stream"),
        ));
    }
    Ok(())
}

/// The text of the last user message (string content, or the text parts of an array).
fn last_user_text(body: &Value) -> String {
    let Some(m) = body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

async fn serve(st: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if req.path() != COMPLETIONS {
        return error(
            404,
            "invalid_request_error",
            Some("unknown_url"),
            &format!("Unknown request URL: {} {}.", req.method(), req.path()),
        );
    }
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    lock(&st.received).push((parsed.clone(), authorization));
    if req.method() != actix_web::http::Method::POST {
        return error(
            405,
            "invalid_request_error",
            None,
            &format!("Not allowed to {} on {COMPLETIONS}.", req.method()),
        );
    }
    if let Err((message, param)) = check_request(&req, &parsed) {
        let status = StatusCode::BAD_REQUEST;
        return HttpResponse::build(status).json(json!({
            "error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}
        }));
    }
    let question = last_user_text(&parsed);
    let script = lock(&st.on)
        .iter()
        .find(|(needle, _)| question.contains(needle.as_str()))
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| lock(&st.default).clone());
    if !script.first_delay.is_zero() {
        tokio::time::sleep(script.first_delay).await;
    }
    if let Some(status) = script.status {
        return scripted_error(status);
    }
    let n = st.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let meta = Meta {
        id: format!("chatcmpl-fake{n:06}"),
        created: chrono::Utc::now().timestamp(),
        model: parsed["model"].as_str().unwrap_or_default().to_string(),
        include_usage: parsed["stream_options"]["include_usage"] == json!(true),
    };
    let (tx, rx) = mpsc::channel::<web::Bytes>(16);
    tokio::spawn(stream(script, meta, tx));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .body(Events(rx))
}

/// What every chunk of one answer repeats.
struct Meta {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
}

impl Meta {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        // With include_usage the real API puts `usage: null` on every chunk but the last.
        if self.include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        c
    }
}

fn event(data: &str) -> web::Bytes {
    web::Bytes::from(format!("data: {data}\n\n"))
}

/// Writes one answer's events; stops early when the client hangs up (the send fails).
async fn stream(script: Script, meta: Meta, tx: mpsc::Sender<web::Bytes>) {
    let chars: Vec<char> = script.answer.chars().collect();
    let pieces: Vec<String> = chars
        .chunks(script.chunk_chars.max(1))
        .map(|c| c.iter().collect())
        .collect();
    let choice = |delta: Value, finish: Option<&str>| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut out = vec![event(
        &meta
            .chunk(
                choice(json!({"role": "assistant", "content": ""}), None),
                None,
            )
            .to_string(),
    )];
    for (i, piece) in pieces.iter().enumerate() {
        if script.malformed_after == Some(i) {
            out.push(event("{\"choices\": [{\"delta\": {\"content\": \"oops"));
        }
        let last = i + 1 == pieces.len();
        let chunk = meta.chunk(
            choice(json!({"content": piece}), last.then_some("stop")),
            None,
        );
        out.push(event(&chunk.to_string()));
    }
    if pieces.is_empty() {
        out.push(event(
            &meta
                .chunk(choice(json!({}), Some("stop")), None)
                .to_string(),
        ));
    }
    if script.malformed_after.is_some_and(|n| n >= pieces.len()) {
        out.push(event("not json at all"));
    }
    // The role chunk goes out with the first content chunk, as one write.
    let mut first = out.remove(0).to_vec();
    if !out.is_empty() {
        first.extend_from_slice(&out.remove(0));
    }
    let mut queue = vec![web::Bytes::from(first)];
    queue.extend(out);
    for (i, bytes) in queue.into_iter().enumerate() {
        if i > 0 && !script.chunk_delay.is_zero() {
            tokio::time::sleep(script.chunk_delay).await;
        }
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
    if script.hang {
        tx.closed().await;
        return;
    }
    if meta.include_usage {
        if let Some((prompt, completion)) = script.usage {
            let usage = json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            });
            let chunk = meta.chunk(json!([]), Some(usage));
            if tx.send(event(&chunk.to_string())).await.is_err() {
                return;
            }
        }
    }
    let _ = tx.send(event("[DONE]")).await;
}

/// A response body fed from a channel: each message is written as it comes, and the body ends
/// when the sender is dropped. Dropping the body (the client hung up) closes the channel.
struct Events(mpsc::Receiver<web::Bytes>);

impl MessageBody for Events {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        self.get_mut().0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

/// The fake against a plain HTTP client and a deliberately simple SSE reading, so what the
/// client under test is checked against is itself checked.
mod self_checks {
    use std::time::Instant;

    use super::*;

    /// A whole response: status, content type, and the `data:` payloads in order.
    struct Answer {
        status: u16,
        content_type: String,
        body: String,
    }

    impl Answer {
        fn data(&self) -> Vec<String> {
            self.body
                .split("\n\n")
                .filter(|e| !e.is_empty())
                .map(|e| {
                    e.strip_prefix("data: ")
                        .unwrap_or_else(|| panic!("an event that is not one data line: {e:?}"))
                        .to_string()
                })
                .collect()
        }
        fn chunks(&self) -> Vec<Value> {
            self.data()
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str(d).expect("a JSON chunk"))
                .collect()
        }
        fn text(&self) -> String {
            self.chunks()
                .iter()
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(String::from)
                })
                .collect()
        }
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).expect("a JSON body")
        }
    }

    fn body_for(question: &str) -> Value {
        json!({
            "model": "fake-model",
            "messages": [
                {"role": "system", "content": "你是助教。"},
                {"role": "user", "content": "上一个问题"},
                {"role": "assistant", "content": "上一个回答"},
                {"role": "user", "content": question},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    }

    async fn post(fake: &FakeAi, body: &Value, key: Option<&str>) -> Answer {
        let mut req = reqwest::Client::new()
            .post(format!("{}/chat/completions", fake.base()))
            .json(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.expect("the fake answers");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.text().await.expect("a whole body");
        Answer {
            status,
            content_type,
            body,
        }
    }

    #[tokio::test]
    async fn an_answer_streams_in_openai_chunks_with_usage_and_done() {
        let fake = FakeAi::start().await;
        let answer = "第一句话说完了。Second sentence here! 第三句？";
        fake.set_default(Script::answer(answer));
        let a = post(&fake, &body_for("你好"), Some("sk-test")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type, "text/event-stream");
        assert_eq!(a.data().last().map(String::as_str), Some("[DONE]"));
        let chunks = a.chunks();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert!(chunks.iter().all(|c| c["model"] == "fake-model"));
        assert_eq!(a.text(), answer);
        let contents: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .filter(|s| !s.is_empty())
            .collect();
        let n = answer.chars().count();
        assert_eq!(contents.len(), n.div_ceil(8), "chunks of 8 characters");
        assert!(contents[..contents.len() - 1]
            .iter()
            .all(|c| c.chars().count() == 8));
        let content_chunks: Vec<&Value> = chunks
            .iter()
            .filter(|c| !c["choices"].as_array().unwrap().is_empty())
            .collect();
        let finishes: Vec<&Value> = content_chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .collect();
        assert_eq!(finishes.last().unwrap().as_str(), Some("stop"));
        assert!(finishes[..finishes.len() - 1].iter().all(|f| f.is_null()));
        assert!(
            content_chunks.iter().all(|c| c["usage"].is_null()),
            "usage: null on every chunk but the last"
        );
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160})
        );
        assert_eq!(fake.calls(), 1);
        assert_eq!(fake.requests(), vec![body_for("你好")]);
        assert_eq!(
            fake.authorizations(),
            vec![Some("Bearer sk-test".to_string())]
        );
    }

    #[tokio::test]
    async fn usage_is_sent_only_when_asked_for_and_chunk_size_follows_the_script() {
        let fake = FakeAi::start().await;
        fake.set_default(Script {
            chunk_chars: 1,
            usage: Some((7, 3)),
            ..Script::answer("一二三")
        });
        let mut body = body_for("你好");
        body.as_object_mut().unwrap().remove("stream_options");
        let a = post(&fake, &body, None).await;
        assert_eq!(a.text(), "一二三");
        assert!(a.chunks().iter().all(|c| c.get("usage").is_none()));
        assert_eq!(a.chunks().len(), 4, "the role chunk and one per character");
        assert_eq!(fake.authorizations(), vec![None]);

        fake.set_default(Script {
            usage: None,
            ..Script::answer("好")
        });
        let a = post(&fake, &body_for("你好"), None).await;
        assert_eq!(a.text(), "好");
        assert!(a.chunks().iter().all(|c| c["usage"].is_null()));
    }

    #[tokio::test]
    async fn scripts_are_chosen_by_the_last_user_message_first_match_winning() {
        let fake = FakeAi::start().await;
        fake.on("退款", Script::answer("退款答案"));
        fake.on("退", Script::answer("不会被选中"));
        fake.on("课程", Script::answer("课程答案"));
        assert_eq!(
            post(&fake, &body_for("怎么退款"), None).await.text(),
            "退款答案"
        );
        assert_eq!(
            post(&fake, &body_for("课程几点"), None).await.text(),
            "课程答案"
        );
        assert_eq!(post(&fake, &body_for("你好"), None).await.text(), "好的。");
        // An earlier user turn mentioning a needle does not count.
        let mut body = body_for("你好");
        body["messages"][1]["content"] = json!("退款");
        assert_eq!(post(&fake, &body, None).await.text(), "好的。");
        assert_eq!(fake.calls(), 4);
    }

    #[tokio::test]
    async fn requests_the_real_api_refuses_are_refused_with_its_error_shape() {
        let fake = FakeAi::start().await;
        let mut cases: Vec<(&str, Value)> = Vec::new();
        let mut b = body_for("x");
        b.as_object_mut().unwrap().remove("model");
        cases.push(("no model", b));
        let mut b = body_for("x");
        b["model"] = json!(3);
        cases.push(("a model that is not a string", b));
        let mut b = body_for("x");
        b["model"] = json!("");
        cases.push(("an empty model", b));
        let mut b = body_for("x");
        b["messages"] = json!([]);
        cases.push(("no messages", b));
        let mut b = body_for("x");
        b["messages"] = json!([{"role": "user"}]);
        cases.push(("a message without content", b));
        let mut b = body_for("x");
        b["messages"] = json!([{"role": "wizard", "content": "x"}]);
        cases.push(("an unknown role", b));
        let mut b = body_for("x");
        b.as_object_mut().unwrap().remove("stream");
        cases.push(("not streamed", b));
        for (why, body) in &cases {
            let a = post(&fake, body, None).await;
            assert_eq!(a.status, 400, "{why}");
            assert_eq!(a.json()["error"]["type"], "invalid_request_error", "{why}");
            assert!(a.json()["error"]["message"].is_string(), "{why}");
        }

        let client = reqwest::Client::new();
        let url = format!("{}/chat/completions", fake.base());
        let text_plain = client
            .post(&url)
            .header("content-type", "text/plain")
            .body(body_for("x").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(text_plain.status(), 400, "JSON sent as text/plain");
        let not_json = client
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"model\":")
            .send()
            .await
            .unwrap();
        assert_eq!(not_json.status(), 400, "a body that is not JSON");
        let get = client.get(&url).send().await.unwrap();
        assert_eq!(get.status(), 405);
        let elsewhere = client
            .post(format!("{}/completions", fake.base()))
            .json(&body_for("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(elsewhere.status(), 404, "another path is not the chat API");
        assert_eq!(
            fake.calls(),
            cases.len() + 3,
            "every request to the chat path is recorded, refused or not"
        );
        assert_eq!(fake.requests()[cases.len() + 1], Value::Null);
    }

    #[tokio::test]
    async fn a_scripted_status_is_answered_with_an_openai_error_after_the_first_delay() {
        let fake = FakeAi::start().await;
        fake.on(
            "坏",
            Script {
                status: Some(401),
                first_delay: Duration::from_millis(300),
                ..Script::default()
            },
        );
        fake.on(
            "忙",
            Script {
                status: Some(503),
                ..Script::default()
            },
        );
        let start = Instant::now();
        let a = post(&fake, &body_for("坏钥匙"), Some("sk-wrong")).await;
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(a.status, 401);
        assert_eq!(a.json()["error"]["code"], "invalid_api_key");
        let a = post(&fake, &body_for("很忙"), None).await;
        assert_eq!(a.status, 503);
        assert_eq!(a.json()["error"]["type"], "server_error");
    }

    #[tokio::test]
    async fn a_malformed_line_comes_after_the_chunks_the_script_says() {
        let fake = FakeAi::start().await;
        fake.set_default(Script {
            chunk_chars: 2,
            malformed_after: Some(2),
            ..Script::answer("一二三四五六")
        });
        let a = post(&fake, &body_for("x"), None).await;
        let data = a.data();
        let bad = data
            .iter()
            .position(|d| serde_json::from_str::<Value>(d).is_err() && d != "[DONE]")
            .expect("a garbage line");
        // The role chunk, then two content chunks, then the garbage.
        assert_eq!(bad, 3);
        let contents: String = data[..bad]
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        assert_eq!(contents, "一二三四");
    }

    #[tokio::test]
    async fn delays_and_a_hanging_stream_are_played_as_scripted() {
        let fake = FakeAi::start().await;
        fake.set_default(Script {
            chunk_chars: 1,
            chunk_delay: Duration::from_millis(100),
            ..Script::answer("一二三")
        });
        let start = Instant::now();
        let a = post(&fake, &body_for("x"), None).await;
        assert_eq!(a.text(), "一二三");
        // A pause before each content chunk but the first (usage and [DONE] follow at once).
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );

        fake.set_default(Script {
            hang: true,
            ..Script::answer("说到一半")
        });
        let resp = reqwest::Client::new()
            .post(format!("{}/chat/completions", fake.base()))
            .json(&body_for("x"))
            .send()
            .await
            .unwrap();
        let mut resp = resp;
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(c) = resp.chunk().await.unwrap() {
                got.extend_from_slice(&c);
            }
        })
        .await;
        assert!(read.is_err(), "the stream does not end");
        let got = String::from_utf8(got).unwrap();
        assert!(
            got.contains("说到一半"),
            "the chunks came before the hang: {got}"
        );
        assert!(!got.contains("[DONE]"));
    }
}
