//! The HTTP client of WeChat Pay's APIv3: a JSAPI order, an order query, closing an order.
//!
//! Every request is signed ([`RequestSigner::authorization`]) and every answer's signature is
//! verified with the platform's keys before its body is believed ([`PlatformKeys::verify`]):
//! an answer that does not verify is an error, never a prepay id or a payment. Connections and
//! whole calls are bounded (2 s / 4 s) so a page waiting on an order answers within WeChat's
//! patience, and a transient failure (network, 5xx, `SYSTEM_ERROR`) is retried once.
//!
//! May depend on: `pay::crypto`, `pay::notify` (the transaction shape), reqwest, serde_json.
//! Never logs a body (it carries openids) or the Authorization header.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::crypto::{self, PlatformKeys, RequestSigner, SignedHeaders};
use super::notify::{Transaction, TIMESTAMP_WINDOW_SECS};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(4);
/// A second try after a transient failure waits this long first.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Why a call to WeChat Pay did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayApiError {
    /// Not reached, timed out, or a 5xx: may pass later.
    #[error("WeChat Pay unreachable: {0}")]
    Unreachable(String),
    /// WeChat Pay refused the request (4xx), with its code and message.
    #[error("WeChat Pay refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer's signature did not verify: not believed.
    #[error("WeChat Pay's answer is not signed by a configured key: {0}")]
    BadSignature(crypto::VerifyError),
    /// The answer was not the documented JSON.
    #[error("unexpected answer from WeChat Pay: {0}")]
    Decode(String),
}

impl PayApiError {
    fn is_transient(&self) -> bool {
        match self {
            PayApiError::Unreachable(_) => true,
            PayApiError::Refused { code, .. } => {
                code == "SYSTEM_ERROR" || code == "FREQUENCY_LIMITED"
            }
            _ => false,
        }
    }
}

/// The JSAPI order body, field order as WeChat Pay documents it.
#[derive(Debug, Clone, Serialize)]
pub struct JsapiOrder<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub description: &'a str,
    pub out_trade_no: &'a str,
    /// RFC 3339, e.g. `2026-12-03T10:00:00+08:00`.
    pub time_expire: String,
    pub notify_url: &'a str,
    pub amount: Amount,
    pub payer: Payer<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Amount {
    pub total: u64,
    pub currency: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Payer<'a> {
    pub openid: &'a str,
}

#[derive(serde::Deserialize)]
struct PrepayAnswer {
    prepay_id: String,
}

#[derive(serde::Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct PayClient {
    http: reqwest::Client,
    base: Arc<str>,
    signer: Arc<RequestSigner>,
    keys: Arc<PlatformKeys>,
    /// Public-key mode sends `Wechatpay-Serial: PUB_KEY_ID_…` so the platform answers signed
    /// with that key.
    public_key_id: Option<Arc<str>>,
}

impl std::fmt::Debug for PayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl PayClient {
    pub fn new(
        base: &str,
        signer: Arc<RequestSigner>,
        keys: Arc<PlatformKeys>,
        public_key_id: Option<&str>,
    ) -> PayClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .build()
            // Only a TLS backend that cannot initialise fails here: a property of the build.
            .expect("the HTTP client (rustls, bundled roots) initialises");
        PayClient {
            http,
            base: base.trim_end_matches('/').into(),
            signer,
            keys,
            public_key_id: public_key_id.map(Into::into),
        }
    }

    /// Places a JSAPI order; the same parameters again give the same prepay id.
    pub async fn jsapi(&self, order: &JsapiOrder<'_>) -> Result<String, PayApiError> {
        let body = serde_json::to_string(order).map_err(|e| PayApiError::Decode(e.to_string()))?;
        let answer = self
            .call(reqwest::Method::POST, "/v3/pay/transactions/jsapi", &body)
            .await?;
        let a: PrepayAnswer =
            serde_json::from_slice(&answer).map_err(|e| PayApiError::Decode(e.to_string()))?;
        if a.prepay_id.is_empty() || a.prepay_id.len() > 64 {
            return Err(PayApiError::Decode("prepay_id is empty or too long".into()));
        }
        Ok(a.prepay_id)
    }

    /// The platform's view of an order; `None` when it does not know it (`ORDER_NOT_EXIST`:
    /// the order was never placed there, e.g. the page was closed before the JSAPI call).
    pub async fn query(&self, out_trade_no: &str) -> Result<Option<Transaction>, PayApiError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.signer.mchid()
        );
        match self.call(reqwest::Method::GET, &path, "").await {
            Ok(answer) => serde_json::from_slice(&answer)
                .map(Some)
                .map_err(|e| PayApiError::Decode(e.to_string())),
            Err(PayApiError::Refused { code, .. }) if code == "ORDER_NOT_EXIST" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes an unpaid order, so it can no longer be paid.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), PayApiError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let body = serde_json::json!({ "mchid": self.signer.mchid() }).to_string();
        self.call(reqwest::Method::POST, &path, &body)
            .await
            .map(|_| ())
    }

    /// One signed call, retried once after a transient failure.
    async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> Result<Vec<u8>, PayApiError> {
        match self.call_once(method.clone(), path_and_query, body).await {
            Err(e) if e.is_transient() => {
                tokio::time::sleep(RETRY_AFTER).await;
                self.call_once(method, path_and_query, body).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> Result<Vec<u8>, PayApiError> {
        let auth = self.signer.authorization(
            method.as_str(),
            path_and_query,
            now_secs(),
            &crypto::nonce(),
            body,
        );
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base))
            .header("Authorization", auth)
            .header("Accept", "application/json")
            .header("User-Agent", concat!("mpgate/", env!("CARGO_PKG_VERSION")));
        if let Some(id) = &self.public_key_id {
            req = req.header("Wechatpay-Serial", id.as_ref());
        }
        if method != reqwest::Method::GET {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| PayApiError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (serial, signature, timestamp, nonce) = (
            header("Wechatpay-Serial"),
            header("Wechatpay-Signature"),
            header("Wechatpay-Timestamp"),
            header("Wechatpay-Nonce"),
        );
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PayApiError::Unreachable(e.without_url().to_string()))?;
        if status.is_server_error() {
            return Err(PayApiError::Unreachable(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            let e: ErrorAnswer = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(PayApiError::Refused {
                status: status.as_u16(),
                code: e.code,
                message: e.message.chars().take(200).collect(),
            });
        }
        // A success is believed only once its signature holds. An empty 204 (a close) carries
        // nothing to believe, so an unsigned one is accepted.
        if bytes.is_empty() && signature.is_none() {
            return Ok(Vec::new());
        }
        let h = SignedHeaders {
            serial: serial.as_deref().unwrap_or(""),
            signature: signature.as_deref().unwrap_or(""),
            timestamp: timestamp.as_deref().unwrap_or(""),
            nonce: nonce.as_deref().unwrap_or(""),
        };
        self.keys
            .verify(&h, &bytes, now_secs(), TIMESTAMP_WINDOW_SECS)
            .map_err(PayApiError::BadSignature)?;
        Ok(bytes.to_vec())
    }
}
