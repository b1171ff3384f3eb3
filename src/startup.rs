//! Process wiring: opens the store, loads the rules, binds the listener, registers routes and
//! starts the background jobs (rules watcher, the store's upkeep, idle handoffs, SIGHUP reload).
//!
//! The only module that knows every other one. [`Application::build`] binds its own port, so
//! tests start the real server on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::watch;

use crate::http::metrics::MetricsAccess;
use crate::pipeline::Gateway;
use crate::reload::LiveRules;
use crate::rules::RuleSet;
use crate::settings::Settings;
use crate::store::{Store, StoreConfig};

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    settings: Settings,
    platform: Option<(crate::platform::Outbox, crate::platform::PlatformClient)>,
    /// `/metrics` alone on `MPGATE_METRICS_LISTEN`, and its port.
    metrics_server: Option<(Server, u16)>,
}

impl Application {
    /// Opens state, loads rules, binds `settings.listen` (port 0 = any free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Store::open(
            &settings.data_dir,
            StoreConfig {
                cache_capacity_bytes: settings.cache_capacity_bytes,
                dedupe_retention_secs: settings.dedupe_retention.as_secs() as i64,
                unanswered_days: settings.unanswered_days,
            },
        )
        .with_context(|| format!("cannot open the data dir {}", settings.data_dir.display()))?;
        let keywords = settings.rules_path().with_context(|| {
            format!(
                "cannot write the built-in rules into {}",
                settings.data_dir.display()
            )
        })?;
        if keywords != settings.keywords {
            tracing::warn!(
                path = %keywords.display(),
                "no keywords.toml here and MPGATE_KEYWORDS not set: serving the built-in demo rules"
            );
        }
        let loaded = RuleSet::load(&keywords)
            .map_err(|e| anyhow::anyhow!("{} is not valid:\n{e}", keywords.display()))?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        if loaded.rules.has_assistant() && settings.assistant_api_base.is_none() {
            tracing::warn!("keywords.toml has assistant rules but MPGATE_ASSISTANT_API_BASE is not set: a rule without its own api_base answers with its fallback");
        }
        let rules = LiveRules::new(loaded.rules);
        let link_secret =
            crate::paywall::link_secret(settings.link_secret.as_ref().map(|s| s.expose()), &store)?;
        // The outbound platform API (customer-service messages, late answers) needs the
        // AppSecret; without it mpgate answers passively only.
        let platform =
            match crate::platform::PlatformClient::from_settings(&settings, store.clone()) {
                Ok(client) => Some((crate::platform::Outbox::new(), client)),
                Err(_) => {
                    tracing::info!("MPGATE_APP_SECRET not set: customer-service messages are off");
                    None
                }
            };
        let outbox = platform.as_ref().map(|(o, _)| o.handle(store.clone()));
        let pay = crate::pay::PayConfig::load(&settings)?;
        if let Some(p) = &pay {
            if !p.notify_url.starts_with("https://") {
                tracing::warn!(notify_url = %p.notify_url, "WeChat Pay sends notifications only to https: set MPGATE_PUBLIC_URL to the https address readers reach");
            }
            tracing::info!(mch_id = %p.mch_id, "WeChat Pay is on: priced articles are sold from the paywall page");
        }
        let gateway = Arc::new(
            Gateway::new(&settings, store, rules, link_secret)
                .with_outbox(outbox)
                .with_platform_client(platform.as_ref().map(|(_, c)| c.clone()))
                .with_payments(pay),
        );

        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("MPGATE_LISTEN: cannot bind {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::from(gateway.clone());
        let body_limit = settings.max_body_bytes;
        let admin = web::Data::new(crate::http::admin::AdminToken(settings.admin_token.clone()));
        let dashboard = web::Data::new(crate::http::dashboard::Dashboard::new(&settings));
        let throttle = web::Data::from(dashboard.throttle());
        let body_deadline = crate::http::limits::BodyDeadline(settings.body_timeout);
        let callback_allow = settings.callback_allow.clone().map(web::Data::new);
        let conns = ConnectionCap::new(settings.max_connections);
        check_open_file_limit(&conns);
        let metrics_access = web::Data::new(match &settings.metrics_token {
            Some(t) => MetricsAccess::Bearer(t.clone()),
            None => MetricsAccess::Off,
        });
        let metrics_server = match settings.metrics_listen {
            Some(addr) => Some(metrics_server(addr, data.clone())?),
            None => None,
        };
        let server = HttpServer::new(move || {
            let app = App::new()
                .app_data(data.clone())
                .app_data(admin.clone())
                .app_data(dashboard.clone())
                .app_data(throttle.clone())
                .app_data(metrics_access.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(body_deadline);
            match &callback_allow {
                Some(list) => app.app_data(list.clone()),
                None => app,
            }
            .configure(crate::http::routes)
        })
        .workers(conns.workers)
        .max_connections(conns.per_worker)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        let (shutdown, _) = watch::channel(false);
        let mut settings = settings;
        settings.keywords = keywords;
        Ok(Application {
            port,
            server,
            gateway,
            shutdown,
            settings,
            platform,
            metrics_server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `MPGATE_METRICS_LISTEN` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// Serves until SIGTERM/SIGINT (actix stops accepting and finishes in-flight requests), then
    /// flushes counters and the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            gateway,
            shutdown,
            settings,
            port,
            platform,
            metrics_server,
        } = self;
        tracing::info!(
            port,
            mode = settings.mode(),
            rules_version = gateway.rules().current().version(),
            "mpgate serving /wechat"
        );
        if settings.is_demo {
            tracing::warn!(
                "running with the built-in demo token: set MPGATE_TOKEN (and MPGATE_ENCODING_AES_KEY, MPGATE_APP_ID) before pointing a real account here"
            );
        }
        let mut jobs = spawn_jobs(&gateway, &settings, shutdown.subscribe());
        // The store's upkeep (write-behind, dedupe sweep); awaited with the jobs below, before
        // the final flush.
        jobs.push(gateway.store().spawn_maintenance(shutdown.subscribe())?);
        if let Some((outbox, client)) = platform {
            // Exactly one outbox loop per data dir, or items would be sent twice.
            let outbox = outbox.with_metrics(gateway.metrics().clone());
            jobs.push(tokio::spawn(outbox.run(
                client,
                gateway.store().clone(),
                shutdown.subscribe(),
            )));
        }
        let metrics_server = metrics_server.map(|(s, _)| {
            let handle = s.handle();
            (handle, tokio::spawn(s))
        });
        let result = server.await;
        if let Some((handle, task)) = metrics_server {
            handle.stop(true).await;
            let _ = task.await;
        }
        let _ = shutdown.send(true);
        for j in jobs {
            let _ = j.await;
        }
        final_flush(gateway.store())?;
        tracing::info!("stopped; state flushed");
        result.map_err(Into::into)
    }
}

/// `/metrics` alone, without a token, on `addr` (`MPGATE_METRICS_LISTEN`): one worker, as
/// Prometheus scrapes every few seconds at most.
fn metrics_server(
    addr: std::net::SocketAddr,
    gw: web::Data<Gateway>,
) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("MPGATE_METRICS_LISTEN: cannot bind {addr}"))?;
    let port = listener.local_addr()?.port();
    let open = web::Data::new(MetricsAccess::Open);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(gw.clone())
            .app_data(open.clone())
            .configure(crate::http::metrics::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    tracing::info!(%addr, port, "serving /metrics without a token on MPGATE_METRICS_LISTEN");
    Ok((server, port))
}

/// The last write before exit. A disk that is still failing gets a few more tries; if it stays
/// failing, the error names exactly what is lost with this process, and the exit status is not
/// 0.
fn final_flush(store: &Store) -> anyhow::Result<()> {
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        match store.flush() {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    let lost = store.unwritten();
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    tracing::error!(
        error = %e,
        answers = lost.answers,
        subscriber_records = lost.records,
        counter_increments = lost.counts,
        "stopping without writing the state kept in memory: these are lost"
    );
    anyhow::bail!(
        "could not write the state kept in memory ({e}): {} stored answers, {} subscriber records \
         and {} counter increments are lost",
        lost.answers,
        lost.records,
        lost.counts
    )
}

/// `MPGATE_MAX_CONNECTIONS` spread over actix's workers (its cap is per worker): the total
/// never exceeds the setting, so with fewer connections allowed than cores, fewer workers run.
struct ConnectionCap {
    workers: usize,
    per_worker: usize,
}

impl ConnectionCap {
    fn new(total: usize) -> ConnectionCap {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = cores.min(total).max(1);
        ConnectionCap {
            workers,
            per_worker: (total / workers).max(1),
        }
    }

    fn total(&self) -> usize {
        self.workers * self.per_worker
    }
}

/// Descriptors beyond the connections: the data dir's files, outbound clients, the listener,
/// the runtime's own, stdio.
const OPEN_FILE_MARGIN: u64 = 128;

/// Careful servers raise their soft open-file limit to the hard one when they need more: a
/// server that runs out of descriptors cannot accept the platform's pushes. Logs what it did,
/// and one warning naming both numbers when the limit stays below what the cap needs.
fn check_open_file_limit(conns: &ConnectionCap) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let needed = conns.total() as u64 + OPEN_FILE_MARGIN;
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return;
    }
    // An unlimited hard limit cannot be the soft one for descriptors (the kernel caps it at
    // `fs.nr_open`): ask for what is needed then.
    let target = limit.maximum.unwrap_or(needed);
    let mut have = soft;
    if target > soft {
        let raised = rustix::process::Rlimit {
            current: Some(target),
            ..limit
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                have = target;
                tracing::info!(
                    from = soft,
                    to = target,
                    "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
                );
            }
            Err(e) => tracing::info!(error = %e, soft, target, "cannot raise the open-file limit"),
        }
    }
    if have < needed {
        tracing::warn!(
            open_file_limit = have,
            needed,
            max_connections = conns.total(),
            "the open-file limit ({have}) is below what MPGATE_MAX_CONNECTIONS needs ({needed} = {} connections + {OPEN_FILE_MARGIN} for the data dir and outbound clients): past it new connections fail and pushes go unanswered; raise it (`ulimit -n {needed}`, Docker `--ulimit nofile={needed}:{needed}`, systemd `LimitNOFILE={needed}`) or lower MPGATE_MAX_CONNECTIONS",
            conns.total()
        );
    }
}

fn spawn_jobs(
    gw: &Arc<Gateway>,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut jobs = Vec::new();
    // Rules watcher: the one reloader; SIGHUP (below) only asks it.
    let reload_requests = crate::reload::ReloadRequests::new();
    jobs.push(tokio::spawn(gw.rules().clone().watch_with_requests(
        settings.keywords.clone(),
        Duration::from_millis(500),
        shutdown.clone(),
        reload_requests.clone(),
        Arc::new(gw.store().clone()),
    )));
    // The dashboard's reports keep the days they read in the store; reading a year of them once
    // here keeps that cost off the first page an operator opens after a restart.
    {
        let gw = gw.clone();
        jobs.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let warmed = tokio::task::spawn_blocking(move || {
                gw.analytics().warm(gw.today(chrono::Utc::now()))
            })
            .await;
            match warmed {
                Ok(Ok(())) => tracing::debug!(took = ?started.elapsed(), "reports warmed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "warming the reports failed; the first dashboard page reads them"),
                Err(e) => tracing::warn!(error = %e, "warming the reports stopped"),
            }
        }));
    }
    // Every minute: close idle handoffs. (Expired dedupe keys are the store's upkeep.)
    {
        let gw = gw.clone();
        let mut stop = shutdown.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = chrono::Utc::now().timestamp();
                        match gw.close_idle_handoffs(now) {
                            Ok(n) if n > 0 => tracing::info!(closed = n, "idle handoffs closed"),
                            Ok(_) => {}
                            Err(e) => tracing::error!(error = %e, "handoff sweep failed"),
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        }));
    }
    // Reconciliation: unpaid orders are asked about every 30 s (a notification can be lost).
    if let Some(pay) = gw.payments().cloned() {
        let mut stop = shutdown.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::pay::RECONCILE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = pay.reconcile_once(chrono::Utc::now().timestamp()).await {
                            tracing::error!(error = %e, "reconciliation pass failed");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        }));
    }
    // SIGHUP: ask the watcher to reload now (it orders reloads; see `reload`).
    #[cfg(unix)]
    {
        let mut stop = shutdown;
        jobs.push(tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; file watching still reloads rules");
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading rules");
                        reload_requests.request();
                    }
                    _ = stop.changed() => break,
                }
            }
        }));
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_is_divided_among_workers_and_never_exceeded() {
        for cap in [1, 2, 3, 7, 8, 1024, 1025, 1_000_000] {
            let c = ConnectionCap::new(cap);
            assert!(c.workers >= 1 && c.per_worker >= 1, "{cap}");
            assert!(c.total() <= cap, "{cap}: {} total", c.total());
            // Rounding down loses less than one connection per worker.
            assert!(c.total() + c.workers > cap, "{cap}: {} total", c.total());
        }
    }
}
