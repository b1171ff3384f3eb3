//! The operator API under `/admin/…`: JSON in and out, behind
//! `Authorization: Bearer $MPGATE_ADMIN_TOKEN` (constant-time compare). Without a configured
//! token every route answers 404: the API is off.
//!
//! Grants and revokes answer 200 only after the store has flushed them to disk. Their JSON
//! bodies are read under the body deadline ([`super::limits::Body`]).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::dashboard::Throttle;
use super::limits::Body;
use crate::pipeline::Gateway;
use crate::settings::Secret;
use crate::store::{GrantOutcome, RevokeOutcome};
use crate::wechat::types::OpenId;

/// The admin token, if the API is on.
#[derive(Clone)]
pub struct AdminToken(pub Option<Secret>);

/// Why an admin request failed; the one mapping to statuses for this API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the admin API is off: set MPGATE_ADMIN_TOKEN to enable it")]
    Off,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Too many wrong tokens from this address ([`crate::http::dashboard::throttle`]).
    #[error("too many wrong tokens from this address: wait {0} s")]
    Slowed(u64),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

fn authorize(req: &HttpRequest, token: &AdminToken) -> Result<(), AdminError> {
    let Some(expected) = &token.0 else {
        return Err(AdminError::Off);
    };
    // The limiter the dashboard's sign-in shares: guessing here or there counts the same.
    let throttle = req
        .app_data::<web::Data<Throttle>>()
        .zip(req.peer_addr().map(|a| a.ip()));
    let now = chrono::Utc::now().timestamp();
    if let Some((t, ip)) = &throttle {
        t.check(*ip, now)
            .map_err(|s| AdminError::Slowed(s.retry_after_secs))?;
    }
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized)?;
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        if let Some((t, ip)) = &throttle {
            t.failed(*ip, now);
        }
        Err(AdminError::Unauthorized)
    }
}

/// Routes, mounted at `/admin`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/grants", web::post().to(grant))
            .route("/revocations", web::post().to(revoke))
            .route("/subscribers/{openid}", web::get().to(subscriber))
            .route(
                "/subscribers/{openid}/assistant",
                web::delete().to(forget_assistant),
            )
            .route(
                "/articles/{id}/subscribers",
                web::get().to(article_subscribers),
            )
            .route("/stats", web::get().to(stats))
            .route("/unanswered", web::get().to(unanswered))
            .route("/handoffs", web::get().to(handoffs))
            .route("/outbox", web::get().to(outbox))
            .route("/orders", web::get().to(orders))
            .route("/orders/reconcile", web::post().to(reconcile))
            .route("/handoffs/{openid}/close", web::post().to(close_handoff))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(
    req: HttpRequest,
    token: web::Data<AdminToken>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    Err(AdminError::NotFound("no such admin route".into()))
}

/// Parsed after authorisation, so strangers learn nothing from JSON errors.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::BadRequest(format!("bad JSON: {e}")))
}

fn known_article(gw: &Gateway, article: &str) -> Result<(), AdminError> {
    if gw.rules().current().article(article).is_some() {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "unknown article `{article}` (not declared in keywords.toml)"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub openid: String,
    pub article: String,
    #[serde(default = "default_source")]
    pub source: String,
    /// An order id or similar: a second grant with the same reference changes nothing.
    pub reference: Option<String>,
    /// Grant although mpgate has never seen this subscriber (guards against typos otherwise).
    #[serde(default)]
    pub create: bool,
}

fn default_source() -> String {
    "admin".to_string()
}

/// An openid from the operator, parsed at the edge: a 400 names the field and the shape.
fn openid(field: &str, v: &str) -> Result<OpenId, AdminError> {
    OpenId::parse(v).map_err(|e| {
        AdminError::BadRequest(format!(
            "`{field}` {e} (an openid is 1-64 characters of A-Z a-z 0-9 - _)"
        ))
    })
}

async fn grant(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    Body(body): Body,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let b: GrantBody = json(&body)?;
    let openid = openid("openid", &b.openid)?;
    known_article(&gw, &b.article)?;
    let req = crate::operator::GrantRequest {
        openid: &openid,
        article: &b.article,
        source: &b.source,
        reference: b.reference.as_deref(),
        create: b.create,
    };
    let now = chrono::Utc::now().timestamp();
    let out = match gw.operator().grant(&req, now) {
        Ok(out) => out,
        Err(crate::operator::GrantError::UnknownSubscriber(id)) => {
            return Err(AdminError::NotFound(format!(
                "unknown subscriber `{id}` (never seen by mpgate); send \"create\": true to grant anyway"
            )))
        }
        Err(crate::operator::GrantError::Store(e)) => return Err(e.into()),
    };
    let (status, ent) = match out {
        GrantOutcome::Granted(e) => ("granted", e),
        GrantOutcome::AlreadyGranted(e) => ("already_granted", e),
        GrantOutcome::ReferenceConflict(other) => {
            return Err(AdminError::Conflict(format!(
                "reference already used for another grant (article `{}`)",
                other.article
            )))
        }
    };
    tracing::info!(article = %b.article, status, "entitlement grant");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": status, "entitlement": ent })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub openid: String,
    pub article: String,
}

async fn revoke(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    Body(body): Body,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let b: RevokeBody = json(&body)?;
    let openid = openid("openid", &b.openid)?;
    known_article(&gw, &b.article)?;
    let now = chrono::Utc::now().timestamp();
    let out = gw.operator().revoke(&openid, &b.article, now)?;
    let (status, ent) = match out {
        RevokeOutcome::Revoked(e) => ("revoked", e),
        RevokeOutcome::AlreadyRevoked(e) => ("already_revoked", e),
        RevokeOutcome::NotGranted => {
            return Err(AdminError::NotFound(
                "no grant of this article to this subscriber".into(),
            ))
        }
    };
    tracing::info!(article = %b.article, status, "entitlement revoke");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": status, "entitlement": ent })))
}

async fn subscriber(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let openid = openid("openid", &path.into_inner())?;
    let Some(view) = gw.operator().subscriber(&openid)? else {
        return Err(AdminError::NotFound("unknown subscriber".into()));
    };
    Ok(HttpResponse::Ok().json(view))
}

/// `DELETE /admin/subscribers/{openid}/assistant`: forgets the assistant's memory of the
/// subscriber (turns, a kept answer, and an answer still being written, which is then not
/// delivered); `{"forgot": true}` when there was something. Answers once it is gone from disk.
/// An openid mpgate never saw is no error: there is nothing to forget.
async fn forget_assistant(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let openid = openid("openid", &path.into_inner())?;
    let forgot = gw.assistant().forget(&openid)?;
    tracing::info!(forgot, "assistant memory forgotten by the operator");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "forgot": forgot })))
}

async fn article_subscribers(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let id = path.into_inner();
    known_article(&gw, &id)?;
    let ents = gw.operator().readers(&id)?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "article": id, "count": ents.len(), "entitlements": ents })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub from: Option<String>,
    pub to: Option<String>,
}

fn date(field: &str, v: &str) -> Result<chrono::NaiveDate, AdminError> {
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| AdminError::BadRequest(format!("`{field}` must be a date like 2026-11-22")))
}

async fn stats(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    q: web::Query<Range>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let tz = gw.rules().current().timezone();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let to =
        q.to.as_deref()
            .map(|v| date("to", v))
            .transpose()?
            .unwrap_or(today);
    let from = q
        .from
        .as_deref()
        .map(|v| date("from", v))
        .transpose()?
        .unwrap_or(to - chrono::Duration::days(6));
    if from > to {
        return Err(AdminError::BadRequest("`from` is after `to`".into()));
    }
    if (to - from).num_days() > 366 {
        return Err(AdminError::BadRequest("at most 366 days at once".into()));
    }
    let counters = gw.operator().counters(from, to)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "from": from, "to": to, "days": counters })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnansweredQuery {
    pub days: Option<String>,
    pub limit: Option<String>,
}

/// A whole number in `range` from the query, or `default` when absent.
fn bounded<T>(field: &str, v: Option<&str>, default: T, min: T, max: T) -> Result<T, AdminError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(v) = v else {
        return Ok(default);
    };
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(AdminError::BadRequest(format!(
            "`{field}` must be a whole number between {min} and {max}"
        ))),
    }
}

/// What subscribers asked that no rule answered, most frequent first
/// (`?days=N&limit=M`: the last N days of the account, default 7; at most M texts, default 50).
/// Holds no openid: the store never kept one with a text.
async fn unanswered(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    use crate::store::unanswered as list;
    // Parsed after authorisation, with a reason naming the parameter.
    let q = web::Query::<UnansweredQuery>::from_query(req.query_string())
        .map_err(|e| AdminError::BadRequest(format!("bad query: {e}")))?;
    let days = bounded(
        "days",
        q.days.as_deref(),
        list::LIST_DEFAULT_DAYS,
        1,
        list::LIST_MAX_DAYS,
    )?;
    let limit = bounded(
        "limit",
        q.limit.as_deref(),
        list::LIST_DEFAULT_LIMIT,
        1,
        list::LIST_MAX_LIMIT,
    )?;
    let today = gw.today(chrono::Utc::now());
    let texts = gw
        .analytics()
        .unanswered(crate::analytics::Range::last(days, today), limit)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "days": days, "texts": texts })))
}

/// Open and queued customer-service handoffs, longest waiting first.
async fn handoffs(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let now = chrono::Utc::now().timestamp();
    let items = gw.handoffs().list(now)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "count": items.len(), "handoffs": items })))
}

async fn close_handoff(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let openid = openid("openid", &path.into_inner())?;
    match gw.handoffs().close(&openid)? {
        Some(s) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "closed", "session": s })))
        }
        None => Err(AdminError::NotFound(
            "no open or queued handoff for this subscriber".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    pub state: Option<String>,
}

/// Customer-service messages waiting, sent or refused (`?state=pending|failed|sent|all`).
async fn outbox(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    q: web::Query<OutboxQuery>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let filter: crate::store::platform::OutboxFilter = q
        .state
        .as_deref()
        .unwrap_or("all")
        .parse()
        .map_err(AdminError::BadRequest)?;
    let items = gw.operator().outbox(filter)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "count": items.len(), "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    pub state: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Orders and payment anomalies (`?state=created|paid|refunded|closed|anomaly&from=&to=`, the
/// account's days of creation, both included; anomalies only without a state or with
/// `anomaly`).
async fn orders(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
    q: web::Query<OrdersQuery>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<crate::store::OrderState>)
        .transpose()
        .map_err(|e: String| AdminError::BadRequest(format!("`state`: {e}")))?;
    let from = q.from.as_deref().map(|v| date("from", v)).transpose()?;
    let to = q.to.as_deref().map(|v| date("to", v)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(AdminError::BadRequest("`from` is after `to`".into()));
        }
    }
    let view = gw.operator().orders(&crate::operator::OrdersQuery {
        state,
        from,
        to,
        tz: gw.rules().current().timezone(),
    })?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /admin/orders/reconcile`: one reconciliation pass now (the background job runs every
/// 30 s); answers what it did.
async fn reconcile(
    req: HttpRequest,
    token: web::Data<AdminToken>,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, AdminError> {
    authorize(&req, &token)?;
    let pay = gw.payments().ok_or_else(|| {
        AdminError::NotFound("payments are not configured (MPGATE_PAY_MCH_ID)".into())
    })?;
    let report = pay.reconcile_once(chrono::Utc::now().timestamp()).await?;
    Ok(HttpResponse::Ok().json(report))
}
