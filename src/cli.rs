//! The command line: `serve` (default), the operator's rule tools (`check`, `simulate`,
//! `menu show`) and state tools (`grant`, `revoke`, `subscriber`, `stats`, `unanswered`,
//! `handoffs`, `outbox`, `orders`, `assistant forget`).
//!
//! State tools ([`crate::ops`]) open the store directly. While the server runs it holds the
//! data dir; then, with `MPGATE_ADMIN_TOKEN` set, they go through its admin API
//! (`MPGATE_ADMIN_URL`) and print the same; without a token they stop and say so.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "mpgate",
    version,
    about = "WeChat Official Account callback server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve /wechat (the default). Settings come from mpgate.toml and MPGATE_* variables.
    Serve,
    /// Validate keywords.toml and every template it names. Exit code 0 ok, 1 errors.
    Check {
        /// Path of keywords.toml (default: MPGATE_KEYWORDS or ./keywords.toml).
        path: Option<PathBuf>,
    },
    /// Show which rule a message or event would hit and the reply, without changing state.
    Simulate {
        #[arg(long)]
        keywords: Option<PathBuf>,
        #[arg(long)]
        openid: Option<String>,
        /// An event instead of a text: subscribe, scan, click, …
        #[arg(long)]
        event: Option<String>,
        /// QR scene for subscribe/scan.
        #[arg(long)]
        scene: Option<String>,
        /// Menu key of a CLICK event.
        #[arg(long)]
        click: Option<String>,
        /// Treat a subscribe as the subscriber's first.
        #[arg(long)]
        first_time: bool,
        /// Tags the subscriber already has.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Simulate the text numbered K in `mpgate unanswered`'s list (needs the data dir, or
        /// the running server's admin API).
        #[arg(long, value_name = "K", conflicts_with_all = ["text", "event", "click"])]
        unanswered: Option<usize>,
        /// With --unanswered: the list's days, as in `mpgate unanswered --days`.
        #[arg(long, requires = "unanswered", default_value_t = crate::store::unanswered::LIST_DEFAULT_DAYS)]
        days: u32,
        /// A question for the assistant: which rule answers it and which passages of the
        /// articles would go into the prompt.
        #[arg(long, value_name = "QUESTION", conflicts_with_all = ["text", "event", "click", "unanswered"])]
        assistant: Option<String>,
        /// With --assistant: the reader is entitled to this article (repeatable); its paid
        /// passages may then be used.
        #[arg(long = "entitled", value_name = "ARTICLE")]
        entitled: Vec<String>,
        /// The text the subscriber sends.
        text: Option<String>,
    },
    /// The custom menu.
    Menu {
        #[command(subcommand)]
        action: MenuAction,
    },
    /// Grant a subscriber access to a paid article (after a purchase or as a gift).
    Grant {
        #[arg(long)]
        openid: String,
        #[arg(long)]
        article: String,
        #[arg(long, default_value = "cli")]
        source: String,
        /// An order id or similar; a second grant with the same reference changes nothing.
        #[arg(long)]
        reference: Option<String>,
        /// Grant although mpgate has never seen this openid, creating its subscriber record
        /// (without it an unknown openid is refused: a typo guard).
        #[arg(long)]
        create: bool,
    },
    /// Revoke a subscriber's access to an article (refund).
    Revoke {
        #[arg(long)]
        openid: String,
        #[arg(long)]
        article: String,
    },
    /// Show a subscriber with tags and entitlements.
    Subscriber { openid: String },
    /// Customer-service handoffs: list open and queued ones, or close one.
    Handoffs {
        /// Close the handoff of this subscriber instead of listing.
        #[arg(long)]
        close: Option<String>,
    },
    /// Customer-service messages: pending, failed, sent or all.
    Outbox {
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// WeChat Pay orders, newest first, and payment anomalies (those with no --state or with
    /// --state anomaly). Dates are the account's days of creation, both included.
    #[command(args_conflicts_with_subcommands = true)]
    Orders {
        /// `reconcile`: ask WeChat Pay about unpaid orders now (the server does every 30 s).
        #[command(subcommand)]
        action: Option<OrdersAction>,
        /// created, paid, refunded, closed or anomaly.
        #[arg(long)]
        state: Option<crate::store::OrderState>,
        /// First day (YYYY-MM-DD).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last day (YYYY-MM-DD).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
    },
    /// Exit 0 when the local server answers GET /healthz (for container HEALTHCHECKs).
    Healthcheck,
    /// What subscribers sent that no rule answered, most frequent first: `count  text`, numbered
    /// (`mpgate simulate --unanswered K` takes the text numbered K).
    Unanswered {
        /// The account's last N days (1-366).
        #[arg(long, default_value_t = crate::store::unanswered::LIST_DEFAULT_DAYS)]
        days: u32,
        /// At most M texts (1-1000).
        #[arg(long, default_value_t = crate::store::unanswered::LIST_DEFAULT_LIMIT)]
        limit: usize,
    },
    /// The assistant's memory of subscribers.
    Assistant {
        #[command(subcommand)]
        action: AssistantCommand,
    },
    /// Daily counters over a date range (YYYY-MM-DD; default: the last 7 days).
    Stats {
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrdersAction {
    /// Ask WeChat Pay now about every order still unpaid past MPGATE_PAY_RECONCILE_AFTER_SECS;
    /// apply what it says; close expired unpaid ones.
    Reconcile,
}

#[derive(Subcommand, Debug)]
pub enum AssistantCommand {
    /// Forget what the assistant remembers of a subscriber: their last questions and answers,
    /// and any answer kept for the continue word.
    Forget { openid: String },
}

#[derive(Subcommand, Debug)]
pub enum MenuAction {
    /// Print the JSON body the platform's menu/create API takes.
    Show {
        #[arg(long)]
        keywords: Option<PathBuf>,
    },
    /// Create the menu on the platform (needs MPGATE_APP_ID and MPGATE_APP_SECRET).
    Push {
        #[arg(long)]
        keywords: Option<PathBuf>,
    },
}

fn keywords_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("MPGATE_KEYWORDS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("keywords.toml"))
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// Runs one command; the process exit code is the result.
pub fn run(cli: Cli) -> ExitCode {
    let mut out = std::io::stdout();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Check { path } => code(crate::rules::cli::check(
            &keywords_path(path),
            &crate::ops::grants_for_check(),
            &mut out,
        )),
        Command::Simulate {
            keywords,
            openid,
            event,
            scene,
            click,
            first_time,
            tags,
            unanswered,
            days,
            assistant,
            entitled,
            mut text,
        } => {
            if assistant.is_none() && !entitled.is_empty() {
                // Checked here: clap's `requires` let `--entitled` through alone (as it does `--days`).
                eprintln!("mpgate: --entitled goes with --assistant \"QUESTION\"");
                return ExitCode::from(2);
            }
            if let Some(k) = unanswered {
                let settings = match settings_or_exit() {
                    Ok(s) => s,
                    Err(c) => return c,
                };
                match crate::ops::unanswered_text(&settings, days, k) {
                    Ok(t) => {
                        println!("unanswered text #{k} (last {days} days): {t:?}");
                        text = Some(t);
                    }
                    Err(e) => {
                        eprintln!("mpgate: {e:#}");
                        return ExitCode::from(1);
                    }
                }
            }
            let args = crate::rules::cli::SimulateArgs {
                openid,
                event,
                scene,
                click,
                first_time,
                tags,
                text,
                assistant,
                entitled,
            };
            code(crate::rules::cli::simulate(
                &keywords_path(keywords),
                &args,
                &mut out,
            ))
        }
        Command::Menu {
            action: MenuAction::Show { keywords },
        } => code(crate::rules::cli::menu_show(
            &keywords_path(keywords),
            &mut out,
        )),
        Command::Menu {
            action: MenuAction::Push { keywords },
        } => menu_push(keywords),
        Command::Outbox { state } => state_tool(|s| crate::ops::outbox(s, &state)),
        Command::Grant {
            openid,
            article,
            source,
            reference,
            create,
        } => state_tool(|s| {
            crate::ops::grant(s, &openid, &article, &source, reference.as_deref(), create)
        }),
        Command::Revoke { openid, article } => {
            state_tool(|s| crate::ops::revoke(s, &openid, &article))
        }
        Command::Subscriber { openid } => state_tool(|s| crate::ops::subscriber(s, &openid)),
        Command::Stats { from, to } => state_tool(|s| crate::ops::stats(s, from, to)),
        Command::Unanswered { days, limit } => {
            state_tool(|s| crate::ops::unanswered(s, days, limit))
        }
        Command::Orders {
            action: Some(OrdersAction::Reconcile),
            ..
        } => state_tool(crate::ops::orders_reconcile),
        Command::Orders {
            action: None,
            state,
            from,
            to,
        } => state_tool(|s| crate::ops::orders(s, state, from, to)),
        Command::Assistant {
            action: AssistantCommand::Forget { openid },
        } => state_tool(|s| crate::ops::assistant_forget(s, &openid)),
        Command::Healthcheck => healthcheck(),
        Command::Handoffs { close: None } => state_tool(crate::ops::handoffs),
        Command::Handoffs {
            close: Some(openid),
        } => state_tool(|s| crate::ops::close_handoff(s, &openid)),
    }
}

fn settings_or_exit() -> Result<Settings, ExitCode> {
    Settings::from_env().map_err(|e| {
        eprintln!("mpgate: {e}");
        ExitCode::from(2)
    })
}

fn state_tool(f: impl FnOnce(&Settings) -> anyhow::Result<String>) -> ExitCode {
    let settings = match settings_or_exit() {
        Ok(s) => s,
        Err(c) => return c,
    };
    match f(&settings) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mpgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve() -> ExitCode {
    let settings = match settings_or_exit() {
        Ok(s) => s,
        Err(c) => return c,
    };
    crate::telemetry::init(settings.log_format);
    block_on(true, async {
        let app = crate::startup::Application::build(settings).await?;
        app.run_until_stopped().await?;
        Ok(String::new())
    })
}

/// Runs `fut` on a fresh runtime; prints its summary, or its error chain as one message.
fn block_on(
    multi_thread: bool,
    fut: impl std::future::Future<Output = anyhow::Result<String>>,
) -> ExitCode {
    let built = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpgate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(fut) {
        Ok(summary) => {
            if !summary.is_empty() {
                println!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mpgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A dependency-free probe of `GET /healthz` on the configured listen address.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    let settings = match settings_or_exit() {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut addr = settings.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = || -> std::io::Result<bool> {
        let timeout = std::time::Duration::from_secs(2);
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(buf.starts_with(b"HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("mpgate: /healthz did not answer 200");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("mpgate: cannot reach {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

fn menu_push(keywords: Option<PathBuf>) -> ExitCode {
    let settings = match settings_or_exit() {
        Ok(s) => s,
        Err(c) => return c,
    };
    let path = keywords.unwrap_or_else(|| settings.keywords.clone());
    block_on(false, async move {
        crate::platform::menu_push(&settings, &path).await
    })
}
