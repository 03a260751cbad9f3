//! The mail ports `serve` opens, all through [`Ports::open`]: inbound SMTP and LMTP for
//! customers' mail, SMTP submission for agents, and the agents' IMAP and POP3, each also
//! with implicit TLS where the protocol has it.
//!
//! A port that cannot be bound at start ends `serve` with the reason: a taken or mistyped
//! address is the admin's to fix, and a gateway without one of its ports must not look
//! started. A listener that fails later is restarted by the supervisor on a fresh bind of
//! the same address (its sessions were lost with it either way): ending the gateway would
//! take intake, the outbox and every other port down for a fault in one, while a restart
//! shows up in `mticket instances` with its cause and backs off while the address stays
//! unusable.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use super::Gateway;
use super::supervisor::Supervisor;
use crate::config::Config;
use crate::login::Logins;
use crate::mailbox::maildrop::TicketMaildrop;
use crate::mailbox::view::Mailbox;
use crate::net::listener::{Listener, ListenerConfig, ListenerError, Shutdown};
use crate::protocol::imap_server::{self, ImapConfig};
use crate::protocol::login_guard::{GuardConfig, LoginGuard};
use crate::protocol::pop3_server::{self, Pop3Config};
use crate::protocol::smtp_server::{self, AuthPolicy, Mode, SmtpConfig};
use crate::submission::Submission;

/// A mail port: its name in the configuration (`listen.<name>`) and in `mticket
/// instances`, and what it says when it has too many connections.
#[derive(Debug, Clone, Copy)]
struct Port {
    name: &'static str,
    /// The session starts with a TLS handshake: nothing plain may be said before it.
    implicit_tls: bool,
    busy_reply: &'static [u8],
}

const SMTP_BUSY: &[u8] = b"421 4.7.0 too many connections, try again later\r\n";
const IMAP_BUSY: &[u8] = b"* BYE too many connections, try again later\r\n";
const POP3_BUSY: &[u8] = b"-ERR [SYS/TEMP] too many connections\r\n";

const fn port(name: &'static str, implicit_tls: bool, busy_reply: &'static [u8]) -> Port {
    Port {
        name,
        implicit_tls,
        busy_reply,
    }
}

const INBOUND: Port = port("inbound", false, SMTP_BUSY);
const LMTP: Port = port("lmtp", false, SMTP_BUSY);
const SUBMISSION: Port = port("submission", false, SMTP_BUSY);
const SUBMISSIONS: Port = port("submissions", true, SMTP_BUSY);
const IMAP: Port = port("imap", false, IMAP_BUSY);
const IMAPS: Port = port("imaps", true, IMAP_BUSY);
const POP3: Port = port("pop3", false, POP3_BUSY);
const POP3S: Port = port("pop3s", true, POP3_BUSY);

/// Opens every configured port under `supervisor`.
pub(super) async fn open_all(
    supervisor: &mut Supervisor,
    gateway: &Gateway,
    tls: Arc<rustls::ServerConfig>,
) -> anyhow::Result<()> {
    let config = &gateway.config;
    let mut ports = Ports {
        supervisor,
        config,
        tls,
        // Failed logins count on every port alike.
        guard: Arc::new(LoginGuard::new(GuardConfig {
            max_failures: config.submission.max_auth_failures,
            lockout: config.submission.lockout,
            delay_step: config.submission.auth_failure_delay,
        })),
    };
    // An agent's sessions count on every port alike.
    let logins = Arc::new(Logins::new(gateway.store.clone()));
    ports.open_intake(gateway).await?;
    ports.open_submission(gateway, &logins).await?;
    ports.open_imap(&logins, &gateway.mailbox).await?;
    ports.open_pop3(&logins, &gateway.mailbox).await
}

struct Ports<'a> {
    supervisor: &'a mut Supervisor,
    config: &'a Config,
    tls: Arc<rustls::ServerConfig>,
    guard: Arc<LoginGuard>,
}

impl Ports<'_> {
    /// Binds `port` at its configured address (none: the port stays closed) and runs it
    /// under the supervisor as the task of the port's name: `protocol(addr)` gives what
    /// serves a bound listener until shutdown.
    async fn open<P, S, F>(&mut self, port: Port, protocol: P) -> anyhow::Result<()>
    where
        P: FnOnce(SocketAddr) -> S,
        S: Fn(Listener, Shutdown) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(addr) = self.config.listen.addr(port.name)? else {
            return Ok(());
        };
        let settings = listener_config(self.config, port, addr);
        let mut bound = Some(
            Listener::bind(settings.clone())
                .await
                .with_context(|| format!("cannot listen on {addr} ({})", port.name))?,
        );
        tracing::info!(%addr, "{} listener ready", port.name);
        let serve = Arc::new(protocol(addr));
        self.supervisor.spawn(port.name, move |shutdown| {
            let (first, settings, serve) = (bound.take(), settings.clone(), serve.clone());
            async move {
                let listener = match first {
                    Some(listener) => listener,
                    None => Listener::bind(settings).await?,
                };
                serve(listener, shutdown).await;
                Ok::<(), ListenerError>(())
            }
        });
        Ok(())
    }

    /// Customers' mail: inbound SMTP and LMTP into the intake pipeline.
    async fn open_intake(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        for (port, mode) in [(INBOUND, Mode::Smtp), (LMTP, Mode::Lmtp)] {
            let mut smtp = SmtpConfig::new(mode, self.config.hostname.clone());
            smtp.max_size = self.config.intake.max_message_size.as_u64() as usize;
            smtp.tls = Some(self.tls.clone());
            let pipeline = gateway.pipeline.clone();
            self.open(port, move |_| {
                move |listener, shutdown| {
                    smtp_server::serve(listener, smtp.clone(), pipeline.clone(), shutdown)
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Agents' mail: SMTP submission with AUTH, to ticket replies and comments.
    async fn open_submission(
        &mut self,
        gateway: &Gateway,
        logins: &Arc<Logins>,
    ) -> anyhow::Result<()> {
        let submission = Arc::new(Submission::new(
            gateway.store.clone(),
            gateway.config.clone(),
            gateway.wake.clone(),
            logins.clone(),
        ));
        for port in [SUBMISSION, SUBMISSIONS] {
            let mut smtp = SmtpConfig::new(Mode::Smtp, self.config.hostname.clone());
            smtp.max_size = self.config.intake.max_message_size.as_u64() as usize;
            smtp.tls = Some(self.tls.clone());
            smtp.implicit_tls = port.implicit_tls;
            let (guard, submission) = (self.guard.clone(), submission.clone());
            let allow_plain = self.config.submission.allow_plain_on_loopback;
            self.open(port, move |addr| {
                smtp.auth = Some(AuthPolicy {
                    allow_plain: allow_plain && addr.ip().is_loopback(),
                    guard,
                });
                move |listener, shutdown| {
                    smtp_server::serve(listener, smtp.clone(), submission.clone(), shutdown)
                }
            })
            .await?;
        }
        Ok(())
    }

    /// The agents' mailbox over IMAP.
    async fn open_imap(&mut self, logins: &Arc<Logins>, mailbox: &Mailbox) -> anyhow::Result<()> {
        for port in [IMAP, IMAPS] {
            let (tls, guard) = (self.tls.clone(), self.guard.clone());
            let allow_plain = self.config.submission.allow_plain_on_loopback;
            let (logins, mailbox) = (logins.clone(), mailbox.clone());
            self.open(port, move |addr| {
                let imap = ImapConfig {
                    tls: Some(tls),
                    implicit_tls: port.implicit_tls,
                    allow_plain: allow_plain && addr.ip().is_loopback(),
                    guard,
                    ..ImapConfig::default()
                };
                move |listener, shutdown| {
                    imap_server::serve(
                        listener,
                        imap.clone(),
                        logins.clone(),
                        mailbox.clone(),
                        shutdown,
                    )
                }
            })
            .await?;
        }
        Ok(())
    }

    /// The agents' INBOX over POP3.
    async fn open_pop3(&mut self, logins: &Arc<Logins>, mailbox: &Mailbox) -> anyhow::Result<()> {
        let maildrop = Arc::new(TicketMaildrop::new(mailbox.clone()));
        for port in [POP3, POP3S] {
            let (tls, guard) = (self.tls.clone(), self.guard.clone());
            let allow_plain = self.config.submission.allow_plain_on_loopback;
            let (logins, maildrop) = (logins.clone(), maildrop.clone());
            self.open(port, move |addr| {
                let pop3 = Pop3Config {
                    tls: Some(tls),
                    implicit_tls: port.implicit_tls,
                    allow_plain: allow_plain && addr.ip().is_loopback(),
                    guard,
                    ..Pop3Config::default()
                };
                move |listener, shutdown| {
                    pop3_server::serve(
                        listener,
                        pop3.clone(),
                        logins.clone(),
                        maildrop.clone(),
                        shutdown,
                    )
                }
            })
            .await?;
        }
        Ok(())
    }
}

/// The listener's settings for `port` at `addr`: the one place they are made.
fn listener_config(config: &Config, port: Port, addr: SocketAddr) -> ListenerConfig {
    let mut settings = config.listen.listener(addr, port.name);
    // On an implicit-TLS port a plain line would be garbage to the client: just close.
    if !port.implicit_tls {
        settings.busy_reply = Some(port.busy_reply.to_vec());
    }
    settings
}
