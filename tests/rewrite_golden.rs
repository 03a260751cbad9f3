//! Agent replies as real mail clients send them (`tests/fixtures/rewrite/*.eml`) rewritten
//! for the customer under every quote policy, with and without a customer, and checked:
//! against the golden outputs in `tests/fixtures/rewrite/out/` (regenerate with
//! `UPDATE_GOLDEN=1`), for the rewrite rules of the README's "How submission behaves", and
//! by Python's `email` package, which must find no defect in any output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mticket::core::mail::{self, html_to_text};
use mticket::core::model::{Customer, ItemKind, ReplyQuote};
use mticket::core::reply::{QuoteEntry, ReplyPlan, rewrite, select};
use mticket::core::subject::find_tags;
use mticket::core::texts::Locale;
use mticket::core::texts::Placeholders;

/// Each input, the marker phrase inside the quote its client added, and whether the plan
/// carries a template (the input asks for one with `#template`).
const FIXTURES: &[(&str, &str, bool)] = &[
    ("thunderbird_text_flowed", "CLIENTQUOTE-TBTEXT", false),
    ("thunderbird_html", "CLIENTQUOTE-TBHTML", false),
    ("outlook_original_message", "CLIENTQUOTE-OLORIG", false),
    ("outlook_von_gesendet", "CLIENTQUOTE-OLVON", false),
    ("apple_mail_inline_image", "CLIENTQUOTE-APPLE", false),
    ("gmail_quote", "CLIENTQUOTE-GMAIL", false),
    ("latin1_qp", "CLIENTQUOTE-LATIN1", false),
    ("utf8_base64_pdf", "CLIENTQUOTE-BASE64", false),
    ("placeholders_no_subject", "CLIENTQUOTE-PLACEHOLDERS", true),
];

const POLICIES: &[(ReplyQuote, usize)] = &[
    (ReplyQuote::None, 0),
    (ReplyQuote::Last, 1),
    (ReplyQuote::Last3, 3),
    (ReplyQuote::All, 4),
];

/// The marker phrase of the n-th (1-based, newest first) earlier item.
fn entry_marker(n: usize) -> String {
    format!("QUOTEENTRY-{n}")
}

const TEMPLATE: &str = "TEMPLATE-GRUSS @Briefanrede@, zu Ticket @Ticketnummer@:\n";
const QUEUE_ADDRESS: &str = "support@firma.example";
const CUSTOMER_SALUTATION: &str = "Sehr geehrte Frau Muster";
const NEUTRAL_SALUTATION: &str = "Sehr geehrte Damen und Herren";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite")
}

fn customer() -> Customer {
    Customer {
        number: "10042".into(),
        company1: "Muster & Co. KG".into(),
        salutation: "Frau".into(),
        first_name: "Erika".into(),
        last_name: "Muster".into(),
        street: "Hauptstraße".into(),
        house_no: "5".into(),
        zip: "12345".into(),
        city: "Köln".into(),
        letter_salutation: CUSTOMER_SALUTATION.into(),
        emails: vec!["erika@kunde.example".into()],
        ..Customer::default()
    }
}

/// Four earlier items, newest first: customer mails (two with HTML) and one reply.
fn items() -> Vec<QuoteEntry> {
    let base = 1_795_687_200; // 2026-11-26 10:00 UTC
    vec![
        QuoteEntry {
            kind: ItemKind::Customer,
            from: "Erika Muster <erika@kunde.example>".into(),
            date: base,
            text: format!("Der Drucker blinkt orange. {}\n\nErika\n", entry_marker(1)),
            html: Some(format!(
                "<html><head><style>p {{ margin: 0 }}</style></head><body><p>Der Drucker \
                 blinkt <b>orange</b>. {}</p><p>Erika</p></body></html>",
                entry_marker(1)
            )),
        },
        QuoteEntry {
            kind: ItemKind::Reply,
            from: "Kundendienst Müller GmbH <support@firma.example>".into(),
            date: base - 86_400,
            text: format!("Bitte starten Sie ihn neu. {}\n", entry_marker(2)),
            html: None,
        },
        QuoteEntry {
            kind: ItemKind::Customer,
            from: "Erika Muster <erika@kunde.example>".into(),
            date: base - 2 * 86_400,
            text: format!(
                "Mein Drucker druckt nicht. {} <nicht & so>\n",
                entry_marker(3)
            ),
            html: Some(format!(
                "<div dir=\"ltr\">Mein Drucker druckt nicht. {} &lt;nicht &amp; so&gt;<div>",
                entry_marker(3)
            )),
        },
        QuoteEntry {
            kind: ItemKind::Customer,
            from: "erika@kunde.example".into(),
            date: base - 3 * 86_400,
            text: format!("Erste Anfrage. {}\n", entry_marker(4)),
            html: None,
        },
    ]
}

fn policy_name(p: ReplyQuote) -> &'static str {
    p.as_str()
}

struct Output {
    name: String,
    raw: Vec<u8>,
}

#[test]
fn every_fixture_under_every_policy() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let items = items();
    let customer = customer();
    let to = vec!["Erika Muster <erika@kunde.example>".to_string()];
    let cc = vec!["einkauf@kunde.example".to_string()];
    let references = vec![
        "a1b2c3d4@kunde.example".to_string(),
        "e5f6a7b8@kunde.example".to_string(),
    ];
    let mut outputs: Vec<Output> = Vec::new();
    let mut failures: Vec<String> = Vec::new();

    for (name, client_marker, with_template) in FIXTURES {
        let input = std::fs::read(dir().join(format!("{name}.eml")))
            .unwrap_or_else(|e| panic!("{name}.eml: {e}"));
        let input_mail = mail::parse(&input);
        assert!(
            input_mail.problems.is_empty(),
            "{name}: input has problems {:?}",
            input_mail.problems
        );
        for (policy, quoted) in POLICIES {
            for with_customer in [true, false] {
                let placeholders = Placeholders {
                    customer: with_customer.then_some(&customer),
                    ticket_number: 42,
                    queue: "Support",
                    neutral_salutation: NEUTRAL_SALUTATION,
                };
                let plan = ReplyPlan {
                    from_name: "Kundendienst Müller GmbH",
                    from_address: QUEUE_ADDRESS,
                    to: &to,
                    cc: &cc,
                    subject: "Re: [Support #42] Rückfrage für @Nachname@",
                    message_id: "mt.42.r.7.00c0ffee@gw.firma.example",
                    in_reply_to: Some("e5f6a7b8@kunde.example"),
                    references: &references,
                    date: 1_795_691_000,
                    quote: select(*policy, &items),
                    placeholders: &placeholders,
                    template: with_template.then_some(TEMPLATE),
                    locale: Locale::De,
                    utc_offset: 0,
                    ticket_number: 42,
                };
                let label = format!(
                    "{name}.{}{}",
                    policy_name(*policy),
                    if with_customer { "" } else { ".anonymous" }
                );
                let out = rewrite(&input, &plan).unwrap_or_else(|e| panic!("{label}: {e}"));
                if with_customer {
                    compare_golden(&label, &out, update, &mut failures);
                }
                check(
                    &label,
                    &input_mail,
                    &out,
                    client_marker,
                    *quoted,
                    with_customer,
                    &mut failures,
                );
                outputs.push(Output {
                    name: label,
                    raw: out,
                });
            }
        }
    }
    python_finds_no_defects(&outputs, &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn compare_golden(label: &str, out: &[u8], update: bool, failures: &mut Vec<String>) {
    let path = dir().join("out").join(format!("{label}.eml"));
    if update {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, out).unwrap();
        return;
    }
    match std::fs::read(&path) {
        Ok(want) if want == out => {}
        Ok(_) => failures.push(format!(
            "{label}: differs from {} (UPDATE_GOLDEN=1 regenerates it)",
            path.display()
        )),
        Err(e) => failures.push(format!(
            "{label}: {} missing ({e}); run with UPDATE_GOLDEN=1",
            path.display()
        )),
    }
}

fn check(
    label: &str,
    input: &mail::IncomingMail,
    raw: &[u8],
    client_marker: &str,
    quoted: usize,
    with_customer: bool,
    failures: &mut Vec<String>,
) {
    let mut fail = |what: String| failures.push(format!("{label}: {what}"));
    let out = mail::parse(raw);
    if !out.problems.is_empty() {
        fail(format!("mail::parse reports {:?}", out.problems));
    }

    let tags = find_tags(&out.subject);
    if tags.len() != 1 || tags[0].number != 42 || tags[0].queue != "Support" {
        fail(format!("subject {:?} has tags {tags:?}", out.subject));
    }
    for (field, addr) in [("From", &out.from), ("Reply-To", &out.reply_to)] {
        let addr = addr.as_ref();
        if addr.map(|a| a.address.as_str()) != Some(QUEUE_ADDRESS)
            || addr.and_then(|a| a.name.as_deref()) != Some("Kundendienst Müller GmbH")
        {
            fail(format!("{field} is {addr:?}"));
        }
    }
    let leaked = String::from_utf8_lossy(raw).contains("max.agent");
    if leaked {
        fail("the agent's address leaks".into());
    }

    let text = out.text.replace("\r\n", "\n");
    let html = out.html.clone().unwrap_or_default();
    let mut bodies = vec![("text", text.clone())];
    if input.html.is_some() {
        if out.html.is_none() {
            fail("the HTML part is gone".into());
        }
        bodies.push(("html", html.clone()));
    }
    for (kind, body) in &bodies {
        if body.contains(client_marker) {
            fail(format!(
                "{kind}: the client's quote ({client_marker}) is still there"
            ));
        }
        for n in 1..=4 {
            let marker = entry_marker(n);
            let count = body.matches(&marker).count();
            let want = usize::from(n <= quoted);
            if count != want {
                fail(format!("{kind}: {marker} found {count} times, want {want}"));
            }
        }
        let readable = if *kind == "html" {
            html_to_text(body)
        } else {
            body.clone()
        };
        if let Some(line) = readable.lines().find(|l| {
            l.trim()
                .strip_prefix('#')
                .and_then(|r| r.chars().next())
                .is_some_and(char::is_alphabetic)
        }) {
            fail(format!("{kind}: command line {line:?} left"));
        }
        for placeholder in ["@Nachname@", "@Briefanrede@", "@Ticketnummer@", "@Firma1@"] {
            if body.contains(placeholder) {
                fail(format!("{kind}: {placeholder} not filled"));
            }
        }
    }
    if out.subject.contains('@') {
        fail(format!("subject {:?} not filled", out.subject));
    }
    let want_subject = if with_customer {
        "Re: [Support #42] Rückfrage für Muster"
    } else {
        "Re: [Support #42] Rückfrage für"
    };
    if out.subject != want_subject {
        fail(format!("subject {:?}, want {want_subject:?}", out.subject));
    }
    if label.starts_with("placeholders_no_subject") {
        let (salutation, company_text, company_html) = if with_customer {
            (
                CUSTOMER_SALUTATION,
                "(Muster & Co. KG, Köln)",
                "(Muster &amp; Co. KG, Köln)",
            )
        } else {
            (NEUTRAL_SALUTATION, "(, )", "(, )")
        };
        for (kind, body, company) in [("text", &text, company_text), ("html", &html, company_html)]
        {
            if !body.contains(&format!("{salutation},")) {
                fail(format!("{kind}: salutation {salutation:?} missing"));
            }
            if !body.contains("Ticketnummer 42") || !body.contains("zu Ticket 42:") {
                fail(format!("{kind}: ticket number or template missing"));
            }
            if !body.contains(company) {
                fail(format!("{kind}: {company:?} missing"));
            }
        }
    }

    let sums = |m: &mail::IncomingMail| -> BTreeMap<String, (String, String)> {
        m.attachments
            .iter()
            .map(|a| (a.name.clone(), (a.content_type.clone(), a.sha256.clone())))
            .collect()
    };
    if sums(input) != sums(&out) {
        fail(format!(
            "attachments differ: {:?} became {:?}",
            sums(input),
            sums(&out)
        ));
    }
}

/// Python's `email` package (default policy) parses every output and walks all parts; any
/// defect it notes on a message, a part or a header fails the test.
fn python_finds_no_defects(outputs: &[Output], failures: &mut Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for o in outputs {
        let p = tmp.path().join(format!("{}.eml", o.name));
        std::fs::write(&p, &o.raw).unwrap();
        paths.push(p);
    }
    const SCRIPT: &str = r#"
import sys, email, email.policy
bad = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    for part in msg.walk():
        for d in part.defects:
            bad.append(f"{path}: {part.get_content_type()}: {type(d).__name__}: {d}")
        for name, value in part.items():
            for d in getattr(value, "defects", ()):
                bad.append(f"{path}: header {name}: {type(d).__name__}: {d}")
        if part.get_content_maintype() == "text":
            try:
                part.get_content()
            except Exception as e:
                bad.append(f"{path}: {part.get_content_type()}: cannot decode: {e!r}")
print("\n".join(bad))
print(f"checked {len(sys.argv) - 1}", file=sys.stderr)
"#;
    let result = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(&paths)
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) => panic!(
            "python3 is needed to check the rewritten mails with Python's email package \
             and could not be started ({e}); install it (e.g. `apt-get install python3`)"
        ),
    };
    if !output.status.success() {
        failures.push(format!(
            "python3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    failures.extend(
        stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("python email: {l}")),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("checked {}", outputs.len())),
        "python3 did not check every output: {stderr}"
    );
}
