//! redb against fjall for Warren's store workload, on this machine. Each case commits batches
//! of small records (64 B and 1 KiB values; 1, 64 or 1024 records a commit) with an fsync per
//! commit, then deletes them the same way, then runs the queue's steady state (every commit
//! appends a batch and deletes an older one). Then a large file (1,000,000 records of 64 B) is
//! reopened after a clean close and after a crash (a child process that aborts without closing).
//! Prints one line per case; figures are records per second and milliseconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("q");

trait Engine {
    fn name(&self) -> &'static str;
    /// One durable commit: insert `puts`, remove `dels`.
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], dels: &[u64]);
}

struct Redb(redb::Database, bool);

impl Redb {
    /// With `quick_repair`, each commit also saves the allocator state, so that opening after
    /// a crash needs no full repair.
    fn open(path: &Path, quick_repair: bool) -> Redb {
        Redb(redb::Database::create(path).unwrap(), quick_repair)
    }
}

impl Engine for Redb {
    fn name(&self) -> &'static str {
        if self.1 {
            "redb 2.6 qr"
        } else {
            "redb 2.6"
        }
    }
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], dels: &[u64]) {
        let mut txn = self.0.begin_write().unwrap();
        txn.set_quick_repair(self.1);
        {
            let mut t = txn.open_table(TABLE).unwrap();
            for (k, v) in puts {
                t.insert(*k, v.as_slice()).unwrap();
            }
            for k in dels {
                t.remove(*k).unwrap();
            }
        }
        txn.commit().unwrap();
    }
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(path: &Path) -> Fjall {
        let db = fjall::Database::builder(path).open().unwrap();
        let ks = db
            .keyspace("q", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall { db, ks }
    }
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall 3.1"
    }
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], dels: &[u64]) {
        let mut batch = self.db.batch();
        for (k, v) in puts {
            batch.insert(&self.ks, k.to_be_bytes(), v.as_slice());
        }
        for k in dels {
            batch.remove(&self.ks, k.to_be_bytes());
        }
        batch.commit().unwrap();
        self.db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
}

/// Values of pseudo-random bytes (incompressible, as payloads often are).
fn records(from: u64, n: usize, size: usize) -> Vec<(u64, Vec<u8>)> {
    (0..n as u64)
        .map(|i| {
            let mut x = (from + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let v = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (from + i, v)
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0}", n as f64 / d.as_secs_f64())
}

/// Appends, deletes and the steady state for one engine, value size and batch size.
fn case(engine: &mut dyn Engine, size: usize, batch: usize, commits: usize) {
    let t = Instant::now();
    for c in 0..commits {
        engine.commit(&records((c * batch) as u64, batch, size), &[]);
    }
    let append = t.elapsed();
    let t = Instant::now();
    for c in 0..commits {
        let dels: Vec<u64> = (0..batch as u64).map(|i| (c * batch) as u64 + i).collect();
        engine.commit(&[], &dels);
    }
    let delete = t.elapsed();
    // Steady state: a queue `batch * 4` long; each commit appends a batch, deletes the oldest.
    let base = 1u64 << 40;
    for c in 0..4 {
        engine.commit(&records(base + (c * batch) as u64, batch, size), &[]);
    }
    let t = Instant::now();
    for c in 4..4 + commits {
        let dels: Vec<u64> = (0..batch as u64)
            .map(|i| base + ((c - 4) * batch) as u64 + i)
            .collect();
        engine.commit(&records(base + (c * batch) as u64, batch, size), &dels);
    }
    let steady = t.elapsed();
    println!(
        "{:<11} value {:>5} B  batch {:>5}  commits {:>4} | append rec/s {} | delete rec/s {} | append+delete rec/s {} | fsync'd commits/s {:>7.0}",
        engine.name(),
        size,
        batch,
        commits,
        rate(commits * batch, append),
        rate(commits * batch, delete),
        rate(commits * batch, steady),
        commits as f64 / append.as_secs_f64(),
    );
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn dir_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    }
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            total += dir_bytes(&e.path());
        }
    }
    total
}

/// Child process: fills `path` with `n` records of 64 B (batches of 10,000) and aborts, or
/// closes cleanly, without reading anything back.
fn fill(kind: &str, path: &Path, n: usize, abort: bool) {
    let mut engine: Box<dyn Engine> = match kind {
        "redb" => Box::new(Redb::open(path, true)),
        "redb-noqr" => Box::new(Redb::open(path, false)),
        _ => Box::new(Fjall::open(path)),
    };
    let mut done = 0;
    while done < n {
        let k = 10_000.min(n - done);
        engine.commit(&records(done as u64, k, 64), &[]);
        done += k;
    }
    if abort {
        std::process::abort();
    }
}

fn reopen(kind: &str, dir: &Path, n: usize) {
    for abort in [false, true] {
        let path = fresh(dir, &format!("reopen-{kind}"));
        let t = Instant::now();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["fill", kind, path.to_str().unwrap(), &n.to_string()])
            .arg(if abort { "abort" } else { "close" })
            .status()
            .unwrap();
        let filled = t.elapsed();
        assert_eq!(status.success(), !abort, "{status}");
        let t = Instant::now();
        let count = match kind {
            "redb" | "redb-noqr" => {
                let db = redb::Database::create(&path).unwrap();
                let opened = t.elapsed();
                use redb::ReadableTable;
                let txn = db.begin_read().unwrap();
                let table = txn.open_table(TABLE).unwrap();
                let mut n = 0u64;
                for entry in table.iter().unwrap() {
                    let (_, v) = entry.unwrap();
                    n += u64::from(!v.value().is_empty());
                }
                (opened, n)
            }
            _ => {
                let f = Fjall::open(&path);
                let opened = t.elapsed();
                let n = f
                    .ks
                    .iter()
                    .map(|g| g.into_inner().unwrap())
                    .filter(|(_, v)| !v.is_empty())
                    .count() as u64;
                (opened, n)
            }
        };
        println!(
            "{:<9} reopen after {:<6} {} records of 64 B ({:.0} MB on disk, filled in {:.1} s): open {:.1} ms, open + read all {:.1} ms ({} found)",
            kind,
            if abort { "crash" } else { "close" },
            n,
            dir_bytes(&path) as f64 / 1e6,
            filled.as_secs_f64(),
            count.0.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3,
            count.1,
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir_all(&path);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fill") {
        fill(&args[2], Path::new(&args[3]), args[4].parse().unwrap(), args[5] == "abort");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .map(|i| PathBuf::from(&args[i + 1]))
        .unwrap_or_else(|| std::env::temp_dir().join("warren-store-engines"));
    std::fs::create_dir_all(&dir).unwrap();
    let scale = if quick { 4 } else { 1 };
    for size in [64, 1024] {
        for (batch, commits) in [(1, 400), (64, 200), (1024, 40)] {
            let commits = commits / scale;
            let p = fresh(&dir, "redb-case");
            case(&mut Redb::open(&p, true), size, batch, commits);
            let p = fresh(&dir, "redb-case");
            case(&mut Redb::open(&p, false), size, batch, commits);
            let p2 = fresh(&dir, "fjall-case");
            case(&mut Fjall::open(&p2), size, batch, commits);
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_dir_all(&p2);
        }
    }
    let n = if quick { 200_000 } else { 1_000_000 };
    reopen("redb", &dir, n);
    reopen("redb-noqr", &dir, n);
    reopen("fjall", &dir, n);
}
