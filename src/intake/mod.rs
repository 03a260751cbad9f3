//! Intake: customer mail becomes ticket state (SPEC §3).
//! POP3 polling of each queue's mailbox, the inbound SMTP/LMTP listener, and the pipeline
//! both feed. Mail is acknowledged upstream (DELE, 250) only after its state is committed.
pub mod authcheck;
pub mod pipeline;
pub mod poller;
