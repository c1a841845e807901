//! The connection rate limit of a listener: new connections a second from one source address
//! (`max_connection_rate`, with `max_connection_burst`), a token bucket per address in a
//! bounded table. IPv6 addresses count per /64 (one host's usual share), IPv4-mapped ones as
//! IPv4.
//!
//! The table holds at most [`MAX_ADDRESSES`] entries. When it is full, the entries whose bucket
//! has refilled (which hold nothing a new entry would not) are dropped, at most once a second;
//! if that frees nothing, a new address is let through untracked rather than refused, so that
//! many addresses cannot lock others out (`max_connections` still caps the listener).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::rate::{Bucket, Rate};

/// The most source addresses one listener tracks.
pub const MAX_ADDRESSES: usize = 65_536;

/// Time between sweeps of a full table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A listener's per-address connection rate limit.
pub struct ConnectionRate {
    rate: Rate,
    capacity: usize,
    table: Mutex<Table>,
}

struct Table {
    buckets: HashMap<u128, Bucket, ahash::RandomState>,
    next_sweep: Instant,
}

impl ConnectionRate {
    /// A limit of `per_sec` connections a second per address with `burst` (0: one second's
    /// worth); `None` when `per_sec` is 0.
    pub fn new(per_sec: u32, burst: u32) -> Option<ConnectionRate> {
        Self::with_capacity(per_sec, burst, MAX_ADDRESSES)
    }

    fn with_capacity(per_sec: u32, burst: u32, capacity: usize) -> Option<ConnectionRate> {
        Some(ConnectionRate {
            rate: Rate::new(u64::from(per_sec), u64::from(burst))?,
            capacity,
            table: Mutex::new(Table {
                buckets: HashMap::default(),
                next_sweep: Instant::now(),
            }),
        })
    }

    /// True when a connection from `ip` is allowed now (and counts it).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let key = key(ip);
        let rate = &self.rate;
        let mut table = self.table.lock();
        if let Some(bucket) = table.buckets.get_mut(&key) {
            return bucket.take(rate, 1.0, now).is_ok();
        }
        if table.buckets.len() >= self.capacity {
            if now >= table.next_sweep {
                table.next_sweep = now + SWEEP_EVERY;
                table.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            }
            if table.buckets.len() >= self.capacity {
                return true;
            }
        }
        let mut bucket = Bucket::full(rate, now);
        let allowed = bucket.take(rate, 1.0, now).is_ok();
        table.buckets.insert(key, bucket);
        allowed
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().buckets.len()
    }
}

/// The table key of an address: IPv4 (also IPv4-mapped IPv6) as itself, IPv6 by its /64.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_burst_then_rate() {
        let limit = ConnectionRate::new(2, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.admit(ip("10.0.0.1"), t0));
        }
        assert!(!limit.admit(ip("10.0.0.1"), t0));
        // Another address has its own bucket; the mapped form is the same address.
        assert!(limit.admit(ip("10.0.0.2"), t0));
        assert!(!limit.admit(ip("::ffff:10.0.0.1"), t0));
        // Half a second gives one back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limit.admit(ip("10.0.0.1"), t1));
        assert!(!limit.admit(ip("10.0.0.1"), t1));
        assert_eq!(ConnectionRate::new(0, 5).map(|_| ()), None);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let limit = ConnectionRate::new(1, 1).unwrap();
        let t0 = Instant::now();
        assert!(limit.admit(ip("2001:db8:1:2::1"), t0));
        assert!(!limit.admit(ip("2001:db8:1:2:ffff::9"), t0));
        assert!(limit.admit(ip("2001:db8:1:3::1"), t0));
        assert_eq!(limit.tracked(), 2);
    }

    #[test]
    fn the_table_stays_bounded() {
        let limit = ConnectionRate::with_capacity(1, 1, 4).unwrap();
        let t0 = Instant::now();
        for i in 0..4u8 {
            assert!(limit.admit(IpAddr::from([10, 0, 0, i]), t0));
        }
        // Full of live entries: a new address is let through untracked.
        for i in 4..100u8 {
            assert!(limit.admit(IpAddr::from([10, 0, 0, i]), t0));
        }
        assert_eq!(limit.tracked(), 4);
        // A tracked one is still limited.
        assert!(!limit.admit(IpAddr::from([10, 0, 0, 1]), t0));
        // Once they have refilled, a sweep makes room.
        let t1 = t0 + Duration::from_secs(2);
        assert!(limit.admit(IpAddr::from([10, 0, 0, 200]), t1));
        assert!(!limit.admit(IpAddr::from([10, 0, 0, 200]), t1));
        assert_eq!(limit.tracked(), 1);
    }
}
