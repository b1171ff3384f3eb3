//! The signed article page: opens for the buyer, never for a tampered, expired or revoked link.

use crate::admin::admin_app;
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

/// Finds Chromium, installing it with the project's script when allowed.
fn chromium() -> Option<std::path::PathBuf> {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|b| {
            std::process::Command::new("which")
                .arg(b)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-test-deps.sh");
    let _ = std::process::Command::new("bash").arg(script).status();
    let found = find();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is required under CI"
        );
        eprintln!("skipping: chromium not available (run scripts/install-test-deps.sh as root)");
    }
    found
}

fn headless(chromium: &std::path::Path, profile: &std::path::Path) -> std::process::Command {
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
        "--window-size=390,844",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[tokio::test]
async fn the_pages_render_in_a_real_browser_at_phone_width() {
    let Some(chromium) = chromium() else { return };
    let app = admin_app().await;
    let link = local(&app, &bought_link(&app, "oPhone").await);
    let (path, _) = link.split_once('?').unwrap();
    let shots = tempfile::tempdir().unwrap();
    for (name, url, must) in [
        ("article", link.clone(), "Every value has one owner"),
        ("paywall", path.to_string(), "购买后阅读全文"),
        ("tampered", format!("{link}0"), "链接无效"),
    ] {
        let profile = tempfile::tempdir().unwrap();
        let (bin, url2) = (chromium.clone(), url.clone());
        let dom = tokio::task::spawn_blocking(move || {
            headless(&bin, profile.path())
                .arg("--dump-dom")
                .arg(&url2)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout).to_string();
        assert!(
            dom.contains(must),
            "{name}: rendered DOM lacks {must:?}:\n{dom}"
        );
        let png = shots.path().join(format!("{name}.png"));
        let profile = tempfile::tempdir().unwrap();
        let (bin, png2) = (chromium.clone(), png.clone());
        let out = tokio::task::spawn_blocking(move || {
            headless(&bin, profile.path())
                .arg(format!("--screenshot={}", png2.display()))
                .arg(&url)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let bytes =
            std::fs::read(&png).unwrap_or_else(|_| panic!("{name}: no screenshot: {out:?}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{name}: not a PNG");
        // 390 px wide, as asked: the IHDR width field.
        assert_eq!(
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
            390,
            "{name}"
        );
        if let Some(dir) = std::env::var_os("MPGATE_SCREENSHOTS") {
            std::fs::copy(&png, std::path::Path::new(&dir).join(format!("{name}.png"))).unwrap();
        }
    }
}
