//! SMTP load for the benchmarks through tests/peers/smtp_load.py: several sessions, one
//! process each, every session one connection that authenticates once and sends its mails
//! back to back; the tool reports the rate and each mail's acknowledgment latency.
use std::path::{Path, PathBuf};
use std::process::Command;

/// One mail of a session: envelope and raw bytes.
pub struct Mail<'a> {
    pub from: String,
    pub to: Vec<String>,
    pub raw: &'a [u8],
}

/// One session: its login (`""`: no AUTH) and its mails, in order.
pub struct Session<'a> {
    pub login: String,
    pub mails: Vec<Mail<'a>>,
}

/// Writes every mail to `dir/name/` and the plan smtp_load.py reads to `dir/name.json`.
pub fn plan(dir: &Path, name: &str, sessions: &[Session<'_>]) -> PathBuf {
    let mail_dir = dir.join(name);
    std::fs::create_dir_all(&mail_dir).expect("plan dir");
    let mut count = 0;
    let sessions: Vec<serde_json::Value> = sessions
        .iter()
        .map(|s| {
            let mails: Vec<serde_json::Value> = s
                .mails
                .iter()
                .map(|m| {
                    let file = mail_dir.join(format!("{count:06}.eml"));
                    count += 1;
                    std::fs::write(&file, m.raw).expect("write mail");
                    serde_json::json!({
                        "from": m.from, "to": m.to, "file": file.display().to_string(),
                    })
                })
                .collect();
            serde_json::json!({ "user": s.login, "mails": mails })
        })
        .collect();
    let path = dir.join(format!("{name}.json"));
    std::fs::write(
        &path,
        serde_json::json!({ "sessions": sessions }).to_string(),
    )
    .expect("write plan");
    path
}

/// Where the load goes.
pub struct Target<'a> {
    pub port: u16,
    /// `starttls`, `implicit` or `none`.
    pub tls: &'a str,
    /// The CA to verify the server's certificate with.
    pub cafile: Option<&'a Path>,
    /// Replaces every session's login (a server that knows one account).
    pub user: Option<&'a str>,
    pub password: &'a str,
}

/// What smtp_load.py measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub accepted: usize,
    /// First session's start to last session's end, connection setup included.
    pub secs: f64,
    /// The slowest session's connect + TLS + AUTH.
    pub setup_secs: f64,
    /// Wall clock (Unix seconds) when the first session started.
    pub started_at: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The sessions' own CPU while sending.
    pub cpu_secs: f64,
    /// Every mail's acknowledgment latency in seconds, sorted.
    pub latencies: Vec<f64>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.secs
    }

    /// Runs of the same tool one after the other as one: their mails, seconds and CPU
    /// added up, the latency percentiles taken over every mail.
    pub fn combine(runs: &[Report]) -> Report {
        let mut latencies: Vec<f64> = runs.iter().flat_map(|r| r.latencies.clone()).collect();
        latencies.sort_by(f64::total_cmp);
        Report {
            accepted: runs.iter().map(|r| r.accepted).sum(),
            secs: runs.iter().map(|r| r.secs).sum(),
            setup_secs: runs.iter().map(|r| r.setup_secs).fold(0.0, f64::max),
            started_at: runs.iter().map(|r| r.started_at).fold(f64::MAX, f64::min),
            p50_ms: percentile(&latencies, 50.0) * 1000.0,
            p99_ms: percentile(&latencies, 99.0) * 1000.0,
            cpu_secs: runs.iter().map(|r| r.cpu_secs).sum(),
            latencies,
        }
    }
}

/// Nearest rank, as smtp_load.py takes it.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Runs the plan against `target`; panics unless every mail was accepted. With
/// `latencies`, every mail's latency is also kept there as CSV.
pub fn run(plan: &Path, target: &Target<'_>, latencies: Option<&Path>) -> Report {
    let scratch = tempfile::NamedTempFile::new().expect("latency file");
    let latencies = latencies.unwrap_or(scratch.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_load.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--port", &target.port.to_string(), "--tls", target.tls])
        .env("SMTP_LOAD_PASSWORD", target.password);
    if let Some(ca) = target.cafile {
        cmd.arg("--cafile").arg(ca);
    }
    if let Some(user) = target.user {
        cmd.args(["--user", user]);
    }
    cmd.arg("--latencies").arg(latencies);
    let out = cmd
        .arg(plan)
        .output()
        .expect("python3 not found (it runs tests/peers/smtp_load.py)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "smtp_load.py gave no report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let sent = v["sent"].as_u64().unwrap_or(0);
    let accepted = v["accepted"].as_u64().unwrap_or(0);
    assert!(
        sent == accepted && v["errors"].as_array().is_some_and(Vec::is_empty),
        "smtp_load.py to port {}: {accepted} of {sent} accepted: {v}",
        target.port
    );
    let f = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
    Report {
        accepted: accepted as usize,
        secs: f(&v["seconds"]),
        setup_secs: f(&v["setup_seconds"]),
        started_at: f(&v["started_at"]),
        p50_ms: f(&v["latency_ms"]["p50"]),
        p99_ms: f(&v["latency_ms"]["p99"]),
        cpu_secs: f(&v["cpu_seconds"]),
        latencies: read_latencies(latencies),
    }
}

/// The latencies smtp_load.py wrote (`session,seconds after the start,latency` lines), sorted.
fn read_latencies(file: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(file).expect("smtp_load.py's latency file");
    let mut all: Vec<f64> = text
        .lines()
        .filter_map(|l| l.rsplit(',').next()?.parse().ok())
        .collect();
    all.sort_by(f64::total_cmp);
    all
}
