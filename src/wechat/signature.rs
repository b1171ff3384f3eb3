//! The platform's request signatures: SHA-1 over byte-wise sorted fields, lowercase hex.
//!
//! Owns `signature` (token, timestamp, nonce) and `msg_signature` (the same plus `Encrypt`); both
//! are [`sign`] over a different list of parts. Pure: depends on `sha1` and `subtle` only.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Length of a SHA-1 digest in lowercase hex.
const HEX_LEN: usize = 40;

/// `hex(sha1(concat(sort(parts))))`. Sorting is byte-wise (`"10" < "9"`): the platform compares
/// timestamps and nonces as strings, never as numbers.
pub fn sign(parts: &[&str]) -> String {
    let mut sorted: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// Whether `expected` (hex, any case) is the signature of `parts`, compared in constant time so a
/// caller cannot learn a prefix of the right signature from timing.
pub fn verify(expected: &str, parts: &[&str]) -> bool {
    if expected.len() != HEX_LEN {
        return false;
    }
    let expected = expected.to_ascii_lowercase();
    let actual = sign(parts);
    actual.as_bytes().ct_eq(expected.as_bytes()).into()
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
