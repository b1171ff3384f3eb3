//! The edge of the server as a bad day meets it: clients that stall mid-body, more connections
//! than descriptors, peers outside the callback allow-list, settings that would start badly.
//! The process-level stories run the real binary with a low open-file limit set for the child
//! (`ulimit -n` in `sh`, which then `exec`s the server: the limit is the server's own).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The binary under `sh -c 'ulimit …; exec mpgate serve'`, with a clean environment.
fn server_under(ulimit: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("{ulimit} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_mpgate"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("MPGATE_LOG_FORMAT", "json")
        .env("MPGATE_TOKEN", TOKEN)
        .env("MPGATE_APP_ID", APP_ID)
        .env("MPGATE_KEYWORDS", fixture("keywords.toml"));
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running binary, killed when dropped.
struct Running {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = cmd
            .env("MPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("MPGATE_DATA_DIR", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh and mpgate start");
        Running {
            child,
            port,
            _data: data,
        }
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Ok(mut s)) = tokio::time::timeout(
                Duration::from_secs(1),
                TcpStream::connect(("127.0.0.1", self.port)),
            )
            .await
            {
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .await;
                let mut head = [0u8; 12];
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut head)).await
                {
                    if &head == b"HTTP/1.1 200" {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never became healthy");
    }

    /// Kills the server and returns what it logged.
    fn stop_and_read_log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    }

    /// The server's own open-file limit, as the kernel reports it.
    fn open_file_limit(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (nums[0], nums[1])
    }
}

/// A client that sends a push's headers, promises 1000 bytes, sends five, and stalls.
async fn stalled_push(port: u16, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!(
            "POST /wechat?{query} HTTP/1.1\r\nHost: t\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<xml>"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s
}

/// Everything the server sends on `s` until it closes it, or `None` if it has not by `limit`.
async fn answer_and_close(mut s: TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut got)).await {
        Ok(Ok(_)) => Some(String::from_utf8_lossy(&got).into_owned()),
        _ => None,
    }
}

/// A signed plaintext push, sent as the platform sends it; returns the status.
async fn push_now(port: u16) -> reqwest::StatusCode {
    let s = sign_plain(&text_xml("oEdgeUser1", "hello", 42), now(), &nonce());
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{port}/wechat?{}", s.query))
        .header("content-type", "text/xml")
        .body(s.body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the push is answered")
        .status()
}

#[tokio::test]
async fn stalled_bodies_beyond_the_open_file_limit_do_not_stop_the_platforms_pushes() {
    // The server's own descriptors are about 20 plus a few per worker (one per core): this
    // limit leaves room for the cap's 16 connections, and as many stalled clients as the limit
    // would take every descriptor left if the server let them all in and held them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = 40 + 4 * cores;
    let stalled_clients = limit;
    let server = Running::start({
        let mut c = server_under(&format!("ulimit -n {limit}"));
        c.env("MPGATE_MAX_CONNECTIONS", "16")
            .env("MPGATE_BODY_TIMEOUT_MS", "300");
        c
    });
    server.wait_healthy().await;
    let mut stalled = Vec::new();
    for _ in 0..stalled_clients {
        stalled.push(stalled_push(server.port, "signature=x&timestamp=1&nonce=1").await);
    }

    // The stalled clients go through 16 at a time, each cut after 0.3 s and then given actix's
    // 1 s linger to read its 408: the push waits a few such rounds in the accept queue.
    let round = Duration::from_millis(1300);
    let rounds = (stalled_clients / 16 + 1) as u32;
    let started = Instant::now();
    let status = push_now(server.port).await;
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        waited < round * rounds + Duration::from_secs(3),
        "the push waited {waited:?} behind {stalled_clients} stalled clients"
    );

    // Every stalled client was cut with 408 and its connection closed.
    for s in stalled {
        let answer = answer_and_close(s, round * rounds)
            .await
            .expect("a stalled client is cut, not held");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("request body not received within 300 ms"),
            "{answer}"
        );
    }
    let log = server.stop_and_read_log();
    let cut = log
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("request body not received"))
        .count();
    assert_eq!(cut, stalled_clients, "one warn line per cut client:\n{log}");
}

#[tokio::test]
async fn an_open_file_limit_below_the_connection_cap_is_warned_about_once_with_both_numbers() {
    // Soft and hard limit both 256: nothing to raise.
    let server = Running::start(server_under("ulimit -n 256"));
    server.wait_healthy().await;
    let log = server.stop_and_read_log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("open-file limit") && l.contains("\"WARN\""))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    // 1024 connections by default + 128 for the data dir and outbound clients.
    for needed in ["(256)", "1152", "ulimit -n 1152", "--ulimit nofile=1152"] {
        assert!(warnings[0].contains(needed), "{needed}: {}", warnings[0]);
    }
}

#[tokio::test]
async fn a_low_soft_open_file_limit_is_raised_to_the_hard_one_at_start_up() {
    let server = Running::start(server_under("ulimit -Sn 256 && ulimit -Hn 2048"));
    server.wait_healthy().await;
    assert_eq!(server.open_file_limit(), (2048, 2048));
    let log = server.stop_and_read_log();
    assert!(
        log.lines().any(|l| l.contains("raised the open-file limit")
            && l.contains("\"from\":256")
            && l.contains("\"to\":2048")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("open-file limit") && l.contains("\"WARN\"")),
        "2048 covers 1024 connections: no warning\n{log}"
    );
}

#[test]
fn a_cache_of_zero_mb_stops_start_up_with_one_line_and_no_backtrace() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mpgate"))
        .arg("serve")
        .env_clear()
        .env("RUST_BACKTRACE", "1")
        .env("MPGATE_DATA_DIR", data.path())
        .env("MPGATE_KEYWORDS", fixture("keywords.toml"))
        .env("MPGATE_CACHE_MB", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("MPGATE_CACHE_MB"), "{err}");
    assert!(lines[0].contains("between 1 and"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn a_peer_outside_the_callback_allow_list_gets_403_before_its_body_is_read() {
    let app =
        spawn_app(Options::plaintext().env("MPGATE_CALLBACK_ALLOW", "10.0.0.0/8, fd00::/8")).await;
    let reply = app.say("oEdgeUser2", "hello").await;
    assert_eq!(reply.status, 403, "{}", reply.raw);
    assert!(reply.raw.contains("MPGATE_CALLBACK_ALLOW"), "{}", reply.raw);
    let verify = app
        .get("/wechat?signature=x&timestamp=1&nonce=1&echostr=e")
        .await;
    assert_eq!(verify.status(), 403);

    // A stranger that stalls mid-body is refused at once, not after the body deadline.
    let started = Instant::now();
    let s = stalled_push(app.port, "signature=x&timestamp=1&nonce=1").await;
    let answer = answer_and_close(s, Duration::from_secs(3))
        .await
        .expect("refused and closed");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_peer_inside_the_callback_allow_list_gets_the_normal_answer() {
    let app = spawn_app(Options::plaintext().env("MPGATE_CALLBACK_ALLOW", "127.0.0.1/32")).await;
    let reply = app.say("oEdgeUser3", "hello").await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
}

#[tokio::test]
async fn an_admin_request_that_stalls_mid_body_is_cut_with_408() {
    let app = spawn_app(
        Options::plaintext()
            .env("MPGATE_ADMIN_TOKEN", crate::admin::ADMIN)
            .env("MPGATE_BODY_TIMEOUT_MS", "300"),
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(
        format!(
            "POST /admin/grants HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"openid\"",
            crate::admin::ADMIN
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = answer_and_close(s, Duration::from_secs(5))
        .await
        .expect("cut, not held");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}
