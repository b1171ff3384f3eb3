//! Decrypt + parse of sealed pushes, with the account's fixed test key and AppID (the
//! platform's published example, so the conformance vectors sealed with it open). The first
//! byte picks what the rest is:
//!
//! - 0: a whole safe-mode POST body (`<xml><Encrypt>…`): envelope → decrypt → parse;
//! - 1: the `Encrypt` text alone (base64 / ciphertext);
//! - 2: a message, sealed with mpgate's own sealing code, which must open to exactly itself;
//! - 3: a raw plaintext of any structure (`random ‖ len ‖ msg ‖ app_id ‖ padding`, with wrong
//!   lengths, padding or app ids), encrypted with the raw cipher, which mpgate never produces.
//!
//! Whatever opens must be exactly what mpgate's sealing code makes of the message and its random
//! prefix: no second plaintext shape is accepted (lengths, padding and AppID all checked), and
//! nothing panics.
#![no_main]

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::{alphabet, Engine};
use libfuzzer_sys::fuzz_target;
use mpgate::wechat::crypto::{Cipher, CryptoError, EncodingAesKey};
use mpgate::wechat::message;
use mpgate::wechat::types::AppId;

/// The EncodingAESKey and AppID of the platform's published decrypt example
/// (`mp-official-python-decrypt` in `../shared/conformance/vectors.json`).
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wx2c2769f8efd9abc2";

struct Fixture {
    cipher: Cipher,
    app_id: AppId,
    other_app_id: AppId,
    key: [u8; 32],
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient
            .decode(format!("{KEY}="))
            .expect("the test key is base64");
        Fixture {
            cipher: Cipher::new(&EncodingAesKey::parse(KEY).expect("the test key parses")),
            app_id: AppId::parse(APP_ID).expect("the test AppID parses"),
            other_app_id: AppId::parse("wx0000000000000000").expect("parses"),
            key: bytes.try_into().expect("a 43-character key is 32 bytes"),
        }
    })
}

/// AES-256-CBC with IV = key[..16], no padding: the wire cipher without mpgate's framing.
fn raw_seal(plain: &mut [u8]) -> String {
    let f = fixture();
    let len = plain.len();
    let enc = cbc::Encryptor::<aes::Aes256>::new(&f.key.into(), f.key[..16].into());
    let sealed = enc
        .encrypt_padded_mut::<NoPadding>(plain, len)
        .expect("whole blocks");
    STANDARD.encode(sealed)
}

fn raw_open(encrypted: &str) -> Option<Vec<u8>> {
    let f = fixture();
    let mut buf = STANDARD
        .decode(encrypted.trim_matches(|c: char| c.is_ascii_whitespace()))
        .ok()?;
    let dec = cbc::Decryptor::<aes::Aes256>::new(&f.key.into(), f.key[..16].into());
    Some(dec.decrypt_padded_mut::<NoPadding>(&mut buf).ok()?.to_vec())
}

/// Opens `encrypted`; whatever opens is checked against a fresh seal of the same message with
/// the same random prefix, then parsed.
fn open(encrypted: &str) {
    let f = fixture();
    let Ok(msg) = f.cipher.decrypt(encrypted, &f.app_id) else {
        return;
    };
    let plain = raw_open(encrypted).expect("what decrypts is base64 of whole blocks");
    let random: [u8; 16] = plain[..16].try_into().expect("opened, so longer than 16");
    assert_eq!(
        f.cipher.encrypt_with_random(&msg, &f.app_id, &random),
        encrypted.trim_matches(|c: char| c.is_ascii_whitespace()),
        "opened a plaintext that is not the canonical seal of its message: {plain:?}"
    );
    assert!(
        matches!(
            f.cipher.decrypt(encrypted, &f.other_app_id),
            Err(CryptoError::AppIdMismatch)
        ),
        "sealed for one AppID, opened for another"
    );
    if let Ok(m) = message::parse(&msg) {
        let _ = m.dedupe_key();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 4 {
        0 => {
            let Ok(body) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(message::Envelope {
                encrypt: Some(enc), ..
            }) = message::parse_envelope(body)
            {
                open(&enc);
            }
        }
        1 => open(&String::from_utf8_lossy(rest)),
        2 => {
            let Ok(msg) = std::str::from_utf8(rest) else {
                return;
            };
            let sealed = f.cipher.encrypt(msg, &f.app_id);
            assert_eq!(
                f.cipher.decrypt(&sealed, &f.app_id).as_deref(),
                Ok(msg),
                "open(seal(x)) != x"
            );
            open(&sealed);
        }
        _ => {
            // Whole 32-byte blocks (the envelope's padding unit), so the framing is what is
            // judged: a short input is filled up with well-formed padding (n bytes of n) to get
            // past the padding check; a whole-block input keeps whatever padding it has.
            let mut plain = rest.to_vec();
            let whole = rest.len().div_ceil(32).max(1) * 32;
            let fill = whole - rest.len();
            plain.resize(whole, u8::try_from(fill).unwrap_or(0));
            open(&raw_seal(&mut plain));
        }
    }
});
