//! The inbound SMTP/LMTP listener on a real loopback socket, driven by real clients:
//! swaks (SMTP, STARTTLS, LMTP) and Python's smtplib. The pipeline is an in-memory sink.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mticket::net::listener::{Listener, ListenerConfig, Shutdown, ShutdownHandle};
use mticket::protocol::login_guard::Checked;
use mticket::protocol::smtp_server::{
    DeliverError, MailService, Mode, SmtpConfig, Unavailable, serve,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const QUEUE: &str = "support@example.com";

/// (mail_from, rcpts, raw) as delivered.
type Mail = (String, Vec<String>, Vec<u8>);

#[derive(Default)]
struct MemSink {
    queues: HashSet<String>,
    mails: Mutex<Vec<Mail>>,
}

impl MailService for MemSink {
    type Agent = ();

    async fn authenticate(
        &self,
        _login: &str,
        _password: &str,
    ) -> Result<Checked<()>, Unavailable> {
        Ok(Checked::Wrong)
    }

    async fn accepts(&self, _agent: Option<&()>, rcpt: &str) -> Result<bool, Unavailable> {
        Ok(self.queues.contains(&rcpt.to_ascii_lowercase()))
    }

    async fn deliver(
        &self,
        _agent: Option<&()>,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Vec<Result<(), DeliverError>> {
        self.mails
            .lock()
            .expect("lock")
            .push((mail_from.into(), rcpts.to_vec(), raw.to_vec()));
        rcpts.iter().map(|_| Ok(())).collect()
    }
}

struct Server {
    addr: SocketAddr,
    sink: Arc<MemSink>,
    _stop: ShutdownHandle,
}

impl Server {
    fn mails(&self) -> Vec<Mail> {
        self.sink.mails.lock().expect("lock").clone()
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_ca, cert, key) = support::sink::test_certificates();
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config"),
    )
}

async fn start(mode: Mode, max_size: usize) -> Server {
    let sink = Arc::new(MemSink {
        queues: [QUEUE, "sales@example.com"]
            .into_iter()
            .map(String::from)
            .collect(),
        ..MemSink::default()
    });
    let mut lcfg = ListenerConfig::new("127.0.0.1:0".parse().expect("addr"), "test-inbound");
    lcfg.busy_reply = Some(b"421 4.7.0 too many connections\r\n".to_vec());
    let listener = Listener::bind(lcfg).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut cfg = SmtpConfig::new(mode, "mx.test");
    cfg.max_size = max_size;
    cfg.tls = Some(tls_config());
    let (stop, shutdown) = Shutdown::channel();
    tokio::spawn(serve(listener, cfg, sink.clone(), shutdown));
    Server {
        addr,
        sink,
        _stop: stop,
    }
}

/// Runs swaks; returns (exit success, transcript).
async fn swaks(server: &Server, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &server.addr.port().to_string(),
        ])
        .args(["--helo", "client.test", "--timeout", "20"])
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run swaks ({e}): apt-get install swaks libnet-ssleay-perl")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs a Python snippet with `port` bound; returns (exit success, stdout+stderr).
async fn python(port: u16, code: &str) -> (bool, String) {
    let out = tokio::process::Command::new("python3")
        .args(["-c", code, &port.to_string()])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): apt-get install python3"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn strip_return_path<'a>(raw: &'a [u8], from: &str) -> &'a [u8] {
    let line = format!("Return-Path: <{from}>\r\n");
    raw.strip_prefix(line.as_bytes()).unwrap_or_else(|| {
        panic!(
            "no Return-Path line first: {:?}",
            String::from_utf8_lossy(raw)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_to_a_queue_byte_identical() {
    let server = start(Mode::Smtp, 1 << 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let data = b"From: Customer <c@example.org>\r\nTo: support@example.com\r\n\
Subject: printer broken\r\nMessage-ID: <m1@example.org>\r\n\r\n\
.starts with a dot\r\nHallo Gr\xc3\xbc\xc3\x9fe\r\n\r\n-- \r\nC\r\n";
    // --no-data-fixup sends the file as the DATA wire form: dot-stuffed, with the final dot.
    let mut wire = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    let file = dir.path().join("mail.eml");
    std::fs::write(&file, wire).expect("write");
    let (ok, out) = swaks(
        &server,
        &[
            "--from",
            "c@example.org",
            "--to",
            QUEUE,
            "--data",
            &format!("@{}", path(&file)),
            "--no-data-fixup",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].0, "c@example.org");
    assert_eq!(mails[0].1, vec![QUEUE.to_string()]);
    assert_eq!(strip_return_path(&mails[0].2, "c@example.org"), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_unknown_address_gets_550() {
    let server = start(Mode::Smtp, 1 << 20).await;
    let (ok, out) = swaks(
        &server,
        &["--from", "c@example.org", "--to", "nobody@example.com"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("550 5.1.1"), "{out}");
    assert!(server.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls() {
    let server = start(Mode::Smtp, 1 << 20).await;
    let (ok, out) = swaks(
        &server,
        &[
            "--tls",
            "--from",
            "c@example.org",
            "--to",
            QUEUE,
            "--body",
            "via TLS",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("TLS started"), "{out}");
    assert_eq!(server.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_lmtp() {
    let server = start(Mode::Lmtp, 1 << 20).await;
    let (ok, out) = swaks(
        &server,
        &[
            "--protocol",
            "LMTP",
            "--from",
            "<>",
            "--to",
            "support@example.com,sales@example.com",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("250 2.0.0 message accepted").count(),
        2,
        "{out}"
    );
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].1.len(), 2);
    assert!(mails[0].2.starts_with(b"Return-Path: <>\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_oversize_gets_552() {
    let server = start(Mode::Smtp, 10_000).await;
    let body = "x".repeat(70) + "\n";
    let (ok, out) = swaks(
        &server,
        &[
            "--from",
            "c@example.org",
            "--to",
            QUEUE,
            "--body",
            &body.repeat(400),
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("552 5.3.4"), "{out}");
    assert!(server.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_bytes_size_and_rejects() {
    let server = start(Mode::Smtp, 10_000).await;
    let code = r#"
import smtplib, sys
port = int(sys.argv[1])
msg = b"Subject: t\r\nX-Raw: \xff\xfe\r\n\r\n..two\r\n.one\r\nend\r\n"
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("py.test")
    assert s.has_extn("pipelining") and s.has_extn("size"), s.esmtp_features
    refused = s.sendmail("p@example.org", ["support@example.com", "ghost@example.com"], msg)
    assert refused == {"ghost@example.com": (550, b"5.1.1 no such queue address")}, refused
    try:
        s.sendmail("p@example.org", ["support@example.com"], b"x" * 20000)
        raise SystemExit("oversize accepted")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 552, e
    s.rset()
    try:
        s.sendmail("p@example.org", ["ghost@example.com"], msg)
        raise SystemExit("unknown accepted")
    except smtplib.SMTPRecipientsRefused as e:
        assert e.recipients["ghost@example.com"][0] == 550, e
print("OK")
"#;
    let (ok, out) = python(server.addr.port(), code).await;
    assert!(ok && out.contains("OK"), "{out}");
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        strip_return_path(&mails[0].2, "p@example.org"),
        b"Subject: t\r\nX-Raw: \xff\xfe\r\n\r\n..two\r\n.one\r\nend\r\n"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
