//! Paid articles: who may read what, and the links that prove it.
//!
//! - [`link`]: signed article links (pure: no store, no clock).
//! - [`Paywall`]: the one access decision ([`Paywall::access`]) and the two places that use it:
//!   the callback's answer to an `article` rule ([`Paywall::article_reply`]) and the page a link
//!   opens, `GET /a/{article}` ([`Paywall::open_page`]). Both count what they showed (teaser,
//!   link issued, the paywall page to someone without access, the article read by an
//!   entitled reader): the analytics' article funnel.
//!
//! May depend on: `store` (entitlements, counters), `rules` (article definitions), `wechat`
//! (reply and id types). Never on HTTP: the page handler renders what [`Page`] says.

pub mod link;

use std::time::Duration;

use chrono::NaiveDate;

pub use link::{parse_expires, percent_encode, LinkError, LinkSigner, DEFAULT_LINK_TTL_SECS};

use crate::rules::{ArticleDef, RuleSet};
use crate::store::{Counter, Store, StoreError};
use crate::wechat::reply::{Article, Reply};
use crate::wechat::types::OpenId;

/// The secret that signs article links: `MPGATE_LINK_SECRET` when set (hashed to the HMAC's
/// 32 bytes), else the one generated and kept in the data dir. The server and the operator
/// commands that sign links both take it from here, so their links agree.
pub fn link_secret(configured: Option<&str>, store: &Store) -> Result<[u8; 32], StoreError> {
    use sha2::Digest;
    match configured {
        Some(s) => Ok(sha2::Sha256::digest(s.as_bytes()).into()),
        None => store.link_secret(),
    }
}

/// Whether a reader may read an article now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An active grant: the article opens.
    Granted,
    /// No grant, or a revoked one: the teaser and the way to buy.
    Locked,
}

/// What `GET /a/{article}` shows, decided before anything is rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Page<'r> {
    /// No such article in the live rules (404).
    UnknownArticle,
    /// Opened without a link's proof (`u`, `e`, `s`): the paywall page, with how to get one.
    NoLink(&'r ArticleDef),
    /// The link's proof does not hold (403): tampered, truncated, or not ours.
    BadLink,
    /// A genuine link past its expiry (410).
    Expired,
    /// A genuine link, but the reader has no grant (any more): the paywall page (403).
    Locked(&'r ArticleDef),
    /// Everything holds: the article (the open is counted).
    Read(&'r ArticleDef),
}

/// The paid-article service: signs and checks links, decides access, counts the funnel.
#[derive(Clone)]
pub struct Paywall {
    store: Store,
    signer: LinkSigner,
    public_url: String,
    link_ttl: Duration,
    /// WeChat Pay is configured: a priced article's teaser links to the paywall page signed
    /// for the reader, where they can buy it.
    selling: bool,
}

impl Paywall {
    pub fn new(store: Store, signer: LinkSigner, public_url: String, link_ttl: Duration) -> Self {
        Paywall {
            store,
            signer,
            public_url,
            link_ttl,
            selling: false,
        }
    }

    /// Turns on selling from the page (pay configured).
    pub fn selling(mut self, on: bool) -> Self {
        self.selling = on;
        self
    }

    /// Whether pay is on.
    pub fn is_selling(&self) -> bool {
        self.selling
    }

    /// A fresh link to `article` signed for `openid`, valid for the link lifetime from `now`.
    pub fn read_url(&self, article: &str, openid: &OpenId, now: i64) -> String {
        let expires = link::expires_at(now, self.link_ttl);
        self.signer
            .url(&self.public_url, article, openid.as_str(), expires)
    }

    pub fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    /// The one decision: may `openid` read `article` now? Read at the time of asking, so a
    /// revoked grant stops working at once, in chats and on pages alike.
    pub fn access(&self, openid: &OpenId, article: &str) -> Result<Access, StoreError> {
        Ok(if self.store.is_entitled(openid, article)? {
            Access::Granted
        } else {
            Access::Locked
        })
    }

    /// The callback's answer to an `article` rule: an entitled subscriber gets the article with
    /// a link signed for them; anyone else the teaser and the way to buy.
    pub fn article_reply(
        &self,
        rules: &RuleSet,
        id: &str,
        openid: &OpenId,
        now: i64,
        day: NaiveDate,
    ) -> Result<Reply, StoreError> {
        let Some(a) = rules.article(id) else {
            // `check` refuses unknown ids, so this is a reload race at worst.
            return Ok(Reply::None);
        };
        let article = match self.access(openid, id)? {
            Access::Granted => {
                let url = self.read_url(id, openid, now);
                self.count(Counter::LinkIssued { article: id.into() }, day);
                Article {
                    title: a.title.clone(),
                    description: a.teaser.clone(),
                    pic_url: a.cover.clone(),
                    url,
                }
            }
            Access::Locked => {
                self.count(Counter::TeaserShown { article: id.into() }, day);
                let description = if a.price.is_empty() {
                    a.teaser.clone()
                } else {
                    format!("{}\n{}", a.teaser, a.price)
                };
                Article {
                    title: format!("🔒 {}", a.title),
                    description,
                    pic_url: a.cover.clone(),
                    url: if self.selling && a.price_fen.is_some() {
                        // The page sells it to this reader: it needs the reader's proof.
                        self.read_url(id, openid, now)
                    } else {
                        // Without a shop link, the paywall page explains how to buy.
                        a.purchase_url.clone().unwrap_or_else(|| {
                            format!("{}/a/{}", self.public_url, percent_encode(id))
                        })
                    },
                }
            }
        };
        Ok(Reply::News {
            articles: vec![article],
        })
    }

    /// What the page a link opens shows. Order of checks: the article exists → the link's MAC
    /// (constant time) → expiry → the entitlement, read now. The body is never shown unless
    /// every check passes.
    pub fn open_page<'r>(
        &self,
        rules: &'r RuleSet,
        id: &str,
        proof: LinkProof<'_>,
        now: i64,
        day: NaiveDate,
    ) -> Result<Page<'r>, StoreError> {
        let Some(article) = rules.article(id) else {
            return Ok(Page::UnknownArticle);
        };
        let (Some(u), Some(e), Some(s)) = (proof.u, proof.e, proof.s) else {
            self.count(Counter::PaywallPage { article: id.into() }, day);
            return Ok(Page::NoLink(article));
        };
        let Ok(expires) = parse_expires(e) else {
            return Ok(Page::BadLink);
        };
        match self.signer.verify(id, u, expires, s, now) {
            Ok(()) => {}
            Err(LinkError::Expired) => return Ok(Page::Expired),
            Err(err) => {
                tracing::warn!(reason = %err, "article link refused");
                return Ok(Page::BadLink);
            }
        }
        // The MAC holds, so `u` is an openid we signed for: no further shape check is needed.
        match self.access(&OpenId::new(u), id)? {
            Access::Locked => {
                self.count(Counter::PaywallPage { article: id.into() }, day);
                Ok(Page::Locked(article))
            }
            Access::Granted => {
                // `page:` (the admin API's daily counters, since before the funnel) and `read:`
                // (the funnel's last step) count the same open.
                self.count(Counter::PageOpened { article: id.into() }, day);
                self.count(Counter::Read { article: id.into() }, day);
                Ok(Page::Read(article))
            }
        }
    }

    fn count(&self, c: Counter, day: NaiveDate) {
        self.store.count(c, day, 1);
    }
}

/// The proof a signed link carries in its query: reader, expiry, signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkProof<'a> {
    pub u: Option<&'a str>,
    pub e: Option<&'a str>,
    pub s: Option<&'a str>,
}
