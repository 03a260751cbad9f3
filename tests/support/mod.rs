//! Real peers for the integration tests and benchmarks: each starts a private instance on
//! loopback and fails with a clear message naming the install step when the peer is
//! missing. `load` and `procstat` are the benchmarks' measuring tools.
#![allow(dead_code)]
pub mod corpus;
pub mod db;
pub mod discard;
pub mod dovecot;
pub mod gateway;
pub mod load;
pub mod procstat;
pub mod rt;
pub mod sink;
pub mod submit;
