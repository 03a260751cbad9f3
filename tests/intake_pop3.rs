//! Intake over POP3 from a real Dovecot, autoresponses to a real SMTP sink: the varied
//! corpus becomes exactly the expected tickets; follow-ups by tag and by In-Reply-To;
//! the participant check; the per-sender cap; queues that answer each other; disabled
//! queues and wrong passwords.
mod support;

use std::time::Duration;

use serde_json::Value;
use support::corpus::{self, KNOWN_CUSTOMER, QUEUE, QUEUE_ADDRESS, SECOND_QUEUE_ADDRESS};
use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options};
use support::sink::Sink;

const WAIT: Duration = Duration::from_secs(60);

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn history_has(ticket: &Value, field: &str, needle: &str) -> bool {
    ticket["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["field"] == field && h["new"].as_str().unwrap_or("").contains(needle))
}

fn setup(opts: Options) -> (Dovecot, Sink, Gateway) {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "secret-support");
    // The queue's one login serves POP3 and SMTP, as with a real mail account.
    let sink = Sink::start_with_auth("support", "secret-support");
    let gateway = Gateway::new(opts);
    gateway.cli_ok(&[
        "customer",
        "add",
        "--number",
        "4711",
        "--last-name",
        "Kunde",
        "--emails",
        KNOWN_CUSTOMER,
    ]);
    gateway.add_queue(
        QUEUE,
        QUEUE_ADDRESS,
        Some((&dovecot, "support", "secret-support")),
        Some(&sink),
        &[],
    );
    // The second queue address exists, so mail from it is recognised as ours.
    gateway.add_queue("Sales", SECOND_QUEUE_ADDRESS, None, Some(&sink), &[]);
    (dovecot, sink, gateway)
}

#[test]
fn varied_mailbox_becomes_the_expected_tickets() {
    let (dovecot, sink, mut gateway) = setup(Options {
        max_per_sender_per_day: 100,
        ..Options::default()
    });
    let mails = corpus::varied();
    assert!(mails.len() >= 40);
    for m in &mails {
        dovecot.deliver("support", &m.raw);
    }
    gateway.start();
    gateway.wait_for("the mailbox to be emptied", WAIT, || {
        (dovecot.count("support") == 0).then_some(())
    });
    let tickets = gateway.wait_for("all tickets", WAIT, || {
        let t = gateway.tickets(&[]);
        (t.len() == mails.len()).then_some(t)
    });
    assert_eq!(gateway.customer_items(), mails.len());

    // Every ticket: subject as sent, status new, creator = sender, one customer item.
    for m in &mails {
        let subject = if m.subject.is_empty() {
            "(no subject)"
        } else {
            m.subject
        };
        let t = tickets
            .iter()
            .find(|t| t["subject"] == subject)
            .unwrap_or_else(|| panic!("no ticket for {} ({})", m.name, m.subject));
        let detail = gateway.ticket(t["number"].as_i64().unwrap());
        assert_eq!(detail["status"], "new", "{}", m.name);
        assert_eq!(detail["queue"], QUEUE);
        if let Some(sender) = m.sender {
            assert_eq!(detail["creator_address"], sender, "{}", m.name);
        }
        let items = detail["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{}", m.name);
        assert_eq!(items[0]["kind"], "customer");
        // The text shown is the mail's own, however the store keeps it (line ends aside:
        // POP3 delivers CRLF).
        let lf = |s: &str| s.replace("\r\n", "\n");
        assert_eq!(
            lf(items[0]["text"].as_str().unwrap()),
            lf(&mticket::core::mail::parse(&m.raw).text),
            "{}",
            m.name
        );
        assert_eq!(
            items[0]["attachments"].as_array().unwrap().len(),
            m.attachments,
            "{}",
            m.name
        );
        // Customer assignment by the From address (the one DMARC vouches for): a
        // Reply-To naming the customer is not enough.
        let is_known = m.sender == Some(KNOWN_CUSTOMER) && m.name != "reply-to-known";
        assert_eq!(
            detail["customer"]["number"] == "4711",
            is_known,
            "{}",
            m.name
        );
        let answered = history_has(&detail, "autoresponse", "sent to");
        assert_eq!(answered, m.autoresponse, "{}: {}", m.name, m.what);
    }

    // The sink gets exactly the due autoresponses, shaped as the seed says.
    let due = mails.iter().filter(|m| m.autoresponse).count();
    sink.wait_for(due, WAIT);
    gateway.wait_until_sent();
    let sent = sink.messages();
    assert_eq!(sent.len(), due, "autoresponses sent");
    for msg in &sent {
        let raw = String::from_utf8_lossy(&msg.raw);
        assert_eq!(header(&raw, "Auto-Submitted"), Some("auto-replied"));
        assert!(header(&raw, "From").unwrap().contains(QUEUE_ADDRESS));
        assert_eq!(msg.mail_from, QUEUE_ADDRESS);
        let number: i64 = header(&raw, "X-Ticket-Number").unwrap().parse().unwrap();
        let t = gateway.ticket(number);
        let subject = header(&raw, "Subject").unwrap();
        // Encoded words aside, the tag leads and the rest is the original subject.
        assert!(
            subject.starts_with(&format!("[{QUEUE} #{number}]")) || subject.starts_with("=?"),
            "{subject}"
        );
        assert_eq!(
            msg.rcpt_tos,
            vec![t["creator_address"].as_str().unwrap().to_string()]
        );
    }
    gateway.stop();
}

#[test]
fn follow_ups_by_tag_and_reference_and_the_participant_check() {
    let (dovecot, sink, mut gateway) = setup(Options::default());
    let first = corpus::varied()
        .into_iter()
        .find(|m| m.sender == Some(KNOWN_CUSTOMER))
        .unwrap();
    dovecot.deliver("support", &first.raw);
    gateway.start();
    let t = gateway.wait_for("ticket 1", WAIT, || gateway.tickets(&[]).first().cloned());
    let number = t["number"].as_i64().unwrap();
    gateway.wait_for("the autoresponse", WAIT, || {
        (!sink.messages().is_empty()).then_some(())
    });

    // The customer answers with the tag; someone else answers with the tag; the customer
    // answers the autoresponse by In-Reply-To only.
    dovecot.deliver(
        "support",
        &corpus::followup_by_tag(QUEUE, number, KNOWN_CUSTOMER, 1),
    );
    gateway.wait_for("tag follow-up", WAIT, || {
        (gateway.ticket(number)["items"].as_array().unwrap().len() == 2).then_some(())
    });
    dovecot.deliver(
        "support",
        &corpus::followup_by_tag(QUEUE, number, "stranger@elsewhere.example", 2),
    );
    let stranger = gateway.wait_for("stranger's ticket", WAIT, || {
        gateway
            .tickets(&[])
            .into_iter()
            .find(|t| t["creator_address"] == "stranger@elsewhere.example")
    });
    let stranger = gateway.ticket(stranger["number"].as_i64().unwrap());
    assert_ne!(stranger["number"].as_i64().unwrap(), number);
    assert!(
        history_has(&stranger, "note", &format!("#{number}")),
        "{stranger:#}"
    );

    let autoresponse = String::from_utf8_lossy(&sink.messages()[0].raw).to_string();
    let ar_id = header(&autoresponse, "Message-ID")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_string();
    dovecot.deliver(
        "support",
        &corpus::followup_by_in_reply_to(&ar_id, KNOWN_CUSTOMER, 3),
    );
    gateway.wait_for("reference follow-up", WAIT, || {
        (gateway.ticket(number)["items"].as_array().unwrap().len() == 3).then_some(())
    });

    let detail = gateway.ticket(number);
    assert_eq!(gateway.tickets(&[]).len(), 2);
    assert_eq!(detail["customer"]["number"], "4711");
    // Follow-ups get no autoresponse: one for each of the two tickets.
    gateway.wait_until_sent();
    assert_eq!(sink.messages().len(), 2);

    // A closed ticket is reopened by the customer's next mail.
    gateway.cli_ok(&[
        "ticket",
        "merge",
        &stranger["number"].to_string(),
        &number.to_string(),
    ]);
    let merged = gateway.ticket(stranger["number"].as_i64().unwrap());
    assert_eq!(merged["status"], "merged");
    assert_eq!(gateway.ticket(number)["items"].as_array().unwrap().len(), 4);
    gateway.stop();
}

#[test]
fn cap_and_two_queues_answering_each_other() {
    let (dovecot, sink, mut gateway) = setup(Options::default());
    // Seven new tickets from one sender in a day: five autoresponses.
    for n in 0..7 {
        let raw = format!(
            "From: busy@kunden.example\r\nTo: {QUEUE_ADDRESS}\r\nSubject: Frage {n}\r\n\
             Message-ID: <cap-{n}@kunden.example>\r\nDate: Thu, 26 Nov 2026 10:00:0{n} +0000\r\n\r\nHallo {n}\r\n"
        );
        dovecot.deliver("support", raw.as_bytes());
    }
    gateway.start();
    gateway.wait_for("7 tickets", WAIT, || {
        (gateway.tickets(&[]).len() == 7).then_some(())
    });
    sink.wait_for(5, WAIT);
    gateway.wait_until_sent();
    assert_eq!(sink.messages().len(), 5);
    let capped = gateway
        .tickets(&[])
        .iter()
        .filter(|t| {
            history_has(
                &gateway.ticket(t["number"].as_i64().unwrap()),
                "autoresponse",
                "automatic answers",
            )
        })
        .count();
    assert_eq!(capped, 2);

    // A second gateway's queue writes to ours; our autoresponse goes back into its
    // mailbox; it must not answer the autoresponse.
    let dovecot2 = Dovecot::start();
    dovecot2.add_user("other", "secret-other");
    let sink2 = Sink::start_with_auth("other", "secret-other");
    let mut other = Gateway::new(Options::default());
    other.add_queue(
        "Other",
        "other@other.example",
        Some((&dovecot2, "other", "secret-other")),
        Some(&sink2),
        &[],
    );
    other.start();
    let before = sink.messages().len();
    dovecot.deliver(
        "support",
        b"From: other@other.example\r\nTo: support@example.test\r\nSubject: Ping\r\nMessage-ID: <ping@other.example>\r\n\r\nping\r\n",
    );
    sink.wait_for(before + 1, WAIT);
    let answer = sink.messages().pop().unwrap();
    assert_eq!(answer.rcpt_tos, vec!["other@other.example".to_string()]);
    dovecot2.deliver("other", &answer.raw);
    other.wait_for("the autoresponse taken in", WAIT, || {
        (other.tickets(&[]).len() == 1).then_some(())
    });
    other.wait_until_sent();
    assert!(
        sink2.messages().is_empty(),
        "the other queue answered our autoresponse"
    );
    let t = other.ticket(other.tickets(&[])[0]["number"].as_i64().unwrap());
    assert!(history_has(&t, "autoresponse", "not sent"), "{t:#}");
    other.stop();
    gateway.stop();
}

#[test]
fn disabled_queue_is_not_polled_and_a_wrong_password_is_reported() {
    let dovecot = Dovecot::start();
    for u in ["quiet", "broken", "fine"] {
        dovecot.add_user(u, "right-password");
        dovecot.deliver(
            u,
            format!("From: a@b.example\r\nTo: {u}@example.test\r\nSubject: to {u}\r\n\r\nx\r\n")
                .as_bytes(),
        );
    }
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue(
        "Quiet",
        "quiet@example.test",
        Some((&dovecot, "quiet", "right-password")),
        None,
        &["--disabled", "--no-autoresponder"],
    );
    gateway.add_queue(
        "Broken",
        "broken@example.test",
        Some((&dovecot, "broken", "wrong-password")),
        None,
        &["--no-autoresponder"],
    );
    gateway.add_queue(
        "Fine",
        "fine@example.test",
        Some((&dovecot, "fine", "right-password")),
        None,
        &["--no-autoresponder"],
    );
    gateway.start();
    gateway.wait_for("the good queue's ticket", WAIT, || {
        (dovecot.count("fine") == 0).then_some(())
    });
    let queues = gateway.wait_for("the failed poll in queue list", WAIT, || {
        let q = gateway.json(&["queue", "list"]);
        let broken = q
            .as_array()?
            .iter()
            .find(|q| q["name"] == "Broken")?
            .clone();
        (broken["last_poll"]["ok"] == false).then_some(q)
    });
    let broken = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "Broken")
        .unwrap();
    let message = broken["last_poll"]["message"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(message.contains("auth"), "{message}");
    assert!(
        !queues.to_string().contains("right-password")
            && !queues.to_string().contains("wrong-password")
    );
    let quiet = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "Quiet")
        .unwrap();
    assert!(quiet["last_poll"].is_null());
    // The queues' polls start together: once the good queue was polled again, a poll of
    // the disabled one would have taken its mail.
    let fine_polled = |q: &serde_json::Value| -> Option<i64> {
        q.as_array()?.iter().find(|q| q["name"] == "Fine")?["last_poll"]["at"].as_i64()
    };
    let polled = fine_polled(&queues).expect("the good queue was polled");
    gateway.wait_for("another poll of the good queue", WAIT, || {
        fine_polled(&gateway.json(&["queue", "list"])).filter(|&at| at > polled)
    });
    assert_eq!(dovecot.count("quiet"), 1);
    assert_eq!(dovecot.count("broken"), 1);
    let tickets = gateway.tickets(&[]);
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["queue"], "Fine");
    let log = gateway.log();
    assert!(
        log.contains("polling failed") && log.contains("Broken"),
        "{log}"
    );
    assert!(!log.contains("wrong-password") && !log.contains("right-password"));
    gateway.stop();
}

/// A mailbox of more than one chunk: committed mails leave through a session beside the
/// poll while the rest streams in (Dovecot logs a session that retrieved nothing and
/// deleted 1,024), and every mail becomes exactly one ticket.
#[test]
fn a_large_mailbox_is_deleted_in_chunks_beside_the_poll() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "secret-support");
    let sink = Sink::start_with_auth("support", "secret-support");
    let mails: Vec<Vec<u8>> = (0..1100)
        .map(|i| {
            format!(
                "From: kunde{i}@kunden.example\r\nTo: {QUEUE_ADDRESS}\r\nSubject: Frage {i}\r\n\
                 Message-ID: <chunk-{i}@kunden.example>\r\n\r\nHallo, Frage {i}.\r\n"
            )
            .into_bytes()
        })
        .collect();
    dovecot.deliver_many("support", mails.iter().map(Vec::as_slice));
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue(
        QUEUE,
        QUEUE_ADDRESS,
        Some((&dovecot, "support", "secret-support")),
        Some(&sink),
        &["--no-autoresponder"],
    );
    gateway.start();
    gateway.wait_for("the mailbox emptied", WAIT, || {
        (dovecot.count("support") == 0).then_some(())
    });
    assert_eq!(gateway.json(&["stats"])["total"], 1100);
    let log = dovecot.log();
    assert!(
        log.lines()
            .any(|l| l.contains("retr=0/0") && l.contains("del=1024/")),
        "no session beside the poll deleted a chunk; Dovecot's log:\n{log}"
    );
}
