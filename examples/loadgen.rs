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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use unicode_normalization::UnicodeNormalization;

use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::message::{Event, Header, Inbound, InboundKind};
use mpgate::wechat::signature;
use mpgate::wechat::types::{AppId, MsgId, OpenId};
use mpgate::wechat::xml;

#[path = "shared/tsv.rs"]
mod tsv;
use tsv::{escape_line, unescape_line};

const WELCOME_TXT: &str = include_str!("../scripts/bench/templates/welcome.txt");
const FALLBACK_TXT: &str = include_str!("../scripts/bench/templates/fallback.txt");

/// The account's original id every push is addressed to.
const ACCOUNT: &str = "gh_bench0000001";
/// Distinct subscribers among the pushes ("several hundred").
const OPENID_POOL: u64 = 600;
/// MsgIds look like the platform's 64-bit ids; the sequence number keeps them distinct.
const MSGID_BASE: u64 = 24_000_000_000_000_000;

#[derive(Parser)]
#[command(
    about = "mpgate load generator: bench rules, signed pushes, reply verification, store pre-fill"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Keys {
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

// ── The rules model ─────────────────────────────────────────────────────────

enum Trigger {
    Subscribe { channels: Option<Vec<String>> },
    Scan(String),
    Click(String),
    Exact(Vec<String>),
    Prefix(Vec<String>),
    Regex(String),
    Contains(Vec<String>),
    Image,
    Fallback,
}

/// What a rule answers, and how this program predicts the reply text.
enum Answer {
    Text(String),
    /// `replies = [...]`: one picked at random by the server.
    OneOf(Vec<String>),
    /// An inline template and this program's rendering of it.
    Inline {
        src: String,
        render: fn(&Vars) -> String,
    },
    /// A file in templates/ and its rendering.
    File {
        name: &'static str,
        render: fn(&Vars) -> String,
    },
    News {
        title: String,
        description: String,
        url: String,
    },
    Article(usize),
}

/// What templates can see, as far as the bench rules use it.
struct Vars<'a> {
    text: &'a str,
    keyword: &'a str,
    channel: &'a str,
    groups: BTreeMap<String, String>,
}

struct Rule {
    name: String,
    trigger: Trigger,
    answer: Answer,
    tags: Vec<String>,
}

struct ArticleDef {
    id: &'static str,
    title: &'static str,
    teaser: &'static str,
    price: &'static str,
    purchase_url: &'static str,
}

const ARTICLES: &[ArticleDef] = &[
    ArticleDef {
        id: "rust-101",
        title: "Rust 入门：所有权一次讲透",
        teaser: "为什么 Rust 不需要 GC？从一个编译错误讲起。",
        price: "¥9.9",
        purchase_url: "https://mp.example.com/buy/rust-101",
    },
    ArticleDef {
        id: "go-concurrency",
        title: "Go 并发模式实战",
        teaser: "channel、context 与 errgroup：三个模式搞定 90% 的并发代码。",
        price: "¥19.9",
        purchase_url: "https://mp.example.com/buy/go-concurrency",
    },
    ArticleDef {
        id: "career-map",
        title: "后端工程师成长路线图（2026 版）",
        teaser: "从初级到架构师，每一步该补什么。",
        price: "¥29",
        purchase_url: "https://mp.example.com/buy/career-map",
    },
    ArticleDef {
        id: "k8s-deploy",
        title: "一篇讲清 Kubernetes 部署",
        teaser: "Deployment、Service、Ingress，一次上线走一遍。",
        price: "¥19.9",
        purchase_url: "https://mp.example.com/buy/k8s-deploy",
    },
];

/// Keywords of the article rules (contains), by article index.
const ARTICLE_KEYWORDS: &[&[&str]] = &[
    &["rust"],
    &["golang", "go语言"],
    &["路线图"],
    &["kubernetes", "k8s"],
];

const CHANNELS: &[&str] = &[
    "course2026",
    "meetup-shanghai",
    "meetup-beijing",
    "partner-juejin",
    "partner-infoq",
    "poster-metro",
    "poster-campus",
    "live-0315",
    "live-0412",
    "ads-wechat",
    "ads-douyin",
    "newsletter",
];

const CLICKS: &[(&str, &str)] = &[
    ("MENU_COURSE", "训练营介绍"),
    ("MENU_SCHEDULE", "开课时间"),
    ("MENU_PRICE", "学费说明"),
    ("MENU_CATALOG", "文章目录"),
    ("MENU_FAQ", "常见问题"),
    ("MENU_ABOUT", "关于我们"),
    ("MENU_CONTACT", "联系客服"),
    ("MENU_COUPON", "领优惠券"),
    ("MENU_CHECKIN", "每日签到"),
    ("MENU_INVITE", "邀请好友"),
    ("MENU_FEEDBACK", "意见反馈"),
    ("MENU_JOBS", "内推机会"),
];

const NAMED_EXACT: &[&str] = &[
    "课程",
    "价格",
    "目录",
    "报名",
    "你好",
    "在吗",
    "课表",
    "开课时间",
    "学费",
    "退费",
    "联系方式",
    "客服电话",
    "公司地址",
    "加微信",
    "资料",
    "电子书",
    "书单",
    "学习路线",
    "常见问题",
    "帮助",
];

const CONTAINS_WORDS: &[&str] = &[
    "发票",
    "退款",
    "优惠",
    "直播",
    "回放",
    "作业",
    "证书",
    "团购",
    "会员",
    "续费",
    "简历",
    "面试",
    "内推",
    "实习",
    "社群",
    "加群",
    "打卡",
    "积分",
    "抽奖",
    "福利",
    "源码",
    "笔记",
    "课件",
    "讲义",
    "答疑",
    "周报",
    "招聘",
    "合作",
    "投稿",
    "转载",
    "赞助",
    "广告",
    "商务",
    "退订",
    "密码",
    "登录",
    "注册",
    "账号",
    "绑定",
    "快递",
    "物流",
    "邮寄",
    "发货",
    "投诉",
    "反馈",
    "故障",
    "报错",
    "卡顿",
    "闪退",
    "安装",
    "下载",
    "升级",
    "版本",
    "兼容",
    "配置",
    "部署",
    "容器",
    "集群",
    "数据库",
    "缓存",
    "索引",
    "事务",
    "并发",
    "线程",
    "协程",
    "异步",
    "内存",
    "指针",
    "泛型",
    "编译器",
    "调试",
    "单元测试",
    "性能",
    "算法",
    "链表",
    "红黑树",
    "动态规划",
    "设计模式",
    "微服务",
    "消息队列",
    "负载均衡",
    "网关",
    "限流",
    "熔断",
    "日志",
    "监控",
    "告警",
    "灰度",
    "回滚",
    "压测",
];

const PREFIXES: &[&str] = &[
    "查单号",
    "查成绩",
    "查名次",
    "查余额",
    "查排名",
    "#提问",
    "#晒图",
    "#心得",
    "#建议箱",
    "#许愿",
    "翻译",
    "天气",
    "搜题",
    "问答",
    "点歌",
    "求助",
    "报修",
    "预约",
    "改期",
    "取消预约",
];

/// (regex, reply template, this program's rendering, a text generator)
type RegexRule = (
    &'static str,
    &'static str,
    fn(&Vars) -> String,
    fn(&mut StdRng) -> String,
);

const REGEXES: &[RegexRule] = &[
    (
        r"^(?:订单|order)\s*(?P<order>\d{6,12})$",
        "订单 {{ groups.order }} 已收到 ✅ 我们会在 24 小时内核对后回复你。",
        |v| {
            format!(
                "订单 {} 已收到 ✅ 我们会在 24 小时内核对后回复你。",
                g(v, "order")
            )
        },
        |r| {
            format!(
                "{}{}{}",
                pick(r, &["订单", "订单 ", "order "]),
                r.gen_range(1..10),
                digits(r, 7)
            )
        },
    ),
    (
        r"^(?:手机|电话)\s*(?P<phone>1\d{10})$",
        "已记录手机号（尾号 {{ groups.phone[-4:] }}），课程顾问会尽快联系你 📞",
        |v| {
            let p = g(v, "phone");
            format!(
                "已记录手机号（尾号 {}），课程顾问会尽快联系你 📞",
                &p[p.len() - 4..]
            )
        },
        |r| format!("{}1{}", pick(r, &["手机", "电话 ", "手机 "]), digits(r, 10)),
    ),
    (
        r"^第\s*(?P<n>\d{1,3})\s*[课讲期]$",
        "第 {{ groups.n }} 讲的讲义和回放链接已发送，记得按时完成练习 📚",
        |v| {
            format!(
                "第 {} 讲的讲义和回放链接已发送，记得按时完成练习 📚",
                g(v, "n")
            )
        },
        |r| format!("第{}{}", r.gen_range(1..200), pick(r, &["课", "讲", "期"])),
    ),
    (
        r"^(?P<y>20\d\d)年(?P<m>\d{1,2})月课程$",
        "{{ groups.y }} 年 {{ groups.m }} 月的课程安排稍后推送给你 🗓",
        |v| format!("{} 年 {} 月的课程安排稍后推送给你 🗓", g(v, "y"), g(v, "m")),
        |r| format!("20{}年{}月课程", r.gen_range(24..30), r.gen_range(1..13)),
    ),
    (
        r"^学号\s*(?P<id>[a-z]{2}\d{6})$",
        "学号 {{ groups.id }} 绑定成功 🎓",
        |v| format!("学号 {} 绑定成功 🎓", g(v, "id")),
        |r| format!("学号{}{}{}", upper(r), upper(r), digits(r, 6)),
    ),
    (
        r"^验证码\s*(?P<code>\d{4,6})$",
        "验证码 {{ groups.code }} 已提交，请在网页上继续操作。",
        |v| format!("验证码 {} 已提交，请在网页上继续操作。", g(v, "code")),
        |r| format!("验证码 {}", digits(r, 6)),
    ),
    (
        r"^(?:bug|issue)\s*#?(?P<n>\d+)$",
        "问题 #{{ groups.n }} 已转给讲师 🐛 修好后会通知你。",
        |v| format!("问题 #{} 已转给讲师 🐛 修好后会通知你。", g(v, "n")),
        |r| {
            format!(
                "{} #{}",
                pick(r, &["BUG", "bug", "Issue"]),
                r.gen_range(1..5000)
            )
        },
    ),
    (
        r"^邀请码\s*(?P<code>[a-z0-9]{6})$",
        "邀请码 {{ groups.code }} 已生效，你和好友各得 50 积分 🎁",
        |v| format!("邀请码 {} 已生效，你和好友各得 50 积分 🎁", g(v, "code")),
        |r| {
            format!(
                "邀请码 {}{}{}{}",
                upper(r),
                digits(r, 2),
                upper(r),
                digits(r, 2)
            )
        },
    ),
    (
        r"^(?P<city>\p{Han}{2,3})天气$",
        "{{ groups.city }}今天适合在家写代码 ☔",
        |v| format!("{}今天适合在家写代码 ☔", g(v, "city")),
        |r| {
            format!(
                "{}天气",
                pick(r, &["上海", "北京", "深圳", "杭州", "成都", "乌鲁木齐"])
            )
        },
    ),
    (
        r"^(?:打分|评分)\s*(?P<score>[1-5])$",
        "感谢你给本期内容打 {{ groups.score }} 分 ⭐",
        |v| format!("感谢你给本期内容打 {} 分 ⭐", g(v, "score")),
        |r| format!("{}{}", pick(r, &["打分", "评分 "]), r.gen_range(1..6)),
    ),
];

fn g(v: &Vars, name: &str) -> String {
    v.groups.get(name).cloned().unwrap_or_default()
}

fn pick<'a>(r: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[r.gen_range(0..xs.len())]
}

fn digits(r: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + r.gen_range(0..10u8)))
        .collect()
}

fn upper(r: &mut StdRng) -> char {
    char::from(b'A' + r.gen_range(0..26u8))
}

fn emoji_reply(i: usize) -> &'static str {
    ["📚", "✅", "👍", "🎉", "💡", "🚀", "🙌", "✨"][i % 8]
}

/// The bench rules, in file order. Deterministic: `rules --check` depends on it.
fn model() -> Vec<Rule> {
    let mut rules = Vec::new();
    let rule = |name: String, trigger, answer, tags: &[&str]| Rule {
        name,
        trigger,
        answer,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    // Follow: one rule per campaign channel (two channels share one), then the generic welcome.
    for (i, ch) in CHANNELS.iter().enumerate().take(10) {
        let channels = if i == 9 {
            vec![ch.to_string(), CHANNELS[10].to_string()]
        } else {
            vec![ch.to_string()]
        };
        rules.push(rule(
            format!("welcome-{ch}"),
            Trigger::Subscribe { channels: Some(channels) },
            Answer::Inline {
                src: "欢迎通过「{{ channel }}」关注码农成长营 🎉 回复「课程」看训练营，回复「资料」领取学习资料。".into(),
                render: |v| format!("欢迎通过「{}」关注码农成长营 🎉 回复「课程」看训练营，回复「资料」领取学习资料。", v.channel),
            },
            &["from-qr"],
        ));
    }
    rules.push(rule(
        "welcome".into(),
        Trigger::Subscribe { channels: None },
        Answer::File {
            name: "welcome.txt",
            render: |_| strip_one_newline(WELCOME_TXT),
        },
        &[],
    ));
    rules.push(rule(
        "scan-course".into(),
        Trigger::Scan("course2026".into()),
        Answer::Text("你已经关注啦～回复「课程」查看 2026 训练营安排。".into()),
        &["from-qr"],
    ));
    for (i, (key, label)) in CLICKS.iter().enumerate() {
        let answer = if i % 3 == 0 {
            Answer::News {
                title: format!("{label} · 码农成长营"),
                description: format!("点开查看「{label}」的详细说明 {}", emoji_reply(i)),
                url: format!("https://mp.example.com/menu/{}", key.to_ascii_lowercase()),
            }
        } else {
            Answer::Text(format!(
                "【{label}】这里是{label}的说明，有问题直接回复关键词即可 {}",
                emoji_reply(i)
            ))
        };
        let tags: &[&str] = if i % 4 == 0 { &["menu-user"] } else { &[] };
        rules.push(rule(
            format!("menu-{}", key.to_ascii_lowercase()),
            Trigger::Click(key.to_string()),
            answer,
            tags,
        ));
    }
    for (i, kw) in NAMED_EXACT.iter().enumerate() {
        let answer = if i % 4 == 1 {
            Answer::OneOf(vec![
                format!(
                    "关于「{kw}」：请看置顶文章第 {} 节 {}",
                    i + 1,
                    emoji_reply(i)
                ),
                format!(
                    "「{kw}」的答案整理好啦 👉 回复「目录」看全部 {}",
                    emoji_reply(i + 1)
                ),
            ])
        } else {
            Answer::Text(format!(
                "关于「{kw}」：请看置顶文章第 {} 节，仍有疑问请回复「帮助」{}",
                i + 1,
                emoji_reply(i)
            ))
        };
        rules.push(rule(
            format!("exact-{}", i + 1),
            Trigger::Exact(vec![kw.to_string()]),
            answer,
            &[],
        ));
    }
    for n in 101..=180 {
        let mut kws = vec![format!("资料{n}")];
        if n % 5 == 0 {
            kws.push(format!("ziliao{n}"));
        }
        rules.push(rule(
            format!("material-{n}"),
            Trigger::Exact(kws),
            Answer::Text(format!(
                "第 {n} 号资料《后端工程师实战手册·第 {} 册》下载：https://pan.example.com/s/mat{n} 提取码 {:04} {}",
                n - 100,
                (n * 37) % 10_000,
                emoji_reply(n)
            )),
            if n % 10 == 0 { &["material"] } else { &[] },
        ));
    }
    for (i, p) in PREFIXES.iter().enumerate() {
        let answer = if i % 2 == 0 {
            Answer::Inline {
                src: "已收到你的「{{ keyword }}」请求：{{ text }} 👌".into(),
                render: |v| format!("已收到你的「{}」请求：{} 👌", v.keyword, v.text),
            }
        } else {
            Answer::Text(format!("「{p}」功能维护中，稍后再试 🛠"))
        };
        rules.push(rule(
            format!("prefix-{}", i + 1),
            Trigger::Prefix(vec![p.to_string()]),
            answer,
            &[],
        ));
    }
    for (i, (re, src, render, _)) in REGEXES.iter().enumerate() {
        rules.push(rule(
            format!("regex-{}", i + 1),
            Trigger::Regex(re.to_string()),
            Answer::Inline {
                src: src.to_string(),
                render: *render,
            },
            &[],
        ));
    }
    for (i, kws) in ARTICLE_KEYWORDS.iter().enumerate() {
        rules.push(rule(
            format!("article-{}", ARTICLES[i].id),
            Trigger::Contains(kws.iter().map(|k| k.to_string()).collect()),
            Answer::Article(i),
            &[],
        ));
    }
    // 60 contains rules: the first 30 with two words, the rest with one.
    let mut words = CONTAINS_WORDS.iter();
    for i in 0..60 {
        let n = if i < 30 { 2 } else { 1 };
        let kws: Vec<String> = words.by_ref().take(n).map(|w| w.to_string()).collect();
        let answer = Answer::Text(format!(
            "关于「{}」的问题：我们整理了一份说明 👉 https://mp.example.com/faq/{} {}",
            kws.join("/"),
            i + 1,
            emoji_reply(i)
        ));
        let tags: &[&str] = if i % 3 == 0 { &["asked-faq"] } else { &[] };
        rules.push(rule(
            format!("faq-{}", i + 1),
            Trigger::Contains(kws),
            answer,
            tags,
        ));
    }
    rules.push(rule(
        "photo".into(),
        Trigger::Image,
        Answer::Text("收到图片，谢谢分享！如果是报名截图，我们会尽快确认。".into()),
        &[],
    ));
    rules.push(rule(
        "fallback".into(),
        Trigger::Fallback,
        Answer::File {
            name: "fallback.txt",
            render: |v| strip_one_newline(FALLBACK_TXT).replace("{{ text }}", v.text),
        },
        &[],
    ));
    rules
}

/// minijinja drops one trailing newline of a template.
fn strip_one_newline(s: &str) -> String {
    s.strip_suffix('\n').unwrap_or(s).to_string()
}

fn q(s: &str) -> String {
    // A JSON string is a valid TOML basic string for everything written here.
    serde_json::to_string(s).expect("strings serialise")
}

fn q_list(xs: &[String]) -> String {
    format!(
        "[{}]",
        xs.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")
    )
}

fn rules_toml(rules: &[Rule]) -> String {
    let mut t = String::new();
    t.push_str(
        "# Bench rules for scripts/bench.sh: generated by `cargo run --release --example loadgen -- rules`.\n\
         # Do not edit by hand: the load generator predicts every reply from the same model.\n\n\
         [account]\ntimezone = \"Asia/Shanghai\"\ntemplates_dir = \"templates\"\n",
    );
    for r in rules {
        let _ = write!(t, "\n[[rule]]\nname = {}\n", q(&r.name));
        match &r.trigger {
            Trigger::Subscribe { channels: Some(c) } => {
                let _ = writeln!(
                    t,
                    "when = {{ event = \"subscribe\", channel = {} }}",
                    q_list(c)
                );
            }
            Trigger::Subscribe { channels: None } => {
                t.push_str("when = { event = \"subscribe\" }\n")
            }
            Trigger::Scan(s) => {
                let _ = writeln!(t, "when = {{ scan = {} }}", q(s));
            }
            Trigger::Click(k) => {
                let _ = writeln!(t, "when = {{ click = {} }}", q(k));
            }
            Trigger::Exact(k) => {
                let _ = writeln!(t, "when = {{ exact = {} }}", q_list(k));
            }
            Trigger::Prefix(k) => {
                let _ = writeln!(t, "when = {{ prefix = {} }}", q_list(k));
            }
            Trigger::Contains(k) => {
                let _ = writeln!(t, "when = {{ contains = {} }}", q_list(k));
            }
            Trigger::Regex(re) => {
                let _ = writeln!(t, "when = {{ regex = ['{re}'] }}");
            }
            Trigger::Image => t.push_str("when = { msg_type = \"image\" }\n"),
            Trigger::Fallback => t.push_str("fallback = true\n"),
        }
        match &r.answer {
            Answer::Text(s) => {
                let _ = writeln!(t, "reply = {{ text = {} }}", q(s));
            }
            Answer::Inline { src, .. } => {
                let _ = writeln!(t, "reply = {{ text = {} }}", q(src));
            }
            Answer::OneOf(xs) => {
                let items: Vec<String> = xs
                    .iter()
                    .map(|x| format!("{{ text = {} }}", q(x)))
                    .collect();
                let _ = writeln!(t, "replies = [ {} ]", items.join(", "));
            }
            Answer::File { name, .. } => {
                let _ = writeln!(t, "reply = {{ template = {} }}", q(name));
            }
            Answer::News {
                title,
                description,
                url,
            } => {
                let _ = writeln!(
                    t,
                    "reply = {{ news = [ {{ title = {}, description = {}, pic_url = \"https://mp.example.com/img/menu.jpg\", url = {} }} ] }}",
                    q(title),
                    q(description),
                    q(url)
                );
            }
            Answer::Article(i) => {
                let _ = writeln!(t, "article = {}", q(ARTICLES[*i].id));
            }
        }
        if !r.tags.is_empty() {
            let _ = writeln!(t, "tag = {}", q_list(&r.tags));
        }
    }
    for a in ARTICLES {
        let _ = write!(
            t,
            "\n[[article]]\nid = {}\ntitle = {}\nteaser = {}\ncover = \"https://mp.example.com/img/{}.jpg\"\nprice = {}\nbody_url = \"https://mp.example.com/read/{}\"\npurchase_url = {}\n",
            q(a.id),
            q(a.title),
            q(a.teaser),
            a.id,
            q(a.price),
            a.id,
            q(a.purchase_url)
        );
    }
    // Three groups of five: twelve click keys and three links.
    let groups = [
        ("训练营", 0..4, "https://mp.example.com/camp/2026"),
        ("学习", 4..8, "https://mp.example.com/articles"),
        ("我的", 8..12, "https://mp.example.com/me"),
    ];
    for (name, range, url) in groups {
        let _ = write!(t, "\n[[menu.button]]\nname = {}\n", q(name));
        for i in range {
            let (key, label) = CLICKS[i];
            let _ = write!(
                t,
                "\n[[menu.button.sub_button]]\ntype = \"click\"\nname = {}\nkey = {}\n",
                q(label),
                q(key)
            );
        }
        let _ = write!(
            t,
            "\n[[menu.button.sub_button]]\ntype = \"view\"\nname = \"更多\"\nurl = {}\n",
            q(url)
        );
    }
    t
}

// ── Expected answers ────────────────────────────────────────────────────────

/// What a push must be answered with, in the decrypted reply.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Expect {
    /// A text reply equal to one of these.
    Text {
        any_of: Vec<String>,
    },
    News {
        title: String,
        url: String,
    },
    /// A paid article: the locked teaser, or (entitled subscriber) a signed link.
    Article {
        id: String,
        title: String,
        purchase_url: String,
    },
    /// The plain body `success`.
    Success,
}

/// What the generator knows about one push.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Meta {
    seq: u64,
    category: String,
    rule: String,
    openid: String,
    nonce: String,
    expect: Expect,
}

fn normalize(s: &str) -> String {
    if s.is_ascii() {
        return s.trim().to_ascii_lowercase();
    }
    let n: String = s.nfkc().collect();
    n.to_lowercase().trim().to_string()
}

/// The push as the model sees it.
enum Input<'a> {
    Text(&'a str),
    Subscribe(Option<&'a str>),
    Click(&'a str),
}

/// First matching rule in file order, and its predicted answer.
fn predict(rules: &[Rule], regexes: &[Option<regex::Regex>], input: &Input) -> (String, Expect) {
    let mut vars = Vars {
        text: "",
        keyword: "",
        channel: "",
        groups: BTreeMap::new(),
    };
    let norm = match input {
        Input::Text(t) => {
            vars.text = t;
            normalize(t)
        }
        _ => String::new(),
    };
    let mut kw_owned = String::new();
    let mut winner = None;
    for (i, r) in rules.iter().enumerate() {
        let hit = match (&r.trigger, input) {
            (Trigger::Subscribe { channels: None }, Input::Subscribe(_)) => true,
            (Trigger::Subscribe { channels: Some(c) }, Input::Subscribe(Some(s))) => {
                vars.channel = s;
                c.iter().any(|x| x == s)
            }
            (Trigger::Click(k), Input::Click(key)) => k == key,
            (Trigger::Exact(ks), Input::Text(_)) => ks
                .iter()
                .find(|k| normalize(k) == norm)
                .map(|k| kw_owned = k.clone())
                .is_some(),
            (Trigger::Prefix(ks), Input::Text(_)) => ks
                .iter()
                .find(|k| norm.starts_with(&normalize(k)))
                .map(|k| kw_owned = k.clone())
                .is_some(),
            (Trigger::Contains(ks), Input::Text(_)) => ks
                .iter()
                .find(|k| norm.contains(&normalize(k)))
                .map(|k| kw_owned = k.clone())
                .is_some(),
            (Trigger::Regex(_), Input::Text(_)) => match regexes[i]
                .as_ref()
                .and_then(|re| re.captures(&norm).map(|c| (re, c)))
            {
                Some((re, c)) => {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = c.name(name) {
                            vars.groups.insert(name.to_string(), m.as_str().to_string());
                        }
                    }
                    true
                }
                None => false,
            },
            _ => false,
        };
        if hit {
            winner = Some(r);
            break;
        }
    }
    let winner = match (winner, input) {
        (Some(w), _) => w,
        (None, Input::Text(_)) => match rules
            .iter()
            .find(|r| matches!(r.trigger, Trigger::Fallback))
        {
            Some(f) => f,
            None => return ("(none)".into(), Expect::Success),
        },
        (None, _) => return ("(none)".into(), Expect::Success),
    };
    vars.keyword = if kw_owned.is_empty() {
        vars.text
    } else {
        &kw_owned
    };
    let expect = match &winner.answer {
        Answer::Text(s) => Expect::Text {
            any_of: vec![s.clone()],
        },
        Answer::OneOf(xs) => Expect::Text { any_of: xs.clone() },
        Answer::Inline { render, .. } | Answer::File { render, .. } => Expect::Text {
            any_of: vec![render(&vars)],
        },
        Answer::News { title, url, .. } => Expect::News {
            title: title.clone(),
            url: url.clone(),
        },
        Answer::Article(i) => Expect::Article {
            id: ARTICLES[*i].id.to_string(),
            title: ARTICLES[*i].title.to_string(),
            purchase_url: ARTICLES[*i].purchase_url.to_string(),
        },
    };
    (winner.name.clone(), expect)
}

fn compiled_regexes(rules: &[Rule]) -> Result<Vec<Option<regex::Regex>>> {
    rules
        .iter()
        .map(|r| match &r.trigger {
            Trigger::Regex(re) => regex::Regex::new(re)
                .map(Some)
                .map_err(|e| anyhow!("regex {re}: {e}")),
            _ => Ok(None),
        })
        .collect()
}

// ── Push generation ─────────────────────────────────────────────────────────

/// A 28-character openid like the platform's (`o` + 27 of [A-Za-z0-9_-]), stable per index so
/// `prefill` and `gen` agree on who is who.
fn openid(i: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut s = String::with_capacity(28);
    s.push('o');
    for _ in 0..27 {
        // splitmix64 step: cheap, well mixed, deterministic.
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        s.push(char::from(ALPHABET[(z % 64) as usize]));
    }
    s
}

const FILLERS: &[&str] = &[
    "请问",
    "一下",
    "谢谢",
    "老师",
    "我想",
    "那个",
    "怎么",
    "今天",
    "晚上",
    "可以",
    "看看",
    "大家",
    "关于",
    "的",
    "事情",
    "有没有",
    "还有",
    "这个",
    "呀",
    "吧",
    "嗯",
    "哈哈",
    "感觉",
    "好像",
    "明天",
    "周末",
    "同学",
    "朋友",
    "推荐",
    "一起",
    "上班",
    "下班",
    "早上好",
    "晚安",
    "真的",
    "厉害",
    "学到了",
    "收藏",
    "转发",
    "支持",
];
const EMOJI: &[&str] = &[
    "😀", "🙏", "👍", "😂", "🎉", "❤️", "🤔", "😭", "🔥", "💪", "👏", "🌹", "😅", "🐶",
];

fn filler(r: &mut StdRng, words: usize) -> String {
    let mut s = String::new();
    for _ in 0..words {
        s.push_str(pick(r, FILLERS));
    }
    s
}

fn maybe_emoji(r: &mut StdRng) -> &'static str {
    if r.gen_bool(0.6) {
        pick(r, EMOJI)
    } else {
        ""
    }
}

/// One push's content and its category (what it was meant to exercise).
fn draw(
    r: &mut StdRng,
    rules: &[Rule],
    regexes: &[Option<regex::Regex>],
) -> (&'static str, InboundKindSpec) {
    let roll = r.gen_range(0..100);
    if roll < 60 {
        let sub = r.gen_range(0..100);
        let text = if sub < 35 {
            // exact: a named keyword or a numbered material, sometimes full-width or upper-case
            let rs: Vec<&Rule> = rules
                .iter()
                .filter(|x| matches!(x.trigger, Trigger::Exact(_)))
                .collect();
            let Trigger::Exact(ks) = &rs[r.gen_range(0..rs.len())].trigger else {
                unreachable!()
            };
            let k = &ks[r.gen_range(0..ks.len())];
            if k.is_ascii() && r.gen_bool(0.5) {
                k.to_ascii_uppercase()
            } else {
                k.clone()
            }
        } else if sub < 75 {
            let rs: Vec<&Rule> = rules
                .iter()
                .filter(|x| matches!(x.trigger, Trigger::Contains(_)))
                .collect();
            let Trigger::Contains(ks) = &rs[r.gen_range(0..rs.len())].trigger else {
                unreachable!()
            };
            let k = &ks[r.gen_range(0..ks.len())];
            let k = if k.is_ascii() && r.gen_bool(0.3) {
                k.to_ascii_uppercase()
            } else {
                k.clone()
            };
            let (a, b) = (r.gen_range(0..3), r.gen_range(0..3));
            format!("{}{}{}{}", filler(r, a), k, filler(r, b), maybe_emoji(r))
        } else if sub < 90 {
            let p = pick(r, PREFIXES);
            let tail = match r.gen_range(0..3) {
                0 => digits(r, 8),
                1 => {
                    let n = r.gen_range(1..3);
                    filler(r, n)
                }
                _ => format!("{}{}", filler(r, 1), pick(r, EMOJI)),
            };
            format!("{p} {tail}")
        } else {
            let (_, _, _, make) = REGEXES[r.gen_range(0..REGEXES.len())];
            make(r)
        };
        return ("hit", InboundKindSpec::Text(text));
    }
    if roll < 80 {
        // A miss: chatter that no rule matches (redrawn until the model agrees).
        loop {
            let n = r.gen_range(2..6);
            let t = format!("{}{}", filler(r, n), maybe_emoji(r));
            let (rule, _) = predict(rules, regexes, &Input::Text(&t));
            if rule == "fallback" {
                return ("miss", InboundKindSpec::Text(t));
            }
        }
    }
    if roll < 90 {
        let scene = match r.gen_range(0..10) {
            0..=4 => None,
            5..=8 => Some(CHANNELS[r.gen_range(0..CHANNELS.len())].to_string()),
            // A campaign nobody wrote a rule for: the generic welcome.
            _ => Some(format!("poster-{}", r.gen_range(100..999))),
        };
        return ("subscribe", InboundKindSpec::Subscribe(scene));
    }
    (
        "click",
        InboundKindSpec::Click(CLICKS[r.gen_range(0..CLICKS.len())].0.to_string()),
    )
}

enum InboundKindSpec {
    Text(String),
    Subscribe(Option<String>),
    Click(String),
}

/// One generated request: what wrk sends and what the reply must contain.
struct Push {
    path: String,
    body: String,
    meta: Meta,
}

struct Sealer {
    token: String,
    app_id: AppId,
    cipher: Cipher,
}

impl Sealer {
    fn new(keys: &Keys) -> Result<Sealer> {
        let key = EncodingAesKey::parse(&keys.aes_key).map_err(|e| anyhow!("bad AES key: {e}"))?;
        Ok(Sealer {
            token: keys.token.clone(),
            app_id: AppId::new(keys.app_id.clone()),
            cipher: Cipher::new(&key),
        })
    }
}

/// Generates pushes `seq_base .. seq_base + count`, deterministic in `seq_base`.
fn generate(seq_base: u64, count: u64, sealer: &Sealer) -> Result<Vec<Push>> {
    let rules = model();
    let regexes = compiled_regexes(&rules)?;
    let mut rng = StdRng::seed_from_u64(0xB3_7C4 ^ seq_base);
    let now = chrono::Utc::now().timestamp();
    // CreateTimes a few months back, one per sequence number, so event dedupe keys
    // (openid, CreateTime, event) never collide between pushes or between sets.
    let create_base = now - 100_000_000;
    let ts = now.to_string();
    let mut out = Vec::with_capacity(count as usize);
    for seq in seq_base..seq_base + count {
        let (category, spec) = draw(&mut rng, &rules, &regexes);
        let oid = openid(rng.gen_range(0..OPENID_POOL));
        let header = Header {
            to_user: ACCOUNT.to_string(),
            from_user: OpenId::new(oid.clone()),
            create_time: create_base + seq as i64,
        };
        let (kind, input_rule, expect) = match &spec {
            InboundKindSpec::Text(t) => {
                let (rule, e) = predict(&rules, &regexes, &Input::Text(t));
                let kind = InboundKind::Text {
                    msg_id: MsgId::new(MSGID_BASE + seq),
                    content: t.clone(),
                    msg_data_id: None,
                    idx: None,
                };
                (kind, rule, e)
            }
            InboundKindSpec::Subscribe(scene) => {
                let (rule, e) = predict(&rules, &regexes, &Input::Subscribe(scene.as_deref()));
                let ticket = scene.as_ref().map(|_| {
                    format!(
                        "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL{}",
                        digits(&mut rng, 8)
                    )
                });
                let kind = InboundKind::Event(Event::Subscribe {
                    scene: scene.clone(),
                    ticket,
                    event_key: None,
                });
                (kind, rule, e)
            }
            InboundKindSpec::Click(k) => {
                let (rule, e) = predict(&rules, &regexes, &Input::Click(k));
                (InboundKind::Event(Event::Click { key: k.clone() }), rule, e)
            }
        };
        let xml = Inbound { header, kind }.to_xml();
        let nonce = rng.gen_range(100_000_000u64..9_999_999_999).to_string();
        let enc = sealer.cipher.encrypt(&xml, &sealer.app_id);
        let msg_sig = signature::sign(&[&sealer.token, &ts, &nonce, &enc]);
        let sig = signature::sign(&[&sealer.token, &ts, &nonce]);
        let path = format!(
            "/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid={oid}&encrypt_type=aes&msg_signature={msg_sig}"
        );
        let body = format!("<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>");
        out.push(Push {
            path,
            body,
            meta: Meta {
                seq,
                category: category.to_string(),
                rule: input_rule,
                openid: oid,
                nonce,
                expect,
            },
        });
    }
    Ok(out)
}

fn gen(out_dir: &Path, count: u64, seq_base: u64, keys: &Keys) -> Result<()> {
    let started = Instant::now();
    let sealer = Sealer::new(keys)?;
    let pushes = generate(seq_base, count, &sealer)?;
    fs::create_dir_all(out_dir)?;
    let mut tsv = BufWriter::new(fs::File::create(out_dir.join("pushes.tsv"))?);
    let mut exp = BufWriter::new(fs::File::create(out_dir.join("expected.jsonl"))?);
    let mut mix: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_rule_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    for p in &pushes {
        writeln!(tsv, "{}\t{}", escape_line(&p.path), escape_line(&p.body))?;
        writeln!(exp, "{}", serde_json::to_string(&p.meta)?)?;
        *mix.entry(p.meta.category.clone()).or_default() += 1;
        let kind = p.meta.rule.split('-').next().unwrap_or("");
        let kind = match kind {
            "exact" | "material" => "exact",
            "prefix" => "prefix",
            "regex" => "regex",
            "faq" | "article" => "contains",
            "fallback" => "fallback",
            "welcome" => "welcome",
            "menu" => "click",
            _ => "other",
        };
        *by_rule_kind.entry(kind).or_default() += 1;
    }
    tsv.flush()?;
    exp.flush()?;
    let openids: std::collections::BTreeSet<&str> =
        pushes.iter().map(|p| p.meta.openid.as_str()).collect();
    eprintln!(
        "loadgen: {} pushes (seq {}..{}) in {:.2} s → {}; mix {:?}; answered by {:?}; {} openids",
        pushes.len(),
        seq_base,
        seq_base + count,
        started.elapsed().as_secs_f64(),
        out_dir.display(),
        mix,
        by_rule_kind,
        openids.len()
    );
    Ok(())
}

// ── Verification ────────────────────────────────────────────────────────────

/// A one-request HTTP/1.1 client over std: enough for a local server, no runtime.
fn http_post(addr: &str, path: &str, body: &str) -> Result<(u16, String)> {
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

fn dechunk(mut s: &str) -> Result<String> {
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
fn check_reply(
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

fn first_article(r: &xml::Element) -> Result<(String, String)> {
    let item = r
        .child("Articles")
        .and_then(|a| a.child("item"))
        .ok_or_else(|| anyhow!("news reply without an item"))?;
    Ok((
        item.child_text("Title").unwrap_or("").to_string(),
        item.child_text("Url").unwrap_or("").to_string(),
    ))
}

fn verify(
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

// ── Pre-fill ────────────────────────────────────────────────────────────────

fn prefill(dir: &Path, subscribers: u64, entitlements: u64, threads: u64) -> Result<()> {
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
