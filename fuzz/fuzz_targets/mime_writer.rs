//! The core's MIME writer (`core::mime`): a display name, a subject, a file name and a body
//! from the input are written as a message, once as the ticket message writes mail (B
//! encoded words, byte-wise quoted-printable, an attachment) and once as the reply rewrite
//! does (Q encoded words, whole-character quoted-printable). mail-parser must read each
//! back to what went in, changed only where the format must: header text on one line with
//! single spaces, line ends as LF, a file name without path separators.
//!
//! Input: the four texts separated by 0xFF bytes (lossy UTF-8). A text ending in 0xFE `n`
//! is repeated `n` times, so short inputs reach long runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_parser::{Message, MessageParser, MimeHeaders};
use mticket::core::mime::{
    Header, attachment_part, file_name, mailbox, one_line, q_encoded_words,
    quoted_printable_for_relay, text_part, unstructured,
};

const ADDRESS: &str = "kunde@example.test";
const BOUNDARY: &str = "=_fuzz.m";

struct Input {
    name: String,
    subject: String,
    file: String,
    body: String,
}

fn input(data: &[u8]) -> Input {
    let mut texts = data.split(|&b| b == 0xFF).map(|piece| {
        let text = match piece {
            [text @ .., 0xFE, n] => text.repeat(usize::from(*n)),
            _ => piece.to_vec(),
        };
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut next = || texts.next().unwrap_or_default();
    Input {
        name: next(),
        subject: next(),
        file: next(),
        body: next(),
    }
}

/// The fields both messages start with.
fn header(input: &Input, subject: Vec<String>) -> Header {
    let mut h = Header::default();
    h.field("From", mailbox(&input.name, ADDRESS));
    h.field("Subject", subject);
    h.field("MIME-Version", vec!["1.0".into()]);
    h
}

/// As the ticket message writes: B words, a text part and the body again as an attachment.
fn ticket_style(input: &Input) -> Vec<u8> {
    let mut h = header(input, unstructured(&input.subject));
    let mixed = vec![
        "multipart/mixed;".into(),
        format!("boundary=\"{BOUNDARY}\""),
    ];
    h.field("Content-Type", mixed);
    let mut out = h.finish();
    out.push_str(&format!("--{BOUNDARY}\r\n"));
    text_part(&mut out, "text/plain", &input.body);
    out.push_str(&format!("\r\n--{BOUNDARY}\r\n"));
    attachment_part(
        &mut out,
        &input.file,
        "application/pdf",
        input.body.as_bytes(),
    );
    out.push_str(&format!("\r\n--{BOUNDARY}--\r\n"));
    out.into_bytes()
}

/// As the reply rewrite writes: Q words and a single text part for relays.
fn relay_style(input: &Input) -> Vec<u8> {
    let mut h = header(input, q_encoded_words(&one_line(&input.subject)));
    h.field(
        "Content-Type",
        vec!["text/plain;".into(), "charset=utf-8".into()],
    );
    h.field("Content-Transfer-Encoding", vec!["quoted-printable".into()]);
    let mut out = h.finish();
    out.push_str(&quoted_printable_for_relay(&input.body));
    out.into_bytes()
}

fn parse(raw: &[u8]) -> Message<'_> {
    match MessageParser::default().parse(raw) {
        Some(message) => message,
        None => panic!(
            "the written message does not parse:\n{}",
            String::from_utf8_lossy(raw)
        ),
    }
}

/// The From name and address and the subject read as written.
fn check_header(m: &Message<'_>, input: &Input, raw: &[u8]) {
    let shown = String::from_utf8_lossy(raw);
    let from = m.from().and_then(|f| f.first());
    let from = from.unwrap_or_else(|| panic!("no From address:\n{shown}"));
    let name = one_line(&input.name);
    let want_name = (!name.is_empty()).then_some(name.as_str());
    assert_eq!(from.name(), want_name, "display name of\n{shown}");
    assert_eq!(from.address(), Some(ADDRESS), "address of\n{shown}");
    let subject = m.subject().unwrap_or_default();
    assert_eq!(subject, one_line(&input.subject), "subject of\n{shown}");
}

fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fuzz_target!(|data: &[u8]| {
    let input = input(data);

    let raw = ticket_style(&input);
    let m = parse(&raw);
    check_header(&m, &input, &raw);
    let shown = String::from_utf8_lossy(&raw);
    let body = m.body_text(0).unwrap_or_default();
    assert_eq!(
        lf(&body),
        lf(&input.body).replace('\r', "\n"),
        "body of\n{shown}"
    );
    let attachment = m.attachments().next();
    let attachment = attachment.unwrap_or_else(|| panic!("no attachment in\n{shown}"));
    let want_file = file_name(&input.file);
    assert_eq!(
        attachment.attachment_name(),
        Some(want_file.as_str()),
        "file name in\n{shown}"
    );
    assert_eq!(
        attachment.contents(),
        input.body.as_bytes(),
        "attachment of\n{shown}"
    );

    let raw = relay_style(&input);
    let m = parse(&raw);
    check_header(&m, &input, &raw);
    let shown = String::from_utf8_lossy(&raw);
    let body = m.body_text(0).unwrap_or_default();
    // Lines end at LF; a CR before it is the line end's, any other CR is text.
    let want: Vec<&str> = input
        .body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    assert_eq!(lf(&body), want.join("\n"), "body of\n{shown}");
});
