//! Write-behind periods: how the per-push state kept in memory reaches the disk, all of a push
//! or none of it, and what the store does when the disk refuses.
//!
//! # One push, one period
//! A push changes its subscriber's record, adds to the day's counters and stores its answer,
//! all in memory. Each push does that inside a [`CommitScope`] (a shared hold on the store's
//! commit gate), and a period takes what it writes under the exclusive hold: so the records,
//! counts and answers a period takes are those of whole pushes, never the subscribe of one
//! without the tag its rule added. The period then writes them in **one sled transaction**
//! (records, counter merges, dedupe batches and its own number in `meta`) and syncs the
//! database; a crash leaves each push either fully on disk (its retry gets the stored answer)
//! or not at all (its retry is handled afresh, once). Before this, records, answers and
//! counters went out in separate writes at separate cadences, and a SIGKILL under load could
//! keep a new follower's channel without its tag, or an answer's effects without the answer.
//!
//! # When the disk refuses
//! Nothing taken is forgotten until the sync succeeded: a failed period puts its records and
//! answers back to be written by the next one. sled stops working after its first I/O error
//! until it is reopened, so the next period first reopens the data dir (what sled had not
//! synced is dropped with it; the store's memory still holds all of it) and then writes again.
//! Counters are merged by addition, so a failed period's counts are kept apart with the
//! period's number: if that period did reach the disk after all (a failure after its log
//! write), `meta/period` says so and they are not added twice.
//!
//! While the last write failed, the store is **not writable**: [`Store::check_writable`]
//! refuses new pushes (the callback answers 503 and the platform retries for ~15 s) so that
//! nothing is acknowledged whose effects cannot reach the disk, [`Store::health`] gives the
//! reason to `/healthz` (503) and the failure is logged once when it starts and once when it
//! ends. The same refusal applies when more than [`MAX_UNWRITTEN_ANSWERS`] answers wait in
//! memory (a disk that is slow rather than failing): the memory held for unwritten effects is
//! bounded. Retries of answered pushes are still answered from memory: they change nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard};
use std::time::Duration;

use crate::sync::lock;

use super::counters::{decode_count, tree_key, Pending};
use super::dedupe::EncodedDedupe;
use super::handoff::HandoffChange;
use super::unanswered;
use super::{encode_json, Backend, Store, StoreError};

/// Answers waiting in memory past which new pushes are refused. An unwritten push holds about
/// 1.2 KB (its answer in the pending batch, its index slot, its dirty record), so this bounds
/// that memory near 60 MB: about twelve periods of the fastest load measured here, far more
/// than a healthy disk ever lets pile up.
pub const MAX_UNWRITTEN_ANSWERS: u64 = 50_000;

/// How long [`Store::reopen`] waits for the failed backend's last users to let go.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// `meta` key of the number of the last period written.
const META_PERIOD: &[u8] = b"period";

/// A push's hold on the commit gate: while it lives, no period takes this push's state
/// half-made. Take one before the first effect and drop it after the answer is stored; never
/// hold one across an `.await` or take a second one inside it.
#[must_use = "the scope must live until the push's answer is stored"]
pub struct CommitScope<'a>(#[allow(dead_code)] RwLockReadGuard<'a, ()>);

/// What waits in memory, not yet on disk: what a crash now would lose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unwritten {
    /// Stored answers of pushes.
    pub answers: usize,
    /// Subscriber records with changes.
    pub records: usize,
    /// Counter increments (by day and name), and texts no rule answered (by day and text).
    pub counts: usize,
}

/// Whether the store can write, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub writable: bool,
    /// Why not, in the backend's words (e.g. "No space left on device").
    pub error: Option<String>,
    /// Since when writes fail (unix seconds).
    pub failing_since: Option<i64>,
    pub unwritten: Unwritten,
}

/// What one period wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodStats {
    pub answers: usize,
    pub records: usize,
    pub counts: usize,
}

/// The store's write health and the bookkeeping that needs it.
#[derive(Default)]
pub(super) struct HealthState {
    /// Set while the last write failed: read by every push ([`Store::check_writable`]).
    failing: AtomicBool,
    /// `dedupe_put` calls taken by the last successful period (see `Dedupe::puts`).
    confirmed_puts: AtomicU64,
    /// The number the next period writes into `meta/period`.
    next_period: AtomicU64,
    state: Mutex<Failure>,
}

#[derive(Default)]
struct Failure {
    /// The error of the last failed write, and since when writes fail.
    error: Option<(String, i64)>,
    /// The backend must be reopened before the next write (sled fails until then).
    reopen: bool,
    /// A failed period's counts whose fate is unknown: `(period number, counts)`.
    unconfirmed: Option<(u64, Pending)>,
    /// That period's counts of texts no rule answered (the same fate as `unconfirmed`).
    unconfirmed_unanswered: Option<unanswered::Pending>,
}

impl HealthState {
    fn failed(&self, e: &StoreError, unwritten: Unwritten) {
        let mut f = lock(&self.state);
        f.reopen = true;
        if f.error.is_none() {
            // Once per episode, not per push or per period.
            tracing::error!(
                error = %e,
                answers_waiting = unwritten.answers,
                records_waiting = unwritten.records,
                "store not writable: new pushes are refused with 503 until a write succeeds; \
                 retrying every period"
            );
            f.error = Some((e.to_string(), chrono::Utc::now().timestamp()));
        }
        self.failing.store(true, Ordering::Release);
    }

    fn succeeded(&self, stats: PeriodStats) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut f = lock(&self.state);
        if let Some((_, since)) = f.error.take() {
            tracing::warn!(
                down_secs = chrono::Utc::now().timestamp() - since,
                answers_written = stats.answers,
                records_written = stats.records,
                "store writable again; pushes are accepted"
            );
        }
        self.failing.store(false, Ordering::Release);
    }
}

impl Store {
    /// A push's hold on the commit gate (see the module doc).
    pub fn commit_scope(&self) -> CommitScope<'_> {
        // The gate guards no data of its own: a panic while holding it leaves nothing to
        // repair, so a poisoned gate is simply taken.
        CommitScope(
            self.inner
                .commit_gate
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// `Ok` when a new push may be handled: the last write reached the disk and fewer than
    /// [`MAX_UNWRITTEN_ANSWERS`] answers wait. Two atomic loads: cheap enough for every push.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let h = &self.inner.health;
        if h.failing.load(Ordering::Acquire) {
            let reason = lock(&h.state)
                .error
                .as_ref()
                .map_or_else(|| "the last write failed".to_string(), |(e, _)| e.clone());
            return Err(StoreError::Unavailable(reason));
        }
        if self.over_bound() {
            return Err(StoreError::Unavailable(format!(
                "more than {MAX_UNWRITTEN_ANSWERS} answers wait to be written"
            )));
        }
        Ok(())
    }

    /// More than [`MAX_UNWRITTEN_ANSWERS`] answers given since the last period that reached
    /// the disk took its answers (re-answered keys count twice: a bound, not a census).
    fn over_bound(&self) -> bool {
        let confirmed = self.inner.health.confirmed_puts.load(Ordering::Relaxed);
        self.dedupe_puts().saturating_sub(confirmed) > MAX_UNWRITTEN_ANSWERS
    }

    /// Whether the store can write, and what waits in memory.
    pub fn health(&self) -> Health {
        let h = &self.inner.health;
        let error = lock(&h.state).error.clone();
        let unwritten = self.unwritten();
        let over = self.over_bound();
        Health {
            writable: error.is_none() && !over,
            failing_since: error.as_ref().map(|(_, since)| *since),
            error: error.map(|(e, _)| e).or_else(|| {
                over.then(|| {
                    format!("more than {MAX_UNWRITTEN_ANSWERS} answers wait to be written")
                })
            }),
            unwritten,
        }
    }

    /// What waits in memory, not yet on disk.
    pub fn unwritten(&self) -> Unwritten {
        let unconfirmed = {
            let f = lock(&self.inner.health.state);
            f.unconfirmed.as_ref().map_or(0, |(_, c)| c.len())
                + f.unconfirmed_unanswered.as_ref().map_or(0, |c| c.len())
        };
        Unwritten {
            answers: self.dedupe_unwritten(),
            records: self.subscribers_unwritten(),
            counts: lock(&self.inner.pending_counts).len()
                + self.unanswered_pending_len()
                + unconfirmed,
        }
    }

    /// Counts of a failed period not yet known to be on disk, for reads of the counters.
    pub(super) fn unconfirmed_counts(&self) -> Vec<((chrono::NaiveDate, super::Counter), u64)> {
        lock(&self.inner.health.state)
            .unconfirmed
            .as_ref()
            .map(|(_, c)| c.iter().map(|(k, n)| (k.clone(), *n)).collect())
            .unwrap_or_default()
    }

    /// Texts of a failed period not yet known to be on disk, for reads of the unanswered list.
    pub(super) fn unconfirmed_unanswered(&self) -> Vec<((chrono::NaiveDate, Box<str>), u64)> {
        lock(&self.inner.health.state)
            .unconfirmed_unanswered
            .as_ref()
            .map(|c| c.iter().map(|(k, n)| (k.clone(), *n)).collect())
            .unwrap_or_default()
    }

    /// Syncs the backend to disk (a grant, the outbox: writes made straight to sled that must
    /// be durable before their caller is answered). A failure makes the store not writable
    /// until a period succeeds.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let result = self.db().and_then(|db| Ok(db.db.flush().map(|_| ())?));
        if let Err(e) = &result {
            self.inner.health.failed(e, self.unwritten());
        }
        result
    }

    /// One period (see the module doc); `full` also writes activity-only record changes and
    /// runs the cache's eviction pass.
    pub(super) fn write_period(&self, full: bool) -> Result<PeriodStats, StoreError> {
        // One period at a time (and no dedupe sweep meanwhile); reads of counters wait for the
        // period's merge to be whole.
        let _serial = self.dedupe_gate();
        let _counters = lock(&self.inner.counters_gate);
        let h = &self.inner.health;
        if lock(&h.state).reopen {
            if let Err(e) = self.reopen() {
                h.failed(&e, self.unwritten());
                return Err(e);
            }
        }
        let (take, records, mut counts, mut texts, puts, handoffs) = {
            let _all = self
                .inner
                .commit_gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                self.take_dedupe()?,
                self.take_dirty_subscribers(full),
                self.take_counts(),
                self.take_unanswered(),
                self.dedupe_puts(),
                self.take_handoff_changes()?,
            )
        };
        let number = h.next_period.fetch_add(1, Ordering::Relaxed);
        let (unconfirmed, unconfirmed_texts) = {
            let mut f = lock(&h.state);
            (f.unconfirmed.take(), f.unconfirmed_unanswered.take())
        };
        // Whatever becomes of the write, the tree's counters of these days may change: the
        // reports' cache reads them again (readers wait on the counters gate held here).
        self.counters_changed(
            counts
                .keys()
                .chain(unconfirmed.iter().flat_map(|(_, c)| c.keys()))
                .map(|(day, _)| *day),
        );
        // First learn whether an earlier failed period landed after all (`meta/period` reached
        // its number), before anything of this one is written.
        let resolved = self.db().and_then(|db| {
            let landed = match &unconfirmed {
                Some((n, _)) => read_period(&db)? >= *n,
                None => true,
            };
            Ok((db, landed))
        });
        let db = match resolved {
            Ok((db, landed)) => {
                if let (false, Some((_, old))) = (landed, &unconfirmed) {
                    for (k, v) in old {
                        let slot = counts.entry(k.clone()).or_insert(0);
                        *slot = slot.saturating_add(*v);
                    }
                    for (k, v) in unconfirmed_texts.iter().flatten() {
                        let slot = texts.entry(k.clone()).or_insert(0);
                        *slot = slot.saturating_add(*v);
                    }
                }
                db
            }
            Err(e) => {
                // Nothing of this period was written: all of it goes back as it was.
                self.finish_dedupe(take, None)?;
                self.restore_subscribers(&records);
                self.restore_handoff_changes(&handoffs);
                self.restore_counts(counts);
                self.restore_unanswered(texts);
                {
                    let mut f = lock(&h.state);
                    f.unconfirmed = unconfirmed;
                    f.unconfirmed_unanswered = unconfirmed_texts;
                }
                self.inner.health.failed(&e, self.unwritten());
                return Err(e);
            }
        };
        let written = self.encode_dedupe(&take).and_then(|encoded| {
            write_transaction(
                &db,
                number,
                &Changes {
                    records: &records,
                    counts: &counts,
                    unanswered: &texts,
                    handoffs: &handoffs,
                    dedupe: &encoded,
                },
            )?;
            db.db.flush()?;
            Ok(encoded)
        });
        drop(db);
        match written {
            Ok(encoded) => {
                let stats = PeriodStats {
                    answers: self.finish_dedupe(take, Some(encoded))?,
                    records: records.len(),
                    counts: counts.len() + texts.len(),
                };
                h.confirmed_puts.store(puts, Ordering::Relaxed);
                if full {
                    self.evict_subscribers();
                }
                h.succeeded(stats);
                Ok(stats)
            }
            Err(e) => {
                self.finish_dedupe(take, None)?;
                self.restore_subscribers(&records);
                self.restore_handoff_changes(&handoffs);
                // These counts may be on disk or not: kept apart until a later period can tell.
                let mut f = lock(&h.state);
                f.unconfirmed = Some((number, counts));
                f.unconfirmed_unanswered = Some(texts);
                drop(f);
                self.inner.health.failed(&e, self.unwritten());
                Err(e)
            }
        }
    }

    /// Drops the failed backend and opens the data dir again: sled answers every call with its
    /// first I/O error until then. What sled had not synced goes with it; the store's memory
    /// (pending answers, dirty records, counts, changed hand-off sessions) still holds all of
    /// it, and the next period writes it.
    fn reopen(&self) -> Result<(), StoreError> {
        if let Some(mut old) = self.inner.backend.swap(None) {
            let deadline = std::time::Instant::now() + RELEASE_WAIT;
            // Other threads hold the backend only for one call; wait for them to let go, so
            // sled's file lock is released before the new open asks for it.
            loop {
                match Arc::try_unwrap(old) {
                    Ok(backend) => {
                        drop(backend);
                        break;
                    }
                    Err(still) if std::time::Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still) => {
                        drop(still);
                        break;
                    }
                }
            }
        }
        let backend = Backend::open(&self.inner.dir, &self.inner.cfg)?;
        self.inner.backend.store(Some(Arc::new(backend)));
        // What sled had not synced is gone: the reports read every day again.
        self.inner.counts_cache.clear();
        lock(&self.inner.health.state).reopen = false;
        tracing::info!("data dir reopened after a failed write");
        Ok(())
    }
}

fn read_period(db: &Backend) -> Result<u64, StoreError> {
    Ok(match db.meta.get(META_PERIOD)? {
        None => 0,
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| {
                StoreError::Corrupt(format!("meta/period has {} bytes, not 8", v.len()))
            })?,
    })
}

/// The number the first period after opening `db` writes.
pub(super) fn first_period(db: &Backend) -> Result<u64, StoreError> {
    Ok(read_period(db)?.saturating_add(1))
}

impl HealthState {
    pub(super) fn starting_at(period: u64) -> HealthState {
        HealthState {
            next_period: AtomicU64::new(period),
            ..HealthState::default()
        }
    }
}

/// What one period writes.
struct Changes<'a> {
    records: &'a [Arc<super::Subscriber>],
    counts: &'a Pending,
    unanswered: &'a unanswered::Pending,
    handoffs: &'a [HandoffChange],
    dedupe: &'a EncodedDedupe,
}

/// Writes one period in one transaction over the trees it touches.
fn write_transaction(db: &Backend, number: u64, changes: &Changes<'_>) -> Result<(), StoreError> {
    if changes.records.is_empty()
        && changes.counts.is_empty()
        && changes.unanswered.is_empty()
        && changes.handoffs.is_empty()
        && changes.dedupe.batches.is_empty()
    {
        return Ok(());
    }
    // Encoded once, outside the closure: sled may run it again on a conflict.
    let records: Vec<(&[u8], Vec<u8>)> = changes
        .records
        .iter()
        .map(|s| (s.openid.as_bytes(), encode_json(&**s)))
        .collect();
    let counts: Vec<(Vec<u8>, u64)> = changes
        .counts
        .iter()
        .map(|((day, c), n)| (tree_key(*day, &c.name()), *n))
        .collect();
    let texts = unanswered::encode(changes.unanswered);
    let handoffs: Vec<(&[u8], Option<Vec<u8>>)> = changes
        .handoffs
        .iter()
        .map(|(o, s)| (o.as_bytes(), s.as_ref().map(encode_json)))
        .collect();
    use sled::Transactional;
    (
        &db.meta,
        &db.subscribers,
        &db.counters,
        &db.dedupe_log,
        &db.handoffs,
        &db.unanswered,
    )
        .transaction(|(meta, subscribers, counters, log, sessions, unanswered)| {
            for (k, v) in &records {
                subscribers.insert(*k, v.as_slice())?;
            }
            for (k, n) in &counts {
                // An undecodable old value is replaced rather than wedging every period.
                let old = counters
                    .get(k.as_slice())?
                    .and_then(|v| decode_count(v.as_ref()).ok())
                    .unwrap_or(0);
                counters.insert(k.as_slice(), &old.saturating_add(*n).to_be_bytes())?;
            }
            for (k, n) in &texts {
                let old = unanswered
                    .get(k.as_slice())?
                    .and_then(|v| decode_count(v.as_ref()).ok())
                    .unwrap_or(0);
                unanswered.insert(k.as_slice(), &old.saturating_add(*n).to_be_bytes())?;
            }
            for (seq, _, v) in &changes.dedupe.batches {
                log.insert(&seq.to_be_bytes(), v.as_slice())?;
            }
            for (k, v) in &handoffs {
                match v {
                    Some(v) => sessions.insert(*k, v.as_slice())?,
                    None => sessions.remove(*k)?,
                };
            }
            meta.insert(META_PERIOD, &number.to_be_bytes())?;
            Ok(())
        })?;
    Ok(())
}
