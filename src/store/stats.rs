//! Ticket statistics: per queue, per status, and opened per day over the last week.
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Arg, Result, Sql, Store};
use crate::core::model::Stats;

impl Store {
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
}
