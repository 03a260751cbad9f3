//! Crash safety of POP3 intake (docs/ARCHITECTURE.md, "Durability"): a mailbox of 500 distinct mails is taken in by
//! the real `mticket serve` while the test SIGKILLs it at random moments and restarts it.
//! Afterwards every mail is exactly one customer item, the upstream mailbox is empty, and
//! every due autoresponse reached the upstream SMTP server once (a duplicate is only
//! possible when a kill lands between the upstream's 250 and the outbox commit).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options};
use support::sink::Sink;

const MAILS: usize = 500;
const KILLS: usize = 12;
const USER: &str = "support";
const PASSWORD: &str = "crash-pw-1";

/// One generated customer mail: distinct sender, Message-ID, subject and body marker.
struct CrashMail {
    raw: Vec<u8>,
    /// Whether the loop rules allow an autoresponse to it.
    autoresponse: bool,
    sender: String,
}

fn marker(run: &str, i: usize) -> String {
    format!("CRASHMARK-{run}-{i:04}")
}

fn crash_mail(run: &str, i: usize) -> CrashMail {
    let sender = format!("kunde{i}@firma{}.example", i % 13);
    let mut extra = String::new();
    // Every tenth mail is bulk and every tenth auto-generated: no autoresponse for those.
    let autoresponse = match i % 10 {
        3 => {
            extra.push_str("Precedence: bulk\r\n");
            false
        }
        7 => {
            extra.push_str("Auto-Submitted: auto-generated\r\n");
            false
        }
        _ => true,
    };
    let text = format!(
        "Hallo,\r\n\r\nmein Drucker Nummer {i} geht nicht.\r\nMarker: {m} Ende\r\n\r\nGrüße\r\nKunde {i}\r\n",
        m = marker(run, i)
    );
    let (content_type, body) = if i % 20 == 5 {
        // Some mails carry a sizeable attachment, so batches also fill up by bytes.
        let data: Vec<u8> = (0..150_000u32)
            .map(|n| (n.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 11) as u8)
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let mut b = format!(
            "--CRASH\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"
        );
        b.push_str(
            "--CRASH\r\nContent-Type: application/octet-stream; name=dump.bin\r\n\
Content-Disposition: attachment; filename=dump.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        );
        for chunk in b64.as_bytes().chunks(76) {
            b.push_str(std::str::from_utf8(chunk).unwrap());
            b.push_str("\r\n");
        }
        b.push_str("--CRASH--\r\n");
        ("multipart/mixed; boundary=CRASH".to_string(), b)
    } else {
        ("text/plain; charset=utf-8".to_string(), text)
    };
    let raw = format!(
        "Return-Path: <{sender}>\r\nFrom: Kunde {i} <{sender}>\r\nTo: Support <support@example.test>\r\n\
Subject: Crashtest {run} Anfrage {i}\r\nDate: Mon, 2 Nov 2026 10:{:02}:{:02} +0100\r\n\
Message-ID: <crash-{run}-{i}@firma.example>\r\n{extra}MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n{body}",
        i / 60 % 60,
        i % 60,
    )
    .into_bytes();
    CrashMail {
        raw,
        autoresponse,
        sender,
    }
}

/// The value of header `name` in the header section of `raw`, trimmed.
fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn add_queue(gw: &Gateway, dovecot: &Dovecot, sink: &Sink) {
    let ca = gw.path().join("upstream-ca.pem");
    std::fs::write(&ca, format!("{}\n{}", dovecot.ca_pem(), sink.ca_pem())).unwrap();
    let pop3 = format!("127.0.0.1:{}", dovecot.pop3s_port());
    let smtp = format!("127.0.0.1:{}", sink.port());
    let out = gw.cli_with(
        &[
            "queue",
            "add",
            "--name",
            "Support",
            "--address",
            "support@example.test",
            "--pop3",
            &pop3,
            "--pop3-tls",
            "implicit",
            "--smtp",
            &smtp,
            "--smtp-tls",
            "starttls",
            "--login",
            USER,
            "--password-env",
            "CRASH_QUEUE_PW",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--autoresponder",
        ],
        &[("CRASH_QUEUE_PW", PASSWORD)],
        "",
    );
    assert!(
        out.status.success(),
        "queue add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ticket_numbers(gw: &Gateway) -> Vec<i64> {
    gw.tickets(&[])
        .iter()
        .map(|t| t["number"].as_i64().expect("ticket number"))
        .collect()
}

#[test]
fn sigkill_during_pop3_intake_loses_and_doubles_nothing() {
    let started = Instant::now();
    let run = format!("{:08x}", rand::random::<u32>());
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    let sink = Sink::start_with_auth(USER, PASSWORD);

    let mails: Vec<CrashMail> = (0..MAILS).map(|i| crash_mail(&run, i)).collect();
    dovecot.deliver_many(USER, mails.iter().map(|m| m.raw.as_slice()));
    assert_eq!(dovecot.count(USER), MAILS);

    let mut gw = Gateway::new(Options {
        poll_interval: "200ms",
        max_per_sender_per_day: 1000,
        ..Options::default()
    });
    add_queue(&gw, &dovecot, &sink);

    // Kill at random moments 50-600 ms after the gateway listens; note how far intake got
    // each time. A slow machine or backend may need longer than that to commit its first
    // batch: while a run makes no progress at all, later kills come a bit later, so the
    // kills land in the middle of the intake instead of always before it.
    let mut progress = Vec::new();
    let mut offset = 0;
    let mut last = 0;
    for _ in 0..KILLS {
        gw.start();
        let pause = offset + 50 + rand::random::<u64>() % 551;
        std::thread::sleep(Duration::from_millis(pause));
        assert!(gw.is_running(), "gateway died by itself:\n{}", gw.log());
        gw.kill();
        let tickets = ticket_numbers(&gw).len();
        if tickets == last && tickets < MAILS {
            offset += 250;
        }
        last = tickets;
        progress.push((pause, tickets, sink.messages().len()));
    }

    // Let it finish undisturbed.
    gw.start();
    let due = mails.iter().filter(|m| m.autoresponse).count();
    gw.wait_for(
        "the mailbox to be emptied",
        Duration::from_secs(120),
        || (dovecot.count(USER) == 0).then_some(()),
    );
    gw.wait_for(
        "every due autoresponse at the sink",
        Duration::from_secs(120),
        || (sink.messages().len() >= due).then_some(()),
    );
    // Whatever the outbox still holds goes out first, so a late duplicate shows up too.
    gw.wait_until_sent();
    assert!(gw.is_running(), "gateway died:\n{}", gw.log());

    // Exactly one customer item per mail, each marker exactly once.
    let numbers = ticket_numbers(&gw);
    let shows: Vec<serde_json::Value> = std::thread::scope(|s| {
        let gw = &gw;
        let handles: Vec<_> = numbers
            .chunks(numbers.len().div_ceil(4).max(1))
            .map(|chunk| s.spawn(move || chunk.iter().map(|n| gw.ticket(*n)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("ticket show thread"))
            .collect()
    });
    let prefix = format!("CRASHMARK-{run}-");
    let mut customer_items = 0;
    let mut marker_counts: BTreeMap<usize, usize> = BTreeMap::new();
    // Ticket number -> mail index, from the marker of its first customer item.
    let mut ticket_mail: HashMap<i64, usize> = HashMap::new();
    for t in &shows {
        let number = t["number"].as_i64().unwrap();
        for item in t["items"].as_array().expect("items") {
            if item["kind"] != "customer" {
                continue;
            }
            customer_items += 1;
            let text = item["text"].as_str().unwrap_or_default();
            for (at, _) in text.match_indices(&prefix) {
                let digits = &text[at + prefix.len()..at + prefix.len() + 4];
                let i: usize = digits.parse().expect("marker index");
                *marker_counts.entry(i).or_default() += 1;
                ticket_mail.entry(number).or_insert(i);
            }
        }
    }
    let missing: Vec<usize> = (0..MAILS)
        .filter(|i| !marker_counts.contains_key(i))
        .collect();
    let doubled: Vec<(usize, usize)> = marker_counts
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (*i, *n))
        .collect();
    assert!(
        missing.is_empty() && doubled.is_empty(),
        "lost mails {missing:?}, doubled (mail, times) {doubled:?}"
    );
    assert_eq!(customer_items, MAILS, "customer items");
    assert_eq!(numbers.len(), MAILS, "one ticket per mail");
    assert_eq!(dovecot.count(USER), 0, "upstream mailbox must be empty");

    // Autoresponses: one per due ticket, to its creator; none for bulk/auto mail.
    let mut sent: HashMap<i64, Vec<String>> = HashMap::new();
    // Message-IDs of autoresponses the sink stored more than once.
    let mut stored_ids: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        *stored_ids
            .entry(header(&m.raw, "Message-ID").unwrap_or_default())
            .or_default() += 1;
        let n: i64 = header(&m.raw, "X-Ticket-Number")
            .expect("autoresponse without X-Ticket-Number")
            .parse()
            .expect("X-Ticket-Number is a number");
        let subject = header(&m.raw, "Subject").unwrap_or_default();
        assert!(
            subject.starts_with(&format!("[Support #{n}] ")),
            "autoresponse subject {subject:?} for #{n}"
        );
        sent.entry(n).or_default().extend(m.rcpt_tos.clone());
    }
    let mut duplicates = 0;
    for (number, i) in &ticket_mail {
        let mail = &mails[*i];
        let got = sent.get(number).map(Vec::as_slice).unwrap_or_default();
        if mail.autoresponse {
            assert!(
                !got.is_empty(),
                "ticket #{number} (mail {i}) got no autoresponse"
            );
            assert!(
                got.iter().all(|r| r.eq_ignore_ascii_case(&mail.sender)),
                "autoresponse of #{number} went to {got:?}, not {}",
                mail.sender
            );
            duplicates += got.len() - 1;
        } else {
            assert!(
                got.is_empty(),
                "ticket #{number} (mail {i}, bulk/auto) got an autoresponse"
            );
        }
    }
    assert!(
        sent.keys().all(|n| ticket_mail.contains_key(n)),
        "autoresponse for an unknown ticket"
    );
    // Each kill can catch at most one relay between the upstream's 250 and the commit.
    assert!(
        duplicates <= KILLS,
        "{duplicates} duplicate autoresponses after {KILLS} kills"
    );
    // Where each duplicate came from: logged as relayed twice means the kill fell between
    // the relay and the outbox commit; logged once, between the final "." and the 250.
    let log = gw.log();
    let (mut after_log, mut before_log) = (0, 0);
    for (id, n) in stored_ids.iter().filter(|(_, n)| **n > 1) {
        let id = id.trim_matches(['<', '>']);
        let logged = log
            .lines()
            .filter(|l| l.contains("relayed") && l.contains(id))
            .count();
        if logged >= *n {
            after_log += n - 1;
        } else {
            before_log += n - 1;
        }
    }
    eprintln!("progress at each kill (pause ms, tickets, autoresponses): {progress:?}");
    support::summary(&format!(
        "intake_crash summary: kills={KILLS} mails={MAILS} customer_items={customer_items} \
due_autoresponses={due} autoresponses_at_sink={} duplicate_autoresponses={duplicates} \
(killed before the outbox commit: {after_log}, before the 250 was read: {before_log}) \
backend={} elapsed={:.1}s",
        sink.messages().len(),
        support::db::backend(),
        started.elapsed().as_secs_f64()
    ));
}
