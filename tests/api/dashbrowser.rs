//! An operator opens the dashboard in a real browser (headless Chromium through ChromeDriver)
//! after a day on the account: QR follows on two channels, unfollows, texts no rule answers, a
//! hand-off. They sign in with the form, grant an article with the lookup form, and read every
//! page at phone width (390 px) and laptop width (1280 px): the numbers shown are the story's,
//! nothing scrolls sideways on the phone, and a screenshot of each page is kept under
//! `target/screenshots/dashboard-<page>-<width>.png`.
//!
//! Without Chromium or ChromeDriver the story says it skips; under `CI=true` that is a failure.

use std::collections::HashMap;

use serde_json::Value;

use crate::admin::ADMIN;
use crate::browser::{chromedriver, Browser, Driver};
use crate::dashboard::{dash_app, PAGES};
use crate::helpers::*;
use crate::pages::chromium;

const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

fn subscribe(openid: &str, scene: Option<&str>) -> String {
    let extra = scene.map_or_else(String::new, |s| {
        format!("<EventKey><![CDATA[qrscene_{s}]]></EventKey>\n<Ticket><![CDATA[gQDash{s}]]></Ticket>\n")
    });
    event_xml(openid, "subscribe", &extra, now())
}

/// A day on the account: six follows (three from the `poster` QR code, two from `metro`, one
/// without a scene), two unfollows, three texts no rule answers (two the same once
/// normalised), one answered text, a hand-off and the teaser of a paid article: 14 pushes.
async fn story(app: &TestApp) {
    for (openid, scene) in [
        ("oDashA", Some("poster")),
        ("oDashB", Some("poster")),
        ("oDashC", Some("poster")),
        ("oDashD", Some("metro")),
        ("oDashE", Some("metro")),
        ("oDashF", None),
    ] {
        let r = app.push(&subscribe(openid, scene)).await;
        assert_eq!(r.status, 200, "{openid}: {}", r.raw);
    }
    for openid in ["oDashB", "oDashE"] {
        let r = app.push(&event_xml(openid, "unsubscribe", "", now())).await;
        assert_eq!(r.status, 200);
    }
    let r = app.say("oDashA", "hello").await;
    assert_eq!(r.content().as_deref(), Some("Hello from mpgate!"));
    for (openid, text) in [
        ("oDashC", "课程什么时候开始"),
        ("oDashD", "课程什么时候开始"),
        ("oDashF", "Refund POLICY"),
    ] {
        let r = app.say(openid, text).await;
        assert_eq!(
            r.content().as_deref(),
            Some("Sorry, I did not get that."),
            "{text} falls to the fallback"
        );
    }
    let r = app.say("oDashD", "human").await;
    assert_eq!(r.status, 200);
    // A teaser of the paid article (oDashC has not bought it).
    let r = app.say("oDashC", "rust").await;
    assert_eq!(r.msg_type().as_deref(), Some("news"), "{}", r.raw);
}

/// Every `data-figure` on the page, by id.
async fn figures(b: &Browser<'_>) -> HashMap<String, String> {
    let v = b
        .js(
            "return Array.from(document.querySelectorAll('[data-figure]'))\
             .map(function (e) { return [e.getAttribute('data-figure'), e.textContent.trim()]; })",
        )
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Notes each figure that is not what the story says (all pages are visited before the test
/// fails, so one run shows every wrong number and every screenshot).
fn expect(
    wrong: &mut Vec<String>,
    figs: &HashMap<String, String>,
    page: &str,
    want: &[(&str, &str)],
) {
    for (id, value) in want {
        let shown = figs.get(*id).map(String::as_str);
        if shown != Some(*value) {
            wrong.push(format!(
                "{page}: data-figure=\"{id}\" shows {shown:?}, the story says {value:?}"
            ));
        }
    }
}

fn page_name(path: &str) -> &str {
    let p = path
        .trim_start_matches("/admin/dashboard")
        .trim_start_matches('/');
    let p = p.split('?').next().unwrap_or_default();
    if p.is_empty() {
        "overview"
    } else {
        p
    }
}

#[tokio::test]
async fn an_operator_reads_the_days_story_on_a_phone_and_a_laptop() {
    let Some(chromium) = chromium() else {
        return;
    };
    let Some(driver_bin) = chromedriver() else {
        return;
    };
    let app = dash_app().await;
    story(&app).await;
    let driver = Driver::start(&driver_bin).await;
    let b = driver.browser(&chromium, &app, PHONE_UA, None).await;
    // Phones draw scrollbars over the page: the whole width is the page's, as on a phone.
    b.cmd(
        "POST",
        "/goog/cdp/execute",
        serde_json::json!({"cmd": "Emulation.setScrollbarsHidden", "params": {"hidden": true}}),
    )
    .await;

    // Signed out, the dashboard is the sign-in form; the form signs in.
    b.open(&app.url("/admin/dashboard")).await;
    let url = b.js("return location.pathname").await;
    assert_eq!(url, "/admin/sign-in");
    b.screenshot_page("dashboard-sign-in-390").await;
    b.type_into("#token", ADMIN).await;
    b.click("#sign-in").await;
    b.wait_for(
        "the overview after signing in",
        "return location.pathname === '/admin/dashboard' && document.querySelector('nav')",
        10,
    )
    .await;
    let cookie = b.js("return document.cookie").await;
    assert_eq!(cookie, "", "the session cookie is HttpOnly");

    // A grant through the lookup form.
    b.open(&app.url("/admin/dashboard/subscribers")).await;
    b.type_into("#lookup-openid", "oDashA").await;
    b.click("#lookup").await;
    b.wait_for(
        "the subscriber",
        "return document.querySelector('[data-figure=\"subscriber-openid\"]')",
        10,
    )
    .await;
    b.click("#grant").await;
    b.wait_for(
        "the grant's result",
        "return document.getElementById('form-result')",
        10,
    )
    .await;
    let r = app.admin_get("/admin/subscribers/oDashA").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["entitlements"][0]["article"], "rust-101", "{v}");
    assert!(v["entitlements"][0]["revoked_at"].is_null(), "{v}");

    let lookup = "/admin/dashboard/subscribers?openid=oDashA";
    let mut wrong = Vec::new();
    for width in [390u32, 1280] {
        b.resize(width, 900).await;
        for path in PAGES.iter().copied().chain([lookup]) {
            b.open(&app.url(path)).await;
            let title = b.js("return document.title").await;
            assert!(
                title.as_str().is_some_and(|t| t.ends_with("· mpgate")),
                "{path}: {title}"
            );
            let w = b
                .js("var e = document.scrollingElement; return [e.scrollWidth, e.clientWidth]")
                .await;
            let (scroll, client) = (w[0].as_u64().unwrap(), w[1].as_u64().unwrap());
            assert_eq!(client, u64::from(width), "{path}: the viewport");
            assert!(
                scroll <= client,
                "{path} scrolls sideways at {width} px: {scroll} px wide"
            );
            let name = if path == lookup {
                "subscriber"
            } else {
                page_name(path)
            };
            b.screenshot_page(&format!("dashboard-{name}-{width}"))
                .await;
            let figs = figures(&b).await;
            match name {
                "overview" => expect(
                    &mut wrong,
                    &figs,
                    path,
                    &[
                        ("follows-today", "6"),
                        ("unfollows-today", "2"),
                        ("net-today", "4"),
                        ("cumulative-today", "4"),
                        ("follows-7d", "6"),
                        ("follows-30d", "6"),
                        ("pushes-today", "14"),
                        ("revenue-today", "¥0.00"),
                    ],
                ),
                "channels" => expect(
                    &mut wrong,
                    &figs,
                    path,
                    &[
                        ("channel-poster-follows", "3"),
                        ("channel-poster-unfollows", "1"),
                        ("channel-poster-net", "2"),
                        ("channel-metro-follows", "2"),
                        ("channel-metro-unfollows", "1"),
                        ("channel-none-follows", "1"),
                        ("channel-none-unfollows", "0"),
                        ("channel-poster-unfollow-7d", "33.3%"),
                        ("channel-metro-unfollow-7d", "50.0%"),
                        ("channel-none-unfollow-7d", "0.0%"),
                    ],
                ),
                "retention" => {
                    let today = app.gateway.today(chrono::Utc::now()).to_string();
                    expect(
                        &mut wrong,
                        &figs,
                        path,
                        &[
                            (&format!("cohort-{today}-size"), "6"),
                            (&format!("cohort-{today}-unfollowed-7d"), "2"),
                            (&format!("cohort-{today}-day1"), "—"),
                        ],
                    );
                }
                "unanswered" => expect(
                    &mut wrong,
                    &figs,
                    path,
                    &[
                        ("unanswered-0-text", "课程什么时候开始"),
                        ("unanswered-0-count", "2"),
                        ("unanswered-1-text", "refund policy"),
                        ("unanswered-1-count", "1"),
                    ],
                ),
                "handoffs" => {
                    let open: u64 = figs["handoffs-open"].parse().unwrap();
                    let queued: u64 = figs["handoffs-queued"].parse().unwrap();
                    assert_eq!(open + queued, 1, "{figs:?}");
                    assert!(figs.contains_key("handoff-0-waiting"), "{figs:?}");
                }
                "subscriber" => expect(
                    &mut wrong,
                    &figs,
                    path,
                    &[
                        ("subscriber-openid", "oDashA"),
                        ("subscriber-following", "yes"),
                        ("subscriber-channel", "poster"),
                        ("subscriber-messages", "1"),
                        ("entitlement-rust-101-state", "active"),
                    ],
                ),
                "articles" => expect(
                    &mut wrong,
                    &figs,
                    path,
                    &[
                        ("article-rust-101-teasers", "1"),
                        ("article-rust-101-paid", "0"),
                        ("sales-paid-orders", "0"),
                        ("sales-revenue", "¥0.00"),
                    ],
                ),
                "outbox" => expect(&mut wrong, &figs, path, &[("outbox-total", "0")]),
                "orders" => expect(&mut wrong, &figs, path, &[("orders-total", "0")]),
                _ => {}
            }
        }
    }
    b.close().await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
