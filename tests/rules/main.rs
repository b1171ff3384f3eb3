//! The rules engine as operators and the pipeline see it: keywords.toml in, decisions out.
//!
//! One test binary; one module per story. The helpers below are shared by all of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mpgate::reload::LiveRules;
use mpgate::rules::cli::{self, SimulateArgs};
use mpgate::rules::{Decision, RuleSet, Severity, Special, SubscriberView};
use mpgate::wechat::message::{Event, Header, Inbound, InboundKind};
use mpgate::wechat::names::EventType;
use mpgate::wechat::reply::Reply;
use mpgate::wechat::types::{MsgId, OpenId};

mod actions;
mod assistant;
mod broken_files;
mod events_and_channels;
mod hot_reload;
mod matching;
mod operator_commands;
mod paywall_page;
mod prices;
mod shadow_warnings;
mod shipped_example;
mod time_windows;

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

/// `mpgate check` with no data dir behind the rules: nobody holds a grant.
fn no_grants() -> cli::GrantsSeen {
    cli::GrantsSeen::Known(Default::default())
}

fn winner(d: &Decision) -> &str {
    d.rule.as_deref().unwrap_or("<none>")
}
