//! The whole callback in-process: verify → decrypt → parse → dedupe → state → route → render →
//! seal, for one encrypted text push (a new MsgId each time, so dedupe never short-cuts it).
//!
//! `cargo bench --bench pipeline`

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mpgate::pipeline::{CallbackQuery, Gateway};
use mpgate::reload::LiveRules;
use mpgate::rules::RuleSet;
use mpgate::settings::Settings;
use mpgate::store::{Store, StoreConfig};
use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::signature;
use mpgate::wechat::types::AppId;

const TOKEN: &str = "benchtoken";
const APP_ID: &str = "wx1234567890abcdef";
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn bench(c: &mut Criterion) {
    let data = tempfile::tempdir().unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = Settings::for_tests(&[
        ("MPGATE_TOKEN", TOKEN),
        ("MPGATE_APP_ID", APP_ID),
        ("MPGATE_ENCODING_AES_KEY", KEY),
        ("MPGATE_DATA_DIR", data.path().to_str().unwrap()),
    ])
    .unwrap();
    let store = Store::open(data.path(), StoreConfig::default()).unwrap();
    let rules = RuleSet::load(&manifest.join("keywords.toml"))
        .unwrap()
        .rules;
    let secret = store.link_secret().unwrap();
    let gw = Gateway::new(&settings, store, LiveRules::new(rules), secret);
    let cipher = Cipher::new(&EncodingAesKey::parse(KEY).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = AtomicU64::new(1);

    let make = || {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let now = chrono::Utc::now();
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>\n<FromUserName><![CDATA[oBenchUser{}]]></FromUserName>\n<CreateTime>{}</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[请问课程价格是多少？🙂]]></Content>\n<MsgId>{}</MsgId>\n</xml>",
            id % 500,
            now.timestamp(),
            id
        );
        let enc = cipher.encrypt(&xml, &AppId::new(APP_ID));
        let ts = now.timestamp().to_string();
        let nonce = "1234567890";
        let q = CallbackQuery {
            signature: Some(signature::sign(&[TOKEN, &ts, nonce])),
            timestamp: Some(ts.clone()),
            nonce: Some(nonce.into()),
            encrypt_type: Some("aes".into()),
            msg_signature: Some(signature::sign(&[TOKEN, &ts, nonce, &enc])),
            ..Default::default()
        };
        let body = format!("<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>");
        (q, body, now)
    };
    // Sanity: the reply is a sealed envelope.
    let (q, body, now) = make();
    let a = rt.block_on(gw.post(&q, body.as_bytes(), now)).unwrap();
    assert!(a.body.contains("<Encrypt>"), "{}", a.body);

    // The protocol alone (no store, no rules): verify → decrypt → parse → render → seal.
    let token = mpgate::wechat::types::Token::new(TOKEN);
    let app_id = AppId::new(APP_ID);
    let (q, body, now) = make();
    c.bench_function("pipeline/protocol_only", |b| {
        b.iter(|| {
            let ts = q.timestamp.as_deref().unwrap();
            let nonce = q.nonce.as_deref().unwrap();
            let env = mpgate::wechat::message::parse_envelope(&body).unwrap();
            let enc = env.encrypt.unwrap();
            assert!(signature::verify(
                q.msg_signature.as_deref().unwrap(),
                &[TOKEN, ts, nonce, &enc]
            ));
            let xml = cipher.decrypt(&enc, &app_id).unwrap();
            let msg = mpgate::wechat::message::parse(&xml).unwrap();
            let reply = mpgate::wechat::reply::Reply::Text {
                content: "课程价格：早鸟 ¥1999，标准 ¥2599。回复「优惠」看老学员优惠 🙂".into(),
            };
            let ctx = mpgate::wechat::reply::ReplyContext {
                to_user: msg.header.from_user.as_str(),
                from_user: &msg.header.to_user,
                create_time: now.timestamp(),
                after_user_message: true,
            };
            let out = mpgate::wechat::reply::render(&reply, &ctx).unwrap();
            mpgate::wechat::reply::seal(&cipher, &app_id, &token, &out, now.timestamp(), nonce)
        })
    });

    c.bench_function("pipeline/encrypted_text_push", |b| {
        b.iter_batched(
            make,
            |(q, body, now)| rt.block_on(gw.post(&q, body.as_bytes(), now)).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
