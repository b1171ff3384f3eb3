//! Diagnostics for operator files: every problem found in `keywords.toml` or a template, with a
//! position an editor can jump to and a hint that says how to fix it.
//!
//! Owns [`Diagnostic`], [`Severity`], [`ConfigErrors`] and the byte-offset → line:column mapping.
//! May depend on: std only.

use std::fmt;
use std::ops::Range;

/// How bad a finding is: errors stop a load, warnings are printed and the rules still go live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding, printed as `keywords.toml:12:9: error: …` with an optional `help:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file as the operator named it (keywords.toml or a template under the templates dir).
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every error found while loading a rules file; nothing was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Maps byte offsets in one source text to 1-based line and column.
pub(crate) struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, starts }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        // Columns count characters so a Chinese keyword does not push the caret off.
        let col = self
            .src
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line + 1, col + 1)
    }
}

/// Collects diagnostics for one source file.
pub(crate) struct Sink<'a> {
    pub(crate) file: String,
    pub(crate) lines: LineIndex<'a>,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(file: String, src: &'a str) -> Self {
        Sink {
            file,
            lines: LineIndex::new(src),
            diags: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, column) = self.lines.line_col(span.start);
        self.diags.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
            help,
        });
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(Severity::Error, span, message, None);
    }

    pub(crate) fn error_help(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, span, message, Some(help.into()));
    }

    pub(crate) fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(Severity::Warning, span, message, None);
    }
}

/// Edit distance, for "did you mean" hints on short identifiers.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest allowed name, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(got: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (levenshtein(got, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// A help line: "did you mean `x`? Allowed: a, b, c".
pub(crate) fn allowed_help(got: &str, allowed: &[&str]) -> String {
    let list = allowed.join(", ");
    match did_you_mean(got, allowed) {
        Some(s) => format!("did you mean `{s}`? Allowed: {list}"),
        None => format!("allowed: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let idx = LineIndex::new("a = 1\n名字 = \"x\"\n");
        assert_eq!(idx.line_col(0), (1, 1));
        assert_eq!(idx.line_col(6), (2, 1));
        // "名字 " is 7 bytes, 3 characters.
        assert_eq!(idx.line_col(6 + 7), (2, 4));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("replly", &["reply", "replies"]), Some("reply"));
        assert_eq!(did_you_mean("zzzzzz", &["reply", "replies"]), None);
    }
}
