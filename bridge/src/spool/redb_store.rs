//! [`SpoolStore`] on redb: one table per rule, keyed by id (u64, big-endian order), each
//! append one write transaction committed with `Durability::Immediate` (one fsync per batch),
//! each removal committed with `Durability::None` (made durable by the next append).

use std::path::Path;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{SpoolError, SpoolStats, SpoolStore};

fn err(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Engine(e.to_string())
}

fn table(rule: &str) -> TableDefinition<'_, u64, &'static [u8]> {
    TableDefinition::new(rule)
}

/// The redb engine.
pub(crate) struct RedbStore {
    db: Database,
}

impl RedbStore {
    pub(crate) fn open(path: &Path) -> Result<RedbStore, SpoolError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        Ok(RedbStore {
            db: Database::create(path).map_err(err)?,
        })
    }
}

impl SpoolStore for RedbStore {
    fn append(&self, rule: &str, records: &[(u64, Vec<u8>)]) -> Result<(), SpoolError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut t = txn.open_table(table(rule)).map_err(err)?;
            for (id, bytes) in records {
                t.insert(*id, bytes.as_slice()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    fn remove_through(&self, rule: &str, through: u64) -> Result<(), SpoolError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::None);
        {
            let mut t = txn.open_table(table(rule)).map_err(err)?;
            t.retain_in(..=through, |_, _| false).map_err(err)?;
        }
        txn.commit().map_err(err)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            assert_eq!(s.stats("r").unwrap(), SpoolStats::default());
            assert!(s.read_after("r", 0, 10).unwrap().is_empty());
            s.append(
                "r",
                &[(1, b"a".to_vec()), (2, b"bb".to_vec()), (3, b"c".to_vec())],
            )
            .unwrap();
            s.append("other", &[(1, b"x".to_vec())]).unwrap();
            assert_eq!(s.read_after("r", 1, 1).unwrap(), vec![(2, b"bb".to_vec())]);
            s.remove_through("r", 2).unwrap();
            s.append("r", &[(4, b"d".to_vec())]).unwrap();
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
        assert_eq!(s.stats("other").unwrap().messages, 1);
    }
}
