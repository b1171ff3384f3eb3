//! The store's own upkeep, on a thread of its own: the write-behind step that takes the per-push
//! state kept in memory to sled, and the sweep that forgets expired dedupe entries.
//!
//! The cadences live here, next to the state they bound, because they are what "What is
//! durable when" in the module doc (and the README's "What a crash can lose") promises; the
//! server only starts the upkeep and stops it. The same sweep deletes the days of texts no
//! rule answered that `unanswered_days` no longer keeps, and the assistant's old memory, kept
//! answers and usage days. May depend on the rest of the store, tokio's
//! `sync::watch` and `task` (to be stopped from the server's shutdown), and tracing.

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Store, StoreError};

/// How often a write-behind period writes the pushes answered since the last one. It bounds what a crash
/// can lose of them (≤ 100 ms: each period is synced before it ends), and a platform retry arrives
/// ~5 s after its push, long after its answer was written; shorter periods cost more sled
/// writes of smaller batches for no retry that needs them.
const WRITE_BEHIND_EVERY: Duration = Duration::from_millis(100);

/// Every how many steps the write-behind is `full` (counters, subscriber activity, cache
/// eviction): once a second. Activity and counts are worth less than state changes, and
/// merging them is the step's most expensive part.
const FULL_EVERY: u64 = 10;

/// How often a failing store retries its write (each retry reopens the data dir first).
/// Recovery is then seen within a second of the disk having room again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How often expired dedupe entries are swept. The retention is minutes (at least 60 s), so a
/// sweep a minute keeps the dedupe memory within about one retention plus a minute, and each
/// sweep has little to do.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The name of the upkeep thread: `top -H` shows its cost under it, and the per-thread CPU
/// figures in BENCHMARKS.md (`/proc/<pid>/task/*/stat`) are read by this name.
const THREAD_NAME: &str = "mpgate-writer";

impl Store {
    /// Starts the store's upkeep: every 100 ms a [`Store::write_behind`] step (`full` every
    /// tenth), and a [`Store::sweep_dedupe`], [`Store::sweep_unanswered`] and
    /// [`Store::sweep_assistant`] at once and then every minute, all on one thread
    /// named `mpgate-writer`. A thread of its own rather than tokio's blocking pool keeps
    /// sled's allocations in one malloc arena, off the workers that answer pushes.
    ///
    /// A failed step keeps what it took and is retried (once a second while the store is not
    /// writable: see `period`). Call it
    /// from inside a tokio runtime: the returned task ends once the thread has stopped, after
    /// `shutdown` changes (or its sender is dropped). The thread does no last step: after
    /// awaiting the task, the caller runs the final [`Store::flush`].
    pub fn spawn_maintenance(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, StoreError> {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let mut steps: u64 = 0;
                let mut next_sweep = Instant::now();
                let mut next_retry = Instant::now();
                loop {
                    if Instant::now() >= next_sweep {
                        store.sweep_and_log();
                        next_sweep = Instant::now() + SWEEP_EVERY;
                    }
                    // Ends when asked to stop, or when the signalling side is gone.
                    if !matches!(
                        stop_rx.recv_timeout(WRITE_BEHIND_EVERY),
                        Err(RecvTimeoutError::Timeout)
                    ) {
                        break;
                    }
                    steps += 1;
                    let failing = !store.health().writable;
                    if failing && Instant::now() < next_retry {
                        continue;
                    }
                    // A failed step keeps everything it took for the next one; the store logs
                    // the episode once (`period`), so each failed retry is only a debug line.
                    // While failing, retry once a second: each retry reopens the data dir.
                    if let Err(e) = store.write_behind(failing || steps.is_multiple_of(FULL_EVERY))
                    {
                        tracing::debug!(error = %e, "write-behind step failed; retrying");
                        next_retry = Instant::now() + RETRY_EVERY;
                    }
                }
            })
            .map_err(|e| {
                StoreError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot start the write-behind thread: {e}"),
                ))
            })?;
        Ok(tokio::spawn(async move {
            let _ = shutdown.changed().await;
            let _ = stop_tx.send(());
            if !matches!(
                tokio::task::spawn_blocking(move || thread.join()).await,
                Ok(Ok(()))
            ) {
                tracing::error!("write-behind thread ended abnormally");
            }
        }))
    }

    fn sweep_and_log(&self) {
        match self.sweep_dedupe(chrono::Utc::now().timestamp()) {
            Ok(n) if n > 0 => tracing::info!(removed = n, "dedupe sweep"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "dedupe sweep failed"),
        }
        match self.sweep_unanswered(chrono::Utc::now().date_naive()) {
            Ok(n) if n > 0 => tracing::info!(removed = n, "unanswered texts sweep"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "unanswered texts sweep failed"),
        }
        let now = chrono::Utc::now();
        match self.sweep_assistant(now.timestamp(), now.date_naive()) {
            Ok(n) if n > 0 => tracing::info!(removed = n, "assistant memory and usage sweep"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "assistant memory and usage sweep failed"),
        }
    }
}
