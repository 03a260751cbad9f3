//! The background tasks `serve` starts beside its listeners, each under the supervisor:
//! intake polling, the outbox, liveness on the database, the mailbox's UIDs and listing,
//! the task reports for `mticket instances`, and upkeep (SQLite checkpoints, planner
//! statistics, the search index, freed memory).
use std::sync::Arc;
use std::time::Duration;

use super::Gateway;
use super::instance::Instance;
use super::supervisor::{Board, Supervisor};
use crate::intake::poller::{self, PollSettings};
use crate::net::listener::Shutdown;
use crate::outbox::{RetryPolicy, Worker};
use crate::store::{Backend, Store, TIDY_SEARCH_QUEUE_AFTER};

/// Starts every background task under `supervisor`.
pub(super) fn start(supervisor: &mut Supervisor, gateway: &Gateway, instance: &Instance) {
    let settings = Arc::new(PollSettings {
        interval: gateway.config.intake.poll_interval,
        max_message_size: gateway.config.intake.max_message_size.as_u64(),
    });
    let pipeline = gateway.pipeline.clone();
    supervisor.spawn("poller", move |stop| {
        poller::run(pipeline.clone(), settings.clone(), stop)
    });
    let outbox = gateway.clone();
    supervisor.spawn("outbox", move |stop| outbox.outbox_worker().run(stop));
    let (store, host, pid) = (instance.store.clone(), instance.host.clone(), instance.pid);
    supervisor.spawn("liveness", move |stop| {
        stay_alive(store.clone(), host.clone(), pid, stop)
    });
    let (store, board) = (gateway.store.clone(), supervisor.board());
    supervisor.spawn("task reports", move |stop| {
        report_tasks(store.clone(), board.clone(), stop)
    });
    let store = gateway.store.clone();
    supervisor.spawn("mailbox uids", move |mut stop: Shutdown| {
        let store = store.clone();
        async move { store.follow_mailbox_uids(stop.wait()).await }
    });
    start_upkeep(supervisor, &gateway.store);
    let mailbox = gateway.mailbox.clone();
    supervisor.spawn("mailbox lister", move |stop| {
        crate::mailbox::keep_listing(mailbox.clone(), stop)
    });
}

/// The tasks that keep the database and the process in shape.
fn start_upkeep(supervisor: &mut Supervisor, store: &Store) {
    if store.backend() == Backend::Sqlite {
        let store = store.clone();
        supervisor.spawn("checkpoints", move |stop| checkpoints(store.clone(), stop));
    }
    let planner = store.clone();
    supervisor.spawn("statistics", move |stop| statistics(planner.clone(), stop));
    supervisor.spawn("memory trim", give_back_freed_memory);
    let store = store.clone();
    supervisor.spawn("search indexer", move |stop| {
        search_indexer(store.clone(), stop)
    });
}

impl Gateway {
    /// The outbox's worker, made anew for each (re)start.
    fn outbox_worker(&self) -> Worker {
        let config = &self.config;
        Worker {
            store: self.store.clone(),
            hostname: config.hostname.clone(),
            locale: config.locale,
            loop_marker: config.loop_marker(),
            retry: RetryPolicy {
                initial: config.outbox.retry_initial,
                max: config.outbox.retry_max,
                give_up_after: config.outbox.give_up_after,
            },
            wake: self.wake.clone(),
        }
    }
}

/// Writes the supervisor's board to the store whenever it changes, so `mticket instances`
/// (another process) shows this instance's tasks. While the database fails it tries again
/// every few seconds.
async fn report_tasks(store: Store, board: Board, mut shutdown: Shutdown) {
    let mut board = board.watch();
    let mut failing = false;
    loop {
        let tasks = board.borrow_and_update().clone();
        match store.report_tasks(&tasks).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "cannot report the state of this instance's tasks");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.wait() => return,
                }
            }
        }
        tokio::select! {
            changed = board.changed() => if changed.is_err() { return },
            _ = shutdown.wait() => return,
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
/// of the heap's pages partly used after many mail clients open their folders at once;
/// `malloc_trim` gives those pages back. It walks the free blocks, so it runs every few
/// seconds, not after every session (BENCHMARKS.md has the memory figures).
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
