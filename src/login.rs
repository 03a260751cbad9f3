//! Agents' logins, the same on every port (SMTP submission, IMAP, POP3): the agent by its
//! login name, read fresh (access may have changed), and its password checked against the
//! stored argon2id hash. An unknown login is checked against a dummy hash, so it takes as
//! long as a wrong password and does not tell which logins exist.
use crate::core::model::Agent;
use crate::core::password;
use crate::net::guard;
use crate::store::{Store, StoreError};

pub struct Logins {
    store: Store,
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Logins {
    pub fn new(store: Store) -> Logins {
        Logins {
            store,
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }

    /// The agent, when `password` is right; `Err` when the check itself failed.
    pub async fn check(&self, login: &str, password: &str) -> Result<Option<Agent>, String> {
        let agent = match self.store.agent_by_login(login).await {
            Ok(a) => Some(a),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.to_string()),
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
        let ok = guard::check_password(password, &hash).await?;
        Ok(agent.filter(|_| ok))
    }
}
