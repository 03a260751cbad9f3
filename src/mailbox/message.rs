//! Message anatomy for IMAP FETCH: ENVELOPE, BODY/BODYSTRUCTURE and `BODY[section]<partial>`
//! computed from a message's raw RFC 5322 bytes (RFC 3501 §6.4.5 and §7.4.2).
//!
//! Pure functions, no I/O. The MIME tree is split here, on byte offsets into the raw message,
//! and nesting is capped at [`MAX_DEPTH`] so that hostile input costs at most linear time and
//! memory and bounded stack; mail-parser only reads Content-Type and Content-Disposition values.
//! Header values in the envelope stay as sent (encoded-words are not decoded); bodies are
//! returned as stored, so sizes and line counts agree with what `BODY[...]` returns.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::ops::Range;

use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_next::imap_types::core::{IString, NString, Vec1};
use imap_next::imap_types::envelope::{Address, Envelope};
use imap_next::imap_types::fetch::{Part, Section};
use mail_parser::{HeaderName, MessageParser, MimeHeaders};

/// Deepest MIME nesting (multipart children and encapsulated messages) that is descended into;
/// deeper entities are shown as opaque `APPLICATION/OCTET-STREAM` leaves.
pub const MAX_DEPTH: usize = 50;

/// A message split into its MIME entities once, to answer several FETCH items.
pub struct Anatomy<'a> {
    raw: &'a [u8],
    root: Entity,
}

/// One MIME entity: byte ranges into the raw message and what its Content-Type says.
#[derive(Debug)]
struct Entity {
    /// Header block, including the blank line that ends it (if there is one).
    header: Range<usize>,
    body: Range<usize>,
    mime: Mime,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Leaf,
    /// A multipart with at least one child.
    Multipart(Vec<Entity>),
    /// A message/rfc822 part: the encapsulated message.
    Message(Box<Entity>),
}

/// The Content-Type and Content-Disposition of an entity (type and subtype in lower case).
#[derive(Debug)]
struct Mime {
    r#type: String,
    subtype: String,
    params: Vec<(String, String)>,
    disposition: Option<(String, Vec<(String, String)>)>,
}

impl<'a> Anatomy<'a> {
    /// Splits `raw` into its MIME entities. Never fails: anything is some message.
    pub fn parse(raw: &'a [u8]) -> Self {
        let root = entity(raw, 0..raw.len(), 0, false);
        Anatomy { raw, root }
    }

    /// ENVELOPE of the top-level header.
    pub fn envelope(&self) -> Envelope<'static> {
        envelope_of(&self.raw[self.root.header.clone()])
    }

    /// BODYSTRUCTURE (`extended`) or BODY (without extension data).
    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        structure(self.raw, &self.root, extended)
    }

    /// `BODY[section]`; `None` is the whole message. A section that does not exist is empty.
    pub fn section(&self, section: Option<&Section<'_>>) -> Cow<'a, [u8]> {
        let raw = self.raw;
        let Some(section) = section else {
            return Cow::Borrowed(raw);
        };
        let bytes = |range: &Range<usize>| Cow::Borrowed(&raw[range.clone()]);
        let empty = Cow::Borrowed(&[][..]);
        match section {
            Section::Part(part) => self.part(&part.0).map_or(empty, |e| bytes(&e.body)),
            Section::Mime(part) => self.part(&part.0).map_or(empty, |e| bytes(&e.header)),
            Section::Header(part) => self
                .message(part.as_ref())
                .map_or(empty, |m| bytes(&m.header)),
            Section::Text(part) => self
                .message(part.as_ref())
                .map_or(empty, |m| bytes(&m.body)),
            Section::HeaderFields(part, names) | Section::HeaderFieldsNot(part, names) => {
                let not = matches!(section, Section::HeaderFieldsNot(..));
                let names: Vec<&[u8]> = names.as_ref().iter().map(|n| n.as_ref()).collect();
                self.message(part.as_ref()).map_or(empty, |m| {
                    Cow::Owned(header_fields(&raw[m.header.clone()], &names, not))
                })
            }
        }
    }

    /// The message a HEADER/TEXT section speaks about: the top-level one, or a message/rfc822 part.
    fn message(&self, part: Option<&Part>) -> Option<&Entity> {
        match part {
            None => Some(&self.root),
            Some(part) => match &self.part(&part.0)?.kind {
                Kind::Message(inner) => Some(inner),
                _ => None,
            },
        }
    }

    /// The entity a part number (`1.2.3`) names, if it exists.
    fn part(&self, path: &Vec1<NonZeroU32>) -> Option<&Entity> {
        let mut entity = &self.root;
        let mut is_message = true;
        for number in path.as_ref() {
            if !is_message && let Kind::Message(inner) = &entity.kind {
                entity = inner;
                is_message = true;
            }
            let index = usize::try_from(number.get() - 1).ok()?;
            entity = match &entity.kind {
                Kind::Multipart(children) => children.get(index)?,
                // Part 1 of a non-multipart message is its body.
                _ if is_message && index == 0 => entity,
                _ => return None,
            };
            is_message = false;
        }
        Some(entity)
    }
}

/// ENVELOPE of a header block alone (no MIME structure is read: cheap for listings).
pub fn header_envelope(header: &[u8]) -> Envelope<'static> {
    envelope_of(header)
}

pub fn envelope(raw: &[u8]) -> Envelope<'static> {
    Anatomy::parse(raw).envelope()
}

/// BODYSTRUCTURE (`extended = true`) or BODY (`false`) of a message.
pub fn body_structure(raw: &[u8], extended: bool) -> BodyStructure<'static> {
    Anatomy::parse(raw).body_structure(extended)
}

/// `BODY[section]` of a message, the whole message for `None`.
pub fn section(raw: &[u8], section: Option<&Section<'_>>) -> Vec<u8> {
    Anatomy::parse(raw).section(section).into_owned()
}

/// `<origin.length>` of fetched bytes: clamped to what exists, never panics.
pub fn partial(bytes: &[u8], origin: u32, length: Option<u32>) -> &[u8] {
    let start = usize::try_from(origin)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = match length {
        Some(length) => start
            .saturating_add(usize::try_from(length).unwrap_or(usize::MAX))
            .min(bytes.len()),
        None => bytes.len(),
    };
    &bytes[start..end]
}

/// HEADER.FIELDS (or HEADER.FIELDS.NOT with `not`) over a header block: the fields whose
/// names match (case-insensitively) in their original order and folding, with CRLF line
/// endings, followed by the blank line.
pub fn header_fields(header: &[u8], names: &[&[u8]], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields(header) {
        let listed = names.iter().any(|n| n.eq_ignore_ascii_case(field.name));
        if listed != not {
            push_crlf_lines(&mut out, field.raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends `text` with every line ending (LF or CRLF, or none at the end) written as CRLF.
fn push_crlf_lines(out: &mut Vec<u8>, text: &[u8]) {
    for line in lines(text) {
        out.extend_from_slice(trim_line_end(line));
        out.extend_from_slice(b"\r\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Splitting into entities

/// The entity in `raw[range]`: header, body and, below [`MAX_DEPTH`], its children.
fn entity(raw: &[u8], range: Range<usize>, depth: usize, in_digest: bool) -> Entity {
    let (header, body) = split_header(raw, range);
    let mut mime = mime_of(&raw[header.clone()], in_digest);
    let deep = depth >= MAX_DEPTH;
    let kind = match (mime.r#type.as_str(), mime.subtype.as_str()) {
        _ if deep => Kind::Leaf,
        ("multipart", subtype) => {
            let digest = subtype == "digest";
            let children: Vec<Entity> = boundary(&mime)
                .map(|b| split_multipart(raw, body.clone(), b.as_bytes()))
                .unwrap_or_default()
                .into_iter()
                .map(|part| entity(raw, part, depth + 1, digest))
                .collect();
            if children.is_empty() {
                Kind::Leaf
            } else {
                Kind::Multipart(children)
            }
        }
        ("message", "rfc822" | "global") if is_identity_encoding(&raw[header.clone()]) => {
            Kind::Message(Box::new(entity(raw, body.clone(), depth + 1, false)))
        }
        _ => Kind::Leaf,
    };
    if matches!(kind, Kind::Leaf) {
        if deep && matches!(mime.r#type.as_str(), "multipart" | "message") {
            mime = Mime::opaque();
        } else if mime.r#type == "multipart" {
            // A multipart whose boundary never shows is plain text to us.
            mime = Mime::default_text();
        }
    }
    Entity {
        header,
        body,
        mime,
        kind,
    }
}

/// Header (through the blank line) and body of `raw[range]`; without a blank line it is all header.
fn split_header(raw: &[u8], range: Range<usize>) -> (Range<usize>, Range<usize>) {
    let mut pos = range.start;
    for line in lines(&raw[range.clone()]) {
        pos += line.len();
        if trim_line_end(line).is_empty() && line.ends_with(b"\n") {
            return (range.start..pos, pos..range.end);
        }
    }
    (range.clone(), range.end..range.end)
}

/// The parts of a multipart body: what lies between its delimiter lines, without the line break
/// that belongs to the next delimiter. A missing close delimiter ends the last part at the body end.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None; // start of the part being read
    let mut pos = body.start;
    for line in lines(&raw[body.clone()]) {
        let line_start = pos;
        pos += line.len();
        let Some(close) = delimiter(line, boundary) else {
            continue;
        };
        if let Some(start) = open.take() {
            parts.push(start..line_break_before(raw, start, line_start));
        }
        if close {
            return parts;
        }
        open = Some(pos);
    }
    if let Some(start) = open {
        parts.push(start..body.end);
    }
    parts
}

/// `Some(is_close)` if `line` is `--boundary` or `--boundary--` (trailing whitespace allowed).
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    rest.iter()
        .all(|b| b.is_ascii_whitespace())
        .then_some(close)
}

/// Where the CRLF (or LF) that ends just before `at` begins; `at` itself if there is none.
fn line_break_before(raw: &[u8], start: usize, at: usize) -> usize {
    let text = &raw[start..at];
    match text {
        [.., b'\r', b'\n'] => at - 2,
        [.., b'\n'] => at - 1,
        _ => at,
    }
}

/// Lines of `text`, each with its line ending; the last one may have none.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split_inclusive(|&b| b == b'\n')
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Number of text lines: line breaks, plus a last line without one.
fn count_lines(text: &[u8]) -> u32 {
    let breaks = text.iter().filter(|&&b| b == b'\n').count();
    let unterminated = usize::from(!text.is_empty() && !text.ends_with(b"\n"));
    u32::try_from(breaks + unterminated).unwrap_or(u32::MAX)
}

/// Only identity-encoded message/rfc822 bodies are descended into (RFC 2046 §5.2.1).
fn is_identity_encoding(header: &[u8]) -> bool {
    field_value(header, "Content-Transfer-Encoding").is_none_or(|cte| {
        let cte = unfold(cte);
        ["7bit", "8bit", "binary"]
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(&cte))
    })
}

fn boundary(mime: &Mime) -> Option<&str> {
    mime.params
        .iter()
        .find(|(name, value)| name.eq_ignore_ascii_case("boundary") && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

impl Mime {
    fn default_text() -> Self {
        Mime {
            r#type: "text".into(),
            subtype: "plain".into(),
            params: vec![("CHARSET".into(), "US-ASCII".into())],
            disposition: None,
        }
    }

    fn opaque() -> Self {
        Mime {
            r#type: "application".into(),
            subtype: "octet-stream".into(),
            params: Vec::new(),
            disposition: None,
        }
    }
}

/// Content-Type (defaulting to text/plain, or message/rfc822 in a digest) and Content-Disposition.
fn mime_of(header: &[u8], in_digest: bool) -> Mime {
    let parser = MessageParser::new()
        .header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
        .default_header_ignore();
    let parsed = parser.parse_headers(header);
    let part = parsed.as_ref().and_then(|m| m.parts.first());
    let attributes = |attrs: Option<&[mail_parser::Attribute<'_>]>| -> Vec<(String, String)> {
        attrs
            .unwrap_or_default()
            .iter()
            .map(|a| (a.name.to_string(), a.value.to_string()))
            .collect()
    };
    let disposition = part
        .and_then(|p| p.content_disposition())
        .map(|d| (d.ctype().to_ascii_lowercase(), attributes(d.attributes())));
    let content_type = part.and_then(|p| p.content_type()).and_then(|ct| {
        let subtype = ct.subtype().filter(|s| !s.is_empty())?;
        (!ct.ctype().is_empty()).then(|| Mime {
            r#type: ct.ctype().to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            params: attributes(ct.attributes()),
            disposition: None,
        })
    });
    let mut mime = content_type.unwrap_or_else(|| {
        if in_digest {
            Mime {
                r#type: "message".into(),
                subtype: "rfc822".into(),
                ..Mime::opaque()
            }
        } else {
            Mime::default_text()
        }
    });
    mime.disposition = disposition;
    mime
}

// ---------------------------------------------------------------------------------------------
// Header fields

/// One header field: its name and its raw lines (with folding and line endings).
struct Field<'a> {
    name: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// Everything after the colon, folding included.
    fn value(&self) -> &'a [u8] {
        match memchr::memchr(b':', self.raw) {
            Some(colon) => &self.raw[colon + 1..],
            None => &[],
        }
    }
}

/// The fields of a header block, up to its blank line.
fn fields(header: &[u8]) -> impl Iterator<Item = Field<'_>> {
    // Each line end found once, by memchr: folders ask for 100,000 envelopes at a time.
    let line_len = |text: &[u8]| memchr::memchr(b'\n', text).map_or(text.len(), |i| i + 1);
    let mut rest = header;
    std::iter::from_fn(move || {
        let first_len = line_len(rest);
        let first = trim_line_end(&rest[..first_len]);
        if first.is_empty() {
            return None;
        }
        let mut len = first_len;
        while len < rest.len() && matches!(rest[len], b' ' | b'\t') {
            len += line_len(&rest[len..]);
        }
        let (raw, tail) = rest.split_at(len);
        rest = tail;
        let name = match memchr::memchr(b':', first) {
            Some(colon) => trim(&first[..colon]),
            None => trim(first),
        };
        Some(Field { name, raw })
    })
}

/// The raw value of the first field called `name`.
fn field_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    fields(header)
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value())
}

/// A raw field value on one line: line breaks removed, outer whitespace trimmed.
fn unfold(value: &[u8]) -> Vec<u8> {
    let value = trim(value);
    // Copied in the pieces between line breaks (a byte-wise filter was a third of ENVELOPE).
    let mut unfolded = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
        unfolded.extend_from_slice(&rest[..i]);
        rest = &rest[i + 1..];
    }
    unfolded.extend_from_slice(rest);
    unfolded
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_wsp(*b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_wsp(*b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

// ---------------------------------------------------------------------------------------------
// IMAP strings

/// An IMAP string for arbitrary bytes: quoted when it can be, a literal otherwise (NULs dropped).
pub(crate) fn istring(bytes: impl Into<Vec<u8>>) -> IString<'static> {
    let mut bytes = bytes.into();
    if memchr::memchr(0, &bytes).is_some() {
        bytes.retain(|&b| b != 0);
    }
    IString::try_from(bytes).unwrap_or_else(|_| IString::try_from("").expect("empty is quoted"))
}

fn nstring(bytes: Option<impl Into<Vec<u8>>>) -> NString<'static> {
    NString(bytes.map(istring))
}

/// A field value as sent (unfolded), NIL when the field is absent.
fn raw_nstring(header: &[u8], name: &str) -> NString<'static> {
    nstring(field_value(header, name).map(unfold))
}

// ---------------------------------------------------------------------------------------------
// BODYSTRUCTURE

fn structure(raw: &[u8], entity: &Entity, extended: bool) -> BodyStructure<'static> {
    let header = &raw[entity.header.clone()];
    let mime = &entity.mime;
    if let Kind::Multipart(children) = &entity.kind {
        let bodies: Vec<BodyStructure<'static>> = children
            .iter()
            .map(|child| structure(raw, child, extended))
            .collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return BodyStructure::Multi {
                bodies,
                subtype: istring(mime.subtype.to_ascii_uppercase()),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: params(&mime.params),
                    tail: Some(disposition(header, mime)),
                }),
            };
        }
    }
    let body = &raw[entity.body.clone()];
    let specific = match &entity.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope_of(&raw[inner.header.clone()])),
            body_structure: Box::new(structure(raw, inner, extended)),
            number_of_lines: count_lines(body),
        },
        _ if mime.r#type == "text" => SpecificFields::Text {
            subtype: istring(mime.subtype.to_ascii_uppercase()),
            number_of_lines: count_lines(body),
        },
        _ => SpecificFields::Basic {
            r#type: istring(mime.r#type.to_ascii_uppercase()),
            subtype: istring(mime.subtype.to_ascii_uppercase()),
        },
    };
    let encoding = field_value(header, "Content-Transfer-Encoding")
        .map(unfold)
        .filter(|e| !e.is_empty())
        .map_or_else(|| b"7BIT".to_vec(), |e| e.to_ascii_uppercase());
    let basic = BasicFields {
        parameter_list: params(&mime.params),
        id: raw_nstring(header, "Content-ID"),
        description: raw_nstring(header, "Content-Description"),
        content_transfer_encoding: istring(encoding),
        size: u32::try_from(body.len()).unwrap_or(u32::MAX),
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: raw_nstring(header, "Content-MD5"),
            tail: Some(disposition(header, mime)),
        }),
    }
}

fn params(params: &[(String, String)]) -> Vec<(IString<'static>, IString<'static>)> {
    params
        .iter()
        .map(|(name, value)| (istring(name.as_bytes()), istring(value.as_bytes())))
        .collect()
}

/// Disposition, language and location: the extension data both kinds of part share.
fn disposition(header: &[u8], mime: &Mime) -> Disposition<'static> {
    let language = field_value(header, "Content-Language")
        .map(|value| {
            unfold(value)
                .split(|&b| b == b',')
                .map(trim)
                .filter(|l| !l.is_empty())
                .map(istring)
                .collect()
        })
        .unwrap_or_default();
    Disposition {
        disposition: mime
            .disposition
            .as_ref()
            .map(|(kind, attributes)| (istring(kind.to_ascii_uppercase()), params(attributes))),
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: raw_nstring(header, "Content-Location"),
                extensions: Vec::new(),
            }),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// ENVELOPE

/// ENVELOPE of a header block: values as sent, Sender and Reply-To defaulting to From.
fn envelope_of(header: &[u8]) -> Envelope<'static> {
    // The header is read once: listings ask for 100,000 envelopes.
    const NAMES: [&str; 10] = [
        "Date",
        "Subject",
        "From",
        "Sender",
        "Reply-To",
        "To",
        "Cc",
        "Bcc",
        "In-Reply-To",
        "Message-ID",
    ];
    let mut found: [Option<&[u8]>; 10] = [None; 10];
    for field in fields(header) {
        if let Some(i) = NAMES
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(field.name))
            && found[i].is_none()
        {
            found[i] = Some(field.value());
        }
    }
    let value = |name: &str| {
        let i = NAMES
            .iter()
            .position(|n| *n == name)
            .expect("a listed name");
        found[i]
    };
    let text = |name: &str| nstring(value(name).map(unfold));
    let list = |name: &str| {
        value(name)
            .map(|v| addresses(&unfold(v)))
            .unwrap_or_default()
    };
    let from = list("From");
    let or_from = |list: Vec<Address<'static>>| if list.is_empty() { from.clone() } else { list };
    let sender = or_from(list("Sender"));
    let reply_to = or_from(list("Reply-To"));
    Envelope {
        date: text("Date"),
        subject: text("Subject"),
        sender,
        reply_to,
        from,
        to: list("To"),
        cc: list("Cc"),
        bcc: list("Bcc"),
        in_reply_to: text("In-Reply-To"),
        message_id: text("Message-ID"),
    }
}

/// A lexical token of an address list (RFC 5322 §3.2): comments are dropped.
#[derive(Debug)]
struct Token<'a> {
    /// Atom text, or a quoted string without its quotes and escapes (only that one copied).
    text: Cow<'a, [u8]>,
    /// One of `<>@,;:`, or 0 for a word.
    special: u8,
    space_before: bool,
}

fn tokenize(value: &[u8]) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut space = false;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        match b {
            _ if is_wsp(b) => {
                space = true;
                i += 1;
            }
            b'(' => {
                i = skip_comment(value, i);
                space = true;
            }
            b'"' => {
                let (text, next) = quoted_string(value, i + 1);
                tokens.push(Token {
                    text: Cow::Owned(text),
                    special: 0,
                    space_before: space,
                });
                i = next;
                space = false;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' => {
                tokens.push(Token {
                    text: Cow::Borrowed(&value[i..i + 1]),
                    special: b,
                    space_before: space,
                });
                i += 1;
                space = false;
            }
            _ => {
                let end = value[i..]
                    .iter()
                    .position(|&c| {
                        is_wsp(c)
                            || matches!(
                                c,
                                b'(' | b')' | b'"' | b'<' | b'>' | b'@' | b',' | b';' | b':'
                            )
                    })
                    .map_or(value.len(), |n| i + n);
                tokens.push(Token {
                    text: Cow::Borrowed(&value[i..end]),
                    special: 0,
                    space_before: space,
                });
                i = end;
                space = false;
            }
        }
    }
    tokens
}

/// Index after the comment opening at `start` (nested, with quoted pairs).
fn skip_comment(value: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    value.len()
}

/// Content of the quoted string starting after its opening quote, and the index after it.
fn quoted_string(value: &[u8], start: usize) -> (Vec<u8>, usize) {
    let mut text = Vec::new();
    let mut i = start;
    while i < value.len() {
        match value[i] {
            b'"' => return (text, i + 1),
            b'\\' if i + 1 < value.len() => {
                text.push(value[i + 1]);
                i += 1;
            }
            b => text.push(b),
        }
        i += 1;
    }
    (text, value.len())
}

/// An address list field value as IMAP address structures, group syntax included.
fn addresses(value: &[u8]) -> Vec<Address<'static>> {
    let tokens = tokenize(value);
    let mut out = Vec::new();
    let mut words: Vec<&Token<'_>> = Vec::new();
    let mut angle: Option<&[Token<'_>]> = None;
    let mut in_group = false;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        match token.special {
            b':' if !in_group && angle.is_none() => {
                out.push(address(None, None, Some(phrase(&words)), None));
                words.clear();
                in_group = true;
            }
            b'<' => {
                let len = tokens[i..].iter().position(|t| t.special == b'>');
                let end = len.map_or(tokens.len(), |n| i + n);
                angle = Some(&tokens[i..end]);
                i = (end + 1).min(tokens.len());
            }
            b',' | b';' => {
                out.extend(mailbox(&words, angle.take()));
                words.clear();
                if token.special == b';' && in_group {
                    out.push(address(None, None, None, None));
                    in_group = false;
                }
            }
            _ => words.push(token),
        }
    }
    out.extend(mailbox(&words, angle));
    if in_group {
        out.push(address(None, None, None, None));
    }
    out
}

/// One mailbox from its display-name words and angle-address tokens (or a bare addr-spec).
fn mailbox(words: &[&Token<'_>], angle: Option<&[Token<'_>]>) -> Option<Address<'static>> {
    let (name, spec): (Option<Vec<u8>>, Vec<&Token<'_>>) = match angle {
        Some(angle) => {
            let name = (!words.is_empty()).then(|| phrase(words));
            (name, angle.iter().collect())
        }
        None if words.is_empty() => return None,
        None => (None, words.to_vec()),
    };
    let (adl, spec) = match spec.iter().position(|t| t.special == b':') {
        Some(colon) => (Some(concat(&spec[..colon])), &spec[colon + 1..]),
        None => (None, &spec[..]),
    };
    let (local, host) = match spec.iter().rposition(|t| t.special == b'@') {
        Some(at) => (concat(&spec[..at]), concat(&spec[at + 1..])),
        None => (concat(spec), Vec::new()),
    };
    let or = |text: Vec<u8>, missing: &str| {
        if text.is_empty() {
            missing.into()
        } else {
            text
        }
    };
    Some(address(
        name,
        adl,
        Some(or(local, "MISSING_MAILBOX")),
        Some(or(host, "MISSING_DOMAIN")),
    ))
}

fn address(
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
) -> Address<'static> {
    Address {
        name: nstring(name),
        adl: nstring(adl),
        mailbox: nstring(mailbox),
        host: nstring(host),
    }
}

/// Words joined with single spaces where the sender put whitespace.
fn phrase(words: &[&Token<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, word) in words.iter().enumerate() {
        if n > 0 && word.space_before {
            out.push(b' ');
        }
        out.extend_from_slice(&word.text);
    }
    out
}

/// Tokens joined without spaces (local parts, domains, routes).
fn concat(tokens: &[&Token<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tokens.iter().map(|t| t.text.len()).sum());
    for t in tokens {
        out.extend_from_slice(&t.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use imap_codec::ResponseCodec;
    use imap_codec::encode::Encoder;
    use imap_next::imap_types::core::AString;
    use imap_next::imap_types::fetch::MessageDataItem;
    use imap_next::imap_types::response::{Data, Response};

    use super::*;

    /// The wire text of one FETCH data item, as `* 1 FETCH (...)` would carry it.
    fn wire(item: MessageDataItem<'static>) -> String {
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(item),
        });
        let bytes = ResponseCodec::default().encode(&response).dump();
        let text = String::from_utf8_lossy(&bytes);
        let inner = text
            .strip_prefix("* 1 FETCH (")
            .and_then(|t| t.strip_suffix(")\r\n"));
        inner.expect("one FETCH line").to_string()
    }

    fn part(numbers: &[u32]) -> Part {
        let numbers: Vec<NonZeroU32> = numbers
            .iter()
            .map(|&n| NonZeroU32::new(n).unwrap())
            .collect();
        Part(Vec1::try_from(numbers).unwrap())
    }

    fn names(list: &str) -> Vec1<AString<'static>> {
        let names: Vec<AString<'static>> = list
            .split(' ')
            .map(|n| AString::try_from(n.to_string()).unwrap())
            .collect();
        Vec1::try_from(names).unwrap()
    }

    fn text(anatomy: &Anatomy<'_>, section: Section<'_>) -> String {
        String::from_utf8_lossy(&anatomy.section(Some(&section))).into_owned()
    }

    const SIMPLE: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.example\r\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

    #[test]
    fn simple_text_message() {
        let anatomy = Anatomy::parse(SIMPLE);
        let fred = r#"(("Fred Foobar" NIL "foobar" "Blurdybloop.example"))"#;
        assert_eq!(
            wire(MessageDataItem::Envelope(anatomy.envelope())),
            format!(
                r#"ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "afternoon meeting" {fred} {fred} {fred} ((NIL NIL "mooch" "owatagu.siam.example")) NIL NIL NIL "<B27397-0100000@Blurdybloop.example>")"#
            )
        );
        assert_eq!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))),
            r#"BODY ("TEXT" "PLAIN" ("charset" "US-ASCII") NIL NIL "7BIT" 55 1)"#
        );
        assert_eq!(
            wire(MessageDataItem::BodyStructure(anatomy.body_structure(true))),
            r#"BODYSTRUCTURE ("TEXT" "PLAIN" ("charset" "US-ASCII") NIL NIL "7BIT" 55 1 NIL NIL NIL NIL)"#
        );
        let body = "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
        assert_eq!(anatomy.section(None).as_ref(), SIMPLE);
        assert_eq!(text(&anatomy, Section::Part(part(&[1]))), body);
        assert_eq!(text(&anatomy, Section::Text(None)), body);
        let header = text(&anatomy, Section::Header(None));
        assert!(header.starts_with("Date: ") && header.ends_with("US-ASCII\r\n\r\n"));
        assert_eq!(text(&anatomy, Section::Mime(part(&[1]))), header);
        assert_eq!(text(&anatomy, Section::Part(part(&[2]))), "");
        assert_eq!(text(&anatomy, Section::Part(part(&[1, 1]))), "");
        assert_eq!(text(&anatomy, Section::Header(Some(part(&[1])))), "");
    }

    const MIXED: &[u8] = b"From: a@example.com\r\n\
To: b@example.com\r\n\
Subject: report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello\r\n\
world\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>Hello</p>\r\n\
--inner--\r\n\
\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
AAAA\r\n\
--outer--\r\n";

    #[test]
    fn alternative_inside_mixed_with_attachment() {
        let anatomy = Anatomy::parse(MIXED);
        let plain = r#"("TEXT" "PLAIN" ("charset" "utf-8") NIL NIL "7BIT" 12 2"#;
        let html = r#"("TEXT" "HTML" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 12 1"#;
        let pdf = r#"("APPLICATION" "PDF" ("name" "r.pdf") NIL NIL "BASE64" 18"#;
        assert_eq!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))),
            format!(r#"BODY (({plain}){html}) "ALTERNATIVE"){pdf}) "MIXED")"#)
        );
        let no_ext = "NIL NIL NIL NIL)";
        assert_eq!(
            wire(MessageDataItem::BodyStructure(anatomy.body_structure(true))),
            format!(
                r#"BODYSTRUCTURE (({plain} {no_ext}{html} {no_ext} "ALTERNATIVE" ("boundary" "inner") NIL NIL NIL){pdf} NIL ("ATTACHMENT" ("filename" "r.pdf")) NIL NIL) "MIXED" ("boundary" "outer") NIL NIL NIL)"#
            )
        );
        assert_eq!(
            text(&anatomy, Section::Part(part(&[1, 1]))),
            "Hello\r\nworld"
        );
        assert_eq!(text(&anatomy, Section::Part(part(&[1, 2]))), "<p>Hello</p>");
        assert_eq!(
            text(&anatomy, Section::Part(part(&[2]))),
            "JVBERi0xLjQK\r\nAAAA"
        );
        assert_eq!(
            text(&anatomy, Section::Mime(part(&[2]))),
            "Content-Type: application/pdf; name=\"r.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        );
        let alternative = text(&anatomy, Section::Part(part(&[1])));
        assert!(alternative.starts_with("--inner\r\nContent-Type: text/plain"));
        assert!(alternative.ends_with("<p>Hello</p>\r\n--inner--\r\n"));
        assert_eq!(
            text(&anatomy, Section::Mime(part(&[1, 1]))),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert!(text(&anatomy, Section::Text(None)).starts_with("This is a multi-part"));
        for missing in [&[3][..], &[1, 3], &[2, 1], &[1, 1, 1], &[0x7fff_ffff]] {
            assert_eq!(
                text(&anatomy, Section::Part(part(missing))),
                "",
                "{missing:?}"
            );
        }
    }

    const FORWARD: &[u8] = b"From: a@example.com\r\n\
Subject: fwd\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\
\r\n\
--b\r\n\
\r\n\
see attached\r\n\
--b\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: \"Doe, Jane\" <jane@example.org>\r\n\
To: undisclosed-recipients:;\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n\
Message-ID: <inner@example.org>\r\n\
\r\n\
inner body\r\n\
--b--\r\n";

    #[test]
    fn message_rfc822_attachment() {
        let anatomy = Anatomy::parse(FORWARD);
        let inner_header = "From: \"Doe, Jane\" <jane@example.org>\r\n\
To: undisclosed-recipients:;\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n\
Message-ID: <inner@example.org>\r\n\r\n";
        assert_eq!(
            text(&anatomy, Section::Header(Some(part(&[2])))),
            inner_header
        );
        assert_eq!(text(&anatomy, Section::Part(part(&[2, 1]))), "inner body");
        assert_eq!(
            text(&anatomy, Section::Text(Some(part(&[2])))),
            "inner body"
        );
        assert_eq!(
            text(&anatomy, Section::Part(part(&[2]))),
            format!("{inner_header}inner body")
        );
        assert_eq!(text(&anatomy, Section::Part(part(&[1]))), "see attached");
        assert_eq!(text(&anatomy, Section::Mime(part(&[1]))), "\r\n");
        assert_eq!(
            text(
                &anatomy,
                Section::HeaderFields(Some(part(&[2])), names("subject"))
            ),
            "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"
        );
        assert_eq!(text(&anatomy, Section::Part(part(&[2, 2]))), "");

        let jane = r#"(("Doe, Jane" NIL "jane" "example.org"))"#;
        let envelope = format!(
            r#"(NIL "=?utf-8?q?caf=C3=A9?=" {jane} {jane} {jane} ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL "<inner@example.org>")"#
        );
        let size = inner_header.len() + "inner body".len();
        assert_eq!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))),
            format!(
                r#"BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" {size} {envelope} ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1) 6) "MIXED")"#
            )
        );
    }

    const THUNDERBIRD: &str = "FROM TO CC SUBJECT DATE MESSAGE-ID PRIORITY X-PRIORITY REFERENCES \
        NEWSGROUPS IN-REPLY-TO CONTENT-TYPE REPLY-TO";

    const LIST_HEADER: &[u8] = b"Received: from x\r\n\
\tby y\r\n\
Subject: a long\r\n\
\x20folded subject\r\n\
From: a@example.com\r\n\
X-Mailer: y\r\n\
to: b@example.com\r\n\
References: <1@x>\r\n\
\t<2@x>\r\n\
\r\n\
body\r\n";

    #[test]
    fn header_fields_keep_order_and_folding() {
        let wanted: Vec<&[u8]> = THUNDERBIRD.split_whitespace().map(str::as_bytes).collect();
        let expected = "Subject: a long\r\n folded subject\r\n\
From: a@example.com\r\n\
to: b@example.com\r\n\
References: <1@x>\r\n\t<2@x>\r\n\r\n";
        let got = header_fields(LIST_HEADER, &wanted, false);
        assert_eq!(String::from_utf8_lossy(&got), expected);
        let not = header_fields(LIST_HEADER, &wanted, true);
        assert_eq!(
            String::from_utf8_lossy(&not),
            "Received: from x\r\n\tby y\r\nX-Mailer: y\r\n\r\n"
        );
        assert_eq!(header_fields(LIST_HEADER, &[b"Cc"], false), b"\r\n");
        assert_eq!(header_fields(b"", &[b"Cc"], true), b"\r\n");

        let anatomy = Anatomy::parse(LIST_HEADER);
        let names = names(&THUNDERBIRD.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(
            text(&anatomy, Section::HeaderFields(None, names.clone())),
            expected
        );
        assert_eq!(
            text(&anatomy, Section::HeaderFieldsNot(None, names)),
            "Received: from x\r\n\tby y\r\nX-Mailer: y\r\n\r\n"
        );
    }

    #[test]
    fn header_fields_write_crlf_for_bare_lf_and_unterminated_lines() {
        let header = b"Subject: one\n two\nFrom: a@b";
        let got = header_fields(header, &[b"subject", b"FROM"], false);
        assert_eq!(got, b"Subject: one\r\n two\r\nFrom: a@b\r\n\r\n");
    }

    #[test]
    fn partial_ranges_are_clamped() {
        assert_eq!(partial(b"hello", 0, None), b"hello");
        assert_eq!(partial(b"hello", 1, Some(3)), b"ell");
        assert_eq!(partial(b"hello", 3, Some(10)), b"lo");
        assert_eq!(partial(b"hello", 5, Some(1)), b"");
        assert_eq!(partial(b"hello", 10, None), b"");
        assert_eq!(partial(b"hello", u32::MAX, Some(u32::MAX)), b"");
        assert_eq!(partial(b"hello", 2, Some(u32::MAX)), b"llo");
        assert_eq!(partial(b"", 0, Some(0)), b"");
    }

    #[test]
    fn addresses_follow_rfc_3501() {
        let header = b"From: =?utf-8?b?SsO2cmc=?= <j@x.example>, \"A \\\"B\\\"\" <ab@x>\r\n\
To: team: one@x, Two <two@y>;, <@r1,@r2:route@z>\r\n\
Cc: bare, (comment only) c@d (Cee)\r\n\
Bcc: \xc3\xa9t\xc3\xa9 <e@f>\r\n\
Reply-To:\r\n\r\n";
        let got = wire(MessageDataItem::Envelope(envelope(header)));
        let from = r#"(("=?utf-8?b?SsO2cmc=?=" NIL "j" "x.example")("A \"B\"" NIL "ab" "x"))"#;
        let to = r#"((NIL NIL "team" NIL)(NIL NIL "one" "x")("Two" NIL "two" "y")(NIL NIL NIL NIL)(NIL "@r1,@r2" "route" "z"))"#;
        let cc = r#"((NIL NIL "bare" "MISSING_DOMAIN")(NIL NIL "c" "d"))"#;
        assert_eq!(
            got,
            format!(
                "ENVELOPE (NIL NIL {from} {from} {from} {to} {cc} (({{5}}\r\n\u{e9}t\u{e9} NIL \"e\" \"f\")) NIL NIL)"
            )
        );
    }

    #[test]
    fn folded_address_fields_are_unfolded() {
        let header = b"From: \"Jane\r\n Doe\" <jane@\r\n\texample.org>\r\n\r\n";
        let from = &envelope(header).from;
        assert_eq!(
            wire(MessageDataItem::Envelope(envelope(header))),
            format!(
                "ENVELOPE (NIL NIL {f} {f} {f} NIL NIL NIL NIL NIL)",
                f = r#"(("Jane Doe" NIL "jane" "example.org"))"#
            )
        );
        assert_eq!(from.len(), 1);
    }

    #[test]
    fn digest_parts_default_to_message_rfc822() {
        let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in digest\r\n\r\nx\r\n--d--\r\n";
        let anatomy = Anatomy::parse(raw);
        assert_eq!(
            text(&anatomy, Section::Header(Some(part(&[1])))),
            "Subject: in digest\r\n\r\n"
        );
        assert_eq!(text(&anatomy, Section::Part(part(&[1, 1]))), "x");
        assert!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))).starts_with(
                r#"BODY (("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 23 (NIL "in digest" NIL"#
            )
        );
    }

    #[test]
    fn lf_only_message() {
        let raw = b"Subject: lf\nContent-Type: multipart/mixed; boundary=z\n\n--z\n\none\ntwo\n--z\nContent-Type: text/html\n\n<b>\n--z--\n";
        let anatomy = Anatomy::parse(raw);
        assert_eq!(text(&anatomy, Section::Part(part(&[1]))), "one\ntwo");
        assert_eq!(text(&anatomy, Section::Part(part(&[2]))), "<b>");
        assert_eq!(
            text(&anatomy, Section::Mime(part(&[2]))),
            "Content-Type: text/html\n\n"
        );
        assert_eq!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))),
            r#"BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 2)("TEXT" "HTML" NIL NIL NIL "7BIT" 3 1) "MIXED")"#
        );
        assert_eq!(
            text(&anatomy, Section::HeaderFields(None, names("SUBJECT"))),
            "Subject: lf\r\n\r\n"
        );
    }

    #[test]
    fn unclosed_and_boundaryless_multiparts() {
        let unclosed =
            b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\n\r\nnever closed\r\n";
        let anatomy = Anatomy::parse(unclosed);
        assert_eq!(
            text(&anatomy, Section::Part(part(&[1]))),
            "never closed\r\n"
        );
        assert_eq!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))),
            r#"BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 14 1) "MIXED")"#
        );

        let lost = b"Content-Type: multipart/mixed; boundary=Q\r\n\r\nno boundary at all\r\n";
        let anatomy = Anatomy::parse(lost);
        assert_eq!(
            wire(MessageDataItem::Body(anatomy.body_structure(false))),
            r#"BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 1)"#
        );
        assert_eq!(
            text(&anatomy, Section::Part(part(&[1]))),
            "no boundary at all\r\n"
        );
    }

    /// Every FETCH item over `raw`, encoded, so that nothing panics on the way to the wire.
    fn fetch_everything(raw: &[u8]) {
        let anatomy = Anatomy::parse(raw);
        wire(MessageDataItem::Envelope(anatomy.envelope()));
        wire(MessageDataItem::Body(anatomy.body_structure(false)));
        wire(MessageDataItem::BodyStructure(anatomy.body_structure(true)));
        let sections = [
            Section::Header(None),
            Section::Text(None),
            Section::HeaderFields(None, names(THUNDERBIRD)),
            Section::HeaderFieldsNot(None, names("FROM")),
            Section::Part(part(&[1])),
            Section::Part(part(&[1, 1, 1])),
            Section::Mime(part(&[1])),
            Section::Mime(part(&[2, 1])),
            Section::Header(Some(part(&[1]))),
            Section::Text(Some(part(&[2]))),
        ];
        for section in &sections {
            let bytes = anatomy.section(Some(section));
            assert!(bytes.len() <= raw.len() + 2 * raw.len() + 2);
            let _ = partial(&bytes, 7, Some(3));
        }
    }

    #[test]
    fn bad_input_never_panics() {
        let huge_line = [
            b"Subject: ".as_slice(),
            &vec![b'x'; 1 << 20],
            b"\r\n\r\nbody",
        ]
        .concat();
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\r\n".to_vec(),
            b"\n\n\n".to_vec(),
            b"garbage \x00\xff\xfe\r\n\x00".to_vec(),
            b"Subject: no blank line, no body".to_vec(),
            b"From: \xff\xfe <\xc3@\x80>\r\nSubject: \xe9t\xe9\r\n\r\n\xff".to_vec(),
            b"From: <\r\nTo: \"unterminated\r\nCc: (((\r\nBcc: ,,,;;;:::<<>>@@\r\n\r\n".to_vec(),
            b"From: ;\r\nTo: :\r\nCc: a:b:c;d;\r\n\r\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n--b".to_vec(),
            b"Content-Type: message/rfc822\r\n\r\n".to_vec(),
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA==".to_vec(),
            b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in digest\r\n\r\nx\r\n--d--".to_vec(),
            b"Content-Type: /\r\nContent-Disposition: ;;\r\nContent-Language: ,,\r\n\r\n".to_vec(),
            huge_line,
        ];
        for raw in &inputs {
            fetch_everything(raw);
        }
        assert_eq!(section(b"", None), b"");
        assert_eq!(section(b"", Some(&Section::Text(None))), b"");
        assert_eq!(section(b"", Some(&Section::Part(part(&[1])))), b"");
    }

    /// Depth of nested structures (multiparts and encapsulated messages) in a BODYSTRUCTURE.
    fn depth(structure: &BodyStructure<'_>) -> usize {
        match structure {
            BodyStructure::Multi { bodies, .. } => {
                1 + bodies.as_ref().iter().map(depth).max().unwrap_or(0)
            }
            BodyStructure::Single { body, .. } => match &body.specific {
                SpecificFields::Message { body_structure, .. } => 1 + depth(body_structure),
                _ => 0,
            },
        }
    }

    #[test]
    fn deep_nesting_is_capped_on_a_small_stack() {
        let mut multiparts = Vec::new();
        for i in 0..1000 {
            let level = format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n");
            multiparts.extend_from_slice(level.as_bytes());
        }
        multiparts.extend_from_slice(b"\r\nleaf\r\n");
        let mut messages = Vec::new();
        for _ in 0..30_000 {
            messages.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        messages.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n");
        let worker = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                for raw in [&multiparts, &messages] {
                    fetch_everything(raw);
                    let structure = body_structure(raw, true);
                    assert_eq!(depth(&structure), MAX_DEPTH);
                    let deepest = vec![1; MAX_DEPTH + 5];
                    let _ = section(raw, Some(&Section::Part(part(&deepest))));
                }
            });
        worker.unwrap().join().unwrap();
    }
}
