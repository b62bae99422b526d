//! In-memory state of one partition: its memtables and its tables.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::error::Result;
use crate::locks::{read, write};
use crate::memtable::{Memtable, SeqNo, Value};
use crate::merge::Source;
use crate::table_file::TableFile;
use crate::write_buffer::MemoryUsage;

/// One partition: an id (never reused), its name, its memtables and tables.
///
/// A partition with no data has no memtable, no table and no directory: the
/// active memtable is created by the first write, the directory by the first
/// flush. Thread-safety: `Send + Sync`; inserts come from the single
/// group-commit leader (or recovery), reads from any thread, flushes from the
/// flush thread.
///
/// Invariant: for each key, a newer memtable or table only holds newer
/// versions than an older one (inserts follow sequence order per partition;
/// recovery inserts each key's versions oldest first), so a read may stop at
/// the first memtable or table that knows the key.
///
/// Memory accounting: every change to the memtables (insert, rotation,
/// flush installed, drop) updates the shared [`MemoryUsage`] while holding
/// the partition's lock, so the global counters stay exact even when a
/// write or a flush races with a drop.
#[derive(Debug)]
pub struct PartitionState {
    id: u64,
    name: String,
    tables: RwLock<Tables>,
    dropped: AtomicBool,
    /// Entries up to this sequence number are in tables.
    flushed_seq: AtomicU64,
    /// The database's memtable byte counters.
    usage: Arc<MemoryUsage>,
    /// The partition waits in the flush queue.
    queued: AtomicBool,
}

#[derive(Debug, Default)]
struct Tables {
    active: Option<Arc<Memtable>>,
    /// Full memtables, oldest first.
    immutables: Vec<Arc<Memtable>>,
    /// Level-0 tables, newest first.
    level0: Vec<Arc<TableFile>>,
}

/// A partition's readable state at one moment, newest first.
pub struct ReadSet {
    memtables: Vec<Arc<Memtable>>,
    tables: Vec<Arc<TableFile>>,
}

impl PartitionState {
    /// A partition with no data, charging its memtables to `usage`.
    pub fn new(id: u64, name: String, usage: Arc<MemoryUsage>) -> Self {
        PartitionState {
            id,
            name,
            tables: RwLock::new(Tables::default()),
            dropped: AtomicBool::new(false),
            flushed_seq: AtomicU64::new(0),
            usage,
            queued: AtomicBool::new(false),
        }
    }

    /// The partition's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The partition's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the partition dropped: its tables are deleted once no iterator
    /// holds them, a flush in progress installs nothing, and its memtables
    /// stop counting in the memory usage.
    pub fn mark_dropped(&self) {
        let tables = write(&self.tables);
        if self.dropped.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(a) = &tables.active {
            self.usage.rotated(a.approximate_size());
            self.usage.released(a.approximate_size());
        }
        for m in &tables.immutables {
            self.usage.released(m.approximate_size());
        }
        for t in &tables.level0 {
            t.mark_obsolete();
        }
    }

    /// Marks the partition queued for a flush; `false` if it already was.
    pub fn mark_queued(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// The flush thread took the partition off the queue.
    pub fn clear_queued(&self) {
        self.queued.store(false, Ordering::Release);
    }

    /// Whether the partition was dropped.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Entries up to this sequence number are in tables.
    pub fn flushed_seq(&self) -> SeqNo {
        self.flushed_seq.load(Ordering::Acquire)
    }

    /// Sets the flushed point (at open).
    pub fn set_flushed_seq(&self, seq: SeqNo) {
        self.flushed_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// Adds a table found in the manifest at open (newest last in calls).
    pub fn push_table(&self, table: Arc<TableFile>) {
        write(&self.tables).level0.insert(0, table);
    }

    /// Inserts one version (copying the bytes); see [`insert_shared`](Self::insert_shared).
    pub fn insert(
        &self,
        key: &[u8],
        seq: SeqNo,
        value: Option<&[u8]>,
        memtable_size: usize,
        wal: u64,
    ) -> bool {
        self.insert_shared(
            Bytes::copy_from_slice(key),
            seq,
            value.map(Bytes::copy_from_slice),
            memtable_size,
            wal,
        )
    }

    /// Inserts one version; returns whether the active memtable was rotated
    /// to immutable first (it had reached `memtable_size`). A new memtable
    /// records `wal`, the WAL file the entry was written to.
    pub fn insert_shared(
        &self,
        key: Bytes,
        seq: SeqNo,
        value: Option<Bytes>,
        memtable_size: usize,
        wal: u64,
    ) -> bool {
        // The insert happens under the lock (shared: concurrent inserts
        // proceed) so that the accounting cannot interleave with a rotation
        // or a drop.
        {
            let tables = read(&self.tables);
            if let Some(a) = tables
                .active
                .as_ref()
                .filter(|a| a.approximate_size() < memtable_size)
            {
                let charge = a.insert_shared(key, seq, value);
                self.charge(charge);
                return false;
            }
        }
        let mut tables = write(&self.tables);
        let mut rotated = false;
        let active = match tables.active.take() {
            Some(a) if a.approximate_size() < memtable_size => a,
            full => {
                if let Some(full) = full.filter(|f| !f.is_empty()) {
                    if !self.is_dropped() {
                        self.usage.rotated(full.approximate_size());
                    }
                    tables.immutables.push(full);
                    rotated = true;
                }
                Arc::new(Memtable::for_wal(wal))
            }
        };
        let charge = active.insert_shared(key, seq, value);
        tables.active = Some(active);
        self.charge(charge);
        rotated
    }

    /// Counts inserted bytes (the caller holds the lock, shared or not).
    fn charge(&self, bytes: usize) {
        if !self.is_dropped() {
            self.usage.inserted(bytes);
        }
    }

    /// Makes the active memtable immutable (to flush it); `false` if there
    /// is none or it is empty.
    pub fn rotate(&self) -> bool {
        self.rotate_if(|_| true).is_some()
    }

    /// Makes the active memtable immutable if it is not empty and `pick`
    /// accepts it; returns its size.
    pub fn rotate_if(&self, pick: impl FnOnce(&Memtable) -> bool) -> Option<usize> {
        let mut tables = write(&self.tables);
        match tables.active.take() {
            Some(a) if !a.is_empty() && pick(&a) => {
                let size = a.approximate_size();
                if !self.is_dropped() {
                    self.usage.rotated(size);
                }
                tables.immutables.push(a);
                Some(size)
            }
            other => {
                tables.active = other;
                None
            }
        }
    }

    /// Bytes of the active memtable (0 if none).
    pub fn active_size(&self) -> usize {
        read(&self.tables)
            .active
            .as_ref()
            .map_or(0, |a| a.approximate_size())
    }

    /// The oldest immutable memtable, the next to flush.
    pub fn oldest_immutable(&self) -> Option<Arc<Memtable>> {
        read(&self.tables).immutables.first().cloned()
    }

    /// Replaces a flushed memtable by its table, atomically for readers.
    pub fn install_flushed(&self, memtable: &Arc<Memtable>, table: Arc<TableFile>) {
        let mut tables = write(&self.tables);
        tables.level0.insert(0, table);
        let before = tables.immutables.len();
        tables.immutables.retain(|m| !Arc::ptr_eq(m, memtable));
        if tables.immutables.len() < before && !self.is_dropped() {
            self.usage.released(memtable.approximate_size());
        }
    }

    /// The oldest WAL file holding entries of a memtable of this partition.
    pub fn min_wal(&self) -> Option<u64> {
        let tables = read(&self.tables);
        tables
            .active
            .iter()
            .chain(tables.immutables.iter())
            .filter(|m| !m.is_empty())
            .map(|m| m.wal())
            .min()
    }

    /// What a read sees now: memtables and tables, newest first.
    pub fn read_set(&self) -> ReadSet {
        let tables = read(&self.tables);
        ReadSet {
            memtables: tables
                .active
                .iter()
                .chain(tables.immutables.iter().rev())
                .cloned()
                .collect(),
            tables: tables.level0.clone(),
        }
    }

    /// The newest version of `key` visible at `snapshot`: `Some(Some(v))` a
    /// value, `Some(None)` deleted, `None` unknown.
    ///
    /// # Errors
    /// I/O or corruption reading a table.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Result<Option<Option<Bytes>>> {
        let set = self.read_set();
        for m in &set.memtables {
            match m.get(key, snapshot) {
                Some(Value::Put(v)) => return Ok(Some(Some(v))),
                Some(Value::Delete) => return Ok(Some(None)),
                None => {}
            }
        }
        for t in &set.tables {
            match t.get(key, snapshot)? {
                Some(Value::Put(v)) => return Ok(Some(Some(v))),
                Some(Value::Delete) => return Ok(Some(None)),
                None => {}
            }
        }
        Ok(None)
    }

    /// Iterator sources from `start`, newest first (pinned: they hold the
    /// memtables and table files they read).
    pub fn sources(&self, start: Option<&[u8]>) -> Vec<Box<dyn Source>> {
        let set = self.read_set();
        let mut out: Vec<Box<dyn Source>> =
            Vec::with_capacity(set.memtables.len() + set.tables.len());
        for m in &set.memtables {
            out.push(Box::new(m.iter(start)));
        }
        for t in &set.tables {
            out.push(Box::new(t.source(start)));
        }
        out
    }

    /// Approximate bytes held in memtables.
    pub fn memory(&self) -> usize {
        let tables = read(&self.tables);
        tables
            .active
            .iter()
            .chain(tables.immutables.iter())
            .map(|t| t.approximate_size())
            .sum()
    }

    /// Bytes of the partition's table files.
    pub fn table_bytes(&self) -> u64 {
        read(&self.tables).level0.iter().map(|t| t.size()).sum()
    }

    /// Number of table files.
    pub fn table_count(&self) -> usize {
        read(&self.tables).level0.len()
    }

    /// Number of memtables (active + immutable).
    pub fn memtable_count(&self) -> usize {
        let tables = read(&self.tables);
        usize::from(tables.active.is_some()) + tables.immutables.len()
    }

    /// Number of immutable memtables waiting for a flush.
    pub fn immutable_count(&self) -> usize {
        read(&self.tables).immutables.len()
    }
}
