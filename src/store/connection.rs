//! How the store reaches its database: the URL forms, the pools' settings and the pragmas
//! every SQLite connection gets.
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Connection, Executor};

use super::{Backend, Result, StoreError};

/// SQLite's page cache per connection of the pool for reads and single mails (SQLite's
/// default): each of its 8 connections keeps its own, so a larger cache per connection
/// multiplies once many mail clients have opened their folders. Pages it does not hold
/// come from the system's file cache.
pub(super) const READ_CACHE_KIB: i64 = 2048;

/// SQLite's page cache per connection of the pool for intake batches, replies and the
/// mailbox lister (3 connections): room for a whole batch (64 mails, up to 8 MB) before
/// dirty pages spill into the log mid-transaction.
pub(super) const BATCH_CACHE_KIB: i64 = 16384;

/// Pool settings; for SQLite, the pragmas each connection gets, with `synchronous` and the
/// page cache as given.
pub(super) fn pool_options(
    backend: Backend,
    synchronous: &'static str,
    cache_kib: i64,
) -> AnyPoolOptions {
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
pub(super) fn sqlite_url(path: &str) -> Result<(String, Option<String>)> {
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
}
