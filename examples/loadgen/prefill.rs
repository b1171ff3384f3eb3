//! Store pre-fill: subscribers and entitlements written straight into a data dir before the
//! server starts (sled locks the dir).

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Result};

use mpgate::wechat::types::OpenId;

use crate::gen::openid;
use crate::rules::{ARTICLES, CHANNELS};

pub(crate) fn prefill(dir: &Path, subscribers: u64, entitlements: u64, threads: u64) -> Result<()> {
    use mpgate::store::{Store, StoreConfig};
    let store = Store::open(dir, StoreConfig::default()).map_err(|e| anyhow!("{e}"))?;
    let now = chrono::Utc::now().timestamp();
    let t0 = Instant::now();
    let threads = threads.max(1);
    // Subscribers: updates are buffered by sled, so plain parallel calls are the batch.
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || -> Result<()> {
                    let mut i = t;
                    while i < subscribers {
                        let id = OpenId::new(openid(i));
                        let scene =
                            (i % 4 == 0).then(|| CHANNELS[(i / 4) as usize % CHANNELS.len()]);
                        let at = now - 86_400 * 365 + (i as i64 % (86_400 * 365));
                        store
                            .on_subscribe(&id, scene, at)
                            .map_err(|e| anyhow!("{e}"))?;
                        if i % 3 == 0 {
                            store
                                .touch(&id, at + 60, true)
                                .map_err(|e| anyhow!("{e}"))?;
                        }
                        i += threads;
                        if i % 65_536 < threads {
                            // Activity is written behind; keep the cache from holding the lot.
                            store.flush_subscribers().map_err(|e| anyhow!("{e}"))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("prefill thread panicked"))??;
        }
        Ok(())
    })?;
    store.flush().map_err(|e| anyhow!("{e}"))?;
    let subs_secs = t0.elapsed().as_secs_f64();
    eprintln!("prefill: {subscribers} subscribers in {subs_secs:.1} s");
    // Entitlements: every grant is flushed before it returns (operator API semantics), so run
    // several at once and let concurrent flushes share the disk's sync.
    let t1 = Instant::now();
    let stride = (subscribers / entitlements.max(1)).max(1);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || -> Result<()> {
                    let mut k = t;
                    while k < entitlements {
                        let i = (k * stride) % subscribers.max(1);
                        let article = ARTICLES[(k as usize) % ARTICLES.len()].id;
                        let reference = format!("bench-order-{k}");
                        store
                            .grant(
                                &OpenId::new(openid(i)),
                                article,
                                "prefill",
                                Some(&reference),
                                now,
                            )
                            .map_err(|e| anyhow!("{e}"))?;
                        k += threads;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("prefill thread panicked"))??;
        }
        Ok(())
    })?;
    let grant_secs = t1.elapsed().as_secs_f64();
    let stats = store.stats().map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "prefill: {entitlements} entitlements in {grant_secs:.1} s ({:.0} grants/s, {threads} threads); store now {} subscribers, {} entitlements, {} bytes on disk (sled)",
        entitlements as f64 / grant_secs.max(1e-9),
        stats.subscribers,
        stats.entitlements,
        store.size_on_disk().unwrap_or(0)
    );
    println!("PREFILL subscribers={subscribers} subscribers_secs={subs_secs:.1} entitlements={entitlements} entitlements_secs={grant_secs:.1}");
    Ok(())
}
