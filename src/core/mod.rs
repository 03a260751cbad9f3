//! The ticket rules: functions of parsed input and current state that return decisions.
//! Nothing here does I/O; the protocol edges and the store call into it.
pub mod checks;
pub mod commands;
pub mod compose;
pub mod filter;
mod html;
pub mod loops;
pub mod mail;
pub mod mime;
pub mod model;
pub mod password;
pub mod quote;
pub mod reply;
pub mod statistics;
pub mod subject;
pub mod submission;
pub mod texts;
pub mod ticket_message;
