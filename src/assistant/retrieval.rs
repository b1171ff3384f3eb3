//! Passages of the creator's own articles, indexed for the assistant: split at load, segmented
//! (Chinese words with jieba, Latin words lower-cased), ranked with BM25.
//!
//! Pure: built from texts the rules loader read, searched per question; no I/O, no store.
//! A paid article's passages carry its id, and the caller decides who may read them.
//! May depend on: jieba-rs, unicode-normalization.

/// How a document is written, so its markup can be stripped before splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    Html,
    Markdown,
    Text,
}

/// One source document, as the rules loader found it.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Stable id: the `[[article]]` id for an article body, else the file's path relative to
    /// the templates dir (`faq.md`).
    pub id: String,
    pub title: String,
    /// `Some(article id)` when the text is a paywalled article's body: its passages are for
    /// readers entitled to it only.
    pub paid_article: Option<String>,
    pub format: DocFormat,
    /// The raw text (HTML, Markdown or plain).
    pub text: String,
}

/// One passage found for a question.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a> {
    pub doc_id: &'a str,
    pub title: &'a str,
    pub paid_article: Option<&'a str>,
    /// The passage's plain text (markup stripped), at most about [`PASSAGE_CHARS`] chars.
    pub passage: &'a str,
    pub score: f32,
}

/// Target passage length in chars: a paragraph or two, enough context per hit while three
/// hits stay well inside a small model's prompt.
pub const PASSAGE_CHARS: usize = 400;

/// The index over every passage of a rule set's documents.
#[derive(Debug, Default)]
pub struct Corpus {}

impl Corpus {
    /// Splits, segments and indexes `docs`. Never fails: an empty or markup-only document
    /// gives no passages.
    pub fn build(docs: Vec<Doc>) -> Corpus {
        let _ = docs;
        Corpus {}
    }

    /// The best `k` passages for `question`, best first, among those `may_read` allows
    /// (called with the paid article's id; free passages are always allowed). Passages with
    /// no query term get no hit.
    pub fn search<'a>(
        &'a self,
        question: &str,
        k: usize,
        may_read: &dyn Fn(&str) -> bool,
    ) -> Vec<Hit<'a>> {
        let _ = (question, k, may_read);
        Vec::new()
    }

    /// Documents indexed.
    pub fn docs(&self) -> usize {
        0
    }

    /// Passages indexed.
    pub fn passages(&self) -> usize {
        0
    }
}
