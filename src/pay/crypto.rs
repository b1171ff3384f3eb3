//! WeChat Pay APIv3 cryptography, pure: the merchant's request signatures (`Authorization`,
//! JSAPI `paySign`), verification of WeChat Pay's signed notifications and answers by
//! `Wechatpay-Serial`, and the APIv3 key's AES-256-GCM (see `../shared/PAY.md`).
//!
//! Owns key parsing (PEM, PKCS#8, SPKI, X.509 certificates: a small DER walk, no certificate
//! validation: the operator configures the keys it trusts). Uses `ring` for RSA PKCS#1 v1.5
//! SHA-256 and AES-256-GCM, not the `rsa` crate (RUSTSEC-2023-0071). No I/O except
//! [`PlatformKeys::load_certificates_dir`], no clock (callers pass `now`). Depends on nothing
//! else in mpgate.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::Rng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

/// Why a key, certificate or APIv3 key was refused; worded for the operator who configured it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No `-----BEGIN …-----` block with the expected label.
    #[error("not a PEM file with a -----BEGIN {expected}----- block{found}")]
    NotPem {
        /// The label that was looked for.
        expected: &'static str,
        /// `" (found: LABEL)"` when another PEM block was there, else empty.
        found: String,
    },
    /// The PEM block's body is not base64 or has no `-----END …-----` line.
    #[error("the PEM block {label} is damaged ({why})")]
    BadPem {
        /// The block's label.
        label: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `ring` refused the private key.
    #[error("not a PKCS#8 RSA private key of 2048 bits or more ({0}); convert a PKCS#1 key with `openssl pkcs8 -topk8 -nocrypt`")]
    NotPkcs8Rsa(String),
    /// The public key is not an RSA SubjectPublicKeyInfo.
    #[error("not an RSA public key (SubjectPublicKeyInfo): {0}")]
    NotRsaPublicKey(&'static str),
    /// The certificate's DER could not be walked to its serial and public key.
    #[error("not an X.509 certificate with an RSA key: {0}")]
    BadCertificate(&'static str),
    /// The APIv3 key is not 32 ASCII characters.
    #[error("the APIv3 key must be exactly 32 ASCII characters (got {0} bytes)")]
    ApiV3KeyLength(usize),
    /// A key id or serial that cannot appear in `Wechatpay-Serial`.
    #[error("the key id is empty or has characters other than letters, digits and _")]
    BadKeyId,
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key error in a named file.
    #[error("{path}: {source}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: Box<KeyError>,
    },
}

/// The merchant API private key (PKCS#8 RSA): signs requests and `paySign`.
pub struct MerchantKey {
    pair: RsaKeyPair,
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantKey(***)")
    }
}

impl MerchantKey {
    /// Parses `apiclient_key.pem` (`-----BEGIN PRIVATE KEY-----`, PKCS#8 RSA).
    pub fn from_pkcs8_pem(pem: &str) -> Result<MerchantKey, KeyError> {
        let der = pem_block(pem, "PRIVATE KEY")?;
        let pair =
            RsaKeyPair::from_pkcs8(&der).map_err(|e| KeyError::NotPkcs8Rsa(e.to_string()))?;
        Ok(MerchantKey { pair })
    }

    /// base64(SHA256withRSA PKCS#1 v1.5) of `message`.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        let mut sig = vec![0; self.pair.public().modulus_len()];
        // PKCS#1 v1.5 is deterministic: ring takes an RNG for blinding only.
        let rng = ring::rand::SystemRandom::new();
        if self
            .pair
            .sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .is_err()
        {
            // Only fails when the buffer has the wrong length (it has the modulus length) or the
            // system RNG is unavailable, which nothing in mpgate can recover from.
            unreachable!("RSA signing failed: the system random source is unavailable");
        }
        STANDARD.encode(sig)
    }
}

/// Signs requests to the payment platform and the page's `paySign` as one merchant.
pub struct RequestSigner {
    mchid: String,
    serial_no: String,
    key: MerchantKey,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("mchid", &self.mchid)
            .field("serial_no", &self.serial_no)
            .field("key", &self.key)
            .finish()
    }
}

impl RequestSigner {
    /// A signer for merchant `mchid` whose API certificate has serial `serial_no`.
    pub fn new(mchid: &str, serial_no: &str, key: MerchantKey) -> RequestSigner {
        RequestSigner {
            mchid: mchid.to_owned(),
            serial_no: serial_no.to_owned(),
            key,
        }
    }

    /// The merchant id (商户号).
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The whole `Authorization` header value:
    /// `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"`
    /// over `"METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n"`.
    pub fn authorization(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp: i64,
        nonce: &str,
        body: &str,
    ) -> String {
        let message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n");
        let signature = self.key.sign_base64(message.as_bytes());
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{}\",signature=\"{signature}\"",
            self.mchid, self.serial_no
        )
    }

    /// JSAPI `paySign` over `"appId\ntimeStamp\nnonceStr\npackage\n"`.
    pub fn pay_sign(&self, app_id: &str, timestamp: &str, nonce: &str, package: &str) -> String {
        let message = format!("{app_id}\n{timestamp}\n{nonce}\n{package}\n");
        self.key.sign_base64(message.as_bytes())
    }
}

/// The fields of a merchant `Authorization` header, as a fake of the payment platform reads
/// them to check mpgate's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// `mchid`
    pub mchid: &'a str,
    /// `nonce_str`
    pub nonce_str: &'a str,
    /// `timestamp`
    pub timestamp: &'a str,
    /// `serial_no`: the merchant certificate's serial.
    pub serial_no: &'a str,
    /// `signature` (base64).
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// Parses `WECHATPAY2-SHA256-RSA2048 k="v",…`; `None` unless the scheme is that one and all
    /// five fields are there exactly once, quoted.
    pub fn parse(header: &'a str) -> Option<Authorization<'a>> {
        let params = header.strip_prefix("WECHATPAY2-SHA256-RSA2048 ")?;
        let mut fields: [Option<&'a str>; 5] = [None; 5];
        for pair in params.split(',') {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            let slot = match name {
                "mchid" => 0,
                "nonce_str" => 1,
                "timestamp" => 2,
                "serial_no" => 3,
                "signature" => 4,
                _ => return None,
            };
            if fields[slot].replace(value).is_some() {
                return None;
            }
        }
        let [Some(mchid), Some(nonce_str), Some(timestamp), Some(serial_no), Some(signature)] =
            fields
        else {
            return None;
        };
        Some(Authorization {
            mchid,
            nonce_str,
            timestamp,
            serial_no,
            signature,
        })
    }
}

/// A fresh random nonce: 32 characters of `[0-9A-Z]`.
pub fn nonce() -> String {
    const CHARS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// The WeChat Pay signature headers of a notification or of an API answer (an absent header is
/// passed as `""`).
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    /// `Wechatpay-Serial`: the public key id or a platform certificate's serial.
    pub serial: &'a str,
    /// `Wechatpay-Signature` (base64).
    pub signature: &'a str,
    /// `Wechatpay-Timestamp` (Unix seconds).
    pub timestamp: &'a str,
    /// `Wechatpay-Nonce`.
    pub nonce: &'a str,
}

/// Why a signed notification or answer was refused, in the order [`PlatformKeys::verify`] checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A signature header is absent or empty (its name).
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `Wechatpay-Serial` names no configured key.
    #[error("unknown Wechatpay-Serial")]
    UnknownSerial,
    /// `Wechatpay-Timestamp` is not a number.
    #[error("Wechatpay-Timestamp is not a number")]
    BadTimestamp,
    /// The timestamp is too far from now.
    #[error("Wechatpay-Timestamp is outside the allowed window")]
    StaleTimestamp,
    /// The signature does not verify (or is not base64).
    #[error("signature verification failed")]
    BadSignature,
}

/// WeChat Pay's verification keys by serial: the public key id (public-key mode) and/or
/// platform certificates' serials (older merchants); both at once during a migration.
#[derive(Clone, Default)]
pub struct PlatformKeys {
    /// Serial → PKCS#1 `RSAPublicKey` DER (what ring verifies with).
    keys: BTreeMap<String, Arc<[u8]>>,
}

impl fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformKeys")
            .field("serials", &self.serials())
            .finish()
    }
}

impl PlatformKeys {
    /// Adds WeChat Pay's public key (`-----BEGIN PUBLIC KEY-----`, SPKI) under its id
    /// (`PUB_KEY_ID_…`).
    pub fn add_public_key_pem(&mut self, id: &str, pem: &str) -> Result<(), KeyError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(KeyError::BadKeyId);
        }
        let der = pem_block(pem, "PUBLIC KEY")?;
        let rsa = rsa_public_key_of_spki(&der).map_err(KeyError::NotRsaPublicKey)?;
        self.keys.insert(id.to_owned(), Arc::from(rsa));
        Ok(())
    }

    /// Adds an X.509 platform certificate (PEM); returns its serial as uppercase hex, as it
    /// appears in `Wechatpay-Serial`. The certificate itself is not validated (no chain, no
    /// dates): the operator configured it.
    pub fn add_certificate_pem(&mut self, pem: &str) -> Result<String, KeyError> {
        let der = pem_block(pem, "CERTIFICATE")?;
        let (serial, rsa) = certificate_serial_and_key(&der).map_err(KeyError::BadCertificate)?;
        self.keys.insert(serial.clone(), Arc::from(rsa));
        Ok(serial)
    }

    /// Adds every `*.pem` in `dir` as a certificate; returns the serials loaded, in file-name
    /// order. Errors name the file.
    pub fn load_certificates_dir(&mut self, dir: &Path) -> Result<Vec<String>, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "pem") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut serials = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            let serial = self
                .add_certificate_pem(&text)
                .map_err(|e| KeyError::InFile {
                    path,
                    source: Box::new(e),
                })?;
            serials.push(serial);
        }
        Ok(serials)
    }

    /// The configured serials and key ids, sorted.
    pub fn serials(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// True when no key is configured (nothing can verify).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks, in PAY.md's order: headers present → serial known → `|now - timestamp| <
    /// window_secs` (that far or more is refused) → SHA256withRSA over
    /// `"TIMESTAMP\nNONCE\nBODY\n"` with the raw body bytes.
    pub fn verify(
        &self,
        h: &SignedHeaders<'_>,
        body: &[u8],
        now: i64,
        window_secs: i64,
    ) -> Result<(), VerifyError> {
        for (value, name) in [
            (h.serial, "Wechatpay-Serial"),
            (h.signature, "Wechatpay-Signature"),
            (h.timestamp, "Wechatpay-Timestamp"),
            (h.nonce, "Wechatpay-Nonce"),
        ] {
            if value.is_empty() {
                return Err(VerifyError::MissingHeader(name));
            }
        }
        let key = self.keys.get(h.serial).ok_or(VerifyError::UnknownSerial)?;
        if h.timestamp.len() > 18 || !h.timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerifyError::BadTimestamp);
        }
        let ts: i64 = h.timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
        if now.abs_diff(ts) >= window_secs.unsigned_abs() {
            return Err(VerifyError::StaleTimestamp);
        }
        let mut message = Vec::with_capacity(h.timestamp.len() + h.nonce.len() + body.len() + 3);
        message.extend_from_slice(h.timestamp.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(h.nonce.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(body);
        message.push(b'\n');
        verify_rsa(key, &message, h.signature)
    }
}

impl PlatformKeys {
    /// Verifies a merchant's signed request (for fakes of the platform, which hold the
    /// merchant's public key under its certificate serial): the key by `auth.serial_no`, then
    /// SHA256withRSA over `"METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n"`. No time window:
    /// the caller decides what is fresh.
    pub fn verify_request(
        &self,
        auth: &Authorization<'_>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let key = self
            .keys
            .get(auth.serial_no)
            .ok_or(VerifyError::UnknownSerial)?;
        let mut message = format!(
            "{method}\n{path_and_query}\n{}\n{}\n",
            auth.timestamp, auth.nonce_str
        )
        .into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        verify_rsa(key, &message, auth.signature)
    }
}

/// SHA256withRSA PKCS#1 v1.5 of `message` under an `RSAPublicKey` DER; the signature in base64.
fn verify_rsa(key: &[u8], message: &[u8], signature_b64: &str) -> Result<(), VerifyError> {
    // A 2048–8192-bit signature is 256–1024 bytes; anything much longer is not one.
    if signature_b64.len() > 2048 {
        return Err(VerifyError::BadSignature);
    }
    let sig = STANDARD
        .decode(signature_b64)
        .map_err(|_| VerifyError::BadSignature)?;
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// The APIv3 key: the 32 ASCII characters are the AES-256-GCM key of notification resources.
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(***)")
    }
}

impl ApiV3Key {
    /// Exactly 32 ASCII characters, as the merchant platform shows them.
    pub fn new(s: &str) -> Result<ApiV3Key, KeyError> {
        let bytes: [u8; 32] = s
            .as_bytes()
            .try_into()
            .map_err(|_| KeyError::ApiV3KeyLength(s.len()))?;
        if !s.is_ascii() {
            return Err(KeyError::ApiV3KeyLength(s.len()));
        }
        Ok(ApiV3Key(bytes))
    }

    fn aead(&self) -> LessSafeKey {
        // AES-256 takes any 32 bytes: the only error ring has is a wrong length.
        let Ok(key) = UnboundKey::new(&AES_256_GCM, &self.0) else {
            unreachable!("a 32-byte key is an AES-256 key")
        };
        LessSafeKey::new(key)
    }
}

/// An AES-256-GCM resource did not open: wrong APIv3 key, tampered ciphertext, or not the
/// documented shape (nonce not 12 bytes, not base64, shorter than the tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the resource does not decrypt with the APIv3 key")]
pub struct DecryptError;

/// `AEAD_AES_256_GCM`: `ciphertext_b64` = base64(ciphertext ‖ 16-byte tag); `nonce` is the 12
/// characters given; `associated_data` may be empty.
pub fn aead_decrypt(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, DecryptError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).map_err(|_| DecryptError)?;
    let mut buf = STANDARD.decode(ciphertext_b64).map_err(|_| DecryptError)?;
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut buf)
        .map_err(|_| DecryptError)?;
    let len = plain.len();
    buf.truncate(len);
    Ok(buf)
}

/// The inverse of [`aead_decrypt`], for fakes of the platform and the benchmark.
///
/// # Panics
/// When `nonce` is not 12 bytes: the caller chose it, so that is the caller's bug.
pub fn aead_encrypt(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> String {
    let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes())
        .expect("an AEAD_AES_256_GCM nonce is 12 bytes");
    let mut buf = plaintext.to_vec();
    key.aead()
        .seal_in_place_append_tag(nonce, Aad::from(associated_data.as_bytes()), &mut buf)
        .expect("AES-256-GCM seals any plaintext under 64 GiB");
    STANDARD.encode(buf)
}

// --- PEM and DER -------------------------------------------------------------------------

/// The DER of the first PEM block labelled `label` (other blocks, e.g. a chain's extra
/// certificates or `EC PARAMETERS`, are skipped).
fn pem_block(pem: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    let mut found = None;
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(this) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        if this != label {
            found.get_or_insert_with(|| this.to_owned());
            continue;
        }
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        for line in lines.by_ref() {
            if line == end {
                return STANDARD.decode(body).map_err(|_| KeyError::BadPem {
                    label: label.to_owned(),
                    why: "the body is not base64",
                });
            }
            if line.contains(':') {
                // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`): an encrypted key mpgate cannot use.
                return Err(KeyError::BadPem {
                    label: label.to_owned(),
                    why: "it has headers: an encrypted key? export it without a passphrase",
                });
            }
            body.push_str(line);
        }
        return Err(KeyError::BadPem {
            label: label.to_owned(),
            why: "no END line",
        });
    }
    Err(KeyError::NotPem {
        expected: label,
        found: found.map_or_else(String::new, |f| format!(" (found: {f})")),
    })
}

/// One DER TLV: (tag, contents, the whole TLV, what follows).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER TLV with a definite length (at most 4 length bytes).
fn tlv(input: &[u8]) -> Result<Tlv<'_>, &'static str> {
    const SHORT: &str = "truncated DER";
    let (&tag, rest) = input.split_first().ok_or(SHORT)?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tags are not expected here");
    }
    let (&first, mut rest) = rest.split_first().ok_or(SHORT)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported DER length");
        }
        let (bytes, after) = rest.split_at_checked(n).ok_or(SHORT)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, after) = rest.split_at_checked(len).ok_or(SHORT)?;
    let whole_len = input.len() - after.len();
    Ok((tag, contents, &input[..whole_len], after))
}

/// Reads a TLV that must carry `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, &'static str> {
    let t = tlv(input)?;
    if t.0 == tag {
        Ok(t)
    } else {
        Err(what)
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// 1.2.840.113549.1.1.1
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// SubjectPublicKeyInfo → the PKCS#1 `RSAPublicKey` DER ring verifies with; checks the
/// algorithm is rsaEncryption and the key is SEQUENCE { INTEGER n, INTEGER e } of 2048–8192 bits.
fn rsa_public_key_of_spki(spki: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (_, spki, _, _) = expect(spki, SEQUENCE, "the key is not a DER SEQUENCE")?;
    let (_, alg, _, rest) = expect(spki, SEQUENCE, "no algorithm identifier")?;
    let (_, oid, _, _) = expect(alg, OID, "no algorithm OID")?;
    if oid != RSA_ENCRYPTION {
        return Err("the algorithm is not rsaEncryption (an EC or other key?)");
    }
    let (_, bits, _, _) = expect(rest, BIT_STRING, "no public key BIT STRING")?;
    let Some((&0, rsa)) = bits.split_first() else {
        return Err("the public key BIT STRING is not whole bytes");
    };
    let (_, fields, whole, _) = expect(rsa, SEQUENCE, "the RSA key is not a SEQUENCE")?;
    let (_, n, _, rest) = expect(fields, INTEGER, "no RSA modulus")?;
    expect(rest, INTEGER, "no RSA exponent")?;
    let n = n.strip_prefix(&[0]).unwrap_or(n);
    if !(256..=1024).contains(&n.len()) {
        return Err("the RSA modulus is not 2048 to 8192 bits");
    }
    Ok(whole.to_vec())
}

/// Certificate → (serial as uppercase hex without leading zero bytes, RSAPublicKey DER).
fn certificate_serial_and_key(der: &[u8]) -> Result<(String, Vec<u8>), &'static str> {
    let (_, cert, _, _) = expect(der, SEQUENCE, "not a DER SEQUENCE")?;
    let (_, tbs, _, _) = expect(cert, SEQUENCE, "no TBSCertificate")?;
    let mut rest = tbs;
    // version [0] EXPLICIT, absent in v1 certificates
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.3;
    }
    let (_, serial, _, after) = expect(rest, INTEGER, "no serial number")?;
    rest = after;
    // signature algorithm, issuer, validity, subject
    for what in [
        "no signature algorithm",
        "no issuer",
        "no validity",
        "no subject",
    ] {
        rest = expect(rest, SEQUENCE, what)?.3;
    }
    let (_, _, spki, _) = expect(rest, SEQUENCE, "no SubjectPublicKeyInfo")?;
    let key = rsa_public_key_of_spki(spki)?;
    let mut serial = serial;
    while let [0, more @ ..] = serial {
        if more.is_empty() {
            break;
        }
        serial = more;
    }
    if serial.is_empty() {
        return Err("an empty serial number");
    }
    Ok((hex::encode_upper(serial), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl(dir: &Path, args: &[&str]) -> Option<String> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A self-signed certificate with a chosen serial and its key, made by the `openssl` CLI
    /// (None, after saying so, when it is not installed).
    fn certificate(serial: &str) -> Option<(tempfile::TempDir, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let made = openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-subj",
                "/CN=Wechatpay test",
                "-days",
                "1",
                "-set_serial",
                serial,
            ],
        );
        if made.is_none() {
            eprintln!("skipping: the openssl CLI is not available to make a test certificate");
            return None;
        }
        let pem = std::fs::read_to_string(dir.path().join("cert.pem")).expect("cert written");
        Some((dir, pem))
    }

    #[test]
    fn a_platform_certificate_is_known_by_the_serial_openssl_prints_and_verifies_its_key() {
        let Some((dir, pem)) = certificate("0x00A1B2C3D4E5F60718293A4B5C6D7E8F90") else {
            return;
        };
        let mut keys = PlatformKeys::default();
        let serial = keys.add_certificate_pem(&pem).expect("certificate loads");
        let printed = openssl(
            dir.path(),
            &["x509", "-in", "cert.pem", "-noout", "-serial"],
        )
        .expect("openssl prints the serial");
        assert_eq!(format!("serial={serial}"), printed.trim());
        assert_eq!(serial, "A1B2C3D4E5F60718293A4B5C6D7E8F90");

        // A notification signed with the certificate's key verifies under its serial.
        let key = std::fs::read_to_string(dir.path().join("key.pem")).expect("key written");
        let signer = MerchantKey::from_pkcs8_pem(&key).expect("openssl writes PKCS#8");
        let body = br#"{"id":"EV-1"}"#;
        let signature = signer.sign_base64(b"1700000000\nabc\n{\"id\":\"EV-1\"}\n");
        let h = SignedHeaders {
            serial: &serial,
            signature: &signature,
            timestamp: "1700000000",
            nonce: "abc",
        };
        assert_eq!(keys.verify(&h, body, 1_700_000_100, 300), Ok(()));
        assert_eq!(
            keys.verify(&h, b"{\"id\":\"EV-2\"}", 1_700_000_100, 300),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_certificates_dir_loads_every_pem_and_names_the_file_that_is_not_one() {
        let Some((dir, pem)) = certificate("7") else {
            return;
        };
        let certs = tempfile::tempdir().expect("temp dir");
        std::fs::write(certs.path().join("a.pem"), &pem).expect("write");
        std::fs::write(certs.path().join("notes.txt"), "not a certificate").expect("write");
        let mut keys = PlatformKeys::default();
        assert_eq!(
            keys.load_certificates_dir(certs.path()).expect("loads"),
            vec!["07".to_owned()]
        );
        let key = std::fs::read_to_string(dir.path().join("key.pem")).expect("key");
        std::fs::write(certs.path().join("b.pem"), key).expect("write");
        let err = PlatformKeys::default()
            .load_certificates_dir(certs.path())
            .expect_err("a private key is not a certificate");
        let text = err.to_string();
        assert!(text.contains("b.pem"), "{text}");
        assert!(text.contains("BEGIN CERTIFICATE"), "{text}");
    }

    #[test]
    fn truncated_and_damaged_certificates_are_refused_without_panicking() {
        let Some((_dir, pem)) = certificate("123456789") else {
            return;
        };
        let der = pem_block(&pem, "CERTIFICATE").expect("pem");
        assert!(certificate_serial_and_key(&der).is_ok());
        for cut in 0..der.len() {
            assert!(
                certificate_serial_and_key(&der[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = certificate_serial_and_key(&bad);
        }
    }

    #[test]
    fn der_lengths_that_overrun_the_input_are_errors() {
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(tlv(&[0x30, 0x80]).is_err());
        assert!(tlv(&[0x30]).is_err());
        assert_eq!(tlv(&[0x02, 0x01, 0x05, 0xaa]).map(|t| t.1), Ok(&[5u8][..]));
    }

    #[test]
    fn pem_errors_say_what_was_found_instead() {
        let err = MerchantKey::from_pkcs8_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect_err("PKCS#1 is not PKCS#8");
        assert_eq!(
            err.to_string(),
            "not a PEM file with a -----BEGIN PRIVATE KEY----- block (found: RSA PRIVATE KEY)"
        );
        let err = MerchantKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----",
        )
        .expect_err("not base64");
        assert!(matches!(err, KeyError::BadPem { .. }), "{err}");
        let err =
            MerchantKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n").expect_err("no end");
        assert!(err.to_string().contains("no END line"), "{err}");
        let err = MerchantKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        )
        .expect_err("not a key");
        assert!(matches!(err, KeyError::NotPkcs8Rsa(_)), "{err}");
    }

    #[test]
    fn the_apiv3_key_is_32_ascii_characters_and_never_printed() {
        assert!(matches!(
            ApiV3Key::new("short"),
            Err(KeyError::ApiV3KeyLength(5))
        ));
        assert!(ApiV3Key::new("键键键键键键键键键键ab").is_err());
        let key = ApiV3Key::new("0123456789abcdef0123456789abcdef").expect("32 characters");
        assert_eq!(format!("{key:?}"), "ApiV3Key(***)");
    }

    #[test]
    fn aead_round_trips_and_refuses_a_changed_byte_nonce_or_aad() {
        let key = ApiV3Key::new("0123456789abcdef0123456789abcdef").expect("key");
        let sealed = aead_encrypt(&key, "abcdefghijkl", "transaction", b"{\"a\":1}");
        assert_eq!(
            aead_decrypt(&key, "abcdefghijkl", "transaction", &sealed).as_deref(),
            Ok(&b"{\"a\":1}"[..])
        );
        assert_eq!(
            aead_decrypt(&key, "abcdefghijkm", "transaction", &sealed),
            Err(DecryptError)
        );
        assert_eq!(
            aead_decrypt(&key, "abcdefghijkl", "", &sealed),
            Err(DecryptError)
        );
        assert_eq!(
            aead_decrypt(&key, "short", "transaction", &sealed),
            Err(DecryptError)
        );
        assert_eq!(
            aead_decrypt(&key, "abcdefghijkl", "", "AAAA"),
            Err(DecryptError)
        );
        assert_eq!(
            aead_decrypt(&key, "abcdefghijkl", "", "%%%"),
            Err(DecryptError)
        );
        let mut bytes = STANDARD.decode(&sealed).expect("base64");
        bytes[0] ^= 1;
        assert_eq!(
            aead_decrypt(&key, "abcdefghijkl", "transaction", &STANDARD.encode(bytes)),
            Err(DecryptError)
        );
    }

    #[test]
    fn nonces_are_32_uppercase_alphanumerics_and_differ() {
        let a = nonce();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, nonce());
    }

    #[test]
    fn headers_are_checked_before_the_key_is_looked_up() {
        let keys = PlatformKeys::default();
        let h = SignedHeaders {
            serial: "PUB_KEY_ID_1",
            signature: "",
            timestamp: "1",
            nonce: "n",
        };
        assert_eq!(
            keys.verify(&h, b"", 1, 300),
            Err(VerifyError::MissingHeader("Wechatpay-Signature"))
        );
        let h = SignedHeaders {
            signature: "AAAA",
            ..h
        };
        assert_eq!(
            keys.verify(&h, b"", 1, 300),
            Err(VerifyError::UnknownSerial)
        );
        assert_eq!(format!("{keys:?}"), "PlatformKeys { serials: [] }");
    }
}
