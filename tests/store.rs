//! The state store against a real sled dir: stories per feature.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::NaiveDate;
use mpgate::store::{
    Counter, GrantOutcome, HandoffSession, HandoffState, RevokeOutcome, Store, StoreConfig,
    StoreError, StoredAnswer, SCHEMA_VERSION,
};
use mpgate::wechat::types::OpenId;
use tempfile::TempDir;

const T0: i64 = 1_760_000_000;

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreConfig::default()).expect("store opens")
}

fn fresh() -> (TempDir, Store) {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    (dir, store)
}

/// Raw sled on a dir a dropped [`Store`] just used. sled lets go of its file lock from a
/// background thread a moment after the last handle drops (sled issue #1289), so this waits for
/// it as `Store::open` does, instead of failing when that thread is slow under load.
fn raw_sled_after_drop(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled: {e:?}"),
        }
    }
}

fn uid(s: &str) -> OpenId {
    OpenId::new(s)
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).expect("valid date")
}

// ---- subscribers -------------------------------------------------------------------------

#[test]
fn subscribe_unsubscribe_subscribe_is_first_time_only_once_and_keeps_channel() {
    let (_dir, store) = fresh();
    let u = uid("oAlice");

    let first = store
        .on_subscribe(&u, Some("course2026"), T0)
        .expect("subscribe");
    assert!(first.first_time);
    assert_eq!(first.subscriber.channel.as_deref(), Some("course2026"));
    assert_eq!(first.subscriber.first_subscribed, Some(T0));
    assert!(first.subscriber.subscribed);

    store.on_unsubscribe(&u, T0 + 10).expect("unsubscribe");
    let gone = store.subscriber(&u).expect("read").expect("exists");
    assert!(!gone.subscribed);
    assert_eq!(gone.unsubscribed_at, Some(T0 + 10));

    let again = store
        .on_subscribe(&u, Some("spring-ad"), T0 + 20)
        .expect("resubscribe");
    assert!(!again.first_time);
    assert_eq!(again.subscriber.channel.as_deref(), Some("course2026"));
    assert_eq!(again.subscriber.first_subscribed, Some(T0));
    assert_eq!(again.subscriber.last_subscribed, Some(T0 + 20));
    assert!(again.subscriber.subscribed);
}

#[test]
fn follower_with_message_history_is_not_first_time() {
    let (_dir, store) = fresh();
    let u = uid("oOldFollower");
    store.touch(&u, T0, true).expect("touch");
    let out = store
        .on_subscribe(&u, Some("qr1"), T0 + 1)
        .expect("subscribe");
    assert!(!out.first_time);
    assert_eq!(out.subscriber.channel, None);
}

#[test]
fn touch_counts_user_messages_and_never_moves_last_seen_back() {
    let (_dir, store) = fresh();
    let u = uid("oBob");
    assert_eq!(store.subscriber(&u).expect("read"), None);
    store.touch(&u, T0, true).expect("touch");
    store.touch(&u, T0 + 5, false).expect("touch event");
    let s = store.touch(&u, T0 + 2, true).expect("late retry");
    assert_eq!(s.message_count, 2);
    assert_eq!(s.last_seen, T0 + 5);
    assert_eq!(
        store.subscriber(&u).expect("read"),
        Some(mpgate::store::Subscriber::clone(&s))
    );
}

#[test]
fn tags_are_sorted_and_unique() {
    let (_dir, store) = fresh();
    let u = uid("oCarol");
    store
        .add_tags(&u, &["vip".into(), "rust".into(), "vip".into()])
        .expect("tags");
    let s = store
        .add_tags(&u, &["alpha".into(), "rust".into(), " ".into()])
        .expect("tags");
    assert_eq!(s.tags, vec!["alpha", "rust", "vip"]);
}

#[test]
fn subscriber_changes_are_written_behind_and_reach_sled_with_the_next_write() {
    let dir = TempDir::new().expect("tempdir");
    let u = uid("oWB");
    {
        let store = open(dir.path());
        store.on_subscribe(&u, Some("qr9"), T0).expect("subscribe");
        store.touch(&u, T0 + 5, true).expect("touch");
        store.touch(&u, T0 + 9, true).expect("touch");
        // Readers see the cached record at once.
        let s = store.subscriber(&u).expect("read").expect("exists");
        assert_eq!((s.last_seen, s.message_count), (T0 + 9, 2));
        assert_eq!(store.flush_subscribers().expect("flush"), 1);
        assert_eq!(store.flush_subscribers().expect("nothing dirty"), 0);
        let s = store.add_tags(&u, &["vip".into()]).expect("tags");
        assert_eq!(s.tags, ["vip"]);
        // Adding a tag it already has changes nothing and writes nothing.
        store
            .add_tags(&u, &["vip".into(), " ".into()])
            .expect("tags");
        assert_eq!(store.flush_subscribers().expect("flush"), 1);
        store.add_tags(&u, &["vip".into()]).expect("tags");
        assert_eq!(store.flush_subscribers().expect("flush"), 0);
        // The server's 100 ms write-behind step writes state changes, and leaves activity to
        // the once-a-second one.
        store.touch(&u, T0 + 15, false).expect("touch");
        store.write_behind(false).expect("write-behind");
        assert_eq!(store.flush_subscribers().expect("activity still dirty"), 1);
        store.touch(&u, T0 + 16, false).expect("touch");
        store.on_unsubscribe(&u, T0 + 20).expect("unsubscribe");
        store.write_behind(false).expect("write-behind");
        assert_eq!(store.flush_subscribers().expect("flush"), 0);
    }
    let store = open(dir.path());
    let s = store.subscriber(&u).expect("read").expect("exists");
    assert_eq!(
        (
            s.channel.as_deref(),
            s.last_seen,
            s.message_count,
            s.tags,
            s.subscribed,
            s.unsubscribed_at
        ),
        (
            Some("qr9"),
            T0 + 20,
            2,
            vec!["vip".to_string()],
            false,
            Some(T0 + 20)
        )
    );
}

#[test]
fn cache_eviction_keeps_every_record_correct() {
    let (_dir, store) = fresh();
    // More openids than the cache holds, each touched twice across flushes.
    for round in 0..2 {
        for i in 0..12_000 {
            store
                .touch(&uid(&format!("o{i}")), T0 + round, true)
                .expect("touch");
        }
        store.flush_subscribers().expect("flush");
        store
            .flush_subscribers()
            .expect("second pass evicts unused records");
    }
    for i in (0..12_000).step_by(997) {
        let s = store
            .subscriber(&uid(&format!("o{i}")))
            .expect("read")
            .expect("exists");
        assert_eq!((s.message_count, s.last_seen), (2, T0 + 1), "o{i}");
    }
    assert_eq!(store.stats().expect("stats").subscribers, 12_000);
}

#[test]
fn concurrent_touch_loses_no_update() {
    let (_dir, store) = fresh();
    let u = uid("oBusy");
    std::thread::scope(|scope| {
        for t in 0..8 {
            let store = store.clone();
            let u = u.clone();
            scope.spawn(move || {
                for i in 0..500 {
                    store.touch(&u, T0 + t * 1000 + i, true).expect("touch");
                }
            });
        }
    });
    let s = store.subscriber(&u).expect("read").expect("exists");
    assert_eq!(s.message_count, 4000);
    assert_eq!(s.last_seen, T0 + 7 * 1000 + 499);
}

// ---- dedupe ------------------------------------------------------------------------------

#[test]
fn dedupe_put_get_and_sweep_respect_retention() {
    let dir = TempDir::new().expect("tempdir");
    let cfg = StoreConfig {
        dedupe_retention_secs: 100,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    let old = StoredAnswer {
        at: T0,
        body: "<xml>old</xml>".into(),
        headless: true,
    };
    let young = StoredAnswer {
        at: T0 + 50,
        body: "".into(),
        headless: true,
    };
    store.dedupe_put("msg:1", &old).expect("put");
    store.dedupe_put("msg:2", &young).expect("put");
    assert_eq!(store.dedupe_get("msg:1").expect("get"), Some(old.clone()));
    assert_eq!(store.dedupe_get("msg:3").expect("get"), None);
    assert_eq!(store.stats().expect("stats").dedupe_entries, 2);

    // Retention boundary: an entry exactly `retention` old is kept.
    assert_eq!(store.sweep_dedupe(T0 + 100).expect("sweep"), 0);
    assert_eq!(store.sweep_dedupe(T0 + 101).expect("sweep"), 1);
    assert_eq!(store.dedupe_get("msg:1").expect("get"), None);
    assert_eq!(store.dedupe_get("msg:2").expect("get"), Some(young));
    assert_eq!(store.sweep_dedupe(T0 + 151).expect("sweep"), 1);
    assert_eq!(store.stats().expect("stats").dedupe_entries, 0);
}

#[test]
fn dedupe_re_put_moves_entry_in_time() {
    let dir = TempDir::new().expect("tempdir");
    let cfg = StoreConfig {
        dedupe_retention_secs: 10,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    store
        .dedupe_put(
            "k",
            &StoredAnswer {
                at: T0,
                body: "a",
                headless: true,
            },
        )
        .expect("put");
    let newer = StoredAnswer {
        at: T0 + 100,
        body: "b".into(),
        headless: true,
    };
    store.dedupe_put("k", &newer).expect("re-put");
    assert_eq!(store.sweep_dedupe(T0 + 50).expect("sweep"), 0);
    assert_eq!(store.dedupe_get("k").expect("get"), Some(newer));
}

#[test]
fn sweep_handles_more_than_one_chunk() {
    let dir = TempDir::new().expect("tempdir");
    let cfg = StoreConfig {
        dedupe_retention_secs: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    for i in 0..1300 {
        let r = StoredAnswer {
            at: T0 + i,
            body: "",
            headless: true,
        };
        store.dedupe_put(&format!("m{i}"), &r).expect("put");
    }
    assert_eq!(store.sweep_dedupe(T0 + 1200).expect("sweep"), 1200);
    assert_eq!(store.stats().expect("stats").dedupe_entries, 100);
}

#[test]
fn dedupe_entries_are_found_before_and_after_their_batch_is_written() {
    let (_dir, store) = fresh();
    // Enough bodies to span several batch values (each is at most 32 KiB).
    let body = "<xml>回复内容 🙂 </xml>".repeat(40);
    for i in 0..400 {
        let r = StoredAnswer {
            at: T0 + i,
            body: format!("{body}{i}"),
            headless: true,
        };
        store.dedupe_put(&format!("msg:{i}"), &r).expect("put");
    }
    let check = |store: &Store| {
        for i in [0, 1, 199, 399] {
            let got = store.dedupe_get(&format!("msg:{i}")).expect("get");
            assert_eq!(
                got.map(|r| (r.at, r.body.to_string())),
                Some((T0 + i, format!("{body}{i}"))),
                "msg:{i}"
            );
        }
        assert_eq!(store.dedupe_get("msg:400").expect("get"), None);
    };
    check(&store);
    assert_eq!(store.flush_dedupe().expect("flush"), 400);
    assert_eq!(store.flush_dedupe().expect("nothing left"), 0);
    check(&store);
    assert_eq!(store.stats().expect("stats").dedupe_entries, 400);
}

#[test]
fn flushed_dedupe_entries_survive_a_restart_and_pending_ones_are_flushed_by_flush() {
    let dir = TempDir::new().expect("tempdir");
    let now = chrono::Utc::now().timestamp();
    {
        let store = open(dir.path());
        for i in 0..3 {
            let r = StoredAnswer {
                at: now,
                body: format!("<xml>{i}</xml>"),
                headless: true,
            };
            store.dedupe_put(&format!("msg:{i}"), &r).expect("put");
            if i == 0 {
                store.flush_dedupe().expect("write behind");
            }
        }
        // What the server does on shutdown.
        store.flush().expect("flush");
    }
    let store = open(dir.path());
    for i in 0..3 {
        let got = store.dedupe_get(&format!("msg:{i}")).expect("get");
        assert_eq!(
            got.map(|r| r.body.to_string()),
            Some(format!("<xml>{i}</xml>"))
        );
    }
    // A re-put after the restart shadows the stored entry.
    store
        .dedupe_put(
            "msg:1",
            &StoredAnswer {
                at: now + 1,
                body: "new",
                headless: true,
            },
        )
        .expect("re-put");
    assert_eq!(
        store
            .dedupe_get("msg:1")
            .expect("get")
            .map(|r| r.body.to_string()),
        Some("new".into())
    );
}

#[test]
fn entries_older_than_the_retention_are_not_reloaded_and_their_batches_are_deleted() {
    let dir = TempDir::new().expect("tempdir");
    let now = chrono::Utc::now().timestamp();
    {
        let store = open(dir.path());
        let old = StoredAnswer {
            at: now - 4000,
            body: "old",
            headless: true,
        };
        store.dedupe_put("old", &old).expect("put");
        store.flush().expect("flush");
        let young = StoredAnswer {
            at: now,
            body: "young",
            headless: true,
        };
        store.dedupe_put("young", &young).expect("put");
        store.flush().expect("flush");
    }
    {
        let store = open(dir.path());
        assert_eq!(store.dedupe_get("old").expect("get"), None);
        assert!(store.dedupe_get("young").expect("get").is_some());
        assert_eq!(store.stats().expect("stats").dedupe_entries, 1);
        assert_eq!(store.sweep_dedupe(now).expect("sweep"), 0);
        // The old entry's batch is still on disk; this sweep forgets the young entry and, with
        // both batches expired, deletes them.
        assert_eq!(store.sweep_dedupe(now + 601).expect("sweep"), 1);
        assert_eq!(store.dedupe_get("young").expect("get"), None);
        store.flush().expect("flush");
    }
    // Had the young entry's batch survived the sweep, it would be reloaded (it is within the
    // retention of the real clock).
    let store = open(dir.path());
    assert_eq!(store.stats().expect("stats").dedupe_entries, 0);
}

#[test]
fn concurrent_puts_gets_and_flushes_lose_nothing() {
    let (_dir, store) = fresh();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..500 {
                    let key = format!("t{t}:{i}");
                    let r = StoredAnswer {
                        at: T0 + i,
                        body: key.as_str(),
                        headless: true,
                    };
                    store.dedupe_put(&key, &r).expect("put");
                    // Every entry put so far is visible, pending or flushed.
                    let back = format!("t{t}:{}", i / 2);
                    let got = store.dedupe_get(&back).expect("get").expect("present");
                    assert_eq!(&*got.body, back.as_str());
                }
            });
        }
        let store = store.clone();
        scope.spawn(move || {
            for _ in 0..200 {
                store.flush_dedupe().expect("flush");
                std::thread::yield_now();
            }
        });
    });
    store.flush_dedupe().expect("flush");
    for t in 0..4 {
        for i in 0..500 {
            let key = format!("t{t}:{i}");
            let got = store.dedupe_get(&key).expect("get").expect("present");
            assert_eq!(&*got.body, key.as_str());
        }
    }
}

#[test]
fn dedupe_keys_may_hold_any_bytes_but_not_be_empty_or_huge() {
    let (_dir, store) = fresh();
    let r = StoredAnswer {
        at: T0,
        body: "x".into(),
        headless: true,
    };
    store.dedupe_put("oA\0:1234", &r).expect("put");
    assert_eq!(store.dedupe_get("oA\0:1234").expect("get"), Some(r.clone()));
    assert_eq!(store.dedupe_get("oA").expect("get"), None);
    assert!(matches!(
        store.dedupe_put("", &r),
        Err(StoreError::InvalidKey { .. })
    ));
    // The longest key a batch can hold is 65,535 bytes; it round-trips through sled.
    let longest = "键".repeat(21_845);
    assert_eq!(longest.len(), 65_535);
    store.dedupe_put(&longest, &r).expect("put");
    store.flush_dedupe().expect("flush");
    assert_eq!(store.dedupe_get(&longest).expect("get"), Some(r.clone()));
    assert!(matches!(
        store.dedupe_put(&format!("{longest}x"), &r),
        Err(StoreError::InvalidKey { .. })
    ));
}

/// The pipeline's story: whatever answer it stores for a push, a retry gets back field for
/// field (time, body, flag), whether the entry is still in memory, written to sled, or read
/// back after a restart; whether it was put with a borrowed body (as the pipeline does) or an
/// owned one.
#[test]
fn a_stored_answer_comes_back_exactly_as_it_was_put_pending_flushed_and_reopened() {
    let dir = TempDir::new().expect("tempdir");
    // Within the retention of the real clock, so a reopen loads them.
    let now = chrono::Utc::now().timestamp();
    let answer = |ago: i64, body: &str, headless: bool| StoredAnswer {
        at: now - ago,
        body: body.into(),
        headless,
    };
    let answers: Vec<(&str, StoredAnswer)> = vec![
        ("msg:empty-headless", answer(0, "", true)),
        ("msg:empty-whole", answer(1, "", false)),
        (
            "msg:whole",
            answer(2, "<xml><Content><![CDATA[hi]]></Content></xml>", false),
        ),
        (
            "oA:1760000000:subscribe",
            answer(
                3,
                "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[欢迎关注 🎉 «ünï»]]></Content></xml>",
                true,
            ),
        ),
        // Larger than a batch's target size, and with bytes a key may not hold.
        ("msg:long", answer(4, &"回复\0".repeat(2000), false)),
        ("msg:long-headless", answer(5, &"é".repeat(9000), true)),
    ];
    let check = |store: &Store, when: &str| {
        for (key, want) in &answers {
            let got = store.dedupe_get(key).expect("get");
            assert_eq!(got.as_ref(), Some(want), "{key} {when}");
        }
    };
    {
        let store = open(dir.path());
        for (i, (key, a)) in answers.iter().enumerate() {
            if i % 2 == 0 {
                store.dedupe_put(key, &a.borrowed()).expect("put borrowed");
            } else {
                store.dedupe_put(key, a).expect("put owned");
            }
        }
        check(&store, "pending");
        assert_eq!(store.flush_dedupe().expect("flush"), answers.len());
        check(&store, "flushed");
        store.flush().expect("flush");
    }
    check(&open(dir.path()), "reopened");
}

/// The server's story: it starts the store's upkeep, answers pushes, and at shutdown stops the
/// upkeep and then flushes. In between, answers reach sled without anyone calling a flush;
/// once the upkeep has stopped, nothing writes behind any more (hence the final flush).
#[tokio::test]
async fn the_upkeep_writes_answers_behind_until_it_is_stopped() {
    let (_dir, store) = fresh();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let upkeep = store.spawn_maintenance(stopped).expect("upkeep starts");
    let answer = StoredAnswer {
        at: chrono::Utc::now().timestamp(),
        body: "<xml>kept</xml>",
        headless: false,
    };
    store.dedupe_put("msg:1", &answer).expect("put");
    // Ten write-behind periods: ample even on a loaded machine.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    stop.send(true).expect("upkeep listens");
    upkeep.await.expect("upkeep ends");
    assert_eq!(
        store.flush_dedupe().expect("flush"),
        0,
        "the upkeep wrote the answer"
    );
    store.dedupe_put("msg:2", &answer).expect("put");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        store.flush_dedupe().expect("flush"),
        1,
        "a stopped upkeep writes nothing"
    );
}

/// Expired answers are forgotten by the upkeep itself, starting with a sweep when it starts
/// (as the server's minute job did), so a restarted server does not keep stale batches.
#[tokio::test]
async fn the_upkeep_sweeps_expired_answers_when_it_starts() {
    let dir = TempDir::new().expect("tempdir");
    let cfg = StoreConfig {
        dedupe_retention_secs: 60,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    let stale = StoredAnswer {
        at: chrono::Utc::now().timestamp() - 3600,
        body: "stale",
        headless: true,
    };
    store.dedupe_put("msg:stale", &stale).expect("put");
    store.flush_dedupe().expect("flush");
    // Until a sweep, an expired entry is still answered.
    assert!(store.dedupe_get("msg:stale").expect("get").is_some());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let upkeep = store.spawn_maintenance(stopped).expect("upkeep starts");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(store.dedupe_get("msg:stale").expect("get"), None);
    assert_eq!(store.stats().expect("stats").dedupe_entries, 0);
    stop.send(true).expect("upkeep listens");
    upkeep.await.expect("upkeep ends");
}

/// An operator pointing `MPGATE_DATA_DIR` below a file gets an I/O error naming the dir, with
/// the system's error kind kept (a full disk and a bad path are told apart by it).
#[test]
fn a_data_dir_that_cannot_be_created_is_an_io_error_naming_it() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a dir").expect("write");
    let bad = file.join("data");
    let err = Store::open(&bad, StoreConfig::default()).expect_err("cannot be created");
    let StoreError::Io(io) = &err else {
        panic!("expected an I/O error, got {err:?}");
    };
    assert_ne!(io.kind(), std::io::ErrorKind::Other, "{io:?}");
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
}

// ---- entitlements ------------------------------------------------------------------------

#[test]
fn grant_is_idempotent_on_reference() {
    let (_dir, store) = fresh();
    let u = uid("oBuyer");
    let GrantOutcome::Granted(first) = store
        .grant(&u, "rust-101", "shop", Some("order-1"), T0)
        .expect("grant")
    else {
        panic!("first grant must be Granted");
    };
    let again = store
        .grant(&u, "rust-101", "shop", Some("order-1"), T0 + 99)
        .expect("grant");
    assert_eq!(again, GrantOutcome::AlreadyGranted(first.clone()));
    assert_eq!(
        store.entitlement(&u, "rust-101").expect("read"),
        Some(first.clone())
    );

    // The same reference for someone else is a conflict and changes nothing.
    let other = uid("oOther");
    let conflict = store
        .grant(&other, "rust-101", "shop", Some("order-1"), T0 + 5)
        .expect("grant");
    assert_eq!(conflict, GrantOutcome::ReferenceConflict(first));
    assert!(!store.is_entitled(&other, "rust-101").expect("read"));
}

#[test]
fn revoke_then_regrant() {
    let (_dir, store) = fresh();
    let u = uid("oDave");
    assert_eq!(
        store.revoke(&u, "go-201", T0).expect("revoke"),
        RevokeOutcome::NotGranted
    );
    store.grant(&u, "go-201", "admin", None, T0).expect("grant");
    assert!(store.is_entitled(&u, "go-201").expect("read"));

    let RevokeOutcome::Revoked(revoked) = store.revoke(&u, "go-201", T0 + 10).expect("revoke")
    else {
        panic!("expected Revoked");
    };
    assert_eq!(revoked.revoked_at, Some(T0 + 10));
    assert!(!store.is_entitled(&u, "go-201").expect("read"));
    assert_eq!(
        store.revoke(&u, "go-201", T0 + 11).expect("revoke"),
        RevokeOutcome::AlreadyRevoked(revoked)
    );
    assert!(store
        .entitled_subscribers("go-201")
        .expect("read")
        .is_empty());

    let GrantOutcome::Granted(regranted) = store
        .grant(&u, "go-201", "shop", Some("order-9"), T0 + 20)
        .expect("regrant")
    else {
        panic!("regrant after revoke must be Granted");
    };
    assert_eq!(regranted.granted_at, T0 + 20);
    assert_eq!(regranted.revoked_at, None);
    assert!(store.is_entitled(&u, "go-201").expect("read"));

    // Replaying the revoked purchase's reference does not undo the state.
    store.revoke(&u, "go-201", T0 + 30).expect("revoke");
    let replay = store
        .grant(&u, "go-201", "shop", Some("order-9"), T0 + 40)
        .expect("replay");
    assert!(matches!(replay, GrantOutcome::AlreadyGranted(ref e) if e.revoked_at == Some(T0 + 30)));
    assert!(!store.is_entitled(&u, "go-201").expect("read"));
}

#[test]
fn index_agrees_with_records_after_mixed_grants_and_revokes() {
    let (_dir, store) = fresh();
    let users: Vec<OpenId> = (0..12).map(|i| uid(&format!("oU{i:02}"))).collect();
    let articles = ["a1", "a2", "a3"];
    for (i, u) in users.iter().enumerate() {
        for (j, a) in articles.iter().enumerate() {
            if (i + j) % 2 == 0 {
                store.grant(u, a, "admin", None, T0).expect("grant");
            }
            if (i * 7 + j) % 5 == 0 {
                store.revoke(u, a, T0 + 1).expect("revoke");
            }
            if (i + j) % 3 == 0 {
                store
                    .grant(u, a, "admin", Some(&format!("r{i}-{j}")), T0 + 2)
                    .expect("grant");
            }
        }
    }
    for a in articles {
        let via_index: BTreeSet<String> = store
            .entitled_subscribers(a)
            .expect("index")
            .into_iter()
            .map(|e| {
                assert!(e.is_active());
                assert_eq!(e.article, a);
                e.openid
            })
            .collect();
        let via_records: BTreeSet<String> = users
            .iter()
            .flat_map(|u| store.entitlements_of(u).expect("records"))
            .filter(|e| e.article == a && e.is_active())
            .map(|e| e.openid)
            .collect();
        assert_eq!(via_index, via_records, "article {a}");
        assert!(!via_index.is_empty());
    }
}

#[test]
fn keys_with_nul_are_refused() {
    let (_dir, store) = fresh();
    let err = store.grant(&uid("o\0x"), "a", "admin", None, T0);
    assert!(matches!(
        err,
        Err(StoreError::InvalidKey { what: "openid" })
    ));
    let err = store.grant(&uid("o"), "a\0b", "admin", None, T0);
    assert!(matches!(
        err,
        Err(StoreError::InvalidKey { what: "article" })
    ));
}

#[test]
fn grant_and_link_secret_survive_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let u = uid("oEve");
    let secret = {
        let store = open(dir.path());
        store
            .grant(&u, "rust-101", "admin", Some("o-7"), T0)
            .expect("grant");
        store.link_secret().expect("secret")
    };
    let store = open(dir.path());
    assert!(store.is_entitled(&u, "rust-101").expect("read"));
    assert_eq!(store.link_secret().expect("secret"), secret);
    assert_eq!(store.link_secret().expect("secret"), secret);
    assert!(matches!(
        store.grant(&u, "rust-101", "admin", Some("o-7"), T0 + 1),
        Ok(GrantOutcome::AlreadyGranted(_))
    ));
}

#[test]
fn grant_is_durable_without_a_clean_shutdown() {
    // A child process grants, then dies by SIGKILL-equivalent (`process::exit` skips every
    // destructor, so sled gets no shutdown flush): the grant must still be on disk.
    if let Ok(dir) = std::env::var("MPGATE_STORE_CHILD_GRANT") {
        let store = open(Path::new(&dir));
        store
            .grant(&uid("oKill"), "art", "admin", None, T0)
            .expect("grant");
        std::process::exit(0);
    }
    let dir = TempDir::new().expect("tempdir");
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "grant_is_durable_without_a_clean_shutdown",
            "--nocapture",
        ])
        .env("MPGATE_STORE_CHILD_GRANT", dir.path())
        .status()
        .expect("spawn child");
    assert!(status.success());
    let store = open(dir.path());
    assert!(store.is_entitled(&uid("oKill"), "art").expect("read"));
}

// ---- handoffs ----------------------------------------------------------------------------

#[test]
fn handoff_sessions_round_trip() {
    let (_dir, store) = fresh();
    let s = HandoffSession {
        openid: "oFrank".into(),
        state: HandoffState::Taken {
            kf_account: "kf2001@acct".into(),
        },
        kf_account: Some("kf2001@acct".into()),
        opened_at: T0,
        last_activity: T0 + 3,
        rule: "human".into(),
    };
    let q = HandoffSession {
        openid: "oGrace".into(),
        state: HandoffState::Queued,
        kf_account: None,
        opened_at: T0,
        last_activity: T0,
        rule: "human".into(),
    };
    store.handoff_put(&s).expect("put");
    store.handoff_put(&q).expect("put");
    assert_eq!(
        store.handoff_get(&uid("oFrank")).expect("get"),
        Some(s.clone())
    );
    assert_eq!(store.handoffs().expect("list"), vec![s.clone(), q.clone()]);
    assert_eq!(store.handoff_close(&uid("oFrank")).expect("close"), Some(s));
    assert_eq!(store.handoff_close(&uid("oFrank")).expect("close"), None);
    assert_eq!(store.handoffs().expect("list"), vec![q]);
}

#[test]
fn a_handoff_reaches_the_disk_with_the_period_of_the_push_that_opened_it() {
    let (dir, store) = fresh();
    let session = |openid: &str| HandoffSession {
        openid: openid.into(),
        state: HandoffState::Queued,
        kf_account: None,
        opened_at: T0,
        last_activity: T0,
        rule: "human".into(),
    };
    store.handoff_put(&session("oKept")).expect("put");
    store.handoff_put(&session("oClosed")).expect("put");
    store.write_behind(false).expect("period");
    store.handoff_close(&uid("oClosed")).expect("close");
    // Not yet written: a crash now (no flush on drop) keeps the last period's state.
    store.handoff_put(&session("oUnwritten")).expect("put");
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.handoffs().expect("list"),
        vec![session("oClosed"), session("oKept")]
    );
    store.handoff_close(&uid("oClosed")).expect("close");
    store.write_behind(false).expect("period");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.handoffs().expect("list"), vec![session("oKept")]);
}

// ---- counters ----------------------------------------------------------------------------

#[test]
fn counters_add_across_memory_flushes_and_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let rule = || Counter::RuleHit {
        rule: "price".into(),
    };
    let direct = || Counter::Subscribe {
        channel: String::new(),
    };
    {
        let store = open(dir.path());
        store.count(rule(), day(1), 2);
        store.count(direct(), day(1), 1);
        let before = store.counters(day(1), day(1)).expect("read");
        assert_eq!(before[&day(1)]["rule:price"], 2);

        store.flush_counters().expect("flush 1");
        store.count(rule(), day(1), 3);
        store.count(rule(), day(2), 7);
        // Flushed and pending counts are summed.
        assert_eq!(
            store.counters(day(1), day(2)).expect("read")[&day(1)]["rule:price"],
            5
        );
        store.flush_counters().expect("flush 2");
        store.flush_counters().expect("empty flush");
    }
    let store = open(dir.path());
    let all = store.counters(day(1), day(3)).expect("read");
    assert_eq!(all.len(), 2);
    assert_eq!(all[&day(1)]["rule:price"], 5);
    assert_eq!(all[&day(1)]["subscribe:"], 1);
    assert_eq!(all[&day(2)]["rule:price"], 7);
    let only_second = store.counters(day(2), day(2)).expect("read");
    assert_eq!(only_second.keys().collect::<Vec<_>>(), vec![&day(2)]);
    assert!(store.counters(day(3), day(1)).expect("read").is_empty());
}

#[test]
fn concurrent_counts_and_flushes_add_up() {
    let (_dir, store) = fresh();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..1000 {
                    store.count(
                        Counter::Push {
                            msg_type: "text".into(),
                        },
                        day(5),
                        1,
                    );
                    if i % 100 == 0 {
                        store.flush_counters().expect("flush");
                    }
                }
            });
        }
    });
    assert_eq!(
        store.counters(day(5), day(5)).expect("read")[&day(5)]["push:text"],
        4000
    );
    store.flush_counters().expect("flush");
    assert_eq!(
        store.counters(day(5), day(5)).expect("read")[&day(5)]["push:text"],
        4000
    );
}

// ---- texts no rule answered -------------------------------------------------------------

fn top(store: &Store, from: NaiveDate, to: NaiveDate) -> Vec<(String, u64, NaiveDate)> {
    store.unanswered_top(from, to, 10_000).expect("top")
}

#[test]
fn unanswered_texts_are_counted_per_day_and_merged_over_days_most_frequent_first() {
    let (_dir, store) = fresh();
    for _ in 0..3 {
        store.unanswered_count("怎么退款", day(1));
    }
    // Some on disk, some still in memory: a read merges both.
    store.flush().expect("flush");
    store.unanswered_count("怎么退款", day(2));
    store.unanswered_count("怎么退款", day(2));
    store.unanswered_count("发票", day(2));
    store.unanswered_count("发票", day(2));
    // Order numbers are masked, so these two are one question.
    store.unanswered_count("订单 1234567 怎么查", day(3));
    store.unanswered_count("订单 7654321 怎么查", day(3));
    // Nothing is kept of a blank text.
    store.unanswered_count("   ", day(3));

    assert_eq!(
        top(&store, day(1), day(3)),
        vec![
            ("怎么退款".to_string(), 5, day(2)),
            // Equal counts: by text.
            ("发票".to_string(), 2, day(2)),
            ("订单 # 怎么查".to_string(), 2, day(3)),
        ]
    );
    assert_eq!(
        store.unanswered_top(day(1), day(3), 1).expect("top"),
        vec![("怎么退款".to_string(), 5, day(2))]
    );
    assert_eq!(
        top(&store, day(1), day(1)),
        vec![("怎么退款".to_string(), 3, day(1))]
    );
    assert!(top(&store, day(3), day(1)).is_empty());
    assert!(top(&store, day(4), day(9)).is_empty());
}

#[test]
fn an_unanswered_text_reaches_the_disk_with_the_period_of_its_push_and_survives_a_reopen() {
    let (dir, store) = fresh();
    let period_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let scope = store.commit_scope();
        store.unanswered_count("能开发票吗", day(9));
        // A period starting now waits for this push to finish.
        s.spawn(|| {
            store.write_behind(false).expect("period");
            period_done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !period_done.load(std::sync::atomic::Ordering::SeqCst),
            "a period ran while a push was half made"
        );
        store
            .dedupe_put(
                "m:invoice",
                &StoredAnswer {
                    at: chrono::Utc::now().timestamp(),
                    body: "sorry",
                    headless: true,
                },
            )
            .expect("answer");
        drop(scope);
    });
    assert!(period_done.load(std::sync::atomic::Ordering::SeqCst));
    // What the period wrote, read as a crash would leave it (no flush on drop).
    drop(store);
    let store = open(dir.path());
    assert!(store.dedupe_get("m:invoice").expect("get").is_some());
    assert_eq!(
        top(&store, day(9), day(9)),
        vec![("能开发票吗".to_string(), 1, day(9))]
    );
    // Counted on after the reopen, added to what the disk holds.
    store.unanswered_count("能开发票吗", day(9));
    store.flush().expect("flush");
    drop(store);
    assert_eq!(
        top(&open(dir.path()), day(9), day(9)),
        vec![("能开发票吗".to_string(), 2, day(9))]
    );
}

#[test]
fn the_sweep_deletes_the_days_the_retention_no_longer_keeps() {
    let dir = TempDir::new().expect("tempdir");
    let cfg = StoreConfig {
        unanswered_days: 7,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    store.unanswered_count("too old", day(12));
    store.unanswered_count("kept", day(13));
    store.unanswered_count("today", day(20));
    store.flush().expect("flush");
    assert_eq!(store.sweep_unanswered(day(20)).expect("sweep"), 1);
    assert_eq!(store.sweep_unanswered(day(20)).expect("sweep"), 0);
    let left: Vec<String> = top(&store, day(1), day(31))
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(left, vec!["kept".to_string(), "today".to_string()]);
}

/// `MPGATE_UNANSWERED_DAYS=0`: nothing more is counted, and the upkeep's first sweep deletes
/// what an earlier run kept.
#[tokio::test]
async fn with_a_retention_of_0_nothing_is_counted_and_the_upkeep_deletes_what_was_kept() {
    let dir = TempDir::new().expect("tempdir");
    let today = chrono::Utc::now().date_naive();
    {
        let store = open(dir.path());
        store.unanswered_count("怎么退款", today);
        store.flush().expect("flush");
    }
    let cfg = StoreConfig {
        unanswered_days: 0,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    store.unanswered_count("怎么退款", today);
    store.unanswered_count("新问题", today);
    assert_eq!(
        top(&store, today, today),
        vec![("怎么退款".to_string(), 1, today)],
        "nothing counted while off; the old day is there until the sweep"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let upkeep = store.spawn_maintenance(stopped).expect("upkeep starts");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    stop.send(true).expect("upkeep listens");
    upkeep.await.expect("upkeep ends");
    store.flush().expect("flush");
    assert!(top(&store, today, today).is_empty());
}

#[test]
fn at_most_2000_different_texts_a_day_are_kept_and_the_rest_are_counted_together() {
    use mpgate::store::unanswered::{MAX_TEXTS_PER_DAY, OTHER};
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        for i in 0..1500 {
            store.unanswered_count(&format!("question {i}"), day(1));
        }
        store.flush().expect("flush");
    }
    // After a restart the bound still counts what the disk holds.
    let store = open(dir.path());
    for i in 1500..MAX_TEXTS_PER_DAY {
        store.unanswered_count(&format!("question {i}"), day(1));
    }
    for extra in ["one too many", "two too many", "one too many"] {
        store.unanswered_count(extra, day(1));
    }
    // A text the day already holds is still counted under its own name.
    store.unanswered_count("question 0", day(1));
    // Another day has its own bound.
    store.unanswered_count("one too many", day(2));

    let first = top(&store, day(1), day(1));
    assert_eq!(first.len(), MAX_TEXTS_PER_DAY + 1);
    assert_eq!(first[0], (OTHER.to_string(), 3, day(1)));
    assert_eq!(first[1], ("question 0".to_string(), 2, day(1)));
    assert!(first.iter().all(|(t, _, _)| !t.contains("too many")));
    assert_eq!(
        top(&store, day(2), day(2)),
        vec![("one too many".to_string(), 1, day(2))]
    );
    store.flush().expect("flush");
    drop(store);
    let again = top(&open(dir.path()), day(1), day(1));
    assert_eq!(again, first, "the same after a reopen");
}

// ---- schema, lock, misc ------------------------------------------------------------------

#[test]
fn newer_schema_is_refused_with_a_clear_message() {
    let dir = TempDir::new().expect("tempdir");
    {
        // Forge what a future mpgate would leave behind.
        let db = sled::open(dir.path()).expect("sled");
        let meta = db.open_tree("meta").expect("tree");
        meta.insert("schema_version", &99u32.to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }
    let err = Store::open(dir.path(), StoreConfig::default()).expect_err("must refuse");
    assert!(matches!(
        err,
        StoreError::NewerSchema {
            found: 99,
            supported: SCHEMA_VERSION
        }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "data dir written by a newer mpgate (schema 99); this build understands up to {SCHEMA_VERSION}"
        )
    );
}

#[test]
fn fresh_dir_is_stamped_with_current_schema() {
    let dir = TempDir::new().expect("tempdir");
    drop(open(dir.path()));
    let db = raw_sled_after_drop(dir.path());
    let v = db
        .open_tree("meta")
        .expect("tree")
        .get("schema_version")
        .expect("get")
        .expect("stamped");
    assert_eq!(v.as_ref(), &SCHEMA_VERSION.to_be_bytes());
}

#[test]
fn schema_1_dir_is_migrated_keeping_subscribers_and_dropping_old_dedupe_trees() {
    let dir = TempDir::new().expect("tempdir");
    {
        // What mpgate with schema 1 left behind: per-entry dedupe trees beside the records.
        let db = sled::open(dir.path()).expect("sled");
        db.open_tree("meta")
            .expect("tree")
            .insert("schema_version", &1u32.to_be_bytes())
            .expect("insert");
        db.open_tree("subscribers")
            .expect("tree")
            .insert(
                "oOld",
                br#"{"openid":"oOld","channel":"qr1","tags":["vip"],"last_seen":5,"message_count":2,"subscribed":true}"#
                    .as_slice(),
            )
            .expect("insert");
        db.open_tree("dedupe")
            .expect("tree")
            .insert("msg:1", br#"{"at":1,"body":""}"#.as_slice())
            .expect("insert");
        db.open_tree("dedupe_by_time")
            .expect("tree")
            .insert("x", b"".as_slice())
            .expect("insert");
        db.flush().expect("flush");
    }
    {
        let store = open(dir.path());
        let s = store.subscriber(&uid("oOld")).expect("read").expect("kept");
        assert_eq!(
            (s.channel.as_deref(), s.tags, s.message_count),
            (Some("qr1"), vec!["vip".to_string()], 2)
        );
        assert_eq!(store.dedupe_get("msg:1").expect("get"), None);
    }
    let db = raw_sled_after_drop(dir.path());
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("dedupe_by_time") || n == "dedupe"),
        "{names:?}"
    );
    let v = db
        .open_tree("meta")
        .expect("tree")
        .get("schema_version")
        .expect("get")
        .expect("stamped");
    assert_eq!(v.as_ref(), &SCHEMA_VERSION.to_be_bytes());
}

#[test]
fn second_open_of_a_held_dir_is_locked() {
    // flock(2) locks belong to open file descriptions, so a second open in the same process
    // conflicts exactly as a second process would.
    let (dir, _held) = fresh();
    let err = Store::open(dir.path(), StoreConfig::default()).expect_err("must be locked");
    match &err {
        StoreError::Locked { dir: d } => assert_eq!(d, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("running mpgate server"), "{msg}");
}

#[test]
fn stats_and_size() {
    let (_dir, store) = fresh();
    store.touch(&uid("o1"), T0, true).expect("touch");
    store.touch(&uid("o2"), T0, true).expect("touch");
    store
        .grant(&uid("o1"), "a", "admin", None, T0)
        .expect("grant");
    store
        .dedupe_put(
            "k",
            &StoredAnswer {
                at: T0,
                body: "",
                headless: true,
            },
        )
        .expect("put");
    let stats = store.stats().expect("stats");
    assert_eq!(
        (stats.subscribers, stats.entitlements, stats.dedupe_entries),
        (2, 1, 1)
    );
    assert!(store.size_on_disk().expect("size") > 0);
}

/// An operator's grant with `create` makes the record of someone mpgate has never seen.
#[test]
fn an_operator_created_subscriber_survives_a_restart_and_still_follows_for_the_first_time() {
    let dir = TempDir::new().expect("tempdir");
    let u = OpenId::new("oGiftee");
    {
        let store = open(dir.path());
        assert!(store.create_subscriber_by_operator(&u).expect("create"));
        assert!(
            !store.create_subscriber_by_operator(&u).expect("again"),
            "an existing record is left alone"
        );
        // No flush, no shutdown: creation is durable on return.
    }
    let store = open(dir.path());
    let sub = store
        .subscriber(&u)
        .expect("read")
        .expect("the record survived");
    assert!(sub.created_by_operator);
    assert!(!sub.subscribed);
    assert_eq!(sub.first_subscribed, None);

    let out = store
        .on_subscribe(&u, Some("qr-gift"), T0)
        .expect("subscribe");
    assert!(out.first_time, "they had never followed");
    assert_eq!(out.subscriber.channel.as_deref(), Some("qr-gift"));
    assert!(out.subscriber.subscribed);
}

#[test]
fn a_record_made_by_a_push_is_not_marked_as_made_by_the_operator() {
    let (_dir, store) = fresh();
    let u = OpenId::new("oFollower");
    store.touch(&u, T0, true).expect("touch");
    assert!(!store.create_subscriber_by_operator(&u).expect("create"));
    let sub = store.subscriber(&u).expect("read").expect("record");
    assert!(!sub.created_by_operator);
    assert!(sub.subscribed);
}

// ---- faults: whole pushes per period, a full disk ---------------------------------------------

/// One push as the callback makes it: a first-time subscribe from a course QR code, the tag
/// its rule adds, the count, a text no rule answered (as a message's push would add), and the
/// stored answer, inside one commit scope.
fn course_subscribe(store: &Store, openid: &str, at: i64) {
    let u = uid(openid);
    let _scope = store.commit_scope();
    store
        .on_subscribe(&u, Some("course2026"), at)
        .expect("subscribe");
    store.add_tags(&u, &["course".into()]).expect("tag");
    store.count(
        Counter::Subscribe {
            channel: "course2026".into(),
        },
        day(9),
        1,
    );
    store.unanswered_count(COURSE_QUESTION, day(9));
    store
        .dedupe_put(
            &format!("e:{openid}:{at}:subscribe"),
            &StoredAnswer {
                at,
                body: format!("welcome {openid} {}", "x".repeat(600)),
                headless: true,
            },
        )
        .expect("answer");
}

const COURSE_QUESTION: &str = "课程怎么买";

/// How often [`course_subscribe`]'s text is counted on its day, on disk and in memory.
fn course_question_count(store: &Store) -> u64 {
    let top = store.unanswered_top(day(9), day(9), 10).expect("top");
    assert!(top.len() <= 1, "{top:?}");
    top.iter()
        .find(|(t, _, _)| t == COURSE_QUESTION)
        .map_or(0, |(_, n, _)| *n)
}

fn course_count(store: &Store) -> u64 {
    store
        .counters(day(9), day(9))
        .expect("counters")
        .get(&day(9))
        .and_then(|m| m.get("subscribe:course2026").copied())
        .unwrap_or(0)
}

/// Every push given is fully there: record with channel and tag, and the stored answer.
fn assert_whole(store: &Store, openids: &[String], at: i64) {
    for o in openids {
        let s = store
            .subscriber(&uid(o))
            .expect("read")
            .unwrap_or_else(|| panic!("{o}: record lost"));
        assert_eq!(s.channel.as_deref(), Some("course2026"), "{o}");
        assert_eq!(s.tags, vec!["course".to_string()], "{o}: tag lost");
        assert!(
            store
                .dedupe_get(&format!("e:{o}:{at}:subscribe"))
                .expect("get")
                .is_some(),
            "{o}: stored answer lost"
        );
    }
}

#[test]
fn a_period_never_takes_a_subscribe_without_the_tag_its_rule_adds() {
    // The bug: the write-behind wrote records and answers at its own moments, so a SIGKILL
    // could keep a new follower's subscribe (with its channel) and lose the tag its rule added
    // a moment later; the retry then looked like a returning follower.
    let (dir, store) = fresh();
    let u = uid("oHalfway");
    let now = chrono::Utc::now().timestamp();
    let period_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let scope = store.commit_scope();
        store
            .on_subscribe(&u, Some("course2026"), now)
            .expect("subscribe");
        // A period starting now waits for this push to finish.
        s.spawn(|| {
            store.write_behind(false).expect("period");
            period_done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !period_done.load(std::sync::atomic::Ordering::SeqCst),
            "a period ran while a push was half made"
        );
        store.add_tags(&u, &["course".into()]).expect("tag");
        store
            .dedupe_put(
                "e:oHalfway:1:subscribe",
                &StoredAnswer {
                    at: now,
                    body: "welcome",
                    headless: true,
                },
            )
            .expect("answer");
        drop(scope);
    });
    assert!(period_done.load(std::sync::atomic::Ordering::SeqCst));
    // What the period wrote, read from disk as a crash would leave it (no flush on drop).
    drop(store);
    let store = open(dir.path());
    let s = store.subscriber(&u).expect("read").expect("record");
    assert_eq!(s.tags, vec!["course".to_string()]);
    assert!(store
        .dedupe_get("e:oHalfway:1:subscribe")
        .expect("get")
        .is_some());
}

#[test]
fn counts_reach_the_disk_with_the_answers_of_their_period() {
    let (dir, store) = fresh();
    let now = chrono::Utc::now().timestamp();
    let ids: Vec<String> = (0..50).map(|i| format!("oCount{i}")).collect();
    for o in &ids {
        course_subscribe(&store, o, now);
    }
    // A plain (not full) period: before, counts waited for the once-a-second full step while
    // the answers went at once, so a crash in between lost counts of answered pushes.
    store.write_behind(false).expect("period");
    drop(store);
    let store = open(dir.path());
    assert_eq!(course_count(&store), 50);
    assert_eq!(course_question_count(&store), 50);
    assert_whole(&store, &ids, now);
}

/// A tmpfs of `mib` MiB mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = TempDir::new().expect("tempdir").keep();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Tmpfs(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
            break;
        }
    }
    // Also the last partial chunk's room.
    while f.write_all(&[0u8]).is_ok() {}
    path
}

#[test]
fn a_full_disk_loses_nothing_given_to_the_store_and_it_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount(24) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root and must be able to mount a tmpfs for the disk-full test"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data = fs.0.join("data");
    let now = chrono::Utc::now().timestamp();
    let store = open(&data);
    let before: Vec<String> = (0..200).map(|i| format!("oBefore{i}")).collect();
    for o in &before {
        course_subscribe(&store, o, now);
    }
    store.write_behind(true).expect("a healthy period");
    assert!(store.health().writable);

    let filler = fill(&fs.0);
    // Enough answers that sled needs new room on disk.
    let during: Vec<String> = (0..3000).map(|i| format!("oDuring{i}")).collect();
    for o in &during {
        course_subscribe(&store, o, now);
    }
    let failed = store.write_behind(false);
    assert!(failed.is_err(), "a period on a full disk must fail");
    let health = store.health();
    assert!(!health.writable);
    assert!(
        health
            .error
            .as_deref()
            .unwrap_or("")
            .contains("No space left"),
        "health says why: {health:?}"
    );
    assert!(health.unwritten.answers >= during.len(), "{health:?}");
    assert!(matches!(
        store.check_writable(),
        Err(StoreError::Unavailable(_))
    ));
    // Still failing: retried, nothing dropped.
    assert!(store.write_behind(true).is_err());
    assert_whole(&store, &during, now);

    std::fs::remove_file(&filler).expect("free the space");
    store
        .write_behind(false)
        .expect("the first period after the space is back writes");
    let health = store.health();
    assert!(health.writable, "{health:?}");
    assert_eq!(health.unwritten.answers, 0, "{health:?}");
    assert!(store.check_writable().is_ok());
    let granted = store
        .grant(&uid("oBefore1"), "rust-101", "admin", Some("ref-after"), T0)
        .expect("grants work again without a restart");
    assert!(matches!(granted, GrantOutcome::Granted(_)));

    // A crash now (no flush on drop) keeps everything given to the store during the episode.
    drop(store);
    let store = open(&data);
    assert_whole(&store, &before, now);
    assert_whole(&store, &during, now);
    assert_eq!(course_count(&store), (before.len() + during.len()) as u64);
    assert_eq!(
        course_question_count(&store),
        (before.len() + during.len()) as u64,
        "texts no rule answered are neither lost nor counted twice"
    );
    assert!(store
        .is_entitled(&uid("oBefore1"), "rust-101")
        .expect("read"));
}

// ---- orders (WeChat Pay) -----------------------------------------------------------------

mod orders {
    use super::*;
    use mpgate::store::{
        CloseOutcome, Order, OrderFilter, OrderState, PaidOutcome, PayAnomaly, RefundNote,
        RefundOutcome,
    };

    const PRICE: u64 = 1990;

    /// A Created order of `article` by `openid` at `at`, valid for 30 minutes.
    fn order(no: &str, openid: &str, article: &str, at: i64) -> Order {
        Order {
            out_trade_no: no.to_string(),
            openid: openid.to_string(),
            article: article.to_string(),
            description: format!("Article {article}"),
            amount_fen: PRICE,
            channel: "course2026".to_string(),
            state: OrderState::Created,
            created_at: at,
            expires_at: at + 1800,
            prepay_id: None,
            transaction_id: None,
            paid_at: None,
            refunded_at: None,
            closed_at: None,
            refunds: Vec::new(),
            anomaly: None,
            updated_at: at,
        }
    }

    fn create(store: &Store, no: &str, openid: &str, at: i64) -> Order {
        let o = order(no, openid, "rust-101", at);
        store.order_create(&o, day(1)).expect("order stored");
        o
    }

    fn refund(no: &str, status: &str, fen: u64, at: i64) -> RefundNote {
        RefundNote {
            out_refund_no: no.to_string(),
            refund_id: Some(format!("5030{no}")),
            status: status.to_string(),
            refund_fen: fen,
            at,
        }
    }

    fn all(limit: usize) -> OrderFilter {
        OrderFilter {
            state: None,
            from: None,
            to: None,
            limit,
        }
    }

    fn of_state(state: OrderState) -> OrderFilter {
        OrderFilter {
            state: Some(state),
            ..all(100)
        }
    }

    fn numbers(orders: &[Order]) -> Vec<&str> {
        orders.iter().map(|o| o.out_trade_no.as_str()).collect()
    }

    /// The day's counter `name`, 0 when absent.
    fn counted(store: &Store, d: NaiveDate, name: &str) -> u64 {
        store
            .counters(d, d)
            .expect("counters")
            .get(&d)
            .and_then(|m| m.get(name).copied())
            .unwrap_or(0)
    }

    fn pay(store: &Store, no: &str, at: i64) -> PaidOutcome {
        store
            .order_paid(no, &format!("4200{no}"), at, day(2))
            .expect("payment applied")
    }

    #[test]
    fn an_order_created_is_found_listed_counted_and_reused_while_valid() {
        let (_dir, store) = fresh();
        let o = create(&store, "MPG0000001", "oReader", T0);
        assert_eq!(store.order("MPG0000001").expect("read"), Some(o.clone()));
        assert_eq!(store.order("MPG0000404").expect("read"), None);
        assert_eq!(
            numbers(&store.orders(&all(10)).expect("list")),
            ["MPG0000001"]
        );

        // The page asks for an open order valid a while longer: this one, until near expiry.
        let reuse = store
            .order_open_for("oReader", "rust-101", T0 + 60)
            .expect("read");
        assert_eq!(reuse, Some(o.clone()));
        assert_eq!(
            store
                .order_open_for("oReader", "rust-101", T0 + 1800)
                .expect("read"),
            None,
            "an order expiring by then is not reused"
        );
        assert_eq!(
            store
                .order_open_for("oOther", "rust-101", T0)
                .expect("read"),
            None
        );
        assert_eq!(
            store.order_open_for("oReader", "go-201", T0).expect("read"),
            None
        );

        // A newer open order of the same reader and article is the one reused.
        let newer = create(&store, "MPG0000002", "oReader", T0 + 100);
        assert_eq!(
            store
                .order_open_for("oReader", "rust-101", T0 + 60)
                .expect("read"),
            Some(newer)
        );

        assert!(matches!(
            store.order_create(&o, day(1)),
            Err(StoreError::DuplicateOrder(ref no)) if no == "MPG0000001"
        ));
        assert_eq!(
            counted(&store, day(1), "order:rust-101"),
            2,
            "the refused one not counted"
        );
        assert_eq!(counted(&store, day(1), "order_channel:course2026"), 2);

        let with_prepay = store
            .order_set_prepay("MPG0000001", "wx201410272009395522657a690389285100", T0 + 1)
            .expect("prepay stored");
        assert_eq!(
            with_prepay.prepay_id.as_deref(),
            Some("wx201410272009395522657a690389285100")
        );
        assert_eq!(store.order("MPG0000001").expect("read"), Some(with_prepay));
        assert!(matches!(
            store.order_set_prepay("MPG0000404", "wx1", T0),
            Err(StoreError::UnknownOrder(_))
        ));
    }

    #[test]
    fn two_concurrent_payments_of_one_order_make_one_paid_order_and_one_grant() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000010", "oPayer", T0);
        let barrier = std::sync::Barrier::new(2);
        let (barrier, shared) = (&barrier, &store);
        let outcomes: Vec<PaidOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(move || {
                        barrier.wait();
                        pay(shared, "MPG0000010", T0 + 30)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let paid = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    PaidOutcome::Paid {
                        grant: GrantOutcome::Granted(_),
                        ..
                    }
                )
            })
            .count();
        let already = outcomes
            .iter()
            .filter(|o| matches!(o, PaidOutcome::AlreadyPaid(_)))
            .count();
        assert_eq!((paid, already), (1, 1), "{outcomes:?}");

        let o = store.order("MPG0000010").expect("read").expect("exists");
        assert_eq!(o.state, OrderState::Paid);
        assert_eq!(o.paid_at, Some(T0 + 30));
        assert_eq!(o.transaction_id.as_deref(), Some("4200MPG0000010"));
        let readers = store.entitled_subscribers("rust-101").expect("read");
        assert_eq!(readers.len(), 1);
        assert_eq!(readers[0].openid, "oPayer");
        assert_eq!(counted(&store, day(2), "paid:rust-101"), 1);
        assert_eq!(counted(&store, day(2), "revenue:rust-101"), PRICE);
        assert_eq!(counted(&store, day(2), "paid_channel:course2026"), 1);
        assert_eq!(counted(&store, day(2), "revenue_channel:course2026"), PRICE);
        assert!(store
            .orders_to_reconcile(i64::MAX, 10)
            .expect("read")
            .is_empty());
    }

    #[test]
    fn the_grant_a_payment_makes_names_the_order_and_an_operator_grant_with_it_changes_nothing() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000020", "oPayer", T0);
        let PaidOutcome::Paid {
            grant: GrantOutcome::Granted(ent),
            ..
        } = pay(&store, "MPG0000020", T0 + 5)
        else {
            panic!("the first payment grants");
        };
        assert_eq!(ent.reference.as_deref(), Some("MPG0000020"));
        assert_eq!(ent.source, "wechatpay");
        assert_eq!(ent.granted_at, T0 + 5);
        assert_eq!(
            store.entitlement(&uid("oPayer"), "rust-101").expect("read"),
            Some(ent.clone())
        );

        // The shop's old path, retried with the order number: nothing new.
        assert_eq!(
            store
                .grant(
                    &uid("oPayer"),
                    "rust-101",
                    "shop",
                    Some("MPG0000020"),
                    T0 + 9
                )
                .expect("grant"),
            GrantOutcome::AlreadyGranted(ent.clone())
        );
        assert_eq!(
            store
                .grant(
                    &uid("oSomeoneElse"),
                    "rust-101",
                    "shop",
                    Some("MPG0000020"),
                    T0 + 9
                )
                .expect("grant"),
            GrantOutcome::ReferenceConflict(ent)
        );
        assert!(!store
            .is_entitled(&uid("oSomeoneElse"), "rust-101")
            .expect("read"));
        assert!(matches!(
            pay(&store, "MPG0000020", T0 + 6),
            PaidOutcome::AlreadyPaid(ref o) if o.paid_at == Some(T0 + 5)
        ));
        assert!(matches!(
            store.order_paid("MPG0000404", "4200x", T0, day(2)),
            Err(StoreError::UnknownOrder(_))
        ));
    }

    #[test]
    fn a_full_refund_revokes_and_a_partial_one_keeps_the_grant() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000030", "oPartial", T0);
        create(&store, "MPG0000031", "oFull", T0 + 1);
        pay(&store, "MPG0000030", T0 + 10);
        pay(&store, "MPG0000031", T0 + 11);

        let partial = store
            .order_refund(
                "MPG0000030",
                refund("R30a", "SUCCESS", 990, T0 + 20),
                false,
                day(3),
            )
            .expect("refund noted");
        let RefundOutcome::Recorded(o) = partial else {
            panic!("a partial refund is recorded: {partial:?}");
        };
        assert_eq!(o.state, OrderState::Paid);
        assert_eq!(o.refunds, vec![refund("R30a", "SUCCESS", 990, T0 + 20)]);
        assert!(store
            .is_entitled(&uid("oPartial"), "rust-101")
            .expect("read"));

        let full = store
            .order_refund(
                "MPG0000031",
                refund("R31", "SUCCESS", PRICE, T0 + 30),
                true,
                day(3),
            )
            .expect("refund applied");
        let RefundOutcome::Refunded {
            order,
            revoke: RevokeOutcome::Revoked(ent),
        } = full
        else {
            panic!("a full refund revokes: {full:?}");
        };
        assert_eq!(order.state, OrderState::Refunded);
        assert_eq!(order.refunded_at, Some(T0 + 30));
        assert_eq!(ent.revoked_at, Some(T0 + 30));
        assert!(!store.is_entitled(&uid("oFull"), "rust-101").expect("read"));
        let readers: Vec<String> = store
            .entitled_subscribers("rust-101")
            .expect("read")
            .into_iter()
            .map(|e| e.openid)
            .collect();
        assert_eq!(readers, ["oPartial"]);
        assert_eq!(counted(&store, day(3), "refund:rust-101"), 1);
        assert_eq!(counted(&store, day(3), "refunded_fen:rust-101"), PRICE);

        // An abnormal refund is only noted.
        let abnormal = store
            .order_refund(
                "MPG0000030",
                refund("R30b", "ABNORMAL", 1000, T0 + 40),
                true,
                day(3),
            )
            .expect("noted");
        assert!(matches!(abnormal, RefundOutcome::Recorded(ref o) if o.refunds.len() == 2));
        assert!(store
            .is_entitled(&uid("oPartial"), "rust-101")
            .expect("read"));
    }

    #[test]
    fn the_same_refund_twice_changes_nothing_and_a_later_success_of_it_refunds() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000040", "oTwice", T0);
        pay(&store, "MPG0000040", T0 + 1);
        let first = store
            .order_refund(
                "MPG0000040",
                refund("R40", "ABNORMAL", PRICE, T0 + 2),
                true,
                day(3),
            )
            .expect("noted");
        let again = store
            .order_refund(
                "MPG0000040",
                refund("R40", "ABNORMAL", PRICE, T0 + 3),
                true,
                day(3),
            )
            .expect("noted");
        assert_eq!(again, first, "the stored order, unchanged");
        assert!(store.is_entitled(&uid("oTwice"), "rust-101").expect("read"));

        let success = store
            .order_refund(
                "MPG0000040",
                refund("R40", "SUCCESS", PRICE, T0 + 4),
                true,
                day(3),
            )
            .expect("applied");
        assert!(
            matches!(success, RefundOutcome::Refunded { .. }),
            "{success:?}"
        );
        let repeat = store
            .order_refund(
                "MPG0000040",
                refund("R40", "SUCCESS", PRICE, T0 + 5),
                true,
                day(3),
            )
            .expect("noted");
        let RefundOutcome::Recorded(o) = repeat else {
            panic!("a repeated success is a no-op: {repeat:?}");
        };
        assert_eq!(o.refunds.len(), 2);
        assert_eq!(o.refunded_at, Some(T0 + 4));
        assert_eq!(counted(&store, day(3), "refund:rust-101"), 1);
        assert_eq!(counted(&store, day(3), "refunded_fen:rust-101"), PRICE);

        // Paying a refunded order (a late or replayed payment notification) grants nothing.
        assert!(matches!(
            pay(&store, "MPG0000040", T0 + 6),
            PaidOutcome::NotPayable(ref o) if o.state == OrderState::Refunded
        ));
        assert!(!store.is_entitled(&uid("oTwice"), "rust-101").expect("read"));
        assert_eq!(counted(&store, day(2), "paid:rust-101"), 1);
    }

    #[test]
    fn a_refund_before_payment_makes_the_order_an_anomaly_listed_for_the_operator() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000050", "oEarly", T0);
        let out = store
            .order_refund(
                "MPG0000050",
                refund("R50", "SUCCESS", PRICE, T0 + 9),
                true,
                day(4),
            )
            .expect("recorded");
        let RefundOutcome::BeforePayment(o) = out else {
            panic!("expected BeforePayment: {out:?}");
        };
        assert_eq!(o.state, OrderState::Anomaly);
        assert!(o.anomaly.as_deref().unwrap_or("").contains("R50"), "{o:?}");
        assert!(!store.is_entitled(&uid("oEarly"), "rust-101").expect("read"));
        assert!(store
            .orders_to_reconcile(i64::MAX, 10)
            .expect("read")
            .is_empty());

        let anomalies = store.pay_anomalies(None, None, 10).expect("list");
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].kind, "refund_before_payment");
        assert_eq!(anomalies[0].out_trade_no, "MPG0000050");
        assert_eq!(anomalies[0].at, T0 + 9);
        assert_eq!(
            counted(&store, day(4), "pay_anomaly:refund_before_payment"),
            1
        );

        // Its retry adds nothing; a payment after it grants nothing.
        store
            .order_refund(
                "MPG0000050",
                refund("R50", "SUCCESS", PRICE, T0 + 9),
                true,
                day(4),
            )
            .expect("recorded");
        assert_eq!(store.pay_anomalies(None, None, 10).expect("list").len(), 1);
        assert_eq!(
            counted(&store, day(4), "pay_anomaly:refund_before_payment"),
            1
        );
        assert!(matches!(
            pay(&store, "MPG0000050", T0 + 10),
            PaidOutcome::NotPayable(_)
        ));
        assert!(!store.is_entitled(&uid("oEarly"), "rust-101").expect("read"));
    }

    #[test]
    fn only_a_created_order_closes_and_the_platforms_word_that_it_was_paid_wins() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000060", "oLate", T0);
        create(&store, "MPG0000061", "oPaid", T0);
        pay(&store, "MPG0000061", T0 + 1);

        let CloseOutcome::Closed(closed) =
            store.order_close("MPG0000060", T0 + 1800).expect("close")
        else {
            panic!("a created order closes");
        };
        assert_eq!(closed.state, OrderState::Closed);
        assert_eq!(closed.closed_at, Some(T0 + 1800));
        assert_eq!(
            store.order_close("MPG0000060", T0 + 1801).expect("close"),
            CloseOutcome::NotOpen(closed)
        );
        assert!(matches!(
            store.order_close("MPG0000061", T0 + 1800).expect("close"),
            CloseOutcome::NotOpen(ref o) if o.state == OrderState::Paid
        ));
        assert!(store
            .orders_to_reconcile(i64::MAX, 10)
            .expect("read")
            .is_empty());
        assert_eq!(
            store.order_open_for("oLate", "rust-101", T0).expect("read"),
            None,
            "a closed order is not reused"
        );

        // A payment the platform confirms after our close is still a payment.
        assert!(matches!(
            pay(&store, "MPG0000060", T0 + 1799),
            PaidOutcome::Paid {
                grant: GrantOutcome::Granted(_),
                ..
            }
        ));
        assert!(store.is_entitled(&uid("oLate"), "rust-101").expect("read"));
    }

    #[test]
    fn a_pay_anomaly_is_recorded_once_per_event_and_marks_only_an_unpaid_order() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000070", "oWrongAmount", T0);
        create(&store, "MPG0000071", "oPaid", T0);
        pay(&store, "MPG0000071", T0 + 1);
        let anomaly = |no: &str, kind: &str, event: Option<&str>, at: i64| PayAnomaly {
            at,
            out_trade_no: no.to_string(),
            kind: kind.to_string(),
            detail: "amount 1 fen, order 1990 fen".to_string(),
            event_id: event.map(str::to_string),
        };
        let a = anomaly("MPG0000070", "amount_mismatch", Some("EV-1"), T0 + 2);
        store.pay_anomaly(&a, day(5)).expect("recorded");
        store
            .pay_anomaly(&a, day(5))
            .expect("a retried notification");
        let o = store.order("MPG0000070").expect("read").expect("exists");
        assert_eq!(o.state, OrderState::Anomaly);
        assert_eq!(
            o.anomaly.as_deref(),
            Some("amount_mismatch: amount 1 fen, order 1990 fen")
        );
        assert!(!store
            .is_entitled(&uid("oWrongAmount"), "rust-101")
            .expect("read"));

        store
            .pay_anomaly(
                &anomaly("MPG0000071", "payer_mismatch", Some("EV-2"), T0 + 3),
                day(5),
            )
            .expect("recorded");
        assert_eq!(
            store
                .order("MPG0000071")
                .expect("read")
                .expect("exists")
                .state,
            OrderState::Paid,
            "a paid order keeps its state and its grant"
        );
        assert!(store.is_entitled(&uid("oPaid"), "rust-101").expect("read"));
        store
            .pay_anomaly(
                &anomaly("NOT-OURS-1", "unknown_order", None, T0 + 4),
                day(5),
            )
            .expect("recorded");

        let listed = store.pay_anomalies(None, None, 10).expect("list");
        let kinds: Vec<&str> = listed.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["unknown_order", "payer_mismatch", "amount_mismatch"],
            "newest first"
        );
        assert_eq!(listed[2], a);
        assert_eq!(counted(&store, day(5), "pay_anomaly:amount_mismatch"), 1);
        assert_eq!(counted(&store, day(5), "pay_anomaly:unknown_order"), 1);
        let window = store
            .pay_anomalies(Some(T0 + 3), Some(T0 + 4), 10)
            .expect("list");
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].kind, "payer_mismatch");
        assert_eq!(store.pay_anomalies(None, None, 1).expect("list").len(), 1);
    }

    #[test]
    fn listing_filters_by_state_and_creation_time_newest_first() {
        let (_dir, store) = fresh();
        for i in 0..6 {
            create(
                &store,
                &format!("MPG00001{i:02}"),
                &format!("oL{i}"),
                T0 + i * 10,
            );
        }
        pay(&store, "MPG0000101", T0 + 100);
        pay(&store, "MPG0000103", T0 + 100);
        store.order_close("MPG0000104", T0 + 2000).expect("close");

        assert_eq!(
            numbers(&store.orders(&all(100)).expect("list")),
            [
                "MPG0000105",
                "MPG0000104",
                "MPG0000103",
                "MPG0000102",
                "MPG0000101",
                "MPG0000100"
            ]
        );
        assert_eq!(
            numbers(&store.orders(&of_state(OrderState::Paid)).expect("list")),
            ["MPG0000103", "MPG0000101"]
        );
        assert_eq!(
            numbers(&store.orders(&of_state(OrderState::Created)).expect("list")),
            ["MPG0000105", "MPG0000102", "MPG0000100"]
        );
        assert_eq!(
            numbers(&store.orders(&of_state(OrderState::Closed)).expect("list")),
            ["MPG0000104"]
        );
        assert!(store
            .orders(&of_state(OrderState::Refunded))
            .expect("list")
            .is_empty());
        let window = OrderFilter {
            from: Some(T0 + 10),
            to: Some(T0 + 40),
            ..all(100)
        };
        assert_eq!(
            numbers(&store.orders(&window).expect("list")),
            ["MPG0000103", "MPG0000102", "MPG0000101"],
            "from included, to excluded"
        );
        assert_eq!(
            numbers(&store.orders(&all(2)).expect("list")),
            ["MPG0000105", "MPG0000104"]
        );
        let backwards = OrderFilter {
            from: Some(T0 + 40),
            to: Some(T0 + 10),
            ..all(100)
        };
        assert!(store.orders(&backwards).expect("list").is_empty());
    }

    #[test]
    fn reconciliation_gets_only_created_orders_older_than_the_cutoff_oldest_first() {
        let (_dir, store) = fresh();
        create(&store, "MPG0000200", "oR0", T0);
        create(&store, "MPG0000201", "oR1", T0 + 100);
        create(&store, "MPG0000202", "oR2", T0 + 200);
        create(&store, "MPG0000203", "oR3", T0 + 300);
        pay(&store, "MPG0000200", T0 + 50);
        let due = store.orders_to_reconcile(T0 + 200, 10).expect("read");
        assert_eq!(
            numbers(&due),
            ["MPG0000201", "MPG0000202"],
            "cutoff included"
        );
        assert_eq!(
            numbers(&store.orders_to_reconcile(T0 + 200, 1).expect("read")),
            ["MPG0000201"]
        );
        assert!(store
            .orders_to_reconcile(T0 + 99, 10)
            .expect("read")
            .is_empty());
    }

    #[test]
    fn every_order_state_and_anomaly_survives_reopening_the_store() {
        let dir = TempDir::new().expect("tempdir");
        {
            let store = open(dir.path());
            for (i, no) in [
                "MPG0000300",
                "MPG0000301",
                "MPG0000302",
                "MPG0000303",
                "MPG0000304",
            ]
            .iter()
            .enumerate()
            {
                create(&store, no, &format!("oS{i}"), T0 + i as i64);
            }
            pay(&store, "MPG0000301", T0 + 10);
            pay(&store, "MPG0000302", T0 + 10);
            store
                .order_refund(
                    "MPG0000302",
                    refund("R302", "SUCCESS", PRICE, T0 + 20),
                    true,
                    day(3),
                )
                .expect("refund");
            store.order_close("MPG0000303", T0 + 2000).expect("close");
            store
                .order_refund(
                    "MPG0000304",
                    refund("R304", "SUCCESS", PRICE, T0 + 20),
                    true,
                    day(3),
                )
                .expect("refund before payment");
        }
        let store = open(dir.path());
        let state = |no: &str| store.order(no).expect("read").expect("exists").state;
        assert_eq!(state("MPG0000300"), OrderState::Created);
        assert_eq!(state("MPG0000301"), OrderState::Paid);
        assert_eq!(state("MPG0000302"), OrderState::Refunded);
        assert_eq!(state("MPG0000303"), OrderState::Closed);
        assert_eq!(state("MPG0000304"), OrderState::Anomaly);
        for s in [
            OrderState::Created,
            OrderState::Paid,
            OrderState::Refunded,
            OrderState::Closed,
            OrderState::Anomaly,
        ] {
            let listed = store.orders(&of_state(s)).expect("list");
            assert_eq!(listed.len(), 1, "{s}: {listed:?}");
        }
        assert_eq!(
            numbers(&store.orders_to_reconcile(i64::MAX, 10).expect("read")),
            ["MPG0000300"]
        );
        assert!(store.is_entitled(&uid("oS1"), "rust-101").expect("read"));
        assert!(!store.is_entitled(&uid("oS2"), "rust-101").expect("read"));
        assert_eq!(store.pay_anomalies(None, None, 10).expect("list").len(), 1);
        assert_eq!(counted(&store, day(1), "order:rust-101"), 5);
        assert_eq!(counted(&store, day(2), "paid:rust-101"), 2);
        assert_eq!(counted(&store, day(3), "refund:rust-101"), 1);
    }

    #[test]
    fn a_payment_is_on_disk_when_order_paid_returns() {
        // As for grants: a child pays and exits without any destructor (no shutdown flush).
        if let Ok(dir) = std::env::var("MPGATE_STORE_CHILD_PAY") {
            let store = open(Path::new(&dir));
            create(&store, "MPG0000400", "oKilled", T0);
            pay(&store, "MPG0000400", T0 + 1);
            std::process::exit(0);
        }
        let dir = TempDir::new().expect("tempdir");
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "orders::a_payment_is_on_disk_when_order_paid_returns",
                "--nocapture",
            ])
            .env("MPGATE_STORE_CHILD_PAY", dir.path())
            .status()
            .expect("spawn child");
        assert!(status.success());
        let store = open(dir.path());
        let o = store
            .order("MPG0000400")
            .expect("read")
            .expect("the order survived");
        assert_eq!(o.state, OrderState::Paid);
        assert!(store
            .is_entitled(&uid("oKilled"), "rust-101")
            .expect("read"));
        assert_eq!(counted(&store, day(2), "paid:rust-101"), 1);
        assert_eq!(counted(&store, day(1), "order:rust-101"), 1);
    }

    #[test]
    fn order_keys_with_nul_or_empty_parts_are_refused() {
        let (_dir, store) = fresh();
        let mut o = order("MPG0000500", "o\0x", "rust-101", T0);
        assert!(matches!(
            store.order_create(&o, day(1)),
            Err(StoreError::InvalidKey { what: "openid" })
        ));
        o.openid = "oFine".into();
        o.out_trade_no = String::new();
        assert!(matches!(
            store.order_create(&o, day(1)),
            Err(StoreError::InvalidKey {
                what: "out_trade_no"
            })
        ));
        assert!(store.orders(&all(10)).expect("list").is_empty());
    }
}
