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
