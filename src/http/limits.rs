//! What a client may hold or reach before a handler runs: the body read deadline and the
//! callback allow-list, as extractors the handlers name in their arguments.
//!
//! - [`Body`]: the request body, read under a deadline ([`BodyDeadline`], from
//!   `MPGATE_BODY_TIMEOUT_MS`). actix-web's `client_request_timeout` covers the headers only; a
//!   client that sends them and then stalls mid-body would hold its connection (and a file
//!   descriptor) for ever. Past the deadline it gets 408 and the connection is closed.
//! - [`CallbackPeer`]: refuses a peer outside `MPGATE_CALLBACK_ALLOW` with 403, before the body
//!   is read (name it before [`Body`] in a handler's arguments: actix polls extractors in order
//!   and stops at the first error).
//!
//! Both log one `warn` line per refusal, with the peer's address (no content: nothing was read),
//! and count a refused push (`POST /wechat`) in the gateway's metrics (`not_allowed`, `timeout`,
//! `body_size`).
//!
//! May depend on: `settings` (the typed allow-list), `metrics` (through the gateway), actix-web,
//! tokio's timer.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use super::error::{Class, Classify};
use crate::metrics;
use crate::pipeline::Gateway;
use crate::settings::CallbackAllow;

/// How long a body may take once the headers are in; registered as app data by `startup`.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline(pub Duration);

/// The request body, read within the [`BodyDeadline`] and the `PayloadConfig` size limit.
#[derive(Debug)]
pub struct Body(pub web::Bytes);

/// Why a request was cut or refused at the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeRefusal {
    #[error("request body not received within {} ms", .0.as_millis())]
    BodyTimeout(Duration),
    #[error("this address may not call /wechat (MPGATE_CALLBACK_ALLOW)")]
    NotAllowed,
}

impl Classify for EdgeRefusal {
    fn class(&self) -> Class {
        match self {
            EdgeRefusal::BodyTimeout(_) => Class::Timeout,
            EdgeRefusal::NotAllowed => Class::Forbidden,
        }
    }
}

/// An extractor's error must be an actix error, so the status comes from the one mapping
/// (`http::error`) through [`Classify`]; the log line is written where the peer is known.
impl ResponseError for EdgeRefusal {
    fn status_code(&self) -> StatusCode {
        self.class().status()
    }

    /// Logged where it happens (with the peer); here only worded. The connection is closed:
    /// the rest of the body is never read.
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .force_close()
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

/// Counts a refused push (`POST /wechat`; other routes share these extractors) in the
/// gateway's metrics.
fn count_push_refusal(req: &HttpRequest, why: metrics::EdgeRefusal) {
    if req.method() == actix_web::http::Method::POST && req.path() == "/wechat" {
        if let Some(gw) = req.app_data::<web::Data<Gateway>>() {
            gw.metrics().edge_refused(why);
        }
    }
}

/// The peer's address for log lines: the TCP peer, never a header.
fn peer(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl FromRequest for Body {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Body, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let deadline =
            req.app_data::<BodyDeadline>()
                .map(|d| d.0)
                .unwrap_or(Duration::from_millis(
                    crate::settings::DEFAULT_BODY_TIMEOUT_MS,
                ));
        // `Bytes`' own extractor keeps the size limit (413) and the content-type handling.
        let read = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            match tokio::time::timeout(deadline, read).await {
                Ok(Ok(body)) => Ok(Body(body)),
                Ok(Err(e)) => {
                    if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                        count_push_refusal(&req, metrics::EdgeRefusal::BodySize);
                    }
                    Err(e)
                }
                Err(_) => {
                    count_push_refusal(&req, metrics::EdgeRefusal::Timeout);
                    let refusal = EdgeRefusal::BodyTimeout(deadline);
                    tracing::warn!(
                        status = 408,
                        path = req.path(),
                        peer = %peer(&req),
                        "{refusal}; connection closed"
                    );
                    Err(refusal.into())
                }
            }
        })
    }
}

/// Proof that the peer may call `/wechat`: always, unless `MPGATE_CALLBACK_ALLOW` is set (then
/// `startup` registers it as app data).
#[derive(Debug)]
pub struct CallbackPeer;

impl FromRequest for CallbackPeer {
    type Error = actix_web::Error;
    type Future = Ready<Result<CallbackPeer, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(allow) = req.app_data::<web::Data<CallbackAllow>>() else {
            return ready(Ok(CallbackPeer));
        };
        // No peer address (not TCP): not provably in the list, so refused.
        if req.peer_addr().is_some_and(|a| allow.allows(a.ip())) {
            return ready(Ok(CallbackPeer));
        }
        count_push_refusal(req, metrics::EdgeRefusal::NotAllowed);
        let refusal = EdgeRefusal::NotAllowed;
        tracing::warn!(status = 403, path = req.path(), peer = %peer(req), "{refusal}");
        ready(Err(refusal.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn allow(list: &str) -> web::Data<CallbackAllow> {
        web::Data::new(CallbackAllow::parse(list).unwrap())
    }

    #[actix_web::test]
    async fn without_a_list_every_peer_may_call() {
        let (req, mut pl) = TestRequest::default()
            .peer_addr("203.0.113.9:5000".parse().unwrap())
            .to_http_parts();
        assert!(CallbackPeer::from_request(&req, &mut pl).await.is_ok());
    }

    #[actix_web::test]
    async fn a_peer_outside_the_list_is_refused_with_403() {
        let (req, mut pl) = TestRequest::default()
            .app_data(allow("10.0.0.0/8, 2402:4e00::/32"))
            .peer_addr("203.0.113.9:5000".parse().unwrap())
            .to_http_parts();
        let e = CallbackPeer::from_request(&req, &mut pl).await.unwrap_err();
        assert_eq!(e.as_response_error().status_code(), StatusCode::FORBIDDEN);
    }

    #[actix_web::test]
    async fn a_peer_inside_the_list_passes_and_a_missing_peer_does_not() {
        let (req, mut pl) = TestRequest::default()
            .app_data(allow("10.0.0.0/8"))
            .peer_addr("10.1.2.3:5000".parse().unwrap())
            .to_http_parts();
        assert!(CallbackPeer::from_request(&req, &mut pl).await.is_ok());
        let (req, mut pl) = TestRequest::default()
            .app_data(allow("10.0.0.0/8"))
            .to_http_parts();
        assert!(CallbackPeer::from_request(&req, &mut pl).await.is_err());
    }

    #[actix_web::test]
    async fn a_body_that_stalls_is_cut_with_408() {
        // A payload that never yields: headers in, body stalled.
        let (tx, stalled) = actix_http::h1::Payload::create(false);
        let (req, _) = TestRequest::post()
            .insert_header(("content-length", "1000"))
            .app_data(BodyDeadline(Duration::from_millis(100)))
            .to_http_parts();
        let mut pl = Payload::from(stalled);
        let started = std::time::Instant::now();
        let e = Body::from_request(&req, &mut pl).await.unwrap_err();
        drop(tx);
        assert_eq!(
            e.as_response_error().status_code(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
