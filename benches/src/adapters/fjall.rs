//! fjall behind [`StorageBackend`], for the comparison only: one keyspace per
//! partition, batches as fjall write batches, scans as fjall range iterators
//! (which read a snapshot). No limits checks: the workloads stay far inside.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::RwLock;

use fjall::config::{BloomConstructionPolicy, CompressionPolicy, FilterPolicy, FilterPolicyEntry};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use kalamdb_store::{Error, Operation, Partition, Result, ScanIterator, StorageBackend};

use crate::config::BenchConfig;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("fjall: {e}"))
}

/// A fjall database as a [`StorageBackend`].
pub struct FjallBackend {
    db: Database,
    keyspaces: RwLock<HashMap<String, Keyspace>>,
    cfg: BenchConfig,
    sync: bool,
}

impl FjallBackend {
    /// Opens (or creates) the database in `path`. `sync`: every write is
    /// followed by `persist(SyncData)`.
    ///
    /// # Errors
    /// fjall's errors.
    pub fn open(path: &Path, cfg: &BenchConfig, sync: bool) -> Result<Self> {
        let db = Database::builder(path)
            .cache_size(cfg.block_cache as u64)
            .worker_threads(cfg.background_threads)
            .open()
            .map_err(err)?;
        let mut keyspaces = HashMap::new();
        for name in db.list_keyspace_names() {
            let name: String = (*name).to_string();
            let ks = db.keyspace(&name, || options(cfg)).map_err(err)?;
            keyspaces.insert(name, ks);
        }
        Ok(FjallBackend {
            db,
            keyspaces: RwLock::new(keyspaces),
            cfg: *cfg,
            sync,
        })
    }

    fn keyspace(&self, p: &Partition) -> Result<Keyspace> {
        self.keyspaces
            .read()
            .map_err(err)?
            .get(p.name())
            .cloned()
            .ok_or_else(|| Error::PartitionNotFound(p.name().to_string()))
    }

    fn after_write(&self) -> Result<()> {
        if self.sync {
            self.db.persist(PersistMode::SyncData).map_err(err)?;
        }
        Ok(())
    }

    /// Makes everything written durable (for a clean close).
    ///
    /// # Errors
    /// fjall's errors.
    pub fn persist(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }
}

/// The keyspace options for the pinned configuration.
fn options(cfg: &BenchConfig) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(cfg.write_buffer as u64)
        .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(
            BloomConstructionPolicy::BitsPerKey(cfg.bloom_bits_per_key as f32),
        )))
        .data_block_compression_policy(CompressionPolicy::disabled())
        .index_block_compression_policy(CompressionPolicy::disabled())
}

#[async_trait::async_trait]
impl StorageBackend for FjallBackend {
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let ks = self.keyspace(partition)?;
        Ok(ks.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    async fn put(&self, partition: &Partition, key: &[u8], value: &[u8]) -> Result<()> {
        self.keyspace(partition)?.insert(key, value).map_err(err)?;
        self.after_write()
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.keyspace(partition)?.remove(key).map_err(err)?;
        self.after_write()
    }

    async fn scan(
        &self,
        partition: &Partition,
        start_key: Option<&[u8]>,
        end_key: Option<&[u8]>,
    ) -> Result<ScanIterator> {
        let ks = self.keyspace(partition)?;
        let start = start_key.map_or(Bound::Unbounded, |k| Bound::Included(k.to_vec()));
        let end = end_key.map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_vec()));
        let iter = ks.range::<Vec<u8>, _>((start, end)).map(|guard| {
            guard
                .into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(err)
        });
        Ok(Box::new(iter))
    }

    async fn batch(&self, operations: Vec<Operation>) -> Result<()> {
        let mut batch = self.db.batch();
        for op in operations {
            match op {
                Operation::Put {
                    partition,
                    key,
                    value,
                } => batch.insert(&self.keyspace(&partition)?, key, value),
                Operation::Delete { partition, key } => {
                    batch.remove(&self.keyspace(&partition)?, key);
                }
            }
        }
        if self.sync {
            batch = batch.durability(Some(PersistMode::SyncData));
        }
        batch.commit().map_err(err)
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        let mut map = self.keyspaces.write().map_err(err)?;
        if !map.contains_key(partition.name()) {
            let ks = self
                .db
                .keyspace(partition.name(), || options(&self.cfg))
                .map_err(err)?;
            map.insert(partition.name().to_string(), ks);
        }
        Ok(())
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(self
            .keyspaces
            .read()
            .map_err(err)?
            .contains_key(partition.name()))
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        let mut names: Vec<String> = self
            .keyspaces
            .read()
            .map_err(err)?
            .keys()
            .cloned()
            .collect();
        names.sort();
        names.into_iter().map(Partition::new).collect()
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let ks = self
            .keyspaces
            .write()
            .map_err(err)?
            .remove(partition.name())
            .ok_or_else(|| Error::PartitionNotFound(partition.name().to_string()))?;
        self.db.delete_keyspace(ks).map_err(err)
    }

    async fn partition_size(&self, partition: &Partition) -> Result<u64> {
        Ok(self.keyspace(partition)?.disk_space())
    }

    async fn compact(&self, partition: &Partition) -> Result<()> {
        self.keyspace(partition)?.major_compact().map_err(err)
    }
}
