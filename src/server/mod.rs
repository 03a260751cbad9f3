//! `serve`: wires store, intake (POP3 polling, inbound SMTP/LMTP), the outbox worker and
//! the listeners (inbound SMTP, submission, the agents' IMAP and POP3) together under one
//! supervisor, and stops them cleanly on SIGTERM or Ctrl-C.
//!
//! - [`instance`]: the database and this process's registration on it;
//! - [`supervisor`]: runs every task and restarts one that fails;
//! - `background`: the tasks beside the listeners; `ports`: the listeners.
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{Config, Resolver};
use crate::intake::authcheck::{self, AuthChecker};
use crate::intake::pipeline::Pipeline;
use crate::mailbox::view::Mailbox;
use crate::net::listener::Shutdown;
use crate::net::tls;
use crate::store::Store;

mod background;
pub mod demo;
mod instance;
mod ports;
pub mod supervisor;

use instance::Instance;
use supervisor::{Backoff, Supervisor};

pub async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let tls_server = tls_setup(&config)?;
    let instance = Instance::register(&config).await?;
    if demo {
        demo::setup(&instance.store, &config).await?;
    }
    let gateway = Gateway::new(config, instance.store.clone())?;
    let (stop, shutdown) = Shutdown::channel();
    let mut supervisor = Supervisor::new(shutdown, Backoff::default());
    background::start(&mut supervisor, &gateway, &instance);
    ports::open_all(&mut supervisor, &gateway, tls_server).await?;
    tracing::info!(hostname = %gateway.config.hostname, "mticket is running");

    wait_for_signal().await;
    tracing::info!("stopping");
    supervisor.stop(stop).await;
    instance.sign_off().await;
    tracing::info!("stopped");
    Ok(())
}

/// The ports' TLS settings, with a self-signed certificate made first when none exists.
fn tls_setup(config: &Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    tls::install_crypto_provider();
    if tls::ensure_certificate(&config.tls.cert, &config.tls.key, &config.hostname)? {
        tracing::info!(
            cert = %config.tls.cert.display(),
            key = %config.tls.key.display(),
            "generated a self-signed certificate for localhost (replace it with your own)"
        );
    }
    Ok(tls::server_config(&config.tls.cert, &config.tls.key)?)
}

/// What the background tasks and the ports share.
#[derive(Clone)]
struct Gateway {
    config: Arc<Config>,
    store: Store,
    /// Wakes the outbox worker when new mail is queued.
    wake: Arc<Notify>,
    pipeline: Arc<Pipeline>,
    mailbox: Mailbox,
}

impl Gateway {
    fn new(config: Config, store: Store) -> anyhow::Result<Gateway> {
        let auth = auth_checker(&config)?;
        let config = Arc::new(config);
        let wake = Arc::new(Notify::new());
        let pipeline = Arc::new(Pipeline::new(
            store.clone(),
            config.clone(),
            auth,
            wake.clone(),
        ));
        let mailbox = Mailbox::new(store.clone(), config.locale, &config.hostname);
        Ok(Gateway {
            config,
            store,
            wake,
            pipeline,
            mailbox,
        })
    }
}

/// Where DKIM, SPF and DMARC records come from: the system's resolver, or a file.
fn auth_checker(config: &Config) -> anyhow::Result<AuthChecker> {
    Ok(match config.auth.resolver {
        Resolver::System => AuthChecker::system(),
        Resolver::Static => {
            let records = if config.auth.records.is_empty() {
                HashMap::new()
            } else {
                authcheck::load_static_records(std::path::Path::new(&config.auth.records))?
            };
            AuthChecker::with_static_records(records)
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
