//! The assistant's pure rules of thumb: what an answer may contain, how a long one is split,
//! and the operator's blocklist.
//!
//! Pure: no I/O, no store, no clock. May depend on: aho-corasick, and the rules' text
//! normaliser (`crate::rules::normalize`) so blocked words match exactly as keywords do.

use aho_corasick::AhoCorasick;

/// Cleans a model's answer for a chat: control characters (but `\n`) removed, runs of more
/// than two blank lines folded, trimmed, Markdown emphasis markers (`**`, `__`, heading `#`s
/// at line starts) removed since WeChat shows them raw, and cut at `max_chars` chars on a
/// char boundary with `…` when longer.
///
/// In detail: C0 and C1 controls go (a tab becomes a space; a lone `\r` and the Unicode line
/// and paragraph separators become a line break), and so do characters a subscriber cannot
/// see but that would hide a word from the blocklist or reorder the text: zero-width spaces
/// and joiners, the byte-order mark, the soft hyphen, bidi marks, and the bidi embeddings,
/// overrides and isolates (U+202A–202E, U+2066–2069). A zero-width joiner between two emoji
/// stays: it is what makes 👨‍👩‍👧 one picture. Spaces at line ends go, then three or more line
/// breaks become two. A heading is `#`…`######` followed by a space at a line's start (`#话题`
/// is left alone). The result has at most `max_chars` chars, the `…` included.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let visible = strip_invisible(text);
    let mut out = String::with_capacity(visible.len());
    let mut newlines = 0usize;
    for (i, line) in visible.split('\n').enumerate() {
        if i > 0 {
            newlines += 1;
        }
        let cleaned = strip_markdown_line(line);
        let cleaned = cleaned.trim_end();
        if cleaned.is_empty() {
            continue;
        }
        if !out.is_empty() {
            for _ in 0..newlines.min(2) {
                out.push('\n');
            }
        }
        newlines = 0;
        out.push_str(cleaned);
    }
    let trimmed = out.trim();
    cut_chars(trimmed, max_chars)
}

/// Characters with no width and no meaning in a chat message, that would only hide a word
/// from the blocklist or reorder what the subscriber sees.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Pictographs a zero-width joiner may join (the emoji blocks, dingbats and misc symbols, the
/// emoji variation selector and skin tones, which sit in the first range).
fn is_emoji_part(c: char) -> bool {
    matches!(c, '\u{1F000}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{FE0F}')
}

/// Controls and invisible characters out (see [`sanitize`]); `\r\n` and lone `\r` become `\n`.
fn strip_invisible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // The last character kept, to decide whether a zero-width joiner joins two emoji.
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        let kept = match c {
            '\n' => Some('\n'),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    None
                } else {
                    Some('\n')
                }
            }
            '\t' => Some(' '),
            // Unicode's line and paragraph separators: WeChat shows no break for them.
            '\u{2028}' | '\u{2029}' => Some('\n'),
            '\u{200D}' => {
                let joins = prev.is_some_and(is_emoji_part)
                    && chars.peek().copied().is_some_and(is_emoji_part);
                joins.then_some(c)
            }
            c if c.is_control() || is_invisible(c) => None,
            c => Some(c),
        };
        if let Some(k) = kept {
            out.push(k);
            prev = Some(k);
        }
    }
    out
}

/// One line without a Markdown heading marker at its start and without `**` / `__`.
fn strip_markdown_line(line: &str) -> String {
    let mut body = strip_heading(line).to_string();
    // Removing one marker can make another (`*__*`): until none is left. Each round shortens
    // the line, so this ends.
    while body.contains("**") || body.contains("__") {
        body = body.replace("**", "").replace("__", "");
    }
    body
}

/// `   ## Title` → `Title`; `#话题` and `####### x` (seven) are not headings and stay.
fn strip_heading(line: &str) -> &str {
    let indented = line.trim_start_matches(' ');
    if line.len() - indented.len() > 3 {
        return line;
    }
    let hashes = indented.bytes().take_while(|b| *b == b'#').count();
    if hashes == 0 || hashes > 6 {
        return line;
    }
    let after = &indented[hashes..];
    if after.is_empty() {
        return after;
    }
    if after.starts_with([' ', '\t']) {
        return after.trim_start_matches([' ', '\t']);
    }
    line
}

/// `text` if it has at most `max_chars` chars, else its first `max_chars - 1` (trailing
/// spaces and a dangling joiner dropped) and `…`.
fn cut_chars(text: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    let mut ends = text.char_indices().map(|(i, _)| i).skip(max_chars);
    if ends.next().is_none() {
        return text.to_string();
    }
    let keep_end = text
        .char_indices()
        .nth(max_chars - 1)
        .map_or(text.len(), |(i, _)| i);
    let head = text[..keep_end].trim_end_matches(|c: char| c.is_whitespace() || c == '\u{200D}');
    let mut out = String::with_capacity(head.len() + '…'.len_utf8());
    out.push_str(head);
    out.push('…');
    out
}

/// Splits `text` into parts of at most `max_bytes` UTF-8 bytes each, in order, at paragraph
/// boundaries when possible, else at sentence ends (`。！？!?；;` and `.` before a space),
/// else at a char boundary. No part is empty; joining the parts gives back the text up to the
/// whitespace at the cuts.
///
/// Each part is as long as it can be: a cut goes at the last boundary of the best kind that
/// still leaves the part at least half full (a blank line, then a line break, then a sentence
/// end, with the closing quotes or brackets after it, then a space), and only failing all of
/// those at the last char boundary that fits, moved back so as not to separate a combining
/// mark, variation selector or joiner from what it modifies. Whitespace at a cut is dropped;
/// the text is trimmed. `max_bytes` below 4 is taken as 4, so that any one char fits.
pub fn split_parts(text: &str, max_bytes: usize) -> Vec<String> {
    let max = max_bytes.max(4);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.len() > max {
        let cut = cut_point(rest, max);
        let (part, tail) = rest.split_at(cut);
        let part = part.trim_end();
        if !part.is_empty() {
            parts.push(part.to_string());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

/// Closing punctuation that belongs to the sentence before it (`他说：“好。”`).
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '”' | '’' | '"' | '\'' | '」' | '』' | '）' | ')' | '】' | ']' | '》' | '〉'
    )
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '!' | '?' | '；' | ';' | '…')
}

/// Characters that belong to the char before them and must not start a part.
fn is_attached(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FE20}'..='\u{FE2F}'
            | '\u{1F3FB}'..='\u{1F3FF}'
            | '\u{200D}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Where to cut `rest` (longer than `max` bytes, starting with a non-whitespace char): a byte
/// offset on a char boundary, `0 < cut <= max`.
fn cut_point(rest: &str, max: usize) -> usize {
    // The largest char boundary that fits.
    let mut limit = max.min(rest.len());
    while !rest.is_char_boundary(limit) {
        limit -= 1;
    }
    let half = max / 2;
    let window = &rest[..limit];
    // What follows the window decides whether a boundary at its very end counts.
    let next = rest[limit..].chars().next();

    let mut paragraph = None;
    let mut line = None;
    let mut sentence = None;
    let mut space = None;
    // Inside a run of sentence-ending marks and the closing quotes after them: the sentence
    // ends after the whole run (`好。”`, `真的？！`).
    let mut run = false;
    let mut iter = window.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let following = iter.peek().map(|&(_, n)| n).or(next);
        if c == '\n' {
            if window[..i].ends_with('\n') {
                paragraph = Some(i);
            }
            line = Some(i);
        } else if c.is_whitespace() {
            space = Some(i);
        }
        let ender = is_sentence_end(c)
            || (c == '.' && following.is_some_and(|f| f.is_whitespace() || is_closer(f)));
        if ender || (run && is_closer(c)) {
            run = following.is_some_and(|f| is_sentence_end(f) || is_closer(f));
            if !run {
                sentence = Some(i + c.len_utf8());
            }
        } else {
            run = false;
        }
    }
    for found in [paragraph, line, sentence, space] {
        if let Some(at) = found.filter(|&at| at >= half && at > 0) {
            return at;
        }
    }
    // No good boundary: the last char boundary that fits, not inside a cluster.
    let mut cut = limit;
    loop {
        let starts_attached = rest[cut..].chars().next().is_some_and(is_attached);
        let after_joiner = rest[..cut].ends_with('\u{200D}');
        if !(starts_attached || after_joiner) {
            break;
        }
        match rest[..cut].char_indices().next_back() {
            Some((i, _)) if i > 0 => cut = i,
            _ => break,
        }
    }
    cut
}

/// The operator's blocklist, matched on normalised text (NFKC, lower-case).
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    /// The normalised words in one automaton; `None` when there are none.
    matcher: Option<AhoCorasick>,
}

impl Blocklist {
    /// Builds the list; words are normalised as the rules normalise keywords, and those empty
    /// after normalising are left out (an empty word would block everything).
    pub fn new(words: &[String]) -> Blocklist {
        let mut normalised: Vec<String> = words
            .iter()
            .map(|w| crate::rules::normalize(w))
            .filter(|w| !w.is_empty())
            .collect();
        normalised.sort();
        normalised.dedup();
        if normalised.is_empty() {
            return Blocklist { matcher: None };
        }
        let matcher = match AhoCorasick::new(&normalised) {
            Ok(m) => m,
            Err(e) => {
                // Only a list far beyond what an operator writes (the automaton's size limit)
                // gets here. Refusing every text is the safe side of a blocklist that cannot be
                // built; it is said once, without the words.
                tracing::error!(error = %e, words = normalised.len(), "assistant blocklist too large; every text counts as blocked");
                return Blocklist {
                    matcher: AhoCorasick::new([""]).ok(),
                };
            }
        };
        Blocklist {
            matcher: Some(matcher),
        }
    }

    /// Whether `text` contains any blocked word.
    pub fn hits(&self, text: &str) -> bool {
        match &self.matcher {
            None => false,
            Some(m) => m.is_match(&crate::rules::normalize(text)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    // --- sanitize ---

    #[test]
    fn a_plain_answer_comes_through_unchanged() {
        let a = "课程第三讲讲的是复利。\n\n第二段：Compound interest, explained.";
        assert_eq!(sanitize(a, 600), a);
    }

    #[test]
    fn control_characters_go_but_line_breaks_stay() {
        let a = "第一行\u{0}\u{7}\u{1b}[31m红\u{7f}\u{85}\u{9b}\n第二行";
        assert_eq!(sanitize(a, 600), "第一行[31m红\n第二行");
        assert_eq!(sanitize("a\r\nb\rc", 600), "a\nb\nc");
        assert_eq!(sanitize("a\tb", 600), "a b");
        assert_eq!(sanitize("a\u{2028}b\u{2029}c", 600), "a\nb\nc");
    }

    #[test]
    fn zero_width_and_bidi_characters_that_could_hide_or_reorder_words_go() {
        let a = "免\u{200b}费\u{200c}领\u{feff}取\u{2060}！\u{202e}txt.exe\u{202c} \u{2066}x\u{2069}\u{200f}";
        assert_eq!(sanitize(a, 600), "免费领取！txt.exe x");
    }

    #[test]
    fn a_joiner_inside_an_emoji_sequence_stays_and_a_stray_one_goes() {
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(
            sanitize(&format!("好的{family}"), 600),
            format!("好的{family}")
        );
        assert_eq!(sanitize("好\u{200d}的", 600), "好的");
    }

    #[test]
    fn markdown_markers_wechat_would_show_raw_are_removed() {
        let a = "## 结论\n**复利**是__时间__的朋友。\n#话题 stays\n####### seven stays";
        assert_eq!(
            sanitize(a, 600),
            "结论\n复利是时间的朋友。\n#话题 stays\n####### seven stays"
        );
        // A heading with no text is a blank line, like any other empty line.
        assert_eq!(sanitize("a\n# \nb", 600), "a\n\nb");
        // Markers that only appear once others are gone go too.
        assert_eq!(sanitize("*__*x", 600), "x");
    }

    #[test]
    fn runs_of_blank_lines_fold_to_one_blank_line() {
        assert_eq!(sanitize("a\n\n\n\n\nb", 600), "a\n\nb");
        assert_eq!(sanitize("a\n  \n \t\n\nb", 600), "a\n\nb");
        assert_eq!(sanitize("a\n\nb\nc", 600), "a\n\nb\nc");
        assert_eq!(sanitize("\n\n  a  \n\n\n", 600), "a");
    }

    #[test]
    fn a_long_answer_is_cut_on_a_char_boundary_with_an_ellipsis() {
        let a = "价".repeat(10);
        let cut = sanitize(&a, 5);
        assert_eq!(cut, "价价价价…");
        assert_eq!(cut.chars().count(), 5);
        assert_eq!(sanitize(&a, 10), a);
        assert_eq!(sanitize("ab   cdef", 5), "ab…");
        assert_eq!(sanitize("abc", 0), "");
        assert_eq!(sanitize("abc", 1), "…");
    }

    // --- split_parts ---

    #[test]
    fn a_short_answer_is_one_part_and_an_empty_one_none() {
        assert_eq!(split_parts("  好的。 ", 2048), vec!["好的。"]);
        assert!(split_parts("", 2048).is_empty());
        assert!(split_parts(" \n\n ", 2048).is_empty());
    }

    #[test]
    fn a_long_answer_is_split_between_paragraphs_first() {
        let p1 = "甲".repeat(20); // 60 bytes
        let p2 = format!("{}。{}", "乙".repeat(10), "丙".repeat(9)); // 60 bytes
        let text = format!("{p1}\n\n{p2}");
        assert_eq!(split_parts(&text, 100), vec![p1, p2]);
    }

    #[test]
    fn without_paragraphs_it_splits_after_sentences_keeping_closing_quotes() {
        let s1 = format!("他说：“{}。”", "甲".repeat(10));
        let s2 = format!("{}！", "乙".repeat(10));
        let s3 = format!("{}？", "丙".repeat(10));
        let text = format!("{s1}{s2}{s3}");
        let parts = split_parts(&text, s1.len() + s2.len() + 3);
        assert_eq!(parts, vec![format!("{s1}{s2}"), s3]);
    }

    #[test]
    fn english_sentences_split_after_a_full_stop_before_a_space_not_inside_numbers() {
        let text = "Version 3.14 is out. It costs 9.99 dollars now. Buy it.";
        let parts = split_parts(text, 30);
        assert_eq!(
            parts,
            vec![
                "Version 3.14 is out.",
                "It costs 9.99 dollars now.",
                "Buy it."
            ]
        );
    }

    #[test]
    fn text_without_any_boundary_is_cut_at_char_boundaries() {
        let text = "价".repeat(10); // 30 bytes
        let parts = split_parts(&text, 10);
        assert_eq!(parts, vec!["价价价", "价价价", "价价价", "价"]);
        let emoji = "😀".repeat(5); // 4 bytes each
        assert_eq!(split_parts(&emoji, 9), vec!["😀😀", "😀😀", "😀"]);
        // Below one char's size, parts still hold one whole char each.
        assert_eq!(split_parts("😀😀", 1), vec!["😀", "😀"]);
    }

    #[test]
    fn a_cut_does_not_separate_an_accent_or_a_skin_tone_from_its_letter() {
        let text = format!("{}e\u{301}", "a".repeat(9)); // the accent would start part two
        let parts = split_parts(&text, 10);
        assert_eq!(parts, vec!["a".repeat(9), "e\u{301}".to_string()]);
        let thumbs = "👍🏽".repeat(3); // 8 bytes each
        assert_eq!(split_parts(&thumbs, 12), vec!["👍🏽", "👍🏽", "👍🏽"]);
    }

    #[test]
    fn a_tiny_paragraph_early_on_does_not_make_a_tiny_part() {
        // The blank line sits at byte 2 of a 40-byte budget: a sentence end further on wins.
        let text = format!("好\n\n{}。{}", "甲".repeat(10), "乙".repeat(10));
        let parts = split_parts(&text, 40);
        assert_eq!(parts[0], format!("好\n\n{}。", "甲".repeat(10)));
    }

    // --- blocklist ---

    #[test]
    fn the_blocklist_matches_after_normalising_width_and_case() {
        let b = Blocklist::new(&words(&["Ｖｉａｇｒａ", "赌博", "  "]));
        assert!(!b.is_empty());
        assert!(b.hits("where to buy VIAGRA?"));
        assert!(b.hits("网上赌博合法吗"));
        assert!(!b.hits("课程第三讲在哪里"));
    }

    #[test]
    fn an_empty_blocklist_blocks_nothing() {
        let b = Blocklist::new(&words(&["", "   "]));
        assert!(b.is_empty());
        assert!(!b.hits("anything"));
        assert!(Blocklist::default().is_empty());
        assert!(!Blocklist::default().hits("anything"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn split_parts_fit_and_keep_every_visible_char_in_order(
            text in "[a-z .。！？!?；;\n“”\u{4e00}-\u{4e2f}\u{301}\u{200d}\u{fe0f}\u{1f600}-\u{1f60f}\u{1f3fb}]{0,300}",
            max in 1usize..120,
        ) {
            let parts = split_parts(&text, max);
            let limit = max.max(4);
            for p in &parts {
                proptest::prop_assert!(!p.is_empty());
                proptest::prop_assert!(p.len() <= limit, "{} > {}", p.len(), limit);
            }
            let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            proptest::prop_assert_eq!(visible(&parts.concat()), visible(&text));
        }

        #[test]
        fn split_parts_of_any_text_fit_and_keep_every_visible_char(
            text in "(\\PC|\n| ){0,400}",
            max in 1usize..200,
        ) {
            let parts = split_parts(&text, max);
            for p in &parts {
                proptest::prop_assert!(!p.is_empty() && p.len() <= max.max(4));
                proptest::prop_assert_eq!(p.trim(), p.as_str());
            }
            let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            proptest::prop_assert_eq!(visible(&parts.concat()), visible(&text));
        }

        #[test]
        fn sanitize_never_panics_and_leaves_no_controls(text in "\\PC{0,200}|[\u{0}-\u{9f}\u{200b}-\u{206f}#*_ a-z\n]{0,200}", max in 0usize..80) {
            let out = sanitize(&text, max);
            proptest::prop_assert!(out.chars().count() <= max);
            proptest::prop_assert!(!out.chars().any(|c| (c.is_control() && c != '\n') || is_invisible(c)));
            proptest::prop_assert!(!out.contains("\n\n\n"));
            proptest::prop_assert!(!out.contains("**") && !out.contains("__"));
        }

        #[test]
        fn blocklist_never_panics(words in proptest::collection::vec("\\PC{0,6}", 0..6), text in "\\PC{0,60}") {
            let b = Blocklist::new(&words);
            let _ = b.hits(&text);
        }
    }
}
