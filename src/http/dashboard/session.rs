//! Signing in to the dashboard: the admin token, typed once into a form, becomes a session
//! cookie; every form the dashboard serves carries the session's own CSRF token.
//!
//! - `POST /admin/sign-in` (form field `token`, compared in constant time) → 303 to the
//!   dashboard with `Set-Cookie: mpgate_session=…; HttpOnly; SameSite=Strict; Path=/admin;
//!   Max-Age=<MPGATE_SESSION_TTL_SECS>` (+ `Secure` when `MPGATE_PUBLIC_URL` is https). A wrong
//!   token shows the form again with an error and sets nothing; five from one address in a
//!   minute are slowed down ([`super::throttle`]).
//! - `POST /admin/sign-out` (with the CSRF token) deletes the session and the cookie.
//!
//! Sessions live in memory ([`Sessions`]): bounded in number ([`MAX_SESSIONS`]; when full, the
//! session closest to expiry goes first), and a restart signs everyone out. The store keeps a
//! SHA-256 of each cookie value, never the value itself, so a lookup's timing says nothing
//! about a stored cookie.
//!
//! May depend on: `settings` (the token, the lifetime), `super` (the page renderer), rand,
//! sha2, subtle, base64, actix-web.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Dashboard, DashboardError, SignedIn};
use crate::http::limits::Body;
use crate::pipeline::Gateway;

/// The session cookie's name.
pub const COOKIE: &str = "mpgate_session";
/// Sessions held at most (operators are few; each sign-in on each device is one).
pub const MAX_SESSIONS: usize = 1000;

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token every form of this session carries (hidden field `csrf`).
    pub csrf: String,
    /// Unix seconds after which the session is gone.
    pub expires_at: i64,
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// A session just made: the cookie value goes to the browser, and only there.
#[derive(Debug)]
pub struct NewSession {
    pub cookie_value: String,
    pub session: Session,
}

/// The signed-in browsers of this process. Time is passed in (unix seconds).
#[derive(Debug)]
pub struct Sessions {
    ttl_secs: i64,
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes from the OS, base64url without padding (43 characters).
fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hash(cookie_value: &str) -> [u8; 32] {
    Sha256::digest(cookie_value.as_bytes()).into()
}

/// The shape [`random_token`] makes; anything else is not looked up.
fn well_formed(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            by_hash: Mutex::default(),
        }
    }

    /// The lifetime of a session, in seconds (the cookie's `Max-Age`).
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Signs a browser in at `now`.
    pub fn create(&self, now: i64) -> NewSession {
        let cookie_value = random_token();
        let session = Session {
            csrf: random_token(),
            expires_at: now.saturating_add(self.ttl_secs),
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires_at > now);
        }
        while map.len() >= MAX_SESSIONS {
            let Some(first) = map
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| *k)
            else {
                break;
            };
            map.remove(&first);
        }
        map.insert(hash(&cookie_value), session.clone());
        NewSession {
            cookie_value,
            session,
        }
    }

    /// The session a cookie names, if it exists and has not expired at `now` (an expired one is
    /// forgotten here).
    pub fn get(&self, cookie_value: &str, now: i64) -> Option<Session> {
        if !well_formed(cookie_value) {
            return None;
        }
        let h = hash(cookie_value);
        let mut map = self.lock();
        match map.get(&h) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                map.remove(&h);
                None
            }
            None => None,
        }
    }

    /// Signs the cookie's browser out; whether there was such a session.
    pub fn remove(&self, cookie_value: &str) -> bool {
        well_formed(cookie_value) && self.lock().remove(&hash(cookie_value)).is_some()
    }

    /// Sessions held now, expired ones included until they are looked up or crowded out.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `Set-Cookie` value that signs a browser in.
pub fn set_cookie(value: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={max_age_secs}{secure}"
    )
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session cookie's value in a request, if any.
pub fn cookie_value(req: &HttpRequest) -> Option<String> {
    // Parsed by hand: actix-web is built without its `cookies` feature.
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The fields of a dashboard form, parsed from an urlencoded body at the edge.
pub fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DashboardError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| DashboardError::BadRequest("the form is not UTF-8".into()))?;
    // The same encoding as a query string (`a=b&c=d`, `+` for space).
    web::Query::<T>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| DashboardError::BadRequest(format!("bad form: {e}")))
}

#[derive(serde::Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
}

/// `GET /admin/sign-in`: the form (or straight on, for a browser already signed in).
pub async fn sign_in_form(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    dash: web::Data<Dashboard>,
) -> Result<HttpResponse, DashboardError> {
    dash.enabled()?;
    let now = chrono::Utc::now().timestamp();
    if cookie_value(&req)
        .and_then(|v| dash.sessions.get(&v, now))
        .is_some()
    {
        return Ok(super::see_other("/admin/dashboard"));
    }
    super::render_sign_in(&gw, actix_web::http::StatusCode::OK, None)
}

/// `POST /admin/sign-in`.
pub async fn sign_in(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    dash: web::Data<Dashboard>,
    Body(body): Body,
) -> Result<HttpResponse, DashboardError> {
    let expected = dash.enabled()?;
    let now = chrono::Utc::now().timestamp();
    let peer = req.peer_addr().map(|a| a.ip());
    if let Some(ip) = peer {
        dash.throttle
            .check(ip, now)
            .map_err(|s| DashboardError::Slowed(s.retry_after_secs))?;
    }
    let f: SignInForm = form(&body)?;
    if !bool::from(f.token.as_bytes().ct_eq(expected.expose().as_bytes())) {
        if let Some(ip) = peer {
            dash.throttle.failed(ip, now);
        }
        tracing::warn!(peer = ?peer, "dashboard sign-in refused: wrong token");
        return super::render_sign_in(
            &gw,
            actix_web::http::StatusCode::UNAUTHORIZED,
            Some("That is not the admin token (MPGATE_ADMIN_TOKEN)."),
        );
    }
    let new = dash.sessions.create(now);
    tracing::info!("dashboard sign-in");
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/admin/dashboard"))
        .insert_header((
            "Set-Cookie",
            set_cookie(&new.cookie_value, dash.sessions.ttl_secs(), dash.secure),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

#[derive(serde::Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /admin/sign-out`.
pub async fn sign_out(
    req: HttpRequest,
    dash: web::Data<Dashboard>,
    signed: SignedIn,
    Body(body): Body,
) -> Result<HttpResponse, DashboardError> {
    let f: CsrfOnly = form(&body)?;
    signed.check_csrf(&f.csrf)?;
    if let Some(v) = cookie_value(&req) {
        dash.sessions.remove(&v);
    }
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/admin/sign-in"))
        .insert_header(("Set-Cookie", clear_cookie(dash.secure)))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_exactly_its_lifetime_then_is_forgotten() {
        let s = Sessions::new(Duration::from_secs(60));
        let new = s.create(1_000);
        assert_eq!(new.session.expires_at, 1_060);
        assert_eq!(s.get(&new.cookie_value, 1_000), Some(new.session.clone()));
        assert_eq!(s.get(&new.cookie_value, 1_059), Some(new.session.clone()));
        assert_eq!(s.get(&new.cookie_value, 1_060), None, "expired");
        assert!(s.is_empty(), "an expired session is dropped when seen");
        assert_eq!(s.get(&new.cookie_value, 1_000), None, "and stays gone");
    }

    #[test]
    fn tokens_are_random_url_safe_and_unrelated() {
        let s = Sessions::new(Duration::from_secs(60));
        let a = s.create(0);
        let b = s.create(0);
        for t in [&a.cookie_value, &a.session.csrf, &b.cookie_value] {
            assert!(well_formed(t), "{t}");
        }
        assert_ne!(a.cookie_value, b.cookie_value);
        assert_ne!(a.session.csrf, b.session.csrf);
        assert_ne!(a.cookie_value, a.session.csrf);
    }

    #[test]
    fn a_tampered_or_unknown_cookie_names_no_session() {
        let s = Sessions::new(Duration::from_secs(600));
        let new = s.create(0);
        let mut tampered = new.cookie_value.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(s.get(&tampered, 1), None);
        assert_eq!(s.get("", 1), None);
        assert_eq!(s.get(&format!("{}=", new.cookie_value), 1), None);
        assert_eq!(
            s.get(&new.session.csrf, 1),
            None,
            "the CSRF token is no cookie"
        );
        assert!(s.get(&new.cookie_value, 1).is_some());
    }

    #[test]
    fn sign_out_forgets_the_session() {
        let s = Sessions::new(Duration::from_secs(600));
        let new = s.create(0);
        assert!(s.remove(&new.cookie_value));
        assert_eq!(s.get(&new.cookie_value, 1), None);
        assert!(!s.remove(&new.cookie_value));
    }

    #[test]
    fn the_csrf_check_takes_only_the_sessions_own_token() {
        let s = Sessions::new(Duration::from_secs(600));
        let a = s.create(0).session;
        let b = s.create(0).session;
        assert!(a.csrf_matches(&a.csrf));
        assert!(!a.csrf_matches(&b.csrf));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches(&a.csrf[..42]));
    }

    #[test]
    fn the_number_of_sessions_is_bounded_and_the_nearest_expiry_goes_first() {
        let s = Sessions::new(Duration::from_secs(86_400));
        let first = s.create(0);
        let kept: Vec<_> = (1..MAX_SESSIONS as i64 + 5).map(|i| s.create(i)).collect();
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.get(&first.cookie_value, 10), None);
        let newest = kept.last().unwrap();
        assert!(s.get(&newest.cookie_value, 10).is_some());
        // Expired sessions go before any live one.
        let s = Sessions::new(Duration::from_secs(60));
        let live: Vec<_> = (0..MAX_SESSIONS).map(|_| s.create(0)).collect();
        let late = s.create(1_000);
        assert_eq!(s.len(), 1, "all the others had expired");
        assert!(s.get(&late.cookie_value, 1_000).is_some());
        assert!(s.get(&live[0].cookie_value, 0).is_none());
    }

    #[test]
    fn the_cookie_carries_every_attribute_and_secure_only_for_https() {
        assert_eq!(
            set_cookie("abc", 43_200, false),
            "mpgate_session=abc; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=43200"
        );
        assert!(set_cookie("abc", 60, true).ends_with("; Max-Age=60; Secure"));
        assert!(clear_cookie(false).starts_with("mpgate_session=; "));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
