//! Agents' mail clients against the gateway's submission ports: Python's smtplib
//! (tests/peers/submit.py), swaks and mutt, plus the mails agents write.
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::gateway::Gateway;

/// How a client reaches a submission port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    StartTls,
    Implicit,
    Plain,
}

/// The server's answer to one mail.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub text: String,
}

impl Answer {
    pub fn accepted(&self) -> bool {
        self.code == 250
    }
}

/// One agent's client settings.
pub struct Agent<'a> {
    pub gateway: &'a Gateway,
    pub login: &'a str,
    pub password: &'a str,
    pub tls: Security,
}

impl Agent<'_> {
    fn port(&self) -> u16 {
        match self.tls {
            Security::Implicit => self.gateway.submissions_port,
            _ => self.gateway.submission_port,
        }
    }

    /// Sends `raw` with smtplib from `from` to `to`.
    pub fn send(&self, from: &str, to: &[&str], raw: &[u8]) -> Answer {
        self.send_many(from, to, &[raw.to_vec()], 1).remove(0)
    }

    /// Sends every mail, `parallel` sessions at a time; one answer per mail, in order. With
    /// no `to`, each mail goes to the addresses in its own To and Cc.
    pub fn send_many(
        &self,
        from: &str,
        to: &[&str],
        raws: &[Vec<u8>],
        parallel: usize,
    ) -> Vec<Answer> {
        self.start_many(from, to, raws, parallel).finish()
    }

    /// As [`Agent::send_many`], in the background: [`Sending::finish`] collects the answers.
    pub fn start_many(
        &self,
        from: &str,
        to: &[&str],
        raws: &[Vec<u8>],
        parallel: usize,
    ) -> Sending {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Vec<String> = raws
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let p = dir.path().join(format!("{i:05}.eml"));
                std::fs::write(&p, raw).expect("write mail");
                p.display().to_string()
            })
            .collect();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/submit.py");
        let tls = match self.tls {
            Security::StartTls => "starttls",
            Security::Implicit => "implicit",
            Security::Plain => "none",
        };
        let child = Command::new("python3")
            .arg(script)
            .args(["--port", &self.port().to_string(), "--tls", tls])
            .args(["--user", self.login, "--from", from, "--to", &to.join(",")])
            .args(["--cafile", &self.gateway.cert_path().display().to_string()])
            .args(["--parallel", &parallel.to_string()])
            .args(&files)
            .env("SUBMIT_PASSWORD", self.password)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 not found (it runs tests/peers/submit.py)");
        Sending {
            child,
            count: raws.len(),
            _dir: dir,
        }
    }
}

/// Mails on their way through tests/peers/submit.py.
pub struct Sending {
    child: Child,
    count: usize,
    _dir: tempfile::TempDir,
}

impl Sending {
    /// Waits for the client; one answer per mail, in order.
    pub fn finish(self) -> Vec<Answer> {
        let out = self.child.wait_with_output().expect("submit.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<Answer> = stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("submit.py JSON");
                Answer {
                    code: v["code"].as_u64().unwrap_or(0) as u16,
                    text: v["text"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect();
        assert_eq!(
            answers.len(),
            self.count,
            "submit.py answered {} of {} mails: {}",
            answers.len(),
            self.count,
            String::from_utf8_lossy(&out.stderr)
        );
        answers
    }
}

/// An agent's mail as a plain client writes it.
pub struct Draft<'a> {
    pub from: &'a str,
    pub to: &'a [&'a str],
    pub cc: &'a [&'a str],
    pub subject: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub body: &'a str,
}

impl Draft<'_> {
    pub fn raw(&self) -> Vec<u8> {
        let mut s = format!(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n\
             Message-ID: <{}@agent.test>\r\nMIME-Version: 1.0\r\n",
            self.from,
            self.to.join(", "),
            self.subject,
            rand::random::<u64>()
        );
        if !self.cc.is_empty() {
            s.push_str(&format!("Cc: {}\r\n", self.cc.join(", ")));
        }
        if let Some(id) = self.in_reply_to {
            s.push_str(&format!("In-Reply-To: <{id}>\r\nReferences: <{id}>\r\n"));
        }
        s.push_str(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        s.push_str(&self.body.replace('\n', "\r\n"));
        s.into_bytes()
    }
}

/// A customer mail to a queue, with a known Message-ID.
pub fn customer_mail(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Erika Kunde <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Fri, 27 Nov 2026 09:00:00 +0100\r\nMessage-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Delivers a customer mail through the gateway's inbound listener (swaks).
pub fn deliver_inbound(gateway: &Gateway, from: &str, to: &str, raw: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mail.eml");
    std::fs::write(&file, raw).expect("write mail");
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", gateway.inbound_port)])
        .args(["--from", from, "--to", to])
        .args(["--data", &format!("@{}", file.display())])
        .output()
        .expect(
            "swaks not found: apt-get install swaks libnet-ssleay-perl (scripts/test does this)",
        );
    assert!(
        out.status.success(),
        "inbound delivery failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
