//! The agents' mailbox: tickets shown as folders and messages over IMAP (and later POP3),
//! for agents who work from their mail client.
pub mod imap;
pub mod pop3;
