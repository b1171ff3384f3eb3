//! The platform's AES envelope (`WXBizMsgCrypt`): the `Encrypt` text of safe/compatible mode.
//!
//! Owns the EncodingAESKey ([`EncodingAesKey`]), the AES-256-CBC cipher ([`Cipher`]) and the
//! plaintext layout `random(16) ‖ msg_len (u32 BE) ‖ msg ‖ receive_id`, padded with PKCS#7 over
//! K = 32 (PROTOCOL.md §4). Error codes follow the official samples (§6).
//!
//! This layer checks structure, not integrity: the caller must verify `msg_signature` before
//! calling [`Cipher::decrypt`]. May depend on std, `aes`, `cbc`, `base64`, `subtle`, `rand` and
//! [`super::types`] only.

use std::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::types::AppId;

/// Length of an EncodingAESKey as configured in the console.
const KEY_CHARS: usize = 43;
/// PKCS#7 block size used by the platform: the AES *key* length, not the AES block.
const PAD_K: usize = 32;
/// `random(16) ‖ msg_len(4)`.
const HEADER_LEN: usize = 20;

/// Decodes the 43-char key. Most real keys carry non-zero trailing bits in their last char, which
/// the default engine rejects.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The account's 32-byte AES key, parsed from the console's 43-char EncodingAESKey. Never printed.
#[derive(Clone)]
pub struct EncodingAesKey {
    bytes: [u8; 32],
}

impl fmt::Debug for EncodingAesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncodingAesKey(***)")
    }
}

/// Why an EncodingAESKey is unusable (`IllegalAesKey`, -40004). Never echoes the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("EncodingAESKey must be 43 characters, found {found}")]
    Length { found: usize },
    #[error("EncodingAESKey may only contain A-Z, a-z, 0-9; character {position} (1-based) is not one of them")]
    Alphabet { position: usize },
    #[error("EncodingAESKey does not decode to 32 bytes")]
    Decode,
}

impl KeyError {
    /// The `WXBizMsgCrypt` error code (`IllegalAesKey`).
    pub fn code(&self) -> i32 {
        -40004
    }
}

impl EncodingAesKey {
    /// Parses the console's EncodingAESKey: exactly 43 chars of `[A-Za-z0-9]`, base64 of 32 bytes.
    pub fn parse(s: &str) -> Result<EncodingAesKey, KeyError> {
        let found = s.chars().count();
        if found != KEY_CHARS {
            return Err(KeyError::Length { found });
        }
        if let Some(i) = s.chars().position(|c| !c.is_ascii_alphanumeric()) {
            return Err(KeyError::Alphabet { position: i + 1 });
        }
        let mut padded = String::with_capacity(KEY_CHARS + 1);
        padded.push_str(s);
        padded.push('=');
        let decoded = KEY_ENGINE
            .decode(padded.as_bytes())
            .map_err(|_| KeyError::Decode)?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| KeyError::Decode)?;
        Ok(EncodingAesKey { bytes })
    }
}

impl std::str::FromStr for EncodingAesKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EncodingAesKey::parse(s)
    }
}

/// Why an `Encrypt` text did not open. Messages are short and never contain plaintext or key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("Encrypt is not valid base64")]
    Base64,
    #[error("AES decryption failed: ciphertext length is not a non-zero multiple of 32")]
    Decrypt,
    #[error("decrypted buffer is malformed: {0}")]
    IllegalBuffer(&'static str),
    #[error("receive id in the payload does not match the configured AppID")]
    AppIdMismatch,
}

impl CryptoError {
    /// The `WXBizMsgCrypt` error code of this failure.
    pub fn code(&self) -> i32 {
        match self {
            CryptoError::Base64 => -40010,
            CryptoError::Decrypt => -40007,
            CryptoError::IllegalBuffer(_) => -40008,
            CryptoError::AppIdMismatch => -40005,
        }
    }
}

/// AES-256-CBC with IV = key[0..16], key schedule computed once (this is on every request's path).
#[derive(Clone)]
pub struct Cipher {
    aes: Aes256,
    iv: [u8; 16],
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    pub fn new(key: &EncodingAesKey) -> Cipher {
        let aes = Aes256::new(&key.bytes.into());
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key.bytes[..16]);
        Cipher { aes, iv }
    }

    /// Opens an `Encrypt` text and checks that it was sealed for `app_id`; returns the message.
    pub fn decrypt(&self, encrypted_b64: &str, app_id: &AppId) -> Result<String, CryptoError> {
        let trimmed = encrypted_b64.trim_matches(|c: char| c.is_ascii_whitespace());
        // `decode_vec` into a buffer of ours rather than `decode`, whose zeroed buffer comes
        // from `calloc`: code no other step of a push runs (docs/performance-history.md, "The code a push
        // runs").
        let mut buf = Vec::with_capacity(base64::decoded_len_estimate(trimmed.len()));
        STANDARD
            .decode_vec(trimmed.as_bytes(), &mut buf)
            .map_err(|_| CryptoError::Base64)?;
        if buf.is_empty() || buf.len() % PAD_K != 0 {
            return Err(CryptoError::Decrypt);
        }
        let dec = cbc::Decryptor::<Aes256>::inner_iv_init(self.aes.clone(), &self.iv.into());
        let plain = dec
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::Decrypt)?;

        let content = unpad(plain)?;
        if content.len() < HEADER_LEN {
            return Err(CryptoError::IllegalBuffer("shorter than its header"));
        }
        let mut len_be = [0u8; 4];
        len_be.copy_from_slice(&content[16..HEADER_LEN]);
        let msg_len = usize::try_from(u32::from_be_bytes(len_be))
            .map_err(|_| CryptoError::IllegalBuffer("message length out of range"))?;
        let msg_end = HEADER_LEN
            .checked_add(msg_len)
            .filter(|&end| end <= content.len())
            .ok_or(CryptoError::IllegalBuffer(
                "message length exceeds the buffer",
            ))?;
        let receive_id = &content[msg_end..];
        if !bool::from(receive_id.ct_eq(app_id.as_str().as_bytes())) {
            return Err(CryptoError::AppIdMismatch);
        }
        // Hand the decrypted buffer itself back as the message rather than copying it out: cut
        // the receive id and padding, then the 20-byte header.
        buf.truncate(msg_end);
        buf.drain(..HEADER_LEN);
        String::from_utf8(buf).map_err(|_| CryptoError::IllegalBuffer("message is not UTF-8"))
    }

    /// Seals `msg` for `app_id` with 16 fresh random bytes.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer (the wire format's length field is 32 bits).
    pub fn encrypt(&self, msg: &str, app_id: &AppId) -> String {
        let mut out = String::new();
        self.encrypt_into(msg, app_id, &mut out);
        out
    }

    /// [`Cipher::encrypt`], appending the `Encrypt` text to `out` (the reply envelope) instead of
    /// allocating a string of its own.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer (the wire format's length field is 32 bits).
    pub fn encrypt_into(&self, msg: &str, app_id: &AppId, out: &mut String) {
        let random: [u8; 16] = rand::random();
        self.encrypt_with_random_into(msg, app_id, &random, out);
    }

    /// Seals `msg` with a caller-chosen random prefix: deterministic, for published vectors.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer (the wire format's length field is 32 bits).
    pub fn encrypt_with_random(&self, msg: &str, app_id: &AppId, random: &[u8; 16]) -> String {
        let mut out = String::new();
        self.encrypt_with_random_into(msg, app_id, random, &mut out);
        out
    }

    /// [`Cipher::encrypt_with_random`], appending to `out`.
    ///
    /// # Panics
    /// If `msg` is 4 GiB or longer (the wire format's length field is 32 bits).
    pub fn encrypt_with_random_into(
        &self,
        msg: &str,
        app_id: &AppId,
        random: &[u8; 16],
        out: &mut String,
    ) {
        let msg_len = u32::try_from(msg.len()).expect("reply messages are far below 4 GiB");
        let body_len = HEADER_LEN + msg.len() + app_id.as_str().len();
        let pad = PAD_K - body_len % PAD_K;
        let mut buf = Vec::with_capacity(body_len + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(app_id.as_str().as_bytes());
        // `pad` is 1..=32, so the cast cannot truncate.
        buf.resize(body_len + pad, pad as u8);
        let total = buf.len();
        let enc = cbc::Encryptor::<Aes256>::inner_iv_init(self.aes.clone(), &self.iv.into());
        let sealed = enc
            .encrypt_padded_mut::<NoPadding>(&mut buf, total)
            .expect("buffer length is a multiple of 32, hence of the AES block");
        STANDARD.encode_string(sealed, out);
    }
}

/// Strips PKCS#7 (K = 32) padding, checking every pad byte.
fn unpad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let p = *plain
        .last()
        .ok_or(CryptoError::IllegalBuffer("empty plaintext"))?;
    let p = usize::from(p);
    if p == 0 || p > PAD_K || p > plain.len() {
        return Err(CryptoError::IllegalBuffer("padding out of range"));
    }
    let (content, pad) = plain.split_at(plain.len() - p);
    if pad.iter().any(|&b| usize::from(b) != p) {
        return Err(CryptoError::IllegalBuffer("inconsistent padding"));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn cipher() -> Cipher {
        Cipher::new(&EncodingAesKey::parse(SAMPLE_KEY).expect("sample key parses"))
    }

    /// Decrypts with raw AES so tests can inspect the padded plaintext.
    fn raw_plain(c: &Cipher, b64: &str) -> Vec<u8> {
        let mut buf = STANDARD.decode(b64).expect("own output is base64");
        let dec = cbc::Decryptor::<Aes256>::inner_iv_init(c.aes.clone(), &c.iv.into());
        dec.decrypt_padded_mut::<NoPadding>(&mut buf)
            .expect("block multiple")
            .to_vec()
    }

    /// Seals an arbitrary plaintext buffer (already laid out and padded) for negative tests.
    fn seal_raw(c: &Cipher, mut plain: Vec<u8>) -> String {
        let n = plain.len();
        let enc = cbc::Encryptor::<Aes256>::inner_iv_init(c.aes.clone(), &c.iv.into());
        STANDARD.encode(
            enc.encrypt_padded_mut::<NoPadding>(&mut plain, n)
                .expect("block multiple"),
        )
    }

    #[test]
    fn non_canonical_key_parses() {
        // The official sample key has non-zero trailing bits.
        assert!(EncodingAesKey::parse(SAMPLE_KEY).is_ok());
        let zero = EncodingAesKey::parse(&"A".repeat(43)).expect("all-A key");
        assert_eq!(zero.bytes, [0u8; 32]);
    }

    #[test]
    fn key_errors_say_what_is_wrong_without_echoing_the_key() {
        let short = &SAMPLE_KEY[..42];
        let e = EncodingAesKey::parse(short).expect_err("42 chars");
        assert_eq!(e, KeyError::Length { found: 42 });
        assert_eq!(e.code(), -40004);
        assert!(!e.to_string().contains(short));

        let mut bad = SAMPLE_KEY.to_owned();
        bad.replace_range(10..11, "+");
        let e = EncodingAesKey::parse(&bad).expect_err("plus sign");
        assert_eq!(e, KeyError::Alphabet { position: 11 });
        assert!(!e.to_string().contains(&bad));

        // 43 chars of which one is multi-byte: counted as chars, rejected by alphabet.
        let mut uni = SAMPLE_KEY[..42].to_owned();
        uni.push('é');
        assert_eq!(
            EncodingAesKey::parse(&uni).err(),
            Some(KeyError::Alphabet { position: 43 })
        );
        assert_eq!(
            EncodingAesKey::parse("").err(),
            Some(KeyError::Length { found: 0 })
        );
    }

    #[test]
    fn debug_hides_key() {
        let k = EncodingAesKey::parse(SAMPLE_KEY).expect("parses");
        assert_eq!(format!("{k:?}"), "EncodingAesKey(***)");
        assert_eq!(format!("{:?}", Cipher::new(&k)), "Cipher(***)");
    }

    #[test]
    fn round_trip() {
        let c = cipher();
        let app = AppId::new("wx2c2769f8efd9abc2");
        for msg in ["", "a", "你好 🎉", "\u{1}\u{1f}", &"x".repeat(5000)] {
            let enc = c.encrypt(msg, &app);
            assert_eq!(c.decrypt(&enc, &app).as_deref(), Ok(msg));
        }
    }

    #[test]
    fn aligned_message_gets_a_full_32_byte_pad() {
        let c = cipher();
        let app = AppId::new("wx2c2769f8efd9abc2"); // 18 bytes
                                                    // 20 + 26 + 18 = 64: aligned.
        let msg = "a".repeat(26);
        let enc = c.encrypt_with_random(&msg, &app, &[7u8; 16]);
        let plain = raw_plain(&c, &enc);
        assert_eq!(plain.len(), 96);
        assert!(plain[64..].iter().all(|&b| b == 32));
        // One byte more: pad of 31.
        let enc = c.encrypt_with_random(&"a".repeat(27), &app, &[7u8; 16]);
        let plain = raw_plain(&c, &enc);
        assert_eq!(plain.len(), 96);
        assert!(plain[65..].iter().all(|&b| b == 31));
        // One byte less: pad of 1.
        let enc = c.encrypt_with_random(&"a".repeat(25), &app, &[7u8; 16]);
        let plain = raw_plain(&c, &enc);
        assert_eq!(plain.len(), 64);
        assert_eq!(plain[63], 1);
    }

    #[test]
    fn msg_len_counts_utf8_bytes() {
        let c = cipher();
        let app = AppId::new("wxb11529c136998cb6");
        let enc = c.encrypt_with_random("我是中文abcd123", &app, b"aaaabbbbccccdddd");
        // Published Java sample vector.
        assert_eq!(
            enc,
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
        let plain = raw_plain(&c, &enc);
        assert_eq!(&plain[16..20], &19u32.to_be_bytes());
    }

    #[test]
    fn encrypt_into_appends_exactly_what_encrypt_returns() {
        let c = cipher();
        let app = AppId::new("wxb11529c136998cb6");
        let mut out = String::from("<prefix>");
        c.encrypt_with_random_into("我是中文abcd123", &app, b"aaaabbbbccccdddd", &mut out);
        assert_eq!(
            out,
            format!(
                "<prefix>{}",
                c.encrypt_with_random("我是中文abcd123", &app, b"aaaabbbbccccdddd")
            )
        );
        let mut out = String::from("x");
        c.encrypt_into("hi", &app, &mut out);
        assert_eq!(
            out.strip_prefix('x').map(|e| c.decrypt(e, &app)),
            Some(Ok("hi".to_owned()))
        );
    }

    #[test]
    fn wrong_app_id_is_rejected() {
        let c = cipher();
        let enc = c.encrypt("hi", &AppId::new("wxaaaa"));
        assert_eq!(
            c.decrypt(&enc, &AppId::new("wxaaab")),
            Err(CryptoError::AppIdMismatch)
        );
        assert_eq!(
            c.decrypt(&enc, &AppId::new("wxaaaa0")),
            Err(CryptoError::AppIdMismatch)
        );
        assert_eq!(CryptoError::AppIdMismatch.code(), -40005);
    }

    #[test]
    fn base64_and_length_errors() {
        let c = cipher();
        let app = AppId::new("wx");
        assert_eq!(c.decrypt("!!!", &app), Err(CryptoError::Base64));
        assert_eq!(c.decrypt("", &app), Err(CryptoError::Decrypt));
        assert_eq!(c.decrypt("YWJj", &app), Err(CryptoError::Decrypt));
        // 16 bytes: an AES block but not a K=32 block.
        assert_eq!(
            c.decrypt(&STANDARD.encode([0u8; 16]), &app),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(CryptoError::Base64.code(), -40010);
        assert_eq!(CryptoError::Decrypt.code(), -40007);
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        let c = cipher();
        let app = AppId::new("wx1");
        let enc = c.encrypt("hello", &app);
        assert_eq!(
            c.decrypt(&format!("\n  {enc}\r\n"), &app).as_deref(),
            Ok("hello")
        );
    }

    #[test]
    fn bad_padding_is_illegal_buffer() {
        let c = cipher();
        let app = AppId::new("wx1");
        let mut body = vec![b'r'; 16];
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(b"hi");
        body.extend_from_slice(b"wx1");
        // 25 bytes; pad 7.
        let good = {
            let mut b = body.clone();
            b.resize(32, 7);
            b
        };
        assert_eq!(c.decrypt(&seal_raw(&c, good), &app).as_deref(), Ok("hi"));

        for (last, fill) in [(0u8, 0u8), (33, 33), (7, 6)] {
            let mut b = body.clone();
            b.resize(31, fill);
            b.push(last);
            let e = c.decrypt(&seal_raw(&c, b), &app).expect_err("bad pad");
            assert!(matches!(e, CryptoError::IllegalBuffer(_)), "{e:?}");
            assert_eq!(e.code(), -40008);
        }
    }

    #[test]
    fn length_beyond_buffer_and_bad_utf8_are_illegal_buffer() {
        let c = cipher();
        let app = AppId::new("wx1");
        let mut b = vec![b'r'; 16];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.resize(32, 12);
        let e = c.decrypt(&seal_raw(&c, b), &app).expect_err("huge len");
        assert!(matches!(e, CryptoError::IllegalBuffer(_)));

        // Whole 32-byte pad leaves nothing: shorter than the header.
        let b = vec![32u8; 32];
        let e = c.decrypt(&seal_raw(&c, b), &app).expect_err("empty");
        assert!(matches!(e, CryptoError::IllegalBuffer(_)));

        let mut b = vec![b'r'; 16];
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&[0xff, 0xfe]);
        b.extend_from_slice(b"wx1");
        b.resize(32, 7);
        let e = c.decrypt(&seal_raw(&c, b), &app).expect_err("bad utf8");
        assert_eq!(e, CryptoError::IllegalBuffer("message is not UTF-8"));
    }

    #[test]
    fn error_messages_are_safe() {
        for e in [
            CryptoError::Base64,
            CryptoError::Decrypt,
            CryptoError::IllegalBuffer("padding out of range"),
            CryptoError::AppIdMismatch,
        ] {
            assert!(e.to_string().len() < 100);
        }
    }
}
