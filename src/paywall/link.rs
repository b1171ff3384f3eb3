//! Signed article links: `{base}/a/{article}?u={openid}&e={expires}&s={sig}`.
//!
//! Pure: no sled, no I/O, no clock (callers pass `now`). Depends on std, `hmac` and `sha2`.
//!
//! The signature is lowercase hex of HMAC-SHA256 over
//! `"mpgate-link-v1" ‖ len(article) ‖ article ‖ len(openid) ‖ openid ‖ expires_at`, lengths as
//! u32 big-endian and `expires_at` as i64 big-endian. Length prefixes make the encoding
//! unambiguous for any field contents, so no field needs validating before signing; the
//! version tag keeps these MACs apart from anything else the same secret might ever sign.
//!
//! Only lowercase hex is accepted: [`LinkSigner::url`] never produces anything else, so an
//! uppercase signature means the link was not ours as issued ([`LinkError::Malformed`]).
//! A link is valid while `now < expires_at`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default link lifetime: 7 days.
pub const DEFAULT_LINK_TTL_SECS: i64 = 7 * 24 * 60 * 60;

const DOMAIN_TAG: &[u8] = b"mpgate-link-v1";
const SIG_HEX_LEN: usize = 64;

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The signature does not match the link's fields (→ 403).
    #[error("link signature does not match")]
    Tampered,
    /// The link was genuine but has expired (→ 410).
    #[error("link has expired")]
    Expired,
    /// A parameter is missing or not in the expected form (→ 403 as well, or 400).
    #[error("link is malformed")]
    Malformed,
}

/// Signs and verifies article links with a 32-byte secret.
#[derive(Clone)]
pub struct LinkSigner {
    secret: [u8; 32],
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    pub fn new(secret: [u8; 32]) -> Self {
        LinkSigner { secret }
    }

    fn mac(&self, article: &str, openid: &str, expires_at: i64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(DOMAIN_TAG);
        for field in [article, openid] {
            // A field over 4 GiB cannot occur in a URL; saturating keeps this total anyway.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac.update(&expires_at.to_be_bytes());
        mac
    }

    /// Lowercase hex HMAC-SHA256 of the link's fields.
    pub fn sign(&self, article: &str, openid: &str, expires_at: i64) -> String {
        hex::encode(
            self.mac(article, openid, expires_at)
                .finalize()
                .into_bytes(),
        )
    }

    /// The full link; `base` is the public URL without a trailing slash.
    pub fn url(&self, base: &str, article: &str, openid: &str, expires_at: i64) -> String {
        format!(
            "{base}/a/{}?u={}&e={expires_at}&s={}",
            percent_encode(article),
            percent_encode(openid),
            self.sign(article, openid, expires_at)
        )
    }

    /// Checks the MAC (in constant time) first, then expiry, so an expired forgery is
    /// reported as tampered and a timing probe learns nothing about expiry.
    pub fn verify(
        &self,
        article: &str,
        openid: &str,
        expires_at: i64,
        sig_hex: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        if sig_hex.len() != SIG_HEX_LEN
            || !sig_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(LinkError::Malformed);
        }
        let sig = hex::decode(sig_hex).map_err(|_| LinkError::Malformed)?;
        self.mac(article, openid, expires_at)
            .verify_slice(&sig)
            .map_err(|_| LinkError::Tampered)?;
        if now >= expires_at {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// When a link issued at `now` for `ttl` expires: saturating, so a huge lifetime gives a link
/// that never expires rather than one that wrapped round into the past.
pub fn expires_at(now: i64, ttl: std::time::Duration) -> i64 {
    now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

/// Parses the `e` query parameter (decimal unix seconds, as [`LinkSigner::url`] writes it).
pub fn parse_expires(e: &str) -> Result<i64, LinkError> {
    let canonical = !e.is_empty()
        && e.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'));
    if !canonical {
        return Err(LinkError::Malformed);
    }
    e.parse().map_err(|_| LinkError::Malformed)
}

/// Percent-encodes everything outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _ ~`),
/// which is safe in both a path segment and a query value.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_link_ttl_does_not_expire_links_at_once() {
        let now = 1_700_000_000;
        for secs in [u64::MAX, i64::MAX as u64, i64::MAX as u64 + 1] {
            let e = expires_at(now, std::time::Duration::from_secs(secs));
            assert_eq!(e, i64::MAX, "ttl {secs}");
        }
        assert_eq!(
            expires_at(now, std::time::Duration::from_secs(604_800)),
            now + 604_800
        );
    }

    const NOW: i64 = 1_760_000_000;

    fn signer() -> LinkSigner {
        LinkSigner::new(*b"0123456789abcdef0123456789abcdef")
    }

    /// Byte-level substitutions that keep a string valid UTF-8.
    fn mutations(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..s.len() {
            for sub in [b'a', b'Z', b'0', b'-'] {
                let mut b = s.as_bytes().to_vec();
                if b[i] == sub || !b[i].is_ascii() {
                    continue;
                }
                b[i] = sub;
                if let Ok(m) = String::from_utf8(b) {
                    out.push(m);
                }
            }
        }
        // Also lengthen and shorten.
        out.push(format!("{s}x"));
        if let Some((i, _)) = s.char_indices().last() {
            out.push(s[..i].to_string());
        }
        out
    }

    #[test]
    fn genuine_link_verifies() {
        let s = signer();
        let sig = s.sign("rust-101", "oUser_1", NOW + 60);
        assert_eq!(sig.len(), 64);
        assert_eq!(s.verify("rust-101", "oUser_1", NOW + 60, &sig, NOW), Ok(()));
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let s = signer();
        let (art, oid, exp) = ("rust-101", "oAbC_dEf-123", NOW + 3600);
        let sig = s.sign(art, oid, exp);
        let mut checked = 0;
        for m in mutations(art) {
            assert_eq!(
                s.verify(&m, oid, exp, &sig, NOW),
                Err(LinkError::Tampered),
                "{m}"
            );
            checked += 1;
        }
        for m in mutations(oid) {
            assert_eq!(
                s.verify(art, &m, exp, &sig, NOW),
                Err(LinkError::Tampered),
                "{m}"
            );
            checked += 1;
        }
        for bit in 0..64 {
            let e = exp ^ (1i64 << bit);
            assert_eq!(
                s.verify(art, oid, e, &sig, NOW),
                Err(LinkError::Tampered),
                "bit {bit}"
            );
            checked += 1;
        }
        for i in 0..sig.len() {
            for sub in ['0', '7', 'a', 'f'] {
                let mut m: Vec<char> = sig.chars().collect();
                if m[i] == sub {
                    continue;
                }
                m[i] = sub;
                let m: String = m.into_iter().collect();
                assert_eq!(
                    s.verify(art, oid, exp, &m, NOW),
                    Err(LinkError::Tampered),
                    "{m}"
                );
                checked += 1;
            }
        }
        assert!(checked > 300, "only {checked} mutations checked");
    }

    #[test]
    fn fields_do_not_run_together() {
        let s = signer();
        assert_ne!(s.sign("ab", "c", NOW), s.sign("a", "bc", NOW));
        assert_ne!(s.sign("a", "", NOW), s.sign("", "a", NOW));
    }

    #[test]
    fn other_secret_is_tampered() {
        let sig = signer().sign("a", "u", NOW + 5);
        let other = LinkSigner::new([7u8; 32]);
        assert_eq!(
            other.verify("a", "u", NOW + 5, &sig, NOW),
            Err(LinkError::Tampered)
        );
    }

    #[test]
    fn expiry_boundary() {
        let s = signer();
        let exp = NOW + 10;
        let sig = s.sign("a", "u", exp);
        assert_eq!(s.verify("a", "u", exp, &sig, exp - 1), Ok(()));
        assert_eq!(s.verify("a", "u", exp, &sig, exp), Err(LinkError::Expired));
        assert_eq!(
            s.verify("a", "u", exp, &sig, exp + 1),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn tampering_wins_over_expiry() {
        let s = signer();
        let sig = s.sign("a", "u", NOW - 10);
        assert_eq!(
            s.verify("a", "u", NOW - 9, &sig, NOW),
            Err(LinkError::Tampered)
        );
        assert_eq!(
            s.verify("a", "u", NOW - 10, &sig, NOW),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn malformed_signatures() {
        let s = signer();
        let sig = s.sign("a", "u", NOW + 10);
        for bad in [
            String::new(),
            sig[..63].to_string(),
            format!("{sig}0"),
            sig.to_uppercase(),
            format!("{}g", &sig[..63]),
            format!("{}é", &sig[..62]),
        ] {
            assert_eq!(
                s.verify("a", "u", NOW + 10, &bad, NOW),
                Err(LinkError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_shape_and_encoding() {
        let s = signer();
        let url = s.url("https://mp.example.com", "课程 1/2", "o+u=&", NOW);
        let sig = s.sign("课程 1/2", "o+u=&", NOW);
        assert_eq!(
            url,
            format!(
                "https://mp.example.com/a/%E8%AF%BE%E7%A8%8B%201%2F2?u=o%2Bu%3D%26&e={NOW}&s={sig}"
            )
        );
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn parse_expires_accepts_only_decimal() {
        assert_eq!(parse_expires("1760000000"), Ok(1_760_000_000));
        assert_eq!(parse_expires("-5"), Ok(-5));
        for bad in [
            "",
            "+5",
            "1e9",
            " 5",
            "5 ",
            "0x10",
            "-",
            "99999999999999999999",
        ] {
            assert_eq!(parse_expires(bad), Err(LinkError::Malformed), "{bad:?}");
        }
    }
}
