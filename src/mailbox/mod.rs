//! The agents' mailbox: tickets shown as folders and messages over IMAP (and POP3), for
//! agents who work from their mail client.
pub mod folder;
pub mod imap;
pub mod maildrop;
pub mod message;
pub mod pop3;
pub mod view;

use std::time::Duration;

use crate::net::listener::Shutdown;
use crate::store::Store;

/// How often changed tickets get their new message UID: a client in IDLE hears of a change
/// within this and its own poll.
pub const LISTING_INTERVAL: Duration = Duration::from_millis(250);

/// Gives every changed ticket's message its new UID (see `store::mailbox`), until shutdown.
pub async fn keep_listing(store: Store, mut shutdown: Shutdown) {
    loop {
        let pause = match store.list_changed_tickets(2000).await {
            Ok(0) => LISTING_INTERVAL,
            Ok(_) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "listing changed tickets failed; trying again");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
    }
}
