//! WeChat Pay notifications (`POST /pay/notify`), pure: verify the signature headers over the
//! raw body, then parse the envelope and decrypt its resource into a typed event. Nothing is
//! decrypted before the signature holds. The HTTP layer passes the headers, the body and `now`;
//! applying the event (orders, grants) belongs to the pay service.
//!
//! Uses [`super::crypto`] only.

use serde::{Deserialize, Serialize};

use super::crypto::{aead_decrypt, ApiV3Key, PlatformKeys, SignedHeaders, VerifyError};

/// How far `Wechatpay-Timestamp` may be from now: 300 s or more is refused (PAY.md).
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;

/// The largest body [`open`] reads; real notifications are about 1 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A verified, decrypted notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The notification id (`EV-…`): the same for retries of one notification.
    pub id: String,
    /// When the platform made it (RFC 3339, as sent).
    pub create_time: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, …
    pub event_type: String,
    /// The platform's one-line summary (e.g. 支付成功).
    pub summary: String,
    /// What the resource decrypted to.
    pub event: PayEvent,
}

/// The decrypted resource, by event type.
#[derive(Debug, Clone, PartialEq)]
pub enum PayEvent {
    /// TRANSACTION.SUCCESS (the resource decrypted to a transaction)
    Transaction(Transaction),
    /// REFUND.SUCCESS / REFUND.ABNORMAL / REFUND.CLOSED
    Refund {
        /// Which of the three.
        kind: RefundKind,
        /// The refund as decrypted.
        refund: Refund,
    },
    /// Any other event type: verified and decrypted, but not one mpgate acts on.
    Other,
}

/// The refund event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundKind {
    /// REFUND.SUCCESS: final, the money is back with the payer.
    Success,
    /// REFUND.ABNORMAL: not final (e.g. the payer's card is closed).
    Abnormal,
    /// REFUND.CLOSED: the refund failed.
    Closed,
}

/// A transaction as notifications and order queries carry it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Transaction {
    /// The app id the order was made for.
    pub appid: String,
    /// The merchant id.
    pub mchid: String,
    /// mpgate's order number.
    pub out_trade_no: String,
    /// The platform's transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// JSAPI, NATIVE, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    /// The trade state.
    pub trade_state: TradeState,
    /// The state in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_state_desc: Option<String>,
    /// When it was paid (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// The order's `attach`, echoed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// Who paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    /// How much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<TxAmount>,
}

/// The payer of a transaction.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Payer {
    /// The payer's openid under the order's app id.
    pub openid: String,
}

/// A transaction's amount, in fen.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct TxAmount {
    /// The order total.
    pub total: u64,
    /// What the payer paid (less with coupons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<u64>,
    /// CNY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The payer's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// SUCCESS | REFUND | NOTPAY | CLOSED | REVOKED | USERPAYING | PAYERROR, and `Other` for
/// anything new (kept, not refused: unknown is a value).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum TradeState {
    /// Paid.
    Success,
    /// Refunded (in part or whole).
    Refund,
    /// Not paid yet.
    NotPay,
    /// Closed unpaid.
    Closed,
    /// Revoked (payment-code orders).
    Revoked,
    /// The payer is paying (entering a password).
    UserPaying,
    /// The payment failed.
    PayError,
    /// A state this version does not know.
    Other(String),
}

impl TradeState {
    /// The platform's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
            TradeState::Other(s) => s,
        }
    }
}

impl From<String> for TradeState {
    fn from(s: String) -> TradeState {
        match s.as_str() {
            "SUCCESS" => TradeState::Success,
            "REFUND" => TradeState::Refund,
            "NOTPAY" => TradeState::NotPay,
            "CLOSED" => TradeState::Closed,
            "REVOKED" => TradeState::Revoked,
            "USERPAYING" => TradeState::UserPaying,
            "PAYERROR" => TradeState::PayError,
            _ => TradeState::Other(s),
        }
    }
}

impl From<TradeState> for String {
    fn from(s: TradeState) -> String {
        match s {
            TradeState::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

/// A refund as refund notifications carry it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Refund {
    /// The merchant id.
    pub mchid: String,
    /// The refunded order.
    pub out_trade_no: String,
    /// The platform's transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// The platform's refund id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// SUCCESS, CLOSED, ABNORMAL.
    pub refund_status: String,
    /// When the refund succeeded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// The amounts, in fen.
    pub amount: RefundAmount,
}

/// A refund's amounts, in fen.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RefundAmount {
    /// The order total.
    pub total: u64,
    /// This refund.
    pub refund: u64,
    /// What the payer paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<u64>,
    /// What goes back to the payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_refund: Option<u64>,
}

/// Why a notification was refused (the platform retries it; nothing changes).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The signature headers do not verify.
    #[error("{0}")]
    Verify(VerifyError),
    /// Verified, but not the documented JSON (or too large).
    #[error("malformed notification: {0}")]
    Malformed(String),
    /// AEAD failed: wrong APIv3 key or tampered resource.
    #[error("the resource does not decrypt (wrong APIv3 key or tampered)")]
    Decrypt,
}

impl NotifyError {
    /// A short reason for `{"code":"FAIL","message":…}`; never a secret or decrypted content.
    pub fn message(&self) -> String {
        match self {
            NotifyError::Verify(VerifyError::MissingHeader(h)) => format!("missing header {h}"),
            NotifyError::Verify(VerifyError::UnknownSerial) => "unknown Wechatpay-Serial".into(),
            NotifyError::Verify(VerifyError::BadTimestamp) => {
                "Wechatpay-Timestamp is not a number".into()
            }
            NotifyError::Verify(VerifyError::StaleTimestamp) => {
                "Wechatpay-Timestamp is too far from now".into()
            }
            NotifyError::Verify(VerifyError::BadSignature) => "bad signature".into(),
            NotifyError::Malformed(why) => format!("malformed notification: {why}"),
            NotifyError::Decrypt => "resource does not decrypt".into(),
        }
    }
}

impl From<VerifyError> for NotifyError {
    fn from(e: VerifyError) -> NotifyError {
        NotifyError::Verify(e)
    }
}

/// The envelope as sent; `resource_type` and `original_type` are informative only.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    create_time: String,
    event_type: String,
    #[serde(default)]
    summary: String,
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    #[serde(default)]
    associated_data: String,
    nonce: String,
}

/// A serde error without the input's values (a decrypted resource carries an openid).
fn shape_error(what: &str, e: &serde_json::Error) -> NotifyError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "not the documented fields",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    NotifyError::Malformed(format!(
        "{what} is {kind} (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Verifies `headers` over the raw `body` (PlatformKeys::verify, window
/// [`TIMESTAMP_WINDOW_SECS`]) THEN parses the envelope and decrypts the resource.
pub fn open(
    keys: &PlatformKeys,
    apiv3: &ApiV3Key,
    headers: &SignedHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Result<Notification, NotifyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(NotifyError::Malformed(format!(
            "body over {MAX_BODY_BYTES} bytes"
        )));
    }
    keys.verify(headers, body, now, TIMESTAMP_WINDOW_SECS)?;
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| shape_error("the body", &e))?;
    let r = &envelope.resource;
    if r.algorithm != "AEAD_AES_256_GCM" {
        return Err(NotifyError::Malformed(
            "resource.algorithm is not AEAD_AES_256_GCM".into(),
        ));
    }
    let plain = aead_decrypt(apiv3, &r.nonce, &r.associated_data, &r.ciphertext)
        .map_err(|_| NotifyError::Decrypt)?;
    let refund = |kind| -> Result<PayEvent, NotifyError> {
        let refund =
            serde_json::from_slice(&plain).map_err(|e| shape_error("the decrypted refund", &e))?;
        Ok(PayEvent::Refund { kind, refund })
    };
    let event = match envelope.event_type.as_str() {
        "TRANSACTION.SUCCESS" => PayEvent::Transaction(
            serde_json::from_slice(&plain)
                .map_err(|e| shape_error("the decrypted transaction", &e))?,
        ),
        "REFUND.SUCCESS" => refund(RefundKind::Success)?,
        "REFUND.ABNORMAL" => refund(RefundKind::Abnormal)?,
        "REFUND.CLOSED" => refund(RefundKind::Closed)?,
        _ => PayEvent::Other,
    };
    Ok(Notification {
        id: envelope.id,
        create_time: envelope.create_time,
        event_type: envelope.event_type,
        summary: envelope.summary,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_states_round_trip_and_a_new_one_is_kept() {
        for s in [
            "SUCCESS",
            "REFUND",
            "NOTPAY",
            "CLOSED",
            "REVOKED",
            "USERPAYING",
            "PAYERROR",
            "NEWSTATE",
        ] {
            let state: TradeState =
                serde_json::from_value(serde_json::Value::from(s)).expect("a string");
            assert_eq!(state.as_str(), s);
            assert_eq!(serde_json::to_value(&state).expect("serialises"), s);
        }
        assert_eq!(TradeState::from("NOTPAY".to_owned()), TradeState::NotPay);
        assert_eq!(
            TradeState::from("LATER".to_owned()),
            TradeState::Other("LATER".to_owned())
        );
    }

    #[test]
    fn a_shape_error_does_not_quote_the_decrypted_values() {
        let e = serde_json::from_str::<Transaction>(
            r#"{"appid":"wx1","mchid":"1","out_trade_no":"o","trade_state":"SUCCESS","payer":{"openid":5},"amount":{"total":"oSecretOpenid"}}"#,
        )
        .expect_err("wrong types");
        let msg = shape_error("the decrypted transaction", &e).message();
        assert!(!msg.contains("oSecretOpenid"), "{msg}");
        assert!(
            msg.starts_with(
                "malformed notification: the decrypted transaction is not the documented fields"
            ),
            "{msg}"
        );
    }

    #[test]
    fn an_oversized_body_is_malformed_before_anything_else() {
        let keys = PlatformKeys::default();
        let key = ApiV3Key::new("0123456789abcdef0123456789abcdef").expect("key");
        let h = SignedHeaders {
            serial: "",
            signature: "",
            timestamp: "",
            nonce: "",
        };
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            open(&keys, &key, &h, &body, 0),
            Err(NotifyError::Malformed(_))
        ));
        assert!(matches!(
            open(&keys, &key, &h, b"{}", 0),
            Err(NotifyError::Verify(VerifyError::MissingHeader(
                "Wechatpay-Serial"
            )))
        ));
    }
}
