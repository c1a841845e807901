//! Which client id is connected where, and the hand-over of a session between connections.
//!
//! One slot per client id. A connection that CONNECTs claims the slot; if another connection
//! holds it, that one is told to stop and hands its [`SessionState`] over through a oneshot
//! channel (session takeover). A connection that ends releases its slot: a persistent session
//! goes to the [`SessionStore`] and an expiry generation is returned so a timer can end it later
//! unless it is resumed first.

use std::sync::Arc;

use crate::session::mailbox::Mailbox;
use crate::session::SessionState;
use crate::store::SessionStore;
use ahash::AHashMap;
use parking_lot::Mutex;

#[derive(Debug)]
enum Slot {
    /// Held by a connection; takeover requests go through the mailbox it drains.
    Online { conn_id: u64, mailbox: Arc<Mailbox> },
    /// In the store.
    Offline {
        generation: u64,
        mailbox: Arc<Mailbox>,
    },
}

/// What claiming a client id found.
#[derive(Debug)]
pub enum Claim {
    /// Nobody had it.
    Fresh,
    /// A stored offline session (taken out of the store).
    Stored(SessionState),
    /// A live connection, which must be asked for its session through this mailbox.
    Connected(Arc<Mailbox>),
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

    /// Claims `client_id` for connection `conn_id`, which will drain `mailbox` (a fresh one:
    /// [`Registry::attach`] replaces it if the old session is resumed).
    pub fn claim(&self, client_id: &str, conn_id: u64, mailbox: Arc<Mailbox>) -> Claim {
        let mut slots = self.slots.lock();
        let previous = slots.insert(client_id.to_owned(), Slot::Online { conn_id, mailbox });
        match previous {
            None => Claim::Fresh,
            Some(Slot::Offline { .. }) => match self.store.take(client_id) {
                Some(session) => Claim::Stored(session),
                None => Claim::Fresh,
            },
            Some(Slot::Online { mailbox, .. }) => Claim::Connected(mailbox),
        }
    }

    /// Records that connection `conn_id` drains `mailbox` for `client_id` (after resuming).
    pub fn attach(&self, client_id: &str, conn_id: u64, mailbox: &Arc<Mailbox>) {
        let mut slots = self.slots.lock();
        if let Some(Slot::Online {
            conn_id: holder,
            mailbox: slot_mailbox,
        }) = slots.get_mut(client_id)
        {
            if *holder == conn_id {
                *slot_mailbox = mailbox.clone();
            }
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
                    let mailbox = session.mailbox.clone();
                    slots.insert(
                        id,
                        Slot::Offline {
                            generation,
                            mailbox,
                        },
                    );
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
            Some(Slot::Offline { generation: g, .. }) if *g == generation => {
                slots.remove(client_id);
                self.store.take(client_id)
            }
            _ => None,
        }
    }

    /// Takes the delayed will out of the stored session of `client_id`, if it is still the one
    /// stored with `generation`; with the session's mailbox id.
    pub fn take_delayed_will(
        &self,
        client_id: &str,
        generation: u64,
    ) -> Option<(Box<crate::protocol::Will>, u64)> {
        let slots = self.slots.lock();
        match slots.get(client_id) {
            Some(Slot::Offline { generation: g, .. }) if *g == generation => {
                let mut session = self.store.take(client_id)?;
                let will = session.delayed_will.take();
                let origin = session.mailbox.id();
                self.store.save(session);
                will.map(|will| (will, origin))
            }
            _ => None,
        }
    }

    /// Number of sessions, online and offline.
    pub fn session_count(&self) -> usize {
        self.slots.lock().len()
    }

    /// Calls `f` with the mailbox of every connected session.
    pub fn for_each_online(&self, mut f: impl FnMut(&Mailbox)) {
        for slot in self.slots.lock().values() {
            if let Slot::Online { mailbox, .. } = slot {
                f(mailbox);
            }
        }
    }

    /// Sum of `f` over the mailboxes of every session, online and offline.
    pub fn sum_mailboxes(&self, f: impl Fn(&Mailbox) -> usize) -> usize {
        self.slots
            .lock()
            .values()
            .map(|slot| match slot {
                Slot::Online { mailbox, .. } | Slot::Offline { mailbox, .. } => f(mailbox),
            })
            .sum()
    }

    /// Number of stored (offline) sessions.
    pub fn offline_count(&self) -> usize {
        self.store.len()
    }
}
