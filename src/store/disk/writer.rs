//! The disk store's writer thread: it takes the [`Change`]s queued since its last commit,
//! folds them into one batch of row operations, commits them in one redb write transaction
//! (one fsync, unless fsync is off), then completes the gate tickets that waited for them.
//!
//! Folding: a delivery queued and acknowledged within one batch never reaches the disk (an
//! online subscriber that keeps up costs an fsync per batch, not a write per message); a flow
//! change of a delivery still in the batch edits it in place; a message is written once for
//! all the sessions it is queued for, and deleted when its last reference (queue row or
//! retained topic) goes. Reference counts live here, in memory, rebuilt at open.
//!
//! A failed commit keeps its batch (retried with the next one) and refuses its tickets: the
//! publishers are not answered, so they send again; nothing acknowledged is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use redb::{Database, Durability, ReadableTable};

use super::tables::*;
use super::Shared;
use crate::gate::Ticket;
use crate::protocol::reason;
use crate::session::message::Message;
use crate::store::change::{Change, FlowState};
use crate::store::record::{self, QueueEntry};

/// Bytes counted for a row besides its value (key, B-tree bookkeeping).
pub(super) const ROW_OVERHEAD: u64 = 48;
/// Wait after a failed commit before the next try.
const RETRY: Duration = Duration::from_millis(500);
/// Least time between two compactions of a file past half `max_disk_bytes`, unless the data
/// shrank by a quarter since the last one.
pub(super) const COMPACT_EVERY: Duration = Duration::from_secs(30);

enum Op {
    Nop,
    Session(u64, Vec<u8>),
    End(u64),
    Sub(u64, ByteString, Option<Vec<u8>>),
    Message(u64, Arc<Message>),
    Entry(u64, u64, QueueEntry),
    Patch(u64, u64, FlowState),
    DelEntry(u64, u64),
    /// A stored message whose last reference went in this batch.
    DelMessage(u64),
    Inbound(u64, u16, bool),
    /// The session's delayed will was published.
    ClearWill(u64),
    Retained(ByteString, Option<u64>),
}

/// Row operations folded from changes, in order.
#[derive(Default)]
pub(super) struct Batch {
    ops: Vec<Op>,
    /// Queue rows put in this batch: where.
    entries: HashMap<(u64, u64), usize>,
    /// Message rows put in this batch: where.
    messages: HashMap<u64, usize>,
}

/// The writer's state.
pub(super) struct Writer {
    /// The file; `None` while it is being reopened after a failure.
    pub(super) db: Option<Database>,
    /// Opens the file again (after a failed commit, redb refuses further writes on the
    /// handle that failed; the file itself holds the last good commit).
    pub(super) reopen: Box<dyn Fn() -> Result<Database, String> + Send>,
    pub(super) shared: Arc<Shared>,
    /// References (queue rows, retained topics) of every stored or batched message.
    pub(super) refs: HashMap<u64, u32>,
    pub(super) batch: Batch,
    /// When the file was last compacted, and the bytes of data it held then.
    pub(super) compacted: Option<(Instant, u64)>,
}

impl Writer {
    /// Runs until the store is dropped: wait for changes, gather them for the batch interval,
    /// commit, answer.
    pub(super) fn run(mut self) {
        let mut tickets: Vec<Ticket> = Vec::new();
        let mut flushes = Vec::new();
        let mut changes = Vec::new();
        loop {
            let retry = !self.batch.ops.is_empty();
            let stop = self
                .shared
                .take(retry, &mut changes, &mut tickets, &mut flushes);
            for change in changes.drain(..) {
                self.absorb(change);
            }
            let result = self.commit();
            match &result {
                Ok(()) => {
                    self.shared.committed();
                    for t in tickets.drain(..) {
                        t.owned();
                    }
                }
                Err(error) => {
                    self.shared.failed(error);
                    self.shared
                        .refused
                        .fetch_add(tickets.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    for t in tickets.drain(..) {
                        t.refuse(reason::QUOTA_EXCEEDED);
                    }
                }
            }
            if result.is_ok() {
                // After the tickets, before the flushes: a flush sees the file compacted.
                self.compact_if_over();
            }
            for f in flushes.drain(..) {
                let _ = f.send(result.clone());
            }
            if stop {
                return;
            }
            if result.is_err() {
                self.shared.pause(RETRY);
                self.db = None;
                match (self.reopen)() {
                    Ok(db) => self.db = Some(db),
                    Err(e) => tracing::debug!(error = %e, "store: reopening failed"),
                }
            }
        }
    }

    /// Compacts a file past half `max_disk_bytes` (redb moves live pages to the front and
    /// truncates the free ones), so that the space of delivered messages is given back and new
    /// persistent work is taken again. Publishers waiting for a commit wait for this too; it
    /// runs only past the limit, at most every [`COMPACT_EVERY`] unless the data shrank.
    fn compact_if_over(&mut self) {
        let shared = &self.shared;
        let before = shared.file_len();
        if !shared.over(before) {
            return;
        }
        let used = shared.used();
        if let Some((at, then)) = self.compacted {
            if at.elapsed() < COMPACT_EVERY && used > then / 4 * 3 {
                return;
            }
        }
        let Some(db) = &mut self.db else {
            return;
        };
        let started = Instant::now();
        let result = db.compact();
        self.compacted = Some((Instant::now(), used));
        match result {
            Ok(_) => tracing::info!(
                path = %shared.path,
                before,
                after = shared.file_len(),
                data = used,
                elapsed = ?started.elapsed(),
                "store file compacted (past half of store.max_disk_bytes)"
            ),
            Err(error) => shared
                .log(|| tracing::warn!(path = %shared.path, %error, "store: compaction failed")),
        }
    }

    fn unref(&mut self, id: u64) -> bool {
        match self.refs.get_mut(&id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.refs.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Folds one change into the batch.
    pub(super) fn absorb(&mut self, change: Change) {
        let b = &mut self.batch;
        match change {
            Change::Session {
                sid,
                client_id,
                expiry,
                offline_since,
                will,
            } => {
                let row = record::SessionRow {
                    client_id,
                    expiry,
                    offline_since,
                    will: will.map(|(w, due)| (*w, due)),
                };
                b.ops.push(Op::Session(sid, record::encode_session(&row)));
            }
            Change::WillDone { sid } => b.ops.push(Op::ClearWill(sid)),
            // Committed in order: its ticket waits for this batch, nothing more to write.
            Change::Barrier => {}
            Change::End { sid } => {
                let batched: Vec<(u64, u64)> =
                    b.entries.keys().filter(|k| k.0 == sid).copied().collect();
                for key in batched {
                    self.cancel_entry(key);
                }
                self.batch.ops.push(Op::End(sid));
            }
            Change::Subscribed { sid, filter, entry } => b.ops.push(Op::Sub(
                sid,
                filter,
                Some(record::encode_subscription(&entry)),
            )),
            Change::Unsubscribed { sid, filter } => b.ops.push(Op::Sub(sid, filter, None)),
            Change::Queued {
                sid,
                seq,
                message,
                qos,
                retain,
                subscription_ids,
            } => {
                let id = self.reference(message);
                let b = &mut self.batch;
                b.entries.insert((sid, seq), b.ops.len());
                b.ops.push(Op::Entry(
                    sid,
                    seq,
                    QueueEntry {
                        message: id,
                        qos,
                        retain,
                        subscription_ids,
                        state: FlowState::Queued,
                    },
                ));
            }
            Change::Flow { sid, seq, state } => match b.entries.get(&(sid, seq)) {
                Some(&i) => {
                    if let Op::Entry(_, _, entry) = &mut b.ops[i] {
                        entry.state = state;
                    }
                }
                None => b.ops.push(Op::Patch(sid, seq, state)),
            },
            Change::Done { sid, seq } => {
                if b.entries.contains_key(&(sid, seq)) {
                    self.cancel_entry((sid, seq));
                } else {
                    b.ops.push(Op::DelEntry(sid, seq));
                }
            }
            Change::Inbound { sid, pkid, held } => b.ops.push(Op::Inbound(sid, pkid, held)),
            Change::Retained { topic, message } => {
                let id = message.map(|m| self.reference(m));
                self.batch.ops.push(Op::Retained(topic, id));
            }
        }
    }

    /// One more reference to `message`; its row is batched if it is not stored yet.
    fn reference(&mut self, message: Arc<Message>) -> u64 {
        let id = message.store_id();
        let n = self.refs.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            let b = &mut self.batch;
            b.messages.insert(id, b.ops.len());
            b.ops.push(Op::Message(id, message));
        }
        id
    }

    /// A queue row put in this batch is finished before being written: it never is.
    fn cancel_entry(&mut self, key: (u64, u64)) {
        let Some(i) = self.batch.entries.remove(&key) else {
            return;
        };
        let op = std::mem::replace(&mut self.batch.ops[i], Op::Nop);
        if let Op::Entry(_, _, entry) = op {
            if self.unref(entry.message) {
                if let Some(j) = self.batch.messages.remove(&entry.message) {
                    self.batch.ops[j] = Op::Nop;
                } else {
                    // Stored earlier (a retained message, say): delete it.
                    self.batch.ops.push(Op::DelMessage(entry.message));
                }
            }
        }
    }

    /// Writes the batch in one transaction. On success the batch is cleared; on failure it is
    /// kept whole for the next try.
    fn commit(&mut self) -> Result<(), crate::store::StoreError> {
        if self.batch.ops.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut delta = Delta::default();
        self.write(&mut delta)
            .map_err(|e| crate::store::StoreError::Write(e.0))?;
        // Committed: what was only tentative becomes true.
        for id in delta.unreferenced {
            self.refs.remove(&id);
        }
        for (id, n) in delta.dropped {
            if let Some(r) = self.refs.get_mut(&id) {
                *r = r.saturating_sub(n);
            }
        }
        self.shared.add_used(delta.bytes);
        self.batch = Batch::default();
        tracing::trace!(elapsed = ?started.elapsed(), "store commit");
        Ok(())
    }

    fn write(&self, delta: &mut Delta) -> Result<(), WriteError> {
        let Some(db) = &self.db else {
            return Err(WriteError("the store file could not be reopened".into()));
        };
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut subs = txn.open_table(SUBSCRIPTIONS)?;
            let mut queue = txn.open_table(QUEUE)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut inbound = txn.open_table(INBOUND)?;
            let mut retained = txn.open_table(RETAINED)?;
            let release = |id: u64,
                           delta: &mut Delta,
                           messages: &mut redb::Table<u64, &[u8]>|
             -> Result<(), WriteError> {
                if delta.release(id, &self.refs) {
                    if let Some(old) = messages.remove(id)? {
                        delta.bytes -= old.value().len() as i64 + ROW_OVERHEAD as i64;
                    }
                }
                Ok(())
            };
            for op in &self.batch.ops {
                match op {
                    Op::Nop => {}
                    Op::Session(sid, row) => {
                        sessions.insert(*sid, row.as_slice())?;
                    }
                    Op::ClearWill(sid) => {
                        let row = sessions
                            .get(*sid)?
                            .map(|v| record::decode_session(v.value()));
                        if let Some(Ok(mut row)) = row {
                            row.will = None;
                            sessions.insert(*sid, record::encode_session(&row).as_slice())?;
                        }
                    }
                    Op::End(sid) => {
                        sessions.remove(*sid)?;
                        subs.retain_in((*sid, "")..(sid + 1, ""), |_, _| false)?;
                        inbound.retain_in((*sid, 0)..=(*sid, u16::MAX), |_, _| false)?;
                        let mut gone = Vec::new();
                        queue.retain_in((*sid, 0)..=(*sid, u64::MAX), |_, v| {
                            gone.push(record::entry_message(v).unwrap_or(0));
                            false
                        })?;
                        for id in gone {
                            delta.bytes -= ROW_OVERHEAD as i64;
                            release(id, delta, &mut messages)?;
                        }
                    }
                    Op::Sub(sid, filter, row) => match row {
                        Some(row) => {
                            subs.insert((*sid, &**filter), row.as_slice())?;
                        }
                        None => {
                            subs.remove((*sid, &**filter))?;
                        }
                    },
                    Op::Message(id, message) => {
                        let row = record::encode_message(message);
                        delta.bytes += row.len() as i64 + ROW_OVERHEAD as i64;
                        messages.insert(*id, row.as_slice())?;
                    }
                    Op::DelMessage(id) => {
                        if let Some(old) = messages.remove(*id)? {
                            delta.bytes -= old.value().len() as i64 + ROW_OVERHEAD as i64;
                        }
                    }
                    Op::Entry(sid, seq, entry) => {
                        delta.bytes += ROW_OVERHEAD as i64;
                        queue.insert((*sid, *seq), record::encode_entry(entry).as_slice())?;
                    }
                    Op::Patch(sid, seq, state) => {
                        let old = queue
                            .get((*sid, *seq))?
                            .map(|v| record::decode_entry(v.value()));
                        if let Some(Ok(mut entry)) = old {
                            entry.state = *state;
                            queue.insert((*sid, *seq), record::encode_entry(&entry).as_slice())?;
                        }
                    }
                    Op::DelEntry(sid, seq) => {
                        let old = queue
                            .remove((*sid, *seq))?
                            .map(|v| record::entry_message(v.value()));
                        if let Some(Ok(id)) = old {
                            delta.bytes -= ROW_OVERHEAD as i64;
                            release(id, delta, &mut messages)?;
                        }
                    }
                    Op::Inbound(sid, pkid, true) => {
                        inbound.insert((*sid, *pkid), 0u8)?;
                    }
                    Op::Inbound(sid, pkid, false) => {
                        inbound.remove((*sid, *pkid))?;
                    }
                    Op::Retained(topic, id) => {
                        let old = match id {
                            Some(id) => retained.insert(&**topic, *id)?,
                            None => retained.remove(&**topic)?,
                        }
                        .map(|v| v.value());
                        if let Some(old) = old.filter(|old| Some(*old) != *id) {
                            release(old, delta, &mut messages)?;
                        }
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// A failed transaction, as text (redb's errors are large).
#[derive(Debug)]
struct WriteError(String);

impl<E: Into<redb::Error>> From<E> for WriteError {
    fn from(e: E) -> WriteError {
        WriteError(e.into().to_string())
    }
}

/// What a transaction did to reference counts and sizes, applied only once it commits.
#[derive(Default)]
struct Delta {
    /// References dropped from messages still referenced by the batch's own changes.
    dropped: HashMap<u64, u32>,
    /// Messages whose last reference went (their rows are deleted).
    unreferenced: Vec<u64>,
    bytes: i64,
}

impl Delta {
    /// Drops one stored reference to `id`; true when it was the last (delete the row).
    fn release(&mut self, id: u64, refs: &HashMap<u64, u32>) -> bool {
        let have = refs.get(&id).copied().unwrap_or(0);
        let dropped = self.dropped.entry(id).or_insert(0);
        *dropped += 1;
        if *dropped >= have {
            self.dropped.remove(&id);
            self.unreferenced.push(id);
            return true;
        }
        false
    }
}
