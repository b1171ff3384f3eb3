//! Subscriber records: one JSON value per openid in the `subscribers` tree, behind a
//! write-behind cache.
//!
//! Every push reads its sender's record (routing needs tags and channel) and bumps `last_seen`
//! and `message_count`. Doing that as a sled read-modify-write per push cost more than the whole
//! protocol layer, so records live in a bounded in-memory cache ([`SubscriberCache`]):
//!
//! - Every change updates the cached record and marks it dirty; [`Store::flush_subscribers`]
//!   writes dirty records in one sled batch per shard, outside the shard locks. The server's
//!   write-behind step (`Store::write_behind`, every 100 ms) writes records whose *state*
//!   changed (subscribe, unsubscribe, tags) before the dedupe entries of the same period, so
//!   whenever a push's answer is in sled, so is its state change: after a crash either both
//!   survive or the platform's retry finds no answer and redoes both. Activity (`last_seen`,
//!   `message_count`) is written once a second: rewriting every active record ten times a
//!   second cost 6 % of push CPU. Writing subscribe events through to sled from the request
//!   cost ~3 % and bought nothing: sled itself only reaches the disk every 200 ms.
//! - Each change is a read-modify-write under the record's shard lock, so concurrent pushes
//!   from the same user never lose an update, and sled writes of one record happen in order.
//!   Records are shared as `Arc`s (copied on write), so a push reading its sender's tags does not
//!   copy the record.
//! - Clean records not used since the previous eviction pass are evicted once a shard is over
//!   its share of [`CACHE_RECORDS`] (at most once a second, so "recently used" means that).

use crate::sync::lock;
use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_part, decode_json, encode_json, Store, StoreError};
use crate::wechat::types::OpenId;

/// What mpgate knows about one follower.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscriber {
    /// The follower's openid.
    pub openid: String,
    /// Time of the first subscribe event mpgate saw (None for followers from before mpgate).
    #[serde(default)]
    pub first_subscribed: Option<i64>,
    /// Time of the latest subscribe event.
    #[serde(default)]
    pub last_subscribed: Option<i64>,
    /// Time of the latest unsubscribe event.
    #[serde(default)]
    pub unsubscribed_at: Option<i64>,
    /// Scene (e.g. QR code) of the follower's first subscribe; kept across re-subscribes.
    #[serde(default)]
    pub channel: Option<String>,
    /// Operator tags, sorted and unique.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Time of the latest push from this follower (0 = none seen yet).
    #[serde(default)]
    pub last_seen: i64,
    /// Number of user messages (not events) received.
    #[serde(default)]
    pub message_count: u64,
    /// Whether the follower currently follows the account.
    #[serde(default)]
    pub subscribed: bool,
    /// True when an operator made this record (a grant with `create` for an openid mpgate had
    /// never seen) rather than a push. Such a record starts unsubscribed and without a
    /// subscribe time: the person's first follow is still a first-time follow.
    #[serde(default)]
    pub created_by_operator: bool,
}

impl Subscriber {
    /// A record for a follower first seen now. The platform only delivers pushes from
    /// followers, so a record created by any push starts as subscribed.
    fn new(openid: &OpenId) -> Self {
        Subscriber {
            openid: openid.as_str().to_owned(),
            first_subscribed: None,
            last_subscribed: None,
            unsubscribed_at: None,
            channel: None,
            tags: Vec::new(),
            last_seen: 0,
            message_count: 0,
            subscribed: true,
            created_by_operator: false,
        }
    }
}

/// The result of [`Store::on_subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// True when this follower is new to the account: no earlier subscribe event and no
    /// message history (a follower from before mpgate who has written to us is not new).
    pub first_time: bool,
    /// The record after the update.
    pub subscriber: Arc<Subscriber>,
}

/// Records kept in memory (all shards together). About 300 bytes each: ~3 MB.
const CACHE_RECORDS: usize = 10_000;
const SHARDS: usize = 16;

struct Cached {
    sub: Arc<Subscriber>,
    /// What changed since it was last written to sled.
    dirty: Dirty,
    /// Read or written since the previous eviction pass (second-chance eviction).
    used: bool,
}

/// How soon a cached record must be written. Ordered: a record holding both kinds of change is
/// as urgent as the more urgent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dirty {
    Clean,
    /// Only `last_seen` / `message_count` changed: written within a second.
    Activity,
    /// Subscribed, unsubscribed or tags changed: written at the next write-behind step.
    State,
}

/// The in-memory side of the subscriber records.
pub(super) struct SubscriberCache {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<Box<str>, Cached, RandomState>>>,
    /// Serialises [`Store::flush_subscribers`].
    write_gate: Mutex<()>,
}

impl SubscriberCache {
    pub(super) fn new() -> SubscriberCache {
        SubscriberCache {
            hasher: RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            write_gate: Mutex::new(()),
        }
    }

    fn shard(
        &self,
        openid: &str,
    ) -> Result<MutexGuard<'_, HashMap<Box<str>, Cached, RandomState>>, StoreError> {
        // The modulo keeps the index below SHARDS, so the cast cannot truncate.
        let i = (self.hasher.hash_one(openid) % SHARDS as u64) as usize;
        Ok(lock(&self.shards[i]))
    }
}

impl Store {
    /// The record for `openid`, if any.
    pub fn subscriber(&self, openid: &OpenId) -> Result<Option<Subscriber>, StoreError> {
        let mut shard = self.inner.subscriber_cache.shard(openid.as_str())?;
        if let Some(c) = shard.get_mut(openid.as_str()) {
            c.used = true;
            return Ok(Some(Subscriber::clone(&c.sub)));
        }
        let Some(sub) = self.load_subscriber(openid)? else {
            return Ok(None);
        };
        shard.insert(
            Box::from(openid.as_str()),
            Cached {
                sub: Arc::new(sub.clone()),
                dirty: Dirty::Clean,
                used: true,
            },
        );
        Ok(Some(sub))
    }

    fn load_subscriber(&self, openid: &OpenId) -> Result<Option<Subscriber>, StoreError> {
        self.inner
            .subscribers
            .get(openid.as_str().as_bytes())?
            .map(|v| decode_json("subscribers", &v))
            .transpose()
    }

    /// Records a subscribe event (written behind, see the module doc). `scene` (the QR scene, if any) becomes the channel only on a
    /// follower's first-time subscribe.
    pub fn on_subscribe(
        &self,
        openid: &OpenId,
        scene: Option<&str>,
        at: i64,
    ) -> Result<SubscribeOutcome, StoreError> {
        let mut first_time = false;
        let subscriber = self.update_subscriber(openid, Dirty::State, |s| {
            let s = Arc::make_mut(s);
            let is_new = s.first_subscribed.is_none() && s.message_count == 0;
            first_time = is_new;
            if is_new {
                s.channel = scene.filter(|c| !c.is_empty()).map(str::to_owned);
            }
            s.first_subscribed.get_or_insert(at);
            s.last_subscribed = Some(at);
            s.subscribed = true;
            s.last_seen = s.last_seen.max(at);
            true
        })?;
        Ok(SubscribeOutcome {
            first_time,
            subscriber,
        })
    }

    /// Creates the record of an openid mpgate has never seen, on an operator's word (a grant
    /// with `create`): marked [`Subscriber::created_by_operator`], not subscribed (nothing says
    /// the person follows the account) and with no subscribe time, so their first subscribe is
    /// a first-time one. An existing record is left as it is. Returns whether a record was
    /// created; durable on return (the operator is told "done" only then).
    pub fn create_subscriber_by_operator(&self, openid: &OpenId) -> Result<bool, StoreError> {
        check_part("openid", openid.as_str())?;
        {
            let mut shard = self.inner.subscriber_cache.shard(openid.as_str())?;
            if shard.contains_key(openid.as_str()) || self.load_subscriber(openid)?.is_some() {
                return Ok(false);
            }
            let sub = Subscriber {
                subscribed: false,
                created_by_operator: true,
                ..Subscriber::new(openid)
            };
            shard.insert(
                Box::from(openid.as_str()),
                Cached {
                    sub: Arc::new(sub),
                    dirty: Dirty::State,
                    used: true,
                },
            );
        }
        self.flush()?;
        Ok(true)
    }

    /// Records an unsubscribe event.
    pub fn on_unsubscribe(&self, openid: &OpenId, at: i64) -> Result<(), StoreError> {
        self.update_subscriber(openid, Dirty::State, |s| {
            let s = Arc::make_mut(s);
            s.subscribed = false;
            s.unsubscribed_at = Some(at);
            s.last_seen = s.last_seen.max(at);
            true
        })?;
        Ok(())
    }

    /// Notes a push from `openid`: updates `last_seen` (never backwards: retries arrive late)
    /// and counts user messages. Creates the record if absent: as subscribed (the platform
    /// only delivers pushes from followers) with `first_subscribed == None`, i.e. a follower
    /// from before mpgate. Written behind (see the module doc).
    pub fn touch(
        &self,
        openid: &OpenId,
        at: i64,
        is_user_message: bool,
    ) -> Result<Arc<Subscriber>, StoreError> {
        self.update_subscriber(openid, Dirty::Activity, |s| {
            if at <= s.last_seen && !is_user_message {
                return false;
            }
            let s = Arc::make_mut(s);
            if s.last_seen == 0 && !s.subscribed && s.created_by_operator {
                // The first push from a record an operator made: the platform only delivers
                // pushes from followers, so this person follows the account.
                s.subscribed = true;
            }
            s.last_seen = s.last_seen.max(at);
            if is_user_message {
                s.message_count = s.message_count.saturating_add(1);
            }
            true
        })
    }

    /// Adds tags (blank ones are ignored), keeping the list sorted and unique. Creates the
    /// record if absent. Written behind; a call that adds nothing new writes nothing.
    pub fn add_tags(
        &self,
        openid: &OpenId,
        tags: &[String],
    ) -> Result<Arc<Subscriber>, StoreError> {
        self.update_subscriber(openid, Dirty::State, |s| {
            let mut changed = false;
            for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
                // The list is kept sorted, so a tag already present costs no allocation, and
                // the record is copied (if shared) only when a tag is new.
                if let Err(at) = s.tags.binary_search_by(|x| x.as_str().cmp(t)) {
                    Arc::make_mut(s).tags.insert(at, t.to_owned());
                    changed = true;
                }
            }
            changed
        })
    }

    /// Read-modify-write of one subscriber under its shard lock, in place. `f` returns whether
    /// it changed the record; an unchanged record writes nothing.
    fn update_subscriber(
        &self,
        openid: &OpenId,
        change: Dirty,
        f: impl FnOnce(&mut Arc<Subscriber>) -> bool,
    ) -> Result<Arc<Subscriber>, StoreError> {
        check_part("openid", openid.as_str())?;
        let mut shard = self.inner.subscriber_cache.shard(openid.as_str())?;
        if !shard.contains_key(openid.as_str()) {
            let (sub, dirty) = match self.load_subscriber(openid)? {
                Some(s) => (s, Dirty::Clean),
                // A new record exists only in memory until written.
                None => (Subscriber::new(openid), change),
            };
            shard.insert(
                Box::from(openid.as_str()),
                Cached {
                    sub: Arc::new(sub),
                    dirty,
                    used: true,
                },
            );
        }
        let c = shard
            .get_mut(openid.as_str())
            .ok_or_else(|| StoreError::Corrupt("subscriber cache lost a record".into()))?;
        c.used = true;
        // `f` copies the record (`Arc::make_mut`) only when it changes it: the push that
        // calls `add_tags` still holds the version `touch` returned.
        if f(&mut c.sub) {
            c.dirty = c.dirty.max(change);
        }
        Ok(c.sub.clone())
    }

    /// Writes every dirty cached record to sled (one batch per shard) and evicts clean records
    /// unused since the previous eviction pass from shards over their share. Returns records
    /// written.
    pub fn flush_subscribers(&self) -> Result<usize, StoreError> {
        self.write_subscribers(true)
    }

    /// The write-behind step: records with state changes, or with `full` (once a second) every
    /// dirty record plus the eviction pass, so "unused since the last pass" means a while.
    pub(super) fn write_subscribers(&self, full: bool) -> Result<usize, StoreError> {
        let due = if full { Dirty::Activity } else { Dirty::State };
        let cache = &self.inner.subscriber_cache;
        // One writer at a time (the write-behind thread, explicit flushes): two snapshots of one
        // record written concurrently could land in sled in the wrong order.
        let _gate = lock(&cache.write_gate);
        let per_shard = CACHE_RECORDS / SHARDS;
        let mut written = 0;
        for shard in &cache.shards {
            let lock = || Ok::<_, StoreError>(lock(shard));
            let dirty: Vec<Arc<Subscriber>> = lock()?
                .values_mut()
                .filter(|c| c.dirty >= due)
                .map(|c| {
                    c.dirty = Dirty::Clean;
                    c.sub.clone()
                })
                .collect();
            if !dirty.is_empty() {
                let mut batch = sled::Batch::default();
                for sub in &dirty {
                    batch.insert(sub.openid.as_bytes(), encode_json(&**sub));
                }
                // Outside the shard lock: sled can block on its log for a while, and a push
                // must never wait for that. A record changed meanwhile is dirty again and goes
                // out in the next write, after this one (writes are serialised above).
                if let Err(e) = self.inner.subscribers.apply_batch(batch) {
                    let mut shard = lock()?;
                    for sub in &dirty {
                        if let Some(c) = shard.get_mut(sub.openid.as_str()) {
                            // The failed write may have held a state change.
                            c.dirty = Dirty::State;
                        }
                    }
                    return Err(e.into());
                }
                written += dirty.len();
            }
            if full {
                let mut shard = lock()?;
                // Only clean records go, so nothing unwritten is lost, and the next read
                // finds what was just written.
                if shard.len() > per_shard {
                    shard.retain(|_, c| c.used || c.dirty != Dirty::Clean);
                }
                for c in shard.values_mut() {
                    c.used = false;
                }
            }
        }
        Ok(written)
    }
}
