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
}

impl Application {
    /// Opens state, loads rules, binds `settings.listen` (port 0 = any free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Store::open(
            &settings.data_dir,
            StoreConfig {
                cache_capacity_bytes: settings.cache_capacity_bytes,
                dedupe_retention_secs: settings.dedupe_retention.as_secs() as i64,
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
        let rules = LiveRules::new(loaded.rules);
        let link_secret = match &settings.link_secret {
            Some(s) => {
                use sha2::Digest;
                sha2::Sha256::digest(s.expose().as_bytes()).into()
            }
            None => store.link_secret()?,
        };
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
        let gateway =
            Arc::new(Gateway::new(&settings, store, rules, link_secret).with_outbox(outbox));

        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("MPGATE_LISTEN: cannot bind {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::from(gateway.clone());
        let body_limit = settings.max_body_bytes;
        let admin = web::Data::new(crate::http::admin::AdminToken(settings.admin_token.clone()));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(admin.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .configure(crate::http::routes)
        })
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
        })
    }

    pub fn port(&self) -> u16 {
        self.port
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
            jobs.push(tokio::spawn(outbox.run(
                client,
                gateway.store().clone(),
                shutdown.subscribe(),
            )));
        }
        let result = server.await;
        let _ = shutdown.send(true);
        for j in jobs {
            let _ = j.await;
        }
        gateway.store().flush()?;
        tracing::info!("stopped; state flushed");
        result.map_err(Into::into)
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
