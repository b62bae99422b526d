//! Reading a table: [`Table::open`] checks the footer and loads the
//! metadata; [`Table::get`] and [`Table::iter`] read data blocks through
//! [`Table::read_block`]: from the block cache if the table has one (else a
//! `pread`, then cached), or from a memory map of the file
//! ([`TableReadOptions::mmap`]; the block cache is then not used for data
//! blocks — the OS page cache is). A scan that keeps reading the next block
//! reads ahead, and the blocks it reads so bypass the block cache (see
//! `readahead.rs`).
//!
//! What `open` checks, in order (any failure is
//! [`Error::Corruption`] naming the file and the absolute offset):
//! 1. the file holds a footer; magic, footer CRC and format version;
//! 2. the layout: the index ends where the footer starts, the properties end
//!    where the index starts, the filter (if any) ends where the properties
//!    start; the data region is everything before the first of them;
//! 3. the CRC and compression type of the filter, properties and index
//!    blocks (read with one pread of the metadata region);
//! 4. properties decode and are consistent, with the footer's version;
//!    the filter decodes (1..=30 probes) and is no larger than 100 bits per
//!    entry;
//! 5. the index: valid keys in increasing order, handles tiling the data
//!    region exactly, one per data block counted in the properties, the
//!    last key's user key equal to the properties' largest key.
//!
//! Data blocks are checked (CRC, compression type, restart array) when read;
//! their entries as they are decoded, including their order.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::block::{Block, BlockIter};
use super::bloom::{max_filter_len, BloomFilter};
use super::footer::{Footer, FOOTER_LEN};
use super::handle::{check_trailer, BlockHandle, BLOCK_TRAILER_LEN};
use super::index::{IndexBlock, IndexIter};
use super::internal_key::{parse_internal_key, seek_key, seek_key_buf, ValueKind};
use super::properties::TableProperties;
use super::readahead::Readahead;
use super::{corruption, DecodeError};
use crate::cache::{BlockCache, BlockKey, Pinned};
use crate::error::{Error, Result};
use crate::fs::ReadableFile;
use crate::mem::Buffer;
use crate::memtable::{SeqNo, Value};
use crate::merge::{Entry, Source};

/// An open, validated table.
///
/// # Thread safety
/// `Send + Sync`: `get` and iterators take `&self` / an `Arc` and run
/// concurrently (reads are positional).
///
/// # Invariants
/// The footer, properties, filter and index were checked at open (see the
/// module docs); every data block handle in the index lies inside the file.
#[derive(Debug)]
pub struct Table {
    file: Arc<dyn ReadableFile>,
    path: PathBuf,
    size: u64,
    /// Where the data blocks end (the first metadata block starts).
    data_end: u64,
    footer: Footer,
    index: IndexBlock,
    filter: Option<BloomFilter>,
    properties: TableProperties,
    /// Where data blocks are cached, and this table's key prefix there.
    cache: Option<(Arc<BlockCache>, BlockKey)>,
    /// The index and filter charged to the block cache while open.
    _pinned: Option<Pinned>,
    /// The whole file, mapped (with [`TableReadOptions::mmap`]).
    mapped: Option<Bytes>,
}

/// How a [`Table`] reads its data blocks.
#[derive(Debug, Clone, Default)]
pub struct TableReadOptions {
    /// The block cache, the database's namespace in it and the table's
    /// file number: data blocks are looked up there before a read and
    /// inserted after one; the index and filter are charged to it while the
    /// table is open. `None`: every data block read is a `pread`.
    pub block_cache: Option<(Arc<BlockCache>, u64, u64)>,
    /// Map the file into memory and read blocks from the map (no copy; CRCs
    /// still checked on every read). Needs a file system that can map
    /// (`RealFs`, or `SimFs`, which maps a copy); otherwise pread is used.
    /// A table file changed by anything but the engine while mapped may
    /// crash the process (SIGBUS) — the engine never changes a table file.
    pub mmap: bool,
    /// Leave the bloom filter on disk (neither read nor checked): for a
    /// table opened for one scan, such as a compaction's input. Point
    /// lookups then search every table whose key range holds the key.
    pub skip_filter: bool,
}

/// Reads `buf.len()` bytes at `offset`; a file that ends first is
/// corruption (the table's recorded size promised those bytes).
fn read_exact(file: &dyn ReadableFile, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            corruption(
                path,
                offset,
                format!("file ends within {} bytes: {e}", buf.len()),
            )
        } else {
            Error::Io(e)
        }
    })
}

/// `len` (checked against the file size by the caller) as a buffer length.
fn block_len(path: &Path, offset: u64, len: u64) -> Result<usize> {
    usize::try_from(len)
        .map_err(|_| corruption(path, offset, format!("block of {len} bytes is too large")))
}

impl Table {
    /// Opens the table in `file` (of `size` bytes; `path` names it in
    /// errors), reading and checking its footer, properties, filter and
    /// index.
    ///
    /// # Errors
    /// [`Error::Corruption`] for any failed check (see the module docs),
    /// [`Error::Io`] for a failed read.
    pub fn open(file: Arc<dyn ReadableFile>, path: PathBuf, size: u64) -> Result<Table> {
        Self::open_with(file, path, size, TableReadOptions::default())
    }

    /// [`open`](Self::open) with a block cache and/or a memory map.
    ///
    /// # Errors
    /// As [`open`](Self::open); also a failed or short mapping.
    pub fn open_with(
        file: Arc<dyn ReadableFile>,
        path: PathBuf,
        size: u64,
        read: TableReadOptions,
    ) -> Result<Table> {
        let footer_at = size.checked_sub(FOOTER_LEN as u64).ok_or_else(|| {
            corruption(
                &path,
                0,
                format!("file of {size} bytes is shorter than the {FOOTER_LEN}-byte footer"),
            )
        })?;
        let mut buf = [0u8; FOOTER_LEN];
        read_exact(file.as_ref(), &path, &mut buf, footer_at)?;
        let footer = Footer::decode(&buf).map_err(|e| e.at(&path, footer_at))?;

        // The metadata blocks sit back to back before the footer.
        let layout = |what: &str, h: BlockHandle, end: u64| -> Result<u64> {
            if h.end_with_trailer() == Some(end) {
                Ok(h.offset)
            } else {
                Err(corruption(
                    &path,
                    footer_at,
                    format!(
                        "{what} block at {} size {} does not end at {end}",
                        h.offset, h.size
                    ),
                ))
            }
        };
        let index_at = layout("index", footer.index, footer_at)?;
        let props_at = layout("properties", footer.properties, index_at)?;
        let data_end = match footer.filter {
            Some(f) => layout("filter", f, props_at)?,
            None => props_at,
        };

        // The filter, when read, is the first metadata block.
        let meta_at = if read.skip_filter { props_at } else { data_end };
        // Mapped when large (see `mem.rs`), like the index copy below.
        let mut meta = Buffer::zeroed(block_len(&path, meta_at, footer_at - meta_at)?);
        read_exact(file.as_ref(), &path, &mut meta, meta_at)?;
        let meta = meta.into_bytes();
        // A metadata block's verified contents; handles of the blocks read
        // lie inside `meta` by the layout checks above.
        let contents = |h: BlockHandle| -> Result<Bytes> {
            let start = (h.offset - meta_at) as usize;
            let end = start + h.size as usize + BLOCK_TRAILER_LEN;
            let raw = meta
                .get(start..end)
                .ok_or_else(|| corruption(&path, h.offset, "block outside the metadata"))?;
            let n = check_trailer(raw).map_err(|e| e.at(&path, h.offset))?.len();
            Ok(meta.slice(start..start + n))
        };

        let properties = TableProperties::decode(&contents(footer.properties)?)
            .map_err(|e| e.at(&path, props_at))?;
        if properties.format_version != footer.format_version {
            return Err(corruption(
                &path,
                props_at,
                format!(
                    "properties say format version {}, the footer {}",
                    properties.format_version, footer.format_version
                ),
            ));
        }
        let filter = match footer.filter.filter(|_| !read.skip_filter) {
            Some(h) => {
                let f = BloomFilter::decode(&contents(h)?).map_err(|e| e.at(&path, h.offset))?;
                if f.size() as u64 > max_filter_len(properties.entry_count) {
                    return Err(corruption(
                        &path,
                        h.offset,
                        format!(
                            "bloom filter of {} bytes is too large for {} entries",
                            f.size(),
                            properties.entry_count
                        ),
                    ));
                }
                Some(f)
            }
            None => None,
        };
        // The index is the one block kept as a slice; it would keep all of
        // `meta` alive, the filter's bytes too (decoded into their own
        // aligned copy above): 0.3 MiB of a 64 MiB table, held and not
        // charged. With the filter read, the index gets its own copy.
        let index_bytes = contents(footer.index)?;
        let index_bytes = if meta_at < props_at {
            Buffer::copy_of(&index_bytes).into_bytes()
        } else {
            index_bytes
        };
        drop(meta);
        let index = IndexBlock::decode(index_bytes, data_end).map_err(|e| e.at(&path, index_at))?;
        if index.len() != properties.data_block_count {
            return Err(corruption(
                &path,
                index_at,
                format!(
                    "index lists {} data blocks, properties {}",
                    index.len(),
                    properties.data_block_count
                ),
            ));
        }
        let last = parse_internal_key(index.last_key()).map_err(|e| e.at(&path, index_at))?;
        if last.user_key != properties.largest_key.as_ref() {
            return Err(corruption(
                &path,
                index_at,
                "the index's last key is not the properties' largest key",
            ));
        }
        let mapped = if read.mmap {
            match file.map()? {
                Some(m) if m.len() as u64 == size => Some(m),
                Some(m) => {
                    return Err(corruption(
                        &path,
                        0,
                        format!("mapped {} bytes of a {size}-byte table", m.len()),
                    ))
                }
                None => None,
            }
        } else {
            None
        };
        let metadata = index.size() + filter.as_ref().map_or(0, BloomFilter::size);
        let (cache, pinned) = match read.block_cache {
            Some((cache, namespace, file)) => {
                let pinned = cache.pin(metadata);
                let key = BlockKey {
                    namespace,
                    file,
                    offset: 0,
                };
                (Some((cache, key)), Some(pinned))
            }
            None => (None, None),
        };
        Ok(Table {
            file,
            path,
            size,
            data_end,
            footer,
            index,
            filter,
            properties,
            cache,
            _pinned: pinned,
            mapped,
        })
    }

    /// The file's path (as given to [`open`](Self::open)).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes.
    #[must_use]
    pub fn file_size(&self) -> u64 {
        self.size
    }

    /// The table's properties.
    #[must_use]
    pub fn properties(&self) -> &TableProperties {
        &self.properties
    }

    /// The table's footer.
    #[must_use]
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Bytes of index and filter held in memory (to charge a cache).
    #[must_use]
    pub fn metadata_size(&self) -> usize {
        self.index.size() + self.filter.as_ref().map_or(0, BloomFilter::size)
    }

    /// `false` if `user_key` is certainly not in the table: outside its key
    /// range, or rejected by its bloom filter. Reads nothing.
    #[must_use]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        let p = &self.properties;
        if user_key < p.smallest_key.as_ref() || user_key > p.largest_key.as_ref() {
            return false;
        }
        self.filter.as_ref().is_none_or(|f| f.may_contain(user_key))
    }

    /// The newest version of `user_key` with sequence number `<= snapshot`:
    /// `Some(Value::Put)`, `Some(Value::Delete)` for a tombstone, `None` if
    /// the table holds no such version. Consults the key range and bloom
    /// filter before reading any data block; reads at most one.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::Io`] reading the data block.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Result<Option<Value>> {
        if !self.may_contain(user_key) {
            return Ok(None);
        }
        self.get_unfiltered(user_key, snapshot)
    }

    /// [`get`](Self::get) without consulting the key range and the bloom
    /// filter (the caller did: [`may_contain`](Self::may_contain)): reads
    /// the data block that may hold `user_key`.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::Io`] reading the data block.
    pub fn get_unfiltered(&self, user_key: &[u8], snapshot: SeqNo) -> Result<Option<Value>> {
        let target = seek_key_buf(user_key, snapshot);
        let target = target.as_slice();
        let index_at = self.footer.index.offset;
        let Some(h) = self
            .index
            .seek(target)
            .map_err(|e| e.at(&self.path, index_at))?
        else {
            return Ok(None);
        };
        let block = self.read_block(h)?;
        let found = block
            .seek_with(target, |at, key, value| {
                let k = parse_internal_key(key).map_err(|e| DecodeError::new(at, e.reason))?;
                if k.user_key != user_key {
                    return Ok(None);
                }
                match k.kind {
                    ValueKind::Put => Ok(Some(Value::Put(block.share(value)))),
                    ValueKind::Delete if value.is_empty() => Ok(Some(Value::Delete)),
                    ValueKind::Delete => {
                        Err(DecodeError::new(at, "tombstone with a non-empty value"))
                    }
                }
            })
            .and_then(|r| r.transpose())
            .map_err(|e| e.at(&self.path, h.offset))?;
        Ok(found.flatten())
    }

    /// An iterator over every version of every key `>= start` (all keys if
    /// `None`), in internal-key order, holding one data block at a time (a
    /// long scan reads ahead, see `readahead.rs`). Nothing is read until the
    /// first `next`.
    #[must_use]
    pub fn iter(self: &Arc<Self>, start: Option<&[u8]>) -> TableIter {
        self.iter_with(start, true)
    }

    /// [`iter`](Self::iter); with `fill_cache` false the blocks it reads are
    /// not added to the block cache (a compaction's one-time pass).
    #[must_use]
    pub fn iter_with(self: &Arc<Self>, start: Option<&[u8]>, fill_cache: bool) -> TableIter {
        TableIter {
            fill_cache,
            readahead: Readahead::default(),
            table: Arc::clone(self),
            index: self.index.iter(),
            block: None,
            start: start.map(|s| seek_key(s, SeqNo::MAX)),
            started: false,
            done: false,
            prev_key: Vec::new(),
            prev_seq: None,
            keys: BytesMut::new(),
        }
    }

    /// Reads and checks one data block (CRC, compression type, restart
    /// array), through the block cache. A table iterator reads through
    /// `read_block_via`, which may serve the block from its readahead
    /// window instead (not cached).
    ///
    /// # Errors
    /// [`Error::Corruption`] for a handle outside the file or a bad block;
    /// [`Error::Io`] for a failed read.
    pub fn read_block(&self, handle: BlockHandle) -> Result<Block> {
        self.read_block_with(handle, true)
    }

    /// [`read_block`](Self::read_block); `fill_cache` false leaves a block
    /// read from the file out of the cache.
    ///
    /// # Errors
    /// As [`read_block`](Self::read_block).
    pub fn read_block_with(&self, handle: BlockHandle, fill_cache: bool) -> Result<Block> {
        self.read_block_via(handle, fill_cache, None)
    }

    /// [`read_block_with`](Self::read_block_with), for a scan when
    /// `readahead` is given: its window is looked at first, and a block it
    /// fetches with a new window is not cached.
    fn read_block_via(
        &self,
        handle: BlockHandle,
        fill_cache: bool,
        mut readahead: Option<&mut Readahead>,
    ) -> Result<Block> {
        let end = handle
            .end_with_trailer()
            .filter(|&end| end <= self.size)
            .ok_or_else(|| {
                corruption(
                    &self.path,
                    handle.offset,
                    format!(
                        "block of {} bytes runs past the end of the file",
                        handle.size
                    ),
                )
            })?;
        if let Some(map) = &self.mapped {
            // In range: `end <= size == map.len()`, checked above and at open.
            return self.decode_block(handle, map.slice(handle.offset as usize..end as usize));
        }
        let len = block_len(&self.path, handle.offset, end - handle.offset)?;
        if let Some(raw) = readahead
            .as_mut()
            .and_then(|ra| ra.held(handle.offset, len))
        {
            return self.decode_block(handle, raw);
        }
        let key = self.cache.as_ref().map(|(cache, key)| {
            let key = BlockKey {
                offset: handle.offset,
                ..*key
            };
            (cache, key)
        });
        if let Some((cache, key)) = &key {
            if let Some(block) = cache.get(key) {
                if let Some(ra) = readahead {
                    ra.pass(handle.offset, len);
                }
                return Ok(block);
            }
        }
        let read = |buf: &mut [u8], offset| read_exact(self.file.as_ref(), &self.path, buf, offset);
        if let Some(ra) = readahead {
            // A window's blocks stay out of the cache (see `readahead.rs`).
            // A window that fails to read (a bad sector ahead) does not end
            // the scan here: this block is read alone below, and its own
            // error, if any, is the one reported.
            if let Ok(Some(raw)) = ra.fetch(handle.offset, len, self.data_end, read) {
                return self.decode_block(handle, raw);
            }
        }
        // Through the cache, a reused buffer: see `BufferPool`.
        let mut buf = match &key {
            Some((cache, _)) => cache.buffers().take(len),
            None => vec![0; len],
        };
        read(&mut buf, handle.offset)?;
        let allocated = buf.capacity();
        let contents = match &key {
            Some((cache, _)) => cache.buffers().share(buf),
            None => Bytes::from(buf),
        };
        let block = self.decode_block(handle, contents)?;
        if let Some((cache, key)) = key.filter(|_| fill_cache) {
            cache.insert_sized(key, block.clone(), allocated);
        }
        Ok(block)
    }

    /// The data block at `handle` from its bytes on disk (trailer
    /// included): the trailer's CRC and compression type checked, the
    /// trailer dropped.
    fn decode_block(&self, handle: BlockHandle, raw: Bytes) -> Result<Block> {
        let n = check_trailer(&raw)
            .map_err(|e| e.at(&self.path, handle.offset))?
            .len();
        Block::decode(raw.slice(..n)).map_err(|e| e.at(&self.path, handle.offset))
    }
}

/// Bytes of key buffer a [`TableIter`] allocates at a time: the keys it
/// returns are slices of one such buffer, not an allocation each.
const KEY_CHUNK: usize = 4096;

/// The entry under a data-block cursor, its user key copied into `keys`
/// (shared, not allocated per key); errors are relative to the block.
fn decode_entry(it: &BlockIter, keys: &mut BytesMut) -> std::result::Result<Entry, DecodeError> {
    let at = it.offset();
    let k = parse_internal_key(it.key()).map_err(|e| DecodeError::new(at, e.reason))?;
    let value = match k.kind {
        ValueKind::Put => Value::Put(it.value_bytes()),
        ValueKind::Delete if it.value().is_empty() => Value::Delete,
        ValueKind::Delete => {
            return Err(DecodeError::new(at, "tombstone with a non-empty value"));
        }
    };
    if keys.capacity() - keys.len() < k.user_key.len() {
        *keys = BytesMut::with_capacity(KEY_CHUNK.max(k.user_key.len()));
    }
    keys.extend_from_slice(k.user_key);
    Ok(Entry {
        key: keys.split().freeze(),
        seq: k.seq,
        value,
    })
}

/// A streaming cursor over a table's entries, one data block in memory at a
/// time. Yields each version in internal-key order; an error is yielded
/// once, then the iterator ends.
///
/// # Thread safety
/// Owned and `Send` (it holds an `Arc<Table>`); one thread drives it.
///
/// # Invariants
/// Entries come out strictly increasing in internal-key order; a table whose
/// entries are not (bytes that passed their CRC but were written wrong)
/// yields a corruption error instead of breaking that contract.
#[derive(Debug)]
pub struct TableIter {
    table: Arc<Table>,
    /// Whether blocks read from the file one at a time go into the block
    /// cache (blocks of a readahead window never do).
    fill_cache: bool,
    /// Reading ahead once the scan reads block after block from the file.
    readahead: Readahead,
    index: IndexIter,
    /// The current data block's cursor and the block's file offset.
    block: Option<(BlockIter, u64)>,
    /// Seek key of the start bound, until the first step uses it.
    start: Option<Vec<u8>>,
    started: bool,
    done: bool,
    /// The last entry's user key and sequence number, to check the order
    /// (`prev_seq` is `None` before the first entry).
    prev_key: Vec<u8>,
    prev_seq: Option<SeqNo>,
    /// Where returned keys are copied (see [`KEY_CHUNK`]).
    keys: BytesMut,
}

impl TableIter {
    /// Bytes of readahead window the iterator holds.
    #[cfg(test)]
    pub(crate) fn window_bytes(&self) -> usize {
        self.readahead.window_len()
    }

    fn index_error(&self, e: DecodeError) -> Error {
        e.at(&self.table.path, self.table.footer.index.offset)
    }

    /// Loads the block under the index cursor and positions in it (at
    /// `target`, or its first entry). `false` past the last block.
    fn load_block(&mut self, target: Option<&[u8]>) -> Result<bool> {
        let Some(h) = self.index.handle().map_err(|e| self.index_error(e))? else {
            // Past the last block: a finished iterator (a merge keeps it
            // until the scan ends) holds no window.
            self.block = None;
            self.readahead = Readahead::default();
            return Ok(false);
        };
        let block = self
            .table
            .read_block_via(h, self.fill_cache, Some(&mut self.readahead))?;
        let mut it = block.iter();
        match target {
            Some(t) => it.seek(t),
            None => it.seek_to_first(),
        }
        .map_err(|e| e.at(&self.table.path, h.offset))?;
        self.block = Some((it, h.offset));
        Ok(true)
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        if self.started {
            if let Some((it, base)) = &mut self.block {
                let base = *base;
                it.advance().map_err(|e| e.at(&self.table.path, base))?;
            }
        } else {
            self.started = true;
            let target = self.start.take();
            match &target {
                Some(t) => self.index.seek(t),
                None => self.index.seek_to_first(),
            }
            .map_err(|e| self.index_error(e))?;
            if !self.load_block(target.as_deref())? {
                return Ok(None);
            }
        }
        loop {
            let Some((it, base)) = &self.block else {
                return Ok(None);
            };
            if it.valid() {
                let base = *base;
                let entry =
                    decode_entry(it, &mut self.keys).map_err(|e| e.at(&self.table.path, base))?;
                if let Some(s) = self.prev_seq {
                    let order = crate::coding::compare_bytes(&self.prev_key, &entry.key)
                        .then_with(|| entry.seq.cmp(&s));
                    if order != std::cmp::Ordering::Less {
                        return Err(corruption(
                            &self.table.path,
                            base + it.offset() as u64,
                            "entries out of order",
                        ));
                    }
                }
                self.prev_key.clear();
                self.prev_key.extend_from_slice(&entry.key);
                self.prev_seq = Some(entry.seq);
                return Ok(Some(entry));
            }
            self.index.advance().map_err(|e| self.index_error(e))?;
            if !self.load_block(None)? {
                return Ok(None);
            }
        }
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.block = None;
                self.readahead = Readahead::default();
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for TableIter {}

impl Source for TableIter {
    fn next_entry(&mut self) -> Option<Result<Entry>> {
        self.next()
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Table>();
    send::<TableIter>();
};
