//! The agents' mailbox: tickets shown as folders and messages over IMAP (and POP3), for
//! agents who work from their mail client.
pub mod folder;
pub mod maildrop;
pub mod message;
pub mod view;

use std::time::Duration;

use crate::mailbox::view::Mailbox;
use crate::net::listener::Shutdown;
use crate::store::Lease;

/// How often changed tickets get their new message UID: a client in IDLE hears of a change
/// within this.
pub const LISTING_INTERVAL: Duration = Duration::from_millis(250);

/// How often an instance that does not list looks whether the lister died.
const LISTER_CHECK: Duration = Duration::from_secs(2);

/// Gives every changed ticket's message its new UID (see `store::mailbox`), until shutdown.
/// First lists every ticket again if the header's form changed since they were listed.
/// Of several gateway instances on one database, the one holding the lister's lease lists.
pub async fn keep_listing(mailbox: Mailbox, mut shutdown: Shutdown) {
    let lease = mailbox.store().lease("mailbox lister");
    loop {
        let stopped = wait_for_lease(&mailbox, &lease, &mut shutdown).await
            || relist_if_the_form_changed(&mailbox, &mut shutdown).await
            || list_while_held(&mailbox, &lease, &mut shutdown).await;
        if stopped {
            return;
        }
        tracing::warn!("another gateway instance lists the mailbox now");
    }
}

/// Waits until this instance holds `lease`; true when shut down first.
async fn wait_for_lease(mailbox: &Mailbox, lease: &Lease, shutdown: &mut Shutdown) -> bool {
    loop {
        match mailbox.store().take_lease(lease).await {
            Ok(true) => {
                tracing::info!("this instance lists the mailbox");
                return false;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the mailbox lister's lease"),
        }
        if sleep_or_stop(LISTER_CHECK, shutdown).await {
            return true;
        }
    }
}

/// True when shut down.
async fn relist_if_the_form_changed(mailbox: &Mailbox, shutdown: &mut Shutdown) -> bool {
    loop {
        match mailbox.relist_if_the_form_changed().await {
            Ok(true) => {
                tracing::info!("the ticket messages' header changed: listing every ticket again")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checking the ticket messages' header failed; trying again");
                if sleep_or_stop(Duration::from_secs(2), shutdown).await {
                    return true;
                }
                continue;
            }
        }
        return false;
    }
}

/// Lists changed tickets for as long as this instance holds `lease`; true when shut down.
async fn list_while_held(mailbox: &Mailbox, lease: &Lease, shutdown: &mut Shutdown) -> bool {
    let mut checked = tokio::time::Instant::now();
    loop {
        if checked.elapsed() >= LISTER_CHECK {
            checked = tokio::time::Instant::now();
            // Gone when this instance was taken for dead (it could not say it is alive).
            if let Ok(false) = mailbox.store().take_lease(lease).await {
                return false;
            }
        }
        let pause = match mailbox.list_changed(2000).await {
            Ok(0) => LISTING_INTERVAL,
            Ok(_) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "listing changed tickets failed; trying again");
                Duration::from_secs(2)
            }
        };
        if sleep_or_stop(pause, shutdown).await {
            return true;
        }
    }
}

/// True when shut down.
async fn sleep_or_stop(pause: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = shutdown.wait() => true,
    }
}
