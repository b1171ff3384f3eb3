//! What no rule answered: texts that fell to the fallback (or to no rule at all), counted per
//! day without who sent them, in the `unanswered` tree (`YYYY-MM-DD \0 text` → u64 BE).
//!
//! The caller gives the text normalised as the rules engine compares it; the store shapes it
//! for keeping ([`shape`]): runs of [`MASK_DIGITS`] or more ASCII digits become `#` (phone and
//! order numbers are personal, and "订单 1234567 怎么查" then groups with every other order
//! number), cut to [`MAX_CHARS`] characters and trimmed. No openid is ever stored with a text.
//!
//! Counting is the hot path's: in memory, like the daily counters, taken by the write-behind
//! period under the commit gate with the push's other effects and merged in the period's one
//! transaction (see `period`), so a crash keeps all of a push or none.
//!
//! Bounded: at most [`MAX_TEXTS_PER_DAY`] distinct texts a day; later new texts of that day
//! are counted under one overflow entry, shown as [`OTHER`]. To know how many a day holds
//! without reading sled per push, the store keeps a set of 64-bit hashes of the texts of the
//! last few days it counted on (loaded from the tree once, at the first text of a day). Kept
//! for `StoreConfig::unanswered_days` days (the upkeep's sweep deletes older days; 0 = off:
//! nothing is counted and the sweep deletes everything).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use chrono::NaiveDate;

use crate::sync::lock;

use super::counters::decode_count;
use super::{Store, StoreError};

/// At most this many distinct texts are kept per day; the rest are counted under [`OTHER`].
pub const MAX_TEXTS_PER_DAY: usize = 2_000;

/// A kept text has at most this many characters.
pub const MAX_CHARS: usize = 100;

/// Runs of at least this many ASCII digits are masked to one `#`.
pub const MASK_DIGITS: usize = 7;

/// How the overflow entry (texts past [`MAX_TEXTS_PER_DAY`] on their day) is shown.
pub const OTHER: &str = "(其他)";

/// Default retention in days (`MPGATE_UNANSWERED_DAYS`).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// The list operators read (`GET /admin/unanswered`, `mpgate unanswered`): over the last
/// [`LIST_DEFAULT_DAYS`] days, the top [`LIST_DEFAULT_LIMIT`] texts, unless asked for
/// `1..=LIST_MAX_DAYS` days or `1..=LIST_MAX_LIMIT` texts.
pub const LIST_DEFAULT_DAYS: u32 = 7;
/// See [`LIST_DEFAULT_DAYS`].
pub const LIST_DEFAULT_LIMIT: usize = 50;
/// See [`LIST_DEFAULT_DAYS`].
pub const LIST_MAX_DAYS: u32 = 366;
/// See [`LIST_DEFAULT_DAYS`].
pub const LIST_MAX_LIMIT: usize = 1_000;

/// How many days' text sets [`Memory`] keeps: today, yesterday (pushes around midnight) and
/// one more; an older day is read again from the tree if a push ever names it.
const KNOWN_DAYS: usize = 3;

/// Length of `YYYY-MM-DD`.
const DAY_LEN: usize = 10;

/// Counts not yet merged into the tree. The overflow entry is the empty text: no shaped text
/// is empty, so it cannot meet a subscriber's.
pub(super) type Pending = HashMap<(NaiveDate, Box<str>), u64, foldhash::fast::RandomState>;

/// The in-memory side: pending counts and which texts each recent day already holds.
#[derive(Default)]
pub(super) struct Memory {
    pending: Pending,
    /// Per day: hashes of the texts it holds (on disk, pending or in a period being written).
    known: Vec<(NaiveDate, HashSet<u64, foldhash::fast::RandomState>)>,
    hasher: foldhash::fast::RandomState,
}

/// The text as it is kept: digit runs masked, at most [`MAX_CHARS`] characters, trimmed, no
/// NUL; `None` when nothing is left.
pub fn shape(normalised: &str) -> Option<String> {
    let mut out = String::with_capacity(normalised.len().min(MAX_CHARS * 4));
    let mut chars = 0;
    let mut rest = normalised;
    while chars < MAX_CHARS {
        let Some(c) = rest.chars().next() else {
            break;
        };
        if c.is_ascii_digit() {
            let run = rest.bytes().take_while(u8::is_ascii_digit).count();
            if run >= MASK_DIGITS {
                out.push('#');
                chars += 1;
            } else {
                // ASCII digits: one byte, one character each.
                let take = run.min(MAX_CHARS - chars);
                out.push_str(&rest[..take]);
                chars += take;
            }
            rest = &rest[run..];
        } else {
            if c != '\0' {
                out.push(c);
                chars += 1;
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    let t = out.trim();
    if t.is_empty() {
        None
    } else if t.len() == out.len() {
        Some(out)
    } else {
        Some(t.to_string())
    }
}

fn tree_key(day: NaiveDate, text: &str) -> Vec<u8> {
    let mut k = day.format("%Y-%m-%d").to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(text.as_bytes());
    k
}

fn day_prefix(day: NaiveDate) -> Vec<u8> {
    day.format("%Y-%m-%d").to_string().into_bytes()
}

fn parse_key(k: &[u8]) -> Result<(NaiveDate, &str), StoreError> {
    let bad = || StoreError::Corrupt("malformed key in tree unanswered".into());
    if k.len() < DAY_LEN + 1 || k[DAY_LEN] != 0 {
        return Err(bad());
    }
    let day = std::str::from_utf8(&k[..DAY_LEN]).map_err(|_| bad())?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| bad())?;
    let text = std::str::from_utf8(&k[DAY_LEN + 1..]).map_err(|_| bad())?;
    Ok((day, text))
}

/// The tree's key and count of each pending entry, for the period's transaction.
pub(super) fn encode(pending: &Pending) -> Vec<(Vec<u8>, u64)> {
    pending
        .iter()
        .map(|((day, text), n)| (tree_key(*day, text), *n))
        .collect()
}

impl Store {
    /// Counts one text no rule answered on `day` (the account's), given normalised as the rules
    /// engine normalises it; shaped here ([`shape`]). In memory only: cheap enough for the
    /// callback (a sled read once per day, for the day's first text). Nothing when
    /// `unanswered_days` is 0.
    pub fn unanswered_count(&self, text_normalised: &str, day: NaiveDate) {
        if self.inner.cfg.unanswered_days == 0 {
            return;
        }
        let Some(text) = shape(text_normalised) else {
            return;
        };
        let mut mem = lock(&self.inner.unanswered);
        let hash = mem.hasher.hash_one(text.as_str());
        if !mem.known.iter().any(|(d, _)| *d == day) {
            let set = self.texts_of_day(&mem, day);
            if mem.known.len() >= KNOWN_DAYS {
                // The oldest day goes: pushes name today's (or yesterday's) day.
                if let Some(oldest) = mem.known.iter().map(|(d, _)| *d).min() {
                    mem.known.retain(|(d, _)| *d != oldest);
                }
            }
            mem.known.push((day, set));
        }
        let Memory { known, pending, .. } = &mut *mem;
        let Some((_, set)) = known.iter_mut().find(|(d, _)| *d == day) else {
            return;
        };
        let text: Box<str> = if set.contains(&hash) {
            text.into()
        } else if set.len() < MAX_TEXTS_PER_DAY {
            set.insert(hash);
            text.into()
        } else {
            "".into()
        };
        let slot = pending.entry((day, text)).or_insert(0);
        *slot = slot.saturating_add(1);
    }

    /// Hashes of the texts `day` holds: in the tree, pending, or in a failed period. A tree
    /// that cannot be read counts as empty (the bound then holds for what follows).
    fn texts_of_day(
        &self,
        mem: &Memory,
        day: NaiveDate,
    ) -> HashSet<u64, foldhash::fast::RandomState> {
        let mut set = HashSet::with_hasher(foldhash::fast::RandomState::default());
        let mut prefix = day_prefix(day);
        prefix.push(0);
        if let Ok(db) = self.db() {
            for k in db.unanswered.scan_prefix(&prefix).keys().flatten() {
                if let Ok((_, text)) = parse_key(&k) {
                    if !text.is_empty() {
                        set.insert(mem.hasher.hash_one(text));
                    }
                }
            }
        }
        let unconfirmed = self.unconfirmed_unanswered();
        for (d, text) in mem.pending.keys().chain(unconfirmed.iter().map(|(k, _)| k)) {
            if *d == day && !text.is_empty() {
                set.insert(mem.hasher.hash_one(&**text));
            }
        }
        set
    }

    /// Takes the counts a period merges (called with the commit gate held exclusively).
    pub(super) fn take_unanswered(&self) -> Pending {
        std::mem::take(&mut lock(&self.inner.unanswered).pending)
    }

    /// Adds counts back to memory (a period that failed before writing anything).
    pub(super) fn restore_unanswered(&self, counts: Pending) {
        let mut mem = lock(&self.inner.unanswered);
        for (k, n) in counts {
            let slot = mem.pending.entry(k).or_insert(0);
            *slot = slot.saturating_add(n);
        }
    }

    /// How many (day, text) counts wait in memory.
    pub(super) fn unanswered_pending_len(&self) -> usize {
        lock(&self.inner.unanswered).pending.len()
    }

    /// The texts no rule answered on days `from..=to`, most frequent first (ties by text), at
    /// most `limit`, each with its count over the range and the last day it came. Includes
    /// counts not yet written. The overflow entry is shown as [`OTHER`].
    pub fn unanswered_top(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        limit: usize,
    ) -> Result<Vec<(String, u64, NaiveDate)>, StoreError> {
        // A period's merge is seen whole or not at all.
        let _gate = lock(&self.inner.counters_gate);
        let mut merged: HashMap<String, (u64, NaiveDate)> = HashMap::new();
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let mut add = |day: NaiveDate, text: &str, n: u64| match merged.get_mut(text) {
            Some((count, last)) => {
                *count = count.saturating_add(n);
                *last = (*last).max(day);
            }
            None => {
                merged.insert(text.to_string(), (n, day));
            }
        };
        let start = day_prefix(from);
        let mut end = day_prefix(to);
        // Every key of day `to` is `to\0…`, below `to\x01`.
        end.push(1);
        for kv in self.db()?.unanswered.range(start..end) {
            let (k, v) = kv?;
            let (day, text) = parse_key(&k)?;
            add(day, text, decode_count(&v)?);
        }
        let unconfirmed = self.unconfirmed_unanswered();
        {
            let mem = lock(&self.inner.unanswered);
            for ((day, text), n) in mem
                .pending
                .iter()
                .chain(unconfirmed.iter().map(|(k, n)| (k, n)))
            {
                if (from..=to).contains(day) {
                    add(*day, text, *n);
                }
            }
        }
        let mut top: Vec<(String, u64, NaiveDate)> = merged
            .into_iter()
            .map(|(text, (n, last))| {
                let shown = if text.is_empty() {
                    OTHER.to_string()
                } else {
                    text
                };
                (shown, n, last)
            })
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(limit);
        Ok(top)
    }

    /// Deletes the days the retention no longer keeps: before `today - unanswered_days`, or
    /// every day when counting is off. `today` is the UTC date (the store does not know the
    /// account's time zone), so a day is kept up to one day longer in the account's. Returns
    /// how many entries went.
    pub fn sweep_unanswered(&self, today: NaiveDate) -> Result<usize, StoreError> {
        let _gate = lock(&self.inner.counters_gate);
        let db = self.db()?;
        let days = self.inner.cfg.unanswered_days;
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let old: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = if days == 0 {
            Box::new(db.unanswered.iter().keys())
        } else {
            let keep_from = today - chrono::Duration::days(i64::from(days));
            Box::new(db.unanswered.range(..day_prefix(keep_from)).keys())
        };
        for k in old {
            batch.remove(k?);
            removed += 1;
        }
        if removed > 0 {
            db.unanswered.apply_batch(batch)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digit_runs_are_masked_short_ones_kept() {
        assert_eq!(
            shape("订单 1234567 怎么查").as_deref(),
            Some("订单 # 怎么查")
        );
        assert_eq!(shape("订单 7654321 怎么查"), shape("订单 1234567 怎么查"));
        assert_eq!(shape("13800138000").as_deref(), Some("#"));
        assert_eq!(shape("第123456期").as_deref(), Some("第123456期"));
        assert_eq!(shape("a1234567b12").as_deref(), Some("a#b12"));
    }

    #[test]
    fn texts_are_cut_to_100_characters_on_a_char_boundary_and_trimmed() {
        let long = "价".repeat(150);
        let kept = shape(&long).expect("kept");
        assert_eq!(kept.chars().count(), MAX_CHARS);
        assert!(kept.chars().all(|c| c == '价'));
        // A cut that ends on a space is trimmed.
        let spaced = format!("{} tail", "x".repeat(99));
        assert_eq!(shape(&spaced).as_deref(), Some("x".repeat(99).as_str()));
        // A digit run across the cut is masked, not cut into digits.
        let digits = format!("{}12345678", "y".repeat(99));
        assert_eq!(shape(&digits), Some(format!("{}#", "y".repeat(99))));
    }

    #[test]
    fn nothing_is_kept_of_blank_or_nul_only_text() {
        assert_eq!(shape(""), None);
        assert_eq!(shape("   "), None);
        assert_eq!(shape("\0\0"), None);
        assert_eq!(shape("a\0b").as_deref(), Some("ab"));
    }

    #[test]
    fn keys_round_trip_and_the_overflow_entry_is_the_empty_text() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let k = tree_key(day, "怎么退款");
        assert_eq!(parse_key(&k).ok(), Some((day, "怎么退款")));
        let k = tree_key(day, "");
        assert_eq!(&k[..], b"2026-12-03\0");
        assert_eq!(parse_key(&k).ok(), Some((day, "")));
        assert!(parse_key(b"2026-12-03").is_err());
    }
}
