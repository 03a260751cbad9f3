//! Agent submission end to end: real mail clients (Python's smtplib, swaks, mutt) send
//! replies, comments and commands through the gateway's submission ports; the recording
//! sink upstream shows what customers get, `ticket show` what the gateway stored.
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::gateway::{Gateway, Options};
use support::header;
use support::sink::{Sink, SinkMessage};
use support::submit::{Agent, Draft, Security, customer_mail, deliver_inbound};

const WAIT: Duration = Duration::from_secs(30);
const QUEUE: &str = "support@shop.test";
const CUSTOMER: &str = "erika@kunde.example";

/// A gateway with queues Support and Sales (relaying to a sink), agents anna (both
/// queues) and ben (Support), and carla in no queue.
fn setup() -> (Gateway, Sink) {
    let sink = Sink::start();
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", QUEUE, None, Some(&sink), &["--no-autoresponder"]);
    gateway.add_queue(
        "Sales",
        "sales@shop.test",
        None,
        Some(&sink),
        &["--no-autoresponder"],
    );
    gateway.add_agent(
        "anna",
        "anna@shop.test",
        "anna-secret",
        &["Support", "Sales"],
    );
    gateway.add_agent("ben", "ben@shop.test", "ben-secret", &["Support"]);
    gateway.add_agent("carla", "carla@shop.test", "carla-secret", &[]);
    gateway.start();
    (gateway, sink)
}

fn agent<'a>(gateway: &'a Gateway, login: &'a str, password: &'a str) -> Agent<'a> {
    Agent {
        gateway,
        login,
        password,
        tls: Security::StartTls,
    }
}

/// A customer mail makes ticket N; returns N and the mail's Message-ID.
fn ticket_from_customer(gateway: &Gateway, subject: &str) -> (i64, String) {
    let id = format!("{}@kunde.example", rand::random::<u64>());
    let raw = customer_mail(CUSTOMER, QUEUE, subject, &id, "Mein Drucker druckt nicht.");
    deliver_inbound(gateway, CUSTOMER, QUEUE, &raw);
    let tickets = gateway.tickets(&[]);
    let t = tickets
        .iter()
        .find(|t| t["subject"] == subject)
        .expect("ticket for the customer mail");
    (t["number"].as_i64().unwrap(), id)
}

fn replies(sink: &Sink) -> Vec<SinkMessage> {
    sink.messages()
}

fn items_of(gateway: &Gateway, n: i64, kind: &str) -> Vec<Value> {
    gateway.ticket(n)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == kind)
        .cloned()
        .collect()
}

fn history_has(gateway: &Gateway, n: i64, field: &str, new: &str) -> bool {
    gateway.ticket(n)["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["field"] == field && h["new"] == new)
}

/// The reply as the customer got it: rewritten From, one tag, threading, no agent address.
fn assert_rewritten(m: &SinkMessage, n: i64, customer_id: &str) {
    let from = header(&m.raw, "From").unwrap();
    assert!(from.contains(QUEUE), "From is the queue: {from}");
    let subject = header(&m.raw, "Subject").unwrap();
    assert_eq!(
        subject.matches(&format!("[Support #{n}]")).count(),
        1,
        "{subject}"
    );
    assert_eq!(
        header(&m.raw, "In-Reply-To").as_deref(),
        Some(format!("<{customer_id}>").as_str())
    );
    assert!(
        header(&m.raw, "Message-ID")
            .unwrap()
            .ends_with("@gateway.example.test>"),
        "new Message-ID on the gateway's host name"
    );
    let text = String::from_utf8_lossy(&m.raw);
    assert!(
        !text.contains("anna@shop.test"),
        "the agent's address leaked:\n{text}"
    );
    assert_eq!(m.mail_from, QUEUE);
    assert_eq!(m.rcpt_tos, vec![CUSTOMER.to_string()]);
}

#[test]
fn smtplib_swaks_and_mutt_replies_arrive_rewritten_and_are_stored() {
    let (gateway, sink) = setup();

    // Python smtplib: STARTTLS + AUTH PLAIN, from the agent's own address.
    let (n1, id1) = ticket_from_customer(&gateway, "Drucker defekt");
    let answer = agent(&gateway, "anna", "anna-secret").send(
        "anna@shop.test",
        &[CUSTOMER],
        &to_customer(
            "Anna Agent <anna@shop.test>",
            "Re: Drucker defekt",
            Some(&id1),
            "Guten Tag,\n\nbitte starten Sie den Drucker neu.\n\nAnna\n",
        ),
    );
    assert!(answer.accepted(), "{answer:?}\n{}", gateway.log());
    let got = sink.wait_for(1, WAIT);
    assert_rewritten(&got[0], n1, &id1);
    assert!(String::from_utf8_lossy(&got[0].raw).contains("Drucker neu"));
    let stored = items_of(&gateway, n1, "reply");
    assert_eq!(stored.len(), 1);
    assert!(stored[0]["text"].as_str().unwrap().contains("Drucker neu"));
    let t = gateway.ticket(n1);
    assert_eq!(t["status"], "waiting", "a reply waits for the customer");
    assert_eq!(
        t["assignee"], "anna",
        "an unassigned ticket goes to the replying agent"
    );

    // swaks: implicit TLS + AUTH LOGIN, from the queue address.
    let (n2, id2) = ticket_from_customer(&gateway, "Rechnung falsch");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reply.eml");
    std::fs::write(
        &file,
        to_customer(
            QUEUE,
            "AW: Rechnung falsch",
            Some(&id2),
            "Die Rechnung wird korrigiert.\n",
        ),
    )
    .unwrap();
    let out = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{}", gateway.submissions_port),
        ])
        .args(["--tls-on-connect", "--auth", "LOGIN", "--auth-user", "ben"])
        .args(["--from", QUEUE, "--to", CUSTOMER])
        .args(["--data", &format!("@{}", file.display())])
        .env("SWAKS_OPT_auth_password", "ben-secret")
        .output()
        .expect("swaks not found: apt-get install swaks libnet-ssleay-perl");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks: {said}");
    assert!(!said.contains("ben-secret"), "password echoed");
    let got = sink.wait_for(2, WAIT);
    let m = got
        .iter()
        .find(|m| String::from_utf8_lossy(&m.raw).contains("korrigiert"))
        .unwrap();
    assert_rewritten(m, n2, &id2);
    assert_eq!(items_of(&gateway, n2, "reply").len(), 1);

    // mutt in batch mode: STARTTLS + AUTH, a draft with the reply's headers.
    let (n3, id3) = ticket_from_customer(&gateway, "Lieferung fehlt");
    let home = tempfile::tempdir().unwrap();
    let draft = home.path().join("draft.eml");
    std::fs::write(
        &draft,
        format!(
            "From: anna@shop.test\nTo: {CUSTOMER}\nSubject: Re: Lieferung fehlt\n\
             In-Reply-To: <{id3}>\nReferences: <{id3}>\n\nDie Lieferung ist unterwegs.\n"
        ),
    )
    .unwrap();
    let rc = home.path().join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set smtp_url = \"smtp://anna@127.0.0.1:{port}/\"\n\
             set smtp_pass = \"anna-secret\"\n\
             set ssl_starttls = yes\nset ssl_force_tls = yes\n\
             set certificate_file = \"{cert}\"\nset ssl_verify_host = no\n\
             set from = \"anna@shop.test\"\nset use_from = yes\n\
             set copy = no\nset record = \"\"\nset folder = \"{home}\"\n\
             set spoolfile = \"\"\nset charset = \"utf-8\"\nset send_charset = \"utf-8\"\n",
            port = gateway.submission_port,
            cert = gateway.cert_path().display(),
            home = home.path().display(),
        ),
    )
    .unwrap();
    let out = Command::new("mutt")
        .args([
            "-n",
            "-F",
            &rc.display().to_string(),
            "-H",
            &draft.display().to_string(),
        ])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("mutt not found: apt-get install mutt (scripts/test does this)");
    assert!(
        out.status.success(),
        "mutt: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sink.wait_for(3, WAIT);
    let m = got
        .iter()
        .find(|m| String::from_utf8_lossy(&m.raw).contains("unterwegs"))
        .unwrap();
    assert_rewritten(m, n3, &id3);
    assert_eq!(items_of(&gateway, n3, "reply").len(), 1);
    assert_eq!(replies(&sink).len(), 3, "nothing else went out");
}

/// An agent's mail to the customer, nobody in Cc.
fn to_customer(from: &str, subject: &str, in_reply_to: Option<&str>, body: &str) -> Vec<u8> {
    Draft {
        from,
        to: &[CUSTOMER],
        cc: &[],
        subject,
        in_reply_to,
        body,
    }
    .raw()
}

/// A reply to ticket `n`'s customer mail `id` with `body`, sent by `login`.
fn reply(
    gateway: &Gateway,
    login: &str,
    id: &str,
    subject: &str,
    body: &str,
) -> support::submit::Answer {
    let email = format!("{login}@shop.test");
    let password = format!("{login}-secret");
    agent(gateway, login, &password).send(
        &email,
        &[CUSTOMER],
        &Draft {
            from: &email,
            to: &[CUSTOMER],
            cc: &[],
            subject,
            in_reply_to: Some(id),
            body,
        }
        .raw(),
    )
}

#[test]
fn every_command_changes_the_ticket_and_a_bad_one_changes_nothing() {
    let (gateway, sink) = setup();
    for tag in ["Reklamation", "neu"] {
        gateway.cli_ok(&["tag", "add", tag]);
    }
    gateway.cli_ok(&[
        "customer",
        "add",
        "--number",
        "4711",
        "--last-name",
        "Muster",
        "--letter-salutation",
        "Sehr geehrte Frau Muster",
        "--emails",
        "muster@kunde.example",
    ]);
    let docs = gateway.path().join("documents.csv");
    std::fs::write(
        &docs,
        "number,kind,date,customer_number,description\nRE-1001,invoice,2026-11-01,4711,Rechnung\n",
    )
    .unwrap();
    gateway.cli_ok(&["document", "import", docs.to_str().unwrap()]);
    let template = gateway.path().join("danke.txt");
    std::fs::write(
        &template,
        "Vielen Dank für Ihre Geduld in Ticket @Ticketnummer@.",
    )
    .unwrap();
    gateway.cli_ok(&[
        "template",
        "add",
        "Danke",
        "--file",
        template.to_str().unwrap(),
    ]);
    let (n, id) = ticket_from_customer(&gateway, "Reklamation Drucker");
    let (other, _) = ticket_from_customer(&gateway, "Noch einmal Drucker");

    // A bad value on line 3: refused with the line named, nothing applied or sent.
    let before = gateway.ticket(n);
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: Reklamation Drucker",
        "#priority high\n#tag +Reklamation\n#status nonsense\n\nHallo\n",
    );
    assert_eq!(answer.code, 554, "{answer:?}");
    assert!(
        answer.text.contains("line 3") && answer.text.contains("nonsense"),
        "{answer:?}"
    );
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: x",
        "#priority high\n#frobnicate\nHallo\n",
    );
    assert_eq!(answer.code, 554, "{answer:?}");
    assert!(
        answer.text.contains("line 2") && answer.text.contains("unknown command"),
        "{answer:?}"
    );
    for (line, why) in [
        ("#assign nobody-here", "no agent"),
        ("#tag +unbekannt", "no tag"),
        ("#link RE-9999", "no document"),
        ("#customer 9999", "no customer"),
        ("#template Fehlt", "no template"),
        ("#merge 9999", "no ticket"),
        ("#queue Nirgendwo", "no queue"),
    ] {
        let answer = reply(
            &gateway,
            "anna",
            &id,
            "Re: x",
            &format!("#watch\n{line}\nHallo\n"),
        );
        assert_eq!(answer.code, 554, "{line}: {answer:?}");
        assert!(
            answer.text.contains("line 2") && answer.text.contains(why),
            "{line}: {answer:?}"
        );
    }
    let after = gateway.ticket(n);
    assert_eq!(
        before["history"], after["history"],
        "a refused mail changes nothing"
    );
    assert_eq!(
        before["items"].as_array().unwrap().len(),
        after["items"].as_array().unwrap().len()
    );
    assert!(sink.messages().is_empty(), "a refused mail sends nothing");

    // Every command at once.
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: Reklamation Drucker",
        "#status open\n#priority high\n#assign ben\n#tag +Reklamation +neu\n#tag -neu\n\
         #due 2026-12-24\n#billable yes\n#watch\n#link RE-1001\n#customer 4711\n\
         #cc +chef@kunde.example\n#template Danke\n#merge {other}\n#noattachcheck\n\n\
         @Briefanrede@,\n\nwir tauschen den Drucker aus.\n"
            .replace("{other}", &other.to_string())
            .as_str(),
    );
    assert!(answer.accepted(), "{answer:?}\n{}", gateway.log());
    let t = gateway.ticket(n);
    assert_eq!(t["status"], "open", "#status wins over the reply's waiting");
    assert_eq!(t["priority"], "high");
    assert_eq!(t["assignee"], "ben");
    assert_eq!(t["tags"], serde_json::json!(["Reklamation"]));
    assert_eq!(t["due_date"], "2026-12-24");
    assert_eq!(t["billable"], true);
    assert_eq!(t["watchers"], serde_json::json!(["anna"]));
    assert_eq!(t["document"]["number"], "RE-1001");
    assert_eq!(t["customer"]["number"], "4711");
    assert_eq!(t["cc"], serde_json::json!(["chef@kunde.example"]));
    assert_eq!(gateway.ticket(other)["status"], "merged");
    for (field, new) in [
        ("status", "open"),
        ("priority", "high"),
        ("assignee", "ben"),
        ("tag", "Reklamation"),
        ("tag", "neu"),
        ("due_date", "2026-12-24"),
        ("billable", "yes"),
        ("watcher", "anna"),
        ("document", "RE-1001"),
        ("customer", "4711"),
        ("cc", "chef@kunde.example"),
        ("merged_from", &format!("#{other}")),
    ] {
        assert!(
            history_has(&gateway, n, field, new),
            "history lacks {field} → {new}: {}",
            t["history"]
        );
    }
    let got = sink.wait_for(1, WAIT);
    let text = String::from_utf8_lossy(&got[0].raw).to_string();
    assert!(
        !text.contains("#status") && !text.contains("#template"),
        "commands went out:\n{text}"
    );
    assert!(
        text.contains("Sehr geehrte Frau Muster"),
        "placeholder from #customer:\n{text}"
    );
    assert!(
        text.contains(&format!("Ticket {n}")),
        "template with its placeholders:\n{text}"
    );
    assert_eq!(
        header(&got[0].raw, "Cc").as_deref(),
        Some("chef@kunde.example")
    );
    assert!(got[0].rcpt_tos.contains(&"chef@kunde.example".to_string()));

    // #unwatch, #assign none, #due none, #cc -…: the other way round. The merged ticket's
    // mail is news to the version answered, so this one needs #force.
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: x",
        "#force\n#unwatch\n#assign none\n#due none\n#billable no\n#cc -chef@kunde.example\n#status closed\n\nErledigt.\n",
    );
    assert!(answer.accepted(), "{answer:?}");
    let t = gateway.ticket(n);
    assert_eq!(t["watchers"], serde_json::json!([]));
    assert_eq!(t["assignee"], Value::Null);
    assert_eq!(t["due_date"], Value::Null);
    assert_eq!(t["billable"], false);
    assert_eq!(t["cc"], serde_json::json!([]));
    assert_eq!(t["status"], "closed");
    let got = sink.wait_for(2, WAIT);
    assert!(!got[1].rcpt_tos.contains(&"chef@kunde.example".to_string()));

    // #queue: only into a queue the agent works in; the reply then comes from there.
    let (moved, moved_id) = ticket_from_customer(&gateway, "Angebot gewünscht");
    let answer = reply(
        &gateway,
        "ben",
        &moved_id,
        "Re: Angebot gewünscht",
        "#queue Sales\nGern.\n",
    );
    assert_eq!(answer.code, 554, "{answer:?}");
    assert!(
        answer.text.contains("no access to queue Sales"),
        "{answer:?}"
    );
    let answer = reply(
        &gateway,
        "anna",
        &moved_id,
        "Re: Angebot gewünscht",
        "#queue sales\nGern.\n",
    );
    assert!(answer.accepted(), "{answer:?}");
    assert_eq!(gateway.ticket(moved)["queue"], "Sales");
    assert!(history_has(&gateway, moved, "queue", "Sales"));
    let got = sink.wait_for(3, WAIT);
    assert!(
        header(&got[2].raw, "From")
            .unwrap()
            .contains("sales@shop.test")
    );
    assert_eq!(
        mticket::core::mail::parse(&got[2].raw).subject,
        format!("Re: [Sales #{moved}] Angebot gewünscht")
    );
}

#[test]
fn auth_without_tls_only_on_a_loopback_listener_that_allows_it() {
    let probe = |gateway: &Gateway| -> String {
        let out = Command::new("python3")
            .args([
                "-c",
                "import smtplib,sys\n\
                 s=smtplib.SMTP('127.0.0.1',int(sys.argv[1]))\n\
                 s.ehlo('x')\n\
                 print('auth-offered' if s.has_extn('auth') else 'no-auth')\n\
                 print(s.docmd('AUTH','PLAIN AGFubmEAYW5uYS1zZWNyZXQ='))\n",
                &gateway.submission_port.to_string(),
            ])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    for (host, allowed) in [("127.0.0.1", true), ("0.0.0.0", false)] {
        let mut gateway = Gateway::new(Options {
            submission_host: host,
            allow_plain_on_loopback: true,
            ..Options::default()
        });
        gateway.add_queue("Support", QUEUE, None, None, &["--no-autoresponder"]);
        gateway.add_agent("anna", "anna@shop.test", "anna-secret", &["Support"]);
        gateway.start();
        let said = probe(&gateway);
        if allowed {
            assert!(
                said.contains("auth-offered") && said.contains("(235"),
                "{host}: {said}"
            );
        } else {
            assert!(
                said.contains("no-auth") && said.contains("(538"),
                "{host}: {said}"
            );
        }
    }
}

#[test]
fn a_comment_reaches_nobody_and_without_a_ticket_opens_one() {
    let (gateway, sink) = setup();
    let (n, id) = ticket_from_customer(&gateway, "Drucker");
    let comment = "comment@gateway.example.test";
    let answer = agent(&gateway, "anna", "anna-secret").send(
        "anna@shop.test",
        &[comment, CUSTOMER, "chef@kunde.example"],
        &Draft {
            from: "anna@shop.test",
            to: &[comment, CUSTOMER],
            cc: &["chef@kunde.example"],
            subject: "Re: Drucker",
            in_reply_to: Some(&id),
            body: "#priority medium\nKunde ist ungeduldig, bitte schnell.\n",
        }
        .raw(),
    );
    assert!(answer.accepted(), "{answer:?}");
    let comments = items_of(&gateway, n, "comment");
    assert_eq!(comments.len(), 1);
    assert!(comments[0]["text"].as_str().unwrap().contains("ungeduldig"));
    assert_eq!(gateway.ticket(n)["priority"], "medium");
    assert_ne!(
        gateway.ticket(n)["status"],
        "waiting",
        "a comment is no reply"
    );

    // Without a ticket reference: a new ticket whose first item is the comment.
    let answer = agent(&gateway, "anna", "anna-secret").send(
        "anna@shop.test",
        &[comment],
        &Draft {
            from: "anna@shop.test",
            to: &[comment],
            cc: &[],
            subject: "Rückruf vereinbart",
            in_reply_to: None,
            body: "#queue Support\nKunde ruft morgen an.\n",
        }
        .raw(),
    );
    assert!(answer.accepted(), "{answer:?}");
    let t = gateway
        .tickets(&[])
        .into_iter()
        .find(|t| t["subject"] == "Rückruf vereinbart")
        .unwrap();
    let items = gateway.ticket(t["number"].as_i64().unwrap())["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["kind"], "comment");
    gateway.wait_until_sent();
    assert!(
        sink.messages().is_empty(),
        "a comment went out: {:?}",
        sink.messages()
    );
}

#[test]
fn the_attachment_reminder_reads_only_the_agents_own_text() {
    let (gateway, sink) = setup();
    let (_, id) = ticket_from_customer(&gateway, "Foto");
    let mut sent = 0;
    for word in [
        "anhang",
        "Anhänge",
        "ANLAGE",
        "angehängt",
        "angehangen",
        "Screenshot",
        "anbei",
    ] {
        let answer = reply(
            &gateway,
            "anna",
            &id,
            "Re: Foto",
            &format!("Das Foto finden Sie {word}.\n"),
        );
        assert_eq!(answer.code, 554, "{word}: {answer:?}");
        assert!(answer.text.contains("#noattachcheck"), "{word}: {answer:?}");
    }
    // With #noattachcheck it goes out.
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: Foto",
        "#noattachcheck\nDas Foto finden Sie anbei.\n",
    );
    assert!(answer.accepted(), "{answer:?}");
    sent += 1;
    // Only inside the quote: not the agent's words.
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: Foto",
        "Danke, erhalten.\n\nAm 27.11.2026 um 09:00 schrieb Erika Kunde:\n> Das Foto ist im Anhang.\n",
    );
    assert!(answer.accepted(), "{answer:?}");
    sent += 1;
    // With an attachment.
    let raw = format!(
        "From: anna@shop.test\r\nTo: {CUSTOMER}\r\nSubject: Re: Foto\r\nIn-Reply-To: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnbei die Anleitung.\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCg==\r\n--b1--\r\n"
    );
    let answer =
        agent(&gateway, "anna", "anna-secret").send("anna@shop.test", &[CUSTOMER], raw.as_bytes());
    assert!(answer.accepted(), "{answer:?}");
    sent += 1;
    // The agent's own switch.
    gateway.cli_ok(&["agent", "set", "anna", "--attachment-check", "off"]);
    let answer = reply(&gateway, "anna", &id, "Re: Foto", "Siehe Anhang.\n");
    assert!(answer.accepted(), "{answer:?}");
    sent += 1;
    sink.wait_for(sent, WAIT);
}

#[test]
fn a_second_answer_to_the_same_version_is_refused_unless_forced() {
    let (gateway, sink) = setup();
    let (n, id) = ticket_from_customer(&gateway, "Kollision");
    let answer = reply(
        &gateway,
        "anna",
        &id,
        "Re: Kollision",
        "Antwort von Anna.\n",
    );
    assert!(answer.accepted(), "{answer:?}");
    let answer = reply(&gateway, "ben", &id, "Re: Kollision", "Antwort von Ben.\n");
    assert_eq!(answer.code, 554, "{answer:?}");
    assert!(answer.text.contains("a reply by anna"), "{answer:?}");
    assert!(answer.text.contains("#force"), "{answer:?}");
    let answer = reply(
        &gateway,
        "ben",
        &id,
        "Re: Kollision",
        "#force\nAntwort von Ben.\n",
    );
    assert!(answer.accepted(), "{answer:?}");
    // A reply found by its tag alone carries no version.
    let answer = agent(&gateway, "ben", "ben-secret").send(
        "ben@shop.test",
        &[CUSTOMER],
        &to_customer(
            "ben@shop.test",
            &format!("Re: [Support #{n}] Kollision"),
            None,
            "Noch ein Nachtrag.\n",
        ),
    );
    assert!(answer.accepted(), "{answer:?}");
    assert_eq!(sink.wait_for(3, WAIT).len(), 3);
    assert_eq!(items_of(&gateway, n, "reply").len(), 3);
}

/// Replies racing for one ticket: each is worked out on a view of the ticket that the
/// others' commits make stale, so each is checked, and worked out again, in its write.
#[test]
fn concurrent_replies_to_one_ticket_all_land_with_every_change() {
    let (gateway, sink) = setup();
    const N: usize = 12;
    for i in 0..N {
        gateway.cli_ok(&["tag", "add", &format!("t{i}")]);
    }
    let (n, id) = ticket_from_customer(&gateway, "Ansturm");
    let raws: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            Draft {
                from: "anna@shop.test",
                to: &[CUSTOMER],
                cc: &[],
                subject: "Re: Ansturm",
                in_reply_to: Some(&id),
                body: &format!("#tag +t{i}\nAntwort {i}.\n"),
            }
            .raw()
        })
        .collect();
    let answers =
        agent(&gateway, "anna", "anna-secret").send_many("anna@shop.test", &[CUSTOMER], &raws, 8);
    for a in &answers {
        assert!(a.accepted(), "{a:?}");
    }
    let got = sink.wait_for(N, WAIT);
    assert_eq!(got.len(), N);
    let ids: std::collections::HashSet<String> = got
        .iter()
        .map(|m| header(&m.raw, "Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), N, "each reply went out once");
    for i in 0..N {
        // A later reply may quote an earlier one: the marker is in one mail or more.
        let marker = format!("Antwort {i}.");
        assert!(
            got.iter()
                .any(|m| String::from_utf8_lossy(&m.raw).contains(&marker)),
            "{marker} went out"
        );
    }
    assert_eq!(items_of(&gateway, n, "reply").len(), N);
    let ticket = gateway.ticket(n);
    let tags: Vec<&str> = ticket["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for i in 0..N {
        let tag = format!("t{i}");
        assert!(tags.contains(&tag.as_str()), "{tag} in {tags:?}");
        assert!(history_has(&gateway, n, "tag", &tag), "history of {tag}");
    }
    let history = ticket["history"].as_array().unwrap();
    let replies = history.iter().filter(|h| h["field"] == "reply").count();
    assert_eq!(replies, N, "one history entry per reply");
    assert_eq!(ticket["status"], "waiting");
    assert_eq!(ticket["assignee"], "anna");
}

#[test]
fn strangers_forged_senders_and_foreign_queues_are_refused() {
    let (gateway, sink) = setup();
    let (n, id) = ticket_from_customer(&gateway, "Sicherheit");
    let port = gateway.submission_port.to_string();
    let py = |script: &str| -> String {
        let out = Command::new("python3")
            .args(["-c", script, &port])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    // MAIL before AUTH → 530; AUTH before STARTTLS → refused.
    let said = py("import smtplib,sys\n\
         s=smtplib.SMTP('127.0.0.1',int(sys.argv[1]))\n\
         s.ehlo('x')\n\
         print('auth-offered' if s.has_extn('auth') else 'no-auth')\n\
         print(s.mail('anna@shop.test'))\n\
         print(s.docmd('AUTH','PLAIN AGFubmEAYW5uYS1zZWNyZXQ='))\n");
    assert!(said.contains("no-auth"), "{said}");
    assert!(said.contains("(530"), "{said}");
    assert!(said.contains("(538"), "{said}");

    // Five wrong passwords, then even the right one is locked out for a while.
    let wrong = Agent {
        gateway: &gateway,
        login: "anna",
        password: "wrong-password",
        tls: Security::StartTls,
    };
    let draft = to_customer("anna@shop.test", "Re: Sicherheit", Some(&id), "x\n");
    for _ in 0..5 {
        let a = wrong.send("anna@shop.test", &[CUSTOMER], &draft);
        assert_eq!(a.code, 535, "{a:?}");
    }
    let a = agent(&gateway, "anna", "anna-secret").send("anna@shop.test", &[CUSTOMER], &draft);
    assert_eq!(a.code, 454, "locked out: {a:?}");
    // Another agent from the same address is not.
    let a = agent(&gateway, "ben", "ben-secret").send(
        "ben@shop.test",
        &[CUSTOMER],
        &to_customer("ben@shop.test", "Re: Sicherheit", Some(&id), "x\n"),
    );
    assert!(a.accepted(), "{a:?}");

    // A From that is neither a queue address nor the agent's own.
    let a = agent(&gateway, "ben", "ben-secret").send(
        "ben@shop.test",
        &[CUSTOMER],
        &to_customer("chef@shop.test", "Re: Sicherheit", Some(&id), "x\n"),
    );
    assert_eq!(a.code, 550, "{a:?}");
    assert!(a.text.contains("chef@shop.test"), "{a:?}");
    // No ticket and no queue identity: the gateway sends only ticket mail.
    let a = agent(&gateway, "ben", "ben-secret").send(
        "ben@shop.test",
        &["irgendwer@example.org"],
        &Draft {
            from: "ben@shop.test",
            to: &["irgendwer@example.org"],
            cc: &[],
            subject: "Hallo",
            in_reply_to: None,
            body: "x\n",
        }
        .raw(),
    );
    assert_eq!(a.code, 550, "{a:?}");
    assert!(a.text.contains("only ticket mail"), "{a:?}");
    // An agent without access to the ticket's queue.
    let a = agent(&gateway, "carla", "carla-secret").send(
        "carla@shop.test",
        &[CUSTOMER],
        &to_customer("carla@shop.test", "Re: Sicherheit", Some(&id), "x\n"),
    );
    assert_eq!(a.code, 550, "{a:?}");
    assert!(a.text.contains("no access"), "{a:?}");
    gateway.wait_until_sent();
    assert_eq!(sink.messages().len(), 1, "only ben's reply went out");
    assert_eq!(items_of(&gateway, n, "reply").len(), 1);
}

#[test]
fn a_mail_from_a_queue_identity_opens_a_ticket_for_its_recipient() {
    let (gateway, sink) = setup();
    let answer = agent(&gateway, "anna", "anna-secret").send(
        QUEUE,
        &["neukunde@example.org"],
        &Draft {
            from: &format!("Support <{QUEUE}>"),
            to: &["neukunde@example.org"],
            cc: &[],
            subject: "Ihr Angebot",
            in_reply_to: None,
            body: "@Briefanrede@,\n\nanbei kein Angebot.\n#1 ist kein Befehl.\n",
        }
        .raw(),
    );
    // "anbei" without attachment: refused first.
    assert_eq!(answer.code, 554, "{answer:?}");
    let answer = agent(&gateway, "anna", "anna-secret").send(
        QUEUE,
        &["neukunde@example.org"],
        &Draft {
            from: &format!("Support <{QUEUE}>"),
            to: &["neukunde@example.org"],
            cc: &[],
            subject: "Ihr Angebot",
            in_reply_to: None,
            body: "@Briefanrede@,\n\nhier unser Angebot.\n",
        }
        .raw(),
    );
    assert!(answer.accepted(), "{answer:?}");
    let t = gateway
        .tickets(&[])
        .into_iter()
        .find(|t| t["subject"] == "Ihr Angebot")
        .expect("ticket");
    let n = t["number"].as_i64().unwrap();
    let detail = gateway.ticket(n);
    assert_eq!(detail["assignee"], "anna");
    assert_eq!(detail["creator_address"], "neukunde@example.org");
    assert_eq!(detail["status"], "waiting");
    let got = sink.wait_for(1, WAIT);
    assert_eq!(
        header(&got[0].raw, "Subject").unwrap(),
        format!("[Support #{n}] Ihr Angebot")
    );
    assert!(String::from_utf8_lossy(&got[0].raw).contains("Dear Sir or Madam"));
    assert_eq!(got[0].rcpt_tos, vec!["neukunde@example.org".to_string()]);
}

/// The Message-IDs the sink got, with how often each came.
fn delivered_ids(sink: &Sink) -> std::collections::HashMap<String, usize> {
    let mut ids = std::collections::HashMap::new();
    for m in sink.messages() {
        if let Some(id) = header(&m.raw, "Message-ID") {
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn replies_wait_out_an_upstream_outage_and_a_refusal_comes_back_to_the_agent() {
    let (gateway, mut sink) = setup();
    let (n, id) = ticket_from_customer(&gateway, "Ausfall");
    sink.stop();
    let raws: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            to_customer(
                "anna@shop.test",
                "Re: Ausfall",
                Some(&id),
                &format!("Antwort OUTAGE-{i:03}.\n"),
            )
        })
        .collect();
    let answers =
        agent(&gateway, "anna", "anna-secret").send_many("anna@shop.test", &[CUSTOMER], &raws, 4);
    for a in &answers {
        assert!(a.accepted(), "accepted while upstream is down: {a:?}");
    }
    assert_eq!(items_of(&gateway, n, "reply").len(), 100);
    std::thread::sleep(Duration::from_secs(2));
    sink.restart();
    sink.wait_for(100, Duration::from_secs(90));
    // Everything the outbox will send is out: a double would be among it.
    gateway.wait_until_sent();
    let ids = delivered_ids(&sink);
    assert_eq!(ids.len(), 100, "each reply arrives");
    assert!(ids.values().all(|&c| c == 1), "each exactly once: {ids:?}");
    for i in 0..100 {
        let marker = format!("OUTAGE-{i:03}");
        assert!(
            sink.messages()
                .iter()
                .any(|m| String::from_utf8_lossy(&m.raw).contains(&marker)),
            "{marker} missing"
        );
    }

    // A permanent refusal upstream: a delivery status notification to the agent, a note.
    sink.set_fault_for(
        &["bounce@kunde.example"],
        Some(support::sink::Fault::Reject),
        None,
    );
    let answer = agent(&gateway, "anna", "anna-secret").send(
        "anna@shop.test",
        &["bounce@kunde.example"],
        &Draft {
            from: "anna@shop.test",
            to: &["bounce@kunde.example"],
            cc: &[],
            subject: "Re: Ausfall",
            in_reply_to: Some(&id),
            body: "Diese Antwort kommt nicht an.\n",
        }
        .raw(),
    );
    assert!(answer.accepted(), "{answer:?}");
    let dsn = gateway.wait_for("the delivery status notification", WAIT, || {
        sink.messages()
            .into_iter()
            .find(|m| m.rcpt_tos == vec!["anna@shop.test".to_string()])
    });
    assert!(
        dsn.mail_from.is_empty() || dsn.mail_from == "<>",
        "a DSN has the null sender: {:?}",
        dsn.mail_from
    );
    let text = String::from_utf8_lossy(&dsn.raw);
    assert!(
        text.contains("multipart/report") && text.contains("delivery-status"),
        "{text}"
    );
    assert!(text.contains("bounce@kunde.example"), "{text}");
    gateway.wait_for("the ticket note", WAIT, || {
        gateway.ticket(n)["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| {
                h["field"] == "delivery"
                    && h["new"]
                        .as_str()
                        .unwrap_or("")
                        .contains("bounce@kunde.example")
            })
            .then_some(())
    });
}

#[test]
fn kill_9_during_200_concurrent_submissions_loses_no_acknowledged_reply() {
    let (mut gateway, sink) = setup();
    let (n, id) = ticket_from_customer(&gateway, "Absturz");
    let raws: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            to_customer(
                "anna@shop.test",
                "Re: Absturz",
                Some(&id),
                &format!("Antwort CRASH-{i:03}.\n"),
            )
        })
        .collect();
    let sending =
        agent(&gateway, "anna", "anna-secret").start_many("anna@shop.test", &[CUSTOMER], &raws, 8);
    // Kill once some replies are in and others are on the wire.
    gateway.wait_for("the first replies", WAIT, || {
        (items_of(&gateway, n, "reply").len() >= 20).then_some(())
    });
    gateway.kill();
    let answers = sending.finish();
    gateway.start();
    let acked: Vec<usize> = (0..200).filter(|&i| answers[i].accepted()).collect();
    println!("{} of 200 answered 250 before the kill", acked.len());
    // Twenty replies were committed when the kill came; the last of their 250s may not
    // have reached the client yet.
    assert!(
        !acked.is_empty() && acked.len() < 200,
        "the kill came mid-run: {}",
        acked.len()
    );
    let stored: Vec<String> = items_of(&gateway, n, "reply")
        .iter()
        .map(|i| i["text"].as_str().unwrap_or("").to_string())
        .collect();
    for &i in &acked {
        let marker = format!("CRASH-{i:03}");
        assert!(
            stored.iter().any(|t| t.contains(&marker)),
            "{marker} answered 250 but not stored"
        );
    }
    // Counted by Message-ID: a reply may quote another one's marker.
    gateway.wait_for(
        "every stored reply upstream",
        Duration::from_secs(90),
        || {
            let replies: std::collections::HashSet<String> = sink
                .messages()
                .iter()
                .filter(|m| String::from_utf8_lossy(&m.raw).contains("CRASH-"))
                .filter_map(|m| header(&m.raw, "Message-ID"))
                .collect();
            (replies.len() >= stored.len()).then_some(())
        },
    );
    let ids = delivered_ids(&sink);
    let doubles = ids.values().filter(|&&c| c > 1).count();
    println!(
        "{} replies stored, {} delivered, {doubles} delivered twice",
        stored.len(),
        ids.len()
    );
    assert!(ids.len() >= acked.len());
}

/// Every login verifies an Argon2 hash in a 19 MiB block. Rounds of eight logins at once
/// (mail clients open a session per mail sent) must give those blocks back: with glibc's
/// default the gateway kept one per allocator arena and grew past 500 MiB.
#[test]
fn repeated_logins_give_their_memory_back() {
    let (gateway, _sink) = setup();
    let script = r#"
import smtplib, ssl, sys, threading
port, cafile, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
failed = []
def login():
    try:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        s = smtplib.SMTP("127.0.0.1", port, timeout=60)
        s.starttls(context=ctx)
        s.login("anna", password)
        s.quit()
    except Exception as e:
        failed.append(repr(e))
for _ in range(6):
    ts = [threading.Thread(target=login) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
print(len(failed), failed[:3])
sys.exit(1 if failed else 0)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(gateway.submission_port.to_string())
        .arg(gateway.cert_path())
        .arg("anna-secret")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "logins failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rss_mib = support::procstat::rss_kib(gateway.pid().unwrap()).unwrap() / 1024;
    assert!(
        rss_mib < 120,
        "the gateway holds {rss_mib} MiB after 48 logins (8 at a time)"
    );
}
