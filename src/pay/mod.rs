//! WeChat Pay from the paywall page: orders, payment notifications → entitlements, refunds →
//! revocations, reconciliation.
//!
//! - [`crypto`] (pure): request signing, `paySign`, WeChat Pay's signatures, AES-256-GCM.
//! - [`notify`] (pure): a notification verified, then decrypted into a typed event.
//! - [`client`]: the signed HTTP calls (JSAPI order, query, close), answers verified.
//! - [`Payments`]: the service: places an order for the reader a signed link names, answers
//!   the page's "is it paid?", applies notifications and what reconciliation learns, all through
//!   one function ([`Payments::apply_transaction`]) so a payment learned twice, or by both
//!   ways, is applied once. The store makes each transition atomic with its grant or revoke
//!   and durable before the caller answers.
//!
//! May depend on: `store` (orders, entitlements), `paywall` (links and the access decision),
//! `rules` (prices), `settings`, `wechat::types`, `metrics` (notifications and order
//! transitions counted). Never on HTTP: `http::pay` translates.

pub mod client;
pub mod crypto;
pub mod notify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone};

use self::client::{Amount, JsapiOrder, PayApiError, PayClient, Payer};
use self::crypto::{ApiV3Key, PlatformKeys, RequestSigner, SignedHeaders};
use self::notify::{Notification, NotifyError, PayEvent, RefundKind, TradeState, Transaction};
use crate::paywall::{parse_expires, Access, LinkError, Paywall};
use crate::reload::LiveRules;
use crate::settings::{self, PaySettings, Settings, SettingsError};
use crate::store::{
    CloseOutcome, Order, OrderState, PaidOutcome, PayAnomaly, RefundNote, RefundOutcome, Store,
    StoreError,
};
use crate::sync::lock;
use crate::wechat::types::OpenId;

/// The page asks the platform itself when no notification has come this long after the order.
pub const QUERY_AFTER: Duration = Duration::from_secs(5);
/// …and not more often than this per order (a page polls every second).
const QUERY_EVERY: Duration = Duration::from_secs(3);
/// An open order is reused only while it has at least this much life left to be paid in.
const REUSE_MARGIN_SECS: i64 = 120;
/// A prepay id is valid for two hours; one older than this is asked for again.
const PREPAY_VALID_SECS: i64 = 7000;
/// How often the reconciliation job runs.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Orders looked at per reconciliation pass (the rest wait for the next pass).
const RECONCILE_BATCH: usize = 200;

/// Pay as configured: keys parsed, ready to sign and verify.
#[derive(Clone)]
pub struct PayConfig {
    pub mch_id: String,
    pub app_id: String,
    signer: Arc<RequestSigner>,
    keys: Arc<PlatformKeys>,
    apiv3: ApiV3Key,
    public_key_id: Option<String>,
    pub api_base: String,
    /// Where WeChat Pay sends notifications: `MPGATE_PUBLIC_URL` + `/pay/notify`.
    pub notify_url: String,
    pub order_ttl: Duration,
    pub reconcile_after: Duration,
}

impl std::fmt::Debug for PayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayConfig")
            .field("mch_id", &self.mch_id)
            .field("api_base", &self.api_base)
            .field("serials", &self.keys.serials())
            .finish_non_exhaustive()
    }
}

impl PayConfig {
    /// Reads and parses the key files the settings name; `None` when pay is off. A file that
    /// cannot be read or is not the key it should be stops start-up with one line naming the
    /// variable.
    pub fn load(settings: &Settings) -> Result<Option<PayConfig>, SettingsError> {
        let Some(p) = &settings.pay else {
            return Ok(None);
        };
        Self::from_pay_settings(p, settings.app_id.as_str(), &settings.public_url).map(Some)
    }

    fn from_pay_settings(
        p: &PaySettings,
        app_id: &str,
        public_url: &str,
    ) -> Result<PayConfig, SettingsError> {
        let read = |name: &str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| settings::err(name, format!("cannot read {}: {e}", path.display())))
        };
        let key = crypto::MerchantKey::from_pkcs8_pem(&read(
            "MPGATE_PAY_PRIVATE_KEY_FILE",
            &p.private_key_file,
        )?)
        .map_err(|e| settings::err("MPGATE_PAY_PRIVATE_KEY_FILE", e.to_string()))?;
        let mut keys = PlatformKeys::default();
        if let Some((file, id)) = &p.public_key {
            keys.add_public_key_pem(id, &read("MPGATE_PAY_PUBLIC_KEY_FILE", file)?)
                .map_err(|e| settings::err("MPGATE_PAY_PUBLIC_KEY_FILE", e.to_string()))?;
        }
        if let Some(dir) = &p.platform_certs_dir {
            let serials = keys
                .load_certificates_dir(dir)
                .map_err(|e| settings::err("MPGATE_PAY_PLATFORM_CERTS_DIR", e.to_string()))?;
            if serials.is_empty() {
                return Err(settings::err(
                    "MPGATE_PAY_PLATFORM_CERTS_DIR",
                    format!("{} holds no certificate (*.pem)", dir.display()),
                ));
            }
        }
        let apiv3 = ApiV3Key::new(p.apiv3_key.expose())
            .map_err(|e| settings::err("MPGATE_PAY_APIV3_KEY", e.to_string()))?;
        Ok(PayConfig {
            mch_id: p.mch_id.clone(),
            app_id: app_id.to_string(),
            signer: Arc::new(RequestSigner::new(&p.mch_id, &p.cert_serial, key)),
            keys: Arc::new(keys),
            apiv3,
            public_key_id: p.public_key.as_ref().map(|(_, id)| id.clone()),
            api_base: p.api_base.clone(),
            notify_url: format!("{public_url}/pay/notify"),
            order_ttl: p.order_ttl,
            reconcile_after: p.reconcile_after,
        })
    }
}

/// Why a payment request could not be served. Mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("payments are not configured")]
    Off,
    #[error("no such article")]
    UnknownArticle,
    #[error("this article is not for sale")]
    NotForSale,
    #[error("no such order")]
    UnknownOrder,
    /// The link's proof does not hold (tampered, truncated, or another reader's order).
    #[error("link is not valid")]
    BadLink,
    #[error("link has expired; send the keyword again for a new one")]
    Expired,
    /// The reader already has access: nothing to sell.
    #[error("already bought")]
    AlreadyEntitled { read_url: String },
    /// WeChat Pay failed or could not be believed: try again later.
    #[error("payment platform: {0}")]
    Platform(#[from] PayApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the page needs to invoke `getBrandWCPayRequest` (field names as WeChat's JS expects).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JsapiParams {
    #[serde(rename = "appId")]
    pub app_id: String,
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: &'static str,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// An order ready to be paid on the page.
#[derive(Debug, Clone)]
pub struct OrderStarted {
    pub order: Order,
    pub params: JsapiParams,
}

/// The page's "is it paid?": the order, and a fresh link once it is paid and readable.
#[derive(Debug, Clone)]
pub struct OrderStatus {
    pub order: Order,
    pub read_url: Option<String>,
}

/// The proof a signed link carries, as the page sends it back.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    pub article: &'a str,
    pub u: &'a str,
    pub e: &'a str,
    pub s: &'a str,
}

/// What applying one payment fact did (for logs, counts and the reconciliation report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Paid now, and granted.
    Paid,
    /// Already paid before: nothing new.
    AlreadyPaid,
    /// Refunded now (a full refund: the grant is revoked).
    Refunded,
    /// Recorded on the order (partial refund, abnormal or closed refund, a duplicate).
    Recorded,
    /// Closed (expired unpaid).
    Closed,
    /// Not paid yet: nothing to do.
    Open,
    /// Could not be applied and was recorded for the operator.
    Anomaly,
    /// Not an event mpgate acts on.
    Ignored,
}

/// What one reconciliation pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub queried: usize,
    pub paid: usize,
    pub closed: usize,
    pub open: usize,
    pub anomalies: usize,
    pub failed: usize,
}

/// The payment service. Cheap to clone.
#[derive(Clone)]
pub struct Payments {
    inner: Arc<Inner>,
    metrics: crate::metrics::Metrics,
}

struct Inner {
    cfg: PayConfig,
    client: PayClient,
    store: Store,
    paywall: Paywall,
    rules: LiveRules,
    /// When each open order was last asked about by a page (throttles the page's queries).
    last_query: Mutex<HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

fn new_trade_no(now: i64) -> String {
    // "mpg" + the UTC date + 16 random characters: 27 of [0-9a-z], unique without coordination
    // (36^16 ≈ 8e24 per day), and sortable by day when the operator reads a list.
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let day = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .format("%Y%m%d");
    let mut rng = rand::thread_rng();
    let tail: String = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("mpg{day}{tail}")
}

/// Whether `s` is an out_trade_no mpgate could have made (or WeChat Pay accepts):
/// 6–32 of `[0-9A-Za-z_-]`. Checked before anything is looked up.
pub fn valid_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// RFC 3339 with the China Standard Time offset, as WeChat Pay writes times.
fn rfc3339_cst(at: i64) -> String {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    cst.timestamp_opt(at, 0)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Parses the platform's RFC 3339 time; `fallback` when it is absent or malformed.
fn parse_time(s: Option<&str>, fallback: i64) -> i64 {
    s.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .unwrap_or(fallback)
}

impl Payments {
    pub fn new(cfg: PayConfig, store: Store, paywall: Paywall, rules: LiveRules) -> Payments {
        let client = PayClient::new(
            &cfg.api_base,
            cfg.signer.clone(),
            cfg.keys.clone(),
            cfg.public_key_id.as_deref(),
        );
        Payments {
            inner: Arc::new(Inner {
                cfg,
                client,
                store,
                paywall,
                rules,
                last_query: Mutex::new(HashMap::new()),
            }),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// Counts notifications and order transitions into `metrics` (the gateway's).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Payments {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &PayConfig {
        &self.inner.cfg
    }

    fn day(&self, at: i64) -> NaiveDate {
        let tz = self.inner.rules.current().timezone();
        chrono::DateTime::from_timestamp(at, 0)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive()
    }

    /// Checks a link's proof for `article` and returns the reader it names.
    fn reader(&self, p: &Proof<'_>, now: i64) -> Result<OpenId, PayError> {
        let expires = parse_expires(p.e).map_err(|_| PayError::BadLink)?;
        match self
            .inner
            .paywall
            .signer()
            .verify(p.article, p.u, expires, p.s, now)
        {
            Ok(()) => Ok(OpenId::new(p.u)),
            Err(LinkError::Expired) => Err(PayError::Expired),
            Err(_) => Err(PayError::BadLink),
        }
    }

    /// `POST /pay/orders`: an order for the reader the link names (reused while one is open),
    /// placed at WeChat Pay, and the page's `getBrandWCPayRequest` parameters.
    ///
    /// The order is stored (durably) before the platform is called, so a notification can
    /// never arrive for an order mpgate has not recorded.
    pub async fn start_order(&self, p: &Proof<'_>, now: i64) -> Result<OrderStarted, PayError> {
        let rules = self.inner.rules.current();
        let article = rules.article(p.article).ok_or(PayError::UnknownArticle)?;
        let amount = article.price_fen.ok_or(PayError::NotForSale)?;
        let reader = self.reader(p, now)?;
        if self.inner.paywall.access(&reader, p.article)? == Access::Granted {
            return Err(PayError::AlreadyEntitled {
                read_url: self.inner.paywall.read_url(p.article, &reader, now),
            });
        }
        let store = &self.inner.store;
        let order = match store.order_open_for(
            reader.as_str(),
            p.article,
            now.saturating_add(REUSE_MARGIN_SECS),
        )? {
            // A reader who closed the payment sheet and taps again pays the same order.
            Some(o) if o.amount_fen == amount => o,
            _ => {
                let channel = store
                    .subscriber(&reader)?
                    .and_then(|s| s.channel)
                    .unwrap_or_default();
                let ttl = i64::try_from(self.inner.cfg.order_ttl.as_secs()).unwrap_or(1800);
                let order = Order {
                    out_trade_no: new_trade_no(now),
                    openid: reader.as_str().to_string(),
                    article: p.article.to_string(),
                    description: article.order_description().to_string(),
                    amount_fen: amount,
                    channel,
                    state: OrderState::Created,
                    created_at: now,
                    expires_at: now.saturating_add(ttl),
                    prepay_id: None,
                    transaction_id: None,
                    paid_at: None,
                    refunded_at: None,
                    closed_at: None,
                    refunds: Vec::new(),
                    anomaly: None,
                    updated_at: now,
                };
                store.order_create(&order, self.day(now))?;
                self.metrics.order_entered("created");
                tracing::info!(
                    out_trade_no = %order.out_trade_no,
                    article = %order.article,
                    amount_fen = order.amount_fen,
                    "order created"
                );
                order
            }
        };
        // A prepay id is asked for again once it may have expired at the platform.
        let (order, prepay_id) = match order.prepay_id.clone() {
            Some(id) if now - order.updated_at < PREPAY_VALID_SECS => (order, id),
            _ => {
                let body = JsapiOrder {
                    appid: &self.inner.cfg.app_id,
                    mchid: &self.inner.cfg.mch_id,
                    description: &order.description,
                    out_trade_no: &order.out_trade_no,
                    time_expire: rfc3339_cst(order.expires_at),
                    notify_url: &self.inner.cfg.notify_url,
                    amount: Amount {
                        total: order.amount_fen,
                        currency: "CNY",
                    },
                    payer: Payer {
                        openid: &order.openid,
                    },
                };
                let prepay_id = self.inner.client.jsapi(&body).await.map_err(|e| {
                    tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "JSAPI order failed");
                    e
                })?;
                let order = store.order_set_prepay(&order.out_trade_no, &prepay_id, now)?;
                (order, prepay_id)
            }
        };
        Ok(OrderStarted {
            params: self.jsapi_params(&prepay_id, now),
            order,
        })
    }

    fn jsapi_params(&self, prepay_id: &str, now: i64) -> JsapiParams {
        let time_stamp = now.to_string();
        let nonce_str = crypto::nonce();
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = self.inner.cfg.signer.pay_sign(
            &self.inner.cfg.app_id,
            &time_stamp,
            &nonce_str,
            &package,
        );
        JsapiParams {
            app_id: self.inner.cfg.app_id.clone(),
            time_stamp,
            nonce_str,
            package,
            sign_type: "RSA",
            pay_sign,
        }
    }

    /// `GET /pay/orders/{no}`: the order's state for its own reader (the link's proof must name
    /// the order's reader and article). An order still open [`QUERY_AFTER`] after it was placed
    /// is asked about at WeChat Pay (at most every few seconds), since a notification can be
    /// late or lost.
    pub async fn order_status(
        &self,
        out_trade_no: &str,
        u: &str,
        e: &str,
        s: &str,
        now: i64,
    ) -> Result<OrderStatus, PayError> {
        if !valid_trade_no(out_trade_no) {
            return Err(PayError::UnknownOrder);
        }
        let order = self
            .inner
            .store
            .order(out_trade_no)?
            .ok_or(PayError::UnknownOrder)?;
        let reader = self.reader(
            &Proof {
                article: &order.article,
                u,
                e,
                s,
            },
            now,
        )?;
        if reader.as_str() != order.openid {
            return Err(PayError::BadLink);
        }
        let mut order = order;
        if order.state == OrderState::Created
            && now - order.created_at >= QUERY_AFTER.as_secs() as i64
            && self.may_query(out_trade_no)
        {
            match self.inner.client.query(out_trade_no).await {
                Ok(Some(tx)) => {
                    let applied = self.apply_transaction(&tx, None, now)?;
                    self.metrics.order_applied(applied);
                }
                Ok(None) => {}
                // The page keeps asking; the reconciliation job will try again too.
                Err(e) => tracing::warn!(%out_trade_no, error = %e, "order query failed"),
            }
            if let Some(o) = self.inner.store.order(out_trade_no)? {
                order = o;
            }
        }
        let read_url = (order.state == OrderState::Paid
            && self.inner.paywall.access(&reader, &order.article)? == Access::Granted)
            .then(|| self.inner.paywall.read_url(&order.article, &reader, now));
        Ok(OrderStatus { order, read_url })
    }

    fn may_query(&self, out_trade_no: &str) -> bool {
        let mut last = lock(&self.inner.last_query);
        let now = std::time::Instant::now();
        if last.len() > 10_000 {
            last.retain(|_, t| now.duration_since(*t) < QUERY_EVERY);
        }
        match last.get(out_trade_no) {
            Some(t) if now.duration_since(*t) < QUERY_EVERY => false,
            _ => {
                last.insert(out_trade_no.to_string(), now);
                true
            }
        }
    }

    /// `POST /pay/notify`: verifies and decrypts (nothing changes when that fails), then
    /// applies the event. Ok means the effect is on disk (or there was nothing to do).
    pub fn notify(
        &self,
        headers: &SignedHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<Applied, NotifyFailure> {
        let n = notify::open(
            &self.inner.cfg.keys,
            &self.inner.cfg.apiv3,
            headers,
            body,
            now,
        )
        .inspect_err(|e| self.metrics.pay_refused(e))
        .map_err(NotifyFailure::Refused)?;
        let applied = self.apply(&n, now);
        self.metrics
            .pay_notification(&n.event, applied.as_ref().map(|a| *a).map_err(|_| ()));
        if let Ok(a) = applied {
            self.metrics.order_applied(a);
        }
        applied.map_err(NotifyFailure::Store)
    }

    fn apply(&self, n: &Notification, now: i64) -> Result<Applied, StoreError> {
        let applied = match &n.event {
            PayEvent::Transaction(tx) => self.apply_transaction(tx, Some(&n.id), now)?,
            PayEvent::Refund { kind, refund } => self.apply_refund(*kind, refund, &n.id, now)?,
            PayEvent::Other => Applied::Ignored,
        };
        tracing::info!(event = %n.event_type, id = %n.id, outcome = ?applied, "payment notification");
        Ok(applied)
    }

    fn anomaly(
        &self,
        out_trade_no: &str,
        kind: &str,
        detail: String,
        event_id: Option<&str>,
        now: i64,
    ) -> Result<Applied, StoreError> {
        tracing::warn!(%out_trade_no, kind, %detail, "payment anomaly: recorded for the operator");
        self.inner.store.pay_anomaly(
            &PayAnomaly {
                at: now,
                out_trade_no: out_trade_no.to_string(),
                kind: kind.to_string(),
                detail,
                event_id: event_id.map(str::to_string),
            },
            self.day(now),
        )?;
        Ok(Applied::Anomaly)
    }

    /// The one place a transaction's state (from a notification or a query) is applied.
    pub fn apply_transaction(
        &self,
        tx: &Transaction,
        event_id: Option<&str>,
        now: i64,
    ) -> Result<Applied, StoreError> {
        let cfg = &self.inner.cfg;
        let store = &self.inner.store;
        let no = tx.out_trade_no.as_str();
        let order = if valid_trade_no(no) {
            store.order(no)?
        } else {
            None
        };
        let Some(order) = order else {
            return if tx.trade_state == TradeState::Success {
                self.anomaly(
                    no,
                    "unknown_order",
                    format!(
                        "a paid transaction ({}) for an order mpgate does not know",
                        tx.transaction_id.as_deref().unwrap_or("?")
                    ),
                    event_id,
                    now,
                )
            } else {
                Ok(Applied::Ignored)
            };
        };
        match &tx.trade_state {
            TradeState::Success => {
                if tx.appid != cfg.app_id || tx.mchid != cfg.mch_id {
                    return self.anomaly(
                        no,
                        "appid_mismatch",
                        format!("paid to appid {} / mchid {}", tx.appid, tx.mchid),
                        event_id,
                        now,
                    );
                }
                let total = tx.amount.as_ref().map(|a| a.total);
                if total != Some(order.amount_fen) {
                    return self.anomaly(
                        no,
                        "amount_mismatch",
                        format!(
                            "paid {} fen for an order of {} fen",
                            total.map_or("?".into(), |t| t.to_string()),
                            order.amount_fen
                        ),
                        event_id,
                        now,
                    );
                }
                let payer = tx.payer.as_ref().map(|p| p.openid.as_str());
                if payer != Some(order.openid.as_str()) {
                    return self.anomaly(
                        no,
                        "payer_mismatch",
                        format!(
                            "paid by {} for an order of {}",
                            payer.map_or("nobody".into(), |p| OpenId::new(p).redacted()),
                            OpenId::new(order.openid.as_str()).redacted()
                        ),
                        event_id,
                        now,
                    );
                }
                let paid_at = parse_time(tx.success_time.as_deref(), now);
                let txid = tx.transaction_id.as_deref().unwrap_or("");
                Ok(
                    match store.order_paid(no, txid, paid_at, self.day(paid_at))? {
                        PaidOutcome::Paid { .. } => {
                            tracing::info!(out_trade_no = %no, article = %order.article, "order paid; access granted");
                            Applied::Paid
                        }
                        PaidOutcome::AlreadyPaid(_) => Applied::AlreadyPaid,
                        PaidOutcome::NotPayable(o) => {
                            // Paid after a refund or an anomaly: the money is there, the state
                            // says otherwise. Tell the operator rather than grant silently.
                            return self.anomaly(
                                no,
                                "paid_in_state",
                                format!("a payment for an order in state {}", o.state.as_str()),
                                event_id,
                                now,
                            );
                        }
                    },
                )
            }
            TradeState::Closed | TradeState::Revoked => Ok(match store.order_close(no, now)? {
                CloseOutcome::Closed(_) => Applied::Closed,
                CloseOutcome::NotOpen(_) => Applied::Ignored,
            }),
            TradeState::Refund => Ok(Applied::Ignored),
            // PAYERROR: this attempt failed at the bank; the order may still be paid until it expires.
            TradeState::NotPay
            | TradeState::UserPaying
            | TradeState::PayError
            | TradeState::Other(_) => Ok(Applied::Open),
        }
    }

    fn apply_refund(
        &self,
        kind: RefundKind,
        r: &notify::Refund,
        event_id: &str,
        now: i64,
    ) -> Result<Applied, StoreError> {
        let no = r.out_trade_no.as_str();
        let order = if valid_trade_no(no) {
            self.inner.store.order(no)?
        } else {
            None
        };
        let Some(order) = order else {
            return self.anomaly(
                no,
                "unknown_order",
                format!(
                    "a refund ({}) for an order mpgate does not know",
                    r.out_refund_no
                ),
                Some(event_id),
                now,
            );
        };
        if r.mchid != self.inner.cfg.mch_id {
            return self.anomaly(
                no,
                "appid_mismatch",
                format!("a refund under mchid {}", r.mchid),
                Some(event_id),
                now,
            );
        }
        let status = match kind {
            RefundKind::Success => "SUCCESS",
            RefundKind::Abnormal => "ABNORMAL",
            RefundKind::Closed => "CLOSED",
        };
        // Full: the whole order's amount came back. A partial refund keeps the grant (the
        // reader keeps what they paid for in part; the operator can revoke by hand).
        let full = kind == RefundKind::Success
            && r.amount.refund >= r.amount.total
            && r.amount.refund >= order.amount_fen;
        let note = RefundNote {
            out_refund_no: r.out_refund_no.clone(),
            refund_id: r.refund_id.clone(),
            status: status.to_string(),
            refund_fen: r.amount.refund,
            at: parse_time(r.success_time.as_deref(), now),
        };
        Ok(
            match self
                .inner
                .store
                .order_refund(no, note, full, self.day(now))?
            {
                RefundOutcome::Refunded { .. } => {
                    tracing::info!(out_trade_no = %no, article = %order.article, "order refunded; access revoked");
                    Applied::Refunded
                }
                RefundOutcome::Recorded(_) => Applied::Recorded,
                RefundOutcome::BeforePayment(_) => {
                    tracing::warn!(out_trade_no = %no, "refund before payment: recorded for the operator");
                    Applied::Anomaly
                }
            },
        )
    }

    /// One reconciliation pass: every order still open [`PayConfig::reconcile_after`] after it
    /// was placed is asked about; what is learned is applied as a notification would be; an
    /// expired unpaid order is closed at WeChat Pay, then here.
    pub async fn reconcile_once(&self, now: i64) -> Result<ReconcileReport, StoreError> {
        let after = i64::try_from(self.inner.cfg.reconcile_after.as_secs()).unwrap_or(300);
        let due = self
            .inner
            .store
            .orders_to_reconcile(now.saturating_sub(after), RECONCILE_BATCH)?;
        let mut report = ReconcileReport::default();
        for order in due {
            let no = order.out_trade_no.as_str();
            report.queried += 1;
            let tx = match self.inner.client.query(no).await {
                Ok(tx) => tx,
                Err(e) => {
                    tracing::warn!(out_trade_no = %no, error = %e, "reconciliation: query failed");
                    report.failed += 1;
                    continue;
                }
            };
            let applied = match &tx {
                Some(tx) => self.apply_transaction(tx, None, now)?,
                // Never placed at the platform (the page went away before the JSAPI call).
                None => Applied::Open,
            };
            self.metrics.order_applied(applied);
            match applied {
                Applied::Paid | Applied::AlreadyPaid => report.paid += 1,
                Applied::Closed => report.closed += 1,
                Applied::Anomaly => report.anomalies += 1,
                Applied::Open if now >= order.expires_at => {
                    // Close at the platform first, so it cannot be paid after mpgate gave up.
                    let closed = match &tx {
                        Some(_) => self.inner.client.close(no).await,
                        None => Ok(()),
                    };
                    match closed {
                        Ok(()) => {
                            if let CloseOutcome::Closed(_) =
                                self.inner.store.order_close(no, now)?
                            {
                                self.metrics.order_entered("closed");
                                report.closed += 1;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(out_trade_no = %no, error = %e, "reconciliation: close failed");
                            report.failed += 1;
                        }
                    }
                }
                _ => report.open += 1,
            }
        }
        if report.queried > 0 {
            tracing::info!(?report, "reconciliation pass");
        }
        Ok(report)
    }
}

/// Why a notification was not applied.
#[derive(Debug, thiserror::Error)]
pub enum NotifyFailure {
    /// Not verified or not decryptable: 4xx, nothing changed.
    #[error("{0}")]
    Refused(NotifyError),
    /// Ours: the store could not record it (5xx: WeChat Pay retries).
    #[error(transparent)]
    Store(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_numbers_are_what_wechat_pay_accepts_and_unique() {
        let a = new_trade_no(1_764_662_400);
        let b = new_trade_no(1_764_662_400);
        assert!(valid_trade_no(&a), "{a}");
        assert!(a.starts_with("mpg20251202"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn trade_numbers_outside_the_alphabet_are_refused_before_any_lookup() {
        for bad in [
            "",
            "short",
            "a/b/c/d",
            "x".repeat(33).as_str(),
            "订单号订单号",
        ] {
            assert!(!valid_trade_no(bad), "{bad}");
        }
    }

    #[test]
    fn times_are_written_in_china_standard_time() {
        assert_eq!(rfc3339_cst(1_764_662_400), "2025-12-02T16:00:00+08:00");
        assert_eq!(
            parse_time(Some("2025-12-02T16:00:04+08:00"), 0),
            1_764_662_404
        );
        assert_eq!(parse_time(Some("garbage"), 7), 7);
    }
}
