//! The operator commands behind `mpgate check`, `mpgate simulate` and `mpgate menu show`.
//!
//! Each takes the rules file path and a writer and returns the process exit code, so the lead's
//! clap wiring stays one line per subcommand and tests can capture the output. Nothing here
//! changes state; what `check` needs from the data dir (active grants) the caller reads and
//! passes in as [`GrantsSeen`]. May depend on: [`super`] (the rules engine), [`crate::wechat`]
//! types.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::{
    menu::MenuBody, AssistantAction, Audience, ConfigErrors, RuleSet, Severity, Special,
    SubscriberView,
};
use crate::assistant::retrieval::Hit;
use crate::wechat::message::{Event, Header, Inbound, InboundKind};
use crate::wechat::names::{EventType, MsgType};
use crate::wechat::types::{MsgId, OpenId};

/// What to simulate: an event (`subscribe`, `scan`, `click`, …) or a user message.
#[derive(Clone, Debug, Default)]
pub struct SimulateArgs {
    pub openid: Option<String>,
    /// An event or user message type as the rules file names it ([`crate::wechat::names`]):
    /// `subscribe`, `scan`, `click`, `view`, `location`, `scancode_push`, …, or `text`, `voice`,
    /// `image`, `video`, …. `location` is the event.
    pub event: Option<String>,
    /// QR-code scene (subscribe, scan).
    pub scene: Option<String>,
    /// Menu key (click, scancode, location_select).
    pub click: Option<String>,
    pub first_time: bool,
    pub tags: Vec<String>,
    /// Message text (text, voice recognition, scancode result).
    pub text: Option<String>,
    /// A question for the assistant: which rule answers it and which passages of the
    /// creator's articles would go into the prompt (`simulate --assistant "…"`).
    pub assistant: Option<String>,
    /// Articles the simulated reader is entitled to (their paid passages may be used).
    pub entitled: Vec<String>,
}

fn print_errors(e: &ConfigErrors, out: &mut dyn Write) -> std::io::Result<()> {
    for d in &e.0 {
        writeln!(out, "{d}")?;
    }
    let errors = e.0.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = e.0.len() - errors;
    writeln!(
        out,
        "failed: {errors} error(s), {warnings} warning(s); nothing was loaded"
    )
}

/// What `mpgate check` learnt about paid access from the data dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantsSeen {
    /// Active grants per article id.
    Known(BTreeMap<String, usize>),
    /// Not checked, and why (the running server holds the data dir, there is none, …).
    Skipped(String),
}

/// Validates the rules file and its templates; exit code 0 when usable (warnings allowed).
/// Also warns about what the server would refuse to hot-reload without `[reload]`
/// confirming it: a file with no rules and no articles, and articles with active `grants`
/// that the file does not declare.
pub fn check(path: &Path, grants: &GrantsSeen, out: &mut dyn Write) -> i32 {
    let res = (|| -> std::io::Result<i32> {
        match RuleSet::load(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    writeln!(out, "{w}")?;
                }
                let none = BTreeMap::new();
                let counts = match grants {
                    GrantsSeen::Known(c) => c,
                    GrantsSeen::Skipped(why) => {
                        writeln!(
                            out,
                            "note: active grants not checked against the articles: {why}"
                        )?;
                        &none
                    }
                };
                for d in loaded.rules.unconfirmed_drops(None, counts) {
                    writeln!(
                        out,
                        "{}: warning: {d}\n  help: {}",
                        path.display(),
                        d.hint()
                    )?;
                }
                let r = &loaded.rules;
                if let Some(c) = r.corpus() {
                    writeln!(
                        out,
                        "assistant: {} documents indexed ({} passages)",
                        c.docs(),
                        c.passages()
                    )?;
                }
                let menu = match r.menu() {
                    Some(m) => format!("menu with {} buttons", m.len()),
                    None => "no menu".to_string(),
                };
                writeln!(
                    out,
                    "ok: {} rules, {} articles, {menu} (version {})",
                    r.rule_names().count(),
                    r.articles().len(),
                    r.version()
                )?;
                Ok(0)
            }
            Err(e) => {
                print_errors(&e, out)?;
                Ok(1)
            }
        }
    })();
    res.unwrap_or(1)
}

fn build_message(args: &SimulateArgs) -> Result<Inbound, String> {
    let msg_id = MsgId::new(1);
    let text = args.text.clone().unwrap_or_default();
    let key = || {
        args.click
            .clone()
            .ok_or_else(|| "this event needs --click KEY".to_string())
    };
    let event = args.event.as_deref().map(str::to_ascii_lowercase);
    let Some(name) = event else {
        let kind = if args.click.is_some() {
            InboundKind::Event(Event::Click { key: key()? })
        } else {
            message(MsgType::Text, args, msg_id)?
        };
        return Ok(inbound(args, kind));
    };
    // The names rules use; `location` is the event (as in rules), not the message.
    let kind = if let Some(e) = EventType::from_rules_name(&name) {
        InboundKind::Event(match e {
            EventType::Subscribe => Event::Subscribe {
                scene: args.scene.clone(),
                ticket: None,
                event_key: None,
            },
            EventType::Scan => Event::Scan {
                scene: args
                    .scene
                    .clone()
                    .ok_or_else(|| "scan needs --scene".to_string())?,
                ticket: None,
            },
            EventType::Click => Event::Click { key: key()? },
            EventType::View => Event::View {
                url: key()?,
                menu_id: None,
            },
            EventType::Location => Event::Location {
                latitude: 0.0,
                longitude: 0.0,
                precision: 0.0,
            },
            EventType::LocationSelect => Event::LocationSelect {
                key: key()?,
                latitude: 0.0,
                longitude: 0.0,
                scale: 0,
                label: String::new(),
                poiname: String::new(),
            },
            EventType::ScancodePush => Event::ScancodePush {
                key: key()?,
                scan_type: "qrcode".into(),
                scan_result: text,
            },
            EventType::ScancodeWaitmsg => Event::ScancodeWaitmsg {
                key: key()?,
                scan_type: "qrcode".into(),
                scan_result: text,
            },
            EventType::PicSysphoto => Event::PicSysphoto {
                key: key()?,
                pics: Vec::new(),
            },
            EventType::PicPhotoOrAlbum => Event::PicPhotoOrAlbum {
                key: key()?,
                pics: Vec::new(),
            },
            EventType::PicWeixin => Event::PicWeixin {
                key: key()?,
                pics: Vec::new(),
            },
            EventType::ViewMiniprogram => Event::ViewMiniprogram {
                page_path: key()?,
                menu_id: None,
            },
            // Events no rule can name (unsubscribe, job reports, kf sessions).
            _ => Event::Unknown {
                event: name,
                event_key: args.click.clone(),
            },
        })
    } else if let Some(t) = MsgType::from_rules_name(&name) {
        message(t, args, msg_id)?
    } else {
        InboundKind::Event(Event::Unknown {
            event: name,
            event_key: args.click.clone(),
        })
    };
    Ok(inbound(args, kind))
}

/// A made-up user message of type `t`, carrying `--text` where the type has text.
fn message(t: MsgType, args: &SimulateArgs, msg_id: MsgId) -> Result<InboundKind, String> {
    let text = args.text.clone().unwrap_or_default();
    Ok(match t {
        MsgType::Text => {
            if args.text.is_none() {
                return Err("give --text, --click or --event".into());
            }
            InboundKind::Text {
                msg_id,
                content: text,
                msg_data_id: None,
                idx: None,
            }
        }
        MsgType::Voice => InboundKind::Voice {
            msg_id,
            media_id: "SIMULATED_MEDIA".into(),
            format: "amr".into(),
            recognition: args.text.clone(),
        },
        MsgType::Image => InboundKind::Image {
            msg_id,
            pic_url: "https://example.invalid/p.jpg".into(),
            media_id: "SIMULATED_MEDIA".into(),
        },
        MsgType::Video => InboundKind::Video {
            msg_id,
            media_id: "SIMULATED_MEDIA".into(),
            thumb_media_id: "SIMULATED_THUMB".into(),
        },
        MsgType::ShortVideo => InboundKind::ShortVideo {
            msg_id,
            media_id: "SIMULATED_MEDIA".into(),
            thumb_media_id: "SIMULATED_THUMB".into(),
        },
        MsgType::Location => InboundKind::Location {
            msg_id,
            latitude: 0.0,
            longitude: 0.0,
            scale: 0,
            label: text,
        },
        MsgType::Link => InboundKind::Link {
            msg_id,
            title: text,
            description: String::new(),
            url: "https://example.invalid/".into(),
        },
        MsgType::File => InboundKind::File {
            msg_id,
            title: text,
            description: String::new(),
            file_key: String::new(),
            file_md5: String::new(),
            file_total_len: 0,
        },
        MsgType::Event => return Err("give an event name with --event, e.g. click".into()),
    })
}

fn inbound(args: &SimulateArgs, kind: InboundKind) -> Inbound {
    Inbound {
        header: Header {
            to_user: "gh_simulated".into(),
            from_user: OpenId::new(
                args.openid
                    .clone()
                    .unwrap_or_else(|| "o_simulated_user".into()),
            ),
            create_time: chrono::Utc::now().timestamp(),
        },
        kind,
    }
}

/// Routes one made-up push and prints the decision and the rendered reply. Changes no state.
pub fn simulate(path: &Path, args: &SimulateArgs, out: &mut dyn Write) -> i32 {
    let res = (|| -> std::io::Result<i32> {
        let loaded = match RuleSet::load(path) {
            Ok(l) => l,
            Err(e) => {
                print_errors(&e, out)?;
                return Ok(1);
            }
        };
        if let Some(q) = &args.assistant {
            return simulate_assistant(&loaded.rules, q, args, out);
        }
        let msg = match build_message(args) {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "error: {e}")?;
                return Ok(2);
            }
        };
        let sub = SubscriberView {
            openid: &msg.header.from_user,
            first_time: args.first_time,
            channel: args.scene.as_deref(),
            tags: &args.tags,
            subscribed_since: None,
        };
        let d = loaded.rules.route(&msg, &sub, chrono::Utc::now());
        match &d.rule {
            Some(r) => writeln!(out, "matched: rule `{r}` ({})", d.why)?,
            None => writeln!(out, "matched: nothing ({}); the answer is `success`", d.why)?,
        }
        if d.add_tags.is_empty() {
            writeln!(out, "tags added: none")?;
        } else {
            writeln!(out, "tags added: {}", d.add_tags.join(", "))?;
        }
        match &d.special {
            Some(Special::Article { id }) => writeln!(out, "action: show article `{id}`")?,
            Some(Special::Handoff(h)) => {
                writeln!(
                    out,
                    "action: hand off to customer service{} ({})",
                    h.kf_account
                        .as_deref()
                        .map(|k| format!(" agent {k}"))
                        .unwrap_or_default(),
                    if h.in_hours {
                        "in service hours"
                    } else {
                        "outside service hours"
                    }
                )?;
                if let Some(n) = &h.notice {
                    writeln!(out, "  notice: {n}")?;
                }
                if let Some(o) = &h.offline {
                    writeln!(out, "  offline: {o}")?;
                }
            }
            Some(Special::Assistant(a)) => print_assistant(a, out)?,
            Some(Special::Webhook(w)) => {
                writeln!(
                    out,
                    "action: ask the webhook {} (waits {} ms, then answers later as a customer-service message)",
                    w.url,
                    w.timeout.as_millis()
                )?;
                if let Some(f) = &w.fallback {
                    writeln!(out, "  fallback: {f}")?;
                }
            }
            None => {}
        }
        let reply = serde_json::to_string_pretty(&d.reply).unwrap_or_else(|e| e.to_string());
        writeln!(out, "reply:\n{reply}")?;
        Ok(0)
    })();
    res.unwrap_or(1)
}

/// Who may ask an assistant rule, as `simulate` says it.
fn audience(a: &Audience) -> String {
    match a {
        Audience::All => "everyone".to_string(),
        Audience::Tag(t) => format!("subscribers tagged `{t}`"),
        Audience::Entitled(id) => format!("readers entitled to `{id}`"),
    }
}

fn print_assistant(a: &AssistantAction, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "action: ask the assistant (model {}, may ask: {}, waits {} ms, then answers later)",
        a.model,
        audience(&a.audience),
        a.budget.as_millis()
    )?;
    writeln!(
        out,
        "  endpoint: {}; max_tokens {}, temperature {}, {} past turns, {} passages; system prompt: {}",
        a.api_base
            .as_deref()
            .unwrap_or("MPGATE_ASSISTANT_API_BASE"),
        a.max_tokens,
        a.temperature,
        a.turns,
        a.passages,
        a.system.as_deref().unwrap_or("built-in")
    )?;
    if let Some(t) = &a.teaser {
        writeln!(out, "  teaser: {t}")?;
    }
    if let Some(f) = &a.fallback {
        writeln!(out, "  fallback: {f}")?;
    }
    Ok(())
}

/// `simulate --assistant`: the rule that answers the question and the passages the prompt
/// would carry for this reader; paid passages the reader may not use are listed apart.
fn simulate_assistant(
    rules: &RuleSet,
    question: &str,
    args: &SimulateArgs,
    out: &mut dyn Write,
) -> std::io::Result<i32> {
    let msg = inbound(
        args,
        InboundKind::Text {
            msg_id: MsgId::new(1),
            content: question.to_string(),
            msg_data_id: None,
            idx: None,
        },
    );
    let sub = SubscriberView {
        openid: &msg.header.from_user,
        first_time: false,
        channel: args.scene.as_deref(),
        tags: &args.tags,
        subscribed_since: None,
    };
    let d = rules.route(&msg, &sub, chrono::Utc::now());
    writeln!(out, "question: {question:?}")?;
    let mut k = super::model::ASSISTANT_DEFAULT_PASSAGES;
    match (&d.rule, &d.special) {
        (Some(r), Some(Special::Assistant(a))) => {
            writeln!(out, "matched: rule `{r}` ({}): the assistant answers", d.why)?;
            print_assistant(a, out)?;
            let may = match &a.audience {
                Audience::All => None,
                Audience::Tag(t) => Some((args.tags.contains(t), format!("--tag {t}"))),
                Audience::Entitled(id) => {
                    Some((args.entitled.contains(id), format!("--entitled {id}")))
                }
            };
            match may {
                Some((true, _)) | None => writeln!(out, "this reader may ask")?,
                Some((false, flag)) => writeln!(
                    out,
                    "this reader may not ask: they get the teaser (simulate a member with {flag})"
                )?,
            }
            k = a.passages;
        }
        (Some(r), _) => writeln!(
            out,
            "matched: rule `{r}` ({}): not an assistant rule, so the assistant does not answer this text",
            d.why
        )?,
        (None, _) => writeln!(
            out,
            "matched: nothing ({}): no assistant rule answers this text",
            d.why
        )?,
    }
    let Some(corpus) = rules.corpus() else {
        writeln!(
            out,
            "no rule uses the assistant, so nothing is indexed; add a rule with assistant = {{ model = \"…\" }}"
        )?;
        return Ok(1);
    };
    writeln!(
        out,
        "indexed: {} documents, {} passages",
        corpus.docs(),
        corpus.passages()
    )?;
    // Searched as the server searches it: without the rule's prefix keyword.
    let question = match &d.why {
        super::Why::Prefix(p) => crate::assistant::question_after_prefix(question, p),
        _ => question,
    };
    let entitled = |id: &str| args.entitled.iter().any(|e| e == id);
    let used = corpus.search(question, k, &entitled);
    let all = corpus.search(question, k, &|_| true);
    let held: Vec<_> = all
        .into_iter()
        .filter(|h| h.paid_article.is_some_and(|id| !entitled(id)))
        .collect();
    print_passages(&used, &held, k, out)?;
    Ok(0)
}

/// The passages for the prompt (`used`, best first) and, apart, the paid ones this reader
/// may not use (`held`).
fn print_passages(
    used: &[Hit<'_>],
    held: &[Hit<'_>],
    k: usize,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if used.is_empty() {
        writeln!(
            out,
            "passages for the prompt: none (no passage this reader may use shares a word with the question)"
        )?;
    } else {
        writeln!(out, "passages for the prompt (best {k} at most):")?;
    }
    for (i, h) in used.iter().enumerate() {
        let access = match h.paid_article {
            Some(id) => format!("paid, `{id}`, entitled"),
            None => "free".to_string(),
        };
        writeln!(
            out,
            "  {}. {} [{}] {access}, score {:.2}: {}",
            i + 1,
            h.title,
            h.doc_id,
            h.score,
            preview(h.passage)
        )?;
    }
    if !held.is_empty() {
        writeln!(out, "left out (paid):")?;
    }
    for h in held {
        let id = h.paid_article.unwrap_or(h.doc_id);
        writeln!(
            out,
            "  - {} [{}] score {:.2} (only for readers entitled to {id}; add --entitled {id}): {}",
            h.title,
            h.doc_id,
            h.score,
            preview(h.passage)
        )?;
    }
    Ok(())
}

/// About the first 80 characters of a passage on one line.
fn preview(passage: &str) -> String {
    const CHARS: usize = 80;
    let flat: String = passage
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if flat.chars().count() <= CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(CHARS).collect();
    cut.push('…');
    cut
}

/// Prints the exact JSON body for the platform's `menu/create` API.
pub fn menu_show(path: &Path, out: &mut dyn Write) -> i32 {
    let res = (|| -> std::io::Result<i32> {
        let loaded = match RuleSet::load(path) {
            Ok(l) => l,
            Err(e) => {
                print_errors(&e, out)?;
                return Ok(1);
            }
        };
        let Some(menu) = loaded.rules.menu() else {
            writeln!(out, "no [menu] in {}", path.display())?;
            return Ok(1);
        };
        match serde_json::to_string_pretty(&MenuBody { button: menu }) {
            Ok(json) => {
                writeln!(out, "{json}")?;
                Ok(0)
            }
            Err(e) => {
                writeln!(out, "error: {e}")?;
                Ok(1)
            }
        }
    })();
    res.unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::{preview, print_passages};
    use crate::assistant::retrieval::Hit;

    fn hit<'a>(
        doc_id: &'a str,
        title: &'a str,
        paid: Option<&'a str>,
        passage: &'a str,
        score: f32,
    ) -> Hit<'a> {
        Hit {
            doc_id,
            title,
            paid_article: paid,
            passage,
            score,
        }
    }

    #[test]
    fn passages_show_title_id_access_score_and_a_short_preview_and_paid_ones_held_back_say_how() {
        let long = "所有权规则：每个值都有一个所有者。\n\n当所有者离开作用域，值被丢弃。".repeat(4);
        let used = [
            hit("faq.md", "常见问题", None, "退款请在 七天内\t申请。", 3.5),
            hit("rust-101", "Rust 入门", Some("rust-101"), &long, 2.25),
        ];
        let held = [hit("async", "异步", Some("async"), "future 是惰性的", 1.0)];
        let mut out = Vec::new();
        print_passages(&used, &held, 3, &mut out).expect("write");
        let s = String::from_utf8(out).expect("utf8");
        let expected = format!(
            "passages for the prompt (best 3 at most):\n  1. 常见问题 [faq.md] free, score 3.50: 退款请在 七天内 申请。\n  2. Rust 入门 [rust-101] paid, `rust-101`, entitled, score 2.25: {}\nleft out (paid):\n  - 异步 [async] score 1.00 (only for readers entitled to async; add --entitled async): future 是惰性的\n",
            preview(&long)
        );
        assert_eq!(s, expected);
        assert_eq!(preview(&long).chars().count(), 81);
        assert!(preview(&long).ends_with('…') && !preview(&long).contains('\n'));

        let mut out = Vec::new();
        print_passages(&[], &[], 3, &mut out).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "passages for the prompt: none (no passage this reader may use shares a word with the question)\n"
        );
    }
}
