//! Load generator for `scripts/bench.sh`: the bench rules file, pre-signed encrypted pushes for
//! wrk, a correctness check of live replies, and a store pre-fill.
//!
//! Subcommands:
//! - `rules [--out F] [--check F]`: the bench `keywords.toml` (≈220 rules). It is generated here
//!   because this program must know every rule's answer to check replies; `--check` fails when
//!   the committed file drifted from the generator.
//! - `gen --out-dir D -n N …`: N distinct pushes, signed and encrypted like the platform does:
//!   `pushes.tsv` (one request per line: `path?query` TAB body, `\n` and `\\` escaped, for
//!   `scripts/bench/push.lua`) and `expected.jsonl` (what each push must be answered with).
//! - `verify --addr A …`: sends a sample of generated pushes (answered from the dedupe memory
//!   when the load already sent them) and freshly generated ones, opens each sealed reply
//!   (MsgSignature, decryption, app id, addresses) and compares it with the expected answer.
//! - `prefill --data-dir D --subscribers N --entitlements M`: fills a store directly, before the
//!   server starts (sled locks the dir), with the openids the pushes use among them.
//!
//! The expected answers come from a small model of the rules written here (first matching rule
//! in file order, on NFKC + lower-case text), not from mpgate's router, so a routing bug shows.
//! Depends on the `mpgate` library only for the protocol (`wechat`) and the store.
//!
//! One module per job: `rules` (the model and the keywords.toml written from it), `expect`
//! (answers predicted from the model), `gen` (pushes and their expected answers), `verify`
//! (live replies checked), `prefill` (the store filled directly). This file holds the CLI and
//! the constants the jobs share.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod expect;
mod gen;
mod prefill;
mod rules;
#[path = "../shared/tsv.rs"]
mod tsv;
mod verify;

use gen::gen;
use prefill::prefill;
use rules::{model, rules_toml};
use verify::verify;

/// The account's original id every push is addressed to.
pub(crate) const ACCOUNT: &str = "gh_bench0000001";
/// Distinct subscribers among the pushes ("several hundred").
pub(crate) const OPENID_POOL: u64 = 600;
/// MsgIds look like the platform's 64-bit ids; the sequence number keeps them distinct.
pub(crate) const MSGID_BASE: u64 = 24_000_000_000_000_000;

#[derive(Parser)]
#[command(
    about = "mpgate load generator: bench rules, signed pushes, reply verification, store pre-fill"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
pub(crate) struct Keys {
    #[arg(long, env = "MPGATE_TOKEN")]
    token: String,
    #[arg(long, env = "MPGATE_APP_ID")]
    app_id: String,
    #[arg(long, env = "MPGATE_ENCODING_AES_KEY")]
    aes_key: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print (or write, or compare with) the bench keywords.toml.
    Rules {
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fail if this file differs from what the generator writes.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// Generate signed, encrypted pushes and their expected answers.
    Gen {
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(short = 'n', long, default_value_t = 4000)]
        count: u64,
        /// First sequence number; sets generated for one server must not overlap
        /// (MsgId and CreateTime derive from it).
        #[arg(long, default_value_t = 0)]
        seq_base: u64,
        #[command(flatten)]
        keys: Keys,
    },
    /// Send sample pushes to a running server and check every sealed reply.
    Verify {
        /// host:port of the server
        #[arg(long)]
        addr: String,
        /// A directory written by `gen`, to replay a sample of its pushes.
        #[arg(long)]
        pushes_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 50)]
        sample: usize,
        /// Also generate and send this many new pushes (full pipeline, no dedupe).
        #[arg(long, default_value_t = 50)]
        fresh: u64,
        /// Sequence base of the fresh pushes (must not overlap any `gen` set sent).
        #[arg(long, default_value_t = 90_000_000)]
        fresh_seq_base: u64,
        /// MPGATE_PUBLIC_URL of the server (entitled subscribers get links under it).
        #[arg(long, default_value = "http://127.0.0.1")]
        public_url: String,
        #[command(flatten)]
        keys: Keys,
    },
    /// Fill a data dir with subscribers and entitlements before the server starts.
    Prefill {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        subscribers: u64,
        #[arg(long, default_value_t = 100_000)]
        entitlements: u64,
        /// Threads issuing grants (each grant is flushed to disk before it returns).
        #[arg(long, default_value_t = 8)]
        grant_threads: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Rules { out, check } => {
            let text = rules_toml(&model());
            if let Some(path) = &check {
                let have = fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                if have != text {
                    bail!(
                        "{} differs from the generator; regenerate with `cargo run --release --example loadgen -- rules --out {}`",
                        path.display(),
                        path.display()
                    );
                }
            }
            match out {
                Some(path) => {
                    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
                }
                None if check.is_none() => print!("{text}"),
                None => {}
            }
            Ok(())
        }
        Cmd::Gen {
            out_dir,
            count,
            seq_base,
            keys,
        } => gen(&out_dir, count, seq_base, &keys),
        Cmd::Verify {
            addr,
            pushes_dir,
            sample,
            fresh,
            fresh_seq_base,
            public_url,
            keys,
        } => verify(
            &addr,
            pushes_dir.as_deref(),
            sample,
            fresh,
            fresh_seq_base,
            &public_url,
            &keys,
        ),
        Cmd::Prefill {
            data_dir,
            subscribers,
            entitlements,
            grant_threads,
        } => prefill(&data_dir, subscribers, entitlements, grant_threads),
    }
}
