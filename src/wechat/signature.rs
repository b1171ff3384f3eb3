//! The platform's request signatures: SHA-1 over byte-wise sorted fields, lowercase hex.
//!
//! Owns `signature` (token, timestamp, nonce) and `msg_signature` (the same plus `Encrypt`); both
//! are [`sign`] over a different list of parts. Pure: depends on `sha1` and `subtle` only.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Length of a SHA-1 digest in lowercase hex.
const HEX_LEN: usize = 40;
/// Most parts any platform signature covers (`msg_signature`: token, timestamp, nonce, Encrypt).
const INLINE_PARTS: usize = 4;

/// A signature as lowercase hex, on the stack: the hot path signs twice per push and needs no
/// heap for it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureHex([u8; HEX_LEN]);

impl SignatureHex {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("lowercase hex is ASCII")
    }
}

impl std::fmt::Debug for SignatureHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A signature is a credential for one request; keep it out of debug output.
        f.write_str("SignatureHex(***)")
    }
}

/// `hex(sha1(concat(sort(parts))))`. Sorting is byte-wise (`"10" < "9"`): the platform compares
/// timestamps and nonces as strings, never as numbers.
pub fn sign(parts: &[&str]) -> String {
    sign_hex(parts).as_str().to_owned()
}

/// [`sign`] without allocating.
pub fn sign_hex(parts: &[&str]) -> SignatureHex {
    let mut hasher = Sha1::new();
    if parts.len() <= INLINE_PARTS {
        let mut sorted: [&[u8]; INLINE_PARTS] = [&[]; INLINE_PARTS];
        for (slot, part) in sorted.iter_mut().zip(parts) {
            *slot = part.as_bytes();
        }
        let sorted = &mut sorted[..parts.len()];
        sorted.sort_unstable();
        for part in sorted.iter() {
            hasher.update(part);
        }
    } else {
        let mut sorted: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        sorted.sort_unstable();
        for part in sorted {
            hasher.update(part);
        }
    }
    let digest = hasher.finalize();
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; HEX_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    SignatureHex(out)
}

/// Whether `expected` (hex, any case) is the signature of `parts`, compared in constant time so a
/// caller cannot learn a prefix of the right signature from timing.
pub fn verify(expected: &str, parts: &[&str]) -> bool {
    let Ok(expected) = <[u8; HEX_LEN]>::try_from(expected.as_bytes()) else {
        return false;
    };
    let expected = expected.map(|b| b.to_ascii_lowercase());
    let actual = sign_hex(parts);
    actual.0[..].ct_eq(&expected[..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_channels_doc_example() {
        // DOC-PUSH-CH worked example.
        assert_eq!(
            sign(&["AAAAA", "1714036504", "1514711492"]),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
    }

    #[test]
    fn sort_is_bytewise_not_numeric() {
        // Numerically 9 < 10, byte-wise "10" < "9": the signature must follow the bytes.
        let bytewise = {
            let mut h = Sha1::new();
            h.update(b"109tok");
            hex::encode(h.finalize())
        };
        assert_eq!(sign(&["9", "10", "tok"]), bytewise);
        assert_eq!(sign(&["tok", "9", "10"]), bytewise);
        // Upper case sorts before lower case as bytes.
        let mut h = Sha1::new();
        h.update(b"Zab");
        assert_eq!(sign(&["ab", "Z"]), hex::encode(h.finalize()));
    }

    #[test]
    fn sign_is_lowercase_hex_of_40_chars() {
        let s = sign(&["a", "b", "c"]);
        assert_eq!(s.len(), 40);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn verify_accepts_upper_case() {
        let s = sign(&["test", "1410685589", "test"]);
        assert_eq!(s, "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff");
        assert!(verify(&s, &["test", "1410685589", "test"]));
        assert!(verify(
            &s.to_ascii_uppercase(),
            &["test", "1410685589", "test"]
        ));
    }

    #[test]
    fn verify_rejects_every_one_digit_change() {
        let parts = ["spamtest", "1409735669", "1320562132"];
        let good = sign(&parts);
        for i in 0..good.len() {
            let mut bad = good.clone().into_bytes();
            bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).expect("hex stays ascii");
            assert!(!verify(&bad, &parts), "accepted a change at {i}");
        }
    }

    /// The straightforward definition the stack-only [`sign_hex`] must agree with.
    fn reference_sign(parts: &[&str]) -> String {
        let mut sorted: Vec<&str> = parts.to_vec();
        sorted.sort_unstable();
        let mut h = Sha1::new();
        for p in sorted {
            h.update(p.as_bytes());
        }
        hex::encode(h.finalize())
    }

    proptest::proptest! {
        #[test]
        fn sign_hex_agrees_with_the_reference(
            parts in proptest::collection::vec(".{0,12}", 0..7),
        ) {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let expected = reference_sign(&refs);
            let got = sign_hex(&refs);
            proptest::prop_assert_eq!(got.as_str(), expected.as_str());
            proptest::prop_assert_eq!(sign(&refs), expected.clone());
            proptest::prop_assert!(verify(&expected, &refs));
            proptest::prop_assert!(verify(&expected.to_ascii_uppercase(), &refs));
        }
    }

    #[test]
    fn signature_hex_debug_hides_the_value() {
        assert_eq!(format!("{:?}", sign_hex(&["a"])), "SignatureHex(***)");
    }

    #[test]
    fn verify_rejects_wrong_length_and_non_ascii() {
        let parts = ["a", "b"];
        let good = sign(&parts);
        assert!(!verify(&good[..39], &parts));
        assert!(!verify(&format!("{good}0"), &parts));
        assert!(!verify("", &parts));
        // 40 bytes but not 40 chars of hex.
        assert!(!verify(&"é".repeat(20), &parts));
    }
}
