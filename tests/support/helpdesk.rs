//! The helpdesks the mailbox tests share (gateways with queues, agents and customers'
//! tickets) and the Python clients the tests drive against them: imaplib and raw IMAP
//! connections, poplib.
use std::process::Command;
use std::time::Duration;

use super::gateway::{Gateway, Options};
use super::submit;

/// A gateway with `queues` (address `<name>@shop.test`, lower case) and `agents` (login
/// and their queues; address `<login>@shop.test`, password `<login>-secret`), not started
/// yet so a test can add what must exist before.
pub fn gateway(queues: &[&str], agents: &[(&str, &[&str])]) -> Gateway {
    let gateway = Gateway::new(Options::default());
    for queue in queues {
        let address = format!("{}@shop.test", queue.to_lowercase());
        gateway.add_queue(queue, &address, None, None, &[]);
    }
    for (login, queues) in agents {
        let (address, password) = (format!("{login}@shop.test"), format!("{login}-secret"));
        gateway.add_agent(login, &address, &password, queues);
    }
    gateway
}

/// Customers' mails over inbound SMTP, each (from, to, subject, body): committed (a new
/// ticket or a follow-up) when this returns.
pub fn customer_mails(gateway: &Gateway, mails: &[(&str, &str, &str, &str)]) {
    for (from, to, subject, body) in mails {
        gateway.customer_mail(from, to, subject, body);
    }
}

/// Tickets #1 to #3 in Support: erika's parcel (`parcel` is her text), max's invoice and
/// erika's question.
fn three_support_mails(gateway: &Gateway, parcel: &str) {
    let (erika, max, to) = (
        "erika@kunde.example",
        "max@kunde.example",
        "support@shop.test",
    );
    customer_mails(
        gateway,
        &[
            (erika, to, "Wo bleibt mein Paket?", parcel),
            (max, to, "Rechnung falsch", "Bitte korrigieren."),
            (erika, to, "Noch eine Frage", "Zur Lieferung."),
        ],
    );
}

/// Three tickets in Support: #1 assigned to anna (her INBOX), #2 and #3 unassigned.
pub fn three_tickets() -> Gateway {
    let support = &["Support"][..];
    let mut gateway = gateway(
        &["Support", "Sales"],
        &[("anna", support), ("ben", support)],
    );
    gateway.cli_ok(&["tag", "add", "vip"]);
    gateway.start();
    three_support_mails(&gateway, "Bestellt am Montag.");
    gateway.cli_ok(&["ticket", "assign", "1", "anna"]);
    gateway.wait_until_listed();
    gateway
}

/// Three tickets in Support: #1 assigned to anna and watched by ben, #2 assigned to anna,
/// #3 assigned to ben. anna's INBOX holds #1 and #2, ben's #1 and #3 (#1 last: it changed
/// last, so its message has the highest UID).
pub fn watched_maildrops() -> Gateway {
    let support = &["Support"][..];
    let mut gateway = gateway(&["Support"], &[("anna", support), ("ben", support)]);
    gateway.start();
    three_support_mails(
        &gateway,
        "Bestellt am Montag.\n.Eine Zeile mit Punkt vorne.\n",
    );
    gateway.cli_ok(&["ticket", "assign", "1", "anna"]);
    gateway.cli_ok(&["ticket", "assign", "2", "anna"]);
    gateway.cli_ok(&["ticket", "assign", "3", "ben"]);
    // ben watches #1: an internal comment with #watch.
    let ben = submit::Agent {
        gateway: &gateway,
        login: "ben",
        password: "ben-secret",
        tls: submit::Security::StartTls,
    };
    let comment = "comment@gateway.example.test";
    let answer = ben.send(
        "ben@shop.test",
        &[comment],
        &submit::Draft {
            from: "ben@shop.test",
            to: &[comment],
            cc: &[],
            subject: "[Support #1] Paket",
            in_reply_to: None,
            body: "#watch\nIch schaue mit.\n",
        }
        .raw(),
    );
    assert!(answer.accepted(), "{answer:?}\n{}", gateway.log());
    assert_eq!(gateway.ticket(1)["watchers"], serde_json::json!(["ben"]));
    // Changed tickets get their message UIDs in the background.
    gateway.wait_for("both INBOXes listed", Duration::from_secs(15), || {
        (pop3_view(&gateway, "anna") == [1, 2] && pop3_view(&gateway, "ben") == [1, 3])
            .then_some(())
    });
    gateway
}

/// Queues Support and Sales; anna works in Support, ben only in Sales. Customers K1
/// (erika) and K2 (max); tickets #1 (erika, assigned to anna), #2 (max), #3 (erika) and
/// #4 (otto, no customer) in Support, #5 in Sales.
pub fn two_queues_with_customers() -> Gateway {
    let mut gateway = gateway(
        &["Support", "Sales"],
        &[("anna", &["Support"]), ("ben", &["Sales"])],
    );
    for (number, last_name, email) in [
        ("K1", "Mustermann", "erika@kunde.example"),
        ("K2", "Muster", "max@kunde.example"),
    ] {
        gateway.cli_ok(&[
            "customer",
            "add",
            "--number",
            number,
            "--last-name",
            last_name,
            "--emails",
            email,
        ]);
    }
    gateway.start();
    let support = "support@shop.test";
    customer_mails(
        &gateway,
        &[
            (
                "erika@kunde.example",
                support,
                "Wo bleibt mein Paket?",
                "Bestellt am Montag, Lieferung fehlt.",
            ),
            (
                "max@kunde.example",
                support,
                "Rechnung falsch",
                "Bitte korrigieren.",
            ),
            (
                "erika@kunde.example",
                support,
                "Noch eine Frage zur Rechnung",
                "Zur Lieferung vom Dienstag.",
            ),
            (
                "otto@anders.example",
                support,
                "Paket beschaedigt",
                "Karton nass angekommen.",
            ),
            (
                "lisa@firma.example",
                "sales@shop.test",
                "Angebot erbeten",
                "Bitte ein Angebot fuer 10 Stueck.",
            ),
        ],
    );
    gateway.cli_ok(&["ticket", "assign", "1", "anna"]);
    gateway.wait_until_listed();
    gateway
}

/// What every script starts with: the modules, the gateway's ports and certificate from
/// the environment, and a TLS context trusting the certificate.
const PRELUDE: &str = r#"
import email, email.policy, imaplib, os, poplib, re, smtplib, socket, ssl, sys, time
port, tls_port = int(os.environ["IMAP_PORT"]), int(os.environ["IMAPS_PORT"])
pop3_port, pop3s_port = int(os.environ["POP3_PORT"]), int(os.environ["POP3S_PORT"])
imaps_port, inbound, cafile = tls_port, int(os.environ["INBOUND_PORT"]), os.environ["CAFILE"]
ctx = ssl.create_default_context(cafile=cafile)
"#;

/// Runs a Python script (after [`PRELUDE`]) against the gateway with `env` added; returns
/// what it printed, or fails with the script's errors and the gateway's log.
fn python(gateway: &Gateway, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("python3")
        .args(["-u", "-c", &format!("{PRELUDE}{script}")])
        .env("IMAP_PORT", gateway.imap_port.to_string())
        .env("IMAPS_PORT", gateway.imaps_port.to_string())
        .env("POP3_PORT", gateway.pop3_port.to_string())
        .env("POP3S_PORT", gateway.pop3s_port.to_string())
        .env("INBOUND_PORT", gateway.inbound_port.to_string())
        .env("CAFILE", gateway.cert_path())
        .envs(env.iter().copied())
        .output()
        .expect("python3 not found: apt-get install python3 (scripts/test needs it)");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python: {said}{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gateway.log()
    );
    said
}

/// What IMAP scripts add to the prelude: a TLS context that does not check the
/// certificate's host name, `imap(login)` (an imaplib session logged in), and `Conn`, a raw
/// IMAP connection (bytes in, lines out).
const IMAP: &str = r#"
ctx.check_hostname = False

def imap(login="anna"):
    m = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=ctx)
    m.login(login, os.environ["PASSWORD_" + login.upper()])
    return m

class Conn:
    def __init__(self, login=None, timeout=30):
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=timeout)
        self.s = ctx.wrap_socket(raw)
        self.buf = b""
        self.n = 0
        self.greeting = self.line()
        if login:
            r = self.cmd("LOGIN %s %s" % (login, os.environ["PASSWORD_" + login.upper()]))
            assert r[-1].split()[1] == b"OK", r

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                d = self.s.recv(65536)
            except OSError:
                d = b""
            if not d:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l + b"\r\n"

    def until(self, tag):
        """Lines up to the tagged answer for `tag`, or up to the end of the connection
        (then the last element is b"<EOF>")."""
        lines = []
        while True:
            l = self.line()
            if not l:
                lines.append(b"<EOF>")
                return lines
            lines.append(l)
            if l.startswith(tag.encode() + b" "):
                return lines

    def tag(self):
        self.n += 1
        return "t%d" % self.n

    def cmd(self, text):
        t = self.tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(t.encode() + b" " + text + b"\r\n")
        return self.until(t)

def status(lines):
    """OK, NO or BAD of the tagged answer (EOF when the connection ended)."""
    if lines[-1] == b"<EOF>":
        return "EOF"
    return lines[-1].split()[1].decode()
"#;

/// Runs an IMAP script (after [`IMAP`]); anna's and ben's passwords are in the environment
/// (`PASSWORD_ANNA`, `PASSWORD_BEN`; anna's also as `AGENT_PASSWORD`). Returns what it
/// printed.
pub fn imaplib(gateway: &Gateway, script: &str) -> String {
    python(
        gateway,
        &format!("{IMAP}\n{script}"),
        &[
            ("AGENT_PASSWORD", "anna-secret"),
            ("PASSWORD_ANNA", "anna-secret"),
            ("PASSWORD_BEN", "ben-secret"),
        ],
    )
}

/// What POP3 scripts add to the prelude: the agent's login and password from the
/// environment, and small helpers.
const POP3: &str = r#"
user, password = os.environ["POP_USER"], os.environ["POP_PASSWORD"]

def plain():
    return poplib.POP3("127.0.0.1", pop3_port, timeout=20)

def stls():
    m = plain()
    m.stls(context=ctx)
    m.user(user)
    m.pass_(password)
    return m

def pop3s():
    m = poplib.POP3_SSL("127.0.0.1", pop3s_port, context=ctx, timeout=20)
    m.user(user)
    m.pass_(password)
    return m

def parse(lines):
    return email.message_from_bytes(b"\r\n".join(lines) + b"\r\n", policy=email.policy.default)

def view(m):
    """Ticket number -> (message number, UIDL), read with TOP n 0."""
    out = {}
    for line in m.uidl()[1]:
        n, uidl = line.decode().split()
        head = parse(m.top(int(n), 0)[1])
        out[int(head["X-Ticket-Number"])] = (int(n), uidl)
    return out

def imap_inbox():
    i = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=ctx)
    i.login(user, password)
    typ, data = i.select("INBOX", readonly=True)
    i.logout()
    return int(data[0])
"#;

/// Runs a poplib script (after [`POP3`]) as `login` (password `<login>-secret`); returns
/// what it printed.
pub fn poplib(gateway: &Gateway, login: &str, script: &str) -> String {
    let password = format!("{login}-secret");
    python(
        gateway,
        &format!("{POP3}\n{script}"),
        &[("POP_USER", login), ("POP_PASSWORD", &password)],
    )
}

/// The ticket numbers in `login`'s POP3 view, sorted.
pub fn pop3_view(gateway: &Gateway, login: &str) -> Vec<i64> {
    let said = poplib(
        gateway,
        login,
        r#"
m = pop3s()
v = view(m)
m.quit()
print(" ".join(str(t) for t in sorted(v)))
"#,
    );
    said.split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}
