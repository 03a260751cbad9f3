//! The outbox: outgoing mail is committed to the store together with the ticket change
//! that caused it; this worker relays it through the queue's SMTP server, retries
//! temporary failures with backoff and gives up on permanent ones or when the retry window
//! has passed. Giving up is noted on the ticket; for an agent's reply, the agent also gets
//! a delivery status notification (RFC 3464) from the queue address.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::core::compose::{self, DeliveryStatus, RecipientFailure};
use crate::core::model::{Queue, TlsMode};
use crate::core::texts::Locale;
use crate::net::listener::Shutdown;
use crate::protocol::smtp_client::{self, RelayError, Upstream, UpstreamTls};
use crate::store::{Content, Failed, NewOutbound, Outbound, Store, StoreError};

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
    /// The language of delivery status notifications.
    pub locale: Locale,
    /// `X-Loop` of what the gateway writes itself.
    pub loop_marker: String,
    pub retry: RetryPolicy,
    pub wake: Arc<Notify>,
}

/// Why one recipient did not get a mail on this attempt.
#[derive(Debug, Clone)]
struct Failure {
    transient: bool,
    /// For people: the whole error.
    detail: String,
    /// The upstream's reply code and text, when it gave one.
    reply: Option<(u16, String)>,
}

impl From<RelayError> for Failure {
    fn from(e: RelayError) -> Self {
        Failure {
            transient: e.is_transient(),
            reply: e.reply().map(|(code, text)| (code, text.to_string())),
            detail: e.to_string(),
        }
    }
}

/// How an attempt went for each recipient of an entry.
type Attempt = Vec<(String, Result<(), Failure>)>;

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
        let due = self.store.outbox_claim(crate::store::now(), 32).await?;
        // Mail that POP3 intake committed without waiting for the disk goes out once a sync
        // covered it, so a power failure cannot leave a customer with an autoresponse for a
        // ticket the database lost.
        if !due.is_empty() && !self.store.all_synced() {
            self.store.sync().await?;
        }
        let mut by_queue: std::collections::BTreeMap<i64, Vec<&Outbound>> = Default::default();
        for o in &due {
            by_queue.entry(o.queue_id).or_default().push(o);
        }
        for (queue_id, entries) in by_queue {
            let queue = self.store.queue(queue_id).await?;
            let mut session = if queue.smtp_host.is_empty() {
                Err(Failure {
                    transient: true,
                    detail: format!("queue {} has no SMTP server configured", queue.name),
                    reply: None,
                })
            } else {
                smtp_client::Session::new(&upstream(&queue, &self.hostname)).map_err(Failure::from)
            };
            for o in entries {
                let attempt = match &mut session {
                    Ok(s) => send(s, o).await,
                    Err(f) => o
                        .rcpt_to
                        .iter()
                        .map(|r| (r.clone(), Err(f.clone())))
                        .collect(),
                };
                self.settle(&queue, o, attempt).await?;
            }
            if let Ok(s) = session {
                s.close().await;
            }
        }
        Ok(due.len())
    }

    /// Records how relaying one entry went: sent, retry later (for the recipients that
    /// failed for now), or given up on (noted on the ticket; a reply's agent gets a
    /// delivery status notification).
    async fn settle(
        &self,
        queue: &Queue,
        o: &Outbound,
        attempt: Attempt,
    ) -> Result<(), StoreError> {
        let expired = self.expired(o);
        let mut retry: Vec<(String, Failure)> = Vec::new();
        let mut failed: Vec<(String, Failure)> = Vec::new();
        for (rcpt, result) in attempt {
            match result {
                Ok(()) => {
                    tracing::info!(queue = %queue.name, kind = %o.kind, message_id = %o.message_id, to = %rcpt, "relayed")
                }
                Err(f) if f.transient && !expired => retry.push((rcpt, f)),
                Err(f) => failed.push((rcpt, f)),
            }
        }
        let retry_rcpts: Vec<String> = retry.iter().map(|(r, _)| r.clone()).collect();
        let next_at = crate::store::now() + self.retry.delay(o.attempts).as_secs() as i64;
        if failed.is_empty() {
            let Some((_, f)) = retry.first() else {
                return self.store.outbox_sent(o.id).await;
            };
            tracing::warn!(queue = %queue.name, message_id = %o.message_id, to = %retry_rcpts.join(","), error = %f.detail, "relay failed for now");
            return self
                .store
                .outbox_retry(o.id, &retry_rcpts, next_at, &f.detail)
                .await;
        }
        let failures: Vec<RecipientFailure> = failed
            .iter()
            .map(|(rcpt, f)| self.recipient_failure(rcpt, f))
            .collect();
        let what = match o.kind.as_str() {
            "reply" => "reply",
            "autoresponse" => "autoresponse",
            "away" => "out-of-office note",
            "dsn" => "delivery status notification",
            other => other,
        };
        let notes: Vec<String> = failures
            .iter()
            .map(|f| format!("{what} to {} not delivered: {}", f.recipient, f.detail))
            .collect();
        for (rcpt, f) in &failed {
            tracing::error!(queue = %queue.name, kind = %o.kind, message_id = %o.message_id, to = %rcpt, error = %f.detail, "relay failed for good");
        }
        let dsn = self.dsn(queue, o, &failures).await?;
        let error = failed[0].1.detail.clone();
        self.store
            .outbox_failed(
                o,
                &Failed {
                    error: &error,
                    notes: &notes,
                    retry: (!retry_rcpts.is_empty()).then_some((&retry_rcpts[..], next_at)),
                    dsn: dsn.as_ref().map(|(to, id, raw)| NewOutbound {
                        queue_id: o.queue_id,
                        ticket_id: o.ticket_id,
                        agent_id: o.agent_id,
                        kind: "dsn",
                        // The null sender: nothing answers a delivery report.
                        mail_from: "",
                        rcpt_to: std::slice::from_ref(to),
                        message_id: id,
                        content: Content::Bytes(raw),
                    }),
                },
            )
            .await
    }

    fn recipient_failure(&self, rcpt: &str, f: &Failure) -> RecipientFailure {
        let gave_up = f.transient;
        let status = match (&f.reply, gave_up) {
            (_, true) => "4.4.7".to_string(),
            (Some((code, text)), false) => compose::enhanced_status(*code, text),
            (None, false) => "5.0.0".to_string(),
        };
        let detail = if gave_up {
            format!(
                "still not delivered after {}; last error: {}",
                humantime::format_duration(self.retry.give_up_after),
                f.detail
            )
        } else {
            f.detail.clone()
        };
        RecipientFailure {
            recipient: rcpt.to_string(),
            status,
            smtp_reply: f
                .reply
                .as_ref()
                .map(|(code, text)| format!("{code} {text}")),
            detail,
            gave_up,
        }
    }

    /// The delivery status notification for an agent's reply that failed: (recipient,
    /// Message-ID, bytes). Other kinds get none, a notification least of all.
    async fn dsn(
        &self,
        queue: &Queue,
        o: &Outbound,
        failures: &[RecipientFailure],
    ) -> Result<Option<(String, String, Vec<u8>)>, StoreError> {
        if o.kind != "reply" {
            return Ok(None);
        }
        let Some(agent_id) = o.agent_id else {
            return Ok(None);
        };
        let Some(to) = self.store.agent_email(agent_id).await? else {
            return Ok(None);
        };
        let ticket_number = match o.ticket_id {
            Some(id) => self.store.ticket_number(id).await?,
            None => None,
        };
        let message_id = compose::message_id(ticket_number.unwrap_or(0), "dsn", &self.hostname);
        let raw = compose::delivery_status(&DeliveryStatus {
            locale: self.locale,
            reporting_mta: &self.hostname,
            from_name: &queue.friendly_name,
            from_address: &queue.address,
            to: &to,
            message_id: &message_id,
            loop_marker: &self.loop_marker,
            ticket_number,
            original: &o.raw,
            arrival: o.created_at,
            failures,
        });
        match raw {
            Ok(raw) => Ok(Some((to, message_id, raw))),
            Err(e) => {
                tracing::error!(queue = %queue.name, message_id = %o.message_id, error = %e, "cannot write the delivery status notification");
                Ok(None)
            }
        }
    }

    fn expired(&self, o: &Outbound) -> bool {
        crate::store::now() - o.created_at > self.retry.give_up_after.as_secs() as i64
    }
}

/// Sends an entry to all its recipients in one transaction. When that fails for good and
/// there are several, one refused address may have failed them all: each then gets a
/// transaction of its own, so the others still get the mail and the refusal names its
/// recipient. A failed transaction delivered to nobody, so this sends nothing twice.
async fn send(s: &mut smtp_client::Session, o: &Outbound) -> Attempt {
    let all = s.send(&o.mail_from, &o.rcpt_to, &o.raw).await;
    match all {
        Err(e) if e.is_permanent() && o.rcpt_to.len() > 1 => {
            let mut attempt = Vec::with_capacity(o.rcpt_to.len());
            for rcpt in &o.rcpt_to {
                let one = s
                    .send(&o.mail_from, std::slice::from_ref(rcpt), &o.raw)
                    .await;
                attempt.push((rcpt.clone(), one.map_err(Failure::from)));
            }
            attempt
        }
        other => {
            let result = other.map_err(Failure::from);
            o.rcpt_to
                .iter()
                .map(|r| (r.clone(), result.clone()))
                .collect()
        }
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
