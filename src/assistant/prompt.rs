//! The messages sent to the model: the system prompt, the passages found for the question
//! (with their titles and, for a paid article the reader may read, the link signed for them),
//! the remembered turns, and the question.
//!
//! Pure. May depend on: [`super::client`]'s message types, `store::assistant::Turn`.

use super::client::{ChatMessage, Role};
use crate::store::assistant::Turn;

/// The system prompt of a rule without its own `system` template.
pub const DEFAULT_SYSTEM: &str = "你是这个公众号作者的助教，替作者回答读者的问题。\
只依据下面给出的作者文章段落回答；段落里没有的内容，直说不知道，并建议读者留言给作者。\
回答简短、口语化，用读者提问的语言，不用 Markdown 格式。\
引用段落时说出文章标题；有链接的，把链接原样附上。";

/// One passage put into the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source<'a> {
    pub title: &'a str,
    pub passage: &'a str,
    /// The article's link signed for this reader (paid articles they may read).
    pub link: Option<String>,
}

/// The chat: system (with the passages), the past turns, the question.
pub fn messages(
    system: &str,
    sources: &[Source<'_>],
    past: &[Turn],
    question: &str,
) -> Vec<ChatMessage> {
    let mut sys = system.trim().to_string();
    if sources.is_empty() {
        sys.push_str("\n\n（作者的文章里没有找到和这个问题相关的段落。）");
    } else {
        sys.push_str("\n\n作者文章中的相关段落：");
        for (n, s) in sources.iter().enumerate() {
            sys.push_str(&format!("\n\n[{}]《{}》", n + 1, s.title));
            if let Some(link) = &s.link {
                sys.push_str(&format!(" 链接：{link}"));
            }
            sys.push('\n');
            sys.push_str(s.passage.trim());
        }
    }
    let mut out = Vec::with_capacity(2 + past.len() * 2);
    out.push(ChatMessage {
        role: Role::System,
        content: sys,
    });
    for t in past {
        out.push(ChatMessage {
            role: Role::User,
            content: t.question.clone(),
        });
        out.push(ChatMessage {
            role: Role::Assistant,
            content: t.answer.clone(),
        });
    }
    out.push(ChatMessage {
        role: Role::User,
        content: question.to_string(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passages_go_into_the_system_prompt_with_titles_and_signed_links() {
        let sources = [
            Source {
                title: "Rust 入门",
                passage: "所有权规则……",
                link: Some("https://mp.example/a/rust-101?sig=x".into()),
            },
            Source {
                title: "常见问题",
                passage: "退款在七天内……",
                link: None,
            },
        ];
        let past = [Turn {
            at: 1,
            question: "上一个问题".into(),
            answer: "上一个回答".into(),
        }];
        let m = messages("你是助教。", &sources, &past, "借用是什么？");
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].role, Role::System);
        assert!(m[0].content.starts_with("你是助教。"));
        assert!(m[0]
            .content
            .contains("[1]《Rust 入门》 链接：https://mp.example/a/rust-101?sig=x\n所有权规则"));
        assert!(m[0].content.contains("[2]《常见问题》\n退款在七天内"));
        assert_eq!(
            (m[1].role, m[1].content.as_str()),
            (Role::User, "上一个问题")
        );
        assert_eq!(
            (m[2].role, m[2].content.as_str()),
            (Role::Assistant, "上一个回答")
        );
        assert_eq!(
            (m[3].role, m[3].content.as_str()),
            (Role::User, "借用是什么？")
        );
    }

    #[test]
    fn without_passages_the_model_is_told_so() {
        let m = messages("S", &[], &[], "Q");
        assert!(m[0].content.contains("没有找到"));
        assert_eq!(m.len(), 2);
    }
}
