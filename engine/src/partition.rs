//! In-memory state of one partition: its memtables and its tables.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::error::Result;
use crate::locks::{read, write};
use crate::memtable::{Memtable, SeqNo, Value};
use crate::merge::Source;
use crate::table_file::{PartitionDir, TableFile};

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
#[derive(Debug)]
pub struct PartitionState {
    id: u64,
    name: String,
    tables: RwLock<Tables>,
    dropped: AtomicBool,
    /// Entries up to this sequence number are in tables.
    flushed_seq: AtomicU64,
    /// The directory of its tables.
    dir: Arc<PartitionDir>,
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
    /// A partition with no data whose tables go to `dir`.
    pub fn new(id: u64, name: String, dir: Arc<PartitionDir>) -> Self {
        PartitionState {
            id,
            name,
            tables: RwLock::new(Tables::default()),
            dropped: AtomicBool::new(false),
            flushed_seq: AtomicU64::new(0),
            dir,
        }
    }

    /// The directory of the partition's tables.
    pub fn dir(&self) -> &Arc<PartitionDir> {
        &self.dir
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
    /// holds them, and a flush in progress installs nothing.
    pub fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
        self.dir.mark_dropped();
        for t in &read(&self.tables).level0 {
            t.mark_obsolete();
        }
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
    ) -> (usize, bool) {
        self.insert_shared(
            Bytes::copy_from_slice(key),
            seq,
            value.map(Bytes::copy_from_slice),
            memtable_size,
            wal,
        )
    }

    /// Inserts one version; returns the growth of the memtables in bytes and
    /// whether the active memtable was rotated to immutable first (it had
    /// reached `memtable_size`). A new memtable records `wal`, the WAL file
    /// the entry was written to.
    pub fn insert_shared(
        &self,
        key: Bytes,
        seq: SeqNo,
        value: Option<Bytes>,
        memtable_size: usize,
        wal: u64,
    ) -> (usize, bool) {
        let active = {
            let tables = read(&self.tables);
            match &tables.active {
                Some(a) if a.approximate_size() < memtable_size => Some(a.clone()),
                _ => None,
            }
        };
        let mut rotated = false;
        let active = match active {
            Some(a) => a,
            None => {
                let mut tables = write(&self.tables);
                match &tables.active {
                    Some(a) if a.approximate_size() < memtable_size => a.clone(),
                    _ => {
                        if let Some(full) = tables.active.take() {
                            tables.immutables.push(full);
                            rotated = true;
                        }
                        let fresh = Arc::new(Memtable::for_wal(wal));
                        tables.active = Some(fresh.clone());
                        fresh
                    }
                }
            }
        };
        let before = active.approximate_size();
        active.insert_shared(key, seq, value);
        (active.approximate_size().saturating_sub(before), rotated)
    }

    /// Makes the active memtable immutable (to flush it); `false` if there
    /// is none or it is empty.
    pub fn rotate(&self) -> bool {
        let mut tables = write(&self.tables);
        match tables.active.take() {
            Some(a) if !a.is_empty() => {
                tables.immutables.push(a);
                true
            }
            other => {
                tables.active = other;
                false
            }
        }
    }

    /// The oldest immutable memtable, the next to flush.
    pub fn oldest_immutable(&self) -> Option<Arc<Memtable>> {
        read(&self.tables).immutables.first().cloned()
    }

    /// Replaces a flushed memtable by its table, atomically for readers.
    pub fn install_flushed(&self, memtable: &Arc<Memtable>, table: Arc<TableFile>) {
        let mut tables = write(&self.tables);
        tables.level0.insert(0, table);
        tables.immutables.retain(|m| !Arc::ptr_eq(m, memtable));
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
    ///
    /// # Errors
    /// I/O or corruption opening a table.
    pub fn sources(&self, start: Option<&[u8]>) -> Result<Vec<Box<dyn Source>>> {
        let set = self.read_set();
        let mut out: Vec<Box<dyn Source>> =
            Vec::with_capacity(set.memtables.len() + set.tables.len());
        for m in &set.memtables {
            out.push(Box::new(m.iter(start)));
        }
        for t in &set.tables {
            out.push(Box::new(t.source(start)?));
        }
        Ok(out)
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
