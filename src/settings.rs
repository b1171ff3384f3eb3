//! Typed settings, parsed once at start-up ("parse, don't validate").
//!
//! Sources, later winning: built-in demo defaults → `mpgate.toml` (optional; path from
//! `MPGATE_CONFIG`, else `./mpgate.toml` when present) → `MPGATE_*` environment variables.
//! Every key of the file is the lower-case variable name without the prefix
//! (`token`, `app_id`, `encoding_aes_key`, …). A wrong value stops start-up with one line
//! naming the variable and what is wrong; secrets are wrapped and never printed. Every number
//! has an accepted range, named in that line when a value falls outside it.
//!
//! May depend on: `wechat::types`, `wechat::crypto` (key parsing), `ipnet`, std.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::wechat::crypto::EncodingAesKey;
use crate::wechat::types::{AppId, Token};

/// The token a fresh checkout runs with, so `cargo run --release` answers out of the box.
pub const DEMO_TOKEN: &str = "mpgatedemo";
/// The app id a fresh checkout runs with.
pub const DEMO_APP_ID: &str = "wx0000000000demo0";

/// A secret string (admin token, app secret, link secret) that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The peers allowed to call `/wechat` (`MPGATE_CALLBACK_ALLOW`): IPv4 and IPv6 networks.
///
/// Only the TCP peer address is checked, never `X-Forwarded-For`: a header any client can
/// write would let anyone in. Behind a proxy, the proxy enforces the list instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackAllow(Vec<IpNet>);

impl CallbackAllow {
    /// A comma-separated list of CIDRs (`101.226.0.0/16`, `2402:4e00::/32`) or bare addresses
    /// (one host, as `getcallbackip` lists them).
    pub fn parse(list: &str) -> Result<CallbackAllow, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = if item.contains('/') {
                item.parse::<IpNet>().ok()
            } else {
                item.parse::<IpAddr>().ok().map(IpNet::from)
            };
            nets.push(net.ok_or_else(|| {
                format!(
                    "`{item}` is not an address or CIDR such as 101.226.0.0/16 or 2402:4e00::/32"
                )
            })?);
        }
        if nets.is_empty() {
            return Err("is set but lists no address; unset it to allow every peer".into());
        }
        Ok(CallbackAllow(nets))
    }

    /// Whether `peer` is in one of the networks. An IPv4 peer seen through an IPv6 socket
    /// (`::ffff:1.2.3.4`) is matched as the IPv4 address it is.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything the server needs, typed.
#[derive(Clone, Debug)]
pub struct Settings {
    pub token: Token,
    pub app_id: AppId,
    /// Absent: plaintext mode.
    pub encoding_aes_key: Option<EncodingAesKey>,
    /// Tried when the current key fails (key rotation in the platform's console).
    pub encoding_aes_key_previous: Option<EncodingAesKey>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub keywords: PathBuf,
    /// Whether `keywords` was named (`MPGATE_KEYWORDS`); if not and it does not exist, the
    /// embedded demo rules are served (see [`crate::defaults`]).
    pub keywords_explicit: bool,
    /// Base URL subscribers' browsers reach this server at (for signed article links).
    pub public_url: String,
    /// Absent: the admin API is off.
    pub admin_token: Option<Secret>,
    /// How long a dashboard sign-in lasts (`MPGATE_SESSION_TTL_SECS`): the session cookie's
    /// `Max-Age` and the server-side expiry.
    pub session_ttl: Duration,
    /// Base URL of the running server's admin API, for operator commands (`mpgate grant`, …)
    /// while the server holds the data dir (`MPGATE_ADMIN_URL`; default `http://<listen>`,
    /// with an unspecified listen address read as 127.0.0.1).
    pub admin_url: String,
    /// Pushes whose timestamp is further than this from the server clock are refused as
    /// replays. `None`: check disabled (`MPGATE_REPLAY_WINDOW_SECS=0`).
    pub replay_window: Option<Duration>,
    /// Largest request body accepted on `/wechat`.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive once its headers have (`POST /wechat`, the
    /// admin API); a client that stalls mid-body is cut with 408.
    pub body_timeout: Duration,
    /// Concurrent connections the server holds open at most, over all workers; more wait in
    /// the listen backlog.
    pub max_connections: usize,
    /// Absent: every peer may call `/wechat`.
    pub callback_allow: Option<CallbackAllow>,
    /// Accept plaintext pushes although an AES key is configured (migration only).
    pub allow_plaintext: bool,
    /// Overrides the link secret generated and stored in the data dir on first start.
    pub link_secret: Option<Secret>,
    /// Lifetime of signed article links.
    pub link_ttl: Duration,
    /// sled page cache.
    pub cache_capacity_bytes: u64,
    /// How long dedupe keys of answered pushes are kept.
    pub dedupe_retention: Duration,
    /// How many days texts no rule answered are kept (`MPGATE_UNANSWERED_DAYS`); 0: off.
    pub unanswered_days: u32,
    pub log_format: LogFormat,
    /// `/metrics` on the main listener for `Authorization: Bearer <this>`
    /// (`MPGATE_METRICS_TOKEN`); absent: not served there (404).
    pub metrics_token: Option<Secret>,
    /// `/metrics` without a token on its own listener (`MPGATE_METRICS_LISTEN`), for a
    /// Prometheus on a private network; absent: no such listener.
    pub metrics_listen: Option<SocketAddr>,
    /// For the outbound platform client.
    pub app_secret: Option<Secret>,
    pub api_base: String,
    /// Signs webhook calls (`X-Mpgate-Signature`); unsigned when absent.
    pub webhook_secret: Option<Secret>,
    /// The default model endpoint of `assistant` rules (`MPGATE_ASSISTANT_API_BASE`, an
    /// OpenAI-compatible base such as `https://api.openai.com/v1`); a rule may name its own.
    pub assistant_api_base: Option<String>,
    /// Its key (`MPGATE_ASSISTANT_API_KEY`), sent as a bearer token.
    pub assistant_api_key: Option<Secret>,
    /// WeChat Pay from the paywall page; absent: pay is off (articles are grant-only).
    pub pay: Option<PaySettings>,
    /// True when the token is the built-in demo one (logged as a warning).
    pub is_demo: bool,
}

/// The merchant's WeChat Pay settings (`MPGATE_PAY_*`), checked for shape here; the key files
/// are read and parsed once at start-up by [`crate::pay::PayConfig::load`], whose errors name
/// the variable the same way.
#[derive(Clone, Debug)]
pub struct PaySettings {
    /// 商户号: digits.
    pub mch_id: String,
    /// The merchant API private key (`apiclient_key.pem`, PKCS#8 RSA).
    pub private_key_file: PathBuf,
    /// The serial number of the merchant API certificate that goes with the private key.
    pub cert_serial: String,
    /// The APIv3 key: exactly 32 bytes.
    pub apiv3_key: Secret,
    /// Public-key mode: WeChat Pay's public key (`pub_key.pem`) and its id (`PUB_KEY_ID_…`).
    pub public_key: Option<(PathBuf, String)>,
    /// Older merchants: a directory of platform certificates (PEM).
    pub platform_certs_dir: Option<PathBuf>,
    /// `https://api.mch.weixin.qq.com` unless a test points it at a fake.
    pub api_base: String,
    /// How long an order may be paid (the platform's `time_expire`).
    pub order_ttl: Duration,
    /// Unpaid orders older than this are asked about by the reconciliation job.
    pub reconcile_after: Duration,
}

/// `MPGATE_PAY_ORDER_TTL_SECS`: the platform accepts a `time_expire` from a minute on; a day
/// is far longer than anyone keeps a payment sheet open.
pub const RANGE_PAY_ORDER_TTL_SECS: RangeInclusive<u64> = 60..=86_400;
/// `MPGATE_PAY_RECONCILE_AFTER_SECS`: how long a notification may be late before mpgate asks.
pub const RANGE_PAY_RECONCILE_AFTER_SECS: RangeInclusive<u64> = 1..=86_400;

/// `MPGATE_REPLAY_WINDOW_SECS`: 0 turns the check off; a day is already far beyond any clock skew.
pub const RANGE_REPLAY_WINDOW_SECS: RangeInclusive<u64> = 0..=86_400;
/// `MPGATE_MAX_BODY_BYTES`: a push is a few KiB; 16 MiB is far beyond any.
pub const RANGE_MAX_BODY_BYTES: RangeInclusive<u64> = 1024..=16 * 1024 * 1024;
/// `MPGATE_BODY_TIMEOUT_MS` default: a 64 KiB push arrives in milliseconds from the platform,
/// and an admin request from a phone in well under a second. Short, because a push queued
/// behind connections held by stalled clients waits up to this (plus actix's 1 s close) before
/// it is accepted: 2 s keeps that inside the platform's 5 s.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 2_000;
/// `MPGATE_BODY_TIMEOUT_MS`: at most 2 minutes, or stalled clients hold connections again.
pub const RANGE_BODY_TIMEOUT_MS: RangeInclusive<u64> = 100..=120_000;
/// `MPGATE_MAX_CONNECTIONS` default: fits the common open-file limit of 1,024 once raised to
/// the hard limit (see `startup`), which is usually far higher.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
/// `MPGATE_MAX_CONNECTIONS`.
pub const RANGE_MAX_CONNECTIONS: RangeInclusive<u64> = 1..=1_000_000;
/// `MPGATE_LINK_TTL_SECS`: up to 366 days; more is no paid link anyone needs, and far more
/// overflowed the expiry time.
pub const RANGE_LINK_TTL_SECS: RangeInclusive<u64> = 1..=366 * 86_400;
/// `MPGATE_CACHE_MB`: sled refuses a cache of 0; 64 GiB is beyond any machine this runs on.
pub const RANGE_CACHE_MB: RangeInclusive<u64> = 1..=65_536;
/// `MPGATE_DEDUPE_RETENTION_SECS`: at least the platform's retry window and then some; at most
/// 30 days.
pub const RANGE_DEDUPE_RETENTION_SECS: RangeInclusive<u64> = 60..=30 * 86_400;
/// `MPGATE_SESSION_TTL_SECS` default: 12 hours, a working day signed in on one device.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 43_200;
/// `MPGATE_SESSION_TTL_SECS`: from a minute to 30 days.
pub const RANGE_SESSION_TTL_SECS: RangeInclusive<u64> = 60..=30 * 86_400;
/// `MPGATE_UNANSWERED_DAYS`: 0 turns counting off; a year and a day covers the longest range
/// the dashboard shows.
pub const RANGE_UNANSWERED_DAYS: RangeInclusive<u64> = 0..=366;
/// `MPGATE_METRICS_TOKEN`: long enough that guessing it is hopeless.
pub const MIN_METRICS_TOKEN_BYTES: usize = 16;

/// `MPGATE_METRICS_TOKEN` as it must be: at least [`MIN_METRICS_TOKEN_BYTES`] of visible ASCII
/// (it travels in an HTTP header, and Prometheus reads it from a file). The problem never
/// repeats the value.
fn metrics_token(t: &str) -> Result<&str, String> {
    if let Some(i) = t.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "character {} is not visible ASCII (letters, digits, punctuation; make one with `openssl rand -hex 32`)",
            i + 1
        ));
    }
    if t.len() < MIN_METRICS_TOKEN_BYTES {
        return Err(format!(
            "is {} bytes; it must be at least {MIN_METRICS_TOKEN_BYTES} (make one with `openssl rand -hex 32`)",
            t.len()
        ));
    }
    Ok(t)
}

/// `MPGATE_LINK_SECRET`: as many bytes as the HMAC-SHA256 key it is hashed into.
pub const MIN_LINK_SECRET_BYTES: usize = 32;

/// One clear line: which setting, what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

pub(crate) fn err(name: &str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        name: name.to_string(),
        problem: problem.into(),
    }
}

/// Reads one numeric setting with its default and accepted range.
type NumSetting<'a> = dyn Fn(&str, u64, RangeInclusive<u64>) -> Result<u64, SettingsError> + 'a;

/// `MPGATE_PAY_*`: off unless `MPGATE_PAY_MCH_ID` is set; then every required value must be
/// there, and one line names the first that is missing or malformed.
fn pay_settings<'r>(
    get: &dyn Fn(&str) -> Option<&'r str>,
    num: &NumSetting<'_>,
) -> Result<Option<PaySettings>, SettingsError> {
    let name = |k: &str| format!("MPGATE_{k}");
    let Some(mch_id) = get("PAY_MCH_ID") else {
        // Half a configuration is a mistake worth stopping for, not a silent "pay off".
        for k in [
            "PAY_PRIVATE_KEY_FILE",
            "PAY_CERT_SERIAL",
            "PAY_APIV3_KEY",
            "PAY_PUBLIC_KEY_FILE",
            "PAY_PUBLIC_KEY_ID",
            "PAY_PLATFORM_CERTS_DIR",
        ] {
            if get(k).is_some() {
                return Err(err(
                    &name(k),
                    "is set but MPGATE_PAY_MCH_ID is not: set the merchant id to turn pay on, or unset this",
                ));
            }
        }
        return Ok(None);
    };
    if !(1..=32).contains(&mch_id.len()) || !mch_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(
            &name("PAY_MCH_ID"),
            "must be the merchant id (商户号): digits, e.g. 1900009191",
        ));
    }
    let required = |k: &str, what: &str| {
        get(k).ok_or_else(|| {
            err(
                &name(k),
                format!("is required when MPGATE_PAY_MCH_ID is set: {what}"),
            )
        })
    };
    let private_key_file = PathBuf::from(required(
        "PAY_PRIVATE_KEY_FILE",
        "the merchant API private key apiclient_key.pem",
    )?);
    let cert_serial = required(
        "PAY_CERT_SERIAL",
        "the serial number of the merchant API certificate",
    )?;
    if !(1..=64).contains(&cert_serial.len())
        || !cert_serial.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(err(
            &name("PAY_CERT_SERIAL"),
            "must be the certificate's serial number: hex digits as the merchant platform shows it",
        ));
    }
    let apiv3 = required("PAY_APIV3_KEY", "the APIv3 key (32 characters)")?;
    if apiv3.len() != 32 {
        // The length only, never the value.
        return Err(err(
            &name("PAY_APIV3_KEY"),
            format!("is {} bytes; the APIv3 key is exactly 32", apiv3.len()),
        ));
    }
    let public_key = match (get("PAY_PUBLIC_KEY_FILE"), get("PAY_PUBLIC_KEY_ID")) {
        (Some(f), Some(id)) => {
            if !id.starts_with("PUB_KEY_ID_") || id.len() > 64 {
                return Err(err(
                    &name("PAY_PUBLIC_KEY_ID"),
                    "must be WeChat Pay's public key id, PUB_KEY_ID_ followed by digits",
                ));
            }
            Some((PathBuf::from(f), id.to_string()))
        }
        (Some(_), None) => return Err(err(
            &name("PAY_PUBLIC_KEY_ID"),
            "is required with MPGATE_PAY_PUBLIC_KEY_FILE (the PUB_KEY_ID_… shown beside the key)",
        )),
        (None, Some(_)) => {
            return Err(err(
                &name("PAY_PUBLIC_KEY_FILE"),
                "is required with MPGATE_PAY_PUBLIC_KEY_ID (WeChat Pay's pub_key.pem)",
            ))
        }
        (None, None) => None,
    };
    let platform_certs_dir = get("PAY_PLATFORM_CERTS_DIR").map(PathBuf::from);
    if public_key.is_none() && platform_certs_dir.is_none() {
        return Err(err(
            &name("PAY_PUBLIC_KEY_FILE"),
            "is required to verify WeChat Pay's signatures (or MPGATE_PAY_PLATFORM_CERTS_DIR for platform certificates)",
        ));
    }
    let api_base = get("PAY_API_BASE")
        .unwrap_or("https://api.mch.weixin.qq.com")
        .trim_end_matches('/')
        .to_string();
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        return Err(err(
            &name("PAY_API_BASE"),
            "must start with https:// (or http:// for a local fake)",
        ));
    }
    Ok(Some(PaySettings {
        mch_id: mch_id.to_string(),
        private_key_file,
        cert_serial: cert_serial.to_string(),
        apiv3_key: Secret::new(apiv3),
        public_key,
        platform_certs_dir,
        api_base,
        order_ttl: Duration::from_secs(num("PAY_ORDER_TTL_SECS", 1800, RANGE_PAY_ORDER_TTL_SECS)?),
        reconcile_after: Duration::from_secs(num(
            "PAY_RECONCILE_AFTER_SECS",
            300,
            RANGE_PAY_RECONCILE_AFTER_SECS,
        )?),
    }))
}

/// The names the environment and the file may use (without the `MPGATE_` prefix).
const KEYS: &[&str] = &[
    "TOKEN",
    "APP_ID",
    "ENCODING_AES_KEY",
    "ENCODING_AES_KEY_PREVIOUS",
    "LISTEN",
    "DATA_DIR",
    "KEYWORDS",
    "PUBLIC_URL",
    "ADMIN_TOKEN",
    "SESSION_TTL_SECS",
    "ADMIN_URL",
    "REPLAY_WINDOW_SECS",
    "MAX_BODY_BYTES",
    "BODY_TIMEOUT_MS",
    "MAX_CONNECTIONS",
    "CALLBACK_ALLOW",
    "ALLOW_PLAINTEXT",
    "LINK_SECRET",
    "LINK_TTL_SECS",
    "CACHE_MB",
    "DEDUPE_RETENTION_SECS",
    "UNANSWERED_DAYS",
    "LOG_FORMAT",
    "METRICS_TOKEN",
    "METRICS_LISTEN",
    "APP_SECRET",
    "API_BASE",
    "WEBHOOK_SECRET",
    "ASSISTANT_API_BASE",
    "ASSISTANT_API_KEY",
    "PAY_MCH_ID",
    "PAY_PRIVATE_KEY_FILE",
    "PAY_CERT_SERIAL",
    "PAY_APIV3_KEY",
    "PAY_PUBLIC_KEY_FILE",
    "PAY_PUBLIC_KEY_ID",
    "PAY_PLATFORM_CERTS_DIR",
    "PAY_API_BASE",
    "PAY_ORDER_TTL_SECS",
    "PAY_RECONCILE_AFTER_SECS",
];

impl Settings {
    /// Reads `mpgate.toml` (if any) and the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("MPGATE_"))
            .collect();
        let file = match env.get("MPGATE_CONFIG") {
            Some(p) => Some(PathBuf::from(p)),
            None => {
                let p = PathBuf::from("mpgate.toml");
                p.exists().then_some(p)
            }
        };
        let file_src = match &file {
            Some(p) => Some((
                p.clone(),
                std::fs::read_to_string(p).map_err(|e| {
                    err("MPGATE_CONFIG", format!("cannot read {}: {e}", p.display()))
                })?,
            )),
            None => None,
        };
        let s = Self::from_sources(
            file_src.as_ref().map(|(p, s)| (p.as_path(), s.as_str())),
            &env,
        )?;
        s.check_data_dir()?;
        Ok(s)
    }

    /// Pure merge and parse of a config file's text and an environment map (keys with prefix).
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, SettingsError> {
        let mut raw: BTreeMap<&'static str, String> = BTreeMap::new();
        if let Some((path, text)) = file {
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                err(&path.display().to_string(), e.message().to_string())
            })?;
            for (k, v) in table {
                let upper = k.to_ascii_uppercase();
                let Some(key) = KEYS.iter().find(|known| **known == upper) else {
                    return Err(err(
                        &path.display().to_string(),
                        format!(
                            "unknown key `{k}` (known: {})",
                            KEYS.join(", ").to_lowercase()
                        ),
                    ));
                };
                let v = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(err(
                            &path.display().to_string(),
                            format!(
                                "`{k}` must be a string, number or boolean, not {}",
                                other.type_str()
                            ),
                        ))
                    }
                };
                raw.insert(key, v);
            }
        }
        for key in KEYS {
            if let Some(v) = env.get(&format!("MPGATE_{key}")) {
                raw.insert(key, v.clone());
            }
        }
        let get = |k: &str| raw.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let name = |k: &str| format!("MPGATE_{k}");

        let (token, is_demo) = match get("TOKEN") {
            Some(t) => (Token::new(t), false),
            None => (Token::new(DEMO_TOKEN), true),
        };
        let app_id = AppId::parse(get("APP_ID").unwrap_or(DEMO_APP_ID)).map_err(|e| {
            err(
                &name("APP_ID"),
                format!("{e} (the AppID from the console, e.g. wx2c2769f8efd9abc2)"),
            )
        })?;
        let key = |k: &str| -> Result<Option<EncodingAesKey>, SettingsError> {
            get(k)
                .map(|v| EncodingAesKey::parse(v).map_err(|e| err(&name(k), e.to_string())))
                .transpose()
        };
        let encoding_aes_key = key("ENCODING_AES_KEY")?;
        let encoding_aes_key_previous = key("ENCODING_AES_KEY_PREVIOUS")?;
        if encoding_aes_key.is_none() && encoding_aes_key_previous.is_some() {
            return Err(err(
                &name("ENCODING_AES_KEY_PREVIOUS"),
                "set without MPGATE_ENCODING_AES_KEY; set the current key too",
            ));
        }
        let listen_s = get("LISTEN").unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            err(
                &name("LISTEN"),
                format!("`{listen_s}` is not an address:port such as 0.0.0.0:8080"),
            )
        })?;
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or("./data"));
        let keywords_explicit = get("KEYWORDS").is_some();
        let keywords = PathBuf::from(get("KEYWORDS").unwrap_or("./keywords.toml"));
        let public_url = get("PUBLIC_URL")
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(err(
                &name("PUBLIC_URL"),
                "must start with http:// or https://",
            ));
        }
        let admin_token = get("ADMIN_TOKEN").map(Secret::new);
        let admin_url = match get("ADMIN_URL") {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let mut local = listen;
                if local.ip().is_unspecified() {
                    local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{local}")
            }
        };
        if !(admin_url.starts_with("http://") || admin_url.starts_with("https://")) {
            return Err(err(
                &name("ADMIN_URL"),
                "must start with http:// or https://",
            ));
        }
        // Every number has a range; one line names the variable and the range when a value
        // (or a typo) falls outside it.
        let num =
            |k: &str, default: u64, range: RangeInclusive<u64>| -> Result<u64, SettingsError> {
                let Some(v) = get(k) else {
                    return Ok(default);
                };
                let accepted = format!("between {} and {}", range.start(), range.end());
                match v.parse::<u64>() {
                    Ok(n) if range.contains(&n) => Ok(n),
                    Ok(_) => Err(err(
                        &name(k),
                        format!("`{v}` is out of range: must be {accepted}"),
                    )),
                    Err(_) => Err(err(
                        &name(k),
                        format!("`{v}` is not a whole number {accepted}"),
                    )),
                }
            };
        let boolean = |k: &str| -> Result<bool, SettingsError> {
            match get(k).map(|v| v.to_ascii_lowercase()) {
                None => Ok(false),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(err(&name(k), format!("`{v}` is not true or false"))),
            }
        };
        let window = num("REPLAY_WINDOW_SECS", 300, RANGE_REPLAY_WINDOW_SECS)?;
        let max_body_bytes = num("MAX_BODY_BYTES", 64 * 1024, RANGE_MAX_BODY_BYTES)?;
        let body_timeout_ms = num(
            "BODY_TIMEOUT_MS",
            DEFAULT_BODY_TIMEOUT_MS,
            RANGE_BODY_TIMEOUT_MS,
        )?;
        let max_connections = num(
            "MAX_CONNECTIONS",
            DEFAULT_MAX_CONNECTIONS,
            RANGE_MAX_CONNECTIONS,
        )?;
        let callback_allow = get("CALLBACK_ALLOW")
            .map(|v| CallbackAllow::parse(v).map_err(|e| err(&name("CALLBACK_ALLOW"), e)))
            .transpose()?;
        let link_secret = get("LINK_SECRET").map(Secret::new);
        if let Some(s) = &link_secret {
            // The length only, never the value.
            let len = s.expose().len();
            if len < MIN_LINK_SECRET_BYTES {
                return Err(err(
                    &name("LINK_SECRET"),
                    format!(
                        "is {len} bytes; it must be at least {MIN_LINK_SECRET_BYTES} (make one with `openssl rand -hex 32`)"
                    ),
                ));
            }
        }
        let session_ttl = num(
            "SESSION_TTL_SECS",
            DEFAULT_SESSION_TTL_SECS,
            RANGE_SESSION_TTL_SECS,
        )?;
        let link_ttl = num("LINK_TTL_SECS", 7 * 86_400, RANGE_LINK_TTL_SECS)?;
        let cache_mb = num("CACHE_MB", crate::store::DEFAULT_CACHE_MB, RANGE_CACHE_MB)?;
        // The platform retries within ~15 s; anything under a minute would forget answered
        // pushes.
        let dedupe_retention = num(
            "DEDUPE_RETENTION_SECS",
            crate::store::DEFAULT_DEDUPE_RETENTION_SECS.unsigned_abs(),
            RANGE_DEDUPE_RETENTION_SECS,
        )?;
        let unanswered_days = num(
            "UNANSWERED_DAYS",
            u64::from(crate::store::unanswered::DEFAULT_RETENTION_DAYS),
            RANGE_UNANSWERED_DAYS,
        )?;
        let log_format = match get("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("pretty") | Some("text") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(v) => {
                return Err(err(
                    &name("LOG_FORMAT"),
                    format!("`{v}` is not pretty or json"),
                ))
            }
        };
        let metrics_token = get("METRICS_TOKEN")
            .map(|t| {
                metrics_token(t)
                    .map(Secret::new)
                    .map_err(|e| err(&name("METRICS_TOKEN"), e))
            })
            .transpose()?;
        let metrics_listen = get("METRICS_LISTEN")
            .map(|v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    err(
                        &name("METRICS_LISTEN"),
                        format!("`{v}` is not an address:port such as 127.0.0.1:9090"),
                    )
                })
            })
            .transpose()?;
        let api_base = get("API_BASE")
            .unwrap_or("https://api.weixin.qq.com")
            .trim_end_matches('/')
            .to_string();
        let assistant_api_base = get("ASSISTANT_API_BASE")
            .map(|v| {
                let v = v.trim().trim_end_matches('/');
                if v.starts_with("https://") || v.starts_with("http://") {
                    Ok(v.to_string())
                } else {
                    Err(err(
                        &name("ASSISTANT_API_BASE"),
                        format!("`{v}` is not an http(s) URL such as https://api.openai.com/v1"),
                    ))
                }
            })
            .transpose()?;
        let pay = pay_settings(&get, &num)?;
        Ok(Settings {
            token,
            app_id,
            encoding_aes_key,
            encoding_aes_key_previous,
            listen,
            data_dir,
            keywords,
            keywords_explicit,
            public_url,
            admin_token,
            session_ttl: Duration::from_secs(session_ttl),
            admin_url,
            replay_window: (window > 0).then(|| Duration::from_secs(window)),
            // The ranges above keep these within usize on every platform.
            max_body_bytes: max_body_bytes as usize,
            body_timeout: Duration::from_millis(body_timeout_ms),
            max_connections: max_connections as usize,
            callback_allow,
            allow_plaintext: boolean("ALLOW_PLAINTEXT")?,
            link_secret,
            link_ttl: Duration::from_secs(link_ttl),
            cache_capacity_bytes: cache_mb * 1024 * 1024,
            dedupe_retention: Duration::from_secs(dedupe_retention),
            // The range above keeps it within u32.
            unanswered_days: unanswered_days as u32,
            log_format,
            metrics_token,
            metrics_listen,
            app_secret: get("APP_SECRET").map(Secret::new),
            api_base,
            webhook_secret: get("WEBHOOK_SECRET").map(Secret::new),
            assistant_api_base,
            assistant_api_key: get("ASSISTANT_API_KEY").map(Secret::new),
            pay,
            is_demo,
        })
    }

    /// The data dir must exist (or be creatable) and be writable, checked before sled opens it.
    pub fn check_data_dir(&self) -> Result<(), SettingsError> {
        let name = "MPGATE_DATA_DIR";
        let d = &self.data_dir;
        std::fs::create_dir_all(d)
            .map_err(|e| err(name, format!("cannot create {}: {e}", d.display())))?;
        let probe = d.join(format!(".mpgate-write-probe-{}", std::process::id()));
        std::fs::write(&probe, b"ok")
            .map_err(|e| err(name, format!("{} is not writable: {e}", d.display())))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// A settings value for tests and tools: demo defaults plus the given overrides.
    pub fn for_tests(env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::from_sources(None, &env)
    }

    /// The rules file to load: the named or local one, else the embedded demo rules written
    /// into the data dir.
    pub fn rules_path(&self) -> std::io::Result<PathBuf> {
        if self.keywords_explicit || self.keywords.exists() {
            return Ok(self.keywords.clone());
        }
        crate::defaults::materialize(&self.data_dir.join("builtin-rules"))
    }

    /// A line for the start-up log: the mode, never a secret.
    pub fn mode(&self) -> &'static str {
        if self.encoding_aes_key.is_some() {
            "safe/compatible (AES)"
        } else {
            "plaintext"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_give_a_demo_in_plaintext_mode() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert!(s.is_demo);
        assert!(s.encoding_aes_key.is_none());
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.replay_window, Some(Duration::from_secs(300)));
        assert!(s.admin_token.is_none());
    }

    #[test]
    fn environment_wins_over_the_file() {
        let file = "token = \"fromfile\"\nlisten = \"127.0.0.1:9000\"\n";
        let s = Settings::from_sources(
            Some((Path::new("mpgate.toml"), file)),
            &env(&[("MPGATE_TOKEN", "fromenv")]),
        )
        .unwrap();
        assert_eq!(s.token.expose(), "fromenv");
        assert_eq!(s.listen.port(), 9000);
    }

    #[test]
    fn a_short_aes_key_names_the_variable() {
        let e = Settings::from_sources(
            None,
            &env(&[(
                "MPGATE_ENCODING_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",
            )]),
        )
        .unwrap_err();
        assert_eq!(e.name, "MPGATE_ENCODING_AES_KEY");
        assert!(e.problem.contains("43"), "{e}");
        assert!(
            !e.to_string().contains("abcdefghij"),
            "the key must not be echoed: {e}"
        );
    }

    #[test]
    fn a_bad_alphabet_aes_key_is_refused() {
        let e = Settings::from_sources(
            None,
            &env(&[(
                "MPGATE_ENCODING_AES_KEY",
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDE+G",
            )]),
        )
        .unwrap_err();
        assert_eq!(e.name, "MPGATE_ENCODING_AES_KEY");
    }

    #[test]
    fn an_unparsable_address_is_refused() {
        let e = Settings::from_sources(None, &env(&[("MPGATE_LISTEN", "localhost")])).unwrap_err();
        assert_eq!(e.name, "MPGATE_LISTEN");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let e = Settings::from_sources(Some((Path::new("mpgate.toml"), "tokn = \"x\"")), &env(&[]))
            .unwrap_err();
        assert!(e.problem.contains("unknown key `tokn`"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::from_sources(
            None,
            &env(&[
                ("MPGATE_TOKEN", "supersecrettoken"),
                ("MPGATE_ADMIN_TOKEN", "adminadminadminadmin"),
            ]),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("supersecrettoken"));
        assert!(!dbg.contains("adminadmin"));
    }

    #[test]
    fn the_assistant_endpoint_must_be_http_and_its_key_never_prints() {
        let s = Settings::from_sources(
            None,
            &env(&[
                ("MPGATE_TOKEN", "supersecrettoken"),
                (
                    "MPGATE_ASSISTANT_API_BASE",
                    "https://models.example.com/v1/",
                ),
                ("MPGATE_ASSISTANT_API_KEY", "sk-do-not-print-me"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.assistant_api_base.as_deref(),
            Some("https://models.example.com/v1"),
            "the trailing slash goes: `/chat/completions` is appended"
        );
        assert!(!format!("{s:?}").contains("sk-do-not-print-me"));
        let e = refused("MPGATE_ASSISTANT_API_BASE", "models.example.com/v1");
        assert!(e.to_string().contains("http(s)"), "{e}");
    }

    /// The one line a bad value gives: it names the variable.
    fn refused(var: &str, value: &str) -> SettingsError {
        let e = Settings::from_sources(None, &env(&[(var, value)]))
            .expect_err(&format!("{var}={value} must be refused"));
        assert_eq!(e.name, var, "{e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        e
    }

    #[test]
    fn every_number_is_range_checked_and_the_line_names_the_range() {
        for (var, bad, range) in [
            ("MPGATE_REPLAY_WINDOW_SECS", "86401", "between 0 and 86400"),
            ("MPGATE_MAX_BODY_BYTES", "1023", "between 1024 and 16777216"),
            (
                "MPGATE_MAX_BODY_BYTES",
                "16777217",
                "between 1024 and 16777216",
            ),
            ("MPGATE_BODY_TIMEOUT_MS", "0", "between 100 and 120000"),
            ("MPGATE_BODY_TIMEOUT_MS", "120001", "between 100 and 120000"),
            ("MPGATE_MAX_CONNECTIONS", "0", "between 1 and 1000000"),
            ("MPGATE_MAX_CONNECTIONS", "1000001", "between 1 and 1000000"),
            ("MPGATE_LINK_TTL_SECS", "0", "between 1 and 31622400"),
            ("MPGATE_CACHE_MB", "65537", "between 1 and 65536"),
            ("MPGATE_SESSION_TTL_SECS", "59", "between 60 and 2592000"),
            (
                "MPGATE_SESSION_TTL_SECS",
                "2592001",
                "between 60 and 2592000",
            ),
            (
                "MPGATE_DEDUPE_RETENTION_SECS",
                "59",
                "between 60 and 2592000",
            ),
            (
                "MPGATE_DEDUPE_RETENTION_SECS",
                "2592001",
                "between 60 and 2592000",
            ),
        ] {
            let e = refused(var, bad);
            assert!(e.problem.contains(range), "{var}={bad}: {e}");
        }
    }

    #[test]
    fn unanswered_texts_are_kept_30_days_unless_told_and_0_turns_them_off() {
        let days = |v: Option<&str>| {
            let pairs: Vec<(&str, &str)> = v
                .map(|v| ("MPGATE_UNANSWERED_DAYS", v))
                .into_iter()
                .collect();
            Settings::from_sources(None, &env(&pairs)).map(|s| s.unanswered_days)
        };
        assert_eq!(days(None), Ok(30));
        assert_eq!(days(Some("0")), Ok(0));
        assert_eq!(days(Some("7")), Ok(7));
        assert_eq!(days(Some("366")), Ok(366));
        for bad in ["367", "-1", "thirty"] {
            let e = refused("MPGATE_UNANSWERED_DAYS", bad);
            assert!(e.problem.contains("between 0 and 366"), "{bad}: {e}");
        }
        // The file takes it too, as `unanswered_days`.
        let s = Settings::from_sources(
            Some((Path::new("mpgate.toml"), "unanswered_days = 90\n")),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(s.unanswered_days, 90);
    }

    #[test]
    fn a_number_that_is_not_one_names_the_range_too() {
        for bad in ["-1", "1.5", "ten", "99999999999999999999999"] {
            let e = refused("MPGATE_CACHE_MB", bad);
            assert!(e.problem.contains("between 1 and 65536"), "{e}");
        }
    }

    #[test]
    fn a_cache_of_zero_mb_is_refused_before_sled_sees_it() {
        let e = refused("MPGATE_CACHE_MB", "0");
        assert!(e.problem.contains("between 1 and 65536"), "{e}");
    }

    #[test]
    fn a_link_ttl_of_i64_max_is_refused_not_turned_into_expired_links() {
        let e = refused("MPGATE_LINK_TTL_SECS", "9223372036854775807");
        assert!(e.problem.contains("between 1 and 31622400"), "{e}");
        let s = Settings::for_tests(&[("MPGATE_LINK_TTL_SECS", "31622400")]).unwrap();
        assert_eq!(s.link_ttl, Duration::from_secs(366 * 86_400));
    }

    #[test]
    fn a_short_link_secret_is_refused_with_a_hint_and_not_echoed() {
        let e = refused("MPGATE_LINK_SECRET", "x");
        assert!(e.problem.contains("at least 32"), "{e}");
        assert!(e.problem.contains("openssl rand -hex 32"), "{e}");
        let e = refused("MPGATE_LINK_SECRET", "secretsecretsecretsecret1234567");
        assert!(!e.to_string().contains("secretsecret"), "{e}");
        let s = Settings::for_tests(&[("MPGATE_LINK_SECRET", &"a".repeat(32))]).unwrap();
        assert_eq!(s.link_secret.unwrap().expose().len(), 32);
    }

    #[test]
    fn edge_limits_have_sane_defaults() {
        let s = Settings::for_tests(&[]).unwrap();
        assert_eq!(s.body_timeout, Duration::from_secs(2));
        assert_eq!(s.max_connections, 1024);
        assert_eq!(s.callback_allow, None);
        let s = Settings::for_tests(&[
            ("MPGATE_BODY_TIMEOUT_MS", "250"),
            ("MPGATE_MAX_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(s.body_timeout, Duration::from_millis(250));
        assert_eq!(s.max_connections, 8);
    }

    #[test]
    fn the_callback_allow_list_takes_cidrs_and_bare_addresses_of_both_families() {
        let s = Settings::for_tests(&[(
            "MPGATE_CALLBACK_ALLOW",
            " 101.226.0.0/16, 203.205.151.37 ,2402:4e00::/32,",
        )])
        .unwrap();
        let allow = s.callback_allow.unwrap();
        for inside in [
            "101.226.3.4",
            "203.205.151.37",
            "2402:4e00::1",
            "::ffff:101.226.9.9",
        ] {
            assert!(allow.allows(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["101.227.0.1", "203.205.151.38", "2402:4e01::1", "127.0.0.1"] {
            assert!(!allow.allows(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn a_dashboard_sign_in_lasts_twelve_hours_unless_set() {
        let s = Settings::for_tests(&[]).unwrap();
        assert_eq!(s.session_ttl, Duration::from_secs(43_200));
        let s = Settings::for_tests(&[("MPGATE_SESSION_TTL_SECS", "60")]).unwrap();
        assert_eq!(s.session_ttl, Duration::from_secs(60));
        let file = "session_ttl_secs = 3600\n";
        let s = Settings::from_sources(Some((Path::new("mpgate.toml"), file)), &env(&[])).unwrap();
        assert_eq!(s.session_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn a_bad_callback_allow_list_names_the_entry() {
        let e = refused("MPGATE_CALLBACK_ALLOW", "10.0.0.0/8, 10.0.0.0/33");
        assert!(e.problem.contains("`10.0.0.0/33`"), "{e}");
        let e = refused("MPGATE_CALLBACK_ALLOW", "weixin.qq.com");
        assert!(e.problem.contains("`weixin.qq.com`"), "{e}");
        refused("MPGATE_CALLBACK_ALLOW", ",");
    }

    #[test]
    fn metrics_are_off_by_default_and_each_way_in_is_parsed() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert!(s.metrics_token.is_none() && s.metrics_listen.is_none());
        let token = "0123456789abcdef0123";
        let s = Settings::from_sources(
            None,
            &env(&[
                ("MPGATE_METRICS_TOKEN", token),
                ("MPGATE_METRICS_LISTEN", "127.0.0.1:9464"),
            ]),
        )
        .unwrap();
        assert_eq!(s.metrics_token.as_ref().map(Secret::expose), Some(token));
        assert_eq!(
            s.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap()),
            "both may be set"
        );
        let s =
            Settings::from_sources(None, &env(&[("MPGATE_METRICS_LISTEN", "[::1]:0")])).unwrap();
        assert_eq!(s.metrics_listen, Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn a_short_or_unprintable_metrics_token_is_refused_without_echoing_it() {
        let e = refused("MPGATE_METRICS_TOKEN", "short-secret");
        assert!(e.problem.contains("at least 16"), "{e}");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        let e = refused("MPGATE_METRICS_TOKEN", "0123456789abcdef 0123");
        assert!(e.problem.contains("character 17"), "{e}");
        let e = refused("MPGATE_METRICS_TOKEN", "0123456789abcdef令牌");
        assert!(e.problem.contains("visible ASCII"), "{e}");
    }

    #[test]
    fn a_metrics_listen_address_must_be_an_address_and_port() {
        for bad in ["9464", "localhost:9464", "127.0.0.1", "127.0.0.1:99999"] {
            let e = refused("MPGATE_METRICS_LISTEN", bad);
            assert!(e.problem.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn an_unwritable_data_dir_is_refused() {
        let s = Settings::from_sources(
            None,
            &env(&[("MPGATE_DATA_DIR", "/proc/mpgate-cannot-exist")]),
        )
        .unwrap();
        let e = s.check_data_dir().unwrap_err();
        assert_eq!(e.name, "MPGATE_DATA_DIR");
    }
}
