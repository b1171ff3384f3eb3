//! The assistant's state: what each subscriber asked lately (memory), an answer kept for the
//! continue word, questions asked per subscriber per day, and tokens used per day.
//!
//! Trees: `assistant_memory` (openid → turns, JSON), `assistant_kept` (openid → kept answer,
//! JSON), `assistant_usage` (`q` day openid → count; `t` day → tokens). Each write is its own
//! sled operation, flushed where losing it would lose an answer (a kept answer).
//!
//! Usage keys are `q\0YYYY-MM-DD\0openid` and `t\0YYYY-MM-DD`, counts u64 big-endian as in
//! `counters`, so a day's entries sort together and the sweep deletes old days by range.
//!
//! None of this is on the push path of other rules: only an assistant rule's push touches
//! these trees, straight in sled rather than through the write-behind, because a quota must
//! hold across concurrent questions and a kept answer must survive a crash. Every
//! read-modify-write is a compare-and-swap loop on one key ([`update`]), so two concurrent
//! questions cannot both take the last slot of a quota and two takes of a kept answer never
//! give the same part.
//!
//! Nothing here logs what was asked or answered.

use chrono::NaiveDate;

use super::counters::decode_count;
use super::{check_part, decode_json, encode_json, join_key, Store, StoreError};
use crate::wechat::types::OpenId;

const TREE_MEMORY: &str = "assistant_memory";
const TREE_KEPT: &str = "assistant_kept";
const TREE_USAGE: &str = "assistant_usage";

/// Days of usage [`Store::sweep_assistant`] keeps before today: today's is what quotas need,
/// the days before are there for an operator to look at around midnight and time zones.
pub const USAGE_KEEP_DAYS: i64 = 3;

/// Seconds after which a remembered conversation (by its newest turn) or a kept answer is swept.
/// Both are only used for minutes (`memory_minutes`, the continue word); a day leaves room for
/// any configuration an operator would write.
pub const MEMORY_KEEP_SECS: i64 = 24 * 60 * 60;

/// One remembered question and its answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    /// Unix seconds of the question.
    pub at: i64,
    pub question: String,
    pub answer: String,
}

/// An answer kept for the subscriber's continue word, in the parts it is given in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptAnswer {
    /// Unix seconds when it was kept.
    pub at: i64,
    pub parts: Vec<String>,
}

/// A read-modify-write of one key, retried until no other writer came between: `f` gets the
/// current value and answers the new one (`None`: remove) and what to return. Nothing is
/// written when the value stays as it is.
fn update<T>(
    tree: &sled::Tree,
    key: &[u8],
    mut f: impl FnMut(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), StoreError>,
) -> Result<T, StoreError> {
    loop {
        let current = tree.get(key)?;
        let (new, out) = f(current.as_deref())?;
        if new.as_deref() == current.as_deref() {
            return Ok(out);
        }
        if tree.compare_and_swap(key, current, new)?.is_ok() {
            return Ok(out);
        }
    }
}

/// Removes `key` if it still holds `seen` (a writer since then wins); whether it went.
fn remove_if_unchanged(
    tree: &sled::Tree,
    key: &[u8],
    seen: sled::IVec,
) -> Result<bool, StoreError> {
    Ok(tree
        .compare_and_swap(key, Some(seen), None as Option<&[u8]>)?
        .is_ok())
}

fn day_str(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn question_key(openid: &OpenId, day: NaiveDate) -> Result<Vec<u8>, StoreError> {
    join_key(&[
        ("usage kind", "q"),
        ("day", &day_str(day)),
        ("openid", openid.as_str()),
    ])
}

fn tokens_key(day: NaiveDate) -> Result<Vec<u8>, StoreError> {
    join_key(&[("usage kind", "t"), ("day", &day_str(day))])
}

fn openid_key(openid: &OpenId) -> Result<&[u8], StoreError> {
    check_part("openid", openid.as_str())?;
    Ok(openid.as_str().as_bytes())
}

fn decode_turns(v: &[u8]) -> Result<Vec<Turn>, StoreError> {
    decode_json(TREE_MEMORY, v)
}

fn decode_kept(v: &[u8]) -> Result<KeptAnswer, StoreError> {
    decode_json(TREE_KEPT, v)
}

fn count_of(v: Option<&[u8]>) -> Result<u64, StoreError> {
    v.map(decode_count).transpose().map(|n| n.unwrap_or(0))
}

impl Store {
    fn assistant_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        // sled caches open trees by name, so this is a map lookup after the first call.
        Ok(self.db()?.db.open_tree(name)?)
    }

    /// The subscriber's remembered turns asked at or after `since`, oldest first.
    pub fn assistant_turns(&self, openid: &OpenId, since: i64) -> Result<Vec<Turn>, StoreError> {
        let key = openid_key(openid)?;
        let Some(v) = self.assistant_tree(TREE_MEMORY)?.get(key)? else {
            return Ok(Vec::new());
        };
        let mut turns = decode_turns(&v)?;
        turns.retain(|t| t.at >= since);
        Ok(turns)
    }

    /// Remembers `turn`, keeping the newest `keep` turns (0: remembers nothing).
    ///
    /// Turns are kept in the order they were asked (`at`), whatever order their answers came
    /// in. With `keep` 0 the subscriber's earlier turns are forgotten too: the rule asks for
    /// no memory. Not flushed: a crash may lose the last ~200 ms of memory, which only makes
    /// the next answer less informed.
    pub fn assistant_remember(
        &self,
        openid: &OpenId,
        turn: Turn,
        keep: usize,
    ) -> Result<(), StoreError> {
        let key = openid_key(openid)?;
        let tree = self.assistant_tree(TREE_MEMORY)?;
        update(&tree, key, |current| {
            if keep == 0 {
                return Ok((None, ()));
            }
            let mut turns = current.map(decode_turns).transpose()?.unwrap_or_default();
            // After every turn asked at the same time or earlier: equal times keep arrival order.
            let at = turns.partition_point(|t| t.at <= turn.at);
            turns.insert(at, turn.clone());
            let excess = turns.len().saturating_sub(keep);
            turns.drain(..excess);
            Ok((Some(encode_json(&turns)), ()))
        })
    }

    /// Forgets the subscriber's turns and any kept answer; whether there was anything.
    ///
    /// Durable on return when something was forgotten: the operator's "forget" (CLI, admin
    /// API) answers only then.
    pub fn assistant_forget(&self, openid: &OpenId) -> Result<bool, StoreError> {
        let key = openid_key(openid)?;
        let had_memory = self.assistant_tree(TREE_MEMORY)?.remove(key)?.is_some();
        let had_kept = self.assistant_tree(TREE_KEPT)?.remove(key)?.is_some();
        if had_memory || had_kept {
            self.sync()?;
        }
        Ok(had_memory || had_kept)
    }

    /// Keeps `kept` for the continue word (replacing an older one), flushed before returning.
    ///
    /// A kept answer without parts keeps nothing (and removes an older one): there is nothing
    /// to give.
    pub fn assistant_keep(&self, openid: &OpenId, kept: &KeptAnswer) -> Result<(), StoreError> {
        let key = openid_key(openid)?;
        let tree = self.assistant_tree(TREE_KEPT)?;
        if kept.parts.is_empty() {
            tree.remove(key)?;
        } else {
            tree.insert(key, encode_json(kept))?;
        }
        self.sync()
    }

    /// Takes the next part of the kept answer (kept at or after `since`), and how many parts
    /// are left after it; the entry goes when its last part is taken (or when it is older).
    ///
    /// Not flushed: after a crash within sled's flush interval (~200 ms) the part would be
    /// given again, never lost.
    pub fn assistant_take_part(
        &self,
        openid: &OpenId,
        since: i64,
    ) -> Result<Option<(String, usize)>, StoreError> {
        let key = openid_key(openid)?;
        let tree = self.assistant_tree(TREE_KEPT)?;
        update(&tree, key, |current| {
            let Some(v) = current else {
                return Ok((None, None));
            };
            let mut kept = decode_kept(v)?;
            if kept.at < since || kept.parts.is_empty() {
                return Ok((None, None));
            }
            let part = kept.parts.remove(0);
            let left = kept.parts.len();
            let rest = (left > 0).then(|| encode_json(&kept));
            Ok((rest, Some((part, left))))
        })
    }

    /// Whether a kept answer (kept at or after `since`) waits for the subscriber.
    pub fn assistant_has_kept(&self, openid: &OpenId, since: i64) -> Result<bool, StoreError> {
        let key = openid_key(openid)?;
        let Some(v) = self.assistant_tree(TREE_KEPT)?.get(key)? else {
            return Ok(false);
        };
        let kept = decode_kept(&v)?;
        Ok(kept.at >= since && !kept.parts.is_empty())
    }

    /// Counts one question by `openid` on `day` if fewer than `quota` were counted (0: no
    /// limit); `false` when the quota is reached (and nothing is counted). Atomic.
    ///
    /// Not flushed: a crash may forget the last ~200 ms of questions, at worst giving one
    /// question back.
    pub fn assistant_ask(
        &self,
        openid: &OpenId,
        day: NaiveDate,
        quota: u32,
    ) -> Result<bool, StoreError> {
        let key = question_key(openid, day)?;
        let tree = self.assistant_tree(TREE_USAGE)?;
        update(&tree, &key, |current| {
            let asked = count_of(current)?;
            if quota != 0 && asked >= u64::from(quota) {
                return Ok((current.map(<[u8]>::to_vec), false));
            }
            Ok((Some(asked.saturating_add(1).to_be_bytes().to_vec()), true))
        })
    }

    /// How many questions `openid` asked on `day` (counted by [`Store::assistant_ask`]).
    pub fn assistant_questions(&self, openid: &OpenId, day: NaiveDate) -> Result<u64, StoreError> {
        let key = question_key(openid, day)?;
        count_of(self.assistant_tree(TREE_USAGE)?.get(key)?.as_deref())
    }

    /// Adds `tokens` to the account's use on `day`; the new total.
    pub fn assistant_add_tokens(&self, day: NaiveDate, tokens: u64) -> Result<u64, StoreError> {
        let key = tokens_key(day)?;
        let tree = self.assistant_tree(TREE_USAGE)?;
        update(&tree, &key, |current| {
            let total = count_of(current)?.saturating_add(tokens);
            Ok((Some(total.to_be_bytes().to_vec()), total))
        })
    }

    /// The account's tokens used on `day`.
    pub fn assistant_tokens(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let key = tokens_key(day)?;
        count_of(self.assistant_tree(TREE_USAGE)?.get(key)?.as_deref())
    }

    /// Deletes what the assistant no longer needs: usage of days before `today -`
    /// [`USAGE_KEEP_DAYS`], conversations whose newest turn and kept answers older than
    /// [`MEMORY_KEEP_SECS`] before `now` (Unix seconds), and records that cannot be decoded
    /// (memory is disposable; a record no read can use would otherwise stay forever). A
    /// record changed while the sweep runs is left for the next one. Returns how many entries
    /// went. Run by the store's upkeep every minute ([`Store::spawn_maintenance`]).
    pub fn sweep_assistant(&self, now: i64, today: NaiveDate) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(MEMORY_KEEP_SECS);
        let mut removed = 0;

        let memory = self.assistant_tree(TREE_MEMORY)?;
        for kv in memory.iter() {
            let (k, v) = kv?;
            let stale = decode_turns(&v).map_or(true, |turns| {
                turns
                    .iter()
                    .map(|t| t.at)
                    .max()
                    .is_none_or(|newest| newest < cutoff)
            });
            if stale && remove_if_unchanged(&memory, &k, v)? {
                removed += 1;
            }
        }

        let kept = self.assistant_tree(TREE_KEPT)?;
        for kv in kept.iter() {
            let (k, v) = kv?;
            let stale = decode_kept(&v).map_or(true, |a| a.at < cutoff);
            if stale && remove_if_unchanged(&kept, &k, v)? {
                removed += 1;
            }
        }

        let usage = self.assistant_tree(TREE_USAGE)?;
        let keep_from = day_str(today - chrono::Duration::days(USAGE_KEEP_DAYS));
        let mut batch = sled::Batch::default();
        let mut old_usage = 0;
        for kind in ["q", "t"] {
            let start = join_key(&[("usage kind", kind)])?;
            let end = join_key(&[("usage kind", kind), ("day", &keep_from)])?;
            for k in usage.range(start..end).keys() {
                batch.remove(k?);
                old_usage += 1;
            }
        }
        if old_usage > 0 {
            usage.apply_batch(batch)?;
        }
        Ok(removed + old_usage)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::store::StoreConfig;

    const T0: i64 = 1_764_000_000;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store opens");
        (dir, store)
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).expect("date")
    }

    fn reader(n: u32) -> OpenId {
        OpenId::new(format!("oReader{n}"))
    }

    fn turn(at: i64, q: &str) -> Turn {
        Turn {
            at,
            question: q.to_string(),
            answer: format!("answer to {q}"),
        }
    }

    fn questions(turns: &[Turn]) -> Vec<&str> {
        turns.iter().map(|t| t.question.as_str()).collect()
    }

    #[test]
    fn the_assistant_remembers_the_newest_turns_up_to_the_rules_number() {
        let (_d, s) = store();
        let o = reader(1);
        for (i, q) in ["q1", "q2", "q3", "q4", "q5"].iter().enumerate() {
            s.assistant_remember(&o, turn(T0 + i as i64 * 60, q), 3)
                .expect("remember");
        }
        let turns = s.assistant_turns(&o, 0).expect("turns");
        assert_eq!(questions(&turns), vec!["q3", "q4", "q5"]);
        assert_eq!(turns[2], turn(T0 + 240, "q5"));
        // Another subscriber's memory is their own.
        assert!(s.assistant_turns(&reader(2), 0).expect("turns").is_empty());
    }

    #[test]
    fn turns_older_than_the_memory_window_are_not_read_back() {
        let (_d, s) = store();
        let o = reader(1);
        s.assistant_remember(&o, turn(T0, "old"), 5)
            .expect("remember");
        s.assistant_remember(&o, turn(T0 + 1_800, "recent"), 5)
            .expect("remember");
        let since = T0 + 2_000 - 30 * 60;
        assert_eq!(
            questions(&s.assistant_turns(&o, since).expect("turns")),
            vec!["recent"]
        );
        assert!(s.assistant_turns(&o, T0 + 1_801).expect("turns").is_empty());
    }

    #[test]
    fn a_slow_answer_to_an_earlier_question_is_remembered_in_question_order() {
        let (_d, s) = store();
        let o = reader(1);
        s.assistant_remember(&o, turn(T0 + 10, "second"), 5)
            .expect("remember");
        s.assistant_remember(&o, turn(T0, "first"), 5)
            .expect("remember");
        s.assistant_remember(&o, turn(T0 + 10, "third, same second"), 5)
            .expect("remember");
        assert_eq!(
            questions(&s.assistant_turns(&o, 0).expect("turns")),
            vec!["first", "second", "third, same second"]
        );
    }

    #[test]
    fn a_rule_without_memory_remembers_nothing_and_drops_what_was_there() {
        let (_d, s) = store();
        let o = reader(1);
        s.assistant_remember(&o, turn(T0, "q1"), 5)
            .expect("remember");
        s.assistant_remember(&o, turn(T0 + 1, "q2"), 0)
            .expect("remember");
        assert!(s.assistant_turns(&o, 0).expect("turns").is_empty());
    }

    #[test]
    fn forgetting_clears_memory_and_the_kept_answer_and_says_whether_there_was_any() {
        let (_d, s) = store();
        let o = reader(1);
        assert!(!s.assistant_forget(&o).expect("forget"));
        s.assistant_remember(&o, turn(T0, "q1"), 5)
            .expect("remember");
        s.assistant_keep(
            &o,
            &KeptAnswer {
                at: T0,
                parts: vec!["p1".into()],
            },
        )
        .expect("keep");
        s.assistant_remember(&reader(2), turn(T0, "theirs"), 5)
            .expect("remember");
        assert!(s.assistant_forget(&o).expect("forget"));
        assert!(s.assistant_turns(&o, 0).expect("turns").is_empty());
        assert!(!s.assistant_has_kept(&o, 0).expect("has kept"));
        assert!(!s.assistant_forget(&o).expect("forget again"));
        assert_eq!(s.assistant_turns(&reader(2), 0).expect("turns").len(), 1);
        // Only a kept answer is also something to forget.
        s.assistant_keep(
            &o,
            &KeptAnswer {
                at: T0,
                parts: vec!["p".into()],
            },
        )
        .expect("keep");
        assert!(s.assistant_forget(&o).expect("forget kept only"));
    }

    #[test]
    fn a_kept_answer_is_given_part_by_part_in_order_then_it_is_gone() {
        let (_d, s) = store();
        let o = reader(1);
        let kept = KeptAnswer {
            at: T0,
            parts: vec!["第一部分".into(), "第二部分".into(), "第三部分".into()],
        };
        s.assistant_keep(&o, &kept).expect("keep");
        assert!(s.assistant_has_kept(&o, T0).expect("has kept"));
        let mut given = Vec::new();
        while let Some(p) = s.assistant_take_part(&o, T0).expect("take") {
            given.push(p);
        }
        assert_eq!(
            given,
            vec![
                ("第一部分".to_string(), 2),
                ("第二部分".to_string(), 1),
                ("第三部分".to_string(), 0)
            ]
        );
        assert!(!s.assistant_has_kept(&o, T0).expect("has kept"));
        assert_eq!(s.assistant_take_part(&o, T0).expect("take"), None);
    }

    #[test]
    fn a_newer_kept_answer_replaces_the_older_one_and_an_expired_one_is_not_given() {
        let (_d, s) = store();
        let o = reader(1);
        let keep = |at: i64, parts: &[&str]| {
            s.assistant_keep(
                &o,
                &KeptAnswer {
                    at,
                    parts: parts.iter().map(|p| p.to_string()).collect(),
                },
            )
            .expect("keep");
        };
        keep(T0, &["old 1", "old 2"]);
        keep(T0 + 60, &["new"]);
        assert_eq!(
            s.assistant_take_part(&o, T0).expect("take"),
            Some(("new".to_string(), 0))
        );
        keep(T0, &["stale"]);
        assert!(!s.assistant_has_kept(&o, T0 + 1).expect("has kept"));
        assert_eq!(s.assistant_take_part(&o, T0 + 1).expect("take"), None);
        // The expired entry went with that take: even an older `since` finds nothing now.
        assert_eq!(s.assistant_take_part(&o, 0).expect("take"), None);
        // Keeping no parts keeps nothing.
        keep(T0, &["x"]);
        keep(T0, &[]);
        assert!(!s.assistant_has_kept(&o, 0).expect("has kept"));
    }

    #[test]
    fn a_kept_answer_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let o = reader(1);
        {
            let s = Store::open(dir.path(), StoreConfig::default()).expect("open");
            s.assistant_keep(
                &o,
                &KeptAnswer {
                    at: T0,
                    parts: vec!["a".into(), "b".into()],
                },
            )
            .expect("keep");
            assert_eq!(
                s.assistant_take_part(&o, T0).expect("take"),
                Some(("a".to_string(), 1))
            );
            s.flush().expect("flush");
        }
        let s = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
        assert_eq!(
            s.assistant_take_part(&o, T0).expect("take"),
            Some(("b".to_string(), 0))
        );
    }

    #[test]
    fn two_continue_words_at_once_never_get_the_same_part() {
        let (_d, s) = store();
        let o = reader(1);
        let parts: Vec<String> = (0..40).map(|i| format!("part {i}")).collect();
        s.assistant_keep(
            &o,
            &KeptAnswer {
                at: T0,
                parts: parts.clone(),
            },
        )
        .expect("keep");
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (s, o, barrier) = (s.clone(), o.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut got = Vec::new();
                    while let Some((p, _)) = s.assistant_take_part(&o, T0).expect("take") {
                        got.push(p);
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<String> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        all.sort_by_key(|p| p[5..].parse::<u32>().expect("number"));
        assert_eq!(all, parts);
    }

    #[test]
    fn the_daily_quota_refuses_once_reached_and_counts_nothing_more() {
        let (_d, s) = store();
        let o = reader(1);
        for _ in 0..3 {
            assert!(s.assistant_ask(&o, day(3), 3).expect("ask"));
        }
        assert!(!s.assistant_ask(&o, day(3), 3).expect("ask"));
        assert_eq!(s.assistant_questions(&o, day(3)).expect("count"), 3);
        // A new day, another subscriber: their own quotas.
        assert!(s.assistant_ask(&o, day(4), 3).expect("ask"));
        assert!(s.assistant_ask(&reader(2), day(3), 3).expect("ask"));
        // An operator raising the quota lets the subscriber ask again the same day.
        assert!(s.assistant_ask(&o, day(3), 4).expect("ask"));
        assert!(!s.assistant_ask(&o, day(3), 4).expect("ask"));
    }

    #[test]
    fn without_a_quota_every_question_is_allowed_and_still_counted() {
        let (_d, s) = store();
        let o = reader(1);
        for _ in 0..50 {
            assert!(s.assistant_ask(&o, day(3), 0).expect("ask"));
        }
        assert_eq!(s.assistant_questions(&o, day(3)).expect("count"), 50);
    }

    #[test]
    fn eight_concurrent_questions_cannot_take_more_than_the_last_slots() {
        let (_d, s) = store();
        let o = reader(1);
        for round in 0..20 {
            let d =
                NaiveDate::from_ymd_opt(2026, 1, 1).expect("date") + chrono::Duration::days(round);
            // Two slots left of five.
            for _ in 0..3 {
                assert!(s.assistant_ask(&o, d, 5).expect("ask"));
            }
            let barrier = Arc::new(Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (s, o, barrier) = (s.clone(), o.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        s.assistant_ask(&o, d, 5).expect("ask")
                    })
                })
                .collect();
            let allowed = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .filter(|ok| *ok)
                .count();
            assert_eq!(allowed, 2, "round {round}");
            assert_eq!(s.assistant_questions(&o, d).expect("count"), 5);
        }
    }

    #[test]
    fn tokens_add_up_per_day_also_from_concurrent_answers() {
        let (_d, s) = store();
        assert_eq!(s.assistant_tokens(day(3)).expect("tokens"), 0);
        assert_eq!(s.assistant_add_tokens(day(3), 160).expect("add"), 160);
        assert_eq!(s.assistant_add_tokens(day(3), 40).expect("add"), 200);
        assert_eq!(s.assistant_add_tokens(day(4), 7).expect("add"), 7);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        s.assistant_add_tokens(day(3), 3).expect("add");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(
            s.assistant_tokens(day(3)).expect("tokens"),
            200 + 8 * 25 * 3
        );
        assert_eq!(s.assistant_tokens(day(4)).expect("tokens"), 7);
        // Saturates rather than wrapping.
        s.assistant_add_tokens(day(5), u64::MAX).expect("add");
        assert_eq!(s.assistant_add_tokens(day(5), 1).expect("add"), u64::MAX);
    }

    #[test]
    fn the_sweep_forgets_old_conversations_kept_answers_and_usage_days() {
        let (_d, s) = store();
        let now = T0 + 10 * 86_400;
        let today = day(20);
        let (old, fresh) = (reader(1), reader(2));
        // A conversation whose newest turn is over a day old goes; one with a recent turn stays.
        s.assistant_remember(&old, turn(now - 90_000, "old"), 5)
            .expect("remember");
        s.assistant_remember(&fresh, turn(now - 90_000, "older"), 5)
            .expect("remember");
        s.assistant_remember(&fresh, turn(now - 60, "recent"), 5)
            .expect("remember");
        let kept = |at| KeptAnswer {
            at,
            parts: vec!["p".into()],
        };
        s.assistant_keep(&old, &kept(now - 90_000)).expect("keep");
        s.assistant_keep(&fresh, &kept(now - 60)).expect("keep");
        // Usage: four days back is gone, three days back stays.
        for d in [15, 16, 17, 20] {
            s.assistant_ask(&old, day(d), 0).expect("ask");
            s.assistant_ask(&fresh, day(d), 0).expect("ask");
            s.assistant_add_tokens(day(d), 10).expect("tokens");
        }

        // 1 memory + 1 kept + 2 days × (2 question entries + 1 token entry).
        assert_eq!(s.sweep_assistant(now, today).expect("sweep"), 8);

        assert!(s.assistant_turns(&old, 0).expect("turns").is_empty());
        assert_eq!(
            questions(&s.assistant_turns(&fresh, 0).expect("turns")),
            vec!["older", "recent"]
        );
        assert!(!s.assistant_has_kept(&old, 0).expect("kept"));
        assert!(s.assistant_has_kept(&fresh, 0).expect("kept"));
        for d in [15, 16] {
            assert_eq!(s.assistant_tokens(day(d)).expect("tokens"), 0, "day {d}");
            assert_eq!(s.assistant_questions(&old, day(d)).expect("q"), 0);
        }
        for d in [17, 20] {
            assert_eq!(s.assistant_tokens(day(d)).expect("tokens"), 10, "day {d}");
            assert_eq!(s.assistant_questions(&fresh, day(d)).expect("q"), 1);
        }
        assert_eq!(s.sweep_assistant(now, today).expect("sweep again"), 0);
    }

    #[test]
    fn an_openid_the_key_layout_cannot_hold_is_refused() {
        let (_d, s) = store();
        let bad = OpenId::new("o\0x");
        assert!(matches!(
            s.assistant_ask(&bad, day(3), 5),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.assistant_remember(&bad, turn(T0, "q"), 5),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.assistant_turns(&OpenId::new(""), 0),
            Err(StoreError::InvalidKey { .. })
        ));
    }
}
