//! The operators' figures against a brute-force reading of the same history.
//!
//! A seeded generator makes ~40 days of a small account's life: people following through QR
//! codes or directly, followers from before mpgate writing or leaving, unfollows and returns,
//! messages, menu taps, location reports, paywall pages, orders, payments and refunds, many of
//! them a minute either side of local midnight. Pushes go through the real pipeline
//! (`Gateway::post` with the history's own `now`, some of them retried), pages through the
//! paywall, orders through the store's order API as `pay::Payments` calls it. Then every figure
//! of every report is compared with what the definitions (`mpgate::analytics`) say, computed
//! plainly from the list of what happened; again after the store is reopened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use mpgate::analytics::{
    Analytics, ChannelRow, CohortRow, DayGrowth, FunnelRow, Range, Sales, Window, NO_CHANNEL,
};
use mpgate::paywall::{LinkProof, Page};
use mpgate::pipeline::{CallbackQuery, Gateway};
use mpgate::reload::LiveRules;
use mpgate::rules::RuleSet;
use mpgate::settings::Settings;
use mpgate::store::{Order, OrderState, PaidOutcome, RefundNote, Store, StoreConfig};
use mpgate::wechat::signature;
use mpgate::wechat::types::OpenId;

const TOKEN: &str = "analyticstoken";
const APP_ID: &str = "wx00000000000000aa";
const DAY: i64 = 24 * 3600;
const CHANNELS: [Option<&str>; 3] = [Some("qr_a"), Some("qr_b"), None];
const ARTICLES: [&str; 2] = ["art1", "art2"];
const HISTORY_DAYS: i64 = 40;

fn keywords(tz: &str) -> String {
    format!(
        r#"[account]
timezone = "{tz}"

[[rule]]
name = "buy1"
when = {{ exact = ["buy1"] }}
article = "art1"

[[rule]]
name = "buy2"
when = {{ exact = ["buy2"] }}
article = "art2"

[[article]]
id = "art1"
title = "Article one"
teaser = "The first article."
price = "¥9.9"
body_url = "https://mp.example.com/read/art1"

[[article]]
id = "art2"
title = "Article two"
teaser = "The second article."
price = "¥19.9"
body_url = "https://mp.example.com/read/art2"
"#
    )
}

/// One gateway over a data dir, as the server builds it.
fn gateway(dir: &Path, tz: &str) -> Gateway {
    let rules_file = dir.join("keywords.toml");
    std::fs::write(&rules_file, keywords(tz)).expect("write rules");
    let data = dir.join("data");
    let settings = Settings::for_tests(&[
        ("MPGATE_TOKEN", TOKEN),
        ("MPGATE_APP_ID", APP_ID),
        ("MPGATE_DATA_DIR", data.to_str().expect("utf-8 path")),
        ("MPGATE_PUBLIC_URL", "http://mp.test"),
    ])
    .expect("settings");
    let store = Store::open(&data, StoreConfig::default()).expect("store opens");
    let rules = RuleSet::load(&rules_file).expect("rules load").rules;
    let secret = store.link_secret().expect("link secret");
    Gateway::new(&settings, store, LiveRules::new(rules), secret)
}

fn openid(user: usize) -> String {
    format!("oUser{user:04}")
}

// ---- what happens ------------------------------------------------------------------------

/// What a person does, as generated (the driver may find it moot when its time comes: an
/// order of an article they hold already, a refund with nothing paid).
#[derive(Debug, Clone, PartialEq)]
enum Act {
    Subscribe(Option<String>),
    Unsubscribe,
    Text(String),
    Click,
    Location,
    PageWithoutLink(&'static str),
    PageWithLink(&'static str),
    /// The order's number in the history, its article, amount and when it is paid (after).
    Order(usize, &'static str, u64, Option<i64>),
    Pay(usize),
    Refund,
}

/// What happened, in time order: the list the brute force reads.
#[derive(Debug, Clone, PartialEq)]
enum Did {
    Subscribe(Option<String>),
    Unsubscribe,
    Text(String),
    Click,
    Location,
    PageWithoutLink(&'static str),
    PageWithLink(&'static str),
    /// An order created: number, article, amount, the channel the store gave it.
    Order(String, &'static str, u64, String),
    Paid(String),
    Refunded(String),
}

#[derive(Debug, Clone)]
struct Event {
    at: i64,
    user: usize,
    act: Act,
}

/// A history of `users` people over [`HISTORY_DAYS`] days from `start` (local midnight).
fn generate(seed: u64, tz: Tz, start: NaiveDate, users: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = local_midnight(tz, start);
    let t1 = local_midnight(tz, start + Duration::days(HISTORY_DAYS));
    let mut events = Vec::new();
    let mut orders = 0usize;
    for user in 0..users {
        let mut times: Vec<i64> = (0..rng.gen_range(4..24))
            .map(|_| rng.gen_range(t0..t1))
            .collect();
        let first = *times.iter().min().expect("at least one time");
        // Cohort day + 1, 7 and 30, give or take a few hours: retention needs them.
        for n in [1, 7, 30] {
            times.push(first + n * DAY + rng.gen_range(-4 * 3600..4 * 3600));
        }
        // Many a minute either side of a local midnight.
        for t in times.iter_mut() {
            if rng.gen_bool(0.3) {
                let day = tz
                    .timestamp_opt(*t, 0)
                    .single()
                    .expect("instant")
                    .date_naive();
                *t = local_midnight(tz, day + Duration::days(1)) + rng.gen_range(-90..90);
            }
        }
        times.retain(|t| (t0..t1).contains(t));
        times.sort_unstable();
        times.dedup();
        let kind = rng.gen_range(0..10);
        let mut following = true;
        for (i, at) in times.into_iter().enumerate() {
            let act = if i == 0 {
                match kind {
                    // A follower from before mpgate who writes first.
                    0 | 1 => Act::Text("hello".into()),
                    // One who only sends a location report, then follows through a QR code
                    // without ever leaving (their channel moves).
                    2 => Act::Location,
                    // One who leaves.
                    3 => {
                        following = false;
                        Act::Unsubscribe
                    }
                    _ => Act::Subscribe(pick_channel(&mut rng)),
                }
            } else if i == 1 && kind == 2 {
                Act::Subscribe(Some("qr_b".into()))
            } else if following {
                match rng.gen_range(0..100) {
                    0..=14 => Act::Text("hi".into()),
                    15..=24 => Act::Text(format!("buy{}", rng.gen_range(1..=2))),
                    25..=39 => Act::Click,
                    40..=47 => Act::Location,
                    48..=55 => Act::PageWithLink(ARTICLES[rng.gen_range(0..2)]),
                    56..=59 => Act::PageWithoutLink(ARTICLES[rng.gen_range(0..2)]),
                    60..=71 => {
                        let pay = rng.gen_bool(0.8).then(|| {
                            // Paid at once, or up to two days later (across midnights).
                            if rng.gen_bool(0.5) {
                                rng.gen_range(30..600)
                            } else {
                                rng.gen_range(600..2 * DAY)
                            }
                        });
                        Act::Order(
                            orders,
                            ARTICLES[rng.gen_range(0..2)],
                            rng.gen_range(100..5000),
                            pay,
                        )
                    }
                    72..=75 => Act::Refund,
                    _ => {
                        following = false;
                        Act::Unsubscribe
                    }
                }
            } else {
                match rng.gen_range(0..10) {
                    // A late push from someone who has left.
                    0 => Act::Text("buy1".into()),
                    1 => Act::PageWithLink(ARTICLES[rng.gen_range(0..2)]),
                    _ => {
                        following = true;
                        Act::Subscribe(pick_channel(&mut rng))
                    }
                }
            };
            if let Act::Order(_, _, _, Some(after)) = act {
                events.push(Event {
                    at: at + after,
                    user,
                    act: Act::Pay(orders),
                });
            }
            if matches!(act, Act::Order(..)) {
                orders += 1;
            }
            events.push(Event { at, user, act });
        }
    }
    // Payments after the end of the history are not part of it.
    events.retain(|e| e.at < t1);
    // Stable: a person's acts at the same second keep their order (an order before its pay).
    events.sort_by_key(|e| e.at);
    events
}

fn pick_channel(rng: &mut StdRng) -> Option<String> {
    CHANNELS[rng.gen_range(0..CHANNELS.len())].map(str::to_owned)
}

fn local_midnight(tz: Tz, day: NaiveDate) -> i64 {
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .expect("midnight exists")
        .timestamp()
}

fn local_day(tz: Tz, at: i64) -> NaiveDate {
    tz.timestamp_opt(at, 0)
        .single()
        .expect("instant")
        .date_naive()
}

// ---- the driver --------------------------------------------------------------------------

/// Plays a history through the pipeline, the paywall and the order API; returns what happened.
struct Driver {
    tz: Tz,
    nonce: u64,
    msg_id: u64,
    /// Order numbers by their number in the history (`None`: the order was moot).
    orders: BTreeMap<usize, Option<String>>,
    /// Paid order numbers per person not refunded yet, oldest first.
    paid: BTreeMap<usize, Vec<String>>,
    log: Vec<(i64, usize, Did)>,
    retries: usize,
}

impl Driver {
    fn new(tz: Tz) -> Driver {
        Driver {
            tz,
            nonce: 0,
            msg_id: 0,
            orders: BTreeMap::new(),
            paid: BTreeMap::new(),
            log: Vec::new(),
            retries: 0,
        }
    }

    async fn play(&mut self, gw: &Gateway, events: &[Event], rng: &mut StdRng) {
        for (i, e) in events.iter().enumerate() {
            self.step(gw, e, rng).await;
            // The write-behind periods, as the upkeep thread runs them.
            if i % 37 == 0 {
                gw.store().write_behind(i % 370 == 0).expect("period");
            }
        }
    }

    async fn step(&mut self, gw: &Gateway, e: &Event, rng: &mut StdRng) {
        let who = openid(e.user);
        let day = local_day(self.tz, e.at);
        let store = gw.store();
        let did = match &e.act {
            Act::Subscribe(scene) => {
                let key = scene
                    .as_ref()
                    .map(|s| format!("<EventKey><![CDATA[qrscene_{s}]]></EventKey>"))
                    .unwrap_or_default();
                self.push(gw, &who, e.at, &format!("<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>{key}"), rng).await;
                Did::Subscribe(scene.clone())
            }
            Act::Unsubscribe => {
                self.push(
                    gw,
                    &who,
                    e.at,
                    "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event>",
                    rng,
                )
                .await;
                Did::Unsubscribe
            }
            Act::Text(t) => {
                self.msg_id += 1;
                let body = format!(
                    "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{t}]]></Content><MsgId>{}</MsgId>",
                    self.msg_id
                );
                self.push(gw, &who, e.at, &body, rng).await;
                Did::Text(t.clone())
            }
            Act::Click => {
                self.push(gw, &who, e.at, "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[MENU_ABOUT]]></EventKey>", rng).await;
                Did::Click
            }
            Act::Location => {
                self.push(gw, &who, e.at, "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event><Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>65.0</Precision>", rng).await;
                Did::Location
            }
            Act::PageWithoutLink(article) => {
                let rules = gw.rules().current();
                let page = gw
                    .paywall()
                    .open_page(&rules, article, LinkProof::default(), e.at, day)
                    .expect("page");
                assert!(matches!(page, Page::NoLink(_)), "{page:?}");
                Did::PageWithoutLink(article)
            }
            Act::PageWithLink(article) => {
                let url = gw.paywall().read_url(article, &OpenId::new(&who), e.at);
                let query = url.split_once('?').expect("a query").1;
                let param = |name: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .map(str::to_owned)
                };
                let (u, ex, s) = (param("u"), param("e"), param("s"));
                let rules = gw.rules().current();
                let proof = LinkProof {
                    u: u.as_deref(),
                    e: ex.as_deref(),
                    s: s.as_deref(),
                };
                let page = gw
                    .paywall()
                    .open_page(&rules, article, proof, e.at, day)
                    .expect("page");
                assert!(matches!(page, Page::Locked(_) | Page::Read(_)), "{page:?}");
                Did::PageWithLink(article)
            }
            Act::Order(i, article, fen, _) => {
                let u = OpenId::new(&who);
                if store.is_entitled(&u, article).expect("entitled?") {
                    self.orders.insert(*i, None);
                    return;
                }
                // As `pay::Payments::start_order` makes it.
                let channel = store
                    .subscriber(&u)
                    .expect("read")
                    .and_then(|s| s.channel)
                    .unwrap_or_default();
                let no = format!("NO{i:06}x{}", e.user);
                let order = Order {
                    out_trade_no: no.clone(),
                    openid: who.clone(),
                    article: article.to_string(),
                    description: "an article".into(),
                    amount_fen: *fen,
                    channel: channel.clone(),
                    state: OrderState::Created,
                    created_at: e.at,
                    expires_at: e.at + 7200,
                    prepay_id: None,
                    transaction_id: None,
                    paid_at: None,
                    refunded_at: None,
                    closed_at: None,
                    refunds: Vec::new(),
                    anomaly: None,
                    updated_at: e.at,
                };
                store.order_create(&order, day).expect("order");
                self.orders.insert(*i, Some(no.clone()));
                Did::Order(no, article, *fen, channel)
            }
            Act::Pay(i) => {
                let Some(no) = self.orders.get(i).cloned().flatten() else {
                    return;
                };
                let out = store
                    .order_paid(&no, &format!("tx{no}"), e.at, day)
                    .expect("paid");
                assert!(matches!(out, PaidOutcome::Paid { .. }), "{out:?}");
                // The platform notifies again: nothing more is counted.
                let again = store
                    .order_paid(&no, &format!("tx{no}"), e.at, day)
                    .expect("paid again");
                assert!(matches!(again, PaidOutcome::AlreadyPaid(_)), "{again:?}");
                self.paid.entry(e.user).or_default().push(no.clone());
                Did::Paid(no)
            }
            Act::Refund => {
                let Some(no) = self.paid.get_mut(&e.user).and_then(|p| p.pop()) else {
                    return;
                };
                let order = store.order(&no).expect("read").expect("exists");
                store
                    .order_refund(
                        &no,
                        RefundNote {
                            out_refund_no: format!("R{no}"),
                            refund_id: None,
                            status: "SUCCESS".into(),
                            refund_fen: order.amount_fen,
                            at: e.at,
                        },
                        true,
                        day,
                    )
                    .expect("refund");
                Did::Refunded(no)
            }
        };
        self.log.push((e.at, e.user, did));
    }

    /// One push in plaintext mode; one in eight is retried at once (a new nonce, as the
    /// platform's retries come), which must change nothing.
    async fn push(&mut self, gw: &Gateway, who: &str, at: i64, rest: &str, rng: &mut StdRng) {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{who}]]></FromUserName><CreateTime>{at}</CreateTime>{rest}</xml>"
        );
        let now = DateTime::from_timestamp(at, 0).expect("time");
        let tries = if rng.gen_bool(0.125) { 2 } else { 1 };
        for _ in 0..tries {
            self.nonce += 1;
            let nonce = self.nonce.to_string();
            let ts = at.to_string();
            let q = CallbackQuery {
                signature: Some(signature::sign(&[TOKEN, &ts, &nonce])),
                timestamp: Some(ts),
                nonce: Some(nonce),
                ..CallbackQuery::default()
            };
            gw.post(&q, xml.as_bytes(), now)
                .await
                .expect("push accepted");
        }
        self.retries += tries - 1;
    }
}

// ---- the brute force ---------------------------------------------------------------------

/// One person as the definitions see them at some moment.
#[derive(Debug, Clone, Default)]
struct Person {
    known: bool,
    following: bool,
    subscribed_ever: bool,
    messages: u64,
    channel: Option<String>,
    /// Time and day of the first follow.
    first_follow: Option<(i64, NaiveDate)>,
}

impl Person {
    fn channel(&self) -> String {
        self.channel.clone().unwrap_or_else(|| NO_CHANNEL.into())
    }
}

/// Everything the reports show, computed from the log.
struct Truth {
    tz: Tz,
    log: Vec<(i64, usize, Did)>,
}

/// Keyed by day and channel (or article).
type ByDay = BTreeMap<(NaiveDate, String), u64>;

#[derive(Default)]
struct Facts {
    follows: ByDay,
    unfollows: ByDay,
    pushes: BTreeMap<NaiveDate, u64>,
    /// Person → (cohort day, channel, first follow time).
    cohort: BTreeMap<usize, (NaiveDate, String, i64)>,
    /// (person, day) of activity while following.
    active: BTreeSet<(usize, NaiveDate)>,
    /// Person → times of unsubscribes that ended a follow.
    unfollow_times: BTreeMap<usize, Vec<i64>>,
    /// Person → pay times of paid orders, in order.
    pay_times: BTreeMap<usize, Vec<i64>>,
    /// By article.
    teasers: ByDay,
    pages: ByDay,
    orders: ByDay,
    paid: ByDay,
    reads: ByDay,
    revenue: ByDay,
    /// By channel of the order.
    revenue_by_channel: ByDay,
    refunds: BTreeMap<NaiveDate, u64>,
    refunded_fen: BTreeMap<NaiveDate, u64>,
    /// Followers at the end of each day, by channel.
    followers: ByDay,
}

impl Truth {
    fn day(&self, at: i64) -> NaiveDate {
        local_day(self.tz, at)
    }

    fn first_day(&self) -> NaiveDate {
        self.day(self.log[0].0)
    }

    /// Replays the log with the definitions.
    fn facts(&self, last_day: NaiveDate) -> Facts {
        let mut f = Facts::default();
        let mut people: BTreeMap<usize, Person> = BTreeMap::new();
        // Orders: number → (person, article, amount, channel at creation).
        let mut orders: BTreeMap<String, (usize, &'static str, u64, String)> = BTreeMap::new();
        // (person, article) → entitled now.
        let mut entitled: BTreeSet<(usize, &'static str)> = BTreeSet::new();
        let mut snapshot_day = self.first_day();
        let snapshot = |people: &BTreeMap<usize, Person>, day: NaiveDate, f: &mut Facts| {
            for p in people.values().filter(|p| p.following) {
                *f.followers.entry((day, p.channel())).or_default() += 1;
            }
        };
        for (at, user, did) in &self.log {
            let day = self.day(*at);
            while snapshot_day < day {
                snapshot(&people, snapshot_day, &mut f);
                snapshot_day += Duration::days(1);
            }
            let p = people.entry(*user).or_default();
            let is_push = matches!(
                did,
                Did::Subscribe(_) | Did::Unsubscribe | Did::Text(_) | Did::Click | Did::Location
            );
            if is_push {
                *f.pushes.entry(day).or_default() += 1;
            }
            match did {
                Did::Subscribe(scene) => {
                    let follow = !(p.known && p.following);
                    let first_time = !p.subscribed_ever && p.messages == 0;
                    if first_time {
                        p.channel = scene.clone().filter(|s| !s.is_empty());
                    }
                    if follow {
                        *f.follows.entry((day, p.channel())).or_default() += 1;
                        if first_time {
                            p.first_follow = Some((*at, day));
                            f.cohort.insert(*user, (day, p.channel(), *at));
                        }
                    }
                    p.known = true;
                    p.following = true;
                    p.subscribed_ever = true;
                }
                Did::Unsubscribe => {
                    if !p.known || p.following {
                        *f.unfollows.entry((day, p.channel())).or_default() += 1;
                        f.unfollow_times.entry(*user).or_default().push(*at);
                    }
                    p.known = true;
                    p.following = false;
                }
                Did::Text(_) | Did::Click | Did::Location => {
                    if !p.known {
                        p.known = true;
                        p.following = true;
                    }
                    if matches!(did, Did::Text(_)) {
                        p.messages += 1;
                    }
                    if p.following && !matches!(did, Did::Location) {
                        f.active.insert((*user, day));
                    }
                    if let Did::Text(t) = did {
                        if let Some(n) = t.strip_prefix("buy") {
                            let article = if n == "1" { "art1" } else { "art2" };
                            if !entitled.contains(&(*user, article)) {
                                *f.teasers.entry((day, article.into())).or_default() += 1;
                            }
                        }
                    }
                }
                Did::PageWithoutLink(article) => {
                    *f.pages.entry((day, article.to_string())).or_default() += 1;
                }
                Did::PageWithLink(article) => {
                    if entitled.contains(&(*user, *article)) {
                        *f.reads.entry((day, article.to_string())).or_default() += 1;
                    } else {
                        *f.pages.entry((day, article.to_string())).or_default() += 1;
                    }
                }
                Did::Order(no, article, fen, channel) => {
                    // The channel the store gave the order is the person's, by the definition.
                    let mine = p.channel.clone().unwrap_or_default();
                    assert_eq!(channel, &mine, "the order of {user} has their channel");
                    orders.insert(no.clone(), (*user, article, *fen, mine));
                    *f.orders.entry((day, article.to_string())).or_default() += 1;
                }
                Did::Paid(no) => {
                    let (who, article, fen, channel) = orders[no].clone();
                    entitled.insert((who, article));
                    *f.paid.entry((day, article.to_string())).or_default() += 1;
                    *f.revenue.entry((day, article.to_string())).or_default() += fen;
                    let ch = if channel.is_empty() {
                        NO_CHANNEL.to_string()
                    } else {
                        channel
                    };
                    *f.revenue_by_channel.entry((day, ch)).or_default() += fen;
                    f.pay_times.entry(who).or_default().push(*at);
                }
                Did::Refunded(no) => {
                    let (who, article, fen, _) = orders[no].clone();
                    entitled.remove(&(who, article));
                    *f.refunds.entry(day).or_default() += 1;
                    *f.refunded_fen.entry(day).or_default() += fen;
                }
            }
        }
        while snapshot_day <= last_day {
            snapshot(&people, snapshot_day, &mut f);
            snapshot_day += Duration::days(1);
        }
        f
    }
}

fn in_range(r: Range, day: NaiveDate) -> bool {
    (r.from..=r.to).contains(&day)
}

fn sum_where(m: &ByDay, keep: impl Fn(NaiveDate, &str) -> bool) -> u64 {
    m.iter()
        .filter(|((d, k), _)| keep(*d, k))
        .map(|(_, n)| *n)
        .sum()
}

fn ratio(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

impl Facts {
    fn cumulative(&self, day: NaiveDate, channel: Option<&str>) -> i64 {
        sum_where(&self.followers, |d, ch| {
            d == day && channel.is_none_or(|c| c == ch)
        }) as i64
    }

    fn growth(&self, r: Range, channel: Option<&str>) -> Vec<DayGrowth> {
        r.from
            .iter_days()
            .take_while(|d| *d <= r.to)
            .map(|day| {
                let keep = |d: NaiveDate, ch: &str| d == day && channel.is_none_or(|c| c == ch);
                let follows = sum_where(&self.follows, keep);
                let unfollows = sum_where(&self.unfollows, keep);
                DayGrowth {
                    day: Some(day),
                    follows,
                    unfollows,
                    net: follows as i64 - unfollows as i64,
                    cumulative: self.cumulative(day, channel),
                }
            })
            .collect()
    }

    fn window(&self, days: u32, today: NaiveDate) -> Window {
        let r = Range::last(days, today);
        let keep = |d: NaiveDate, _: &str| in_range(r, d);
        let follows = sum_where(&self.follows, keep);
        let unfollows = sum_where(&self.unfollows, keep);
        Window {
            days,
            follows,
            unfollows,
            net: follows as i64 - unfollows as i64,
            cumulative: self.cumulative(today, None),
            pushes: self
                .pushes
                .iter()
                .filter(|(d, _)| in_range(r, **d))
                .map(|(_, n)| n)
                .sum(),
            paid_orders: sum_where(&self.paid, keep),
            revenue_fen: sum_where(&self.revenue, keep),
        }
    }

    /// Members of cohorts in `r` of `channel` (any when `None`).
    fn members(&self, r: Range, channel: Option<&str>) -> Vec<(usize, NaiveDate, i64)> {
        self.cohort
            .iter()
            .filter(|(_, (c, ch, _))| in_range(r, *c) && channel.is_none_or(|want| want == ch))
            .map(|(u, (c, _, t))| (*u, *c, *t))
            .collect()
    }

    fn unfollowed_within_7d(&self, user: usize, first: i64) -> bool {
        self.unfollow_times
            .get(&user)
            .is_some_and(|ts| ts.iter().any(|t| (0..7 * DAY).contains(&(t - first))))
    }

    fn first_purchase_within(&self, user: usize, first: i64, secs: i64) -> bool {
        self.pay_times
            .get(&user)
            .and_then(|ts| ts.first())
            .is_some_and(|t| (0..secs).contains(&(t - first)))
    }

    fn channels(&self, r: Range) -> Vec<ChannelRow> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for ((_, ch), _) in self
            .follows
            .iter()
            .chain(&self.unfollows)
            .chain(&self.followers)
            .chain(&self.revenue_by_channel)
        {
            names.insert(ch.clone());
        }
        for (_, ch, _) in self.cohort.values() {
            names.insert(ch.clone());
        }
        let mut rows: Vec<ChannelRow> = names
            .into_iter()
            .map(|ch| {
                let keep = |d: NaiveDate, c: &str| in_range(r, d) && c == ch;
                let members = self.members(r, Some(&ch));
                let first_follows = members.len() as u64;
                let unf = members
                    .iter()
                    .filter(|(u, _, t)| self.unfollowed_within_7d(*u, *t))
                    .count() as u64;
                let buy = |secs: i64| {
                    members
                        .iter()
                        .filter(|(u, _, t)| self.first_purchase_within(*u, *t, secs))
                        .count() as u64
                };
                let (b7, b30) = (buy(7 * DAY), buy(30 * DAY));
                let follows = sum_where(&self.follows, keep);
                let unfollows = sum_where(&self.unfollows, keep);
                let revenue_fen = sum_where(&self.revenue_by_channel, keep);
                ChannelRow {
                    channel: ch.clone(),
                    follows,
                    unfollows,
                    net: follows as i64 - unfollows as i64,
                    cumulative: self.cumulative(r.to, Some(&ch)),
                    first_follows,
                    unfollow_7d_rate: ratio(unf, first_follows),
                    first_purchase_7d: b7,
                    first_purchase_30d: b30,
                    conversion_7d: ratio(b7, first_follows),
                    conversion_30d: ratio(b30, first_follows),
                    revenue_fen,
                    revenue_per_follower_fen: ratio(revenue_fen, first_follows),
                }
            })
            .filter(|r| {
                r.follows + r.unfollows + r.first_follows + r.revenue_fen > 0 || r.cumulative != 0
            })
            .collect();
        rows.sort_by(|a, b| {
            b.first_follows
                .cmp(&a.first_follows)
                .then(b.follows.cmp(&a.follows))
                .then(a.channel.cmp(&b.channel))
        });
        rows
    }

    fn retention(&self, r: Range, today: NaiveDate) -> Vec<CohortRow> {
        let mut rows = Vec::new();
        for day in r.from.iter_days().take_while(|d| *d <= r.to) {
            let members: Vec<_> = self
                .members(r, None)
                .into_iter()
                .filter(|(_, c, _)| *c == day)
                .collect();
            if members.is_empty() {
                continue;
            }
            let retained = |n: i64| {
                let on = day + Duration::days(n);
                (on <= today).then(|| {
                    members
                        .iter()
                        .filter(|(u, _, _)| self.active.contains(&(*u, on)))
                        .count() as u64
                })
            };
            rows.push(CohortRow {
                day: Some(day),
                size: members.len() as u64,
                day1: retained(1),
                day7: retained(7),
                day30: retained(30),
                unfollowed_7d: members
                    .iter()
                    .filter(|(u, _, t)| self.unfollowed_within_7d(*u, *t))
                    .count() as u64,
            });
        }
        rows.reverse();
        rows
    }

    fn funnel(&self, r: Range) -> Vec<FunnelRow> {
        let mut rows: Vec<FunnelRow> = ARTICLES
            .iter()
            .map(|a| {
                let keep = |d: NaiveDate, art: &str| in_range(r, d) && art == *a;
                FunnelRow {
                    article: a.to_string(),
                    teasers: sum_where(&self.teasers, keep),
                    pages: sum_where(&self.pages, keep),
                    orders: sum_where(&self.orders, keep),
                    paid: sum_where(&self.paid, keep),
                    reads: sum_where(&self.reads, keep),
                    revenue_fen: sum_where(&self.revenue, keep),
                }
            })
            .filter(|row| {
                row.teasers + row.pages + row.orders + row.paid + row.reads + row.revenue_fen > 0
            })
            .collect();
        rows.sort_by(|a, b| {
            b.paid
                .cmp(&a.paid)
                .then(b.revenue_fen.cmp(&a.revenue_fen))
                .then(a.article.cmp(&b.article))
        });
        rows
    }

    fn sales(&self, r: Range, tz: Tz) -> Sales {
        let keep = |d: NaiveDate, _: &str| in_range(r, d);
        let paid_orders = sum_where(&self.paid, keep);
        let revenue_fen = sum_where(&self.revenue, keep);
        let by_day = |m: &BTreeMap<NaiveDate, u64>| -> u64 {
            m.iter()
                .filter(|(d, _)| in_range(r, **d))
                .map(|(_, n)| n)
                .sum()
        };
        // All-time as of the range's last day.
        let paid_by_then = |ts: &Vec<i64>| ts.iter().filter(|t| local_day(tz, **t) <= r.to).count();
        let buyers = self
            .pay_times
            .values()
            .filter(|ts| paid_by_then(ts) >= 1)
            .count() as u64;
        let repeat_buyers = self
            .pay_times
            .values()
            .filter(|ts| paid_by_then(ts) >= 2)
            .count() as u64;
        Sales {
            paid_orders,
            revenue_fen,
            refunds: by_day(&self.refunds),
            refunded_fen: by_day(&self.refunded_fen),
            buyers,
            repeat_buyers,
            repurchase_rate: ratio(repeat_buyers, buyers),
            average_order_fen: ratio(revenue_fen, paid_orders),
        }
    }
}

/// Every figure of every report on `today`, against the brute force.
fn compare_all(a: &Analytics, truth: &Truth, today: NaiveDate, what: &str) {
    let first = truth.first_day();
    // Followers through the end of the history: ranges may reach past `today`.
    let f = truth.facts(today.max(first + Duration::days(HISTORY_DAYS)));
    let ranges = [
        Range::last(1, today),
        Range::last(7, today),
        Range::last(30, today),
        Range {
            from: first,
            to: today,
        },
        Range {
            from: first + Duration::days(10),
            to: first + Duration::days(20),
        },
    ];

    let o = a.overview(today).expect("overview");
    assert_eq!(o.today, f.window(1, today), "{what}: overview today");
    assert_eq!(o.last_7, f.window(7, today), "{what}: overview 7 days");
    assert_eq!(o.last_30, f.window(30, today), "{what}: overview 30 days");
    assert_eq!(
        o.series,
        f.growth(Range::last(30, today), None),
        "{what}: overview series"
    );
    assert!(
        o.last_30.follows > 0 && o.last_30.paid_orders > 0,
        "{what}: a lively history"
    );

    for r in ranges {
        for ch in [None, Some("qr_a"), Some("qr_b"), Some(NO_CHANNEL)] {
            assert_eq!(
                a.growth(r, ch).expect("growth"),
                f.growth(r, ch),
                "{what}: growth {r:?} {ch:?}"
            );
        }
        assert_eq!(
            a.channels(r).expect("channels"),
            f.channels(r),
            "{what}: channels {r:?}"
        );
        assert_eq!(
            a.retention(r, today).expect("retention"),
            f.retention(r, today),
            "{what}: retention {r:?}"
        );
        assert_eq!(
            a.funnel(r).expect("funnel"),
            f.funnel(r),
            "{what}: funnel {r:?}"
        );
        assert_eq!(
            a.sales(r).expect("sales"),
            f.sales(r, truth.tz),
            "{what}: sales {r:?}"
        );
    }
}

/// One seeded history in one time zone: figures right as it is played, after its pushes are
/// written, and after a restart.
async fn story(seed: u64, tz_name: &str, start: NaiveDate) {
    let tz: Tz = tz_name.parse().expect("time zone");
    let dir = tempfile::tempdir().expect("tempdir");
    let events = generate(seed, tz, start, 90);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut driver = Driver::new(tz);
    let last = start + Duration::days(HISTORY_DAYS - 1);
    let (half, rest) = events.split_at(events.len() / 2);
    {
        let gw = gateway(dir.path(), tz_name);
        driver.play(&gw, half, &mut rng).await;
        let mid = local_day(tz, half.last().expect("events").at);
        let truth = Truth {
            tz,
            log: driver.log.clone(),
        };
        compare_all(
            &gw.analytics(),
            &truth,
            mid,
            &format!("{tz_name} seed {seed} midway"),
        );
        driver.play(&gw, rest, &mut rng).await;
        let truth = Truth {
            tz,
            log: driver.log.clone(),
        };
        // Some counts still in memory, some on disk: the reports merge both.
        compare_all(
            &gw.analytics(),
            &truth,
            last,
            &format!("{tz_name} seed {seed}"),
        );
        assert!(driver.retries > 0, "some pushes were retried");
        gw.store().flush().expect("flush");
    }
    let gw = gateway(dir.path(), tz_name);
    let truth = Truth {
        tz,
        log: driver.log.clone(),
    };
    // The cache warmed at start-up gives the same figures.
    gw.analytics().warm(last).expect("warm");
    compare_all(
        &gw.analytics(),
        &truth,
        last,
        &format!("{tz_name} seed {seed} after a restart"),
    );
    // A day later: nothing new, day 30 of late cohorts has come for some.
    compare_all(
        &gw.analytics(),
        &truth,
        last + Duration::days(1),
        &format!("{tz_name} seed {seed} the day after"),
    );
}

#[tokio::test]
async fn every_figure_matches_the_brute_force_in_shanghai() {
    for seed in [1, 2, 3] {
        story(
            seed,
            "Asia/Shanghai",
            NaiveDate::from_ymd_opt(2026, 2, 20).expect("date"),
        )
        .await;
    }
}

/// New York moves its clocks on 8 March 2026: a 23-hour day inside the history.
#[tokio::test]
async fn every_figure_matches_the_brute_force_in_new_york_across_dst() {
    for seed in [11, 12, 13] {
        story(
            seed,
            "America/New_York",
            NaiveDate::from_ymd_opt(2026, 2, 20).expect("date"),
        )
        .await;
    }
}

/// A data dir written before the analytics existed: its followers and buyers are the
/// starting point, counted once at the first open by this version.
#[test]
fn a_data_dir_from_before_the_analytics_starts_from_its_followers_and_buyers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = NaiveDate::from_ymd_opt(2026, 3, 9).expect("date");
    let t = local_midnight(chrono_tz::UTC, day) + 3600;
    {
        let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
        store.touch(&OpenId::new("oOld1"), t, true).expect("touch");
        store
            .on_subscribe(&OpenId::new("oOld2"), Some("qr_a"), t)
            .expect("subscribe");
        store
            .on_subscribe(&OpenId::new("oGone"), None, t)
            .expect("subscribe");
        store
            .on_unsubscribe(&OpenId::new("oGone"), t + 5)
            .expect("unsubscribe");
        let order = |no: &str| Order {
            out_trade_no: no.into(),
            openid: "oOld1".into(),
            article: "art1".into(),
            description: "a".into(),
            amount_fen: 990,
            channel: String::new(),
            state: OrderState::Created,
            created_at: t,
            expires_at: t + 60,
            prepay_id: None,
            transaction_id: None,
            paid_at: None,
            refunded_at: None,
            closed_at: None,
            refunds: Vec::new(),
            anomaly: None,
            updated_at: t,
        };
        store.order_create(&order("NO-old-1"), day).expect("order");
        store
            .order_paid("NO-old-1", "tx1", t + 10, day)
            .expect("paid");
        store.order_create(&order("NO-new-1"), day).expect("order");
        store.flush().expect("flush");
    }
    // What this version adds is taken away: the records, orders and old counters stay.
    {
        let db = raw_sled(dir.path());
        let meta = db.open_tree("meta").expect("meta");
        meta.remove("analytics_baseline").expect("remove mark");
        db.drop_tree("buyers").expect("drop buyers");
        let counters = db.open_tree("counters").expect("counters");
        for kv in counters.iter() {
            let (k, _) = kv.expect("entry");
            let name = String::from_utf8_lossy(&k[11..]).to_string();
            if [
                "follow:",
                "unfollow:",
                "seen_follower:",
                "first_follow:",
                "buyer:",
                "repeat_buyer:",
            ]
            .iter()
            .any(|kind| name.starts_with(kind))
            {
                counters.remove(&k).expect("remove");
            }
        }
        db.flush().expect("flush");
    }
    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
    let a = Analytics::new(store.clone());
    let on = Range { from: day, to: day };
    let g = a.growth(on, None).expect("growth");
    assert_eq!(
        (g[0].follows, g[0].cumulative),
        (0, 2),
        "the two followers are the starting point, not follows"
    );
    assert_eq!(a.growth(on, Some("qr_a")).expect("g")[0].cumulative, 1);
    // The reader who paid before is no new buyer when paying again.
    store
        .order_paid("NO-new-1", "tx2", t + 20, day)
        .expect("paid");
    let s = a.sales(on).expect("sales");
    assert_eq!((s.buyers, s.repeat_buyers), (1, 1));
    // Counted once: a second open adds nothing.
    drop(a);
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen again");
    let g = Analytics::new(store).growth(on, None).expect("growth");
    assert_eq!(g[0].cumulative, 2);
}

/// Raw sled on a dir a dropped `Store` just used (sled lets go of its lock a moment later).
fn raw_sled(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled: {e:?}"),
        }
    }
}

/// The platform retries a push it got no answer to in time: the retry is answered from the
/// dedupe memory and counts nothing again.
#[tokio::test]
async fn a_retried_push_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), "Asia/Shanghai");
    let tz: Tz = "Asia/Shanghai".parse().expect("tz");
    let day = NaiveDate::from_ymd_opt(2026, 3, 9).expect("date");
    let at = local_midnight(tz, day) + 600;
    let now = DateTime::from_timestamp(at, 0).expect("time");
    let mut nonce = 0;
    for (who, rest) in [
        ("oA", "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_qr_a]]></EventKey>"),
        ("oA", "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>77</MsgId>"),
        ("oB", "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event>"),
    ] {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{who}]]></FromUserName><CreateTime>{at}</CreateTime>{rest}</xml>"
        );
        // The push, then the same push again with a new nonce, as the platform retries.
        for _ in 0..2 {
            nonce += 1;
            let (ts, n) = (at.to_string(), nonce.to_string());
            let q = CallbackQuery {
                signature: Some(signature::sign(&[TOKEN, &ts, &n])),
                timestamp: Some(ts),
                nonce: Some(n),
                ..CallbackQuery::default()
            };
            gw.post(&q, xml.as_bytes(), now).await.expect("accepted");
        }
    }
    let o = gw.analytics().overview(day).expect("overview");
    assert_eq!(
        (
            o.today.follows,
            o.today.unfollows,
            o.today.pushes,
            o.today.cumulative
        ),
        (1, 1, 3, 1),
        "one follow, one unfollow (from before mpgate), three pushes, one follower"
    );
}

/// The first activity of a day is a state change written with the count it made: after a
/// crash that kept the count, the day's next message does not count the member again.
#[test]
fn a_crash_after_a_period_does_not_count_a_retained_member_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day0 = NaiveDate::from_ymd_opt(2026, 3, 9).expect("date");
    let t0 = local_midnight(chrono_tz::UTC, day0) + 3600;
    let touch = |store: &Store, at: i64| {
        store
            .touch_on(
                &OpenId::new("oReader"),
                mpgate::store::Touch {
                    at,
                    day: local_day(chrono_tz::UTC, at),
                    user_message: true,
                    active: true,
                },
            )
            .expect("touch");
    };
    {
        let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
        store
            .subscribe_on(&OpenId::new("oReader"), None, t0, day0)
            .expect("subscribe");
        store.write_behind(false).expect("period");
        touch(&store, t0 + DAY);
        // A step of the write-behind (not a full one: activity is not written)...
        store.write_behind(false).expect("period");
        // ...then the process dies: nothing more reaches the disk.
    }
    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
    touch(&store, t0 + DAY + 60);
    let a = Analytics::new(store);
    let rows = a
        .retention(
            Range {
                from: day0,
                to: day0,
            },
            day0 + Duration::days(1),
        )
        .expect("retention");
    assert_eq!(rows[0].day1, Some(1));
}
