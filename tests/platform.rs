//! The outbound platform client, the outbox and `menu push`, against a fake of the platform
//! served over real HTTP.

#[path = "platform/fake.rs"]
mod fake;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake::{FakePlatform, APP_ID, APP_SECRET};
use mpgate::platform::{CustomMessage, NewsArticle, Outbox, PlatformClient, PlatformError};
use mpgate::rules::RuleSet;
use mpgate::settings::{Secret, Settings};
use mpgate::store::platform::{OutboxFilter, OutboxItem, OutboxState};
use mpgate::store::{Store, StoreConfig};
use mpgate::wechat::types::AppId;
use serde_json::{json, Value};
use tokio::sync::watch;

const SEND: &str = "/cgi-bin/message/custom/send";
const MENU: &str = "/cgi-bin/menu/create";

fn open_store(dir: &Path) -> Store {
    Store::open(dir, StoreConfig::default()).expect("store opens")
}

fn client(fake: &FakePlatform, store: &Store) -> PlatformClient {
    PlatformClient::new(
        &fake.base,
        &AppId::new(APP_ID),
        &Secret::new(APP_SECRET),
        store.clone(),
    )
}

fn text(to: &str, content: &str) -> CustomMessage {
    CustomMessage::Text {
        to: to.into(),
        content: content.into(),
    }
}

/// Polls the store until item `id` satisfies `done`, for at most 5 s.
async fn wait_for(store: &Store, id: u64, done: impl Fn(&OutboxItem) -> bool) -> OutboxItem {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let item = store
            .outbox_get(id)
            .expect("store read")
            .expect("item exists");
        if done(&item) {
            return item;
        }
        assert!(Instant::now() < deadline, "timed out; item is {item:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_sent(item: &OutboxItem) -> bool {
    matches!(item.state, OutboxState::Sent { .. })
}

/// A running outbox over `store`, with millisecond backoff.
struct Running {
    handle: mpgate::platform::OutboxHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_outbox(fake: &FakePlatform, store: &Store) -> Running {
    let outbox = Outbox::new().with_backoff(Duration::from_millis(5));
    let handle = outbox.handle(store.clone());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(outbox.run(client(fake, store), store.clone(), rx));
    Running { handle, stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).expect("runner listens");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the outbox stops promptly")
            .expect("the outbox task does not panic");
    }
}

// ── access token ────────────────────────────────────────────────────────────────────────

#[tokio::test]
async fn the_token_is_fetched_once_and_cached() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&fake, &open_store(dir.path()));

    for i in 0..3 {
        c.send_custom(&text("o1", &format!("hello {i}")))
            .await
            .unwrap();
    }

    assert_eq!(fake.token_fetches(), 1);
    assert_eq!(fake.delivered().len(), 3);
}

#[tokio::test]
async fn the_token_is_reused_from_the_store_after_a_restart() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(dir.path());
        client(&fake, &store)
            .send_custom(&text("o1", "before"))
            .await
            .unwrap();
    }
    assert_eq!(fake.token_fetches(), 1);

    // A new process: the store reopened, a new client with an empty memory.
    let store = open_store(dir.path());
    client(&fake, &store)
        .send_custom(&text("o1", "after"))
        .await
        .unwrap();

    assert_eq!(fake.token_fetches(), 1, "the stored token is reused");
    assert_eq!(fake.delivered().len(), 2);
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&fake, &open_store(dir.path()));

    // Less than five minutes to live from the start: every use needs a new one.
    fake.set_expires_in(299);
    c.send_custom(&text("o1", "a")).await.unwrap();
    c.send_custom(&text("o1", "b")).await.unwrap();
    assert_eq!(fake.token_fetches(), 2);

    fake.set_expires_in(7200);
    c.send_custom(&text("o1", "c")).await.unwrap();
    c.send_custom(&text("o1", "d")).await.unwrap();
    assert_eq!(fake.token_fetches(), 3);
    assert_eq!(fake.delivered().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_cause_exactly_one_token_fetch() {
    let fake = FakePlatform::start().await;
    fake.set_token_delay(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let c = client(&fake, &open_store(dir.path()));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        tasks.spawn(async move { c.send_custom(&text("o1", &format!("n{i}"))).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("send succeeds");
    }

    assert_eq!(fake.token_fetches(), 1);
    assert_eq!(fake.delivered().len(), 50);
}

#[tokio::test]
async fn a_token_rejected_mid_life_is_refreshed_once_and_the_call_retried() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = client(&fake, &store);
    c.send_custom(&text("o1", "first")).await.unwrap();

    fake.expire_tokens();
    c.send_custom(&text("o1", "second")).await.unwrap();

    assert_eq!(fake.token_fetches(), 2);
    let answers: Vec<i64> = fake.received(SEND).iter().map(|r| r.answered).collect();
    assert_eq!(answers, vec![0, 40001, 0]);
    assert_eq!(fake.delivered()[1]["text"]["content"], "second");

    // The fresh token was stored too: a new client (empty memory) does not fetch again.
    let c2 = client(&fake, &store);
    c2.send_custom(&text("o1", "third")).await.unwrap();
    assert_eq!(fake.token_fetches(), 2);
}

#[tokio::test]
async fn a_token_rejected_twice_fails_without_a_third_try() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&fake, &open_store(dir.path()));
    fake.fail_next(2, 40001);

    let err = c.send_custom(&text("o1", "x")).await.unwrap_err();

    assert_eq!(err.errcode(), Some(40001));
    assert!(!err.is_permanent());
    assert_eq!(fake.received(SEND).len(), 2, "one retry, not more");
    assert_eq!(fake.token_fetches(), 2);
}

#[tokio::test]
async fn an_unreachable_platform_is_a_transient_error_that_names_no_secret() {
    // Port 1 on loopback: nothing listens there.
    let dir = tempfile::tempdir().unwrap();
    let c = PlatformClient::new(
        "http://127.0.0.1:1",
        &AppId::new(APP_ID),
        &Secret::new(APP_SECRET),
        open_store(dir.path()),
    );

    let err = c.send_custom(&text("o1", "x")).await.unwrap_err();

    assert!(matches!(err, PlatformError::Http(_)), "{err:?}");
    assert!(!err.is_permanent());
    assert!(!err.to_string().contains(APP_SECRET), "{err}");
    assert!(!format!("{err:?}").contains(APP_SECRET), "{err:?}");
}

// ── customer-service bodies ─────────────────────────────────────────────────────────────

#[tokio::test]
async fn custom_send_bodies_are_exactly_what_the_platform_documents() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&fake, &open_store(dir.path()));

    c.send_custom(&text("oOPENID1", "你好 \"world\"\n第二行"))
        .await
        .unwrap();
    c.send_custom(&CustomMessage::News {
        to: "oOPENID2".into(),
        article: NewsArticle {
            title: "Rust 101".into(),
            description: "从零开始".into(),
            url: "https://mp.example.com/read/rust-101".into(),
            picurl: "https://mp.example.com/cover.png".into(),
        },
    })
    .await
    .unwrap();
    c.send_custom(&CustomMessage::Image {
        to: "oOPENID3".into(),
        media_id: "MEDIA_ID_1".into(),
    })
    .await
    .unwrap();

    assert_eq!(
        fake.delivered(),
        vec![
            json!({"touser":"oOPENID1","msgtype":"text","text":{"content":"你好 \"world\"\n第二行"}}),
            json!({"touser":"oOPENID2","msgtype":"news","news":{"articles":[{
                "title":"Rust 101","description":"从零开始",
                "url":"https://mp.example.com/read/rust-101",
                "picurl":"https://mp.example.com/cover.png"}]}}),
            json!({"touser":"oOPENID3","msgtype":"image","image":{"media_id":"MEDIA_ID_1"}}),
        ]
    );
    // UTF-8 as is, not \u escapes (the platform counts lengths on the raw bytes).
    assert!(fake.received(SEND)[0].raw.contains("你好"));
}

#[tokio::test]
async fn text_over_the_limit_goes_as_several_messages_in_order() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&fake, &open_store(dir.path()));
    let content = "字".repeat(mpgate::platform::MAX_TEXT_CHARS + 10);

    c.send_custom(&text("o1", &content)).await.unwrap();

    let parts: Vec<String> = fake
        .delivered()
        .iter()
        .map(|b| {
            b["text"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].chars().count(), mpgate::platform::MAX_TEXT_CHARS);
    assert_eq!(parts.concat(), content);
}

// ── menu push ───────────────────────────────────────────────────────────────────────────

fn shipped_keywords() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keywords.toml")
}

fn menu_settings(fake: &FakePlatform, data_dir: &Path, secret: bool) -> Settings {
    let data = data_dir.display().to_string();
    let mut env = vec![
        ("MPGATE_APP_ID", APP_ID),
        ("MPGATE_API_BASE", fake.base.as_str()),
        ("MPGATE_DATA_DIR", data.as_str()),
    ];
    if secret {
        env.push(("MPGATE_APP_SECRET", APP_SECRET));
    }
    Settings::for_tests(&env).expect("settings")
}

#[tokio::test]
async fn menu_push_posts_exactly_the_menu_of_the_shipped_keywords() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = menu_settings(&fake, dir.path(), true);

    let summary = mpgate::platform::menu_push(&settings, &shipped_keywords())
        .await
        .expect("menu push succeeds");

    let expected = RuleSet::load(&shipped_keywords())
        .expect("shipped keywords load")
        .rules
        .menu_json()
        .expect("the shipped keywords have a menu");
    let received = fake.received(MENU);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, expected);
    assert_eq!(received[0].answered, 0);
    assert!(summary.contains(APP_ID), "{summary}");
    assert!(!summary.contains('\n'), "one line: {summary}");
    assert!(!summary.contains(APP_SECRET));
}

#[tokio::test]
async fn menu_push_refuses_without_an_app_secret() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = menu_settings(&fake, dir.path(), false);

    let err = mpgate::platform::menu_push(&settings, &shipped_keywords())
        .await
        .unwrap_err();

    assert!(err.to_string().contains("MPGATE_APP_SECRET"), "{err}");
    assert_eq!(fake.token_fetches(), 0);
    assert!(fake.received(MENU).is_empty());
}

#[tokio::test]
async fn menu_push_refuses_a_rules_file_without_a_menu() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = menu_settings(&fake, dir.path(), true);
    let no_menu = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keywords/valid_with_template.toml");

    let err = mpgate::platform::menu_push(&settings, &no_menu)
        .await
        .unwrap_err();

    assert!(err.to_string().contains("no [menu]"), "{err}");
    assert!(fake.received(MENU).is_empty());
}

#[tokio::test]
async fn menu_push_reports_the_platforms_refusal() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = menu_settings(&fake, dir.path(), true);
    fake.fail_next(1, 40018);

    let err = mpgate::platform::menu_push(&settings, &shipped_keywords())
        .await
        .unwrap_err();

    assert!(format!("{err:#}").contains("40018"), "{err:#}");
}

// ── outbox ──────────────────────────────────────────────────────────────────────────────

#[tokio::test]
async fn the_outbox_delivers_enqueued_messages() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let outbox = start_outbox(&fake, &store);

    let a = outbox
        .handle
        .enqueue(text("o1", "one"), "webhook:test")
        .unwrap();
    let b = outbox
        .handle
        .enqueue(text("o2", "two"), "webhook:test")
        .unwrap();
    let a = wait_for(&store, a, is_sent).await;
    let b = wait_for(&store, b, is_sent).await;

    assert_eq!((a.attempts, b.attempts), (1, 1));
    assert_eq!(a.origin, "webhook:test");
    assert_eq!(
        fake.delivered(),
        vec![
            json!({"touser":"o1","msgtype":"text","text":{"content":"one"}}),
            json!({"touser":"o2","msgtype":"text","text":{"content":"two"}}),
        ]
    );
    assert!(store.outbox_list(OutboxFilter::Pending).unwrap().is_empty());
    outbox.stop().await;
}

#[tokio::test]
async fn a_transient_error_twice_then_success_is_delivered_on_the_third_attempt() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    fake.fail_next(2, -1);
    let outbox = start_outbox(&fake, &store);

    let id = outbox.handle.enqueue(text("o1", "busy"), "test").unwrap();
    let item = wait_for(&store, id, is_sent).await;

    assert_eq!(item.attempts, 3);
    let answers: Vec<i64> = fake.received(SEND).iter().map(|r| r.answered).collect();
    assert_eq!(answers, vec![-1, -1, 0]);
    outbox.stop().await;
}

#[tokio::test]
async fn a_permanent_error_fails_the_item_with_the_reason_and_is_not_retried() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    fake.fail_next(1, 45015);
    let outbox = start_outbox(&fake, &store);

    let id = outbox
        .handle
        .enqueue(text("o1", "too late"), "test")
        .unwrap();
    let item = wait_for(&store, id, |i| !matches!(i.state, OutboxState::Pending)).await;

    let OutboxState::Failed { reason, .. } = &item.state else {
        panic!("expected Failed, got {:?}", item.state);
    };
    assert!(reason.contains("45015"), "{reason}");
    assert!(reason.contains("response out of time limit"), "{reason}");
    assert_eq!(item.attempts, 1);
    // Several poll rounds later, still exactly one attempt.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.received(SEND).len(), 1);
    assert_eq!(store.outbox_list(OutboxFilter::Failed).unwrap().len(), 1);
    outbox.stop().await;
}

/// A 4,200-character reply goes as two parts.
fn long_reply() -> String {
    let first: String = std::iter::repeat_n('甲', 4_000).collect();
    let second: String = std::iter::repeat_n('乙', 200).collect();
    format!("{first}{second}")
}

#[tokio::test]
async fn a_split_reply_whose_first_part_meets_a_503_still_arrives_in_order() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    fake.fail_next_http(1, 503);
    let outbox = start_outbox(&fake, &store);

    let first = outbox
        .handle
        .enqueue(text("oLong", &long_reply()), "test")
        .unwrap();
    let later = outbox
        .handle
        .enqueue(text("oLong", "and one more thing"), "test")
        .unwrap();
    wait_for(&store, later, is_sent).await;

    assert_eq!(wait_for(&store, first, is_sent).await.attempts, 2);
    let answers: Vec<i64> = fake.received(SEND).iter().map(|r| r.answered).collect();
    assert_eq!(
        answers,
        vec![-503, 0, 0, 0],
        "one 503, then everything once"
    );
    // (first character, length) of each text delivered: short enough to read in a failure.
    let delivered: Vec<(char, usize)> = fake
        .delivered()
        .iter()
        .map(|b| {
            let t = b["text"]["content"].as_str().unwrap();
            (t.chars().next().unwrap(), t.chars().count())
        })
        .collect();
    assert_eq!(
        delivered,
        vec![('甲', 4_000), ('乙', 200), ('a', 18)],
        "the first part, the second, then the later message"
    );
    outbox.stop().await;
}

#[tokio::test]
async fn a_split_reply_whose_first_part_is_refused_fails_its_second_part_with_the_reason() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    fake.fail_next(1, 45015);
    let outbox = start_outbox(&fake, &store);

    let first = outbox
        .handle
        .enqueue(text("oLong", &long_reply()), "test")
        .unwrap();
    let later = outbox
        .handle
        .enqueue(text("oLong", "a new question answered"), "test")
        .unwrap();
    wait_for(&store, later, is_sent).await;

    let failed = store.outbox_list(OutboxFilter::Failed).unwrap();
    let ids: Vec<u64> = failed.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 2, "both parts failed: {ids:?}");
    assert_eq!(failed[0].id, first);
    let OutboxState::Failed { reason, .. } = &failed[1].state else {
        panic!("expected Failed, got {:?}", failed[1].state);
    };
    assert!(
        reason.contains(&first.to_string()),
        "names the earlier part: {reason}"
    );
    assert!(reason.contains("45015"), "{reason}");
    assert_eq!(failed[1].attempts, 0, "the second part was never sent");
    let contents: Vec<Value> = fake
        .delivered()
        .iter()
        .map(|b| b["text"]["content"].clone())
        .collect();
    assert_eq!(
        contents,
        vec![json!("a new question answered")],
        "a later message still goes"
    );
    outbox.stop().await;
}

#[tokio::test]
async fn a_transient_error_that_never_clears_gives_up_after_ten_attempts() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    fake.fail_next(50, 45009);
    // 1 ms base: the ten attempts wait 1+2+…+256 ms in all.
    let outbox = Outbox::new().with_backoff(Duration::from_millis(1));
    let handle = outbox.handle(store.clone());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(outbox.run(client(&fake, &store), store.clone(), rx));

    let id = handle.enqueue(text("o1", "quota"), "test").unwrap();
    let item = wait_for(&store, id, |i| !matches!(i.state, OutboxState::Pending)).await;

    let OutboxState::Failed { reason, .. } = &item.state else {
        panic!("expected Failed, got {:?}", item.state);
    };
    assert!(reason.contains("gave up after 10 attempts"), "{reason}");
    assert!(reason.contains("45009"), "{reason}");
    assert_eq!(item.attempts, 10);
    assert_eq!(fake.received(SEND).len(), 10);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_queued_message_survives_a_restart_and_is_delivered_by_the_next_outbox() {
    let fake = FakePlatform::start().await;
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open_store(dir.path());
        let outbox = start_outbox(&fake, &store);
        let handle = outbox.handle.clone();
        outbox.stop().await;
        // The runner is gone: this stays queued.
        handle.enqueue(text("o1", "durable"), "test").unwrap()
        // Every handle on the store is dropped here, like a process exiting.
    };
    assert!(fake.delivered().is_empty());

    let store = open_store(dir.path());
    let pending = store.outbox_list(OutboxFilter::Pending).unwrap();
    assert_eq!(pending.iter().map(|i| i.id).collect::<Vec<_>>(), vec![id]);

    let outbox = start_outbox(&fake, &store);
    let item = wait_for(&store, id, is_sent).await;
    assert_eq!(item.attempts, 1);
    assert_eq!(
        fake.delivered(),
        vec![json!({"touser":"o1","msgtype":"text","text":{"content":"durable"}})]
    );
    outbox.stop().await;
}
