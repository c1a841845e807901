//! Pacing of things that repeat after failures: a capped exponential backoff with jitter, and
//! a log gate that lets one line through per interval (with the count it held back).
//! Plain values; the caller owns the clock and the sleeping.

use std::time::{Duration, Instant};

/// Capped exponential backoff: `min`, doubling up to `max`, each delay with ±20% jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Backoff {
            min,
            max: max.max(min),
            next: min,
            seed,
        }
    }

    /// The delay to wait now; the following one is twice as long (up to the cap).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift: jitter only, no quality needed.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let permille = 800 + (self.seed % 401);
        base * permille as u32 / 1000
    }

    /// Back to the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Lets one log line through per interval.
#[derive(Debug)]
pub(crate) struct LogGate {
    interval: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogGate {
    pub(crate) fn new(interval: Duration) -> LogGate {
        LogGate {
            interval,
            last: None,
            held: 0,
        }
    }

    /// One more event at `now`: `Some(n)` if a line is due, `n` being the events it covers
    /// (this one and those held back since the last line).
    pub(crate) fn hit(&mut self, now: Instant) -> Option<u64> {
        self.held += 1;
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let d: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        for (got, base) in d.iter().zip([100u128, 200, 400, 800, 1000, 1000]) {
            assert!(*got >= base * 8 / 10 && *got <= base * 12 / 10, "{d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn log_gate_lets_one_line_per_interval_through() {
        let mut g = LogGate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(g.hit(t0), Some(1));
        assert_eq!(g.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(g.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(g.hit(t0 + Duration::from_secs(11)), Some(3));
    }
}
