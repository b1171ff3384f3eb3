//! Inbound pushes as types: the XML tree from [`super::xml`] becomes an [`Inbound`].
//!
//! Every push shares a [`Header`]; the rest is an [`InboundKind`]. A `MsgType` or `Event` the
//! platform adds tomorrow is a value ([`InboundKind::Unknown`], [`Event::Unknown`]), not an error.

use super::types::{MsgId, OpenId};

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
