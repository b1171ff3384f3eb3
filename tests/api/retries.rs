//! The platform retries a push up to three times: one set of side effects, the same answer.

use crate::helpers::*;
use mpgate::wechat::types::OpenId;

fn today(app: &TestApp) -> chrono::NaiveDate {
    let tz = app.gateway.rules().current().timezone();
    chrono::Utc::now().with_timezone(&tz).date_naive()
}

fn counter(app: &TestApp, name: &str) -> u64 {
    let d = today(app);
    let all = app.gateway.store().counters(d, d).unwrap();
    all.get(&d).and_then(|m| m.get(name)).copied().unwrap_or(0)
}

#[tokio::test]
async fn three_sequential_retries_get_one_handling_and_the_same_reply() {
    let app = spawn_app(Options::default()).await;
    // A rule with several random replies shows that retries get the stored answer.
    let xml = text_xml("oRetry1", "lucky", 8_000_000_000_000_000_001);
    let mut contents = Vec::new();
    for _ in 0..3 {
        // Each retry is signed and sealed afresh, as the platform does; the MsgId is the same.
        let r = app
            .send(&seal_push(&xml, AES_KEY, APP_ID, now(), &nonce()))
            .await;
        assert_eq!(r.status, 200, "{}", r.raw);
        contents.push(r.content().unwrap());
    }
    assert!(contents.iter().all(|c| c == &contents[0]), "{contents:?}");
    let sub = app
        .gateway
        .store()
        .subscriber(&OpenId::new("oRetry1"))
        .unwrap()
        .unwrap();
    assert_eq!(sub.message_count, 1);
    assert_eq!(sub.tags, vec!["gambler".to_string()]);
    assert_eq!(counter(&app, "rule:lucky"), 1);
}

/// The dedupe memory keeps a reply without its head (addresses, CreateTime) and gives it back
/// from the retry's push: a retry must still get the first reply byte for byte, whether it is
/// answered from memory or, after the write-behind, from sled, and in a later second.
#[tokio::test]
async fn a_retry_gets_the_first_reply_whole_from_memory_and_from_disk() {
    let app = spawn_app(Options::default()).await;
    let xml = text_xml("oRetryWhole", "lucky", 8_000_000_000_000_000_050);
    let retry = || seal_push(&xml, AES_KEY, APP_ID, now(), &nonce());
    let first = app.send(&retry()).await;
    assert_eq!(first.field("ToUserName").as_deref(), Some("oRetryWhole"));
    assert_eq!(first.field("FromUserName").as_deref(), Some(ACCOUNT));
    assert!(
        first.content().is_some_and(|c| c.starts_with("lucky ")),
        "{first:?}"
    );
    let from_memory = app.send(&retry()).await;
    assert_eq!(from_memory.xml, first.xml);
    // A later second, so a head rebuilt with the retry's time instead of the answer's would show.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.gateway.store().flush().unwrap();
    let from_disk = app.send(&retry()).await;
    assert_eq!(from_disk.xml, first.xml);
}

#[tokio::test]
async fn three_concurrent_retries_get_one_handling_and_the_same_reply() {
    let app = spawn_app(Options::default()).await;
    for round in 0..5u64 {
        let xml = text_xml("oRetry2", "lucky", 8_000_000_000_000_000_100 + round);
        let pushes: Vec<Signed> = (0..3)
            .map(|_| seal_push(&xml, AES_KEY, APP_ID, now(), &nonce()))
            .collect();
        let (a, b, c) = tokio::join!(
            app.send(&pushes[0]),
            app.send(&pushes[1]),
            app.send(&pushes[2])
        );
        let contents = [
            a.content().unwrap(),
            b.content().unwrap(),
            c.content().unwrap(),
        ];
        assert!(
            contents.iter().all(|x| x == &contents[0]),
            "round {round}: {contents:?}"
        );
    }
    let sub = app
        .gateway
        .store()
        .subscriber(&OpenId::new("oRetry2"))
        .unwrap()
        .unwrap();
    assert_eq!(
        sub.message_count, 5,
        "five distinct messages, each counted once"
    );
    assert_eq!(counter(&app, "rule:lucky"), 5);
}

#[tokio::test]
async fn a_retried_subscribe_is_one_subscribe() {
    let app = spawn_app(Options::default()).await;
    let ct = now();
    let xml = event_xml(
        "oRetry3",
        "subscribe",
        "<EventKey><![CDATA[qrscene_course2026]]></EventKey>",
        ct,
    );
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(app.push(&xml).await.content());
    }
    assert_eq!(replies[0].as_deref(), Some("Welcome, course2026 friend!"));
    assert!(replies.iter().all(|r| r == &replies[0]));
    assert_eq!(counter(&app, "subscribe:course2026"), 1);
    // A later, distinct subscribe (after leaving) is a returning subscriber.
    app.push(&event_xml("oRetry3", "unsubscribe", "", ct + 10))
        .await;
    let r = app
        .push(&event_xml("oRetry3", "subscribe", "", ct + 20))
        .await;
    assert_eq!(r.content().as_deref(), Some("Welcome back!"));
    assert_eq!(counter(&app, "subscribe:course2026"), 1);
    assert_eq!(counter(&app, "subscribe:"), 1);
}
