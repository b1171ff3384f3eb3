//! The `assistant` rule action as the operator writes it and the pipeline receives it.

use mpgate::rules::{AssistantPromptVars, Audience};

use super::*;

/// A course account: a members-only assistant, a free one, a paid article, a free FAQ.
const COURSE: &str = r#"
[account]
customer_service = false

[assistant]
continue_word = "继续"
daily_questions = 10
documents = ["faq.md"]

[[rule]]
name = "members"
when = { prefix = ["会员问"] }
assistant = { model = "gpt-4o-mini", system = "assistant.txt", for_article = "rust-101", teaser = "「{{ keyword }}」是会员功能", fallback = "助教忙，稍后再问", timeout_ms = 3000 }

[[rule]]
name = "ask"
when = { prefix = ["问"] }
assistant = { model = "qwen-plus", api_base = "https://dashscope.example.com/v1", api_key_env = "QWEN_KEY", turns = 0, passages = 5 }

[[article]]
id = "rust-101"
title = "Rust 入门"
price = "9.90"
body_template = "articles/rust-101.html"
"#;

/// keywords.toml and its templates in a fresh directory.
fn course(prompt: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path().join("templates");
    std::fs::create_dir_all(t.join("articles")).expect("mkdir");
    std::fs::write(t.join("assistant.txt"), prompt).expect("write");
    std::fs::write(
        t.join("articles/rust-101.html"),
        "<h1>Rust 入门</h1><p>所有权与借用。</p>",
    )
    .expect("write");
    std::fs::write(t.join("faq.md"), "# 售后说明\n退款请联系客服。\n").expect("write");
    let path = dir.path().join("keywords.toml");
    std::fs::write(&path, COURSE).expect("write");
    (dir, path)
}

const PROMPT: &str = "你是课程助教。\n{% if entitlements %}读者已购：{{ entitlements | join(\"、\") }}{% endif %}\n标签：{{ tags | join(\",\") }}；渠道：{{ channel or \"无\" }}";

#[test]
fn a_members_question_goes_to_the_assistant_with_the_teaser_and_fallback_rendered() {
    let (_dir, path) = course(PROMPT);
    let rs = RuleSet::load(&path).expect("loads").rules;
    let d = route(&rs, &text("会员问 所有权是什么"));
    assert_eq!(winner(&d), "members");
    assert_eq!(
        d.reply,
        Reply::None,
        "the assistant, not the rules, answers"
    );
    let Some(Special::Assistant(a)) = d.special else {
        panic!("expected the assistant, got {:?}", d.special)
    };
    assert_eq!(a.model, "gpt-4o-mini");
    assert_eq!(a.audience, Audience::Entitled("rust-101".into()));
    assert_eq!(a.teaser.as_deref(), Some("「会员问」是会员功能"));
    assert_eq!(a.fallback.as_deref(), Some("助教忙，稍后再问"));
    assert_eq!(a.budget, Duration::from_millis(3000));
    assert_eq!(a.system.as_deref(), Some("assistant.txt"));
    assert_eq!(
        (a.api_base.as_deref(), a.api_key_env.as_deref()),
        (None, None)
    );

    let d = route(&rs, &text("问：借用检查器"));
    let Some(Special::Assistant(a)) = d.special else {
        panic!("expected the assistant, got {:?}", d.special)
    };
    assert_eq!(a.audience, Audience::All);
    assert_eq!(
        a.api_base.as_deref(),
        Some("https://dashscope.example.com/v1")
    );
    assert_eq!(a.api_key_env.as_deref(), Some("QWEN_KEY"));
    assert_eq!((a.turns, a.passages, a.max_tokens), (0, 5, 512));
    assert_eq!((a.teaser, a.fallback), (None, None));

    assert!(rs.has_assistant());
    assert_eq!(rs.customer_service(), Some(false));
    assert_eq!(rs.assistant().daily_questions, 10);
    assert_eq!(rs.assistant().documents, ["faq.md"]);
}

#[test]
fn the_continue_and_clear_words_are_recognised_as_keywords_are_only_with_an_assistant_rule() {
    let (_dir, path) = course(PROMPT);
    let rs = RuleSet::load(&path).expect("loads").rules;
    assert!(rs.is_continue_word(" 继续 "));
    assert!(!rs.is_continue_word("继续吧"));
    assert!(rs.is_clear_word("清除记忆"));
    assert!(!rs.is_clear_word("继续"));
    let plain = rules("[assistant]\ncontinue_word = \"more\"\n");
    assert!(!plain.has_assistant());
    assert!(
        !plain.is_continue_word("MORE"),
        "without an assistant rule it is ordinary text"
    );
    assert!(!plain.is_clear_word("清除记忆"));
    let with_rule = rules(
        "[assistant]\ncontinue_word = \"more\"\n[[rule]]\nname = \"a\"\nfallback = true\nassistant = { model = \"m\" }\n",
    );
    assert!(with_rule.is_continue_word("ＭＯＲＥ"));
}

#[test]
fn the_system_prompt_renders_with_the_subscribers_tags_channel_and_entitlements() {
    let (_dir, path) = course(PROMPT);
    let rs = RuleSet::load(&path).expect("loads").rules;
    let vars = AssistantPromptVars {
        tags: vec!["会员".into(), "北京".into()],
        channel: None,
        entitlements: vec!["rust-101".into()],
    };
    let prompt = rs
        .render_assistant_system("assistant.txt", &vars)
        .expect("renders");
    assert_eq!(
        prompt,
        "你是课程助教。\n读者已购：rust-101\n标签：会员,北京；渠道：无"
    );
}

#[test]
fn a_system_prompt_using_a_reply_variable_is_refused_pointing_into_the_prompt() {
    let (dir, path) = course("你是助教。\n称呼读者为 {{ openid }}。\n");
    let e = RuleSet::load(&path).expect_err("openid is not a prompt variable");
    let d =
        e.0.iter()
            .find(|d| d.message.contains("system prompt"))
            .unwrap_or_else(|| panic!("no prompt error in {e}"));
    assert_eq!(
        d.file,
        dir.path()
            .join("templates/assistant.txt")
            .display()
            .to_string()
    );
    assert_eq!((d.line, d.severity), (2, Severity::Error));
    assert!(
        d.help.as_deref().unwrap_or("").contains("entitlements"),
        "{d}"
    );
}

#[test]
fn editing_a_document_or_an_article_makes_the_loaded_rules_stale() {
    let (dir, path) = course(PROMPT);
    let rs = RuleSet::load(&path).expect("loads").rules;
    assert!(!rs.is_stale());
    let faq = dir.path().join("templates/faq.md");
    std::fs::write(&faq, "# 售后说明\n退款七天内可申请。\n").expect("write");
    assert!(rs.is_stale(), "hot reload must re-index an edited document");
    let again = RuleSet::load(&path).expect("loads").rules;
    assert_ne!(again.version(), rs.version());
    std::fs::write(
        dir.path().join("templates/articles/rust-101.html"),
        "<h1>Rust 入门</h1><p>生命周期。</p>",
    )
    .expect("write");
    assert!(again.is_stale());
}

#[test]
fn check_says_how_much_the_assistant_indexed() {
    let (_dir, path) = course(PROMPT);
    let mut out = Vec::new();
    assert_eq!(cli::check(&path, &no_grants(), &mut out), 0);
    let s = String::from_utf8_lossy(&out);
    let rs = RuleSet::load(&path).expect("loads").rules;
    let c = rs.corpus().expect("indexed");
    assert!(
        s.contains(&format!(
            "assistant: {} documents indexed ({} passages)\nok: 2 rules, 1 articles",
            c.docs(),
            c.passages()
        )),
        "{s}"
    );
    let mut out = Vec::new();
    cli::check(&manifest().join("keywords.toml"), &no_grants(), &mut out);
    assert!(!String::from_utf8_lossy(&out).contains("assistant:"));
}

#[test]
fn check_names_a_missing_document_and_an_unknown_article_with_positions() {
    let (dir, path) = course(PROMPT);
    std::fs::remove_file(dir.path().join("templates/faq.md")).expect("rm");
    let src = COURSE.replace("for_article = \"rust-101\"", "for_article = \"rust-110\"");
    std::fs::write(&path, src).expect("write");
    let mut out = Vec::new();
    assert_eq!(cli::check(&path, &no_grants(), &mut out), 1);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.contains("keywords.toml:8:14: error: document `faq.md` not found in"),
        "{s}"
    );
    assert!(s.contains("\n  help: create "), "{s}");
    assert!(
        s.contains("keywords.toml:13:") && s.contains("unknown article id `rust-110`"),
        "{s}"
    );
    assert!(s.contains("did you mean `rust-101`?"), "{s}");
}

#[test]
fn simulate_shows_who_may_ask_the_wait_and_the_texts() {
    let (_dir, path) = course(PROMPT);
    let mut out = Vec::new();
    let args = SimulateArgs {
        text: Some("会员问 所有权".into()),
        ..SimulateArgs::default()
    };
    assert_eq!(cli::simulate(&path, &args, &mut out), 0);
    let s = String::from_utf8_lossy(&out);
    assert!(
        s.contains("matched: rule `members` (prefix \"会员问\")"),
        "{s}"
    );
    assert!(
        s.contains("action: ask the assistant (model gpt-4o-mini, may ask: readers entitled to `rust-101`, waits 3000 ms, then answers later)"),
        "{s}"
    );
    assert!(
        s.contains("  endpoint: MPGATE_ASSISTANT_API_BASE; max_tokens 512, temperature 0.3, 4 past turns, 3 passages; system prompt: assistant.txt"),
        "{s}"
    );
    assert!(s.contains("  teaser: 「会员问」是会员功能\n"), "{s}");
    assert!(s.contains("  fallback: 助教忙，稍后再问\n"), "{s}");
}

fn simulate_assistant(
    path: &Path,
    question: &str,
    tags: &[&str],
    entitled: &[&str],
) -> (i32, String) {
    let args = SimulateArgs {
        assistant: Some(question.into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        entitled: entitled.iter().map(|t| t.to_string()).collect(),
        ..SimulateArgs::default()
    };
    let mut out = Vec::new();
    let code = cli::simulate(path, &args, &mut out);
    (code, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn simulate_assistant_says_which_rule_answers_and_whether_this_reader_may_ask() {
    let (_dir, path) = course(PROMPT);
    let (code, s) = simulate_assistant(&path, "会员问 xyzzy", &[], &[]);
    assert_eq!(code, 0, "{s}");
    assert!(s.starts_with("question: \"会员问 xyzzy\"\n"), "{s}");
    assert!(
        s.contains("matched: rule `members` (prefix \"会员问\"): the assistant answers\naction: ask the assistant (model gpt-4o-mini, may ask: readers entitled to `rust-101`"),
        "{s}"
    );
    assert!(
        s.contains("this reader may not ask: they get the teaser (simulate a member with --entitled rust-101)"),
        "{s}"
    );
    assert!(s.contains("\nindexed: "), "{s}");
    assert!(
        s.ends_with("passages for the prompt: none (no passage this reader may use shares a word with the question)\n"),
        "{s}"
    );
    let (_, s) = simulate_assistant(&path, "会员问 xyzzy", &[], &["rust-101"]);
    assert!(s.contains("\nthis reader may ask\n"), "{s}");

    let (code, s) = simulate_assistant(&path, "你好", &[], &[]);
    assert_eq!(code, 0, "{s}");
    assert!(
        s.contains("matched: nothing (no rule matched): no assistant rule answers this text"),
        "{s}"
    );
}

#[test]
fn simulate_assistant_without_an_assistant_rule_says_nothing_is_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keywords.toml");
    std::fs::write(
        &path,
        "[[rule]]\nname = \"price\"\nwhen = { exact = [\"价格\"] }\nreply = { text = \"99 元\" }\n",
    )
    .expect("write");
    let (code, s) = simulate_assistant(&path, "价格", &[], &[]);
    assert_eq!(code, 1, "{s}");
    assert!(
        s.contains("matched: rule `price` (exact keyword \"价格\"): not an assistant rule, so the assistant does not answer this text"),
        "{s}"
    );
    assert!(
        s.contains("no rule uses the assistant, so nothing is indexed"),
        "{s}"
    );
}

/// Needs the real retrieval (`Corpus::search`); with the skeleton's placeholder, which indexes
/// nothing, it says so and checks only that nothing is offered.
#[test]
fn simulate_assistant_uses_free_passages_and_paid_ones_only_for_entitled_readers() {
    let (_dir, path) = course(PROMPT);
    let rs = RuleSet::load(&path).expect("loads").rules;
    let corpus = rs.corpus().expect("an assistant rule indexes the articles");
    let (_, s) = simulate_assistant(&path, "问 所有权 退款", &[], &[]);
    if corpus.passages() == 0 {
        eprintln!("retrieval indexes nothing yet (placeholder Corpus): passages not checked");
        assert!(s.contains("passages for the prompt: none"), "{s}");
        return;
    }
    assert!(s.contains("indexed: 2 documents"), "{s}");
    assert!(s.contains("售后说明 [faq.md] free, score "), "{s}");
    assert!(
        s.contains("left out (paid):\n  - Rust 入门 [rust-101] score ")
            && s.contains("(only for readers entitled to rust-101; add --entitled rust-101)"),
        "{s}"
    );
    let (_, s) = simulate_assistant(&path, "问 所有权 退款", &[], &["rust-101"]);
    assert!(
        s.contains("Rust 入门 [rust-101] paid, `rust-101`, entitled, score "),
        "{s}"
    );
    assert!(!s.contains("left out (paid)"), "{s}");
}
