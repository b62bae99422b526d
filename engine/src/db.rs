//! [`Db`]: open, recover, read, write, manage partitions, close.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::batch::{encode_batch, BatchOp};
use crate::commit::{CommitState, Pending, ResolvedOp, SyncHandle};
use crate::completion::{completion, Completion};
use crate::error::{Error, Result};
use crate::flush::FlushQueue;
use crate::fs::{FileLock, Fs};
use crate::locks::{lock, read, write};
use crate::manifest::{Change, Manifest, VersionEdit};
use crate::memtable::SeqNo;
use crate::merge::{MergeIter, SnapshotIter};
use crate::options::Options;
use crate::partition::PartitionState;
use crate::recovery;
use crate::sst::Table;
use crate::table_file::{parse_table_file_name, table_file_name, TableFile};
use crate::wal::writer::{parse_wal_file_name, wal_file_name, WalWriter};

/// File name of the lock file in the database directory.
pub const LOCK_FILE: &str = "LOCK";

/// An open database: partitions of key-value pairs, a shared WAL, memtables.
///
/// Thread-safety: `Send + Sync`; share it behind an `Arc`. Reads run inline
/// on the caller's thread. Writes run inline up to the group-commit queue and
/// return a [`Completion`] to await or wait on (see [`commit`](crate::commit)).
///
/// Dropping the `Db` finishes queued work, stops and joins the committer
/// thread, then releases the directory lock. Iterators stay valid after it.
pub struct Db {
    inner: Arc<Inner>,
    committer: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Counters kept by the engine.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) writes: AtomicU64,
    pub(crate) groups: AtomicU64,
    pub(crate) wal_bytes: AtomicU64,
    pub(crate) wal_syncs: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
}

/// A snapshot of the engine's counters and shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live partitions.
    pub partitions: usize,
    /// Memtables (active and immutable) across partitions.
    pub memtables: usize,
    /// Approximate bytes in memtables.
    pub memtable_bytes: usize,
    /// Writes (batches) committed since open.
    pub writes: u64,
    /// Group commits since open (writes / groups = average group size).
    pub write_groups: u64,
    /// Bytes appended to the WAL since open.
    pub wal_bytes_written: u64,
    /// WAL syncs since open.
    pub wal_syncs: u64,
    /// Highest visible sequence number.
    pub visible_sequence: SeqNo,
    /// Table files across partitions.
    pub tables: usize,
    /// Bytes of table files across partitions.
    pub table_bytes: u64,
    /// Flushes since open.
    pub flushes: u64,
    /// Bytes written by flushes since open.
    pub flush_bytes_written: u64,
}

pub(crate) struct Inner {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) visible_seq: AtomicU64,
    partitions: RwLock<HashMap<String, Arc<PartitionState>>>,
    /// Serialises partition creation and drop.
    ddl: Mutex<()>,
    /// Serialises flushes (the flush thread and `Db::flush`).
    pub(crate) flush_lock: Mutex<()>,
    pub(crate) manifest: Manifest,
    pub(crate) flush: Mutex<FlushQueue>,
    pub(crate) flush_wake: Condvar,
    pub(crate) next_file: AtomicU64,
    /// Numbers of the WAL files on disk.
    pub(crate) wal_files: Mutex<std::collections::BTreeSet<u64>>,
    pub(crate) commit: Mutex<CommitState>,
    pub(crate) committer_wake: Condvar,
    pub(crate) wal: Mutex<WalWriter>,
    pub(crate) memory: AtomicUsize,
    pub(crate) stats: Counters,
    lock: Mutex<Option<Box<dyn FileLock>>>,
}

/// One write of a batch, by partition name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp<P> {
    /// Partition name.
    pub partition: P,
    /// Key.
    pub key: Vec<u8>,
    /// `Some(value)` to put, `None` to delete.
    pub value: Option<Vec<u8>>,
}

impl Db {
    /// Opens the database in `dir`, creating it if needed, and recovers it:
    /// catalogue, then WAL replay (a torn tail is cut; damage in the middle
    /// is `Corruption`).
    ///
    /// # Errors
    /// `Locked` if the directory is open in another handle or process; I/O
    /// errors; `Corruption` naming the file and offset.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = dir.as_ref().to_path_buf();
        let fs = options.fs.clone();
        let existed = fs.exists(&dir)?;
        fs.create_dir_all(&dir)?;
        if !existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs.sync_dir(parent)?;
            }
        }
        let file_lock = fs.lock(&dir.join(LOCK_FILE)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked(format!(
                    "locked: {} is already open in another handle or process",
                    dir.display()
                ))
            } else {
                Error::Io(e)
            }
        })?;
        let manifest = Manifest::open(&fs, &dir, options.manifest_rollover_size)?;
        let state = manifest.state();
        let mut partitions: HashMap<String, Arc<PartitionState>> = HashMap::new();
        for (id, record) in &state.partitions {
            let p = Arc::new(PartitionState::new(*id, record.name.clone()));
            p.set_flushed_seq(record.flushed_seq);
            // Oldest first, so `push_table` leaves the newest in front.
            for tables in record.levels.values() {
                for t in tables.values() {
                    let path = dir.join(id.to_string()).join(table_file_name(t.file));
                    let table = Table::open(fs.open_read(&path)?, path.clone(), t.size)?;
                    p.push_table(Arc::new(TableFile::new(table, t.file, path, fs.clone())));
                }
            }
            partitions.insert(record.name.clone(), p);
        }
        remove_orphans(&fs, &dir, &state)?;
        let recovered = recovery::replay(&fs, &dir, &partitions, state.log_number)?;
        let wal = WalWriter::create(&fs, &dir, recovered.next_wal_number)?;
        fs.sync_dir(&dir)?;
        let current_sync: SyncHandle = Arc::new(Mutex::new(wal.sync_handle(&fs)?));
        let mut wal_files = recovered.wal_files.clone();
        wal_files.insert(recovered.next_wal_number);
        let memory = partitions.values().map(|p| p.memory()).sum();
        let table_max_seq = state
            .partitions
            .values()
            .flat_map(|p| {
                p.levels
                    .values()
                    .flat_map(|l| l.values().map(|t| t.max_seq))
            })
            .max()
            .unwrap_or(0);
        let last_seq = recovered
            .last_seq
            .max(state.last_sequence)
            .max(table_max_seq);
        let inner = Arc::new(Inner {
            fs,
            dir,
            visible_seq: AtomicU64::new(last_seq),
            partitions: RwLock::new(partitions),
            ddl: Mutex::new(()),
            flush_lock: Mutex::new(()),
            next_file: AtomicU64::new(state.next_file_number),
            manifest,
            flush: Mutex::new(FlushQueue::default()),
            flush_wake: Condvar::new(),
            wal_files: Mutex::new(wal_files),
            commit: Mutex::new(CommitState {
                queue: VecDeque::new(),
                leader_active: false,
                handoff: false,
                next_seq: last_seq + 1,
                // Recovery synced every WAL file it kept.
                durable_seq: last_seq,
                unpublished: VecDeque::new(),
                current_sync,
                to_sync: Vec::new(),
                dir_unsynced: false,
                next_wal_number: recovered.next_wal_number + 1,
                poisoned: None,
                shutdown: false,
            }),
            committer_wake: Condvar::new(),
            wal: Mutex::new(wal),
            memory: AtomicUsize::new(memory),
            stats: Counters::default(),
            lock: Mutex::new(Some(file_lock)),
            options,
        });
        let worker = inner.clone();
        let committer = std::thread::Builder::new()
            .name("kalamdb-lsm-commit".into())
            .spawn(move || worker.committer_loop())?;
        let worker = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("kalamdb-lsm-flush".into())
            .spawn(move || worker.flush_loop())?;
        // From here on, an error drops `db`, which stops the threads.
        let db = Db {
            inner,
            committer: Some(committer),
            flusher: Some(flusher),
        };
        let inner = &db.inner;
        // WAL files that hold nothing a memtable needs (e.g. every earlier
        // session's, when nothing was written since the last flush) go now,
        // rather than piling up one per open.
        {
            let _flushes = lock(&inner.flush_lock);
            inner.release_wals()?;
        }
        // Recovered memtables over the size limit are flushed right away.
        let big: Vec<Arc<PartitionState>> = inner
            .partitions_snapshot()
            .into_iter()
            .filter(|p| p.memory() >= inner.options.memtable_size && p.rotate())
            .collect();
        if !big.is_empty() {
            inner.schedule_flush(big);
        }
        Ok(db)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    fn partition(&self, name: &str) -> Result<Arc<PartitionState>> {
        read(&self.inner.partitions)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::PartitionNotFound(name.to_string()))
    }

    /// Creates a partition; `Ok` if it exists already. Durable on return.
    ///
    /// Concurrent creates share fsyncs: each appends its manifest edit under
    /// the DDL lock, then waits for the edit to be durable outside it, so one
    /// manifest fsync covers every edit appended before it began. The WAL is
    /// synced first only if an acknowledged write is not yet durable. An
    /// empty partition costs one manifest edit (no file, no directory).
    ///
    /// # Errors
    /// I/O errors writing the manifest (or syncing the WAL first).
    pub fn create_partition(&self, name: &str) -> Result<()> {
        if self.partition_exists(name) {
            return Ok(());
        }
        self.inner.sync_acknowledged(0)?;
        let (id, position) = {
            let _ddl = lock(&self.inner.ddl);
            if read(&self.inner.partitions).contains_key(name) {
                return Ok(());
            }
            let pending = self
                .inner
                .manifest
                .with_state(|s| s.names.get(name).copied());
            match pending {
                // Logged by a concurrent create that is still waiting for its
                // fsync: wait for the same edit.
                Some(id) => (id, self.inner.manifest.appended()),
                None => {
                    let (position, edit) = self.inner.manifest.append_with(|s| {
                        VersionEdit::one(Change::CreatePartition {
                            id: s.next_partition_id,
                            name: name.to_string(),
                        })
                    })?;
                    let id = match edit.changes.first() {
                        Some(Change::CreatePartition { id, .. }) => *id,
                        _ => {
                            return Err(Error::Io(std::io::Error::other("manifest lost a create")))
                        }
                    };
                    (id, position)
                }
            }
        };
        self.inner.manifest.commit(position)?;
        // Visible only once durable. A drop cannot have happened meanwhile
        // (it needs the partition visible), unless another create of the same
        // edit made it visible first and it was dropped since: then the name
        // no longer maps to `id`, and it stays dropped.
        let _ddl = lock(&self.inner.ddl);
        let live = self
            .inner
            .manifest
            .with_state(|s| s.names.get(name) == Some(&id));
        if live {
            write(&self.inner.partitions)
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(PartitionState::new(id, name.to_string())));
        }
        Ok(())
    }

    /// Drops a partition and its data. Durable on return; iterators already
    /// open keep their snapshot, and its files are deleted once none reads
    /// them.
    ///
    /// # Errors
    /// `PartitionNotFound`; I/O errors writing the manifest.
    pub fn drop_partition(&self, name: &str) -> Result<()> {
        if !self.partition_exists(name) {
            return Err(Error::PartitionNotFound(name.to_string()));
        }
        self.inner.sync_acknowledged(0)?;
        let _ddl = lock(&self.inner.ddl);
        let id = read(&self.inner.partitions)
            .get(name)
            .map(|p| p.id())
            .ok_or_else(|| Error::PartitionNotFound(name.to_string()))?;
        self.inner
            .manifest
            .log(&VersionEdit::one(Change::DropPartition { id }))?;
        if let Some(p) = write(&self.inner.partitions).remove(name) {
            p.mark_dropped();
            let freed = p.memory();
            let _ = self
                .inner
                .memory
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                    Some(m.saturating_sub(freed))
                });
        }
        Ok(())
    }

    /// Flushes every partition's memtables to tables and waits for it.
    ///
    /// # Errors
    /// The error of a failed flush.
    pub fn flush(&self) -> Result<()> {
        // Partitions without data (most of them, with many) cost nothing.
        let with_data: Vec<Arc<PartitionState>> = self
            .inner
            .partitions_snapshot()
            .into_iter()
            .filter(|p| p.rotate() || p.immutable_count() > 0)
            .collect();
        let _one_at_a_time = lock(&self.inner.flush_lock);
        for p in &with_data {
            self.inner.flush_memtables(p)?;
        }
        self.inner.release_wals()
    }

    /// Flushes one partition's memtables to tables and waits for it.
    ///
    /// # Errors
    /// `PartitionNotFound`; the error of a failed flush.
    pub fn flush_partition(&self, name: &str) -> Result<()> {
        let p = self.partition(name)?;
        p.rotate();
        self.inner.flush_partition(&p)
    }

    /// Whether a partition exists.
    pub fn partition_exists(&self, name: &str) -> bool {
        read(&self.inner.partitions).contains_key(name)
    }

    /// Names of all partitions, ascending.
    pub fn list_partitions(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.inner.partitions).keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Approximate bytes a partition holds.
    ///
    /// # Errors
    /// `PartitionNotFound`.
    pub fn partition_size(&self, name: &str) -> Result<u64> {
        let p = self.partition(name)?;
        Ok(p.memory() as u64 + p.table_bytes())
    }

    /// The newest visible value of `key`.
    ///
    /// # Errors
    /// `PartitionNotFound`.
    pub fn get(&self, partition: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let p = self.partition(partition)?;
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        Ok(p.get(key, seq)?.flatten().map(|v| v.to_vec()))
    }

    /// A streaming iterator over `[start, end)` of a partition as of now.
    /// It holds what it reads: it stays valid after the partition is dropped
    /// and after the `Db` is dropped.
    ///
    /// # Errors
    /// `PartitionNotFound`.
    pub fn scan(
        &self,
        partition: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
    ) -> Result<SnapshotIter> {
        let p = self.partition(partition)?;
        // The sequence number first: every write at or below it is already
        // in a memtable that `sources` will see.
        let seq = self.inner.visible_seq.load(Ordering::Acquire);
        let merge = MergeIter::new(p.sources(start));
        Ok(SnapshotIter::new(
            merge,
            seq,
            start.map(<[u8]>::to_vec),
            end.map(<[u8]>::to_vec),
        ))
    }

    /// Submits an atomic batch. Checks partitions and encodes inline, then
    /// commits through the group-commit queue; the returned completion
    /// resolves once the batch is durable to its level and visible.
    /// `sync: None` uses the database default.
    ///
    /// # Errors
    /// `PartitionNotFound` for any missing partition (nothing is written).
    /// Errors of the commit itself (`Io`, `Poisoned`) arrive through the
    /// completion.
    pub fn submit<P: AsRef<str>>(
        &self,
        ops: impl IntoIterator<Item = WriteOp<P>>,
        sync: Option<bool>,
    ) -> Result<Completion<Result<()>>> {
        let mut resolved = Vec::new();
        {
            let partitions = read(&self.inner.partitions);
            for op in ops {
                let name = op.partition.as_ref();
                let target = partitions
                    .get(name)
                    .cloned()
                    .ok_or_else(|| Error::PartitionNotFound(name.to_string()))?;
                let op = BatchOp {
                    partition: target.id(),
                    key: op.key,
                    value: op.value,
                };
                resolved.push(ResolvedOp { target, op });
            }
        }
        let sync = sync.unwrap_or(self.inner.options.sync_writes);
        let (done, completion) = completion();
        if resolved.is_empty() && !sync {
            done.complete(Ok(()));
            return Ok(completion);
        }
        let mut payload = Vec::new();
        if !resolved.is_empty() {
            payload.reserve(
                13 + resolved
                    .iter()
                    .map(|r| r.op.encoded_len_hint())
                    .sum::<usize>(),
            );
            encode_batch(0, resolved.iter().map(|r| &r.op), &mut payload);
        }
        self.inner.enqueue(Pending {
            ops: resolved,
            payload,
            sync,
            done,
        });
        Ok(completion)
    }

    /// Writes a batch and blocks until it is committed (for synchronous
    /// callers; async callers await [`Db::submit`]'s completion instead).
    ///
    /// # Errors
    /// As [`Db::submit`], plus the commit's own errors.
    pub fn write<P: AsRef<str>>(
        &self,
        ops: impl IntoIterator<Item = WriteOp<P>>,
        sync: Option<bool>,
    ) -> Result<()> {
        self.submit(ops, sync)?.wait().unwrap_or(Err(Error::Closed))
    }

    /// Makes every write so far durable (one `fdatasync` of the WAL, shared
    /// with concurrent sync writes).
    ///
    /// # Errors
    /// I/O errors of the sync; `Poisoned` after an earlier failure.
    pub fn sync_wal(&self) -> Result<Completion<Result<()>>> {
        self.submit(std::iter::empty::<WriteOp<&str>>(), Some(true))
    }

    /// Counters and shape.
    pub fn stats(&self) -> Stats {
        let partitions = read(&self.inner.partitions);
        Stats {
            partitions: partitions.len(),
            memtables: partitions.values().map(|p| p.memtable_count()).sum(),
            memtable_bytes: self.inner.memory.load(Ordering::Relaxed),
            writes: self.inner.stats.writes.load(Ordering::Relaxed),
            write_groups: self.inner.stats.groups.load(Ordering::Relaxed),
            wal_bytes_written: self.inner.stats.wal_bytes.load(Ordering::Relaxed),
            wal_syncs: self.inner.stats.wal_syncs.load(Ordering::Relaxed),
            visible_sequence: self.inner.visible_seq.load(Ordering::Acquire),
            tables: partitions.values().map(|p| p.table_count()).sum(),
            table_bytes: partitions.values().map(|p| p.table_bytes()).sum(),
            flushes: self.inner.stats.flushes.load(Ordering::Relaxed),
            flush_bytes_written: self.inner.stats.flush_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    /// Every live partition, now.
    pub(crate) fn partitions_snapshot(&self) -> Vec<Arc<PartitionState>> {
        read(&self.partitions).values().cloned().collect()
    }
}

/// Deletes what no manifest edit refers to: WAL files below the log number,
/// table files not in the manifest, directories of dropped partitions, and
/// part 1's `CATALOG`.
fn remove_orphans(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    state: &crate::manifest::ManifestState,
) -> Result<()> {
    let mut changed = false;
    for name in fs.read_dir(dir)? {
        let path = dir.join(&name);
        if let Some(n) = parse_wal_file_name(&name) {
            if n < state.log_number {
                fs.remove_file(&path)?;
                changed = true;
            }
        } else if let Ok(id) = name.parse::<u64>() {
            match state.partitions.get(&id) {
                None => {
                    fs.remove_dir_all(&path)?;
                    changed = true;
                }
                Some(record) => {
                    let mut inner_changed = false;
                    for file in fs.read_dir(&path)? {
                        let known = parse_table_file_name(&file)
                            .is_some_and(|n| record.levels.values().any(|l| l.contains_key(&n)));
                        if !known {
                            fs.remove_file(&path.join(&file))?;
                            inner_changed = true;
                        }
                    }
                    if inner_changed {
                        fs.sync_dir(&path)?;
                    }
                }
            }
        } else if name == "CATALOG" || name == "CATALOG.tmp" {
            fs.remove_file(&path)?;
            changed = true;
        }
    }
    if changed {
        fs.sync_dir(dir)?;
    }
    let _ = wal_file_name;
    Ok(())
}

impl Drop for Db {
    fn drop(&mut self) {
        // The flusher first: a flush in progress syncs the WAL through the
        // committer, which must still be running.
        lock(&self.inner.flush).shutdown = true;
        self.inner.flush_wake.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
        lock(&self.inner.commit).shutdown = true;
        self.inner.committer_wake.notify_all();
        if let Some(t) = self.committer.take() {
            let _ = t.join();
        }
        lock(&self.inner.lock).take();
    }
}
