//! Reply verification: sends pushes to a live server over a minimal HTTP/1.1 client, opens
//! each sealed reply and compares it with the expected answer.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use mpgate::wechat::signature;
use mpgate::wechat::xml;

use crate::expect::{Expect, Meta};
use crate::gen::{generate, Sealer};
use crate::tsv::unescape_line;
use crate::{Keys, ACCOUNT};

/// A one-request HTTP/1.1 client over std: enough for a local server, no runtime.
pub(crate) fn http_post(addr: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).map_err(|_| anyhow!("response is not UTF-8"))?;
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end in response"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

pub(crate) fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").ok_or_else(|| anyhow!("bad chunk"))?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|_| anyhow!("bad chunk size"))?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).ok_or_else(|| anyhow!("short chunk"))?);
        s = rest.get(n + 2..).ok_or_else(|| anyhow!("short chunk"))?;
    }
}

/// Opens a sealed reply and checks it against the expectation; `Err` says what is wrong.
pub(crate) fn check_reply(
    sealer: &Sealer,
    meta: &Meta,
    status: u16,
    body: &str,
    public_url: &str,
) -> Result<()> {
    if status != 200 {
        bail!(
            "status {status}: {}",
            body.chars().take(200).collect::<String>()
        );
    }
    if meta.expect == Expect::Success {
        return if body == "success" {
            Ok(())
        } else {
            Err(anyhow!("expected `success`, got {body:.80}"))
        };
    }
    let env = xml::parse(body).map_err(|e| anyhow!("reply envelope is not XML: {e}"))?;
    let enc = env
        .child_text("Encrypt")
        .ok_or_else(|| anyhow!("no Encrypt in reply"))?;
    let msg_sig = env
        .child_text("MsgSignature")
        .ok_or_else(|| anyhow!("no MsgSignature"))?;
    let ts = env
        .child_text("TimeStamp")
        .ok_or_else(|| anyhow!("no TimeStamp"))?;
    let nonce = env.child_text("Nonce").ok_or_else(|| anyhow!("no Nonce"))?;
    if nonce != meta.nonce {
        bail!("reply nonce {nonce} is not the push's {}", meta.nonce);
    }
    if !signature::verify(msg_sig, &[&sealer.token, ts.trim(), nonce, enc]) {
        bail!("MsgSignature does not verify");
    }
    // decrypt() checks the app id sealed inside.
    let plain = sealer
        .cipher
        .decrypt(enc, &sealer.app_id)
        .map_err(|e| anyhow!("reply does not decrypt: {e}"))?;
    let r = xml::parse(&plain).map_err(|e| anyhow!("decrypted reply is not XML: {e}"))?;
    if r.child_text("ToUserName") != Some(meta.openid.as_str())
        || r.child_text("FromUserName") != Some(ACCOUNT)
    {
        bail!("reply addressed wrongly: {plain:.200}");
    }
    let msg_type = r.child_text("MsgType").unwrap_or("");
    match &meta.expect {
        Expect::Text { any_of } => {
            let got = r.child_text("Content").unwrap_or("");
            if msg_type != "text" || !any_of.iter().any(|x| x == got) {
                bail!("expected text {any_of:?}, got {msg_type} {got:?}");
            }
        }
        Expect::News { title, url } => {
            let item = first_article(&r)?;
            if item.0 != *title || item.1 != *url {
                bail!("expected news {title:?} {url:?}, got {item:?}");
            }
        }
        Expect::Article {
            id,
            title,
            purchase_url,
        } => {
            let (t, u) = first_article(&r)?;
            let locked = t == format!("🔒 {title}") && u == *purchase_url;
            let entitled = t == *title && u.starts_with(&format!("{public_url}/a/{id}?u="));
            if !(locked || entitled) {
                bail!("expected article {id} (locked or linked), got {t:?} {u:?}");
            }
        }
        Expect::Success => {}
    }
    Ok(())
}

pub(crate) fn first_article(r: &xml::Element) -> Result<(String, String)> {
    let item = r
        .child("Articles")
        .and_then(|a| a.child("item"))
        .ok_or_else(|| anyhow!("news reply without an item"))?;
    Ok((
        item.child_text("Title").unwrap_or("").to_string(),
        item.child_text("Url").unwrap_or("").to_string(),
    ))
}

pub(crate) fn verify(
    addr: &str,
    pushes_dir: Option<&Path>,
    sample: usize,
    fresh: u64,
    fresh_seq_base: u64,
    public_url: &str,
    keys: &Keys,
) -> Result<()> {
    let sealer = Sealer::new(keys)?;
    let mut cases: Vec<(String, String, String, Meta)> = Vec::new();
    if let Some(dir) = pushes_dir {
        let tsv = fs::File::open(dir.join("pushes.tsv")).context("pushes.tsv")?;
        let exp = fs::File::open(dir.join("expected.jsonl")).context("expected.jsonl")?;
        let lines: Vec<(String, String)> = std::io::BufReader::new(tsv)
            .lines()
            .zip(std::io::BufReader::new(exp).lines())
            .map(|(a, b)| Ok((a?, b?)))
            .collect::<Result<_>>()?;
        let step = (lines.len() / sample.max(1)).max(1);
        for (req, exp) in lines.iter().step_by(step).take(sample) {
            let (p, b) = req
                .split_once('\t')
                .ok_or_else(|| anyhow!("bad pushes.tsv line"))?;
            let meta: Meta = serde_json::from_str(exp)?;
            cases.push(("replayed".into(), unescape_line(p), unescape_line(b), meta));
        }
    }
    for p in generate(fresh_seq_base, fresh, &sealer)? {
        cases.push(("fresh".into(), p.path, p.body, p.meta));
    }
    let mut ok: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for (origin, path, body, meta) in &cases {
        let res = http_post(addr, path, body)
            .and_then(|(status, reply)| check_reply(&sealer, meta, status, &reply, public_url));
        match res {
            Ok(()) => {
                *ok.entry((origin.clone(), meta.category.clone()))
                    .or_default() += 1
            }
            Err(e) => failures.push(format!(
                "{origin} seq {} ({}, rule {}): {e}",
                meta.seq, meta.category, meta.rule
            )),
        }
    }
    let ok_total: u64 = ok.values().sum();
    eprintln!(
        "verify: {ok_total}/{} replies correct; by (origin, category): {ok:?}",
        cases.len()
    );
    for f in failures.iter().take(20) {
        eprintln!("  FAIL {f}");
    }
    if !failures.is_empty() || cases.is_empty() {
        bail!("{} of {} replies wrong", failures.len(), cases.len());
    }
    Ok(())
}
