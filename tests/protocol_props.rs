//! Properties of the protocol layer over generated input: crypto round trips, no panics on
//! hostile bytes, `parse(to_xml(m)) == m`, reply hygiene, and the reply's head/tail split.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::message::{self, Event, Header, Inbound, InboundKind};
use mpgate::wechat::names::{EventType, MsgType};
use mpgate::wechat::reply::{self, Article, Reply, ReplyContext, TEXT_MAX_BYTES};
use mpgate::wechat::signature;
use mpgate::wechat::types::{AppId, MsgId, OpenId};
use mpgate::wechat::xml;
use proptest::prelude::*;

fn cipher() -> Cipher {
    Cipher::new(
        &EncodingAesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").expect("sample key"),
    )
}

/// Any char, weighted towards the ones that break XML: controls, `]]>` pieces, markup, space.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        2 => prop::char::range('\u{1}', '\u{1f}'),
        1 => prop::sample::select(vec![']', '>', '<', '&', ';', ' ', '\n', '\r', '\t', '中', '🎉', '\u{fffe}', '\u{ffff}']),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 0..max).prop_map(|cs| cs.into_iter().collect())
}

fn non_empty_text() -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 1..40).prop_map(|cs| cs.into_iter().collect())
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(non_empty_text())
}

/// Finite floats: they round-trip through `Display`.
fn coord() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        -180.0f64..180.0,
    ]
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(20), opt_text()).prop_map(|(scene, ticket)| Event::Subscribe {
            scene: Some(scene),
            ticket,
            event_key: None
        }),
        (
            prop::option::of(
                non_empty_text().prop_filter("not a qrscene key", |k| !k.starts_with("qrscene_"))
            ),
            opt_text()
        )
            .prop_map(|(event_key, ticket)| Event::Subscribe {
                scene: None,
                ticket,
                event_key
            }),
        Just(Event::Unsubscribe),
        (text(20), opt_text()).prop_map(|(scene, ticket)| Event::Scan { scene, ticket }),
        (coord(), coord(), coord()).prop_map(|(latitude, longitude, precision)| {
            Event::Location {
                latitude,
                longitude,
                precision,
            }
        }),
        text(30).prop_map(|key| Event::Click { key }),
        (text(30), opt_text()).prop_map(|(url, menu_id)| Event::View { url, menu_id }),
        (text(10), text(10), text(30)).prop_map(|(key, scan_type, scan_result)| {
            Event::ScancodeWaitmsg {
                key,
                scan_type,
                scan_result,
            }
        }),
        (text(10), prop::collection::vec(text(32), 0..4))
            .prop_map(|(key, pics)| Event::PicWeixin { key, pics }),
        (text(5), coord(), coord(), any::<i64>(), text(30), text(10)).prop_map(
            |(key, latitude, longitude, scale, label, poiname)| Event::LocationSelect {
                key,
                latitude,
                longitude,
                scale,
                label,
                poiname,
            }
        ),
        (
            any::<u64>(),
            text(12),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(id, status, total, filter, sent, error)| {
                Event::MassSendJobFinish {
                    msg_id: MsgId::new(id),
                    status,
                    total_count: total,
                    filter_count: filter,
                    sent_count: sent,
                    error_count: error,
                }
            }),
        (text(20), text(20)).prop_map(|(from_kf_account, to_kf_account)| {
            Event::KfSwitchSession {
                from_kf_account,
                to_kf_account,
            }
        }),
        (
            "[A-Za-z_]{1,20}".prop_filter("not a known event", |e| EventType::parse(e).is_none()),
            opt_text()
        )
            .prop_map(|(event, event_key)| Event::Unknown { event, event_key }),
    ]
}

fn kind_strategy() -> impl Strategy<Value = InboundKind> {
    prop_oneof![
        (any::<u64>(), text(200), opt_text(), opt_text()).prop_map(
            |(id, content, msg_data_id, idx)| InboundKind::Text {
                msg_id: MsgId::new(id),
                content,
                msg_data_id,
                idx,
            }
        ),
        (any::<u64>(), text(20), text(10), opt_text()).prop_map(
            |(id, media_id, format, recognition)| InboundKind::Voice {
                msg_id: MsgId::new(id),
                media_id,
                format,
                recognition,
            }
        ),
        (any::<u64>(), text(20), text(20)).prop_map(|(id, pic_url, media_id)| {
            InboundKind::Image {
                msg_id: MsgId::new(id),
                pic_url,
                media_id,
            }
        }),
        (any::<u64>(), coord(), coord(), any::<i64>(), text(40)).prop_map(
            |(id, latitude, longitude, scale, label)| InboundKind::Location {
                msg_id: MsgId::new(id),
                latitude,
                longitude,
                scale,
                label,
            }
        ),
        (any::<u64>(), text(20), text(40), text(40)).prop_map(|(id, title, description, url)| {
            InboundKind::Link {
                msg_id: MsgId::new(id),
                title,
                description,
                url,
            }
        }),
        (
            any::<u64>(),
            text(20),
            text(20),
            text(20),
            text(32),
            any::<u64>()
        )
            .prop_map(
                |(id, title, description, file_key, file_md5, file_total_len)| {
                    InboundKind::File {
                        msg_id: MsgId::new(id),
                        title,
                        description,
                        file_key,
                        file_md5,
                        file_total_len,
                    }
                }
            ),
        (
            "[a-z_]{1,16}".prop_filter("not a known type", |t| MsgType::parse(t).is_none()),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(msg_type, id)| InboundKind::Unknown {
                msg_type,
                msg_id: id.map(MsgId::new)
            }),
        event_strategy().prop_map(InboundKind::Event),
    ]
}

fn inbound_strategy() -> impl Strategy<Value = Inbound> {
    // Openids are parsed at the edge (1-64 of [A-Za-z0-9_-]); anything else is refused, which
    // `a_push_from_a_malformed_openid_is_refused_naming_the_field` checks.
    (
        text(30),
        "[A-Za-z0-9_-]{1,64}",
        any::<i64>(),
        kind_strategy(),
    )
        .prop_map(|(to_user, from_user, create_time, kind)| Inbound {
            header: Header {
                to_user,
                from_user: OpenId::new(from_user),
                create_time,
            },
            kind,
        })
}

/// Fragments that make random input look enough like XML to reach the reader's deeper paths.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<xml>".to_owned()),
        Just("</xml>".to_owned()),
        Just("<MsgType>".to_owned()),
        Just("</MsgType>".to_owned()),
        Just("<![CDATA[".to_owned()),
        Just("]]>".to_owned()),
        Just("<!DOCTYPE x>".to_owned()),
        Just("<!--".to_owned()),
        Just("-->".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        Just("<a/>".to_owned()),
        "&[a-z#x0-9]{0,9};?",
        "<[A-Za-z_]{1,8}>",
        "</[A-Za-z_]{1,8}>",
        text(8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|ps| ps.concat())
}

fn is_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

proptest! {
    #[test]
    fn encrypt_decrypt_round_trip(msg in text(600), app in text(40)) {
        let c = cipher();
        let app = AppId::new(app);
        let sealed = c.encrypt(&msg, &app);
        prop_assert_eq!(c.decrypt(&sealed, &app), Ok(msg));
    }

    #[test]
    fn decrypt_never_panics_on_base64(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let c = cipher();
        let _ = c.decrypt(&STANDARD.encode(&bytes), &AppId::new("wx1"));
    }

    #[test]
    fn decrypt_never_panics_on_block_aligned_noise(blocks in prop::collection::vec(any::<[u8; 32]>(), 1..8)) {
        let c = cipher();
        let bytes: Vec<u8> = blocks.concat();
        let _ = c.decrypt(&STANDARD.encode(&bytes), &AppId::new("wx1"));
    }

    #[test]
    fn decrypt_never_panics_on_strings(s in any::<String>()) {
        let _ = cipher().decrypt(&s, &AppId::new("wx1"));
    }

    #[test]
    fn parsers_never_panic_on_strings(s in any::<String>()) {
        let _ = xml::parse(&s);
        let _ = message::parse(&s);
        let _ = message::parse_envelope(&s);
    }

    #[test]
    fn parsers_never_panic_on_xmlish(s in xmlish()) {
        let _ = xml::parse(&s);
        let _ = message::parse(&s);
    }

    #[test]
    fn to_xml_round_trips(m in inbound_strategy()) {
        let xml = m.to_xml();
        prop_assert_eq!(message::parse(&xml), Ok(m), "{}", xml);
    }

    #[test]
    fn signature_is_order_independent_and_verifies(parts in prop::collection::vec(text(12), 1..5)) {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut rev = refs.clone();
        rev.reverse();
        let sig = signature::sign(&refs);
        prop_assert_eq!(&sig, &signature::sign(&rev));
        prop_assert!(signature::verify(&sig, &refs));
    }

    #[test]
    fn rendered_text_is_clean_bounded_and_faithful(content in text(2600), after in any::<bool>()) {
        let ctx = ReplyContext { to_user: "o\u{1}x", from_user: "gh_1", create_time: 1, after_user_message: after };
        let out = reply::render(&Reply::Text { content: content.clone() }, &ctx).expect("text renders");
        prop_assert!(!out.chars().any(is_forbidden));
        let root = xml::parse(&out).expect("rendered XML parses");
        let got = root.child_text("Content").expect("Content");
        let stripped: String = content.chars().filter(|&c| !is_forbidden(c)).collect();
        prop_assert!(got.len() <= TEXT_MAX_BYTES);
        prop_assert!(stripped.starts_with(got));
        if stripped.len() <= TEXT_MAX_BYTES {
            prop_assert_eq!(got, stripped.as_str());
        } else {
            // Only a char boundary and a short grapheme tail may be given up.
            prop_assert!(got.len() + 4 * 33 > TEXT_MAX_BYTES);
        }
        prop_assert_eq!(root.child_text("ToUserName"), Some("ox"));
    }

    /// The dedupe memory keeps a reply's tail only and answers a retry with
    /// `with_head(tail, retry's ctx)`: that must be the reply, byte for byte, and the tail must
    /// not depend on the addresses or the time (or a retry would need them stored).
    #[test]
    fn a_reply_is_its_head_and_a_tail_that_does_not_depend_on_who_or_when(
        reply in reply_strategy(),
        to in text(30),
        from in text(20),
        at in any::<i64>(),
        after in any::<bool>(),
    ) {
        let ctx = ReplyContext { to_user: &to, from_user: &from, create_time: at, after_user_message: after };
        let other = ReplyContext { to_user: "oOther", from_user: "gh_other", create_time: 7, after_user_message: after };
        let whole = reply::render(&reply, &ctx);
        match reply::render_parts(&reply, &ctx) {
            None => prop_assert!(whole.is_none()),
            Some(parts) => {
                prop_assert_eq!(Some(parts.xml()), whole.as_deref());
                prop_assert!(!parts.tail().is_empty());
                prop_assert_eq!(reply::with_head(parts.tail(), &ctx), parts.xml());
                let elsewhere = reply::render_parts(&reply, &other).expect("renders for anyone");
                prop_assert_eq!(elsewhere.tail(), parts.tail());
            }
        }
        prop_assert_eq!(reply::with_head("", &ctx), "");
    }

    #[test]
    fn rendered_news_is_clean_and_limited(
        arts in prop::collection::vec((text(20), text(20), text(20), text(20)), 0..12),
        after in any::<bool>(),
    ) {
        let articles: Vec<Article> = arts
            .into_iter()
            .map(|(title, description, pic_url, url)| Article { title, description, pic_url, url })
            .collect();
        let ctx = ReplyContext { to_user: "o", from_user: "gh", create_time: 1, after_user_message: after };
        let n = articles.len();
        let out = reply::render(&Reply::News { articles }, &ctx);
        if n == 0 {
            prop_assert!(out.is_none());
        } else {
            let out = out.expect("news renders");
            prop_assert!(!out.chars().any(is_forbidden));
            let root = xml::parse(&out).expect("rendered XML parses");
            let limit = if after { 1 } else { 8 };
            let items = root.child("Articles").expect("Articles").children_named("item").count();
            prop_assert_eq!(items, n.min(limit));
            let count = items.to_string();
            prop_assert_eq!(root.child_text("ArticleCount"), Some(count.as_str()));
        }
    }
}

/// Every kind of reply, with hostile text in every field.
fn reply_strategy() -> impl Strategy<Value = Reply> {
    let opt = || prop::option::of(text(12));
    prop_oneof![
        Just(Reply::None),
        text(40).prop_map(|content| Reply::Text { content }),
        text(12).prop_map(|media_id| Reply::Image { media_id }),
        text(12).prop_map(|media_id| Reply::Voice { media_id }),
        (text(12), opt(), opt()).prop_map(|(media_id, title, description)| Reply::Video {
            media_id,
            title,
            description
        }),
        (opt(), opt(), opt(), opt(), text(12)).prop_map(
            |(title, description, music_url, hq_music_url, thumb_media_id)| Reply::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id
            }
        ),
        prop::collection::vec((text(8), text(8), text(8), text(8)), 0..10).prop_map(|arts| {
            Reply::News {
                articles: arts
                    .into_iter()
                    .map(|(title, description, pic_url, url)| Article {
                        title,
                        description,
                        pic_url,
                        url,
                    })
                    .collect(),
            }
        }),
        opt().prop_map(|kf_account| Reply::TransferCustomerService { kf_account }),
    ]
}

#[test]
fn a_push_from_a_malformed_openid_is_refused_naming_the_field() {
    for from in ["", "o user", "o\u{1}x", "用户", &"o".repeat(65)] {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId></xml>"
        );
        let err = mpgate::wechat::message::parse(&xml).expect_err(from);
        assert!(err.to_string().contains("FromUserName"), "{from:?}: {err}");
    }
}
