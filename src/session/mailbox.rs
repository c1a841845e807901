//! The bounded queue between the router and one session, and the signals to the task that
//! drains it.
//!
//! The [`Mailbox`] is the one queue a session has: the router pushes into it whether the session
//! is online or not, and the connection task (or an in-process client) drains it into its
//! inflight window. That one queue is therefore both the offline queue of a persistent session
//! and the backlog of a slow subscriber, bounded by count and by the bytes its deliveries really
//! hold ([`Delivery::cost`]).
//!
//! Policy when full:
//! - QoS 0 deliveries, and any delivery to an offline session, are dropped (the newest) and
//!   counted;
//! - a QoS 1/2 delivery to a connected session is queued past the limit, and the publisher's
//!   answer waits (a [`Ticket`] of the acknowledgement gate, kept here) until the queue has room
//!   again, the session goes offline, or it ends. A publisher therefore slows down to the pace
//!   of its slowest subscriber, within its Receive Maximum, while it keeps reading acks, pings
//!   and new input. [`Mailbox::waiting_since`] tells the broker's sweeper how long the oldest
//!   publisher has waited, so that past a limit the slow subscriber pays (its QoS 0 backlog is
//!   dropped, or it is disconnected), not the publishers.
//! - An *owner* mailbox (an in-process client that must confirm what it takes, like the AMQP
//!   bridge) gives each QoS 1/2 delivery a ticket of its own instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::gate::{GateWaker, Ticket, TicketSource};
use crate::protocol::QoS;
use crate::session::SessionState;

pub use super::message::{Delivery, Message, MessageParts};

/// A request to the connection that drains a mailbox: stop, and hand the session over if it
/// outlives its connection (`None` when it ended with it: the new connection starts afresh).
pub type TakeOver = oneshot::Sender<Option<SessionState>>;

/// What the broker can tell the task draining a mailbox (besides "deliveries waiting").
#[derive(Debug)]
pub enum Control {
    /// Another connection claimed the client id.
    TakeOver(TakeOver),
    /// The broker is shutting down.
    Shutdown,
    /// Nothing arrived within 1.5 × keep alive.
    KeepAliveExpired,
    /// The credentials the client connected with have expired (a JWT's `exp`).
    CredentialsExpired,
    /// Publishers have waited too long for room in this session's queue: disconnect it.
    SlowSubscriber,
    /// The operator disconnects the client (admin API), with this 5.0 reason code.
    Kick(u8),
    /// The auth files were reloaded: check the credentials and subscriptions again. The
    /// weakest signal: it never replaces another one.
    Reauthorize,
}

/// How a delivery was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Within the limits.
    Normally,
    /// A QoS 1/2 delivery to a connected session whose queue is full: queued past the limit so
    /// that nothing acknowledged is lost; the publisher's answer waits for room.
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

/// A delivery [`Mailbox::offer`] did not queue, and why.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub why: Dropped,
    /// The delivery, untouched.
    pub delivery: Delivery,
}

impl Refused {
    fn new(why: Dropped, delivery: Delivery) -> Refused {
        Refused { why, delivery }
    }
}

/// Where the queued QoS 1/2 deliveries of a persistent session are journalled (the disk
/// store). Called under the mailbox's lock, so that a delivery is journalled before anything
/// can take it out of the queue; implementations must only queue the change.
pub trait QueueJournal: Send + Sync + 'static {
    /// `delivery` was queued as `seq` of session `sid`; `ticket`, if any, is the publisher's,
    /// completed once the change is durable.
    fn queued(&self, sid: u64, seq: u64, delivery: &Delivery, ticket: Option<Ticket>);
    /// Session `sid` ended (everything of it leaves the journal).
    fn ended(&self, sid: u64);
    /// True when publishers' answers wait for the journal (a ticket is wanted).
    fn gates(&self) -> bool;
}

/// A mailbox's link to the journal of its persistent session.
struct Durable {
    sid: u64,
    last_seq: u64,
    journal: Arc<dyn QueueJournal>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("sid", &self.sid)
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

/// Limits of one mailbox.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    /// Maximum queued messages.
    pub max_messages: usize,
    /// Maximum bytes held by queued deliveries ([`Delivery::cost`]).
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
    /// Publishers' tickets for deliveries queued past the limit: answered once there is room.
    room_tickets: Vec<Ticket>,
    /// Set for a persistent session journalled in the disk store (boxed: most mailboxes have
    /// none, and every idle connection's mailbox would pay for its bytes).
    durable: Option<Box<Durable>>,
}

/// The queue between the router and one session.
#[derive(Debug)]
pub struct Mailbox {
    id: u64,
    /// Who the session is for No Local: its own id, or one shared by in-process clients of one
    /// component (so that what the bridge publishes never comes back to it).
    origin: u64,
    /// Deliveries at QoS 1/2 carry a ticket that the drainer completes (in-process owners).
    owner: bool,
    /// Shared by every mailbox of the broker.
    limits: Arc<MailboxLimits>,
    inner: Mutex<Inner>,
    notify: Notify,
    /// 1.5 × the connection's keep alive in milliseconds; 0 when none.
    keep_alive_ms: AtomicU32,
    /// When the connection last read a whole packet, in the broker clock's milliseconds.
    last_activity_ms: AtomicU64,
    /// When the connection's credentials expire, in the broker clock's milliseconds; 0: never.
    credentials_expire_ms: AtomicU64,
    /// Broker clock (ms, at least 1) when the oldest room ticket was taken; 0 when none waits.
    waiting_since_ms: AtomicU64,
    /// QoS 1/2 messages sent and not yet acknowledged (kept up to date by the connection).
    inflight: AtomicU32,
    /// Number of topic filters the session subscribes to (kept up to date by the connection):
    /// with one at most, a message can match it only once, and fan-out skips the merge.
    filters: AtomicU32,
    /// Online and not closed, readable without the lock (shared subscriptions prefer such
    /// members); kept equal to `inner.online && !inner.closed` under the lock.
    available: AtomicBool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Mailbox {
    /// A new, empty, offline mailbox with a process-unique id.
    pub fn new(limits: Arc<MailboxLimits>) -> Arc<Mailbox> {
        Self::build(limits, false)
    }

    /// A mailbox for an in-process owner: its QoS 1/2 deliveries each carry a ticket that the
    /// publisher's answer waits for.
    pub fn new_owner(limits: Arc<MailboxLimits>) -> Arc<Mailbox> {
        Self::build(limits, true)
    }

    /// An owner mailbox (see [`Mailbox::new_owner`]) whose No Local identity is `origin`.
    pub fn new_owner_with_origin(limits: Arc<MailboxLimits>, origin: u64) -> Arc<Mailbox> {
        let mut mailbox = Self::build(limits, true);
        if let Some(m) = Arc::get_mut(&mut mailbox) {
            m.origin = origin;
        }
        mailbox
    }

    fn build(limits: Arc<MailboxLimits>, owner: bool) -> Arc<Mailbox> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Arc::new(Mailbox {
            id,
            origin: id,
            owner,
            limits,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                online: false,
                closed: false,
                control: None,
                room_tickets: Vec::new(),
                durable: None,
            }),
            notify: Notify::new(),
            keep_alive_ms: AtomicU32::new(0),
            credentials_expire_ms: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            waiting_since_ms: AtomicU64::new(0),
            inflight: AtomicU32::new(0),
            filters: AtomicU32::new(0),
            available: AtomicBool::new(false),
        })
    }

    /// Process-unique id of this mailbox (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id No Local compares with messages' origin.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Queues `delivery`, or says why not; a delivery that goes past the limit takes a ticket
    /// from `tickets`. Wakes the draining task if the session is online.
    pub fn push(
        &self,
        delivery: Delivery,
        tickets: &mut TicketSource<'_>,
    ) -> Result<Queued, Dropped> {
        self.offer(delivery, tickets).map_err(|refused| refused.why)
    }

    /// As [`Mailbox::push`], giving a delivery that was not queued back (a shared one goes to
    /// another member of its group when this session has ended).
    pub fn offer(
        &self,
        mut delivery: Delivery,
        tickets: &mut TicketSource<'_>,
    ) -> Result<Queued, Refused> {
        let cost = delivery.cost();
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Refused::new(Dropped::Closed, delivery));
        }
        if !inner.online && delivery.qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline {
            return Err(Refused::new(Dropped::OfflineQoS0, delivery));
        }
        let mut queued = Queued::Normally;
        if !Self::has_room(&inner, &self.limits, cost) {
            // QoS 0, and anything for an offline session (nothing would drain the queue while
            // the publisher waited), is dropped; QoS 1/2 to a connected session goes over the
            // limit and holds its publisher's answer.
            if delivery.qos == QoS::AtMostOnce || !inner.online {
                return Err(Refused::new(Dropped::QueueFull, delivery));
            }
            queued = Queued::OverLimit;
            if !self.owner {
                if let Some(ticket) = tickets.take() {
                    if inner.room_tickets.is_empty() {
                        self.waiting_since_ms
                            .store(tickets.now_ms().max(1), Ordering::Relaxed);
                    }
                    inner.room_tickets.push(ticket);
                }
            }
        }
        if self.owner && delivery.qos != QoS::AtMostOnce {
            delivery.ticket = tickets.take();
        }
        if let (Some(d), false) = (&mut inner.durable, delivery.qos == QoS::AtMostOnce) {
            d.last_seq += 1;
            delivery.seq = d.last_seq;
            let ticket = if d.journal.gates() {
                tickets.take()
            } else {
                None
            };
            d.journal.queued(d.sid, d.last_seq, &delivery, ticket);
        }
        inner.bytes += cost;
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

    /// Answers the waiting publishers' tickets if nothing holds them any more: there is room,
    /// or nothing will drain the queue (offline, closed).
    fn release_room_tickets(&self, inner: &mut Inner) {
        if !inner.room_tickets.is_empty()
            && (inner.closed || !inner.online || Self::has_room(inner, &self.limits, 0))
        {
            for ticket in inner.room_tickets.drain(..) {
                ticket.owned();
            }
            self.waiting_since_ms.store(0, Ordering::Relaxed);
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
            inner.bytes -= d.cost();
            out.push_back(d);
            taken += 1;
        }
        if inner.queue.is_empty() && inner.queue.capacity() > 1024 {
            // Do not keep a large burst's queue while idle (small ones are kept: regrowing
            // them on every burst would cost more than they hold).
            inner.queue = VecDeque::new();
        }
        self.release_room_tickets(&mut inner);
        taken
    }

    /// Drops every queued QoS 0 delivery (a slow subscriber's cheapest relief); returns how
    /// many were dropped.
    pub fn drop_qos0(&self) -> usize {
        let mut inner = self.inner.lock();
        let before = inner.queue.len();
        let mut freed = 0;
        inner.queue.retain(|d| {
            let keep = d.qos != QoS::AtMostOnce;
            if !keep {
                freed += d.cost();
            }
            keep
        });
        inner.bytes -= freed;
        let dropped = before - inner.queue.len();
        self.release_room_tickets(&mut inner);
        dropped
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Bytes held by the queued deliveries ([`Delivery::cost`]).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the session online (a task drains it) or offline. A session that may be in shared
    /// groups goes through `Core::set_online`, which tells its groups as well.
    pub fn set_online(&self, online: bool) {
        let mut inner = self.inner.lock();
        inner.online = online;
        self.available
            .store(online && !inner.closed, Ordering::Relaxed);
        self.release_room_tickets(&mut inner);
    }

    /// Links this mailbox to the journal of its persistent session `sid`; queued QoS 1/2
    /// deliveries are numbered from `last_seq + 1`.
    pub fn set_durable(&self, sid: u64, last_seq: u64, journal: Arc<dyn QueueJournal>) {
        let durable = Box::new(Durable {
            sid,
            last_seq,
            journal,
        });
        self.inner.lock().durable = Some(durable);
    }

    /// Journals `delivery`, which does not go through the queue (a retained message owed to a
    /// new subscription), for a persistent session: it takes the next place (`seq`) of the
    /// session's journal, so that it is restored (into the queue) after a restart. Does
    /// nothing for QoS 0 or a session that is not journalled.
    pub fn journal_aside(&self, delivery: &mut Delivery) {
        if delivery.qos == QoS::AtMostOnce {
            return;
        }
        let mut inner = self.inner.lock();
        if let Some(d) = &mut inner.durable {
            d.last_seq += 1;
            delivery.seq = d.last_seq;
            d.journal.queued(d.sid, d.last_seq, delivery, None);
        }
    }

    /// The store id of this mailbox's persistent session, if it is journalled.
    pub fn durable_sid(&self) -> Option<u64> {
        self.inner.lock().durable.as_ref().map(|d| d.sid)
    }

    /// Puts a delivery recovered from the store back in the queue (at start: no limit, no
    /// journal).
    pub fn restore(&self, delivery: Delivery) {
        let mut inner = self.inner.lock();
        inner.bytes += delivery.cost();
        inner.queue.push_back(delivery);
    }

    /// Refuses every later push and drops what is queued (the session has ended). Tickets of
    /// an owner's undelivered messages are dropped with them, which refuses them.
    pub fn close(&self) {
        drop(self.close_taking());
    }

    /// Like [`Mailbox::close`], but hands what was queued back instead of dropping it (for
    /// the deliveries of shared subscriptions to go to another member).
    pub fn close_taking(&self) -> VecDeque<Delivery> {
        let mut inner = self.inner.lock();
        self.available.store(false, Ordering::Relaxed);
        if let Some(d) = inner.durable.take() {
            d.journal.ended(d.sid);
        }
        inner.closed = true;
        let queue = std::mem::take(&mut inner.queue);
        inner.bytes = 0;
        self.release_room_tickets(&mut inner);
        drop(inner);
        self.notify.notify_one();
        queue
    }

    /// True when a connection drains this mailbox and it is not closed (read without the lock:
    /// a hint, exact under the lock only).
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// True once [`Mailbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Tells the task draining this mailbox something. A takeover request is never replaced by
    /// a lesser signal.
    pub fn signal(&self, control: Control) {
        let mut inner = self.inner.lock();
        if matches!(inner.control, Some(Control::TakeOver(_)))
            && !matches!(control, Control::TakeOver(_))
        {
            return;
        }
        if matches!(control, Control::Reauthorize) && inner.control.is_some() {
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
        // At most 1.5 × 65,535 s: fits in 32 bits (saturating all the same).
        let ms = window.map_or(0, |w| u32::try_from(w.as_millis()).unwrap_or(u32::MAX));
        self.keep_alive_ms.store(ms, Ordering::Relaxed);
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Sets when the connection's credentials expire (broker clock ms; `None`: never).
    pub fn set_credentials_expiry(&self, at_ms: Option<u64>) {
        self.credentials_expire_ms
            .store(at_ms.map_or(0, |ms| ms.max(1)), Ordering::Relaxed);
    }

    /// True when the connection's credentials expired before `now_ms`.
    pub fn credentials_expired(&self, now_ms: u64) -> bool {
        let at = self.credentials_expire_ms.load(Ordering::Relaxed);
        at != 0 && now_ms >= at
    }

    /// Records how many QoS 1/2 messages are in flight (for the metrics).
    pub fn set_inflight(&self, n: usize) {
        self.inflight
            .store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// QoS 1/2 messages in flight, as last recorded.
    pub fn inflight(&self) -> usize {
        usize::try_from(self.inflight.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Records how many topic filters the session subscribes to.
    pub fn set_filter_count(&self, n: usize) {
        self.filters
            .store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Number of topic filters the session subscribes to.
    pub fn filter_count(&self) -> usize {
        usize::try_from(self.filters.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// True when several of the session's subscriptions could match one message.
    pub fn may_match_twice(&self) -> bool {
        self.filters.load(Ordering::Relaxed) > 1
    }

    /// Records a whole packet from the client at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.last_activity_ms.store(now_ms, Ordering::Relaxed);
    }

    /// True when keep alive is on and no whole packet arrived within its window before `now_ms`.
    pub fn keep_alive_expired(&self, now_ms: u64) -> bool {
        let window = self.keep_alive_ms.load(Ordering::Relaxed);
        window != 0
            && now_ms.saturating_sub(self.last_activity_ms.load(Ordering::Relaxed))
                > u64::from(window)
    }

    /// Since when (broker clock, ms) the oldest publisher has waited for room here, if one does.
    pub fn waiting_since(&self) -> Option<u64> {
        match self.waiting_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(since),
        }
    }

    /// Waits until a push happens while online, a signal arrives, or a ticket this mailbox
    /// waits on (as a publisher) is answered.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// A publisher's mailbox is woken when the owners of its message have all answered.
impl GateWaker for Mailbox {
    fn wake(&self) {
        self.notify.notify_one();
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
