//! The agents' mailbox: the UIDs of the tickets' messages, which tickets a folder shows,
//! per-agent `\Seen`, the POP3 view, and the messages clients keep in their own folders.
//!
//! A ticket's message has a UID from one gateway-wide counter. Every change of the ticket
//! clears it ([`Store::list_tickets`] gives the next one), so a changed ticket shows
//! as a new message, UIDs only grow and none is used twice, and one UIDVALIDITY serves every
//! folder. The agents' own folders draw their UIDs from the same counter.
use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::Row;

use super::{
    Actor, Arg, Backend, Field, Result, Sql, Store, StoreError, TicketQuery, flag, set_counter,
};
use crate::core::model::{Priority, TicketDetail};
use crate::core::texts::Locale;
use crate::core::ticket_message::TicketHead;

/// One message of a folder of tickets, with what its flags are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTicket {
    pub uid: u32,
    pub ticket_id: i64,
    pub priority: Priority,
    pub billable: bool,
    pub delivery_block: bool,
    /// The newest item is a reply.
    pub answered: bool,
    /// Sorted by name.
    pub tags: Vec<String>,
    pub last_action_at: i64,
    /// The rendered message's size, once known.
    pub size: Option<i64>,
}

/// A ticket's message as the lister takes it down with its new UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub ticket_id: i64,
    /// The ticket's version the header shows.
    pub version: i64,
    pub header: String,
    pub answered: bool,
    pub tags: Vec<String>,
}

/// A change of a ticket a mail client asks for by flags or by moving its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketEdit {
    Priority(Priority),
    Billable(bool),
    AddTag(String),
    RemoveTag(String),
    /// Into the queue of this name.
    Queue(String),
    /// To the status with this key.
    Status(String),
    /// To this agent (id, login), or to nobody.
    Assign(Option<(i64, String)>),
}

/// A message a mail client stored in one of the agent's own folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub size: i64,
}

fn uid(value: i64) -> Result<u32> {
    u32::try_from(value)
        .ok()
        .filter(|&u| u > 0)
        .ok_or_else(|| StoreError::Invalid(format!("mailbox UID {value} out of range")))
}

impl Store {
    /// The UIDVALIDITY of every folder, fixed when the database was created.
    pub async fn mailbox_uidvalidity(&self) -> Result<u32> {
        let v: i64 =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'mailbox_uidvalidity'")
                .fetch_one(&self.pool)
                .await?;
        uid(v)
    }

    /// The highest UID given so far (0 before the first): it moves whenever a ticket's
    /// message is replaced or a client stores a message.
    pub async fn mailbox_last_uid(&self) -> Result<i64> {
        let last = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'mailbox_uid'")
            .fetch_one(&self.pool)
            .await?;
        self.uid_seen(last);
        Ok(last)
    }

    /// The mailbox's last UID, told whenever it grows: at once when this process took the
    /// UID, and through [`Store::follow_mailbox_uids`] when another instance (or process)
    /// did. IDLE sessions wait on it instead of asking the database.
    pub fn mailbox_uids(&self) -> tokio::sync::watch::Receiver<i64> {
        self.uids.subscribe()
    }

    fn uid_seen(&self, last: i64) {
        self.uids.send_if_modified(|known| {
            let grew = last > *known;
            if grew {
                *known = last;
            }
            grew
        });
    }

    /// Keeps [`Store::mailbox_uids`] current with the UIDs other instances take, until
    /// `stop` completes. On PostgreSQL they tell of each at its commit (`LISTEN`, see
    /// `notify_uid`). Besides, the counter is read every few seconds: that covers news lost
    /// while the listening connection was down, and UIDs taken by another process on
    /// SQLite.
    pub async fn follow_mailbox_uids(&self, stop: impl std::future::Future<Output = ()>) {
        const READ_EVERY: Duration = Duration::from_secs(5);
        tokio::pin!(stop);
        let mut listener = None;
        loop {
            if let (Some(url), None) = (&self.url, &listener) {
                match sqlx::postgres::PgListener::connect(url).await {
                    Ok(mut l) => match l.listen(UID_CHANNEL).await {
                        Ok(()) => listener = Some(l),
                        Err(e) => tracing::warn!(error = %e, "cannot listen for mailbox news"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot listen for mailbox news"),
                }
            }
            if let Err(e) = self.mailbox_last_uid().await {
                tracing::debug!(error = %e, "cannot read the mailbox's last UID");
            }
            let deadline = tokio::time::Instant::now() + READ_EVERY;
            loop {
                let news = async {
                    match listener.as_mut() {
                        Some(l) => l.try_recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    news = news => match news {
                        Ok(Some(n)) => {
                            if let Ok(last) = n.payload().parse() {
                                self.uid_seen(last);
                            }
                        }
                        // The connection was lost and is made again: read what was missed.
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for mailbox news failed");
                            listener = None;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Up to `limit` tickets whose message waits for its new UID, oldest first.
    pub async fn unlisted_tickets(&self, limit: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM tickets WHERE mailbox_uid IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Gives these tickets' messages their new UIDs, in the order given, and takes down what
    /// the listing shows of them; returns how many were listed. A ticket changed since its
    /// header was rendered (another version) is left for the next round. The counter row
    /// stays locked until commit, so UIDs become visible in the order they were given (a
    /// client that saw UID n never later finds a new message below n).
    pub async fn list_tickets(&self, listings: &[Listing]) -> Result<usize> {
        if listings.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let last: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + $1 WHERE name = 'mailbox_uid' RETURNING value",
        )
        .bind(listings.len() as i64)
        .fetch_one(&mut *conn)
        .await?;
        let first = last - listings.len() as i64 + 1;
        uid(last)?;
        let mut listed = 0;
        match self.backend {
            // One prepared statement per ticket: SQLite plans `UPDATE … FROM (VALUES …)`
            // with bound values as a scan of every ticket per value (seconds per batch).
            Backend::Sqlite => {
                for (i, l) in listings.iter().enumerate() {
                    listed += sqlx::query(
                        "UPDATE tickets SET mailbox_uid = $1, mailbox_size = NULL, \
                         mailbox_header = $2, mailbox_answered = $3, mailbox_tags = $4 \
                         WHERE id = $5 AND version = $6 AND mailbox_uid IS NULL",
                    )
                    .bind(first + i as i64)
                    .bind(l.header.clone())
                    .bind(flag(l.answered))
                    .bind(l.tags.join("\n"))
                    .bind(l.ticket_id)
                    .bind(l.version)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected() as usize;
                }
            }
            // One statement per 400 tickets; `columnN` name the VALUES columns.
            Backend::Postgres => {
                for (n, chunk) in listings.chunks(400).enumerate() {
                    let mut sql = Sql::new(
                        "UPDATE tickets SET mailbox_uid = v.column3, mailbox_size = NULL, \
                         mailbox_header = v.column4, mailbox_answered = v.column5, \
                         mailbox_tags = v.column6 FROM (VALUES ",
                    );
                    for (i, l) in chunk.iter().enumerate() {
                        if i > 0 {
                            sql.push(", ");
                        }
                        let uid = first + (n * 400 + i) as i64;
                        sql.push("(").bind(Arg::Int(l.ticket_id)).push(", ");
                        sql.bind(Arg::Int(l.version)).push(", ");
                        sql.bind(Arg::Int(uid)).push(", ");
                        sql.bind(Arg::Text(l.header.clone())).push(", ");
                        sql.bind(Arg::Int(flag(l.answered))).push(", ");
                        sql.bind(Arg::Text(l.tags.join("\n"))).push(")");
                    }
                    sql.push(
                        ") AS v WHERE tickets.id = v.column1 AND tickets.version = v.column2 \
                         AND tickets.mailbox_uid IS NULL",
                    );
                    listed += sql.query().execute(&mut *conn).await?.rows_affected() as usize;
                }
            }
        }
        notify_uid(conn, self.backend, last).await?;
        tx.commit().await?;
        self.uid_seen(last);
        Ok(listed)
    }

    /// Lists every ticket again (new UIDs, headers rendered anew) unless `form` is the form
    /// of header the tickets were listed with; true when it did.
    pub async fn relist_unless(&self, form: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'mailbox_header_form'")
                .fetch_optional(&mut *conn)
                .await?;
        if known == Some(form) {
            return Ok(false);
        }
        sqlx::query("UPDATE tickets SET mailbox_uid = NULL WHERE mailbox_uid IS NOT NULL")
            .execute(&mut *conn)
            .await?;
        set_counter(conn, "mailbox_header_form", form).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The header blocks of these listed tickets' messages (ticket id → header).
    pub async fn mailbox_headers(&self, ids: &[i64]) -> Result<HashMap<i64, String>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            // Packed into one row as in `folder_tickets`: `id header`, separated by U+001E,
            // which the rendered header (7-bit, encoded words) never holds.
            let mut sql = Sql::for_backend(
                self.backend,
                "SELECT string_agg(id || ' ' || mailbox_header, '\u{1e}') FROM tickets \
                 WHERE mailbox_header IS NOT NULL AND id IN (",
            );
            push_ids(&mut sql, chunk);
            let packed: Option<String> = sql.query().fetch_one(&self.pool).await?.try_get(0)?;
            for entry in packed.as_deref().unwrap_or_default().split('\u{1e}') {
                if let Some((id, header)) = entry.split_once(' ')
                    && let Ok(id) = id.parse()
                {
                    out.insert(id, header.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The listed tickets `q` selects, in UID order.
    pub async fn folder_tickets(&self, q: &TicketQuery) -> Result<Vec<ListedTicket>> {
        let text = self.text_matches(q).await?;
        // Each ticket as one line of text, one row per PACKED tickets: the driver's cost of a
        // row (a decoded row and a channel hand-over) was most of a SELECT over a large
        // folder; as text it is the database's own time, and no row holds more than a few
        // hundred KB. `string_agg(… ORDER BY …)`: PostgreSQL, and SQLite since 3.44.
        let mut sql = Sql::new(
            "SELECT string_agg(t.mailbox_uid || ' ' || t.id || ' ' || t.priority || ' ' || \
             t.billable || ' ' || COALESCE(c.delivery_block, 0) || ' ' || t.last_action_at || ' ' || \
             COALESCE(CAST(t.mailbox_size AS TEXT), '-') || ' ' || t.mailbox_answered || ' ' || \
             REPLACE(t.mailbox_tags, '\n', '\u{1f}'), '\n' ORDER BY t.mailbox_uid) \
             FROM tickets t \
             JOIN queues qu ON qu.id = t.queue_id JOIN statuses s ON s.id = t.status_id \
             LEFT JOIN customers c ON c.id = t.customer_id LEFT JOIN agents a ON a.id = t.assignee_id \
             WHERE t.mailbox_uid IS NOT NULL",
        );
        self.push_conditions(&mut sql, q, &text);
        sql.push(" GROUP BY t.mailbox_uid / ")
            .push(PACKED)
            .push(" ORDER BY t.mailbox_uid / ")
            .push(PACKED);
        let mut rows = sql.query().fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let packed: String = r.try_get(0)?;
            for line in packed.split('\n') {
                out.push(listed(line).ok_or_else(|| {
                    StoreError::Invalid(format!("a listed ticket reads {line:?}"))
                })?);
            }
        }
        Ok(out)
    }

    /// The header data of these tickets' messages (ticket id → head), status names in
    /// `locale`.
    pub async fn ticket_heads(
        &self,
        ids: &[i64],
        locale: Locale,
    ) -> Result<HashMap<i64, TicketHead>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut sql = Sql::for_backend(
                self.backend,
                "SELECT t.id, t.number, t.version, t.subject, qu.name AS queue, \
                 qu.address AS queue_address, t.creator_address, c.first_name, c.last_name, \
                 c.company1, s.name_en, s.name_de, t.priority, a.login AS assignee, t.due_date, \
                 t.billable, c.number AS customer_number, COALESCE(c.delivery_block, 0) AS blocked, \
                 t.created_at, t.last_action_at, \
                 (SELECT MAX(i.id) FROM items i WHERE i.ticket_id = t.id) AS last_item, \
                 (SELECT i.kind FROM items i WHERE i.ticket_id = t.id \
                  ORDER BY i.date DESC, i.id DESC LIMIT 1) AS last_kind \
                 FROM tickets t JOIN queues qu ON qu.id = t.queue_id \
                 JOIN statuses s ON s.id = t.status_id \
                 LEFT JOIN customers c ON c.id = t.customer_id \
                 LEFT JOIN agents a ON a.id = t.assignee_id WHERE t.id IN (",
            );
            push_ids(&mut sql, chunk);
            let rows = sql.query().fetch_all(&self.pool).await?;
            let mut sql = Sql::for_backend(
                self.backend,
                "SELECT tt.ticket_id, g.name FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id \
                 WHERE tt.ticket_id IN (",
            );
            push_ids(&mut sql, chunk);
            let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
            for r in sql.query().fetch_all(&self.pool).await? {
                tags.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
            }
            for r in &rows {
                let id: i64 = r.try_get("id")?;
                let first: Option<String> = r.try_get("first_name")?;
                let last: Option<String> = r.try_get("last_name")?;
                let company: Option<String> = r.try_get("company1")?;
                let person = format!(
                    "{} {}",
                    first.unwrap_or_default().trim(),
                    last.unwrap_or_default().trim()
                )
                .trim()
                .to_string();
                let customer_name = if person.is_empty() {
                    company.unwrap_or_default().trim().to_string()
                } else {
                    person
                };
                let mut tags = tags.remove(&id).unwrap_or_default();
                tags.sort();
                out.insert(
                    id,
                    TicketHead {
                        number: r.try_get("number")?,
                        version: r.try_get("version")?,
                        last_item_id: r.try_get::<Option<i64>, _>("last_item")?.unwrap_or(0),
                        answered: r.try_get::<Option<String>, _>("last_kind")?.as_deref()
                            == Some("reply"),
                        subject: r.try_get("subject")?,
                        queue: r.try_get("queue")?,
                        queue_address: r.try_get("queue_address")?,
                        customer_name,
                        from_address: r.try_get("creator_address")?,
                        status: match locale {
                            Locale::En => r.try_get("name_en")?,
                            Locale::De => r.try_get("name_de")?,
                        },
                        priority: r
                            .try_get::<String, _>("priority")?
                            .parse()
                            .unwrap_or(Priority::Low),
                        assignee: r.try_get("assignee")?,
                        tags,
                        due_date: r.try_get("due_date")?,
                        billable: r.try_get::<i64, _>("billable")? != 0,
                        customer_number: r.try_get("customer_number")?,
                        delivery_block: r.try_get::<i64, _>("blocked")? != 0,
                        created_at: r.try_get("created_at")?,
                        last_action_at: r.try_get("last_action_at")?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// What a ticket's whole message is rendered from: the ticket with its items, history
    /// and other tickets, and each item's attachments' bytes (in the order of
    /// `ItemDetail::attachments`; `None` where the raw mail no longer yields one).
    pub async fn ticket_message_input(
        &self,
        ticket_id: i64,
    ) -> Result<(TicketDetail, Vec<Vec<Vec<u8>>>)> {
        let number: i64 = sqlx::query_scalar("SELECT number FROM tickets WHERE id = $1")
            .bind(ticket_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no ticket with id {ticket_id}")))?;
        let detail = self.ticket_show(number).await?;
        let mut bytes = Vec::with_capacity(detail.items.len());
        for item in &detail.items {
            if item.attachments.is_empty() {
                bytes.push(Vec::new());
                continue;
            }
            let part_ids: Vec<i64> = sqlx::query_scalar(
                "SELECT part_id FROM attachments WHERE item_id = $1 ORDER BY id",
            )
            .bind(item.id)
            .fetch_all(&self.pool)
            .await?;
            let raw: Vec<u8> = sqlx::query_scalar("SELECT raw FROM items WHERE id = $1")
                .bind(item.id)
                .fetch_one(&self.pool)
                .await?;
            let ids: Vec<u32> = part_ids.iter().map(|&p| p as u32).collect();
            bytes.push(
                crate::core::mail::part_bytes(&raw, &ids)
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
            );
        }
        Ok((detail, bytes))
    }

    /// The reply templates with their ids: (id, name, body), by name.
    pub async fn templates_with_ids(&self) -> Result<Vec<(i64, String, String)>> {
        let rows = sqlx::query("SELECT id, name, body FROM templates ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Changes a ticket as a mail client asked (flags, moves), each change logged with
    /// `actor`. Unknown tags are skipped; a queue or status that does not exist is refused.
    pub async fn mailbox_edit(
        &self,
        ticket_id: i64,
        edits: &[TicketEdit],
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let t = tx.ticket_by_id(ticket_id).await?;
        tx.ticket_version(ticket_id).await?;
        let fields = tx.ticket_fields(&t).await?;
        for edit in edits {
            match edit {
                TicketEdit::Priority(p) => {
                    let old = fields.priority.to_string();
                    tx.set_field(
                        ticket_id,
                        Field::Priority,
                        Arg::Text(p.to_string()),
                        (&old, p.as_str()),
                        actor,
                    )
                    .await?;
                }
                TicketEdit::Billable(b) => {
                    let (old, new) = (yes_no(fields.billable), yes_no(*b));
                    tx.set_field(
                        ticket_id,
                        Field::Billable,
                        Arg::Int(flag(*b)),
                        (old, new),
                        actor,
                    )
                    .await?;
                }
                TicketEdit::AddTag(name) | TicketEdit::RemoveTag(name) => {
                    let found = tx.tags_by_names(std::slice::from_ref(name)).await?;
                    if let Some((id, name)) = found.get(&name.to_lowercase()) {
                        if matches!(edit, TicketEdit::AddTag(_)) {
                            tx.add_tag(ticket_id, (*id, name), actor).await?;
                        } else {
                            tx.remove_tag(ticket_id, (*id, name), actor).await?;
                        }
                    }
                }
                TicketEdit::Queue(name) => {
                    let queues = tx.queues().await?;
                    let q = queues
                        .iter()
                        .find(|q| q.name.eq_ignore_ascii_case(name))
                        .ok_or_else(|| StoreError::NotFound(format!("no queue {name:?}")))?;
                    let new = if q.id == t.queue_id {
                        &t.queue_name
                    } else {
                        &q.name
                    };
                    tx.set_field(
                        ticket_id,
                        Field::Queue,
                        Arg::Int(q.id),
                        (&t.queue_name, new),
                        actor,
                    )
                    .await?;
                }
                TicketEdit::Assign(agent) => {
                    let current = tx.ticket_by_id(ticket_id).await?;
                    let agent = agent.as_ref().map(|(id, login)| (*id, login.as_str()));
                    tx.set_assignee(&current, agent, actor).await?;
                }
                TicketEdit::Status(key) => {
                    let current = tx.ticket_by_id(ticket_id).await?;
                    if current.status_key != *key {
                        tx.set_status(&current, key, actor).await?;
                    }
                }
            }
        }
        tx.commit().await
    }

    /// The current message UIDs of these tickets (those listed).
    pub async fn ticket_uids(&self, ids: &[i64]) -> Result<HashMap<i64, u32>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut sql = Sql::for_backend(
                self.backend,
                "SELECT id, mailbox_uid FROM tickets WHERE mailbox_uid IS NOT NULL AND id IN (",
            );
            push_ids(&mut sql, chunk);
            for r in sql.query().fetch_all(&self.pool).await? {
                out.insert(r.try_get(0)?, uid(r.try_get(1)?)?);
            }
        }
        Ok(out)
    }

    /// The UID and date of an agent's statistics message showing numbers with `digest`:
    /// the same as before while the numbers stay, a new UID (and date) when they change.
    pub async fn statistics_uid(&self, agent_id: i64, digest: i64, now: i64) -> Result<(u32, i64)> {
        let names = [
            format!("statistics.{agent_id}.digest"),
            format!("statistics.{agent_id}.uid"),
            format!("statistics.{agent_id}.at"),
        ];
        let read = |rows: Vec<sqlx::any::AnyRow>| -> Result<HashMap<String, i64>> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
        let select = "SELECT name, value FROM counters WHERE name IN ($1, $2, $3)";
        let known = read(
            sqlx::query(select)
                .bind(names[0].clone())
                .bind(names[1].clone())
                .bind(names[2].clone())
                .fetch_all(&self.pool)
                .await?,
        )?;
        if known.get(&names[0]) == Some(&digest)
            && let (Some(&u), Some(&at)) = (known.get(&names[1]), known.get(&names[2]))
        {
            return Ok((uid(u)?, at));
        }
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let next: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'mailbox_uid' RETURNING value",
        )
        .fetch_one(&mut *conn)
        .await?;
        for (name, value) in names.iter().zip([digest, next, now]) {
            set_counter(conn, name, value).await?;
        }
        notify_uid(conn, self.backend, next).await?;
        tx.commit().await?;
        self.uid_seen(next);
        Ok((uid(next)?, now))
    }

    /// Remembers the rendered size of a ticket's message, while it still has that UID.
    /// A cache: written without waiting for the disk (SQLite), a lost one is computed again.
    pub async fn mailbox_set_size(&self, ticket_id: i64, uid: u32, size: i64) -> Result<()> {
        sqlx::query("UPDATE tickets SET mailbox_size = $1 WHERE id = $2 AND mailbox_uid = $3")
            .bind(size)
            .bind(ticket_id)
            .bind(i64::from(uid))
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    /// Of the agent's seen messages, ticket id → the UID seen.
    pub async fn mailbox_seen(&self, agent_id: i64) -> Result<HashMap<i64, u32>> {
        let rows = sqlx::query("SELECT ticket_id, uid FROM mailbox_seen WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, uid(r.try_get(1)?)?)))
            .collect()
    }

    /// Sets or clears `\Seen` of these messages (ticket id, UID) for the agent.
    pub async fn mailbox_set_seen(
        &self,
        agent_id: i64,
        messages: &[(i64, u32)],
        seen: bool,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        for &(ticket_id, uid) in messages {
            if seen {
                sqlx::query(
                    "INSERT INTO mailbox_seen (agent_id, ticket_id, uid) VALUES ($1, $2, $3) \
                     ON CONFLICT (agent_id, ticket_id) DO UPDATE SET uid = excluded.uid",
                )
                .bind(agent_id)
                .bind(ticket_id)
                .bind(i64::from(uid))
                .execute(&mut *conn)
                .await?;
            } else {
                sqlx::query("DELETE FROM mailbox_seen WHERE agent_id = $1 AND ticket_id = $2")
                    .bind(agent_id)
                    .bind(ticket_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// The ticket messages the agent deleted from their POP3 view: ticket id → UID.
    pub async fn pop3_fetched(&self, agent_id: i64) -> Result<HashMap<i64, u32>> {
        let rows = sqlx::query("SELECT ticket_id, uid FROM pop3_fetched WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, uid(r.try_get(1)?)?)))
            .collect()
    }

    /// Hides these ticket messages (ticket id, UID) from the agent's POP3 view (and no one
    /// else's); a ticket's next message shows again.
    pub async fn pop3_mark_fetched(&self, agent_id: i64, messages: &[(i64, u32)]) -> Result<()> {
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        for &(ticket_id, uid) in messages {
            sqlx::query(
                "INSERT INTO pop3_fetched (agent_id, ticket_id, uid) VALUES ($1, $2, $3) \
                 ON CONFLICT (agent_id, ticket_id) DO UPDATE SET uid = excluded.uid",
            )
            .bind(agent_id)
            .bind(ticket_id)
            .bind(i64::from(uid))
            .execute(&mut *conn)
            .await?;
        }
        tx.commit().await
    }

    /// The messages of one of the agent's own folders (`drafts`, `sent`, `trash`), in UID
    /// order.
    pub async fn own_messages(&self, agent_id: i64, folder: &str) -> Result<Vec<OwnMessage>> {
        let rows = sqlx::query(
            "SELECT uid, flags, internal_date, LENGTH(raw) AS size FROM mailbox_messages \
             WHERE agent_id = $1 AND folder = $2 ORDER BY uid",
        )
        .bind(agent_id)
        .bind(folder.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OwnMessage {
                    uid: uid(r.try_get("uid")?)?,
                    flags: split_flags(&r.try_get::<String, _>("flags")?),
                    internal_date: r.try_get("internal_date")?,
                    size: r.try_get("size")?,
                })
            })
            .collect()
    }

    /// The bytes of a message in one of the agent's own folders.
    pub async fn own_message_raw(&self, agent_id: i64, uid: u32) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT raw FROM mailbox_messages WHERE agent_id = $1 AND uid = $2")
                .bind(agent_id)
                .bind(i64::from(uid))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a message in one of the agent's own folders; returns its UID.
    pub async fn own_append(
        &self,
        agent_id: i64,
        folder: &str,
        flags: &[String],
        internal_date: i64,
        raw: &[u8],
    ) -> Result<u32> {
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let next: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'mailbox_uid' RETURNING value",
        )
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO mailbox_messages (agent_id, folder, uid, flags, internal_date, raw) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(agent_id)
        .bind(folder.to_string())
        .bind(next)
        .bind(flags.join(" "))
        .bind(internal_date)
        .bind(raw.to_vec())
        .execute(&mut *conn)
        .await?;
        notify_uid(conn, self.backend, next).await?;
        tx.commit().await?;
        self.uid_seen(next);
        uid(next)
    }

    /// Replaces the flags of a message in one of the agent's own folders.
    pub async fn own_set_flags(&self, agent_id: i64, uid: u32, flags: &[String]) -> Result<()> {
        sqlx::query("UPDATE mailbox_messages SET flags = $1 WHERE agent_id = $2 AND uid = $3")
            .bind(flags.join(" "))
            .bind(agent_id)
            .bind(i64::from(uid))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes messages from the agent's own folders for good (EXPUNGE).
    pub async fn own_delete(&self, agent_id: i64, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        for chunk in uids.chunks(500) {
            let mut sql = Sql::for_backend(
                self.backend,
                "DELETE FROM mailbox_messages WHERE agent_id = ",
            );
            sql.bind(Arg::Int(agent_id)).push(" AND uid IN (");
            for (i, u) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(Arg::Int(i64::from(*u)));
            }
            sql.push(")");
            sql.query().execute(&mut *conn).await?;
        }
        tx.commit().await
    }
}

/// How many listed tickets a row of [`Store::folder_tickets`] packs.
const PACKED: &str = "4096";

/// A listed ticket from its packed line: UID, id, priority, billable, delivery block, last
/// action, size or `-`, answered, then the tags separated by U+001F.
fn listed(line: &str) -> Option<ListedTicket> {
    let mut f = line.splitn(9, ' ');
    let int = |f: &mut std::str::SplitN<'_, char>| f.next()?.parse::<i64>().ok();
    let uid = u32::try_from(int(&mut f)?).ok()?;
    let ticket_id = int(&mut f)?;
    let priority = f.next()?.parse().unwrap_or(Priority::Low);
    let billable = int(&mut f)? != 0;
    let delivery_block = int(&mut f)? != 0;
    let last_action_at = int(&mut f)?;
    let size = match f.next()? {
        "-" => None,
        n => Some(n.parse().ok()?),
    };
    let answered = int(&mut f)? != 0;
    let tags = f
        .next()
        .unwrap_or_default()
        .split('\u{1f}')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    Some(ListedTicket {
        uid,
        ticket_id,
        priority,
        billable,
        delivery_block,
        answered,
        tags,
        last_action_at,
        size,
    })
}

fn push_ids(sql: &mut Sql, ids: &[i64]) {
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(Arg::Int(*id));
    }
    sql.push(")");
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn split_flags(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(str::to_string).collect()
}

/// The PostgreSQL channel on which instances tell each other of the mailbox's last UID.
const UID_CHANNEL: &str = "mticket_mailbox";

/// PostgreSQL: tells every instance listening (see [`Store::follow_mailbox_uids`]) of the
/// mailbox's new last UID when the transaction commits.
async fn notify_uid(conn: &mut sqlx::AnyConnection, backend: Backend, last: i64) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(UID_CHANNEL.to_string())
            .bind(last.to_string())
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_line_gives_the_listed_ticket() {
        let t = listed("17 4 high 1 0 1700000000 - 1 new customer\u{1f}vip").unwrap();
        assert_eq!(
            t,
            ListedTicket {
                uid: 17,
                ticket_id: 4,
                priority: Priority::High,
                billable: true,
                delivery_block: false,
                answered: true,
                tags: vec!["new customer".into(), "vip".into()],
                last_action_at: 1_700_000_000,
                size: None,
            }
        );
        let t = listed("18 5 low 0 1 1700000001 5120 0 ").unwrap();
        assert_eq!(
            (t.size, t.delivery_block, t.tags.len()),
            (Some(5120), true, 0)
        );
        assert_eq!(listed("18 5 low 0 1"), None);
        assert_eq!(listed("x 5 low 0 1 1700000001 - 0 "), None);
    }
}
