//! The POP3 client against a real Dovecot: TLS modes, login failures, byte-exact RETR,
//! the size limit, and a 1,000-message run (rate printed, never asserted).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mticket::net::tls;
use mticket::protocol::pop3_client::{self, Client, Pop3Error, Pop3Stream, Pop3Tls};
use support::dovecot::Dovecot;

const TIMEOUT: Duration = Duration::from_secs(10);
const LIMIT: usize = 25 * 1024 * 1024;

fn trusting(dovecot: &Dovecot) -> Arc<rustls::ClientConfig> {
    tls::client_config(Some(&dovecot.ca_pem())).expect("client config with test CA")
}

async fn pop3s(dovecot: &Dovecot, host: &str) -> Client<Pop3Stream> {
    pop3_client::connect(
        host,
        dovecot.pop3s_port(),
        Pop3Tls::Implicit,
        trusting(dovecot),
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("connect POP3S: {e}\n{}", dovecot.log()))
}

fn mail(n: usize, body: &str) -> Vec<u8> {
    format!(
        "From: customer{n}@example.org\r\nTo: support@example.com\r\n\
         Subject: test {n}\r\nMessage-ID: <{n}@example.org>\r\n\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test]
async fn pop3s_login_uidl_retr_dele_quit() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw1");
    let mails: Vec<Vec<u8>> = (0..3).map(|n| mail(n, "Hello\r\n")).collect();
    dovecot.deliver_many("support", mails.iter().map(|m| m.as_slice()));

    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("support", "pw1").await.expect("login");
    let stat = c.stat().await.expect("stat");
    assert_eq!(stat.count, 3);
    let uidl = c.uidl_all().await.expect("uidl");
    assert_eq!(uidl.len(), 3);
    assert_eq!(c.list_all().await.expect("list").len(), 3);

    let mut got = Vec::new();
    for (msgno, _uid) in &uidl {
        got.push(c.retr(*msgno, LIMIT).await.expect("retr"));
        c.dele(*msgno).await.expect("dele");
    }
    got.sort();
    let mut want = mails.clone();
    want.sort();
    assert_eq!(got, want);
    // Marked, not gone: deletion happens only when QUIT succeeds.
    assert_eq!(dovecot.count("support"), 3);
    let text = c.quit().await.expect("quit");
    assert!(!text.is_empty());
    assert_eq!(dovecot.count("support"), 0);
}

#[tokio::test]
async fn stls_with_ip_address_as_server_name() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw");
    dovecot.deliver("support", &mail(1, "x\r\n"));
    let mut c = pop3_client::connect(
        "127.0.0.1",
        dovecot.pop3_port(),
        Pop3Tls::StartTls,
        trusting(&dovecot),
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("connect STLS: {e}\n{}", dovecot.log()));
    let caps = c.capa().await.expect("capa");
    assert!(caps.iter().any(|c| c == "UIDL"), "{caps:?}");
    // Already upgraded: the server no longer offers STLS.
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    c.login("support", "pw").await.expect("login");
    assert_eq!(c.stat().await.expect("stat").count, 1);
    c.quit().await.expect("quit");
}

#[tokio::test]
async fn plain_pop3_when_explicitly_allowed() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw");
    let mut c = pop3_client::connect(
        "127.0.0.1",
        dovecot.pop3_port(),
        Pop3Tls::None,
        trusting(&dovecot),
        TIMEOUT,
    )
    .await
    .expect("connect plain");
    c.login("support", "pw").await.expect("login");
    assert_eq!(c.stat().await.expect("stat").count, 0);
    c.quit().await.expect("quit");
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let dovecot = Dovecot::start();
    let public_roots_only = tls::client_config(None).expect("client config");
    let err = pop3_client::connect(
        "localhost",
        dovecot.pop3s_port(),
        Pop3Tls::Implicit,
        public_roots_only,
        TIMEOUT,
    )
    .await
    .expect_err("self-made CA is not trusted");
    assert!(matches!(err, Pop3Error::Tls { .. }), "{err}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_failure_with_dovecots_text() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "right-one");
    let mut c = pop3s(&dovecot, "localhost").await;
    let err = c
        .login("support", "wrong-secret")
        .await
        .expect_err("bad password");
    assert!(err.is_auth_failure(), "{err}");
    let text = err.server_text().expect("server text");
    assert!(text.contains("Authentication failed"), "{text}");
    assert!(!format!("{err} {err:?}").contains("wrong-secret"));

    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("support", "right-one").await.expect("login");
    c.quit().await.expect("quit");

    // A changed password (same length, same second) is picked up by the next login.
    dovecot.set_password("support", "right-two");
    let mut c = pop3s(&dovecot, "localhost").await;
    let err = c.login("support", "right-one").await.expect_err("old pw");
    assert!(err.is_auth_failure(), "{err}");
    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("support", "right-two").await.expect("new pw");
    c.quit().await.expect("quit");

    // A user added while Dovecot is serving can log in at once.
    dovecot.add_user("Sales", "pw");
    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("sales", "pw").await.expect("new user");
    c.quit().await.expect("quit");
}

#[tokio::test]
async fn retr_returns_dot_stuffed_message_byte_for_byte() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw");
    let raw = mail(
        7,
        ".leading dot\r\n\
         .\r\n\
         ..two dots\r\n\
         . \r\n\
         line with trailing dot.\r\n\
         \r\n\
         .\r\n\
         \u{e4}\u{f6}\u{fc} 8-bit body\r\n\
         .",
    );
    // The last line deliberately has no line ending: Dovecot adds one on the wire.
    dovecot.deliver("support", &raw);
    let mut c = pop3s(&dovecot, "127.0.0.1").await;
    c.login("support", "pw").await.expect("login");
    let got = c.retr(1, LIMIT).await.expect("retr");
    let mut want = raw.clone();
    want.extend_from_slice(b"\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(got, want);
    c.quit().await.expect("quit");
}

#[tokio::test]
async fn size_limited_retr_leaves_message_upstream() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw");
    let big = mail(1, &"0123456789abcdef\r\n".repeat(10_000));
    dovecot.deliver("support", &big);
    dovecot.deliver("support", &mail(2, "small\r\n"));

    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("support", "pw").await.expect("login");
    let uidl = c.uidl_all().await.expect("uidl");
    let mut too_large = 0;
    for (msgno, _) in &uidl {
        match c.retr(*msgno, 64 * 1024).await {
            Ok(raw) => {
                assert_eq!(raw, mail(2, "small\r\n"));
                c.dele(*msgno).await.expect("dele");
            }
            Err(err) => {
                assert!(err.is_too_large(), "{err}");
                assert!(!err.is_fatal_for_session());
                if let Pop3Error::TooLarge { size, .. } = err {
                    assert_eq!(size, big.len() as u64);
                }
                too_large += 1;
            }
        }
    }
    assert_eq!(too_large, 1);
    // The session is still in sync after draining the big message.
    c.noop().await.expect("noop");
    c.quit().await.expect("quit");
    assert_eq!(
        dovecot.count("support"),
        1,
        "the big message stays upstream"
    );
}

#[tokio::test]
async fn thousand_messages_over_pop3s() {
    const N: usize = 1000;
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw");
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(30);
    let mails: Vec<Vec<u8>> = (0..N).map(|n| mail(n, &body)).collect();
    dovecot.deliver_many("support", mails.iter().map(|m| m.as_slice()));

    let start = Instant::now();
    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("support", "pw").await.expect("login");
    let uidl = c.uidl_all().await.expect("uidl");
    assert_eq!(uidl.len(), N);
    let mut bytes = 0;
    for (msgno, _) in &uidl {
        let raw = c.retr(*msgno, LIMIT).await.expect("retr");
        bytes += raw.len();
        c.dele(*msgno).await.expect("dele");
    }
    c.quit().await.expect("quit");
    let elapsed = start.elapsed();
    assert_eq!(bytes, mails.iter().map(Vec::len).sum::<usize>());
    assert_eq!(dovecot.count("support"), 0);
    println!(
        "POP3S: {N} messages ({} KiB) retrieved and deleted in {:.3} s = {:.0} mails/s \
         (debug build)",
        bytes / 1024,
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn pipelined_retr_and_dele_keep_answers_in_order() {
    let dovecot = Dovecot::start();
    dovecot.add_user("support", "pw1");
    // Different sizes, so an answer read for the wrong command would show.
    let mails: Vec<Vec<u8>> = (0..20)
        .map(|n| mail(n, &"line of text\r\n".repeat(1 + n * 300)))
        .collect();
    dovecot.deliver_many("support", mails.iter().map(|m| m.as_slice()));

    let mut c = pop3s(&dovecot, "localhost").await;
    c.login("support", "pw1").await.expect("login");
    let caps = c.capa().await.expect("capa");
    assert!(
        caps.iter().any(|c| c == "PIPELINING"),
        "Dovecot announces PIPELINING: {caps:?}"
    );
    let list = c.uidl_all().await.expect("uidl");
    let numbers: Vec<u32> = list.iter().map(|(n, _)| *n).collect();
    for n in &numbers {
        c.send_retr(*n).await.expect("send RETR");
    }
    let mut got = Vec::new();
    for n in &numbers {
        got.push(c.read_retr(*n, LIMIT).await.expect("read RETR"));
    }
    assert_eq!(got, mails, "every answer belongs to its command, in order");
    // A message over the limit in the middle of a pipeline is skipped, the rest still fit.
    c.send_retr(20).await.expect("send");
    c.send_retr(1).await.expect("send");
    let e = c.read_retr(20, 1000).await.expect_err("over the limit");
    assert!(e.is_too_large(), "{e}");
    assert_eq!(c.read_retr(1, LIMIT).await.expect("next"), mails[0]);

    c.dele_all(&numbers, 8).await.expect("pipelined DELE");
    c.quit().await.expect("quit");
    assert_eq!(dovecot.count("support"), 0);
}
