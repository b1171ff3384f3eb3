//! The platform's wire protocol, as pure code: no I/O, no actix, no tokio, no sled, no filesystem.
//!
//! Layers, bytes upward:
//! - [`signature`]: sha1 over sorted fields, compared in constant time.
//! - [`crypto`]: the AES-256-CBC envelope (`random16 ‖ len ‖ msg ‖ app_id`, PKCS#7 with K = 32).
//! - [`xml`]: a small, strict XML reader (no DTDs, bounded depth) that keeps CDATA, emoji and the
//!   raw control characters the platform sends in user text.
//! - [`names`]: the one table of `MsgType` and `Event` names (wire spelling, log label, rules name).
//! - [`message`]: the reader's tree → the typed [`message::Inbound`] (unknown types are values).
//! - [`reply`]: the typed [`reply::Reply`] → passive-reply XML, and the encrypted envelope.
//!
//! May depend on: std and the crypto/xml crates only.

pub mod crypto;
pub mod message;
pub mod names;
pub mod reply;
pub mod signature;
pub mod types;
pub mod xml;
