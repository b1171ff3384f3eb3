//! WeChat Pay's routes: `POST /pay/orders` (the page's buy button), `GET /pay/orders/{no}`
//! (the page's "is it paid?"), `POST /pay/notify` (WeChat Pay's notifications).
//!
//! Translation only: [`Payments`](crate::pay::Payments) decides; failures go through the one
//! mapping (`http::error`). Notifications answer in WeChat Pay's own shape: 204 with no body
//! once the effect is on disk, else `{"code":"FAIL","message":…}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::{Class, Classify, Refusal};
use super::limits::Body;
use crate::pay::crypto::SignedHeaders;
use crate::pay::{NotifyFailure, PayError, Proof};
use crate::pipeline::Gateway;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/pay")
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/orders", web::post().to(create_order))
            .route("/orders/{no}", web::get().to(order_status))
            .route("/notify", web::post().to(notify)),
    );
}

impl Classify for PayError {
    fn class(&self) -> Class {
        match self {
            PayError::Off
            | PayError::UnknownArticle
            | PayError::NotForSale
            | PayError::UnknownOrder => Class::NotFound,
            PayError::BadLink => Class::Forbidden,
            PayError::Expired => Class::Gone,
            PayError::AlreadyEntitled { .. } => Class::Conflict,
            PayError::Platform(_) => Class::Upstream,
            PayError::Store(e) => e.class(),
        }
    }
}

fn refused(e: &PayError, what: &'static str) -> HttpResponse {
    let r = Refusal::of(e, what);
    let mut resp = match e {
        // The one refusal the page acts on: it goes to the article instead.
        PayError::AlreadyEntitled { read_url } => HttpResponse::Conflict()
            .json(serde_json::json!({ "error": r.reason, "read_url": read_url })),
        _ => r.json(),
    };
    resp.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[derive(Deserialize)]
struct OrderBody {
    article: String,
    u: String,
    e: String,
    s: String,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn status_url(no: &str, u: &str, e: &str, s: &str) -> String {
    use crate::paywall::percent_encode as pe;
    format!("/pay/orders/{no}?u={}&e={}&s={}", pe(u), pe(e), pe(s))
}

async fn create_order(gw: web::Data<Gateway>, body: Body) -> HttpResponse {
    let Some(pay) = gw.payments() else {
        return refused(&PayError::Off, "order");
    };
    let b: OrderBody = match serde_json::from_slice(&body.0) {
        Ok(b) => b,
        Err(_) => {
            tracing::warn!("order refused: body is not {{article,u,e,s}}");
            return HttpResponse::BadRequest()
                .json(serde_json::json!({ "error": "body must be JSON {article, u, e, s}" }));
        }
    };
    let proof = Proof {
        article: &b.article,
        u: &b.u,
        e: &b.e,
        s: &b.s,
    };
    // Without the silent OAuth the link's reader is trusted; see the README.
    match pay.start_order(&proof, now()).await {
        Ok(started) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(serde_json::json!({
                "out_trade_no": started.order.out_trade_no,
                "amount_fen": started.order.amount_fen,
                "status_url": status_url(&started.order.out_trade_no, &b.u, &b.e, &b.s),
                "pay": started.params,
            })),
        Err(e) => refused(&e, "order"),
    }
}

#[derive(Deserialize)]
struct ProofQuery {
    u: Option<String>,
    e: Option<String>,
    s: Option<String>,
}

async fn order_status(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    q: web::Query<ProofQuery>,
) -> HttpResponse {
    let Some(pay) = gw.payments() else {
        return refused(&PayError::Off, "order status");
    };
    let (Some(u), Some(e), Some(s)) = (q.u.as_deref(), q.e.as_deref(), q.s.as_deref()) else {
        return refused(&PayError::BadLink, "order status");
    };
    match pay.order_status(&path, u, e, s, now()).await {
        Ok(st) => {
            let mut body = serde_json::json!({
                "out_trade_no": st.order.out_trade_no,
                "state": st.order.state.as_str(),
            });
            if let Some(url) = st.read_url {
                body["read_url"] = url.into();
            }
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(body)
        }
        Err(e) => refused(&e, "order status"),
    }
}

fn fail(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "code": "FAIL", "message": message }))
}

async fn notify(gw: web::Data<Gateway>, req: HttpRequest, body: Body) -> HttpResponse {
    let Some(pay) = gw.payments() else {
        return fail(
            actix_web::http::StatusCode::NOT_FOUND,
            "payments are not configured",
        );
    };
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let headers = SignedHeaders {
        serial: h("Wechatpay-Serial"),
        signature: h("Wechatpay-Signature"),
        timestamp: h("Wechatpay-Timestamp"),
        nonce: h("Wechatpay-Nonce"),
    };
    match pay.notify(&headers, &body.0, now()) {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(NotifyFailure::Refused(e)) => {
            let message = e.message();
            tracing::warn!(reason = %message, "payment notification refused");
            let status = match e {
                crate::pay::notify::NotifyError::Malformed(_) => {
                    actix_web::http::StatusCode::BAD_REQUEST
                }
                _ => actix_web::http::StatusCode::UNAUTHORIZED,
            };
            fail(status, &message)
        }
        Err(NotifyFailure::Store(e)) => {
            // Ours: WeChat Pay retries for a day; the store recovers by itself.
            let r = Refusal::of(&e, "payment notification");
            fail(r.status(), &r.message())
        }
    }
}
