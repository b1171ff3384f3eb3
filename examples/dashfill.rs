//! Fills a data dir with a year of an account's history, for the dashboard benchmark
//! (`scripts/bench/dashboard.sh`): N subscribers following over the days with growth, through
//! ~8 QR channels and directly, some leaving and some coming back, messaging and tapping the
//! menu on later days with a retention-like decay, asking what the rules answer and what they
//! do not (a long tail of a few thousand distinct texts), asking for paywalled articles, opening
//! the paywall page, and ~2 % of them buying (some twice).
//!
//! Every push goes through the real pipeline, [`Gateway::post`], with the push's own historical
//! time as `now`, so every piece of bookkeeping (counters, subscriber records, analytics, the
//! unanswered texts, stored answers) is what the server writes. Paywall pages are opened
//! through [`mpgate::paywall::Paywall::open_page`] with links the gateway signs, and orders go
//! through the store's order API as `pay::Payments` does (`order_create`, `order_set_prepay`,
//! then `order_paid` or `order_close`), WeChat Pay's own calls left out. The server's jobs are
//! run in simulated time: a write-behind step every 4,000 pushes (full every 40,000) and the
//! upkeep's sweeps (dedupe, unanswered texts past their retention) every 20,000, as the writer
//! thread would at a few thousand pushes a second.
//!
//! Pushes are plaintext (the demo token): decryption and sealing change nothing the store
//! keeps, and would only make the fill slower.
//!
//! Deterministic from `--seed` for a given `--end` day in the past. The default end is today in
//! the account's time zone, whose events stop at the current time of day (nothing lies in the
//! future), so only today's part of the history depends on when the fill runs.
//!
//! ```text
//! cargo run --release --example dashfill -- --data-dir /tmp/dash-1m --subscribers 1000000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use mpgate::paywall::LinkProof;
use mpgate::pipeline::{CallbackQuery, Gateway};
use mpgate::reload::LiveRules;
use mpgate::rules::{RuleSet, Special, SubscriberView, Why};
use mpgate::settings::Settings;
use mpgate::store::{Order, OrderState, PaidOutcome, Store, StoreConfig};
use mpgate::wechat::message;
use mpgate::wechat::signature;
use mpgate::wechat::types::OpenId;

#[derive(Parser, Debug)]
#[command(
    about = "Fills a data dir with subscribers and a year of history through the real pipeline"
)]
struct Args {
    /// The data dir to fill (created; must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    /// Subscribers (distinct openids) over the whole history.
    #[arg(long, default_value_t = 1_000_000)]
    subscribers: u32,
    /// Days of history, ending with `--end`.
    #[arg(long, default_value_t = 365)]
    days: u32,
    #[arg(long, default_value_t = 18)]
    seed: u64,
    /// The last day of the history (YYYY-MM-DD, the account's time zone); default today.
    #[arg(long)]
    end: Option<NaiveDate>,
    /// The rules the pushes are routed by (the server must serve the same file).
    #[arg(long, default_value = "scripts/bench/keywords.toml")]
    keywords: PathBuf,
    /// Fill nothing: time the analytics reports on the filled `--data-dir` (in-process, no
    /// HTTP), `--runs` times each over the last 7, 30, 90 and 365 days, as a markdown table.
    #[arg(long)]
    reports: bool,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// QR channels (scenes in `scripts/bench/keywords.toml`), their share of follows relative to a
/// direct follow's 1.0, and a phase for their ups and downs over the year.
const CHANNELS: &[(&str, f64, f64)] = &[
    ("course2026", 0.45, 0.0),
    ("meetup-shanghai", 0.12, 1.3),
    ("meetup-beijing", 0.10, 2.1),
    ("partner-juejin", 0.30, 0.7),
    ("partner-infoq", 0.18, 3.0),
    ("poster-metro", 0.15, 4.2),
    ("poster-campus", 0.22, 5.0),
    ("ads-wechat", 0.40, 2.6),
];

/// Share of a channel's followers who buy at least once (the direct follow is index 0).
const BUYERS: &[f64] = &[0.018, 0.045, 0.03, 0.03, 0.02, 0.025, 0.012, 0.01, 0.015];

/// Texts meant to hit a rule: checked against the rules at start (one that falls to the
/// fallback or names an article is dropped).
const HITS: &[&str] = &[
    "课程",
    "价格",
    "目录",
    "报名",
    "你好",
    "在吗",
    "课表",
    "开课时间",
    "学费",
    "资料",
    "电子书",
    "书单",
    "学习路线",
    "帮助",
    "资料101",
    "资料105",
    "资料110",
    "请问发票怎么开",
    "有优惠吗",
    "直播回放在哪里看",
    "作业怎么交",
    "有证书吗",
    "会员怎么续费",
    "能帮忙看看简历吗",
    "有内推吗",
    "怎么加群",
    "打卡积分有什么用",
    "源码在哪下载",
    "课件可以分享吗",
    "数据库怎么学",
    "并发编程有资料吗",
    "内存泄漏怎么查",
    "第3讲",
    "订单 20260312888",
    "打分 5",
];

/// Texts meant to ask for a paywalled article (kept when the rules answer one with an article).
const ARTICLE_ASKS: &[&str] = &[
    "rust",
    "Rust 怎么入门",
    "golang",
    "go语言",
    "路线图",
    "k8s",
    "kubernetes 部署",
];

/// Words the unanswered long tail is made of (none is a keyword of the bench rules; each
/// candidate is checked against the rules anyway).
const WORDS: &[&str] = &[
    "请问",
    "老师",
    "我想",
    "那个",
    "怎么",
    "今天",
    "晚上",
    "可以",
    "大家",
    "关于",
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
    "一起",
    "上班",
    "下班",
    "早上好",
    "晚安",
    "真的",
    "厉害",
    "学到了",
    "收藏",
    "支持",
    "什么时候",
    "更新",
    "下一期",
    "讲讲",
    "区别",
    "适合",
    "新手",
    "转行",
    "工作",
    "多久",
    "学完",
    "能找到",
    "难不难",
    "零基础",
    "考研",
    "毕业",
    "薪资",
    "城市",
    "远程",
    "加班",
];

const EMOJI: &[&str] = &["😀", "🙏", "👍", "😂", "🤔", "😭", "🔥", "💪"];

/// Distinct unanswered texts to draw from (Zipf-distributed, so a few are asked a lot).
const TAIL: usize = 4000;

const CLICKS: &[&str] = &[
    "MENU_COURSE",
    "MENU_SCHEDULE",
    "MENU_PRICE",
    "MENU_CATALOG",
    "MENU_FAQ",
    "MENU_CHECKIN",
    "MENU_INVITE",
    "MENU_COUPON",
];

/// An event of one subscriber, at `at` seconds after the first day's midnight (account time).
#[derive(Clone, Copy, Debug)]
struct Ev {
    at: u32,
    sub: u32,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Channel index + 1; 0 = direct.
    Follow(u8),
    Unfollow,
    Hit(u16),
    Miss(u16),
    Article(u8),
    Click(u8),
    /// Opens the paywall page (locked, or the article once bought).
    Page(u8),
    /// Orders the article and pays for it.
    Buy(u8),
    /// Orders the article and leaves the order unpaid (closed when it expires).
    Abandon(u8),
}

/// What the generator draws from, prepared once.
struct Model {
    days: u32,
    /// The last instant of history (seconds after the first midnight).
    horizon: u32,
    /// Cumulative weights of the follow day.
    day_cdf: Vec<f64>,
    hits: Vec<String>,
    /// Per article (index into `articles`): the texts that ask for it.
    asks: Vec<(String, Vec<String>)>,
    tail: Vec<String>,
    tail_cdf: Vec<f64>,
    /// Cumulative weights of the hour of day.
    hour_cdf: Vec<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.subscribers == 0 || args.days == 0 || args.days > 3660 {
        bail!("--subscribers must be ≥ 1 and --days 1..=3660");
    }
    if args.reports {
        return time_reports(&args);
    }
    if args.data_dir.exists()
        && std::fs::read_dir(&args.data_dir)
            .with_context(|| args.data_dir.display().to_string())?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: the fill starts from a fresh data dir",
            args.data_dir.display()
        );
    }
    // Plaintext pushes with the demo token; the rules are the file given.
    for var in [
        "MPGATE_ENCODING_AES_KEY",
        "MPGATE_ENCODING_AES_KEY_PREVIOUS",
        "MPGATE_CONFIG",
        "MPGATE_TOKEN",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("MPGATE_DATA_DIR", &args.data_dir);
    std::env::set_var("MPGATE_KEYWORDS", &args.keywords);
    let settings = Settings::from_env().map_err(|e| anyhow!("settings: {e}"))?;
    let rules = RuleSet::load(&args.keywords)
        .map_err(|e| anyhow!("{}: {e:?}", args.keywords.display()))?
        .rules;
    let tz = rules.timezone();
    let end = args
        .end
        .unwrap_or_else(|| tz.from_utc_datetime(&Utc::now().naive_utc()).date_naive());
    let first = end - chrono::Duration::days(i64::from(args.days) - 1);
    let midnights: Vec<i64> = (0..=args.days)
        .map(|d| {
            let day = first + chrono::Duration::days(i64::from(d));
            tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
                .earliest()
                .map_or(0, |t| t.timestamp())
        })
        .collect();
    let now = Utc::now().timestamp();
    let horizon = u32::try_from((now.min(midnights[args.days as usize]) - midnights[0]).max(1))
        .context("history too long")?;

    // The store as the server opens it (`startup`), from the same settings.
    let store = Store::open(
        &args.data_dir,
        StoreConfig {
            cache_capacity_bytes: settings.cache_capacity_bytes,
            dedupe_retention_secs: settings.dedupe_retention.as_secs() as i64,
            unanswered_days: settings.unanswered_days,
        },
    )?;
    let secret = store.link_secret()?;
    let gw = Gateway::new(&settings, store, LiveRules::new(rules), secret);
    let model = Model::new(&gw, args.days, horizon, args.seed)?;
    eprintln!(
        "dashfill: {} subscribers over {} days ({first} … {end}, {tz}), seed {}; {} hit texts, {} articles asked for, {} distinct unanswered texts",
        args.subscribers,
        args.days,
        args.seed,
        model.hits.len(),
        model.asks.len(),
        model.tail.len()
    );

    let mut fill = Fill {
        gw: &gw,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        token: settings.token.expose().to_string(),
        midnights,
        first,
        model: &model,
        msg_id: 7_000_000_000_000_000_000,
        pushes: 0,
        orders: 0,
        paid: 0,
        pages: 0,
        refused: 0,
        seed: args.seed,
        sample_buyer: None,
    };
    fill.run(args.subscribers)?;
    Ok(())
}

impl Model {
    fn new(gw: &Gateway, days: u32, horizon: u32, seed: u64) -> Result<Model> {
        let rules = gw.rules().current();
        // Growth: three times as many follows a day at the end as at the start, fewer at the
        // weekend, and a few campaign days.
        let mut r = StdRng::seed_from_u64(seed ^ 0xD15C_0DA7);
        let spikes: Vec<u32> = (0..(days / 40).max(1))
            .map(|_| r.gen_range(0..days))
            .collect();
        let mut acc = 0.0;
        let day_cdf = (0..days)
            .map(|d| {
                let growth = 1.0 + 2.0 * f64::from(d) / f64::from(days);
                let weekend = if d % 7 >= 5 { 0.75 } else { 1.0 };
                let spike = if spikes.contains(&d) { 4.0 } else { 1.0 };
                acc += growth * weekend * spike;
                acc
            })
            .collect();
        let hour_w = [
            0.3, 0.15, 0.1, 0.05, 0.05, 0.1, 0.4, 1.0, 1.8, 1.6, 1.4, 1.5, 2.0, 1.6, 1.3, 1.2, 1.3,
            1.5, 1.8, 2.0, 2.4, 2.6, 2.0, 1.0,
        ];
        let mut acc = 0.0;
        let hour_cdf = hour_w
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();

        let route = |text: &str| {
            let xml = format!(
                "<xml><ToUserName>gh_bench</ToUserName><FromUserName>oCheck</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content><![CDATA[{text}]]></Content><MsgId>1</MsgId></xml>"
            );
            let inbound = message::parse(&xml).map_err(|e| anyhow!("{text}: {e}"))?;
            let openid = OpenId::new("oCheck");
            let view = SubscriberView {
                openid: &openid,
                first_time: false,
                channel: None,
                tags: &[],
                subscribed_since: Some(0),
            };
            Ok::<_, anyhow::Error>(rules.route(&inbound, &view, Utc::now()))
        };
        let mut hits = Vec::new();
        for t in HITS {
            let d = route(t)?;
            if d.rule.is_some() && d.why != Why::Fallback && d.special.is_none() {
                hits.push((*t).to_string());
            }
        }
        let mut asks: Vec<(String, Vec<String>)> = Vec::new();
        for t in ARTICLE_ASKS {
            if let Some(Special::Article { id }) = route(t)?.special {
                match asks.iter_mut().find(|(a, _)| *a == id) {
                    Some((_, texts)) => texts.push((*t).to_string()),
                    None => asks.push((id, vec![(*t).to_string()])),
                }
            }
        }
        asks.retain(|(id, _)| rules.article(id).is_some_and(|a| a.price_fen.is_some()));
        if hits.is_empty() || asks.is_empty() {
            bail!(
                "the rules answer none of the generator's texts (use scripts/bench/keywords.toml)"
            );
        }
        let mut tail = Vec::with_capacity(TAIL);
        let mut seen = std::collections::HashSet::new();
        let mut tries = 0;
        while tail.len() < TAIL && tries < TAIL * 20 {
            tries += 1;
            let n = r.gen_range(2..5);
            let mut t: String = (0..n).map(|_| WORDS[r.gen_range(0..WORDS.len())]).collect();
            if r.gen_bool(0.3) {
                t.push_str(EMOJI[r.gen_range(0..EMOJI.len())]);
            }
            if seen.contains(&t) {
                continue;
            }
            if route(&t)?.why == Why::Fallback {
                seen.insert(t.clone());
                tail.push(t);
            }
        }
        let mut acc = 0.0;
        let tail_cdf = (1..=tail.len())
            .map(|k| {
                acc += 1.0 / (k as f64).powf(1.05);
                acc
            })
            .collect();
        Ok(Model {
            days,
            horizon,
            day_cdf,
            hits,
            asks,
            tail,
            tail_cdf,
            hour_cdf,
        })
    }

    fn pick_cdf(cdf: &[f64], r: &mut StdRng) -> usize {
        let x = r.gen::<f64>() * cdf.last().copied().unwrap_or(1.0);
        cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
    }

    /// A time of day (seconds) with people's daily rhythm.
    fn time_of_day(&self, r: &mut StdRng) -> u32 {
        let h = Self::pick_cdf(&self.hour_cdf, r) as u32;
        h * 3600 + r.gen_range(0..3600)
    }

    /// The first follow: when, and through which channel (0 = direct).
    fn first_follow(&self, r: &mut StdRng) -> (u32, u8) {
        let d = Self::pick_cdf(&self.day_cdf, r) as u32;
        let at = d * 86_400 + self.time_of_day(r);
        // Channels rise and fall over the year around their share.
        let t = f64::from(d) / f64::from(self.days.max(1)) * std::f64::consts::TAU;
        let mut w = vec![1.0];
        w.extend(
            CHANNELS
                .iter()
                .map(|(_, share, phase)| share * (1.0 + 0.7 * (t * 2.0 + phase).sin())),
        );
        let total: f64 = w.iter().sum();
        let mut x = r.gen::<f64>() * total;
        let mut ch = 0u8;
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                ch = i as u8;
                break;
            }
            x -= wi;
        }
        (at, ch)
    }

    /// One subscriber's whole history, in time order.
    fn life(&self, seed: u64, sub: u32) -> Vec<Ev> {
        let mut r = sub_rng(seed, sub);
        let (start, channel) = self.first_follow(&mut r);
        let mut out = Vec::new();
        let push = |out: &mut Vec<Ev>, at: u32, kind: Kind| {
            if at <= self.horizon {
                out.push(Ev { at, sub, kind });
            }
        };
        let buyer = r.gen_bool(BUYERS[usize::from(channel)]);
        let repeat = buyer && r.gen_bool(0.25);
        let mut bought = Vec::new();
        // How engaged: most people a little, a few a lot.
        let engaged = r.gen::<f64>().powi(3);
        let mut follow_at = start;
        let mut scene = channel;
        for period in 0..3 {
            push(&mut out, follow_at, Kind::Follow(scene));
            let leaves = r.gen_bool([0.14, 0.3, 0.3][period]);
            let end = if leaves {
                // Most who leave do so within days.
                let secs = (-r.gen::<f64>().max(1e-9).ln() * 9.0 * 86_400.0) as u32;
                follow_at.saturating_add(secs.max(300))
            } else {
                u32::MAX
            };
            let end_visible = end.min(self.horizon.saturating_add(1));
            // Pushes right after following, then active days decaying like 1/k.
            let mut moments: Vec<u32> = Vec::new();
            if r.gen_bool(0.55) {
                moments.push(follow_at + r.gen_range(20..1800));
            }
            let span_days = (end_visible.saturating_sub(follow_at)) / 86_400;
            if span_days >= 1 {
                let active =
                    (r.gen::<f64>() * (1.0 + 14.0 * engaged)) as u32 + u32::from(r.gen_bool(0.6));
                let follow_day = follow_at / 86_400;
                for _ in 0..active {
                    let k = (f64::from(span_days + 1)).powf(r.gen::<f64>()) as u32;
                    let k = k.clamp(1, span_days);
                    moments.push((follow_day + k) * 86_400 + self.time_of_day(&mut r));
                }
            }
            moments.sort_unstable();
            moments.dedup();
            let mut buy_moment = if buyer && bought.len() < 1 + usize::from(repeat) {
                (!moments.is_empty()).then(|| r.gen_range(0..moments.len()))
            } else {
                None
            };
            for (mi, &m) in moments.iter().enumerate() {
                if m >= end_visible {
                    break;
                }
                let mut at = m;
                let n = 1 + usize::from(r.gen_bool(0.35)) + usize::from(r.gen_bool(0.1));
                for _ in 0..n {
                    let roll = r.gen_range(0..100);
                    let kind = if roll < 38 {
                        Kind::Hit(r.gen_range(0..self.hits.len()) as u16)
                    } else if roll < 58 {
                        Kind::Miss(Self::pick_cdf(&self.tail_cdf, &mut r) as u16)
                    } else if roll < 66 {
                        Kind::Article(r.gen_range(0..self.asks.len()) as u8)
                    } else {
                        Kind::Click(r.gen_range(0..CLICKS.len()) as u8)
                    };
                    if at < end_visible {
                        push(&mut out, at, kind);
                    }
                    if let Kind::Article(a) = kind {
                        // Some open the paywall page from the teaser; a few order and leave.
                        if r.gen_bool(0.3) && !bought.contains(&a) {
                            at += r.gen_range(10..300);
                            push(&mut out, at, Kind::Page(a));
                            if r.gen_bool(0.04) {
                                at += r.gen_range(20..200);
                                push(&mut out, at, Kind::Abandon(a));
                            }
                        }
                    }
                    at += r.gen_range(5..240);
                }
                if buy_moment == Some(mi) {
                    buy_moment = None;
                    let free: Vec<u8> = (0..self.asks.len() as u8)
                        .filter(|a| !bought.contains(a))
                        .collect();
                    if let Some(&a) = free.get(r.gen_range(0..free.len().max(1))) {
                        at += r.gen_range(10..120);
                        push(&mut out, at, Kind::Article(a));
                        at += r.gen_range(10..300);
                        push(&mut out, at, Kind::Page(a));
                        at += r.gen_range(30..600);
                        push(&mut out, at, Kind::Buy(a));
                        // Reads right after paying, and maybe again later.
                        at += r.gen_range(60..900);
                        push(&mut out, at, Kind::Page(a));
                        if r.gen_bool(0.4) {
                            let later = at + r.gen_range(1..30) * 86_400;
                            if later < end_visible {
                                push(&mut out, later, Kind::Page(a));
                            }
                        }
                        bought.push(a);
                    }
                    if repeat && bought.len() < 2 && mi + 1 < moments.len() {
                        buy_moment = Some(r.gen_range(mi + 1..moments.len()));
                    }
                }
            }
            if !leaves || end > self.horizon {
                break;
            }
            push(&mut out, end, Kind::Unfollow);
            // Some come back, through the same QR code or directly.
            if period == 2 || !r.gen_bool(0.3) {
                break;
            }
            let back = (-r.gen::<f64>().max(1e-9).ln() * 30.0 * 86_400.0) as u32;
            follow_at = end.saturating_add(back.max(3600));
            if follow_at > self.horizon {
                break;
            }
            scene = if r.gen_bool(0.5) { channel } else { 0 };
        }
        // Events of one subscriber happen in order, one second apart at least.
        out.sort_by_key(|e| e.at);
        for i in 1..out.len() {
            if out[i].at <= out[i - 1].at {
                out[i].at = out[i - 1].at + 1;
            }
        }
        // Nobody writes, taps or pays while not following (a page or an order drawn after an
        // unfollow goes).
        let mut following = false;
        out.retain(|e| {
            match e.kind {
                Kind::Follow(_) => following = true,
                Kind::Unfollow => {
                    let was = following;
                    following = false;
                    return was && e.at <= self.horizon;
                }
                _ => {}
            }
            following && e.at <= self.horizon
        });
        out
    }
}

fn sub_rng(seed: u64, sub: u32) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(sub))
}

/// A 28-character openid like the platform's, stable per index (the formula of
/// `examples/loadgen`'s `openid`, so the two agree on who is who).
fn openid(i: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut s = String::with_capacity(28);
    s.push('o');
    for _ in 0..27 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        s.push(char::from(ALPHABET[(z % 64) as usize]));
    }
    s
}

struct Fill<'a> {
    gw: &'a Gateway,
    rt: tokio::runtime::Runtime,
    token: String,
    /// UTC time of each day's midnight in the account's time zone (one past the last day too).
    midnights: Vec<i64>,
    first: NaiveDate,
    model: &'a Model,
    msg_id: u64,
    pushes: u64,
    orders: u64,
    paid: u64,
    pages: u64,
    refused: u64,
    seed: u64,
    /// A subscriber who bought: the dashboard benchmark looks them up.
    sample_buyer: Option<String>,
}

impl Fill<'_> {
    fn run(&mut self, subscribers: u32) -> Result<()> {
        let t0 = Instant::now();
        let days = self.model.days as usize;
        // Who first follows on each day; their whole history is drawn that morning.
        let mut starters: Vec<Vec<u32>> = vec![Vec::new(); days];
        for sub in 0..subscribers {
            let (at, _) = self.model.first_follow(&mut sub_rng(self.seed, sub));
            if at <= self.model.horizon {
                starters[(at / 86_400) as usize].push(sub);
            }
        }
        let mut buckets: Vec<Vec<Ev>> = vec![Vec::new(); days];
        let mut last_report = Instant::now();
        let mut peak_pending = 0usize;
        for d in 0..days {
            for &sub in &std::mem::take(&mut starters[d]) {
                for ev in self.model.life(self.seed, sub) {
                    let day = (ev.at / 86_400) as usize;
                    if day < days {
                        buckets[day].push(ev);
                    }
                }
            }
            let pending: usize = buckets.iter().map(Vec::len).sum();
            peak_pending = peak_pending.max(pending);
            let mut today = std::mem::take(&mut buckets[d]);
            today.shrink_to_fit();
            today.sort_by_key(|e| (e.at, e.sub));
            for ev in &today {
                self.event(ev)?;
            }
            if last_report.elapsed().as_secs() >= 10 || d + 1 == days {
                last_report = Instant::now();
                eprintln!(
                    "dashfill: day {}/{days} ({}), {} pushes, {} orders ({} paid), {:.0} s, {:.0} pushes/s, RSS {} MiB, events waiting {pending}",
                    d + 1,
                    self.first + chrono::Duration::days(d as i64),
                    self.pushes,
                    self.orders,
                    self.paid,
                    t0.elapsed().as_secs_f64(),
                    self.pushes as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                    rss_mib("VmRSS"),
                );
            }
        }
        let store = self.gw.store();
        store.flush()?;
        let secs = t0.elapsed().as_secs_f64();
        let stats = store.stats()?;
        let bytes = store.size_on_disk().unwrap_or(0);
        eprintln!(
            "dashfill: done in {secs:.1} s: {} pushes ({} refused), {} page views, {} orders ({} paid); store: {} subscribers, {} entitlements, {:.1} MiB (sled); peak RSS {} MiB, peak events waiting {peak_pending}",
            self.pushes,
            self.refused,
            self.pages,
            self.orders,
            self.paid,
            stats.subscribers,
            stats.entitlements,
            bytes as f64 / 1048576.0,
            rss_mib("VmHWM"),
        );
        println!(
            "DASHFILL subscribers={subscribers} days={days} seed={} pushes={} orders={} paid={} secs={secs:.1} sled_bytes={bytes} peak_rss_mib={} sample_buyer={}",
            self.seed,
            self.pushes,
            self.orders,
            self.paid,
            rss_mib("VmHWM"),
            self.sample_buyer.as_deref().unwrap_or("")
        );
        Ok(())
    }

    fn time(&self, at: u32) -> i64 {
        let day = (at / 86_400) as usize;
        self.midnights[day] + i64::from(at % 86_400)
    }

    fn day(&self, at: u32) -> NaiveDate {
        self.first + chrono::Duration::days(i64::from(at / 86_400))
    }

    fn event(&mut self, ev: &Ev) -> Result<()> {
        let ts = self.time(ev.at);
        let who = openid(u64::from(ev.sub));
        let m = self.model;
        let body = match ev.kind {
            Kind::Follow(0) => event_xml(&who, ts, "subscribe", None),
            Kind::Follow(ch) => {
                let scene = format!("qrscene_{}", CHANNELS[usize::from(ch) - 1].0);
                event_xml(&who, ts, "subscribe", Some(&scene))
            }
            Kind::Unfollow => event_xml(&who, ts, "unsubscribe", None),
            Kind::Click(k) => event_xml(&who, ts, "CLICK", Some(CLICKS[usize::from(k)])),
            Kind::Hit(i) => self.text_xml(&who, ts, &m.hits[usize::from(i)]),
            Kind::Miss(i) => self.text_xml(&who, ts, &m.tail[usize::from(i)]),
            Kind::Article(a) => {
                let texts = &m.asks[usize::from(a)].1;
                let t = &texts[(ev.sub as usize + ev.at as usize) % texts.len()];
                self.text_xml(&who, ts, t)
            }
            Kind::Page(a) => return self.page(&who, a, ts, ev.at),
            Kind::Buy(a) => return self.order(&who, a, ts, ev.at, true),
            Kind::Abandon(a) => return self.order(&who, a, ts, ev.at, false),
        };
        self.push(&body, ts)
    }

    fn text_xml(&mut self, who: &str, ts: i64, text: &str) -> String {
        self.msg_id += 1;
        format!(
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{who}]]></FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content><MsgId>{}</MsgId></xml>",
            self.msg_id
        )
    }

    /// One `POST /wechat`, signed as the platform signs it, with `now` = the push's own time;
    /// the store's jobs run on the pushes' clock.
    fn push(&mut self, body: &str, ts: i64) -> Result<()> {
        let ts_s = ts.to_string();
        let nonce = (self.pushes % 1_000_000_007).to_string();
        let q = CallbackQuery {
            signature: Some(signature::sign(&[&self.token, &ts_s, &nonce])),
            timestamp: Some(ts_s),
            nonce: Some(nonce),
            ..CallbackQuery::default()
        };
        let now = DateTime::from_timestamp(ts, 0).unwrap_or_default();
        match self.rt.block_on(self.gw.post(&q, body.as_bytes(), now)) {
            Ok(_) => {}
            Err(e) => {
                self.refused += 1;
                if self.refused <= 5 {
                    eprintln!("dashfill: push refused: {e}");
                }
            }
        }
        self.pushes += 1;
        let store = self.gw.store();
        if self.pushes.is_multiple_of(4_000) {
            store.write_behind(self.pushes.is_multiple_of(40_000))?;
        }
        if self.pushes.is_multiple_of(20_000) {
            // The upkeep thread's sweeps, on the pushes' clock (a minute's work at the pace
            // of a busy account).
            store.sweep_dedupe(ts)?;
            store.sweep_unanswered(now.date_naive())?;
        }
        Ok(())
    }

    /// The paywall page opened from a link the gateway signed for this reader.
    fn page(&mut self, who: &str, a: u8, ts: i64, at: u32) -> Result<()> {
        let id = &self.model.asks[usize::from(a)].0;
        let expires = ts + 7 * 86_400;
        let sig = self.gw.paywall().signer().sign(id, who, expires);
        let e = expires.to_string();
        let rules = self.gw.rules().current();
        self.gw.paywall().open_page(
            &rules,
            id,
            LinkProof {
                u: Some(who),
                e: Some(&e),
                s: Some(&sig),
            },
            ts,
            self.day(at),
        )?;
        self.pages += 1;
        Ok(())
    }

    /// An order as `pay::Payments::start_order` stores it, then paid (as a notification applies
    /// it) or closed when it expires unpaid.
    fn order(&mut self, who: &str, a: u8, ts: i64, at: u32, pays: bool) -> Result<()> {
        let store = self.gw.store();
        let rules = self.gw.rules().current();
        let id = &self.model.asks[usize::from(a)].0;
        let Some(article) = rules.article(id) else {
            return Ok(());
        };
        let Some(amount) = article.price_fen else {
            return Ok(());
        };
        let reader = OpenId::new(who);
        if store.is_entitled(&reader, id)? {
            return Ok(());
        }
        self.orders += 1;
        let channel = store
            .subscriber(&reader)?
            .and_then(|s| s.channel)
            .unwrap_or_default();
        let no = format!(
            "mpg{}{:016x}",
            DateTime::from_timestamp(ts, 0)
                .unwrap_or_default()
                .format("%Y%m%d"),
            self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ self.orders
        );
        let order = Order {
            out_trade_no: no.clone(),
            openid: who.to_string(),
            article: id.clone(),
            description: article.order_description().to_string(),
            amount_fen: amount,
            channel,
            state: OrderState::Created,
            created_at: ts,
            expires_at: ts + 1800,
            prepay_id: None,
            transaction_id: None,
            paid_at: None,
            refunded_at: None,
            closed_at: None,
            refunds: Vec::new(),
            anomaly: None,
            updated_at: ts,
        };
        store.order_create(&order, self.day(at))?;
        store.order_set_prepay(&no, &format!("wx{:030}", self.orders), ts)?;
        if pays {
            let paid_at = ts + 20 + i64::from(at % 90);
            let day = self
                .gw
                .today(DateTime::from_timestamp(paid_at, 0).unwrap_or_default());
            let tx = format!("4200{:024}", self.orders);
            if let PaidOutcome::Paid { .. } = store.order_paid(&no, &tx, paid_at, day)? {
                self.paid += 1;
                if self.sample_buyer.is_none() {
                    self.sample_buyer = Some(who.to_string());
                }
            }
        } else {
            store.order_close(&no, ts + 1800)?;
        }
        Ok(())
    }
}

fn event_xml(who: &str, ts: i64, event: &str, key: Option<&str>) -> String {
    let key = key.map_or(String::new(), |k| {
        format!("<EventKey><![CDATA[{k}]]></EventKey>")
    });
    format!(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{who}]]></FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{key}</xml>"
    )
}

/// A `/proc/self/status` figure in MiB (0 where there is none).
fn rss_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Times every analytics report on a filled data dir, `args.runs` times each: the figures'
/// cost without the dashboard's HTML and HTTP.
fn time_reports(args: &Args) -> Result<()> {
    use mpgate::analytics::Range;
    std::env::set_var("MPGATE_DATA_DIR", &args.data_dir);
    std::env::set_var("MPGATE_KEYWORDS", &args.keywords);
    let settings = Settings::from_env().map_err(|e| anyhow!("settings: {e}"))?;
    let rules = RuleSet::load(&args.keywords)
        .map_err(|e| anyhow!("{}: {e:?}", args.keywords.display()))?
        .rules;
    let store = Store::open(
        &args.data_dir,
        StoreConfig {
            cache_capacity_bytes: settings.cache_capacity_bytes,
            dedupe_retention_secs: settings.dedupe_retention.as_secs() as i64,
            unanswered_days: settings.unanswered_days,
        },
    )?;
    let secret = store.link_secret()?;
    let gw = Gateway::new(&settings, store, LiveRules::new(rules), secret);
    let a = gw.analytics();
    let today = gw.today(Utc::now());
    println!("| report (in-process) | days | rows | median ms | max ms |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, days: u32, f: &dyn Fn(Range) -> Result<usize>| -> Result<()> {
        let range = Range::last(days, today);
        let mut ms = Vec::with_capacity(args.runs);
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            rows = f(range)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "| {name} | {days} | {rows} | {:.1} | {:.1} |",
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
        Ok(())
    };
    row("overview", 30, &|_| Ok(a.overview(today)?.series.len()))?;
    for days in [7, 30, 90, 365] {
        row("growth (all channels)", days, &|r| {
            Ok(a.growth(r, None)?.len())
        })?;
        row("channels", days, &|r| Ok(a.channels(r)?.len()))?;
        row("retention", days, &|r| Ok(a.retention(r, today)?.len()))?;
        row("funnel", days, &|r| Ok(a.funnel(r)?.len()))?;
        row("sales", days, &|r| {
            a.sales(r)?;
            Ok(1)
        })?;
        row("unanswered (top 50)", days, &|r| {
            Ok(a.unanswered(r, 50)?.len())
        })?;
    }
    Ok(())
}
