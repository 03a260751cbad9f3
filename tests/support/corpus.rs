//! Mail corpora built in code (deterministic) for the integration tests: `varied()` customer
//! mail with what the gateway should make of it, `hostile()` broken mail that must never
//! crash anything, builders for follow-ups, and DKIM signing for spoofing tests.

use base64::Engine;

pub const QUEUE: &str = "Support";
pub const QUEUE_ADDRESS: &str = "support@example.test";
pub const SECOND_QUEUE_ADDRESS: &str = "sales@example.test";
pub const KNOWN_CUSTOMER: &str = "kunde@kunde.example";

/// One corpus mail.
#[derive(Debug, Clone)]
pub struct CorpusMail {
    pub name: &'static str,
    /// What this mail tests.
    pub what: &'static str,
    pub raw: Vec<u8>,
    /// Whether the loop rules allow an autoresponse (queue autoresponder on, first mail of
    /// the day).
    pub autoresponse: bool,
    /// Expected decoded subject (varied corpus only).
    pub subject: &'static str,
    /// Expected lower-cased creator address (Reply-To wins over From), if any.
    pub sender: Option<&'static str>,
    /// Expected number of attachments (inline images included).
    pub attachments: usize,
}

struct Mail {
    n: usize,
    from: String,
    subject: String,
    headers: Vec<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Mail {
    fn new(n: usize, from: &str, subject: &str) -> Self {
        Mail {
            n,
            from: from.into(),
            subject: subject.into(),
            headers: Vec::new(),
            content_type: Some("text/plain; charset=utf-8".into()),
            body: b"Hallo,\r\n\r\nbitte helfen Sie mir.\r\n\r\nGruss\r\n".to_vec(),
        }
    }
    fn h(mut self, header: &str) -> Self {
        self.headers.push(header.into());
        self
    }
    fn ct(mut self, ct: &str) -> Self {
        self.content_type = Some(ct.into());
        self
    }
    fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }
    fn build(self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line = |s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line(&format!("Return-Path: <{}>", bare(&self.from)));
        line(&format!("From: {}", self.from));
        line(&format!("To: Support <{QUEUE_ADDRESS}>"));
        line(&format!("Subject: {}", self.subject));
        line(&format!(
            "Date: Mon, {} Nov 2026 {:02}:{:02}:00 +0100",
            1 + self.n % 28,
            8 + self.n % 10,
            self.n % 60
        ));
        line(&format!("Message-ID: <corpus-{:02}@example.test>", self.n));
        for h in &self.headers {
            line(h);
        }
        if let Some(ct) = &self.content_type {
            line("MIME-Version: 1.0");
            line(&format!("Content-Type: {ct}"));
        }
        line("");
        out.extend_from_slice(&self.body);
        out
    }
}

fn bare(from: &str) -> String {
    match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].to_string(),
        _ => from.to_string(),
    }
}

fn b64(data: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    s.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Bytes that look like a small PDF.
pub fn pdf_bytes() -> Vec<u8> {
    let mut v = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    v.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    v.extend_from_slice(b"\n%%EOF\n");
    v
}

/// A 1x1 PNG.
pub fn png_bytes() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
        .unwrap_or_default()
}

fn mixed(text: &str, parts: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    let mut b = format!(
        "--MIX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
    );
    for (ct, disp, data) in parts {
        b.push_str(&format!(
            "--MIX\r\nContent-Type: {ct}\r\nContent-Disposition: {disp}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(data)
        ));
    }
    b.push_str("--MIX--\r\n");
    b.into_bytes()
}

#[allow(clippy::too_many_arguments)]
fn cm(
    name: &'static str,
    what: &'static str,
    raw: Vec<u8>,
    autoresponse: bool,
    subject: &'static str,
    sender: Option<&'static str>,
    attachments: usize,
) -> CorpusMail {
    CorpusMail {
        name,
        what,
        raw,
        autoresponse,
        subject,
        sender,
        attachments,
    }
}

/// At least 40 varied customer mails to `support@example.test` (queue `Support`).
pub fn varied() -> Vec<CorpusMail> {
    let k = KNOWN_CUSTOMER;
    let mut v = Vec::new();
    v.push(cm(
        "plain-known",
        "plain UTF-8 text from the known customer address",
        Mail::new(
            1,
            "Kunde GmbH <kunde@kunde.example>",
            "Drucker druckt nicht",
        )
        .build(),
        true,
        "Drucker druckt nicht",
        Some(k),
        0,
    ));
    v.push(cm(
        "plain-unknown-1",
        "plain text from an unknown address",
        Mail::new(2, "anna@firma-a.example", "Frage zur Rechnung").build(),
        true,
        "Frage zur Rechnung",
        Some("anna@firma-a.example"),
        0,
    ));
    v.push(cm(
        "plain-unknown-2",
        "another unknown address, display name with umlaut (RFC 2047)",
        Mail::new(
            3,
            "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@firma-b.example>",
            "Lieferung",
        )
        .build(),
        true,
        "Lieferung",
        Some("jm@firma-b.example"),
        0,
    ));
    v.push(cm(
        "plain-unknown-3",
        "unknown address, uppercase address is lower-cased",
        Mail::new(4, "Bob <Bob.Builder@FIRMA-C.example>", "Angebot").build(),
        true,
        "Angebot",
        Some("bob.builder@firma-c.example"),
        0,
    ));
    v.push(cm(
        "plain-unknown-4",
        "unknown address without display name, angle brackets",
        Mail::new(5, "<x@firma-d.example>", "Termin").build(),
        true,
        "Termin",
        Some("x@firma-d.example"),
        0,
    ));
    v.push(cm("html-only", "HTML-only body becomes readable text", Mail::new(6, "html@firma-e.example", "HTML Anfrage").ct("text/html; charset=utf-8").body("<html><head><style>b{}</style></head><body><p>Guten Tag,</p><p>das Ger&auml;t ist <b>defekt</b>.</p></body></html>\r\n").build(), true, "HTML Anfrage", Some("html@firma-e.example"), 0));
    v.push(cm("alternative", "multipart/alternative text + HTML", Mail::new(7, "alt@firma-f.example", "Alternative").ct("multipart/alternative; boundary=\"ALT\"").body("--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nText Teil\r\n--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML Teil</p>\r\n--ALT--\r\n").build(), true, "Alternative", Some("alt@firma-f.example"), 0));
    v.push(cm(
        "mixed-pdf",
        "multipart/mixed with a PDF attachment",
        Mail::new(8, "pdf@firma-g.example", "Rechnung anbei")
            .ct("multipart/mixed; boundary=\"MIX\"")
            .body(mixed(
                "Anbei die Rechnung.",
                &[(
                    "application/pdf; name=\"Rechnung 4711.pdf\"",
                    "attachment; filename=\"Rechnung 4711.pdf\"",
                    pdf_bytes(),
                )],
            ))
            .build(),
        true,
        "Rechnung anbei",
        Some("pdf@firma-g.example"),
        1,
    ));
    v.push(cm(
        "mixed-pdf-image",
        "PDF plus a PNG image attachment",
        Mail::new(9, "img@firma-h.example", "Fotos vom Schaden")
            .ct("multipart/mixed; boundary=\"MIX\"")
            .body(mixed(
                "Siehe Fotos.",
                &[
                    ("application/pdf", "attachment; filename=a.pdf", pdf_bytes()),
                    ("image/png", "attachment; filename=schaden.png", png_bytes()),
                ],
            ))
            .build(),
        true,
        "Fotos vom Schaden",
        Some("img@firma-h.example"),
        2,
    ));
    v.push(cm("related-inline-image", "multipart/related HTML with an inline cid: image", Mail::new(10, "cid@firma-i.example", "Logo").ct("multipart/related; boundary=\"REL\"").body(format!("--REL\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Logo: <img src=\"cid:logo1\"></p>\r\n--REL\r\nContent-Type: image/png\r\nContent-ID: <logo1>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--REL--\r\n", b64(&png_bytes()))).build(), true, "Logo", Some("cid@firma-i.example"), 1));
    v.push(cm(
        "latin1-body",
        "ISO-8859-1 body with umlauts, quoted-printable",
        Mail::new(11, "latin@firma-j.example", "Umlaute")
            .ct("text/plain; charset=ISO-8859-1")
            .h("Content-Transfer-Encoding: quoted-printable")
            .body("Gr=FC=DFe aus M=FCnchen, =C4rger mit =D6l.\r\n")
            .build(),
        true,
        "Umlaute",
        Some("latin@firma-j.example"),
        0,
    ));
    v.push(cm(
        "latin1-8bit",
        "ISO-8859-1 body sent as raw 8-bit",
        Mail::new(12, "latin8@firma-k.example", "8bit")
            .ct("text/plain; charset=iso-8859-1")
            .h("Content-Transfer-Encoding: 8bit")
            .body(b"K\xe4se und Br\xf6tchen f\xfcr 5 Euro\r\n")
            .build(),
        true,
        "8bit",
        Some("latin8@firma-k.example"),
        0,
    ));
    v.push(cm(
        "cp1252-euro",
        "Windows-1252 body with the euro sign and typographic quotes",
        Mail::new(13, "win@firma-l.example", "Preis")
            .ct("text/plain; charset=windows-1252")
            .h("Content-Transfer-Encoding: 8bit")
            .body(b"Der Preis ist 100 \x80 \x84netto\x93.\r\n")
            .build(),
        true,
        "Preis",
        Some("win@firma-l.example"),
        0,
    ));
    v.push(cm(
        "rfc2047-q",
        "RFC 2047 Q-encoded ISO-8859-1 subject",
        Mail::new(
            14,
            "q@firma-m.example",
            "=?ISO-8859-1?Q?Gr=FC=DFe_und_=C4nderung?=",
        )
        .build(),
        true,
        "Grüße und Änderung",
        Some("q@firma-m.example"),
        0,
    ));
    v.push(cm(
        "rfc2047-b",
        "RFC 2047 B-encoded UTF-8 subject",
        Mail::new(
            15,
            "b@firma-n.example",
            "=?UTF-8?B?UmVjaG51bmcgw7xiZXIgMTAwIOKCrA==?=",
        )
        .build(),
        true,
        "Rechnung über 100 €",
        Some("b@firma-n.example"),
        0,
    ));
    v.push(cm(
        "rfc2047-split",
        "RFC 2047 subject split over two encoded words and a folded line",
        Mail::new(
            16,
            "split@firma-o.example",
            "=?UTF-8?Q?Sch=C3=B6ne?=\r\n =?UTF-8?Q?_Gr=C3=BC=C3=9Fe?=",
        )
        .build(),
        true,
        "Schöne Grüße",
        Some("split@firma-o.example"),
        0,
    ));
    v.push(cm("qp-utf8", "quoted-printable UTF-8 body with soft line breaks", Mail::new(17, "qp@firma-p.example", "QP").h("Content-Transfer-Encoding: quoted-printable").body("Sehr geehrte Damen und Herren, dies ist eine sehr lange Zeile, die umbr=\r\nochen wurde. Stra=C3=9Fe.\r\n").build(), true, "QP", Some("qp@firma-p.example"), 0));
    v.push(cm(
        "base64-body",
        "base64-encoded text body",
        Mail::new(18, "b64@firma-q.example", "Base64")
            .h("Content-Transfer-Encoding: base64")
            .body(format!("{}\r\n", b64("Hallo in Base64, Grüße!".as_bytes())))
            .build(),
        true,
        "Base64",
        Some("b64@firma-q.example"),
        0,
    ));
    v.push(cm("flowed", "format=flowed text with soft breaks", Mail::new(19, "flow@firma-r.example", "Flowed").ct("text/plain; charset=utf-8; format=flowed; delsp=no").body("Dies ist ein langer Absatz, der \r\nin mehreren Zeilen \r\nfliesst.\r\n\r\n> Zitat\r\n").build(), true, "Flowed", Some("flow@firma-r.example"), 0));
    v.push(cm(
        "utf8-everywhere",
        "UTF-8 in subject (RFC 6532 raw), name and body",
        Mail::new(
            20,
            "Zoë Ünal <zoe@firma-s.example>",
            "Überweisung für Café – ✓",
        )
        .body("Emoji 🎉 und 日本語.\r\n")
        .build(),
        true,
        "Überweisung für Café – ✓",
        Some("zoe@firma-s.example"),
        0,
    ));
    v.push(cm(
        "auto-replied",
        "Auto-Submitted: auto-replied (an out-of-office): no autoresponse",
        Mail::new(21, "ooo@firma-t.example", "Abwesenheitsnotiz")
            .h("Auto-Submitted: auto-replied")
            .build(),
        false,
        "Abwesenheitsnotiz",
        Some("ooo@firma-t.example"),
        0,
    ));
    v.push(cm(
        "auto-submitted-no",
        "Auto-Submitted: no is a human mail: autoresponse",
        Mail::new(22, "human@firma-u.example", "Ganz normal")
            .h("Auto-Submitted: no")
            .build(),
        true,
        "Ganz normal",
        Some("human@firma-u.example"),
        0,
    ));
    v.push(cm(
        "mailing-list",
        "mailing-list mail (List-Id, Precedence: list): no autoresponse",
        Mail::new(23, "list@lists.example", "[liste] Neuigkeiten")
            .h("List-Id: Neuigkeiten <news.lists.example>")
            .h("Precedence: list")
            .h("List-Unsubscribe: <mailto:leave@lists.example>")
            .build(),
        false,
        "[liste] Neuigkeiten",
        Some("list@lists.example"),
        0,
    ));
    v.push(cm(
        "precedence-bulk",
        "Precedence: bulk newsletter: no autoresponse",
        Mail::new(24, "news@shop.example", "Angebote der Woche")
            .h("Precedence: bulk")
            .build(),
        false,
        "Angebote der Woche",
        Some("news@shop.example"),
        0,
    ));
    let mut bounce = Mail::new(25, "MAILER-DAEMON@mx.firma-v.example", "Undelivered Mail Returned to Sender").ct("multipart/report; report-type=delivery-status; boundary=\"DSN\"").body("--DSN\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n--DSN\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.firma-v.example\r\n\r\nFinal-Recipient: rfc822; weg@firma-v.example\r\nAction: failed\r\nStatus: 5.1.1\r\n--DSN\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.test\r\nSubject: [Support #1] x\r\n--DSN--\r\n").build();
    replace_once(
        &mut bounce,
        b"Return-Path: <MAILER-DAEMON@mx.firma-v.example>",
        b"Return-Path: <>",
    );
    v.push(cm(
        "bounce",
        "bounce: MAILER-DAEMON, empty Return-Path, multipart/report: no autoresponse",
        bounce,
        false,
        "Undelivered Mail Returned to Sender",
        Some("mailer-daemon@mx.firma-v.example"),
        2,
    ));
    v.push(cm(
        "from-second-queue",
        "From is the second queue address: never answer a queue",
        Mail::new(26, "Sales <sales@example.test>", "Weiterleitung an Support").build(),
        false,
        "Weiterleitung an Support",
        Some(SECOND_QUEUE_ADDRESS),
        0,
    ));
    v.push(cm("forged-gateway-headers", "forged X-Ticket-Number / X-Loop (our marker `mticket@gateway.example.test`) from outside: stripped before storing, never trusted; the loop check still sees our X-Loop, so no autoresponse", Mail::new(27, "forger@firma-w.example", "Bitte Ticket 1 schliessen").h("X-Ticket-Number: 1").h("X-Ticket-Status: closed").h("X-Loop: mticket@gateway.example.test").build(), false, "Bitte Ticket 1 schliessen", Some("forger@firma-w.example"), 0));
    v.push(cm(
        "reply-to-differs",
        "Reply-To differs from From: Reply-To is the creator",
        Mail::new(28, "assistenz@firma-x.example", "Im Auftrag")
            .h("Reply-To: Chef <chef@firma-x.example>")
            .build(),
        true,
        "Im Auftrag",
        Some("chef@firma-x.example"),
        0,
    ));
    v.push(cm(
        "reply-to-known",
        "From unknown, Reply-To the known customer",
        Mail::new(29, "sekretariat@kunde.example", "Bestellung")
            .h(&format!("Reply-To: {k}"))
            .build(),
        true,
        "Bestellung",
        Some(k),
        0,
    ));
    v.push(cm(
        "cc-other",
        "CC to another person and to the queue itself",
        Mail::new(30, "cc@firma-y.example", "Mit Kollegin")
            .h("Cc: Kollegin <kollegin@firma-y.example>, support@example.test")
            .build(),
        true,
        "Mit Kollegin",
        Some("cc@firma-y.example"),
        0,
    ));
    v.push(cm(
        "noreply-sender",
        "noreply sender: no autoresponse",
        Mail::new(31, "noreply@portal.example", "Ihr Passwort").build(),
        false,
        "Ihr Passwort",
        Some("noreply@portal.example"),
        0,
    ));
    v.push(cm(
        "postmaster-sender",
        "postmaster sender: no autoresponse",
        Mail::new(32, "postmaster@firma-z.example", "Hinweis").build(),
        false,
        "Hinweis",
        Some("postmaster@firma-z.example"),
        0,
    ));
    v.push(cm(
        "empty-subject",
        "no Subject text",
        Mail::new(33, "leer@firma-aa.example", "").build(),
        true,
        "",
        Some("leer@firma-aa.example"),
        0,
    ));
    v.push(cm(
        "reply-prefixes",
        "subject with reply prefixes but no tag: a new ticket",
        Mail::new(34, "re@firma-ab.example", "AW: Re: Fwd: Alte Sache").build(),
        true,
        "AW: Re: Fwd: Alte Sache",
        Some("re@firma-ab.example"),
        0,
    ));
    v.push(cm("forwarded-message", "a forwarded mail as message/rfc822 attachment", Mail::new(35, "fwd@firma-ac.example", "Fwd: Problem").ct("multipart/mixed; boundary=\"MIX\"").body("--MIX\r\nContent-Type: text/plain\r\n\r\nSiehe unten.\r\n--MIX\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\nFrom: orig@firma-ac.example\r\nSubject: Problem\r\n\r\nOriginal.\r\n--MIX--\r\n").build(), true, "Fwd: Problem", Some("fwd@firma-ac.example"), 1));
    v.push(cm(
        "attachment-rfc2231-name",
        "attachment with an RFC 2231 encoded UTF-8 file name",
        Mail::new(36, "name@firma-ad.example", "Datei")
            .ct("multipart/mixed; boundary=\"MIX\"")
            .body(mixed(
                "Datei anbei.",
                &[(
                    "application/octet-stream",
                    "attachment; filename*=UTF-8''%C3%9Cbersicht%20M%C3%A4rz.xlsx",
                    b"PK\x03\x04 data".to_vec(),
                )],
            ))
            .build(),
        true,
        "Datei",
        Some("name@firma-ad.example"),
        1,
    ));
    v.push(cm(
        "attachment-no-name",
        "attachment without any file name gets a fallback name",
        Mail::new(37, "noname@firma-ae.example", "Ohne Namen")
            .ct("multipart/mixed; boundary=\"MIX\"")
            .body(mixed(
                "Anhang ohne Namen.",
                &[("application/octet-stream", "attachment", vec![1, 2, 3, 4])],
            ))
            .build(),
        true,
        "Ohne Namen",
        Some("noname@firma-ae.example"),
        1,
    ));
    v.push(cm(
        "lf-only",
        "LF-only line endings (as some POP3 servers deliver)",
        Mail::new(38, "lf@firma-af.example", "Nur LF")
            .build()
            .into_iter()
            .filter(|b| *b != b'\r')
            .collect(),
        true,
        "Nur LF",
        Some("lf@firma-af.example"),
        0,
    ));
    v.push(cm("outlook-signature", "Outlook-style HTML alternative with Windows-1252 QP", Mail::new(39, "outlook@firma-ag.example", "Outlook").ct("multipart/alternative; boundary=\"ALT\"").body("--ALT\r\nContent-Type: text/plain; charset=\"windows-1252\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMit freundlichen Gr=FC=DFen =96 Team =80\r\n--ALT\r\nContent-Type: text/html; charset=\"windows-1252\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Mit freundlichen Gr=FC=DFen</p>\r\n--ALT--\r\n").build(), true, "Outlook", Some("outlook@firma-ag.example"), 0));
    v.push(cm(
        "known-customer-again",
        "a second, unrelated mail from the known customer",
        Mail::new(40, k, "Neue Frage").build(),
        true,
        "Neue Frage",
        Some(k),
        0,
    ));
    v.push(cm(
        "in-reply-to-unknown",
        "In-Reply-To / References naming mail the gateway never saw",
        Mail::new(41, "thread@firma-ah.example", "Re: Etwas")
            .h("In-Reply-To: <unknown-1@elsewhere.example>")
            .h("References: <unknown-0@elsewhere.example> <unknown-1@elsewhere.example>")
            .build(),
        true,
        "Re: Etwas",
        Some("thread@firma-ah.example"),
        0,
    ));
    v.push(cm(
        "foreign-x-loop",
        "an X-Loop of another system is not ours: autoresponse (still stripped before storing)",
        Mail::new(42, "loop@firma-ai.example", "Fremdes X-Loop")
            .h("X-Loop: otrs@firma-ai.example")
            .build(),
        true,
        "Fremdes X-Loop",
        Some("loop@firma-ai.example"),
        0,
    ));
    v.push(cm(
        "iso-8859-15",
        "ISO-8859-15 body with the euro sign",
        Mail::new(43, "latin9@firma-aj.example", "Latin-9")
            .ct("text/plain; charset=iso-8859-15")
            .h("Content-Transfer-Encoding: 8bit")
            .body(b"Kosten: 50 \xa4\r\n")
            .build(),
        true,
        "Latin-9",
        Some("latin9@firma-aj.example"),
        0,
    ));
    v
}

fn replace_once(raw: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    if let Some(i) = raw.windows(from.len()).position(|w| w == from) {
        raw.splice(i..i + from.len(), to.iter().copied());
    }
}

/// A follow-up carrying the ticket tag in its subject (n makes the Message-ID unique).
pub fn followup_by_tag(queue: &str, number: i64, from: &str, n: usize) -> Vec<u8> {
    format!(
        "Return-Path: <{f}>\r\nFrom: {from}\r\nTo: {QUEUE_ADDRESS}\r\nSubject: Re: [{queue} #{number}] Nachfrage\r\n\
Date: Tue, 3 Nov 2026 10:{:02}:00 +0100\r\nMessage-ID: <followup-tag-{n}@example.test>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nNachfrage Nummer {n}.\r\n",
        n % 60,
        f = bare(from)
    )
    .into_bytes()
}

/// A follow-up without tag that names `message_id` (without brackets) in In-Reply-To and References.
pub fn followup_by_in_reply_to(message_id: &str, from: &str, n: usize) -> Vec<u8> {
    format!(
        "Return-Path: <{f}>\r\nFrom: {from}\r\nTo: {QUEUE_ADDRESS}\r\nSubject: Re: Nachfrage ohne Nummer\r\n\
Date: Tue, 3 Nov 2026 11:{:02}:00 +0100\r\nMessage-ID: <followup-irt-{n}@example.test>\r\n\
In-Reply-To: <{message_id}>\r\nReferences: <{message_id}>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nAntwort Nummer {n}.\r\n",
        n % 60,
        f = bare(from)
    )
    .into_bytes()
}

fn h(name: &'static str, what: &'static str, raw: Vec<u8>) -> CorpusMail {
    CorpusMail {
        name,
        what,
        raw,
        autoresponse: false,
        subject: "",
        sender: None,
        attachments: 0,
    }
}

const HDR: &str = "From: evil@hostile.example\r\nTo: support@example.test\r\nSubject: hostile\r\nMessage-ID: <hostile@example.test>\r\n";

fn with_hdr(extra: &str, body: impl AsRef<[u8]>) -> Vec<u8> {
    let mut v = format!("{HDR}{extra}\r\n").into_bytes();
    v.extend_from_slice(body.as_ref());
    v
}

/// At least 30 broken or hostile mails, each under 25 MB. Parsing must never panic.
pub fn hostile() -> Vec<CorpusMail> {
    let mut v = Vec::new();
    v.push(h("empty", "zero bytes", Vec::new()));
    v.push(h(
        "whitespace",
        "only blank lines",
        b"\r\n\r\n\r\n".to_vec(),
    ));
    v.push(h(
        "only-headers",
        "headers, no blank line, no body",
        HDR.as_bytes().to_vec(),
    ));
    v.push(h(
        "only-body",
        "no headers at all, just text",
        b"just some text\r\nwithout any header\r\n".to_vec(),
    ));
    v.push(h(
        "truncated-mime",
        "multipart cut off in the middle of a part",
        with_hdr(
            "Content-Type: multipart/mixed; boundary=B\r\n",
            "--B\r\nContent-Type: text/plain\r\n\r\nstart of te",
        ),
    ));
    v.push(h(
        "missing-boundary",
        "multipart without boundary parameter",
        with_hdr(
            "Content-Type: multipart/mixed\r\n",
            "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n",
        ),
    ));
    v.push(h(
        "wrong-boundary",
        "boundary parameter never appears in the body",
        with_hdr(
            "Content-Type: multipart/mixed; boundary=NOPE\r\n",
            "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n",
        ),
    ));
    v.push(h(
        "8bit-headers",
        "raw Latin-1 bytes in Subject and From name",
        b"From: J\xfcrgen <j@hostile.example>\r\nSubject: Gr\xfc\xdfe \xff\xfe\r\n\r\nbody\r\n"
            .to_vec(),
    ));
    v.push(h(
        "unknown-charset",
        "unknown charset name",
        with_hdr(
            "Content-Type: text/plain; charset=x-unknown-klingon\r\n",
            b"qapla\xe4\r\n",
        ),
    ));
    v.push(h(
        "20000-line-header",
        "a header section of 20,000 lines",
        {
            let mut s = String::from(HDR);
            for i in 0..20_000 {
                s.push_str(&format!("X-Junk-{i}: {}\r\n", "y".repeat(10)));
            }
            s.push_str("\r\nbody\r\n");
            s.into_bytes()
        },
    ));
    v.push(h(
        "20000-line-folded",
        "one header folded over 20,000 lines",
        {
            let mut s = format!("{HDR}X-Long: start\r\n");
            for _ in 0..20_000 {
                s.push_str(" more\r\n");
            }
            s.push_str("\r\nbody\r\n");
            s.into_bytes()
        },
    ));
    v.push(h("nested-100", "multipart nested 100 deep", {
        let mut body = String::new();
        for i in 0..100 {
            body.push_str(&format!(
                "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
                i + 1
            ));
        }
        body.push_str("--b100\r\nContent-Type: text/plain\r\n\r\ndeep\r\n--b100--\r\n");
        for i in (0..100).rev() {
            body.push_str(&format!("--b{i}--\r\n"));
        }
        with_hdr("Content-Type: multipart/mixed; boundary=b0\r\n", body)
    }));
    v.push(h("nested-rfc822-50", "message/rfc822 nested 50 deep", {
        let mut m = b"From: inner@x\r\nSubject: inner\r\n\r\ncore\r\n".to_vec();
        for _ in 0..50 {
            let mut outer = b"From: wrap@x\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
            outer.extend_from_slice(&m);
            m = outer;
        }
        let mut out = HDR.as_bytes().to_vec();
        out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        out.extend_from_slice(&m);
        out
    }));
    v.push(h(
        "nul-bytes",
        "NUL bytes in headers and body",
        b"From: a\0b@hostile.example\r\nSubject: nul\0here\r\n\r\nbo\0dy\0\r\n".to_vec(),
    ));
    v.push(h(
        "bare-cr-lf-mix",
        "bare CR, bare LF and CRLF mixed",
        b"From: a@hostile.example\rSubject: cr\nTo: b@x\r\n\r\nline1\rline2\nline3\r\n".to_vec(),
    ));
    v.push(h(
        "2mb-line",
        "a single 2 MB body line",
        with_hdr("", "x".repeat(2 * 1024 * 1024)),
    ));
    v.push(h(
        "2mb-header-line",
        "a single 1 MB header line",
        with_hdr(&format!("X-Huge: {}\r\n", "h".repeat(1024 * 1024)), "b\r\n"),
    ));
    v.push(h(
        "base64-garbage",
        "base64 transfer encoding with garbage",
        with_hdr(
            "Content-Transfer-Encoding: base64\r\n",
            "!!!not*base64$$$\r\n====\r\nQUJD\r\n",
        ),
    ));
    v.push(h(
        "qp-garbage",
        "quoted-printable with invalid escapes",
        with_hdr(
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "=ZZ=4=\r\n=\r\n",
        ),
    ));
    v.push(h("invalid-rfc2047", "broken encoded words", b"From: =?UTF-8?B?!!!?= <a@hostile.example>\r\nSubject: =?UTF-8?Q?unterminated =?bogus?X?abc?= =?UTF-8?B?w7?=\r\n\r\nb\r\n".to_vec()));
    v.push(h(
        "10000-params",
        "a Content-Type with 10,000 parameters",
        {
            let mut ct = String::from("Content-Type: text/plain");
            for i in 0..10_000 {
                ct.push_str(&format!(";\r\n p{i}=v{i}"));
            }
            ct.push_str("\r\n");
            with_hdr(&ct, "b\r\n")
        },
    ));
    v.push(h(
        "header-without-colon",
        "a header line without colon",
        b"From: a@hostile.example\r\nThis line has no colon\r\nSubject: s\r\n\r\nb\r\n".to_vec(),
    ));
    v.push(h(
        "duplicate-from",
        "two From headers",
        b"From: a@hostile.example\r\nFrom: b@other.example\r\nSubject: dup\r\n\r\nb\r\n".to_vec(),
    ));
    v.push(h(
        "10kb-message-id",
        "a Message-ID of 10 KB",
        with_hdr(
            &format!("Message-ID: <{}@x>\r\n", "m".repeat(10 * 1024)),
            "b\r\n",
        ),
    ));
    v.push(h("non-ascii-message-id", "non-ASCII in Message-ID", "From: a@hostile.example\r\nMessage-ID: <ünïcödé-€@höst.example>\r\nIn-Reply-To: <\u{ff}\u{fe}@x>\r\n\r\nb\r\n".as_bytes().to_vec()));
    v.push(h(
        "invalid-utf8-body",
        "declared UTF-8, invalid bytes",
        with_hdr(
            "Content-Type: text/plain; charset=utf-8\r\n",
            b"\xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc\r\n",
        ),
    ));
    v.push(h(
        "invalid-utf8-header",
        "invalid UTF-8 in a header value",
        b"From: a@hostile.example\r\nSubject: \xc3\x28\xf0\x28\x8c\r\n\r\nb\r\n".to_vec(),
    ));
    v.push(h(
        "no-from",
        "no From header at all",
        b"To: support@example.test\r\nSubject: anonymous\r\n\r\nb\r\n".to_vec(),
    ));
    v.push(h(
        "garbage-from",
        "a From header that is not an address",
        b"From: <<<@@@>>>\r\nSubject: s\r\n\r\nb\r\n".to_vec(),
    ));
    v.push(h(
        "group-from",
        "From as an empty group",
        b"From: undisclosed-recipients:;\r\nSubject: s\r\n\r\nb\r\n".to_vec(),
    ));
    v.push(h(
        "binary-junk",
        "random bytes, no structure",
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    ));
    v.push(h("boundary-in-boundary", "boundaries that prefix each other", with_hdr("Content-Type: multipart/mixed; boundary=a\r\n", "--a\r\nContent-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n\r\nx\r\n--a--\r\n--ab--\r\n")));
    v.push(h("many-parts", "5,000 tiny MIME parts", {
        let mut b = String::new();
        for i in 0..5_000 {
            b.push_str(&format!(
                "--P\r\nContent-Type: application/octet-stream; name=f{i}\r\n\r\n{i}\r\n"
            ));
        }
        b.push_str("--P--\r\n");
        with_hdr("Content-Type: multipart/mixed; boundary=P\r\n", b)
    }));
    v.push(h(
        "bad-date",
        "an unparseable Date header",
        with_hdr("Date: the day after tomorrow\r\n", "b\r\n"),
    ));
    v.push(h(
        "mbox-from-line",
        "an mbox From_ line before the headers",
        format!("From evil@hostile.example Mon Nov  2 10:00:00 2026\r\n{HDR}\r\nbody\r\n")
            .into_bytes(),
    ));
    v.push(h(
        "ctl-in-subject",
        "control characters and escape sequences in Subject",
        b"From: a@hostile.example\r\nSubject: \x1b[31mred\x07 \x08\x7f\r\n\r\nb\r\n".to_vec(),
    ));
    v
}

/// A valid plain-text mail of exactly `bytes` bytes (at least the header size).
pub fn oversized(bytes: usize) -> Vec<u8> {
    let mut v = format!(
        "From: big@firma.example\r\nTo: {QUEUE_ADDRESS}\r\nSubject: Grosse Mail\r\n\
Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nMessage-ID: <oversized-{bytes}@example.test>\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while v.len() + line.len() <= bytes {
        v.extend_from_slice(line);
    }
    while v.len() < bytes {
        v.push(b'x');
    }
    v
}

// ---------------------------------------------------------------------------------------
// DKIM signing for spoofing tests. The key is the ed25519 test pair of RFC 8463 appendix A:
// public, never a secret.

pub const DKIM_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
pub const DKIM_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// `raw` with a DKIM-Signature of `domain`/`selector` prepended.
pub fn dkim_sign(raw: &[u8], domain: &str, selector: &str) -> Vec<u8> {
    use mail_auth::{
        common::{crypto::Ed25519Key, headers::HeaderWriter},
        dkim::DkimSigner,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = Ed25519Key::from_seed_and_public_key(
        &b64.decode(DKIM_SEED).expect("seed"),
        &b64.decode(DKIM_PUBLIC).expect("public key"),
    )
    .expect("RFC 8463 key pair");
    let sig = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(raw)
        .expect("sign");
    let mut out = sig.to_header().into_bytes();
    out.extend_from_slice(raw);
    out
}

/// The DNS records a static-resolver test needs for `domain`: DKIM key at `selector`,
/// DMARC `p=reject`, SPF `-all` — as lines for `load_static_records`.
pub fn dkim_record_lines(domain: &str, selector: &str) -> String {
    format!(
        "{selector}._domainkey.{domain} \"v=DKIM1; k=ed25519; p={DKIM_PUBLIC}\"\n\
_dmarc.{domain} \"v=DMARC1; p=reject\"\n\
{domain} \"v=spf1 -all\"\n"
    )
}
