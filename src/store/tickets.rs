//! Tickets, items, history: what intake writes and what the admin commands read.
use std::collections::{HashMap, HashSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::admin::{customer_from_row, document_from_row};
use super::{Arg, Backend, Result, Sql, Store, StoreError, Tx, flag, now, push_list, set_counter};
use crate::core::filter::{AssigneeFilter, DueFilter, Filter, StatusFilter};
use crate::core::mail::{self, Attachment};
use crate::core::model::{
    AttachmentInfo, HistoryEntry, ItemDetail, ItemKind, Priority, Stats, TicketDetail,
    TicketSummary,
};

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

pub struct NewItem<'a> {
    pub kind: ItemKind,
    pub agent_id: Option<i64>,
    pub from_address: &'a str,
    pub from_name: &'a str,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub subject: &'a str,
    pub date: i64,
    pub message_id: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// `text` and `html` are what [`mail::parse`] reads from `raw`: SQLite then stores
    /// only `raw` and parses it when the body is asked for.
    pub body_in_raw: bool,
    pub raw: &'a [u8],
    pub raw_sha256: &'a str,
    pub problems: &'a [String],
    pub attachments: &'a [Attachment],
}

/// Who made a change, for the history.
#[derive(Debug, Clone)]
pub struct Actor {
    pub agent_id: Option<i64>,
    pub name: String,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            agent_id: None,
            name: "system".into(),
        }
    }
    pub fn customer(address: &str) -> Actor {
        Actor {
            agent_id: None,
            name: address.to_string(),
        }
    }
}

/// A ticket list query: every field narrows (AND); values within one field are OR.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub numbers: Vec<i64>,
    pub queues: Vec<String>,
    pub statuses: Vec<StatusFilter>,
    pub assignees: Vec<AssigneeFilter>,
    /// The login `assignee:me` stands for; without one, `me` matches nothing.
    pub me: Option<String>,
    /// Every tag must be on the ticket.
    pub tags: Vec<String>,
    pub priorities: Vec<Priority>,
    pub customers: Vec<String>,
    /// Tickets of which any item, the creator, a CC or the customer has one of these addresses.
    pub emails: Vec<String>,
    /// Substrings that must all be in the subject, case-insensitive.
    pub subjects: Vec<String>,
    /// Full-text words over every item's subject and text, all must match.
    pub text: Vec<String>,
    pub billable: Option<bool>,
    pub due: Option<DueFilter>,
    pub created_since: Option<i64>,
    pub created_until: Option<i64>,
    pub limit: Option<i64>,
    /// Only tickets of these queues (an agent's access); `None` for every queue.
    pub visible_queues: Option<Vec<String>>,
    /// Only tickets assigned to or watched by this agent (id).
    pub mine_or_watched: Option<i64>,
}

impl TicketQuery {
    /// The query a filter expression stands for, relative times resolved against `now`.
    pub fn from_filter(f: &Filter, now: i64, me: Option<&str>) -> TicketQuery {
        let now_dt = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
        TicketQuery {
            numbers: f.numbers.clone(),
            queues: f.queues.clone(),
            statuses: f.statuses.clone(),
            assignees: f.assignees.clone(),
            me: me.map(str::to_string),
            tags: f.tags.clone(),
            priorities: f.priorities.clone(),
            customers: f.customers.clone(),
            emails: f.emails.clone(),
            subjects: f.subjects.clone(),
            text: f.text.clone(),
            billable: f.billable,
            due: f.due,
            created_since: f.since.map(|b| b.start(now_dt).timestamp()),
            created_until: f.until.map(|b| b.end(now_dt).timestamp()),
            ..TicketQuery::default()
        }
    }
}

/// An agent who is out of the office, as intake needs it.
#[derive(Debug, Clone)]
pub struct AgentAway {
    pub agent_id: i64,
    pub login: String,
    pub from: i64,
    pub until: i64,
    /// The note customers get (placeholders allowed).
    pub text: String,
    /// (id, login) of the agent who stands in.
    pub substitute: Option<(i64, String)>,
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
    /// Which of these mails (by the sha256 of their bytes) are already customer items of a
    /// ticket of the queue: redeliveries after a crash between commit and acknowledgement.
    pub async fn seen_mails(
        &mut self,
        queue_id: i64,
        raw_sha256: &[String],
    ) -> Result<HashSet<String>> {
        // Two plain lookups instead of a join: the planner could otherwise walk every
        // ticket of the queue. Matches are rare (redeliveries), so the second seldom runs.
        let mut found: Vec<(String, i64)> = Vec::new();
        for chunk in raw_sha256.chunks(500) {
            let mut sql = Sql::new(
                "SELECT raw_sha256, ticket_id FROM items WHERE kind = 'customer' AND raw_sha256 IN (",
            );
            push_list(&mut sql, chunk.iter().cloned().map(Arg::Text));
            sql.push(")");
            for row in sql.query().fetch_all(self.conn().await?).await? {
                found.push((row.try_get("raw_sha256")?, row.try_get("ticket_id")?));
            }
        }
        let mut seen = HashSet::new();
        for chunk in found.chunks(500) {
            let mut sql = Sql::new("SELECT id FROM tickets WHERE queue_id = ");
            sql.bind(Arg::Int(queue_id)).push(" AND id IN (");
            push_list(&mut sql, chunk.iter().map(|(_, t)| Arg::Int(*t)));
            sql.push(")");
            let in_queue: HashSet<i64> = sql
                .query()
                .fetch_all(self.conn().await?)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
            seen.extend(
                chunk
                    .iter()
                    .filter(|(_, t)| in_queue.contains(t))
                    .map(|(sha, _)| sha.clone()),
            );
        }
        Ok(seen)
    }

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

    /// Lower-case addresses of every queue, enabled or not.
    pub async fn queue_addresses(&mut self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT address FROM queues")
            .fetch_all(self.conn().await?)
            .await?)
    }

    /// The customers with these ids (placeholders of answers), by id.
    pub async fn customers_by_ids(
        &mut self,
        ids: &[i64],
    ) -> Result<HashMap<i64, crate::core::model::Customer>> {
        let mut customers = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new(
                "SELECT id, number, company1, company2, salutation, first_name, last_name, street, \
                 house_no, zip, city, letter_salutation, delivery_block FROM customers WHERE id IN (",
            );
            push_list(&mut sql, chunk.iter().map(|i| Arg::Int(*i)));
            sql.push(")");
            let rows = sql.query().fetch_all(self.conn().await?).await?;
            let mut sql =
                Sql::new("SELECT customer_id, address FROM customer_emails WHERE customer_id IN (");
            push_list(&mut sql, chunk.iter().map(|i| Arg::Int(*i)));
            sql.push(") ORDER BY address");
            let mut emails: HashMap<i64, Vec<String>> = HashMap::new();
            for row in sql.query().fetch_all(self.conn().await?).await? {
                emails
                    .entry(row.try_get("customer_id")?)
                    .or_default()
                    .push(row.try_get("address")?);
            }
            for row in rows {
                let id: i64 = row.try_get("id")?;
                let c = customer_from_row(&row, emails.remove(&id).unwrap_or_default())?;
                customers.insert(id, c);
            }
        }
        Ok(customers)
    }

    pub async fn queue_on_closed(&mut self, queue_id: i64) -> Result<crate::core::model::OnClosed> {
        let word: String = sqlx::query_scalar("SELECT on_closed FROM queues WHERE id = $1")
            .bind(queue_id)
            .fetch_one(self.conn().await?)
            .await?;
        word.parse()
            .map_err(|e: crate::core::model::UnknownWord| StoreError::Invalid(e.to_string()))
    }

    /// The next number of the gap-free ticket counter. The first call in a transaction
    /// locks the counter row (PostgreSQL) until commit; the new value is written with the
    /// queued rows, so a rollback gives the numbers back.
    async fn next_ticket_number(&mut self, first: i64) -> Result<i64> {
        let current = match self.pending.ticket_counter {
            Some(n) => n,
            None => {
                // Touches only the counter, so the queued rows may wait.
                let stored: Option<i64> = sqlx::query_scalar(
                    "UPDATE counters SET value = value WHERE name = 'ticket' RETURNING value",
                )
                .fetch_optional(&mut *self.inner)
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
                        .execute(&mut *self.inner)
                        .await?;
                        sqlx::query_scalar(
                            "UPDATE counters SET value = value WHERE name = 'ticket' RETURNING value",
                        )
                        .fetch_one(&mut *self.inner)
                        .await?
                    }
                }
            }
        };
        let next = (current + 1).max(first);
        self.pending.ticket_counter = Some(next);
        Ok(next)
    }

    /// A status's id. Reads without sending the queued rows: none of them are statuses.
    async fn status_id(&mut self, key: &str) -> Result<i64> {
        if let Some(id) = self.status_ids.get(key) {
            return Ok(*id);
        }
        let id: i64 = sqlx::query_scalar("SELECT id FROM statuses WHERE key = $1")
            .bind(key.to_string())
            .fetch_optional(&mut *self.inner)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no status {key:?}")))?;
        self.status_ids.insert(key.to_string(), id);
        Ok(id)
    }

    /// Queues a new ticket with status `new`, its CC list and a `created` history entry.
    pub async fn create_ticket(&mut self, t: &NewTicket<'_>, actor: &Actor) -> Result<TicketRef> {
        let number = self.next_ticket_number(t.first_number).await?;
        let status_new = self.status_id(crate::core::model::status_key::NEW).await?;
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

    /// Queues an item with its attachments and Message-ID; bumps the ticket's last action
    /// and version.
    pub async fn add_item(&mut self, ticket_id: i64, it: &NewItem<'_>, at: i64) -> Result<i64> {
        let id = self.next_id("items").await?;
        let body_from_raw = it.body_in_raw && self.backend == Backend::Sqlite;
        let (text, html) = match body_from_raw {
            true => (String::new(), None),
            false => (it.text.to_string(), it.html.map(str::to_string)),
        };
        self.pending.items.push([
            Arg::Int(id),
            Arg::Int(ticket_id),
            Arg::Text(it.kind.as_str().to_string()),
            Arg::OptInt(it.agent_id),
            Arg::Text(it.from_address.to_string()),
            Arg::Text(it.from_name.to_string()),
            Arg::Text(it.to.join(", ")),
            Arg::Text(it.cc.join(", ")),
            Arg::Text(it.subject.to_string()),
            Arg::Int(it.date),
            Arg::Int(at),
            Arg::Text(it.message_id.to_string()),
            Arg::Text(text),
            Arg::OptText(html),
            Arg::Blob(it.raw.to_vec()),
            Arg::Text(it.raw_sha256.to_string()),
            Arg::Text(it.problems.join("\n")),
            Arg::Int(flag(body_from_raw)),
        ]);
        for a in it.attachments {
            self.pending.attachments.push([
                Arg::Int(id),
                Arg::Text(a.name.clone()),
                Arg::Text(a.content_type.clone()),
                Arg::Int(a.size as i64),
                Arg::Text(a.sha256.clone()),
                Arg::Int(i64::from(a.part_id)),
                Arg::Text(a.content_id.clone().unwrap_or_default()),
                Arg::Int(flag(a.inline)),
            ]);
        }
        if self.backend == Backend::Postgres {
            self.pending.search_pending.push([Arg::Int(id)]);
        }
        if !it.message_id.is_empty() {
            self.remember_message_id(ticket_id, it.message_id);
        }
        let newest = self.pending.touched.entry(ticket_id).or_insert(at);
        *newest = (*newest).max(at);
        Ok(id)
    }

    /// Queues a Message-ID under which mail of the ticket was sent or received.
    pub fn remember_message_id(&mut self, ticket_id: i64, message_id: &str) {
        self.pending
            .message_ids
            .push([Arg::Text(message_id.to_string()), Arg::Int(ticket_id)]);
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

    /// Queues a history entry.
    pub async fn history(
        &mut self,
        ticket_id: i64,
        actor: &Actor,
        field: &str,
        old: &str,
        new: &str,
    ) -> Result<()> {
        self.pending.history.push([
            Arg::Int(ticket_id),
            Arg::Int(now()),
            Arg::OptInt(actor.agent_id),
            Arg::Text(actor.name.clone()),
            Arg::Text(field.to_string()),
            Arg::Text(old.to_string()),
            Arg::Text(new.to_string()),
        ]);
        Ok(())
    }

    /// Autoresponses and out-of-office notes sent to each of these senders since `since`
    /// (lower-case address → count; senders with none are missing).
    pub async fn autoresponse_counts(
        &mut self,
        senders: &[String],
        since: i64,
    ) -> Result<HashMap<String, i64>> {
        let mut counts = HashMap::new();
        for chunk in senders.chunks(500) {
            let mut sql = Sql::new("SELECT sender, COUNT(*) AS n FROM autoresponses WHERE at >= ");
            sql.bind(Arg::Int(since)).push(" AND sender IN (");
            push_list(
                &mut sql,
                chunk.iter().map(|a| Arg::Text(a.to_ascii_lowercase())),
            );
            sql.push(") GROUP BY sender");
            let rows = sql.query().fetch_all(self.conn().await?).await?;
            for row in rows {
                counts.insert(row.try_get("sender")?, row.try_get("n")?);
            }
        }
        Ok(counts)
    }

    /// Agents away at `at` (out-of-office from ≤ at ≤ until), by id.
    pub async fn agents_away(&mut self, at: i64) -> Result<HashMap<i64, AgentAway>> {
        let rows = sqlx::query(
            "SELECT a.id, a.login, a.away_from, a.away_until, a.away_text, a.substitute_id, \
             s.login AS substitute FROM agents a LEFT JOIN agents s ON s.id = a.substitute_id \
             WHERE a.away_from <= $1 AND a.away_until >= $1",
        )
        .bind(at)
        .fetch_all(self.conn().await?)
        .await?;
        let mut away = HashMap::with_capacity(rows.len());
        for r in rows {
            let substitute = match (
                r.try_get::<Option<i64>, _>("substitute_id")?,
                r.try_get::<Option<String>, _>("substitute")?,
            ) {
                (Some(id), Some(login)) => Some((id, login)),
                _ => None,
            };
            let id: i64 = r.try_get("id")?;
            away.insert(
                id,
                AgentAway {
                    agent_id: id,
                    login: r.try_get("login")?,
                    from: r.try_get("away_from")?,
                    until: r.try_get("away_until")?,
                    text: r.try_get("away_text")?,
                    substitute,
                },
            );
        }
        Ok(away)
    }

    /// (ticket, agent) of every out-of-office note these agents sent since their absence
    /// began.
    pub async fn away_notes_sent(
        &mut self,
        away: &HashMap<i64, AgentAway>,
    ) -> Result<HashSet<(i64, i64)>> {
        let mut sent = HashSet::new();
        let ids: Vec<i64> = away.keys().copied().collect();
        for chunk in ids.chunks(500) {
            let mut sql = Sql::new(
                "SELECT ticket_id, agent_id, at FROM autoresponses WHERE kind = 'away' AND agent_id IN (",
            );
            push_list(&mut sql, chunk.iter().map(|i| Arg::Int(*i)));
            sql.push(")");
            for row in sql.query().fetch_all(self.conn().await?).await? {
                let agent: i64 = row.try_get("agent_id")?;
                let at: i64 = row.try_get("at")?;
                if let (Some(ticket), Some(a)) = (
                    row.try_get::<Option<i64>, _>("ticket_id")?,
                    away.get(&agent),
                ) && at >= a.from
                {
                    sent.insert((ticket, agent));
                }
            }
        }
        Ok(sent)
    }

    /// (ticket, agent) of every ticket these agents watch.
    pub async fn watched_by(&mut self, agents: &[i64]) -> Result<HashSet<(i64, i64)>> {
        let mut watched = HashSet::new();
        for chunk in agents.chunks(500) {
            let mut sql =
                Sql::new("SELECT ticket_id, agent_id FROM ticket_watchers WHERE agent_id IN (");
            push_list(&mut sql, chunk.iter().map(|i| Arg::Int(*i)));
            sql.push(")");
            for row in sql.query().fetch_all(self.conn().await?).await? {
                watched.insert((row.try_get("ticket_id")?, row.try_get("agent_id")?));
            }
        }
        Ok(watched)
    }

    /// Queues an agent as watcher of a ticket (nothing happens when it watches already).
    pub fn add_watcher(&mut self, ticket_id: i64, agent_id: i64) {
        self.pending
            .ticket_watchers
            .push([Arg::Int(ticket_id), Arg::Int(agent_id)]);
    }

    /// Queues an entry of the autoresponse log (the per-sender cap counts these).
    pub fn record_autoresponse(
        &mut self,
        sender: &str,
        queue_id: i64,
        ticket_id: i64,
        kind: &str,
        agent_id: Option<i64>,
    ) {
        self.pending.autoresponses.push([
            Arg::Text(sender.to_ascii_lowercase()),
            Arg::Int(queue_id),
            Arg::Int(ticket_id),
            Arg::Text(kind.to_string()),
            Arg::OptInt(agent_id),
            Arg::Int(now()),
        ]);
    }

    /// Records what POP3 intake did with a mailbox message (`taken` or `too_large`).
    pub fn pop3_mark(&mut self, queue_id: i64, uidl: &str, state: &str) {
        self.pending
            .pop3_marks
            .insert((queue_id, uidl.to_string()), (state.to_string(), now()));
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
            .status_id(crate::core::model::status_key::MERGED)
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

/// Indexed items after which the index queue is tidied at once (see
/// [`Store::tidy_search_queue`]).
pub const TIDY_SEARCH_QUEUE_AFTER: u64 = 10_000;

/// Words in at most this many items are looked up before their tickets (PostgreSQL).
const FEW_ITEMS: usize = 5_000;

/// How a query's full-text words select tickets.
///
/// PostgreSQL estimates a word it keeps no statistics for to be in half as many items as
/// the rarest word it keeps them for: 0.2 % of 1,000,000 items in the scale benchmark,
/// where an order number is in one. Against that estimate, reading every ticket and
/// joining looked cheaper than looking up the matching items' tickets, and a search for
/// an order number took 60–90 ms instead of 1–3 ms. So the items are looked up first (at
/// most [`FEW_ITEMS`] of them), and the query names their tickets; more items than that
/// leave the words to the planner, whose estimates of common words are close.
pub(super) enum TextMatches {
    /// The words as a condition in the query (SQLite's FTS5; common words on PostgreSQL).
    Condition,
    /// The tickets whose items hold all the words, ids ascending.
    Tickets(Vec<i64>),
}

impl Store {
    /// Adds up to `limit` items not yet in the full-text index, oldest first, in one short
    /// transaction; returns how many. SQLite: the items after the last one indexed (one
    /// writer, so ids are committed in order). PostgreSQL: those in `search_pending`; with
    /// `skip_locked`, rows another instance is indexing right now are left to it.
    pub async fn index_for_search(&self, limit: i64, skip_locked: bool) -> Result<u64> {
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let added = match self.backend {
            Backend::Sqlite => {
                let done: i64 =
                    sqlx::query_scalar("SELECT value FROM counters WHERE name = 'search_indexed'")
                        .fetch_optional(&mut *conn)
                        .await?
                        .unwrap_or(0);
                let upto: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(id) FROM (SELECT id FROM items WHERE id > $1 ORDER BY id LIMIT $2)",
                )
                .bind(done)
                .bind(limit)
                .fetch_one(&mut *conn)
                .await?;
                let Some(upto) = upto else { return Ok(0) };
                let rows = sqlx::query(
                    "SELECT id, subject, text, CASE WHEN body_from_raw = 1 THEN raw END AS body_raw \
                     FROM items WHERE id > $1 AND id <= $2",
                )
                .bind(done)
                .bind(upto)
                .fetch_all(&mut *conn)
                .await?;
                let mut insert = Sql::for_backend(
                    Backend::Sqlite,
                    "INSERT INTO items_fts (rowid, subject, text) VALUES ",
                );
                for (i, r) in rows.iter().enumerate() {
                    let text = item_text(r)?;
                    insert.push(if i == 0 { "(" } else { ", (" });
                    push_list(
                        &mut insert,
                        [
                            Arg::Int(r.try_get("id")?),
                            Arg::Text(r.try_get("subject")?),
                            Arg::Text(text),
                        ],
                    );
                    insert.push(")");
                }
                let added = rows.len() as u64;
                if added > 0 {
                    insert.into_query().execute(&mut *conn).await?;
                }
                set_counter(conn, "search_indexed", upto).await?;
                added
            }
            Backend::Postgres => {
                let sql = format!(
                    "WITH done AS (DELETE FROM search_pending WHERE item_id IN \
                     (SELECT item_id FROM search_pending ORDER BY item_id LIMIT $1 FOR UPDATE{}) \
                     RETURNING item_id) \
                     UPDATE items SET search = to_tsvector('simple', subject || ' ' || text) \
                     WHERE id IN (SELECT item_id FROM done)",
                    if skip_locked { " SKIP LOCKED" } else { "" }
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(limit)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
        };
        tx.commit().await?;
        Ok(added)
    }

    /// Indexes everything not yet in the full-text index, so a search sees every item
    /// committed before it. Usually nothing is left (the background indexer keeps up): one
    /// read says so, and the search takes no write transaction.
    pub async fn catch_up_search_index(&self) -> Result<()> {
        if !self.search_index_behind().await? {
            return Ok(());
        }
        let mut added = 0;
        loop {
            match self.index_for_search(1000, false).await? {
                0 => break,
                n => added += n,
            }
        }
        if added >= TIDY_SEARCH_QUEUE_AFTER {
            self.tidy_search_queue().await?;
        }
        Ok(())
    }

    /// True when some committed item is not yet in the full-text index.
    async fn search_index_behind(&self) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM (SELECT 1 FROM items WHERE id > \
                 COALESCE((SELECT value FROM counters WHERE name = 'search_indexed'), 0) LIMIT 1)"
            }
            Backend::Postgres => "SELECT COUNT(*) FROM (SELECT 1 FROM search_pending LIMIT 1) p",
        };
        let behind: i64 = sqlx::query_scalar(sql).fetch_one(&self.pool).await?;
        Ok(behind > 0)
    }

    /// PostgreSQL: frees the space of the index queue's deleted rows at once, after many
    /// were indexed (a bulk intake, a restore). Until autovacuum passes, every look into the
    /// queue reads them all: 1,000,000 of them made that 30–240 ms instead of 1 ms.
    /// SQLite keeps no queue.
    pub async fn tidy_search_queue(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("VACUUM search_pending")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Readies a query's full-text words: the index caught up, and on PostgreSQL the
    /// tickets found first when their words are in few items (see [`TextMatches`]).
    pub(super) async fn text_matches(&self, q: &TicketQuery) -> Result<TextMatches> {
        if q.text.is_empty() {
            return Ok(TextMatches::Condition);
        }
        self.catch_up_search_index().await?;
        if self.backend == Backend::Sqlite {
            return Ok(TextMatches::Condition);
        }
        let limit = FEW_ITEMS as i64 + 1;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "SELECT ticket_id FROM items WHERE search @@ plainto_tsquery('simple', $1) LIMIT $2",
        )
        .bind(q.text.join(" "))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        if ids.len() > FEW_ITEMS {
            return Ok(TextMatches::Condition);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(TextMatches::Tickets(ids))
    }

    pub async fn ticket_list(&self, q: &TicketQuery) -> Result<Vec<TicketSummary>> {
        let text = self.text_matches(q).await?;
        let mut sql = Sql::new(
            "SELECT t.number, t.priority, t.billable, c.number AS customer_number, \
             t.creator_address, a.login AS assignee, t.subject, qu.name AS queue, s.key AS status, \
             t.created_at, t.last_action_at FROM tickets t \
             JOIN queues qu ON qu.id = t.queue_id JOIN statuses s ON s.id = t.status_id \
             LEFT JOIN customers c ON c.id = t.customer_id LEFT JOIN agents a ON a.id = t.assignee_id \
             WHERE 1 = 1",
        );
        self.push_conditions(&mut sql, q, &text);
        sql.push(" ORDER BY t.number DESC");
        if let Some(limit) = q.limit {
            sql.push(" LIMIT ").bind(Arg::Int(limit));
        }
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(TicketSummary {
                    number: r.try_get("number")?,
                    priority: r
                        .try_get::<String, _>("priority")?
                        .parse()
                        .unwrap_or(Priority::Low),
                    billable: r.try_get::<i64, _>("billable")? != 0,
                    customer_number: r.try_get("customer_number")?,
                    creator_address: r.try_get("creator_address")?,
                    assignee: r.try_get("assignee")?,
                    subject: r.try_get("subject")?,
                    queue: r.try_get("queue")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                    last_action_at: r.try_get("last_action_at")?,
                })
            })
            .collect()
    }

    pub(super) fn push_conditions(&self, sql: &mut Sql, q: &TicketQuery, text: &TextMatches) {
        fn any_of(sql: &mut Sql, column: &str, values: impl IntoIterator<Item = Arg>) {
            sql.push(" AND ").push(column).push(" IN (");
            for (i, v) in values.into_iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(v);
            }
            sql.push(")");
        }
        if !q.numbers.is_empty() {
            any_of(sql, "t.number", q.numbers.iter().map(|n| Arg::Int(*n)));
        }
        if !q.queues.is_empty() {
            any_of(
                sql,
                "LOWER(qu.name)",
                q.queues.iter().map(|n| Arg::Text(n.to_lowercase())),
            );
        }
        if let Some(visible) = &q.visible_queues {
            if visible.is_empty() {
                sql.push(" AND 1 = 0");
            } else {
                any_of(
                    sql,
                    "LOWER(qu.name)",
                    visible.iter().map(|n| Arg::Text(n.to_lowercase())),
                );
            }
        }
        if let Some(agent) = q.mine_or_watched {
            sql.push(" AND (t.assignee_id = ")
                .bind(Arg::Int(agent))
                .push(" OR t.id IN (SELECT ticket_id FROM ticket_watchers WHERE agent_id = ")
                .bind(Arg::Int(agent))
                .push("))");
        }
        if !q.statuses.is_empty() {
            sql.push(" AND (");
            for (i, st) in q.statuses.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                match st {
                    StatusFilter::OpenLike => {
                        sql.push("s.is_closed = 0");
                    }
                    StatusFilter::ClosedLike => {
                        sql.push("s.is_closed = 1");
                    }
                    StatusFilter::Named(name) => {
                        let n = name.to_lowercase();
                        sql.push("(LOWER(s.key) = ").bind(Arg::Text(n.clone()));
                        sql.push(" OR LOWER(s.name_en) = ")
                            .bind(Arg::Text(n.clone()));
                        sql.push(" OR LOWER(s.name_de) = ")
                            .bind(Arg::Text(n))
                            .push(")");
                    }
                }
            }
            sql.push(")");
        }
        if !q.assignees.is_empty() {
            sql.push(" AND (");
            for (i, a) in q.assignees.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                match a {
                    AssigneeFilter::Login(login) => {
                        sql.push("a.login = ").bind(Arg::Text(login.clone()));
                    }
                    AssigneeFilter::Me => {
                        let me = q.me.clone().unwrap_or_default();
                        sql.push("a.login = ").bind(Arg::Text(me));
                    }
                    AssigneeFilter::Nobody => {
                        sql.push("t.assignee_id IS NULL");
                    }
                }
            }
            sql.push(")");
        }
        for tag in &q.tags {
            sql.push(" AND t.id IN (SELECT tt.ticket_id FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id WHERE LOWER(g.name) = ")
                .bind(Arg::Text(tag.to_lowercase()))
                .push(")");
        }
        if !q.priorities.is_empty() {
            any_of(
                sql,
                "t.priority",
                q.priorities.iter().map(|p| Arg::Text(p.to_string())),
            );
        }
        if !q.customers.is_empty() {
            any_of(
                sql,
                "c.number",
                q.customers.iter().map(|n| Arg::Text(n.clone())),
            );
        }
        if !q.emails.is_empty() {
            sql.push(" AND (");
            for (i, e) in q.emails.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                let e = e.trim().to_ascii_lowercase();
                sql.push("t.creator_address = ").bind(Arg::Text(e.clone()));
                sql.push(" OR t.id IN (SELECT ticket_id FROM ticket_cc WHERE address = ")
                    .bind(Arg::Text(e.clone()))
                    .push(")");
                sql.push(" OR t.id IN (SELECT ticket_id FROM items WHERE from_address = ")
                    .bind(Arg::Text(e.clone()))
                    .push(")");
                sql.push(" OR t.customer_id IN (SELECT customer_id FROM customer_emails WHERE address = ")
                    .bind(Arg::Text(e))
                    .push(")");
            }
            sql.push(")");
        }
        for s in &q.subjects {
            let pattern = format!("%{}%", like_escape(&s.to_lowercase()));
            sql.push(" AND LOWER(t.subject) LIKE ")
                .bind(Arg::Text(pattern))
                .push(" ESCAPE '\\'");
        }
        if !q.text.is_empty() {
            let words = q.text.join(" ");
            match (self.backend, text) {
                (_, TextMatches::Tickets(ids)) => {
                    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                    // As a set the planner cannot count, it takes it for a short list and
                    // looks each ticket up by id: the plan for at most FEW_ITEMS tickets.
                    // (`= ANY` of the array, counted, had it read the tickets newest first,
                    // comparing each with the whole list: 2.9 s for 1,136 ids.)
                    sql.push(" AND t.id IN (SELECT unnest(CAST(")
                        .bind(Arg::Text(format!("{{{}}}", ids.join(","))))
                        .push(" AS BIGINT[])))");
                }
                (Backend::Sqlite, TextMatches::Condition) => {
                    sql.push(" AND t.id IN (SELECT i.ticket_id FROM items_fts f JOIN items i ON i.id = f.rowid WHERE items_fts MATCH ")
                        .bind(Arg::Text(fts5_query(&words)))
                        .push(")");
                }
                (Backend::Postgres, TextMatches::Condition) => {
                    sql.push(" AND t.id IN (SELECT ticket_id FROM items WHERE search @@ plainto_tsquery('simple', ")
                        .bind(Arg::Text(words))
                        .push("))");
                }
            }
        }
        match q.due {
            Some(DueFilter::Any) => {
                sql.push(" AND t.due_date IS NOT NULL");
            }
            Some(DueFilter::Unset) => {
                sql.push(" AND t.due_date IS NULL");
            }
            Some(DueFilter::Overdue) => {
                let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
                sql.push(" AND s.is_closed = 0 AND t.due_date < ")
                    .bind(Arg::Text(today));
            }
            None => {}
        }
        if let Some(b) = q.billable {
            sql.push(" AND t.billable = ").bind(Arg::Int(flag(b)));
        }
        if let Some(since) = q.created_since {
            sql.push(" AND t.created_at >= ").bind(Arg::Int(since));
        }
        if let Some(until) = q.created_until {
            sql.push(" AND t.created_at < ").bind(Arg::Int(until));
        }
    }

    pub async fn ticket_show(&self, number: i64) -> Result<TicketDetail> {
        let row = sqlx::query(
            "SELECT t.id, t.number, t.subject, qu.name AS queue, a.login AS assignee, s.key AS status, \
             t.priority, t.due_date, t.billable, t.customer_id, t.creator_address, t.document_id, \
             t.spoof_suspect, m.number AS merged_into, t.version, t.created_at, t.last_action_at \
             FROM tickets t JOIN queues qu ON qu.id = t.queue_id JOIN statuses s ON s.id = t.status_id \
             LEFT JOIN agents a ON a.id = t.assignee_id LEFT JOIN tickets m ON m.id = t.merged_into_id \
             WHERE t.number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no ticket #{number}")))?;
        let id: i64 = row.try_get("id")?;
        let customer_id: Option<i64> = row.try_get("customer_id")?;
        let customer = match customer_id {
            Some(cid) => {
                let number: Option<String> =
                    sqlx::query_scalar("SELECT number FROM customers WHERE id = $1")
                        .bind(cid)
                        .fetch_optional(&self.pool)
                        .await?;
                match number {
                    Some(n) => self.customer(&n).await?,
                    None => None,
                }
            }
            None => None,
        };
        let document = match row.try_get::<Option<i64>, _>("document_id")? {
            Some(did) => sqlx::query(
                "SELECT number, kind, date, customer_number, description FROM documents WHERE id = $1",
            )
            .bind(did)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(document_from_row)
            .transpose()?,
            None => None,
        };
        let strings = |sql: &'static str| {
            let pool = self.pool.clone();
            async move {
                let v: Vec<String> = sqlx::query_scalar(sql).bind(id).fetch_all(&pool).await?;
                Ok::<_, StoreError>(v)
            }
        };
        let cc =
            strings("SELECT address FROM ticket_cc WHERE ticket_id = $1 ORDER BY address").await?;
        let tags = strings(
            "SELECT g.name FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id WHERE tt.ticket_id = $1 ORDER BY g.name",
        )
        .await?;
        let watchers = strings(
            "SELECT a.login FROM ticket_watchers w JOIN agents a ON a.id = w.agent_id WHERE w.ticket_id = $1 ORDER BY a.login",
        )
        .await?;
        let item_rows = sqlx::query(
            "SELECT i.id, i.kind, a.login AS agent, i.from_address, i.to_addrs, i.cc_addrs, i.subject, \
             i.date, i.message_id, i.text, i.problems, \
             CASE WHEN i.body_from_raw = 1 THEN i.raw END AS body_raw \
             FROM items i LEFT JOIN agents a ON a.id = i.agent_id \
             WHERE i.ticket_id = $1 ORDER BY i.date, i.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(item_rows.len());
        for r in &item_rows {
            let item_id: i64 = r.try_get("id")?;
            let attachments = sqlx::query(
                "SELECT name, content_type, size, sha256 FROM attachments WHERE item_id = $1 ORDER BY id",
            )
            .bind(item_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|a| {
                Ok(AttachmentInfo {
                    name: a.try_get("name")?,
                    content_type: a.try_get("content_type")?,
                    size: a.try_get("size")?,
                    sha256: a.try_get("sha256")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            let split = |s: String| -> Vec<String> {
                s.split(", ")
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            items.push(ItemDetail {
                id: item_id,
                kind: r.try_get::<String, _>("kind")?.parse().map_err(
                    |e: crate::core::model::UnknownWord| StoreError::Invalid(e.to_string()),
                )?,
                agent: r.try_get("agent")?,
                from: r.try_get("from_address")?,
                to: split(r.try_get("to_addrs")?),
                cc: split(r.try_get("cc_addrs")?),
                subject: r.try_get("subject")?,
                date: r.try_get("date")?,
                message_id: r.try_get("message_id")?,
                text: item_text(r)?,
                attachments,
                problems: r
                    .try_get::<String, _>("problems")?
                    .lines()
                    .map(str::to_string)
                    .collect(),
            });
        }
        let history = sqlx::query(
            "SELECT at, actor, field, old_value, new_value FROM history WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|h| {
            Ok(HistoryEntry {
                at: h.try_get("at")?,
                actor: h.try_get("actor")?,
                field: h.try_get("field")?,
                old: h.try_get("old_value")?,
                new: h.try_get("new_value")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let other_tickets: Vec<i64> = match customer_id {
            Some(cid) => sqlx::query_scalar(
                "SELECT number FROM tickets WHERE customer_id = $1 AND id <> $2 ORDER BY number",
            )
            .bind(cid)
            .bind(id)
            .fetch_all(&self.pool)
            .await?,
            None => Vec::new(),
        };
        Ok(TicketDetail {
            number: row.try_get("number")?,
            subject: row.try_get("subject")?,
            queue: row.try_get("queue")?,
            assignee: row.try_get("assignee")?,
            status: row.try_get("status")?,
            priority: row
                .try_get::<String, _>("priority")?
                .parse()
                .unwrap_or(Priority::Low),
            due_date: row.try_get("due_date")?,
            billable: row.try_get::<i64, _>("billable")? != 0,
            customer,
            creator_address: row.try_get("creator_address")?,
            cc,
            tags,
            watchers,
            document,
            spoof_suspect: row.try_get::<i64, _>("spoof_suspect")? != 0,
            merged_into: row.try_get("merged_into")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            last_action_at: row.try_get("last_action_at")?,
            items,
            history,
            other_tickets,
        })
    }

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

    pub async fn stats(&self, now: i64) -> Result<Stats> {
        self.stats_in(now, None).await
    }

    /// The statistics over the tickets of `queues` (by name; `None` for every queue).
    pub async fn stats_in(&self, now: i64, queues: Option<&[String]>) -> Result<Stats> {
        let pairs = |rows: Vec<AnyRow>| -> Result<Vec<(String, i64)>> {
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
                .collect()
        };
        // The tickets counted: `t` joined to their queue `q`.
        let only = |sql: &mut Sql, column: &str| {
            if let Some(names) = queues {
                sql.push(" AND LOWER(").push(column).push(") IN ('', ");
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(Arg::Text(n.to_lowercase()));
                }
                sql.push(")");
            }
        };
        let mut sql = Sql::new(
            "SELECT q.name, COUNT(t.id) FROM queues q LEFT JOIN tickets t ON t.queue_id = q.id \
             WHERE 1 = 1",
        );
        only(&mut sql, "q.name");
        sql.push(" GROUP BY q.name ORDER BY q.name");
        let per_queue = pairs(sql.query().fetch_all(&self.pool).await?)?;
        let mut sql = Sql::new(
            "SELECT s.key, COUNT(t.id) FROM statuses s LEFT JOIN (SELECT t.id, t.status_id \
             FROM tickets t JOIN queues q ON q.id = t.queue_id WHERE 1 = 1",
        );
        only(&mut sql, "q.name");
        sql.push(
            ") t ON t.status_id = s.id GROUP BY s.key, s.position, s.id ORDER BY s.position, s.id",
        );
        let per_status = pairs(sql.query().fetch_all(&self.pool).await?)?;
        let today = now - now.rem_euclid(86_400);
        let first_day = today - 6 * 86_400;
        let mut sql = Sql::new(
            "SELECT t.created_at FROM tickets t JOIN queues q ON q.id = t.queue_id \
             WHERE t.created_at >= ",
        );
        sql.bind(Arg::Int(first_day));
        only(&mut sql, "q.name");
        let created: Vec<i64> = sql
            .query()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let mut opened_per_day = Vec::with_capacity(7);
        for d in 0..7 {
            let start = first_day + d * 86_400;
            let count = created
                .iter()
                .filter(|c| **c >= start && **c < start + 86_400)
                .count() as i64;
            let day = chrono::DateTime::from_timestamp(start, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            opened_per_day.push((day, count));
        }
        let total = per_queue.iter().map(|(_, n)| n).sum();
        Ok(Stats {
            per_queue,
            per_status,
            opened_per_day,
            total,
        })
    }

    /// Every POP3 UIDL of a queue already handled (taken or left as too large).
    pub async fn pop3_uidls(&self, queue_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT uidl, state FROM pop3_uidls WHERE queue_id = $1")
            .bind(queue_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("uidl")?, r.try_get("state")?)))
            .collect()
    }

    /// Forgets UIDLs no longer in the upstream mailbox (deleted there for good).
    pub async fn pop3_forget_except(&self, queue_id: i64, present: &[String]) -> Result<u64> {
        let known = self.pop3_uidls(queue_id).await?;
        let present: std::collections::HashSet<&str> = present.iter().map(String::as_str).collect();
        let mut removed = 0;
        for (uidl, _) in known.iter().filter(|(u, _)| !present.contains(u.as_str())) {
            removed += sqlx::query("DELETE FROM pop3_uidls WHERE queue_id = $1 AND uidl = $2")
                .bind(queue_id)
                .bind(uidl.clone())
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}

/// `LIKE` pattern escaping with `\`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Every word quoted, so user input can never be FTS5 syntax.
/// An item's text from a row with `text` and `body_raw` (the raw mail when the body is
/// kept only there, see `NewItem::body_in_raw`).
pub(super) fn item_text(r: &AnyRow) -> Result<String> {
    Ok(match r.try_get::<Option<Vec<u8>>, _>("body_raw")? {
        Some(raw) => mail::parse(&raw).text,
        None => r.try_get("text")?,
    })
}

fn fts5_query(text: &str) -> String {
    text.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
        assert_eq!(
            fts5_query("foo \"bar\" OR"),
            "\"foo\" \"\"\"bar\"\"\" \"OR\""
        );
    }
}
