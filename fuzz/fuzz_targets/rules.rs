//! keywords.toml compilation on any text: `RuleSet::from_source` answers rules or diagnostics and
//! never panics, every diagnostic prints, and a rule set that compiles routes a few pushes (a
//! text that is the file's first quoted string, so keywords match; a first-time subscribe
//! through a QR channel, a menu click) without panicking.
#![no_main]

use std::path::Path;

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use mpgate::rules::{RuleSet, SubscriberView};
use mpgate::wechat::message::{Event, Header, Inbound, InboundKind};
use mpgate::wechat::types::{MsgId, OpenId};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: the file's own templates are all there is.
    let loaded =
        match RuleSet::from_source(src, Path::new("/nonexistent/mpgate-fuzz/keywords.toml")) {
            Ok(loaded) => loaded,
            Err(errors) => {
                assert!(
                    !errors.0.is_empty(),
                    "refused without a diagnostic: {src:?}"
                );
                let _ = errors.to_string();
                return;
            }
        };
    for w in &loaded.warnings {
        let _ = w.to_string();
    }
    let rules = &loaded.rules;
    let _ = (rules.menu_json(), rules.handoff(), rules.articles().len());

    let openid = OpenId::parse("oFuzz_subscriber").expect("a valid openid");
    let header = Header {
        to_user: "gh_fuzz".into(),
        from_user: openid.clone(),
        create_time: 1_767_225_600,
    };
    let keyword = src.split('"').nth(1).unwrap_or("hello").to_string();
    let pushes = [
        InboundKind::Text {
            msg_id: MsgId::new(1),
            content: keyword,
            msg_data_id: None,
            idx: None,
        },
        InboundKind::Event(Event::Subscribe {
            scene: Some("course2026".into()),
            ticket: None,
            event_key: None,
        }),
        InboundKind::Event(Event::Click {
            key: "ABOUT".into(),
        }),
    ];
    let tags = ["vip".to_string()];
    let sub = SubscriberView {
        openid: &openid,
        first_time: true,
        channel: Some("course2026"),
        tags: &tags,
        subscribed_since: Some(1_767_225_600),
    };
    let now = DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time");
    for kind in pushes {
        let msg = Inbound {
            header: header.clone(),
            kind,
        };
        let d = rules.route(&msg, &sub, now);
        let _ = d.why.to_string();
    }
});
