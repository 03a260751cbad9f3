//! The agents' IMAP server against clients other than Thunderbird and against bad input:
//! an Outlook-like imaplib session whose searches agree with `mticket search`, mutt in a
//! terminal (tmux), protocol garbage and resource abuse over real sockets, and an agent
//! without access to a queue.
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::gateway::Gateway;
use support::helpdesk::{self, imaplib};

/// The value printed after `name: ` on its own line.
fn printed<'a>(said: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    said.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{said}"))
}

/// A printed Python list of ticket numbers, as a set.
fn numbers(s: &str) -> BTreeSet<i64> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Ticket numbers `mticket search --FIELD VALUE` finds.
fn cli_search(gateway: &Gateway, field: &str, value: &str) -> BTreeSet<i64> {
    gateway
        .json(&["search", &format!("--{field}"), value])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect()
}

/// The session Outlook opens: LOGIN, LIST, EXAMINE (read-only), FETCH of flags and
/// structure, the message in 2 KiB pieces, then SEARCH on flags and on the seed's
/// direct-search fields; each search agrees with `mticket search` on the same field.
#[test]
fn outlook_sequence_reads_pieces_and_searches_like_the_cli() {
    let gateway = helpdesk::two_queues_with_customers();
    let said = imaplib(
        &gateway,
        r#"
m = imap("anna")
typ, folders = m.list('""', "*")
print("list:", typ, len(folders))
for f in folders:
    print("folder:", f.decode())

typ, data = m.select("INBOX", readonly=True)
print("examine INBOX:", typ, data, "READ-ONLY" in m.untagged_responses)
typ, data = m.store("1", "+FLAGS", r"(\Flagged)")
print("store in examine:", typ, data)
typ, data = m.fetch("1:*", "(UID FLAGS BODYSTRUCTURE)")
print("fetch structure:", typ, data)

def number(m, seq):
    typ, data = m.fetch(seq, "(BODY.PEEK[HEADER.FIELDS (X-TICKET-NUMBER)])")
    return int(re.search(rb"X-Ticket-Number:\s*(\d+)", data[0][1]).group(1))

def pieces(m, seq):
    got, start = b"", 0
    while True:
        typ, data = m.fetch(seq, "(BODY[]<%d.2048>)" % start)
        assert typ == "OK", (typ, data)
        part = data[0][1] if isinstance(data[0], tuple) else b""
        got += part
        if len(part) < 2048:
            return got
        start += 2048

def flags(m, seq):
    typ, data = m.fetch(seq, "(FLAGS)")
    return data[0].decode()

# EXAMINE: pieces of BODY[] do not set \Seen.
typ, data = m.select("Queues/Support", readonly=True)
print("examine Support:", typ, data)
whole = m.fetch("1", "(BODY.PEEK[])")[1][0][1]
got = pieces(m, "1")
print("examine pieces equal:", got == whole, len(got), len(whole))
print("examine seen after pieces:", "\\Seen" in flags(m, "1"))

typ, data = m.select("Queues/Support")
print("select Support:", typ, data)
print("select seen before:", "\\Seen" in flags(m, "1"))
got = pieces(m, "1")
print("select pieces equal:", got == whole, len(got) > 2048)
print("select seen after pieces:", "\\Seen" in flags(m, "1"))
seen_number = number(m, "1")
print("seen ticket:", seen_number)

def search_numbers(*criteria, uid=False):
    if uid:
        typ, data = m.uid("SEARCH", None, *criteria)
        ids = data[0].split()
        return sorted(number_by_uid(u.decode()) for u in ids), typ
    typ, data = m.search(None, *criteria)
    return sorted(number(m, s.decode()) for s in data[0].split()), typ

def number_by_uid(uid):
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (X-TICKET-NUMBER)])")
    return int(re.search(rb"X-Ticket-Number:\s*(\d+)", data[0][1]).group(1))

print("unseen:", search_numbers("UNSEEN")[0])
print("seen:", search_numbers("SEEN")[0])
print("all:", search_numbers("ALL")[0])
print("customer K1;K2:", search_numbers("HEADER", "X-Ticket-Customer", '"K1;K2"', uid=True)[0])
print("customer K2:", search_numbers("HEADER", "X-Ticket-Customer", "K2", uid=True)[0])
print("subject Rechnung:", search_numbers("SUBJECT", "Rechnung")[0])
print("from erika:", search_numbers("FROM", "erika@kunde.example")[0])
print("body Lieferung:", search_numbers("BODY", "Lieferung")[0])
print("body Karton:", search_numbers("BODY", "Karton")[0])
print("logout:", m.logout()[0])
"#,
    );
    println!("{said}");
    assert!(printed(&said, "list").starts_with("OK"), "{said}");
    assert!(
        said.contains("folder: (\\HasNoChildren) \"/\" INBOX"),
        "{said}"
    );
    assert!(!said.contains("Queues/Sales"), "{said}");
    assert!(
        printed(&said, "examine INBOX").starts_with("OK [b'1'] True"),
        "EXAMINE answers [READ-ONLY]: {said}"
    );
    assert!(
        !printed(&said, "store in examine").starts_with("OK"),
        "STORE after EXAMINE must be refused: {said}"
    );
    let structure = printed(&said, "fetch structure");
    assert!(structure.starts_with("OK"), "{said}");
    assert!(structure.contains("BODYSTRUCTURE ("), "{said}");
    assert!(structure.contains("UID "), "{said}");
    assert!(said.contains("examine pieces equal: True"), "{said}");
    assert!(said.contains("examine seen after pieces: False"), "{said}");
    assert!(
        printed(&said, "select Support").starts_with("OK [b'4']"),
        "{said}"
    );
    assert!(said.contains("select seen before: False"), "{said}");
    assert!(said.contains("select pieces equal: True True"), "{said}");
    assert!(said.contains("select seen after pieces: True"), "{said}");

    let all: BTreeSet<i64> = [1, 2, 3, 4].into();
    assert_eq!(numbers(printed(&said, "all")), all, "{said}");
    let seen: BTreeSet<i64> = [printed(&said, "seen ticket").parse().unwrap()].into();
    assert_eq!(numbers(printed(&said, "seen")), seen, "{said}");
    assert_eq!(
        numbers(printed(&said, "unseen")),
        all.difference(&seen).copied().collect(),
        "{said}"
    );
    for (imap, field, value) in [
        ("customer K1;K2", "customer", "K1;K2"),
        ("customer K2", "customer", "K2"),
        ("subject Rechnung", "subject", "Rechnung"),
        ("from erika", "email", "erika@kunde.example"),
        ("body Lieferung", "content", "Lieferung"),
        ("body Karton", "content", "Karton"),
    ] {
        let cli = cli_search(&gateway, field, value);
        assert!(
            !cli.is_empty(),
            "mticket search --{field} {value} found nothing"
        );
        assert_eq!(
            numbers(printed(&said, imap)),
            cli,
            "IMAP SEARCH {imap} and mticket search --{field} {value}: {said}"
        );
    }
    assert_eq!(cli_search(&gateway, "customer", "K1;K2"), [1, 2, 3].into());
    assert_eq!(
        cli_search(&gateway, "email", "erika@kunde.example"),
        [1, 3].into()
    );
    assert_eq!(printed(&said, "logout"), "BYE");
}

/// `tmux` and `mutt`, or a clear message naming the install step.
fn need(tool: &str, package: &str) {
    let found = Command::new(tool).arg("-V").output().is_ok();
    assert!(
        found,
        "{tool} not found: apt-get install {package} (scripts/test installs it via scripts/lib/peers.sh)"
    );
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// mutt (2.2) as an agent uses it: the gateway's INBOX over implicit TLS, password in a
/// 0600 muttrc, run in a detached tmux session; the index shows the three tickets.
#[test]
fn mutt_in_tmux_lists_the_tickets() {
    need("tmux", "tmux");
    need("mutt", "mutt");
    let gateway = helpdesk::two_queues_with_customers();
    for n in ["2", "3"] {
        gateway.cli_ok(&["ticket", "assign", n, "anna"]);
    }
    gateway.wait_until_listed();
    let home = gateway.path().join("mutt-home");
    std::fs::create_dir_all(&home).unwrap();
    let certs = home.join("certificates");
    std::fs::copy(gateway.cert_path(), &certs).unwrap();
    let muttrc = home.join("muttrc");
    let url = format!("imaps://anna@127.0.0.1:{}/", gateway.imaps_port);
    std::fs::write(
        &muttrc,
        format!(
            r#"set folder="{url}"
set spoolfile="{url}"
set imap_pass="anna-secret"
set certificate_file="{certs}"
set ssl_verify_host=no
set ssl_starttls=yes
set header_cache=""
set message_cachedir=""
set sort=date
set index_format="%4C %-20.20L %s"
set quit=yes
set move=no
set beep=no
set mail_check=60
set timeout=600
set imap_keepalive=300
"#,
            certs = certs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&muttrc, std::fs::Permissions::from_mode(0o600)).unwrap();

    let session = format!("mticket-mutt-{}", std::process::id());
    let command = format!(
        "HOME={home} TERM=xterm mutt -n -F {muttrc}",
        home = home.display(),
        muttrc = muttrc.display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "40",
            &command,
        ])
        .status()
        .expect("tmux");
    assert!(started.success(), "tmux new-session failed");
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .status();
        }
    }
    let _kill = Kill(session.clone());

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut screen;
    loop {
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        if screen.contains("(o)nce") {
            // A certificate mutt does not know: accept it for this session.
            tmux(&["send-keys", "-t", &session, "o"]);
        }
        if ["#1]", "#2]", "#3]"].iter().all(|t| screen.contains(t)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mutt did not show the tickets:\n{screen}\n--- gateway log ---\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("{screen}");
    for subject in [
        "[Support #1] Wo bleibt mein Paket?",
        "[Support #2] Rechnung falsch",
        "[Support #3] Noch eine Frage zur Rechnung",
    ] {
        assert!(
            screen.contains(subject),
            "{subject:?} not on screen:\n{screen}"
        );
    }
    assert!(!screen.contains("#4]"), "ticket 4 is not anna's:\n{screen}");

    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("tmux")
        .args(["has-session", "-t", &session])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            Instant::now() < deadline,
            "mutt did not quit:\n{}",
            tmux(&["capture-pane", "-p", "-t", &session])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = gateway.log();
    assert!(log.contains("agent logged in"), "{log}");
    assert!(!log.contains("anna-secret"), "password in the log");
}

/// Current resident memory of the gateway in KiB (VmRSS).
fn rss_kib(gateway: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.pid().unwrap()))
        .expect("gateway running");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Garbage, binary junk, unknown commands, invalid UTF-8 and deep nesting get BAD (or NO)
/// and the session goes on; the server stays up.
#[test]
fn protocol_garbage_gets_bad_and_the_session_goes_on() {
    let mut gateway = helpdesk::two_queues_with_customers();
    let said = imaplib(
        &gateway,
        r#"
def check(name, lines, want=("BAD",)):
    st = status(lines)
    print("%s: %s %r" % (name, st, lines[-1][:80]))
    assert st in want, (name, lines)

# Before login.
c = Conn()
c.send(b"\x00\x01\x02\xff\xfe garbage (((\r\n")
check("binary before login", c.cmd("NOOP"), ("OK",))
c.send(b"this is not imap at all\r\n")
lines = c.cmd("CAPABILITY")
print("bad before login:", any(b" BAD " in l for l in lines[:-1]))
check("capability after garbage", lines, ("OK",))
check("unknown before login", c.cmd("FROBNICATE x y"))
check("select before login", c.cmd("SELECT INBOX"))
r = c.cmd("LOGIN anna " + os.environ["PASSWORD_ANNA"])
check("login after garbage", r, ("OK",))

# After login.
c.send(bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
check("binary after login", c.cmd("NOOP"), ("OK",))
check("unknown after login", c.cmd("XYZZY"))
check("fetch without folder", c.cmd("FETCH 1 FLAGS"))
check("select bad utf-8 quoted", c.cmd(b'SELECT "Queues/\xff\xfe"'), ("BAD", "NO"))
t = c.tag()
c.send(t.encode() + b" SELECT {9}\r\n")
cont = c.line()
print("literal continuation:", cont[:2])
c.send(b"Queues/\xff\xfe\r\n")
check("select bad utf-8 literal", c.until(t), ("BAD", "NO"))
check("status bad utf-8", c.cmd(b'STATUS "Tags/\xc3\x28" (MESSAGES)'), ("BAD", "NO"))
check("list bad utf-8", c.cmd(b'LIST "" "\xff*"'), ("BAD", "OK", "NO"))
check("select Support", c.cmd("SELECT Queues/Support"), ("OK",))
check("search bad utf-8 quoted", c.cmd(b'SEARCH SUBJECT "\xff\xfe"'), ("BAD", "OK", "NO"))
t = c.tag()
c.send(t.encode() + b" SEARCH CHARSET UTF-8 SUBJECT {4}\r\n")
c.line()
c.send(b"\xff\xfe\xc3\x28\r\n")
check("search bad utf-8 literal", c.until(t), ("OK", "NO", "BAD"))
t = c.tag()
c.send(t.encode() + b" SEARCH BODY {4}\r\n")
c.line()
c.send(b"\xff\x00\xc3\x28\r\n")
check("search nul literal", c.until(t), ("OK", "NO", "BAD"))
t = c.tag()
c.send(t.encode() + b" SEARCH HEADER X-Ticket-Customer {3}\r\n")
c.line()
c.send(b"\xff\xfeK\r\n")
check("search customer bad utf-8", c.until(t), ("OK", "NO", "BAD"))
check("deep search", c.cmd("SEARCH " + "(" * 10000 + "ALL" + ")" * 10000), ("BAD", "NO"))
check("deep not", c.cmd("SEARCH " + "NOT " * 10000 + "ALL"), ("BAD", "NO", "OK"))
check("deep or", c.cmd("SEARCH " + "OR ALL " * 5000 + "ALL"), ("BAD", "NO", "OK"))
check("deep fetch", c.cmd("FETCH 1 " + "(" * 10000 + "FLAGS" + ")" * 10000))
check("deep fetch section", c.cmd("FETCH 1 BODY[HEADER.FIELDS " + "(" * 10000 + "FROM" + ")" * 10000 + "]"))
check("deep store", c.cmd("STORE 1 +FLAGS " + "(" * 10000 + ")" * 10000))
check("huge sequence", c.cmd("FETCH 1:4294967295,4294967295:1,*:* FLAGS"), ("OK", "BAD", "NO"))
check("zero sequence", c.cmd("FETCH 0 FLAGS"))
check("bare crlf", c.cmd(""), ("BAD",))
check("still works", c.cmd("FETCH 1 (UID FLAGS)"), ("OK",))
print("logout:", status(c.cmd("LOGOUT")))

# A fresh session works after all that.
c = Conn("anna")
check("fresh select", c.cmd("SELECT INBOX"), ("OK",))
print("fresh logout:", status(c.cmd("LOGOUT")))

# Too many bad commands: BYE, not a crash.
c = Conn()
for i in range(40):
    c.send(b"junk %d\r\n" % i)
lines = c.cmd("NOOP")
print("many errors:", lines[-2:])
"#,
    );
    println!("{said}");
    assert!(said.contains("bad before login: True"), "{said}");
    assert!(said.contains("logout: OK"), "{said}");
    assert!(said.contains("fresh logout: OK"), "{said}");
    assert!(printed(&said, "many errors").contains("BYE"), "{said}");
    assert!(gateway.is_running(), "{}", gateway.log());
    assert!(!gateway.log().contains("panicked"), "{}", gateway.log());
}

/// A 100 MB literal is refused before it is read, a command line over the limit is
/// refused, memory stays low, and the session (or a new one) still works.
#[test]
fn huge_literals_and_long_lines_are_refused_without_memory() {
    let mut gateway = helpdesk::two_queues_with_customers();
    imaplib(
        &gateway,
        "c = Conn('anna'); c.cmd('SELECT INBOX'); c.cmd('LOGOUT')",
    );
    let before = rss_kib(&gateway);
    let peak_before = gateway.peak_rss_kib().unwrap();
    let said = imaplib(
        &gateway,
        r#"
c = Conn("anna")
t = c.tag()
c.send(t.encode() + b" APPEND Drafts {104857600}\r\n")
r = c.until(t)
print("sync literal:", status(r), r[-1][:60])
print("sync continuation sent:", any(l.startswith(b"+") for l in r))
print("after sync literal:", status(c.cmd("NOOP")))

# LITERAL+: the client sends without waiting; the answer comes before the data is read.
t = c.tag()
c.s.settimeout(10)
c.send(t.encode() + b" APPEND Drafts {104857600+}\r\n" + b"x" * 4096)
r = c.until(t)
print("nonsync literal:", status(r), [l[:60] for l in r])
r = c.until("*")
print("nonsync then:", [l[:60] for l in r])
# The rest of the 100 MB: the connection is closed, nothing is read.
sent = 0
try:
    for i in range(100):
        c.send(b"x" * (1 << 20))
        sent += 1
except OSError as e:
    print("nonsync stopped:", type(e).__name__)
print("nonsync sent MiB:", sent)
"#,
    );
    println!("{said}");
    let after_literal = rss_kib(&gateway);
    let peak_literal = gateway.peak_rss_kib().unwrap();

    // A command line without an end: 30 MiB of one line.
    let said_line = imaplib(
        &gateway,
        r#"
c = Conn("anna")
t = c.tag()
c.s.settimeout(15)
sent = 0
try:
    c.send(t.encode() + b" SEARCH SUBJECT ")
    chunk = b"y" * (1 << 20)
    for i in range(30):
        c.send(chunk)
        sent += len(chunk)
    c.send(b"\r\n")
    r = c.until(t)
except OSError as e:
    r = [repr(e).encode(), b"<EOF>"]
print("long line sent MiB:", sent >> 20)
print("long line:", status(r), [l[:60] for l in r[-2:]])
try:
    print("after long line:", status(c.cmd("NOOP")))
except Exception as e:
    print("after long line:", type(e).__name__)

c = Conn("anna")
t = c.tag()
c.send(t.encode() + b" NOOP " + b"z" * 100000 + b"\r\n")
r = c.until(t)
print("100k line:", status(r), r[-1][:60])
r = c.until("*")
print("after 100k line:", [l[:60] for l in r])
c = Conn("anna")
print("fresh session:", status(c.cmd("SELECT INBOX")), status(c.cmd("LOGOUT")))
"#,
    );
    println!("{said_line}");
    let after_line = rss_kib(&gateway);
    let peak = gateway.peak_rss_kib().unwrap();
    println!(
        "gateway RSS KiB: before {before} (peak {peak_before}), after 100 MB literal {after_literal} (peak {peak_literal}), after 30 MiB line {after_line}, peak {peak}"
    );
    let sync = printed(&said, "sync literal");
    assert!(sync.starts_with("BAD") || sync.starts_with("NO"), "{said}");
    assert!(said.contains("sync continuation sent: False"), "{said}");
    assert!(said.contains("after sync literal: OK"), "{said}");
    let nonsync = printed(&said, "nonsync literal");
    assert!(
        nonsync.starts_with("BAD") && nonsync.contains("literal too long"),
        "{said}"
    );
    assert!(printed(&said, "nonsync then").contains("* BYE"), "{said}");
    assert!(
        printed(&said_line, "long line").starts_with("BAD")
            || printed(&said_line, "long line").starts_with("EOF"),
        "{said_line}"
    );
    let line = printed(&said_line, "100k line");
    assert!(
        line.starts_with("BAD") && line.contains("command line too long"),
        "{said_line}"
    );
    assert!(
        printed(&said_line, "after 100k line").contains("* BYE"),
        "{said_line}"
    );
    assert!(said_line.contains("fresh session: OK OK"), "{said_line}");
    assert!(gateway.is_running(), "{}", gateway.log());
    assert!(
        peak < peak_before + 8 * 1024,
        "a refused literal or line must not be buffered: peak RSS {peak_before} KiB before, {peak} KiB after"
    );
}

/// 500 connections at once on the STARTTLS port: every one is served (STARTTLS,
/// CAPABILITY, LOGOUT) or gets a clean `* BYE` busy answer; memory stays bounded, an
/// agent's session already open keeps working, and a normal session works afterwards.
#[test]
fn five_hundred_connections_get_answers_or_busy_and_others_keep_working() {
    let mut gateway = helpdesk::two_queues_with_customers();
    imaplib(
        &gateway,
        "c = Conn('anna'); c.cmd('SELECT INBOX'); c.cmd('LOGOUT')",
    );
    let before = rss_kib(&gateway);
    let peak_before = gateway.peak_rss_kib().unwrap();
    let said = imaplib(
        &gateway,
        r#"
import threading
N = 500
barrier = threading.Barrier(N + 1, timeout=120)
results = {}
lock = threading.Lock()

def one(i):
    outcome = "?"
    s = None
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=120)
        f = b""
        while b"\r\n" not in f:
            d = s.recv(4096)
            if not d:
                break
            f += d
        greeting = f
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        if greeting.startswith(b"* BYE"):
            outcome = "busy"
        elif greeting.startswith(b"* OK"):
            s.sendall(b"s1 STARTTLS\r\n")
            r = b""
            while b"s1 " not in r:
                d = s.recv(4096)
                if not d:
                    break
                r += d
            assert b"s1 OK" in r, r
            t = ctx.wrap_socket(s)
            s = t
            t.sendall(b"c1 CAPABILITY\r\nc2 LOGOUT\r\n")
            r = b""
            while b"c2 OK" not in r:
                d = t.recv(4096)
                if not d:
                    break
                r += d
            outcome = "served" if b"* CAPABILITY" in r and b"c2 OK" in r else "short:%r" % r[-80:]
        else:
            outcome = "greeting:%r" % greeting[:60]
    except Exception as e:
        outcome = "error:%s" % type(e).__name__
        try:
            barrier.wait(timeout=0)
        except Exception:
            pass
    finally:
        if s is not None:
            try:
                s.close()
            except Exception:
                pass
    with lock:
        results[i] = outcome

# An agent's session open before the flood.
anna = Conn("anna")
assert status(anna.cmd("SELECT Queues/Support")) == "OK"

threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
started = time.time()
for t in threads:
    t.start()
try:
    barrier.wait()
except threading.BrokenBarrierError:
    pass
print("all connected:", True)
r = anna.cmd("FETCH 1:* (UID FLAGS)")
print("anna during flood:", status(r), sum(1 for l in r if l.startswith(b"* ") and b" FETCH " in l))
for t in threads:
    t.join()
print("seconds:", round(time.time() - started, 1))
counts = {}
for o in results.values():
    k = o if o in ("served", "busy") else "other"
    counts[k] = counts.get(k, 0) + 1
print("served:", counts.get("served", 0))
print("busy:", counts.get("busy", 0))
print("other:", counts.get("other", 0), sorted(set(o for o in results.values() if o not in ("served", "busy")))[:5])
print("anna after flood:", status(anna.cmd("NOOP")), status(anna.cmd("LOGOUT")))
c = Conn("anna")
print("fresh session:", status(c.cmd("SELECT INBOX")), status(c.cmd("LOGOUT")))
"#,
    );
    println!("{said}");
    let after = rss_kib(&gateway);
    let peak = gateway.peak_rss_kib().unwrap();
    println!(
        "gateway RSS KiB: before {before} (peak {peak_before}), after 500 connections {after}, peak {peak}"
    );
    let served: usize = printed(&said, "served").parse().unwrap();
    let busy: usize = printed(&said, "busy").parse().unwrap();
    assert_eq!(served + busy, 500, "{said}");
    assert!(served >= 200, "{said}");
    assert!(
        printed(&said, "anna during flood").starts_with("OK 4"),
        "{said}"
    );
    assert!(said.contains("anna after flood: OK OK"), "{said}");
    assert!(said.contains("fresh session: OK OK"), "{said}");
    assert!(gateway.is_running(), "{}", gateway.log());
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB for 500 connections");
}

/// ben works only in Sales: Support's folder, messages and tickets are out of his reach
/// in every command, and he cannot move his Sales ticket into Support.
#[test]
fn an_agent_without_the_queue_cannot_see_or_reach_its_tickets() {
    let gateway = helpdesk::two_queues_with_customers();
    gateway.cli_ok(&["tag", "add", "vip"]);
    let said = imaplib(
        &gateway,
        r#"
m = imap("ben")
typ, folders = m.list('""', "*")
names = [f.decode() for f in folders]
for n in names:
    print("folder:", n)
print("list support:", any("Queues/Support" in n for n in names))
print("list sales:", any("Queues/Sales" in n for n in names))
typ, data = m.list('""', "Queues/Support")
print("list exact support:", typ, data)
for cmd, ro in (("select", False), ("examine", True)):
    try:
        typ, data = m.select("Queues/Support", readonly=ro)
        print(cmd, "support:", typ, data)
    except m.error as e:
        print(cmd, "support: error", e)
typ, data = m.status("Queues/Support", "(MESSAGES UIDNEXT)")
print("status support:", typ, data)

def subjects(folder):
    typ, data = m.select(folder)
    if typ != "OK":
        return typ, []
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT X-TICKET-NUMBER)])")
    return typ, [p[1].decode().replace("\r\n", " ").strip() for p in data if isinstance(p, tuple)]

seen = {}
for n in names:
    folder = re.search(r'"/" "?([^"]*)"?$', n).group(1)
    if folder in ("Drafts", "Sent", "Trash", "Templates", "Statistics"):
        continue
    typ, subj = subjects(folder)
    seen[folder] = subj
    print("folder messages:", folder, typ, subj)
print("any support ticket:", any("Support #" in s for v in seen.values() for s in v))

typ, data = m.select("Unassigned")
print("select unassigned:", typ, data)
typ, data = m.search(None, "ALL")
print("unassigned all:", data)
typ, data = m.search(None, "HEADER", "X-Ticket-Number", "1")
print("search ticket 1:", data)
typ, data = m.search(None, "SUBJECT", "Rechnung")
print("search subject Rechnung:", data)
typ, data = m.search(None, "FROM", "erika@kunde.example")
print("search from erika:", data)
typ, data = m.search(None, "BODY", "Lieferung")
print("search body Lieferung:", data)
typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("uid fetch all:", data)
typ, data = m.uid("FETCH", "1:1000", "(UID FLAGS)")
print("uid fetch range:", data)

typ, data = m.select("Queues/Sales")
print("select sales:", typ, data)
for verb in ("COPY", "MOVE"):
    typ, data = m.uid(verb, "1:*", "Queues/Support")
    print(verb.lower(), "to support:", typ, data)
typ, data = m.search(None, "ALL")
print("sales after:", data)
typ, data = m.uid("STORE", "1:*", "+FLAGS", "(vip)")
print("store own:", typ)
print("logout:", m.logout()[0])
"#,
    );
    println!("{said}");
    assert!(said.contains("list support: False"), "{said}");
    assert!(said.contains("list sales: True"), "{said}");
    assert!(
        printed(&said, "list exact support").starts_with("OK [None]"),
        "{said}"
    );
    for cmd in ["select support", "examine support", "status support"] {
        let answer = printed(&said, cmd);
        assert!(
            answer.starts_with("NO") || answer.starts_with("error"),
            "{cmd}: {said}"
        );
    }
    assert!(said.contains("any support ticket: False"), "{said}");
    for search in [
        "search ticket 1",
        "search subject Rechnung",
        "search from erika",
        "search body Lieferung",
    ] {
        assert_eq!(printed(&said, search), "[b'']", "{search}: {said}");
    }
    for verb in ["copy", "move"] {
        let answer = printed(&said, &format!("{verb} to support"));
        assert!(answer.starts_with("NO"), "{verb}: {said}");
    }
    assert_eq!(printed(&said, "sales after"), "[b'1']", "{said}");
    for n in 1..=4 {
        assert_eq!(gateway.ticket(n)["queue"], "Support");
    }
    assert_eq!(gateway.ticket(5)["queue"], "Sales");
    assert_eq!(printed(&said, "logout"), "BYE");
}
