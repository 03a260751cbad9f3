//! The outbox: outgoing mail is committed to the store together with the ticket change
//! that caused it; this worker relays it through the queue's SMTP server, retries
//! temporary failures with backoff and gives up (noting it on the ticket) on permanent
//! ones or when the retry window has passed.
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::core::model::{Queue, TlsMode};
use crate::net::listener::Shutdown;
use crate::store::{Outbound, Store};
use relay::{Upstream, UpstreamTls};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Wait after the first temporary failure; doubled each time.
    pub initial: Duration,
    pub max: Duration,
    /// Temporary failures turn permanent when the mail is older than this.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(2 * 86_400),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempts: i64) -> Duration {
        let factor = 1u32 << attempts.clamp(0, 16);
        (self.initial * factor).min(self.max)
    }
}

pub struct Worker {
    pub store: Store,
    pub hostname: String,
    pub retry: RetryPolicy,
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Relays due mail until `shutdown` turns true.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            if shutdown.is_triggered() {
                return;
            }
            let idle = match self.relay_due().await {
                Ok(0) => self.time_to_next_due().await,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot read the store");
                    Duration::from_secs(5)
                }
            };
            if idle.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    async fn time_to_next_due(&self) -> Duration {
        let now = crate::store::now();
        match self.store.outbox_next_due().await {
            Ok(Some(at)) if at <= now => Duration::from_millis(200),
            Ok(Some(at)) => Duration::from_secs((at - now) as u64).min(Duration::from_secs(60)),
            _ => Duration::from_secs(60),
        }
    }

    /// Relays what is due, one upstream session per queue and round; returns how many were
    /// attempted.
    async fn relay_due(&self) -> Result<usize, crate::store::StoreError> {
        let due = self.store.outbox_due(crate::store::now(), 32).await?;
        // Mail that POP3 intake committed without waiting for the disk goes out once a sync
        // covered it, so a power failure cannot leave a customer with an autoresponse for a
        // ticket the database lost. The poller syncs at the end of its session; in a pause
        // the outbox syncs itself, but not beside a burst of intake, which it would slow.
        if !due.is_empty() && !self.store.all_synced() {
            if !self.store.intake_quiet_for(Duration::from_secs(1)) {
                return Ok(0);
            }
            self.store.sync().await?;
        }
        let mut by_queue: std::collections::BTreeMap<i64, Vec<&Outbound>> = Default::default();
        for o in &due {
            by_queue.entry(o.queue_id).or_default().push(o);
        }
        for (queue_id, entries) in by_queue {
            let queue = self.store.queue(queue_id).await?;
            let session = if queue.smtp_host.is_empty() {
                Err((
                    true,
                    format!("queue {} has no SMTP server configured", queue.name),
                ))
            } else {
                relay::Session::new(&upstream(&queue, &self.hostname))
                    .map_err(|e| (e.is_transient(), e.to_string()))
            };
            for o in entries {
                let result = match &session {
                    Ok(s) => s
                        .send(&o.mail_from, &o.rcpt_to, &o.raw)
                        .await
                        .map_err(|e| (e.is_transient(), e.to_string())),
                    Err(e) => Err(e.clone()),
                };
                self.settle(&queue, o, result).await?;
            }
            if let Ok(s) = session {
                s.close().await;
            }
        }
        Ok(due.len())
    }

    /// Records how relaying one entry went: sent, retry later, or failed for good.
    async fn settle(
        &self,
        queue: &Queue,
        o: &Outbound,
        result: Result<(), (bool, String)>,
    ) -> Result<(), crate::store::StoreError> {
        match result {
            Ok(()) => {
                tracing::info!(queue = %queue.name, kind = %o.kind, message_id = %o.message_id, to = %o.rcpt_to.join(","), "relayed");
                self.store.outbox_sent(o.id).await
            }
            Err((true, error)) if !self.expired(o) => {
                let wait = self.retry.delay(o.attempts);
                tracing::warn!(queue = %queue.name, message_id = %o.message_id, %error, retry_in = ?wait, "relay failed for now");
                self.store
                    .outbox_retry(o.id, crate::store::now() + wait.as_secs() as i64, &error)
                    .await
            }
            Err((_, error)) => {
                tracing::error!(queue = %queue.name, message_id = %o.message_id, %error, "relay failed for good");
                self.store.outbox_failed(o, &error).await
            }
        }
    }

    fn expired(&self, o: &Outbound) -> bool {
        crate::store::now() - o.created_at > self.retry.give_up_after.as_secs() as i64
    }
}

fn upstream(q: &Queue, hostname: &str) -> Upstream {
    Upstream {
        host: q.smtp_host.clone(),
        port: q.smtp_port,
        tls: match q.smtp_tls {
            TlsMode::Implicit => UpstreamTls::Implicit,
            TlsMode::StartTls => UpstreamTls::StartTls,
            TlsMode::None => UpstreamTls::None,
        },
        login: (!q.login.is_empty()).then(|| q.login.clone()),
        password: (!q.password.is_empty()).then(|| q.password.clone()),
        extra_ca_pem: (!q.tls_ca.is_empty()).then(|| q.tls_ca.clone()),
        hello_name: hostname.to_string(),
    }
}
