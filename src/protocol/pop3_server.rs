//! The agents' POP3 server (RFC 1939; CAPA and response codes from RFC 2449, STLS from
//! RFC 2595, AUTH PLAIN from RFC 5034): the session loop over a [`SessionStream`] and the
//! commands, generic over a [`Maildrop`], the messages one agent sees. DELE hides a message
//! from that agent's POP3 view; what that means for the ticket is the maildrop's business.
//!
//! One line, one answer, in order: pipelined commands (RFC 2449 PIPELINING) are taken from
//! the read buffer one by one, and their answers go out together before the next read.
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::core::model::Agent;
use crate::login::Logins;
use crate::net::listener::{Listener, SessionClock, SessionStream, Shutdown};
use crate::protocol::line::{LineBuffer, TooLong};
use crate::protocol::login_guard::{LoginGuard, LoginOutcome};

const READ_CHUNK: usize = 8 * 1024;
/// Multi-line answers go out in pieces of about this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// One message of a maildrop as `open` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropEntry {
    /// Stable across sessions; 1 to 70 characters from 0x21 to 0x7E (RFC 1939 §7).
    pub uidl: String,
    /// Octets as RETR sends them (CRLF line ends), before dot-stuffing.
    pub size: u64,
}

/// Why the maildrop failed; [`MaildropError::reply`] is the one mapping to what the
/// client reads.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// A temporary failure (store down, timeout): `-ERR [SYS/TEMP]`, try again later.
    #[error("maildrop unavailable: {0}")]
    Unavailable(String),
    /// The maildrop is locked by another session: `-ERR [IN-USE]`.
    #[error("maildrop in use: {0}")]
    InUse(String),
    /// A failure that trying again will not mend: `-ERR [SYS/PERM]`.
    #[error("maildrop failed: {0}")]
    Failed(String),
}

impl MaildropError {
    /// The `-ERR` text for a failure of `what`: the response code (RFC 2449, RFC 3206)
    /// tells the client whether to try again; the cause stays in the log.
    pub fn reply(&self, what: &str) -> String {
        let (code, hint) = match self {
            MaildropError::Unavailable(_) => ("SYS/TEMP", ": try again later"),
            MaildropError::InUse(_) => ("IN-USE", ": another session holds it"),
            MaildropError::Failed(_) => ("SYS/PERM", ""),
        };
        format!("[{code}] {what}{hint}")
    }
}

/// The messages of one agent's POP3 view; implemented over the store elsewhere.
pub trait Maildrop: Send + Sync + 'static {
    /// The agent's messages at login, in the order they are numbered (1..n) for the session.
    fn open(
        &self,
        agent: &Agent,
    ) -> impl Future<Output = Result<Vec<DropEntry>, MaildropError>> + Send;

    /// The message's bytes; `None` when it is gone since `open`.
    fn retrieve(
        &self,
        agent: &Agent,
        uidl: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, MaildropError>> + Send;

    /// Hides the messages from the agent's view: all of them, or none when it fails. Called
    /// once, at QUIT (the UPDATE state), with the messages marked by DELE.
    fn delete(
        &self,
        agent: &Agent,
        uidls: &[String],
    ) -> impl Future<Output = Result<(), MaildropError>> + Send;
}

#[derive(Clone)]
pub struct Pop3Config {
    /// STLS is offered only when set (and the session is not TLS already).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// USER/PASS and AUTH without TLS: only on a loopback listener, when configured.
    pub allow_plain: bool,
    /// Waiting for a logged-in client longer than this ends the session (RFC 1939 §3: at
    /// least 10 minutes). Nothing marked for deletion is deleted then.
    pub idle_timeout: Duration,
    /// The same before login, and the limit for a TLS handshake.
    pub login_timeout: Duration,
    /// Bad commands tolerated per session before it is closed.
    pub max_errors: usize,
    /// Longest command line accepted, without CRLF. RFC 2449 allows 255 octets for a
    /// command; the slack is for long AUTH PLAIN responses.
    pub max_line: usize,
    /// The session starts with a TLS handshake (port 995), using `tls`.
    pub implicit_tls: bool,
    /// Failed logins: delay, then temporary lockout (shared with the other ports).
    pub guard: Arc<LoginGuard>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            tls: None,
            allow_plain: false,
            idle_timeout: Duration::from_secs(10 * 60),
            login_timeout: Duration::from_secs(60),
            max_errors: 20,
            max_line: 1024,
            implicit_tls: false,
            guard: Arc::new(LoginGuard::default()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::net::listener::ListenerError),
}

/// Runs the server on a bound listener until `shutdown`.
pub async fn serve<M: Maildrop>(
    listener: Listener,
    cfg: Pop3Config,
    logins: Arc<Logins>,
    maildrop: Arc<M>,
    shutdown: Shutdown,
) {
    let cfg = Arc::new(cfg);
    let (implicit_tls, tls, timeout) = (cfg.implicit_tls, cfg.tls.clone(), cfg.login_timeout);
    listener
        .run_sessions(
            shutdown,
            implicit_tls,
            tls,
            timeout,
            move |stream, peer, shutdown, clock| {
                let cfg = cfg.clone();
                let logins = logins.clone();
                let maildrop = maildrop.clone();
                async move {
                    if let Err(e) =
                        run_session(stream, Some(peer), cfg, logins, maildrop, shutdown, clock)
                            .await
                    {
                        tracing::debug!(%peer, error = %e, "POP3 session ended with error");
                    }
                }
            },
        )
        .await;
}

/// One POP3 session over any stream (tests use `tokio::io::duplex`).
pub async fn run_session<S, M>(
    stream: SessionStream<S>,
    peer: Option<SocketAddr>,
    cfg: Arc<Pop3Config>,
    logins: Arc<Logins>,
    maildrop: Arc<M>,
    shutdown: Shutdown,
    clock: SessionClock,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    M: Maildrop,
{
    let mut session = Session {
        wire: Wire {
            stream: Some(stream),
            input: LineBuffer::new(READ_CHUNK),
            out: Vec::new(),
            write_timeout: cfg.idle_timeout,
        },
        cfg,
        logins,
        maildrop,
        shutdown,
        clock,
        peer,
        errors: 0,
        state: State::Authorization {
            user: None,
            sasl: false,
        },
        slot: None,
    };
    let result = session.run().await;
    if let Some(stream) = session.wire.stream.as_mut() {
        // Best effort: a TLS peer gets its close_notify.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
    }
    result
}

/// What the client sent next, or why nothing.
enum Input {
    Line(Vec<u8>),
    /// A line longer than `max_line`; its bytes were dropped as they came.
    TooLong,
    Closed,
    Idle,
    Shutdown,
}

/// The stream with its read and write buffers.
struct Wire<S> {
    /// `None` only during a TLS upgrade.
    stream: Option<SessionStream<S>>,
    /// Received bytes not yet taken as lines.
    input: LineBuffer,
    /// Answers not yet written.
    out: Vec<u8>,
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn stream(&mut self) -> &mut SessionStream<S> {
        self.stream.as_mut().expect("stream outside an upgrade")
    }

    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn write_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.write_timeout;
        let out = std::mem::take(&mut self.out);
        let written = tokio::time::timeout(timeout, self.stream().write_all(&out)).await;
        // The buffer is kept for reuse.
        self.out = out;
        self.out.clear();
        match written {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client does not read",
            )),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        let timeout = self.write_timeout;
        match tokio::time::timeout(timeout, self.stream().flush()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client does not read",
            )),
        }
    }

    async fn write_if_full(&mut self) -> io::Result<()> {
        if self.out.len() >= WRITE_CHUNK {
            self.write_out().await?;
        }
        Ok(())
    }

    /// A multi-line body (RFC 1939 §3): `bytes` line by line with CRLF ends (a bare LF
    /// becomes CRLF) and dot-stuffing, then the closing dot. `body_lines` stops after that
    /// many lines past the header (TOP). Written in pieces, not copied whole.
    async fn message(&mut self, bytes: &[u8], body_lines: Option<usize>) -> io::Result<()> {
        for line in MessageLines::new(bytes, body_lines) {
            if line.first() == Some(&b'.') {
                self.out.push(b'.');
            }
            for piece in line.chunks(WRITE_CHUNK) {
                self.out.extend_from_slice(piece);
                self.write_if_full().await?;
            }
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b".\r\n");
        Ok(())
    }

    /// The next line without its CRLF (a bare LF ends a line too). Unanswered output is
    /// written before waiting for input; waiting ends after `idle` or at shutdown.
    async fn next(
        &mut self,
        max_line: usize,
        idle: Duration,
        shutdown: &mut Shutdown,
    ) -> io::Result<Input> {
        loop {
            match self.input.next_line(max_line) {
                Some(Ok(line)) => return Ok(Input::Line(line.to_vec())),
                Some(Err(TooLong)) => return Ok(Input::TooLong),
                None => {}
            }
            if shutdown.is_triggered() {
                return Ok(Input::Shutdown);
            }
            self.flush().await?;
            let stream = self.stream.as_mut().expect("stream outside an upgrade");
            let read = tokio::select! {
                r = tokio::time::timeout(idle, self.input.read_from(stream)) => r,
                _ = shutdown.wait() => return Ok(Input::Shutdown),
            };
            match read {
                Ok(Ok(0)) => return Ok(Input::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(Input::Idle),
            }
        }
    }
}

/// The lines of a stored message without their line ends; with a limit, the header, the
/// blank line and at most that many body lines (TOP).
struct MessageLines<'a> {
    rest: &'a [u8],
    in_header: bool,
    body_left: Option<usize>,
}

impl<'a> MessageLines<'a> {
    fn new(bytes: &'a [u8], body_lines: Option<usize>) -> Self {
        MessageLines {
            rest: bytes,
            in_header: true,
            body_left: body_lines,
        }
    }
}

impl<'a> Iterator for MessageLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() || (!self.in_header && self.body_left == Some(0)) {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.in_header {
            self.in_header = !line.is_empty();
        } else if let Some(left) = self.body_left.as_mut() {
            *left -= 1;
        }
        Some(line)
    }
}

enum State {
    /// Before login: `user` from USER waits for PASS; `sasl` means the next line is the
    /// client's AUTH PLAIN response.
    Authorization {
        user: Option<String>,
        sasl: bool,
    },
    Transaction(Box<Transaction>),
}

/// The logged-in agent and the maildrop as it was at login: the numbering stays fixed for
/// the session, DELE only marks.
struct Transaction {
    agent: Agent,
    entries: Vec<DropEntry>,
    deleted: Vec<bool>,
}

impl Transaction {
    /// Count and octets of the messages not marked deleted.
    fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, size), (_, e)| (n + 1, size + e.size))
    }

    /// `(number, entry)` of the messages not marked deleted.
    fn live(&self) -> impl Iterator<Item = (usize, &DropEntry)> {
        self.entries
            .iter()
            .zip(&self.deleted)
            .enumerate()
            .filter(|(_, (_, deleted))| !**deleted)
            .map(|(i, (e, _))| (i + 1, e))
    }

    /// The index of message `number`, or why there is none.
    fn index(&self, number: usize) -> Result<usize, String> {
        if number == 0 || number > self.entries.len() {
            return Err(format!("no such message: {number}"));
        }
        if self.deleted[number - 1] {
            return Err(format!("message {number} is already deleted"));
        }
        Ok(number - 1)
    }
}

enum Next {
    Continue,
    Close,
}

struct Session<S, M> {
    wire: Wire<S>,
    cfg: Arc<Pop3Config>,
    logins: Arc<Logins>,
    maildrop: Arc<M>,
    shutdown: Shutdown,
    clock: SessionClock,
    peer: Option<SocketAddr>,
    errors: usize,
    state: State,
    /// The agent's place among their open sessions, held while logged in.
    slot: Option<crate::login::SessionSlot>,
}

const NEEDS_TLS: &str = "[AUTH] login needs TLS: use STLS first, or port 995";

impl<S, M> Session<S, M>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    M: Maildrop,
{
    async fn run(&mut self) -> Result<(), SessionError> {
        self.wire.line("+OK mticket POP3 server ready");
        loop {
            let idle = match self.state {
                State::Authorization { .. } => self.clock.read_timeout(self.cfg.login_timeout),
                State::Transaction(_) => self.cfg.idle_timeout,
            };
            let input = self
                .wire
                .next(self.cfg.max_line, idle, &mut self.shutdown)
                .await?;
            let mut next = match input {
                Input::Line(line) => self.line(line).await?,
                Input::TooLong => {
                    self.end_sasl();
                    self.error("line too long")
                }
                // Without QUIT nothing marked is deleted (RFC 1939 §6).
                Input::Closed => return Ok(()),
                Input::Idle => {
                    tracing::debug!(peer = ?self.peer, "POP3 session idle too long");
                    self.wire.line("-ERR idle too long, closing connection");
                    Next::Close
                }
                Input::Shutdown => {
                    self.wire.line("-ERR [SYS/TEMP] server shutting down");
                    Next::Close
                }
            };
            if matches!(next, Next::Continue) && self.errors > self.cfg.max_errors {
                self.wire
                    .line("-ERR too many bad commands, closing connection");
                next = Next::Close;
            }
            if let Next::Close = next {
                self.wire.flush().await?;
                return Ok(());
            }
        }
    }

    /// A client mistake: answered with `-ERR` and counted.
    fn error(&mut self, text: &str) -> Next {
        self.errors += 1;
        self.wire.line(&format!("-ERR {text}"));
        Next::Continue
    }

    fn refuse(&mut self, text: &str) -> Next {
        self.wire.line(&format!("-ERR {text}"));
        Next::Continue
    }

    fn end_sasl(&mut self) {
        if let State::Authorization { sasl, .. } = &mut self.state {
            *sasl = false;
        }
    }

    fn is_tls(&self) -> bool {
        self.wire.stream.as_ref().is_some_and(SessionStream::is_tls)
    }

    /// A login is taken on this connection now.
    fn login_possible(&self) -> bool {
        self.is_tls() || self.cfg.allow_plain
    }

    async fn line(&mut self, line: Vec<u8>) -> Result<Next, SessionError> {
        if let State::Authorization {
            sasl: sasl @ true, ..
        } = &mut self.state
        {
            *sasl = false;
            return Ok(self.sasl_response(&line).await);
        }
        let Ok(line) = String::from_utf8(line) else {
            return Ok(self.error("command line is not valid UTF-8"));
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        let args: Vec<&str> = rest.split_ascii_whitespace().collect();
        let authorized = matches!(self.state, State::Transaction(_));
        let next = match verb.as_str() {
            "CAPA" if args.is_empty() => self.capa(),
            "QUIT" if args.is_empty() => return Ok(self.quit().await),
            "STLS" if args.is_empty() => return self.stls().await,
            "USER" | "PASS" | "AUTH" | "APOP" if authorized => self.error("already logged in"),
            "USER" => self.user(&args),
            // The password is the rest of the line: it may hold spaces.
            "PASS" => self.pass(rest).await,
            "AUTH" => self.auth(&args).await,
            "APOP" => self.refuse("APOP is not supported: use USER/PASS or AUTH PLAIN"),
            "NOOP" | "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" if !authorized => {
                self.error("log in first")
            }
            "NOOP" | "RSET" | "STAT" if !args.is_empty() => {
                self.error("this command takes no arguments")
            }
            "CAPA" | "QUIT" | "STLS" => self.error("this command takes no arguments"),
            "NOOP" => {
                self.wire.line("+OK");
                Next::Continue
            }
            "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" => {
                self.transaction(&verb, &args).await?
            }
            "" => self.error("empty command line"),
            _ => self.error("unknown command"),
        };
        Ok(next)
    }

    fn capa(&mut self) -> Next {
        let mut caps = vec![
            "+OK capability list follows",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ];
        if matches!(self.state, State::Authorization { .. }) {
            if self.login_possible() {
                caps.extend(["USER", "SASL PLAIN"]);
            }
            if !self.is_tls() && self.cfg.tls.is_some() {
                caps.push("STLS");
            }
        }
        caps.extend(["IMPLEMENTATION mticket", "."]);
        for cap in caps {
            self.wire.line(cap);
        }
        Next::Continue
    }

    async fn stls(&mut self) -> Result<Next, SessionError> {
        if matches!(self.state, State::Transaction(_)) {
            return Ok(self.error("STLS is only available before login"));
        }
        if self.is_tls() {
            return Ok(self.error("TLS is already active"));
        }
        let Some(tls) = self.cfg.tls.clone() else {
            return Ok(self.error("STLS is not available here"));
        };
        self.wire.line("+OK begin TLS negotiation");
        self.wire.flush().await?;
        // Anything pipelined after STLS arrived in plaintext: drop it (RFC 2595 §4).
        self.wire.input.clear();
        let plain = self.wire.stream.take().expect("stream before the upgrade");
        let upgraded = tokio::time::timeout(
            self.clock.read_timeout(self.cfg.login_timeout),
            plain.upgrade(&TlsAcceptor::from(tls)),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        self.wire.stream = Some(upgraded);
        self.state = State::Authorization {
            user: None,
            sasl: false,
        };
        Ok(Next::Continue)
    }

    fn user(&mut self, args: &[&str]) -> Next {
        let [name] = args else {
            return self.error("usage: USER name");
        };
        if !self.login_possible() {
            return self.refuse(NEEDS_TLS);
        }
        self.state = State::Authorization {
            user: Some(name.to_string()),
            sasl: false,
        };
        self.wire.line("+OK send PASS");
        Next::Continue
    }

    async fn pass(&mut self, password: &str) -> Next {
        let State::Authorization { user, .. } = &mut self.state else {
            return Next::Continue;
        };
        // Failed or not, the next try starts with USER again.
        let Some(user) = user.take() else {
            return self.error("say USER first");
        };
        if !self.login_possible() {
            return self.refuse(NEEDS_TLS);
        }
        self.login(&user, password).await
    }

    async fn auth(&mut self, args: &[&str]) -> Next {
        if let State::Authorization { user, .. } = &mut self.state {
            *user = None;
        }
        if !self.login_possible() {
            return self.refuse(NEEDS_TLS);
        }
        match args {
            // An old way (RFC 1734 clients) to ask for the mechanisms.
            [] => {
                self.wire.line("+OK mechanisms follow");
                self.wire.line("PLAIN");
                self.wire.line(".");
                Next::Continue
            }
            [mechanism, ..] if !mechanism.eq_ignore_ascii_case("PLAIN") => {
                self.refuse("unsupported authentication mechanism: use PLAIN")
            }
            [_] => {
                if let State::Authorization { sasl, .. } = &mut self.state {
                    *sasl = true;
                }
                self.wire.line("+ ");
                Next::Continue
            }
            [_, initial] => self.sasl_response(initial.as_bytes()).await,
            _ => self.error("usage: AUTH PLAIN [initial-response]"),
        }
    }

    /// The client's AUTH PLAIN response (base64 of `authzid NUL authcid NUL passwd`,
    /// RFC 4616), `=` for an empty one, or `*` to cancel.
    async fn sasl_response(&mut self, line: &[u8]) -> Next {
        if line == b"*" {
            return self.refuse("authentication cancelled");
        }
        let decoded = if line == b"=" {
            Ok(Vec::new())
        } else {
            BASE64.decode(line)
        };
        let Ok(decoded) = decoded else {
            return self.error("cannot decode the response (base64)");
        };
        match crate::login::plain_credentials(&decoded) {
            Ok((user, pass)) => self.login(&user, &pass).await,
            Err(e @ crate::login::PlainError::OtherIdentity) => self.refuse(&format!("[AUTH] {e}")),
            Err(e) => self.error(&e.to_string()),
        }
    }

    async fn login(&mut self, login: &str, password: &str) -> Next {
        let outcome = self
            .cfg
            .guard
            .attempt("POP3", self.peer, login, self.logins.open(login, password))
            .await;
        match outcome {
            LoginOutcome::LoggedIn(session) => {
                self.slot = Some(session.slot);
                self.open(session.agent).await
            }
            LoginOutcome::Refused => self.refuse("[AUTH] wrong login or password"),
            LoginOutcome::Locked(wait) => self.refuse(&format!(
                "[LOGIN-DELAY] too many failed logins: try again in {} s",
                wait.as_secs().max(1)
            )),
            LoginOutcome::TooManySessions => {
                self.refuse("[IN-USE] too many open sessions for this agent")
            }
            LoginOutcome::Unavailable => {
                self.refuse("[SYS/TEMP] login not possible right now: try again later")
            }
        }
    }

    /// The maildrop snapshot for the session, after a good password.
    async fn open(&mut self, agent: Agent) -> Next {
        match self.maildrop.open(&agent).await {
            Ok(entries) => {
                let tx = Transaction {
                    deleted: vec![false; entries.len()],
                    entries,
                    agent,
                };
                let (count, size) = tx.stat();
                tracing::info!(agent = %tx.agent.login, peer = ?self.peer, messages = count, "POP3 login");
                self.wire.line(&format!(
                    "+OK {} has {count} messages ({size} octets)",
                    tx.agent.login
                ));
                self.state = State::Transaction(Box::new(tx));
                self.clock.working();
                Next::Continue
            }
            Err(e) => {
                tracing::warn!(agent = %agent.login, error = %e, "POP3 maildrop cannot be opened");
                self.refuse(&e.reply("the maildrop cannot be opened"))
            }
        }
    }

    /// STAT, LIST, UIDL, RETR, TOP, DELE and RSET.
    async fn transaction(&mut self, verb: &str, args: &[&str]) -> Result<Next, SessionError> {
        let State::Transaction(tx) = &mut self.state else {
            return Ok(Next::Continue);
        };
        let numbers: Option<Vec<usize>> = args.iter().map(|a| number(a)).collect();
        let Some(numbers) = numbers else {
            return Ok(self.error("invalid message number"));
        };
        let wire = &mut self.wire;
        match (verb, numbers.as_slice()) {
            ("STAT", []) => {
                let (count, size) = tx.stat();
                wire.line(&format!("+OK {count} {size}"));
            }
            ("LIST", []) => {
                let (count, size) = tx.stat();
                wire.line(&format!("+OK {count} messages ({size} octets)"));
                for (n, entry) in tx.live() {
                    wire.line(&format!("{n} {}", entry.size));
                    wire.write_if_full().await?;
                }
                wire.line(".");
            }
            ("UIDL", []) => {
                wire.line("+OK unique-id listing follows");
                for (n, entry) in tx.live() {
                    wire.line(&format!("{n} {}", entry.uidl));
                    wire.write_if_full().await?;
                }
                wire.line(".");
            }
            ("LIST" | "UIDL" | "RETR" | "TOP" | "DELE", [n, ..]) => {
                let i = match tx.index(*n) {
                    Ok(i) => i,
                    Err(text) => return Ok(self.refuse(&text)),
                };
                let entry = &tx.entries[i];
                match (verb, numbers.as_slice()) {
                    ("LIST", [_]) => wire.line(&format!("+OK {n} {}", entry.size)),
                    ("UIDL", [_]) => wire.line(&format!("+OK {n} {}", entry.uidl)),
                    ("DELE", [_]) => {
                        tx.deleted[i] = true;
                        wire.line(&format!("+OK message {n} deleted"));
                    }
                    ("RETR", [_]) | ("TOP", [_, _]) => {
                        let body_lines = numbers.get(1).copied();
                        match self.maildrop.retrieve(&tx.agent, &entry.uidl).await {
                            Ok(Some(bytes)) => {
                                wire.line(&match body_lines {
                                    Some(_) => "+OK top of message follows".to_string(),
                                    None => format!("+OK {} octets", entry.size),
                                });
                                wire.message(&bytes, body_lines).await?;
                            }
                            Ok(None) => {
                                return Ok(
                                    self.refuse(&format!("message {n} is no longer available"))
                                );
                            }
                            Err(e) => {
                                tracing::warn!(agent = %tx.agent.login, error = %e, "POP3 message cannot be read");
                                return Ok(
                                    self.refuse(&e.reply(&format!("message {n} cannot be read")))
                                );
                            }
                        }
                    }
                    _ => return Ok(self.error(usage(verb))),
                }
            }
            ("RSET", []) => {
                tx.deleted.fill(false);
                let (count, size) = tx.stat();
                wire.line(&format!(
                    "+OK maildrop has {count} messages ({size} octets)"
                ));
            }
            _ => return Ok(self.error(usage(verb))),
        }
        Ok(Next::Continue)
    }

    /// QUIT: in the TRANSACTION state the UPDATE state, where marked messages are deleted.
    async fn quit(&mut self) -> Next {
        let State::Transaction(tx) = &self.state else {
            self.wire.line("+OK mticket POP3 server signing off");
            return Next::Close;
        };
        let marked: Vec<String> = tx
            .entries
            .iter()
            .zip(&tx.deleted)
            .filter(|(_, deleted)| **deleted)
            .map(|(e, _)| e.uidl.clone())
            .collect();
        if marked.is_empty() {
            self.wire.line("+OK mticket POP3 server signing off");
            return Next::Close;
        }
        match self.maildrop.delete(&tx.agent, &marked).await {
            Ok(()) => {
                tracing::info!(agent = %tx.agent.login, deleted = marked.len(), "POP3 messages deleted");
                self.wire.line(&format!(
                    "+OK mticket POP3 server signing off ({} messages deleted)",
                    marked.len()
                ));
            }
            Err(e) => {
                tracing::warn!(agent = %tx.agent.login, error = %e, "POP3 messages could not be deleted");
                let reply = e.reply("no marked message was deleted");
                self.wire.line(&format!("-ERR {reply}"));
            }
        }
        Next::Close
    }
}

fn usage(verb: &str) -> &'static str {
    match verb {
        "LIST" => "usage: LIST [msg]",
        "UIDL" => "usage: UIDL [msg]",
        "RETR" => "usage: RETR msg",
        "TOP" => "usage: TOP msg lines",
        "DELE" => "usage: DELE msg",
        _ => "this command takes no arguments",
    }
}

/// A message number or line count: digits only.
fn number(arg: &str) -> Option<usize> {
    if arg.is_empty() || arg.len() > 9 || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    arg.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncReadExt;

    use argon2::password_hash::PasswordHasher;
    use argon2::{Algorithm, Argon2, Params, Version};

    use crate::protocol::login_guard::GuardConfig;
    use crate::store::NewAgent;

    const ONE: &[u8] = b"Subject: one\r\n\r\nfirst\r\n.leading dot\r\nlast\r\n";
    /// Stored with bare LFs.
    const TWO: &[u8] = b"Subject: two\n\nline 1\nline 2\nline 3\n";
    const THREE: &[u8] = b"Subject: three\r\n\r\nbody";

    #[derive(Default)]
    struct MemDrop {
        messages: Vec<(String, Vec<u8>)>,
        /// The `delete` calls, in order.
        deletes: Mutex<Vec<Vec<String>>>,
        fail_delete: bool,
    }

    impl Maildrop for MemDrop {
        async fn open(&self, _agent: &Agent) -> Result<Vec<DropEntry>, MaildropError> {
            Ok(self
                .messages
                .iter()
                .map(|(uidl, bytes)| DropEntry {
                    uidl: uidl.clone(),
                    size: bytes.len() as u64,
                })
                .collect())
        }

        async fn retrieve(
            &self,
            _agent: &Agent,
            uidl: &str,
        ) -> Result<Option<Vec<u8>>, MaildropError> {
            Ok(self
                .messages
                .iter()
                .find(|(u, _)| u == uidl)
                .map(|(_, b)| b.clone()))
        }

        async fn delete(&self, _agent: &Agent, uidls: &[String]) -> Result<(), MaildropError> {
            if self.fail_delete {
                return Err(MaildropError::Unavailable("store down".into()));
            }
            self.deletes.lock().unwrap().push(uidls.to_vec());
            Ok(())
        }
    }

    fn sample() -> Arc<MemDrop> {
        Arc::new(MemDrop {
            messages: vec![
                ("t1-a".into(), ONE.to_vec()),
                ("t2-b".into(), TWO.to_vec()),
                ("t3-c".into(), THREE.to_vec()),
            ],
            ..Default::default()
        })
    }

    fn deletes(drop: &MemDrop) -> Vec<Vec<String>> {
        drop.deletes.lock().unwrap().clone()
    }

    fn b64(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }

    /// A store with the agent `anna`, password `secret`.
    async fn logins(dir: &tempfile::TempDir) -> Arc<Logins> {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // Cheap parameters: the same check, only faster.
        let params = Params::new(8, 1, 1, None).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"secret")
            .unwrap()
            .to_string();
        store
            .agent_add(&NewAgent {
                login: "anna".into(),
                name: "Anna".into(),
                email: "anna@shop.test".into(),
                password_hash: hash,
                is_admin: false,
                queues: vec![],
            })
            .await
            .unwrap();
        Arc::new(Logins::new(store))
    }

    fn plain() -> Pop3Config {
        Pop3Config {
            allow_plain: true,
            guard: Arc::new(LoginGuard::new(GuardConfig {
                delay_step: Duration::from_millis(1),
                ..GuardConfig::default()
            })),
            ..Pop3Config::default()
        }
    }

    /// Sends `input` at once (pipelined), ends the input, and returns all the server said.
    async fn talk_with(cfg: Pop3Config, drop: Arc<MemDrop>, input: impl Into<Vec<u8>>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let logins = logins(&dir).await;
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = Shutdown::channel();
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            Arc::new(cfg),
            logins,
            drop,
            shutdown,
            SessionClock::default(),
        ));
        let (mut r, mut w) = tokio::io::split(client);
        let input = input.into();
        let writer = tokio::spawn(async move {
            let _ = w.write_all(&input).await;
            let _ = w.shutdown().await;
        });
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut out))
            .await
            .expect("the session ends")
            .unwrap();
        task.await.unwrap().unwrap();
        writer.await.unwrap();
        String::from_utf8(out).unwrap()
    }

    async fn talk(input: &str) -> String {
        talk_with(plain(), sample(), input).await
    }

    const LOGIN: &str = "USER anna\r\nPASS secret\r\n";

    #[test]
    fn every_maildrop_error_has_its_one_reply() {
        let table = [
            (
                MaildropError::Unavailable("pool timed out".into()),
                "[SYS/TEMP] the maildrop cannot be opened: try again later",
            ),
            (
                MaildropError::InUse("locked".into()),
                "[IN-USE] the maildrop cannot be opened: another session holds it",
            ),
            (
                MaildropError::Failed("not a message here: x".into()),
                "[SYS/PERM] the maildrop cannot be opened",
            ),
        ];
        for (error, want) in table {
            assert_eq!(error.reply("the maildrop cannot be opened"), want);
        }
    }

    #[tokio::test]
    async fn greets_answers_capa_and_quits() {
        let out = talk_with(Pop3Config::default(), sample(), "CAPA\r\nQUIT\r\n").await;
        assert_eq!(
            out,
            "+OK mticket POP3 server ready\r\n\
             +OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
             PIPELINING\r\nIMPLEMENTATION mticket\r\n.\r\n\
             +OK mticket POP3 server signing off\r\n"
        );
        // Where a login is possible, it is announced.
        let out = talk("capa\r\nQUIT\r\n").await;
        assert!(out.contains("\r\nUSER\r\nSASL PLAIN\r\n"), "{out}");
        assert!(!out.contains("STLS"), "{out}");
    }

    #[tokio::test]
    async fn login_without_tls_is_refused() {
        let out = talk_with(
            Pop3Config::default(),
            sample(),
            format!(
                "USER anna\r\nPASS secret\r\nAUTH PLAIN {}\r\nSTAT\r\nQUIT\r\n",
                b64(b"\0anna\0secret")
            ),
        )
        .await;
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("-ERR [AUTH] login needs TLS"), "{out}");
        assert_eq!(lines[2], "-ERR say USER first", "{out}");
        assert!(lines[3].starts_with("-ERR [AUTH] login needs TLS"), "{out}");
        assert_eq!(lines[4], "-ERR log in first", "{out}");
        assert_eq!(lines.len(), 6, "{out}");
    }

    #[tokio::test]
    async fn user_pass_opens_the_maildrop() {
        let out = talk(&format!("{LOGIN}STAT\r\nNOOP\r\nQUIT\r\n")).await;
        let size = ONE.len() + TWO.len() + THREE.len();
        assert_eq!(
            out,
            format!(
                "+OK mticket POP3 server ready\r\n+OK send PASS\r\n\
                 +OK anna has 3 messages ({size} octets)\r\n+OK 3 {size}\r\n+OK\r\n\
                 +OK mticket POP3 server signing off\r\n"
            )
        );
    }

    #[tokio::test]
    async fn auth_plain_with_initial_response_and_continuation() {
        let out = talk(&format!(
            "AUTH PLAIN {}\r\nSTAT\r\nQUIT\r\n",
            b64(b"\0anna\0secret")
        ))
        .await;
        assert!(out.contains("\r\n+OK anna has 3 messages"), "{out}");
        assert!(out.contains("\r\n+OK 3 "), "{out}");

        // The continuation form; `*` cancels, an authzid must be the agent itself.
        let out = talk(&format!(
            "AUTH PLAIN\r\n*\r\nAUTH PLAIN {}\r\nauth plain\r\n{}\r\nSTAT\r\nQUIT\r\n",
            b64(b"bob\0anna\0secret"),
            b64(b"anna\0anna\0secret"),
        ))
        .await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "+ ", "{out}");
        assert_eq!(lines[2], "-ERR authentication cancelled", "{out}");
        assert_eq!(
            lines[3], "-ERR [AUTH] cannot log in as another agent",
            "{out}"
        );
        assert_eq!(lines[4], "+ ", "{out}");
        assert!(lines[5].starts_with("+OK anna has 3 messages"), "{out}");
        assert!(lines[6].starts_with("+OK 3 "), "{out}");
    }

    #[tokio::test]
    async fn wrong_password_is_refused_then_locked_out() {
        let mut cfg = plain();
        cfg.guard = Arc::new(LoginGuard::new(GuardConfig {
            max_failures: 2,
            lockout: Duration::from_secs(60),
            delay_step: Duration::from_millis(1),
        }));
        let out = talk_with(
            cfg,
            sample(),
            format!(
                "USER anna\r\nPASS wrong\r\nAUTH PLAIN {}\r\n{LOGIN}STAT\r\nQUIT\r\n",
                b64(b"\0anna\0wrong")
            ),
        )
        .await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[2], "-ERR [AUTH] wrong login or password", "{out}");
        assert_eq!(lines[3], "-ERR [AUTH] wrong login or password", "{out}");
        // Locked: even the right password is not taken now.
        assert!(
            lines[5].starts_with("-ERR [LOGIN-DELAY] too many failed logins"),
            "{out}"
        );
        assert_eq!(lines[6], "-ERR log in first", "{out}");
    }

    #[tokio::test]
    async fn stat_list_and_uidl() {
        let out = talk(&format!(
            "{LOGIN}LIST\r\nUIDL\r\nLIST 2\r\nUIDL 3\r\nLIST 4\r\nLIST 0\r\nUIDL x\r\nQUIT\r\n"
        ))
        .await;
        let (one, two, three) = (ONE.len(), TWO.len(), THREE.len());
        let total = one + two + three;
        let after_login = out.split_once(" octets)\r\n").unwrap().1;
        assert_eq!(
            after_login,
            format!(
                "+OK 3 messages ({total} octets)\r\n1 {one}\r\n2 {two}\r\n3 {three}\r\n.\r\n\
                 +OK unique-id listing follows\r\n1 t1-a\r\n2 t2-b\r\n3 t3-c\r\n.\r\n\
                 +OK 2 {two}\r\n+OK 3 t3-c\r\n\
                 -ERR no such message: 4\r\n-ERR no such message: 0\r\n\
                 -ERR invalid message number\r\n\
                 +OK mticket POP3 server signing off\r\n"
            )
        );
    }

    #[tokio::test]
    async fn retr_and_top_are_dot_stuffed_with_crlf() {
        let out = talk(&format!(
            "{LOGIN}RETR 1\r\nRETR 2\r\nTOP 2 1\r\nTOP 1 0\r\nRETR 3\r\nTOP 3 10\r\nQUIT\r\n"
        ))
        .await;
        let after_login = out.split_once(" octets)\r\n").unwrap().1;
        assert_eq!(
            after_login,
            format!(
                "+OK {} octets\r\nSubject: one\r\n\r\nfirst\r\n..leading dot\r\nlast\r\n.\r\n\
                 +OK {} octets\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n.\r\n\
                 +OK top of message follows\r\nSubject: two\r\n\r\nline 1\r\n.\r\n\
                 +OK top of message follows\r\nSubject: one\r\n\r\n.\r\n\
                 +OK {} octets\r\nSubject: three\r\n\r\nbody\r\n.\r\n\
                 +OK top of message follows\r\nSubject: three\r\n\r\nbody\r\n.\r\n\
                 +OK mticket POP3 server signing off\r\n",
                ONE.len(),
                TWO.len(),
                THREE.len()
            )
        );
    }

    #[tokio::test]
    async fn large_message_goes_out_whole() {
        let mut big = b"Subject: big\r\n\r\n".to_vec();
        for i in 0..20_000 {
            big.extend_from_slice(format!(".line {i} of a long message body\n").as_bytes());
        }
        let drop = Arc::new(MemDrop {
            messages: vec![("big".into(), big.clone())],
            ..Default::default()
        });
        let out = talk_with(plain(), drop, format!("{LOGIN}RETR 1\r\nQUIT\r\n")).await;
        let after_login = out.split_once(" octets)\r\n").unwrap().1;
        let body = after_login.split_once(" octets\r\n").unwrap().1;
        let (data, rest) = body.split_once("\r\n.\r\n").unwrap();
        assert_eq!(rest, "+OK mticket POP3 server signing off\r\n");
        assert!(!data.contains("\n.line"), "every dot line is stuffed");
        let restored = format!("{data}\r\n")
            .replace("\r\n..", "\r\n.")
            .replace("\r\n", "\n");
        assert_eq!(
            restored,
            String::from_utf8(big).unwrap().replace("\r\n", "\n")
        );
    }

    #[tokio::test]
    async fn dele_then_quit_deletes_exactly_the_marked() {
        let drop = sample();
        let out = talk_with(
            plain(),
            drop.clone(),
            format!(
                "{LOGIN}DELE 1\r\nDELE 3\r\nDELE 3\r\nRETR 1\r\nLIST 3\r\nTOP 1 1\r\nSTAT\r\nLIST\r\nQUIT\r\n"
            ),
        )
        .await;
        let two = TWO.len();
        let after_login = out.split_once(" octets)\r\n").unwrap().1;
        assert_eq!(
            after_login,
            format!(
                "+OK message 1 deleted\r\n+OK message 3 deleted\r\n\
                 -ERR message 3 is already deleted\r\n-ERR message 1 is already deleted\r\n\
                 -ERR message 3 is already deleted\r\n-ERR message 1 is already deleted\r\n\
                 +OK 1 {two}\r\n+OK 1 messages ({two} octets)\r\n2 {two}\r\n.\r\n\
                 +OK mticket POP3 server signing off (2 messages deleted)\r\n"
            )
        );
        assert_eq!(
            deletes(&drop),
            vec![vec!["t1-a".to_string(), "t3-c".into()]]
        );
    }

    #[tokio::test]
    async fn rset_or_a_dropped_connection_deletes_nothing() {
        let drop = sample();
        let out = talk_with(
            plain(),
            drop.clone(),
            format!("{LOGIN}DELE 1\r\nRSET\r\nSTAT\r\nQUIT\r\n"),
        )
        .await;
        assert!(out.contains("+OK maildrop has 3 messages"), "{out}");
        assert!(
            out.ends_with("+OK mticket POP3 server signing off\r\n"),
            "{out}"
        );
        assert!(deletes(&drop).is_empty());

        let out = talk_with(plain(), drop.clone(), format!("{LOGIN}DELE 2\r\n")).await;
        assert!(out.ends_with("+OK message 2 deleted\r\n"), "{out}");
        assert!(deletes(&drop).is_empty());
    }

    #[tokio::test]
    async fn failed_delete_is_reported() {
        let drop = Arc::new(MemDrop {
            fail_delete: true,
            ..Arc::into_inner(sample()).unwrap()
        });
        let out = talk_with(plain(), drop, format!("{LOGIN}DELE 2\r\nQUIT\r\n")).await;
        assert!(
            out.ends_with("-ERR [SYS/TEMP] no marked message was deleted: try again later\r\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn bad_input_gets_err_and_the_session_goes_on() {
        let mut input = b"\x01\x02 garbage (((\r\nFROBNICATE\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'X', 100 * 1024));
        input.extend_from_slice(b"\r\n\xff\xfe NOOP\r\nRETR 1\r\n\r\nCAPA now\r\n");
        input.extend_from_slice(
            format!("{LOGIN}STAT 1\r\nRETR\r\nTOP 1\r\nNOOP\r\nQUIT\r\n").as_bytes(),
        );
        let out = talk_with(plain(), sample(), input).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            &lines[1..8],
            &[
                "-ERR unknown command",
                "-ERR unknown command",
                "-ERR line too long",
                "-ERR command line is not valid UTF-8",
                "-ERR log in first",
                "-ERR empty command line",
                "-ERR this command takes no arguments",
            ],
            "{out}"
        );
        assert_eq!(
            &lines[10..],
            &[
                "-ERR this command takes no arguments",
                "-ERR usage: RETR msg",
                "-ERR usage: TOP msg lines",
                "+OK",
                "+OK mticket POP3 server signing off",
            ],
            "{out}"
        );
    }

    #[tokio::test]
    async fn too_many_errors_close_the_session() {
        let mut cfg = plain();
        cfg.max_errors = 3;
        let out = talk_with(cfg, sample(), "X\r\n".repeat(10)).await;
        assert_eq!(
            out,
            "+OK mticket POP3 server ready\r\n\
             -ERR unknown command\r\n-ERR unknown command\r\n-ERR unknown command\r\n\
             -ERR unknown command\r\n-ERR too many bad commands, closing connection\r\n"
        );
    }

    /// A session whose client stays connected and silent.
    async fn silent_session(cfg: Pop3Config, login: bool) -> (String, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let logins = logins(&dir).await;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = Shutdown::channel();
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            Arc::new(cfg),
            logins,
            sample(),
            shutdown,
            SessionClock::default(),
        ));
        let started = tokio::time::Instant::now();
        if login {
            client.write_all(LOGIN.as_bytes()).await.unwrap();
        }
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut out))
            .await
            .expect("the session ends")
            .unwrap();
        task.await.unwrap().unwrap();
        (String::from_utf8(out).unwrap(), started.elapsed())
    }

    #[tokio::test]
    async fn idle_sessions_end_sooner_before_login() {
        let mut cfg = plain();
        cfg.login_timeout = Duration::from_millis(100);
        cfg.idle_timeout = Duration::from_millis(1500);
        let (out, waited) = silent_session(cfg.clone(), false).await;
        assert!(
            out.ends_with("-ERR idle too long, closing connection\r\n"),
            "{out}"
        );
        assert!(waited < Duration::from_millis(1000), "{waited:?}");
        let (out, waited) = silent_session(cfg, true).await;
        assert!(out.contains("+OK anna has 3 messages"), "{out}");
        assert!(
            out.ends_with("-ERR idle too long, closing connection\r\n"),
            "{out}"
        );
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    }

    #[tokio::test]
    async fn shutdown_says_goodbye() {
        let dir = tempfile::tempdir().unwrap();
        let logins = logins(&dir).await;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (stop, shutdown) = Shutdown::channel();
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            Arc::new(plain()),
            logins,
            sample(),
            shutdown,
            SessionClock::default(),
        ));
        let mut greeting = [0u8; 31];
        client.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"+OK mticket POP3 server ready\r\n");
        stop.trigger();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "-ERR [SYS/TEMP] server shutting down\r\n");
        task.await.unwrap().unwrap();
    }

    /// Reads until the answer ends with `end`.
    async fn read_until(stream: &mut (impl AsyncRead + Unpin), end: &str) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(end.as_bytes()) {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
                .await
                .expect("an answer")
                .unwrap();
            assert_eq!(n, 1, "closed early: {}", String::from_utf8_lossy(&got));
            got.push(byte[0]);
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn stls_upgrades_and_then_takes_the_login() {
        crate::net::tls::install_crypto_provider();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = certified.cert.der().clone();
        let key =
            rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let server_tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let dir = tempfile::tempdir().unwrap();
        let logins = logins(&dir).await;
        let cfg = Pop3Config {
            tls: Some(Arc::new(server_tls)),
            ..Pop3Config::default()
        };
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = Shutdown::channel();
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            Arc::new(cfg),
            logins,
            sample(),
            shutdown,
            SessionClock::default(),
        ));
        // USER after STLS arrives in plaintext and must not count after the handshake.
        client
            .write_all(b"CAPA\r\nSTLS\r\nUSER anna\r\n")
            .await
            .unwrap();
        let plain = read_until(&mut client, "+OK begin TLS negotiation\r\n").await;
        assert!(plain.contains("\r\nSTLS\r\n"), "{plain}");
        assert!(!plain.contains("USER"), "{plain}");

        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client_tls))
            .connect(name, client)
            .await
            .unwrap();
        tls.write_all(
            b"PASS secret\r\nCAPA\r\nSTLS\r\nUSER anna\r\nPASS secret\r\nSTAT\r\nQUIT\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
            .await
            .expect("the session ends")
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("-ERR say USER first\r\n"), "{out}");
        assert!(out.contains("\r\nUSER\r\nSASL PLAIN\r\n"), "{out}");
        assert!(out.contains("-ERR TLS is already active\r\n"), "{out}");
        assert!(!out.contains("\r\nSTLS\r\n"), "{out}");
        assert!(out.contains("+OK anna has 3 messages"), "{out}");
        assert!(
            out.ends_with("+OK mticket POP3 server signing off\r\n"),
            "{out}"
        );
        task.await.unwrap().unwrap();
    }

    #[test]
    fn message_lines_end_the_header_and_count_body_lines() {
        let msg = b"A: 1\r\nB: 2\n\r\nx\ny\r\nz";
        let all: Vec<&[u8]> = MessageLines::new(msg, None).collect();
        assert_eq!(all, [&b"A: 1"[..], b"B: 2", b"", b"x", b"y", b"z"]);
        let top: Vec<&[u8]> = MessageLines::new(msg, Some(2)).collect();
        assert_eq!(top, [&b"A: 1"[..], b"B: 2", b"", b"x", b"y"]);
        // Without a blank line, everything is header.
        let top: Vec<&[u8]> = MessageLines::new(b"A: 1\nB: 2\n", Some(0)).collect();
        assert_eq!(top, [&b"A: 1"[..], b"B: 2"]);
        assert_eq!(MessageLines::new(b"", None).count(), 0);
    }
}
