//! POP3 intake's memory of the upstream mailbox: which messages (by UIDL) were taken or
//! left as too large.
use sqlx::Row;

use super::{Result, Store, Tx, now};

impl Tx {
    /// Records what POP3 intake did with a mailbox message (`taken` or `too_large`).
    pub fn pop3_mark(&mut self, queue_id: i64, uidl: &str, state: &str) {
        self.pending
            .pop3_marks
            .insert((queue_id, uidl.to_string()), (state.to_string(), now()));
    }
}

impl Store {
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
