//! Mail the gateway writes itself (autoresponses, out-of-office notes, delivery status
//! notifications): headers that keep loops away and threading that lets the customer's
//! answer find its ticket.
use std::time::SystemTime;

use lettre::message::header::{
    ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox, Message, SinglePart};

use crate::core::texts;
use crate::core::texts::Locale;

/// A header with a fixed name and free text, for the few lettre has no type for.
macro_rules! text_header {
    ($ty:ident, $name:literal) => {
        #[derive(Clone)]
        struct $ty(String);
        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($ty(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}
text_header!(AutoSubmitted, "Auto-Submitted");
text_header!(XLoop, "X-Loop");
text_header!(XTicketNumber, "X-Ticket-Number");
text_header!(Precedence, "Precedence");

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot use address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot build the mail: {0}")]
    Build(String),
}

/// An automatic answer (autoresponse or out-of-office note) to a customer mail.
pub struct AutoReply<'a> {
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub ticket_number: i64,
    /// The customer mail's Message-ID, for In-Reply-To/References.
    pub in_reply_to: Option<&'a str>,
    pub message_id: &'a str,
    pub loop_marker: &'a str,
}

/// A Message-ID (without brackets) that names the ticket and the kind of mail.
pub fn message_id(ticket_number: i64, kind: &str, hostname: &str) -> String {
    let nonce: u64 = rand::random();
    format!("mt.{ticket_number}.{kind}.{nonce:016x}@{hostname}")
}

fn mailbox(name: Option<&str>, addr: &str) -> Result<Mailbox, ComposeError> {
    let email = addr.parse().map_err(|e: lettre::address::AddressError| {
        ComposeError::Address(addr.to_string(), e.to_string())
    })?;
    Ok(Mailbox::new(
        name.filter(|n| !n.is_empty()).map(str::to_string),
        email,
    ))
}

pub fn auto_reply(r: &AutoReply<'_>) -> Result<Vec<u8>, ComposeError> {
    let mut builder = Message::builder()
        .from(mailbox(Some(r.from_name), r.from_address)?)
        .to(mailbox(None, r.to)?)
        .subject(r.subject)
        .date(SystemTime::now())
        .message_id(Some(format!("<{}>", r.message_id)))
        .header(AutoSubmitted("auto-replied".into()))
        .header(Precedence("bulk".into()))
        .header(XLoop(r.loop_marker.to_string()))
        .header(XTicketNumber(r.ticket_number.to_string()))
        .header(ContentType::TEXT_PLAIN);
    if let Some(id) = r.in_reply_to {
        builder = builder
            .in_reply_to(format!("<{id}>"))
            .references(format!("<{id}>"));
    }
    let message = builder
        .body(r.text.to_string())
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(message.formatted())
}

/// One recipient a mail the gateway sent did not reach.
#[derive(Debug, Clone)]
pub struct RecipientFailure {
    pub recipient: String,
    /// RFC 3463 status: from the upstream's reply (`5.1.1`), else its class (`5.0.0`);
    /// `4.4.7` when the retry period ended.
    pub status: String,
    /// The upstream's reply (`550 5.1.1 no such user`), when it gave one.
    pub smtp_reply: Option<String>,
    /// What went wrong, for people.
    pub detail: String,
    /// The gateway stopped retrying (rather than the upstream refusing for good).
    pub gave_up: bool,
}

/// A delivery status notification (RFC 3464) to the agent whose mail failed.
pub struct DeliveryStatus<'a> {
    pub locale: Locale,
    /// Our host name (`Reporting-MTA`).
    pub reporting_mta: &'a str,
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub message_id: &'a str,
    pub loop_marker: &'a str,
    pub ticket_number: Option<i64>,
    /// The failed mail, as it was handed to the upstream; its header block is attached.
    pub original: &'a [u8],
    /// When the failed mail entered the outbox (Unix seconds).
    pub arrival: i64,
    pub failures: &'a [RecipientFailure],
}

/// The RFC 3463 status an upstream's reply carries: the enhanced code at the start of its
/// text when that agrees with the reply code's class, else the class alone (`5.0.0`).
pub fn enhanced_status(code: u16, text: &str) -> String {
    let class = code / 100;
    let given = text.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = given.split('.').collect();
    let well_formed = parts.len() == 3
        && parts[0] == class.to_string()
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if well_formed && matches!(class, 4 | 5) {
        given.to_string()
    } else if class == 4 {
        "4.0.0".into()
    } else {
        "5.0.0".into()
    }
}

/// `multipart/report; report-type=delivery-status`: a text for people (in the locale),
/// the machine-readable `message/delivery-status`, and the failed mail's headers
/// (`text/rfc822-headers`).
pub fn delivery_status(d: &DeliveryStatus<'_>) -> Result<Vec<u8>, ComposeError> {
    let headers = header_block(d.original);
    let subject = mail_parser::MessageParser::default()
        .parse_headers(headers)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    let failures: Vec<(&str, &str, bool)> = d
        .failures
        .iter()
        .map(|f| (f.recipient.as_str(), f.detail.as_str(), f.gave_up))
        .collect();
    let text = texts::delivery_failure_text(d.locale, d.ticket_number, &subject, &failures);

    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut status = format!("Reporting-MTA: dns; {}\r\n", d.reporting_mta);
    if let Some(at) = chrono::DateTime::from_timestamp(d.arrival, 0) {
        status.push_str(&format!("Arrival-Date: {}\r\n", at.to_rfc2822()));
    }
    for f in d.failures {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.recipient, f.status
        ));
        match &f.smtp_reply {
            Some(reply) => {
                status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(reply)))
            }
            None => status.push_str(&format!(
                "Diagnostic-Code: X-mticket; {}\r\n",
                one_line(&f.detail)
            )),
        }
    }

    let boundary = format!("mticket-report-{:016x}", rand::random::<u64>());
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(&SinglePart::plain(text).formatted());
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Type: message/delivery-status\r\n\r\n");
    body.extend_from_slice(status.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Type: text/rfc822-headers\r\n\r\n");
    body.extend_from_slice(headers);
    if !headers.ends_with(b"\n") {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
    let encoding = if body.is_ascii() {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::EightBit
    };
    let content_type = ContentType::parse(&format!(
        "multipart/report; report-type=delivery-status; boundary={boundary}"
    ))
    .map_err(|e| ComposeError::Build(e.to_string()))?;
    let report = SinglePart::builder()
        .header(content_type)
        .body(Body::dangerous_pre_encoded(body, encoding));
    let mut builder = Message::builder()
        .from(mailbox(Some(d.from_name), d.from_address)?)
        .to(mailbox(None, d.to)?)
        .subject(texts::delivery_failure_subject(d.locale, &subject))
        .date(SystemTime::now())
        .message_id(Some(format!("<{}>", d.message_id)))
        .header(AutoSubmitted("auto-replied".into()))
        .header(XLoop(d.loop_marker.to_string()));
    if let Some(n) = d.ticket_number {
        builder = builder.header(XTicketNumber(n.to_string()));
    }
    let message = builder
        .singlepart(report)
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(message.formatted())
}

/// The header block of a mail, through the line end before the empty line.
fn header_block(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 1));
    &raw[..end.unwrap_or(raw.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reply_headers() {
        let raw = auto_reply(&AutoReply {
            from_name: "Kundendienst",
            from_address: "support@example.test",
            to: "kunde@kunde.example",
            subject: "[Support #7] Grüße",
            text: "Danke für Ihre Nachricht.",
            ticket_number: 7,
            in_reply_to: Some("abc@kunde.example"),
            message_id: "mt.7.ar.1@localhost",
            loop_marker: "mticket@localhost",
        })
        .unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("[Support #7] Grüße"));
        assert_eq!(parsed.message_id(), Some("mt.7.ar.1@localhost"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("abc@kunde.example"));
        assert_eq!(
            parsed.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(
            parsed.header_raw("X-Loop").map(str::trim),
            Some("mticket@localhost")
        );
        assert_eq!(
            parsed.body_text(0).as_deref().map(str::trim),
            Some("Danke für Ihre Nachricht.")
        );
    }

    use mail_parser::MimeHeaders;

    fn failed_reply() -> Vec<u8> {
        b"From: Kundendienst <support@example.test>\r\n\
To: kunde@kunde.example, chef@kunde.example\r\n\
Subject: =?utf-8?q?=5BSupport_=237=5D_Re=3A_Gr=C3=BC=C3=9Fe?=\r\n\
Message-ID: <mt.7.reply.1@gw.test>\r\n\
\r\n\
Guten Tag, hier die Antwort.\r\n"
            .to_vec()
    }

    #[test]
    fn delivery_status_parses_back() {
        let original = failed_reply();
        let failures = [
            RecipientFailure {
                recipient: "kunde@kunde.example".into(),
                status: enhanced_status(550, "5.1.1 no such user"),
                smtp_reply: Some("550 5.1.1 no such user".into()),
                detail: "upstream smtp.test:25 replied 550: 5.1.1 no such user".into(),
                gave_up: false,
            },
            RecipientFailure {
                recipient: "chef@kunde.example".into(),
                status: "4.4.7".into(),
                smtp_reply: Some("451 4.3.0 try\r\n later".into()),
                detail: "upstream smtp.test:25 replied 451: 4.3.0 try later".into(),
                gave_up: true,
            },
        ];
        let raw = delivery_status(&DeliveryStatus {
            locale: Locale::De,
            reporting_mta: "gw.test",
            from_name: "Kundendienst",
            from_address: "support@example.test",
            to: "anna@example.test",
            message_id: "mt.7.dsn.1@gw.test",
            loop_marker: "mticket@gw.test",
            ticket_number: Some(7),
            original: &original,
            arrival: 1_700_000_000,
            failures: &failures,
        })
        .unwrap();
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("Unzustellbar: [Support #7] Re: Grüße"));
        assert_eq!(
            m.to().unwrap().first().unwrap().address(),
            Some("anna@example.test")
        );
        assert_eq!(
            m.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        let ct = m.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let parts: Vec<_> = m.parts.iter().skip(1).collect();
        assert_eq!(parts.len(), 3, "{}", String::from_utf8_lossy(&raw));
        let kind = |p: &mail_parser::MessagePart| {
            let ct = p.content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        };
        assert_eq!(kind(parts[0]), "text/plain");
        assert_eq!(kind(parts[1]), "message/delivery-status");
        assert_eq!(kind(parts[2]), "text/rfc822-headers");

        let text = m.body_text(0).unwrap();
        assert!(text.contains("Ticket #7"), "{text}");
        assert!(
            text.contains("kunde@kunde.example: endgültig abgelehnt"),
            "{text}"
        );
        assert!(text.contains("5.1.1 no such user"), "{text}");
        assert!(text.contains("chef@kunde.example: bis zum Ende"), "{text}");

        let contents =
            |p: &mail_parser::MessagePart| String::from_utf8_lossy(p.contents()).into_owned();
        let status = contents(parts[1]);
        for line in [
            "Reporting-MTA: dns; gw.test",
            "Final-Recipient: rfc822; kunde@kunde.example",
            "Action: failed",
            "Status: 5.1.1",
            "Diagnostic-Code: smtp; 550 5.1.1 no such user",
            "Final-Recipient: rfc822; chef@kunde.example",
            "Status: 4.4.7",
            "Diagnostic-Code: smtp; 451 4.3.0 try later",
        ] {
            assert!(status.contains(line), "{line:?} missing:\n{status}");
        }
        let headers = contents(parts[2]);
        assert!(
            headers.contains("Message-ID: <mt.7.reply.1@gw.test>"),
            "{headers}"
        );
        assert!(!headers.contains("hier die Antwort"), "{headers}");
    }

    #[test]
    fn enhanced_status_codes() {
        assert_eq!(enhanced_status(550, "5.1.1 no such user"), "5.1.1");
        assert_eq!(enhanced_status(554, "5.7.1"), "5.7.1");
        assert_eq!(enhanced_status(550, "no such user"), "5.0.0");
        assert_eq!(enhanced_status(550, "4.1.1 mismatched class"), "5.0.0");
        assert_eq!(enhanced_status(451, "4.3.0 later"), "4.3.0");
        assert_eq!(enhanced_status(421, ""), "4.0.0");
        assert_eq!(enhanced_status(550, "5.1111.1 x"), "5.0.0");
    }
}
