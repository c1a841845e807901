//! One client's session state, free of I/O: its subscriptions, the QoS 1/2 messages in flight in
//! both directions, and packet identifiers.
//!
//! The connection task owns a [`SessionState`] while the client is connected and hands it to the
//! session store when it goes away; a resumed session continues from exactly this state. Nothing
//! here reads a clock, touches a socket or the router: methods take an event and report what it
//! changed, so the QoS flows are unit-tested without a network.

pub mod mailbox;
pub mod message;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use crate::protocol::{SubscriptionOptions, Will};
use mailbox::Mailbox;
use message::{Delivery, Message};

/// What one subscription of this session asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubEntry {
    /// The options from SUBSCRIBE (maximum QoS, No Local, ...).
    pub options: SubscriptionOptions,
    /// Subscription identifier (5.0), if the SUBSCRIBE carried one.
    pub id: Option<u32>,
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// An outgoing QoS 1/2 message not yet acknowledged.
#[derive(Debug)]
pub struct Outgoing {
    /// Packet identifier it was sent with.
    pub pkid: u16,
    /// What was sent.
    pub delivery: Delivery,
    /// Where the flow stands.
    pub state: OutState,
}

/// A change of a stored delivery's flow (one whose [`Delivery::seq`] is set), for the store:
/// the session reports these, the connection hands them on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowChange {
    /// Sent with this packet id.
    Sent {
        /// The delivery's place in the stored queue.
        seq: u64,
        /// Packet id.
        pkid: u16,
    },
    /// PUBREC received, PUBREL sent.
    Released {
        /// The delivery's place in the stored queue.
        seq: u64,
        /// Packet id.
        pkid: u16,
    },
    /// Acknowledged (or refused by the client): it leaves the store.
    Done {
        /// The delivery's place in the stored queue.
        seq: u64,
    },
}

/// Result of an acknowledgement from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The flow moved on or completed.
    Done,
    /// No message in flight has this packet id in the right state.
    Unknown,
}

/// One client's session.
#[derive(Debug)]
pub struct SessionState {
    /// Client identifier.
    pub client_id: ByteString,
    /// The queue the router fills for this session.
    pub mailbox: Arc<Mailbox>,
    /// Filter → subscription. (B-trees: no per-session hasher state, nothing allocated while
    /// empty; an idle session is small.)
    pub subscriptions: BTreeMap<ByteString, SubEntry>,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement, oldest first.
    pub outgoing: VecDeque<Outgoing>,
    /// A will waiting for its Will Delay Interval (5.0) while the session is offline; cancelled
    /// if the client reconnects first, published when the delay or the session ends.
    pub delayed_will: Option<Box<Will>>,
    /// What many sessions never use, made at its first use ([`SessionState::rare_mut`]).
    rare: Option<Box<Rare>>,
    last_pkid: u16,
}

/// The parts of a session that many sessions never use: QoS 2 input, retained messages owed,
/// flow changes of a persistent session. Boxed and made at first use, so that every idle
/// connection holds one pointer for them instead of 80 bytes; once made, kept with the
/// session.
#[derive(Debug, Default)]
pub struct Rare {
    /// Packet ids of incoming QoS 2 messages delivered but not yet released (PUBREL).
    pub incoming_qos2: BTreeSet<u16>,
    /// Retained messages owed to new subscriptions, oldest subscription first: sent as the
    /// connection drains, so a subscription to thousands of retained topics neither floods the
    /// queue nor loses any (the messages are shared with the retained store, not copied). The
    /// third field is the entry's place in the store's journal of a persistent session (0:
    /// not journalled), so that what is owed survives a restart.
    pub retained_backlog: VecDeque<(Arc<Message>, SubEntry, u64)>,
    /// Flow changes of stored deliveries not yet handed to the store (effects out).
    pub flow_changes: Vec<FlowChange>,
}

impl SessionState {
    /// A fresh session with an empty mailbox.
    pub fn new(client_id: ByteString, mailbox: Arc<Mailbox>) -> SessionState {
        SessionState {
            client_id,
            mailbox,
            subscriptions: BTreeMap::new(),
            outgoing: VecDeque::new(),
            delayed_will: None,
            rare: None,
            last_pkid: 0,
        }
    }

    /// The rarely used parts, if they were ever used.
    pub fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    /// The rarely used parts, made now if they were not yet.
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Packet ids of incoming QoS 2 messages not yet released.
    pub fn incoming_qos2_len(&self) -> usize {
        self.rare().map_or(0, |r| r.incoming_qos2.len())
    }

    /// True when an incoming QoS 2 message with `pkid` is routed and not yet released.
    pub fn incoming_qos2_holds(&self, pkid: u16) -> bool {
        self.rare().is_some_and(|r| r.incoming_qos2.contains(&pkid))
    }

    /// Retained messages owed to new subscriptions.
    pub fn retained_owed(&self) -> usize {
        self.rare().map_or(0, |r| r.retained_backlog.len())
    }

    fn flow(&mut self, change: FlowChange) {
        self.rare_mut().flow_changes.push(change);
    }

    /// Allocates the next free packet id (1..=65535), or `None` when all are in flight.
    pub fn next_pkid(&mut self) -> Option<u16> {
        if self.outgoing.len() >= u16::MAX as usize {
            return None;
        }
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1);
            if self.last_pkid == 0 {
                self.last_pkid = 1;
            }
            let id = self.last_pkid;
            if !self.outgoing.iter().any(|o| o.pkid == id) {
                return Some(id);
            }
        }
    }

    /// Records an outgoing QoS 1/2 message sent with `pkid`.
    pub fn sent(&mut self, pkid: u16, delivery: Delivery) {
        let state = match delivery.qos {
            crate::protocol::QoS::ExactlyOnce => OutState::AwaitPubRec,
            _ => OutState::AwaitPubAck,
        };
        if delivery.seq != 0 {
            self.flow(FlowChange::Sent {
                seq: delivery.seq,
                pkid,
            });
        }
        self.outgoing.push_back(Outgoing {
            pkid,
            delivery,
            state,
        });
    }

    fn position(&self, pkid: u16, state: OutState) -> Option<usize> {
        self.outgoing
            .iter()
            .position(|o| o.pkid == pkid && o.state == state)
    }

    /// Removes the outgoing message at `i`, reporting it done to the store if it is stored.
    fn finish(&mut self, i: usize) {
        if let Some(out) = self.outgoing.remove(i) {
            if out.delivery.seq != 0 {
                self.flow(FlowChange::Done {
                    seq: out.delivery.seq,
                });
            }
        }
    }

    /// True when the message in flight with `pkid` is a stored one (of a persistent session).
    pub fn stored_in_flight(&self, pkid: u16) -> bool {
        self.outgoing
            .iter()
            .any(|o| o.pkid == pkid && o.delivery.seq != 0)
    }

    /// PUBACK received: the QoS 1 flow for `pkid` completes.
    pub fn on_puback(&mut self, pkid: u16) -> AckOutcome {
        match self.position(pkid, OutState::AwaitPubAck) {
            Some(i) => {
                self.finish(i);
                AckOutcome::Done
            }
            None => AckOutcome::Unknown,
        }
    }

    /// PUBREC received. With `accepted` the flow moves on to PUBREL; a 5.0 PUBREC with an error
    /// reason ends it. A PUBREC repeated after PUBREL was sent is answered again (`Done`).
    pub fn on_pubrec(&mut self, pkid: u16, accepted: bool) -> AckOutcome {
        if let Some(i) = self.position(pkid, OutState::AwaitPubRec) {
            if accepted {
                let out = &mut self.outgoing[i];
                out.state = OutState::AwaitPubComp;
                if out.delivery.seq != 0 {
                    let seq = out.delivery.seq;
                    self.flow(FlowChange::Released { seq, pkid });
                }
            } else {
                self.finish(i);
            }
            return AckOutcome::Done;
        }
        match self.position(pkid, OutState::AwaitPubComp) {
            Some(_) => AckOutcome::Done,
            None => AckOutcome::Unknown,
        }
    }

    /// PUBCOMP received: the QoS 2 flow for `pkid` completes.
    pub fn on_pubcomp(&mut self, pkid: u16) -> AckOutcome {
        match self.position(pkid, OutState::AwaitPubComp) {
            Some(i) => {
                self.finish(i);
                AckOutcome::Done
            }
            None => AckOutcome::Unknown,
        }
    }

    /// An incoming QoS 2 PUBLISH with `pkid`: true if it is new and must be routed, false if it
    /// is a resend of one already routed (answer PUBREC again, do not deliver twice).
    pub fn on_incoming_qos2(&mut self, pkid: u16) -> bool {
        self.rare_mut().incoming_qos2.insert(pkid)
    }

    /// PUBREL received: releases `pkid`. False if it was not pending.
    pub fn on_pubrel(&mut self, pkid: u16) -> bool {
        self.rare
            .as_mut()
            .is_some_and(|r| r.incoming_qos2.remove(&pkid))
    }
}

#[cfg(test)]
mod tests;
