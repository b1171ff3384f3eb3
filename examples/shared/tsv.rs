//! The escaping of `pushes.tsv` (one request per line: `path?query` TAB body), shared by the
//! examples that write and read it. `scripts/bench/push.lua` undoes the same escaping.

/// `\` → `\\` and newline → `\n`, so a request fits on one line.
#[allow(dead_code)] // pipeprobe only reads
pub fn escape_line(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The inverse of [`escape_line`].
pub fn unescape_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}
