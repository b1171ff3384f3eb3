//! mpgate: a WeChat Official Account (公众号) callback server.
//!
//! # Layout
//! - [`wechat`]: the wire protocol, pure (signature, crypto, XML in/out).
//! - [`rules`]: keywords.toml → compiled rules → routing decisions, pure.
//! - [`render`]: minijinja templates loaded at run time from `templates/`.
//! - [`reload`]: the only module that watches files.
//! - [`store`]: the only module that names sled.
//! - [`paywall`]: signed article links and entitlement decisions.
//! - [`platform`]: outbound client for the WeChat API.
//! - [`pipeline`]: one push, decrypted, through dedupe, state, rules, into a reply.
//! - [`http`]: thin actix handlers; one error → status mapping.
//! - [`settings`], [`telemetry`], [`startup`]: process wiring; [`defaults`]: the embedded demo rules.

pub mod cli;
pub mod defaults;
pub mod handoff;
pub mod http;
pub mod ops;
pub mod paywall;
pub mod pipeline;
pub mod platform;
pub mod reload;
pub mod render;
pub mod rules;
pub mod settings;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod wechat;
