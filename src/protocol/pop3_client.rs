//! POP3 client for polling queue mailboxes (RFC 1939, STLS from RFC 2595, CAPA from RFC 2449).
//! Owns the wire protocol and the connect/TLS setup; what to fetch and when to delete is the
//! poller's business.
//!
//! Hand-written because no maintained async crate fits: async-pop returns RETR data without
//! dot-unstuffing, lacks STLS and uses an old rustls wrapper. The protocol code is generic
//! over any `AsyncRead + AsyncWrite` stream so it can be tested against scripted transcripts.
//!
//! One command, one response, except RETR and DELE, which may be pipelined (RFC 2449
//! PIPELINING) with answers read in order. Reads go through one reusable buffer, and every
//! read and write is bounded by the inactivity timeout.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::net::stream::SessionStream;
use crate::protocol::line::LineBuffer;

/// Longest single line accepted (status lines, UIDL/LIST entries). RFC 1939 allows 512
/// octets; the slack tolerates chatty servers while bounding memory against garbage.
pub const MAX_LINE: usize = 64 * 1024;
/// Most entries accepted in one UIDL/LIST listing, so a runaway server cannot exhaust memory.
pub const MAX_LISTING: usize = 1_000_000;
/// Longest unique-id accepted. RFC 1939 says 70; some servers send more.
const MAX_UID: usize = 512;
const READ_CHUNK: usize = 64 * 1024;

/// Why a POP3 operation failed. Callers ask the predicates rather than match variants.
#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("invalid server name for TLS: {0}")]
    ServerName(String),
    #[error("POP3 I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("POP3 server did not answer within {0:?} (waiting for {1})")]
    Timeout(Duration, &'static str),
    #[error("POP3 server closed the connection (waiting for {0})")]
    Closed(&'static str),
    /// The server answered `-ERR`; `text` is its explanation, e.g. `[AUTH] Authentication failed.`
    #[error("POP3 server refused {command}: {text}")]
    Server { command: &'static str, text: String },
    #[error("POP3 protocol violation: {0}")]
    Protocol(String),
    #[error("POP3 line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("server sent data after its STLS answer, before the TLS handshake")]
    StlsInjection,
    /// The message was read to its end and discarded; it is still on the server.
    #[error("message {msgno} is larger than the limit of {limit} bytes ({size} bytes)")]
    TooLarge { msgno: u32, limit: usize, size: u64 },
}

impl Pop3Error {
    /// The login was refused (bad user or password), as opposed to a temporary lock or outage.
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Pop3Error::Server { command, text } => {
                matches!(*command, "USER" | "PASS")
                    && !matches!(
                        response_code(text).as_deref(),
                        Some("IN-USE" | "SYS/TEMP" | "LOGIN-DELAY")
                    )
            }
            _ => false,
        }
    }

    /// The message exceeded the size limit; it was left on the server.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Pop3Error::TooLarge { .. })
    }

    /// The server's `-ERR` text, if the failure was a refusal.
    pub fn server_text(&self) -> Option<&str> {
        match self {
            Pop3Error::Server { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The connection can no longer be used: drop the client and reconnect later.
    /// Refusals and the size limit leave it in a clean state.
    pub fn is_fatal_for_session(&self) -> bool {
        !matches!(self, Pop3Error::Server { .. } | Pop3Error::TooLarge { .. })
    }
}

/// The RFC 2449 response code at the start of an `-ERR` text, e.g. `AUTH` in `[AUTH] ...`.
fn response_code(text: &str) -> Option<String> {
    let rest = text.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some(rest[..end].to_ascii_uppercase())
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop3Tls {
    /// TLS from the first byte (POP3S, usually port 995).
    Implicit,
    /// Plain greeting, then `STLS` and a handshake before login (port 110).
    StartTls,
    /// No TLS at all: only when a queue explicitly allows it.
    None,
}

/// The transport `connect` returns: plain TCP or TLS over TCP.
pub type Pop3Stream = SessionStream<TcpStream>;

/// Connects, secures the connection as `tls` asks (verifying the certificate against `host`,
/// a DNS name or an IP address) and reads the greeting. The whole setup is bounded by
/// `timeout`, which then also bounds each later read and write.
pub async fn connect(
    host: &str,
    port: u16,
    tls: Pop3Tls,
    tls_config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Client<Pop3Stream>, Pop3Error> {
    match tokio::time::timeout(timeout, connect_inner(host, port, tls, tls_config, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(Pop3Error::Timeout(timeout, "connection setup")),
    }
}

async fn connect_inner(
    host: &str,
    port: u16,
    tls: Pop3Tls,
    tls_config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Client<Pop3Stream>, Pop3Error> {
    // Brackets let IPv6 literals through both the socket address and the TLS name.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(|source| Pop3Error::Connect {
            addr: format!("{host}:{port}"),
            source,
        })?;
    // Commands are tiny and answered before the next one: Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    let handshake = |tcp: TcpStream| async move {
        let name = ServerName::try_from(bare_host.to_string())
            .map_err(|_| Pop3Error::ServerName(host.to_string()))?;
        TlsConnector::from(tls_config)
            .connect(name, tcp)
            .await
            .map(|s| SessionStream::Tls(Box::new(s.into())))
            .map_err(|source| Pop3Error::Tls {
                host: host.to_string(),
                source,
            })
    };
    match tls {
        Pop3Tls::None => Client::start(SessionStream::Plain(tcp), timeout).await,
        Pop3Tls::Implicit => Client::start(handshake(tcp).await?, timeout).await,
        Pop3Tls::StartTls => {
            let mut plain = Client::start(tcp, timeout).await?;
            plain.command("STLS", b"STLS\r\n").await?;
            let greeting = std::mem::take(&mut plain.greeting);
            let tcp = plain.into_stream_for_tls()?;
            let mut client = Client::new(handshake(tcp).await?, timeout);
            client.greeting = greeting;
            Ok(client)
        }
    }
}

/// A POP3 session over `S`. Not `Clone`; one command at a time.
pub struct Client<S> {
    stream: S,
    input: LineBuffer,
    timeout: Duration,
    greeting: String,
}

impl<S> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("greeting", &self.greeting)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Counts from `STAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub count: u32,
    pub size: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Client<S> {
    fn new(stream: S, timeout: Duration) -> Self {
        Client {
            stream,
            input: LineBuffer::new(READ_CHUNK),
            timeout,
            greeting: String::new(),
        }
    }

    /// Takes over an established stream and reads the server's greeting.
    pub async fn start(stream: S, timeout: Duration) -> Result<Self, Pop3Error> {
        let mut client = Client::new(stream, timeout);
        client.greeting = client.response("greeting").await?;
        Ok(client)
    }

    /// The text after `+OK` in the greeting.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// `CAPA`: the server's capability lines (e.g. `UIDL`, `STLS`, `SASL PLAIN`).
    pub async fn capa(&mut self) -> Result<Vec<String>, Pop3Error> {
        self.command("CAPA", b"CAPA\r\n").await?;
        let mut caps = Vec::new();
        while let Some(line) = self.listing_line("CAPA").await? {
            caps.push(String::from_utf8_lossy(line).into_owned());
            if caps.len() > MAX_LISTING {
                return Err(Pop3Error::Protocol("endless CAPA listing".into()));
            }
        }
        Ok(caps)
    }

    /// `USER` + `PASS`. The password is never logged nor put into an error.
    pub async fn login(&mut self, user: &str, pass: &str) -> Result<(), Pop3Error> {
        // A CR or LF would end the command early and let the rest be read as a new command.
        if user.contains(['\r', '\n']) || pass.contains(['\r', '\n']) {
            return Err(Pop3Error::Protocol(
                "user name or password contains a line break".into(),
            ));
        }
        let mut cmd = Vec::with_capacity(user.len() + 7);
        cmd.extend_from_slice(b"USER ");
        cmd.extend_from_slice(user.as_bytes());
        cmd.extend_from_slice(b"\r\n");
        self.command("USER", &cmd).await?;
        let mut cmd = Vec::with_capacity(pass.len() + 7);
        cmd.extend_from_slice(b"PASS ");
        cmd.extend_from_slice(pass.as_bytes());
        cmd.extend_from_slice(b"\r\n");
        let result = self.command("PASS", &cmd).await;
        // Best effort: do not leave the password lying around in freed memory.
        cmd.fill(0);
        result.map(|_| ())
    }

    /// `STAT`: number of messages and their total size.
    pub async fn stat(&mut self) -> Result<Stat, Pop3Error> {
        let text = self.command("STAT", b"STAT\r\n").await?;
        let mut parts = text.split_ascii_whitespace();
        match (
            parts.next().and_then(|n| n.parse().ok()),
            parts.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(count), Some(size)) => Ok(Stat { count, size }),
            _ => Err(Pop3Error::Protocol(format!(
                "unparsable STAT answer: {}",
                clip(&text)
            ))),
        }
    }

    /// `UIDL`: every message number with its unique id.
    pub async fn uidl_all(&mut self) -> Result<Vec<(u32, String)>, Pop3Error> {
        self.command("UIDL", b"UIDL\r\n").await?;
        let mut out = Vec::new();
        while let Some(line) = self.listing_line("UIDL").await? {
            let entry = parse_uidl_line(line);
            // Keep reading to the end even after a bad entry so the session stays in sync.
            out.push(entry);
            if out.len() > MAX_LISTING {
                return Err(Pop3Error::Protocol("more UIDL entries than allowed".into()));
            }
        }
        out.into_iter().collect()
    }

    /// `LIST`: every message number with its size in octets.
    pub async fn list_all(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        self.command("LIST", b"LIST\r\n").await?;
        let mut out = Vec::new();
        while let Some(line) = self.listing_line("LIST").await? {
            out.push(parse_list_line(line));
            if out.len() > MAX_LISTING {
                return Err(Pop3Error::Protocol("more LIST entries than allowed".into()));
            }
        }
        out.into_iter().collect()
    }

    /// `RETR`: the message exactly as stored (dot-unstuffed, line endings as sent).
    /// A message over `max_bytes` is read to its end, discarded, and reported as
    /// [`Pop3Error::TooLarge`]; the session stays usable and the message stays upstream.
    pub async fn retr(&mut self, msgno: u32, max_bytes: usize) -> Result<Vec<u8>, Pop3Error> {
        self.send_retr(msgno).await?;
        self.read_retr(msgno, max_bytes).await
    }

    /// Sends `RETR` without waiting for the answer, to have several in flight on a server
    /// that announced `PIPELINING` (RFC 2449): the next message is on its way while this one
    /// is read. Every `send_retr` must be followed by a [`Client::read_retr`] in order.
    pub async fn send_retr(&mut self, msgno: u32) -> Result<(), Pop3Error> {
        self.send("RETR", format!("RETR {msgno}\r\n").as_bytes())
            .await
    }

    /// Reads the answer to the oldest `RETR` sent; see [`Client::retr`].
    pub async fn read_retr(&mut self, msgno: u32, max_bytes: usize) -> Result<Vec<u8>, Pop3Error> {
        let text = self.response("RETR").await?;
        // Many servers announce the size ("+OK 1234 octets"): allocate once. Only a hint;
        // the terminating dot decides where the message ends.
        let hint = text
            .split_ascii_whitespace()
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(READ_CHUNK);
        let mut out = Vec::with_capacity(hint.min(max_bytes));
        let size = self.read_multiline_body(&mut out, max_bytes).await?;
        if size > max_bytes as u64 {
            return Err(Pop3Error::TooLarge {
                msgno,
                limit: max_bytes,
                size,
            });
        }
        Ok(out)
    }

    /// `DELE`: marks a message for deletion; it is removed only when `quit` succeeds.
    pub async fn dele(&mut self, msgno: u32) -> Result<(), Pop3Error> {
        self.command("DELE", format!("DELE {msgno}\r\n").as_bytes())
            .await
            .map(|_| ())
    }

    /// `DELE` for many messages, up to `window` in flight (1 without `PIPELINING`).
    pub async fn dele_all(&mut self, msgnos: &[u32], window: usize) -> Result<(), Pop3Error> {
        for chunk in msgnos.chunks(window.max(1)) {
            for n in chunk {
                self.send("DELE", format!("DELE {n}\r\n").as_bytes())
                    .await?;
            }
            for _ in chunk {
                self.response("DELE").await?;
            }
        }
        Ok(())
    }

    /// `RSET`: unmarks everything marked for deletion in this session.
    pub async fn rset(&mut self) -> Result<(), Pop3Error> {
        self.command("RSET", b"RSET\r\n").await.map(|_| ())
    }

    /// `NOOP`: keeps the session alive and checks it still works.
    pub async fn noop(&mut self) -> Result<(), Pop3Error> {
        self.command("NOOP", b"NOOP\r\n").await.map(|_| ())
    }

    /// `QUIT`: ends the session; this is where the server commits deletions. `Ok` carries the
    /// server's text; `Err` means the deletions may not have happened.
    pub async fn quit(mut self) -> Result<String, Pop3Error> {
        let text = self.command("QUIT", b"QUIT\r\n").await?;
        // The answer is what matters; a failed TLS close_notify changes nothing.
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
        Ok(text)
    }

    /// Sends one command and reads its status line; `-ERR` becomes [`Pop3Error::Server`].
    async fn command(&mut self, name: &'static str, line: &[u8]) -> Result<String, Pop3Error> {
        // A leftover byte here means the previous response was not fully read: the session
        // is out of sync and every later answer would be misattributed.
        if !self.input.is_empty() {
            return Err(Pop3Error::Protocol(format!(
                "unexpected data before {name}"
            )));
        }
        self.send(name, line).await?;
        self.response(name).await
    }

    /// Writes one command line.
    async fn send(&mut self, name: &'static str, line: &[u8]) -> Result<(), Pop3Error> {
        tracing::trace!(command = name, "POP3 >");
        let write = async {
            self.stream.write_all(line).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Pop3Error::Timeout(self.timeout, name)),
        }
    }

    /// Reads one status line: `+OK text` → `Ok(text)`, `-ERR text` → `Err(Server)`.
    async fn response(&mut self, name: &'static str) -> Result<String, Pop3Error> {
        let line = self.read_line(name).await?;
        let text = |rest: &[u8]| String::from_utf8_lossy(rest).trim().to_string();
        if let Some(rest) = strip_status(line, b"+OK") {
            Ok(text(rest))
        } else if let Some(rest) = strip_status(line, b"-ERR") {
            let text = text(rest);
            tracing::debug!(command = name, %text, "POP3 -ERR");
            Err(Pop3Error::Server {
                command: name,
                text,
            })
        } else {
            Err(Pop3Error::Protocol(format!(
                "expected +OK or -ERR for {name}, got {:?}",
                clip(&String::from_utf8_lossy(line))
            )))
        }
    }

    /// One line of a multi-line listing, unstuffed and without its line ending; `None` at
    /// the terminating `.`.
    async fn listing_line(&mut self, name: &'static str) -> Result<Option<&[u8]>, Pop3Error> {
        let line = self.read_line(name).await?;
        match line {
            b"." => Ok(None),
            [b'.', rest @ ..] => Ok(Some(rest)),
            _ => Ok(Some(line)),
        }
    }

    /// The next line without its CR LF (or bare LF), at most [`MAX_LINE`] bytes.
    async fn read_line(&mut self, name: &'static str) -> Result<&[u8], Pop3Error> {
        while !self.input.line_ready(MAX_LINE) {
            if self.fill(name).await? == 0 {
                return Err(Pop3Error::Closed(name));
            }
        }
        match self.input.next_line(MAX_LINE) {
            Some(Ok(line)) => Ok(line),
            _ => Err(Pop3Error::LineTooLong),
        }
    }

    /// Reads a multi-line body up to its terminating `.` line, appending the unstuffed bytes
    /// to `out` while they fit in `max_bytes`. Returns the full unstuffed size.
    async fn read_multiline_body(
        &mut self,
        out: &mut Vec<u8>,
        max_bytes: usize,
    ) -> Result<u64, Pop3Error> {
        const NAME: &str = "RETR data";
        let mut size: u64 = 0;
        let mut at_line_start = true;
        loop {
            if at_line_start {
                // Decide whether a leading dot is the terminator or stuffing; that needs up
                // to three bytes (".\r\n").
                while self.input.pending().len() < 3 && !self.input.pending().contains(&b'\n') {
                    if self.fill(NAME).await? == 0 {
                        return Err(Pop3Error::Closed(NAME));
                    }
                }
                let avail = self.input.pending();
                if avail[0] == b'.' {
                    match avail.get(1..) {
                        Some([b'\n', ..]) => {
                            self.input.consume(2);
                            return Ok(size);
                        }
                        Some([b'\r', b'\n', ..]) => {
                            self.input.consume(3);
                            return Ok(size);
                        }
                        // Stuffed: the first dot is not part of the message.
                        _ => self.input.consume(1),
                    }
                }
            }
            if self.input.is_empty() && self.fill(NAME).await? == 0 {
                return Err(Pop3Error::Closed(NAME));
            }
            let avail = self.input.pending();
            let (chunk, line_ends) = match memchr::memchr(b'\n', avail) {
                Some(i) => (&avail[..=i], true),
                None => (avail, false),
            };
            size += chunk.len() as u64;
            if size <= max_bytes as u64 {
                out.extend_from_slice(chunk);
            }
            let taken = chunk.len();
            self.input.consume(taken);
            at_line_start = line_ends;
        }
    }

    /// Reads more bytes into the buffer. Returns 0 at end of stream.
    async fn fill(&mut self, name: &'static str) -> Result<usize, Pop3Error> {
        let read = self.input.read_from(&mut self.stream);
        match tokio::time::timeout(self.timeout, read).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Pop3Error::Timeout(self.timeout, name)),
        }
    }

    /// Hands the raw stream over for the STLS handshake. Bytes already buffered would have
    /// been sent in plaintext before TLS, where an attacker can inject them (RFC 2595 §3.1 /
    /// CVE-2011-0411 style): refuse instead of carrying them into the TLS session.
    fn into_stream_for_tls(self) -> Result<S, Pop3Error> {
        if !self.input.is_empty() {
            return Err(Pop3Error::StlsInjection);
        }
        Ok(self.stream)
    }
}

fn strip_status<'a>(line: &'a [u8], status: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(status)?;
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(&rest[1..]),
        Some(_) => None,
    }
}

fn parse_msgno(field: Option<&[u8]>) -> Option<u32> {
    std::str::from_utf8(field?).ok()?.parse().ok()
}

fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

fn parse_uidl_line(line: &[u8]) -> Result<(u32, String), Pop3Error> {
    let mut parts = fields(line);
    let msgno = parse_msgno(parts.next());
    let uid = parts
        .next()
        .filter(|uid| uid.len() <= MAX_UID && uid.iter().all(|b| (0x21..=0x7e).contains(b)));
    match (msgno, uid) {
        // Checked printable ASCII above, so this conversion is lossless.
        (Some(n), Some(uid)) => Ok((n, String::from_utf8_lossy(uid).into_owned())),
        _ => Err(Pop3Error::Protocol(format!(
            "malformed UIDL entry: {:?}",
            clip(&String::from_utf8_lossy(line))
        ))),
    }
}

fn parse_list_line(line: &[u8]) -> Result<(u32, u64), Pop3Error> {
    let mut parts = fields(line);
    let msgno = parse_msgno(parts.next());
    let size = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
    match (msgno, size) {
        (Some(n), Some(size)) => Ok((n, size)),
        _ => Err(Pop3Error::Protocol(format!(
            "malformed LIST entry: {:?}",
            clip(&String::from_utf8_lossy(line))
        ))),
    }
}

/// Shortens server text quoted in errors so garbage cannot flood logs.
fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    const T: Duration = Duration::from_secs(5);

    /// A scripted server: for each expected client line (`None` = send before reading),
    /// sends the given bytes. Checks the client sent exactly the expected lines.
    fn script(steps: Vec<(Option<&'static str>, Vec<u8>)>) -> DuplexStream {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(server);
            let mut r = BufReader::new(r);
            for (expect, reply) in steps {
                if let Some(expect) = expect {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    assert_eq!(line, format!("{expect}\r\n"));
                }
                if w.write_all(&reply).await.is_err() {
                    return;
                }
            }
            // Keep the connection open until the client drops it, like a real server.
            let mut rest = String::new();
            let _ = r.read_line(&mut rest).await;
        });
        client
    }

    const HELLO: &str = "+OK Dovecot ready.\r\n";

    async fn session(steps: Vec<(Option<&'static str>, Vec<u8>)>) -> Client<DuplexStream> {
        let mut all = vec![(None, HELLO.as_bytes().to_vec())];
        all.extend(steps);
        Client::start(script(all), T).await.expect("greeting")
    }

    fn s(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[tokio::test]
    async fn greeting_login_stat_quit() {
        let mut c = session(vec![
            (Some("USER anna"), s("+OK\r\n")),
            (Some("PASS geheim"), s("+OK Logged in.\r\n")),
            (Some("STAT"), s("+OK 2 320\r\n")),
            (Some("NOOP"), s("+OK\r\n")),
            (Some("QUIT"), s("+OK Logging out, messages deleted.\r\n")),
        ])
        .await;
        assert_eq!(c.greeting(), "Dovecot ready.");
        c.login("anna", "geheim").await.expect("login");
        assert_eq!(
            c.stat().await.expect("stat"),
            Stat {
                count: 2,
                size: 320
            }
        );
        c.noop().await.expect("noop");
        assert_eq!(
            c.quit().await.expect("quit"),
            "Logging out, messages deleted."
        );
    }

    #[tokio::test]
    async fn bad_greeting_is_an_error() {
        let err = Client::start(script(vec![(None, s("-ERR go away\r\n"))]), T)
            .await
            .expect_err("refused");
        assert_eq!(err.server_text(), Some("go away"));
    }

    #[tokio::test]
    async fn auth_failure_keeps_server_text_but_never_the_password() {
        let mut c = session(vec![
            (Some("USER anna"), s("+OK\r\n")),
            (
                Some("PASS s3cr3t-pw"),
                s("-ERR [AUTH] Authentication failed.\r\n"),
            ),
        ])
        .await;
        let err = c.login("anna", "s3cr3t-pw").await.expect_err("bad pw");
        assert!(err.is_auth_failure());
        assert!(!err.is_fatal_for_session());
        assert_eq!(err.server_text(), Some("[AUTH] Authentication failed."));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[tokio::test]
    async fn mailbox_in_use_is_not_an_auth_failure() {
        let mut c = session(vec![
            (Some("USER anna"), s("+OK\r\n")),
            (Some("PASS pw"), s("-ERR [IN-USE] Mailbox locked.\r\n")),
        ])
        .await;
        let err = c.login("anna", "pw").await.expect_err("locked");
        assert!(!err.is_auth_failure());
    }

    #[tokio::test]
    async fn line_breaks_in_credentials_are_refused() {
        let mut c = session(vec![]).await;
        let err = c.login("anna", "pw\r\nDELE 1").await.expect_err("refused");
        assert!(!err.to_string().contains("DELE"));
    }

    #[tokio::test]
    async fn retr_unstuffs_dots_and_keeps_line_endings() {
        let wire = "+OK 60 octets\r\n\
                    Subject: dots\r\n\
                    \r\n\
                    ..leading dot\r\n\
                    ..\r\n\
                    a . in the middle\r\n\
                    ...\r\n\
                    .\r\n";
        let mut c = session(vec![(Some("RETR 1"), s(wire))]).await;
        let msg = c.retr(1, 1 << 20).await.expect("retr");
        assert_eq!(
            msg,
            b"Subject: dots\r\n\r\n.leading dot\r\n.\r\na . in the middle\r\n..\r\n"
        );
    }

    #[tokio::test]
    async fn retr_accepts_bare_lf_from_server() {
        let wire = "+OK\nSubject: lf\n\n..x\nbody\n.\n";
        let mut c = session(vec![(Some("RETR 2"), s(wire)), (Some("NOOP"), s("+OK\n"))]).await;
        assert_eq!(
            c.retr(2, 1000).await.expect("retr"),
            b"Subject: lf\n\n.x\nbody\n"
        );
        c.noop().await.expect("still in sync");
    }

    #[tokio::test]
    async fn retr_empty_message() {
        let mut c = session(vec![(Some("RETR 1"), s("+OK\r\n.\r\n"))]).await;
        assert!(c.retr(1, 10).await.expect("retr").is_empty());
    }

    #[tokio::test]
    async fn retr_over_limit_is_drained_and_session_stays_usable() {
        let body = "x".repeat(98) + "\r\n";
        let wire = format!("+OK\r\n{}.\r\n", body.repeat(100));
        let mut c = session(vec![
            (Some("RETR 3"), wire.into_bytes()),
            (Some("RETR 4"), s("+OK\r\nsmall\r\n.\r\n")),
        ])
        .await;
        let err = c.retr(3, 1000).await.expect_err("too large");
        assert!(err.is_too_large());
        assert!(!err.is_fatal_for_session());
        assert!(matches!(
            err,
            Pop3Error::TooLarge {
                msgno: 3,
                limit: 1000,
                size: 10_000
            }
        ));
        assert_eq!(c.retr(4, 1000).await.expect("next"), b"small\r\n");
    }

    #[tokio::test]
    async fn retr_exactly_at_limit_is_fine() {
        let mut c = session(vec![(Some("RETR 1"), s("+OK\r\n12345678\r\n.\r\n"))]).await;
        assert_eq!(c.retr(1, 10).await.expect("fits"), b"12345678\r\n");
    }

    #[tokio::test]
    async fn retr_large_message_in_small_pieces() {
        // Lines far longer than the read buffer, and a terminator split across reads.
        let line = "y".repeat(200_000) + "\r\n";
        let (client, mut server) = tokio::io::duplex(1000);
        let expected = format!("{line}.z\r\n");
        tokio::spawn(async move {
            let _ = server.write_all(HELLO.as_bytes()).await;
            let mut cmd = [0u8; 8];
            let _ = server.read_exact(&mut cmd).await;
            let wire = format!("+OK\r\n{line}..z\r\n.\r\n");
            for piece in wire.as_bytes().chunks(777) {
                let _ = server.write_all(piece).await;
            }
            let _ = server.read(&mut cmd).await;
        });
        let mut c = Client::start(client, T).await.expect("greeting");
        assert_eq!(c.retr(1, 1 << 20).await.expect("retr"), expected.as_bytes());
    }

    /// Round trip of stuffing → unstuffing for many dot-heavy messages, with the wire cut
    /// into pieces of every small size so each line-start case lands on a read boundary.
    #[tokio::test]
    async fn retr_round_trips_across_arbitrary_read_boundaries() {
        let mut seed = 0x2545_f491_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 7] = [b".", b"..", b"\r\n", b"\n", b"a", b"\r", b" "];
        for round in 0..200 {
            let mut message = Vec::new();
            for _ in 0..(next() % 40) {
                message.extend_from_slice(pieces[(next() % 7) as usize]);
            }
            // The wire format needs complete lines; servers add a final CRLF too.
            if !message.ends_with(b"\n") {
                message.extend_from_slice(b"\r\n");
            }
            let mut wire = b"+OK\r\n".to_vec();
            for line in message.split_inclusive(|&b| b == b'\n') {
                if line.first() == Some(&b'.') {
                    wire.push(b'.');
                }
                wire.extend_from_slice(line);
            }
            wire.extend_from_slice(b".\r\n");
            let piece = 1 + round % 5;
            let (client, mut server) = tokio::io::duplex(64);
            let task = tokio::spawn(async move {
                server.write_all(HELLO.as_bytes()).await?;
                let mut cmd = [0u8; 8];
                server.read_exact(&mut cmd).await?;
                for chunk in wire.chunks(piece) {
                    server.write_all(chunk).await?;
                    server.flush().await?;
                }
                Ok::<_, io::Error>(server)
            });
            let mut c = Client::start(client, T).await.expect("greeting");
            let got = c.retr(1, 1 << 20).await.expect("retr");
            assert_eq!(got, message, "round {round}");
            let _server = task.await.expect("task").expect("server io");
        }
    }

    #[tokio::test]
    async fn truncated_retr_is_an_error() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let _ = server.write_all(HELLO.as_bytes()).await;
            let mut cmd = [0u8; 8];
            let _ = server.read_exact(&mut cmd).await;
            let _ = server
                .write_all(b"+OK\r\nSubject: cut\r\n\r\nhalf a li")
                .await;
            // Dropping the server end closes the connection mid-message.
        });
        let mut c = Client::start(client, T).await.expect("greeting");
        let err = c.retr(1, 1 << 20).await.expect_err("truncated");
        assert!(matches!(err, Pop3Error::Closed(_)), "{err}");
        assert!(err.is_fatal_for_session());
    }

    #[tokio::test]
    async fn garbage_status_line_is_an_error() {
        let mut c = session(vec![(Some("STAT"), s("HTTP/1.1 400 Bad Request\r\n"))]).await;
        let err = c.stat().await.expect_err("garbage");
        assert!(matches!(err, Pop3Error::Protocol(_)), "{err}");
        // "+OKAY" is not "+OK".
        let mut c = session(vec![(Some("NOOP"), s("+OKAY\r\n"))]).await;
        assert!(c.noop().await.is_err());
    }

    #[tokio::test]
    async fn binary_garbage_is_an_error() {
        let junk: Vec<u8> = (0u8..=255).cycle().take(5000).collect();
        let err = Client::start(script(vec![(None, junk)]), T)
            .await
            .expect_err("garbage");
        assert!(matches!(err, Pop3Error::Protocol(_)), "{err}");
    }

    #[tokio::test]
    async fn over_long_line_is_an_error() {
        let long = "+OK ".to_string() + &"a".repeat(MAX_LINE + 10) + "\r\n";
        let err = Client::start(script(vec![(None, s(&long))]), T)
            .await
            .expect_err("too long");
        assert!(matches!(err, Pop3Error::LineTooLong), "{err}");
    }

    #[tokio::test]
    async fn endless_line_without_newline_is_an_error_not_a_hang() {
        let endless = vec![b'a'; MAX_LINE * 3];
        let err = Client::start(script(vec![(None, endless)]), T)
            .await
            .expect_err("too long");
        assert!(matches!(err, Pop3Error::LineTooLong), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (client, _server) = tokio::io::duplex(64);
        let err = Client::start(client, Duration::from_millis(50))
            .await
            .expect_err("timeout");
        assert!(matches!(err, Pop3Error::Timeout(..)), "{err}");
    }

    #[tokio::test]
    async fn closed_before_greeting() {
        let (client, server) = tokio::io::duplex(64);
        drop(server);
        let err = Client::start(client, T).await.expect_err("closed");
        assert!(matches!(err, Pop3Error::Closed("greeting")), "{err}");
    }

    #[tokio::test]
    async fn uidl_and_list() {
        let mut c = session(vec![
            (
                Some("UIDL"),
                s("+OK\r\n1 000000017f0c8a2b\r\n2 whqtswO00WBw418f9t5JxYwZ\r\n.\r\n"),
            ),
            (Some("LIST"), s("+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n")),
            (Some("UIDL"), s("+OK\r\n.\r\n")),
        ])
        .await;
        assert_eq!(
            c.uidl_all().await.expect("uidl"),
            vec![
                (1, "000000017f0c8a2b".to_string()),
                (2, "whqtswO00WBw418f9t5JxYwZ".to_string())
            ]
        );
        assert_eq!(c.list_all().await.expect("list"), vec![(1, 120), (2, 200)]);
        assert!(c.uidl_all().await.expect("empty").is_empty());
    }

    #[tokio::test]
    async fn malformed_uidl_entry_is_an_error_and_session_stays_in_sync() {
        let mut c = session(vec![
            (Some("UIDL"), s("+OK\r\n1 ok\r\nx y\r\n3\r\n.\r\n")),
            (Some("NOOP"), s("+OK\r\n")),
        ])
        .await;
        assert!(matches!(c.uidl_all().await, Err(Pop3Error::Protocol(_))));
        c.noop().await.expect("in sync");
    }

    #[tokio::test]
    async fn dele_rset_and_refused_dele() {
        let mut c = session(vec![
            (Some("DELE 1"), s("+OK Marked to be deleted.\r\n")),
            (Some("DELE 9"), s("-ERR There's no message 9.\r\n")),
            (Some("RSET"), s("+OK\r\n")),
            (Some("QUIT"), s("-ERR [SYS/TEMP] cannot expunge\r\n")),
        ])
        .await;
        c.dele(1).await.expect("dele");
        let err = c.dele(9).await.expect_err("no such message");
        assert_eq!(err.server_text(), Some("There's no message 9."));
        c.rset().await.expect("rset");
        let err = c.quit().await.expect_err("quit failed");
        assert!(!err.is_auth_failure());
    }

    #[tokio::test]
    async fn capa_lists_capabilities() {
        let mut c = session(vec![(
            Some("CAPA"),
            s("+OK\r\nTOP\r\nUIDL\r\nSTLS\r\nSASL PLAIN\r\n.\r\n"),
        )])
        .await;
        assert_eq!(
            c.capa().await.expect("capa"),
            vec!["TOP", "UIDL", "STLS", "SASL PLAIN"]
        );
    }

    #[tokio::test]
    async fn data_after_stls_answer_is_refused() {
        let mut c = session(vec![(Some("STLS"), s("+OK Begin TLS\r\nDELE 1\r\n"))]).await;
        c.command("STLS", b"STLS\r\n").await.expect("stls");
        // Let the injected bytes arrive in the buffer, as they would on a real socket.
        tokio::task::yield_now().await;
        if c.input.is_empty() {
            let _ = c.fill("test").await;
        }
        assert!(matches!(
            c.into_stream_for_tls(),
            Err(Pop3Error::StlsInjection)
        ));
    }

    #[test]
    fn response_codes() {
        assert_eq!(response_code("[AUTH] no").as_deref(), Some("AUTH"));
        assert_eq!(response_code("[in-use] x").as_deref(), Some("IN-USE"));
        assert_eq!(response_code("no code"), None);
    }
}
