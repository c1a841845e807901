//! The disk spool of `ack = "spooled"` rules: an ordered, durable queue per rule behind the
//! small [`SpoolStore`] trait, so the storage engine can be swapped without touching the rule.
//! [`record`] encodes a message; [`redb_store`] is the engine (redb, as measured and
//! recommended in the storage-engine note: one writer thread, group commit, quick repair).
//!
//! Contract: an append is acknowledged (its receiver resolves `Ok`) only once the records are
//! on disk (fsync), because the MQTT side's ack follows it; removal after RabbitMQ's confirm
//! is lazy (it rides on the next commit; a crash then replays a few confirmed messages:
//! duplicates, never losses). Ids are the rule's sequence numbers, increasing, assigned by the
//! caller. `read_after` and `stats` block: run them on a blocking thread.

pub(crate) mod record;
mod redb_store;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;

pub(crate) use redb_store::RedbStore;

/// A storage failure of the spool.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// The engine failed (I/O, corruption), or its writer is gone.
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

/// Resolves once an append is durable (or failed).
pub(crate) type Durable = oneshot::Receiver<Result<(), SpoolError>>;

/// An ordered durable queue per rule.
pub(crate) trait SpoolStore: Send + Sync + 'static {
    /// Queues `records` (id, bytes) of `rule` for the next commit; the receiver resolves once
    /// they are durable.
    fn append(&self, rule: &str, records: Vec<(u64, Vec<u8>)>) -> Durable;
    /// Removes the records of `rule` with id ≤ `through`, with the next commit.
    fn remove_through(&self, rule: &str, through: u64);
    /// Up to `limit` records of `rule` with id > `after`, in order (blocks).
    fn read_after(
        &self,
        rule: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError>;
    /// What `rule`'s spool holds now (blocks).
    fn stats(&self, rule: &str) -> Result<SpoolStats, SpoolError>;
    /// The spool file's size in bytes (what `max_bytes` limits), as of the last commit.
    fn file_size(&self) -> u64;
    /// Commits what is queued and waits for it (blocks): graceful shutdown.
    fn flush(&self) -> Result<(), SpoolError>;
}

/// Opens the spool file at `path` (created if missing).
pub(crate) fn open(path: &Path) -> Result<Arc<dyn SpoolStore>, SpoolError> {
    Ok(Arc::new(RedbStore::open(path)?))
}
