//! Broker-wide counters, read by the metrics exporter and `$SYS`.
//!
//! Two kinds. Rare events (a connection, a malformed packet, a dropped message) are plain
//! atomics bumped where they happen. Per-packet counts (packets, bytes, messages) go to a
//! [`Shard`] of the worker thread that handles them: a cache line no other thread writes, so the
//! hot path never contends on a shared atomic; [`Stats::snapshot`] adds the shards up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

/// Number of per-thread shards (threads beyond it share, which stays correct).
const SHARDS: usize = 16;

/// Per-thread counters of the per-packet path.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Shard {
    packets_in: [AtomicU64; 16],
    packets_out: [AtomicU64; 16],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    received: [AtomicU64; 3],
    delivered: [AtomicU64; 3],
}

impl Shard {
    /// A packet of type `code` (1–15) received.
    pub fn packet_in(&self, code: usize) {
        self.packets_in[code & 15].fetch_add(1, Relaxed);
    }
    /// A packet of type `code` (1–15) sent.
    pub fn packet_out(&self, code: usize) {
        self.packets_out[code & 15].fetch_add(1, Relaxed);
    }
    /// Bytes read from clients.
    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }
    /// Bytes written to clients.
    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }
    /// An application message received from a client at `qos`.
    pub fn received(&self, qos: u8) {
        self.received[usize::from(qos.min(2))].fetch_add(1, Relaxed);
    }
    /// An application message delivered to a client at `qos`.
    pub fn delivered(&self, qos: u8) {
        self.delivered[usize::from(qos.min(2))].fetch_add(1, Relaxed);
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD_INDEX: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A session queue was full.
    QueueFull = 0,
    /// QoS 0 for an offline session that does not queue QoS 0.
    OfflineQoS0 = 1,
    /// Larger than the client's Maximum Packet Size.
    TooLarge = 2,
    /// Its Message Expiry Interval ran out.
    Expired = 3,
    /// No subscription matched it.
    NoSubscribers = 4,
    /// Dropped from a slow subscriber's queue (`slow_subscriber = "drop_qos0"`).
    SlowSubscriber = 5,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::OfflineQoS0,
        DropReason::TooLarge,
        DropReason::Expired,
        DropReason::NoSubscribers,
        DropReason::SlowSubscriber,
    ];

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::OfflineQoS0 => "offline_qos0",
            DropReason::TooLarge => "too_large",
            DropReason::Expired => "expired",
            DropReason::NoSubscribers => "no_subscribers",
            DropReason::SlowSubscriber => "slow_subscriber",
        }
    }
}

/// Connections of one listener and protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCount {
    /// Connected now (past CONNACK).
    pub current: u64,
    /// Connected since start.
    pub total: u64,
}

/// Counters of broker events.
#[derive(Debug)]
pub struct Stats {
    shards: Box<[Shard]>,
    pub(crate) sockets_accepted: AtomicU64,
    pub(crate) sockets_open: AtomicU64,
    pub(crate) malformed_packets: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    /// Messages not delivered, by [`DropReason`] and QoS.
    dropped: [[AtomicU64; 3]; 6],
    pub(crate) wills_published: AtomicU64,
    pub(crate) shared_redispatched: AtomicU64,
    pub(crate) sessions_taken_over: AtomicU64,
    pub(crate) sessions_expired: AtomicU64,
    pub(crate) slow_subscribers: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    /// The process's open-file limit, as raised at start (0 if unknown).
    pub(crate) open_files_limit: AtomicU64,
    connections: Mutex<BTreeMap<(Arc<str>, &'static str), ConnCount>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections closed before MQTT, by listener and reason.
    rejected: Mutex<BTreeMap<(Box<str>, &'static str), u64>>,
    /// Times a client's PUBLISH input was paused by the publish rate limits.
    pub(crate) publish_pauses: AtomicU64,
    /// Failed authentications by reason.
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Reloads: succeeded, failed.
    reloads: [AtomicU64; 2],
    /// ACL refusals by [`AclAction`].
    acl_denied: [AtomicU64; 3],
}

/// What an ACL refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// A PUBLISH from a client (or the bridge).
    Publish = 0,
    /// A SUBSCRIBE filter.
    Subscribe = 1,
    /// A message (or retained message) a subscription matched but the client may not read.
    Deliver = 2,
}

impl AclAction {
    /// Metric labels, in index order.
    pub const LABELS: [&'static str; 3] = ["publish", "subscribe", "deliver"];
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            sockets_accepted: AtomicU64::new(0),
            sockets_open: AtomicU64::new(0),
            malformed_packets: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            dropped: Default::default(),
            wills_published: AtomicU64::new(0),
            shared_redispatched: AtomicU64::new(0),
            sessions_taken_over: AtomicU64::new(0),
            sessions_expired: AtomicU64::new(0),
            slow_subscribers: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            open_files_limit: AtomicU64::new(0),
            connections: Mutex::new(BTreeMap::new()),
            refused: Mutex::new(BTreeMap::new()),
            rejected: Mutex::new(BTreeMap::new()),
            publish_pauses: AtomicU64::new(0),
            auth_failures: Mutex::new(BTreeMap::new()),
            reloads: Default::default(),
            acl_denied: Default::default(),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// TCP connections accepted since start.
    pub connections_total: u64,
    /// TCP connections open now (including those not past CONNECT yet).
    pub connections_current: u64,
    /// CONNECTs answered with a refusal (or closed for a refusal 3.1.1 cannot express).
    pub connects_refused: u64,
    /// Refusals by reason.
    pub refused_by_reason: BTreeMap<&'static str, u64>,
    /// MQTT connections by (listener, protocol version).
    pub connections_by: BTreeMap<(Arc<str>, &'static str), ConnCount>,
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
    /// Published messages that matched no subscription.
    pub dropped_no_subscribers: u64,
    /// Dropped messages by [`DropReason`] (index) and QoS.
    pub dropped_by: [[u64; 3]; 6],
    /// Will messages published.
    pub wills_published: u64,
    /// Shared-subscription deliveries given to another member after theirs ended.
    pub shared_redispatched: u64,
    /// Connections closed because their client id connected again.
    pub sessions_taken_over: u64,
    /// Offline sessions ended by their expiry interval.
    pub sessions_expired: u64,
    /// Subscribers disconnected for keeping publishers waiting.
    pub slow_subscribers: u64,
    /// Failed accepts (e.g. the open-file limit).
    pub accept_errors: u64,
    /// The process's open-file limit.
    pub open_files_limit: u64,
    /// Packets received, by type code.
    pub packets_in: [u64; 16],
    /// Packets sent, by type code.
    pub packets_out: [u64; 16],
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Application messages received from clients, by QoS.
    pub messages_received: [u64; 3],
    /// Application messages delivered to clients, by QoS.
    pub messages_delivered: [u64; 3],
    /// Connections closed before MQTT, by (listener, reason label).
    pub rejected_by: BTreeMap<(Box<str>, &'static str), u64>,
    /// Times a client's PUBLISH input was paused by the publish rate limits.
    pub publish_pauses: u64,
    /// Failed authentications by reason.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Configuration reloads: succeeded, failed.
    pub reloads: [u64; 2],
    /// ACL refusals by [`AclAction`] (index).
    pub acl_denied: [u64; 3],
}

impl Stats {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The calling thread's shard for per-packet counts.
    pub fn shard(&self) -> &Shard {
        &self.shards[SHARD_INDEX.with(|i| *i)]
    }

    /// A message at `qos` not delivered for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason, qos: u8) {
        self.dropped[reason as usize][usize::from(qos.min(2))].fetch_add(1, Relaxed);
    }

    /// A CONNECT refused for `reason`.
    pub(crate) fn refused(&self, reason: &'static str) {
        *self.refused.lock().entry(reason).or_default() += 1;
    }

    /// A connection on `listener` closed before MQTT for `reason` (a label).
    pub(crate) fn rejected(&self, listener: &str, reason: &'static str) {
        let mut map = self.rejected.lock();
        let key = (Box::from(listener), reason);
        *map.entry(key).or_default() += 1;
    }

    /// An authentication failed for `reason`.
    pub(crate) fn auth_failed(&self, reason: &'static str) {
        *self.auth_failures.lock().entry(reason).or_default() += 1;
    }

    /// A reload ended (`ok`: it took effect).
    pub(crate) fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// An ACL refused `action`.
    pub(crate) fn acl_denied(&self, action: AclAction) {
        self.acl_denied[action as usize].fetch_add(1, Relaxed);
    }

    /// An MQTT connection established on `listener` at `version`.
    pub(crate) fn connected(&self, listener: &Arc<str>, version: &'static str) {
        let mut map = self.connections.lock();
        let count = map.entry((listener.clone(), version)).or_default();
        count.current += 1;
        count.total += 1;
    }

    /// An MQTT connection on `listener` at `version` ended.
    pub(crate) fn disconnected(&self, listener: &Arc<str>, version: &'static str) {
        if let Some(count) = self
            .connections
            .lock()
            .get_mut(&(listener.clone(), version))
        {
            count.current = count.current.saturating_sub(1);
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut snap = StatsSnapshot {
            connections_total: self.sockets_accepted.load(Relaxed),
            connections_current: self.sockets_open.load(Relaxed),
            refused_by_reason: self.refused.lock().clone(),
            connections_by: self.connections.lock().clone(),
            auth_failures: self.auth_failures.lock().clone(),
            reloads: [self.reloads[0].load(Relaxed), self.reloads[1].load(Relaxed)],
            acl_denied: [
                self.acl_denied[0].load(Relaxed),
                self.acl_denied[1].load(Relaxed),
                self.acl_denied[2].load(Relaxed),
            ],
            malformed_packets: self.malformed_packets.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            wills_published: self.wills_published.load(Relaxed),
            shared_redispatched: self.shared_redispatched.load(Relaxed),
            sessions_taken_over: self.sessions_taken_over.load(Relaxed),
            sessions_expired: self.sessions_expired.load(Relaxed),
            slow_subscribers: self.slow_subscribers.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            open_files_limit: self.open_files_limit.load(Relaxed),
            rejected_by: self.rejected.lock().clone(),
            publish_pauses: self.publish_pauses.load(Relaxed),
            ..StatsSnapshot::default()
        };
        snap.connects_refused = snap.refused_by_reason.values().sum();
        for (r, row) in self.dropped.iter().enumerate() {
            for (q, n) in row.iter().enumerate() {
                snap.dropped_by[r][q] = n.load(Relaxed);
            }
        }
        let total = |r: DropReason| snap.dropped_by[r as usize].iter().sum::<u64>();
        snap.dropped_queue_full = total(DropReason::QueueFull);
        snap.dropped_offline_qos0 = total(DropReason::OfflineQoS0);
        snap.dropped_too_large = total(DropReason::TooLarge);
        snap.dropped_expired = total(DropReason::Expired);
        snap.dropped_no_subscribers = total(DropReason::NoSubscribers);
        for shard in self.shards.iter() {
            for i in 0..16 {
                snap.packets_in[i] += shard.packets_in[i].load(Relaxed);
                snap.packets_out[i] += shard.packets_out[i].load(Relaxed);
            }
            snap.bytes_in += shard.bytes_in.load(Relaxed);
            snap.bytes_out += shard.bytes_out.load(Relaxed);
            for q in 0..3 {
                snap.messages_received[q] += shard.received[q].load(Relaxed);
                snap.messages_delivered[q] += shard.delivered[q].load(Relaxed);
            }
        }
        snap
    }
}
