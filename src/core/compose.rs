//! Mail the gateway writes itself (autoresponses, out-of-office notes): headers that keep
//! loops away and threading that lets the customer's answer find its ticket.
use std::time::SystemTime;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};

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

pub fn auto_reply(r: &AutoReply<'_>) -> Result<Vec<u8>, ComposeError> {
    let mailbox = |name: Option<&str>, addr: &str| -> Result<Mailbox, ComposeError> {
        let email = addr.parse().map_err(|e: lettre::address::AddressError| {
            ComposeError::Address(addr.to_string(), e.to_string())
        })?;
        Ok(Mailbox::new(
            name.filter(|n| !n.is_empty()).map(str::to_string),
            email,
        ))
    };
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
}
