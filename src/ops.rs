//! Operator jobs (`mpgate grant|revoke|subscriber|stats|unanswered|handoffs|outbox|orders|assistant`), on the data dir through
//! the same service the admin API uses ([`crate::operator`]).
//!
//! Each command opens the store itself. While the server runs it holds the data dir's lock
//! ([`crate::store::StoreError::Locked`]); then, with `MPGATE_ADMIN_TOKEN` set, the command goes
//! through the running server's admin API (`MPGATE_ADMIN_URL`) and prints what the direct path
//! prints; without a token it stops and says so. May depend on the store, the rules (for
//! article ids and the account's time zone), settings and reqwest.

use anyhow::Context;
use chrono::{Duration, NaiveDate, Utc};

use crate::operator::{GrantError, GrantRequest, Operator, OrdersQuery, OrdersView};
use crate::rules::RuleSet;
use crate::settings::Settings;
use crate::store::{
    Entitlement, GrantOutcome, HandoffSession, OrderState, RevokeOutcome, Store, StoreConfig,
    StoreError,
};
use crate::wechat::types::OpenId;

/// Article ids come from keywords.toml: refuse ids it does not declare.
fn known_article(s: &Settings, article: &str) -> anyhow::Result<()> {
    let path = s.rules_path()?;
    let loaded = RuleSet::load(&path)
        .map_err(|e| anyhow::anyhow!("{} is not valid:\n{e}", path.display()))?;
    if loaded.rules.article(article).is_none() {
        let known: Vec<&str> = loaded
            .rules
            .articles()
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        anyhow::bail!(
            "unknown article `{article}` (declared in {}: {})",
            s.keywords.display(),
            known.join(", ")
        );
    }
    Ok(())
}

/// An openid given on the command line, parsed at the edge.
fn parse_openid(v: &str) -> anyhow::Result<OpenId> {
    OpenId::parse(v).map_err(|e| {
        anyhow::anyhow!("openid `{v}` {e} (an openid is 1-64 characters of A-Z a-z 0-9 - _)")
    })
}

/// Where a command runs: on the data dir itself, or through the running server that holds it.
enum Target {
    Local(Store),
    Remote(AdminClient),
}

fn target(s: &Settings) -> anyhow::Result<Target> {
    match open_store(s) {
        Ok(store) => Ok(Target::Local(store)),
        Err(e @ StoreError::Locked { .. }) => match &s.admin_token {
            Some(token) => Ok(Target::Remote(AdminClient::new(
                &s.admin_url,
                token.expose(),
            )?)),
            None => Err(anyhow::anyhow!(
                "{e}\n(the server holds the data dir; set MPGATE_ADMIN_TOKEN to go through its admin API at {}, or use the admin API)",
                s.admin_url
            )),
        },
        Err(e) => Err(e.into()),
    }
}

fn open_store(s: &Settings) -> Result<Store, StoreError> {
    Store::open(
        &s.data_dir,
        StoreConfig {
            cache_capacity_bytes: s.cache_capacity_bytes,
            dedupe_retention_secs: s.dedupe_retention.as_secs() as i64,
            unanswered_days: s.unanswered_days,
        },
    )
}

/// A blocking client of the running server's admin API (the commands are synchronous).
struct AdminClient {
    base: reqwest::Url,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// An admin API answer: its status and JSON body (`{"error": …}` when refused).
struct Answer {
    status: u16,
    body: serde_json::Value,
}

impl Answer {
    /// The server's short reason for a refusal.
    fn error(&self) -> String {
        self.body["error"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status), str::to_owned)
    }

    /// The body of a 200, else the server's reason as the error.
    fn ok(self) -> anyhow::Result<serde_json::Value> {
        if self.status == 200 {
            Ok(self.body)
        } else {
            Err(anyhow::anyhow!("the server refused: {}", self.error()))
        }
    }
}

impl AdminClient {
    fn new(base: &str, token: &str) -> anyhow::Result<AdminClient> {
        Ok(AdminClient {
            base: reqwest::Url::parse(base)
                .with_context(|| format!("MPGATE_ADMIN_URL `{base}` is not a URL"))?,
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// `/admin/<segments…>`, each segment escaped (openids are operator input).
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<reqwest::Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("MPGATE_ADMIN_URL `{}` cannot take a path", self.base))?
            .pop_if_empty()
            .push("admin")
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        self.rt.block_on(async {
            let r = req
                .bearer_auth(&self.token)
                .send()
                .await
                .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
            let status = r.status().as_u16();
            let body = r.json().await.unwrap_or(serde_json::Value::Null);
            Ok(Answer { status, body })
        })
    }

    fn get(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Answer> {
        self.send(self.http.get(self.url(segments, query)?))
    }

    fn post(&self, segments: &[&str], body: serde_json::Value) -> anyhow::Result<Answer> {
        self.send(self.http.post(self.url(segments, &[])?).json(&body))
    }

    fn delete(&self, segments: &[&str]) -> anyhow::Result<Answer> {
        self.send(self.http.delete(self.url(segments, &[])?))
    }
}

fn pretty(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

fn entitlement(v: &serde_json::Value) -> anyhow::Result<Entitlement> {
    serde_json::from_value(v["entitlement"].clone())
        .context("the server's answer has no entitlement")
}

const CREATE_HINT: &str = "pass --create to grant anyway and create the subscriber";

pub fn grant(
    s: &Settings,
    openid: &str,
    article: &str,
    source: &str,
    reference: Option<&str>,
    create: bool,
) -> anyhow::Result<String> {
    known_article(s, article)?;
    let out = match target(s)? {
        Target::Local(store) => {
            let openid = parse_openid(openid)?;
            let req = GrantRequest {
                openid: &openid,
                article,
                source,
                reference,
                create,
            };
            match Operator::new(store).grant(&req, Utc::now().timestamp()) {
                Ok(out) => out,
                Err(e @ GrantError::UnknownSubscriber(_)) => anyhow::bail!("{e}; {CREATE_HINT}"),
                Err(e) => return Err(anyhow::Error::new(e).context("grant failed")),
            }
        }
        Target::Remote(api) => {
            let a = api.post(
                &["grants"],
                serde_json::json!({
                    "openid": openid, "article": article, "source": source,
                    "reference": reference, "create": create,
                }),
            )?;
            match a.status {
                // The server's 404 names an unknown subscriber (the article was checked above).
                404 => anyhow::bail!("{}; {CREATE_HINT}", a.error()),
                409 => anyhow::bail!("reference already used for another grant: {}", a.error()),
                _ => {}
            }
            let v = a.ok()?;
            let e = entitlement(&v)?;
            if v["status"] == "granted" {
                GrantOutcome::Granted(e)
            } else {
                GrantOutcome::AlreadyGranted(e)
            }
        }
    };
    Ok(match out {
        GrantOutcome::Granted(e) => format!("granted: {}", pretty(&e)?),
        GrantOutcome::AlreadyGranted(e) => {
            format!("already granted (same reference): {}", pretty(&e)?)
        }
        GrantOutcome::ReferenceConflict(e) => {
            anyhow::bail!("reference already used for another grant: {}", pretty(&e)?)
        }
    })
}

pub fn revoke(s: &Settings, openid: &str, article: &str) -> anyhow::Result<String> {
    known_article(s, article)?;
    let out = match target(s)? {
        Target::Local(store) => {
            Operator::new(store).revoke(&parse_openid(openid)?, article, Utc::now().timestamp())?
        }
        Target::Remote(api) => {
            let a = api.post(
                &["revocations"],
                serde_json::json!({"openid": openid, "article": article}),
            )?;
            // The article was checked above: a 404 means no grant to revoke.
            if a.status == 404 {
                RevokeOutcome::NotGranted
            } else {
                let v = a.ok()?;
                let e = entitlement(&v)?;
                if v["status"] == "revoked" {
                    RevokeOutcome::Revoked(e)
                } else {
                    RevokeOutcome::AlreadyRevoked(e)
                }
            }
        }
    };
    Ok(match out {
        RevokeOutcome::Revoked(e) => format!("revoked: {}", pretty(&e)?),
        RevokeOutcome::AlreadyRevoked(e) => format!("already revoked: {}", pretty(&e)?),
        RevokeOutcome::NotGranted => {
            "nothing to revoke: no grant for this subscriber and article".to_string()
        }
    })
}

pub fn subscriber(s: &Settings, openid: &str) -> anyhow::Result<String> {
    let found = match target(s)? {
        Target::Local(store) => {
            let id = parse_openid(openid)?;
            Operator::new(store)
                .subscriber(&id)?
                .map(serde_json::to_value)
                .transpose()?
        }
        Target::Remote(api) => {
            let a = api.get(&["subscribers", openid], &[])?;
            if a.status == 404 {
                None
            } else {
                Some(a.ok()?)
            }
        }
    };
    match found {
        Some(v) => pretty(&v),
        None => anyhow::bail!("no subscriber with openid `{openid}`"),
    }
}

/// The account's time zone (the rules'): counters and order listings go by its days.
fn load_rules(s: &Settings) -> anyhow::Result<RuleSet> {
    let path = s.rules_path()?;
    Ok(RuleSet::load(&path)
        .map_err(|e| anyhow::anyhow!("{} is not valid:\n{e}", path.display()))?
        .rules)
}

fn account_tz(s: &Settings) -> anyhow::Result<chrono_tz::Tz> {
    Ok(load_rules(s)?.timezone())
}

pub fn stats(
    s: &Settings,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> anyhow::Result<String> {
    // Counters are kept by the account's date (the rules' time zone), so "today" is that date,
    // as in `GET /admin/stats`, not the UTC one.
    let tz = account_tz(s)?;
    let to = to.unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive());
    let from = from.unwrap_or(to - Duration::days(6));
    if from > to {
        anyhow::bail!("--from {from} is after --to {to}");
    }
    match target(s)? {
        Target::Local(store) => pretty(&Operator::new(store).counters(from, to)?),
        Target::Remote(api) => {
            let v = api
                .get(
                    &["stats"],
                    &[("from", from.to_string()), ("to", to.to_string())],
                )?
                .ok()?;
            pretty(&v["days"])
        }
    }
}

/// One line of the unanswered list, as both paths read it.
struct UnansweredLine {
    text: String,
    count: u64,
}

/// The texts no rule answered over the account's last `days` days, most frequent first, at
/// most `limit`: from the data dir, or through the running server (`GET /admin/unanswered`).
fn unanswered_list(s: &Settings, days: u32, limit: usize) -> anyhow::Result<Vec<UnansweredLine>> {
    use crate::store::unanswered as list;
    if !(1..=list::LIST_MAX_DAYS).contains(&days) {
        anyhow::bail!("--days must be between 1 and {}", list::LIST_MAX_DAYS);
    }
    if !(1..=list::LIST_MAX_LIMIT).contains(&limit) {
        anyhow::bail!("--limit must be between 1 and {}", list::LIST_MAX_LIMIT);
    }
    match target(s)? {
        Target::Local(store) => {
            // Counted by the account's date, as the server does.
            let today = Utc::now().with_timezone(&account_tz(s)?).date_naive();
            let range = crate::analytics::Range::last(days, today);
            Ok(crate::analytics::Analytics::new(store)
                .unanswered(range, limit)?
                .into_iter()
                .map(|u| UnansweredLine {
                    text: u.text,
                    count: u.count,
                })
                .collect())
        }
        Target::Remote(api) => {
            let v = api
                .get(
                    &["unanswered"],
                    &[("days", days.to_string()), ("limit", limit.to_string())],
                )?
                .ok()?;
            let bad = || anyhow::anyhow!("the server's answer is not an unanswered list");
            v["texts"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|t| {
                    Ok(UnansweredLine {
                        text: t["text"].as_str().ok_or_else(bad)?.to_string(),
                        count: t["count"].as_u64().ok_or_else(bad)?,
                    })
                })
                .collect()
        }
    }
}

/// A text as one line of a terminal: control characters (a newline a subscriber typed) escaped.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `mpgate unanswered`: a numbered list, `count  text`, most frequent first; the number is what
/// `mpgate simulate --unanswered K` takes.
pub fn unanswered(s: &Settings, days: u32, limit: usize) -> anyhow::Result<String> {
    let lines = unanswered_list(s, days, limit)?;
    let when = if days == 1 {
        "today".to_string()
    } else {
        format!("in the last {days} days")
    };
    if lines.is_empty() {
        return Ok(format!("no unanswered texts {when}"));
    }
    let width = lines.first().map_or(1, |l| l.count.to_string().len());
    let mut out = format!("texts no rule answered {when}, most frequent first:\n");
    for (i, l) in lines.iter().enumerate() {
        out.push_str(&format!(
            "{:>3}. {:>width$}  {}\n",
            i + 1,
            l.count,
            one_line(&l.text)
        ));
    }
    Ok(out.trim_end().to_string())
}

/// The text numbered `k` in `mpgate unanswered --days <days>`'s list, for the simulator.
pub fn unanswered_text(s: &Settings, days: u32, k: usize) -> anyhow::Result<String> {
    use crate::store::unanswered as list;
    if !(1..=list::LIST_MAX_LIMIT).contains(&k) {
        anyhow::bail!(
            "--unanswered must be between 1 and {}",
            list::LIST_MAX_LIMIT
        );
    }
    // Most frequent first, ties by text: the first k of any longer list are these k.
    let lines = unanswered_list(s, days, k)?;
    let Some(line) = lines.get(k - 1) else {
        anyhow::bail!(
            "`mpgate unanswered --days {days}` lists {} text(s); there is no number {k}",
            lines.len()
        );
    };
    if line.text == list::OTHER {
        anyhow::bail!(
            "number {k} is {}: texts past {} different ones a day, counted together; pick another",
            list::OTHER,
            list::MAX_TEXTS_PER_DAY
        );
    }
    Ok(line.text.clone())
}

pub fn handoffs(s: &Settings) -> anyhow::Result<String> {
    let mut list: Vec<HandoffSession> = match target(s)? {
        Target::Local(store) => store.handoffs()?,
        Target::Remote(api) => {
            let v = api.get(&["handoffs"], &[])?.ok()?;
            v["handoffs"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| serde_json::from_value(i["session"].clone()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default()
        }
    };
    let now = Utc::now().timestamp();
    list.sort_by_key(|h| h.opened_at);
    if list.is_empty() {
        return Ok("no open or queued handoffs".to_string());
    }
    let mut out = String::new();
    for h in list {
        let state = match &h.state {
            crate::store::HandoffState::Queued => "queued".to_string(),
            crate::store::HandoffState::Open => "open".to_string(),
            crate::store::HandoffState::Taken { kf_account } => format!("taken by {kf_account}"),
        };
        out.push_str(&format!(
            "{}  {state}  waiting {}m  idle {}m  (rule {})\n",
            h.openid,
            (now - h.opened_at) / 60,
            (now - h.last_activity) / 60,
            h.rule
        ));
    }
    Ok(out.trim_end().to_string())
}

pub fn close_handoff(s: &Settings, openid: &str) -> anyhow::Result<String> {
    let closed = match target(s)? {
        Target::Local(store) => {
            let closed = store.handoff_close(&parse_openid(openid)?)?.is_some();
            // Written behind: on disk before the command says so.
            store.flush()?;
            closed
        }
        Target::Remote(api) => {
            let a = api.post(&["handoffs", openid, "close"], serde_json::json!({}))?;
            if a.status == 404 {
                false
            } else {
                a.ok()?;
                true
            }
        }
    };
    if closed {
        Ok(format!("closed the handoff of {openid}"))
    } else {
        anyhow::bail!("no open or queued handoff for `{openid}`")
    }
}

/// `mpgate assistant forget OPENID`: forgets what the assistant remembers of a subscriber (their
/// last turns and an answer kept for the continue word), on the data dir or through the
/// running server (`DELETE /admin/subscribers/{openid}/assistant`).
pub fn assistant_forget(s: &Settings, openid: &str) -> anyhow::Result<String> {
    let id = parse_openid(openid)?;
    let forgot = match target(s)? {
        Target::Local(store) => Operator::new(store).assistant_forget(&id)?,
        Target::Remote(api) => {
            let v = api
                .delete(&["subscribers", id.as_str(), "assistant"])?
                .ok()?;
            v["forgot"]
                .as_bool()
                .context("the server's answer does not say whether it forgot")?
        }
    };
    Ok(if forgot {
        format!("forgot what the assistant remembered of {openid}")
    } else {
        format!("the assistant remembered nothing of {openid}")
    })
}

pub fn outbox(s: &Settings, state: &str) -> anyhow::Result<String> {
    let filter: crate::store::platform::OutboxFilter = state
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--{e}"))?;
    match target(s)? {
        Target::Local(store) => pretty(&Operator::new(store).outbox(filter)?),
        Target::Remote(api) => {
            let v = api
                .get(&["outbox"], &[("state", state.to_string())])?
                .ok()?;
            pretty(&v["items"])
        }
    }
}

/// Orders (newest first) and payment anomalies, by state and by the account's days of creation
/// (`from` and `to` included, either open).
pub fn orders(
    s: &Settings,
    state: Option<OrderState>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> anyhow::Result<String> {
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            anyhow::bail!("--from {from} is after --to {to}");
        }
    }
    match target(s)? {
        Target::Local(store) => pretty(&Operator::new(store).orders(&OrdersQuery {
            state,
            from,
            to,
            tz: account_tz(s)?,
        })?),
        Target::Remote(api) => {
            let mut query = Vec::new();
            if let Some(state) = state {
                query.push(("state", state.as_str().to_string()));
            }
            query.extend(from.map(|d| ("from", d.to_string())));
            query.extend(to.map(|d| ("to", d.to_string())));
            let v = api.get(&["orders"], &query)?.ok()?;
            // Read back as the local path's type: both print exactly the same.
            let view: OrdersView =
                serde_json::from_value(v).context("the server's answer is not an order listing")?;
            pretty(&view)
        }
    }
}

/// `mpgate orders reconcile`: one reconciliation pass now, in this process on the data dir, or
/// through the running server's admin API.
pub fn orders_reconcile(s: &Settings) -> anyhow::Result<String> {
    let Some(cfg) = crate::pay::PayConfig::load(s)? else {
        anyhow::bail!(
            "payments are not configured (MPGATE_PAY_MCH_ID and the other MPGATE_PAY_* settings)"
        );
    };
    match target(s)? {
        Target::Local(store) => {
            let rules = load_rules(s)?;
            let secret =
                crate::paywall::link_secret(s.link_secret.as_ref().map(|x| x.expose()), &store)?;
            let paywall = crate::paywall::Paywall::new(
                store.clone(),
                crate::paywall::LinkSigner::new(secret),
                s.public_url.clone(),
                s.link_ttl,
            )
            .selling(true);
            let pay = crate::pay::Payments::new(
                cfg,
                store.clone(),
                paywall,
                crate::reload::LiveRules::new(rules),
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(pay.reconcile_once(Utc::now().timestamp()))?;
            store.flush()?;
            pretty(&report)
        }
        Target::Remote(api) => pretty(
            &api.post(&["orders", "reconcile"], serde_json::json!({}))?
                .ok()?,
        ),
    }
}

/// `mpgate check`'s look at the data dir: active grants per article, or why they were not read.
/// Never creates a data dir (without one there are no grants). While the server runs it holds the dir; its own reload guard
/// checks the same, so `check` only says it skipped.
pub fn grants_for_check() -> crate::rules::cli::GrantsSeen {
    use crate::rules::cli::GrantsSeen;
    let s = match settings_as_they_are() {
        Ok(s) => s,
        Err(e) => return GrantsSeen::Skipped(format!("the settings are not valid ({e})")),
    };
    // No data dir (or an empty one): nobody holds a grant, and none is created here.
    let in_use = std::fs::read_dir(&s.data_dir).is_ok_and(|mut d| d.next().is_some());
    if !in_use {
        return GrantsSeen::Known(Default::default());
    }
    match open_store(&s).and_then(|store| store.articles_with_active_grants()) {
        Ok(counts) => GrantsSeen::Known(counts),
        Err(StoreError::Locked { .. }) => GrantsSeen::Skipped(format!(
            "the running server holds the data dir {} (it refuses a reload that drops an article with active grants, and logs why)",
            s.data_dir.display()
        )),
        Err(e) => GrantsSeen::Skipped(format!("cannot read {}: {e}", s.data_dir.display())),
    }
}

/// The settings as `Settings::from_env` merges them (`MPGATE_CONFIG` or ./mpgate.toml, then
/// `MPGATE_*`), without its data dir check, which creates the dir: `check` only reads.
fn settings_as_they_are() -> anyhow::Result<Settings> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MPGATE_"))
        .collect();
    let file = match env.get("MPGATE_CONFIG") {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => Some(std::path::PathBuf::from("mpgate.toml")).filter(|p| p.exists()),
    };
    let src = match &file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("MPGATE_CONFIG: cannot read {}", p.display()))?,
        ),
        None => None,
    };
    let merged = file.as_deref().zip(src.as_deref());
    Ok(Settings::from_sources(merged, &env)?)
}
