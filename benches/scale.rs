//! Scale benchmark: a database of 1,000,000 items (250,000 tickets of four items each: the
//! customer's mail, an agent's reply, the customer's answer and an internal comment) in four
//! queues, assigned to 20 agents, a third closed, some tagged. Measured on it:
//!
//! - full-text search (`mticket search --content`, `Store::ticket_list` with words): 200
//!   searches, p50 and p95. A third look for an order number (one ticket), a third for a
//!   rare word, a third for two words of middling frequency; each returns the first page
//!   (100 tickets, newest first), as the CLI and a mail client's SEARCH see it.
//! - the ticket list by filter (`mticket ticket list <filter>`): five filters an agent
//!   uses, 20 times each, first page of 100, p50 and p95.
//! - the gateway's RSS with 200 idle IMAP connections (tests/peers/idle_clients.py: 20
//!   agents × 10 connections over IMAPS, each logged in, INBOX selected, in IDLE), against
//!   its RSS before they came; the targets are p95 ≤ 50 ms, ≤ 100 ms and ≤ 300 MB.
//!
//! The items are written through the store (1,000 tickets per transaction), indexed for
//! search and the planner's statistics refreshed (as `serve` does every hour) before the
//! timing; the text is words drawn from a vocabulary of 4,000 with
//! Zipf-like frequencies, so a rare word is in a few dozen items and a common one in most.
//!
//! `cargo bench --bench scale` (BENCH_SCALE_TICKETS=N for the 250,000 tickets;
//! BENCH_SCALE_KEEP=1 keeps the databases and prints where they are, for a closer look); on
//! PostgreSQL too when MTICKET_TEST_POSTGRES is set (scripts/bench sets it);
//! MTICKET_TEST_DB=sqlite or =postgres runs on that one only.
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/report.rs"]
mod report;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mticket::core::model::ItemKind;
use mticket::store::{Actor, NewItem, NewTicket, Store, TicketQuery};
use rand::distr::Distribution;
use rand::{Rng, SeedableRng};
use report::Row;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use support::gateway::{Gateway, Options};
use support::procstat;

const QUEUES: &[&str] = &["Support", "Vertrieb", "Technik", "Buchhaltung"];
const TAGS: &[&str] = &["Reklamation", "Rückruf", "VIP", "Rechnung"];
const AGENTS: usize = 20;
const PASSWORD: &str = "bench-agent-password";
const ITEMS_PER_TICKET: usize = 4;
const BATCH: usize = 1_000;
const VOCABULARY: usize = 4_000;
const SEARCHES: usize = 200;
const PAGE: i64 = 100;
const LIST_RUNS: usize = 20;
const IDLE_CONNECTIONS: usize = 200;
const FILTERS: &[&str] = &[
    "queue:Vertrieb status:open",
    "assignee:agent07 status:open",
    "tag:Reklamation since:30d",
    "queue:Technik status:closed tag:Rückruf",
    "status:open priority:low assignee:none",
];

/// Word `k` of the vocabulary: two or three syllables, none a word of another.
fn word(k: usize) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ren", "tus", "ber", "gan", "dol", "fi", "sen", "har", "po", "qui",
        "vek", "zam", "tro",
    ];
    let n = SYLLABLES.len();
    format!(
        "{}{}{}x",
        SYLLABLES[k % n],
        SYLLABLES[(k / n) % n],
        SYLLABLES[(k / n / n) % n]
    )
}

/// Ranks drawn with weight 1/(rank+1): the vocabulary's Zipf-like frequencies.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut sum = 0.0;
        let cumulative = (0..n)
            .map(|k| {
                sum += 1.0 / (k as f64 + 1.0);
                sum
            })
            .collect();
        Zipf { cumulative }
    }
}

impl Distribution<usize> for Zipf {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let total = *self.cumulative.last().unwrap();
        let x = rng.random_range(0.0..total);
        self.cumulative.partition_point(|c| *c < x)
    }
}

fn text(rng: &mut rand::rngs::StdRng, zipf: &Zipf, order: Option<usize>) -> String {
    let words = rng.random_range(20..60);
    let mut t = String::with_capacity(words * 8);
    for i in 0..words {
        if i > 0 {
            t.push(if i % 12 == 0 { '\n' } else { ' ' });
        }
        t.push_str(&word(zipf.sample(rng)));
    }
    if let Some(order) = order {
        t.push_str(&format!("\nBestellung {order}\n"));
    }
    t
}

fn order_number(ticket: usize) -> usize {
    7_000_000 + ticket * 7
}

struct Filled {
    tickets: usize,
    items: usize,
    secs: f64,
    index_secs: f64,
    /// PostgreSQL: VACUUM (ANALYZE) and a checkpoint after the bulk.
    rest_secs: f64,
}

/// Writes the tickets and their items through the store, `BATCH` tickets per transaction,
/// then brings the full-text index up to date.
fn fill(gateway: &Gateway, tickets: usize) -> Filled {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::connect(&gateway.db_url).await.unwrap();
        let mut queues = Vec::new();
        for name in QUEUES {
            queues.push(store.queue_by_name(name).await.unwrap());
        }
        let mut tx = store.begin().await.unwrap();
        let mut agents = Vec::new();
        for a in 0..AGENTS {
            let login = format!("agent{a:02}");
            agents.push(tx.agent_id_by_login(&login).await.unwrap().unwrap());
        }
        let names: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
        let tags = tx.tags_by_names(&names).await.unwrap();
        let tags: Vec<(i64, String)> = names
            .iter()
            .map(|n| tags[&n.to_lowercase()].clone())
            .collect();
        tx.commit().await.unwrap();

        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let zipf = Zipf::new(VOCABULARY);
        let actor = Actor::system();
        let now = chrono::Utc::now().timestamp();
        let started = Instant::now();
        let mut items = 0;
        for start in (0..tickets).step_by(BATCH) {
            let mut tx = store.begin().await.unwrap();
            for i in start..(start + BATCH).min(tickets) {
                // Queue, assignee, status and tag drawn independently of each other, as
                // real tickets are not sorted into them by their number.
                let queue = &queues[rng.random_range(0..QUEUES.len())];
                // Newest last, a minute apart, ending now.
                let at = now - (tickets - i) as i64 * 60;
                let customer = format!("kunde{}@kunden.example", i % 50_000);
                let assignee = rng
                    .random_bool(0.8)
                    .then(|| agents[rng.random_range(0..AGENTS)].clone());
                let closed = rng.random_bool(1.0 / 3.0);
                let tag = rng
                    .random_bool(1.0 / 7.0)
                    .then(|| tags[rng.random_range(0..TAGS.len())].clone());
                let subject = format!("Frage zu Bestellung {}", order_number(i));
                let created = tx
                    .create_ticket(
                        &NewTicket {
                            subject: &subject,
                            queue_id: queue.id,
                            queue_name: &queue.name,
                            creator_address: &customer,
                            customer_id: None,
                            cc: &[],
                            spoof_suspect: false,
                            first_number: 1,
                            assignee_id: assignee.as_ref().map(|(id, _)| *id),
                            at,
                        },
                        &actor,
                    )
                    .await
                    .unwrap();
                for k in 0..ITEMS_PER_TICKET {
                    let (kind, from, agent_id) = match k {
                        0 | 2 => (ItemKind::Customer, customer.as_str(), None),
                        1 => (
                            ItemKind::Reply,
                            "support@shop.test",
                            assignee.as_ref().map(|(id, _)| *id),
                        ),
                        _ => (
                            ItemKind::Comment,
                            "support@shop.test",
                            assignee.as_ref().map(|(id, _)| *id),
                        ),
                    };
                    let body = text(&mut rng, &zipf, (k == 0).then(|| order_number(i)));
                    let message_id = format!("<scale-{i}-{k}@kunden.example>");
                    let raw = format!(
                        "From: {from}\r\nTo: support@shop.test\r\nSubject: {subject}\r\n\
                         Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n\
                         Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
                        body.replace('\n', "\r\n")
                    );
                    let sha = hex::encode(Sha256::digest(raw.as_bytes()));
                    tx.add_item(
                        created.id,
                        &NewItem {
                            kind,
                            agent_id,
                            from_address: from,
                            from_name: "",
                            to: &["support@shop.test".to_string()],
                            cc: &[],
                            subject: &subject,
                            date: at + k as i64 * 10,
                            message_id: &message_id,
                            text: &body,
                            html: None,
                            body_in_raw: false,
                            raw: raw.as_bytes(),
                            raw_sha256: &sha,
                            problems: &[],
                            attachments: &[],
                        },
                        at + k as i64 * 10,
                    )
                    .await
                    .unwrap();
                    items += 1;
                }
                let status = if closed { "closed" } else { "open" };
                tx.set_status(&created, status, &actor).await.unwrap();
                if let Some((id, name)) = &tag {
                    tx.add_tag(created.id, (*id, name), &actor).await.unwrap();
                }
            }
            tx.commit().await.unwrap();
            if start % 50_000 == 0 {
                println!(
                    "  {start} tickets written, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let indexing = Instant::now();
        store.catch_up_search_index().await.unwrap();
        let index_secs = indexing.elapsed().as_secs_f64();
        // As `serve` does a minute after its start and every hour.
        store.refresh_statistics().await.unwrap();
        store.close().await;
        let resting = Instant::now();
        if gateway.db_url.starts_with("postgres") {
            // What autovacuum and the checkpointer do in the minutes after a bulk like this
            // one, whose indexing left 1,000,000 dead row versions: done before the timing,
            // so the figures are of a database at rest.
            let mut conn = sqlx::AnyConnection::connect(&gateway.db_url).await.unwrap();
            for sql in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
        Filled {
            tickets,
            items,
            secs,
            index_secs,
            rest_secs: resting.elapsed().as_secs_f64(),
        }
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[at - 1]
}

struct Timings {
    /// Milliseconds, sorted.
    ms: Vec<f64>,
    /// Tickets the queries returned, in all.
    found: usize,
}

impl Timings {
    fn p(&self, p: f64) -> f64 {
        percentile(&self.ms, p)
    }
}

async fn timed(store: &Store, queries: &[TicketQuery]) -> Timings {
    let mut ms = Vec::with_capacity(queries.len());
    let mut found = 0;
    for q in queries {
        let t = Instant::now();
        found += store.ticket_list(q).await.unwrap().len();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Timings { ms, found }
}

struct Queries {
    search: Timings,
    by_kind: Vec<(&'static str, Timings)>,
    list: Timings,
    by_filter: Vec<(&'static str, Timings)>,
}

fn query(gateway: &Gateway, tickets: usize) -> Queries {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::connect(&gateway.db_url).await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let page = |text: Vec<String>| TicketQuery {
            text,
            limit: Some(PAGE),
            ..TicketQuery::default()
        };
        let kinds: [(&str, Vec<TicketQuery>); 3] = [
            (
                "order number",
                (0..SEARCHES / 3)
                    .map(|_| page(vec![order_number(rng.random_range(0..tickets)).to_string()]))
                    .collect(),
            ),
            (
                "rare word",
                (0..SEARCHES / 3)
                    .map(|_| page(vec![word(rng.random_range(VOCABULARY / 2..VOCABULARY))]))
                    .collect(),
            ),
            (
                "two middling words",
                (0..SEARCHES - 2 * (SEARCHES / 3))
                    .map(|_| {
                        page(vec![
                            word(rng.random_range(50..400)),
                            word(rng.random_range(50..400)),
                        ])
                    })
                    .collect(),
            ),
        ];
        // One untimed pass, so every query meets the same warm caches.
        for (_, qs) in &kinds {
            timed(&store, qs).await;
        }
        let mut all = Timings {
            ms: Vec::new(),
            found: 0,
        };
        let mut by_kind = Vec::new();
        for (name, qs) in &kinds {
            let t = timed(&store, qs).await;
            all.ms.extend(&t.ms);
            all.found += t.found;
            by_kind.push((*name, t));
        }
        all.ms.sort_by(f64::total_cmp);

        let now = chrono::Utc::now().timestamp();
        let mut list = Timings {
            ms: Vec::new(),
            found: 0,
        };
        let mut by_filter = Vec::new();
        for f in FILTERS {
            let filter = mticket::core::filter::parse(f).unwrap();
            let q = TicketQuery {
                limit: Some(PAGE),
                ..TicketQuery::from_filter(&filter, now, None)
            };
            timed(&store, std::slice::from_ref(&q)).await;
            let t = timed(&store, &vec![q; LIST_RUNS]).await;
            list.ms.extend(&t.ms);
            list.found += t.found;
            by_filter.push((*f, t));
        }
        list.ms.sort_by(f64::total_cmp);
        store.close().await;
        Queries {
            search: all,
            by_kind,
            list,
            by_filter,
        }
    })
}

struct Idle {
    before_kib: u64,
    idle_kib: u64,
    peak_kib: u64,
    /// VmRSS's parts (RssAnon, RssFile) and the threads, with the connections idle.
    parts: String,
    connected: serde_json::Value,
}

/// `RssAnon 700 MiB, RssFile 20 MiB, 14 threads` of a process.
fn rss_parts(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "RssAnon {}, RssFile {}, {} threads",
        field("RssAnon"),
        field("RssFile"),
        field("Threads")
    )
}

/// Starts `serve`, waits for it to settle (the mailbox lister gives every ticket its UID),
/// then holds 200 idle IMAP connections and reads the gateway's RSS once they have been
/// idle for half a minute.
fn idle_connections(gateway: &mut Gateway) -> Idle {
    gateway.start();
    let pid = gateway.pid().unwrap();
    procstat::settle(Duration::from_secs(600));
    let before_kib = procstat::rss_kib(pid).unwrap();
    let agents: Vec<String> = (0..AGENTS).map(|a| format!("agent{a:02}")).collect();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/idle_clients.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", &gateway.imaps_port.to_string()])
        .args(["--cafile", &gateway.cert_path().display().to_string()])
        .args(["--agents", &agents.join(",")])
        .args(["--connections", &IDLE_CONNECTIONS.to_string()])
        .env("LOAD_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 for tests/peers/idle_clients.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let connected: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("idle_clients.py said {line:?}"));
    procstat::settle(Duration::from_secs(120));
    // Idle for good: `serve` gives memory freed inside its heaps back every 10 s.
    std::thread::sleep(Duration::from_secs(25));
    let idle_kib = procstat::rss_kib(pid).unwrap();
    let parts = rss_parts(pid);
    let peak_kib = gateway.peak_rss_kib().unwrap_or(0);
    child.stdin.take().unwrap().write_all(b"").unwrap();
    child.wait().unwrap();
    gateway.stop();
    Idle {
        before_kib,
        idle_kib,
        peak_kib,
        parts,
        connected,
    }
}

fn run_backend(backend: &'static str, tickets: usize, rows: &mut Vec<Row>, section: &mut String) {
    println!("== {backend}: {tickets} tickets of {ITEMS_PER_TICKET} items");
    let mut gateway = Gateway::new(Options {
        backend: Some(backend),
        ..Options::default()
    });
    for (i, q) in QUEUES.iter().enumerate() {
        gateway.add_queue(q, &format!("q{i}@shop.test"), None, None, &[]);
    }
    for t in TAGS {
        gateway.cli_ok(&["tag", "add", t]);
    }
    for a in 0..AGENTS {
        let login = format!("agent{a:02}");
        gateway.add_agent(&login, &format!("{login}@shop.test"), PASSWORD, QUEUES);
    }
    let filled = fill(&gateway, tickets);
    println!(
        "  {} items written in {:.0} s, indexed in {:.0} s",
        filled.items, filled.secs, filled.index_secs
    );
    let q = query(&gateway, tickets);
    let idle = idle_connections(&mut gateway);
    if std::env::var_os("BENCH_SCALE_KEEP").is_some() {
        println!("  kept: {} ({})", gateway.db_url, gateway.path().display());
        std::mem::forget(gateway);
    }
    let mib = |k: u64| k as f64 / 1024.0;
    let items = filled.items;
    // A figure with its target: the value, and whether the target is met.
    let mut row = |figure: String, value: String, met: bool| {
        rows.push(Row::new(figure, value).against("", if met { "met" } else { "not met" }));
    };
    row(
        format!("{backend}, {items} items: full-text search p50 / p95, ms (target: p95 ≤ 50)"),
        format!("{:.1} / {:.1}", q.search.p(0.5), q.search.p(0.95)),
        q.search.p(0.95) <= 50.0,
    );
    row(
        format!("{backend}, {items} items: ticket list by filter p50 / p95, ms (target: ≤ 100)"),
        format!("{:.1} / {:.1}", q.list.p(0.5), q.list.p(0.95)),
        q.list.p(0.95) <= 100.0,
    );
    row(
        format!(
            "{backend}, {items} items: gateway RSS with {IDLE_CONNECTIONS} idle IMAP connections, MiB (target: ≤ 300)"
        ),
        format!("{:.0}", mib(idle.idle_kib)),
        mib(idle.idle_kib) <= 300.0,
    );
    let kinds: Vec<String> = q
        .by_kind
        .iter()
        .map(|(k, t)| {
            format!(
                "{k} {:.1} / {:.1} ms ({} tickets in all)",
                t.p(0.5),
                t.p(0.95),
                t.found
            )
        })
        .collect();
    let filters: Vec<String> = q
        .by_filter
        .iter()
        .map(|(f, t)| {
            format!(
                "`{f}` {:.1} / {:.1} ms ({} tickets a page)",
                t.p(0.5),
                t.p(0.95),
                t.found / LIST_RUNS
            )
        })
        .collect();
    section.push_str(&format!(
        "\n### {backend}\n\n\
         {} tickets, {items} items written through the store in {:.0} s ({:.0} items/s), the \
         full-text index brought up to date in {:.0} s{}.\n\n\
         - Full-text search, {SEARCHES} searches, first page of {PAGE}: p50 {:.1} ms, p95 \
         {:.1} ms, max {:.1} ms; by kind (p50 / p95): {}.\n\
         - Ticket list by filter, {LIST_RUNS} runs each, first page of {PAGE}: p50 {:.1} ms, \
         p95 {:.1} ms; by filter (p50 / p95): {}.\n\
         - Gateway RSS: {:.0} MiB settled after its start (every ticket listed), {:.0} MiB \
         with {IDLE_CONNECTIONS} idle IMAP connections ({:.0} KiB each; {}), peak {:.0} \
         MiB; the clients: {}.\n",
        filled.tickets,
        filled.secs,
        items as f64 / filled.secs,
        filled.index_secs,
        if filled.rest_secs >= 0.5 {
            format!(
                ", the database brought to rest as autovacuum would (VACUUM (ANALYZE), \
                 CHECKPOINT) in {:.0} s",
                filled.rest_secs
            )
        } else {
            String::new()
        },
        q.search.p(0.5),
        q.search.p(0.95),
        q.search.ms.last().copied().unwrap_or(0.0),
        kinds.join("; "),
        q.list.p(0.5),
        q.list.p(0.95),
        filters.join("; "),
        mib(idle.before_kib),
        mib(idle.idle_kib),
        (idle.idle_kib.saturating_sub(idle.before_kib)) as f64 / IDLE_CONNECTIONS as f64,
        idle.parts,
        mib(idle.peak_kib),
        idle.connected,
    ));
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale benchmark: run it with `scripts/bench` or `cargo bench --bench scale`");
        return;
    }
    let tickets: usize = std::env::var("BENCH_SCALE_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let mut rows = Vec::new();
    let mut section = format!(
        "\n## Scale, {} ({} items in {tickets} tickets)\n\n\
         Machine: {}. Searches and lists through the store, as `mticket search` and `mticket \
         ticket list` run them; idle connections from tests/peers/idle_clients.py (IMAPS, \
         LOGIN, SELECT INBOX, IDLE). See benches/scale.rs for the data and the queries.\n",
        report::now(),
        tickets * ITEMS_PER_TICKET,
        report::machine(),
    );
    let only = std::env::var("MTICKET_TEST_DB").ok();
    let wanted = |backend: &str| only.as_deref().is_none_or(|o| o == backend);
    if wanted("sqlite") {
        run_backend("sqlite", tickets, &mut rows, &mut section);
    }
    if wanted("postgres") {
        if std::env::var("MTICKET_TEST_POSTGRES").is_ok() {
            run_backend("postgres", tickets, &mut rows, &mut section);
        } else {
            println!(
                "PostgreSQL skipped: MTICKET_TEST_POSTGRES is not set (scripts/bench sets it)"
            );
        }
    }
    report::publish("scale", &rows, &section);
}
