//! Expected answers: what a push must be answered with, predicted from the rules model
//! (first matching rule in file order, on NFKC + lower-case text), not from mpgate's router.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use unicode_normalization::UnicodeNormalization;

use crate::rules::{Answer, Rule, Trigger, Vars, ARTICLES};

/// What a push must be answered with, in the decrypted reply.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Expect {
    /// A text reply equal to one of these.
    Text {
        any_of: Vec<String>,
    },
    News {
        title: String,
        url: String,
    },
    /// A paid article: the locked teaser, or (entitled subscriber) a signed link.
    Article {
        id: String,
        title: String,
        purchase_url: String,
    },
    /// The plain body `success`.
    Success,
}

/// What the generator knows about one push.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) seq: u64,
    pub(crate) category: String,
    pub(crate) rule: String,
    pub(crate) openid: String,
    pub(crate) nonce: String,
    pub(crate) expect: Expect,
}

pub(crate) fn normalize(s: &str) -> String {
    if s.is_ascii() {
        return s.trim().to_ascii_lowercase();
    }
    let n: String = s.nfkc().collect();
    n.to_lowercase().trim().to_string()
}

/// The push as the model sees it.
pub(crate) enum Input<'a> {
    Text(&'a str),
    Subscribe(Option<&'a str>),
    Click(&'a str),
}

/// First matching rule in file order, and its predicted answer.
pub(crate) fn predict(
    rules: &[Rule],
    regexes: &[Option<regex::Regex>],
    input: &Input,
) -> (String, Expect) {
    let mut vars = Vars {
        text: "",
        keyword: "",
        channel: "",
        groups: BTreeMap::new(),
    };
    let norm = match input {
        Input::Text(t) => {
            vars.text = t;
            normalize(t)
        }
        _ => String::new(),
    };
    let mut kw_owned = String::new();
    let mut winner = None;
    for (i, r) in rules.iter().enumerate() {
        let hit = match (&r.trigger, input) {
            (Trigger::Subscribe { channels: None }, Input::Subscribe(_)) => true,
            (Trigger::Subscribe { channels: Some(c) }, Input::Subscribe(Some(s))) => {
                vars.channel = s;
                c.iter().any(|x| x == s)
            }
            (Trigger::Click(k), Input::Click(key)) => k == key,
            (Trigger::Exact(ks), Input::Text(_)) => ks
                .iter()
                .find(|k| normalize(k) == norm)
                .map(|k| kw_owned = k.clone())
                .is_some(),
            (Trigger::Prefix(ks), Input::Text(_)) => ks
                .iter()
                .find(|k| norm.starts_with(&normalize(k)))
                .map(|k| kw_owned = k.clone())
                .is_some(),
            (Trigger::Contains(ks), Input::Text(_)) => ks
                .iter()
                .find(|k| norm.contains(&normalize(k)))
                .map(|k| kw_owned = k.clone())
                .is_some(),
            (Trigger::Regex(_), Input::Text(_)) => match regexes[i]
                .as_ref()
                .and_then(|re| re.captures(&norm).map(|c| (re, c)))
            {
                Some((re, c)) => {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = c.name(name) {
                            vars.groups.insert(name.to_string(), m.as_str().to_string());
                        }
                    }
                    true
                }
                None => false,
            },
            _ => false,
        };
        if hit {
            winner = Some(r);
            break;
        }
    }
    let winner = match (winner, input) {
        (Some(w), _) => w,
        (None, Input::Text(_)) => match rules
            .iter()
            .find(|r| matches!(r.trigger, Trigger::Fallback))
        {
            Some(f) => f,
            None => return ("(none)".into(), Expect::Success),
        },
        (None, _) => return ("(none)".into(), Expect::Success),
    };
    vars.keyword = if kw_owned.is_empty() {
        vars.text
    } else {
        &kw_owned
    };
    let expect = match &winner.answer {
        Answer::Text(s) => Expect::Text {
            any_of: vec![s.clone()],
        },
        Answer::OneOf(xs) => Expect::Text { any_of: xs.clone() },
        Answer::Inline { render, .. } | Answer::File { render, .. } => Expect::Text {
            any_of: vec![render(&vars)],
        },
        Answer::News { title, url, .. } => Expect::News {
            title: title.clone(),
            url: url.clone(),
        },
        Answer::Article(i) => Expect::Article {
            id: ARTICLES[*i].id.to_string(),
            title: ARTICLES[*i].title.to_string(),
            purchase_url: ARTICLES[*i].purchase_url.to_string(),
        },
    };
    (winner.name.clone(), expect)
}

pub(crate) fn compiled_regexes(rules: &[Rule]) -> Result<Vec<Option<regex::Regex>>> {
    rules
        .iter()
        .map(|r| match &r.trigger {
            Trigger::Regex(re) => regex::Regex::new(re)
                .map(Some)
                .map_err(|e| anyhow!("regex {re}: {e}")),
            _ => Ok(None),
        })
        .collect()
}
