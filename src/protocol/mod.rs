//! The protocols, each in one home: the wire rules of a server or client session and
//! nothing of the helpdesk. What a session does with a mail, a login or a folder is asked
//! of a trait its user implements (`MailService` for SMTP, `Maildrop` for POP3) or of the
//! mailbox view (IMAP).
pub mod imap_server;
pub mod line;
pub mod login_guard;
pub mod pop3_client;
pub mod pop3_server;
pub mod smtp_client;
pub mod smtp_server;
