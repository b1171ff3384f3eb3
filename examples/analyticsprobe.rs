//! How long each analytics report takes over a year of daily counters at a busy account's
//! cardinality: a probe, not a benchmark (the dashboard's own timings are in
//! `scripts/bench/dashboard.sh`).
//!
//! Usage: `analyticsprobe [DAYS] [CHANNELS] [ARTICLES] [RULES]` (default 365 30 50 100). Fills a
//! fresh store with that many days of every counter the figures read, and as many as a live
//! account writes besides (pushes by type, rule hits), then times each report cold (first call)
//! and warm (median of 5). Reports never read subscriber records, so none are written.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::NaiveDate;

use mpgate::analytics::{Analytics, Range};
use mpgate::store::{Counter, Store, StoreConfig};

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("a number"))
        .collect::<Result<_>>()?;
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (days, channels, articles, rules) = (arg(0, 365), arg(1, 30), arg(2, 50), arg(3, 100));
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreConfig::default())?;
    let today = NaiveDate::from_ymd_opt(2026, 12, 31).context("date")?;
    let first = today - chrono::Duration::days(i64::try_from(days)? - 1);
    let started = Instant::now();
    let mut keys = 0usize;
    for (i, day) in first.iter_days().take(days).enumerate() {
        let n = |k: usize| u64::try_from((i * 7 + k * 13) % 97 + 1).unwrap_or(1);
        let mut count = |c: Counter, v: u64| {
            store.count(c, day, v);
            keys += 1;
        };
        for t in [
            "text",
            "image",
            "voice",
            "event.subscribe",
            "event.unsubscribe",
            "event.CLICK",
            "event.VIEW",
            "event.LOCATION",
            "event.SCAN",
            "location",
        ] {
            count(Counter::Push { msg_type: t.into() }, n(1) * 100);
        }
        for r in 0..rules {
            count(
                Counter::RuleHit {
                    rule: format!("rule-{r}"),
                },
                n(r),
            );
        }
        for c in 0..channels {
            let channel = if c == 0 {
                String::new()
            } else {
                format!("qr-{c}")
            };
            let ch = || channel.clone();
            for counter in [
                Counter::Subscribe { channel: ch() },
                Counter::Unsubscribe { channel: ch() },
                Counter::Follow { channel: ch() },
                Counter::Unfollow { channel: ch() },
                Counter::SeenFollower { channel: ch() },
                Counter::FirstFollow { channel: ch() },
                Counter::Retained1 { channel: ch() },
                Counter::Retained7 { channel: ch() },
                Counter::Retained30 { channel: ch() },
                Counter::Unfollow7 { channel: ch() },
                Counter::FirstBuy7 { channel: ch() },
                Counter::FirstBuy30 { channel: ch() },
                Counter::Buyer { channel: ch() },
                Counter::RepeatBuyer { channel: ch() },
                Counter::OrderByChannel { channel: ch() },
                Counter::PaidByChannel { channel: ch() },
                Counter::RevenueByChannel { channel: ch() },
            ] {
                count(counter, n(c));
            }
        }
        for a in 0..articles {
            let article = format!("article-{a}");
            let ar = || article.clone();
            for counter in [
                Counter::TeaserShown { article: ar() },
                Counter::LinkIssued { article: ar() },
                Counter::PageOpened { article: ar() },
                Counter::PaywallPage { article: ar() },
                Counter::Read { article: ar() },
                Counter::OrderCreated { article: ar() },
                Counter::OrderPaid { article: ar() },
                Counter::Revenue { article: ar() },
            ] {
                count(counter, n(a));
            }
        }
        store.flush_counters()?;
    }
    println!(
        "filled {days} days, {keys} counters ({} per day) in {:.1?}; data dir {} MB",
        keys / days.max(1),
        started.elapsed(),
        store.size_on_disk()? / 1_000_000
    );
    let a = Analytics::new(store);
    let r = |d: u32| Range::last(d, today);
    type Report<'a> = Box<dyn Fn() -> Result<()> + 'a>;
    let reports: Vec<(&str, Report<'_>)> = vec![
        (
            "overview",
            Box::new(|| a.overview(today).map(drop).map_err(Into::into)),
        ),
        (
            "growth 30",
            Box::new(|| a.growth(r(30), None).map(drop).map_err(Into::into)),
        ),
        (
            "growth 365",
            Box::new(|| a.growth(r(365), None).map(drop).map_err(Into::into)),
        ),
        (
            "channels 30",
            Box::new(|| a.channels(r(30)).map(drop).map_err(Into::into)),
        ),
        (
            "channels 365",
            Box::new(|| a.channels(r(365)).map(drop).map_err(Into::into)),
        ),
        (
            "retention 30",
            Box::new(|| a.retention(r(30), today).map(drop).map_err(Into::into)),
        ),
        (
            "retention 365",
            Box::new(|| a.retention(r(365), today).map(drop).map_err(Into::into)),
        ),
        (
            "funnel 30",
            Box::new(|| a.funnel(r(30)).map(drop).map_err(Into::into)),
        ),
        (
            "funnel 365",
            Box::new(|| a.funnel(r(365)).map(drop).map_err(Into::into)),
        ),
        (
            "sales 30",
            Box::new(|| a.sales(r(30)).map(drop).map_err(Into::into)),
        ),
        (
            "sales 365",
            Box::new(|| a.sales(r(365)).map(drop).map_err(Into::into)),
        ),
    ];
    for (name, run) in &reports {
        let t = Instant::now();
        run()?;
        let cold = t.elapsed();
        let mut warm: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                run().map(|()| t.elapsed())
            })
            .collect::<Result<_>>()?;
        warm.sort();
        println!("{name:<14} cold {cold:>10.1?}  warm {:>10.1?}", warm[2]);
    }
    Ok(())
}
