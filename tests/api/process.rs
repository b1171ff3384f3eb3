//! The real binary as an operator runs it: start-up errors, graceful stop, and a crash that
//! loses no acknowledged grant.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::admin::ADMIN;
use crate::helpers::*;

pub(crate) fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mpgate"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    c
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(data: &std::path::Path, port: u16) -> Server {
    start_with(data, port, Stdio::piped())
}

/// `start`, with the server's stderr going to `stderr` (a pipe nobody reads fills up after a
/// few hundred log lines and then stalls the server's logging).
fn start_with(data: &std::path::Path, port: u16, stderr: Stdio) -> Server {
    start_with_rules(data, port, stderr, &fixture("keywords.toml"))
}

/// `start_with`, serving the rules file `keywords`.
fn start_with_rules(
    data: &std::path::Path,
    port: u16,
    stderr: Stdio,
    keywords: &std::path::Path,
) -> Server {
    let child = binary()
        .arg("serve")
        .env("MPGATE_TOKEN", TOKEN)
        .env("MPGATE_APP_ID", APP_ID)
        .env("MPGATE_ENCODING_AES_KEY", AES_KEY)
        .env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("MPGATE_DATA_DIR", data)
        .env("MPGATE_KEYWORDS", keywords)
        .env("MPGATE_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("mpgate starts");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn wait_healthy(base: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became healthy");
}

#[test]
fn a_wrong_setting_stops_start_up_with_one_clear_line() {
    let data = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("MPGATE_ENCODING_AES_KEY", "tooshort"),
        (
            "MPGATE_ENCODING_AES_KEY",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!G",
        ),
        ("MPGATE_LISTEN", "not-an-address"),
        ("MPGATE_DATA_DIR", "/proc/cannot/write/here"),
    ] {
        let out = binary()
            .arg("serve")
            .env("MPGATE_DATA_DIR", data.path())
            .env("MPGATE_KEYWORDS", fixture("keywords.toml"))
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} must stop start-up");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {var}: {err}");
        assert!(lines[0].contains(var), "{err}");
        if var.contains("KEY") {
            assert!(!err.contains(value), "the key is never echoed: {err}");
        }
    }
}

/// SIGTERM, then waits for a clean exit; returns what the server wrote to stderr.
pub(crate) async fn stop(mut server: Server) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let mut err = String::new();
    use std::io::Read;
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Lets `stream` run against the server for `after`, SIGKILLs the server mid-stream, and
/// returns what the stream got acknowledged before the kill.
async fn kill_mid_stream<T>(
    mut server: Server,
    after: Duration,
    stream: tokio::task::JoinHandle<Vec<T>>,
) -> Vec<T> {
    tokio::time::sleep(after).await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stream.await.unwrap()
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_flushes_state() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(data.path(), port);
    wait_healthy(&server.base).await;
    let err = stop(server).await;
    assert!(err.contains("state flushed"), "{err}");
}

/// Sends a sealed push to the binary and returns the decrypted reply's `Content`.
pub(crate) async fn say_sealed(client: &reqwest::Client, base: &str, xml: &str) -> String {
    let plain = sealed_reply(client, base, xml).await;
    let inner = mpgate::wechat::xml::parse(&plain).unwrap();
    inner
        .child_text("Content")
        .expect("a text reply")
        .to_string()
}

/// Sends a sealed push to the binary and returns the decrypted reply XML (what the dedupe
/// memory stores), or `None` if the request failed (the server is gone).
async fn try_sealed_reply(client: &reqwest::Client, base: &str, xml: &str) -> Option<String> {
    let s = seal_push(xml, AES_KEY, APP_ID, now(), &nonce());
    let r = client
        .post(format!("{base}/wechat?{}", s.query))
        .body(s.body)
        .send()
        .await
        .ok()?;
    assert_eq!(r.status(), 200);
    let raw = r.text().await.ok()?;
    let outer = mpgate::wechat::xml::parse(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let plain = cipher(AES_KEY)
        .decrypt(
            outer.child_text("Encrypt").expect("sealed"),
            &mpgate::wechat::types::AppId::new(APP_ID),
        )
        .unwrap();
    Some(plain)
}

async fn sealed_reply(client: &reqwest::Client, base: &str, xml: &str) -> String {
    try_sealed_reply(client, base, xml)
        .await
        .expect("the server answers")
}

#[tokio::test]
async fn a_retry_after_a_graceful_restart_gets_the_same_answer_and_no_second_handling() {
    // Answers and subscriber activity are kept in memory and written behind; a restart must
    // lose neither.
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let xml = text_xml("oRestart", "lucky", 8_000_000_000_000_000_900);
    let server = start(data.path(), free_port());
    wait_healthy(&server.base).await;
    let first = say_sealed(&client, &server.base, &xml).await;
    assert!(first.starts_with("lucky "), "{first}");
    stop(server).await;

    let server = start(data.path(), free_port());
    wait_healthy(&server.base).await;
    for _ in 0..2 {
        assert_eq!(say_sealed(&client, &server.base, &xml).await, first);
    }
    let sub: serde_json::Value = client
        .get(format!("{}/admin/subscribers/oRestart", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sub["subscriber"]["message_count"], 1, "{sub}");
    assert_eq!(
        sub["subscriber"]["tags"],
        serde_json::json!(["gambler"]),
        "{sub}"
    );
}

#[tokio::test]
async fn every_acknowledged_grant_survives_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut acked = Vec::new();
    {
        let server = start(data.path(), port);
        wait_healthy(&server.base).await;
        let base = server.base.clone();
        let stream = {
            let client = client.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..100_000u32 {
                    let openid = format!("oCrash{i}");
                    let r = client
                        .post(format!("{base}/admin/grants"))
                        .bearer_auth(ADMIN)
                        .json(&serde_json::json!({"openid": openid, "article": "rust-101", "create": true, "reference": format!("order-{i}")}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => acked.push(openid),
                        _ => break,
                    }
                }
                acked
            })
        };
        acked.extend(kill_mid_stream(server, Duration::from_millis(1500), stream).await);
    }
    assert!(
        acked.len() > 10,
        "the stream made progress before the crash: {}",
        acked.len()
    );
    let server = start(data.path(), port);
    wait_healthy(&server.base).await;
    let r: serde_json::Value = client
        .get(format!(
            "{}/admin/articles/rust-101/subscribers",
            server.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let present: std::collections::HashSet<String> = r["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["openid"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|o| !present.contains(*o)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged grants lost after SIGKILL: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Each grant created its subscriber, durably before its 200 as well.
    for openid in acked.iter().rev().take(3) {
        let r = client
            .get(format!("{}/admin/subscribers/{openid}", server.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "the subscriber of an acknowledged grant: {openid}"
        );
    }
}

#[tokio::test]
async fn started_anywhere_without_a_rules_file_it_serves_the_built_in_demo() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("data");
    let port = free_port();
    let child = binary()
        .current_dir(cwd.path())
        .arg("serve")
        .env("MPGATE_TOKEN", TOKEN)
        .env("MPGATE_APP_ID", APP_ID)
        .env("MPGATE_ENCODING_AES_KEY", AES_KEY)
        .env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("MPGATE_DATA_DIR", &data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_healthy(&server.base).await;
    let s = seal_push(
        &text_xml("oDemo", "价格", 77),
        AES_KEY,
        APP_ID,
        now(),
        &nonce(),
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = client
        .post(format!("{}/wechat?{}", server.base, s.query))
        .body(s.body.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let outer = mpgate::wechat::xml::parse(&body).unwrap();
    let plain = cipher(AES_KEY)
        .decrypt(
            outer.child_text("Encrypt").unwrap(),
            &mpgate::wechat::types::AppId::new(APP_ID),
        )
        .unwrap();
    assert!(
        plain.contains("¥"),
        "the shipped price rule answers: {plain}"
    );
    assert!(data.join("builtin-rules/keywords.toml").exists());
}

#[tokio::test]
async fn after_a_sigkill_a_retry_is_answered_from_memory_only_if_its_effects_survived_too() {
    // The write-behind step stores subscriber state changes before the answers of the same
    // period, so a crash may lose the last pushes' effects, but then their answers are lost
    // with them and the platform's retry handles them again. A retry must never get the old
    // answer while the effect ("lucky" tags the sender) is missing.
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let pushes: Vec<(String, String)> = (0..100_000u64)
        .map(|i| {
            let openid = format!("oKill{i}");
            let xml = text_xml(&openid, "lucky", 8_000_000_000_000_100_000 + i);
            (openid, xml)
        })
        .collect();
    let mut answered: Vec<(usize, String)> = Vec::new();
    {
        let server = start_with(data.path(), free_port(), Stdio::null());
        wait_healthy(&server.base).await;
        let base = server.base.clone();
        let stream = {
            let client = client.clone();
            let pushes = pushes.clone();
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for (i, (_, xml)) in pushes.iter().enumerate() {
                    match try_sealed_reply(&client, &base, xml).await {
                        Some(reply) => answered.push((i, reply)),
                        None => break,
                    }
                }
                answered
            })
        };
        // Long enough for several write-behind steps, so some answers are surely stored.
        answered.extend(kill_mid_stream(server, Duration::from_millis(1300), stream).await);
    }
    assert!(answered.len() > 20, "progress: {}", answered.len());

    // What survived, read from the data dir itself before anything else touches it.
    let tagged: Vec<bool> = {
        let store = mpgate::store::Store::open(data.path(), Default::default()).unwrap();
        answered
            .iter()
            .map(|(i, _)| {
                store
                    .subscriber(&mpgate::wechat::types::OpenId::new(pushes[*i].0.clone()))
                    .unwrap()
                    .is_some_and(|s| s.tags.iter().any(|t| t == "gambler"))
            })
            .collect()
    };
    // A push handled again gets a later CreateTime than any first answer.
    let last_second = now();
    while now() == last_second {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let server = start_with(data.path(), free_port(), Stdio::null());
    wait_healthy(&server.base).await;
    let mut from_memory = 0;
    for ((i, first), had_effect) in answered.iter().zip(&tagged) {
        let again = sealed_reply(&client, &server.base, &pushes[*i].1).await;
        if again == *first {
            from_memory += 1;
            assert!(
                had_effect,
                "push {i} was answered from memory after the crash, but its tag was lost"
            );
        }
    }
    assert!(
        from_memory > 0,
        "no answer survived the crash ({} answered), so nothing was checked",
        answered.len()
    );
}

// ── operator commands (`mpgate grant|subscriber|stats|…`) ──────────────────────────────────

/// `mpgate <args>` as an operator runs it on the host of the data dir `data`.
pub(crate) fn operator(
    data: &std::path::Path,
    keywords: &std::path::Path,
    args: &[&str],
) -> Command {
    let mut c = binary();
    c.args(args)
        .env("MPGATE_TOKEN", TOKEN)
        .env("MPGATE_APP_ID", APP_ID)
        .env("MPGATE_ENCODING_AES_KEY", AES_KEY)
        .env("MPGATE_DATA_DIR", data)
        .env("MPGATE_KEYWORDS", keywords);
    c
}

/// What a finished command printed: (success, stdout, stderr).
pub(crate) fn run(mut c: Command) -> (bool, String, String) {
    let out = c.output().expect("mpgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The defect: `mpgate grant` granted to any openid while the API refused unknown ones.
#[test]
fn cli_grant_refuses_an_unknown_openid_unless_told_to_create_it() {
    let data = tempfile::tempdir().unwrap();
    let kw = fixture("keywords.toml");
    let grant = ["grant", "--openid", "oCliGift", "--article", "rust-101"];

    let (ok, _, err) = run(operator(data.path(), &kw, &grant));
    assert!(!ok, "an unknown openid is refused");
    assert!(err.contains("unknown subscriber"), "{err}");
    assert!(err.contains("--create"), "says how to go on: {err}");
    let (ok, _, _) = run(operator(data.path(), &kw, &["subscriber", "oCliGift"]));
    assert!(!ok, "the refusal created nothing");

    let (ok, out, err) = run(operator(
        data.path(),
        &kw,
        &[&grant[..], &["--create"]].concat(),
    ));
    assert!(ok, "{err}");
    assert!(out.starts_with("granted:"), "{out}");
    let (ok, out, err) = run(operator(data.path(), &kw, &["subscriber", "oCliGift"]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["subscriber"]["created_by_operator"], true);
    assert_eq!(v["entitlements"][0]["article"], "rust-101");
    // Known now: a second grant needs no `--create`.
    let (ok, out, err) = run(operator(data.path(), &kw, &grant));
    assert!(ok, "{err}");
    assert!(out.starts_with("already granted"), "{out}");
}

/// A copy of the test rules in `dir`, in the time zone `tz`.
fn rules_in_zone(dir: &std::path::Path, tz: &str) -> std::path::PathBuf {
    let src = std::fs::read_to_string(fixture("keywords.toml")).unwrap();
    assert!(src.contains("timezone = \"Asia/Shanghai\""));
    let path = dir.join("keywords.toml");
    std::fs::write(
        &path,
        src.replace(
            "timezone = \"Asia/Shanghai\"",
            &format!("timezone = \"{tz}\""),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    for entry in std::fs::read_dir(fixture("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("templates").join(entry.file_name())).unwrap();
    }
    path
}

/// The defect: `mpgate stats` without dates ended on the UTC day, while counters are kept by
/// the account's date, so the account's "today" was missing half the time.
#[tokio::test]
async fn stats_without_dates_uses_the_account_day() {
    // A zone whose date differs from UTC's right now: UTC+14 from 10:00 UTC, UTC-12 before noon.
    let utc = chrono::Utc::now();
    let (tz, offset) = if chrono::Timelike::hour(&utc) >= 12 {
        ("Etc/GMT-14", chrono::Duration::hours(14))
    } else {
        ("Etc/GMT+12", chrono::Duration::hours(-12))
    };
    let account_today = (utc + offset).date_naive().to_string();
    assert_ne!(account_today, utc.date_naive().to_string());
    let rules_dir = tempfile::tempdir().unwrap();
    let kw = rules_in_zone(rules_dir.path(), tz);
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_with_rules(data.path(), port, Stdio::piped(), &kw);
    wait_healthy(&server.base).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    say_sealed(&client, &server.base, &text_xml("oTz", "hello", 4242)).await;
    stop(server).await;

    let (ok, out, err) = run(operator(data.path(), &kw, &["stats"]));
    assert!(ok, "{err}");
    let days: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        days[&account_today]["rule:hello"], 1,
        "the account's today is in the default range: {out}"
    );
}

/// The defect: `mpgate outbox` and `mpgate handoffs` (like grant, revoke, subscriber and stats)
/// refused to run while the server held the data dir, though the README shows
/// `mpgate outbox --state failed` as the way to see failures. With the admin token they now go
/// through the running server and print what the direct path prints.
#[tokio::test]
async fn operator_commands_work_against_a_running_server_through_its_admin_api() {
    let data = tempfile::tempdir().unwrap();
    let kw = fixture("keywords.toml");
    let port = free_port();
    let server = start(data.path(), port);
    wait_healthy(&server.base).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    say_sealed(&client, &server.base, &text_xml("oRunning", "hello", 5151)).await;
    let remote = |args: &[&str]| {
        let mut c = operator(data.path(), &kw, args);
        c.env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("MPGATE_ADMIN_TOKEN", ADMIN);
        run(c)
    };

    // Without the token: refused, saying what to do.
    let (ok, _, err) = run(operator(data.path(), &kw, &["outbox", "--state", "failed"]));
    assert!(!ok);
    assert!(err.contains("MPGATE_ADMIN_TOKEN"), "{err}");

    let (ok, out, err) = remote(&["outbox", "--state", "failed"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]");
    let (ok, out, err) = remote(&["handoffs"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "no open or queued handoffs");
    let (ok, _, err) = remote(&["handoffs", "--close", "oRunning"]);
    assert!(!ok);
    assert!(err.contains("no open or queued handoff"), "{err}");

    let grant = ["grant", "--openid", "oRemote", "--article", "rust-101"];
    let (ok, _, err) = remote(&grant);
    assert!(
        !ok,
        "the same rule as the API: unknown openids need --create"
    );
    assert!(
        err.contains("unknown subscriber") && err.contains("--create"),
        "{err}"
    );
    let (ok, out, err) = remote(&[&grant[..], &["--create"]].concat());
    assert!(ok, "{err}");
    assert!(out.starts_with("granted:"), "{out}");
    let (ok, remote_subscriber, err) = remote(&["subscriber", "oRemote"]);
    assert!(ok, "{err}");
    let (ok, out, err) = remote(&["revoke", "--openid", "oRemote", "--article", "rust-101"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("revoked:"), "{out}");
    let (ok, remote_stats, err) = remote(&["stats"]);
    assert!(ok, "{err}");
    let (ok, _, err) = remote(&["subscriber", "oNobody"]);
    assert!(!ok);
    assert!(err.contains("no subscriber"), "{err}");

    // The same commands on the data dir itself, once the server is gone, print the same.
    stop(server).await;
    let direct = |args: &[&str]| run(operator(data.path(), &kw, args));
    let (ok, direct_stats, err) = direct(&["stats"]);
    assert!(ok, "{err}");
    assert_eq!(remote_stats, direct_stats);
    assert!(direct_stats.contains("\"rule:hello\": 1"), "{direct_stats}");
    let (ok, after_revoke, err) = direct(&["subscriber", "oRemote"]);
    assert!(ok, "{err}");
    let before: serde_json::Value = serde_json::from_str(&remote_subscriber).unwrap();
    let after: serde_json::Value = serde_json::from_str(&after_revoke).unwrap();
    assert_eq!(before["subscriber"], after["subscriber"]);
    assert_eq!(
        before["entitlements"][0]["granted_at"],
        after["entitlements"][0]["granted_at"]
    );
    let (ok, direct_outbox, err) = direct(&["outbox", "--state", "failed"]);
    assert!(ok, "{err}");
    assert_eq!(direct_outbox.trim(), "[]");
}
