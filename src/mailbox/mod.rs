//! The agents' mailbox: tickets shown as folders and messages over IMAP (and POP3), for
//! agents who work from their mail client.
pub mod folder;
pub mod imap;
pub mod maildrop;
pub mod message;
pub mod pop3;
pub mod view;

use std::time::Duration;

use crate::mailbox::view::Mailbox;
use crate::net::listener::Shutdown;

/// How often changed tickets get their new message UID: a client in IDLE hears of a change
/// within this and its own poll.
pub const LISTING_INTERVAL: Duration = Duration::from_millis(250);

/// Gives every changed ticket's message its new UID (see `store::mailbox`), until shutdown.
/// First lists every ticket again if the header's form changed since they were listed.
pub async fn keep_listing(mailbox: Mailbox, mut shutdown: Shutdown) {
    loop {
        match mailbox.relist_if_the_form_changed().await {
            Ok(true) => {
                tracing::info!("the ticket messages' header changed: listing every ticket again")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checking the ticket messages' header failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    _ = shutdown.wait() => return,
                }
            }
        }
        break;
    }
    loop {
        let pause = match mailbox.list_changed(2000).await {
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
