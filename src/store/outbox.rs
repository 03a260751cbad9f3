//! The outbox: outgoing mail committed with the ticket change that caused it, relayed
//! later by the outbox worker.
use sqlx::Row;

use super::{Arg, Backend, Result, Store, Tx, now};

pub struct NewOutbound<'a> {
    pub queue_id: i64,
    pub ticket_id: Option<i64>,
    pub agent_id: Option<i64>,
    /// autoresponse | reply | away | dsn
    pub kind: &'a str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    pub message_id: &'a str,
    pub raw: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct Outbound {
    pub id: i64,
    pub queue_id: i64,
    pub ticket_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub kind: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub message_id: String,
    pub raw: Vec<u8>,
    pub attempts: i64,
    pub created_at: i64,
}

impl Tx {
    /// Queues an outgoing mail; the outbox worker sends it after the commit.
    pub fn outbox_add(&mut self, o: &NewOutbound<'_>) {
        let at = now();
        self.pending.outbox.push([
            Arg::Int(o.queue_id),
            Arg::OptInt(o.ticket_id),
            Arg::OptInt(o.agent_id),
            Arg::Text(o.kind.to_string()),
            Arg::Text(o.mail_from.to_string()),
            Arg::Text(o.rcpt_to.join(",")),
            Arg::Text(o.message_id.to_string()),
            Arg::Blob(o.raw.to_vec()),
            Arg::Int(at),
            Arg::Int(at),
        ]);
        if let Some(ticket_id) = o.ticket_id {
            self.remember_message_id(ticket_id, o.message_id);
        }
    }
}

impl Store {
    /// Pending entries whose next attempt is due, oldest first.
    pub async fn outbox_due(&self, at: i64, limit: i64) -> Result<Vec<Outbound>> {
        let rows = sqlx::query(
            "SELECT id, queue_id, ticket_id, agent_id, kind, mail_from, rcpt_to, message_id, raw, \
             attempts, created_at FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Outbound {
                    id: r.try_get("id")?,
                    queue_id: r.try_get("queue_id")?,
                    ticket_id: r.try_get("ticket_id")?,
                    agent_id: r.try_get("agent_id")?,
                    kind: r.try_get("kind")?,
                    mail_from: r.try_get("mail_from")?,
                    rcpt_to: r
                        .try_get::<String, _>("rcpt_to")?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    message_id: r.try_get("message_id")?,
                    raw: r.try_get("raw")?,
                    attempts: r.try_get("attempts")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The earliest time a pending entry is due, if any.
    pub async fn outbox_next_due(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Marks an entry sent. The mark is committed without waiting for the disk (SQLite:
    /// a connection with `synchronous = NORMAL`; PostgreSQL: `synchronous_commit = off`):
    /// a process crash cannot lose it, a power failure can, and then the mail is sent
    /// once more, which is the most a lost mark can cause. Waiting for the disk once per
    /// mail sent would hold up intake behind the outbox.
    pub async fn outbox_sent(&self, id: i64) -> Result<()> {
        let mut tx = self.relaxed.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1, \
             last_error = '' WHERE id = $2",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_retry(&self, id: i64, next_at: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(next_at)
        .bind(error.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up on an entry: marks it failed and notes it on its ticket.
    pub async fn outbox_failed(&self, o: &Outbound, error: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1 WHERE id = $2",
        )
        .bind(error.to_string())
        .bind(o.id)
        .execute(tx.conn().await?)
        .await?;
        if let Some(ticket_id) = o.ticket_id {
            tx.history(
                ticket_id,
                &super::Actor::system(),
                &format!("{}_failed", o.kind),
                &o.rcpt_to.join(", "),
                error,
            )
            .await?;
        }
        tx.commit().await
    }
}
