//! The disk spool of `ack = "spooled"` rules: an ordered, durable queue per rule behind the
//! small [`SpoolStore`] trait, so the storage engine can be swapped without touching the rule.
//! [`record`] encodes a message; [`redb_store`] is the engine (redb).
//!
//! Contract: [`SpoolStore::append`] returns only once the records are on disk (fsync), because
//! the MQTT side's ack follows it; removal after RabbitMQ's confirm may be lazy (a crash then
//! replays a few confirmed messages: duplicates, never losses). Ids are the rule's sequence
//! numbers, increasing, assigned by the caller. The calls block: run them on a blocking thread.

pub(crate) mod record;
mod redb_store;

use std::path::Path;
use std::sync::Arc;

pub(crate) use redb_store::RedbStore;

/// A storage failure of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The engine failed (I/O, corruption).
    #[error("spool: {0}")]
    Engine(String),
}

/// What a rule's spool holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpoolStats {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    /// The largest id held (0 if none).
    pub(crate) last_id: u64,
}

/// An ordered durable queue per rule.
pub(crate) trait SpoolStore: Send + Sync + 'static {
    /// Appends `records` (id, bytes) for `rule`; durable when it returns.
    fn append(&self, rule: &str, records: &[(u64, Vec<u8>)]) -> Result<(), SpoolError>;
    /// Removes the records of `rule` with id ≤ `through` (may be made durable later).
    fn remove_through(&self, rule: &str, through: u64) -> Result<(), SpoolError>;
    /// Up to `limit` records of `rule` with id > `after`, in order.
    fn read_after(
        &self,
        rule: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError>;
    /// What `rule`'s spool holds now.
    fn stats(&self, rule: &str) -> Result<SpoolStats, SpoolError>;
}

/// Opens the spool file at `path` (created if missing).
pub(crate) fn open(path: &Path) -> Result<Arc<dyn SpoolStore>, SpoolError> {
    Ok(Arc::new(RedbStore::open(path)?))
}
