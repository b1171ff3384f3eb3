//! State of the outbound platform client: the cached access token and the durable outbox of
//! customer-service messages.
//!
//! # Trees
//! | tree | key | value |
//! |---|---|---|
//! | `platform_tokens` | app id (utf-8) | JSON [`StoredToken`] |
//! | `outbox` | id (u64 big-endian) | JSON [`OutboxItem`] |
//! | `outbox_due` | `time_key(next_attempt_at)` ‖ id BE | empty — present exactly for *pending* items |
//! | `outbox_done` | `b'S'` or `b'F'` ‖ `time_key(at)` ‖ id BE | empty — one per *sent* / *failed* item |
//!
//! `outbox`, `outbox_due` and `outbox_done` are only written together in one transaction, so
//! [`Store::outbox_due`] and [`Store::outbox_sweep`] are range scans over an index that never
//! disagrees with the records.
//!
//! Outbox times are unix **milliseconds** (the retry backoff starts at one second and tests run
//! it at a few milliseconds); the token's `expires_at` is unix seconds like the rest of the store.
//!
//! # Durability
//! Every write here is flushed before the call returns: an enqueued message survives a crash, and
//! a message marked sent is not sent again after a restart (a crash between the platform's `ok`
//! and the flush can still repeat one message: delivery is at least once). The token is flushed so
//! a restart within its lifetime reuses it instead of fetching a new one, which would invalidate
//! the one other processes hold. The outbox sees a handful of writes per message and the platform
//! limits sends per subscriber, so the fsyncs cost nothing that matters.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::{decode_json, encode_json, time_key, Store, StoreError};

const TREE_TOKENS: &str = "platform_tokens";
const TREE_OUTBOX: &str = "outbox";
const TREE_DUE: &str = "outbox_due";
const TREE_DONE: &str = "outbox_done";

/// Removals per sweep transaction: bounds a transaction's size.
const SWEEP_CHUNK: usize = 512;

/// An access token as cached in the data dir. Never printed.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredToken {
    pub token: String,
    /// Unix seconds after which the platform no longer accepts it.
    pub expires_at: i64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where an outbox item stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting for its `next_attempt_at`.
    Pending,
    /// The platform accepted it at `at` (unix ms).
    Sent { at: i64 },
    /// Given up at `at` (unix ms): the platform refused it for good, or retries ran out.
    Failed { at: i64, reason: String },
}

/// Which items [`Store::outbox_list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxFilter {
    All,
    Pending,
    Sent,
    Failed,
}

impl std::str::FromStr for OutboxFilter {
    type Err = String;

    /// `pending`, `failed`, `sent` or `all`, as operators type them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(OutboxFilter::All),
            "pending" => Ok(OutboxFilter::Pending),
            "sent" => Ok(OutboxFilter::Sent),
            "failed" => Ok(OutboxFilter::Failed),
            other => Err(format!(
                "state must be pending, failed, sent or all, not `{other}`"
            )),
        }
    }
}

impl OutboxFilter {
    fn matches(self, state: &OutboxState) -> bool {
        matches!(
            (self, state),
            (OutboxFilter::All, _)
                | (OutboxFilter::Pending, OutboxState::Pending)
                | (OutboxFilter::Sent, OutboxState::Sent { .. })
                | (OutboxFilter::Failed, OutboxState::Failed { .. })
        )
    }
}

/// How many outbox items are in each state ([`Store::outbox_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: usize,
    pub sent: usize,
    pub failed: usize,
}

/// One customer-service message waiting for, or done with, delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxItem {
    /// From sled's `generate_id`: unique and increasing across restarts.
    pub id: u64,
    /// The body of `message/custom/send`, exactly as it will be posted.
    pub msg: serde_json::Value,
    /// Unix ms of the enqueue.
    pub created_at: i64,
    /// Sends tried so far (successful or not).
    pub attempts: u32,
    /// Unix ms before which the item is not due. Meaningful while pending.
    pub next_attempt_at: i64,
    pub state: OutboxState,
    /// Who asked for the message, e.g. `webhook:rule-name` (for operators, not for routing).
    pub origin: String,
    /// For a part of a message split in several (a long text): the id of its first part.
    /// A part that fails for good fails the parts after it ([`Store::outbox_fail_later_parts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of: Option<u64>,
}

impl OutboxItem {
    /// The openid the message goes to; messages to one recipient leave in enqueue order.
    pub fn recipient(&self) -> Option<&str> {
        self.msg.get("touser").and_then(serde_json::Value::as_str)
    }
}

fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn due_key(at: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&time_key(at));
    k[8..].copy_from_slice(&id_key(id));
    k
}

const DONE_SENT: u8 = b'S';
const DONE_FAILED: u8 = b'F';

fn done_key(prefix: u8, at: i64, id: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..9].copy_from_slice(&time_key(at));
    k[9..].copy_from_slice(&id_key(id));
    k
}

/// The index entry an item in `state` owns.
enum IndexEntry {
    Due([u8; 16]),
    Done([u8; 17]),
}

fn index_entry(item: &OutboxItem) -> IndexEntry {
    match &item.state {
        OutboxState::Pending => IndexEntry::Due(due_key(item.next_attempt_at, item.id)),
        OutboxState::Sent { at } => IndexEntry::Done(done_key(DONE_SENT, *at, item.id)),
        OutboxState::Failed { at, .. } => IndexEntry::Done(done_key(DONE_FAILED, *at, item.id)),
    }
}

fn get_item(
    tree: &TransactionalTree,
    id: u64,
) -> Result<Option<OutboxItem>, ConflictableTransactionError<StoreError>> {
    match tree.get(id_key(id))? {
        None => Ok(None),
        Some(v) => decode_json(TREE_OUTBOX, &v)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort),
    }
}

fn id_from_suffix(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|start| <[u8; 8]>::try_from(&key[start..]).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("outbox index key of {} bytes", key.len())))
}

impl Store {
    fn platform_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        // sled caches open trees by name, so this is a map lookup after the first call.
        Ok(self.db()?.db.open_tree(name)?)
    }

    /// The cached access token of `app_id`, if one was stored (it may have expired).
    pub fn platform_token_get(&self, app_id: &str) -> Result<Option<StoredToken>, StoreError> {
        self.platform_tree(TREE_TOKENS)?
            .get(app_id.as_bytes())?
            .map(|v| decode_json(TREE_TOKENS, &v))
            .transpose()
    }

    /// Caches `token` for `app_id`, flushed.
    pub fn platform_token_put(&self, app_id: &str, token: &StoredToken) -> Result<(), StoreError> {
        if app_id.is_empty() {
            return Err(StoreError::InvalidKey { what: "app id" });
        }
        self.platform_tree(TREE_TOKENS)?
            .insert(app_id.as_bytes(), encode_json(token))?;
        self.sync()
    }

    /// Forgets the cached token of `app_id` if it is still `token` (a concurrent refresh may
    /// already have replaced it with a good one). Returns whether it was removed.
    pub fn platform_token_invalidate(&self, app_id: &str, token: &str) -> Result<bool, StoreError> {
        let tree = self.platform_tree(TREE_TOKENS)?;
        let Some(current) = tree.get(app_id.as_bytes())? else {
            return Ok(false);
        };
        let stored: StoredToken = decode_json(TREE_TOKENS, &current)?;
        if stored.token != token {
            return Ok(false);
        }
        let swapped =
            tree.compare_and_swap(app_id.as_bytes(), Some(current), None as Option<&[u8]>)?;
        self.sync()?;
        Ok(swapped.is_ok())
    }

    /// Queues `msg` (a `message/custom/send` body), due at once; flushed before returning.
    pub fn outbox_enqueue(
        &self,
        msg: serde_json::Value,
        origin: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.outbox_enqueue_item(msg, origin, now_ms, None)
    }

    /// Queues the parts of one split message, in order, each marked with the first part's id
    /// ([`OutboxItem::part_of`]); flushed before returning. Returns their ids.
    pub fn outbox_enqueue_parts(
        &self,
        parts: Vec<serde_json::Value>,
        origin: &str,
        now_ms: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let db = self.db()?;
        let ids = parts
            .iter()
            .map(|_| db.db.generate_id())
            .collect::<Result<Vec<u64>, _>>()?;
        drop(db);
        let part_of = (ids.len() > 1).then(|| ids[0]);
        for (id, msg) in ids.iter().zip(parts) {
            self.outbox_put_new(*id, msg, origin, now_ms, part_of)?;
        }
        Ok(ids)
    }

    fn outbox_enqueue_item(
        &self,
        msg: serde_json::Value,
        origin: &str,
        now_ms: i64,
        part_of: Option<u64>,
    ) -> Result<u64, StoreError> {
        let id = self.db()?.db.generate_id()?;
        self.outbox_put_new(id, msg, origin, now_ms, part_of)?;
        Ok(id)
    }

    fn outbox_put_new(
        &self,
        id: u64,
        msg: serde_json::Value,
        origin: &str,
        now_ms: i64,
        part_of: Option<u64>,
    ) -> Result<(), StoreError> {
        let item = OutboxItem {
            id,
            msg,
            created_at: now_ms,
            attempts: 0,
            next_attempt_at: now_ms,
            state: OutboxState::Pending,
            origin: origin.to_string(),
            part_of,
        };
        self.outbox_update(&item)
    }

    /// Every pending item (due or backing off), in no particular order.
    fn outbox_pending(&self) -> Result<Vec<OutboxItem>, StoreError> {
        let due = self.platform_tree(TREE_DUE)?;
        let outbox = self.platform_tree(TREE_OUTBOX)?;
        let mut items = Vec::new();
        for key in due.iter().keys() {
            let id = id_from_suffix(&key?)?;
            // The index and the records change in one transaction, but the scan and this read
            // are not one snapshot: an item updated in between is simply skipped this round.
            if let Some(v) = outbox.get(id_key(id))? {
                let item: OutboxItem = decode_json(TREE_OUTBOX, &v)?;
                if item.state == OutboxState::Pending {
                    items.push(item);
                }
            }
        }
        Ok(items)
    }

    /// Pending items with `next_attempt_at <= now_ms`, oldest due first, at most `limit`, and
    /// of each recipient only the earliest pending item: a message is not sent while an
    /// earlier one to the same openid still waits (for its first try or a retry), so one
    /// subscriber's messages arrive in the order they were queued.
    ///
    /// Scans every pending item (not only the due ones) to see what waits before what. Pending
    /// items are a handful unless the platform has been refusing for a while; the sent and
    /// failed ones, which pile up, are not read.
    pub fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let pending = self.outbox_pending()?;
        let mut head: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for item in &pending {
            if let Some(to) = item.recipient() {
                let h = head.entry(to).or_insert(item.id);
                *h = (*h).min(item.id);
            }
        }
        let mut due: Vec<&OutboxItem> = pending
            .iter()
            .filter(|i| i.next_attempt_at <= now_ms)
            .filter(|i| i.recipient().is_none_or(|to| head.get(to) == Some(&i.id)))
            .collect();
        due.sort_by_key(|i| (i.next_attempt_at, i.id));
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    /// After `failed` (a part of a split message) failed for good: marks the pending parts
    /// queued after it failed too, with a reason naming it (the rest of a sentence without its
    /// start would only confuse). Returns how many. Other messages are not touched.
    pub fn outbox_fail_later_parts(
        &self,
        failed: &OutboxItem,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let Some(first) = failed.part_of else {
            return Ok(0);
        };
        let why = match &failed.state {
            OutboxState::Failed { reason, .. } => reason.as_str(),
            _ => "failed",
        };
        let mut n = 0;
        let mut later: Vec<OutboxItem> = self
            .outbox_pending()?
            .into_iter()
            .filter(|i| i.part_of == Some(first) && i.id > failed.id)
            .collect();
        later.sort_by_key(|i| i.id);
        for mut item in later {
            item.state = OutboxState::Failed {
                at: now_ms,
                reason: format!(
                    "not sent: an earlier part of this message (outbox item {}) failed: {why}",
                    failed.id
                ),
            };
            self.outbox_update(&item)?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes `item` (creating or replacing the record with its id) and moves its index entry
    /// to match its state; flushed before returning.
    pub fn outbox_update(&self, item: &OutboxItem) -> Result<(), StoreError> {
        let value = encode_json(item);
        let new_entry = index_entry(item);
        let outbox = self.platform_tree(TREE_OUTBOX)?;
        let due = self.platform_tree(TREE_DUE)?;
        let done = self.platform_tree(TREE_DONE)?;
        (&outbox, &due, &done).transaction(|(outbox, due, done)| {
            if let Some(old) = get_item(outbox, item.id)? {
                match index_entry(&old) {
                    IndexEntry::Due(k) => due.remove(&k[..])?,
                    IndexEntry::Done(k) => done.remove(&k[..])?,
                };
            }
            outbox.insert(&id_key(item.id), value.as_slice())?;
            match &new_entry {
                IndexEntry::Due(k) => due.insert(&k[..], &[] as &[u8])?,
                IndexEntry::Done(k) => done.insert(&k[..], &[] as &[u8])?,
            };
            Ok(())
        })?;
        self.sync()
    }

    /// The item with `id`, if it exists (it may have been swept).
    pub fn outbox_get(&self, id: u64) -> Result<Option<OutboxItem>, StoreError> {
        self.platform_tree(TREE_OUTBOX)?
            .get(id_key(id))?
            .map(|v| decode_json(TREE_OUTBOX, &v))
            .transpose()
    }

    /// Every item matching `filter`, by id (= enqueue order). A full scan: for operators.
    pub fn outbox_list(&self, filter: OutboxFilter) -> Result<Vec<OutboxItem>, StoreError> {
        let mut items = Vec::new();
        for v in self.platform_tree(TREE_OUTBOX)?.iter().values() {
            let item: OutboxItem = decode_json(TREE_OUTBOX, &v?)?;
            if filter.matches(&item.state) {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Items by state, for the metrics: key-only scans of the two indexes (pending items are a
    /// handful; sent and failed ones are bounded by their retention), no record is decoded.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let due = self.platform_tree(TREE_DUE)?;
        let done = self.platform_tree(TREE_DONE)?;
        let count = |prefix: u8| -> Result<usize, StoreError> {
            let mut n = 0;
            for k in done.scan_prefix([prefix]).keys() {
                k?;
                n += 1;
            }
            Ok(n)
        };
        let mut pending = 0;
        for k in due.iter().keys() {
            k?;
            pending += 1;
        }
        Ok(OutboxCounts {
            pending,
            sent: count(DONE_SENT)?,
            failed: count(DONE_FAILED)?,
        })
    }

    /// Deletes items sent before `sent_before` and items failed before `failed_before` (unix
    /// ms); returns how many. Range scans over the done index.
    pub fn outbox_sweep(&self, sent_before: i64, failed_before: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (prefix, before) in [(DONE_SENT, sent_before), (DONE_FAILED, failed_before)] {
            removed += self.sweep_done(prefix, before)?;
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }

    fn sweep_done(&self, prefix: u8, before: i64) -> Result<usize, StoreError> {
        let outbox = self.platform_tree(TREE_OUTBOX)?;
        let done = self.platform_tree(TREE_DONE)?;
        let start = [prefix];
        let end = done_key(prefix, before, 0);
        let mut removed = 0;
        loop {
            let chunk = done
                .range(&start[..]..&end[..])
                .keys()
                .take(SWEEP_CHUNK)
                .collect::<Result<Vec<_>, _>>()?;
            if chunk.is_empty() {
                return Ok(removed);
            }
            let ids = chunk
                .iter()
                .map(|k| id_from_suffix(k))
                .collect::<Result<Vec<_>, _>>()?;
            removed += (&outbox, &done).transaction(|(outbox, done)| {
                let mut n = 0;
                for (key, id) in chunk.iter().zip(&ids) {
                    done.remove(key.as_ref())?;
                    // Only drop the record if this index entry is still its own.
                    if let Some(item) = get_item(outbox, *id)? {
                        if matches!(index_entry(&item), IndexEntry::Done(k) if k[..] == key[..]) {
                            outbox.remove(&id_key(*id))?;
                            n += 1;
                        }
                    }
                }
                Ok(n)
            })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store opens");
        (dir, store)
    }

    /// A text to its own recipient (`o<n>`).
    fn body(n: u32) -> serde_json::Value {
        serde_json::json!({"touser": format!("o{n}"), "msgtype": "text", "text": {"content": n.to_string()}})
    }

    fn text_to(openid: &str, n: u32) -> serde_json::Value {
        serde_json::json!({"touser": openid, "msgtype": "text", "text": {"content": n.to_string()}})
    }

    #[test]
    fn a_recipients_later_message_waits_while_an_earlier_one_backs_off() {
        let (_d, s) = store();
        let ids = |v: Vec<OutboxItem>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        let parts = s
            .outbox_enqueue_parts(vec![text_to("oA", 1), text_to("oA", 2)], "t", 1_000)
            .unwrap();
        let other = s.outbox_enqueue(text_to("oB", 3), "t", 1_000).unwrap();
        assert_eq!(ids(s.outbox_due(1_000, 10).unwrap()), vec![parts[0], other]);
        // The first part met a transient error and backs off: its second part still waits.
        let mut first = s.outbox_get(parts[0]).unwrap().unwrap();
        first.attempts = 1;
        first.next_attempt_at = 2_000;
        s.outbox_update(&first).unwrap();
        assert_eq!(ids(s.outbox_due(1_500, 10).unwrap()), vec![other]);
        // Oldest due first: `other` has waited since 1 000.
        assert_eq!(ids(s.outbox_due(2_000, 10).unwrap()), vec![other, parts[0]]);
        first.state = OutboxState::Sent { at: 2_000 };
        s.outbox_update(&first).unwrap();
        assert_eq!(ids(s.outbox_due(2_000, 10).unwrap()), vec![parts[1], other]);
    }

    #[test]
    fn a_part_that_fails_for_good_fails_the_parts_after_it_and_nothing_else() {
        let (_d, s) = store();
        let parts = s
            .outbox_enqueue_parts(
                vec![text_to("oA", 1), text_to("oA", 2), text_to("oA", 3)],
                "t",
                1_000,
            )
            .unwrap();
        let later = s.outbox_enqueue(text_to("oA", 4), "t", 1_000).unwrap();
        let mut second = s.outbox_get(parts[1]).unwrap().unwrap();
        assert_eq!(second.part_of, Some(parts[0]));
        second.state = OutboxState::Failed {
            at: 1_100,
            reason: "errcode 45047".into(),
        };
        s.outbox_update(&second).unwrap();
        assert_eq!(s.outbox_fail_later_parts(&second, 1_100).unwrap(), 1);
        let third = s.outbox_get(parts[2]).unwrap().unwrap();
        let OutboxState::Failed { reason, .. } = third.state else {
            panic!("the third part should have failed: {third:?}");
        };
        assert!(reason.contains(&parts[1].to_string()), "{reason}");
        assert!(reason.contains("errcode 45047"), "{reason}");
        for id in [parts[0], later] {
            assert_eq!(
                s.outbox_get(id).unwrap().unwrap().state,
                OutboxState::Pending
            );
        }
    }

    #[test]
    fn due_returns_only_pending_items_whose_time_has_come() {
        let (_d, s) = store();
        let a = s.outbox_enqueue(body(1), "t", 1_000).unwrap();
        let b = s.outbox_enqueue(body(2), "t", 2_000).unwrap();
        let c = s.outbox_enqueue(body(3), "t", 1_500).unwrap();
        let ids = |v: Vec<OutboxItem>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(s.outbox_due(999, 10).unwrap()), Vec::<u64>::new());
        assert_eq!(ids(s.outbox_due(1_500, 10).unwrap()), vec![a, c]);
        assert_eq!(ids(s.outbox_due(5_000, 2).unwrap()), vec![a, c]);
        assert_eq!(ids(s.outbox_due(5_000, 10).unwrap()), vec![a, c, b]);

        let mut item = s.outbox_get(a).unwrap().unwrap();
        item.state = OutboxState::Sent { at: 1_600 };
        s.outbox_update(&item).unwrap();
        let mut item = s.outbox_get(c).unwrap().unwrap();
        item.next_attempt_at = 9_000;
        item.attempts = 1;
        s.outbox_update(&item).unwrap();
        assert_eq!(ids(s.outbox_due(5_000, 10).unwrap()), vec![b]);
        assert_eq!(ids(s.outbox_due(9_000, 10).unwrap()), vec![b, c]);
    }

    #[test]
    fn list_filters_by_state() {
        let (_d, s) = store();
        let a = s.outbox_enqueue(body(1), "t", 1).unwrap();
        let b = s.outbox_enqueue(body(2), "t", 1).unwrap();
        let c = s.outbox_enqueue(body(3), "t", 1).unwrap();
        for (id, state) in [
            (a, OutboxState::Sent { at: 5 }),
            (
                b,
                OutboxState::Failed {
                    at: 6,
                    reason: "errcode 45015".into(),
                },
            ),
        ] {
            let mut item = s.outbox_get(id).unwrap().unwrap();
            item.state = state;
            s.outbox_update(&item).unwrap();
        }
        let ids = |f| {
            s.outbox_list(f)
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(OutboxFilter::All), vec![a, b, c]);
        assert_eq!(ids(OutboxFilter::Pending), vec![c]);
        assert_eq!(ids(OutboxFilter::Sent), vec![a]);
        assert_eq!(ids(OutboxFilter::Failed), vec![b]);
        assert!(s.outbox_due(10, 10).unwrap().iter().all(|i| i.id == c));
        assert_eq!(
            s.outbox_counts().unwrap(),
            OutboxCounts {
                pending: 1,
                sent: 1,
                failed: 1
            },
            "the counts agree with the listing"
        );
    }

    #[test]
    fn sweep_removes_old_sent_and_failed_items_only() {
        let (_d, s) = store();
        let old_sent = s.outbox_enqueue(body(1), "t", 1).unwrap();
        let new_sent = s.outbox_enqueue(body(2), "t", 1).unwrap();
        let old_failed = s.outbox_enqueue(body(3), "t", 1).unwrap();
        let pending = s.outbox_enqueue(body(4), "t", 1).unwrap();
        for (id, state) in [
            (old_sent, OutboxState::Sent { at: 100 }),
            (new_sent, OutboxState::Sent { at: 900 }),
            (
                old_failed,
                OutboxState::Failed {
                    at: 100,
                    reason: "x".into(),
                },
            ),
        ] {
            let mut item = s.outbox_get(id).unwrap().unwrap();
            item.state = state;
            s.outbox_update(&item).unwrap();
        }
        // Failed items are kept longer: a cutoff before their time keeps them.
        assert_eq!(s.outbox_sweep(500, 50).unwrap(), 1);
        assert!(s.outbox_get(old_sent).unwrap().is_none());
        assert!(s.outbox_get(old_failed).unwrap().is_some());
        assert_eq!(s.outbox_sweep(500, 500).unwrap(), 1);
        assert!(s.outbox_get(old_failed).unwrap().is_none());
        assert!(s.outbox_get(new_sent).unwrap().is_some());
        assert!(s.outbox_get(pending).unwrap().is_some());
        assert_eq!(s.outbox_sweep(500, 500).unwrap(), 0);
    }

    #[test]
    fn token_round_trips_and_invalidates_only_itself() {
        let (_d, s) = store();
        assert!(s.platform_token_get("wx1").unwrap().is_none());
        let t = StoredToken {
            token: "tok-1".into(),
            expires_at: 7_200,
        };
        s.platform_token_put("wx1", &t).unwrap();
        assert_eq!(s.platform_token_get("wx1").unwrap(), Some(t.clone()));
        assert!(s.platform_token_get("wx2").unwrap().is_none());
        assert!(!s.platform_token_invalidate("wx1", "tok-0").unwrap());
        assert_eq!(s.platform_token_get("wx1").unwrap(), Some(t));
        assert!(s.platform_token_invalidate("wx1", "tok-1").unwrap());
        assert!(s.platform_token_get("wx1").unwrap().is_none());
        assert!(!format!(
            "{:?}",
            StoredToken {
                token: "secret-token".into(),
                expires_at: 1
            }
        )
        .contains("secret-token"));
    }
}
