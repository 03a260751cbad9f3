//! Several gateway instances on one database. Each registers itself and stays alive by
//! renewing its time; work that one instance at a time must do (polling a queue, listing
//! the mailbox) is taken under a lease that lasts while its holder is alive, and each
//! outbox entry is claimed by one instance while it sends it.
//!
//! Times here are milliseconds by the database's clock, so the hosts' clocks do not have
//! to agree.
use std::time::Duration;

use super::{Backend, Result, Store, StoreError, TaskReport, TaskState, Tx};

/// How long an instance counts as alive after it last said so.
const ALIVE_FOR: Duration = Duration::from_secs(15);
/// How often a running instance says it is alive.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// The database's clock, in Unix milliseconds.
pub(super) fn clock(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(unixepoch('subsec') * 1000 AS BIGINT)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// A lease by name, as held (or wanted) by this process's instance.
#[derive(Debug, Clone)]
pub struct Lease {
    name: String,
    holder: String,
}

impl Store {
    /// This process's instance id: random, new with every start.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Registers this process (`pid` on the machine `host`) as a live instance. `alone`: no
    /// other instance can be running (SQLite, whose `serve` holds a lock file), so instances
    /// left by killed processes are dead already: they are removed with their leases and
    /// claims. Otherwise an instance on the same host whose process is `gone` is dead too.
    /// Either way a restart goes on at once instead of waiting for their time to run out.
    pub async fn join(
        &self,
        host: &str,
        pid: u32,
        alone: bool,
        gone: &(dyn Fn(u32) -> bool + Sync),
    ) -> Result<()> {
        let clock = clock(self.backend);
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let here: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, pid FROM instances WHERE host = $1 AND alive_until > {clock}"
        )))
        .bind(host.to_string())
        .fetch_all(&mut *conn)
        .await?;
        for (id, pid) in here {
            if u32::try_from(pid).is_ok_and(gone) {
                tracing::warn!(instance = %id, pid, "an instance on this host is gone: taking over its work now");
                sqlx::query("UPDATE instances SET alive_until = 0 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        if alone {
            sqlx::query("DELETE FROM leases")
                .execute(&mut *conn)
                .await?;
            // Claimed by a process that died sending them: counted as taken over.
            let taken_over = sqlx::query(
                "UPDATE outbox SET claimed_by = NULL, reclaims = reclaims + 1 \
                 WHERE claimed_by IS NOT NULL",
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if taken_over > 0 {
                tracing::warn!(
                    entries = taken_over,
                    "outbox: taking over entries of a gateway that died while sending them; \
                     the upstream may have taken one of them already"
                );
            }
            sqlx::query("DELETE FROM instance_tasks")
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM instances")
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO instances (id, host, pid, started_at, alive_until) \
             VALUES ($1, $2, $3, {clock}, {clock} + $4)"
        )))
        .bind(self.instance.to_string())
        .bind(host.to_string())
        .bind(i64::from(pid))
        .bind(ALIVE_FOR.as_millis() as i64)
        .execute(&mut *conn)
        .await?;
        tx.commit().await
    }

    /// Says this instance is alive for another [`ALIVE_FOR`]. An instance whose row is gone
    /// (removed by a start that found itself alone) registers again.
    pub async fn stay_alive(&self, host: &str, pid: u32) -> Result<()> {
        let clock = clock(self.backend);
        let renewed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE instances SET alive_until = {clock} + $1 WHERE id = $2"
        )))
        .bind(ALIVE_FOR.as_millis() as i64)
        .bind(self.instance.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 0 {
            self.join(host, pid, false, &|_| false).await?;
        }
        Ok(())
    }

    /// Ends this instance: its leases and outbox claims are free for the others at once.
    pub async fn leave(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        let me = self.instance.to_string();
        sqlx::query("DELETE FROM leases WHERE holder = $1")
            .bind(me.clone())
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE outbox SET claimed_by = NULL WHERE claimed_by = $1")
            .bind(me.clone())
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM instance_tasks WHERE instance = $1")
            .bind(me.clone())
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(me)
            .execute(&mut *conn)
            .await?;
        tx.commit().await
    }

    /// The lease `name` for this instance (not taken yet; see [`Store::take_lease`]).
    pub fn lease(&self, name: impl Into<String>) -> Lease {
        Lease {
            name: name.into(),
            holder: self.instance.to_string(),
        }
    }

    /// Takes `lease` when it is free or its holder is dead, or keeps it when this instance
    /// holds it; false when a live instance holds it.
    pub async fn take_lease(&self, lease: &Lease) -> Result<bool> {
        let clock = clock(self.backend);
        let holder: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO leases (name, holder) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder \
             WHERE leases.holder = excluded.holder OR NOT EXISTS (SELECT 1 FROM instances i \
             WHERE i.id = leases.holder AND i.alive_until > {clock}) \
             RETURNING holder"
        )))
        .bind(lease.name.clone())
        .bind(lease.holder.clone())
        .fetch_optional(&self.pool)
        .await?;
        Ok(holder.is_some())
    }
}

impl Tx {
    /// Fails with [`StoreError::LeaseLost`] unless this instance holds `lease`. On
    /// PostgreSQL the lease's row stays locked until the transaction ends, so no other
    /// instance takes the lease over between this check and the commit.
    pub async fn hold(&mut self, lease: &Lease) -> Result<()> {
        let held = sqlx::query("UPDATE leases SET holder = holder WHERE name = $1 AND holder = $2")
            .bind(lease.name.clone())
            .bind(lease.holder.clone())
            .execute(self.conn().await?)
            .await?
            .rows_affected();
        if held == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(lease.name.clone()))
        }
    }
}

/// What `mticket instances` shows: who runs, who holds which lease, how the outbox stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstancesReport {
    pub instances: Vec<InstanceRow>,
    pub leases: Vec<LeaseRow>,
    pub outbox: OutboxCounts,
    /// Changed tickets whose message waits for its new UID: the instance holding the
    /// mailbox lease gives them one within a second, so a number that stays up means no
    /// instance lists.
    pub mailbox_waiting: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// Unix milliseconds.
    pub started_at: i64,
    /// False once its time ran out: killed, or cut off from the database.
    pub alive: bool,
    /// Its background tasks and listeners; all stopped when it is not alive.
    pub tasks: Vec<TaskReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    /// Times an entry was taken over from an instance that died while it had it: each may
    /// have reached its recipient twice.
    pub taken_over: i64,
}

impl Store {
    pub async fn instances_report(&self) -> Result<InstancesReport> {
        Ok(InstancesReport {
            instances: self.instance_rows().await?,
            leases: self.lease_rows().await?,
            outbox: self.outbox_counts().await?,
            mailbox_waiting: sqlx::query_scalar(
                "SELECT COUNT(*) FROM tickets WHERE mailbox_uid IS NULL",
            )
            .fetch_one(&self.pool)
            .await?,
        })
    }

    async fn instance_rows(&self) -> Result<Vec<InstanceRow>> {
        let clock = clock(self.backend);
        let mut tasks = self.tasks_by_instance().await?;
        let instances =
            sqlx::query_as::<_, (String, String, i64, i64, i64)>(sqlx::AssertSqlSafe(format!(
                "SELECT id, host, pid, started_at, \
                 CASE WHEN alive_until > {clock} THEN 1 ELSE 0 END \
                 FROM instances ORDER BY started_at, id"
            )))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(id, host, pid, started_at, alive)| {
                let alive = alive == 1;
                let mut tasks = tasks.remove(&id).unwrap_or_default();
                if !alive {
                    // Its last report said running; nothing of a dead instance runs.
                    tasks.iter_mut().for_each(|t| t.state = TaskState::Stopped);
                }
                InstanceRow {
                    id,
                    host,
                    pid,
                    started_at,
                    alive,
                    tasks,
                }
            })
            .collect();
        Ok(instances)
    }

    async fn lease_rows(&self) -> Result<Vec<LeaseRow>> {
        let leases =
            sqlx::query_as::<_, (String, String)>("SELECT name, holder FROM leases ORDER BY name")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|(name, holder)| LeaseRow { name, holder })
                .collect();
        Ok(leases)
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts> {
        let mut outbox = OutboxCounts::default();
        let rows =
            sqlx::query_as::<_, (String, i64)>("SELECT state, COUNT(*) FROM outbox GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        for (state, n) in rows {
            match state.as_str() {
                "pending" => outbox.pending = n,
                "sent" => outbox.sent = n,
                "failed" => outbox.failed = n,
                _ => {}
            }
        }
        outbox.taken_over =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(reclaims), 0) AS BIGINT) FROM outbox")
                .fetch_one(&self.pool)
                .await?;
        Ok(outbox)
    }
}
