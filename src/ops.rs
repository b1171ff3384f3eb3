//! Operator jobs on the data dir without HTTP (`mpgate grant|revoke|subscriber|stats`).
//!
//! Each opens the store itself; while the server runs it holds sled's lock on the data dir,
//! so these stop with [`crate::store::StoreError::Locked`] and say to use the admin API.

use chrono::{Duration, NaiveDate, Utc};

use crate::rules::RuleSet;
use crate::settings::Settings;
use crate::store::{GrantOutcome, RevokeOutcome, Store, StoreConfig};
use crate::wechat::types::OpenId;

fn open(s: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(
        &s.data_dir,
        StoreConfig {
            cache_capacity_bytes: s.cache_capacity_bytes,
            dedupe_retention_secs: s.dedupe_retention.as_secs() as i64,
        },
    )?)
}

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

/// An operator's grant, as the admin API and the CLI take it.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    pub openid: &'a OpenId,
    pub article: &'a str,
    /// Who grants (e.g. `"admin"`, `"shop"`, `"cli"`).
    pub source: &'a str,
    /// An order id or similar: a second grant with the same reference changes nothing.
    pub reference: Option<&'a str>,
    /// Grant although mpgate has never seen this openid, creating its subscriber record.
    pub create: bool,
}

/// Why [`grant_entitlement`] refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The openid is unknown and the request did not ask to create it (a typo guard).
    #[error("unknown subscriber `{0}` (never seen by mpgate)")]
    UnknownSubscriber(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The one grant rule, for the admin API and the CLI alike: an openid mpgate has never seen is
/// refused unless the request says `create`; then its subscriber record is created (marked as
/// made by the operator) together with the grant. Both are durable on return. A grant refused
/// for its reference ([`GrantOutcome::ReferenceConflict`]) creates nothing.
pub fn grant_entitlement(
    store: &Store,
    req: &GrantRequest<'_>,
    at: i64,
) -> Result<GrantOutcome, GrantError> {
    let known = store.subscriber(req.openid)?.is_some();
    if !known && !req.create {
        return Err(GrantError::UnknownSubscriber(
            req.openid.as_str().to_owned(),
        ));
    }
    // Grant first: a crash between the two leaves a grant without its record, which the
    // operator's retry (with `create` again) completes, rather than a record without a grant.
    let out = store.grant(req.openid, req.article, req.source, req.reference, at)?;
    if !known && !matches!(out, GrantOutcome::ReferenceConflict(_)) {
        store.create_subscriber_by_operator(req.openid)?;
    }
    Ok(out)
}

pub fn grant(
    s: &Settings,
    openid: &str,
    article: &str,
    source: &str,
    reference: Option<&str>,
    create: bool,
) -> anyhow::Result<String> {
    known_article(s, article)?;
    let store = open(s)?;
    let openid = OpenId::new(openid);
    let req = GrantRequest {
        openid: &openid,
        article,
        source,
        reference,
        create,
    };
    let out = match grant_entitlement(&store, &req, Utc::now().timestamp()) {
        Ok(out) => out,
        Err(e @ GrantError::UnknownSubscriber(_)) => {
            anyhow::bail!("{e}; pass --create to grant anyway and create the subscriber")
        }
        Err(e) => return Err(anyhow::Error::new(e).context("grant failed")),
    };
    Ok(match out {
        GrantOutcome::Granted(e) => format!("granted: {}", serde_json::to_string_pretty(&e)?),
        GrantOutcome::AlreadyGranted(e) => format!(
            "already granted (same reference): {}",
            serde_json::to_string_pretty(&e)?
        ),
        GrantOutcome::ReferenceConflict(e) => anyhow::bail!(
            "reference already used for another grant: {}",
            serde_json::to_string_pretty(&e)?
        ),
    })
}

pub fn revoke(s: &Settings, openid: &str, article: &str) -> anyhow::Result<String> {
    known_article(s, article)?;
    let store = open(s)?;
    Ok(
        match store.revoke(&OpenId::new(openid), article, Utc::now().timestamp())? {
            RevokeOutcome::Revoked(e) => format!("revoked: {}", serde_json::to_string_pretty(&e)?),
            RevokeOutcome::AlreadyRevoked(e) => {
                format!("already revoked: {}", serde_json::to_string_pretty(&e)?)
            }
            RevokeOutcome::NotGranted => {
                "nothing to revoke: no grant for this subscriber and article".to_string()
            }
        },
    )
}

pub fn subscriber(s: &Settings, openid: &str) -> anyhow::Result<String> {
    let store = open(s)?;
    let id = OpenId::new(openid);
    let Some(sub) = store.subscriber(&id)? else {
        anyhow::bail!("no subscriber with openid `{openid}`");
    };
    let ents = store.entitlements_of(&id)?;
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "subscriber": sub,
        "entitlements": ents,
    }))?)
}

pub fn stats(
    s: &Settings,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> anyhow::Result<String> {
    // Counters are kept by the account's date (the rules' time zone), so "today" is that date,
    // as in `GET /admin/stats`, not the UTC one.
    let path = s.rules_path()?;
    let tz = RuleSet::load(&path)
        .map_err(|e| anyhow::anyhow!("{} is not valid:\n{e}", path.display()))?
        .rules
        .timezone();
    let store = open(s)?;
    let to = to.unwrap_or_else(|| Utc::now().with_timezone(&tz).date_naive());
    let from = from.unwrap_or(to - Duration::days(6));
    if from > to {
        anyhow::bail!("--from {from} is after --to {to}");
    }
    Ok(serde_json::to_string_pretty(&store.counters(from, to)?)?)
}

pub fn handoffs(s: &Settings) -> anyhow::Result<String> {
    let store = open(s)?;
    let now = Utc::now().timestamp();
    let mut list = store.handoffs()?;
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
    let store = open(s)?;
    match store.handoff_close(&OpenId::new(openid))? {
        Some(_) => Ok(format!("closed the handoff of {openid}")),
        None => anyhow::bail!("no open or queued handoff for `{openid}`"),
    }
}

pub fn outbox(s: &Settings, state: &str) -> anyhow::Result<String> {
    let filter: crate::store::platform::OutboxFilter = state
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--{e}"))?;
    let store = open(s)?;
    Ok(serde_json::to_string_pretty(&store.outbox_list(filter)?)?)
}
