//! Reads what the benchmark needs from Linux `/proc`: CPU time and resident
//! memory of the broker and of the benchmark itself, and the open-file limit.
//!
//! Owns: parsing `/proc/<pid>/stat`, `/proc/<pid>/status`, `/proc/self/limits`
//! and raising the soft `RLIMIT_NOFILE` through the `prlimit` tool (the house
//! rules forbid `unsafe`, so no direct `setrlimit`). It must not panic when a
//! file is missing or odd: every reader returns `Option`.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// Clock ticks per second used by `/proc/<pid>/stat` (USER_HZ). Asked of
/// `getconf` once; 100 on every mainstream Linux architecture.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            .unwrap_or(100.0)
    })
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// Fields of `/proc/<pid>/stat` after the `(comm)` field, which may itself
/// contain spaces and parentheses.
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let close = text.rfind(')')?;
    Some(text.get(close + 1..)?.split_whitespace().collect())
}

/// User + system CPU seconds of `pid` (or of this process when `None`).
/// Prefers the scheduler's nanosecond run time summed over all threads
/// (`task/*/schedstat`), because `stat` counts in 10 ms ticks, too coarse
/// for short phases; falls back to `stat`.
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    if let Some(secs) = schedstat_secs(pid) {
        return Some(secs);
    }
    let text = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    cpu_secs_from_stat(&text)
}

fn schedstat_secs(pid: Option<u32>) -> Option<f64> {
    let mut total_ns: u64 = 0;
    let mut threads = 0;
    for entry in std::fs::read_dir(proc_path(pid, "task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading; skip it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total_ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
        threads += 1;
    }
    (threads > 0).then(|| total_ns as f64 / 1e9)
}

fn cpu_secs_from_stat(text: &str) -> Option<f64> {
    let f = stat_fields(text)?;
    // After ")": state is field 3 of the man page, utime 14, stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat_fields(&text)
        .and_then(|f| f.first().copied())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Resident set size of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    rss_from_status(&text)
}

fn rss_from_status(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.get(6..)?.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// (soft, hard) open-file limits of this process; `None` means unlimited.
pub fn nofile_limits() -> Option<(Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    nofile_from_limits(&text)
}

fn nofile_from_limits(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line.get("Max open files".len()..)?.split_whitespace();
    let parse = |w: &str| {
        if w == "unlimited" {
            Some(None)
        } else {
            w.parse::<u64>().ok().map(Some)
        }
    };
    let soft = parse(words.next()?)?;
    let hard = parse(words.next()?)?;
    Some((soft, hard))
}

/// Raises the soft open-file limit as far as the hard limit allows, so that
/// `wanted` descriptors fit. Returns the soft limit in force afterwards.
pub fn raise_nofile(wanted: u64) -> Option<u64> {
    let (soft, hard) = nofile_limits()?;
    let Some(soft) = soft else {
        return Some(u64::MAX);
    };
    if soft >= wanted {
        return Some(soft);
    }
    let target = match hard {
        Some(h) => h.min(wanted.max(soft)),
        None => wanted,
    };
    let pid = std::process::id();
    // `prlimit --nofile=SOFT:` keeps the hard limit as it is.
    let _ = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={target}:"))
        .status();
    match nofile_limits()? {
        (None, _) => Some(u64::MAX),
        (Some(s), _) => Some(s),
    }
}

/// CPU counters and wall time at the start of a measured phase.
pub struct Meter {
    pub t0: Instant,
    broker_pid: Option<u32>,
    bench0: Option<f64>,
    broker0: Option<f64>,
}

/// What a measured phase cost.
pub struct Cost {
    pub secs: f64,
    pub bench_cpu: Option<f64>,
    pub broker_cpu: Option<f64>,
}

impl Meter {
    pub fn start(broker_pid: Option<u32>) -> Meter {
        Meter {
            broker0: broker_pid.and_then(|p| cpu_secs(Some(p))),
            bench0: cpu_secs(None),
            broker_pid,
            t0: Instant::now(),
        }
    }

    /// Cost from the start to now; `end` is the wall-clock end of the
    /// phase (e.g. the last delivery), which may be earlier than now.
    pub fn stop(&self, end: Instant) -> Cost {
        let bench = cpu_secs(None);
        let broker = self.broker_pid.and_then(|p| cpu_secs(Some(p)));
        Cost {
            secs: end.saturating_duration_since(self.t0).as_secs_f64(),
            bench_cpu: bench.zip(self.bench0).map(|(b, a)| b - a),
            broker_cpu: broker.zip(self.broker0).map(|(b, a)| b - a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_comm() {
        let line = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        let secs = cpu_secs_from_stat(line).unwrap_or(-1.0);
        assert!((secs - 300.0 / clock_ticks()).abs() < 1e-9, "{secs}");
        assert_eq!(cpu_secs_from_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_readable() {
        // Burn ~50 ms of CPU: the counter must move forwards by a
        // plausible amount (several scheduler ticks).
        let before = cpu_secs(None).unwrap_or(f64::NAN);
        let t0 = std::time::Instant::now();
        let mut x = 1u64;
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let after = cpu_secs(None).unwrap_or(f64::NAN);
        assert!(after - before > 0.01, "before {before}, after {after}");
        assert!(alive(std::process::id()));
        assert!(rss_bytes(std::process::id()).unwrap_or(0) > 0);
    }

    #[test]
    fn parses_status_and_limits() {
        assert_eq!(
            rss_from_status("Name:\tx\nVmRSS:\t    1500 kB\n"),
            Some(1_536_000)
        );
        assert_eq!(rss_from_status("Name:\tx\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(
            nofile_from_limits(limits),
            Some((Some(1024), Some(524_288)))
        );
        let unl = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(nofile_from_limits(unl), Some((None, None)));
    }
}
