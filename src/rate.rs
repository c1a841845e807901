//! Token buckets: a rate with a burst above it, as used by the connection rate limit of a
//! listener (per source address, in [`crate::transport`]) and the publish rate limits of a
//! client (in [`crate::connection`]).
//!
//! Plain data, no clock reads: the caller passes `now`. This module knows nothing of what is
//! being counted.

use std::time::{Duration, Instant};

/// A rate limit: `per_sec` tokens a second, and at most `burst` stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_sec: f64,
    burst: f64,
}

impl Rate {
    /// `per_sec` a second with `burst` stored (0: one second's worth). `None` when `per_sec`
    /// is 0, meaning no limit.
    pub fn new(per_sec: u64, burst: u64) -> Option<Rate> {
        (per_sec > 0).then_some(Rate {
            per_sec: per_sec as f64,
            burst: if burst == 0 { per_sec } else { burst } as f64,
        })
    }
}

/// One bucket of a [`Rate`] (the rate itself is passed in, so that many buckets share it).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: &Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.last = now;
    }

    /// How long until `cost` can be taken (zero: now). A cost above the burst can be taken
    /// once the bucket is full, and leaves it in debt, so that any cost gets through in time
    /// and the long-run rate still holds.
    pub fn wait(&mut self, rate: &Rate, cost: f64, now: Instant) -> Duration {
        self.refill(rate, now);
        let need = cost.min(rate.burst);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / rate.per_sec)
        }
    }

    /// Takes `cost` if it can be taken now ([`Bucket::wait`] is zero); else how long to wait.
    pub fn take(&mut self, rate: &Rate, cost: f64, now: Instant) -> Result<(), Duration> {
        match self.wait(rate, cost, now) {
            Duration::ZERO => {
                self.tokens -= cost;
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// True when the bucket would be full at `now`: it then holds nothing a fresh bucket
    /// would not, and can be forgotten.
    pub fn is_full(&self, rate: &Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate.per_sec >= rate.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_is_no_limit_and_zero_burst_is_one_second() {
        assert_eq!(Rate::new(0, 5), None);
        assert_eq!(Rate::new(10, 0), Rate::new(10, 10));
    }

    #[test]
    fn burst_then_rate() {
        let rate = Rate::new(10, 3).unwrap();
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&rate, t0);
        for _ in 0..3 {
            bucket.take(&rate, 1.0, t0).unwrap();
        }
        let wait = bucket.take(&rate, 1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(!bucket.is_full(&rate, t0));
        // 100 ms later one token is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        bucket.take(&rate, 1.0, t1).unwrap();
        assert!(bucket.take(&rate, 1.0, t1).is_err());
        assert!(bucket.is_full(&rate, t1 + Duration::from_millis(300)));
        // Never more than the burst.
        let t2 = t1 + Duration::from_secs(100);
        for _ in 0..3 {
            bucket.take(&rate, 1.0, t2).unwrap();
        }
        assert!(bucket.take(&rate, 1.0, t2).is_err());
    }

    #[test]
    fn a_cost_above_the_burst_passes_when_full_and_leaves_debt() {
        let rate = Rate::new(1000, 0).unwrap();
        let t0 = Instant::now();
        let mut bucket = Bucket::full(&rate, t0);
        bucket.take(&rate, 5000.0, t0).unwrap();
        // 4000 in debt, then a whole burst to refill: 5 s.
        let wait = bucket.wait(&rate, 1.0, t0);
        assert!((wait.as_secs_f64() - 4.001).abs() < 1e-6, "{wait:?}");
        let wait = bucket.wait(&rate, 5000.0, t0);
        assert!((wait.as_secs_f64() - 5.0).abs() < 1e-6, "{wait:?}");
        // A failed take costs nothing.
        assert!(bucket.take(&rate, 1.0, t0).is_err());
        assert_eq!(bucket.wait(&rate, 1.0, t0 + wait), Duration::ZERO);
    }
}
