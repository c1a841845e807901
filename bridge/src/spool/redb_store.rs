//! [`SpoolStore`] on redb, used as the storage-engine measurements recommend: one writer
//! thread owns every write transaction and commits whatever has queued up meanwhile (group
//! commit: the appends of every rule and the removals confirmed since, in one transaction,
//! `Durability::Immediate`, quick repair on so that opening after a crash takes milliseconds);
//! removals alone wait up to [`IDLE_COMMIT`] for company. One table per rule, keyed by id.
//! Reads use their own read transactions, concurrently with the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::{Durable, SpoolError, SpoolStats, SpoolStore};

/// A commit of removals alone waits this long for appends to join it.
const IDLE_COMMIT: Duration = Duration::from_millis(5);
/// Most records in one commit.
const MAX_BATCH: usize = 4096;

fn err(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Engine(e.to_string())
}

fn table(rule: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(rule)
}

/// Records of one rule: (id, encoded record).
type Records = Vec<(u64, Vec<u8>)>;

enum Request {
    Append {
        rule: String,
        records: Records,
        done: oneshot::Sender<Result<(), SpoolError>>,
    },
    Remove {
        rule: String,
        through: u64,
    },
    Flush(oneshot::Sender<Result<(), SpoolError>>),
    /// Commit what is queued and end (the store is dropped).
    Stop,
}

/// The redb engine.
pub(crate) struct RedbStore {
    db: Arc<Database>,
    tx: mpsc::Sender<Request>,
    file_size: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RedbStore {
    /// Waits for the writer, so that the file is closed when this returns.
    fn drop(&mut self) {
        let _ = self.tx.send(Request::Stop);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl RedbStore {
    pub(crate) fn open(path: &Path) -> Result<RedbStore, SpoolError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Arc::new(Database::create(path).map_err(err)?);
        let file_size = Arc::new(AtomicU64::new(size_of(path)));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            path: path.to_path_buf(),
            file_size: file_size.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("warren-bridge-spool".into())
            .spawn(move || writer.run(rx))
            .map_err(err)?;
        Ok(RedbStore {
            db,
            tx,
            file_size,
            writer: Some(writer),
        })
    }
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    file_size: Arc<AtomicU64>,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Request>) {
        let mut removals: HashMap<String, u64> = HashMap::new();
        loop {
            let first = if removals.is_empty() {
                match rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => return,
                }
            } else {
                match rx.recv_timeout(IDLE_COMMIT) {
                    Ok(r) => Some(r),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        let _ = self.commit(&mut Vec::new(), &mut removals);
                        return;
                    }
                }
            };
            let mut appends = Vec::new();
            let mut waiters = Vec::new();
            let mut queued = 0;
            let mut stop = false;
            let mut next = first;
            while let Some(req) = next {
                match req {
                    Request::Append {
                        rule,
                        records,
                        done,
                    } => {
                        queued += records.len();
                        appends.push((rule, records));
                        waiters.push(done);
                    }
                    Request::Remove { rule, through } => {
                        let t = removals.entry(rule).or_insert(0);
                        *t = (*t).max(through);
                    }
                    Request::Flush(done) => waiters.push(done),
                    Request::Stop => stop = true,
                }
                next = if queued < MAX_BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            let r = self.commit(&mut appends, &mut removals);
            for w in waiters {
                let _ = w.send(r.clone());
            }
            if stop {
                return;
            }
        }
    }

    /// One durable transaction with every queued append and removal.
    fn commit(
        &self,
        appends: &mut Vec<(String, Records)>,
        removals: &mut HashMap<String, u64>,
    ) -> Result<(), SpoolError> {
        if appends.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_quick_repair(true);
        {
            for (rule, records) in appends.drain(..) {
                let mut t = txn.open_table(table(&rule)).map_err(err)?;
                for (id, bytes) in &records {
                    t.insert(*id, bytes.as_slice()).map_err(err)?;
                }
            }
            for (rule, through) in removals.drain() {
                let mut t = txn.open_table(table(&rule)).map_err(err)?;
                t.retain_in(..=through, |_, _| false).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        self.file_size.store(size_of(&self.path), Ordering::Relaxed);
        Ok(())
    }
}

impl SpoolStore for RedbStore {
    fn append(&self, rule: &str, records: Vec<(u64, Vec<u8>)>) -> Durable {
        let (done, rx) = oneshot::channel();
        let req = Request::Append {
            rule: rule.to_string(),
            records,
            done,
        };
        if let Err(mpsc::SendError(Request::Append { done, .. })) = self.tx.send(req) {
            let _ = done.send(Err(SpoolError::Engine("the spool writer stopped".into())));
        }
        rx
    }

    fn remove_through(&self, rule: &str, through: u64) {
        let _ = self.tx.send(Request::Remove {
            rule: rule.to_string(),
            through,
        });
    }

    fn read_after(
        &self,
        rule: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = match txn.open_table(table(rule)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        for entry in t.range(after.saturating_add(1)..).map_err(err)?.take(limit) {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn stats(&self, rule: &str) -> Result<SpoolStats, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = match txn.open_table(table(rule)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(SpoolStats::default()),
            Err(e) => return Err(err(e)),
        };
        let mut s = SpoolStats {
            messages: t.len().map_err(err)?,
            ..SpoolStats::default()
        };
        for entry in t.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            s.bytes += v.value().len() as u64;
            s.last_id = k.value();
        }
        Ok(s)
    }

    fn file_size(&self) -> u64 {
        self.file_size.load(Ordering::Relaxed)
    }

    fn flush(&self) -> Result<(), SpoolError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Request::Flush(done))
            .map_err(|_| SpoolError::Engine("the spool writer stopped".into()))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(SpoolError::Engine("the spool writer stopped".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(s: &RedbStore, rule: &str, records: Vec<(u64, Vec<u8>)>) {
        s.append(rule, records).blocking_recv().unwrap().unwrap();
    }

    #[test]
    fn append_read_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            assert_eq!(s.stats("r").unwrap(), SpoolStats::default());
            assert!(s.read_after("r", 0, 10).unwrap().is_empty());
            append(
                &s,
                "r",
                vec![(1, b"a".to_vec()), (2, b"bb".to_vec()), (3, b"c".to_vec())],
            );
            append(&s, "other", vec![(1, b"x".to_vec())]);
            assert_eq!(s.read_after("r", 1, 1).unwrap(), vec![(2, b"bb".to_vec())]);
            s.remove_through("r", 2);
            append(&s, "r", vec![(4, b"d".to_vec())]);
            assert!(s.file_size() > 0);
            s.remove_through("other", 1);
            s.flush().unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(
            s.stats("r").unwrap(),
            SpoolStats {
                messages: 2,
                bytes: 2,
                last_id: 4
            }
        );
        let ids: Vec<u64> = s
            .read_after("r", 0, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(ids, vec![3, 4]);
        assert_eq!(s.stats("other").unwrap().messages, 0);
    }

    #[test]
    fn removals_alone_are_committed_soon() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("spool.redb")).unwrap();
        append(&s, "r", vec![(1, b"a".to_vec())]);
        s.remove_through("r", 1);
        // No flush: the idle commit does it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while s.stats("r").unwrap().messages != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "removal never committed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
