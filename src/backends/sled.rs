//! [`SledBackend`]: the sled 0.34 adapter, one sled tree per partition.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionResult, TransactionalTree,
};
use sled::{IVec, Transactional};

use crate::iter::{Fused, KvPair, ScanRange};
use crate::{
    limits, BackendErrorKind, Error, Operation, Partition, Result, ScanIterator, StorageBackend,
};

/// The sled tree holding the partition registry.
const REGISTRY_TREE: &[u8] = b"kalamdb:registry";
/// Registry keys `name:<partition name>` map to the partition's id (u64, big-endian).
const NAME_PREFIX: &[u8] = b"name:";
/// Registry key of the next partition id to hand out (u64, big-endian).
const NEXT_ID_KEY: &[u8] = b"next_id";
/// Partition trees are named `p:<id>` (decimal id).
const TREE_PREFIX: &str = "p:";

/// A [`StorageBackend`] on [sled](https://docs.rs/sled/0.34) 0.34.
///
/// # Layout
///
/// Each partition is its own sled `Tree`, named `p:<id>` after a numeric id
/// that is assigned at creation and never reused; nothing is derived from the
/// partition's name. A registry tree, `kalamdb:registry`, maps each partition
/// name to its id and holds the next id to hand out. Creating a partition
/// allocates the id and records the name in one sled transaction on the
/// registry; dropping one removes its registry entry, then drops its tree.
/// Trees whose id is not in the registry (left over by a crash in the middle
/// of a drop) are dropped when the backend is opened. Creating and dropping
/// partitions are serialized inside the backend; `create_partition` is
/// idempotent, also under a race.
///
/// # Batches
///
/// A batch is one sled transaction over the trees of the partitions it
/// writes: all of it is applied or none of it, and later operations on a key
/// win. (sled 0.34 commits a transaction under a process-wide lock that
/// excludes every other sled read and write, so a large batch briefly stalls
/// all other sled users in the process.)
///
/// # How scans get their snapshot
///
/// sled 0.34 has no snapshots: its iterators see writes made after they were
/// created. The adapter provides snapshot scans itself, without copying the
/// partition:
///
/// - Each live scan registers a snapshot record with its partition: the scan
///   range, the iterator's current position, and an *overlay* mapping keys to
///   their value at snapshot time (or "absent at snapshot time").
/// - Before `put`, `delete` or `batch` writes a key, it looks at the live
///   scans of that partition. For each scan whose position has not passed the
///   key and whose overlay has no entry for it, it reads the key's current
///   value from the tree and stores it in the overlay. That read and the
///   insertion happen under one lock, and only the first writer of a key
///   records it, so the overlay always holds the value the key had when the
///   scan started. Opening a scan waits for writes that have recorded but not
///   yet applied, so a write is either wholly before a scan or recorded for it.
/// - The iterator walks the live sled tree lazily and merges it, in key
///   order, with the overlay: a key in the overlay takes the overlay's value
///   (or is skipped if it did not exist at snapshot time); any other key was
///   not written since the snapshot, so the tree's value is the snapshot's.
///   Overlay entries are discarded as the iterator passes them, and the record
///   is unregistered when the iterator is exhausted or dropped.
///
/// The cost: writes to a partition with no live scan pay one uncontended
/// read-lock and an atomic load; while scans are live, each write first reads
/// the old value of its keys, and **the overlay of a scan grows with the
/// distinct keys written ahead of its cursor while it is alive** (memory is
/// freed as the cursor passes them and when the scan ends). Hold long scans
/// only as long as needed.
///
/// A scan stays valid after its partition is dropped (the tree is dropped for
/// real only when the last scan on it ends; if the process stops first, the
/// tree is dropped at the next open) and after the backend is dropped (the
/// iterator keeps sled's handles alive — which also keeps the directory
/// locked until the iterator is dropped).
///
/// # Durability
///
/// A returned write is in sled's in-memory log buffers. sled writes them to
/// its log file on a background timer (every 500 ms by default), on
/// [`flush`](SledBackend::flush), and when the last handle is dropped. A
/// process crash can lose writes from that window unless `flush` returned
/// after them. Even then, sled 0.34's flush uses `sync_file_range` only: it
/// syncs neither file metadata nor the device's write cache, so **no write is
/// guaranteed to survive a power loss or an OS crash**. Creating and dropping
/// partitions have the same durability as writes. sled recovers a batch
/// (one transaction) whole or not at all.
///
/// # Other behaviour
///
/// - Opening a directory that is already open — by another `SledBackend` in
///   this process, or another process — fails with a `locked:` error. sled
///   holds an exclusive `flock` on its `db` file for as long as any of its
///   handles lives (a live scan counts), and the adapter also keeps a
///   process-wide list of the directories it has open. sled lets go of the
///   `flock` only once its background threads have finished the work queued
///   by the last handle, shortly *after* that handle is dropped; so when this
///   process closed the directory in the last few seconds, `new` retries for
///   up to two seconds before reporting `locked:`.
/// - `partition_size` is the sum of the lengths of the partition's keys and
///   values (a walk of the tree); it is not the space used on disk.
/// - `compact` is a no-op for an existing partition: sled compacts its log in
///   the background and has no manual compaction.
/// - sled I/O errors are [`Error::Io`]; sled's corruption errors are
///   `corruption:` errors; every other sled error is a `sled:` error.
/// - The async methods call sled inline (it is synchronous and its calls are
///   short); drain large scans inside `tokio::task::spawn_blocking`.
///
/// ```
/// use kalamdb_store::{Partition, SledBackend, StorageBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kalamdb_store::Result<()> {
/// # let dir = tempfile::tempdir()?;
/// let backend = SledBackend::new(dir.path())?;
/// let p = Partition::new("p")?;
/// backend.create_partition(&p).await?;
/// backend.put(&p, b"a", b"1").await?;
/// let snapshot = backend.scan(&p, None, None).await?;
/// backend.put(&p, b"b", b"2").await?; // not seen by `snapshot`
/// assert_eq!(snapshot.count(), 1);
/// backend.flush()?; // hand sled's log to the OS now
/// # Ok(())
/// # }
/// ```
pub struct SledBackend {
    registry: sled::Tree,
    partitions: RwLock<BTreeMap<Partition, Arc<PartState>>>,
    /// Serializes `create_partition` and `drop_partition`.
    admin: Mutex<()>,
    // Last: dropped after every sled handle above.
    ctx: Arc<Ctx>,
}

impl fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledBackend")
            .field("path", &self.ctx.path)
            .field("partitions", &read(&self.partitions).len())
            .finish_non_exhaustive()
    }
}

/// What every partition, scan and the backend share.
struct Ctx {
    db: sled::Db,
    path: PathBuf,
    // Last: marks the directory closed once `db` is dropped.
    _claim: DirClaim,
}

/// How long after this process closed a directory a failure to take sled's
/// lock is blamed on sled's own background threads (see [`open_db`]).
const LINGER: Duration = Duration::from_secs(10);
/// How long [`open_db`] waits for those threads to let go of the lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The directories a `SledBackend` of this process has open (`None`) or has
/// closed (`Some(when)`), by canonical path.
static DIRECTORIES: Mutex<BTreeMap<PathBuf, Option<Instant>>> = Mutex::new(BTreeMap::new());

/// This process's claim on a directory; released (marked closed) on drop.
struct DirClaim {
    path: PathBuf,
    /// When this process last closed the directory, if it did recently.
    closed_before: Option<Instant>,
    opened: bool,
}

impl DirClaim {
    fn new(dir: &Path) -> Result<Self> {
        let mut dirs = lock(&DIRECTORIES);
        dirs.retain(|_, closed| closed.is_none_or(|at| at.elapsed() < LINGER));
        let closed_before = match dirs.get(dir) {
            Some(None) => {
                return Err(BackendErrorKind::Locked.error(format_args!(
                    "{} is already open in this process",
                    dir.display()
                )))
            }
            Some(Some(at)) => Some(*at),
            None => None,
        };
        dirs.insert(dir.to_path_buf(), None);
        Ok(DirClaim {
            path: dir.to_path_buf(),
            closed_before,
            opened: false,
        })
    }
}

impl Drop for DirClaim {
    fn drop(&mut self) {
        let mut dirs = lock(&DIRECTORIES);
        match (self.opened, self.closed_before) {
            (true, _) => {
                dirs.insert(self.path.clone(), Some(Instant::now()));
            }
            (false, Some(at)) => {
                dirs.insert(self.path.clone(), Some(at));
            }
            (false, None) => {
                dirs.remove(&self.path);
            }
        }
    }
}

/// Opens sled in `dir`.
///
/// sled releases its `flock` only when background work queued on its global
/// thread pool (log writes, file truncations) has finished, which can be a
/// little after the last handle is dropped. If this process closed `dir`
/// recently, a lock failure is retried for up to [`LOCK_WAIT`]; otherwise
/// (another process holds it) it is reported at once.
fn open_db(dir: &Path, claim: &DirClaim, options: &SledOptions) -> Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mode = if options.high_throughput {
        sled::Mode::HighThroughput
    } else {
        sled::Mode::LowSpace
    };
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_capacity)
        .mode(mode)
        .flush_every_ms(options.flush_every_ms);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports a failed `flock` of its `db` file as this I/O error.
            Err(sled::Error::Io(io)) if io.to_string().starts_with("could not acquire lock") => {
                if claim.closed_before.is_none() || Instant::now() >= deadline {
                    return Err(BackendErrorKind::Locked.error(format_args!(
                        "{} is already open in another handle or process ({io})",
                        dir.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(convert(dir, e)),
        }
    }
}

impl Ctx {
    fn error(&self, e: sled::Error) -> Error {
        convert(&self.path, e)
    }
}

fn convert(path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::Io(io),
        sled::Error::Corruption { at, .. } => {
            let at = match at {
                Some(ptr) => format!("{ptr:?}"),
                None => "an unknown offset".to_string(),
            };
            BackendErrorKind::Corruption.error(format_args!(
                "{} at {at}: sled read corrupted data",
                path.join("db").display()
            ))
        }
        other => BackendErrorKind::Sled.error(other),
    }
}

fn registry_corruption(path: &Path, key: &[u8], what: &str) -> Error {
    BackendErrorKind::Corruption.error(format_args!(
        "{} at registry key {:?}: {what}",
        path.join("db").display(),
        String::from_utf8_lossy(key)
    ))
}

fn not_found(partition: &Partition) -> Error {
    Error::PartitionNotFound(partition.name().to_string())
}

fn name_key(partition: &Partition) -> Vec<u8> {
    [NAME_PREFIX, partition.name().as_bytes()].concat()
}

fn tree_name(id: u64) -> String {
    format!("{TREE_PREFIX}{id}")
}

/// The id of a partition tree's name, `None` for any other tree.
fn parse_tree_name(name: &[u8]) -> Option<u64> {
    let id: u64 = std::str::from_utf8(name.strip_prefix(TREE_PREFIX.as_bytes())?)
        .ok()?
        .parse()
        .ok()?;
    (tree_name(id).as_bytes() == name).then_some(id)
}

fn decode_id(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

// The data behind these locks stays consistent if a holder panics (every
// mutation is a single map or vector operation), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// One partition: its tree and the live scans on it.
struct PartState {
    id: u64,
    tree: sled::Tree,
    ctx: Arc<Ctx>,
    /// Writers hold it shared from recording their keys for live scans until
    /// their write is applied; opening a scan and dropping the partition hold
    /// it exclusively.
    gate: RwLock<()>,
    /// Set (under `gate`, exclusively) when the partition is dropped.
    dropped: AtomicBool,
    /// Number of registered snapshots; incremented under `gate` exclusively,
    /// so a writer holding `gate` that reads 0 has no snapshot to record for.
    live: AtomicUsize,
    scans: Mutex<Scans>,
}

#[derive(Default)]
struct Scans {
    snapshots: Vec<Arc<Mutex<Snapshot>>>,
    /// Readers walking the tree outside a snapshot (`partition_size`).
    pins: usize,
    /// The partition was dropped: drop the tree once nothing uses it.
    dropped: bool,
    /// The tree was dropped (or is being dropped).
    tree_dropped: bool,
}

impl Scans {
    /// Whether the caller must now drop the tree (exactly one caller does).
    fn take_tree_drop(&mut self) -> bool {
        let due = self.dropped && !self.tree_dropped && self.snapshots.is_empty() && self.pins == 0;
        if due {
            self.tree_dropped = true;
        }
        due
    }
}

/// The shared state of one live scan.
struct Snapshot {
    range: ScanRange,
    /// The last key the iterator passed; writes at or before it are not recorded.
    position: Option<Vec<u8>>,
    /// Value at snapshot time (`None`: absent) of keys written since, ahead of `position`.
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Snapshot {
    fn needs(&self, key: &[u8]) -> bool {
        self.range.contains(key)
            && self.position.as_deref().is_none_or(|p| key > p)
            && !self.overlay.contains_key(key)
    }
}

impl PartState {
    fn new(id: u64, tree: sled::Tree, ctx: Arc<Ctx>) -> Self {
        PartState {
            id,
            tree,
            ctx,
            gate: RwLock::new(()),
            dropped: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            scans: Mutex::new(Scans::default()),
        }
    }

    /// Takes the gate shared; `None` if the partition was dropped.
    fn enter(&self) -> Option<RwLockReadGuard<'_, ()>> {
        let gate = read(&self.gate);
        (!self.dropped.load(Ordering::Acquire)).then_some(gate)
    }

    /// Before writing `keys` (the caller holds the gate shared): records their
    /// current value in every live snapshot that has not passed them and has
    /// not recorded them yet.
    fn preserve<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> Result<()> {
        if self.live.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let scans = lock(&self.scans);
        if scans.snapshots.is_empty() {
            return Ok(());
        }
        for key in keys {
            let mut current: Option<Option<Vec<u8>>> = None;
            for snapshot in &scans.snapshots {
                let mut snapshot = lock(snapshot);
                if !snapshot.needs(key) {
                    continue;
                }
                let value = match &current {
                    Some(value) => value.clone(),
                    None => {
                        let value = self
                            .tree
                            .get(key)
                            .map_err(|e| self.ctx.error(e))?
                            .map(|v| v.to_vec());
                        current = Some(value.clone());
                        value
                    }
                };
                snapshot.overlay.insert(key.to_vec(), value);
            }
        }
        Ok(())
    }

    fn unregister(&self, snapshot: &Arc<Mutex<Snapshot>>) {
        let drop_tree = {
            let mut scans = lock(&self.scans);
            let before = scans.snapshots.len();
            scans.snapshots.retain(|s| !Arc::ptr_eq(s, snapshot));
            if scans.snapshots.len() < before {
                self.live.fetch_sub(1, Ordering::Release);
            }
            scans.take_tree_drop()
        };
        if drop_tree {
            self.drop_tree();
        }
    }

    /// Drops the tree. An error leaves an orphan tree, dropped at the next open.
    fn drop_tree(&self) {
        let _ = self.ctx.db.drop_tree(tree_name(self.id));
    }
}

/// Keeps a dropped partition's tree alive while `partition_size` walks it.
struct Pin<'a>(&'a PartState);

impl<'a> Pin<'a> {
    fn new(part: &'a PartState) -> Option<Self> {
        let _gate = part.enter()?;
        lock(&part.scans).pins += 1;
        Some(Pin(part))
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let drop_tree = {
            let mut scans = lock(&self.0.scans);
            scans.pins -= 1;
            scans.take_tree_drop()
        };
        if drop_tree {
            self.0.drop_tree();
        }
    }
}

/// Options of a [`SledBackend`]: sled's own tuning knobs. The defaults are
/// sled's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledOptions {
    /// Bytes of sled's page cache. Default 1 GiB.
    pub cache_capacity: u64,
    /// `true`: sled's `Mode::HighThroughput`; `false` (default): its
    /// `Mode::LowSpace`, which favours space over write speed.
    pub high_throughput: bool,
    /// Period in milliseconds of sled's background flush of its log; `None`
    /// turns it off. Default `Some(500)`.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity: 1 << 30,
            high_throughput: false,
            flush_every_ms: Some(500),
        }
    }
}

impl SledBackend {
    /// Opens (or creates) a sled database in the directory `path`, with
    /// sled's default settings.
    ///
    /// Drops partition trees left over by a crash during `drop_partition`.
    ///
    /// # Errors
    /// A `locked:` error if the directory is already open (in this process or
    /// another), [`Error::Io`], or a `corruption:` or `sled:` error.
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        Self::with_options(path, SledOptions::default())
    }

    /// Opens (or creates) a sled database in the directory `path` with
    /// `options`.
    ///
    /// # Errors
    /// As [`SledBackend::new`].
    pub fn with_options(path: impl AsRef<Path>, options: SledOptions) -> Result<Self> {
        std::fs::create_dir_all(path.as_ref())?;
        let path = std::fs::canonicalize(path.as_ref())?;
        let mut claim = DirClaim::new(&path)?;
        let db = open_db(&path, &claim, &options)?;
        claim.opened = true;
        let ctx = Arc::new(Ctx {
            db,
            path,
            _claim: claim,
        });
        let err = |e| ctx.error(e);
        let registry = ctx.db.open_tree(REGISTRY_TREE).map_err(err)?;

        let mut partitions = BTreeMap::new();
        let mut ids = HashSet::new();
        let mut next_id = match registry.get(NEXT_ID_KEY).map_err(err)? {
            Some(v) => decode_id(&v)
                .ok_or_else(|| registry_corruption(&ctx.path, NEXT_ID_KEY, "malformed id"))?,
            None => 0,
        };
        let stored_next_id = next_id;
        for item in registry.scan_prefix(NAME_PREFIX) {
            let (key, value) = item.map_err(err)?;
            let partition = std::str::from_utf8(&key[NAME_PREFIX.len()..])
                .ok()
                .and_then(|name| Partition::new(name).ok())
                .ok_or_else(|| registry_corruption(&ctx.path, &key, "invalid partition name"))?;
            let id = decode_id(&value)
                .ok_or_else(|| registry_corruption(&ctx.path, &key, "malformed id"))?;
            if !ids.insert(id) {
                return Err(registry_corruption(&ctx.path, &key, "id used twice"));
            }
            next_id = next_id.max(id + 1);
            let tree = ctx.db.open_tree(tree_name(id)).map_err(err)?;
            partitions.insert(partition, Arc::new(PartState::new(id, tree, ctx.clone())));
        }
        for name in ctx.db.tree_names() {
            if let Some(id) = parse_tree_name(&name) {
                next_id = next_id.max(id + 1);
                if !ids.contains(&id) {
                    ctx.db.drop_tree(&name).map_err(err)?;
                }
            }
        }
        if next_id != stored_next_id {
            registry
                .insert(NEXT_ID_KEY, &next_id.to_be_bytes()[..])
                .map_err(err)?;
        }
        Ok(SledBackend {
            registry,
            partitions: RwLock::new(partitions),
            admin: Mutex::new(()),
            ctx,
        })
    }

    /// Writes sled's log buffers to its log file and calls `sync_file_range`
    /// on it; returns when done.
    ///
    /// After `flush` returns, the writes made before it survive a process
    /// crash. They are **not** guaranteed to survive a power loss or an OS
    /// crash: sled 0.34 syncs neither file metadata nor the device cache.
    ///
    /// # Errors
    /// [`Error::Io`], or a `sled:` error.
    pub fn flush(&self) -> Result<()> {
        self.ctx.db.flush().map(drop).map_err(|e| self.ctx.error(e))
    }

    fn lookup(&self, partition: &Partition) -> Result<Arc<PartState>> {
        read(&self.partitions)
            .get(partition)
            .cloned()
            .ok_or_else(|| not_found(partition))
    }

    fn write_one(&self, partition: &Partition, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let part = self.lookup(partition)?;
        let _gate = part.enter().ok_or_else(|| not_found(partition))?;
        part.preserve([key])?;
        match value {
            Some(value) => part.tree.insert(key, value),
            None => part.tree.remove(key),
        }
        .map_err(|e| self.ctx.error(e))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl StorageBackend for SledBackend {
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        limits::check_key(key)?;
        let part = self.lookup(partition)?;
        let _gate = part.enter().ok_or_else(|| not_found(partition))?;
        let value = part.tree.get(key).map_err(|e| self.ctx.error(e))?;
        Ok(value.map(|v| v.to_vec()))
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
        let part = self.lookup(partition)?;
        let range = ScanRange::new(start_key, end_key);
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let snapshot = Arc::new(Mutex::new(Snapshot {
            range: range.clone(),
            position: None,
            overlay: BTreeMap::new(),
        }));
        {
            // Exclusive: no write is between recording and applying.
            let _gate = write(&part.gate);
            if part.dropped.load(Ordering::Acquire) {
                return Err(not_found(partition));
            }
            lock(&part.scans).snapshots.push(snapshot.clone());
            part.live.fetch_add(1, Ordering::Release);
        }
        let tree = part
            .tree
            .range::<&[u8], _>((range.start_bound(), range.end_bound()));
        Ok(Box::new(Fused::new(SledScan {
            part,
            snapshot,
            range,
            tree: Some(tree),
            peeked: None,
            registered: true,
        })))
    }

    async fn batch(&self, operations: Vec<Operation>) -> Result<()> {
        limits::check_batch(&operations)?;
        if operations.is_empty() {
            return Ok(());
        }
        // The distinct partitions, in id order (gates are taken in that order).
        let resolved: Vec<Arc<PartState>> = {
            let partitions = read(&self.partitions);
            operations
                .iter()
                .map(|op| {
                    partitions
                        .get(op.partition())
                        .cloned()
                        .ok_or_else(|| not_found(op.partition()))
                })
                .collect::<Result<_>>()?
        };
        let mut parts: Vec<Arc<PartState>> = resolved.clone();
        parts.sort_by_key(|p| p.id);
        parts.dedup_by_key(|p| p.id);
        let slots: Vec<usize> = resolved
            .iter()
            .map(|r| parts.partition_point(|p| p.id < r.id))
            .collect();
        drop(resolved);

        let mut gates = Vec::with_capacity(parts.len());
        for part in &parts {
            match part.enter() {
                Some(gate) => gates.push(gate),
                None => {
                    let op = operations
                        .iter()
                        .zip(&slots)
                        .find(|(_, &slot)| parts[slot].id == part.id)
                        .map(|(op, _)| op.partition());
                    return Err(not_found(op.unwrap_or_else(|| operations[0].partition())));
                }
            }
        }
        for (slot, part) in parts.iter().enumerate() {
            if part.live.load(Ordering::Acquire) > 0 {
                part.preserve(
                    operations
                        .iter()
                        .zip(&slots)
                        .filter(|(_, &s)| s == slot)
                        .map(|(op, _)| op.key()),
                )?;
            }
        }
        let trees: Vec<sled::Tree> = parts.iter().map(|p| p.tree.clone()).collect();
        let result: TransactionResult<(), ()> =
            trees
                .as_slice()
                .transaction(|views: &Vec<TransactionalTree>| {
                    for (op, &slot) in operations.iter().zip(&slots) {
                        let view = &views[slot];
                        match op {
                            Operation::Put { key, value, .. } => {
                                view.insert(key.as_slice(), value.as_slice())?;
                            }
                            Operation::Delete { key, .. } => {
                                view.remove(key.as_slice())?;
                            }
                        }
                    }
                    Ok::<_, ConflictableTransactionError<()>>(())
                });
        drop(gates);
        result.map_err(|e| match e {
            TransactionError::Storage(e) => self.ctx.error(e),
            TransactionError::Abort(()) => BackendErrorKind::Sled.error("transaction aborted"),
        })
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        if read(&self.partitions).contains_key(partition) {
            return Ok(());
        }
        let _admin = lock(&self.admin);
        if read(&self.partitions).contains_key(partition) {
            return Ok(());
        }
        let key = name_key(partition);
        let path = &self.ctx.path;
        let id = self
            .registry
            .transaction(|tx| {
                let next = match tx.get(NEXT_ID_KEY)? {
                    Some(v) => match decode_id(&v) {
                        Some(id) => id,
                        None => return Err(ConflictableTransactionError::Abort(())),
                    },
                    None => 0,
                };
                tx.insert(NEXT_ID_KEY, &(next + 1).to_be_bytes()[..])?;
                tx.insert(key.as_slice(), &next.to_be_bytes()[..])?;
                Ok(next)
            })
            .map_err(|e| match e {
                TransactionError::Abort(()) => {
                    registry_corruption(path, NEXT_ID_KEY, "malformed id")
                }
                TransactionError::Storage(e) => self.ctx.error(e),
            })?;
        let tree = match self.ctx.db.open_tree(tree_name(id)) {
            Ok(tree) => tree,
            Err(e) => {
                let _ = self.registry.remove(&key);
                return Err(self.ctx.error(e));
            }
        };
        write(&self.partitions).insert(
            partition.clone(),
            Arc::new(PartState::new(id, tree, self.ctx.clone())),
        );
        Ok(())
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(read(&self.partitions).contains_key(partition))
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        Ok(read(&self.partitions).keys().cloned().collect())
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let _admin = lock(&self.admin);
        let part = self.lookup(partition)?;
        self.registry
            .remove(name_key(partition))
            .map_err(|e| self.ctx.error(e))?;
        write(&self.partitions).remove(partition);
        let drop_tree = {
            // Exclusive: waits for writes in flight; later ones see `dropped`.
            let _gate = write(&part.gate);
            part.dropped.store(true, Ordering::Release);
            let mut scans = lock(&part.scans);
            scans.dropped = true;
            scans.take_tree_drop()
        };
        if drop_tree {
            part.drop_tree();
        }
        Ok(())
    }

    async fn partition_size(&self, partition: &Partition) -> Result<u64> {
        let part = self.lookup(partition)?;
        let _pin = Pin::new(&part).ok_or_else(|| not_found(partition))?;
        let mut total = 0u64;
        for item in part.tree.iter() {
            let (k, v) = item.map_err(|e| self.ctx.error(e))?;
            total += (k.len() + v.len()) as u64;
        }
        Ok(total)
    }

    async fn compact(&self, partition: &Partition) -> Result<()> {
        // sled compacts its log in the background; there is nothing to trigger.
        self.lookup(partition).map(drop)
    }
}

/// A snapshot scan: the live tree merged with the snapshot's overlay.
struct SledScan {
    snapshot: Arc<Mutex<Snapshot>>,
    range: ScanRange,
    /// `None` once the tree has no more keys in the range.
    tree: Option<sled::Iter>,
    /// The next entry of the tree, not yet merged.
    peeked: Option<(IVec, IVec)>,
    registered: bool,
    // Last: may hold the last handles on sled.
    part: Arc<PartState>,
}

impl SledScan {
    fn finish(&mut self) {
        self.tree = None;
        self.peeked = None;
        if std::mem::take(&mut self.registered) {
            self.part.unregister(&self.snapshot);
        }
    }

    fn step(&mut self) -> Option<Result<KvPair>> {
        if !self.registered {
            return None;
        }
        loop {
            if self.peeked.is_none() {
                if let Some(tree) = &mut self.tree {
                    match tree.next() {
                        Some(Ok((k, v))) if self.range.before_end(&k) => self.peeked = Some((k, v)),
                        Some(Ok(_)) | None => self.tree = None,
                        Some(Err(e)) => {
                            let err = self.part.ctx.error(e);
                            self.finish();
                            return Some(Err(err));
                        }
                    }
                }
            }
            let next = {
                let mut guard = lock(&self.snapshot);
                let snapshot = &mut *guard;
                let after = snapshot
                    .position
                    .as_deref()
                    .map_or(Bound::Unbounded, Bound::Excluded);
                let from_overlay = snapshot
                    .overlay
                    .range::<[u8], _>((after, Bound::Unbounded))
                    .next()
                    .map(|(k, _)| k.clone());
                let from_tree = self.peeked.as_ref().map(|(k, _)| &k[..]);
                match (from_overlay, from_tree) {
                    (None, None) => Merge::End,
                    (Some(key), t) if t.is_none_or(|t| key.as_slice() <= t) => {
                        let value = snapshot.overlay.remove(&key).flatten();
                        set_position(&mut snapshot.position, &key);
                        Merge::Overlay {
                            shadows_tree: t == Some(key.as_slice()),
                            key,
                            value,
                        }
                    }
                    (_, Some(t)) => {
                        set_position(&mut snapshot.position, t);
                        Merge::Tree
                    }
                    (Some(_), None) => unreachable!("covered by the guard above"),
                }
            };
            match next {
                Merge::End => {
                    self.finish();
                    return None;
                }
                Merge::Overlay {
                    key,
                    value,
                    shadows_tree,
                } => {
                    if shadows_tree {
                        self.peeked = None;
                    }
                    if let Some(value) = value {
                        return Some(Ok((key, value)));
                    }
                    // Absent at snapshot time: skip.
                }
                Merge::Tree => {
                    let (k, v) = self.peeked.take()?;
                    return Some(Ok((k.to_vec(), v.to_vec())));
                }
            }
        }
    }
}

/// What the next merge step yields.
enum Merge {
    /// Nothing left.
    End,
    /// The overlay's entry for `key` (`None`: skip); it may shadow the tree's.
    Overlay {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        shadows_tree: bool,
    },
    /// The peeked tree entry.
    Tree,
}

fn set_position(position: &mut Option<Vec<u8>>, key: &[u8]) {
    let p = position.get_or_insert_with(Vec::new);
    p.clear();
    p.extend_from_slice(key);
}

impl Iterator for SledScan {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step()
    }
}

impl Drop for SledScan {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    fn part(name: &str) -> Partition {
        Partition::new(name).unwrap()
    }

    fn kv(k: &[u8], v: &[u8]) -> KvPair {
        (k.to_vec(), v.to_vec())
    }

    async fn scan_all(
        b: &SledBackend,
        p: &Partition,
        s: Option<&[u8]>,
        e: Option<&[u8]>,
    ) -> Vec<KvPair> {
        b.scan(p, s, e)
            .await
            .unwrap()
            .collect::<Result<_>>()
            .unwrap()
    }

    async fn fresh(names: &[&str]) -> (tempfile::TempDir, SledBackend, Vec<Partition>) {
        let dir = tempfile::tempdir().unwrap();
        let b = SledBackend::new(dir.path()).unwrap();
        let mut ps = Vec::new();
        for n in names {
            let p = part(n);
            b.create_partition(&p).await.unwrap();
            ps.push(p);
        }
        (dir, b, ps)
    }

    fn tree_names(b: &SledBackend) -> Vec<String> {
        let mut names: Vec<String> = b
            .ctx
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with(TREE_PREFIX))
            .collect();
        names.sort();
        names
    }

    fn id_of(b: &SledBackend, p: &Partition) -> u64 {
        b.lookup(p).unwrap().id
    }

    #[track_caller]
    fn assert_not_found<T: fmt::Debug>(r: Result<T>, p: &Partition) {
        match r {
            Err(Error::PartitionNotFound(name)) if name == p.name() => {}
            other => panic!("expected PartitionNotFound({p}), got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_kind<T: fmt::Debug>(r: Result<T>, kind: BackendErrorKind) {
        match &r {
            Err(e) if e.backend_kind() == Some(kind) => {}
            other => panic!("expected a `{}` error, got {other:?}", kind.prefix()),
        }
    }

    #[test]
    fn tree_names_round_trip() {
        assert_eq!(parse_tree_name(tree_name(0).as_bytes()), Some(0));
        assert_eq!(
            parse_tree_name(tree_name(u64::MAX).as_bytes()),
            Some(u64::MAX)
        );
        for bad in [
            &b"p:"[..],
            b"p:007",
            b"p:-1",
            b"p:1x",
            b"q:1",
            b"kalamdb:registry",
            b"__sled__default",
        ] {
            assert_eq!(
                parse_tree_name(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn sled_errors_map_to_stable_kinds() {
        let path = Path::new("/x");
        let io = convert(path, sled::Error::Io(std::io::Error::other("disk")));
        assert!(matches!(io, Error::Io(_)));
        let c = convert(path, sled::Error::Corruption { at: None, bt: () });
        assert_eq!(c.backend_kind(), Some(BackendErrorKind::Corruption), "{c}");
        let u = convert(path, sled::Error::Unsupported("nope".into()));
        assert_eq!(u.backend_kind(), Some(BackendErrorKind::Sled), "{u}");
        let bug = convert(path, sled::Error::ReportableBug("bug".into()));
        assert_eq!(bug.backend_kind(), Some(BackendErrorKind::Sled));
        let gone = convert(path, sled::Error::CollectionNotFound(IVec::from(&b"t"[..])));
        assert_eq!(gone.backend_kind(), Some(BackendErrorKind::Sled));
    }

    #[tokio::test]
    async fn crud_and_missing_partitions() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let p = &ps[0];
        b.put(p, b"k", b"v").await.unwrap();
        b.put(p, b"", b"empty key").await.unwrap();
        b.put(p, b"e", b"").await.unwrap();
        assert_eq!(b.get(p, b"k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(b.get(p, b"").await.unwrap(), Some(b"empty key".to_vec()));
        assert_eq!(b.get(p, b"e").await.unwrap(), Some(Vec::new()));
        assert_eq!(b.get(p, b"nope").await.unwrap(), None);
        b.delete(p, b"k").await.unwrap();
        b.delete(p, b"never").await.unwrap();
        assert_eq!(b.get(p, b"k").await.unwrap(), None);

        let m = part("missing");
        assert_not_found(b.get(&m, b"k").await, &m);
        assert_not_found(b.put(&m, b"k", b"v").await, &m);
        assert_not_found(b.delete(&m, b"k").await, &m);
        assert_not_found(b.scan(&m, None, None).await.map(drop), &m);
        assert_not_found(b.scan(&m, Some(b"b"), Some(b"a")).await.map(drop), &m);
        assert_not_found(
            b.batch(vec![Operation::delete(m.clone(), b"k".to_vec())])
                .await,
            &m,
        );
        assert_not_found(b.drop_partition(&m).await, &m);
        assert_not_found(b.partition_size(&m).await, &m);
        assert_not_found(b.compact(&m).await, &m);
        assert!(!b.partition_exists(&m).await.unwrap());

        // Limits come first, even on a missing partition.
        let long = vec![0u8; limits::MAX_KEY_LEN + 1];
        assert_kind(b.get(&m, &long).await, BackendErrorKind::Limit);
        assert_kind(b.put(&m, &long, b"v").await, BackendErrorKind::Limit);
        assert_kind(b.delete(&m, &long).await, BackendErrorKind::Limit);
        assert_kind(
            b.batch(vec![Operation::put(m.clone(), long.clone(), vec![])])
                .await,
            BackendErrorKind::Limit,
        );
        assert_kind(b.put(p, &long, b"v").await, BackendErrorKind::Limit);
        assert_eq!(b.get(p, &long[..limits::MAX_KEY_LEN]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn partitions_list_sorted_and_recreate_is_empty_with_a_new_id() {
        let names = [
            "zeta", "Alpha", "sys_meta", "default", "_under", "a1", "a", "ünï", "名前", "Z9",
        ];
        let (_dir, b, _) = fresh(&names).await;
        let mut expected: Vec<Partition> = names.iter().map(|n| part(n)).collect();
        expected.sort_by(|x, y| x.name().cmp(y.name()));
        assert_eq!(b.list_partitions().await.unwrap(), expected);

        let p = part("default");
        let old_id = id_of(&b, &p);
        b.put(&p, b"k", b"old").await.unwrap();
        b.create_partition(&p).await.unwrap(); // idempotent, keeps data
        assert_eq!(b.get(&p, b"k").await.unwrap(), Some(b"old".to_vec()));
        b.drop_partition(&p).await.unwrap();
        assert!(!b.partition_exists(&p).await.unwrap());
        assert!(
            !tree_names(&b).contains(&tree_name(old_id)),
            "tree dropped at once without scans"
        );
        assert_not_found(b.get(&p, b"k").await, &p);
        assert_not_found(b.drop_partition(&p).await, &p);
        b.create_partition(&p).await.unwrap();
        assert!(id_of(&b, &p) > old_id, "ids are never reused");
        assert_eq!(b.get(&p, b"k").await.unwrap(), None);
        assert_eq!(scan_all(&b, &p, None, None).await, vec![]);
        assert_eq!(tree_names(&b).len(), names.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_create_and_drop_are_serialized() {
        let (_dir, b, _) = fresh(&[]).await;
        let b = Arc::new(b);
        for round in 0..4 {
            let p = part(&format!("raced_{round}"));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (b, p) = (b.clone(), p.clone());
                    tokio::spawn(async move { b.create_partition(&p).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
        assert_eq!(b.list_partitions().await.unwrap().len(), 4);
        let ids: HashSet<u64> = b
            .list_partitions()
            .await
            .unwrap()
            .iter()
            .map(|p| id_of(&b, p))
            .collect();
        assert_eq!(ids, (0..4).collect());
        assert_eq!(tree_names(&b).len(), 4);

        // Racing drops: exactly one succeeds.
        let p = part("raced_0");
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (b, p) = (b.clone(), p.clone());
                tokio::spawn(async move { b.drop_partition(&p).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(Error::PartitionNotFound(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(ok, 1);
        assert_eq!(tree_names(&b).len(), 3);
    }

    #[tokio::test]
    async fn batches_are_atomic_ordered_and_all_or_nothing() {
        let (_dir, b, ps) = fresh(&["x", "y", "z"]).await;
        b.batch(Vec::new()).await.unwrap();
        b.put(&ps[0], b"pre", b"existing").await.unwrap();
        b.batch(vec![
            Operation::put(ps[0].clone(), b"a".to_vec(), b"1".to_vec()),
            Operation::put(ps[1].clone(), b"a".to_vec(), b"y".to_vec()),
            Operation::put(ps[0].clone(), b"a".to_vec(), b"2".to_vec()),
            Operation::put(ps[0].clone(), b"b".to_vec(), b"1".to_vec()),
            Operation::delete(ps[0].clone(), b"b".to_vec()),
            Operation::delete(ps[2].clone(), b"c".to_vec()),
            Operation::put(ps[2].clone(), b"c".to_vec(), b"3".to_vec()),
            Operation::delete(ps[0].clone(), b"pre".to_vec()),
        ])
        .await
        .unwrap();
        assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![kv(b"a", b"2")]);
        assert_eq!(scan_all(&b, &ps[1], None, None).await, vec![kv(b"a", b"y")]);
        assert_eq!(scan_all(&b, &ps[2], None, None).await, vec![kv(b"c", b"3")]);

        // A missing partition anywhere: nothing applies; the error names it.
        let m = part("missing");
        let r = b
            .batch(vec![
                Operation::put(ps[0].clone(), b"new".to_vec(), b"v".to_vec()),
                Operation::put(m.clone(), b"k".to_vec(), b"v".to_vec()),
                Operation::delete(ps[1].clone(), b"a".to_vec()),
            ])
            .await;
        assert_not_found(r, &m);
        assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![kv(b"a", b"2")]);
        assert_eq!(scan_all(&b, &ps[1], None, None).await, vec![kv(b"a", b"y")]);

        // A partition dropped between the lookup and the write: also nothing.
        let dropped = b.lookup(&ps[2]).unwrap();
        b.drop_partition(&ps[2]).await.unwrap();
        assert!(dropped.enter().is_none());
        assert_not_found(
            b.batch(vec![
                Operation::put(ps[0].clone(), b"new".to_vec(), b"v".to_vec()),
                Operation::put(ps[2].clone(), b"k".to_vec(), b"v".to_vec()),
            ])
            .await,
            &ps[2],
        );
        assert_eq!(b.get(&ps[0], b"new").await.unwrap(), None);
    }

    #[tokio::test]
    async fn scan_bounds() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let keys: [&[u8]; 7] = [b"", b"b", b"bb", b"c", b"d\x00", b"e", b"e\xff"];
        for k in keys {
            b.put(&ps[0], k, k).await.unwrap();
        }
        let points: [&[u8]; 10] = [
            b"", b"a", b"b", b"b\x00", b"bb", b"c", b"ca", b"d", b"e\xff", b"f",
        ];
        let mut bounds: Vec<Option<&[u8]>> = vec![None];
        bounds.extend(points.iter().map(|p| Some(*p)));
        for start in &bounds {
            for end in &bounds {
                let expected: Vec<KvPair> = keys
                    .iter()
                    .filter(|k| start.is_none_or(|s| **k >= s) && end.is_none_or(|e| **k < e))
                    .map(|k| kv(k, k))
                    .collect();
                assert_eq!(
                    scan_all(&b, &ps[0], *start, *end).await,
                    expected,
                    "{start:?}..{end:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn scan_is_a_snapshot_of_puts_overwrites_deletes_and_batches() {
        let (_dir, b, ps) = fresh(&["p", "q"]).await;
        let p = &ps[0];
        let k = |i: u32| i.to_be_bytes().to_vec();
        for i in (0..100u32).step_by(2) {
            b.put(p, &k(i), b"old").await.unwrap();
        }
        let mut iter = b.scan(p, None, None).await.unwrap();
        let mut got: Vec<KvPair> = iter.by_ref().take(10).collect::<Result<_>>().unwrap();
        // The cursor is at 18: write before it, at it, and after it.
        for i in 0..100u32 {
            match i % 5 {
                0 => b.put(p, &k(i), b"new").await.unwrap(),
                1 => b.put(p, &k(i), b"inserted").await.unwrap(),
                2 => b.delete(p, &k(i)).await.unwrap(),
                3 => b
                    .batch(vec![
                        Operation::put(p.clone(), k(i), b"batched".to_vec()),
                        Operation::put(ps[1].clone(), k(i), b"other".to_vec()),
                    ])
                    .await
                    .unwrap(),
                _ => b
                    .batch(vec![
                        Operation::put(p.clone(), k(i), b"batched".to_vec()),
                        Operation::delete(p.clone(), k(i)),
                    ])
                    .await
                    .unwrap(),
            }
        }
        // A second scan, opened now, sees the new state while the first runs.
        let second = scan_all(&b, p, None, None).await;
        assert_eq!(second.len(), 60);
        assert!(second.contains(&kv(&k(1), b"inserted")));
        got.extend(iter.map(|r| r.unwrap()));
        let expected: Vec<KvPair> = (0..100u32).step_by(2).map(|i| kv(&k(i), b"old")).collect();
        assert_eq!(got, expected);
        assert_eq!(
            b.lookup(p).unwrap().live.load(Ordering::SeqCst),
            0,
            "unregistered when exhausted"
        );
    }

    #[tokio::test]
    async fn overlay_only_keeps_keys_ahead_of_the_cursor() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let p = &ps[0];
        for i in 0..10u8 {
            b.put(p, &[i], b"old").await.unwrap();
        }
        let mut iter = b.scan(p, Some(&[2]), Some(&[8])).await.unwrap();
        assert_eq!(iter.next().unwrap().unwrap(), kv(&[2], b"old"));
        assert_eq!(iter.next().unwrap().unwrap(), kv(&[3], b"old"));
        let state = b.lookup(p).unwrap();
        let overlay_len = || {
            let scans = lock(&state.scans);
            let len = lock(&scans.snapshots[0]).overlay.len();
            len
        };
        // Outside the range, or already passed: not recorded.
        for i in [0u8, 1, 2, 3, 8, 9] {
            b.put(p, &[i], b"new").await.unwrap();
        }
        assert_eq!(overlay_len(), 0);
        b.put(p, &[5], b"new").await.unwrap();
        b.put(p, &[5], b"newer").await.unwrap();
        b.delete(p, &[6]).await.unwrap();
        assert_eq!(overlay_len(), 2);
        assert_eq!(iter.next().unwrap().unwrap(), kv(&[4], b"old"));
        assert_eq!(iter.next().unwrap().unwrap(), kv(&[5], b"old"));
        assert_eq!(overlay_len(), 1, "passed entries are freed");
        drop(iter);
        assert_eq!(state.live.load(Ordering::SeqCst), 0, "unregistered on drop");
        assert!(lock(&state.scans).snapshots.is_empty());
    }

    #[tokio::test]
    async fn scan_survives_partition_drop_and_the_tree_goes_with_the_last_scan() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let p = &ps[0];
        let expected: Vec<KvPair> = (0..500u32)
            .map(|i| kv(&i.to_be_bytes(), &[7; 100]))
            .collect();
        for (k, v) in &expected {
            b.put(p, k, v).await.unwrap();
        }
        let old = tree_name(id_of(&b, p));
        let mut first = b.scan(p, None, None).await.unwrap();
        let mut second = b.scan(p, Some(&100u32.to_be_bytes()), None).await.unwrap();
        let mut got = vec![first.next().unwrap().unwrap()];
        assert_eq!(second.next().unwrap().unwrap(), expected[100]);
        b.drop_partition(p).await.unwrap();
        assert!(!b.partition_exists(p).await.unwrap());
        assert_not_found(b.put(p, b"k", b"v").await, p);
        assert!(tree_names(&b).contains(&old), "kept while scans are alive");
        b.create_partition(p).await.unwrap();
        b.put(p, &3u32.to_be_bytes(), b"new").await.unwrap();
        got.extend(first.by_ref().map(|r| r.unwrap()));
        assert_eq!(got, expected);
        assert!(
            tree_names(&b).contains(&old),
            "the second scan still holds it"
        );
        assert_eq!(second.next().unwrap().unwrap(), expected[101]);
        drop(second);
        assert!(!tree_names(&b).contains(&old), "dropped with the last scan");
        drop(first);
        assert_eq!(tree_names(&b), vec![tree_name(id_of(&b, p))]);
        assert_eq!(
            scan_all(&b, p, None, None).await,
            vec![kv(&3u32.to_be_bytes(), b"new")]
        );
    }

    #[tokio::test]
    async fn partition_size_pins_the_tree_and_compact_is_a_no_op() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let p = &ps[0];
        assert_eq!(b.partition_size(p).await.unwrap(), 0);
        for i in 0..10u8 {
            b.put(p, &[i], &[0; 99]).await.unwrap();
        }
        assert_eq!(b.partition_size(p).await.unwrap(), 1000);
        b.compact(p).await.unwrap();
        assert_eq!(scan_all(&b, p, None, None).await.len(), 10);
        let state = b.lookup(p).unwrap();
        let pin = Pin::new(&state).unwrap();
        b.drop_partition(p).await.unwrap();
        assert!(tree_names(&b).contains(&tree_name(state.id)));
        drop(pin);
        assert!(tree_names(&b).is_empty());
        assert!(Pin::new(&state).is_none());
    }

    #[test]
    fn scan_survives_backend_drop_which_holds_the_lock_until_the_iterator_goes() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let p = part("p");
        let expected: Vec<KvPair> = (0..500u32).map(|i| kv(&i.to_be_bytes(), b"v")).collect();
        let mut iter = rt.block_on(async {
            let b = SledBackend::new(dir.path()).unwrap();
            b.create_partition(&p).await.unwrap();
            for (k, v) in &expected {
                b.put(&p, k, v).await.unwrap();
            }
            let iter = b.scan(&p, None, None).await.unwrap();
            b.put(&p, b"later", b"x").await.unwrap();
            b.drop_partition(&p).await.unwrap();
            iter
        });
        let mut got = vec![iter.next().unwrap().unwrap()];
        assert_kind(SledBackend::new(dir.path()), BackendErrorKind::Locked);
        got.extend(iter.by_ref().take(100).map(|r| r.unwrap()));
        drop(iter);
        assert_eq!(got, expected[..101]);
        // The tree was dropped with the scan; the registry has no partition.
        let b = SledBackend::new(dir.path()).unwrap();
        assert!(tree_names(&b).is_empty());
        assert!(rt.block_on(b.list_partitions()).unwrap().is_empty());
    }

    #[test]
    fn second_open_is_locked_and_reopen_after_drop_works() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let p = part("p");
        let b = SledBackend::new(dir.path()).unwrap();
        rt.block_on(b.create_partition(&p)).unwrap();
        rt.block_on(b.put(&p, b"k", b"v")).unwrap();
        let err = SledBackend::new(dir.path()).unwrap_err();
        assert_eq!(err.backend_kind(), Some(BackendErrorKind::Locked), "{err}");
        assert!(
            err.to_string().starts_with("Backend error: locked: "),
            "{err}"
        );
        rt.block_on(b.put(&p, b"k2", b"v2")).unwrap();
        drop(b);
        for _ in 0..3 {
            let b = SledBackend::new(dir.path()).unwrap();
            assert_eq!(rt.block_on(b.get(&p, b"k2")).unwrap(), Some(b"v2".to_vec()));
        }
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ps: Vec<Partition> = ["kept", "default", "dropped", "recreated"]
            .map(part)
            .to_vec();
        let recreated_id = rt.block_on(async {
            let b = SledBackend::new(dir.path()).unwrap();
            for p in &ps {
                b.create_partition(p).await.unwrap();
            }
            b.put(&ps[0], b"a", b"1").await.unwrap();
            b.put(&ps[0], b"b", b"2").await.unwrap();
            b.delete(&ps[0], b"a").await.unwrap();
            b.batch(vec![
                Operation::put(ps[1].clone(), b"d".to_vec(), b"x".to_vec()),
                Operation::put(ps[3].clone(), b"old".to_vec(), b"x".to_vec()),
            ])
            .await
            .unwrap();
            b.drop_partition(&ps[2]).await.unwrap();
            b.drop_partition(&ps[3]).await.unwrap();
            b.create_partition(&ps[3]).await.unwrap();
            b.put(&ps[3], b"new", b"y").await.unwrap();
            id_of(&b, &ps[3])
        });
        for round in 0..2 {
            let b = SledBackend::new(dir.path()).unwrap();
            rt.block_on(async {
                let mut expected = vec![ps[0].clone(), ps[1].clone(), ps[3].clone()];
                expected.extend((0..round).map(|r| part(&format!("fresh{r}"))));
                expected.sort();
                assert_eq!(b.list_partitions().await.unwrap(), expected);
                assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![kv(b"b", b"2")]);
                assert_eq!(scan_all(&b, &ps[1], None, None).await, vec![kv(b"d", b"x")]);
                assert_eq!(
                    scan_all(&b, &ps[3], None, None).await,
                    vec![kv(b"new", b"y")]
                );
                assert_eq!(id_of(&b, &ps[3]), recreated_id);
                assert_not_found(b.get(&ps[2], b"k").await, &ps[2]);
                // New ids continue after every id handed out before.
                let fresh = part(&format!("fresh{round}"));
                b.create_partition(&fresh).await.unwrap();
                assert_eq!(id_of(&b, &fresh), 5 + round);
            });
        }
    }

    #[test]
    fn open_drops_orphan_trees_and_never_reuses_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (p, q) = (part("p"), part("q"));
        {
            let b = SledBackend::new(dir.path()).unwrap();
            rt.block_on(b.create_partition(&p)).unwrap();
            rt.block_on(b.create_partition(&q)).unwrap();
            rt.block_on(b.put(&p, b"k", b"v")).unwrap();
            // A crash between removing the registry entry and dropping the tree…
            b.registry.remove(name_key(&p)).unwrap();
            // …and a tree from a crash during creation.
            b.ctx
                .db
                .open_tree(tree_name(41))
                .unwrap()
                .insert(b"x", b"y")
                .unwrap();
        }
        let b = SledBackend::new(dir.path()).unwrap();
        assert_eq!(rt.block_on(b.list_partitions()).unwrap(), vec![q.clone()]);
        assert_eq!(tree_names(&b), vec![tree_name(1)]);
        rt.block_on(b.create_partition(&p)).unwrap();
        assert_eq!(id_of(&b, &p), 42);
        assert_eq!(rt.block_on(b.get(&p, b"k")).unwrap(), None);
    }

    #[test]
    fn corrupt_registry_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = SledBackend::new(dir.path()).unwrap();
            b.registry
                .insert(b"name:bad-name", &0u64.to_be_bytes()[..])
                .unwrap();
        }
        let err = SledBackend::new(dir.path()).unwrap_err();
        assert_eq!(
            err.backend_kind(),
            Some(BackendErrorKind::Corruption),
            "{err}"
        );
        {
            // Plain sled, which may wait for the previous handle's threads.
            let db = (0..400)
                .find_map(|_| {
                    let db = sled::open(dir.path()).ok();
                    if db.is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    db
                })
                .unwrap();
            let registry = db.open_tree(REGISTRY_TREE).unwrap();
            registry.remove(b"name:bad-name").unwrap();
            registry.insert(b"name:ok", &b"short"[..]).unwrap();
        }
        let err = SledBackend::new(dir.path()).unwrap_err();
        assert_eq!(
            err.backend_kind(),
            Some(BackendErrorKind::Corruption),
            "{err}"
        );
    }

    #[tokio::test]
    async fn scan_streams_without_reading_the_partition() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let value = vec![0x5au8; 1024];
        for chunk in (0..20_000u32).collect::<Vec<_>>().chunks(500) {
            let ops = chunk
                .iter()
                .map(|i| Operation::put(ps[0].clone(), i.to_be_bytes().to_vec(), value.clone()))
                .collect();
            b.batch(ops).await.unwrap();
        }
        let ten: Vec<KvPair> = b
            .scan(&ps[0], Some(&100u32.to_be_bytes()), None)
            .await
            .unwrap()
            .take(10)
            .collect::<Result<_>>()
            .unwrap();
        let expected: Vec<KvPair> = (100..110u32)
            .map(|i| kv(&i.to_be_bytes(), &value))
            .collect();
        assert_eq!(ten, expected);
    }

    /// Writers keep the sum of all values constant with batches (transfers,
    /// and moves of a balance to a new key); concurrent scans must always see
    /// the exact total.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_scans_see_consistent_states() {
        const KEYS: u64 = 32;
        const TOTAL: u64 = KEYS * 100;
        let (_dir, b, ps) = fresh(&["p", "log"]).await;
        let b = Arc::new(b);
        let p = ps[0].clone();
        let ops = (0..KEYS)
            .map(|i| {
                Operation::put(
                    p.clone(),
                    i.to_be_bytes().to_vec(),
                    100u64.to_be_bytes().to_vec(),
                )
            })
            .collect();
        b.batch(ops).await.unwrap();
        let state = Arc::new(tokio::sync::Mutex::new((
            (0..KEYS)
                .map(|i| (i, 100u64))
                .collect::<BTreeMap<u64, u64>>(),
            KEYS,
        )));
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let (b, p, log, state) = (b.clone(), p.clone(), ps[1].clone(), state.clone());
            tasks.push(tokio::spawn(async move {
                let mut seed = w + 1;
                let mut rand = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                for _ in 0..300 {
                    let mut guard = state.lock().await;
                    let (balances, next_key) = &mut *guard;
                    let keys: Vec<u64> = balances.keys().copied().collect();
                    let from = keys[(rand() % keys.len() as u64) as usize];
                    let to = keys[(rand() % keys.len() as u64) as usize];
                    let ops = if rand() % 4 == 0 {
                        // Move the whole balance of `from` to a brand-new key.
                        let amount = balances.remove(&from).unwrap();
                        let new = *next_key * 7919 % 100_000;
                        *next_key += 1;
                        balances.insert(new, amount);
                        vec![
                            Operation::delete(p.clone(), from.to_be_bytes().to_vec()),
                            Operation::put(
                                p.clone(),
                                new.to_be_bytes().to_vec(),
                                amount.to_be_bytes().to_vec(),
                            ),
                            Operation::put(
                                log.clone(),
                                w.to_be_bytes().to_vec(),
                                new.to_be_bytes().to_vec(),
                            ),
                        ]
                    } else {
                        let amount = rand() % (balances[&from] + 1);
                        *balances.get_mut(&from).unwrap() -= amount;
                        *balances.get_mut(&to).unwrap() += amount;
                        vec![
                            Operation::put(
                                p.clone(),
                                from.to_be_bytes().to_vec(),
                                balances[&from].to_be_bytes().to_vec(),
                            ),
                            Operation::put(
                                p.clone(),
                                to.to_be_bytes().to_vec(),
                                balances[&to].to_be_bytes().to_vec(),
                            ),
                        ]
                    };
                    b.batch(ops).await.unwrap();
                    drop(guard);
                    tokio::task::yield_now().await;
                }
            }));
        }
        for r in 0..4u64 {
            let (b, p) = (b.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..150u64 {
                    let mut iter = b.scan(&p, None, None).await.unwrap();
                    if (round + r) % 5 == 0 {
                        // Abandon some scans half-way.
                        let _ = iter.nth(KEYS as usize / 2);
                        continue;
                    }
                    let mut sum = 0u64;
                    let mut last: Option<Vec<u8>> = None;
                    for item in iter {
                        let (k, v) = item.unwrap();
                        assert!(last.as_ref().is_none_or(|l| *l < k), "keys ascend");
                        sum += u64::from_be_bytes(v.try_into().unwrap());
                        last = Some(k);
                    }
                    assert_eq!(sum, TOTAL, "a scan saw a state that never existed");
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let final_state = state.lock().await;
        let got: BTreeMap<u64, u64> = scan_all(&b, &p, None, None)
            .await
            .into_iter()
            .map(|(k, v)| {
                (
                    u64::from_be_bytes(k.try_into().unwrap()),
                    u64::from_be_bytes(v.try_into().unwrap()),
                )
            })
            .collect();
        assert_eq!(got, final_state.0);
        assert_eq!(b.lookup(&p).unwrap().live.load(Ordering::SeqCst), 0);
    }

    /// Drops and re-creates a partition while tasks write to and scan it:
    /// operations either succeed or say `PartitionNotFound`, scans return
    /// ascending keys, and no tree outlives its partition and scans.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn drop_and_recreate_race_with_writers_and_scans() {
        let (_dir, b, ps) = fresh(&["p"]).await;
        let b = Arc::new(b);
        let p = ps[0].clone();
        let mut tasks = Vec::new();
        for w in 0..3u32 {
            let (b, p) = (b.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..400u32 {
                    let key = [w.to_be_bytes(), i.to_be_bytes()].concat();
                    let r = if i % 2 == 0 {
                        b.put(&p, &key, b"v").await
                    } else {
                        b.batch(vec![Operation::put(p.clone(), key, b"b".to_vec())])
                            .await
                    };
                    match r {
                        Ok(()) | Err(Error::PartitionNotFound(_)) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }));
        }
        for _ in 0..2 {
            let (b, p) = (b.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    match b.scan(&p, None, None).await {
                        Ok(iter) => {
                            let keys: Vec<Vec<u8>> = iter.map(|r| r.unwrap().0).collect();
                            assert!(keys.windows(2).all(|w| w[0] < w[1]));
                        }
                        Err(Error::PartitionNotFound(_)) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                    match b.partition_size(&p).await {
                        Ok(_) | Err(Error::PartitionNotFound(_)) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }));
        }
        {
            let (b, p) = (b.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    b.drop_partition(&p).await.unwrap();
                    tokio::task::yield_now().await;
                    b.create_partition(&p).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(tree_names(&b), vec![tree_name(id_of(&b, &p))]);
        assert_eq!(id_of(&b, &p), 50);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Put(bool, u8, u8),
        Delete(bool, u8),
        Batch(Vec<(bool, u8, Option<u8>)>),
        OpenScan(bool, Option<u8>, Option<u8>),
        Advance(usize, u8),
        CloseScan(usize),
        Recreate(bool),
    }

    fn key(k: u8) -> Vec<u8> {
        // Includes the empty key and keys that are prefixes of others.
        match k % 4 {
            0 => vec![k / 4; (k / 4 % 3) as usize],
            _ => vec![k / 4, k % 4],
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        let k = 0u8..48;
        prop_oneof![
            4 => (any::<bool>(), k.clone(), any::<u8>()).prop_map(|(p, k, v)| Step::Put(p, k, v)),
            2 => (any::<bool>(), k.clone()).prop_map(|(p, k)| Step::Delete(p, k)),
            2 => prop::collection::vec((any::<bool>(), k.clone(), prop::option::of(any::<u8>())), 0..6).prop_map(Step::Batch),
            1 => (any::<bool>(), prop::option::of(k.clone()), prop::option::of(k)).prop_map(|(p, s, e)| Step::OpenScan(p, s, e)),
            2 => (0usize..4, 0u8..6).prop_map(|(i, n)| Step::Advance(i, n)),
            1 => (0usize..4).prop_map(Step::CloseScan),
            1 => (0u8..8).prop_map(|n| Step::Recreate(n == 0)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Random writes interleaved with several live scans, against a
        /// `BTreeMap` model: each scan returns exactly the model at its start.
        #[test]
        fn scans_match_the_model_under_interleaved_writes(steps in prop::collection::vec(step(), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let b = SledBackend::new(dir.path()).unwrap();
            let ps = [part("a"), part("b")];
            let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
            let mut scans: Vec<(ScanIterator, VecDeque<KvPair>)> = Vec::new();
            rt.block_on(async {
                for p in &ps {
                    b.create_partition(p).await.unwrap();
                }
                for step in steps {
                    match step {
                        Step::Put(p, k, v) => {
                            b.put(&ps[p as usize], &key(k), &[v]).await.unwrap();
                            model[p as usize].insert(key(k), vec![v]);
                        }
                        Step::Delete(p, k) => {
                            b.delete(&ps[p as usize], &key(k)).await.unwrap();
                            model[p as usize].remove(&key(k));
                        }
                        Step::Batch(ops) => {
                            let ops: Vec<Operation> = ops
                                .into_iter()
                                .map(|(p, k, v)| {
                                    let m = &mut model[p as usize];
                                    match v {
                                        Some(v) => {
                                            m.insert(key(k), vec![v]);
                                            Operation::put(ps[p as usize].clone(), key(k), vec![v])
                                        }
                                        None => {
                                            m.remove(&key(k));
                                            Operation::delete(ps[p as usize].clone(), key(k))
                                        }
                                    }
                                })
                                .collect();
                            b.batch(ops).await.unwrap();
                        }
                        Step::OpenScan(p, s, e) => {
                            let (s, e) = (s.map(key), e.map(key));
                            let range = ScanRange::new(s.as_deref(), e.as_deref());
                            let expected = model[p as usize]
                                .iter()
                                .filter(|(k, _)| range.contains(k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            let iter = b.scan(&ps[p as usize], s.as_deref(), e.as_deref()).await.unwrap();
                            scans.push((iter, expected));
                        }
                        Step::Advance(i, n) => {
                            if let Some((iter, expected)) = scans.get_mut(i) {
                                for _ in 0..n {
                                    let got = iter.next().map(|r| r.unwrap());
                                    assert_eq!(got, expected.pop_front());
                                }
                            }
                        }
                        Step::CloseScan(i) => {
                            if i < scans.len() {
                                drop(scans.remove(i));
                            }
                        }
                        Step::Recreate(p) => {
                            b.drop_partition(&ps[p as usize]).await.unwrap();
                            b.create_partition(&ps[p as usize]).await.unwrap();
                            model[p as usize].clear();
                        }
                    }
                }
                for (iter, expected) in scans.drain(..) {
                    let got: Vec<KvPair> = iter.map(|r| r.unwrap()).collect();
                    assert_eq!(got, Vec::from(expected));
                }
                for (p, m) in ps.iter().zip(&model) {
                    let all = scan_all(&b, p, None, None).await;
                    assert_eq!(all, m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
                }
                // Every scan is gone, so every dropped tree is gone.
                assert_eq!(tree_names(&b).len(), 2);
            });
        }
    }
}
