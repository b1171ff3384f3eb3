//! Handing a subscriber to human customer service, and back.

use crate::admin::{admin_app, ADMIN};
use crate::helpers::*;
use mpgate::pipeline::CallbackQuery;
use mpgate::wechat::types::OpenId;

fn kf_event(from: &str, event: &str, extra: &str) -> String {
    event_xml(from, event, extra, now())
}

#[tokio::test]
async fn the_full_life_cycle_request_transfer_agent_events_and_exit_keyword() {
    let app = admin_app().await;
    // Asking for a person transfers the conversation.
    let r = app.say("oHelp", "human").await;
    assert_eq!(
        r.msg_type().as_deref(),
        Some("transfer_customer_service"),
        "{}",
        r.raw
    );
    let trans = r.xml.as_ref().unwrap().child("TransInfo").unwrap();
    assert_eq!(trans.child_text("KfAccount"), Some("alice@test"));

    // While the session is open, keywords do not reach the bot.
    let r = app.say("oHelp", "hello").await;
    assert_eq!(
        r.msg_type().as_deref(),
        Some("transfer_customer_service"),
        "{}",
        r.raw
    );

    // The platform reports the agent taking it, then a switch.
    let r = app
        .push(&kf_event(
            "oHelp",
            "kf_create_session",
            "<KfAccount><![CDATA[bob@test]]></KfAccount>",
        ))
        .await;
    assert!(r.is_success());
    let s = app
        .gateway
        .store()
        .handoff_get(&OpenId::new("oHelp"))
        .unwrap()
        .unwrap();
    assert_eq!(s.kf_account.as_deref(), Some("bob@test"));
    app.push(&kf_event(
        "oHelp",
        "kf_switch_session",
        "<FromKfAccount><![CDATA[bob@test]]></FromKfAccount><ToKfAccount><![CDATA[carol@test]]></ToKfAccount>",
    ))
    .await;
    let r = app.say("oHelp", "still there?").await;
    let trans = r.xml.as_ref().unwrap().child("TransInfo").unwrap();
    assert_eq!(
        trans.child_text("KfAccount"),
        Some("carol@test"),
        "messages follow the agent who has it"
    );

    // The operator sees it waiting.
    let v: serde_json::Value = app.admin_get("/admin/handoffs").await.json().await.unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["handoffs"][0]["session"]["openid"], "oHelp");

    // The exit keyword returns the subscriber to the bot.
    let r = app.say("oHelp", "BYE").await;
    assert_eq!(r.msg_type().as_deref(), Some("text"), "{}", r.raw);
    let r = app.say("oHelp", "hello").await;
    assert_eq!(r.content().as_deref(), Some("Hello from mpgate!"));
    assert!(app
        .gateway
        .store()
        .handoff_get(&OpenId::new("oHelp"))
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn the_agent_closing_the_session_returns_to_the_bot() {
    let app = admin_app().await;
    app.say("oHelp2", "human").await;
    let r = app
        .push(&kf_event(
            "oHelp2",
            "kf_close_session",
            "<KfAccount><![CDATA[bob@test]]></KfAccount>",
        ))
        .await;
    assert!(r.is_success());
    assert_eq!(
        app.say("oHelp2", "hello").await.content().as_deref(),
        Some("Hello from mpgate!")
    );
}

#[tokio::test]
async fn an_operator_can_close_a_handoff() {
    let app = admin_app().await;
    app.say("oHelp3", "human").await;
    let r = app
        .client
        .post(app.url("/admin/handoffs/oHelp3/close"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.say("oHelp3", "hello").await.content().as_deref(),
        Some("Hello from mpgate!")
    );
    let r = app
        .client
        .post(app.url("/admin/handoffs/oHelp3/close"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_idle_session_times_out_back_to_the_bot() {
    let app = admin_app().await;
    app.say("oIdle", "human").await;
    // Drive the pipeline 31 minutes in the future (the fixture's idle timeout is 30).
    let later = chrono::Utc::now() + chrono::Duration::minutes(31);
    let xml = text_xml("oIdle", "hello", 8_800_000_000_000_000_001);
    let s = seal_push(&xml, AES_KEY, APP_ID, later.timestamp(), &nonce());
    let q: CallbackQuery = parse_query(&s.query);
    let answer = app
        .gateway
        .post(&q, s.body.as_bytes(), later)
        .await
        .unwrap();
    let opened = cipher(AES_KEY)
        .decrypt(
            mpgate::wechat::xml::parse(&answer.body)
                .unwrap()
                .child_text("Encrypt")
                .unwrap(),
            &mpgate::wechat::types::AppId::new(APP_ID),
        )
        .unwrap();
    assert!(opened.contains("Hello from mpgate!"), "{opened}");
    assert!(app
        .gateway
        .store()
        .handoff_get(&OpenId::new("oIdle"))
        .unwrap()
        .is_none());

    // The background sweep closes sessions nobody writes to again.
    app.say("oIdle2", "human").await;
    assert_eq!(
        app.gateway.close_idle_handoffs(later.timestamp()).unwrap(),
        1
    );
    assert!(app
        .gateway
        .store()
        .handoff_get(&OpenId::new("oIdle2"))
        .unwrap()
        .is_none());
}

fn parse_query(q: &str) -> CallbackQuery {
    let mut out = CallbackQuery::default();
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap();
        let v = Some(v.to_string());
        match k {
            "signature" => out.signature = v,
            "timestamp" => out.timestamp = v,
            "nonce" => out.nonce = v,
            "encrypt_type" => out.encrypt_type = v,
            "msg_signature" => out.msg_signature = v,
            "openid" => out.openid = v,
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn outside_working_hours_the_subscriber_is_told_and_queued() {
    use chrono::Timelike;
    // A window that starts two hours from now in the account's zone never includes now.
    let hour = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .hour();
    let (from, to) = ((hour + 2) % 24, (hour + 3) % 24);
    let fixture = std::fs::read_to_string(fixture("keywords.toml")).unwrap();
    let keywords = format!(
        "{fixture}\n[[rule]]\nname = \"night-desk\"\nwhen = {{ exact = [\"after hours\"] }}\nhandoff = {{ kf_account = \"alice@test\", hours = {{ days = \"daily\", from = \"{from:02}:00\", to = \"{to:02}:00\" }}, offline = \"We are offline; we will write back.\" }}\n"
    );
    let mut opts = Options::default().env("MPGATE_ADMIN_TOKEN", ADMIN);
    opts.keywords = Some(keywords);
    let app = spawn_app(opts).await;
    let r = app.say("oNight", "after hours").await;
    assert_eq!(
        r.content().as_deref(),
        Some("We are offline; we will write back."),
        "{}",
        r.raw
    );
    let v: serde_json::Value = app.admin_get("/admin/handoffs").await.json().await.unwrap();
    assert_eq!(v["handoffs"][0]["session"]["state"]["state"], "queued");
    // Queued is not transferred: the bot keeps answering.
    assert_eq!(
        app.say("oNight", "hello").await.content().as_deref(),
        Some("Hello from mpgate!")
    );
}
