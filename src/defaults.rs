//! The shipped rules, embedded in the binary: a release binary started from any directory
//! without `MPGATE_KEYWORDS` still serves the demo account.
//!
//! When no rules file is named and `./keywords.toml` does not exist, the embedded
//! `keywords.toml` and `templates/` are written to `<data dir>/builtin-rules/` (so they load,
//! reload and can be edited like any other rules directory) and served from there.
//!
//! May depend on: std only.

use std::path::{Path, PathBuf};

/// Every shipped rules file, by path relative to the repository root.
const FILES: &[(&str, &str)] = &[
    ("keywords.toml", include_str!("../keywords.toml")),
    (
        "templates/_page.html",
        include_str!("../templates/_page.html"),
    ),
    (
        "templates/article.html",
        include_str!("../templates/article.html"),
    ),
    (
        "templates/paywall.html",
        include_str!("../templates/paywall.html"),
    ),
    (
        "templates/link_error.html",
        include_str!("../templates/link_error.html"),
    ),
    (
        "templates/admin/_layout.html",
        include_str!("../templates/admin/_layout.html"),
    ),
    (
        "templates/admin/_tables.html",
        include_str!("../templates/admin/_tables.html"),
    ),
    (
        "templates/admin/sign_in.html",
        include_str!("../templates/admin/sign_in.html"),
    ),
    (
        "templates/admin/overview.html",
        include_str!("../templates/admin/overview.html"),
    ),
    (
        "templates/admin/channels.html",
        include_str!("../templates/admin/channels.html"),
    ),
    (
        "templates/admin/retention.html",
        include_str!("../templates/admin/retention.html"),
    ),
    (
        "templates/admin/articles.html",
        include_str!("../templates/admin/articles.html"),
    ),
    (
        "templates/admin/unanswered.html",
        include_str!("../templates/admin/unanswered.html"),
    ),
    (
        "templates/admin/assistant.html",
        include_str!("../templates/admin/assistant.html"),
    ),
    (
        "templates/admin/handoffs.html",
        include_str!("../templates/admin/handoffs.html"),
    ),
    (
        "templates/admin/outbox.html",
        include_str!("../templates/admin/outbox.html"),
    ),
    (
        "templates/admin/orders.html",
        include_str!("../templates/admin/orders.html"),
    ),
    (
        "templates/admin/subscribers.html",
        include_str!("../templates/admin/subscribers.html"),
    ),
    (
        "templates/articles/go-concurrency.html",
        include_str!("../templates/articles/go-concurrency.html"),
    ),
    (
        "templates/articles/rust-101.html",
        include_str!("../templates/articles/rust-101.html"),
    ),
    (
        "templates/catalogue.txt",
        include_str!("../templates/catalogue.txt"),
    ),
    (
        "templates/fallback.txt",
        include_str!("../templates/fallback.txt"),
    ),
    (
        "templates/price.txt",
        include_str!("../templates/price.txt"),
    ),
    (
        "templates/schedule.txt",
        include_str!("../templates/schedule.txt"),
    ),
    (
        "templates/welcome.txt",
        include_str!("../templates/welcome.txt"),
    ),
    (
        "templates/welcome_back.txt",
        include_str!("../templates/welcome_back.txt"),
    ),
    (
        "templates/welcome_course.txt",
        include_str!("../templates/welcome_course.txt"),
    ),
    (
        "templates/welcome_meetup.txt",
        include_str!("../templates/welcome_meetup.txt"),
    ),
];

/// The embedded files (for the test that keeps this list complete).
pub fn files() -> &'static [(&'static str, &'static str)] {
    FILES
}

/// Writes the embedded rules under `dir` (overwriting the previous copy: it is the binary's,
/// not the operator's) and returns the path of its `keywords.toml`.
pub fn materialize(dir: &Path) -> std::io::Result<PathBuf> {
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
            std::fs::write(&path, content)?;
        }
    }
    Ok(dir.join("keywords.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_template_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        let mut stack = vec![root.join("templates")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(
                        p.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("templates/"))
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new templates to src/defaults.rs");
    }

    #[test]
    fn the_materialized_rules_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = materialize(dir.path()).unwrap();
        let loaded = crate::rules::RuleSet::load(&path).expect("embedded rules are valid");
        assert!(loaded.rules.article("rust-101").is_some());
    }
}
