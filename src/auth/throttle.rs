//! A delay before refusing a source address that keeps failing, so passwords cannot be guessed
//! at line rate: the first refusal waits `base`, each one in a row doubles it up to `max`, and a
//! success (or ten minutes of quiet) forgets the address. The table is bounded: when full, the
//! address that failed longest ago is forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;

/// Quiet time after which an address's failures are forgotten.
const FORGET_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: u64,
}

/// Failures by source address.
#[derive(Debug)]
pub struct Throttle {
    table: Mutex<HashMap<IpAddr, Failures>>,
    base_ms: u64,
    max_ms: u64,
    capacity: usize,
}

impl Throttle {
    /// A table of at most `capacity` addresses; delays from `base_ms` doubling to `max_ms`.
    pub fn new(base_ms: u64, max_ms: u64, capacity: usize) -> Throttle {
        Throttle {
            table: Mutex::new(HashMap::new()),
            base_ms,
            max_ms,
            capacity: capacity.max(1),
        }
    }

    /// Records a failure of `ip` at `now_ms`; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr, now_ms: u64) -> Duration {
        let mut table = self.table.lock();
        if !table.contains_key(&ip) && table.len() >= self.capacity {
            table.retain(|_, f| now_ms.saturating_sub(f.last_ms) < FORGET_MS);
            if table.len() >= self.capacity {
                if let Some(oldest) = table.iter().min_by_key(|(_, f)| f.last_ms).map(|(k, _)| *k) {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(ip).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
        });
        if now_ms.saturating_sub(entry.last_ms) >= FORGET_MS {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last_ms = now_ms;
        let shift = (entry.count - 1).min(20);
        Duration::from_millis(self.base_ms.saturating_mul(1 << shift).min(self.max_ms))
    }

    /// `ip` authenticated: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut table = self.table.lock();
        if !table.is_empty() {
            table.remove(&ip);
        }
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// True when no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_forgets_and_stays_bounded() {
        let t = Throttle::new(100, 1000, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(t.failed(a, 0)), 100);
        assert_eq!(ms(t.failed(a, 1)), 200);
        assert_eq!(ms(t.failed(a, 2)), 400);
        assert_eq!(ms(t.failed(a, 3)), 800);
        assert_eq!(ms(t.failed(a, 4)), 1000);
        assert_eq!(ms(t.failed(a, 4 + FORGET_MS)), 100);
        t.succeeded(a);
        assert!(t.is_empty());
        for i in 0..10u8 {
            t.failed(IpAddr::from([10, 0, 1, i]), u64::from(i));
        }
        assert_eq!(t.len(), 3);
    }
}
