//! The store: the one place that holds SQL. SQLite (embedded default) and PostgreSQL
//! (by URL) run the same statements through sqlx's `Any` driver; where the two differ
//! (full-text search, transaction start) it is decided here and nowhere else.
//!
//! Times are Unix seconds and flags 0/1 integers, because `Any` decodes nothing richer.
mod admin;
mod edits;
mod instances;
mod mailbox;
mod outbox;
mod pending;
mod tasks;
mod tickets;

pub use admin::*;
pub use edits::*;
pub use instances::*;
pub use mailbox::*;
pub use outbox::*;
pub use tasks::*;
pub use tickets::*;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Transaction};

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
    /// True when retrying later may succeed (connection lost, database locked).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => {
                    // PostgreSQL: serialization failure, deadlock, lock not available, the
                    // server shutting down or starting up.
                    let code = db.code().unwrap_or_default();
                    let msg = db.message().to_ascii_lowercase();
                    matches!(&*code, "40001" | "40P01" | "55P03" | "57P01" | "57P03")
                        || msg.contains("locked")
                        || msg.contains("busy")
                }
                _ => false,
            },
            // The instance that took over may die too.
            StoreError::LeaseLost(_) => true,
            _ => false,
        }
    }
}

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

/// Deferred commits counted against the syncs that covered them (SQLite).
#[derive(Default)]
struct Syncs {
    /// Deferred commits begun, counted while the transaction holds the write lock, before
    /// its COMMIT: whoever sees a commit's rows sees it counted.
    begun: AtomicU64,
    /// Deferred commits whose COMMIT returned (whether it succeeded or not): their log
    /// frames are written.
    finished: tokio::sync::watch::Sender<u64>,
    /// How many of the begun a sync is known to cover.
    covered: AtomicU64,
    /// Flushes of the write-ahead log so far.
    flushes: AtomicU64,
}

impl Syncs {
    /// The count a sync started now would cover, when some deferred commit is uncovered.
    fn uncovered(&self) -> Option<u64> {
        let through = self.begun.load(Ordering::Acquire);
        (self.covered.load(Ordering::Acquire) < through).then_some(through)
    }
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

    /// Makes every commit so far durable, deferred ones included: once the deferred commits
    /// begun so far have written their frames to the write-ahead log, the log goes to disk.
    /// A commit with `synchronous = FULL` would flush the same log, but only after waiting
    /// for SQLite's write lock behind every writer in line; this waits for no one but the
    /// commit that may be under way.
    pub async fn sync(&self) -> Result<()> {
        let Some(through) = self.syncs.uncovered() else {
            return Ok(());
        };
        // Concurrent callers (submissions, each before its 250) share one flush: whoever
        // waited here finds its commits covered by the flush before it.
        let _one_at_a_time = self.sync_turn.lock().await;
        if self.syncs.covered.load(Ordering::Acquire) >= through {
            return Ok(());
        }
        // Writers take turns, so at most one commit is under way; its frames count too.
        let _ = self
            .syncs
            .finished
            .subscribe()
            .wait_for(|finished| *finished >= through)
            .await;
        if let Some(wal) = self.wal.clone() {
            let flushed = tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
                Ok(log) => log.sync_data(),
                // No log: the last connection checkpointed the database, synced, and
                // removed it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|flushed| flushed);
            flushed.map_err(sqlx::Error::Io)?;
        }
        self.syncs.flushes.fetch_add(1, Ordering::Relaxed);
        self.syncs.covered.fetch_max(through, Ordering::Release);
        Ok(())
    }

    /// True when a sync covered every deferred commit: what was read from the store
    /// before this returned true is durable.
    pub fn all_synced(&self) -> bool {
        self.syncs.uncovered().is_none()
    }

    /// SQLite: copies committed pages from the write-ahead log into the database without
    /// waiting for readers or writers (`PASSIVE`) and returns the log's length in pages.
    /// PostgreSQL checkpoints by itself.
    pub async fn checkpoint(&self) -> Result<i64> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        // (busy, pages in the log, pages copied)
        let (_, log, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.relaxed)
            .await?;
        Ok(log)
    }

    /// Refreshes the statistics the query planners choose their plans by (`ANALYZE`).
    /// Without them SQLite takes any index that narrows a ticket list over the ticket
    /// number's order, and sorts tens of thousands of tickets for a page of 100 (100 ms
    /// instead of 3 ms at 250,000 tickets); PostgreSQL's autovacuum refreshes them too, but
    /// only after a while, and misjudges joins and full-text matches meanwhile (a search for
    /// one order number took 130 ms instead of 2 ms). About half a second at 1,000,000
    /// items, holding the write lock on SQLite.
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
        // Counted before the commit, under the write lock: whoever sees the rows sees the
        // count, and a sync that reads it waits for the commit to finish.
        syncs.begun.fetch_add(1, Ordering::AcqRel);
        let committed = self.inner.commit().await;
        syncs.finished.send_modify(|finished| *finished += 1);
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

    /// A fresh id for a row of `table` queued in this transaction.
    async fn next_id(&mut self, table: &'static str) -> Result<i64> {
        self.ids.next(&mut self.inner, self.backend, table).await
    }
}

/// Sets the counter `name` to `value`, creating it when missing.
async fn set_counter(conn: &mut AnyConnection, name: &str, value: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name.to_string())
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// SQLite's page cache per connection of the pool for reads and single mails (SQLite's
/// default): each of its 8 connections keeps its own, so 32 MiB each took 400 MiB once 200
/// mail clients had opened their folders at 1,000,000 items. Pages it does not hold come
/// from the system's file cache.
const READ_CACHE_KIB: i64 = 2048;

/// SQLite's page cache per connection of the pool for intake batches, replies and the
/// mailbox lister (3 connections): room for a whole batch (64 mails, up to 8 MB) before
/// dirty pages spill into the log mid-transaction.
const BATCH_CACHE_KIB: i64 = 16384;

/// Pool settings; for SQLite, the pragmas each connection gets, with `synchronous` and the
/// page cache as given.
fn pool_options(backend: Backend, synchronous: &'static str, cache_kib: i64) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        // No ping before each use: it is a round trip (a thread hop for SQLite) on every
        // statement outside a transaction and every transaction. A connection the server
        // dropped fails its next statement instead, which is a transient error (the mail
        // is taken or answered again later), and the pool then replaces it.
        .test_before_acquire(false)
        // A connection still in a transaction when handed out is either rolling back a
        // dropped one (queued; the ping waits for it) or stuck: when a COMMIT fails on a full
        // disk, SQLite ends the transaction itself, the driver's ROLLBACK then fails too, and
        // it counts the transaction open forever, refusing every BEGIN on the connection.
        // Such a connection is closed and another one opened.
        .before_acquire(|conn, _| {
            Box::pin(async move {
                if !conn.is_in_transaction() {
                    return Ok(true);
                }
                conn.ping().await?;
                let usable = !conn.is_in_transaction();
                if !usable {
                    tracing::warn!("closing a database connection left in a failed transaction");
                }
                Ok(usable)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Large pages suit a database mostly made of mails; this only takes
                    // effect when the file is created.
                    conn.execute("PRAGMA page_size = 16384").await?;
                    // WAL lets admin commands read while `serve` writes; FULL sync because
                    // a committed mail is deleted upstream right after.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    // `serve` checkpoints in the background; a commit does it only when the
                    // log outgrew 64 MB, or 256 MB for commits that do not wait for the disk
                    // (intake bursts: the syncs between them, with the limit of 64 MB, keep
                    // the log shorter without copying it inside every batch).
                    conn.execute(match synchronous {
                        "NORMAL" => "PRAGMA wal_autocheckpoint = 16384",
                        _ => "PRAGMA wal_autocheckpoint = 4096",
                    })
                    .await?;
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA synchronous = {synchronous}"
                    )))
                    .await?;
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA cache_size = -{cache_kib}"
                    )))
                    .await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 15000").await?;
                }
                Ok(())
            })
        })
}

/// Builds the SQLite URL: creates the folder and asks sqlx to create the file. Also gives
/// the file's path (none for `:memory:`).
fn sqlite_url(path: &str) -> Result<(String, Option<String>)> {
    let path = path.trim_start_matches("//");
    let (file, params) = path.split_once('?').unwrap_or((path, ""));
    if file != ":memory:"
        && let Some(dir) = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Folder(dir.display().to_string(), e))?;
    }
    let params = if params.contains("mode=") {
        params.to_string()
    } else if params.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{params}&mode=rwc")
    };
    let url = format!("sqlite://{file}?{params}");
    Ok((url, (file != ":memory:").then(|| file.to_string())))
}

/// A database URL fit for logs: the password replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn millis_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Appends `$1, $2, …` bound to `values` (the inside of an `IN (…)` list).
pub(crate) fn push_list(sql: &mut Sql, values: impl IntoIterator<Item = Arg>) {
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(v);
    }
}

/// Numbered placeholders for SQL built at run time (`$1`, `$2`, … on both backends).
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
    /// `$N` (both backends) or a bare `?` (SQLite only; see [`Sql::for_backend`]).
    numbered: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
    Blob(Vec<u8>),
    Null,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
            numbered: true,
        }
    }
    /// For statements with many placeholders: SQLite looks up every named placeholder
    /// (`$N`, `?N`) among the names seen so far, once while parsing and once more when sqlx
    /// binds (quadratic: a 1,000-placeholder insert spent more time there than inserting);
    /// bare `?` are numbered in order at once.
    pub fn for_backend(backend: Backend, text: &str) -> Sql {
        let mut sql = Sql::new(text);
        sql.numbered = backend != Backend::Sqlite;
        sql
    }
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }
    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        if self.numbered {
            self.text.push('$');
            self.text.push_str(&self.args.len().to_string());
        } else {
            self.text.push('?');
        }
        self
    }
    pub fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments> {
        Sql {
            text: self.text.clone(),
            args: self.args.clone(),
            numbered: self.numbered,
        }
        .into_query()
    }
    pub fn into_query(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text));
        for a in self.args {
            q = match a {
                Arg::Int(i) => q.bind(i),
                Arg::Text(t) => q.bind(t),
                Arg::OptInt(i) => q.bind(i),
                Arg::OptText(t) => q.bind(t),
                Arg::Blob(b) => q.bind(b),
                Arg::Null => q.bind(None::<i64>),
            };
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/x.db");
        let (url, path) = sqlite_url(&format!("//{}", file.display())).unwrap();
        assert!(url.ends_with("x.db?mode=rwc"));
        assert_eq!(path.as_deref(), file.to_str());
        assert!(dir.path().join("sub").is_dir());
    }

    #[tokio::test]
    async fn a_sync_covers_the_deferred_commits_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let syncs = || store.syncs.flushes.load(Ordering::Relaxed);
        assert!(store.all_synced());
        store.begin().await.unwrap().commit().await.unwrap();
        assert!(store.all_synced(), "a synced commit needs no sync");

        for _ in 0..2 {
            let tx = store.begin_deferred().await.unwrap();
            tx.commit().await.unwrap();
        }
        assert!(!store.all_synced());
        // A rolled-back deferred transaction leaves nothing to sync and counts nothing.
        drop(store.begin_deferred().await.unwrap());
        store.sync().await.unwrap();
        assert!(store.all_synced());
        assert_eq!(syncs(), 1, "one flush covered both");
        store.sync().await.unwrap();
        assert_eq!(syncs(), 1, "nothing left to flush: no commit");

        // Callers that sync at the same time share one flush.
        for _ in 0..3 {
            store
                .begin_deferred()
                .await
                .unwrap()
                .commit()
                .await
                .unwrap();
        }
        let (a, b, c) = tokio::join!(store.sync(), store.sync(), store.sync());
        for r in [a, b, c] {
            r.unwrap();
        }
        assert!(store.all_synced());
        assert_eq!(syncs(), 2, "one more flush for all three");
    }
}
