//! The SMTP server every mail port speaks: inbound SMTP and LMTP (RFC 5321, RFC 2033) for
//! customer mail from MTAs, and submission (RFC 6409) with AUTH (RFC 4954) for agents.
//!
//! Owns the session rules only: command sequence, limits, STARTTLS and implicit TLS, AUTH
//! PLAIN/LOGIN with the failed-login guard, and the mapping of results to replies. What an
//! address is and how a mail is committed belong to the [`MailService`] behind it. The
//! DATA reply is sent only after [`MailService::deliver`] returned ("250 only after
//! commit"); the only change to the message is a prepended `Return-Path:` line.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, EXT_8BIT_MIME, EXT_AUTH, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING,
    EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, Error as ProtoError,
    MAIL_BODY_BINARYMIME, Request,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::net::listener::{Listener, ListenerError, SessionClock, SessionStream, Shutdown};
use crate::protocol::line::{LineBuffer, TooLong};
use crate::protocol::login_guard::{Checked, LoginGuard, LoginOutcome};

/// Longest command line accepted, CRLF included (RFC 5321 asks for at least 512).
pub const MAX_LINE: usize = 4096;
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Listener(#[from] ListenerError),
}

/// Why a mail service did not take a mail for a recipient. [`DeliverError::reply`] is the
/// one mapping to what the client reads.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliverError {
    /// Cannot be taken now (the store is away, the disk is full): 451 4.3.0, and the client
    /// tries again later. The cause is for the log, never for the client.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The recipient is not (or no longer) an address mail is taken for: 550 5.1.1.
    #[error("no such recipient")]
    NoSuchRecipient,
    /// Can never be taken as it is: 554 5.6.0, and the client bounces it. The cause is for
    /// the log, never for the client.
    #[error("rejected: {0}")]
    Permanent(String),
    /// Refused for a reason the sender must read (submission: a bad command, a missing
    /// attachment): this exact reply, its text possibly over several lines.
    #[error("{code} {esc} {text}")]
    Refused {
        code: u16,
        esc: &'static str,
        text: String,
    },
}

/// An SMTP reply: one code and enhanced code, one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub esc: &'static str,
    pub lines: Vec<String>,
}

impl DeliverError {
    pub fn is_transient(&self) -> bool {
        matches!(self, DeliverError::Transient(_))
    }

    /// What the client reads for this failure; `rcpt` names the recipient in LMTP's
    /// per-recipient replies (empty in SMTP).
    pub fn reply(&self, rcpt: &str) -> Reply {
        let who = if rcpt.is_empty() {
            String::new()
        } else {
            format!(" <{}>", one_line(rcpt))
        };
        let (code, esc, text) = match self {
            DeliverError::Transient(_) => (
                451,
                "4.3.0",
                format!("temporary failure{who}: try again later"),
            ),
            DeliverError::NoSuchRecipient => (550, "5.1.1", format!("no such queue address{who}")),
            DeliverError::Permanent(_) => (
                554,
                "5.6.0",
                format!("rejected{who}: the mail cannot be taken in"),
            ),
            DeliverError::Refused { code, esc, text } => {
                let lines: Vec<String> = text.lines().map(one_line).collect();
                let lines = if lines.is_empty() {
                    vec!["refused".to_string()]
                } else {
                    lines
                };
                return Reply {
                    code: *code,
                    esc,
                    lines,
                };
            }
        };
        Reply {
            code,
            esc,
            lines: vec![text],
        }
    }
}

/// The service cannot answer now (its store is away): the client is asked to try again
/// later, never told that an address or a login is wrong.
#[derive(Debug, thiserror::Error)]
#[error("service unavailable: {0}")]
pub struct Unavailable(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl Unavailable {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Unavailable {
        Unavailable(Box::new(e))
    }
}

/// What stands behind a port: the intake pipeline (inbound, LMTP) or agent submission.
pub trait MailService: Send + Sync + 'static {
    /// Who a successful AUTH names (an agent); `()` where AUTH is not offered.
    type Agent: Send + Sync + 'static;
    /// Checks a login and password; `Err` when the check itself failed (database down).
    /// Only called where [`SmtpConfig::auth`] is set, through the failed-login guard.
    fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> impl Future<Output = Result<Checked<Self::Agent>, Unavailable>> + Send;
    /// RCPT check: may mail for this address be taken (an enabled queue address, or
    /// anything from an authenticated agent)? `Err` when that cannot be told now (database
    /// down): the client is asked to try again later, never told the address is unknown.
    fn accepts(
        &self,
        agent: Option<&Self::Agent>,
        rcpt: &str,
    ) -> impl Future<Output = Result<bool, Unavailable>> + Send;
    /// Commits one mail for the accepted recipients; one result per recipient, in order,
    /// `Ok` only once durably committed. `raw` starts with the `Return-Path:` line.
    fn deliver(
        &self,
        agent: Option<&Self::Agent>,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> impl Future<Output = Vec<Result<(), DeliverError>>> + Send;
}

/// AUTH on a port: required before MAIL, offered only over TLS unless `allow_plain`.
#[derive(Clone)]
pub struct AuthPolicy {
    /// AUTH without TLS: only for a loopback listener, and only when configured.
    pub allow_plain: bool,
    /// Failed logins: delay, then temporary lockout (shared by every port of the gateway).
    pub guard: Arc<LoginGuard>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Smtp,
    Lmtp,
}

#[derive(Clone)]
pub struct SmtpConfig {
    pub mode: Mode,
    /// Our name in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message accepted (bytes, as received after dot-unstuffing).
    pub max_size: usize,
    pub max_recipients: usize,
    /// Bad commands tolerated per session before 421 and close.
    pub max_errors: usize,
    /// Waiting for the client (any read or write) longer than this ends the session with 421.
    pub idle_timeout: Duration,
    /// STARTTLS is offered only when set (and the session is not TLS already).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The session starts with a TLS handshake (port 465), using `tls`.
    pub implicit_tls: bool,
    /// `Some` on the submission ports: AUTH required before MAIL.
    pub auth: Option<AuthPolicy>,
}

impl SmtpConfig {
    pub fn new(mode: Mode, hostname: impl Into<String>) -> Self {
        Self {
            mode,
            hostname: hostname.into(),
            max_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 20,
            idle_timeout: Duration::from_secs(300),
            tls: None,
            implicit_tls: false,
            auth: None,
        }
    }
}

/// Runs the server on a bound listener until `shutdown`.
pub async fn serve<K: MailService>(
    listener: Listener,
    cfg: SmtpConfig,
    sink: Arc<K>,
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
                let sink = sink.clone();
                async move {
                    if let Err(e) =
                        run_session(stream, Some(peer), cfg, sink, shutdown, clock).await
                    {
                        tracing::debug!(%peer, error = %e, "SMTP session ended with error");
                    }
                }
            },
        )
        .await;
}

/// One SMTP/LMTP session over any stream (tests use `tokio::io::duplex`).
pub async fn run_session<S, K>(
    stream: SessionStream<S>,
    peer: Option<SocketAddr>,
    cfg: Arc<SmtpConfig>,
    sink: Arc<K>,
    shutdown: Shutdown,
    clock: SessionClock,
) -> Result<(), SmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    K: MailService,
{
    let mut session = Session {
        stream: Some(stream),
        cfg,
        sink,
        shutdown,
        clock,
        peer,
        input: LineBuffer::new(READ_CHUNK),
        out: Vec::with_capacity(512),
        helo: None,
        tx: None,
        errors: 0,
        skip_bytes: 0,
        agent: None,
        sasl: None,
    };
    session.run().await
}

/// One mail transaction (MAIL .. DATA).
struct Transaction {
    mail_from: String,
    /// Distinct accepted recipients, in first-seen order.
    rcpts: Vec<String>,
    /// Index into `rcpts` for every successful RCPT command: LMTP answers DATA once per
    /// successful RCPT, while a duplicate address must not be committed twice.
    slots: Vec<usize>,
}

enum Step {
    Continue,
    Close,
}

/// What reading more input produced.
enum Input {
    Data,
    Eof,
    Timeout,
    Shutdown,
}

struct Session<S, K: MailService> {
    /// `None` only transiently during a STARTTLS upgrade.
    stream: Option<SessionStream<S>>,
    cfg: Arc<SmtpConfig>,
    sink: Arc<K>,
    shutdown: Shutdown,
    clock: SessionClock,
    peer: Option<SocketAddr>,
    /// Unprocessed input; never more than one command line plus one read chunk.
    input: LineBuffer,
    /// Replies not yet written; flushed before blocking on input (PIPELINING batches them).
    out: Vec<u8>,
    helo: Option<String>,
    tx: Option<Transaction>,
    errors: usize,
    /// Bytes of a refused BDAT chunk still to throw away.
    skip_bytes: usize,
    /// Set by a successful AUTH, for the rest of the session.
    agent: Option<K::Agent>,
    /// An AUTH exchange waiting for the client's next line.
    sasl: Option<Sasl>,
}

/// Where an AUTH exchange stands (RFC 4954 §4): the next line is a SASL response.
enum Sasl {
    /// PLAIN without an initial response: the whole response comes next.
    Plain,
    /// LOGIN: the user name comes next.
    LoginUser,
    /// LOGIN: the password comes next.
    LoginPassword(String),
}

impl<S, K> Session<S, K>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    K: MailService,
{
    async fn run(&mut self) -> Result<(), SmtpError> {
        let greeting = match self.cfg.mode {
            Mode::Smtp => "ESMTP mticket",
            Mode::Lmtp => "LMTP mticket",
        };
        let line = format!("220 {} {greeting}\r\n", self.cfg.hostname);
        self.out.extend_from_slice(line.as_bytes());
        loop {
            if self.skip_bytes > 0 {
                let n = self.skip_bytes.min(self.input.pending().len());
                self.input.consume(n);
                self.skip_bytes -= n;
            }
            let line = match self.skip_bytes {
                0 => self
                    .input
                    .next_line(MAX_LINE - 2)
                    .map(|l| l.map(<[u8]>::to_vec)),
                _ => None,
            };
            if let Some(line) = line {
                match line {
                    Err(TooLong) => {
                        self.sasl = None;
                        self.error(500, "5.5.2", "line too long");
                    }
                    Ok(line) => {
                        if let Step::Close = self.line(line).await? {
                            break;
                        }
                    }
                }
                if self.errors > self.cfg.max_errors {
                    self.reply(421, "4.7.0", "too many errors, closing connection");
                    break;
                }
                continue;
            }
            match self.read_more().await? {
                Input::Data => {}
                Input::Eof => return Ok(()),
                Input::Timeout => {
                    self.reply(421, "4.4.2", "idle timeout, closing connection");
                    break;
                }
                Input::Shutdown => {
                    self.reply(421, "4.3.2", "shutting down, try again later");
                    break;
                }
            }
        }
        self.flush().await?;
        if let Some(stream) = self.stream.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
        }
        Ok(())
    }

    /// One complete command line (without its line end), or a SASL response.
    async fn line(&mut self, line: Vec<u8>) -> Result<Step, SmtpError> {
        if let Some(step) = self.sasl.take() {
            self.sasl_response(step, &line).await;
            return Ok(Step::Continue);
        }
        let mut line = line;
        line.extend_from_slice(b"\r\n");
        self.command(&line).await
    }

    /// Flushes pending replies, then reads one chunk into `input`.
    async fn read_more(&mut self) -> Result<Input, SmtpError> {
        if !self.flush().await? {
            return Ok(Input::Timeout);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(Input::Eof);
        };
        let timeout = self.clock.read_timeout(self.cfg.idle_timeout);
        let read = tokio::select! {
            _ = self.shutdown.wait() => return Ok(Input::Shutdown),
            r = tokio::time::timeout(timeout, self.input.read_from(stream)) => r,
        };
        match read {
            Err(_) => Ok(Input::Timeout),
            Ok(Ok(0)) => Ok(Input::Eof),
            Ok(Ok(_)) => Ok(Input::Data),
            // A reset peer is an ordinary end of session for us.
            Ok(Err(e)) => {
                tracing::debug!(peer = ?self.peer, error = %e, "read failed");
                Ok(Input::Eof)
            }
        }
    }

    /// Writes pending replies; `false` when the client did not take them in time.
    async fn flush(&mut self) -> Result<bool, SmtpError> {
        if self.out.is_empty() {
            return Ok(true);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(true);
        };
        let out = std::mem::take(&mut self.out);
        match tokio::time::timeout(self.cfg.idle_timeout, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await
        {
            Ok(r) => {
                r?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn reply(&mut self, code: u16, esc: &str, text: &str) {
        let line = format!("{code} {esc} {text}\r\n");
        self.out.extend_from_slice(line.as_bytes());
    }

    /// A reply that counts towards `max_errors`.
    fn error(&mut self, code: u16, esc: &str, text: &str) {
        self.errors += 1;
        self.reply(code, esc, text);
    }

    async fn command(&mut self, line: &[u8]) -> Result<Step, SmtpError> {
        // Each complete line is parsed on its own, so a malformed command can never leave
        // the parser out of step with the input.
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                self.parse_error(e);
                return Ok(Step::Continue);
            }
        };
        if self.cfg.auth.is_none() {
            self.clock.working();
        }
        let lmtp = self.cfg.mode == Mode::Lmtp;
        match request {
            Request::Ehlo { host } | Request::Helo { host } if lmtp => {
                let _ = host;
                self.error(500, "5.5.1", "this is LMTP, use LHLO");
            }
            Request::Lhlo { .. } if !lmtp => self.error(500, "5.5.1", "this is SMTP, use EHLO"),
            Request::Ehlo { host } | Request::Lhlo { host } => self.ehlo(host),
            Request::Helo { host } => {
                self.helo = Some(host);
                self.tx = None;
                let line = format!("250 {}\r\n", self.cfg.hostname);
                self.out.extend_from_slice(line.as_bytes());
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to.address).await,
            Request::Data => return self.data().await,
            Request::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0", "OK");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0", "OK"),
            Request::Quit => {
                self.reply(221, "2.0.0", "bye");
                return Ok(Step::Close);
            }
            Request::Vrfy { .. } => {
                self.reply(252, "2.5.0", "cannot verify, but will accept the message")
            }
            Request::Help { .. } => self.reply(214, "2.0.0", "see RFC 5321"),
            Request::StartTls => return self.starttls().await,
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Bdat { chunk_size, .. } => {
                // CHUNKING is not offered; the chunk's bytes follow the command and must not
                // be read as commands.
                self.skip_bytes = chunk_size;
                self.error(502, "5.5.1", "CHUNKING not offered");
            }
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(502, "5.5.1", "command not implemented"),
        }
        Ok(Step::Continue)
    }

    fn parse_error(&mut self, e: ProtoError) {
        match e {
            ProtoError::UnknownCommand => self.error(500, "5.5.2", "unknown command"),
            ProtoError::SyntaxError { syntax } => {
                self.error(501, "5.5.4", &format!("syntax: {syntax}"))
            }
            ProtoError::InvalidSenderAddress => self.error(501, "5.1.7", "invalid sender address"),
            ProtoError::InvalidRecipientAddress => {
                self.error(501, "5.1.3", "invalid recipient address")
            }
            ProtoError::InvalidParameter { param } => {
                self.error(501, "5.5.4", &format!("invalid parameter {param}"))
            }
            ProtoError::UnsupportedParameter { .. } => {
                self.error(555, "5.5.4", "unsupported parameter")
            }
            // A complete line the parser still wants more of is garbage too.
            _ => self.error(500, "5.5.2", "syntax error"),
        }
    }

    fn ehlo(&mut self, host: String) {
        self.helo = Some(host);
        self.tx = None;
        let mut ehlo = EhloResponse::new(self.cfg.hostname.as_str());
        ehlo.capabilities =
            EXT_8BIT_MIME | EXT_PIPELINING | EXT_ENHANCED_STATUS_CODES | EXT_SMTP_UTF8 | EXT_SIZE;
        ehlo.size = self.cfg.max_size;
        if self.cfg.tls.is_some() && !self.is_tls() {
            ehlo.capabilities |= EXT_START_TLS;
        }
        if self.auth_offered() {
            ehlo.capabilities |= EXT_AUTH;
            ehlo.auth_mechanisms = AUTH_PLAIN | AUTH_LOGIN;
        }
        // Writing into a Vec cannot fail.
        let _ = ehlo.write(&mut self.out);
    }

    fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(SessionStream::is_tls)
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) {
        if self.helo.is_none() {
            let hello = if self.cfg.mode == Mode::Lmtp {
                "LHLO"
            } else {
                "EHLO/HELO"
            };
            return self.error(503, "5.5.1", &format!("send {hello} first"));
        }
        if self.cfg.auth.is_some() && self.agent.is_none() {
            return self.error(530, "5.7.0", "authentication required");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "nested MAIL command");
        }
        // It becomes a header line: a control character would let a sender forge headers.
        if from.address.chars().any(char::is_control) {
            return self.error(501, "5.1.7", "invalid sender address");
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.error(555, "5.5.4", "BINARYMIME not offered");
        }
        if from.size > self.cfg.max_size {
            return self.reply(552, "5.3.4", "message size exceeds fixed maximum");
        }
        self.tx = Some(Transaction {
            mail_from: from.address,
            rcpts: Vec::new(),
            slots: Vec::new(),
        });
        self.reply(250, "2.1.0", "sender OK");
    }

    async fn rcpt(&mut self, address: String) {
        let Some(tx) = self.tx.as_ref() else {
            return self.error(503, "5.5.1", "need MAIL before RCPT");
        };
        if tx.slots.len() >= self.cfg.max_recipients {
            return self.reply(452, "4.5.3", "too many recipients");
        }
        if address.is_empty() || address.chars().any(char::is_control) {
            return self.error(501, "5.1.3", "invalid recipient address");
        }
        match self.sink.accepts(self.agent.as_ref(), &address).await {
            Ok(true) => {}
            // Counted: repeated misses are how address harvesting looks.
            Ok(false) => return self.error(550, "5.1.1", "no such queue address"),
            Err(e) => {
                tracing::error!(error = %e, "cannot check a recipient; asking to try again later");
                return self.reply(
                    451,
                    "4.3.0",
                    "cannot check the address now, try again later",
                );
            }
        }
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        let idx = match tx
            .rcpts
            .iter()
            .position(|r| r.eq_ignore_ascii_case(&address))
        {
            Some(i) => i,
            None => {
                tx.rcpts.push(address);
                tx.rcpts.len() - 1
            }
        };
        tx.slots.push(idx);
        self.reply(250, "2.1.5", "recipient OK");
    }

    /// AUTH is offered on this port, and over this connection.
    fn auth_offered(&self) -> bool {
        self.cfg
            .auth
            .as_ref()
            .is_some_and(|a| a.allow_plain || self.is_tls())
    }

    async fn auth(&mut self, mechanism: u64, initial: String) {
        let Some(policy) = self.cfg.auth.as_ref() else {
            return self.error(502, "5.5.1", "no AUTH on this port");
        };
        if !policy.allow_plain && !self.is_tls() {
            return self.error(538, "5.7.11", "encryption required: use STARTTLS first");
        }
        if self.agent.is_some() {
            return self.error(503, "5.5.1", "already authenticated");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "AUTH not allowed during a mail transaction");
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.sasl = Some(Sasl::Plain);
                self.out.extend_from_slice(b"334 \r\n");
            }
            AUTH_PLAIN => self.sasl_response(Sasl::Plain, initial.as_bytes()).await,
            AUTH_LOGIN if initial.is_empty() => {
                self.sasl = Some(Sasl::LoginUser);
                self.out.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
            }
            AUTH_LOGIN => {
                self.sasl_response(Sasl::LoginUser, initial.as_bytes())
                    .await
            }
            _ => self.error(
                504,
                "5.5.4",
                "unrecognized authentication type: use PLAIN or LOGIN",
            ),
        }
    }

    /// One client line of an AUTH exchange (base64, or `*` to cancel).
    async fn sasl_response(&mut self, step: Sasl, line: &[u8]) {
        let line = trim_crlf(line);
        if line == b"*" {
            return self.error(501, "5.7.0", "authentication cancelled");
        }
        let Ok(decoded) = BASE64.decode(line) else {
            return self.error(501, "5.5.2", "cannot decode the response (base64)");
        };
        match step {
            Sasl::Plain => match crate::login::plain_credentials(&decoded) {
                Ok((user, pass)) => self.login_attempt(&user, &pass).await,
                Err(crate::login::PlainError::OtherIdentity) => {
                    self.error(535, "5.7.8", "authentication credentials invalid")
                }
                Err(e) => self.error(501, "5.5.2", &e.to_string()),
            },
            Sasl::LoginUser => {
                self.sasl = Some(Sasl::LoginPassword(
                    String::from_utf8_lossy(&decoded).into_owned(),
                ));
                self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
            }
            Sasl::LoginPassword(user) => {
                let pass = String::from_utf8_lossy(&decoded).into_owned();
                self.login_attempt(&user, &pass).await;
            }
        }
    }

    async fn login_attempt(&mut self, user: &str, pass: &str) {
        let Some(policy) = self.cfg.auth.clone() else {
            return;
        };
        let check = self.sink.authenticate(user, pass);
        match policy.guard.attempt("SMTP", self.peer, user, check).await {
            LoginOutcome::LoggedIn(agent) => {
                self.agent = Some(agent);
                self.clock.working();
                self.reply(235, "2.7.0", "authentication successful");
            }
            LoginOutcome::Refused => self.error(535, "5.7.8", "authentication credentials invalid"),
            LoginOutcome::Locked(wait) => self.error(
                454,
                "4.7.0",
                &format!(
                    "too many failed logins: try again in {} s",
                    wait.as_secs().max(1)
                ),
            ),
            LoginOutcome::TooManySessions => {
                self.reply(454, "4.7.0", "too many open sessions for this agent")
            }
            LoginOutcome::Unavailable => {
                self.reply(454, "4.7.0", "temporary authentication failure")
            }
        }
    }

    async fn starttls(&mut self) -> Result<Step, SmtpError> {
        let Some(tls) = self.cfg.tls.clone() else {
            self.error(502, "5.5.1", "STARTTLS not offered");
            return Ok(Step::Continue);
        };
        if self.is_tls() {
            self.error(503, "5.5.1", "TLS already active");
            return Ok(Step::Continue);
        }
        self.reply(220, "2.0.0", "ready to start TLS");
        if !self.flush().await? {
            return Ok(Step::Close);
        }
        // Anything pipelined after STARTTLS arrived in plaintext: drop it (RFC 3207 §4.2).
        self.input.clear();
        let Some(plain) = self.stream.take() else {
            return Ok(Step::Close);
        };
        let acceptor = TlsAcceptor::from(tls);
        let timeout = self.clock.read_timeout(self.cfg.idle_timeout);
        match tokio::time::timeout(timeout, plain.upgrade(&acceptor)).await {
            Ok(Ok(stream)) => {
                self.stream = Some(stream);
                // The session starts over (RFC 3207 §4.2).
                self.helo = None;
                self.tx = None;
                self.agent = None;
                Ok(Step::Continue)
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = ?self.peer, error = %e, "STARTTLS failed");
                Ok(Step::Close)
            }
            Err(_) => Ok(Step::Close),
        }
    }

    async fn data(&mut self) -> Result<Step, SmtpError> {
        let Some(tx) = self.tx.take() else {
            self.error(503, "5.5.1", "need MAIL before DATA");
            return Ok(Step::Continue);
        };
        if tx.slots.is_empty() {
            self.error(503, "5.5.1", "no valid recipients");
            return Ok(Step::Continue);
        }
        self.out
            .extend_from_slice(b"354 end data with <CR><LF>.<CR><LF>\r\n");
        let header = format!("Return-Path: <{}>\r\n", tx.mail_from);
        let Some(body) = self.read_data(header.as_bytes()).await? else {
            // Dropped or timed out mid-DATA: nothing is delivered.
            return Ok(Step::Close);
        };
        let Some(raw) = body else {
            self.reply(552, "5.3.4", "message size exceeds fixed maximum");
            return Ok(Step::Continue);
        };
        if !self.flush().await? {
            return Ok(Step::Close);
        }
        let results = self
            .sink
            .deliver(self.agent.as_ref(), &tx.mail_from, &tx.rcpts, &raw)
            .await;
        let result = |i: usize| -> Result<(), DeliverError> {
            results
                .get(i)
                .cloned()
                .unwrap_or_else(|| Err(DeliverError::Transient("no result from pipeline".into())))
        };
        match self.cfg.mode {
            Mode::Lmtp => {
                for &slot in &tx.slots {
                    let r = result(slot);
                    self.delivery_reply(&r, &tx.rcpts[slot]);
                }
            }
            Mode::Smtp => {
                // One reply covers every recipient, so a partial failure fails the whole mail:
                // the client's retry may duplicate, but nothing is lost silently.
                let all: Vec<_> = (0..tx.rcpts.len()).map(result).collect();
                let worst = all
                    .iter()
                    .find(|r| r.as_ref().is_err_and(DeliverError::is_transient))
                    .or_else(|| all.iter().find(|r| r.is_err()))
                    .cloned()
                    .unwrap_or(Ok(()));
                self.delivery_reply(&worst, "");
            }
        }
        Ok(Step::Continue)
    }

    fn delivery_reply(&mut self, r: &Result<(), DeliverError>, rcpt: &str) {
        let reply = match r {
            Ok(()) if rcpt.is_empty() => return self.reply(250, "2.0.0", "message accepted"),
            Ok(()) => return self.reply(250, "2.0.0", &format!("message accepted <{rcpt}>")),
            Err(e) => e.reply(rcpt),
        };
        for (i, line) in reply.lines.iter().enumerate() {
            let sep = if i + 1 == reply.lines.len() { ' ' } else { '-' };
            let out = format!("{}{sep}{} {line}\r\n", reply.code, reply.esc);
            self.out.extend_from_slice(out.as_bytes());
        }
    }

    /// Reads the DATA body after 354. `None`: connection gone or timed out (close).
    /// `Some(None)`: over `max_size`, read to the end and discarded. `Some(Some(raw))`:
    /// `prefix` followed by the dot-unstuffed message.
    async fn read_data(&mut self, prefix: &[u8]) -> Result<Option<Option<Vec<u8>>>, SmtpError> {
        let mut data = DataReceiver::new();
        let mut body = Vec::with_capacity(prefix.len() + 4096);
        // The receiver only sees "\r\n." as a terminator; the CRLF ending the DATA command
        // counts, so prime it with one (and drop it) to catch an empty message.
        data.ingest(&mut b"\r\n".iter(), &mut body);
        body.clear();
        body.extend_from_slice(prefix);
        let limit = prefix.len() + self.cfg.max_size;
        let mut discard: Option<DummyDataReceiver> = None;
        loop {
            if !self.input.is_empty() {
                let pending = self.input.pending();
                let mut it = pending.iter();
                let done = match discard.as_mut() {
                    Some(d) => d.ingest(&mut it),
                    None => data.ingest(&mut it, &mut body),
                };
                let used = pending.len() - it.len();
                self.input.consume(used);
                if discard.is_none() && body.len() > limit {
                    // Keep reading to the terminating dot, but keep nothing.
                    discard = Some(DummyDataReceiver::new_data(&data));
                    body = Vec::new();
                }
                if done {
                    return Ok(Some(discard.is_none().then_some(body)));
                }
            }
            match self.read_more().await? {
                Input::Data => {}
                Input::Eof => {
                    tracing::info!(
                        peer = ?self.peer,
                        received = body.len(),
                        "client went away in the middle of DATA: nothing was acknowledged, the mail is dropped"
                    );
                    return Ok(None);
                }
                Input::Timeout => {
                    self.reply(421, "4.4.2", "timeout during DATA, closing connection");
                    let _ = self.flush().await;
                    return Ok(None);
                }
                Input::Shutdown => {
                    self.reply(421, "4.3.2", "shutting down, try again later");
                    let _ = self.flush().await;
                    return Ok(None);
                }
            }
        }
    }
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

/// Pipeline error texts go into a reply line: no CR/LF, bounded length.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

    type Mail = (String, Vec<String>, Vec<u8>);

    #[derive(Default)]
    struct MemSink {
        queues: HashSet<String>,
        mails: Mutex<Vec<Mail>>,
        fail: Mutex<Option<DeliverError>>,
    }

    impl MailService for MemSink {
        type Agent = String;

        async fn authenticate(
            &self,
            login: &str,
            password: &str,
        ) -> Result<Checked<String>, Unavailable> {
            Ok(match login == "anna" && password == "secret" {
                true => Checked::Agent(login.to_string()),
                false => Checked::Wrong,
            })
        }

        async fn accepts(&self, agent: Option<&String>, rcpt: &str) -> Result<bool, Unavailable> {
            Ok(agent.is_some() || self.queues.contains(&rcpt.to_ascii_lowercase()))
        }

        async fn deliver(
            &self,
            agent: Option<&String>,
            mail_from: &str,
            rcpts: &[String],
            raw: &[u8],
        ) -> Vec<Result<(), DeliverError>> {
            if let Some(e) = self.fail.lock().expect("lock").clone() {
                return rcpts.iter().map(|_| Err(e.clone())).collect();
            }
            let from = match agent {
                Some(a) => format!("{a}:{mail_from}"),
                None => mail_from.to_string(),
            };
            self.mails
                .lock()
                .expect("lock")
                .push((from, rcpts.to_vec(), raw.to_vec()));
            rcpts.iter().map(|_| Ok(())).collect()
        }
    }

    struct Client {
        rd: BufReader<ReadHalf<DuplexStream>>,
        wr: WriteHalf<DuplexStream>,
        sink: Arc<MemSink>,
        task: tokio::task::JoinHandle<Result<(), SmtpError>>,
    }

    fn config(mode: Mode) -> SmtpConfig {
        let mut cfg = SmtpConfig::new(mode, "mx.test");
        cfg.max_size = 1000;
        cfg.max_recipients = 3;
        cfg.max_errors = 5;
        cfg
    }

    async fn start(cfg: SmtpConfig) -> Client {
        let sink = Arc::new(MemSink {
            queues: ["support@example.com", "sales@example.com"]
                .into_iter()
                .map(String::from)
                .collect(),
            ..MemSink::default()
        });
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_h, shutdown) = Shutdown::channel();
        std::mem::forget(_h);
        let task = tokio::spawn(run_session(
            SessionStream::Plain(server),
            None,
            Arc::new(cfg),
            sink.clone(),
            shutdown,
            SessionClock::default(),
        ));
        let (rd, wr) = tokio::io::split(client);
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
            sink,
            task,
        };
        c.expect("220").await;
        c
    }

    impl Client {
        /// Reads one (possibly multi-line) reply and checks its code.
        async fn expect(&mut self, code: &str) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                let n = self.rd.read_line(&mut line).await.expect("read");
                assert!(
                    n > 0,
                    "connection closed, wanted {code}; got so far {all:?}"
                );
                all.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            assert!(all.starts_with(code), "wanted {code}, got {all:?}");
            all
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.wr.write_all(bytes).await.expect("write");
        }

        async fn cmd(&mut self, line: &str, code: &str) -> String {
            self.send(format!("{line}\r\n").as_bytes()).await;
            self.expect(code).await
        }

        async fn closed(&mut self) -> bool {
            let mut rest = String::new();
            matches!(self.rd.read_line(&mut rest).await, Ok(0))
        }

        fn mails(&self) -> Vec<Mail> {
            self.sink.mails.lock().expect("lock").clone()
        }
    }

    #[tokio::test]
    async fn smtp_happy_path_keeps_bytes() {
        let mut c = start(config(Mode::Smtp)).await;
        let ehlo = c.cmd("EHLO client.test", "250").await;
        for cap in [
            "PIPELINING",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "SIZE 1000",
        ] {
            assert!(ehlo.contains(cap), "{cap} missing in {ehlo}");
        }
        assert!(!ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"));
        c.cmd("MAIL FROM:<a@b.test> SIZE=100", "250 2.1.0").await;
        c.cmd("RCPT TO:<Support@Example.com>", "250 2.1.5").await;
        c.cmd("RCPT TO:<nobody@example.com>", "550 5.1.1").await;
        c.cmd("DATA", "354").await;
        c.send(b"Subject: hi\r\n\r\n..leading dot\r\nline\xff\r\n.\r\n")
            .await;
        c.expect("250 2.0.0").await;
        c.cmd("QUIT", "221").await;
        let mails = c.mails();
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].0, "a@b.test");
        assert_eq!(mails[0].1, vec!["Support@Example.com".to_string()]);
        assert_eq!(
            mails[0].2,
            b"Return-Path: <a@b.test>\r\nSubject: hi\r\n\r\n.leading dot\r\nline\xff\r\n"
        );
        assert!(c.task.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn pipelined_transaction_and_null_sender() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("EHLO client.test", "250").await;
        c.send(b"MAIL FROM:<>\r\nRCPT TO:<support@example.com>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n")
            .await;
        c.expect("250").await;
        c.expect("250").await;
        c.expect("550").await;
        c.expect("354").await;
        c.send(b"X: y\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\n").await;
        c.expect("250 2.0.0").await;
        c.expect("250").await;
        c.expect("250").await;
        assert!(c.mails()[0].2.starts_with(b"Return-Path: <>\r\nX: y\r\n"));
    }

    #[tokio::test]
    async fn empty_message() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("HELO client.test", "250 mx.test").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b".\r\n").await;
        c.expect("250").await;
        assert_eq!(c.mails()[0].2, b"Return-Path: <a@b.test>\r\n");
    }

    #[tokio::test]
    async fn sequence_errors_and_unknowns() {
        let mut cfg = config(Mode::Smtp);
        cfg.max_errors = 9;
        let mut c = start(cfg).await;
        c.cmd("MAIL FROM:<a@b.test>", "503").await;
        c.cmd("LHLO x", "500").await;
        c.cmd("EHLO x", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "503").await;
        c.cmd("DATA", "503").await;
        c.cmd("VRFY someone", "252").await;
        c.cmd("NOOP", "250").await;
        c.cmd("AUTH PLAIN AGZvbwBiYXI=", "502").await;
        c.cmd("STARTTLS", "502").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("MAIL FROM:<a@b.test>", "503").await;
        c.cmd("RCPT TO:<nobody@example.com>", "550").await;
        c.cmd("DATA", "503").await;
        // Error budget (9) is now spent: the next error closes.
        c.cmd("FOO", "500").await;
        c.expect("421 4.7.0").await;
        assert!(c.closed().await);
    }

    #[tokio::test]
    async fn garbage_and_invalid_utf8() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("\u{1}\u{2}garbage", "500").await;
        c.send(b"EHLO \xff\xfe\r\n").await;
        let r = c.expect("").await;
        // smtp-proto reads the host lossily: a greeting name is not checked, so 250.
        assert!(r.starts_with("250-mx.test "), "{r}");
        c.cmd("EHLO ok", "250").await;
        c.send(b"MAIL FROM:<\xff@b.test>\r\n").await;
        let r = c.expect("").await;
        // Lossily read too (SMTPUTF8 is offered); the address reaches the pipeline as text.
        assert_eq!(r, "250 2.1.0 sender OK\r\n");
        c.cmd("RSET", "250").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.send(b"RCPT TO:<sup\xffport@example.com>\r\n").await;
        let r = c.expect("").await;
        // The lossy address is no queue address.
        assert_eq!(r, "550 5.1.1 no such queue address\r\n");
        c.cmd("NOOP", "250").await;
    }

    #[tokio::test]
    async fn long_line_is_refused_and_session_continues() {
        let mut c = start(config(Mode::Smtp)).await;
        let long = format!("NOOP {}", "x".repeat(MAX_LINE * 3));
        c.cmd(&long, "500 5.5.2").await;
        c.cmd("NOOP", "250").await;
    }

    #[tokio::test]
    async fn size_limits() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("EHLO x", "250").await;
        c.cmd("MAIL FROM:<a@b.test> SIZE=5000", "552 5.3.4").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "250").await;
        c.cmd("DATA", "354").await;
        let line = "y".repeat(98) + "\r\n";
        for _ in 0..200 {
            c.send(line.as_bytes()).await;
        }
        c.send(b".\r\n").await;
        c.expect("552 5.3.4").await;
        c.cmd("NOOP", "250").await;
        assert!(c.mails().is_empty());
    }

    #[tokio::test]
    async fn too_many_recipients() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("EHLO x", "250").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        for _ in 0..3 {
            c.cmd("RCPT TO:<support@example.com>", "250").await;
        }
        c.cmd("RCPT TO:<sales@example.com>", "452 4.5.3").await;
        c.cmd("DATA", "354").await;
        c.send(b"x\r\n.\r\n").await;
        c.expect("250").await;
        // Duplicates are committed once.
        assert_eq!(c.mails()[0].1, vec!["support@example.com".to_string()]);
    }

    #[tokio::test]
    async fn dropped_mid_data_delivers_nothing() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("EHLO x", "250").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b"Subject: half\r\n\r\nsome body\r\n").await;
        let Client { rd, wr, task, sink } = c;
        drop((rd, wr));
        assert!(task.await.expect("join").is_ok());
        assert!(sink.mails.lock().expect("lock").is_empty());
    }

    #[test]
    fn every_deliver_error_has_its_one_reply() {
        let refused = DeliverError::Refused {
            code: 550,
            esc: "5.7.1",
            text: "not yours\nsecond line".into(),
        };
        let table: [(DeliverError, &str, u16, &str, &[&str]); 7] = [
            (
                DeliverError::Transient("pool timed out".into()),
                "",
                451,
                "4.3.0",
                &["temporary failure: try again later"],
            ),
            (
                DeliverError::Transient("disk full".into()),
                "a@q.test",
                451,
                "4.3.0",
                &["temporary failure <a@q.test>: try again later"],
            ),
            (
                DeliverError::NoSuchRecipient,
                "",
                550,
                "5.1.1",
                &["no such queue address"],
            ),
            (
                DeliverError::NoSuchRecipient,
                "a@q.test",
                550,
                "5.1.1",
                &["no such queue address <a@q.test>"],
            ),
            (
                DeliverError::Permanent("parser panicked".into()),
                "",
                554,
                "5.6.0",
                &["rejected: the mail cannot be taken in"],
            ),
            (refused, "", 550, "5.7.1", &["not yours", "second line"]),
            (
                DeliverError::Refused {
                    code: 554,
                    esc: "5.6.0",
                    text: String::new(),
                },
                "",
                554,
                "5.6.0",
                &["refused"],
            ),
        ];
        for (error, rcpt, code, esc, lines) in table {
            let want = Reply {
                code,
                esc,
                lines: lines.iter().map(|l| l.to_string()).collect(),
            };
            assert_eq!(error.reply(rcpt), want, "{error:?}");
        }
    }

    #[tokio::test]
    async fn deliver_failures_map_to_replies() {
        let mut c = start(config(Mode::Smtp)).await;
        *c.sink.fail.lock().expect("lock") = Some(DeliverError::Transient("db\r\ndown".into()));
        c.cmd("EHLO x", "250").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b"x\r\n.\r\n").await;
        let r = c.expect("451 4.3.0").await;
        assert_eq!(r, "451 4.3.0 temporary failure: try again later\r\n");
        *c.sink.fail.lock().expect("lock") = Some(DeliverError::Permanent("bad".into()));
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b"x\r\n.\r\n").await;
        c.expect("554 5.6.0").await;
    }

    #[tokio::test]
    async fn lmtp_one_reply_per_recipient() {
        let mut c = start(config(Mode::Lmtp)).await;
        c.cmd("EHLO x", "500").await;
        c.cmd("HELO x", "500").await;
        c.cmd("MAIL FROM:<a@b.test>", "503").await;
        c.cmd("LHLO x", "250").await;
        c.cmd("MAIL FROM:<a@b.test>", "250").await;
        c.cmd("RCPT TO:<support@example.com>", "250").await;
        c.cmd("RCPT TO:<nobody@example.com>", "550").await;
        c.cmd("RCPT TO:<sales@example.com>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b"x\r\n.\r\n").await;
        assert!(c.expect("250").await.contains("support@example.com"));
        assert!(c.expect("250").await.contains("sales@example.com"));
        c.cmd("QUIT", "221").await;
    }

    #[tokio::test]
    async fn idle_timeout_says_421() {
        let mut cfg = config(Mode::Smtp);
        cfg.idle_timeout = Duration::from_millis(100);
        let mut c = start(cfg).await;
        c.expect("421 4.4.2").await;
        assert!(c.closed().await);
    }

    #[tokio::test]
    async fn bdat_chunk_is_skipped() {
        let mut c = start(config(Mode::Smtp)).await;
        c.cmd("EHLO x", "250").await;
        c.send(b"BDAT 12 LAST\r\nQUIT\r\nQUIT\r\n").await;
        c.expect("502").await;
        c.cmd("NOOP", "250").await;
    }

    fn submission(allow_plain: bool) -> SmtpConfig {
        let mut cfg = config(Mode::Smtp);
        cfg.auth = Some(AuthPolicy {
            allow_plain,
            guard: Arc::new(LoginGuard::new(crate::protocol::login_guard::GuardConfig {
                max_failures: 3,
                lockout: Duration::from_secs(60),
                delay_step: Duration::from_millis(1),
            })),
        });
        cfg
    }

    fn b64(s: &[u8]) -> String {
        BASE64.encode(s)
    }

    #[tokio::test]
    async fn auth_is_required_and_refused_without_tls() {
        let mut c = start(submission(false)).await;
        let ehlo = c.cmd("EHLO x", "250").await;
        assert!(!ehlo.contains("AUTH"), "{ehlo}");
        c.cmd("MAIL FROM:<anna@example.com>", "530 5.7.0").await;
        let plain = b64(b"\0anna\0secret");
        c.cmd(&format!("AUTH PLAIN {plain}"), "538 5.7.11").await;
        c.cmd("MAIL FROM:<anna@example.com>", "530").await;
        assert!(c.mails().is_empty());
    }

    #[tokio::test]
    async fn auth_plain_and_login_then_mail_to_anyone() {
        let mut c = start(submission(true)).await;
        let ehlo = c.cmd("EHLO x", "250").await;
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN") || ehlo.contains("AUTH LOGIN PLAIN"),
            "{ehlo}"
        );
        c.cmd("AUTH CRAM-MD5", "504").await;
        c.cmd("AUTH PLAIN", "334").await;
        c.cmd(&b64(b"\0anna\0secret"), "235 2.7.0").await;
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0anna\0secret")), "503")
            .await;
        c.cmd("MAIL FROM:<anna@example.com>", "250").await;
        c.cmd("RCPT TO:<kunde@elsewhere.example>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n").await;
        c.expect("250").await;
        assert_eq!(c.mails()[0].0, "anna:anna@example.com");

        let mut c = start(submission(true)).await;
        c.cmd("EHLO x", "250").await;
        c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
        c.cmd(&b64(b"anna"), "334 UGFzc3dvcmQ6").await;
        c.cmd(&b64(b"secret"), "235").await;
        let mut c = start(submission(true)).await;
        c.cmd("EHLO x", "250").await;
        c.cmd(&format!("AUTH LOGIN {}", b64(b"anna")), "334 UGFzc3dvcmQ6")
            .await;
        c.cmd("*", "501").await;
        c.cmd("AUTH LOGIN", "334").await;
        c.cmd("not base64!", "501").await;
        c.cmd("MAIL FROM:<anna@example.com>", "530").await;
    }

    #[tokio::test]
    async fn wrong_passwords_lock_the_login_out() {
        let mut c = start(submission(true)).await;
        c.cmd("EHLO x", "250").await;
        for _ in 0..3 {
            c.cmd(
                &format!("AUTH PLAIN {}", b64(b"\0anna\0wrong")),
                "535 5.7.8",
            )
            .await;
        }
        // Locked: even the right password is refused for now.
        c.cmd(
            &format!("AUTH PLAIN {}", b64(b"\0anna\0secret")),
            "454 4.7.0",
        )
        .await;
        c.cmd(&format!("AUTH PLAIN {}", b64(b"bob\0anna\0secret")), "535")
            .await;
    }

    #[tokio::test]
    async fn refusal_texts_span_lines() {
        let mut c = start(submission(true)).await;
        *c.sink.fail.lock().expect("lock") = Some(DeliverError::Refused {
            code: 550,
            esc: "5.7.0",
            text: "first line\nsecond line".into(),
        });
        c.cmd("EHLO x", "250").await;
        c.cmd(&format!("AUTH PLAIN {}", b64(b"\0anna\0secret")), "235")
            .await;
        c.cmd("MAIL FROM:<anna@example.com>", "250").await;
        c.cmd("RCPT TO:<kunde@elsewhere.example>", "250").await;
        c.cmd("DATA", "354").await;
        c.send(b"x\r\n.\r\n").await;
        let r = c.expect("550").await;
        assert_eq!(r, "550-5.7.0 first line\r\n550 5.7.0 second line\r\n");
    }
}
