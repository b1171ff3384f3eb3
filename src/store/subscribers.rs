//! Subscriber records: one JSON value per openid in the `subscribers` tree, behind a
//! write-behind cache.
//!
//! Every push reads its sender's record (routing needs tags and channel) and bumps `last_seen`
//! and `message_count`. Doing that as a sled read-modify-write per push cost more than the whole
//! protocol layer, so records live in a bounded in-memory cache ([`SubscriberCache`]):
//!
//! - Every change updates the cached record and marks it dirty; the write-behind periods
//!   (`period`, every 100 ms) take records whose *state* changed (subscribe, unsubscribe, tags)
//!   together with the counters and stored answers of the same pushes, and write them in one
//!   transaction: after a crash either all of a push survives or its retry redoes all of it.
//!   Activity (`last_seen`, `message_count`) is written once a second: rewriting every active
//!   record ten times a second cost 6 % of push CPU. The analytics' bookkeeping (the cohort,
//!   the day's first activity, a follower appearing) counts in the same push and is a state
//!   change, so a crash never keeps a count without its mark (which would count it again); it
//!   happens once per subscriber per day, and every other push pays one date compare.
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

use chrono::NaiveDate;

use super::{check_part, decode_json, Counter, Store, StoreError};
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
    /// The account's day of the first follow (the subscriber's cohort); `None` for followers
    /// from before mpgate (and records from before the analytics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<NaiveDate>,
    /// The last account day on which they were active while following (a message or a menu
    /// tap): the first activity of a day is counted once, against this mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_day: Option<NaiveDate>,
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
            cohort: None,
            active_day: None,
        }
    }

    /// The channel as the counters name it (`""` for none).
    fn channel_name(&self) -> String {
        self.channel.clone().unwrap_or_default()
    }
}

/// What a push says about its sender's activity, for [`Store::touch_on`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// The push time (unix seconds).
    pub at: i64,
    /// The account's day of `at`.
    pub day: NaiveDate,
    /// A user message (not an event): counted in `message_count`.
    pub user_message: bool,
    /// Activity for retention: a user message or a menu interaction.
    pub active: bool,
}

/// Seconds in 7×24 h and 30×24 h: the unfollow and first-purchase windows.
pub(super) const WEEK_SECS: i64 = 7 * 24 * 3600;
pub(super) const MONTH_SECS: i64 = 30 * 24 * 3600;

/// Counts one subscriber change makes, taken under the record's lock and counted after it.
/// At most a few, and most pushes make none (no allocation then).
type Counts = Vec<(NaiveDate, Counter)>;

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
    /// Subscribed, unsubscribed or tags changed, a new record, or an analytics mark (cohort,
    /// the day's first activity) whose count the push made: written at the next write-behind
    /// step, with that count.
    State,
}

/// The in-memory side of the subscriber records.
pub(super) struct SubscriberCache {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<Box<str>, Cached, RandomState>>>,
}

impl SubscriberCache {
    pub(super) fn new() -> SubscriberCache {
        SubscriberCache {
            hasher: RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
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
        self.db()?
            .subscribers
            .get(openid.as_str().as_bytes())?
            .map(|v| decode_json("subscribers", &v))
            .transpose()
    }

    /// Records a subscribe event (written behind, see the module doc). `scene` (the QR scene,
    /// if any) becomes the channel only on a follower's first-time subscribe. Counts nothing
    /// for the analytics by the account's day: the pipeline calls [`Store::subscribe_on`]; this
    /// form (tools, tests) counts them by the UTC day of `at`.
    pub fn on_subscribe(
        &self,
        openid: &OpenId,
        scene: Option<&str>,
        at: i64,
    ) -> Result<SubscribeOutcome, StoreError> {
        self.subscribe_on(openid, scene, at, utc_day(at))
    }

    /// Records a subscribe event on the account's `day`, with the analytics' counts: a
    /// `follow:` when it makes someone a follower (a new record, or one not following), and
    /// for a first-time follow the cohort (`first_follow:`, [`Subscriber::cohort`]).
    pub fn subscribe_on(
        &self,
        openid: &OpenId,
        scene: Option<&str>,
        at: i64,
        day: NaiveDate,
    ) -> Result<SubscribeOutcome, StoreError> {
        let mut first_time = false;
        let mut counts = Counts::new();
        let subscriber = self.update_subscriber(openid, |s, fresh| {
            let s = Arc::make_mut(s);
            let was_following = !fresh && s.subscribed;
            let is_new = s.first_subscribed.is_none() && s.message_count == 0;
            first_time = is_new;
            if is_new {
                let before = s.channel_name();
                s.channel = scene.filter(|c| !c.is_empty()).map(str::to_owned);
                if was_following && s.channel_name() != before {
                    // Counted as a follower of `before` already: they move, and do not follow
                    // twice.
                    counts.push((day, Counter::MovedFrom { channel: before }));
                    counts.push((
                        day,
                        Counter::MovedTo {
                            channel: s.channel_name(),
                        },
                    ));
                }
            }
            if !was_following {
                let channel = s.channel_name();
                if is_new {
                    s.cohort = Some(day);
                    counts.push((
                        day,
                        Counter::FirstFollow {
                            channel: channel.clone(),
                        },
                    ));
                }
                counts.push((day, Counter::Follow { channel }));
            }
            s.first_subscribed.get_or_insert(at);
            s.last_subscribed = Some(at);
            s.subscribed = true;
            s.last_seen = s.last_seen.max(at);
            Dirty::State
        })?;
        self.count_all(counts);
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

    /// Records an unsubscribe event; the analytics' counts by the UTC day of `at` (see
    /// [`Store::on_subscribe`]; the pipeline calls [`Store::unsubscribe_on`]).
    pub fn on_unsubscribe(&self, openid: &OpenId, at: i64) -> Result<(), StoreError> {
        self.unsubscribe_on(openid, at, utc_day(at))
    }

    /// Records an unsubscribe event on the account's `day`: an `unfollow:` when it ends a
    /// follow, and `unfollow7:` (at the cohort day) for a cohort member's first unfollow within
    /// 7×24 h of the first follow. Someone mpgate never saw (a follower from before mpgate
    /// leaving) is counted as a follower seen and an unfollow.
    pub fn unsubscribe_on(
        &self,
        openid: &OpenId,
        at: i64,
        day: NaiveDate,
    ) -> Result<(), StoreError> {
        let mut counts = Counts::new();
        self.update_subscriber(openid, |s, fresh| {
            let s = Arc::make_mut(s);
            let channel = s.channel_name();
            if fresh {
                counts.push((
                    day,
                    Counter::SeenFollower {
                        channel: channel.clone(),
                    },
                ));
            }
            if s.subscribed {
                if let (Some(cohort), Some(first)) = (s.cohort, s.first_subscribed) {
                    let first_unfollow = s.unsubscribed_at.is_none_or(|u| u < first);
                    if first_unfollow && (0..WEEK_SECS).contains(&(at - first)) {
                        counts.push((
                            cohort,
                            Counter::Unfollow7 {
                                channel: channel.clone(),
                            },
                        ));
                    }
                }
                counts.push((day, Counter::Unfollow { channel }));
            }
            s.subscribed = false;
            s.unsubscribed_at = Some(at);
            s.last_seen = s.last_seen.max(at);
            Dirty::State
        })?;
        self.count_all(counts);
        Ok(())
    }

    /// Notes a push from `openid`: updates `last_seen` (never backwards: retries arrive late)
    /// and counts user messages. Creates the record if absent: as subscribed (the platform
    /// only delivers pushes from followers) with `first_subscribed == None`, i.e. a follower
    /// from before mpgate. Written behind (see the module doc). The analytics' counts by the
    /// UTC day of `at`, every user message active (the pipeline calls [`Store::touch_on`]).
    pub fn touch(
        &self,
        openid: &OpenId,
        at: i64,
        is_user_message: bool,
    ) -> Result<Arc<Subscriber>, StoreError> {
        self.touch_on(
            openid,
            Touch {
                at,
                day: utc_day(at),
                user_message: is_user_message,
                active: is_user_message,
            },
        )
    }

    /// [`Store::touch`] with the analytics: a follower appearing (a new record, or an
    /// operator-made one whose person writes) counts `seen_follower:`; the first activity of
    /// a day while following sets [`Subscriber::active_day`] and, on cohort day + 1, 7 or 30,
    /// counts `retained1:`/`retained7:`/`retained30:` at the cohort day. Those changes are
    /// state (written with the push's counts), so a crash never keeps one without the other;
    /// every other push costs a date compare.
    pub fn touch_on(&self, openid: &OpenId, t: Touch) -> Result<Arc<Subscriber>, StoreError> {
        let mut counts = Counts::new();
        let sub = self.update_subscriber(openid, |s, fresh| {
            let appears = fresh || (s.last_seen == 0 && !s.subscribed && s.created_by_operator);
            let marks = t.active && (s.subscribed || appears) && s.active_day < Some(t.day);
            if !(appears || marks || t.at > s.last_seen || t.user_message) {
                return Dirty::Clean;
            }
            let s = Arc::make_mut(s);
            let mut dirty = Dirty::Activity;
            if appears {
                // The platform only delivers pushes from followers: this person follows.
                s.subscribed = true;
                counts.push((
                    t.day,
                    Counter::SeenFollower {
                        channel: s.channel_name(),
                    },
                ));
                dirty = Dirty::State;
            }
            if marks {
                s.active_day = Some(t.day);
                if let Some(cohort) = s.cohort {
                    let channel = s.channel_name();
                    match (t.day - cohort).num_days() {
                        1 => counts.push((cohort, Counter::Retained1 { channel })),
                        7 => counts.push((cohort, Counter::Retained7 { channel })),
                        30 => counts.push((cohort, Counter::Retained30 { channel })),
                        _ => {}
                    }
                }
                dirty = Dirty::State;
            }
            s.last_seen = s.last_seen.max(t.at);
            if t.user_message {
                s.message_count = s.message_count.saturating_add(1);
            }
            dirty
        })?;
        self.count_all(counts);
        Ok(sub)
    }

    /// Adds tags (blank ones are ignored), keeping the list sorted and unique. Creates the
    /// record if absent. Written behind; a call that adds nothing new writes nothing.
    pub fn add_tags(
        &self,
        openid: &OpenId,
        tags: &[String],
    ) -> Result<Arc<Subscriber>, StoreError> {
        self.update_subscriber(openid, |s, _| {
            let mut changed = Dirty::Clean;
            for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
                // The list is kept sorted, so a tag already present costs no allocation, and
                // the record is copied (if shared) only when a tag is new.
                if let Err(at) = s.tags.binary_search_by(|x| x.as_str().cmp(t)) {
                    Arc::make_mut(s).tags.insert(at, t.to_owned());
                    changed = Dirty::State;
                }
            }
            changed
        })
    }

    /// Counts a change's analytics, after the record's lock is released (still inside the
    /// push's commit scope, so in the same period as the record).
    fn count_all(&self, counts: Counts) {
        for (day, c) in counts {
            self.count(c, day, 1);
        }
    }

    /// Read-modify-write of one subscriber under its shard lock, in place. `f` gets whether
    /// the record is new (not in the cache nor on disk: made here as [`Subscriber::new`]) and
    /// returns how soon its change must be written ([`Dirty::Clean`]: unchanged, nothing
    /// written).
    fn update_subscriber(
        &self,
        openid: &OpenId,
        f: impl FnOnce(&mut Arc<Subscriber>, bool) -> Dirty,
    ) -> Result<Arc<Subscriber>, StoreError> {
        check_part("openid", openid.as_str())?;
        let mut shard = self.inner.subscriber_cache.shard(openid.as_str())?;
        let mut fresh = false;
        if !shard.contains_key(openid.as_str()) {
            let sub = match self.load_subscriber(openid)? {
                Some(s) => s,
                None => {
                    fresh = true;
                    Subscriber::new(openid)
                }
            };
            shard.insert(
                Box::from(openid.as_str()),
                Cached {
                    sub: Arc::new(sub),
                    dirty: Dirty::Clean,
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
        let change = f(&mut c.sub, fresh);
        // A new record exists only in memory until written: as soon as a state change.
        c.dirty = c
            .dirty
            .max(change)
            .max(if fresh { Dirty::State } else { Dirty::Clean });
        Ok(c.sub.clone())
    }

    /// Writes every dirty cached record to sled (one write-behind period with everything due)
    /// and evicts clean records unused since the previous eviction pass from shards over their
    /// share. Returns records written.
    pub fn flush_subscribers(&self) -> Result<usize, StoreError> {
        Ok(self.write_period(true)?.records)
    }

    /// Takes the records a period writes (called with the commit gate held exclusively): those
    /// with state changes, or with `full` (once a second) every dirty record. They are marked
    /// clean; [`Store::restore_subscribers`] marks them dirty again if the period fails.
    pub(super) fn take_dirty_subscribers(&self, full: bool) -> Vec<Arc<Subscriber>> {
        let due = if full { Dirty::Activity } else { Dirty::State };
        let mut out = Vec::new();
        for shard in &self.inner.subscriber_cache.shards {
            out.extend(
                lock(shard)
                    .values_mut()
                    .filter(|c| c.dirty >= due)
                    .map(|c| {
                        c.dirty = Dirty::Clean;
                        c.sub.clone()
                    }),
            );
        }
        out
    }

    /// A failed period's records go back to dirty (as state changes: the failed write may have
    /// held one), so the next period writes them. A record changed meanwhile is dirty already
    /// and holds the newer version.
    pub(super) fn restore_subscribers(&self, taken: &[Arc<Subscriber>]) {
        let cache = &self.inner.subscriber_cache;
        for sub in taken {
            let i = (cache.hasher.hash_one(sub.openid.as_str()) % SHARDS as u64) as usize;
            let mut shard = lock(&cache.shards[i]);
            match shard.get_mut(sub.openid.as_str()) {
                Some(c) => c.dirty = Dirty::State,
                // Periods run one at a time and only evict after a success, so a taken record
                // is still cached; put it back if it is not, rather than lose it.
                None => {
                    shard.insert(
                        Box::from(sub.openid.as_str()),
                        Cached {
                            sub: sub.clone(),
                            dirty: Dirty::State,
                            used: true,
                        },
                    );
                }
            }
        }
    }

    /// Records created since the last period, not yet in `db` (for counts without a write:
    /// a period writes whole pushes, never just their records).
    pub(super) fn subscribers_only_in_memory(
        &self,
        db: &super::Backend,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for shard in &self.inner.subscriber_cache.shards {
            let dirty: Vec<Box<str>> = lock(shard)
                .iter()
                .filter(|(_, c)| c.dirty != Dirty::Clean)
                .map(|(k, _)| k.clone())
                .collect();
            for k in dirty {
                if !db.subscribers.contains_key(k.as_bytes())? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Subscriber records changed and not yet on disk.
    pub(super) fn subscribers_unwritten(&self) -> usize {
        self.inner
            .subscriber_cache
            .shards
            .iter()
            .map(|s| lock(s).values().filter(|c| c.dirty != Dirty::Clean).count())
            .sum()
    }

    /// The eviction pass (once a second, after a successful period): clean records not used
    /// since the previous pass leave shards over their share. Only clean records go, so nothing
    /// unwritten is lost, and the next read finds what was just written.
    pub(super) fn evict_subscribers(&self) {
        let per_shard = CACHE_RECORDS / SHARDS;
        for shard in &self.inner.subscriber_cache.shards {
            let mut shard = lock(shard);
            if shard.len() > per_shard {
                shard.retain(|_, c| c.used || c.dirty != Dirty::Clean);
            }
            for c in shard.values_mut() {
                c.used = false;
            }
        }
    }
}

/// The UTC day of `at`, for callers that give no account day (tools and tests).
fn utc_day(at: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .date_naive()
}
