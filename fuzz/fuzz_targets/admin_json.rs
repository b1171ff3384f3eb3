//! The admin API's JSON bodies (`POST /admin/grants`, `POST /admin/revocations`) on any bytes:
//! parsing never panics, and an openid the edge accepts has the documented shape (1-64
//! characters of A-Z a-z 0-9 - _), so nothing else reaches the store's keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpgate::http::admin::{GrantBody, RevokeBody};
use mpgate::wechat::types::OpenId;

fn edge_openid(v: &str) {
    match OpenId::parse(v) {
        Ok(id) => {
            assert_eq!(id.as_str(), v);
            assert!(
                (1..=64).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "accepted openid {v:?}"
            );
            let _ = id.redacted();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The handlers parse the raw body (`serde_json::from_slice`), after authorisation.
    match serde_json::from_slice::<GrantBody>(data) {
        Ok(b) => {
            edge_openid(&b.openid);
            let _ = (b.article.len(), b.source.len(), b.reference, b.create);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(b) = serde_json::from_slice::<RevokeBody>(data) {
        edge_openid(&b.openid);
        let _ = b.article.len();
    }
});
