//! Output: human progress on stderr, one JSON summary line last on stdout; the broker's RSS.

use std::fmt::Arguments;

use crate::opts::Opts;

/// A line of human text on stderr, unless `--json`.
pub fn say(o: &Opts, msg: Arguments<'_>) {
    if !o.json {
        eprintln!("warren-bench: {msg}");
    }
}

/// Resident set size of process `pid` in KiB (VmRSS in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
