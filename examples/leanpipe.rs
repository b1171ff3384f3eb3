//! The floor under `POST /wechat`: an actix server that does only the protocol, with mpgate's
//! own code, and none of mpgate's features.
//!
//! A push is: query read, signature check, decrypt, parse, one fixed text reply rendered and
//! sealed. No dedupe, no in-flight map, no subscriber update, no counters, no rules, no logging,
//! no store. `GET /healthz` answers as mpgate's does (a small JSON body).
//!
//! It is the "lean pipeline" the performance issue compares mpgate against: drive it with the
//! same `wrk` script and pushes as `scripts/bench.sh` (see docs/performance-history.md, "The floor") and the
//! difference in server CPU per request is what mpgate's features cost.
//!
//! ```text
//! MPGATE_TOKEN=… MPGATE_APP_ID=… MPGATE_ENCODING_AES_KEY=… \
//!     MPGATE_LISTEN=127.0.0.1:39111 target/release/examples/leanpipe
//! ```

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mpgate::http::callback::parse_query;
use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::message;
use mpgate::wechat::reply::{self, Reply, ReplyContext};
use mpgate::wechat::signature;
use mpgate::wechat::types::{AppId, Token};

struct Lean {
    token: Token,
    app_id: AppId,
    cipher: Cipher,
}

async fn push(req: HttpRequest, body: web::Bytes, lean: web::Data<Lean>) -> HttpResponse {
    let q = parse_query(req.query_string());
    let (Some(ts), Some(nonce), Some(msg_sig)) = (&q.timestamp, &q.nonce, &q.msg_signature) else {
        return HttpResponse::BadRequest().body("missing parameter");
    };
    let Ok(ts_num) = ts.parse::<i64>() else {
        return HttpResponse::BadRequest().body("bad timestamp");
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return HttpResponse::BadRequest().body("body is not UTF-8");
    };
    let Some(enc) = message::parse_envelope(text).ok().and_then(|e| e.encrypt) else {
        return HttpResponse::BadRequest().body("no Encrypt");
    };
    if !signature::verify(msg_sig, &[lean.token.expose(), ts, nonce, &enc]) {
        return HttpResponse::Unauthorized().body("bad signature");
    }
    let Ok(xml) = lean.cipher.decrypt(&enc, &lean.app_id) else {
        return HttpResponse::BadRequest().body("cannot decrypt");
    };
    let Ok(inbound) = message::parse(&xml) else {
        return HttpResponse::BadRequest().body("bad XML");
    };
    let ctx = ReplyContext {
        to_user: inbound.header.from_user.as_str(),
        from_user: &inbound.header.to_user,
        create_time: ts_num,
        after_user_message: inbound.is_user_message(),
    };
    let content = "感谢关注！回复「课程」查看课程列表，回复「价格」查看报名方式。🙂".to_string();
    let plain = reply::render(&Reply::Text { content }, &ctx).unwrap_or_default();
    let sealed = reply::seal(
        &lean.cipher,
        &lean.app_id,
        &lean.token,
        &plain,
        ts_num,
        nonce,
    );
    HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .body(sealed)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "rules_version": "lean" }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("MPGATE_LISTEN").unwrap_or_else(|_| "127.0.0.1:39111".into());
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"));
    let key = EncodingAesKey::parse(&var("MPGATE_ENCODING_AES_KEY")).expect("a 43-character key");
    let lean = web::Data::new(Lean {
        token: Token::new(var("MPGATE_TOKEN")),
        app_id: AppId::new(var("MPGATE_APP_ID")),
        cipher: Cipher::new(&key),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(lean.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/wechat", web::post().to(push))
            .route("/healthz", web::get().to(healthz))
    })
    .bind(addr)?
    .run()
    .await
}
