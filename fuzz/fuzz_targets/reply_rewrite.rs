//! The rewrite of an agent's reply into the customer's mail: any bytes, no panic, and when
//! the rewrite succeeds every attachment the input has (as mail-parser sees it) is in the
//! output with the same content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mticket::core::mail::parse_mime;
use mticket::core::model::{Customer, ItemKind};
use mticket::core::reply::{QuoteEntry, ReplyPlan, rewrite};
use mticket::core::texts::{Locale, Placeholders};

fn attachments(raw: &[u8]) -> Vec<Vec<u8>> {
    match parse_mime(raw) {
        Some(message) => message
            .attachments()
            .map(|part| part.contents().to_vec())
            .collect(),
        None => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let customer = Customer {
        number: "10042".into(),
        first_name: "Erika".into(),
        last_name: "Muster".into(),
        letter_salutation: "Sehr geehrte Frau Muster".into(),
        emails: vec!["erika@kunde.example".into()],
        ..Customer::default()
    };
    let placeholders = Placeholders {
        customer: Some(&customer),
        ticket_number: 42,
        queue: "Support",
        neutral_salutation: "Sehr geehrte Damen und Herren",
    };
    let quote = [
        QuoteEntry {
            kind: ItemKind::Customer,
            from: "Erika Muster <erika@kunde.example>".into(),
            date: 1_795_687_200,
            text: "Der Drucker blinkt.\n> alt\n\nErika\n".into(),
            html: Some("<html><body><p>Der Drucker <b>blinkt</b>.</p></body></html>".into()),
        },
        QuoteEntry {
            kind: ItemKind::Reply,
            from: "Support <support@firma.example>".into(),
            date: 1_795_600_800,
            text: "Bitte neu starten.\n".into(),
            html: None,
        },
    ];
    let to = ["Erika Muster <erika@kunde.example>".to_string()];
    let cc = ["einkauf@kunde.example".to_string()];
    let references = ["a1b2c3d4@kunde.example".to_string()];
    let plan = ReplyPlan {
        from_name: "Kundendienst Müller GmbH",
        from_address: "support@firma.example",
        to: &to,
        cc: &cc,
        subject: "Re: [Support #42] Rückfrage für @Nachname@",
        message_id: "mt.42.r.7.00c0ffee@gw.firma.example",
        in_reply_to: Some("a1b2c3d4@kunde.example"),
        references: &references,
        date: 1_795_691_000,
        quote: &quote,
        placeholders: &placeholders,
        template: Some("Guten Tag @Briefanrede@, zu Ticket @Ticketnummer@:\n"),
        locale: Locale::De,
        utc_offset: 3600,
        ticket_number: 42,
    };
    let Ok(out) = rewrite(data, &plan) else {
        return;
    };
    let before = attachments(data);
    if before.is_empty() {
        return;
    }
    let mut after = attachments(&out);
    for (i, content) in before.iter().enumerate() {
        match after.iter().position(|c| c == content) {
            Some(at) => {
                after.swap_remove(at);
            }
            None => panic!(
                "attachment {i} ({} bytes) of the input is not in the output",
                content.len()
            ),
        }
    }
});
