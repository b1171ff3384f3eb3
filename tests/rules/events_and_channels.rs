//! Followers arrive through QR-code channels, press menu buttons, scan codes and share locations.

use super::*;

#[test]
fn subscribe_by_channel_and_first_time() {
    let rs = rules(
        r#"
        [[rule]]
        name = "course-new"
        when = { event = "subscribe", channel = ["course"], first_time = true }
        reply = { text = "new via {{ channel }}" }
        [[rule]]
        name = "course-any"
        when = { event = "subscribe", channel = ["course"] }
        reply = { text = "course again" }
        [[rule]]
        name = "returning"
        when = { event = "subscribe", first_time = false }
        reply = { text = "welcome back{% if subscribed_since %} since {{ subscribed_since }}{% endif %}" }
        [[rule]]
        name = "plain"
        when = { event = "subscribe" }
        reply = { text = "welcome" }
        "#,
    );
    let mut s = Sub::new();
    s.first_time = true;
    let now = friday_morning();
    let d = rs.route(&subscribe(Some("course")), &s.view(), now);
    assert_eq!(
        (winner(&d), reply_text(&d)),
        ("course-new", "new via course")
    );
    assert_eq!(
        d.why.to_string(),
        "subscribe via channel course (first time)"
    );
    assert_eq!(winner(&rs.route(&subscribe(None), &s.view(), now)), "plain");
    assert_eq!(
        winner(&rs.route(&subscribe(Some("other")), &s.view(), now)),
        "plain"
    );
    s.first_time = false;
    assert_eq!(
        winner(&rs.route(&subscribe(Some("course")), &s.view(), now)),
        "course-any"
    );
    // 2026-01-01 00:30 Shanghai is still 2025-12-31 in UTC: the date is in the account zone.
    s.since = Some(sh(2026, 1, 1, 0, 30).timestamp());
    let d = rs.route(&subscribe(None), &s.view(), now);
    assert_eq!(reply_text(&d), "welcome back since 2026-01-01");
}

#[test]
fn scan_click_scancode_and_location_events() {
    let rs = rules(
        r#"
        [[rule]]
        name = "scan"
        when = { scan = ["meetup"] }
        reply = { text = "scan {{ channel }}" }
        [[rule]]
        name = "about"
        when = { click = "ABOUT" }
        reply = { text = "about" }
        [[rule]]
        name = "checkin"
        when = { scancode = "CHECKIN", scan_result_prefix = "https://ok/" }
        reply = { text = "checked in" }
        tag = ["checked-in"]
        [[rule]]
        name = "loc"
        when = { location = true }
        tag = ["shares-location"]
        [[rule]]
        name = "view"
        when = { event = "view", key = ["https://example.com/camp"] }
        tag = ["viewed-camp"]
        "#,
    );
    let d = route(
        &rs,
        &event(Event::Scan {
            scene: "meetup".into(),
            ticket: None,
        }),
    );
    assert_eq!((winner(&d), reply_text(&d)), ("scan", "scan meetup"));
    assert_eq!(
        route(
            &rs,
            &event(Event::Scan {
                scene: "x".into(),
                ticket: None
            })
        )
        .rule,
        None
    );
    let d = route(
        &rs,
        &event(Event::Click {
            key: "ABOUT".into(),
        }),
    );
    assert_eq!(
        (winner(&d), d.why.to_string().as_str()),
        ("about", "CLICK key ABOUT")
    );
    let push = |result: &str| {
        event(Event::ScancodeWaitmsg {
            key: "CHECKIN".into(),
            scan_type: "qrcode".into(),
            scan_result: result.into(),
        })
    };
    assert_eq!(winner(&route(&rs, &push("https://ok/123"))), "checkin");
    assert_eq!(route(&rs, &push("https://evil/123")).rule, None);
    let d = route(
        &rs,
        &event(Event::Location {
            latitude: 1.0,
            longitude: 2.0,
            precision: 3.0,
        }),
    );
    assert_eq!(winner(&d), "loc");
    assert_eq!(
        (d.reply, d.add_tags),
        (Reply::None, vec!["shares-location".to_string()])
    );
    let d = route(
        &rs,
        &event(Event::View {
            url: "https://example.com/camp".into(),
            menu_id: None,
        }),
    );
    assert_eq!(winner(&d), "view");
}
