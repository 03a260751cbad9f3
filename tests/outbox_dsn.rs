//! Delivery status notifications from the outbox, over real sockets to the recording SMTP
//! sink: an agent's reply the upstream refuses (5xx) or that is still undelivered when the
//! retry window ends comes back to the agent as an RFC 3464 report from the queue address
//! with the null sender, and is noted on the ticket. Automatic answers that fail are only
//! noted; a report that fails gets no report.
//!
//! Replies by SMTP submission do not exist yet: the reply is put into the outbox through
//! the library's store, as submission will.
mod support;

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mticket::store::{Content, NewOutbound, Store};
use serde_json::Value;
use support::gateway::{Gateway, Options};
use support::header;
use support::sink::{Fault, Sink, SinkMessage};

const WAIT: Duration = Duration::from_secs(30);
const CUSTOMER: &str = "kunde@kunde.example";

fn send(gateway: &Gateway, subject: &str) {
    gateway.customer_mail(
        CUSTOMER,
        "support@example.test",
        subject,
        "Wo bleibt mein Paket?",
    );
}

/// Queues an agent's reply on ticket `number` to `rcpts`, as submission will.
fn queue_reply(gateway: &Gateway, number: i64, login: &str, rcpts: &[&str]) -> String {
    let message_id = format!("mt.{number}.reply.{login}@gateway.example.test");
    let raw = format!(
        "From: Support <support@example.test>\r\nTo: {}\r\nSubject: [Support #{number}] Re: \
         Paket fehlt\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nIhr Paket ist unterwegs.\r\n",
        rcpts.join(", ")
    );
    let url = gateway.db_url.clone();
    let login = login.to_string();
    let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let queue = store.queue_by_name("Support").await.unwrap();
        let agent = store.agent_by_login(&login).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let ticket = tx.ticket_by_number(number).await.unwrap().unwrap();
        tx.outbox_add(&NewOutbound {
            queue_id: queue.id,
            ticket_id: Some(ticket.id),
            agent_id: Some(agent.id),
            kind: "reply",
            mail_from: "support@example.test",
            rcpt_to: &rcpts,
            message_id: &message_id,
            content: Content::Bytes(raw.as_bytes()),
        });
        tx.commit().await.unwrap();
        store.close().await;
    });
    message_id
}

fn deliveries(ticket: &Value) -> Vec<String> {
    ticket["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["field"] == "delivery")
        .map(|h| h["new"].as_str().unwrap().to_string())
        .collect()
}

/// The three parts of a report: (text for people, delivery-status, headers).
fn report_parts(m: &SinkMessage) -> (String, String, String) {
    let parsed = MessageParser::default().parse(&m.raw).unwrap();
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let parts: Vec<_> = parsed.parts.iter().skip(1).collect();
    assert_eq!(parts.len(), 3, "{}", String::from_utf8_lossy(&m.raw));
    let kinds: Vec<String> = parts
        .iter()
        .map(|p| {
            let ct = p.content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let contents = |i: usize| String::from_utf8_lossy(parts[i].contents()).into_owned();
    (
        parsed.body_text(0).unwrap().into_owned(),
        contents(1),
        contents(2),
    )
}

#[test]
fn a_refused_reply_comes_back_to_its_agent_as_a_delivery_report() {
    let sink = Sink::start();
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue(
        "Support",
        "support@example.test",
        None,
        Some(&sink),
        &["--autoresponder", "--friendly", "Example Support"],
    );
    gateway.add_agent(
        "anna",
        &format!("{}@example.test", "anna"),
        "agent-password-123",
        &["Support"],
    );
    gateway.add_agent(
        "ben",
        &format!("{}@example.test", "ben"),
        "agent-password-123",
        &["Support"],
    );
    // The customer's address is refused, and ben's own: a report to ben fails too.
    sink.set_fault_for(&[CUSTOMER, "ben@example.test"], Some(Fault::Reject), None);
    gateway.start();

    // A refused autoresponse is only noted on the ticket.
    send(&gateway, "Paket fehlt");
    let notes = gateway.wait_for("the autoresponse's delivery note", WAIT, || {
        let notes = deliveries(&gateway.ticket(1));
        (!notes.is_empty()).then_some(notes)
    });
    assert!(
        notes[0].starts_with(&format!("autoresponse to {CUSTOMER} not delivered: ")),
        "{notes:?}"
    );
    assert!(notes[0].contains("550"), "{notes:?}");
    gateway.stop();
    assert!(sink.messages().is_empty(), "no report for an autoresponse");

    // anna's reply to the customer and a partner: the partner gets it, anna the report.
    let reply_id = queue_reply(&gateway, 1, "anna", &[CUSTOMER, "partner@partner.example"]);
    // ben's reply to the customer: the report to ben is refused as well.
    queue_reply(&gateway, 1, "ben", &[CUSTOMER]);
    gateway.start();
    let got = sink.wait_for(2, WAIT);
    let notes = gateway.wait_for("the notes of both replies", WAIT, || {
        let notes = deliveries(&gateway.ticket(1));
        (notes.len() == 4).then_some(notes)
    });
    gateway.wait_until_sent();
    assert_eq!(sink.messages().len(), 2, "no report on a failed report");

    let reply = got
        .iter()
        .find(|m| m.mail_from != "<>")
        .expect("the reply to the partner");
    assert_eq!(reply.rcpt_tos, ["partner@partner.example"]);
    let dsn = got.iter().find(|m| m.mail_from == "<>").expect("a report");
    assert_eq!(dsn.rcpt_tos, ["anna@example.test"]);
    let raw = String::from_utf8_lossy(&dsn.raw).into_owned();
    assert_eq!(
        header(raw.as_bytes(), "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        header(raw.as_bytes(), "From").as_deref(),
        Some("\"Example Support\" <support@example.test>")
    );
    assert_eq!(
        header(raw.as_bytes(), "Subject").as_deref(),
        Some("Undelivered: [Support #1] Re: Paket fehlt")
    );
    let (text, status, headers) = report_parts(dsn);
    assert!(text.contains("ticket #1"), "{text}");
    assert!(
        text.contains(&format!("{CUSTOMER}: refused for good")),
        "{text}"
    );
    assert!(text.contains("injected rejection"), "{text}");
    assert!(!text.contains("partner@"), "{text}");
    for line in [
        "Reporting-MTA: dns; gateway.example.test",
        &format!("Final-Recipient: rfc822; {CUSTOMER}"),
        "Action: failed",
        "Status: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1 injected rejection",
    ] {
        assert!(status.contains(line), "{line:?} missing:\n{status}");
    }
    assert!(!status.contains("partner@"), "{status}");
    assert!(
        headers.contains(&format!("Message-ID: <{reply_id}>")),
        "{headers}"
    );
    assert!(!headers.contains("unterwegs"), "{headers}");

    let replies: Vec<&String> = notes
        .iter()
        .filter(|n| n.starts_with(&format!("reply to {CUSTOMER} not delivered: ")))
        .collect();
    assert_eq!(replies.len(), 2, "{notes:?}");
    assert!(replies[0].contains("550"), "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n
                .starts_with("delivery status notification to ben@example.test not delivered: ")),
        "{notes:?}"
    );
    gateway.stop();
}

#[test]
fn a_reply_undelivered_when_the_retry_window_ends_gets_4_4_7() {
    let sink = Sink::start();
    let mut gateway = Gateway::new(Options {
        give_up_after: "3s",
        locale: "de",
        ..Options::default()
    });
    gateway.add_queue(
        "Support",
        "support@example.test",
        None,
        Some(&sink),
        &["--no-autoresponder"],
    );
    gateway.add_agent(
        "anna",
        &format!("{}@example.test", "anna"),
        "agent-password-123",
        &["Support"],
    );
    gateway.start();
    send(&gateway, "Paket fehlt");
    gateway.stop();

    sink.set_fault_for(&[CUSTOMER], Some(Fault::Tempfail), None);
    queue_reply(&gateway, 1, "anna", &[CUSTOMER]);
    gateway.start();
    let got = sink.wait_for(1, WAIT);
    let dsn = &got[0];
    assert_eq!(dsn.mail_from, "<>");
    assert_eq!(dsn.rcpt_tos, ["anna@example.test"]);
    let (text, status, _) = report_parts(dsn);
    assert!(text.contains("Ticket #1"), "{text}");
    assert!(
        text.contains(&format!(
            "{CUSTOMER}: bis zum Ende der Wiederholungsfrist nicht zugestellt"
        )),
        "{text}"
    );
    for line in [
        &format!("Final-Recipient: rfc822; {CUSTOMER}"),
        "Action: failed",
        "Status: 4.4.7",
        "Diagnostic-Code: smtp; 451 4.3.0 injected temporary failure",
    ] {
        assert!(status.contains(line), "{line:?} missing:\n{status}");
    }
    let notes = gateway.wait_for("the delivery note", WAIT, || {
        let notes = deliveries(&gateway.ticket(1));
        (!notes.is_empty()).then_some(notes)
    });
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(&format!(
            "reply to {CUSTOMER} not delivered: still not delivered after 3s; last error: "
        )),
        "{notes:?}"
    );
    gateway.stop();
}
