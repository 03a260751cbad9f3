//! A recording upstream SMTP server (tests/peers/smtp_sink.py on aiosmtpd) with STARTTLS,
//! implicit TLS and optional AUTH, its certificate issued by a fresh test CA ([`Sink::ca_pem`]).
//! Faults are injected through a control file the sink re-reads on every transaction.
//! Helpers block (std::thread::sleep): call them outside of code the sink must wait for.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const INSTALL_HINT: &str =
    "the upstream SMTP sink needs python3 with aiosmtpd: `pip install aiosmtpd`";

/// One message as the sink stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 451 4.3.0
    Tempfail,
    /// 550 5.1.1 at RCPT, 554 5.6.0 at DATA
    Reject,
}

impl Fault {
    fn json(f: Option<Fault>) -> serde_json::Value {
        match f {
            None => serde_json::Value::Null,
            Some(Fault::Tempfail) => "tempfail".into(),
            Some(Fault::Reject) => "reject".into(),
        }
    }
}

pub struct Sink {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    smtps_port: u16,
    ca_pem: String,
    auth: Option<String>,
    /// Each message is synced to disk before the 250 (off for throughput runs).
    fsync: bool,
}

/// Runs tests/peers/smtp_sink.py on `dir` and waits until it listens.
fn launch(dir: &Path, port: u16, smtps_port: u16, auth: Option<&str>, fsync: bool) -> Child {
    try_launch(dir, port, smtps_port, auth, fsync).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`launch`]; the error says why the sink did not start.
fn try_launch(
    dir: &Path,
    port: u16,
    smtps_port: u16,
    auth: Option<&str>,
    fsync: bool,
) -> Result<Child, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_sink.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(["--port", &port.to_string()])
        .args(["--smtps-port", &smtps_port.to_string()])
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .arg("--dir")
        .arg(dir.join("mail"))
        .arg("--control")
        .arg(dir.join("control.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(auth) = auth {
        cmd.args(["--auth", auth]);
    }
    if !fsync {
        cmd.arg("--no-fsync");
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {INSTALL_HINT}"));

    // Wait for READY on a thread so a hung interpreter cannot hang the test.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) if line.trim() == "READY" => Ok(child),
        other => {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            let stderr = out
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            Err(format!(
                "SMTP sink did not start ({other:?}); {INSTALL_HINT}\nstderr:\n{stderr}"
            ))
        }
    }
}

impl Sink {
    /// Plain port with STARTTLS offered, plus an implicit-TLS port; no AUTH.
    pub fn start() -> Sink {
        Self::spawn(None, true)
    }

    /// As [`Sink::start`], with AUTH PLAIN/LOGIN required (offered after STARTTLS, and on
    /// the implicit-TLS port).
    pub fn start_with_auth(user: &str, password: &str) -> Sink {
        Self::spawn(Some(format!("{user}:{password}")), true)
    }

    /// As [`Sink::start_fast_with_auth`], for several accounts.
    pub fn start_fast_with_logins(accounts: &[(&str, &str)]) -> Sink {
        let auth: Vec<String> = accounts.iter().map(|(u, p)| format!("{u}:{p}")).collect();
        Self::spawn(Some(auth.join(",")), false)
    }

    /// As [`Sink::start_with_auth`], but messages are written without fsync: a sink for
    /// throughput runs, where receiving is all it should cost.
    pub fn start_fast_with_auth(user: &str, password: &str) -> Sink {
        Self::spawn(Some(format!("{user}:{password}")), false)
    }

    fn spawn(auth: Option<String>, fsync: bool) -> Sink {
        let dir = tempfile::tempdir().expect("temp dir for sink");
        let (ca_pem, cert_pem, key_pem) = test_certificates();
        std::fs::write(dir.path().join("cert.pem"), cert_pem).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key_pem).expect("write key");
        std::fs::create_dir(dir.path().join("mail")).expect("mail dir");
        // Free ports are chosen, then bound by the sink: a process elsewhere on the machine
        // may take one in between, and then other ports are tried.
        let mut attempts = 0;
        let (child, port, smtps_port) = loop {
            let [port, smtps_port] = super::gateway::free_ports();
            match try_launch(dir.path(), port, smtps_port, auth.as_deref(), fsync) {
                Ok(child) => break (child, port, smtps_port),
                Err(e) if e.contains("address already in use") && attempts < 5 => attempts += 1,
                Err(e) => panic!("{e}"),
            }
        };
        Sink {
            child,
            dir,
            port,
            smtps_port,
            ca_pem,
            auth,
            fsync,
        }
    }

    /// Stops the sink as an outage would: connections are refused until [`Sink::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped sink again on the same ports, keeping what it stored.
    pub fn restart(&mut self) {
        self.stop();
        self.child = launch(
            self.dir.path(),
            self.port,
            self.smtps_port,
            self.auth.as_deref(),
            self.fsync,
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
    }

    /// PEM of the CA that issued the sink's certificate (valid for localhost and 127.0.0.1).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Takes effect with the next command the sink handles.
    pub fn set_fault(&self, rcpt: Option<Fault>, data: Option<Fault>, delay: Duration) {
        self.write_control(serde_json::json!({
            "rcpt": Fault::json(rcpt),
            "data": Fault::json(data),
            "delay": delay.as_secs_f64(),
        }));
    }

    /// Faults for these recipients only: at RCPT for each of them, at DATA for a
    /// transaction to any of them. Takes effect with the next command the sink handles.
    pub fn set_fault_for(&self, addresses: &[&str], rcpt: Option<Fault>, data: Option<Fault>) {
        self.write_control(serde_json::json!({
            "rcpt": Fault::json(rcpt),
            "data": Fault::json(data),
            "delay": 0.0,
            "only": addresses,
        }));
    }

    fn write_control(&self, json: serde_json::Value) {
        let path = self.dir.path().join("control.json");
        let tmp = self.dir.path().join("control.json.tmp");
        std::fs::write(&tmp, json.to_string()).expect("write control");
        std::fs::rename(tmp, path).expect("install control");
    }

    pub fn clear_faults(&self) {
        self.set_fault(None, None, Duration::ZERO);
    }

    /// How many messages are stored (without reading them).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.mail_dir())
            .expect("read sink dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    }

    /// The process id of the sink's Python interpreter.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stored message, oldest first.
    pub fn messages(&self) -> Vec<SinkMessage> {
        let mut metas: Vec<PathBuf> = std::fs::read_dir(self.mail_dir())
            .expect("read sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        metas.sort();
        metas
            .into_iter()
            .map(|meta| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&meta).expect("read meta"))
                        .expect("meta is JSON");
                let raw = std::fs::read(meta.with_extension("eml")).expect("read eml");
                SinkMessage {
                    mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw,
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages are stored; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "sink has {} messages, wanted {n}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (CA cert PEM, leaf cert PEM, leaf key PEM); the leaf covers localhost and 127.0.0.1.
pub fn test_certificates() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mticket test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf cert");
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}
