//! Entitlements: who may read which paid article.
//!
//! Three trees change together in one transaction: `entitlements` (`openid\0article` → JSON
//! record, active or revoked), `entitled_by_article` (`article\0openid`, present exactly for
//! active grants) and `references` (purchase reference → `openid\0article`, making a repeated
//! grant with the same reference an exact no-op). Every write is flushed before returning.
//!
//! The transaction bodies ([`grant_in`], [`revoke_in`]) are shared with the order transitions
//! (`orders`): a payment's grant and a refund's revoke are made in the order's own transaction,
//! by the same code as an operator's.

use std::collections::BTreeMap;

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::{abort, check_part, decode_json, encode_json, join_key, Store, StoreError, TxResult};
use crate::wechat::types::OpenId;

/// One user's access to one article.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entitlement {
    pub openid: String,
    pub article: String,
    /// When the current grant was made (a re-grant after a revoke sets a new time).
    pub granted_at: i64,
    /// Who granted it (e.g. `"admin"`, `"shop"`).
    pub source: String,
    /// The purchase reference of the current grant, if any.
    #[serde(default)]
    pub reference: Option<String>,
    /// Set when access was revoked; cleared by a re-grant.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

impl Entitlement {
    /// Granted and not revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// The result of [`Store::grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    /// A new grant (or a re-grant after a revoke) was recorded.
    Granted(Entitlement),
    /// Nothing changed: the reference was already used for this user and article, or the
    /// entitlement is already active. Carries the stored record (which may be revoked if the
    /// reference's grant was revoked since: replaying an old purchase does not undo a revoke).
    AlreadyGranted(Entitlement),
    /// Nothing changed: the reference was already used for a *different* user or article.
    /// Carries that other entitlement.
    ReferenceConflict(Entitlement),
}

/// The result of [`Store::revoke`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked(Entitlement),
    NotGranted,
    AlreadyRevoked(Entitlement),
}

fn read(tree: &TransactionalTree, key: &[u8]) -> TxResult<Option<Entitlement>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(v) => decode_json("entitlements", &v).map(Some).map_err(abort),
    }
}

/// The three entitlement trees inside a transaction: [`Store::grant`], [`Store::revoke`] and the
/// order transitions (`orders`) run the same [`grant_in`] / [`revoke_in`] over them, so a
/// payment's grant follows exactly the rules of an operator's.
pub(super) struct EntitlementTrees<'a> {
    pub ents: &'a TransactionalTree,
    pub by_article: &'a TransactionalTree,
    pub refs: &'a TransactionalTree,
}

/// The grant, inside a caller's transaction (see [`Store::grant`] for the rules).
pub(super) fn grant_in(
    t: &EntitlementTrees<'_>,
    openid: &str,
    article: &str,
    source: &str,
    reference: Option<&str>,
    at: i64,
) -> TxResult<GrantOutcome> {
    let key = join_key(&[("openid", openid), ("article", article)]).map_err(abort)?;
    let index = join_key(&[("article", article), ("openid", openid)]).map_err(abort)?;
    if let Some(r) = reference {
        check_part("reference", r).map_err(abort)?;
        if let Some(target) = t.refs.get(r.as_bytes())? {
            let existing = read(t.ents, &target)?.ok_or_else(|| {
                abort(StoreError::Corrupt(format!(
                    "reference {r:?} points at a missing entitlement"
                )))
            })?;
            return Ok(if target.as_ref() == key.as_slice() {
                GrantOutcome::AlreadyGranted(existing)
            } else {
                GrantOutcome::ReferenceConflict(existing)
            });
        }
    }
    if let Some(existing) = read(t.ents, &key)? {
        if existing.is_active() {
            // A second purchase of something already owned: remember its reference so its
            // retries stay no-ops, change nothing else.
            if let Some(r) = reference {
                t.refs.insert(r.as_bytes(), key.as_slice())?;
            }
            return Ok(GrantOutcome::AlreadyGranted(existing));
        }
    }
    let ent = Entitlement {
        openid: openid.to_owned(),
        article: article.to_owned(),
        granted_at: at,
        source: source.to_owned(),
        reference: reference.map(str::to_owned),
        revoked_at: None,
    };
    t.ents.insert(key.as_slice(), encode_json(&ent))?;
    t.by_article.insert(index.as_slice(), &[] as &[u8])?;
    if let Some(r) = reference {
        t.refs.insert(r.as_bytes(), key.as_slice())?;
    }
    Ok(GrantOutcome::Granted(ent))
}

/// The revoke, inside a caller's transaction (only the record and the article index change).
pub(super) fn revoke_in(
    ents: &TransactionalTree,
    by_article: &TransactionalTree,
    openid: &str,
    article: &str,
    at: i64,
) -> TxResult<RevokeOutcome> {
    let key = join_key(&[("openid", openid), ("article", article)]).map_err(abort)?;
    let index = join_key(&[("article", article), ("openid", openid)]).map_err(abort)?;
    let Some(mut ent) = read(ents, &key)? else {
        return Ok(RevokeOutcome::NotGranted);
    };
    if !ent.is_active() {
        return Ok(RevokeOutcome::AlreadyRevoked(ent));
    }
    ent.revoked_at = Some(at);
    ents.insert(key.as_slice(), encode_json(&ent))?;
    by_article.remove(index.as_slice())?;
    Ok(RevokeOutcome::Revoked(ent))
}

impl Store {
    /// Grants `openid` access to `article`; durable on return. Idempotent on `reference`.
    pub fn grant(
        &self,
        openid: &OpenId,
        article: &str,
        source: &str,
        reference: Option<&str>,
        at: i64,
    ) -> Result<GrantOutcome, StoreError> {
        // Refused before the transaction too, so a bad key never reaches the backend.
        join_key(&[("openid", openid.as_str()), ("article", article)])?;
        if let Some(r) = reference {
            check_part("reference", r)?;
        }
        let i = self.db()?;
        let outcome = (&i.entitlements, &i.entitled_by_article, &i.references).transaction(
            |(ents, by_article, refs)| {
                let t = EntitlementTrees {
                    ents,
                    by_article,
                    refs,
                };
                grant_in(&t, openid.as_str(), article, source, reference, at)
            },
        )?;
        // Also on the no-op paths: the caller may be retrying because an earlier answer was
        // lost, and must not be told "granted" before the grant is on disk.
        self.sync()?;
        Ok(outcome)
    }

    /// Revokes `openid`'s access to `article`; durable on return.
    pub fn revoke(
        &self,
        openid: &OpenId,
        article: &str,
        at: i64,
    ) -> Result<RevokeOutcome, StoreError> {
        join_key(&[("openid", openid.as_str()), ("article", article)])?;
        let i = self.db()?;
        let outcome =
            (&i.entitlements, &i.entitled_by_article).transaction(|(ents, by_article)| {
                revoke_in(ents, by_article, openid.as_str(), article, at)
            })?;
        self.sync()?;
        Ok(outcome)
    }

    /// The record for `openid` and `article`, active or revoked.
    pub fn entitlement(
        &self,
        openid: &OpenId,
        article: &str,
    ) -> Result<Option<Entitlement>, StoreError> {
        let key = join_key(&[("openid", openid.as_str()), ("article", article)])?;
        self.db()?
            .entitlements
            .get(key)?
            .map(|v| decode_json("entitlements", &v))
            .transpose()
    }

    /// Granted and not revoked.
    pub fn is_entitled(&self, openid: &OpenId, article: &str) -> Result<bool, StoreError> {
        Ok(self
            .entitlement(openid, article)?
            .is_some_and(|e| e.is_active()))
    }

    /// Every entitlement of `openid` (active and revoked), ordered by article.
    pub fn entitlements_of(&self, openid: &OpenId) -> Result<Vec<Entitlement>, StoreError> {
        let mut prefix = join_key(&[("openid", openid.as_str())])?;
        prefix.push(0);
        self.db()?
            .entitlements
            .scan_prefix(prefix)
            .values()
            .map(|v| decode_json("entitlements", &v?))
            .collect()
    }

    /// Active entitlements to `article`, ordered by openid (via the article index).
    pub fn entitled_subscribers(&self, article: &str) -> Result<Vec<Entitlement>, StoreError> {
        let mut prefix = join_key(&[("article", article)])?;
        prefix.push(0);
        let mut out = Vec::new();
        for k in self.db()?.entitled_by_article.scan_prefix(&prefix).keys() {
            let k = k?;
            let openid = std::str::from_utf8(&k[prefix.len()..]).map_err(|_| {
                StoreError::Corrupt("non-utf-8 openid in tree entitled_by_article".into())
            })?;
            let key = join_key(&[("openid", openid), ("article", article)])?;
            match self.db()?.entitlements.get(key)? {
                Some(v) => {
                    let ent: Entitlement = decode_json("entitlements", &v)?;
                    // A revoke may land between reading the index and the record.
                    if ent.is_active() {
                        out.push(ent);
                    }
                }
                None => {
                    return Err(StoreError::Corrupt(
                        "entitled_by_article names a missing entitlement".into(),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// How many active grants each article has (articles with none are absent), from the
    /// `entitled_by_article` index alone. Hot reload asks before it lets a rules file drop an
    /// article subscribers paid for; `mpgate check` asks the same.
    pub fn articles_with_active_grants(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        let mut out = BTreeMap::new();
        for k in self.db()?.entitled_by_article.iter().keys() {
            let k = k?;
            let article = k
                .split(|&b| b == 0)
                .next()
                .and_then(|a| std::str::from_utf8(a).ok())
                .filter(|a| !a.is_empty() && a.len() < k.len())
                .ok_or_else(|| {
                    StoreError::Corrupt("malformed key in tree entitled_by_article".into())
                })?;
            *out.entry(article.to_owned()).or_insert(0) += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[test]
    fn active_grants_are_counted_per_article_and_a_revoke_takes_one_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("open");
        assert!(store
            .articles_with_active_grants()
            .expect("query")
            .is_empty());
        for (who, article) in [("oA", "rust-101"), ("oB", "rust-101"), ("oA", "go-201")] {
            store
                .grant(&OpenId::new(who), article, "test", None, 1)
                .expect("grant");
        }
        store
            .revoke(&OpenId::new("oA"), "go-201", 2)
            .expect("revoke");
        let counts = store.articles_with_active_grants().expect("query");
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![("rust-101".to_string(), 2)]
        );
    }
}
