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
