//! Customer-service (客服) messages and their `message/custom/send` bodies (PROTOCOL §11).
//!
//! Pure: serde_json only.

use serde_json::{json, Value};

/// Longest text sent as one customer-service message, in Unicode scalar values (`char`s).
///
/// A passive reply is capped near 2048 bytes, but the customer-service API takes far longer
/// text; the platform answers 45002 past its own limit, which it does not publish. 4000
/// characters stays well inside what it has been seen to accept, and longer text is split into
/// several messages (see [`CustomMessage::into_parts`]) rather than refused or cut. Each part
/// counts against the 48-hour window's quota, so rules should not produce such text lightly.
pub const MAX_TEXT_CHARS: usize = 4000;

/// The single article of a `news` message (the platform refuses more than one: 45008).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewsArticle {
    pub title: String,
    pub description: String,
    /// Where a tap on the card leads.
    pub url: String,
    /// The cover image's URL.
    pub picurl: String,
}

/// A message to one subscriber through the customer-service API. `to` is the subscriber's
/// OpenID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomMessage {
    Text { to: String, content: String },
    News { to: String, article: NewsArticle },
    Image { to: String, media_id: String },
}

impl CustomMessage {
    /// The recipient's OpenID.
    pub fn to(&self) -> &str {
        match self {
            CustomMessage::Text { to, .. }
            | CustomMessage::News { to, .. }
            | CustomMessage::Image { to, .. } => to,
        }
    }

    /// The `msgtype` this message is sent as.
    pub fn msgtype(&self) -> &'static str {
        match self {
            CustomMessage::Text { .. } => "text",
            CustomMessage::News { .. } => "news",
            CustomMessage::Image { .. } => "image",
        }
    }

    /// The JSON body of `message/custom/send`, exactly as the platform documents it.
    pub fn to_body(&self) -> Value {
        match self {
            CustomMessage::Text { to, content } => json!({
                "touser": to,
                "msgtype": "text",
                "text": { "content": content },
            }),
            CustomMessage::News { to, article } => json!({
                "touser": to,
                "msgtype": "news",
                "news": { "articles": [article] },
            }),
            CustomMessage::Image { to, media_id } => json!({
                "touser": to,
                "msgtype": "image",
                "image": { "media_id": media_id },
            }),
        }
    }

    /// The messages actually sent for this one: itself, or a text longer than
    /// [`MAX_TEXT_CHARS`] split into consecutive texts (at a line break when one falls in the
    /// second half of a part, else at a character boundary).
    pub fn into_parts(self) -> Vec<CustomMessage> {
        match self {
            CustomMessage::Text { to, content } if content.chars().count() > MAX_TEXT_CHARS => {
                split_text(&content, MAX_TEXT_CHARS)
                    .into_iter()
                    .map(|content| CustomMessage::Text {
                        to: to.clone(),
                        content,
                    })
                    .collect()
            }
            other => vec![other],
        }
    }
}

fn split_text(s: &str, max_chars: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s;
    // `nth(max_chars)` exists exactly when more than `max_chars` chars remain.
    while let Some((cut, _)) = rest.char_indices().nth(max_chars) {
        let head = &rest[..cut];
        let at = match head.rfind('\n') {
            // '\n' is one byte, so the byte after it is a char boundary.
            Some(i) if i >= cut / 2 => i + 1,
            _ => cut,
        };
        parts.push(head[..at].to_string());
        rest = &rest[at..];
    }
    parts.push(rest.to_string());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_up_to_the_limit_is_one_message() {
        let content = "字".repeat(MAX_TEXT_CHARS);
        let msg = CustomMessage::Text {
            to: "o1".into(),
            content: content.clone(),
        };
        assert_eq!(msg.clone().into_parts(), vec![msg]);
    }

    #[test]
    fn long_text_splits_into_parts_that_join_back() {
        let content = format!("{}\n{}", "字".repeat(3000), "b".repeat(6000));
        let parts = CustomMessage::Text {
            to: "o1".into(),
            content: content.clone(),
        }
        .into_parts();
        let texts: Vec<String> = parts
            .iter()
            .map(|p| match p {
                CustomMessage::Text { to, content } => {
                    assert_eq!(to, "o1");
                    content.clone()
                }
                other => panic!("not text: {other:?}"),
            })
            .collect();
        assert!(texts.iter().all(|t| t.chars().count() <= MAX_TEXT_CHARS));
        assert_eq!(texts.concat(), content);
        // The first cut falls after the line break, not in the middle of the Chinese run.
        assert_eq!(texts[0], format!("{}\n", "字".repeat(3000)));
        assert_eq!(texts.len(), 3);
    }

    #[test]
    fn split_without_line_breaks_cuts_at_char_boundaries() {
        let parts = split_text(&"é".repeat(10), 4);
        assert_eq!(parts, vec!["éééé", "éééé", "éé"]);
    }

    #[test]
    fn news_body_has_exactly_one_article() {
        let body = CustomMessage::News {
            to: "o1".into(),
            article: NewsArticle {
                title: "t".into(),
                description: "d".into(),
                url: "https://u".into(),
                picurl: "https://p".into(),
            },
        }
        .to_body();
        assert_eq!(
            body,
            json!({"touser":"o1","msgtype":"news","news":{"articles":[
                {"title":"t","description":"d","url":"https://u","picurl":"https://p"}]}})
        );
    }
}
