//! An agent's reply rewritten into the mail the customer gets (README, "How submission
//! behaves"): the queue as sender, the gateway's threading headers, the command lines and the client's
//! quote taken out, template and placeholders filled, the queue's own quote appended. Only
//! the text and HTML parts that are the body are rewritten; every other part (attachments,
//! inline images, forwarded mails) and every header not named here keeps its bytes.
use std::ops::Range;

use chrono::{DateTime, FixedOffset};
use mail_parser::{Header, Message, MessagePart, MimeHeaders, PartType};

use crate::core::commands::{self, CommandError};
use crate::core::model::{Customer, ItemKind, ReplyQuote};
use crate::core::texts::Locale;
use crate::core::texts::{self, Placeholders};
use crate::core::{html, mime, quote};

/// One earlier item quoted under the reply (comments are never passed in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteEntry {
    pub kind: ItemKind,
    /// Display form of the sender, e.g. `Erika Muster <erika@kunde.example>`.
    pub from: String,
    /// Unix seconds.
    pub date: i64,
    /// The item's text as it should be quoted (its own words; the rewrite adds no
    /// further trimming).
    pub text: String,
    /// The item's HTML body, if it had one; its `<body>` content is quoted.
    pub html: Option<String>,
}

/// The queue's policy applied to a ticket's items (newest first): the ones to quote.
pub fn select(policy: ReplyQuote, items: &[QuoteEntry]) -> &[QuoteEntry] {
    let n = match policy {
        ReplyQuote::None => 0,
        ReplyQuote::Last => 1,
        ReplyQuote::Last3 => 3,
        ReplyQuote::All => items.len(),
    };
    &items[..n.min(items.len())]
}

/// Everything the rewrite needs besides the agent's raw mail.
pub struct ReplyPlan<'a> {
    /// The queue's friendly name and address: From and Reply-To.
    pub from_name: &'a str,
    pub from_address: &'a str,
    /// Final recipients, already filtered: `addr` or `Name <addr>`.
    pub to: &'a [String],
    pub cc: &'a [String],
    /// Final subject (tag already in it); placeholders in it are filled.
    pub subject: &'a str,
    /// Without angle brackets.
    pub message_id: &'a str,
    /// Without angle brackets.
    pub in_reply_to: Option<&'a str>,
    /// Without angle brackets.
    pub references: &'a [String],
    /// Unix seconds, for the Date header.
    pub date: i64,
    /// Already selected (see [`select`]), newest first.
    pub quote: &'a [QuoteEntry],
    pub placeholders: &'a Placeholders<'a>,
    /// Raw template body: filled and put at the top of the agent's text.
    pub template: Option<&'a str>,
    /// Language of the quote's attribution lines.
    pub locale: Locale,
    /// The gateway's offset from UTC in seconds: times in the Date header and the quote's
    /// attribution lines are local, as the customer's client would write them.
    pub utc_offset: i32,
    pub ticket_number: i64,
}

/// `at` in the local time of `utc_offset` (UTC when the offset is out of range).
fn local(at: i64, utc_offset: i32) -> DateTime<FixedOffset> {
    let offset =
        FixedOffset::east_opt(utc_offset).unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
    DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .with_timezone(&offset)
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("the reply cannot be rewritten: {0}")]
    Unparseable(String),
    #[error("the reply's command lines are not valid: {0}")]
    Command(#[from] CommandError),
}

/// Top-level headers that the rewrite replaces or that must not reach the customer
/// (the agent's identity, receipts to the agent, the client's threading, gateway state).
/// `Autocrypt` and `DKIM-Signature` name the agent or no longer match the rewritten mail.
const DROPPED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
    "return-path",
    "date",
    "disposition-notification-to",
    "return-receipt-to",
    "x-confirm-reading-to",
    "x-loop",
    "thread-index",
    "thread-topic",
    "received",
    "autocrypt",
    "dkim-signature",
];

/// Rewrites the agent's raw reply according to `plan`. Never panics; a mail without a
/// header section (or one the parser gives up on) is an error, and so is a mail whose
/// rewrite would lose one of its attachments (a MIME structure so damaged that the rewritten
/// body parts change how the rest is read): the agent is told, nothing goes out.
pub fn rewrite(raw: &[u8], plan: &ReplyPlan<'_>) -> Result<Vec<u8>, RewriteError> {
    let checked = || {
        let out = rewrite_mail(raw, plan)?;
        if !keeps_attachments(raw, &out) {
            return Err(RewriteError::Unparseable(
                "its MIME structure is damaged, and the rewritten mail would lose an \
                 attachment"
                    .into(),
            ));
        }
        Ok(out)
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(checked)) {
        Ok(result) => result,
        Err(_) => Err(RewriteError::Unparseable(
            "the mail parser failed on this mail".into(),
        )),
    }
}

/// Whether every attachment of `before` (as mail-parser reads it) is in `after` with the
/// same content, as often as in `before`.
fn keeps_attachments(before: &[u8], after: &[u8]) -> bool {
    let Some(before) = crate::core::mail::parse_mime(before) else {
        return true;
    };
    let after = crate::core::mail::parse_mime(after);
    let mut left: Vec<&[u8]> = after
        .iter()
        .flat_map(|m| m.attachments().map(|p| p.contents()))
        .collect();
    before
        .attachments()
        .all(|p| match left.iter().position(|c| *c == p.contents()) {
            Some(at) => {
                left.swap_remove(at);
                true
            }
            None => false,
        })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Text,
    Html,
}

fn unparseable(why: &str) -> RewriteError {
    RewriteError::Unparseable(why.to_string())
}

fn rewrite_mail(raw: &[u8], plan: &ReplyPlan<'_>) -> Result<Vec<u8>, RewriteError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(unparseable("the mail is empty"));
    }
    let message =
        crate::core::mail::parse_mime(raw).ok_or_else(|| unparseable("no header section found"))?;
    let root = message
        .parts
        .first()
        .ok_or_else(|| unparseable("no MIME structure found"))?;
    let header_end = (root.offset_body as usize).min(raw.len());
    let top = fields(raw, &root.headers);
    if !top.iter().any(|f| f.valid) {
        return Err(unparseable("no header fields found"));
    }
    let body = rewrite_body(raw, &message, header_end, plan)?;

    let mut out = Vec::with_capacity(raw.len() + 4096);
    out.extend_from_slice(new_headers(plan).as_bytes());
    push_kept_fields(&mut out, raw, &top, body.root.is_some());
    match body.root {
        Some((content_type, encoded)) => {
            push_content_headers(&mut out, &content_type);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(encoded.as_bytes());
        }
        None => {
            out.extend_from_slice(b"\r\n");
            let mut pos = header_end;
            for (range, bytes) in body.spliced {
                if range.start < pos {
                    return Err(unparseable("MIME parts overlap"));
                }
                out.extend_from_slice(&raw[pos..range.start]);
                out.extend_from_slice(&bytes);
                pos = range.end;
            }
            out.extend_from_slice(&raw[pos..]);
        }
    }
    Ok(out)
}

/// The rewritten body parts: the root's new content type and content when the mail is a
/// single text part, else the new bytes of each inner body part with the range of `raw`
/// they replace, in order.
struct NewBody {
    root: Option<(String, String)>,
    spliced: Vec<(Range<usize>, Vec<u8>)>,
}

fn rewrite_body(
    raw: &[u8],
    message: &Message<'_>,
    header_end: usize,
    plan: &ReplyPlan<'_>,
) -> Result<NewBody, RewriteError> {
    let mut body = NewBody {
        root: None,
        spliced: Vec::new(),
    };
    for (id, kind) in body_parts(message) {
        let part = &message.parts[id];
        let content = match (kind, &part.body) {
            (BodyKind::Text, PartType::Text(t)) => rewrite_text(t, part, plan)?,
            (BodyKind::Html, PartType::Html(h)) => rewrite_html(h, plan),
            _ => continue,
        };
        let content_type = content_type(part, kind);
        let encoded = mime::quoted_printable_for_relay(&content);
        if id == 0 {
            body.root = Some((content_type, encoded));
            continue;
        }
        let (start, body_start, end) = (
            part.offset_header as usize,
            part.offset_body as usize,
            part.offset_end as usize,
        );
        if !(header_end <= start && start <= body_start && body_start <= end && end <= raw.len()) {
            return Err(unparseable("MIME part offsets out of order"));
        }
        let mut bytes = Vec::with_capacity(encoded.len() + 200);
        for f in fields(raw, &part.headers) {
            if f.valid && !is_content_header(&f.name) {
                f.push(&mut bytes, raw);
            }
        }
        push_content_headers(&mut bytes, &content_type);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(encoded.as_bytes());
        body.spliced.push((start..end, bytes));
    }
    body.spliced.sort_by_key(|(r, _)| r.start);
    Ok(body)
}

/// The agent's top-level fields that reach the customer (the content fields only when the
/// root part keeps its own body), and `MIME-Version` when the agent's mail had none.
fn push_kept_fields(out: &mut Vec<u8>, raw: &[u8], top: &[Field], root_rewritten: bool) {
    let mut has_mime_version = false;
    for f in top {
        if !f.valid {
            continue;
        }
        let lower = f.name.to_ascii_lowercase();
        if DROPPED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("x-ticket-")
            || (root_rewritten && is_content_header(&lower))
        {
            continue;
        }
        has_mime_version |= lower == "mime-version";
        f.push(out, raw);
    }
    if !has_mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
}

/// The parts that are the message body: a single text part, or the text and HTML parts of
/// the first multipart/alternative (also inside multipart/mixed or multipart/related,
/// whose first part is the body). At most one of each kind.
fn body_parts(message: &Message<'_>) -> Vec<(usize, BodyKind)> {
    let mut found: Vec<(usize, BodyKind)> = Vec::new();
    visit_body(message, 0, 0, &mut found);
    found
}

fn visit_body(message: &Message<'_>, id: usize, depth: usize, found: &mut Vec<(usize, BodyKind)>) {
    let Some(part) = message.parts.get(id) else {
        return;
    };
    if depth > 32 {
        return;
    }
    let listed = |list: &[u32]| list.contains(&(id as u32));
    let in_body = listed(&message.text_body) || listed(&message.html_body);
    let attachment = part
        .content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
    let kind = match &part.body {
        PartType::Text(_) => Some(BodyKind::Text),
        PartType::Html(_) => Some(BodyKind::Html),
        PartType::Multipart(children) => {
            let alternative = part.content_type().is_some_and(|ct| {
                ct.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("alternative"))
            });
            let children: Vec<usize> = children
                .iter()
                .map(|c| *c as usize)
                .filter(|c| *c > id)
                .collect();
            if alternative {
                for c in children {
                    visit_body(message, c, depth + 1, found);
                }
            } else if let Some(first) = children.first() {
                visit_body(message, *first, depth + 1, found);
            }
            None
        }
        _ => None,
    };
    if let Some(kind) = kind
        && in_body
        && !attachment
        && !found.iter().any(|(_, k)| *k == kind)
    {
        found.push((id, kind));
    }
}

fn rewrite_text(
    decoded: &str,
    part: &MessagePart<'_>,
    plan: &ReplyPlan<'_>,
) -> Result<String, RewriteError> {
    let ct = part.content_type();
    let param = |name: &str| ct.and_then(|c| c.attribute(name)).unwrap_or("");
    let mut text = decoded.replace("\r\n", "\n");
    if param("format").eq_ignore_ascii_case("flowed") {
        text = unflow(&text, param("delsp").eq_ignore_ascii_case("yes"));
    }
    let (_, rest) = commands::split(&text)?;
    let mut own = quote::own_text(rest);
    if let Some(template) = plan.template.filter(|t| !t.trim().is_empty()) {
        let template = template.replace("\r\n", "\n");
        own = if own.trim().is_empty() {
            template
        } else {
            format!("{}\n\n{own}", template.trim_end())
        };
    }
    let own = texts::fill(&own, plan.placeholders);
    let quote = text_quote(plan);
    let mut out = own.trim_end().to_string();
    if !quote.is_empty() {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&quote);
    }
    out.push('\n');
    Ok(out)
}

fn rewrite_html(decoded: &str, plan: &ReplyPlan<'_>) -> String {
    let h = decoded.replace("\r\n", "\n");
    let h = quote::strip_html_commands(&h);
    let mut h = quote::strip_html_quote(&h);
    if let Some(template) = plan.template.filter(|t| !t.trim().is_empty()) {
        let block = format!(
            "<div class=\"mticket-template\">{}</div>\n",
            html::text_to_html(template)
        );
        let at = html::body_range(&h, &html::tokens(&h)).0;
        h.insert_str(at, &block);
    }
    let mut h = fill_html(&h, plan.placeholders);
    let quote = html_quote(plan);
    if !quote.is_empty() {
        let toks = html::tokens(&h);
        let at = toks
            .iter()
            .rev()
            .find(|t| t.is_close("body"))
            .map_or(h.len(), |t| t.start);
        h.insert_str(at, &quote);
    }
    let mut h = utf8_meta(&h);
    if !h.ends_with('\n') {
        h.push('\n');
    }
    h
}

/// Placeholders filled with HTML-escaped values.
fn fill_html(h: &str, p: &Placeholders<'_>) -> String {
    let e = html::escape;
    let customer = p.customer.map(|c| Customer {
        company1: e(&c.company1),
        company2: e(&c.company2),
        salutation: e(&c.salutation),
        first_name: e(&c.first_name),
        last_name: e(&c.last_name),
        street: e(&c.street),
        house_no: e(&c.house_no),
        zip: e(&c.zip),
        city: e(&c.city),
        letter_salutation: e(&c.letter_salutation),
        ..c.clone()
    });
    let queue = e(p.queue);
    let neutral = e(p.neutral_salutation);
    texts::fill(
        h,
        &Placeholders {
            customer: customer.as_ref(),
            ticket_number: p.ticket_number,
            queue: &queue,
            neutral_salutation: &neutral,
        },
    )
}

fn quoted_entries<'p>(plan: &'p ReplyPlan<'_>) -> impl Iterator<Item = &'p QuoteEntry> {
    plan.quote.iter().filter(|e| e.kind != ItemKind::Comment)
}

/// `Am 26.11.2026 10:00 schrieb …:` / `On 2026-11-26 10:00, … wrote:` (local time).
fn attribution(entry: &QuoteEntry, locale: Locale, utc_offset: i32) -> String {
    let when = local(entry.date, utc_offset);
    let from = one_line(&entry.from);
    match locale {
        Locale::De => format!("Am {} schrieb {from}:", when.format("%d.%m.%Y %H:%M")),
        Locale::En => format!("On {}, {from} wrote:", when.format("%Y-%m-%d %H:%M")),
    }
}

fn text_quote(plan: &ReplyPlan<'_>) -> String {
    let mut blocks = Vec::new();
    for entry in quoted_entries(plan) {
        let mut block = attribution(entry, plan.locale, plan.utc_offset);
        let text = entry.text.replace("\r\n", "\n");
        for line in text.trim_end().split('\n') {
            block.push('\n');
            if line.is_empty() {
                block.push('>');
            } else if line.starts_with('>') {
                block.push('>');
                block.push_str(line);
            } else {
                block.push_str("> ");
                block.push_str(line);
            }
        }
        blocks.push(block);
    }
    blocks.join("\n\n")
}

fn html_quote(plan: &ReplyPlan<'_>) -> String {
    let mut out = String::new();
    for entry in quoted_entries(plan) {
        let content = match &entry.html {
            Some(h) => {
                let toks = html::tokens(h);
                let (start, end) = html::body_range(h, &toks);
                html::balanced(&h[start..end])
            }
            None => html::text_to_html(&entry.text),
        };
        out.push_str(&format!(
            "<div class=\"mticket-cite\">{}</div>\n<blockquote type=\"cite\">{}</blockquote>\n",
            html::escape(&attribution(entry, plan.locale, plan.utc_offset)),
            content
        ));
    }
    if out.is_empty() {
        out
    } else {
        format!("<div class=\"mticket-quote\"><br>\n{out}</div>\n")
    }
}

/// A `<meta>` charset declaration naming the old charset would contradict the new one.
fn utf8_meta(h: &str) -> String {
    let mut out = String::with_capacity(h.len());
    let mut pos = 0;
    for t in html::tokens(h) {
        if !t.is_open("meta") {
            continue;
        }
        let src = &h[t.start..t.end];
        let lower = src.to_ascii_lowercase();
        let Some(at) = lower.find("charset") else {
            continue;
        };
        let b = src.as_bytes();
        let mut i = at + "charset".len();
        while i < b.len() && (b[i].is_ascii_whitespace() || matches!(b[i], b'=' | b'"' | b'\'')) {
            i += 1;
        }
        let end = b[i..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':')))
            .map_or(b.len(), |p| i + p);
        if end > i {
            out.push_str(&h[pos..t.start + i]);
            out.push_str("utf-8");
            pos = t.start + end;
        }
    }
    out.push_str(&h[pos..]);
    out
}

/// RFC 3676: soft line breaks (a trailing space) joined, space-stuffing undone.
fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open_depth: Option<usize> = None;
    for line in text.split('\n') {
        let depth = line.len() - line.trim_start_matches('>').len();
        let mut content = &line[depth..];
        content = content.strip_prefix(' ').unwrap_or(content);
        let flowed = content.ends_with(' ') && content != "-- ";
        if flowed && delsp {
            content = &content[..content.len() - 1];
        }
        if open_depth != Some(depth) {
            if open_depth.is_some() {
                out.push('\n');
            }
            if depth > 0 {
                out.push_str(&">".repeat(depth));
                out.push(' ');
            }
        }
        out.push_str(content);
        if flowed {
            open_depth = Some(depth);
        } else {
            out.push('\n');
            open_depth = None;
        }
    }
    if open_depth.is_some() {
        out.push('\n');
    }
    // `split` yields one line after the final newline.
    if !text.ends_with('\n') || out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// The new Content-Type: the part's type with `charset=utf-8`; its other parameters kept
/// where they can be written back as plain ASCII, `format`/`delsp` dropped (the text is
/// unflowed).
fn content_type(part: &MessagePart<'_>, kind: BodyKind) -> String {
    let mut value = match kind {
        BodyKind::Text => "text/plain; charset=utf-8".to_string(),
        BodyKind::Html => "text/html; charset=utf-8".to_string(),
    };
    let attributes = part.content_type().and_then(|ct| ct.attributes());
    for a in attributes.unwrap_or_default() {
        let name = a.name.as_ref();
        if matches!(name, "charset" | "format" | "delsp" | "reply-type")
            || name.is_empty()
            || !name.bytes().all(is_token_byte)
            || !a.value.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            continue;
        }
        let v = a.value.as_ref();
        if !v.is_empty() && v.bytes().all(is_token_byte) {
            value.push_str(&format!("; {name}={v}"));
        } else {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            value.push_str(&format!("; {name}=\"{escaped}\""));
        }
    }
    value
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

fn push_content_headers(out: &mut Vec<u8>, content_type: &str) {
    out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
}

fn is_content_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type")
        || name.eq_ignore_ascii_case("content-transfer-encoding")
}

/// A header field kept as written; a last field without line end gets one.
fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    if !bytes.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

/// One header field as mail-parser reads it. The fields are taken from mail-parser's own
/// reading, not read again here: its MIME structure, and so every attachment, rests on the
/// fields as it sees them, including its quirks (a name with blanks inside, a value that
/// takes the next line along, a blank-led line after a line without colon).
struct Field {
    /// The name: the standard spelling for the fields mail-parser knows, else as written.
    name: String,
    /// The value as written, from after the colon to its line end.
    value: Range<usize>,
    /// False for a name that is not plain ASCII without blanks; such fields are not written
    /// back (none of them shapes the MIME structure).
    valid: bool,
}

impl Field {
    fn push(&self, out: &mut Vec<u8>, raw: &[u8]) {
        out.extend_from_slice(self.name.as_bytes());
        out.push(b':');
        push_field(out, &raw[self.value.clone()]);
    }
}

/// The fields of one part's header, as mail-parser read them from `raw`.
fn fields(raw: &[u8], headers: &[Header<'_>]) -> Vec<Field> {
    headers
        .iter()
        .filter_map(|h| {
            let value = h.offset_start as usize..h.offset_end as usize;
            if value.start > value.end || value.end > raw.len() {
                return None;
            }
            // As written when that is the name; else the standard spelling (`Content
            // \t-Type` is Content-Type).
            let written = raw
                .get(h.offset_field as usize..value.start.saturating_sub(1))
                .unwrap_or_default();
            let name = match h.name.as_str() {
                known if known.as_bytes().eq_ignore_ascii_case(written) => {
                    String::from_utf8_lossy(written).into_owned()
                }
                known => known.to_string(),
            };
            Some(Field {
                valid: !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
                name,
                value,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The headers the gateway writes.

fn new_headers(plan: &ReplyPlan<'_>) -> String {
    let mut h = String::new();
    let from = mailbox(plan.from_name, plan.from_address);
    h.push_str(&address_field("From", std::slice::from_ref(&from)));
    h.push_str(&address_field("Reply-To", std::slice::from_ref(&from)));
    let to: Vec<String> = plan.to.iter().map(|r| recipient(r)).collect();
    if !to.is_empty() {
        h.push_str(&address_field("To", &to));
    }
    let cc: Vec<String> = plan.cc.iter().map(|r| recipient(r)).collect();
    if !cc.is_empty() {
        h.push_str(&address_field("Cc", &cc));
    }
    h.push_str(&subject_field(&texts::fill(
        plan.subject,
        plan.placeholders,
    )));
    h.push_str(&format!(
        "Date: {}\r\n",
        mime::rfc5322_date_of(&local(plan.date, plan.utc_offset))
    ));
    if let Some(id) = msg_id(plan.message_id) {
        h.push_str(&format!("Message-ID: {id}\r\n"));
    }
    if let Some(id) = plan.in_reply_to.and_then(msg_id) {
        h.push_str(&format!("In-Reply-To: {id}\r\n"));
    }
    let refs: Vec<String> = plan.references.iter().filter_map(|r| msg_id(r)).collect();
    if !refs.is_empty() {
        h.push_str(&folded("References", refs));
    }
    h.push_str(&format!("X-Ticket-Number: {}\r\n", plan.ticket_number));
    h
}

/// `<id>` from an id given without brackets; characters that cannot be in one go.
fn msg_id(id: &str) -> Option<String> {
    let clean: String = id
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>'))
        .collect();
    (!clean.is_empty()).then(|| format!("<{clean}>"))
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

fn clean_address(addr: &str) -> String {
    addr.chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | ',' | '"'))
        .collect()
}

/// `"Name" <addr>` (RFC 2047 words for a non-ASCII name), or the bare address.
fn mailbox(name: &str, address: &str) -> String {
    let name = one_line(name);
    let address = clean_address(address);
    if name.is_empty() {
        return address;
    }
    let phrase = if name.is_ascii() {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        mime::q_encoded_words(&name).join(" ")
    };
    format!("{phrase} <{address}>")
}

/// A recipient given as `addr` or `Name <addr>` (the name may be quoted).
fn recipient(r: &str) -> String {
    let r = r.trim();
    match (r.rfind('<'), r.ends_with('>')) {
        (Some(lt), true) => {
            let name = r[..lt].trim().trim_matches('"');
            mailbox(name, &r[lt + 1..r.len() - 1])
        }
        _ => clean_address(r),
    }
}

fn address_field(name: &str, items: &[String]) -> String {
    fold(name, items, ",")
}

/// `Name: a b c`, folded before a word that would pass 78 characters.
fn folded(name: &str, words: Vec<String>) -> String {
    fold(name, &words, "")
}

/// `Name: a<sep> b<sep> c`, folded before an item that would pass 78 characters.
fn fold(name: &str, items: &[String], separator: &str) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            out.push_str(separator);
            line += separator.len();
        }
        if k > 0 && line + 1 + item.len() > 78 {
            out.push_str("\r\n ");
            line = 1;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(item);
        line += item.len();
    }
    out.push_str("\r\n");
    out
}

/// The subject, ASCII words as they are, runs of other words (non-ASCII, overlong, or
/// looking like encoded words) as RFC 2047 encoded words; folded.
fn subject_field(subject: &str) -> String {
    let clean = one_line(subject);
    let words: Vec<&str> = clean.split(' ').filter(|w| !w.is_empty()).collect();
    let needs_encoding = |w: &str| !w.is_ascii() || w.len() > 60 || w.contains("=?");
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if needs_encoding(words[i]) {
            let mut j = i;
            while j < words.len() && needs_encoding(words[j]) {
                j += 1;
            }
            tokens.extend(mime::q_encoded_words(&words[i..j].join(" ")));
            i = j;
        } else {
            tokens.push(words[i].to_string());
            i += 1;
        }
    }
    folded("Subject", tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn entry(kind: ItemKind, marker: &str, date: i64) -> QuoteEntry {
        QuoteEntry {
            kind,
            from: "Erika Muster <erika@kunde.example>".into(),
            date,
            text: format!("Zeile {marker}\n\n>alt\n"),
            html: None,
        }
    }

    struct Fixture {
        customer: Customer,
        to: Vec<String>,
        cc: Vec<String>,
        refs: Vec<String>,
        quote: Vec<QuoteEntry>,
    }

    fn fixture() -> Fixture {
        Fixture {
            customer: Customer {
                last_name: "Müller & Söhne".into(),
                letter_salutation: "Sehr geehrter Herr Müller".into(),
                ..Customer::default()
            },
            to: vec!["Erika Müster <erika@kunde.example>".into()],
            cc: vec![],
            refs: vec!["a@kunde.example".into(), "b@kunde.example".into()],
            quote: vec![entry(ItemKind::Customer, "EINS", 1_795_687_200)],
        }
    }

    fn rewrite_with(raw: &[u8], f: &Fixture, template: Option<&str>) -> String {
        String::from_utf8(rewrite_bytes(raw, f, template).unwrap()).unwrap()
    }

    fn rewrite_bytes(
        raw: &[u8],
        f: &Fixture,
        template: Option<&str>,
    ) -> Result<Vec<u8>, RewriteError> {
        let placeholders = Placeholders {
            customer: Some(&f.customer),
            ticket_number: 42,
            queue: "Support",
            neutral_salutation: "Sehr geehrte Damen und Herren",
        };
        let plan = ReplyPlan {
            from_name: "Kundendienst Süd",
            from_address: "support@firma.example",
            to: &f.to,
            cc: &f.cc,
            subject: "Re: [Support #42] Drucker für @Nachname@",
            message_id: "mt.42.r.1@gw.example",
            in_reply_to: Some("b@kunde.example"),
            references: &f.refs,
            date: 1_795_690_800,
            quote: &f.quote,
            placeholders: &placeholders,
            template,
            locale: Locale::De,
            utc_offset: 0,
            ticket_number: 42,
        };
        rewrite(raw, &plan)
    }

    fn header_block(out: &str) -> &str {
        &out[..out.find("\r\n\r\n").unwrap()]
    }

    #[test]
    fn times_are_written_in_the_gateways_local_time() {
        let e = entry(ItemKind::Customer, "M", 1_795_690_800);
        assert_eq!(
            attribution(&e, Locale::De, 0),
            attribution(
                &entry(ItemKind::Customer, "M", 1_795_690_800 - 3600),
                Locale::De,
                3600
            )
        );
        assert!(local(1_795_690_800, 3600).format("%z").to_string() == "+0100");
        assert!(local(0, i32::MAX).format("%z").to_string() == "+0000");
    }

    #[test]
    fn select_follows_the_policy() {
        let items: Vec<QuoteEntry> = (0..5)
            .map(|n| entry(ItemKind::Customer, &n.to_string(), n))
            .collect();
        assert_eq!(select(ReplyQuote::None, &items).len(), 0);
        assert_eq!(select(ReplyQuote::Last, &items).len(), 1);
        assert_eq!(select(ReplyQuote::Last3, &items).len(), 3);
        assert_eq!(select(ReplyQuote::All, &items).len(), 5);
        assert_eq!(select(ReplyQuote::Last3, &items[..2]).len(), 2);
        assert!(select(ReplyQuote::Last, &[]).is_empty());
    }

    #[test]
    fn headers_are_replaced_and_the_rest_kept_as_written() {
        let raw = b"From: Max Agent <max@firma.example>\r\nSender: max@firma.example\r\n\
To: erika@kunde.example\r\nBcc: chef@firma.example\r\nSubject: Re: alt\r\n\
Message-ID: <client@agent>\r\nDate: Thu, 26 Nov 2026 11:00:00 +0100\r\n\
X-Ticket-Number: 7\r\nX-Loop: x\r\nThread-Index: AQHb\r\nReceived: from x\r\n\tby y\r\n\
Disposition-Notification-To: max@firma.example\r\nUser-Agent: Mozilla/5.0  Thunderbird\r\n\
X-Mailer: Some\r\n  folded\r\nContent-Language: de-DE\r\n\r\nHallo\r\n";
        let out = rewrite_with(raw, &fixture(), None);
        let head = header_block(&out);
        assert!(head.starts_with(
            "From: =?utf-8?Q?Kundendienst_S=C3=BCd?= <support@firma.example>\r\n\
             Reply-To: =?utf-8?Q?Kundendienst_S=C3=BCd?= <support@firma.example>\r\n\
             To: =?utf-8?Q?Erika_M=C3=BCster?= <erika@kunde.example>\r\n"
        ));
        for gone in [
            "max@",
            "Sender:",
            "Bcc:",
            "client@agent",
            "X-Ticket-Number: 7",
            "X-Loop",
            "Thread-Index",
            "Received",
            "Disposition",
            "Re: alt",
            "+0100",
        ] {
            assert!(!head.contains(gone), "{gone} in {head}");
        }
        for kept in [
            "User-Agent: Mozilla/5.0  Thunderbird\r\n",
            "X-Mailer: Some\r\n  folded\r\n",
            "Content-Language: de-DE\r\n",
            "Date: Thu, 26 Nov 2026 11:00:00 +0000\r\n",
            "Message-ID: <mt.42.r.1@gw.example>\r\n",
            "In-Reply-To: <b@kunde.example>\r\n",
            "References: <a@kunde.example> <b@kunde.example>\r\n",
            "X-Ticket-Number: 42\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: quoted-printable",
        ] {
            assert!(head.contains(kept), "{kept:?} missing in {head}");
        }
        assert!(!head.contains("Cc:"));
        let parsed = crate::core::mail::parse(out.as_bytes());
        assert_eq!(
            parsed.subject,
            "Re: [Support #42] Drucker für Müller & Söhne"
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    }

    #[test]
    fn subject_and_names_are_encoded_and_folded() {
        let long = "Re: [Support #42] Rückfrage zu Ihrer Bestellung vom 26. November über \
                    zwölf Drucker, drei Scanner und ein Faxgerät für die Filiale Süd";
        let field = subject_field(long);
        assert!(field.lines().all(|l| l.len() <= 78), "{field}");
        assert!(field.starts_with("Subject: Re: [Support #42] =?utf-8?Q?R=C3=BCckfrage?= zu"));
        let raw = format!("{field}\r\n");
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some(long));
        assert_eq!(subject_field("a\r\nb"), "Subject: a b\r\n");
        assert_eq!(
            mailbox("Dr. \"X\" Y", "s@q.example"),
            "\"Dr. \\\"X\\\" Y\" <s@q.example>"
        );
        assert_eq!(recipient("  k@x.example "), "k@x.example");
        assert_eq!(
            recipient("\"K, X\" <k@x.example>"),
            "\"K, X\" <k@x.example>"
        );
        let many: Vec<String> = (0..6)
            .map(|n| format!("empfaenger{n}@kunde.example"))
            .collect();
        assert!(address_field("Cc", &many).lines().all(|l| l.len() <= 78));
    }

    #[test]
    fn text_body_commands_quote_placeholders_and_policy_quote() {
        let raw = "From: a@b\r\nContent-Type: text/plain; charset=ISO-8859-1; format=flowed\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n#status closed\r\n#tag +x\r\n\r\n\
@Briefanrede@,\r\nIhr Drucker f=FCr @Nachname@ l=E4uft =\r\nwieder. Lange Zeile die=20\r\numbricht.\r\n\r\n\
Am 26.11.2026 um 10:00 schrieb Erika:\r\n> CLIENTQUOTE\r\n";
        let out = rewrite_with(raw.as_bytes(), &fixture(), Some("Vorlage @Ticketnummer@\n"));
        let parsed = crate::core::mail::parse(out.as_bytes());
        assert_eq!(
            parsed.text.replace("\r\n", "\n"),
            "Vorlage 42\n\nSehr geehrter Herr Müller,\nIhr Drucker für Müller & Söhne läuft wieder. \
             Lange Zeile die umbricht.\n\n\
             Am 26.11.2026 10:00 schrieb Erika Muster <erika@kunde.example>:\n> Zeile EINS\n>\n>>alt\n"
        );
        assert!(!out.contains("format=flowed") && !out.contains("ISO-8859-1"));
        assert!(out.lines().all(|l| l.len() <= 78));
    }

    #[test]
    fn bad_command_lines_are_an_error() {
        let placeholders = Placeholders {
            customer: None,
            ticket_number: 1,
            queue: "Q",
            neutral_salutation: "Hallo",
        };
        let plan = ReplyPlan {
            from_name: "Q",
            from_address: "q@x.example",
            to: &[],
            cc: &[],
            subject: "s",
            message_id: "m@x",
            in_reply_to: None,
            references: &[],
            date: 0,
            quote: &[],
            placeholders: &placeholders,
            template: None,
            locale: Locale::En,
            utc_offset: 0,
            ticket_number: 1,
        };
        let err = rewrite(b"From: a@b\r\n\r\n#frobnicate\r\nHallo\r\n", &plan).unwrap_err();
        assert!(matches!(err, RewriteError::Command(_)), "{err}");
        for raw in [&b""[..], b"   \r\n", b"\r\n\r\nno headers"] {
            let err = rewrite(raw, &plan).unwrap_err();
            assert!(
                matches!(err, RewriteError::Unparseable(_)),
                "{raw:?}: {err}"
            );
        }
    }

    #[test]
    fn html_and_attachments_in_a_mixed_mail() {
        let pdf = "Content-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; \
                   filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n";
        let raw = format!(
            "From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n\
             --M\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n\
             --A\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n#status closed\r\nHallo @Nachname@\r\n\
             --A\r\nContent-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: quoted-printable\r\n\
             X-Extra: kept\r\n\r\n<html><head><meta http-equiv=3D\"Content-Type\" content=3D\"text/html; \
             charset=3Dwindows-1252\"></head><body><p>#status closed</p><p>Hallo @Nachname@</p>\
             <blockquote type=3D\"cite\">CLIENTQUOTE</blockquote></body></html>\r\n--A--\r\n\r\n\
             --M\r\n{pdf}--M--\r\n"
        );
        let out = rewrite_with(raw.as_bytes(), &fixture(), None);
        assert!(out.contains(&format!("--M\r\n{pdf}--M--\r\n")), "{out}");
        assert!(out.contains("X-Extra: kept\r\nContent-Type: text/html; charset=utf-8\r\n"));
        let parsed = crate::core::mail::parse(out.as_bytes());
        let html = parsed.html.unwrap().replace("\r\n", "\n");
        assert!(
            !html.contains("CLIENTQUOTE") && !html.contains("#status"),
            "{html}"
        );
        assert!(html.contains("<p>Hallo Müller &amp; Söhne</p>"), "{html}");
        assert!(html.contains("charset=utf-8\">"), "{html}");
        assert!(html.contains(
            "<div class=\"mticket-cite\">Am 26.11.2026 10:00 schrieb Erika Muster &lt;erika@kunde.example&gt;:</div>\n\
             <blockquote type=\"cite\">Zeile EINS<br>\n<br>\n&gt;alt</blockquote>\n</div>\n</body>"
        ), "{html}");
        assert!(
            parsed
                .text
                .replace("\r\n", "\n")
                .starts_with("Hallo Müller & Söhne\n\nAm 26.11.2026")
        );
        assert_eq!(parsed.attachments.len(), 1);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    }

    #[test]
    fn forwarded_mail_and_inline_image_pass_through_byte_identical() {
        let forwarded = "Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n\
                         From: x@y\r\nSubject: alt\r\nContent-Type: text/plain\r\n\r\n#status weg?\r\n\
                         > CLIENTQUOTE bleibt im Anhang\r\n";
        let image = "Content-Type: image/png\r\nContent-ID: <i1>\r\nContent-Transfer-Encoding: base64\r\n\
                     \r\niVBORw0KGgo=\r\n";
        let raw = format!(
            "From: a@b\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\nPreamble\r\n--M\r\n\
             Content-Type: multipart/related; boundary=R\r\n\r\n--R\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo</p><img src=\"cid:i1\">\r\n--R\r\n\
             {image}--R--\r\n--M\r\n{forwarded}--M--\r\nEpilog\r\n"
        );
        let out = rewrite_with(raw.as_bytes(), &fixture(), None);
        assert!(out.contains(&format!(
            "--R\r\n{image}--R--\r\n--M\r\n{forwarded}--M--\r\nEpilog\r\n"
        )));
        assert!(out.contains("\r\n\r\nPreamble\r\n--M\r\n"));
        let parsed = crate::core::mail::parse(out.as_bytes());
        assert!(parsed.html.unwrap().contains("Zeile EINS"));
        assert_eq!(parsed.attachments.len(), 2, "{:?}", parsed.attachments);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    }

    #[test]
    fn cut_or_odd_input_never_panics() {
        let fixture_mail: &[u8] =
            include_bytes!("../../tests/fixtures/rewrite/apple_mail_inline_image.eml");
        let lf: Vec<u8> = fixture_mail
            .iter()
            .copied()
            .filter(|b| *b != b'\r')
            .collect();
        let f = fixture();
        let out = rewrite_with(&lf, &f, Some("x"));
        assert!(crate::core::mail::parse(out.as_bytes()).problems.is_empty());
        let placeholders = Placeholders {
            customer: None,
            ticket_number: 1,
            queue: "Q",
            neutral_salutation: "Hallo",
        };
        let plan = ReplyPlan {
            from_name: "Q",
            from_address: "q@x.example",
            to: &f.to,
            cc: &f.cc,
            subject: "s",
            message_id: "m@x",
            in_reply_to: None,
            references: &[],
            date: i64::MAX,
            quote: &f.quote,
            placeholders: &placeholders,
            template: Some("t"),
            locale: Locale::En,
            utc_offset: 0,
            ticket_number: 1,
        };
        let odd: &[&[u8]] = &[
            b"From: a\r\n",
            b"X: y\r\nContent-Type: multipart/alternative; boundary=\"\"\r\n\r\n--\r\n",
            b"Content-Type: text/html\r\n\r\n<blockquote type=cite><div",
            b"Content-Type: text/plain; format=flowed\r\n\r\n>\xff\xfe \r\n\r\n",
        ];
        let cuts = (0..fixture_mail.len())
            .step_by(37)
            .map(|n| &fixture_mail[..n]);
        for raw in cuts.chain(odd.iter().copied()) {
            if let Err(RewriteError::Unparseable(why)) = rewrite(raw, &plan) {
                assert!(!why.contains("parser failed"), "{raw:?}");
            }
        }
    }

    #[test]
    fn unflow_joins_soft_breaks() {
        assert_eq!(
            unflow("Lange \nZeile.\n> zitiert \n> weiter\n \n-- \nSig\n", false),
            "Lange Zeile.\n> zitiert weiter\n\n-- \nSig\n"
        );
        assert_eq!(unflow("ab \ncd", true), "abcd");
        assert_eq!(unflow("", false), "");
        assert_eq!(unflow(" >stuffed\n", false), ">stuffed\n");
    }

    /// The decoded attachments mail-parser finds in `raw`.
    fn attachment_contents(raw: &[u8]) -> Vec<Vec<u8>> {
        let message = MessageParser::default().parse(raw).expect("parsable");
        message
            .attachments()
            .map(|p| p.contents().to_vec())
            .collect()
    }

    #[test]
    fn a_field_name_with_blanks_inside_is_read_and_written_as_mail_parser_reads_it() {
        // mail-parser reads `Content\t-Type` as Content-Type: the multipart structure and
        // its attachment rest on it, so the field must reach the customer, respelled.
        let raw = b"From: agent@firma.example\r\n\
            Content \t-Type: multipart/mixed; boundary=\"b\"\r\n\
            \r\n\
            --b\r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            Guten Tag\r\n\
            --b\r\n\
            Content-Type: application/pdf\r\n\
            Content-Disposition: attachment; filename=a.pdf\r\n\
            \r\n\
            PDFDATA\r\n\
            --b--\r\n";
        let f = fixture();
        let out = rewrite_bytes(raw, &f, None).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"),
            "{text}"
        );
        assert_eq!(
            attachment_contents(&out),
            attachment_contents(raw),
            "{text}"
        );
        assert_eq!(attachment_contents(raw), vec![b"PDFDATA".to_vec()]);
    }

    #[test]
    fn fuzz_input_with_blanks_in_the_content_type_name_keeps_its_attachment() {
        keeps_its_attachments(include_bytes!(
            "../../tests/fixtures/fuzz/reply_rewrite_blanks_in_content_type.eml"
        ));
    }

    #[test]
    fn fuzz_input_with_a_colon_before_the_content_type_name_keeps_its_attachment() {
        keeps_its_attachments(include_bytes!(
            "../../tests/fixtures/fuzz/reply_rewrite_colon_before_content_type.eml"
        ));
    }

    #[test]
    fn a_blank_led_line_after_a_line_without_colon_is_a_field_of_its_own() {
        // mail-parser drops `Subjive;` and reads the next line, blank and all, as the
        // Content-Type the attachment rests on: it must reach the customer as a field.
        let raw = b"From: agent@firma.example\r\n\
            Subjive;\r\n\
            \tContent-Type: multipart/mixed; boundary=\"b\"\r\n\
            \r\n\
            --b\r\n\
            Content-Type: text/plain\r\n\
            \r\n\
            Guten Tag\r\n\
            --b\r\n\
            Content-Type: application/pdf\r\n\
            Content-Disposition: attachment; filename=a.pdf\r\n\
            \r\n\
            PDFDATA\r\n\
            --b--\r\n";
        let out = rewrite_bytes(raw, &fixture(), None).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"),
            "{text}"
        );
        assert!(!text.contains("Subjive"), "{text}");
        assert_eq!(attachment_contents(raw), vec![b"PDFDATA".to_vec()]);
        assert_eq!(
            attachment_contents(&out),
            attachment_contents(raw),
            "{text}"
        );
    }

    #[test]
    fn fuzz_input_with_a_folded_content_type_after_a_line_without_colon_keeps_its_attachment() {
        keeps_its_attachments(include_bytes!(
            "../../tests/fixtures/fuzz/reply_rewrite_blank_after_a_line_without_colon.eml"
        ));
    }

    #[test]
    fn fuzz_input_whose_date_takes_the_next_line_along_keeps_its_attachment() {
        // mail-parser's Date takes the `Content-Type: text/html` line after it along, so
        // for it the mail is multipart; the rewrite must not make that line a field.
        keeps_its_attachments(include_bytes!(
            "../../tests/fixtures/fuzz/reply_rewrite_date_takes_the_next_line_along.eml"
        ));
    }

    #[test]
    fn a_rewrite_that_would_lose_an_attachment_is_refused() {
        // Found by fuzzing: two Content-Types, a boundary that begins other lines, a
        // boundary-like header line. Splicing the rewritten text part in changed how the
        // rest is read, and an attachment of 44 bytes was gone.
        let raw = include_bytes!(
            "../../tests/fixtures/fuzz/reply_rewrite_damaged_structure_loses_an_attachment.eml"
        );
        match rewrite_bytes(raw, &fixture(), None) {
            Err(RewriteError::Unparseable(why)) => assert!(why.contains("attachment"), "{why}"),
            Ok(_) => keeps_its_attachments(raw),
            Err(e) => panic!("{e}"),
        }
    }

    fn keeps_its_attachments(raw: &[u8]) {
        let before = attachment_contents(raw);
        assert!(!before.is_empty());
        let out = rewrite_bytes(raw, &fixture(), None).unwrap();
        let after = attachment_contents(&out);
        for content in &before {
            assert!(
                after.contains(content),
                "attachment of {} bytes lost",
                content.len()
            );
        }
    }
}
