//! The acknowledgement gate: a QoS 1/2 PUBLISH is answered only when every owner that must hold
//! the message has said so.
//!
//! Routing a message returns `None` when memory alone owns it (the common case: nothing is
//! allocated), or a [`Pending`] that owners hold [`Ticket`]s on: a subscriber queue that is over
//! its limit (it says yes once it has room again, or once its session goes offline or ends), an
//! in-process client that must take the message itself (the AMQP bridge, once RabbitMQ has
//! confirmed it), later the disk store (once fsynced). Each ticket is completed exactly once, and
//! a ticket dropped uncompleted counts as a refusal, so an owner that goes away can never make
//! the publisher believe its message was owned. When the last ticket is completed, the waker the
//! `Pending` was made with (the publisher's mailbox, or an in-process publisher's notifier) is
//! woken; the publisher then answers its PUBLISH packets in the order they arrived
//! ([`AckQueue`]).
//!
//! This module owns that bookkeeping only: it knows nothing of sockets, packets or routing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Reason code meaning "owned" (MQTT 5 success).
const OWNED: u8 = 0;

/// Something to wake when a [`Pending`] resolves.
pub trait GateWaker: Send + Sync + 'static {
    /// Called once, by whichever owner answers last.
    fn wake(&self);
}

impl GateWaker for tokio::sync::Notify {
    fn wake(&self) {
        self.notify_one();
    }
}

/// The owners' answers for one message.
pub struct Pending {
    /// Tickets not yet completed, plus one while routing is still handing tickets out.
    remaining: AtomicU32,
    /// The first refusal's MQTT 5 reason code, or [`OWNED`].
    refused: AtomicU8,
    waker: Arc<dyn GateWaker>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .field("refused", &self.refused.load(Ordering::Relaxed))
            .finish()
    }
}

/// What the owners said, once all of them have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every owner holds the message.
    Owned,
    /// An owner refused it, with this MQTT 5 reason code (≥ 0x80).
    Refused(u8),
}

impl Pending {
    /// A pending answer that wakes `waker` when resolved; routing holds it open until
    /// [`Pending::seal`].
    pub fn new(waker: Arc<dyn GateWaker>) -> Arc<Pending> {
        Arc::new(Pending {
            remaining: AtomicU32::new(1),
            refused: AtomicU8::new(OWNED),
            waker,
        })
    }

    /// A ticket for one more owner.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        self.remaining.fetch_add(1, Ordering::Relaxed);
        Ticket(Some(self.clone()))
    }

    /// Routing has handed out every ticket. Returns true if they are all answered already.
    pub fn seal(&self) -> bool {
        self.answer(OWNED, false)
    }

    /// The verdict, once every ticket is answered.
    pub fn verdict(&self) -> Option<Verdict> {
        if self.remaining.load(Ordering::Acquire) != 0 {
            return None;
        }
        Some(match self.refused.load(Ordering::Acquire) {
            OWNED => Verdict::Owned,
            code => Verdict::Refused(code),
        })
    }

    /// Records one answer; the last one wakes the publisher (unless `wake` is false). True when
    /// this was the last.
    fn answer(&self, reason: u8, wake: bool) -> bool {
        if reason != OWNED {
            let _ =
                self.refused
                    .compare_exchange(OWNED, reason, Ordering::AcqRel, Ordering::Relaxed);
        }
        let last = self.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
        if last && wake {
            self.waker.wake();
        }
        last
    }
}

/// One owner's hold on a [`Pending`]. Complete it once; dropping it refuses with 0x80.
#[derive(Debug)]
pub struct Ticket(Option<Arc<Pending>>);

impl Ticket {
    /// The owner holds the message.
    pub fn owned(mut self) {
        if let Some(pending) = self.0.take() {
            pending.answer(OWNED, true);
        }
    }

    /// The owner cannot take the message: `reason` is the MQTT 5 reason code for the publisher
    /// (values below 0x80 are taken as 0x80).
    pub fn refuse(mut self, reason: u8) {
        if let Some(pending) = self.0.take() {
            pending.answer(reason.max(0x80), true);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            pending.answer(0x80, true);
        }
    }
}

/// What a [`TicketSource`] wakes: an `Arc` of a waker, cloned into the message's [`Pending`]
/// only when a ticket is taken (so that a connection need not keep a second, type-erased
/// handle on its mailbox: every idle connection would pay for it).
pub trait WakerSource: Sync {
    /// A handle on the waker.
    fn waker(&self) -> Arc<dyn GateWaker>;
}

impl<T: GateWaker> WakerSource for Arc<T> {
    fn waker(&self) -> Arc<dyn GateWaker> {
        self.clone()
    }
}

impl WakerSource for Arc<dyn GateWaker> {
    fn waker(&self) -> Arc<dyn GateWaker> {
        self.clone()
    }
}

/// Hands out tickets for one message as routing finds owners, making its [`Pending`] only
/// when the first is needed: routing a message that memory alone owns allocates nothing.
pub struct TicketSource<'a> {
    waker: Option<&'a dyn WakerSource>,
    pending: Option<Arc<Pending>>,
    now_ms: u64,
}

impl<'a> TicketSource<'a> {
    /// Tickets whose resolution wakes `waker`; `now_ms` is the broker clock at routing.
    pub fn new(waker: &'a dyn WakerSource, now_ms: u64) -> TicketSource<'a> {
        TicketSource {
            waker: Some(waker),
            pending: None,
            now_ms,
        }
    }

    /// For a message nobody answers for (a will, a `$SYS` update): no tickets are made.
    pub fn none(now_ms: u64) -> TicketSource<'static> {
        TicketSource {
            waker: None,
            pending: None,
            now_ms,
        }
    }

    /// The broker clock at routing, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// A ticket for one more owner (`None` when nobody waits for this message).
    pub fn take(&mut self) -> Option<Ticket> {
        let waker = self.waker?;
        Some(
            self.pending
                .get_or_insert_with(|| Pending::new(waker.waker()))
                .ticket(),
        )
    }

    /// Routing is over: `None` when every owner has answered yes already (or there was none),
    /// else the pending answer to wait for.
    pub fn finish(self) -> Option<Arc<Pending>> {
        let pending = self.pending?;
        if pending.seal() && pending.verdict() == Some(Verdict::Owned) {
            return None;
        }
        Some(pending)
    }
}

/// One QoS 1/2 PUBLISH of a publisher, waiting to be answered.
#[derive(Debug)]
pub struct Unanswered {
    /// Its packet identifier.
    pub pkid: u16,
    /// True for QoS 2 (answered with PUBREC), false for QoS 1 (PUBACK).
    pub exactly_once: bool,
    /// The reason code to answer with when owned (success, or "no matching subscribers").
    pub success: u8,
    /// The owners' answers; `None` when memory alone owned it at once.
    pub pending: Option<Arc<Pending>>,
    /// When it arrived (the deadline runs from here).
    pub since: Instant,
}

/// A publisher's unanswered PUBLISH packets, answered strictly in arrival order.
///
/// Every connection holds one, and most never have a packet wait (memory alone owns it and the
/// answer goes out at once): the queue is boxed and made when the first packet must wait.
#[derive(Debug, Default)]
pub struct AckQueue {
    waiting: Option<Box<Waiting>>,
}

#[derive(Debug, Default)]
struct Waiting {
    queue: VecDeque<Unanswered>,
    exactly_once: usize,
}

impl AckQueue {
    /// Number of unanswered packets.
    pub fn len(&self) -> usize {
        self.waiting.as_ref().map_or(0, |w| w.queue.len())
    }

    /// True when every packet has been answered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `entry` behind the others. Returns it back when it can be answered at once
    /// (nothing ahead of it, nothing pending), so the common case never touches the queue.
    pub fn push(&mut self, entry: Unanswered) -> Option<Unanswered> {
        if self.is_empty() && entry.pending.is_none() {
            return Some(entry);
        }
        let w = self.waiting.get_or_insert_with(Box::default);
        w.exactly_once += usize::from(entry.exactly_once);
        w.queue.push_back(entry);
        if w.queue.capacity() > 64 && w.queue.len() * 4 < w.queue.capacity() {
            w.queue.shrink_to_fit();
        }
        None
    }

    /// The next packet to answer, with its verdict, if the front one is resolved.
    pub fn pop_ready(&mut self) -> Option<(Unanswered, Verdict)> {
        let w = self.waiting.as_mut()?;
        let front = w.queue.front()?;
        let verdict = match &front.pending {
            None => Verdict::Owned,
            Some(pending) => pending.verdict()?,
        };
        let entry = w.queue.pop_front()?;
        w.exactly_once -= usize::from(entry.exactly_once);
        if w.queue.is_empty() && w.queue.capacity() > 64 {
            w.queue = VecDeque::new();
        }
        Some((entry, verdict))
    }

    /// Number of unanswered QoS 2 packets.
    pub fn exactly_once_len(&self) -> usize {
        self.waiting.as_ref().map_or(0, |w| w.exactly_once)
    }

    /// When the oldest unanswered packet arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.waiting.as_ref()?.queue.front().map(|e| e.since)
    }

    /// True if a QoS 2 packet with `pkid` is still waiting for its PUBREC.
    pub fn has_exactly_once(&self, pkid: u16) -> bool {
        self.waiting
            .as_ref()
            .is_some_and(|w| w.queue.iter().any(|e| e.exactly_once && e.pkid == pkid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl GateWaker for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn entry(pkid: u16, pending: Option<Arc<Pending>>) -> Unanswered {
        Unanswered {
            pkid,
            exactly_once: false,
            success: 0,
            pending,
            since: Instant::now(),
        }
    }

    #[test]
    fn sealed_without_tickets_is_owned_without_waking() {
        let waker = Arc::new(Count::default());
        let pending = Pending::new(waker.clone());
        assert!(pending.seal());
        assert_eq!(pending.verdict(), Some(Verdict::Owned));
        assert_eq!(waker.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn last_ticket_wakes_once_and_a_refusal_wins() {
        let waker = Arc::new(Count::default());
        let pending = Pending::new(waker.clone());
        let (a, b, c) = (pending.ticket(), pending.ticket(), pending.ticket());
        assert!(!pending.seal());
        a.owned();
        b.refuse(0x97);
        assert_eq!(pending.verdict(), None);
        assert_eq!(waker.0.load(Ordering::Relaxed), 0);
        c.owned();
        assert_eq!(pending.verdict(), Some(Verdict::Refused(0x97)));
        assert_eq!(waker.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_dropped_ticket_refuses() {
        let pending = Pending::new(Arc::new(Count::default()));
        let ticket = pending.ticket();
        pending.seal();
        drop(ticket);
        assert_eq!(pending.verdict(), Some(Verdict::Refused(0x80)));
    }

    #[test]
    fn answers_leave_in_arrival_order() {
        let mut queue = AckQueue::default();
        assert!(queue.push(entry(1, None)).is_some(), "fast path");
        let slow = Pending::new(Arc::new(Count::default()));
        let ticket = slow.ticket();
        slow.seal();
        assert!(queue.push(entry(2, Some(slow))).is_none());
        // Owned at once, but behind packet 2.
        assert!(queue.push(entry(3, None)).is_none());
        assert!(queue.pop_ready().is_none());
        ticket.owned();
        assert_eq!(queue.pop_ready().map(|(e, _)| e.pkid), Some(2));
        assert_eq!(queue.pop_ready().map(|(e, _)| e.pkid), Some(3));
        assert!(queue.is_empty());
    }
}
