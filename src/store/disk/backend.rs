//! The storage seam under redb: the store's file, with fsync on or off, and faults injected on
//! demand (a write that fails with ENOSPC or EIO, a write torn half way, a failed fsync), as
//! redb's own crash tests do. The broker uses it with no faults; tests arm them.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::StorageBackend;

/// What an armed fault does when its step comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The write fails with ENOSPC (no space left on device); nothing is written.
    NoSpace,
    /// Half of the write reaches the file, then it fails with EIO (a torn write).
    Torn,
    /// The fsync fails with EIO.
    SyncFails,
}

/// Faults to inject: after `countdown` more writes and syncs, every later one fails as `kind`
/// says (a device that has failed stays failed until [`Faults::heal`]).
#[derive(Debug)]
pub struct Faults {
    steps: AtomicU64,
    countdown: AtomicI64,
    kind: AtomicU8,
    fired: AtomicBool,
}

impl Faults {
    /// No fault armed.
    pub fn new() -> Arc<Faults> {
        Arc::new(Faults {
            steps: AtomicU64::new(0),
            countdown: AtomicI64::new(-1),
            kind: AtomicU8::new(0),
            fired: AtomicBool::new(false),
        })
    }

    /// Fails the I/O step `steps` from now (0: the next one) and every one after it.
    pub fn arm(&self, steps: u64, kind: FaultKind) {
        self.kind.store(kind as u8, Ordering::SeqCst);
        self.fired.store(false, Ordering::SeqCst);
        self.countdown
            .store(i64::try_from(steps).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// The device works again.
    pub fn heal(&self) {
        self.countdown.store(-1, Ordering::SeqCst);
        self.fired.store(false, Ordering::SeqCst);
    }

    /// True once a fault has been injected.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Writes, syncs and growths of the file so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// The fault for this I/O step, if its turn has come.
    fn step(&self) -> Option<FaultKind> {
        self.steps.fetch_add(1, Ordering::SeqCst);
        if self.fired.load(Ordering::SeqCst) {
            return Some(self.kind());
        }
        let left = self.countdown.load(Ordering::SeqCst);
        if left < 0 {
            return None;
        }
        if left == 0 {
            self.fired.store(true, Ordering::SeqCst);
            return Some(self.kind());
        }
        self.countdown.store(left - 1, Ordering::SeqCst);
        None
    }

    fn kind(&self) -> FaultKind {
        match self.kind.load(Ordering::SeqCst) {
            0 => FaultKind::NoSpace,
            1 => FaultKind::Torn,
            _ => FaultKind::SyncFails,
        }
    }
}

/// The store's file under redb.
#[derive(Debug)]
pub struct Backend {
    file: FileBackend,
    fsync: bool,
    faults: Option<Arc<Faults>>,
    /// The file's length, kept up to date for the space limit (`max_disk_bytes`).
    len: Arc<AtomicU64>,
}

impl Backend {
    /// `file` with fsync on or off (off: commits reach the page cache only), and `faults`;
    /// `len` follows the file's length.
    pub fn new(
        file: FileBackend,
        fsync: bool,
        faults: Option<Arc<Faults>>,
        len: Arc<AtomicU64>,
    ) -> Backend {
        if let Ok(now) = file.len() {
            len.store(now, Ordering::Relaxed);
        }
        Backend {
            file,
            fsync,
            faults,
            len,
        }
    }

    fn fault(&self) -> Option<FaultKind> {
        self.faults.as_ref().and_then(|f| f.step())
    }
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl StorageBackend for Backend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        self.file.read(offset, len)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        if len > self.file.len()? {
            if let Some(kind) = self.fault() {
                return Err(match kind {
                    FaultKind::NoSpace => no_space(),
                    _ => io::Error::other("injected fault"),
                });
            }
        }
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Relaxed);
        Ok(())
    }

    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        if let Some(kind) = self.fault() {
            return Err(match kind {
                FaultKind::NoSpace => no_space(),
                _ => io::Error::other("injected fsync failure"),
            });
        }
        // With faults injected (tests, which do not cut the power), no real fsync is done.
        if self.fsync && self.faults.is_none() {
            self.file.sync_data(eventual)
        } else {
            Ok(())
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        match self.fault() {
            None => self.file.write(offset, data),
            Some(FaultKind::Torn) => {
                let _ = self.file.write(offset, &data[..data.len() / 2]);
                Err(io::Error::other("injected torn write"))
            }
            Some(FaultKind::NoSpace) => Err(no_space()),
            Some(FaultKind::SyncFails) => Err(io::Error::other("injected write failure")),
        }
    }
}
