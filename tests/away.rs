//! Out-of-office through the real gateway: customer mail over the inbound SMTP listener
//! (swaks), notes relayed to the recording SMTP sink. The note goes out once per ticket,
//! under the autoresponder's loop rules and daily cap; the substitute watches the ticket;
//! after `agent back` nothing is sent.
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::gateway::{Gateway, Options};
use support::header;
use support::sink::{Sink, SinkMessage};

const WAIT: Duration = Duration::from_secs(30);
const CUSTOMER: &str = "kunde@kunde.example";
const NOTE: &str = "@Briefanrede@,\n\nich bin bis Januar nicht im Haus. Ihr Ticket @Ticketnummer@ \
                    in @Queue@ bearbeitet solange mein Kollege.\n";

/// Sends a mail to the Support queue; `250` means its ticket state is committed.
fn send(gateway: &Gateway, subject: &str, extra_headers: &[&str]) {
    let mut args = vec![
        "--server".to_string(),
        format!("127.0.0.1:{}", gateway.inbound_port),
        "--from".into(),
        CUSTOMER.into(),
        "--to".into(),
        "support@example.test".into(),
        "--header".into(),
        format!("Subject: {subject}"),
        "--body".into(),
        "Wo bleibt mein Paket?".into(),
    ];
    for h in extra_headers {
        args.push("--add-header".into());
        args.push(h.to_string());
    }
    let out = Command::new("swaks").args(&args).output().expect(
        "swaks not found: apt-get install swaks libnet-ssleay-perl (scripts/test does this)",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn history(ticket: &Value, field: &str) -> Vec<String> {
    ticket["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["field"] == field)
        .map(|h| h["new"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A gateway with the Support queue relaying to `sink`, agents anna and ben, and the
/// customer 4711; not started.
fn setup(sink: &Sink, opts: Options, queue_flags: &[&str]) -> Gateway {
    let gateway = Gateway::new(opts);
    gateway.cli_ok(&[
        "customer",
        "add",
        "--number",
        "4711",
        "--last-name",
        "Muster",
        "--letter-salutation",
        "Sehr geehrter Herr Muster",
        "--emails",
        CUSTOMER,
    ]);
    gateway.add_queue(
        "Support",
        "support@example.test",
        None,
        Some(sink),
        queue_flags,
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
    gateway
}

fn go_away(gateway: &Gateway, substitute: Option<&str>) -> String {
    let note = gateway.path().join("note.txt");
    std::fs::write(&note, NOTE).unwrap();
    let mut args = vec![
        "agent",
        "away",
        "anna",
        "--from",
        "2020-01-01",
        "--until",
        "2099-12-31",
        "--text-file",
        note.to_str().unwrap(),
    ];
    if let Some(s) = substitute {
        args.extend(["--substitute", s]);
    }
    gateway.cli_ok(&args)
}

/// No further mail reaches the sink: what the mail taken in so far queued is sent (a
/// note is queued in the commit that takes the mail in), and the sink holds `n`.
fn assert_no_more(gateway: &Gateway, sink: &Sink, n: usize) -> Vec<SinkMessage> {
    gateway.wait_until_sent();
    let got = sink.messages();
    assert_eq!(got.len(), n, "unexpected mail at the sink");
    got
}

#[test]
fn the_note_goes_out_once_per_ticket_and_the_substitute_watches() {
    let sink = Sink::start();
    let mut gateway = setup(&sink, Options::default(), &["--no-autoresponder"]);
    gateway.start();

    send(&gateway, "Paket fehlt", &[]);
    send(&gateway, "Rechnung falsch", &[]);
    gateway.cli_ok(&["ticket", "assign", "1", "anna"]);
    gateway.cli_ok(&["ticket", "assign", "2", "anna"]);
    let said = go_away(&gateway, Some("ben"));
    assert!(
        said.contains("away until 2099-12-31 23:59 (substitute: ben)"),
        "{said}"
    );
    let list = gateway.cli_ok(&["agent", "list"]);
    assert!(list.contains("away until 2099-12-31 23:59"), "{list}");
    let agents = gateway.json(&["agent", "list"]);
    let anna = &agents.as_array().unwrap()[0];
    assert_eq!(anna["login"], "anna");
    assert_eq!(anna["away"]["substitute"], "ben");
    assert_eq!(anna["away"]["text"], NOTE);

    // The first follow-up gets the note, filled in, as an automatic answer.
    send(&gateway, "Re: [Support #1] Paket fehlt", &[]);
    let got = sink.wait_for(1, WAIT);
    let note = &got[0];
    assert_eq!(note.rcpt_tos, [CUSTOMER]);
    assert_eq!(note.mail_from, "support@example.test");
    let raw = String::from_utf8_lossy(&note.raw).into_owned();
    assert_eq!(
        header(raw.as_bytes(), "Subject").as_deref(),
        Some("Re: [Support #1] Paket fehlt")
    );
    assert_eq!(
        header(raw.as_bytes(), "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        header(raw.as_bytes(), "X-Loop").as_deref(),
        Some("mticket@gateway.example.test")
    );
    assert!(
        header(raw.as_bytes(), "From")
            .as_deref()
            .unwrap()
            .contains("support@example.test"),
        "{raw}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&note.raw)
        .unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    assert!(text.starts_with("Sehr geehrter Herr Muster,"), "{text}");
    assert!(text.contains("Ihr Ticket 1 in Support"), "{text}");

    // The second follow-up does not.
    send(
        &gateway,
        "Re: [Support #1] Paket fehlt",
        &["X-Test: second"],
    );
    assert_no_more(&gateway, &sink, 1);
    let t = gateway.ticket(1);
    assert_eq!(t["watchers"], serde_json::json!(["ben"]));
    assert_eq!(
        history(&t, "watcher"),
        ["ben (substitute while anna is away)"]
    );
    let notes = history(&t, "away_note");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(notes[0], format!("sent to {CUSTOMER}"));
    assert!(notes[1].starts_with("not sent: "), "{notes:?}");
    assert_eq!(t["assignee"], "anna", "the ticket stays anna's");

    // A robot's follow-up gets no note, and does not use up the ticket's one note.
    send(
        &gateway,
        "Re: [Support #2] Rechnung falsch",
        &["Auto-Submitted: auto-generated"],
    );
    assert_no_more(&gateway, &sink, 1);
    let t = gateway.ticket(2);
    assert_eq!(
        history(&t, "away_note"),
        ["not sent: Auto-Submitted: auto-generated"]
    );
    assert_eq!(t["watchers"], serde_json::json!(["ben"]));
    send(&gateway, "AW: [Support #2] Rechnung falsch", &[]);
    let got = sink.wait_for(2, WAIT);
    let raw = String::from_utf8_lossy(&got[1].raw).into_owned();
    assert_eq!(
        header(raw.as_bytes(), "Subject").as_deref(),
        Some("Re: [Support #2] Rechnung falsch")
    );

    // Back: no note on a ticket that never got one.
    assert!(gateway.cli_ok(&["agent", "back", "anna"]).contains("back"));
    assert!(gateway.json(&["agent", "list"])[0]["away"].is_null());
    send(&gateway, "Lieferschein", &[]);
    gateway.cli_ok(&["ticket", "assign", "3", "anna"]);
    send(&gateway, "Re: [Support #3] Lieferschein", &[]);
    assert_no_more(&gateway, &sink, 2);
    let t = gateway.ticket(3);
    assert!(history(&t, "away_note").is_empty(), "{t:#}");
    assert_eq!(t["watchers"], serde_json::json!([]));
    gateway.stop();
}

#[test]
fn notes_count_against_the_daily_cap_of_automatic_answers() {
    let sink = Sink::start();
    let mut gateway = setup(
        &sink,
        Options {
            max_per_sender_per_day: 2,
            ..Options::default()
        },
        &["--autoresponder"],
    );
    gateway.start();
    // Two new tickets: two autoresponses use up the customer's cap.
    send(&gateway, "Paket fehlt", &[]);
    send(&gateway, "Rechnung falsch", &[]);
    sink.wait_for(2, WAIT);
    gateway.cli_ok(&["ticket", "assign", "1", "anna"]);
    go_away(&gateway, None);
    send(&gateway, "Re: [Support #1] Paket fehlt", &[]);
    assert_no_more(&gateway, &sink, 2);
    let t = gateway.ticket(1);
    assert_eq!(
        history(&t, "away_note"),
        [format!(
            "not sent: {CUSTOMER} got 2 automatic answers in the last 24 hours"
        )]
    );
    assert_eq!(t["watchers"], serde_json::json!([]), "no substitute");
    gateway.stop();
}

#[test]
fn away_needs_a_sane_period_and_a_known_substitute() {
    let sink = Sink::start();
    let gateway = setup(&sink, Options::default(), &[]);
    let note = gateway.path().join("note.txt");
    std::fs::write(&note, NOTE).unwrap();
    let note = note.to_str().unwrap();
    let fails = |args: &[&str], want: &str| {
        let out = gateway.cli(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    };
    let base = ["agent", "away", "anna", "--text-file", note];
    let with = |extra: &[&'static str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a
    };
    fails(
        &with(&["--from", "2026-12-24", "--until", "2026-12-23"]),
        "end after it begins",
    );
    fails(&with(&["--until", "24.12.2026"]), "YYYY-MM-DD");
    fails(
        &with(&["--until", "2099-01-01", "--substitute", "nobody"]),
        "no agent",
    );
    fails(
        &with(&["--until", "2099-01-01", "--substitute", "anna"]),
        "itself",
    );
    // A planned absence shows with its start.
    let out = gateway.cli_ok(&with(&[
        "--from",
        "2098-06-01T08:00",
        "--until",
        "2098-06-30",
    ]));
    assert!(
        out.contains("away from 2098-06-01 08:00 until 2098-06-30 23:59"),
        "{out}"
    );
}
