//! A strict, small XML reader for push bodies: quick-xml events → an owned [`Element`] tree.
//!
//! Owns the safety rules for untrusted XML: no DTDs (so no entity expansion or XXE), only the
//! five predefined entities and numeric references, bounded depth and element count. It keeps
//! what the platform really sends: CDATA verbatim (never trimmed), CDATA split across sections,
//! emoji, and raw control characters in user text (XML 1.0 forbids them; the platform sends them
//! anyway, so rejecting them would drop real messages). Attributes are ignored: the protocol uses
//! none. Also owns [`scan`], the zero-copy fast path for the common push shape, which declines
//! (hands over to [`parse`]) whenever it is not sure to build the same tree. Pure: depends on
//! `quick-xml` only.

use std::borrow::Cow;

use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;

/// Deepest nesting accepted; the deepest real push (`MASSSENDJOBFINISH`) nests 5.
const MAX_DEPTH: usize = 8;
/// Most elements accepted in one document; real pushes have fewer than 60.
const MAX_ELEMENTS: usize = 512;
/// Longest entity name echoed back in an error.
const MAX_ECHO: usize = 32;

/// One element: its name, its text (text and CDATA concatenated in document order) and children.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    /// Character data of this element. Whitespace-only text between child elements is dropped;
    /// a leaf's text is kept exactly as sent.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Every child called `name`, in document order (a repeated element is always a list).
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Why a body is not acceptable XML.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    #[error("DOCTYPE declarations are refused")]
    Doctype,
    #[error("undefined entity reference &{0};")]
    Entity(String),
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_ELEMENTS} elements")]
    TooLarge,
}

/// Parses a whole document and returns its root element.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut reader = Reader::from_str(input);
    {
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
    }

    let mut stack: Vec<Element> = Vec::with_capacity(MAX_DEPTH);
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        let event = reader.read_event().map_err(|e| {
            malformed(format!(
                "{} at byte {}",
                truncate(&e.to_string(), 80),
                reader.error_position()
            ))
        })?;
        match event {
            XmlEvent::Start(_) | XmlEvent::Empty(_) if root.is_some() => {
                return Err(malformed("content after the root element"));
            }
            XmlEvent::Start(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push(Element {
                    name: utf8(start.name().as_ref())?.to_owned(),
                    ..Element::default()
                });
            }
            XmlEvent::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let el = Element {
                    name: utf8(start.name().as_ref())?.to_owned(),
                    ..Element::default()
                };
                close(el, &mut stack, &mut root);
            }
            XmlEvent::End(end) => {
                let mut el = stack
                    .pop()
                    .ok_or_else(|| malformed("end tag without a start tag"))?;
                if el.name.as_bytes() != end.name().as_ref() {
                    return Err(malformed(format!("mismatched end tag for <{}>", el.name)));
                }
                if !el.children.is_empty() && is_xml_whitespace(&el.text) {
                    el.text.clear();
                }
                close(el, &mut stack, &mut root);
            }
            XmlEvent::Text(text) => {
                let raw = utf8(&text)?;
                match stack.last_mut() {
                    Some(top) => unescape_into(raw, &mut top.text)?,
                    None if is_xml_whitespace(raw) => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            XmlEvent::CData(cdata) => {
                let raw = utf8(&cdata)?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(raw),
                    None => return Err(malformed("CDATA outside the root element")),
                }
            }
            XmlEvent::DocType(_) => return Err(XmlError::Doctype),
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) => {}
            XmlEvent::Eof => break,
        }
    }

    if let Some(open) = stack.last() {
        return Err(malformed(format!("unclosed element <{}>", open.name)));
    }
    root.ok_or_else(|| malformed("no root element"))
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn malformed(msg: impl Into<String>) -> XmlError {
    XmlError::Malformed(msg.into())
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    // Input came in as &str and quick-xml splits only at ASCII delimiters, so this cannot fail in
    // practice; it is checked rather than assumed to keep the reader panic-free.
    std::str::from_utf8(bytes).map_err(|_| malformed("invalid UTF-8"))
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Appends `raw` to `out`, decoding the five predefined entities and numeric references.
fn unescape_into(raw: &str, out: &mut String) -> Result<(), XmlError> {
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| malformed("unterminated entity reference"))?;
        let name = &after[..semi];
        match name {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "apos" => out.push('\''),
            "quot" => out.push('"'),
            _ => out.push(numeric_reference(name)?),
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// `#123` or `#x7B` → the char it names; anything else is an entity this reader does not define.
fn numeric_reference(name: &str) -> Result<char, XmlError> {
    let code = if let Some(hex) = name.strip_prefix("#x") {
        parse_digits(hex, 16)
    } else if let Some(dec) = name.strip_prefix('#') {
        parse_digits(dec, 10)
    } else {
        return Err(XmlError::Entity(truncate(name, MAX_ECHO)));
    };
    code.and_then(char::from_u32).ok_or_else(|| {
        malformed(format!(
            "invalid character reference &{};",
            truncate(name, MAX_ECHO)
        ))
    })
}

fn parse_digits(digits: &str, radix: u32) -> Option<u32> {
    // `from_str_radix` accepts a leading '+'; XML does not.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// A document as a flat list of elements in document order, borrowing names and (unsplit) text
/// from the input: the push hot path reads a handful of fields and copies only those.
#[derive(Debug, PartialEq)]
pub(crate) struct Doc<'a> {
    nodes: Vec<Node<'a>>,
}

#[derive(Debug, PartialEq)]
struct Node<'a> {
    name: &'a str,
    /// Same meaning as [`Element::text`].
    text: Cow<'a, str>,
    /// Index of the parent in `Doc::nodes`; the root's is its own index, 0.
    parent: usize,
    depth: usize,
}

/// One element of a [`Doc`], the borrowed counterpart of [`Element`].
#[derive(Clone, Copy)]
pub(crate) struct El<'d, 'a> {
    doc: &'d Doc<'a>,
    idx: usize,
}

impl<'d, 'a> Doc<'a> {
    pub(crate) fn root(&'d self) -> El<'d, 'a> {
        El { doc: self, idx: 0 }
    }

    /// Borrows an owned tree (the strict reader's answer when [`scan`] declines).
    pub(crate) fn from_element(root: &'a Element) -> Doc<'a> {
        fn flatten<'a>(el: &'a Element, parent: Option<usize>, depth: usize, out: &mut Doc<'a>) {
            let idx = out.nodes.len();
            out.nodes.push(Node {
                name: &el.name,
                text: Cow::Borrowed(&el.text),
                parent: parent.unwrap_or(idx),
                depth,
            });
            for child in &el.children {
                flatten(child, Some(idx), depth + 1, out);
            }
        }
        let mut doc = Doc { nodes: Vec::new() };
        flatten(root, None, 0, &mut doc);
        doc
    }
}

impl<'d, 'a> El<'d, 'a> {
    pub(crate) fn name(&self) -> &'d str {
        self.node().name
    }

    pub(crate) fn text(&self) -> &'d str {
        &self.node().text
    }

    /// The first child called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<El<'d, 'a>> {
        self.children().find(|c| same_name(c.name(), name))
    }

    /// The text of the first child called `name`.
    pub(crate) fn child_text(&self, name: &str) -> Option<&'d str> {
        self.child(name).map(|c| c.text())
    }

    /// Every child called `name`, in document order.
    pub(crate) fn children_named<'n>(&self, name: &'n str) -> impl Iterator<Item = El<'d, 'a>> + 'n
    where
        'd: 'n,
        'a: 'n,
    {
        self.children().filter(move |c| same_name(c.name(), name))
    }

    fn node(&self) -> &'d Node<'a> {
        &self.doc.nodes[self.idx]
    }

    fn children(&self) -> impl Iterator<Item = El<'d, 'a>> {
        let (doc, idx) = (self.doc, self.idx);
        let depth = self.node().depth;
        // Descendants follow their ancestor contiguously; the subtree ends at the first node that
        // is not deeper.
        doc.nodes
            .iter()
            .enumerate()
            .skip(idx + 1)
            .take_while(move |(_, n)| n.depth > depth)
            .filter(move |(_, n)| n.parent == idx)
            .map(move |(i, _)| El { doc, idx: i })
    }
}

/// Name equality inline: names are a few bytes, shorter than a call to `memcmp` is worth.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// The common shape of a push, read without quick-xml or copies: elements without attributes,
/// CDATA, plain text without references, whitespace between elements and an optional XML
/// declaration. Anything else (comments, DOCTYPE, entities, attributes, mixed content, limits,
/// errors) gives `None`, and the caller asks the strict [`parse`], whose answer is authoritative;
/// when this returns a document it is the one [`parse`] would build.
pub(crate) fn scan(input: &str) -> Option<Doc<'_>> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let bytes = input.as_bytes();
    let mut nodes: Vec<Node<'_>> = Vec::with_capacity(16);
    let mut stack = [0usize; MAX_DEPTH];
    let mut depth = 0usize;
    let mut has_children = [false; MAX_DEPTH];
    let mut root_done = false;
    let mut pos = 0usize;

    loop {
        let lt = find_byte(input, pos, b'<');
        let text = &input[pos..lt.unwrap_or(bytes.len())];
        if !text.is_empty() {
            if depth == 0 {
                if !is_xml_whitespace(text) {
                    return None;
                }
            } else if text.bytes().any(|b| b == b'&' || b == b'>') {
                return None;
            } else {
                append_text(&mut nodes, stack[depth - 1], has_children[depth - 1], text)?;
            }
        }
        let Some(lt) = lt else { break };
        let rest = &input[lt + 1..];
        match rest.as_bytes().first()? {
            b'/' => {
                if depth == 0 {
                    return None;
                }
                let top = stack[depth - 1];
                // `</` + the open name + `>`: the name is all name characters and `>` is not
                // one, so this is exactly "the end tag's name equals the open one".
                let name_len = nodes[top].name.len();
                let closes = rest.as_bytes().get(1..1 + name_len)
                    == Some(nodes[top].name.as_bytes())
                    && rest.as_bytes().get(1 + name_len) == Some(&b'>');
                if !closes {
                    return None;
                }
                if has_children[depth - 1] {
                    nodes[top].text = Cow::Borrowed("");
                }
                depth -= 1;
                root_done = depth == 0;
                pos = lt + 1 + name_len + 2;
            }
            b'!' => {
                let body = rest.strip_prefix("![CDATA[")?;
                let end = find_cdata_end(body)?;
                if depth == 0 {
                    return None;
                }
                append_text(
                    &mut nodes,
                    stack[depth - 1],
                    has_children[depth - 1],
                    &body[..end],
                )?;
                pos = lt + 1 + "![CDATA[".len() + end + "]]>".len();
            }
            b'?' => {
                // Only a plain declaration in the prolog: `<?xml version="1.0" ...?>`.
                let body = &rest[1..];
                let end = body.find("?>")?;
                let body = &body[..end];
                if !nodes.is_empty()
                    || !body.starts_with("xml ")
                    || !body.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b' ' | b'=' | b'"' | b'\'' | b'.' | b'-' | b'_')
                    })
                {
                    return None;
                }
                pos = lt + 2 + end + 2;
            }
            first if first.is_ascii_alphabetic() || *first == b'_' => {
                let name_len = name_len(rest);
                let empty = match rest.as_bytes().get(name_len)? {
                    b'>' => false,
                    b'/' if rest.as_bytes().get(name_len + 1) == Some(&b'>') => true,
                    _ => return None,
                };
                if root_done || depth >= MAX_DEPTH || nodes.len() >= MAX_ELEMENTS {
                    return None;
                }
                let parent = if depth == 0 {
                    nodes.len()
                } else {
                    let parent = stack[depth - 1];
                    if !has_children[depth - 1] {
                        // Text before the first child survives only if it is all whitespace,
                        // and then [`parse`] drops it.
                        if !is_xml_whitespace(&nodes[parent].text) {
                            return None;
                        }
                        nodes[parent].text = Cow::Borrowed("");
                        has_children[depth - 1] = true;
                    }
                    parent
                };
                let idx = nodes.len();
                nodes.push(Node {
                    name: &rest[..name_len],
                    text: Cow::Borrowed(""),
                    parent,
                    depth,
                });
                if empty {
                    root_done = depth == 0;
                    pos = lt + 1 + name_len + 2;
                } else {
                    stack[depth] = idx;
                    has_children[depth] = false;
                    depth += 1;
                    pos = lt + 1 + name_len + 1;
                }
            }
            _ => return None,
        }
    }
    if depth != 0 || !root_done {
        return None;
    }
    Some(Doc { nodes })
}

/// Length of the element name at the start of `s`: the ASCII subset real pushes use.
fn name_len(s: &str) -> usize {
    s.bytes().take_while(|&b| NAME_BYTE[usize::from(b)]).count()
}

/// `[A-Za-z0-9_.:-]`, as a table: names are most of the bytes the scanner looks at one by one.
const NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
        b += 1;
    }
    table
};

/// Index of the first `needle` (ASCII) at or after `from`. The next markup is usually a few bytes
/// away, closer than memchr's setup pays for; longer runs (CDATA bodies) still get memchr, through
/// `str::find(char)`.
fn find_byte(s: &str, from: usize, needle: u8) -> Option<usize> {
    const NEAR: usize = 16;
    let rest = s.as_bytes().get(from..)?;
    let near = rest.len().min(NEAR);
    if let Some(at) = rest[..near].iter().position(|&b| b == needle) {
        return Some(from + at);
    }
    let mut far = from + near;
    while !s.is_char_boundary(far) {
        far += 1;
    }
    s.get(far..)?.find(char::from(needle)).map(|at| far + at)
}

/// Adds character data to an open element. Once it has children only whitespace may follow (and
/// [`parse`] would drop it); anything else is mixed content, left to [`parse`].
fn append_text<'a>(
    nodes: &mut [Node<'a>],
    idx: usize,
    has_children: bool,
    piece: &'a str,
) -> Option<()> {
    if has_children {
        return is_xml_whitespace(piece).then_some(());
    }
    let text = &mut nodes.get_mut(idx)?.text;
    if text.is_empty() {
        *text = Cow::Borrowed(piece);
    } else {
        text.to_mut().push_str(piece);
    }
    Some(())
}

/// Appends `n` in decimal, as `Display` would, without the formatting machinery: `write!`
/// pulls `core::fmt`'s code into the push path, and in the instruction-cache simulation
/// (docs/performance-history.md, "The code a push runs") one `format!` of a key cost ~50 cache misses.
pub(crate) fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// [`push_i64`] for unsigned numbers.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        // `rest % 10` is a single digit, so the cast cannot truncate.
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Appends `<![CDATA[text]]>`, splitting any `]]>` in `text` across two sections so the reader
/// above gives `text` back unchanged. Shared by [`super::message`] and [`super::reply`].
pub(crate) fn push_cdata(out: &mut String, text: &str) {
    out.push_str("<![CDATA[");
    let mut rest = text;
    while let Some(at) = find_cdata_end(rest) {
        out.push_str(&rest[..at]);
        out.push_str("]]]]><![CDATA[>");
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Byte offset of the first `]]>` in `s`. Hops between `>` with `str::find(char)` (memchr):
/// `str::find` with a `&str` pattern builds a two-way searcher per call, which costs more than the
/// whole search for the short values here.
pub(crate) fn find_cdata_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(at) = s.get(from..)?.find('>') {
        let gt = from + at;
        if gt >= 2 && bytes[gt - 2..gt] == *b"]]" {
            return Some(gt - 2);
        }
        from = gt + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(input: &str) -> String {
        parse(input).expect("parses").text
    }

    #[test]
    fn tree_with_whitespace_between_children() {
        let root = parse(
            "<?xml version=\"1.0\"?>\n<xml>\n  <A><![CDATA[x]]></A>\n  <B>1</B>\n  <C/>\n</xml>\n",
        )
        .expect("parses");
        assert_eq!(root.name, "xml");
        assert_eq!(root.text, "");
        assert_eq!(root.children.len(), 3);
        assert_eq!(root.child_text("A"), Some("x"));
        assert_eq!(root.child_text("B"), Some("1"));
        assert_eq!(root.child_text("C"), Some(""));
        assert_eq!(root.child_text("D"), None);
    }

    #[test]
    fn cdata_is_kept_verbatim_and_concatenated() {
        assert_eq!(
            text_of("<a><![CDATA[a]]]]><![CDATA[>b]]></a>"),
            "a]]>b".to_owned()
        );
        assert_eq!(text_of("<a><![CDATA[  spaced  ]]></a>"), "  spaced  ");
        assert_eq!(text_of("<a>  bare  </a>"), "  bare  ");
        assert_eq!(text_of("<a>x<![CDATA[<y>]]>z</a>"), "x<y>z");
        assert_eq!(text_of("<a><![CDATA[&amp;]]></a>"), "&amp;");
    }

    #[test]
    fn entities_and_character_references() {
        assert_eq!(
            text_of("<a>&lt;&gt;&amp;&apos;&quot;&#20320;&#x597D;&#x1F389;</a>"),
            "<>&'\"你好🎉"
        );
        assert_eq!(
            parse("<a>&foo;</a>"),
            Err(XmlError::Entity("foo".to_owned()))
        );
        assert!(matches!(
            parse("<a>&#xD800;</a>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            parse("<a>&#x110000;</a>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(parse("<a>&#+1;</a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse("<a>&amp</a>"), Err(XmlError::Malformed(_))));
    }

    #[test]
    fn raw_control_characters_are_accepted() {
        let s = "<a>\u{1}\u{8}\u{b}\u{1f}<![CDATA[\u{2}\u{1e}]]></a>";
        assert_eq!(text_of(s), "\u{1}\u{8}\u{b}\u{1f}\u{2}\u{1e}");
    }

    #[test]
    fn doctype_is_refused_anywhere() {
        let xxe = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><A>&e;</A></xml>";
        assert_eq!(parse(xxe), Err(XmlError::Doctype));
        assert_eq!(parse("<xml><!DOCTYPE x></xml>"), Err(XmlError::Doctype));
    }

    #[test]
    fn comments_and_processing_instructions_are_tolerated() {
        let root = parse("<!-- c --><?pi x?><xml><!-- c --><A>1</A><?pi?></xml><!-- end -->")
            .expect("parses");
        assert_eq!(root.child_text("A"), Some("1"));
    }

    #[test]
    fn depth_and_size_limits() {
        let ok = format!("{}{}", "<a>".repeat(8), "</a>".repeat(8));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "<a>".repeat(9), "</a>".repeat(9));
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
        let deep_empty = format!("{}<b/>{}", "<a>".repeat(8), "</a>".repeat(8));
        assert_eq!(parse(&deep_empty), Err(XmlError::TooDeep));

        let wide_ok = format!("<r>{}</r>", "<i/>".repeat(511));
        assert!(parse(&wide_ok).is_ok());
        let wide = format!("<r>{}</r>", "<i/>".repeat(512));
        assert_eq!(parse(&wide), Err(XmlError::TooLarge));
    }

    #[test]
    fn malformed_documents() {
        for bad in [
            "",
            "   ",
            "<a>",
            "<a></b>",
            "<a></a><b></b>",
            "<a></a>trailing",
            "lead<a></a>",
            "<a><b></a></b>",
            "</a>",
            "<a>x < y</a>",
            "<!-- only a comment -->",
        ] {
            assert!(
                matches!(parse(bad), Err(XmlError::Malformed(_))),
                "{bad:?} gave {:?}",
                parse(bad)
            );
        }
        // Whitespace after the root is fine.
        assert!(parse("<a></a>\n\n").is_ok());
    }

    #[test]
    fn repeated_children_are_a_list() {
        let root = parse("<L><item>1</item><x/><item>2</item></L>").expect("parses");
        let items: Vec<&str> = root
            .children_named("item")
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(items, ["1", "2"]);
    }

    #[test]
    fn push_cdata_splits_the_terminator_and_round_trips() {
        for text in ["", "plain", "]]>", "a]]>b]]>", "]]]>>", "x]]"] {
            let mut out = String::from("<a>");
            push_cdata(&mut out, text);
            out.push_str("</a>");
            assert_eq!(text_of(&out), text, "{out}");
        }
        let mut out = String::new();
        push_cdata(&mut out, "a]]>b");
        assert_eq!(out, "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    proptest::proptest! {
        #[test]
        fn push_cdata_agrees_with_splitting(s in "[\\]>a]{0,16}|.{0,16}") {
            let mut expected = String::from("<![CDATA[");
            expected.push_str(&s.split("]]>").collect::<Vec<_>>().join("]]]]><![CDATA[>"));
            expected.push_str("]]>");
            let mut out = String::new();
            push_cdata(&mut out, &s);
            proptest::prop_assert_eq!(out, expected);
        }
    }

    /// Pieces of push-like and hostile XML, glued at random by the equivalence property.
    const PIECES: &[&str] = &[
        "<xml>",
        "</xml>",
        "<A>",
        "</A>",
        "<B>",
        "</B>",
        "<C/>",
        "<xml/>",
        "<A >",
        "</A >",
        "<A x=\"1\">",
        "<![CDATA[",
        "]]>",
        "<![CDATA[x]]>",
        "<![CDATA[]]>",
        "<![CDATA[ ]]>",
        "<![CDATA[a]]]]><![CDATA[>b]]>",
        " ",
        "\n",
        "\t",
        "\r\n",
        "x",
        "中",
        "🎉",
        "\u{1}",
        "&amp;",
        "&lt;",
        "&#20320;",
        "&e;",
        "&",
        "<",
        ">",
        "]]>",
        "/>",
        "<?xml version=\"1.0\"?>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<?pi x?>",
        "<?",
        "?>",
        "<!-- c -->",
        "<!DOCTYPE x>",
        "\u{feff}",
        "<1a>",
        "<_a>",
        "</_a>",
        "<a:b>",
        "</a:b>",
    ];

    fn soup() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::collection::vec(proptest::sample::select(PIECES), 0..24)
            .prop_map(|pieces| pieces.concat())
    }

    /// Nested well-formed documents in the platform's shape, so the property also covers inputs
    /// the scanner accepts, not just ones it declines.
    fn pushlike() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        let leaf = (
            proptest::sample::select(vec!["A", "B", "MsgType", "item"]),
            proptest::collection::vec(proptest::sample::select(PIECES), 0..3),
        )
            .prop_map(|(n, inner)| format!("<{n}>{}</{n}>", inner.concat()));
        let tree = leaf.prop_recursive(4, 40, 6, |inner| {
            (
                proptest::sample::select(vec!["L", "Info", "xml"]),
                proptest::collection::vec(inner, 0..6),
                proptest::sample::select(vec!["", "\n", "\n  ", "x", "<![CDATA[ ]]>"]),
            )
                .prop_map(|(n, kids, sep)| format!("<{n}>{sep}{}</{n}>", kids.join(sep)))
        });
        (
            proptest::sample::select(vec!["", "<?xml version=\"1.0\"?>\n", "\u{feff}", " "]),
            tree,
            proptest::sample::select(vec!["", "\n", " x"]),
        )
            .prop_map(|(pre, t, post)| format!("{pre}{t}{post}"))
    }

    fn assert_scan_agrees(s: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        if let Some(doc) = scan(s) {
            let strict = parse(s);
            proptest::prop_assert!(strict.is_ok(), "scan accepted {s:?}, parse gave {strict:?}");
            let strict = strict.expect("checked above");
            proptest::prop_assert_eq!(doc, Doc::from_element(&strict), "{:?}", s);
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        #[test]
        fn scan_builds_what_parse_builds_on_soup(s in soup()) {
            assert_scan_agrees(&s)?;
        }

        #[test]
        fn scan_builds_what_parse_builds_on_pushlike(s in pushlike()) {
            assert_scan_agrees(&s)?;
        }
    }

    proptest::proptest! {
        #[test]
        fn find_byte_is_position(s in "[a<中🎉]{0,40}", from in 0usize..60) {
            let expected = s
                .as_bytes()
                .get(from..)
                .and_then(|rest| rest.iter().position(|&b| b == b'<'))
                .map(|at| from + at);
            proptest::prop_assert_eq!(find_byte(&s, from, b'<'), expected);
        }

        #[test]
        fn find_cdata_end_is_find(s in "[\\]>a中]{0,40}") {
            proptest::prop_assert_eq!(find_cdata_end(&s), s.find("]]>"));
        }

        #[test]
        fn push_numbers_is_display(i in proptest::num::i64::ANY, u in proptest::num::u64::ANY) {
            let mut out = String::from("x");
            push_i64(&mut out, i);
            push_u64(&mut out, u);
            proptest::prop_assert_eq!(out, format!("x{i}{u}"));
        }
    }

    #[test]
    fn scan_reads_the_platform_shapes_itself() {
        let pretty = "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[FromUser]]></FromUserName>\n  <CreateTime>123456789</CreateTime>\n  <MsgType><![CDATA[event]]></MsgType>\n  <SendPicsInfo><Count>1</Count>\n<PicList><item><PicMd5Sum><![CDATA[1b5f]]></PicMd5Sum>\n</item>\n</PicList>\n</SendPicsInfo>\n  <Empty/>\n</xml>\n";
        let compact = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><xml><Content><![CDATA[a]]]]><![CDATA[>b \u{1}]]></Content><MsgId>1</MsgId></xml>";
        for s in [pretty, compact] {
            let doc = scan(s).expect("the common shape is scanned, not handed to the reader");
            let strict = parse(s).expect("parses");
            assert_eq!(doc, Doc::from_element(&strict));
        }
        let doc = scan(compact).expect("scanned");
        assert_eq!(doc.root().child_text("Content"), Some("a]]>b \u{1}"));
        let doc = scan(pretty).expect("scanned");
        let pics: Vec<_> = doc
            .root()
            .child("SendPicsInfo")
            .and_then(|i| i.child("PicList"))
            .map(|l| {
                l.children_named("item")
                    .map(|i| i.child_text("PicMd5Sum"))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(pics, [Some("1b5f")]);
        assert_eq!(doc.root().child_text("Empty"), Some(""));
        assert_eq!(doc.root().text(), "");
    }

    #[test]
    fn scan_declines_what_only_the_strict_reader_may_judge() {
        for s in [
            "<xml>&amp;</xml>",
            "<xml><!-- c --></xml>",
            "<!DOCTYPE x><xml/>",
            "<xml a=\"1\"/>",
            "<xml> x <A/></xml>",
            "<xml><A/> x </xml>",
            "<xml>",
            "<xml></A>",
            "<xml/><xml/>",
            "",
            "<?pi?><xml/>",
        ] {
            assert!(scan(s).is_none(), "{s:?}");
        }
        let deep = format!("{}{}", "<a>".repeat(9), "</a>".repeat(9));
        assert!(scan(&deep).is_none());
        let wide = format!("<r>{}</r>", "<i/>".repeat(512));
        assert!(scan(&wide).is_none());
        let wide_ok = format!("<r>{}</r>", "<i/>".repeat(511));
        assert!(scan(&wide_ok).is_some());
    }

    #[test]
    fn mixed_content_keeps_non_whitespace_text() {
        let root = parse("<a> x <b/> y </a>").expect("parses");
        assert_eq!(root.text, " x  y ");
    }
}
