//! The ordered window of one outbound rule: which messages are waiting to be published, in
//! flight (awaiting RabbitMQ's confirm), being dead-lettered, or done, and in what order they
//! complete. A plain data structure (no I/O, no clock): the rule task drives it.
//!
//! Order rules:
//! - Messages are published in order, and complete (their MQTT-side acks, their spool
//!   deletes) strictly in order: only a done front is popped.
//! - Each publication carries an attempt number; a confirm for an older attempt is stale
//!   and ignored.
//! - [`Outbox::rewind_all`] (channel or connection lost) puts every message in flight back to
//!   waiting, in place; confirmed ones stay done. RabbitMQ received a prefix of what was sent,
//!   so the first copies stay in order; the republished ones may be duplicates.
//! - [`Outbox::rewind_from`] (a nack, or a `retry` return) puts that message *and every later
//!   one already sent* back to waiting (go-back-N): the later ones are published again behind
//!   its retry, so the last copies are in order.

use std::collections::VecDeque;

/// Where a publication went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The rule's exchange.
    Primary,
    /// The rule's dead-letter exchange (after a return).
    DeadLetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight(u32, Target),
    /// Settled by a confirm, the caller deciding what next.
    Settling,
    DeadLettering,
    Done,
}

struct Slot<T> {
    seq: u64,
    attempt: u32,
    state: State,
    item: T,
}

/// The window; `T` is the message with whatever the task keeps with it.
pub(crate) struct Outbox<T> {
    slots: VecDeque<Slot<T>>,
    /// No waiting slot before this index.
    next: usize,
    in_flight: usize,
}

impl<T> Outbox<T> {
    pub(crate) fn new() -> Outbox<T> {
        Outbox {
            slots: VecDeque::new(),
            next: 0,
            in_flight: 0,
        }
    }

    /// Messages held (any state).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Publications awaiting a confirm.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The sequence number of the last message held.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.slots.back().map(|s| s.seq)
    }

    /// Appends a message; `seq` must be larger than any held.
    pub(crate) fn push(&mut self, seq: u64, item: T) {
        debug_assert!(self.last_seq().is_none_or(|l| l < seq));
        self.slots.push_back(Slot {
            seq,
            attempt: 0,
            state: State::Waiting,
            item,
        });
    }

    /// The slot of `seq`: at its offset from the front when sequence numbers are contiguous
    /// (the memory modes), else by binary search (spool ids may have gaps).
    fn index(&self, seq: u64) -> Option<usize> {
        let front = self.slots.front()?.seq;
        let guess = usize::try_from(seq.checked_sub(front)?).ok()?;
        if self.slots.get(guess).is_some_and(|s| s.seq == seq) {
            return Some(guess);
        }
        self.slots.binary_search_by_key(&seq, |s| s.seq).ok()
    }

    /// The next waiting message, marked in flight to the primary exchange:
    /// `(seq, attempt, item)`.
    pub(crate) fn next_to_send(&mut self) -> Option<(u64, u32, &T)> {
        while self.next < self.slots.len() && self.slots[self.next].state != State::Waiting {
            self.next += 1;
        }
        let slot = self.slots.get_mut(self.next)?;
        slot.state = State::InFlight(slot.attempt, Target::Primary);
        self.in_flight += 1;
        self.next += 1;
        Some((slot.seq, slot.attempt, &slot.item))
    }

    /// Marks `seq` in flight to its dead-letter exchange; returns the attempt to tag it with.
    pub(crate) fn send_dead_letter(&mut self, seq: u64) -> Option<(u32, &T)> {
        let i = self.index(seq)?;
        let slot = &mut self.slots[i];
        slot.attempt += 1;
        slot.state = State::InFlight(slot.attempt, Target::DeadLetter);
        self.in_flight += 1;
        Some((slot.attempt, &slot.item))
    }

    /// A confirm for `(seq, attempt, target)` arrived: true if it is the current publication
    /// (now settling: call [`Self::done`], [`Self::rewind_from`], [`Self::dead_lettering`] or
    /// [`Self::send_dead_letter`]); false if stale.
    pub(crate) fn settle(&mut self, seq: u64, attempt: u32, target: Target) -> bool {
        let Some(i) = self.index(seq) else {
            return false;
        };
        let slot = &mut self.slots[i];
        if slot.state != State::InFlight(attempt, target) {
            return false;
        }
        slot.state = State::Settling;
        self.in_flight -= 1;
        true
    }

    /// The message at `seq` is done (confirmed, dropped or dead-lettered).
    pub(crate) fn done(&mut self, seq: u64) {
        if let Some(i) = self.index(seq) {
            self.slots[i].state = State::Done;
        }
    }

    /// The message at `seq` is being published to the dead-letter topic.
    pub(crate) fn dead_lettering(&mut self, seq: u64) {
        if let Some(i) = self.index(seq) {
            self.slots[i].state = State::DeadLettering;
        }
    }

    /// The item at `seq`, if held.
    pub(crate) fn get(&self, seq: u64) -> Option<&T> {
        self.index(seq).map(|i| &self.slots[i].item)
    }

    /// Go-back-N from `seq`: it and every later message that was sent (in flight, settling or
    /// done) wait again. Returns how many will be published again.
    pub(crate) fn rewind_from(&mut self, seq: u64) -> usize {
        let Some(start) = self.index(seq) else {
            return 0;
        };
        let mut n = 0;
        for slot in self.slots.iter_mut().skip(start) {
            match slot.state {
                State::InFlight(..) | State::Settling | State::Done => {
                    if matches!(slot.state, State::InFlight(..)) {
                        self.in_flight -= 1;
                    }
                    slot.state = State::Waiting;
                    slot.attempt += 1;
                    n += 1;
                }
                State::Waiting | State::DeadLettering => {}
            }
        }
        self.next = self.next.min(start);
        n
    }

    /// The channel is gone: every publication in flight waits again (done ones stay done).
    /// Returns how many will be published again.
    pub(crate) fn rewind_all(&mut self) -> usize {
        let mut n = 0;
        let mut first = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot.state, State::InFlight(..) | State::Settling) {
                slot.state = State::Waiting;
                slot.attempt += 1;
                n += 1;
                first.get_or_insert(i);
            }
        }
        self.in_flight = 0;
        if let Some(f) = first {
            self.next = self.next.min(f);
        }
        n
    }

    /// Removes and returns the front message if it is done.
    pub(crate) fn pop_done(&mut self) -> Option<(u64, T)> {
        if self.slots.front()?.state != State::Done {
            return None;
        }
        let slot = self.slots.pop_front()?;
        self.next = self.next.saturating_sub(1);
        Some((slot.seq, slot.item))
    }

    /// Removes everything (shutdown), in order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (u64, T)> + '_ {
        self.next = 0;
        self.in_flight = 0;
        self.slots.drain(..).map(|s| (s.seq, s.item))
    }
}

#[cfg(test)]
mod tests;
