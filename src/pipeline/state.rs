//! What a push changes about its subscriber: the push and subscribe/unsubscribe counters,
//! subscribe and unsubscribe, activity, and the tags and rule-hit count a routing decision
//! adds, and the texts no rule answered. The rules decide; this module only writes down the
//! consequences, through the store.
//!
//! May depend on `store`, `rules` (the decision) and `wechat` (the message).

use std::sync::Arc;

use chrono::NaiveDate;

use crate::rules::{Decision, Why};
use crate::store::{Counter, Store, StoreError, Subscriber, Touch};
use crate::wechat::message::{Event, Inbound, InboundKind};
use crate::wechat::types::OpenId;

/// The subscriber as the rules see them after this push.
pub(super) struct Recorded {
    pub subscriber: Arc<Subscriber>,
    /// A first-ever follow (not a return).
    pub first_time: bool,
}

/// Counts the push and updates its subscriber. `None` for an unsubscribe: nothing can be shown
/// to someone who just left.
pub(super) fn record(
    store: &Store,
    inbound: &Inbound,
    at: i64,
    day: NaiveDate,
) -> Result<Option<Recorded>, StoreError> {
    let openid = &inbound.header.from_user;
    store.count(
        Counter::Push {
            msg_type: inbound.type_label().to_string(),
        },
        day,
        1,
    );
    Ok(Some(match &inbound.kind {
        InboundKind::Event(Event::Subscribe { scene, .. }) => {
            let out = store.subscribe_on(openid, scene.as_deref(), at, day)?;
            store.count(
                Counter::Subscribe {
                    channel: scene.clone().unwrap_or_default(),
                },
                day,
                1,
            );
            Recorded {
                subscriber: out.subscriber,
                first_time: out.first_time,
            }
        }
        InboundKind::Event(Event::Unsubscribe) => {
            let channel = store
                .subscriber(openid)?
                .and_then(|s| s.channel)
                .unwrap_or_default();
            store.unsubscribe_on(openid, at, day)?;
            store.count(Counter::Unsubscribe { channel }, day, 1);
            return Ok(None);
        }
        _ => Recorded {
            subscriber: store.touch_on(
                openid,
                Touch {
                    at,
                    day,
                    user_message: inbound.is_user_message(),
                    active: is_active(inbound),
                },
            )?,
            first_time: false,
        },
    }))
}

/// Activity for retention: a user message or a menu interaction (a tap on a menu button, a
/// scan, photo or location picked from the menu). Not subscribe/unsubscribe, QR scans by
/// followers, LOCATION reports, or platform callbacks (template and mass-send results, …).
fn is_active(inbound: &Inbound) -> bool {
    match &inbound.kind {
        InboundKind::Event(e) => matches!(
            e,
            Event::Click { .. }
                | Event::View { .. }
                | Event::ViewMiniprogram { .. }
                | Event::ScancodePush { .. }
                | Event::ScancodeWaitmsg { .. }
                | Event::PicSysphoto { .. }
                | Event::PicPhotoOrAlbum { .. }
                | Event::PicWeixin { .. }
                | Event::LocationSelect { .. }
        ),
        _ => true,
    }
}

/// Writes down what the rules decided about the subscriber: the rule hit and new tags.
pub(super) fn apply(
    store: &Store,
    openid: &OpenId,
    decision: &Decision,
    day: NaiveDate,
) -> Result<(), StoreError> {
    if let Some(rule) = &decision.rule {
        store.count(Counter::RuleHit { rule: rule.clone() }, day, 1);
    }
    if !decision.add_tags.is_empty() {
        store.add_tags(openid, &decision.add_tags)?;
    }
    Ok(())
}

/// Counts the text of a user message no rule answered (the fallback's, or nobody's), without
/// its sender, for the operators' list of what to add keywords for. Normalised exactly as the
/// rules compared it; the store masks and cuts it. Called only once the rules routed the push:
/// a message a hand-off took is answered by a person.
pub(super) fn note_unanswered(
    store: &Store,
    inbound: &Inbound,
    decision: &Decision,
    day: NaiveDate,
) {
    // A fallback rule that asks the assistant answers the text: not an unanswered one.
    if !matches!(decision.why, Why::Fallback | Why::NoRule)
        || matches!(decision.special, Some(crate::rules::Special::Assistant(_)))
    {
        return;
    }
    if let Some(text) = inbound.text_for_matching() {
        store.unanswered_count(&crate::rules::normalize(text), day);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use crate::wechat::message::parse;
    use crate::wechat::message::Header;
    use crate::wechat::reply::Reply;
    use crate::wechat::types::MsgId;

    fn push(kind: InboundKind) -> Inbound {
        Inbound {
            header: Header {
                to_user: "gh_test".into(),
                from_user: OpenId::new("oStateTest"),
                create_time: 1,
            },
            kind,
        }
    }

    fn text(content: &str) -> Inbound {
        push(InboundKind::Text {
            msg_id: MsgId::new(1),
            content: content.into(),
            msg_data_id: None,
            idx: None,
        })
    }

    fn decided(why: Why) -> Decision {
        Decision {
            rule: None,
            why,
            reply: Reply::None,
            add_tags: Vec::new(),
            special: None,
        }
    }

    #[test]
    fn only_texts_the_fallback_or_no_rule_took_are_noted_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        note_unanswered(
            &store,
            &text(" ＨＥＬＬＯ？ "),
            &decided(Why::Fallback),
            day,
        );
        note_unanswered(&store, &text("hello?"), &decided(Why::NoRule), day);
        // A voice message's recognition text is what the rules matched on.
        let voice = push(InboundKind::Voice {
            msg_id: MsgId::new(2),
            media_id: "m".into(),
            format: "amr".into(),
            recognition: Some("Hello？".into()),
        });
        note_unanswered(&store, &voice, &decided(Why::Fallback), day);
        // Without recognition, or answered by a rule: nothing.
        let silent = push(InboundKind::Voice {
            msg_id: MsgId::new(3),
            media_id: "m".into(),
            format: "amr".into(),
            recognition: None,
        });
        note_unanswered(&store, &silent, &decided(Why::Fallback), day);
        note_unanswered(
            &store,
            &text("price"),
            &decided(Why::Exact("price".into())),
            day,
        );
        note_unanswered(&store, &text("anything"), &decided(Why::Any), day);
        assert_eq!(
            store.unanswered_top(day, day, 10).unwrap(),
            vec![("hello?".to_string(), 3, day)]
        );
    }

    fn parsed(rest: &str) -> Inbound {
        parse(&format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>oA</FromUserName><CreateTime>1</CreateTime>{rest}</xml>"
        ))
        .expect("a valid push")
    }

    #[test]
    fn messages_and_menu_taps_are_activity_reports_and_callbacks_are_not() {
        let event = |e: &str, more: &str| {
            parsed(&format!("<MsgType>event</MsgType><Event>{e}</Event>{more}"))
        };
        for active in [
            parsed("<MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId>"),
            event("CLICK", "<EventKey>K</EventKey>"),
            event("VIEW", "<EventKey>https://x.test/</EventKey>"),
            event("scancode_push", "<EventKey>K</EventKey><ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>r</ScanResult></ScanCodeInfo>"),
            event("location_select", "<EventKey>K</EventKey><SendLocationInfo><Location_X>1</Location_X><Location_Y>2</Location_Y><Scale>15</Scale><Label>l</Label><Poiname>p</Poiname></SendLocationInfo>"),
        ] {
            assert!(is_active(&active), "{active:?}");
        }
        for passive in [
            event("subscribe", ""),
            event("unsubscribe", ""),
            event("SCAN", "<EventKey>42</EventKey><Ticket>t</Ticket>"),
            event(
                "LOCATION",
                "<Latitude>1</Latitude><Longitude>2</Longitude><Precision>3</Precision>",
            ),
            event(
                "TEMPLATESENDJOBFINISH",
                "<MsgID>7</MsgID><Status>success</Status>",
            ),
        ] {
            assert!(!is_active(&passive), "{passive:?}");
        }
    }
}
