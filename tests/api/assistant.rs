//! The assistant rule action (issue 19), as subscribers, the platform and the operator see it:
//! through the encrypted callback, with a fake OpenAI-compatible model ([`FakeAi`], a real
//! HTTP server streaming SSE) and, where the account has it, the fake customer-service API.
//!
//! The platform waits 5 s for each request and sends the push three times in all. The stories
//! scale that down with the rule's budget: the rules here wait 500 ms for the answer and
//! [`Platform::PATIENCE`] stands for the platform's 5 s, so a story takes seconds, not 15 s.
//! The proportions are the real ones: the budget ends before the platform hangs up, and the
//! retry comes when it does.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admin::ADMIN;
use crate::fake::{FakePlatform, APP_SECRET};
use crate::fakeai::{FakeAi, Script};
use crate::helpers::*;

/// A paid article, a free one, and a FAQ document: what the assistant answers from.
const RUST_101: &str = "<h1>Rust 101</h1>\
<p>所有权是 Rust 最核心的概念：每个值都有一个所有者，所有者离开作用域时值被释放。</p>\
<p>借用检查器（borrow checker）保证引用不会比它指向的值活得更久，可变借用同一时间只能有一个。</p>";
const GO: &str = "<h1>Go 并发入门</h1>\
<p>goroutine 是 Go 的轻量线程，用 go 关键字启动；channel 用来在 goroutine 之间传递数据。</p>\
<p>select 语句可以同时等待多个 channel。</p>";
const FAQ: &str = "# 常见问题\n\n## 退款\n\n购买后七天内可以申请退款，联系客服即可。\n\n## 发票\n\n需要发票请留言写明抬头和税号。\n";

/// The paid article's teaser for non-members.
const TEASER: &str = "助教只为课程学员答疑，购买课程后即可提问。";
const FALLBACK: &str = "助教暂时答不上来，请稍后再问。";

fn keywords(api_base: &str, extra_account: &str, assistant: &str) -> String {
    format!(
        r#"[account]
timezone = "Asia/Shanghai"
{extra_account}

[assistant]
documents = ["faq.md"]
blocklist = ["赌博"]
{assistant}

[[article]]
id = "rust-101"
title = "Rust 101"
teaser = "Ownership in ten minutes."
price = "¥99"
body_template = "articles/rust-101.html"

[[rule]]
name = "members"
when = {{ prefix = ["学员问"] }}
assistant = {{ model = "course-model", for_article = "rust-101", teaser = "{TEASER}", timeout_ms = 500, fallback = "{FALLBACK}", api_base = "{api_base}" }}

[[rule]]
name = "ask"
when = {{ prefix = ["问"] }}
assistant = {{ model = "course-model", timeout_ms = 500, turns = 2, fallback = "{FALLBACK}" }}
"#
    )
}

fn files() -> Vec<(String, String)> {
    vec![
        ("templates/articles/rust-101.html".into(), RUST_101.into()),
        ("templates/articles/go-concurrency.html".into(), GO.into()),
        ("templates/faq.md".into(), FAQ.into()),
    ]
}

/// How the account can deliver a late answer.
enum Account {
    /// Verified: the customer-service API (AppSecret set, the fake platform behind it).
    CustomerService,
    /// `[account] customer_service = false`: only passive replies.
    PassiveOnly,
}

struct Story {
    app: TestApp,
    ai: FakeAi,
    platform: FakePlatform,
}

async fn story(account: Account, assistant: &str) -> Story {
    let ai = FakeAi::start().await;
    let platform = FakePlatform::start_for(APP_ID).await;
    let account_line = match account {
        Account::CustomerService => "",
        Account::PassiveOnly => "customer_service = false",
    };
    let mut opts = Options::default()
        .env("MPGATE_ADMIN_TOKEN", ADMIN)
        .env("MPGATE_APP_SECRET", APP_SECRET)
        .env("MPGATE_API_BASE", &platform.base)
        .env("MPGATE_ASSISTANT_API_BASE", &ai.base())
        .env("MPGATE_ASSISTANT_API_KEY", "sk-test-assistant-key");
    opts.keywords = Some(keywords(&ai.base(), account_line, assistant));
    opts.files = files();
    Story {
        app: spawn_app(opts).await,
        ai,
        platform,
    }
}

/// The platform's side of one push.
struct Platform;

impl Platform {
    /// Stands for the platform's 5 s, in the proportion of the rules' 500 ms budget to its 4.5 s.
    const PATIENCE: Duration = Duration::from_millis(1000);

    /// Sends the text push from `from` as the platform does: it waits [`Self::PATIENCE`] for
    /// each request, hangs up, and sends it again (re-signed), three times in all. Returns
    /// which request got the answer (1, 2 or 3) and the answer; `None` when none did.
    async fn sends(app: &TestApp, from: &str, text: &str, msg_id: u64) -> Option<(u32, Reply)> {
        let xml = text_xml(from, text, msg_id);
        for attempt in 1..=3 {
            let s = seal_push(&xml, AES_KEY, APP_ID, now(), &nonce());
            if let Ok(reply) = tokio::time::timeout(Self::PATIENCE, app.send(&s)).await {
                return Some((attempt, reply));
            }
        }
        None
    }
}

fn msg_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(8_100_000_000_000_000_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The system prompt and the chat of the model's `n`-th request.
fn chat(ai: &FakeAi, n: usize) -> (String, Vec<(String, String)>) {
    let req: Value = ai.requests()[n].clone();
    let messages: Vec<(String, String)> = req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (messages[0].1.clone(), messages[1..].to_vec())
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fast_answer_is_the_passive_reply_grounded_in_the_creators_articles() {
    let s = story(Account::CustomerService, "").await;
    s.ai.set_default(Script::answer(
        "goroutine 用 go 关键字启动，channel 在它们之间传数据。见《Go 并发入门》。",
    ));
    let (attempt, reply) = Platform::sends(&s.app, "oReader1", "问 goroutine 怎么启动？", msg_id())
        .await
        .expect("answered");
    assert_eq!(attempt, 1, "within the budget: the first request");
    assert_eq!(
        reply.content().as_deref(),
        Some("goroutine 用 go 关键字启动，channel 在它们之间传数据。见《Go 并发入门》。")
    );
    assert_eq!(s.ai.calls(), 1);
    let req = &s.ai.requests()[0];
    assert_eq!(req["model"], "course-model");
    assert_eq!(req["stream"], true);
    assert_eq!(
        s.ai.authorizations()[0].as_deref(),
        Some("Bearer sk-test-assistant-key"),
        "MPGATE_ASSISTANT_API_KEY is the default key"
    );
    let (system, chat) = chat(&s.ai, 0);
    assert!(
        system.contains("《Go 并发入门》"),
        "the right article's passage: {system}"
    );
    assert!(system.contains("goroutine 是 Go 的轻量线程"), "{system}");
    assert!(
        !system.contains("所有权是 Rust"),
        "a paid article's passage is not used for a reader without it: {system}"
    );
    assert_eq!(
        chat,
        vec![("user".to_string(), "goroutine 怎么启动？".to_string())]
    );
    assert!(
        s.platform
            .received("/cgi-bin/message/custom/send")
            .is_empty(),
        "nothing else is sent"
    );
}

#[tokio::test]
async fn a_slow_answer_goes_out_as_customer_service_messages_split_in_order_while_typing_shows() {
    let s = story(Account::CustomerService, "").await;
    // Three long paragraphs: more than one passive reply holds.
    let paragraphs: Vec<String> = (1..=3)
        .map(|n| format!("第{n}段：") + &"借用检查器保证引用总是有效的。".repeat(40))
        .collect();
    let answer = paragraphs.join("\n\n");
    assert!(answer.len() > 2 * 2047);
    s.ai.set_default(Script {
        first_delay: Duration::from_millis(1500),
        ..Script::answer(&answer)
    });
    let started = Instant::now();
    let (attempt, reply) = Platform::sends(&s.app, "oReader2", "问 借用检查器是什么？", msg_id())
        .await
        .expect("answered");
    assert_eq!(attempt, 1);
    assert!(
        reply.is_success(),
        "answered `success` at the budget: {}",
        reply.raw
    );
    assert!(started.elapsed() < Duration::from_millis(900));

    until("the parts arrive", Duration::from_secs(10), || {
        s.platform.delivered().len() >= 3
    })
    .await;
    let typing = s.platform.received("/cgi-bin/message/custom/typing");
    assert!(!typing.is_empty(), "the typing indicator was shown");
    assert_eq!(typing[0].body["touser"], "oReader2");
    assert_eq!(typing[0].body["command"], "Typing");
    let parts: Vec<String> = s
        .platform
        .delivered()
        .iter()
        .map(|b| {
            assert_eq!(b["touser"], "oReader2");
            b["text"]["content"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(parts, paragraphs, "one part per paragraph, in order");
    assert!(parts.iter().all(|p| p.len() <= 2047));
    assert_eq!(s.ai.calls(), 1);
}

#[tokio::test]
async fn without_customer_service_a_slow_answer_is_the_reply_to_the_platforms_retry() {
    let s = story(Account::PassiveOnly, "").await;
    s.ai.set_default(Script {
        first_delay: Duration::from_millis(1300),
        ..Script::answer("select 可以同时等待多个 channel。")
    });
    let (attempt, reply) = Platform::sends(&s.app, "oReader3", "问 select 是做什么的？", msg_id())
        .await
        .expect("answered");
    assert_eq!(
        attempt, 2,
        "the first request was held until the platform gave up on it"
    );
    assert_eq!(
        reply.content().as_deref(),
        Some("select 可以同时等待多个 channel。")
    );
    assert_eq!(
        s.ai.calls(),
        1,
        "the model is called once for the push and its retry"
    );
    assert!(s
        .platform
        .received("/cgi-bin/message/custom/send")
        .is_empty());
    assert!(s
        .platform
        .received("/cgi-bin/message/custom/typing")
        .is_empty());
}

#[tokio::test]
async fn without_customer_service_a_slower_answer_waits_for_the_continue_word() {
    let s = story(Account::PassiveOnly, "").await;
    s.ai.set_default(Script {
        first_delay: Duration::from_millis(3800),
        ..Script::answer("七天内可以申请退款，联系客服即可。")
    });
    let (attempt, reply) = Platform::sends(&s.app, "oReader4", "问 怎么退款？", msg_id())
        .await
        .expect("the last retry is answered");
    assert_eq!(attempt, 3, "held through both retries");
    assert_eq!(
        reply.content().as_deref(),
        Some("回答还在生成中，稍后回复「继续」获取回答。")
    );
    // Too early: the answer is still being written.
    let early = s.app.say("oReader4", "继续").await;
    assert_eq!(
        early.content().as_deref(),
        Some("还在想，请过几秒再回复「继续」。")
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pulled = s.app.say("oReader4", "继续").await;
    assert_eq!(
        pulled.content().as_deref(),
        Some("七天内可以申请退款，联系客服即可。")
    );
    assert_eq!(
        s.ai.calls(),
        1,
        "one model call over three requests and two continue words"
    );
    // Given once: the word is an ordinary message again.
    let again = s.app.say("oReader4", "继续").await;
    assert_ne!(
        again.content().as_deref(),
        Some("七天内可以申请退款，联系客服即可。")
    );
}

#[tokio::test]
async fn a_long_answer_without_customer_service_comes_in_parts_through_the_continue_word() {
    let s = story(Account::PassiveOnly, "").await;
    let paragraphs: Vec<String> = (1..=2)
        .map(|n| format!("第{n}部分：") + &"所有权规则决定了值何时释放。".repeat(40))
        .collect();
    s.ai.set_default(Script::answer(&paragraphs.join("\n\n")));
    let (_, first) = Platform::sends(&s.app, "oReader5", "问 所有权规则", msg_id())
        .await
        .unwrap();
    assert_eq!(
        first.content().unwrap(),
        format!("{}\n\n（还有 1 段，回复「继续」继续看）", paragraphs[0])
    );
    let second = s.app.say("oReader5", "继续").await;
    assert_eq!(second.content().unwrap(), paragraphs[1]);
}

#[tokio::test]
async fn members_ask_and_others_get_the_teaser_with_the_paid_article_linked_for_the_member() {
    let s = story(Account::CustomerService, "").await;
    s.ai.set_default(Script::answer("每个值都有一个所有者。"));
    let outsider = s.app.say("oOutsider", "学员问 所有权是什么").await;
    assert_eq!(outsider.content().as_deref(), Some(TEASER));
    assert_eq!(s.ai.calls(), 0, "no model call for a non-member");

    let granted = s
        .app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": "oMember", "article": "rust-101", "create": true}),
        )
        .await;
    assert!(granted.status().is_success(), "{:?}", granted.text().await);
    let member = s.app.say("oMember", "学员问 所有权是什么").await;
    assert_eq!(member.content().as_deref(), Some("每个值都有一个所有者。"));
    let (system, _) = chat(&s.ai, 0);
    assert!(system.contains("所有权是 Rust 最核心的概念"), "{system}");
    assert!(
        system.contains("《Rust 101》 链接：http://mp.test/a/rust-101?"),
        "the paid article is linked, signed for this reader: {system}"
    );
    // The link is this reader's: it opens the article for them.
    let link = system
        .split("链接：")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .replace("http://mp.test", "");
    let page = s.app.get(&link).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("borrow checker"));
}

#[tokio::test]
async fn quotas_the_token_budget_the_rate_limit_and_the_blocklist_hold() {
    let s = story(
        Account::CustomerService,
        "daily_questions = 2\nper_minute = 10\nquota_reply = \"今天问够了。\"",
    )
    .await;
    s.ai.set_default(Script::answer("答。"));
    for q in ["问 一", "问 二"] {
        assert_eq!(
            s.app.say("oQuota", q).await.content().as_deref(),
            Some("答。")
        );
    }
    assert_eq!(
        s.app.say("oQuota", "问 三").await.content().as_deref(),
        Some("今天问够了。")
    );
    assert_eq!(s.ai.calls(), 2);

    // The blocklist: a question is refused without a model call; an answer is replaced.
    let blocked = s.app.say("oBlock", "问 哪里可以赌博").await;
    assert_eq!(
        blocked.content().as_deref(),
        Some("这个问题我不能回答，换个问题试试吧。")
    );
    assert_eq!(s.ai.calls(), 2);
    s.ai.on("推荐", Script::answer("推荐你去赌博网站。"));
    let replaced = s.app.say("oBlock", "问 推荐点什么").await;
    assert_eq!(
        replaced.content().as_deref(),
        Some("这个问题我暂时答不好，换个问法试试吧。")
    );

    // The per-minute limit.
    let r = story(Account::CustomerService, "per_minute = 2").await;
    r.ai.set_default(Script::answer("答。"));
    assert_eq!(
        r.app.say("oFast", "问 a").await.content().as_deref(),
        Some("答。")
    );
    assert_eq!(
        r.app.say("oFast", "问 b").await.content().as_deref(),
        Some("答。")
    );
    assert_eq!(
        r.app.say("oFast", "问 c").await.content().as_deref(),
        Some("问得有点快，歇一分钟再问吧。")
    );
    assert_eq!(
        r.app.say("oSlow", "问 d").await.content().as_deref(),
        Some("答。"),
        "per subscriber"
    );

    // The account's tokens: 160 per answer (the fake's usage), 200 a day.
    let b = story(Account::CustomerService, "daily_tokens = 200").await;
    b.ai.set_default(Script {
        usage: Some((120, 40)),
        ..Script::answer("答。")
    });
    assert_eq!(
        b.app.say("oT1", "问 一").await.content().as_deref(),
        Some("答。")
    );
    assert_eq!(
        b.app.say("oT2", "问 二").await.content().as_deref(),
        Some("答。")
    );
    assert_eq!(
        b.app.say("oT3", "问 三").await.content().as_deref(),
        Some("助教今天已经下班了，明天再来问吧。"),
        "320 tokens used of 200"
    );
    assert_eq!(b.ai.calls(), 2);
}

#[tokio::test]
async fn an_endpoint_that_fails_gives_the_rules_fallback() {
    let s = story(Account::CustomerService, "").await;
    s.ai.on(
        "500",
        Script {
            status: Some(500),
            ..Script::default()
        },
    );
    s.ai.on(
        "坏",
        Script {
            malformed_after: Some(1),
            ..Script::answer("一段被打断的回答，后面还有很多内容。")
        },
    );
    for q in ["问 500", "问 坏数据"] {
        assert_eq!(
            s.app.say("oFail", q).await.content().as_deref(),
            Some(FALLBACK),
            "{q}"
        );
    }
}

#[tokio::test]
async fn the_assistant_remembers_recent_turns_until_told_to_forget() {
    let s = story(Account::CustomerService, "").await;
    s.ai.on("第一", Script::answer("第一个回答。"));
    s.ai.on("第二", Script::answer("第二个回答。"));
    s.ai.set_default(Script::answer("其他回答。"));
    s.app.say("oMemory", "问 第一个问题").await;
    s.app.say("oMemory", "问 第二个问题").await;
    let (_, chat1) = chat(&s.ai, 1);
    assert_eq!(
        chat1,
        vec![
            ("user".to_string(), "第一个问题".to_string()),
            ("assistant".to_string(), "第一个回答。".to_string()),
            ("user".to_string(), "第二个问题".to_string()),
        ]
    );
    let cleared = s.app.say("oMemory", "清除记忆").await;
    assert_eq!(
        cleared.content().as_deref(),
        Some("好的，之前的对话我已经忘掉了。")
    );
    s.app.say("oMemory", "问 第三个问题").await;
    let (_, chat2) = chat(&s.ai, 2);
    assert_eq!(chat2, vec![("user".to_string(), "第三个问题".to_string())]);
    // Another subscriber's memory is their own.
    s.app.say("oOther", "问 你好").await;
    assert_eq!(chat(&s.ai, 3).1.len(), 1);
}

/// The real binary on `dir` (its rules and data), with the platform's API at `api_base`.
fn serve(dir: &std::path::Path, api_base: &str, ai: &FakeAi) -> crate::process::Server {
    let port = crate::process::free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let child = crate::process::binary()
        .arg("serve")
        .env("MPGATE_TOKEN", TOKEN)
        .env("MPGATE_APP_ID", APP_ID)
        .env("MPGATE_ENCODING_AES_KEY", AES_KEY)
        .env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("MPGATE_DATA_DIR", dir.join("state"))
        .env("MPGATE_KEYWORDS", dir.join("rules/keywords.toml"))
        .env("MPGATE_ADMIN_TOKEN", ADMIN)
        .env("MPGATE_APP_SECRET", APP_SECRET)
        .env("MPGATE_API_BASE", api_base)
        .env("MPGATE_ASSISTANT_API_BASE", ai.base())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mpgate starts");
    crate::process::Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn a_late_answer_queued_while_the_platform_is_down_is_delivered_after_a_restart() {
    let ai = FakeAi::start().await;
    let paragraphs: Vec<String> = (1..=2)
        .map(|n| format!("第{n}段：") + &"重启之后回答也不会丢。".repeat(50))
        .collect();
    ai.set_default(Script {
        first_delay: Duration::from_millis(800),
        ..Script::answer(&paragraphs.join("\n\n"))
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/keywords.toml"),
        keywords(&ai.base(), "", ""),
    )
    .unwrap();
    for (rel, content) in files() {
        let path = dir.path().join("rules").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    // The platform's API is unreachable: the answer waits in the outbox.
    let down = format!("http://127.0.0.1:{}", crate::process::free_port());
    let first = serve(dir.path(), &down, &ai);
    crate::process::wait_healthy(&first.base).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let s = seal_push(
        &text_xml("oRestart", "问 重启会丢回答吗", msg_id()),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let reply = client
        .post(format!("{}/wechat?{}", first.base, s.query))
        .body(s.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.text().await.unwrap(), "success");
    let queued = || async {
        let r = client
            .get(format!("{}/admin/outbox?state=pending", first.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["count"].as_u64().unwrap()
    };
    let started = Instant::now();
    while queued().await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "both parts queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut first = first;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status();
    let _ = first.child.wait();

    let platform = FakePlatform::start_for(APP_ID).await;
    let second = serve(dir.path(), &platform.base, &ai);
    crate::process::wait_healthy(&second.base).await;
    until(
        "the parts arrive after the restart",
        Duration::from_secs(15),
        || platform.delivered().len() >= 2,
    )
    .await;
    let parts: Vec<String> = platform
        .delivered()
        .iter()
        .map(|b| b["text"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(parts, paragraphs, "both parts, in order, once");
    assert_eq!(
        ai.calls(),
        1,
        "the model is not asked again after the restart"
    );
}

#[tokio::test]
async fn an_account_the_platform_refuses_customer_service_to_switches_to_holding_retries() {
    let s = story(Account::CustomerService, "").await;
    s.ai.set_default(Script {
        first_delay: Duration::from_millis(1300),
        ..Script::answer("迟到的回答。")
    });
    // An unverified 订阅号: every customer-service call is refused with 48001.
    s.platform.fail_next(50, 48001);
    let (attempt, reply) = Platform::sends(&s.app, "oUnverified", "问 第一个慢问题", msg_id())
        .await
        .unwrap();
    assert_eq!(
        (attempt, reply.is_success()),
        (1, true),
        "believed the API was there"
    );
    // The refusal is learned; this answer is kept for the continue word.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pulled = s.app.say("oUnverified", "继续").await;
    assert_eq!(pulled.content().as_deref(), Some("迟到的回答。"));
    // From now on a slow answer comes through the platform's retry.
    let (attempt, reply) = Platform::sends(&s.app, "oUnverified", "问 第二个慢问题", msg_id())
        .await
        .unwrap();
    assert_eq!(attempt, 2);
    assert_eq!(reply.content().as_deref(), Some("迟到的回答。"));
    assert_eq!(s.ai.calls(), 2);
}

/// Regression: the continue word sent while a late answer was on its way as customer-service
/// messages waited out the whole budget in a busy loop, then said "still writing".
#[tokio::test]
async fn the_continue_word_while_a_late_answer_goes_out_as_messages_is_an_ordinary_text() {
    let s = story(Account::CustomerService, "").await;
    s.ai.set_default(Script {
        first_delay: Duration::from_millis(1500),
        ..Script::answer("晚到的回答。")
    });
    let (_, reply) = Platform::sends(&s.app, "oImpatient", "问 慢问题", msg_id())
        .await
        .unwrap();
    assert!(reply.is_success());
    let started = Instant::now();
    let cont = s.app.say("oImpatient", "继续").await;
    assert!(
        cont.is_success(),
        "no rule answers 继续 here, and no answer is kept for it: {}",
        cont.raw
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "answered at once"
    );
    until(
        "the answer arrives as a message",
        Duration::from_secs(10),
        || !s.platform.delivered().is_empty(),
    )
    .await;
    assert_eq!(s.platform.delivered()[0]["text"]["content"], "晚到的回答。");
}
