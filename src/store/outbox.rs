//! The outbox: outgoing mail committed with the ticket change that caused it, relayed
//! later by the outbox worker.
use sqlx::Row;

use super::{Arg, Backend, Result, Sql, Store, Tx, now};

pub struct NewOutbound<'a> {
    pub queue_id: i64,
    pub ticket_id: Option<i64>,
    pub agent_id: Option<i64>,
    /// autoresponse | reply | away | dsn
    pub kind: &'a str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    pub message_id: &'a str,
    pub content: Content<'a>,
}

/// The bytes an outgoing mail is made of.
pub enum Content<'a> {
    /// Its own bytes, kept with the entry (an autoresponse, a DSN).
    Bytes(&'a [u8]),
    /// Exactly the raw bytes of this item, queued in the same transaction (a reply):
    /// kept once, with the item.
    Item(i64),
}

/// Recipients of an outbox entry given up on (see [`Store::outbox_failed`]).
pub struct Failed<'a> {
    /// The entry's last error.
    pub error: &'a str,
    /// History notes for the entry's ticket, one per recipient given up on.
    pub notes: &'a [String],
    /// Recipients still worth another try, and when: the entry stays pending for them.
    pub retry: Option<(&'a [String], i64)>,
    /// A delivery status notification to queue with it.
    pub dsn: Option<NewOutbound<'a>>,
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
            Arg::Blob(match o.content {
                Content::Bytes(raw) => raw.to_vec(),
                Content::Item(_) => Vec::new(),
            }),
            Arg::OptInt(match o.content {
                Content::Bytes(_) => None,
                Content::Item(id) => Some(id),
            }),
            Arg::Int(at),
            Arg::Int(at),
        ]);
        if let Some(ticket_id) = o.ticket_id {
            self.remember_message_id(ticket_id, o.message_id);
        }
    }
}

impl Store {
    /// Claims up to `limit` pending entries whose next attempt is due, oldest first, for this
    /// instance to send: entries claimed by no one, by this instance, or by an instance that
    /// died (counted in `reclaims`: it may have handed the mail to the upstream just before).
    /// Another instance's live claims are left alone; on PostgreSQL, so are rows another
    /// instance is claiming at this moment (`SKIP LOCKED`).
    pub async fn outbox_claim(&self, at: i64, limit: i64) -> Result<Vec<Outbound>> {
        let me = self.instance().to_string();
        let claimable = format!(
            "FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_by NOT IN \
             (SELECT id FROM instances WHERE alive_until > {}))",
            super::instances::clock(self.backend)
        );
        // A look without the write lock first: mostly there is nothing to claim.
        let any: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id {claimable} LIMIT 1"
        )))
        .bind(at)
        .bind(me.clone())
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let mut select =
            format!("SELECT id, claimed_by {claimable} ORDER BY next_attempt_at, id LIMIT $3");
        if self.backend == Backend::Postgres {
            select.push_str(" FOR UPDATE SKIP LOCKED");
        }
        let claimable: Vec<(i64, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(at)
            .bind(me.clone())
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        if claimable.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(claimable.len());
        let mut reclaimed = Vec::new();
        for (id, by) in claimable {
            ids.push(id);
            if by.is_some_and(|by| by != me) {
                reclaimed.push(id);
            }
        }
        let mut claim = Sql::new("UPDATE outbox SET claimed_by = ");
        claim.bind(Arg::Text(me)).push(" WHERE id IN (");
        super::push_list(&mut claim, ids.iter().map(|&id| Arg::Int(id)));
        claim.push(")");
        claim.query().execute(&mut *conn).await?;
        if !reclaimed.is_empty() {
            let mut count = Sql::new("UPDATE outbox SET reclaims = reclaims + 1 WHERE id IN (");
            super::push_list(&mut count, reclaimed.iter().map(|&id| Arg::Int(id)));
            count.push(")");
            count.query().execute(&mut *conn).await?;
            tracing::warn!(
                entries = ?reclaimed,
                "outbox: taking over entries of an instance that died while sending them; \
                 the upstream may have taken one of them already"
            );
        }
        let mut read = Sql::new(
            "SELECT o.id, o.queue_id, o.ticket_id, o.agent_id, o.kind, o.mail_from, o.rcpt_to, \
             o.message_id, CASE WHEN o.item_id IS NULL THEN o.raw ELSE i.raw END AS raw, \
             o.attempts, o.created_at FROM outbox o LEFT JOIN items i ON i.id = o.item_id \
             WHERE o.id IN (",
        );
        super::push_list(&mut read, ids.iter().map(|&id| Arg::Int(id)));
        read.push(") ORDER BY o.next_attempt_at, o.id");
        let rows = read.query().fetch_all(&mut *conn).await?;
        let due = rows
            .iter()
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
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(due)
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
             last_error = '', claimed_by = NULL WHERE id = $2",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Schedules another attempt for `rcpts`, the recipients still waiting (the others got
    /// the mail or were given up on).
    pub async fn outbox_retry(
        &self,
        id: i64,
        rcpts: &[String],
        next_at: i64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, rcpt_to = $1, next_attempt_at = $2, \
             last_error = $3, claimed_by = NULL WHERE id = $4",
        )
        .bind(rcpts.join(","))
        .bind(next_at)
        .bind(error.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up on some or all recipients of an entry: notes it on the ticket and queues the
    /// delivery status notification, if any, in the same transaction. The entry is failed,
    /// or stays pending for the recipients in `retry`.
    pub async fn outbox_failed(&self, o: &Outbound, f: &Failed<'_>) -> Result<()> {
        let mut tx = self.begin().await?;
        match f.retry {
            Some((rcpts, next_at)) => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, rcpt_to = $1, \
                     next_attempt_at = $2, last_error = $3, claimed_by = NULL WHERE id = $4",
                )
                .bind(rcpts.join(","))
                .bind(next_at)
                .bind(f.error.to_string())
                .bind(o.id)
                .execute(tx.conn().await?)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1, \
                     claimed_by = NULL WHERE id = $2",
                )
                .bind(f.error.to_string())
                .bind(o.id)
                .execute(tx.conn().await?)
                .await?;
            }
        }
        if let Some(ticket_id) = o.ticket_id {
            for note in f.notes {
                tx.history(ticket_id, &super::Actor::system(), "delivery", "", note)
                    .await?;
            }
        }
        if let Some(dsn) = &f.dsn {
            tx.outbox_add(dsn);
        }
        tx.commit().await
    }

    /// The e-mail address of an agent.
    pub async fn agent_email(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT email FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The number of a ticket.
    pub async fn ticket_number(&self, id: i64) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT number FROM tickets WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
