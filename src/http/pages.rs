//! `GET /a/{article}?u=&e=&s=`: the article page a signed link opens in WeChat's in-app
//! browser.
//!
//! Order of checks: the link's MAC (constant time) → expiry → the entitlement, read now (a
//! revoked grant stops working at once). A tampered link gets 403, an expired one 410, both
//! as a friendly page; a valid link without an entitlement gets the paywall page (403). The
//! body is never rendered unless every check passes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::paywall::LinkError;
use crate::pipeline::Gateway;
use crate::rules::{ArticleBody, ArticleDef};
use crate::store::Counter;
use crate::wechat::types::OpenId;

#[derive(Deserialize)]
pub struct LinkQuery {
    pub u: Option<String>,
    pub e: Option<String>,
    pub s: Option<String>,
}

#[derive(Serialize)]
struct PageArticle<'a> {
    id: &'a str,
    title: &'a str,
    teaser: &'a str,
    cover: &'a str,
    price: &'a str,
    purchase_url: Option<&'a str>,
}

impl<'a> From<&'a ArticleDef> for PageArticle<'a> {
    fn from(a: &'a ArticleDef) -> Self {
        PageArticle {
            id: &a.id,
            title: &a.title,
            teaser: &a.teaser,
            cover: &a.cover,
            price: &a.price,
            purchase_url: a.purchase_url.as_deref(),
        }
    }
}

const ACCOUNT_NAME: &str = "mpgate";

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "private, no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// The friendly page for a link that cannot be honoured. Falls back to plain text if the
/// operator's template is broken, so a subscriber never sees an empty 500.
fn link_error(
    gw: &Gateway,
    status: StatusCode,
    icon: &str,
    heading: &str,
    message: &str,
) -> HttpResponse {
    let ctx = serde_json::json!({
        "account_name": ACCOUNT_NAME, "icon": icon, "heading": heading, "message": message,
    });
    match gw.rules().current().render_page("link_error.html", &ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "link_error.html failed to render");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(format!("{heading}\n{message}"))
        }
    }
}

pub async fn article(
    gw: web::Data<Gateway>,
    path: web::Path<String>,
    q: web::Query<LinkQuery>,
) -> HttpResponse {
    let id = path.into_inner();
    let rules = gw.rules().current();
    let Some(article) = rules.article(&id) else {
        return link_error(
            &gw,
            StatusCode::NOT_FOUND,
            "🔍",
            "文章不存在",
            "这篇文章可能已下架。",
        );
    };
    let (Some(u), Some(e), Some(s)) = (q.u.as_deref(), q.e.as_deref(), q.s.as_deref()) else {
        return paywall(
            &gw,
            article,
            StatusCode::FORBIDDEN,
            "在公众号内发送关键词获取阅读链接。",
        );
    };
    let now = chrono::Utc::now().timestamp();
    let expires: i64 = match crate::paywall::parse_expires(e) {
        Ok(v) => v,
        Err(_) => {
            return link_error(
                &gw,
                StatusCode::FORBIDDEN,
                "⚠️",
                "链接无效",
                "链接不完整或被修改过，请回到公众号重新获取。",
            )
        }
    };
    match gw.signer().verify(&id, u, expires, s, now) {
        Ok(()) => {}
        Err(LinkError::Expired) => {
            return link_error(
                &gw,
                StatusCode::GONE,
                "⌛",
                "链接已过期",
                "请回到公众号重新发送关键词，获取新的阅读链接。",
            )
        }
        Err(err) => {
            tracing::warn!(reason = %err, "article link refused");
            return link_error(
                &gw,
                StatusCode::FORBIDDEN,
                "⚠️",
                "链接无效",
                "链接不完整或被修改过，请回到公众号重新获取。",
            );
        }
    }
    let openid = OpenId::new(u);
    match gw.store().is_entitled(&openid, &id) {
        Ok(true) => {}
        Ok(false) => return paywall(&gw, article, StatusCode::FORBIDDEN, "你的阅读权限已失效。"),
        Err(e) => {
            tracing::error!(error = %e, "entitlement check failed");
            return link_error(
                &gw,
                StatusCode::SERVICE_UNAVAILABLE,
                "🛠",
                "暂时无法打开",
                "请稍后再试。",
            );
        }
    }
    let day = chrono::Utc::now()
        .with_timezone(&rules.timezone())
        .date_naive();
    gw.store().count(
        Counter::PageOpened {
            article: id.clone(),
        },
        day,
        1,
    );
    match &article.body {
        ArticleBody::Url(url) => HttpResponse::SeeOther()
            .insert_header(("Location", url.as_str()))
            .insert_header(("Cache-Control", "private, no-store"))
            .finish(),
        ArticleBody::Template(_) => {
            let ctx = serde_json::json!({ "account_name": ACCOUNT_NAME, "article": PageArticle::from(article) });
            let body = rules.render_article_body(&id, &ctx).and_then(Result::ok);
            let page = body.and_then(|body| {
                let ctx = serde_json::json!({
                    "account_name": ACCOUNT_NAME, "article": PageArticle::from(article), "body": body,
                });
                rules
                    .render_page("article.html", &ctx)
                    .map_err(|e| tracing::error!(error = %e, "article.html failed to render"))
                    .ok()
            });
            match page {
                Some(p) => html(StatusCode::OK, p),
                None => link_error(
                    &gw,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "🛠",
                    "暂时无法打开",
                    "请稍后再试。",
                ),
            }
        }
    }
}

fn paywall(gw: &Gateway, article: &ArticleDef, status: StatusCode, reason: &str) -> HttpResponse {
    let ctx = serde_json::json!({
        "account_name": ACCOUNT_NAME, "article": PageArticle::from(article), "reason": reason,
    });
    match gw.rules().current().render_page("paywall.html", &ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "paywall.html failed to render");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(format!("{}\n{}", article.title, reason))
        }
    }
}
