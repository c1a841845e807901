//! Resident memory of the benchmark's own process, for the benches that print bytes per item.

/// Resident bytes of this process (Linux; 0 elsewhere).
pub fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
