//! mticket: a mail gateway that turns shared mailboxes into a helpdesk.
//!
//! The folders show the architecture:
//! - [`core`]: the ticket rules, pure functions without I/O;
//! - [`store`]: the one module that holds SQL (SQLite by default, PostgreSQL by URL);
//! - [`intake`]: customer mail in (POP3 polling, inbound SMTP/LMTP) and the pipeline
//!   that turns it into ticket state;
//! - [`submission`]: agents' mail in (SMTP submission) becomes ticket replies and comments;
//! - [`mailbox`]: tickets as folders and messages in the agents' mail clients (IMAP);
//! - [`login`]: agents' logins, the same on every port;
//! - [`outbox`]: the persistent queue of outgoing mail and its relay worker;
//! - [`net`]: listeners and TLS shared by every protocol edge;
//! - [`cli`]: the admin command line; [`server`] wires everything for `serve`.
pub mod cli;
pub mod config;
pub mod core;
pub mod intake;
pub mod login;
pub mod mailbox;
pub mod net;
pub mod outbox;
pub mod server;
pub mod store;
pub mod submission;
