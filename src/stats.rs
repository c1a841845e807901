//! Broker-wide event counters.
//!
//! Plain atomics, bumped on rare paths only (a connection opening, a malformed packet, a dropped
//! message); the per-message hot path does not touch them. The metrics exporter and `$SYS` read
//! them through [`Stats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of broker events.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_current: AtomicU64,
    pub(crate) connects_refused: AtomicU64,
    pub(crate) malformed_packets: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_offline_qos0: AtomicU64,
    pub(crate) dropped_too_large: AtomicU64,
    pub(crate) dropped_expired: AtomicU64,
    pub(crate) wills_published: AtomicU64,
    pub(crate) sessions_taken_over: AtomicU64,
    pub(crate) sessions_expired: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections open now.
    pub connections_current: u64,
    /// CONNECTs answered with a refusal.
    pub connects_refused: u64,
    /// Connections closed for a malformed packet (including packets over the size limit).
    pub malformed_packets: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Deliveries dropped because a session queue was full.
    pub dropped_queue_full: u64,
    /// QoS 0 deliveries not queued for an offline session.
    pub dropped_offline_qos0: u64,
    /// Deliveries dropped because they exceed the client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Deliveries dropped because their message expired.
    pub dropped_expired: u64,
    /// Will messages published.
    pub wills_published: u64,
    /// Connections closed because their client id connected again.
    pub sessions_taken_over: u64,
    /// Offline sessions ended by their expiry interval.
    pub sessions_expired: u64,
}

impl Stats {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections_total: self.connections_total.load(Relaxed),
            connections_current: self.connections_current.load(Relaxed),
            connects_refused: self.connects_refused.load(Relaxed),
            malformed_packets: self.malformed_packets.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Relaxed),
            dropped_offline_qos0: self.dropped_offline_qos0.load(Relaxed),
            dropped_too_large: self.dropped_too_large.load(Relaxed),
            dropped_expired: self.dropped_expired.load(Relaxed),
            wills_published: self.wills_published.load(Relaxed),
            sessions_taken_over: self.sessions_taken_over.load(Relaxed),
            sessions_expired: self.sessions_expired.load(Relaxed),
        }
    }
}
