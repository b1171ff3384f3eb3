//! WeChat Pay (see crypto, notify).

pub mod crypto;
pub mod notify;
