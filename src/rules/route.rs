//! Routing: [`RuleSet::route`] over the compiled [`super::model`].
//!
//! Candidates come from hash/automaton/RegexSet lookups, never from a scan over rules; the
//! lowest rule index whose remaining conditions hold wins. Rendering a reply happens here too,
//! and a render failure (which load-time checks make unlikely) degrades to `Reply::None`.
//! Reads the model; never builds it. May depend on: [`super::model`], [`super::window`],
//! [`crate::wechat`] types, [`crate::render`], chrono, rand.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::model::{Action, PatKind, ReplySpec, TextSpec};
use super::window::normalize;
use super::{
    AssistantAction, Decision, HandoffAction, RuleSet, Special, SubscriberView, WebhookAction, Why,
};
use crate::render::{PlainVars, RenderError, Vars};
use crate::wechat::message::{Event, Inbound, InboundKind};
use crate::wechat::names::{EventType, MsgType};
use crate::wechat::reply::{Article, Reply};

/// Why a candidate rule is a candidate.
#[derive(Clone, Debug)]
enum Hit<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Contains(&'a str),
    Regex(usize),
    MsgType(MsgType),
    Any,
    Event(EventType, Option<&'a str>),
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
                Some(MsgType::Text)
            }
            InboundKind::Voice { recognition, .. } => {
                m.text = recognition.as_deref();
                Some(MsgType::Voice)
            }
            InboundKind::Image { .. } => Some(MsgType::Image),
            InboundKind::Video { .. } => Some(MsgType::Video),
            InboundKind::ShortVideo { .. } => Some(MsgType::ShortVideo),
            InboundKind::Location { .. } => Some(MsgType::Location),
            InboundKind::Link { .. } => Some(MsgType::Link),
            InboundKind::File { .. } => Some(MsgType::File),
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
        let (kind, key): (EventType, Option<&str>) = match e {
            Event::Subscribe { scene, .. } => {
                m.is_subscribe = true;
                m.channel = scene.as_deref();
                (EventType::Subscribe, scene.as_deref())
            }
            Event::Scan { scene, .. } => {
                m.channel = Some(scene);
                (EventType::Scan, Some(scene))
            }
            Event::Click { key } => (EventType::Click, Some(key)),
            Event::View { url, .. } => (EventType::View, Some(url)),
            Event::Location { .. } => (EventType::Location, None),
            Event::LocationSelect { key, .. } => (EventType::LocationSelect, Some(key)),
            Event::ScancodePush {
                key, scan_result, ..
            } => {
                m.scan_result = Some(scan_result);
                (EventType::ScancodePush, Some(key))
            }
            Event::ScancodeWaitmsg {
                key, scan_result, ..
            } => {
                m.scan_result = Some(scan_result);
                (EventType::ScancodeWaitmsg, Some(key))
            }
            Event::PicSysphoto { key, .. } => (EventType::PicSysphoto, Some(key)),
            Event::PicPhotoOrAlbum { key, .. } => (EventType::PicPhotoOrAlbum, Some(key)),
            Event::PicWeixin { key, .. } => (EventType::PicWeixin, Some(key)),
            Event::ViewMiniprogram { page_path, .. } => {
                (EventType::ViewMiniprogram, Some(page_path))
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
            Hit::MsgType(k) => Why::MsgType(k.wire()),
            Hit::Any => Why::Any,
            Hit::Event(k, key) => Why::Event {
                label: k.described(),
                key: key.map(str::to_string),
                via_channel: *k == EventType::Subscribe && key.is_some(),
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
            Action::Assistant(a) => {
                let action = (|| -> Result<Special, RenderError> {
                    Ok(Special::Assistant(Box::new(AssistantAction {
                        model: a.model.clone(),
                        api_base: a.api_base.clone(),
                        api_key_env: a.api_key_env.clone(),
                        system: a.system.clone(),
                        max_tokens: a.max_tokens,
                        temperature: a.temperature,
                        turns: a.turns,
                        passages: a.passages,
                        budget: a.budget,
                        audience: a.audience.clone(),
                        teaser: a.teaser.as_ref().map(|t| r.text(t)).transpose()?,
                        fallback: a.fallback.as_ref().map(|t| r.text(t)).transpose()?,
                    })))
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
