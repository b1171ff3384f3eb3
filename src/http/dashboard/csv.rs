//! Every dashboard table as CSV (`?format=csv[&table=…]`): RFC 4180 (CRLF line ends, fields
//! with `,` `"` or a line break quoted, quotes doubled), a header row, UTF-8 with a byte-order
//! mark so Excel opens Chinese text correctly instead of guessing a local code page.
//!
//! Text cells are guarded against formula injection: a cell an outsider could have written (a
//! subscriber's message, a channel name) that starts with `=`, `+`, `-`, `@`, a tab or a
//! carriage return gets a leading `'`, so a spreadsheet shows it instead of running it.
//! Numbers are written as numbers (a net of `-3` stays a number); they are never text.
//!
//! May depend on: std only.

/// One value of a CSV row.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Written guarded and quoted as needed.
    Text(String),
    /// Written as is: the caller made it from a number.
    Number(String),
}

/// The byte-order mark Excel needs to read UTF-8.
pub const BOM: &str = "\u{feff}";

/// A CSV document: a header row, then rows.
#[derive(Debug)]
pub struct Csv {
    out: String,
}

impl Csv {
    pub fn new(header: &[&str]) -> Csv {
        let mut c = Csv {
            out: String::from(BOM),
        };
        let fields: Vec<Field> = header.iter().map(|h| Field::Text((*h).into())).collect();
        c.row(&fields);
        c
    }

    pub fn row(&mut self, fields: &[Field]) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            match f {
                Field::Text(t) => push_text(&mut self.out, t),
                Field::Number(n) => self.out.push_str(n),
            }
        }
        self.out.push_str("\r\n");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn push_text(out: &mut String, t: &str) {
    let guard = t.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote =
        guard || t.contains([',', '"', '\r', '\n']) || t.starts_with(' ') || t.ends_with(' ');
    if quote {
        out.push('"');
    }
    if guard {
        out.push('\'');
    }
    for ch in t.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Field {
        Field::Text(s.into())
    }

    #[test]
    fn a_header_and_rows_with_crlf_after_a_bom() {
        let mut c = Csv::new(&["day", "follows"]);
        c.row(&[text("2026-12-01"), Field::Number("3".into())]);
        assert_eq!(c.finish(), "\u{feff}day,follows\r\n2026-12-01,3\r\n");
    }

    #[test]
    fn commas_quotes_and_line_breaks_are_quoted_as_rfc_4180_says() {
        let mut c = Csv::new(&["text"]);
        c.row(&[text("a,b")]);
        c.row(&[text("say \"hi\"")]);
        c.row(&[text("two\nlines")]);
        c.row(&[text("课程 价格")]);
        let out = c.finish();
        let body: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(body[1], "\"a,b\"");
        assert_eq!(body[2], "\"say \"\"hi\"\"\"");
        assert_eq!(body[3], "\"two\nlines\"");
        assert_eq!(body[4], "课程 价格");
    }

    #[test]
    fn text_that_a_spreadsheet_would_run_is_shown_instead() {
        for (given, written) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1", "\"'+1\""),
            ("-2+3", "\"'-2+3\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tcmd", "\"'\tcmd\""),
        ] {
            let mut c = Csv::new(&["x"]);
            c.row(&[text(given)]);
            let out = c.finish();
            assert_eq!(out.split("\r\n").nth(1), Some(written), "{given:?}");
        }
        let mut c = Csv::new(&["net"]);
        c.row(&[Field::Number("-3".into())]);
        assert!(
            c.finish().ends_with("net\r\n-3\r\n"),
            "a number stays a number"
        );
    }
}
