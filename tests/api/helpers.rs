//! Test helpers: the real app on a random port, and a small simulator of the platform that
//! signs, encrypts, pushes, and opens the sealed replies.

use std::path::{Path, PathBuf};

use mpgate::settings::Settings;
use mpgate::startup::Application;
use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::signature;
use mpgate::wechat::types::AppId;
use mpgate::wechat::xml;

pub const TOKEN: &str = "mpgatetesttoken";
pub const APP_ID: &str = "wx1234567890abcdef";
/// A non-canonical key, like most real ones.
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const OTHER_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
pub const ACCOUNT: &str = "gh_test000001";

/// How a test wants the server configured.
#[derive(Clone)]
pub struct Options {
    pub aes_key: Option<String>,
    pub previous_key: Option<String>,
    /// keywords.toml content; default: the fixture beside these tests.
    pub keywords: Option<String>,
    pub extra_env: Vec<(String, String)>,
    /// More files for the rules dir (path relative to it, content), written before start.
    pub files: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            aes_key: Some(AES_KEY.to_string()),
            previous_key: None,
            keywords: None,
            extra_env: Vec::new(),
            files: Vec::new(),
        }
    }
}

impl Options {
    pub fn plaintext() -> Self {
        Options {
            aes_key: None,
            ..Default::default()
        }
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.push((k.to_string(), v.to_string()));
        self
    }
}

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub opts: Options,
    /// Owns the app's data and rules dirs: they live exactly as long as the test app.
    pub _dirs: tempfile::TempDir,
    pub keywords_path: PathBuf,
    pub gateway: std::sync::Arc<mpgate::pipeline::Gateway>,
    /// The `MPGATE_METRICS_LISTEN` listener's port, when the test set one.
    pub metrics_port: Option<u16>,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api")
        .join(name)
}

/// Starts the real server on 127.0.0.1:0 with its own data dir and rules file.
pub async fn spawn_app(opts: Options) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        mpgate::telemetry::init(mpgate::settings::LogFormat::Pretty);
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = data_dir.path().join("rules");
    std::fs::create_dir_all(rules_dir.join("templates")).unwrap();
    let src = match &opts.keywords {
        Some(s) => s.clone(),
        None => std::fs::read_to_string(fixture("keywords.toml")).unwrap(),
    };
    let keywords_path = rules_dir.join("keywords.toml");
    std::fs::write(&keywords_path, src).unwrap();
    for entry in std::fs::read_dir(fixture("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            rules_dir.join("templates").join(entry.file_name()),
        )
        .unwrap();
    }
    for (rel, content) in &opts.files {
        let path = rules_dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let data = data_dir.path().join("state");
    let mut env: Vec<(String, String)> = vec![
        ("MPGATE_TOKEN".into(), TOKEN.into()),
        ("MPGATE_APP_ID".into(), APP_ID.into()),
        ("MPGATE_LISTEN".into(), "127.0.0.1:0".into()),
        ("MPGATE_DATA_DIR".into(), data.display().to_string()),
        (
            "MPGATE_KEYWORDS".into(),
            keywords_path.display().to_string(),
        ),
        ("MPGATE_PUBLIC_URL".into(), "http://mp.test".into()),
    ];
    if let Some(k) = &opts.aes_key {
        env.push(("MPGATE_ENCODING_AES_KEY".into(), k.clone()));
    }
    if let Some(k) = &opts.previous_key {
        env.push(("MPGATE_ENCODING_AES_KEY_PREVIOUS".into(), k.clone()));
    }
    env.extend(opts.extra_env.iter().cloned());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let settings = Settings::for_tests(&pairs).expect("test settings");
    settings.check_data_dir().unwrap();
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    let gateway = app.gateway();
    let metrics_port = app.metrics_port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        opts,
        _dirs: data_dir,
        keywords_path,
        gateway,
        metrics_port,
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn cipher(key: &str) -> Cipher {
    Cipher::new(&EncodingAesKey::parse(key).unwrap())
}

/// What the platform would send for one push.
pub struct Signed {
    pub query: String,
    pub body: String,
    pub nonce: String,
}

/// Plaintext mode: `signature` over token, timestamp, nonce.
pub fn sign_plain(xml: &str, timestamp: i64, nonce: &str) -> Signed {
    let sig = signature::sign(&[TOKEN, &timestamp.to_string(), nonce]);
    Signed {
        query: format!("signature={sig}&timestamp={timestamp}&nonce={nonce}&openid=oTEST"),
        body: xml.to_string(),
        nonce: nonce.to_string(),
    }
}

/// The `Encrypt` text and the query string the platform sends with it.
fn encrypt_parts(
    xml: &str,
    key: &str,
    app_id: &str,
    timestamp: i64,
    nonce: &str,
) -> (String, String) {
    let enc = cipher(key).encrypt(xml, &AppId::new(app_id));
    let ts = timestamp.to_string();
    let msg_sig = signature::sign(&[TOKEN, &ts, nonce, &enc]);
    let sig = signature::sign(&[TOKEN, &ts, nonce]);
    let query = format!(
        "signature={sig}&timestamp={ts}&nonce={nonce}&openid=oTEST&encrypt_type=aes&msg_signature={msg_sig}"
    );
    (enc, query)
}

/// Safe mode: body `<xml><ToUserName/><Encrypt/></xml>`, `msg_signature` over the Encrypt text.
pub fn seal_push(xml: &str, key: &str, app_id: &str, timestamp: i64, nonce: &str) -> Signed {
    let (enc, query) = encrypt_parts(xml, key, app_id, timestamp, nonce);
    Signed {
        query,
        body: format!("<xml>\n    <ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>\n    <Encrypt><![CDATA[{enc}]]></Encrypt>\n</xml>"),
        nonce: nonce.to_string(),
    }
}

/// Compatible mode: plaintext fields and `<Encrypt>` in one body.
pub fn seal_push_compat(xml: &str, key: &str, timestamp: i64, nonce: &str) -> Signed {
    let (enc, query) = encrypt_parts(xml, key, APP_ID, timestamp, nonce);
    let inner = xml
        .trim()
        .trim_start_matches("<xml>")
        .trim_end_matches("</xml>");
    Signed {
        query,
        body: format!("<xml>{inner}<Encrypt><![CDATA[{enc}]]></Encrypt>\n</xml>"),
        nonce: nonce.to_string(),
    }
}

pub fn nonce() -> String {
    use rand::Rng;
    rand::thread_rng()
        .gen_range(100_000_000u64..9_999_999_999)
        .to_string()
}

/// A text message as the platform sends it.
pub fn text_xml(from: &str, content: &str, msg_id: u64) -> String {
    let content = content.replace("]]>", "]]]]><![CDATA[>");
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>\n<FromUserName><![CDATA[{from}]]></FromUserName>\n<CreateTime>{}</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{content}]]></Content>\n<MsgId>{msg_id}</MsgId>\n</xml>",
        now()
    )
}

/// An event push.
pub fn event_xml(from: &str, event: &str, extra: &str, create_time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>\n<FromUserName><![CDATA[{from}]]></FromUserName>\n<CreateTime>{create_time}</CreateTime>\n<MsgType><![CDATA[event]]></MsgType>\n<Event><![CDATA[{event}]]></Event>\n{extra}</xml>"
    )
}

/// A decoded reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub raw: String,
    /// Plaintext reply XML (opened if it was sealed), or None for `success`/empty/errors.
    pub xml: Option<xml::Element>,
}

impl Reply {
    pub fn field(&self, name: &str) -> Option<String> {
        self.xml.as_ref()?.child_text(name).map(str::to_string)
    }
    pub fn msg_type(&self) -> Option<String> {
        self.field("MsgType")
    }
    pub fn content(&self) -> Option<String> {
        self.field("Content")
    }
    pub fn is_success(&self) -> bool {
        self.status == 200 && (self.raw == "success" || self.raw.is_empty())
    }
}

impl TestApp {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("GET")
    }

    pub async fn post_raw(&self, query: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/wechat?{query}")))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Sends a signed push and opens the reply as the platform would.
    pub async fn send(&self, s: &Signed) -> Reply {
        let resp = self.post_raw(&s.query, s.body.clone()).await;
        let status = resp.status().as_u16();
        let raw = resp.text().await.unwrap();
        let xml = if status == 200 && raw != "success" && !raw.is_empty() {
            Some(self.open_reply(&raw, s))
        } else {
            None
        };
        Reply { status, raw, xml }
    }

    /// The platform's side of a reply: an encrypted push gets a sealed envelope whose signature
    /// and app id must check out; a plaintext push gets plain XML.
    fn open_reply(&self, raw: &str, s: &Signed) -> xml::Element {
        let outer = xml::parse(raw).unwrap_or_else(|e| panic!("reply is not XML ({e}): {raw}"));
        if !s.query.contains("encrypt_type=aes") {
            assert!(
                outer.child("Encrypt").is_none(),
                "plaintext push got a sealed reply"
            );
            return outer;
        }
        let enc = outer
            .child_text("Encrypt")
            .expect("sealed reply has <Encrypt>");
        let sig = outer
            .child_text("MsgSignature")
            .expect("sealed reply has <MsgSignature>");
        let ts = outer
            .child_text("TimeStamp")
            .expect("sealed reply has <TimeStamp>");
        let nonce = outer.child_text("Nonce").expect("sealed reply has <Nonce>");
        assert_eq!(nonce, s.nonce, "reply nonce echoes the URL nonce");
        assert!(
            signature::verify(sig, &[TOKEN, ts, nonce, enc]),
            "reply MsgSignature must verify"
        );
        let keys: Vec<&str> = self
            .opts
            .aes_key
            .iter()
            .chain(self.opts.previous_key.iter())
            .map(String::as_str)
            .collect();
        let plain = keys
            .iter()
            .find_map(|k| cipher(k).decrypt(enc, &AppId::new(APP_ID)).ok())
            .expect("reply decrypts with a configured key and carries our app id");
        xml::parse(&plain).unwrap_or_else(|e| panic!("sealed reply is not XML ({e}): {plain}"))
    }

    /// Signs (and, when the app has a key, encrypts) a push for now, sends it, opens the reply.
    pub async fn push(&self, xml: &str) -> Reply {
        let s = match &self.opts.aes_key {
            Some(k) => seal_push(xml, k, APP_ID, now(), &nonce()),
            None => sign_plain(xml, now(), &nonce()),
        };
        self.send(&s).await
    }

    pub async fn say(&self, from: &str, text: &str) -> Reply {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(7_000_000_000_000_000_000);
        self.push(&text_xml(from, text, NEXT.fetch_add(1, Ordering::Relaxed)))
            .await
    }
}
