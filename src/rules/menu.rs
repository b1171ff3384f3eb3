//! The custom menu (`[[menu.button]]`): validated against the platform's limits at load time and
//! serialised exactly as the `menu/create` API wants it.
//!
//! May depend on: [`super::raw`], [`super::diag`], serde.

use std::ops::Range;

use serde::Serialize;

use super::diag::{allowed_help, Sink};
use super::raw::{RawButton, RawMenu, S};

/// One menu button: a leaf action or a parent with `sub_button`s. Field order is the JSON order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MenuButton {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub article_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<MenuButton>,
}

#[derive(Serialize)]
pub(crate) struct MenuBody<'a> {
    pub button: &'a [MenuButton],
}

const TYPES: &[&str] = &[
    "click",
    "view",
    "miniprogram",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "media_id",
    "view_limited",
    "article_id",
    "article_view_limited",
];

const MAX_TOP: usize = 3;
const MAX_SUB: usize = 5;
const MAX_TOP_NAME: usize = 16;
const MAX_SUB_NAME: usize = 60;
const MAX_KEY: usize = 128;
const MAX_URL: usize = 1024;

/// Validates the menu; returns it (even with errors, the sink decides) plus the keys of event
/// buttons so rules can be cross-checked.
pub(crate) fn compile(
    raw: &RawMenu,
    sink: &mut Sink<'_>,
) -> (Vec<MenuButton>, Vec<(String, Range<usize>)>) {
    let mut keys = Vec::new();
    if raw.button.is_empty() {
        sink.error_help(
            0..0,
            "menu has no buttons",
            "add 1 to 3 [[menu.button]] tables, or remove [menu]",
        );
    }
    if raw.button.len() > MAX_TOP {
        let span = raw.button[MAX_TOP].span();
        sink.error_help(
            span,
            format!(
                "menu has {} top-level buttons; the platform allows at most {MAX_TOP}",
                raw.button.len()
            ),
            "group buttons under a parent with `sub_button`",
        );
    }
    let buttons = raw
        .button
        .iter()
        .map(|b| button(b, true, sink, &mut keys))
        .collect();
    (buttons, keys)
}

fn button(
    b: &S<RawButton>,
    top: bool,
    sink: &mut Sink<'_>,
    keys: &mut Vec<(String, Range<usize>)>,
) -> MenuButton {
    let r = b.get_ref();
    let name = r.name.get_ref();
    let max_name = if top { MAX_TOP_NAME } else { MAX_SUB_NAME };
    if name.trim().is_empty() {
        sink.error(r.name.span(), "button name is empty");
    } else if name.len() > max_name {
        sink.error_help(
            r.name.span(),
            format!(
                "button name `{name}` is {} bytes; {} buttons allow at most {max_name} bytes",
                name.len(),
                if top { "top-level" } else { "sub-menu" }
            ),
            "a Chinese character is 3 bytes: keep top-level names to 5 characters, sub-menu names to 20",
        );
    }
    let opt = |o: &Option<S<String>>| o.as_ref().map(|s| s.get_ref().clone());
    let mut out = MenuButton {
        kind: opt(&r.kind),
        name: name.clone(),
        key: opt(&r.key),
        url: opt(&r.url),
        appid: opt(&r.appid),
        pagepath: opt(&r.pagepath),
        media_id: opt(&r.media_id),
        article_id: opt(&r.article_id),
        sub_button: Vec::new(),
    };
    if let Some(subs) = &r.sub_button {
        if !top {
            sink.error(
                b.span(),
                "sub-menu buttons cannot have their own `sub_button`",
            );
            return out;
        }
        if let Some(k) = &r.kind {
            sink.error_help(
                k.span(),
                "a button with `sub_button` is a parent and takes no `type`",
                "remove `type` (and key/url) from the parent",
            );
        }
        if subs.is_empty() {
            sink.error(b.span(), "`sub_button` is empty; add 1 to 5 buttons");
        }
        if subs.len() > MAX_SUB {
            sink.error(
                subs[MAX_SUB].span(),
                format!(
                    "button `{name}` has {} sub-buttons; the platform allows at most {MAX_SUB}",
                    subs.len()
                ),
            );
        }
        out.kind = None;
        out.sub_button = subs.iter().map(|s| button(s, false, sink, keys)).collect();
        return out;
    }
    let Some(kind) = &r.kind else {
        sink.error_help(
            r.name.span(),
            format!("button `{name}` has neither `type` nor `sub_button`"),
            format!("add `type` (one of {}) or `sub_button`", TYPES.join(", ")),
        );
        return out;
    };
    let k = kind.get_ref().as_str();
    if !TYPES.contains(&k) {
        sink.error_help(
            kind.span(),
            format!("unknown button type `{k}`"),
            allowed_help(k, TYPES),
        );
        return out;
    }
    let need = |field: &Option<S<String>>, fname: &str, sink: &mut Sink<'_>| {
        if field.as_ref().is_none_or(|f| f.get_ref().trim().is_empty()) {
            sink.error_help(
                kind.span(),
                format!("`{k}` button `{name}` needs `{fname}`"),
                format!("add {fname} = \"…\""),
            );
        }
    };
    match k {
        "view" => need(&r.url, "url", sink),
        "miniprogram" => {
            need(&r.url, "url", sink);
            need(&r.appid, "appid", sink);
            need(&r.pagepath, "pagepath", sink);
        }
        "media_id" | "view_limited" => need(&r.media_id, "media_id", sink),
        "article_id" | "article_view_limited" => need(&r.article_id, "article_id", sink),
        _ => {
            need(&r.key, "key", sink);
            if let Some(key) = &r.key {
                keys.push((key.get_ref().clone(), key.span()));
            }
        }
    }
    if let Some(key) = &r.key {
        if key.get_ref().len() > MAX_KEY {
            sink.error(
                key.span(),
                format!("key is {} bytes; at most {MAX_KEY}", key.get_ref().len()),
            );
        }
    }
    if let Some(url) = &r.url {
        let u = url.get_ref();
        if u.len() > MAX_URL {
            sink.error(
                url.span(),
                format!("url is {} bytes; at most {MAX_URL}", u.len()),
            );
        }
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            sink.error_help(
                url.span(),
                format!("url `{u}` is not http(s)"),
                "menu links must start with https:// or http://",
            );
        }
    }
    out
}
