//! Routing cost against the number of rules: one text message routed against 10, 1,000 and
//! 10,000 rules (exact / contains / prefix keywords, one regex per 50 rules). Because candidates
//! come from a hash map, one Aho-Corasick automaton and one RegexSet, the cost should barely
//! grow with the rule count.
//!
//! Run: cargo bench --bench routing

use std::fmt::Write as _;
use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mpgate::rules::{RuleSet, SubscriberView};
use mpgate::wechat::message::{Header, Inbound, InboundKind};
use mpgate::wechat::types::{MsgId, OpenId};

/// A realistic mix: a third exact, a third contains, a third prefix, every 50th a regex; half
/// the replies are templates, some rules have office hours.
fn rules_toml(n: usize) -> String {
    let mut s = String::from("[account]\ntimezone = \"Asia/Shanghai\"\n");
    for i in 0..n {
        let when = if i % 50 == 49 {
            format!("regex = ['^订单{i}-(\\d+)$']")
        } else {
            match i % 3 {
                0 => format!("exact = [\"关键词{i}\", \"kw{i}\"]"),
                1 => format!("contains = [\"ct{i}x\", \"包含{i}号\"]"),
                _ => format!("prefix = [\"pf{i}-\"]"),
            }
        };
        let hours = if i % 7 == 0 {
            ", hours = { days = \"mon-fri\", from = \"09:00\", to = \"18:00\" }"
        } else {
            ""
        };
        let reply = if i % 2 == 0 {
            format!("{{ text = \"第 {i} 条规则：{{{{ keyword }}}}\" }}")
        } else {
            format!("{{ text = \"第 {i} 条规则的固定回复\" }}")
        };
        let _ = write!(
            s,
            "\n[[rule]]\nname = \"r{i}\"\nwhen = {{ {when}{hours} }}\nreply = {reply}\n"
        );
    }
    s.push_str("\n[[rule]]\nname = \"fallback\"\nfallback = true\nreply = { text = \"没听懂\" }\n");
    s
}

fn text(content: String) -> Inbound {
    Inbound {
        header: Header {
            to_user: "gh_bench".into(),
            from_user: OpenId::new("o_bench_user"),
            create_time: 1_700_000_000,
        },
        kind: InboundKind::Text {
            msg_id: MsgId::new(1),
            content,
            msg_data_id: None,
            idx: None,
        },
    }
}

fn routing(c: &mut Criterion) {
    let openid = OpenId::new("o_bench_user");
    let tags: Vec<String> = vec!["vip".into()];
    let sub = SubscriberView {
        openid: &openid,
        first_time: false,
        channel: None,
        tags: &tags,
        subscribed_since: Some(1_690_000_000),
    };
    let now = Utc
        .with_ymd_and_hms(2026, 11, 20, 3, 0, 0)
        .single()
        .expect("valid time");
    let mut group = c.benchmark_group("route_text");
    for n in [10usize, 1_000, 10_000] {
        let rs = RuleSet::from_source(&rules_toml(n), Path::new("/nonexistent/keywords.toml"))
            .unwrap_or_else(|e| panic!("bench rules do not load:\n{e}"))
            .rules;
        // Same shape at every size: a contains-rule a third of the way down with a templated
        // reply, inside a sentence with other words.
        let k = (n / 3..n)
            .find(|i| i % 3 == 1 && i % 2 == 0 && i % 50 != 49)
            .expect("a contains rule exists");
        let msg = text(format!("你好，我想问一下 CT{k}X 这个课程什么时候开始？"));
        let d = rs.route(&msg, &sub, now);
        assert_eq!(d.rule.as_deref(), Some(format!("r{k}").as_str()));
        group.bench_with_input(BenchmarkId::new("templated_reply", n), &msg, |b, msg| {
            b.iter(|| rs.route(std::hint::black_box(msg), &sub, now))
        });
        // The same lookup work without rendering: isolates matching from templating.
        let k = k + 3;
        let msg = text(format!("你好，我想问一下 CT{k}X 这个课程什么时候开始？"));
        assert_eq!(
            rs.route(&msg, &sub, now).rule.as_deref(),
            Some(format!("r{k}").as_str())
        );
        group.bench_with_input(BenchmarkId::new("literal_reply", n), &msg, |b, msg| {
            b.iter(|| rs.route(std::hint::black_box(msg), &sub, now))
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
