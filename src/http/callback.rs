//! `/wechat`: the callback URL the account's console points at.

use std::time::Instant;

use actix_web::{web, HttpResponse};

use crate::pipeline::{CallbackError, CallbackQuery, Gateway};

/// Query strings the platform sends never repeat a key; a malformed one is treated as absent
/// fields, so the pipeline reports which parameter is missing.
fn query(raw: &str) -> CallbackQuery {
    web::Query::<CallbackQuery>::from_query(raw)
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

/// `GET /wechat`: echo `echostr` when the signature holds.
pub async fn verify(
    req: actix_web::HttpRequest,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, CallbackError> {
    let q = query(req.query_string());
    let echo = gw.verify_url(&q)?;
    tracing::info!("URL verification answered");
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(echo))
}

/// `POST /wechat`: one push.
pub async fn push(
    req: actix_web::HttpRequest,
    body: web::Bytes,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, CallbackError> {
    let started = Instant::now();
    let q = query(req.query_string());
    let answer = gw.post(&q, &body, chrono::Utc::now()).await?;
    tracing::info!(
        msg_type = %answer.msg_type,
        encrypted = answer.encrypted,
        outcome = if answer.body == "success" { "no_reply" } else { "reply" },
        latency_us = started.elapsed().as_micros() as u64,
        "push"
    );
    let ct = if answer.body == "success" {
        "text/plain; charset=utf-8"
    } else {
        "application/xml; charset=utf-8"
    };
    Ok(HttpResponse::Ok().content_type(ct).body(answer.body))
}

pub async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", "GET, POST"))
        .content_type("text/plain; charset=utf-8")
        .body("only GET (URL verification) and POST (pushes) are accepted")
}
