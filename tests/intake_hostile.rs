//! Bad input through the real intake paths: every mail
//! of the hostile corpus is taken in over POP3S from Dovecot and a selection also through
//! the inbound SMTP listener; each becomes a customer item with its raw bytes kept and its
//! problems noted, and the gateway stays up. A mail over the size limit is left in the
//! mailbox and reported (queue list, log), never silently dropped, and taken in once the
//! limit allows it.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use support::corpus::{self, CorpusMail};
use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options};

const USER: &str = "support";
const PASSWORD: &str = "hostile-pw-1";
const SMTP_SENDER: &str = "smtp-test@hostile.example";

/// Hostile mails that are plainly broken: their item must say so (as in core_corpus.rs).
const EXPECT_PROBLEM: &[&str] = &[
    "empty",
    "only-body",
    "missing-boundary",
    "wrong-boundary",
    "8bit-headers",
    "unknown-charset",
    "20000-line-header",
    "nested-100",
    "nul-bytes",
    "header-without-colon",
    "duplicate-from",
    "no-from",
];

/// Hostile mails also sent through the inbound SMTP listener.
const VIA_SMTP: &[&str] = &[
    "8bit-headers",
    "nul-bytes",
    "bare-cr-lf-mix",
    "binary-junk",
    "2mb-line",
    "20000-line-folded",
    "invalid-utf8-header",
    "ctl-in-subject",
];

fn add_queue(gw: &Gateway, dovecot: &Dovecot) {
    let ca = gw.path().join("dovecot-ca.pem");
    std::fs::write(&ca, dovecot.ca_pem()).unwrap();
    let pop3 = format!("127.0.0.1:{}", dovecot.pop3s_port());
    let out = gw.cli_with(
        &[
            "queue",
            "add",
            "--name",
            corpus::QUEUE,
            "--address",
            corpus::QUEUE_ADDRESS,
            "--pop3",
            &pop3,
            "--pop3-tls",
            "implicit",
            "--login",
            USER,
            "--password-env",
            "HOSTILE_QUEUE_PW",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--no-autoresponder",
        ],
        &[("HOSTILE_QUEUE_PW", PASSWORD)],
        "",
    );
    assert!(
        out.status.success(),
        "queue add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The database URL from the gateway's config file.
fn db_url(gw: &Gateway) -> String {
    let text = std::fs::read_to_string(&gw.config).unwrap();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("url = \"")
                .and_then(|r| r.strip_suffix('"'))
        })
        .expect("database url in config")
        .to_string()
}

/// A customer item as stored: (item id, ticket number, raw bytes).
type StoredItem = (i64, i64, Vec<u8>);

/// Every customer item with its raw bytes, read from the database directly: the CLI does
/// not print raw mail.
fn stored_items(gw: &Gateway) -> Vec<StoredItem> {
    use sqlx::Row;
    let url = db_url(gw);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("connect to the test database");
        let rows = sqlx::query(
            "SELECT i.id, t.number, i.raw FROM items i JOIN tickets t ON t.id = i.ticket_id \
             WHERE i.kind = 'customer' ORDER BY i.id",
        )
        .fetch_all(&pool)
        .await
        .expect("read items");
        let items = rows
            .iter()
            .map(|r| {
                (
                    r.try_get::<i64, _>(0).unwrap(),
                    r.try_get::<i64, _>(1).unwrap(),
                    r.try_get::<Vec<u8>, _>(2).unwrap(),
                )
            })
            .collect();
        pool.close().await;
        items
    })
}

/// Line ends unified (CRLF, bare CR and bare LF all become LF) and trailing ones dropped:
/// POP3 and SMTP transport may canonicalise line ends and add a final CRLF, nothing else.
fn norm(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                out.push(b'\n');
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    while out.last() == Some(&b'\n') {
        out.pop();
    }
    out
}

/// Sends each file as one mail to the queue address over the inbound listener with
/// Python's smtplib; returns (file name, reply code, text) per mail.
fn smtp_send(port: u16, files: &[&Path]) -> Vec<(String, i64, String)> {
    const SCRIPT: &str = r#"
import json, smtplib, sys
port, sender, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = []
for path in sys.argv[4:]:
    data = open(path, "rb").read()
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=120)
    except OSError as e:
        out.append([path, -1, str(e)])
        continue
    try:
        refused = s.sendmail(sender, [rcpt], data)
        out.append([path, 250, repr(refused)])
    except smtplib.SMTPResponseException as e:
        out.append([path, e.smtp_code, repr(e.smtp_error)])
    except smtplib.SMTPRecipientsRefused as e:
        out.append([path, 550, repr(e.recipients)])
    except Exception as e:
        out.append([path, -2, repr(e)])
    finally:
        try:
            s.quit()
        except Exception:
            pass
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(SMTP_SENDER)
        .arg(corpus::QUEUE_ADDRESS)
        .args(files)
        .output()
        .expect("python3 for smtplib");
    assert!(
        out.status.success(),
        "smtplib script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, i64, String)> =
        serde_json::from_slice(&out.stdout).expect("smtplib script output");
    v
}

fn customer_item_count(shows: &[serde_json::Value]) -> usize {
    shows
        .iter()
        .flat_map(|t| t["items"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["kind"] == "customer")
        .count()
}

fn all_tickets(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.tickets(&[])
        .iter()
        .map(|t| gw.ticket(t["number"].as_i64().expect("number")))
        .collect()
}

#[test]
fn hostile_mails_over_pop3s_and_inbound_smtp_are_all_kept() {
    let hostile = corpus::hostile();
    assert!(hostile.len() >= 30, "hostile corpus has {}", hostile.len());
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    dovecot.deliver_many(USER, hostile.iter().map(|m| m.raw.as_slice()));
    assert_eq!(dovecot.count(USER), hostile.len());

    let mut gw = Gateway::new(Options {
        poll_interval: "200ms",
        ..Options::default()
    });
    add_queue(&gw, &dovecot);
    gw.start();

    gw.wait_for(
        "every hostile mail taken from the mailbox",
        Duration::from_secs(120),
        || (dovecot.count(USER) == 0).then_some(()),
    );
    assert!(gw.is_running(), "gateway died:\n{}", gw.log());

    // Each mail is one customer item; `ticket show` parses for every ticket.
    let shows = all_tickets(&gw);
    assert_eq!(customer_item_count(&shows), hostile.len(), "customer items");

    // Raw bytes kept: every corpus mail matches exactly one stored item.
    let stored = stored_items(&gw);
    assert_eq!(stored.len(), hostile.len());
    // Byte-identical first, then equal but for line ends; each item matches one mail only.
    let mut item_of: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut used = vec![false; stored.len()];
    for m in &hostile {
        if let Some(k) = (0..stored.len()).find(|k| !used[*k] && stored[*k].2 == m.raw) {
            used[k] = true;
            item_of.insert(m.name, (stored[k].0, stored[k].1));
        }
    }
    let exact = item_of.len();
    let mut line_ends_only = Vec::new();
    let mut unmatched = Vec::new();
    for m in &hostile {
        if item_of.contains_key(m.name) {
            continue;
        }
        let want = norm(&m.raw);
        match (0..stored.len()).find(|k| !used[*k] && norm(&stored[*k].2) == want) {
            Some(k) => {
                used[k] = true;
                item_of.insert(m.name, (stored[k].0, stored[k].1));
                line_ends_only.push(m.name);
            }
            None => unmatched.push(m.name),
        }
    }
    assert!(
        unmatched.is_empty(),
        "hostile mails whose bytes no stored item holds: {unmatched:?}"
    );

    // Problems noted where the corpus expects them, and the history says so.
    let items_by_id: HashMap<i64, (&serde_json::Value, &serde_json::Value)> = shows
        .iter()
        .flat_map(|t| {
            t["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |i| (i["id"].as_i64().unwrap(), (i, t)))
        })
        .collect();
    let has_parse_problem = |t: &serde_json::Value| {
        t["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["field"] == "parse_problem")
    };
    let mut with_problems = 0;
    for m in &hostile {
        let (id, number) = item_of[m.name];
        let (item, ticket) = items_by_id[&id];
        let problems = item["problems"].as_array().unwrap();
        if !problems.is_empty() {
            with_problems += 1;
            assert!(
                has_parse_problem(ticket),
                "{}: item has problems {problems:?} but ticket #{number} has no parse_problem history",
                m.name
            );
        }
        if EXPECT_PROBLEM.contains(&m.name) {
            assert!(
                !problems.is_empty() || has_parse_problem(ticket),
                "{} ({}): no problem noted on ticket #{number}",
                m.name,
                m.what
            );
        }
    }

    // The same kind of mail through the inbound SMTP listener.
    let files: Vec<(String, std::path::PathBuf)> = VIA_SMTP
        .iter()
        .map(|name| {
            let m: &CorpusMail = hostile
                .iter()
                .find(|m| m.name == *name)
                .unwrap_or_else(|| panic!("no hostile mail {name}"));
            let path = gw.path().join(format!("smtp-{name}.eml"));
            std::fs::write(&path, &m.raw).unwrap();
            (name.to_string(), path)
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(|(_, p)| p.as_path()).collect();
    let replies = smtp_send(gw.inbound_port, &paths);
    for (path, code, text) in &replies {
        assert_eq!(*code, 250, "{path}: {code} {text}\n{}", gw.log());
    }
    assert!(gw.is_running(), "gateway died:\n{}", gw.log());
    let stored = stored_items(&gw);
    assert_eq!(stored.len(), hostile.len() + VIA_SMTP.len());
    let return_path = format!("Return-Path: <{SMTP_SENDER}>\r\n");
    for name in VIA_SMTP {
        let m = hostile.iter().find(|m| m.name == *name).unwrap();
        let want = norm(&m.raw);
        let hits = stored
            .iter()
            .filter(|(_, _, raw)| {
                raw.strip_prefix(return_path.as_bytes())
                    .is_some_and(|rest| norm(rest) == want)
            })
            .count();
        assert_eq!(hits, 1, "{name} over SMTP: stored {hits} times");
    }
    let shows = all_tickets(&gw);
    assert_eq!(
        customer_item_count(&shows),
        hostile.len() + VIA_SMTP.len(),
        "customer items after SMTP"
    );
    let log = gw.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
    assert!(gw.is_running(), "gateway died:\n{log}");
    eprintln!(
        "intake_hostile summary: pop3 mails={} (byte-identical {exact}, line ends changed in transit {line_ends_only:?}, \
with problems {with_problems}), smtp mails={} backend={}",
        hostile.len(),
        VIA_SMTP.len(),
        support::db::backend()
    );
}

fn plain_mail(n: usize) -> Vec<u8> {
    format!(
        "From: klein{n}@firma.example\r\nTo: {}\r\nSubject: Kleine Mail {n}\r\n\
Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nMessage-ID: <small-{n}@firma.example>\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\nNur eine kleine Frage {n}.\r\n",
        corpus::QUEUE_ADDRESS
    )
    .into_bytes()
}

fn last_poll_message(gw: &Gateway) -> String {
    let queues = gw.json(&["queue", "list"]);
    queues[0]["last_poll"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn oversized_mail_is_left_upstream_reported_and_taken_once_allowed() {
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    let big = corpus::oversized(2_000_000);
    dovecot.deliver(USER, &plain_mail(1));
    dovecot.deliver(USER, &big);
    dovecot.deliver(USER, &plain_mail(2));

    let mut gw = Gateway::new(Options {
        poll_interval: "200ms",
        max_message_size: "1MB",
        ..Options::default()
    });
    add_queue(&gw, &dovecot);
    gw.start();

    gw.wait_for("the small mails taken in", Duration::from_secs(60), || {
        (gw.tickets(&[]).len() == 2 && dovecot.count(USER) == 1).then_some(())
    });
    // Later polls leave the big mail there and still report it.
    let polled_at = |gw: &Gateway| gw.json(&["queue", "list"])[0]["last_poll"]["at"].as_i64();
    let first = gw.wait_for("a poll", Duration::from_secs(60), || polled_at(&gw));
    gw.wait_for("a later poll", Duration::from_secs(60), || {
        polled_at(&gw).filter(|&at| at > first)
    });
    assert_eq!(
        dovecot.count(USER),
        1,
        "the oversized mail must stay upstream"
    );
    assert_eq!(gw.tickets(&[]).len(), 2);
    let message = last_poll_message(&gw);
    assert!(
        message.contains("over the limit") && message.contains("left in the mailbox"),
        "queue list does not report the oversized mail: {message:?}"
    );
    let log = gw.log();
    assert!(
        log.contains("over the limit"),
        "the log does not report the oversized mail:\n{log}"
    );
    assert!(gw.is_running());

    // Over the inbound listener it is refused with 552, and nothing is stored.
    let path = gw.path().join("big.eml");
    std::fs::write(&path, &big).unwrap();
    let replies = smtp_send(gw.inbound_port, &[path.as_path()]);
    assert_eq!(replies[0].1, 552, "inbound over the limit: {replies:?}");
    assert_eq!(gw.tickets(&[]).len(), 2);
    assert!(gw.is_running());

    // Once the limit allows it, the mail is taken in and deleted upstream.
    gw.stop();
    let config = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(
        &gw.config,
        config.replace("max_message_size = \"1MB\"", "max_message_size = \"5MB\""),
    )
    .unwrap();
    gw.start();
    gw.wait_for(
        "the formerly oversized mail taken in",
        Duration::from_secs(60),
        || (dovecot.count(USER) == 0 && gw.tickets(&[]).len() == 3).then_some(()),
    );
    let big_ticket = gw
        .tickets(&[])
        .into_iter()
        .find(|t| t["subject"] == "Grosse Mail")
        .expect("ticket of the big mail");
    let show = gw.ticket(big_ticket["number"].as_i64().unwrap());
    assert_eq!(show["items"].as_array().unwrap().len(), 1);
    let message = last_poll_message(&gw);
    assert!(
        !message.contains("over the limit"),
        "still reported after it was taken: {message:?}"
    );
}
