//! The assistant's figures (issue 19), in-process: retrieval over the creator's articles, the
//! server's work per assistant push on the passive path, and the memory the index costs.
//! Run by `scripts/bench/assistant.sh`, which prints the table this writes.
//!
//! Usage: `assistantprobe [PUSHES] [DELAY_MS]` (default 10000 0).
//!
//! - Retrieval: [`Corpus::build`] over the repo's `templates/` (what `RuleSet::load` indexes)
//!   and over a synthetic corpus of 200 articles × 10 paragraphs of mixed Chinese and English
//!   (deterministic), then [`Corpus::search`] for 1,000 generated questions each, timed one by
//!   one. The synthetic questions are drawn from one article's topic words, so the share whose
//!   article comes back in the top 3 is a sanity check of the index, not the labelled quality
//!   set (that is `tests/fixtures/assistant/questions.toml`).
//! - Push: plaintext pushes `问 …` through [`Gateway::post`] (no HTTP, no AES: the protocol's
//!   cost is in `scripts/bench/instructions.sh`) with an `assistant` rule whose model is a fake
//!   OpenAI-compatible SSE server on 127.0.0.1 in this same process, answering after
//!   `DELAY_MS`. The push's own CPU cannot be separated from the fake's and the HTTP client's,
//!   so the probe reports the process's CPU (utime + stime of every thread) per push, and
//!   beside it the same figure for the model call alone (the client against the fake with the
//!   prompt a push sent, in a task as the assistant asks; no pipeline), in alternating rounds,
//!   and for a keyword push answered by a plain rule. Every reply is checked to carry the
//!   model's answer, and the fake to have been called once per push.
//! - Memory: `VmRSS` before and after jieba's dictionary loads and after each corpus is built.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use mpgate::assistant::client::{ChatMessage, ChatRequest, ModelClient, Role};
use mpgate::assistant::retrieval::{self, Corpus, Doc, DocFormat};
use mpgate::pipeline::{CallbackQuery, Gateway};
use mpgate::reload::LiveRules;
use mpgate::rules::RuleSet;
use mpgate::settings::{Settings, DEMO_TOKEN};
use mpgate::store::{Store, StoreConfig};
use mpgate::wechat::signature;

/// The repo's templates: the articles an operator starts from.
const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
/// The fake model's answer: what every assistant reply must carry.
const ANSWER: &str = "所有权是 Rust 管理内存的办法：每个值有一个所有者，所有者离开作用域时值被释放。借用让你不取得所有权也能使用一个值，可变借用同一时间只能有一个。";
const QUESTIONS: usize = 1000;
const SYNTHETIC_ARTICLES: usize = 200;
const PARAGRAPHS: usize = 10;
/// Distinct subscribers asking, each once before the timed pushes, so the timed pushes find
/// a subscriber record and a memory of past turns, as on a live account.
const SUBSCRIBERS: usize = 500;
/// Untimed calls before timing the model call alone.
const WARM_CALLS: usize = 50;
/// Alternating rounds of assistant pushes and model calls alone.
const ROUNDS: usize = 5;

fn main() -> Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("a number"))
        .collect::<Result<_>>()?;
    let pushes = usize::try_from(args.first().copied().unwrap_or(10_000))?.max(1);
    let delay = Duration::from_millis(args.get(1).copied().unwrap_or(0));

    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |name: &str, value: String| {
        eprintln!("{name}: {value}");
        rows.push((name.to_string(), value));
    };

    // ── Memory and retrieval ────────────────────────────────────────────────────────────
    let rss0 = rss_kib()?;
    let t = Instant::now();
    retrieval::warm_up();
    let jieba_ms = ms(t.elapsed());
    let rss1 = rss_kib()?;
    row(
        "jieba dictionary: first load",
        format!("{jieba_ms:.0} ms, RSS {} → {} MiB", mib(rss0), mib(rss1)),
    );

    let repo_docs = template_docs(Path::new(TEMPLATES))?;
    let (repo, build) = build_timed(&repo_docs, 21);
    let rss2 = rss_kib()?;
    row(
        "repo templates: corpus build (median of 21)",
        format!(
            "{build:.2} ms; {} docs, {} passages, {} chars; RSS {:+.1} MiB",
            repo.docs(),
            repo.passages(),
            chars(&repo_docs),
            delta_mib(rss1, rss2)
        ),
    );

    let synthetic = Synthetic::new(19);
    let synthetic_docs = synthetic.docs();
    let (big, build) = build_timed(&synthetic_docs, 5);
    let rss3 = rss_kib()?;
    row(
        "synthetic corpus: corpus build (median of 5)",
        format!(
            "{build:.1} ms; {} docs, {} passages, {} chars; RSS {:+.1} MiB",
            big.docs(),
            big.passages(),
            chars(&synthetic_docs),
            delta_mib(rss2, rss3)
        ),
    );

    let repo_questions = repo_questions(QUESTIONS);
    let s = search_timed(
        &repo,
        &repo_questions
            .iter()
            .map(|q| (q.clone(), None))
            .collect::<Vec<_>>(),
    );
    row(
        "repo templates: Corpus::search, 1,000 questions",
        format!(
            "median {:.1} µs, p99 {:.1} µs, max {:.1} µs; {} with a hit",
            s.median, s.p99, s.max, s.with_hit
        ),
    );
    let s = search_timed(&big, &synthetic.questions(QUESTIONS));
    row(
        "synthetic corpus: Corpus::search, 1,000 questions",
        format!(
            "median {:.1} µs, p99 {:.1} µs, max {:.1} µs; {} with a hit, source article in the top 3 for {}",
            s.median, s.p99, s.max, s.with_hit, s.top3
        ),
    );
    drop(big);
    drop(repo);
    drop(synthetic_docs);

    // ── Pushes ─────────────────────────────────────────────────────────────────────────
    let fake = FakeModel::start(delay)?;
    let repo_dir = rules_dir(None)?;
    let synthetic_dir = rules_dir(Some(&synthetic))?;
    for (label, dir) in [
        ("repo templates", &repo_dir),
        ("synthetic corpus", &synthetic_dir),
    ] {
        let path = dir.path().join("keywords.toml");
        let mut load = Vec::new();
        let mut passages = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let loaded = RuleSet::load(&path).map_err(|e| anyhow!("{}: {e:?}", path.display()))?;
            load.push(ms(t.elapsed()));
            passages = loaded.rules.corpus().map_or(0, |c| c.passages());
        }
        load.sort_by(f64::total_cmp);
        row(
            &format!("{label}: RuleSet::load with the assistant rule (median of 5)"),
            format!("{:.1} ms ({passages} passages indexed)", load[2]),
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    for (label, dir) in [
        ("repo templates", &repo_dir),
        ("synthetic corpus", &synthetic_dir),
    ] {
        let mut probe = PushProbe::new(dir.path(), &fake, SUBSCRIBERS.min(pushes))?;
        probe.warm(&rt, &repo_questions)?;
        let client = ModelClient::new();
        // Rounds of pushes and of model calls alone, alternating, so that a slow spell of
        // this shared machine falls on both; each figure is the median over the rounds.
        let per_round = pushes.div_ceil(ROUNDS);
        let (mut push_cpu, mut model_cpu, mut diff) = (Vec::new(), Vec::new(), Vec::new());
        let (mut latencies, mut model_wall) = (Vec::new(), Vec::new());
        let (mut asked, mut sent) = (0, 0);
        for _ in 0..ROUNDS {
            let (calls, bytes) = (fake.calls(), fake.bytes());
            let r = probe.run(&rt, per_round, Kind::Assistant, &repo_questions)?;
            asked += fake.calls() - calls;
            sent += fake.bytes() - bytes;
            // The model call alone, with the messages the last push sent.
            let m = rt.block_on(model_alone(&client, &fake, fake.last_messages(), per_round))?;
            push_cpu.push(r.cpu_us);
            model_cpu.push(m.cpu_us);
            diff.push(r.cpu_us - m.cpu_us);
            latencies.extend(r.latencies);
            model_wall.extend(m.latencies);
        }
        if asked != per_round * ROUNDS {
            bail!(
                "{asked} model calls for {} assistant pushes",
                per_round * ROUNDS
            );
        }
        let request_bytes = sent / asked;
        latencies.sort_by(f64::total_cmp);
        model_wall.sort_by(f64::total_cmp);
        row(
            &format!(
                "{label}: assistant push, {} ms model ({} pushes)",
                delay.as_millis(),
                per_round * ROUNDS
            ),
            format!(
                "CPU {} µs per push; post median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs; {request_bytes} bytes sent to the model per question",
                spread(&mut push_cpu),
                percentile(&latencies, 50.0),
                percentile(&latencies, 90.0),
                percentile(&latencies, 99.0),
            ),
        );
        row(
            &format!("{label}: the model call alone (client + fake, same prompt)"),
            format!(
                "CPU {} µs per call; median {:.0} µs wall",
                spread(&mut model_cpu),
                percentile(&model_wall, 50.0)
            ),
        );
        row(
            &format!("{label}: push CPU less the model call's (mpgate's own, estimated)"),
            format!("{} µs per push", spread(&mut diff)),
        );
        if label == "repo templates" {
            let n = pushes * 10;
            let r = probe.run(&rt, n, Kind::Keyword, &repo_questions)?;
            row(
                &format!("keyword push (a plain rule, same gateway; {n} pushes)"),
                format!(
                    "CPU {:.1} µs per push; post median {:.1} µs, p99 {:.1} µs",
                    r.cpu_us,
                    percentile(&r.latencies, 50.0),
                    percentile(&r.latencies, 99.0)
                ),
            );
        }
    }
    println!("| figure | value |");
    println!("|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    println!(
        "\nCPU is the whole process's (utime + stime of every thread): the fake model server and \
         the HTTP client run in this process too; the model-call row is their share."
    );
    Ok(())
}

// ── Retrieval ──────────────────────────────────────────────────────────────────────────────

fn build_timed(docs: &[Doc], runs: usize) -> (Corpus, f64) {
    let mut times = Vec::with_capacity(runs);
    let mut corpus = Corpus::default();
    for _ in 0..runs {
        let t = Instant::now();
        corpus = Corpus::build(docs.to_vec());
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    (corpus, times[times.len() / 2])
}

struct SearchFigures {
    median: f64,
    p99: f64,
    max: f64,
    with_hit: usize,
    top3: usize,
}

/// Times each question's search (k = 3, every paid passage readable). `Some(doc id)`: the
/// article the question was drawn from.
fn search_timed(corpus: &Corpus, questions: &[(String, Option<String>)]) -> SearchFigures {
    let all = |_: &str| true;
    // One pass untimed: the first searches fault in the postings.
    for (q, _) in questions.iter().take(50) {
        std::hint::black_box(corpus.search(q, 3, &all));
    }
    let mut us = Vec::with_capacity(questions.len());
    let (mut with_hit, mut top3) = (0, 0);
    for (q, source) in questions {
        let t = Instant::now();
        let hits = corpus.search(q, 3, &all);
        us.push(t.elapsed().as_secs_f64() * 1e6);
        with_hit += usize::from(!hits.is_empty());
        if let Some(id) = source {
            top3 += usize::from(hits.iter().any(|h| h.doc_id == id));
        }
    }
    us.sort_by(f64::total_cmp);
    SearchFigures {
        median: percentile(&us, 50.0),
        p99: percentile(&us, 99.0),
        max: us.last().copied().unwrap_or(0.0),
        with_hit,
        top3,
    }
}

/// The repo's articles and documents as the rules loader indexes them (every file under
/// `templates/articles/`, free).
fn template_docs(templates: &Path) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(templates.join("articles"))
        .with_context(|| templates.display().to_string())?
        .collect::<std::io::Result<_>>()?;
    files.sort_by_key(std::fs::DirEntry::file_name);
    for f in files {
        let name = f.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f.path())?;
        docs.push(Doc {
            id: format!("articles/{name}"),
            title: name.clone(),
            paid_article: None,
            format: DocFormat::of_path(&name),
            text,
        });
    }
    Ok(docs)
}

fn chars(docs: &[Doc]) -> usize {
    docs.iter().map(|d| d.text.chars().count()).sum()
}

/// Questions about the repo's two articles (Rust ownership, Go concurrency) and beside them.
fn repo_questions(n: usize) -> Vec<String> {
    const TOPIC: &[&str] = &[
        "所有权",
        "借用",
        "生命周期",
        "编译错误",
        "GC",
        "内存",
        "Rust",
        "Go",
        "goroutine",
        "channel",
        "context",
        "errgroup",
        "并发",
        "线程",
        "超时",
        "取消",
        "作用域",
        "引用",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let a = TOPIC.choose(&mut rng).copied().unwrap_or("Rust");
            let b = TOPIC.choose(&mut rng).copied().unwrap_or("Go");
            let c = FILLER_EN.choose(&mut rng).copied().unwrap_or("cache");
            question(i, a, b, c)
        })
        .collect()
}

fn question(i: usize, a: &str, b: &str, c: &str) -> String {
    match i % 6 {
        0 => format!("{a}和{b}有什么区别？"),
        1 => format!("怎么用 {a} 解决 {b} 的问题"),
        2 => format!("What is {a} in {b}?"),
        3 => format!("{a} 的 {b} 为什么会影响 {c}"),
        4 => format!("how to handle {a} with {b} and {c}"),
        _ => format!("请问{a}是什么意思，{b}需要先学吗"),
    }
}

/// Topic words: each synthetic article takes six of them as its own.
const TOPIC_CN: &[&str] = &[
    "所有权",
    "借用",
    "生命周期",
    "并发",
    "线程",
    "异步",
    "内存",
    "缓存",
    "数据库",
    "索引",
    "事务",
    "互斥锁",
    "队列",
    "微服务",
    "接口",
    "单元测试",
    "部署",
    "容器",
    "日志",
    "监控",
    "性能",
    "算法",
    "排序",
    "哈希表",
    "网络",
    "协议",
    "加密",
    "签名",
    "证书",
    "编译器",
    "类型系统",
    "泛型",
    "闭包",
    "迭代器",
    "模块",
    "错误处理",
    "配置",
    "调度器",
    "分布式",
    "一致性",
    "副本",
    "分片",
    "负载均衡",
    "限流",
    "熔断",
    "重试",
    "超时",
    "幂等",
    "回调",
    "消息",
    "订阅",
    "公众号",
    "会员",
    "课程",
    "作业",
    "直播",
    "回放",
    "笔记",
    "面试",
    "简历",
    "职业规划",
    "写作",
    "阅读",
    "时间管理",
    "效率",
    "习惯",
    "复盘",
    "目标",
    "摄影",
    "构图",
    "光线",
    "色彩",
    "后期",
    "预算",
    "理财",
    "健身",
    "睡眠",
    "饮食",
];
const TOPIC_EN: &[&str] = &[
    "Rust",
    "Go",
    "Python",
    "ownership",
    "borrow",
    "lifetime",
    "goroutine",
    "channel",
    "async",
    "tokio",
    "actix",
    "sled",
    "Redis",
    "PostgreSQL",
    "MySQL",
    "Kafka",
    "Kubernetes",
    "Docker",
    "benchmark",
    "latency",
    "throughput",
    "heap",
    "stack",
    "mutex",
    "scheduler",
    "webhook",
    "JSON",
    "HTTP",
    "TLS",
    "trait",
    "generic",
    "closure",
    "iterator",
    "Raft",
    "sharding",
    "replica",
    "retry",
    "timeout",
    "idempotent",
    "cache",
    "index",
    "query",
    "Lightroom",
    "ISO",
    "aperture",
];
/// Words every article uses (no topic).
const FILLER_CN: &[&str] = &[
    "我们", "可以", "因为", "所以", "但是", "如果", "就是", "这个", "一个", "需要", "通过", "使用",
    "比如", "其实", "然后", "问题", "方法", "时候", "大家", "常见", "注意", "简单", "例子", "原因",
    "结果", "步骤", "经验", "建议", "理解", "关键", "场景", "代码", "项目", "团队", "用户", "读者",
];
const FILLER_EN: &[&str] = &[
    "the", "cache", "API", "bug", "log", "code", "review", "test", "demo", "case", "team", "data",
];

/// A deterministic corpus of mixed Chinese/English articles, each with six topic words of its
/// own among shared filler, in Markdown.
struct Synthetic {
    articles: Vec<(String, String, Vec<&'static str>)>,
}

impl Synthetic {
    fn new(seed: u64) -> Synthetic {
        let mut rng = StdRng::seed_from_u64(seed);
        let articles = (0..SYNTHETIC_ARTICLES)
            .map(|i| {
                let mut topic: Vec<&'static str> = Vec::new();
                while topic.len() < 6 {
                    let w = if topic.len() < 4 {
                        TOPIC_CN.choose(&mut rng)
                    } else {
                        TOPIC_EN.choose(&mut rng)
                    };
                    if let Some(&w) = w {
                        if !topic.contains(&w) {
                            topic.push(w);
                        }
                    }
                }
                let title = format!("{}与{}：{} 实战 {i}", topic[0], topic[1], topic[4]);
                let mut md = format!("# {title}\n\n");
                for p in 0..PARAGRAPHS {
                    if p % 4 == 0 {
                        md.push_str(&format!("## {}和{}\n\n", topic[(p / 4) % 4], topic[5]));
                    }
                    for _ in 0..rng.gen_range(3..=5) {
                        md.push_str(&sentence(&mut rng, &topic));
                    }
                    md.push_str("\n\n");
                }
                (format!("bench-{i:03}.md"), md, topic)
            })
            .collect();
        Synthetic { articles }
    }

    fn docs(&self) -> Vec<Doc> {
        self.articles
            .iter()
            .map(|(name, text, _)| Doc {
                id: format!("articles/{name}"),
                title: text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("# ")
                    .to_string(),
                paid_article: None,
                format: DocFormat::Markdown,
                text: text.clone(),
            })
            .collect()
    }

    /// Questions, each drawn from one article's topic words, with that article's id.
    fn questions(&self, n: usize) -> Vec<(String, Option<String>)> {
        let mut rng = StdRng::seed_from_u64(11);
        (0..n)
            .map(|i| {
                let k = rng.gen_range(0..self.articles.len());
                let (name, _, topic) = &self.articles[k];
                let mut words = topic.clone();
                words.shuffle(&mut rng);
                let c = FILLER_EN.choose(&mut rng).copied().unwrap_or("cache");
                (
                    question(i, words[0], words[1], c),
                    Some(format!("articles/{name}")),
                )
            })
            .collect()
    }
}

/// One sentence: 8–16 words, about a third of them the article's topic words, a fifth English.
fn sentence(rng: &mut StdRng, topic: &[&str]) -> String {
    let mut s = String::new();
    let mut last_en = false;
    for _ in 0..rng.gen_range(8..=16) {
        let roll: f64 = rng.gen();
        let (w, en) = if roll < 0.33 {
            let w = topic.choose(rng).copied().unwrap_or("");
            (w, w.is_ascii())
        } else if roll < 0.5 {
            (FILLER_EN.choose(rng).copied().unwrap_or(""), true)
        } else {
            (FILLER_CN.choose(rng).copied().unwrap_or(""), false)
        };
        if en || last_en {
            s.push(' ');
        }
        s.push_str(w);
        last_en = en;
    }
    s.push_str(if rng.gen_bool(0.2) { "？" } else { "。" });
    s.trim_start().to_string()
}

// ── Pushes ─────────────────────────────────────────────────────────────────────────────────

/// A rules dir: the repo's templates, the synthetic articles beside them when given, and a
/// keywords.toml with one assistant rule and one plain rule.
fn rules_dir(synthetic: Option<&Synthetic>) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    copy_dir(Path::new(TEMPLATES), &dir.path().join("templates"))?;
    if let Some(s) = synthetic {
        for (name, text, _) in &s.articles {
            std::fs::write(dir.path().join("templates/articles").join(name), text)?;
        }
    }
    // No quota and no per-minute limit: the probe's subscribers ask far more than a person.
    std::fs::write(
        dir.path().join("keywords.toml"),
        r#"[account]
timezone = "Asia/Shanghai"

[assistant]
daily_questions = 0
per_minute = 0

[[rule]]
name = "ask"
when = { prefix = ["问"] }
assistant = { model = "bench", timeout_ms = 4500 }

[[rule]]
name = "hello"
when = { exact = ["你好"] }
reply = { text = "你好！发「问」加你的问题，助教从文章里找答案。" }
"#,
    )?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Assistant,
    Keyword,
}

struct PushFigures {
    cpu_us: f64,
    /// Each push's `post`, in µs, sorted.
    latencies: Vec<f64>,
}

/// A gateway on a fresh store, serving one rules dir, and the pushes' clock.
struct PushProbe {
    gw: Gateway,
    _data: tempfile::TempDir,
    msg_id: u64,
    /// Timed pushes made: picks the next subscriber and question.
    sent: usize,
    /// Distinct subscribers asking ([`SUBSCRIBERS`], fewer for a short run).
    subscribers: usize,
}

impl PushProbe {
    fn new(rules: &Path, fake: &FakeModel, subscribers: usize) -> Result<PushProbe> {
        let data = tempfile::tempdir()?;
        let keywords = rules.join("keywords.toml");
        let settings = Settings::for_tests(&[
            ("MPGATE_DATA_DIR", &data.path().display().to_string()),
            ("MPGATE_KEYWORDS", &keywords.display().to_string()),
            ("MPGATE_ASSISTANT_API_BASE", &fake.base()),
        ])
        .map_err(|e| anyhow!("settings: {e}"))?;
        let store = Store::open(data.path(), StoreConfig::default())?;
        let rules = RuleSet::load(&keywords)
            .map_err(|e| anyhow!("{}: {e:?}", keywords.display()))?
            .rules;
        let secret = store.link_secret()?;
        let gw = Gateway::new(&settings, store, LiveRules::new(rules), secret);
        Ok(PushProbe {
            gw,
            _data: data,
            msg_id: 7_190_000_000_000_000_000,
            sent: subscribers,
            subscribers,
        })
    }

    /// Every subscriber asks once (untimed, the first time), then `n` timed pushes of `kind`
    /// round the subscribers; the writer's step every 500 pushes counts in the CPU.
    /// Every subscriber asks once, so that the timed pushes find a subscriber record and a
    /// memory of past turns, as on a live account.
    fn warm(&mut self, rt: &tokio::runtime::Runtime, questions: &[String]) -> Result<()> {
        for i in 0..self.subscribers {
            let text = format!("问{}", questions[i % questions.len()]);
            self.push(rt, i, &text, true)?;
        }
        self.gw.store().write_behind(true)?;
        Ok(())
    }

    /// `n` timed pushes of `kind` round the subscribers, each asking the next question; the
    /// writer's step every 500 pushes counts in the CPU.
    fn run(
        &mut self,
        rt: &tokio::runtime::Runtime,
        n: usize,
        kind: Kind,
        questions: &[String],
    ) -> Result<PushFigures> {
        let mut us = Vec::with_capacity(n);
        let cpu = cpu_secs()?;
        let started = Instant::now();
        for i in 0..n {
            self.sent += 1;
            let text = match kind {
                Kind::Assistant => format!("问{}", questions[self.sent % questions.len()]),
                Kind::Keyword => "你好".to_string(),
            };
            let t = Instant::now();
            self.push(rt, self.sent, &text, kind == Kind::Assistant)?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
            if i % 500 == 499 {
                self.gw.store().write_behind(false)?;
            }
        }
        self.gw.store().write_behind(true)?;
        // Let the answered questions' tasks end inside the measured span.
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        let cpu = cpu_secs()? - cpu;
        eprintln!(
            "  {n} pushes in {:.2} s wall, {cpu:.2} s CPU",
            started.elapsed().as_secs_f64()
        );
        us.sort_by(f64::total_cmp);
        Ok(PushFigures {
            cpu_us: cpu * 1e6 / n as f64,
            latencies: us,
        })
    }

    /// One plaintext text push from subscriber `who`, signed with the demo token; checks that
    /// an assistant push is answered with the model's answer.
    fn push(
        &mut self,
        rt: &tokio::runtime::Runtime,
        who: usize,
        text: &str,
        assistant: bool,
    ) -> Result<()> {
        self.msg_id += 1;
        let now = chrono::Utc::now();
        let ts = now.timestamp().to_string();
        let openid = format!("oBench{:022}", who % self.subscribers);
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content><MsgId>{}</MsgId></xml>",
            self.msg_id
        );
        let nonce = (self.msg_id % 1_000_000_007).to_string();
        let q = CallbackQuery {
            signature: Some(signature::sign(&[DEMO_TOKEN, &ts, &nonce])),
            timestamp: Some(ts),
            nonce: Some(nonce),
            ..CallbackQuery::default()
        };
        let answer = rt
            .block_on(self.gw.post(&q, body.as_bytes(), now))
            .map_err(|e| anyhow!("push refused: {e}"))?;
        let expected: String = if assistant {
            ANSWER.chars().take(12).collect()
        } else {
            "你好！".to_string()
        };
        if !answer.body.contains(&expected) {
            bail!("push `{text}` answered {:?}", answer.body);
        }
        Ok(())
    }
}

struct ModelFigures {
    cpu_us: f64,
    latencies: Vec<f64>,
}

/// The HTTP client against the fake alone: what a push's CPU figure includes that is not
/// mpgate's pipeline.
async fn model_alone(
    client: &ModelClient,
    fake: &FakeModel,
    messages: Vec<ChatMessage>,
    n: usize,
) -> Result<ModelFigures> {
    if messages.is_empty() {
        bail!("no request to replay");
    }
    let req = Arc::new(ChatRequest {
        api_base: fake.base(),
        api_key: None,
        model: "bench".into(),
        messages,
        max_tokens: 512,
        temperature: 0.3,
    });
    // In a task of its own, as the assistant asks, with the caller waiting for it.
    let ask = || {
        let (client, req) = (client.clone(), req.clone());
        tokio::spawn(async move { client.complete(&req, Duration::from_secs(10)).await })
    };
    for _ in 0..WARM_CALLS.min(n) {
        ask().await??;
    }
    let mut us = Vec::with_capacity(n);
    let cpu = cpu_secs()?;
    for _ in 0..n {
        let t = Instant::now();
        let c = ask().await??;
        us.push(t.elapsed().as_secs_f64() * 1e6);
        if c.text != ANSWER {
            bail!("the fake answered {:?}", c.text);
        }
    }
    let cpu = cpu_secs()? - cpu;
    us.sort_by(f64::total_cmp);
    Ok(ModelFigures {
        cpu_us: cpu * 1e6 / n as f64,
        latencies: us,
    })
}

// ── The fake model ─────────────────────────────────────────────────────────────────────────

/// A bench fixture, not the tests' fake (`tests/api/fakeai.rs`): an OpenAI-compatible
/// `POST /v1/chat/completions` on 127.0.0.1 that streams [`ANSWER`] in 8-char chunks in
/// OpenAI's chunk format, the usage chunk when asked, then `[DONE]`, over HTTP/1.1 keep-alive
/// with chunked encoding. A thread per connection (the client keeps one or two open).
struct FakeModel {
    base: String,
    seen: Arc<Seen>,
}

/// What the fake received.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    bytes: AtomicUsize,
    last: Mutex<serde_json::Value>,
}

impl FakeModel {
    fn start(delay: Duration) -> Result<FakeModel> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}/v1", listener.local_addr()?);
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = shared.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, delay, &seen) {
                        eprintln!("fake model: {e}");
                    }
                });
            }
        });
        Ok(FakeModel { base, seen })
    }

    fn base(&self) -> String {
        self.base.clone()
    }

    fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::Relaxed)
    }

    /// Request body bytes received, in all.
    fn bytes(&self) -> usize {
        self.seen.bytes.load(Ordering::Relaxed)
    }

    /// The messages of the last request.
    fn last_messages(&self) -> Vec<ChatMessage> {
        let last = lock(&self.seen.last).clone();
        last["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| ChatMessage {
                        role: match m["role"].as_str() {
                            Some("system") => Role::System,
                            Some("assistant") => Role::Assistant,
                            _ => Role::User,
                        },
                        content: m["content"].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Requests on one connection until the client closes it.
fn serve(stream: TcpStream, delay: Duration, seen: &Seen) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_string();
        let mut length = 0usize;
        loop {
            line.clear();
            input.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().context("content-length")?;
                }
            }
        }
        let mut body = vec![0; length];
        input.read_exact(&mut body)?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let valid = request_line.starts_with("POST /v1/chat/completions ")
            && json["model"].is_string()
            && json["messages"].as_array().is_some_and(|m| !m.is_empty())
            && json["stream"] == true;
        if !valid {
            let msg = r#"{"error":{"message":"bad request","type":"invalid_request_error"}}"#;
            write!(
                out,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{msg}",
                msg.len()
            )?;
            continue;
        }
        seen.calls.fetch_add(1, Ordering::Relaxed);
        seen.bytes.fetch_add(length, Ordering::Relaxed);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let usage = json["stream_options"]["include_usage"] == true;
        let mut sse = String::new();
        let chars: Vec<char> = ANSWER.chars().collect();
        let pieces: Vec<String> = chars.chunks(8).map(|c| c.iter().collect()).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let finish = if i + 1 == pieces.len() {
                serde_json::json!("stop")
            } else {
                serde_json::Value::Null
            };
            let chunk = serde_json::json!({
                "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_767_225_600,
                "model": json["model"],
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}],
            });
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        if usage {
            let chunk = serde_json::json!({
                "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_767_225_600,
                "model": json["model"], "choices": [],
                "usage": {"prompt_tokens": length / 3, "completion_tokens": chars.len(),
                          "total_tokens": length / 3 + chars.len()},
            });
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        sse.push_str("data: [DONE]\n\n");
        *lock(&seen.last) = json;
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{sse}\r\n0\r\n\r\n",
            sse.len()
        )?;
        out.flush()?;
    }
}

// ── Measures ───────────────────────────────────────────────────────────────────────────────

/// utime + stime of the whole process, in seconds (`/proc/self/stat`, in clock ticks: USER_HZ
/// is 100 on Linux unless `CLK_TCK` says otherwise, as `getconf CLK_TCK` prints).
fn cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let after = stat.rsplit_once(") ").map(|(_, s)| s).context("stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let hz: f64 = std::env::var("CLK_TCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    Ok(ticks as f64 / hz)
}

fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} in /proc/self/status"))
}

fn rss_kib() -> Result<u64> {
    status_kib("VmRSS:")
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn delta_mib(before: u64, after: u64) -> f64 {
    (after as f64 - before as f64) / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `median (min–max)` of per-round figures.
fn spread(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.0} ({:.0}–{:.0})", v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The `p`-th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
