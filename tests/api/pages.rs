//! The signed article page: opens for the buyer, never for a tampered, expired or revoked link;
//! and in a real browser (headless Chromium, when the machine has one) the pages are what a
//! subscriber's phone should show.

use crate::admin::admin_app;
use std::path::{Path, PathBuf};

use crate::helpers::*;

/// Buys the article for `openid` and returns the signed link the bot sends back.
async fn bought_link(app: &TestApp, openid: &str) -> String {
    app.say(openid, "hello").await;
    let r = app
        .admin_post(
            "/admin/grants",
            serde_json::json!({"openid": openid, "article": "rust-101"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app.say(openid, "rust").await;
    let xml = r.xml.expect("a news reply");
    xml.child("Articles")
        .unwrap()
        .child("item")
        .unwrap()
        .child_text("Url")
        .unwrap()
        .to_string()
}

/// The link as served by this test server (the public URL is http://mp.test).
fn local(app: &TestApp, link: &str) -> String {
    link.replace("http://mp.test", &app.base)
}

#[tokio::test]
async fn the_buyer_reads_the_article() {
    let app = admin_app().await;
    let link = bought_link(&app, "oReader").await;
    let r = app.client.get(local(&app, &link)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("Every value has one owner"), "{page}");
    assert!(page.contains("name=\"viewport\""));
}

#[tokio::test]
async fn every_single_byte_change_to_a_link_is_refused_and_never_shows_the_body() {
    let app = admin_app().await;
    let link = local(&app, &bought_link(&app, "oTamper").await);
    let (path, query) = link.split_once('?').unwrap();
    let mut tried = 0;
    for (i, b) in query.bytes().enumerate() {
        if matches!(b, b'&' | b'=') {
            continue;
        }
        for sub in [b'0', b'a', b'Z'] {
            if sub == b {
                continue;
            }
            let mut q = query.as_bytes().to_vec();
            q[i] = sub;
            let url = format!("{path}?{}", String::from_utf8(q).unwrap());
            let r = app.client.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            let page = r.text().await.unwrap();
            assert!(matches!(status, 403 | 410), "byte {i} -> {sub}: {status}");
            assert!(
                !page.contains("Every value has one owner"),
                "byte {i} leaked the body"
            );
            tried += 1;
        }
    }
    assert!(tried > 100, "{tried}");
    // The untouched link still works.
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_expired_link_is_410_with_a_friendly_page() {
    let app = spawn_app(
        Options::default()
            .env("MPGATE_ADMIN_TOKEN", crate::admin::ADMIN)
            .env("MPGATE_LINK_TTL_SECS", "1"),
    )
    .await;
    let link = local(&app, &bought_link(&app, "oLate").await);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let page = r.text().await.unwrap();
    assert!(page.contains("链接已过期"));
    assert!(!page.contains("Every value has one owner"));
}

#[tokio::test]
async fn a_revoked_grant_stops_the_link_at_once() {
    let app = admin_app().await;
    let link = local(&app, &bought_link(&app, "oRefund").await);
    assert_eq!(app.client.get(&link).send().await.unwrap().status(), 200);
    let r = app
        .admin_post(
            "/admin/revocations",
            serde_json::json!({"openid": "oRefund", "article": "rust-101"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app.client.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("id=\"paywall\""),
        "the paywall page, with a way to buy: {page}"
    );
    // minijinja's HTML escaping writes `/` as `&#x2f;`, which browsers read back as `/`.
    assert!(
        page.replace("&#x2f;", "/")
            .contains("href=\"https://shop.test/rust-101\""),
        "{page}"
    );
    assert!(!page.contains("Every value has one owner"));
}

/// Where a headless Chromium is, if this machine has one: `MPGATE_CHROMIUM` (a path or a
/// name on `PATH`), else `chromium`, `chromium-browser` or `google-chrome` on `PATH`.
///
/// Tests install nothing: `.ci/run` installs Chromium with `scripts/install-test-deps.sh`.
/// Without it a local `cargo test` says it skips the browser checks; under `CI=true` a missing
/// browser is a failure, since CI promised to install one.
pub(crate) fn chromium() -> Option<PathBuf> {
    let on_path = |name: &str| -> Option<PathBuf> {
        let candidate = Path::new(name);
        if candidate.components().count() > 1 {
            return candidate.is_file().then(|| candidate.to_path_buf());
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    let found = match std::env::var("MPGATE_CHROMIUM") {
        Ok(name) if !name.is_empty() => on_path(&name),
        _ => ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(on_path),
    };
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Chromium found (MPGATE_CHROMIUM, chromium, chromium-browser, google-chrome), \
             which CI needs for the browser checks: install it with scripts/install-test-deps.sh"
        );
        eprintln!(
            "skipping the browser checks: no Chromium found \
             (install it with scripts/install-test-deps.sh, or set MPGATE_CHROMIUM)"
        );
    }
    found
}

fn headless(chromium: &Path, profile: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // A phone's width: the page is read inside WeChat on a phone.
        "--window-size=390,844",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The DOM Chromium holds once `url` has loaded (scripts run, entities decoded).
async fn rendered_dom(chromium: &Path, url: &str) -> String {
    let (bin, url) = (chromium.to_path_buf(), url.to_string());
    let out = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        headless(&bin, profile.path())
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("</html>"),
        "Chromium rendered no page ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// A screenshot for a human to look at (`target/tmp/page-screenshots/`); nothing is asserted
/// about it, since its pixels depend on the fonts and the Chromium build.
async fn screenshot_for_people(chromium: &Path, url: &str, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
    let _ = std::fs::create_dir_all(&dir);
    let png = dir.join(format!("{name}.png"));
    let (bin, url) = (chromium.to_path_buf(), url.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        headless(&bin, profile.path())
            .arg(format!("--screenshot={}", png.display()))
            .arg(&url)
            .output()
    })
    .await;
}

/// The text inside the first element whose opening tag contains `marker`, tags stripped.
fn text_of(dom: &str, marker: &str) -> String {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no element with {marker:?} in:\n{dom}"));
    let open_end = start + dom[start..].find('>').unwrap() + 1;
    let tag_start = if dom[start..].starts_with('<') {
        start
    } else {
        dom[..start].rfind('<').unwrap()
    };
    let name: String = dom[tag_start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let close = open_end + dom[open_end..].find(&format!("</{name}>")).unwrap();
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[open_end..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every `src` and `href` value in the DOM.
fn resources(dom: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"\s(?:src|href)="([^"]*)""#).unwrap();
    re.captures_iter(dom).map(|c| c[1].to_string()).collect()
}

/// What every page must be: made for a phone, in Chinese, self-contained (its style inline, no
/// scripts, fonts or stylesheets from elsewhere; the only outside address is the article's own
/// cover image or purchase link the operator configured).
fn assert_a_self_contained_phone_page(name: &str, dom: &str) {
    assert!(dom.contains(r#"<html lang="zh-CN">"#), "{name}: {dom}");
    assert!(
        dom.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1"#),
        "{name}: no phone viewport: {dom}"
    );
    for banned in ["<script", "<link", "<iframe", "@import", "url("] {
        assert!(!dom.contains(banned), "{name}: has {banned:?}: {dom}");
    }
    for r in resources(dom) {
        assert!(
            ["https://img.test/rust.png", "https://shop.test/rust-101"].contains(&r.as_str()),
            "{name}: loads or links {r:?}, which the operator did not configure"
        );
    }
}

#[tokio::test]
async fn the_pages_render_in_a_real_browser_at_phone_width() {
    let Some(chromium) = chromium() else { return };
    let app = admin_app().await;
    let link = local(&app, &bought_link(&app, "oPhone").await);
    let (path, _) = link.split_once('?').unwrap();

    // The buyer's link: the article itself.
    let dom = rendered_dom(&chromium, &link).await;
    assert_a_self_contained_phone_page("article", &dom);
    assert_eq!(text_of(&dom, "<title"), "Rust 101");
    assert_eq!(text_of(&dom, "<h1"), "Rust 101");
    assert_eq!(text_of(&dom, "<h2"), "Ownership");
    assert!(text_of(&dom, r#"class="body""#).starts_with("Ownership Every value has one owner."));
    assert!(text_of(&dom, r#"class="meta""#).contains("已购内容，仅限本人阅读"));
    assert!(!dom.contains(r#"id="paywall""#), "{dom}");
    screenshot_for_people(&chromium, &link, "article").await;

    // The same article without a signature: the paywall, with the price and a way to buy.
    let dom = rendered_dom(&chromium, path).await;
    assert_a_self_contained_phone_page("paywall", &dom);
    assert_eq!(text_of(&dom, "<h1"), "🔒 Rust 101");
    assert!(text_of(&dom, r#"id="paywall""#).contains("Ownership in ten minutes."));
    assert_eq!(text_of(&dom, r#"class="price""#), "¥99.00");
    assert_eq!(
        text_of(&dom, r#"href="https://shop.test/rust-101""#),
        "购买后阅读全文"
    );
    assert!(!dom.contains("Every value has one owner"), "{dom}");
    screenshot_for_people(&chromium, path, "paywall").await;

    // A link changed by one character: a friendly error, not the article.
    let tampered = format!("{link}0");
    let dom = rendered_dom(&chromium, &tampered).await;
    assert_a_self_contained_phone_page("tampered", &dom);
    assert_eq!(text_of(&dom, "<h1"), "链接无效");
    assert!(dom.contains(r#"id="link-error""#), "{dom}");
    assert!(!dom.contains("Every value has one owner"), "{dom}");
    assert!(!dom.contains("shop.test"), "{dom}");
    screenshot_for_people(&chromium, &tampered, "tampered").await;
}
