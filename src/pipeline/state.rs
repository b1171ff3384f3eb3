//! What a push changes about its subscriber: the push and subscribe/unsubscribe counters,
//! subscribe and unsubscribe, activity, and the tags and rule-hit count a routing decision
//! adds. The rules decide; this module only writes down the consequences, through the store.
//!
//! May depend on `store`, `rules` (the decision) and `wechat` (the message).

use std::sync::Arc;

use chrono::NaiveDate;

use crate::rules::Decision;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::message::parse;

    fn push(rest: &str) -> Inbound {
        parse(&format!(
            "<xml><ToUserName>gh</ToUserName><FromUserName>oA</FromUserName><CreateTime>1</CreateTime>{rest}</xml>"
        ))
        .expect("a valid push")
    }

    #[test]
    fn messages_and_menu_taps_are_activity_reports_and_callbacks_are_not() {
        let event = |e: &str, more: &str| {
            push(&format!("<MsgType>event</MsgType><Event>{e}</Event>{more}"))
        };
        for active in [
            push("<MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId>"),
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
