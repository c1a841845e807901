//! The wall clock, for times that outlive the process or cross it (stored expiries, JWT `exp`,
//! what the admin API shows). In-process deadlines use the broker's monotonic clock instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
