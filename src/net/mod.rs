//! Network plumbing shared by every protocol edge: TLS configuration and listeners.
pub mod listener;
pub mod tls;
