//! Outbound client for the WeChat platform API: the access token, `menu/create`,
//! customer-service messages and the typing indicator, and the durable outbox that delivers
//! the messages with retries.
//!
//! - [`client`]: [`PlatformClient`] (token cache with single-flight refresh, typed
//!   [`PlatformError`]s).
//! - [`message`]: [`CustomMessage`] and its `message/custom/send` body.
//! - [`outbox`]: [`Outbox`], the delivery loop over the store's outbox, and [`OutboxHandle`].
//! - [`webhook`]: the rule action that asks an operator's endpoint for the reply, and the
//!   late delivery of an answer that missed the passive reply's budget.
//! - [`CustomerService`]: what the rest of mpgate sends outside a passive reply through.
//! - [`menu_push`]: the `mpgate menu push` command.
//!
//! May depend on: `settings`, `store` (token cache and outbox trees), `rules` (the menu),
//! `wechat::types`, `metrics` (send attempts, webhook calls), reqwest, tokio. Nothing here names sled or actix.

pub mod client;
pub mod message;
pub mod outbox;
pub mod webhook;

use std::path::Path;

use anyhow::Context;

pub use client::{PlatformClient, PlatformError, REFRESH_MARGIN_SECS};
pub use message::{CustomMessage, NewsArticle, MAX_TEXT_CHARS};
pub use outbox::{Outbox, OutboxHandle};

/// Customer-service messages (hand-off notices, late answers, long texts), sent through the
/// durable outbox, and the typing indicator while a late answer is written; off without an
/// AppSecret, when such a message is logged and dropped.
#[derive(Clone, Default)]
pub struct CustomerService {
    outbox: Option<OutboxHandle>,
    /// For the typing indicator, which is not queued.
    client: Option<PlatformClient>,
}

impl std::fmt::Debug for CustomerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerService")
            .field("on", &self.is_on())
            .finish()
    }
}

impl CustomerService {
    pub fn new(outbox: Option<OutboxHandle>) -> Self {
        CustomerService {
            outbox,
            client: None,
        }
    }

    /// Lets [`CustomerService::typing`] reach the platform.
    pub fn with_client(mut self, client: Option<PlatformClient>) -> Self {
        self.client = client;
        self
    }

    /// Shows the typing indicator to `to`; `None` when there is no platform client.
    pub async fn typing(&self, to: &str) -> Option<Result<(), PlatformError>> {
        match &self.client {
            Some(c) => Some(c.typing(to, true).await),
            None => None,
        }
    }

    /// Queues `msg` like [`CustomerService::send`] and returns the outbox ids of its parts, so
    /// the caller can learn whether the platform took them.
    pub fn send_tracked(&self, msg: CustomMessage, origin: &str) -> Result<Vec<u64>, StoreError> {
        match &self.outbox {
            Some(o) => o.enqueue_all(msg, origin),
            None => Ok(Vec::new()),
        }
    }

    /// Where an item [`CustomerService::send_tracked`] queued stands now.
    pub fn outbox_item(
        &self,
        id: u64,
    ) -> Result<Option<crate::store::platform::OutboxItem>, StoreError> {
        match &self.outbox {
            Some(o) => o.item(id),
            None => Ok(None),
        }
    }

    /// Whether messages outside the passive reply can be sent at all.
    pub fn is_on(&self) -> bool {
        self.outbox.is_some()
    }

    /// Queues `msg` (durably, in order per subscriber); `origin` names who sent it, for the
    /// outbox listing and the logs. Without the platform client it is logged and dropped.
    pub fn send(&self, msg: CustomMessage, origin: &str) {
        match &self.outbox {
            Some(o) => {
                if let Err(e) = o.enqueue(msg, origin) {
                    tracing::error!(error = %e, origin, "cannot queue a customer-service message");
                }
            }
            None => tracing::warn!(
                origin,
                "customer-service message dropped: MPGATE_APP_SECRET is not set"
            ),
        }
    }
}

use crate::rules::RuleSet;
use crate::settings::Settings;
use crate::store::{Store, StoreConfig, StoreError};

/// `mpgate menu push`: posts the `[menu]` of `rules_path` to `menu/create` and returns a
/// one-line summary. The body is `RuleSet::menu_json()`, the very value `mpgate menu show`
/// prints.
///
/// The access token comes from the data dir's cache when it can be opened. When the running
/// server holds the dir, a fresh token is fetched: the server's own stays valid for five more
/// minutes, and when the platform then rejects it the server refreshes it once by itself.
pub async fn menu_push(settings: &Settings, rules_path: &Path) -> anyhow::Result<String> {
    let loaded = RuleSet::load(rules_path)
        .map_err(|e| anyhow::anyhow!("{} is not valid:\n{e}", rules_path.display()))?;
    let body = loaded.rules.menu_json().ok_or_else(|| {
        anyhow::anyhow!(
            "no [menu] in {}: nothing to push (add [[menu.button]] entries; `mpgate menu show` \
             prints what would be sent)",
            rules_path.display()
        )
    })?;
    let secret = settings.app_secret.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "MPGATE_APP_SECRET is not set: the platform's API needs the account's AppSecret \
             (公众号 console → 开发 → 基本配置)"
        )
    })?;
    let store = match Store::open(
        &settings.data_dir,
        StoreConfig {
            cache_capacity_bytes: settings.cache_capacity_bytes,
            ..StoreConfig::default()
        },
    ) {
        Ok(store) => Some(store),
        Err(StoreError::Locked { .. }) => None,
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot open the data dir {}", settings.data_dir.display())
            })
        }
    };
    let token_source = if store.is_some() {
        ""
    } else {
        " (data dir held by the server: used a fresh access token)"
    };
    let client = PlatformClient::build(&settings.api_base, &settings.app_id, secret, store);
    client
        .menu_create(&body)
        .await
        .context("menu/create failed")?;
    let buttons = body["button"].as_array().map_or(0, Vec::len);
    let sub_buttons: usize = body["button"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["sub_button"].as_array())
        .map(Vec::len)
        .sum();
    Ok(format!(
        "menu pushed to {}: {buttons} top-level buttons, {sub_buttons} sub-buttons; clients show it within 5 minutes{token_source}",
        settings.app_id.as_str()
    ))
}
