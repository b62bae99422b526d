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
use super::internal_key::{compare_internal, parse_internal_key, split};
use super::DecodeError;
use crate::coding::compare_bytes;

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
///
/// Besides the block it keeps a search array: for entry *i*, the 8 bytes of
/// its user key that follow the prefix every index key shares, as a
/// big-endian word (zero-padded). Words never decrease along the entries,
/// so a seek binary-searches the dense array (8 bytes per data block, a
/// few cache lines) and compares whole keys only among entries whose word
/// equals the target's — instead of two cache misses (restart offset, then
/// entry) per step through the block.
#[derive(Debug, Clone)]
pub struct IndexBlock {
    block: Block,
    count: u64,
    last_key: Bytes,
    /// The user-key prefix every entry shares.
    prefix: Bytes,
    /// One search word per entry (see the type docs).
    words: std::sync::Arc<[u64]>,
    /// Every [`STRIDE`]th word, from the first: searched first, it narrows
    /// a seek down to [`STRIDE`] words (two or three cache lines) without
    /// the cache misses of a binary search's first steps over `words`.
    sampled: std::sync::Arc<[u64]>,
}

/// Entries per sampled search word.
const STRIDE: usize = 16;

/// The search word of `user_key` after its first `skip` bytes.
#[inline]
fn search_word(user_key: &[u8], skip: usize) -> u64 {
    let rest = user_key.get(skip..).unwrap_or_default();
    let mut w = [0u8; 8];
    let n = rest.len().min(8);
    w[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(w)
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
        // Where each entry starts: restart point `i` must be entry `i`
        // (lookups go through the restart points, so an entry they reach
        // must be one checked here).
        let mut starts = Vec::with_capacity(block.num_restarts());
        while it.valid() {
            let at = it.offset();
            starts.push(at);
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
        // Sorted keys: the prefix the first and last share, all share.
        let mut first = block.iter();
        first.seek_to_first()?;
        let first_user = split(first.key()).0;
        let last_key = prev.unwrap_or_default();
        let last_user = split(&last_key).0;
        let lcp = first_user
            .iter()
            .zip(last_user)
            .take_while(|(a, b)| a == b)
            .count();
        let prefix = Bytes::copy_from_slice(&first_user[..lcp]);
        let mut words = Vec::with_capacity(block.num_restarts());
        for (i, &start) in starts.iter().enumerate() {
            let (pos, key, _) = block.restart_entry(i)?;
            if pos != start {
                return Err(DecodeError::new(
                    pos,
                    format!("restart point {i} at {pos}, but index entry {i} starts at {start}"),
                ));
            }
            words.push(search_word(split(key).0, lcp));
        }
        let sampled = words.iter().step_by(STRIDE).copied().collect();
        Ok(IndexBlock {
            block,
            count,
            last_key: Bytes::from(last_key),
            prefix,
            words: words.into(),
            sampled,
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
            + (self.words.len() + self.sampled.len()) * 8
            + self.prefix.len()
    }

    /// The number of the first entry whose key is `>= target` (`len()` if
    /// none): the search array narrows it down, whole keys decide ties.
    fn find(&self, target: &[u8]) -> Result<usize, DecodeError> {
        let user = split(target).0;
        let n = self.words.len();
        let mut i = if user.starts_with(&self.prefix) {
            let t = search_word(user, self.prefix.len());
            // The sampled words bracket the first word `>= t`: after the
            // last sample below `t`, at most at the first one not below.
            let k = self.sampled.partition_point(|&w| w < t);
            let lo = (k * STRIDE).saturating_sub(STRIDE - 1);
            let hi = (k * STRIDE).min(n);
            lo + self
                .words
                .get(lo..hi)
                .map_or(0, |w| w.partition_point(|&w| w < t))
        } else if compare_bytes(user, &self.prefix) == Ordering::Less {
            // Below every key's prefix: before every entry.
            0
        } else {
            // Above every key's prefix: past every entry.
            n
        };
        // Entries with words below the target's are smaller, above larger;
        // among equal words (a contiguous run, usually 0 or 1 entries but
        // possibly many), binary-search the whole keys.
        // The run is walked a few words, then (a long run: keys that agree
        // in the 8 bytes after the shared prefix) binary-searched.
        let t = search_word(user, self.prefix.len());
        let mut hi = i;
        while hi < i + 4 && self.words.get(hi) == Some(&t) {
            hi += 1;
        }
        if hi == i + 4 {
            hi += self
                .words
                .get(hi..)
                .map_or(0, |w| w.partition_point(|&w| w == t));
        }
        while i < hi {
            let mid = i + (hi - i) / 2;
            let (_, key, _) = self.block.restart_entry(mid)?;
            if compare_internal(key, target) == Ordering::Less {
                i = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(i.min(n))
    }

    /// The handle of the only data block that can hold the first entry
    /// `>= target`, or `None` if every entry is smaller.
    ///
    /// # Errors
    /// An index entry does not decode.
    pub fn seek(&self, target: &[u8]) -> Result<Option<BlockHandle>, DecodeError> {
        // Every entry is a restart point (checked at decode): nothing copied.
        let i = self.find(target)?;
        if i >= self.words.len() {
            return Ok(None);
        }
        let (at, _, value) = self.block.restart_entry(i)?;
        BlockHandle::decode(value)
            .map(Some)
            .map_err(|e| DecodeError::new(at, e.reason))
    }

    /// A cursor over the index entries, not yet positioned.
    #[must_use]
    pub fn iter(&self) -> IndexIter {
        IndexIter {
            it: self.block.iter(),
            index: self.clone(),
        }
    }
}

/// A cursor over an index: one data block handle at a time. Owned;
/// `Send + Sync`.
#[derive(Debug, Clone)]
pub struct IndexIter {
    it: BlockIter,
    index: IndexBlock,
}

impl IndexIter {
    /// Positions on the first block that can hold an entry `>= target`.
    ///
    /// # Errors
    /// An index entry does not decode.
    pub fn seek(&mut self, target: &[u8]) -> Result<(), DecodeError> {
        let i = self.index.find(target)?;
        self.it.seek_to_restart(i)
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
    fn search_array_seek_agrees_with_a_linear_scan() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut checked = 0;
        for shape in 0..6u64 {
            for _ in 0..40 {
                // Keys sharing a long prefix, runs equal in the 8 bytes after
                // it (shape 2), lengths around the word, several versions.
                let n = 1 + (next() % 60) as usize;
                let mut keys: Vec<(Vec<u8>, u64)> = (0..n)
                    .map(|_| {
                        let mut k = match shape {
                            0 => Vec::new(),
                            1 => b"tenant/0042/".to_vec(),
                            2 => b"p/AAAAAAAAAAAA".to_vec(),
                            _ => vec![b'x'; (next() % 12) as usize],
                        };
                        for _ in 0..(next() % 10) {
                            k.push(b"ab\0\xff"[(next() % 4) as usize]);
                        }
                        if shape == 2 && next() % 8 == 0 {
                            k = b"q".to_vec();
                        }
                        (k, next() % 4)
                    })
                    .collect();
                keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                keys.dedup();
                let encoded: Vec<Vec<u8>> = keys.iter().map(|(k, s)| ikey(k, *s)).collect();
                let mut b = IndexBuilder::new();
                let mut off = 0;
                for (i, k) in encoded.iter().enumerate() {
                    let h = BlockHandle {
                        offset: off,
                        size: i as u64,
                    };
                    b.add(k, h);
                    off = h.end_with_trailer().unwrap();
                }
                let idx = IndexBlock::decode(Bytes::from(b.finish()), off).unwrap();
                for probe in 0..80 {
                    let target = if probe % 3 == 0 {
                        let (k, _) = &keys[(next() as usize) % keys.len()];
                        ikey(k, next() % 5)
                    } else {
                        let mut k = keys[(next() as usize) % keys.len()].0.clone();
                        k.truncate((next() as usize) % (k.len() + 1));
                        for _ in 0..(next() % 3) {
                            k.push(b"ab\0\xffq"[(next() % 5) as usize]);
                        }
                        ikey(&k, next() % 5)
                    };
                    let want = encoded
                        .iter()
                        .position(|k| compare_internal(k, &target) != Ordering::Less);
                    let got = idx.seek(&target).unwrap().map(|h| h.size as usize);
                    assert_eq!(got, want, "target {target:?} in {keys:?}");
                    let mut it = idx.iter();
                    it.seek(&target).unwrap();
                    assert_eq!(it.handle().unwrap().map(|h| h.size as usize), want);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 40 * 80);
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

    #[test]
    fn a_restart_point_inside_an_entry_is_an_error() {
        // Entry 0's user key is itself the bytes of an entry (key "zz",
        // a handle to a block the tiling never checked); restart point 1
        // points at it instead of at entry 1. Every entry iterated in
        // order is fine, so only checking the restart points finds it.
        let entry = |key: &[u8], value: &[u8]| {
            let mut e = vec![0, key.len() as u8, value.len() as u8];
            e.extend_from_slice(key);
            e.extend_from_slice(value);
            e
        };
        let fake = entry(
            &ikey(b"zz", 1),
            &BlockHandle {
                offset: 5000,
                size: 1,
            }
            .encode(),
        );
        let first = BlockHandle {
            offset: 0,
            size: 100,
        };
        let second = BlockHandle {
            offset: first.end_with_trailer().unwrap(),
            size: 50,
        };
        let mut contents = entry(&ikey(&fake, 1), &first.encode());
        let entry1 = contents.len();
        contents.extend(entry(&ikey(b"b", 1), &second.encode()));
        let end = second.end_with_trailer().unwrap();
        for restart1 in [entry1, 3] {
            let mut block = contents.clone();
            for r in [0u32, restart1 as u32, 2] {
                block.extend_from_slice(&r.to_le_bytes());
            }
            let got = IndexBlock::decode(Bytes::from(block), end);
            if restart1 == entry1 {
                assert_eq!(got.unwrap().len(), 2);
            } else {
                let Err(err) = got else {
                    panic!("a restart point inside entry 0 was accepted");
                };
                assert!(err.reason.contains("restart point 1"), "{err}");
            }
        }
    }
}
