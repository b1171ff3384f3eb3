//! What subscribers ask that no rule answers: counted without who asked, listed for the
//! operator (`GET /admin/unanswered`, `mpgate unanswered`), and one step from the simulator.

use crate::admin::{admin_app, ADMIN};
use crate::helpers::*;
use crate::process::{free_port, operator, run, say_sealed, start, stop, wait_healthy};

const FALLBACK: &str = "Sorry, I did not get that.";

/// The story's subscribers: none of these may ever show up in the list or its tree.
const ALICE: &str = "oUnansAlice7Fq2";
const BOB: &str = "oUnansBob9Kd4w";
const CAROL: &str = "oUnansCarol3Xp8";
const DAVE: &str = "oUnansDave5Rt1";
const ERIN: &str = "oUnansErin2Mz6";
const OPENIDS: [&str; 5] = [ALICE, BOB, CAROL, DAVE, ERIN];

fn texts(v: &serde_json::Value) -> Vec<(String, u64)> {
    v["texts"]
        .as_array()
        .unwrap_or_else(|| panic!("no texts: {v}"))
        .iter()
        .map(|t| {
            (
                t["text"].as_str().expect("text").to_string(),
                t["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_operator_sees_what_no_rule_answered_normalised_counted_and_without_openids() {
    let app = admin_app().await;
    // Unanswered: the fallback answers them.
    for (who, text) in [
        (ALICE, "怎么退款"),
        // An ideographic space around it: the same question once normalised.
        (BOB, "\u{3000}怎么退款 "),
        // Full-width letters and question mark normalise to the half-width, lower-case form.
        (CAROL, "ＶＩＰ价格？"),
        (DAVE, "vip价格?"),
        (ERIN, "🙏🙏"),
        // Order numbers are masked: one question, not two.
        (ALICE, "订单 1234567 怎么查"),
        (BOB, "订单 7654321 怎么查"),
    ] {
        let r = app.say(who, text).await;
        assert_eq!(r.content().as_deref(), Some(FALLBACK), "{text}: {}", r.raw);
    }
    // Answered by a rule: not listed.
    let r = app.say(CAROL, "hello").await;
    assert_eq!(r.content().as_deref(), Some("Hello from mpgate!"));
    // While a person holds the conversation, what the subscriber writes is theirs to answer.
    let r = app.say(DAVE, "human").await;
    assert_eq!(r.msg_type().as_deref(), Some("transfer_customer_service"));
    let r = app.say(DAVE, "我的退款到哪了").await;
    assert_eq!(r.msg_type().as_deref(), Some("transfer_customer_service"));

    let resp = app.admin_get("/admin/unanswered").await;
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["days"], 7);
    assert_eq!(
        texts(&v),
        vec![
            ("vip价格?".to_string(), 2),
            ("怎么退款".to_string(), 2),
            ("订单 # 怎么查".to_string(), 2),
            ("🙏🙏".to_string(), 1),
        ]
    );
    let today = app.gateway.today(chrono::Utc::now()).to_string();
    assert!(
        v["texts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["last_day"] == today.as_str()),
        "{v}"
    );
    for id in OPENIDS {
        assert!(!raw.contains(id), "{id} in {raw}");
    }

    let v: serde_json::Value = app
        .admin_get("/admin/unanswered?days=30&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["days"], 30);
    assert_eq!(texts(&v).len(), 2);

    // Bad parameters are 400 naming the parameter; no token is 401.
    for (query, names) in [
        ("days=0", "`days`"),
        ("days=367", "`days`"),
        ("limit=abc", "`limit`"),
        ("limit=1001", "`limit`"),
        ("bogus=1", "bogus"),
    ] {
        let r = app.admin_get(&format!("/admin/unanswered?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap_or("").contains(names),
            "{query}: {v}"
        );
    }
    let r = app
        .client
        .get(app.url("/admin/unanswered"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The real binary: the list through the running server and on its data dir once stopped, the
/// raw `unanswered` tree holding no openid, and the simulator taking a text by its number.
#[tokio::test]
async fn mpgate_unanswered_lists_the_texts_and_simulate_takes_one_by_its_number() {
    let data = tempfile::tempdir().unwrap();
    let kw = fixture("keywords.toml");
    let port = free_port();
    let server = start(data.path(), port);
    wait_healthy(&server.base).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut id = 880_000;
    for (who, text) in [
        (ALICE, "能开发票吗"),
        (BOB, "能开发票吗"),
        (CAROL, "能开发票吗？"),
        (DAVE, "电话 13800138000 打不通"),
        (ERIN, "hello"),
    ] {
        id += 1;
        say_sealed(&client, &server.base, &text_xml(who, text, id)).await;
    }
    let remote = {
        let mut c = operator(data.path(), &kw, &["unanswered"]);
        c.env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("MPGATE_ADMIN_TOKEN", ADMIN);
        tokio::task::spawn_blocking(move || run(c)).await.unwrap()
    };
    stop(server).await;

    // The raw tree, as the disk holds it: texts and counts, no openid.
    let mut bytes = Vec::new();
    {
        let db = sled::open(data.path()).expect("the stopped server let go of the data dir");
        let tree = db.open_tree("unanswered").unwrap();
        for kv in tree.iter() {
            let (k, v) = kv.unwrap();
            bytes.extend_from_slice(&k);
            bytes.extend_from_slice(&v);
        }
    }
    let raw = String::from_utf8_lossy(&bytes);
    assert!(raw.contains("能开发票吗"), "{raw}");
    assert!(
        raw.contains("电话 # 打不通"),
        "the phone number is masked: {raw}"
    );
    assert!(!raw.contains("13800138000"));
    for id in OPENIDS {
        assert!(
            !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} in the tree"
        );
    }

    let (ok, direct, err) = run(operator(data.path(), &kw, &["unanswered"]));
    assert!(ok, "{err}");
    let lines: Vec<&str> = direct.lines().collect();
    assert_eq!(lines.len(), 4, "{direct}");
    assert!(lines[0].contains("last 7 days"), "{direct}");
    // Numbered, count then text, most frequent first.
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["1.", "2", "能开发票吗"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["2.", "1", "电话", "#", "打不通"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["3.", "1", "能开发票吗?"]
    );
    assert!(remote.0, "{}", remote.2);
    assert_eq!(remote.1, direct, "the same list through the running server");

    let (ok, out, err) = run(operator(
        data.path(),
        &kw,
        &["simulate", "--unanswered", "1"],
    ));
    assert!(ok, "{err}");
    assert!(
        out.contains("unanswered text #1 (last 7 days): \"能开发票吗\""),
        "{out}"
    );
    assert!(out.contains("matched: rule `fallback` (fallback)"), "{out}");
    let (ok, typed, _) = run(operator(data.path(), &kw, &["simulate", "能开发票吗"]));
    assert!(ok);
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        typed.lines().collect::<Vec<_>>(),
        "the same as simulating the typed text"
    );
    let (ok, _, err) = run(operator(
        data.path(),
        &kw,
        &["simulate", "--unanswered", "9"],
    ));
    assert!(!ok);
    assert!(err.contains("there is no number 9"), "{err}");
}
