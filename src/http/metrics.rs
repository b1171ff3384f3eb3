//! `GET /metrics`: the gateway's [`Metrics`](crate::metrics::Metrics) in the OpenMetrics text
//! format, for Prometheus.
//!
//! Who may read it is [`MetricsAccess`], registered as app data by `startup`: on the main
//! listener `Authorization: Bearer $MPGATE_METRICS_TOKEN` (compared in constant time; 401
//! otherwise) or, without a token, 404 as if there were no such route; on the separate
//! `MPGATE_METRICS_LISTEN` listener anyone who reaches it (keep that address private).
//!
//! May depend on: `pipeline` (the gateway renders its metrics), `settings`, actix-web, subtle,
//! sha2.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::pipeline::Gateway;
use crate::settings::Secret;

/// Who may read `/metrics` on a listener.
#[derive(Clone, Debug)]
pub enum MetricsAccess {
    /// Not served here: 404.
    Off,
    /// Served for `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// Served to anyone (the separate metrics listener).
    Open,
}

/// Registers `GET /metrics`; `startup` calls it for both listeners.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    access: Option<web::Data<MetricsAccess>>,
) -> HttpResponse {
    match access.as_deref().map_or(&MetricsAccess::Off, |a| &**a) {
        MetricsAccess::Off => {
            return HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body("not found")
        }
        MetricsAccess::Bearer(expected) if !bearer_matches(&req, expected) => {
            tracing::warn!(
                status = 401,
                "metrics scrape refused: missing or wrong bearer token"
            );
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"mpgate-metrics\""))
                .content_type("text/plain; charset=utf-8")
                .body("missing or wrong bearer token (MPGATE_METRICS_TOKEN)");
        }
        MetricsAccess::Bearer(_) | MetricsAccess::Open => {}
    }
    // The scrape-time figures read the store: off the async workers.
    let gw = gw.into_inner();
    match web::block(move || gw.render_metrics(chrono::Utc::now())).await {
        Ok(text) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type(crate::metrics::CONTENT_TYPE)
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics: rendering failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error")
        }
    }
}

/// Whether the request carries `Authorization: Bearer <expected>`. Both sides are hashed first,
/// so the comparison takes the same time whatever the given token's length.
fn bearer_matches(req: &HttpRequest, expected: &Secret) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let given = Sha256::digest(given.trim().as_bytes());
    let expected = Sha256::digest(expected.expose().as_bytes());
    bool::from(given.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let secret = Secret::new("0123456789abcdef0123");
        let with = |v: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, v))
                .to_http_request()
        };
        assert!(bearer_matches(
            &with("Bearer 0123456789abcdef0123"),
            &secret
        ));
        assert!(!bearer_matches(
            &with("Bearer 0123456789abcdef012"),
            &secret
        ));
        assert!(!bearer_matches(
            &with("Bearer 0123456789abcdef01234"),
            &secret
        ));
        assert!(!bearer_matches(
            &with("Basic 0123456789abcdef0123"),
            &secret
        ));
        assert!(!bearer_matches(&with("0123456789abcdef0123"), &secret));
        assert!(!bearer_matches(
            &TestRequest::default().to_http_request(),
            &secret
        ));
    }
}
