//! Domain newtypes of the protocol: parsed once at the edge, never re-validated.
//!
//! The edges that parse: the push parser (`FromUserName` → [`OpenId::parse`]), the settings
//! (`MPGATE_APP_ID` → [`AppId::parse`]), the admin API and the CLI (openids given by operators).
//! `new` constructors are for values that were parsed before (stored records, a signed link
//! whose MAC holds, tests).

use std::fmt;

/// Why an id was refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long; at most {MAX_ID_LEN} are accepted")]
    TooLong(usize),
    #[error("contains {0:?}; only letters, digits, `-` and `_` are accepted")]
    BadChar(char),
}

/// The longest openid or AppID accepted. The platform's openids are 28 characters and AppIDs
/// 18 (`wx` + 16 hex digits); the margin lets test accounts, other id schemes (WeCom corp ids,
/// unionid-style ids) and a future lengthening through without letting arbitrary text in.
pub const MAX_ID_LEN: usize = 64;

/// The accepted shape of openids and AppIDs: 1 to [`MAX_ID_LEN`] characters of
/// `[A-Za-z0-9_-]` (URL- and key-safe: the ids go into article links and store keys).
fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    // Bytes, not chars: every accepted character is ASCII, so the first refused byte starts
    // the character to name.
    if let Some(i) = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(IdError::BadChar(s[i..].chars().next().unwrap_or('?')));
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    Ok(())
}

/// A subscriber's OpenID for this account (the `FromUserName` of an inbound push).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OpenId(String);

impl OpenId {
    /// An openid from outside (a push, an operator): 1 to [`MAX_ID_LEN`] characters of
    /// `[A-Za-z0-9_-]`. The platform's are 28 characters, such as
    /// `o9AgO5Kd5ggOC-bXrbNODIiE3bGY`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_id(s)?;
        Ok(OpenId(s.to_string()))
    }
    /// An openid that was parsed before (a stored record, a signed link, a test).
    pub fn new(s: impl Into<String>) -> Self {
        OpenId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A short, non-reversible label for logs at info level (openids are personal data).
    pub fn redacted(&self) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.0.as_bytes());
        format!("u:{}", hex::encode(&d[..4]))
    }
}

impl fmt::Debug for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The platform's 64-bit message id (`MsgId`); values exceed 2^53, so never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId(u64);

impl MsgId {
    pub const fn new(id: u64) -> Self {
        MsgId(id)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for MsgId {
    type Err = std::num::ParseIntError;
    /// Decimal digits, as the platform writes it (surrounding whitespace allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(MsgId)
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The account's AppID (`wx…`): the receive id sealed at the end of every encrypted payload.
#[derive(Clone, PartialEq, Eq)]
pub struct AppId(String);

impl AppId {
    /// An AppID from the settings: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_-]`. The
    /// platform's are `wx` followed by 16 hex digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_id(s)?;
        Ok(AppId(s.to_string()))
    }
    /// An AppID known to be well formed (tests, vectors).
    pub fn new(s: impl Into<String>) -> Self {
        AppId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({})", self.0)
    }
}

/// The callback Token shared with the platform. Secret: never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_of_the_platform_and_of_tests_parse() {
        for ok in [
            "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
            "oDemoUser",
            "o_1",
            "gh_7f083739789a",
        ] {
            assert_eq!(OpenId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        assert_eq!(OpenId::parse(""), Err(IdError::Empty));
        assert_eq!(OpenId::parse("o\0x"), Err(IdError::BadChar('\0')));
        assert_eq!(OpenId::parse("o user"), Err(IdError::BadChar(' ')));
        assert_eq!(OpenId::parse("o/../x"), Err(IdError::BadChar('/')));
        assert_eq!(OpenId::parse("用户"), Err(IdError::BadChar('用')));
        assert_eq!(OpenId::parse(&"o".repeat(65)), Err(IdError::TooLong(65)));
        assert!(OpenId::parse(&"o".repeat(64)).is_ok());
        assert_eq!(AppId::parse("wx 1"), Err(IdError::BadChar(' ')));
        assert!(AppId::parse("wx2c2769f8efd9abc2").is_ok());
    }

    #[test]
    fn msg_ids_beyond_f64_precision_round_trip() {
        let id: MsgId = "6074746557628292943".parse().unwrap();
        assert_eq!(id.get(), 6074746557628292943);
        assert!("12a".parse::<MsgId>().is_err());
    }
}
