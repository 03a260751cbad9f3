//! Mailbox benchmark: a folder of 100,000 tickets read by a mail client through the
//! gateway's IMAP server, against Dovecot serving a Maildir with the same 100,000 messages
//! on the same machine in the same run. Timed per server: `SELECT` + `UID FETCH 1:* (UID
//! FLAGS RFC822.SIZE ENVELOPE)` (what a client does when it opens a folder), and a
//! full-text `UID SEARCH BODY <word>` (Dovecot has no FTS plugin here, so it reads every
//! message; the gateway asks its full-text index).
//!
//! The tickets are created through the store (batches of 1,000 per transaction, one customer
//! mail each, a few lines of German or English text naming one of 300 products), in queue
//! Support, status open; agent anna works in Support. `mticket serve` gives them their
//! message UIDs in the background; once `SELECT "Queues/Support"` shows them all, every
//! message is fetched once (`UID FETCH 1:* (FLAGS BODY.PEEK[])`, which also makes the
//! gateway remember each message's size) and written with its flags into anna's Maildir at
//! Dovecot. The gateway is then restarted, so its peak RSS is that of the reading alone.
//!
//! Both servers are read by the same client (below: rustls over a blocking socket, every
//! response read to its end, literals included, responses counted but not parsed), over
//! implicit TLS, with certificates of the same kind. Each server is read twice untimed
//! (Dovecot builds its index and cache files, the gateway's search index catches up), then
//! in rounds, in turn which server goes first; the machine settles before each timed run.
//! Peak RSS: the gateway process (VmHWM, from its restart) and Dovecot's `imap` process of
//! each session (one per connection; the largest). Results are printed and handed to the
//! report (benches/common/report.rs) that `scripts/bench` makes BENCHMARKS.md of.
//!
//! `cargo bench --bench mailbox` (BENCH_MAILBOX_TICKETS=N to change the 100,000 tickets,
//! BENCH_MAILBOX_ROUNDS=N for the 4 rounds; on PostgreSQL with MTICKET_TEST_DB=postgres and
//! MTICKET_TEST_POSTGRES, as scripts/bench runs it after the SQLite run).
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/report.rs"]
mod report;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mticket::core::model::ItemKind;
use mticket::net::tls;
use mticket::store::{Actor, NewItem, NewTicket, Store};
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use support::dovecot::Dovecot;
use support::gateway::{Gateway, Options};
use support::procstat;

const AGENT: &str = "anna";
const PASSWORD: &str = "bench-agent-password";
const FOLDER_GATEWAY: &str = "\"Queues/Support\"";
const FOLDER_DOVECOT: &str = "INBOX";
const FETCH: &str = "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)";
/// Tickets per store transaction while the folder is filled.
const BATCH: usize = 1_000;
/// Untimed reads of each server before the rounds.
const WARM: usize = 2;
/// The longest wait for the machine to settle before a timed run.
const SETTLE: Duration = Duration::from_secs(30);

const GREETINGS_DE: &[&str] = &["Guten Tag,", "Hallo,", "Sehr geehrte Damen und Herren,"];
const GREETINGS_EN: &[&str] = &["Hello,", "Dear support team,", "Hi,"];
const SENTENCES_DE: &[&str] = &[
    "Ich habe am Montag eine Bestellung aufgegeben und bis heute keine Versandbestätigung erhalten.",
    "Das Paket ist angekommen, aber der Karton war beschädigt und ein Teil fehlt.",
    "Auf der Rechnung ist die Position 3 doppelt berechnet worden.",
    "Können Sie mir bitte sagen, wann die Lieferung voraussichtlich eintrifft?",
    "Seit dem Auspacken zeigt das Gerät eine Fehlermeldung an.",
    "Ich möchte den Artikel gerne umtauschen, er passt leider nicht zu unserer Einrichtung.",
    "Die Gutschrift für meine Retoure ist noch nicht auf meinem Konto eingegangen.",
    "Bitte ändern Sie die Lieferadresse auf meine neue Anschrift.",
    "Die Zahlung per Lastschrift wurde zweimal abgebucht.",
    "Wir warten dringend auf die Ersatzteile, die Maschine steht seit einer Woche still.",
    "Die Bedienungsanleitung lag nicht bei, gibt es sie auch als PDF?",
    "Der Kundendienst hat mir letzte Woche einen Rückruf versprochen, der nie kam.",
];
const SENTENCES_EN: &[&str] = &[
    "I placed an order on Monday and have not received a shipping confirmation yet.",
    "The parcel arrived, but the box was damaged and one part is missing.",
    "Item 3 on the invoice has been charged twice.",
    "Could you please tell me when the delivery is expected to arrive?",
    "Since unpacking it, the device shows an error message.",
    "I would like to exchange the item, it does not fit our furniture.",
    "The credit note for my return has not reached my account yet.",
    "Please change the delivery address to my new address.",
    "The direct debit payment was taken twice.",
    "We urgently need the spare parts, the machine has been idle for a week.",
    "The manual was not in the box, is there a PDF version?",
    "Your customer service promised to call me back last week, but nobody did.",
];
const FIRST_NAMES: &[&str] = &[
    "Erika", "Hans", "Monika", "Jürgen", "Sabine", "Uwe", "Petra", "Klaus", "Anja", "Stefan",
    "Emma", "Oliver", "Grace", "Noah",
];
const LAST_NAMES: &[&str] = &[
    "Mustermann",
    "Schmidt",
    "Müller",
    "Weber",
    "Becker",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Smith",
    "Taylor",
    "Brown",
];
/// Products are PREFIX + suffix: 300 names, none inside another, each in about one ticket
/// in 300.
const PRODUCT_PREFIXES: &[&str] = &[
    "Akku", "Blitz", "Dampf", "Eck", "Feder", "Glas", "Hand", "Kaffee", "Licht", "Luft", "Mess",
    "Nacht", "Ofen", "Rasen", "Schnell", "Sonnen", "Stand", "Tisch", "Wand", "Zeit",
];
const PRODUCT_SUFFIXES: &[&str] = &[
    "bohrer", "kocher", "lampe", "mixer", "pumpe", "regal", "schrank", "spiegel", "uhr", "waage",
    "sauger", "grill", "filter", "presse", "heizer",
];
/// The product the body search looks for.
const SEARCHED: usize = 137;

fn product(k: usize) -> String {
    let p = PRODUCT_PREFIXES[k / PRODUCT_SUFFIXES.len()];
    let s = PRODUCT_SUFFIXES[k % PRODUCT_SUFFIXES.len()];
    format!("{p}{s}")
}

fn products() -> usize {
    PRODUCT_PREFIXES.len() * PRODUCT_SUFFIXES.len()
}

/// One ticket's customer mail.
struct Ticket {
    subject: String,
    from: String,
    name: String,
    text: String,
    product: usize,
    at: i64,
}

fn ticket(i: usize, rng: &mut rand::rngs::StdRng) -> Ticket {
    let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
    let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
    let german = rng.random_bool(0.6);
    let product_index = rng.random_range(0..products());
    let order = 100_000 + i;
    let article = rng.random_range(10_000..99_999);
    let (greetings, sentences) = if german {
        (GREETINGS_DE, SENTENCES_DE)
    } else {
        (GREETINGS_EN, SENTENCES_EN)
    };
    let mut text = format!("{}\n\n", greetings[rng.random_range(0..greetings.len())]);
    let about = if german {
        format!(
            "Es geht um den {} (Artikel {article}) aus Bestellung {order}.",
            product(product_index)
        )
    } else {
        format!(
            "This is about the {} (item {article}) from order {order}.",
            product(product_index)
        )
    };
    let lines = rng.random_range(2..6);
    let at_line = rng.random_range(0..lines);
    for n in 0..lines {
        if n == at_line {
            text.push_str(&about);
        } else {
            text.push_str(sentences[rng.random_range(0..sentences.len())]);
        }
        text.push('\n');
    }
    text.push_str(if german {
        "\nViele Grüße\n"
    } else {
        "\nKind regards\n"
    });
    text.push_str(&format!("{first} {last}\n"));
    Ticket {
        subject: if german {
            format!("Frage zu Bestellung {order}")
        } else {
            format!("Question about order {order}")
        },
        from: format!("kunde{}@kunden.example", i % 20_000),
        name: format!("{first} {last}"),
        text,
        product: product_index,
        at: 1_790_000_000 + i as i64 * 30,
    }
}

/// Creates the tickets through the store, `BATCH` per transaction, status open.
fn create_tickets(gateway: &Gateway, tickets: &[Ticket]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::connect(&gateway.db_url).await.unwrap();
        let queue = store.queue_by_name("Support").await.unwrap();
        let actor = Actor::system();
        for (b, chunk) in tickets.chunks(BATCH).enumerate() {
            let mut tx = store.begin().await.unwrap();
            for (j, t) in chunk.iter().enumerate() {
                let i = b * BATCH + j;
                let created = tx
                    .create_ticket(
                        &NewTicket {
                            subject: &t.subject,
                            queue_id: queue.id,
                            queue_name: &queue.name,
                            creator_address: &t.from,
                            customer_id: None,
                            cc: &[],
                            spoof_suspect: false,
                            first_number: 1,
                            assignee_id: None,
                            at: t.at,
                        },
                        &actor,
                    )
                    .await
                    .unwrap();
                let message_id = format!("<bench-{i}@kunden.example>");
                let raw = format!(
                    "From: {} <{}>\r\nTo: Support <support@shop.test>\r\nSubject: {}\r\n\
                     Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\
                     Content-Transfer-Encoding: 8bit\r\n\r\n{}",
                    t.name,
                    t.from,
                    t.subject,
                    t.text.replace('\n', "\r\n")
                );
                let sha = hex::encode(Sha256::digest(raw.as_bytes()));
                tx.add_item(
                    created.id,
                    &NewItem {
                        kind: ItemKind::Customer,
                        agent_id: None,
                        from_address: &t.from,
                        from_name: &t.name,
                        to: &["support@shop.test".to_string()],
                        cc: &[],
                        subject: &t.subject,
                        date: t.at,
                        message_id: &message_id,
                        text: &t.text,
                        html: None,
                        body_in_raw: false,
                        raw: raw.as_bytes(),
                        raw_sha256: &sha,
                        problems: &[],
                        attachments: &[],
                    },
                    t.at,
                )
                .await
                .unwrap();
                tx.set_status(&created, "open", &actor).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        store.close().await;
    });
}

/// One response from the server: its line(s), each literal's `{n}` kept in `text` and its
/// bytes in `literals`.
#[derive(Default)]
struct Response {
    text: Vec<u8>,
    literals: Vec<Vec<u8>>,
}

impl Response {
    fn starts_with(&self, s: &str) -> bool {
        self.text.starts_with(s.as_bytes())
    }

    fn contains(&self, s: &str) -> bool {
        self.text
            .windows(s.len())
            .any(|w| w.eq_ignore_ascii_case(s.as_bytes()))
    }

    fn line(&self) -> String {
        String::from_utf8_lossy(&self.text).trim_end().to_string()
    }
}

/// The IMAP client both servers are read with: implicit TLS, responses read to their end.
struct Client {
    io: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    tag: u32,
}

impl Client {
    fn connect(port: u16, config: &Arc<rustls::ClientConfig>) -> Client {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_nodelay(true).unwrap();
        let conn = rustls::ClientConnection::new(
            config.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut c = Client {
            io: BufReader::with_capacity(1 << 16, rustls::StreamOwned::new(conn, tcp)),
            tag: 0,
        };
        let mut greeting = Response::default();
        c.read(&mut greeting).expect("greeting");
        assert!(
            greeting.starts_with("* OK"),
            "greeting: {}",
            greeting.line()
        );
        c
    }

    /// Reads one response, literals included.
    fn read(&mut self, r: &mut Response) -> std::io::Result<()> {
        r.text.clear();
        r.literals.clear();
        loop {
            let from = r.text.len();
            let n = self.io.read_until(b'\n', &mut r.text)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = &r.text[from..];
            let Some(size) = line
                .strip_suffix(b"}\r\n")
                .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|p| &l[p + 1..]))
                .and_then(|d| std::str::from_utf8(d.strip_suffix(b"+").unwrap_or(d)).ok())
                .and_then(|d| d.parse::<usize>().ok())
            else {
                return Ok(());
            };
            let mut literal = vec![0; size];
            self.io.read_exact(&mut literal)?;
            r.literals.push(literal);
        }
    }

    /// Sends `command`, hands every untagged response to `each`, and returns the tagged
    /// status line (which must be OK).
    fn run(&mut self, command: &str, mut each: impl FnMut(&Response)) -> String {
        self.tag += 1;
        let tag = format!("T{}", self.tag);
        let stream = self.io.get_mut();
        stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .unwrap();
        stream.flush().unwrap();
        let mut r = Response::default();
        loop {
            self.read(&mut r)
                .unwrap_or_else(|e| panic!("{command}: reading the response: {e}"));
            if r.starts_with(&format!("{tag} ")) {
                let line = r.line();
                assert!(line[tag.len() + 1..].starts_with("OK"), "{command}: {line}");
                return line;
            }
            each(&r);
        }
    }

    fn login(&mut self) {
        self.run(&format!("LOGIN {AGENT} \"{PASSWORD}\""), |_| {});
    }

    /// SELECT: the folder's EXISTS.
    fn select(&mut self, folder: &str) -> usize {
        let mut exists = 0;
        self.run(&format!("SELECT {folder}"), |r| {
            let line = r.line();
            if let Some(n) = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" EXISTS"))
            {
                exists = n.parse().unwrap();
            }
        });
        exists
    }

    /// `UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)`: FETCH responses and their bytes.
    fn fetch(&mut self) -> (usize, usize) {
        self.fetch_items(FETCH)
    }

    /// A FETCH command: FETCH responses and their bytes.
    fn fetch_items(&mut self, command: &str) -> (usize, usize) {
        let (mut n, mut bytes) = (0, 0);
        self.run(command, |r| {
            if r.contains(" FETCH ") {
                n += 1;
            }
            bytes += r.text.len() + r.literals.iter().map(Vec::len).sum::<usize>();
        });
        (n, bytes)
    }

    /// `UID SEARCH BODY word`: the number of UIDs found.
    fn search(&mut self, word: &str) -> usize {
        let mut found = 0;
        self.run(&format!("UID SEARCH BODY {word}"), |r| {
            if r.starts_with("* SEARCH") {
                found += r.line().split_whitespace().count() - 2;
            }
        });
        found
    }

    fn logout(mut self) {
        self.tag += 1;
        let stream = self.io.get_mut();
        let _ = stream.write_all(format!("T{} LOGOUT\r\n", self.tag).as_bytes());
        let _ = stream.flush();
        let mut r = Response::default();
        while self.read(&mut r).is_ok() && !r.starts_with(&format!("T{} ", self.tag)) {}
    }
}

/// Maildir flags of an IMAP FLAGS list; keywords are left out (counted).
fn maildir_flags(text: &str, keywords: &mut usize) -> String {
    let Some(list) = text
        .split_once("FLAGS (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(l, _)| l)
    else {
        return String::new();
    };
    let mut out = String::new();
    for flag in list.split_whitespace() {
        match flag.to_ascii_lowercase().as_str() {
            "\\seen" => out.push('S'),
            "\\answered" => out.push('R'),
            "\\flagged" => out.push('F'),
            "\\draft" => out.push('D'),
            "\\deleted" => out.push('T'),
            "\\recent" => {}
            _ => *keywords += 1,
        }
    }
    out
}

/// Which server a timed run reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Gateway,
    Dovecot,
}

struct Run {
    select_secs: f64,
    fetch_secs: f64,
    search_secs: f64,
    fetched: usize,
    fetch_bytes: usize,
    found: usize,
    /// Server CPU seconds over SELECT + FETCH, and over SEARCH.
    fetch_cpu: f64,
    search_cpu: f64,
    /// Gateway: CPU seconds per thread name over SELECT + FETCH and over SEARCH.
    threads: Vec<(String, f64)>,
    /// Dovecot: VmHWM of the session's `imap` process.
    imap_peak_kib: u64,
}

struct Servers<'a> {
    gateway: &'a Gateway,
    dovecot: &'a Dovecot,
    config: Arc<rustls::ClientConfig>,
    word: String,
}

impl Servers<'_> {
    fn session(&self, server: Server) -> Run {
        let (port, folder) = match server {
            Server::Gateway => (self.gateway.imaps_port, FOLDER_GATEWAY),
            Server::Dovecot => (self.dovecot.imaps_port(), FOLDER_DOVECOT),
        };
        let mut c = Client::connect(port, &self.config);
        c.login();
        // The process that serves this session, for its CPU time and memory.
        let pid = match server {
            Server::Gateway => self.gateway.pid().unwrap(),
            Server::Dovecot => {
                let mut imap = self.dovecot.processes("imap");
                imap.sort_unstable();
                // The newest: the one just started for this connection (others linger
                // only while they log out).
                *imap.last().expect("Dovecot's imap process")
            }
        };
        let threads_before = procstat::cpu_by_thread(pid);
        let cpu0 = procstat::cpu_total(pid);
        let t0 = Instant::now();
        let exists = c.select(folder);
        let t1 = Instant::now();
        let (fetched, fetch_bytes) = c.fetch();
        let t2 = Instant::now();
        let cpu1 = procstat::cpu_total(pid);
        let threads_fetch = procstat::cpu_since(&threads_before, pid);
        let found = c.search(&self.word);
        let t3 = Instant::now();
        let cpu2 = procstat::cpu_total(pid);
        let threads_all = procstat::cpu_since(&threads_before, pid);
        let imap_peak_kib = match server {
            Server::Gateway => 0,
            Server::Dovecot => procstat::peak_rss_kib(pid).unwrap_or(0),
        };
        c.logout();
        assert_eq!(exists, fetched, "EXISTS and FETCH responses");
        let mut threads: Vec<(String, f64)> = threads_fetch
            .iter()
            .map(|(k, v)| (format!("{k} (fetch)"), *v))
            .collect();
        for (k, v) in &threads_all {
            let search = v - threads_fetch.get(k).copied().unwrap_or(0.0);
            if search >= 0.005 {
                threads.push((format!("{k} (search)"), search));
            }
        }
        Run {
            select_secs: (t1 - t0).as_secs_f64(),
            fetch_secs: (t2 - t1).as_secs_f64(),
            search_secs: (t3 - t2).as_secs_f64(),
            fetched,
            fetch_bytes,
            found,
            fetch_cpu: cpu1 - cpu0,
            search_cpu: cpu2 - cpu1,
            threads,
            imap_peak_kib,
        }
    }
}

/// The FETCH of the rounds with fewer items, each timed on its own, in one session after
/// the SELECT: where the time goes.
const BREAKDOWN: &[&str] = &[
    "UID FETCH 1:* (UID FLAGS)",
    "UID FETCH 1:* (UID FLAGS RFC822.SIZE)",
    "UID FETCH 1:* (UID FLAGS ENVELOPE)",
    FETCH,
];

impl Servers<'_> {
    /// Seconds of the SELECT and of each of `BREAKDOWN`.
    fn breakdown(&self, server: Server) -> Vec<f64> {
        let (port, folder) = match server {
            Server::Gateway => (self.gateway.imaps_port, FOLDER_GATEWAY),
            Server::Dovecot => (self.dovecot.imaps_port(), FOLDER_DOVECOT),
        };
        let mut c = Client::connect(port, &self.config);
        c.login();
        let start = Instant::now();
        c.select(folder);
        let mut secs = vec![start.elapsed().as_secs_f64()];
        for command in BREAKDOWN {
            let start = Instant::now();
            c.fetch_items(command);
            secs.push(start.elapsed().as_secs_f64());
        }
        c.logout();
        secs
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn dovecot_version() -> String {
    std::process::Command::new("dovecot")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "2.3".into())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("mailbox benchmark: run it with `scripts/bench` or `cargo bench --bench mailbox`");
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = env("BENCH_MAILBOX_TICKETS", 100_000);
    let rounds = env("BENCH_MAILBOX_ROUNDS", 4).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let tickets: Vec<Ticket> = (0..n).map(|i| ticket(i, &mut rng)).collect();
    let word = product(SEARCHED);
    let expected = tickets.iter().filter(|t| t.product == SEARCHED).count();
    println!("{n} tickets; the body search for {word} should find {expected}");

    // The gateway: queue, agent, tickets, and the TLS certificate of a CA the client trusts
    // (Dovecot's is of the same kind, from its own CA).
    let backend = support::db::backend();
    let mut gateway = Gateway::new(Options {
        backend: Some(backend),
        ..Options::default()
    });
    gateway.add_queue(
        "Support",
        "support@shop.test",
        None,
        None,
        &["--no-autoresponder"],
    );
    gateway.add_agent(AGENT, "anna@shop.test", PASSWORD, &["Support"]);
    let (gateway_ca, cert, key) = support::sink::test_certificates();
    std::fs::create_dir_all(gateway.path().join("certs")).unwrap();
    std::fs::write(gateway.path().join("certs/cert.pem"), cert).unwrap();
    std::fs::write(gateway.path().join("certs/key.pem"), key).unwrap();
    let start = Instant::now();
    create_tickets(&gateway, &tickets);
    let created_secs = start.elapsed().as_secs_f64();
    println!("{n} tickets created through the store in {created_secs:.1} s");

    let dovecot = Dovecot::start_with_imap();
    dovecot.add_user(AGENT, PASSWORD);
    let config = tls::client_config(Some(&format!("{gateway_ca}{}", dovecot.ca_pem()))).unwrap();

    let start = Instant::now();
    gateway.start();
    // One session, the folder selected again every 2 s (a login per look would cost an
    // Argon2 verification each).
    let mut c = Client::connect(gateway.imaps_port, &config);
    c.login();
    gateway.wait_for(
        "every ticket listed in Queues/Support",
        Duration::from_secs(3600),
        || {
            let exists = c.select(FOLDER_GATEWAY);
            if exists < n {
                std::thread::sleep(Duration::from_secs(2));
            }
            (exists == n).then_some(())
        },
    );
    c.logout();
    let listed_secs = start.elapsed().as_secs_f64();
    println!("listed in {listed_secs:.1} s after the start");

    // Every message once from the gateway into the Maildir (the gateway renders each and
    // remembers its size).
    let start = Instant::now();
    let mut c = Client::connect(gateway.imaps_port, &config);
    c.login();
    assert_eq!(c.select(FOLDER_GATEWAY), n);
    let (mut copied, mut bytes, mut keywords) = (0, 0, 0);
    c.run("UID FETCH 1:* (FLAGS BODY.PEEK[])", |r| {
        if !r.contains(" FETCH ") {
            return;
        }
        let raw = r.literals.first().expect("the message's bytes");
        let flags = maildir_flags(&String::from_utf8_lossy(&r.text), &mut keywords);
        dovecot.deliver_seen(AGENT, raw, &flags);
        copied += 1;
        bytes += raw.len();
    });
    c.logout();
    let copied_secs = start.elapsed().as_secs_f64();
    assert_eq!(copied, n, "every message copied");
    assert_eq!(dovecot.count(AGENT), n);
    println!(
        "{n} messages ({:.1} MB) rendered by the gateway and written to the Maildir in {copied_secs:.1} s{}",
        bytes as f64 / 1e6,
        if keywords > 0 {
            format!(" ({keywords} keywords left out)")
        } else {
            String::new()
        }
    );

    // A fresh gateway process, so its peak RSS is that of the reading alone.
    gateway.stop();
    gateway.start();
    let pid = gateway.pid().unwrap();
    let rss_start = procstat::rss_kib(pid).unwrap_or(0);
    let servers = Servers {
        gateway: &gateway,
        dovecot: &dovecot,
        config,
        word: word.clone(),
    };

    // Untimed, twice: Dovecot builds its index and cache files (the second read still adds
    // to its cache), the gateway's search index catches up with the new items.
    let mut warm = Vec::new();
    for _ in 0..WARM {
        for server in [Server::Gateway, Server::Dovecot] {
            let start = Instant::now();
            let run = servers.session(server);
            warm.push((server, start.elapsed().as_secs_f64(), run));
        }
    }
    let mut runs: Vec<(Run, Run)> = Vec::new();
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [Server::Gateway, Server::Dovecot]
        } else {
            [Server::Dovecot, Server::Gateway]
        };
        let mut g = None;
        let mut d = None;
        for server in order {
            procstat::settle(SETTLE);
            let run = servers.session(server);
            match server {
                Server::Gateway => g = Some(run),
                Server::Dovecot => d = Some(run),
            }
        }
        let (g, d) = (g.unwrap(), d.unwrap());
        println!(
            "round {}: gateway SELECT+FETCH {:.2} s, SEARCH {:.3} s ({} found); Dovecot SELECT+FETCH {:.2} s, SEARCH {:.3} s ({} found)",
            r + 1,
            g.select_secs + g.fetch_secs,
            g.search_secs,
            g.found,
            d.select_secs + d.fetch_secs,
            d.search_secs,
            d.found
        );
        assert_eq!(g.fetched, n, "the gateway's FETCH responses");
        assert_eq!(d.fetched, n, "Dovecot's FETCH responses");
        assert_eq!(
            g.found, d.found,
            "the gateway and Dovecot find the same messages"
        );
        assert_eq!(
            g.found, expected,
            "the search finds the tickets naming {word}"
        );
        runs.push((g, d));
    }
    let breakdown = [Server::Gateway, Server::Dovecot].map(|server| {
        procstat::settle(SETTLE);
        servers.breakdown(server)
    });
    let gateway_peak = gateway.peak_rss_kib().unwrap_or(0);
    let gateway_rss_end = procstat::rss_kib(pid).unwrap_or(0);
    let dovecot_peak = warm
        .iter()
        .map(|(_, _, r)| r)
        .chain(runs.iter().map(|(_, d)| d))
        .map(|r| r.imap_peak_kib)
        .max()
        .unwrap_or(0);
    gateway.stop();

    let (section, rows) = report(&Report {
        backend,
        n,
        word: &word,
        found: expected,
        created_secs,
        listed_secs,
        copied_secs,
        copied_bytes: bytes,
        warm: &warm,
        runs: &runs,
        breakdown: &breakdown,
        gateway_peak,
        gateway_rss: (rss_start, gateway_rss_end),
        dovecot_peak,
    });
    report::publish(&format!("mailbox-{backend}"), &rows, &section);
}

struct Report<'a> {
    backend: &'a str,
    n: usize,
    word: &'a str,
    found: usize,
    created_secs: f64,
    listed_secs: f64,
    copied_secs: f64,
    copied_bytes: usize,
    warm: &'a [(Server, f64, Run)],
    runs: &'a [(Run, Run)],
    /// Gateway's and Dovecot's [`Servers::breakdown`].
    breakdown: &'a [Vec<f64>; 2],
    gateway_peak: u64,
    gateway_rss: (u64, u64),
    dovecot_peak: u64,
}

/// The section and the rows of the summary table.
fn report(r: &Report<'_>) -> (String, Vec<report::Row>) {
    let mib = |k: u64| k as f64 / 1024.0;
    let fetch = |x: &Run| x.select_secs + x.fetch_secs;
    let g_fetch = median(r.runs.iter().map(|(g, _)| fetch(g)).collect());
    let d_fetch = median(r.runs.iter().map(|(_, d)| fetch(d)).collect());
    let g_search = median(r.runs.iter().map(|(g, _)| g.search_secs).collect());
    let d_search = median(r.runs.iter().map(|(_, d)| d.search_secs).collect());
    let g_select = median(r.runs.iter().map(|(g, _)| g.select_secs).collect());
    let d_select = median(r.runs.iter().map(|(_, d)| d.select_secs).collect());
    let g_cpu = median(r.runs.iter().map(|(g, _)| g.fetch_cpu).collect());
    let d_cpu = median(r.runs.iter().map(|(_, d)| d.fetch_cpu).collect());
    let g_search_cpu = median(r.runs.iter().map(|(g, _)| g.search_cpu).collect());
    let d_search_cpu = median(r.runs.iter().map(|(_, d)| d.search_cpu).collect());
    let fetch_ratio = d_fetch / g_fetch;
    let search_ratio = d_search / g_search;
    let per_round = |f: &dyn Fn(&Run, &Run) -> f64| {
        r.runs
            .iter()
            .map(|(g, d)| format!("{:.2}", f(g, d)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let met = |ok: bool| if ok { "met" } else { "not met" };
    let (g_bytes, d_bytes) = r
        .runs
        .first()
        .map(|(g, d)| (g.fetch_bytes, d.fetch_bytes))
        .unwrap_or_default();
    let mut threads: std::collections::BTreeMap<&str, f64> = Default::default();
    for (g, _) in r.runs {
        for (name, secs) in &g.threads {
            *threads.entry(name).or_default() += secs / r.runs.len() as f64;
        }
    }
    let mut threads: Vec<(&str, f64)> = threads.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    let threads: Vec<String> = threads
        .iter()
        .take(6)
        .map(|(name, secs)| format!("{name} {secs:.2} s"))
        .collect();
    let warm: Vec<String> = r
        .warm
        .iter()
        .map(|(server, secs, run)| {
            let who = match server {
                Server::Gateway => "gateway",
                Server::Dovecot => "Dovecot",
            };
            format!(
                "{who} {secs:.1} s (SELECT {:.2} s, FETCH {:.2} s, SEARCH {:.2} s)",
                run.select_secs, run.fetch_secs, run.search_secs
            )
        })
        .collect();
    let mut out = format!(
        "\n## Mailbox, {} ({} tickets in one folder on {}, IMAP: mticket against Dovecot {})\n\n\
         Machine: {}. Both servers on this machine, read by the same client (rustls over a \
         blocking socket, implicit TLS, every response read to its end, nothing parsed) as \
         agent anna: the gateway's `Queues/Support` and a Maildir INBOX at Dovecot \
         (default settings, no FTS plugin) holding the same {} messages, copied from the \
         gateway with their flags ({:.1} MB). Timed: `SELECT` + `{FETCH}`, and `UID SEARCH \
         BODY {}` ({} hits at both). Each server read {WARM} times untimed first, then {} rounds, \
         in turn which server goes first, the machine settled before each; the table gives \
         the median. Ratio = Dovecot's seconds ÷ the gateway's (above 1: the gateway is \
         faster). Peak RSS: the gateway process (VmHWM from its start before the untimed \
         reads), Dovecot's `imap` process of a session (the largest; one per connection).\n\n\
         | figure | mticket | Dovecot | ratio | target | |\n|---|---|---|---|---|---|\n",
        report::now(),
        r.n,
        r.backend,
        dovecot_version(),
        report::machine(),
        r.n,
        r.copied_bytes as f64 / 1e6,
        r.word,
        r.found,
        r.runs.len(),
    );
    out.push_str(&format!(
        "| SELECT + UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), seconds | {g_fetch:.2} | {d_fetch:.2} | {fetch_ratio:.2} | ≥ 1 (no slower) | {} |\n",
        met(fetch_ratio >= 1.0)
    ));
    out.push_str(&format!(
        "| UID SEARCH BODY (full text), seconds | {g_search:.3} | {d_search:.3} | {search_ratio:.1} | ≥ 10 | {} |\n",
        met(search_ratio >= 10.0)
    ));
    out.push_str(&format!(
        "| peak RSS | {:.0} MiB | {:.0} MiB | | | |\n\n",
        mib(r.gateway_peak),
        mib(r.dovecot_peak)
    ));
    out.push_str(&format!(
        "Per round, ratio SELECT + FETCH: {}; SEARCH: {}. Of SELECT + FETCH, the SELECT alone \
         took {g_select:.2} s at the gateway, {d_select:.2} s at Dovecot; the FETCH answer was \
         {:.1} MB from the gateway, {:.1} MB from Dovecot. Server CPU per round (median): \
         SELECT + FETCH gateway {g_cpu:.2} s, Dovecot {d_cpu:.2} s; SEARCH gateway \
         {g_search_cpu:.2} s, Dovecot {d_search_cpu:.2} s. Gateway CPU by thread per round \
         (mean): {}. Gateway RSS {:.0} MiB after its start, {:.0} MiB after the rounds. \
         Untimed first reads: {}. Setting up: {} tickets created through the store in \
         {:.1} s, all listed in the folder {:.1} s after the gateway's start, every message \
         rendered by the gateway and written to the Maildir in {:.1} s.\n",
        per_round(&|g, d| fetch(d) / fetch(g)),
        per_round(&|g, d| d.search_secs / g.search_secs),
        g_bytes as f64 / 1e6,
        d_bytes as f64 / 1e6,
        threads.join(", "),
        mib(r.gateway_rss.0),
        mib(r.gateway_rss.1),
        warm.join("; "),
        r.n,
        r.created_secs,
        r.listed_secs,
        r.copied_secs,
    ));
    let [g, d] = r.breakdown;
    let steps: Vec<String> = std::iter::once("SELECT")
        .chain(BREAKDOWN.iter().copied())
        .zip(g.iter().zip(d))
        .map(|(what, (g, d))| format!("`{what}` {g:.2} s / {d:.2} s"))
        .collect();
    out.push_str(&format!(
        "\nWhere the time goes (one session each after the rounds, each command timed on its \
         own, gateway / Dovecot): {}.\n",
        steps.join(", ")
    ));
    let b = r.backend;
    let rows = vec![
        report::Row::new(
            format!("{b}, {} tickets: SELECT + UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), seconds; peer: Dovecot, the same messages in a Maildir", r.n),
            format!("{g_fetch:.2}"),
        )
        .against(format!("{d_fetch:.2}"), report::ratio(fetch_ratio)),
        report::Row::new(
            format!("{b}, {} tickets: UID SEARCH BODY (full text), seconds; peer: Dovecot (no FTS plugin)", r.n),
            format!("{g_search:.3}"),
        )
        .against(format!("{d_search:.3}"), report::ratio(search_ratio)),
        report::Row::new(
            format!("{b}, {} tickets: peak RSS while read, MiB; peer: Dovecot's imap process", r.n),
            format!("{:.0}", mib(r.gateway_peak)),
        )
        .against(
            format!("{:.0}", mib(r.dovecot_peak)),
            "",
        ),
    ];
    (out, rows)
}
