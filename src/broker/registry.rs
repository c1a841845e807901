//! Which client id is connected where, and the hand-over of a session between connections.
//!
//! One slot per client id. A connection that CONNECTs claims the slot; if another connection
//! holds it, that one is told to stop and hands its [`SessionState`] over through a oneshot
//! channel (session takeover). A connection that ends releases its slot: a persistent session
//! goes to the [`SessionStore`] and an expiry generation is returned so a timer can end it later
//! unless it is resumed first.

use std::sync::Arc;

use ahash::AHashMap;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::session::SessionState;
use crate::store::SessionStore;

/// What a connection can be told from outside.
#[derive(Debug)]
pub enum Control {
    /// Another connection claimed this client id: stop, and send the session state back.
    TakeOver(oneshot::Sender<SessionState>),
}

#[derive(Debug)]
enum Slot {
    Online {
        conn_id: u64,
        control: mpsc::Sender<Control>,
    },
    Offline {
        generation: u64,
    },
}

/// What claiming a client id found.
#[derive(Debug)]
pub enum Claim {
    /// Nobody had it.
    Fresh,
    /// A stored offline session (taken out of the store).
    Stored(SessionState),
    /// A live connection, which must be asked for its session.
    Connected(mpsc::Sender<Control>),
}

/// What releasing a client id did.
#[derive(Debug)]
pub enum Release {
    /// The session was stored; expire it with this generation.
    Stored(u64),
    /// The session ended; its subscriptions must be removed.
    Ended(SessionState),
    /// Another connection has claimed the id meanwhile; the session must be handed to it.
    TakenOver(SessionState),
}

/// The client id registry.
pub struct Registry {
    slots: Mutex<AHashMap<String, Slot>>,
    store: Arc<dyn SessionStore>,
    generation: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// A registry keeping offline sessions in `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Registry {
        Registry {
            slots: Mutex::new(AHashMap::new()),
            store,
            generation: Default::default(),
        }
    }

    /// Claims `client_id` for connection `conn_id`.
    pub fn claim(&self, client_id: &str, conn_id: u64, control: mpsc::Sender<Control>) -> Claim {
        let mut slots = self.slots.lock();
        let previous = slots.insert(client_id.to_owned(), Slot::Online { conn_id, control });
        match previous {
            None => Claim::Fresh,
            Some(Slot::Offline { .. }) => match self.store.take(client_id) {
                Some(session) => Claim::Stored(session),
                None => Claim::Fresh,
            },
            Some(Slot::Online { control, .. }) => Claim::Connected(control),
        }
    }

    /// Releases `client_id` held by `conn_id`, keeping the session if `keep`.
    pub fn release(&self, conn_id: u64, session: SessionState, keep: bool) -> Release {
        let mut slots = self.slots.lock();
        let id = session.client_id.to_string();
        match slots.get(&id) {
            Some(Slot::Online {
                conn_id: holder, ..
            }) if *holder == conn_id => {
                if keep {
                    let generation = self
                        .generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    slots.insert(id, Slot::Offline { generation });
                    session.mailbox.set_online(false);
                    self.store.save(session);
                    Release::Stored(generation)
                } else {
                    slots.remove(&id);
                    Release::Ended(session)
                }
            }
            _ => Release::TakenOver(session),
        }
    }

    /// Ends the stored session of `client_id` if it is still the one stored with `generation`.
    pub fn expire(&self, client_id: &str, generation: u64) -> Option<SessionState> {
        let mut slots = self.slots.lock();
        match slots.get(client_id) {
            Some(Slot::Offline { generation: g }) if *g == generation => {
                slots.remove(client_id);
                self.store.take(client_id)
            }
            _ => None,
        }
    }

    /// Number of sessions, online and offline.
    pub fn session_count(&self) -> usize {
        self.slots.lock().len()
    }

    /// Number of stored (offline) sessions.
    pub fn offline_count(&self) -> usize {
        self.store.len()
    }
}
