//! The `assistant` rule action: a model answers the subscriber from the creator's own
//! articles, and the answer always reaches them, however slow the model is.
//!
//! - [`retrieval`]: the articles split into passages and ranked for a question (pure).
//! - [`client`]: the OpenAI-compatible streaming endpoint.
//! - [`policy`]: what an answer may contain, how a long one is split, the blocklist (pure).
//!
//! May depend on: `rules` (the action and `[assistant]`), `store` (memory, kept answers,
//! quotas), `paywall` (entitlements, signed links), `platform::CustomerService`, `metrics`,
//! `settings`, `wechat::types`.

pub mod client;
pub mod policy;
pub mod retrieval;
