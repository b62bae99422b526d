//! [`LsmBackend`]: the pure-Rust LSM engine (crate `kalamdb-lsm`) behind the
//! [`StorageBackend`] trait. The embedded default.

use std::path::Path;
use std::sync::Arc;

use kalamdb_lsm::stall::Stall;
use kalamdb_lsm::{Db, WriteOp};

use crate::iter::{Fused, ScanRange};
use crate::{
    limits, BackendErrorKind, Error, Operation, Partition, Result, ScanIterator, StorageBackend,
};

/// Options of [`LsmBackend`]: the engine's options (durability default,
/// memtable and WAL sizes, and the file system, which tests replace with a
/// crash-simulating one).
pub use kalamdb_lsm::Options as LsmOptions;
/// The engine's counters and shape, from [`LsmBackend::stats`].
pub use kalamdb_lsm::PartitionStats as LsmPartitionStats;
pub use kalamdb_lsm::Stats as LsmStats;

/// Per-write options for [`LsmBackend::batch_with`] and friends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `true`: return only once the write is fsynced (survives power loss).
    /// `false`: return once it is handed to the OS (survives a process
    /// crash). Overrides [`LsmOptions::sync_writes`] for this write.
    pub sync: bool,
}

/// The LSM-tree backend: one write-ahead log shared by all partitions, group
/// commit, per-partition memtables flushed to SSTables in a directory per
/// partition, a manifest, a block cache and a table cache; compaction
/// arrives with the next engine stage.
///
/// # Durability
/// By default a write returns once its WAL record is handed to the OS: it
/// survives a crash of the process (kill -9), not a power loss. With
/// [`LsmOptions::sync_writes`], or per write with [`WriteOptions::sync`],
/// a write returns only after `fdatasync`: it survives power loss.
/// Concurrent writers share one `write` and, when any needs it, one
/// `fdatasync` (group commit). [`LsmBackend::sync_wal`] makes everything
/// written so far durable.
///
/// # Execution
/// Reads and iterator steps run on the calling thread (drain big scans in
/// `spawn_blocking`). Writes run inline up to the group-commit queue and then
/// await their completion: a writer waiting for an fsync never blocks a tokio
/// worker. Partition creation and drop (a catalogue fsync) run in
/// `spawn_blocking` when a tokio runtime is present.
///
/// A second `LsmBackend` on the same directory, in this or another process,
/// fails with `locked:`. Dropping the backend finishes queued writes, joins
/// its thread and releases the directory.
///
/// ```
/// use kalamdb_store::{LsmBackend, LsmOptions, Partition, StorageBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kalamdb_store::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("kalamdb-doc-{}", std::process::id()));
/// let backend = LsmBackend::new(&dir, LsmOptions::default())?;
/// let p = Partition::new("events")?;
/// backend.create_partition(&p).await?;
/// backend.put(&p, b"e1", b"hello").await?;
/// drop(backend);
/// let backend = LsmBackend::new(&dir, LsmOptions::default())?;
/// assert_eq!(backend.get(&p, b"e1").await?, Some(b"hello".to_vec()));
/// # drop(backend);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LsmBackend {
    db: Arc<Db>,
}

/// Maps an engine error onto the public error.
fn map_err(e: kalamdb_lsm::Error) -> Error {
    use kalamdb_lsm::Error as E;
    match e {
        E::Io(e) => Error::Io(e),
        E::PartitionNotFound(name) => Error::PartitionNotFound(name),
        E::Corruption { .. } => BackendErrorKind::Corruption.error(e),
        E::Poisoned(msg) | E::Locked(msg) | E::Stalled(msg) => Error::Backend(msg),
        E::TooLarge(msg) => BackendErrorKind::Limit.error(msg),
        E::Closed => Error::Io(std::io::Error::other("the LSM engine is closed")),
    }
}

impl LsmBackend {
    /// Opens (or creates) the database in `path` and recovers it.
    ///
    /// # Errors
    /// `locked:` if the directory is open elsewhere; I/O errors;
    /// `corruption:` naming the damaged file and offset.
    pub fn new(path: impl AsRef<Path>, options: LsmOptions) -> Result<Self> {
        let db = Db::open(path, options).map_err(map_err)?;
        Ok(LsmBackend { db: Arc::new(db) })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Executes an atomic batch with explicit write options.
    ///
    /// # Errors
    /// As [`StorageBackend::batch`].
    pub async fn batch_with(
        &self,
        operations: Vec<Operation>,
        options: WriteOptions,
    ) -> Result<()> {
        limits::check_batch(&operations)?;
        if operations.is_empty() {
            return Ok(());
        }
        self.commit(operations, Some(options.sync)).await
    }

    /// Puts one key with explicit write options.
    ///
    /// # Errors
    /// As [`StorageBackend::put`].
    pub async fn put_with(
        &self,
        partition: &Partition,
        key: &[u8],
        value: &[u8],
        options: WriteOptions,
    ) -> Result<()> {
        limits::check_put(key, value)?;
        self.write_one(partition, key, Some(value), Some(options.sync))
            .await
    }

    /// Deletes one key with explicit write options.
    ///
    /// # Errors
    /// As [`StorageBackend::delete`].
    pub async fn delete_with(
        &self,
        partition: &Partition,
        key: &[u8],
        options: WriteOptions,
    ) -> Result<()> {
        limits::check_key(key)?;
        self.write_one(partition, key, None, Some(options.sync))
            .await
    }

    /// Makes every write acknowledged so far durable against power loss (one
    /// WAL `fdatasync`, shared with concurrent sync writes).
    ///
    /// # Errors
    /// I/O errors of the sync; `poisoned:` after an earlier failure.
    pub async fn sync_wal(&self) -> Result<()> {
        let done = self.db.sync_wal().map_err(map_err)?;
        done.await
            .unwrap_or(Err(kalamdb_lsm::Error::Closed))
            .map_err(map_err)
    }

    /// Flushes every partition's memtables to SSTables and waits for it
    /// (runs in `spawn_blocking` when a tokio runtime is present). Writes
    /// are durable without it; it lets tests and tools put data into tables
    /// at a chosen moment.
    ///
    /// # Errors
    /// I/O errors of the flush; `poisoned:` after an earlier failure.
    pub async fn flush(&self) -> Result<()> {
        self.blocking(|db| db.flush()).await
    }

    /// Waits until background flushes and compactions are quiet: nothing
    /// queued or running (benchmarks, tests).
    ///
    /// # Errors
    /// The error of a background flush that failed.
    pub async fn wait_for_background_work(&self) -> Result<()> {
        self.blocking(|db| {
            db.wait_for_flushes()?;
            db.wait_for_compactions();
            db.wait_for_flushes()
        })
        .await
    }

    /// The engine's counters and shape.
    pub fn stats(&self) -> LsmStats {
        self.db.stats()
    }

    /// One partition's shape: memtables, and table files and bytes per level.
    ///
    /// # Errors
    /// `PartitionNotFound`.
    pub fn partition_stats(&self, partition: &Partition) -> Result<LsmPartitionStats> {
        self.db.partition_stats(partition.name()).map_err(map_err)
    }

    async fn write_one(
        &self,
        partition: &Partition,
        key: &[u8],
        value: Option<&[u8]>,
        sync: Option<bool>,
    ) -> Result<()> {
        self.backpressure(&[partition.name()]).await?;
        let op = WriteOp {
            partition: partition.name(),
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        let done = self.db.submit([op], sync).map_err(map_err)?;
        done.await
            .unwrap_or(Err(kalamdb_lsm::Error::Closed))
            .map_err(map_err)
    }

    async fn commit(&self, operations: Vec<Operation>, sync: Option<bool>) -> Result<()> {
        let mut names: Vec<&str> = Vec::new();
        for op in &operations {
            let name = op.partition().name();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        self.backpressure(&names).await?;
        let ops = operations.into_iter().map(|op| match op {
            Operation::Put {
                partition,
                key,
                value,
            } => WriteOp {
                partition: PartitionName(partition),
                key,
                value: Some(value),
            },
            Operation::Delete { partition, key } => WriteOp {
                partition: PartitionName(partition),
                key,
                value: None,
            },
        });
        let done = self.db.submit(ops, sync).map_err(map_err)?;
        done.await
            .unwrap_or(Err(kalamdb_lsm::Error::Closed))
            .map_err(map_err)
    }

    /// Waits while the engine slows down or stops writes to `partitions`
    /// (their flushes or level-0 compactions are behind), without blocking
    /// the async worker.
    async fn backpressure(&self, partitions: &[&str]) -> Result<()> {
        let started = std::time::Instant::now();
        let mut stalled = false;
        loop {
            match self.db.stall(partitions.iter().copied()).map_err(map_err)? {
                Stall::Go => break,
                Stall::Delay(d) => {
                    // A slowdown delays each write once.
                    if tokio::runtime::Handle::try_current().is_ok() {
                        tokio::time::sleep(d).await;
                    } else {
                        std::thread::sleep(d);
                    }
                    stalled = true;
                    break;
                }
                Stall::Wait(c) => {
                    let _ = c.await;
                }
            }
            stalled = true;
        }
        if stalled {
            self.db.note_stall(started.elapsed());
        }
        Ok(())
    }

    /// Runs blocking catalogue or flush work off the async worker when
    /// possible.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> kalamdb_lsm::Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || f(&db))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?
                .map_err(map_err),
            Err(_) => f(&db).map_err(map_err),
        }
    }
}

/// A partition as a name the engine can borrow.
struct PartitionName(Partition);

impl AsRef<str> for PartitionName {
    fn as_ref(&self) -> &str {
        self.0.name()
    }
}

#[async_trait::async_trait]
impl StorageBackend for LsmBackend {
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        limits::check_key(key)?;
        self.db.get(partition.name(), key).map_err(map_err)
    }

    async fn put(&self, partition: &Partition, key: &[u8], value: &[u8]) -> Result<()> {
        limits::check_put(key, value)?;
        self.write_one(partition, key, Some(value), None).await
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        limits::check_key(key)?;
        self.write_one(partition, key, None, None).await
    }

    async fn scan(
        &self,
        partition: &Partition,
        start_key: Option<&[u8]>,
        end_key: Option<&[u8]>,
    ) -> Result<ScanIterator> {
        let iter = self
            .db
            .scan(partition.name(), start_key, end_key)
            .map_err(map_err)?;
        if ScanRange::new(start_key, end_key).is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(Fused::new(iter.map(|r| r.map_err(map_err)))))
    }

    async fn batch(&self, operations: Vec<Operation>) -> Result<()> {
        limits::check_batch(&operations)?;
        if operations.is_empty() {
            return Ok(());
        }
        self.commit(operations, None).await
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        if self.db.partition_exists(partition.name()) {
            return Ok(());
        }
        let name = partition.name().to_string();
        self.blocking(move |db| db.create_partition(&name)).await
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(self.db.partition_exists(partition.name()))
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.db
            .list_partitions()
            .into_iter()
            .map(Partition::new)
            .collect()
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let name = partition.name().to_string();
        self.blocking(move |db| db.drop_partition(&name)).await
    }

    async fn partition_size(&self, partition: &Partition) -> Result<u64> {
        self.db.partition_size(partition.name()).map_err(map_err)
    }

    /// Flushes the partition's memtables, then merges all its tables into
    /// one sorted run with shadowed versions and tombstones dropped; runs
    /// in `spawn_blocking` when a tokio runtime is present.
    async fn compact(&self, partition: &Partition) -> Result<()> {
        let name = partition.name().to_string();
        self.blocking(move |db| db.compact(&name)).await
    }
}
