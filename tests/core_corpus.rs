//! The code-built corpora against the pure core: every mail parses without panic, the varied
//! ones yield what they promise, the loop rules agree with each mail's `autoresponse`, and
//! gateway-header stripping touches nothing else.

mod support;

use mticket::core::loops::{LoopContext, autoresponse_block};
use mticket::core::mail::{parse, strip_gateway_headers};
use support::corpus::{self, QUEUE_ADDRESS, SECOND_QUEUE_ADDRESS};

/// The gateway's X-Loop marker the corpus assumes.
const MARKER: &str = "mticket@gateway.example.test";

#[test]
fn varied_corpus_parses_as_expected() {
    let mails = corpus::varied();
    assert!(mails.len() >= 40);
    let mut ids = std::collections::HashSet::new();
    for m in &mails {
        let p = parse(&m.raw);
        assert!(
            ids.insert(p.message_id.clone()),
            "{}: duplicate Message-ID",
            m.name
        );
        assert_eq!(p.subject, m.subject, "{}: {}", m.name, m.what);
        assert_eq!(
            p.sender().map(|a| a.address.as_str()),
            m.sender,
            "{}: {}",
            m.name,
            m.what
        );
        assert_eq!(
            p.attachments.len(),
            m.attachments,
            "{}: {:?}",
            m.name,
            p.attachments
        );
        assert!(p.date.is_some(), "{}: no date", m.name);
        assert!(!p.text.trim().is_empty(), "{}: empty text", m.name);
        assert!(p.problems.is_empty(), "{}: {:?}", m.name, p.problems);
    }
}

#[test]
fn varied_corpus_spot_checks() {
    let get = |name: &str| {
        let m = corpus::varied()
            .into_iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no corpus mail {name}"));
        parse(&m.raw)
    };
    assert!(
        get("latin1-body")
            .text
            .contains("Grüße aus München, Ärger mit Öl")
    );
    assert!(get("latin1-8bit").text.contains("Käse und Brötchen für"));
    assert!(get("cp1252-euro").text.contains("100 € „netto“"));
    assert!(get("iso-8859-15").text.contains("50 €"));
    assert!(get("qp-utf8").text.contains("umbrochen wurde. Straße."));
    assert!(get("base64-body").text.contains("Grüße!"));
    let html = get("html-only");
    assert!(html.text.contains("das Gerät ist defekt."), "{}", html.text);
    assert!(!html.text.contains('<'));
    let alt = get("alternative");
    assert_eq!(alt.text.trim(), "Text Teil");
    assert!(alt.html.unwrap().contains("HTML Teil"));
    let pdf = get("mixed-pdf");
    assert_eq!(pdf.attachments[0].name, "Rechnung 4711.pdf");
    assert_eq!(pdf.attachments[0].content_type, "application/pdf");
    assert_eq!(pdf.attachments[0].size, corpus::pdf_bytes().len() as u64);
    let img = get("related-inline-image");
    assert!(img.attachments[0].inline);
    assert_eq!(img.attachments[0].content_id.as_deref(), Some("logo1"));
    assert_eq!(img.attachments[0].content_type, "image/png");
    assert_eq!(
        get("attachment-rfc2231-name").attachments[0].name,
        "Übersicht März.xlsx"
    );
    assert_eq!(
        get("attachment-no-name").attachments[0].name,
        "attachment-1"
    );
    let cc = get("cc-other");
    assert_eq!(cc.cc.len(), 2);
    assert_eq!(cc.cc[0].address, "kollegin@firma-y.example");
    let rt = get("reply-to-differs");
    assert_eq!(rt.from.unwrap().address, "assistenz@firma-x.example");
    let bounce = get("bounce");
    assert_eq!(bounce.return_path.as_deref(), Some(""));
    assert_eq!(bounce.content_type, "multipart/report");
    assert_eq!(
        get("utf8-everywhere").from.unwrap().name.as_deref(),
        Some("Zoë Ünal")
    );
    let thread = get("in-reply-to-unknown");
    assert_eq!(thread.in_reply_to, vec!["unknown-1@elsewhere.example"]);
    assert_eq!(thread.references.len(), 2);
}

#[test]
fn loop_rules_match_expected_autoresponse() {
    let is_queue = |a: &str| a == QUEUE_ADDRESS || a == SECOND_QUEUE_ADDRESS;
    for m in corpus::varied() {
        // The loop check reads the mail as received: stripping X-Loop first would hide a
        // real loop (our own autoresponse coming back).
        let p = parse(&m.raw);
        let recipient = p.sender().map(|a| a.address.clone());
        let ctx = LoopContext {
            x_loop_marker: MARKER,
            is_queue_address: &is_queue,
            recipient: recipient.as_deref(),
        };
        let block = autoresponse_block(&p, &ctx);
        assert_eq!(
            block.is_none(),
            m.autoresponse,
            "{}: {} ({block:?})",
            m.name,
            m.what
        );
    }
}

#[test]
fn hostile_corpus_never_panics_and_reports_problems() {
    let mails = corpus::hostile();
    assert!(mails.len() >= 30);
    for m in &mails {
        assert!(m.raw.len() < 25 * 1024 * 1024, "{} too big", m.name);
        let p = parse(&m.raw);
        let _ = strip_gateway_headers(&m.raw);
        // Mails that are plainly broken must say so.
        if matches!(
            m.name,
            "empty"
                | "only-body"
                | "missing-boundary"
                | "wrong-boundary"
                | "8bit-headers"
                | "unknown-charset"
                | "20000-line-header"
                | "nested-100"
                | "nul-bytes"
                | "header-without-colon"
                | "duplicate-from"
                | "no-from"
        ) {
            assert!(!p.problems.is_empty(), "{}: no problem noted", m.name);
        }
    }
    let big = corpus::oversized(3 * 1024 * 1024 + 17);
    assert_eq!(big.len(), 3 * 1024 * 1024 + 17);
    let p = parse(&big);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.subject, "Grosse Mail");
}

#[test]
fn strip_removes_forged_headers_and_keeps_every_other_byte() {
    let m = corpus::varied()
        .into_iter()
        .find(|m| m.name == "forged-gateway-headers")
        .unwrap();
    let stripped = strip_gateway_headers(&m.raw);
    let text = String::from_utf8(stripped.clone()).unwrap();
    assert!(!text.contains("X-Ticket-Number"));
    assert!(!text.contains("X-Ticket-Status"));
    assert!(!text.contains("X-Loop"));
    let expected: String = String::from_utf8(m.raw.clone())
        .unwrap()
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("X-Ticket-") && !l.starts_with("X-Loop"))
        .collect();
    assert_eq!(text, expected);
    let p = parse(&stripped);
    assert!(p.x_loop.is_empty());
    // Mail without gateway headers comes back byte for byte, hostile ones included.
    for m in corpus::varied().into_iter().chain(corpus::hostile()) {
        if !matches!(m.name, "forged-gateway-headers" | "foreign-x-loop") {
            assert_eq!(strip_gateway_headers(&m.raw), m.raw, "{}", m.name);
        }
    }
}

#[test]
fn followup_builders() {
    let raw = corpus::followup_by_tag("Support", 42, "Kunde <kunde@kunde.example>", 3);
    let p = parse(&raw);
    let tags = mticket::core::subject::find_tags(&p.subject);
    assert_eq!(tags[0].number, 42);
    assert_eq!(p.message_id.as_deref(), Some("followup-tag-3@example.test"));
    let raw = corpus::followup_by_in_reply_to("abc@example.test", "kunde@kunde.example", 4);
    let p = parse(&raw);
    assert_eq!(p.in_reply_to, vec!["abc@example.test"]);
    assert!(mticket::core::subject::find_tags(&p.subject).is_empty());
}

#[tokio::test]
async fn dkim_helper_signs_verifiably() {
    use mticket::intake::authcheck::{AuthChecker, parse_static_records};
    let raw = corpus::varied().remove(0).raw;
    let signed = corpus::dkim_sign(&raw, "kunde.example", "corpus");
    let records =
        parse_static_records(&corpus::dkim_record_lines("kunde.example", "corpus")).unwrap();
    let checker = AuthChecker::with_static_records(records);
    let v = checker.check(&signed, None).await;
    assert!(v.dkim_pass_aligned && !v.suspect, "{}", v.summary);
    let v = checker.check(&raw, None).await;
    assert!(v.suspect, "{}", v.summary);
}
