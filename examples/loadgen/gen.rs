//! Push generation: distinct pushes signed and encrypted like the platform does, written as
//! `pushes.tsv` for wrk (`scripts/bench/push.lua`) and `expected.jsonl` for `verify`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use mpgate::wechat::crypto::{Cipher, EncodingAesKey};
use mpgate::wechat::message::{Event, Header, Inbound, InboundKind};
use mpgate::wechat::signature;
use mpgate::wechat::types::{AppId, MsgId, OpenId};

use crate::expect::{compiled_regexes, predict, Input, Meta};
use crate::rules::{digits, model, pick, Rule, Trigger, CHANNELS, CLICKS, PREFIXES, REGEXES};
use crate::tsv::escape_line;
use crate::{Keys, ACCOUNT, MSGID_BASE, OPENID_POOL};

/// A 28-character openid like the platform's (`o` + 27 of [A-Za-z0-9_-]), stable per index so
/// `prefill` and `gen` agree on who is who.
pub(crate) fn openid(i: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut s = String::with_capacity(28);
    s.push('o');
    for _ in 0..27 {
        // splitmix64 step: cheap, well mixed, deterministic.
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        s.push(char::from(ALPHABET[(z % 64) as usize]));
    }
    s
}

pub(crate) const FILLERS: &[&str] = &[
    "请问",
    "一下",
    "谢谢",
    "老师",
    "我想",
    "那个",
    "怎么",
    "今天",
    "晚上",
    "可以",
    "看看",
    "大家",
    "关于",
    "的",
    "事情",
    "有没有",
    "还有",
    "这个",
    "呀",
    "吧",
    "嗯",
    "哈哈",
    "感觉",
    "好像",
    "明天",
    "周末",
    "同学",
    "朋友",
    "推荐",
    "一起",
    "上班",
    "下班",
    "早上好",
    "晚安",
    "真的",
    "厉害",
    "学到了",
    "收藏",
    "转发",
    "支持",
];
pub(crate) const EMOJI: &[&str] = &[
    "😀", "🙏", "👍", "😂", "🎉", "❤️", "🤔", "😭", "🔥", "💪", "👏", "🌹", "😅", "🐶",
];

pub(crate) fn filler(r: &mut StdRng, words: usize) -> String {
    let mut s = String::new();
    for _ in 0..words {
        s.push_str(pick(r, FILLERS));
    }
    s
}

pub(crate) fn maybe_emoji(r: &mut StdRng) -> &'static str {
    if r.gen_bool(0.6) {
        pick(r, EMOJI)
    } else {
        ""
    }
}

/// One push's content and its category (what it was meant to exercise).
pub(crate) fn draw(
    r: &mut StdRng,
    rules: &[Rule],
    regexes: &[Option<regex::Regex>],
) -> (&'static str, InboundKindSpec) {
    let roll = r.gen_range(0..100);
    if roll < 60 {
        let sub = r.gen_range(0..100);
        let text = if sub < 35 {
            // exact: a named keyword or a numbered material, sometimes full-width or upper-case
            let rs: Vec<&Rule> = rules
                .iter()
                .filter(|x| matches!(x.trigger, Trigger::Exact(_)))
                .collect();
            let Trigger::Exact(ks) = &rs[r.gen_range(0..rs.len())].trigger else {
                unreachable!()
            };
            let k = &ks[r.gen_range(0..ks.len())];
            if k.is_ascii() && r.gen_bool(0.5) {
                k.to_ascii_uppercase()
            } else {
                k.clone()
            }
        } else if sub < 75 {
            let rs: Vec<&Rule> = rules
                .iter()
                .filter(|x| matches!(x.trigger, Trigger::Contains(_)))
                .collect();
            let Trigger::Contains(ks) = &rs[r.gen_range(0..rs.len())].trigger else {
                unreachable!()
            };
            let k = &ks[r.gen_range(0..ks.len())];
            let k = if k.is_ascii() && r.gen_bool(0.3) {
                k.to_ascii_uppercase()
            } else {
                k.clone()
            };
            let (a, b) = (r.gen_range(0..3), r.gen_range(0..3));
            format!("{}{}{}{}", filler(r, a), k, filler(r, b), maybe_emoji(r))
        } else if sub < 90 {
            let p = pick(r, PREFIXES);
            let tail = match r.gen_range(0..3) {
                0 => digits(r, 8),
                1 => {
                    let n = r.gen_range(1..3);
                    filler(r, n)
                }
                _ => format!("{}{}", filler(r, 1), pick(r, EMOJI)),
            };
            format!("{p} {tail}")
        } else {
            let (_, _, _, make) = REGEXES[r.gen_range(0..REGEXES.len())];
            make(r)
        };
        return ("hit", InboundKindSpec::Text(text));
    }
    if roll < 80 {
        // A miss: chatter that no rule matches (redrawn until the model agrees).
        loop {
            let n = r.gen_range(2..6);
            let t = format!("{}{}", filler(r, n), maybe_emoji(r));
            let (rule, _) = predict(rules, regexes, &Input::Text(&t));
            if rule == "fallback" {
                return ("miss", InboundKindSpec::Text(t));
            }
        }
    }
    if roll < 90 {
        let scene = match r.gen_range(0..10) {
            0..=4 => None,
            5..=8 => Some(CHANNELS[r.gen_range(0..CHANNELS.len())].to_string()),
            // A campaign nobody wrote a rule for: the generic welcome.
            _ => Some(format!("poster-{}", r.gen_range(100..999))),
        };
        return ("subscribe", InboundKindSpec::Subscribe(scene));
    }
    (
        "click",
        InboundKindSpec::Click(CLICKS[r.gen_range(0..CLICKS.len())].0.to_string()),
    )
}

pub(crate) enum InboundKindSpec {
    Text(String),
    Subscribe(Option<String>),
    Click(String),
}

/// One generated request: what wrk sends and what the reply must contain.
pub(crate) struct Push {
    pub(crate) path: String,
    pub(crate) body: String,
    pub(crate) meta: Meta,
}

pub(crate) struct Sealer {
    pub(crate) token: String,
    pub(crate) app_id: AppId,
    pub(crate) cipher: Cipher,
}

impl Sealer {
    pub(crate) fn new(keys: &Keys) -> Result<Sealer> {
        let key = EncodingAesKey::parse(&keys.aes_key).map_err(|e| anyhow!("bad AES key: {e}"))?;
        Ok(Sealer {
            token: keys.token.clone(),
            app_id: AppId::new(keys.app_id.clone()),
            cipher: Cipher::new(&key),
        })
    }
}

/// Generates pushes `seq_base .. seq_base + count`, deterministic in `seq_base`.
pub(crate) fn generate(seq_base: u64, count: u64, sealer: &Sealer) -> Result<Vec<Push>> {
    let rules = model();
    let regexes = compiled_regexes(&rules)?;
    let mut rng = StdRng::seed_from_u64(0xB3_7C4 ^ seq_base);
    let now = chrono::Utc::now().timestamp();
    // CreateTimes a few months back, one per sequence number, so event dedupe keys
    // (openid, CreateTime, event) never collide between pushes or between sets.
    let create_base = now - 100_000_000;
    let ts = now.to_string();
    let mut out = Vec::with_capacity(count as usize);
    for seq in seq_base..seq_base + count {
        let (category, spec) = draw(&mut rng, &rules, &regexes);
        let oid = openid(rng.gen_range(0..OPENID_POOL));
        let header = Header {
            to_user: ACCOUNT.to_string(),
            from_user: OpenId::new(oid.clone()),
            create_time: create_base + seq as i64,
        };
        let (kind, input_rule, expect) = match &spec {
            InboundKindSpec::Text(t) => {
                let (rule, e) = predict(&rules, &regexes, &Input::Text(t));
                let kind = InboundKind::Text {
                    msg_id: MsgId::new(MSGID_BASE + seq),
                    content: t.clone(),
                    msg_data_id: None,
                    idx: None,
                };
                (kind, rule, e)
            }
            InboundKindSpec::Subscribe(scene) => {
                let (rule, e) = predict(&rules, &regexes, &Input::Subscribe(scene.as_deref()));
                let ticket = scene.as_ref().map(|_| {
                    format!(
                        "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL{}",
                        digits(&mut rng, 8)
                    )
                });
                let kind = InboundKind::Event(Event::Subscribe {
                    scene: scene.clone(),
                    ticket,
                    event_key: None,
                });
                (kind, rule, e)
            }
            InboundKindSpec::Click(k) => {
                let (rule, e) = predict(&rules, &regexes, &Input::Click(k));
                (InboundKind::Event(Event::Click { key: k.clone() }), rule, e)
            }
        };
        let xml = Inbound { header, kind }.to_xml();
        let nonce = rng.gen_range(100_000_000u64..9_999_999_999).to_string();
        let enc = sealer.cipher.encrypt(&xml, &sealer.app_id);
        let msg_sig = signature::sign(&[&sealer.token, &ts, &nonce, &enc]);
        let sig = signature::sign(&[&sealer.token, &ts, &nonce]);
        let path = format!(
            "/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid={oid}&encrypt_type=aes&msg_signature={msg_sig}"
        );
        let body = format!("<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>");
        out.push(Push {
            path,
            body,
            meta: Meta {
                seq,
                category: category.to_string(),
                rule: input_rule,
                openid: oid,
                nonce,
                expect,
            },
        });
    }
    Ok(out)
}

pub(crate) fn gen(out_dir: &Path, count: u64, seq_base: u64, keys: &Keys) -> Result<()> {
    let started = Instant::now();
    let sealer = Sealer::new(keys)?;
    let pushes = generate(seq_base, count, &sealer)?;
    fs::create_dir_all(out_dir)?;
    let mut tsv = BufWriter::new(fs::File::create(out_dir.join("pushes.tsv"))?);
    let mut exp = BufWriter::new(fs::File::create(out_dir.join("expected.jsonl"))?);
    let mut mix: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_rule_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    for p in &pushes {
        writeln!(tsv, "{}\t{}", escape_line(&p.path), escape_line(&p.body))?;
        writeln!(exp, "{}", serde_json::to_string(&p.meta)?)?;
        *mix.entry(p.meta.category.clone()).or_default() += 1;
        let kind = p.meta.rule.split('-').next().unwrap_or("");
        let kind = match kind {
            "exact" | "material" => "exact",
            "prefix" => "prefix",
            "regex" => "regex",
            "faq" | "article" => "contains",
            "fallback" => "fallback",
            "welcome" => "welcome",
            "menu" => "click",
            _ => "other",
        };
        *by_rule_kind.entry(kind).or_default() += 1;
    }
    tsv.flush()?;
    exp.flush()?;
    let openids: std::collections::BTreeSet<&str> =
        pushes.iter().map(|p| p.meta.openid.as_str()).collect();
    eprintln!(
        "loadgen: {} pushes (seq {}..{}) in {:.2} s → {}; mix {:?}; answered by {:?}; {} openids",
        pushes.len(),
        seq_base,
        seq_base + count,
        started.elapsed().as_secs_f64(),
        out_dir.display(),
        mix,
        by_rule_kind,
        openids.len()
    );
    Ok(())
}
