//! The detail of one ticket: its fields, customer, document, CC list, tags, watchers,
//! items with attachments, history and the customer's other tickets.
use sqlx::Row;
use sqlx::any::AnyRow;

use super::admin::document_from_row;
use super::items::item_text;
use super::{Result, Store, StoreError};
use crate::core::model::{
    AttachmentInfo, Customer, Document, HistoryEntry, ItemDetail, Priority, TicketDetail,
};

impl Store {
    pub async fn ticket_show(&self, number: i64) -> Result<TicketDetail> {
        let row = self.ticket_detail_row(number).await?;
        let id: i64 = row.try_get("id")?;
        let customer_id: Option<i64> = row.try_get("customer_id")?;
        let customer = self.ticket_customer(customer_id).await?;
        let document = self.ticket_document(row.try_get("document_id")?).await?;
        let cc = self
            .ticket_strings(
                "SELECT address FROM ticket_cc WHERE ticket_id = $1 ORDER BY address",
                id,
            )
            .await?;
        let tags = self.ticket_strings(
            "SELECT g.name FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id WHERE tt.ticket_id = $1 ORDER BY g.name",
            id,
        )
        .await?;
        let watchers = self.ticket_strings(
            "SELECT a.login FROM ticket_watchers w JOIN agents a ON a.id = w.agent_id WHERE w.ticket_id = $1 ORDER BY a.login",
            id,
        )
        .await?;
        let items = self.ticket_items(id).await?;
        let history = self.ticket_history(id).await?;
        let other_tickets = self.other_tickets(customer_id, id).await?;
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

    /// The ticket's own fields, with the names of its queue, status, assignee and the
    /// ticket it was merged into.
    async fn ticket_detail_row(&self, number: i64) -> Result<AnyRow> {
        sqlx::query(
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
        .ok_or_else(|| StoreError::NotFound(format!("no ticket #{number}")))
    }

    async fn ticket_customer(&self, customer_id: Option<i64>) -> Result<Option<Customer>> {
        let Some(cid) = customer_id else {
            return Ok(None);
        };
        let number: Option<String> =
            sqlx::query_scalar("SELECT number FROM customers WHERE id = $1")
                .bind(cid)
                .fetch_optional(&self.pool)
                .await?;
        match number {
            Some(n) => self.customer(&n).await,
            None => Ok(None),
        }
    }

    async fn ticket_document(&self, document_id: Option<i64>) -> Result<Option<Document>> {
        let Some(did) = document_id else {
            return Ok(None);
        };
        sqlx::query(
            "SELECT number, kind, date, customer_number, description FROM documents WHERE id = $1",
        )
        .bind(did)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(document_from_row)
        .transpose()
    }

    /// The one column `sql` selects for the ticket `id` (its `$1`).
    async fn ticket_strings(&self, sql: &'static str, id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The ticket's items, oldest first, each with its attachments.
    async fn ticket_items(&self, id: i64) -> Result<Vec<ItemDetail>> {
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
            let attachments = self.item_attachments(item_id).await?;
            items.push(item_detail(r, item_id, attachments)?);
        }
        Ok(items)
    }

    async fn item_attachments(&self, item_id: i64) -> Result<Vec<AttachmentInfo>> {
        sqlx::query(
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
        .collect()
    }

    async fn ticket_history(&self, id: i64) -> Result<Vec<HistoryEntry>> {
        sqlx::query(
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
        .collect()
    }

    /// The numbers of the customer's other tickets.
    async fn other_tickets(&self, customer_id: Option<i64>, id: i64) -> Result<Vec<i64>> {
        let Some(cid) = customer_id else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_scalar(
            "SELECT number FROM tickets WHERE customer_id = $1 AND id <> $2 ORDER BY number",
        )
        .bind(cid)
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// An item of the detail from its row (see [`Store::ticket_items`]).
fn item_detail(r: &AnyRow, id: i64, attachments: Vec<AttachmentInfo>) -> Result<ItemDetail> {
    let split = |s: String| -> Vec<String> {
        s.split(", ")
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(ItemDetail {
        id,
        kind: r
            .try_get::<String, _>("kind")?
            .parse()
            .map_err(|e: crate::core::model::UnknownWord| StoreError::Invalid(e.to_string()))?,
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
    })
}
