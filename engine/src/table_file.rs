//! An SSTable file of a partition: the open [`Table`] plus what it takes to
//! delete the file once nothing uses it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::cache::TableCache;
use crate::error::Result;
use crate::fs::Fs;
use crate::merge::{Entry, Source};
use crate::sst::{Table, TableIter};

/// Bytes of compaction that one wasted seek is taken to be worth: a read
/// that has to read more than one sorted run charges the first table it
/// read, and once a table's charges reach its size (or, if more, the bytes
/// its compaction would rewrite) over this, it is compacted (LevelDB's
/// `allowed_seeks` uses the same 16 KiB).
pub const SEEK_COST_BYTES: u64 = 16 << 10;

/// The fewest seeks a table is allowed before it is due.
pub const MIN_ALLOWED_SEEKS: u64 = 100;

/// File name of table `number`: `000042.sst`, inside the partition's
/// directory (named by the partition id).
pub fn table_file_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// The number of a table file name, if it is one (exactly as
/// [`table_file_name`] spells it, at most [`MAX_NUMBER`](crate::coding::MAX_NUMBER)).
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    crate::coding::parse_padded_number(name.strip_suffix(".sst")?)
}

/// A partition's directory (`<dir>/<partition id>`), shared by the
/// partition and its table files. Once the partition is dropped and the
/// last of them lets go — after the last table file was deleted — the
/// directory is removed (not synced: the next open removes what a crash
/// leaves).
#[derive(Debug)]
pub struct PartitionDir {
    path: PathBuf,
    fs: Arc<dyn Fs>,
    dropped: AtomicBool,
    /// Its entry in the database directory is known durable (synced by this
    /// process, or implied by tables the manifest lists in it).
    durable: AtomicBool,
}

impl PartitionDir {
    /// The directory `path` (which may not exist yet).
    pub fn new(path: PathBuf, fs: Arc<dyn Fs>) -> Self {
        PartitionDir {
            path,
            fs,
            dropped: AtomicBool::new(false),
            durable: AtomicBool::new(false),
        }
    }

    /// Whether the directory's entry is known durable.
    pub fn is_durable(&self) -> bool {
        self.durable.load(Ordering::Acquire)
    }

    /// Records that the directory's entry is durable.
    pub fn set_durable(&self) {
        self.durable.store(true, Ordering::Release);
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// The partition was dropped: remove the directory when unused.
    pub fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }
}

impl Drop for PartitionDir {
    fn drop(&mut self) {
        if self.dropped.load(Ordering::Acquire) {
            // Absent if the partition never flushed; leftovers are orphans
            // that the next open removes.
            let _ = self.fs.remove_dir_all(&self.path);
        }
    }
}

/// How many entries (versions) a table holds, and how many of them are
/// tombstones (from its properties, recorded in the manifest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryCounts {
    /// Entries.
    pub entries: u64,
    /// Tombstones among them.
    pub tombstones: u64,
}

impl From<&crate::manifest::TableRecord> for EntryCounts {
    fn from(t: &crate::manifest::TableRecord) -> Self {
        EntryCounts {
            entries: t.entries,
            tombstones: t.tombstones,
        }
    }
}

/// A table file of a partition, shared by the partition's level lists and
/// by iterators. The table itself is opened on demand through the
/// [`TableCache`] (at most `max_open_files` open). When marked obsolete
/// (compacted away, or its partition dropped), the file is deleted as the
/// last holder lets go: an iterator that still reads it keeps it alive.
///
/// When the database closes, the table files that iterators still hold are
/// pinned: opened, and read through that handle from then on, because a
/// later open of the directory may delete them (see
/// [`TableCache::pin_live_files`]).
#[derive(Debug)]
pub struct TableFile {
    number: u64,
    path: PathBuf,
    size: u64,
    /// Entries (versions) and, of them, tombstones.
    counts: EntryCounts,
    /// Smallest and largest user keys (from the manifest).
    smallest: Bytes,
    largest: Bytes,
    cache: Arc<TableCache>,
    dir: Arc<PartitionDir>,
    obsolete: AtomicBool,
    /// The open table, once pinned: reads no longer go through the cache
    /// (and the file name).
    pinned: OnceLock<Arc<Table>>,
    /// Seeks left before a compaction of it is due (see
    /// [`charge_seek`](Self::charge_seek)); negative once overdue.
    seeks_left: AtomicI64,
    /// Seeks allowed so far (the initial allowance and every raise).
    seeks_allowed: AtomicU64,
}

impl TableFile {
    /// Table file `number` in `dir`, of `size` bytes holding `counts`
    /// entries with user keys `smallest..=largest`; opened through `cache`
    /// when first read, and tracked by it (for
    /// [`TableCache::pin_live_files`]).
    pub fn new(
        number: u64,
        dir: Arc<PartitionDir>,
        (size, counts): (u64, EntryCounts),
        (smallest, largest): (Bytes, Bytes),
        cache: Arc<TableCache>,
    ) -> Arc<Self> {
        let file = Arc::new(TableFile {
            number,
            path: dir.path().join(table_file_name(number)),
            size,
            counts,
            smallest,
            largest,
            cache,
            dir,
            obsolete: AtomicBool::new(false),
            pinned: OnceLock::new(),
            seeks_left: AtomicI64::new(allowed_seeks(size) as i64),
            seeks_allowed: AtomicU64::new(allowed_seeks(size)),
        });
        file.cache.track(&file);
        file
    }

    /// The table file that manifest record `r` lists, in `dir`.
    pub fn from_record(
        r: &crate::manifest::TableRecord,
        dir: Arc<PartitionDir>,
        cache: Arc<TableCache>,
    ) -> Arc<Self> {
        TableFile::new(
            r.file,
            dir,
            (r.size, EntryCounts::from(r)),
            (
                Bytes::copy_from_slice(&r.smallest),
                Bytes::copy_from_slice(&r.largest),
            ),
            cache,
        )
    }

    /// The open table (the pinned one, else from the table cache, opening
    /// it if needed).
    ///
    /// # Errors
    /// I/O or corruption opening the table.
    pub fn table(&self) -> Result<Arc<Table>> {
        if let Some(table) = self.pinned.get() {
            return Ok(table.clone());
        }
        self.cache.get(self.number, &self.path, self.size)
    }

    /// Opens the table now and keeps it open for as long as this file
    /// lives, so that reads no longer need the file's name. An error is
    /// ignored: the next read reports it.
    pub fn pin(&self) {
        if self.pinned.get().is_none() {
            if let Ok(table) = self.cache.get(self.number, &self.path, self.size) {
                let _ = self.pinned.set(table);
            }
        }
    }

    /// The file number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its entries and tombstones.
    pub fn counts(&self) -> EntryCounts {
        self.counts
    }

    /// Charges one wasted seek: a read read this table and then had to read
    /// another sorted run too. `true` once its allowance is spent (a
    /// compaction of it is due).
    pub fn charge_seek(&self) -> bool {
        self.seeks_left.fetch_sub(1, Ordering::Relaxed) <= 1
    }

    /// Whether the seeks charged so far pay for a compaction rewriting
    /// `bytes` ([`SEEK_COST_BYTES`] each). If not, the allowance is raised to
    /// what would (a table read that often is due again then) and `false`
    /// is returned.
    pub fn seeks_cover(&self, bytes: u64) -> bool {
        let needed = bytes / SEEK_COST_BYTES;
        let allowed = self.seeks_allowed.load(Ordering::Relaxed);
        if needed <= allowed {
            return true;
        }
        // One thread (the compaction's, under the partition's compaction
        // lock) raises it; readers only charge.
        self.seeks_allowed.store(needed, Ordering::Relaxed);
        let raise = i64::try_from(needed - allowed).unwrap_or(i64::MAX);
        self.seeks_left
            .fetch_add(raise, Ordering::Relaxed)
            .saturating_add(raise)
            <= 0
    }

    /// Deletes the file once the last holder drops it.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    /// An iterator source from `start`, keeping the file alive. With
    /// `fill_cache` false (a compaction's one pass), blocks read are not
    /// added to the block cache, and a table not open already is opened for
    /// this pass only, without its bloom filter
    /// ([`TableCache::get_for_scan`]).
    ///
    /// # Errors
    /// I/O or corruption opening the table.
    pub fn source(self: &Arc<Self>, start: Option<&[u8]>, fill_cache: bool) -> Result<TableSource> {
        let table = match self.pinned.get() {
            Some(table) => table.clone(),
            None if fill_cache => self.cache.get(self.number, &self.path, self.size)?,
            None => self
                .cache
                .get_for_scan(self.number, &self.path, self.size)?,
        };
        Ok(TableSource {
            iter: table.iter_with(start, fill_cache),
            _file: self.clone(),
        })
    }

    /// The smallest user key.
    pub fn smallest(&self) -> &[u8] {
        &self.smallest
    }

    /// The largest user key.
    pub fn largest(&self) -> &[u8] {
        &self.largest
    }

    /// Whether the table's key range meets `[smallest, largest]`.
    pub fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.smallest() <= largest && smallest <= self.largest()
    }

    /// The newest version of `key` visible at `snapshot`, and whether a
    /// data block was read for it (the key range and the bloom filter did
    /// not rule the key out). A key outside the table's range opens
    /// nothing.
    ///
    /// # Errors
    /// I/O or corruption reading the table.
    pub fn get(&self, key: &[u8], snapshot: u64) -> Result<(Option<crate::memtable::Value>, bool)> {
        if key < self.smallest.as_ref() || key > self.largest.as_ref() {
            return Ok((None, false));
        }
        let table = self.table()?;
        if !table.may_contain(key) {
            return Ok((None, false));
        }
        Ok((table.get_unfiltered(key, snapshot)?, true))
    }
}

impl Drop for TableFile {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            self.cache.evict(self.number);
            // Failing to delete leaves an orphan that the next open removes.
            let _ = self.dir.fs().remove_file(&self.path);
        }
    }
}

/// The seeks a table of `size` bytes is allowed before it is due for a
/// compaction: one per [`SEEK_COST_BYTES`], at least [`MIN_ALLOWED_SEEKS`].
pub fn allowed_seeks(size: u64) -> u64 {
    (size / SEEK_COST_BYTES).max(MIN_ALLOWED_SEEKS)
}

/// A [`TableIter`] that keeps its [`TableFile`] (and so the file) alive.
pub struct TableSource {
    iter: TableIter,
    _file: Arc<TableFile>,
}

impl Source for TableSource {
    fn next_entry(&mut self) -> Option<Result<Entry>> {
        self.iter.next_entry()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(table_file_name(7), "000007.sst");
        assert_eq!(parse_table_file_name("000007.sst"), Some(7));
        for bad in [
            "7.ss",
            ".sst",
            "a.sst",
            "000007.sst.tmp",
            // Not the engine's spelling of 7: would alias 000007.sst.
            "7.sst",
            "0000007.sst",
            "+00007.sst",
            // At or past the end of the numbers.
            "4611686018427387904.sst",
            "18446744073709551615.sst",
        ] {
            assert_eq!(parse_table_file_name(bad), None, "{bad}");
        }
        let last = crate::coding::MAX_NUMBER - 1;
        assert_eq!(parse_table_file_name(&table_file_name(last)), Some(last));
    }
}
