//! The store: the one place that holds SQL. SQLite (embedded default) and PostgreSQL
//! (by URL) run the same statements through sqlx's `Any` driver; where the two differ
//! (full-text search, transaction start) it is decided here and nowhere else.
//!
//! Times are Unix seconds and flags 0/1 integers, because `Any` decodes nothing richer.
mod admin;
mod connection;
mod detail;
mod durability;
mod edits;
mod history;
mod instances;
mod intake;
mod items;
mod listing;
mod mailbox;
mod outbox;
mod pending;
mod pop3;
mod search;
mod sql;
mod stats;
mod tasks;
mod tickets;

pub use admin::{AwaySettings, NewAgent, QueueSettings, Upserted};
pub use connection::redact_url;
pub use edits::{Field, ItemBrief, TicketFields};
pub use history::Actor;
pub use instances::{InstanceRow, InstancesReport, Lease, LeaseRow, OutboxCounts, RENEW_EVERY};
pub use intake::AgentAway;
pub use items::NewItem;
pub use listing::TicketQuery;
pub use mailbox::{ListedTicket, Listing, OwnMessage, TicketEdit};
pub use outbox::{Content, Failed, NewOutbound, Outbound};
pub use search::TIDY_SEARCH_QUEUE_AFTER;
pub(crate) use sql::{Arg, Sql, flag, now, push_list};
pub use tasks::{TaskReport, TaskState};
pub use tickets::{NewTicket, TicketChange, TicketRef, mergeable};

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Transaction};

use connection::{BATCH_CACHE_KIB, READ_CACHE_KIB, pool_options, sqlite_url};
use durability::Syncs;
use sql::{millis_now, set_counter};

/// What went wrong in the store. [`StoreError::NotFound`], [`StoreError::Conflict`] and
/// [`StoreError::Invalid`] are permanent: the caller's request can never work as asked, and
/// callers answer them with permanent replies. Every other variant is a failure of the
/// store itself: transient when [`StoreError::is_transient`] says so (the mail or command
/// is tried again later), permanent when [`StoreError::is_permanent`] says the database
/// refused the data itself, and otherwise unknown, which a caller that must not lose mail
/// treats as transient.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot create the database folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("another gateway instance took over {0}")]
    LeaseLost(String),
}

impl StoreError {
    /// True when retrying later may succeed (connection lost, database locked or full).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => {
                    DbCode::of(db.as_ref()).is_some_and(DbCode::is_transient)
                }
                _ => false,
            },
            // The instance that took over may die too.
            StoreError::LeaseLost(_) => true,
            _ => false,
        }
    }

    /// True when the request can never work: what it asks for does not exist or may not
    /// be, or the database refused the data it carries (a NUL byte in PostgreSQL text, a
    /// value too big for SQLite). A duplicate key is not among them: it is how a race with
    /// another writer looks, and the retry finds the row.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Invalid(_) => true,
            StoreError::Db(sqlx::Error::Database(db)) => {
                DbCode::of(db.as_ref()).is_some_and(DbCode::is_bad_data)
            }
            _ => false,
        }
    }
}

/// A database error's code, told apart by the driver that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbCode<'a> {
    /// SQLite's extended result code.
    Sqlite(i64),
    /// PostgreSQL's SQLSTATE.
    Postgres(&'a str),
}

impl<'a> DbCode<'a> {
    fn of(db: &'a dyn sqlx::error::DatabaseError) -> Option<DbCode<'a>> {
        if let Some(e) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
            let code = sqlx::error::DatabaseError::code(e)?;
            return code.parse().ok().map(DbCode::Sqlite);
        }
        db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .map(|e| DbCode::Postgres(e.code()))
    }

    fn is_transient(self) -> bool {
        match self {
            // The primary result code is the low byte of the extended one. BUSY and
            // LOCKED: another connection holds the lock. IOERR: the disk or the file system
            // failed a read or write; the transaction was rolled back whole, and retrying
            // later keeps the mail upstream instead of refusing it for good. FULL: the disk
            // may be freed.
            DbCode::Sqlite(code) => matches!(
                code & 0xff,
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL
            ),
            // Serialization failure, deadlock, lock not available, the server shutting
            // down or starting up; connection exceptions (class 08) and insufficient
            // resources (class 53: disk full, out of memory, too many connections).
            DbCode::Postgres(state) => {
                matches!(
                    state,
                    "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
                ) || state.starts_with("08")
                    || state.starts_with("53")
            }
        }
    }
}

impl DbCode<'_> {
    /// The data itself was refused: PostgreSQL's data exceptions (class 22), SQLite's
    /// TOOBIG and MISMATCH.
    fn is_bad_data(self) -> bool {
        match self {
            DbCode::Sqlite(code) => matches!(code & 0xff, SQLITE_TOOBIG | SQLITE_MISMATCH),
            DbCode::Postgres(state) => state.starts_with("22"),
        }
    }
}

const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_TOOBIG: i64 = 18;
const SQLITE_MISMATCH: i64 = 20;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// For writes whose loss in a power failure costs at most a repeat (see
    /// [`Store::outbox_sent`]) or that wait for [`Store::sync`] (see
    /// [`Store::begin_deferred`]): SQLite connections with `synchronous = NORMAL`;
    /// PostgreSQL shares `pool`.
    relaxed: AnyPool,
    backend: Backend,
    /// When this process last committed mail (intake or submission), in Unix milliseconds.
    last_mail: Arc<AtomicI64>,
    syncs: Arc<Syncs>,
    /// SQLite's write-ahead log file (see [`Store::sync`]).
    wal: Option<std::path::PathBuf>,
    /// The SQLite database file.
    file: Option<std::path::PathBuf>,
    /// SQLite has one writer at a time: write transactions of this process queue here
    /// instead of in SQLite's busy handler, which sleeps in steps up to 100 ms and serves
    /// waiters in no order.
    writer: Arc<tokio::sync::Semaphore>,
    /// Held by the one [`Store::sync`] running.
    sync_turn: Arc<tokio::sync::Mutex<()>>,
    /// This process's instance id (see `instances`).
    instance: Arc<str>,
    /// PostgreSQL: the url, for the connection that listens for other instances' news.
    url: Option<Arc<str>>,
    /// The mailbox's last UID as far as this process knows (see [`Store::mailbox_uids`]).
    uids: Arc<tokio::sync::watch::Sender<i64>>,
}

/// A write transaction, or a read-only view (see [`Store::snapshot`]). Commit with
/// [`Tx::commit`]; dropping it rolls back. Inserts are queued and sent together (see
/// `pending`); every statement goes through [`Tx::conn`], which sends them first, so reads
/// always see the transaction's own writes.
pub struct Tx {
    inner: Transaction<'static, Any>,
    backend: Backend,
    /// A view from [`Store::snapshot`]: it takes no lock and writes nothing.
    read_only: bool,
    /// Set for a deferred transaction (see [`Store::begin_deferred`]).
    deferred: Option<Arc<Syncs>>,
    pending: pending::Pending,
    ids: pending::Ids,
    status_ids: std::collections::HashMap<String, i64>,
    /// SQLite: this process's turn to write, held until commit or rollback. Declared last,
    /// so it is given back after `inner` ended.
    _writer: Option<tokio::sync::OwnedSemaphorePermit>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating a SQLite file and
    /// its folder when missing. Does not migrate; see [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let mut wal = None;
        let mut file = None;
        let given = url;
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite:") {
            let (url, path) = sqlite_url(path)?;
            wal = path
                .as_ref()
                .map(|f| std::path::PathBuf::from(format!("{f}-wal")));
            file = path.map(std::path::PathBuf::from);
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::Invalid(format!(
                "database url must start with sqlite:// or postgres:// (got {})",
                redact_url(url)
            )));
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2));
        let pool = pool_options(backend, "FULL", READ_CACHE_KIB)
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .connect_with(options.clone())
            .await?;
        let relaxed = match backend {
            Backend::Sqlite => {
                pool_options(backend, "NORMAL", BATCH_CACHE_KIB)
                    .max_connections(3)
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => pool.clone(),
        };
        Ok(Store {
            pool,
            relaxed,
            backend,
            last_mail: Default::default(),
            syncs: Default::default(),
            wal,
            file,
            writer: Arc::new(tokio::sync::Semaphore::new(1)),
            sync_turn: Default::default(),
            instance: format!("{:016x}", rand::random::<u64>()).into(),
            url: (backend == Backend::Postgres).then(|| given.into()),
            uids: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Notes that intake or an agent's mail just committed (see [`Store::mail_quiet_for`]).
    pub fn note_mail(&self) {
        self.last_mail.store(millis_now(), Ordering::Relaxed);
    }

    /// True when this process committed no mail for `d`: background work that competes
    /// with mail for the write lock and the processors waits for such a pause.
    pub fn mail_quiet_for(&self, d: Duration) -> bool {
        let last = self.last_mail.load(Ordering::Relaxed);
        millis_now() - last >= d.as_millis() as i64
    }

    /// Runs the backend's migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when writers wait for one another (SQLite's one write lock): then work that can
    /// be done before a write transaction, on a [`Store::snapshot`], should be. PostgreSQL
    /// writers only wait for the rows they share.
    pub fn writers_take_turns(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Starts a write transaction. SQLite takes the write lock at once (`BEGIN IMMEDIATE`)
    /// so two writers wait for each other instead of failing on lock upgrade.
    pub async fn begin(&self) -> Result<Tx> {
        self.begin_on(&self.pool, None).await
    }

    /// Starts a write transaction whose commit does not wait for the disk, for work that is
    /// acknowledged only after a later [`Store::sync`] (POP3 intake: DELE). A crash of the
    /// process loses nothing; a power failure may undo what no sync covered yet, and the
    /// mail is then still upstream. SQLite only: on PostgreSQL, several instances could
    /// not tell which of their commits a sync covered, so this is [`Store::begin`].
    pub async fn begin_deferred(&self) -> Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.begin_on(&self.relaxed, Some(self.syncs.clone())).await,
            Backend::Postgres => self.begin().await,
        }
    }

    /// A read-only view of the store, consistent in itself, that holds up no writer: work
    /// done on it before a write transaction (lookups, rewriting a mail) does not keep other
    /// writers waiting for SQLite's one write lock. The view may be stale by the time the
    /// write starts: check what it read (e.g. [`Tx::ticket_version`]) again there.
    pub async fn snapshot(&self) -> Result<Tx> {
        let mut tx = Tx::new(self.pool.begin().await?, self.backend, None, None);
        tx.read_only = true;
        Ok(tx)
    }

    async fn begin_on(&self, pool: &AnyPool, deferred: Option<Arc<Syncs>>) -> Result<Tx> {
        let (inner, writer) = match self.backend {
            Backend::Sqlite => {
                let permit = self.writer.clone().acquire_owned().await;
                (pool.begin_with("BEGIN IMMEDIATE").await?, permit.ok())
            }
            Backend::Postgres => (pool.begin().await?, None),
        };
        Ok(Tx::new(inner, self.backend, deferred, writer))
    }

    /// Refreshes the statistics the query planners choose their plans by (`ANALYZE`).
    /// Without them SQLite takes any index that narrows a ticket list over the ticket
    /// number's order, and sorts tens of thousands of tickets for a page of 100;
    /// PostgreSQL's autovacuum refreshes them too, but only after a while, and misjudges
    /// joins and full-text matches meanwhile. It holds the write lock on SQLite for a
    /// moment, so it runs a minute after the start and then hourly.
    pub async fn refresh_statistics(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("ANALYZE").execute(tx.conn().await?).await?;
        tx.commit().await
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.relaxed.close().await;
    }
}

impl Tx {
    fn new(
        inner: Transaction<'static, Any>,
        backend: Backend,
        deferred: Option<Arc<Syncs>>,
        writer: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Tx {
        Tx {
            inner,
            backend,
            read_only: false,
            deferred,
            pending: pending::Pending::new(),
            ids: pending::Ids::default(),
            status_ids: Default::default(),
            _writer: writer,
        }
    }

    pub async fn commit(mut self) -> Result<()> {
        self.pending.flush(&mut self.inner, self.backend).await?;
        let Some(syncs) = self.deferred.clone() else {
            self.inner.commit().await?;
            return Ok(());
        };
        syncs.commit_begun();
        let committed = self.inner.commit().await;
        syncs.commit_finished();
        committed?;
        Ok(())
    }

    /// The connection, after the queued writes went out.
    async fn conn(&mut self) -> Result<&mut AnyConnection> {
        debug_assert!(
            !self.read_only || self.pending.is_empty(),
            "a write queued on a read-only view"
        );
        self.pending.flush(&mut self.inner, self.backend).await?;
        Ok(&mut *self.inner)
    }

    /// The connection with the queued writes still held back, for the few statements whose
    /// answer no queued write can change (a status's id; the ticket counter, whose queued
    /// value is looked at first): every other statement goes through [`Tx::conn`].
    fn conn_unflushed(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// A fresh id for a row of `table` queued in this transaction.
    async fn next_id(&mut self, table: &'static str) -> Result<i64> {
        self.ids.next(&mut self.inner, self.backend, table).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_codes_tell_transient_failures_from_permanent_ones() {
        let table = [
            // SQLite, by extended result code.
            (DbCode::Sqlite(5), true),     // BUSY
            (DbCode::Sqlite(517), true),   // BUSY_SNAPSHOT
            (DbCode::Sqlite(6), true),     // LOCKED
            (DbCode::Sqlite(262), true),   // LOCKED_SHAREDCACHE
            (DbCode::Sqlite(10), true),    // IOERR
            (DbCode::Sqlite(778), true),   // IOERR_WRITE
            (DbCode::Sqlite(13), true),    // FULL
            (DbCode::Sqlite(1), false),    // ERROR (bad SQL)
            (DbCode::Sqlite(8), false),    // READONLY
            (DbCode::Sqlite(11), false),   // CORRUPT
            (DbCode::Sqlite(19), false),   // CONSTRAINT
            (DbCode::Sqlite(2067), false), // CONSTRAINT_UNIQUE
            (DbCode::Sqlite(787), false),  // CONSTRAINT_FOREIGNKEY
            // PostgreSQL, by SQLSTATE.
            (DbCode::Postgres("40001"), true), // serialization_failure
            (DbCode::Postgres("40P01"), true), // deadlock_detected
            (DbCode::Postgres("55P03"), true), // lock_not_available
            (DbCode::Postgres("57P01"), true), // admin_shutdown
            (DbCode::Postgres("57P02"), true), // crash_shutdown
            (DbCode::Postgres("57P03"), true), // cannot_connect_now
            (DbCode::Postgres("08000"), true), // connection_exception
            (DbCode::Postgres("08006"), true), // connection_failure
            (DbCode::Postgres("53000"), true), // insufficient_resources
            (DbCode::Postgres("53100"), true), // disk_full
            (DbCode::Postgres("53200"), true), // out_of_memory
            (DbCode::Postgres("53300"), true), // too_many_connections
            (DbCode::Postgres("23505"), false), // unique_violation
            (DbCode::Postgres("23503"), false), // foreign_key_violation
            (DbCode::Postgres("42601"), false), // syntax_error
            (DbCode::Postgres("42P01"), false), // undefined_table
            (DbCode::Postgres("22001"), false), // string_data_right_truncation
            (DbCode::Postgres("57014"), false), // query_canceled
        ];
        for (code, transient) in table {
            assert_eq!(code.is_transient(), transient, "{code:?}");
        }
    }

    #[test]
    fn database_codes_tell_refused_data() {
        let table = [
            (DbCode::Sqlite(18), true),         // TOOBIG
            (DbCode::Sqlite(20), true),         // MISMATCH
            (DbCode::Sqlite(13), false),        // FULL
            (DbCode::Sqlite(2067), false),      // CONSTRAINT_UNIQUE: a race
            (DbCode::Postgres("22021"), true),  // character_not_in_repertoire (NUL)
            (DbCode::Postgres("22001"), true),  // string_data_right_truncation
            (DbCode::Postgres("23505"), false), // unique_violation: a race
            (DbCode::Postgres("XX000"), false), // internal_error: unknown
            (DbCode::Postgres("53100"), false), // disk_full
        ];
        for (code, bad) in table {
            assert_eq!(code.is_bad_data(), bad, "{code:?}");
        }
    }

    #[test]
    fn a_request_that_cannot_work_is_never_transient() {
        for e in [
            StoreError::NotFound("no ticket #1".into()),
            StoreError::Conflict("taken".into()),
            StoreError::Invalid("bad".into()),
        ] {
            assert!(!e.is_transient(), "{e}");
            assert!(e.is_permanent(), "{e}");
        }
        assert!(!StoreError::Db(sqlx::Error::PoolTimedOut).is_permanent());
        assert!(StoreError::LeaseLost("intake".into()).is_transient());
        assert!(StoreError::Db(sqlx::Error::PoolTimedOut).is_transient());
    }

    #[tokio::test]
    async fn a_sqlite_error_is_read_by_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        let Err(sqlx::Error::Database(db)) = sqlx::query("SELECT * FROM no_such_table")
            .execute(&store.pool)
            .await
        else {
            panic!("a missing table is an error");
        };
        assert_eq!(DbCode::of(db.as_ref()), Some(DbCode::Sqlite(1)));
        store.close().await;
    }
}
