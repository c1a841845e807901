//! Which client id is connected where, and the hand-over of a session between connections.
//!
//! One slot per client id. A connection that CONNECTs first takes the client id's *claim lock*
//! ([`Registry::lock_client_id`]), so that claims of one id are served one at a time: two
//! connections racing for one id cannot both end up serving it, and each takeover starts from
//! the connection that really drains the session. Under the lock it claims the slot; if another
//! connection holds it, that one is told to stop (through the mailbox it drains) and hands its
//! [`SessionState`] over through a oneshot channel. A connection that ends releases its slot: a
//! persistent session goes to the [`SessionStore`] and an expiry generation is returned so a
//! timer can end it later unless it is resumed first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ahash::AHashMap;
use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use super::clients::{ClientInfo, SessionRow};
use crate::session::mailbox::Mailbox;
use crate::session::SessionState;
use crate::store::SessionStore;

#[derive(Debug)]
enum Slot {
    /// Held by a connection; takeover requests go through the mailbox it drains.
    Online {
        conn_id: u64,
        mailbox: Arc<Mailbox>,
        info: Arc<ClientInfo>,
    },
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
    Connected {
        /// The connection holding it.
        conn_id: u64,
        /// The mailbox that connection drains.
        mailbox: Arc<Mailbox>,
        /// What that connection told at CONNECT.
        info: Arc<ClientInfo>,
    },
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

/// Holds a client id's claim lock; dropping it lets the next claimant in.
pub struct ClaimGuard<'a> {
    registry: &'a Registry,
    client_id: Box<str>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        // Clones of a lock are made under the map's lock only, so the count read under it is
        // exact: when no other claimant holds or waits for this lock, it leaves the map.
        let mut claims = self.registry.claims.lock();
        drop(self.guard.take());
        if claims
            .get(&self.client_id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            claims.remove(&self.client_id);
        }
    }
}

/// The client id registry.
pub struct Registry {
    slots: Mutex<AHashMap<Box<str>, Slot>>,
    claims: Mutex<AHashMap<Box<str>, Arc<tokio::sync::Mutex<()>>>>,
    store: Arc<dyn SessionStore>,
    generation: AtomicU64,
}

impl Registry {
    /// A registry keeping offline sessions in `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Registry {
        Registry {
            slots: Mutex::new(AHashMap::new()),
            claims: Mutex::new(AHashMap::new()),
            store,
            generation: AtomicU64::new(1),
        }
    }

    /// Waits for `client_id`'s claim lock: hold it from [`Registry::claim`] until the session
    /// is attached (or the connection refused).
    pub async fn lock_client_id(&self, client_id: &str) -> ClaimGuard<'_> {
        let lock = self
            .claims
            .lock()
            .entry(client_id.into())
            .or_default()
            .clone();
        ClaimGuard {
            registry: self,
            client_id: client_id.into(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// Number of client ids with a claim in progress (for tests: nothing is left behind).
    pub fn claims_in_progress(&self) -> usize {
        self.claims.lock().len()
    }

    /// Claims `client_id` for connection `conn_id` (described by `info`), which will drain
    /// `mailbox` (a fresh one: [`Registry::attach`] replaces it if the old session is resumed).
    pub fn claim(
        &self,
        client_id: &str,
        conn_id: u64,
        mailbox: Arc<Mailbox>,
        info: Arc<ClientInfo>,
    ) -> Claim {
        let mut slots = self.slots.lock();
        let previous = slots.insert(
            client_id.into(),
            Slot::Online {
                conn_id,
                mailbox,
                info,
            },
        );
        match previous {
            None => Claim::Fresh,
            Some(Slot::Offline { .. }) => match self.store.take(client_id) {
                Some(session) => Claim::Stored(session),
                None => Claim::Fresh,
            },
            Some(Slot::Online {
                conn_id,
                mailbox,
                info,
            }) => Claim::Connected {
                conn_id,
                mailbox,
                info,
            },
        }
    }

    /// Gives the slot back to the connection it was claimed from (a takeover that could not
    /// complete), if `conn_id` still holds it.
    pub fn abandon(
        &self,
        client_id: &str,
        conn_id: u64,
        previous: (u64, Arc<Mailbox>, Arc<ClientInfo>),
    ) {
        let mut slots = self.slots.lock();
        if matches!(slots.get(client_id), Some(Slot::Online { conn_id: holder, .. }) if *holder == conn_id)
        {
            slots.insert(
                client_id.into(),
                Slot::Online {
                    conn_id: previous.0,
                    mailbox: previous.1,
                    info: previous.2,
                },
            );
        }
    }

    /// Forgets the claim of `conn_id` on `client_id` (a connection refused after claiming).
    pub fn unclaim(&self, client_id: &str, conn_id: u64) {
        let mut slots = self.slots.lock();
        if matches!(slots.get(client_id), Some(Slot::Online { conn_id: holder, .. }) if *holder == conn_id)
        {
            slots.remove(client_id);
        }
    }

    /// Records that connection `conn_id` drains `mailbox` for `client_id` (after resuming).
    pub fn attach(&self, client_id: &str, conn_id: u64, mailbox: &Arc<Mailbox>) {
        let mut slots = self.slots.lock();
        if let Some(Slot::Online {
            conn_id: holder,
            mailbox: slot_mailbox,
            ..
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
        let id: &str = &session.client_id;
        let held = matches!(slots.get(id), Some(Slot::Online { conn_id: holder, .. }) if *holder == conn_id);
        if !held {
            return Release::TakenOver(session);
        }
        if !keep {
            slots.remove(id);
            return Release::Ended(session);
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        slots.insert(
            id.into(),
            Slot::Offline {
                generation,
                mailbox: session.mailbox.clone(),
            },
        );
        // Offline already: the connection told the core (and the session's shared groups).
        self.store.save(session);
        Release::Stored(generation)
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
    ) -> Option<(Box<crate::protocol::Will>, u64, Option<u64>)> {
        let slots = self.slots.lock();
        match slots.get(client_id) {
            Some(Slot::Offline { generation: g, .. }) if *g == generation => {
                let mut session = self.store.take(client_id)?;
                let will = session.delayed_will.take();
                let origin = session.mailbox.id();
                let sid = session.mailbox.durable_sid();
                self.store.save(session);
                will.map(|will| (will, origin, sid))
            }
            _ => None,
        }
    }

    /// Puts a session recovered from the store in as offline; returns its expiry generation.
    pub fn restore(&self, session: SessionState) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        self.slots.lock().insert(
            (*session.client_id).into(),
            Slot::Offline {
                generation,
                mailbox: session.mailbox.clone(),
            },
        );
        self.store.save(session);
        generation
    }

    /// The store behind the registry.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Takes every stored session out (shutdown: their delayed wills are published).
    pub fn drain_offline(&self) -> Vec<SessionState> {
        let mut slots = self.slots.lock();
        let ids: Vec<Box<str>> = slots
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Offline { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| {
                slots.remove(&id);
                self.store.take(&id)
            })
            .collect()
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
            .map(|slot| f(slot.mailbox()))
            .sum()
    }

    /// Number of stored (offline) sessions.
    pub fn offline_count(&self) -> usize {
        self.store.len()
    }

    /// Rows of the first `limit` sessions (in client-id order) that `wants` keeps; one pass
    /// under the lock that copies out only the rows returned.
    pub fn page(
        &self,
        limit: usize,
        wants: impl Fn(&str, Option<&ClientInfo>) -> bool,
    ) -> Vec<SessionRow> {
        let slots = self.slots.lock();
        // The `limit` smallest wanted ids: a max-heap of references into the map.
        let mut heap: std::collections::BinaryHeap<&str> = std::collections::BinaryHeap::new();
        for (id, slot) in slots.iter() {
            let id: &str = id;
            if heap.len() == limit && heap.peek().is_some_and(|top| id >= *top) {
                continue;
            }
            if !wants(id, slot.info()) {
                continue;
            }
            if heap.len() == limit {
                heap.pop();
            }
            heap.push(id);
        }
        let ids = heap.into_sorted_vec();
        ids.into_iter()
            .filter_map(|id| slots.get(id).map(|slot| slot.row(id)))
            .collect()
    }

    /// The row of one session.
    pub fn row(&self, client_id: &str) -> Option<SessionRow> {
        self.slots
            .lock()
            .get(client_id)
            .map(|slot| slot.row(client_id))
    }

    /// Calls `f` with the mailbox of `client_id` if it is connected.
    pub fn with_online<R>(&self, client_id: &str, f: impl FnOnce(&Mailbox) -> R) -> Option<R> {
        match self.slots.lock().get(client_id) {
            Some(Slot::Online { mailbox, .. }) => Some(f(mailbox)),
            _ => None,
        }
    }

    /// Takes the offline session `client_id` out of the registry and the store.
    pub fn remove_offline(&self, client_id: &str) -> Option<SessionState> {
        let mut slots = self.slots.lock();
        match slots.get(client_id) {
            Some(Slot::Offline { .. }) => {
                slots.remove(client_id);
                self.store.take(client_id)
            }
            _ => None,
        }
    }

    /// The client ids of the sessions whose mailboxes have these ids.
    pub fn client_ids_of(&self, mailboxes: impl Iterator<Item = u64>) -> AHashMap<u64, Box<str>> {
        let mut wanted: AHashMap<u64, Box<str>> = mailboxes.map(|m| (m, Box::from(""))).collect();
        if wanted.is_empty() {
            return wanted;
        }
        for (id, slot) in self.slots.lock().iter() {
            if let Some(name) = wanted.get_mut(&slot.mailbox().id()) {
                *name = id.clone();
            }
        }
        wanted.retain(|_, name| !name.is_empty());
        wanted
    }
}

impl Slot {
    fn mailbox(&self) -> &Arc<Mailbox> {
        match self {
            Slot::Online { mailbox, .. } | Slot::Offline { mailbox, .. } => mailbox,
        }
    }

    fn info(&self) -> Option<&ClientInfo> {
        match self {
            Slot::Online { info, .. } => Some(info),
            Slot::Offline { .. } => None,
        }
    }

    fn row(&self, client_id: &str) -> SessionRow {
        let mailbox = self.mailbox();
        SessionRow {
            client_id: client_id.into(),
            client: match self {
                Slot::Online { info, .. } => Some(info.clone()),
                Slot::Offline { .. } => None,
            },
            queued: mailbox.len(),
            queued_bytes: mailbox.bytes(),
            inflight: mailbox.inflight(),
            subscriptions: mailbox.filter_count(),
            mailbox: mailbox.id(),
        }
    }
}
