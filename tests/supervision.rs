//! The supervisor of `serve`: a background task or listener that panics is restarted,
//! `mticket instances` (another process, through the database) reports it with its state,
//! restart count and the panic's message, and the gateway keeps working. The panics come
//! from the debug build's fault hook `DEBUG_MTICKET_PANIC_ONCE`, which makes the named
//! tasks' first runs panic.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use support::gateway::{Gateway, Options};
use support::sink::Sink;

/// The outbox and the mailbox lister (background tasks) and the plain IMAP listener.
const PANICKING: [&str; 3] = ["outbox", "mailbox lister", "imap"];
const CUSTOMER: &str = "kunde@firma.example";

/// The running gateway's tasks, as `mticket instances --json` reports them.
fn tasks(gw: &Gateway) -> Vec<serde_json::Value> {
    let pid = i64::from(gw.pid().expect("gateway running"));
    let report = gw.json(&["instances"]);
    let instances = report["instances"].as_array().cloned().unwrap_or_default();
    let me = instances
        .iter()
        .find(|i| i["pid"] == pid && i["alive"] == true)
        .unwrap_or_else(|| panic!("no live instance with pid {pid}: {report}"));
    me["tasks"].as_array().cloned().unwrap_or_default()
}

fn task(gw: &Gateway, name: &str) -> Option<serde_json::Value> {
    tasks(gw).into_iter().find(|t| t["name"] == name)
}

/// The first line the IMAP port at `port` says.
fn imap_greeting(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("IMAP port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn tasks_that_panic_are_restarted_reported_and_keep_working() {
    let sink = Sink::start();
    let mut gw = Gateway::new(Options::default());
    gw.add_queue(
        "Support",
        "support@shop.test",
        None,
        Some(&sink),
        &["--autoresponder"],
    );
    // `start` waits for every port, the IMAP port included: it answers again once its
    // listener was restarted on a fresh bind.
    gw.start_with_env(
        &[],
        &[("DEBUG_MTICKET_PANIC_ONCE", PANICKING.join(",").as_str())],
    );

    for name in PANICKING {
        let t = gw.wait_for(
            &format!("{name} restarted and running"),
            Duration::from_secs(60),
            || {
                let t = task(&gw, name)?;
                (t["state"] == "running" && t["restarts"].as_i64() >= Some(1)).then_some(t)
            },
        );
        let cause = t["last_failure"].as_str().unwrap_or_default();
        assert!(
            cause.contains(&format!("injected by DEBUG_MTICKET_PANIC_ONCE into {name}")),
            "{name}'s last failure: {t}"
        );
    }
    let all = tasks(&gw);
    for name in [
        "poller",
        "liveness",
        "search indexer",
        "inbound",
        "imaps",
        "pop3s",
    ] {
        assert!(
            all.iter().any(|t| t["name"] == name),
            "{name} missing: {all:?}"
        );
    }
    for t in all
        .iter()
        .filter(|t| !PANICKING.contains(&t["name"].as_str().unwrap()))
    {
        assert_eq!(t["state"], "running", "{t}");
        assert_eq!(t["restarts"], 0, "{t}");
    }

    // The restarted outbox still relays: the customer's autoresponse reaches the sink.
    gw.customer_mail(
        CUSTOMER,
        "support@shop.test",
        "Paket fehlt",
        "Wo bleibt es?",
    );
    gw.wait_for("the autoresponse", Duration::from_secs(60), || {
        let sent = sink.messages();
        sent.iter()
            .any(|m| m.rcpt_tos.iter().any(|r| r == CUSTOMER))
            .then_some(())
    });
    // The restarted lister still lists: the new ticket gets its message.
    gw.wait_until_listed();
    // The restarted IMAP listener greets.
    let greeting = imap_greeting(gw.imap_port);
    assert!(greeting.starts_with("* OK"), "{greeting:?}");

    let shown = gw.cli_ok(&["instances"]);
    assert!(shown.contains("LAST FAILURE"), "{shown}");
    assert!(
        shown.contains("injected by DEBUG_MTICKET_PANIC_ONCE into outbox"),
        "{shown}"
    );
    gw.stop();
    let log = gw.log();
    assert!(
        log.contains("background task ended unexpectedly; restarting it"),
        "{log}"
    );
}
