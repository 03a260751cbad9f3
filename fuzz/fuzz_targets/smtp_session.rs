//! The SMTP/LMTP server session (inbound, LMTP and submission ports) with the fuzz input as
//! the client's bytes, behind a mail service that decides without I/O. The first byte picks
//! the read size (see `read_size`); the second picks the port: bit 0 LMTP, bit 1 AUTH
//! required (PLAIN and LOGIN allowed without TLS), bit 2 every delivery fails.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mticket::net::listener::{SessionClock, SessionStream, Shutdown};
use mticket::protocol::login_guard::{Checked, GuardConfig, LoginGuard};
use mticket::protocol::smtp_server::{
    AuthPolicy, DeliverError, MailService, Mode, SmtpConfig, Unavailable, run_session,
};
use mticket_fuzz::{RUNTIME, Script, read_size};

const MAX_SIZE: usize = 2000;
const MAX_RECIPIENTS: usize = 3;

/// Takes mail for `@example.com` (anything once logged in); `anna`/`secret` logs in.
/// Senders containing `temp`, `perm` or `refuse` get that failure.
struct Service {
    fail: bool,
}

impl MailService for Service {
    type Agent = String;

    async fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Checked<String>, Unavailable> {
        match (login, password) {
            ("anna", "secret") => Ok(Checked::Agent(login.to_string())),
            ("busy", "secret") => Ok(Checked::TooManySessions),
            ("down", _) => Err(Unavailable::new(std::io::Error::other("store down"))),
            _ => Ok(Checked::Wrong),
        }
    }

    async fn accepts(&self, agent: Option<&String>, rcpt: &str) -> Result<bool, Unavailable> {
        let rcpt = rcpt.to_ascii_lowercase();
        if rcpt.contains("down") {
            return Err(Unavailable::new(std::io::Error::other("store down")));
        }
        Ok(agent.is_some() || rcpt.ends_with("@example.com"))
    }

    async fn deliver(
        &self,
        _agent: Option<&String>,
        mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Vec<Result<(), DeliverError>> {
        assert!(!rcpts.is_empty(), "delivery without recipients");
        assert!(
            rcpts.len() <= MAX_RECIPIENTS,
            "more recipients than allowed"
        );
        assert!(
            raw.starts_with(b"Return-Path:"),
            "mail without Return-Path line"
        );
        let outcome = if self.fail || mail_from.contains("temp") {
            Err(DeliverError::Transient("database busy".into()))
        } else if mail_from.contains("perm") {
            Err(DeliverError::Permanent("parser failed".into()))
        } else if mail_from.contains("gone") {
            Err(DeliverError::NoSuchRecipient)
        } else if mail_from.contains("refuse") {
            Err(DeliverError::Refused {
                code: 550,
                esc: "5.7.1",
                text: "line 1 \"#status nonsense\": no such status\nsecond line".into(),
            })
        } else {
            Ok(())
        };
        rcpts.iter().map(|_| outcome.clone()).collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let (chunk, rest) = read_size(data);
    let (flags, input) = match rest.split_first() {
        Some((f, input)) => (*f, input),
        None => (0, rest),
    };
    let mode = if flags & 1 != 0 {
        Mode::Lmtp
    } else {
        Mode::Smtp
    };
    let mut cfg = SmtpConfig::new(mode, "mx.example.test");
    cfg.max_size = MAX_SIZE;
    cfg.max_recipients = MAX_RECIPIENTS;
    cfg.max_errors = 5;
    if flags & 2 != 0 {
        cfg.auth = Some(AuthPolicy {
            allow_plain: true,
            guard: Arc::new(LoginGuard::new(GuardConfig {
                max_failures: 3,
                lockout: Duration::from_secs(60),
                delay_step: Duration::ZERO,
            })),
        });
    }
    let service = Arc::new(Service {
        fail: flags & 4 != 0,
    });
    RUNTIME.block_on(async {
        let (_keep, shutdown) = Shutdown::channel();
        let stream = SessionStream::Plain(Script::new(input, chunk));
        let _ = run_session(stream, None, Arc::new(cfg), service, shutdown, SessionClock::default()).await;
    });
});
