//! Autoresponder loop rules (README, "How intake behaves"): whether a mail may get an
//! automatic answer at all.
//! The per-sender-per-day cap is counted by the store; everything decidable from the mail
//! itself lives here. Out-of-office notes use the same decision.

use super::mail::IncomingMail;
use std::fmt;

/// What the decision needs besides the mail.
pub struct LoopContext<'a> {
    /// The gateway's own `X-Loop` marker (e.g. `mticket@host`).
    pub x_loop_marker: &'a str,
    /// Is this address (lower-cased) one of our queue addresses?
    pub is_queue_address: &'a (dyn Fn(&str) -> bool + Sync),
    /// The address the answer would go to (usually `mail.sender()`); `None` when there is none.
    pub recipient: Option<&'a str>,
}

/// Why a mail gets no automatic answer; `text()` goes into the ticket history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReplyReason {
    AutoSubmitted(String),
    Precedence(String),
    MailingList,
    OwnLoop,
    NullReturnPath,
    NoSender,
    RobotSender(String),
    DeliveryReport,
    QueueAddress(String),
}

impl NoReplyReason {
    pub fn text(&self) -> String {
        format!("no autoresponse: {}", self.reason())
    }

    /// What about the mail forbids an automatic answer, e.g. `Auto-Submitted: auto-generated`.
    pub fn reason(&self) -> String {
        match self {
            Self::AutoSubmitted(v) => format!("Auto-Submitted: {v}"),
            Self::Precedence(v) => format!("Precedence: {v}"),
            Self::MailingList => "mailing-list mail".into(),
            Self::OwnLoop => "carries our own X-Loop (mail loop)".into(),
            Self::NullReturnPath => "empty return path (bounce)".into(),
            Self::NoSender => "no sender address".into(),
            Self::RobotSender(a) => format!("automated sender {a}"),
            Self::DeliveryReport => "delivery status report".into(),
            Self::QueueAddress(a) => format!("sender {a} is a queue address"),
        }
    }
}

impl fmt::Display for NoReplyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// `None` when an autoresponse may be sent, else the first reason that forbids it.
pub fn autoresponse_block(mail: &IncomingMail, ctx: &LoopContext<'_>) -> Option<NoReplyReason> {
    if let Some(v) = &mail.auto_submitted {
        // RFC 3834: anything but "no" (parameters after ';' do not count) is automatic.
        let kind = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if kind != "no" {
            return Some(NoReplyReason::AutoSubmitted(kind));
        }
    }
    if let Some(p) = &mail.precedence {
        let p = p.trim().to_ascii_lowercase();
        if matches!(p.as_str(), "bulk" | "list" | "junk") {
            return Some(NoReplyReason::Precedence(p));
        }
    }
    if mail.list_id.is_some() || mail.list_unsubscribe.is_some() || mail.list_post.is_some() {
        return Some(NoReplyReason::MailingList);
    }
    let marker = ctx.x_loop_marker.trim();
    if !marker.is_empty()
        && mail
            .x_loop
            .iter()
            .any(|v| v.trim().eq_ignore_ascii_case(marker))
    {
        return Some(NoReplyReason::OwnLoop);
    }
    if mail.return_path.as_deref() == Some("") {
        return Some(NoReplyReason::NullReturnPath);
    }
    if mail.content_type.eq_ignore_ascii_case("multipart/report") {
        return Some(NoReplyReason::DeliveryReport);
    }
    let recipient = ctx.recipient.map(|r| r.trim().to_ascii_lowercase());
    let Some(recipient) = recipient.filter(|r| r.contains('@')) else {
        return Some(NoReplyReason::NoSender);
    };
    // Every address we would answer or that sent it counts: a queue must never answer a
    // queue, whichever header names it.
    let senders = [
        Some(recipient.clone()),
        mail.from.as_ref().map(|a| a.address.clone()),
    ];
    for addr in senders.into_iter().flatten() {
        if (ctx.is_queue_address)(&addr) {
            return Some(NoReplyReason::QueueAddress(addr));
        }
        if is_robot_address(&addr) {
            return Some(NoReplyReason::RobotSender(addr));
        }
    }
    None
}

/// Local parts used by daemons, lists and no-reply senders.
pub fn is_robot_address(address: &str) -> bool {
    let local = address
        .rsplit_once('@')
        .map_or(address, |(l, _)| l)
        .to_ascii_lowercase();
    // `bounces+123=x@…`, `noreply.alerts@…`: judge the first word of the local part.
    let base = local.split(['+', '=']).next().unwrap_or(&local);
    const EXACT: &[&str] = &[
        "mailer-daemon",
        "mailerdaemon",
        "postmaster",
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
        "bounce",
        "bounces",
        "listserv",
        "majordomo",
        "mailman",
        "daemon",
    ];
    EXACT.contains(&base)
        || base.starts_with("owner-")
        || base.ends_with("-request")
        || base.ends_with("-owner")
        || base.starts_with("noreply")
        || base.starts_with("no-reply")
        || base.starts_with("donotreply")
        || base.starts_with("do-not-reply")
        || matches!(
            base.split(['-', '.', '_']).next(),
            Some("bounce" | "bounces" | "noreply" | "donotreply")
        )
        || base.starts_with("mailer-daemon")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mail::Address;

    fn mail(from: &str) -> IncomingMail {
        IncomingMail {
            from: Some(Address {
                name: None,
                address: from.into(),
            }),
            content_type: "text/plain".into(),
            ..Default::default()
        }
    }

    fn decide(m: &IncomingMail) -> Option<NoReplyReason> {
        let is_queue = |a: &str| a == "support@example.test" || a == "sales@example.test";
        let recipient = m.sender().map(|a| a.address.clone());
        let ctx = LoopContext {
            x_loop_marker: "mticket@gw.example.test",
            is_queue_address: &is_queue,
            recipient: recipient.as_deref(),
        };
        autoresponse_block(m, &ctx)
    }

    #[test]
    fn table() {
        use NoReplyReason::*;
        let with = |f: &dyn Fn(&mut IncomingMail)| {
            let mut m = mail("kunde@kunde.example");
            f(&mut m);
            m
        };
        let cases: Vec<(&str, IncomingMail, Option<NoReplyReason>)> = vec![
            ("plain customer", mail("kunde@kunde.example"), None),
            (
                "auto-submitted no",
                with(&|m| m.auto_submitted = Some("no".into())),
                None,
            ),
            (
                "auto-replied",
                with(&|m| m.auto_submitted = Some("auto-replied".into())),
                Some(AutoSubmitted("auto-replied".into())),
            ),
            (
                "auto-generated with params",
                with(&|m| m.auto_submitted = Some("auto-generated; owner=x".into())),
                Some(AutoSubmitted("auto-generated".into())),
            ),
            (
                "bulk",
                with(&|m| m.precedence = Some("bulk".into())),
                Some(Precedence("bulk".into())),
            ),
            (
                "junk",
                with(&|m| m.precedence = Some("junk".into())),
                Some(Precedence("junk".into())),
            ),
            (
                "precedence first-class",
                with(&|m| m.precedence = Some("first-class".into())),
                None,
            ),
            (
                "list-id",
                with(&|m| m.list_id = Some("<l.example>".into())),
                Some(MailingList),
            ),
            (
                "list-unsubscribe",
                with(&|m| m.list_unsubscribe = Some("<mailto:x>".into())),
                Some(MailingList),
            ),
            (
                "list-post",
                with(&|m| m.list_post = Some("<mailto:x>".into())),
                Some(MailingList),
            ),
            (
                "own x-loop",
                with(&|m| m.x_loop = vec!["MTICKET@gw.example.test".into()]),
                Some(OwnLoop),
            ),
            (
                "foreign x-loop",
                with(&|m| m.x_loop = vec!["other".into()]),
                None,
            ),
            (
                "null return path",
                with(&|m| m.return_path = Some(String::new())),
                Some(NullReturnPath),
            ),
            (
                "return path set",
                with(&|m| m.return_path = Some("k@kunde.example".into())),
                None,
            ),
            (
                "dsn",
                with(&|m| m.content_type = "multipart/report".into()),
                Some(DeliveryReport),
            ),
            ("no sender", with(&|m| m.from = None), Some(NoSender)),
            (
                "queue as sender",
                mail("sales@example.test"),
                Some(QueueAddress("sales@example.test".into())),
            ),
            (
                "queue in from, customer reply-to",
                with(&|m| {
                    m.from = Some(Address {
                        name: None,
                        address: "support@example.test".into(),
                    });
                    m.reply_to = Some(Address {
                        name: None,
                        address: "k@kunde.example".into(),
                    })
                }),
                Some(QueueAddress("support@example.test".into())),
            ),
        ];
        for (name, m, want) in cases {
            assert_eq!(decide(&m), want, "{name}");
        }
    }

    #[test]
    fn robots() {
        for a in [
            "MAILER-DAEMON@x",
            "postmaster@x",
            "noreply@x",
            "no-reply@x",
            "no_reply@x",
            "donotreply@x",
            "do-not-reply@x",
            "bounce@x",
            "bounces+abc=k@x",
            "listserv@x",
            "majordomo@x",
            "owner-list@x",
            "list-request@x",
            "noreply.alerts@x",
        ] {
            assert!(is_robot_address(a), "{a}");
            assert!(matches!(
                decide(&mail(&a.to_ascii_lowercase())),
                Some(NoReplyReason::RobotSender(_))
            ));
        }
        for a in [
            "kunde@x",
            "reply@x",
            "bouncer-fan@x",
            "requester@x",
            "owner@x",
        ] {
            assert!(!is_robot_address(a), "{a}");
        }
    }

    #[test]
    fn reasons_have_texts() {
        assert!(NoReplyReason::OwnLoop.to_string().contains("X-Loop"));
    }
}
