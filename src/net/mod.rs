//! Network plumbing shared by every protocol edge: TLS configuration, listeners and the
//! plain-or-TLS stream.
pub mod listener;
pub mod stream;
pub mod tls;
