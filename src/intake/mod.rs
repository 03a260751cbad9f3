//! Intake: customer mail becomes ticket state (docs/ARCHITECTURE.md, "A customer's mail in").
//! POP3 polling of each queue's mailbox, the inbound SMTP/LMTP listener, and the pipeline
//! both feed. Mail is acknowledged upstream (DELE, 250) only after its state is committed.
pub mod authcheck;
pub mod pipeline;
pub mod poller;
