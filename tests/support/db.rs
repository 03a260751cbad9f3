//! The database a test runs against: SQLite in the test's folder, or a fresh PostgreSQL
//! database when `MTICKET_TEST_DB=postgres` (the test script starts the server and sets
//! `MTICKET_TEST_POSTGRES`).
use std::path::Path;

pub fn backend() -> &'static str {
    match std::env::var("MTICKET_TEST_DB").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

/// A database URL for one test; PostgreSQL databases are created empty.
pub fn url(dir: &Path) -> String {
    url_for(backend(), dir)
}

pub fn url_for(backend: &str, dir: &Path) -> String {
    if backend == "sqlite" {
        return format!("sqlite://{}/data/mticket.db", dir.display());
    }
    let admin = std::env::var("MTICKET_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "MTICKET_TEST_DB=postgres needs MTICKET_TEST_POSTGRES=postgres://user@host:port/postgres \
             (scripts/test starts a private PostgreSQL and sets it)"
        )
    });
    let name = format!("mticket_test_{:016x}", rand::random::<u64>());
    let (base, _) = admin
        .rsplit_once('/')
        .expect("MTICKET_TEST_POSTGRES has no database part");
    let status = std::process::Command::new("psql")
        .arg(&admin)
        .arg("-q")
        .arg("-c")
        .arg(format!("CREATE DATABASE {name}"))
        .status()
        .expect("psql not found: apt-get install postgresql-client");
    assert!(status.success(), "cannot create database {name} on {admin}");
    format!("{base}/{name}")
}

/// A customer's new ticket in the queue, for tests that write through the store.
pub fn new_ticket<'a>(
    queue_id: i64,
    queue_name: &'a str,
    subject: &'a str,
) -> mticket::store::NewTicket<'a> {
    mticket::store::NewTicket {
        subject,
        queue_id,
        queue_name,
        creator_address: "kunde@example.test",
        customer_id: None,
        cc: &[],
        spoof_suspect: false,
        first_number: 1,
        assignee_id: None,
        at: 1_700_000_000,
    }
}
