//! Passages of the creator's own articles, indexed for the assistant: split at load, segmented
//! (Chinese words with jieba, Latin words lower-cased), ranked with BM25.
//!
//! Pure: built from texts the rules loader read, searched per question; no I/O, no store.
//! A paid article's passages carry its id, and the caller decides who may read them.
//! May depend on: jieba-rs, unicode-normalization, foldhash.
//!
//! The path of a document: markup stripped into blocks (headings and paragraphs), paragraphs
//! merged or split into passages of about [`PASSAGE_CHARS`] chars, each passage headed by its
//! section's heading (the heading's words help ranking and give the model context), then
//! tokens counted per passage. The title's tokens count in every passage of its document.

use std::sync::OnceLock;

use jieba_rs::Jieba;
use unicode_normalization::UnicodeNormalization;

/// How a document is written, so its markup can be stripped before splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    Html,
    Markdown,
    Text,
}

impl DocFormat {
    /// The format a file's name says: `.html`/`.htm`, `.md`/`.markdown` (any case), else
    /// plain text.
    pub fn of_path(path: &str) -> DocFormat {
        let name = path
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(path)
            .to_ascii_lowercase();
        if name.ends_with(".html") || name.ends_with(".htm") {
            DocFormat::Html
        } else if name.ends_with(".md") || name.ends_with(".markdown") {
            DocFormat::Markdown
        } else {
            DocFormat::Text
        }
    }
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

/// BM25's term-frequency saturation and length normalisation: the usual values, which suit
/// passages of similar length.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// A heading kept as a passage's context is cut to this many chars, so that heading and
/// body together stay within [`PASSAGE_CHARS`].
const HEADING_CHARS: usize = 80;

/// The index over every passage of a rule set's documents.
#[derive(Debug, Default)]
pub struct Corpus {
    docs: Vec<DocMeta>,
    passages: Vec<Passage>,
    /// term → (passage index, term frequency), passage indexes ascending.
    postings: foldhash::HashMap<Box<str>, Vec<(u32, u32)>>,
    /// Mean passage length in tokens (title tokens included).
    avg_len: f32,
}

#[derive(Debug)]
struct DocMeta {
    id: String,
    title: String,
    paid_article: Option<String>,
}

#[derive(Debug)]
struct Passage {
    doc: u32,
    text: String,
    /// Tokens counted for this passage, title tokens included.
    len: u32,
}

impl Corpus {
    /// Splits, segments and indexes `docs`. Never fails: an empty or markup-only document
    /// gives no passages.
    pub fn build(docs: Vec<Doc>) -> Corpus {
        let mut corpus = Corpus::default();
        let mut total_len: u64 = 0;
        let mut counts: foldhash::HashMap<String, u32> = foldhash::HashMap::default();
        for doc in docs {
            let texts = split_passages(&blocks(doc.format, &doc.text));
            if texts.is_empty() {
                continue;
            }
            let title_tokens = tokens(&doc.title);
            let doc_index = corpus.docs.len() as u32;
            corpus.docs.push(DocMeta {
                id: doc.id,
                title: doc.title,
                paid_article: doc.paid_article,
            });
            for text in texts {
                counts.clear();
                let mut len: u32 = 0;
                for token in tokens(&text)
                    .into_iter()
                    .chain(title_tokens.iter().cloned())
                {
                    *counts.entry(token).or_insert(0) += 1;
                    len += 1;
                }
                let index = corpus.passages.len() as u32;
                for (term, tf) in counts.drain() {
                    corpus
                        .postings
                        .entry(term.into_boxed_str())
                        .or_default()
                        .push((index, tf));
                }
                total_len += u64::from(len);
                corpus.passages.push(Passage {
                    doc: doc_index,
                    text,
                    len,
                });
            }
        }
        if !corpus.passages.is_empty() {
            corpus.avg_len = (total_len as f64 / corpus.passages.len() as f64) as f32;
        }
        corpus
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
        if k == 0 || self.passages.is_empty() {
            return Vec::new();
        }
        let mut terms = tokens(question);
        terms.sort_unstable();
        terms.dedup();
        let n = self.passages.len() as f32;
        // avg_len > 0 whenever a passage has a token; guard the division all the same.
        let avg_len = self.avg_len.max(1.0);
        let mut scores = vec![0f32; self.passages.len()];
        let mut any = false;
        for term in &terms {
            let Some(postings) = self.postings.get(term.as_str()) else {
                continue;
            };
            any = true;
            let df = postings.len() as f32;
            // The "+1" form of BM25's idf: never negative, so a term in most passages still
            // counts a little instead of pushing its passages down.
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(passage, tf) in postings {
                let tf = tf as f32;
                let len = self.passages[passage as usize].len as f32;
                let norm = K1 * (1.0 - B + B * len / avg_len);
                scores[passage as usize] += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        if !any {
            return Vec::new();
        }
        // may_read is asked once per document, not once per passage.
        let mut readable: Vec<Option<bool>> = vec![None; self.docs.len()];
        let mut ranked: Vec<(f32, u32)> = scores
            .iter()
            .enumerate()
            .filter(|(_, &s)| s > 0.0 && s.is_finite())
            .map(|(i, &s)| (s, i as u32))
            .collect();
        // Ties go to the earlier passage (document order, then position in it), so the same
        // corpus always answers the same question the same way.
        ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut hits = Vec::with_capacity(k.min(ranked.len()));
        for (score, index) in ranked {
            let passage = &self.passages[index as usize];
            let doc = &self.docs[passage.doc as usize];
            if let Some(article) = doc.paid_article.as_deref() {
                let allowed =
                    *readable[passage.doc as usize].get_or_insert_with(|| may_read(article));
                if !allowed {
                    continue;
                }
            }
            hits.push(Hit {
                doc_id: &doc.id,
                title: &doc.title,
                paid_article: doc.paid_article.as_deref(),
                passage: &passage.text,
                score,
            });
            if hits.len() == k {
                break;
            }
        }
        hits
    }

    /// Documents indexed.
    pub fn docs(&self) -> usize {
        self.docs.len()
    }

    /// Passages indexed.
    pub fn passages(&self) -> usize {
        self.passages.len()
    }
}

/// Loads jieba's embedded dictionary now rather than on the first question or the first load
/// (about 100 ms and tens of MB, once per process). Optional: [`Corpus::build`] and
/// [`Corpus::search`] load it when they first need it.
pub fn warm_up() {
    let _ = jieba();
}

fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

// ── Markup → blocks ─────────────────────────────────────────────────────────────────────────

/// A run of text between paragraph boundaries.
#[derive(Debug, Clone, PartialEq)]
struct Block {
    heading: bool,
    text: String,
}

fn blocks(format: DocFormat, text: &str) -> Vec<Block> {
    match format {
        DocFormat::Html => html_blocks(&strip_jinja(text)),
        DocFormat::Markdown => markdown_blocks(text),
        DocFormat::Text => text_blocks(text),
    }
}

/// Removes minijinja's `{{ … }}`, `{% … %}` and `{# … #}`: article bodies are templates, and
/// what they expand to (a reader's name, a link) is not the creator's prose. An unclosed tag
/// runs to the end, as minijinja would refuse it anyway.
fn strip_jinja(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let close = match rest[start..].chars().nth(1) {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        out.push_str(&rest[..start]);
        match rest[start + 2..].find(close) {
            Some(end) => {
                rest = &rest[start + 2 + end + close.len()..];
                // A tag between words stands for something: keep the words apart.
                out.push(' ');
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Tags whose end (or start) ends a paragraph.
const HTML_BLOCK_TAGS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "br",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "td",
    "th",
    "tr",
    "ul",
];

fn is_heading_tag(name: &str) -> bool {
    matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
}

/// A small HTML reader for the creator's own bodies (not a browser): tags dropped, the
/// contents of `<script>`, `<style>` and comments dropped, entities decoded, whitespace
/// collapsed except inside `<pre>`, block tags ending paragraphs, `<h1>`–`<h6>` as headings.
fn html_blocks(html: &str) -> Vec<Block> {
    let mut out = BlockSink::default();
    let mut pre_depth = 0usize;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(&decode_entities(rest), pre_depth > 0);
            break;
        };
        if lt > 0 {
            out.text(&decode_entities(&rest[..lt]), pre_depth > 0);
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let after_lt = &rest[1..];
        let closing = after_lt.starts_with('/');
        let name_part = if closing { &after_lt[1..] } else { after_lt };
        let name_len = name_part
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(name_part.len());
        let starts_tag = name_part.starts_with(|c: char| c.is_ascii_alphabetic())
            || (!closing && name_part.starts_with('!'));
        if !starts_tag {
            // A lone `<` (as in `a < b`) is text.
            out.text("<", pre_depth > 0);
            rest = after_lt;
            continue;
        }
        let name = name_part[..name_len].to_ascii_lowercase();
        let tag_end = find_tag_end(rest);
        rest = tag_end.map_or("", |end| &rest[end + 1..]);
        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            rest = find_ascii_ci(rest, &close)
                .map(|at| &rest[at..])
                .and_then(|r| r.find('>').map(|end| &r[end + 1..]))
                .unwrap_or("");
            continue;
        }
        if is_heading_tag(&name) {
            out.end_paragraph();
            out.heading = !closing;
        } else if HTML_BLOCK_TAGS.contains(&name.as_str()) {
            if name == "pre" {
                pre_depth = if closing {
                    pre_depth.saturating_sub(1)
                } else {
                    pre_depth + 1
                };
            }
            out.end_paragraph();
        }
    }
    out.finish()
}

/// The index of the `>` ending the tag that starts `tag` (quoted attribute values may hold
/// `>`), or `None` when the tag never ends.
fn find_tag_end(tag: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Byte index of `needle` (ASCII) in `haystack`, ignoring ASCII case.
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Decodes the named entities an editor writes and every numeric one; an unknown entity is
/// left as written.
fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // The longest entity written is `&#x10FFFF;`: look no further for its `;`, so that
        // text full of `&` stays linear to read.
        let decoded = rest.as_bytes()[1..]
            .iter()
            .take(10)
            .position(|&b| b == b';')
            .and_then(|semi| entity(&rest[1..=semi]).map(|c| (c, semi + 2)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ensp" | "emsp" | "thinsp" => ' ',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "ldquo" => '“',
        "rdquo" => '”',
        "lsquo" => '‘',
        "rsquo" => '’',
        "middot" => '·',
        "laquo" => '«',
        "raquo" => '»',
        "copy" => '©',
        "reg" => '®',
        "times" => '×',
        "yen" => '¥',
        _ => return None,
    })
}

/// Collects text into blocks: whitespace collapsed (kept inside `<pre>`), empty blocks dropped.
#[derive(Default)]
struct BlockSink {
    blocks: Vec<Block>,
    current: String,
    heading: bool,
}

impl BlockSink {
    fn text(&mut self, text: &str, preformatted: bool) {
        if preformatted {
            self.current.push_str(text);
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                if !self.current.is_empty() && !self.current.ends_with(' ') {
                    self.current.push(' ');
                }
            } else {
                self.current.push(c);
            }
        }
    }

    fn end_paragraph(&mut self) {
        let text = clean_block(&self.current);
        if !text.is_empty() {
            self.blocks.push(Block {
                heading: self.heading,
                text,
            });
        }
        self.current.clear();
    }

    fn finish(mut self) -> Vec<Block> {
        self.end_paragraph();
        self.blocks
    }
}

/// Trims a block's lines and drops blank ones (code keeps its line breaks, not its blank
/// lines or indentation, which carry no words).
fn clean_block(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// Markdown as creators write it: ATX and setext headings, fenced code kept as text, lists
/// and quotes unmarked, emphasis and inline code marks dropped, links and images as their text.
fn markdown_blocks(md: &str) -> Vec<Block> {
    let mut out = BlockSink::default();
    let mut fence: Option<&str> = None;
    let mut lines = md.lines().peekable();
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        if let Some(marker) = fence {
            let closes = line.starts_with(marker)
                && marker
                    .chars()
                    .next()
                    .is_some_and(|m| line.trim_start_matches(m).trim().is_empty());
            if closes {
                fence = None;
                out.end_paragraph();
            } else {
                out.current.push_str(line);
                out.current.push('\n');
            }
            continue;
        }
        if line.starts_with("```") || line.starts_with("~~~") {
            out.end_paragraph();
            fence = Some(&line[..3]);
            continue;
        }
        if line.is_empty() || is_thematic_break(line) {
            out.end_paragraph();
            continue;
        }
        if let Some(text) = atx_heading(line) {
            out.end_paragraph();
            out.heading = true;
            out.text(&markdown_inline(text), false);
            out.end_paragraph();
            out.heading = false;
            continue;
        }
        // Setext: a line underlined by === or --- is a heading.
        if let Some(next) = lines.peek() {
            let next = next.trim();
            if !next.is_empty()
                && (next.chars().all(|c| c == '=') || next.chars().all(|c| c == '-'))
                && out.current.is_empty()
            {
                lines.next();
                out.heading = true;
                out.text(&markdown_inline(line), false);
                out.end_paragraph();
                out.heading = false;
                continue;
            }
        }
        if is_link_definition(line) {
            continue;
        }
        let item = strip_block_marks(line);
        if !out.current.is_empty() {
            // A list item or a quoted line is its own line; a wrapped line joins with a space.
            out.current
                .push(if item.len() != line.len() { '\n' } else { ' ' });
        }
        out.text(&markdown_inline(item), false);
    }
    out.finish()
}

fn atx_heading(line: &str) -> Option<&str> {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim())
}

fn is_thematic_break(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3
        && ["*", "-", "_"]
            .iter()
            .any(|m| compact.chars().all(|c| c.to_string() == *m))
}

/// `[ref]: https://…` lines define link targets and carry no prose.
fn is_link_definition(line: &str) -> bool {
    line.starts_with('[') && line.find("]:").is_some_and(|at| !line[1..at].contains(']'))
}

/// Drops a quote's `>` and a list item's bullet or number.
fn strip_block_marks(line: &str) -> &str {
    let mut line = line;
    while let Some(rest) = line.strip_prefix('>') {
        line = rest.trim_start();
    }
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return rest.trim_start();
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return rest.trim_start();
        }
    }
    line
}

/// Inline Markdown to plain text: `[t](u)` and `![t](u)` → t, `[t][r]` → t, `<https://…>`
/// dropped, emphasis marks (`*`, `**`, `__`, `~~`) and code backticks dropped.
fn markdown_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '!' if chars.get(i + 1) == Some(&'[') && markdown_link(&chars, i + 1).is_some() => {
                i += 1;
            }
            '[' => {
                if let Some((label_end, after)) = markdown_link(&chars, i) {
                    out.extend(&chars[i + 1..label_end]);
                    i = after;
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            '<' => {
                let end = chars[i..]
                    .iter()
                    .take(MARKDOWN_SCAN_CHARS)
                    .position(|&c| c == '>')
                    .map(|p| i + p);
                let autolink = end.is_some_and(|e| {
                    let inner = &chars[i + 1..e];
                    inner.contains(&'@') || inner.windows(3).any(|w| w == [':', '/', '/'])
                });
                if let (Some(e), true) = (end, autolink) {
                    i = e + 1;
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            '*' | '`' => i += 1,
            '_' | '~' if chars.get(i + 1) == Some(&c) => i += 2,
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// How far a link's label, a link's target or an autolink is looked for: far enough for any
/// real one, and a line of a thousand `[` or `<` stays linear to read.
const MARKDOWN_SCAN_CHARS: usize = 500;

/// For `[label](url)` or `[label][ref]` starting at `open`: the index of the label's `]` and
/// the index after the whole link.
fn markdown_link(chars: &[char], open: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut close = None;
    for (j, &c) in chars
        .iter()
        .enumerate()
        .skip(open)
        .take(MARKDOWN_SCAN_CHARS)
    {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    let closer = match chars.get(close + 1) {
        Some('(') => ')',
        Some('[') => ']',
        _ => return None,
    };
    let end = chars[close + 2..]
        .iter()
        .take(MARKDOWN_SCAN_CHARS)
        .position(|&c| c == closer)?;
    Some((close, close + 2 + end + 1))
}

fn text_blocks(text: &str) -> Vec<Block> {
    let mut out = BlockSink::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            out.end_paragraph();
        } else {
            out.text(line, false);
            out.text(" ", false);
        }
    }
    out.finish()
}

// ── Blocks → passages ───────────────────────────────────────────────────────────────────────

/// Merges paragraphs up to about [`PASSAGE_CHARS`], splits a longer one at sentence ends,
/// and starts each passage with its section's heading.
fn split_passages(blocks: &[Block]) -> Vec<String> {
    let mut out = Passages::default();
    for block in blocks {
        if block.heading {
            out.flush();
            out.heading = match block.text.char_indices().nth(HEADING_CHARS) {
                Some((cut, _)) => block.text[..cut].to_owned(),
                None => block.text.clone(),
            };
        } else {
            out.paragraph(&block.text);
        }
    }
    out.flush();
    out.done
}

/// The passages of one document, as they are filled.
#[derive(Default)]
struct Passages {
    done: Vec<String>,
    /// The current section's heading (cut to [`HEADING_CHARS`]), or empty before the first.
    heading: String,
    /// The passage being filled: the heading, then paragraphs joined by newlines.
    current: String,
    current_chars: usize,
    /// Whether `current` holds a paragraph yet (a heading alone is no passage).
    has_body: bool,
}

impl Passages {
    /// Chars the heading takes at the start of a passage, its newline included.
    fn heading_chars(&self) -> usize {
        match self.heading.chars().count() {
            0 => 0,
            n => n + 1,
        }
    }

    fn paragraph(&mut self, text: &str) {
        let chars = text.chars().count();
        let heading_chars = self.heading_chars();
        if heading_chars + chars > PASSAGE_CHARS {
            self.flush();
            // HEADING_CHARS keeps the budget above half a passage.
            for chunk in chunk_sentences(text, PASSAGE_CHARS - heading_chars) {
                self.start();
                self.current.push_str(&chunk);
                self.has_body = true;
                self.flush();
            }
            return;
        }
        if self.has_body && self.current_chars + 1 + chars > PASSAGE_CHARS {
            self.flush();
        }
        if self.has_body {
            self.current.push('\n');
            self.current_chars += 1;
        } else {
            self.start();
        }
        self.current.push_str(text);
        self.current_chars += chars;
        self.has_body = true;
    }

    /// Begins a passage with the section's heading.
    fn start(&mut self) {
        if !self.heading.is_empty() {
            self.current.push_str(&self.heading);
            self.current.push('\n');
        }
        self.current_chars = self.heading_chars();
    }

    fn flush(&mut self) {
        if self.has_body {
            self.done.push(std::mem::take(&mut self.current));
        }
        self.current.clear();
        self.current_chars = 0;
        self.has_body = false;
    }
}

/// Splits `text` into chunks of at most `budget` chars, at sentence ends where it can.
fn chunk_sentences(text: &str, budget: usize) -> Vec<String> {
    let budget = budget.max(1);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut current_chars = 0usize;
    for sentence in sentences(text) {
        for piece in hard_split(sentence, budget) {
            let n = piece.chars().count();
            if current_chars > 0 && current_chars + n > budget {
                chunks.push(std::mem::take(&mut current).trim().to_owned());
                current_chars = 0;
            }
            current.push_str(piece);
            current_chars += n;
        }
    }
    if !current.trim().is_empty() {
        chunks.push(current.trim().to_owned());
    }
    chunks.retain(|c| !c.is_empty());
    chunks
}

/// Sentences of `text`, each with its closing punctuation (and any closing quote): after
/// 。！？ always, after `.`, `!`, `?` when a space or the end follows (so `3.14` and `e.g.x`
/// stay whole).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let ends = match c {
            '。' | '！' | '？' | '\n' => true,
            '.' | '!' | '?' => iter.peek().is_none_or(|&(_, n)| n.is_whitespace()),
            _ => false,
        };
        if ends {
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = iter.peek() {
                if matches!(n, '”' | '’' | '"' | '\'' | '）' | ')' | '」' | '』') {
                    end = j + n.len_utf8();
                    iter.next();
                } else {
                    break;
                }
            }
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// A sentence longer than `budget` chars (a listing, text without punctuation) cut at the
/// last space before the limit, or at the limit.
fn hard_split(sentence: &str, budget: usize) -> Vec<&str> {
    let limit = budget.max(1);
    let mut out = Vec::new();
    let mut rest = sentence;
    // Looking `limit` chars ahead per cut keeps a megabyte without punctuation linear.
    while let Some((cut, _)) = rest.char_indices().nth(limit) {
        let at = rest[..cut]
            .rfind(char::is_whitespace)
            .filter(|&at| at > cut / 2)
            .map_or(cut, |at| {
                at + rest[at..].chars().next().map_or(1, char::len_utf8)
            });
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

// ── Tokens ──────────────────────────────────────────────────────────────────────────────────

/// Words that say how a question is asked, not what it is about.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    // Chinese
    "的", "了", "是", "在", "和", "吗", "呢", "吧", "啊", "呀", "嘛", "么", "怎么", "怎样",
    "怎么样", "什么", "如何", "为什么", "为何", "哪些", "哪个", "哪里", "我", "你", "他", "她",
    "它", "我们", "你们", "他们", "这", "那", "这个", "那个", "这些", "那些", "有", "就", "都",
    "也", "还", "要", "会", "能", "可以", "与", "及", "或", "一个", "请问", "一下", "应该",
    "需要", "是不是", "有没有", "不", "没有", "被", "把", "让", "给", "对", "从", "到", "又",
    "很", "更", "最", "得", "地", "着", "过", "个", "之", "其", "而", "但", "但是", "如果",
    "所以", "因为", "自己", "时候",
    // English (after plural folding: `does` is seen as `doe`)
    "a", "an", "the", "of", "to", "is", "are", "was", "were", "be", "been", "being", "am",
    "how", "what", "why", "when", "where", "which", "who", "whom", "do", "doe", "did",
    "i", "you", "he", "she", "it", "its", "we", "they", "me", "my", "your", "our", "their",
    "in", "on", "at", "for", "with", "and", "or", "but", "not", "no", "so", "if", "than",
    "then", "this", "that", "these", "those", "there", "from", "by", "as", "about", "into",
    "can", "could", "should", "would", "will", "shall", "may", "might", "must", "just",
    "any", "some", "here", "has", "have", "had", "don", "doesn", "isn", "aren",
];

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}'
        | '\u{3007}')
}

/// The index terms of `text`: NFKC and lower case first (full-width letters, ligatures and
/// capitals fold), then runs of Han characters cut by jieba in search mode (a long word gives
/// its shorter words too), runs of other letters and digits as words (ASCII plurals folded),
/// punctuation and stop words dropped.
fn tokens(text: &str) -> Vec<String> {
    let normal: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let mut out = Vec::new();
    let mut run_start: Option<(usize, bool)> = None;
    for (i, c) in normal.char_indices() {
        let class = if is_han(c) {
            Some(true)
        } else if c.is_alphanumeric() {
            Some(false)
        } else {
            None
        };
        match (run_start, class) {
            (Some((_, han)), Some(now)) if han == now => {}
            (Some((start, han)), _) => {
                push_run(&normal[start..i], han, &mut out);
                run_start = class.map(|h| (i, h));
            }
            (None, Some(now)) => run_start = Some((i, now)),
            (None, None) => {}
        }
    }
    if let Some((start, han)) = run_start {
        push_run(&normal[start..], han, &mut out);
    }
    out
}

/// One run of Han characters, or of other letters and digits, into `out`.
fn push_run(run: &str, han: bool, out: &mut Vec<String>) {
    if han {
        for token in jieba().cut_for_search(run, true) {
            let word = token.word;
            if word.chars().all(is_han) && !is_stop_word(word) {
                out.push(word.to_owned());
            }
        }
        return;
    }
    let word = fold_plural(run);
    // A lone Latin letter (the `s` of `Rust's`) says nothing; a digit or another script's
    // letter may.
    let meaningful =
        word.chars().nth(1).is_some() || word.chars().any(|c| c.is_ascii_digit() || !c.is_ascii());
    if meaningful && !is_stop_word(word) {
        out.push(word.to_owned());
    }
}

/// `goroutines` → `goroutine`, `containers` → `container`; `class`, `status`, `analysis` and
/// short words stay. Crude, but applied to questions and passages alike.
fn fold_plural(word: &str) -> &str {
    if word.len() > 3
        && word.is_ascii()
        && word.ends_with('s')
        && !word.ends_with("ss")
        && !word.ends_with("us")
        && !word.ends_with("is")
    {
        &word[..word.len() - 1]
    } else {
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc(id: &str, title: &str, format: DocFormat, text: &str) -> Doc {
        Doc {
            id: id.to_owned(),
            title: title.to_owned(),
            paid_article: None,
            format,
            text: text.to_owned(),
        }
    }

    fn all(_: &str) -> bool {
        true
    }

    fn texts(blocks: &[Block]) -> Vec<(bool, &str)> {
        blocks
            .iter()
            .map(|b| (b.heading, b.text.as_str()))
            .collect()
    }

    #[test]
    fn html_tags_scripts_styles_and_comments_are_stripped_and_entities_decoded() {
        let html = r#"<section class="a>b"><h2>所有权&amp;借用</h2>
            <style>.x { color: red }</style><script>var s = "<p>no</p>";</script>
            <!-- a note for the editor -->
            <p>借用（<code>&amp;T</code>、<code>&amp;mut T</code>）&nbsp;不转移&#25152;&#x6709;权 &unknown; a &lt; b</p>
            <ul><li>第一</li><li>第二</li></ul></section>"#;
        assert_eq!(
            texts(&html_blocks(html)),
            vec![
                (true, "所有权&借用"),
                (false, "借用（&T、&mut T） 不转移所有权 &unknown; a < b"),
                (false, "第一"),
                (false, "第二"),
            ]
        );
    }

    #[test]
    fn html_pre_keeps_its_lines_and_an_unclosed_tag_ends_the_text() {
        let html =
            "<pre><code>let s = 1;\n\n  let t = s;\n</code></pre><p>after</p><p>cut <a href=\"x";
        assert_eq!(
            texts(&html_blocks(html)),
            vec![
                (false, "let s = 1;\nlet t = s;"),
                (false, "after"),
                (false, "cut")
            ]
        );
    }

    #[test]
    fn template_tags_in_an_article_body_are_not_prose() {
        let html = "<p>你好，{{ reader.name }}！{% if member %}会员专享{% endif %}{# note #}内容</p><p>{{ broken";
        assert_eq!(
            texts(&blocks(DocFormat::Html, html)),
            vec![(false, "你好， ！ 会员专享 内容")]
        );
    }

    #[test]
    fn markdown_headings_emphasis_links_lists_and_code_fences() {
        let md = "# 标题 #\n\n一段**加粗**和*斜体*，见[官方文档](https://doc.rust-lang.org)与![图](a.png)。\n\
                  第二行 `code` 与 <https://x.y> 和 [引用][r]。\n\n[r]: https://example.com\n\n\
                  - 第一项\n- 第二项\n\n> 引用的话\n\nSetext 标题\n---\n\n```rust\nlet x = 1;\n\nprintln!(\"{x}\");\n```\n\n***\n尾声";
        assert_eq!(
            texts(&markdown_blocks(md)),
            vec![
                (true, "标题"),
                (
                    false,
                    "一段加粗和斜体，见官方文档与图。 第二行 code 与 和 引用。"
                ),
                (false, "第一项\n第二项"),
                (false, "引用的话"),
                (true, "Setext 标题"),
                (false, "let x = 1;\nprintln!(\"{x}\");"),
                (false, "尾声"),
            ]
        );
    }

    #[test]
    fn short_paragraphs_merge_under_their_heading_and_a_new_heading_starts_a_passage() {
        let blocks = vec![
            Block {
                heading: true,
                text: "一".into(),
            },
            Block {
                heading: false,
                text: "甲。".into(),
            },
            Block {
                heading: false,
                text: "乙。".into(),
            },
            Block {
                heading: true,
                text: "二".into(),
            },
            Block {
                heading: false,
                text: "丙。".into(),
            },
        ];
        assert_eq!(split_passages(&blocks), vec!["一\n甲。\n乙。", "二\n丙。"]);
    }

    #[test]
    fn a_long_paragraph_is_split_at_sentence_ends_and_each_part_keeps_the_heading() {
        let sentence = "这是一句用来凑长度的话，它本身并不长。";
        let paragraph = sentence.repeat(60);
        let blocks = vec![
            Block {
                heading: true,
                text: "小节".into(),
            },
            Block {
                heading: false,
                text: paragraph.clone(),
            },
        ];
        let passages = split_passages(&blocks);
        assert!(passages.len() >= 3, "{} passages", passages.len());
        for p in &passages {
            assert!(p.starts_with("小节\n"), "{p}");
            assert!(
                p.chars().count() <= PASSAGE_CHARS,
                "{} chars",
                p.chars().count()
            );
            assert!(p.ends_with('。'), "cut mid-sentence: {p}");
        }
        let rejoined: String = passages.iter().map(|p| &p["小节\n".len()..]).collect();
        assert_eq!(rejoined, paragraph);
    }

    #[test]
    fn paragraphs_over_the_budget_go_to_the_next_passage_and_text_without_punctuation_is_cut() {
        let para = "字".repeat(250);
        let blocks = vec![
            Block {
                heading: false,
                text: para.clone(),
            },
            Block {
                heading: false,
                text: para.clone(),
            },
            Block {
                heading: false,
                text: "x".repeat(1000),
            },
        ];
        let passages = split_passages(&blocks);
        assert_eq!(passages[0], para);
        assert_eq!(passages[1], para);
        assert!(passages.len() >= 5);
        assert!(passages.iter().all(|p| p.chars().count() <= PASSAGE_CHARS));
        assert_eq!(passages[2..].concat(), "x".repeat(1000));
    }

    #[test]
    fn english_sentences_end_at_a_stop_followed_by_space_not_inside_numbers() {
        assert_eq!(
            sentences("Version 3.14 is out! Really? Yes. 好的。再见"),
            vec![
                "Version 3.14 is out!",
                " Really?",
                " Yes.",
                " 好的。",
                "再见"
            ]
        );
    }

    #[test]
    fn a_files_name_says_its_format() {
        assert_eq!(
            DocFormat::of_path("articles/rust-101.html"),
            DocFormat::Html
        );
        assert_eq!(DocFormat::of_path("extra/FAQ.HTM"), DocFormat::Html);
        assert_eq!(DocFormat::of_path("notes/faq.md"), DocFormat::Markdown);
        assert_eq!(
            DocFormat::of_path("notes\\guide.markdown"),
            DocFormat::Markdown
        );
        assert_eq!(DocFormat::of_path("notes.txt"), DocFormat::Text);
        assert_eq!(DocFormat::of_path("md"), DocFormat::Text);
    }

    #[test]
    fn tokens_fold_case_width_and_plurals_and_drop_stop_words() {
        let t = tokens("How do Goroutines and ＣＨＡＮＮＥＬＳ work? 怎么理解所有权的概念");
        for want in ["goroutine", "channel", "work", "所有权", "概念"] {
            assert!(t.iter().any(|w| w == want), "{want} missing from {t:?}");
        }
        for stop in ["how", "do", "and", "怎么", "的"] {
            assert!(!t.iter().any(|w| w == stop), "{stop} kept in {t:?}");
        }
    }

    fn sample() -> Corpus {
        Corpus::build(vec![
            doc(
                "rust",
                "Rust 所有权",
                DocFormat::Markdown,
                "## 移动\n\n把一个 String 赋给另一个变量，所有权就移动了。\n\n## 借用\n\n借用让你不转移所有权也能使用值。",
            ),
            doc(
                "go",
                "Go 并发",
                DocFormat::Html,
                "<h2>goroutine</h2><p>goroutine 是很轻的线程，用 go 关键字启动。</p><p>channel 在 goroutine 之间传递数据。</p>",
            ),
            Doc {
                paid_article: Some("money".into()),
                ..doc("money", "理财入门", DocFormat::Text, "指数基金适合长期定投。\n\n先存够应急金，再考虑投资。")
            },
        ])
    }

    #[test]
    fn the_right_article_ranks_first() {
        let corpus = sample();
        assert_eq!((corpus.docs(), corpus.passages()), (3, 4));
        let hits = corpus.search("借用是什么意思？", 3, &all);
        assert_eq!(hits[0].doc_id, "rust");
        assert!(hits[0].passage.starts_with("借用\n"), "{}", hits[0].passage);
        assert_eq!(
            corpus.search("How do goroutines talk?", 3, &all)[0].doc_id,
            "go"
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(hits.iter().all(|h| h.score > 0.0));
    }

    #[test]
    fn a_paid_articles_passages_are_only_for_readers_who_may_read_it() {
        let corpus = sample();
        let asked = std::cell::RefCell::new(Vec::new());
        let member = |id: &str| {
            asked.borrow_mut().push(id.to_owned());
            id == "money"
        };
        let hits = corpus.search("指数基金定投", 3, &member);
        assert_eq!(hits[0].doc_id, "money");
        assert_eq!(hits[0].paid_article, Some("money"));
        assert_eq!(*asked.borrow(), vec!["money"], "asked once per document");
        let stranger = |_: &str| false;
        assert!(corpus.search("指数基金定投", 3, &stranger).is_empty());
        // Free passages never ask.
        let never = |_: &str| -> bool { panic!("asked about a free passage") };
        assert_eq!(corpus.search("goroutine", 3, &never)[0].doc_id, "go");
    }

    #[test]
    fn a_question_with_no_indexed_word_finds_nothing() {
        let corpus = sample();
        assert!(corpus.search("天气预报", 3, &all).is_empty());
        assert!(corpus.search("？！。", 3, &all).is_empty());
        assert!(corpus.search("", 3, &all).is_empty());
        assert!(corpus.search("所有权", 0, &all).is_empty());
        assert!(Corpus::build(Vec::new())
            .search("所有权", 3, &all)
            .is_empty());
    }

    #[test]
    fn empty_and_markup_only_documents_give_no_passages() {
        let corpus = Corpus::build(vec![
            doc(
                "a",
                "空",
                DocFormat::Html,
                "<section><p> </p><script>x()</script></section>",
            ),
            doc("b", "空", DocFormat::Markdown, "\n\n---\n\n"),
            doc("c", "空", DocFormat::Text, ""),
        ]);
        assert_eq!((corpus.docs(), corpus.passages()), (0, 0));
    }

    #[test]
    fn the_same_corpus_answers_the_same_question_the_same_way() {
        // Two documents with the same text tie on every score: the earlier one comes first.
        let text = "时间管理的第一步是记录时间。";
        let first = Corpus::build(vec![
            doc("a", "甲", DocFormat::Text, text),
            doc("b", "乙", DocFormat::Text, text),
        ]);
        let hits = first.search("记录时间", 2, &all);
        assert_eq!(
            hits.iter().map(|h| h.doc_id).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(hits[0].score, hits[1].score);
        let again = sample();
        let corpus = sample();
        for q in ["所有权 借用", "goroutine channel", "理财 投资"] {
            assert_eq!(corpus.search(q, 5, &all), again.search(q, 5, &all));
        }
    }

    #[test]
    fn pathological_markup_is_read_in_linear_time() {
        // A scan to the end of the text per `[`, `<` or `&` would take minutes here (10^5
        // marks × 10^5 chars); bounded scans take well under a second.
        let n = 300_000;
        let docs = vec![
            doc("md", "t", DocFormat::Markdown, &"[<&".repeat(n / 3)),
            doc("html", "t", DocFormat::Html, &"& <1 ".repeat(n / 5)),
            doc("text", "t", DocFormat::Text, &"字".repeat(n / 3)),
        ];
        let started = std::time::Instant::now();
        let corpus = Corpus::build(docs);
        assert!(corpus.passages() >= n / PASSAGE_CHARS);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_documents_and_any_question_never_panic(
            // Arbitrary text, and text from a small alphabet of words and marks so that documents
            // and questions share terms and hits are exercised.
            texts in proptest::collection::vec(
                (prop_oneof![any::<String>(), "[a-cA-C 所有权借用的。？!.<>/p#*\\[\\]()&;\n]{0,600}"], 0u8..3),
                0..4,
            ),
            markup in "[<>&#;{}%/a-z\\[\\]()*`!。？ \n]{0,200}",
            question in any::<String>(),
            k in 0usize..5,
        ) {
            let mut questions: Vec<String> = texts.iter().map(|(t, _)| t.clone()).collect();
            questions.push(question);
            questions.push(markup.clone());
            let mut docs: Vec<Doc> = texts
                .into_iter()
                .enumerate()
                .map(|(i, (text, f))| {
                    let format = [DocFormat::Html, DocFormat::Markdown, DocFormat::Text][f as usize];
                    Doc { paid_article: (i % 2 == 1).then(|| format!("p{i}")), ..doc(&format!("d{i}"), &text, format, &text) }
                })
                .collect();
            docs.push(doc("m", "m", DocFormat::Html, &markup));
            docs.push(doc("n", "n", DocFormat::Markdown, &markup));
            let corpus = Corpus::build(docs);
            for q in &questions {
                let hits = corpus.search(q, k, &|id: &str| id == "p1");
                prop_assert!(hits.len() <= k);
                prop_assert!(hits.iter().all(|h| h.score > 0.0));
                prop_assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
                prop_assert!(hits.iter().all(|h| h.passage.chars().count() <= PASSAGE_CHARS));
                prop_assert!(hits.iter().all(|h| h.paid_article.is_none_or(|id| id == "p1")));
            }
        }
    }
}
