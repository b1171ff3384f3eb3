//! Load for `POST /pay/notify` (`scripts/bench/pay-notify.sh`): WeChat Pay's side of the
//! notification, at a steady rate, against a running release server.
//!
//! - `paynotify prepare DATA_DIR N ARTICLE AMOUNT_FEN OUT.tsv`: creates N unpaid orders (one per
//!   reader) in the data dir with the library's store, while the server is NOT running, and
//!   writes `out_trade_no \t openid \t amount_fen` lines.
//! - `paynotify send URL ORDERS.tsv RATE SECS DUP_EVERY`: for SECS seconds sends RATE
//!   `TRANSACTION.SUCCESS` notifications a second (open loop: each on its schedule, whatever
//!   the previous ones are doing), each for the next order, signed with WeChat Pay's test key
//!   and encrypted with the APIv3 key as the platform does; every DUP_EVERY-th notification is
//!   also sent again one second later (the platform's duplicate). Prints p50/p99/max latency of
//!   fresh and duplicate notifications and every answer that is not 204.
//!
//! Keys and ids come from `../shared/conformance/pay` (or `$MPGATE_CONFORMANCE_DIR/pay`); the
//! app id from `MPGATE_APP_ID`, as the server reads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mpgate::pay::crypto::{aead_encrypt, nonce, ApiV3Key, MerchantKey};
use mpgate::store::{Order as StoredOrder, OrderState, Store, StoreConfig};
use serde_json::{json, Value};

fn pay_dir() -> PathBuf {
    match std::env::var_os("MPGATE_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d).join("pay"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/pay"),
    }
}

/// WeChat Pay's side: its signing key, the APIv3 key, the ids.
struct Platform {
    key: MerchantKey,
    apiv3: ApiV3Key,
    serial: String,
    mchid: String,
    appid: String,
}

impl Platform {
    fn load() -> Result<Platform> {
        let dir = pay_dir();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .with_context(|| format!("{}", dir.join(f).display()))
        };
        let v: Value = serde_json::from_str(&read("vectors.json")?)?;
        let s = |k: &str| {
            v["settings"][k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("vectors.json: settings.{k}"))
        };
        Ok(Platform {
            key: MerchantKey::from_pkcs8_pem(&read("platform_private_key.pem")?)?,
            apiv3: ApiV3Key::new(&s("apiv3_key")?)?,
            serial: s("platform_public_key_id")?,
            mchid: s("mchid")?,
            appid: std::env::var("MPGATE_APP_ID").context("MPGATE_APP_ID")?,
        })
    }

    /// A signed, encrypted TRANSACTION.SUCCESS for one order: (headers, body).
    fn notification(&self, seq: u64, order: &Order, now: i64) -> Prepared {
        let transaction = json!({
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": order.out_trade_no,
            "transaction_id": format!("42000026812025{seq:014}"), "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "success_time": "2025-12-02T16:00:04+08:00",
            "payer": {"openid": order.openid},
            "amount": {"total": order.amount_fen, "payer_total": order.amount_fen,
                       "currency": "CNY", "payer_currency": "CNY"}
        });
        let resource_nonce = &nonce()[..12];
        let body = json!({
            "id": format!("EV-bench-{seq}"), "create_time": "2025-12-02T16:00:05+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": aead_encrypt(&self.apiv3, resource_nonce, "transaction",
                                                    transaction.to_string().as_bytes()),
                         "associated_data": "transaction", "nonce": resource_nonce}
        })
        .to_string();
        let header_nonce = nonce();
        let signature = self
            .key
            .sign_base64(format!("{now}\n{header_nonce}\n{body}\n").as_bytes());
        Prepared {
            body,
            signature,
            timestamp: now.to_string(),
            nonce: header_nonce,
        }
    }
}

struct Order {
    out_trade_no: String,
    openid: String,
    amount_fen: u64,
}

struct Prepared {
    body: String,
    signature: String,
    timestamp: String,
    nonce: String,
}

/// N unpaid orders of `article`, one per reader, stored as `POST /pay/orders` stores them.
fn prepare(data: &Path, n: usize, article: &str, amount_fen: u64, out: &Path) -> Result<()> {
    std::fs::create_dir_all(data)?;
    let store = Store::open(data, StoreConfig::default())?;
    let now = chrono::Utc::now();
    let (at, day) = (now.timestamp(), now.date_naive());
    let mut tsv = String::with_capacity(n * 64);
    for i in 0..n {
        let order = StoredOrder {
            out_trade_no: format!("mpgbench{i:012}"),
            openid: format!("oBenchPay{i:019}"),
            article: article.to_owned(),
            description: "bench".to_owned(),
            amount_fen,
            channel: String::new(),
            state: OrderState::Created,
            created_at: at,
            expires_at: at + 1800,
            prepay_id: None,
            transaction_id: None,
            paid_at: None,
            refunded_at: None,
            closed_at: None,
            refunds: Vec::new(),
            anomaly: None,
            updated_at: at,
        };
        store.order_create(&order, day)?;
        tsv.push_str(&format!(
            "{}\t{}\t{amount_fen}\n",
            order.out_trade_no, order.openid
        ));
    }
    store.flush()?;
    std::fs::write(out, tsv).with_context(|| out.display().to_string())?;
    Ok(())
}

fn read_orders(path: &Path) -> Result<Vec<Order>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let (Some(no), Some(openid), Some(amount)) = (f.next(), f.next(), f.next()) else {
                bail!(
                    "{}: not `out_trade_no\\topenid\\tamount_fen`: {l}",
                    path.display()
                );
            };
            Ok(Order {
                out_trade_no: no.to_owned(),
                openid: openid.to_owned(),
                amount_fen: amount.parse().context("amount_fen")?,
            })
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fresh,
    Duplicate,
}

struct Outcome {
    kind: Kind,
    latency: Duration,
    /// Scheduled start → actual start (the client's own lag, to see if it kept the rate).
    late: Duration,
    status: Result<u16, String>,
}

async fn send(url: &str, orders_path: &Path, rate: f64, secs: f64, dup_every: u64) -> Result<()> {
    let platform = Platform::load()?;
    let orders = read_orders(orders_path)?;
    let total = (rate * secs).round() as usize;
    if orders.len() < total {
        bail!(
            "{} orders for {total} notifications: prepare more",
            orders.len()
        );
    }
    let now = chrono::Utc::now().timestamp();
    // Signed up front, so the client's RSA does not share the schedule with the sends.
    let prepared: Vec<Arc<Prepared>> = orders[..total]
        .iter()
        .enumerate()
        .map(|(i, o)| Arc::new(platform.notification(i as u64, o, now)))
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url: Arc<str> = Arc::from(url);
    let serial: Arc<str> = Arc::from(platform.serial.as_str());
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut schedule: Vec<(Duration, usize, Kind)> = Vec::with_capacity(total * 2);
    for i in 0..total {
        let at = period * u32::try_from(i)?;
        schedule.push((at, i, Kind::Fresh));
        if dup_every > 0 && (i as u64).is_multiple_of(dup_every) {
            schedule.push((at + Duration::from_secs(1), i, Kind::Duplicate));
        }
    }
    schedule.sort_by_key(|&(at, i, _)| (at, i));
    let mut tasks = Vec::with_capacity(schedule.len());
    for (at, i, kind) in schedule {
        let when = start + at;
        tokio::time::sleep_until(when).await;
        let (client, url, serial) = (client.clone(), url.clone(), serial.clone());
        let p = prepared[i].clone();
        tasks.push(tokio::spawn(async move {
            let t0 = tokio::time::Instant::now();
            let late = t0.saturating_duration_since(when);
            let answer = client
                .post(&*url)
                .header("Content-Type", "application/json")
                .header("Wechatpay-Serial", &*serial)
                .header("Wechatpay-Signature", &p.signature)
                .header("Wechatpay-Timestamp", &p.timestamp)
                .header("Wechatpay-Nonce", &p.nonce)
                .header("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
                .body(p.body.clone())
                .send()
                .await;
            let status = match answer {
                Ok(r) => {
                    let code = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if code == 204 && text.is_empty() {
                        Ok(code)
                    } else {
                        Err(format!("{code} {text}"))
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            Outcome {
                kind,
                latency: t0.elapsed(),
                late,
                status,
            }
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    let wall = start.elapsed();
    report(&outcomes, rate, wall);
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(outcomes: &[Outcome], rate: f64, wall: Duration) {
    for (kind, name) in [(Kind::Fresh, "fresh"), (Kind::Duplicate, "duplicate")] {
        let these: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind).collect();
        let mut lat: Vec<Duration> = these.iter().map(|o| o.latency).collect();
        lat.sort();
        let errors = these.iter().filter(|o| o.status.is_err()).count();
        println!(
            "rate {rate}/s {name:<9} n={:<6} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {errors}",
            these.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        );
    }
    let max_late = outcomes.iter().map(|o| o.late).max().unwrap_or_default();
    println!(
        "rate {rate}/s sent {} in {:.1} s; the client started each at most {:.1} ms late",
        outcomes.len(),
        wall.as_secs_f64(),
        max_late.as_secs_f64() * 1e3
    );
    let mut shown = 0;
    for o in outcomes {
        if let Err(e) = &o.status {
            if shown < 5 {
                println!("  error: {e}");
            }
            shown += 1;
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "prepare", data, n, article, amount, out] => {
            prepare(Path::new(data), n.parse()?, article, amount.parse()?, Path::new(out))
        }
        [_, "send", url, orders, rate, secs, dup_every] => {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?
                .block_on(send(
                    url,
                    Path::new(orders),
                    rate.parse()?,
                    secs.parse()?,
                    dup_every.parse()?,
                ))
        }
        _ => Err(anyhow!(
            "usage: paynotify prepare DATA_DIR N ARTICLE AMOUNT_FEN OUT.tsv\n       paynotify send URL ORDERS.tsv RATE SECS DUP_EVERY"
        )),
    }
}
