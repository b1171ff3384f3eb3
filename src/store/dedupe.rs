//! Dedupe memory of answered pushes, so a platform retry gets the same answer and causes no
//! second side effect.
//!
//! `dedupe` maps key → [`StoredReply`]; `dedupe_by_time` holds `time_key(at) ‖ key` for every
//! entry so [`Store::sweep_dedupe`] is a range scan over the expired prefix, not a full scan.
//! Both trees are written in one transaction.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::{decode_json, encode_json, time_key, Store, StoreError};

/// Removals per sweep transaction: bounds the transaction's size and how long it blocks pushes.
const SWEEP_CHUNK: usize = 512;

/// The answer given to a push, kept to answer its retries identically.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredReply {
    /// When the push was answered (unix seconds).
    pub at: i64,
    /// The plaintext reply XML, or `""` for the bare `success` answer.
    pub body: String,
}

fn index_key(at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&time_key(at));
    k.extend_from_slice(key);
    k
}

fn stored_at(
    tree: &TransactionalTree,
    key: &[u8],
) -> Result<Option<i64>, ConflictableTransactionError<StoreError>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => decode_json::<StoredReply>("dedupe", &v)
            .map(|r| Some(r.at))
            .map_err(ConflictableTransactionError::Abort),
    }
}

impl Store {
    /// The stored answer for `key`, if the push was answered before.
    pub fn dedupe_get(&self, key: &str) -> Result<Option<StoredReply>, StoreError> {
        self.inner
            .dedupe
            .get(key.as_bytes())?
            .map(|v| decode_json("dedupe", &v))
            .transpose()
    }

    /// Stores the answer for `key` (replacing any earlier one and its time index entry).
    pub fn dedupe_put(&self, key: &str, reply: &StoredReply) -> Result<(), StoreError> {
        // The index prefix is fixed-width, so any non-empty key (even one with `\0`) is safe.
        if key.is_empty() {
            return Err(StoreError::InvalidKey { what: "dedupe key" });
        }
        let value = encode_json(reply);
        let k = key.as_bytes();
        // Two plain inserts instead of a two-tree transaction: this runs once per answered push,
        // and a transaction cost most of the callback's store time (see BENCHMARKS.md). The
        // index goes first, so a crash between the two leaves at worst an index entry without
        // a record, which the sweep drops; never a record the sweep cannot find.
        self.inner
            .dedupe_by_time
            .insert(index_key(reply.at, k), &[] as &[u8])?;
        if let Some(old) = self.inner.dedupe.insert(k, value)? {
            // A re-put (rare: only after a retry outlived the in-flight wait) moves the index.
            if let Ok(prev) = decode_json::<StoredReply>("dedupe", &old) {
                if prev.at != reply.at {
                    self.inner.dedupe_by_time.remove(index_key(prev.at, k))?;
                }
            }
        }
        Ok(())
    }

    pub fn sweep_dedupe(&self, now: i64) -> Result<usize, StoreError> {
        let cutoff = time_key(now.saturating_sub(self.inner.cfg.dedupe_retention_secs));
        let mut removed = 0;
        loop {
            let chunk = self
                .inner
                .dedupe_by_time
                .range(..cutoff.as_slice())
                .keys()
                .take(SWEEP_CHUNK)
                .collect::<Result<Vec<_>, _>>()?;
            if chunk.is_empty() {
                return Ok(removed);
            }
            removed += (&self.inner.dedupe, &self.inner.dedupe_by_time).transaction(
                |(dedupe, by_time)| {
                    let mut n = 0;
                    for ik in &chunk {
                        let (at_bytes, key) = ik.split_at(8.min(ik.len()));
                        // Only drop the record if this index entry is still its own (a
                        // concurrent re-put may have moved it to a newer time).
                        let current = stored_at(dedupe, key)?;
                        if by_time.remove(ik.as_ref())?.is_some()
                            && current.map(time_key).as_ref().map(|t| &t[..]) == Some(at_bytes)
                        {
                            dedupe.remove(key)?;
                            n += 1;
                        }
                    }
                    Ok(n)
                },
            )?;
        }
    }
}
