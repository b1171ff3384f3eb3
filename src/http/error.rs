//! The one mapping from errors to HTTP statuses. Bodies are short and safe; the cause is
//! logged once, here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::pipeline::CallbackError;

impl ResponseError for CallbackError {
    fn status_code(&self) -> StatusCode {
        use CallbackError::*;
        match self {
            MissingParam(_)
            | BadTimestamp
            | InvalidUtf8
            | NoAesKey
            | PlaintextRefused
            | BadXml(_)
            | NoEncrypt
            | Decrypt { .. } => StatusCode::BAD_REQUEST,
            BadSignature | Replay { .. } => StatusCode::FORBIDDEN,
            // An empty openid or one with NUL is the sender's fault, not the store's.
            Store(crate::store::StoreError::InvalidKey { .. }) => StatusCode::BAD_REQUEST,
            Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "push failed");
        } else {
            tracing::warn!(status = status.as_u16(), reason = %self, "push refused");
        }
        HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}
