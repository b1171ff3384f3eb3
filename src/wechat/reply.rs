//! Passive replies as types, rendered to the XML the platform accepts (PROTOCOL §10), and the
//! encrypted envelope that carries them in safe mode (§5).
//!
//! Owns the reply limits (text length, news item count) and output hygiene: every emitted string
//! has the characters XML 1.0 forbids removed and `]]>` split, so whatever a template or an
//! operator produced, the platform gets well-formed XML. May depend on [`super::xml`],
//! [`super::crypto`], [`super::signature`] and [`super::types`] only.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::crypto::Cipher;
use super::signature;
use super::types::{AppId, Token};
use super::xml::{push_cdata, push_i64};

/// Longest text reply in UTF-8 bytes; community reports put the platform's cut at 2047–2048.
pub const TEXT_MAX_BYTES: usize = 2047;
/// News items allowed in a reply to a user message.
pub const NEWS_MAX_AFTER_MESSAGE: usize = 1;
/// News items allowed in a reply to anything else (events).
pub const NEWS_MAX: usize = 8;

/// What mpgate answers a push with.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// No reply: the body `success`, which the platform takes as "handled, show nothing".
    None,
    Text {
        content: String,
    },
    Image {
        media_id: String,
    },
    Voice {
        media_id: String,
    },
    Video {
        media_id: String,
        title: Option<String>,
        description: Option<String>,
    },
    Music {
        title: Option<String>,
        description: Option<String>,
        music_url: Option<String>,
        hq_music_url: Option<String>,
        thumb_media_id: String,
    },
    News {
        articles: Vec<Article>,
    },
    /// Hand the conversation to human customer service, optionally to one agent.
    TransferCustomerService {
        kf_account: Option<String>,
    },
}

/// One item of a news reply.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Article {
    pub title: String,
    pub description: String,
    pub pic_url: String,
    pub url: String,
}

/// Who a reply goes to and when: the inbound push's addresses, already swapped.
#[derive(Clone, Copy, Debug)]
pub struct ReplyContext<'a> {
    /// `ToUserName` of the reply: the subscriber's openid (the push's `FromUserName`).
    pub to_user: &'a str,
    /// `FromUserName` of the reply: the account's `gh_` id (the push's `ToUserName`).
    pub from_user: &'a str,
    /// `CreateTime` of the reply, unix seconds (passed in: this layer has no clock).
    pub create_time: i64,
    /// Whether the push was a user message, which limits news replies to one item.
    pub after_user_message: bool,
}

/// A rendered passive reply: its XML, and where the head ends (see [`with_head`]). The fields
/// are private so the two cannot drift apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    xml: String,
    head_len: usize,
}

impl Rendered {
    pub fn xml(&self) -> &str {
        &self.xml
    }

    pub fn into_xml(self) -> String {
        self.xml
    }

    /// The XML after the head: the reply's own elements and the closing `</xml>`. Depends only
    /// on the reply (and on whether it answers a user message), not on who gets it or when.
    pub fn tail(&self) -> &str {
        &self.xml[self.head_len..]
    }
}

/// Renders the passive-reply XML, or `None` when the answer should be the body `success`
/// ([`Reply::None`], or a news reply with no articles).
pub fn render(reply: &Reply, ctx: &ReplyContext) -> Option<String> {
    render_parts(reply, ctx).map(Rendered::into_xml)
}

/// Puts a head back on a [`Rendered::tail`]: `with_head(r.tail(), ctx) == r.xml()` for the `ctx`
/// it was rendered with. The dedupe memory keeps replies without their head (the addresses and
/// the time make up ~40 % of a typical reply) and a retry, which carries the same addresses,
/// gets its reply back this way. An empty tail (`success`) stays empty.
pub fn with_head(tail: &str, ctx: &ReplyContext) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(128 + ctx.to_user.len() + ctx.from_user.len() + tail.len());
    push_head(&mut out, ctx);
    out.push_str(tail);
    out
}

/// `<xml>`, both addresses and `CreateTime`: how every passive reply starts.
fn push_head(out: &mut String, ctx: &ReplyContext) {
    out.push_str("<xml>");
    cdata_el(out, "ToUserName", ctx.to_user);
    cdata_el(out, "FromUserName", ctx.from_user);
    out.push_str("<CreateTime>");
    push_i64(out, ctx.create_time);
    out.push_str("</CreateTime>");
}

/// [`render`], keeping where the head ends.
pub fn render_parts(reply: &Reply, ctx: &ReplyContext) -> Option<Rendered> {
    let (msg_type, body_hint) = match reply {
        Reply::None => return None,
        Reply::News { articles } if articles.is_empty() => return None,
        Reply::Text { content } => ("text", content.len()),
        Reply::Image { .. } => ("image", 64),
        Reply::Voice { .. } => ("voice", 64),
        Reply::Video { .. } => ("video", 256),
        Reply::Music { .. } => ("music", 512),
        Reply::News { .. } => ("news", 1024),
        Reply::TransferCustomerService { .. } => ("transfer_customer_service", 64),
    };
    let mut out = String::with_capacity(
        256 + ctx.to_user.len() + ctx.from_user.len() + body_hint.min(TEXT_MAX_BYTES),
    );
    push_head(&mut out, ctx);
    let head_len = out.len();
    // Our own literal: nothing to strip or split.
    cdata_el_clean(&mut out, "MsgType", msg_type);
    match reply {
        Reply::None => {}
        Reply::Text { content } => {
            let clean = strip_forbidden(content);
            // A prefix of a clean string is clean: no second pass.
            cdata_el_clean(&mut out, "Content", truncate_text(&clean, TEXT_MAX_BYTES));
        }
        Reply::Image { media_id } => {
            out.push_str("<Image>");
            cdata_el(&mut out, "MediaId", media_id);
            out.push_str("</Image>");
        }
        Reply::Voice { media_id } => {
            out.push_str("<Voice>");
            cdata_el(&mut out, "MediaId", media_id);
            out.push_str("</Voice>");
        }
        Reply::Video {
            media_id,
            title,
            description,
        } => {
            out.push_str("<Video>");
            cdata_el(&mut out, "MediaId", media_id);
            opt_cdata_el(&mut out, "Title", title.as_deref());
            opt_cdata_el(&mut out, "Description", description.as_deref());
            out.push_str("</Video>");
        }
        Reply::Music {
            title,
            description,
            music_url,
            hq_music_url,
            thumb_media_id,
        } => {
            out.push_str("<Music>");
            opt_cdata_el(&mut out, "Title", title.as_deref());
            opt_cdata_el(&mut out, "Description", description.as_deref());
            opt_cdata_el(&mut out, "MusicUrl", music_url.as_deref());
            opt_cdata_el(&mut out, "HQMusicUrl", hq_music_url.as_deref());
            cdata_el(&mut out, "ThumbMediaId", thumb_media_id);
            out.push_str("</Music>");
        }
        Reply::News { articles } => {
            let limit = if ctx.after_user_message {
                NEWS_MAX_AFTER_MESSAGE
            } else {
                NEWS_MAX
            };
            let shown = &articles[..articles.len().min(limit)];
            out.push_str("<ArticleCount>");
            // Writing to a String cannot fail.
            let _ = write!(out, "{}", shown.len());
            out.push_str("</ArticleCount><Articles>");
            for a in shown {
                out.push_str("<item>");
                cdata_el(&mut out, "Title", &a.title);
                cdata_el(&mut out, "Description", &a.description);
                cdata_el(&mut out, "PicUrl", &a.pic_url);
                cdata_el(&mut out, "Url", &a.url);
                out.push_str("</item>");
            }
            out.push_str("</Articles>");
        }
        Reply::TransferCustomerService { kf_account } => {
            if let Some(kf) = kf_account {
                out.push_str("<TransInfo>");
                cdata_el(&mut out, "KfAccount", kf);
                out.push_str("</TransInfo>");
            }
        }
    }
    out.push_str("</xml>");
    Some(Rendered { xml: out, head_len })
}

/// The safe-mode reply body around an already encrypted and signed reply, byte for byte the
/// shape of the platform's published example.
pub fn envelope(encrypt: &str, msg_signature: &str, timestamp: i64, nonce: &str) -> String {
    let mut out = String::with_capacity(160 + encrypt.len() + nonce.len());
    out.push_str("<xml>\n");
    cdata_el(&mut out, "Encrypt", encrypt);
    out.push('\n');
    cdata_el(&mut out, "MsgSignature", msg_signature);
    out.push_str("\n<TimeStamp>");
    push_i64(&mut out, timestamp);
    out.push_str("</TimeStamp>\n");
    cdata_el(&mut out, "Nonce", nonce);
    out.push_str("\n</xml>");
    out
}

/// Bytes of [`envelope`] besides its four values (and any `]]>` split in the nonce).
const ENVELOPE_OVERHEAD: usize = 192;

/// Encrypts `reply_xml`, signs it over (token, timestamp, nonce, Encrypt) and wraps it in the
/// envelope. `nonce` is normally the push's URL nonce echoed back.
pub fn seal(
    cipher: &Cipher,
    app_id: &AppId,
    token: &Token,
    reply_xml: &str,
    timestamp: i64,
    nonce: &str,
) -> String {
    let random: [u8; 16] = rand::random();
    seal_with_random(cipher, app_id, token, reply_xml, timestamp, nonce, &random)
}

/// [`seal`] with a caller-chosen random prefix; byte for byte
/// `envelope(encrypt, sign([token, timestamp, nonce, encrypt]), timestamp, nonce)`, built in one
/// buffer: the `Encrypt` text is base64-encoded straight into the envelope and signed in place.
fn seal_with_random(
    cipher: &Cipher,
    app_id: &AppId,
    token: &Token,
    reply_xml: &str,
    timestamp: i64,
    nonce: &str,
    random: &[u8; 16],
) -> String {
    // Sign the nonce exactly as the envelope will carry it, or a stripped character would break
    // the signature.
    let nonce = strip_forbidden(nonce);
    let mut ts = String::with_capacity(20);
    push_i64(&mut ts, timestamp);
    let plain_len = 20 + reply_xml.len() + app_id.as_str().len();
    let sealed_len = (plain_len / 32 + 1) * 32;
    let b64_len = sealed_len.div_ceil(3) * 4;
    let mut out = String::with_capacity(ENVELOPE_OVERHEAD + b64_len + ts.len() + nonce.len());
    out.push_str("<xml>\n<Encrypt><![CDATA[");
    let start = out.len();
    cipher.encrypt_with_random_into(reply_xml, app_id, random, &mut out);
    // Base64 and hex have no forbidden characters and no `]]>`: written as they are.
    let msg_signature = signature::sign_hex(&[token.expose(), &ts, &nonce, &out[start..]]);
    out.push_str("]]></Encrypt>\n");
    cdata_el_clean(&mut out, "MsgSignature", msg_signature.as_str());
    out.push_str("\n<TimeStamp>");
    out.push_str(&ts);
    out.push_str("</TimeStamp>\n");
    cdata_el_clean(&mut out, "Nonce", &nonce);
    out.push_str("\n</xml>");
    out
}

/// Characters XML 1.0 does not allow anywhere, even escaped (tab, LF and CR are allowed).
fn is_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// Whether `s` holds any [`is_forbidden`] character, by bytes: the controls are single ASCII
/// bytes, and U+FFFE/U+FFFF are `EF BF BE`/`EF BF BF` (0xEF only ever starts a character). A
/// branch-free pass per chunk finds the chunks worth a precise look.
fn has_forbidden(s: &str) -> bool {
    const CHUNK: usize = 32;
    let bytes = s.as_bytes();
    bytes.chunks(CHUNK).enumerate().any(|(n, chunk)| {
        let suspect = chunk
            .iter()
            .fold(false, |acc, &b| acc | (b < 0x20) | (b == 0xef));
        suspect && {
            let start = n * CHUNK;
            (start..start + chunk.len()).any(|i| match bytes[i] {
                b'\t' | b'\n' | b'\r' => false,
                0..=0x1f => true,
                0xef => {
                    bytes.get(i + 1) == Some(&0xbf) && matches!(bytes.get(i + 2), Some(0xbe | 0xbf))
                }
                _ => false,
            })
        }
    })
}

/// `s` without forbidden characters; borrows when there is nothing to remove (the usual case).
fn strip_forbidden(s: &str) -> Cow<'_, str> {
    if has_forbidden(s) {
        Cow::Owned(s.chars().filter(|&c| !is_forbidden(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// `<name><![CDATA[value]]></name>` with `value` cleaned of forbidden characters.
fn cdata_el(out: &mut String, name: &str, value: &str) {
    cdata_el_clean(out, name, &strip_forbidden(value));
}

/// [`cdata_el`] for a value already free of forbidden characters (ours, or stripped before).
fn cdata_el_clean(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_cdata(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn opt_cdata_el(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        cdata_el(out, name, v);
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a char boundary and, where cheap to
/// tell, does not strand a combining mark, variation selector, skin tone or ZWJ sequence half.
fn truncate_text(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = end;
    // Bounded: a pathological run of extenders falls back to the plain char-boundary cut.
    for _ in 0..32 {
        let next = s[end..].chars().next();
        let prev = s[..end].chars().next_back();
        match prev {
            Some(p) if next.is_some_and(extends_previous) || p == '\u{200d}' => {
                end -= p.len_utf8();
            }
            _ => return &s[..end],
        }
    }
    &s[..cut]
}

/// Whether `c` belongs to the grapheme of the character before it (a cheap subset of UAX #29).
fn extends_previous(c: char) -> bool {
    matches!(c,
        '\u{300}'..='\u{36f}'
        | '\u{1ab0}'..='\u{1aff}'
        | '\u{1dc0}'..='\u{1dff}'
        | '\u{200d}'
        | '\u{20d0}'..='\u{20ff}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{fe20}'..='\u{fe2f}'
        | '\u{1f3fb}'..='\u{1f3ff}'
        | '\u{e0020}'..='\u{e007f}'
        | '\u{e0100}'..='\u{e01ef}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::crypto::EncodingAesKey;
    use crate::wechat::xml;

    const CTX: ReplyContext<'static> = ReplyContext {
        to_user: "o_user",
        from_user: "gh_acc",
        create_time: 1700000000,
        after_user_message: true,
    };
    const HEAD: &str = "<xml><ToUserName><![CDATA[o_user]]></ToUserName><FromUserName><![CDATA[gh_acc]]></FromUserName><CreateTime>1700000000</CreateTime>";

    fn article(n: u32) -> Article {
        Article {
            title: format!("t{n}"),
            description: format!("d{n}"),
            pic_url: format!("p{n}"),
            url: format!("u{n}"),
        }
    }

    #[test]
    fn none_renders_nothing() {
        assert_eq!(render(&Reply::None, &CTX), None);
        assert_eq!(render(&Reply::News { articles: vec![] }, &CTX), None);
    }

    #[test]
    fn text() {
        let r = Reply::Text {
            content: "你好\n世界".into(),
        };
        assert_eq!(
            render(&r, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好\n世界]]></Content></xml>").as_str())
        );
    }

    #[test]
    fn image_and_voice() {
        assert_eq!(
            render(&Reply::Image { media_id: "m1".into() }, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[image]]></MsgType><Image><MediaId><![CDATA[m1]]></MediaId></Image></xml>").as_str())
        );
        assert_eq!(
            render(&Reply::Voice { media_id: "m2".into() }, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[voice]]></MsgType><Voice><MediaId><![CDATA[m2]]></MediaId></Voice></xml>").as_str())
        );
    }

    #[test]
    fn video_with_and_without_optionals() {
        let full = Reply::Video {
            media_id: "m".into(),
            title: Some("T".into()),
            description: Some("D".into()),
        };
        assert_eq!(
            render(&full, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[m]]></MediaId><Title><![CDATA[T]]></Title><Description><![CDATA[D]]></Description></Video></xml>").as_str())
        );
        let bare = Reply::Video {
            media_id: "m".into(),
            title: None,
            description: None,
        };
        assert_eq!(
            render(&bare, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[m]]></MediaId></Video></xml>").as_str())
        );
    }

    #[test]
    fn music() {
        let full = Reply::Music {
            title: Some("T".into()),
            description: Some("D".into()),
            music_url: Some("u".into()),
            hq_music_url: Some("hq".into()),
            thumb_media_id: "th".into(),
        };
        assert_eq!(
            render(&full, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[music]]></MsgType><Music><Title><![CDATA[T]]></Title><Description><![CDATA[D]]></Description><MusicUrl><![CDATA[u]]></MusicUrl><HQMusicUrl><![CDATA[hq]]></HQMusicUrl><ThumbMediaId><![CDATA[th]]></ThumbMediaId></Music></xml>").as_str())
        );
        let bare = Reply::Music {
            title: None,
            description: None,
            music_url: None,
            hq_music_url: None,
            thumb_media_id: "th".into(),
        };
        assert_eq!(
            render(&bare, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[music]]></MsgType><Music><ThumbMediaId><![CDATA[th]]></ThumbMediaId></Music></xml>").as_str())
        );
    }

    #[test]
    fn news_limits() {
        let r = Reply::News {
            articles: (1..=10).map(article).collect(),
        };
        assert_eq!(
            render(&r, &CTX).as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount><Articles><item><Title><![CDATA[t1]]></Title><Description><![CDATA[d1]]></Description><PicUrl><![CDATA[p1]]></PicUrl><Url><![CDATA[u1]]></Url></item></Articles></xml>").as_str())
        );
        let after_event = ReplyContext {
            after_user_message: false,
            ..CTX
        };
        let xml = render(&r, &after_event).expect("renders");
        let root = xml::parse(&xml).expect("well-formed");
        assert_eq!(root.child_text("ArticleCount"), Some("8"));
        let items = root
            .child("Articles")
            .expect("articles")
            .children_named("item");
        let titles: Vec<_> = items.map(|i| i.child_text("Title").unwrap_or("")).collect();
        assert_eq!(titles, ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]);
    }

    #[test]
    fn transfer_customer_service() {
        assert_eq!(
            render(&Reply::TransferCustomerService { kf_account: None }, &CTX).as_deref(),
            Some(
                format!("{HEAD}<MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>")
                    .as_str()
            )
        );
        assert_eq!(
            render(
                &Reply::TransferCustomerService {
                    kf_account: Some("test1@test".into())
                },
                &CTX
            )
            .as_deref(),
            Some(format!("{HEAD}<MsgType><![CDATA[transfer_customer_service]]></MsgType><TransInfo><KfAccount><![CDATA[test1@test]]></KfAccount></TransInfo></xml>").as_str())
        );
    }

    #[test]
    fn cdata_terminator_is_split_and_forbidden_chars_stripped() {
        let ctx = ReplyContext {
            to_user: "o\u{1}u",
            ..CTX
        };
        let r = Reply::Text {
            content: "a]]>b\u{0}\u{8}\u{b}\u{c}\u{1f}\u{fffe}\u{ffff}\t\n\r]]\u{2}>".into(),
        };
        let xml = render(&r, &ctx).expect("renders");
        assert!(xml.contains("<ToUserName><![CDATA[ou]]></ToUserName>"));
        assert!(
            xml.contains("<Content><![CDATA[a]]]]><![CDATA[>b\t\n\r]]]]><![CDATA[>]]></Content>")
        );
        let root = xml::parse(&xml).expect("well-formed");
        assert_eq!(root.child_text("Content"), Some("a]]>b\t\n\r]]>"));
    }

    #[test]
    fn truncation_keeps_utf8_whole() {
        let content_of = |content: String| {
            let xml = render(&Reply::Text { content }, &CTX).expect("renders");
            xml::parse(&xml)
                .expect("well-formed")
                .child_text("Content")
                .expect("content")
                .to_owned()
        };
        // 3-byte Chinese: 682 chars = 2046 bytes fit, the 683rd would not.
        let c = content_of("中".repeat(1000));
        assert_eq!(c.len(), 2046);
        assert_eq!(c, "中".repeat(682));
        // 4-byte emoji: 511 fit (2044 bytes).
        let c = content_of("🎉".repeat(600));
        assert_eq!(c, "🎉".repeat(511));
        // Mixed offset so the cut lands mid-char.
        let c = content_of(format!("a{}", "中".repeat(1000)));
        assert_eq!(c.len(), 2047);
        let c = content_of(format!("ab{}", "中".repeat(1000)));
        assert_eq!(c.len(), 2045);
        // Exactly at the limit: untouched.
        let exact = "x".repeat(TEXT_MAX_BYTES);
        assert_eq!(content_of(exact.clone()), exact);
    }

    #[test]
    fn truncation_prefers_whole_graphemes() {
        // "e" + combining acute: the cut must not keep the "e" without its accent.
        let s = format!("{}e\u{301}", "x".repeat(2046));
        assert_eq!(truncate_text(&s, 2047), "x".repeat(2046));
        // Thumbs-up + skin tone (4 + 4 bytes) straddling the limit.
        let s = format!("{}👍🏽", "x".repeat(2043));
        assert_eq!(truncate_text(&s, 2047), "x".repeat(2043));
        // ZWJ family: never end on a ZWJ or in the middle of the sequence.
        let fam = "👨\u{200d}👩\u{200d}👧";
        let s = format!("{}{fam}", "x".repeat(2040));
        assert_eq!(truncate_text(&s, 2047), "x".repeat(2040));
        // Plain text is cut exactly at the limit.
        assert_eq!(truncate_text(&"y".repeat(3000), 2047).len(), 2047);
    }

    #[test]
    fn envelope_exact_shape_and_hygiene() {
        assert_eq!(
            envelope("E", "S", 12, "N"),
            "<xml>\n<Encrypt><![CDATA[E]]></Encrypt>\n<MsgSignature><![CDATA[S]]></MsgSignature>\n<TimeStamp>12</TimeStamp>\n<Nonce><![CDATA[N]]></Nonce>\n</xml>"
        );
        let e = envelope("E", "S", 12, "a]]>\u{1}b");
        assert!(e.contains("<Nonce><![CDATA[a]]]]><![CDATA[>b]]></Nonce>"));
    }

    /// Strings rich in what the fast paths look at: controls, `]`, `>`, U+FFFD..U+FFFF and other
    /// 0xEF-led characters, CJK, emoji.
    fn tricky_text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(
            proptest::prop_oneof![
                proptest::char::range('\u{0}', '\u{7f}'),
                proptest::sample::select(vec![
                    ']', '>', '\u{fffd}', '\u{fffe}', '\u{ffff}', '\u{fe0f}', '\u{efff}',
                    '\u{f000}', '中', '🎉', '\u{bfbe}',
                ]),
                proptest::char::any(),
            ],
            0..80,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn byte_scan_agrees_with_the_char_definition(s in tricky_text()) {
            proptest::prop_assert_eq!(has_forbidden(&s), s.chars().any(is_forbidden));
            let stripped: String = s.chars().filter(|&c| !is_forbidden(c)).collect();
            let got = strip_forbidden(&s);
            proptest::prop_assert_eq!(got.as_ref(), stripped.as_str());
        }

        #[test]
        fn seal_is_envelope_of_encrypt_and_sign(
            xml in tricky_text(),
            nonce in tricky_text(),
            ts in proptest::num::i64::ANY,
            random in proptest::array::uniform16(proptest::num::u8::ANY),
        ) {
            let (cipher, app, token) = sealing_parts();
            let clean_nonce: String = nonce.chars().filter(|&c| !is_forbidden(c)).collect();
            let encrypt = cipher.encrypt_with_random(&xml, &app, &random);
            let ts_text = ts.to_string();
            let sig = signature::sign(&[token.expose(), &ts_text, &clean_nonce, &encrypt]);
            proptest::prop_assert_eq!(
                seal_with_random(&cipher, &app, &token, &xml, ts, &nonce, &random),
                envelope(&encrypt, &sig, ts, &clean_nonce)
            );
        }
    }

    fn sealing_parts() -> (Cipher, AppId, Token) {
        let key = EncodingAesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
            .expect("sample key");
        (
            Cipher::new(&key),
            AppId::new("wx2c2769f8efd9abc2"),
            Token::new("spamtest"),
        )
    }

    #[test]
    fn forbidden_edges() {
        for (s, bad) in [
            ("", false),
            ("\t\n\r", false),
            ("\u{0}", true),
            ("\u{1f}", true),
            ("\u{7f}", false),
            ("\u{fffd}", false),
            ("\u{fffe}", true),
            ("x\u{ffff}", true),
            ("\u{efbf}", false),
        ] {
            assert_eq!(has_forbidden(s), bad, "{s:?}");
        }
        // U+FFFE straddling the scan's 32-byte chunks, and controls at both chunk ends.
        for lead in 29..34 {
            let s = format!("{}\u{fffe}", "x".repeat(lead));
            assert!(has_forbidden(&s), "{lead}");
            assert!(!has_forbidden(&format!("{}\u{fffd}", "x".repeat(lead))));
        }
        assert!(has_forbidden(&format!("{}\u{1}", "x".repeat(31))));
        assert!(has_forbidden(&format!("{}\u{1}", "x".repeat(32))));
    }

    #[test]
    fn seal_round_trips_and_verifies() {
        let key = EncodingAesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
            .expect("sample key");
        let cipher = Cipher::new(&key);
        let app = AppId::new("wx2c2769f8efd9abc2");
        let token = Token::new("spamtest");
        let reply = render(
            &Reply::Text {
                content: "hi".into(),
            },
            &CTX,
        )
        .expect("renders");
        let sealed = seal(&cipher, &app, &token, &reply, 1409735669, "1320562132\u{1}");
        let root = xml::parse(&sealed).expect("well-formed");
        let enc = root.child_text("Encrypt").expect("Encrypt");
        let sig = root.child_text("MsgSignature").expect("sig");
        assert_eq!(root.child_text("TimeStamp"), Some("1409735669"));
        assert_eq!(root.child_text("Nonce"), Some("1320562132"));
        assert!(signature::verify(
            sig,
            &["spamtest", "1409735669", "1320562132", enc]
        ));
        assert_eq!(cipher.decrypt(enc, &app).as_deref(), Ok(reply.as_str()));
    }
}
