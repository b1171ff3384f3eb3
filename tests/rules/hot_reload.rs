//! The operator edits keywords.toml or a template while the server runs.

use super::*;

const V1: &str = r#"
[[rule]]
name = "hello"
when = { exact = ["hello"] }
reply = { template = "hello.txt" }
"#;

const V2: &str = r#"
[[rule]]
name = "hello-v2"
when = { exact = ["hello"] }
reply = { text = "v2" }
"#;

const BROKEN_SRC: &str = r#"
[[rule]]
name = "hello"
when = { exact = ["hello"] }
replly = { text = "typo" }
"#;

/// Rules with no data dir behind them: nobody holds a grant.
fn nobody_paid() -> std::collections::BTreeMap<String, usize> {
    Default::default()
}

fn temp_rules() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/hello.txt"), "v1 {{ openid }}").expect("write");
    let path = dir.path().join("keywords.toml");
    std::fs::write(&path, V1).expect("write");
    (dir, path)
}

#[test]
fn reload_swaps_on_success_and_keeps_old_rules_on_failure() {
    let (_dir, path) = temp_rules();
    let live = LiveRules::new(RuleSet::load(&path).expect("v1").rules);
    let v1 = live.current().version().to_string();
    assert_eq!(
        reply_text(&route(&live.current(), &text("hello"))),
        "v1 o_user_1"
    );

    std::fs::write(&path, V2).expect("write");
    let v2 = live.reload(&path, &nobody_paid()).expect("v2 loads");
    assert_ne!(v1, v2);
    assert_eq!(live.current().version(), v2);
    assert_eq!(reply_text(&route(&live.current(), &text("hello"))), "v2");

    std::fs::write(&path, BROKEN_SRC).expect("write");
    let err = live.reload(&path, &nobody_paid()).expect_err("broken");
    assert!(err.to_string().contains("unknown field `replly`"));
    assert_eq!(live.current().version(), v2);
    assert_eq!(reply_text(&route(&live.current(), &text("hello"))), "v2");
}

#[test]
fn template_edits_change_the_version() {
    let (dir, path) = temp_rules();
    let a = RuleSet::load(&path)
        .expect("loads")
        .rules
        .version()
        .to_string();
    std::fs::write(
        dir.path().join("templates/hello.txt"),
        "changed {{ openid }}",
    )
    .expect("write");
    let b = RuleSet::load(&path)
        .expect("loads")
        .rules
        .version()
        .to_string();
    assert_ne!(a, b);
}

async fn wait_for_version_change(live: &LiveRules, old: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if live.current().version() != old {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_picks_up_a_rename_save_and_ignores_broken_edits() {
    let (dir, path) = temp_rules();
    let live = LiveRules::new(RuleSet::load(&path).expect("v1").rules);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(live.clone().watch(
        path.clone(),
        Duration::from_millis(100),
        rx,
        std::sync::Arc::new(nobody_paid()),
    ));
    let v1 = live.current().version().to_string();
    // Let the watcher take its first fingerprint so the rename below is seen as a change.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Save the way vim/VS Code often do: write a new file, rename it over the old one.
    let tmp = dir.path().join(".keywords.toml.tmp");
    std::fs::write(&tmp, V2).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    assert!(
        wait_for_version_change(&live, &v1, Duration::from_secs(2)).await,
        "rename-save not picked up"
    );
    assert_eq!(reply_text(&route(&live.current(), &text("hello"))), "v2");

    // A broken save keeps the rules in force.
    let v2 = live.current().version().to_string();
    std::fs::write(&path, BROKEN_SRC).expect("write");
    assert!(!wait_for_version_change(&live, &v2, Duration::from_millis(500)).await);
    assert_eq!(reply_text(&route(&live.current(), &text("hello"))), "v2");

    // A template edit alone triggers a reload too.
    std::fs::write(&path, V1).expect("write");
    assert!(wait_for_version_change(&live, &v2, Duration::from_secs(2)).await);
    let v3 = live.current().version().to_string();
    std::fs::write(dir.path().join("templates/hello.txt"), "v3 {{ openid }}").expect("write");
    assert!(wait_for_version_change(&live, &v3, Duration::from_secs(2)).await);
    assert_eq!(
        reply_text(&route(&live.current(), &text("hello"))),
        "v3 o_user_1"
    );

    tx.send(true).expect("send");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("watch stops")
        .expect("join");
}
