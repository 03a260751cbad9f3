//! Intake benchmark: realistic mails (2–60 KB, a fifth with attachments) taken from a
//! private Dovecot over POP3S into tickets, on SQLite and on PostgreSQL. In the same run the
//! raw retrieval rate of the same mailbox is measured as the ceiling: by mticket's own
//! POP3 client alone (RETR only, nothing stored; one at a time and pipelined as intake
//! does) and by Python's poplib. As a peer, the first mails of the same set go through
//! Request Tracker 5's `rt-mailgate` into a private RT on SQLite. Results are printed and
//! handed to the report (benches/common/report.rs) that `scripts/bench` makes BENCHMARKS.md of.
//!
//! `cargo bench --bench intake` (BENCH_INTAKE_MAILS=N to change the 10,000 mails;
//! BENCH_INTAKE_RT_SAMPLE=N for RT's 200, 0 to leave RT out; PostgreSQL runs when
//! MTICKET_TEST_POSTGRES names a server, as scripts/bench sets it up).
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/report.rs"]
mod report;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mticket::net::tls;
use mticket::protocol::pop3_client::{self, Pop3Tls};
use rand::{Rng, SeedableRng};
use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options};
use support::rt::Rt;
use support::sink::Sink;

const WORDS: &[&str] = &[
    "Bestellung",
    "Lieferung",
    "Rechnung",
    "bitte",
    "danke",
    "Paket",
    "Retoure",
    "Kunde",
    "Artikel",
    "defekt",
    "Umtausch",
    "schnell",
    "leider",
    "noch",
    "nicht",
    "angekommen",
    "Gutschrift",
    "Zahlung",
    "Termin",
    "Frage",
    "order",
    "delivery",
    "invoice",
    "please",
];

fn mail(i: usize, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let size = rng.random_range(2_000..60_000usize);
    let with_attachment = i.is_multiple_of(5);
    let text_size = if with_attachment { size / 4 } else { size };
    let mut text = String::with_capacity(text_size + 100);
    while text.len() < text_size {
        for _ in 0..12 {
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            text.push(' ');
        }
        text.push_str("\r\n");
    }
    let head = format!(
        "From: Kunde {i} <kunde{}@kunden.example>\r\nTo: support@example.test\r\n\
         Subject: Anfrage {i} zu Bestellung {}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0100\r\n\
         Message-ID: <bench-{i}@kunden.example>\r\nMIME-Version: 1.0\r\n",
        i % 3000,
        100_000 + i
    );
    if !with_attachment {
        return format!("{head}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}").into_bytes();
    }
    let mut blob = vec![0u8; size - text_size];
    rng.fill(&mut blob[..]);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &blob);
    let mut encoded = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        encoded.push_str(std::str::from_utf8(chunk).unwrap());
        encoded.push_str("\r\n");
    }
    format!(
        "{head}Content-Type: multipart/mixed; boundary=\"B{i}\"\r\n\r\n--B{i}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--B{i}\r\n\
         Content-Type: application/pdf; name=\"beleg-{i}.pdf\"\r\nContent-Disposition: attachment; filename=\"beleg-{i}.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}--B{i}--\r\n"
    )
    .into_bytes()
}

/// mticket's POP3 client alone: log in, list, RETR every message with `window` commands in
/// flight (1: one at a time; intake pipelines 8), QUIT without DELE.
fn ceiling_rust(dovecot: &Dovecot, window: usize) -> (usize, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tls::install_crypto_provider();
        let config = tls::client_config(Some(&dovecot.ca_pem())).unwrap();
        let start = Instant::now();
        let mut c = pop3_client::connect(
            "127.0.0.1",
            dovecot.pop3s_port(),
            Pop3Tls::Implicit,
            config,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        c.login("support", "bench-password").await.unwrap();
        let list = c.uidl_all().await.unwrap();
        let mut bytes = 0;
        let mut sent = 0;
        for (i, (n, _)) in list.iter().enumerate() {
            while sent < list.len() && sent < i + window {
                c.send_retr(list[sent].0).await.unwrap();
                sent += 1;
            }
            bytes += c.read_retr(*n, 100 << 20).await.unwrap().len();
        }
        c.quit().await.unwrap();
        assert!(bytes > 0);
        (list.len(), start.elapsed())
    })
}

/// Python's poplib over POP3S, same mailbox.
fn ceiling_python(dovecot: &Dovecot, dir: &std::path::Path) -> Option<(usize, Duration)> {
    let ca = dir.join("bench-ca.pem");
    std::fs::write(&ca, dovecot.ca_pem()).ok()?;
    let script = format!(
        "import poplib,ssl,time\nctx=ssl.create_default_context(cafile='{}')\nt=time.time()\n\
         p=poplib.POP3_SSL('127.0.0.1',{},context=ctx)\np.user('support');p.pass_('bench-password')\n\
         n=len(p.uidl()[1])\nfor i in range(1,n+1): p.retr(i)\np.quit()\nprint(n, time.time()-t)\n",
        ca.display(),
        dovecot.pop3s_port()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let n: usize = it.next()?.parse().ok()?;
    let secs: f64 = it.next()?.parse().ok()?;
    Some((n, Duration::from_secs_f64(secs)))
}

struct Row {
    what: String,
    mails: usize,
    secs: f64,
    rss_mib: Option<f64>,
}

fn run_backend(backend: &'static str, mails: &[Vec<u8>], rows: &mut Vec<Row>) {
    let autoresponder = std::env::var("BENCH_INTAKE_AUTORESPONDER").as_deref() != Ok("off");
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "bench-password");
    dovecot.deliver_many("support", mails.iter().map(Vec::as_slice));
    // The mailbox on disk, as a real one would be, not still being written back while the
    // clients below read it.
    let synced = std::process::Command::new("sync").status();
    assert!(synced.is_ok_and(|s| s.success()), "sync failed");
    let bench_dir = tempfile::tempdir().unwrap();
    for (window, how) in [(1, "one at a time"), (8, "8 in flight, as intake")] {
        let (n, d) = ceiling_rust(&dovecot, window);
        rows.push(Row {
            what: format!("ceiling: mticket POP3 client, RETR only, {how} ({backend} run)"),
            mails: n,
            secs: d.as_secs_f64(),
            rss_mib: None,
        });
    }
    if let Some((n, d)) = ceiling_python(&dovecot, bench_dir.path()) {
        rows.push(Row {
            what: format!("ceiling: Python poplib, RETR only ({backend} run)"),
            mails: n,
            secs: d.as_secs_f64(),
            rss_mib: None,
        });
    }
    let sink = Sink::start_with_auth("support", "bench-password");
    let mut gateway = Gateway::new(Options {
        poll_interval: "1s",
        max_per_sender_per_day: 1000,
        backend: Some(backend),
        ..Options::default()
    });
    gateway.add_queue(
        "Support",
        "support@example.test",
        Some((&dovecot, "support", "bench-password")),
        Some(&sink),
        if autoresponder {
            &[]
        } else {
            &["--no-autoresponder"]
        },
    );
    let start = Instant::now();
    gateway.start();
    gateway.wait_for("the mailbox emptied", Duration::from_secs(1800), || {
        (dovecot.count("support") == 0).then_some(())
    });
    let secs = start.elapsed().as_secs_f64();
    let rss = gateway.peak_rss_kib().map(|k| k as f64 / 1024.0);
    let total = gateway.json(&["stats"])["total"].as_u64().unwrap() as usize;
    assert_eq!(total, mails.len(), "every mail became a ticket");
    gateway.stop();
    rows.push(Row {
        what: format!(
            "mticket intake into {backend} (POP3S → tickets, autoresponder {})",
            if autoresponder { "on" } else { "off" }
        ),
        mails: total,
        secs,
        rss_mib: rss,
    });
}

/// The ticket-system peer: the first `BENCH_INTAKE_RT_SAMPLE` mails (default 200) through
/// Request Tracker 5's `rt-mailgate`, one process per mail as an MTA alias runs it, into a
/// private RT on SQLite; once one at a time, then 4 in parallel. RT's own autoreplies stay
/// on (written to a file). Left out, with the reason, when RT is missing or fails.
fn run_rt(mails: &[Vec<u8>], rows: &mut Vec<Row>) {
    let sample: usize = std::env::var("BENCH_INTAKE_RT_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let sample = &mails[..sample.min(mails.len())];
    if sample.is_empty() {
        println!("Request Tracker 5 left out: BENCH_INTAKE_RT_SAMPLE=0");
        return;
    }
    let start = Instant::now();
    let rt = match Rt::start() {
        Ok(rt) => rt,
        Err(e) => {
            println!("Request Tracker 5 left out: {e}");
            return;
        }
    };
    println!(
        "Request Tracker 5: database and server ready in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let mut tickets = 0;
    for parallel in [1, 4] {
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..parallel {
                s.spawn(|| {
                    while let Some(mail) = sample.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(e) = rt.mailgate(mail) {
                            failures.lock().unwrap().push(e);
                        }
                    }
                });
            }
        });
        let secs = start.elapsed().as_secs_f64();
        tickets += sample.len();
        let failures = failures.into_inner().unwrap();
        let counted = rt.ticket_count();
        if !failures.is_empty() || counted != Ok(tickets) {
            println!(
                "Request Tracker 5 left out: {} of {} mails failed{}; tickets in RT: {:?}, \
                 expected {tickets}; RT's log:\n{}",
                failures.len(),
                sample.len(),
                failures
                    .first()
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default(),
                counted,
                rt.log()
            );
            return;
        }
        let how = if parallel == 1 {
            "one at a time".to_string()
        } else {
            format!("{parallel} in parallel")
        };
        rows.push(Row {
            what: format!(
                "peer: Request Tracker 5, rt-mailgate → RT on SQLite (sample of {} mails, {how})",
                sample.len()
            ),
            mails: sample.len(),
            secs,
            rss_mib: None,
        });
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and must not start a ten-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("intake benchmark: run it with `scripts/bench` or `cargo bench --bench intake`");
        return;
    }
    let n: usize = std::env::var("BENCH_INTAKE_MAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mails: Vec<Vec<u8>> = (0..n).map(|i| mail(i, &mut rng)).collect();
    let bytes: usize = mails.iter().map(Vec::len).sum();
    println!("{n} mails, {:.1} MB", bytes as f64 / 1e6);
    let mut rows = Vec::new();
    run_backend("sqlite", &mails, &mut rows);
    run_rt(&mails, &mut rows);
    if std::env::var("MTICKET_TEST_POSTGRES").is_ok() {
        run_backend("postgres", &mails, &mut rows);
    } else {
        println!("PostgreSQL skipped: MTICKET_TEST_POSTGRES is not set (scripts/bench sets it)");
    }
    // The mticket client's RETR-only rate: one command at a time (a plain POP3 client) or
    // pipelined as intake retrieves.
    let ceiling = |backend: &str, how: &str| {
        rows.iter()
            .find(|r| {
                r.what.starts_with("ceiling: mticket")
                    && r.what.contains(how)
                    && r.what.contains(backend)
            })
            .map(|r| r.mails as f64 / r.secs)
    };
    let mut report = format!(
        "\n## Intake, {} ({} mails, {:.1} MB, 2–60 KB, a fifth with attachments)\n\n\
         Machine: {}. Ratios = mails/s ÷ the RETR-only rate of the same mailbox in the same run by the mticket POP3 client, as a plain client (one command at a time) and pipelined as intake retrieves (8 in flight){}.\n\n\
         | figure | mails | seconds | mails/s | ratio to plain retrieval | ratio to pipelined retrieval | peak RSS |\n|---|---|---|---|---|---|---|\n",
        report::now(),
        n,
        bytes as f64 / 1e6,
        report::machine(),
        if rows.iter().any(|r| r.what.starts_with("peer:")) {
            " (the SQLite run's for the peer: Request Tracker 5, given the first mails of the set by rt-mailgate)"
        } else {
            ""
        }
    );
    for r in &rows {
        let rate = r.mails as f64 / r.secs;
        let backend = if r.what.contains("postgres") {
            "postgres"
        } else {
            "sqlite"
        };
        let ratio = |how: &str| {
            if r.what.starts_with("mticket") || r.what.starts_with("peer:") {
                ceiling(backend, how)
                    .map(|c| match rate / c {
                        // The peer is orders of magnitude below the ceiling: four decimals.
                        x if x < 0.1 => format!("{x:.4}"),
                        x => format!("{x:.2}"),
                    })
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        report.push_str(&format!(
            "| {} | {} | {:.2} | {} | {} | {} | {} |\n",
            r.what,
            r.mails,
            r.secs,
            if rate < 10.0 {
                format!("{rate:.1}")
            } else {
                format!("{rate:.0}")
            },
            ratio("one at a time"),
            ratio("8 in flight"),
            r.rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_default()
        ));
    }
    report::publish("intake", &summary(&rows), &report);
}

/// The rows of the summary table: intake on each database against a plain POP3 client
/// (Python's poplib) and against mticket's own client pipelined as intake retrieves, both
/// only retrieving the same mailbox; and against Request Tracker's rt-mailgate.
fn summary(rows: &[Row]) -> Vec<report::Row> {
    let rate = |r: &Row| r.mails as f64 / r.secs;
    let show = |x: f64| {
        if x < 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.0}")
        }
    };
    let find = |starts: &str, has: &str| {
        rows.iter()
            .find(|r| r.what.starts_with(starts) && r.what.contains(has))
    };
    let mut out = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let Some(m) = find("mticket intake into", backend) else {
            continue;
        };
        let peers = [
            (
                "ceiling: Python poplib",
                backend,
                "a plain POP3 client (Python poplib) only retrieving the same mailbox",
            ),
            (
                "ceiling: mticket POP3 client",
                "8 in flight",
                "mticket's POP3 client only retrieving, pipelined as intake",
            ),
        ];
        for (starts, has, who) in peers {
            if let Some(p) = rows.iter().find(|r| {
                r.what.starts_with(starts) && r.what.contains(has) && r.what.contains(backend)
            }) {
                out.push(
                    report::Row::new(
                        format!("POP3S → tickets on {backend}, mails/s; peer: {who}"),
                        show(rate(m)),
                    )
                    .against(show(rate(p)), report::ratio(rate(m) / rate(p))),
                );
            }
        }
    }
    if let (Some(m), Some(rt)) = (
        find("mticket intake into", "sqlite"),
        rows.iter()
            .filter(|r| r.what.starts_with("peer:"))
            .max_by(|a, b| rate(a).total_cmp(&rate(b))),
    ) {
        out.push(
            report::Row::new(
                format!(
                    "POP3S → tickets on sqlite, mails/s; peer: {}",
                    rt.what.trim_start_matches("peer: ")
                ),
                show(rate(m)),
            )
            .against(show(rate(rt)), report::ratio(rate(m) / rate(rt))),
        );
    }
    out
}
