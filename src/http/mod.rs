//! Thin actix handlers: they translate HTTP to the pipeline and back, nothing more.
//!
//! - [`callback`]: `GET /wechat` (URL verification) and `POST /wechat` (pushes).
//! - [`health`]: `GET /healthz`.
//! - [`pages`]: `GET /a/{article}`, the signed article page.
//! - [`admin`]: the operator API under `/admin/…`.
//! - [`dashboard`]: the operators' pages under `/admin` (sign-in, overview, …, CSV, SVG charts).
//! - [`metrics`]: `GET /metrics` for Prometheus (bearer token on this listener, or its own
//!   listener).
//! - [`error`]: the one place errors become HTTP statuses (and plain-text, JSON or page bodies).
//! - [`limits`]: extractors that cut a stalled body (408) and refuse a peer outside the callback
//!   allow-list (403) before a handler runs.
//!
//! Handlers translate and call narrow services the [`Gateway`](crate::pipeline::Gateway) lends
//! (`paywall()`, `handoffs()`, `operator()`, `rules()`); none reaches into the store.
//!
//! May depend on: `pipeline` and those services, `settings`, actix-web, tokio's timer.

pub mod admin;
pub mod callback;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod pages;
pub mod pay;

use actix_web::web;

/// Registers every route. `startup` is the only caller.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/wechat")
            .route(web::get().to(callback::verify))
            .route(web::post().to(callback::push))
            .default_service(web::to(callback::method_not_allowed)),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/a/{article}", web::get().to(pages::article))
    .configure(metrics::routes)
    .configure(pay::routes)
    // Before the JSON API: its `/admin` scope answers every path under it.
    .configure(dashboard::routes)
    .configure(admin::routes);
}
