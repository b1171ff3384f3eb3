//! Rule action `webhook`: the push goes as JSON to an operator's URL (a CRM, a course
//! platform, a model), and what it answers becomes the reply.
//!
//! The request: `POST url` with `Content-Type: application/json`, `X-Mpgate-Timestamp: <unix>`
//! and, when `MPGATE_WEBHOOK_SECRET` is set, `X-Mpgate-Signature: sha256=<hex>` =
//! HMAC-SHA256(secret, `<timestamp>.<body>`), so the receiver can check it came from mpgate and
//! is fresh. The body is [`WebhookPayload`].
//!
//! The answer: HTTP 2xx with JSON `{"text": "…"}` (a text reply) or `{}` / `{"text": null}` /
//! 204 (no reply). Anything else is a failure, answered with the rule's fallback.
//!
//! The 5-second budget: [`WebhookClient::answer_within`] waits at most the rule's timeout. A
//! late answer is not lost: the push is answered `success` and the answer follows as a
//! customer-service message through [`CustomerService`] (when the AppSecret is set; otherwise
//! it is logged and dropped). A failure, early or late, gets the rule's fallback.
//!
//! May depend on: reqwest, hmac/sha2, serde, tokio, `rules::WebhookAction`, the platform's
//! [`CustomerService`].

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{CustomMessage, CustomerService};
use crate::metrics::{Metrics, WebhookOutcome};
use crate::rules::WebhookAction;
use crate::settings::Secret;

/// What the operator's endpoint receives.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookPayload {
    pub openid: String,
    /// `text`, `voice`, `image`, `event:CLICK`, …
    pub msg_type: String,
    /// The user's text (or voice recognition), if any.
    pub text: Option<String>,
    /// Menu key, QR scene or similar, for events.
    pub event_key: Option<String>,
    pub create_time: i64,
    /// The rule that fired.
    pub rule: String,
    pub tags: Vec<String>,
    pub channel: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook unreachable or timed out: {0}")]
    Http(String),
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("webhook answer is not the expected JSON: {0}")]
    Decode(String),
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    text: Option<String>,
}

/// A shared HTTP client for webhook calls.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    secret: Option<Secret>,
    metrics: Metrics,
}

/// Hard ceiling for a late answer: after this the subscriber has moved on.
pub const LATE_LIMIT: Duration = Duration::from_secs(60);

impl WebhookClient {
    pub fn new(secret: Option<Secret>) -> WebhookClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(LATE_LIMIT)
            .build()
            // Only a TLS backend that cannot initialise fails here: a property of the build.
            .expect("the HTTP client (rustls, bundled roots) initialises");
        WebhookClient {
            http,
            secret,
            metrics: Metrics::default(),
        }
    }

    /// Counts calls and their latency into `metrics` (the gateway's).
    pub fn with_metrics(mut self, metrics: Metrics) -> WebhookClient {
        self.metrics = metrics;
        self
    }

    /// The signature header value for a body sent at `timestamp`.
    pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Calls the endpoint; `Ok(None)` means "no reply".
    pub async fn call(
        &self,
        url: &str,
        payload: &WebhookPayload,
    ) -> Result<Option<String>, WebhookError> {
        let started = std::time::Instant::now();
        let res = self.call_once(url, payload).await;
        let outcome = match &res {
            Ok(Some(_)) => WebhookOutcome::Reply,
            Ok(None) => WebhookOutcome::NoReply,
            Err(WebhookError::Http(_)) => WebhookOutcome::HttpError,
            Err(WebhookError::Status(_)) => WebhookOutcome::BadStatus,
            Err(WebhookError::Decode(_)) => WebhookOutcome::BadAnswer,
        };
        self.metrics.webhook_call(outcome, started.elapsed());
        res
    }

    async fn call_once(
        &self,
        url: &str,
        payload: &WebhookPayload,
    ) -> Result<Option<String>, WebhookError> {
        let body = serde_json::to_vec(payload).map_err(|e| WebhookError::Decode(e.to_string()))?;
        let ts = chrono::Utc::now().timestamp();
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-mpgate-timestamp", ts.to_string());
        if let Some(s) = &self.secret {
            req = req.header("x-mpgate-signature", Self::signature(s.expose(), ts, &body));
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| WebhookError::Http(e.without_url().to_string()))?;
        let status = resp.status();
        if status.as_u16() == 204 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(WebhookError::Status(status.as_u16()));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| WebhookError::Http(e.without_url().to_string()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let a: Answer =
            serde_json::from_slice(&bytes).map_err(|e| WebhookError::Decode(e.to_string()))?;
        Ok(a.text.filter(|t| !t.trim().is_empty()))
    }
}

impl WebhookClient {
    /// The text to answer the push with now, if the endpoint answers within `call.timeout`
    /// (its fallback if it fails). `None`: no passive reply, either because the endpoint
    /// answered "no reply" or because it is late, in which case its answer (or the fallback)
    /// goes to `to` through `cs` once it comes.
    pub async fn answer_within(
        &self,
        call: &WebhookAction,
        payload: WebhookPayload,
        to: &str,
        cs: &CustomerService,
    ) -> Option<String> {
        let client = self.clone();
        let url = call.url.clone();
        let origin = format!("webhook:{}", payload.rule);
        let mut task = tokio::spawn(async move { client.call(&url, &payload).await });
        let fallback = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, origin = %origin, "webhook failed; answering with the fallback");
            call.fallback.clone()
        };
        match tokio::time::timeout(call.timeout, &mut task).await {
            Ok(Ok(Ok(text))) => text,
            Ok(Ok(Err(e))) => fallback(&e),
            Ok(Err(e)) => fallback(&e),
            Err(_) => {
                self.metrics.webhook_over_budget();
                tracing::info!(origin = %origin, "webhook slower than its budget; answering later");
                let cs = cs.clone();
                let to = to.to_string();
                let late_fallback = call.fallback.clone();
                tokio::spawn(async move {
                    let text = match task.await {
                        Ok(Ok(text)) => text,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, origin = %origin, "late webhook failed");
                            late_fallback
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, origin = %origin, "late webhook task failed");
                            late_fallback
                        }
                    };
                    if let Some(content) = text {
                        cs.send(CustomMessage::Text { to, content }, &origin);
                    }
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = WebhookClient::signature("s3cret", 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, WebhookClient::signature("s3cret", 1_700_000_001, b"{}"));
        assert_ne!(a, WebhookClient::signature("s3cret", 1_700_000_000, b"{ }"));
        assert_ne!(a, WebhookClient::signature("other", 1_700_000_000, b"{}"));
    }
}
