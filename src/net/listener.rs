//! The one accept loop every protocol edge uses (inbound SMTP/LMTP, submission, IMAP and
//! POP3), the graceful-shutdown signal they share, and [`SessionStream`], the plain-or-TLS
//! stream a session reads and writes (with STARTTLS upgrade).
//!
//! Protocol code never touches `TcpListener`: it gets one accepted stream per task, a
//! connection-limit permit held for the task's lifetime, a [`Shutdown`] to watch and a
//! [`SessionClock`] that says how long to wait for the client.
//!
//! Two limits keep one client from locking everybody out: connections per client (an IPv4
//! address, an IPv6 /64) and a short pre-login timeout. The global limit stays as a last
//! resort, above what one client may hold.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub use super::stream::SessionStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("stream is already TLS")]
    AlreadyTls,
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
}

/// What a listener needs to know; the protocol-specific parts are `name` (for logs) and
/// `busy_reply` (its own "too many connections" line).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// Protocol label used in log lines, e.g. "smtp-inbound".
    pub name: &'static str,
    /// All connections at once: the last resort, above what one client may hold.
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold at once; one over it
    /// is refused like one over `max_connections`, and other clients are not affected.
    pub max_connections_per_client: usize,
    /// How long a connection may take to log in (on ports without login: to send its first
    /// command), TLS handshake included; see [`SessionClock`].
    pub pre_auth_timeout: Duration,
    /// Written (best effort) to a connection refused for being over a limit, e.g.
    /// `421 4.7.0 too many connections\r\n`. `None` just closes: right for implicit-TLS
    /// ports, where a plaintext line would be garbage to the client.
    pub busy_reply: Option<Vec<u8>>,
    /// How long shutdown waits for running sessions before aborting them.
    pub drain_timeout: Duration,
}

impl ListenerConfig {
    pub fn new(addr: SocketAddr, name: &'static str) -> Self {
        Self {
            addr,
            name,
            max_connections: 256,
            max_connections_per_client: 50,
            pre_auth_timeout: Duration::from_secs(30),
            busy_reply: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Cloneable shutdown signal handed to listeners and sessions. Triggered by
/// [`ShutdownHandle::trigger`] or by dropping every handle (the owner is gone).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The caller's side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl Shutdown {
    pub fn channel() -> (ShutdownHandle, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownHandle(tx), Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown is requested. Cancel-safe, so usable in `select!`.
    pub async fn wait(&mut self) {
        // An Err means every sender is gone: nobody can ask later, so treat it as shutdown.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownHandle {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// A bound listening socket; bind first so callers (and tests on port 0) learn the address.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    cfg: ListenerConfig,
}

impl Listener {
    pub async fn bind(cfg: ListenerConfig) -> Result<Self, ListenerError> {
        let tcp = TcpListener::bind(cfg.addr)
            .await
            .map_err(|source| ListenerError::Bind {
                addr: cfg.addr,
                source,
            })?;
        Ok(Self { tcp, cfg })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// [`Listener::run`] with each connection made a session stream first (see
    /// [`SessionStream::accepted`]): the shape of every mail port. The session gets a
    /// [`SessionClock`] started at accept; the handshake on an implicit-TLS port counts
    /// against its pre-login time too.
    pub async fn run_sessions<H, F>(
        self,
        shutdown: Shutdown,
        implicit_tls: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
        handshake_timeout: Duration,
        session: H,
    ) where
        H: Fn(SessionStream, SocketAddr, Shutdown, SessionClock) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let session = Arc::new(session);
        let pre_auth = self.cfg.pre_auth_timeout;
        self.run(shutdown, move |tcp, peer, shutdown| {
            let clock = SessionClock::starting(pre_auth);
            let session = session.clone();
            let tls = tls.clone();
            async move {
                let handshake_timeout = clock.read_timeout(handshake_timeout);
                if let Some(stream) =
                    SessionStream::accepted(tcp, peer, implicit_tls, tls, handshake_timeout).await
                {
                    session(stream, peer, shutdown, clock).await;
                }
            }
        })
        .await;
    }

    /// Accepts until `shutdown`, running `handler(stream, peer, shutdown)` in a task per
    /// connection, then waits up to `drain_timeout` for running sessions and aborts the rest.
    pub async fn run<H, F>(self, mut shutdown: Shutdown, handler: H)
    where
        H: Fn(TcpStream, SocketAddr, Shutdown) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let name = self.cfg.name;
        let gate = Gate::new(&self.cfg);
        let mut sessions = JoinSet::new();
        let mut backoff = Duration::ZERO;
        let local = self.tcp.local_addr().ok();
        tracing::info!(listener = name, addr = ?local, "listening");

        loop {
            // Reap finished tasks so the set does not grow with the connection count.
            while let Some(ended) = sessions.try_join_next() {
                log_panic(name, ended);
            }
            let accepted = tokio::select! {
                _ = shutdown.wait() => break,
                r = self.tcp.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => {
                    backoff = Duration::ZERO;
                    pair
                }
                Err(e) if is_per_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: retrying at once would spin; wait for fds to free up.
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tracing::warn!(listener = name, error = %e, ?backoff, "accept failed");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            let Some(admission) = gate.admit(name, peer) else {
                if let Some(line) = self.cfg.busy_reply.clone() {
                    sessions.spawn(say_busy(stream, line));
                }
                continue;
            };
            tracing::debug!(listener = name, %peer, "connection accepted");
            let fut = handler(stream, peer, shutdown.clone());
            sessions.spawn(async move {
                fut.await;
                tracing::debug!(listener = name, %peer, "connection closed");
                drop(admission);
            });
        }

        tracing::info!(listener = name, running = sessions.len(), "shutting down");
        let drained = tokio::time::timeout(self.cfg.drain_timeout, async {
            while let Some(ended) = sessions.join_next().await {
                log_panic(name, ended);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                listener = name,
                aborted = sessions.len(),
                "sessions aborted"
            );
            sessions.shutdown().await;
        }
    }
}

/// A session that panicked ended only its own connection; the log says so.
fn log_panic(listener: &'static str, ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(listener, error = %e, "a session panicked; its connection is closed");
    }
}

/// The busy reply to a refused connection, then close. In its own task with a short
/// timeout, so a slow peer cannot stall accepting.
async fn say_busy(mut stream: TcpStream, line: Vec<u8>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    })
    .await;
}

/// How long a session waits for its client. From accept until the session calls
/// [`SessionClock::working`] (at a successful login; on ports without login at the first
/// command), reads share the listener's pre-login time, counted from accept; after that
/// each read gets the session's own idle timeout. So a connection that never logs in is
/// closed soon, however it trickles its bytes, while a working session keeps its long
/// timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionClock {
    /// `None` once working, or when there is no pre-login limit (the default: tests).
    log_in_by: Option<Instant>,
}

impl SessionClock {
    /// A clock for a connection accepted now, with `pre_auth` to log in.
    pub fn starting(pre_auth: Duration) -> Self {
        Self {
            log_in_by: Instant::now().checked_add(pre_auth),
        }
    }

    /// The client logged in (or, without login, sent a command): only `idle` applies now.
    pub fn working(&mut self) {
        self.log_in_by = None;
    }

    /// How long the next read may wait, given the session's idle timeout: `idle` once
    /// working, before that what is left of the pre-login time (never more than `idle`).
    pub fn read_timeout(&self, idle: Duration) -> Duration {
        match self.log_in_by {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(idle),
            None => idle,
        }
    }
}

/// Whom a connection counts against for the per-client limit: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 /64, since one IPv6 host is usually given a whole /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(segments))
        }
        v4 => v4,
    }
}

/// Open connections per client, shared by the accept loop and the sessions it spawned.
type Clients = Arc<Mutex<HashMap<IpAddr, ClientCount>>>;

#[derive(Debug, Default)]
struct ClientCount {
    open: usize,
    /// Refused since the client's first open connection: logged at 1, 2, 4, 8, … so a
    /// flood is seen in the log without filling it.
    refused: u64,
}

/// The accept loop's two limits: connections per client, and all connections.
struct Gate {
    all: Arc<Semaphore>,
    clients: Clients,
    per_client: usize,
}

/// A session's places under both limits, given back when its task drops it.
struct Admission {
    _place: ClientPlace,
    _permit: OwnedSemaphorePermit,
}

struct ClientPlace {
    client: IpAddr,
    clients: Clients,
}

impl Gate {
    fn new(cfg: &ListenerConfig) -> Self {
        Self {
            all: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
            clients: Clients::default(),
            per_client: cfg.max_connections_per_client.max(1),
        }
    }

    /// Places for a connection from `peer`, or `None` (logged) when it is over a limit.
    fn admit(&self, listener: &'static str, peer: SocketAddr) -> Option<Admission> {
        let client = client_of(peer.ip());
        {
            let mut clients = lock(&self.clients);
            let count = clients.entry(client).or_default();
            if count.open >= self.per_client {
                count.refused += 1;
                if count.refused.is_power_of_two() {
                    tracing::warn!(
                        listener,
                        %peer,
                        refused = count.refused,
                        "connection refused: too many connections from this client"
                    );
                }
                return None;
            }
            count.open += 1;
        }
        // From here on, dropping the place gives it back, also when the global limit refuses.
        let place = ClientPlace {
            client,
            clients: self.clients.clone(),
        };
        let Ok(permit) = self.all.clone().try_acquire_owned() else {
            tracing::warn!(listener, %peer, "connection refused: too many connections");
            return None;
        };
        Some(Admission {
            _place: place,
            _permit: permit,
        })
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut clients = lock(&self.clients);
        if let Some(count) = clients.get_mut(&self.client) {
            count.open = count.open.saturating_sub(1);
            if count.open == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

/// Nothing panics while holding the lock, so a poisoned one still holds correct counts.
fn lock(clients: &Clients) -> std::sync::MutexGuard<'_, HashMap<IpAddr, ClientCount>> {
    clients.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

impl SessionStream {
    /// A just-accepted connection as a session's stream: TCP_NODELAY set and, on an
    /// implicit-TLS port, the handshake done within `timeout` using `tls`. `None` when the
    /// handshake failed or timed out, or the port has no TLS configuration (logged).
    pub async fn accepted(
        tcp: TcpStream,
        peer: SocketAddr,
        implicit_tls: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
        timeout: Duration,
    ) -> Option<Self> {
        let _ = tcp.set_nodelay(true);
        let stream = SessionStream::Plain(tcp);
        if !implicit_tls {
            return Some(stream);
        }
        let Some(tls) = tls else {
            tracing::error!(%peer, "implicit TLS port without a TLS configuration");
            return None;
        };
        match tokio::time::timeout(timeout, stream.upgrade(&TlsAcceptor::from(tls))).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SessionStream<S> {
    /// STARTTLS: performs the server handshake on the plain stream. The caller must throw
    /// away any input it buffered before the upgrade (RFC 3207 §4.2: no plaintext injection).
    pub async fn upgrade(self, acceptor: &TlsAcceptor) -> Result<Self, ListenerError> {
        match self {
            SessionStream::Plain(s) => acceptor
                .accept(s)
                .await
                .map(|tls| SessionStream::Tls(Box::new(tls.into())))
                .map_err(ListenerError::Handshake),
            SessionStream::Tls(_) => Err(ListenerError::AlreadyTls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn busy_reply_and_shutdown() {
        let mut cfg = ListenerConfig::new("127.0.0.1:0".parse().expect("addr"), "test");
        cfg.max_connections = 1;
        cfg.busy_reply = Some(b"BUSY\r\n".to_vec());
        cfg.drain_timeout = Duration::from_millis(200);
        let listener = Listener::bind(cfg).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (handle, shutdown) = Shutdown::channel();
        let task = tokio::spawn(listener.run(shutdown, |mut s, _peer, mut sd| async move {
            let _ = s.write_all(b"HELLO\r\n").await;
            sd.wait().await;
            let _ = s.write_all(b"BYE\r\n").await;
        }));

        let mut first = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 7];
        first.read_exact(&mut buf).await.expect("hello");
        assert_eq!(&buf, b"HELLO\r\n");

        let mut second = TcpStream::connect(addr).await.expect("connect");
        let mut got = Vec::new();
        second.read_to_end(&mut got).await.expect("busy");
        assert_eq!(got, b"BUSY\r\n");

        handle.trigger();
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).await.expect("bye");
        assert_eq!(rest, b"BYE\r\n");
        task.await.expect("listener ends");
    }

    fn peer(addr: &str) -> SocketAddr {
        addr.parse().expect("socket address")
    }

    #[test]
    fn one_client_over_its_limit_leaves_others_their_places() {
        let mut cfg = ListenerConfig::new(peer("127.0.0.1:0"), "test");
        cfg.max_connections = 5;
        cfg.max_connections_per_client = 2;
        let gate = Gate::new(&cfg);
        let first = gate.admit("test", peer("192.0.2.1:1000"));
        let second = gate.admit("test", peer("192.0.2.1:1001"));
        assert!(first.is_some() && second.is_some());
        assert!(gate.admit("test", peer("192.0.2.1:1002")).is_none());
        // The same address mapped into IPv6 is the same client.
        assert!(
            gate.admit("test", peer("[::ffff:192.0.2.1]:1003"))
                .is_none()
        );
        let other = gate.admit("test", peer("192.0.2.2:1000"));
        assert!(other.is_some());
        drop(first);
        let again = gate.admit("test", peer("192.0.2.1:1004"));
        assert!(again.is_some(), "a closed connection gives its place back");
        drop((second, again, other));
        assert!(
            lock(&gate.clients).is_empty(),
            "no client is remembered without connections"
        );
    }

    #[test]
    fn the_global_limit_stays_and_gives_the_client_place_back() {
        let mut cfg = ListenerConfig::new(peer("127.0.0.1:0"), "test");
        cfg.max_connections = 2;
        cfg.max_connections_per_client = 2;
        let gate = Gate::new(&cfg);
        let a = gate.admit("test", peer("192.0.2.1:1000"));
        let b = gate.admit("test", peer("192.0.2.2:1000"));
        assert!(a.is_some() && b.is_some());
        assert!(gate.admit("test", peer("192.0.2.3:1000")).is_none());
        assert!(!lock(&gate.clients).contains_key(&client_of(peer("192.0.2.3:1").ip())));
        drop(a);
        assert!(gate.admit("test", peer("192.0.2.3:1000")).is_some());
    }

    #[test]
    fn an_ipv6_client_is_its_64_network() {
        let a = client_of(peer("[2001:db8:1:2:aaaa::1]:1").ip());
        let b = client_of(peer("[2001:db8:1:2:bbbb::2]:1").ip());
        let c = client_of(peer("[2001:db8:1:3::1]:1").ip());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            client_of(peer("[::ffff:10.0.0.1]:1").ip()),
            peer("10.0.0.1:1").ip()
        );
    }

    #[test]
    fn the_clock_allows_the_pre_login_time_until_working() {
        let idle = Duration::from_secs(300);
        let mut clock = SessionClock::starting(Duration::from_secs(30));
        assert!(clock.read_timeout(idle) <= Duration::from_secs(30));
        // Never longer than the session's own timeout, either.
        assert_eq!(
            clock.read_timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        clock.working();
        assert_eq!(clock.read_timeout(idle), idle);
        assert_eq!(
            SessionClock::starting(Duration::ZERO).read_timeout(idle),
            Duration::ZERO
        );
        assert_eq!(SessionClock::default().read_timeout(idle), idle);
        assert_eq!(
            SessionClock::starting(Duration::MAX).read_timeout(idle),
            idle
        );
    }

    #[tokio::test]
    async fn busy_reply_for_a_client_over_its_limit_only() {
        let mut cfg = ListenerConfig::new(peer("127.0.0.1:0"), "test");
        cfg.max_connections_per_client = 1;
        cfg.busy_reply = Some(b"BUSY\r\n".to_vec());
        let listener = Listener::bind(cfg).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_handle, shutdown) = Shutdown::channel();
        tokio::spawn(listener.run(shutdown, |mut s, _peer, mut sd| async move {
            let _ = s.write_all(b"HELLO\r\n").await;
            sd.wait().await;
        }));
        let connect_from = |source: &'static str| async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(peer(source)).expect("bind source address");
            let mut stream = socket.connect(addr).await.expect("connect");
            let mut line = [0u8; 6];
            stream.read_exact(&mut line).await.expect("read");
            (stream, line)
        };
        let (_held, first) = connect_from("127.0.0.2:0").await;
        assert_eq!(&first, b"HELLO\r");
        let (_, second) = connect_from("127.0.0.2:0").await;
        assert_eq!(&second, b"BUSY\r\n");
        let (_, other) = connect_from("127.0.0.3:0").await;
        assert_eq!(&other, b"HELLO\r");
    }

    /// An implicit-TLS connection that never starts its handshake is closed once the
    /// pre-login time is over, however long the protocol's handshake timeout is.
    #[tokio::test]
    async fn a_silent_tls_connection_ends_with_the_pre_login_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        crate::net::tls::ensure_certificate(&cert, &key, "localhost").expect("certificate");
        let tls = crate::net::tls::server_config(&cert, &key).expect("TLS config");
        let mut cfg = ListenerConfig::new(peer("127.0.0.1:0"), "test");
        cfg.pre_auth_timeout = Duration::from_millis(100);
        let listener = Listener::bind(cfg).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_handle, shutdown) = Shutdown::channel();
        let hour = Duration::from_secs(3600);
        tokio::spawn(listener.run_sessions(
            shutdown,
            true,
            Some(tls),
            hour,
            |_stream, _peer, _shutdown, _clock| async {},
        ));
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), silent.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "the gateway closes the connection");
        assert!(rest.is_empty());
    }
}
