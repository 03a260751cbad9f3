//! One client cannot lock the others out: the real gateway gets 1,000 idle TCP connections
//! from one address (127.0.0.2) on every listener; a client from another address
//! (127.0.0.3) is still served on each, and the gateway closes every idle connection once
//! its pre-login time is over (with the listener's busy answer at once, or its timeout
//! answer then).
#[path = "support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use support::gateway::{Gateway, Options};

const IDLE_PER_LISTENER: usize = 1000;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// A bound on waiting that only a hanging gateway reaches; no test result depends on it.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Smtp,
    Imap,
    Pop3,
}

/// A listener of the gateway under test, as a client sees it.
#[derive(Debug, Clone, Copy)]
struct Port {
    name: &'static str,
    port: u16,
    protocol: Protocol,
    implicit_tls: bool,
}

impl Port {
    /// The listener's answer to a connection over a limit (implicit-TLS ports just close).
    fn busy(&self) -> &'static str {
        match self.protocol {
            Protocol::Smtp => "421 4.7.0 too many connections, try again later\r\n",
            Protocol::Imap => "* BYE too many connections, try again later\r\n",
            Protocol::Pop3 => "-ERR [SYS/TEMP] too many connections\r\n",
        }
    }

    /// The session's answer when the client took too long.
    fn timed_out(&self) -> &'static str {
        match self.protocol {
            Protocol::Smtp => "421 4.4.2 idle timeout, closing connection\r\n",
            Protocol::Imap => "* BYE idle too long\r\n",
            Protocol::Pop3 => "-ERR idle too long, closing connection\r\n",
        }
    }

    fn greeting(&self) -> &'static str {
        match self.protocol {
            Protocol::Smtp => "220 ",
            Protocol::Imap => "* OK",
            Protocol::Pop3 => "+OK",
        }
    }
}

fn ports(g: &Gateway) -> [Port; 8] {
    let port = |name, port, protocol, implicit_tls| Port {
        name,
        port,
        protocol,
        implicit_tls,
    };
    [
        port("inbound", g.inbound_port, Protocol::Smtp, false),
        port("lmtp", g.lmtp_port, Protocol::Smtp, false),
        port("submission", g.submission_port, Protocol::Smtp, false),
        port("submissions", g.submissions_port, Protocol::Smtp, true),
        port("imap", g.imap_port, Protocol::Imap, false),
        port("imaps", g.imaps_port, Protocol::Imap, true),
        port("pop3", g.pop3_port, Protocol::Pop3, false),
        port("pop3s", g.pop3s_port, Protocol::Pop3, true),
    ]
}

#[test]
fn idle_connections_from_one_address_lock_nobody_out_and_are_closed() {
    raise_open_files_limit(8 * IDLE_PER_LISTENER + 1000);
    let mut gateway = Gateway::new(Options {
        // The shipped per-client limit, and a short pre-login time to keep the test short.
        max_connections_per_client: None,
        pre_auth_timeout: Some("3s"),
        allow_plain_on_loopback: true,
        ..Options::default()
    });
    gateway.add_agent("anna", "anna@example.org", "secret-password", &[]);
    gateway.start();
    let pem = std::fs::read_to_string(gateway.cert_path()).expect("gateway certificate");
    let tls = TlsConnector::from(mticket::net::tls::client_config(Some(&pem)).expect("TLS"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let mut idle = Vec::new();
        for port in ports(&gateway) {
            let flood = open_idle(port).await;
            if let Err(e) = tokio::time::timeout(PATIENCE, served(port, &tls)).await {
                panic!("{}: no answer from 127.0.0.3 ({e})", port.name);
            }
            idle.push((port, flood));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut report = Vec::new();
        for (port, flood) in idle {
            report.push(closed_by_the_gateway(port, flood, deadline).await);
        }
        report
    });
    assert!(gateway.is_running(), "{}", gateway.log());
    support::summary(&format!(
        "connection limits: {} idle connections from 127.0.0.2 per listener, all closed by \
         the gateway (busy at once / timed out): {}",
        IDLE_PER_LISTENER,
        report.join(", ")
    ));
}

/// Raises this process's (and so the gateway's) soft limit of open files to the hard
/// limit; fails when even that is below `needed`.
fn raise_open_files_limit(needed: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit),
            0,
            "getrlimit"
        );
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
    }
    assert!(
        limit.rlim_cur >= needed as u64,
        "this test holds {needed} connections open at once, but the hard limit of open files \
         is {}: raise it (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE= for a service)",
        limit.rlim_cur
    );
}

/// A connection from `source` to the gateway's `port`.
async fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}

/// Opens the idle connections from the attacking address; each is read to its end (what
/// the gateway said, or the error that ended it) in a task of its own.
async fn open_idle(port: Port) -> Vec<JoinHandle<std::io::Result<String>>> {
    let mut reads = Vec::with_capacity(IDLE_PER_LISTENER);
    for i in 0..IDLE_PER_LISTENER {
        let mut stream = match connect_from(ATTACKER, port.port).await {
            Ok(s) => s,
            Err(e) => panic!("{}: idle connection {i} from 127.0.0.2: {e}", port.name),
        };
        reads.push(tokio::spawn(async move {
            let mut said = Vec::new();
            stream.read_to_end(&mut said).await?;
            Ok(String::from_utf8_lossy(&said).into_owned())
        }));
    }
    reads
}

/// The other client is served: the greeting (after the TLS handshake on an implicit-TLS
/// port), and on the mailbox ports a successful login.
async fn served(port: Port, tls: &TlsConnector) {
    let tcp = connect_from(CLIENT, port.port)
        .await
        .unwrap_or_else(|e| panic!("{}: connect from 127.0.0.3: {e}", port.name));
    if port.implicit_tls {
        let name = ServerName::try_from("localhost").expect("server name");
        let stream = tls
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("{}: TLS handshake from 127.0.0.3: {e}", port.name));
        converse(port, stream).await;
    } else {
        converse(port, tcp).await;
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(port: Port, stream: S) {
    let mut stream = BufReader::new(stream);
    let greeting = line(&mut stream).await;
    assert!(
        greeting.starts_with(port.greeting()),
        "{}: 127.0.0.3 was greeted with {greeting:?}",
        port.name
    );
    let login: &[(&str, &str)] = match port.protocol {
        Protocol::Smtp => &[],
        Protocol::Imap => &[("a1 LOGIN anna secret-password\r\n", "a1 OK")],
        Protocol::Pop3 => &[
            ("USER anna\r\n", "+OK"),
            ("PASS secret-password\r\n", "+OK"),
        ],
    };
    for (command, expected) in login {
        stream
            .write_all(command.as_bytes())
            .await
            .expect("write a command");
        let mut answer = line(&mut stream).await;
        // IMAP may send untagged data before the tagged answer.
        while port.protocol == Protocol::Imap && answer.starts_with("* ") {
            answer = line(&mut stream).await;
        }
        assert!(
            answer.starts_with(expected),
            "{}: 127.0.0.3 sent {command:?} and got {answer:?}",
            port.name
        );
    }
}

async fn line<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> String {
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("read a line");
    line
}

/// Waits until the gateway has closed every idle connection of `port`, and checks what it
/// said before: the busy answer (over the per-client limit), or the greeting and then the
/// timeout answer; nothing on an implicit-TLS port. Returns the counts for the summary.
async fn closed_by_the_gateway(
    port: Port,
    flood: Vec<JoinHandle<std::io::Result<String>>>,
    deadline: tokio::time::Instant,
) -> String {
    let (mut busy, mut timed_out) = (0, 0);
    for read in flood {
        let said = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Ok(said))) => said,
            // A reset connection was closed by the gateway, too.
            Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
            Ok(Ok(Err(e))) => panic!("{}: reading an idle connection: {e}", port.name),
            Ok(Err(e)) => panic!("{}: reader task: {e}", port.name),
            Err(_) => panic!(
                "{}: an idle connection from 127.0.0.2 is still open after its pre-login time",
                port.name
            ),
        };
        if port.implicit_tls {
            assert_eq!(said, "", "{}: said {said:?} without TLS", port.name);
            continue;
        }
        if said == port.busy() {
            busy += 1;
        } else {
            let greeted = said.starts_with(port.greeting());
            assert!(
                greeted && said.ends_with(port.timed_out()),
                "{}: an idle connection got {said:?}",
                port.name
            );
            timed_out += 1;
        }
    }
    if port.implicit_tls {
        format!("{} closed", port.name)
    } else {
        format!("{} {busy}/{timed_out}", port.name)
    }
}
