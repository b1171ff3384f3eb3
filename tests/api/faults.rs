//! Faults that must never eat data silently (issue 16), suffered by the real binary as an
//! operator's host would suffer them: a SIGKILL in the middle of pushes leaves every push fully
//! done or not done at all, and a full disk loses nothing that was acknowledged and heals by
//! itself once space is back.
//!
//! The story in both: subscribers follow the account through the `course2026` QR code; the
//! first-time rule welcomes them and tags them. So each push has effects we can check one by
//! one (the subscriber, their channel, the tag, the `subscribe:course2026` counter) and a
//! stored answer its retry must get.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::admin::ADMIN;
use crate::helpers::*;
use crate::process::{binary, free_port, wait_healthy, Server};

const CHANNEL: &str = "course2026";
/// What the first-time rule of `tests/fixtures/faults/keywords.toml` answers and adds.
const WELCOME: &str = "Welcome to the course!";
const TAG: &str = "course2026-student";

fn rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faults/keywords.toml")
}

/// The server on `data`, logging to `log` (a file: a pipe nobody reads stalls the server).
/// Answers are remembered for an hour, so the last check can retry every push of a long run.
fn start(data: &Path, log: &Path) -> Server {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = binary()
        .arg("serve")
        .env("MPGATE_TOKEN", TOKEN)
        .env("MPGATE_APP_ID", APP_ID)
        .env("MPGATE_ENCODING_AES_KEY", AES_KEY)
        .env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("MPGATE_DATA_DIR", data)
        .env("MPGATE_KEYWORDS", rules())
        .env("MPGATE_ADMIN_TOKEN", ADMIN)
        .env("MPGATE_DEDUPE_RETENTION_SECS", "3600")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mpgate starts");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// SIGTERM, and the exit status once the server is gone (at most 20 s).
async fn terminate(mut server: Server) -> ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigkill(mut server: Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// The server's last warnings and errors (a line per push at info level, and one per admin
/// 404 for the records the tests look up, would drown them).
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(" INFO") && !l.contains("admin request refused"))
        .collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The fault tests load the machine and measure timings and memory: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A first-time follow through the course QR code, as the platform pushes it. Its retries
/// carry the same sender, `CreateTime` and event: the same dedupe key.
#[derive(Clone, Debug)]
struct Follow {
    openid: String,
    xml: String,
}

impl Follow {
    fn new(openid: String) -> Self {
        let xml = event_xml(
            &openid,
            "subscribe",
            &format!(
                "<EventKey><![CDATA[qrscene_{CHANNEL}]]></EventKey>\n<Ticket><![CDATA[gQFaultTicket]]></Ticket>\n"
            ),
            now(),
        );
        Follow { openid, xml }
    }
}

/// What the platform got for one delivery of a push.
#[derive(Clone, Debug)]
struct Delivery {
    status: u16,
    /// The opened reply XML of a 200 (the stored answer a retry must get again).
    plain: Option<String>,
}

impl Delivery {
    fn content(&self) -> Option<String> {
        let plain = self.plain.as_ref()?;
        mpgate::wechat::xml::parse(plain)
            .ok()?
            .child_text("Content")
            .map(str::to_string)
    }
}

/// Delivers `xml` sealed and signed for now; `None` when no answer came (the server is gone).
async fn deliver(client: &reqwest::Client, base: &str, xml: &str) -> Option<Delivery> {
    let s = seal_push(xml, AES_KEY, APP_ID, now(), &nonce());
    let r = client
        .post(format!("{base}/wechat?{}", s.query))
        .body(s.body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let raw = r.text().await.ok()?;
    let plain = (status == 200).then(|| {
        let outer = mpgate::wechat::xml::parse(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
        let enc = outer
            .child_text("Encrypt")
            .unwrap_or_else(|| panic!("a sealed reply: {raw}"));
        cipher(AES_KEY)
            .decrypt(enc, &mpgate::wechat::types::AppId::new(APP_ID))
            .unwrap()
    });
    Some(Delivery { status, plain })
}

/// What a course follower's record says about their follow's effects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Effects {
    /// No record: the follow left no trace.
    None,
    /// Subscribed through the channel, with the tag: all of the follow's effects.
    All,
    /// Anything in between: some effects without the others.
    Part,
}

async fn course_follower(client: &reqwest::Client, base: &str, openid: &str) -> (Effects, String) {
    let r = client
        .get(format!("{base}/admin/subscribers/{openid}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return (Effects::None, "no subscriber record".into());
    }
    assert_eq!(r.status(), 200, "GET /admin/subscribers/{openid}");
    let v: serde_json::Value = r.json().await.unwrap();
    let sub = &v["subscriber"];
    let tagged = sub["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == TAG));
    let all = sub["channel"] == CHANNEL && tagged && sub["subscribed"] == true;
    (
        if all { Effects::All } else { Effects::Part },
        sub.to_string(),
    )
}

/// The `subscribe:course2026` counter summed over the account's days around now.
async fn course_subscribe_count(client: &reqwest::Client, base: &str) -> u64 {
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (
        today - chrono::Duration::days(1),
        today + chrono::Duration::days(1),
    );
    let v: serde_json::Value = client
        .get(format!("{base}/admin/stats?from={from}&to={to}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["days"]
        .as_object()
        .unwrap_or_else(|| panic!("stats: {v}"))
        .values()
        .filter_map(|day| day[format!("subscribe:{CHANNEL}")].as_u64())
        .sum()
}

/// Runs `f` over `items` with `width` of them in flight at once; results in input order.
async fn in_parallel<T, R, F, Fut>(items: Vec<T>, width: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let queue = Arc::new(Mutex::new(
        items.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let f = Arc::new(f);
    let workers: Vec<_> = (0..width)
        .map(|_| {
            let (queue, f) = (queue.clone(), f.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((i, item)) = next else { break };
                    done.push((i, f(item).await));
                }
                done
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

// ── item 3: a SIGKILL leaves every push fully done or not done ─────────────────────────────

/// Kill cycles by default; `MPGATE_CRASH_CYCLES` runs more (the issue saw its faults in about
/// 1 of 15 kills).
const CRASH_CYCLES: usize = 12;
/// Pushes in flight at once while the kill comes.
const IN_FLIGHT: usize = 8;

fn crash_cycles() -> usize {
    std::env::var("MPGATE_CRASH_CYCLES")
        .ok()
        .map(|v| v.parse().expect("MPGATE_CRASH_CYCLES is a number"))
        .unwrap_or(CRASH_CYCLES)
}

/// One push of a kill cycle and what the platform got for it before the kill, if anything.
#[derive(Clone, Debug)]
struct Sent {
    follow: Follow,
    first: Option<Delivery>,
}

/// Streams first-time follows (`IN_FLIGHT` at once) until the server stops answering; returns
/// every push sent, answered or not (a push whose answer was lost is retried all the same).
fn stream_follows(
    client: &reqwest::Client,
    base: &str,
    cycle: usize,
) -> tokio::task::JoinHandle<Vec<Sent>> {
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let (client, base) = (client.clone(), base.to_string());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for i in 0.. {
                    let follow = Follow::new(format!("oCrash-{cycle}-{w}-{i}"));
                    let first = deliver(&client, &base, &follow.xml).await;
                    let gone = first.is_none();
                    sent.push(Sent { follow, first });
                    if gone {
                        break;
                    }
                }
                sent
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut sent = Vec::new();
        for w in workers {
            sent.extend(w.await.unwrap());
        }
        sent
    })
}

/// How a retry after a kill went.
#[derive(Debug)]
enum Retried {
    /// Fully done before the kill: the stored answer came back.
    Stored,
    /// Not done (or not answered) before the kill: handled now, for the first time.
    Handled,
    /// Half done: what the kill left, the follower, and what is wrong.
    Broken(Effects, String, String),
}

/// Retries each push as the platform would: a retry must get the first-time welcome (the
/// stored answer, or a first handling now), and the follower must then have all of the
/// follow's effects.
async fn retry_and_check(client: &reqwest::Client, base: &str, sent: Vec<Sent>) -> Vec<Retried> {
    let (client, base) = (client.clone(), base.to_string());
    in_parallel(sent, IN_FLIGHT, move |Sent { follow, first }| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let (left, record) = course_follower(&client, &base, &follow.openid).await;
            let again = deliver(&client, &base, &follow.xml)
                .await
                .expect("the restarted server answers");
            if again.status != 200 || again.content().as_deref() != Some(WELCOME) {
                return Retried::Broken(
                    left,
                    follow.openid.clone(),
                    format!(
                        "{}: retry got {} {:?} instead of {WELCOME:?}; before it: {record}",
                        follow.openid,
                        again.status,
                        again.content()
                    ),
                );
            }
            let (now, record) = course_follower(&client, &base, &follow.openid).await;
            if now != Effects::All {
                return Retried::Broken(
                    left,
                    follow.openid.clone(),
                    format!("{} after its retry: {record}", follow.openid),
                );
            }
            // Without a first answer to compare with, a welcome to someone whose follow was
            // already done can only be the stored answer: handled again, it says welcome back.
            let stored = match first {
                Some(f) if f.status == 200 => f.plain == again.plain,
                _ => left == Effects::All,
            };
            match (stored, left) {
                (true, Effects::All) => Retried::Stored,
                (false, Effects::None) => Retried::Handled,
                (_, Effects::Part) => Retried::Broken(
                    left,
                    follow.openid.clone(),
                    format!("{}: half done before its retry: {record}", follow.openid),
                ),
                (true, Effects::None) => Retried::Broken(
                    left,
                    follow.openid.clone(),
                    format!(
                        "{}: the stored answer came back without any effect",
                        follow.openid
                    ),
                ),
                (false, _) => Retried::Broken(
                    left,
                    follow.openid.clone(),
                    format!(
                        "{}: effects kept, answer lost: handled twice",
                        follow.openid
                    ),
                ),
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_sigkill_leaves_every_push_fully_done_or_not_done() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("data"), dir.path().join("server.log"));
    let client = client();
    let cycles = crash_cycles();
    let mut every_push: Vec<Sent> = Vec::new();
    let mut after_kills: Vec<Retried> = Vec::new();
    let mut last_cycle: Vec<Sent> = Vec::new();
    for cycle in 0..=cycles {
        let server = start(&data, &log);
        wait_healthy(&server.base).await;
        // The platform retries everything the last kill cut off or answered.
        after_kills.extend(retry_and_check(&client, &server.base, last_cycle).await);
        if cycle == cycles {
            // Once more, every push of the run: a first handling redone in a cycle that was
            // itself killed may have been lost again; after this pass each is done.
            let all = every_push
                .iter()
                .map(|s| Sent {
                    follow: s.follow.clone(),
                    first: None,
                })
                .collect();
            let again = retry_and_check(&client, &server.base, all).await;
            after_kills.extend(
                again
                    .into_iter()
                    .filter(|r| matches!(r, Retried::Broken(..))),
            );
            let stopped = terminate(server).await;
            assert!(stopped.success(), "{stopped:?}\n{}", tail(&log));
            break;
        }
        let stream = stream_follows(&client, &server.base, cycle);
        let kill_after = Duration::from_millis(rand::thread_rng().gen_range(100..1200));
        tokio::time::sleep(kill_after).await;
        sigkill(server);
        last_cycle = stream.await.unwrap();
        // A push handled again answers with a later `CreateTime` than any first answer, so
        // only the stored answer can equal the first one.
        let killed_at = now();
        while now() == killed_at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        every_push.extend(last_cycle.iter().cloned());
    }
    let server = start(&data, &log);
    wait_healthy(&server.base).await;
    let counted = course_subscribe_count(&client, &server.base).await;

    // One line per half-done push: the last pass meets again those the first retries found.
    let mut broken: Vec<(Effects, &str)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut stored, mut handled, mut part, mut answer_lost) = (0, 0, 0, 0);
    for r in &after_kills {
        match r {
            Retried::Stored => stored += 1,
            Retried::Handled => handled += 1,
            Retried::Broken(left, openid, why) => {
                if !seen.insert(openid) {
                    continue;
                }
                match left {
                    Effects::Part => part += 1,
                    Effects::All => answer_lost += 1,
                    Effects::None => {}
                }
                broken.push((*left, why))
            }
        }
    }
    let acknowledged = every_push
        .iter()
        .filter(|s| s.first.as_ref().is_some_and(|d| d.status == 200))
        .count();
    println!(
        "{cycles} kill cycles, {} pushes ({acknowledged} acknowledged before a kill); retries \
         after a kill: {stored} got the stored answer, {handled} were handled for the first \
         time; {} pushes were half done ({part} with part of their effects, \
         {answer_lost} with their effects but not their answer); subscribe:{CHANNEL} = {counted}",
        every_push.len(),
        broken.len()
    );
    assert!(
        acknowledged > cycles * 5,
        "the streams made progress before the kills: {acknowledged}"
    );
    assert!(
        broken.is_empty(),
        "{} pushes were left half done by a kill:\n{}",
        broken.len(),
        // A few of each kind.
        [Effects::Part, Effects::All, Effects::None]
            .iter()
            .flat_map(|kind| broken.iter().filter(move |(k, _)| k == kind).take(4))
            .map(|(_, why)| *why)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        counted,
        every_push.len() as u64,
        "each distinct push is counted exactly once"
    );
}

// ── item 1: a full disk loses nothing acknowledged and heals without a restart ────────────

/// The article the shop grants during the episode.
const ARTICLE: &str = "course2026";
/// How long the disk stays full once the server has said so, pushes streaming all along.
const OUTAGE: Duration = Duration::from_secs(8);
/// What the server may add to its resident memory over that time (generous: pushes are
/// refused then, not held; holding them cost ~1.2 KB each).
const OUTAGE_RSS_GROWTH_KIB: u64 = 8 * 1024;
/// How the OS says ENOSPC; `/healthz` passes the reason on.
const NO_SPACE: &str = "No space left on device";

/// A tmpfs of `size` mounted on `dir` for as long as this lives (needs root).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes `path` until its filesystem has no space left; returns the bytes written.
fn fill_disk(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let mut total = 0;
    for chunk in [1 << 20, 4096] {
        let buf = vec![0x5a; chunk];
        loop {
            match file.write(&buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
    total
}

/// The server's resident memory.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

async fn health(client: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// The shop grants the course to a buyer (who may not follow yet).
async fn grant(client: &reqwest::Client, base: &str, openid: &str) -> (u16, serde_json::Value) {
    let r = client
        .post(format!("{base}/admin/grants"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({
            "openid": openid, "article": ARTICLE, "create": true, "reference": format!("order-{openid}"),
        }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// A follow and a grant the platform and the shop sent during the episode, and when.
struct Pushed {
    follow: Follow,
    at: Instant,
    got: Delivery,
}

struct Granted {
    openid: String,
    at: Instant,
    status: u16,
    body: serde_json::Value,
}

/// The platform (six pushes in flight) and the shop (a grant every 50 ms) at work until
/// `stop` is set.
struct Traffic {
    stop: Arc<std::sync::atomic::AtomicBool>,
    pushed: Arc<Mutex<Vec<Pushed>>>,
    granted: Arc<Mutex<Vec<Granted>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(client: &reqwest::Client, base: &str) -> Traffic {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (pushed, granted) = Default::default();
        let mut t = Traffic {
            stop,
            pushed,
            granted,
            workers: Vec::new(),
        };
        for w in 0..6 {
            let (client, base, stop, pushed) = (
                client.clone(),
                base.to_string(),
                t.stop.clone(),
                t.pushed.clone(),
            );
            t.workers.push(tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let follow = Follow::new(format!("oDisk-{w}-{i}"));
                    let at = Instant::now();
                    let got = deliver(&client, &base, &follow.xml)
                        .await
                        .expect("the server answers");
                    pushed.lock().unwrap().push(Pushed { follow, at, got });
                }
            }));
        }
        let (client, base, stop, granted) = (
            client.clone(),
            base.to_string(),
            t.stop.clone(),
            t.granted.clone(),
        );
        t.workers.push(tokio::spawn(async move {
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let openid = format!("oBuyer-{i}");
                let at = Instant::now();
                let (status, body) = grant(&client, &base, &openid).await;
                granted.lock().unwrap().push(Granted {
                    openid,
                    at,
                    status,
                    body,
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
        t
    }

    fn pushes(&self) -> usize {
        self.pushed.lock().unwrap().len()
    }

    async fn stop(self) -> (Vec<Pushed>, Vec<Granted>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let pushed = std::mem::take(&mut *self.pushed.lock().unwrap());
        let granted = std::mem::take(&mut *self.granted.lock().unwrap());
        (pushed, granted)
    }
}

/// Polls `/healthz` for up to `within` until `done` accepts it; the answer, if it came.
async fn health_until(
    client: &reqwest::Client,
    base: &str,
    within: Duration,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> Result<(Instant, serde_json::Value), (u16, serde_json::Value)> {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = health(client, base).await;
        if done(status, &body) {
            return Ok((Instant::now(), body));
        }
        if Instant::now() > deadline {
            return Err((status, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The data dir on a 24 MiB tmpfs that fills up under traffic. While the store cannot write,
/// `/healthz` says so (503, e.g. `{"status": "unavailable", "store": "not writable: No space
/// left on device (os error 28)"}`), pushes are refused with 503 for the platform to retry
/// (those acknowledged before the failure was seen stay in memory, a bounded amount), grants
/// are never 200; once space is back the store heals by itself; and nothing that got a 200
/// is missing after a graceful stop and a restart.
#[tokio::test]
async fn a_full_disk_loses_nothing_acknowledged_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let _alone = ONE_AT_A_TIME.lock().await;
    let mount_point = dir.path().join("disk");
    let _disk = match Tmpfs::mount(&mount_point, "24m") {
        Ok(disk) => disk,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "skipping the full-disk test: no tmpfs could be mounted ({why}); it needs root"
            );
            return;
        }
        Err(why) => panic!("under CI=true the full-disk test must run (root, tmpfs): {why}"),
    };
    let (data, log) = (mount_point.join("data"), dir.path().join("server.log"));
    let filler = mount_point.join("filler");
    let client = client();
    let server = start(&data, &log);
    wait_healthy(&server.base).await;
    let (pid, base) = (server.child.id(), server.base.clone());
    // Everything the platform and the shop were told was done: it must all be there at the end.
    let mut acked: Vec<(Follow, Delivery)> = Vec::new();
    let mut granted: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    // An ordinary day.
    for i in 0..5 {
        let follow = Follow::new(format!("oBefore-{i}"));
        let got = deliver(&client, &base, &follow.xml).await.unwrap();
        assert_eq!(got.content().as_deref(), Some(WELCOME));
        acked.push((follow, got));
    }
    assert_eq!(grant(&client, &base, "oBuyerBefore").await.0, 200);
    granted.push("oBuyerBefore".into());

    // The disk fills up under traffic.
    let filled = fill_disk(&filler);
    let full_at = Instant::now();
    let traffic = Traffic::start(&client, &base);
    let detected_at =
        match health_until(&client, &base, Duration::from_secs(10), |s, _| s != 200).await {
            Ok((at, body)) => {
                let store = body["store"].as_str().unwrap_or_default();
                let says_why = store.contains("not writable") && store.contains(NO_SPACE);
                if body["status"] != "unavailable" || !says_why {
                    problems.push(format!("/healthz while the disk is full: {body}"));
                }
                at
            }
            Err((status, body)) => {
                problems.push(format!(
                    "/healthz still answers {status} {body} 10 s after the disk filled"
                ));
                full_at + Duration::from_secs(10)
            }
        };
    // The outage goes on; what the server holds must not grow with the pushes it gets.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, pushes_before) = (rss_kib(pid), traffic.pushes());
    tokio::time::sleep(OUTAGE).await;
    let (rss_after, pushes_during) = (rss_kib(pid), traffic.pushes() - pushes_before);
    let (status, body) = health(&client, &base).await;
    if status != 503 {
        problems.push(format!(
            "/healthz at the end of the outage: {status} {body}"
        ));
    }
    let (pushed, shop) = traffic.stop().await;
    let grown = rss_after.saturating_sub(rss_before);
    println!(
        "disk full ({filled} bytes of filler); over {} s of outage {pushes_during} pushes came \
         and the server's RSS went from {rss_before} KiB to {rss_after} KiB (+{grown} KiB)",
        OUTAGE.as_secs()
    );
    if grown > OUTAGE_RSS_GROWTH_KIB {
        problems.push(format!(
            "RSS grew by {grown} KiB over {pushes_during} pushes during the outage (bound \
             {OUTAGE_RSS_GROWTH_KIB} KiB): pushes are held, not refused"
        ));
    }

    // What the platform and the shop were told while the disk was full.
    let mut refused = Vec::new();
    let (mut acked_late, mut acked_early) = (0, 0);
    for p in pushed {
        match p.got.status {
            200 => {
                if p.at > detected_at {
                    acked_late += 1;
                } else {
                    acked_early += 1;
                }
                acked.push((p.follow, p.got));
            }
            503 => refused.push(p.follow),
            other => problems.push(format!("a push during the outage got {other}")),
        }
    }
    if acked_late > 0 {
        problems.push(format!(
            "{acked_late} pushes were acknowledged (200) after the store's failure was (or \
             should have been) seen; they must be refused (503) so that the platform retries them"
        ));
    }
    let mut grants_acked_late = 0;
    for g in shop {
        match g.status {
            200 => {
                grants_acked_late += usize::from(g.at > detected_at);
                granted.push(g.openid);
            }
            500 | 503 if g.body["error"].is_string() => {}
            other => problems.push(format!("a grant during the outage got {other} {}", g.body)),
        }
    }
    if grants_acked_late > 0 {
        problems.push(format!(
            "{grants_acked_late} grants were answered 200 after the store's failure was seen"
        ));
    }

    // Space comes back; the server heals by itself.
    std::fs::remove_file(&filler).unwrap();
    match health_until(&client, &base, Duration::from_secs(10), |s, b| {
        s == 200 && b["status"] == "ok"
    })
    .await
    {
        Ok(_) => {}
        Err((status, body)) => problems.push(format!(
            "/healthz 10 s after space came back: {status} {body}"
        )),
    }
    let (status, body) = grant(&client, &base, "oBuyerAfter").await;
    if status == 200 {
        granted.push("oBuyerAfter".into());
    } else {
        problems.push(format!("a grant after space came back: {status} {body}"));
    }
    // The platform retries what was refused (a sample), and new followers come.
    let retried: Vec<Follow> = refused.iter().take(100).cloned().collect();
    let newcomers = (0..5).map(|i| Follow::new(format!("oAfter-{i}")));
    for follow in retried.into_iter().chain(newcomers) {
        let got = deliver(&client, &base, &follow.xml).await.unwrap();
        if got.status == 200 && got.content().as_deref() == Some(WELCOME) {
            acked.push((follow, got));
        } else {
            problems.push(format!(
                "{} after space came back got {} {:?}",
                follow.openid,
                got.status,
                got.content()
            ));
        }
    }

    // A graceful stop writes everything; after a restart all that was acknowledged is there.
    let stopped = terminate(server).await;
    if !stopped.success() {
        problems.push(format!("SIGTERM after the episode: {stopped:?}"));
    }
    let server = start(&data, &log);
    wait_healthy(&server.base).await;
    let acknowledged = acked.len();
    let (client2, base2) = (client.clone(), server.base.clone());
    let lost: Vec<String> = in_parallel(acked, IN_FLIGHT, move |(follow, first)| {
        let (client, base) = (client2.clone(), base2.clone());
        async move {
            let (effects, record) = course_follower(&client, &base, &follow.openid).await;
            let again = deliver(&client, &base, &follow.xml).await.unwrap();
            if effects != Effects::All {
                Some(format!("{}: {record}", follow.openid))
            } else if again.plain != first.plain {
                Some(format!("{}: its retry got another answer", follow.openid))
            } else {
                None
            }
        }
    })
    .await
    .into_iter()
    .flatten()
    .collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} of {acknowledged} acknowledged pushes lost their effects or stored answer, e.g. {}",
            lost.len(),
            lost[..lost.len().min(3)].join("; ")
        ));
    }
    let v: serde_json::Value = client
        .get(format!(
            "{}/admin/articles/{ARTICLE}/subscribers",
            server.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let present: std::collections::HashSet<&str> = v["entitlements"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .filter_map(|e| e["openid"].as_str())
        .collect();
    let lost_grants: Vec<&String> = granted
        .iter()
        .filter(|o| !present.contains(o.as_str()))
        .collect();
    if !lost_grants.is_empty() {
        problems.push(format!(
            "{} of {} acknowledged grants lost: {lost_grants:?}",
            lost_grants.len(),
            granted.len()
        ));
    }
    println!(
        "{acknowledged} acknowledged pushes checked after the restart ({acked_early} acknowledged \
         during the outage before it was detected), {} grants, {} refused pushes",
        granted.len(),
        refused.len()
    );
    assert!(
        problems.is_empty(),
        "a full disk was not survived:\n- {}\nserver log:\n{}",
        problems.join("\n- "),
        tail(&log)
    );
}
