//! What intake reads and records besides tickets and items: the queues' addresses and
//! rule for closed tickets, customers for placeholders, agents' absences and watched
//! tickets, and the autoresponse log.
use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::admin::customer_from_row;
use super::{Arg, Result, Sql, StoreError, Tx, now, push_list};

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

impl Tx {
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
}
