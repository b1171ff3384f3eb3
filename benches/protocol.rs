//! Hot-path costs of the protocol layer: one push in (signature, decrypt, parse) and one reply
//! out (render, seal), and the callback's query string. Run: `cargo bench --bench protocol -- --quick`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::message::{self, Header, Inbound, InboundKind};
use mpgate::wechat::reply::{self, Reply, ReplyContext};
use mpgate::wechat::signature;
use mpgate::wechat::types::{AppId, MsgId, OpenId, Token};

/// A text push of about 300 bytes with Chinese content, in the platform's shape.
fn sample_push() -> String {
    Inbound {
        header: Header {
            to_user: "gh_a96a4a619366".into(),
            from_user: OpenId::new("olPjZjsXuQPJoV0HlruZkNzKc91E"),
            create_time: 1414387151,
        },
        kind: InboundKind::Text {
            msg_id: MsgId::new(6074746557628292943),
            content: "你好，请问今天的文章在哪里可以看到？谢谢".into(),
            msg_data_id: None,
            idx: None,
        },
    }
    .to_xml()
}

fn benches(c: &mut Criterion) {
    let key = EncodingAesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").expect("key");
    let cipher = Cipher::new(&key);
    let app = AppId::new("wx2c2769f8efd9abc2");
    let token = Token::new("spamtest");
    let push = sample_push();
    let encrypted = cipher.encrypt(&push, &app);
    let msg_sig = signature::sign(&[token.expose(), "1409735669", "1320562132", &encrypted]);
    let ctx = ReplyContext {
        to_user: "olPjZjsXuQPJoV0HlruZkNzKc91E",
        from_user: "gh_a96a4a619366",
        create_time: 1414387152,
        after_user_message: true,
    };
    let text_reply = Reply::Text {
        content: "欢迎关注！回复「目录」查看全部文章，回复「帮助」获取使用说明。".into(),
    };
    let reply_xml = reply::render(&text_reply, &ctx).expect("renders");

    c.bench_function("signature_verify_msg_signature", |b| {
        b.iter(|| {
            signature::verify(
                black_box(&msg_sig),
                &[
                    token.expose(),
                    "1409735669",
                    "1320562132",
                    black_box(&encrypted),
                ],
            )
        })
    });
    c.bench_function(&format!("decrypt_text_push_{}B", push.len()), |b| {
        b.iter(|| cipher.decrypt(black_box(&encrypted), &app))
    });
    c.bench_function("parse_text_push", |b| {
        b.iter(|| message::parse(black_box(&push)))
    });
    c.bench_function("render_text_reply", |b| {
        b.iter(|| reply::render(black_box(&text_reply), &ctx))
    });
    c.bench_function("seal_text_reply", |b| {
        b.iter(|| {
            reply::seal(
                &cipher,
                &app,
                &token,
                black_box(&reply_xml),
                1414387152,
                "1320562132",
            )
        })
    });
}

/// The callback's query string: the hand parser against what it replaced (serde_urlencoded).
fn query_benches(c: &mut Criterion) {
    let raw = "signature=5f8a0ad2c4c0f1d0b2a3e4f5a6b7c8d9e0f1a2b3&timestamp=1409735669&nonce=1320562132&openid=olPjZjsXuQPJoV0HlruZkNzKc91E&encrypt_type=aes&msg_signature=6c5e5cbd5b0c1f9f0a4a07f3a1e0e9d2c3b4a5f6";
    c.bench_function("callback_query_hand", |b| {
        b.iter(|| mpgate::http::callback::parse_query(black_box(raw)))
    });
    c.bench_function("callback_query_serde_urlencoded", |b| {
        b.iter(|| {
            actix_web::web::Query::<mpgate::pipeline::CallbackQuery>::from_query(black_box(raw))
                .map(|q| q.into_inner())
                .unwrap_or_default()
        })
    });
}

criterion_group!(protocol, benches, query_benches);
criterion_main!(protocol);
