//! Dedupe memory of answered pushes, so a platform retry gets the same answer and causes no
//! second side effect.
//!
//! Every answered push leaves one entry: its dedupe key and the [`StoredAnswer`] the caller
//! gave (answer time, an opaque body, the caller's flag), given back unchanged. Entries are
//! looked up on every push and almost never found (only retries hit), so the design keeps sled
//! off the push path:
//!
//! - **In memory**, an index of one `u64` slot per entry (no keys, no reply bodies), split over
//!   [`SHARDS`] independently locked tables, plus the entries answered since the last write,
//!   already encoded as a batch holds them ([`Pending`]).
//! - **In sled** (`dedupe_log`), the entries in batches: every write-behind period (the store's
//!   upkeep thread runs one every 100 ms, off the request path: [`Store::spawn_maintenance`];
//!   see `period`) appends the pending entries, in the order they were answered, as values of
//!   about [`BATCH_BYTES`], keyed by a sequence number (u64 BE), in the same transaction as the
//!   pushes' other effects. Only once that is synced does the index name the batches; a failed
//!   period puts its entries back to pending.
//!   Taking the writes off the push path is what makes the callback cheap (docs/performance-history.md,
//!   "write-behind").
//! - On open, the index is rebuilt from the batches still within the retention.
//!
//! # Index layout
//! A 64-bit hash of the dedupe key (foldhash's `quality` variant, seeded per process) picks the
//! shard (top 4 bits) and a 40-bit fingerprint (low 40 bits). A slot is
//! `fingerprint << 24 | batch`, `batch` being the low 24 bits of the number of the batch holding
//! the entry, or [`PENDING`] for an entry still in memory. Each shard is a
//! `hashbrown::HashTable<u64>` probed by the fingerprint: 8 bytes plus one control byte per
//! bucket, 10–21 bytes per entry at hashbrown's load factors (7/16–7/8).
//! The previous single `HashMap<u64, (u32, u32)>` took 17 per bucket (19–39 per entry) and
//! doubled all of it at once under the one lock every push waited on; a shard doubles 1/16 of
//! it, stalling 1/16 of the pushes. Measured with 520,000 entries: 16 × 65,536 buckets, 9.4 MB
//! against 17.8 MB, and the process's peak RSS 40 MB against 56 MB.
//! Entries carry no time of their own in the index: a flushed entry is as old as its batch's
//! newest entry (batches are written in time order), a pending one keeps its time in its
//! [`PendingEntry`].
//!
//! Fingerprints collide (two keys, one fingerprint), so slots are never merged or overwritten
//! because a fingerprint matches: a shard may hold several slots with one fingerprint, a
//! re-answered key keeps its older slot next to the new one, and a lookup checks every
//! candidate: the pending entries first, by full key, then the candidate batches newest first,
//! comparing the full key. A collision therefore costs a batch read, never a wrong answer, and
//! the newest answer for a key always wins.
//! The last [`INFLATED_KEEP`] batches a lookup inflated stay in memory: the retries of pushes
//! answered together arrive together, and all but the first read the batch there.
//!
//! [`Store::sweep_dedupe`] deletes the batches at the front of the log whose newest entry is
//! older than the retention, drops the slots pointing at them, and forgets expired pending
//! entries. Expiry is per batch, so an entry may outlive the retention by as long as its
//! batch's newest entry does (≤ 100 ms of pushes normally) and is answered meanwhile.
//!
//! Durability: an entry reaches disk with the next period (≤ 100 ms, synced), with its push's
//! effects; a crash inside that window lets the retry handle the push afresh, once.

use crate::sync::lock;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

// `quality`, not `fast`: the fingerprint and shard come straight from the hash's bits.
use foldhash::quality::RandomState;

use hashbrown::HashTable;

use super::{Store, StoreError};

/// Target size of one batch before compression. Replies repeat a lot (the same rule texts, XML
/// skeletons and openids), so LZ4 shrinks a batch several times. That matters twice: sled's
/// write cost is per byte (~12 ns/B here), and sled 0.34 keeps large values resident whatever
/// its cache capacity (measured: 100 MB written as 32 KiB values → 110 MB RSS; as 1 KiB values
/// → 19 MB). Small uncompressed values instead cost a sled insert each (11 % of push CPU).
/// A retry answered from sled inflates its whole batch: with 32 KiB batches a retry cost more
/// CPU than handling the push afresh (84 vs 70 µs per request under load); with 8 KiB, 57.
const BATCH_BYTES: usize = 8 * 1024;

/// Batches kept inflated for lookups ([`Dedupe::inflated`]): at most ~8 KiB each, so about
/// half a MiB.
const INFLATED_KEEP: usize = 64;

/// Refuses to inflate a stored batch claiming more than this (a corrupt length prefix).
const MAX_INFLATED: usize = 16 * 1024 * 1024;

/// Independently locked parts of the index. A power of two: the shard is picked by hash bits.
const SHARDS: usize = 16;

/// Bits of a slot holding the batch number's low bits; the rest hold the fingerprint.
const BATCH_BITS: u32 = 24;
const BATCH_MASK: u64 = (1 << BATCH_BITS) - 1;

/// Bits of fingerprint a slot keeps: all that is left of a `u64` next to the batch bits.
const FP_BITS: u32 = 64 - BATCH_BITS;

/// The slot's batch bits for an entry that is pending (not yet written to a batch). No batch
/// number has these low bits ([`next_after`] skips them).
const PENDING: u32 = (1 << BATCH_BITS) - 1;

/// The answer given to a push, kept to answer its retries identically: what
/// [`Store::dedupe_put`] is given, [`Store::dedupe_get`] gives back, field for field, whether
/// the entry is still in memory, written to sled, or read back after a restart.
///
/// The store gives the body and the flag no meaning: the caller (the callback pipeline) decides
/// what it stores and how to turn it back into a reply. `Body` is `Arc<str>` for what comes out;
/// what goes in may borrow (`StoredAnswer<&str>`), since the store copies the body into its
/// pending batch anyway and the push path should not allocate for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer<Body = Arc<str>> {
    /// When the push was answered (unix seconds).
    pub at: i64,
    /// The answer, opaque to the store (`""` is a valid body).
    pub body: Body,
    /// A flag the caller keeps with the body (the pipeline marks replies stored without their
    /// head). Entries written before the flag existed read back with it clear.
    pub headless: bool,
}

impl<Body: AsRef<str>> StoredAnswer<Body> {
    /// The same answer with its body borrowed.
    pub fn borrowed(&self) -> StoredAnswer<&str> {
        StoredAnswer {
            at: self.at,
            body: self.body.as_ref(),
            headless: self.headless,
        }
    }
}

/// The entries of one shard answered since the last flush: encoded as a batch holds them
/// ([`encode_entry`]), back to back in one buffer, with an index by key. A put copies the answer
/// once and allocates nothing of its own, and a flush writes the bytes as they are. (A
/// `HashMap<Box<str>, StoredAnswer>` cost two allocations per push, freed by the writer thread
/// into the workers' malloc arenas; dropping and rehashing it was a fifth of the writer's time.)
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    entries: Vec<PendingEntry>,
    /// The live entries, as indices into `entries`, hashed by fingerprint ([`probe`]).
    by_key: HashTable<usize>,
}

/// The pending entries a write-behind period took from the shards ([`Store::take_dedupe`]).
pub(super) struct DedupeTake {
    work: Vec<(usize, Arc<Pending>)>,
}

/// A period's entries as the batches it writes: `(sequence number, newest answer time,
/// packed value)`, and per work item of the take, which entry went to which batch.
pub(super) struct EncodedDedupe {
    pub(super) batches: Vec<(u64, i64, Vec<u8>)>,
    written: Vec<Vec<(usize, u64)>>,
    next_seq: u64,
}

/// One entry of a [`Pending`] buffer.
#[derive(Debug, Clone, Copy)]
struct PendingEntry {
    /// Its place in the order of [`Store::dedupe_put`] calls, so a flush writes entries in
    /// answer order (see [`Dedupe::puts`]).
    order: u64,
    fp: u64,
    at: i64,
    /// Where its encoding lies in [`Pending::bytes`].
    start: usize,
    end: usize,
    /// False once the key was answered again (the newer entry is live) or swept.
    live: bool,
}

impl Pending {
    /// An empty buffer sized like `other`: the next 100 ms usually hold as many answers.
    fn sized_like(other: &Pending) -> Pending {
        Pending {
            bytes: Vec::with_capacity(other.bytes.len()),
            entries: Vec::with_capacity(other.entries.len()),
            by_key: HashTable::with_capacity(other.by_key.len()),
        }
    }

    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn encoded(&self, e: &PendingEntry) -> &[u8] {
        &self.bytes[e.start..e.end]
    }

    /// The live entry for `key` (whose fingerprint is `fp`).
    fn find(&self, key: &[u8], fp: u64) -> Option<usize> {
        self.by_key
            .find(probe(fp), |&i| {
                let e = &self.entries[i];
                e.fp == fp && entry_key(self.encoded(e)) == Some(key)
            })
            .copied()
    }

    fn contains(&self, key: &[u8], fp: u64) -> bool {
        self.find(key, fp).is_some()
    }

    fn get(&self, key: &[u8], fp: u64) -> Result<Option<StoredAnswer>, StoreError> {
        let Some(i) = self.find(key, fp) else {
            return Ok(None);
        };
        let (e, _) = decode_entry(self.encoded(&self.entries[i]))?;
        Ok(Some(e.to_answer()?))
    }

    /// Appends an answer for `key` (fingerprint `fp`, put `order`th); a live entry for the same
    /// key is superseded. Returns whether there was one.
    fn put(&mut self, key: &str, fp: u64, order: u64, answer: &StoredAnswer<&str>) -> bool {
        let start = self.bytes.len();
        encode_entry(&mut self.bytes, key, answer);
        self.index(key.as_bytes(), fp, order, answer.at, start)
    }

    /// [`Pending::put`] of an entry already encoded (one a failed flush gives back).
    fn push_encoded(&mut self, key: &[u8], fp: u64, order: u64, at: i64, encoded: &[u8]) -> bool {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(encoded);
        self.index(key, fp, order, at, start)
    }

    /// Records the entry encoded at the end of `bytes`, from `start`.
    fn index(&mut self, key: &[u8], fp: u64, order: u64, at: i64, start: usize) -> bool {
        let index = self.entries.len();
        self.entries.push(PendingEntry {
            order,
            fp,
            at,
            start,
            end: self.bytes.len(),
            live: true,
        });
        match self.find(key, fp) {
            Some(old) => {
                self.entries[old].live = false;
                if let Some(slot) = self.by_key.find_mut(probe(fp), |&i| i == old) {
                    *slot = index;
                }
                true
            }
            None => {
                let entries = &self.entries;
                self.by_key
                    .insert_unique(probe(fp), index, |&i| probe(entries[i].fp));
                false
            }
        }
    }

    /// Forgets the live entry at `index`.
    fn remove(&mut self, index: usize) {
        let fp = self.entries[index].fp;
        self.entries[index].live = false;
        if let Ok(slot) = self.by_key.find_entry(probe(fp), |&i| i == index) {
            slot.remove();
        }
    }

    /// Indices of the live entries, in the order they were put.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(i, _)| i)
    }
}

/// The in-memory side of the dedupe memory. Lock order: `flush_gate`, then `log`, then one
/// shard at a time; every hold is a few hash probes except a sweep's pass over one shard. sled
/// I/O happens outside all locks but `flush_gate`.
pub(super) struct Dedupe {
    /// Keyed per process, so nobody can aim pushes at one shard or fingerprint.
    hasher: RandomState,
    shards: [Mutex<Shard>; SHARDS],
    log: Mutex<Log>,
    /// Serialises flushes and sweeps (the 100 ms job, an explicit flush, the sweep job and
    /// shutdown may overlap). A sweep judges slots against the batch numbers it read, which a
    /// concurrent flush would move on.
    flush_gate: Mutex<()>,
    /// Which hash bits are the fingerprint and which pick the shard: normally 40 bits and all
    /// 16 shards; tests narrow both to make collisions common.
    fp_mask: u64,
    shard_mask: u64,
    /// The batches the latest lookups inflated, by batch number, oldest first. The platform
    /// retries a push ~5 s after its first attempt, so the retries of the pushes answered in
    /// one 100 ms step (one batch, or a few) come in together: the first inflates the batch
    /// and the others read it here. Batches never change once written, so a copy is never
    /// stale; one a sweep has deleted is only reached through a slot read before the sweep.
    inflated: Mutex<VecDeque<(u64, Arc<Batch>)>>,
    /// Counts [`Store::dedupe_put`] calls. A flush writes its entries in this order: answers
    /// given together share a batch, and so do their retries' lookups. In the shards' hash
    /// order, consecutive retries each needed another batch.
    puts: AtomicU64,
}

/// One part of the index with the entries it routes to memory.
///
/// Invariant: for every fingerprint, the number of [`PENDING`] slots equals the number of
/// distinct keys with that fingerprint live in `pending` ∪ `flushing` (such slots are
/// interchangeable), so a key in either buffer always finds a PENDING slot with its fingerprint
/// and a lookup that finds none skips the buffer probe.
#[derive(Default)]
struct Shard {
    slots: HashTable<u64>,
    /// Entries not yet handed to a flush.
    pending: Pending,
    /// Entries a running flush is writing; still answered from here until it finishes.
    flushing: Option<Arc<Pending>>,
}

/// The batches in sled.
struct Log {
    /// In `seq` order, with their newest entry's time.
    batches: VecDeque<(u64, i64)>,
    /// The number the next batch gets; every batch written has a smaller one.
    next_seq: u64,
}

/// Where a key's slots live.
#[derive(Debug, Clone, Copy)]
struct Place {
    shard: usize,
    fp: u64,
}

fn slot(fp: u64, batch: u32) -> u64 {
    (fp << BATCH_BITS) | u64::from(batch)
}

fn slot_fp(slot: u64) -> u64 {
    slot >> BATCH_BITS
}

fn slot_batch(slot: u64) -> u32 {
    // The mask makes the truncation exact.
    (slot & BATCH_MASK) as u32
}

/// The table hash of a fingerprint. Slots hold only the fingerprint, so the table must be able
/// to rehash from it; the multiply spreads its (already random) bits over the high bits
/// hashbrown uses as the control tag and the low bits it uses as the position.
fn probe(fp: u64) -> u64 {
    fp.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn rehash(slot: &u64) -> u64 {
    probe(slot_fp(*slot))
}

#[cfg(test)]
thread_local! {
    /// Test knob: `(fingerprint bits, shard bits)` for stores opened on this thread, so tests
    /// can make fingerprint collisions the rule instead of a 1-in-10¹² event.
    static NARROW: std::cell::Cell<Option<(u32, u32)>> = const { std::cell::Cell::new(None) };
}

/// `(fingerprint mask, shard mask)` for a store opened now.
fn masks() -> (u64, u64) {
    let (fp_bits, shard_bits) = narrowed().unwrap_or((FP_BITS, SHARDS.trailing_zeros()));
    (
        (1u64 << fp_bits.min(FP_BITS)) - 1,
        (1u64 << shard_bits.min(SHARDS.trailing_zeros())) - 1,
    )
}

#[cfg(test)]
fn narrowed() -> Option<(u32, u32)> {
    NARROW.with(|n| n.get())
}

#[cfg(not(test))]
fn narrowed() -> Option<(u32, u32)> {
    None
}

impl Dedupe {
    /// Rebuilds the index from the batches in `tree`. The live batches are those from the first
    /// one whose newest entry is not older than `cutoff`: the same rule as
    /// [`Store::sweep_dedupe`], so a restart neither revives what a sweep would have forgotten
    /// nor forgets a key's newest answer while keeping an older one. Batches before them stay in
    /// the log until the next sweep deletes them.
    pub(super) fn load(tree: &sled::Tree, cutoff: i64) -> Result<Dedupe, StoreError> {
        let (fp_mask, shard_mask) = masks();
        let mut d = Dedupe {
            hasher: RandomState::default(),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            log: Mutex::new(Log {
                batches: VecDeque::new(),
                next_seq: 0,
            }),
            flush_gate: Mutex::new(()),
            fp_mask,
            shard_mask,
            inflated: Mutex::new(VecDeque::with_capacity(INFLATED_KEEP)),
            puts: AtomicU64::new(0),
        };
        let mut live = false;
        let mut batches = VecDeque::new();
        let mut next_seq = 0;
        for kv in tree.iter() {
            let (k, v) = kv?;
            let seq = decode_seq(&k)?;
            next_seq = next_seq.max(next_after(seq));
            let max_at = Batch::max_at(&v)?;
            batches.push_back((seq, max_at));
            live = live || max_at >= cutoff;
            if !live {
                continue;
            }
            let batch = Batch::parse(&v)?;
            for e in batch.entries() {
                let e = e?;
                let p = d.place(e.key);
                let shard = crate::sync::get_mut(&mut d.shards[p.shard]);
                shard
                    .slots
                    .insert_unique(probe(p.fp), slot(p.fp, low(seq)), rehash);
            }
        }
        let log = crate::sync::get_mut(&mut d.log);
        log.batches = batches;
        log.next_seq = next_seq;
        Ok(d)
    }

    fn place(&self, key: &str) -> Place {
        let h = self.hasher.hash_one(key.as_bytes());
        Place {
            // Masked to at most SHARDS - 1, so the cast is exact.
            shard: ((h >> 60) & self.shard_mask) as usize,
            fp: h & self.fp_mask,
        }
    }

    fn shard(&self, i: usize) -> Result<MutexGuard<'_, Shard>, StoreError> {
        Ok(lock(&self.shards[i]))
    }

    fn log(&self) -> Result<MutexGuard<'_, Log>, StoreError> {
        Ok(lock(&self.log))
    }
}

fn decode_seq(k: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("dedupe_log key has {} bytes, not 8", k.len())))
}

/// The low bits of a batch number, as a slot stores them.
fn low(seq: u64) -> u32 {
    (seq & BATCH_MASK) as u32
}

/// How many batch numbers before `next_seq` the latest batch with low bits `low_bits` is
/// (1 for the newest batch; 0 means "none yet": `next_seq`'s own low bits).
///
/// Only the low 24 bits are kept, so this is exact while the live batches span fewer than
/// 2²⁴ − 1 numbers: at ~10 entries a batch and a 10-minute retention that is 280,000 pushes a
/// second, far beyond what one server answers. Past that, a slot would be read as a later
/// batch with the same low bits. That is harmless: a lookup compares full keys, so such a batch
/// yields either nothing (a miss, as for an expired entry) or an answer to the same key written
/// later than the slot's entry; and the key's newest answer cannot be misread while an older
/// one is read right, since the older is further back. A sweep may then keep a slot too long
/// or drop it early: again a miss at worst.
fn age(next_seq: u64, low_bits: u32) -> u64 {
    u64::from(low(next_seq)).wrapping_sub(u64::from(low_bits)) & BATCH_MASK
}

/// The batch number whose low bits are `low_bits`, given that it was written before `next_seq`
/// and fewer than 2²⁴ numbers ago (see [`age`]).
fn full_seq(next_seq: u64, low_bits: u32) -> u64 {
    next_seq.wrapping_sub(age(next_seq, low_bits))
}

/// The next batch number after `seq` whose low bits are not the [`PENDING`] marker.
fn next_after(seq: u64) -> u64 {
    let n = seq.wrapping_add(1);
    if low(n) == PENDING {
        n.wrapping_add(1)
    } else {
        n
    }
}

/// One `dedupe_log` value: `max_at: i64 BE ‖ lz4(entries)` (lz4_flex block format with the
/// inflated size prepended), entries being
/// `key_len: u16 BE ‖ key ‖ at: i64 BE ‖ body_len: u32 BE ‖ body`, where the top bit of
/// `body_len` is the caller's [`StoredAnswer::headless`] flag (bodies are far below 2 GiB;
/// batches written before the flag have it clear).
/// A parsed value holds only the inflated entries: [`Batch::max_at`] reads the head alone.
struct Batch {
    rest: Vec<u8>,
}

struct Entry<'a> {
    key: &'a str,
    at: i64,
    headless: bool,
    /// Checked as UTF-8 only by [`Entry::body`]: a lookup reads one body of the batch, and
    /// checking every body it scanned past was ~7 % of server CPU when answering retries.
    body: &'a [u8],
}

impl<'a> Entry<'a> {
    fn body(&self) -> Result<&'a str, StoreError> {
        std::str::from_utf8(self.body).map_err(|_| corrupt_batch())
    }

    fn to_answer(&self) -> Result<StoredAnswer, StoreError> {
        Ok(StoredAnswer {
            at: self.at,
            body: Arc::from(self.body()?),
            headless: self.headless,
        })
    }
}

impl Batch {
    fn parse(v: &[u8]) -> Result<Batch, StoreError> {
        let (_max_at, packed) = split(v, 8)?;
        let (size, _) = split(packed, 4)?;
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
        if usize::try_from(size).map_or(true, |n| n > MAX_INFLATED) {
            return Err(corrupt_batch());
        }
        let rest = lz4_flex::decompress_size_prepended(packed).map_err(|_| corrupt_batch())?;
        Ok(Batch { rest })
    }

    /// The newest entry's time, read without inflating the batch.
    fn max_at(v: &[u8]) -> Result<i64, StoreError> {
        let (head, _) = split(v, 8)?;
        Ok(i64::from_be_bytes(
            head.try_into().map_err(|_| corrupt_batch())?,
        ))
    }

    fn entries(&self) -> impl Iterator<Item = Result<Entry<'_>, StoreError>> {
        let mut rest = self.rest.as_slice();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            match decode_entry(rest) {
                Ok((entry, r)) => {
                    rest = r;
                    Some(Ok(entry))
                }
                Err(e) => {
                    rest = &[];
                    Some(Err(e))
                }
            }
        })
    }
}

/// The first entry encoded in `v` ([`encode_entry`]) and what follows it.
fn decode_entry(v: &[u8]) -> Result<(Entry<'_>, &[u8]), StoreError> {
    let (len, r) = split(v, 2)?;
    let (key, r) = split(r, usize::from(u16::from_be_bytes([len[0], len[1]])))?;
    let (at, r) = split(r, 8)?;
    let (blen, r) = split(r, 4)?;
    let blen = u32::from_be_bytes([blen[0], blen[1], blen[2], blen[3]]);
    let headless = blen & FLAG_BIT != 0;
    let blen = blen & !FLAG_BIT;
    let (body, r) = split(r, usize::try_from(blen).map_err(|_| corrupt_batch())?)?;
    let entry = Entry {
        key: std::str::from_utf8(key).map_err(|_| corrupt_batch())?,
        at: i64::from_be_bytes(at.try_into().map_err(|_| corrupt_batch())?),
        headless,
        body,
    };
    Ok((entry, r))
}

/// The key bytes of an encoded entry, unchecked: for comparing with a key in hand.
fn entry_key(v: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*v.first()?, *v.get(1)?]));
    v.get(2..2 + len)
}

fn split(v: &[u8], n: usize) -> Result<(&[u8], &[u8]), StoreError> {
    if v.len() < n {
        return Err(corrupt_batch());
    }
    Ok(v.split_at(n))
}

fn corrupt_batch() -> StoreError {
    StoreError::Corrupt("undecodable batch in tree dedupe_log".into())
}

/// The stored form of a batch: its newest time, then the compressed entries.
fn pack(max_at: i64, raw: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::compress_prepend_size(raw);
    let mut v = Vec::with_capacity(8 + packed.len());
    v.extend_from_slice(&max_at.to_be_bytes());
    v.extend_from_slice(&packed);
    v
}

/// The `body_len` bit holding [`StoredAnswer::headless`] (see [`Batch`]).
const FLAG_BIT: u32 = 1 << 31;

/// Appends one entry to a batch (or a [`Pending`] buffer) under construction.
fn encode_entry(out: &mut Vec<u8>, key: &str, answer: &StoredAnswer<&str>) {
    let StoredAnswer { at, body, headless } = *answer;
    // Keys are MsgIds or openid+time+event (well under 64 KiB, checked by `dedupe_put`);
    // replies are bounded by the platform's limits (a few KiB), far under 2 GiB.
    let klen = u16::try_from(key.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&klen.to_be_bytes());
    out.extend_from_slice(&key.as_bytes()[..usize::from(klen)]);
    out.extend_from_slice(&at.to_be_bytes());
    let blen = u32::try_from(body.len()).map_or(FLAG_BIT - 1, |n| n.min(FLAG_BIT - 1));
    let flag = if headless { FLAG_BIT } else { 0 };
    out.extend_from_slice(&(blen | flag).to_be_bytes());
    out.extend_from_slice(&body.as_bytes()[..blen as usize]);
}

impl Store {
    /// The stored answer for `key`, if the push was answered within the retention.
    pub fn dedupe_get(&self, key: &str) -> Result<Option<StoredAnswer>, StoreError> {
        let d = &self.inner.dedupe;
        let p = d.place(key);
        // Almost every push misses: one probe, no allocation (the Vec stays empty).
        let mut candidates: Vec<u32> = Vec::new();
        {
            let s = d.shard(p.shard)?;
            let mut pending = false;
            for &v in s.slots.iter_hash(probe(p.fp)) {
                if slot_fp(v) != p.fp {
                    continue;
                }
                match slot_batch(v) {
                    PENDING => pending = true,
                    b => candidates.push(b),
                }
            }
            // The pending buffers hold the newest answers, so they are asked first.
            if pending {
                if let Some(found) = s.pending.get(key.as_bytes(), p.fp)? {
                    return Ok(Some(found));
                }
                if let Some(flushing) = &s.flushing {
                    if let Some(found) = flushing.get(key.as_bytes(), p.fp)? {
                        return Ok(Some(found));
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Ok(None);
        }
        // Flushed candidates: read their batches outside the locks (only retries and
        // fingerprint collisions get here), newest first so a re-answered key gets its newest
        // answer. `next_seq` may have moved on since the probe; `full_seq` only needs it to be
        // past the candidates.
        let next_seq = d.log()?.next_seq;
        let mut seqs: Vec<u64> = candidates.iter().map(|&b| full_seq(next_seq, b)).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        for seq in seqs {
            let Some(batch) = self.inflated_batch(seq)? else {
                // Gone: deleted by a sweep since the probe (it was expiring).
                continue;
            };
            for e in batch.entries() {
                let e = e?;
                if e.key == key {
                    return Ok(Some(e.to_answer()?));
                }
            }
        }
        Ok(None)
    }

    /// Batch `seq`, inflated: from [`Dedupe::inflated`], else read from sled and kept there.
    fn inflated_batch(&self, seq: u64) -> Result<Option<Arc<Batch>>, StoreError> {
        let d = &self.inner.dedupe;
        {
            let kept = lock(&d.inflated);
            if let Some((_, batch)) = kept.iter().rev().find(|(s, _)| *s == seq) {
                return Ok(Some(batch.clone()));
            }
        }
        let Some(v) = self.db()?.dedupe_log.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let batch = Arc::new(Batch::parse(&v)?);
        let mut kept = lock(&d.inflated);
        // Two retries may have inflated the same batch at once; keep one copy.
        if !kept.iter().any(|(s, _)| *s == seq) {
            if kept.len() == INFLATED_KEEP {
                kept.pop_front();
            }
            kept.push_back((seq, batch.clone()));
        }
        Ok(Some(batch))
    }

    /// Remembers `answer` for `key` (replacing any earlier one); [`Store::dedupe_get`] gives it
    /// back as it was put. Memory only until the next [`Store::flush_dedupe`].
    pub fn dedupe_put<Body: AsRef<str>>(
        &self,
        key: &str,
        answer: &StoredAnswer<Body>,
    ) -> Result<(), StoreError> {
        self.dedupe_put_str(key, &answer.borrowed())
    }

    /// [`Store::dedupe_put`], compiled once for every body type.
    fn dedupe_put_str(&self, key: &str, answer: &StoredAnswer<&str>) -> Result<(), StoreError> {
        // A batch stores the key's length in 16 bits; a longer key would make it unreadable.
        if key.is_empty() || key.len() > usize::from(u16::MAX) {
            return Err(StoreError::InvalidKey { what: "dedupe key" });
        }
        let d = &self.inner.dedupe;
        let p = d.place(key);
        let order = d.puts.fetch_add(1, Ordering::Relaxed);
        let mut guard = d.shard(p.shard)?;
        let s = &mut *guard;
        let already_pending = s.pending.put(key, p.fp, order, answer)
            || s.flushing
                .as_ref()
                .is_some_and(|f| f.contains(key.as_bytes(), p.fp));
        // A key already pending or being flushed has its PENDING slot (the shard invariant).
        // An older flushed slot for the key stays: lookups ask the pending buffers first.
        if !already_pending {
            s.slots
                .insert_unique(probe(p.fp), slot(p.fp, PENDING), rehash);
        }
        Ok(())
    }

    /// Writes the pending entries to sled as batches (one write-behind period: see `period`).
    /// Returns how many entries it wrote.
    pub fn flush_dedupe(&self) -> Result<usize, StoreError> {
        Ok(self.write_period(false)?.answers)
    }

    /// Serialises periods with sweeps: a sweep must not delete batches a period is writing.
    pub(super) fn dedupe_gate(&self) -> MutexGuard<'_, ()> {
        lock(&self.inner.dedupe.flush_gate)
    }

    /// Takes the pending entries of every shard for a period (called with the commit gate held
    /// exclusively, so every entry taken is of a push whose effects are complete). They stay
    /// visible to lookups (`flushing`) until [`Store::finish_dedupe`].
    pub(super) fn take_dedupe(&self) -> Result<DedupeTake, StoreError> {
        let d = &self.inner.dedupe;
        let mut work: Vec<(usize, Arc<Pending>)> = Vec::new();
        for i in 0..SHARDS {
            let mut s = d.shard(i)?;
            if !s.pending.is_empty() {
                let next = Pending::sized_like(&s.pending);
                let taken = Arc::new(std::mem::replace(&mut s.pending, next));
                s.flushing = Some(taken.clone());
                work.push((i, taken));
            }
        }
        Ok(DedupeTake { work })
    }

    /// Encodes the taken entries as batches, in the order they were answered, numbered from the
    /// log's next sequence number. Nothing is written: the period writes the batches with the
    /// rest of its transaction.
    pub(super) fn encode_dedupe(&self, take: &DedupeTake) -> Result<EncodedDedupe, StoreError> {
        let work = &take.work;
        let mut out = EncodedDedupe {
            batches: Vec::new(),
            written: vec![Vec::new(); work.len()],
            next_seq: self.inner.dedupe.log()?.next_seq,
        };
        if work.is_empty() {
            return Ok(out);
        }
        // Per entry of `work`, in answer order: (order, work index, entry index).
        let mut in_order: Vec<(u64, usize, usize)> = work
            .iter()
            .enumerate()
            .flat_map(|(w, (_, p))| p.live().map(move |j| (p.entries[j].order, w, j)))
            .collect();
        in_order.sort_unstable_by_key(|&(o, ..)| o);
        let mut buf: Vec<u8> = Vec::with_capacity(2 * BATCH_BYTES);
        let mut in_buf: Vec<(usize, usize)> = Vec::new();
        let mut max_at = i64::MIN;
        let mut seq = out.next_seq;
        for (k, &(_, w, j)) in in_order.iter().enumerate() {
            let p = &work[w].1;
            let e = &p.entries[j];
            buf.extend_from_slice(p.encoded(e));
            in_buf.push((w, j));
            max_at = max_at.max(e.at);
            // A batch ends before the entry that would take it past BATCH_BYTES.
            let next_fits = in_order.get(k + 1).is_some_and(|&(_, w, j)| {
                let next = &work[w].1.entries[j];
                buf.len() + (next.end - next.start) <= BATCH_BYTES
            });
            if next_fits {
                continue;
            }
            out.batches.push((seq, max_at, pack(max_at, &buf)));
            for (w, j) in in_buf.drain(..) {
                out.written[w].push((j, seq));
            }
            seq = next_after(seq);
            buf.clear();
            max_at = i64::MIN;
        }
        out.next_seq = seq;
        Ok(out)
    }

    /// Ends a period's part of the dedupe memory. `durable` is the period's batches once they
    /// are on disk: the index now names them. `None` (the period failed): every entry goes back
    /// to pending, with its PENDING slot, for the next period to write again (newer re-puts
    /// win); nothing is forgotten. Returns how many entries were written.
    pub(super) fn finish_dedupe(
        &self,
        take: DedupeTake,
        durable: Option<EncodedDedupe>,
    ) -> Result<usize, StoreError> {
        let d = &self.inner.dedupe;
        if let Some(encoded) = durable.as_ref().filter(|e| !e.batches.is_empty()) {
            // Before any slot names the new batches, so a lookup reading such a slot reads a
            // `next_seq` past it.
            let mut log = d.log()?;
            log.next_seq = encoded.next_seq;
            log.batches.extend(
                encoded
                    .batches
                    .iter()
                    .map(|&(seq, max_at, _)| (seq, max_at)),
            );
        }
        let mut count = 0;
        for (w, (i, taken)) in take.work.iter().enumerate() {
            let mut guard = d.shard(*i)?;
            let s = &mut *guard;
            if let Some(encoded) = &durable {
                for &(j, seq) in &encoded.written[w] {
                    let e = &taken.entries[j];
                    let key = entry_key(taken.encoded(e)).unwrap_or_default();
                    // A re-put meanwhile is pending again and keeps the key's PENDING slot.
                    if s.pending.contains(key, e.fp) {
                        continue;
                    }
                    // Any PENDING slot with the fingerprint will do: they are interchangeable,
                    // one per pending key (the shard invariant).
                    if let Some(v) = s.slots.find_mut(probe(e.fp), |v| *v == slot(e.fp, PENDING)) {
                        *v = slot(e.fp, low(seq));
                    }
                    count += 1;
                }
            } else {
                for j in taken.live() {
                    let e = &taken.entries[j];
                    let encoded = taken.encoded(e);
                    let key = entry_key(encoded).unwrap_or_default();
                    if !s.pending.contains(key, e.fp) {
                        s.pending.push_encoded(key, e.fp, e.order, e.at, encoded);
                    }
                }
            }
            s.flushing = None;
        }
        Ok(count)
    }

    /// How many answers were ever put (the order counter): with the count a period took, the
    /// store's memory bound.
    pub(super) fn dedupe_puts(&self) -> u64 {
        self.inner.dedupe.puts.load(Ordering::Relaxed)
    }

    /// Entries answered and not yet on disk (pending or being written): what a crash now would
    /// lose, and what the store's memory bound counts.
    pub(super) fn dedupe_unwritten(&self) -> usize {
        self.inner
            .dedupe
            .shards
            .iter()
            .map(|s| {
                let s = lock(s);
                s.pending.live().count() + s.flushing.as_ref().map_or(0, |f| f.live().count())
            })
            .sum()
    }

    /// Forgets entries answered before `now - retention` and deletes batches holding nothing
    /// newer. Returns how many entries were forgotten.
    ///
    /// Batches expire from the front of the log, so a key's answers expire oldest first: a
    /// lookup never finds an older answer once the newest is gone. For the same reason an
    /// expired pending entry is kept (and flushed) while a live batch may hold an older answer
    /// to its key.
    pub fn sweep_dedupe(&self, now: i64) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(self.inner.cfg.dedupe_retention_secs);
        let d = &self.inner.dedupe;
        let gate = self.dedupe_gate();
        let (expired, next_seq, live_span) = {
            let mut log = d.log()?;
            let mut expired = Vec::new();
            while let Some(&(seq, max_at)) = log.batches.front() {
                if max_at >= cutoff {
                    break;
                }
                expired.push(seq);
                log.batches.pop_front();
            }
            let first_live = log.batches.front().map_or(log.next_seq, |&(seq, _)| seq);
            (
                expired,
                log.next_seq,
                log.next_seq.saturating_sub(first_live),
            )
        };
        let mut removed = 0;
        for i in 0..SHARDS {
            let mut guard = d.shard(i)?;
            let Shard { slots, pending, .. } = &mut *guard;
            let before = slots.len();
            slots.retain(|v| match slot_batch(*v) {
                PENDING => true,
                b => (1..=live_span).contains(&age(next_seq, b)),
            });
            removed += before - slots.len();
            let expired_pending: Vec<usize> = pending
                .live()
                .filter(|&j| {
                    let e = &pending.entries[j];
                    e.at < cutoff
                        && slots
                            .find(probe(e.fp), |v| {
                                slot_fp(*v) == e.fp && slot_batch(*v) != PENDING
                            })
                            .is_none()
                })
                .collect();
            for j in expired_pending {
                let fp = pending.entries[j].fp;
                pending.remove(j);
                if let Ok(entry) = slots.find_entry(probe(fp), |v| *v == slot(fp, PENDING)) {
                    entry.remove();
                    removed += 1;
                }
            }
        }
        // Nothing names the expired batches any more, and flushes only write newer numbers.
        drop(gate);
        for seq in &expired {
            self.db()?.dedupe_log.remove(seq.to_be_bytes())?;
        }
        Ok(removed)
    }

    /// Entries currently remembered (index slots: a key answered again after its first answer
    /// was flushed counts twice until that batch expires).
    pub(super) fn dedupe_len(&self) -> usize {
        self.inner
            .dedupe
            .shards
            .iter()
            .map(|s| lock(s).slots.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use std::collections::HashMap;

    use proptest::prelude::*;
    use std::path::Path;

    const T0: i64 = 1_700_000_000;

    /// Opens a store whose index keeps only `fp_bits` of fingerprint in `1 << shard_bits`
    /// shards, so distinct keys share fingerprints.
    fn open_narrow(dir: &Path, retention: i64, fp_bits: u32, shard_bits: u32) -> Store {
        NARROW.with(|n| n.set(Some((fp_bits, shard_bits))));
        let store = Store::open(
            dir,
            StoreConfig {
                dedupe_retention_secs: retention,
                ..StoreConfig::default()
            },
        );
        NARROW.with(|n| n.set(None));
        store.expect("open")
    }

    fn reply(at: i64, body: &str) -> StoredAnswer {
        StoredAnswer {
            at,
            body: Arc::from(body),
            headless: true,
        }
    }

    fn body_of(store: &Store, key: &str) -> Option<String> {
        store
            .dedupe_get(key)
            .expect("get")
            .map(|r| r.body.to_string())
    }

    #[test]
    fn batch_encoding_round_trips() {
        let mut buf = Vec::new();
        let a = StoredAnswer {
            at: 1_700_000_000,
            body: Arc::from("<xml>回复 🙂</xml>"),
            headless: false,
        };
        let b = StoredAnswer {
            at: 1_700_000_005,
            body: Arc::from(""),
            headless: true,
        };
        let c = StoredAnswer {
            at: 1_700_000_004,
            body: Arc::from("<MsgType><![CDATA[text]]></MsgType></xml>"),
            headless: true,
        };
        encode_entry(&mut buf, "msg:1", &a.borrowed());
        encode_entry(&mut buf, "oA\0:17", &b.borrowed());
        encode_entry(&mut buf, "msg:3", &c.borrowed());
        let packed = pack(b.at, &buf);
        let batch = Batch::parse(&packed).expect("parses");
        assert_eq!(Batch::max_at(&packed).expect("head"), b.at);
        let got: Vec<(String, i64, String, bool)> = batch
            .entries()
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.key.to_string(),
                    e.at,
                    e.body().expect("utf-8").to_string(),
                    e.headless,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("msg:1".into(), a.at, a.body.to_string(), false),
                ("oA\0:17".into(), b.at, String::new(), true),
                ("msg:3".into(), c.at, c.body.to_string(), true),
            ]
        );
        // A batch from before the flag: the same layout, the bit clear. Its entries are whole.
        let mut old = Vec::new();
        old.extend_from_slice(&5u16.to_be_bytes());
        old.extend_from_slice(b"msg:9");
        old.extend_from_slice(&7i64.to_be_bytes());
        old.extend_from_slice(&11u32.to_be_bytes());
        old.extend_from_slice(b"<xml></xml>");
        let batch = Batch::parse(&pack(7, &old)).expect("parses");
        let e = batch.entries().next().expect("one").expect("entry");
        assert_eq!(
            (e.key, e.at, e.body().expect("utf-8"), e.headless),
            ("msg:9", 7, "<xml></xml>", false)
        );
    }

    #[test]
    fn batch_numbers_are_recovered_from_their_low_bits_across_the_wrap() {
        let wrap = 1u64 << BATCH_BITS;
        for next in [1u64, 5, wrap - 2, wrap, wrap + 3, 7 * wrap + 1, 7 << 40] {
            for back in 1..4u64 {
                let Some(seq) = next.checked_sub(back) else {
                    continue;
                };
                assert_eq!(full_seq(next, low(seq)), seq, "next {next}, seq {seq}");
                assert_eq!(age(next, low(seq)), back, "next {next}, seq {seq}");
            }
        }
        // The marker's low bits are never used by a batch.
        assert_eq!(next_after(wrap - 2), wrap);
        assert_eq!(low(next_after(wrap - 2)), 0);
        assert_eq!(next_after(5), 6);
        // A slot keeps 40 bits of fingerprint and 24 of batch, and gives both back.
        let fp = (1u64 << FP_BITS) - 1;
        assert_eq!(slot_fp(slot(fp, PENDING)), fp);
        assert_eq!(slot_batch(slot(fp, PENDING)), PENDING);
        assert_eq!(slot_batch(slot(fp, low(wrap + 3))), 3);
    }

    #[test]
    fn truncated_or_corrupt_batches_are_errors_not_panics() {
        let mut raw = Vec::new();
        for i in 0..20 {
            let answer = StoredAnswer {
                at: 1,
                body: "<xml>the same reply, again and again</xml>",
                headless: false,
            };
            encode_entry(&mut raw, &format!("k{i}"), &answer);
        }
        let v = pack(1, &raw);
        assert!(v.len() < raw.len() / 2, "repetitive replies compress");
        let all_ok = |v: &[u8]| {
            Batch::parse(v)
                .map(|b| b.entries().all(|e| e.and_then(|e| e.body()).is_ok()))
                .unwrap_or(false)
        };
        assert!(all_ok(&v));
        for cut in 0..v.len() {
            assert!(!all_ok(&v[..cut]), "cut at {cut}");
        }
        // A length prefix claiming gigabytes is refused before anything is allocated.
        let mut huge = v.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Batch::parse(&huge).is_err());
        // Flipped bytes never panic.
        for i in 8..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x5a;
            let _ = all_ok(&bad);
        }
    }

    #[test]
    fn keys_sharing_one_fingerprint_each_get_their_own_answer() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        // No fingerprint bits and one shard: every key collides with every other.
        let store = open_narrow(dir.path(), 600, 0, 0);
        for i in 0..30 {
            store
                .dedupe_put(&format!("k{i}"), &reply(T0, &format!("a{i}")))
                .expect("put");
            if i % 7 == 6 {
                store.flush_dedupe().expect("flush");
            }
        }
        let check = |store: &Store, round: &str| {
            for i in 0..30 {
                let want = if i % 3 == 0 {
                    format!("b{i}")
                } else {
                    format!("a{i}")
                };
                assert_eq!(body_of(store, &format!("k{i}")), Some(want), "k{i} {round}");
            }
            assert_eq!(body_of(store, "k30"), None, "{round}");
        };
        // Re-answer every third key: some were flushed, some are still pending.
        for i in (0..30).step_by(3) {
            store
                .dedupe_put(&format!("k{i}"), &reply(T0 + 1, &format!("b{i}")))
                .expect("re-put");
        }
        check(&store, "pending");
        assert_eq!(store.flush_dedupe().expect("flush"), 30 - 28 + 10);
        check(&store, "flushed");
        store.flush().expect("flush");
        drop(store);
        let store = open_narrow(dir.path(), i64::MAX / 2, 0, 0);
        check(&store, "reopened");
    }

    #[test]
    fn sweeping_a_stale_re_put_never_revives_the_older_answer() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let store = open_narrow(dir.path(), 100, 0, 0);
        // Answered late, flushed; then answered again with an earlier time (clocks step back).
        store
            .dedupe_put("k", &reply(T0 + 500, "first"))
            .expect("put");
        store.flush_dedupe().expect("flush");
        store.dedupe_put("k", &reply(T0, "second")).expect("re-put");
        // "second" is past the retention, but forgetting it would bring back "first".
        store.sweep_dedupe(T0 + 300).expect("sweep");
        assert_eq!(body_of(&store, "k"), Some("second".into()));
        // Once the batch holding "first" expires, both go.
        store.sweep_dedupe(T0 + 601).expect("sweep");
        assert_eq!(body_of(&store, "k"), None);
        assert_eq!(store.dedupe_len(), 0);
    }

    #[test]
    fn retries_of_flushed_answers_read_kept_batches_and_a_sweep_still_forgets() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        // Two fingerprint bits: most lookups compare keys in several batches.
        let store = open_narrow(dir.path(), 100, 2, 0);
        // ~3 KiB answers: two per batch, so 200 answers fill more batches than are kept.
        let answer = |i: usize, round: &str| format!("{round}{i}:{}", "回".repeat(1000));
        let n = 200;
        assert!(n / 2 > INFLATED_KEEP);
        for i in 0..n {
            store
                .dedupe_put(&format!("k{i}"), &reply(T0, &answer(i, "a")))
                .expect("put");
        }
        store.flush_dedupe().expect("flush");
        // Forwards, backwards, then forwards again: every pass evicts what the next one reads.
        let order: Vec<usize> = (0..n).chain((0..n).rev()).chain(0..n).collect();
        for &i in &order {
            assert_eq!(
                body_of(&store, &format!("k{i}")),
                Some(answer(i, "a")),
                "k{i}"
            );
        }
        // A re-answer lands in a newer batch; the older, kept one must not win.
        store
            .dedupe_put("k7", &reply(T0 + 50, &answer(7, "b")))
            .expect("re-put");
        store.flush_dedupe().expect("flush");
        assert_eq!(body_of(&store, "k7"), Some(answer(7, "b")));
        assert_eq!(body_of(&store, "k8"), Some(answer(8, "a")));
        // Expired batches are forgotten even though copies of them are still kept.
        store.sweep_dedupe(T0 + 101).expect("sweep");
        for i in (0..n).filter(|&i| i != 7) {
            assert_eq!(
                body_of(&store, &format!("k{i}")),
                None,
                "k{i} after the sweep"
            );
        }
        assert_eq!(body_of(&store, "k7"), Some(answer(7, "b")));
    }

    #[test]
    fn a_flush_writes_answers_in_the_order_they_were_given() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let store = open_narrow(dir.path(), 600, 40, 4);
        // ~2 KiB answers, three or four per batch, from keys spread over all the shards.
        let n = 60;
        for i in 0..n {
            store
                .dedupe_put(&format!("m:{i}"), &reply(T0, &"x".repeat(2000)))
                .expect("put");
        }
        store.flush_dedupe().expect("flush");
        let d = &store.inner.dedupe;
        let batch_of = |key: &str| {
            let p = d.place(key);
            let s = d.shard(p.shard).expect("shard");
            let found = s.slots.find(probe(p.fp), |v| slot_fp(*v) == p.fp).copied();
            slot_batch(found.expect("a slot"))
        };
        let batches: Vec<u32> = (0..n).map(|i| batch_of(&format!("m:{i}"))).collect();
        assert!(
            batches.windows(2).all(|w| w[0] <= w[1]),
            "batches by answer order: {batches:?}"
        );
        assert!(batches[n - 1] > batches[0] + 10, "{batches:?}");
    }

    #[test]
    fn a_slot_read_as_the_wrong_batch_is_a_miss_not_a_wrong_answer() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let store = open_narrow(dir.path(), 600, 0, 0);
        store.dedupe_put("a", &reply(T0, "for a")).expect("put");
        store.flush_dedupe().expect("flush");
        // Pretend 2²⁴ batches went by and the latest, with the same low bits as "a"'s batch,
        // holds another key: the slot for "a" now reads that batch.
        let later = 1u64 << BATCH_BITS;
        let mut raw = Vec::new();
        encode_entry(&mut raw, "b", &reply(T0, "for b").borrowed());
        store
            .db()
            .expect("open")
            .dedupe_log
            .insert(later.to_be_bytes(), pack(T0, &raw))
            .expect("insert");
        store.inner.dedupe.log().expect("log").next_seq = later + 1;
        assert_eq!(store.dedupe_get("a").expect("get"), None);
        // Sweeping such a window neither panics nor invents anything.
        store.sweep_dedupe(T0).expect("sweep");
        assert_eq!(store.dedupe_get("a").expect("get"), None);
    }

    struct Done<'a>(&'a std::sync::atomic::AtomicUsize);

    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }

    /// Three threads re-answer their own keys while a fourth flushes without pause: every
    /// lookup must see the thread's latest answer, whether it is pending, being flushed or in a
    /// batch (a re-put during a flush must keep the key's PENDING slot).
    fn re_puts_racing_flushes(fp_bits: u32, shard_bits: u32) {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let store = open_narrow(dir.path(), 600, fp_bits, shard_bits);
        let rounds = 30;
        let writers_done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..3 {
                let store = store.clone();
                let writers_done = &writers_done;
                scope.spawn(move || {
                    // Counts this writer out even when an assertion fails, so the flusher stops.
                    let _done = Done(writers_done);
                    for round in 0..rounds {
                        for i in 0..20 {
                            let key = format!("t{t}:{i}");
                            let body = format!("{key}:{round}");
                            store.dedupe_put(&key, &reply(T0, &body)).expect("put");
                            // Keys of this thread are only written here: the newest is known.
                            for j in 0..20 {
                                let back = format!("t{t}:{j}");
                                let want = match (j <= i, round) {
                                    (true, _) => Some(format!("{back}:{round}")),
                                    (false, 0) => None,
                                    (false, _) => Some(format!("{back}:{}", round - 1)),
                                };
                                assert_eq!(body_of(&store, &back), want);
                            }
                        }
                    }
                });
            }
            let store = store.clone();
            let writers_done = &writers_done;
            scope.spawn(move || {
                while writers_done.load(std::sync::atomic::Ordering::Acquire) < 3 {
                    store.flush_dedupe().expect("flush");
                }
            });
        });
        store.flush_dedupe().expect("flush");
        for t in 0..3 {
            for i in 0..20 {
                let key = format!("t{t}:{i}");
                let want = format!("{key}:{}", rounds - 1);
                assert_eq!(body_of(&store, &key), Some(want));
            }
        }
    }

    #[test]
    fn re_puts_racing_flushes_answer_the_newest() {
        re_puts_racing_flushes(FP_BITS, 4);
    }

    #[test]
    fn re_puts_racing_flushes_answer_the_newest_under_collisions() {
        re_puts_racing_flushes(3, 1);
    }

    const KEYS: u8 = 16;
    const RETENTION: i64 = 200;

    #[derive(Debug, Clone)]
    enum Op {
        Put { key: u8, at: u16, body: u8 },
        Get(u8),
        Flush,
        Sweep(u16),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..KEYS, 0..400u16, any::<u8>())
                .prop_map(|(key, at, body)| Op::Put { key, at, body }),
            3 => (0..KEYS).prop_map(Op::Get),
            2 => Just(Op::Flush),
            1 => (0..600u16).prop_map(Op::Sweep),
            1 => Just(Op::Reopen),
        ]
    }

    /// The newest answer per key, and whether the retention has passed it (then the store may
    /// have forgotten it, but must not answer anything else).
    type Model = HashMap<u8, (StoredAnswer, bool)>;

    fn check_key(store: &Store, model: &Model, k: u8, after: &str) -> Result<(), TestCaseError> {
        let got = store.dedupe_get(&format!("key{k}")).expect("get");
        // Bodies are long: name them by their head in a failure.
        let head = |r: &StoredAnswer| r.body.chars().take(12).collect::<String>();
        match model.get(&k) {
            None => prop_assert!(
                got.is_none(),
                "key{} after {}: got {:?}",
                k,
                after,
                got.as_ref().map(head)
            ),
            Some((want, false)) => prop_assert!(
                got.as_ref() == Some(want),
                "key{} after {}: got {:?}, want {}",
                k,
                after,
                got.as_ref().map(head),
                head(want)
            ),
            Some((want, true)) => prop_assert!(
                got.is_none() || got.as_ref() == Some(want),
                "key{} after {}: expired, got {:?}, newest {}",
                k,
                after,
                got.as_ref().map(head),
                head(want)
            ),
        }
        Ok(())
    }

    fn check(store: &Store, model: &Model, after: &str) -> Result<(), TestCaseError> {
        for k in 0..KEYS {
            check_key(store, model, k, after)?;
        }
        Ok(())
    }

    fn expire(model: &mut Model, cutoff: i64) {
        for (r, expired) in model.values_mut() {
            *expired = *expired || r.at < cutoff;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_dedupe_memory_agrees_with_a_map_even_when_fingerprints_collide(
            ops in proptest::collection::vec(op(), 1..60),
            fp_bits in 0..3u32,
        ) {
            let dir = tempfile::TempDir::new().expect("tempdir");
            // Times straddle the real clock's retention cutoff, so a reopen forgets some.
            let base = chrono::Utc::now().timestamp() - 300;
            let mut store = open_narrow(dir.path(), RETENTION, fp_bits, 1);
            let mut model = Model::new();
            for (n, op) in ops.iter().enumerate() {
                let after = format!("op {n} {op:?}");
                match *op {
                    Op::Put { key, at, body } => {
                        // Some bodies are large, so one flush writes several batches.
                        let pad = "回".repeat(usize::from(body % 4) * 700);
                        let r = reply(base + i64::from(at), &format!("<xml>{key}/{body}{pad}</xml>"));
                        store.dedupe_put(&format!("key{key}"), &r).expect("put");
                        model.insert(key, (r, false));
                    }
                    Op::Get(key) => check_key(&store, &model, key, &after)?,
                    Op::Flush => {
                        store.flush_dedupe().expect("flush");
                    }
                    Op::Sweep(now) => {
                        let now = base + i64::from(now);
                        store.sweep_dedupe(now).expect("sweep");
                        expire(&mut model, now - RETENTION);
                    }
                    Op::Reopen => {
                        // A clean shutdown, then a start.
                        store.flush().expect("flush");
                        drop(store);
                        store = open_narrow(dir.path(), RETENTION, fp_bits, 1);
                        // Read after the open: the store's own cutoff was no later than this.
                        let cutoff = chrono::Utc::now().timestamp() - RETENTION;
                        expire(&mut model, cutoff);
                    }
                }
                check(&store, &model, &after)?;
            }
        }
    }
}
