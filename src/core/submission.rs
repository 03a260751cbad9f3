//! Decisions about an agent's mail that need no store: who a reply goes to and which CC
//! list the ticket keeps, and the texts that refuse a mail.
use crate::core::commands::Changes;
use crate::core::model::ItemKind;

/// Where a reply goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// The `To:` header.
    pub to: Vec<String>,
    /// The `Cc:` header, which is also the ticket's CC list afterwards.
    pub cc: Vec<String>,
    /// The SMTP envelope: the headers' addresses and the agent's Bcc.
    pub envelope: Vec<String>,
}

/// What the agent addressed, as lower-case addresses.
pub struct Addressed<'a> {
    pub to: &'a [String],
    pub cc: &'a [String],
    /// RCPT TO of the submission (includes Bcc).
    pub envelope: &'a [String],
}

/// The recipients of a reply: internal addresses (`is_internal`: the comment address, every
/// queue address) never go out; the agent's own address stays out of the headers (it gets
/// its copy like a Bcc); `#cc` edits the CC list. With no `To:` left, the reply goes to
/// `fallback` (the ticket's creator).
pub fn recipients(
    a: &Addressed<'_>,
    agent_address: &str,
    cc_edits: &Changes,
    fallback: &str,
    is_internal: &dyn Fn(&str) -> bool,
) -> Recipients {
    let agent = agent_address.to_ascii_lowercase();
    let removed = |x: &str| cc_edits.remove.iter().any(|r| r.eq_ignore_ascii_case(x));
    let mut seen: Vec<String> = Vec::new();
    let mut pick = |list: &[String], skip_agent: bool| -> Vec<String> {
        let mut out = Vec::new();
        for addr in list {
            let addr = addr.trim().to_ascii_lowercase();
            if addr.is_empty() || is_internal(&addr) || seen.contains(&addr) {
                continue;
            }
            if skip_agent && addr == agent {
                continue;
            }
            seen.push(addr.clone());
            out.push(addr);
        }
        out
    };
    let mut to = pick(a.to, true);
    let mut cc = pick(a.cc, true);
    cc.extend(pick(&cc_edits.add, true));
    cc.retain(|c| !removed(c));
    if to.is_empty() && !fallback.is_empty() && !is_internal(fallback) {
        to.push(fallback.to_ascii_lowercase());
    }
    let mut envelope: Vec<String> = to.iter().chain(&cc).cloned().collect();
    for addr in a.envelope {
        let addr = addr.trim().to_ascii_lowercase();
        if !addr.is_empty() && !is_internal(&addr) && !removed(&addr) && !envelope.contains(&addr) {
            envelope.push(addr);
        }
    }
    Recipients { to, cc, envelope }
}

/// One item that came in after the version the agent answered.
pub struct News<'a> {
    pub kind: ItemKind,
    /// The customer's address, or the agent's login for a reply.
    pub who: &'a str,
    pub date: &'a str,
}

/// The refusal when the ticket moved on since the version the agent answered.
pub fn collision_text(number: i64, news: &[News<'_>], assignee: Option<&str>) -> String {
    let mut text = format!("Ticket #{number} has news since the mail you answered:\n");
    for n in news {
        let what = match n.kind {
            ItemKind::Customer => format!("a customer mail from {}", n.who),
            ItemKind::Reply => format!("a reply by {}", n.who),
            ItemKind::Comment => format!("a comment by {}", n.who),
        };
        text.push_str(&format!("- {what} ({})\n", n.date));
    }
    match assignee {
        Some(a) => text.push_str(&format!("{a} is working on the ticket.\n")),
        None => text.push_str("Nobody is assigned to the ticket.\n"),
    }
    text.push_str(
        "Read the news and answer again, or put #force on the first line to send this anyway.",
    );
    text
}

/// The refusal when the agent's text announces an attachment the mail does not have.
pub fn missing_attachment_text(word: &str) -> String {
    format!(
        "Your text says \"{word}\" but the mail has no attachment.\n\
         Attach the file and send the mail again, or put #noattachcheck on the first line \
         to send it without one."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn internal_addresses_never_go_out_and_cc_edits_apply() {
        let internal = |a: &str| a == "comment@gw.test" || a == "support@shop.test";
        let r = recipients(
            &Addressed {
                to: &s(&["Kunde@Kunde.example", "support@shop.test"]),
                cc: &s(&["chef@kunde.example", "anna@shop.test", "alt@kunde.example"]),
                envelope: &s(&[
                    "kunde@kunde.example",
                    "comment@gw.test",
                    "anna@shop.test",
                    "archiv@shop.test",
                    "alt@kunde.example",
                ]),
            },
            "anna@shop.test",
            &Changes {
                add: s(&["neu@kunde.example"]),
                remove: s(&["ALT@kunde.example"]),
            },
            "creator@kunde.example",
            &internal,
        );
        assert_eq!(r.to, s(&["kunde@kunde.example"]));
        assert_eq!(r.cc, s(&["chef@kunde.example", "neu@kunde.example"]));
        assert_eq!(
            r.envelope,
            s(&[
                "kunde@kunde.example",
                "chef@kunde.example",
                "neu@kunde.example",
                "anna@shop.test",
                "archiv@shop.test",
            ])
        );
    }

    #[test]
    fn without_a_to_the_creator_gets_it() {
        let r = recipients(
            &Addressed {
                to: &s(&["support@shop.test"]),
                cc: &[],
                envelope: &s(&["support@shop.test"]),
            },
            "anna@shop.test",
            &Changes::default(),
            "kunde@kunde.example",
            &|a: &str| a == "support@shop.test",
        );
        assert_eq!(r.to, s(&["kunde@kunde.example"]));
        assert_eq!(r.envelope, s(&["kunde@kunde.example"]));
    }

    #[test]
    fn refusal_texts_name_what_happened() {
        let t = collision_text(
            7,
            &[
                News {
                    kind: ItemKind::Customer,
                    who: "kunde@kunde.example",
                    date: "2026-11-27 10:00",
                },
                News {
                    kind: ItemKind::Reply,
                    who: "ben",
                    date: "2026-11-27 10:05",
                },
            ],
            Some("ben"),
        );
        assert!(t.contains("a reply by ben (2026-11-27 10:05)"), "{t}");
        assert!(t.contains("ben is working on the ticket"), "{t}");
        assert!(t.contains("#force"), "{t}");
        assert!(missing_attachment_text("anbei").contains("#noattachcheck"));
    }
}
