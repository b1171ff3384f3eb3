//! Hot reload of `keywords.toml` and the templates dir: the only module that watches files.
//!
//! [`LiveRules`] holds the current [`RuleSet`] behind an `ArcSwap`: routing threads read it
//! lock-free, and a reload validates the whole file and every template first, then swaps
//! atomically; a failed reload keeps the old rules and is logged once.
//!
//! A file that compiles is still refused when it would drop what the operator did not mean to
//! drop (an emptied or truncated file, an article subscribers paid for): see
//! [`RuleSet::unconfirmed_drops`]. The facts about grants come from the state through the narrow
//! [`ActiveGrants`]; this module never opens a store.
//!
//! [`LiveRules::watch`] polls on purpose (no extra crate): every tick it takes a cheap fingerprint
//! (mtime, size, inode) of keywords.toml and every file under the templates dir. Polling survives
//! editors that save by writing a new file and renaming it over the old one (the inode changes),
//! which event-based watchers often lose track of. A change is loaded only once the fingerprint
//! has stayed the same for [`SETTLE_POLLS`] more polls and at least [`SETTLE_FOR`] by the reads'
//! own clock, so a file caught mid-save (or missing for a moment between delete and create) is
//! never served.
//!
//! One task reloads: the watcher. Other triggers (SIGHUP) only ask it, through
//! [`ReloadRequests`], so reloads never run concurrently and each reads the file as it is when it
//! runs; two reloaders side by side could swap an older file in after a newer one. May depend on:
//! [`crate::rules`], [`crate::render`], [`crate::store`] (only to implement [`ActiveGrants`]),
//! arc-swap, tokio, tracing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::render::template_files;
use crate::rules::{ConfigErrors, RuleSet, UnconfirmedDrop};

/// How many polls after the one that saw a change must see the very same fingerprint before
/// the change is loaded. Editors that write in place and uploads leave a file half-written
/// for a moment, and a half file can compile (cut between two rules) or be empty; like
/// vector's wait for a file to settle, we load only what has stopped changing. At the server's
/// 500 ms interval three polls 1 s apart end to end have seen the same files, and an edit is
/// live within about 2 s (see [`SETTLE_FOR`]). SIGHUP does not wait: the operator says the file is ready.
pub const SETTLE_POLLS: u32 = 2;

/// How long, at least, the same fingerprint must have been read before a change loads,
/// measured between the reads themselves. Counting polls alone is not enough: the reads run on
/// the blocking pool, and on a busy machine one can run late and the next on time, so three
/// reads 500 ms apart by the timer can span less than 600 ms (seen once by the two-halves
/// test under load, with a half file served).
pub const SETTLE_FOR: Duration = Duration::from_secs(1);

/// When one poll read the files: just before the read began and just after it ended. The wait
/// is measured from the end of the first read that saw a fingerprint to the start of the
/// current one, so it never comes out longer than the files really stood still.
#[derive(Clone, Copy, Debug)]
struct ReadAt {
    started: Instant,
    done: Instant,
}

/// The live rules, shared by every request; cheap to clone.
#[derive(Clone)]
pub struct LiveRules {
    inner: Arc<ArcSwap<RuleSet>>,
    /// Reloads since start, for the metrics: swapped in, and kept out.
    reloaded: Arc<[std::sync::atomic::AtomicU64; 2]>,
}

/// How many reloads swapped new rules in (`ok`, the live rules' generation) and how many kept
/// the old ones (`failed`: invalid or refused) since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
}

impl std::fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRules")
            .field("version", &self.current().version())
            .finish()
    }
}

/// What the reload guard asks the state: active grants per article id (articles without any
/// may be absent). The server passes its store.
pub trait ActiveGrants: Send + Sync {
    /// The counts, or why they cannot be read.
    fn active_grants(&self) -> Result<BTreeMap<String, usize>, String>;
}

impl ActiveGrants for crate::store::Store {
    fn active_grants(&self) -> Result<BTreeMap<String, usize>, String> {
        self.articles_with_active_grants()
            .map_err(|e| e.to_string())
    }
}

/// Known counts: tests, and a rules file with no data dir behind it (an empty map: nobody can
/// hold a grant).
impl ActiveGrants for BTreeMap<String, usize> {
    fn active_grants(&self) -> Result<BTreeMap<String, usize>, String> {
        Ok(self.clone())
    }
}

/// Why a reload kept the live rules.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file or a template does not compile.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    /// It compiles, but would drop what its `[reload]` table does not confirm.
    #[error("{}", refusal(.0))]
    Refused(Vec<UnconfirmedDrop>),
    /// It stops declaring an article, and whether subscribers hold grants for it is unknown.
    #[error("refusing to reload: cannot tell whether the removed articles have active grants ({0}); keeping the live rules")]
    GrantsUnknown(String),
}

/// One sentence: what would be dropped, that the live rules stay, and how to confirm.
fn refusal(drops: &[UnconfirmedDrop]) -> String {
    let what: Vec<String> = drops.iter().map(ToString::to_string).collect();
    let how: Vec<String> = drops.iter().map(UnconfirmedDrop::hint).collect();
    format!(
        "refusing to reload: {}; keeping the live rules ({})",
        what.join("; "),
        how.join("; ")
    )
}

/// Asks the watcher ([`LiveRules::watch_with_requests`]) to reload now, whatever the files'
/// fingerprints say (SIGHUP). Cheap to clone. Requests made while a reload runs are served by
/// one more reload after it, which reads the file as it is then.
#[derive(Clone, Debug, Default)]
pub struct ReloadRequests(Arc<tokio::sync::Notify>);

impl ReloadRequests {
    pub fn new() -> ReloadRequests {
        ReloadRequests::default()
    }

    /// Asks for a reload; returns at once.
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// One file's identity for change detection.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The watched files at one instant; `main` is `None` when keywords.toml is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    main: Option<FileStamp>,
    templates: Vec<FileStamp>,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let md = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&md);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        path: path.to_path_buf(),
        modified: md.modified().ok(),
        len: md.len(),
        inode,
    })
}

fn fingerprint(path: &Path, templates_dir: &Path) -> Fingerprint {
    Fingerprint {
        main: stamp(path),
        templates: template_files(templates_dir)
            .iter()
            .filter_map(|p| stamp(p))
            .collect(),
    }
}

/// The watcher's view of the files: what is live, and a change waiting to settle.
#[derive(Debug, Default)]
struct Settling {
    /// The fingerprint of the files last loaded (or refused); `None` forces a look.
    loaded: Option<Fingerprint>,
    /// A changed fingerprint, how many polls since it was first seen have seen it again, and
    /// when the first read that saw it ended.
    pending: Option<(Fingerprint, u32, Instant)>,
}

impl Settling {
    /// Takes one poll's fingerprint; true when it is a change that has settled and should be
    /// loaded now.
    fn settled(&mut self, fp: Fingerprint, at: ReadAt, polls: u32, still_for: Duration) -> bool {
        if self.loaded.as_ref() == Some(&fp) {
            self.pending = None;
            return false;
        }
        match &mut self.pending {
            Some((seen, n, since)) if *seen == fp => {
                *n += 1;
                if *n < polls || at.started.saturating_duration_since(*since) < still_for {
                    return false;
                }
            }
            _ => {
                self.pending = Some((fp, 0, at.done));
                return polls == 0 && still_for.is_zero() && self.take();
            }
        }
        self.take()
    }

    /// The pending change becomes the loaded one.
    fn take(&mut self) -> bool {
        match self.pending.take() {
            Some((fp, ..)) => {
                self.loaded = Some(fp);
                true
            }
            None => false,
        }
    }
}

impl LiveRules {
    pub fn new(rules: RuleSet) -> Self {
        LiveRules {
            inner: Arc::new(ArcSwap::from_pointee(rules)),
            reloaded: Arc::default(),
        }
    }

    /// Reloads since start (by the watcher, SIGHUP or [`LiveRules::reload`]).
    pub fn reloads(&self) -> ReloadCounts {
        use std::sync::atomic::Ordering::Relaxed;
        ReloadCounts {
            ok: self.reloaded[0].load(Relaxed),
            failed: self.reloaded[1].load(Relaxed),
        }
    }

    /// The rules in force right now (a cheap, lock-free snapshot).
    pub fn current(&self) -> arc_swap::Guard<Arc<RuleSet>> {
        self.inner.load()
    }

    /// Owned handle to the current rules, for holding across awaits.
    pub fn load_full(&self) -> Arc<RuleSet> {
        self.inner.load_full()
    }

    /// Validates `path` and its templates, checks what the swap would drop against `grants`,
    /// then swaps them in; returns the new version. On failure or refusal the old rules stay
    /// live and the reason is logged once, here.
    pub fn reload(&self, path: &Path, grants: &dyn ActiveGrants) -> Result<String, ReloadError> {
        let res = self.try_reload(path, grants);
        if let Err(e) = &res {
            log_failure(path, e);
        }
        res
    }

    fn try_reload(&self, path: &Path, grants: &dyn ActiveGrants) -> Result<String, ReloadError> {
        let res = self.swap_in(path, grants);
        self.reloaded[usize::from(res.is_err())].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        res
    }

    fn swap_in(&self, path: &Path, grants: &dyn ActiveGrants) -> Result<String, ReloadError> {
        let loaded = RuleSet::load(path)?;
        let live = self.load_full();
        // The store is asked only when an article the file does not confirm would go.
        let confirmed = &loaded.rules.reload_confirms().confirm_remove;
        let facts = if loaded
            .rules
            .removed_articles(&live)
            .any(|id| !confirmed.iter().any(|c| c == id))
        {
            grants.active_grants().map_err(ReloadError::GrantsUnknown)?
        } else {
            BTreeMap::new()
        };
        let drops = loaded.rules.unconfirmed_drops(Some(&live), &facts);
        if !drops.is_empty() {
            return Err(ReloadError::Refused(drops));
        }
        for w in &loaded.warnings {
            tracing::warn!(diagnostic = %w, "rules warning");
        }
        let version = loaded.rules.version().to_string();
        self.inner.store(Arc::new(loaded.rules));
        tracing::info!(version = %version, path = %path.display(), "rules reloaded");
        Ok(version)
    }

    /// Polls `path` and the templates dir every `interval` and reloads on a settled change
    /// until `shutdown` turns true (or its sender is dropped); `grants` guards what a reload
    /// may drop.
    pub async fn watch(
        self,
        path: PathBuf,
        interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
        grants: Arc<dyn ActiveGrants>,
    ) {
        self.watch_with_requests(path, interval, shutdown, ReloadRequests::new(), grants)
            .await
    }

    /// [`LiveRules::watch`], also reloading at once whenever `requests` asks: the one reloader
    /// of the server (see the module doc).
    pub async fn watch_with_requests(
        self,
        path: PathBuf,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        requests: ReloadRequests,
        grants: Arc<dyn ActiveGrants>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut files = Settling {
            loaded: Some(fingerprint(&path, self.current().templates_dir())),
            pending: None,
        };
        // Files may have changed between the initial load and this first fingerprint: treat
        // them as a change (it settles like any other).
        if self.current().is_stale() {
            files.loaded = None;
        }
        {
            let (me, g) = (self.clone(), grants.clone());
            let _ = tokio::task::spawn_blocking(move || me.warn_at_start(&*g)).await;
        }
        // The diagnostics last logged, so a broken edit is reported once, not every tick.
        let mut last_failure: Option<String> = None;
        loop {
            let requested = tokio::select! {
                _ = tick.tick() => false,
                _ = requests.0.notified() => true,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            };
            let tdir = self.current().templates_dir().to_path_buf();
            let (fp, at) = {
                let (p, t) = (path.clone(), tdir.clone());
                let read = move || {
                    let started = Instant::now();
                    let fp = fingerprint(&p, &t);
                    let done = Instant::now();
                    (fp, ReadAt { started, done })
                };
                match tokio::task::spawn_blocking(read).await {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            };
            if requested {
                tracing::info!("reload requested");
                files.loaded = Some(fp);
                files.pending = None;
            } else if !files.settled(fp, at, SETTLE_POLLS, SETTLE_FOR) {
                continue;
            }
            let (me, p, g) = (self.clone(), path.clone(), grants.clone());
            let res = match tokio::task::spawn_blocking(move || me.try_reload(&p, &*g)).await {
                Ok(r) => r,
                Err(_) => continue,
            };
            match res {
                Ok(_) => last_failure = None,
                Err(e) => {
                    let text = e.to_string();
                    // An operator who asked for the reload hears about its failure every time.
                    if requested || last_failure.as_deref() != Some(text.as_str()) {
                        log_failure(&path, &e);
                        last_failure = Some(text);
                    }
                }
            }
            // A reload may have moved the templates dir; fingerprint what is now watched.
            let new_tdir = self.current().templates_dir().to_path_buf();
            if new_tdir != tdir {
                files.loaded = Some(fingerprint(&path, &new_tdir));
            }
        }
    }

    /// Start-up loading is not a reload: an empty file, or one that no longer declares an
    /// article subscribers paid for, is the operator's choice then, but it is said once.
    fn warn_at_start(&self, grants: &dyn ActiveGrants) {
        let live = self.load_full();
        let facts = match grants.active_grants() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active grants to check the rules against");
                BTreeMap::new()
            }
        };
        for d in live.unconfirmed_drops(None, &facts) {
            tracing::warn!(path = %live.source_path().display(), "serving rules where {d}");
        }
    }
}

fn log_failure(path: &Path, e: &ReloadError) {
    match e {
        ReloadError::Invalid(e) => tracing::error!(
            path = %path.display(),
            errors = e.0.len(),
            diagnostics = %e,
            "rules reload failed; keeping the previous rules"
        ),
        refused => tracing::error!(path = %path.display(), "{refused}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[rule]]
name = "hello"
when = { exact = ["hello"] }
reply = { text = "REPLY" }
"#;

    fn rules(n: usize) -> String {
        RULES.replace("REPLY", &format!("v{n}"))
    }

    /// Waits (up to 2 s) until the live rules are no longer version `from`.
    async fn until_reloaded(live: &LiveRules, from: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while live.current().version() == from {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn save_by_rename(path: &Path, content: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    /// The defect: SIGHUP reloaded on a runtime worker while the watcher reloaded on a
    /// blocking thread, unordered, so an older file could be swapped in after a newer one.
    /// Here a SIGHUP and a save land together, round after round; the newest file must win
    /// every round and stay. (With the SIGHUP reloading on its own thread, as before, this
    /// failed 3 runs out of 3, in rounds 8 to 19.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sighup_and_the_watcher_reload_in_order_so_the_newest_file_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        // Many templates make each reload take a while (every one is read and compiled), so
        // reloads running side by side would overlap and finish out of order.
        for i in 0..300 {
            std::fs::write(
                dir.path().join(format!("templates/t{i}.txt")),
                "{% for x in items %}{{ x }} {{ openid }}{% endfor %}\n".repeat(40),
            )
            .expect("write a template");
        }
        let path = dir.path().join("keywords.toml");
        std::fs::write(&path, rules(0)).expect("write");
        let live = LiveRules::new(RuleSet::load(&path).expect("v0").rules);
        let requests = ReloadRequests::new();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(live.clone().watch_with_requests(
            path.clone(),
            Duration::from_millis(5),
            rx,
            requests.clone(),
            Arc::new(BTreeMap::new()),
        ));
        // Each round: a SIGHUP, then at once a save (a slow reload of the previous file is
        // under way while the file changes). Two reloaders side by side let the SIGHUP's reload
        // of the older file finish last; one reloader reloads again after it.
        for n in 1..=20 {
            requests.request();
            tokio::time::sleep(Duration::from_millis(1)).await;
            save_by_rename(&path, &rules(n));
            let newest = RuleSet::load(&path)
                .expect("newest")
                .rules
                .version()
                .to_string();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while live.current().version() != newest {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {n}: the newest file was never loaded"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Any reload still running read this file or an older one; an older one
            // finishing late would show here.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                assert_eq!(
                    live.current().version(),
                    newest,
                    "round {n}: an older file came back"
                );
            }
        }
        tx.send(true).expect("stop");
        task.await.expect("watcher stops");
    }

    #[tokio::test]
    async fn a_requested_reload_reads_the_file_without_waiting_for_the_poll() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        let path = dir.path().join("keywords.toml");
        std::fs::write(&path, rules(1)).expect("write");
        let live = LiveRules::new(RuleSet::load(&path).expect("v1").rules);
        let requests = ReloadRequests::new();
        let (tx, rx) = tokio::sync::watch::channel(false);
        // A poll interval far beyond the test: only the request can reload.
        let task = tokio::spawn(live.clone().watch_with_requests(
            path.clone(),
            Duration::from_secs(3_600),
            rx,
            requests.clone(),
            Arc::new(BTreeMap::new()),
        ));
        let old = live.current().version().to_string();
        // The first tick fires at once; let it pass before the edit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        save_by_rename(&path, &rules(2));
        requests.request();
        until_reloaded(&live, &old, "the request did not reload").await;
        assert_eq!(
            live.current().version(),
            RuleSet::load(&path).expect("v2").rules.version()
        );
        tx.send(true).expect("stop");
        task.await.expect("watcher stops");
    }

    // ── the guard ────────────────────────────────────────────────────────────

    const PAID: &str = r#"
[[rule]]
name = "hello"
when = { exact = ["hello"] }
reply = { text = "hi" }

[[rule]]
name = "rust"
when = { exact = ["rust"] }
article = "rust-101"

[[article]]
id = "rust-101"
title = "Rust 101"
body_url = "https://example.com/rust-101"
"#;

    /// PAID without the article (and the rule that shows it).
    const UNPAID: &str = r#"
[[rule]]
name = "hello"
when = { exact = ["hello"] }
reply = { text = "hi" }
"#;

    fn live_from(src: &str) -> (tempfile::TempDir, PathBuf, LiveRules) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        let path = dir.path().join("keywords.toml");
        std::fs::write(&path, src).expect("write");
        let live = LiveRules::new(RuleSet::load(&path).expect("loads").rules);
        (dir, path, live)
    }

    fn grants(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    struct Unreadable;
    impl ActiveGrants for Unreadable {
        fn active_grants(&self) -> Result<BTreeMap<String, usize>, String> {
            Err("disk says no".into())
        }
    }

    #[test]
    fn reloads_are_counted_by_result_and_a_refusal_is_not_a_new_generation() {
        let (_dir, path, live) = live_from(PAID);
        assert_eq!(live.reloads(), ReloadCounts { ok: 0, failed: 0 });
        std::fs::write(&path, PAID.replace("name = \"", "name = \"v2-")).expect("write");
        live.reload(&path, &grants(&[]))
            .expect("renamed rules load");
        std::fs::write(&path, "").expect("write");
        live.reload(&path, &grants(&[]))
            .expect_err("emptied: refused");
        std::fs::write(&path, "[[rule]\n").expect("write");
        live.reload(&path, &grants(&[]))
            .expect_err("broken: invalid");
        assert_eq!(live.reloads(), ReloadCounts { ok: 1, failed: 2 });
        assert_eq!(
            live.clone().reloads(),
            live.reloads(),
            "clones share the counts"
        );
    }

    #[test]
    fn an_emptied_rules_file_is_refused_and_the_live_rules_stay() {
        let (_dir, path, live) = live_from(PAID);
        let before = live.current().version().to_string();
        for empty in [
            "",
            "\n",
            "# all rules removed\n[account]\ntimezone = \"Asia/Shanghai\"\n",
        ] {
            std::fs::write(&path, empty).expect("write");
            let err = live.reload(&path, &grants(&[])).expect_err("refused");
            let text = err.to_string();
            assert!(
                matches!(&err, ReloadError::Refused(d) if d == &[UnconfirmedDrop::Everything { live_rules: 2, live_articles: 1 }]),
                "{err:?}"
            );
            assert!(text.starts_with("refusing to reload: "), "{text}");
            assert!(
                text.contains("the live set has 2 rules and 1 article"),
                "{text}"
            );
            assert!(text.contains("allow_empty = true"), "{text}");
            assert_eq!(live.current().version(), before);
        }
    }

    #[test]
    fn allow_empty_lets_an_empty_file_replace_the_rules() {
        let (_dir, path, live) = live_from(UNPAID);
        std::fs::write(&path, "[reload]\nallow_empty = true\n").expect("write");
        live.reload(&path, &grants(&[])).expect("confirmed");
        assert!(live.current().is_empty());
        // Once empty, an empty file drops nothing: it reloads without the marker.
        std::fs::write(&path, "").expect("write");
        live.reload(&path, &grants(&[])).expect("nothing to drop");
    }

    #[test]
    fn dropping_an_article_with_active_grants_is_refused_naming_it() {
        let (_dir, path, live) = live_from(PAID);
        let before = live.current().version().to_string();
        std::fs::write(&path, UNPAID).expect("write");
        let err = live
            .reload(&path, &grants(&[("rust-101", 3), ("other", 1)]))
            .expect_err("refused");
        assert!(
            matches!(&err, ReloadError::Refused(d) if d == &[UnconfirmedDrop::Article { id: "rust-101".into(), active_grants: 3 }]),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("article `rust-101`"), "{text}");
        assert!(text.contains("confirm_remove = [\"rust-101\"]"), "{text}");
        assert_eq!(live.current().version(), before);
        assert!(live.current().article("rust-101").is_some());
    }

    #[test]
    fn confirm_remove_lets_a_paid_article_go() {
        let (_dir, path, live) = live_from(PAID);
        std::fs::write(
            &path,
            format!("[reload]\nconfirm_remove = [\"rust-101\"]\n{UNPAID}"),
        )
        .expect("write");
        // Confirmed: the store is not even asked.
        live.reload(&path, &Unreadable).expect("confirmed");
        assert!(live.current().article("rust-101").is_none());
    }

    #[test]
    fn an_article_nobody_holds_a_grant_for_may_go_without_confirmation() {
        let (_dir, path, live) = live_from(PAID);
        std::fs::write(&path, UNPAID).expect("write");
        live.reload(&path, &grants(&[("other", 4)]))
            .expect("nothing paid is lost");
        assert!(live.current().article("rust-101").is_none());
    }

    #[test]
    fn when_the_grants_cannot_be_read_an_article_is_not_dropped() {
        let (_dir, path, live) = live_from(PAID);
        std::fs::write(&path, UNPAID).expect("write");
        let err = live.reload(&path, &Unreadable).expect_err("refused");
        assert!(matches!(err, ReloadError::GrantsUnknown(_)), "{err:?}");
        assert!(live.current().article("rust-101").is_some());
        // Edits that keep every article do not need the grants.
        std::fs::write(&path, PAID.replace("\"hi\"", "\"hello!\"")).expect("write");
        live.reload(&path, &Unreadable).expect("no article goes");
    }

    /// SIGHUP skips the settle wait, not the guard.
    #[tokio::test]
    async fn a_requested_reload_of_an_emptied_file_is_refused_too() {
        let (_dir, path, live) = live_from(PAID);
        let before = live.current().version().to_string();
        let requests = ReloadRequests::new();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(live.clone().watch_with_requests(
            path.clone(),
            Duration::from_secs(3_600),
            rx,
            requests.clone(),
            Arc::new(grants(&[])),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&path, "").expect("truncate");
        requests.request();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            live.current().version(),
            before,
            "the empty file was refused"
        );
        // A good edit asked for the same way loads: the watcher was listening all along.
        std::fs::write(&path, PAID.replace("\"hi\"", "\"hey\"")).expect("write");
        requests.request();
        until_reloaded(&live, &before, "the good edit did not load").await;
        assert!(!live.current().is_empty());
        tx.send(true).expect("stop");
        task.await.expect("watcher stops");
    }

    // ── settling ─────────────────────────────────────────────────────────────

    fn fp(len: u64) -> Fingerprint {
        Fingerprint {
            main: Some(FileStamp {
                path: PathBuf::from("keywords.toml"),
                modified: None,
                len,
                inode: 1,
            }),
            templates: Vec::new(),
        }
    }

    #[test]
    fn a_change_loads_only_after_it_stays_the_same_for_the_settle_polls() {
        let base = Instant::now();
        let at = |ms: u64| ReadAt {
            started: base + Duration::from_millis(ms),
            done: base + Duration::from_millis(ms + 1),
        };
        let settled = |files: &mut Settling, fp, ms| files.settled(fp, at(ms), 2, SETTLE_FOR);
        let mut files = Settling {
            loaded: Some(fp(10)),
            pending: None,
        };
        assert!(!settled(&mut files, fp(10), 0), "no change");
        assert!(!settled(&mut files, fp(5), 500), "first sight of a change");
        assert!(!settled(&mut files, fp(5), 1000), "one poll still");
        // The rest of the file arrives: the wait starts over.
        assert!(!settled(&mut files, fp(20), 1500));
        assert!(!settled(&mut files, fp(20), 2000));
        assert!(
            settled(&mut files, fp(20), 2501),
            "two polls and 1 s still: load"
        );
        assert_eq!(files.loaded, Some(fp(20)));
        assert!(!settled(&mut files, fp(20), 3000), "loaded once");
        // A change that reverts before settling loads nothing.
        assert!(!settled(&mut files, fp(7), 3500));
        assert!(!settled(&mut files, fp(20), 4000));
        assert!(files.pending.is_none());
    }

    #[test]
    fn polls_that_ran_late_and_then_on_time_do_not_shorten_the_settle_wait() {
        // Regression (the two-halves test, once, under load): three reads of a half file 500 ms
        // apart by the timer, the first run late on the blocking pool, spanned ~550 ms, and the
        // half was loaded as if it had stood still for a second.
        let base = Instant::now();
        let at = |ms: u64| ReadAt {
            started: base + Duration::from_millis(ms),
            done: base + Duration::from_millis(ms + 1),
        };
        let mut files = Settling {
            loaded: Some(fp(10)),
            pending: None,
        };
        assert!(!files.settled(fp(5), at(450), 2, SETTLE_FOR));
        assert!(!files.settled(fp(5), at(510), 2, SETTLE_FOR));
        assert!(
            !files.settled(fp(5), at(1005), 2, SETTLE_FOR),
            "three polls, but only 554 ms still"
        );
        assert!(
            files.settled(fp(5), at(1505), 2, SETTLE_FOR),
            "now 1 s still"
        );
    }
}
