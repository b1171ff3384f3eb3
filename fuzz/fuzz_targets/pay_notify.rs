//! WeChat Pay notifications through `mpgate::pay::notify::open`, with WeChat Pay's key from
//! `../shared/conformance/pay` when present (so the vectors' notifications verify), else the
//! throwaway key below. The first byte picks what the rest is:
//!
//! - 0: raw headers and body: `serial\nsignature\ntimestamp\nnonce\n` then the body, opened at
//!   the vectors' `now`: anything goes, nothing may panic;
//! - 1: a body, signed with the platform key at `now`: the signature must hold, so whatever is
//!   refused is refused for its content (malformed or not decrypting), never as unsigned;
//! - 2: `event_type\n` then a resource plaintext, encrypted with the APIv3 key into a documented
//!   envelope and signed: it must verify and decrypt; a transaction or refund that parses must
//!   serialise back to what parses to itself.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use mpgate::pay::crypto::{aead_encrypt, ApiV3Key, MerchantKey, PlatformKeys, SignedHeaders};
use mpgate::pay::notify::{self, NotifyError, PayEvent, Refund, Transaction};

/// A 2048-bit RSA key generated for this target alone, used only when the conformance keys are
/// absent: it stands for nobody and signs nothing outside this fuzzer.
const FALLBACK_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEugIBADANBgkqhkiG9w0BAQEFAASCBKQwggSgAgEAAoIBAQDQU9ylNKyAQsuD
XxEhCYY4AG/qFqS/v0KxgboFnz8GzkdvzvQbSirQHkJ30c5bvhZZvY1rXxV1T0il
QfsrZPFuD/5Sk0BzN82SI5c0lY0+DGrJ+NpVnJ2C5DiuMWLsIWXHpWSWxH2ZBQ2m
WIOWAxZV4hT1JnN6zdVFzhIU22NbXUV5AiEFnzWG1P0k39tj5BzTtw8JxnmCqO8G
qEAKWy/O4g4U5xKa+8/O+rfbISO4Gp2SJ+2iDdnmBuyNKqXO5tW36f2j6uzgDwsI
Qe1WmN3k2hyzYWk8g5yPYYyb3tbC6iRC7bntzfV648xm7vYWtxxJPwVPrMAVx3mF
33JmGjzbAgMBAAECgf9UgiyLJWZYcs+fmh9/fasrDIY6lko+pTCuopQwnGEbn7ju
RRzQgNFJ2Yg0WLFlEZBsHM3zz+wTB3OPtTwXEMRywle2Pt7WqBI4RZyceh3CLOo8
Oo/6C6V8km01csO9sLdTJpYbySzcYiDhkC1FMSIztKGVe489zWhw0W0fdXMO6dSt
1EMkfXHb9M3CBY8X5L7hGUdFqNchI7jQCmxM5pSologz5vs5QlYSDieIDl3d9Q8c
1Dv8QiIqDQDxHG+MgOgWTErvy3wel87Z6pbwCWMWNwSvP0txQS0vfNh7OouUZga+
07kgKBts6tpsx2L46AjBqmjhJ73T5xx3ZfNYGEkCgYEA/cNe6ZCmAvm6W114LjPW
U5Jzm7tV+AqRZtyN2ydoW6hK1Lu4BtVEZqDrm5iFxD5rVM7ocLwQ6rZsXkR5ySR4
biOifVmBMY7JVoFZvflu0JasKXgobQZy7j/onwiXyHKnyVi2liYDatqyuR/Z6rfb
fvZ5r2EmYn7B636F9c5lXm8CgYEA0in2pyE/KevhyzIPWJEYasuepR03FRNLl18z
9VbCMVfs9YNKTmTVjfEb7WVFpLA9UtMPy5FVKXTrkNeI7/SI69Z7mjsbhsorqfHi
xAFOmhxwUwWHxWYWoBQEPkD/gGftuBXnP/wUS4/+77KpfdQDfSL0gq2i8GtNV+58
/NEdPlUCgYBbHge6fgHeF6VeoRVCIcLXh0KTrJSV19WVxaP6CRBjuO4FrNHLQlCp
OSbgW8fMS01mylSUBjNc09vdjWDdZIcJpSn3MGg/TzHkKdX7bNDpfPCcg1SgsSwb
eD8iu4ckpmaw2XXWPBgGCjkaV+F7ckESOZY/7vZFb5ZZ5LhdJpsnaQKBgCgQ0/L8
xZvqWjtwqbhKwQrrEq2LqkqcSRbskW0+QvtBNe2AQBQ96PCMfLR/UA2bg7Vcg3Bd
noyuu5H7ZSHJzqiXVS0MA61osXZOpNqVHTUIIunQ7hdV5Q5TgpOTtKH4LjugAVwT
ZJMbOpDb0LAqURf0KAUZsSyAaFhRIQbZnueZAoGATQDTKzs9ANOU1pkYminqUeqE
oBSPfSuf5aewILjW1+Je3wEjYlLxtnPlGV+MfRUWtZlSVHI0Ip84hv6mg0DvOhxX
CVmmYVLULfEvvlNJ8LNKtIqPjJrPb1rI61zSCTLJF/nqb33sqVNePvZ3+991SDm0
hXiscKN2aKl6GU6tzyg=
-----END PRIVATE KEY-----
";
const FALLBACK_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0FPcpTSsgELLg18RIQmG
OABv6hakv79CsYG6BZ8/Bs5Hb870G0oq0B5Cd9HOW74WWb2Na18VdU9IpUH7K2Tx
bg/+UpNAczfNkiOXNJWNPgxqyfjaVZydguQ4rjFi7CFlx6VklsR9mQUNpliDlgMW
VeIU9SZzes3VRc4SFNtjW11FeQIhBZ81htT9JN/bY+Qc07cPCcZ5gqjvBqhAClsv
zuIOFOcSmvvPzvq32yEjuBqdkiftog3Z5gbsjSqlzubVt+n9o+rs4A8LCEHtVpjd
5Nocs2FpPIOcj2GMm97WwuokQu257c31euPMZu72FrccST8FT6zAFcd5hd9yZho8
2wIDAQAB
-----END PUBLIC KEY-----
";

struct Fixture {
    keys: PlatformKeys,
    signer: MerchantKey,
    apiv3: ApiV3Key,
    serial: String,
    now: i64,
}

fn pay_dir() -> PathBuf {
    match std::env::var_os("MPGATE_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d).join("pay"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/pay"),
    }
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = pay_dir();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let settings = read("vectors.json")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v["settings"].clone());
        let (private, public, serial, apiv3, now) = match (
            read("platform_private_key.pem"),
            read("platform_public_key.pem"),
            settings,
        ) {
            (Some(private), Some(public), Some(s)) => (
                private,
                public,
                s["platform_public_key_id"]
                    .as_str()
                    .expect("key id")
                    .to_owned(),
                s["apiv3_key"].as_str().expect("APIv3 key").to_owned(),
                s["now"].as_i64().expect("now"),
            ),
            _ => {
                eprintln!(
                    "pay_notify: {} is absent: fuzzing with the fallback key",
                    dir.display()
                );
                (
                    FALLBACK_PRIVATE.to_owned(),
                    FALLBACK_PUBLIC.to_owned(),
                    "PUB_KEY_ID_FUZZ".to_owned(),
                    "fuzzFuzzFuzzFuzzFuzzFuzzFuzz0123".to_owned(),
                    1_764_662_410,
                )
            }
        };
        let mut keys = PlatformKeys::default();
        keys.add_public_key_pem(&serial, &public)
            .expect("public key");
        Fixture {
            keys,
            signer: MerchantKey::from_pkcs8_pem(&private).expect("private key"),
            apiv3: ApiV3Key::new(&apiv3).expect("APIv3 key"),
            serial,
            now,
        }
    })
}

fn signed_open(body: &[u8]) -> Result<notify::Notification, NotifyError> {
    let f = fixture();
    let ts = f.now.to_string();
    let mut message = format!("{ts}\nfuzz-nonce\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    let signature = f.signer.sign_base64(&message);
    let h = SignedHeaders {
        serial: &f.serial,
        signature: &signature,
        timestamp: &ts,
        nonce: "fuzz-nonce",
    };
    notify::open(&f.keys, &f.apiv3, &h, body, f.now)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 3 {
        0 => {
            let mut parts = rest.splitn(5, |&b| b == b'\n');
            let mut field =
                || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let (serial, signature, timestamp, nonce) = (field(), field(), field(), field());
            let body = parts.next().unwrap_or_default();
            let h = SignedHeaders {
                serial: &serial,
                signature: &signature,
                timestamp: &timestamp,
                nonce: &nonce,
            };
            let _ = notify::open(&f.keys, &f.apiv3, &h, body, f.now);
        }
        1 => {
            if let Err(NotifyError::Verify(e)) = signed_open(rest) {
                // Only an oversized body is refused before the signature; a verify error here
                // means a correctly signed body was refused as unsigned.
                panic!("a body signed with the platform key was refused: {e:?}");
            }
        }
        _ => {
            let (event_type, plain) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (
                    String::from_utf8_lossy(&rest[..i]).into_owned(),
                    &rest[i + 1..],
                ),
                None => ("TRANSACTION.SUCCESS".to_owned(), rest),
            };
            let body = serde_json::json!({
                "id": "EV-fuzz", "create_time": "2025-12-02T16:00:05+08:00",
                "resource_type": "encrypt-resource", "event_type": event_type, "summary": "fuzz",
                "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                             "ciphertext": aead_encrypt(&f.apiv3, "fuzzfuzzfuzz", "transaction", plain),
                             "associated_data": "transaction", "nonce": "fuzzfuzzfuzz"}
            })
            .to_string();
            match signed_open(body.as_bytes()) {
                Ok(n) => match n.event {
                    PayEvent::Transaction(t) => {
                        let again: Transaction =
                            serde_json::from_value(serde_json::to_value(&t).expect("serialises"))
                                .expect("what mpgate serialises parses");
                        assert_eq!(again, t);
                    }
                    PayEvent::Refund { refund, .. } => {
                        let again: Refund = serde_json::from_value(
                            serde_json::to_value(&refund).expect("serialises"),
                        )
                        .expect("what mpgate serialises parses");
                        assert_eq!(again, refund);
                    }
                    PayEvent::Other => {}
                },
                Err(NotifyError::Malformed(_)) if body.len() > notify::MAX_BODY_BYTES => {}
                Err(NotifyError::Malformed(why)) => {
                    assert!(
                        why.starts_with("the decrypted"),
                        "the envelope itself was refused: {why}"
                    );
                }
                Err(e) => panic!("a documented, signed envelope was refused: {e:?}"),
            }
        }
    }
});
