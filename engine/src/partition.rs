//! In-memory state of one partition: its memtables.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::memtable::{Memtable, SeqNo, Value};
use crate::merge::Source;

/// One partition: an id (never reused), its name, and its memtables.
///
/// A partition with no data has no memtable: the active memtable is created
/// by the first write. Thread-safety: `Send + Sync`; inserts come from the
/// single group-commit leader, reads from any thread.
#[derive(Debug)]
pub struct PartitionState {
    id: u64,
    name: String,
    tables: RwLock<Tables>,
    dropped: AtomicBool,
}

#[derive(Debug, Default)]
struct Tables {
    active: Option<Arc<Memtable>>,
    /// Full memtables, oldest first.
    immutables: Vec<Arc<Memtable>>,
}

/// The memtables of a partition at one moment, newest first.
pub type TableSet = Vec<Arc<Memtable>>;

impl PartitionState {
    /// A partition with no data.
    pub fn new(id: u64, name: String) -> Self {
        PartitionState {
            id,
            name,
            tables: RwLock::new(Tables::default()),
            dropped: AtomicBool::new(false),
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

    /// Marks the partition dropped (writes still in flight land nowhere visible).
    pub fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    /// Whether the partition was dropped.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Inserts one version; returns the growth of the memtable in bytes.
    /// Rotates the active memtable to immutable first if it has reached
    /// `memtable_size`.
    pub fn insert(
        &self,
        key: &[u8],
        seq: SeqNo,
        value: Option<&[u8]>,
        memtable_size: usize,
    ) -> usize {
        self.insert_shared(
            bytes::Bytes::copy_from_slice(key),
            seq,
            value.map(bytes::Bytes::copy_from_slice),
            memtable_size,
        )
    }

    /// As [`insert`](Self::insert) with shared buffers (no copy).
    pub fn insert_shared(
        &self,
        key: bytes::Bytes,
        seq: SeqNo,
        value: Option<bytes::Bytes>,
        memtable_size: usize,
    ) -> usize {
        let active = {
            let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
            match &tables.active {
                Some(a) if a.approximate_size() < memtable_size => Some(a.clone()),
                _ => None,
            }
        };
        let active = match active {
            Some(a) => a,
            None => {
                let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
                match &tables.active {
                    Some(a) if a.approximate_size() < memtable_size => a.clone(),
                    _ => {
                        if let Some(full) = tables.active.take() {
                            tables.immutables.push(full);
                        }
                        let fresh = Arc::new(Memtable::new());
                        tables.active = Some(fresh.clone());
                        fresh
                    }
                }
            }
        };
        let before = active.approximate_size();
        active.insert_shared(key, seq, value);
        active.approximate_size().saturating_sub(before)
    }

    /// The newest version of `key` visible at `snapshot`: `Some(Some(v))` a
    /// value, `Some(None)` deleted, `None` unknown to every memtable.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Option<Option<bytes::Bytes>> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let newest_first = tables.active.iter().chain(tables.immutables.iter().rev());
        for table in newest_first {
            match table.get(key, snapshot) {
                Some(Value::Put(v)) => return Some(Some(v)),
                Some(Value::Delete) => return Some(None),
                None => {}
            }
        }
        None
    }

    /// The memtables now, newest first (pinned by the returned `Arc`s).
    pub fn tables(&self) -> TableSet {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        tables
            .active
            .iter()
            .chain(tables.immutables.iter().rev())
            .cloned()
            .collect()
    }

    /// Iterator sources over the memtables from `start`, newest first.
    pub fn sources(&self, start: Option<&[u8]>) -> Vec<Box<dyn Source>> {
        self.tables()
            .iter()
            .map(|t| Box::new(t.iter(start)) as Box<dyn Source>)
            .collect()
    }

    /// Approximate bytes held in memtables.
    pub fn memory(&self) -> usize {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        tables
            .active
            .iter()
            .chain(tables.immutables.iter())
            .map(|t| t.approximate_size())
            .sum()
    }

    /// Number of memtables (active + immutable).
    pub fn memtable_count(&self) -> usize {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        usize::from(tables.active.is_some()) + tables.immutables.len()
    }
}
