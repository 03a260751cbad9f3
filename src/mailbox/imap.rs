//! The agents' IMAP server: imap-next's sans-I/O `Server` (parsing, literals, response
//! encoding) driven over a [`SessionStream`], so STARTTLS upgrades the same stream the
//! SMTP side uses. This file is the session loop and the not-authenticated state; the
//! mailbox commands come with the folder model.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::core::Vec1;
use imap_next::imap_types::response::{Capability, Data, Greeting, Status};
use imap_next::server::{Error as ProtocolError, Event, Options, ResponseHandle, Server};
use imap_next::{Interrupt, Io, State};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::core::model::Agent;
use crate::login::Logins;
use crate::net::guard::LoginGuard;
use crate::net::listener::{Listener, SessionStream, Shutdown};

const READ_CHUNK: usize = 16 * 1024;

#[derive(Clone)]
pub struct ImapConfig {
    /// STARTTLS is offered only when set (and the session is not TLS already).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// LOGIN and AUTHENTICATE without TLS: only on a loopback listener, when configured.
    pub allow_plain: bool,
    /// Waiting for the client longer than this ends the session (BYE).
    pub idle_timeout: Duration,
    /// Bad commands tolerated per session before BYE.
    pub max_errors: usize,
    /// Largest literal (APPEND) and largest command line accepted.
    pub max_literal: u32,
    pub max_command: u32,
    /// The session starts with a TLS handshake (port 993), using `tls`.
    pub implicit_tls: bool,
    /// Failed logins: delay, then temporary lockout (shared with the other ports).
    pub guard: Arc<LoginGuard>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            tls: None,
            allow_plain: false,
            idle_timeout: Duration::from_secs(30 * 60),
            max_errors: 20,
            max_literal: 25 * 1024 * 1024,
            max_command: 64 * 1024,
            implicit_tls: false,
            guard: Arc::new(LoginGuard::default()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::net::listener::ListenerError),
}

/// What the session loop needs next from the stream.
enum Step {
    Event(Event),
    Error(ProtocolError),
    Closed,
}

struct Session<S> {
    stream: Option<SessionStream<S>>,
    logins: Arc<Logins>,
    /// Set by a successful LOGIN.
    agent: Option<Agent>,
    server: Server,
    cfg: Arc<ImapConfig>,
    shutdown: Shutdown,
    peer: Option<SocketAddr>,
    buf: Vec<u8>,
    errors: usize,
    /// Close once this response is sent (the last of LOGOUT, or a BYE).
    close_after: Option<ResponseHandle>,
    /// Close instead of reading more.
    closing: bool,
    /// Upgrade to TLS once the tagged OK to STARTTLS is sent.
    starttls: bool,
}

fn options(cfg: &ImapConfig) -> Options {
    let mut o = Options::default();
    o.max_literal_size = cfg.max_literal;
    o.max_command_size = cfg.max_literal.saturating_add(cfg.max_command);
    o.crlf_relaxed = true;
    o
}

/// Runs the server on a bound listener until `shutdown`.
pub async fn serve(listener: Listener, cfg: ImapConfig, logins: Arc<Logins>, shutdown: Shutdown) {
    let cfg = Arc::new(cfg);
    listener
        .run(shutdown, move |tcp, peer, shutdown| {
            let cfg = cfg.clone();
            let logins = logins.clone();
            async move {
                let Some(stream) = SessionStream::accepted(
                    tcp,
                    peer,
                    cfg.implicit_tls,
                    cfg.tls.clone(),
                    cfg.idle_timeout,
                )
                .await
                else {
                    return;
                };
                if let Err(e) = run_session(stream, Some(peer), cfg, logins, shutdown).await {
                    tracing::debug!(%peer, error = %e, "IMAP session ended with error");
                }
            }
        })
        .await;
}

/// One IMAP session over any stream (tests use `tokio::io::duplex`).
pub async fn run_session<S>(
    stream: SessionStream<S>,
    peer: Option<SocketAddr>,
    cfg: Arc<ImapConfig>,
    logins: Arc<Logins>,
    shutdown: Shutdown,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let greeting = Greeting::ok(None, "mticket ready").expect("valid greeting");
    let mut session = Session {
        stream: Some(stream),
        logins,
        agent: None,
        server: Server::new(options(&cfg), greeting),
        cfg,
        shutdown,
        peer,
        buf: vec![0; READ_CHUNK],
        errors: 0,
        close_after: None,
        closing: false,
        starttls: false,
    };
    session.run().await
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) -> Result<(), SessionError> {
        loop {
            match self.step().await? {
                Step::Closed => return Ok(()),
                Step::Error(e) => {
                    self.errors += 1;
                    let (text, discarded) = match &e {
                        ProtocolError::LiteralTooLong { discarded_bytes } => {
                            ("literal too long", discarded_bytes)
                        }
                        ProtocolError::CommandTooLong { discarded_bytes } => {
                            ("command too long", discarded_bytes)
                        }
                        ProtocolError::ExpectedCrlfGotLf { discarded_bytes }
                        | ProtocolError::MalformedMessage { discarded_bytes } => {
                            ("unknown command or bad arguments", discarded_bytes)
                        }
                    };
                    let status = match tag_of(discarded.declassify()) {
                        Some(tag) => Status::bad(Some(tag), None, text),
                        None => Status::bad(None, None, text),
                    };
                    self.server.enqueue_status(status.expect("valid status"));
                }
                Step::Event(Event::CommandReceived { command }) => self.command(command).await,
                Step::Event(Event::ResponseSent { handle, .. }) => {
                    if self.close_after == Some(handle) {
                        return Ok(());
                    }
                    if self.starttls {
                        self.starttls = false;
                        self.upgrade().await?;
                    }
                }
                Step::Event(Event::GreetingSent { .. }) => {}
                Step::Event(Event::CommandAuthenticateReceived {
                    command_authenticate,
                }) => {
                    let status = Status::no(
                        Some(command_authenticate.tag),
                        None,
                        "AUTHENTICATE is not available yet",
                    )
                    .expect("valid status");
                    // A mechanism the server does not take ends the exchange at once.
                    let _ = self.server.authenticate_finish(status);
                }
                Step::Event(Event::AuthenticateDataReceived { .. }) => {}
                Step::Event(Event::IdleCommandReceived { tag }) => {
                    let status =
                        Status::no(Some(tag), None, "IDLE needs a selected folder").expect("valid");
                    let _ = self.server.idle_reject(status);
                }
                Step::Event(Event::IdleDoneReceived) => {}
            }
            if self.errors > self.cfg.max_errors {
                self.bye("too many bad commands");
            }
        }
    }

    /// Drives the protocol state until its next event: writes what it has to send, reads
    /// when it needs input.
    async fn step(&mut self) -> Result<Step, SessionError> {
        loop {
            match self.server.next() {
                Ok(event) => return Ok(Step::Event(event)),
                Err(Interrupt::Error(e)) => return Ok(Step::Error(e)),
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    let stream = self.stream.as_mut().expect("stream outside an upgrade");
                    stream.write_all(&bytes).await?;
                    stream.flush().await?;
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    if self.closing {
                        return Ok(Step::Closed);
                    }
                    let stream = self.stream.as_mut().expect("stream outside an upgrade");
                    let read = tokio::select! {
                        r = tokio::time::timeout(self.cfg.idle_timeout, stream.read(&mut self.buf)) => r,
                        _ = self.shutdown.wait() => {
                            self.bye("server shutting down");
                            continue;
                        }
                    };
                    match read {
                        Ok(Ok(0)) => return Ok(Step::Closed),
                        Ok(Ok(n)) => self.server.enqueue_input(&self.buf[..n]),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => {
                            tracing::debug!(peer = ?self.peer, "IMAP session idle too long");
                            self.bye("idle too long");
                        }
                    }
                }
            }
        }
    }

    async fn command(&mut self, command: Command<'static>) {
        let tag = command.tag;
        match command.body {
            CommandBody::Login { username, password } if self.agent.is_none() => {
                let login = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(tag, &login, &password).await;
            }
            CommandBody::Capability => {
                self.server
                    .enqueue_data(Data::Capability(self.capabilities()));
                self.ok(tag, "CAPABILITY completed");
            }
            CommandBody::Noop => {
                self.ok(tag, "NOOP completed");
            }
            CommandBody::Logout => {
                self.server
                    .enqueue_status(Status::bye(None, "logging out").expect("valid"));
                let last = self.ok(tag, "LOGOUT completed");
                self.close_after = Some(last);
                self.closing = true;
            }
            CommandBody::StartTLS => {
                let is_tls = self.stream.as_ref().is_some_and(SessionStream::is_tls);
                if is_tls || self.cfg.tls.is_none() || self.agent.is_some() {
                    self.bad(tag, "STARTTLS is not available here");
                } else {
                    self.ok(tag, "begin TLS negotiation now");
                    self.starttls = true;
                }
            }
            _ => {
                self.errors += 1;
                self.bad(tag, "command not available in this state");
            }
        }
    }

    async fn login(&mut self, tag: Tag<'static>, login: &str, password: &str) {
        let is_tls = self.stream.as_ref().is_some_and(SessionStream::is_tls);
        if !is_tls && !self.cfg.allow_plain {
            self.no(tag, "LOGIN needs TLS: say STARTTLS first, or use port 993");
            return;
        }
        let ip = self
            .peer
            .map(|p| p.ip())
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let guard = self.cfg.guard.clone();
        if guard.locked(ip, login).is_some() {
            self.no(tag, "too many failed logins: try again later");
            return;
        }
        match self.logins.check(login, password).await {
            Ok(Some(agent)) => {
                guard.succeeded(ip, login);
                tracing::info!(agent = %agent.login, peer = ?self.peer, "IMAP login");
                self.agent = Some(agent);
                self.ok(tag, "LOGIN completed");
            }
            Ok(None) => {
                let delay = guard.failed(ip, login);
                tracing::info!(peer = ?self.peer, "IMAP login failed");
                tokio::time::sleep(delay).await;
                self.no(tag, "wrong login or password");
            }
            Err(e) => {
                tracing::warn!(error = %e, "IMAP login could not be checked");
                self.no(tag, "login not possible right now: try again later");
            }
        }
    }

    fn capabilities(&self) -> Vec1<Capability<'static>> {
        let is_tls = self.stream.as_ref().is_some_and(SessionStream::is_tls);
        let mut caps = vec![Capability::Imap4Rev1];
        if !is_tls && self.cfg.tls.is_some() {
            caps.push(Capability::StartTls);
        }
        if !is_tls && !self.cfg.allow_plain {
            caps.push(Capability::LoginDisabled);
        }
        // Extensions are announced as they are served.
        Vec1::try_from(caps).expect("not empty")
    }

    /// TLS over the same connection; the protocol state starts afresh, so nothing the client
    /// sent before the handshake is read as a command after it.
    async fn upgrade(&mut self) -> Result<(), SessionError> {
        let tls = self.cfg.tls.clone().expect("offered only with TLS");
        let stream = self.stream.take().expect("stream before the upgrade");
        let upgraded = stream.upgrade(&TlsAcceptor::from(tls)).await?;
        self.stream = Some(upgraded);
        // A fresh state sends a greeting first: that one is dropped, not written.
        let greeting = Greeting::ok(None, "mticket ready").expect("valid greeting");
        self.server = Server::new(options(&self.cfg), greeting);
        loop {
            match self.server.next() {
                Ok(Event::GreetingSent { .. }) => return Ok(()),
                Err(Interrupt::Io(Io::Output(_))) => {}
                _ => return Ok(()),
            }
        }
    }

    fn ok(&mut self, tag: Tag<'static>, text: &'static str) -> ResponseHandle {
        self.server
            .enqueue_status(Status::ok(Some(tag), None, text).expect("valid status"))
    }

    fn no(&mut self, tag: Tag<'static>, text: &'static str) {
        self.server
            .enqueue_status(Status::no(Some(tag), None, text).expect("valid status"));
    }

    fn bad(&mut self, tag: Tag<'static>, text: &'static str) {
        self.server
            .enqueue_status(Status::bad(Some(tag), None, text).expect("valid status"));
    }

    fn bye(&mut self, text: &'static str) {
        let last = self
            .server
            .enqueue_status(Status::bye(None, text).expect("valid status"));
        self.close_after = Some(last);
        self.closing = true;
    }
}

/// The tag of a line the parser gave up on, when it starts with one: the client then gets
/// its BAD tagged and does not wait for an answer that never comes.
fn tag_of(line: &[u8]) -> Option<Tag<'static>> {
    let end = line.iter().position(|&b| b == b' ')?;
    Tag::try_from(String::from_utf8(line[..end].to_vec()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn talk(lines: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = Shutdown::channel();
        let cfg = Arc::new(ImapConfig::default());
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            cfg,
            Arc::new(Logins::new(store)),
            shutdown,
        ));
        let (mut r, mut w) = tokio::io::split(client);
        for l in lines {
            w.write_all(l.as_bytes()).await.unwrap();
        }
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), r.read_to_string(&mut out))
            .await
            .expect("the session ends")
            .unwrap();
        task.await.unwrap().unwrap();
        out
    }

    #[tokio::test]
    async fn greets_answers_capability_and_logs_out() {
        let out = talk(&["a1 CAPABILITY\r\n", "a2 NOOP\r\n", "a3 LOGOUT\r\n"]).await;
        assert!(out.starts_with("* OK mticket ready\r\n"), "{out}");
        assert!(out.contains("* CAPABILITY IMAP4REV1"), "{out}");
        assert!(out.contains("LOGINDISABLED"), "{out}");
        assert!(out.contains("a1 OK"), "{out}");
        assert!(out.contains("a2 OK"), "{out}");
        assert!(out.contains("* BYE"), "{out}");
        assert!(out.ends_with("a3 OK LOGOUT completed\r\n"), "{out}");
    }

    #[tokio::test]
    async fn garbage_gets_bad_and_the_session_goes_on() {
        let out = talk(&[
            "\x01\x02 garbage (((\r\n",
            "a1 FROBNICATE\r\n",
            "a2 LOGOUT\r\n",
        ])
        .await;
        assert!(out.contains("* BAD"), "{out}");
        assert!(out.contains("a1 BAD unknown command"), "{out}");
        assert!(out.ends_with("a2 OK LOGOUT completed\r\n"), "{out}");
    }

    #[tokio::test]
    async fn login_without_tls_is_refused() {
        let out = talk(&["a1 LOGIN anna secret\r\n", "a2 LOGOUT\r\n"]).await;
        assert!(out.contains("a1 NO LOGIN needs TLS"), "{out}");
    }
}
