//! The assistant's pure rules of thumb: what an answer may contain, how a long one is split,
//! and the operator's blocklist.
//!
//! Pure: no I/O, no store, no clock. May depend on: aho-corasick, unicode-normalization.

/// Cleans a model's answer for a chat: control characters (but `\n`) removed, runs of more
/// than two blank lines folded, trimmed, Markdown emphasis markers (`**`, `__`, heading `#`s
/// at line starts) removed since WeChat shows them raw, and cut at `max_chars` chars on a
/// char boundary with `…` when longer.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let _ = max_chars;
    text.to_string()
}

/// Splits `text` into parts of at most `max_bytes` UTF-8 bytes each, in order, at paragraph
/// boundaries when possible, else at sentence ends (`。！？!?；;` and `.` before a space),
/// else at a char boundary. No part is empty; joining the parts gives back the text up to the
/// whitespace at the cuts.
pub fn split_parts(text: &str, max_bytes: usize) -> Vec<String> {
    let _ = max_bytes;
    vec![text.to_string()]
}

/// The operator's blocklist, matched on normalised text (NFKC, lower-case).
#[derive(Debug, Clone, Default)]
pub struct Blocklist {}

impl Blocklist {
    pub fn new(words: &[String]) -> Blocklist {
        let _ = words;
        Blocklist {}
    }

    /// Whether `text` contains any blocked word.
    pub fn hits(&self, text: &str) -> bool {
        let _ = text;
        false
    }

    pub fn is_empty(&self) -> bool {
        true
    }
}
