//! mpgate: a WeChat Official Account (公众号) callback server.
//!
//! # Layout
//! Where each job lives, and what each part may use (the last column; nothing uses `http`,
//! `startup` or `cli`):
//!
//! | part | owns | may use |
//! |---|---|---|
//! | [`wechat`] | the wire protocol, pure: signatures, AES, XML in/out, typed messages and replies, ids parsed once ([`wechat::types`]) | nothing of mpgate |
//! | [`rules`] | keywords.toml → compiled rules → a routing decision, pure over a message and a subscriber view; `check`/`simulate` | `wechat`, `render` |
//! | [`render`] | minijinja templates from `templates/` | — |
//! | [`reload`] | the live rules and hot reload: the only module that watches files | `rules`, `render`, `store` (active grants, through a trait) |
//! | [`store`] | all state (subscribers, dedupe, entitlements, hand-offs, counters, outbox); the only module that names sled; its own write-behind (whole pushes per period; recovery from a failing disk) and sweeps | `wechat::types` |
//! | [`paywall`] | signed article links and the one access decision, for chats and pages | `store`, `rules`, `wechat` |
//! | [`handoff`] | the hand-off state machine | `store`, `rules`, `wechat`, `platform::CustomerService` |
//! | [`platform`] | the outbound WeChat API: token, menu, customer-service outbox, webhook calls and late answers | `store`, `rules`, `settings`, `wechat::types` |
//! | [`pay`] | WeChat Pay from the paywall page: orders placed and asked about ([`pay::client`]), notifications applied, reconciliation ([`pay::Payments`]); signing, verification and decryption are pure ([`pay::crypto`], [`pay::notify`]) | `store`, `paywall`, `rules`, `reload` (live rules), `settings`, `wechat::types` |
//! | [`assistant`] | the `assistant` rule action: the creator's articles indexed and searched (pure), the prompt (pure), the OpenAI-compatible streaming client, and the service that gates a question, asks the model once per push and delivers the answer by the account's capability (passive, held retries, customer-service messages, the continue word) | `rules`, `store`, `paywall`, `platform::CustomerService`, `metrics`, `settings`, `wechat` |
//! | [`analytics`] | the operators' figures (growth by channel, retention cohorts, the paid funnel, sales, unanswered texts) from the store's incremental bookkeeping; no report scans every subscriber | `store` |
//! | [`metrics`] | the Prometheus registry: counters bumped by the pipeline, outbox, webhook, pay and the edge; figures read from the store and the rules at scrape time | `store`, `reload`, `wechat`, the error and event types of `pipeline`, `platform`, `pay` |
//! | [`pipeline`] | one push: authenticate and open it, single flight over retries (and the assistant's questions still being answered), subscriber state, then the rules and the action's module, the answer remembered and sealed; orchestrates, decides nothing itself | all of the above |
//! | [`http`] | thin actix handlers and the one error → HTTP mapping ([`http::error`]); [`http::dashboard`]: the operators' pages, their sessions, charts and CSV | `pipeline` and the services it lends (`paywall`, `pay`, `handoff`, `store` views) |
//! | [`ops`], [`cli`] | operator commands on the data dir or through the admin API | the services above |
//! | [`settings`], [`telemetry`], [`startup`], [`sync`] | process wiring, logs, start-up, the one lock policy; [`defaults`]: the embedded demo rules | — |
//! | `fuzzing` (hidden) | checks the fuzz targets in `fuzz/` need on private internals (the XML scanner against the strict reader) | `wechat` |

pub mod analytics;
pub mod assistant;
pub mod cli;
pub mod defaults;
pub mod handoff;
pub mod http;
pub mod metrics;
pub mod operator;
pub mod ops;
pub mod pay;
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

/// What the fuzz targets in `fuzz/` reach that is not otherwise public: not an API, and nothing
/// in mpgate calls it. Each item is a thin wrapper that keeps the internal it checks private.
#[doc(hidden)]
pub mod fuzzing {
    use crate::wechat::xml;

    /// Checks the zero-copy scanner against the strict reader on `input`: `None` when the scanner
    /// declines (the strict reader decides alone), `Some(Ok(()))` when it builds exactly the tree
    /// the strict reader builds, `Some(Err(why))` when the two disagree (a bug in the scanner).
    pub fn xml_scan_agrees(input: &str) -> Option<Result<(), String>> {
        let doc = xml::scan(input)?;
        Some(match xml::parse(input) {
            Ok(tree) if doc == xml::Doc::from_element(&tree) => Ok(()),
            Ok(tree) => Err(format!("scan built {doc:?}, parse built {tree:?}")),
            Err(e) => Err(format!("scan accepted what parse refuses ({e})")),
        })
    }
}
