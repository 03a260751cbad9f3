//! `serve`: wires store, intake (POP3 polling, inbound SMTP/LMTP), the outbox worker and
//! the listeners (inbound SMTP, submission, the agents' IMAP and POP3) together, and stops
//! them cleanly on SIGTERM or Ctrl-C.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

use crate::config::{Config, Resolver};
use crate::intake::authcheck::{self, AuthChecker};
use crate::intake::pipeline::Pipeline;
use crate::intake::poller::{self, PollSettings};
use crate::login::Logins;
use crate::mailbox::maildrop::TicketMaildrop;
use crate::mailbox::view::Mailbox;
use crate::net::listener::{Listener, Shutdown};
use crate::net::tls;
use crate::outbox::{RetryPolicy, Worker};
use crate::protocol::imap_server::{self, ImapConfig};
use crate::protocol::login_guard::{GuardConfig, LoginGuard};
use crate::protocol::pop3_server::{self, Pop3Config};
use crate::protocol::smtp_server::{self, AuthPolicy, Mode, SmtpConfig};
use crate::store::{Backend, Store, TIDY_SEARCH_QUEUE_AFTER, redact_url};
use crate::submission::Submission;

pub mod demo;

pub async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    if tls::ensure_certificate(&config.tls.cert, &config.tls.key, &config.hostname)? {
        tracing::info!(
            cert = %config.tls.cert.display(),
            key = %config.tls.key.display(),
            "generated a self-signed certificate for localhost (replace it with your own)"
        );
    }
    let tls_server = tls::server_config(&config.tls.cert, &config.tls.key)?;
    let store = Store::connect(&config.database.url)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                redact_url(&config.database.url)
            )
        })?;
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
    tracing::info!(database = %redact_url(&config.database.url), instance = %store.instance(), "database ready");
    if demo {
        demo::setup(&store, &config).await?;
    }
    let auth = match config.auth.resolver {
        Resolver::System => AuthChecker::system(),
        Resolver::Static => {
            let records = if config.auth.records.is_empty() {
                HashMap::new()
            } else {
                authcheck::load_static_records(std::path::Path::new(&config.auth.records))?
            };
            AuthChecker::with_static_records(records)
        }
    };
    let config = Arc::new(config);
    let wake = Arc::new(Notify::new());
    let pipeline = Arc::new(Pipeline::new(
        store.clone(),
        config.clone(),
        auth,
        wake.clone(),
    ));
    let (stop, shutdown) = Shutdown::channel();
    let mut tasks = Vec::new();

    let settings = Arc::new(PollSettings {
        interval: config.intake.poll_interval,
        max_message_size: config.intake.max_message_size.as_u64(),
    });
    tasks.push(tokio::spawn(poller::run(
        pipeline.clone(),
        settings,
        shutdown.clone(),
    )));
    let worker = Worker {
        store: store.clone(),
        hostname: config.hostname.clone(),
        locale: config.locale,
        loop_marker: config.loop_marker(),
        retry: RetryPolicy {
            initial: config.outbox.retry_initial,
            max: config.outbox.retry_max,
            give_up_after: config.outbox.give_up_after,
        },
        wake: wake.clone(),
    };
    tasks.push(tokio::spawn(worker.run(shutdown.clone())));
    tasks.push(tokio::spawn(stay_alive(
        store.clone(),
        host,
        pid,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn({
        let (store, mut shutdown) = (store.clone(), shutdown.clone());
        async move { store.follow_mailbox_uids(shutdown.wait()).await }
    }));
    tasks.push(tokio::spawn(checkpoints(store.clone(), shutdown.clone())));
    tasks.push(tokio::spawn(statistics(store.clone(), shutdown.clone())));
    tasks.push(tokio::spawn(give_back_freed_memory(shutdown.clone())));
    tasks.push(tokio::spawn(search_indexer(
        store.clone(),
        shutdown.clone(),
    )));
    let mailbox = Mailbox::new(store.clone(), config.locale, &config.hostname);
    tasks.push(tokio::spawn(crate::mailbox::keep_listing(
        mailbox.clone(),
        shutdown.clone(),
    )));

    for (name, mode) in [("inbound", Mode::Smtp), ("lmtp", Mode::Lmtp)] {
        let Some(addr) = config.listen.addr(name)? else {
            continue;
        };
        let mut lc = config.listen.listener(addr, name);
        lc.busy_reply = Some(b"421 4.7.0 too many connections, try again later\r\n".to_vec());
        let listener = Listener::bind(lc)
            .await
            .with_context(|| format!("cannot listen on {addr} ({name})"))?;
        let mut ic = SmtpConfig::new(mode, config.hostname.clone());
        ic.max_size = config.intake.max_message_size.as_u64() as usize;
        ic.tls = Some(tls_server.clone());
        tracing::info!(%addr, "{name} listener ready");
        tasks.push(tokio::spawn(smtp_server::serve(
            listener,
            ic,
            pipeline.clone(),
            shutdown.clone(),
        )));
    }
    let guard = Arc::new(LoginGuard::new(GuardConfig {
        max_failures: config.submission.max_auth_failures,
        lockout: config.submission.lockout,
        delay_step: config.submission.auth_failure_delay,
    }));
    let submission = Arc::new(Submission::new(store.clone(), config.clone(), wake.clone()));
    for (name, implicit_tls) in [("submission", false), ("submissions", true)] {
        let Some(addr) = config.listen.addr(name)? else {
            continue;
        };
        let mut lc = config.listen.listener(addr, name);
        if !implicit_tls {
            lc.busy_reply = Some(b"421 4.7.0 too many connections, try again later\r\n".to_vec());
        }
        let listener = Listener::bind(lc)
            .await
            .with_context(|| format!("cannot listen on {addr} ({name})"))?;
        let mut sc = SmtpConfig::new(Mode::Smtp, config.hostname.clone());
        sc.max_size = config.intake.max_message_size.as_u64() as usize;
        sc.tls = Some(tls_server.clone());
        sc.implicit_tls = implicit_tls;
        sc.auth = Some(AuthPolicy {
            allow_plain: config.submission.allow_plain_on_loopback && addr.ip().is_loopback(),
            guard: guard.clone(),
        });
        tracing::info!(%addr, "{name} listener ready");
        tasks.push(tokio::spawn(smtp_server::serve(
            listener,
            sc,
            submission.clone(),
            shutdown.clone(),
        )));
    }
    let logins = Arc::new(Logins::new(store.clone()));
    for (name, implicit_tls) in [("imap", false), ("imaps", true)] {
        let Some(addr) = config.listen.addr(name)? else {
            continue;
        };
        let mut lc = config.listen.listener(addr, name);
        if !implicit_tls {
            lc.busy_reply = Some(b"* BYE too many connections, try again later\r\n".to_vec());
        }
        let listener = Listener::bind(lc)
            .await
            .with_context(|| format!("cannot listen on {addr} ({name})"))?;
        let ic = ImapConfig {
            tls: Some(tls_server.clone()),
            implicit_tls,
            allow_plain: config.submission.allow_plain_on_loopback && addr.ip().is_loopback(),
            guard: guard.clone(),
            ..ImapConfig::default()
        };
        tracing::info!(%addr, "{name} listener ready");
        tasks.push(tokio::spawn(imap_server::serve(
            listener,
            ic,
            logins.clone(),
            mailbox.clone(),
            shutdown.clone(),
        )));
    }
    let maildrop = Arc::new(TicketMaildrop::new(mailbox.clone()));
    for (name, implicit_tls) in [("pop3", false), ("pop3s", true)] {
        let Some(addr) = config.listen.addr(name)? else {
            continue;
        };
        let mut lc = config.listen.listener(addr, name);
        if !implicit_tls {
            lc.busy_reply = Some(b"-ERR [SYS/TEMP] too many connections\r\n".to_vec());
        }
        let listener = Listener::bind(lc)
            .await
            .with_context(|| format!("cannot listen on {addr} ({name})"))?;
        let pc = Pop3Config {
            tls: Some(tls_server.clone()),
            implicit_tls,
            allow_plain: config.submission.allow_plain_on_loopback && addr.ip().is_loopback(),
            guard: guard.clone(),
            ..Pop3Config::default()
        };
        tracing::info!(%addr, "{name} listener ready");
        tasks.push(tokio::spawn(pop3_server::serve(
            listener,
            pc,
            logins.clone(),
            maildrop.clone(),
            shutdown.clone(),
        )));
    }
    tracing::info!(hostname = %config.hostname, "mticket is running");

    wait_for_signal().await;
    tracing::info!("stopping");
    stop.trigger();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    // Other instances take over this one's queues and outbox entries at once.
    if let Err(e) = store.leave().await {
        tracing::warn!(error = %e, "cannot sign this instance off; the others take over its work once its time runs out");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Tells the other gateway instances on the database that this one is alive, so they
/// leave its queues and outbox entries to it.
async fn stay_alive(store: Store, host: String, pid: u32, mut shutdown: Shutdown) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::store::RENEW_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        match store.stay_alive(&host, pid).await {
            Ok(()) if std::mem::take(&mut failing) => {
                tracing::info!("this instance can say it is alive again")
            }
            Ok(()) => {}
            Err(e) if !std::mem::replace(&mut failing, true) => tracing::error!(
                error = %e,
                "cannot tell the database this instance is alive: other instances take over its queues once its time runs out"
            ),
            Err(_) => {}
        }
    }
}

/// SQLite: copies the write-ahead log into the database file beside the writers, so a
/// commit seldom finds the log over its size limit and has to copy it itself. While the log
/// grows the copier keeps up (every 100 ms); otherwise it looks once a second.
async fn checkpoints(store: Store, mut shutdown: Shutdown) {
    if store.backend() != Backend::Sqlite {
        return;
    }
    let mut pause = Duration::from_secs(1);
    let mut last_log = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
        pause = match store.checkpoint().await {
            Ok(log) if log != last_log => {
                last_log = log;
                Duration::from_millis(100)
            }
            Ok(_) => Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, "database checkpoint failed");
                Duration::from_secs(1)
            }
        };
    }
}

/// Refreshes the query planners' statistics a minute after the start, then every hour, so
/// lists and searches keep their plans as the database grows.
async fn statistics(store: Store, mut shutdown: Shutdown) {
    let mut pause = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
        pause = Duration::from_secs(3600);
        let started = std::time::Instant::now();
        match store.refresh_statistics().await {
            Ok(()) => tracing::debug!(
                seconds = started.elapsed().as_secs_f64(),
                "query planner statistics refreshed"
            ),
            Err(e) => tracing::warn!(error = %e, "refreshing the query planner statistics failed"),
        }
    }
}

/// How often memory freed inside the allocator's heaps is given back to the system.
const GIVE_BACK_MEMORY_EVERY: Duration = Duration::from_secs(10);

/// glibc gives back only what is freed at the top of a heap. Folders' message lists that
/// stay, interleaved with the query results they were read from that do not, leave most
/// of the heap's pages partly used: 200 mail clients opening their INBOX at once (1,000,000
/// items) left the gateway at 309 MiB RSS with 150 MiB in use, and `malloc_trim` brought it
/// to 170 MiB. Trimming walks the free blocks: 1–5 ms, 18 ms right after that burst.
async fn give_back_freed_memory(mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(GIVE_BACK_MEMORY_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        let started = std::time::Instant::now();
        // It holds each heap's lock while it walks it: off the runtime's threads.
        let trimmed = tokio::task::spawn_blocking(trim_heaps)
            .await
            .unwrap_or(false);
        tracing::trace!(
            trimmed,
            millis = started.elapsed().as_secs_f64() * 1000.0,
            "freed memory given back"
        );
    }
}

/// Gives the free pages inside glibc's heaps back to the system; true when some were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heaps() -> bool {
    // SAFETY: malloc_trim only returns free pages of the allocator's heaps to the system.
    unsafe { libc::malloc_trim(0) != 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heaps() -> bool {
    false
}

/// Puts new items into the full-text index outside the transactions that store mail.
/// While mail comes in (intake, agents' replies) it adds only a few every two seconds, so a
/// burst of mail keeps the write lock and the processors; in a pause it catches up. A
/// search indexes whatever is left first, so it never misses a committed item. After a
/// bulk, PostgreSQL's index queue is tidied (see [`Store::tidy_search_queue`]).
async fn search_indexer(store: Store, mut shutdown: Shutdown) {
    let mut untidy = 0;
    loop {
        let quiet = store.mail_quiet_for(Duration::from_millis(300));
        let idle = match store.index_for_search(64, true).await {
            Ok(0) => {
                if untidy >= TIDY_SEARCH_QUEUE_AFTER {
                    match store.tidy_search_queue().await {
                        Ok(()) => untidy = 0,
                        Err(e) => {
                            tracing::warn!(error = %e, "tidying the search index queue failed")
                        }
                    }
                }
                Duration::from_millis(500)
            }
            Ok(n) => {
                untidy += n;
                if quiet {
                    Duration::ZERO
                } else {
                    Duration::from_secs(2)
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "search indexing failed; trying again");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.wait() => return,
        }
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
