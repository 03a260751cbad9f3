//! The agents' IMAP server: imap-next's sans-I/O `Server` (parsing, literals, response
//! encoding) driven over a [`SessionStream`], so STARTTLS upgrades the same stream the
//! SMTP side uses. This file is the session loop, login and the commands of any state;
//! `folders` (LIST, SELECT, APPEND, …), `fetch`, `changes` (STORE, COPY, MOVE, EXPUNGE)
//! and `search` hold the rest.
mod changes;
mod fetch;
mod folders;
mod reply;
mod search;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{Atom, IString, NString, Tag, Vec1};
use imap_next::imap_types::response::{
    Capability, Code, CodeOther, CommandContinuationRequest, Data, Greeting, Status,
};
use imap_next::server::{Error as ProtocolError, Event, Options, ResponseHandle, Server};
use imap_next::{Interrupt, Io, State};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::core::model::Agent;
use crate::login::Logins;
use crate::mailbox::view::Mailbox;
use crate::net::listener::{Listener, SessionClock, SessionStream, Shutdown};
use crate::protocol::login_guard::{LoginGuard, LoginOutcome};

const READ_CHUNK: usize = 16 * 1024;
/// Responses are written once this much is waiting (and always before reading).
const WRITE_CHUNK: usize = 64 * 1024;

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
    /// In IDLE, time to look for changes.
    Tick,
    Closed,
}

/// Unauthenticated sessions get this long to log in between commands.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

struct Session<S> {
    stream: Option<SessionStream<S>>,
    logins: Arc<Logins>,
    mailbox: Mailbox,
    /// Set by a successful LOGIN or AUTHENTICATE.
    agent: Option<Agent>,
    /// The agent's place among their open sessions, held while logged in.
    slot: Option<crate::login::SessionSlot>,
    /// The open folder (SELECT/EXAMINE).
    selected: Option<folders::Selected>,
    /// In IDLE: the folder is looked at again whenever `uids` tells of a new UID.
    idling: bool,
    /// The mailbox's last UID: every change of what a folder shows takes a new one, here or
    /// at another gateway instance (see [`crate::store::Store::mailbox_uids`]).
    uids: tokio::sync::watch::Receiver<i64>,
    /// The tag of an AUTHENTICATE waiting for the client's response.
    authenticating: Option<Tag<'static>>,
    /// Responses waiting to be written, sent together before the next read.
    out: Vec<u8>,
    server: Server,
    cfg: Arc<ImapConfig>,
    shutdown: Shutdown,
    clock: SessionClock,
    peer: Option<SocketAddr>,
    buf: Vec<u8>,
    errors: usize,
    /// Close once this response is sent (the last of LOGOUT, or a BYE).
    close_after: Option<ResponseHandle>,
    /// Close instead of reading more.
    closing: bool,
    /// Upgrade to TLS once the tagged OK to STARTTLS is sent.
    starttls: bool,
    /// The tag of the IDLE in progress.
    idle_tag: Option<Tag<'static>>,
    /// The last time the client sent something (an IDLE ends after `idle_timeout`).
    idle_since: std::time::Instant,
    /// A FETCH being answered in batches.
    job: Option<fetch::Job>,
    /// What the client sent while a FETCH was being answered, handled after it.
    deferred: std::collections::VecDeque<Event>,
    deferred_errors: std::collections::VecDeque<ProtocolError>,
    /// Line and literal sizes of what the client sends, checked as it arrives.
    limit: LineLimit,
    /// Over a limit: answered and closed before reading more.
    overflow: Option<(Overflow, Option<Tag<'static>>)>,
}

fn options(cfg: &ImapConfig) -> Options {
    let mut o = Options::default();
    o.max_literal_size = cfg.max_literal;
    o.max_command_size = cfg.max_literal.saturating_add(cfg.max_command);
    o.crlf_relaxed = true;
    o
}

/// Runs the server on a bound listener until `shutdown`.
pub async fn serve(
    listener: Listener,
    cfg: ImapConfig,
    logins: Arc<Logins>,
    mailbox: Mailbox,
    shutdown: Shutdown,
) {
    let cfg = Arc::new(cfg);
    let (implicit_tls, tls, timeout) = (cfg.implicit_tls, cfg.tls.clone(), cfg.idle_timeout);
    listener
        .run_sessions(
            shutdown,
            implicit_tls,
            tls,
            timeout,
            move |stream, peer, shutdown, clock| {
                let cfg = cfg.clone();
                let logins = logins.clone();
                let mailbox = mailbox.clone();
                async move {
                    if let Err(e) =
                        run_session(stream, Some(peer), cfg, logins, mailbox, shutdown, clock).await
                    {
                        tracing::debug!(%peer, error = %e, "IMAP session ended with error");
                    }
                }
            },
        )
        .await;
}

/// One IMAP session over any stream (tests use `tokio::io::duplex`).
pub async fn run_session<S>(
    stream: SessionStream<S>,
    peer: Option<SocketAddr>,
    cfg: Arc<ImapConfig>,
    logins: Arc<Logins>,
    mailbox: Mailbox,
    shutdown: Shutdown,
    clock: SessionClock,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let greeting = Greeting::ok(None, "mticket ready").expect("valid greeting");
    let mut session = Session {
        stream: Some(stream),
        logins,
        uids: mailbox.store().mailbox_uids(),
        mailbox,
        agent: None,
        slot: None,
        selected: None,
        idling: false,
        authenticating: None,
        out: Vec::new(),
        server: Server::new(options(&cfg), greeting),
        cfg,
        shutdown,
        clock,
        peer,
        buf: vec![0; READ_CHUNK],
        errors: 0,
        close_after: None,
        closing: false,
        starttls: false,
        idle_tag: None,
        idle_since: std::time::Instant::now(),
        job: None,
        deferred: Default::default(),
        deferred_errors: Default::default(),
        limit: LineLimit::default(),
        overflow: None,
    };
    session.run().await
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) -> Result<(), SessionError> {
        loop {
            if self.job.is_none()
                && let Some(event) = self.deferred.pop_front()
            {
                if self.event(event).await? {
                    return Ok(());
                }
                continue;
            }
            match self.step().await? {
                Step::Closed => return Ok(()),
                Step::Tick => {
                    if self.job.is_some() {
                        self.fetch_batch().await;
                    } else if self.idling {
                        self.refresh(true).await;
                    }
                }
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
                Step::Event(event) => {
                    if self.event(event).await? {
                        return Ok(());
                    }
                }
            }
            // Once: a second BYE would move `close_after` on, and so on without end.
            if self.errors > self.cfg.max_errors && !self.closing {
                self.bye("too many bad commands");
            }
        }
    }

    /// Handles one event of the protocol state; true when the session is over.
    async fn event(&mut self, event: Event) -> Result<bool, SessionError> {
        match event {
            Event::CommandReceived { command } => self.command(command).await,
            Event::ResponseSent { handle, .. } => {
                if self.close_after == Some(handle) {
                    return Ok(true);
                }
                if self.starttls {
                    self.starttls = false;
                    self.upgrade().await?;
                }
            }
            Event::GreetingSent { .. } => {}
            Event::CommandAuthenticateReceived {
                command_authenticate,
            } => {
                let tag = command_authenticate.tag;
                if self.agent.is_some() || command_authenticate.mechanism != AuthMechanism::Plain {
                    let status = Status::no(Some(tag), None, "use AUTHENTICATE PLAIN")
                        .expect("valid status");
                    let _ = self.server.authenticate_finish(status);
                } else if let Some(initial) = command_authenticate.initial_response {
                    self.authenticate_plain(tag, initial.declassify()).await;
                } else {
                    self.authenticating = Some(tag);
                    // An empty challenge: "+ " (a basic continuation cannot be empty).
                    let empty = CommandContinuationRequest::base64(Vec::new());
                    let _ = self.server.authenticate_continue(empty);
                }
            }
            Event::AuthenticateDataReceived { authenticate_data } => {
                let Some(tag) = self.authenticating.take() else {
                    return Ok(false);
                };
                match authenticate_data {
                    AuthenticateData::Continue(data) => {
                        self.authenticate_plain(tag, data.declassify()).await
                    }
                    AuthenticateData::Cancel => {
                        let status = Status::bad(Some(tag), None, "authentication cancelled")
                            .expect("valid status");
                        let _ = self.server.authenticate_finish(status);
                    }
                }
            }
            Event::IdleCommandReceived { tag } => {
                if self.selected.is_some() {
                    let go = CommandContinuationRequest::basic(None, "idling").expect("valid");
                    if self.server.idle_accept(go).is_ok() {
                        self.idling = true;
                        self.idle_tag = Some(tag);
                    }
                } else {
                    let status =
                        Status::no(Some(tag), None, "IDLE needs a selected folder").expect("valid");
                    let _ = self.server.idle_reject(status);
                }
            }
            Event::IdleDoneReceived => {
                self.idling = false;
                if let Some(tag) = self.idle_tag.take() {
                    self.ok(tag, "IDLE terminated");
                }
            }
        }
        Ok(false)
    }

    /// Drives the protocol state until its next event: collects what it has to send and
    /// writes it before reading. While a FETCH is still being answered, commands the client
    /// sent ahead wait (`deferred`) and the loop comes back for the next batch instead of
    /// reading.
    async fn step(&mut self) -> Result<Step, SessionError> {
        loop {
            match self.server.next() {
                // An ordinary response went out: keep collecting (written in bulk below).
                Ok(Event::ResponseSent { handle, .. })
                    if self.close_after != Some(handle) && !self.starttls => {}
                Ok(event) => {
                    let from_client = !matches!(
                        event,
                        Event::ResponseSent { .. } | Event::GreetingSent { .. }
                    );
                    if self.job.is_some() && from_client {
                        self.deferred.push_back(event);
                        continue;
                    }
                    self.write_out().await?;
                    return Ok(Step::Event(event));
                }
                Err(Interrupt::Error(e)) => {
                    if self.job.is_some() {
                        // Answered in order, after the FETCH: kept as a deferred BAD.
                        self.deferred_errors.push_back(e);
                        continue;
                    }
                    self.write_out().await?;
                    return Ok(Step::Error(e));
                }
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    self.out.extend_from_slice(&bytes);
                    if self.out.len() >= WRITE_CHUNK {
                        self.write_out().await?;
                    }
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    self.write_out().await?;
                    if self.closing {
                        return Ok(Step::Closed);
                    }
                    if self.job.is_some() {
                        return Ok(Step::Tick);
                    }
                    if let Some(e) = self.deferred_errors.pop_front() {
                        return Ok(Step::Error(e));
                    }
                    if let Some((over, tag)) = self.overflow.take() {
                        // What follows cannot be read as commands again: answer and close.
                        let text = match over {
                            Overflow::Line => "command line too long",
                            Overflow::Literal => "literal too long",
                        };
                        if let Some(tag) = tag {
                            self.bad(tag, text);
                        }
                        self.bye(text);
                        continue;
                    }
                    let timeout = if self.idling {
                        // From the last thing the client sent, not from the last news.
                        self.cfg
                            .idle_timeout
                            .saturating_sub(self.idle_since.elapsed())
                    } else if self.agent.is_none() {
                        self.clock
                            .read_timeout(LOGIN_TIMEOUT.min(self.cfg.idle_timeout))
                    } else {
                        self.cfg.idle_timeout
                    };
                    let stream = self.stream.as_mut().expect("stream outside an upgrade");
                    let idling = self.idling;
                    let read = tokio::select! {
                        r = tokio::time::timeout(timeout, stream.read(&mut self.buf)) => r,
                        Ok(()) = self.uids.changed(), if idling => return Ok(Step::Tick),
                        _ = self.shutdown.wait() => {
                            self.bye("server shutting down");
                            continue;
                        }
                    };
                    match read {
                        Ok(Ok(0)) => {
                            if self.limit.literal > 0 {
                                tracing::info!(
                                    peer = ?self.peer,
                                    missing = self.limit.literal,
                                    "client went away in the middle of a literal: the command is dropped"
                                );
                            }
                            return Ok(Step::Closed);
                        }
                        Ok(Ok(n)) => {
                            self.idle_since = std::time::Instant::now();
                            let (take, over) = self.limit.feed(
                                &self.buf[..n],
                                self.cfg.max_command,
                                self.cfg.max_literal,
                            );
                            self.server.enqueue_input(&self.buf[..take]);
                            self.overflow = over;
                        }
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

    async fn write_out(&mut self) -> Result<(), SessionError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let stream = self.stream.as_mut().expect("stream outside an upgrade");
        stream.write_all(&self.out).await?;
        stream.flush().await?;
        self.out.clear();
        if self.out.capacity() > 4 * WRITE_CHUNK {
            self.out.shrink_to(WRITE_CHUNK);
        }
        Ok(())
    }

    async fn command(&mut self, command: Command<'static>) {
        let tag = command.tag;
        match command.body {
            CommandBody::Capability => {
                self.server
                    .enqueue_data(Data::Capability(self.capabilities()));
                self.ok(tag, "CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                if self.selected.is_some() {
                    self.refresh(true).await;
                }
                self.ok(tag, "NOOP completed");
            }
            CommandBody::Logout => {
                self.server
                    .enqueue_status(Status::bye(None, "logging out").expect("valid"));
                let last = self.ok(tag, "LOGOUT completed");
                self.close_after = Some(last);
                self.closing = true;
            }
            CommandBody::Id { .. } => {
                let pair = |k: &str, v: &str| {
                    (
                        IString::try_from(k.to_string()).expect("valid"),
                        NString(Some(IString::try_from(v.to_string()).expect("valid"))),
                    )
                };
                self.server.enqueue_data(Data::Id {
                    parameters: Some(vec![
                        pair("name", "mticket"),
                        pair("version", env!("CARGO_PKG_VERSION")),
                    ]),
                });
                self.ok(tag, "ID completed");
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
            CommandBody::Login { username, password } if self.agent.is_none() => {
                let login = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(tag, &login, &password).await;
            }
            body if self.agent.is_some() => self.authenticated(tag, body).await,
            _ => {
                self.errors += 1;
                self.bad(tag, "command not available in this state");
            }
        }
    }

    /// Commands after login; those of the selected state need an open folder.
    async fn authenticated(&mut self, tag: Tag<'static>, body: CommandBody<'static>) {
        match body {
            CommandBody::Namespace => {
                self.server.enqueue_data(folders::namespace());
                self.ok(tag, "NAMESPACE completed");
            }
            CommandBody::Enable { .. } => {
                self.server.enqueue_data(Data::Enabled {
                    capabilities: Vec::new(),
                });
                self.ok(tag, "ENABLE completed");
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, true).await,
            CommandBody::Subscribe { .. } | CommandBody::Unsubscribe { .. } => {
                // Every folder is subscribed; the list follows what exists.
                self.ok(tag, "subscriptions follow the folders");
            }
            CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Rename { .. } => {
                self.no(
                    tag,
                    "the folders follow the helpdesk: they cannot be changed here",
                );
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(tag, &mailbox, &item_names).await,
            CommandBody::Select { mailbox, .. } => self.select(tag, &mailbox, false).await,
            CommandBody::Examine { mailbox, .. } => self.select(tag, &mailbox, true).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(tag, &mailbox, &flags, date, message).await,
            body if self.selected.is_some() => self.selected_command(tag, body).await,
            _ => {
                self.errors += 1;
                self.bad(tag, "command needs a selected folder");
            }
        }
    }

    async fn selected_command(&mut self, tag: Tag<'static>, body: CommandBody<'static>) {
        match body {
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                self.fetch(tag, &sequence_set, macro_or_item_names, uid)
                    .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.store_flags(tag, &sequence_set, kind, response, &flags, uid)
                    .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, false).await,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, true).await,
            CommandBody::Expunge => self.expunge(tag, None).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.expunge(tag, Some(&sequence_set)).await
            }
            CommandBody::Search { criteria, uid, .. } => self.search(tag, criteria, uid).await,
            CommandBody::Close => {
                self.close().await;
                self.ok(tag, "CLOSE completed");
            }
            CommandBody::Unselect => {
                self.selected = None;
                self.ok(tag, "UNSELECT completed");
            }
            _ => {
                self.errors += 1;
                self.bad(tag, "command not supported");
            }
        }
    }

    async fn authenticate_plain(&mut self, tag: Tag<'static>, decoded: &[u8]) {
        let finish = |session: &mut Self, status: Status<'static>| {
            let _ = session.server.authenticate_finish(status);
        };
        if !self.login_allowed() {
            let status = Status::no(
                Some(tag),
                None,
                "AUTHENTICATE needs TLS: say STARTTLS first",
            )
            .expect("valid");
            return finish(self, status);
        }
        match crate::login::plain_credentials(decoded) {
            Ok((login, password)) => {
                let status = self.login_status(tag, &login, &password).await;
                finish(self, status);
            }
            Err(e) => {
                let status = Status::bad(Some(tag), None, e.to_string()).expect("valid");
                finish(self, status);
            }
        }
    }

    fn login_allowed(&self) -> bool {
        self.stream.as_ref().is_some_and(SessionStream::is_tls) || self.cfg.allow_plain
    }

    async fn login(&mut self, tag: Tag<'static>, login: &str, password: &str) {
        if !self.login_allowed() {
            self.no(tag, "LOGIN needs TLS: say STARTTLS first, or use port 993");
            return;
        }
        let status = self.login_status(tag, login, password).await;
        self.server.enqueue_status(status);
    }

    /// Checks a login through the failed-login guard: the tagged answer, with the RFC 5530
    /// code that tells the client whether asking for the password again can help.
    async fn login_status(
        &mut self,
        tag: Tag<'static>,
        login: &str,
        password: &str,
    ) -> Status<'static> {
        let outcome = self
            .cfg
            .guard
            .attempt("IMAP", self.peer, login, self.logins.open(login, password))
            .await;
        let (code, text) = match outcome {
            LoginOutcome::LoggedIn(session) => {
                self.slot = Some(session.slot);
                self.agent = Some(session.agent);
                self.clock.working();
                return Status::ok(Some(tag), None, "logged in").expect("valid status");
            }
            refused => login_refusal(&refused),
        };
        let code = Code::Other(CodeOther::unvalidated(code.as_bytes()));
        Status::no(Some(tag), Some(code), text).expect("valid status")
    }

    fn capabilities(&self) -> Vec1<Capability<'static>> {
        let is_tls = self.stream.as_ref().is_some_and(SessionStream::is_tls);
        let mut caps = vec![Capability::Imap4Rev1];
        if self.agent.is_none() {
            if !is_tls && self.cfg.tls.is_some() {
                caps.push(Capability::StartTls);
            }
            if self.login_allowed() {
                caps.push(Capability::Auth(AuthMechanism::Plain));
            } else {
                caps.push(Capability::LoginDisabled);
            }
        }
        for name in [
            "IDLE",
            "UIDPLUS",
            "MOVE",
            "NAMESPACE",
            "ID",
            "ENABLE",
            "LITERAL+",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
        ] {
            caps.push(Capability::from(Atom::try_from(name).expect("valid atom")));
        }
        Vec1::try_from(caps).expect("not empty")
    }

    /// TLS over the same connection; the protocol state starts afresh, so nothing the client
    /// sent before the handshake is read as a command after it.
    async fn upgrade(&mut self) -> Result<(), SessionError> {
        let tls = self.cfg.tls.clone().expect("offered only with TLS");
        let stream = self.stream.take().expect("stream before the upgrade");
        let timeout = self.clock.read_timeout(LOGIN_TIMEOUT);
        let upgraded = tokio::time::timeout(timeout, stream.upgrade(&TlsAcceptor::from(tls)))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        self.stream = Some(upgraded);
        // A fresh state sends a greeting first: that one is dropped, not written.
        let greeting = Greeting::ok(None, "mticket ready").expect("valid greeting");
        self.server = Server::new(options(&self.cfg), greeting);
        self.limit = LineLimit::default();
        loop {
            match self.server.next() {
                Ok(Event::GreetingSent { .. }) => return Ok(()),
                Err(Interrupt::Io(Io::Output(_))) => {}
                _ => return Ok(()),
            }
        }
    }

    fn ok_code(&mut self, tag: Tag<'static>, code: Option<Code<'static>>, text: &'static str) {
        self.server
            .enqueue_status(Status::ok(Some(tag), code, text).expect("valid status"));
    }

    fn ok(&mut self, tag: Tag<'static>, text: &'static str) -> ResponseHandle {
        self.server
            .enqueue_status(Status::ok(Some(tag), None, text).expect("valid status"))
    }

    fn no(&mut self, tag: Tag<'static>, text: impl Into<String>) {
        self.no_code(tag, None, text);
    }

    fn no_code(&mut self, tag: Tag<'static>, code: Option<Code<'static>>, text: impl Into<String>) {
        let status = Status::no(Some(tag), code, text.into())
            .unwrap_or_else(|_| Status::no(None, None, "failed").expect("valid status"));
        self.server.enqueue_status(status);
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

/// The RFC 5530 code and text of a login that did not succeed.
fn login_refusal<A>(outcome: &LoginOutcome<A>) -> (&'static str, &'static str) {
    match outcome {
        LoginOutcome::LoggedIn(_) => ("", "logged in"),
        LoginOutcome::Refused => ("AUTHENTICATIONFAILED", "wrong login or password"),
        LoginOutcome::Locked(_) => ("UNAVAILABLE", "too many failed logins: try again later"),
        LoginOutcome::TooManySessions => ("LIMIT", "too many open sessions for this agent"),
        LoginOutcome::Unavailable => ("UNAVAILABLE", "login not possible now: try again later"),
    }
}

/// Which limit the client went over.
#[derive(Debug, PartialEq)]
enum Overflow {
    Line,
    Literal,
}

/// Follows the client's bytes as they arrive: imap-next checks a command's size only
/// against `max_literal + max_command` and only once its line is complete, so without this
/// a line with no end, or a non-synchronizing literal over `max_literal` (the client sends
/// it anyway), would be buffered up to that size before being refused.
#[derive(Default)]
struct LineLimit {
    /// Bytes of the current line so far (literals not counted).
    line: usize,
    /// Literal bytes still to come.
    literal: u64,
    /// The start of the command, for its tag.
    head: Vec<u8>,
    /// The end of the current line, for a literal announcement.
    tail: Vec<u8>,
}

impl LineLimit {
    /// How many of `bytes` go to the parser: all of them, or those up to the point where a
    /// limit was passed (with the limit and the command's tag).
    fn feed(
        &mut self,
        bytes: &[u8],
        max_command: u32,
        max_literal: u32,
    ) -> (usize, Option<(Overflow, Option<Tag<'static>>)>) {
        let mut i = 0;
        while i < bytes.len() {
            if self.literal > 0 {
                let n = self.literal.min((bytes.len() - i) as u64);
                self.literal -= n;
                i += n as usize;
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line += 1;
            if self.head.len() < 64 {
                self.head.push(b);
            }
            if self.tail.len() == 32 {
                self.tail.remove(0);
            }
            self.tail.push(b);
            if b == b'\n' {
                let announced = literal_announcement(&self.tail);
                self.line = 0;
                self.tail.clear();
                match announced {
                    Some((n, true)) if n > u64::from(max_literal) => {
                        // imap-next refuses it and the client does not send it.
                        self.head.clear();
                    }
                    Some((n, false)) if n > u64::from(max_literal) => {
                        return (i, Some((Overflow::Literal, tag_of(&self.head))));
                    }
                    // The command goes on after the literal: its head stays.
                    Some((n, _)) => self.literal = n,
                    None => self.head.clear(),
                }
            } else if self.line > max_command as usize {
                return (i, Some((Overflow::Line, tag_of(&self.head))));
            }
        }
        (bytes.len(), None)
    }
}

/// `{N}`, `{N+}`, `{N-}` or `~{N}` at the end of a line: (N, synchronizing).
fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let (inner, sync) = match inner
        .strip_suffix(b"+")
        .or_else(|| inner.strip_suffix(b"-"))
    {
        Some(rest) => (rest, false),
        None => (inner, true),
    };
    let start = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[start + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits)
        .ok()?
        .parse()
        .unwrap_or(u64::MAX);
    Some((n, sync))
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

    #[test]
    fn each_failed_login_gets_its_code() {
        let table: [(LoginOutcome<()>, &str, &str); 4] = [
            (
                LoginOutcome::Refused,
                "AUTHENTICATIONFAILED",
                "wrong login or password",
            ),
            (
                LoginOutcome::Locked(Duration::from_secs(60)),
                "UNAVAILABLE",
                "too many failed logins: try again later",
            ),
            (
                LoginOutcome::TooManySessions,
                "LIMIT",
                "too many open sessions for this agent",
            ),
            (
                LoginOutcome::Unavailable,
                "UNAVAILABLE",
                "login not possible now: try again later",
            ),
        ];
        for (outcome, code, text) in table {
            assert_eq!(login_refusal(&outcome), (code, text), "{outcome:?}");
        }
    }

    async fn talk(lines: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = Shutdown::channel();
        let cfg = Arc::new(ImapConfig::default());
        let mailbox = Mailbox::new(store.clone(), crate::core::texts::Locale::En, "localhost");
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            cfg,
            Arc::new(Logins::new(store)),
            mailbox,
            shutdown,
            SessionClock::default(),
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
    async fn authenticate_without_initial_response_gets_an_empty_challenge() {
        let out = talk(&["a1 AUTHENTICATE PLAIN\r\n", "*\r\n", "a2 LOGOUT\r\n"]).await;
        assert!(out.contains("\r\n+ \r\n"), "{out}");
        assert!(out.contains("a1 "), "{out}");
        assert!(out.ends_with("a2 OK LOGOUT completed\r\n"), "{out}");
    }

    #[test]
    fn long_lines_and_oversized_non_synchronizing_literals_are_caught_as_they_arrive() {
        let mut limit = LineLimit::default();
        let ok = b"a1 NOOP\r\na2 APPEND Drafts {5}\r\nhello\r\n";
        assert_eq!(limit.feed(ok, 32, 10), (ok.len(), None));

        // The literal's bytes do not count against the line, even split over reads.
        let mut limit = LineLimit::default();
        let announce = b"a3 APPEND Drafts {40+}\r\n";
        assert_eq!(limit.feed(announce, 32, 100), (announce.len(), None));
        assert_eq!(limit.feed(&[b'x'; 30], 32, 100), (30, None));
        let rest = b"xxxxxxxxxx\r\na4 NOOP\r\n";
        assert_eq!(limit.feed(rest, 32, 100), (rest.len(), None));

        let mut limit = LineLimit::default();
        let (taken, over) = limit.feed(b"a5 NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 16, 100);
        assert_eq!(taken, 17);
        let (what, tag) = over.expect("over the line limit");
        assert_eq!(what, Overflow::Line);
        assert_eq!(tag.expect("tag").as_ref(), "a5");

        // Synchronizing: refused by imap-next, not sent by the client; what follows counts.
        let mut limit = LineLimit::default();
        let sync = b"a6 APPEND Drafts {104857600}\r\na7 NOOP\r\n";
        assert_eq!(limit.feed(sync, 64, 100), (sync.len(), None));

        let mut limit = LineLimit::default();
        let nonsync = b"a8 APPEND Drafts {104857600+}\r\nxxxx";
        let (taken, over) = limit.feed(nonsync, 64, 100);
        assert_eq!(taken, nonsync.len() - 4);
        let (what, tag) = over.expect("literal over the limit");
        assert_eq!(what, Overflow::Literal);
        assert_eq!(tag.expect("tag").as_ref(), "a8");

        assert_eq!(literal_announcement(b"x ~{12}\r\n"), Some((12, true)));
        assert_eq!(literal_announcement(b"x {12-}\n"), Some((12, false)));
        assert_eq!(literal_announcement(b"x {}\r\n"), None);
        assert_eq!(literal_announcement(b"x {1a}\r\n"), None);
    }

    #[tokio::test]
    async fn too_many_bad_commands_end_the_session_with_one_bye() {
        let junk: Vec<String> = (0..40).map(|i| format!("junk {i}\r\n")).collect();
        let lines: Vec<&str> = junk.iter().map(String::as_str).collect();
        let out = talk(&lines).await;
        assert_eq!(out.matches("* BYE").count(), 1, "{out}");
        assert!(out.ends_with("* BYE too many bad commands\r\n"), "{out}");
    }

    #[tokio::test]
    async fn login_without_tls_is_refused() {
        let out = talk(&["a1 LOGIN anna secret\r\n", "a2 LOGOUT\r\n"]).await;
        assert!(out.contains("a1 NO LOGIN needs TLS"), "{out}");
    }
}
