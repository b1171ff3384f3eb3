//! Dedupe memory of answered pushes, so a platform retry gets the same answer and causes no
//! second side effect.
//!
//! Every answered push leaves one entry (dedupe key, answer time, reply). Entries are looked up
//! on every push and almost never found (only retries hit), so the design keeps sled off the
//! push path:
//!
//! - **In memory**, an index from a 64-bit keyed hash of the dedupe key to where the entry lives
//!   (16 bytes per entry, no reply bodies), plus the entries answered since the last write.
//! - **In sled** (`dedupe_log`), the entries in batches: every [`Store::flush_dedupe`] (the server
//!   calls it every 100 ms, off the request path) appends the pending entries as values of about
//!   [`BATCH_BYTES`], keyed by a sequence number (u64 BE). Taking the writes off the push path
//!   is what makes the callback cheap (BENCHMARKS.md, "write-behind").
//! - On open, the index is rebuilt from the batches still within the retention.
//!
//! A lookup that hits the index reads the entry from the pending set or its batch and compares
//! the full key, so a hash collision can never hand one push another push's answer.
//! [`Store::sweep_dedupe`] drops index entries older than the retention and deletes batches
//! whose newest entry is older.
//!
//! Durability: an entry reaches sled at the next flush (≤ 100 ms) and disk at sled's next
//! flush (≤ 200 ms later); a crash inside that window lets a retry be handled a second time.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Store, StoreError};

/// Target size of one batch before compression. Replies repeat a lot (the same rule texts, XML
/// skeletons and openids), so LZ4 shrinks a batch several times. That matters twice: sled's
/// write cost is per byte (~12 ns/B here), and sled 0.34 keeps large values resident whatever
/// its cache capacity (measured: 100 MB written as 32 KiB values → 110 MB RSS; as 1 KiB values
/// → 19 MB). Small uncompressed values instead cost a sled insert each (11 % of push CPU).
/// A retry answered from sled inflates its whole batch: with 32 KiB batches a retry cost more
/// CPU than handling the push afresh (84 vs 70 µs per request under load); with 8 KiB, 57.
const BATCH_BYTES: usize = 8 * 1024;

/// Refuses to inflate a stored batch claiming more than this (a corrupt length prefix).
const MAX_INFLATED: usize = 16 * 1024 * 1024;

/// `seq` of an entry that is pending (not yet written to a batch).
const PENDING: u32 = u32::MAX;

/// The answer given to a push, kept to answer its retries identically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReply {
    /// When the push was answered (unix seconds).
    pub at: i64,
    /// The plaintext reply XML, or `""` for the bare `success` answer.
    pub body: Arc<str>,
}

/// Where an indexed entry lives. 8 bytes, so an index slot is 16 with its hash.
#[derive(Debug, Clone, Copy)]
struct Loc {
    /// The low 32 bits of the batch holding the entry (never [`PENDING`]), or [`PENDING`].
    /// Batches within the retention are far fewer than 2³², so the low bits are unambiguous.
    seq: u32,
    /// Answer time, unix seconds clamped to u32 (the retention check needs it per entry).
    at: u32,
}

fn clamp_at(at: i64) -> u32 {
    u32::try_from(at.max(0)).unwrap_or(u32::MAX)
}

/// The index's keys are already keyed SipHash values: hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; fold anything else in for safety.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default, Clone, Copy)]
struct PassThroughBuild;

impl BuildHasher for PassThroughBuild {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough::default()
    }
}

type Pending = HashMap<Box<str>, StoredReply>;

/// The in-memory side of the dedupe memory. One mutex: every operation under it is a few hash
/// probes; sled I/O happens outside it.
pub(super) struct Dedupe {
    /// Keyed per process, so nobody can aim pushes at one index slot.
    hasher: RandomState,
    state: Mutex<State>,
    /// Serialises flushes (the 100 ms job, an explicit flush and shutdown may overlap).
    flush_gate: Mutex<()>,
}

struct State {
    index: HashMap<u64, Loc, PassThroughBuild>,
    /// Entries not yet handed to a flush.
    pending: Pending,
    /// Entries a running flush is writing; still answered from here until it finishes.
    flushing: Option<Arc<Pending>>,
    /// Batches in sled, in `seq` order, with their newest entry's time.
    batches: VecDeque<(u64, i64)>,
    next_seq: u64,
}

impl Dedupe {
    /// Rebuilds the index from the batches in `tree`, skipping entries older than `cutoff`.
    pub(super) fn load(tree: &sled::Tree, cutoff: i64) -> Result<Dedupe, StoreError> {
        let mut d = Dedupe {
            hasher: RandomState::new(),
            state: Mutex::new(State {
                index: HashMap::default(),
                pending: HashMap::new(),
                flushing: None,
                batches: VecDeque::new(),
                next_seq: 0,
            }),
            flush_gate: Mutex::new(()),
        };
        let state = d.state.get_mut().map_err(|_| poisoned())?;
        for kv in tree.iter() {
            let (k, v) = kv?;
            let seq = decode_seq(&k)?;
            let batch = Batch::parse(&v)?;
            state.next_seq = state.next_seq.max(next_after(seq));
            state.batches.push_back((seq, batch.max_at));
            for e in batch.entries() {
                let e = e?;
                if e.at >= cutoff {
                    let h = hash_key(&d.hasher, e.key);
                    state.index.insert(
                        h,
                        Loc {
                            seq: low(seq),
                            at: clamp_at(e.at),
                        },
                    );
                }
            }
        }
        Ok(d)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| poisoned())
    }
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("dedupe memory lock poisoned by an earlier panic".into())
}

fn hash_key(hasher: &RandomState, key: &str) -> u64 {
    hasher.hash_one(key.as_bytes())
}

fn decode_seq(k: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("dedupe_log key has {} bytes, not 8", k.len())))
}

/// The low 32 bits of a batch number, as the index stores them.
fn low(seq: u64) -> u32 {
    // Truncation is the point.
    seq as u32
}

/// The batch number whose low bits are `low_bits`, given that it was written before `next_seq`
/// and less than 2³² batches ago.
fn full_seq(next_seq: u64, low_bits: u32) -> u64 {
    next_seq.wrapping_sub(u64::from(low(next_seq).wrapping_sub(low_bits)))
}

/// The next batch number after `seq` whose low bits are not the [`PENDING`] marker.
fn next_after(seq: u64) -> u64 {
    let n = seq + 1;
    if low(n) == PENDING {
        n + 1
    } else {
        n
    }
}

/// One `dedupe_log` value: `max_at: i64 BE ‖ lz4(entries)` (lz4_flex block format with the
/// inflated size prepended), entries being
/// `key_len: u16 BE ‖ key ‖ at: i64 BE ‖ body_len: u32 BE ‖ body`.
struct Batch {
    max_at: i64,
    rest: Vec<u8>,
}

struct Entry<'a> {
    key: &'a str,
    at: i64,
    body: &'a str,
}

impl Batch {
    fn parse(v: &[u8]) -> Result<Batch, StoreError> {
        let (head, packed) = split(v, 8)?;
        let (size, _) = split(packed, 4)?;
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
        if usize::try_from(size).map_or(true, |n| n > MAX_INFLATED) {
            return Err(corrupt_batch());
        }
        let rest = lz4_flex::decompress_size_prepended(packed).map_err(|_| corrupt_batch())?;
        Ok(Batch {
            max_at: i64::from_be_bytes(head.try_into().map_err(|_| corrupt_batch())?),
            rest,
        })
    }

    fn entries(&self) -> impl Iterator<Item = Result<Entry<'_>, StoreError>> {
        let mut rest = self.rest.as_slice();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let parsed = (|| {
                let (len, r) = split(rest, 2)?;
                let (key, r) = split(r, usize::from(u16::from_be_bytes([len[0], len[1]])))?;
                let (at, r) = split(r, 8)?;
                let (blen, r) = split(r, 4)?;
                let blen = u32::from_be_bytes([blen[0], blen[1], blen[2], blen[3]]);
                let (body, r) = split(r, usize::try_from(blen).map_err(|_| corrupt_batch())?)?;
                let entry = Entry {
                    key: std::str::from_utf8(key).map_err(|_| corrupt_batch())?,
                    at: i64::from_be_bytes(at.try_into().map_err(|_| corrupt_batch())?),
                    body: std::str::from_utf8(body).map_err(|_| corrupt_batch())?,
                };
                Ok((entry, r))
            })();
            match parsed {
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

/// Appends one entry to a batch under construction.
fn encode_entry(out: &mut Vec<u8>, key: &str, reply: &StoredReply) {
    // Keys are MsgIds or openid+time+event (well under 64 KiB); replies are bounded by the
    // platform's limits (a few KiB), far under 4 GiB.
    let klen = u16::try_from(key.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&klen.to_be_bytes());
    out.extend_from_slice(&key.as_bytes()[..usize::from(klen)]);
    out.extend_from_slice(&reply.at.to_be_bytes());
    let blen = u32::try_from(reply.body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&blen.to_be_bytes());
    out.extend_from_slice(&reply.body.as_bytes()[..blen as usize]);
}

impl Store {
    /// The stored answer for `key`, if the push was answered within the retention.
    pub fn dedupe_get(&self, key: &str) -> Result<Option<StoredReply>, StoreError> {
        let d = &self.inner.dedupe;
        let h = hash_key(&d.hasher, key);
        let seq = {
            let s = d.lock()?;
            let Some(loc) = s.index.get(&h).copied() else {
                return Ok(None);
            };
            if loc.seq == PENDING {
                let found = s
                    .pending
                    .get(key)
                    .or_else(|| s.flushing.as_ref().and_then(|f| f.get(key)));
                return Ok(found.cloned());
            }
            full_seq(s.next_seq, loc.seq)
        };
        // A flushed entry: read its batch outside the lock (only retries get here).
        let Some(v) = self.inner.dedupe_log.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let batch = Batch::parse(&v)?;
        for e in batch.entries() {
            let e = e?;
            if e.key == key {
                return Ok(Some(StoredReply {
                    at: e.at,
                    body: Arc::from(e.body),
                }));
            }
        }
        Ok(None)
    }

    /// Remembers the answer for `key` (replacing any earlier one). Memory only until the next
    /// [`Store::flush_dedupe`].
    pub fn dedupe_put(&self, key: &str, reply: &StoredReply) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidKey { what: "dedupe key" });
        }
        let d = &self.inner.dedupe;
        let h = hash_key(&d.hasher, key);
        let mut s = d.lock()?;
        s.index.insert(
            h,
            Loc {
                seq: PENDING,
                at: clamp_at(reply.at),
            },
        );
        s.pending.insert(Box::from(key), reply.clone());
        Ok(())
    }

    /// Writes the pending entries to sled as batches. Returns how many entries it wrote.
    pub fn flush_dedupe(&self) -> Result<usize, StoreError> {
        let d = &self.inner.dedupe;
        let _gate = d.flush_gate.lock().map_err(|_| poisoned())?;
        let (work, first_seq) = {
            let mut s = d.lock()?;
            if s.pending.is_empty() {
                return Ok(0);
            }
            let work = Arc::new(std::mem::take(&mut s.pending));
            s.flushing = Some(work.clone());
            (work, s.next_seq)
        };
        // Encode and write outside the lock: pushes keep being answered meanwhile.
        let mut written: Vec<(u64, i64, Vec<&str>)> = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(2 * BATCH_BYTES);
        let mut keys: Vec<&str> = Vec::new();
        let mut max_at = i64::MIN;
        let mut seq = first_seq;
        let mut result: Result<(), StoreError> = Ok(());
        let mut entries = work.iter().peekable();
        while let Some((key, reply)) = entries.next() {
            encode_entry(&mut buf, key, reply);
            keys.push(key.as_ref());
            max_at = max_at.max(reply.at);
            let next_fits = entries
                .peek()
                .is_some_and(|(k, r)| buf.len() + 14 + k.len() + r.body.len() <= BATCH_BYTES);
            if !next_fits {
                if let Err(e) = self
                    .inner
                    .dedupe_log
                    .insert(seq.to_be_bytes(), pack(max_at, &buf))
                {
                    result = Err(e.into());
                    break;
                }
                written.push((seq, max_at, std::mem::take(&mut keys)));
                seq = next_after(seq);
                buf.clear();
                max_at = i64::MIN;
            }
        }
        let mut s = d.lock()?;
        s.next_seq = seq;
        let mut count = 0;
        for (seq, max_at, keys) in &written {
            s.batches.push_back((*seq, *max_at));
            for key in keys {
                // A re-put meanwhile is pending again and keeps its PENDING location; a swept
                // entry stays swept.
                if s.pending.contains_key(*key) {
                    continue;
                }
                let h = hash_key(&d.hasher, key);
                if let Some(loc) = s.index.get_mut(&h) {
                    if loc.seq == PENDING {
                        loc.seq = low(*seq);
                    }
                }
                count += 1;
            }
        }
        if result.is_err() {
            // Put back what was not written so the next flush retries it (newer re-puts win).
            let done: std::collections::HashSet<&str> = written
                .iter()
                .flat_map(|(_, _, k)| k.iter().copied())
                .collect();
            for (key, reply) in work.iter() {
                if !done.contains(&**key) && !s.pending.contains_key(key) {
                    s.pending.insert(key.clone(), reply.clone());
                }
            }
        }
        s.flushing = None;
        result.map(|()| count)
    }

    /// Forgets entries answered before `now - retention` and deletes batches holding nothing
    /// newer. Returns how many entries were forgotten.
    pub fn sweep_dedupe(&self, now: i64) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(self.inner.cfg.dedupe_retention_secs);
        let cut = clamp_at(cutoff);
        let d = &self.inner.dedupe;
        let (removed, expired) = {
            let mut s = d.lock()?;
            let before = s.index.len();
            s.index.retain(|_, loc| loc.at >= cut);
            let removed = before - s.index.len();
            if removed > 0 {
                s.pending.retain(|_, r| r.at >= cutoff);
            }
            let mut expired = Vec::new();
            while let Some(&(seq, max_at)) = s.batches.front() {
                if max_at >= cutoff {
                    break;
                }
                expired.push(seq);
                s.batches.pop_front();
            }
            (removed, expired)
        };
        for seq in &expired {
            self.inner.dedupe_log.remove(seq.to_be_bytes())?;
        }
        Ok(removed)
    }

    /// Entries currently remembered.
    pub(super) fn dedupe_len(&self) -> usize {
        self.inner.dedupe.lock().map(|s| s.index.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_encoding_round_trips() {
        let mut buf = Vec::new();
        let a = StoredReply {
            at: 1_700_000_000,
            body: Arc::from("<xml>回复 🙂</xml>"),
        };
        let b = StoredReply {
            at: 1_700_000_005,
            body: Arc::from(""),
        };
        encode_entry(&mut buf, "msg:1", &a);
        encode_entry(&mut buf, "oA\0:17", &b);
        let batch = Batch::parse(&pack(b.at, &buf)).expect("parses");
        assert_eq!(batch.max_at, b.at);
        let got: Vec<(String, i64, String)> = batch
            .entries()
            .map(|e| {
                let e = e.expect("entry");
                (e.key.to_string(), e.at, e.body.to_string())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("msg:1".into(), a.at, a.body.to_string()),
                ("oA\0:17".into(), b.at, String::new()),
            ]
        );
    }

    #[test]
    fn batch_numbers_are_recovered_from_their_low_bits_across_the_wrap() {
        for next in [1u64, 5, (1 << 32) - 2, 1 << 32, (1 << 32) + 3, 7 << 40] {
            for back in 1..4u64 {
                let Some(seq) = next.checked_sub(back) else {
                    continue;
                };
                assert_eq!(full_seq(next, low(seq)), seq, "next {next}, seq {seq}");
            }
        }
        // The marker's low bits are never used by a batch.
        assert_eq!(next_after((1 << 32) - 2), 1 << 32);
        assert_eq!(low(next_after((1 << 32) - 2)), 0);
        assert_eq!(next_after(5), 6);
    }

    #[test]
    fn truncated_or_corrupt_batches_are_errors_not_panics() {
        let mut raw = Vec::new();
        for i in 0..20 {
            encode_entry(
                &mut raw,
                &format!("k{i}"),
                &StoredReply {
                    at: 1,
                    body: Arc::from("<xml>the same reply, again and again</xml>"),
                },
            );
        }
        let v = pack(1, &raw);
        assert!(v.len() < raw.len() / 2, "repetitive replies compress");
        let all_ok = |v: &[u8]| {
            Batch::parse(v)
                .map(|b| b.entries().all(|e| e.is_ok()))
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
}
