//! The fault suite: what the network, the disk, the database or a client do wrong, one
//! fault after another against one running gateway. Each ends with nothing acknowledged
//! lost, the server answering again, and a log line that says what happened. The summary
//! prints a table of the faults tried and the mails lost.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options, ca_file};
use support::link::Link;
use support::sink::{Fault, Sink};

/// How one fault went.
struct Outcome {
    fault: &'static str,
    /// Mails the gateway acknowledged (SMTP 250) around the fault.
    acknowledged: usize,
    /// Of those, not found as a ticket afterwards, or found twice; autoresponses never sent.
    lost: usize,
    /// The log line that tells of it.
    logged: &'static str,
}

/// A plain SMTP client: the final reply code to DATA (or the first refusal).
fn smtp_send(port: u16, from: &str, to: &str, raw: &str) -> u16 {
    smtp_send_as(port, None, from, to, raw)
}

/// As [`smtp_send`], logging in first (AUTH PLAIN, on a loopback port that allows it).
fn smtp_send_as(port: u16, login: Option<(&str, &str)>, from: &str, to: &str, raw: &str) -> u16 {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut reply = |w: &mut TcpStream, line: Option<String>| -> u16 {
        if let Some(line) = line
            && w.write_all(line.as_bytes()).is_err()
        {
            return 0;
        }
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap_or(0) == 0 {
                return 0;
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
    };
    let mut steps = vec![(None, 220), (Some("EHLO faults.test\r\n".to_string()), 250)];
    if let Some((user, password)) = login {
        use base64::Engine;
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        steps.push((Some(format!("AUTH PLAIN {plain}\r\n")), 235));
    }
    steps.extend([
        (Some(format!("MAIL FROM:<{from}>\r\n")), 250),
        (Some(format!("RCPT TO:<{to}>\r\n")), 250),
        (Some("DATA\r\n".to_string()), 354),
        (Some(format!("{raw}\r\n.\r\n")), 250),
    ]);
    for (step, want) in steps {
        let code = reply(&mut w, step);
        if code != want {
            return code;
        }
    }
    let _ = reply(&mut w, Some("QUIT\r\n".into()));
    250
}

fn customer_mail(marker: &str) -> String {
    format!(
        "From: Kunde <kunde-{m}@firma.example>\r\nTo: support@shop.test\r\nSubject: Frage {marker}\r\n\
         Message-ID: <{marker}@firma.example>\r\n\r\nHallo, {marker}.\r\n",
        m = marker.to_lowercase()
    )
}

/// How many tickets carry `marker` as a word of their subject.
fn tickets_with(gw: &Gateway, marker: &str) -> usize {
    gw.tickets(&[])
        .iter()
        .filter(|t| {
            t["subject"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .any(|w| w == marker)
        })
        .count()
}

/// Mails `PREFIX0` … from `kunde-prefixN@firma.example` to the Support queue; how many
/// were acknowledged.
fn send_marked(gw: &Gateway, prefix: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let marker = format!("{prefix}{i}");
            smtp_send(
                gw.inbound_port,
                &format!("kunde-{}@firma.example", marker.to_lowercase()),
                "support@shop.test",
                &customer_mail(&marker),
            ) == 250
        })
        .count()
}

/// Waits until the senders of [`send_marked`]'s `n` mails each got an autoresponse.
fn wait_for_autoresponses(gw: &Gateway, sink: &Sink, prefix: &str, n: usize) {
    gw.wait_for("the autoresponses", Duration::from_secs(120), || {
        let got = sink.messages();
        (0..n)
            .all(|i| {
                let to = format!("kunde-{}{i}@firma.example", prefix.to_lowercase());
                got.iter().any(|m| m.rcpt_tos.contains(&to))
            })
            .then_some(())
    });
}

/// Of the mails `PREFIX0` …, how many are not exactly one ticket.
fn not_one_ticket(gw: &Gateway, prefix: &str, n: usize) -> usize {
    (0..n)
        .map(|i| tickets_with(gw, &format!("{prefix}{i}")).abs_diff(1))
        .sum()
}

/// The gateway answers: a fresh mail is acknowledged and becomes a ticket.
fn answers_again(gw: &Gateway, name: &str) {
    let marker = format!("AFTER-{}", name.replace(' ', "-"));
    let code = smtp_send(
        gw.inbound_port,
        "danach@firma.example",
        "support@shop.test",
        &customer_mail(&marker),
    );
    assert_eq!(code, 250, "after {name}: not answering\n{}", gw.log());
    assert_eq!(tickets_with(gw, &marker), 1, "after {name}");
}

fn wait_for_log(gw: &Gateway, line: &str) {
    gw.wait_for(
        &format!("the log line {line:?}"),
        Duration::from_secs(30),
        || gw.log().contains(line).then_some(()),
    );
}

/// A client that sends half a mail and hangs up: no ticket, and a log line.
fn client_stops_mid_data(gw: &Gateway) -> Outcome {
    let mut s = TcpStream::connect(("127.0.0.1", gw.inbound_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    for cmd in [
        "",
        "EHLO half.test\r\n",
        "MAIL FROM:<half@firma.example>\r\n",
        "RCPT TO:<support@shop.test>\r\n",
        "DATA\r\n",
    ] {
        s.write_all(cmd.as_bytes()).unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    }
    let mail = customer_mail("HALFMAIL");
    s.write_all(&mail.as_bytes()[..mail.len() / 2]).unwrap();
    drop(r);
    drop(s);
    let logged = "client went away in the middle of DATA";
    wait_for_log(gw, logged);
    answers_again(gw, "mid-DATA");
    Outcome {
        fault: "client stops mid-DATA",
        acknowledged: 0,
        lost: tickets_with(gw, "HALFMAIL"),
        logged,
    }
}

/// An IMAP client that announces a literal, sends part of it and hangs up: nothing stored.
fn client_stops_mid_literal(gw: &Gateway) -> Outcome {
    let imap = |cmds: &[&str], until: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", gw.imap_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut said = String::new();
        let mut buf = [0u8; 4096];
        let mut expect = |s: &mut TcpStream, what: &str, said: &mut String| {
            while !said.contains(what) {
                let n = s.read(&mut buf).unwrap_or(0);
                assert!(n > 0, "IMAP: no {what:?} in {said}");
                said.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        expect(&mut s, "* OK", &mut said);
        for (i, cmd) in cmds.iter().enumerate() {
            s.write_all(cmd.as_bytes()).unwrap();
            let last = i + 1 == cmds.len();
            if !last {
                expect(&mut s, &format!("t{i} OK"), &mut said);
            }
        }
        expect(&mut s, until, &mut said);
        said
    };
    let _ = imap(
        &[
            "t0 LOGIN anna anna-secret\r\n",
            "t1 APPEND Drafts {5000}\r\n",
        ],
        "+",
    );
    // The first session is gone: it sent the announcement, then nothing of the 5,000 bytes
    // (a second one sends a part and hangs up).
    let logged = "client went away in the middle of a literal";
    let went_away = |n: usize| {
        gw.wait_for(
            &format!("the log line {logged:?} {n} times"),
            Duration::from_secs(30),
            || (gw.log().matches(logged).count() >= n).then_some(()),
        )
    };
    went_away(1);
    let mut s = TcpStream::connect(("127.0.0.1", gw.imap_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf).unwrap();
    s.write_all(b"t0 LOGIN anna anna-secret\r\nt1 APPEND Drafts {5000+}\r\nFrom: x\r\n\r\nhalf")
        .unwrap();
    // Nothing left unread once the login is answered: the hang-up is an orderly end of the
    // stream after the half literal, not a reset that could drop it.
    let mut said = String::new();
    while !said.contains("t0 OK") {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "IMAP: no answer to LOGIN in {said}");
        said.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(s);
    went_away(2);
    let said = imap(
        &["t0 LOGIN anna anna-secret\r\n", "t1 SELECT Drafts\r\n"],
        "t1 OK",
    );
    assert!(said.contains("* 0 EXISTS"), "{said}");
    answers_again(gw, "mid-literal");
    Outcome {
        fault: "client stops mid-literal (IMAP APPEND)",
        acknowledged: 0,
        lost: 0,
        logged,
    }
}

/// The upstream SMTP server goes away while mail comes in, and comes back: every
/// autoresponse goes out once it is back.
fn upstream_smtp_outage(gw: &Gateway, sink: &mut Sink) -> Outcome {
    sink.stop();
    let acknowledged = send_marked(gw, "SMTPDOWN", 10);
    assert_eq!(acknowledged, 10, "intake does not need the upstream");
    let logged = "relay failed for now";
    wait_for_log(gw, logged);
    sink.restart();
    wait_for_autoresponses(gw, sink, "SMTPDOWN", 10);
    answers_again(gw, "SMTP outage");
    let lost = not_one_ticket(gw, "SMTPDOWN", 10);
    Outcome {
        fault: "upstream SMTP down, then back",
        acknowledged,
        lost,
        logged,
    }
}

/// The database goes away for a while (PostgreSQL: connections cut and refused; SQLite:
/// another process holds the write lock for longer than a writer waits) while mail comes in: what is refused meanwhile is
/// sent again, and every mail is taken in exactly once.
fn database_away(gw: &Gateway) -> Outcome {
    const MAILS: usize = 10;
    let postgres = gw.db_url.starts_with("postgres");
    // SQLite: longer than a writer waits for the lock (15 s), so commits fail meanwhile.
    let away = Duration::from_secs(if postgres { 6 } else { 20 });
    let holder = if postgres {
        let name = gw.db_url.rsplit('/').next().unwrap().to_string();
        psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
        psql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ));
        let back = move || {
            psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
        };
        std::thread::spawn(move || {
            std::thread::sleep(away);
            back();
        })
    } else {
        let file = gw.db_url.trim_start_matches("sqlite://").to_string();
        let mut child = Command::new("sqlite3")
            .arg(&file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sqlite3 not found: apt-get install sqlite3");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b".timeout 10000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .unwrap();
        let mut said = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut said)
            .unwrap();
        assert_eq!(said.trim(), "locked", "sqlite3 did not take the lock");
        std::thread::spawn(move || {
            std::thread::sleep(away);
            let _ = stdin.write_all(b"COMMIT;\n.quit\n");
            drop(stdin);
            let _ = child.wait();
        })
    };
    let started = Instant::now();
    let mut codes = Vec::new();
    for i in 0..MAILS {
        let marker = format!("DBAWAY{i}");
        let code = smtp_send(
            gw.inbound_port,
            "db@firma.example",
            "support@shop.test",
            &customer_mail(&marker),
        );
        codes.push(code);
        if started.elapsed() < away {
            std::thread::sleep(away / MAILS as u32);
        }
    }
    holder.join().unwrap();
    // Refused mail is sent again, as a mail server would.
    let mut acknowledged = codes.iter().filter(|c| **c == 250).count();
    for (i, code) in codes.iter().enumerate() {
        if *code == 250 {
            continue;
        }
        assert!(
            (400..500).contains(code) || *code == 0,
            "mail {i} during the outage got {code}: a refusal must be temporary"
        );
        let marker = format!("DBAWAY{i}");
        gw.wait_for(
            "the mail taken after the outage",
            Duration::from_secs(60),
            || {
                (smtp_send(
                    gw.inbound_port,
                    "db@firma.example",
                    "support@shop.test",
                    &customer_mail(&marker),
                ) == 250)
                    .then_some(())
            },
        );
        acknowledged += 1;
    }
    answers_again(gw, "database away");
    let lost = not_one_ticket(gw, "DBAWAY", MAILS);
    let refused = codes.iter().filter(|c| **c != 250).count();
    eprintln!(
        "database away: {refused} of {MAILS} mails refused for now during the outage: {codes:?}"
    );
    Outcome {
        fault: "database away, then back",
        acknowledged,
        lost,
        // PostgreSQL refuses the connection at once (RCPT cannot be checked); SQLite's lock
        // holds up the commit.
        logged: if postgres {
            "cannot check a recipient"
        } else {
            "cannot commit mail"
        },
    }
}

/// Mails waiting in the POP3 mailbox behind the link.
struct Upstream<'a> {
    dovecot: &'a Dovecot,
    link: &'a Link,
}

const POST_USER: &str = "post";
const POST_PASSWORD: &str = "post-pw-1";

/// Waits until each marker's mail is a ticket and the mailbox is empty; how many are
/// missing or doubled.
fn taken_from_upstream(gw: &Gateway, up: &Upstream<'_>, markers: &[String]) -> usize {
    gw.wait_for("the mailbox taken in", Duration::from_secs(120), || {
        (up.dovecot.count(POST_USER) == 0 && markers.iter().all(|m| tickets_with(gw, m) >= 1))
            .then_some(())
    });
    markers
        .iter()
        .map(|m| tickets_with(gw, m).abs_diff(1))
        .sum()
}

fn deliver_upstream(up: &Upstream<'_>, markers: &[String]) {
    for m in markers {
        up.dovecot.deliver(POST_USER, customer_mail(m).as_bytes());
    }
}

/// The POP3 server is unreachable for a while: mail waits upstream and is taken once it
/// is back.
fn upstream_pop3_outage(gw: &Gateway, up: &Upstream<'_>) -> Outcome {
    up.link.cut();
    let logged = "polling failed";
    wait_for_log(gw, logged);
    let markers: Vec<String> = (0..10).map(|i| format!("POPDOWN{i}")).collect();
    deliver_upstream(up, &markers);
    // A poll after the delivery fails too, and takes nothing.
    let failed = gw.log().matches(logged).count();
    gw.wait_for(
        "a poll failing after the delivery",
        Duration::from_secs(30),
        || (gw.log().matches(logged).count() > failed).then_some(()),
    );
    assert!(markers.iter().all(|m| tickets_with(gw, m) == 0));
    up.link.restore();
    let lost = taken_from_upstream(gw, up, &markers);
    answers_again(gw, "POP3 outage");
    Outcome {
        fault: "upstream POP3 down, then back",
        acknowledged: markers.len(),
        lost,
        logged,
    }
}

/// A POP3 server that answers slowly (every chunk held back 100 ms): the mails still come.
fn slow_pop3_upstream(gw: &Gateway, up: &Upstream<'_>) -> Outcome {
    up.link.slow(Duration::from_millis(100));
    let markers: Vec<String> = (0..10).map(|i| format!("POPSLOW{i}")).collect();
    deliver_upstream(up, &markers);
    let lost = taken_from_upstream(gw, up, &markers);
    up.link.slow(Duration::ZERO);
    answers_again(gw, "slow POP3");
    Outcome {
        fault: "slow upstream POP3 (100 ms per chunk)",
        acknowledged: markers.len(),
        lost,
        logged: "polled",
    }
}

/// An upstream SMTP server that takes 300 ms per command: intake does not wait for it, and
/// every autoresponse gets through.
fn slow_smtp_upstream(gw: &Gateway, sink: &Sink) -> Outcome {
    sink.set_fault(None::<Fault>, None, Duration::from_millis(300));
    let started = Instant::now();
    let acknowledged = send_marked(gw, "SMTPSLOW", 5);
    let intake = started.elapsed();
    wait_for_autoresponses(gw, sink, "SMTPSLOW", 5);
    sink.clear_faults();
    eprintln!(
        "slow SMTP upstream: 5 mails taken in {:.2}s, their autoresponses out after {:.2}s",
        intake.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    answers_again(gw, "slow SMTP");
    let lost = not_one_ticket(gw, "SMTPSLOW", 5);
    Outcome {
        fault: "slow upstream SMTP (300 ms per command)",
        acknowledged,
        lost,
        logged: "relayed",
    }
}

/// Sets the gateway's limit on the size of files it writes (`RLIMIT_FSIZE`, soft limit):
/// a write past it fails as one on a full disk does.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let pid = pid as libc::pid_t;
    // SAFETY: prlimit reads and writes only the two structs passed.
    let got = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut current) };
    assert_eq!(got, 0, "prlimit: {}", std::io::Error::last_os_error());
    let wanted = libc::rlimit {
        rlim_cur: bytes.unwrap_or(current.rlim_max),
        rlim_max: current.rlim_max,
    };
    // SAFETY: as above.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &wanted, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// [`limit_file_size`] for a process of another user (the PostgreSQL server's): through
/// `prlimit` run as that user, since changing another user's limits needs a capability
/// that a container's root may lack.
fn limit_file_size_of(pid: u32, bytes: Option<u64>) {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
    // SAFETY: getuid has no preconditions.
    if owner == unsafe { libc::getuid() } {
        return limit_file_size(pid, bytes);
    }
    let user = String::from_utf8(
        Command::new("id")
            .args(["-nu", &owner.to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let soft = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let out = Command::new("runuser")
        .args([
            "-u",
            user.trim(),
            "--",
            "prlimit",
            "--pid",
            &pid.to_string(),
        ])
        .arg(format!("--fsize={soft}:"))
        .output()
        .expect("runuser and prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit for {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `q` on the test's PostgreSQL server as its admin; what it printed.
fn psql(q: &str) -> String {
    let admin = std::env::var("MTICKET_TEST_POSTGRES").unwrap();
    let out = Command::new("psql")
        .args([admin.as_str(), "-qAtc", q])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// PostgreSQL: the server processes serving the gateway's database, and the size of the
/// database's largest file.
fn postgres_backends(gw: &Gateway) -> (Vec<u32>, u64) {
    let name = gw.db_url.rsplit('/').next().unwrap();
    let pids = psql(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .lines()
    .map(|l| l.trim().parse().unwrap())
    .collect();
    let dir = psql(&format!(
        "SELECT current_setting('data_directory') || '/base/' || oid FROM pg_database \
         WHERE datname = '{name}'"
    ));
    let largest = std::fs::read_dir(dir.trim())
        .expect("the database's folder")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    (pids, largest)
}

/// A customer mail of about 1 MB that does not compress (PostgreSQL compresses what it
/// stores out of line).
fn big_mail(marker: &str) -> String {
    let mut x: u64 = marker.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut body = String::with_capacity(1_100_000);
    for _ in 0..14_000 {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(alphabet[(x % 64) as usize] as char);
        }
        body.push_str("\r\n");
    }
    format!("{}{body}", customer_mail(marker))
}

/// The disk under the database, where the raw mails are kept, fills up: mail is refused for
/// now, never acknowledged and lost, and taken once there is room again. A full disk is a
/// file size limit (`RLIMIT_FSIZE`) just above the largest file: on SQLite on the gateway,
/// which ignores SIGXFSZ; on PostgreSQL on the server processes serving the gateway's
/// database, which ignore it too ("so that ulimit violations work like disk full"). There
/// the limit stays above the 16 MB of a WAL segment, whose creation must not fail.
fn disk_full(gw: &Gateway) -> Outcome {
    let postgres = gw.db_url.starts_with("postgres");
    let (pids, limit, logged, fault) = if postgres {
        let (pids, largest) = postgres_backends(gw);
        (
            pids,
            (largest + 256 * 1024).max(17 << 20),
            // "could not extend file …: File too large", with the hint to check free disk space.
            "could not extend file",
            "disk full under the database (PostgreSQL)",
        )
    } else {
        let file = gw.db_url.trim_start_matches("sqlite://").to_string();
        let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let biggest = size(&file)
            .max(size(&format!("{file}-wal")))
            .max(size(&gw.path().join("serve.log").display().to_string()));
        (
            vec![gw.pid().unwrap()],
            biggest + 256 * 1024,
            // SQLite names a write refused for its size an I/O error (a full disk: "database
            // or disk is full").
            "disk I/O error",
            "disk full under the database (SQLite)",
        )
    };
    for pid in &pids {
        limit_file_size_of(*pid, Some(limit));
    }
    // Mails of 1 MB each until the disk is full, and two more.
    let mut codes: Vec<u16> = Vec::new();
    while codes.len() < 40 && codes.iter().filter(|c| **c != 250).count() < 3 {
        let marker = format!("DISKFULL{}", codes.len());
        codes.push(smtp_send(
            gw.inbound_port,
            "voll@firma.example",
            "support@shop.test",
            &big_mail(&marker),
        ));
    }
    wait_for_log(gw, logged);
    for pid in &pids {
        limit_file_size_of(*pid, None);
    }
    let mut acknowledged = 0;
    for (i, code) in codes.iter().enumerate() {
        let marker = format!("DISKFULL{i}");
        if *code != 250 {
            assert!(
                (400..500).contains(code),
                "mail {i} on a full disk got {code}"
            );
            assert_eq!(
                smtp_send(
                    gw.inbound_port,
                    "voll@firma.example",
                    "support@shop.test",
                    &big_mail(&marker)
                ),
                250,
                "mail {i} once there is room again"
            );
        }
        acknowledged += 1;
    }
    eprintln!("disk full: answers while full {codes:?}");
    answers_again(gw, "disk full");
    Outcome {
        fault,
        acknowledged,
        lost: not_one_ticket(gw, "DISKFULL", codes.len()),
        logged,
    }
}

#[test]
fn every_fault_ends_with_nothing_acknowledged_lost_and_the_server_answering() {
    let mut sink = Sink::start();
    let mut gw = Gateway::new(Options {
        allow_plain_on_loopback: true,
        max_per_sender_per_day: 100,
        ..Options::default()
    });
    gw.add_queue(
        "Support",
        "support@shop.test",
        None,
        Some(&sink),
        &["--autoresponder"],
    );
    gw.add_agent("anna", "anna@shop.test", "anna-secret", &["Support"]);
    // A second queue polls a POP3 mailbox through a link the test can cut and slow.
    let dovecot = Dovecot::start();
    dovecot.add_user(POST_USER, POST_PASSWORD);
    let link = Link::to(dovecot.pop3s_port());
    let pop3 = format!("127.0.0.1:{}", link.port());
    let ca = ca_file(gw.path(), &[dovecot.ca_pem()]);
    let out = gw.cli_with(
        &[
            "queue",
            "add",
            "--name",
            "Post",
            "--address",
            "post@shop.test",
            "--pop3",
            &pop3,
            "--pop3-tls",
            "implicit",
            "--no-autoresponder",
            "--login",
            POST_USER,
            "--password-env",
            "POST_PW",
            "--tls-ca",
            &ca,
        ],
        &[("POST_PW", POST_PASSWORD)],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.start();
    let upstream = Upstream {
        dovecot: &dovecot,
        link: &link,
    };

    let outcomes = vec![
        client_stops_mid_data(&gw),
        client_stops_mid_literal(&gw),
        upstream_smtp_outage(&gw, &mut sink),
        slow_smtp_upstream(&gw, &sink),
        upstream_pop3_outage(&gw, &upstream),
        slow_pop3_upstream(&gw, &upstream),
        database_away(&gw),
        disk_full(&gw),
    ];
    assert!(gw.is_running(), "gateway died:\n{}", gw.log());
    let log = gw.log();
    let mut table = format!(
        "fault summary ({}):\n| fault | mails acknowledged | mails lost | server answers after | log line |\n|---|---|---|---|---|\n",
        support::db::backend()
    );
    for o in &outcomes {
        assert!(
            log.contains(o.logged),
            "{}: no log line {:?}",
            o.fault,
            o.logged
        );
        table.push_str(&format!(
            "| {} | {} | {} | yes | {} |\n",
            o.fault, o.acknowledged, o.lost, o.logged
        ));
    }
    support::summary(&table);
    for o in &outcomes {
        assert_eq!(o.lost, 0, "{}: mails lost\n{table}", o.fault);
    }
}

/// 300 clients at once for a minute: 100 customers sending mail over SMTP, 100 agents'
/// IMAP sessions reading folders and 100 POP3 sessions reading the INBOX
/// (tests/peers/mixed_load.py). Every acknowledged mail is one ticket, no client sees an
/// error, and the gateway answers afterwards.
#[test]
fn three_hundred_clients_across_smtp_imap_and_pop3_for_a_minute() {
    let mut gw = Gateway::new(Options {
        max_per_sender_per_day: 1000,
        ..Options::default()
    });
    gw.add_queue("Support", "support@shop.test", None, None, &[]);
    let agents: Vec<String> = (0..20).map(|i| format!("agent{i}")).collect();
    for a in &agents {
        gw.add_agent(a, &format!("{a}@shop.test"), "load-secret", &["Support"]);
    }
    gw.start();
    for i in 0..3 {
        gw.customer_mail(
            &format!("vorher{i}@kunde.example"),
            "support@shop.test",
            &format!("Vorher {i}"),
            "Hallo",
        );
    }
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mixed_load.py");
    let rss_before = gw.peak_rss_kib().unwrap_or(0);
    let out = Command::new("python3")
        .arg(script)
        .args(["--inbound", &gw.inbound_port.to_string()])
        .args(["--imaps", &gw.imaps_port.to_string()])
        .args(["--pop3s", &gw.pop3s_port.to_string()])
        .args(["--cafile", &gw.cert_path().display().to_string()])
        .args(["--agents", &agents.join(",")])
        .args(["--run", &run, "--seconds", "60"])
        .env("LOAD_PASSWORD", "load-secret")
        .output()
        .expect("python3 (runs tests/peers/mixed_load.py)");
    assert!(
        out.status.success(),
        "mixed_load.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(gw.is_running(), "gateway died:\n{}", gw.log());
    let stats = &report["stats"];
    let acknowledged: Vec<String> = report["acknowledged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let mut found: std::collections::HashMap<String, usize> = Default::default();
    for t in gw.tickets(&[]) {
        for w in t["subject"].as_str().unwrap_or_default().split_whitespace() {
            if w.starts_with(&format!("LOAD-{run}-")) {
                *found.entry(w.to_string()).or_default() += 1;
            }
        }
    }
    let lost = acknowledged
        .iter()
        .filter(|m| found.get(*m) != Some(&1))
        .count();
    answers_again(&gw, "300 clients");
    support::summary(&format!(
        "300 clients for 60 s ({}): smtp {} imap {} pop3 {}; mails acknowledged {} lost {lost}; \
         tickets from the load {}; peak RSS {} → {} KiB",
        support::db::backend(),
        stats["smtp"],
        stats["imap"],
        stats["pop3"],
        acknowledged.len(),
        found.len(),
        rss_before,
        gw.peak_rss_kib().unwrap_or(0),
    ));
    assert_eq!(lost, 0, "acknowledged mails missing or doubled");
    assert_eq!(
        found.len(),
        acknowledged.len(),
        "a mail not acknowledged became a ticket"
    );
    // What the gateway warned of says why a client saw an error.
    let log = gw.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && !l.contains("slow statement"))
        .take(20)
        .collect();
    for proto in ["smtp", "imap", "pop3"] {
        assert_eq!(
            stats[proto]["errors"].as_u64(),
            Some(0),
            "{proto} errors: {}\n--- gateway warnings ---\n{}",
            stats[proto],
            warnings.join("\n")
        );
        assert!(stats[proto]["operations"].as_u64().unwrap() > 0, "{proto}");
    }
}

/// Agents' replies through the submission port while the gateway is killed at random
/// moments and restarted: every reply acknowledged with 250 reaches the customer, each at
/// most once more than it should (a kill between the commit and the 250, or between the
/// upstream's 250 and the outbox's record: at most one of each per kill).
#[test]
fn replies_survive_a_crash_loop_of_submission_and_outbox() {
    const TICKETS: usize = 30;
    const KILLS: usize = 8;
    let sink = Sink::start();
    let mut gw = Gateway::new(Options {
        allow_plain_on_loopback: true,
        max_per_sender_per_day: 100,
        ..Options::default()
    });
    gw.add_queue(
        "Support",
        "support@shop.test",
        None,
        Some(&sink),
        &["--no-autoresponder"],
    );
    gw.add_agent("anna", "anna@shop.test", "anna-secret", &["Support"]);
    gw.start();
    for i in 0..TICKETS {
        let marker = format!("CRASHREPLY{i}");
        let code = smtp_send(
            gw.inbound_port,
            &format!("kunde{i}@firma.example"),
            "support@shop.test",
            &customer_mail(&marker),
        );
        assert_eq!(code, 250);
    }
    let numbers: Vec<(i64, String)> = gw
        .tickets(&[])
        .iter()
        .map(|t| {
            (
                t["number"].as_i64().unwrap(),
                t["creator_address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(numbers.len(), TICKETS);

    // Replies go out one after another, each tried again until it is acknowledged.
    let port = gw.submission_port;
    let sender = std::thread::spawn(move || {
        let mut tries = 0;
        for (number, to) in &numbers {
            let raw = format!(
                "From: anna@shop.test\r\nTo: {to}\r\nSubject: Re: [Support #{number}] Frage\r\n\
                 Message-ID: <reply-{number}@agent.test>\r\n\r\nGuten Tag,\r\nerledigt.\r\n"
            );
            loop {
                tries += 1;
                let code = smtp_send_as(
                    port,
                    Some(("anna", "anna-secret")),
                    "anna@shop.test",
                    to,
                    &raw,
                );
                if code == 250 {
                    // Paced, so the replies span the kills.
                    std::thread::sleep(Duration::from_millis(150));
                    break;
                }
                assert!(
                    code == 0 || (400..500).contains(&code),
                    "reply to #{number}: {code}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        (numbers, tries)
    });
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(300 + rand::random::<u64>() % 1200));
        gw.kill();
        std::thread::sleep(Duration::from_millis(100));
        gw.start();
    }
    let (numbers, tries) = sender.join().unwrap();
    gw.wait_for("every reply at the sink", Duration::from_secs(120), || {
        numbers
            .iter()
            .all(|(_, to)| sink.messages().iter().any(|m| m.rcpt_tos.contains(to)))
            .then_some(())
    });
    // What is still queued goes out before counting: a second copy shows up too.
    gw.wait_until_sent();
    let mut per_ticket: std::collections::BTreeMap<String, usize> = Default::default();
    for m in sink.messages() {
        for r in &m.rcpt_tos {
            *per_ticket.entry(r.clone()).or_default() += 1;
        }
    }
    let twice: usize = per_ticket.values().map(|n| n - 1).sum();
    support::summary(&format!(
        "crash loop: {TICKETS} replies in {tries} tries over {KILLS} kills; \
         at the sink {} mails, {twice} of them a second time ({})",
        per_ticket.values().sum::<usize>(),
        support::db::backend()
    ));
    assert_eq!(
        per_ticket.len(),
        TICKETS,
        "a reply did not reach its customer"
    );
    assert!(
        twice <= 2 * KILLS,
        "{twice} replies twice after {KILLS} kills"
    );
}
