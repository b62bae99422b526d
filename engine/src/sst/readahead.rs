//! Reading ahead for a long scan of one table.
//!
//! A scan reads a table's data blocks in file order. Without help each block
//! is its own `pread`: a full scan of 580 MB of 4 KiB blocks is 145k system
//! calls, each costing more than the copy it makes. [`Readahead`] notices a
//! scan that keeps reading the next block and from then on reads a window of
//! the blocks that follow with one call; the next blocks are slices of the
//! window (no copy). The window starts small (a short scan, such as YCSB-E's,
//! wastes little) and doubles up to [`MAX_WINDOW`].
//!
//! RocksDB does the same for iterators (its "auto readahead": from the third
//! sequential read, 8 KiB doubling to 256 KiB); LevelDB relies on the OS.
//!
//! Blocks served from a window are not put in the block cache: a cached
//! block that is a slice of a window would keep the whole window alive while
//! charged for its own size. A scan long enough to read ahead is also the
//! scan that would otherwise push the point reads' working set out of the
//! cache (as PostgreSQL's ring buffers and InnoDB's midpoint insertion avoid
//! for sequential scans). A window lives as long as a block or a value of
//! it is referenced; its mapping then waits as a spare (below). A scanning
//! table iterator holds two windows' memory (the current window, and the
//! previous one or a spare), none once it is done; this is not charged to
//! the cache.
//!
//! The large windows are anonymous mappings (kept out of `malloc`, see
//! `mem.rs`), and a fresh mapping per window would cost a page fault per
//! page, the kernel's zero fill and an `munmap` for every 256 KiB read: a
//! quarter more CPU per scanned entry. So a window's mapping, once no block
//! or value of it is referenced any more, goes back to its iterator's
//! spares and is read into again. The iterator's current window is still
//! referenced (by the current block, and by the merge's current entry)
//! when the next one is read, so two mappings alternate and one spare is
//! enough. The spare is unmapped when the iterator finishes (reaches its
//! end or fails) or is dropped.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use memmap2::MmapMut;

use crate::error::Result;
use crate::mem::{Buffer, MAP_AT_LEAST};

/// Blocks read one after another before the next read fetches a window.
pub const SEQUENTIAL_BEFORE_READAHEAD: u32 = 2;
/// The first window, in bytes.
pub const MIN_WINDOW: usize = 8 << 10;
/// The largest window, in bytes.
pub const MAX_WINDOW: usize = 256 << 10;
/// Window mappings an iterator keeps for reuse.
const MAX_SPARES: usize = 1;

/// Unreferenced window mappings of one iterator, each `MAX_WINDOW` long.
type Spares = Mutex<Vec<MmapMut>>;

/// The owner of a mapped window's bytes: when the last slice of the window
/// goes, the mapping returns to its iterator's spares if the iterator still
/// exists (and has room), else it is unmapped.
struct Window {
    map: Option<MmapMut>,
    home: Weak<Spares>,
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        let (Some(map), Some(home)) = (self.map.take(), self.home.upgrade()) else {
            return;
        };
        // A poisoned lock only means another thread panicked while
        // pushing or popping: the vector is still whole.
        let mut spares = home
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spares.len() < MAX_SPARES {
            spares.push(map);
        }
    }
}

/// One scan's readahead state over one table (see the module docs).
///
/// # Invariants
/// `window` holds the file's bytes `at..at + window.len()`.
#[derive(Debug, Default)]
pub struct Readahead {
    window: Bytes,
    at: u64,
    /// Where a block continuing the sequence would start.
    next: u64,
    /// Blocks in the current sequence, each starting where the last ended.
    sequential: u32,
    /// The last window's size (0: none yet in this sequence).
    size: usize,
    /// Mappings of windows no longer referenced (made at the first mapped
    /// window).
    spares: Option<Arc<Spares>>,
    /// Mappings made (not reused), for the tests.
    #[cfg(test)]
    mapped: usize,
}

impl Readahead {
    /// The file's bytes `offset..offset + len` if the current window holds
    /// them.
    pub fn held(&mut self, offset: u64, len: usize) -> Option<Bytes> {
        let start = usize::try_from(offset.checked_sub(self.at)?).ok()?;
        let end = start.checked_add(len)?;
        if end > self.window.len() {
            return None;
        }
        self.next = offset + len as u64;
        Some(self.window.slice(start..end))
    }

    /// For a block `offset..offset + len` the window does not hold: if this
    /// block continues a sequence long enough, reads a new window starting
    /// at it with `read` (`read(buf, offset)` fills `buf` from the file) and
    /// returns the block's bytes; otherwise `None`, and the caller reads the
    /// block itself. A window never reaches past `limit` (the end of the
    /// data blocks) unless the block itself does.
    ///
    /// # Errors
    /// Whatever `read` returns.
    pub fn fetch(
        &mut self,
        offset: u64,
        len: usize,
        limit: u64,
        read: impl FnOnce(&mut [u8], u64) -> Result<()>,
    ) -> Result<Option<Bytes>> {
        if !self.pass(offset, len) {
            return Ok(None);
        }
        self.size = if self.size == 0 {
            MIN_WINDOW
        } else {
            (self.size * 2).min(MAX_WINDOW)
        };
        let want = usize::try_from(limit.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(self.size)
            .max(len);
        self.window = match self.mapping(want) {
            Some(mut map) => {
                let filled = read(&mut map[..want], offset);
                // Back to the spares when dropped, after a failed read too.
                let window = Window {
                    map: Some(map),
                    home: self.spares.as_ref().map_or_else(Weak::new, Arc::downgrade),
                };
                filled?;
                Bytes::from_owner(window).slice(..want)
            }
            None => {
                let mut buf = Buffer::zeroed(want);
                read(&mut buf, offset)?;
                buf.into_bytes()
            }
        };
        self.at = offset;
        Ok(Some(self.window.slice(..len)))
    }

    /// A `MAX_WINDOW` mapping for a window of `want` bytes, a spare if
    /// there is one; `None` if the window is small enough for the heap (or
    /// too large to reuse, or mapping fails).
    fn mapping(&mut self, want: usize) -> Option<MmapMut> {
        if !(MAP_AT_LEAST..=MAX_WINDOW).contains(&want) {
            return None;
        }
        let spares = self.spares.get_or_insert_with(Arc::default);
        let spare = spares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        if spare.is_some() {
            return spare;
        }
        #[cfg(test)]
        {
            self.mapped += 1;
        }
        MmapMut::map_anon(MAX_WINDOW).ok()
    }

    /// Bytes of the window held.
    #[cfg(test)]
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    /// Counts block `offset..offset + len` in the sequence (or starts a new
    /// one): a block from elsewhere (the block cache), or one about to be
    /// read; whether a read of it should fetch a window.
    pub fn pass(&mut self, offset: u64, len: usize) -> bool {
        if offset == self.next && self.sequential > 0 {
            self.sequential = self.sequential.saturating_add(1);
        } else {
            self.sequential = 1;
            self.size = 0;
        }
        self.next = offset + len as u64;
        self.sequential > SEQUENTIAL_BEFORE_READAHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A file whose byte at `i` is `i as u8`; records each read.
    struct File {
        len: u64,
        reads: Vec<(u64, usize)>,
        fail: bool,
    }

    impl File {
        fn new(len: u64) -> File {
            File {
                len,
                reads: Vec::new(),
                fail: false,
            }
        }

        fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
            self.reads.push((offset, buf.len()));
            if self.fail {
                return Err(Error::Io(std::io::Error::other("injected")));
            }
            assert!(offset + buf.len() as u64 <= self.len, "read past the end");
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (offset + i as u64) as u8;
            }
            Ok(())
        }

        /// Reads `offset..offset + len` as a table iterator would: from
        /// the window, else through `fetch`, else a read of its own.
        fn block(
            &mut self,
            ra: &mut Readahead,
            offset: u64,
            len: usize,
            limit: u64,
        ) -> Result<Vec<u8>> {
            self.shared_block(ra, offset, len, limit)
                .map(|b| b.to_vec())
        }

        /// Like [`File::block`], but the block as read (a slice of the
        /// window, if it came from one).
        fn shared_block(
            &mut self,
            ra: &mut Readahead,
            offset: u64,
            len: usize,
            limit: u64,
        ) -> Result<Bytes> {
            if let Some(b) = ra.held(offset, len) {
                return Ok(b);
            }
            if let Some(b) = ra.fetch(offset, len, limit, |buf, o| self.read(buf, o))? {
                return Ok(b);
            }
            let mut buf = vec![0; len];
            self.read(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        }
    }

    fn spares(ra: &Readahead) -> usize {
        ra.spares.as_ref().map_or(0, |s| s.lock().unwrap().len())
    }

    fn expect_bytes(buf: &[u8], offset: u64) {
        for (i, &b) in buf.iter().enumerate() {
            assert_eq!(
                b,
                (offset + i as u64) as u8,
                "byte {i} of a read at {offset}"
            );
        }
    }

    /// Reads `count` blocks of `block` bytes from `from`, in order.
    fn scan(ra: &mut Readahead, file: &mut File, from: u64, block: usize, count: usize) {
        for i in 0..count {
            let at = from + (i * block) as u64;
            let got = file.block(ra, at, block, file.len).unwrap();
            assert_eq!(got.len(), block);
            expect_bytes(&got, at);
        }
    }

    #[test]
    fn a_long_scan_reads_growing_windows() {
        let mut file = File::new(4 << 20);
        let mut ra = Readahead::default();
        scan(&mut ra, &mut file, 0, 4096, 1024);
        // Two single blocks, then windows of 8, 16, ..., 256 KiB.
        let sizes: Vec<usize> = file.reads.iter().map(|r| r.1).collect();
        assert_eq!(
            &sizes[..8],
            &[
                4096,
                4096,
                8 << 10,
                16 << 10,
                32 << 10,
                64 << 10,
                128 << 10,
                256 << 10
            ]
        );
        assert!(sizes[8..].iter().all(|&s| s == MAX_WINDOW), "{sizes:?}");
        // 4 MiB: 512 KiB in the first 8 reads (8 + 504), then 14 windows.
        assert_eq!(file.reads.len(), 8 + 14);
        // The reads tile the file.
        let mut next = 0;
        for &(at, len) in &file.reads {
            assert_eq!(at, next);
            next = at + len as u64;
        }
        assert_eq!(next, 4 << 20);
    }

    #[test]
    fn a_long_scan_reuses_two_window_mappings() {
        let mut file = File::new(8 << 20);
        let mut ra = Readahead::default();
        scan(&mut ra, &mut file, 0, 4096, 2048);
        // 32 windows of 128 or 256 KiB; the blocks are copied out at once,
        // so a window is referenced only by `ra` until the next replaces it.
        let mapped = file.reads.iter().filter(|r| r.1 >= MAP_AT_LEAST).count();
        assert_eq!(mapped, 32);
        assert_eq!(ra.mapped, 2);
    }

    #[test]
    fn a_referenced_window_is_not_reused() {
        let mut file = File::new(4 << 20);
        let mut ra = Readahead::default();
        let mut held = Vec::new();
        for i in 0..1024u64 {
            let at = i * 4096;
            held.push((at, file.shared_block(&mut ra, at, 4096, file.len).unwrap()));
        }
        // Every window is still referenced: each had a mapping of its own.
        let mapped = file.reads.iter().filter(|r| r.1 >= MAP_AT_LEAST).count();
        assert_eq!(ra.mapped, mapped);
        // The blocks outlive the iterator's readahead and keep their bytes.
        drop(ra);
        for (at, block) in &held {
            expect_bytes(block, *at);
        }
        drop(held);
    }

    #[test]
    fn at_most_one_spare_is_kept() {
        let mut file = File::new(4 << 20);
        let mut ra = Readahead::default();
        // Up to the first 256 KiB window, then three more, one block of
        // each held.
        let mut held = Vec::new();
        let mut at = 0u64;
        while held.len() < 4 {
            let block = file.shared_block(&mut ra, at, 4096, file.len).unwrap();
            if file
                .reads
                .last()
                .is_some_and(|r| r.0 == at && r.1 == MAX_WINDOW)
            {
                held.push((at, block));
            }
            at += 4096;
        }
        assert_eq!(spares(&ra), 0, "every window is still referenced");
        for (at, block) in held.drain(..) {
            expect_bytes(&block, at);
        }
        // Three of the four windows (the current one is also `ra`'s) went
        // back: one is kept, the others unmapped.
        assert_eq!(spares(&ra), MAX_SPARES);
        let mapped = ra.mapped;
        scan(&mut ra, &mut file, at, 4096, 256);
        assert_eq!(ra.mapped, mapped, "the scan goes on with the spare");
    }

    #[test]
    fn a_failed_read_into_a_spare_spoils_nothing() {
        let mut file = File::new(4 << 20);
        let mut ra = Readahead::default();
        scan(&mut ra, &mut file, 0, 4096, 256); // up to the 256 KiB windows
        let (window_at, window_len) = *file.reads.last().unwrap();
        assert_eq!(window_len, MAX_WINDOW);
        assert_eq!(spares(&ra), 1);
        // The current window's last block (read again, from the window)
        // stays referenced.
        let next = window_at + MAX_WINDOW as u64;
        let kept_at = next - 4096;
        let kept = file.shared_block(&mut ra, kept_at, 4096, file.len).unwrap();
        let mapped = ra.mapped;
        file.fail = true;
        assert!(file.shared_block(&mut ra, next, 4096, file.len).is_err());
        assert_eq!(file.reads.last(), Some(&(next, MAX_WINDOW)));
        assert_eq!(ra.mapped, mapped, "the read went into the spare");
        assert_eq!(spares(&ra), 1, "and the spare came back");
        file.fail = false;
        // The held block is intact and the scan goes on with the file's
        // bytes.
        expect_bytes(&kept, kept_at);
        let got = file.shared_block(&mut ra, next, 4096, file.len).unwrap();
        expect_bytes(&got, next);
        scan(&mut ra, &mut file, next + 4096, 4096, 200);
        expect_bytes(&kept, kept_at);
    }

    #[test]
    fn a_short_scan_does_not_read_ahead() {
        let mut file = File::new(1 << 20);
        let mut ra = Readahead::default();
        scan(&mut ra, &mut file, 40960, 4096, 2);
        assert_eq!(file.reads, vec![(40960, 4096), (45056, 4096)]);
    }

    #[test]
    fn a_jump_starts_a_new_sequence() {
        let mut file = File::new(1 << 20);
        let mut ra = Readahead::default();
        scan(&mut ra, &mut file, 0, 4096, 3); // the third read is a window
        assert_eq!(file.reads.last(), Some(&(8192, MIN_WINDOW)));
        file.reads.clear();
        scan(&mut ra, &mut file, 500_000, 4096, 3);
        assert_eq!(
            file.reads,
            vec![(500_000, 4096), (504_096, 4096), (508_192, MIN_WINDOW)]
        );
    }

    #[test]
    fn blocks_from_elsewhere_continue_the_sequence() {
        let mut file = File::new(1 << 20);
        let mut ra = Readahead::default();
        // Two blocks found in the block cache, then the third is read with
        // a window.
        ra.pass(0, 4096);
        ra.pass(4096, 4096);
        scan(&mut ra, &mut file, 8192, 4096, 1);
        assert_eq!(file.reads, vec![(8192, MIN_WINDOW)]);
    }

    #[test]
    fn a_window_stops_at_the_limit_but_not_short_of_a_block() {
        let mut file = File::new(100_000);
        let mut ra = Readahead::default();
        for at in [0, 4000, 8000] {
            let got = file.block(&mut ra, at, 4000, 10_000).unwrap();
            expect_bytes(&got, at);
        }
        // The third read continues the sequence; its window would reach
        // past the limit and is cut to the block itself.
        assert_eq!(file.reads.last(), Some(&(8000, 4000)));
        let got = file.block(&mut ra, 12_000, 2000, 13_000).unwrap();
        expect_bytes(&got, 12_000);
        assert_eq!(file.reads.last(), Some(&(12_000, 2000)));
    }

    #[test]
    fn blocks_of_varying_size_straddling_a_window() {
        let mut file = File::new(1 << 20);
        let mut ra = Readahead::default();
        let mut at = 0u64;
        for i in 0..200usize {
            let len = 1000 + (i * 337) % 5000;
            let got = file.block(&mut ra, at, len, file.len).unwrap();
            assert_eq!(got.len(), len);
            expect_bytes(&got, at);
            at += len as u64;
        }
        assert!(file.reads.len() < 20, "{} reads", file.reads.len());
    }

    #[test]
    fn a_failed_window_read_is_not_served_later() {
        let mut file = File::new(1 << 20);
        let mut ra = Readahead::default();
        // Two blocks, then a window of 8 KiB at 8192 (blocks 3 and 4).
        scan(&mut ra, &mut file, 0, 4096, 4);
        assert_eq!(file.reads.len(), 3);
        file.fail = true;
        assert!(file.block(&mut ra, 16_384, 4096, file.len).is_err());
        assert_eq!(file.reads.last(), Some(&(16_384, 16 << 10)));
        file.fail = false;
        file.reads.clear();
        // The retry reads the file again and gets the file's bytes.
        let got = file.block(&mut ra, 16_384, 4096, file.len).unwrap();
        expect_bytes(&got, 16_384);
        assert_eq!(file.reads.len(), 1);
    }
}
