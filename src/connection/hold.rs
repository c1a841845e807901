//! Output held until the store has the state it announces.
//!
//! For a persistent session on the disk store (with fsync on), some packets promise the client
//! something the broker must still know after a crash: an outgoing QoS 2 PUBLISH's packet id
//! (after a restart it is resent with DUP under the same id, which the client recognises, not
//! under a new one, which it would deliver again), a PUBREL (after it the PUBLISH must never
//! be resent), and the PUBCOMP of a released incoming id (after it the client may use the id
//! for a new message). Such a packet, and everything encoded after it (order is kept), waits in
//! the write buffer until a store barrier recorded after the state changes is committed: one
//! barrier per round of the packet loop, so one fsync covers every such packet of the round.
//! The rest of the connection goes on meanwhile (input, acks, the mailbox).

use std::collections::VecDeque;
use std::sync::Arc;

use super::Connection;
use crate::gate::{Pending, Verdict};
use crate::protocol::QoS;

/// Held output of one connection (allocated only while some is held).
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Bytes taken out of the write buffer since this was made.
    written: u64,
    /// Held stretches, oldest first: where each starts (counted like `written`) and the
    /// barrier it waits for (`None` until one is recorded, at the end of the round).
    queue: VecDeque<(u64, Option<Arc<Pending>>)>,
}

impl Holds {
    /// Holds the output from `buffered` bytes into the write buffer on.
    fn hold_from(&mut self, buffered: usize) {
        if matches!(self.queue.back(), Some((_, None))) {
            return; // this round holds already, from an earlier byte
        }
        self.queue.push_back((self.written + buffered as u64, None));
    }

    /// Drops the holds whose barrier is committed; a refused barrier (a failed commit: the
    /// store retries it) is to be recorded again. Returns how many bytes of a write buffer of
    /// `buffered` bytes may leave now.
    fn open(&mut self, buffered: usize) -> usize {
        while let Some((_, Some(pending))) = self.queue.front_mut() {
            match pending.verdict() {
                Some(Verdict::Owned) => {
                    self.queue.pop_front();
                }
                Some(Verdict::Refused(_)) => {
                    self.queue[0].1 = None;
                    break;
                }
                None => break,
            }
        }
        match self.queue.front() {
            Some(&(start, _)) => usize::try_from(start.saturating_sub(self.written))
                .map_or(buffered, |n| n.min(buffered)),
            None => buffered,
        }
    }

    /// True when a hold waits for a barrier to be recorded.
    fn wants_barrier(&self) -> bool {
        self.queue.iter().any(|(_, p)| p.is_none())
    }

    /// `pending` is the barrier of every hold that had none.
    fn barrier(&mut self, pending: &Arc<Pending>) {
        for (_, p) in self.queue.iter_mut().filter(|(_, p)| p.is_none()) {
            *p = Some(pending.clone());
        }
    }
}

impl Connection {
    /// What is encoded next (and after it) waits until the store holds the session's state
    /// as it is at the end of this round; nothing is held for a session that is not persistent.
    pub(super) fn hold_output(&mut self) {
        if self.core.holds_output(&self.session) {
            let buffered = self.wbuf.len();
            self.holds.get_or_insert_default().hold_from(buffered);
        }
    }

    /// Holds the output from the first resent QoS 2 message on (its state may have been
    /// journalled by the previous connection but not committed yet).
    pub(super) fn hold_resent(&mut self) {
        let stored_qos2 = self
            .session
            .outgoing
            .iter()
            .any(|o| o.delivery.qos == QoS::ExactlyOnce && o.delivery.seq != 0);
        if stored_qos2 {
            self.hold_output();
        }
    }

    /// At the end of a round, after the session's changes went to the store: records the
    /// barrier that held output waits for.
    pub(super) fn seal_holds(&mut self) {
        let Some(holds) = &mut self.holds else {
            return;
        };
        if !holds.wants_barrier() {
            return;
        }
        let pending = Pending::new(self.session.mailbox.clone());
        self.core.store_barrier(pending.ticket());
        // Resolved later: the session's mailbox is woken and the loop writes on.
        pending.seal();
        holds.barrier(&pending);
    }

    /// Bytes at the front of the write buffer that may be written now.
    pub(super) fn writable(&mut self) -> usize {
        let Some(holds) = &mut self.holds else {
            return self.wbuf.len();
        };
        let open = holds.open(self.wbuf.len());
        if holds.queue.is_empty() {
            self.holds = None;
        }
        open
    }

    /// `n` bytes of the write buffer were written.
    pub(super) fn wrote(&mut self, n: usize) {
        if let Some(holds) = &mut self.holds {
            holds.written += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl crate::gate::GateWaker for Nobody {
        fn wake(&self) {}
    }

    #[test]
    fn held_bytes_leave_in_order_once_their_barrier_is_committed() {
        let mut holds = Holds::default();
        holds.hold_from(10);
        holds.hold_from(20); // same round: held from 10 already
        assert_eq!(holds.open(30), 10);
        assert!(holds.wants_barrier());
        let first = Pending::new(Arc::new(Nobody));
        let ticket = first.ticket();
        first.seal();
        holds.barrier(&first);
        holds.written += 10;
        holds.hold_from(25); // next round, at byte 35 of the stream
        let second = Pending::new(Arc::new(Nobody));
        let second_ticket = second.ticket();
        second.seal();
        holds.barrier(&second);
        assert_eq!(holds.open(30), 0);
        ticket.refuse(0x97);
        assert_eq!(holds.open(30), 0, "a refused barrier keeps holding");
        assert!(holds.wants_barrier());
        let again = Pending::new(Arc::new(Nobody));
        again.seal();
        holds.barrier(&again);
        assert_eq!(holds.open(30), 25);
        second_ticket.owned();
        assert_eq!(holds.open(30), 30);
        assert!(holds.queue.is_empty());
    }
}
