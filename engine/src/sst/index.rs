//! The index block: one entry per data block, in file order.
//!
//! It is a [`block`](super::block) with a restart point at every entry (so a
//! seek is a plain binary search). Entry *i*'s key is the last internal key
//! of data block *i*; its value is that block's [`BlockHandle`] (two
//! varints). The first data block whose index key is `>= target` is the only
//! one that can hold the first entry `>= target`.
//!
//! Readers check the whole index when a table is opened: every key is a
//! valid internal key and larger than the one before, and the handles tile
//! the data region exactly (the first at offset 0, each next one right after
//! the previous block's trailer, the last ending where the metadata starts).
//!
//! Example: a table with one data block of 21 bytes whose last key is `k`
//! at sequence 5 (put) has the 22-byte index block
//! `00 09 02 | 6b 01 05 00 00 00 00 00 00 | 00 15 | 00 00 00 00 | 01 00 00 00`
//! (pinned by the whole-table golden test in `sst/tests.rs`).

use std::cmp::Ordering;

use bytes::Bytes;

use super::block::{Block, BlockBuilder, BlockIter};
use super::handle::BlockHandle;
use super::internal_key::{compare_internal, parse_internal_key};
use super::DecodeError;

/// Builds an index block.
#[derive(Debug)]
pub struct IndexBuilder {
    block: BlockBuilder,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl IndexBuilder {
    /// An empty index.
    #[must_use]
    pub fn new() -> Self {
        IndexBuilder {
            block: BlockBuilder::new(1),
        }
    }

    /// Adds the entry of the next data block: its last key and its handle.
    ///
    /// # Panics
    /// In debug builds, if `last_key` does not sort after the previous one.
    pub fn add(&mut self, last_key: &[u8], handle: BlockHandle) {
        self.block.add(last_key, &handle.encode());
    }

    /// The index block's contents.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        self.block.finish()
    }
}

/// A decoded, validated index block. Cheap to clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct IndexBlock {
    block: Block,
    count: u64,
    last_key: Bytes,
}

impl IndexBlock {
    /// Decodes an index block and validates every entry against a data
    /// region of `data_end` bytes (see the module docs).
    ///
    /// # Errors
    /// A bad block, key, handle, order or tiling. Offsets are relative to
    /// the index block's contents.
    pub fn decode(contents: Bytes, data_end: u64) -> Result<IndexBlock, DecodeError> {
        let block = Block::decode(contents)?;
        let mut it = block.iter();
        it.seek_to_first()?;
        let mut count = 0u64;
        let mut expected_offset = 0u64;
        let mut prev: Option<Vec<u8>> = None;
        while it.valid() {
            let at = it.offset();
            parse_internal_key(it.key()).map_err(|e| DecodeError::new(at, e.reason))?;
            if let Some(p) = &prev {
                if compare_internal(p, it.key()) != Ordering::Less {
                    return Err(DecodeError::new(at, "index keys out of order"));
                }
            }
            let h = BlockHandle::decode(it.value())
                .map_err(|e| DecodeError::new(at, format!("index entry: {}", e.reason)))?;
            if h.offset != expected_offset {
                return Err(DecodeError::new(
                    at,
                    format!(
                        "data block {count} at {} where {expected_offset} was expected",
                        h.offset
                    ),
                ));
            }
            expected_offset = match h.end_with_trailer() {
                Some(end) if end <= data_end => end,
                _ => {
                    return Err(DecodeError::new(
                        at,
                        format!("data block {count} ends past the data region ({data_end} bytes)"),
                    ))
                }
            };
            count += 1;
            prev = Some(it.key().to_vec());
            it.advance()?;
        }
        if usize::try_from(count).ok() != Some(block.num_restarts()) {
            return Err(DecodeError::new(
                0,
                format!(
                    "{count} index entries but {} restart points (one per entry expected)",
                    block.num_restarts()
                ),
            ));
        }
        if expected_offset != data_end {
            return Err(DecodeError::new(
                0,
                format!("data blocks end at {expected_offset}, the data region at {data_end}"),
            ));
        }
        Ok(IndexBlock {
            block,
            count,
            last_key: Bytes::from(prev.unwrap_or_default()),
        })
    }

    /// Number of data blocks.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the index is empty (never, once decoded).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last internal key of the table.
    #[must_use]
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Bytes held in memory (for cache accounting).
    #[must_use]
    pub fn size(&self) -> usize {
        self.block.contents().len()
    }

    /// The handle of the only data block that can hold the first entry
    /// `>= target`, or `None` if every entry is smaller.
    ///
    /// # Errors
    /// An index entry does not decode.
    pub fn seek(&self, target: &[u8]) -> Result<Option<BlockHandle>, DecodeError> {
        // Every entry is a restart point (checked at decode): a binary search
        // over the restart array, nothing copied.
        match self.block.seek_restarts(target)? {
            None => Ok(None),
            Some((at, value)) => BlockHandle::decode(value)
                .map(Some)
                .map_err(|e| DecodeError::new(at, e.reason)),
        }
    }

    /// A cursor over the index entries, not yet positioned.
    #[must_use]
    pub fn iter(&self) -> IndexIter {
        IndexIter {
            it: self.block.iter(),
        }
    }
}

/// A cursor over an index: one data block handle at a time. Owned;
/// `Send + Sync`.
#[derive(Debug, Clone)]
pub struct IndexIter {
    it: BlockIter,
}

impl IndexIter {
    /// Positions on the first block that can hold an entry `>= target`.
    ///
    /// # Errors
    /// An index entry does not decode.
    pub fn seek(&mut self, target: &[u8]) -> Result<(), DecodeError> {
        self.it.seek(target)
    }

    /// Positions on the first block.
    ///
    /// # Errors
    /// An index entry does not decode.
    pub fn seek_to_first(&mut self) -> Result<(), DecodeError> {
        self.it.seek_to_first()
    }

    /// Moves to the next block.
    ///
    /// # Errors
    /// An index entry does not decode.
    pub fn advance(&mut self) -> Result<(), DecodeError> {
        self.it.advance()
    }

    /// The current block's handle; `None` past the end.
    ///
    /// # Errors
    /// The entry's value is not a handle.
    pub fn handle(&self) -> Result<Option<BlockHandle>, DecodeError> {
        if !self.it.valid() {
            return Ok(None);
        }
        BlockHandle::decode(self.it.value())
            .map(Some)
            .map_err(|e| DecodeError::new(self.it.offset(), e.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sst::internal_key::{encode_internal_key, ValueKind};

    fn ikey(user: &[u8], seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(&mut out, user, seq, ValueKind::Put);
        out
    }

    fn three_blocks() -> (Vec<u8>, u64) {
        let mut b = IndexBuilder::new();
        let mut off = 0;
        for (i, k) in [&b"b"[..], b"d", b"f"].iter().enumerate() {
            let h = BlockHandle {
                offset: off,
                size: 100 + i as u64,
            };
            b.add(&ikey(k, 1), h);
            off = h.end_with_trailer().unwrap();
        }
        (b.finish(), off)
    }

    #[test]
    fn seek_picks_the_block_that_can_hold_the_target() {
        let (contents, end) = three_blocks();
        let idx = IndexBlock::decode(Bytes::from(contents), end).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.last_key(), &ikey(b"f", 1)[..]);
        let at = |k: &[u8]| idx.seek(&ikey(k, 1)).unwrap().map(|h| h.offset);
        assert_eq!(at(b"a"), Some(0));
        assert_eq!(at(b"b"), Some(0));
        assert_eq!(at(b"c"), Some(105));
        assert_eq!(at(b"d"), Some(105));
        assert_eq!(at(b"e"), Some(211));
        assert_eq!(at(b"f"), Some(211));
        assert_eq!(at(b"g"), None);
        // An older version of the last key of block 0 lies in block 1.
        assert_eq!(
            idx.seek(&ikey(b"b", 0)).unwrap().map(|h| h.offset),
            Some(105)
        );
    }

    #[test]
    fn bad_tilings_are_errors() {
        let (contents, end) = three_blocks();
        assert!(IndexBlock::decode(Bytes::from(contents.clone()), end + 1).is_err());
        assert!(IndexBlock::decode(Bytes::from(contents.clone()), end - 1).is_err());
        // A gap between blocks.
        let mut b = IndexBuilder::new();
        b.add(
            &ikey(b"a", 1),
            BlockHandle {
                offset: 0,
                size: 10,
            },
        );
        b.add(
            &ikey(b"b", 1),
            BlockHandle {
                offset: 16,
                size: 10,
            },
        );
        assert!(IndexBlock::decode(Bytes::from(b.finish()), 31).is_err());
        // A handle whose end overflows.
        let mut b = IndexBuilder::new();
        b.add(
            &ikey(b"a", 1),
            BlockHandle {
                offset: 0,
                size: u64::MAX,
            },
        );
        assert!(IndexBlock::decode(Bytes::from(b.finish()), u64::MAX).is_err());
    }

    #[test]
    fn bad_keys_are_errors() {
        // Keys out of order (built by hand: the builder asserts order).
        let h = BlockHandle { offset: 0, size: 3 }.encode();
        let mut raw = crate::sst::block::BlockBuilder::new(1);
        raw.add(&ikey(b"b", 1), &h);
        let mut contents = raw.finish();
        // Append a second entry "a" by rebuilding with swapped keys.
        let mut swapped = Vec::new();
        for k in [ikey(b"b", 1), ikey(b"a", 1)] {
            swapped.extend_from_slice(&[0, k.len() as u8, h.len() as u8]);
            swapped.extend_from_slice(&k);
            swapped.extend_from_slice(&h);
        }
        let second = 3 + 9 + h.len();
        swapped.extend_from_slice(&0u32.to_le_bytes());
        swapped.extend_from_slice(&(second as u32).to_le_bytes());
        swapped.extend_from_slice(&2u32.to_le_bytes());
        let err = IndexBlock::decode(Bytes::from(swapped), 8).unwrap_err();
        assert!(
            err.reason.contains("order") || err.reason.contains("expected"),
            "{err}"
        );
        // A key without a valid kind.
        let k_at = 3 + 1; // entry header, user key "b"
        contents[k_at] = 9;
        assert!(IndexBlock::decode(Bytes::from(contents), 8).is_err());
    }
}
