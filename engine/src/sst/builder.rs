//! Writing a table: [`TableBuilder`] streams data blocks to a file as they
//! fill, then writes the filter, properties, index and footer.
//!
//! Layout written (see `docs/format/sstable.md`): data blocks from offset 0,
//! each followed by its trailer; then the filter (if enabled), the
//! properties, the index, each with a trailer; then the 64-byte footer.

use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::block::{BlockBuilder, DEFAULT_RESTART_INTERVAL};
use super::bloom::BloomBuilder;
use super::footer::{Footer, FORMAT_VERSION};
use super::handle::{write_trailer, BlockHandle};
use super::index::IndexBuilder;
use super::internal_key::{encode_internal_key, InternalKey, ValueKind, MAX_SEQ, TRAILER_LEN};
use super::properties::TableProperties;
use crate::error::{Error, Result};
use crate::fs::WritableFile;
use crate::memtable::{SeqNo, Value};

/// Largest user key plus value one entry may carry. Blocks stay far below
/// 4 GiB (their restart offsets are u32) because a block is cut as soon as
/// it reaches `block_size` (at most [`MAX_BLOCK_SIZE`]).
pub const MAX_ENTRY_LEN: usize = 1 << 30;
/// Largest accepted `block_size`.
pub const MAX_BLOCK_SIZE: usize = 1 << 30;
const _: () = assert!(MAX_BLOCK_SIZE as u64 + MAX_ENTRY_LEN as u64 + 64 < u32::MAX as u64);
/// Finished blocks are handed to the file in writes of about this size.
const WRITE_BUFFER: usize = 64 << 10;

/// How tables are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// A data block is cut once its contents reach this size (default
    /// 4096; clamped to `1..=MAX_BLOCK_SIZE`). A block holds at least one
    /// entry, so a large value makes a large block.
    pub block_size: usize,
    /// A restart point (a full key) every this many entries of a data block
    /// (default 16; at least 1).
    pub restart_interval: usize,
    /// Bloom filter bits per distinct user key (default 10, about 1% false
    /// positives); 0 writes no filter; at most 100 (larger values are
    /// clamped).
    pub bloom_bits_per_key: u32,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size: 4096,
            restart_interval: DEFAULT_RESTART_INTERVAL,
            bloom_bits_per_key: 10,
        }
    }
}

/// What a finished table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// The file's size in bytes.
    pub file_size: u64,
    /// The properties written into the table.
    pub properties: TableProperties,
    /// The first entry's key (smallest internal key).
    pub smallest: InternalKey,
    /// The last entry's key (largest internal key).
    pub largest: InternalKey,
}

/// Running totals for the properties block.
#[derive(Debug, Default)]
struct Totals {
    entries: u64,
    tombstones: u64,
    data_blocks: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
    min_seq: SeqNo,
    max_seq: SeqNo,
}

/// Writes one table, streaming data blocks to the file as they fill.
///
/// Entries are added in strictly increasing internal-key order: user key
/// ascending, and for equal user keys sequence number descending. Sequence
/// numbers are written as given (the bottom level may zero them).
///
/// The caller creates the (empty) file, and after [`finish`](Self::finish)
/// syncs the returned handle and its directory before anything refers to
/// the table. Dropping a builder without finishing leaves a partial file for
/// the caller to delete.
///
/// # Thread safety
/// `Send`, not `Sync`; one owner adds entries.
///
/// # Invariants
/// - Every byte of data blocks finished so far has been written or is in
///   `out`; `offset` is the file offset of the next byte after `out`.
/// - After any error the builder refuses further calls (the file content is
///   unknown).
#[derive(Debug)]
pub struct TableBuilder {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    opts: TableOptions,
    partition_id: u64,
    /// File offset where the next block starts (written plus buffered).
    offset: u64,
    /// Finished bytes not yet handed to the file.
    out: Vec<u8>,
    block: BlockBuilder,
    index: IndexBuilder,
    bloom: Option<BloomBuilder>,
    /// The last entry's encoded internal key (kept for the index, and for
    /// the order check: its user key is all but the trailer).
    last_key: Vec<u8>,
    first: Option<InternalKey>,
    /// The last entry's sequence number and kind.
    last: Option<(SeqNo, ValueKind)>,
    totals: Totals,
    failed: bool,
}

fn invalid(path: &Path, why: String) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    ))
}

impl TableBuilder {
    /// A builder writing to `file` (freshly created and empty; `path` names
    /// it in errors) for partition `partition_id`.
    ///
    /// # Panics
    /// In debug builds, if `file` is not empty.
    #[must_use]
    pub fn new(
        file: Box<dyn WritableFile>,
        path: PathBuf,
        partition_id: u64,
        opts: &TableOptions,
    ) -> Self {
        debug_assert_eq!(file.len(), 0, "a table starts at offset 0");
        let mut opts = opts.clone();
        opts.block_size = opts.block_size.clamp(1, MAX_BLOCK_SIZE);
        opts.restart_interval = opts.restart_interval.max(1);
        let bloom =
            (opts.bloom_bits_per_key > 0).then(|| BloomBuilder::new(opts.bloom_bits_per_key));
        TableBuilder {
            file,
            path,
            block: BlockBuilder::new(opts.restart_interval),
            opts,
            partition_id,
            offset: 0,
            out: Vec::new(),
            index: IndexBuilder::new(),
            bloom,
            last_key: Vec::new(),
            first: None,
            last: None,
            totals: Totals::default(),
            failed: false,
        }
    }

    /// Adds one version: `user_key` at `seq` is `value`.
    ///
    /// # Errors
    /// `InvalidInput` if the entry does not sort strictly after the previous
    /// one, `seq` exceeds [`MAX_SEQ`], or key plus value exceed
    /// [`MAX_ENTRY_LEN`]; an I/O error from writing a finished block. After
    /// any error the builder is unusable.
    pub fn add(&mut self, user_key: &[u8], seq: SeqNo, value: &Value) -> Result<()> {
        let value = match value {
            Value::Put(v) => Some(v.as_ref()),
            Value::Delete => None,
        };
        self.add_entry(user_key, seq, value)
    }

    /// [`add`](Self::add) with a borrowed value (`None`: a tombstone), so a
    /// caller holding the bytes elsewhere (a memtable) copies them once.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub fn add_entry(&mut self, user_key: &[u8], seq: SeqNo, value: Option<&[u8]>) -> Result<()> {
        self.check_usable()?;
        let kind = match value {
            Some(_) => ValueKind::Put,
            None => ValueKind::Delete,
        };
        let r = self.add_inner(user_key, seq, kind, value.unwrap_or_default());
        self.failed = r.is_err();
        r
    }

    fn add_inner(
        &mut self,
        user_key: &[u8],
        seq: SeqNo,
        kind: ValueKind,
        value_bytes: &[u8],
    ) -> Result<()> {
        if seq > MAX_SEQ {
            return Err(invalid(
                &self.path,
                format!("sequence number {seq} exceeds 2^56 - 1"),
            ));
        }
        if user_key.len().saturating_add(value_bytes.len()) > MAX_ENTRY_LEN {
            return Err(invalid(
                &self.path,
                format!(
                    "entry of {} key and {} value bytes is too large",
                    user_key.len(),
                    value_bytes.len()
                ),
            ));
        }
        let new_user_key = match self.last {
            None => true,
            Some((last_seq, _)) => {
                let last_key = &self.last_key[..self.last_key.len() - TRAILER_LEN];
                match last_key.cmp(user_key) {
                    Ordering::Less => true,
                    Ordering::Equal if seq < last_seq => false,
                    _ => {
                        let why = format!(
                            "entry {user_key:?}@{seq} does not sort after {last_key:?}@{last_seq}"
                        );
                        return Err(invalid(&self.path, why));
                    }
                }
            }
        };
        self.last_key.clear();
        encode_internal_key(&mut self.last_key, user_key, seq, kind);
        self.block.add(&self.last_key, value_bytes);

        if new_user_key {
            if let Some(b) = &mut self.bloom {
                b.add_key(user_key);
            }
        }
        let t = &mut self.totals;
        if t.entries == 0 {
            t.min_seq = seq;
            t.max_seq = seq;
        }
        t.entries += 1;
        t.tombstones += u64::from(kind == ValueKind::Delete);
        t.raw_key_bytes += user_key.len() as u64;
        t.raw_value_bytes += value_bytes.len() as u64;
        t.min_seq = t.min_seq.min(seq);
        t.max_seq = t.max_seq.max(seq);
        if self.first.is_none() {
            self.first = Some(InternalKey {
                user_key: Bytes::copy_from_slice(user_key),
                seq,
                kind,
            });
        }
        self.last = Some((seq, kind));

        if self.block.size_estimate() >= self.opts.block_size {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Entries added so far.
    #[must_use]
    pub fn num_entries(&self) -> u64 {
        self.totals.entries
    }

    /// About how large the file would be if finished now (data written and
    /// pending; metadata not counted). For splitting compaction output.
    #[must_use]
    pub fn estimated_size(&self) -> u64 {
        self.offset + self.block.size_estimate() as u64
    }

    /// Finishes the table: writes the last data block, the filter, the
    /// properties, the index and the footer, and hands every byte to the
    /// file. Returns what the table holds and the file handle, which the
    /// caller syncs (then syncs the directory) before publishing the table.
    ///
    /// # Errors
    /// `InvalidInput` if no entry was added (a table holds at least one;
    /// delete the file instead), an earlier error, or an I/O error.
    pub fn finish(mut self) -> Result<(TableMeta, Box<dyn WritableFile>)> {
        self.check_usable()?;
        let (Some(first), Some((last_seq, last_kind))) = (self.first.take(), self.last.take())
        else {
            return Err(invalid(
                &self.path,
                "a table needs at least one entry".into(),
            ));
        };
        let last_key = Bytes::copy_from_slice(&self.last_key[..self.last_key.len() - TRAILER_LEN]);
        if !self.block.is_empty() {
            self.flush_data_block()?;
        }
        let filter = match self.bloom.take() {
            Some(b) => Some(self.write_block(&b.finish())?),
            None => None,
        };
        let t = &self.totals;
        let properties = TableProperties {
            format_version: FORMAT_VERSION,
            partition_id: self.partition_id,
            entry_count: t.entries,
            tombstone_count: t.tombstones,
            data_block_count: t.data_blocks,
            raw_key_bytes: t.raw_key_bytes,
            raw_value_bytes: t.raw_value_bytes,
            min_seq: t.min_seq,
            max_seq: t.max_seq,
            smallest_key: first.user_key.clone(),
            largest_key: last_key.clone(),
        };
        let props_handle = self.write_block(&properties.encode())?;
        let index = std::mem::take(&mut self.index).finish();
        let index_handle = self.write_block(&index)?;
        let footer = Footer {
            index: index_handle,
            filter,
            properties: props_handle,
            format_version: FORMAT_VERSION,
        };
        let footer = footer.encode();
        self.out.extend_from_slice(&footer);
        self.offset += footer.len() as u64;
        self.flush_out()?;
        let meta = TableMeta {
            file_size: self.offset,
            properties,
            smallest: first,
            largest: InternalKey {
                user_key: last_key,
                seq: last_seq,
                kind: last_kind,
            },
        };
        Ok((meta, self.file))
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(invalid(
                &self.path,
                "table builder failed earlier; abandon the file".into(),
            ));
        }
        Ok(())
    }

    /// Writes the current data block and its index entry.
    fn flush_data_block(&mut self) -> Result<()> {
        let block = std::mem::replace(
            &mut self.block,
            BlockBuilder::new(self.opts.restart_interval),
        );
        let handle = self.write_block(&block.finish())?;
        self.index.add(&self.last_key, handle);
        self.totals.data_blocks += 1;
        if self.out.len() >= WRITE_BUFFER {
            self.flush_out()?;
        }
        Ok(())
    }

    /// Writes `contents` and its trailer at the current offset: buffered,
    /// or, for a block of [`WRITE_BUFFER`] bytes or more (a large filter or
    /// index, a large value), handed to the file at once, so `out` stays
    /// small (a large buffer freed would raise glibc's mmap threshold, see
    /// `mem.rs`).
    fn write_block(&mut self, contents: &[u8]) -> Result<BlockHandle> {
        let handle = BlockHandle {
            offset: self.offset,
            size: contents.len() as u64,
        };
        if contents.len() >= WRITE_BUFFER {
            self.flush_out()?;
            if let Err(e) = self.file.append(contents) {
                self.failed = true;
                return Err(e.into());
            }
        } else {
            self.out.extend_from_slice(contents);
        }
        let before = self.out.len();
        write_trailer(contents, &mut self.out);
        self.offset += (contents.len() + self.out.len() - before) as u64;
        Ok(handle)
    }

    fn flush_out(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.file.append(&self.out);
        self.out.clear();
        if r.is_err() {
            self.failed = true;
        }
        Ok(r?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sst::tests::MemFile;

    fn builder(opts: &TableOptions) -> (TableBuilder, MemFile) {
        let file = MemFile::default();
        let b = TableBuilder::new(Box::new(file.clone()), PathBuf::from("t.sst"), 1, opts);
        (b, file)
    }

    fn put(v: &[u8]) -> Value {
        Value::Put(Bytes::copy_from_slice(v))
    }

    #[test]
    fn out_of_order_entries_are_refused_and_poison_the_builder() {
        for (k1, s1, k2, s2) in [
            (&b"b"[..], 1, &b"a"[..], 1),
            (b"a", 1, b"a", 1),
            (b"a", 1, b"a", 2),
        ] {
            let (mut b, _) = builder(&TableOptions::default());
            b.add(k1, s1, &put(b"v")).unwrap();
            let err = b.add(k2, s2, &put(b"v")).unwrap_err();
            assert!(matches!(&err, Error::Io(e) if e.kind() == io::ErrorKind::InvalidInput));
            assert!(b.add(b"z", 1, &put(b"v")).is_err());
            assert!(b.finish().is_err());
        }
    }

    #[test]
    fn oversized_sequence_numbers_are_refused() {
        let (mut b, _) = builder(&TableOptions::default());
        assert!(b.add(b"a", MAX_SEQ + 1, &Value::Delete).is_err());
        let (mut b, _) = builder(&TableOptions::default());
        b.add(b"a", MAX_SEQ, &Value::Delete).unwrap();
        b.finish().unwrap();
    }

    #[test]
    fn an_empty_table_is_refused() {
        let (b, file) = builder(&TableOptions::default());
        assert!(b.finish().is_err());
        assert!(file.contents().is_empty());
    }

    #[test]
    fn meta_describes_the_table() {
        let opts = TableOptions {
            block_size: 64,
            ..TableOptions::default()
        };
        let (mut b, file) = builder(&opts);
        b.add(b"a", 9, &put(b"1")).unwrap();
        b.add(b"a", 4, &Value::Delete).unwrap();
        for i in 0..20u32 {
            b.add(format!("k{i:02}").as_bytes(), 7, &put(&[0xee; 10]))
                .unwrap();
        }
        assert!(b.estimated_size() > 0);
        assert_eq!(b.num_entries(), 22);
        let (meta, _) = b.finish().unwrap();
        assert_eq!(meta.file_size, file.contents().len() as u64);
        let p = &meta.properties;
        assert_eq!(p.entry_count, 22);
        assert_eq!(p.tombstone_count, 1);
        assert!(p.data_block_count > 5, "{}", p.data_block_count);
        assert_eq!(p.raw_key_bytes, 2 + 20 * 3);
        assert_eq!(p.raw_value_bytes, 1 + 200);
        assert_eq!((p.min_seq, p.max_seq), (4, 9));
        assert_eq!(p.smallest_key, &b"a"[..]);
        assert_eq!(p.largest_key, &b"k19"[..]);
        assert_eq!(p.partition_id, 1);
        assert_eq!(
            meta.smallest,
            InternalKey {
                user_key: Bytes::from_static(b"a"),
                seq: 9,
                kind: ValueKind::Put
            }
        );
        assert_eq!(meta.largest.user_key, &b"k19"[..]);
        assert_eq!(meta.largest.seq, 7);
    }

    #[test]
    fn write_errors_poison_the_builder() {
        let opts = TableOptions {
            block_size: 16,
            ..TableOptions::default()
        };
        let (mut b, file) = builder(&opts);
        file.fail_appends(true);
        // Blocks are buffered; keep adding until a write is attempted.
        let mut failed = false;
        for i in 0..100_000u32 {
            if b.add(format!("{i:08}").as_bytes(), 1, &put(b"value"))
                .is_err()
            {
                failed = true;
                break;
            }
        }
        assert!(failed);
        file.fail_appends(false);
        assert!(b.add(b"zzzzzzzzz", 1, &put(b"v")).is_err());
        assert!(b.finish().is_err());
    }
}
