//! The gateway's own SMTP server (the submission port's session code: STARTTLS, AUTH,
//! DATA) with a delivery that keeps nothing, on its own runtime in this process: what a
//! mail costs the gateway's SMTP layer without any ticket work. Its certificate comes from
//! a fresh test CA ([`Discard::ca`]); it knows one password, for any login.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mticket::net::listener::{Listener, ListenerConfig, Shutdown, ShutdownHandle};
use mticket::net::tls;
use mticket::protocol::login_guard::{Checked, GuardConfig, LoginGuard};
use mticket::protocol::smtp_server::{
    self, AuthPolicy, DeliverError, MailService, Mode, SmtpConfig, Unavailable,
};

use super::procstat;
use super::sink::test_certificates;

/// Thread name of the server's runtime, to tell its CPU from the rest of the process.
const THREAD: &str = "discard";

struct Service {
    password: String,
    delivered: AtomicUsize,
}

impl MailService for Service {
    type Agent = String;

    async fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Checked<String>, Unavailable> {
        Ok(match password == self.password {
            true => Checked::Agent(login.to_string()),
            false => Checked::Wrong,
        })
    }

    async fn accepts(&self, agent: Option<&String>, _rcpt: &str) -> Result<bool, Unavailable> {
        Ok(agent.is_some())
    }

    async fn deliver(
        &self,
        _agent: Option<&String>,
        _mail_from: &str,
        rcpts: &[String],
        _raw: &[u8],
    ) -> Vec<Result<(), DeliverError>> {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        rcpts.iter().map(|_| Ok(())).collect()
    }
}

pub struct Discard {
    port: u16,
    ca: PathBuf,
    service: Arc<Service>,
    stop: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Discard {
    /// Listens on a free loopback port (STARTTLS, AUTH PLAIN/LOGIN after TLS); key and
    /// certificates are written to `dir`.
    pub fn start(dir: &Path, password: &str) -> Discard {
        let (ca_pem, cert_pem, key_pem) = test_certificates();
        let ca = dir.join("discard-ca.pem");
        let cert = dir.join("discard-cert.pem");
        let key = dir.join("discard-key.pem");
        std::fs::write(&ca, ca_pem).expect("write CA");
        std::fs::write(&cert, cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");
        let service = Arc::new(Service {
            password: password.to_string(),
            delivered: AtomicUsize::new(0),
        });
        let (stop, shutdown) = Shutdown::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        let served = service.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name(THREAD)
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let addr = "127.0.0.1:0".parse().unwrap();
                let listener = Listener::bind(ListenerConfig::new(addr, THREAD))
                    .await
                    .expect("bind");
                let _ = tx.send(listener.local_addr().expect("local addr").port());
                let mut cfg = SmtpConfig::new(Mode::Smtp, "discard.test");
                cfg.tls = Some(tls::server_config(&cert, &key).expect("TLS config"));
                cfg.auth = Some(AuthPolicy {
                    allow_plain: false,
                    guard: Arc::new(LoginGuard::new(GuardConfig::default())),
                });
                smtp_server::serve(listener, cfg, served, shutdown).await;
            });
        });
        let port = rx.recv().expect("discard server did not start");
        Discard {
            port,
            ca,
            service,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM file of the CA that issued the server's certificate.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// Mails taken so far.
    pub fn delivered(&self) -> usize {
        self.service.delivered.load(Ordering::Relaxed)
    }

    /// CPU seconds of the server's runtime threads so far.
    pub fn cpu(&self) -> f64 {
        procstat::cpu_by_thread(std::process::id())
            .into_iter()
            .filter(|(name, _)| name.starts_with(THREAD))
            .map(|(_, secs)| secs)
            .sum()
    }
}

impl Drop for Discard {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
