//! The table cache: open [`Table`]s (file handle, index, filter) by file
//! number, at most `max_open_files` of them, least recently used closed
//! first.
//!
//! A table is opened on first use (reads and iterators), not at database open,
//! nor when a flush or compaction writes it (they check the new file by opening
//! it, then close it): a write-only load holds no table's index or filter. A
//! compaction reads an input that is not open already without caching it or
//! loading its filter ([`TableCache::get_for_scan`]). An iterator holds its own
//! `Arc<Table>`: a table evicted while an iterator reads it stays open until
//! that iterator is dropped, so the number of open table files can exceed the
//! bound by the tables that live iterators pin.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::lru::Lru;
use super::BlockCache;
use crate::error::Result;
use crate::fs::Fs;
use crate::locks::lock;
use crate::sst::{Table, TableReadOptions};
use crate::table_file::TableFile;

/// Open tables of one database, bounded by count.
///
/// # Thread safety
/// `Send + Sync`. Files are opened outside the lock; two threads missing the
/// same table at once may both open it, and the second insert replaces the
/// first (both handles are valid).
#[derive(Debug)]
pub struct TableCache {
    fs: Arc<dyn Fs>,
    open: Mutex<Lru<u64, Arc<Table>>>,
    block_cache: Arc<BlockCache>,
    namespace: u64,
    mmap: bool,
    hits: AtomicU64,
    opens: AtomicU64,
    evictions: AtomicU64,
    /// Every table file of the database that may still be alive.
    files: Mutex<Tracked>,
}

/// Weak references to table files, pruned of dead ones as it doubles.
#[derive(Debug, Default)]
struct Tracked {
    files: Vec<Weak<TableFile>>,
    prune_at: usize,
}

/// Counters of a [`TableCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCacheStats {
    /// Tables open in the cache now (iterators may hold more).
    pub open: usize,
    /// The bound (`max_open_files`).
    pub capacity: usize,
    /// Lookups that found the table open.
    pub hits: u64,
    /// Table files opened.
    pub opens: u64,
    /// Tables closed to respect the bound.
    pub evictions: u64,
}

impl TableCache {
    /// A cache of at most `max_open_files` tables (at least 1), whose
    /// tables read data blocks through `block_cache` (or, with `mmap`,
    /// from a memory map of the file).
    pub fn new(
        fs: Arc<dyn Fs>,
        max_open_files: usize,
        block_cache: Arc<BlockCache>,
        mmap: bool,
    ) -> Self {
        let namespace = block_cache.new_namespace();
        TableCache {
            fs,
            open: Mutex::new(Lru::new(max_open_files.max(1))),
            block_cache,
            namespace,
            mmap,
            hits: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            files: Mutex::new(Tracked::default()),
        }
    }

    /// Tracks a table file of this database (see
    /// [`pin_live_files`](Self::pin_live_files)).
    pub fn track(&self, file: &Arc<TableFile>) {
        let mut tracked = lock(&self.files);
        if tracked.files.len() >= tracked.prune_at {
            tracked.files.retain(|f| f.strong_count() > 0);
            tracked.prune_at = (2 * tracked.files.len()).max(64);
        }
        tracked.files.push(Arc::downgrade(file));
    }

    /// Pins every tracked table file still alive ([`TableFile::pin`]).
    ///
    /// The database calls it as it closes, once it let go of its own
    /// references: what is still alive then is held by iterators, which
    /// outlive the database, and a later open of the directory (which no
    /// longer knows about them) may delete the files they have not opened
    /// yet — a level's tables open one at a time, and tables already
    /// compacted away are orphans to the next open. An open handle keeps a
    /// deleted file readable.
    pub fn pin_live_files(&self) {
        let live: Vec<Arc<TableFile>> = lock(&self.files)
            .files
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for file in &live {
            file.pin();
        }
    }

    /// The block cache.
    pub fn block_cache(&self) -> &Arc<BlockCache> {
        &self.block_cache
    }

    /// Opens (and checks) table file `number` at `path` of `size` bytes
    /// without caching it.
    ///
    /// # Errors
    /// I/O errors opening or reading; `Corruption` for a bad table.
    pub fn open_uncached(&self, number: u64, path: &Path, size: u64) -> Result<Table> {
        self.open_with(number, path, size, false)
    }

    fn open_with(&self, number: u64, path: &Path, size: u64, skip_filter: bool) -> Result<Table> {
        let file = self.fs.open_read(path)?;
        self.opens.fetch_add(1, Ordering::Relaxed);
        Table::open_with(
            file,
            path.to_path_buf(),
            size,
            TableReadOptions {
                block_cache: Some((Arc::clone(&self.block_cache), self.namespace, number)),
                mmap: self.mmap,
                skip_filter,
            },
        )
    }

    /// Table file `number` for one scan (a compaction's input): the open
    /// table if it is cached, else opened without its bloom filter and not
    /// cached — a compaction's inputs are deleted when it ends, and until
    /// then their filters, which a scan does not use, need not be in memory.
    ///
    /// # Errors
    /// As [`open_uncached`](Self::open_uncached).
    pub fn get_for_scan(&self, number: u64, path: &Path, size: u64) -> Result<Arc<Table>> {
        match self.cached(number) {
            Some(t) => Ok(t),
            None => Ok(Arc::new(self.open_with(number, path, size, true)?)),
        }
    }

    /// The cached table of file `number`, if it is open (a hit).
    fn cached(&self, number: u64) -> Option<Arc<Table>> {
        let t = lock(&self.open).get(&number)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(t)
    }

    /// The open table of file `number`, opening it if needed.
    ///
    /// # Errors
    /// As [`open_uncached`](Self::open_uncached).
    pub fn get(&self, number: u64, path: &Path, size: u64) -> Result<Arc<Table>> {
        if let Some(t) = self.cached(number) {
            return Ok(t);
        }
        let table = Arc::new(self.open_uncached(number, path, size)?);
        self.insert(number, Arc::clone(&table));
        Ok(table)
    }

    /// Caches an open table, closing the least recently used beyond the
    /// bound.
    fn insert(&self, number: u64, table: Arc<Table>) {
        let (replaced, evicted) = {
            let mut open = lock(&self.open);
            let replaced = open.remove(&number);
            (replaced, open.insert(number, table, 1))
        };
        self.evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        // Files close here, outside the lock.
        drop((replaced, evicted));
    }

    /// Closes file `number` if it is open (it is being deleted).
    pub fn evict(&self, number: u64) {
        let table = lock(&self.open).remove(&number);
        drop(table);
    }

    /// The counters.
    pub fn stats(&self) -> TableCacheStats {
        let open = lock(&self.open);
        TableCacheStats {
            open: open.len(),
            capacity: open.capacity(),
            hits: self.hits.load(Ordering::Relaxed),
            opens: self.opens.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}
