//! The operators' dashboard over HTTP: sign-in and its cookie, the limiter on wrong tokens, the
//! CSRF token on every form, sign-out, the grant and revoke forms, and CSV downloads that say
//! what the pages say. (The pages in a real browser: `dashbrowser.rs`.)

use std::collections::HashMap;

use crate::admin::ADMIN;
use crate::helpers::*;

/// Every page, as the nav lists them.
pub const PAGES: &[&str] = &[
    "/admin/dashboard",
    "/admin/dashboard/channels",
    "/admin/dashboard/retention",
    "/admin/dashboard/articles",
    "/admin/dashboard/unanswered",
    "/admin/dashboard/assistant",
    "/admin/dashboard/handoffs",
    "/admin/dashboard/outbox",
    "/admin/dashboard/orders",
    "/admin/dashboard/subscribers",
];

pub async fn dash_app() -> TestApp {
    spawn_app(Options::default().env("MPGATE_ADMIN_TOKEN", ADMIN)).await
}

/// A client that shows redirects instead of following them, and keeps no cookies: each test
/// says which cookie it sends.
pub fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in operator: the session cookie and the CSRF token the pages carry.
#[derive(Clone, Debug)]
pub struct Operator {
    pub cookie: String,
    pub csrf: String,
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn set_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
}

pub async fn post_sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    browserless()
        .post(app.url("/admin/sign-in"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// The hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {page}"));
    let rest = &page[at + 19..];
    rest[..rest.find('"').unwrap()].to_string()
}

pub async fn sign_in(app: &TestApp) -> Operator {
    let r = post_sign_in(app, ADMIN).await;
    assert_eq!(r.status(), 303);
    let header = set_cookie(&r).expect("a session cookie");
    let cookie = header.split(';').next().unwrap().trim().to_string();
    let page = get(app, "/admin/dashboard", Some(&cookie)).await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    Operator { cookie, csrf }
}

pub async fn get(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = browserless().get(app.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

pub async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = browserless().post(app.url(path)).form(fields);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

impl Operator {
    pub async fn page(&self, app: &TestApp, path: &str) -> String {
        let r = get(app, path, Some(&self.cookie)).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        r.text().await.unwrap()
    }
}

/// What the JSON admin API says a subscriber's entitlement to `article` is: "active",
/// "revoked" or "none".
async fn entitlement(app: &TestApp, openid: &str, article: &str) -> String {
    let r = app.admin_get(&format!("/admin/subscribers/{openid}")).await;
    if r.status() == 404 {
        return "none".into();
    }
    let v: serde_json::Value = r.json().await.unwrap();
    v["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["article"] == article)
        .map_or("none", |e| {
            if e["revoked_at"].is_null() {
                "active"
            } else {
                "revoked"
            }
        })
        .to_string()
}

#[tokio::test]
async fn signing_in_with_the_admin_token_sets_a_strict_http_only_session_cookie() {
    let app = dash_app().await;
    let r = post_sign_in(&app, ADMIN).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/admin/dashboard");
    let c = set_cookie(&r).expect("Set-Cookie");
    let attrs: Vec<&str> = c.split("; ").collect();
    let value = attrs[0].strip_prefix("mpgate_session=").expect(&c);
    assert_eq!(value.len(), 43, "32 random bytes, base64url: {c}");
    assert!(!value.contains(ADMIN));
    for a in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=43200",
    ] {
        assert!(attrs.contains(&a), "{a} in {c}");
    }
    assert!(
        !attrs.contains(&"Secure"),
        "the test server is plain http: {c}"
    );

    // Signed in: /admin leads to the overview, and the sign-in form does too.
    let cookie = attrs[0];
    let r = get(&app, "/admin", Some(cookie)).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/admin/dashboard".into())
    );
    let r = get(&app, "/admin/sign-in", Some(cookie)).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/admin/dashboard".into())
    );
    let r = get(&app, "/admin/dashboard", Some(cookie)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'"),
        "no script runs: {csp}"
    );
}

#[tokio::test]
async fn behind_https_the_cookie_is_secure_and_lasts_as_configured() {
    let app = spawn_app(
        Options::default()
            .env("MPGATE_ADMIN_TOKEN", ADMIN)
            .env("MPGATE_PUBLIC_URL", "https://mp.example.com")
            .env("MPGATE_SESSION_TTL_SECS", "600"),
    )
    .await;
    let r = post_sign_in(&app, ADMIN).await;
    let c = set_cookie(&r).expect("Set-Cookie");
    let attrs: Vec<&str> = c.split("; ").collect();
    assert!(attrs.contains(&"Secure"), "{c}");
    assert!(attrs.contains(&"Max-Age=600"), "{c}");
}

#[tokio::test]
async fn a_wrong_token_shows_the_form_again_with_an_error_and_sets_no_cookie() {
    let app = dash_app().await;
    for wrong in [
        "",
        "test-admin-token-012345678X",
        "test-admin-token-0123456789 ",
    ] {
        let r = post_sign_in(&app, wrong).await;
        assert_eq!(r.status(), 401, "{wrong:?}");
        assert!(set_cookie(&r).is_none(), "{wrong:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains("id=\"sign-in-error\""), "{page}");
        assert!(page.contains("name=\"token\""), "the form again: {page}");
    }
    // Without a session, every way in leads to the form.
    let r = get(&app, "/admin", None).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/admin/sign-in".into())
    );
    let r = get(&app, "/admin/sign-in", None).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn five_wrong_tokens_in_a_minute_slow_the_address_down_on_both_doors() {
    let app = dash_app().await;
    for i in 0..5 {
        let r = post_sign_in(&app, "guess").await;
        assert_eq!(r.status(), 401, "guess {i}");
    }
    // Now even the right token waits for the rest of the minute, here and on the JSON API.
    let r = post_sign_in(&app, ADMIN).await;
    assert_eq!(r.status(), 429);
    assert!(set_cookie(&r).is_none());
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let r = app.admin_get("/admin/stats").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // (After the minute the right token works again: the limiter's unit tests move the clock.)
}

#[tokio::test]
async fn wrong_bearer_tokens_count_toward_the_same_limit() {
    let app = dash_app().await;
    for _ in 0..5 {
        let r = app
            .client
            .get(app.url("/admin/stats"))
            .bearer_auth("guess")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app.admin_get("/admin/stats").await;
    assert_eq!(r.status(), 429);
    let r = post_sign_in(&app, ADMIN).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn without_a_live_session_every_page_leads_to_the_sign_in_form() {
    let app = dash_app().await;
    let op = sign_in(&app).await;
    let value = op.cookie.strip_prefix("mpgate_session=").unwrap();
    let mut tampered = value.as_bytes().to_vec();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("mpgate_session={}", String::from_utf8(tampered).unwrap());
    for cookie in [
        None,
        Some(tampered.as_str()),
        Some("mpgate_session="),
        Some("mpgate_session=not-a-session"),
    ] {
        for page in PAGES {
            let r = get(&app, &format!("{page}?format=csv"), cookie).await;
            assert_eq!(r.status(), 303, "{page} with {cookie:?}");
            assert_eq!(location(&r), "/admin/sign-in", "{page}");
        }
        let r = post_form(
            &app,
            "/admin/dashboard/subscribers/grant",
            cookie,
            &[
                ("csrf", &op.csrf),
                ("openid", "oNoSession"),
                ("article", "rust-101"),
                ("create", "1"),
            ],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/admin/sign-in");
    }
    assert_eq!(entitlement(&app, "oNoSession", "rust-101").await, "none");
}

#[tokio::test]
async fn a_form_without_its_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = dash_app().await;
    app.say("oCsrf", "hello").await;
    let op = sign_in(&app).await;
    let other = sign_in(&app).await;
    assert_ne!(op.csrf, other.csrf, "each session has its own token");
    for csrf in [None, Some(""), Some(other.csrf.as_str()), Some("x")] {
        let mut fields = vec![("openid", "oCsrf"), ("article", "rust-101")];
        if let Some(c) = csrf {
            fields.push(("csrf", c));
        }
        let r = post_form(
            &app,
            "/admin/dashboard/subscribers/grant",
            Some(&op.cookie),
            &fields,
        )
        .await;
        assert_eq!(r.status(), 403, "{csrf:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains("security token"), "{page}");
        assert_eq!(entitlement(&app, "oCsrf", "rust-101").await, "none");
    }
    // Signing out needs it too: the session stays.
    let r = post_form(&app, "/admin/sign-out", Some(&op.cookie), &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        get(&app, "/admin/dashboard", Some(&op.cookie))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_and_clears_the_cookie() {
    let app = dash_app().await;
    let op = sign_in(&app).await;
    let r = post_form(
        &app,
        "/admin/sign-out",
        Some(&op.cookie),
        &[("csrf", &op.csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/admin/sign-in");
    let c = set_cookie(&r).expect("the cookie is cleared");
    assert!(
        c.starts_with("mpgate_session=;") && c.contains("Max-Age=0"),
        "{c}"
    );
    let r = get(&app, "/admin/dashboard", Some(&op.cookie)).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/admin/sign-in".into())
    );
}

#[tokio::test]
async fn without_an_admin_token_the_dashboard_is_off() {
    let app = spawn_app(Options::default()).await;
    for path in [
        "/admin",
        "/admin/sign-in",
        "/admin/dashboard",
        "/admin/dashboard/orders",
    ] {
        assert_eq!(get(&app, path, None).await.status(), 404, "{path}");
    }
    let r = post_sign_in(&app, "anything").await;
    assert_eq!(r.status(), 404);
    assert!(set_cookie(&r).is_none());
}

#[tokio::test]
async fn the_json_api_still_takes_the_bearer_token_and_not_the_cookie() {
    let app = dash_app().await;
    let op = sign_in(&app).await;
    assert_eq!(app.admin_get("/admin/stats").await.status(), 200);
    assert_eq!(app.admin_get("/admin/handoffs").await.status(), 200);
    let r = get(&app, "/admin/stats", Some(&op.cookie)).await;
    assert_eq!(r.status(), 401, "a session is no bearer token");
    // An unknown path under /admin is still the JSON API's 404 (behind its token).
    let r = app.admin_get("/admin/nope").await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].is_string());
}

#[tokio::test]
async fn grant_and_revoke_through_the_forms_change_the_store_and_say_what_they_did() {
    let app = dash_app().await;
    app.say("oForm", "hello").await;
    let op = sign_in(&app).await;

    let page = op
        .page(&app, "/admin/dashboard/subscribers?openid=oForm")
        .await;
    assert!(
        page.contains("data-figure=\"subscriber-openid\">oForm<"),
        "{page}"
    );
    assert!(
        page.contains("<option value=\"rust-101\">Rust 101"),
        "the live rules' titles: {page}"
    );

    let r = post_form(
        &app,
        "/admin/dashboard/subscribers/grant",
        Some(&op.cookie),
        &[
            ("csrf", &op.csrf),
            ("openid", "oForm"),
            ("article", "rust-101"),
            ("reference", ""),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert_eq!(
        back,
        "/admin/dashboard/subscribers?openid=oForm&done=granted&article=rust-101"
    );
    assert_eq!(entitlement(&app, "oForm", "rust-101").await, "active");
    let page = op.page(&app, &back).await;
    assert!(page.contains("Granted “rust-101”."), "{page}");
    assert!(
        page.contains("data-figure=\"entitlement-rust-101-state\">active<"),
        "{page}"
    );
    assert!(page.contains("data-revoke=\"rust-101\""), "{page}");

    let r = post_form(
        &app,
        "/admin/dashboard/subscribers/revoke",
        Some(&op.cookie),
        &[
            ("csrf", &op.csrf),
            ("openid", "oForm"),
            ("article", "rust-101"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).ends_with("&done=revoked&article=rust-101"));
    assert_eq!(entitlement(&app, "oForm", "rust-101").await, "revoked");
    let page = op.page(&app, &location(&r)).await;
    assert!(
        page.contains("data-figure=\"entitlement-rust-101-state\">revoked<"),
        "{page}"
    );

    // The JSON API's rule: an openid never seen needs "create".
    let grant_new = |create: bool| {
        let mut f = vec![
            ("csrf", op.csrf.as_str()),
            ("openid", "oNeverSeen"),
            ("article", "rust-101"),
        ];
        if create {
            f.push(("create", "1"));
        }
        f
    };
    let r = post_form(
        &app,
        "/admin/dashboard/subscribers/grant",
        Some(&op.cookie),
        &grant_new(false),
    )
    .await;
    assert!(
        location(&r).contains("done=unknown_subscriber"),
        "{}",
        location(&r)
    );
    assert_eq!(entitlement(&app, "oNeverSeen", "rust-101").await, "none");
    let page = op.page(&app, &location(&r)).await;
    assert!(page.contains("id=\"grant-create\""), "{page}");
    let r = post_form(
        &app,
        "/admin/dashboard/subscribers/grant",
        Some(&op.cookie),
        &grant_new(true),
    )
    .await;
    assert!(location(&r).contains("done=granted"), "{}", location(&r));
    assert_eq!(entitlement(&app, "oNeverSeen", "rust-101").await, "active");

    // Bad input is the operator's fault, said plainly.
    let r = post_form(
        &app,
        "/admin/dashboard/subscribers/grant",
        Some(&op.cookie),
        &[
            ("csrf", &op.csrf),
            ("openid", "oForm"),
            ("article", "no-such-article"),
        ],
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = post_form(
        &app,
        "/admin/dashboard/subscribers/grant",
        Some(&op.cookie),
        &[
            ("csrf", &op.csrf),
            ("openid", "bad openid!"),
            ("article", "rust-101"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("openid"));
}

#[tokio::test]
async fn every_page_renders_and_ranges_outside_the_offer_are_refused() {
    let app = dash_app().await;
    let op = sign_in(&app).await;
    for page in PAGES {
        let html = op.page(&app, page).await;
        assert!(html.contains("<nav>"), "{page}");
        assert!(html.contains("aria-current=\"page\""), "{page}");
        assert!(
            html.contains(&format!("value=\"{}\"", op.csrf)),
            "sign-out form on {page}"
        );
    }
    let html = op.page(&app, "/admin/dashboard/channels?days=7").await;
    assert!(html.contains("aria-current=\"true\">7 days<"), "{html}");
    for bad in ["8", "0", "-1", "x"] {
        let r = get(
            &app,
            &format!("/admin/dashboard?days={bad}"),
            Some(&op.cookie),
        )
        .await;
        assert_eq!(r.status(), 400, "days={bad}");
    }
    let r = get(&app, "/admin/dashboard/orders?state=lost", Some(&op.cookie)).await;
    assert_eq!(r.status(), 400);
    let r = get(&app, "/admin/dashboard/nope", Some(&op.cookie)).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_broken_dashboard_template_shows_internal_error_and_a_request_id() {
    let app = dash_app().await;
    let op = sign_in(&app).await;
    let dir = app.keywords_path.parent().unwrap().join("templates/admin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("retention.html"),
        "{% extends \"admin/_layout.html\" %}{{ nope.nope }}",
    )
    .unwrap();
    let r = get(&app, "/admin/dashboard/retention", Some(&op.cookie)).await;
    assert_eq!(r.status(), 500);
    let page = r.text().await.unwrap();
    assert!(page.contains("internal error (request id "), "{page}");
    assert!(!page.contains("nope"), "the cause stays in the log: {page}");
}

// ---------------------------------------------------------------------------------------------
// CSV

/// RFC 4180: rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last row ends with CRLF"
    );
    rows
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The header and cells of table `name` as the page shows them.
pub fn page_table(html: &str, name: &str) -> Option<Vec<Vec<String>>> {
    let start = html.find(&format!("id=\"table-{name}\""))?;
    let section = &html[start..];
    let section = &section[..section.find("</section>")?];
    let cell = regex::Regex::new(r"(?s)<t([hd])[^>]*>(.*?)</t[hd]>").unwrap();
    let tag = regex::Regex::new(r"<[^>]+>").unwrap();
    let mut rows = Vec::new();
    for tr in section.split("<tr>").skip(1) {
        let tr = &tr[..tr.find("</tr>").unwrap_or(tr.len())];
        rows.push(
            cell.captures_iter(tr)
                .map(|c| unescape(&tag.replace_all(&c[2], "")))
                .collect::<Vec<_>>(),
        );
    }
    Some(rows)
}

/// The CSV of a money cell is the page's `¥12.34` without the sign.
fn same_cell(page: &str, csv: &str) -> bool {
    page == csv || page.strip_prefix('¥') == Some(csv) || csv.strip_prefix('\'') == Some(page)
}

pub async fn csv_of(app: &TestApp, op: &Operator, path: &str, table: &str) -> Vec<Vec<String>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = get(
        app,
        &format!("{path}{sep}format=csv&table={table}"),
        Some(&op.cookie),
    )
    .await;
    assert_eq!(r.status(), 200, "{path} {table}");
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let disp = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disp.starts_with("attachment; filename=\"mpgate-"), "{disp}");
    let text = r.text().await.unwrap();
    let body = text
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for Excel");
    parse_csv(body)
}

/// Asserts that every table on `path` downloads as CSV with the same header and cells.
pub async fn csv_matches_page(app: &TestApp, op: &Operator, path: &str) -> usize {
    let html = op.page(app, path).await;
    let names: Vec<String> = regex::Regex::new(r#"id="table-([a-z]+)""#)
        .unwrap()
        .captures_iter(&html)
        .map(|c| c[1].to_string())
        .collect();
    let mut rows = 0;
    for name in &names {
        let shown = page_table(&html, name).unwrap();
        let csv = csv_of(app, op, path, name).await;
        if shown.is_empty() {
            // An empty table: the page explains, the CSV has the header only.
            assert_eq!(csv.len(), 1, "{path} {name}: {csv:?}");
            continue;
        }
        assert_eq!(
            csv.len(),
            shown.len(),
            "{path} {name}: {csv:?} vs {shown:?}"
        );
        for (p, c) in shown.iter().zip(&csv) {
            assert_eq!(p.len(), c.len(), "{path} {name}: {p:?} vs {c:?}");
            for (pc, cc) in p.iter().zip(c) {
                assert!(same_cell(pc.trim(), cc), "{path} {name}: {pc:?} vs {cc:?}");
            }
        }
        rows += csv.len() - 1;
    }
    rows
}

#[tokio::test]
async fn csv_downloads_parse_and_match_the_page() {
    let app = dash_app().await;
    app.say("oCsvA", "hello").await;
    // A text no rule answers, shaped like a spreadsheet formula.
    app.say("oCsvA", "=HYPERLINK(\"http://evil.test\")").await;
    app.say("oCsvB", "human").await;
    let op = sign_in(&app).await;
    for openid in ["oCsvA", "oCsvB"] {
        let r = post_form(
            &app,
            "/admin/dashboard/subscribers/grant",
            Some(&op.cookie),
            &[
                ("csrf", &op.csrf),
                ("openid", openid),
                ("article", "rust-101"),
                ("reference", "=1+1"),
            ],
        )
        .await;
        assert_eq!(r.status(), 303);
    }
    let mut rows = HashMap::new();
    for page in PAGES {
        rows.insert(*page, csv_matches_page(&app, &op, page).await);
    }
    let lookup = "/admin/dashboard/subscribers?openid=oCsvA";
    let n = csv_matches_page(&app, &op, lookup).await;
    assert_eq!(n, 9 + 1, "the record's fields and one entitlement");
    // The reference an outsider could have chosen is shown, and guarded in the CSV.
    let ents = csv_of(&app, &op, lookup, "entitlements").await;
    assert_eq!(ents[1][4], "'=1+1");
    assert_eq!(rows["/admin/dashboard/handoffs"], 1, "oCsvB is waiting");
    let texts = csv_of(&app, &op, "/admin/dashboard/unanswered", "texts").await;
    assert_eq!(texts[0], ["#", "text", "times", "last seen"]);
    assert_eq!(
        texts[1][1], "'=hyperlink(\"http://evil.test\")",
        "{texts:?}"
    );
    assert_eq!(texts[1][2], "1");
    let windows = csv_of(&app, &op, "/admin/dashboard", "windows").await;
    let first: Vec<&str> = windows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(first, ["window", "Today", "7 days", "30 days"]);

    // A page with several tables needs `table=`; a wrong name is the operator's fault.
    let r = get(&app, "/admin/dashboard?format=csv", Some(&op.cookie)).await;
    assert_eq!(r.status(), 400);
    let r = get(
        &app,
        "/admin/dashboard?format=csv&table=nope",
        Some(&op.cookie),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("windows"));
    let r = get(
        &app,
        "/admin/dashboard/handoffs?format=csv",
        Some(&op.cookie),
    )
    .await;
    assert_eq!(r.status(), 200, "one table: no name needed");
}

/// A reader pays ¥19.90 for `rust-101` through the fake WeChat Pay; `None` (after saying why)
/// when the fake cannot start.
async fn shop_with_a_sale() -> Option<(TestApp, crate::fakepay::FakePay, String)> {
    let pay = crate::fakepay::FakePay::start().await?;
    let mut opts = Options {
        keywords: Some(std::fs::read_to_string(fixture("pay-keywords.toml")).unwrap()),
        ..Options::default()
    }
    .env("MPGATE_ADMIN_TOKEN", ADMIN);
    for (k, v) in pay.env() {
        opts = opts.env(&k, &v);
    }
    let app = spawn_app(opts).await;
    let r = app.say("oDashBuyer", "rust please").await;
    let link = r
        .xml
        .as_ref()
        .and_then(|x| x.child("Articles"))
        .and_then(|a| a.child("item"))
        .and_then(|i| i.child_text("Url"))
        .unwrap_or_else(|| panic!("no teaser: {}", r.raw))
        .to_string();
    let url = reqwest::Url::parse(&link).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let r = app
        .client
        .post(app.url("/pay/orders"))
        .header("user-agent", "Mozilla/5.0 MicroMessenger/8.0.50")
        .json(&serde_json::json!({"article": "rust-101", "u": q["u"], "e": q["e"], "s": q["s"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let order = pay.orders().pop().expect("an order at the platform");
    let delivered = pay
        .notify_paid(&order.out_trade_no, &app.url("/pay/notify"))
        .await;
    assert_eq!(delivered.status, 204);
    Some((app, pay, order.out_trade_no))
}

#[tokio::test]
async fn a_paid_order_shows_as_revenue_on_the_overview_the_articles_and_the_orders_pages() {
    let Some((app, _pay, order)) = shop_with_a_sale().await else {
        return;
    };
    let op = sign_in(&app).await;
    let html = op.page(&app, "/admin/dashboard/orders").await;
    assert!(
        html.contains(&format!("data-figure=\"order-{order}-amount\">¥19.90<")),
        "{html}"
    );
    assert!(html.contains(&format!("data-figure=\"order-{order}-state\">paid<")));
    csv_matches_page(&app, &op, "/admin/dashboard/orders").await;
    let orders = csv_of(&app, &op, "/admin/dashboard/orders", "orders").await;
    assert_eq!(orders[1][0], order);
    assert_eq!(orders[1][3], "19.90", "money is a number in the CSV");
    // The state filter.
    let html = op.page(&app, "/admin/dashboard/orders?state=created").await;
    assert!(html.contains("data-figure=\"orders-total\">0<"), "{html}");
    let html = op
        .page(&app, "/admin/dashboard/orders?state=paid&days=7")
        .await;
    assert!(html.contains("data-figure=\"orders-total\">1<"), "{html}");

    let html = op.page(&app, "/admin/dashboard").await;
    for (id, v) in [
        ("revenue-today", "¥19.90"),
        ("paid-today", "1"),
        ("revenue-30d", "¥19.90"),
    ] {
        assert!(
            html.contains(&format!("data-figure=\"{id}\">{v}<")),
            "{id}: {html}"
        );
    }
    let html = op.page(&app, "/admin/dashboard/articles").await;
    for (id, v) in [
        ("sales-revenue", "¥19.90"),
        ("sales-paid-orders", "1"),
        ("sales-buyers", "1"),
        ("sales-average-order", "¥19.90"),
        ("article-rust-101-paid", "1"),
        ("article-rust-101-revenue", "¥19.90"),
    ] {
        assert!(
            html.contains(&format!("data-figure=\"{id}\">{v}<")),
            "{id}: {html}"
        );
    }
    csv_matches_page(&app, &op, "/admin/dashboard/articles").await;
}

/// The assistant's day counters as the pipeline counts them: on the account's days, some merged
/// into the tree, some still in memory.
#[tokio::test]
async fn the_assistant_page_shows_questions_answers_by_path_refusals_and_tokens_per_day() {
    use mpgate::store::Counter;
    let app = dash_app().await;
    let store = app.gateway.store();
    let today = app.gateway.today(chrono::Utc::now());
    let yesterday = today.pred_opt().unwrap();
    let long_ago = today - chrono::Duration::days(40);
    let question = |rule: &str| Counter::AssistantQuestion { rule: rule.into() };
    let answer = |path: &str| Counter::AssistantAnswer { path: path.into() };
    let refused = |reason: &str| Counter::AssistantRefused {
        reason: reason.into(),
    };
    store.count(question("course-ta"), yesterday, 5);
    store.count(answer("passive"), yesterday, 3);
    store.count(answer("customer_service"), yesterday, 1);
    store.count(answer("fallback"), yesterday, 1);
    store.count(refused("quota"), yesterday, 2);
    store.count(Counter::AssistantTokens, yesterday, 1500);
    store.count(question("course-ta"), long_ago, 7);
    store.count(Counter::AssistantTokens, long_ago, 900);
    store.flush_counters().unwrap();
    // Today's, not yet merged: the page reads them too.
    store.count(question("course-ta"), today, 2);
    store.count(question("members-faq"), today, 1);
    store.count(answer("retry_held"), today, 1);
    store.count(answer("pull"), today, 1);
    store.count(answer("passive"), today, 1);
    store.count(refused("teaser"), today, 4);
    store.count(refused("blocked"), today, 1);
    store.count(refused("budget"), today, 1);
    store.count(refused("rate"), today, 1);
    store.count(Counter::AssistantTokens, today, 250);

    let op = sign_in(&app).await;
    let html = op.page(&app, "/admin/dashboard/assistant").await;
    assert!(
        html.contains("dashboard&#x2f;assistant\" aria-current=\"page\">Assistant</a>"),
        "in the nav: {html}"
    );
    let shows = |html: &str, id: &str, v: &str| {
        assert!(
            html.contains(&format!("data-figure=\"{id}\">{v}<")),
            "{id} = {v}: {html}"
        );
    };
    for (what, v) in [
        ("questions", "8"),
        ("answers", "8"),
        ("passive", "4"),
        ("retry-held", "1"),
        ("customer-service", "1"),
        ("pull", "1"),
        ("fallback", "1"),
        ("refused", "9"),
        ("teaser", "4"),
        ("quota", "2"),
        ("budget", "1"),
        ("rate", "1"),
        ("blocked", "1"),
        ("tokens", "1750"),
    ] {
        shows(&html, &format!("assistant-total-{what}"), v);
    }
    let d = |day: chrono::NaiveDate, what: &str| format!("assistant-day-{day}-{what}");
    shows(&html, &d(today, "questions"), "3");
    shows(&html, &d(today, "tokens"), "250");
    shows(&html, &d(yesterday, "passive"), "3");
    shows(&html, &d(yesterday, "quota"), "2");
    shows(&html, "assistant-rule-course-ta-questions", "7");
    shows(&html, "assistant-rule-members-faq-questions", "1");
    assert!(!html.contains(&long_ago.to_string()), "outside 30 days");
    // Every table downloads as it shows: 1 totals row, 30 days, 2 rules.
    assert_eq!(
        csv_matches_page(&app, &op, "/admin/dashboard/assistant").await,
        1 + 30 + 2
    );
    let days = csv_of(&app, &op, "/admin/dashboard/assistant", "days").await;
    assert_eq!(
        days[0],
        [
            "day",
            "questions",
            "answers",
            "passive",
            "retry-held",
            "customer service",
            "pull (continue word)",
            "fallback",
            "refused",
            "teaser",
            "quota",
            "budget",
            "rate",
            "blocked",
            "tokens"
        ]
    );
    assert_eq!(
        days[2],
        [
            &yesterday.to_string(),
            "5",
            "5",
            "3",
            "0",
            "1",
            "0",
            "1",
            "2",
            "0",
            "2",
            "0",
            "0",
            "0",
            "1500"
        ]
    );

    // A longer range takes the day 40 days back in; a week holds the same as 30 days here.
    let html = op.page(&app, "/admin/dashboard/assistant?days=90").await;
    shows(&html, "assistant-total-questions", "15");
    shows(&html, "assistant-total-tokens", "2650");
    let html = op.page(&app, "/admin/dashboard/assistant?days=7").await;
    shows(&html, "assistant-total-questions", "8");
    let r = get(&app, "/admin/dashboard/assistant?days=2", Some(&op.cookie)).await;
    assert_eq!(r.status(), 400);
}
