//! Submission benchmark: agents' replies to existing tickets through the gateway's
//! submission port (STARTTLS + AUTH PLAIN), 8 sessions, one agent each, on SQLite and on
//! PostgreSQL. The tickets are opened first through the inbound listener (not timed). Each
//! reply is rewritten and committed (item + outgoing mail) before its 250; the outbox
//! relays it to a recording sink in the background, and the run waits until the sink has
//! every reply. In the same run the same load tool (tests/peers/smtp_load.py: one process
//! per session, one connection each, AUTH once, mails back to back) sends the same mails
//! over the same sessions straight to the recording sink (aiosmtpd) and to the gateway's
//! own SMTP server code with a delivery that keeps nothing: the ceilings the gateway's rate
//! is compared with. The replies and the recording sink's run are split into rounds, each
//! slice once to the sink and once through the gateway back to back, so that both see the
//! machine at the same speed. When Postfix's `smtp-source` and `smtp-sink` are on the PATH
//! (scripts/bench fetches them) their plain SMTP rate is added as a reference; they speak
//! neither TLS nor AUTH, so no ratio is taken against them. Results are printed and
//! handed to the report (benches/common/report.rs) that `scripts/bench` makes BENCHMARKS.md of.
//!
//! `cargo bench --bench submission` (BENCH_SUBMISSION_REPLIES=N to change the 5,000
//! replies; PostgreSQL runs when MTICKET_TEST_POSTGRES names a server, as scripts/bench
//! sets it up). For a closer look: BENCH_SUBMISSION_LATENCY_DIR=DIR keeps every mail's
//! acknowledgment latency as CSV (session, seconds after the start, latency) per run, and
//! BENCH_SUBMISSION_PERF_DIR=DIR records the machine with `perf record -a -g` while the
//! replies go in.
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/report.rs"]
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use support::discard::Discard;
use support::gateway::{Gateway, Options, ca_file, free_port};
use support::load;
use support::procstat;
use support::sink::Sink;

const SESSIONS: usize = 8;
const QUEUE: &str = "support@shop.test";
const AGENT_PASSWORD: &str = "bench-agent-password";
const SINK_USER: &str = "support";
const SINK_PASSWORD: &str = "bench-password";
/// The longest wait for the machine to settle before a timed run.
const SETTLE: Duration = Duration::from_secs(120);
/// The replies go through the gateway, and straight to the recording sink, in this many
/// slices, each twice back to back.
const ROUNDS: usize = 5;

const FIRST_NAMES: &[&str] = &[
    "Erika", "Hans", "Monika", "Jürgen", "Sabine", "Uwe", "Petra", "Klaus", "Anja", "Stefan",
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
    "Richter",
    "Wolf",
];
const CUSTOMER_SENTENCES: &[&str] = &[
    "Ich habe am Montag eine Bestellung aufgegeben und bis heute keine Versandbestätigung erhalten.",
    "Das Paket ist angekommen, aber der Karton war beschädigt und ein Artikel fehlt.",
    "Auf der Rechnung ist die Position 3 doppelt berechnet worden.",
    "Können Sie mir bitte sagen, wann die Lieferung voraussichtlich eintrifft?",
    "Der Drucker zeigt seit dem Auspacken einen Papierstau an, obwohl kein Papier eingelegt ist.",
    "Ich möchte den Artikel gerne umtauschen, er passt leider nicht.",
    "Die Gutschrift für meine Retoure ist noch nicht auf meinem Konto eingegangen.",
    "Bitte ändern Sie die Lieferadresse auf meine neue Anschrift.",
    "Die Zahlung per Lastschrift wurde zweimal abgebucht.",
    "Wir warten dringend auf die Ersatzteile, die Maschine steht seit einer Woche still.",
];
const AGENT_SENTENCES: &[&str] = &[
    "vielen Dank für Ihre Nachricht und entschuldigen Sie bitte die Unannehmlichkeiten.",
    "Ich habe Ihre Bestellung geprüft: Das Paket hat unser Lager gestern verlassen und ist mit DHL unterwegs.",
    "Die doppelt berechnete Position haben wir storniert; der Betrag wird Ihnen in den nächsten Tagen gutgeschrieben.",
    "Bitte schalten Sie das Gerät einmal aus und nach zehn Sekunden wieder ein.",
    "Für den Umtausch müssen Sie nichts weiter tun: Der Paketdienst holt den Artikel kostenlos bei Ihnen ab.",
    "Die Lieferadresse ist geändert; alle offenen Sendungen gehen an Ihre neue Anschrift.",
    "Die zweite Abbuchung wurde zurückgebucht, Sie sehen sie in zwei bis drei Werktagen auf Ihrem Konto.",
    "Die Ersatzteile sind bestellt und werden per Express geliefert, voraussichtlich am Donnerstag.",
    "Sollte das Problem weiter bestehen, melden Sie sich bitte noch einmal bei uns.",
    "Wir haben den Vorgang an unsere Fachabteilung weitergegeben und melden uns, sobald wir mehr wissen.",
];

/// `text` wrapped at 72 columns as format=flowed (soft breaks end in a space), each line
/// behind `prefix` (`"> "` for a quote; an empty quoted line is a bare `>`).
fn flowed(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > 72 {
                out.push_str(prefix);
                out.push_str(&line);
                out.push_str(" \r\n");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if line.is_empty() {
            out.push_str(prefix.trim_end());
        } else {
            out.push_str(prefix);
            out.push_str(&line);
        }
        out.push_str("\r\n");
    }
    out
}

fn sentences(rng: &mut rand::rngs::StdRng, pool: &[&str], bytes: usize) -> String {
    let mut text = String::new();
    let mut in_para = 0;
    while text.len() < bytes {
        if in_para == 4 {
            text.push('\n');
            in_para = 0;
        } else if in_para > 0 {
            text.push(' ');
        }
        text.push_str(pool[rng.random_range(0..pool.len())]);
        in_para += 1;
    }
    text
}

/// One ticket's conversation: the customer mail that opened it and the agent's reply.
struct Conversation {
    customer: String,
    customer_raw: Vec<u8>,
    agent: usize,
    reply_raw: Vec<u8>,
    with_pdf: bool,
}

fn conversation(i: usize, rng: &mut rand::rngs::StdRng) -> Conversation {
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let customer = format!("kunde{i}@kunden.example");
    let message_id = format!("bench-{i}@kunden.example");
    let subject = format!("Bestellung {}: Frage zur Lieferung", 100_000 + i);
    let minute = i % 60;
    let asked_size = rng.random_range(300..1_800);
    let asked = sentences(rng, CUSTOMER_SENTENCES, asked_size);
    let customer_text = format!("Guten Tag,\n\n{asked}\n\nViele Grüße\n{first} {last}");
    let customer_raw = format!(
        "From: {first} {last} <{customer}>\r\nTo: Shop Support <{QUEUE}>\r\n\
         Subject: {subject}\r\nDate: Fri, 27 Nov 2026 09:{minute:02}:00 +0100\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}",
        flowed(&customer_text, "")
    )
    .into_bytes();

    // The reply as Thunderbird writes it: the quote of the customer mail first, the
    // agent's answer below it, 2–10 KB of text; a fifth carry a small PDF.
    let agent = i % SESSIONS;
    let quote = format!(
        "Am 27.11.2026 um 09:{minute:02} schrieb {first} {last}:\r\n{}",
        flowed(&customer_text, "> ")
    );
    let with_pdf = i.is_multiple_of(5);
    let target = rng.random_range(2_000..10_000usize);
    let own_size = target.saturating_sub(quote.len()).max(400);
    let mut own = format!("Guten Tag {first} {last},\n\n");
    if with_pdf {
        own.push_str("anbei die korrigierte Rechnung als PDF. ");
    }
    own.push_str(&sentences(rng, AGENT_SENTENCES, own_size));
    own.push_str(&format!(
        "\n\nMit freundlichen Grüßen\nAgent {}\n\n-- \nAgent {}\nKundendienst | Shop GmbH",
        agent + 1,
        agent + 1
    ));
    let text = format!("{quote}\r\n{}", flowed(&own, ""));
    let uuid = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>(),
        rng.random::<u16>(),
        rng.random::<u64>() & 0xffff_ffff_ffff
    );
    let head = format!(
        "Message-ID: <{uuid}@shop.test>\r\nDate: Fri, 27 Nov 2026 11:{minute:02}:17 +0100\r\n\
         MIME-Version: 1.0\r\nUser-Agent: Mozilla Thunderbird\r\nSubject: Re: {subject}\r\n\
         Content-Language: de-DE\r\nTo: {first} {last} <{customer}>\r\n\
         References: <{message_id}>\r\nFrom: Agent {n} <agent{n}@shop.test>\r\n\
         In-Reply-To: <{message_id}>\r\n",
        n = agent + 1
    );
    let text_type = "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n\
                     Content-Transfer-Encoding: 8bit\r\n";
    let reply_raw = if with_pdf {
        let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut stream = vec![0u8; rng.random_range(8_000..40_000)];
        rng.fill(&mut stream[..]);
        pdf.extend_from_slice(&stream);
        pdf.extend_from_slice(b"\nendstream\n%%EOF\n");
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pdf);
        let mut encoded = String::new();
        for chunk in b64.as_bytes().chunks(72) {
            encoded.push_str(std::str::from_utf8(chunk).unwrap());
            encoded.push_str("\r\n");
        }
        let boundary = format!("------------{:024x}", rng.random::<u128>() >> 32);
        format!(
            "{head}Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             This is a multi-part message in MIME format.\r\n--{boundary}\r\n{text_type}\r\n{text}\
             \r\n--{boundary}\r\nContent-Type: application/pdf; name=\"Rechnung-{r}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"Rechnung-{r}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--{boundary}--\r\n",
            r = 200_000 + i
        )
        .into_bytes()
    } else {
        format!("{head}{text_type}\r\n{text}").into_bytes()
    };
    Conversation {
        customer,
        customer_raw,
        agent,
        reply_raw,
        with_pdf,
    }
}

/// A count from the gateway's database (SQLite file or PostgreSQL), read beside it.
fn db_count(gateway: &Gateway, sql: &'static str) -> i64 {
    let config = std::fs::read_to_string(&gateway.config).unwrap();
    let url = config
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("database url in the gateway's config")
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// Where `BENCH_SUBMISSION_LATENCY_DIR` wants the latencies of run `label`.
fn latency_file(label: &str) -> Option<PathBuf> {
    env_dir("BENCH_SUBMISSION_LATENCY_DIR").map(|d| d.join(format!("{label}.csv")))
}

struct Row {
    what: String,
    replies: usize,
    secs: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    rss_mib: Option<f64>,
    /// For a gateway row: the rates of the same run it is compared with (the recording
    /// sink, the SMTP server with a no-op delivery).
    ceilings: Option<(f64, f64)>,
}

impl Row {
    fn load(what: String, r: &load::Report) -> Row {
        Row {
            what,
            replies: r.accepted,
            secs: r.secs,
            p50_ms: Some(r.p50_ms),
            p99_ms: Some(r.p99_ms),
            rss_mib: None,
            ceilings: None,
        }
    }
}

/// A gateway with queue Support (no autoresponder) relaying to `sink`, and one agent per
/// session, all in Support.
fn gateway(backend: &'static str, sink: &Sink) -> Gateway {
    let gateway = Gateway::new(Options {
        backend: Some(backend),
        ..Options::default()
    });
    let ca = ca_file(gateway.path(), &[sink.ca_pem().to_string()]);
    let upstream = format!("127.0.0.1:{}", sink.port());
    let args = [
        "queue",
        "add",
        "--name",
        "Support",
        "--address",
        QUEUE,
        "--friendly",
        "Shop Support",
        "--smtp",
        &upstream,
        "--smtp-tls",
        "starttls",
        "--login",
        SINK_USER,
        "--password-env",
        "QUEUE_PASSWORD",
        "--tls-ca",
        &ca,
        "--no-autoresponder",
    ];
    let out = gateway.cli_with(&args, &[("QUEUE_PASSWORD", SINK_PASSWORD)], "");
    assert!(
        out.status.success(),
        "queue add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in 1..=SESSIONS {
        gateway.add_agent(
            &format!("agent{k}"),
            &format!("agent{k}@shop.test"),
            AGENT_PASSWORD,
            &["Support"],
        );
    }
    gateway
}

/// The customers' mails through the inbound listener, one ticket each (not timed).
fn open_tickets(backend: &str, gateway: &Gateway, talks: &[Conversation], work: &Path) {
    let start = Instant::now();
    let mut sessions: Vec<load::Session<'_>> = (0..SESSIONS)
        .map(|_| load::Session {
            login: String::new(),
            mails: Vec::new(),
        })
        .collect();
    for (i, t) in talks.iter().enumerate() {
        sessions[i % SESSIONS].mails.push(load::Mail {
            from: t.customer.clone(),
            to: vec![QUEUE.to_string()],
            raw: &t.customer_raw,
        });
    }
    // The first ticket alone: on a fresh PostgreSQL database concurrent first tickets race
    // to create the ticket counter's row, and all but one get a 451.
    let first = load::Session {
        login: String::new(),
        mails: vec![sessions[0].mails.remove(0)],
    };
    let inbound = load::Target {
        port: gateway.inbound_port,
        tls: "none",
        cafile: None,
        user: None,
        password: "",
    };
    for (name, sessions) in [("first-customer", vec![first]), ("customers", sessions)] {
        let plan = load::plan(work, name, &sessions);
        load::run(
            &plan,
            &inbound,
            latency_file(&format!("{backend}-{name}")).as_deref(),
        );
    }
    let total = gateway.json(&["stats"])["total"].as_u64().unwrap() as usize;
    assert_eq!(total, talks.len(), "every customer mail opened a ticket");
    println!(
        "{backend}: {} tickets opened through the inbound listener in {:.1} s",
        talks.len(),
        start.elapsed().as_secs_f64()
    );
}

/// The replies: session `k` is agent `k + 1` answering its own tickets.
fn reply_plan(talks: &[Conversation], work: &Path, name: &str) -> PathBuf {
    let mut sessions: Vec<load::Session<'_>> = (0..SESSIONS)
        .map(|k| load::Session {
            login: format!("agent{}", k + 1),
            mails: Vec::new(),
        })
        .collect();
    for t in talks {
        sessions[t.agent].mails.push(load::Mail {
            from: format!("agent{}@shop.test", t.agent + 1),
            to: vec![t.customer.clone()],
            raw: &t.reply_raw,
        });
    }
    load::plan(work, name, &sessions)
}

/// What the replies straight to a server cost besides the rate.
struct Ceiling {
    report: load::Report,
    server_cpu: f64,
    machine_busy: f64,
}

/// The same tool, sessions and mails straight to the recording sink.
fn to_recording_sink(label: &str, plan: &Path, work: &Path, n: usize) -> Ceiling {
    let sink = Sink::start_fast_with_auth(SINK_USER, SINK_PASSWORD);
    let ca = work.join("sink-ca.pem");
    std::fs::write(&ca, sink.ca_pem()).unwrap();
    procstat::settle(SETTLE);
    let cpu = procstat::cpu_total(sink.pid());
    let machine = procstat::MachineCpu::now();
    let report = load::run(
        plan,
        &load::Target {
            port: sink.port(),
            tls: "starttls",
            cafile: Some(&ca),
            user: Some(SINK_USER),
            password: SINK_PASSWORD,
        },
        latency_file(label).as_deref(),
    );
    let ceiling = Ceiling {
        machine_busy: machine.busy_since(),
        server_cpu: procstat::cpu_total(sink.pid()) - cpu,
        report,
    };
    assert_eq!(sink.count(), n, "the sink stored every mail");
    ceiling
}

/// The same tool, sessions and mails to the gateway's SMTP server code, delivering nowhere.
fn to_discard(backend: &str, plan: &Path, work: &Path, n: usize) -> Ceiling {
    let server = Discard::start(work, SINK_PASSWORD);
    procstat::settle(SETTLE);
    let cpu = server.cpu();
    let machine = procstat::MachineCpu::now();
    let report = load::run(
        plan,
        &load::Target {
            port: server.port(),
            tls: "starttls",
            cafile: Some(server.ca()),
            user: Some(SINK_USER),
            password: SINK_PASSWORD,
        },
        latency_file(&format!("{backend}-noop-server")).as_deref(),
    );
    let ceiling = Ceiling {
        machine_busy: machine.busy_since(),
        server_cpu: server.cpu() - cpu,
        report,
    };
    assert_eq!(server.delivered(), n, "the no-op server took every mail");
    ceiling
}

/// One round of replies through the gateway, and what it cost.
struct GatewayRound {
    report: load::Report,
    threads: BTreeMap<String, f64>,
    postgres_cpu: f64,
    relay_cpu: f64,
    machine_busy: f64,
}

fn through_gateway(gateway: &Gateway, relay_sink: &Sink, plan: &Path, label: &str) -> GatewayRound {
    procstat::settle(SETTLE);
    let pid = gateway.pid().unwrap();
    let threads_before = procstat::cpu_by_thread(pid);
    let relay_before = procstat::cpu_total(relay_sink.pid());
    let postgres_before = procstat::cpu_of_processes("postgres");
    let machine = procstat::MachineCpu::now();
    let report = load::run(
        plan,
        &load::Target {
            port: gateway.submission_port,
            tls: "starttls",
            cafile: Some(&gateway.cert_path()),
            user: None,
            password: AGENT_PASSWORD,
        },
        latency_file(label).as_deref(),
    );
    GatewayRound {
        machine_busy: machine.busy_since(),
        postgres_cpu: procstat::cpu_of_processes("postgres") - postgres_before,
        relay_cpu: procstat::cpu_total(relay_sink.pid()) - relay_before,
        threads: procstat::cpu_since(&threads_before, pid),
        report,
    }
}

fn run_backend(backend: &'static str, talks: &[Conversation], rows: &mut Vec<Row>) -> String {
    let n = talks.len();
    let work = tempfile::tempdir().unwrap();
    let relay_sink = Sink::start_fast_with_auth(SINK_USER, SINK_PASSWORD);
    let mut gateway = gateway(backend, &relay_sink);
    gateway.start();
    open_tickets(backend, &gateway, talks, work.path());
    // A fresh process, so its peak RSS is the replies' alone. Before each timed run the
    // machine settles (see `procstat::settle`): background work of the run before it (the
    // search index, writing out the sink's files) would otherwise be timed with it.
    gateway.stop();
    gateway.start();
    let pid = gateway.pid().unwrap();
    let rss_before = procstat::rss_kib(pid).unwrap_or(0);

    let discard = to_discard(
        backend,
        &reply_plan(talks, work.path(), "replies"),
        work.path(),
        n,
    );
    rows.push(Row::load(
        format!(
            "ceiling: smtp_load.py → mticket's SMTP server with a no-op delivery, STARTTLS + AUTH PLAIN, {SESSIONS} sessions ({backend} run)"
        ),
        &discard.report,
    ));

    // The replies in rounds, each slice of them once straight to the recording sink and
    // once through the gateway, back to back (in turn which goes first): this machine's
    // speed drifts by up to 2× from one minute to the next, which a single run of each,
    // minutes apart, would count as the gateway's.
    let perf = procstat::Perf::start(
        env_dir("BENCH_SUBMISSION_PERF_DIR").as_deref(),
        &format!("{backend}-submission"),
    );
    let sampler = procstat::RssSampler::start(pid);
    let mut sink_rounds: Vec<Ceiling> = Vec::new();
    let mut rounds: Vec<GatewayRound> = Vec::new();
    for (r, slice) in talks.chunks(n.div_ceil(ROUNDS)).enumerate() {
        let plan = reply_plan(slice, work.path(), &format!("round{r}"));
        let sink_label = format!("{backend}-recording-sink-{r}");
        let gateway_label = format!("{backend}-gateway-{r}");
        if r % 2 == 0 {
            sink_rounds.push(to_recording_sink(
                &sink_label,
                &plan,
                work.path(),
                slice.len(),
            ));
        }
        rounds.push(through_gateway(
            &gateway,
            &relay_sink,
            &plan,
            &gateway_label,
        ));
        if r % 2 == 1 {
            sink_rounds.push(to_recording_sink(
                &sink_label,
                &plan,
                work.path(),
                slice.len(),
            ));
        }
    }
    let rss_samples = sampler.finish();
    drop(perf);
    let relayed_at = gateway.wait_for(
        "the outbox relayed every reply",
        Duration::from_secs(1800),
        || (relay_sink.count() >= n).then(unix_now),
    );
    let rss = gateway.peak_rss_kib().map(|k| k as f64 / 1024.0);
    let stored = db_count(&gateway, "SELECT count(*) FROM items WHERE kind = 'reply'");
    let sent = db_count(
        &gateway,
        "SELECT count(*) FROM outbox WHERE kind = 'reply' AND state = 'sent'",
    );
    let received = relay_sink.count();
    gateway.stop();
    assert_eq!(stored as usize, n, "one reply item per reply");
    assert_eq!(received, n, "the sink received every reply once");

    let sink = Ceiling {
        report: load::Report::combine(
            &sink_rounds
                .iter()
                .map(|c| c.report.clone())
                .collect::<Vec<_>>(),
        ),
        server_cpu: sink_rounds.iter().map(|c| c.server_cpu).sum(),
        machine_busy: weighted_busy(sink_rounds.iter().map(|c| (c.report.secs, c.machine_busy))),
    };
    let through =
        load::Report::combine(&rounds.iter().map(|g| g.report.clone()).collect::<Vec<_>>());
    let machine_busy = weighted_busy(rounds.iter().map(|g| (g.report.secs, g.machine_busy)));
    let postgres_cpu: f64 = rounds.iter().map(|g| g.postgres_cpu).sum();
    let relay_cpu: f64 = rounds.iter().map(|g| g.relay_cpu).sum();
    let mut threads: BTreeMap<String, f64> = BTreeMap::new();
    for g in &rounds {
        for (name, secs) in &g.threads {
            *threads.entry(name.clone()).or_default() += secs;
        }
    }
    let round_ratios: Vec<String> = rounds
        .iter()
        .zip(&sink_rounds)
        .map(|(g, c)| format!("{:.2}", g.report.rate() / c.report.rate()))
        .collect();
    rows.push(Row::load(
        format!(
            "ceiling: smtp_load.py → recording sink, STARTTLS + AUTH PLAIN, {SESSIONS} sessions ({backend} run, {} rounds)",
            sink_rounds.len()
        ),
        &sink.report,
    ));
    rows.push(Row {
        rss_mib: rss,
        ceilings: Some((sink.report.rate(), discard.report.rate())),
        ..Row::load(
            format!(
                "mticket submission on {backend} (STARTTLS + AUTH PLAIN → rewritten, committed, 250), {SESSIONS} sessions, {} rounds",
                rounds.len()
            ),
            &through,
        )
    });
    let acked_at = rounds
        .last()
        .map(|g| g.report.started_at + g.report.secs)
        .unwrap_or(0.0);

    let cores = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(0);
    let gateway_cpu: f64 = threads.values().sum();
    let mut by_thread: Vec<(&String, &f64)> = threads.iter().collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(a.1));
    let by_thread: Vec<String> = by_thread
        .iter()
        .take(5)
        .map(|(name, secs)| format!("{name} {secs:.1} s"))
        .collect();
    let postgres = if backend == "postgres" {
        format!(", PostgreSQL server {postgres_cpu:.1} s")
    } else {
        String::new()
    };
    let mib = |k: u64| k as f64 / 1024.0;
    // The sessions log in (Argon2 verifications) at the start of the first round, within
    // its `setup_secs`.
    let logged_in = through.started_at + through.setup_secs + 0.1;
    let peak_in = |from: f64, to: f64| {
        rss_samples
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(_, k)| *k)
            .max()
            .unwrap_or(0)
    };
    format!(
        "{backend}: {stored} reply items stored, {sent} outgoing mails marked sent, the sink \
         received {received}; it had the last one {:.1} s after the last 250. Ratio to the \
         recording sink per round: {}. Session setup (connect, STARTTLS, AUTH) took at most \
         {:.2} s through the gateway, {:.2} s to the sink. CPU while the replies went in \
         ({:.1} s): gateway {gateway_cpu:.1} s ({}){postgres}, relay sink {relay_cpu:.1} s, \
         load tool {:.1} s; the machine's {cores} cores {:.0} % busy. Straight to the sink: \
         sink {:.1} s, load tool {:.1} s, cores {:.0} % busy; to the no-op server: server \
         {:.1} s, load tool {:.1} s, cores {:.0} % busy. Gateway RSS: {:.0} MiB before the \
         replies, at most {:.0} MiB while the {SESSIONS} sessions logged in, at most {:.0} MiB \
         afterwards.\n",
        relayed_at - acked_at,
        round_ratios.join(", "),
        through.setup_secs,
        sink.report.setup_secs,
        through.secs,
        by_thread.join(", "),
        through.cpu_secs,
        machine_busy * 100.0,
        sink.server_cpu,
        sink.report.cpu_secs,
        sink.machine_busy * 100.0,
        discard.server_cpu,
        discard.report.cpu_secs,
        discard.machine_busy * 100.0,
        mib(rss_before),
        mib(peak_in(0.0, logged_in)),
        mib(peak_in(logged_in, f64::MAX)),
    )
}

/// Postfix's smtp-source → smtp-sink (plain SMTP, no TLS, no AUTH, one mail file repeated),
/// when both are on the PATH: the reference tools' own rate on this machine.
fn run_postfix(talks: &[Conversation], rows: &mut Vec<Row>) {
    let found = |tool: &str| {
        Command::new(tool)
            .arg("-h")
            .output()
            .map(|_| ())
            .map_err(|e| format!("{tool}: {e}"))
    };
    if let Err(e) = found("smtp-source").and(found("smtp-sink")) {
        println!("Postfix smtp-source row left out ({e}; scripts/bench fetches the tools)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reply.eml");
    // A typical reply: the median size of the set.
    let mut by_size: Vec<&Conversation> = talks.iter().collect();
    by_size.sort_by_key(|t| t.reply_raw.len());
    std::fs::write(&file, &by_size[by_size.len() / 2].reply_raw).unwrap();
    let port = free_port();
    let mut sink = Command::new("smtp-sink");
    // As root smtp-sink wants an unprivileged user to run as.
    if is_root() {
        sink.args(["-u", "nobody"]);
    }
    let mut sink = sink
        .arg(format!("127.0.0.1:{port}"))
        .arg("256")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let out = Command::new("smtp-source")
        .args(["-d", "-s", &SESSIONS.to_string()])
        .args(["-m", &talks.len().to_string()])
        .args(["-f", "agent1@shop.test", "-t", "kunde0@kunden.example"])
        .arg("-F")
        .arg(&file)
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("smtp-source");
    let secs = start.elapsed().as_secs_f64();
    let _ = sink.kill();
    let _ = sink.wait();
    if !out.status.success() {
        println!(
            "Postfix smtp-source row left out: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    rows.push(Row {
        what: format!(
            "reference: Postfix smtp-source → smtp-sink, plain SMTP (no TLS, no AUTH), {SESSIONS} sessions, the median reply repeated"
        ),
        replies: talks.len(),
        secs,
        p50_ms: None,
        p99_ms: None,
        rss_mib: None,
        ceilings: None,
    });
}

/// The share of the cores busy over runs of the given lengths.
fn weighted_busy(runs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (busy, secs) = runs.fold((0.0, 0.0), |(b, t), (secs, share)| {
        (b + secs * share, t + secs)
    });
    busy / secs.max(f64::MIN_POSITIVE)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn report(n: usize, talks: &[Conversation], rows: &[Row], notes: &str) -> String {
    let bytes: usize = talks.iter().map(|t| t.reply_raw.len()).sum();
    let with_pdf = talks.iter().filter(|t| t.with_pdf).count();
    let mut report = format!(
        "\n## Submission, {} ({n} replies to {n} tickets, {:.1} MB, 2–10 KB of text with a Thunderbird quote, {with_pdf} with a PDF)\n\n\
         Machine: {}. {SESSIONS} sessions, one agent each (tests/peers/smtp_load.py: \
         one process per session, one connection, AUTH once, mails back to back). Ack latency \
         = last byte of the mail to the server's 250. Ratios = replies/s through the gateway \
         ÷ the same tool's rate in the same run straight to the recording sink (aiosmtpd, no \
         fsync) and to mticket's own SMTP server code with a delivery that keeps nothing. The \
         replies go in {ROUNDS} rounds: each slice once straight to the recording sink and once \
         through the gateway, back to back, in turn which first; the rows add the rounds up. \
         Before each timed run the machine settles (dirty pages written out, cores idle).\n\n\
         | figure | replies | seconds | replies/s | ratio to recording sink | ratio to no-op SMTP server | p50 ack | p99 ack | peak RSS |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        report::now(),
        bytes as f64 / 1e6,
        report::machine(),
    );
    let ms = |v: Option<f64>| v.map(|x| format!("{x:.1} ms")).unwrap_or_default();
    for r in rows {
        let rate = r.replies as f64 / r.secs;
        let ratio = |c: f64| format!("{:.2}", rate / c);
        report.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} |\n",
            r.what,
            r.replies,
            r.secs,
            rate,
            r.ceilings.map(|(c, _)| ratio(c)).unwrap_or_default(),
            r.ceilings.map(|(_, c)| ratio(c)).unwrap_or_default(),
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.rss_mib.map(|m| format!("{m:.0} MiB")).unwrap_or_default()
        ));
    }
    report.push('\n');
    report.push_str(&notes.replace('\n', "\n\n"));
    report.trim_end().to_string() + "\n"
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "submission benchmark: run it with `scripts/bench` or `cargo bench --bench submission`"
        );
        return;
    }
    let n: usize = std::env::var("BENCH_SUBMISSION_REPLIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let talks: Vec<Conversation> = (0..n).map(|i| conversation(i, &mut rng)).collect();
    let bytes: usize = talks.iter().map(|t| t.reply_raw.len()).sum();
    println!("{n} replies, {:.1} MB", bytes as f64 / 1e6);
    let mut rows = Vec::new();
    let mut notes = run_backend("sqlite", &talks, &mut rows);
    if std::env::var("MTICKET_TEST_POSTGRES").is_ok() {
        notes.push_str(&run_backend("postgres", &talks, &mut rows));
    } else {
        println!("PostgreSQL skipped: MTICKET_TEST_POSTGRES is not set (scripts/bench sets it)");
    }
    run_postfix(&talks, &mut rows);
    report::publish(
        "submission",
        &summary(&rows),
        &report(n, &talks, &rows, &notes),
    );
}

/// The rows of the summary table: replies through the gateway on each database against
/// the same load straight to the recording sink (rate and p99 acknowledgment).
fn summary(rows: &[Row]) -> Vec<report::Row> {
    let mut out = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let find = |starts: &str| {
            rows.iter()
                .find(|r| r.what.starts_with(starts) && r.what.contains(backend))
        };
        let (Some(m), Some(sink)) = (
            find("mticket submission on"),
            find("ceiling: smtp_load.py → recording sink"),
        ) else {
            continue;
        };
        let rate = |r: &Row| r.replies as f64 / r.secs;
        out.push(
            report::Row::new(
                format!("replies through submission on {backend} (STARTTLS, AUTH, rewritten, committed), replies/s; peer: the same load straight to an SMTP recording sink (aiosmtpd)"),
                format!("{:.0}", rate(m)),
            )
            .against(format!("{:.0}", rate(sink)), report::ratio(rate(m) / rate(sink))),
        );
        if let (Some(a), Some(b)) = (m.p99_ms, sink.p99_ms) {
            out.push(
                report::Row::new(
                    format!("replies through submission on {backend}, p99 ack latency, ms; peer: the recording sink"),
                    format!("{a:.1}"),
                )
                .against(format!("{b:.1}"), report::ratio(b / a)),
            );
        }
    }
    out
}
