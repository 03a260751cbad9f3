//! The agents' IMAP server against a real client: Python's imaplib over STARTTLS (port
//! `imap`) and implicit TLS (port `imaps`).
#[path = "support/mod.rs"]
mod support;

use support::gateway::Gateway;
use support::helpdesk::{self, imaplib};

fn setup() -> Gateway {
    let mut gateway = helpdesk::gateway(&["Support"], &[("anna", &["Support"])]);
    gateway.start();
    gateway
}

#[test]
fn imaplib_logs_in_over_starttls_and_implicit_tls_and_not_in_the_clear() {
    let gateway = setup();
    let said = imaplib(
        &gateway,
        r#"
password = os.environ["AGENT_PASSWORD"]

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

/// The session Thunderbird opens on an account: capabilities, ID, namespace, the folder
/// list, INBOX with the header fields of every message, one message whole, a keyword and
/// a move that change the ticket, APPEND to Sent and Drafts, IDLE, EXPUNGE, CLOSE.
#[test]
fn thunderbirds_sequence_gets_correct_answers() {
    let gateway = helpdesk::three_tickets();
    let said = imaplib(
        &gateway,
        r#"
m = imap("anna")
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

/// A client in IDLE hears of a new ticket, and of a changed one as the old message
/// expunged and the new one (a new UID) announced, without a command of its own.
#[test]
fn idle_announces_new_and_changed_tickets() {
    let gateway = helpdesk::three_tickets();
    let said = imaplib(
        &gateway,
        r#"
m = imap("anna")
typ, data = m.select("Queues/Support")
print("exists before:", data)
typ, data = m.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "1")
old_uid = int(data[0])
print("ticket 1 uid:", old_uid)

def idle_until(pred, send):
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    send()
    seen = []
    # Only so that a missing announcement fails the test instead of hanging it.
    m.sock.settimeout(60)
    while not pred(seen):
        seen.append(m.readline().decode().strip())
    m.send(b"DONE\r\n")
    while not m.readline().decode().startswith(tag):
        pass
    return seen

def mail(sender, subject):
    s = smtplib.SMTP("127.0.0.1", inbound)
    s.sendmail(sender, ["support@shop.test"],
               f"From: {sender}\r\nTo: support@shop.test\r\nSubject: {subject}\r\n\r\nHallo\r\n")
    s.quit()

seen = idle_until(lambda s: any(l.endswith("EXISTS") for l in s), lambda: mail("neu@kunde.example", "Ganz neu"))
print("new ticket announced:", seen)
seen = idle_until(lambda s: any("EXPUNGE" in l for l in s) and any(l.endswith("EXISTS") for l in s),
                  lambda: mail("erika@kunde.example", "Re: [Support #1] Wo bleibt mein Paket?"))
print("changed ticket announced:", seen)
typ, data = m.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "1")
print("ticket 1 now:", int(data[0]), "was", old_uid)
m.logout()
"#,
    );
    println!("{said}");
    assert!(said.contains("new ticket announced: "), "{said}");
    assert!(said.contains("changed ticket announced: "), "{said}");
    let line = said
        .lines()
        .find_map(|l| l.strip_prefix("ticket 1 now:"))
        .unwrap();
    let nums: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        nums[0] > nums[1],
        "a changed ticket gets a higher UID: {said}"
    );
}

/// UIDVALIDITY and every UID stay across a restart; what comes after gets higher UIDs.
#[test]
fn uids_survive_a_restart_and_are_never_reused() {
    let mut gateway = helpdesk::three_tickets();
    let script = r#"
m = imap("anna")
for folder in ["Queues/Support", "INBOX"]:
    m.select(folder)
    print(folder, "validity", m.untagged_responses["UIDVALIDITY"][0].decode(), "uids", m.uid("SEARCH", None, "ALL")[1][0].decode())
m.logout()
"#;
    let before = imaplib(&gateway, script);
    gateway.stop();
    gateway.start();
    let after = imaplib(&gateway, script);
    assert_eq!(before, after, "before:\n{before}\nafter:\n{after}");
    let highest: u32 = before
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .filter(|&n: &u32| n < 1_000_000)
        .max()
        .unwrap();
    gateway.cli_ok(&["ticket", "status", "2", "open"]);
    gateway.wait_until_listed();
    let changed = imaplib(&gateway, script);
    let support = changed.lines().next().unwrap();
    let uids: Vec<u32> = support
        .split("uids")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(uids.len(), 3, "{changed}");
    assert!(uids.iter().any(|&u| u > highest), "{changed} vs {before}");
    assert!(
        !uids
            .iter()
            .any(|u| before.contains(&format!(" {u} ")) && *u > highest),
        "{changed}"
    );
}

/// A reply from the mail client to a ticket's message (In-Reply-To its Message-ID) finds
/// the ticket and the version the agent saw: it is stored as that ticket's reply, and a
/// reply to an outdated version is held back as a collision.
#[test]
fn a_reply_to_a_ticket_message_finds_its_ticket_and_version() {
    let gateway = helpdesk::three_tickets();
    let said = imaplib(
        &gateway,
        r#"
m = imap("anna")
m.select("INBOX")
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT FROM)])")
head = email.message_from_bytes(data[0][1], policy=email.policy.default)
print("message-id:", head["Message-ID"])
print("subject:", head["Subject"])
print("from:", head["From"].addresses[0].addr_spec)
m.logout()
"#,
    );
    let field = |name: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (message_id, subject, from) = (field("message-id:"), field("subject:"), field("from:"));
    assert!(message_id.starts_with("<mt.1.v"), "{said}");
    let agent = support::submit::Agent {
        gateway: &gateway,
        login: "anna",
        password: "anna-secret",
        tls: support::submit::Security::StartTls,
    };
    let reply = |body: &str| {
        format!(
            "From: anna@shop.test\r\nTo: {from}\r\nSubject: Re: {subject}\r\n\
             In-Reply-To: {message_id}\r\nMessage-ID: <{}@client.test>\r\n\r\n{body}\r\n",
            rand::random::<u64>()
        )
    };
    let answer = agent.send(
        "anna@shop.test",
        &[&from],
        reply("Ist unterwegs.").as_bytes(),
    );
    assert!(answer.accepted(), "{answer:?}\n{}", gateway.log());
    let one = gateway.ticket(1);
    let items = one["items"].as_array().unwrap();
    assert_eq!(items.last().unwrap()["kind"], "reply", "{one}");
    assert!(
        items.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("Ist unterwegs.")
    );
    // Ben answers the same message: the ticket moved on (anna's reply came after the
    // version it shows), so his answer collides and names anna.
    let ben = support::submit::Agent {
        gateway: &gateway,
        login: "ben",
        password: "ben-secret",
        tls: support::submit::Security::StartTls,
    };
    let again = ben.send(
        "ben@shop.test",
        &[&from],
        reply("Nochmal.")
            .replace("anna@shop.test", "ben@shop.test")
            .as_bytes(),
    );
    assert!(!again.accepted(), "{again:?}");
    assert!(again.text.contains("anna"), "{again:?}");
}

/// A keyword, `\Flagged` and a move by one agent change the ticket for everybody: another
/// agent's session sees the new message with the ticket's new flags.
#[test]
fn an_agents_flag_change_shows_in_every_other_view() {
    let gateway = helpdesk::three_tickets();
    let said = imaplib(
        &gateway,
        r#"
anna = imap("anna")
ben = imap("ben")
anna.select("Queues/Support")
ben.select("Queues/Support")
uid = anna.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "2")[1][0].decode()
print("store:", anna.uid("STORE", uid, "+FLAGS", r"(vip \Flagged)"))
# ben's NOOP brings his folder up to date once the changed ticket has its new message.
deadline = time.monotonic() + 30
while True:
    ben.noop()
    if ben.uid("SEARCH", None, "FLAGGED")[1][0]:
        break
    assert time.monotonic() < deadline, "ben never sees ticket 2 flagged"
    time.sleep(0.1)
uid2 = ben.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "2")[1][0].decode()
print("ben sees:", ben.uid("FETCH", uid2, "(FLAGS)")[1])
print("ben flagged:", ben.uid("SEARCH", None, "FLAGGED")[1], "keyword:", ben.uid("SEARCH", None, "KEYWORD", "vip")[1])
print("ben tags folder:", ben.select("Tags/vip"))
ben.select("Queues/Support")
uid2 = ben.uid("SEARCH", None, "HEADER", "X-Ticket-Number", "2")[1][0].decode()
print("ben moves:", ben.uid("MOVE", uid2, "Trash"))
anna.logout()
ben.logout()
"#,
    );
    println!("{said}");
    assert!(said.contains("\\Flagged"), "{said}");
    assert!(said.contains("ben tags folder: ('OK', [b'1'])"), "{said}");
    let two = gateway.ticket(2);
    assert_eq!(two["priority"], "high", "{two}");
    assert_eq!(two["tags"], serde_json::json!(["vip"]), "{two}");
    assert_eq!(two["status"], "closed", "{two}");
    let actors: Vec<(&str, &str)> = two["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["actor"].as_str().unwrap(), h["field"].as_str().unwrap()))
        .collect();
    assert!(actors.contains(&("anna", "priority")), "{actors:?}");
    assert!(actors.contains(&("anna", "tag")), "{actors:?}");
    assert!(actors.contains(&("ben", "status")), "{actors:?}");
}

/// The Statistics folder holds one message with tables and a PNG chart; new numbers
/// replace it (a new UID), the same numbers keep it.
#[test]
fn the_statistics_message_is_kept_current() {
    let gateway = helpdesk::three_tickets();
    let script = r#"
m = imap("anna")
print("select:", m.select("Statistics", readonly=True))
typ, data = m.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])")
raw = data[0][1]
msg = email.message_from_bytes(raw, policy=email.policy.default)
print("uid:", data[0][0].split()[2].decode())
print("size ok:", f"RFC822.SIZE {len(raw)}" in data[0][0].decode())
print("defects:", [d for p in msg.walk() for d in p.defects])
for p in msg.walk():
    if p.get_content_type() == "image/png":
        print("png:", p.get_content()[:8] == b"\x89PNG\r\n\x1a\n")
    if p.get_content_type() == "text/plain":
        print("text:", "Support" in p.get_content() and "3" in p.get_content())
m.logout()
"#;
    let first = imaplib(&gateway, script);
    println!("{first}");
    assert!(first.contains("png: True"), "{first}");
    assert!(first.contains("text: True"), "{first}");
    assert!(first.contains("size ok: True"), "{first}");
    assert!(first.contains("defects: []"), "{first}");
    let again = imaplib(&gateway, script);
    let uid = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("uid:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(uid(&first), uid(&again));
    gateway.customer_mail(
        "neu@kunde.example",
        "support@shop.test",
        "Noch ein Ticket",
        "Hallo",
    );
    let changed = imaplib(&gateway, script);
    assert_ne!(uid(&first), uid(&changed), "{changed}");
}

/// An agent's mailbox sessions are limited (20): the next login is refused with [LIMIT],
/// another agent still gets in, and a closed session frees its place.
#[test]
fn an_agent_has_a_limited_number_of_sessions() {
    let gateway = helpdesk::three_tickets();
    let said = imaplib(
        &gateway,
        r#"
def connect(login, password):
    m = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=ctx)
    try:
        m.login(login, password)
        return m, "OK"
    except imaplib.IMAP4.error as e:
        return m, str(e)
open_ = [connect("anna", os.environ["AGENT_PASSWORD"])[0] for _ in range(20)]
m, result = connect("anna", os.environ["AGENT_PASSWORD"])
print("21st:", result)
b, result = connect("ben", "ben-secret")
print("ben:", result)
open_[0].logout()
m, result = connect("anna", os.environ["AGENT_PASSWORD"])
print("after one closed:", result)
"#,
    );
    assert!(said.contains("21st: b'[LIMIT]"), "{said}");
    assert!(said.contains("ben: OK"), "{said}");
    assert!(said.contains("after one closed: OK"), "{said}");
}
