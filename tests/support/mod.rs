//! Real peers for the integration tests: each starts a private instance on loopback and
//! fails with a clear message naming the install step when the peer is missing.
#![allow(dead_code)]
pub mod corpus;
pub mod db;
pub mod dovecot;
pub mod gateway;
pub mod rt;
pub mod sink;
pub mod submit;
