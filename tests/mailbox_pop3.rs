//! The agents' POP3 server against real clients over real sockets: Python's poplib over
//! STLS (port `pop3`) and implicit TLS (port `pop3s`), fetchmail and curl. The maildrop is
//! the agent's INBOX; DELE hides a ticket from that agent's POP3 view only.
#[path = "support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::gateway::Gateway;
use support::helpdesk::{self, pop3_view, poplib};

#[test]
fn poplib_reads_the_inbox_over_stls_and_pop3s_with_stable_uidls() {
    let gateway = helpdesk::watched_maildrops();
    let said = poplib(
        &gateway,
        "anna",
        r#"
m = plain()
print("plain capa:", sorted(m.capa()))
m.stls(context=ctx)
print("tls capa:", sorted(m.capa()))
print("login:", m.user(user).decode(), "/", m.pass_(password).decode())
print("capa after login:", sorted(m.capa()))
count, size = m.stat()
print("stat:", count, size)
listed = {}
for line in m.list()[1]:
    n, octets = line.decode().split()
    listed[int(n)] = int(octets)
print("list total matches stat:", sum(listed.values()) == size, len(listed) == count)
first = {}
for line in m.uidl()[1]:
    n, uidl = line.decode().split()
    first[int(n)] = uidl
print("uidl single:", m.uidl(1).decode())
for n in sorted(listed):
    resp, lines, octets = m.retr(n)
    msg = parse(lines)
    defects = list(msg.defects) + [d for p in msg.walk() for d in p.defects]
    print(f"retr {n}: {resp.decode()} octets match list: {octets == listed[n]} defects: {defects} ticket: {msg['X-Ticket-Number']}")
    if "Paket" in str(msg["Subject"]):
        text = msg.get_body(("plain",)).get_content()
        print("dot line kept:", ".Eine Zeile mit Punkt vorne." in text)
    resp, top, octets = m.top(n, 0)
    head = parse(top)
    print(f"top {n} 0: header only: {b'' not in top[:-1] and top[-1] == b''} ticket: {head['X-Ticket-Number']}")
    resp, top3, _ = m.top(n, 3)
    print(f"top {n} 3: body lines: {len(top3) - top3.index(b'') - 1}")
print("quit:", m.quit().decode())

s = pop3s()
second = {}
for line in s.uidl()[1]:
    n, uidl = line.decode().split()
    second[int(n)] = uidl
print("stat pop3s:", s.stat())
print("uidl stable:", first == second, first)
print("quit:", s.quit().decode())
"#,
    );
    println!("{said}");
    assert!(
        said.contains("plain capa:") && said.contains("'STLS'"),
        "{said}"
    );
    let plain_caps = said.lines().find(|l| l.starts_with("plain capa:")).unwrap();
    assert!(
        !plain_caps.contains("'USER'") && !plain_caps.contains("'SASL'"),
        "no login offered in the clear: {plain_caps}"
    );
    let tls_caps = said.lines().find(|l| l.starts_with("tls capa:")).unwrap();
    for cap in [
        "'USER'",
        "'SASL'",
        "'UIDL'",
        "'TOP'",
        "'RESP-CODES'",
        "'PIPELINING'",
    ] {
        assert!(tls_caps.contains(cap), "{cap}: {tls_caps}");
    }
    assert!(!tls_caps.contains("'STLS'"), "{tls_caps}");
    assert!(
        said.contains("login: +OK send PASS / +OK anna has 2 messages"),
        "{said}"
    );
    assert!(said.contains("stat: 2 "), "{said}");
    assert!(
        said.contains("list total matches stat: True True"),
        "{said}"
    );
    assert!(said.contains("uidl single: +OK 1 t"), "{said}");
    let mut tickets = Vec::new();
    for n in [1, 2] {
        let line = said
            .lines()
            .find(|l| l.starts_with(&format!("retr {n}: +OK ")))
            .unwrap_or_else(|| panic!("no RETR {n}: {said}"));
        assert!(line.contains("octets match list: True"), "{line}");
        assert!(line.contains("defects: []"), "{line}");
        let ticket = line.rsplit("ticket: ").next().unwrap().to_string();
        assert!(
            said.contains(&format!("top {n} 0: header only: True ticket: {ticket}")),
            "{said}"
        );
        assert!(
            said.contains(&format!("top {n} 3: body lines: 3")),
            "{said}"
        );
        tickets.push(ticket);
    }
    // UID order: #1 changed last (ben's comment), so it is the second message.
    assert_eq!(tickets, ["2", "1"], "{said}");
    assert!(said.contains("dot line kept: True"), "{said}");
    assert!(said.contains("stat pop3s: (2, "), "{said}");
    assert!(said.contains("uidl stable: True"), "{said}");
    assert_eq!(said.matches("quit: +OK").count(), 2, "{said}");
    assert!(
        !gateway.log().contains("anna-secret"),
        "password in the log"
    );
}

#[test]
fn dele_hides_the_ticket_from_that_agent_only_and_only_at_quit() {
    let gateway = helpdesk::watched_maildrops();
    let before = gateway.ticket(1);
    let said = poplib(
        &gateway,
        "anna",
        r#"
m = stls()
v = view(m)
n = v[1][0]
print("dele:", m.dele(n).decode())
print("stat after dele:", m.stat())
print("rset:", m.rset().decode())
print("quit:", m.quit().decode())

m = pop3s()
print("after rset:", sorted(view(m)))
m.dele(view(m)[1][0])
m.sock.close()  # dropped without QUIT

m = pop3s()
v = view(m)
print("after drop:", sorted(v))
m.dele(v[1][0])
print("retr deleted:", end=" ")
try:
    m.retr(v[1][0])
except poplib.error_proto as e:
    print(e)
print("quit:", m.quit().decode())

m = stls()
print("next session:", sorted(view(m)), m.stat()[0])
m.quit()
print("imap inbox:", imap_inbox())
"#,
    );
    println!("{said}");
    assert!(said.contains("dele: +OK message 2 deleted"), "{said}");
    assert!(said.contains("stat after dele: (1, "), "{said}");
    assert!(said.contains("rset: +OK maildrop has 2 messages"), "{said}");
    assert!(said.contains("after rset: [1, 2]"), "{said}");
    assert!(said.contains("after drop: [1, 2]"), "{said}");
    assert!(
        said.contains("retr deleted: b'-ERR message 2 is already deleted'"),
        "{said}"
    );
    assert!(said.contains("(1 messages deleted)"), "{said}");
    assert!(said.contains("next session: [2] 1"), "{said}");
    assert!(
        said.contains("imap inbox: 2"),
        "anna's IMAP INBOX keeps the ticket: {said}"
    );

    assert_eq!(pop3_view(&gateway, "anna"), [2]);
    assert_eq!(pop3_view(&gateway, "ben"), [1, 3], "ben still sees #1");
    let said = poplib(&gateway, "ben", r#"print("imap inbox:", imap_inbox())"#);
    assert!(said.contains("imap inbox: 2"), "{said}");
    let after = gateway.ticket(1);
    assert_eq!(before, after, "DELE changes nothing of the ticket");
    assert_eq!(after["status"], "new", "{after}");
    assert_eq!(after["assignee"], "anna", "{after}");
    // The customer writes again: the ticket's new message is news for anna's POP3 too.
    gateway.customer_mail(
        "erika@kunde.example",
        "support@shop.test",
        "Re: [Support #1] Wo bleibt mein Paket?",
        "Immer noch nichts da.\n",
    );
    gateway.wait_for(
        "the follow-up in anna's POP3 view",
        Duration::from_secs(10),
        || (pop3_view(&gateway, "anna") == [1, 2]).then_some(()),
    );
}

#[test]
fn login_needs_tls_and_a_wrong_password_is_an_auth_error() {
    let gateway = helpdesk::watched_maildrops();
    let said = poplib(
        &gateway,
        "anna",
        r#"
import base64
m = plain()
for attempt, call in [
    ("user", lambda: m.user(user)),
    ("auth", lambda: m._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode())),
]:
    try:
        print(f"plain {attempt}: accepted", call())
    except poplib.error_proto as e:
        print(f"plain {attempt}: refused", e)
try:
    m.stat()
    print("plain stat: answered")
except poplib.error_proto as e:
    print("plain stat: refused", e)
m.stls(context=ctx)
m.user(user)
try:
    m.pass_("wrong")
    print("wrong password: accepted")
except poplib.error_proto as e:
    print("wrong password: refused", e)
m.user(user)
print("right password:", m.pass_(password).decode())
m.quit()

s = poplib.POP3_SSL("127.0.0.1", pop3s_port, context=ctx)
s.user(user)
try:
    s.pass_("wrong")
    print("pop3s wrong password: accepted")
except poplib.error_proto as e:
    print("pop3s wrong password: refused", e)
s.quit()
"#,
    );
    println!("{said}");
    assert!(
        said.contains("plain user: refused b'-ERR [AUTH] login needs TLS"),
        "{said}"
    );
    assert!(
        said.contains("plain auth: refused b'-ERR [AUTH] login needs TLS"),
        "{said}"
    );
    assert!(
        said.contains("plain stat: refused b'-ERR log in first'"),
        "{said}"
    );
    assert!(
        said.contains("wrong password: refused b'-ERR [AUTH] wrong login or password'"),
        "{said}"
    );
    assert!(
        said.contains("right password: +OK anna has 2 messages"),
        "{said}"
    );
    assert!(
        said.contains("pop3s wrong password: refused b'-ERR [AUTH]"),
        "{said}"
    );
    assert!(
        !gateway.log().contains("anna-secret"),
        "password in the log"
    );
}

/// Writes `text` to `path`, readable by its owner only (fetchmail and curl want their
/// secrets so).
fn secret_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs fetchmail on anna's maildrop over POP3S, appending every message to `mbox`.
fn fetchmail(gateway: &Gateway, dir: &Path, mbox: &Path, keep: bool) -> Output {
    let rc = dir.join("fetchmailrc");
    secret_file(
        &rc,
        &format!(
            "set no syslog\nset no bouncemail\n\
             poll 127.0.0.1 service {port} protocol pop3 uidl timeout 30\n\
             \tuser \"anna\" there with password \"anna-secret\"\n\
             \tssl sslcertck sslcertfile \"{cert}\" sslcommonname localhost\n\
             \tmda \"cat >> {mbox}\"\n\
             \t{keep}\n",
            port = gateway.pop3s_port,
            cert = gateway.cert_path().display(),
            mbox = mbox.display(),
            keep = if keep {
                "keep no fetchall"
            } else {
                "no keep fetchall"
            },
        ),
    );
    Command::new("fetchmail")
        .args(["--verbose", "--nodetach", "--fetchmailrc"])
        .arg(&rc)
        // Its own lock file: as root fetchmail would share /var/run/fetchmail.pid with any
        // other fetchmail on the machine and refuse to run beside it.
        .arg("--pidfile")
        .arg(dir.join("fetchmail.pid"))
        // .fetchids (the UIDLs seen) live here.
        .env("FETCHMAILHOME", dir)
        .env("HOME", dir)
        .output()
        .expect("fetchmail not found: apt-get install fetchmail (scripts/test does this)")
}

fn tickets_in(mbox: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(mbox).unwrap_or_default();
    let mut numbers: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("X-Ticket-Number:"))
        .map(|n| n.trim().to_string())
        .collect();
    numbers.sort();
    numbers
}

#[test]
fn fetchmail_keeps_then_fetches_and_deletes_over_pop3s() {
    let gateway = helpdesk::watched_maildrops();
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("anna.mbox");
    let show = |out: &Output| {
        format!(
            "{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            gateway.log()
        )
    };

    // keep: both messages delivered, none deleted.
    let out = fetchmail(&gateway, dir.path(), &mbox, true);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(tickets_in(&mbox), ["1", "2"], "{}", show(&out));
    assert_eq!(pop3_view(&gateway, "anna"), [1, 2]);

    // keep again: the UIDLs are known, so nothing is new (exit code 1: no mail).
    let out = fetchmail(&gateway, dir.path(), &mbox, true);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(tickets_in(&mbox), ["1", "2"]);

    // no keep: fetched again and deleted from anna's POP3 view only.
    let out = fetchmail(&gateway, dir.path(), &mbox, false);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(tickets_in(&mbox), ["1", "1", "2", "2"], "{}", show(&out));
    assert!(pop3_view(&gateway, "anna").is_empty());
    assert_eq!(pop3_view(&gateway, "ben"), [1, 3]);
    let said = poplib(&gateway, "anna", r#"print("imap inbox:", imap_inbox())"#);
    assert!(said.contains("imap inbox: 2"), "{said}");

    let out = fetchmail(&gateway, dir.path(), &mbox, false);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

fn curl(gateway: &Gateway, netrc: &Path, url: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--netrc-file")
        .arg(netrc)
        .arg("--cacert")
        .arg(gateway.cert_path())
        .args(extra)
        .arg(url)
        .output()
        .expect("curl not found: apt-get install curl");
    assert!(
        out.status.success(),
        "curl {url}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gateway.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn curl_lists_and_retrieves_over_pop3s_and_stls() {
    let gateway = helpdesk::watched_maildrops();
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    secret_file(
        &netrc,
        "machine 127.0.0.1 login anna password anna-secret\n",
    );
    let base = format!("pop3s://127.0.0.1:{}/", gateway.pop3s_port);
    let listing = curl(&gateway, &netrc, &base, &[]);
    let sizes: Vec<(usize, usize)> = listing
        .lines()
        .map(|l| {
            let (n, size) = l.trim().split_once(' ').expect("number and size");
            (n.parse().unwrap(), size.parse().unwrap())
        })
        .collect();
    assert_eq!(sizes.len(), 2, "{listing}");
    let mut tickets = Vec::new();
    for (n, size) in &sizes {
        let raw = curl(&gateway, &netrc, &format!("{base}{n}"), &[]);
        assert_eq!(raw.len(), *size, "message {n} as listed");
        tickets.push(support::header(raw.as_bytes(), "X-Ticket-Number").expect("X-Ticket-Number"));
    }
    tickets.sort();
    assert_eq!(tickets, ["1", "2"]);
    let uidls = curl(&gateway, &netrc, &base, &["--request", "UIDL"]);
    assert_eq!(uidls.lines().count(), 2, "{uidls}");
    assert!(uidls.lines().all(|l| l.contains(" t")), "{uidls}");

    // The plain port with STLS required gives the same.
    let stls = format!("pop3://127.0.0.1:{}/", gateway.pop3_port);
    assert_eq!(curl(&gateway, &netrc, &stls, &["--ssl-reqd"]), listing);
    assert_eq!(
        curl(
            &gateway,
            &netrc,
            &stls,
            &["--ssl-reqd", "--request", "UIDL"]
        ),
        uidls
    );
}
