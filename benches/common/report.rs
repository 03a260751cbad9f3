//! What a benchmark hands to the report: its rows for the summary table of BENCHMARKS.md
//! (figure, mticket, peer, ratio) and its section with the details. Both go to
//! `target/bench-report/` (or `BENCH_REPORT_DIR`) as `<bench>.json` and `<bench>.md`;
//! `scripts/bench` then rewrites BENCHMARKS.md from them (scripts/lib/benchmarks_md.py).
// Each benchmark includes this file and uses a part of it.
#![allow(dead_code)]
use std::path::PathBuf;

/// One line of the summary table: the figure, mticket's value, the peer's value in the
/// same run (with the peer named in `figure`), and the ratio, each already formatted.
pub struct Row {
    pub figure: String,
    pub mticket: String,
    pub peer: String,
    pub ratio: String,
}

impl Row {
    pub fn new(figure: impl Into<String>, mticket: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            mticket: mticket.into(),
            peer: String::new(),
            ratio: String::new(),
        }
    }

    pub fn against(mut self, peer: impl Into<String>, ratio: impl Into<String>) -> Row {
        self.peer = peer.into();
        self.ratio = ratio.into();
        self
    }
}

/// `2 cores, AMD EPYC …`: what the figures were measured on.
pub fn machine() -> String {
    format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default()
    )
}

/// The time of the run, as the report writes it.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A ratio with as many decimals as it needs to show more than zero.
pub fn ratio(x: f64) -> String {
    match x {
        x if x < 0.01 => format!("{x:.4}"),
        x if x < 10.0 => format!("{x:.2}"),
        x => format!("{x:.0}"),
    }
}

fn dir() -> PathBuf {
    std::env::var_os("BENCH_REPORT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-report"))
}

/// Writes the benchmark's rows and section for the report, and prints the section.
pub fn publish(bench: &str, rows: &[Row], section: &str) {
    print!("{section}");
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("report folder");
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "figure": r.figure, "mticket": r.mticket, "peer": r.peer, "ratio": r.ratio,
            })
        })
        .collect();
    let json = serde_json::json!({
        "bench": bench, "machine": machine(), "date": now(), "rows": rows,
    });
    std::fs::write(dir.join(format!("{bench}.json")), json.to_string()).expect("report rows");
    std::fs::write(dir.join(format!("{bench}.md")), section).expect("report section");
    println!("report: {}", dir.join(format!("{bench}.json")).display());
}
