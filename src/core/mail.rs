//! A customer's mail as the ticket rules see it: the fields the rules need, decoded from
//! any charset and MIME shape by mail-parser. A mail that cannot be understood still
//! yields an `IncomingMail` (with `problems` filled) so its raw bytes are never lost.

/// One address of a header, lower-cased address plus the display name if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: Option<String>,
    /// Lower-cased `local@domain`.
    pub address: String,
}

/// An attachment as found in the mail; the bytes stay in the raw mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// Hex sha256 of the decoded bytes.
    pub sha256: String,
    /// mail-parser's part id, to find the bytes again in the raw mail.
    pub part_id: u32,
    pub content_id: Option<String>,
    pub inline: bool,
}

#[derive(Debug, Clone, Default)]
pub struct IncomingMail {
    pub from: Option<Address>,
    pub reply_to: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    /// Decoded subject (RFC 2047), trimmed; empty when missing.
    pub subject: String,
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// Without angle brackets.
    pub in_reply_to: Vec<String>,
    /// Without angle brackets.
    pub references: Vec<String>,
    /// Date header as Unix seconds, if present and valid.
    pub date: Option<i64>,
    /// Plain text of the body: the text part, or the HTML part turned into text.
    pub text: String,
    /// The HTML body, if the mail has one.
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// `Auto-Submitted` value, lower-cased, if present.
    pub auto_submitted: Option<String>,
    /// `Precedence` value, lower-cased, if present.
    pub precedence: Option<String>,
    pub list_id: Option<String>,
    /// `List-Unsubscribe` value, if present (a list mail even without `List-Id`).
    pub list_unsubscribe: Option<String>,
    /// `List-Post` value, if present.
    pub list_post: Option<String>,
    /// Top-level MIME type, lower-cased (`text/plain` when missing), e.g. `multipart/report`.
    pub content_type: String,
    /// `Return-Path` as given by the delivering MTA; `Some("")` for the null sender `<>`.
    pub return_path: Option<String>,
    /// Every `X-Loop` header value (the gateway's own marker shows a loop).
    pub x_loop: Vec<String>,
    /// What went wrong while parsing (noted in the ticket history), empty when all is well.
    pub problems: Vec<String>,
}

impl IncomingMail {
    /// The ticket creator's address: Reply-To wins over From.
    pub fn sender(&self) -> Option<&Address> {
        self.reply_to.as_ref().or(self.from.as_ref())
    }
}

use mail_parser::{
    Address as MpAddress, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

/// Header sections longer than this are noted: legitimate mail stays far below.
const HEADER_LINES_NOTED: usize = 5_000;
/// MIME trees deeper than this are noted; mail-parser still copes, but it is suspicious.
const NESTING_NOTED: usize = 20;

/// A mail as mail-parser reads it, taken apart level by level when dropped: mail-parser's
/// own drop recurses once per encapsulated message, and a 1 MB mail of 30,000
/// message/rfc822 parts one inside the next overflows the stack and aborts the process.
pub struct Parsed<'x>(Message<'x>);

impl<'x> std::ops::Deref for Parsed<'x> {
    type Target = Message<'x>;
    fn deref(&self) -> &Message<'x> {
        &self.0
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut stack = vec![std::mem::take(&mut self.0)];
        while let Some(mut m) = stack.pop() {
            for part in &mut m.parts {
                if let PartType::Message(inner) = &mut part.body {
                    stack.push(std::mem::take(inner));
                }
            }
        }
    }
}

/// The MIME structure of a raw mail (mail-parser), safe to drop however deep it nests.
pub fn parse_mime(raw: &[u8]) -> Option<Parsed<'_>> {
    MessageParser::default().parse(raw).map(Parsed)
}

/// Parses raw RFC 5322 bytes into the fields the ticket rules need. Never panics: whatever
/// is odd about the mail lands in `problems`, and the caller keeps the raw bytes.
pub fn parse(raw: &[u8]) -> IncomingMail {
    let mut mail = IncomingMail {
        content_type: "text/plain".into(),
        ..IncomingMail::default()
    };
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        mail.problems.push("empty mail".into());
        return mail;
    }
    let fields = HeaderFields::scan(raw);
    note_raw_problems(raw, &fields, &mut mail.problems);
    fill_from_raw_headers(&fields, &mut mail);

    // mail-parser is robust, but a panic in a dependency must not take the mail (or the
    // session) down with it.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut parsed = IncomingMail {
            content_type: mail.content_type.clone(),
            ..IncomingMail::default()
        };
        match parse_mime(raw) {
            Some(message) => fill_from_message(&message, &mut parsed),
            None => parsed.problems.push("unparseable message".into()),
        }
        parsed
    }));
    match outcome {
        Ok(parsed) => merge_parsed(&mut mail, parsed),
        Err(_) => mail
            .problems
            .push("mail parser failed (internal panic); kept raw".into()),
    }
    if mail.from.is_none() {
        mail.problems.push("no From header".into());
    }
    scrub_nul(&mut mail);
    mail
}

/// The decoded bytes of the parts `part_ids` (mail-parser's numbering, as stored with each
/// attachment) of a raw mail; `None` for a part the mail does not have.
pub fn part_bytes(raw: &[u8], part_ids: &[u32]) -> Vec<Option<Vec<u8>>> {
    std::panic::catch_unwind(|| {
        let message = parse_mime(raw);
        part_ids
            .iter()
            .map(|&id| {
                let part = message.as_ref()?.parts.get(id as usize)?;
                Some(part.contents().to_vec())
            })
            .collect()
    })
    .unwrap_or_else(|_| vec![None; part_ids.len()])
}

/// NUL characters become U+FFFD in every decoded field: PostgreSQL text columns reject
/// them ("invalid byte sequence for encoding UTF8: 0x00"), which would leave such a mail
/// untakeable. The raw bytes keep the NULs.
fn scrub_nul(mail: &mut IncomingMail) {
    fn s(x: &mut String) {
        if x.contains('\0') {
            *x = x.replace('\0', "\u{FFFD}");
        }
    }
    let m = mail;
    for a in m
        .from
        .iter_mut()
        .chain(m.reply_to.iter_mut())
        .chain(m.to.iter_mut())
        .chain(m.cc.iter_mut())
    {
        s(&mut a.address);
        a.name.iter_mut().for_each(s);
    }
    s(&mut m.subject);
    s(&mut m.text);
    s(&mut m.content_type);
    for a in &mut m.attachments {
        s(&mut a.name);
        s(&mut a.content_type);
        a.content_id.iter_mut().for_each(s);
    }
    m.message_id
        .iter_mut()
        .chain(m.html.iter_mut())
        .chain(m.auto_submitted.iter_mut())
        .chain(m.precedence.iter_mut())
        .chain(m.list_id.iter_mut())
        .chain(m.list_unsubscribe.iter_mut())
        .chain(m.list_post.iter_mut())
        .chain(m.return_path.iter_mut())
        .chain(m.in_reply_to.iter_mut())
        .chain(m.references.iter_mut())
        .chain(m.x_loop.iter_mut())
        .chain(m.problems.iter_mut())
        .for_each(s);
}

fn merge_parsed(mail: &mut IncomingMail, p: IncomingMail) {
    mail.from = p.from;
    mail.reply_to = p.reply_to;
    mail.to = p.to;
    mail.cc = p.cc;
    mail.subject = p.subject;
    mail.message_id = p.message_id;
    mail.in_reply_to = p.in_reply_to;
    mail.references = p.references;
    mail.date = p.date;
    mail.text = p.text;
    mail.html = p.html;
    mail.attachments = p.attachments;
    mail.content_type = p.content_type;
    mail.problems.extend(p.problems);
}

fn fill_from_message(message: &Message<'_>, mail: &mut IncomingMail) {
    mail.from = message.from().and_then(first_address);
    mail.reply_to = message.reply_to().and_then(first_address);
    mail.to = message.to().map(all_addresses).unwrap_or_default();
    mail.cc = message.cc().map(all_addresses).unwrap_or_default();
    mail.subject = message.subject().map(clean_text).unwrap_or_default();
    mail.message_id = message
        .message_id()
        .map(strip_angles)
        .filter(|s| !s.is_empty());
    mail.in_reply_to = id_list(message.in_reply_to());
    mail.references = id_list(message.references());
    mail.date = message.date().map(|d| d.to_timestamp());

    let root = message.root_part();
    if let Some(ct) = root.content_type() {
        mail.content_type = match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        }
        .to_ascii_lowercase();
    }

    let texts: Vec<&str> = message
        .text_body
        .iter()
        .filter_map(|id| message.parts.get(*id as usize))
        .filter_map(|part| match &part.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect();
    let html = message
        .html_body
        .iter()
        .filter_map(|id| message.parts.get(*id as usize))
        .find_map(|part| match &part.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        });
    mail.text = if texts.is_empty() {
        html.as_deref().map(html_to_text).unwrap_or_default()
    } else {
        texts.join("\n")
    };
    mail.html = html;

    collect_attachments(message, mail);
    note_structure_problems(message, mail);
}

fn collect_attachments(message: &Message<'_>, mail: &mut IncomingMail) {
    let mut ids: Vec<u32> = message.attachments.clone();
    // Inline images between text parts sit in the body lists only; they are attachments too.
    for id in message.text_body.iter().chain(message.html_body.iter()) {
        if let Some(part) = message.parts.get(*id as usize)
            && matches!(part.body, PartType::Binary(_) | PartType::InlineBinary(_))
            && !ids.contains(id)
        {
            ids.push(*id);
        }
    }
    ids.sort_unstable();
    for (n, id) in ids.into_iter().enumerate() {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        mail.attachments.push(attachment_of(part, id, n + 1));
    }
}

fn attachment_of(part: &MessagePart<'_>, id: u32, n: usize) -> Attachment {
    let content_type = part
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| match part.body {
            PartType::Message(_) => "message/rfc822".into(),
            PartType::Text(_) => "text/plain".into(),
            PartType::Html(_) => "text/html".into(),
            _ => "application/octet-stream".into(),
        })
        .to_ascii_lowercase();
    let name = part
        .attachment_name()
        .map(clean_text)
        .filter(|n| !n.is_empty())
        .or_else(|| {
            // A forwarded mail is best named by its subject.
            part.message()
                .and_then(|m| m.subject())
                .map(|s| format!("{}.eml", clean_text(s)))
        })
        .unwrap_or_else(|| format!("attachment-{n}"));
    let bytes = part.contents();
    let inline = part
        .content_disposition()
        .map(|d| d.is_inline())
        .unwrap_or(false)
        || matches!(part.body, PartType::InlineBinary(_))
        || (part.content_id().is_some() && part.content_disposition().is_none());
    Attachment {
        name,
        content_type,
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        part_id: id,
        content_id: part
            .content_id()
            .map(strip_angles)
            .filter(|s| !s.is_empty()),
        inline,
    }
}

fn note_structure_problems(message: &Message<'_>, mail: &mut IncomingMail) {
    let mut encoding_noted = false;
    let mut charset_noted = false;
    for part in &message.parts {
        if part.is_encoding_problem && !encoding_noted {
            mail.problems
                .push("undecodable part content (bad transfer encoding)".into());
            encoding_noted = true;
        }
        if let Some(ct) = part.content_type() {
            if ct.ctype().eq_ignore_ascii_case("multipart") && ct.attribute("boundary").is_none() {
                mail.problems
                    .push("unparseable MIME structure: multipart without boundary".into());
            }
            if let Some(cs) = ct.attribute("charset")
                && !charset_noted
                && !known_charset(cs)
            {
                mail.problems.push(format!(
                    "unknown charset {:?}, decoded as best effort",
                    short(cs)
                ));
                charset_noted = true;
            }
        }
    }
    // A declared multipart whose boundary never shows up leaves the root without sub parts.
    let root = message.root_part();
    if root
        .content_type()
        .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
        && root.sub_parts().is_none_or(|s| s.is_empty())
    {
        mail.problems
            .push("unparseable MIME structure: boundary not found".into());
    }
    let depth = nesting_depth(message);
    if depth > NESTING_NOTED {
        mail.problems
            .push(format!("MIME parts nested {depth} deep"));
    }
}

/// Depth of the multipart tree, iteratively: hostile mail may nest very deep.
fn nesting_depth(message: &Message<'_>) -> usize {
    let mut max = 0;
    let mut stack = vec![(0u32, 0usize)];
    let mut seen = 0usize;
    while let Some((id, depth)) = stack.pop() {
        seen += 1;
        if seen > message.parts.len() + 1 {
            break; // defensive: never loop on a malformed tree
        }
        max = max.max(depth);
        if let Some(subs) = message.parts.get(id as usize).and_then(|p| p.sub_parts()) {
            stack.extend(subs.iter().filter(|s| **s > id).map(|s| (*s, depth + 1)));
        }
    }
    max
}

fn known_charset(cs: &str) -> bool {
    let l = cs.trim().to_ascii_lowercase();
    matches!(l.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii" | "")
        || mail_parser::decoders::charsets::map::charset_decoder(l.as_bytes()).is_some()
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn first_address(addr: &MpAddress<'_>) -> Option<Address> {
    addr.iter().find_map(to_address)
}

fn all_addresses(addr: &MpAddress<'_>) -> Vec<Address> {
    addr.iter().filter_map(to_address).collect()
}

fn to_address(a: &mail_parser::Addr<'_>) -> Option<Address> {
    let address = a.address()?.trim().to_lowercase();
    if address.is_empty() {
        return None;
    }
    Some(Address {
        name: a.name().map(clean_text).filter(|n| !n.is_empty()),
        address,
    })
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![strip_angles(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| strip_angles(t)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

fn strip_angles(s: &str) -> String {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// Trims and drops control characters (a NUL or CR in a subject breaks terminals and IMAP).
fn clean_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Raw top-level header fields: what mail-parser does not expose as we need it (the null
// Return-Path, every X-Loop), and the byte ranges `strip_gateway_headers` cuts out.

struct RawField {
    name: std::ops::Range<usize>,
    /// Whole field incl. continuation lines and line ending.
    span: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

struct HeaderFields<'a> {
    raw: &'a [u8],
    fields: Vec<RawField>,
    /// Offset of the first body byte (after the blank line), or `raw.len()`.
    end: usize,
    lines: usize,
    has_separator: bool,
}

impl<'a> HeaderFields<'a> {
    fn scan(raw: &'a [u8]) -> Self {
        let mut fields: Vec<RawField> = Vec::new();
        let mut pos = 0;
        let mut lines = 0;
        let mut has_separator = false;
        // An mbox "From " line before the headers is not a field; skip it.
        if raw.starts_with(b"From ") {
            pos = line_end(raw, 0);
        }
        while pos < raw.len() {
            let end = line_end(raw, pos);
            let line = &raw[pos..end];
            lines += 1;
            if line == b"\n" || line == b"\r\n" || line == b"\r" {
                has_separator = true;
                pos = end;
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                if let Some(last) = fields.last_mut() {
                    last.span.end = end;
                    last.value.end = end;
                }
            } else {
                let colon = line.iter().position(|b| *b == b':');
                let (name, value) = match colon {
                    Some(c) => (pos..pos + c, pos + c + 1..end),
                    None => (pos..pos, pos..end),
                };
                fields.push(RawField {
                    name,
                    span: pos..end,
                    value,
                });
            }
            pos = end;
        }
        HeaderFields {
            raw,
            fields,
            end: pos,
            lines,
            has_separator,
        }
    }

    fn name(&self, f: &RawField) -> &'a [u8] {
        trim_ascii(&self.raw[f.name.clone()])
    }

    /// Unfolded, trimmed value as text (8-bit bytes decoded as UTF-8, else Latin-1).
    fn value(&self, f: &RawField) -> String {
        let bytes = &self.raw[f.value.clone()];
        let text = match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => bytes.iter().map(|b| *b as char).collect(),
        };
        let unfolded: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        unfolded.trim().to_string()
    }

    fn all(&self, name: &str) -> impl Iterator<Item = String> + '_ {
        let name = name.as_bytes().to_vec();
        self.fields
            .iter()
            .filter(move |f| self.name(f).eq_ignore_ascii_case(&name))
            .map(|f| self.value(f))
    }

    fn first(&self, name: &str) -> Option<String> {
        self.all(name).next()
    }
}

fn line_end(raw: &[u8], from: usize) -> usize {
    match raw[from..].iter().position(|b| *b == b'\n') {
        Some(i) => from + i + 1,
        None => raw.len(),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn fill_from_raw_headers(h: &HeaderFields<'_>, mail: &mut IncomingMail) {
    let lower = |s: String| s.to_ascii_lowercase();
    mail.auto_submitted = h.first("Auto-Submitted").map(lower);
    mail.precedence = h.first("Precedence").map(lower);
    mail.list_id = h.first("List-Id");
    mail.list_unsubscribe = h.first("List-Unsubscribe");
    mail.list_post = h.first("List-Post");
    mail.x_loop = h.all("X-Loop").collect();
    mail.return_path = h.first("Return-Path").map(|v| {
        // `<>` is the null sender; keep the bare address otherwise.
        let v = v.trim();
        let inner = match (v.find('<'), v.rfind('>')) {
            (Some(a), Some(b)) if a < b => &v[a + 1..b],
            _ => v,
        };
        inner.trim().to_ascii_lowercase()
    });
}

fn note_raw_problems(raw: &[u8], h: &HeaderFields<'_>, problems: &mut Vec<String>) {
    if raw.contains(&0) {
        problems.push("NUL bytes in mail".into());
    }
    if h.fields.is_empty() {
        problems.push("no header section".into());
    } else if !h.has_separator && h.end < raw.len() {
        problems.push("no blank line between header and body".into());
    }
    if h.lines > HEADER_LINES_NOTED {
        problems.push(format!("oversized header section ({} lines)", h.lines));
    }
    if std::str::from_utf8(&raw[..h.end]).is_err() {
        problems.push("8-bit bytes in headers that are not UTF-8".into());
    }
    if h.fields.iter().any(|f| f.name.is_empty()) {
        problems.push("header line without colon".into());
    }
    if h.all("From").count() > 1 {
        problems.push("more than one From header".into());
    }
}

/// Removes every top-level header field named `X-Ticket-*` or `X-Loop` (with its folded
/// continuation lines) and leaves every other byte as it was: outside mail must never carry
/// gateway state into a ticket.
pub fn strip_gateway_headers(raw: &[u8]) -> Vec<u8> {
    let h = HeaderFields::scan(raw);
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    for f in &h.fields {
        let name = h.name(f);
        if is_gateway_header(name) {
            out.extend_from_slice(&raw[pos..f.span.start]);
            pos = f.span.end;
        }
    }
    out.extend_from_slice(&raw[pos..]);
    out
}

/// Every value of the top-level header `name` (case-insensitive), unfolded and trimmed, in
/// order: for callers that need a header mail-parser does not keep as written.
pub fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    HeaderFields::scan(raw).all(name).collect()
}

fn is_gateway_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"x-loop")
        || (name.len() >= 9 && name[..9].eq_ignore_ascii_case(b"x-ticket-"))
}

// ---------------------------------------------------------------------------------------
// HTML to readable text, for HTML-only mail: enough for a ticket view and full-text search.

/// Turns HTML into plain text: drops script/style/head, block elements become line breaks,
/// entities are decoded, runs of blank lines collapse.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    while !rest.is_empty() {
        if let Some(end_tag) = skip_until {
            match find_ci(rest, end_tag) {
                Some(i) => {
                    rest = &rest[i..];
                    skip_until = None;
                }
                None => break,
            }
            continue;
        }
        match rest.find('<') {
            None => {
                push_text(&mut out, rest);
                break;
            }
            Some(i) => {
                push_text(&mut out, &rest[..i]);
                rest = &rest[i..];
                if rest.starts_with("<!--") {
                    rest = match rest.find("-->") {
                        Some(e) => &rest[e + 3..],
                        None => "",
                    };
                    continue;
                }
                let (tag, after) = match rest.find('>') {
                    Some(e) => (&rest[1..e], &rest[e + 1..]),
                    None => (&rest[1..], ""),
                };
                rest = after;
                let name: String = tag
                    .trim_start_matches('/')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_ascii_lowercase();
                let closing = tag.starts_with('/');
                match name.as_str() {
                    "script" if !closing => skip_until = Some("</script"),
                    "style" if !closing => skip_until = Some("</style"),
                    "head" if !closing => skip_until = Some("</head"),
                    "br" => out.push('\n'),
                    "li" if !closing => out.push_str("\n- "),
                    "td" | "th" if !closing => out.push('\t'),
                    "p" | "div" | "tr" | "table" | "ul" | "ol" | "h1" | "h2" | "h3" | "h4"
                    | "h5" | "h6" | "blockquote" | "pre" | "hr" | "section" | "article"
                    | "header" | "footer" | "address" | "dl" | "dt" | "dd" => out.push('\n'),
                    _ => {}
                }
            }
        }
    }
    tidy_lines(&out)
}

fn push_text(out: &mut String, text: &str) {
    // HTML whitespace collapses; line structure comes from tags only.
    let decoded = decode_entities(text);
    for c in decoded.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == ' ' && (out.ends_with(' ') || out.ends_with('\n') || out.is_empty()) {
            continue;
        }
        out.push(c);
    }
}

fn tidy_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = line.trim();
        if line.is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.len();
    hay.as_bytes()
        .windows(n)
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|e| *e <= 12);
        let Some(end) = end else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            "euro" => Some('€'),
            "auml" => Some('ä'),
            "ouml" => Some('ö'),
            "uuml" => Some('ü'),
            "Auml" => Some('Ä'),
            "Ouml" => Some('Ö'),
            "Uuml" => Some('Ü'),
            "szlig" => Some('ß'),
            "copy" => Some('©'),
            "reg" => Some('®'),
            "hellip" => Some('…'),
            "ndash" => Some('–'),
            "mdash" => Some('—'),
            "laquo" => Some('«'),
            "raquo" => Some('»'),
            "bdquo" => Some('„'),
            "ldquo" => Some('“'),
            "rdquo" => Some('”'),
            _ => entity.strip_prefix('#').and_then(|num| {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 30,000 message/rfc822 parts one inside the next (under 1 MB) on a worker thread's
    /// 2 MiB stack: parsed, kept raw with a note or not, but the process lives.
    #[test]
    fn a_mail_nested_thirty_thousand_deep_does_not_overflow_the_stack() {
        let mut raw = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: deep\r\n".to_vec();
        for _ in 0..30_000 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"Subject: inner\r\n\r\nbody\r\n");
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let mail = parse(&raw);
                let parts = part_bytes(&raw, &[1, 2]);
                (mail.subject, parts.len())
            })
            .unwrap();
        let (subject, parts) = handle.join().unwrap();
        assert_eq!(subject, "deep");
        assert_eq!(parts, 2);
    }

    #[test]
    fn parses_basic_fields() {
        let raw = b"From: \"Kunde\" <Kunde@Kunde.Example>\r\nReply-To: other@kunde.example\r\n\
To: support@example.test, b@example.test\r\nCc: c@example.test\r\n\
Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\nMessage-ID: <a@b>\r\nIn-Reply-To: <x@y>\r\n\
References: <w@y> <x@y>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\
Return-Path: <>\r\nX-Loop: mticket\r\nAuto-Submitted: Auto-Replied\r\n\r\nHallo\r\n";
        let m = parse(raw);
        assert_eq!(m.from.as_ref().unwrap().address, "kunde@kunde.example");
        assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Kunde"));
        assert_eq!(m.sender().unwrap().address, "other@kunde.example");
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc[0].address, "c@example.test");
        assert_eq!(m.subject, "Grüße");
        assert_eq!(m.message_id.as_deref(), Some("a@b"));
        assert_eq!(m.in_reply_to, vec!["x@y"]);
        assert_eq!(m.references, vec!["w@y", "x@y"]);
        assert!(m.date.is_some());
        assert_eq!(m.return_path.as_deref(), Some(""));
        assert_eq!(m.x_loop, vec!["mticket"]);
        assert_eq!(m.auto_submitted.as_deref(), Some("auto-replied"));
        assert_eq!(m.text.trim(), "Hallo");
        assert_eq!(m.content_type, "text/plain");
        assert!(m.problems.is_empty(), "{:?}", m.problems);
    }

    #[test]
    fn odd_input_gives_problems_not_panics() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty mail"),
            (b"Subject: x\r\n\r\nbody", "no From header"),
            (b"From: a@b\r\nSubj\0ect: x\r\n\r\nb", "NUL bytes"),
            (
                b"From: a@b\r\nContent-Type: multipart/mixed\r\n\r\nxx",
                "boundary",
            ),
            (b"From: a@b\r\nSubject: \xe4\xfc\r\n\r\nb", "8-bit"),
            (b"From: a@b\r\nno colon here\r\n\r\nb", "without colon"),
            (
                b"From: a@b\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nb",
                "unknown charset",
            ),
        ];
        for (raw, want) in cases {
            let m = parse(raw);
            assert!(
                m.problems.iter().any(|p| p.contains(want)),
                "{want}: {:?}",
                m.problems
            );
        }
    }

    #[test]
    fn nul_never_reaches_a_decoded_field() {
        let m = parse(b"From: A\0B <a\0b@hostile.example>\r\nSubject: nul\0here\r\n\r\nbo\0dy\r\n");
        assert!(!m.subject.contains('\0') && !m.text.contains('\0'), "{m:?}");
        assert!(
            m.from
                .iter()
                .all(|a| !a.address.contains('\0')
                    && !a.name.as_deref().unwrap_or("").contains('\0'))
        );
        assert!(m.problems.iter().any(|p| p.contains("NUL")));
    }

    #[test]
    fn html_only_becomes_text() {
        let raw = b"From: a@b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><style>p{}</style></head><body><script>evil()</script>\
<p>Hallo&nbsp;Welt &amp; &euro;</p><div>Zeile&#32;2<br>Zeile 3</div></body></html>";
        let m = parse(raw);
        assert_eq!(m.text, "Hallo Welt & €\n\nZeile 2\nZeile 3");
        assert!(m.html.is_some());
    }

    #[test]
    fn attachments_are_listed() {
        let raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n\
Content-Type: text/plain\r\n\r\nsee attached\r\n--X\r\nContent-Type: application/pdf; name=r.pdf\r\n\
Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=r.pdf\r\n\r\n\
JVBERi0xLjQK\r\n--X\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\n\
Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--X--\r\n";
        let m = parse(raw);
        assert_eq!(m.text.trim(), "see attached");
        assert_eq!(m.attachments.len(), 2, "{:?}", m.attachments);
        let pdf = &m.attachments[0];
        assert_eq!(pdf.name, "r.pdf");
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.size, 9);
        assert_eq!(pdf.sha256, hex::encode(Sha256::digest(b"%PDF-1.4\n")));
        let img = &m.attachments[1];
        assert_eq!(img.name, "attachment-2");
        assert!(img.inline);
        assert_eq!(img.content_id.as_deref(), Some("img1"));
    }

    #[test]
    fn strip_removes_only_gateway_fields() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"From: a\r\nX-Ticket-Number: 5\r\n  folded\r\nX-LOOP: m\r\nTo: b\r\n\r\nX-Loop: body\r\n",
                b"From: a\r\nTo: b\r\n\r\nX-Loop: body\r\n",
            ),
            (b"x-ticket-queue: S\nSubject: s\n\nb", b"Subject: s\n\nb"),
            (b"X-Ticketing: keep\n\n", b"X-Ticketing: keep\n\n"),
            (b"", b""),
            (b"X-Loop: x", b""),
        ];
        for (raw, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&strip_gateway_headers(raw)),
                String::from_utf8_lossy(want)
            );
        }
    }

    #[test]
    fn entities_and_broken_html() {
        assert_eq!(html_to_text("a &bogus; b &#x41; <"), "a &bogus; b A");
        assert_eq!(html_to_text("<p>ü<b"), "ü");
        assert_eq!(html_to_text("<!-- c -->x<li>y"), "x\n- y");
    }
}
