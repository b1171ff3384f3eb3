//! The operators' dashboard under `/admin`: server-rendered pages (minijinja templates
//! `templates/admin/*.html`, which operators may restyle like the other page templates; the
//! shipped ones are built in), SVG charts drawn on the server ([`svg`]), a CSV download of every
//! table ([`csv`]), and sign-in with the admin token ([`session`]) slowed down for guessers
//! ([`throttle`]).
//!
//! URLs (fixed: docs/README and the benchmark use them): `GET /admin` → the overview or the
//! sign-in form; `/admin/sign-in`, `/admin/sign-out`; pages under `/admin/dashboard`
//! ([`pages`]); `?days=7|30|90|365` where a page has a range; `?format=csv[&table=…]`.
//!
//! Off (404) without `MPGATE_ADMIN_TOKEN`, like the JSON admin API. A page without a session
//! redirects to the sign-in form (303); a form posted without the session's CSRF token is 403.
//! Failures go through the one error mapping ([`crate::http::error`]); our own faults show
//! "internal error" and a request id.
//!
//! Handlers translate only: the figures come from [`crate::analytics`], lists and changes from
//! the services the gateway lends (`operator()`, `handoffs()`), titles from the live rules.
//!
//! May depend on: `pipeline` and the services it lends, `analytics` (report types), `settings`,
//! actix-web.

pub mod csv;
pub mod pages;
pub mod session;
pub mod svg;
pub mod throttle;

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use super::error::{Class, Classify, Refusal};
use crate::pipeline::Gateway;
use crate::settings::{Secret, Settings};
use crate::store::StoreError;

pub use session::{Session, Sessions};
pub use throttle::Throttle;

/// The dashboard's state, one per server: the token, the sessions, the shared limiter.
#[derive(Debug)]
pub struct Dashboard {
    token: Option<Secret>,
    sessions: Sessions,
    throttle: Arc<Throttle>,
    /// `Secure` on the cookie: the public URL is https.
    secure: bool,
}

impl Dashboard {
    pub fn new(settings: &Settings) -> Dashboard {
        Dashboard {
            token: settings.admin_token.clone(),
            sessions: Sessions::new(settings.session_ttl),
            throttle: Arc::new(Throttle::new()),
            secure: settings.public_url.starts_with("https://"),
        }
    }

    /// The limiter, shared with the JSON admin API's bearer check.
    pub fn throttle(&self) -> Arc<Throttle> {
        self.throttle.clone()
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The admin token, or 404 when the dashboard is off.
    fn enabled(&self) -> Result<&Secret, DashboardError> {
        self.token.as_ref().ok_or(DashboardError::Off)
    }
}

/// Why a dashboard request failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("the dashboard is off: set MPGATE_ADMIN_TOKEN to enable it")]
    Off,
    /// No session, an expired one, or a cookie that names none: the sign-in form (303).
    #[error("sign in first")]
    SignIn,
    #[error(
        "the form is missing its security token or it is wrong: reload the page and try again"
    )]
    Csrf,
    #[error("too many wrong tokens from this address: wait {0} s")]
    Slowed(u64),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0} failed to render: {1}")]
    Render(String, String),
}

impl ResponseError for DashboardError {
    fn status_code(&self) -> StatusCode {
        match self {
            DashboardError::SignIn => StatusCode::SEE_OTHER,
            _ => self.class().status(),
        }
    }

    /// A short page of its own (not the operator's templates: a broken template must not hide
    /// the error it would show).
    fn error_response(&self) -> HttpResponse {
        if matches!(self, DashboardError::SignIn) {
            return see_other("/admin/sign-in");
        }
        let r = Refusal::of(self, "dashboard request");
        let heading = match r.class {
            Class::NotFound => "Not found",
            Class::Forbidden => "Refused",
            Class::TooManyRequests => "Slow down",
            Class::BadRequest => "Bad request",
            Class::Unavailable => "Temporarily unavailable",
            _ => "Internal error",
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{heading} · mpgate</title><style>body{{font:16px/1.6 system-ui,sans-serif;\
             max-width:40rem;margin:10vh auto;padding:0 1rem}}</style></head><body>\
             <h1>{heading}</h1><p id=\"error\">{}</p><p><a href=\"/admin/dashboard\">Dashboard</a></p>\
             </body></html>",
            svg::escape(&r.message())
        );
        let mut b = HttpResponse::build(r.status());
        b.content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"));
        if let DashboardError::Slowed(secs) = self {
            b.insert_header(("Retry-After", secs.to_string()));
        }
        b.body(body)
    }
}

/// A browser with a live session (the extractor every page and form names).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: Session,
}

impl SignedIn {
    /// 403 unless `given` is this session's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), DashboardError> {
        if self.session.csrf_matches(given) {
            Ok(())
        } else {
            Err(DashboardError::Csrf)
        }
    }
}

impl FromRequest for SignedIn {
    type Error = DashboardError;
    type Future = Ready<Result<SignedIn, DashboardError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let Some(dash) = req.app_data::<web::Data<Dashboard>>() else {
            return ready(Err(DashboardError::Off));
        };
        if let Err(e) = dash.enabled() {
            return ready(Err(e));
        }
        let now = chrono::Utc::now().timestamp();
        ready(
            session::cookie_value(req)
                .and_then(|v| dash.sessions.get(&v, now))
                .map(|session| SignedIn { session })
                .ok_or(DashboardError::SignIn),
        )
    }
}

/// Registers the dashboard's routes; `http::routes` calls it before the JSON admin API's scope,
/// so these paths are matched first.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin").route(web::get().to(root)))
        .service(
            web::resource("/admin/sign-in")
                .route(web::get().to(session::sign_in_form))
                .route(web::post().to(session::sign_in)),
        )
        .service(web::resource("/admin/sign-out").route(web::post().to(session::sign_out)))
        .service(
            web::scope("/admin/dashboard")
                .app_data(web::PayloadConfig::new(16 * 1024))
                .route("", web::get().to(pages::overview))
                .route("/channels", web::get().to(pages::channels))
                .route("/retention", web::get().to(pages::retention))
                .route("/articles", web::get().to(pages::articles))
                .route("/unanswered", web::get().to(pages::unanswered))
                .route("/assistant", web::get().to(pages::assistant))
                .route("/handoffs", web::get().to(pages::handoffs))
                .route("/outbox", web::get().to(pages::outbox))
                .route("/orders", web::get().to(pages::orders))
                .route("/subscribers", web::get().to(pages::subscribers))
                .route("/subscribers/grant", web::post().to(pages::grant))
                .route("/subscribers/revoke", web::post().to(pages::revoke))
                .default_service(web::to(not_found)),
        );
}

/// `GET /admin`: the overview, or the sign-in form without a session.
async fn root(signed: Result<SignedIn, DashboardError>) -> Result<HttpResponse, DashboardError> {
    match signed {
        Ok(_) => Ok(see_other("/admin/dashboard")),
        Err(DashboardError::SignIn) => Ok(see_other("/admin/sign-in")),
        Err(e) => Err(e),
    }
}

async fn not_found(_signed: SignedIn) -> Result<HttpResponse, DashboardError> {
    Err(DashboardError::NotFound("no such dashboard page".into()))
}

pub(crate) fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

pub(crate) fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "private, no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        // The pages need no script and fetch nothing: an injected tag could do neither.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body)
}

/// Renders `admin/<name>` from the live rules' templates dir (the built-in one when the
/// operator has none).
pub(crate) fn render<S: Serialize>(
    gw: &Gateway,
    name: &str,
    ctx: &S,
) -> Result<String, DashboardError> {
    gw.rules()
        .current()
        .render_page(name, ctx)
        .map_err(|e| DashboardError::Render(name.to_string(), e.to_string()))
}

pub(crate) fn render_sign_in(
    gw: &Gateway,
    status: StatusCode,
    error: Option<&str>,
) -> Result<HttpResponse, DashboardError> {
    let body = render(
        gw,
        "admin/sign_in.html",
        &serde_json::json!({ "error": error }),
    )?;
    Ok(html(status, body))
}
