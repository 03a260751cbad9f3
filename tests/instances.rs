//! Several gateway instances on one database. On PostgreSQL two `mticket serve` share the
//! work: each queue is polled by one of them at a time, each outbox entry is sent by one,
//! ticket numbers stay unique and gap-free, and an IDLE client on one instance hears of a
//! change made through the other. SQLite serves one instance and refuses a second: there
//! the same tests run with the one instance (killed and restarted alike), and the change
//! comes from another process, the command line.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use mticket::store::{Content, NewOutbound, Store, StoreError};
use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options};
use support::header;
use support::sink::Sink;
use support::submit::{Agent, Draft, Security};

const QUEUES: [&str; 4] = ["Support", "Sales", "Billing", "Returns"];
const MAILS_PER_QUEUE: usize = 1250;
const KILLS: usize = 10;
const REPLIES: usize = 40;
const PASSWORD: &str = "scale-pw-1";

fn postgres() -> bool {
    support::db::backend() == "postgres"
}

fn login(queue: &str) -> String {
    queue.to_lowercase()
}

fn address(queue: &str) -> String {
    format!("{}@shop.test", queue.to_lowercase())
}

/// A customer mail with a marker naming its queue and number; every tenth is bulk mail,
/// which gets no autoresponse.
fn mail(run: &str, queue: &str, i: usize) -> Vec<u8> {
    let sender = format!("kunde{i}@firma{}.example", i % 17);
    let bulk = if i % 10 == 3 {
        "Precedence: bulk\r\n"
    } else {
        ""
    };
    format!(
        "From: Kunde {i} <{sender}>\r\nTo: {to}\r\nSubject: Anfrage SCALE-{run}-{queue}-{i:04}\r\n\
         Date: Fri, 27 Nov 2026 10:00:00 +0100\r\nMessage-ID: <scale-{run}-{queue}-{i}@firma.example>\r\n\
         {bulk}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hallo,\r\nBestellung {i} ist nicht angekommen.\r\nGrüße\r\n",
        to = address(queue),
    )
    .into_bytes()
}

/// One number from the database, read as a test reaching into the store.
fn count(url: &str, sql: &'static str) -> i64 {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.expect("database");
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
        pool.close().await;
        n
    })
}

/// Two instances on one database (the second's `serve` is refused on SQLite).
fn pair(opts: Options) -> (Gateway, Gateway) {
    let a = Gateway::new(opts);
    let b = Gateway::new(Options {
        database_url: Some(a.db_url.clone()),
        poll_interval: "200ms",
        max_per_sender_per_day: 1000,
        ..Options::default()
    });
    (a, b)
}

/// SQLite: a second `serve` on the database exits with the reason.
fn assert_second_refused(b: &Gateway) {
    let out = Command::new(env!("CARGO_BIN_EXE_mticket"))
        .arg("--config")
        .arg(&b.config)
        .arg("serve")
        .current_dir(b.path())
        .env_remove("MTICKET_TEST_DB")
        .env_remove("MTICKET_TEST_POSTGRES")
        .output()
        .expect("mticket");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("SQLite serves one gateway instance"),
        "a second serve on SQLite must be refused: {said}"
    );
}

#[test]
fn two_instances_take_in_5000_mails_from_4_queues_while_one_is_killed_again_and_again() {
    let started = Instant::now();
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let dovecot = Dovecot::start();
    let accounts: Vec<(String, &str)> = QUEUES.iter().map(|q| (login(q), PASSWORD)).collect();
    for (user, pass) in &accounts {
        dovecot.add_user(user, pass);
    }
    let logins: Vec<(&str, &str)> = accounts.iter().map(|(u, p)| (u.as_str(), *p)).collect();
    let sink = Sink::start_fast_with_logins(&logins);
    for q in QUEUES {
        let mails: Vec<Vec<u8>> = (0..MAILS_PER_QUEUE).map(|i| mail(&run, q, i)).collect();
        dovecot.deliver_many(&login(q), mails.iter().map(Vec::as_slice));
    }
    let total = QUEUES.len() * MAILS_PER_QUEUE;

    let (mut a, mut b) = pair(Options {
        poll_interval: "200ms",
        max_per_sender_per_day: 1000,
        ..Options::default()
    });
    for q in QUEUES {
        let user = login(q);
        a.add_queue(
            q,
            &address(q),
            Some((&dovecot, &user, PASSWORD)),
            Some(&sink),
            &["--autoresponder"],
        );
    }
    a.add_agent("anna", "anna@shop.test", "anna-secret", &QUEUES);
    a.start();
    // On PostgreSQL the second instance runs beside the first and is the one killed; on
    // SQLite it is refused, and the one instance is killed instead.
    let two = postgres();
    if two {
        b.start();
    } else {
        assert_second_refused(&b);
    }

    let mut progress = Vec::new();
    let mut replies: Vec<(i64, String)> = Vec::new();
    for k in 0..KILLS {
        std::thread::sleep(Duration::from_millis(800 + rand::random::<u64>() % 2200));
        let victim = if two { &mut b } else { &mut a };
        assert!(victim.is_running(), "gateway died:\n{}", victim.log());
        victim.kill();
        std::thread::sleep(Duration::from_millis(200));
        victim.start();
        let tickets = a.tickets(&[]);
        progress.push((started.elapsed().as_secs(), tickets.len(), sink.count()));
        if k == KILLS / 2 {
            // Agents answer while the other instance keeps getting killed: each reply is
            // committed by the instance that takes it, and relayed by whichever claims it.
            let agent = Agent {
                gateway: &a,
                login: "anna",
                password: "anna-secret",
                tls: Security::StartTls,
            };
            let mut raws = Vec::new();
            for t in tickets.iter().take(REPLIES) {
                let number = t["number"].as_i64().unwrap();
                let queue = t["queue"].as_str().unwrap();
                let to = t["creator_address"].as_str().unwrap().to_string();
                let draft = Draft {
                    from: "anna@shop.test",
                    to: &[&to],
                    cc: &[],
                    subject: &format!("Re: [{queue} #{number}] Ihre Anfrage"),
                    in_reply_to: None,
                    body: "Guten Tag,\nIhr Paket ist unterwegs.\nAnna\n",
                };
                raws.push(draft.raw());
                replies.push((number, to));
            }
            let answers = agent.send_many("anna@shop.test", &[], &raws, 4);
            assert!(
                answers.iter().all(|a| a.accepted()),
                "replies: {answers:?}\n{}",
                a.log()
            );
        }
    }
    let kills_done = Instant::now();

    let due = total - total / 10;
    a.wait_for("every mailbox emptied", Duration::from_secs(600), || {
        QUEUES
            .iter()
            .all(|q| dovecot.count(&login(q)) == 0)
            .then_some(())
    });
    // Sent, as the outbox records it: then every mail is at the sink (and a duplicate too).
    a.wait_for(
        "every autoresponse and reply sent",
        Duration::from_secs(600),
        || {
            let outbox = &a.json(&["instances"])["outbox"];
            (outbox["sent"].as_u64() == Some((due + replies.len()) as u64)).then_some(())
        },
    );
    // Long enough for a late duplicate to show.
    std::thread::sleep(Duration::from_secs(2));
    assert!(a.is_running(), "gateway died:\n{}", a.log());
    let finished = started.elapsed();

    // Tickets: one per mail, numbers unique and without gaps, each marker once.
    let tickets = a.tickets(&[]);
    let numbers: BTreeSet<i64> = tickets
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    assert_eq!(tickets.len(), total, "one ticket per mail");
    assert_eq!(numbers.len(), total, "ticket numbers are unique");
    let (first, last) = (*numbers.first().unwrap(), *numbers.last().unwrap());
    assert_eq!(
        last - first + 1,
        total as i64,
        "ticket numbers have no gaps"
    );
    let mut markers: BTreeMap<String, usize> = BTreeMap::new();
    let mut creator: HashMap<i64, String> = HashMap::new();
    for t in &tickets {
        let subject = t["subject"].as_str().unwrap();
        let marker = subject
            .split_whitespace()
            .find(|w| w.starts_with(&format!("SCALE-{run}-")))
            .unwrap_or_else(|| panic!("ticket without a marker: {subject}"));
        *markers.entry(marker.to_string()).or_default() += 1;
        creator.insert(
            t["number"].as_i64().unwrap(),
            t["creator_address"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(markers.len(), total, "every mail became a ticket");
    assert!(
        markers.values().all(|&n| n == 1),
        "a mail became two tickets"
    );
    let customer_items = count(
        &a.db_url,
        "SELECT COUNT(*) FROM items WHERE kind = 'customer'",
    );
    assert_eq!(customer_items, total as i64, "customer items");

    // Autoresponses and replies: each once (a duplicate only where a kill fell between
    // the upstream's 250 and the outbox commit: at most one per kill, and counted).
    let mut autoresponses: BTreeMap<i64, usize> = BTreeMap::new();
    let mut replied: BTreeMap<i64, usize> = BTreeMap::new();
    let mut by_message_id: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        let number: i64 = header(&m.raw, "X-Ticket-Number")
            .and_then(|n| n.parse().ok())
            .expect("outgoing mail without X-Ticket-Number");
        assert_eq!(
            m.rcpt_tos,
            vec![creator[&number].clone()],
            "mail for #{number} to the wrong recipient"
        );
        *by_message_id
            .entry(header(&m.raw, "Message-ID").unwrap_or_default())
            .or_default() += 1;
        if header(&m.raw, "Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied")) {
            *autoresponses.entry(number).or_default() += 1;
        } else {
            *replied.entry(number).or_default() += 1;
        }
    }
    assert_eq!(autoresponses.len(), due, "tickets with an autoresponse");
    let replied_tickets: BTreeSet<i64> = replies.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        replied.keys().copied().collect::<BTreeSet<_>>(),
        replied_tickets,
        "tickets with a reply"
    );
    let duplicates: usize = by_message_id.values().map(|n| n - 1).sum();
    let report = a.json(&["instances"]);
    let taken_over = report["outbox"]["taken_over"].as_i64().unwrap();
    assert_eq!(report["outbox"]["pending"].as_i64(), Some(0), "{report}");
    assert_eq!(report["outbox"]["failed"].as_i64(), Some(0), "{report}");
    assert!(
        duplicates <= KILLS,
        "{duplicates} mails sent twice after {KILLS} kills"
    );
    assert!(
        duplicates as i64 <= taken_over,
        "{duplicates} mails sent twice, but only {taken_over} outbox entries were taken over"
    );
    let instances = if two { 2 } else { 1 };
    support::summary(&format!(
        "instances summary: backend={} instances={instances} queues={} mails={total} kills={KILLS} \
         customer_items={customer_items} tickets={} numbers={first}..={last} autoresponses_due={due} autoresponses={} replies={} \
         sent_twice={duplicates} outbox_taken_over={taken_over} progress_at_kills={progress:?} \
         elapsed={:.1}s (after the last kill {:.1}s)",
        support::db::backend(),
        QUEUES.len(),
        tickets.len(),
        autoresponses.values().sum::<usize>(),
        replied.values().sum::<usize>(),
        finished.as_secs_f64(),
        kills_done.elapsed().as_secs_f64(),
    ));
}

/// Takes an instance for dead, as when it was killed and its time ran out.
async fn die(url: &str, store: &Store) {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::query("UPDATE instances SET alive_until = 0 WHERE id = $1")
        .bind(store.instance().to_string())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[test]
fn a_lease_and_an_outbox_entry_belong_to_one_live_instance_at_a_time() {
    let gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    let url = gateway.db_url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let a = Store::connect(&url).await.unwrap();
        let b = Store::connect(&url).await.unwrap();
        assert_ne!(a.instance(), b.instance());
        a.join("host-a", 1, false, &|_| false).await.unwrap();
        b.join("host-b", 2, false, &|_| false).await.unwrap();

        // One holder; the other is refused, and cannot commit under the lease.
        let queue = a.queue_by_name("Support").await.unwrap();
        let name = format!("poll:{}", queue.id);
        let (la, lb) = (a.lease(name.clone()), b.lease(name));
        assert!(a.take_lease(&la).await.unwrap());
        assert!(!b.take_lease(&lb).await.unwrap());
        assert!(a.take_lease(&la).await.unwrap(), "the holder keeps it");
        let mut tx = b.begin().await.unwrap();
        assert!(matches!(tx.hold(&lb).await, Err(StoreError::LeaseLost(_))));
        drop(tx);
        let mut tx = a.begin().await.unwrap();
        tx.hold(&la).await.unwrap();
        tx.commit().await.unwrap();

        // Outbox entries: each claimed by one live instance.
        let mut tx = a.begin().await.unwrap();
        for i in 0..10 {
            tx.outbox_add(&NewOutbound {
                queue_id: queue.id,
                ticket_id: None,
                agent_id: None,
                kind: "autoresponse",
                mail_from: "support@shop.test",
                rcpt_to: &["kunde@example.test".to_string()],
                message_id: &format!("claim-{i}@test"),
                content: Content::Bytes(b"Subject: x\r\n\r\nx\r\n"),
            });
        }
        tx.commit().await.unwrap();
        let now = 4_000_000_000; // every entry is due
        let of_a = a.outbox_claim(now, 6).await.unwrap();
        let of_b = b.outbox_claim(now, 10).await.unwrap();
        assert_eq!((of_a.len(), of_b.len()), (6, 4));
        let ids = |v: &[mticket::store::Outbound]| v.iter().map(|o| o.id).collect::<BTreeSet<_>>();
        assert!(ids(&of_a).is_disjoint(&ids(&of_b)));
        assert!(
            b.outbox_claim(now, 10).await.unwrap().len() == 4,
            "b's own claims only"
        );
        a.outbox_sent(of_a[0].id).await.unwrap();

        // a dies: b takes its lease and its unsent entries (counted); a's commits fail.
        die(&url, &a).await;
        assert!(b.take_lease(&lb).await.unwrap());
        assert!(!a.take_lease(&la).await.unwrap());
        let mut tx = a.begin().await.unwrap();
        assert!(matches!(tx.hold(&la).await, Err(StoreError::LeaseLost(_))));
        drop(tx);
        let taken = b.outbox_claim(now, 10).await.unwrap();
        assert_eq!(taken.len(), 9, "b's 4 and a's 5 unsent");
        let report = b.instances_report().await.unwrap();
        assert_eq!(report.outbox.taken_over, 5);
        assert_eq!(report.outbox.sent, 1);
        let alive: Vec<bool> = report.instances.iter().map(|i| i.alive).collect();
        assert_eq!(alive, vec![false, true]);
        assert_eq!(report.leases.len(), 1);
        assert_eq!(report.leases[0].holder, b.instance());

        // b signs off: its lease and claims are free at once, for a (alive again).
        b.leave().await.unwrap();
        a.stay_alive("host-a", 1).await.unwrap();
        assert!(a.take_lease(&la).await.unwrap());
        assert_eq!(a.outbox_claim(now, 10).await.unwrap().len(), 9);
        assert_eq!(a.instances_report().await.unwrap().outbox.taken_over, 5);
    });
    let shown = gateway.cli_ok(&["instances"]);
    assert!(shown.contains("polls queue Support"), "{shown}");
    assert!(shown.contains("1 sent"), "{shown}");
    assert!(
        shown.contains("Mailbox: 0 changed tickets waiting for their new message"),
        "{shown}"
    );
}

/// Watches Queues/Support on instance A in IDLE while the ticket is changed and a new one
/// comes in through instance B (on SQLite: the change through the command line, the new
/// mail through A); prints how long each took to be told, from the start of the change.
const IDLE_SCRIPT: &str = r#"
import imaplib, os, smtplib, ssl, subprocess, time
env = os.environ

def connect(port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
    m.login("anna", "anna-secret")
    m.select("Queues/Support")
    return m

watcher = connect(env["A_IMAPS"], env["A_CAFILE"])

def idle_until(pred, change):
    tag = watcher._new_tag().decode()
    watcher.send(f"{tag} IDLE\r\n".encode())
    assert watcher.readline().startswith(b"+")
    start = time.monotonic()
    change()
    seen = []
    watcher.sock.settimeout(10)
    while not pred(seen):
        seen.append(watcher.readline().decode().strip())
    took = time.monotonic() - start
    watcher.send(b"DONE\r\n")
    while not watcher.readline().decode().startswith(tag):
        pass
    return took, seen

def flag_through_b():
    if env["B_IMAPS"]:
        m = connect(env["B_IMAPS"], env["B_CAFILE"])
        typ, data = m.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "1")
        m.uid("STORE", data[0].decode(), "+FLAGS", "(\\Flagged)")
        m.logout()
    else:
        subprocess.run([env["MTICKET"], "--config", env["CONFIG"], "ticket", "status", "1", "open"],
                       check=True, capture_output=True)

def mail_through_b():
    s = smtplib.SMTP("127.0.0.1", int(env["B_INBOUND"]))
    s.sendmail("neu@kunde.example", ["support@shop.test"],
               "From: neu@kunde.example\r\nTo: support@shop.test\r\nSubject: Ganz neu\r\n\r\nHallo\r\n")
    s.quit()

took, seen = idle_until(lambda s: any("EXPUNGE" in l for l in s) and any(l.endswith("EXISTS") for l in s), flag_through_b)
print(f"changed ticket told after {took:.2f}s: {seen}")
took, seen = idle_until(lambda s: any(l.endswith("EXISTS") for l in s), mail_through_b)
print(f"new ticket told after {took:.2f}s: {seen}")
watcher.logout()
"#;

#[test]
fn an_idle_client_on_one_instance_hears_of_a_change_made_through_the_other() {
    let (mut a, mut b) = pair(Options::default());
    a.add_queue("Support", "support@shop.test", None, None, &[]);
    a.add_agent("anna", "anna@shop.test", "anna-secret", &["Support"]);
    a.start();
    let two = postgres();
    if two {
        b.start();
    }
    a.customer_mail(
        "erika@kunde.example",
        "support@shop.test",
        "Wo bleibt mein Paket?",
        "Bestellt am Montag.",
    );
    // The watcher must find the ticket in its folder when it selects it: a ticket not yet
    // listed would come in as new (EXISTS alone), never as changed.
    a.wait_until_listed();
    let out = Command::new("python3")
        .args(["-c", IDLE_SCRIPT])
        .env("A_CAFILE", a.cert_path())
        .env("B_CAFILE", b.cert_path())
        .env("A_IMAPS", a.imaps_port.to_string())
        .env(
            "B_IMAPS",
            if two {
                b.imaps_port.to_string()
            } else {
                String::new()
            },
        )
        .env(
            "B_INBOUND",
            if two { b.inbound_port } else { a.inbound_port }.to_string(),
        )
        .env("MTICKET", env!("CARGO_BIN_EXE_mticket"))
        .env("CONFIG", &a.config)
        .env_remove("MTICKET_TEST_DB")
        .env_remove("MTICKET_TEST_POSTGRES")
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}\n--- A ---\n{}\n--- B ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log(),
        b.log()
    );
    eprintln!("{said}");
    for what in ["changed ticket told after ", "new ticket told after "] {
        let line = said.lines().find(|l| l.starts_with(what)).expect(what);
        let seconds: f64 = line[what.len()..]
            .split('s')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(seconds < 2.0, "{line}");
    }
}
