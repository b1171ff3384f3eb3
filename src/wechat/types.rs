//! Domain newtypes of the protocol: parsed once at the edge, never re-validated.

use std::fmt;

/// A subscriber's OpenID for this account (the `FromUserName` of an inbound push).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct OpenId(String);

impl OpenId {
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
pub struct MsgId(pub u64);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The account's AppID (`wx…`): the receive id sealed at the end of every encrypted payload.
#[derive(Clone, PartialEq, Eq)]
pub struct AppId(String);

impl AppId {
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
