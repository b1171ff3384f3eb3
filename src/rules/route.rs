//! Routing: the compiled indexes and [`RuleSet::route`].
//!
//! Candidates come from hash/automaton/RegexSet lookups, never from a scan over rules; the
//! lowest rule index whose remaining conditions hold wins. Rendering a reply happens here too,
//! and a render failure (which load-time checks make unlikely) degrades to `Reply::None`.
//! May depend on: [`crate::wechat`] types, [`crate::render`], aho-corasick, regex, chrono.

use std::collections::HashMap;

/// The routing tables are probed once or twice per push; foldhash is several times cheaper than
/// SipHash on keys this short, and they are the operator's own keywords.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use aho_corasick::AhoCorasick;
use chrono::{DateTime, Utc};
use rand::Rng;
use regex::{Regex, RegexSet};

use super::compile::{Action, ReplySpec, TextSpec};
use super::window::normalize;
use super::{Decision, HandoffAction, RuleSet, Special, SubscriberView, WebhookAction, Why};
use crate::render::{PlainVars, RenderError, Vars};
use crate::wechat::message::{Event, Inbound, InboundKind};
use crate::wechat::reply::{Article, Reply};

/// How a prefix/contains pattern must sit in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatKind {
    Prefix,
    Contains,
}

/// User-message kinds a `msg_type` condition can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MsgKind {
    Text,
    Image,
    Voice,
    Video,
    ShortVideo,
    Location,
    Link,
    File,
}

impl MsgKind {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "text",
        "image",
        "voice",
        "video",
        "shortvideo",
        "location",
        "link",
        "file",
    ];

    pub(crate) fn parse(s: &str) -> Option<MsgKind> {
        Some(match s {
            "text" => MsgKind::Text,
            "image" => MsgKind::Image,
            "voice" => MsgKind::Voice,
            "video" => MsgKind::Video,
            "shortvideo" => MsgKind::ShortVideo,
            "location" => MsgKind::Location,
            "link" => MsgKind::Link,
            "file" => MsgKind::File,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            MsgKind::Text => "text",
            MsgKind::Image => "image",
            MsgKind::Voice => "voice",
            MsgKind::Video => "video",
            MsgKind::ShortVideo => "shortvideo",
            MsgKind::Location => "location",
            MsgKind::Link => "link",
            MsgKind::File => "file",
        }
    }
}

/// Event kinds a rule can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum EventKind {
    Subscribe,
    Scan,
    Click,
    View,
    Location,
    LocationSelect,
    ScancodePush,
    ScancodeWaitmsg,
    PicSysphoto,
    PicPhotoOrAlbum,
    PicWeixin,
    ViewMiniprogram,
}

impl EventKind {
    pub(crate) const NAMES: &'static [&'static str] = &[
        "subscribe",
        "scan",
        "click",
        "view",
        "location",
        "location_select",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "view_miniprogram",
    ];

    pub(crate) fn parse(s: &str) -> Option<EventKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "subscribe" => EventKind::Subscribe,
            "scan" => EventKind::Scan,
            "click" => EventKind::Click,
            "view" => EventKind::View,
            "location" => EventKind::Location,
            "location_select" => EventKind::LocationSelect,
            "scancode_push" => EventKind::ScancodePush,
            "scancode_waitmsg" => EventKind::ScancodeWaitmsg,
            "pic_sysphoto" => EventKind::PicSysphoto,
            "pic_photo_or_album" => EventKind::PicPhotoOrAlbum,
            "pic_weixin" => EventKind::PicWeixin,
            "view_miniprogram" => EventKind::ViewMiniprogram,
            _ => return None,
        })
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            EventKind::Subscribe => "subscribe",
            EventKind::Scan => "SCAN scene",
            EventKind::Click => "CLICK key",
            EventKind::View => "VIEW url",
            EventKind::Location => "LOCATION",
            EventKind::LocationSelect => "location_select key",
            EventKind::ScancodePush => "scancode_push key",
            EventKind::ScancodeWaitmsg => "scancode_waitmsg key",
            EventKind::PicSysphoto => "pic_sysphoto key",
            EventKind::PicPhotoOrAlbum => "pic_photo_or_album key",
            EventKind::PicWeixin => "pic_weixin key",
            EventKind::ViewMiniprogram => "view_miniprogram page",
        }
    }
}

/// Event rules of one kind: by key (menu key, scene, url) and key-less.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub by_key: Map<String, Vec<u32>>,
    pub any: Vec<u32>,
}

/// Every lookup structure routing needs.
#[derive(Debug)]
pub(crate) struct Index {
    /// Normalised keyword → (rule, keyword as written).
    pub exact: Map<String, Vec<(u32, String)>>,
    pub ac: Option<AhoCorasick>,
    /// Per automaton pattern: (rule, kind, keyword as written).
    pub ac_pats: Vec<Vec<(u32, PatKind, String)>>,
    pub regex_set: Option<RegexSet>,
    /// Per `RegexSet` pattern: (rule, the same regex, for captures).
    pub regexes: Vec<(u32, Regex)>,
    pub msg_type: Map<MsgKind, Vec<u32>>,
    pub any: Vec<u32>,
    pub events: Map<EventKind, Bucket>,
    pub fallback: Option<u32>,
}

/// Accumulates triggers during compilation.
#[derive(Default)]
pub(crate) struct IndexBuilder {
    exact: Map<String, Vec<(u32, String)>>,
    ac_strings: Vec<String>,
    ac_lookup: HashMap<String, usize>,
    ac_pats: Vec<Vec<(u32, PatKind, String)>>,
    regexes: Vec<(u32, Regex)>,
    msg_type: Map<MsgKind, Vec<u32>>,
    any: Vec<u32>,
    events: Map<EventKind, Bucket>,
    pub fallback: Option<u32>,
}

impl IndexBuilder {
    pub(crate) fn exact(&mut self, rule: u32, norm: String, written: String) {
        self.exact.entry(norm).or_default().push((rule, written));
    }

    pub(crate) fn pattern(&mut self, rule: u32, kind: PatKind, norm: String, written: String) {
        let id = match self.ac_lookup.get(&norm) {
            Some(&id) => id,
            None => {
                let id = self.ac_strings.len();
                self.ac_strings.push(norm.clone());
                self.ac_lookup.insert(norm, id);
                self.ac_pats.push(Vec::new());
                id
            }
        };
        self.ac_pats[id].push((rule, kind, written));
    }

    pub(crate) fn regex(&mut self, rule: u32, re: Regex) {
        self.regexes.push((rule, re));
    }

    pub(crate) fn msg_type(&mut self, rule: u32, kind: MsgKind) {
        self.msg_type.entry(kind).or_default().push(rule);
    }

    pub(crate) fn any(&mut self, rule: u32) {
        self.any.push(rule);
    }

    pub(crate) fn event(&mut self, rule: u32, kind: EventKind, key: Option<String>) {
        let b = self.events.entry(kind).or_default();
        match key {
            Some(k) => b.by_key.entry(k).or_default().push(rule),
            None => b.any.push(rule),
        }
    }

    pub(crate) fn build(self) -> Result<Index, String> {
        let ac = if self.ac_strings.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(&self.ac_strings).map_err(|e| e.to_string())?)
        };
        let regex_set = if self.regexes.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(self.regexes.iter().map(|(_, r)| r.as_str()))
                    .case_insensitive(true)
                    .size_limit(64 << 20)
                    .dfa_size_limit(16 << 20)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Index {
            exact: self.exact,
            ac,
            ac_pats: self.ac_pats,
            regex_set,
            regexes: self.regexes,
            msg_type: self.msg_type,
            any: self.any,
            events: self.events,
            fallback: self.fallback,
        })
    }
}

/// Why a candidate rule is a candidate.
#[derive(Clone, Debug)]
enum Hit<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Contains(&'a str),
    Regex(usize),
    MsgType(MsgKind),
    Any,
    Event(EventKind, Option<&'a str>),
    Fallback,
}

/// What routing knows about the message beyond the rule that won.
struct Msg<'m> {
    text: Option<&'m str>,
    normalized: String,
    channel: Option<&'m str>,
    scan_result: Option<&'m str>,
    is_subscribe: bool,
}

impl RuleSet {
    /// Picks the rule for one push and renders its reply. Never panics; a rendering failure
    /// yields `Reply::None` and a warning in the log.
    pub fn route(&self, msg: &Inbound, sub: &SubscriberView<'_>, now: DateTime<Utc>) -> Decision {
        let mut m = Msg {
            text: None,
            normalized: String::new(),
            channel: None,
            scan_result: None,
            is_subscribe: false,
        };
        let mut cands: Vec<(u32, Hit<'_>)> = Vec::new();
        let ix = &self.index;
        let mut user_message = true;
        let kind = match &msg.kind {
            InboundKind::Text { content, .. } => {
                m.text = Some(content);
                Some(MsgKind::Text)
            }
            InboundKind::Voice { recognition, .. } => {
                m.text = recognition.as_deref();
                Some(MsgKind::Voice)
            }
            InboundKind::Image { .. } => Some(MsgKind::Image),
            InboundKind::Video { .. } => Some(MsgKind::Video),
            InboundKind::ShortVideo { .. } => Some(MsgKind::ShortVideo),
            InboundKind::Location { .. } => Some(MsgKind::Location),
            InboundKind::Link { .. } => Some(MsgKind::Link),
            InboundKind::File { .. } => Some(MsgKind::File),
            InboundKind::Event(e) => {
                user_message = false;
                self.event_candidates(e, &mut m, &mut cands);
                None
            }
            InboundKind::Unknown { .. } => {
                user_message = false;
                None
            }
        };
        if let Some(text) = m.text {
            m.normalized = normalize(text);
            self.text_candidates(&m.normalized, &mut cands);
        }
        if let Some(k) = kind {
            if let Some(rs) = ix.msg_type.get(&k) {
                cands.extend(rs.iter().map(|&r| (r, Hit::MsgType(k))));
            }
            cands.extend(ix.any.iter().map(|&r| (r, Hit::Any)));
        }
        // Stable: for one rule, the first-listed trigger kind explains the match.
        cands.sort_by_key(|(r, _)| *r);
        let winner = cands
            .into_iter()
            .find(|(r, _)| self.conditions_hold(*r, &m, sub, now));
        let winner = match (winner, ix.fallback) {
            (Some(w), _) => Some(w),
            // Fallback answers user messages only; unmatched events get `success`.
            (None, Some(f)) if user_message => Some((f, Hit::Fallback)),
            _ => None,
        };
        let Some((r, hit)) = winner else {
            return Decision {
                rule: None,
                why: if user_message {
                    Why::NoRule
                } else {
                    Why::NoEventRule
                },
                reply: Reply::None,
                add_tags: Vec::new(),
                special: None,
            };
        };
        self.decide(r, hit, msg, &m, sub, now)
    }

    fn text_candidates<'a>(&'a self, t: &str, cands: &mut Vec<(u32, Hit<'a>)>) {
        let ix = &self.index;
        if let Some(v) = ix.exact.get(t) {
            cands.extend(v.iter().map(|(r, kw)| (*r, Hit::Exact(kw))));
        }
        if let Some(ac) = &ix.ac {
            for mat in ac.find_overlapping_iter(t) {
                for (r, kind, kw) in ix
                    .ac_pats
                    .get(mat.pattern().as_usize())
                    .into_iter()
                    .flatten()
                {
                    match kind {
                        PatKind::Prefix if mat.start() == 0 => cands.push((*r, Hit::Prefix(kw))),
                        PatKind::Prefix => {}
                        PatKind::Contains => cands.push((*r, Hit::Contains(kw))),
                    }
                }
            }
        }
        if let Some(set) = &ix.regex_set {
            for id in set.matches(t).iter() {
                if let Some((r, _)) = ix.regexes.get(id) {
                    cands.push((*r, Hit::Regex(id)));
                }
            }
        }
    }

    fn event_candidates<'a, 'm>(
        &'a self,
        e: &'m Event,
        m: &mut Msg<'m>,
        cands: &mut Vec<(u32, Hit<'a>)>,
    ) {
        let (kind, key): (EventKind, Option<&str>) = match e {
            Event::Subscribe { scene, .. } => {
                m.is_subscribe = true;
                m.channel = scene.as_deref();
                (EventKind::Subscribe, scene.as_deref())
            }
            Event::Scan { scene, .. } => {
                m.channel = Some(scene);
                (EventKind::Scan, Some(scene))
            }
            Event::Click { key } => (EventKind::Click, Some(key)),
            Event::View { url, .. } => (EventKind::View, Some(url)),
            Event::Location { .. } => (EventKind::Location, None),
            Event::LocationSelect { key, .. } => (EventKind::LocationSelect, Some(key)),
            Event::ScancodePush {
                key, scan_result, ..
            } => {
                m.scan_result = Some(scan_result);
                (EventKind::ScancodePush, Some(key))
            }
            Event::ScancodeWaitmsg {
                key, scan_result, ..
            } => {
                m.scan_result = Some(scan_result);
                (EventKind::ScancodeWaitmsg, Some(key))
            }
            Event::PicSysphoto { key, .. } => (EventKind::PicSysphoto, Some(key)),
            Event::PicPhotoOrAlbum { key, .. } => (EventKind::PicPhotoOrAlbum, Some(key)),
            Event::PicWeixin { key, .. } => (EventKind::PicWeixin, Some(key)),
            Event::ViewMiniprogram { page_path, .. } => {
                (EventKind::ViewMiniprogram, Some(page_path))
            }
            // Unsubscribe, job reports, kf sessions and unknown events never match a rule.
            _ => return,
        };
        let Some(bucket) = self.index.events.get(&kind) else {
            return;
        };
        if let Some(k) = key {
            if let Some((kk, rs)) = bucket.by_key.get_key_value(k) {
                cands.extend(rs.iter().map(|&r| (r, Hit::Event(kind, Some(kk.as_str())))));
            }
        }
        cands.extend(bucket.any.iter().map(|&r| (r, Hit::Event(kind, None))));
    }

    fn conditions_hold(
        &self,
        r: u32,
        m: &Msg<'_>,
        sub: &SubscriberView<'_>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(rule) = self.rules.get(r as usize) else {
            return false;
        };
        if let Some(w) = &rule.window {
            if !w.contains(now, self.tz) {
                return false;
            }
        }
        if let Some(ft) = rule.first_time {
            if !m.is_subscribe || sub.first_time != ft {
                return false;
            }
        }
        if let Some(p) = &rule.scan_result_prefix {
            if !m.scan_result.is_some_and(|s| s.starts_with(p.as_str())) {
                return false;
            }
        }
        true
    }

    fn decide(
        &self,
        r: u32,
        hit: Hit<'_>,
        msg: &Inbound,
        m: &Msg<'_>,
        sub: &SubscriberView<'_>,
        now: DateTime<Utc>,
    ) -> Decision {
        let Some(rule) = self.rules.get(r as usize) else {
            // Indexes only hold valid rule numbers; this is unreachable in practice.
            return Decision {
                rule: None,
                why: Why::Internal,
                reply: Reply::None,
                add_tags: Vec::new(),
                special: None,
            };
        };
        let text = m.text.unwrap_or("");
        let mut keyword: &str = text;
        let mut captures: Vec<Option<String>> = Vec::new();
        let mut groups = std::collections::BTreeMap::new();
        let why = match &hit {
            Hit::Exact(k) => {
                keyword = k;
                Why::Exact(k.to_string())
            }
            Hit::Prefix(k) => {
                keyword = k;
                Why::Prefix(k.to_string())
            }
            Hit::Contains(k) => {
                keyword = k;
                Why::Contains(k.to_string())
            }
            Hit::Regex(id) => {
                if let Some((_, re)) = self.index.regexes.get(*id) {
                    if let Some(c) = re.captures(&m.normalized) {
                        captures = c
                            .iter()
                            .map(|g| g.map(|g| g.as_str().to_string()))
                            .collect();
                        for name in re.capture_names().flatten() {
                            if let Some(g) = c.name(name) {
                                groups.insert(name.to_string(), g.as_str().to_string());
                            }
                        }
                    }
                    Why::Regex(re.as_str().to_string())
                } else {
                    Why::Regex(String::new())
                }
            }
            Hit::MsgType(k) => Why::MsgType(k.name()),
            Hit::Any => Why::Any,
            Hit::Event(k, key) => Why::Event {
                label: k.label(),
                key: key.map(str::to_string),
                via_channel: *k == EventKind::Subscribe && key.is_some(),
                first_time: rule.first_time,
            },
            Hit::Fallback => Why::Fallback,
        };
        let tz = self.tz;
        let vars = || Vars {
            openid: msg.header.from_user.as_str().to_string(),
            channel: m.channel.or(sub.channel).map(str::to_string),
            tags: sub.tags.to_vec(),
            subscribed_since: sub.subscribed_since,
            keyword: keyword.to_string(),
            captures: captures.clone(),
            groups: groups.clone(),
            now,
            tz,
            text: text.to_string(),
        };
        let mut r = Renderer {
            set: self,
            plain: PlainVars {
                openid: msg.header.from_user.as_str(),
                keyword,
                text,
                channel: m.channel.or(sub.channel),
            },
            vars: None,
            make: &vars,
        };
        let (reply, special) = match &rule.action {
            Action::TagOnly => (Ok(Reply::None), None),
            Action::Reply(spec) => (r.reply(spec), None),
            Action::Random(specs) => {
                let i = if specs.len() > 1 {
                    rand::thread_rng().gen_range(0..specs.len())
                } else {
                    0
                };
                match specs.get(i) {
                    Some(spec) => (r.reply(spec), None),
                    None => (Ok(Reply::None), None),
                }
            }
            Action::Article(id) => (
                Ok(Reply::None),
                Some(Ok(Special::Article { id: id.clone() })),
            ),
            Action::Handoff(h) => {
                let action = (|| -> Result<Special, RenderError> {
                    Ok(Special::Handoff(HandoffAction {
                        kf_account: h.kf_account.clone(),
                        notice: h.notice.as_ref().map(|t| r.text(t)).transpose()?,
                        in_hours: h.window.as_ref().is_none_or(|w| w.contains(now, tz)),
                        offline: h.offline.as_ref().map(|t| r.text(t)).transpose()?,
                    }))
                })();
                (Ok(Reply::None), Some(action))
            }
            Action::Webhook(w) => {
                let action = (|| -> Result<Special, RenderError> {
                    Ok(Special::Webhook(WebhookAction {
                        url: w.url.clone(),
                        timeout: w.timeout,
                        fallback: w.fallback.as_ref().map(|t| r.text(t)).transpose()?,
                    }))
                })();
                (Ok(Reply::None), Some(action))
            }
        };
        let (reply, special) = match (reply, special.transpose()) {
            (Ok(reply), Ok(special)) => (reply, special),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(rule = %rule.name, template = %e.name(), error = %e, "reply template failed to render; answering success");
                (Reply::None, None)
            }
        };
        Decision {
            rule: Some(rule.name.clone()),
            why,
            reply,
            add_tags: rule.tags.clone(),
            special,
        }
    }
}

/// Renders text specs, building the template variables only if a template is actually used.
struct Renderer<'a, F: Fn() -> Vars> {
    set: &'a RuleSet,
    /// Enough for a plain template, which needs no [`Vars`] at all.
    plain: PlainVars<'a>,
    /// Built on first use and shared by every template of this reply.
    vars: Option<minijinja::Value>,
    make: &'a F,
}

impl<F: Fn() -> Vars> Renderer<'_, F> {
    fn text(&mut self, t: &TextSpec) -> Result<String, RenderError> {
        match t {
            TextSpec::Literal(s) => Ok(s.clone()),
            TextSpec::Template(name) => {
                if let Some(text) = self.set.templates.render_plain(name, &self.plain) {
                    return Ok(text);
                }
                let make = self.make;
                let vars = self
                    .vars
                    .get_or_insert_with(|| minijinja::Value::from_object(make()));
                self.set.templates.render(name, vars)
            }
        }
    }

    fn reply(&mut self, spec: &ReplySpec) -> Result<Reply, RenderError> {
        Ok(match spec {
            ReplySpec::Text(t) => Reply::Text {
                content: self.text(t)?,
            },
            ReplySpec::Image(m) => Reply::Image {
                media_id: m.clone(),
            },
            ReplySpec::Voice(m) => Reply::Voice {
                media_id: m.clone(),
            },
            ReplySpec::Video {
                media_id,
                title,
                description,
            } => Reply::Video {
                media_id: media_id.clone(),
                title: title.clone(),
                description: description.clone(),
            },
            ReplySpec::Music {
                title,
                description,
                music_url,
                hq_music_url,
                thumb_media_id,
            } => Reply::Music {
                title: title.clone(),
                description: description.clone(),
                music_url: music_url.clone(),
                hq_music_url: hq_music_url.clone(),
                thumb_media_id: thumb_media_id.clone(),
            },
            ReplySpec::News(items) => {
                let mut articles = Vec::with_capacity(items.len());
                for it in items {
                    articles.push(Article {
                        title: self.text(&it.title)?,
                        description: self.text(&it.description)?,
                        pic_url: it.pic_url.clone(),
                        url: it.url.clone(),
                    });
                }
                Reply::News { articles }
            }
            ReplySpec::Transfer(kf) => Reply::TransferCustomerService {
                kf_account: kf.clone(),
            },
        })
    }
}
