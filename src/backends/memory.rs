//! [`MemoryBackend`]: the in-memory reference model.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use imbl::OrdMap;

use crate::iter::{Fused, KvPair, ScanRange};
use crate::{limits, Error, Operation, Partition, Result, ScanIterator, StorageBackend};

type Bytes = Arc<[u8]>;
type Map = OrdMap<Bytes, Bytes>;

/// An in-memory backend: the reference model the other backends are tested
/// against, and a handy backend for your own tests.
///
/// Each partition is a persistent ordered map (a copy-on-write B-tree), so a
/// scan snapshots its partition in O(1) and later writes copy only the nodes
/// they touch. Batches apply under one lock and are atomic. Nothing is
/// persisted: dropping the backend drops the data; `compact` is a no-op.
///
/// Thread-safety: `Send + Sync`; share it behind an `Arc`.
///
/// ```
/// use kalamdb_store::{MemoryBackend, Partition, StorageBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kalamdb_store::Result<()> {
/// let backend = MemoryBackend::new();
/// let p = Partition::new("p")?;
/// backend.create_partition(&p).await?;
/// backend.put(&p, b"a", b"1").await?;
/// let snapshot = backend.scan(&p, None, None).await?;
/// backend.put(&p, b"b", b"2").await?; // not seen by `snapshot`
/// assert_eq!(snapshot.count(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryBackend {
    partitions: RwLock<BTreeMap<Partition, Map>>,
}

impl MemoryBackend {
    /// Creates an empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave a map half-updated (every
    // mutation is a single insert/remove), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Partition, Map>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Partition, Map>> {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, partition: &Partition, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut partitions = self.write();
        let map = partitions
            .get_mut(partition)
            .ok_or_else(|| not_found(partition))?;
        match value {
            Some(value) => {
                map.insert(Bytes::from(key), Bytes::from(value));
            }
            None => {
                map.remove(key);
            }
        }
        Ok(())
    }
}

fn not_found(partition: &Partition) -> Error {
    Error::PartitionNotFound(partition.name().to_string())
}

#[async_trait::async_trait]
impl StorageBackend for MemoryBackend {
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>> {
        limits::check_key(key)?;
        let partitions = self.read();
        let map = partitions
            .get(partition)
            .ok_or_else(|| not_found(partition))?;
        Ok(map.get(key).map(|v| v.to_vec()))
    }

    async fn put(&self, partition: &Partition, key: &[u8], value: &[u8]) -> Result<()> {
        limits::check_put(key, value)?;
        self.apply(partition, key, Some(value))
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        limits::check_key(key)?;
        self.apply(partition, key, None)
    }

    async fn scan(
        &self,
        partition: &Partition,
        start_key: Option<&[u8]>,
        end_key: Option<&[u8]>,
    ) -> Result<ScanIterator> {
        let map = self
            .read()
            .get(partition)
            .cloned()
            .ok_or_else(|| not_found(partition))?;
        Ok(Box::new(Fused::new(MemoryScan::new(
            map,
            ScanRange::new(start_key, end_key),
        ))))
    }

    async fn batch(&self, operations: Vec<Operation>) -> Result<()> {
        limits::check_batch(&operations)?;
        let mut partitions = self.write();
        if let Some(op) = operations
            .iter()
            .find(|op| !partitions.contains_key(op.partition()))
        {
            return Err(not_found(op.partition()));
        }
        for op in operations {
            match op {
                Operation::Put {
                    partition,
                    key,
                    value,
                } => {
                    if let Some(map) = partitions.get_mut(&partition) {
                        map.insert(Bytes::from(key), Bytes::from(value));
                    }
                }
                Operation::Delete { partition, key } => {
                    if let Some(map) = partitions.get_mut(&partition) {
                        map.remove(key.as_slice());
                    }
                }
            }
        }
        Ok(())
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        self.write().entry(partition.clone()).or_default();
        Ok(())
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(self.read().contains_key(partition))
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        Ok(self.read().keys().cloned().collect())
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        self.write()
            .remove(partition)
            .map(drop)
            .ok_or_else(|| not_found(partition))
    }

    async fn partition_size(&self, partition: &Partition) -> Result<u64> {
        let partitions = self.read();
        let map = partitions
            .get(partition)
            .ok_or_else(|| not_found(partition))?;
        Ok(map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }

    async fn compact(&self, partition: &Partition) -> Result<()> {
        if self.read().contains_key(partition) {
            Ok(())
        } else {
            Err(not_found(partition))
        }
    }
}

/// Entries fetched per refill: enough to amortise the O(log n) range lookup,
/// few enough that `take(10)` stays cheap.
const SCAN_CHUNK: usize = 64;

/// A streaming scan over an O(1) snapshot of one partition's map.
struct MemoryScan {
    map: Map,
    /// Where the next refill starts: the range start, then just past the last
    /// key fetched. `None` once the range is exhausted.
    next: Option<Bound<Bytes>>,
    end: Option<Bytes>,
    buffered: VecDeque<KvPair>,
}

impl MemoryScan {
    fn new(map: Map, range: ScanRange) -> Self {
        let next = if range.is_empty() {
            None
        } else {
            Some(
                range
                    .start
                    .map_or(Bound::Unbounded, |s| Bound::Included(s.into())),
            )
        };
        MemoryScan {
            map,
            next,
            end: range.end.map(Bytes::from),
            buffered: VecDeque::new(),
        }
    }

    fn refill(&mut self) {
        let Some(start) = self.next.take() else {
            return;
        };
        let start_ref: Bound<&[u8]> = match &start {
            Bound::Included(k) => Bound::Included(k),
            Bound::Excluded(k) => Bound::Excluded(k),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end_ref: Bound<&[u8]> = self
            .end
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let mut last = None;
        for (k, v) in self
            .map
            .range::<_, [u8]>((start_ref, end_ref))
            .take(SCAN_CHUNK)
        {
            self.buffered.push_back((k.to_vec(), v.to_vec()));
            last = Some(k.clone());
        }
        if self.buffered.len() == SCAN_CHUNK {
            // Keys in the range are all below `end`, so the next range is non-empty.
            self.next = last.map(Bound::Excluded);
        }
    }
}

impl Iterator for MemoryScan {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() {
            self.refill();
        }
        self.buffered.pop_front().map(Ok)
    }
}
