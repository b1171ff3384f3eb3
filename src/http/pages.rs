//! `GET /a/{article}?u=&e=&s=`: the article page a signed link opens in WeChat's in-app
//! browser.
//!
//! Translation only: [`Paywall::open_page`](crate::paywall::Paywall::open_page) decides what the
//! link gets (unknown article 404, tampered 403, expired 410, no grant: the paywall page 403,
//! else the article), and this handler renders that with the operator's templates. Failures go
//! through the one error mapping (`http::error`) and are shown as a friendly page; a broken
//! template falls back to plain text, so a reader never sees an empty 500.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::{Class, Refusal};
use crate::paywall::{LinkProof, Page};
use crate::pipeline::Gateway;
use crate::rules::{ArticleBody, ArticleDef, RuleSet};

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
    rules: &RuleSet,
    status: StatusCode,
    icon: &str,
    heading: &str,
    message: &str,
) -> HttpResponse {
    let ctx = serde_json::json!({
        "account_name": ACCOUNT_NAME, "icon": icon, "heading": heading, "message": message,
    });
    match rules.render_page("link_error.html", &ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "link_error.html failed to render");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(format!("{heading}\n{message}"))
        }
    }
}

/// A refusal from the one error mapping, as a reader sees it.
fn refused(rules: &RuleSet, r: &Refusal) -> HttpResponse {
    if r.class == Class::Unavailable {
        return link_error(rules, r.status(), "🛠", "暂时无法打开", "请稍后再试。");
    }
    match &r.request_id {
        Some(id) => link_error(
            rules,
            r.status(),
            "🛠",
            "暂时无法打开",
            &format!("请稍后再试。（请求编号 {id}）"),
        ),
        None => link_error(
            rules,
            r.status(),
            "⚠️",
            "链接无效",
            "链接不完整或被修改过，请回到公众号重新获取。",
        ),
    }
}

/// A page that failed to render: our fault, through the one mapping.
#[derive(Debug, thiserror::Error)]
#[error("{0} failed to render: {1}")]
struct RenderFailed(&'static str, String);

impl super::error::Classify for RenderFailed {
    fn class(&self) -> Class {
        Class::Internal
    }
}

pub async fn article(
    gw: web::Data<Gateway>,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    q: web::Query<LinkQuery>,
) -> HttpResponse {
    let id = path.into_inner();
    let rules = gw.rules().current();
    let now = chrono::Utc::now();
    let day = now.with_timezone(&rules.timezone()).date_naive();
    let proof = LinkProof {
        u: q.u.as_deref(),
        e: q.e.as_deref(),
        s: q.s.as_deref(),
    };
    let page = match gw
        .paywall()
        .open_page(&rules, &id, proof, now.timestamp(), day)
    {
        Ok(page) => page,
        Err(e) => return refused(&rules, &Refusal::of(&e, "article page")),
    };
    let article = match page {
        Page::UnknownArticle => {
            return link_error(
                &rules,
                StatusCode::NOT_FOUND,
                "🔍",
                "文章不存在",
                "这篇文章可能已下架。",
            )
        }
        Page::NoLink(article) => {
            return paywall(
                &rules,
                article,
                StatusCode::FORBIDDEN,
                "在公众号内发送关键词获取阅读链接。",
                serde_json::json!({ "on": false }),
            )
        }
        Page::BadLink => {
            return link_error(
                &rules,
                StatusCode::FORBIDDEN,
                "⚠️",
                "链接无效",
                "链接不完整或被修改过，请回到公众号重新获取。",
            )
        }
        Page::Expired => {
            return link_error(
                &rules,
                StatusCode::GONE,
                "⌛",
                "链接已过期",
                "请回到公众号重新发送关键词，获取新的阅读链接。",
            )
        }
        Page::Locked(article) => {
            let pay = sale(&gw, &req, article, &q);
            let reason = if pay["on"] == true {
                "购买后即可阅读全文。"
            } else {
                "你的阅读权限已失效。"
            };
            return paywall(&rules, article, StatusCode::FORBIDDEN, reason, pay);
        }
        Page::Read(article) => article,
    };
    match &article.body {
        ArticleBody::Url(url) => HttpResponse::SeeOther()
            .insert_header(("Location", url.as_str()))
            .insert_header(("Cache-Control", "private, no-store"))
            .finish(),
        ArticleBody::Template(_) => {
            let ctx = serde_json::json!({ "account_name": ACCOUNT_NAME, "article": PageArticle::from(article) });
            let page = match rules.render_article_body(&id, &ctx) {
                Some(Ok(body)) => {
                    let ctx = serde_json::json!({
                        "account_name": ACCOUNT_NAME, "article": PageArticle::from(article), "body": body,
                    });
                    rules
                        .render_page("article.html", &ctx)
                        .map_err(|e| RenderFailed("article.html", e.to_string()))
                }
                Some(Err(e)) => Err(RenderFailed("the article body", e.to_string())),
                None => Err(RenderFailed("the article body", "no template".into())),
            };
            match page {
                Ok(p) => html(StatusCode::OK, p),
                Err(e) => refused(&rules, &Refusal::of(&e, "article page")),
            }
        }
    }
}

/// The `pay` context of the paywall page: what it sells to the reader the link names (the
/// link's proof has been checked by `open_page` already), or `{"on": false}`.
fn sale(
    gw: &Gateway,
    req: &actix_web::HttpRequest,
    article: &ArticleDef,
    q: &LinkQuery,
) -> serde_json::Value {
    let (Some(_), Some(fen), Some(u), Some(e), Some(s)) = (
        gw.payments(),
        article.price_fen,
        q.u.as_deref(),
        q.e.as_deref(),
        q.s.as_deref(),
    ) else {
        return serde_json::json!({ "on": false });
    };
    let in_wechat = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains("MicroMessenger"));
    serde_json::json!({
        "on": true,
        "in_wechat": in_wechat,
        "price": article.price,
        "amount_fen": fen,
        "order_url": "/pay/orders",
        "proof": { "article": article.id, "u": u, "e": e, "s": s },
        "bind_url": null,
    })
}

fn paywall(
    rules: &RuleSet,
    article: &ArticleDef,
    status: StatusCode,
    reason: &str,
    pay: serde_json::Value,
) -> HttpResponse {
    let ctx = serde_json::json!({
        "account_name": ACCOUNT_NAME, "article": PageArticle::from(article), "reason": reason,
        "pay": pay,
    });
    match rules.render_page("paywall.html", &ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "paywall.html failed to render");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(format!("{}\n{}", article.title, reason))
        }
    }
}
