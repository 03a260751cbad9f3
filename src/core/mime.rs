//! The core's MIME writer: header fields folded from tokens, RFC 2047 encoded words,
//! display names and addresses, the Date value, quoted-printable text parts, base64
//! attachments with RFC 2231 file names. What it writes is 7-bit with CRLF line ends and
//! depends on its input alone. The ticket message, the statistics message and the reply
//! rewrite write mail through it; which fields and parts a message has is theirs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeZone};

/// A header block under construction: fields folded at the spaces between their tokens.
#[derive(Default)]
pub struct Header {
    out: String,
}

/// Folding aims at lines under this length; a token longer than that gets a line of its
/// own, and the encoders keep every token far below the 998 limit.
const FOLD_AT: usize = 76;

impl Header {
    /// `Name: tok tok …`, a line break before a token that would pass [`FOLD_AT`].
    pub fn field(&mut self, name: &str, tokens: Vec<String>) {
        self.out.push_str(name);
        self.out.push(':');
        let mut column = name.len() + 1;
        for token in tokens.iter().filter(|t| !t.is_empty()) {
            // A fold right after the colon is allowed too (RFC 5322 FWS), so even a first
            // token that would pass the limit moves to a line of its own.
            if column > 0 && column + 1 + token.len() > FOLD_AT {
                self.out.push_str("\r\n");
                column = 0;
            }
            self.out.push(' ');
            self.out.push_str(token);
            column += 1 + token.len();
        }
        self.out.push_str("\r\n");
    }

    /// An unstructured field left out when its value is empty.
    pub fn optional(&mut self, name: &str, value: &str) {
        let tokens = unstructured(value);
        if !tokens.is_empty() {
            self.field(name, tokens);
        }
    }

    /// The header block through the empty line that ends it.
    pub fn finish(mut self) -> String {
        self.out.push_str("\r\n");
        self.out
    }
}

/// `s` on one line: control characters and line separators become spaces, runs of spaces
/// collapse, ends are trimmed. Every string that goes into a header passes through here.
pub fn one_line(s: &str) -> String {
    split_words(s).join(" ")
}

/// The words of `s` as [`one_line`] joins them.
pub fn split_words(s: &str) -> Vec<String> {
    let spaced: String = s
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    spaced
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A word that may stand in a header as it is: printable ASCII, not mistakable for an
/// encoded word, short enough to keep its line far below 998 bytes.
fn plain_word(w: &str) -> bool {
    w.len() <= 200 && w.bytes().all(|b| b.is_ascii_graphic()) && !w.contains("=?")
}

/// Tokens of an unstructured value (Subject, `X-Ticket-…`): the leading plain words as they
/// are (so the ticket tag stays readable), the rest as encoded words.
pub fn unstructured(value: &str) -> Vec<String> {
    let words = split_words(value);
    let plain = words.iter().take_while(|w| plain_word(w)).count();
    let mut tokens = words[..plain].to_vec();
    if plain < words.len() {
        tokens.extend(encoded_words(&words[plain..].join(" ")));
    }
    tokens
}

/// RFC 2047 B encoded words of `text`, each at most 75 characters and cut at character
/// boundaries; the space between two encoded words is not part of the decoded text.
pub fn encoded_words(text: &str) -> Vec<String> {
    // 60 base64 characters + `=?utf-8?B?` + `?=`
    encoded_words_of(text, 45)
}

/// Encoded words of at most `max_bytes` of `text` each.
fn encoded_words_of(text: &str, max_bytes: usize) -> Vec<String> {
    let mut words = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if i > start && i + c.len_utf8() - start > max_bytes {
            words.push(encoded_word(&text[start..i]));
            start = i;
        }
    }
    if start < text.len() {
        words.push(encoded_word(&text[start..]));
    }
    words
}

fn encoded_word(chunk: &str) -> String {
    format!("=?utf-8?B?{}?=", BASE64.encode(chunk))
}

/// RFC 2047 Q encoded words of `text`, at most 72 characters each and split between
/// characters; only characters safe in any header position are written as themselves.
/// The rewritten reply's headers use them, so a customer's raw headers stay readable.
pub fn q_encoded_words(text: &str) -> Vec<String> {
    const MAX_PAYLOAD: usize = 60;
    let mut words = Vec::new();
    let mut payload = String::new();
    for c in text.chars() {
        let token = match c {
            ' ' => "_".to_string(),
            c if c.is_ascii_alphanumeric() || matches!(c, '!' | '*' | '+' | '-' | '/') => {
                c.to_string()
            }
            c => {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("={b:02X}"))
                    .collect()
            }
        };
        if payload.len() + token.len() > MAX_PAYLOAD {
            words.push(format!("=?utf-8?Q?{payload}?="));
            payload.clear();
        }
        payload.push_str(&token);
    }
    if !payload.is_empty() {
        words.push(format!("=?utf-8?Q?{payload}?="));
    }
    words
}

/// Tokens of an address field: the display name (atoms, a quoted string or encoded words)
/// and the address in `< >`. An address that cannot stand in a header as it is gets
/// `unknown@invalid`, and its text moves into the display name so nobody loses it.
pub fn mailbox(name: &str, address: &str) -> Vec<String> {
    let (addr, name) = match addr_spec(address) {
        Some(addr) => (addr, one_line(name)),
        None if one_line(name).is_empty() => ("unknown@invalid".into(), one_line(address)),
        None => ("unknown@invalid".into(), one_line(name)),
    };
    let mut tokens = phrase(&name);
    if tokens.is_empty() {
        tokens.push(addr);
    } else {
        tokens.push(format!("<{addr}>"));
    }
    tokens
}

/// `address` when it is a plain ASCII `local@domain` without characters that would need
/// quoting.
fn addr_spec(address: &str) -> Option<String> {
    let a = address.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a);
    let (local, domain) = a.split_once('@')?;
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>()[]\\\",;:@".contains(&b))
    };
    (a.len() <= 254 && part_ok(local) && part_ok(domain)).then(|| a.to_string())
}

/// A display name: atoms when it is made of them, a quoted string when it is short ASCII,
/// encoded words otherwise (they cannot stand inside a quoted string).
fn phrase(name: &str) -> Vec<String> {
    let words = split_words(name);
    let joined = words.join(" ");
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    if words
        .iter()
        .all(|w| w.len() <= 200 && w.bytes().all(atext) && !w.contains("=?"))
    {
        words
    } else if joined.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && joined.len() <= 60
        && !joined.contains("=?")
    {
        let escaped = joined.replace('\\', "\\\\").replace('"', "\\\"");
        vec![format!("\"{escaped}\"")]
    } else {
        encoded_words(&joined)
    }
}

/// The Date header's value (RFC 5322, UTC); instants outside years 1970–9999 are clamped.
pub fn rfc5322_date(secs: i64) -> String {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    rfc5322_date_of(&DateTime::from_timestamp(secs.clamp(0, LAST), 0).unwrap_or_default())
}

/// The Date header's value of `t` in its own offset from UTC.
pub fn rfc5322_date_of<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// A UTF-8 text part, quoted-printable; ends without the line break before the delimiter.
pub fn text_part(out: &mut String, content_type: &str, text: &str) {
    out.push_str(&format!(
        "Content-Type: {content_type}; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ));
    out.push_str(&quoted_printable(text));
}

/// Quoted-printable (RFC 2045 §6.7) of UTF-8 text with line ends normalised to CRLF:
/// encoded lines of at most 76 characters, `=` always escaped. The ticket and statistics
/// messages use it; their bytes must not change, since a message's size is part of what
/// the mailbox has told clients.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    for (n, line) in normalised.split('\n').enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let mut qp = QpLine::new(&mut out);
        for (i, &b) in line.as_bytes().iter().enumerate() {
            let last = i + 1 == line.len();
            // A line's last token may reach column 76: no soft break follows it.
            qp.push(&[b], !qp_literal(b, last), if last { 76 } else { 75 });
        }
    }
    out
}

/// Quoted-printable for mail that leaves through relays to the customer (the rewritten
/// reply): lines split at LF (a CR before it dropped, a lone CR kept as `=0D`), a
/// character's bytes never split over two lines, and a leading `From ` escaped, which mbox
/// tools on the way would mangle. Encoded lines of at most 76 characters.
pub fn quoted_printable_for_relay(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut qp = QpLine::new(&mut out);
        for (k, c) in line.char_indices() {
            let mut buf = [0u8; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            let last = k + c.len_utf8() == line.len();
            let from = k == 0 && line.starts_with("From ");
            let escaped = from || bytes.len() > 1 || !qp_literal(bytes[0], last);
            qp.push(bytes, escaped, 75);
        }
    }
    out
}

/// A byte that stands as itself in quoted-printable: printable ASCII but `=`, and blanks
/// not at the line's end (trailing white space would be lost in transport).
fn qp_literal(b: u8, last_in_line: bool) -> bool {
    matches!(b, 33..=60 | 62..=126) || (!last_in_line && (b == b' ' || b == b'\t'))
}

/// One quoted-printable line being written: a soft break (`=` CRLF) goes before a token
/// that would pass its column limit.
struct QpLine<'o> {
    out: &'o mut String,
    column: usize,
}

impl<'o> QpLine<'o> {
    fn new(out: &'o mut String) -> Self {
        QpLine { out, column: 0 }
    }

    /// `bytes` as one token, literal or as `=XX` escapes, not split by a soft break.
    fn push(&mut self, bytes: &[u8], escaped: bool, limit: usize) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let width = if escaped {
            3 * bytes.len()
        } else {
            bytes.len()
        };
        if self.column + width > limit {
            self.out.push_str("=\r\n");
            self.column = 0;
        }
        for &b in bytes {
            if escaped {
                self.out.push('=');
                self.out.push(HEX[usize::from(b >> 4)] as char);
                self.out.push(HEX[usize::from(b & 15)] as char);
            } else {
                self.out.push(b as char);
            }
        }
        self.column += width;
    }
}

/// One attached file, base64 in lines of 76; ends without a line break.
pub fn attachment_part(out: &mut String, name: &str, content_type: &str, bytes: &[u8]) {
    let name = file_name(name);
    let mut h = Header::default();
    let mut ct = vec![format!("{};", media_type(content_type))];
    ct.extend(name_parameter("name", &name));
    h.field("Content-Type", ct);
    h.field("Content-Transfer-Encoding", vec!["base64".into()]);
    let mut cd = vec!["attachment;".to_string()];
    cd.extend(filename_parameter(&name));
    h.field("Content-Disposition", cd);
    out.push_str(&h.finish());
    base64_lines(out, bytes);
}

/// `bytes` in base64, lines of 76; ends without a line break.
pub fn base64_lines(out: &mut String, bytes: &[u8]) {
    let encoded = BASE64.encode(bytes);
    for (n, line) in encoded.as_bytes().chunks(76).enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
    }
}

/// The stored name on one line, without path separators; `attachment` when empty.
pub fn file_name(name: &str) -> String {
    let name = one_line(&name.replace(['/', '\\'], "_"));
    if name.is_empty() {
        "attachment".into()
    } else {
        name
    }
}

/// `type/subtype` of the stored content type when both are MIME tokens, else
/// `application/octet-stream`; parameters are dropped so nothing unchecked reaches the part.
fn media_type(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    match essence.split_once('/') {
        Some((t, s)) if token(t) && token(s) => essence.to_ascii_lowercase(),
        _ => "application/octet-stream".into(),
    }
}

/// A name that may stand in a quoted parameter as it is. `=` is excluded so no parameter
/// can spell a boundary.
fn plain_file_name(name: &str) -> bool {
    name.len() <= 60
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && !b"\"\\=".contains(&b))
}

/// The Content-Type `name` parameter: quoted, or as encoded words inside the quotes (what
/// clients without RFC 2231 understand).
fn name_parameter(attribute: &str, name: &str) -> Vec<String> {
    if plain_file_name(name) {
        return vec![format!("{attribute}=\"{name}\"")];
    }
    // Shorter words than elsewhere leave room for `name="` and the closing quote.
    let mut tokens = encoded_words_of(name, 39);
    if let Some(first) = tokens.first_mut() {
        *first = format!("{attribute}=\"{first}");
    }
    if let Some(last) = tokens.last_mut() {
        last.push('"');
    }
    tokens
}

/// The Content-Disposition `filename` parameter: quoted, or RFC 2231 `filename*` (UTF-8,
/// percent-encoded, split into numbered sections when long).
fn filename_parameter(name: &str) -> Vec<String> {
    if plain_file_name(name) {
        return vec![format!("filename=\"{name}\"")];
    }
    let sections = percent_sections(name, 56);
    if sections.len() == 1 {
        return vec![format!("filename*=utf-8''{}", sections[0])];
    }
    let last = sections.len() - 1;
    sections
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let charset = if n == 0 { "utf-8''" } else { "" };
            let sep = if n == last { "" } else { ";" };
            format!("filename*{n}*={charset}{s}{sep}")
        })
        .collect()
}

/// RFC 2231 percent encoding of `s`, in sections of at most `width` characters. A
/// character's escapes stay in one section: readers such as mail-parser decode each
/// section on its own, and a character cut in two would come out as two replacement
/// characters.
fn percent_sections(s: &str, width: usize) -> Vec<String> {
    let attr_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
    let mut sections = vec![String::new()];
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let piece: String = c
            .encode_utf8(&mut buf)
            .bytes()
            .map(|b| {
                if attr_char(b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        match sections.last_mut() {
            Some(cur) if cur.len() + piece.len() <= width => cur.push_str(&piece),
            _ => sections.push(piece),
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_lines_stay_short_and_escape_equals_and_trailing_blanks() {
        let qp = quoted_printable(&format!("{} \n{}=\n", "a".repeat(200), "ö".repeat(40)));
        for line in qp.split("\r\n") {
            assert!(line.len() <= 76, "{line}");
        }
        assert!(qp.contains("=20\r\n") || qp.contains(" =\r\n=20"));
        assert!(!qp.contains("=_"));
        assert!(qp.contains("=3D"));
    }

    #[test]
    fn relay_quoted_printable_keeps_characters_whole_and_escapes_from() {
        let qp = quoted_printable_for_relay(&format!("{}ä= \nFrom here\n", "x".repeat(80)));
        for line in qp.split("\r\n") {
            assert!(line.len() <= 76, "{line}");
        }
        assert!(qp.contains("=C3=A4=3D=20\r\n=46rom here\r\n"), "{qp}");
        let long = "ü".repeat(40);
        let qp = quoted_printable_for_relay(&long);
        assert!(qp.split("=\r\n").all(|l| l.len() % 6 == 0), "{qp}");
    }

    #[test]
    fn long_file_names_keep_each_character_in_one_section() {
        use mail_parser::{MessageParser, MimeHeaders};
        let name = format!("abc{}.pdf", "€".repeat(40));
        let mut raw = String::from("MIME-Version: 1.0\r\n");
        attachment_part(&mut raw, &name, "application/pdf", b"%PDF");
        let sections: Vec<&str> = raw.split("filename*").skip(1).collect();
        assert!(sections.len() > 1, "{raw}");
        for section in sections {
            let section = section.trim_end().trim_end_matches(';');
            assert!(
                !section.ends_with("%E2") && !section.ends_with("%82"),
                "{raw}"
            );
        }
        let m = MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parses");
        assert_eq!(m.attachment_name(), Some(name.as_str()), "{raw}");
    }

    #[test]
    fn dates_in_utc_clamped_or_in_a_given_offset() {
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(rfc5322_date(-5), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
        let offset = chrono::FixedOffset::east_opt(3600).expect("offset");
        let t = DateTime::from_timestamp(1_700_000_000, 0)
            .expect("instant")
            .with_timezone(&offset);
        assert_eq!(rfc5322_date_of(&t), "Tue, 14 Nov 2023 23:13:20 +0100");
    }

    #[test]
    fn q_words_stay_short_and_split_between_characters() {
        let words = q_encoded_words(&"Grüße ".repeat(20));
        assert!(words.len() > 1);
        for w in &words {
            assert!(w.len() <= 72 && w.starts_with("=?utf-8?Q?"), "{w}");
            assert!(!w.contains("=C3?="), "{w}");
        }
        assert_eq!(q_encoded_words("a b=c"), ["=?utf-8?Q?a_b=3Dc?="]);
    }
}
