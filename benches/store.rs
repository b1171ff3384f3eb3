//! The store's share of one push: `touch` + `dedupe_put`, against a store pre-filled with
//! subscribers; plus a flushed `grant` for scale.
//!
//! Run: `cargo bench --bench store`. The pre-fill defaults to 100,000 subscribers; for the
//! 1,000,000 variant: `MPGATE_BENCH_SUBSCRIBERS=1000000 cargo bench --bench store`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mpgate::store::{Store, StoreConfig, StoredAnswer};
use mpgate::wechat::types::OpenId;

const T0: i64 = 1_760_000_000;

fn subscriber_count() -> usize {
    std::env::var("MPGATE_BENCH_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn openid(i: usize) -> OpenId {
    // Real openids are 28 characters; keep the key size realistic.
    OpenId::new(format!("oBench{i:022}"))
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
    let n = subscriber_count();
    for i in 0..n {
        store
            .on_subscribe(&openid(i), Some("bench"), T0)
            .expect("prefill");
    }
    store.flush().expect("flush");
    let ids: Vec<OpenId> = (0..n).map(openid).collect();
    let reply = "<xml><ToUserName><![CDATA[oBench]]></ToUserName><Content><![CDATA[hello]]></Content></xml>";

    let mut i: usize = 0;
    c.bench_function(&format!("touch+dedupe_put ({n} subscribers)"), |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let u = &ids[i % n];
            let at = T0 + i as i64;
            black_box(store.touch(u, at, true).expect("touch"));
            let answer = StoredAnswer {
                at,
                body: reply,
                headless: true,
            };
            store
                .dedupe_put(&format!("{u}:{i}"), &answer)
                .expect("dedupe_put");
        })
    });

    let mut g = c.benchmark_group("durable");
    g.sample_size(10);
    let mut k: usize = 0;
    g.bench_function("grant (flushed)", |b| {
        b.iter(|| {
            k += 1;
            let u = &ids[k % n];
            black_box(
                store
                    .grant(
                        u,
                        &format!("art-{k}"),
                        "bench",
                        Some(&format!("ref-{k}")),
                        T0,
                    )
                    .expect("grant"),
            );
        })
    });
    g.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
