//! The vocabulary of the store seam: the [`Change`]s of durable state the broker reports, and
//! what a store gives back at start ([`Recovered`]).

use std::sync::Arc;

use bytestring::ByteString;

use crate::protocol::{QoS, Will};
use crate::session::message::Message;
use crate::session::SubEntry;

pub use super::record::FlowState;

/// One change of durable state. `sid` is the session's store id
/// ([`super::SessionStore::new_session_id`]); `seq` numbers a session's queued deliveries in
/// queue order.
#[derive(Debug)]
pub enum Change {
    /// A persistent session's row: created, or changed (online again, offline with its
    /// expiry and delayed will, will published).
    Session {
        /// Store id.
        sid: u64,
        /// Client identifier.
        client_id: ByteString,
        /// Session expiry interval in seconds (`u32::MAX`: never).
        expiry: u32,
        /// When it went offline (Unix ms), or `None` while online.
        offline_since: Option<u64>,
        /// A delayed will and when it is due (Unix ms).
        will: Option<(Box<Will>, u64)>,
    },
    /// The session's delayed will was published (or cancelled).
    WillDone {
        /// Store id.
        sid: u64,
    },
    /// The session ended: everything of it goes.
    End {
        /// Store id.
        sid: u64,
    },
    /// A subscription was added or replaced.
    Subscribed {
        /// Store id.
        sid: u64,
        /// Topic filter.
        filter: ByteString,
        /// Its options.
        entry: SubEntry,
    },
    /// A subscription was removed.
    Unsubscribed {
        /// Store id.
        sid: u64,
        /// Topic filter.
        filter: ByteString,
    },
    /// A QoS 1/2 delivery was queued for the session (the message is stored once, however
    /// many sessions it is queued for).
    Queued {
        /// Store id.
        sid: u64,
        /// Its place in the session's queue.
        seq: u64,
        /// The message (its store id is set).
        message: Arc<Message>,
        /// QoS to deliver at.
        qos: QoS,
        /// Retain flag to deliver with.
        retain: bool,
        /// Subscription identifiers.
        subscription_ids: Vec<u32>,
    },
    /// A queued delivery's flow moved on (sent with a packet id, or released).
    Flow {
        /// Store id.
        sid: u64,
        /// The delivery.
        seq: u64,
        /// Where it stands now.
        state: FlowState,
    },
    /// A queued delivery is finished (acknowledged, or dropped) and leaves the store.
    Done {
        /// Store id.
        sid: u64,
        /// The delivery.
        seq: u64,
    },
    /// An incoming QoS 2 packet id was received (true) or released (false).
    Inbound {
        /// Store id.
        sid: u64,
        /// Packet id.
        pkid: u16,
        /// Received (held until PUBREL) or released.
        held: bool,
    },
    /// Nothing to write: its ticket is completed once everything recorded before it is on
    /// disk (a connection holds output that announces state, e.g. an outgoing QoS 2 packet
    /// id, until then).
    Barrier,
    /// A retained message was set (`Some`) or cleared (`None`) for `topic`.
    Retained {
        /// Topic name.
        topic: ByteString,
        /// The message (its store id is set).
        message: Option<Arc<Message>>,
    },
}

/// A delivery of a recovered session.
#[derive(Debug)]
pub struct RecoveredEntry {
    /// Its place in the queue.
    pub seq: u64,
    /// The message (shared with the other sessions it is queued for).
    pub message: Arc<Message>,
    /// QoS to deliver at.
    pub qos: QoS,
    /// Retain flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers.
    pub subscription_ids: Vec<u32>,
    /// Where its flow stood.
    pub state: FlowState,
}

/// A recovered persistent session.
#[derive(Debug)]
pub struct RecoveredSession {
    /// Store id.
    pub sid: u64,
    /// Client identifier.
    pub client_id: ByteString,
    /// Session expiry interval in seconds.
    pub expiry: u32,
    /// When it went offline (Unix ms); `None` if it was online when the broker stopped.
    pub offline_since: Option<u64>,
    /// A delayed will and when it is due (Unix ms).
    pub will: Option<(Will, u64)>,
    /// Its subscriptions.
    pub subscriptions: Vec<(ByteString, SubEntry)>,
    /// Its queued and in-flight deliveries, in queue order.
    pub queue: Vec<RecoveredEntry>,
    /// Incoming QoS 2 packet ids not released yet.
    pub inbound: Vec<u16>,
}

/// Everything a store gives back at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Persistent sessions.
    pub sessions: Vec<RecoveredSession>,
    /// Retained messages.
    pub retained: Vec<Arc<Message>>,
    /// Rows dropped at recovery because their message had expired.
    pub expired: usize,
}
