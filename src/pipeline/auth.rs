//! The callback's edge: authenticate a push (signature, replay window), open it (decrypt with
//! the current key, then the previous one during a rotation), and seal the answer with the key
//! that opened it.
//!
//! No I/O and no state beyond the configured keys: the wire work itself is `wechat`'s; this
//! module decides which of it applies to a request (plaintext or encrypted, which key) and what
//! is refused. May depend on `wechat` and `settings`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CallbackError, CallbackQuery};
use crate::settings::Settings;
use crate::wechat::crypto::{Cipher, CryptoError};
use crate::wechat::message::{self, Inbound};
use crate::wechat::reply;
use crate::wechat::signature;
use crate::wechat::types::{AppId, Token};

/// The account's callback credentials.
pub struct Auth {
    token: Token,
    app_id: AppId,
    /// Current key first, then the previous one (rotation).
    ciphers: Vec<Cipher>,
    allow_plaintext: bool,
    replay_window: Option<Duration>,
}

/// A push, authenticated and parsed, and which key opened it.
pub struct Opened {
    pub inbound: Inbound,
    /// Index into `Auth::ciphers` of the key that decrypted the push; `None` for plaintext.
    key: Option<usize>,
}

impl Opened {
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, CallbackError> {
    v.as_deref().ok_or(CallbackError::MissingParam(name))
}

impl Auth {
    pub fn new(settings: &Settings) -> Auth {
        let ciphers = settings
            .encoding_aes_key
            .iter()
            .chain(settings.encoding_aes_key_previous.iter())
            .map(Cipher::new)
            .collect();
        Auth {
            token: settings.token.clone(),
            app_id: settings.app_id.clone(),
            ciphers,
            allow_plaintext: settings.allow_plaintext,
            replay_window: settings.replay_window,
        }
    }

    /// `GET /wechat`: URL verification. Answers `echostr` when the 3-field signature holds.
    ///
    /// No replay window here: verification changes nothing, and the console's check may be
    /// repeated with the same parameters.
    pub fn verify_url(&self, q: &CallbackQuery) -> Result<String, CallbackError> {
        let sig = required(&q.signature, "signature")?;
        let ts = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let echostr = required(&q.echostr, "echostr")?;
        if !signature::verify(sig, &[self.token.expose(), ts, nonce]) {
            return Err(CallbackError::BadSignature);
        }
        Ok(echostr.to_string())
    }

    /// Authenticates and decrypts a push into a typed message.
    pub fn open(
        &self,
        q: &CallbackQuery,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Opened, CallbackError> {
        let ts = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let ts_num: i64 = ts.trim().parse().map_err(|_| CallbackError::BadTimestamp)?;
        if let Some(window) = self.replay_window {
            let skew = now.timestamp() - ts_num;
            if skew.unsigned_abs() > window.as_secs() {
                return Err(CallbackError::Replay { skew_secs: skew });
            }
        }
        let text = std::str::from_utf8(body).map_err(|_| CallbackError::InvalidUtf8)?;
        let encrypted = q
            .encrypt_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("aes"));
        if encrypted {
            if self.ciphers.is_empty() {
                return Err(CallbackError::NoAesKey);
            }
            let msg_sig = required(&q.msg_signature, "msg_signature")?;
            let env =
                message::parse_envelope(text).map_err(|e| CallbackError::BadXml(e.to_string()))?;
            let enc = env.encrypt.ok_or(CallbackError::NoEncrypt)?;
            // Verify before decrypting: integrity comes only from the signature.
            if !signature::verify(msg_sig, &[self.token.expose(), ts, nonce, &enc]) {
                return Err(CallbackError::BadSignature);
            }
            let mut last: Option<CryptoError> = None;
            for (i, c) in self.ciphers.iter().enumerate() {
                match c.decrypt(&enc, &self.app_id) {
                    Ok(xml) => {
                        if i > 0 {
                            tracing::warn!("push decrypted with the PREVIOUS EncodingAESKey; finish the key rotation");
                        }
                        let inbound = message::parse(&xml)
                            .map_err(|e| CallbackError::BadXml(e.to_string()))?;
                        return Ok(Opened {
                            inbound,
                            key: Some(i),
                        });
                    }
                    Err(e) => last = Some(e),
                }
            }
            let e = last.expect("at least one cipher was tried");
            Err(CallbackError::Decrypt {
                code: e.code(),
                reason: e.to_string(),
            })
        } else {
            if !self.ciphers.is_empty() && !self.allow_plaintext {
                return Err(CallbackError::PlaintextRefused);
            }
            let sig = required(&q.signature, "signature")?;
            if !signature::verify(sig, &[self.token.expose(), ts, nonce]) {
                return Err(CallbackError::BadSignature);
            }
            let inbound = message::parse(text).map_err(|e| CallbackError::BadXml(e.to_string()))?;
            Ok(Opened { inbound, key: None })
        }
    }

    /// The response body for `plain` (the reply XML, or "" for no reply): `success`, the XML
    /// itself for a plaintext push, or the XML sealed with the key that opened the push.
    pub fn seal(
        &self,
        opened: &Opened,
        plain: String,
        q: &CallbackQuery,
        now: DateTime<Utc>,
    ) -> String {
        match opened.key {
            _ if plain.is_empty() => "success".to_string(),
            None => plain,
            Some(k) => {
                // The platform's reference code echoes the URL nonce in the reply envelope.
                let nonce = q.nonce.as_deref().unwrap_or_default();
                reply::seal(
                    &self.ciphers[k],
                    &self.app_id,
                    &self.token,
                    &plain,
                    now.timestamp(),
                    nonce,
                )
            }
        }
    }
}
