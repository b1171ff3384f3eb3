//! The delivery loop of the durable customer-service outbox.
//!
//! Messages are queued in the store ([`Store::outbox_enqueue`], flushed) through an
//! [`OutboxHandle`], and sent by one [`Outbox::run`] task: every [`POLL_EVERY`], and at once when
//! a handle enqueues. Messages to one openid leave in the order they were queued: an item waits
//! while an earlier one to the same openid is pending, even backing off ([`Store::outbox_due`]).
//! Success marks the item sent; a permanent refusal
//! ([`PlatformError::is_permanent`]) marks it failed with the platform's errcode and errmsg; any
//! other error reschedules it with exponential backoff (base, 2×, 4×, … capped at
//! [`MAX_BACKOFF`]) and gives up as failed after [`MAX_ATTEMPTS`] sends. A part of a split message that fails fails the
//! parts after it, with a reason naming it ([`Store::outbox_fail_later_parts`]); later messages
//! to that openid go on. Delivery is at least
//! once: a crash between the platform's `ok` and the store's flush sends that message again.
//!
//! Exactly one runner per data dir (sled's lock already means one process): two runners would
//! send the same due items twice.
//!
//! Retention: [`Outbox::run`] deletes sent items [`SENT_RETENTION`] after sending and failed
//! ones [`FAILED_RETENTION`] after failing (kept longer so an operator can look at them), at
//! start and every hour.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::client::{PlatformClient, PlatformError};
use super::message::CustomMessage;
use crate::metrics::Metrics;
use crate::store::platform::{OutboxItem, OutboxState};
use crate::store::{Store, StoreError};

/// How often due items are looked for when nothing is enqueued.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// The default delay before the first retry.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Sends tried before a transiently failing item is given up.
pub const MAX_ATTEMPTS: u32 = 10;
/// How long sent items are kept.
pub const SENT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// How long failed items are kept.
pub const FAILED_RETENTION: Duration = Duration::from_secs(30 * 86_400);

const SWEEP_EVERY: Duration = Duration::from_secs(3_600);
/// Items taken per store query: a full batch means more may be due, so the loop goes on.
const BATCH: usize = 32;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The delay after the `attempts`-th failed send: `base × 2^(attempts-1)`, at most
/// [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The delivery loop, configured; consumed by [`Outbox::run`].
#[derive(Debug)]
pub struct Outbox {
    notify: Arc<Notify>,
    backoff_base: Duration,
    metrics: Metrics,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new()
    }
}

/// Queues messages for the outbox and wakes it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OutboxHandle {
    store: Store,
    notify: Arc<Notify>,
}

impl OutboxHandle {
    /// Queues `msg` durably (flushed before returning) and wakes the runner; returns the item's
    /// id. A text over [`super::MAX_TEXT_CHARS`] is queued as several items, one per part, in
    /// order; the id returned is the first part's.
    ///
    /// Blocks on the store's flush (≈0.2 ms per item measured on the dev VM, test profile),
    /// which the callers — rules answering a push, the admin API — can afford.
    pub fn enqueue(&self, msg: CustomMessage, origin: &str) -> Result<u64, StoreError> {
        let ids = self.enqueue_all(msg, origin)?;
        // `into_parts` returns at least one message, so an id was assigned.
        ids.first()
            .copied()
            .ok_or_else(|| StoreError::Corrupt("a message without parts".into()))
    }

    /// Like [`OutboxHandle::enqueue`], returning every part's id, in order.
    pub fn enqueue_all(&self, msg: CustomMessage, origin: &str) -> Result<Vec<u64>, StoreError> {
        let parts = msg
            .into_parts()
            .iter()
            .map(CustomMessage::to_body)
            .collect();
        let ids = self.store.outbox_enqueue_parts(parts, origin, now_ms())?;
        self.notify.notify_one();
        Ok(ids)
    }

    /// One queued item, as the delivery loop left it.
    pub fn item(&self, id: u64) -> Result<Option<OutboxItem>, StoreError> {
        self.store.outbox_get(id)
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            notify: Arc::new(Notify::new()),
            backoff_base: DEFAULT_BACKOFF_BASE,
            metrics: Metrics::default(),
        }
    }

    /// Counts send attempts into `metrics` (the gateway's).
    pub fn with_metrics(mut self, metrics: Metrics) -> Outbox {
        self.metrics = metrics;
        self
    }

    /// Sets the first retry delay (default [`DEFAULT_BACKOFF_BASE`]); tests use milliseconds.
    pub fn with_backoff(mut self, base: Duration) -> Outbox {
        self.backoff_base = base;
        self
    }

    /// A handle that queues into `store` (the one given to [`Outbox::run`]) and wakes this
    /// outbox.
    pub fn handle(&self, store: Store) -> OutboxHandle {
        OutboxHandle {
            store,
            notify: self.notify.clone(),
        }
    }

    /// Sends due items until `shutdown` turns true (or its sender is dropped). A send in flight
    /// is finished and recorded first.
    pub async fn run(
        self,
        client: PlatformClient,
        store: Store,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tracing::info!("outbox started");
        let mut next_sweep = tokio::time::Instant::now();
        'outer: loop {
            if *shutdown.borrow() {
                break;
            }
            if tokio::time::Instant::now() >= next_sweep {
                sweep(&store);
                next_sweep += SWEEP_EVERY;
            }
            let due = match store.outbox_due(now_ms(), BATCH) {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox; retrying");
                    Vec::new()
                }
            };
            let full_batch = due.len() == BATCH;
            let mut done_any = false;
            for item in due {
                if *shutdown.borrow() {
                    break 'outer;
                }
                done_any |= self.deliver(&client, &store, item).await;
            }
            // A full batch means more may be due; an item done may have let its recipient's
            // next one through (see `Store::outbox_due`): look again at once.
            if full_batch || done_any {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = self.notify.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!("outbox stopped");
    }

    /// Sends `item` and records the outcome; returns whether it is done (sent or failed).
    async fn deliver(&self, client: &PlatformClient, store: &Store, mut item: OutboxItem) -> bool {
        let result = client.send_custom_body(&item.msg).await;
        self.metrics.outbox_send(result.as_ref().map(|_| ()));
        item.attempts = item.attempts.saturating_add(1);
        let now = now_ms();
        let outcome = match result {
            Ok(()) => {
                item.state = OutboxState::Sent { at: now };
                "sent"
            }
            Err(e) if e.is_permanent() => {
                item.state = OutboxState::Failed {
                    at: now,
                    reason: e.to_string(),
                };
                log_failure(&item, &e, "failed");
                "failed"
            }
            Err(e) if item.attempts >= MAX_ATTEMPTS => {
                item.state = OutboxState::Failed {
                    at: now,
                    reason: format!("gave up after {} attempts: {e}", item.attempts),
                };
                log_failure(&item, &e, "gave up");
                "failed"
            }
            Err(e) => {
                let delay = backoff(self.backoff_base, item.attempts);
                item.next_attempt_at = now.saturating_add(ms(delay));
                tracing::debug!(
                    outbox_id = item.id,
                    attempts = item.attempts,
                    errcode = e.errcode(),
                    retry_in_ms = ms(delay),
                    "outbox send failed; will retry"
                );
                "retry"
            }
        };
        if let Err(e) = store.outbox_update(&item) {
            // The item stays pending as it was, so it is sent again: at least once.
            tracing::error!(outbox_id = item.id, error = %e, "cannot record an outbox send");
            return false;
        }
        if outcome == "failed" {
            // The rest of a split message would arrive without its start: fail it too.
            match store.outbox_fail_later_parts(&item, now) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    outbox_id = item.id,
                    failed_parts = n,
                    "outbox: the later parts of a failed message failed too"
                ),
                Err(e) => {
                    tracing::error!(outbox_id = item.id, error = %e, "cannot fail later parts")
                }
            }
        }
        tracing::debug!(
            outbox_id = item.id,
            attempts = item.attempts,
            outcome,
            "outbox item"
        );
        outcome != "retry"
    }
}

fn log_failure(item: &OutboxItem, e: &PlatformError, what: &str) {
    tracing::warn!(
        outbox_id = item.id,
        origin = %item.origin,
        attempts = item.attempts,
        errcode = e.errcode(),
        "outbox message {what}: {e}"
    );
}

fn sweep(store: &Store) {
    let now = now_ms();
    match store.outbox_sweep(
        now.saturating_sub(ms(SENT_RETENTION)),
        now.saturating_sub(ms(FAILED_RETENTION)),
    ) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "outbox: old sent and failed items removed"),
        Err(e) => tracing::warn!(error = %e, "outbox sweep failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_caps_at_five_minutes() {
        let s = Duration::from_secs;
        let delays: Vec<Duration> = (1..=10).map(|n| backoff(s(1), n)).collect();
        assert_eq!(
            delays,
            vec![
                s(1),
                s(2),
                s(4),
                s(8),
                s(16),
                s(32),
                s(64),
                s(128),
                s(256),
                s(300)
            ]
        );
        assert_eq!(backoff(s(1), 40), s(300));
        assert_eq!(backoff(s(1), u32::MAX), s(300));
    }
}
