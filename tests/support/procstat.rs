//! What the benchmarks read about running processes from /proc: CPU seconds per thread and
//! per process name, resident memory over time, how busy the whole machine was, and an
//! optional `perf record` of a process beside a run.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// sysconf(_SC_CLK_TCK): 100 on every Linux this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// (name, user + system CPU seconds) from a /proc `stat` line; the name may hold spaces
/// and parentheses, the fields follow the last ')'.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|x| x.parse::<f64>().ok())
        .sum();
    Some((name, ticks / TICKS_PER_SECOND))
}

/// CPU seconds per thread name of process `pid` (threads of one name added up).
pub fn cpu_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("stat"))
            && let Some((name, secs)) = parse_stat(&stat)
        {
            *by_name.entry(name.to_string()).or_insert(0.0) += secs;
        }
    }
    by_name
}

pub fn cpu_total(pid: u32) -> f64 {
    cpu_by_thread(pid).values().sum()
}

/// CPU seconds per thread name since `before` (a [`cpu_by_thread`] reading); threads that
/// used less than 5 ms are left out.
pub fn cpu_since(before: &BTreeMap<String, f64>, pid: u32) -> BTreeMap<String, f64> {
    let mut now = cpu_by_thread(pid);
    for (name, secs) in now.iter_mut() {
        *secs -= before.get(name).copied().unwrap_or(0.0);
    }
    now.retain(|_, s| *s >= 0.005);
    now
}

/// CPU seconds of every process named `comm` (e.g. `postgres`, the server's processes).
pub fn cpu_of_processes(comm: &str) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .flatten()
        .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
        .filter_map(|stat| {
            parse_stat(&stat).and_then(|(name, secs)| (name == comm).then_some(secs))
        })
        .sum()
}

/// Lets the machine settle before a timed run: writes dirty pages out (`sync`, so the
/// previous run's files and database writes are not flushed during this one) and waits until
/// all cores together are less than 3 % busy over half a second (background work such as a
/// search index or a database checkpoint finished), at most `limit`.
pub fn settle(limit: Duration) {
    let deadline = Instant::now() + limit;
    let _ = std::process::Command::new("sync").status();
    while Instant::now() < deadline {
        let before = MachineCpu::now();
        std::thread::sleep(Duration::from_millis(500));
        if before.busy_since() < 0.03 {
            return;
        }
    }
}

/// Resident memory of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory of `pid` in KiB over its life so far (VmHWM).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's resident memory every 20 ms on a thread of its own.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default();
                    samples.push((now.as_secs_f64(), kib));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        RssSampler { stop, thread }
    }

    /// (wall clock in Unix seconds, KiB) for every sample.
    pub fn finish(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The whole machine's CPU counters (all cores, from /proc/stat) at one moment.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: f64,
    total: f64,
}

impl MachineCpu {
    pub fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let total: f64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
        MachineCpu {
            busy: total - idle,
            total,
        }
    }

    /// Share of all cores busy (with anything, not only what the benchmark runs) since
    /// this reading.
    pub fn busy_since(&self) -> f64 {
        let now = MachineCpu::now();
        (now.busy - self.busy) / (now.total - self.total).max(1.0)
    }
}

/// `perf record -g` of a process into `<dir>/<label>.data` while it lives; stopped (and the
/// file completed) on drop. Nothing when `dir` is `None`.
pub struct Perf(Option<Child>);

impl Perf {
    /// Records the whole machine (the gateway, the database server, the peers: `perf
    /// report --comm NAME` tells them apart) into `dir/label.data`, when `dir` is given.
    pub fn start(dir: Option<&Path>, label: &str) -> Perf {
        let Some(dir) = dir else { return Perf(None) };
        let child = Command::new("perf")
            .args(["record", "-q", "-F", "499", "-g", "-a", "-o"])
            .arg(dir.join(format!("{label}.data")))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| println!("perf record not started: {e}"))
            .ok();
        // perf needs a moment before it samples.
        std::thread::sleep(Duration::from_millis(300));
        Perf(child)
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}
