//! The one mapping from errors to HTTP, for the callback, the admin API and the pages.
//!
//! Every error a handler can return says what kind of failure it is ([`Classify`] → [`Class`]);
//! the class alone picks the status. [`Refusal::of`] logs the failure once, here: a client's
//! fault as one `warn` line with its short reason, ours as one `error` line with the cause and
//! a request id. The client gets the short reason for its own faults, and for ours only
//! "internal error" and that request id, never the cause. Each surface then words the refusal
//! in its own format: plain text for the platform ([`Refusal::text`]), JSON for operators
//! ([`Refusal::json`]), a friendly page for readers (`pages` renders [`Refusal`] through its
//! template), a short page for operators in the dashboard (`dashboard`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::admin::AdminError;
use super::dashboard::DashboardError;
use crate::pipeline::CallbackError;
use crate::store::StoreError;

/// What kind of failure an error is; the status follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The request is malformed or names something invalid (400).
    BadRequest,
    /// No or a wrong credential (401).
    Unauthorized,
    /// A credential or proof that does not hold (403).
    Forbidden,
    /// No such thing (404).
    NotFound,
    /// It existed, and has expired (410).
    Gone,
    /// Conflicts with what is stored (409).
    Conflict,
    /// The client took too long to send its request (408).
    Timeout,
    /// Too many wrong tokens from one address: slowed down for a while (429).
    TooManyRequests,
    /// Our fault (500): the cause is logged, never sent.
    Internal,
    /// A platform we depend on (WeChat Pay) failed or could not be believed (503): the cause
    /// is logged with a request id; the client is told to try again.
    Upstream,
    /// Ours and temporary (503): the store cannot write now (a full or failing disk). The
    /// store logs the episode once and `/healthz` says why; each refusal only says to retry.
    Unavailable,
}

impl Class {
    pub fn status(self) -> StatusCode {
        match self {
            Class::BadRequest => StatusCode::BAD_REQUEST,
            Class::Unauthorized => StatusCode::UNAUTHORIZED,
            Class::Forbidden => StatusCode::FORBIDDEN,
            Class::NotFound => StatusCode::NOT_FOUND,
            Class::Gone => StatusCode::GONE,
            Class::Conflict => StatusCode::CONFLICT,
            Class::Timeout => StatusCode::REQUEST_TIMEOUT,
            Class::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Class::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Class::Unavailable | Class::Upstream => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error that knows its [`Class`].
pub trait Classify: std::fmt::Display {
    fn class(&self) -> Class;
}

impl Classify for StoreError {
    fn class(&self) -> Class {
        match self {
            // An empty openid or one with NUL is the sender's fault, not the store's.
            StoreError::InvalidKey { .. } => Class::BadRequest,
            StoreError::Unavailable(_) | StoreError::Io(_) => Class::Unavailable,
            _ => Class::Internal,
        }
    }
}

impl Classify for CallbackError {
    fn class(&self) -> Class {
        use CallbackError::*;
        match self {
            MissingParam(_)
            | BadTimestamp
            | InvalidUtf8
            | NoAesKey
            | PlaintextRefused
            | BadXml(_)
            | NoEncrypt
            | Decrypt { .. } => Class::BadRequest,
            BadSignature | Replay { .. } => Class::Forbidden,
            Store(e) => e.class(),
        }
    }
}

impl Classify for AdminError {
    fn class(&self) -> Class {
        match self {
            // Off looks like no such route: strangers learn nothing.
            AdminError::Off | AdminError::NotFound(_) => Class::NotFound,
            AdminError::Unauthorized => Class::Unauthorized,
            AdminError::Slowed(_) => Class::TooManyRequests,
            AdminError::BadRequest(_) => Class::BadRequest,
            AdminError::Conflict(_) => Class::Conflict,
            AdminError::Store(e) => e.class(),
        }
    }
}

impl Classify for DashboardError {
    fn class(&self) -> Class {
        match self {
            // Off looks like no such page, as for the JSON API.
            DashboardError::Off | DashboardError::NotFound(_) => Class::NotFound,
            // Answered with a redirect to the sign-in form (see its `ResponseError`).
            DashboardError::SignIn => Class::Unauthorized,
            DashboardError::Csrf => Class::Forbidden,
            DashboardError::Slowed(_) => Class::TooManyRequests,
            DashboardError::BadRequest(_) => Class::BadRequest,
            DashboardError::Store(e) => e.class(),
            DashboardError::Render(..) => Class::Internal,
        }
    }
}

/// A refusal, logged once, ready to be worded for its surface.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub class: Class,
    /// What the client may read: the short reason, or "internal error" for ours.
    pub reason: String,
    /// Set for our faults: the id the log line carries, so a report can be matched to it.
    pub request_id: Option<String>,
}

impl Refusal {
    /// Classifies `err` and logs it once; `what` names the request ("push", "admin request",
    /// "article page").
    pub fn of(err: &dyn Classify, what: &'static str) -> Refusal {
        let class = err.class();
        if class == Class::Unavailable {
            // Said once per episode by the store (and by /healthz), not once per request.
            tracing::debug!(error = %err, "{what} refused: store not writable");
            return Refusal {
                class,
                reason: "temporarily unavailable: the store cannot write now; retry later".into(),
                request_id: None,
            };
        }
        if class == Class::Upstream {
            let id = request_id();
            tracing::warn!(request_id = %id, error = %err, "{what} failed: upstream");
            return Refusal {
                class,
                reason: "the payment platform did not answer; please try again".into(),
                request_id: Some(id),
            };
        }
        if class == Class::Internal {
            let id = request_id();
            tracing::error!(request_id = %id, error = %err, "{what} failed");
            Refusal {
                class,
                reason: "internal error".into(),
                request_id: Some(id),
            }
        } else {
            tracing::warn!(status = class.status().as_u16(), reason = %err, "{what} refused");
            Refusal {
                class,
                reason: err.to_string(),
                request_id: None,
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        self.class.status()
    }

    /// `reason`, with the request id when there is one.
    pub fn message(&self) -> String {
        match &self.request_id {
            Some(id) => format!("{} (request id {id})", self.reason),
            None => self.reason.clone(),
        }
    }

    /// Plain text, for the platform.
    pub fn text(&self) -> HttpResponse {
        HttpResponse::build(self.status())
            .content_type("text/plain; charset=utf-8")
            .body(self.message())
    }

    /// `{"error": reason, "request_id"?: id}`, for operators.
    pub fn json(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status());
        if self.class == Class::Unauthorized {
            b.insert_header(("WWW-Authenticate", "Bearer realm=\"mpgate-admin\""));
        }
        let mut body = serde_json::json!({ "error": self.reason });
        if let Some(id) = &self.request_id {
            body["request_id"] = id.as_str().into();
        }
        b.json(body)
    }
}

/// A short random id for one failed request: in the response and in the log line.
fn request_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

impl ResponseError for CallbackError {
    fn status_code(&self) -> StatusCode {
        self.class().status()
    }

    fn error_response(&self) -> HttpResponse {
        Refusal::of(self, "push").text()
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.class().status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = Refusal::of(self, "admin request").json();
        if let AdminError::Slowed(secs) = self {
            r.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(*secs),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_faults_say_only_internal_error_and_an_id() {
        let e = CallbackError::Store(StoreError::Corrupt("secret cause /var/lib".into()));
        let r = Refusal::of(&e, "push");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = r.request_id.clone().expect("a request id");
        assert_eq!(r.message(), format!("internal error (request id {id})"));
        assert!(!r.message().contains("secret"));
    }

    #[test]
    fn client_faults_get_their_reason_and_no_id() {
        let r = Refusal::of(&CallbackError::MissingParam("nonce"), "push");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.message(), "missing query parameter `nonce`");
        assert!(r.request_id.is_none());
        let r = Refusal::of(
            &AdminError::Store(StoreError::InvalidKey { what: "openid" }),
            "admin request",
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
