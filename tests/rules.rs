//! The rules engine as operators and the pipeline see it: keywords.toml in, decisions out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mpgate::reload::LiveRules;
use mpgate::rules::cli::{self, SimulateArgs};
use mpgate::rules::{Decision, RuleSet, Severity, Special, SubscriberView};
use mpgate::wechat::message::{Event, Header, Inbound, InboundKind};
use mpgate::wechat::reply::Reply;
use mpgate::wechat::types::{MsgId, OpenId};

// ── helpers ─────────────────────────────────────────────────────────────────

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    manifest().join("tests/fixtures/keywords")
}

fn rules(src: &str) -> RuleSet {
    match RuleSet::from_source(src, Path::new("/nonexistent/keywords.toml")) {
        Ok(l) => l.rules,
        Err(e) => panic!("rules did not load:\n{e}"),
    }
}

/// A time written in Shanghai local time.
fn sh(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid local time")
        .with_timezone(&Utc)
}

/// Friday 2026-11-20 10:00 in Shanghai.
fn friday_morning() -> DateTime<Utc> {
    sh(2026, 11, 20, 10, 0)
}

fn header() -> Header {
    Header {
        to_user: "gh_test".into(),
        from_user: OpenId::new("o_user_1"),
        create_time: 1_700_000_000,
    }
}

fn text(s: &str) -> Inbound {
    Inbound {
        header: header(),
        kind: InboundKind::Text {
            msg_id: MsgId::new(1),
            content: s.into(),
            msg_data_id: None,
            idx: None,
        },
    }
}

fn voice(recognition: Option<&str>) -> Inbound {
    Inbound {
        header: header(),
        kind: InboundKind::Voice {
            msg_id: MsgId::new(2),
            media_id: "m".into(),
            format: "amr".into(),
            recognition: recognition.map(str::to_string),
        },
    }
}

fn image() -> Inbound {
    Inbound {
        header: header(),
        kind: InboundKind::Image {
            msg_id: MsgId::new(3),
            pic_url: "https://example.com/p.jpg".into(),
            media_id: "m".into(),
        },
    }
}

fn event(e: Event) -> Inbound {
    Inbound {
        header: header(),
        kind: InboundKind::Event(e),
    }
}

fn subscribe(scene: Option<&str>) -> Inbound {
    event(Event::Subscribe {
        scene: scene.map(str::to_string),
        ticket: None,
        event_key: None,
    })
}

struct Sub {
    openid: OpenId,
    first_time: bool,
    channel: Option<String>,
    tags: Vec<String>,
    since: Option<i64>,
}

impl Sub {
    fn new() -> Self {
        Sub {
            openid: OpenId::new("o_user_1"),
            first_time: false,
            channel: None,
            tags: Vec::new(),
            since: None,
        }
    }
    fn view(&self) -> SubscriberView<'_> {
        SubscriberView {
            openid: &self.openid,
            first_time: self.first_time,
            channel: self.channel.as_deref(),
            tags: &self.tags,
            subscribed_since: self.since,
        }
    }
}

fn route_at(rs: &RuleSet, msg: &Inbound, now: DateTime<Utc>) -> Decision {
    rs.route(msg, &Sub::new().view(), now)
}

fn route(rs: &RuleSet, msg: &Inbound) -> Decision {
    route_at(rs, msg, friday_morning())
}

fn reply_text(d: &Decision) -> &str {
    match &d.reply {
        Reply::Text { content } => content,
        other => panic!("expected a text reply, got {other:?} (rule {:?})", d.rule),
    }
}

fn winner(d: &Decision) -> &str {
    d.rule.as_deref().unwrap_or("<none>")
}

// ── the shipped example ─────────────────────────────────────────────────────

#[test]
fn shipped_keywords_toml_passes_check_without_warnings() {
    let path = manifest().join("keywords.toml");
    let mut out = Vec::new();
    let code = cli::check(&path, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("warning"), "{text}");
    assert!(text.starts_with("ok: "), "{text}");
    assert!(text.contains("menu with 3 buttons"), "{text}");
}

#[test]
fn shipped_keywords_toml_routes_the_advertised_keywords() {
    let loaded = RuleSet::load(&manifest().join("keywords.toml")).expect("loads");
    let rs = loaded.rules;
    assert_eq!(winner(&route(&rs, &text("价格"))), "price");
    assert_eq!(winner(&route(&rs, &text("有优惠吗"))), "discount");
    assert_eq!(winner(&route(&rs, &text("想学 Rust"))), "rust-article");
    assert_eq!(winner(&route(&rs, &text("人工"))), "human");
    assert_eq!(winner(&route(&rs, &text("订单 123456"))), "order-status");
    assert_eq!(
        reply_text(&route(&rs, &text("订单 123456"))),
        "订单 123456 已收到，我们会在 24 小时内核对后回复你。"
    );
    assert_eq!(winner(&route(&rs, &text("随便说点什么"))), "fallback");
    assert!(reply_text(&route(&rs, &text("随便说点什么"))).contains("「随便说点什么」"));
    let mut s = Sub::new();
    s.first_time = true;
    let d = rs.route(&subscribe(Some("course2026")), &s.view(), friday_morning());
    assert_eq!(winner(&d), "welcome-course-qr");
    assert_eq!(d.add_tags, vec!["from-course-qr".to_string()]);
    let d = rs.route(&subscribe(None), &s.view(), friday_morning());
    assert_eq!(winner(&d), "welcome");
    assert!(
        reply_text(&d).contains("今天是 2026-11-20"),
        "{}",
        reply_text(&d)
    );
    assert!(rs.is_exit_keyword(" 结束 "));
    assert_eq!(rs.handoff().idle_timeout_minutes, 30);
    assert!(rs.article("rust-101").is_some());
}

// ── matching semantics ──────────────────────────────────────────────────────

#[test]
fn first_matching_rule_wins_in_file_order() {
    let rs = rules(
        r#"
        [[rule]]
        name = "broad"
        when = { contains = ["课"] }
        reply = { text = "broad" }
        [[rule]]
        name = "narrow"
        when = { exact = ["课程表"] }
        reply = { text = "narrow" }
        [[rule]]
        name = "other"
        when = { exact = ["目录"] }
        reply = { text = "other" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &text("课程表"))), "broad");
    assert_eq!(winner(&route(&rs, &text("目录"))), "other");
}

#[test]
fn text_is_normalised_nfkc_lowercase_trimmed() {
    let rs = rules(
        r#"
        [[rule]]
        name = "abc"
        when = { exact = ["ABC1"] }
        reply = { text = "ok" }
        [[rule]]
        name = "full-width-keyword"
        when = { exact = ["ｐｒｉｃｅ"] }
        reply = { text = "ok" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &text("  ａｂｃ１ \n"))), "abc");
    assert_eq!(winner(&route(&rs, &text("abc1"))), "abc");
    assert_eq!(winner(&route(&rs, &text("PRICE"))), "full-width-keyword");
    assert_eq!(route(&rs, &text("abc12")).rule, None);
}

#[test]
fn exact_prefix_contains_and_regex_differ() {
    let rs = rules(
        r#"
        [[rule]]
        name = "exact"
        when = { exact = ["hi"] }
        reply = { text = "exact" }
        [[rule]]
        name = "prefix"
        when = { prefix = ["help"] }
        reply = { text = "prefix" }
        [[rule]]
        name = "contains"
        when = { contains = ["price"] }
        reply = { text = "contains" }
        [[rule]]
        name = "regex"
        when = { regex = ['^(\d{3})-(?P<tail>\d+)$'] }
        reply = { text = "{{ captures[1] }}/{{ groups.tail }}/{{ keyword }}" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &text("hi"))), "exact");
    assert_eq!(route(&rs, &text("hi there")).rule, None);
    assert_eq!(winner(&route(&rs, &text("help me"))), "prefix");
    assert_eq!(route(&rs, &text("please help")).rule, None);
    assert_eq!(winner(&route(&rs, &text("what is the PRICE?"))), "contains");
    let d = route(&rs, &text("123-4567"));
    assert_eq!(winner(&d), "regex");
    assert_eq!(reply_text(&d), "123/4567/123-4567");
    assert!(d.why.to_string().starts_with("regex"), "{}", d.why);
    assert_eq!(route(&rs, &text("12-4567")).rule, None);
}

#[test]
fn regex_is_case_insensitive_over_normalised_text() {
    let rs = rules(
        r#"
        [[rule]]
        name = "order"
        when = { regex = ['^ORDER\s+(\d+)$'] }
        reply = { text = "No.{{ captures[1] }}" }
        "#,
    );
    let d = route(&rs, &text(" Ｏｒｄｅｒ ４２ "));
    assert_eq!(winner(&d), "order");
    assert_eq!(reply_text(&d), "No.42");
}

#[test]
fn keyword_variable_is_the_keyword_as_written() {
    let rs = rules(
        r#"
        [[rule]]
        name = "price"
        when = { exact = ["价格", "Price"] }
        reply = { text = "[{{ keyword }}] [{{ text }}]" }
        "#,
    );
    let d = route(&rs, &text(" PRICE "));
    assert_eq!(reply_text(&d), "[Price] [ PRICE ]");
    assert_eq!(d.why.to_string(), "exact keyword \"Price\"");
}

#[test]
fn voice_matches_on_recognition_and_by_msg_type() {
    let rs = rules(
        r#"
        [[rule]]
        name = "price"
        when = { contains = ["价格"] }
        reply = { text = "price" }
        [[rule]]
        name = "any-voice"
        when = { msg_type = "voice" }
        reply = { text = "voice" }
        "#,
    );
    assert_eq!(
        winner(&route(&rs, &voice(Some("请问价格是多少？")))),
        "price"
    );
    assert_eq!(winner(&route(&rs, &voice(None))), "any-voice");
    assert_eq!(winner(&route(&rs, &voice(Some("你好")))), "any-voice");
}

#[test]
fn msg_type_rules_and_fallback_for_user_messages_only() {
    let rs = rules(
        r#"
        [[rule]]
        name = "photo"
        when = { msg_type = ["image", "video"] }
        reply = { text = "photo" }
        [[rule]]
        name = "fallback"
        fallback = true
        reply = { text = "fallback" }
        "#,
    );
    assert_eq!(winner(&route(&rs, &image())), "photo");
    assert_eq!(winner(&route(&rs, &voice(None))), "fallback");
    assert_eq!(winner(&route(&rs, &text("zzz"))), "fallback");
    // Events and unknown message types never reach the fallback.
    let d = route(&rs, &event(Event::Click { key: "NOPE".into() }));
    assert_eq!((d.rule, d.reply), (None, Reply::None));
    let unknown = Inbound {
        header: header(),
        kind: InboundKind::Unknown {
            msg_type: "miniprogrampage".into(),
            msg_id: None,
        },
    };
    assert_eq!(route(&rs, &unknown).rule, None);
    let unknown_event = event(Event::Unknown {
        event: "new_thing".into(),
        event_key: None,
    });
    assert_eq!(route(&rs, &unknown_event).rule, None);
}

#[test]
fn no_match_and_no_fallback_is_reply_none() {
    let rs = rules(
        r#"
        [[rule]]
        name = "a"
        when = { exact = ["a"] }
        reply = { text = "a" }
        "#,
    );
    let d = route(&rs, &text("b"));
    assert_eq!(d.rule, None);
    assert_eq!(d.reply, Reply::None);
    assert!(d.add_tags.is_empty());
}

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

#[test]
fn time_windows_in_account_zone_including_past_midnight() {
    let rs = rules(
        r#"
        [account]
        timezone = "Asia/Shanghai"
        [[rule]]
        name = "office"
        when = { exact = ["hi"], hours = { days = "mon-fri", from = "09:00", to = "18:00" } }
        reply = { text = "office" }
        [[rule]]
        name = "night-owl"
        when = { exact = ["hi"], hours = { days = "fri", from = "22:00", to = "02:00" } }
        reply = { text = "night" }
        [[rule]]
        name = "other"
        when = { exact = ["hi"] }
        reply = { text = "other" }
        "#,
    );
    let hi = text("hi");
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 20, 9, 0))),
        "office"
    );
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 20, 18, 0))),
        "other"
    );
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 21, 10, 0))),
        "other"
    ); // Saturday
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 20, 23, 30))),
        "night-owl"
    );
    assert_eq!(
        winner(&route_at(&rs, &hi, sh(2026, 11, 21, 1, 59))),
        "night-owl"
    ); // Sat, Friday night
    assert_eq!(winner(&route_at(&rs, &hi, sh(2026, 11, 22, 1, 0))), "other"); // Sun 01:00
                                                                              // 03:00 UTC on Friday is 11:00 in Shanghai: office hours, though 03:00 is not.
    let utc = Utc
        .with_ymd_and_hms(2026, 11, 20, 3, 0, 0)
        .single()
        .expect("t");
    assert_eq!(winner(&route_at(&rs, &hi, utc)), "office");
}

#[test]
fn now_variable_is_in_account_zone() {
    let rs = rules(
        r#"
        [account]
        timezone = "America/New_York"
        [[rule]]
        name = "clock"
        when = { exact = ["time"] }
        reply = { text = "{{ now }}" }
        "#,
    );
    let now = Utc
        .with_ymd_and_hms(2026, 11, 20, 2, 5, 0)
        .single()
        .expect("t");
    assert_eq!(
        reply_text(&route_at(&rs, &text("time"), now)),
        "2026-11-19 21:05"
    );
    assert_eq!(rs.timezone(), chrono_tz::America::New_York);
}

#[test]
fn random_replies_pick_from_the_set() {
    let rs = rules(
        r#"
        [[rule]]
        name = "greet"
        when = { exact = ["hi"] }
        replies = [ { text = "one" }, { text = "two" }, { text = "three" } ]
        "#,
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let d = route(&rs, &text("hi"));
        let t = reply_text(&d).to_string();
        assert!(["one", "two", "three"].contains(&t.as_str()), "{t}");
        seen.insert(t);
    }
    // Each miss has probability (2/3)^300: all three show up.
    assert_eq!(seen.len(), 3);
}

#[test]
fn tags_with_and_without_reply() {
    let rs = rules(
        r#"
        [[rule]]
        name = "tag-and-reply"
        when = { contains = ["vip"] }
        reply = { text = "welcome vip {{ tags|join(',') }}" }
        tag = ["vip", "asked"]
        [[rule]]
        name = "tag-only"
        when = { contains = ["newsletter"] }
        tag = "newsletter"
        "#,
    );
    let mut s = Sub::new();
    s.tags = vec!["old".into()];
    let d = rs.route(&text("I am VIP"), &s.view(), friday_morning());
    assert_eq!(d.add_tags, vec!["vip".to_string(), "asked".to_string()]);
    assert_eq!(reply_text(&d), "welcome vip old");
    let d = route(&rs, &text("newsletter please"));
    assert_eq!((winner(&d), &d.reply), ("tag-only", &Reply::None));
    assert_eq!(d.add_tags, vec!["newsletter".to_string()]);
}

#[test]
fn article_and_handoff_are_special_actions() {
    let rs = rules(
        r#"
        [[rule]]
        name = "rust"
        when = { contains = ["rust"] }
        article = "rust-101"
        [[rule]]
        name = "human"
        when = { exact = ["人工"] }
        handoff = { kf_account = "alice@gh_x", notice = "转接中 {{ openid }}", hours = { days = "mon-sat", from = "09:00", to = "21:00" }, offline = "下班了" }
        [[article]]
        id = "rust-101"
        title = "Rust"
        body_url = "https://example.com/rust"
        [handoff]
        exit_keywords = ["结束"]
        idle_timeout_minutes = 15
        "#,
    );
    let d = route(&rs, &text("learn Rust"));
    assert_eq!(d.reply, Reply::None);
    assert_eq!(
        d.special,
        Some(Special::Article {
            id: "rust-101".into()
        })
    );
    let d = route_at(&rs, &text("人工"), sh(2026, 11, 20, 10, 0));
    let Some(Special::Handoff(h)) = d.special else {
        panic!("expected handoff, got {:?}", d.special)
    };
    assert_eq!(h.kf_account.as_deref(), Some("alice@gh_x"));
    assert_eq!(h.notice.as_deref(), Some("转接中 o_user_1"));
    assert!(h.in_hours);
    assert_eq!(h.offline.as_deref(), Some("下班了"));
    let d = route_at(&rs, &text("人工"), sh(2026, 11, 22, 10, 0)); // Sunday
    assert!(matches!(d.special, Some(Special::Handoff(ref h)) if !h.in_hours));
    assert_eq!(rs.handoff().idle_timeout_minutes, 15);
    assert!(rs.is_exit_keyword("結束") || rs.is_exit_keyword("结束"));
}

#[test]
fn every_reply_kind_compiles_and_renders() {
    let rs = rules(
        r#"
        [[rule]]
        name = "image"
        when = { exact = ["image"] }
        reply = { image = "MEDIA_I" }
        [[rule]]
        name = "voice"
        when = { exact = ["voice"] }
        reply = { voice = "MEDIA_V" }
        [[rule]]
        name = "video"
        when = { exact = ["video"] }
        reply = { video = { media_id = "MEDIA_VID", title = "T" } }
        [[rule]]
        name = "music"
        when = { exact = ["music"] }
        reply = { music = { title = "song", music_url = "https://m/1.mp3", thumb_media_id = "TH" } }
        [[rule]]
        name = "news"
        when = { exact = ["news"] }
        reply = { news = [ { title = "Hi {{ keyword }}", description = "d", pic_url = "https://p/1.jpg", url = "https://u/1" } ] }
        [[rule]]
        name = "transfer"
        when = { exact = ["transfer"] }
        reply = { transfer = { kf_account = "bob@gh_x" } }
        "#,
    );
    assert_eq!(
        route(&rs, &text("image")).reply,
        Reply::Image {
            media_id: "MEDIA_I".into()
        }
    );
    assert_eq!(
        route(&rs, &text("voice")).reply,
        Reply::Voice {
            media_id: "MEDIA_V".into()
        }
    );
    assert!(
        matches!(route(&rs, &text("video")).reply, Reply::Video { ref media_id, .. } if media_id == "MEDIA_VID")
    );
    assert!(
        matches!(route(&rs, &text("music")).reply, Reply::Music { ref thumb_media_id, .. } if thumb_media_id == "TH")
    );
    match route(&rs, &text("news")).reply {
        Reply::News { articles } => assert_eq!(articles[0].title, "Hi news"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        route(&rs, &text("transfer")).reply,
        Reply::TransferCustomerService {
            kf_account: Some("bob@gh_x".into())
        }
    );
}

#[test]
fn file_templates_are_rendered_from_the_templates_dir() {
    let path = fixtures().join("valid_with_template.toml");
    let rs = RuleSet::load(&path).expect("loads").rules;
    let d = route(&rs, &text("hello"));
    // minijinja drops the one trailing newline every text editor adds.
    assert_eq!(reply_text(&d), "hello o_user_1");
    assert_eq!(rs.version().len(), 12);
}

// ── diagnostics ─────────────────────────────────────────────────────────────

/// Each broken file: (file, line:column, message substring, help substring).
const BROKEN: &[(&str, &str, &str, &str)] = &[
    (
        "unknown_field.toml",
        "4:1",
        "unknown field `replly`",
        "did you mean `reply`?",
    ),
    (
        "unknown_reply_kind.toml",
        "4:11",
        "unknown reply kind `txt`",
        "did you mean `text`?",
    ),
    ("syntax_error.toml", "2:14", "invalid basic string", ""),
    (
        "bad_regex.toml",
        "3:19",
        "bad regex `^order(\\d+$`",
        "regex",
    ),
    (
        "missing_template.toml",
        "4:22",
        "template file `nope.txt` not found",
        "create",
    ),
    (
        "inline_undefined_var.toml",
        "4:18",
        "template error",
        "variables: openid",
    ),
    (
        "unknown_article.toml",
        "4:11",
        "unknown article id `rust-10`",
        "did you mean `rust-101`?",
    ),
    (
        "duplicate_rule.toml",
        "7:8",
        "duplicate rule name `hello`",
        "line 2",
    ),
    (
        "duplicate_article.toml",
        "7:6",
        "duplicate article id `a`",
        "",
    ),
    (
        "two_fallbacks.toml",
        "8:12",
        "two fallback rules",
        "at most one",
    ),
    (
        "bad_window.toml",
        "3:61",
        "bad time window: bad time `25:00`",
        "hours = {",
    ),
    ("bad_days.toml", "3:43", "bad day list `mon-fry`", ""),
    (
        "unknown_timezone.toml",
        "2:12",
        "unknown time zone `Asia/Shanghia`",
        "IANA",
    ),
    (
        "menu_too_many_buttons.toml",
        "16:1",
        "4 top-level buttons",
        "sub_button",
    ),
    ("menu_too_many_sub_buttons.toml", "9:3", "6 sub-buttons", ""),
    ("menu_name_too_long.toml", "3:8", "36 bytes", "3 bytes"),
    (
        "menu_view_without_url.toml",
        "5:8",
        "`view` button `官网` needs `url`",
        "",
    ),
    ("menu_bad_url.toml", "4:7", "not http(s)", "https://"),
    (
        "menu_miniprogram_incomplete.toml",
        "2:8",
        "needs `pagepath`",
        "",
    ),
    (
        "handoff_without_config.toml",
        "4:11",
        "no [handoff] section",
        "exit_keywords",
    ),
    (
        "unknown_event.toml",
        "3:18",
        "unknown event `subscribed`",
        "did you mean `subscribe`?",
    ),
    (
        "reply_with_two_kinds.toml",
        "4:9",
        "a reply names exactly one kind",
        "replies = [...]",
    ),
];

#[test]
fn broken_files_report_position_message_and_help() {
    let mut failures = Vec::new();
    for (file, at, msg, help) in BROKEN {
        let path = fixtures().join(file);
        let err = match RuleSet::load(&path) {
            Ok(_) => {
                failures.push(format!("{file}: loaded without error"));
                continue;
            }
            Err(e) => e,
        };
        let (line, col) = at.split_once(':').expect("line:col");
        let hit = err.0.iter().find(|d| {
            d.severity == Severity::Error
                && format!("{}:{}", d.line, d.column) == *at
                && d.message.contains(msg)
                && d.help.as_deref().unwrap_or("").contains(help)
        });
        if hit.is_none() {
            failures.push(format!(
                "{file}: expected {line}:{col} `{msg}` / help `{help}`, got:\n{err}"
            ));
        }
        // The printed form is what operators see.
        let printed = err.to_string();
        let prefix = format!("{}:{at}: error: ", path.display());
        if !printed.contains(&prefix) {
            failures.push(format!("{file}: printed form lacks `{prefix}`:\n{printed}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn template_file_errors_point_into_the_template() {
    let err = RuleSet::load(&fixtures().join("template_file_syntax.toml")).expect_err("broken");
    let d = err
        .0
        .iter()
        .find(|d| d.file.ends_with("templates/broken.txt"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(d.severity, Severity::Error);
    assert!(d.message.contains("template error"), "{}", d.message);
    assert!(
        d.line >= 2,
        "block opened on line 2, reported line {}",
        d.line
    );
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let err = RuleSet::load(&fixtures().join("many_errors.toml")).expect_err("broken");
    let msgs: Vec<String> = err
        .0
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    let want = [
        "2:12 unknown time zone `Mars/Olympus`",
        "6:19 bad regex",
        "10:8 duplicate rule name `a`",
        "12:22 template file `missing.txt` not found",
    ];
    for w in want {
        assert!(
            msgs.iter().any(|m| m.starts_with(w)),
            "missing `{w}` in {msgs:#?}"
        );
    }
}

#[test]
fn check_prints_diagnostics_and_exits_1_on_errors() {
    let mut out = Vec::new();
    let code = cli::check(&fixtures().join("unknown_field.toml"), &mut out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 1);
    assert!(text.contains("unknown_field.toml:4:1: error: unknown field `replly`\n  help: did you mean `reply`? Allowed: "), "{text}");
}

#[test]
fn shadowed_rules_and_keywords_are_warned_about() {
    let loaded = RuleSet::load(&fixtures().join("shadowed.toml")).expect("warnings only");
    let w: Vec<String> = loaded
        .warnings
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    assert!(loaded
        .warnings
        .iter()
        .all(|d| d.severity == Severity::Warning));
    assert!(
        w.iter()
            .any(|m| m.starts_with("7:8 rule `exact-price` can never fire")
                && m.contains("`anything-about-price`")),
        "{w:#?}"
    );
    // Only one of hello-world's keywords is shadowed: the warning is on that keyword.
    assert!(
        w.iter().any(
            |m| m.starts_with("18:19 this keyword of rule `hello-world` never matches")
                && m.contains("prefix \"hello\"")
        ),
        "{w:#?}"
    );
    assert!(!w.iter().any(|m| m.contains("timed-other")), "{w:#?}");
    assert_eq!(w.len(), 2, "{w:#?}");
    let mut out = Vec::new();
    assert_eq!(cli::check(&fixtures().join("shadowed.toml"), &mut out), 0);
    assert!(String::from_utf8_lossy(&out).contains(": warning: "));
}

#[test]
fn catch_all_shadows_later_message_rules() {
    let res = RuleSet::from_source(
        r#"
        [[rule]]
        name = "everything"
        when = { any = true }
        reply = { text = "x" }
        [[rule]]
        name = "later"
        when = { exact = ["hi"] }
        reply = { text = "y" }
        [[rule]]
        name = "click"
        when = { click = "A" }
        reply = { text = "events are unaffected" }
        "#,
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect("loads");
    let w: Vec<&str> = res.warnings.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("rule `later` can never fire"), "{w:#?}");
}

// ── CLI ─────────────────────────────────────────────────────────────────────

#[test]
fn menu_show_prints_the_menu_create_body() {
    let mut out = Vec::new();
    assert_eq!(
        cli::menu_show(&manifest().join("keywords.toml"), &mut out),
        0
    );
    let json = String::from_utf8(out).expect("utf8");
    assert!(json.starts_with("{\n  \"button\": ["), "{json}");
    // Non-ASCII stays readable, and keys come in the platform's order.
    assert!(json.contains("\"name\": \"训练营\""), "{json}");
    let i_type = json.find("\"type\": \"view\"").expect("type");
    let i_name = json.find("\"name\": \"2026 训练营\"").expect("name");
    let i_url = json
        .find("\"url\": \"https://mp.example.com/camp/2026\"")
        .expect("url");
    assert!(i_type < i_name && i_name < i_url, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    assert_eq!(v["button"].as_array().map(Vec::len), Some(3));
    let rs = RuleSet::load(&manifest().join("keywords.toml"))
        .expect("loads")
        .rules;
    assert_eq!(rs.menu_json(), Some(v));
}

#[test]
fn simulate_prints_rule_reason_tags_and_reply() {
    let path = manifest().join("keywords.toml");
    let mut out = Vec::new();
    let args = SimulateArgs {
        event: Some("subscribe".into()),
        scene: Some("course2026".into()),
        first_time: true,
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.contains(
            "matched: rule `welcome-course-qr` (subscribe via channel course2026 (first time))"
        ),
        "{s}"
    );
    assert!(s.contains("tags added: from-course-qr"), "{s}");
    assert!(s.contains("欢迎来到码农成长营 2026 训练营"), "{s}");

    let mut out = Vec::new();
    let args = SimulateArgs {
        text: Some("价格".into()),
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.contains("matched: rule `price` (exact keyword \"价格\")"),
        "{s}"
    );

    let mut out = Vec::new();
    let args = SimulateArgs {
        click: Some("NO_SUCH_KEY".into()),
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    assert!(String::from_utf8_lossy(&out).contains("matched: nothing"));
}

// ── hot reload ──────────────────────────────────────────────────────────────

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
    let v2 = live.reload(&path).expect("v2 loads");
    assert_ne!(v1, v2);
    assert_eq!(live.current().version(), v2);
    assert_eq!(reply_text(&route(&live.current(), &text("hello"))), "v2");

    std::fs::write(&path, BROKEN_SRC).expect("write");
    let err = live.reload(&path).expect_err("broken");
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
    let task = tokio::spawn(
        live.clone()
            .watch(path.clone(), Duration::from_millis(100), rx),
    );
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

#[test]
fn every_unknown_field_is_reported_not_just_the_first() {
    let err = RuleSet::load(&fixtures().join("several_unknown_fields.toml")).expect_err("broken");
    let got: Vec<String> = err
        .0
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect();
    let want = [
        "4:1 unknown field `replly`",
        "8:1 unknown field `whenn`",
        "13:1 unknown field `titel`",
        "17:1 unknown field `colour`",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing `{w}` in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn event_rules_shadowed_by_an_earlier_unconditional_rule_are_warned_about() {
    let loaded = RuleSet::from_source(
        r#"
        [[rule]]
        name = "about"
        when = { click = "ABOUT" }
        reply = { text = "a" }
        [[rule]]
        name = "about-again"
        when = { click = "ABOUT" }
        reply = { text = "never" }
        [[rule]]
        name = "welcome-new"
        when = { event = "subscribe", first_time = true }
        reply = { text = "conditional: does not shadow" }
        [[rule]]
        name = "welcome"
        when = { event = "subscribe" }
        reply = { text = "w" }
        [[rule]]
        name = "welcome-qr"
        when = { event = "subscribe", channel = ["qr"] }
        reply = { text = "never" }
        "#,
        Path::new("/nonexistent/keywords.toml"),
    )
    .expect("loads");
    let w: Vec<&str> = loaded.warnings.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("rule `about-again` can never fire"),
        "{w:#?}"
    );
    assert!(
        w[1].starts_with("rule `welcome-qr` can never fire"),
        "{w:#?}"
    );
}

#[test]
fn news_replies_are_limited_to_eight_items() {
    let items = (0..9)
        .map(|i| format!("{{ title = \"t{i}\", url = \"https://e/{i}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let src = format!(
        "[[rule]]\nname = \"n\"\nwhen = {{ exact = [\"n\"] }}\nreply = {{ news = [ {items} ] }}\n"
    );
    let err =
        RuleSet::from_source(&src, Path::new("/nonexistent/keywords.toml")).expect_err("9 items");
    assert!(
        err.to_string()
            .contains("news reply has 9 items; the platform allows 1 to 8"),
        "{err}"
    );
}
