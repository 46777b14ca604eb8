//! What a running process holds, read from `/proc` (Linux): memory and
//! descriptors, for the tests that check sessions give everything back; and
//! waiting for such a condition.

use std::time::{Duration, Instant};

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`, ...); 0 when the
/// process or the field is gone.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory now, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// The most resident memory the process has had, KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// Open file descriptors.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Polls `check` every 50 ms until it holds, and returns how long that
/// took; panics with `what()` after `limit`.
pub fn within(
    limit: Duration,
    what: impl Fn() -> String,
    mut check: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{}: not within {limit:?}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}
