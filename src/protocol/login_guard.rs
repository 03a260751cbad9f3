//! Login attempts on every port with a password (SMTP submission, IMAP, POP3): one
//! sequence, [`LoginGuard::attempt`], whose [`LoginOutcome`] each protocol turns into its
//! own reply.
//!
//! The guard: each failure delays the answer a little more, and too many failures for one
//! login from one address lock that pair out for a while. Counting per address and login
//! keeps a stranger from locking an agent out from elsewhere; a separate, higher limit per
//! address stops guessing across many logins.
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Failures of one login from one address before it is locked out.
    pub max_failures: u32,
    /// How long a lockout lasts; failures older than this are forgotten.
    pub lockout: Duration,
    /// Added to the answer's delay with every failure, up to five times.
    pub delay_step: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_failures: 5,
            lockout: Duration::from_secs(300),
            delay_step: Duration::from_secs(1),
        }
    }
}

/// What checking a login and password answered.
#[derive(Debug)]
pub enum Checked<A> {
    /// The password is right: the session is this agent's.
    Agent(A),
    /// Wrong login or password.
    Wrong,
    /// The password is right, but the agent has the most sessions open already.
    TooManySessions,
}

/// How a login attempt ended; each protocol answers it in its own words.
#[derive(Debug)]
pub enum LoginOutcome<A> {
    LoggedIn(A),
    /// Wrong login or password; the guard's delay has been waited.
    Refused,
    /// Too many failures: locked out for this long, the password was not checked.
    Locked(Duration),
    /// The agent has the most sessions open already.
    TooManySessions,
    /// The check itself failed (the store is away): try again later. Logged here.
    Unavailable,
}

/// Failures per address across all logins before the address is locked out.
const ADDRESS_FACTOR: u32 = 4;

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct LoginGuard {
    config: GuardConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_login: HashMap<(IpAddr, String), Failures>,
    by_address: HashMap<IpAddr, Failures>,
}

impl LoginGuard {
    pub fn new(config: GuardConfig) -> LoginGuard {
        LoginGuard {
            config,
            state: Mutex::default(),
        }
    }

    /// One login attempt from `peer` on `protocol` (for the log): refused at once while
    /// locked out, else `check`
    /// decides; a wrong password is counted and answered after the guard's delay, a right
    /// one clears this login's failures. A session without a peer address (an in-memory
    /// stream) counts as the unspecified address, never as a trusted one.
    pub async fn attempt<A, E: Display>(
        &self,
        protocol: &'static str,
        peer: Option<SocketAddr>,
        login: &str,
        check: impl Future<Output = Result<Checked<A>, E>>,
    ) -> LoginOutcome<A> {
        let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        if let Some(wait) = self.locked(ip, login) {
            tracing::warn!(protocol, ?peer, login, "login refused: temporarily locked");
            return LoginOutcome::Locked(wait);
        }
        match check.await {
            Ok(Checked::Agent(agent)) => {
                self.succeeded(ip, login);
                tracing::info!(protocol, ?peer, login, "agent logged in");
                LoginOutcome::LoggedIn(agent)
            }
            Ok(Checked::TooManySessions) => {
                self.succeeded(ip, login);
                tracing::info!(protocol, ?peer, login, "login refused: too many sessions");
                LoginOutcome::TooManySessions
            }
            Ok(Checked::Wrong) => {
                let delay = self.failed(ip, login);
                tracing::warn!(protocol, ?peer, login, "login failed");
                // Slows guessing down; the session holds its place meanwhile.
                tokio::time::sleep(delay).await;
                LoginOutcome::Refused
            }
            Err(e) => {
                tracing::error!(protocol, ?peer, login, error = %e, "cannot check a login");
                LoginOutcome::Unavailable
            }
        }
    }

    /// `Some(remaining)` while this login from this address is locked out.
    fn locked(&self, ip: IpAddr, login: &str) -> Option<Duration> {
        self.locked_at(ip, login, Instant::now())
    }

    /// Records a failure; returns how long to wait before answering it.
    fn failed(&self, ip: IpAddr, login: &str) -> Duration {
        self.failed_at(ip, login, Instant::now())
    }

    /// A correct password clears the failures of this login from this address.
    fn succeeded(&self, ip: IpAddr, login: &str) {
        let mut state = self.lock();
        state.by_login.remove(&(ip, login.to_lowercase()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters only: keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn locked_at(&self, ip: IpAddr, login: &str, now: Instant) -> Option<Duration> {
        let state = self.lock();
        let key = (ip, login.to_lowercase());
        let limits = [
            (state.by_login.get(&key), self.config.max_failures),
            (
                state.by_address.get(&ip),
                self.config.max_failures * ADDRESS_FACTOR,
            ),
        ];
        limits
            .into_iter()
            .filter_map(|(f, max)| {
                let f = f?;
                let since = now.duration_since(f.last?);
                (f.count >= max && since < self.config.lockout).then(|| self.config.lockout - since)
            })
            .max()
    }

    fn failed_at(&self, ip: IpAddr, login: &str, now: Instant) -> Duration {
        let mut state = self.lock();
        let lockout = self.config.lockout;
        let bump = |f: &mut Failures| {
            if f.last.is_some_and(|l| now.duration_since(l) >= lockout) {
                f.count = 0;
            }
            f.count += 1;
            f.last = Some(now);
            f.count
        };
        let count = bump(
            state
                .by_login
                .entry((ip, login.to_lowercase()))
                .or_default(),
        );
        bump(state.by_address.entry(ip).or_default());
        // Old entries would otherwise pile up under a long guessing run.
        if state.by_login.len() > 10_000 {
            state
                .by_login
                .retain(|_, f| f.last.is_some_and(|l| now.duration_since(l) < lockout));
            state
                .by_address
                .retain(|_, f| f.last.is_some_and(|l| now.duration_since(l) < lockout));
        }
        self.config.delay_step * count.min(5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> LoginGuard {
        LoginGuard::new(GuardConfig {
            max_failures: 3,
            lockout: Duration::from_secs(60),
            delay_step: Duration::from_millis(10),
        })
    }

    #[test]
    fn locks_after_the_limit_and_forgets_after_the_lockout() {
        let g = guard();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(g.failed_at(ip, "anna", t0), Duration::from_millis(10));
        assert_eq!(g.failed_at(ip, "Anna", t0), Duration::from_millis(20));
        assert!(g.locked_at(ip, "anna", t0).is_none());
        g.failed_at(ip, "anna", t0);
        assert_eq!(
            g.locked_at(ip, "anna", t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        // Another address, another login: not locked.
        assert!(
            g.locked_at("192.0.2.2".parse().unwrap(), "anna", t0)
                .is_none()
        );
        assert!(g.locked_at(ip, "ben", t0).is_none());
        assert!(
            g.locked_at(ip, "anna", t0 + Duration::from_secs(61))
                .is_none()
        );
        g.failed_at(ip, "anna", t0 + Duration::from_secs(61));
        assert!(
            g.locked_at(ip, "anna", t0 + Duration::from_secs(61))
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_attempt_ends_in_one_outcome() {
        let g = guard();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let answer = |c: Checked<u8>| async move { Ok::<_, std::io::Error>(c) };
        let wrong = g
            .attempt("test", Some(peer), "anna", answer(Checked::Wrong))
            .await;
        assert!(matches!(wrong, LoginOutcome::Refused));
        let busy = g
            .attempt("test", Some(peer), "anna", answer(Checked::TooManySessions))
            .await;
        assert!(matches!(busy, LoginOutcome::TooManySessions));
        let down = g
            .attempt("test", Some(peer), "anna", async {
                Err::<Checked<u8>, _>(std::io::Error::other("down"))
            })
            .await;
        assert!(matches!(down, LoginOutcome::Unavailable));
        for _ in 0..3 {
            g.attempt("test", None, "ben", answer(Checked::Wrong)).await;
        }
        // Without a peer address the failures count for the unspecified address, not for
        // the peer's (nor for localhost).
        let locked = g
            .attempt("test", None, "ben", answer(Checked::Agent(1)))
            .await;
        assert!(matches!(locked, LoginOutcome::Locked(_)));
        let ok = g
            .attempt("test", Some(peer), "ben", answer(Checked::Agent(1)))
            .await;
        assert!(matches!(ok, LoginOutcome::LoggedIn(1)));
    }

    #[test]
    fn success_clears_and_many_logins_lock_the_address() {
        let g = guard();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        g.failed_at(ip, "anna", t0);
        g.failed_at(ip, "anna", t0);
        g.succeeded(ip, "anna");
        g.failed_at(ip, "anna", t0);
        assert!(g.locked_at(ip, "anna", t0).is_none());
        for i in 0..12 {
            g.failed_at(ip, &format!("user{i}"), t0);
        }
        assert!(g.locked_at(ip, "someone-else", t0).is_some());
    }
}
