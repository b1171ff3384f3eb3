//! Operators edit keywords.toml while the server runs.

use std::time::{Duration, Instant};

use crate::helpers::*;

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves like an editor that writes a temp file and renames it over the original.
fn save_by_rename(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("toml.swp~");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn an_edit_takes_effect_within_two_seconds_and_a_broken_edit_keeps_the_old_rules() {
    let app = spawn_app(Options::default()).await;
    let v0 = app
        .get("/healthz")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["rules_version"]
        .clone();
    assert_eq!(
        app.say("oOp", "hello").await.content().as_deref(),
        Some("Hello from mpgate!")
    );

    let original = std::fs::read_to_string(&app.keywords_path).unwrap();
    let edited = original.replace("Hello from mpgate!", "你好，新规则生效了！");
    save_by_rename(&app.keywords_path, &edited);
    until("the new reply", async || {
        app.say("oOp", "hello").await.content().as_deref() == Some("你好，新规则生效了！")
    })
    .await;
    let v1 = app
        .get("/healthz")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["rules_version"]
        .clone();
    assert_ne!(v0, v1, "/healthz shows the new version");

    // A typo: refused, and the last good rules keep serving.
    save_by_rename(
        &app.keywords_path,
        &edited.replace("reply = { text", "replly = { text"),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.say("oOp", "hello").await.content().as_deref(),
        Some("你好，新规则生效了！")
    );
    let v2 = app
        .get("/healthz")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["rules_version"]
        .clone();
    assert_eq!(v1, v2);

    // Fixing the file brings the new content in.
    save_by_rename(
        &app.keywords_path,
        &edited.replace("你好，新规则生效了！", "fixed"),
    );
    until("the fixed reply", async || {
        app.say("oOp", "hello").await.content().as_deref() == Some("fixed")
    })
    .await;
}

#[tokio::test]
async fn editing_a_template_file_reloads_too() {
    let app = spawn_app(Options::default()).await;
    let tpl = app
        .keywords_path
        .parent()
        .unwrap()
        .join("templates/echo.txt");
    std::fs::write(&tpl, "echoed: {{ text }}").unwrap();
    until("the template edit", async || {
        app.say("oOp2", "echo hi").await.content().as_deref() == Some("echoed: echo hi")
    })
    .await;
}

// ── a half-saved or emptied file is not a new rule set (issue 16, item 4) ──────────────────

/// What `mpgate::reload` logs at warn and above, for every app in this test binary. Installed
/// as the process's tracing subscriber by the first test that needs it (with `TEST_LOG` set,
/// the usual stderr output is kept too, unless another test installed its subscriber first).
static RELOAD_LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct ReloadLog;

impl std::io::Write for ReloadLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        RELOAD_LOG
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_reload_log() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ReloadLog)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("mpgate::reload", tracing::Level::WARN),
            );
        let stderr = std::env::var_os("TEST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
        });
        let _ = tracing_subscriber::registry()
            .with(capture)
            .with(stderr)
            .try_init();
    });
}

/// The lines `mpgate::reload` logged about the rules file at `path`.
fn reload_log_about(path: &std::path::Path) -> Vec<String> {
    let log = RELOAD_LOG.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(&path.display().to_string()))
        .map(str::to_owned)
        .collect()
}

/// Waits up to 5 s (the settle wait is ~1–1.5 s) for a refusal line about `path` that says
/// `what`; returns it.
async fn refusal_logged(path: &std::path::Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = reload_log_about(path)
            .into_iter()
            .find(|l| l.contains("refusing to reload") && l.contains(what))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal saying {what:?} logged within 5 s; logged: {:#?}",
            reload_log_about(path)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rules_version(app: &TestApp) -> String {
    app.get("/healthz")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["rules_version"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A subscriber buys rust-101 and gets the signed link the bot sends; returned as served by
/// this test server.
async fn bought_link(app: &TestApp, openid: &str) -> String {
    app.say(openid, "hello").await;
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": openid, "article": "rust-101"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let link = app
        .say(openid, "rust")
        .await
        .xml
        .expect("a news reply")
        .child("Articles")
        .and_then(|a| a.child("item"))
        .and_then(|i| i.child_text("Url"))
        .expect("the item's link")
        .to_string();
    link.replace("http://mp.test", &app.base)
}

async fn status_of(app: &TestApp, url: &str) -> u16 {
    app.client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_emptied_keywords_toml_keeps_the_live_rules_and_the_log_says_why() {
    capture_reload_log();
    let app = crate::admin::admin_app().await;
    let link = bought_link(&app, "oBuyer").await;
    assert_eq!(status_of(&app, &link).await, 200);
    let before = rules_version(&app).await;

    // `: > keywords.toml` on the running server.
    std::fs::File::create(&app.keywords_path).unwrap();
    let line = refusal_logged(&app.keywords_path, "no rules and no articles").await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("the live set has"), "{line}");
    assert!(line.contains("allow_empty = true"), "{line}");

    assert_eq!(
        app.say("oOp", "hello").await.content().as_deref(),
        Some("Hello from mpgate!")
    );
    assert_eq!(
        status_of(&app, &link).await,
        200,
        "the paid link still opens"
    );
    assert_eq!(rules_version(&app).await, before);
    let refusals = reload_log_about(&app.keywords_path)
        .iter()
        .filter(|l| l.contains("refusing to reload"))
        .count();
    assert_eq!(refusals, 1, "logged once, not every poll");
}

#[tokio::test]
async fn a_rules_file_written_in_two_halves_is_never_served_half() {
    let app = spawn_app(Options::default()).await;
    // A busy machine can stretch the pause past the settle wait, and then serving the half
    // would be right; such a round proves nothing and is done again with a new file.
    let (mut hello, mut sorry) = (
        "Hello from mpgate!".to_string(),
        "Sorry, I did not get that.".to_string(),
    );
    for round in 1..=3 {
        let v0 = rules_version(&app).await;
        let (new_hello, new_sorry) = (
            format!("Hello, round {round}!"),
            format!("Sorry, round {round}."),
        );
        let full = std::fs::read_to_string(&app.keywords_path)
            .unwrap()
            .replace(&hello, &new_hello)
            .replace(&sorry, &new_sorry);
        (hello, sorry) = (new_hello, new_sorry);
        assert!(full.contains(&hello) && full.contains(&sorry), "{full}");
        // Cut before the third rule: the first half compiles on its own (two rules, no
        // fallback).
        let cut = full.match_indices("[[rule]]").nth(2).unwrap().0;
        let (first, second) = full.split_at(cut);
        assert!(mpgate::rules::RuleSet::from_source(first, &app.keywords_path).is_ok());

        // Probe the live version all along: it may only be the old or the whole new file.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let (client, url, stop) = (app.client.clone(), app.url("/healthz"), stop.clone());
            tokio::spawn(async move {
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v: serde_json::Value =
                        client.get(&url).send().await.unwrap().json().await.unwrap();
                    seen.insert(v["rules_version"].as_str().unwrap().to_owned());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                seen
            })
        };
        // A slow upload: half, a pause shorter than the settle wait (1 s), the rest. On its
        // own thread, so the pause is what the clock says.
        let writer = {
            let (path, first, second) = (
                app.keywords_path.clone(),
                first.to_owned(),
                second.to_owned(),
            );
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(first.as_bytes()).unwrap();
                f.flush().unwrap();
                let paused = Instant::now();
                std::thread::sleep(Duration::from_millis(600));
                f.write_all(second.as_bytes()).unwrap();
                f.flush().unwrap();
                paused.elapsed()
            })
        };
        // The fallback, the last rule, is in the second half.
        until_within("the whole new file", Duration::from_secs(5), async || {
            app.say("oOp", "zzz").await.content().as_deref() == Some(sorry.as_str())
        })
        .await;
        let v1 = rules_version(&app).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = probe.await.unwrap();
        let pause = writer.join().unwrap();
        if pause >= Duration::from_millis(950) {
            eprintln!("round {round}: the pause took {pause:?}; once more");
            continue;
        }
        let expected: std::collections::BTreeSet<String> = [v0, v1].into_iter().collect();
        assert_eq!(
            seen, expected,
            "only the old and the whole new file were live"
        );
        assert_eq!(
            app.say("oOp", "hello").await.content().as_deref(),
            Some(hello.as_str())
        );
        return;
    }
    panic!("the machine was too busy to pause for less than a second, 3 rounds in a row");
}

#[tokio::test]
async fn removing_an_article_subscribers_paid_for_is_refused_until_the_file_confirms_it() {
    capture_reload_log();
    let app = crate::admin::admin_app().await;
    let link = bought_link(&app, "oPaid").await;
    let before = rules_version(&app).await;

    // The operator deletes the article and the rule that shows it.
    let without = without_rust_101(&std::fs::read_to_string(&app.keywords_path).unwrap());
    assert!(!without.contains("rust-101"), "{without}");
    save_by_rename(&app.keywords_path, &without);

    let line = refusal_logged(&app.keywords_path, "article `rust-101`").await;
    assert!(line.contains("1 subscriber holds active grants"), "{line}");
    assert!(line.contains("confirm_remove = [\"rust-101\"]"), "{line}");
    assert_eq!(
        status_of(&app, &link).await,
        200,
        "the buyer still reads it"
    );
    assert_eq!(rules_version(&app).await, before);

    // Confirmed: the article goes, and with it the link.
    save_by_rename(
        &app.keywords_path,
        &format!("[reload]\nconfirm_remove = [\"rust-101\"]\n\n{without}"),
    );
    until_within("the confirmed reload", Duration::from_secs(5), async || {
        rules_version(&app).await != before
    })
    .await;
    assert_eq!(status_of(&app, &link).await, 404);
}

async fn until_within(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rules file with the rust-101 article and the rule that shows it deleted.
fn without_rust_101(original: &str) -> String {
    let cut = |src: &str, start: &str| {
        let at = src.find(start).unwrap();
        let end = at + src[at..].find("\n\n").unwrap() + 2;
        format!("{}{}", &src[..at], &src[end..])
    };
    cut(
        &cut(original, "[[rule]]\nname = \"rust-article\""),
        "[[article]]",
    )
}

/// `mpgate check <path>` with the data dir `data`: (exit code, stdout).
fn check_with_data_dir(path: &std::path::Path, data: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mpgate"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MPGATE_DATA_DIR", data)
        .current_dir(path.parent().unwrap())
        .arg("check")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn check_warns_about_a_paid_article_the_file_drops_and_says_when_the_server_holds_the_data() {
    let app = crate::admin::admin_app().await;
    let edited = app.keywords_path.with_file_name("edited.toml");
    std::fs::write(
        &edited,
        without_rust_101(&std::fs::read_to_string(&app.keywords_path).unwrap()),
    )
    .unwrap();

    // A data dir the operator can read, where one subscriber bought rust-101.
    let data = tempfile::tempdir().unwrap();
    {
        let store =
            mpgate::store::Store::open(data.path(), mpgate::store::StoreConfig::default()).unwrap();
        store
            .grant(
                &mpgate::wechat::types::OpenId::new("oBuyer"),
                "rust-101",
                "test",
                None,
                1,
            )
            .unwrap();
    }
    let (code, out) = check_with_data_dir(&edited, data.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: article `rust-101` is not declared but 1 subscriber holds active grants for it"),
        "{out}"
    );
    assert!(out.contains("confirm_remove = [\"rust-101\"]"), "{out}");

    // The running server's data dir: check cannot read it and says so.
    let (code, out) = check_with_data_dir(&edited, &app._dirs.path().join("state"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("note: active grants not checked against the articles: the running server holds the data dir"),
        "{out}"
    );
    assert!(!out.contains("warning: article"), "{out}");

    // No data dir at all: nobody holds a grant; nothing to say, and no dir is created.
    let none = data.path().join("never-created");
    let (code, out) = check_with_data_dir(&edited, &none);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("note:") && !out.contains("warning"), "{out}");
    assert!(!none.exists());
}
