//! Replays `loadgen gen`'s pushes through the pipeline in-process, for instruction counting
//! under callgrind (`scripts/bench/instructions.sh`).
//!
//! Wall-clock figures on this 2-core machine swing ±10 % between runs of the same binary, so a
//! change worth 2–5 % of a push cannot be seen in `scripts/bench.sh` or criterion. Instructions
//! executed are deterministic: the script counts them inside [`push`] (one `Gateway::post`) and
//! [`write_step`] (the writer thread's work, run here every 4,000 pushes as the server's 100 ms
//! step would at ~40k pushes/s) and divides by the number of pushes.
//!
//! Usage: `pipeprobe PUSHES.TSV N [KEYWORDS]`, with the `MPGATE_*` settings of the pushes in the
//! environment (as `scripts/bench.sh` exports them); the store is a fresh temp dir.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use mpgate::pipeline::{Answer, CallbackQuery, Gateway};
use mpgate::reload::LiveRules;
use mpgate::rules::RuleSet;
use mpgate::settings::Settings;
use mpgate::store::{Store, StoreConfig};

#[path = "shared/tsv.rs"]
mod tsv;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, pushes, n, rest @ ..] = args.as_slice() else {
        return Err(anyhow!("usage: pipeprobe PUSHES.TSV N [KEYWORDS]"));
    };
    let n: usize = n.parse().context("N")?;
    let keywords = rest
        .first()
        .map_or("scripts/bench/keywords.toml", String::as_str);
    let data = tempfile::tempdir()?;
    std::env::set_var("MPGATE_DATA_DIR", data.path());
    let settings = Settings::from_env().map_err(|e| anyhow!("settings: {e}"))?;
    let store = Store::open(data.path(), StoreConfig::default())?;
    let rules = RuleSet::load(Path::new(keywords))
        .map_err(|e| anyhow!("{keywords}: {e:?}"))?
        .rules;
    let secret = store.link_secret()?;
    let gw = Gateway::new(&settings, store, LiveRules::new(rules), secret);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let text = std::fs::read_to_string(pushes).with_context(|| pushes.clone())?;
    let mut requests = Vec::with_capacity(n);
    for line in text.lines().take(n) {
        let (uri, body) = line
            .split_once('\t')
            .ok_or_else(|| anyhow!("no tab in a line of {pushes}"))?;
        let query = uri.split_once('?').map_or("", |(_, q)| q);
        requests.push((
            mpgate::http::callback::parse_query(query),
            tsv::unescape_line(body),
        ));
    }
    if requests.len() < n {
        return Err(anyhow!("{pushes} has only {} pushes", requests.len()));
    }
    let now = chrono::Utc::now();
    let mut replies = 0usize;
    for (i, (q, body)) in requests.iter().enumerate() {
        let answer = push(&rt, &gw, q, body.as_bytes(), now)?;
        if answer.body != "success" {
            replies += 1;
        }
        if i % 4000 == 3999 {
            write_step(&gw, i % 40_000 == 39_999)?;
        }
    }
    write_step(&gw, true)?;
    println!("{n} pushes, {replies} answered with a reply");
    Ok(())
}

/// One push, as `POST /wechat` makes it. Not inlined, so callgrind can count inside it.
#[inline(never)]
fn push(
    rt: &tokio::runtime::Runtime,
    gw: &Gateway,
    q: &CallbackQuery,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Answer> {
    rt.block_on(gw.post(q, body, now))
        .map_err(|e| anyhow!("push refused: {e}"))
}

/// The writer thread's step. Not inlined, so callgrind can count inside it.
#[inline(never)]
fn write_step(gw: &Gateway, full: bool) -> Result<()> {
    gw.store().write_behind(full)?;
    Ok(())
}
