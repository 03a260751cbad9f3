//! What an agent's mail reads and changes on its ticket: the conversation to quote, the
//! news since the version replied to, and one setter per field, each with its history entry.
use std::collections::HashMap;

use sqlx::Row;

use super::items::item_text;
use super::tickets::{TicketRef, ticket_ref, ticket_ref_columns};
use super::{Actor, Arg, Backend, Result, Sql, Tx, now, push_list};
use crate::core::model::{ItemKind, Priority};

/// One item of a ticket as a collision names it and a reply threads and quotes it.
#[derive(Debug, Clone)]
pub struct ItemBrief {
    pub id: i64,
    pub kind: ItemKind,
    pub agent_id: Option<i64>,
    pub agent: Option<String>,
    pub from_name: String,
    pub from_address: String,
    pub date: i64,
    pub message_id: String,
}

/// The fields of a ticket that commands change, as they are before the mail.
#[derive(Debug, Clone)]
pub struct TicketFields {
    pub priority: Priority,
    pub assignee: Option<String>,
    pub due_date: Option<String>,
    pub billable: bool,
    pub document: Option<String>,
    pub customer_number: Option<String>,
    pub cc: Vec<String>,
}

/// A column an agent's command sets; the names never come from input.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    Priority,
    Queue,
    Due,
    Billable,
    Customer,
    Document,
}

impl Field {
    fn column(self) -> &'static str {
        match self {
            Field::Priority => "priority",
            Field::Queue => "queue_id",
            Field::Due => "due_date",
            Field::Billable => "billable",
            Field::Customer => "customer_id",
            Field::Document => "document_id",
        }
    }

    fn history_name(self) -> &'static str {
        match self {
            Field::Priority => "priority",
            Field::Queue => "queue",
            Field::Due => "due_date",
            Field::Billable => "billable",
            Field::Customer => "customer",
            Field::Document => "document",
        }
    }
}

impl Tx {
    /// The ticket of the newest item with this Message-ID, and that item's id (the
    /// version a reply to it answers).
    pub async fn item_by_message_id(
        &mut self,
        message_id: &str,
    ) -> Result<Option<(TicketRef, i64)>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            ticket_ref_columns!(),
            ", i.id AS item_id FROM items i JOIN tickets t ON t.id = i.ticket_id \
             JOIN queues q ON q.id = t.queue_id JOIN statuses s ON s.id = t.status_id \
             WHERE i.message_id = $1 ORDER BY i.id DESC LIMIT 1"
        ))
        .bind(message_id.to_string())
        .fetch_optional(self.conn().await?)
        .await?;
        Ok(match row {
            Some(r) => Some((ticket_ref(&r)?, r.try_get("item_id")?)),
            None => None,
        })
    }

    /// The ticket's items, oldest first, without their bodies (see [`Tx::item_bodies`]).
    pub async fn item_briefs(&mut self, ticket_id: i64) -> Result<Vec<ItemBrief>> {
        let rows = sqlx::query(
            "SELECT i.id, i.kind, i.agent_id, a.login AS agent, i.from_name, i.from_address, \
             i.date, i.message_id FROM items i LEFT JOIN agents a ON a.id = i.agent_id \
             WHERE i.ticket_id = $1 ORDER BY i.date, i.id",
        )
        .bind(ticket_id)
        .fetch_all(self.conn().await?)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            items.push(ItemBrief {
                id: r.try_get("id")?,
                kind: kind.parse().unwrap_or(ItemKind::Customer),
                agent_id: r.try_get("agent_id")?,
                agent: r.try_get("agent")?,
                from_name: r.try_get("from_name")?,
                from_address: r.try_get("from_address")?,
                date: r.try_get("date")?,
                message_id: r.try_get("message_id")?,
            });
        }
        Ok(items)
    }

    /// The text and HTML of these items (parsed from the raw mail where only that is kept).
    pub async fn item_bodies(
        &mut self,
        ids: &[i64],
    ) -> Result<HashMap<i64, (String, Option<String>)>> {
        let mut bodies = HashMap::new();
        if ids.is_empty() {
            return Ok(bodies);
        }
        let mut sql = Sql::new(
            "SELECT id, text, html, CASE WHEN body_from_raw = 1 THEN raw END AS body_raw \
             FROM items WHERE id IN (",
        );
        push_list(&mut sql, ids.iter().map(|id| Arg::Int(*id)));
        sql.push(")");
        for r in sql.query().fetch_all(self.conn().await?).await? {
            let body_raw: Option<Vec<u8>> = r.try_get("body_raw")?;
            let body = match &body_raw {
                Some(raw) => {
                    let m = crate::core::mail::parse(raw);
                    (m.text, m.html)
                }
                None => (item_text(&r)?, r.try_get("html")?),
            };
            bodies.insert(r.try_get("id")?, body);
        }
        Ok(bodies)
    }

    pub async fn ticket_fields(&mut self, t: &TicketRef) -> Result<TicketFields> {
        let row = sqlx::query(
            "SELECT t.priority, a.login AS assignee, t.due_date, t.billable, d.number AS document, \
             c.number AS customer FROM tickets t LEFT JOIN agents a ON a.id = t.assignee_id \
             LEFT JOIN documents d ON d.id = t.document_id \
             LEFT JOIN customers c ON c.id = t.customer_id WHERE t.id = $1",
        )
        .bind(t.id)
        .fetch_one(self.conn().await?)
        .await?;
        let cc: Vec<String> = sqlx::query_scalar(
            "SELECT address FROM ticket_cc WHERE ticket_id = $1 ORDER BY address",
        )
        .bind(t.id)
        .fetch_all(self.conn().await?)
        .await?;
        let priority: String = row.try_get("priority")?;
        Ok(TicketFields {
            priority: priority.parse().unwrap_or(Priority::Low),
            assignee: row.try_get("assignee")?,
            due_date: row.try_get("due_date")?,
            billable: row.try_get::<i64, _>("billable")? != 0,
            document: row.try_get("document")?,
            customer_number: row.try_get("customer")?,
            cc,
        })
    }

    /// Id of an agent by login, any case.
    pub async fn agent_id_by_login(&mut self, login: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT id, login FROM agents WHERE LOWER(login) = LOWER($1)")
            .bind(login.trim().to_string())
            .fetch_optional(self.conn().await?)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("id")?, r.try_get("login")?)),
            None => None,
        })
    }

    /// Id of a customer by number.
    pub async fn customer_id_by_number(&mut self, number: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM customers WHERE number = $1")
                .bind(number.trim().to_string())
                .fetch_optional(self.conn().await?)
                .await?,
        )
    }

    /// Id of a document (Beleg) by number.
    pub async fn document_id_by_number(&mut self, number: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM documents WHERE number = $1")
                .bind(number.trim().to_string())
                .fetch_optional(self.conn().await?)
                .await?,
        )
    }

    /// Tags by name, any case: lower-case name → (id, name as defined).
    pub async fn tags_by_names(
        &mut self,
        names: &[String],
    ) -> Result<HashMap<String, (i64, String)>> {
        let mut found = HashMap::new();
        if names.is_empty() {
            return Ok(found);
        }
        let mut sql = Sql::new("SELECT id, name FROM tags WHERE LOWER(name) IN (");
        push_list(&mut sql, names.iter().map(|n| Arg::Text(n.to_lowercase())));
        sql.push(")");
        for r in sql.query().fetch_all(self.conn().await?).await? {
            let name: String = r.try_get("name")?;
            found.insert(name.to_lowercase(), (r.try_get("id")?, name));
        }
        Ok(found)
    }

    /// A template's body by name, any case.
    pub async fn template_body(&mut self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT body FROM templates WHERE LOWER(name) = LOWER($1)")
                .bind(name.trim().to_string())
                .fetch_optional(self.conn().await?)
                .await?,
        )
    }

    /// The ticket's version, which every change of it bumps. In a write transaction on
    /// PostgreSQL this also locks the ticket's row until the end of the transaction, so no
    /// other writer changes the ticket meanwhile (SQLite has one writer anyway).
    pub async fn ticket_version(&mut self, ticket_id: i64) -> Result<i64> {
        let sql = match (self.backend, self.read_only) {
            (Backend::Postgres, false) => "SELECT version FROM tickets WHERE id = $1 FOR UPDATE",
            _ => "SELECT version FROM tickets WHERE id = $1",
        };
        Ok(sqlx::query_scalar(sql)
            .bind(ticket_id)
            .fetch_one(self.conn().await?)
            .await?)
    }

    /// Bumps the ticket's version for a change of the rows around it (tags, watchers, CC).
    async fn touch(&mut self, ticket_id: i64) -> Result<()> {
        sqlx::query("UPDATE tickets SET updated_at = $1, version = version + 1, mailbox_uid = NULL WHERE id = $2")
            .bind(now())
            .bind(ticket_id)
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }

    /// Sets one field of a ticket and logs `old` → `new` (as people read them).
    pub(crate) async fn set_field(
        &mut self,
        ticket_id: i64,
        field: Field,
        value: Arg,
        (old, new): (&str, &str),
        actor: &Actor,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let mut sql = Sql::new("UPDATE tickets SET ");
        sql.push(field.column())
            .push(" = ")
            .bind(value)
            .push(", updated_at = ")
            .bind(Arg::Int(now()))
            .push(", version = version + 1, mailbox_uid = NULL WHERE id = ")
            .bind(Arg::Int(ticket_id));
        sql.query().execute(self.conn().await?).await?;
        self.history(ticket_id, actor, field.history_name(), old, new)
            .await
    }

    pub async fn add_tag(
        &mut self,
        ticket_id: i64,
        (id, name): (i64, &str),
        actor: &Actor,
    ) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO ticket_tags (ticket_id, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(ticket_id)
        .bind(id)
        .execute(self.conn().await?)
        .await?;
        if done.rows_affected() > 0 {
            self.touch(ticket_id).await?;
            self.history(ticket_id, actor, "tag", "", name).await?;
        }
        Ok(())
    }

    pub async fn remove_tag(
        &mut self,
        ticket_id: i64,
        (id, name): (i64, &str),
        actor: &Actor,
    ) -> Result<()> {
        let done = sqlx::query("DELETE FROM ticket_tags WHERE ticket_id = $1 AND tag_id = $2")
            .bind(ticket_id)
            .bind(id)
            .execute(self.conn().await?)
            .await?;
        if done.rows_affected() > 0 {
            self.touch(ticket_id).await?;
            self.history(ticket_id, actor, "tag", name, "").await?;
        }
        Ok(())
    }

    /// Adds or removes a watcher; logs only a change.
    pub async fn set_watcher(
        &mut self,
        ticket_id: i64,
        (agent_id, login): (i64, &str),
        watching: bool,
        actor: &Actor,
    ) -> Result<()> {
        let sql = match watching {
            true => {
                "INSERT INTO ticket_watchers (ticket_id, agent_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING"
            }
            false => "DELETE FROM ticket_watchers WHERE ticket_id = $1 AND agent_id = $2",
        };
        let done = sqlx::query(sql)
            .bind(ticket_id)
            .bind(agent_id)
            .execute(self.conn().await?)
            .await?;
        if done.rows_affected() > 0 {
            self.touch(ticket_id).await?;
            let (old, new) = if watching { ("", login) } else { (login, "") };
            self.history(ticket_id, actor, "watcher", old, new).await?;
        }
        Ok(())
    }

    /// Replaces the ticket's CC list (lower-case addresses) and logs the change.
    pub async fn set_cc(
        &mut self,
        ticket_id: i64,
        old: &[String],
        new: &[String],
        actor: &Actor,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        sqlx::query("DELETE FROM ticket_cc WHERE ticket_id = $1")
            .bind(ticket_id)
            .execute(self.conn().await?)
            .await?;
        for a in new {
            sqlx::query(
                "INSERT INTO ticket_cc (ticket_id, address) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(ticket_id)
            .bind(a.to_ascii_lowercase())
            .execute(self.conn().await?)
            .await?;
        }
        self.touch(ticket_id).await?;
        self.history(ticket_id, actor, "cc", &old.join(", "), &new.join(", "))
            .await
    }
}
