//! The agents' IMAP server against a real client: Python's imaplib over STARTTLS (port
//! `imap`) and implicit TLS (port `imaps`).
#[path = "support/mod.rs"]
mod support;

use std::process::Command;

use support::gateway::{Gateway, Options};

/// Runs an imaplib script with the gateway's ports, certificate and anna's password as
/// arguments; returns what it printed.
fn imaplib(gateway: &Gateway, script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(gateway.imap_port.to_string())
        .arg(gateway.imaps_port.to_string())
        .arg(gateway.cert_path())
        .env("AGENT_PASSWORD", "anna-secret")
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "imaplib: {said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gateway.log()
    );
    said
}

fn setup() -> Gateway {
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    gateway.add_agent("anna", "anna@shop.test", "anna-secret", &["Support"]);
    gateway.start();
    gateway
}

#[test]
fn imaplib_logs_in_over_starttls_and_implicit_tls_and_not_in_the_clear() {
    let gateway = setup();
    let said = imaplib(
        &gateway,
        r#"
import imaplib, os, ssl, sys
port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
password = os.environ["AGENT_PASSWORD"]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False

m = imaplib.IMAP4("127.0.0.1", port)
print("plain capabilities:", " ".join(m.capabilities))
try:
    m.login("anna", password)
    print("plain login: accepted")
except imaplib.IMAP4.error as e:
    print("plain login: refused:", e)
m.starttls(ssl_context=ctx)
print("tls capabilities:", " ".join(m.capabilities))
try:
    m.login("anna", "wrong")
    print("wrong password: accepted")
except imaplib.IMAP4.error as e:
    print("wrong password: refused")
typ, _ = m.login("anna", password)
print("starttls login:", typ)
print("logout:", m.logout()[0])

s = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=ctx)
typ, _ = s.login("anna", password)
print("imaps login:", typ)
print("logout:", s.logout()[0])
"#,
    );
    println!("{said}");
    assert!(said.contains("plain login: refused"), "{said}");
    assert!(said.contains("LOGINDISABLED"), "{said}");
    assert!(said.contains("STARTTLS"), "{said}");
    assert!(said.contains("wrong password: refused"), "{said}");
    assert!(said.contains("starttls login: OK"), "{said}");
    assert!(said.contains("imaps login: OK"), "{said}");
    assert_eq!(said.matches("logout: BYE").count(), 2, "{said}");
    assert!(
        !gateway.log().contains("anna-secret"),
        "password in the log"
    );
}
