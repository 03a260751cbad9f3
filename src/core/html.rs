//! A small, forgiving scanner over mail HTML: tags, text, comments as byte ranges of the
//! source. The reply rules use it to find and cut elements (quotes, command lines) while
//! leaving every other byte of the agent's HTML as it was. It never fails: whatever is not
//! a tag is text.

/// What a token is; `name` is lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Open {
        name: String,
        self_closing: bool,
    },
    Close {
        name: String,
    },
    /// Comments, doctype, processing instructions, the content of script/style.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

impl Token {
    pub fn is_open(&self, tag: &str) -> bool {
        matches!(&self.kind, Kind::Open { name, .. } if name == tag)
    }

    pub fn is_close(&self, tag: &str) -> bool {
        matches!(&self.kind, Kind::Close { name } if name == tag)
    }

    pub fn name(&self) -> Option<&str> {
        match &self.kind {
            Kind::Open { name, .. } | Kind::Close { name } => Some(name),
            _ => None,
        }
    }
}

/// Elements that never have a closing tag.
pub(crate) fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area"
            | "base"
            | "br"
            | "col"
            | "embed"
            | "hr"
            | "img"
            | "input"
            | "link"
            | "meta"
            | "param"
            | "source"
            | "track"
            | "wbr"
    )
}

/// Elements that start a new line of text when rendered.
pub(crate) fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "blockquote"
            | "pre"
            | "table"
            | "tr"
            | "td"
            | "th"
            | "ul"
            | "ol"
            | "li"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "hr"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "address"
            | "dl"
            | "dt"
            | "dd"
            | "body"
            | "html"
            | "head"
    )
}

/// Splits `html` into tokens covering every byte, in order.
pub(crate) fn tokens(html: &str) -> Vec<Token> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut text_start = 0;
    let flush = |out: &mut Vec<Token>, from: usize, to: usize| {
        if from < to {
            out.push(Token {
                start: from,
                end: to,
                kind: Kind::Text,
            });
        }
    };
    while pos < b.len() {
        if b[pos] != b'<' {
            pos += 1;
            continue;
        }
        let rest = &b[pos..];
        let (end, kind) = if rest.starts_with(b"<!--") {
            let end = find(b, pos + 4, b"-->").map_or(b.len(), |e| e + 3);
            (end, Kind::Other)
        } else if rest.len() > 1 && (rest[1] == b'!' || rest[1] == b'?') {
            let end = find(b, pos, b">").map_or(b.len(), |e| e + 1);
            (end, Kind::Other)
        } else if rest.len() > 1 && (rest[1].is_ascii_alphabetic() || rest[1] == b'/') {
            let closing = rest[1] == b'/';
            let name_start = pos + 1 + usize::from(closing);
            let name_end = b[name_start..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b':' | b'-' | b'_')))
                .map_or(b.len(), |n| name_start + n);
            if name_end == name_start {
                pos += 1;
                continue;
            }
            let Some(end) = tag_end(b, name_end) else {
                // `<b` without `>`: the rest is text.
                break;
            };
            let name = html[name_start..name_end].to_ascii_lowercase();
            let kind = if closing {
                Kind::Close { name }
            } else {
                let self_closing = b[..end - 1].ends_with(b"/");
                Kind::Open { name, self_closing }
            };
            (end, kind)
        } else {
            pos += 1;
            continue;
        };
        flush(&mut out, text_start, pos);
        let raw_text = match &kind {
            Kind::Open { name, .. } if matches!(name.as_str(), "script" | "style" | "title") => {
                Some(format!("</{name}"))
            }
            _ => None,
        };
        out.push(Token {
            start: pos,
            end,
            kind,
        });
        pos = end;
        if let Some(close) = raw_text {
            let content_end = find_ci(b, pos, close.as_bytes()).unwrap_or(b.len());
            if content_end > pos {
                out.push(Token {
                    start: pos,
                    end: content_end,
                    kind: Kind::Other,
                });
            }
            pos = content_end;
        }
        text_start = pos;
    }
    flush(&mut out, text_start, b.len());
    out
}

/// End (exclusive) of a tag whose name ends at `from`: the first `>` outside quotes.
fn tag_end(b: &[u8], from: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, c) in b.iter().enumerate().skip(from) {
        match (quote, *c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(*c),
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn find_ci(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

/// The value of attribute `attr` in the source of an open tag, as written (entities kept).
pub(crate) fn attribute<'h>(tag_src: &'h str, attr: &str) -> Option<&'h str> {
    let b = tag_src.as_bytes();
    // Skip `<name`.
    let mut i = 1;
    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' && b[i] != b'/' {
        i += 1;
    }
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'>' {
            return None;
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = &tag_src[name_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = "";
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let start = i + 1;
                let end = b[start..]
                    .iter()
                    .position(|c| *c == q)
                    .map_or(b.len(), |p| start + p);
                value = &tag_src[start..end];
                i = (end + 1).min(b.len());
            } else {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = &tag_src[start..i];
            }
        }
        if name.eq_ignore_ascii_case(attr) {
            return Some(value);
        }
        if i == name_start {
            i += 1; // never loop on a stray character
        }
    }
}

/// True when the open tag's `class` attribute holds the class `class`.
pub(crate) fn has_class(tag_src: &str, class: &str) -> bool {
    attribute(tag_src, "class").is_some_and(|v| {
        v.split_ascii_whitespace()
            .any(|c| c.eq_ignore_ascii_case(class))
    })
}

/// Index of the token that closes the element opened at `open`, counting nested elements
/// of the same name; `None` when it is never closed.
pub(crate) fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let name = tokens[open].name()?;
    if let Kind::Open {
        self_closing: true, ..
    } = tokens[open].kind
    {
        return Some(open);
    }
    if is_void(name) {
        return Some(open);
    }
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open + 1) {
        match &t.kind {
            Kind::Open {
                name: n,
                self_closing: false,
            } if n == name => depth += 1,
            Kind::Close { name: n } if n == name => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// The rendered text of `tokens[from..to]`: entities decoded, whitespace collapsed, trimmed.
pub(crate) fn text_of(html: &str, tokens: &[Token], from: usize, to: usize) -> String {
    let mut raw = String::new();
    for t in &tokens[from..to.min(tokens.len())] {
        match &t.kind {
            Kind::Text => raw.push_str(&html[t.start..t.end]),
            Kind::Open { name, .. } if name == "br" || is_block(name) => raw.push(' '),
            Kind::Close { name } if is_block(name) => raw.push(' '),
            _ => {}
        }
    }
    collapse(&crate::core::mail::decode_entities(&raw))
}

/// Whitespace (including no-break space) collapsed to single spaces, trimmed.
pub(crate) fn collapse(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The open elements (names, outermost first) at token index `at`, ignoring void elements
/// and tolerating stray closing tags.
pub(crate) fn open_elements(tokens: &[Token], at: usize) -> Vec<(usize, String)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, t) in tokens.iter().enumerate().take(at) {
        match &t.kind {
            Kind::Open {
                name,
                self_closing: false,
            } if !is_void(name) => stack.push((i, name.clone())),
            Kind::Close { name } => {
                if let Some(p) = stack.iter().rposition(|(_, n)| n == name) {
                    stack.truncate(p);
                }
            }
            _ => {}
        }
    }
    stack
}

/// `&`, `<`, `>`, `"` and `'` escaped, for HTML text and for attribute values in either
/// kind of quotes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Plain text as HTML: escaped, one `<br>` per line break.
pub(crate) fn text_to_html(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<String> = text.trim_end().split('\n').map(escape).collect();
    lines.join("<br>\n")
}

/// Byte offsets of the content of `<body>` (after its open tag, before `</body>`); the
/// whole string when it has none.
pub(crate) fn body_range(html: &str, tokens: &[Token]) -> (usize, usize) {
    let start = tokens
        .iter()
        .find(|t| t.is_open("body"))
        .map_or(0, |t| t.end);
    let end = tokens
        .iter()
        .rev()
        .find(|t| t.is_close("body") && t.start >= start)
        .map_or(html.len(), |t| t.start);
    (start, end.max(start))
}

/// A fragment with unmatched closing tags dropped and unclosed elements closed, so it can
/// be embedded in another document without swallowing what follows.
pub(crate) fn balanced(fragment: &str) -> String {
    let toks = tokens(fragment);
    let mut out = String::with_capacity(fragment.len() + 32);
    let mut stack: Vec<String> = Vec::new();
    for t in &toks {
        match &t.kind {
            Kind::Open {
                name,
                self_closing: false,
            } if !is_void(name) => stack.push(name.clone()),
            Kind::Close { name } => match stack.iter().rposition(|n| n == name) {
                Some(p) => {
                    for n in stack.drain(p + 1..).rev() {
                        out.push_str(&format!("</{n}>"));
                    }
                    stack.pop();
                }
                None => continue,
            },
            _ => {}
        }
        out.push_str(&fragment[t.start..t.end]);
    }
    for n in stack.iter().rev() {
        out.push_str(&format!("</{n}>"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(html: &str) -> Vec<String> {
        tokens(html)
            .iter()
            .map(|t| match &t.kind {
                Kind::Text => format!("T({})", &html[t.start..t.end]),
                Kind::Open { name, .. } => format!("<{name}>"),
                Kind::Close { name } => format!("</{name}>"),
                Kind::Other => "O".into(),
            })
            .collect()
    }

    #[test]
    fn escape_makes_text_safe_in_content_and_in_either_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>Tom & Jerry</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Tom &amp; Jerry&lt;/a&gt;"
        );
        assert_eq!(text_to_html("it's\r\n<ok>\n"), "it&#39;s<br>\n&lt;ok&gt;");
    }

    #[test]
    fn scans_tags_text_and_the_odd_parts() {
        assert_eq!(
            kinds("<!DOCTYPE html><P class='a>b'>x &lt; y<BR/></p><!-- c --><o:p></o:p>a < b"),
            vec![
                "O",
                "<p>",
                "T(x &lt; y)",
                "<br>",
                "</p>",
                "O",
                "<o:p>",
                "</o:p>",
                "T(a < b)"
            ]
        );
        assert_eq!(
            kinds("<style>p > a {}</style><div"),
            vec!["<style>", "O", "</style>", "T(<div)"]
        );
        assert_eq!(kinds(""), Vec::<String>::new());
    }

    #[test]
    fn attributes_and_classes() {
        let tag = r#"<div class="gmail_quote gmail_quote_container" id=x data-a='1 2' hidden>"#;
        assert!(has_class(tag, "gmail_quote"));
        assert!(!has_class(tag, "gmail"));
        assert_eq!(attribute(tag, "ID"), Some("x"));
        assert_eq!(attribute(tag, "data-a"), Some("1 2"));
        assert_eq!(attribute(tag, "hidden"), Some(""));
        assert_eq!(attribute(tag, "style"), None);
        assert_eq!(attribute("<br/>", "x"), None);
    }

    #[test]
    fn matching_and_balancing() {
        let html = "<div><div>a</div><p>b</div>c";
        let t = tokens(html);
        assert_eq!(matching_close(&t, 0), Some(6));
        assert_eq!(
            balanced("</b><div><p>x</div><i>y"),
            "<div><p>x</p></div><i>y</i>"
        );
        assert_eq!(text_of(html, &t, 0, t.len()), "a b c");
        assert_eq!(
            open_elements(&tokens("<html><body><div><br><p>x</p>"), 4)
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>(),
            vec!["html", "body", "div"]
        );
    }
}
