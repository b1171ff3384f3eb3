//! The HTTP client of the platform's active API: the access token and the calls that use it.
//!
//! # Access token
//! One token per app id, cached in memory and in the store ([`Store::platform_token_put`]), so a
//! restart within its lifetime reuses it: fetching a new one invalidates the old one (after a
//! 5-minute grace) for every other holder. It is refreshed when less than
//! [`REFRESH_MARGIN_SECS`] of its life remain, by one caller at a time: the refresh runs under a
//! `tokio::sync::Mutex` and re-checks the cache after acquiring it, so N concurrent callers cause
//! one fetch. An API call answered 40001 / 40014 / 42001 (invalid or expired token) invalidates
//! that token and is retried once with a fresh one.
//!
//! Neither the app secret nor a token is ever logged or put in an error: reqwest errors are
//! stripped of their URL, which carries both in its query string.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::message::CustomMessage;
use crate::settings::{Secret, Settings};
use crate::store::platform::StoredToken;
use crate::store::Store;
use crate::wechat::types::AppId;

/// A token with less life than this left is refreshed before use.
pub const REFRESH_MARGIN_SECS: i64 = 300;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

const PATH_TOKEN: &str = "/cgi-bin/token";
const PATH_MENU_CREATE: &str = "/cgi-bin/menu/create";
const PATH_CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";
const PATH_CUSTOM_TYPING: &str = "/cgi-bin/message/custom/typing";

/// Why a platform call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The platform answered with a non-zero errcode.
    #[error("platform refused (errcode {errcode}): {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// The platform could not be reached, timed out, or answered with an HTTP error status.
    #[error("platform unreachable: {0}")]
    Http(String),
    /// The platform's answer was not the JSON it documents.
    #[error("unexpected answer from the platform: {0}")]
    Decode(String),
    /// No app secret is configured, so the active API is off.
    #[error("MPGATE_APP_SECRET is not set: the platform API is off")]
    NotConfigured,
}

/// Errcodes by which the platform refuses a message for good: retrying cannot help.
const PERMANENT_ERRCODES: &[i64] = &[
    40003, // invalid openid
    40007, // invalid media_id
    40008, // invalid message type
    40013, // invalid appid
    40033, // invalid characters in the request
    40125, // invalid app secret
    43004, // recipient has unsubscribed
    43019, // recipient has blocked the account
    44002, // empty POST body
    44003, // empty news
    44004, // empty text
    45002, // content too long
    45008, // more than one article
    45015, // outside the 48-hour window, or unsubscribed
    45047, // too many messages within the window
    47001, // malformed JSON / XML
    48001, // API not authorised for this account
];

/// Errcodes that mean the access token the call carried is no good.
const TOKEN_ERRCODES: &[i64] = &[40001, 40014, 42001];

impl PlatformError {
    /// True when the platform refuses for good (out of the 48-hour window, unsubscribed,
    /// invalid openid, too many articles, …); false for what may pass later (network, HTTP 5xx,
    /// -1 system busy, 45009 quota, 45011 frequency, token trouble, an undecodable answer).
    ///
    /// An errcode in neither list counts as transient: a wrongly retried message costs a
    /// bounded number of wasted calls, a wrongly abandoned one is lost.
    pub fn is_permanent(&self) -> bool {
        match self {
            PlatformError::Api { errcode, .. } => PERMANENT_ERRCODES.contains(errcode),
            PlatformError::NotConfigured => true,
            PlatformError::Http(_) | PlatformError::Decode(_) => false,
        }
    }

    /// The platform's errcode, if it answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            PlatformError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

/// The client of the platform's active API. Cheap to clone: clones share the token cache.
#[derive(Clone)]
pub struct PlatformClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash.
    base: String,
    app_id: AppId,
    secret: Secret,
    /// Absent when the data dir is held by another process (`mpgate menu push` beside a
    /// running server): the token then lives in memory only.
    store: Option<Store>,
    cached: Mutex<Option<StoredToken>>,
    /// Held while a token is fetched or invalidated: one refresh at a time.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PlatformClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformClient")
            .field("base", &self.inner.base)
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct ApiStatus {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<i64>,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn fresh(token: &StoredToken, now: i64) -> bool {
    token.expires_at - now > REFRESH_MARGIN_SECS
}

fn http_error(e: reqwest::Error) -> PlatformError {
    // The URL carries the access token or the app secret: never let it into a message.
    PlatformError::Http(e.without_url().to_string())
}

impl PlatformClient {
    /// A client of the API at `api_base` (e.g. `https://api.weixin.qq.com`) for one account,
    /// caching its token in `store`.
    pub fn new(
        api_base: &str,
        app_id: &AppId,
        app_secret: &Secret,
        store: Store,
    ) -> PlatformClient {
        Self::build(api_base, app_id, app_secret, Some(store))
    }

    /// The client the settings describe, or [`PlatformError::NotConfigured`] without
    /// `MPGATE_APP_SECRET`.
    pub fn from_settings(
        settings: &Settings,
        store: Store,
    ) -> Result<PlatformClient, PlatformError> {
        let secret = settings
            .app_secret
            .as_ref()
            .ok_or(PlatformError::NotConfigured)?;
        Ok(Self::new(
            &settings.api_base,
            &settings.app_id,
            secret,
            store,
        ))
    }

    pub(crate) fn build(
        api_base: &str,
        app_id: &AppId,
        app_secret: &Secret,
        store: Option<Store>,
    ) -> PlatformClient {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .build()
            // Only a TLS backend that cannot initialise fails here; rustls with bundled roots
            // always does, so this is a property of the build, not of any input.
            .expect("the HTTP client (rustls, bundled roots) initialises");
        PlatformClient {
            inner: Arc::new(Inner {
                http,
                base: api_base.trim_end_matches('/').to_string(),
                app_id: app_id.clone(),
                secret: app_secret.clone(),
                store,
                cached: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Replaces the account's custom menu with `body` (`{"button":[…]}`).
    pub async fn menu_create(&self, body: &Value) -> Result<(), PlatformError> {
        self.call(PATH_MENU_CREATE, body).await
    }

    /// Sends `msg` through the customer-service API. A text longer than
    /// [`super::MAX_TEXT_CHARS`] goes as several messages, in order; the first failure stops
    /// the rest (earlier parts stay delivered).
    pub async fn send_custom(&self, msg: &CustomMessage) -> Result<(), PlatformError> {
        for part in msg.clone().into_parts() {
            self.send_custom_body(&part.to_body()).await?;
        }
        Ok(())
    }

    /// Shows (or, with `on = false`, hides) "对方正在输入" in `to`'s chat: the platform keeps it
    /// up for about 15 s or until the next customer-service message. Not queued: a lost typing
    /// indicator costs nothing.
    pub async fn typing(&self, to: &str, on: bool) -> Result<(), PlatformError> {
        let command = if on { "Typing" } else { "CancelTyping" };
        self.call(
            PATH_CUSTOM_TYPING,
            &serde_json::json!({ "touser": to, "command": command }),
        )
        .await
    }

    /// Posts one ready `message/custom/send` body (the outbox stores bodies, not messages).
    pub(crate) async fn send_custom_body(&self, body: &Value) -> Result<(), PlatformError> {
        self.call(PATH_CUSTOM_SEND, body).await
    }

    /// Posts `body` to `path` with a valid token; one retry with a fresh token when the
    /// platform rejects the token.
    async fn call(&self, path: &'static str, body: &Value) -> Result<(), PlatformError> {
        let token = self.token().await?;
        match self.post(path, &token, body).await {
            Err(PlatformError::Api { errcode, .. }) if TOKEN_ERRCODES.contains(&errcode) => {
                tracing::info!(
                    api = path,
                    errcode,
                    "access token rejected; refreshing once"
                );
                self.invalidate(&token).await;
                let token = self.token().await?;
                self.post(path, &token, body).await
            }
            other => other,
        }
    }

    async fn post(
        &self,
        path: &'static str,
        token: &str,
        body: &Value,
    ) -> Result<(), PlatformError> {
        let started = Instant::now();
        let result = async {
            let resp = self
                .inner
                .http
                .post(format!("{}{path}", self.inner.base))
                .query(&[("access_token", token)])
                .json(body)
                .send()
                .await
                .map_err(http_error)?;
            let status: ApiStatus = read_json(resp).await?;
            if status.errcode != 0 {
                return Err(PlatformError::Api {
                    errcode: status.errcode,
                    errmsg: status.errmsg,
                });
            }
            Ok(())
        }
        .await;
        tracing::debug!(
            api = path,
            errcode = result
                .as_ref()
                .err()
                .and_then(PlatformError::errcode)
                .unwrap_or(0),
            ok = result.is_ok(),
            latency_ms = started.elapsed().as_millis() as u64,
            "platform call"
        );
        result
    }

    /// A token with more than [`REFRESH_MARGIN_SECS`] to live: from memory, else the store,
    /// else fetched (one fetch at a time).
    async fn token(&self) -> Result<String, PlatformError> {
        if let Some(t) = self.cached_fresh(now_secs()) {
            return Ok(t);
        }
        let _refreshing = self.inner.refresh.lock().await;
        // Whoever held the lock before us may have refreshed already.
        let now = now_secs();
        if let Some(t) = self.cached_fresh(now) {
            return Ok(t);
        }
        if let Some(stored) = self.stored_token() {
            if fresh(&stored, now) {
                let t = stored.token.clone();
                self.set_cached(Some(stored));
                return Ok(t);
            }
        }
        let fetched = self.fetch_token(now).await?;
        if let Some(store) = &self.inner.store {
            if let Err(e) = store.platform_token_put(self.inner.app_id.as_str(), &fetched) {
                tracing::warn!(error = %e, "cannot cache the access token in the data dir");
            }
        }
        let t = fetched.token.clone();
        self.set_cached(Some(fetched));
        Ok(t)
    }

    /// Forgets `bad` (in memory and in the store) unless a refresh already replaced it.
    async fn invalidate(&self, bad: &str) {
        let _refreshing = self.inner.refresh.lock().await;
        {
            let mut cached = self.lock_cached();
            if cached.as_ref().is_some_and(|c| c.token == bad) {
                *cached = None;
            }
        }
        if let Some(store) = &self.inner.store {
            if let Err(e) = store.platform_token_invalidate(self.inner.app_id.as_str(), bad) {
                tracing::warn!(error = %e, "cannot drop the rejected access token from the data dir");
            }
        }
    }

    async fn fetch_token(&self, now: i64) -> Result<StoredToken, PlatformError> {
        let started = Instant::now();
        let resp = self
            .inner
            .http
            .get(format!("{}{PATH_TOKEN}", self.inner.base))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", self.inner.app_id.as_str()),
                ("secret", self.inner.secret.expose()),
            ])
            .send()
            .await
            .map_err(http_error)?;
        let answer: TokenAnswer = read_json(resp).await?;
        if answer.errcode != 0 {
            tracing::warn!(
                errcode = answer.errcode,
                "the platform refused an access token"
            );
            return Err(PlatformError::Api {
                errcode: answer.errcode,
                errmsg: answer.errmsg,
            });
        }
        let (Some(token), Some(expires_in)) = (answer.access_token, answer.expires_in) else {
            return Err(PlatformError::Decode(
                "token answer without access_token or expires_in".into(),
            ));
        };
        if token.is_empty() || expires_in <= 0 {
            return Err(PlatformError::Decode(
                "token answer with an empty token or a non-positive lifetime".into(),
            ));
        }
        tracing::info!(
            expires_in,
            latency_ms = started.elapsed().as_millis() as u64,
            "fetched a new access token"
        );
        Ok(StoredToken {
            token,
            expires_at: now.saturating_add(expires_in),
        })
    }

    fn stored_token(&self) -> Option<StoredToken> {
        let store = self.inner.store.as_ref()?;
        match store.platform_token_get(self.inner.app_id.as_str()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cached access token; fetching one");
                None
            }
        }
    }

    fn lock_cached(&self) -> std::sync::MutexGuard<'_, Option<StoredToken>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it torn.
        crate::sync::lock(&self.inner.cached)
    }

    fn cached_fresh(&self, now: i64) -> Option<String> {
        self.lock_cached()
            .as_ref()
            .filter(|t| fresh(t, now))
            .map(|t| t.token.clone())
    }

    fn set_cached(&self, token: Option<StoredToken>) {
        *self.lock_cached() = token;
    }
}

/// The answer's JSON, or an error naming the HTTP status when there is none.
async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, PlatformError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(http_error)?;
    if !status.is_success() {
        return Err(PlatformError::Http(format!("HTTP {status}")));
    }
    serde_json::from_slice(&bytes).map_err(|e| PlatformError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(errcode: i64) -> PlatformError {
        PlatformError::Api {
            errcode,
            errmsg: "m".into(),
        }
    }

    #[test]
    fn refusals_for_good_are_permanent() {
        for code in [
            45015, 45047, 43004, 40003, 43019, 45008, 40007, 40008, 45002,
        ] {
            assert!(api(code).is_permanent(), "{code}");
        }
        assert!(PlatformError::NotConfigured.is_permanent());
    }

    #[test]
    fn busy_quota_network_and_token_trouble_are_transient() {
        for code in [-1, 45009, 45011, 40001, 42001] {
            assert!(!api(code).is_permanent(), "{code}");
        }
        assert!(!PlatformError::Http("timeout".into()).is_permanent());
        assert!(!PlatformError::Http("HTTP 502 Bad Gateway".into()).is_permanent());
        assert!(!PlatformError::Decode("eof".into()).is_permanent());
    }

    #[test]
    fn freshness_keeps_a_five_minute_margin() {
        let t = |expires_at| StoredToken {
            token: "t".into(),
            expires_at,
        };
        assert!(fresh(&t(1_000 + 301), 1_000));
        assert!(!fresh(&t(1_000 + 300), 1_000));
        assert!(!fresh(&t(999), 1_000));
    }
}
