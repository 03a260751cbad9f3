//! POP3 polling: one task per queue, so a queue that fails (bad password, unreachable)
//! backs off alone and never blocks another. Each mail is deleted upstream only after the
//! pipeline committed it and a sync made the commit durable; UIDLs recorded in that commit
//! make a crash before DELE harmless.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::core::model::{Queue, TlsMode};
use crate::intake::pipeline::{Arrival, Durability, IntakeError, Pipeline, Prepared};
use crate::net::listener::Shutdown;
use crate::net::tls;
use crate::protocol::pop3_client::{self, Pop3Tls};
use crate::store::{Lease, StoreError};

/// Mails committed per transaction: large enough to amortise the commit, small enough
/// that little is fetched again after a crash.
const BATCH_MAILS: usize = 128;
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Committed mails deleted together through a session beside the poll's own.
const DELETE_ASIDE_CHUNK: usize = 1024;
/// POP3 commands sent ahead of their answers when the server allows it.
const PIPELINE_WINDOW: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

pub struct PollSettings {
    pub interval: Duration,
    pub max_message_size: u64,
}

/// Runs until `shutdown` turns true: starts a task per pollable queue, and notices queues
/// that were added, changed or removed while running.
pub async fn run(pipeline: Arc<Pipeline>, settings: Arc<PollSettings>, mut shutdown: Shutdown) {
    let mut tasks = QueueTasks::default();
    loop {
        match pipeline.store().queues().await {
            Ok(queues) => {
                let wanted: HashSet<i64> =
                    queues.iter().filter(|q| q.polls()).map(|q| q.id).collect();
                tasks.keep(&wanted);
                for q in queues.into_iter().filter(|q| q.polls()) {
                    tasks.0.entry(q.id).or_insert_with(|| {
                        tokio::spawn(poll_queue(
                            q.id,
                            pipeline.clone(),
                            settings.clone(),
                            shutdown.clone(),
                        ))
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the queues"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval.min(Duration::from_secs(10))) => {}
            _ = shutdown.wait() => break,
        }
    }
    for (_, t) in std::mem::take(&mut tasks.0) {
        let _ = t.await;
    }
}

/// The running task of each polled queue. Dropped with them when `run` ends any way, a
/// panic included, so a restarted poller never polls a queue beside a leftover task.
#[derive(Default)]
struct QueueTasks(HashMap<i64, tokio::task::JoinHandle<()>>);

impl QueueTasks {
    /// Stops the tasks of queues no longer polled, and forgets (logging why) those that
    /// ended, so they start again.
    fn keep(&mut self, wanted: &HashSet<i64>) {
        self.0.retain(|id, task| {
            if let Some(ended) = (&mut *task).now_or_never() {
                match ended {
                    Err(e) if e.is_panic() => {
                        tracing::error!(queue_id = id, error = %e, "queue poller panicked; starting it again")
                    }
                    _ => tracing::debug!(queue_id = id, "queue poller ended"),
                }
                return false;
            }
            if !wanted.contains(id) {
                task.abort();
                return false;
            }
            true
        });
    }
}

impl Drop for QueueTasks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// Polls one queue forever, backing off exponentially while it fails. Gateway instances
/// sharing a database take turns: the one holding the queue's lease polls it, the others
/// look again at every interval and take over when it died.
async fn poll_queue(
    queue_id: i64,
    pipeline: Arc<Pipeline>,
    settings: Arc<PollSettings>,
    mut shutdown: Shutdown,
) {
    let lease = pipeline.store().lease(format!("poll:{queue_id}"));
    let mut failures: u32 = 0;
    let mut polled_elsewhere = false;
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let queue = match pipeline.store().queue(queue_id).await {
            Ok(q) if q.polls() => q,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(queue_id, error = %e, "cannot read queue");
                failures += 1;
                sleep_or_stop(backoff(settings.interval, failures), &mut shutdown).await;
                continue;
            }
        };
        match pipeline.store().take_lease(&lease).await {
            Ok(true) => {
                if std::mem::take(&mut polled_elsewhere) {
                    tracing::info!(queue = %queue.name, "this instance polls the queue now");
                }
            }
            Ok(false) => {
                if !std::mem::replace(&mut polled_elsewhere, true) {
                    tracing::info!(queue = %queue.name, "another gateway instance polls the queue");
                }
                sleep_or_stop(settings.interval, &mut shutdown).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(queue = %queue.name, error = %e, "cannot take the queue's polling lease");
                failures += 1;
                sleep_or_stop(backoff(settings.interval, failures), &mut shutdown).await;
                continue;
            }
        }
        let result = tokio::select! {
            r = poll_once(&queue, &pipeline, &settings, &lease) => r,
            _ = shutdown.wait() => return,
        };
        let wait = match result {
            Ok(report) => {
                failures = 0;
                if report.taken > 0 || !report.notes.is_empty() {
                    tracing::info!(queue = %queue.name, taken = report.taken, "polled");
                }
                let message = report.message();
                if let Err(e) = pipeline
                    .store()
                    .queue_record_poll(queue.id, true, &message)
                    .await
                {
                    tracing::warn!(queue = %queue.name, error = %e, "cannot record poll result");
                }
                settings.interval
            }
            Err(PollError::Intake(IntakeError::Store(StoreError::LeaseLost(_)))) => {
                tracing::warn!(queue = %queue.name, "another gateway instance took the queue over while this one polled it; its poll stops");
                settings.interval
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(settings.interval, failures);
                tracing::error!(queue = %queue.name, error = %e, retry_in = ?wait, "polling failed");
                if let Err(e) = pipeline
                    .store()
                    .queue_record_poll(queue.id, false, &e.to_string())
                    .await
                {
                    tracing::warn!(queue = %queue.name, error = %e, "cannot record poll result");
                }
                wait
            }
        };
        sleep_or_stop(wait, &mut shutdown).await;
    }
}

async fn sleep_or_stop(d: Duration, shutdown: &mut Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.wait() => {}
    }
}

fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(10);
    (interval * factor).min(MAX_BACKOFF.max(interval))
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Pop3(#[from] pop3_client::Pop3Error),
    #[error("TLS setup: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Intake(#[from] crate::intake::pipeline::IntakeError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("intake stage failed: {0}")]
    Stage(#[from] tokio::task::JoinError),
}

#[derive(Default)]
struct PollReport {
    taken: usize,
    notes: Vec<String>,
}

impl PollReport {
    fn message(&self) -> String {
        let mut m = format!("{} new mail(s)", self.taken);
        for n in &self.notes {
            m.push_str("; ");
            m.push_str(n);
        }
        m
    }
}

fn pop3_tls(mode: TlsMode) -> Pop3Tls {
    match mode {
        TlsMode::Implicit => Pop3Tls::Implicit,
        TlsMode::StartTls => Pop3Tls::StartTls,
        TlsMode::None => Pop3Tls::None,
    }
}

/// Connects and logs in; the window is how many commands may be in flight (RFC 2449
/// PIPELINING hides the round trip per message).
async fn open_session(
    queue: &Queue,
) -> Result<(pop3_client::Client<pop3_client::Pop3Stream>, usize), PollError> {
    let ca = (!queue.tls_ca.is_empty()).then_some(queue.tls_ca.as_str());
    let tls_config = tls::client_config(ca)?;
    let mut client = pop3_client::connect(
        &queue.pop3_host,
        queue.pop3_port,
        pop3_tls(queue.pop3_tls),
        tls_config,
        TIMEOUT,
    )
    .await?;
    client.login(&queue.login, &queue.password).await?;
    let window = match client.capa().await {
        Ok(caps) if caps.iter().any(|c| c.eq_ignore_ascii_case("PIPELINING")) => PIPELINE_WINDOW,
        Ok(_) => 1,
        Err(e) if e.server_text().is_some() => 1,
        Err(e) => return Err(e.into()),
    };
    Ok((client, window))
}

/// One poll: what the mailbox holds is compared with what was taken before, new mails are
/// retrieved, prepared and committed in overlapping stages, and deleted upstream once a
/// sync made their commits durable.
async fn poll_once(
    queue: &Queue,
    pipeline: &Arc<Pipeline>,
    settings: &PollSettings,
    lease: &Lease,
) -> Result<PollReport, PollError> {
    let (mut client, window) = open_session(queue).await?;
    let uidls = client.uidl_all().await?;
    let sizes: HashMap<_, _> = client.list_all().await?.into_iter().collect();
    let store = pipeline.store();
    let present: Vec<String> = uidls.iter().map(|(_, u)| u.clone()).collect();
    store.pop3_forget_except(queue.id, &present).await?;
    let known: HashMap<String, String> = store.pop3_uidls(queue.id).await?.into_iter().collect();
    let upstream = Upstream {
        uidls,
        sizes,
        known,
    };

    // Retrieval and commits overlap: while one batch is committed the next is fetched.
    // Parsing the next batch overlaps the commit of the last one too. The stages are tasks
    // of their own, so retrieval (TLS), parsing and committing use both cores.
    let (batches, incoming) = mpsc::channel::<Vec<(u32, Arrival)>>(1);
    let (ready, ready_incoming) = mpsc::channel::<ReadyBatch>(1);
    let prepare = spawn_prepare(pipeline.clone(), incoming, ready);
    // Committed mails leave the mailbox in chunks through a second session while the rest
    // streams in, so the server expunges beside intake instead of after it.
    let (aside, aside_incoming) = mpsc::unbounded_channel::<Vec<u32>>();
    let uidl_of: HashMap<u32, String> = upstream.uidls.iter().cloned().collect();
    let deleter = Stage(tokio::spawn(delete_aside(
        queue.clone(),
        pipeline.clone(),
        uidl_of,
        aside_incoming,
    )));
    let commit = spawn_commit(queue, pipeline, lease, ready_incoming, aside);
    let poll = Poll {
        queue,
        store,
        settings,
    };
    // Whatever retrieval ends with, the batches it handed on are committed first.
    let fetched = retrieve(&poll, &mut client, window, &upstream, batches).await;
    prepare.finish().await?;
    let committed = commit.finish().await?;
    let deleted_aside = deleter.finish().await?;
    let (mut report, mut to_delete) = committed?;
    let (notes, committed_before) = fetched?;
    report.notes.splice(0..0, notes);
    to_delete.extend(committed_before);
    to_delete.retain(|n| !deleted_aside.contains(n));
    to_delete.sort_unstable();
    // Batches commit without waiting for the disk; one sync covers them all before DELE.
    store.sync().await?;
    client.dele_all(&to_delete, window).await?;
    client.quit().await?;
    Ok(report)
}

/// What the mailbox holds (message number and UIDL, sizes by number) and what this queue's
/// UIDLs recorded (UIDL -> `taken`, `too_large`, …).
struct Upstream {
    uidls: Vec<(u32, String)>,
    sizes: HashMap<u32, u64>,
    known: HashMap<String, String>,
}

/// What a poll needs beside the POP3 session to leave a mail upstream for its size.
struct Poll<'a> {
    queue: &'a Queue,
    store: &'a crate::store::Store,
    settings: &'a PollSettings,
}

impl Poll<'_> {
    async fn too_large(&self, uidl: &str, size: u64, before: bool) -> Result<String, PollError> {
        too_large(self.store, self.queue, uidl, size, self.settings, before).await
    }
}

/// How a poll treats each mail upstream, decided without asking the server.
#[derive(Default)]
struct Plan<'a> {
    /// Committed before but not deleted (crash, dropped connection): delete now.
    committed_before: Vec<u32>,
    /// What to retrieve, in mailbox order: number, UIDL, size, and whether it was left
    /// upstream for its size before.
    wanted: Vec<(u32, &'a String, u64, bool)>,
    /// The poll report's notes on mails left upstream.
    notes: Vec<String>,
}

async fn plan<'a>(poll: &Poll<'_>, upstream: &'a Upstream) -> Result<Plan<'a>, PollError> {
    let mut plan = Plan::default();
    for (msgno, uidl) in &upstream.uidls {
        // A mail left upstream for its size is looked at again on every poll: it stays
        // in the poll report for as long as it is there, and is taken once the limit allows.
        let too_large_before = match upstream.known.get(uidl).map(String::as_str) {
            Some("taken") => {
                plan.committed_before.push(*msgno);
                continue;
            }
            Some("too_large") => true,
            Some(_) => continue,
            None => false,
        };
        let size = upstream.sizes.get(msgno).copied().unwrap_or(0);
        if size > poll.settings.max_message_size {
            let note = poll.too_large(uidl, size, too_large_before).await?;
            plan.notes.push(note);
        } else {
            plan.wanted.push((*msgno, uidl, size, too_large_before));
        }
    }
    Ok(plan)
}

/// Retrieves the wanted mails (RETR pipelined up to `window`) and hands them on in
/// batches; returns the report's notes and the mails committed by an earlier poll.
async fn retrieve(
    poll: &Poll<'_>,
    client: &mut pop3_client::Client<pop3_client::Pop3Stream>,
    window: usize,
    upstream: &Upstream,
    batches: mpsc::Sender<Vec<(u32, Arrival)>>,
) -> Result<(Vec<String>, Vec<u32>), PollError> {
    let Plan {
        committed_before,
        wanted,
        mut notes,
    } = plan(poll, upstream).await?;
    let max_size = poll.settings.max_message_size as usize;
    let mut batch: Vec<(u32, Arrival)> = Vec::new();
    let mut batch_bytes = 0;
    let mut sent = 0;
    for (i, &(msgno, uidl, size, too_large_before)) in wanted.iter().enumerate() {
        while sent < wanted.len() && sent < i + window {
            client.send_retr(wanted[sent].0).await?;
            sent += 1;
        }
        match client.read_retr(msgno, max_size).await {
            Ok(raw) => {
                batch_bytes += raw.len();
                let uidl = Some(uidl.clone());
                batch.push((msgno, Arrival { raw, uidl }));
            }
            // The size LIST announced was wrong.
            Err(e) if e.is_too_large() => {
                notes.push(poll.too_large(uidl, size, too_large_before).await?)
            }
            Err(e) => return Err(PollError::from(e)),
        }
        if batch.len() >= BATCH_MAILS || batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if batches.send(std::mem::take(&mut batch)).await.is_err() {
                // The committer stopped on an error; it reports it (and the session,
                // with answers still in flight, is given up).
                return Ok((notes, committed_before));
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(batch).await;
    }
    Ok((notes, committed_before))
}

/// The stage that parses retrieved batches ([`Pipeline::prepare`]) for the committer.
fn spawn_prepare(
    pipeline: Arc<Pipeline>,
    mut incoming: mpsc::Receiver<Vec<(u32, Arrival)>>,
    ready: mpsc::Sender<ReadyBatch>,
) -> Stage<()> {
    Stage(tokio::spawn(async move {
        while let Some(batch) = incoming.recv().await {
            let (numbers, arrivals): (Vec<u32>, Vec<Arrival>) = batch.into_iter().unzip();
            let prepared = pipeline.prepare(&arrivals).await;
            if ready.send((numbers, arrivals, prepared)).await.is_err() {
                return;
            }
        }
    }))
}

/// The stage that commits prepared batches; hands chunks of committed mails to the
/// deleter beside the poll and returns the report and the mails still to delete.
fn spawn_commit(
    queue: &Queue,
    pipeline: &Arc<Pipeline>,
    lease: &Lease,
    mut ready_incoming: mpsc::Receiver<ReadyBatch>,
    aside: mpsc::UnboundedSender<Vec<u32>>,
) -> Stage<Result<(PollReport, Vec<u32>), PollError>> {
    let (pipeline, queue, lease) = (pipeline.clone(), queue.clone(), lease.clone());
    Stage(tokio::spawn(async move {
        let mut report = PollReport::default();
        let mut to_delete = Vec::new();
        let mut handed_aside = 0;
        while let Some(batch) = ready_incoming.recv().await {
            commit_batch(
                &queue,
                &pipeline,
                &lease,
                batch,
                &mut to_delete,
                &mut report,
            )
            .await?;
            if to_delete.len() - handed_aside >= DELETE_ASIDE_CHUNK {
                // Once the deleter gave up, the main session deletes these at its end.
                let _ = aside.send(to_delete[handed_aside..].to_vec());
                handed_aside = to_delete.len();
            }
        }
        Ok((report, to_delete))
    }))
}

/// Deletes chunks of committed mails (numbered as in the main session) through sessions
/// of their own beside the main one; returns the numbers it deleted. Stops trying at the
/// first failure (a server may lock the mailbox to one session): the main session then
/// deletes the rest at its end.
async fn delete_aside(
    queue: Queue,
    pipeline: Arc<Pipeline>,
    uidl_of: HashMap<u32, String>,
    mut chunks: mpsc::UnboundedReceiver<Vec<u32>>,
) -> HashSet<u32> {
    let mut deleted = HashSet::new();
    while let Some(chunk) = chunks.recv().await {
        let wanted: HashSet<&str> = chunk
            .iter()
            .filter_map(|n| uidl_of.get(n).map(String::as_str))
            .collect();
        let result = async {
            pipeline.store().sync().await?;
            let (mut client, window) = open_session(&queue).await?;
            let here: Vec<u32> = client
                .uidl_all()
                .await?
                .into_iter()
                .filter(|(_, uidl)| wanted.contains(uidl.as_str()))
                .map(|(n, _)| n)
                .collect();
            client.dele_all(&here, window).await?;
            client.quit().await?;
            Ok::<_, PollError>(())
        }
        .await;
        match result {
            Ok(()) => deleted.extend(chunk),
            Err(e) => {
                tracing::info!(queue = %queue.name, error = %e, "deleting beside the poll failed; the poll deletes at its end");
                break;
            }
        }
    }
    deleted
}

/// Records a mail left in the mailbox for its size (once, when first seen) and returns the
/// note for the poll report.
async fn too_large(
    store: &crate::store::Store,
    queue: &Queue,
    uidl: &str,
    size: u64,
    settings: &PollSettings,
    reported_before: bool,
) -> Result<String, PollError> {
    let note = format!(
        "message {uidl} is {size} bytes, over the limit of {} bytes: left in the mailbox",
        settings.max_message_size
    );
    if !reported_before {
        tracing::warn!(queue = %queue.name, "{note}");
        let mut tx = store.begin().await?;
        tx.pop3_mark(queue.id, uidl, "too_large");
        tx.commit().await?;
    }
    Ok(note)
}

/// A stage of the intake pipeline running as a task of its own; stopped when the poll is
/// given up (shutdown), as it would be as part of the poll's own task.
struct Stage<T>(tokio::task::JoinHandle<T>);

impl<T> Stage<T> {
    async fn finish(mut self) -> Result<T, PollError> {
        Ok((&mut self.0).await?)
    }
}

impl<T> Drop for Stage<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Message numbers, the mails, and what [`Pipeline::prepare`] made of them.
type ReadyBatch = (Vec<u32>, Vec<Arrival>, Result<Vec<Prepared>, IntakeError>);

/// Commits a batch; when the batch as a whole fails for a reason other than a passing
/// one, each mail is tried alone so one poisonous mail cannot hold up the others.
async fn commit_batch(
    queue: &Queue,
    pipeline: &Pipeline,
    lease: &Lease,
    (numbers, arrivals, prepared): ReadyBatch,
    to_delete: &mut Vec<u32>,
    report: &mut PollReport,
) -> Result<(), PollError> {
    if arrivals.is_empty() {
        return Ok(());
    }
    let first_new = to_delete.len();
    to_delete.extend(&numbers);
    let committed = match prepared {
        Ok(prepared) => {
            pipeline
                .commit(
                    queue,
                    &arrivals,
                    &prepared,
                    Durability::Deferred,
                    Some(lease),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match committed {
        Ok(_) => {
            report.taken += arrivals.len();
            Ok(())
        }
        Err(e) if e.is_transient() => {
            to_delete.truncate(first_new);
            Err(e.into())
        }
        Err(e) => {
            tracing::warn!(queue = %queue.name, error = %e, "batch failed; taking mails one by one");
            let numbers: Vec<u32> = to_delete.drain(first_new..).collect();
            for (n, a) in numbers.into_iter().zip(arrivals) {
                match pipeline
                    .take_in(queue, std::slice::from_ref(&a), Some(lease))
                    .await
                {
                    Ok(_) => {
                        report.taken += 1;
                        to_delete.push(n);
                    }
                    Err(e) => {
                        let uidl = a.uidl.as_deref().unwrap_or("?");
                        tracing::error!(queue = %queue.name, uidl, error = %e, "mail cannot be taken in: left in the mailbox");
                        report.notes.push(format!(
                            "message {uidl} cannot be taken in ({e}): left in the mailbox"
                        ));
                    }
                }
            }
            Ok(())
        }
    }
}
