//! `/wechat`: the callback URL the account's console points at.

use std::borrow::Cow;
use std::time::Instant;

use actix_web::{web, HttpResponse};

use super::limits::{Body, CallbackPeer};
use crate::pipeline::{CallbackError, CallbackQuery, Gateway};

/// Query strings the platform sends never repeat a key; a malformed one is treated as absent
/// fields, so the pipeline reports which parameter is missing.
fn query(raw: &str) -> CallbackQuery {
    parse_query(raw)
}

/// The callback query, read by hand: exactly what `web::Query::<CallbackQuery>::from_query`
/// (serde_urlencoded) gives, without its per-pair deserializer machinery. Pairs split on `&` and
/// at the first `=`; keys and values are `+`-as-space, percent-decoded, lossy UTF-8; unknown keys
/// are skipped; a repeated known key fails the whole query, which then reads as all fields absent
/// (serde refuses duplicate fields). Public for the benchmark that keeps it honest.
pub fn parse_query(raw: &str) -> CallbackQuery {
    const KEYS: [&str; 7] = [
        "signature",
        "timestamp",
        "nonce",
        "echostr",
        "encrypt_type",
        "msg_signature",
        "openid",
    ];
    let mut fields: [Option<String>; 7] = Default::default();
    // Byte loops rather than `split`/`split_once`: the pieces are a few dozen bytes, shorter than
    // a memchr call's setup pays for.
    let mut rest = raw;
    while !rest.is_empty() {
        let (pair, after) = match rest.bytes().position(|b| b == b'&') {
            Some(amp) => (&rest[..amp], &rest[amp + 1..]),
            None => (rest, ""),
        };
        rest = after;
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.bytes().position(|b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, ""),
        };
        let key = form_decode(key);
        let Some(slot) = KEYS.iter().position(|k| *k == key) else {
            continue;
        };
        if fields[slot].is_some() {
            return CallbackQuery::default();
        }
        fields[slot] = Some(form_decode(value).into_owned());
    }
    // A struct literal, not `..Default::default()`: a new field must be added here too.
    let [signature, timestamp, nonce, echostr, encrypt_type, msg_signature, openid] = fields;
    CallbackQuery {
        signature,
        timestamp,
        nonce,
        echostr,
        encrypt_type,
        msg_signature,
        openid,
    }
}

/// `application/x-www-form-urlencoded` decoding of one key or value: `+` is a space, `%XX` a
/// byte (a `%` not followed by two hex digits stays as it is), invalid UTF-8 becomes U+FFFD.
/// Borrows when there is nothing to decode, the usual case.
fn form_decode(s: &str) -> Cow<'_, str> {
    // Branch-free, so it vectorises: nearly every value has nothing to decode.
    if !s
        .bytes()
        .fold(false, |any, b| any | (b == b'+') | (b == b'%'))
    {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&b| char::from(b).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|&b| char::from(b).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        // Two hex digits make one byte, so the cast cannot truncate.
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// `GET /wechat`: echo `echostr` when the signature holds.
pub async fn verify(
    _allowed: CallbackPeer,
    req: actix_web::HttpRequest,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, CallbackError> {
    let q = query(req.query_string());
    let echo = gw.verify_url(&q)?;
    tracing::info!("URL verification answered");
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(echo))
}

/// `POST /wechat`: one push. The allow-list is checked before the body is read.
pub async fn push(
    _allowed: CallbackPeer,
    req: actix_web::HttpRequest,
    Body(body): Body,
    gw: web::Data<Gateway>,
) -> Result<HttpResponse, CallbackError> {
    let started = Instant::now();
    let q = query(req.query_string());
    let answer = gw.post(&q, &body, chrono::Utc::now()).await?;
    tracing::info!(
        msg_type = %answer.msg_type,
        encrypted = answer.encrypted,
        outcome = if answer.body == "success" { "no_reply" } else { "reply" },
        latency_us = started.elapsed().as_micros() as u64,
        "push"
    );
    let ct = if answer.body == "success" {
        "text/plain; charset=utf-8"
    } else {
        "application/xml; charset=utf-8"
    };
    Ok(HttpResponse::Ok().content_type(ct).body(answer.body))
}

pub async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", "GET, POST"))
        .content_type("text/plain; charset=utf-8")
        .body("only GET (URL verification) and POST (pushes) are accepted")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the handlers used before: serde_urlencoded through actix.
    fn reference(raw: &str) -> CallbackQuery {
        web::Query::<CallbackQuery>::from_query(raw)
            .map(|q| q.into_inner())
            .unwrap_or_default()
    }

    const PIECES: &[&str] = &[
        "signature",
        "timestamp",
        "nonce",
        "echostr",
        "encrypt_type",
        "msg_signature",
        "openid",
        "x",
        "=",
        "=",
        "&",
        "&",
        "+",
        "%",
        "%2",
        "%2B",
        "%2b",
        "%6E",
        "%6eonce",
        "%FF",
        "%e4%bd%a0",
        "%G1",
        "a",
        "中",
        ";",
        " ",
        "%26",
        "%3D",
        "1409735669",
        "aes",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        #[test]
        fn hand_parser_is_serde_urlencoded(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..16),
        ) {
            let raw = pieces.concat();
            proptest::prop_assert_eq!(
                format!("{:?}", parse_query(&raw)),
                format!("{:?}", reference(&raw)),
                "{:?}", raw
            );
        }

        #[test]
        fn hand_parser_is_serde_urlencoded_on_well_formed_pairs(
            pairs in proptest::collection::vec(
                (proptest::sample::select(&PIECES[..8]), "[a-zA-Z0-9%+中=]{0,8}"),
                0..8,
            ),
        ) {
            let raw = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            proptest::prop_assert_eq!(
                format!("{:?}", parse_query(&raw)),
                format!("{:?}", reference(&raw))
            );
        }
    }

    #[test]
    fn platform_query_and_edge_cases() {
        for raw in [
            "signature=f21891de399b4e33a1a93c9a7b8a8fffb5a443ff&timestamp=1409735669&nonce=1320562132&openid=o1&encrypt_type=aes&msg_signature=abc",
            "",
            "nonce",
            "nonce=&nonce=1",
            "nonce=a+b%20c%2",
            "%6Eonce=1",
            "echostr=%E4%BD%A0%FF",
            "&&timestamp=1&&",
            "x=1&x=2&nonce=3",
        ] {
            assert_eq!(
                format!("{:?}", parse_query(raw)),
                format!("{:?}", reference(raw)),
                "{raw}"
            );
        }
        let q = parse_query("nonce=a+b%20c&timestamp=1&nonce=2");
        assert!(
            q.nonce.is_none() && q.timestamp.is_none(),
            "a repeated key voids the query"
        );
        let q = parse_query("nonce=a+b%20c%2");
        assert_eq!(q.nonce.as_deref(), Some("a b c%2"));
    }
}
