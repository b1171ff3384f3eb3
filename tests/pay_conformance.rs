//! WeChat Pay's cryptography and notifications against `../shared/conformance/pay` (or
//! `$MPGATE_CONFORMANCE_DIR/pay`): every vector in vectors.json, read at run time, with the test
//! keys there. Missing data skips the tests locally but fails on CI.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use mpgate::pay::crypto::{
    aead_decrypt, aead_encrypt, ApiV3Key, Authorization, MerchantKey, PlatformKeys, RequestSigner,
    SignedHeaders, VerifyError,
};
use mpgate::pay::notify::{self, NotifyError, PayEvent, RefundKind, TIMESTAMP_WINDOW_SECS};
use proptest::prelude::*;
use serde_json::Value;

/// The pay conformance dir, or `None` (after saying why) when it is absent outside CI.
fn pay_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MPGATE_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d).join("pay"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/pay"),
    };
    if dir.join("vectors.json").is_file() {
        return Some(dir);
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !on_ci,
        "pay conformance dir not found at {} (CI=true: this must not be skipped)",
        dir.display()
    );
    eprintln!(
        "skipping: pay conformance dir not found at {} (set MPGATE_CONFORMANCE_DIR)",
        dir.display()
    );
    None
}

/// vectors.json and the test keys.
struct Pay {
    v: Value,
    dir: PathBuf,
}

impl Pay {
    fn load() -> Option<Pay> {
        let dir = pay_dir()?;
        let text = fs::read_to_string(dir.join("vectors.json")).expect("vectors.json is readable");
        let v = serde_json::from_str(&text).expect("vectors.json is JSON");
        Some(Pay { v, dir })
    }

    fn pem(&self, file: &str) -> String {
        fs::read_to_string(self.dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn setting(&self, name: &str) -> &str {
        s(&self.v["settings"], name)
    }

    fn now(&self) -> i64 {
        self.v["settings"]["now"]
            .as_i64()
            .expect("settings.now is a number")
    }

    fn merchant_key(&self) -> MerchantKey {
        MerchantKey::from_pkcs8_pem(&self.pem("merchant_private_key.pem"))
            .expect("the merchant test key loads")
    }

    fn signer(&self) -> RequestSigner {
        RequestSigner::new(
            self.setting("mchid"),
            self.setting("merchant_cert_serial"),
            self.merchant_key(),
        )
    }

    /// WeChat Pay's side: its private key signs notifications.
    fn platform_signer(&self) -> MerchantKey {
        MerchantKey::from_pkcs8_pem(&self.pem("platform_private_key.pem"))
            .expect("the platform test key loads")
    }

    /// mpgate's side: the platform public key under its id.
    fn platform_keys(&self) -> PlatformKeys {
        let mut keys = PlatformKeys::default();
        keys.add_public_key_pem(
            self.setting("platform_public_key_id"),
            &self.pem("platform_public_key.pem"),
        )
        .expect("the platform public key loads");
        keys
    }

    fn apiv3(&self) -> ApiV3Key {
        ApiV3Key::new(self.setting("apiv3_key")).expect("the test APIv3 key is 32 characters")
    }

    fn notifications(&self) -> &Vec<Value> {
        self.v["notifications"]
            .as_array()
            .expect("notifications is a list")
    }
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: field {field} is not a string", v["id"]))
}

fn headers(n: &Value) -> SignedHeaders<'_> {
    let h = &n["headers"];
    SignedHeaders {
        serial: s(h, "Wechatpay-Serial"),
        signature: s(h, "Wechatpay-Signature"),
        timestamp: s(h, "Wechatpay-Timestamp"),
        nonce: s(h, "Wechatpay-Nonce"),
    }
}

/// The decrypted resource's fields mpgate does not model (kept out of its types on purpose:
/// nothing reads them). Every other field must round-trip exactly.
const UNMODELLED: &[&str] = &["bank_type", "user_received_account"];

/// `typed` (what mpgate parsed, serialised back) equals `expected` field by field, except the
/// fields listed in [`UNMODELLED`], which must be absent from `typed`.
fn assert_same_fields(id: &str, typed: &Value, expected: &Value) {
    let typed = typed.as_object().expect("an object");
    let expected = expected.as_object().expect("decrypted is an object");
    for (k, want) in expected {
        match typed.get(k) {
            Some(got) => assert_eq!(got, want, "{id}: field {k}"),
            None => assert!(UNMODELLED.contains(&k.as_str()), "{id}: field {k} was lost"),
        }
    }
    for k in typed.keys() {
        assert!(
            expected.contains_key(k),
            "{id}: field {k} appeared from nowhere"
        );
    }
}

#[test]
fn rsa_sign_known_answer() {
    let Some(pay) = Pay::load() else { return };
    let v = &pay.v["rsa_sign_known_answer"];
    let key = MerchantKey::from_pkcs8_pem(&pay.pem(s(v, "key"))).expect("key loads");
    assert_eq!(
        key.sign_base64(s(v, "message").as_bytes()),
        s(v, "signature")
    );
}

#[test]
fn aead_known_answer() {
    let Some(pay) = Pay::load() else { return };
    let v = &pay.v["aead_known_answer"];
    let key = ApiV3Key::new(s(v, "key")).expect("32-character key");
    let (nonce, aad) = (s(v, "nonce"), s(v, "associated_data"));
    assert_eq!(
        aead_decrypt(&key, nonce, aad, s(v, "ciphertext")).as_deref(),
        Ok(s(v, "plaintext").as_bytes())
    );
    assert_eq!(
        aead_encrypt(&key, nonce, aad, s(v, "plaintext").as_bytes()),
        s(v, "ciphertext")
    );
}

/// mpgate does not use `wx.config` (JSAPI pay needs no JS-SDK signature): this pins the
/// vector's published answer so the data set is checked whole, with the `sha1` crate mpgate
/// already uses for callback signatures.
#[test]
fn jssdk_known_answer() {
    use sha1::{Digest, Sha1};
    let Some(pay) = Pay::load() else { return };
    let v = &pay.v["jssdk_known_answer"];
    assert_eq!(
        hex::encode(Sha1::digest(s(v, "string1").as_bytes())),
        s(v, "signature")
    );
}

#[test]
fn request_signing_builds_the_authorization_header_byte_for_byte() {
    let Some(pay) = Pay::load() else { return };
    let signer = pay.signer();
    assert_eq!(signer.mchid(), pay.setting("mchid"));
    let mut merchant_public = PlatformKeys::default();
    merchant_public
        .add_public_key_pem(
            pay.setting("merchant_cert_serial"),
            &pay.pem("merchant_public_key.pem"),
        )
        .expect("the merchant public key loads");
    let vs = pay.v["request_signing"].as_array().expect("a list");
    assert_eq!(vs.len(), 2, "the JSAPI order and the order query");
    for v in vs {
        let id = s(v, "id");
        let (method, url, body) = (s(v, "method"), s(v, "url"), s(v, "body"));
        let (ts, nonce) = (s(v, "timestamp"), s(v, "nonce_str"));
        // The message the vector signs is the documented construction of its parts.
        assert_eq!(
            format!("{method}\n{url}\n{ts}\n{nonce}\n{body}\n"),
            s(v, "message"),
            "{id}"
        );
        let header = signer.authorization(method, url, ts.parse().expect("a number"), nonce, body);
        // PAY.md's template with the vector's signature; an entry that spells the header out
        // must agree with it too.
        let documented = format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{ts}\",serial_no=\"{}\",signature=\"{}\"",
            pay.setting("mchid"),
            pay.setting("merchant_cert_serial"),
            s(v, "signature")
        );
        if let Some(spelled) = v["authorization"].as_str() {
            assert_eq!(
                spelled, documented,
                "{id}: the vector disagrees with PAY.md"
            );
        }
        assert_eq!(header, documented, "{id}");

        // A fake of the platform checks it with the merchant public key.
        let auth = Authorization::parse(&header).expect("our own header parses");
        assert_eq!(auth.signature, s(v, "signature"), "{id}");
        assert_eq!(auth.mchid, pay.setting("mchid"), "{id}");
        assert_eq!(auth.serial_no, pay.setting("merchant_cert_serial"), "{id}");
        assert_eq!(
            merchant_public.verify_request(&auth, method, url, body.as_bytes()),
            Ok(()),
            "{id}"
        );
        assert_eq!(
            merchant_public.verify_request(&auth, method, url, b"{\"tampered\":1}"),
            Err(VerifyError::BadSignature),
            "{id}"
        );
        assert_eq!(
            merchant_public.verify_request(&auth, "DELETE", url, body.as_bytes()),
            Err(VerifyError::BadSignature),
            "{id}"
        );
    }
}

#[test]
fn authorization_headers_that_are_not_the_scheme_do_not_parse() {
    for bad in [
        "",
        "Bearer x",
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1\"",
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",nonce_str=\"n\",timestamp=\"1\",serial_no=\"s\",signature=sig",
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",mchid=\"1\",nonce_str=\"n\",timestamp=\"1\",serial_no=\"s\",signature=\"x\"",
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",nonce_str=\"n\",timestamp=\"1\",serial_no=\"s\",signature=\"x\",extra=\"1\"",
    ] {
        assert_eq!(Authorization::parse(bad), None, "{bad}");
    }
}

#[test]
fn jsapi_pay_sign() {
    let Some(pay) = Pay::load() else { return };
    let v = &pay.v["jsapi_pay_sign"];
    let (app_id, ts, nonce, package) = (
        s(v, "appId"),
        s(v, "timeStamp"),
        s(v, "nonceStr"),
        s(v, "package"),
    );
    assert_eq!(s(v, "signType"), "RSA");
    assert_eq!(
        format!("{app_id}\n{ts}\n{nonce}\n{package}\n"),
        s(v, "message")
    );
    assert_eq!(
        pay.signer().pay_sign(app_id, ts, nonce, package),
        s(v, "paySign")
    );
}

#[test]
fn every_notification_has_its_expected_outcome() {
    let Some(pay) = Pay::load() else { return };
    let (keys, apiv3, now) = (pay.platform_keys(), pay.apiv3(), pay.now());
    assert_eq!(
        pay.v["settings"]["timestamp_window_secs"].as_i64(),
        Some(TIMESTAMP_WINDOW_SECS)
    );
    let ns = pay.notifications();
    assert!(
        ns.len() >= 6,
        "vectors.json has the accept and every reject case"
    );
    for n in ns {
        let id = s(n, "id");
        let body = s(n, "body").as_bytes();
        let got = notify::open(&keys, &apiv3, &headers(n), body, now);
        match s(n, "expect") {
            "accept" => {
                let got = got.unwrap_or_else(|e| panic!("{id}: refused: {e}"));
                let envelope: Value = serde_json::from_slice(body).expect("JSON");
                assert_eq!(got.id, s(&envelope, "id"), "{id}");
                assert_eq!(got.create_time, s(&envelope, "create_time"), "{id}");
                assert_eq!(got.event_type, s(&envelope, "event_type"), "{id}");
                assert_eq!(got.summary, s(&envelope, "summary"), "{id}");
                let typed = match (&got.event, got.event_type.as_str()) {
                    (PayEvent::Transaction(t), "TRANSACTION.SUCCESS") => {
                        serde_json::to_value(t).expect("serialises")
                    }
                    (
                        PayEvent::Refund {
                            kind: RefundKind::Success,
                            refund,
                        },
                        "REFUND.SUCCESS",
                    ) => serde_json::to_value(refund).expect("serialises"),
                    (other, event_type) => panic!("{id}: {event_type} opened as {other:?}"),
                };
                assert_same_fields(id, &typed, &n["decrypted"]);
            }
            "reject_signature" => assert!(
                matches!(got, Err(NotifyError::Verify(VerifyError::BadSignature))),
                "{id}: {got:?}"
            ),
            "reject_serial" => assert!(
                matches!(got, Err(NotifyError::Verify(VerifyError::UnknownSerial))),
                "{id}: {got:?}"
            ),
            "reject_timestamp" => assert!(
                matches!(got, Err(NotifyError::Verify(VerifyError::StaleTimestamp))),
                "{id}: {got:?}"
            ),
            "reject_decrypt" => {
                assert!(matches!(got, Err(NotifyError::Decrypt)), "{id}: {got:?}");
            }
            other => panic!("{id}: unknown expectation {other}"),
        }
    }
}

/// The accepted transaction notification's body, re-signed by the platform key at `timestamp`.
fn resigned(pay: &Pay, timestamp: i64, nonce: &str) -> (String, String) {
    let n = pay
        .notifications()
        .iter()
        .find(|n| s(n, "expect") == "accept")
        .expect("an accepted notification");
    let body = s(n, "body");
    let sig = pay
        .platform_signer()
        .sign_base64(format!("{timestamp}\n{nonce}\n{body}\n").as_bytes());
    (body.to_owned(), sig)
}

#[test]
fn a_timestamp_300_s_away_is_refused_and_299_s_accepted_on_either_side() {
    let Some(pay) = Pay::load() else { return };
    let (keys, apiv3, now) = (pay.platform_keys(), pay.apiv3(), pay.now());
    let id = pay.setting("platform_public_key_id");
    for (offset, accepted) in [
        (-300, false),
        (-299, true),
        (0, true),
        (299, true),
        (300, false),
    ] {
        let ts = (now + offset).to_string();
        let (body, sig) = resigned(&pay, now + offset, "n0nce");
        let h = SignedHeaders {
            serial: id,
            signature: &sig,
            timestamp: &ts,
            nonce: "n0nce",
        };
        let got = notify::open(&keys, &apiv3, &h, body.as_bytes(), now);
        if accepted {
            assert!(got.is_ok(), "{offset}: {got:?}");
        } else {
            assert!(
                matches!(got, Err(NotifyError::Verify(VerifyError::StaleTimestamp))),
                "{offset}: {got:?}"
            );
        }
    }
}

#[test]
fn a_notification_is_verified_before_it_is_parsed_and_checks_come_in_pay_md_order() {
    let Some(pay) = Pay::load() else { return };
    let (keys, apiv3, now) = (pay.platform_keys(), pay.apiv3(), pay.now());
    let id = pay.setting("platform_public_key_id");
    // Not JSON, but wrongly signed: the signature is what is reported.
    let h = SignedHeaders {
        serial: id,
        signature: "AAAA",
        timestamp: "1764662405",
        nonce: "x",
    };
    assert!(matches!(
        notify::open(&keys, &apiv3, &h, b"not json", now),
        Err(NotifyError::Verify(VerifyError::BadSignature))
    ));
    // Unknown serial beats a stale and non-numeric timestamp.
    let h = SignedHeaders {
        serial: "PUB_KEY_ID_OTHER",
        timestamp: "yesterday",
        ..h
    };
    assert!(matches!(
        notify::open(&keys, &apiv3, &h, b"{}", now),
        Err(NotifyError::Verify(VerifyError::UnknownSerial))
    ));
    let h = SignedHeaders { serial: id, ..h };
    assert!(matches!(
        notify::open(&keys, &apiv3, &h, b"{}", now),
        Err(NotifyError::Verify(VerifyError::BadTimestamp))
    ));
    // Signed but not the documented JSON: malformed, with a short message for the platform.
    let body = b"{\"id\":\"EV-1\"}";
    let sig = pay.platform_signer().sign_base64(
        format!("{now}\nx\n{}\n", std::str::from_utf8(body).expect("utf-8")).as_bytes(),
    );
    let ts = now.to_string();
    let h = SignedHeaders {
        signature: &sig,
        timestamp: &ts,
        ..h
    };
    let err = notify::open(&keys, &apiv3, &h, body, now).expect_err("no resource");
    assert!(matches!(err, NotifyError::Malformed(_)), "{err:?}");
    assert_eq!(
        err.message(),
        "malformed notification: the body is not the documented fields (line 1, column 13)"
    );
}

#[test]
fn an_other_event_type_is_verified_and_decrypted_but_not_acted_on() {
    let Some(pay) = Pay::load() else { return };
    let (keys, apiv3, now) = (pay.platform_keys(), pay.apiv3(), pay.now());
    let resource = aead_encrypt(&apiv3, "abcdefghijkl", "", b"{\"anything\":true}");
    let body = serde_json::json!({
        "id": "EV-9", "create_time": "2025-12-02T16:00:05+08:00", "event_type": "PROFITSHARING.SUCCESS",
        "resource_type": "encrypt-resource", "summary": "分账",
        "resource": {"original_type": "x", "algorithm": "AEAD_AES_256_GCM", "ciphertext": resource,
                     "associated_data": "", "nonce": "abcdefghijkl"}
    })
    .to_string();
    let sig = pay
        .platform_signer()
        .sign_base64(format!("{now}\nn\n{body}\n").as_bytes());
    let ts = now.to_string();
    let h = SignedHeaders {
        serial: pay.setting("platform_public_key_id"),
        signature: &sig,
        timestamp: &ts,
        nonce: "n",
    };
    let got = notify::open(&keys, &apiv3, &h, body.as_bytes(), now).expect("accepted");
    assert_eq!(got.event, PayEvent::Other);
    assert_eq!(got.event_type, "PROFITSHARING.SUCCESS");
    // The same body under another APIv3 key does not decrypt: it is refused, not "Other".
    let other = ApiV3Key::new("ffffffffffffffffffffffffffffffff").expect("key");
    assert!(matches!(
        notify::open(&keys, &other, &h, body.as_bytes(), now),
        Err(NotifyError::Decrypt)
    ));
}

#[test]
fn keys_and_signers_never_print_their_secrets() {
    let Some(pay) = Pay::load() else { return };
    assert_eq!(format!("{:?}", pay.merchant_key()), "MerchantKey(***)");
    let signer = format!("{:?}", pay.signer());
    assert!(signer.contains("MerchantKey(***)"), "{signer}");
    assert_eq!(format!("{:?}", pay.apiv3()), "ApiV3Key(***)");
    let keys = format!("{:?}", pay.platform_keys());
    assert_eq!(
        keys,
        format!(
            "PlatformKeys {{ serials: [\"{}\"] }}",
            pay.setting("platform_public_key_id")
        )
    );
}

#[test]
fn a_public_key_is_not_a_private_key_and_the_error_says_so() {
    let Some(pay) = Pay::load() else { return };
    let err =
        MerchantKey::from_pkcs8_pem(&pay.pem("merchant_public_key.pem")).expect_err("a public key");
    assert!(err.to_string().contains("(found: PUBLIC KEY)"), "{err}");
    let err = PlatformKeys::default()
        .add_public_key_pem("PUB_KEY_ID_1", &pay.pem("platform_private_key.pem"))
        .expect_err("a private key");
    assert!(err.to_string().contains("(found: PRIVATE KEY)"), "{err}");
    let err = PlatformKeys::default()
        .add_certificate_pem(&pay.pem("platform_public_key.pem"))
        .expect_err("a key, not a certificate");
    assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
}

/// Not asserted: the cost per call on this machine, printed with `--nocapture`.
#[test]
fn cost_of_sign_verify_decrypt_and_open() {
    let Some(pay) = Pay::load() else { return };
    let (keys, apiv3, now) = (pay.platform_keys(), pay.apiv3(), pay.now());
    let n = pay
        .notifications()
        .iter()
        .find(|n| s(n, "id") == "transaction-success")
        .expect("the transaction notification");
    let (h, body) = (headers(n), s(n, "body").as_bytes());
    const N: u32 = 1000;
    let time = |what: &str, f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..N {
            f();
        }
        let each = start.elapsed() / N;
        println!(
            "pay cost: {what:<28} {:>8.1} µs/call",
            each.as_secs_f64() * 1e6
        );
    };
    let signer = pay.signer();
    time("sign (Authorization)", &mut || {
        std::hint::black_box(signer.authorization("GET", "/v3/x", now, "n", ""));
    });
    time("verify (PlatformKeys)", &mut || {
        keys.verify(&h, body, now, TIMESTAMP_WINDOW_SECS)
            .expect("verifies");
    });
    let envelope: Value = serde_json::from_slice(body).expect("JSON");
    let r = &envelope["resource"];
    time("decrypt (AES-256-GCM)", &mut || {
        aead_decrypt(
            &apiv3,
            s(r, "nonce"),
            s(r, "associated_data"),
            s(r, "ciphertext"),
        )
        .expect("decrypts");
    });
    time("notify::open", &mut || {
        notify::open(&keys, &apiv3, &h, body, now).expect("opens");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn garbage_keys_pem_and_der_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = MerchantKey::from_pkcs8_pem(&text);
        let mut keys = PlatformKeys::default();
        let _ = keys.add_public_key_pem("PUB_KEY_ID_1", &text);
        let _ = keys.add_certificate_pem(&text);
        // The same bytes as the DER inside a well-formed PEM block of each label.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        for label in ["PRIVATE KEY", "PUBLIC KEY", "CERTIFICATE"] {
            let pem = format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n");
            prop_assert!(MerchantKey::from_pkcs8_pem(&pem).is_err());
            prop_assert!(keys.add_public_key_pem("PUB_KEY_ID_1", &pem).is_err());
            prop_assert!(keys.add_certificate_pem(&pem).is_err());
        }
        prop_assert!(keys.is_empty());
        let key = ApiV3Key::new("0123456789abcdef0123456789abcdef").expect("key");
        prop_assert!(aead_decrypt(&key, "abcdefghijkl", "", &text).is_err());
        prop_assert!(aead_decrypt(&key, &text, &text, &b64).is_err());
    }

    #[test]
    fn random_notifications_are_refused_without_panicking(
        serial in "(PUB_KEY_ID_0119000091912025120200000000000001|[A-Z0-9_]{0,8})",
        signature in "[A-Za-z0-9+/=]{0,400}",
        timestamp in "[0-9-]{0,20}",
        nonce in ".{0,16}",
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let Some(pay) = Pay::load() else { return Ok(()) };
        let h = SignedHeaders { serial: &serial, signature: &signature, timestamp: &timestamp, nonce: &nonce };
        let got = notify::open(&pay.platform_keys(), &pay.apiv3(), &h, &body, pay.now());
        prop_assert!(matches!(got, Err(NotifyError::Verify(_))), "{:?}", got);
    }
}
