//! The gateway's inbound SMTP listener with swaks as the real client, `serve --demo`
//! followed by the swaks line it prints, and customer assignment with the DMARC check.
mod support;

use std::process::Command;
use std::time::Duration;

use support::corpus::{self, KNOWN_CUSTOMER};
use support::gateway::{Gateway, Options};

const WAIT: Duration = Duration::from_secs(30);

fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks").args(args).output().expect(
        "swaks not found: apt-get install swaks libnet-ssleay-perl (scripts/test does this)",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn swaks_to_a_queue_makes_a_ticket_and_to_a_stranger_gets_550() {
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue(
        "Support",
        "support@example.test",
        None,
        None,
        &["--no-autoresponder"],
    );
    gateway.start();
    let server = format!("127.0.0.1:{}", gateway.inbound_port);
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "kunde@kunde.example",
        "--to",
        "support@example.test",
        "--header",
        "Subject: Paket fehlt",
        "--body",
        "Wo ist mein Paket?",
    ]);
    assert!(ok, "{out}");
    let tickets = gateway.tickets(&[]);
    assert_eq!(tickets.len(), 1, "250 must mean committed");
    assert_eq!(tickets[0]["subject"], "Paket fehlt");
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "kunde@kunde.example",
        "--to",
        "nobody@example.test",
    ]);
    assert!(!ok);
    assert!(out.contains("550"), "{out}");
    // STARTTLS with the generated certificate, and LMTP.
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        &gateway.path().join("certs/cert.pem").display().to_string(),
        "--from",
        "a@b.example",
        "--to",
        "support@example.test",
        "--header",
        "Subject: via TLS",
    ]);
    assert!(ok, "{out}");
    let lmtp = format!("127.0.0.1:{}", gateway.lmtp_port);
    let (ok, out) = swaks(&[
        "--server",
        &lmtp,
        "--protocol",
        "LMTP",
        "--from",
        "a@b.example",
        "--to",
        "support@example.test",
        "--header",
        "Subject: via LMTP",
    ]);
    assert!(ok, "{out}");
    assert_eq!(gateway.tickets(&[]).len(), 3);
    gateway.stop();
}

/// Runs the command printed at the start of `text` over `lines` lines (continuations
/// joined), as a newcomer would paste it.
fn run_printed(text: &str, lines: usize) {
    let command: String = text
        .lines()
        .take(lines)
        .map(|l| l.trim().trim_end_matches('\\').trim())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn serve_demo_then_its_swaks_lines_make_a_ticket_and_a_reply() {
    let mut gateway = Gateway::new(Options::default());
    gateway.start_with(&["--demo"]);
    let log = gateway.wait_for("the demo instructions", WAIT, || {
        let log = gateway.log();
        log.contains("swaks --server").then_some(log)
    });
    let start = log.find("swaks --server").unwrap();
    run_printed(&log[start..], 2);
    let list = gateway.cli_ok(&["ticket", "list"]);
    assert!(list.contains("My first ticket"), "{list}");
    // The known demo customer was assigned.
    assert_eq!(gateway.ticket(1)["customer"]["number"], "10001");

    // The second printed command answers as the demo agent through the submission port.
    let start = log.rfind("swaks --server").unwrap();
    run_printed(&log[start..], 3);
    let items = gateway.ticket(1)["items"].clone();
    assert_eq!(items[1]["kind"], "reply", "{items}");
    assert_eq!(gateway.ticket(1)["status"], "waiting");
    gateway.stop();
    assert!(gateway.path().join("certs/cert.pem").exists());
}

#[test]
fn dmarc_reject_without_aligned_signature_gets_no_customer() {
    let mut gateway = Gateway::new(Options {
        dns_records: corpus::dkim_record_lines("kunde.example", "sel1"),
        ..Options::default()
    });
    gateway.cli_ok(&[
        "customer",
        "add",
        "--number",
        "4711",
        "--emails",
        KNOWN_CUSTOMER,
    ]);
    gateway.add_queue(
        "Support",
        "support@example.test",
        None,
        None,
        &["--no-autoresponder"],
    );
    gateway.start();
    let mail = |n: u32| {
        format!(
            "From: Kunde <{KNOWN_CUSTOMER}>\r\nTo: support@example.test\r\nSubject: Rechnung {n}\r\n\
             Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <dmarc-{n}@kunde.example>\r\n\r\nBitte pruefen.\r\n"
        )
        .into_bytes()
    };
    let send = |raw: &[u8]| {
        let file = gateway
            .path()
            .join(format!("mail-{}.eml", rand::random::<u32>()));
        // --no-data-fixup sends the file as it is: it must end with the terminating dot.
        let mut data = raw.to_vec();
        data.extend_from_slice(b".\r\n");
        std::fs::write(&file, data).unwrap();
        let (ok, out) = swaks(&[
            "--server",
            &format!("127.0.0.1:{}", gateway.inbound_port),
            "--from",
            KNOWN_CUSTOMER,
            "--to",
            "support@example.test",
            "--data",
            &format!("@{}", file.display()),
            "--no-data-fixup",
        ]);
        assert!(ok, "{out}");
    };
    send(&mail(1));
    send(&corpus::dkim_sign(&mail(2), "kunde.example", "sel1"));
    let spoofed = gateway.ticket(1);
    assert!(spoofed["customer"].is_null(), "{spoofed:#}");
    assert_eq!(spoofed["spoof_suspect"], true);
    let signed = gateway.ticket(2);
    assert_eq!(signed["customer"]["number"], "4711", "{signed:#}");
    assert_eq!(signed["spoof_suspect"], false);
    gateway.stop();
}
