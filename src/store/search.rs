//! Full-text search: indexing new items (SQLite's FTS5 table, PostgreSQL's `search`
//! column fed from the `search_pending` queue) and how a query's words select tickets.
use sqlx::Row;

use super::items::item_text;
use super::listing::TicketQuery;
use super::{Arg, Backend, Result, Sql, Store, push_list, set_counter};

/// Indexed items after which the index queue is tidied at once (see
/// [`Store::tidy_search_queue`]).
pub const TIDY_SEARCH_QUEUE_AFTER: u64 = 10_000;

/// Words in at most this many items are looked up before their tickets (PostgreSQL).
const FEW_ITEMS: usize = 5_000;

/// How a query's full-text words select tickets.
///
/// PostgreSQL estimates a word it keeps no statistics for to be in half as many items as
/// the rarest word it keeps them for, far more than the one item an order number is in.
/// Against that estimate, reading every ticket and joining looks cheaper than looking up
/// the matching items' tickets, and a search for an order number reads every ticket. So
/// the items are looked up first (at
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
    /// queue reads them all.
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
}

/// Every word quoted, so user input can never be FTS5 syntax.
pub(super) fn fts5_query(text: &str) -> String {
    text.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_quoted_for_fts5() {
        assert_eq!(
            fts5_query("foo \"bar\" OR"),
            "\"foo\" \"\"\"bar\"\"\" \"OR\""
        );
    }
}
