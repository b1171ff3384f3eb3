//! A fake of WeChat Pay APIv3 on a real HTTP server (127.0.0.1, any port): JSAPI orders, order
//! queries and closes, checked and answered as `../shared/PAY.md` says the platform does, and
//! notifications (signed, AES-256-GCM encrypted) sent to mpgate when a test says so.
//!
//! Its cryptography is the `rsa` and `aes-gcm` crates, not mpgate's `ring`-based code: a
//! misreading shared by both sides could otherwise make them agree on bytes the platform would
//! refuse. The keys are the test keys in `../shared/conformance/pay/`, read at run time
//! ([`FakePay::start`] returns `None` after saying it skips when they are absent; under
//! `CI=true` that is a failure).
//!
//! Where it differs from the platform, on purpose:
//! - `notify_url` may be `http://` (the test server has no TLS); the platform requires https.
//! - The clock it checks `Authorization` timestamps against can be pinned
//!   ([`FakePay::pin_request_clock`]) so the published request vectors verify.
//! - It never sends a notification by itself: tests decide when (and whether) one arrives.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;

/// The `Authorization` scheme and the `Wechatpay-Signature-Type` of APIv3.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// How far a request's timestamp may be from the platform's clock.
pub const REQUEST_WINDOW_SECS: i64 = 300;
/// A public key id the fake never signs with (`Tweak::UnknownSerial`).
pub const UNKNOWN_SERIAL: &str = "PUB_KEY_ID_0000000000000000000000000000000000";

/// The WeChat Pay conformance dir (`../shared/conformance/pay` or `$MPGATE_CONFORMANCE_DIR/pay`),
/// or `None` after saying why when it is absent outside CI.
pub fn pay_conformance_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("MPGATE_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    };
    let dir = base.join("pay");
    if dir.join("vectors.json").is_file() {
        return Some(dir);
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !on_ci,
        "WeChat Pay conformance dir not found at {} (CI=true: this must not be skipped)",
        dir.display()
    );
    eprintln!(
        "skipping: WeChat Pay conformance dir not found at {} (set MPGATE_CONFORMANCE_DIR)",
        dir.display()
    );
    None
}

/// `vectors.json` of the pay conformance dir.
pub fn pay_vectors(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("vectors.json")).expect("vectors.json readable");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

fn setting(vectors: &Value, name: &str) -> String {
    vectors["settings"][name]
        .as_str()
        .unwrap_or_else(|| panic!("vectors.json: settings.{name} is not a string"))
        .to_string()
}

/// Who the fake is and whom it serves.
#[derive(Clone, Debug)]
pub struct FakePayConfig {
    /// The app id orders must carry (the account the merchant is bound to).
    pub appid: String,
    pub mchid: String,
    /// The serial of the merchant's API certificate: `serial_no` in `Authorization`.
    pub merchant_serial: String,
    /// The platform public key id: `Wechatpay-Serial` of everything the fake signs.
    pub platform_key_id: String,
    /// The APIv3 key (32 ASCII characters) notifications are encrypted with.
    pub apiv3_key: String,
}

/// The platform's view of an order's payment (`trade_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TradeState {
    NotPay,
    Success,
    Refund,
    Closed,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::Closed => "CLOSED",
        }
    }
    fn desc(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::Success => "支付成功",
            TradeState::Refund => "转入退款",
            TradeState::Closed => "订单已关闭",
        }
    }
}

/// An order as the fake holds it.
#[derive(Clone, Debug)]
pub struct FakeOrder {
    /// The JSAPI request body as received (parsed).
    pub body: Value,
    pub out_trade_no: String,
    pub prepay_id: String,
    pub state: TradeState,
    pub transaction_id: Option<String>,
    pub success_time: Option<String>,
    pub refunded_fen: u64,
}

impl FakeOrder {
    pub fn amount_fen(&self) -> u64 {
        self.body["amount"]["total"].as_u64().unwrap_or(0)
    }
    pub fn openid(&self) -> &str {
        self.body["payer"]["openid"].as_str().unwrap_or("")
    }
}

/// One request the fake received, and what it answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as sent.
    pub path: String,
    pub authorization: Option<String>,
    /// The `Wechatpay-Serial` request header (public-key mode sends the platform key id).
    pub wechatpay_serial: Option<String>,
    pub body: String,
    pub status: u16,
    /// `code` of an error answer.
    pub code: Option<String>,
}

/// How a notification sent with [`FakePay::notify_custom`] is spoiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tweak {
    /// As the platform sends it.
    None,
    /// Signed, then one character of the body changed.
    TamperBody,
    /// Signed properly, but `Wechatpay-Serial` names a key mpgate does not have.
    UnknownSerial,
    /// Signed properly with a timestamp 10 minutes old.
    StaleTimestamp,
    /// Signed properly, the resource encrypted with another APIv3 key.
    WrongApiV3Key,
    /// Signed with another RSA-2048 key (the merchant's) under the platform key's id.
    WrongSigningKey,
}

/// What mpgate answered a notification.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub status: u16,
    pub body: String,
}

impl Delivery {
    /// `{"code":"FAIL",...}`, or Null when the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct State {
    cfg: FakePayConfig,
    merchant_public: VerifyingKey<Sha256>,
    platform: SigningKey<Sha256>,
    /// A real RSA-2048 key that is not the platform's.
    stranger: SigningKey<Sha256>,
    orders: Mutex<Vec<FakeOrder>>,
    seen: Mutex<Vec<Seen>>,
    queries: AtomicUsize,
    closes: AtomicUsize,
    fail_next: AtomicUsize,
    sign_badly_next: AtomicUsize,
    pinned_now: Mutex<Option<i64>>,
    seq: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake. Clones share it; the server runs until the test's runtime ends.
#[derive(Clone)]
pub struct FakePay {
    pub base: String,
    pub dir: PathBuf,
    state: Arc<State>,
}

impl FakePay {
    /// A fake for the test app (`helpers::APP_ID`), with the merchant and platform settings of
    /// `vectors.json`; `None` (after a message) when the conformance files are absent.
    pub async fn start() -> Option<FakePay> {
        let dir = pay_conformance_dir()?;
        let v = pay_vectors(&dir);
        let cfg = FakePayConfig {
            appid: crate::helpers::APP_ID.to_string(),
            mchid: setting(&v, "mchid"),
            merchant_serial: setting(&v, "merchant_cert_serial"),
            platform_key_id: setting(&v, "platform_public_key_id"),
            apiv3_key: setting(&v, "apiv3_key"),
        };
        Some(Self::start_with(&dir, cfg).await)
    }

    /// A fake with the given identity, keys from `dir`.
    pub async fn start_with(dir: &Path, cfg: FakePayConfig) -> FakePay {
        let pem = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
        };
        let merchant_public = RsaPublicKey::from_public_key_pem(&pem("merchant_public_key.pem"))
            .expect("merchant_public_key.pem is an RSA SPKI PEM");
        let platform = RsaPrivateKey::from_pkcs8_pem(&pem("platform_private_key.pem"))
            .expect("platform_private_key.pem is a PKCS#8 RSA PEM");
        let stranger = RsaPrivateKey::from_pkcs8_pem(&pem("merchant_private_key.pem"))
            .expect("merchant_private_key.pem is a PKCS#8 RSA PEM");
        let state = Arc::new(State {
            cfg,
            merchant_public: VerifyingKey::new(merchant_public),
            platform: SigningKey::new(platform),
            stranger: SigningKey::new(stranger),
            orders: Mutex::default(),
            seen: Mutex::default(),
            queries: AtomicUsize::new(0),
            closes: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            sign_badly_next: AtomicUsize::new(0),
            pinned_now: Mutex::new(None),
            seq: AtomicU64::new(1),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake WeChat Pay");
        let port = listener.local_addr().expect("local addr").port();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(serve))
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        FakePay {
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            state,
        }
    }

    pub fn config(&self) -> &FakePayConfig {
        &self.state.cfg
    }

    /// The `MPGATE_PAY_*` settings of a server that pays through this fake: the merchant key
    /// and the platform public key from the conformance dir, public-key mode.
    pub fn env(&self) -> Vec<(String, String)> {
        let c = &self.state.cfg;
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            ("MPGATE_PAY_MCH_ID".into(), c.mchid.clone()),
            (
                "MPGATE_PAY_PRIVATE_KEY_FILE".into(),
                file("merchant_private_key.pem"),
            ),
            ("MPGATE_PAY_CERT_SERIAL".into(), c.merchant_serial.clone()),
            ("MPGATE_PAY_APIV3_KEY".into(), c.apiv3_key.clone()),
            (
                "MPGATE_PAY_PUBLIC_KEY_FILE".into(),
                file("platform_public_key.pem"),
            ),
            ("MPGATE_PAY_PUBLIC_KEY_ID".into(), c.platform_key_id.clone()),
            ("MPGATE_PAY_API_BASE".into(), self.base.clone()),
        ]
    }

    /// Checks request timestamps against `now` instead of the clock (`None`: the clock again).
    pub fn pin_request_clock(&self, now: Option<i64>) {
        *lock(&self.state.pinned_now) = now;
    }

    /// The next `n` requests get HTTP 500 `SYSTEM_ERROR`, whatever they are.
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` answers carry a `Wechatpay-Signature` that does not verify.
    pub fn sign_badly_next(&self, n: usize) {
        self.state.sign_badly_next.store(n, Ordering::SeqCst);
    }

    /// Order queries received (`GET …/out-trade-no/{no}`), whatever was answered.
    pub fn queries(&self) -> usize {
        self.state.queries.load(Ordering::SeqCst)
    }

    /// Closes received (`POST …/out-trade-no/{no}/close`), whatever was answered.
    pub fn closes(&self) -> usize {
        self.state.closes.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    /// The orders the fake accepted, in the order they were created.
    pub fn orders(&self) -> Vec<FakeOrder> {
        lock(&self.state.orders).clone()
    }

    pub fn order(&self, out_trade_no: &str) -> Option<FakeOrder> {
        lock(&self.state.orders)
            .iter()
            .find(|o| o.out_trade_no == out_trade_no)
            .cloned()
    }

    fn update<R>(&self, out_trade_no: &str, f: impl FnOnce(&mut FakeOrder) -> R) -> R {
        let mut orders = lock(&self.state.orders);
        let o = orders
            .iter_mut()
            .find(|o| o.out_trade_no == out_trade_no)
            .unwrap_or_else(|| panic!("the fake has no order {out_trade_no}"));
        f(o)
    }

    /// The reader paid: queries show SUCCESS from now on. No notification is sent.
    pub fn pay(&self, out_trade_no: &str) {
        let (tid, time) = (self.state.transaction_id(), rfc3339_now());
        self.update(out_trade_no, |o| {
            assert_eq!(o.state, TradeState::NotPay, "paying {out_trade_no} twice");
            o.state = TradeState::Success;
            o.transaction_id = Some(tid);
            o.success_time = Some(time);
        });
    }

    /// The transaction object the platform shows for an order (queries, `TRANSACTION.SUCCESS`).
    pub fn transaction(&self, out_trade_no: &str) -> Value {
        let o = self
            .order(out_trade_no)
            .unwrap_or_else(|| panic!("the fake has no order {out_trade_no}"));
        transaction_json(&o)
    }

    /// The reader pays and the platform notifies `url` with `TRANSACTION.SUCCESS` for it.
    pub async fn notify_paid(&self, out_trade_no: &str, url: &str) -> Delivery {
        if self
            .order(out_trade_no)
            .is_some_and(|o| o.state == TradeState::NotPay)
        {
            self.pay(out_trade_no);
        }
        let resource = self.transaction(out_trade_no);
        self.notify_custom(url, "TRANSACTION.SUCCESS", resource, Tweak::None)
            .await
    }

    /// The decrypted `REFUND.SUCCESS` resource for refunding `refund_fen` of a paid order.
    pub fn refund_resource(&self, out_trade_no: &str, refund_fen: u64) -> Value {
        let o = self
            .order(out_trade_no)
            .unwrap_or_else(|| panic!("the fake has no order {out_trade_no}"));
        let n = self.state.seq.fetch_add(1, Ordering::SeqCst);
        json!({
            "mchid": self.state.cfg.mchid,
            "out_trade_no": o.out_trade_no,
            "transaction_id": o.transaction_id.clone().unwrap_or_else(|| self.state.transaction_id()),
            "out_refund_no": format!("rf{}{n}", o.out_trade_no),
            "refund_id": format!("5030090809{n:019}"),
            "refund_status": "SUCCESS",
            "success_time": rfc3339_now(),
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": o.amount_fen(),
                "refund": refund_fen,
                "payer_total": o.amount_fen(),
                "payer_refund": refund_fen,
            },
        })
    }

    /// The merchant refunds `refund_fen` (the operator did it in the merchant console) and the
    /// platform notifies `url` with `REFUND.SUCCESS`.
    pub async fn refund(&self, out_trade_no: &str, refund_fen: u64, url: &str) -> Delivery {
        let resource = self.refund_resource(out_trade_no, refund_fen);
        self.update(out_trade_no, |o| {
            o.refunded_fen += refund_fen;
            if o.state == TradeState::Success {
                o.state = TradeState::Refund;
            }
        });
        self.notify_custom(url, "REFUND.SUCCESS", resource, Tweak::None)
            .await
    }

    /// Sends one notification of `event_type` carrying `resource` (encrypted), spoiled as
    /// `tweak` says, and returns what `url` answered.
    pub async fn notify_custom(
        &self,
        url: &str,
        event_type: &str,
        resource: Value,
        tweak: Tweak,
    ) -> Delivery {
        let (headers, body) = self.notification(event_type, &resource, tweak);
        self.deliver(url, &headers, &body).await
    }

    /// Sends a notification built by [`FakePay::notification`] (again: the platform retries
    /// with the very same bytes).
    pub async fn deliver(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> Delivery {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "Mozilla/4.0")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("mpgate answers the notification");
        Delivery {
            status: resp.status().as_u16(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    /// The headers and raw body of a notification, as the platform builds it.
    pub fn notification(
        &self,
        event_type: &str,
        resource: &Value,
        tweak: Tweak,
    ) -> (Vec<(&'static str, String)>, String) {
        let st = &self.state;
        let original_type = if event_type.starts_with("REFUND.") {
            "refund"
        } else {
            "transaction"
        };
        let key = if tweak == Tweak::WrongApiV3Key {
            "wrongWrongWrongApiV3Key012345678".to_string()
        } else {
            st.cfg.apiv3_key.clone()
        };
        let nonce = random_alnum(12);
        let ciphertext = aead_encrypt(
            key.as_bytes(),
            nonce.as_bytes(),
            original_type.as_bytes(),
            resource.to_string().as_bytes(),
        );
        let summary = match event_type {
            "TRANSACTION.SUCCESS" => "支付成功",
            "REFUND.SUCCESS" => "退款成功",
            "REFUND.ABNORMAL" => "退款异常",
            "REFUND.CLOSED" => "退款关闭",
            _ => "通知",
        };
        let n = st.seq.fetch_add(1, Ordering::SeqCst);
        let body = json!({
            "id": format!("EV-{n:019}"),
            "create_time": rfc3339_now(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": B64.encode(ciphertext),
                "associated_data": original_type,
                "nonce": nonce,
            },
        })
        .to_string();
        let mut timestamp = chrono::Utc::now().timestamp();
        if tweak == Tweak::StaleTimestamp {
            timestamp -= 600;
        }
        let nonce = random_alnum(32);
        let message = format!("{timestamp}\n{nonce}\n{body}\n");
        let signer = if tweak == Tweak::WrongSigningKey {
            &st.stranger
        } else {
            &st.platform
        };
        let signature = B64.encode(signer.sign(message.as_bytes()).to_bytes());
        let serial = if tweak == Tweak::UnknownSerial {
            UNKNOWN_SERIAL.to_string()
        } else {
            st.cfg.platform_key_id.clone()
        };
        let body = if tweak == Tweak::TamperBody {
            body.replacen("encrypt-resource", "encrypt-resourcE", 1)
        } else {
            body
        };
        let headers = vec![
            ("Wechatpay-Serial", serial),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Timestamp", timestamp.to_string()),
            ("Wechatpay-Nonce", nonce),
            ("Wechatpay-Signature-Type", SCHEME.to_string()),
        ];
        (headers, body)
    }

    /// A request to the fake signed with the merchant key, as a merchant's client sends it
    /// (for the fake's own tests).
    pub fn authorization(&self, method: &str, path_and_query: &str, body: &str) -> String {
        let pem = std::fs::read_to_string(self.dir.join("merchant_private_key.pem")).unwrap();
        let key = SigningKey::<Sha256>::new(RsaPrivateKey::from_pkcs8_pem(&pem).unwrap());
        let ts = chrono::Utc::now().timestamp();
        let nonce = random_alnum(32);
        let message = format!("{method}\n{path_and_query}\n{ts}\n{nonce}\n{body}\n");
        let sig = B64.encode(key.sign(message.as_bytes()).to_bytes());
        let c = &self.state.cfg;
        format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{ts}\",serial_no=\"{}\",signature=\"{sig}\"",
            c.mchid, c.merchant_serial
        )
    }
}

/// AES-256-GCM with the platform's layout: ciphertext ‖ 16-byte tag.
pub fn aead_encrypt(key: &[u8], nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new_from_slice(key)
        .expect("a 32-byte key")
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encrypts")
}

/// The inverse of [`aead_encrypt`]; `None` when the tag does not verify.
pub fn aead_decrypt(key: &[u8], nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    Aes256Gcm::new_from_slice(key)
        .ok()?
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// SHA256withRSA (PKCS#1 v1.5) verification of a base64 signature with a SPKI PEM public key.
pub fn rsa_verify(public_pem: &str, message: &[u8], signature_b64: &str) -> bool {
    let Ok(key) = RsaPublicKey::from_public_key_pem(public_pem) else {
        return false;
    };
    let Ok(sig) = B64.decode(signature_b64) else {
        return false;
    };
    let Ok(sig) = Signature::try_from(sig.as_slice()) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key)
        .verify(message, &sig)
        .is_ok()
}

/// base64(SHA256withRSA PKCS#1 v1.5) with a PKCS#8 PEM private key.
pub fn rsa_sign(private_pem: &str, message: &[u8]) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(private_pem).expect("a PKCS#8 RSA key");
    B64.encode(SigningKey::<Sha256>::new(key).sign(message).to_bytes())
}

fn random_alnum(n: usize) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn rfc3339_now() -> String {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    chrono::Utc::now()
        .with_timezone(&beijing)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn transaction_json(o: &FakeOrder) -> Value {
    let b = &o.body;
    let mut t = json!({
        "appid": b["appid"],
        "mchid": b["mchid"],
        "out_trade_no": o.out_trade_no,
        "trade_state": o.state.as_str(),
        "trade_state_desc": o.state.desc(),
    });
    if let Some(attach) = b.get("attach") {
        t["attach"] = attach.clone();
    }
    let total = o.amount_fen();
    if matches!(o.state, TradeState::Success | TradeState::Refund) {
        t["transaction_id"] = json!(o.transaction_id);
        t["trade_type"] = json!("JSAPI");
        t["bank_type"] = json!("OTHERS");
        t["success_time"] = json!(o.success_time);
        t["payer"] = json!({"openid": o.openid()});
        t["amount"] = json!({
            "total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY",
        });
    } else {
        t["amount"] = json!({"total": total, "currency": "CNY", "payer_currency": "CNY"});
    }
    t
}

impl State {
    fn now(&self) -> i64 {
        lock(&self.pinned_now).unwrap_or_else(|| chrono::Utc::now().timestamp())
    }

    fn transaction_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        format!("4200002{n:021}")
    }

    fn prepay_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
        format!("wx{stamp}{n:022x}")
    }

    /// `Authorization` as the platform checks it: scheme, mchid, serial, a fresh timestamp and
    /// the merchant's signature over `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`.
    fn check_authorization(&self, req: &HttpRequest, body: &[u8]) -> Result<(), String> {
        let header = req
            .headers()
            .get("authorization")
            .ok_or("Authorization 头缺失")?
            .to_str()
            .map_err(|_| "Authorization 头不是 ASCII")?;
        let params = header
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| format!("认证类型不是 {SCHEME}"))?;
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for part in params.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("Authorization 参数 {part:?} 格式错误"))?;
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| format!("Authorization 参数 {k} 未加引号"))?;
            if fields.insert(k, v).is_some() {
                return Err(format!("Authorization 参数 {k} 重复"));
            }
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| format!("Authorization 缺少 {k}"))
        };
        if get("mchid")? != self.cfg.mchid {
            return Err("mchid 与商户号不匹配".into());
        }
        if get("serial_no")? != self.cfg.merchant_serial {
            return Err("商户证书序列号有误".into());
        }
        let ts = get("timestamp")?;
        let ts_num: i64 = ts.parse().map_err(|_| "timestamp 不是整数")?;
        if (self.now() - ts_num).abs() > REQUEST_WINDOW_SECS {
            return Err("请求时间戳超出有效期".into());
        }
        let nonce = get("nonce_str")?;
        if nonce.is_empty() {
            return Err("nonce_str 为空".into());
        }
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut message = format!("{}\n{path}\n{ts}\n{nonce}\n", req.method()).into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        let sig = B64
            .decode(get("signature")?)
            .map_err(|_| "签名不是 base64")?;
        let sig = Signature::try_from(sig.as_slice()).map_err(|_| "签名长度错误")?;
        self.merchant_public
            .verify(&message, &sig)
            .map_err(|_| "签名错误，请检查后再试".to_string())
    }

    fn jsapi(&self, req: &HttpRequest, body: &[u8]) -> (u16, Option<Value>) {
        let json_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json_type {
            return param_error("Content-Type 须为 application/json");
        }
        let Ok(order) = serde_json::from_slice::<Value>(body) else {
            return param_error("请求体不是合法的 JSON");
        };
        if let Err(why) = self.validate(&order) {
            return param_error(&why);
        }
        let no = order["out_trade_no"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut orders = lock(&self.orders);
        if let Some(existing) = orders.iter().find(|o| o.out_trade_no == no) {
            return match existing.state {
                TradeState::Success | TradeState::Refund => error(400, "ORDERPAID", "该订单已支付"),
                TradeState::Closed => error(400, "ORDER_CLOSED", "订单已关闭"),
                TradeState::NotPay if existing.body == order => {
                    (200, Some(json!({"prepay_id": existing.prepay_id})))
                }
                TradeState::NotPay => error(400, "INVALID_REQUEST", "201 商户订单号重复"),
            };
        }
        let prepay_id = self.prepay_id();
        orders.push(FakeOrder {
            body: order,
            out_trade_no: no,
            prepay_id: prepay_id.clone(),
            state: TradeState::NotPay,
            transaction_id: None,
            success_time: None,
            refunded_fen: 0,
        });
        (200, Some(json!({"prepay_id": prepay_id})))
    }

    /// The JSAPI body's rules (PAY.md, "Creating an order").
    fn validate(&self, o: &Value) -> Result<(), String> {
        let s = |field: &str| {
            o[field]
                .as_str()
                .ok_or_else(|| format!("缺少参数 {field}（字符串）"))
        };
        if s("appid")? != self.cfg.appid {
            return Err("appid 与商户号未绑定".into());
        }
        if s("mchid")? != self.cfg.mchid {
            return Err("mchid 与请求商户号不一致".into());
        }
        let description = s("description")?;
        let len = description.chars().count();
        if len == 0 || len > 127 {
            return Err(format!("description 长度 {len} 不在 1–127 之间"));
        }
        let no = s("out_trade_no")?;
        let no_ok = (6..=32).contains(&no.len())
            && no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
        if !no_ok {
            return Err(format!("out_trade_no {no:?} 须为 6–32 位数字、字母或 _-|*"));
        }
        // The platform also requires https; the tests' server has no TLS.
        let notify = s("notify_url")?;
        let Some(rest) = notify
            .strip_prefix("https://")
            .or_else(|| notify.strip_prefix("http://"))
        else {
            return Err(format!("notify_url {notify:?} 不是绝对地址"));
        };
        if rest.is_empty() || rest.starts_with('/') || notify.contains('?') || notify.len() > 256 {
            return Err(format!("notify_url {notify:?} 须为不带参数的绝对地址"));
        }
        let amount = &o["amount"];
        if amount["total"].as_u64().is_none_or(|t| t == 0) {
            return Err(format!("amount.total {} 须为正整数（分）", amount["total"]));
        }
        if !(amount.get("currency").is_none() || amount["currency"] == "CNY") {
            return Err(format!("amount.currency {} 须为 CNY", amount["currency"]));
        }
        if o["payer"]["openid"].as_str().is_none_or(str::is_empty) {
            return Err("缺少参数 payer.openid".into());
        }
        if let Some(attach) = o.get("attach") {
            if attach.as_str().is_none_or(|a| a.chars().count() > 128) {
                return Err("attach 须为不超过 128 字符的字符串".into());
            }
        }
        if let Some(t) = o.get("time_expire") {
            let ok = t
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok());
            if !ok {
                return Err(format!("time_expire {t} 不是 RFC 3339 时间"));
            }
        }
        Ok(())
    }

    fn query(&self, req: &HttpRequest, no: &str) -> (u16, Option<Value>) {
        let mchid = web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("mchid").cloned());
        if mchid.as_deref() != Some(self.cfg.mchid.as_str()) {
            return param_error("mchid 缺失或与商户号不一致");
        }
        let orders = lock(&self.orders);
        match orders.iter().find(|o| o.out_trade_no == no) {
            Some(o) => (200, Some(transaction_json(o))),
            None => error(404, "ORDER_NOT_EXIST", "订单不存在"),
        }
    }

    fn close(&self, no: &str, body: &[u8]) -> (u16, Option<Value>) {
        let mchid = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b["mchid"].as_str().map(str::to_string));
        if mchid.as_deref() != Some(self.cfg.mchid.as_str()) {
            return param_error("mchid 缺失或与商户号不一致");
        }
        let mut orders = lock(&self.orders);
        match orders.iter_mut().find(|o| o.out_trade_no == no) {
            None => error(404, "ORDER_NOT_EXIST", "订单不存在"),
            Some(o) => match o.state {
                TradeState::NotPay | TradeState::Closed => {
                    o.state = TradeState::Closed;
                    (204, None)
                }
                TradeState::Success | TradeState::Refund => error(400, "ORDERPAID", "订单已支付"),
            },
        }
    }

    /// An answer signed with the platform key over `TIMESTAMP\nNONCE\nBODY\n`.
    fn answer(&self, status: u16, body: Option<&Value>) -> HttpResponse {
        let body = body.map(Value::to_string).unwrap_or_default();
        let ts = chrono::Utc::now().timestamp();
        let nonce = random_alnum(32);
        let bad = self
            .sign_badly_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let signed = if bad {
            format!("{ts}\n{nonce}\n{body} \n")
        } else {
            format!("{ts}\n{nonce}\n{body}\n")
        };
        let signature = B64.encode(self.platform.sign(signed.as_bytes()).to_bytes());
        let mut resp = HttpResponse::build(StatusCode::from_u16(status).expect("a status"));
        resp.insert_header(("Wechatpay-Serial", self.cfg.platform_key_id.as_str()))
            .insert_header(("Wechatpay-Timestamp", ts.to_string()))
            .insert_header(("Wechatpay-Nonce", nonce))
            .insert_header(("Wechatpay-Signature", signature))
            .insert_header(("Wechatpay-Signature-Type", SCHEME))
            .insert_header(("Request-ID", format!("fake-{ts}-{}", random_alnum(8))));
        if body.is_empty() {
            resp.finish()
        } else {
            resp.content_type("application/json").body(body)
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> (u16, Option<Value>) {
    (status, Some(json!({"code": code, "message": message})))
}

fn param_error(message: &str) -> (u16, Option<Value>) {
    error(400, "PARAM_ERROR", message)
}

const TRANSACTIONS: &str = "/v3/pay/transactions/out-trade-no/";

async fn serve(st: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let path = req.path().to_string();
    let method = req.method().as_str().to_string();
    let no = path.strip_prefix(TRANSACTIONS);
    match (method.as_str(), no) {
        ("GET", Some(_)) => st.queries.fetch_add(1, Ordering::SeqCst),
        ("POST", Some(rest)) if rest.ends_with("/close") => {
            st.closes.fetch_add(1, Ordering::SeqCst)
        }
        _ => 0,
    };
    let (status, json) = if st
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        error(500, "SYSTEM_ERROR", "系统错误")
    } else if let Err(why) = st.check_authorization(&req, &body) {
        error(401, "SIGN_ERROR", &why)
    } else {
        match (method.as_str(), no) {
            ("POST", None) if path == "/v3/pay/transactions/jsapi" => st.jsapi(&req, &body),
            ("GET", Some(no)) if !no.contains('/') => st.query(&req, no),
            ("POST", Some(rest)) if rest.ends_with("/close") => {
                st.close(rest.trim_end_matches("/close"), &body)
            }
            _ => error(404, "NOT_FOUND", "无此接口"),
        }
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    lock(&st.seen).push(Seen {
        method,
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or(path),
        authorization: header("authorization"),
        wechatpay_serial: header("wechatpay-serial"),
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
        code: json
            .as_ref()
            .and_then(|j| j["code"].as_str())
            .map(str::to_string),
    });
    st.answer(status, json.as_ref())
}

/// The fake's own checks: it speaks the platform's protocol byte for byte (the published
/// vectors), and its controls do what they say.
mod self_tests {
    use super::*;

    fn vector<'a>(v: &'a Value, list: &str, id: &str) -> &'a Value {
        v[list]
            .as_array()
            .unwrap_or_else(|| panic!("vectors.json: {list} is not a list"))
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("vectors.json: no {list} entry {id}"))
    }

    fn text<'a>(v: &'a Value, field: &str) -> &'a str {
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {field} is not a string", v["id"]))
    }

    fn pem(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    /// An answer the fake gave, with its signature checked against the platform public key.
    struct Answer {
        status: u16,
        body: String,
        signature_ok: bool,
        serial: String,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or(Value::Null)
        }
    }

    async fn call(
        fake: &FakePay,
        method: &str,
        path: &str,
        body: &str,
        authorization: Option<String>,
    ) -> Answer {
        let url = format!("{}{path}", fake.base);
        let mut req = match method {
            "GET" => client().get(url),
            _ => client()
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = |n: &str| resp.headers()[n].to_str().unwrap().to_string();
        let (ts, nonce, sig, serial) = (
            h("wechatpay-timestamp"),
            h("wechatpay-nonce"),
            h("wechatpay-signature"),
            h("wechatpay-serial"),
        );
        assert_eq!(h("wechatpay-signature-type"), SCHEME);
        let body = resp.text().await.unwrap();
        let message = format!("{ts}\n{nonce}\n{body}\n");
        let signature_ok = rsa_verify(
            &pem(&fake.dir, "platform_public_key.pem"),
            message.as_bytes(),
            &sig,
        );
        Answer {
            status,
            body,
            signature_ok,
            serial,
        }
    }

    async fn signed(fake: &FakePay, method: &str, path: &str, body: &str) -> Answer {
        let auth = fake.authorization(method, path, body);
        call(fake, method, path, body, Some(auth)).await
    }

    fn order_body(no: &str) -> Value {
        json!({
            "appid": crate::helpers::APP_ID,
            "mchid": "1900009191",
            "description": "Rust 101",
            "out_trade_no": no,
            "notify_url": "http://mp.test/pay/notify",
            "amount": {"total": 1990, "currency": "CNY"},
            "payer": {"openid": "oReader"},
        })
    }

    #[tokio::test]
    async fn the_fake_accepts_the_published_request_signatures_and_refuses_any_one_byte_change() {
        let Some(dir) = pay_conformance_dir() else {
            return;
        };
        let v = pay_vectors(&dir);
        let order = vector(&v, "request_signing", "jsapi-order");
        let query = vector(&v, "request_signing", "query-order");
        let fake = FakePay::start_with(
            &dir,
            FakePayConfig {
                appid: setting(&v, "appid"),
                mchid: setting(&v, "mchid"),
                merchant_serial: setting(&v, "merchant_cert_serial"),
                platform_key_id: setting(&v, "platform_public_key_id"),
                apiv3_key: setting(&v, "apiv3_key"),
            },
        )
        .await;
        let signed_at: i64 = text(order, "timestamp").parse().unwrap();
        fake.pin_request_clock(Some(signed_at + 10));
        let auth = text(order, "authorization").to_string();
        let body = text(order, "body");

        // One byte changed anywhere: the body, the signature, the path, a header field.
        let changed_body = body.replacen("1990", "1991", 1);
        let a = call(
            &fake,
            "POST",
            text(order, "url"),
            &changed_body,
            Some(auth.clone()),
        )
        .await;
        assert_eq!(
            (a.status, a.json()["code"].as_str()),
            (401, Some("SIGN_ERROR")),
            "{}",
            a.body
        );
        let sig_at = auth.find("signature=\"").unwrap() + 11;
        let mut bad_sig = auth.clone().into_bytes();
        bad_sig[sig_at + 5] = if bad_sig[sig_at + 5] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let bad_sig = String::from_utf8(bad_sig).unwrap();
        let a = call(&fake, "POST", text(order, "url"), body, Some(bad_sig)).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let other_nonce = auth.replacen("nonce_str=\"5", "nonce_str=\"6", 1);
        let a = call(&fake, "POST", text(order, "url"), body, Some(other_nonce)).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let other_serial = auth.replacen("serial_no=\"5", "serial_no=\"6", 1);
        let a = call(&fake, "POST", text(order, "url"), body, Some(other_serial)).await;
        assert_eq!(a.status, 401, "{}", a.body);
        let a = call(&fake, "POST", text(order, "url"), body, None).await;
        assert_eq!(a.status, 401, "no Authorization at all");
        assert!(fake.orders().is_empty(), "nothing refused was recorded");

        // The clock: more than 5 minutes after the signature, the same request is refused.
        fake.pin_request_clock(Some(signed_at + REQUEST_WINDOW_SECS + 1));
        let a = call(&fake, "POST", text(order, "url"), body, Some(auth.clone())).await;
        assert_eq!(a.status, 401, "{}", a.body);
        fake.pin_request_clock(Some(signed_at + 10));

        // The published request itself: an order, answered and signed with the platform key.
        let a = call(&fake, "POST", text(order, "url"), body, Some(auth.clone())).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.signature_ok,
            "the answer verifies with platform_public_key.pem"
        );
        assert_eq!(a.serial, setting(&v, "platform_public_key_id"));
        let prepay = a.json()["prepay_id"].as_str().unwrap().to_string();
        assert!(prepay.starts_with("wx"), "{prepay}");
        assert_eq!(fake.orders().len(), 1);
        assert_eq!(
            fake.orders()[0].body,
            serde_json::from_str::<Value>(body).unwrap()
        );

        // The published query, the query string inside the signed path.
        let qpath = text(query, "url");
        let qauth = format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{}\",timestamp=\"{}\",serial_no=\"{}\",signature=\"{}\"",
            setting(&v, "mchid"),
            text(query, "nonce_str"),
            text(query, "timestamp"),
            setting(&v, "merchant_cert_serial"),
            text(query, "signature"),
        );
        let a = call(&fake, "GET", qpath, "", Some(qauth.clone())).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.signature_ok);
        assert_eq!(a.json()["trade_state"], "NOTPAY");
        let other_query = qpath.replace("mchid=1900009191", "mchid=1900009192");
        let a = call(&fake, "GET", &other_query, "", Some(qauth)).await;
        assert_eq!(a.status, 401, "the query is signed too: {}", a.body);
        assert_eq!(fake.queries(), 2);
    }

    #[tokio::test]
    async fn the_fakes_crypto_reproduces_the_published_known_answers() {
        let Some(dir) = pay_conformance_dir() else {
            return;
        };
        let v = pay_vectors(&dir);
        let merchant = pem(&dir, "merchant_private_key.pem");

        let ka = &v["rsa_sign_known_answer"];
        assert_eq!(
            rsa_sign(&merchant, text(ka, "message").as_bytes()),
            text(ka, "signature")
        );
        for r in v["request_signing"].as_array().unwrap() {
            assert_eq!(
                rsa_sign(&merchant, text(r, "message").as_bytes()),
                text(r, "signature"),
                "{}",
                r["id"]
            );
        }
        let js = &v["jsapi_pay_sign"];
        assert_eq!(
            rsa_sign(&merchant, text(js, "message").as_bytes()),
            text(js, "paySign")
        );
        let ae = &v["aead_known_answer"];
        let sealed = aead_encrypt(
            text(ae, "key").as_bytes(),
            text(ae, "nonce").as_bytes(),
            text(ae, "associated_data").as_bytes(),
            text(ae, "plaintext").as_bytes(),
        );
        assert_eq!(B64.encode(&sealed), text(ae, "ciphertext"));

        // The published notifications: what verifies and decrypts is exactly what they say.
        let platform = pem(&dir, "platform_public_key.pem");
        let apiv3 = setting(&v, "apiv3_key");
        let now: i64 = v["settings"]["now"].as_i64().unwrap();
        for n in v["notifications"].as_array().unwrap() {
            let h = |k: &str| n["headers"][k].as_str().unwrap();
            let body = text(n, "body");
            let message = format!(
                "{}\n{}\n{body}\n",
                h("Wechatpay-Timestamp"),
                h("Wechatpay-Nonce")
            );
            let serial_ok = h("Wechatpay-Serial") == setting(&v, "platform_public_key_id");
            let fresh = (now - h("Wechatpay-Timestamp").parse::<i64>().unwrap()).abs() < 300;
            let sig_ok = rsa_verify(&platform, message.as_bytes(), h("Wechatpay-Signature"));
            let resource: Value = serde_json::from_str::<Value>(body).unwrap()["resource"].clone();
            let plain = aead_decrypt(
                apiv3.as_bytes(),
                resource["nonce"].as_str().unwrap().as_bytes(),
                resource["associated_data"].as_str().unwrap().as_bytes(),
                &B64.decode(resource["ciphertext"].as_str().unwrap())
                    .unwrap(),
            );
            let outcome = if !serial_ok {
                "reject_serial"
            } else if !fresh {
                "reject_timestamp"
            } else if !sig_ok {
                "reject_signature"
            } else if plain.is_none() {
                "reject_decrypt"
            } else {
                "accept"
            };
            assert_eq!(outcome, text(n, "expect"), "{}", n["id"]);
            if outcome == "accept" {
                let got: Value = serde_json::from_slice(&plain.unwrap()).unwrap();
                assert_eq!(got, n["decrypted"], "{}", n["id"]);
            }
        }
    }

    #[tokio::test]
    async fn orders_are_checked_kept_queried_and_closed_as_the_platform_does() {
        let Some(fake) = FakePay::start().await else {
            return;
        };
        let jsapi = "/v3/pay/transactions/jsapi";
        let body = order_body("mpgTest000001").to_string();
        let first = signed(&fake, "POST", jsapi, &body).await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert!(first.signature_ok);
        let again = signed(&fake, "POST", jsapi, &body).await;
        assert_eq!(
            again.json()["prepay_id"],
            first.json()["prepay_id"],
            "same parameters, same prepay_id"
        );
        let mut other = order_body("mpgTest000001");
        other["amount"]["total"] = json!(1);
        let a = signed(&fake, "POST", jsapi, &other.to_string()).await;
        assert_eq!(
            (a.status, a.json()["code"].as_str()),
            (400, Some("INVALID_REQUEST"))
        );
        assert_eq!(a.json()["message"], "201 商户订单号重复");
        assert_eq!(fake.orders().len(), 1);

        type Spoil = Box<dyn Fn(&mut Value)>;
        let bad: Vec<(&str, Spoil)> = vec![
            (
                "another appid",
                Box::new(|o: &mut Value| o["appid"] = json!("wx0000000000000000")),
            ),
            (
                "another mchid",
                Box::new(|o: &mut Value| o["mchid"] = json!("1900000000")),
            ),
            (
                "128-char description",
                Box::new(|o: &mut Value| o["description"] = json!("x".repeat(128))),
            ),
            (
                "empty description",
                Box::new(|o: &mut Value| o["description"] = json!("")),
            ),
            (
                "5-char out_trade_no",
                Box::new(|o: &mut Value| o["out_trade_no"] = json!("abcde")),
            ),
            (
                "33-char out_trade_no",
                Box::new(|o: &mut Value| o["out_trade_no"] = json!("a".repeat(33))),
            ),
            (
                "out_trade_no with a dot",
                Box::new(|o: &mut Value| o["out_trade_no"] = json!("abc.def")),
            ),
            (
                "notify_url with a query",
                Box::new(|o: &mut Value| o["notify_url"] = json!("https://mp.test/pay/notify?x=1")),
            ),
            (
                "relative notify_url",
                Box::new(|o: &mut Value| o["notify_url"] = json!("/pay/notify")),
            ),
            (
                "zero amount",
                Box::new(|o: &mut Value| o["amount"]["total"] = json!(0)),
            ),
            (
                "fractional amount",
                Box::new(|o: &mut Value| o["amount"]["total"] = json!(19.9)),
            ),
            (
                "amount in yuan as text",
                Box::new(|o: &mut Value| o["amount"]["total"] = json!("19.90")),
            ),
            (
                "USD",
                Box::new(|o: &mut Value| o["amount"]["currency"] = json!("USD")),
            ),
            (
                "no payer",
                Box::new(|o: &mut Value| {
                    o.as_object_mut().unwrap().remove("payer");
                }),
            ),
        ];
        for (i, (what, spoil)) in bad.iter().enumerate() {
            let mut o = order_body(&format!("mpgBad{i:06}"));
            spoil(&mut o);
            let a = signed(&fake, "POST", jsapi, &o.to_string()).await;
            assert_eq!(
                (a.status, a.json()["code"].as_str()),
                (400, Some("PARAM_ERROR")),
                "{what}: {}",
                a.body
            );
            assert!(a.signature_ok, "errors are signed too");
        }
        assert_eq!(fake.orders().len(), 1, "no refused order was kept");
        let ok_edges = order_body("a|b*c-d_e");
        assert_eq!(
            signed(&fake, "POST", jsapi, &ok_edges.to_string())
                .await
                .status,
            200
        );

        // Queries and closes.
        let q = |no: &str| format!("{TRANSACTIONS}{no}?mchid=1900009191");
        let a = signed(&fake, "GET", &q("mpgTest000001"), "").await;
        assert_eq!(a.json()["trade_state"], "NOTPAY");
        assert!(a.json().get("transaction_id").is_none());
        fake.pay("mpgTest000001");
        let t = signed(&fake, "GET", &q("mpgTest000001"), "").await.json();
        assert_eq!(t["trade_state"], "SUCCESS");
        assert_eq!(t["payer"]["openid"], "oReader");
        assert_eq!(t["amount"]["total"], 1990);
        assert_eq!(t["amount"]["payer_total"], 1990);
        assert!(t["transaction_id"].as_str().unwrap().len() == 28, "{t}");
        assert!(chrono::DateTime::parse_from_rfc3339(t["success_time"].as_str().unwrap()).is_ok());
        assert_eq!(t, fake.transaction("mpgTest000001"));
        let a = signed(&fake, "GET", &q("mpgNoSuchOrder"), "").await;
        assert_eq!(
            (a.status, a.json()["code"].as_str()),
            (404, Some("ORDER_NOT_EXIST"))
        );
        let a = signed(&fake, "GET", &format!("{TRANSACTIONS}mpgTest000001"), "").await;
        assert_eq!(a.status, 400, "a query without mchid");
        let close = |no: &str| format!("{TRANSACTIONS}{no}/close");
        let mchid = json!({"mchid": "1900009191"}).to_string();
        let a = signed(&fake, "POST", &close("mpgTest000001"), &mchid).await;
        assert_eq!(
            (a.status, a.json()["code"].as_str()),
            (400, Some("ORDERPAID"))
        );
        let a = signed(&fake, "POST", &close("a|b*c-d_e"), &mchid).await;
        assert_eq!((a.status, a.body.as_str()), (204, ""));
        assert!(
            a.signature_ok,
            "an empty answer is signed over an empty body"
        );
        assert_eq!(fake.order("a|b*c-d_e").unwrap().state, TradeState::Closed);
        let a = signed(&fake, "POST", jsapi, &ok_edges.to_string()).await;
        assert_eq!(a.json()["code"], "ORDER_CLOSED");
        assert_eq!((fake.queries(), fake.closes()), (4, 2));

        // The knobs: an outage, then answers that do not verify.
        fake.fail_next(2);
        for _ in 0..2 {
            let a = signed(&fake, "GET", &q("mpgTest000001"), "").await;
            assert_eq!(
                (a.status, a.json()["code"].as_str()),
                (500, Some("SYSTEM_ERROR"))
            );
        }
        fake.sign_badly_next(1);
        let a = signed(&fake, "GET", &q("mpgTest000001"), "").await;
        assert_eq!(a.status, 200);
        assert!(!a.signature_ok, "sign_badly_next spoils the signature");
        let a = signed(&fake, "GET", &q("mpgTest000001"), "").await;
        assert!(a.signature_ok, "and only for the next answer");
        assert!(fake.seen().iter().all(|s| s.authorization.is_some()));
    }

    /// What a receiver got: headers (lower-case names) and raw body of each request.
    type Received = Arc<Mutex<Vec<(HashMap<String, String>, String)>>>;

    /// A receiver that records what it gets and answers 204.
    async fn receiver() -> (String, Received) {
        let got: Received = Arc::default();
        let data = web::Data::new(got.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).default_service(web::to(
                |got: web::Data<Received>, req: HttpRequest, body: web::Bytes| async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
                        .collect();
                    lock(&got).push((headers, String::from_utf8(body.to_vec()).unwrap()));
                    HttpResponse::NoContent().finish()
                },
            ))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        (format!("http://127.0.0.1:{port}/pay/notify"), got)
    }

    #[tokio::test]
    async fn notifications_are_signed_encrypted_and_spoiled_exactly_as_asked() {
        let Some(fake) = FakePay::start().await else {
            return;
        };
        let jsapi = "/v3/pay/transactions/jsapi";
        let a = signed(
            &fake,
            "POST",
            jsapi,
            &order_body("mpgNotify0001").to_string(),
        )
        .await;
        assert_eq!(a.status, 200);
        let platform = pem(&fake.dir, "platform_public_key.pem");
        let apiv3 = fake.config().apiv3_key.clone();
        let open = |headers: &HashMap<String, String>, body: &str| {
            let h = |k: &str| headers[&k.to_ascii_lowercase()].clone();
            let message = format!(
                "{}\n{}\n{body}\n",
                h("Wechatpay-Timestamp"),
                h("Wechatpay-Nonce")
            );
            let sig_ok = rsa_verify(&platform, message.as_bytes(), &h("Wechatpay-Signature"));
            let age =
                chrono::Utc::now().timestamp() - h("Wechatpay-Timestamp").parse::<i64>().unwrap();
            let b: Value = serde_json::from_str(body).unwrap();
            let r = &b["resource"];
            let plain = aead_decrypt(
                apiv3.as_bytes(),
                r["nonce"].as_str().unwrap().as_bytes(),
                r["associated_data"].as_str().unwrap().as_bytes(),
                &B64.decode(r["ciphertext"].as_str().unwrap()).unwrap(),
            )
            .map(|p| serde_json::from_slice::<Value>(&p).unwrap());
            (h("Wechatpay-Serial"), sig_ok, age, b, plain)
        };

        // Delivered over HTTP: a paid order's TRANSACTION.SUCCESS.
        let (url, got) = receiver().await;
        let d = fake.notify_paid("mpgNotify0001", &url).await;
        assert_eq!((d.status, d.body.as_str()), (204, ""));
        let (headers, body) = lock(&got)[0].clone();
        assert_eq!(headers["content-type"], "application/json");
        let (serial, sig_ok, age, b, plain) = open(&headers, &body);
        assert_eq!(serial, fake.config().platform_key_id);
        assert!(sig_ok && (0..5).contains(&age));
        assert_eq!(b["event_type"], "TRANSACTION.SUCCESS");
        assert_eq!(b["resource_type"], "encrypt-resource");
        assert_eq!(b["resource"]["algorithm"], "AEAD_AES_256_GCM");
        assert_eq!(b["resource"]["nonce"].as_str().unwrap().len(), 12);
        let t = plain.expect("decrypts with the APIv3 key");
        assert_eq!(t["trade_state"], "SUCCESS");
        assert_eq!(t["out_trade_no"], "mpgNotify0001");
        assert_eq!(t["appid"], crate::helpers::APP_ID);
        assert_eq!(t["mchid"], "1900009191");
        assert_eq!(t["payer"]["openid"], "oReader");
        assert_eq!(t["amount"]["total"], 1990);
        assert_eq!(
            fake.order("mpgNotify0001").unwrap().state,
            TradeState::Success
        );

        let d = fake.refund("mpgNotify0001", 1990, &url).await;
        assert_eq!(d.status, 204);
        let (headers, body) = lock(&got)[1].clone();
        let (_, sig_ok, _, b, plain) = open(&headers, &body);
        assert!(sig_ok);
        assert_eq!(b["event_type"], "REFUND.SUCCESS");
        assert_eq!(b["resource"]["original_type"], "refund");
        let r = plain.unwrap();
        assert_eq!(
            (r["refund_status"].as_str(), r["amount"]["refund"].as_u64()),
            (Some("SUCCESS"), Some(1990))
        );
        assert_eq!(r["transaction_id"], t["transaction_id"]);
        assert_eq!(
            fake.order("mpgNotify0001").unwrap().state,
            TradeState::Refund
        );

        // Each tweak spoils exactly one thing.
        let resource = fake.transaction("mpgNotify0001");
        let check = |tweak: Tweak| {
            let (headers, body) = fake.notification("TRANSACTION.SUCCESS", &resource, tweak);
            let headers = headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect::<HashMap<_, _>>();
            let (serial, sig_ok, age, _, plain) = open(&headers, &body);
            (
                serial == fake.config().platform_key_id,
                sig_ok,
                age < 300,
                plain.is_some(),
            )
        };
        assert_eq!(check(Tweak::None), (true, true, true, true));
        assert_eq!(check(Tweak::TamperBody), (true, false, true, true));
        assert_eq!(check(Tweak::UnknownSerial), (false, true, true, true));
        assert_eq!(check(Tweak::StaleTimestamp), (true, true, false, true));
        assert_eq!(check(Tweak::WrongApiV3Key), (true, true, true, false));
        assert_eq!(check(Tweak::WrongSigningKey), (true, false, true, true));
    }
}
