//! Memory probe of the dedupe memory: how much RSS N answered pushes cost while they are within
//! the retention (docs/performance-history.md, run F).
//!
//! ```sh
//! cargo build --release --example memprobe
//! target/release/examples/memprobe 520000            # puts, a flush every 3,300 (as at ~33k/s)
//! target/release/examples/memprobe 520000 noflush    # index and pending entries only, no sled
//! ```
//!
//! Prints `VmHWM VmRSS` (KiB) after opening the store, every 100,000 entries and at the end.
//! Keys and replies are shaped like the benchmark's (an openid + time key, a ~300-byte text
//! reply with Chinese and emoji); the store lives in a temp dir removed afterwards.

use anyhow::{Context, Result};
use mpgate::store::{Store, StoreConfig, StoredAnswer};

/// `VmHWM VmRSS` of this process, in KiB.
fn memory() -> Result<String> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    Ok(format!("{} {}", field("VmHWM:"), field("VmRSS:")))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .context("usage: memprobe N [noflush]")?
        .parse()
        .context("N must be a number")?;
    let flush = args.next().as_deref() != Some("noflush");
    let dir = tempfile::TempDir::new()?;
    let store = Store::open(dir.path(), StoreConfig::default())?;
    println!("open: {}", memory()?);
    let now = chrono::Utc::now().timestamp();
    for i in 0..n {
        let key = format!("o{:027}{}subscribe", i % 700, 1_700_000_000 + i);
        // What the server keeps: the reply without its head (addresses and time).
        let body = format!(
            "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[欢迎关注！回复「课程」查看本周直播安排，回复「{}」获取资料 🎉]]></Content></xml>",
            i % 37
        );
        let answer = StoredAnswer {
            at: now,
            body: body.as_str(),
            headless: true,
        };
        store.dedupe_put(&key, &answer)?;
        if flush && i % 3300 == 3299 {
            store.flush_dedupe()?;
        }
        if i % 100_000 == 99_999 {
            println!("{}: {}", i + 1, memory()?);
        }
    }
    if flush {
        store.flush()?;
    }
    println!("end: {}", memory()?);
    Ok(())
}
