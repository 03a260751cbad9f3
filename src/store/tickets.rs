//! Tickets: finding the ticket a mail belongs to, opening one with the next number,
//! changing its status and assignee, and merging two.
use std::collections::HashSet;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Actor, Arg, Result, Sql, Store, StoreError, Tx, flag, now, push_list};

/// What the rules need to know about a ticket found for a mail.
#[derive(Debug, Clone)]
pub struct TicketRef {
    pub id: i64,
    pub number: i64,
    pub queue_id: i64,
    pub queue_name: String,
    pub subject: String,
    pub status_key: String,
    pub status_closed: bool,
    pub merged_into_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub assignee_id: Option<i64>,
    pub creator_address: String,
}

/// A ticket as intake opens it (see [`Tx::create_ticket`]).
pub struct NewTicket<'a> {
    pub subject: &'a str,
    pub queue_id: i64,
    pub queue_name: &'a str,
    pub creator_address: &'a str,
    pub customer_id: Option<i64>,
    pub cc: &'a [String],
    pub spoof_suspect: bool,
    pub first_number: i64,
    pub assignee_id: Option<i64>,
    pub at: i64,
}

/// What an admin's change of one field of a ticket did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TicketChange {
    pub number: i64,
    pub field: String,
    /// Empty for none.
    pub old: String,
    pub new: String,
    /// False when the ticket had that value already (nothing was logged).
    pub changed: bool,
}

impl TicketChange {
    fn new(number: i64, field: &str, old: String, new: String) -> TicketChange {
        TicketChange {
            number,
            field: field.to_string(),
            changed: old != new,
            old,
            new,
        }
    }
}

/// The columns [`ticket_ref`] reads, from `tickets t`, `queues q` and `statuses s`.
macro_rules! ticket_ref_columns {
    () => {
        "t.id, t.number, t.queue_id, q.name AS queue_name, t.subject, s.key AS status_key, \
         s.is_closed, t.merged_into_id, t.customer_id, t.assignee_id, t.creator_address"
    };
}
pub(super) use ticket_ref_columns;

const TICKET_REF: &str = concat!(
    "SELECT ",
    ticket_ref_columns!(),
    " FROM tickets t JOIN queues q ON q.id = t.queue_id JOIN statuses s ON s.id = t.status_id"
);

pub(super) fn ticket_ref(r: &AnyRow) -> Result<TicketRef> {
    Ok(TicketRef {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        queue_id: r.try_get("queue_id")?,
        queue_name: r.try_get("queue_name")?,
        subject: r.try_get("subject")?,
        status_key: r.try_get("status_key")?,
        status_closed: r.try_get::<i64, _>("is_closed")? != 0,
        merged_into_id: r.try_get("merged_into_id")?,
        customer_id: r.try_get("customer_id")?,
        assignee_id: r.try_get("assignee_id")?,
        creator_address: r.try_get("creator_address")?,
    })
}

impl Tx {
    /// Which of these Message-IDs belong to some ticket.
    pub async fn known_message_ids(&mut self, ids: &[String]) -> Result<HashSet<String>> {
        let mut known = HashSet::new();
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new("SELECT message_id FROM message_ids WHERE message_id IN (");
            push_list(&mut sql, chunk.iter().cloned().map(Arg::Text));
            sql.push(")");
            let rows = sql.query().fetch_all(self.conn().await?).await?;
            for row in rows {
                known.insert(row.try_get("message_id")?);
            }
        }
        Ok(known)
    }

    /// The most recently active ticket that sent or received one of these Message-IDs.
    pub async fn ticket_by_message_ids(&mut self, ids: &[String]) -> Result<Option<TicketRef>> {
        if ids.is_empty() {
            return Ok(None);
        }
        let mut sql = Sql::new(TICKET_REF);
        sql.push(" WHERE t.id IN (SELECT ticket_id FROM message_ids WHERE message_id IN (");
        for (i, id) in ids.iter().take(100).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(id.clone()));
        }
        sql.push(")) ORDER BY t.last_action_at DESC, t.id DESC LIMIT 1");
        let row = sql.query().fetch_optional(self.conn().await?).await?;
        row.as_ref().map(ticket_ref).transpose()
    }

    pub async fn ticket_by_number(&mut self, number: i64) -> Result<Option<TicketRef>> {
        let sql = format!("{TICKET_REF} WHERE t.number = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(number)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(ticket_ref).transpose()
    }

    pub async fn ticket_by_id(&mut self, id: i64) -> Result<TicketRef> {
        let sql = format!("{TICKET_REF} WHERE t.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(self.conn().await?)
            .await?;
        ticket_ref(&row)
    }

    /// Ticket `number` for an admin's change: it must exist and not be merged away.
    async fn ticket_to_change(&mut self, number: i64) -> Result<TicketRef> {
        let t = self
            .ticket_by_number(number)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no ticket #{number}")))?;
        if let Some(target) = t.merged_into_id {
            let target = self.ticket_by_id(target).await?;
            return Err(StoreError::Invalid(format!(
                "ticket #{number} is merged into #{}; change that one",
                target.number
            )));
        }
        Ok(t)
    }

    /// Follows merges to the ticket that now holds the conversation.
    pub async fn resolve_merged(&mut self, mut t: TicketRef) -> Result<TicketRef> {
        for _ in 0..32 {
            match t.merged_into_id {
                Some(target) => t = self.ticket_by_id(target).await?,
                None => return Ok(t),
            }
        }
        Ok(t)
    }

    /// A participant of a ticket: its creator, a CC address, a customer address, or an agent.
    pub async fn is_participant(&mut self, t: &TicketRef, address: &str) -> Result<bool> {
        let address = address.to_ascii_lowercase();
        if t.creator_address == address {
            return Ok(true);
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM ticket_cc WHERE ticket_id = $1 AND address = $2) \
             + (SELECT COUNT(*) FROM customer_emails WHERE customer_id = $3 AND address = $2) \
             + (SELECT COUNT(*) FROM agents WHERE email = $2)",
        )
        .bind(t.id)
        .bind(address)
        .bind(t.customer_id.unwrap_or(-1))
        .fetch_one(self.conn().await?)
        .await?;
        Ok(n > 0)
    }

    /// The next number of the gap-free ticket counter. The first call in a transaction
    /// locks the counter row (PostgreSQL) until commit; the new value is written with the
    /// queued rows, so a rollback gives the numbers back.
    async fn next_ticket_number(&mut self, first: i64) -> Result<i64> {
        let current = match self.pending.ticket_counter {
            Some(n) => n,
            None => {
                // Touches only the counter, whose queued value is `pending.ticket_counter`.
                let stored: Option<i64> = sqlx::query_scalar(
                    "UPDATE counters SET value = value WHERE name = 'ticket' RETURNING value",
                )
                .fetch_optional(self.conn_unflushed())
                .await?;
                match stored {
                    Some(n) => n,
                    None => {
                        // Several first tickets at once: one row wins, the others wait for
                        // it (PostgreSQL) and then count on from it.
                        sqlx::query(
                            "INSERT INTO counters (name, value) VALUES ('ticket', $1) \
                             ON CONFLICT (name) DO NOTHING",
                        )
                        .bind(first - 1)
                        .execute(self.conn_unflushed())
                        .await?;
                        sqlx::query_scalar(
                            "UPDATE counters SET value = value WHERE name = 'ticket' RETURNING value",
                        )
                        .fetch_one(self.conn_unflushed())
                        .await?
                    }
                }
            }
        };
        let next = (current + 1).max(first);
        self.pending.ticket_counter = Some(next);
        Ok(next)
    }

    /// A status's id, read without sending the queued rows first: no queued row is a
    /// status, so they cannot change the answer, and the rows of a batch stay together
    /// for one flush instead of going out early.
    async fn status_id_unflushed(&mut self, key: &str) -> Result<i64> {
        if let Some(id) = self.status_ids.get(key) {
            return Ok(*id);
        }
        let id: i64 = sqlx::query_scalar("SELECT id FROM statuses WHERE key = $1")
            .bind(key.to_string())
            .fetch_optional(self.conn_unflushed())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no status {key:?}")))?;
        self.status_ids.insert(key.to_string(), id);
        Ok(id)
    }

    /// Queues a new ticket with status `new`, its CC list and a `created` history entry.
    pub async fn create_ticket(&mut self, t: &NewTicket<'_>, actor: &Actor) -> Result<TicketRef> {
        let number = self.next_ticket_number(t.first_number).await?;
        let status_new = self
            .status_id_unflushed(crate::core::model::status_key::NEW)
            .await?;
        let id = self.next_id("tickets").await?;
        let creator = t.creator_address.to_ascii_lowercase();
        self.pending.tickets.push([
            Arg::Int(id),
            Arg::Int(number),
            Arg::Text(t.subject.to_string()),
            Arg::Int(t.queue_id),
            Arg::OptInt(t.assignee_id),
            Arg::Int(status_new),
            Arg::OptInt(t.customer_id),
            Arg::Text(creator.clone()),
            Arg::Int(flag(t.spoof_suspect)),
            Arg::Int(t.at),
            Arg::Int(t.at),
            Arg::Int(t.at),
        ]);
        for cc in t.cc {
            self.pending
                .ticket_cc
                .push([Arg::Int(id), Arg::Text(cc.to_ascii_lowercase())]);
        }
        self.history(id, actor, "created", "", &format!("#{number}"))
            .await?;
        Ok(TicketRef {
            id,
            number,
            queue_id: t.queue_id,
            queue_name: t.queue_name.to_string(),
            subject: t.subject.to_string(),
            status_key: crate::core::model::status_key::NEW.to_string(),
            status_closed: false,
            merged_into_id: None,
            customer_id: t.customer_id,
            assignee_id: t.assignee_id,
            creator_address: creator,
        })
    }

    /// Sets a ticket's status by key (one the statuses table has) and logs it; no-op when
    /// unchanged. Queued: written with the ticket's other changes in this transaction.
    pub async fn set_status(&mut self, t: &TicketRef, key: &str, actor: &Actor) -> Result<()> {
        if t.status_key == key {
            return Ok(());
        }
        self.pending.ticket_sets.entry(t.id).or_default().status = Some(key.to_string());
        self.history(t.id, actor, "status", &t.status_key, key)
            .await
    }

    /// Sets or clears a ticket's assignee and logs it by login; returns the old and the new
    /// login (empty for none). No-op when unchanged.
    pub async fn set_assignee(
        &mut self,
        t: &TicketRef,
        agent: Option<(i64, &str)>,
        actor: &Actor,
    ) -> Result<(String, String)> {
        let old: String = match t.assignee_id {
            Some(id) => sqlx::query_scalar("SELECT login FROM agents WHERE id = $1")
                .bind(id)
                .fetch_optional(self.conn().await?)
                .await?
                .unwrap_or_default(),
            None => String::new(),
        };
        let new = agent
            .map(|(_, login)| login.to_string())
            .unwrap_or_default();
        if t.assignee_id == agent.map(|(id, _)| id) {
            return Ok((old, new));
        }
        self.pending.ticket_sets.entry(t.id).or_default().assignee = Some(agent.map(|(id, _)| id));
        self.history(t.id, actor, "assignee", &old, &new).await?;
        Ok((old, new))
    }

    /// The key of the status named `name`: its key or its English or German name, in any
    /// case (`closed`, `Geschlossen`, an admin's own status).
    pub async fn status_key_by_name(&mut self, name: &str) -> Result<String> {
        let wanted = name.trim().to_lowercase();
        let rows = sqlx::query("SELECT key, name_en, name_de FROM statuses ORDER BY position, id")
            .fetch_all(self.conn().await?)
            .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: String = r.try_get("key")?;
            let names = [
                key.clone(),
                r.try_get::<String, _>("name_en")?,
                r.try_get::<String, _>("name_de")?,
            ];
            if names.iter().any(|n| n.to_lowercase() == wanted) {
                return Ok(key);
            }
            keys.push(key);
        }
        Err(StoreError::NotFound(format!(
            "no status {name:?}; statuses: {}",
            keys.join(", ")
        )))
    }

    /// Merges ticket `from` into `into`: `from`'s items become older items of `into`,
    /// `from` becomes `merged` and forwards later mail to `into`.
    pub async fn merge(&mut self, from: &TicketRef, into: &TicketRef, actor: &Actor) -> Result<()> {
        mergeable(from, into).map_err(StoreError::Invalid)?;
        for sql in [
            "UPDATE items SET ticket_id = $1 WHERE ticket_id = $2",
            "INSERT INTO message_ids (message_id, ticket_id) SELECT message_id, $1 FROM message_ids \
             WHERE ticket_id = $2 ON CONFLICT DO NOTHING",
            "INSERT INTO ticket_cc (ticket_id, address) SELECT $1, address FROM ticket_cc \
             WHERE ticket_id = $2 ON CONFLICT DO NOTHING",
            "INSERT INTO ticket_tags (ticket_id, tag_id) SELECT $1, tag_id FROM ticket_tags \
             WHERE ticket_id = $2 ON CONFLICT DO NOTHING",
            "INSERT INTO ticket_watchers (ticket_id, agent_id) SELECT $1, agent_id FROM ticket_watchers \
             WHERE ticket_id = $2 ON CONFLICT DO NOTHING",
        ] {
            sqlx::query(sql)
                .bind(into.id)
                .bind(from.id)
                .execute(self.conn().await?)
                .await?;
        }
        let merged = self
            .status_id_unflushed(crate::core::model::status_key::MERGED)
            .await?;
        sqlx::query(
            "UPDATE tickets SET merged_into_id = $1, status_id = $2, updated_at = $3, \
             version = version + 1, mailbox_uid = NULL WHERE id = $4",
        )
        .bind(into.id)
        .bind(merged)
        .bind(now())
        .bind(from.id)
        .execute(self.conn().await?)
        .await?;
        sqlx::query(
            "UPDATE tickets SET last_action_at = (SELECT MAX(received_at) FROM items WHERE ticket_id = $1), \
             updated_at = $2, version = version + 1, mailbox_uid = NULL WHERE id = $1",
        )
        .bind(into.id)
        .bind(now())
        .execute(self.conn().await?)
        .await?;
        self.history(
            from.id,
            actor,
            "merged_into",
            "",
            &format!("#{}", into.number),
        )
        .await?;
        self.history(
            into.id,
            actor,
            "merged_from",
            "",
            &format!("#{}", from.number),
        )
        .await
    }
}

/// Why ticket `from` cannot be merged into `into`, if it cannot.
pub fn mergeable(from: &TicketRef, into: &TicketRef) -> Result<(), String> {
    if from.id == into.id {
        return Err("a ticket cannot be merged into itself".into());
    }
    if from.merged_into_id.is_some() {
        return Err(format!("ticket #{} is already merged", from.number));
    }
    if into.merged_into_id.is_some() {
        return Err(format!(
            "ticket #{} is merged itself; merge into its target",
            into.number
        ));
    }
    Ok(())
}

impl Store {
    /// Assigns ticket `number` to the agent with `login`, or to nobody.
    pub async fn ticket_assign(
        &self,
        number: i64,
        login: Option<&str>,
        actor: &Actor,
    ) -> Result<TicketChange> {
        let mut tx = self.begin().await?;
        let t = tx.ticket_to_change(number).await?;
        let agent = match login {
            Some(login) => {
                let id: i64 = sqlx::query_scalar("SELECT id FROM agents WHERE login = $1")
                    .bind(login.to_string())
                    .fetch_optional(tx.conn().await?)
                    .await?
                    .ok_or_else(|| {
                        StoreError::NotFound(format!("no agent with login {login:?}"))
                    })?;
                Some((id, login))
            }
            None => None,
        };
        let (old, new) = tx.set_assignee(&t, agent, actor).await?;
        tx.commit().await?;
        Ok(TicketChange::new(number, "assignee", old, new))
    }

    /// Sets the status of ticket `number`, named by key or localized name. `merged` is
    /// refused: only a merge sets it.
    pub async fn ticket_set_status(
        &self,
        number: i64,
        status: &str,
        actor: &Actor,
    ) -> Result<TicketChange> {
        let mut tx = self.begin().await?;
        let t = tx.ticket_to_change(number).await?;
        let key = tx.status_key_by_name(status).await?;
        if key == crate::core::model::status_key::MERGED {
            return Err(StoreError::Invalid(
                "a ticket becomes merged only by a merge (ticket merge A B)".into(),
            ));
        }
        tx.set_status(&t, &key, actor).await?;
        tx.commit().await?;
        Ok(TicketChange::new(number, "status", t.status_key, key))
    }

    /// Merges ticket `from` into `into` (by number).
    pub async fn ticket_merge(&self, from: i64, into: i64, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let a = tx
            .ticket_by_number(from)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no ticket #{from}")))?;
        let b = tx
            .ticket_by_number(into)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no ticket #{into}")))?;
        tx.merge(&a, &b, actor).await?;
        tx.commit().await
    }
}
