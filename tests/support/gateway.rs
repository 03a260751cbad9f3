//! A gateway under test: the real `mticket` binary, started as its own process with a
//! config in a temp folder and free loopback ports, so tests can kill and restart it.
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::db;
use super::dovecot::Dovecot;
use super::sink::Sink;

/// Writes PEM certificates into one file, for a queue's `--tls-ca`.
pub fn ca_file(dir: &Path, pems: &[String]) -> String {
    let path = dir.join(format!("ca-{}.pem", rand::random::<u32>()));
    std::fs::write(&path, pems.concat()).unwrap();
    path.display().to_string()
}

/// `N` different free loopback ports for listeners (held together while chosen, so none
/// repeats). They come from below the kernel's ephemeral range (32768 and up on Linux),
/// where no client connection of a parallel test can take one before its server binds it.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut held: Vec<std::net::TcpListener> = Vec::with_capacity(N);
    while held.len() < N {
        let port = rand::random_range(10_000..32_000);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The database the gateway uses, for tests that reach into the store.
    pub db_url: String,
    pub inbound_port: u16,
    pub lmtp_port: u16,
    /// Agents' SMTP submission: STARTTLS, and implicit TLS.
    pub submission_port: u16,
    pub submissions_port: u16,
    pub imap_port: u16,
    pub imaps_port: u16,
    /// Agents' POP3: STLS, and implicit TLS.
    pub pop3_port: u16,
    pub pop3s_port: u16,
    child: Option<Child>,
    starts: u32,
}

pub struct Options {
    pub poll_interval: &'static str,
    pub max_message_size: &'static str,
    pub max_per_sender_per_day: u32,
    /// `name TXT` lines for the static resolver (SPF/DKIM/DMARC records).
    pub dns_records: String,
    pub locale: &'static str,
    /// `sqlite` or `postgres`; `None` follows `MTICKET_TEST_DB`.
    pub backend: Option<&'static str>,
    /// `outbox.give_up_after`: how long outgoing mail is retried.
    pub give_up_after: &'static str,
    /// The address the submission ports listen on (loopback unless set).
    pub submission_host: &'static str,
    /// `submission.allow_plain_on_loopback`.
    pub allow_plain_on_loopback: bool,
    /// Another gateway's database, for a second instance beside it (`Gateway::db_url`).
    pub database_url: Option<String>,
    /// `listen.max_connections_per_client`; `None` keeps the gateway's default. The tests'
    /// clients all connect from 127.0.0.1, where a real gateway's come from many addresses,
    /// so the tests' default is above the global limit.
    pub max_connections_per_client: Option<usize>,
    /// `listen.pre_auth_timeout`; `None` keeps the gateway's default.
    pub pre_auth_timeout: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            poll_interval: "300ms",
            max_message_size: "25MB",
            max_per_sender_per_day: 5,
            dns_records: String::new(),
            locale: "en",
            backend: None,
            give_up_after: "2days",
            submission_host: "127.0.0.1",
            allow_plain_on_loopback: false,
            database_url: None,
            max_connections_per_client: Some(10_000),
            pre_auth_timeout: None,
        }
    }
}

impl Gateway {
    /// Writes the config and runs migrations, but does not start `serve`.
    pub fn new(opts: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let [
            inbound_port,
            lmtp_port,
            submission_port,
            submissions_port,
            imap_port,
            imaps_port,
            pop3_port,
            pop3s_port,
        ] = free_ports();
        let records = dir.path().join("dns.txt");
        std::fs::write(&records, &opts.dns_records).unwrap();
        let config = dir.path().join("mticket.toml");
        let db_url = match opts.database_url {
            Some(url) => url,
            None => db::url_for(opts.backend.unwrap_or(db::backend()), dir.path()),
        };
        let mut limits = String::new();
        if let Some(n) = opts.max_connections_per_client {
            limits.push_str(&format!("max_connections_per_client = {n}\n"));
        }
        if let Some(t) = opts.pre_auth_timeout {
            limits.push_str(&format!("pre_auth_timeout = \"{t}\"\n"));
        }
        let text = format!(
            r#"hostname = "gateway.example.test"
locale = "{locale}"
[database]
url = "{url}"
[tls]
cert = "certs/cert.pem"
key = "certs/key.pem"
[listen]
submission = "{submission_host}:{submission_port}"
submissions = "{submission_host}:{submissions_port}"
imap = "127.0.0.1:{imap_port}"
imaps = "127.0.0.1:{imaps_port}"
pop3 = "127.0.0.1:{pop3_port}"
pop3s = "127.0.0.1:{pop3s_port}"
inbound = "127.0.0.1:{inbound_port}"
lmtp = "127.0.0.1:{lmtp_port}"
{limits}[intake]
poll_interval = "{poll}"
max_message_size = "{max}"
[autoresponder]
max_per_sender_per_day = {cap}
[outbox]
retry_initial = "1s"
retry_max = "2s"
give_up_after = "{give_up}"
[auth]
resolver = "static"
records = "{records}"
[submission]
auth_failure_delay = "20ms"
allow_plain_on_loopback = {allow_plain}
"#,
            submission_host = opts.submission_host,
            allow_plain = opts.allow_plain_on_loopback,
            locale = opts.locale,
            url = db_url,
            poll = opts.poll_interval,
            max = opts.max_message_size,
            cap = opts.max_per_sender_per_day,
            records = records.display(),
            give_up = opts.give_up_after,
        );
        std::fs::write(&config, text).unwrap();
        let g = Gateway {
            dir,
            config,
            db_url,
            inbound_port,
            lmtp_port,
            submission_port,
            submissions_port,
            imap_port,
            imaps_port,
            pop3_port,
            pop3s_port,
            child: None,
            starts: 0,
        };
        g.cli_ok(&["migrate"]);
        g
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mticket"));
        c.arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path());
        // The test's own settings share the MTICKET_ prefix the gateway reads its config from.
        c.env_remove("RUST_LOG")
            .env_remove("MTICKET_TEST_DB")
            .env_remove("MTICKET_TEST_POSTGRES");
        c
    }

    /// Starts `serve` and waits until the inbound listener answers.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `serve` with extra arguments (e.g. `--demo`).
    pub fn start_with(&mut self, extra: &[&str]) {
        self.start_with_env(extra, &[]);
    }

    /// Starts `serve` with extra arguments and environment variables (e.g. a debug build's
    /// fault hook). The ports were free when chosen, but another test may take one before
    /// `serve` binds it: then the gateway moves to other free ports and starts again.
    pub fn start_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "gateway already running");
        for attempt in 1.. {
            self.starts += 1;
            let log_before = self.log().len();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("serve.log"))
                .unwrap();
            let child = self
                .command()
                .arg("serve")
                .args(extra)
                .env("RUST_LOG", "info,sqlx=warn")
                .envs(env.iter().copied())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cannot start mticket");
            self.child = Some(child);
            match self.wait_listening() {
                Ok(()) => return,
                Err(_)
                    if attempt < 5
                        && self.log()[log_before..].contains("Address already in use") =>
                {
                    self.child = None;
                    self.move_to_free_ports();
                }
                Err(status) => panic!("mticket serve exited with {status}:\n{}", self.log()),
            }
        }
    }

    /// Waits until every port answers; `Err` with the exit status when `serve` ended first.
    fn wait_listening(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ports = [
            self.inbound_port,
            self.submission_port,
            self.submissions_port,
            self.imap_port,
            self.imaps_port,
            self.pop3_port,
            self.pop3s_port,
        ];
        while ports
            .iter()
            .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "mticket serve did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// New free ports for every listener, written into the config.
    fn move_to_free_ports(&mut self) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        let fresh: [u16; 8] = free_ports();
        let ports = [
            &mut self.inbound_port,
            &mut self.lmtp_port,
            &mut self.submission_port,
            &mut self.submissions_port,
            &mut self.imap_port,
            &mut self.imaps_port,
            &mut self.pop3_port,
            &mut self.pop3s_port,
        ];
        for (port, new) in ports.into_iter().zip(fresh) {
            text = text.replace(&format!(":{port}\"\n"), &format!(":{new}\"\n"));
            *port = new;
        }
        std::fs::write(&self.config, text).unwrap();
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("mticket did not stop on SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident memory of the running gateway in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Runs an admin command with stdin `input`.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
        let mut c = self.command();
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("cannot run mticket");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &[], "")
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "mticket {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.cli_ok(&a)).expect("JSON output")
    }

    /// `ticket list --json` with a filter.
    pub fn tickets(&self, filter: &[&str]) -> Vec<serde_json::Value> {
        let mut a = vec!["ticket", "list"];
        a.extend_from_slice(filter);
        self.json(&a).as_array().cloned().unwrap_or_default()
    }

    pub fn ticket(&self, number: i64) -> serde_json::Value {
        self.json(&["ticket", "show", &number.to_string()])
    }

    /// Adds a queue: polled from `pop3` (Dovecot, user, password) over POP3S when given,
    /// relaying through `sink` over STARTTLS when given, plus `extra` flags.
    pub fn add_queue(
        &self,
        name: &str,
        address: &str,
        pop3: Option<(&Dovecot, &str, &str)>,
        sink: Option<&Sink>,
        extra: &[&str],
    ) {
        let mut args: Vec<String> = ["queue", "add", "--name", name, "--address", address]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut pems = Vec::new();
        let mut password = String::new();
        if let Some((dovecot, user, pass)) = pop3 {
            args.extend([
                "--pop3".into(),
                format!("127.0.0.1:{}", dovecot.pop3s_port()),
                "--pop3-tls".into(),
                "implicit".into(),
                "--login".into(),
                user.to_string(),
                "--password-env".into(),
                "QUEUE_PASSWORD".into(),
            ]);
            password = pass.to_string();
            pems.push(dovecot.ca_pem());
        }
        if let Some(sink) = sink {
            args.extend([
                "--smtp".into(),
                format!("127.0.0.1:{}", sink.port()),
                "--smtp-tls".into(),
                "starttls".into(),
            ]);
            pems.push(sink.ca_pem().to_string());
        }
        if !pems.is_empty() {
            args.extend(["--tls-ca".into(), ca_file(self.path(), &pems)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.cli_with(&args, &[("QUEUE_PASSWORD", &password)], "");
        assert!(
            out.status.success(),
            "queue add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds an agent working in `queues`, its password given on stdin.
    pub fn add_agent(&self, login: &str, email: &str, password: &str, queues: &[&str]) {
        let queues = queues.join(",");
        let mut args = vec![
            "agent",
            "add",
            "--login",
            login,
            "--name",
            login,
            "--email",
            email,
            "--password-stdin",
        ];
        if !queues.is_empty() {
            args.extend(["--queues", &queues]);
        }
        let out = self.cli_with(&args, &[], &format!("{password}\n"));
        assert!(
            out.status.success(),
            "agent add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends a customer's mail to `to` over the inbound SMTP listener (swaks); `250` means
    /// its ticket state is committed.
    pub fn customer_mail(&self, from: &str, to: &str, subject: &str, body: &str) {
        let out = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{}", self.inbound_port),
                "--from",
                from,
                "--to",
                to,
                "--header",
                &format!("Subject: {subject}"),
                "--body",
                body,
            ])
            .output()
            .expect(
                "swaks not found: apt-get install swaks libnet-ssleay-perl (scripts/test does this)",
            );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("certs/cert.pem")
    }

    /// Customer items over all tickets.
    pub fn customer_items(&self) -> usize {
        self.tickets(&[])
            .iter()
            .map(|t| {
                let n = t["number"].as_i64().unwrap();
                self.ticket(n)["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|i| i["kind"] == "customer")
                    .count()
            })
            .sum()
    }

    /// Waits until the running gateway has given every changed ticket's message its new
    /// UID: until then a folder does not show that ticket at all (the old message is gone,
    /// the new one not yet listed), so a test that lists folders after a change waits here.
    pub fn wait_until_listed(&self) {
        self.wait_for(
            "every changed ticket listed",
            Duration::from_secs(10),
            || (self.json(&["instances"])["mailbox_waiting"] == 0).then_some(()),
        );
    }

    /// Waits until the outbox holds nothing pending: every mail queued so far was accepted
    /// by its upstream server or given up. What a sink holds then is all it gets from the
    /// mail taken in so far, so a test can count it instead of pausing for stragglers.
    pub fn wait_until_sent(&self) {
        self.wait_for(
            "nothing pending in the outbox",
            Duration::from_secs(120),
            || (self.json(&["instances"])["outbox"]["pending"] == 0).then_some(()),
        );
    }

    /// Polls `check` until it returns Some, or panics after `timeout` with the log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- gateway log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
