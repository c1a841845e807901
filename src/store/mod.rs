//! Where sessions live while their client is away.
//!
//! The broker hands a disconnected persistent session to a [`SessionStore`] and takes it back on
//! reconnect or expiry. [`MemoryStore`] keeps them in process; a disk store implements the same
//! trait later (the mailbox of an offline session then has to be written out too).

use ahash::AHashMap;
use parking_lot::Mutex;

use crate::session::SessionState;

/// Keeps offline sessions by client id.
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
