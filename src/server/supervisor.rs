//! The supervisor: runs every background task of `serve`, listeners included. A task that
//! ends before shutdown (a panic, an error or a plain return) is logged with its cause and
//! started again after a backoff, so a dead outbox or lister cannot hide behind a gateway
//! that looks healthy. Each task's state is kept on a [`Board`] that `serve` reports to the
//! store, where `mticket instances` reads it.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

use crate::net::listener::{Shutdown, ShutdownHandle};
use crate::store::{TaskReport, TaskState};

/// How long a failed task waits for its restart.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait after a first failure; doubled on each failure in a row up to `longest`.
    pub first: Duration,
    pub longest: Duration,
    /// A run at least this long counts as healthy: the next failure waits `first` again.
    pub healthy_run: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            longest: Duration::from_secs(60),
            healthy_run: Duration::from_secs(60),
        }
    }
}

/// How long shutdown waits for each task to finish.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// How a task's run ended, as far as the supervisor cares: `Some(cause)` when it failed.
pub trait Outcome {
    fn failure(self) -> Option<String>;
}

impl Outcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: std::fmt::Display> Outcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| format!("{e:#}"))
    }
}

/// The states of all supervised tasks, in the order they were started; watched by the
/// task that reports them to the store.
#[derive(Clone)]
pub struct Board(Arc<watch::Sender<Vec<TaskReport>>>);

impl Default for Board {
    fn default() -> Self {
        Board(Arc::new(watch::Sender::new(Vec::new())))
    }
}

impl Board {
    /// Follows the board: changes wake the receiver.
    pub fn watch(&self) -> watch::Receiver<Vec<TaskReport>> {
        self.0.subscribe()
    }

    pub fn tasks(&self) -> Vec<TaskReport> {
        self.0.borrow().clone()
    }

    fn add(&self, name: &str) {
        self.0.send_modify(|tasks| {
            tasks.push(TaskReport {
                name: name.to_string(),
                state: TaskState::Running,
                restarts: 0,
                last_failure: None,
            })
        });
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut TaskReport)) {
        self.0.send_modify(|tasks| {
            if let Some(task) = tasks.iter_mut().find(|t| t.name == name) {
                change(task);
            }
        });
    }
}

/// Runs tasks until [`Supervisor::stop`].
pub struct Supervisor {
    shutdown: Shutdown,
    backoff: Backoff,
    board: Board,
    runners: Vec<JoinHandle<()>>,
}

impl Supervisor {
    pub fn new(shutdown: Shutdown, backoff: Backoff) -> Supervisor {
        Supervisor {
            shutdown,
            backoff,
            board: Board::default(),
            runners: Vec::new(),
        }
    }

    pub fn board(&self) -> Board {
        self.board.clone()
    }

    /// Runs the task `name`: `start(shutdown)` makes one run of it, called again for each
    /// restart. The run should end only once `shutdown` is triggered.
    pub fn spawn<S, F>(&mut self, name: &'static str, start: S)
    where
        S: FnMut(Shutdown) -> F + Send + 'static,
        F: Future + Send + 'static,
        F::Output: Outcome + Send + 'static,
    {
        self.board.add(name);
        let runner = Runner {
            name,
            backoff: self.backoff,
            shutdown: self.shutdown.clone(),
            board: self.board.clone(),
        };
        self.runners.push(tokio::spawn(runner.supervise(start)));
    }

    /// Triggers shutdown and waits for every task to finish (each for up to
    /// [`STOP_WITHIN`]).
    pub async fn stop(self, stop: ShutdownHandle) {
        stop.trigger();
        for runner in self.runners {
            let _ = tokio::time::timeout(STOP_WITHIN, runner).await;
        }
    }
}

/// One task's supervision.
struct Runner {
    name: &'static str,
    backoff: Backoff,
    shutdown: Shutdown,
    board: Board,
}

impl Runner {
    /// Runs the task again and again until shutdown, backing off while it keeps failing.
    async fn supervise<S, F>(mut self, mut start: S)
    where
        S: FnMut(Shutdown) -> F,
        F: Future + Send + 'static,
        F::Output: Outcome + Send + 'static,
    {
        let mut wait = self.backoff.first;
        for run in 0u64.. {
            let started = Instant::now();
            let Some(cause) = self.run_once(start(self.shutdown.clone()), run).await else {
                break;
            };
            if started.elapsed() >= self.backoff.healthy_run {
                wait = self.backoff.first;
            }
            if !self.restart_after(wait, cause).await {
                break;
            }
            wait = (wait * 2).min(self.backoff.longest);
        }
        self.board
            .update(self.name, |t| t.state = TaskState::Stopped);
    }

    /// One run; why it ended unexpectedly, or None once shutdown is under way.
    async fn run_once<F>(&self, task: F, run: u64) -> Option<String>
    where
        F: Future + Send + 'static,
        F::Output: Outcome + Send + 'static,
    {
        let name = self.name;
        self.board.update(name, |t| t.state = TaskState::Running);
        let ended = tokio::spawn(async move {
            fault::panic_if_asked(name, run);
            task.await
        })
        .await;
        let failure = match ended {
            Ok(outcome) => outcome.failure(),
            Err(e) => Some(panic_cause(e)),
        };
        if self.shutdown.is_triggered() {
            if let Some(cause) = failure {
                tracing::error!(task = name, %cause, "background task failed while stopping");
            }
            return None;
        }
        Some(failure.unwrap_or_else(|| "it ended on its own".to_string()))
    }

    /// Logs and shows the failure, then waits `wait`; false when shutdown came first.
    async fn restart_after(&mut self, wait: Duration, cause: String) -> bool {
        tracing::error!(task = self.name, %cause, restart_in = ?wait, "background task ended unexpectedly; restarting it");
        self.board.update(self.name, |t| {
            t.state = TaskState::Restarting;
            t.restarts += 1;
            t.last_failure = Some(cause);
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.shutdown.wait() => false,
        }
    }
}

/// A panic's message, as `panic!` gave it.
fn panic_cause(e: JoinError) -> String {
    if !e.is_panic() {
        return "it was cancelled".to_string();
    }
    let payload = e.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    format!("panicked: {message}")
}

/// A fault for tests of the supervisor: in debug builds, `DEBUG_MTICKET_PANIC_ONCE` names
/// tasks (comma-separated) whose first run panics. The name has no `MTICKET_` prefix,
/// which would make it a configuration key.
mod fault {
    #[cfg(debug_assertions)]
    pub const PANIC_ONCE: &str = "DEBUG_MTICKET_PANIC_ONCE";

    #[cfg(debug_assertions)]
    pub fn panic_if_asked(name: &str, run: u64) {
        let asked = std::env::var(PANIC_ONCE).is_ok_and(|v| v.split(',').any(|t| t.trim() == name));
        if run == 0 && asked {
            panic!("injected by {PANIC_ONCE} into {name}");
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn panic_if_asked(_name: &str, _run: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(1),
        longest: Duration::from_millis(4),
        healthy_run: Duration::from_secs(60),
    };

    /// Waits until `name` on the board satisfies `done`.
    async fn until(board: &Board, name: &str, done: impl Fn(&TaskReport) -> bool) -> TaskReport {
        let mut watch = board.watch();
        loop {
            let tasks = watch.borrow_and_update().clone();
            if let Some(t) = tasks.into_iter().find(|t| t.name == name && done(t)) {
                return t;
            }
            watch.changed().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_is_restarted_with_its_cause_on_the_board() {
        let (stop, shutdown) = Shutdown::channel();
        let mut supervisor = Supervisor::new(shutdown, QUICK);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor.spawn("flaky", move |mut shutdown: Shutdown| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run < 2 {
                    panic!("flaky run {run}");
                }
                shutdown.wait().await;
            }
        });
        let board = supervisor.board();
        let t = until(&board, "flaky", |t| {
            t.restarts == 2 && t.state == TaskState::Running
        })
        .await;
        assert_eq!(t.last_failure.as_deref(), Some("panicked: flaky run 1"));
        supervisor.stop(stop).await;
        assert_eq!(board.tasks()[0].state, TaskState::Stopped);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_task_that_returns_or_fails_early_is_restarted_too() {
        let (stop, shutdown) = Shutdown::channel();
        let mut supervisor = Supervisor::new(shutdown, QUICK);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor.spawn("quitter", move |mut shutdown: Shutdown| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match run {
                    0 => Ok(()),
                    1 => Err("cannot listen"),
                    _ => {
                        shutdown.wait().await;
                        Ok(())
                    }
                }
            }
        });
        let board = supervisor.board();
        let t = until(&board, "quitter", |t| t.restarts == 2).await;
        assert_eq!(t.last_failure.as_deref(), Some("cannot listen"));
        supervisor.stop(stop).await;
    }

    #[tokio::test]
    async fn shutdown_stops_a_task_waiting_for_its_restart() {
        let (stop, shutdown) = Shutdown::channel();
        let mut supervisor = Supervisor::new(shutdown, QUICK);
        supervisor.spawn("broken", |_| async { Err::<(), _>("always") });
        let board = supervisor.board();
        until(&board, "broken", |t| t.state == TaskState::Restarting).await;
        supervisor.stop(stop).await;
        assert_eq!(board.tasks()[0].state, TaskState::Stopped);
    }
}
