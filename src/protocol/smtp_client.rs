//! Hands one stored outgoing mail to a queue's upstream SMTP server, byte for byte.
//!
//! Owns the lettre transport setup (TLS mode, trusted roots, credentials, timeouts) and the
//! classification of failures into transient (retry later) and permanent (DSN to the agent).
//! Retry policy and bookkeeping belong to the outbox worker, not here.

use std::fmt;
use std::time::Duration;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Timeout for making a connection: connect, TLS, greeting, EHLO, login.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Ceiling for one whole transaction, so a trickling upstream cannot hold a worker forever.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS, required: never falls back to plaintext.
    StartTls,
    /// Plaintext; only for upstreams the admin explicitly configured so.
    None,
}

/// A queue's outgoing SMTP server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub tls: UpstreamTls,
    pub login: Option<String>,
    pub password: Option<String>,
    /// Extra CA certificate(s), PEM, trusted in addition to the webpki roots.
    pub extra_ca_pem: Option<String>,
    /// Our name in EHLO.
    pub hello_name: String,
}

// Hand-written so queue passwords never reach a log line.
impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("extra_ca_pem", &self.extra_ca_pem.is_some())
            .field("hello_name", &self.hello_name)
            .finish()
    }
}

impl Upstream {
    fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a relay attempt failed. Its `Display` text is meant for a DSN or ticket note.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The upstream answered with a negative reply (4xx transient, 5xx permanent).
    #[error("upstream {upstream} replied {code}: {text}")]
    Rejected {
        upstream: String,
        code: u16,
        text: String,
    },
    #[error("cannot talk to upstream {upstream}: {detail}")]
    Connection { upstream: String, detail: String },
    #[error("TLS with upstream {upstream} failed: {detail}")]
    Tls { upstream: String, detail: String },
    #[error("upstream {upstream} timed out")]
    Timeout { upstream: String },
    /// Unusable configuration or envelope (bad CA PEM, invalid address, no usable AUTH
    /// mechanism): retrying the same thing cannot help.
    #[error("cannot relay via {upstream}: {detail}")]
    Config { upstream: String, detail: String },
}

impl RelayError {
    pub fn is_transient(&self) -> bool {
        match self {
            RelayError::Rejected { code, .. } => (400..500).contains(code),
            // A certificate may be renewed or an outage end: the outbox's overall deadline
            // decides when to give up.
            RelayError::Connection { .. } | RelayError::Tls { .. } | RelayError::Timeout { .. } => {
                true
            }
            RelayError::Config { .. } => false,
        }
    }

    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The upstream's SMTP reply code, when it gave one.
    pub fn code(&self) -> Option<u16> {
        match self {
            RelayError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The upstream's reply, code and text (`550 5.1.1 no such user`), when it gave one.
    pub fn reply(&self) -> Option<(u16, &str)> {
        match self {
            RelayError::Rejected { code, text, .. } => Some((*code, text.as_str())),
            _ => None,
        }
    }
}

/// Sends `raw` to `rcpts` with envelope sender `mail_from` (`""` = null sender) through `up`,
/// on a connection of its own.
pub async fn relay(
    up: &Upstream,
    mail_from: &str,
    rcpts: &[String],
    raw: &[u8],
) -> Result<(), RelayError> {
    let mut session = Session::new(up)?;
    let sent = session.send(mail_from, rcpts, raw).await;
    session.close().await;
    sent
}

/// One upstream connection used for several mails in a row: the TLS handshake and login
/// are paid once per round of the outbox, not once per mail. A connection the upstream
/// closed or broke is opened again before the next mail.
///
/// The connection is made here and handed to lettre, not made by lettre's transport: that
/// one gives no way to set `TCP_NODELAY`, and lettre writes a mail's final `.` line as a
/// write of its own, which Nagle's algorithm then holds back until the upstream's delayed
/// acknowledgment, once per mail.
pub struct Session {
    up: Upstream,
    upstream: String,
    /// Checked when the session is made, so a bad CA is a permanent error at once.
    starttls: Option<TlsParameters>,
    implicit_tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<AsyncSmtpConnection>,
}

impl Session {
    pub fn new(up: &Upstream) -> Result<Session, RelayError> {
        let (starttls, implicit_tls) =
            match up.tls {
                UpstreamTls::None => (None, None),
                UpstreamTls::StartTls => (Some(tls_parameters(up)?), None),
                UpstreamTls::Implicit => {
                    let config = crate::net::tls::client_config(up.extra_ca_pem.as_deref())
                        .map_err(|e| RelayError::Config {
                            upstream: up.label(),
                            detail: format!("extra CA unusable: {e}"),
                        })?;
                    (None, Some(config))
                }
            };
        Ok(Session {
            up: up.clone(),
            upstream: up.label(),
            starttls,
            implicit_tls,
            conn: None,
        })
    }

    /// Sends `raw` as is (dot-stuffing aside); a final CRLF is the line end before the
    /// terminating dot, so the upstream stores exactly `raw`.
    pub async fn send(
        &mut self,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Result<(), RelayError> {
        let upstream = self.upstream.clone();
        let config = |detail: String| RelayError::Config {
            upstream: upstream.clone(),
            detail,
        };
        let from = if mail_from.is_empty() {
            None
        } else {
            Some(
                mail_from
                    .parse::<Address>()
                    .map_err(|e| config(format!("invalid sender <{mail_from}>: {e}")))?,
            )
        };
        let to = rcpts
            .iter()
            .map(|r| {
                r.parse::<Address>()
                    .map_err(|e| config(format!("invalid recipient <{r}>: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(from, to).map_err(|e| config(e.to_string()))?;
        // lettre always writes CRLF "." CRLF after the data; without this the upstream would
        // store one extra empty line.
        let body = raw.strip_suffix(b"\r\n").unwrap_or(raw);
        let sent = tokio::time::timeout(TRANSACTION_TIMEOUT, async {
            let conn = self.connection().await?;
            conn.send(&envelope, body)
                .await
                .map_err(|e| classify(&upstream, &e))
        })
        .await;
        match sent {
            Err(_) => {
                // Half a transaction on the wire: the connection is of no further use.
                self.conn = None;
                Err(RelayError::Timeout { upstream })
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
        }
    }

    /// The open connection, or a new one when there is none or it broke (lettre marks it
    /// so on any failure) or no longer answers.
    async fn connection(&mut self) -> Result<&mut AsyncSmtpConnection, RelayError> {
        let usable = match self.conn.as_mut() {
            Some(conn) => !conn.has_broken() && conn.test_connected().await,
            None => false,
        };
        if !usable {
            self.conn = None;
            let conn = tokio::time::timeout(COMMAND_TIMEOUT, self.connect())
                .await
                .map_err(|_| RelayError::Timeout {
                    upstream: self.upstream.clone(),
                })??;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| RelayError::Connection {
            upstream: self.upstream.clone(),
            detail: "no connection".into(),
        })
    }

    /// Connects, secures and logs in as the queue's settings say.
    async fn connect(&self) -> Result<AsyncSmtpConnection, RelayError> {
        let up = &self.up;
        let tcp = TcpStream::connect((up.host.as_str(), up.port))
            .await
            .map_err(|e| RelayError::Connection {
                upstream: self.upstream.clone(),
                detail: e.to_string(),
            })?;
        // Cannot fail on a connected TCP socket; without it only the speed suffers.
        let _ = tcp.set_nodelay(true);
        let hello = ClientId::Domain(up.hello_name.clone());
        let lettre_error = |e: lettre::transport::smtp::Error| classify(&self.upstream, &e);
        let stream: Box<dyn AsyncTokioStream> = match &self.implicit_tls {
            Some(config) => {
                let name =
                    ServerName::try_from(up.host.clone()).map_err(|e| RelayError::Config {
                        upstream: self.upstream.clone(),
                        detail: format!("not a TLS server name: {e}"),
                    })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| RelayError::Tls {
                        upstream: self.upstream.clone(),
                        detail: error_chain(&e),
                    })?;
                Box::new(ImplicitTls(tls))
            }
            None => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
            .await
            .map_err(lettre_error)?;
        if let Some(params) = &self.starttls {
            // Required: never falls back to plaintext.
            conn.starttls(params.clone(), &hello)
                .await
                .map_err(lettre_error)?;
        }
        if let Some(login) = &up.login {
            let credentials =
                Credentials::new(login.clone(), up.password.clone().unwrap_or_default());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(lettre_error)?;
        }
        Ok(conn)
    }

    /// Closes the connection politely (QUIT), waiting a few seconds at most for the answer.
    pub async fn close(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        }
    }
}

/// An implicit-TLS connection, handed to lettre as a stream of its own.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Webpki roots plus the queue's extra CA; verification is never switched off.
fn tls_parameters(up: &Upstream) -> Result<TlsParameters, RelayError> {
    let config = |detail: String| RelayError::Config {
        upstream: up.label(),
        detail,
    };
    let mut builder =
        TlsParameters::builder(up.host.clone()).certificate_store(CertificateStore::WebpkiRoots);
    if let Some(pem) = &up.extra_ca_pem {
        let mut found = 0;
        for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let der = der.map_err(|e| config(format!("extra CA is not valid PEM: {e}")))?;
            let cert = Certificate::from_der(der.to_vec())
                .map_err(|e| config(format!("extra CA unusable: {e}")))?;
            builder = builder.add_root_certificate(cert);
            found += 1;
        }
        if found == 0 {
            return Err(config("extra CA PEM holds no certificate".into()));
        }
    }
    builder
        .build()
        .map_err(|e| config(format!("TLS setup: {e}")))
}

fn classify(upstream: &str, e: &lettre::transport::smtp::Error) -> RelayError {
    let upstream = upstream.to_string();
    if let Some(code) = e.status() {
        let code = code
            .to_string()
            .parse()
            .unwrap_or(if e.is_permanent() { 554 } else { 451 });
        let text = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return RelayError::Rejected {
            upstream,
            code,
            text: text.replace(['\r', '\n'], " "),
        };
    }
    let detail = error_chain(e);
    if e.is_timeout() {
        RelayError::Timeout { upstream }
    } else if e.is_tls() || has_rustls_cause(e) {
        RelayError::Tls { upstream, detail }
    } else if e.is_client() {
        RelayError::Config { upstream, detail }
    } else {
        RelayError::Connection { upstream, detail }
    }
}

/// lettre reports a failed handshake (e.g. an untrusted certificate) as a connection error;
/// the rustls error underneath tells it apart from an unreachable host.
fn has_rustls_cause(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// lettre's own Display is terse ("network error"); the cause chain says what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Upstream {
        Upstream {
            host: "127.0.0.1".into(),
            port: 1,
            tls: UpstreamTls::StartTls,
            login: Some("queue".into()),
            password: Some("secret-pw".into()),
            extra_ca_pem: None,
            hello_name: "gw.test".into(),
        }
    }

    #[test]
    fn debug_hides_password() {
        let text = format!("{:?}", up());
        assert!(!text.contains("secret-pw"));
        assert!(text.contains("redacted"));
    }

    #[test]
    fn bad_extra_ca_is_permanent() {
        let mut u = up();
        u.extra_ca_pem = Some("not a pem".into());
        let Err(e) = tls_parameters(&u) else {
            panic!("a PEM without certificate must be refused");
        };
        assert!(e.is_permanent(), "{e}");
    }

    #[tokio::test]
    async fn invalid_recipient_is_permanent() {
        let e = relay(&up(), "a@b.test", &["no address".into()], b"x\r\n")
            .await
            .expect_err("invalid");
        assert!(e.is_permanent(), "{e}");
    }

    #[test]
    fn reply_codes_decide() {
        let r = |code| RelayError::Rejected {
            upstream: "u".into(),
            code,
            text: String::new(),
        };
        assert!(r(451).is_transient());
        assert!(r(550).is_permanent());
    }
}
