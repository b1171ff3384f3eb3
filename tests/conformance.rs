//! The protocol layer against the published conformance data in `../shared/conformance`
//! (or `$MPGATE_CONFORMANCE_DIR`): signature, crypto and negative vectors from vectors.json, and
//! every inbound sample in messages/*.xml. Missing data skips the tests locally but fails on CI.

use std::fs;
use std::path::PathBuf;

use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::message::{self, Event, Inbound, InboundKind};
use mpgate::wechat::reply;
use mpgate::wechat::signature;
use mpgate::wechat::types::{AppId, MsgId};
use mpgate::wechat::xml;
use serde_json::Value;

/// The conformance dir, or `None` (after saying why) when it is absent outside CI.
fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MPGATE_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    };
    if dir.join("vectors.json").is_file() {
        return Some(dir);
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !on_ci,
        "conformance dir not found at {} (CI=true: this must not be skipped)",
        dir.display()
    );
    eprintln!(
        "skipping: conformance dir not found at {} (set MPGATE_CONFORMANCE_DIR)",
        dir.display()
    );
    None
}

fn vectors(dir: &std::path::Path) -> Value {
    let text = fs::read_to_string(dir.join("vectors.json")).expect("vectors.json is readable");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: field {field} is not a string", v["id"]))
}

fn list<'a>(root: &'a Value, field: &str) -> &'a Vec<Value> {
    root[field]
        .as_array()
        .unwrap_or_else(|| panic!("vectors.json: {field} is not a list"))
}

/// The receiving side's whole path: key → msg_signature → decrypt. Errors are the official codes.
fn open(v: &Value, app_id: &str) -> Result<String, i32> {
    let key = EncodingAesKey::parse(s(v, "encoding_aes_key")).map_err(|e| e.code())?;
    let encrypted = s(v, "encrypted");
    let parts = [s(v, "token"), s(v, "timestamp"), s(v, "nonce"), encrypted];
    if !signature::verify(s(v, "msg_signature"), &parts) {
        return Err(-40001);
    }
    Cipher::new(&key)
        .decrypt(encrypted, &AppId::new(app_id))
        .map_err(|e| e.code())
}

#[test]
fn signature_vectors() {
    let Some(dir) = conformance_dir() else { return };
    let root = vectors(&dir);
    let vs = list(&root, "signature_vectors");
    assert!(!vs.is_empty());
    for v in vs {
        let parts = [s(v, "token"), s(v, "timestamp"), s(v, "nonce")];
        let expect_valid = v["expect_valid"].as_bool().expect("expect_valid is a bool");
        assert_eq!(
            signature::verify(s(v, "signature"), &parts),
            expect_valid,
            "{}",
            v["id"]
        );
        if expect_valid {
            assert_eq!(signature::sign(&parts), s(v, "signature"), "{}", v["id"]);
        }
    }
}

#[test]
fn crypto_vectors() {
    let Some(dir) = conformance_dir() else { return };
    let root = vectors(&dir);
    let vs = list(&root, "crypto_vectors");
    assert!(!vs.is_empty());
    let mut checked = 0;
    for v in vs {
        let id = &v["id"];
        let platform = s(v, "platform");
        assert!(
            matches!(platform, "mp" | "open_platform" | "wecom"),
            "{id}: unexpected platform {platform}"
        );
        let app_id = AppId::new(s(v, "app_id"));
        let cipher = Cipher::new(&EncodingAesKey::parse(s(v, "encoding_aes_key")).expect("key"));
        let plaintext = s(v, "plaintext_xml");
        let encrypted = s(v, "encrypted");
        match s(v, "kind") {
            "decrypt" | "verify_url_echostr" => {
                assert_eq!(open(v, app_id.as_str()).as_deref(), Ok(plaintext), "{id}");
                if let Some(req) = v["request_xml"].as_str() {
                    let env = message::parse_envelope(req).expect("request_xml parses");
                    assert_eq!(env.encrypt.as_deref(), Some(encrypted), "{id}");
                    // Compatible-mode bodies carry the plaintext fields beside Encrypt; they must
                    // say the same as the decrypted copy.
                    if xml::parse(req).expect("xml").child("MsgType").is_some() {
                        assert_eq!(message::parse(req), message::parse(plaintext), "{id}");
                    }
                }
                if let Some(neg) = v.get("negative") {
                    if let Some(bad_app) = neg["app_id"].as_str() {
                        assert_eq!(open(v, bad_app), Err(-40005), "{id} negative");
                    }
                    if let Some(bad_nonce) = neg["nonce"].as_str() {
                        let parts = [s(v, "token"), s(v, "timestamp"), bad_nonce, encrypted];
                        assert!(!signature::verify(s(v, "msg_signature"), &parts), "{id}");
                    }
                }
                if s(v, "kind") == "decrypt" {
                    check_decrypted_message(v, plaintext);
                }
            }
            "encrypt" => {
                let random: [u8; 16] = s(v, "random_prefix")
                    .as_bytes()
                    .try_into()
                    .expect("random_prefix is 16 bytes");
                let sealed = cipher.encrypt_with_random(plaintext, &app_id, &random);
                assert_eq!(sealed, encrypted, "{id}");
                let parts = [s(v, "token"), s(v, "timestamp"), s(v, "nonce"), &sealed];
                assert_eq!(signature::sign(&parts), s(v, "msg_signature"), "{id}");
                assert_eq!(
                    cipher.decrypt(&sealed, &app_id).as_deref(),
                    Ok(plaintext),
                    "{id}"
                );
                if let Some(expected) = v["expected_reply_xml"].as_str() {
                    let ts: i64 = s(v, "timestamp").parse().expect("numeric timestamp");
                    let env = reply::envelope(&sealed, &signature::sign(&parts), ts, s(v, "nonce"));
                    assert_eq!(env, expected, "{id}");
                }
            }
            other => panic!("{id}: unknown kind {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, vs.len());
}

/// A decrypted push parses, and agrees with the fields the source published.
fn check_decrypted_message(v: &Value, plaintext: &str) {
    let id = &v["id"];
    let m = message::parse(plaintext).unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(message::parse(&m.to_xml()).as_ref(), Ok(&m), "{id}");
    let Some(fields) = v["expected_fields"].as_object() else {
        return;
    };
    let tree = xml::parse(plaintext).expect("xml");
    for (name, want) in fields {
        let want = want.as_str().expect("expected field is a string");
        assert_eq!(tree.child_text(name), Some(want), "{id}: {name}");
        match name.as_str() {
            "ToUserName" => assert_eq!(m.header.to_user, want, "{id}"),
            "FromUserName" => assert_eq!(m.header.from_user.as_str(), want, "{id}"),
            "CreateTime" => assert_eq!(m.header.create_time.to_string(), want, "{id}"),
            "MsgType" => assert_eq!(m.type_label(), want, "{id}"),
            "Content" => assert_eq!(m.text_for_matching(), Some(want), "{id}"),
            "MsgId" => assert_eq!(m.msg_id().map(|i| i.to_string()).as_deref(), Some(want)),
            _ => {}
        }
    }
}

#[test]
fn negative_cases() {
    let Some(dir) = conformance_dir() else { return };
    let root = vectors(&dir);
    let vs = list(&root, "negative_cases");
    assert!(!vs.is_empty());
    for v in vs {
        let code = v["expect_code"].as_i64().expect("expect_code");
        let code = i32::try_from(code).expect("code fits i32");
        assert_eq!(open(v, s(v, "app_id")), Err(code), "{}", v["id"]);
    }
}

fn load(dir: &std::path::Path, name: &str) -> Inbound {
    let text = fs::read_to_string(dir.join("messages").join(name)).expect("readable");
    message::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn event(m: &Inbound) -> &Event {
    match &m.kind {
        InboundKind::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn message_samples() {
    let Some(dir) = conformance_dir() else { return };
    let mut names: Vec<String> = fs::read_dir(dir.join("messages"))
        .expect("messages dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        let m = load(&dir, name);
        assert_eq!(
            message::parse(&m.to_xml()).as_ref(),
            Ok(&m),
            "{name}: to_xml round trip"
        );
        check_sample(name, &m);
    }
}

/// Per-file expectations; a new sample without expectations fails loudly.
fn check_sample(name: &str, m: &Inbound) {
    match name.trim_end_matches(".xml") {
        "text" => {
            assert!(
                matches!(&m.kind, InboundKind::Text { content, msg_data_id: None, .. } if content == "this is a test")
            );
            assert_eq!(m.msg_id(), Some(MsgId::new(1234567890123456)));
            assert_eq!(m.header.create_time, 1348831860);
        }
        "text-with-msgdataid" => assert!(matches!(&m.kind,
            InboundKind::Text { msg_data_id: Some(d), idx: Some(i), .. } if d == "xxxx" && i == "xxxx")),
        "text-real-capture" => {
            assert_eq!(m.text_for_matching(), Some("你好"));
            assert_eq!(m.msg_id(), Some(MsgId::new(6074746557628292943)));
            assert_eq!(m.header.to_user, "gh_a96a4a619366");
            assert_eq!(m.header.from_user.as_str(), "olPjZjsXuQPJoV0HlruZkNzKc91E");
        }
        "image" => assert!(matches!(&m.kind,
            InboundKind::Image { pic_url, media_id, .. } if pic_url == "this is a url" && media_id == "media_id")),
        "voice" => {
            assert!(
                matches!(&m.kind, InboundKind::Voice { format, recognition: None, .. } if format == "Format")
            );
            assert_eq!(m.text_for_matching(), None);
        }
        "voice-recognition" => assert_eq!(m.text_for_matching(), Some("腾讯微信团队")),
        "video" => assert!(matches!(&m.kind,
            InboundKind::Video { thumb_media_id, .. } if thumb_media_id == "thumb_media_id")),
        "shortvideo" => assert!(matches!(&m.kind,
            InboundKind::ShortVideo { media_id, .. } if media_id == "media_id")),
        "location" => assert!(matches!(&m.kind,
            InboundKind::Location { latitude, longitude, scale: 20, label, .. }
                if *latitude == 23.134521 && *longitude == 113.358803 && label == "位置信息")),
        "location-real-capture" => assert!(matches!(&m.kind,
            InboundKind::Location { latitude, longitude, scale: 19, msg_id, .. }
                if *latitude == 31.285774 && *longitude == 120.597610 && msg_id.get() == 5832828233808572154)),
        "link" => assert!(matches!(&m.kind,
            InboundKind::Link { title, url, .. } if title == "公众平台官网链接" && url == "url")),
        "file" => assert!(matches!(&m.kind,
            InboundKind::File { title, description, file_key, file_total_len: 222, msg_id, .. }
                if title == "test.zip" && description.is_empty() && file_key == "BAAAAAAAAACJHA0y"
                    && msg_id.get() == 6526133992738756795)),
        "event-subscribe" => {
            assert_eq!(
                event(m),
                &Event::Subscribe {
                    scene: None,
                    ticket: None,
                    event_key: None
                }
            );
            assert_eq!(m.type_label(), "event:subscribe");
            assert_eq!(m.dedupe_key(), "e:FromUser:123456789:subscribe");
        }
        "event-subscribe-qrscene" => assert_eq!(
            event(m),
            &Event::Subscribe {
                scene: Some("123123".into()),
                ticket: Some("TICKET".into()),
                event_key: None
            }
        ),
        "event-unsubscribe" => assert_eq!(event(m), &Event::Unsubscribe),
        "event-SCAN" => {
            assert_eq!(
                event(m),
                &Event::Scan {
                    scene: "SCENE_VALUE".into(),
                    ticket: Some("TICKET".into())
                }
            );
            assert_eq!(m.type_label(), "event:SCAN");
        }
        "event-LOCATION" => assert_eq!(
            event(m),
            &Event::Location {
                latitude: 23.137466,
                longitude: 113.352425,
                precision: 119.385040
            }
        ),
        "event-CLICK" => {
            assert_eq!(
                event(m),
                &Event::Click {
                    key: "EVENTKEY".into()
                }
            );
            assert_eq!(m.type_label(), "event:CLICK");
            assert!(!m.is_user_message());
        }
        "event-VIEW" => assert_eq!(
            event(m),
            &Event::View {
                url: "www.qq.com".into(),
                menu_id: Some("MENUID".into())
            }
        ),
        "event-scancode_push" => assert_eq!(
            event(m),
            &Event::ScancodePush {
                key: "6".into(),
                scan_type: "qrcode".into(),
                scan_result: "1".into()
            }
        ),
        "event-scancode_waitmsg" => assert_eq!(
            event(m),
            &Event::ScancodeWaitmsg {
                key: "6".into(),
                scan_type: "qrcode".into(),
                scan_result: "2".into()
            }
        ),
        "event-pic_sysphoto" => assert_eq!(
            event(m),
            &Event::PicSysphoto {
                key: "6".into(),
                pics: vec!["1b5f7c23b5bf75682a53e7b6d163e185".into()]
            }
        ),
        "event-pic_photo_or_album" => assert_eq!(
            event(m),
            &Event::PicPhotoOrAlbum {
                key: "6".into(),
                pics: vec!["5a75aaca956d97be686719218f275c6b".into()]
            }
        ),
        "event-pic_weixin" => assert_eq!(
            event(m),
            &Event::PicWeixin {
                key: "6".into(),
                pics: vec!["5a75aaca956d97be686719218f275c6b".into()]
            }
        ),
        "event-location_select" => assert_eq!(
            event(m),
            &Event::LocationSelect {
                key: "6".into(),
                latitude: 23.0,
                longitude: 113.0,
                scale: 15,
                label: "广州市海珠区客村艺苑路 106号".into(),
                poiname: String::new(),
            }
        ),
        "event-view_miniprogram" => assert_eq!(
            event(m),
            &Event::ViewMiniprogram {
                page_path: "pages/index/index".into(),
                menu_id: Some("MENUID".into())
            }
        ),
        "event-TEMPLATESENDJOBFINISH" => assert_eq!(
            event(m),
            &Event::TemplateSendJobFinish {
                msg_id: MsgId::new(200163836),
                status: "success".into()
            }
        ),
        "event-MASSSENDJOBFINISH" => assert_eq!(
            event(m),
            &Event::MassSendJobFinish {
                msg_id: MsgId::new(1000001625),
                status: "err(30003)".into(),
                total_count: 0,
                filter_count: 0,
                sent_count: 0,
                error_count: 0,
            }
        ),
        "event-MASSSENDJOBFINISH-simple" => assert_eq!(
            event(m),
            &Event::MassSendJobFinish {
                msg_id: MsgId::new(1988),
                status: "sendsuccess".into(),
                total_count: 100,
                filter_count: 80,
                sent_count: 75,
                error_count: 5,
            }
        ),
        "event-kf_create_session" => assert_eq!(
            event(m),
            &Event::KfCreateSession {
                kf_account: "test1@test".into()
            }
        ),
        "event-kf_close_session" => assert_eq!(
            event(m),
            &Event::KfCloseSession {
                kf_account: "test1@test".into()
            }
        ),
        "event-kf_switch_session" => assert_eq!(
            event(m),
            &Event::KfSwitchSession {
                from_kf_account: "test1@test".into(),
                to_kf_account: "test2@test".into()
            }
        ),
        // Not modelled yet: unknown events are values, answered with `success`.
        "event-subscribe_msg_popup_event" => {
            assert_eq!(
                event(m),
                &Event::Unknown {
                    event: "subscribe_msg_popup_event".into(),
                    event_key: None
                }
            );
            assert_eq!(m.type_label(), "subscribe_msg_popup_event");
        }
        "event-debug_demo" => {
            assert_eq!(
                event(m),
                &Event::Unknown {
                    event: "debug_demo".into(),
                    event_key: None
                }
            );
            assert_eq!(m.header.create_time, 1715943329);
            assert_eq!(
                m.dedupe_key(),
                "e:o9AgO5Kd5ggOC-bXrbNODIiE3bGY:1715943329:debug_demo"
            );
        }
        other => panic!("no expectations for messages/{other}.xml: add them to check_sample"),
    }
}
