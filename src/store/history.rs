//! The ticket history: who changed which field from what to what.
use super::{Arg, Result, Tx, now};

/// Who made a change, for the history.
#[derive(Debug, Clone)]
pub struct Actor {
    pub agent_id: Option<i64>,
    pub name: String,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            agent_id: None,
            name: "system".into(),
        }
    }
    pub fn customer(address: &str) -> Actor {
        Actor {
            agent_id: None,
            name: address.to_string(),
        }
    }
}

impl Tx {
    /// Queues a history entry.
    pub async fn history(
        &mut self,
        ticket_id: i64,
        actor: &Actor,
        field: &str,
        old: &str,
        new: &str,
    ) -> Result<()> {
        self.pending.history.push([
            Arg::Int(ticket_id),
            Arg::Int(now()),
            Arg::OptInt(actor.agent_id),
            Arg::Text(actor.name.clone()),
            Arg::Text(field.to_string()),
            Arg::Text(old.to_string()),
            Arg::Text(new.to_string()),
        ]);
        Ok(())
    }
}
