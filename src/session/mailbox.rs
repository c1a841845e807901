//! Messages on their way to one session, and the bounded queue that holds them.
//!
//! A [`Message`] is built once per PUBLISH and shared (`Arc`) by every subscriber it reaches; a
//! [`Delivery`] adds what differs per subscriber (granted QoS, retain flag, subscription ids). The
//! [`Mailbox`] is the one queue a session has: the router pushes into it whether the session is
//! online or not, and the connection task drains it into its inflight window. That one queue is
//! therefore both the offline queue of a persistent session and the backlog of a slow subscriber,
//! bounded by count and bytes. Policy when full: QoS 0 deliveries, and any delivery to an
//! offline session, are dropped (the newest) and counted; a QoS 1/2 delivery to a connected
//! session is queued past the limit and its publisher pauses until there is room again
//! (back-pressure), so an acknowledged message is not dropped for a slow subscriber.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::protocol::{PublishProperties, QoS};
use crate::session::SessionState;

/// A request to the connection that drains a mailbox: stop, and hand the session over if it
/// outlives its connection (`None` when it ended with it: the new connection starts afresh).
pub type TakeOver = oneshot::Sender<Option<SessionState>>;

/// What the broker can tell the connection draining a mailbox (besides "deliveries waiting").
#[derive(Debug)]
pub enum Control {
    /// Another connection claimed the client id.
    TakeOver(TakeOver),
    /// The broker is shutting down.
    Shutdown,
    /// Nothing arrived within 1.5 × keep alive.
    KeepAliveExpired,
}

/// One application message as published, shared by all its deliveries.
#[derive(Debug)]
pub struct Message {
    /// Topic name.
    pub topic: ByteString,
    /// Payload, shared without copy.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// Retain flag it was published with.
    pub retain: bool,
    /// 5.0 properties to forward (topic alias and subscription ids removed).
    pub properties: PublishProperties,
    /// When the Message Expiry Interval runs out, if one was given.
    pub expires_at: Option<Instant>,
    /// Mailbox id of the publishing session (for No Local); 0 for the broker itself.
    pub origin: u64,
    /// When the broker received it (delivery latency).
    pub received_at: Instant,
}

impl Message {
    /// A copy whose topic and payload own their memory instead of slicing the read buffer they
    /// arrived in (which may be much larger): for messages kept long, like retained ones.
    pub fn compacted(&self) -> Message {
        Message {
            topic: ByteString::from(&*self.topic),
            payload: Bytes::copy_from_slice(&self.payload),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            expires_at: self.expires_at,
            origin: self.origin,
            received_at: self.received_at,
        }
    }

    /// True once the message's expiry interval has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A message bound for one session, with what that session's subscriptions granted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS to deliver at: min(published, granted).
    pub qos: QoS,
    /// Retain flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (5.0).
    pub subscription_ids: Vec<u32>,
}

/// How a delivery was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Within the limits.
    Normally,
    /// A QoS 1/2 delivery to a connected session whose queue is full: queued past the limit so
    /// that nothing acknowledged is lost, and the publisher must pause until
    /// there is room again
    OverLimit,
}

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The queue hit its message count or byte limit.
    QueueFull,
    /// QoS 0 for an offline session that does not queue QoS 0.
    OfflineQoS0,
    /// The session is gone.
    Closed,
}

/// Limits of one mailbox.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    /// Maximum queued messages.
    pub max_messages: usize,
    /// Maximum queued payload bytes.
    pub max_bytes: usize,
    /// Queue QoS 0 messages while the session is offline.
    pub queue_qos0_offline: bool,
}

#[derive(Debug)]
struct Inner {
    queue: VecDeque<Delivery>,
    bytes: usize,
    online: bool,
    closed: bool,
    control: Option<Control>,
    /// Mailboxes of publishers paused until this queue drops below its limits.
    room_waiters: Vec<Arc<Mailbox>>,
}

/// The queue between the router and one session.
#[derive(Debug)]
pub struct Mailbox {
    id: u64,
    /// Shared by every mailbox of the broker.
    limits: Arc<MailboxLimits>,
    inner: Mutex<Inner>,
    notify: Notify,
    /// 1.5 × the connection's keep alive in milliseconds; 0 when none.
    keep_alive_ms: AtomicU64,
    /// When the connection last read input, in the broker clock's milliseconds.
    last_activity_ms: AtomicU64,
    /// QoS 1/2 messages sent and not yet acknowledged (kept up to date by the connection).
    inflight: AtomicU64,
    /// Number of topic filters the session subscribes to (kept up to date by the connection):
    /// with one at most, a message can match it only once, and fan-out skips the merge.
    filters: AtomicU64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Mailbox {
    /// A new, empty, offline mailbox with a process-unique id.
    pub fn new(limits: Arc<MailboxLimits>) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            limits,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                online: false,
                closed: false,
                control: None,
                room_waiters: Vec::new(),
            }),
            notify: Notify::new(),
            keep_alive_ms: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            filters: AtomicU64::new(0),
        })
    }

    /// Process-unique id of this mailbox (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues `delivery`, or says why not. Wakes the connection task if one is attached.
    pub fn push(&self, delivery: Delivery) -> Result<Queued, Dropped> {
        let len = delivery.message.payload.len();
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Dropped::Closed);
        }
        if !inner.online && delivery.qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline {
            return Err(Dropped::OfflineQoS0);
        }
        let mut queued = Queued::Normally;
        if !Self::has_room(&inner, &self.limits, len) {
            // QoS 0, and anything for an offline session (nothing would drain the queue while
            // the publisher waited), is dropped; QoS 1/2 to a connected session goes over the
            // limit and pushes back on its publisher.
            if delivery.qos == QoS::AtMostOnce || !inner.online {
                return Err(Dropped::QueueFull);
            }
            queued = Queued::OverLimit;
        }
        inner.bytes += len;
        inner.queue.push_back(delivery);
        let online = inner.online;
        drop(inner);
        if online {
            self.notify.notify_one();
        }
        Ok(queued)
    }

    fn has_room(inner: &Inner, limits: &MailboxLimits, extra: usize) -> bool {
        inner.queue.len() < limits.max_messages && inner.bytes + extra <= limits.max_bytes
    }

    /// True when the queue is below its limits, or nothing would drain it (offline, closed);
    /// otherwise registers `waiter`, the paused publisher's own mailbox, to be notified when
    /// that changes. This is how a publisher paused by [`Queued::OverLimit`] waits, without a
    /// future of its own: the wake-up arrives like a delivery.
    pub fn room_or_wait(&self, waiter: &Arc<Mailbox>) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed || !inner.online || Self::has_room(&inner, &self.limits, 0) {
            return true;
        }
        if !inner.room_waiters.iter().any(|w| w.id == waiter.id) {
            inner.room_waiters.push(waiter.clone());
        }
        false
    }

    fn wake_room_waiters(&self, inner: &mut Inner) {
        if !inner.room_waiters.is_empty()
            && (inner.closed || !inner.online || Self::has_room(inner, &self.limits, 0))
        {
            for waiter in inner.room_waiters.drain(..) {
                waiter.notify.notify_one();
            }
        }
    }

    /// Moves up to `max` deliveries from the front into `out`, taking at most `qos_room` of QoS
    /// 1/2 (the free inflight slots); stops at a QoS 1/2 delivery when there is no room, so order
    /// is kept. Returns how many were taken.
    pub fn pop_into(&self, out: &mut VecDeque<Delivery>, max: usize, mut qos_room: usize) -> usize {
        let mut inner = self.inner.lock();
        let mut taken = 0;
        while taken < max {
            match inner.queue.front() {
                None => break,
                Some(front) if front.qos != QoS::AtMostOnce => {
                    if qos_room == 0 {
                        break;
                    }
                    qos_room -= 1;
                }
                Some(_) => {}
            }
            let Some(d) = inner.queue.pop_front() else {
                break;
            };
            inner.bytes -= d.message.payload.len();
            out.push_back(d);
            taken += 1;
        }
        self.wake_room_waiters(&mut inner);
        taken
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the session online (a connection drains it) or offline.
    pub fn set_online(&self, online: bool) {
        let mut inner = self.inner.lock();
        inner.online = online;
        self.wake_room_waiters(&mut inner);
    }

    /// Refuses every later push and drops what is queued (the session has ended).
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.queue.clear();
        inner.bytes = 0;
        self.wake_room_waiters(&mut inner);
    }

    /// Tells the connection draining this mailbox something. A takeover request is never
    /// replaced by a lesser signal.
    pub fn signal(&self, control: Control) {
        let mut inner = self.inner.lock();
        if matches!(inner.control, Some(Control::TakeOver(_)))
            && !matches!(control, Control::TakeOver(_))
        {
            return;
        }
        inner.control = Some(control);
        drop(inner);
        self.notify.notify_one();
    }

    /// Asks the connection draining this mailbox to stop and hand its session over.
    pub fn request_takeover(&self, reply: TakeOver) {
        self.signal(Control::TakeOver(reply));
    }

    /// The pending signal, if any.
    pub fn take_control(&self) -> Option<Control> {
        self.inner.lock().control.take()
    }

    /// Starts keep-alive tracking for a new connection (`None`: no keep alive).
    pub fn set_keep_alive(&self, window: Option<std::time::Duration>, now_ms: u64) {
        let ms = window.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
        self.keep_alive_ms.store(ms, Ordering::Relaxed);
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Records how many QoS 1/2 messages are in flight (for the metrics).
    pub fn set_inflight(&self, n: usize) {
        self.inflight.store(n as u64, Ordering::Relaxed);
    }

    /// QoS 1/2 messages in flight, as last recorded.
    pub fn inflight(&self) -> usize {
        usize::try_from(self.inflight.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Records how many topic filters the session subscribes to.
    pub fn set_filter_count(&self, n: usize) {
        self.filters.store(n as u64, Ordering::Relaxed);
    }

    /// True when several of the session's subscriptions could match one message.
    pub fn may_match_twice(&self) -> bool {
        self.filters.load(Ordering::Relaxed) > 1
    }

    /// Records input from the client at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// True when keep alive is on and nothing arrived within its window before `now_ms`.
    pub fn keep_alive_expired(&self, now_ms: u64) -> bool {
        let window = self.keep_alive_ms.load(Ordering::Relaxed);
        window != 0 && now_ms.saturating_sub(self.last_activity_ms.load(Ordering::Relaxed)) > window
    }

    /// Waits until a push happens while online, or a signal arrives.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// A mailbox as a subscription key in the trie: equal and hashed by identity.
#[derive(Debug, Clone)]
pub struct Subscriber(pub Arc<Mailbox>);

impl PartialEq for Subscriber {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for Subscriber {}
impl std::hash::Hash for Subscriber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}
