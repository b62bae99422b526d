//! [`RocksDbBackend`]: the RocksDB adapter (feature `rocksdb`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, BottommostLevelCompaction, BoundColumnFamily, Cache,
    ColumnFamilyDescriptor, CompactOptions, DBCompressionType, DBRawIteratorWithThreadMode,
    DBWithThreadMode, ErrorKind, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::iter::{Fused, KvPair, ScanRange};
use crate::{
    limits, BackendErrorKind, Error, Operation, Partition, Result, ScanIterator, StorageBackend,
};

type Db = DBWithThreadMode<MultiThreaded>;

/// RocksDB's own column family: always present, never exposed as a partition.
const ROCKSDB_DEFAULT_CF: &str = "default";
/// The column family of the partition named `default`. `:` is not allowed in
/// partition names, so no other partition can map to it.
const DEFAULT_PARTITION_CF: &str = "kalamdb:default";

/// Options of a [`RocksDbBackend`].
///
/// Every column family (partition) gets the same options and shares one
/// block cache. Compression is off (the crate builds RocksDB without
/// compression libraries).
#[derive(Debug, Clone)]
pub struct RocksDbOptions {
    /// Whether each write is fsynced before it returns. Default `false`.
    ///
    /// - `false`: a returned write is in RocksDB's write-ahead log and handed
    ///   to the operating system. It survives a crash of the process, but not
    ///   a power loss or kernel crash, which can lose the last writes (recovery
    ///   then yields a consistent prefix of the history).
    /// - `true`: the write-ahead log is `fdatasync`ed before the write returns
    ///   (concurrent writers share one sync). A returned write survives a
    ///   power loss, provided the device honours cache flushes.
    pub sync_writes: bool,
    /// Capacity in bytes of the LRU block cache shared by every partition;
    /// index and filter blocks are charged to it too. `0` disables the cache.
    /// Default 64 MiB.
    pub block_cache_bytes: usize,
    /// Bits per key of each table's (full) bloom filter; `0.0` disables the
    /// filters. Default `10.0` (about 1% false positives).
    pub bloom_bits_per_key: f64,
    /// Size in bytes of one partition's memtable before it is flushed to an
    /// SST file. Default 32 MiB.
    pub write_buffer_size: usize,
    /// Most background flushes and compactions running at once. Default 2.
    pub max_background_jobs: i32,
    /// Partitioned index and filter blocks: a two-level index, filters cut
    /// into small partitions, the top levels pinned in the cache. RocksDB's
    /// documented setting for a block cache smaller than the tables' index
    /// and filter blocks (a whole-table filter larger than a cache shard is
    /// re-read on every lookup). Default `false`.
    pub partitioned_index_filters: bool,
}

impl Default for RocksDbOptions {
    fn default() -> Self {
        RocksDbOptions {
            sync_writes: false,
            block_cache_bytes: 64 << 20,
            bloom_bits_per_key: 10.0,
            write_buffer_size: 32 << 20,
            max_background_jobs: 2,
            partitioned_index_filters: false,
        }
    }
}

impl RocksDbOptions {
    /// The options of every column family (also the base of the DB options).
    fn column_family_options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        if self.block_cache_bytes == 0 {
            table.disable_cache();
        } else {
            table.set_block_cache(&Cache::new_lru_cache(self.block_cache_bytes));
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        }
        if self.bloom_bits_per_key > 0.0 {
            table.set_bloom_filter(self.bloom_bits_per_key, false);
        }
        if self.partitioned_index_filters {
            table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_pin_top_level_index_and_filter(true);
            table.set_metadata_block_size(4096);
        }
        let mut opts = Options::default();
        opts.set_block_based_table_factory(&table);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_write_buffer_size(self.write_buffer_size);
        opts
    }
}

/// A backend on RocksDB: each partition is a column family.
///
/// Reopening a directory opens every column family in it. The partition named
/// `default` is stored in a column family of its own (RocksDB's built-in
/// `default` column family is never used nor listed), so it behaves like any
/// other name; column families whose names are not valid partition names are
/// ignored by [`list_partitions`](StorageBackend::list_partitions).
///
/// What a returned write survives depends on [`RocksDbOptions::sync_writes`]:
/// by default a process crash, with `sync_writes` a power loss as well.
///
/// A directory can be open in one handle at a time: a second
/// [`RocksDbBackend::new`] on it, from this process or another, fails with a
/// `locked:` error. Open scan iterators keep the database open (and locked)
/// until they are dropped, even after the backend itself is dropped.
///
/// Point reads, writes and iterator steps run inline on the caller's thread;
/// [`compact`](StorageBackend::compact) runs on tokio's blocking pool.
///
/// ```
/// use kalamdb_store::{Partition, RocksDbBackend, RocksDbOptions, StorageBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kalamdb_store::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let backend = RocksDbBackend::new(dir.path(), RocksDbOptions::default())?;
/// let p = Partition::new("p")?;
/// backend.create_partition(&p).await?;
/// backend.put(&p, b"a", b"1").await?;
/// assert_eq!(backend.get(&p, b"a").await?, Some(b"1".to_vec()));
/// # Ok(())
/// # }
/// ```
pub struct RocksDbBackend {
    db: Arc<Db>,
    cf_options: Options,
    write_options: WriteOptions,
    /// The partitions: every open column family whose name maps to one. Its
    /// lock serializes `create_partition` and `drop_partition`.
    partitions: Mutex<BTreeSet<Partition>>,
    /// Writers hold it shared, `drop_partition` exclusively: a write never
    /// targets a column family dropped after its handle was looked up, so it
    /// fails with `PartitionNotFound` rather than RocksDB's "Invalid column
    /// family specified in write batch".
    writes: RwLock<()>,
    path: PathBuf,
    options: RocksDbOptions,
}

impl fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RocksDbBackend {
    /// Opens the database in `path`, creating it if missing, with every
    /// column family it holds.
    ///
    /// # Errors
    /// A `locked:` error if the directory is already open (in this process or
    /// another), `corruption:` if RocksDB finds damaged files, otherwise a
    /// `rocksdb:` error.
    pub fn new(path: impl AsRef<Path>, options: RocksDbOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let cf_options = options.column_family_options();
        let mut db_options = cf_options.clone();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(options.max_background_jobs);

        let names = match Db::list_cf(&db_options, &path) {
            Ok(names) => names,
            // No database there yet (missing directory or no CURRENT file).
            Err(_) if !path.join("CURRENT").exists() => Vec::new(),
            Err(e) => return Err(open_error(e)),
        };
        let partitions = names.iter().filter_map(|name| partition_of(name)).collect();
        let descriptors = names
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options.clone()));
        let db = Db::open_cf_descriptors(&db_options, &path, descriptors).map_err(open_error)?;

        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync_writes);
        Ok(RocksDbBackend {
            db: Arc::new(db),
            cf_options,
            write_options,
            partitions: Mutex::new(partitions),
            writes: RwLock::new(()),
            path,
            options,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn partitions(&self) -> MutexGuard<'_, BTreeSet<Partition>> {
        // Every mutation of the set follows a successful RocksDB call and is a
        // single insert/remove, so a poisoned lock still guards a valid set.
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn cf(&self, partition: &Partition) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(cf_name(partition))
            .ok_or_else(|| not_found(partition))
    }

    fn write_one(&self, partition: &Partition, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let _writing = self.writes.read().unwrap_or_else(PoisonError::into_inner);
        let cf = self.cf(partition)?;
        match value {
            Some(value) => self.db.put_cf_opt(&cf, key, value, &self.write_options),
            None => self.db.delete_cf_opt(&cf, key, &self.write_options),
        }
        .map_err(rocksdb_error)
    }

    fn write_batch(&self, operations: &[Operation]) -> Result<()> {
        let _writing = self.writes.read().unwrap_or_else(PoisonError::into_inner);
        let mut handles: HashMap<&Partition, Arc<BoundColumnFamily<'_>>> = HashMap::new();
        for op in operations {
            if !handles.contains_key(op.partition()) {
                handles.insert(op.partition(), self.cf(op.partition())?);
            }
        }
        let mut batch = WriteBatch::default();
        for op in operations {
            let cf = &handles[op.partition()];
            match op.value() {
                Some(value) => batch.put_cf(cf, op.key(), value),
                None => batch.delete_cf(cf, op.key()),
            }
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(rocksdb_error)
    }
}

/// The column family holding `partition`.
fn cf_name(partition: &Partition) -> &str {
    match partition.name() {
        ROCKSDB_DEFAULT_CF => DEFAULT_PARTITION_CF,
        name => name,
    }
}

/// The partition stored in column family `cf`, if any.
fn partition_of(cf: &str) -> Option<Partition> {
    match cf {
        ROCKSDB_DEFAULT_CF => None,
        DEFAULT_PARTITION_CF => Partition::new(ROCKSDB_DEFAULT_CF).ok(),
        name => Partition::new(name).ok(),
    }
}

fn not_found(partition: &Partition) -> Error {
    Error::PartitionNotFound(partition.name().to_string())
}

fn rocksdb_error(e: rocksdb::Error) -> Error {
    match e.kind() {
        ErrorKind::Corruption => BackendErrorKind::Corruption.error(e),
        _ => BackendErrorKind::RocksDb.error(e),
    }
}

/// Like [`rocksdb_error`], but recognises the failure to take the LOCK file
/// ("While lock file: …" from another process, "lock hold by current process"
/// from this one).
fn open_error(e: rocksdb::Error) -> Error {
    let msg = e.to_string();
    if msg.contains("lock file") || msg.contains("lock hold by current process") {
        BackendErrorKind::Locked.error(msg)
    } else {
        rocksdb_error(e)
    }
}

#[async_trait::async_trait]
impl StorageBackend for RocksDbBackend {
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        limits::check_key(key)?;
        let cf = self.cf(partition)?;
        self.db.get_cf(&cf, key).map_err(rocksdb_error)
    }

    async fn put(&self, partition: &Partition, key: &[u8], value: &[u8]) -> Result<()> {
        limits::check_put(key, value)?;
        self.write_one(partition, key, Some(value))
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        limits::check_key(key)?;
        self.write_one(partition, key, None)
    }

    async fn scan(
        &self,
        partition: &Partition,
        start_key: Option<&[u8]>,
        end_key: Option<&[u8]>,
    ) -> Result<ScanIterator> {
        let range = ScanRange::new(start_key, end_key);
        if range.is_empty() || range.end.as_deref() == Some(&[][..]) {
            self.cf(partition)?;
            return Ok(Box::new(std::iter::empty()));
        }
        let scan = RocksScan::open(Arc::clone(&self.db), cf_name(partition), range)
            .ok_or_else(|| not_found(partition))?;
        Ok(Box::new(Fused::new(scan)))
    }

    async fn batch(&self, operations: Vec<Operation>) -> Result<()> {
        limits::check_batch(&operations)?;
        self.write_batch(&operations)
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        let mut partitions = self.partitions();
        let name = cf_name(partition);
        if self.db.cf_handle(name).is_none() {
            match self.db.create_cf(name, &self.cf_options) {
                Ok(()) => {}
                Err(e) if e.to_string().contains("already exists") => {}
                Err(e) => return Err(rocksdb_error(e)),
            }
        }
        partitions.insert(partition.clone());
        Ok(())
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(self.db.cf_handle(cf_name(partition)).is_some())
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        Ok(self.partitions().iter().cloned().collect())
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let mut partitions = self.partitions();
        let _no_writes = self.writes.write().unwrap_or_else(PoisonError::into_inner);
        let name = cf_name(partition);
        if self.db.cf_handle(name).is_none() {
            return Err(not_found(partition));
        }
        self.db.drop_cf(name).map_err(rocksdb_error)?;
        partitions.remove(partition);
        Ok(())
    }

    async fn partition_size(&self, partition: &Partition) -> Result<u64> {
        let cf = self.cf(partition)?;
        let mut total = 0u64;
        for property in [
            "rocksdb.total-sst-files-size",
            "rocksdb.size-all-mem-tables",
        ] {
            let value = self
                .db
                .property_int_value_cf(&cf, property)
                .map_err(rocksdb_error)?;
            total = total.saturating_add(value.unwrap_or(0));
        }
        Ok(total)
    }

    async fn compact(&self, partition: &Partition) -> Result<()> {
        let db = Arc::clone(&self.db);
        let partition = partition.clone();
        // The column family handle is looked up and dropped inside the
        // closure: nothing borrowed from the DB lives across the await.
        let task = tokio::task::spawn_blocking(move || {
            let cf = db
                .cf_handle(cf_name(&partition))
                .ok_or_else(|| not_found(&partition))?;
            let mut opts = CompactOptions::default();
            opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
            db.compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &opts);
            Ok(())
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(BackendErrorKind::RocksDb.error(format_args!("compaction task: {e}"))),
        }
    }
}

/// A streaming scan that owns what it reads: the DB, the column family handle
/// and a RocksDB iterator, which pins a consistent snapshot when created.
///
/// Fields drop in declaration order: the iterator first, then the column
/// family handle, then the DB.
struct RocksScan {
    iter: DBRawIteratorWithThreadMode<'static, Db>,
    _cf: Arc<BoundColumnFamily<'static>>,
    _db: Arc<Db>,
    /// Whether the iterator must step before yielding (false right after the seek).
    step: bool,
}

impl RocksScan {
    /// Opens an iterator positioned at the first key of a non-empty `range`;
    /// `None` if the column family does not exist.
    fn open(db: Arc<Db>, cf_name: &str, range: ScanRange) -> Option<Self> {
        let cf = db.cf_handle(cf_name)?;
        // SAFETY: the handle borrows `*db`, the DB inside the `Arc`, whose heap
        // address is stable for as long as any clone of the `Arc` lives. The
        // handle is stored next to a clone of that `Arc` and is dropped before
        // it (field order), so the DB outlives it; `drop_partition` only
        // removes the DB's own reference to the handle, and this one keeps the
        // column family readable.
        let cf = unsafe {
            std::mem::transmute::<Arc<BoundColumnFamily<'_>>, Arc<BoundColumnFamily<'static>>>(cf)
        };
        let mut read_options = ReadOptions::default();
        if let Some(end) = &range.end {
            read_options.set_iterate_upper_bound(end.clone());
        }
        let iter = db.raw_iterator_cf_opt(&cf, read_options);
        // SAFETY: as for the handle: the iterator borrows the DB inside the
        // `Arc` (stable address) and uses the column family handle, and it is
        // dropped before both (it is the first field). It owns its
        // `ReadOptions`, hence the upper bound it points to.
        let mut iter = unsafe {
            std::mem::transmute::<
                DBRawIteratorWithThreadMode<'_, Db>,
                DBRawIteratorWithThreadMode<'static, Db>,
            >(iter)
        };
        match &range.start {
            Some(start) => iter.seek(start),
            None => iter.seek_to_first(),
        }
        Some(RocksScan {
            iter,
            _cf: cf,
            _db: db,
            step: false,
        })
    }
}

impl Iterator for RocksScan {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if std::mem::replace(&mut self.step, true) {
            self.iter.next();
        }
        match self.iter.item() {
            Some((k, v)) => Some(Ok((k.to_vec(), v.to_vec()))),
            None => self.iter.status().err().map(|e| Err(rocksdb_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Partition {
        Partition::new(name).unwrap()
    }

    fn open(dir: &Path) -> RocksDbBackend {
        RocksDbBackend::new(dir, RocksDbOptions::default()).unwrap()
    }

    fn names(partitions: Vec<Partition>) -> Vec<String> {
        partitions.iter().map(|p| p.name().to_string()).collect()
    }

    fn drain(iter: ScanIterator) -> Vec<KvPair> {
        iter.collect::<Result<_>>().unwrap()
    }

    fn kv(k: &str, v: &str) -> KvPair {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn is_not_found<T: fmt::Debug>(r: Result<T>, name: &str) -> bool {
        matches!(r, Err(Error::PartitionNotFound(n)) if n == name)
    }

    #[tokio::test]
    async fn crud_and_missing_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let a = p("a");
        assert!(is_not_found(db.get(&a, b"k").await, "a"));
        assert!(is_not_found(db.put(&a, b"k", b"v").await, "a"));
        assert!(is_not_found(db.delete(&a, b"k").await, "a"));
        assert!(is_not_found(db.scan(&a, None, None).await.map(drop), "a"));
        assert!(is_not_found(
            db.scan(&a, Some(b"b"), Some(b"a")).await.map(drop),
            "a"
        ));
        assert!(is_not_found(db.partition_size(&a).await, "a"));
        assert!(is_not_found(db.compact(&a).await, "a"));
        assert!(is_not_found(db.drop_partition(&a).await, "a"));
        assert!(!db.partition_exists(&a).await.unwrap());

        db.create_partition(&a).await.unwrap();
        db.create_partition(&a).await.unwrap();
        assert!(db.partition_exists(&a).await.unwrap());
        db.put(&a, b"k", b"v").await.unwrap();
        db.put(&a, b"", b"").await.unwrap();
        assert_eq!(db.get(&a, b"k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(db.get(&a, b"").await.unwrap(), Some(Vec::new()));
        db.delete(&a, b"k").await.unwrap();
        db.delete(&a, b"never").await.unwrap();
        assert_eq!(db.get(&a, b"k").await.unwrap(), None);

        // Limits come before the partition check.
        let big = vec![0u8; limits::MAX_KEY_LEN + 1];
        let err = db.get(&p("missing"), &big).await.unwrap_err();
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Limit));
        let err = db.put(&a, &big, b"v").await.unwrap_err();
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Limit));
        assert_eq!(db.get(&a, &big[..10]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_default_partition_is_like_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let d = p("default");
        assert!(db.list_partitions().await.unwrap().is_empty());
        assert!(!db.partition_exists(&d).await.unwrap());
        assert!(is_not_found(db.put(&d, b"k", b"v").await, "default"));
        db.create_partition(&d).await.unwrap();
        db.create_partition(&p("b")).await.unwrap();
        db.create_partition(&p("Z")).await.unwrap();
        db.put(&d, b"k", b"old").await.unwrap();
        assert_eq!(
            names(db.list_partitions().await.unwrap()),
            ["Z", "b", "default"]
        );
        db.drop_partition(&d).await.unwrap();
        assert!(!db.partition_exists(&d).await.unwrap());
        db.create_partition(&d).await.unwrap();
        assert_eq!(db.get(&d, b"k").await.unwrap(), None);
        db.put(&d, b"k", b"new").await.unwrap();
        drop(db);

        let db = open(dir.path());
        assert_eq!(
            names(db.list_partitions().await.unwrap()),
            ["Z", "b", "default"]
        );
        assert_eq!(db.get(&d, b"k").await.unwrap(), Some(b"new".to_vec()));
    }

    #[tokio::test]
    async fn reopen_skips_column_families_that_are_not_partitions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let raw = Db::open_cf(&opts, dir.path(), ["bad-name", "x:y", "ok_1"]).unwrap();
            let cf = raw.cf_handle("ok_1").unwrap();
            raw.put_cf(&cf, b"k", b"v").unwrap();
        }
        let db = open(dir.path());
        assert_eq!(names(db.list_partitions().await.unwrap()), ["ok_1"]);
        assert_eq!(db.get(&p("ok_1"), b"k").await.unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_creates_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(dir.path()));
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let db = Arc::clone(&db);
                tokio::spawn(async move {
                    let name = if i % 2 == 0 { "same" } else { "default" };
                    db.create_partition(&p(name)).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            names(db.list_partitions().await.unwrap()),
            ["default", "same"]
        );
    }

    #[tokio::test]
    async fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let err = RocksDbBackend::new(dir.path(), RocksDbOptions::default()).unwrap_err();
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Locked), "{err}");
        drop(db);
        open(dir.path());
    }

    #[tokio::test]
    async fn batches_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let (a, b) = (p("a"), p("b"));
        db.create_partition(&a).await.unwrap();
        db.create_partition(&b).await.unwrap();
        db.batch(Vec::new()).await.unwrap();
        db.batch(vec![
            Operation::put(a.clone(), b"k".to_vec(), b"1".to_vec()),
            Operation::put(b.clone(), b"k".to_vec(), b"2".to_vec()),
            Operation::put(a.clone(), b"k".to_vec(), b"3".to_vec()),
            Operation::put(b.clone(), b"gone".to_vec(), b"x".to_vec()),
            Operation::delete(b.clone(), b"gone".to_vec()),
        ])
        .await
        .unwrap();
        assert_eq!(db.get(&a, b"k").await.unwrap(), Some(b"3".to_vec()));
        assert_eq!(
            drain(db.scan(&b, None, None).await.unwrap()),
            [kv("k", "2")]
        );

        let missing = vec![
            Operation::put(a.clone(), b"x".to_vec(), b"1".to_vec()),
            Operation::put(p("nope"), b"x".to_vec(), b"1".to_vec()),
        ];
        assert!(is_not_found(db.batch(missing).await, "nope"));
        assert_eq!(db.get(&a, b"x").await.unwrap(), None);

        // A limit error wins over a missing partition, and writes nothing.
        let over = vec![
            Operation::put(a.clone(), b"x".to_vec(), b"1".to_vec()),
            Operation::put(p("nope"), vec![0; limits::MAX_KEY_LEN + 1], b"1".to_vec()),
        ];
        let err = db.batch(over).await.unwrap_err();
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Limit));
        assert_eq!(db.get(&a, b"x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn scan_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let a = p("a");
        db.create_partition(&a).await.unwrap();
        for k in ["", "a", "b", "b\0", "c", "d\u{ff}"] {
            db.put(&a, k.as_bytes(), b"v").await.unwrap();
        }
        let keys = |items: Vec<KvPair>| -> Vec<String> {
            items
                .into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect()
        };
        let all = keys(drain(db.scan(&a, None, None).await.unwrap()));
        assert_eq!(all, ["", "a", "b", "b\0", "c", "d\u{ff}"]);
        let some = keys(drain(db.scan(&a, Some(b"a"), Some(b"c")).await.unwrap()));
        assert_eq!(some, ["a", "b", "b\0"]);
        let tail = keys(drain(db.scan(&a, Some(b"b\0"), None).await.unwrap()));
        assert_eq!(tail, ["b\0", "c", "d\u{ff}"]);
        let head = keys(drain(db.scan(&a, None, Some(b"b")).await.unwrap()));
        assert_eq!(head, ["", "a"]);
        assert!(drain(db.scan(&a, Some(b"c"), Some(b"c")).await.unwrap()).is_empty());
        assert!(drain(db.scan(&a, Some(b"d"), Some(b"c")).await.unwrap()).is_empty());
        assert!(drain(db.scan(&a, None, Some(b"")).await.unwrap()).is_empty());
        let mut first = db.scan(&a, Some(b"b"), None).await.unwrap();
        assert_eq!(first.next().unwrap().unwrap(), kv("b", "v"));
    }

    #[tokio::test]
    async fn scans_are_snapshots_that_outlive_drops() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let a = p("a");
        db.create_partition(&a).await.unwrap();
        for i in 0..1000u32 {
            db.put(&a, format!("k{i:04}").as_bytes(), b"old")
                .await
                .unwrap();
        }
        let expected: Vec<KvPair> = (0..1000u32)
            .map(|i| (format!("k{i:04}").into_bytes(), b"old".to_vec()))
            .collect();

        // Later writes are not seen.
        let mut snapshot = db.scan(&a, None, None).await.unwrap();
        let first = snapshot.next().unwrap().unwrap();
        db.put(&a, b"k0001", b"new").await.unwrap();
        db.put(&a, b"k9999", b"new").await.unwrap();
        db.delete(&a, b"k0500").await.unwrap();
        db.compact(&a).await.unwrap();
        let mut seen = vec![first];
        seen.extend(drain(snapshot));
        assert_eq!(seen, expected);

        // A dropped partition stays readable through an open scan, and a
        // partition re-created under the same name starts empty.
        let before_drop = db.scan(&a, None, None).await.unwrap();
        db.drop_partition(&a).await.unwrap();
        db.create_partition(&a).await.unwrap();
        assert!(drain(db.scan(&a, None, None).await.unwrap()).is_empty());
        assert_eq!(drain(before_drop).len(), 1000);

        // A scan outlives the backend (and keeps the directory locked).
        db.put(&a, b"x", b"1").await.unwrap();
        db.put(&a, b"y", b"2").await.unwrap();
        let outliving = db.scan(&a, None, None).await.unwrap();
        let also_dropped = db.scan(&a, Some(b"y"), None).await.unwrap();
        db.drop_partition(&a).await.unwrap();
        drop(db);
        let err = RocksDbBackend::new(dir.path(), RocksDbOptions::default()).unwrap_err();
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Locked));
        assert_eq!(drain(outliving), [kv("x", "1"), kv("y", "2")]);
        let other_thread = std::thread::spawn(move || drain(also_dropped));
        assert_eq!(other_thread.join().unwrap(), [kv("y", "2")]);
        let db = open(dir.path());
        assert!(db.list_partitions().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn size_compaction_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let options = RocksDbOptions {
            sync_writes: true,
            block_cache_bytes: 0,
            bloom_bits_per_key: 0.0,
            write_buffer_size: 1 << 20,
            max_background_jobs: 1,
            partitioned_index_filters: true,
        };
        let db = RocksDbBackend::new(dir.path(), options).unwrap();
        assert_eq!(db.path(), dir.path());
        let a = p("a");
        db.create_partition(&a).await.unwrap();
        let empty = db.partition_size(&a).await.unwrap();
        for i in 0..2000u32 {
            db.put(&a, &i.to_be_bytes(), &[7; 100]).await.unwrap();
        }
        let written = db.partition_size(&a).await.unwrap();
        assert!(written > empty, "{written} > {empty}");
        for i in 0..2000u32 {
            db.delete(&a, &i.to_be_bytes()).await.unwrap();
        }
        db.compact(&a).await.unwrap();
        let compacted = db.partition_size(&a).await.unwrap();
        assert!(compacted < written, "{compacted} < {written}");
        assert!(drain(db.scan(&a, None, None).await.unwrap()).is_empty());
    }

    #[tokio::test]
    async fn corruption_is_an_error_and_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let a = p("a");
        {
            let db = open(dir.path());
            db.create_partition(&a).await.unwrap();
            for i in 0..2000u32 {
                db.put(&a, &i.to_be_bytes(), &[i as u8; 100]).await.unwrap();
            }
            db.compact(&a).await.unwrap();
        }
        let sst = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "sst"))
            .unwrap();
        let mut bytes = std::fs::read(&sst).unwrap();
        for b in &mut bytes[100_000..100_016] {
            *b ^= 0xff;
        }
        std::fs::write(&sst, bytes).unwrap();

        let db = open(dir.path());
        let mut items: Vec<Result<KvPair>> = db.scan(&a, None, None).await.unwrap().collect();
        let last = items.pop().unwrap().unwrap_err();
        assert_eq!(
            last.backend_kind(),
            Some(BackendErrorKind::Corruption),
            "{last}"
        );
        assert!(items.iter().all(Result::is_ok));
        assert!(items.len() < 2000);
    }
}
