//! redb behind [`StorageBackend`], for the comparison only: one table per
//! partition, one write transaction per put, delete or batch, scans over a
//! read transaction (a snapshot). redb has no write-ahead log: a write that
//! does not sync commits with `Durability::None`, which survives neither a
//! power loss nor a crash of the process until a later durable commit.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::RwLock;

use kalamdb_store::{Error, Operation, Partition, Result, ScanIterator, StorageBackend};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle,
};

use crate::config::BenchConfig;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("redb: {e}"))
}

fn table(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// A redb database (one file, `data.redb`, in the directory) as a
/// [`StorageBackend`].
pub struct RedbBackend {
    /// Write-locked only by `compact`, which needs no other transaction open.
    db: RwLock<Database>,
    tables: RwLock<BTreeSet<String>>,
    durability: Durability,
}

impl RedbBackend {
    /// Opens (or creates) the database in directory `dir`. `sync`: every
    /// commit is `Durability::Immediate`.
    ///
    /// # Errors
    /// redb's errors.
    pub fn open(dir: &Path, cfg: &BenchConfig, sync: bool) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::builder()
            .set_cache_size(cfg.block_cache)
            .create(dir.join("data.redb"))
            .map_err(err)?;
        let tables: BTreeSet<String> = {
            let tx = db.begin_read().map_err(err)?;
            let names = tx
                .list_tables()
                .map_err(err)?
                .map(|t| t.name().to_string())
                .collect();
            names
        };
        Ok(RedbBackend {
            db: RwLock::new(db),
            tables: RwLock::new(tables),
            durability: if sync {
                Durability::Immediate
            } else {
                Durability::None
            },
        })
    }

    fn check(&self, p: &Partition) -> Result<()> {
        if self.tables.read().map_err(err)?.contains(p.name()) {
            Ok(())
        } else {
            Err(Error::PartitionNotFound(p.name().to_string()))
        }
    }

    /// Runs `f` in one write transaction and commits it.
    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
    ) -> Result<()> {
        let db = self.db.read().map_err(err)?;
        let mut tx = db.begin_write().map_err(err)?;
        tx.set_durability(durability).map_err(err)?;
        f(&tx)?;
        tx.commit().map_err(err)
    }

    /// Makes every commit so far durable (an empty `Immediate` commit).
    ///
    /// # Errors
    /// redb's errors.
    pub fn persist(&self) -> Result<()> {
        self.write(Durability::Immediate, |_| Ok(()))
    }
}

#[async_trait::async_trait]
impl StorageBackend for RedbBackend {
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check(partition)?;
        let db = self.db.read().map_err(err)?;
        let tx = db.begin_read().map_err(err)?;
        let t = tx.open_table(table(partition.name())).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    async fn put(&self, partition: &Partition, key: &[u8], value: &[u8]) -> Result<()> {
        self.check(partition)?;
        self.write(self.durability, |tx| {
            let mut t = tx.open_table(table(partition.name())).map_err(err)?;
            t.insert(key, value).map_err(err)?;
            Ok(())
        })
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.check(partition)?;
        self.write(self.durability, |tx| {
            let mut t = tx.open_table(table(partition.name())).map_err(err)?;
            t.remove(key).map_err(err)?;
            Ok(())
        })
    }

    async fn scan(
        &self,
        partition: &Partition,
        start_key: Option<&[u8]>,
        end_key: Option<&[u8]>,
    ) -> Result<ScanIterator> {
        self.check(partition)?;
        let db = self.db.read().map_err(err)?;
        let tx = db.begin_read().map_err(err)?;
        let t = tx.open_table(table(partition.name())).map_err(err)?;
        let start = start_key.map_or(Bound::Unbounded, Bound::Included);
        let end = end_key.map_or(Bound::Unbounded, Bound::Excluded);
        let range = t.range::<&[u8]>((start, end)).map_err(err)?;
        Ok(Box::new(range.map(|item| {
            item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(err)
        })))
    }

    async fn batch(&self, operations: Vec<Operation>) -> Result<()> {
        // Operations on different partitions commute: apply them grouped by
        // partition (in order within each), opening each table once.
        let mut order: Vec<&Partition> = Vec::new();
        for op in &operations {
            let p = match op {
                Operation::Put { partition, .. } | Operation::Delete { partition, .. } => partition,
            };
            if !order.contains(&p) {
                self.check(p)?;
                order.push(p);
            }
        }
        self.write(self.durability, |tx| {
            for p in &order {
                let mut t = tx.open_table(table(p.name())).map_err(err)?;
                for op in &operations {
                    match op {
                        Operation::Put {
                            partition,
                            key,
                            value,
                        } if partition == *p => {
                            t.insert(key.as_slice(), value.as_slice()).map_err(err)?;
                        }
                        Operation::Delete { partition, key } if partition == *p => {
                            t.remove(key.as_slice()).map_err(err)?;
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        let mut tables = self.tables.write().map_err(err)?;
        if !tables.contains(partition.name()) {
            self.write(Durability::Immediate, |tx| {
                tx.open_table(table(partition.name())).map_err(err)?;
                Ok(())
            })?;
            tables.insert(partition.name().to_string());
        }
        Ok(())
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(self.tables.read().map_err(err)?.contains(partition.name()))
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        let tables = self.tables.read().map_err(err)?;
        tables.iter().map(|n| Partition::new(n.as_str())).collect()
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let mut tables = self.tables.write().map_err(err)?;
        if !tables.remove(partition.name()) {
            return Err(Error::PartitionNotFound(partition.name().to_string()));
        }
        self.write(Durability::Immediate, |tx| {
            tx.delete_table(table(partition.name())).map_err(err)?;
            Ok(())
        })
    }

    async fn partition_size(&self, partition: &Partition) -> Result<u64> {
        self.check(partition)?;
        let db = self.db.read().map_err(err)?;
        let tx = db.begin_read().map_err(err)?;
        let t = tx.open_table(table(partition.name())).map_err(err)?;
        Ok(t.stats().map_err(err)?.stored_bytes())
    }

    async fn compact(&self, partition: &Partition) -> Result<()> {
        self.check(partition)?;
        // Compaction works on the whole file; it needs the latest commit to
        // be durable first.
        self.persist()?;
        let mut db = self.db.write().map_err(err)?;
        while db.compact().map_err(err)? {}
        Ok(())
    }
}
