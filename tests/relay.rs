//! Relay to a real upstream (the aiosmtpd recording sink): STARTTLS + AUTH, implicit TLS,
//! plaintext; byte identity; fault classification (tempfail, reject, upstream down).

mod support;

use std::time::Duration;

use mticket::protocol::smtp_client::{RelayError, Upstream, UpstreamTls, relay};
use support::sink::{Fault, Sink};

const MAIL: &[u8] = b"From: Support <support@example.com>\r\n\
To: customer@example.org\r\n\
Subject: [Support #7] Re: printer\r\n\
Message-ID: <relay-test@gw.test>\r\n\
\r\n\
.a line starting with a dot\r\n\
..two dots\r\n\
.\r\n\
8bit: \xc3\xa4\xc3\xb6\xc3\xbc and a bare \xff\r\n\
last line\r\n";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn upstream(sink: &Sink, tls: UpstreamTls, port: u16) -> Upstream {
    Upstream {
        host: "localhost".into(),
        port,
        tls,
        login: None,
        password: None,
        extra_ca_pem: Some(sink.ca_pem().to_string()),
        hello_name: "gw.test".into(),
    }
}

fn rcpts() -> Vec<String> {
    vec!["customer@example.org".into(), "cc@example.org".into()]
}

#[tokio::test]
async fn starttls_with_auth_keeps_bytes() {
    init();
    let sink = Sink::start_with_auth("queue", "s3cret");
    let mut up = upstream(&sink, UpstreamTls::StartTls, sink.port());
    up.login = Some("queue".into());
    up.password = Some("s3cret".into());
    relay(&up, "support@example.com", &rcpts(), MAIL)
        .await
        .expect("relay over STARTTLS with AUTH");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].mail_from, "support@example.com");
    assert_eq!(got[0].rcpt_tos, rcpts());
    assert_eq!(got[0].raw, MAIL);

    up.password = Some("wrong".into());
    let e = relay(&up, "support@example.com", &rcpts(), MAIL)
        .await
        .expect_err("bad password");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.code(), Some(535), "{e}");
}

#[tokio::test]
async fn implicit_tls_and_null_sender() {
    init();
    let sink = Sink::start();
    let up = upstream(&sink, UpstreamTls::Implicit, sink.smtps_port());
    relay(&up, "", &rcpts(), MAIL)
        .await
        .expect("relay over implicit TLS");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].mail_from, "<>");
    assert_eq!(got[0].raw, MAIL);
}

#[tokio::test]
async fn plaintext_upstream() {
    init();
    let sink = Sink::start();
    let up = upstream(&sink, UpstreamTls::None, sink.port());
    relay(&up, "support@example.com", &rcpts(), MAIL)
        .await
        .expect("plain relay");
    assert_eq!(sink.wait_for(1, Duration::from_secs(5))[0].raw, MAIL);
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    init();
    let sink = Sink::start();
    let mut up = upstream(&sink, UpstreamTls::StartTls, sink.port());
    up.extra_ca_pem = None;
    let e = relay(&up, "support@example.com", &rcpts(), MAIL)
        .await
        .expect_err("self-made CA is not a webpki root");
    assert!(matches!(e, RelayError::Tls { .. }), "{e:?}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn faults_are_classified() {
    init();
    let sink = Sink::start();
    let up = upstream(&sink, UpstreamTls::StartTls, sink.port());
    let to = rcpts();
    let send = || relay(&up, "support@example.com", &to, MAIL);

    sink.set_fault(None, Some(Fault::Tempfail), Duration::ZERO);
    let e = send().await.expect_err("tempfail at DATA");
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.code(), Some(451));
    assert!(e.to_string().contains("451"), "{e}");

    sink.set_fault(Some(Fault::Tempfail), None, Duration::ZERO);
    let e = send().await.expect_err("tempfail at RCPT");
    assert!(e.is_transient(), "{e}");

    sink.set_fault(None, Some(Fault::Reject), Duration::ZERO);
    let e = send().await.expect_err("reject at DATA");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.code(), Some(554));
    assert!(e.to_string().contains("injected rejection"), "{e}");

    sink.set_fault(Some(Fault::Reject), None, Duration::ZERO);
    let e = send().await.expect_err("reject at RCPT");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.code(), Some(550));

    assert!(sink.messages().is_empty());
    sink.clear_faults();
    send().await.expect("upstream back");
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[tokio::test]
async fn closed_port_is_transient() {
    init();
    // Bound but not listening: a connection is refused, and while the socket is held no
    // other test's listener can take the port.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let up = Upstream {
        host: "127.0.0.1".into(),
        port: closed.local_addr().unwrap().port(),
        tls: UpstreamTls::StartTls,
        login: None,
        password: None,
        extra_ca_pem: None,
        hello_name: "gw.test".into(),
    };
    let e = relay(&up, "support@example.com", &rcpts(), MAIL)
        .await
        .expect_err("nobody listens");
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, RelayError::Connection { .. }), "{e:?}");
}
