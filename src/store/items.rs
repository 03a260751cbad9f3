//! Items: the mails and notes of a ticket as they are queued, with their attachments and
//! Message-IDs, and the redeliveries intake recognizes among them.
use std::collections::HashSet;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Arg, Backend, Result, Sql, Tx, flag, push_list};
use crate::core::mail::{self, Attachment};
use crate::core::model::ItemKind;

/// An item as intake or an agent's mail adds it (see [`Tx::add_item`]).
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
}

/// An item's text from a row with `text` and `body_raw` (the raw mail when the body is
/// kept only there, see `NewItem::body_in_raw`).
pub(super) fn item_text(r: &AnyRow) -> Result<String> {
    Ok(match r.try_get::<Option<Vec<u8>>, _>("body_raw")? {
        Some(raw) => mail::parse(&raw).text,
        None => r.try_get("text")?,
    })
}
