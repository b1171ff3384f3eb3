//! Inbound pushes as types: the XML tree from [`super::xml`] becomes an [`Inbound`].
//!
//! Every push shares a [`Header`]; the rest is an [`InboundKind`]. A `MsgType` or `Event` the
//! platform adds tomorrow is a value ([`InboundKind::Unknown`], [`Event::Unknown`]), not an error.
//! Also owns the outer envelope of safe/compatible mode ([`parse_envelope`]) and the inverse of
//! [`parse`] ([`Inbound::to_xml`]), which the simulator and benchmarks use to forge pushes.
//!
//! Leniency: header fields, `MsgId` on user messages and `Event` on events are required; numbers
//! must parse (after trimming); per-type strings the platform may omit default to `""`; optional
//! strings that arrive empty are `None`. Names come from [`super::names`], the one table of them.
//! May depend on [`super::xml`], [`super::names`] and [`super::types`] only.

use std::fmt::{Display, Write as _};
use std::str::FromStr;

use super::names::{EventType, MsgType};
use super::types::{MsgId, OpenId};
use super::xml::{self, push_cdata, push_i64, push_u64, Doc, El, XmlError};

/// One inbound push, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    pub header: Header,
    pub kind: InboundKind,
}

/// Fields every push carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// `ToUserName`: the account's original id (`gh_…`).
    pub to_user: String,
    /// `FromUserName`: the subscriber.
    pub from_user: OpenId,
    /// `CreateTime`, unix seconds.
    pub create_time: i64,
}

/// A user message (`MsgType` ≠ `event`) or an event.
#[derive(Clone, Debug, PartialEq)]
pub enum InboundKind {
    Text {
        msg_id: MsgId,
        content: String,
        /// Present only when sent from an article (`MsgDataId`, `Idx`).
        msg_data_id: Option<String>,
        idx: Option<String>,
    },
    Image {
        msg_id: MsgId,
        pic_url: String,
        media_id: String,
    },
    Voice {
        msg_id: MsgId,
        media_id: String,
        format: String,
        /// Speech recognition result, when the account has it enabled.
        recognition: Option<String>,
    },
    Video {
        msg_id: MsgId,
        media_id: String,
        thumb_media_id: String,
    },
    ShortVideo {
        msg_id: MsgId,
        media_id: String,
        thumb_media_id: String,
    },
    Location {
        msg_id: MsgId,
        /// `Location_X` (latitude).
        latitude: f64,
        /// `Location_Y` (longitude).
        longitude: f64,
        scale: i64,
        label: String,
    },
    Link {
        msg_id: MsgId,
        title: String,
        description: String,
        url: String,
    },
    File {
        msg_id: MsgId,
        title: String,
        description: String,
        file_key: String,
        file_md5: String,
        file_total_len: u64,
    },
    Event(Event),
    /// A `MsgType` this build does not know. Answered with `success`.
    Unknown {
        msg_type: String,
        msg_id: Option<MsgId>,
    },
}

/// `MsgType` = `event`.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Follow. `scene` is the `qrscene_` suffix of `EventKey` when followed through a parametric QR code.
    Subscribe {
        scene: Option<String>,
        ticket: Option<String>,
        /// The raw `EventKey` when it is present but not a `qrscene_` key.
        event_key: Option<String>,
    },
    Unsubscribe,
    /// An existing follower scanned a parametric QR code; `scene` is `EventKey` as sent (no prefix).
    Scan {
        scene: String,
        ticket: Option<String>,
    },
    /// Periodic location report.
    Location {
        latitude: f64,
        longitude: f64,
        precision: f64,
    },
    Click {
        key: String,
    },
    View {
        url: String,
        menu_id: Option<String>,
    },
    ScancodePush {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    ScancodeWaitmsg {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    PicSysphoto {
        key: String,
        pics: Vec<String>,
    },
    PicPhotoOrAlbum {
        key: String,
        pics: Vec<String>,
    },
    PicWeixin {
        key: String,
        pics: Vec<String>,
    },
    LocationSelect {
        key: String,
        latitude: f64,
        longitude: f64,
        scale: i64,
        label: String,
        poiname: String,
    },
    ViewMiniprogram {
        page_path: String,
        menu_id: Option<String>,
    },
    TemplateSendJobFinish {
        msg_id: MsgId,
        status: String,
    },
    MassSendJobFinish {
        msg_id: MsgId,
        status: String,
        total_count: u64,
        filter_count: u64,
        sent_count: u64,
        error_count: u64,
    },
    KfCreateSession {
        kf_account: String,
    },
    KfCloseSession {
        kf_account: String,
    },
    KfSwitchSession {
        from_kf_account: String,
        to_kf_account: String,
    },
    /// An `Event` this build does not know. Answered with `success`.
    Unknown {
        event: String,
        event_key: Option<String>,
    },
}

/// Why a decrypted or plaintext body is not a push.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error(transparent)]
    Xml(#[from] super::xml::XmlError),
    #[error("missing required field <{0}>")]
    Missing(&'static str),
    #[error("field <{field}> is not a valid {expected}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
    },
}

/// The outer body of an encrypted push: what is needed before decryption. Compatible-mode bodies
/// also carry the plaintext fields; they are ignored here (only the decrypted copy is trusted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// `ToUserName`, the account's original id, when present.
    pub to_user: Option<String>,
    /// `Encrypt`, exactly as sent (the text `msg_signature` covers).
    pub encrypt: Option<String>,
}

/// Reads `ToUserName` and `Encrypt` from a safe-mode or compatible-mode body.
pub fn parse_envelope(xml: &str) -> Result<Envelope, ParseError> {
    with_root(xml, |root| {
        Ok(Envelope {
            to_user: root.child_text("ToUserName").map(str::to_owned),
            encrypt: root.child_text("Encrypt").map(str::to_owned),
        })
    })
}

/// Parses a plaintext push (a plaintext-mode body or a decrypted `Encrypt`).
pub fn parse(xml: &str) -> Result<Inbound, ParseError> {
    with_root(xml, parse_push)
}

fn parse_push(root: El<'_, '_>) -> Result<Inbound, ParseError> {
    let root = &root;
    let header = Header {
        to_user: required(root, "ToUserName")?.to_owned(),
        from_user: openid(root, "FromUserName")?,
        create_time: number(root, "CreateTime")?,
    };
    let msg_type = required(root, "MsgType")?;
    let kind = match MsgType::parse(msg_type.trim()) {
        Some(MsgType::Text) => InboundKind::Text {
            msg_id: msg_id(root)?,
            content: or_empty(root, "Content"),
            msg_data_id: non_empty(root, "MsgDataId"),
            idx: non_empty(root, "Idx"),
        },
        Some(MsgType::Image) => InboundKind::Image {
            msg_id: msg_id(root)?,
            pic_url: or_empty(root, "PicUrl"),
            media_id: or_empty(root, "MediaId"),
        },
        Some(MsgType::Voice) => InboundKind::Voice {
            msg_id: msg_id(root)?,
            media_id: or_empty(root, "MediaId"),
            format: or_empty(root, "Format"),
            recognition: non_empty(root, "Recognition"),
        },
        Some(MsgType::Video) => InboundKind::Video {
            msg_id: msg_id(root)?,
            media_id: or_empty(root, "MediaId"),
            thumb_media_id: or_empty(root, "ThumbMediaId"),
        },
        Some(MsgType::ShortVideo) => InboundKind::ShortVideo {
            msg_id: msg_id(root)?,
            media_id: or_empty(root, "MediaId"),
            thumb_media_id: or_empty(root, "ThumbMediaId"),
        },
        Some(MsgType::Location) => InboundKind::Location {
            msg_id: msg_id(root)?,
            latitude: float(root, "Location_X")?,
            longitude: float(root, "Location_Y")?,
            scale: number(root, "Scale")?,
            label: or_empty(root, "Label"),
        },
        Some(MsgType::Link) => InboundKind::Link {
            msg_id: msg_id(root)?,
            title: or_empty(root, "Title"),
            description: or_empty(root, "Description"),
            url: or_empty(root, "Url"),
        },
        Some(MsgType::File) => InboundKind::File {
            msg_id: msg_id(root)?,
            title: or_empty(root, "Title"),
            description: or_empty(root, "Description"),
            file_key: or_empty(root, "FileKey"),
            file_md5: or_empty(root, "FileMd5"),
            file_total_len: number(root, "FileTotalLen")?,
        },
        Some(MsgType::Event) => InboundKind::Event(parse_event(root)?),
        None => InboundKind::Unknown {
            msg_type: msg_type.to_owned(),
            // An unknown type's MsgId is only a dedupe hint; a bad one is not worth an error.
            msg_id: root
                .child_text("MsgId")
                .and_then(|t| t.trim().parse().ok())
                .map(MsgId::new),
        },
    };
    Ok(Inbound { header, kind })
}

/// Runs `read` on the document's `<xml>` root. The common shape is read in place by
/// [`xml::scan`]; everything else goes through the strict [`xml::parse`], which also owns every
/// error.
fn with_root<R>(
    xml: &str,
    read: impl FnOnce(El<'_, '_>) -> Result<R, ParseError>,
) -> Result<R, ParseError> {
    let owned;
    let doc = match xml::scan(xml) {
        Some(doc) => doc,
        None => {
            owned = xml::parse(xml)?;
            Doc::from_element(&owned)
        }
    };
    let root = doc.root();
    if root.name() != "xml" {
        return Err(XmlError::Malformed(format!(
            "root element is <{}>, expected <xml>",
            root.name().chars().take(32).collect::<String>()
        ))
        .into());
    }
    read(root)
}

fn parse_event(root: &El<'_, '_>) -> Result<Event, ParseError> {
    let name = required(root, "Event")?;
    let key = || or_empty(root, "EventKey");
    let Some(kind) = EventType::parse(name.trim()) else {
        return Ok(Event::Unknown {
            event: name.to_owned(),
            event_key: non_empty(root, "EventKey"),
        });
    };
    let event = match kind {
        EventType::Subscribe => {
            let raw = non_empty(root, "EventKey");
            let scene = raw
                .as_deref()
                .and_then(|k| k.strip_prefix(QR_SCENE_PREFIX))
                .map(str::to_owned);
            Event::Subscribe {
                event_key: if scene.is_some() { None } else { raw },
                scene,
                ticket: non_empty(root, "Ticket"),
            }
        }
        EventType::Unsubscribe => Event::Unsubscribe,
        EventType::Scan => Event::Scan {
            scene: key(),
            ticket: non_empty(root, "Ticket"),
        },
        EventType::Location => Event::Location {
            latitude: float(root, "Latitude")?,
            longitude: float(root, "Longitude")?,
            precision: float(root, "Precision")?,
        },
        EventType::Click => Event::Click { key: key() },
        EventType::View => Event::View {
            url: key(),
            menu_id: non_empty(root, "MenuId"),
        },
        EventType::ScancodePush | EventType::ScancodeWaitmsg => {
            let info = root.child("ScanCodeInfo");
            let scan_type = info.map(|i| or_empty(&i, "ScanType")).unwrap_or_default();
            let scan_result = info.map(|i| or_empty(&i, "ScanResult")).unwrap_or_default();
            if kind == EventType::ScancodePush {
                Event::ScancodePush {
                    key: key(),
                    scan_type,
                    scan_result,
                }
            } else {
                Event::ScancodeWaitmsg {
                    key: key(),
                    scan_type,
                    scan_result,
                }
            }
        }
        EventType::PicSysphoto => Event::PicSysphoto {
            key: key(),
            pics: pics(root),
        },
        EventType::PicPhotoOrAlbum => Event::PicPhotoOrAlbum {
            key: key(),
            pics: pics(root),
        },
        EventType::PicWeixin => Event::PicWeixin {
            key: key(),
            pics: pics(root),
        },
        EventType::LocationSelect => {
            let info = root
                .child("SendLocationInfo")
                .ok_or(ParseError::Missing("SendLocationInfo"))?;
            Event::LocationSelect {
                key: key(),
                latitude: float(&info, "Location_X")?,
                longitude: float(&info, "Location_Y")?,
                scale: number(&info, "Scale")?,
                label: or_empty(&info, "Label"),
                poiname: or_empty(&info, "Poiname"),
            }
        }
        EventType::ViewMiniprogram => Event::ViewMiniprogram {
            page_path: key(),
            menu_id: non_empty(root, "MenuId"),
        },
        EventType::TemplateSendJobFinish => Event::TemplateSendJobFinish {
            msg_id: job_msg_id(root)?,
            status: or_empty(root, "Status"),
        },
        EventType::MassSendJobFinish => Event::MassSendJobFinish {
            msg_id: job_msg_id(root)?,
            status: or_empty(root, "Status"),
            total_count: number(root, "TotalCount")?,
            filter_count: number(root, "FilterCount")?,
            sent_count: number(root, "SentCount")?,
            error_count: number(root, "ErrorCount")?,
        },
        EventType::KfCreateSession => Event::KfCreateSession {
            kf_account: or_empty(root, "KfAccount"),
        },
        EventType::KfCloseSession => Event::KfCloseSession {
            kf_account: or_empty(root, "KfAccount"),
        },
        EventType::KfSwitchSession => Event::KfSwitchSession {
            from_kf_account: or_empty(root, "FromKfAccount"),
            to_kf_account: or_empty(root, "ToKfAccount"),
        },
    };
    Ok(event)
}

/// `EventKey` prefix of a follow through a parametric QR code.
const QR_SCENE_PREFIX: &str = "qrscene_";

/// An openid field: refused with the field's name when it is not of the accepted shape
/// ([`OpenId::parse`]).
fn openid(el: &El<'_, '_>, name: &'static str) -> Result<OpenId, ParseError> {
    OpenId::parse(required(el, name)?).map_err(|_| ParseError::Invalid {
        field: name,
        expected: "openid (1-64 characters of A-Z a-z 0-9 - _)",
    })
}

fn required<'d>(el: &El<'d, '_>, name: &'static str) -> Result<&'d str, ParseError> {
    el.child_text(name).ok_or(ParseError::Missing(name))
}

fn or_empty(el: &El<'_, '_>, name: &str) -> String {
    el.child_text(name).unwrap_or_default().to_owned()
}

fn non_empty(el: &El<'_, '_>, name: &str) -> Option<String> {
    el.child_text(name)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn number<T: FromStr>(el: &El<'_, '_>, name: &'static str) -> Result<T, ParseError> {
    required(el, name)?
        .trim()
        .parse()
        .map_err(|_| ParseError::Invalid {
            field: name,
            expected: "integer",
        })
}

fn float(el: &El<'_, '_>, name: &'static str) -> Result<f64, ParseError> {
    required(el, name)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or(ParseError::Invalid {
            field: name,
            expected: "finite number",
        })
}

fn msg_id(el: &El<'_, '_>) -> Result<MsgId, ParseError> {
    number(el, "MsgId").map(MsgId::new)
}

/// Template and mass-send events spell it `MsgID`; accept the user-message spelling too.
fn job_msg_id(el: &El<'_, '_>) -> Result<MsgId, ParseError> {
    if el.child("MsgID").is_some() {
        number(el, "MsgID").map(MsgId::new)
    } else {
        number(el, "MsgId").map(MsgId::new)
    }
}

fn pics(root: &El<'_, '_>) -> Vec<String> {
    root.child("SendPicsInfo")
        .and_then(|info| info.child("PicList"))
        .map(|list| {
            list.children_named("item")
                .map(|item| or_empty(&item, "PicMd5Sum"))
                .collect()
        })
        .unwrap_or_default()
}

impl Event {
    /// The row of [`super::names`] this event is; `None` for an unknown event.
    pub fn event_type(&self) -> Option<EventType> {
        Some(match self {
            Event::Subscribe { .. } => EventType::Subscribe,
            Event::Unsubscribe => EventType::Unsubscribe,
            Event::Scan { .. } => EventType::Scan,
            Event::Location { .. } => EventType::Location,
            Event::Click { .. } => EventType::Click,
            Event::View { .. } => EventType::View,
            Event::ScancodePush { .. } => EventType::ScancodePush,
            Event::ScancodeWaitmsg { .. } => EventType::ScancodeWaitmsg,
            Event::PicSysphoto { .. } => EventType::PicSysphoto,
            Event::PicPhotoOrAlbum { .. } => EventType::PicPhotoOrAlbum,
            Event::PicWeixin { .. } => EventType::PicWeixin,
            Event::LocationSelect { .. } => EventType::LocationSelect,
            Event::ViewMiniprogram { .. } => EventType::ViewMiniprogram,
            Event::TemplateSendJobFinish { .. } => EventType::TemplateSendJobFinish,
            Event::MassSendJobFinish { .. } => EventType::MassSendJobFinish,
            Event::KfCreateSession { .. } => EventType::KfCreateSession,
            Event::KfCloseSession { .. } => EventType::KfCloseSession,
            Event::KfSwitchSession { .. } => EventType::KfSwitchSession,
            Event::Unknown { .. } => return None,
        })
    }

    /// The `Event` value as the platform spells it (raw for unknown events).
    pub fn name(&self) -> &str {
        match self {
            Event::Unknown { event, .. } => event,
            known => known.event_type().map_or("", EventType::wire),
        }
    }

    /// `type_label` of the event: `event:` + its name (raw for unknown events).
    fn label(&self) -> &str {
        match self {
            Event::Unknown { event, .. } => event,
            known => known.event_type().map_or("", EventType::type_label),
        }
    }
}

impl InboundKind {
    /// `MsgType` as the platform spells it (raw for unknown types).
    pub fn msg_type(&self) -> &str {
        match self {
            InboundKind::Unknown { msg_type, .. } => msg_type,
            known => known.type_of().map_or("", MsgType::wire),
        }
    }

    /// The row of [`super::names`] this push is; `None` for an unknown `MsgType`.
    pub fn type_of(&self) -> Option<MsgType> {
        Some(match self {
            InboundKind::Text { .. } => MsgType::Text,
            InboundKind::Image { .. } => MsgType::Image,
            InboundKind::Voice { .. } => MsgType::Voice,
            InboundKind::Video { .. } => MsgType::Video,
            InboundKind::ShortVideo { .. } => MsgType::ShortVideo,
            InboundKind::Location { .. } => MsgType::Location,
            InboundKind::Link { .. } => MsgType::Link,
            InboundKind::File { .. } => MsgType::File,
            InboundKind::Event(_) => MsgType::Event,
            InboundKind::Unknown { .. } => return None,
        })
    }
}

impl Inbound {
    /// The platform's message id: user messages, and unknown types that carry one.
    pub fn msg_id(&self) -> Option<MsgId> {
        match &self.kind {
            InboundKind::Text { msg_id, .. }
            | InboundKind::Image { msg_id, .. }
            | InboundKind::Voice { msg_id, .. }
            | InboundKind::Video { msg_id, .. }
            | InboundKind::ShortVideo { msg_id, .. }
            | InboundKind::Location { msg_id, .. }
            | InboundKind::Link { msg_id, .. }
            | InboundKind::File { msg_id, .. } => Some(*msg_id),
            InboundKind::Unknown { msg_id, .. } => *msg_id,
            InboundKind::Event(_) => None,
        }
    }

    /// A label for logs and counters: `"text"`, `"event:CLICK"`; the raw `MsgType` of an unknown
    /// type and the raw `Event` of an unknown event.
    pub fn type_label(&self) -> &str {
        match &self.kind {
            InboundKind::Event(e) => e.label(),
            other => other.msg_type(),
        }
    }

    /// The key retries of this push share (PROTOCOL §7): `m:{MsgId}`, else
    /// `e:{FromUserName}:{CreateTime}:{event}`.
    ///
    /// Unambiguous by construction: `FromUserName` is an [`OpenId`], which cannot hold `:`
    /// (see [`OpenId::parse`]), and `CreateTime` is digits, so the first two `:` after `e:`
    /// always end the openid and the time; the event name comes last and may hold anything.
    pub fn dedupe_key(&self) -> String {
        // Built by hand: `format!` brings core::fmt's code into every push (see `push_u64`).
        match self.msg_id() {
            Some(id) => {
                let mut key = String::with_capacity(22);
                key.push_str("m:");
                push_u64(&mut key, id.get());
                key
            }
            None => {
                let what = match &self.kind {
                    InboundKind::Event(e) => e.name(),
                    other => other.msg_type(),
                };
                let from = self.header.from_user.as_str();
                let mut key = String::with_capacity(26 + from.len() + what.len());
                key.push_str("e:");
                key.push_str(from);
                key.push(':');
                push_i64(&mut key, self.header.create_time);
                key.push(':');
                key.push_str(what);
                key
            }
        }
    }

    /// Whether the subscriber sent this (not an event); after one, a news reply may carry 1 item.
    pub fn is_user_message(&self) -> bool {
        !matches!(self.kind, InboundKind::Event(_))
    }

    /// What keyword rules match against: a text's content or a voice's recognition result.
    pub fn text_for_matching(&self) -> Option<&str> {
        match &self.kind {
            InboundKind::Text { content, .. } => Some(content),
            InboundKind::Voice { recognition, .. } => recognition.as_deref(),
            _ => None,
        }
    }

    /// The push as the platform would send it: strings in CDATA, numbers bare, one element per
    /// line. `parse(&m.to_xml()) == m` for every value [`parse`] can produce.
    pub fn to_xml(&self) -> String {
        let mut w = Writer(String::with_capacity(512));
        w.0.push_str("<xml>");
        w.cdata("ToUserName", &self.header.to_user);
        w.cdata("FromUserName", self.header.from_user.as_str());
        w.num("CreateTime", self.header.create_time);
        w.cdata("MsgType", self.kind.msg_type());
        match &self.kind {
            InboundKind::Text {
                msg_id,
                content,
                msg_data_id,
                idx,
            } => {
                w.cdata("Content", content);
                w.num("MsgId", msg_id);
                w.opt_cdata("MsgDataId", msg_data_id.as_deref());
                w.opt_cdata("Idx", idx.as_deref());
            }
            InboundKind::Image {
                msg_id,
                pic_url,
                media_id,
            } => {
                w.cdata("PicUrl", pic_url);
                w.cdata("MediaId", media_id);
                w.num("MsgId", msg_id);
            }
            InboundKind::Voice {
                msg_id,
                media_id,
                format,
                recognition,
            } => {
                w.cdata("MediaId", media_id);
                w.cdata("Format", format);
                w.opt_cdata("Recognition", recognition.as_deref());
                w.num("MsgId", msg_id);
            }
            InboundKind::Video {
                msg_id,
                media_id,
                thumb_media_id,
            }
            | InboundKind::ShortVideo {
                msg_id,
                media_id,
                thumb_media_id,
            } => {
                w.cdata("MediaId", media_id);
                w.cdata("ThumbMediaId", thumb_media_id);
                w.num("MsgId", msg_id);
            }
            InboundKind::Location {
                msg_id,
                latitude,
                longitude,
                scale,
                label,
            } => {
                w.num("Location_X", latitude);
                w.num("Location_Y", longitude);
                w.num("Scale", scale);
                w.cdata("Label", label);
                w.num("MsgId", msg_id);
            }
            InboundKind::Link {
                msg_id,
                title,
                description,
                url,
            } => {
                w.cdata("Title", title);
                w.cdata("Description", description);
                w.cdata("Url", url);
                w.num("MsgId", msg_id);
            }
            InboundKind::File {
                msg_id,
                title,
                description,
                file_key,
                file_md5,
                file_total_len,
            } => {
                w.cdata("Title", title);
                w.cdata("Description", description);
                w.cdata("FileKey", file_key);
                w.cdata("FileMd5", file_md5);
                w.num("FileTotalLen", file_total_len);
                w.num("MsgId", msg_id);
            }
            InboundKind::Event(event) => {
                w.cdata("Event", event.name());
                write_event(&mut w, event);
            }
            InboundKind::Unknown { msg_id, .. } => {
                if let Some(id) = msg_id {
                    w.num("MsgId", id);
                }
            }
        }
        w.0.push_str("</xml>");
        w.0
    }
}

fn write_event(w: &mut Writer, event: &Event) {
    match event {
        Event::Subscribe {
            scene,
            ticket,
            event_key,
        } => {
            if let Some(scene) = scene {
                w.open("EventKey");
                w.0.push_str("<![CDATA[");
                w.0.push_str(QR_SCENE_PREFIX);
                w.0.push_str("]]>");
                push_cdata(&mut w.0, scene);
                w.close("EventKey");
            } else {
                w.opt_cdata("EventKey", event_key.as_deref());
            }
            w.opt_cdata("Ticket", ticket.as_deref());
        }
        Event::Unsubscribe => {}
        Event::Scan { scene, ticket } => {
            w.cdata("EventKey", scene);
            w.opt_cdata("Ticket", ticket.as_deref());
        }
        Event::Location {
            latitude,
            longitude,
            precision,
        } => {
            w.num("Latitude", latitude);
            w.num("Longitude", longitude);
            w.num("Precision", precision);
        }
        Event::Click { key } => w.cdata("EventKey", key),
        Event::View { url, menu_id } => {
            w.cdata("EventKey", url);
            w.opt_cdata("MenuId", menu_id.as_deref());
        }
        Event::ScancodePush {
            key,
            scan_type,
            scan_result,
        }
        | Event::ScancodeWaitmsg {
            key,
            scan_type,
            scan_result,
        } => {
            w.cdata("EventKey", key);
            w.open("ScanCodeInfo");
            w.cdata("ScanType", scan_type);
            w.cdata("ScanResult", scan_result);
            w.close("ScanCodeInfo");
        }
        Event::PicSysphoto { key, pics }
        | Event::PicPhotoOrAlbum { key, pics }
        | Event::PicWeixin { key, pics } => {
            w.cdata("EventKey", key);
            w.open("SendPicsInfo");
            w.num("Count", pics.len());
            w.open("PicList");
            for pic in pics {
                w.open("item");
                w.cdata("PicMd5Sum", pic);
                w.close("item");
            }
            w.close("PicList");
            w.close("SendPicsInfo");
        }
        Event::LocationSelect {
            key,
            latitude,
            longitude,
            scale,
            label,
            poiname,
        } => {
            w.cdata("EventKey", key);
            w.open("SendLocationInfo");
            w.num("Location_X", latitude);
            w.num("Location_Y", longitude);
            w.num("Scale", scale);
            w.cdata("Label", label);
            w.cdata("Poiname", poiname);
            w.close("SendLocationInfo");
        }
        Event::ViewMiniprogram { page_path, menu_id } => {
            w.cdata("EventKey", page_path);
            w.opt_cdata("MenuId", menu_id.as_deref());
        }
        Event::TemplateSendJobFinish { msg_id, status } => {
            w.num("MsgID", msg_id);
            w.cdata("Status", status);
        }
        Event::MassSendJobFinish {
            msg_id,
            status,
            total_count,
            filter_count,
            sent_count,
            error_count,
        } => {
            w.num("MsgID", msg_id);
            w.cdata("Status", status);
            w.num("TotalCount", total_count);
            w.num("FilterCount", filter_count);
            w.num("SentCount", sent_count);
            w.num("ErrorCount", error_count);
        }
        Event::KfCreateSession { kf_account } | Event::KfCloseSession { kf_account } => {
            w.cdata("KfAccount", kf_account)
        }
        Event::KfSwitchSession {
            from_kf_account,
            to_kf_account,
        } => {
            w.cdata("FromKfAccount", from_kf_account);
            w.cdata("ToKfAccount", to_kf_account);
        }
        Event::Unknown { event_key, .. } => w.opt_cdata("EventKey", event_key.as_deref()),
    }
}

/// Builds push XML in the platform's shape; no escaping beyond CDATA splitting, because
/// [`Inbound::to_xml`] must give back exactly what was parsed (control characters included).
struct Writer(String);

impl Writer {
    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
    }

    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push_str(">\n");
    }

    fn cdata(&mut self, name: &str, value: &str) {
        self.open(name);
        push_cdata(&mut self.0, value);
        self.close(name);
    }

    fn opt_cdata(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.cdata(name, v);
        }
    }

    fn num(&mut self, name: &str, value: impl Display) {
        self.open(name);
        // Writing to a String cannot fail.
        let _ = write!(self.0, "{value}");
        self.close(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_xml(msg_type: &str, rest: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o_user]]></FromUserName>\
             <CreateTime> 1700000000 </CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{rest}</xml>"
        )
    }

    #[test]
    fn text_message_fields() {
        let m = parse(&header_xml(
            "text",
            "<Content><![CDATA[ hi ]]></Content><MsgId>18446744073709551615</MsgId>",
        ))
        .expect("parses");
        assert_eq!(m.header.to_user, "gh_1");
        assert_eq!(m.header.from_user.as_str(), "o_user");
        assert_eq!(m.header.create_time, 1_700_000_000);
        assert_eq!(
            m.kind,
            InboundKind::Text {
                msg_id: MsgId::new(u64::MAX),
                content: " hi ".into(),
                msg_data_id: None,
                idx: None
            }
        );
        assert_eq!(m.msg_id(), Some(MsgId::new(u64::MAX)));
        assert_eq!(m.type_label(), "text");
        assert_eq!(m.dedupe_key(), "m:18446744073709551615");
        assert!(m.is_user_message());
        assert_eq!(m.text_for_matching(), Some(" hi "));
        assert_eq!(parse(&m.to_xml()), Ok(m));
    }

    #[test]
    fn missing_header_fields_and_msg_id() {
        for (field, xml) in [
            ("ToUserName", "<xml><FromUserName>a</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>"),
            ("FromUserName", "<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>"),
            ("CreateTime", "<xml><ToUserName>a</ToUserName><FromUserName>a</FromUserName><MsgType>text</MsgType></xml>"),
            ("MsgType", "<xml><ToUserName>a</ToUserName><FromUserName>a</FromUserName><CreateTime>1</CreateTime></xml>"),
        ] {
            assert_eq!(parse(xml), Err(ParseError::Missing(field)));
        }
        assert_eq!(
            parse(&header_xml("text", "<Content>x</Content>")),
            Err(ParseError::Missing("MsgId"))
        );
        assert_eq!(
            parse(&header_xml("event", "")),
            Err(ParseError::Missing("Event"))
        );
        assert_eq!(
            parse(&header_xml(
                "text",
                "<Content>x</Content><MsgId>12a</MsgId>"
            )),
            Err(ParseError::Invalid {
                field: "MsgId",
                expected: "integer"
            })
        );
        assert!(matches!(
            parse("<root><ToUserName>a</ToUserName></root>"),
            Err(ParseError::Xml(XmlError::Malformed(_)))
        ));
    }

    #[test]
    fn unknown_types_and_events_are_values() {
        let m = parse(&header_xml("miniprogrampage", "<MsgId>7</MsgId>")).expect("parses");
        assert_eq!(
            m.kind,
            InboundKind::Unknown {
                msg_type: "miniprogrampage".into(),
                msg_id: Some(MsgId::new(7))
            }
        );
        assert_eq!(m.type_label(), "miniprogrampage");
        assert_eq!(m.dedupe_key(), "m:7");

        let e = parse(&header_xml(
            "event",
            "<Event><![CDATA[debug_demo]]></Event><EventKey>k</EventKey>",
        ))
        .expect("parses");
        assert_eq!(
            e.kind,
            InboundKind::Event(Event::Unknown {
                event: "debug_demo".into(),
                event_key: Some("k".into())
            })
        );
        assert_eq!(e.type_label(), "debug_demo");
        assert_eq!(e.dedupe_key(), "e:o_user:1700000000:debug_demo");
        assert!(!e.is_user_message());
        assert_eq!(e.msg_id(), None);
    }

    #[test]
    fn event_dedupe_keys_cannot_collide_when_an_openid_contains_a_colon() {
        // Issue 16: `e:{from}:{time}:{event}` was ambiguous for an openid holding `:`: a
        // subscribe from `oA:1` at time 2 got the stored answer of `oA`'s event at time 1
        // (both `e:oA:1:2:…`-shaped). Such an openid is refused at the edge now.
        let xml = |from: &str, time: &str| {
            format!(
                "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>"
            )
        };
        assert!(
            parse(&xml("oA:1", "2")).is_err(),
            "an openid with `:` is refused"
        );
        let a = parse(&xml("oA", "1")).expect("parses");
        let b = parse(&xml("oA1", "2")).expect("parses");
        assert_ne!(a.dedupe_key(), b.dedupe_key());
        assert_eq!(a.dedupe_key(), "e:oA:1:subscribe");
    }

    #[test]
    fn event_names_match_case_insensitively() {
        let e = parse(&header_xml(
            "event",
            "<Event>click</Event><EventKey>K1</EventKey>",
        ))
        .expect("parses");
        assert_eq!(
            e.kind,
            InboundKind::Event(Event::Click { key: "K1".into() })
        );
        assert_eq!(e.type_label(), "event:CLICK");
        assert_eq!(e.dedupe_key(), "e:o_user:1700000000:CLICK");
        let s = parse(&header_xml("event", "<Event>SUBSCRIBE</Event>")).expect("parses");
        assert_eq!(s.type_label(), "event:subscribe");
    }

    #[test]
    fn subscribe_event_key_forms() {
        let with = |key: &str| {
            parse(&header_xml(
                "event",
                &format!("<Event>subscribe</Event><EventKey><![CDATA[{key}]]></EventKey>"),
            ))
            .expect("parses")
            .kind
        };
        assert_eq!(
            with("qrscene_42"),
            InboundKind::Event(Event::Subscribe {
                scene: Some("42".into()),
                ticket: None,
                event_key: None
            })
        );
        assert_eq!(
            with("last_trade_no_1"),
            InboundKind::Event(Event::Subscribe {
                scene: None,
                ticket: None,
                event_key: Some("last_trade_no_1".into())
            })
        );
        assert_eq!(
            with(""),
            InboundKind::Event(Event::Subscribe {
                scene: None,
                ticket: None,
                event_key: None
            })
        );
    }

    #[test]
    fn voice_recognition_empty_is_none() {
        let m = parse(&header_xml(
            "voice",
            "<MediaId>m</MediaId><Format>amr</Format><Recognition><![CDATA[]]></Recognition><MsgId>1</MsgId>",
        ))
        .expect("parses");
        assert_eq!(m.text_for_matching(), None);
    }

    #[test]
    fn envelope_reads_encrypt_and_ignores_the_rest() {
        let env = parse_envelope(
            "<xml>\n <ToUserName><![CDATA[gh_1]]></ToUserName>\n <Content>plain</Content>\n <Encrypt><![CDATA[abc+/=]]></Encrypt>\n</xml>",
        )
        .expect("parses");
        assert_eq!(
            env,
            Envelope {
                to_user: Some("gh_1".into()),
                encrypt: Some("abc+/=".into())
            }
        );
        let env = parse_envelope("<xml><ToUserName>x</ToUserName></xml>").expect("parses");
        assert_eq!(env.encrypt, None);
        assert!(parse_envelope("<!DOCTYPE x><xml/>").is_err());
    }

    #[test]
    fn to_xml_is_the_platform_shape() {
        let m = Inbound {
            header: Header {
                to_user: "gh_1".into(),
                from_user: OpenId::new("o_1"),
                create_time: 5,
            },
            kind: InboundKind::Text {
                msg_id: MsgId::new(9),
                content: "a]]>b".into(),
                msg_data_id: None,
                idx: None,
            },
        };
        assert_eq!(
            m.to_xml(),
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\n<FromUserName><![CDATA[o_1]]></FromUserName>\n\
             <CreateTime>5</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n\
             <Content><![CDATA[a]]]]><![CDATA[>b]]></Content>\n<MsgId>9</MsgId>\n</xml>"
        );
    }
}
