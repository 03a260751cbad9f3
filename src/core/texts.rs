//! The words the gateway says itself in its [`Locale`], and the placeholders agents and
//! admins write into texts (`@Nachname@`, `@Ticketnummer@`, …).
use serde::{Deserialize, Serialize};

use crate::core::model::Customer;

/// The language the gateway writes in: its own texts, the ticket views, the quote's
/// attribution lines. The configuration names one (`locale = "de"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    En,
    De,
}

pub fn default_autoresponder_text(locale: Locale) -> &'static str {
    match locale {
        Locale::En => {
            "Hello,\n\nthank you for your message. We have received it and opened ticket \
             @Ticketnummer@ in @Queue@ for it. Please keep the ticket number in the subject \
             when you write to us about this matter.\n\nThis message was sent automatically.\n"
        }
        Locale::De => {
            "Guten Tag,\n\nvielen Dank für Ihre Nachricht. Wir haben sie erhalten und unter der \
             Ticketnummer @Ticketnummer@ (@Queue@) aufgenommen. Bitte lassen Sie die \
             Ticketnummer im Betreff stehen, wenn Sie uns zu diesem Anliegen schreiben.\n\n\
             Diese Nachricht wurde automatisch erstellt.\n"
        }
    }
}

/// The salutation used for `@Briefanrede@` when a ticket has no customer.
pub fn neutral_salutation(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "Dear Sir or Madam",
        Locale::De => "Sehr geehrte Damen und Herren",
    }
}

/// Subject of a delivery status notification about a mail with `subject`.
pub fn delivery_failure_subject(locale: Locale, subject: &str) -> String {
    match locale {
        Locale::En => format!("Undelivered: {subject}"),
        Locale::De => format!("Unzustellbar: {subject}"),
    }
}

/// The human-readable part of a delivery status notification to the agent whose reply
/// (on `ticket`, with `subject`) did not reach `failures`: (recipient, what went wrong,
/// whether the gateway gave up retrying rather than the upstream refusing for good).
pub fn delivery_failure_text(
    locale: Locale,
    ticket: Option<i64>,
    subject: &str,
    failures: &[(&str, &str, bool)],
) -> String {
    let mut out = String::new();
    out.push_str(&match (locale, ticket) {
        (Locale::En, Some(n)) => {
            format!("Your reply on ticket #{n} did not reach the recipients below.\n\n")
        }
        (Locale::En, None) => "Your mail did not reach the recipients below.\n\n".into(),
        (Locale::De, Some(n)) => {
            format!("Ihre Antwort zu Ticket #{n} hat die folgenden Empfänger nicht erreicht.\n\n")
        }
        (Locale::De, None) => {
            "Ihre Nachricht hat die folgenden Empfänger nicht erreicht.\n\n".into()
        }
    });
    out.push_str(match locale {
        Locale::En => "Subject: ",
        Locale::De => "Betreff: ",
    });
    out.push_str(subject);
    out.push_str("\n\n");
    for (recipient, detail, gave_up) in failures {
        let why = match (locale, gave_up) {
            (Locale::En, false) => "refused for good",
            (Locale::En, true) => "still not delivered when the retry period ended",
            (Locale::De, false) => "endgültig abgelehnt",
            (Locale::De, true) => "bis zum Ende der Wiederholungsfrist nicht zugestellt",
        };
        out.push_str(&format!("  {recipient}: {why}\n    {detail}\n"));
    }
    out.push_str(match locale {
        Locale::En => {
            "\nThe ticket's history notes this. The headers of the mail are attached; \
             please check the address and send the reply again.\n"
        }
        Locale::De => {
            "\nDer Verlauf des Tickets vermerkt dies. Die Kopfzeilen der Nachricht sind \
             angehängt; bitte prüfen Sie die Adresse und senden Sie die Antwort erneut.\n"
        }
    });
    out
}

/// `@Briefanrede@` without a customer in `queue`: its own salutation, else the locale's.
pub fn queue_salutation(queue: &crate::core::model::Queue, locale: Locale) -> &str {
    if queue.salutation.is_empty() {
        neutral_salutation(locale)
    } else {
        &queue.salutation
    }
}

/// What the placeholders are filled with.
pub struct Placeholders<'a> {
    pub customer: Option<&'a Customer>,
    pub ticket_number: i64,
    pub queue: &'a str,
    /// `@Briefanrede@` without a customer (queue setting, else the locale's).
    pub neutral_salutation: &'a str,
}

/// Replaces every known `@Name@` placeholder; unknown `@…@` text stays as it is.
pub fn fill(text: &str, p: &Placeholders<'_>) -> String {
    let c = p.customer;
    let field = |f: fn(&Customer) -> &str| c.map(f).unwrap_or("").to_string();
    let salutation = match c {
        Some(c) if !c.letter_salutation.is_empty() => c.letter_salutation.clone(),
        _ => p.neutral_salutation.to_string(),
    };
    let values: [(&str, String); 11] = [
        ("@Firma1@", field(|c| &c.company1)),
        ("@Firma2@", field(|c| &c.company2)),
        ("@Anrede@", field(|c| &c.salutation)),
        ("@Nachname@", field(|c| &c.last_name)),
        ("@Strasse@", field(|c| &c.street)),
        ("@HausNr@", field(|c| &c.house_no)),
        ("@PLZ@", field(|c| &c.zip)),
        ("@Ort@", field(|c| &c.city)),
        ("@Briefanrede@", salutation),
        ("@Ticketnummer@", p.ticket_number.to_string()),
        ("@Queue@", p.queue.to_string()),
    ];
    let mut out = text.to_string();
    for (name, value) in values {
        if out.contains(name) {
            out = out.replace(name, &value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_with_and_without_customer() {
        let c = Customer {
            last_name: "Müller".into(),
            letter_salutation: "Sehr geehrter Herr Müller".into(),
            ..Default::default()
        };
        let mut p = Placeholders {
            customer: Some(&c),
            ticket_number: 42,
            queue: "Support",
            neutral_salutation: "Hallo",
        };
        assert_eq!(
            fill("@Briefanrede@, #@Ticketnummer@ @Nachname@ @Unknown@", &p),
            "Sehr geehrter Herr Müller, #42 Müller @Unknown@"
        );
        p.customer = None;
        assert_eq!(fill("@Briefanrede@ @Nachname@.", &p), "Hallo .");
    }
}
