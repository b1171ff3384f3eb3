//! The model endpoint: any OpenAI-compatible `POST {api_base}/chat/completions`, streamed
//! (server-sent events), so the time to the first complete sentence is known.
//!
//! Owns the request and the stream's parsing; knows nothing of pushes, rules or the store.
//! May depend on: reqwest, serde, serde_json, tokio, `settings::Secret`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::settings::Secret;

/// How long a TCP (and TLS) connection to the endpoint may take; the rest of `limit` is for
/// the answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The most a whole answer may weigh on the wire: a model asked for a few hundred tokens sends
/// tens of KiB; anything near this is a server gone wrong, and memory stays bounded.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The most of an error answer's body read (for the debug log only).
const MAX_ERROR_BODY_BYTES: usize = 4 << 10;
/// The most of an endpoint's own error message kept in [`ModelError::Malformed`].
const MAX_ERROR_MESSAGE_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// One chat completion to ask for.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// `https://api.example.com/v1` (no trailing `/chat/completions`).
    pub api_base: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<Secret>,
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f32,
}

/// Tokens the endpoint reported (`usage` in the last chunk, asked for with
/// `stream_options.include_usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// `None` when the endpoint did not report usage.
    pub usage: Option<Usage>,
    /// From the request to the end of the first complete sentence (`。！？!?.` or a line end).
    pub first_sentence: Option<Duration>,
    /// From the request to the stream's end.
    pub took: Duration,
    /// `stop`, `length`, … as the endpoint said.
    pub finish_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model endpoint unreachable: {0}")]
    Http(String),
    #[error("model endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("model stream is malformed: {0}")]
    Malformed(String),
    #[error("model did not finish within {0:?}")]
    Timeout(Duration),
    #[error("model answered nothing")]
    Empty,
}

/// A shared HTTP client for model calls.
#[derive(Clone, Debug)]
pub struct ModelClient {
    http: reqwest::Client,
}

impl Default for ModelClient {
    fn default() -> Self {
        ModelClient::new()
    }
}

impl ModelClient {
    pub fn new() -> ModelClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            // Only a TLS backend that cannot initialise fails here; rustls with bundled roots
            // always does, so this is a property of the build, not of any input.
            .expect("the HTTP client (rustls, bundled roots) initialises");
        ModelClient { http }
    }

    /// Asks for one completion and reads the stream to its end, within `limit` overall.
    pub async fn complete(
        &self,
        req: &ChatRequest,
        limit: Duration,
    ) -> Result<Completion, ModelError> {
        let start = Instant::now();
        match tokio::time::timeout(limit, self.ask(req, start)).await {
            Ok(answer) => answer,
            Err(_) => Err(ModelError::Timeout(limit)),
        }
    }

    async fn ask(&self, req: &ChatRequest, start: Instant) -> Result<Completion, ModelError> {
        let url = format!("{}/chat/completions", req.api_base.trim_end_matches('/'));
        let body = WireRequest {
            model: &req.model,
            messages: &req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
        };
        let mut call = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(key) = &req.api_key {
            // reqwest marks the header sensitive, so it stays out of its own Debug output.
            call = call.bearer_auth(key.expose());
        }
        let mut resp = call.send().await.map_err(http_error)?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_capped(&mut resp, MAX_ERROR_BODY_BYTES).await;
            tracing::debug!(
                status = status.as_u16(),
                body = %String::from_utf8_lossy(&body),
                "model endpoint refused the request"
            );
            return Err(ModelError::Status {
                status: status.as_u16(),
            });
        }
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        let mut answer = Answer::default();
        if is_json {
            // A server that ignores `stream: true` answers one chat.completion object.
            let body = read_capped(&mut resp, MAX_BODY_BYTES + 1).await;
            if body.len() > MAX_BODY_BYTES {
                return Err(too_big());
            }
            let body = std::str::from_utf8(&body)
                .map_err(|_| ModelError::Malformed("the answer is not UTF-8".into()))?;
            answer.on_data(body, start)?;
        } else {
            let mut sse = SseDecoder::default();
            let mut events = Vec::new();
            let mut read = 0usize;
            'stream: loop {
                let Some(bytes) = resp.chunk().await.map_err(http_error)? else {
                    sse.finish(&mut events)?;
                    for data in events.drain(..) {
                        if answer.on_data(&data, start)? == Flow::Done {
                            break;
                        }
                    }
                    break;
                };
                read += bytes.len();
                if read > MAX_BODY_BYTES {
                    return Err(too_big());
                }
                sse.feed(&bytes, &mut events)?;
                for data in events.drain(..) {
                    if answer.on_data(&data, start)? == Flow::Done {
                        break 'stream;
                    }
                }
            }
        }
        answer.finish(start)
    }
}

#[derive(serde::Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    max_tokens: u32,
    temperature: f32,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(serde::Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One `data:` payload: a `chat.completion.chunk` (or, unstreamed, a `chat.completion`).
#[derive(Deserialize)]
struct WireChunk {
    choices: Option<Vec<WireChoice>>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    delta: Option<WireContent>,
    /// The unstreamed answer's field.
    message: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    total_tokens: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

/// The answer as it is assembled from the stream.
#[derive(Default)]
struct Answer {
    text: String,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    first_sentence: Option<Duration>,
    /// Bytes of `text` known to hold no sentence end.
    scanned: usize,
}

impl Answer {
    fn on_data(&mut self, data: &str, start: Instant) -> Result<Flow, ModelError> {
        if data.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|_| ModelError::Malformed("a data line that is not JSON".into()))?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(ModelError::Malformed(format!(
                "the endpoint reported an error: {}",
                error_message(error)
            )));
        }
        let chunk: WireChunk = serde_json::from_value(value)
            .map_err(|_| ModelError::Malformed("a chunk of an unexpected shape".into()))?;
        if let Some(u) = &chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u
                    .total_tokens
                    .unwrap_or(u.prompt_tokens + u.completion_tokens),
            });
        }
        let Some(choices) = chunk.choices else {
            if chunk.usage.is_some() {
                return Ok(Flow::More);
            }
            return Err(ModelError::Malformed("a chunk without choices".into()));
        };
        // One completion is asked for (n = 1): choice 0. Some servers open with a chunk of no
        // choices (content-filter results); it carries nothing to keep.
        let Some(choice) = choices.into_iter().find(|c| c.index == 0) else {
            return Ok(Flow::More);
        };
        let content = choice
            .delta
            .or(choice.message)
            .and_then(|d| d.content)
            .unwrap_or_default();
        if !content.is_empty() {
            self.text.push_str(&content);
            if self.first_sentence.is_none() && self.scan_sentence_end(false) {
                self.first_sentence = Some(start.elapsed());
            }
        }
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        Ok(Flow::More)
    }

    /// Whether `text` now holds a complete sentence. `.`, `!`, `?` end one only before white
    /// space (or at the end of the whole answer: `at_end`), so `3.14` split after the point is
    /// not a sentence; `。！？` and a line end always do.
    fn scan_sentence_end(&mut self, at_end: bool) -> bool {
        let rest = &self.text[self.scanned..];
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '。' | '！' | '？' | '\n' => return true,
                '.' | '!' | '?' => match chars.peek() {
                    Some((_, next)) if next.is_whitespace() => return true,
                    Some(_) => {}
                    None if at_end => return true,
                    None => {
                        // Decided by what comes next.
                        self.scanned += i;
                        return false;
                    }
                },
                _ => {}
            }
        }
        self.scanned = self.text.len();
        false
    }

    fn finish(mut self, start: Instant) -> Result<Completion, ModelError> {
        let took = start.elapsed();
        if self.text.trim().is_empty() {
            return Err(ModelError::Empty);
        }
        if self.first_sentence.is_none() && self.scan_sentence_end(true) {
            self.first_sentence = Some(took);
        }
        tracing::debug!(
            took_ms = took.as_millis() as u64,
            chars = self.text.chars().count(),
            completion_tokens = self.usage.map(|u| u.completion_tokens),
            finish_reason = self.finish_reason.as_deref(),
            "model answered"
        );
        Ok(Completion {
            text: self.text,
            usage: self.usage,
            first_sentence: self.first_sentence,
            took,
            finish_reason: self.finish_reason,
        })
    }
}

/// The message of an `error` object (`{"message": …}`) or string, cut short.
fn error_message(error: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or(error.as_str())
        .unwrap_or("no message");
    message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
}

fn too_big() -> ModelError {
    ModelError::Malformed(format!("the answer is over {MAX_BODY_BYTES} bytes"))
}

/// A transport failure, without the URL (an endpoint's URL may carry a key in its query) but
/// with its causes, which say what failed (`Connection refused`, a TLS error).
fn http_error(e: reqwest::Error) -> ModelError {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    ModelError::Http(message)
}

/// At most `cap` bytes of the body; a body that fails midway gives what arrived.
async fn read_capped(resp: &mut reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let room = cap - body.len();
                body.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// Server-sent events, as the HTML standard defines them, fed in whatever pieces the network
/// delivers: lines end with `\n`, `\r\n` or `\r` (a `\r\n` may straddle two pieces), a line
/// starting with `:` is a comment, `data:` lines (with or without the space) accumulate, other
/// fields are ignored, and a blank line ends an event. Splitting only at these ASCII bytes keeps
/// multi-byte characters whole however the pieces fall.
#[derive(Default)]
struct SseDecoder {
    /// The unfinished line.
    line: Vec<u8>,
    /// The current event's data, each line followed by `\n`.
    data: String,
    has_data: bool,
    /// The last piece ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
}

impl SseDecoder {
    /// Reads a piece; the data of each event it completes is pushed to `events`.
    fn feed(&mut self, mut bytes: &[u8], events: &mut Vec<String>) -> Result<(), ModelError> {
        if std::mem::take(&mut self.after_cr) && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        while let Some(i) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&bytes[..i]);
            let cr = bytes[i] == b'\r';
            bytes = &bytes[i + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            self.end_line(events)?;
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The stream ended: an unfinished last line and event still count (some servers close
    /// without the final blank line).
    fn finish(&mut self, events: &mut Vec<String>) -> Result<(), ModelError> {
        if !self.line.is_empty() {
            self.end_line(events)?;
        }
        self.dispatch(events);
        Ok(())
    }

    fn end_line(&mut self, events: &mut Vec<String>) -> Result<(), ModelError> {
        let line = std::str::from_utf8(&self.line)
            .map_err(|_| ModelError::Malformed("a line that is not UTF-8".into()))?;
        if line.is_empty() {
            self.dispatch(events);
        } else if !line.starts_with(':') {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            if field == "data" {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
        }
        self.line.clear();
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<String>) {
        if std::mem::take(&mut self.has_data) {
            let mut data = std::mem::take(&mut self.data);
            data.pop();
            events.push(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<String>, ModelError> {
        let mut sse = SseDecoder::default();
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            sse.feed(&stream[from..cut], &mut events)?;
            from = cut;
        }
        sse.finish(&mut events)?;
        Ok(events)
    }

    #[test]
    fn events_are_the_same_however_the_stream_is_cut() {
        let stream = ": keep-alive\r\n\
                      event: message\r\n\
                      id: 7\r\n\
                      data: {\"a\":\"第一块😀\"}\r\n\
                      \r\n\
                      data:{\"b\":2}\n\
                      data: second line\n\
                      \n\
                      retry: 100\r\r\
                      data\n\n\
                      data: [DONE]\n\n"
            .as_bytes();
        let want = vec![
            "{\"a\":\"第一块😀\"}".to_string(),
            "{\"b\":2}\nsecond line".to_string(),
            String::new(),
            "[DONE]".to_string(),
        ];
        assert_eq!(decode_in_pieces(stream, &[]).unwrap(), want);
        for i in 0..=stream.len() {
            assert_eq!(decode_in_pieces(stream, &[i]).unwrap(), want, "cut at {i}");
            for j in i..=stream.len() {
                assert_eq!(
                    decode_in_pieces(stream, &[i, j]).unwrap(),
                    want,
                    "cuts {i},{j}"
                );
            }
        }
        let one_by_one: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(decode_in_pieces(stream, &one_by_one).unwrap(), want);
    }

    #[test]
    fn an_event_left_open_at_the_end_still_counts_and_a_comment_alone_is_nothing() {
        assert_eq!(
            decode_in_pieces(b"data: [DONE]", &[]).unwrap(),
            vec!["[DONE]".to_string()]
        );
        assert!(decode_in_pieces(b": ping\n\n: ping\n\n", &[3])
            .unwrap()
            .is_empty());
        assert!(matches!(
            decode_in_pieces(b"data: \xff\xfe\n\n", &[]),
            Err(ModelError::Malformed(_))
        ));
    }

    fn sentence_at(pieces: &[&str]) -> Option<usize> {
        let mut a = Answer::default();
        for (n, p) in pieces.iter().enumerate() {
            a.text.push_str(p);
            if a.scan_sentence_end(false) {
                return Some(n);
            }
        }
        None
    }

    #[test]
    fn a_sentence_ends_at_chinese_punctuation_a_line_end_or_a_point_before_a_space() {
        assert_eq!(sentence_at(&["好的", "。后面"]), Some(1));
        assert_eq!(sentence_at(&["真的吗", "？"]), Some(1));
        assert_eq!(sentence_at(&["第一行", "\n第二行"]), Some(1));
        assert_eq!(sentence_at(&["It is done", ".", " Next"]), Some(2));
        assert_eq!(sentence_at(&["Version 3.", "14 is out", "!"]), None);
        assert_eq!(sentence_at(&["Version 3.", "14 is out", "! Yes"]), Some(2));
        assert_eq!(sentence_at(&["e.g", ".", "x", " and"]), None);
        assert_eq!(sentence_at(&["没有句号", "也没有"]), None);
        let mut a = Answer {
            text: "All done!".into(),
            ..Answer::default()
        };
        assert!(!a.scan_sentence_end(false), "undecided mid-stream");
        assert!(a.scan_sentence_end(true), "a sentence at the answer's end");
    }

    #[test]
    fn chunks_are_read_as_the_api_sends_them() {
        let start = Instant::now();
        let mut a = Answer::default();
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#;
        assert_eq!(a.on_data(role, start).unwrap(), Flow::More);
        let filter = r#"{"choices":[],"prompt_filter_results":[]}"#;
        assert_eq!(a.on_data(filter, start).unwrap(), Flow::More);
        let c = r#"{"choices":[{"index":0,"delta":{"content":"你好"},"finish_reason":"stop"}]}"#;
        a.on_data(c, start).unwrap();
        let u =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        a.on_data(u, start).unwrap();
        assert_eq!(a.on_data(" [DONE]", start).unwrap(), Flow::Done);
        let done = a.finish(start).unwrap();
        assert_eq!(done.text, "你好");
        assert_eq!(done.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            done.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5
            })
        );
        assert_eq!(done.first_sentence, None, "no sentence end in 你好");

        let bad = |data: &str| match Answer::default().on_data(data, start) {
            Err(ModelError::Malformed(why)) => why,
            other => panic!("{data}: {other:?}"),
        };
        assert_eq!(bad("{\"choices\": [{"), "a data line that is not JSON");
        assert_eq!(bad("{\"id\": \"x\"}"), "a chunk without choices");
        assert_eq!(
            bad(r#"{"choices":[{"index":0,"delta":{"content":3}}]}"#),
            "a chunk of an unexpected shape"
        );
        assert_eq!(
            bad(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
            "the endpoint reported an error: overloaded"
        );
        assert_eq!(
            bad(r#"{"error":"quota exceeded"}"#),
            "the endpoint reported an error: quota exceeded"
        );
        assert!(matches!(
            Answer::default().finish(start),
            Err(ModelError::Empty)
        ));
    }
}
