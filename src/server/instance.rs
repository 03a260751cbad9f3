//! This process as a gateway instance on its database: opening and migrating the database,
//! registering with the other instances on it (and the lock file that keeps a second
//! `serve` off a SQLite file), and signing off at the end.
use anyhow::Context;

use crate::config::Config;
use crate::store::{Store, redact_url};

/// The registered instance; holds the SQLite lock file until it is dropped.
pub(super) struct Instance {
    pub store: Store,
    /// This machine's name and this process's id, as the other instances know them.
    pub host: String,
    pub pid: u32,
    _sqlite_lock: Option<std::fs::File>,
}

impl Instance {
    /// Opens and migrates the database and registers this process on it.
    pub async fn register(config: &Config) -> anyhow::Result<Instance> {
        let url = &config.database.url;
        let store = Store::connect(url)
            .await
            .with_context(|| format!("cannot open the database {}", redact_url(url)))?;
        // SQLite serves one gateway: a second `serve` on the same file would poll the same
        // mailboxes and send the same outgoing mail again. Held until `serve` returns.
        let sqlite_lock = match store.sqlite_file() {
            Some(file) => Some(one_instance(file)?),
            None => None,
        };
        store.migrate().await?;
        let (host, pid) = (machine_name(), std::process::id());
        store
            .join(&host, pid, sqlite_lock.is_some(), &process_gone)
            .await
            .context("cannot register this gateway instance in the database")?;
        tracing::info!(database = %redact_url(url), instance = %store.instance(), "database ready");
        Ok(Instance {
            store,
            host,
            pid,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// Signs off, so the other instances take over this one's queues and outbox entries at
    /// once, and closes the database.
    pub async fn sign_off(self) {
        if let Err(e) = self.store.leave().await {
            tracing::warn!(error = %e, "cannot sign this instance off; the others take over its work once its time runs out");
        }
        self.store.close().await;
    }
}

/// `<database>.serve.lock`, locked for as long as the file is open; refused with the reason
/// when another `serve` holds it (the lock goes with its process, even when killed).
fn one_instance(database: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = std::path::PathBuf::from(format!("{}.serve.lock", database.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `mticket serve` already runs on {}: SQLite serves one gateway instance; \
             for several, give them one PostgreSQL database (database.url = \"postgres://…\")",
            database.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// This machine's name, as instances on one database tell their hosts apart.
fn machine_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let named = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match named {
        true => String::from_utf8_lossy(&buf[..end]).into_owned(),
        false => "unknown".to_string(),
    }
}

/// True when no process `pid` runs on this machine.
fn process_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    !alive && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}
