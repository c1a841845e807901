//! Where sessions and retained messages live beyond memory: one seam, [`SessionStore`], that
//! the memory store and the disk store implement.
//!
//! The broker's live state is always in memory (sessions, mailboxes, the trie, the retained
//! store). A store holds the offline sessions ([`SessionStore::save`] / [`SessionStore::take`])
//! and, when it is durable, is told every change of durable state as a [`Change`]: a session
//! that outlives its connection was opened, went on- or offline, ended; it subscribed or
//! unsubscribed; a QoS 1/2 message was queued for it, sent with a packet id, released,
//! acknowledged; an incoming QoS 2 packet id was received or released; a retained message was
//! set or cleared. The disk store ([`disk::DiskStore`]) writes them in group commits on its
//! own thread and completes the acknowledgement gate's [`Ticket`] of each change once the
//! commit holding it is on disk; at start, [`SessionStore::recover`] gives back everything it
//! holds so that the broker rebuilds its sessions, trie, registry, timers and retained store
//! before the listeners open. The memory store journals nothing and recovers nothing.
//!
//! This module knows the broker's message and session types, not the MQTT wire format.

pub mod change;
pub mod disk;
pub mod record;

use std::sync::Arc;

use ahash::AHashMap;
use parking_lot::Mutex;

use crate::config::{StoreConfig, StoreKind};
use crate::gate::Ticket;
use crate::session::mailbox::{Delivery, QueueJournal};
use crate::session::SessionState;

pub use change::{Change, Recovered, RecoveredEntry, RecoveredSession};

/// Why the store cannot take (or give back) persistent state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be opened, read or written (corrupt, wrong format, no permission).
    #[error("{path}: {reason}")]
    File {
        /// The store's file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing failed (disk full, I/O error); what was committed before is kept.
    #[error("store write failed: {0}")]
    Write(String),
    /// The store's file is too close to `max_disk_bytes` to grow again.
    #[error(
        "store full: the file takes {file} bytes and may double when it grows, past \
         store.max_disk_bytes = {max} ({used} bytes of data)"
    )]
    Full {
        /// Bytes of data the store holds.
        used: u64,
        /// Bytes the file takes.
        file: u64,
        /// The limit.
        max: u64,
    },
}

/// Keeps offline sessions and, when durable, every change of persistent state.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores the session of a client that went away (replacing any older one).
    fn save(&self, session: SessionState);
    /// Takes the stored session of `client_id` out of the store.
    fn take(&self, client_id: &str) -> Option<SessionState>;
    /// Number of stored sessions.
    fn len(&self) -> usize;
    /// True when no session is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True when persistent sessions and retained messages are journalled ([`Change`]s are
    /// wanted) and survive a restart.
    fn durable(&self) -> bool {
        false
    }
    /// True when a publisher's answer must wait for the changes its message caused to be on
    /// disk (a ticket is passed with them).
    fn gates(&self) -> bool {
        false
    }
    /// A new id for a session that is to be journalled (never 0, never reused).
    fn new_session_id(&self) -> u64 {
        0
    }
    /// Journals `change`; `ticket`, if any, is completed once it is durable (or refused, with
    /// 0x97, when the store cannot take new persistent work).
    fn record(&self, change: Change, ticket: Option<Ticket>) {
        drop(change);
        if let Some(ticket) = ticket {
            ticket.owned();
        }
    }
    /// Whether new persistent work (a new persistent session, a message queued for one, a
    /// retained message) is taken now; else why not.
    fn accepting(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Everything the store holds, to rebuild the broker at start (empty for memory).
    fn recover(&self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }
    /// Commits what is queued and waits for it (graceful shutdown).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Commits what is queued and closes the store's file (the broker's last step).
    fn close(&self) -> Result<(), StoreError> {
        self.flush()
    }
    /// Bytes of persistent state the store holds (0 for memory).
    fn used_bytes(&self) -> u64 {
        0
    }
    /// The store's figures for the metrics (`None` for memory).
    fn figures(&self) -> Option<crate::metrics::StoreFigures> {
        None
    }
}

/// The in-memory session store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<AHashMap<String, SessionState>>,
}

impl SessionStore for MemoryStore {
    fn save(&self, session: SessionState) {
        let id = session.client_id.to_string();
        self.sessions.lock().insert(id, session);
    }

    fn take(&self, client_id: &str) -> Option<SessionState> {
        self.sessions.lock().remove(client_id)
    }

    fn len(&self) -> usize {
        self.sessions.lock().len()
    }
}

/// A [`SessionStore`] as the journal of persistent sessions' mailboxes.
pub struct StoreJournal(pub Arc<dyn SessionStore>);

impl QueueJournal for StoreJournal {
    fn queued(&self, sid: u64, seq: u64, delivery: &Delivery, ticket: Option<Ticket>) {
        self.0.record(
            Change::Queued {
                sid,
                seq,
                message: delivery.message.clone(),
                qos: delivery.qos,
                retain: delivery.retain,
                subscription_ids: delivery.subscription_ids.clone(),
            },
            ticket,
        );
    }

    fn ended(&self, sid: u64) {
        self.0.record(Change::End { sid }, None);
    }

    fn gates(&self) -> bool {
        self.0.gates()
    }
}

/// The store `config` asks for (a disk store opens or creates its file now).
pub fn open(config: &StoreConfig) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match config.kind {
        StoreKind::Memory => Arc::new(MemoryStore::default()),
        StoreKind::Disk => Arc::new(disk::DiskStore::open(config)?),
    })
}

#[cfg(test)]
mod contract;
