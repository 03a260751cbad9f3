//! mticket: a mail gateway that turns shared mailboxes into a helpdesk.
//!
//! The folders show the architecture:
//! - [`core`]: the ticket rules, pure functions without I/O;
//! - [`store`]: the one module that holds SQL (SQLite by default, PostgreSQL by URL);
//! - [`intake`]: customer mail in (POP3 polling, inbound SMTP/LMTP) and the pipeline
//!   that turns it into ticket state;
//! - [`submission`]: agents' mail in (SMTP submission) becomes ticket replies and comments;
//! - [`mailbox`]: tickets as folders and messages in the agents' mail clients (IMAP, POP3);
//! - [`login`]: agents' logins, the same on every port;
//! - [`outbox`]: the persistent queue of outgoing mail and its relay worker;
//! - [`protocol`]: the wire protocols, one home each (SMTP server and client, POP3 server
//!   and client, IMAP server), with nothing of the helpdesk in them;
//! - [`net`]: listeners and TLS shared by every protocol;
//! - [`cli`]: the admin command line; [`server`] wires everything for `serve`.
pub mod cli;
pub mod config;
pub mod core;
pub mod intake;
pub mod login;
pub mod mailbox;
pub mod net;
pub mod outbox;
pub mod protocol;
pub mod server;
pub mod store;
pub mod submission;
