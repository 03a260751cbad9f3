//! The background tasks of each gateway instance, as its supervisor reports them, so that
//! `mticket instances` (another process) can show which task runs, which was restarted and
//! why. Rows belong to their instance and go when it signs off (see `instances.rs`).
use super::{Result, Store};

/// Where a supervised task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Running,
    /// It ended unexpectedly and waits for its next start.
    Restarting,
    /// Ended for good: the gateway is stopping, or the instance is gone.
    Stopped,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Restarting => "restarting",
            TaskState::Stopped => "stopped",
        }
    }

    /// A state as stored; an unknown word (from a newer gateway) reads as running.
    fn parse(word: &str) -> TaskState {
        match word {
            "restarting" => TaskState::Restarting,
            "stopped" => TaskState::Stopped,
            _ => TaskState::Running,
        }
    }
}

/// One supervised task of an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskReport {
    pub name: String,
    pub state: TaskState,
    /// Times it ended unexpectedly and was started again.
    pub restarts: i64,
    /// Why it last ended unexpectedly (a panic's message, or the error it returned).
    pub last_failure: Option<String>,
}

impl Store {
    /// Records the states of this instance's tasks, replacing what it reported before.
    pub async fn report_tasks(&self, tasks: &[TaskReport]) -> Result<()> {
        let mut tx = self.begin().await?;
        let conn = tx.conn().await?;
        for t in tasks {
            sqlx::query(
                "INSERT INTO instance_tasks (instance, name, state, restarts, last_failure) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (instance, name) DO UPDATE SET state = excluded.state, \
                 restarts = excluded.restarts, last_failure = excluded.last_failure",
            )
            .bind(self.instance.to_string())
            .bind(t.name.clone())
            .bind(t.state.as_str())
            .bind(t.restarts)
            .bind(t.last_failure.clone())
            .execute(&mut *conn)
            .await?;
        }
        tx.commit().await
    }

    /// Every instance's tasks as last reported, by instance id, each list by task name.
    pub(super) async fn tasks_by_instance(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<TaskReport>>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64, Option<String>)>(
            "SELECT instance, name, state, restarts, last_failure FROM instance_tasks \
             ORDER BY instance, name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tasks: std::collections::HashMap<String, Vec<TaskReport>> = Default::default();
        for (instance, name, state, restarts, last_failure) in rows {
            tasks.entry(instance).or_default().push(TaskReport {
                name,
                state: TaskState::parse(&state),
                restarts,
                last_failure,
            });
        }
        Ok(tasks)
    }
}
