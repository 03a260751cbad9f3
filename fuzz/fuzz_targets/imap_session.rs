//! The agents' IMAP server session (imap-next/imap-codec underneath, our commands above)
//! with the fuzz input as the client's bytes, after a fixed `LOGIN` and `SELECT INBOX` so
//! the input reaches the commands of the selected state: FETCH, SEARCH, STORE, COPY, MOVE,
//! EXPUNGE, APPEND, IDLE, … The first input byte picks the read size (see `read_size`).
//!
//! Each run gets a fresh copy of one SQLite database made at start (two queues, the agent
//! `user` with four tickets' mail, two of the tickets assigned to them), so a run's changes
//! do not leak into the next and a crash replays alone.
#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use libfuzzer_sys::fuzz_target;
use mticket::config::Config;
use mticket::core::texts::Locale;
use mticket::intake::authcheck::AuthChecker;
use mticket::intake::pipeline::{Arrival, Pipeline};
use mticket::login::Logins;
use mticket::protocol::imap_server::{ImapConfig, run_session};
use mticket::mailbox::view::Mailbox;
use mticket::protocol::login_guard::{GuardConfig, LoginGuard};
use mticket::net::listener::{SessionClock, SessionStream, Shutdown};
use mticket::store::{Actor, NewAgent, QueueSettings, Store};
use mticket_fuzz::{RUNTIME, Script, read_size};

const PREFIX: &[u8] = b"a LOGIN user pass\r\na SELECT INBOX\r\n";

struct Databases {
    _dir: tempfile::TempDir,
    template: PathBuf,
    work: PathBuf,
}

static DATABASES: LazyLock<Databases> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temporary directory");
    let template = dir.path().join("template.db");
    let work = dir.path().join("work.db");
    RUNTIME.block_on(fill(&template));
    Databases {
        _dir: dir,
        template,
        work,
    }
});

const MAILS: &[&str] = &[
    "From: Erika Muster <erika@kunde.example>\r\n\
     To: support@shop.test\r\n\
     Subject: Wo bleibt mein Paket?\r\n\
     Message-ID: <paket-1@kunde.example>\r\n\
     Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\
     \r\n\
     Bestellt am Montag, noch nicht da.\r\n",
    "From: Max <max@kunde.example>\r\n\
     To: support@shop.test\r\n\
     Subject: =?utf-8?q?Rechnung_f=C3=BCr_November?=\r\n\
     Message-ID: <rechnung-1@kunde.example>\r\n\
     Date: Tue, 24 Nov 2026 11:00:00 +0100\r\n\
     MIME-Version: 1.0\r\n\
     Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
     \r\n\
     --b1\r\n\
     Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
     \r\n\
     --b2\r\n\
     Content-Type: text/plain; charset=utf-8\r\n\
     \r\n\
     Die Rechnung ist falsch.\r\n\
     --b2\r\n\
     Content-Type: text/html; charset=utf-8\r\n\
     \r\n\
     <p>Die Rechnung ist <b>falsch</b>.</p>\r\n\
     --b2--\r\n\
     --b1\r\n\
     Content-Type: application/pdf; name=\"rechnung.pdf\"\r\n\
     Content-Disposition: attachment; filename=\"rechnung.pdf\"\r\n\
     Content-Transfer-Encoding: base64\r\n\
     \r\n\
     JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n\
     --b1--\r\n",
    "From: Erika Muster <erika@kunde.example>\r\n\
     To: support@shop.test\r\n\
     Subject: Re: [Support #1] Wo bleibt mein Paket?\r\n\
     Message-ID: <paket-2@kunde.example>\r\n\
     In-Reply-To: <paket-1@kunde.example>\r\n\
     References: <paket-1@kunde.example>\r\n\
     Date: Wed, 25 Nov 2026 09:30:00 +0100\r\n\
     \r\n\
     Immer noch nichts.\r\n\
     \r\n\
     > Bestellt am Montag, noch nicht da.\r\n",
    "From: jane@example.org\r\n\
     To: support@shop.test\r\n\
     Subject: Printer\r\n\
     Message-ID: <printer@example.org>\r\n\
     Date: Thu, 26 Nov 2026 08:00:00 +0000\r\n\
     \r\n\
     The printer blinks.\r\n",
];

/// The template database: queues, the agent and the tickets, listed for the mailbox.
async fn fill(path: &std::path::Path) {
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("template database");
    store.migrate().await.expect("migrations");
    for (name, address) in [
        ("Support", "support@shop.test"),
        ("Sales", "sales@shop.test"),
    ] {
        store
            .queue_add(&QueueSettings {
                name: Some(name.into()),
                address: Some(address.into()),
                autoresponder: Some(false),
                enabled: Some(true),
                ..QueueSettings::default()
            })
            .await
            .expect("queue");
    }
    // The cheapest argon2id parameters: the prefix logs in on every run.
    let params = Params::new(8, 1, 1, None).expect("argon2 parameters");
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"pass")
        .expect("password hash")
        .to_string();
    store
        .agent_add(&NewAgent {
            login: "user".into(),
            name: "Fuzz User".into(),
            email: "user@shop.test".into(),
            password_hash: hash,
            is_admin: false,
            queues: vec!["Support".into(), "Sales".into()],
        })
        .await
        .expect("agent");
    let pipeline = Pipeline::new(
        store.clone(),
        Arc::new(Config::default()),
        AuthChecker::with_static_records(HashMap::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let support = store.queue_by_name("Support").await.expect("queue");
    for raw in MAILS {
        let arrival = Arrival {
            raw: raw.as_bytes().to_vec(),
            uidl: None,
        };
        pipeline
            .take_in(&support, &[arrival], None)
            .await
            .expect("intake");
    }
    for number in [1, 2] {
        store
            .ticket_assign(number, Some("user"), &Actor::system())
            .await
            .expect("assign");
    }
    let mailbox = Mailbox::new(store.clone(), Locale::En, "localhost");
    mailbox.relist_if_the_form_changed().await.expect("relist");
    while mailbox.list_changed(100).await.expect("listing") > 0 {}
    store.close().await;
}

fuzz_target!(|data: &[u8]| {
    let dbs = &*DATABASES;
    let (chunk, input) = read_size(data);
    let mut script = Vec::with_capacity(PREFIX.len() + input.len());
    script.extend_from_slice(PREFIX);
    script.extend_from_slice(input);

    for suffix in ["-wal", "-shm"] {
        let mut side = dbs.work.clone().into_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
    std::fs::copy(&dbs.template, &dbs.work).expect("copy of the template database");

    RUNTIME.block_on(async {
        let store = Store::connect(&format!("sqlite://{}", dbs.work.display()))
            .await
            .expect("database");
        let cfg = ImapConfig {
            allow_plain: true,
            max_literal: 64 * 1024,
            guard: Arc::new(LoginGuard::new(GuardConfig {
                max_failures: 3,
                lockout: Duration::from_secs(60),
                delay_step: Duration::ZERO,
            })),
            ..ImapConfig::default()
        };
        let mailbox = Mailbox::new(store.clone(), Locale::En, "localhost");
        let logins = Arc::new(Logins::new(store.clone()));
        let (_keep, shutdown) = Shutdown::channel();
        let stream = SessionStream::Plain(Script::new(&script, chunk));
        let _ = run_session(stream, None, Arc::new(cfg), logins, mailbox, shutdown, SessionClock::default()).await;
        store.close().await;
    });
});
