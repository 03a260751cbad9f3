//! Agents' logins, the same on every port (SMTP submission, IMAP, POP3): the agent by its
//! login name, read fresh (access may have changed), and its password checked against the
//! stored argon2id hash. An unknown login is checked against a dummy hash, so it takes as
//! long as a wrong password and does not tell which logins exist.
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Semaphore;

use crate::core::model::Agent;
use crate::core::password;
use crate::protocol::login_guard::Checked;
use crate::store::{Store, StoreError};

/// Password checks running at once: one per core. Each takes tens of milliseconds of CPU
/// and (with the default parameters) a 19 MiB block; 500 connections logging in at once
/// wait their turn here instead of claiming 9 GiB and every processor.
static CHECKS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    )
});

/// Sessions (IMAP, POP3 and SMTP submission) one agent may have open at once: Thunderbird
/// keeps up to five per account, an agent may run a few clients; more is a runaway client.
pub const MAX_SESSIONS_PER_AGENT: usize = 20;

pub struct Logins {
    store: Store,
    dummy_hash: tokio::sync::OnceCell<String>,
    sessions: Arc<Mutex<HashMap<i64, usize>>>,
    max_sessions: usize,
}

/// Why a login could not be checked (not: that it was wrong).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password check failed: {0}")]
    Check(String),
}

/// A logged-in agent and its place among the agent's open sessions (given back on drop).
pub struct AgentSession {
    pub agent: Agent,
    pub slot: SessionSlot,
}

/// One open session of an agent; dropping it ends it.
pub struct SessionSlot {
    sessions: Arc<Mutex<HashMap<i64, usize>>>,
    agent_id: i64,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.agent_id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.agent_id);
            }
        }
    }
}

impl Logins {
    pub fn new(store: Store) -> Logins {
        Logins::with_session_limit(store, MAX_SESSIONS_PER_AGENT)
    }

    pub fn with_session_limit(store: Store, max_sessions: usize) -> Logins {
        Logins {
            store,
            dummy_hash: tokio::sync::OnceCell::new(),
            sessions: Arc::default(),
            max_sessions,
        }
    }

    /// Checks the password and, when it is right, opens a session for the agent unless
    /// they have the most open already.
    pub async fn open(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Checked<AgentSession>, LoginError> {
        let Some(agent) = self.check(login, password).await? else {
            return Ok(Checked::Wrong);
        };
        Ok(match self.enter(agent.id) {
            Some(slot) => Checked::Agent(AgentSession { agent, slot }),
            None => Checked::TooManySessions,
        })
    }

    /// A session for the agent, unless they have the most open already.
    fn enter(&self, agent_id: i64) -> Option<SessionSlot> {
        let mut open = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(agent_id).or_default();
        if *n >= self.max_sessions {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            sessions: self.sessions.clone(),
            agent_id,
        })
    }

    /// The agent, when `password` is right; `Err` when the check itself failed.
    async fn check(&self, login: &str, password: &str) -> Result<Option<Agent>, LoginError> {
        let agent = match self.store.agent_by_login(login).await {
            Ok(a) => Some(a),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let hash = match &agent {
            Some(a) => a.password_hash.clone(),
            None => self
                .dummy_hash
                .get_or_init(|| async {
                    tokio::task::spawn_blocking(|| password::hash("no such login"))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default()
                })
                .await
                .clone(),
        };
        let ok = check_password(password, &hash).await?;
        Ok(agent.filter(|_| ok))
    }
}

/// Whether `password` matches the argon2 `hash`, off the async threads and at most one
/// check per core at a time.
async fn check_password(password: &str, hash: &str) -> Result<bool, LoginError> {
    let _turn = CHECKS
        .acquire()
        .await
        .map_err(|e| LoginError::Check(e.to_string()))?;
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .map_err(|e| LoginError::Check(e.to_string()))
}

/// Why a SASL PLAIN response (RFC 4616) was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed PLAIN response")]
    Malformed,
    #[error("login and password must be UTF-8")]
    NotUtf8,
    #[error("cannot log in as another agent")]
    OtherIdentity,
}

/// Login and password of a decoded PLAIN response (`authzid NUL authcid NUL passwd`). An
/// agent logs in as itself only: an authorization identity must be empty or the same.
pub fn plain_credentials(decoded: &[u8]) -> Result<(String, String), PlainError> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let (Ok(authz), Ok(user), Ok(pass)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(user),
        std::str::from_utf8(pass),
    ) else {
        return Err(PlainError::NotUtf8);
    };
    if !authz.is_empty() && authz != user {
        return Err(PlainError::OtherIdentity);
    }
    Ok((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[tokio::test]
    async fn an_agent_has_at_most_the_limit_of_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        let logins = Logins::with_session_limit(store, 2);
        let a = logins.enter(1).expect("first");
        let _b = logins.enter(1).expect("second");
        assert!(logins.enter(1).is_none(), "third refused");
        assert!(logins.enter(2).is_some(), "another agent is not affected");
        drop(a);
        assert!(logins.enter(1).is_some(), "a place is free again");
    }
}
