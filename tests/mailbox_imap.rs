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

/// Sends a customer mail to the Support queue over the inbound SMTP listener; `250` means
/// its ticket is committed.
fn customer_mail(gateway: &Gateway, from: &str, subject: &str, body: &str) {
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", gateway.inbound_port),
            "--from",
            from,
            "--to",
            "support@shop.test",
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            body,
        ])
        .output()
        .expect(
            "swaks not found: apt-get install swaks libnet-ssleay-perl (scripts/test does this)",
        );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Three tickets in Support: #1 assigned to anna (her INBOX), #2 and #3 unassigned.
fn helpdesk() -> Gateway {
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    gateway.add_queue("Sales", "sales@shop.test", None, None, &[]);
    gateway.add_agent("anna", "anna@shop.test", "anna-secret", &["Support"]);
    gateway.add_agent("ben", "ben@shop.test", "ben-secret", &["Support"]);
    gateway.cli_ok(&["tag", "add", "vip"]);
    gateway.start();
    customer_mail(
        &gateway,
        "erika@kunde.example",
        "Wo bleibt mein Paket?",
        "Bestellt am Montag.",
    );
    customer_mail(
        &gateway,
        "max@kunde.example",
        "Rechnung falsch",
        "Bitte korrigieren.",
    );
    customer_mail(
        &gateway,
        "erika@kunde.example",
        "Noch eine Frage",
        "Zur Lieferung.",
    );
    gateway.cli_ok(&["ticket", "assign", "1", "anna"]);
    gateway
}

/// The session Thunderbird opens on an account: capabilities, ID, namespace, the folder
/// list, INBOX with the header fields of every message, one message whole, a keyword and
/// a move that change the ticket, APPEND to Sent and Drafts, IDLE, EXPUNGE, CLOSE.
#[test]
fn thunderbirds_sequence_gets_correct_answers() {
    let gateway = helpdesk();
    let said = imaplib(
        &gateway,
        r#"
import email, email.policy, imaplib, os, re, ssl, sys, time
port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
m = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=ctx)
m.login("anna", os.environ["AGENT_PASSWORD"])
print("caps:", " ".join(m.capabilities))
typ, data = m.xatom("ID", '("name" "Thunderbird" "version" "128.0")')
print("id:", typ, m.untagged_responses.pop("ID", None))
typ, data = m.namespace()
print("namespace:", typ, data)
typ, folders = m.list('""', '"*"')
for f in folders:
    print("list:", f.decode())
typ, subs = m.lsub('""', '"*"')
print("lsub count:", len(subs))
typ, data = m.select("INBOX")
print("select INBOX:", typ, data, "uidvalidity", m.untagged_responses.get("UIDVALIDITY"), "uidnext", m.untagged_responses.get("UIDNEXT"))
typ, data = m.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID PRIORITY X-PRIORITY REFERENCES CONTENT-TYPE)])")
uids = []
for part in data:
    if isinstance(part, tuple):
        meta = part[0].decode()
        uid = int(re.search(r"UID (\d+)", meta).group(1))
        size = int(re.search(r"RFC822.SIZE (\d+)", meta).group(1))
        uids.append((uid, size))
        print("header fetch:", meta)
        print("headers:", part[1].decode().replace("\r\n", " | "))
uid, size = uids[0]
typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
raw = data[0][1]
print("body size matches:", len(raw) == size, len(raw), size)
msg = email.message_from_bytes(raw, policy=email.policy.default)
defects = list(msg.defects) + [d for p in msg.walk() for d in p.defects]
print("defects:", defects)
print("message-id:", msg["Message-ID"])
print("subject:", msg["Subject"])
print("x-ticket-number:", msg["X-Ticket-Number"])
typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
print("flags after peek:", data)

typ, data = m.uid("STORE", str(uid), "+FLAGS", r"(\Flagged vip)")
print("store:", typ, data)
typ, data = m.select("Queues/Support")
print("select Support:", typ, data)
typ, data = m.uid("SEARCH", None, "ALL")
print("support uids:", data)
typ, data = m.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "3")
print("ticket 3:", data)
typ, data = m.uid("MOVE", data[0].decode(), "Status/Waiting")
print("move:", typ, data)

sent = b"From: anna@shop.test\r\nTo: erika@kunde.example\r\nSubject: Re: test\r\nMessage-ID: <sent-1@shop.test>\r\n\r\nHallo\r\n"
typ, data = m.append("Sent", r"(\Seen)", imaplib.Time2Internaldate(time.time()), sent)
print("append sent:", typ, data)
typ, data = m.append("Drafts", r"(\Draft)", None, b"Subject: draft\r\n\r\nunfinished\r\n")
print("append drafts:", typ, data)
typ, data = m.select("Sent")
print("select Sent:", typ, data)
typ, data = m.fetch("1", "(FLAGS BODY.PEEK[])")
print("sent back:", data[0][1] == sent, data[0][0])
typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
typ, data = m.expunge()
print("expunge:", typ, data)

typ, data = m.select("INBOX")
tag = m._new_tag().decode()
m.send(f"{tag} IDLE\r\n".encode())
print("idle:", m.readline().decode().strip())
m.send(b"DONE\r\n")
while True:
    line = m.readline().decode().strip()
    if line.startswith(tag):
        print("idle done:", line)
        break
typ, data = m.close()
print("close:", typ)
print("logout:", m.logout()[0])
"#,
    );
    println!("{said}");
    for expected in [
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "NAMESPACE",
        "ID",
        "ENABLE",
        "LITERAL+",
        "UNSELECT",
        "CHILDREN",
    ] {
        assert!(said.contains(expected), "capability {expected}: {said}");
    }
    assert!(
        said.contains("list: (\\HasNoChildren) \"/\" INBOX"),
        "{said}"
    );
    assert!(said.contains("\"/\" Queues/Support"), "{said}");
    assert!(
        !said.contains("Queues/Sales"),
        "anna has no access to Sales: {said}"
    );
    assert!(said.contains("select INBOX: OK [b'1']"), "{said}");
    assert!(said.contains("body size matches: True"), "{said}");
    assert!(said.contains("defects: []"), "{said}");
    assert!(said.contains("x-ticket-number: 1"), "{said}");
    assert!(said.contains("select Support: OK [b'3']"), "{said}");
    assert!(said.contains("append sent: OK [b'[APPENDUID"), "{said}");
    assert!(said.contains("sent back: True"), "{said}");
    assert!(said.contains("idle: + idling"), "{said}");
    assert!(said.contains("close: OK"), "{said}");

    let one = gateway.ticket(1);
    assert_eq!(one["priority"], "high", "{one}");
    assert_eq!(one["tags"], serde_json::json!(["vip"]), "{one}");
    let by_anna = one["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["actor"] == "anna")
        .count();
    assert!(by_anna >= 2, "{one}");
    let three = gateway.ticket(3);
    assert_eq!(three["status"], "waiting", "{three}");
}
