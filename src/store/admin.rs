//! Admin data: queues, agents, customers, documents, statuses, tags, templates, profiles.
use std::collections::HashMap;

use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Arg, Result, Sql, Store, StoreError, Tx, flag, now, push_list};
use crate::core::model::{
    Agent, Away, Customer, Document, OnClosed, PollResult, Queue, ReplyQuote, Status, TlsMode,
};

/// The settings of a queue as given by an admin; `None` keeps the current value on edit.
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    pub name: Option<String>,
    pub address: Option<String>,
    pub friendly_name: Option<String>,
    pub smtp: Option<(String, u16)>,
    pub smtp_tls: Option<TlsMode>,
    pub pop3: Option<(String, u16)>,
    pub pop3_tls: Option<TlsMode>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<String>,
    pub autoresponder: Option<bool>,
    pub autoresponder_text: Option<String>,
    pub enabled: Option<bool>,
    pub reply_quote: Option<ReplyQuote>,
    pub on_closed: Option<OnClosed>,
    pub salutation: Option<String>,
}

pub struct NewAgent {
    pub login: String,
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub queues: Vec<String>,
}

/// An out-of-office as an admin sets it.
pub struct AwaySettings<'a> {
    /// Unix seconds; the agent is away from `from` through `until`, both included.
    pub from: i64,
    pub until: i64,
    pub text: &'a str,
    /// Login of the agent who stands in.
    pub substitute: Option<&'a str>,
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Upserted {
    pub inserted: usize,
    pub updated: usize,
}

const QUEUE_COLUMNS: &str = "id, name, address, friendly_name, smtp_host, smtp_port, smtp_tls, \
    pop3_host, pop3_port, pop3_tls, login, password, tls_ca, autoresponder, autoresponder_text, \
    enabled, reply_quote, on_closed, salutation, last_poll_at, last_poll_ok, last_poll_message";

fn queue_from_row(r: &AnyRow) -> Result<Queue> {
    let word = |col: &str| -> Result<String> { Ok(r.try_get::<String, _>(col)?) };
    let parse_err = |e: crate::core::model::UnknownWord| StoreError::Invalid(e.to_string());
    let last_poll = match r.try_get::<Option<i64>, _>("last_poll_at")? {
        Some(at) => Some(PollResult {
            at,
            ok: r.try_get::<Option<i64>, _>("last_poll_ok")?.unwrap_or(0) != 0,
            message: r.try_get("last_poll_message")?,
        }),
        None => None,
    };
    Ok(Queue {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        address: r.try_get("address")?,
        friendly_name: r.try_get("friendly_name")?,
        smtp_host: r.try_get("smtp_host")?,
        smtp_port: r.try_get::<i64, _>("smtp_port")? as u16,
        smtp_tls: word("smtp_tls")?.parse().map_err(parse_err)?,
        pop3_host: r.try_get("pop3_host")?,
        pop3_port: r.try_get::<i64, _>("pop3_port")? as u16,
        pop3_tls: word("pop3_tls")?.parse().map_err(parse_err)?,
        login: r.try_get("login")?,
        password: r.try_get("password")?,
        tls_ca: r.try_get("tls_ca")?,
        autoresponder: r.try_get::<i64, _>("autoresponder")? != 0,
        autoresponder_text: r.try_get("autoresponder_text")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        reply_quote: word("reply_quote")?.parse().map_err(parse_err)?,
        on_closed: word("on_closed")?.parse().map_err(parse_err)?,
        salutation: r.try_get("salutation")?,
        last_poll,
    })
}

impl Store {
    pub async fn queues(&self) -> Result<Vec<Queue>> {
        queues_on(&mut *self.pool.acquire().await?).await
    }

    pub async fn queue_by_name(&self, name: &str) -> Result<Queue> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE LOWER(name) = LOWER($1)");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.to_string())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => queue_from_row(&r),
            None => Err(StoreError::NotFound(format!("no queue named {name:?}"))),
        }
    }

    pub async fn queue(&self, id: i64) -> Result<Queue> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => queue_from_row(&r),
            None => Err(StoreError::NotFound(format!("no queue with id {id}"))),
        }
    }

    /// The enabled queue with this address, if any (inbound listener's RCPT check).
    pub async fn enabled_queue_by_address(&self, address: &str) -> Result<Option<Queue>> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE address = $1 AND enabled = 1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(address.trim().to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(queue_from_row).transpose()
    }

    pub async fn queue_add(&self, s: &QueueSettings) -> Result<Queue> {
        let name = s.name.clone().filter(|n| !n.trim().is_empty());
        let address = s.address.clone().filter(|a| a.contains('@'));
        let (Some(name), Some(address)) = (name, address) else {
            return Err(StoreError::Invalid(
                "a queue needs a name and an e-mail address".into(),
            ));
        };
        let mut tx = self.begin().await?;
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM queues WHERE LOWER(name) = LOWER($1) OR address = $2",
        )
        .bind(name.clone())
        .bind(address.to_ascii_lowercase())
        .fetch_one(tx.conn().await?)
        .await?;
        if exists > 0 {
            return Err(StoreError::Conflict(format!(
                "a queue named {name:?} or with address {address} exists already"
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO queues (name, address, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name.trim().to_string())
        .bind(address.trim().to_ascii_lowercase())
        .bind(now())
        .fetch_one(tx.conn().await?)
        .await?;
        tx.queue_apply(id, s).await?;
        tx.commit().await?;
        self.queue(id).await
    }

    pub async fn queue_edit(&self, name: &str, s: &QueueSettings) -> Result<Queue> {
        let id = self.queue_by_name(name).await?.id;
        let mut tx = self.begin().await?;
        if let Some(new_name) = &s.name {
            sqlx::query("UPDATE queues SET name = $1 WHERE id = $2")
                .bind(new_name.trim().to_string())
                .bind(id)
                .execute(tx.conn().await?)
                .await
                .map_err(|e| unique_to_conflict(e, "queue name"))?;
        }
        if let Some(address) = &s.address {
            sqlx::query("UPDATE queues SET address = $1 WHERE id = $2")
                .bind(address.trim().to_ascii_lowercase())
                .bind(id)
                .execute(tx.conn().await?)
                .await
                .map_err(|e| unique_to_conflict(e, "queue address"))?;
        }
        tx.queue_apply(id, s).await?;
        tx.commit().await?;
        self.queue(id).await
    }

    /// Deletes a queue that holds no tickets (tickets are never deleted).
    pub async fn queue_delete(&self, name: &str) -> Result<()> {
        let q = self.queue_by_name(name).await?;
        let tickets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE queue_id = $1")
            .bind(q.id)
            .fetch_one(&self.pool)
            .await?;
        if tickets > 0 {
            return Err(StoreError::Conflict(format!(
                "queue {name:?} holds {tickets} tickets; move them or disable the queue (--disabled) instead"
            )));
        }
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM outbox WHERE queue_id = $1",
            "DELETE FROM autoresponses WHERE queue_id = $1",
            "DELETE FROM pop3_uidls WHERE queue_id = $1",
            "DELETE FROM agent_queues WHERE queue_id = $1",
            "DELETE FROM queues WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(q.id)
                .execute(tx.conn().await?)
                .await?;
        }
        tx.commit().await
    }

    pub async fn queue_record_poll(&self, id: i64, ok: bool, message: &str) -> Result<()> {
        sqlx::query(
            "UPDATE queues SET last_poll_at = $1, last_poll_ok = $2, last_poll_message = $3 WHERE id = $4",
        )
        .bind(now())
        .bind(flag(ok))
        .bind(message.to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- agents -------------------------------------------------------------------

    pub async fn agent_add(&self, a: &NewAgent) -> Result<Agent> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agents (login, name, email, password_hash, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(a.login.clone())
        .bind(a.name.clone())
        .bind(a.email.trim().to_ascii_lowercase())
        .bind(a.password_hash.clone())
        .bind(flag(a.is_admin))
        .bind(now())
        .fetch_one(tx.conn().await?)
        .await
        .map_err(|e| unique_to_conflict(e, "agent login"))?;
        for queue in &a.queues {
            let qid: Option<i64> =
                sqlx::query_scalar("SELECT id FROM queues WHERE LOWER(name) = LOWER($1)")
                    .bind(queue.clone())
                    .fetch_optional(tx.conn().await?)
                    .await?;
            let qid =
                qid.ok_or_else(|| StoreError::NotFound(format!("no queue named {queue:?}")))?;
            sqlx::query("INSERT INTO agent_queues (agent_id, queue_id) VALUES ($1, $2)")
                .bind(id)
                .bind(qid)
                .execute(tx.conn().await?)
                .await?;
        }
        tx.commit().await?;
        self.agent_by_login(&a.login).await
    }

    pub async fn agents(&self) -> Result<Vec<Agent>> {
        let logins: Vec<String> = sqlx::query_scalar("SELECT login FROM agents ORDER BY login")
            .fetch_all(&self.pool)
            .await?;
        let mut agents = Vec::with_capacity(logins.len());
        for login in logins {
            agents.push(self.agent_by_login(&login).await?);
        }
        Ok(agents)
    }

    pub async fn agent_set_attachment_check(&self, login: &str, on: bool) -> Result<()> {
        let done = sqlx::query("UPDATE agents SET attachment_check = $1 WHERE login = $2")
            .bind(flag(on))
            .bind(login.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no agent with login {login:?}"
            )));
        }
        Ok(())
    }

    pub async fn agent_by_login(&self, login: &str) -> Result<Agent> {
        agent_on(&mut *self.pool.acquire().await?, login).await
    }

    /// Sets an agent's out-of-office: from and until (inclusive, Unix seconds), the note
    /// customers get, and who stands in.
    pub async fn agent_away(&self, login: &str, a: &AwaySettings<'_>) -> Result<Agent> {
        if a.until <= a.from {
            return Err(StoreError::Invalid(
                "the absence must end after it begins".into(),
            ));
        }
        if a.text.trim().is_empty() {
            return Err(StoreError::Invalid(
                "the out-of-office note must not be empty".into(),
            ));
        }
        let agent = self.agent_by_login(login).await?;
        let substitute = match a.substitute {
            Some(s) if s == agent.login => {
                return Err(StoreError::Invalid(format!(
                    "{login} cannot stand in for itself"
                )));
            }
            Some(s) => Some(self.agent_by_login(s).await?.id),
            None => None,
        };
        sqlx::query(
            "UPDATE agents SET away_from = $1, away_until = $2, away_text = $3, substitute_id = $4 \
             WHERE id = $5",
        )
        .bind(a.from)
        .bind(a.until)
        .bind(a.text.to_string())
        .bind(substitute)
        .bind(agent.id)
        .execute(&self.pool)
        .await?;
        self.agent_by_login(login).await
    }

    /// Ends (or cancels) an agent's out-of-office.
    pub async fn agent_back(&self, login: &str) -> Result<Agent> {
        let agent = self.agent_by_login(login).await?;
        sqlx::query(
            "UPDATE agents SET away_from = NULL, away_until = NULL, away_text = '', \
             substitute_id = NULL WHERE id = $1",
        )
        .bind(agent.id)
        .execute(&self.pool)
        .await?;
        self.agent_by_login(login).await
    }

    // ---- customers and documents ----------------------------------------------------

    /// Inserts or updates (by number) a customer and replaces its e-mail addresses.
    pub async fn customer_upsert(&self, c: &Customer) -> Result<bool> {
        let mut tx = self.begin().await?;
        let inserted = tx.customer_upsert(c).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn customers(&self) -> Result<Vec<Customer>> {
        let numbers: Vec<String> =
            sqlx::query_scalar("SELECT number FROM customers ORDER BY number")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            if let Some(c) = self.customer(&n).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub async fn customer(&self, number: &str) -> Result<Option<Customer>> {
        let row = sqlx::query(
            "SELECT id, number, company1, company2, salutation, first_name, last_name, street, \
             house_no, zip, city, letter_salutation, delivery_block FROM customers WHERE number = $1",
        )
        .bind(number.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let emails: Vec<String> = sqlx::query_scalar(
            "SELECT address FROM customer_emails WHERE customer_id = $1 ORDER BY address",
        )
        .bind(row.try_get::<i64, _>("id")?)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(customer_from_row(&row, emails)?))
    }

    /// For each of these e-mail addresses that customers have, the ids of those customers.
    pub async fn customer_ids_by_emails(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, Vec<i64>>> {
        let mut found: HashMap<String, Vec<i64>> = HashMap::new();
        for chunk in addresses.chunks(500) {
            let mut sql =
                Sql::new("SELECT address, customer_id FROM customer_emails WHERE address IN (");
            push_list(
                &mut sql,
                chunk
                    .iter()
                    .map(|a| Arg::Text(a.trim().to_ascii_lowercase())),
            );
            sql.push(") ORDER BY customer_id");
            for row in sql.query().fetch_all(&self.pool).await? {
                found
                    .entry(row.try_get("address")?)
                    .or_default()
                    .push(row.try_get("customer_id")?);
            }
        }
        Ok(found)
    }

    pub async fn document_upsert(&self, d: &Document) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE documents SET kind = $1, date = $2, customer_number = $3, description = $4, \
             updated_at = $5 WHERE number = $6 AND NOT (kind = $1 AND date = $2 \
             AND customer_number = $3 AND description = $4)",
        )
        .bind(d.kind.clone())
        .bind(d.date.clone())
        .bind(d.customer_number.clone())
        .bind(d.description.clone())
        .bind(now())
        .bind(d.number.clone())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated > 0 {
            // The document shows in the overview of the tickets' messages linked to it: a new
            // version, so a message the lister is rendering now is not taken down.
            sqlx::query(
                "UPDATE tickets SET version = version + 1, mailbox_uid = NULL \
                 WHERE document_id = (SELECT id FROM documents WHERE number = $1)",
            )
            .bind(d.number.clone())
            .execute(&self.pool)
            .await?;
            return Ok(false);
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM documents WHERE number = $1")
            .bind(d.number.clone())
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO documents (number, kind, date, customer_number, description, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(d.number.clone())
        .bind(d.kind.clone())
        .bind(d.date.clone())
        .bind(d.customer_number.clone())
        .bind(d.description.clone())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    pub async fn documents(&self) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT number, kind, date, customer_number, description FROM documents ORDER BY number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    // ---- statuses, tags, templates, profiles ------------------------------------------

    pub async fn statuses(&self) -> Result<Vec<Status>> {
        let rows = sqlx::query(
            "SELECT id, key, name_en, name_de, is_closed, is_system FROM statuses ORDER BY position, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Status {
                    id: r.try_get("id")?,
                    key: r.try_get("key")?,
                    name_en: r.try_get("name_en")?,
                    name_de: r.try_get("name_de")?,
                    is_closed: r.try_get::<i64, _>("is_closed")? != 0,
                    is_system: r.try_get::<i64, _>("is_system")? != 0,
                })
            })
            .collect()
    }

    /// Adds an admin-defined status, open-like or closed-like.
    pub async fn status_add(&self, name: &str, closed: bool) -> Result<()> {
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) && name.contains(':') {
            return Err(StoreError::Invalid(format!("bad status name {name:?}")));
        }
        let existing = self.statuses().await?;
        if existing.iter().any(|s| {
            s.key.eq_ignore_ascii_case(name)
                || s.name_en.eq_ignore_ascii_case(name)
                || s.name_de.eq_ignore_ascii_case(name)
        }) {
            return Err(StoreError::Conflict(format!(
                "status {name:?} exists already"
            )));
        }
        sqlx::query(
            "INSERT INTO statuses (key, name_en, name_de, is_closed, is_system, position) \
             VALUES ($1, $1, $1, $2, 0, 100)",
        )
        .bind(name.to_string())
        .bind(flag(closed))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn tags(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM tags ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn tag_add(&self, name: &str) -> Result<()> {
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(StoreError::Invalid(format!(
                "a tag is one word without spaces (got {name:?})"
            )));
        }
        sqlx::query("INSERT INTO tags (name) VALUES ($1)")
            .bind(name.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| unique_to_conflict(e, "tag"))?;
        Ok(())
    }

    pub async fn tag_delete(&self, name: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM tags WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(tx.conn().await?)
            .await?;
        let id = id.ok_or_else(|| StoreError::NotFound(format!("no tag {name:?}")))?;
        sqlx::query("DELETE FROM ticket_tags WHERE tag_id = $1")
            .bind(id)
            .execute(tx.conn().await?)
            .await?;
        sqlx::query("DELETE FROM tags WHERE id = $1")
            .bind(id)
            .execute(tx.conn().await?)
            .await?;
        tx.commit().await
    }

    pub async fn template_add(&self, name: &str, body: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE templates SET body = $1 WHERE name = $2")
            .bind(body.to_string())
            .bind(name.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            sqlx::query("INSERT INTO templates (name, body) VALUES ($1, $2)")
                .bind(name.to_string())
                .bind(body.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn templates(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, body FROM templates ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("body")?)))
            .collect()
    }

    pub async fn profile_add(&self, name: &str, filter: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE profiles SET filter = $1 WHERE name = $2")
            .bind(filter.to_string())
            .bind(name.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            sqlx::query("INSERT INTO profiles (name, filter) VALUES ($1, $2)")
                .bind(name.to_string())
                .bind(filter.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn profiles(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, filter FROM profiles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("filter")?)))
            .collect()
    }
}

impl Tx {
    /// Applies every given setting except name and address to queue `id`.
    async fn queue_apply(&mut self, id: i64, s: &QueueSettings) -> Result<()> {
        let texts: [(&str, Option<String>); 9] = [
            ("friendly_name", s.friendly_name.clone()),
            ("smtp_tls", s.smtp_tls.map(|t| t.to_string())),
            ("pop3_tls", s.pop3_tls.map(|t| t.to_string())),
            ("login", s.login.clone()),
            ("password", s.password.clone()),
            ("tls_ca", s.tls_ca.clone()),
            ("autoresponder_text", s.autoresponder_text.clone()),
            ("reply_quote", s.reply_quote.map(|t| t.to_string())),
            ("on_closed", s.on_closed.map(|t| t.to_string())),
        ];
        for (col, value) in texts {
            if let Some(v) = value {
                let sql = format!("UPDATE queues SET {col} = $1 WHERE id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(v)
                    .bind(id)
                    .execute(self.conn().await?)
                    .await?;
            }
        }
        if let Some(v) = &s.salutation {
            sqlx::query("UPDATE queues SET salutation = $1 WHERE id = $2")
                .bind(v.clone())
                .bind(id)
                .execute(self.conn().await?)
                .await?;
        }
        let flags = [("autoresponder", s.autoresponder), ("enabled", s.enabled)];
        for (col, value) in flags {
            if let Some(v) = value {
                let sql = format!("UPDATE queues SET {col} = $1 WHERE id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(flag(v))
                    .bind(id)
                    .execute(self.conn().await?)
                    .await?;
            }
        }
        for (prefix, server) in [("smtp", &s.smtp), ("pop3", &s.pop3)] {
            if let Some((host, port)) = server {
                let sql = format!(
                    "UPDATE queues SET {prefix}_host = $1, {prefix}_port = $2 WHERE id = $3"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(host.clone())
                    .bind(i64::from(*port))
                    .bind(id)
                    .execute(self.conn().await?)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn customer_upsert(&mut self, c: &Customer) -> Result<bool> {
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM customers WHERE number = $1")
                .bind(c.number.clone())
                .fetch_optional(self.conn().await?)
                .await?;
        let fields = [
            c.company1.clone(),
            c.company2.clone(),
            c.salutation.clone(),
            c.first_name.clone(),
            c.last_name.clone(),
            c.street.clone(),
            c.house_no.clone(),
            c.zip.clone(),
            c.city.clone(),
            c.letter_salutation.clone(),
        ];
        let id = match existing {
            Some(id) => {
                let mut q = sqlx::query(
                    "UPDATE customers SET company1 = $1, company2 = $2, salutation = $3, \
                     first_name = $4, last_name = $5, street = $6, house_no = $7, zip = $8, \
                     city = $9, letter_salutation = $10, delivery_block = $11, updated_at = $12 \
                     WHERE id = $13 AND NOT (company1 = $1 AND company2 = $2 AND salutation = $3 \
                     AND first_name = $4 AND last_name = $5 AND street = $6 AND house_no = $7 \
                     AND zip = $8 AND city = $9 AND letter_salutation = $10 AND delivery_block = $11)",
                );
                for f in fields {
                    q = q.bind(f);
                }
                let changed = q
                    .bind(flag(c.delivery_block))
                    .bind(now())
                    .bind(id)
                    .execute(self.conn().await?)
                    .await?
                    .rows_affected();
                if changed > 0 {
                    // The customer shows in the header and overview of their tickets' messages:
                    // a new version, so a header the lister is rendering now is not taken down.
                    sqlx::query(
                        "UPDATE tickets SET version = version + 1, mailbox_uid = NULL \
                         WHERE customer_id = $1",
                    )
                    .bind(id)
                    .execute(self.conn().await?)
                    .await?;
                }
                sqlx::query("DELETE FROM customer_emails WHERE customer_id = $1")
                    .bind(id)
                    .execute(self.conn().await?)
                    .await?;
                id
            }
            None => {
                let mut q = sqlx::query_scalar(
                    "INSERT INTO customers (number, company1, company2, salutation, first_name, \
                     last_name, street, house_no, zip, city, letter_salutation, delivery_block, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     RETURNING id",
                )
                .bind(c.number.clone());
                for f in fields {
                    q = q.bind(f);
                }
                q.bind(flag(c.delivery_block))
                    .bind(now())
                    .fetch_one(self.conn().await?)
                    .await?
            }
        };
        let mut emails: Vec<String> = c
            .emails
            .iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        emails.sort();
        emails.dedup();
        for e in emails {
            sqlx::query("INSERT INTO customer_emails (customer_id, address) VALUES ($1, $2)")
                .bind(id)
                .bind(e)
                .execute(self.conn().await?)
                .await?;
        }
        Ok(existing.is_none())
    }
}

pub(crate) fn customer_from_row(row: &AnyRow, emails: Vec<String>) -> Result<Customer> {
    Ok(Customer {
        number: row.try_get("number")?,
        company1: row.try_get("company1")?,
        company2: row.try_get("company2")?,
        salutation: row.try_get("salutation")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        street: row.try_get("street")?,
        house_no: row.try_get("house_no")?,
        zip: row.try_get("zip")?,
        city: row.try_get("city")?,
        letter_salutation: row.try_get("letter_salutation")?,
        emails,
        delivery_block: row.try_get::<i64, _>("delivery_block")? != 0,
    })
}

pub(crate) fn document_from_row(row: &AnyRow) -> Result<Document> {
    Ok(Document {
        number: row.try_get("number")?,
        kind: row.try_get("kind")?,
        date: row.try_get("date")?,
        customer_number: row.try_get("customer_number")?,
        description: row.try_get("description")?,
    })
}

/// Turns a unique-constraint violation into a readable conflict.
pub(crate) fn unique_to_conflict(e: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(format!("this {what} exists already"));
    }
    StoreError::Db(e)
}

impl Tx {
    /// As [`Store::queues`], inside this transaction.
    pub async fn queues(&mut self) -> Result<Vec<Queue>> {
        queues_on(self.conn().await?).await
    }

    /// As [`Store::agent_by_login`], inside this transaction.
    pub async fn agent_by_login(&mut self, login: &str) -> Result<Agent> {
        agent_on(self.conn().await?, login).await
    }
}

async fn queues_on(conn: &mut AnyConnection) -> Result<Vec<Queue>> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues ORDER BY name");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(queue_from_row).collect()
}

async fn agent_on(conn: &mut AnyConnection, login: &str) -> Result<Agent> {
    let row = sqlx::query(
        "SELECT a.id, a.login, a.name, a.email, a.password_hash, a.is_admin, a.attachment_check, \
         a.away_from, a.away_until, a.away_text, s.login AS substitute \
         FROM agents a LEFT JOIN agents s ON s.id = a.substitute_id WHERE a.login = $1",
    )
    .bind(login.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("no agent with login {login:?}")))?;
    let id: i64 = row.try_get("id")?;
    let queues: Vec<String> = sqlx::query_scalar(
        "SELECT q.name FROM agent_queues aq JOIN queues q ON q.id = aq.queue_id \
         WHERE aq.agent_id = $1 ORDER BY q.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let away = match (
        row.try_get::<Option<i64>, _>("away_from")?,
        row.try_get::<Option<i64>, _>("away_until")?,
    ) {
        (Some(from), Some(until)) => Some(Away {
            from,
            until,
            text: row.try_get("away_text")?,
            substitute: row.try_get("substitute")?,
        }),
        _ => None,
    };
    Ok(Agent {
        id,
        login: row.try_get("login")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        attachment_check: row.try_get::<i64, _>("attachment_check")? != 0,
        queues,
        away,
    })
}
