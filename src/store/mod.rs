//! The state store: the only module in the crate that names sled (0.34).
//!
//! Owns everything mpgate remembers between pushes: subscribers, the dedupe memory of answered
//! pushes, paid-article entitlements, WeChat Pay orders and payment anomalies (`orders`),
//! human-handoff sessions, daily counters, the texts no rule answered (`unanswered`, without
//! openids) and the secret that signs article links; and its own upkeep (the write-behind thread and the dedupe sweep,
//! [`Store::spawn_maintenance`]). May depend on std, serde/serde_json, chrono, rand, tracing,
//! tokio's `sync`/`task` (only to be stopped by the server's shutdown) and
//! [`crate::wechat::types`] only — no actix, no HTTP, no rules engine, no protocol logic: what a
//! stored answer means is the caller's (see [`StoredAnswer`]).
//!
//! Its public shape names no sled type: [`StoreError`] is backend-neutral, and
//! `docs/design/store.md` says what a second (networked) backend would need.
//!
//! # Trees and key layouts
//! Keys are byte strings laid out for range scans; `\0` separates variable-length parts, so
//! the parts themselves (openids, article ids, references) are refused if they contain `\0`
//! ([`StoreError::InvalidKey`]).
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `schema_version` | u32 big-endian (current: [`SCHEMA_VERSION`]) |
//! | `meta` | `link_secret` | 32 raw bytes |
//! | `meta` | `analytics_baseline` | present once the analytics' starting point is counted (see `analytics`) |
//! | `subscribers` | `openid` | JSON [`Subscriber`] |
//! | `dedupe_log` | batch sequence number (u64 BE) | a batch of answered pushes (see `dedupe`) |
//! | `entitlements` | `openid \0 article` | JSON [`Entitlement`] (active and revoked) |
//! | `entitled_by_article` | `article \0 openid` | empty — present exactly for *active* grants |
//! | `references` | purchase reference | `openid \0 article` |
//! | `handoffs` | `openid` | JSON [`HandoffSession`] |
//! | `counters` | `YYYY-MM-DD \0 name` | u64 big-endian |
//! | `unanswered` | `YYYY-MM-DD \0 text` (no openid; the overflow entry has an empty text) | u64 big-endian (see `unanswered`) |
//! | `orders` | `out_trade_no` | JSON [`Order`] (every state) |
//! | `orders_by_reader` | `openid \0 article \0` ‖ `time_key(created_at)` ‖ `out_trade_no` | empty |
//! | `orders_by_time` | `time_key(created_at)` ‖ `out_trade_no` | empty |
//! | `orders_open` | `time_key(created_at)` ‖ `out_trade_no` | empty — present exactly for *Created* orders |
//! | `pay_anomalies` | `time_key(at)` ‖ id (u64 BE, unique) | JSON [`PayAnomaly`] |
//! | `pay_anomaly_events` | `event_id \0 kind` | the `pay_anomalies` key it made |
//! | `buyers` | `openid` | paid orders ever, u64 big-endian (written with each payment; see `analytics`) |
//! | `assistant_memory` | `openid` | JSON list of the assistant's remembered turns (see `assistant`) |
//! | `assistant_kept` | `openid` | JSON answer kept for the continue word |
//! | `assistant_usage` | `q \0 YYYY-MM-DD \0 openid` / `t \0 YYYY-MM-DD` | questions / tokens, u64 big-endian |
//!
//! `entitlements`, `entitled_by_article` and `references` are only ever written together in one
//! sled transaction, so the index never disagrees with the records. The order trees are
//! written the same way, and a payment or a refund changes its order, the entitlement trees and
//! its counters in one transaction (see `orders`).
//!
//! # Memory in front of sled
//! The callback's per-push state is kept in memory and written behind, because a sled write or
//! miss per push cost more than the whole protocol layer: the dedupe index and its pending
//! entries (`dedupe`), a bounded cache of subscriber records (`subscribers`), a mirror of the
//! (few) open handoff sessions (`handoff`) and the day's counters (`counters`). Each module's doc
//! says when its writes reach sled.
//!
//! # Value encoding
//! Records are serde_json. They are small (a few hundred bytes), JSON lets a later schema add
//! fields with `#[serde(default)]` without a migration, and an operator can read a dumped tree
//! while debugging. The cost (a few µs per record) is far below the 5 s answer budget and is
//! measured by `benches/store.rs`. Counters are raw u64 big-endian so that `fetch_and_update`
//! can add to them without decoding JSON.
//!
//! # What is durable when
//! - **Grants, revokes, the outbox and the link secret** are synced to disk before the call
//!   returns: the operator API answers 200 only then, so a SIGKILL right after loses nothing.
//! - **Orders and payment anomalies** likewise: every transition (created, prepay id, paid,
//!   refunded, closed, anomaly) is one transaction, synced before it returns. A payment's
//!   grant, a full refund's revoke and their counters (`order:`, `paid:`, `revenue:`,
//!   `refund:`, `pay_anomaly:`, …) are in the order's own transaction, not in the write-behind
//!   counts: a crash never keeps a paid order without its grant or its count, nor the reverse.
//! - **Per-push state** (subscriber state changes, hand-off sessions, counters, texts no rule
//!   answered, stored answers)
//!   reaches disk in write-behind periods (`period`; the upkeep thread runs one every 100 ms):
//!   the pushes' changes, whole, in one transaction, synced before the period ends. A crash loses the
//!   pushes of the last ≤ 100 ms entirely (their retries are handled again), never part of one.
//! - **Subscriber activity** (`last_seen`, `message_count`) goes with every tenth period: a
//!   crash may lose up to ~1 s of it. The analytics' marks on a record (its cohort, the first
//!   activity of a day) are state changes: they go with the counts they made.
//! - A write that fails (full or failing disk) keeps everything in memory and makes the store
//!   not writable until a period succeeds; see `period` for what callers get meanwhile.
//! - [`Store::flush`] (shutdown, an operator-created record, a hand-off closed from the CLI)
//!   runs a period with everything due. An operator's hand-off close through the admin API
//!   reaches disk with the next period (≤ 100 ms).

//! # Lock: one process per data dir (a property of this backend)
//! sled is an embedded database: it holds an exclusive file lock on the data dir for as long as
//! a handle is open, so exactly one process reads and writes it. [`Store::open`] waits up to 2 s
//! for the lock (sled lets go a moment after the last handle drops), then answers
//! [`StoreError::Locked`]: normally the running server holds the dir, and the CLI's writing
//! commands say to use its admin API instead.
//!
//! Much of the design leans on that exclusivity: the in-memory fronts (dedupe index, subscriber
//! cache, handoff mirror, pending counts) are the truth between write-behind steps because no
//! other process writes behind their back, and the outbox has one sender loop. A backend shared
//! by several instances (a database server behind a load balancer) has no such lock: it would
//! coordinate per row instead (claims with leases for dedupe, `FOR UPDATE SKIP LOCKED` for the
//! outbox, a lock around the access-token refresh), keep only caches in memory, and let the CLI
//! run against a live server. `docs/design/store.md` spells that out.
//!
//! # Schema
//! `meta/schema_version` is stamped on first open. A data dir written by a newer mpgate is
//! refused ([`StoreError::NewerSchema`]); an older one is migrated one version at a time
//! (a `match` on the found version; v0 = a fresh, empty dir, which only gets the stamp).

mod analytics;
pub mod assistant;
mod counters;
mod dedupe;
mod entitlements;
mod handoff;
mod maintenance;
mod orders;
mod period;
pub mod platform;
mod subscribers;
pub mod unanswered;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;
use std::time::{Duration, Instant};

pub use analytics::{DayCounts, REPORT_KINDS};
pub use counters::Counter;
pub use dedupe::StoredAnswer;
pub use entitlements::{Entitlement, GrantOutcome, RevokeOutcome};
pub use handoff::{HandoffSession, HandoffState};
pub use orders::{
    CloseOutcome, Order, OrderFilter, OrderState, PaidOutcome, PayAnomaly, RefundNote,
    RefundOutcome, PAYMENT_SOURCE,
};
pub use period::{CommitScope, Health, Unwritten};
pub use subscribers::{SubscribeOutcome, Subscriber, Touch};

/// The schema this build writes and understands.
/// v2: the dedupe memory moved from `dedupe` + `dedupe_by_time` (JSON per entry) to batches in
/// `dedupe_log`.
pub const SCHEMA_VERSION: u32 = 2;

/// Default sled page cache (`MPGATE_CACHE_MB`). The hot per-push state lives in mpgate's own
/// memory (see "Memory in front of sled"), so sled's cache mostly serves entitlement checks and
/// subscriber records outside the cache; 8 MiB keeps them warm without dominating the RSS.
pub const DEFAULT_CACHE_MB: u64 = 8;

/// Default dedupe retention (`MPGATE_DEDUPE_RETENTION_SECS`).
pub const DEFAULT_DEDUPE_RETENTION_SECS: i64 = 600;

/// sled's background flush interval: bounds what a crash can lose of the non-flushed writes.
const FLUSH_EVERY_MS: u64 = 200;

/// How long [`Store::open`] waits for a held lock before answering [`StoreError::Locked`].
const LOCK_WAIT: Duration = Duration::from_secs(2);

const META_SCHEMA: &[u8] = b"schema_version";
const META_LINK_SECRET: &[u8] = b"link_secret";

/// Tuning for [`Store::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// sled's page cache size, in bytes (default 64 MiB).
    pub cache_capacity_bytes: u64,
    /// How long a dedupe entry is kept before [`Store::sweep_dedupe`] removes it (default
    /// 10 minutes: the platform retries within ~15 s, and the replay window refuses pushes older
    /// than 5 minutes anyway).
    pub dedupe_retention_secs: i64,
    /// How many days texts no rule answered are kept (`MPGATE_UNANSWERED_DAYS`, default 30);
    /// 0: none are counted, and the upkeep's sweep deletes those kept.
    pub unanswered_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_bytes: DEFAULT_CACHE_MB * 1024 * 1024,
            dedupe_retention_secs: DEFAULT_DEDUPE_RETENTION_SECS,
            unanswered_days: unanswered::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Everything that can go wrong in the store, worded for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (normally the running mpgate server) has the data dir open.
    #[error(
        "data dir {} is locked: the running mpgate server (or another process) holds it; \
         stop that process or use its admin API instead",
        dir.display()
    )]
    Locked { dir: PathBuf },
    /// The data dir was written by a newer mpgate.
    #[error(
        "data dir written by a newer mpgate (schema {found}); this build understands up to {supported}"
    )]
    NewerSchema { found: u32, supported: u32 },
    /// A stored value could not be decoded.
    #[error("data dir is corrupt: {0}")]
    Corrupt(String),
    /// A key part contains a byte the key layout reserves.
    #[error("invalid {what}: must be non-empty and must not contain a NUL byte")]
    InvalidKey { what: &'static str },
    /// The data dir's files could not be created, read or written: a full or failing disk,
    /// permissions. The [`std::io::ErrorKind`] is kept (`e.kind()`), so a caller can tell a
    /// full disk from a bad one.
    #[error("data dir I/O error: {0}")]
    Io(std::io::Error),
    /// The store cannot take writes now: the last write to disk failed (a full or failing
    /// disk) and has not succeeded since, or too much is waiting to be written. Temporary: the
    /// store retries by itself; `/healthz` says why.
    #[error("store not writable: {0}")]
    Unavailable(String),
    /// An order transition named an `out_trade_no` the store does not hold.
    #[error("no order `{0}`")]
    UnknownOrder(String),
    /// [`Store::order_create`] was given an `out_trade_no` already stored.
    #[error("order `{0}` exists already")]
    DuplicateOrder(String),
    /// Any other failure inside the storage backend (a bug it reports, an operation it does
    /// not support), in the backend's words.
    #[error("storage backend error: {0}")]
    Backend(String),
}

// The conversions from sled's errors are an implementation detail of this backend: they let
// `?` work inside the store's files, and they are where sled's error shape ends. Nothing in
// `StoreError` names sled, so callers (and a second backend) never see it.

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::Io(io),
            sled::Error::Corruption { at, .. } => StoreError::Corrupt(match at {
                Some(at) => format!("the storage engine found a damaged page at {at}"),
                None => "the storage engine found a damaged page".into(),
            }),
            sled::Error::CollectionNotFound(name) => StoreError::Corrupt(format!(
                "tree {} is missing",
                String::from_utf8_lossy(&name)
            )),
            sled::Error::Unsupported(what) => StoreError::Backend(what),
            sled::Error::ReportableBug(what) => {
                StoreError::Backend(format!("the storage engine reports a bug: {what}"))
            }
        }
    }
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        }
    }
}

/// Lengths of the main trees, for the admin API and health output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub subscribers: usize,
    pub entitlements: usize,
    pub dedupe_entries: usize,
}

/// The state store. Cheap to clone: every clone shares one sled database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the data dir is, to reopen it after a write failure (see `period`).
    dir: PathBuf,
    cfg: StoreConfig,
    /// The open backend; `None` only while it is being reopened after a failed write.
    backend: ArcSwapOption<Backend>,
    subscriber_cache: subscribers::SubscriberCache,
    dedupe: dedupe::Dedupe,
    handoffs_mem: handoff::HandoffMirror,
    /// In-memory counts not yet merged into `counters` (the callback hot path only locks this).
    pending_counts: Mutex<counters::Pending>,
    /// Texts no rule answered, not yet merged into `unanswered`, and the recent days' texts.
    unanswered: Mutex<unanswered::Memory>,
    /// Serialises periods with reads of counters so a read never sees a half-merged period.
    counters_gate: Mutex<()>,
    /// The reports' copy of the counters' days (see `analytics`).
    counts_cache: analytics::CountsCache,
    /// Held shared by each push while it makes its effects and stores its answer, and
    /// exclusively by a write-behind period while it takes what it writes: so a period holds
    /// all of a push or none of it ([`Store::commit_scope`]).
    commit_gate: RwLock<()>,
    /// Whether the last write reached the disk, and what is waiting (see `period`).
    health: period::HealthState,
}

/// The sled handles: one database and its trees. Replaced as a whole when the store reopens
/// the data dir after a failed write (sled keeps failing after its first I/O error until it
/// is reopened).
struct Backend {
    db: sled::Db,
    meta: sled::Tree,
    subscribers: sled::Tree,
    dedupe_log: sled::Tree,
    entitlements: sled::Tree,
    entitled_by_article: sled::Tree,
    references: sled::Tree,
    handoffs: sled::Tree,
    counters: sled::Tree,
    unanswered: sled::Tree,
    orders: sled::Tree,
    orders_by_reader: sled::Tree,
    orders_by_time: sled::Tree,
    orders_open: sled::Tree,
    pay_anomalies: sled::Tree,
    pay_anomaly_events: sled::Tree,
    buyers: sled::Tree,
}

impl Backend {
    fn open(dir: &Path, cfg: &StoreConfig) -> Result<Backend, StoreError> {
        let db = open_db(dir, cfg)?;
        let meta = db.open_tree("meta")?;
        migrate(&db, &meta)?;
        Ok(Backend {
            subscribers: db.open_tree("subscribers")?,
            dedupe_log: db.open_tree("dedupe_log")?,
            entitlements: db.open_tree("entitlements")?,
            entitled_by_article: db.open_tree("entitled_by_article")?,
            references: db.open_tree("references")?,
            handoffs: db.open_tree("handoffs")?,
            counters: db.open_tree("counters")?,
            unanswered: db.open_tree("unanswered")?,
            orders: db.open_tree("orders")?,
            orders_by_reader: db.open_tree("orders_by_reader")?,
            orders_by_time: db.open_tree("orders_by_time")?,
            orders_open: db.open_tree("orders_open")?,
            pay_anomalies: db.open_tree("pay_anomalies")?,
            pay_anomaly_events: db.open_tree("pay_anomaly_events")?,
            buyers: db.open_tree("buyers")?,
            meta,
            db,
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the data dir, checks its schema and migrates it if older.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ))
        })?;
        let backend = Backend::open(dir, &cfg)?;
        analytics::baseline(&backend)?;
        let now = chrono::Utc::now().timestamp();
        let dedupe = dedupe::Dedupe::load(
            &backend.dedupe_log,
            now.saturating_sub(cfg.dedupe_retention_secs),
        )?;
        let inner = Inner {
            dir: dir.to_path_buf(),
            subscriber_cache: subscribers::SubscriberCache::new(),
            dedupe,
            handoffs_mem: handoff::HandoffMirror::load(&backend.handoffs)?,
            pending_counts: Mutex::new(counters::Pending::default()),
            unanswered: Mutex::new(unanswered::Memory::default()),
            counters_gate: Mutex::new(()),
            counts_cache: analytics::CountsCache::default(),
            commit_gate: RwLock::new(()),
            health: period::HealthState::starting_at(period::first_period(&backend)?),
            backend: ArcSwapOption::from_pointee(backend),
            cfg,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// The open backend, or [`StoreError::Unavailable`] while it is being reopened.
    fn db(&self) -> Result<Arc<Backend>, StoreError> {
        self.inner.backend.load_full().ok_or_else(|| {
            StoreError::Unavailable("the data dir is being reopened after a failed write".into())
        })
    }

    /// Writes everything kept in memory (dedupe entries, subscriber activity, counters) to sled
    /// and forces it all to disk: one write-behind period with everything due.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.write_period(true).map(|_| ())
    }

    /// One write-behind step; [`Store::spawn_maintenance`] runs it every 100 ms off the request
    /// path, with `full` every tenth time. See `period` for what a step writes and how: in short,
    /// the state changes, counters and stored answers of whole pushes, in one transaction,
    /// synced to disk before anything is forgotten from memory. Subscriber activity and cache
    /// eviction only when `full` (an activity count is not worth more).
    pub fn write_behind(&self, full: bool) -> Result<(), StoreError> {
        self.write_period(full).map(|_| ())
    }

    /// Bytes the data dir occupies, as sled accounts them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db()?.db.size_on_disk()?)
    }

    /// Tree lengths. sled counts by scanning, so this is O(n): for admin pages, not hot paths.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let db = self.db()?;
        Ok(StoreStats {
            // Records created by pushes since the last period count too.
            subscribers: db.subscribers.len() + self.subscribers_only_in_memory(&db)?,
            entitlements: db.entitlements.len(),
            dedupe_entries: self.dedupe_len(),
        })
    }

    /// The secret that signs article links: generated on first call, stable afterwards.
    pub fn link_secret(&self) -> Result<[u8; 32], StoreError> {
        let db = self.db()?;
        if let Some(v) = db.meta.get(META_LINK_SECRET)? {
            return decode_secret(&v);
        }
        let mut fresh = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut fresh[..]);
        // CAS so two first callers racing agree on one secret.
        let secret = match db.meta.compare_and_swap(
            META_LINK_SECRET,
            None as Option<&[u8]>,
            Some(&fresh[..]),
        )? {
            Ok(()) => fresh,
            Err(cas) => match cas.current {
                Some(v) => decode_secret(&v)?,
                None => return Err(StoreError::Corrupt("link secret vanished".into())),
            },
        };
        self.flush()?;
        Ok(secret)
    }
}

fn decode_secret(v: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("meta/link_secret has {} bytes, not 32", v.len())))
}

/// Opens sled, waiting up to [`LOCK_WAIT`] for a held lock. sled releases its file lock from
/// background threads a moment after the last handle drops, so a reopen in the same process
/// (a restart in tests, say) can briefly meet its own lock; a real other holder keeps it, and
/// then the answer is [`StoreError::Locked`].
fn open_db(dir: &Path, cfg: &StoreConfig) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_capacity_bytes)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| map_open_error(e, dir));
        match opened {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// sled reports a held lock as an `Io` error ("could not acquire lock on …"); name it.
fn map_open_error(e: sled::Error, dir: &Path) -> StoreError {
    if let sled::Error::Io(io) = &e {
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock")
        {
            return StoreError::Locked {
                dir: dir.to_path_buf(),
            };
        }
    }
    e.into()
}

/// Brings the data dir to [`SCHEMA_VERSION`], one step at a time, or refuses a newer one.
fn migrate(db: &sled::Db, meta: &sled::Tree) -> Result<(), StoreError> {
    let mut version = match meta.get(META_SCHEMA)? {
        None => 0,
        Some(v) => {
            let bytes = <[u8; 4]>::try_from(v.as_ref()).map_err(|_| {
                StoreError::Corrupt(format!("meta/schema_version has {} bytes, not 4", v.len()))
            })?;
            u32::from_be_bytes(bytes)
        }
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    while version < SCHEMA_VERSION {
        match version {
            // v0 is a fresh, empty data dir: nothing to transform, only the stamp to write.
            0 => {}
            // v1 → v2: the per-entry dedupe trees are replaced by `dedupe_log`. Their entries are
            // not carried over: they only matter for retries in the seconds around the upgrade.
            1 => {
                db.drop_tree("dedupe")?;
                db.drop_tree("dedupe_by_time")?;
            }
            n => {
                return Err(StoreError::Corrupt(format!(
                    "no migration from schema {n} (this build understands up to {SCHEMA_VERSION})"
                )))
            }
        }
        version += 1;
        meta.insert(META_SCHEMA, &version.to_be_bytes())?;
    }
    db.flush()?;
    Ok(())
}

type TxResult<T> = Result<T, sled::transaction::ConflictableTransactionError<StoreError>>;

/// Ends a transaction with `e` (sled runs nothing of it).
fn abort(e: StoreError) -> sled::transaction::ConflictableTransactionError<StoreError> {
    sled::transaction::ConflictableTransactionError::Abort(e)
}

/// Joins key parts with `\0`, refusing parts that are empty or contain `\0`.
fn join_key(parts: &[(&'static str, &str)]) -> Result<Vec<u8>, StoreError> {
    let mut key = Vec::with_capacity(parts.iter().map(|(_, p)| p.len() + 1).sum());
    for (i, (what, part)) in parts.iter().enumerate() {
        check_part(what, part)?;
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    Ok(key)
}

fn check_part(what: &'static str, part: &str) -> Result<(), StoreError> {
    if part.is_empty() || part.as_bytes().contains(&0) {
        return Err(StoreError::InvalidKey { what });
    }
    Ok(())
}

fn decode_json<T: serde::de::DeserializeOwned>(tree: &str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v)
        .map_err(|e| StoreError::Corrupt(format!("undecodable record in tree {tree}: {e}")))
}

fn encode_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of strings and integers into a Vec cannot fail.
    serde_json::to_vec(value).expect("store records serialise to JSON")
}

/// Maps an i64 timestamp to 8 bytes whose byte order is the numeric order (sign bit flipped).
fn time_key(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1u64 << 63)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_shareable() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<Store>();
    }

    #[test]
    fn time_key_orders_like_numbers() {
        let ts = [i64::MIN, -5, -1, 0, 1, 1_700_000_000, i64::MAX];
        for w in ts.windows(2) {
            assert!(time_key(w[0]) < time_key(w[1]), "{} vs {}", w[0], w[1]);
        }
    }

    #[test]
    fn join_key_refuses_nul_and_empty() {
        assert!(join_key(&[("openid", "a\0b")]).is_err());
        assert!(join_key(&[("openid", "")]).is_err());
        assert_eq!(
            join_key(&[("a", "x"), ("b", "yz")]).ok(),
            Some(b"x\0yz".to_vec())
        );
    }
}
