//! Subscriber records: one JSON value per openid in the `subscribers` tree.
//!
//! Every change is an atomic read-modify-write (`update_and_fetch`), so concurrent pushes from
//! the same user never lose an update.

use std::cell::Cell;

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
    pub subscriber: Subscriber,
}

impl Store {
    /// The record for `openid`, if any.
    pub fn subscriber(&self, openid: &OpenId) -> Result<Option<Subscriber>, StoreError> {
        self.inner
            .subscribers
            .get(openid.as_str().as_bytes())?
            .map(|v| decode_json("subscribers", &v))
            .transpose()
    }

    /// Records a subscribe event. `scene` (the QR scene, if any) becomes the channel only on a
    /// follower's first-time subscribe.
    pub fn on_subscribe(
        &self,
        openid: &OpenId,
        scene: Option<&str>,
        at: i64,
    ) -> Result<SubscribeOutcome, StoreError> {
        let first_time = Cell::new(false);
        let subscriber = self.update_subscriber(openid, |s| {
            let is_new = s.first_subscribed.is_none() && s.message_count == 0;
            first_time.set(is_new);
            if is_new {
                s.channel = scene.filter(|c| !c.is_empty()).map(str::to_owned);
            }
            s.first_subscribed.get_or_insert(at);
            s.last_subscribed = Some(at);
            s.subscribed = true;
            s.last_seen = s.last_seen.max(at);
        })?;
        Ok(SubscribeOutcome {
            first_time: first_time.get(),
            subscriber,
        })
    }

    /// Records an unsubscribe event.
    pub fn on_unsubscribe(&self, openid: &OpenId, at: i64) -> Result<(), StoreError> {
        self.update_subscriber(openid, |s| {
            s.subscribed = false;
            s.unsubscribed_at = Some(at);
            s.last_seen = s.last_seen.max(at);
        })?;
        Ok(())
    }

    /// Notes a push from `openid`: updates `last_seen` (never backwards: retries arrive late)
    /// and counts user messages. Creates the record if absent: as subscribed (the platform
    /// only delivers pushes from followers) with `first_subscribed == None`, i.e. a follower
    /// from before mpgate.
    pub fn touch(
        &self,
        openid: &OpenId,
        at: i64,
        is_user_message: bool,
    ) -> Result<Subscriber, StoreError> {
        self.update_subscriber(openid, |s| {
            s.last_seen = s.last_seen.max(at);
            if is_user_message {
                s.message_count = s.message_count.saturating_add(1);
            }
        })
    }

    /// Adds tags (blank ones are ignored), keeping the list sorted and unique. Creates the
    /// record if absent.
    pub fn add_tags(&self, openid: &OpenId, tags: &[String]) -> Result<Subscriber, StoreError> {
        self.update_subscriber(openid, |s| {
            s.tags.extend(
                tags.iter()
                    .map(|t| t.trim())
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
            s.tags.sort();
            s.tags.dedup();
        })
    }

    /// Atomic read-modify-write of one subscriber. `f` may run more than once (sled retries
    /// on contention); only the last run's effects are stored.
    fn update_subscriber(
        &self,
        openid: &OpenId,
        mut f: impl FnMut(&mut Subscriber),
    ) -> Result<Subscriber, StoreError> {
        check_part("openid", openid.as_str())?;
        let corrupt: Cell<Option<String>> = Cell::new(None);
        let stored: Cell<Option<Subscriber>> = Cell::new(None);
        self.inner
            .subscribers
            .update_and_fetch(openid.as_str().as_bytes(), |old| {
                let mut s = match old {
                    None => Subscriber::new(openid),
                    Some(bytes) => match serde_json::from_slice::<Subscriber>(bytes) {
                        Ok(s) => s,
                        Err(e) => {
                            // Leave an undecodable record untouched and report it.
                            corrupt.set(Some(e.to_string()));
                            return Some(bytes.to_vec());
                        }
                    },
                };
                corrupt.set(None);
                f(&mut s);
                let bytes = encode_json(&s);
                stored.set(Some(s));
                Some(bytes)
            })?;
        if let Some(e) = corrupt.take() {
            return Err(StoreError::Corrupt(format!(
                "undecodable record in tree subscribers: {e}"
            )));
        }
        stored
            .take()
            .ok_or_else(|| StoreError::Corrupt("subscriber update produced no value".into()))
    }
}
