//! Hot reload of `keywords.toml` and the templates dir: the only module that watches files.
//!
//! [`LiveRules`] holds the current [`RuleSet`] behind an `ArcSwap`: routing threads read it
//! lock-free, and a reload validates the whole file and every template first, then swaps
//! atomically; a failed reload keeps the old rules and is logged once.
//!
//! [`LiveRules::watch`] polls on purpose (no extra crate): every tick it takes a cheap fingerprint
//! (mtime, size, inode) of keywords.toml and every file under the templates dir. Polling survives
//! editors that save by writing a new file and renaming it over the old one (the inode changes),
//! which event-based watchers often lose track of. A rules file that is briefly missing mid-save is
//! ignored for one tick. May depend on: [`crate::rules`], [`crate::render`], arc-swap, tokio, tracing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::render::template_files;
use crate::rules::{ConfigErrors, RuleSet};

/// The live rules, shared by every request; cheap to clone.
#[derive(Clone)]
pub struct LiveRules {
    inner: Arc<ArcSwap<RuleSet>>,
}

impl std::fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRules")
            .field("version", &self.current().version())
            .finish()
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

impl LiveRules {
    pub fn new(rules: RuleSet) -> Self {
        LiveRules {
            inner: Arc::new(ArcSwap::from_pointee(rules)),
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

    /// Validates `path` and its templates, then swaps them in; returns the new version.
    /// On failure the old rules stay live and the diagnostics are logged once, here.
    pub fn reload(&self, path: &Path) -> Result<String, ConfigErrors> {
        let res = self.try_reload(path);
        if let Err(e) = &res {
            log_failure(path, e);
        }
        res
    }

    fn try_reload(&self, path: &Path) -> Result<String, ConfigErrors> {
        let loaded = RuleSet::load(path)?;
        for w in &loaded.warnings {
            tracing::warn!(diagnostic = %w, "rules warning");
        }
        let version = loaded.rules.version().to_string();
        self.inner.store(Arc::new(loaded.rules));
        tracing::info!(version = %version, path = %path.display(), "rules reloaded");
        Ok(version)
    }

    /// Polls `path` and the templates dir every `interval` and reloads on change until
    /// `shutdown` turns true (or its sender is dropped).
    pub async fn watch(
        self,
        path: PathBuf,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = fingerprint(&path, self.current().templates_dir());
        let mut missing_once = false;
        // Files may have changed between the initial load and this first fingerprint.
        if self.current().is_stale() {
            let _ = self.reload(&path);
        }
        // The diagnostics last logged, so a broken edit is reported once, not every tick.
        let mut last_failure: Option<String> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let tdir = self.current().templates_dir().to_path_buf();
            let fp = {
                let (p, t) = (path.clone(), tdir.clone());
                match tokio::task::spawn_blocking(move || fingerprint(&p, &t)).await {
                    Ok(fp) => fp,
                    Err(_) => continue,
                }
            };
            if fp == last {
                continue;
            }
            if fp.main.is_none() && !missing_once {
                // Editors that save by delete-then-create leave a gap; wait one tick.
                missing_once = true;
                continue;
            }
            missing_once = false;
            last = fp;
            let (me, p) = (self.clone(), path.clone());
            let res = match tokio::task::spawn_blocking(move || me.try_reload(&p)).await {
                Ok(r) => r,
                Err(_) => continue,
            };
            match res {
                Ok(_) => last_failure = None,
                Err(e) => {
                    let text = e.to_string();
                    if last_failure.as_deref() != Some(text.as_str()) {
                        log_failure(&path, &e);
                        last_failure = Some(text);
                    }
                }
            }
            // A reload may have moved the templates dir; fingerprint what is now watched.
            let new_tdir = self.current().templates_dir().to_path_buf();
            if new_tdir != tdir {
                last = fingerprint(&path, &new_tdir);
            }
        }
    }
}

fn log_failure(path: &Path, e: &ConfigErrors) {
    tracing::error!(
        path = %path.display(),
        errors = e.0.len(),
        diagnostics = %e,
        "rules reload failed; keeping the previous rules"
    );
}
