//! The disk store: persistent sessions and retained messages in one redb file.
//!
//! [`DiskStore::record`] queues a [`Change`] (and its gate ticket) under a short lock; the
//! writer thread ([`writer`]) commits what has queued up, every `batch_interval_ms` with
//! `fsync = "batch"`, back to back with `"always"`, and completes the tickets after the commit's
//! fsync: one fsync for many messages from many connections, no lock held across I/O, nothing
//! written per message on the publishing thread. Offline sessions are kept in memory as well
//! (the broker works from memory; the file is for restarts), so [`DiskStore::save`] and
//! [`DiskStore::take`] never touch the disk.
//!
//! Opening reads the whole file once ([`recover`]) and keeps what it found for
//! [`SessionStore::recover`]; a file that cannot be opened or read is an error naming it (the
//! broker refuses to start: starting without it would silently drop messages it had
//! acknowledged). redb recovers from a torn last commit by itself (the previous commit stays).
//!
//! Space: deleted rows free their pages for reuse by later commits (redb's allocator), so a
//! queue that is delivered and acknowledged stops taking room without any pause. The file is
//! what `max_disk_bytes` bounds: redb doubles it when it needs room, so once it is past half
//! the limit new persistent work is refused, and the writer compacts it (at most every
//! [`writer::COMPACT_EVERY`]) to give freed pages back; under half again, work is taken again.

mod backend;
mod recover;
mod tables;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

pub use backend::{FaultKind, Faults};

use super::{Change, MemoryStore, Recovered, SessionStore, StoreError};
use crate::config::{Fsync, StoreConfig};
use crate::gate::Ticket;
use crate::protocol::reason;
use crate::session::SessionState;

/// Error lines about the store are written at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Pending {
    changes: Vec<Change>,
    tickets: Vec<Ticket>,
    flushes: Vec<mpsc::SyncSender<Result<(), StoreError>>>,
    since: Option<Instant>,
    stop: bool,
}

/// What the publishing threads and the writer share.
pub(super) struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    always: bool,
    interval: Duration,
    /// The last commit failed, and why.
    failure: Mutex<Option<String>>,
    healthy: AtomicBool,
    /// Bytes of data counted (rows and their bookkeeping).
    used: AtomicI64,
    /// The file's length (what really takes the disk).
    file: Arc<AtomicU64>,
    max: u64,
    pub(super) path: String,
    /// Counters: commits, failed commits, refused persistent work.
    pub(super) commits: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Shared {
    /// Waits for work (unless a failed batch waits to be `retried`), gathers it for the batch
    /// interval, and hands it over. True when the store is being dropped (commit this, then
    /// stop).
    fn take(
        &self,
        retry: bool,
        changes: &mut Vec<Change>,
        tickets: &mut Vec<Ticket>,
        flushes: &mut Vec<mpsc::SyncSender<Result<(), StoreError>>>,
    ) -> bool {
        let mut p = self.pending.lock();
        while !retry && p.changes.is_empty() && p.flushes.is_empty() && !p.stop {
            self.wake.wait(&mut p);
        }
        if !self.always {
            if let Some(since) = p.since {
                let deadline = since + self.interval;
                while !p.stop && p.flushes.is_empty() && Instant::now() < deadline {
                    self.wake.wait_until(&mut p, deadline);
                }
            }
        }
        std::mem::swap(changes, &mut p.changes);
        std::mem::swap(tickets, &mut p.tickets);
        std::mem::swap(flushes, &mut p.flushes);
        p.since = None;
        p.stop
    }

    /// After a failed commit: waits `wait` before the next try, unless a flush or the stop
    /// asks for one now.
    fn pause(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut p = self.pending.lock();
        while p.flushes.is_empty() && !p.stop && Instant::now() < deadline {
            self.wake.wait_until(&mut p, deadline);
        }
    }

    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        if !self.healthy.load(Ordering::Relaxed) {
            let mut failure = self.failure.lock();
            if failure.take().is_some() {
                tracing::warn!(path = %self.path, "store writes work again");
            }
            self.healthy.store(true, Ordering::Relaxed);
        }
    }

    fn failed(&self, error: &StoreError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
        *self.failure.lock() = Some(error.to_string());
        self.log(|| {
            tracing::error!(
                path = %self.path,
                %error,
                failures = self.failures.load(Ordering::Relaxed),
                "store commit failed: new persistent work is refused until a commit succeeds \
                 (retrying); nothing already acknowledged is dropped"
            )
        });
    }

    fn add_used(&self, bytes: i64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn used(&self) -> u64 {
        u64::try_from(self.used.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Runs `f` if no store error line was written in the last [`LOG_EVERY`].
    pub(super) fn log(&self, f: impl FnOnce()) {
        let mut last = self.last_log.lock();
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            drop(last);
            f();
        }
    }

    fn accepting(&self) -> Result<(), StoreError> {
        if !self.healthy.load(Ordering::Relaxed) {
            let reason = self.failure.lock().clone().unwrap_or_default();
            return Err(StoreError::Write(reason));
        }
        let (used, file) = (self.used(), self.file_len());
        if self.over(file) || used >= self.max {
            return Err(StoreError::Full {
                used,
                file,
                max: self.max,
            });
        }
        Ok(())
    }

    pub(super) fn file_len(&self) -> u64 {
        self.file.load(Ordering::Relaxed)
    }

    /// True when a file of `len` bytes could pass `max_disk_bytes` with its next growth: redb
    /// doubles the file when it needs room (below 4 GiB), so past half the limit new
    /// persistent work stops until deliveries free pages and a compaction gives them back.
    pub(super) fn over(&self, len: u64) -> bool {
        len > self.max / 2
    }
}

/// Persistent sessions and retained messages in a redb file.
pub struct DiskStore {
    offline: MemoryStore,
    shared: Arc<Shared>,
    gates: bool,
    next_sid: AtomicU64,
    next_message: AtomicU64,
    recovered: Mutex<Option<Recovered>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.shared.path)
            .finish()
    }
}

impl DiskStore {
    /// Opens (or creates) the file `config.path` and reads it whole.
    pub fn open(config: &StoreConfig) -> Result<DiskStore, StoreError> {
        Self::open_with(config, None)
    }

    /// [`DiskStore::open`] with `faults` injected under the file (tests).
    pub fn open_with(
        config: &StoreConfig,
        faults: Option<Arc<Faults>>,
    ) -> Result<DiskStore, StoreError> {
        let path = &config.path;
        let file_error = |reason: String| StoreError::File {
            path: path.display().to_string(),
            reason,
        };
        let fsync = config.fsync != Fsync::Never;
        let file_len = Arc::new(AtomicU64::new(0));
        // redb asserts on some damaged files (one truncated below its header's length): a
        // panic while opening is a file that cannot be read, not a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = open_db(path, fsync, faults.clone(), file_len.clone())?;
            let found = recover::read(&db)?;
            Ok::<_, String>((db, found))
        }));
        let (db, found) = match opened {
            Ok(result) => result.map_err(file_error)?,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(file_error(format!(
                    "not a readable store file (damaged or truncated: {what}); move it away \
                     to start empty"
                )));
            }
        };
        let reopen_path = path.clone();
        let reopen_len = file_len.clone();
        let reopen =
            Box::new(move || open_db(&reopen_path, fsync, faults.clone(), reopen_len.clone()));
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            always: config.fsync == Fsync::Always,
            interval: Duration::from_millis(config.batch_interval_ms),
            failure: Mutex::new(None),
            healthy: AtomicBool::new(true),
            used: AtomicI64::new(i64::try_from(found.used).unwrap_or(i64::MAX)),
            file: file_len,
            max: config.max_disk_bytes,
            path: path.display().to_string(),
            commits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        });
        let mut w = writer::Writer {
            db: Some(db),
            reopen,
            shared: shared.clone(),
            refs: found.refs,
            batch: Default::default(),
            compacted: None,
        };
        // Rows whose message expired or is missing go with the first commit.
        for (sid, seq) in found.stale {
            w.absorb(Change::Done { sid, seq });
        }
        let stale_retained = found.stale_retained;
        for topic in stale_retained {
            w.absorb(Change::Retained {
                topic,
                message: None,
            });
        }
        let writer = std::thread::Builder::new()
            .name("warren-store".into())
            .spawn(move || w.run())
            .map_err(|e| file_error(e.to_string()))?;
        let store = DiskStore {
            offline: MemoryStore::default(),
            shared,
            gates: config.fsync != Fsync::Never,
            next_sid: AtomicU64::new(found.next_sid),
            next_message: AtomicU64::new(found.next_message),
            recovered: Mutex::new(Some(found.recovered)),
            writer: Mutex::new(Some(writer)),
        };
        // Kick the writer so the cleanup (if any) is committed now.
        store.shared.wake.notify_one();
        Ok(store)
    }

    /// True when new persistent work is taken now.
    pub fn accepting_now(&self) -> bool {
        self.shared.accepting().is_ok()
    }

    /// Commits, failed commits and refused persistent work so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        let s = &self.shared;
        (
            s.commits.load(Ordering::Relaxed),
            s.failures.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed),
        )
    }
}

fn open_db(
    path: &Path,
    fsync: bool,
    faults: Option<Arc<Faults>>,
    len: Arc<AtomicU64>,
) -> Result<redb::Database, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create its folder: {e}"))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let file = redb::backends::FileBackend::new(file).map_err(|e| format!("cannot open: {e}"))?;
    let backend = backend::Backend::new(file, fsync, faults, len);
    redb::Database::builder()
        .create_with_backend(backend)
        .map_err(|e| format!("not a readable store file ({e}); move it away to start empty"))
}

impl DiskStore {
    /// Commits what is queued, stops the writer and closes the file (changes recorded after
    /// this are not written).
    fn stop(&self) {
        self.shared.pending.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
    }
}

impl Drop for DiskStore {
    /// Commits what is queued and waits for the writer, so that the file is closed on return.
    fn drop(&mut self) {
        self.stop();
    }
}

impl SessionStore for DiskStore {
    fn save(&self, session: SessionState) {
        self.offline.save(session);
    }

    fn take(&self, client_id: &str) -> Option<SessionState> {
        self.offline.take(client_id)
    }

    fn len(&self) -> usize {
        self.offline.len()
    }

    fn durable(&self) -> bool {
        true
    }

    fn gates(&self) -> bool {
        self.gates
    }

    fn new_session_id(&self) -> u64 {
        self.next_sid.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, change: Change, mut ticket: Option<Ticket>) {
        let new_work = match &change {
            Change::Queued { message, .. }
            | Change::Retained {
                message: Some(message),
                ..
            } => {
                message.store_id_or(|| self.next_message.fetch_add(1, Ordering::Relaxed));
                true
            }
            _ => false,
        };
        if new_work {
            if let Err(error) = self.shared.accepting() {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = ticket.take() {
                    t.refuse(reason::QUOTA_EXCEEDED);
                }
                self.shared
                    .log(|| tracing::warn!(%error, "store: refusing new persistent work (0x97)"));
            }
        }
        if !self.gates {
            if let Some(t) = ticket.take() {
                t.owned();
            }
        }
        let mut p = self.shared.pending.lock();
        p.changes.push(change);
        if let Some(t) = ticket {
            p.tickets.push(t);
        }
        if p.since.is_none() {
            p.since = Some(Instant::now());
            drop(p);
            self.shared.wake.notify_one();
        }
    }

    fn accepting(&self) -> Result<(), StoreError> {
        self.shared.accepting()
    }

    fn recover(&self) -> Result<Recovered, StoreError> {
        Ok(self.recovered.lock().take().unwrap_or_default())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.pending.lock().flushes.push(tx);
        self.shared.wake.notify_one();
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Write("the store writer stopped".into())))
    }

    fn used_bytes(&self) -> u64 {
        self.shared.used()
    }

    fn figures(&self) -> Option<crate::metrics::StoreFigures> {
        let (commits, failures, refused) = self.counters();
        Some(crate::metrics::StoreFigures {
            bytes: self.shared.used(),
            file_bytes: self.shared.file_len(),
            commits,
            failures,
            refused,
        })
    }

    fn close(&self) -> Result<(), StoreError> {
        let flushed = self.flush();
        self.stop();
        flushed
    }
}
