//! Blocks: sorted key/value entries with prefix compression and restart
//! points (data blocks and the index block).
//!
//! Block contents:
//!
//! ```text
//! entry*  restart: u32 LE × n  n: u32 LE
//! entry = shared: varint | unshared: varint | value_len: varint
//!         | key delta: unshared B | value: value_len B
//! ```
//!
//! An entry's key is the first `shared` bytes of the previous entry's key
//! followed by its `key delta`. Every `restart_interval`-th entry (16 in data
//! blocks, every entry in the index block) is a *restart point*: it stores
//! its whole key (`shared` = 0), and its offset within the block is listed in
//! the restart array, so a seek binary-searches the restart points and then
//! scans at most one interval. Varints are unsigned LEB128. Keys are internal
//! keys ordered by [`compare_internal`].
//!
//! On disk a block is followed by the 5-byte trailer of
//! [`handle`](super::handle) (compression type, masked CRC-32), and is
//! located by a [`BlockHandle`](super::handle::BlockHandle).
//!
//! Example (restart interval 2): entries `("a",2,put) = "x"`,
//! `("a",1,delete)`, `("ab",5,put) = "yz"` make the 51-byte block
//!
//! ```text
//! 00 09 01 | 61 01 02 00 00 00 00 00 00 | 78       shared 0, full key, "x"
//! 01 08 00 | 00 01 00 00 00 00 00 00               shares "a"
//! 00 0a 02 | 61 62 01 05 00 00 00 00 00 00 | 79 7a restart point at 24
//! 00 00 00 00 | 18 00 00 00 | 02 00 00 00          restarts [0, 24], n = 2
//! ```
//!
//! followed on disk by the trailer `00 | da a8 f9 1a` (pinned by
//! `golden_bytes_of_a_small_block`).

use std::ops::Range;

use bytes::Bytes;

use super::internal_key::compare_internal;
use super::DecodeError;
use crate::coding::{put_varint, KeyBuf, Reader};

/// Width of one restart offset.
pub const RESTART_LEN: usize = 4;
/// Width of the restart count at the end of a block.
pub const NUM_RESTARTS_LEN: usize = 4;
/// Restart interval of data blocks.
pub const DEFAULT_RESTART_INTERVAL: usize = 16;
/// The smallest valid block: one restart offset and the count (the entry
/// itself needs at least three more bytes, checked separately).
const MIN_BLOCK_LEN: usize = RESTART_LEN + NUM_RESTARTS_LEN;

/// Builds the contents of one block from entries added in increasing
/// internal-key order.
///
/// # Invariants
/// The contents stay below 4 GiB (restart offsets are u32): the table
/// builder bounds entry and block sizes.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    /// Entries since the last restart point.
    counter: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    /// An empty block with a restart point every `restart_interval` entries
    /// (at least 1).
    #[must_use]
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            restart_interval: restart_interval.max(1),
            counter: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Appends an entry.
    ///
    /// # Panics
    /// In debug builds, if `key` does not sort after the previous key.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(
            self.entries == 0 || compare_internal(&self.last_key, key) == std::cmp::Ordering::Less,
            "block keys out of order"
        );
        let shared = if self.counter < self.restart_interval {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            debug_assert!(u32::try_from(self.buf.len()).is_ok(), "block over 4 GiB");
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
            0
        };
        let delta = key.get(shared..).unwrap_or_default();
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, delta.len() as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(delta);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(delta);
        self.counter += 1;
        self.entries += 1;
    }

    /// The size [`finish`](Self::finish) would return.
    #[must_use]
    pub fn size_estimate(&self) -> usize {
        self.buf.len() + self.restarts.len() * RESTART_LEN + NUM_RESTARTS_LEN
    }

    /// Whether no entry was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entries added so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
    }

    /// The last key added (empty before the first).
    #[must_use]
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// The block's contents: entries, restart array, restart count.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        for r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.buf
    }
}

/// A decoded block: its contents with a validated restart array.
///
/// Cheap to clone (the contents are shared `Bytes`); `Send + Sync`.
///
/// # Invariants
/// At least one restart point; the first is 0; restart offsets strictly
/// increase and lie before the restart array. Entries themselves are checked
/// as they are read.
#[derive(Debug, Clone)]
pub struct Block {
    data: Bytes,
    restarts_offset: usize,
    num_restarts: usize,
}

/// One parsed entry: its shared prefix length, where its key delta and
/// value lie in the block, and where the next entry starts.
struct RawEntry {
    shared: usize,
    delta: Range<usize>,
    value: Range<usize>,
    next: usize,
}

impl Block {
    /// Validates the restart array of `contents`.
    ///
    /// # Errors
    /// Too short, no restart points, a restart array that does not fit, or
    /// restart offsets that are not increasing from 0 within the entries.
    pub fn decode(contents: Bytes) -> Result<Block, DecodeError> {
        let len = contents.len();
        if len < MIN_BLOCK_LEN {
            return Err(DecodeError::new(
                0,
                format!("block of {len} bytes is too short"),
            ));
        }
        let count_at = len - NUM_RESTARTS_LEN;
        let mut r = Reader::new(&contents[count_at..]);
        let n = r
            .u32_le("restart count")
            .map_err(|e| DecodeError::new(count_at, e))?;
        let n = n as usize;
        let restarts_offset = n
            .checked_mul(RESTART_LEN)
            .and_then(|b| count_at.checked_sub(b))
            .ok_or_else(|| {
                DecodeError::new(
                    count_at,
                    format!("{n} restart points do not fit a block of {len} bytes"),
                )
            })?;
        if n == 0 {
            return Err(DecodeError::new(count_at, "block has no restart points"));
        }
        let block = Block {
            data: contents,
            restarts_offset,
            num_restarts: n,
        };
        let mut prev: Option<usize> = None;
        for i in 0..n {
            let at = restarts_offset + i * RESTART_LEN;
            let off = block.restart(i);
            let ok = match prev {
                None => off == 0,
                Some(p) => off > p,
            };
            if !ok || off >= restarts_offset {
                return Err(DecodeError::new(
                    at,
                    format!("restart point {i} at {off} is out of order or out of the block"),
                ));
            }
            prev = Some(off);
        }
        Ok(block)
    }

    /// The block's contents (entries and restart array), e.g. to charge a
    /// cache.
    #[must_use]
    pub fn contents(&self) -> &Bytes {
        &self.data
    }

    /// Number of restart points.
    #[must_use]
    pub fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// An iterator over the block, not yet positioned.
    #[must_use]
    pub fn iter(&self) -> BlockIter {
        BlockIter {
            block: self.clone(),
            key: Vec::new(),
            value: 0..0,
            current: 0,
            next: 0,
            valid: false,
        }
    }

    /// Offset of restart point `i`; `usize::MAX` (which fails every later
    /// check) if `i` is out of range, so a logic slip cannot panic.
    fn restart(&self, i: usize) -> usize {
        let at = self.restarts_offset + i * RESTART_LEN;
        match self.data.get(at..at + RESTART_LEN) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => usize::MAX,
        }
    }

    /// Parses the entry at `pos` (bounds-checked against the entry area).
    #[inline]
    fn entry_at(&self, pos: usize) -> Result<RawEntry, DecodeError> {
        // Fast path: the three lengths are one-byte varints (entries of
        // keys and values under 128 bytes) and the entry fits the area.
        if let Some(&[shared, unshared, value_len]) = self
            .data
            .get(..self.restarts_offset)
            .and_then(|area| area.get(pos..pos + 3))
        {
            if (shared | unshared | value_len) < 0x80 {
                let delta_start = pos + 3;
                let value_start = delta_start + usize::from(unshared);
                let next = value_start + usize::from(value_len);
                if next <= self.restarts_offset {
                    return Ok(RawEntry {
                        shared: usize::from(shared),
                        delta: delta_start..value_start,
                        value: value_start..next,
                        next,
                    });
                }
            }
        }
        self.entry_at_slow(pos)
    }

    /// [`entry_at`](Self::entry_at) for any varint widths, and every error.
    fn entry_at_slow(&self, pos: usize) -> Result<RawEntry, DecodeError> {
        let area = self
            .data
            .get(pos..self.restarts_offset)
            .ok_or_else(|| DecodeError::new(pos, "entry offset out of the block"))?;
        let mut r = Reader::new(area);
        let err = |e: String| DecodeError::new(pos, format!("entry: {e}"));
        let shared = r.varint("shared").map_err(err)?;
        let unshared = r.varint("unshared").map_err(err)?;
        let value_len = r.varint("value length").map_err(err)?;
        let too_big = || DecodeError::new(pos, "entry length too large");
        let shared = usize::try_from(shared).map_err(|_| too_big())?;
        let unshared = usize::try_from(unshared).map_err(|_| too_big())?;
        let value_len = usize::try_from(value_len).map_err(|_| too_big())?;
        let delta_start = pos + r.position();
        r.bytes(unshared, "key delta").map_err(err)?;
        r.bytes(value_len, "value").map_err(err)?;
        let value_start = delta_start + unshared;
        Ok(RawEntry {
            shared,
            delta: delta_start..value_start,
            value: value_start..value_start + value_len,
            next: pos + r.position(),
        })
    }
}

impl Block {
    /// The full key stored at restart point `i` (an error if it shares a
    /// prefix, which a restart point must not).
    #[inline]
    fn restart_key(&self, i: usize) -> Result<(usize, RawEntry), DecodeError> {
        let pos = self.restart(i);
        let e = self.entry_at(pos)?;
        if e.shared != 0 {
            return Err(DecodeError::new(
                pos,
                format!("restart point {i} shares {} key bytes", e.shared),
            ));
        }
        Ok((pos, e))
    }

    /// Offset, key and value of the entry at restart point `i` (which must
    /// store its whole key).
    ///
    /// # Errors
    /// The entry does not decode or shares a prefix.
    pub fn restart_entry(&self, i: usize) -> Result<(usize, &[u8], &[u8]), DecodeError> {
        let (pos, e) = self.restart_key(i)?;
        Ok((
            pos,
            self.data.get(e.delta).unwrap_or_default(),
            self.data.get(e.value).unwrap_or_default(),
        ))
    }

    /// The last restart point whose key is `< target`, or 0.
    fn restart_before(&self, target: &[u8]) -> Result<usize, DecodeError> {
        let (mut lo, mut hi) = (0, self.num_restarts - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let (_, e) = self.restart_key(mid)?;
            let key = self.data.get(e.delta).unwrap_or_default();
            if compare_internal(key, target) == std::cmp::Ordering::Less {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// The first entry whose key is `>= target`, as `f(offset, key, value)`
    /// (`None` if every key is smaller): what [`BlockIter::seek`] finds,
    /// with the key assembled in a stack buffer instead of an allocation.
    ///
    /// # Errors
    /// An entry on the way does not decode.
    pub fn seek_with<R>(
        &self,
        target: &[u8],
        f: impl FnOnce(usize, &[u8], &[u8]) -> R,
    ) -> Result<Option<R>, DecodeError> {
        let mut pos = self.restart(self.restart_before(target)?);
        let mut key = KeyBuf::default();
        while pos < self.restarts_offset {
            let e = self.entry_at(pos)?;
            if e.shared > key.as_slice().len() {
                return Err(DecodeError::new(
                    pos,
                    format!(
                        "entry shares {} bytes of a {}-byte previous key",
                        e.shared,
                        key.as_slice().len()
                    ),
                ));
            }
            key.truncate(e.shared);
            key.extend_from_slice(self.data.get(e.delta).unwrap_or_default());
            if compare_internal(key.as_slice(), target) != std::cmp::Ordering::Less {
                let value = self.data.get(e.value).unwrap_or_default();
                return Ok(Some(f(pos, key.as_slice(), value)));
            }
            pos = e.next;
        }
        Ok(None)
    }

    /// `value`, a sub-slice of this block, as a shared slice of the block's
    /// buffer (no copy); any other slice is copied.
    #[must_use]
    pub fn share(&self, value: &[u8]) -> Bytes {
        let start = (value.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
        match start.checked_add(value.len()) {
            Some(end) if end <= self.data.len() => self.data.slice(start..end),
            _ => Bytes::copy_from_slice(value),
        }
    }
}

/// A cursor over one block's entries in order. Owns its block (a cheap
/// clone), so it can outlive the reference it came from; `Send + Sync`.
///
/// After an error the cursor is invalid; call a seek to reuse it.
#[derive(Debug, Clone)]
pub struct BlockIter {
    block: Block,
    key: Vec<u8>,
    value: Range<usize>,
    /// Offset of the current entry.
    current: usize,
    /// Offset of the entry after the current one.
    next: usize,
    valid: bool,
}

impl BlockIter {
    /// Whether the cursor is on an entry.
    #[must_use]
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current key (meaningful only when [`valid`](Self::valid)).
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current value (empty unless [`valid`](Self::valid)).
    #[must_use]
    pub fn value(&self) -> &[u8] {
        self.block.data.get(self.value.clone()).unwrap_or_default()
    }

    /// The current value as a slice of the block's shared buffer (no copy;
    /// it keeps the block's memory alive).
    #[must_use]
    pub fn value_bytes(&self) -> Bytes {
        if self.value.end <= self.block.data.len() {
            self.block.data.slice(self.value.clone())
        } else {
            Bytes::new()
        }
    }

    /// Offset of the current entry within the block, for error messages.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.current
    }

    /// The block this cursor reads.
    #[must_use]
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// Positions on the first entry.
    ///
    /// # Errors
    /// The entry does not decode.
    pub fn seek_to_first(&mut self) -> Result<(), DecodeError> {
        self.key.clear();
        self.next = 0;
        self.advance()
    }

    /// Positions on the entry at restart point `i`; invalid if `i` is past
    /// the last one.
    ///
    /// # Errors
    /// The entry does not decode.
    pub fn seek_to_restart(&mut self, i: usize) -> Result<(), DecodeError> {
        self.key.clear();
        self.valid = false;
        if i >= self.block.num_restarts {
            return Ok(());
        }
        self.next = self.block.restart(i);
        self.advance()
    }

    /// Moves to the next entry; at the end the cursor becomes invalid.
    ///
    /// # Errors
    /// The entry does not decode (the cursor becomes invalid).
    pub fn advance(&mut self) -> Result<(), DecodeError> {
        self.valid = false;
        if self.next >= self.block.restarts_offset {
            return Ok(());
        }
        let pos = self.next;
        let e = self.block.entry_at(pos)?;
        if e.shared > self.key.len() {
            return Err(DecodeError::new(
                pos,
                format!(
                    "entry shares {} bytes of a {}-byte previous key",
                    e.shared,
                    self.key.len()
                ),
            ));
        }
        self.key.truncate(e.shared);
        self.key
            .extend_from_slice(self.block.data.get(e.delta).unwrap_or_default());
        self.value = e.value;
        self.current = pos;
        self.next = e.next;
        self.valid = true;
        Ok(())
    }

    /// Positions on the first entry whose key is `>= target` (internal
    /// order); invalid if there is none.
    ///
    /// # Errors
    /// An entry on the way does not decode.
    pub fn seek(&mut self, target: &[u8]) -> Result<(), DecodeError> {
        // The last restart point whose key is < target (or the first).
        let lo = self.block.restart_before(target)?;
        self.key.clear();
        self.next = self.block.restart(lo);
        loop {
            self.advance()?;
            if !self.valid || compare_internal(&self.key, target) != std::cmp::Ordering::Less {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sst::handle::{check_trailer, write_trailer, BlockHandle};
    use crate::sst::internal_key::{encode_internal_key, ValueKind};
    use crate::sst::masked_crc;

    fn ikey(user: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(&mut out, user, seq, kind);
        out
    }

    fn golden_block() -> Vec<u8> {
        let mut b = BlockBuilder::new(2);
        b.add(&ikey(b"a", 2, ValueKind::Put), b"x");
        b.add(&ikey(b"a", 1, ValueKind::Delete), b"");
        b.add(&ikey(b"ab", 5, ValueKind::Put), b"yz");
        b.finish()
    }

    #[rustfmt::skip]
    const GOLDEN_BLOCK: [u8; 51] = [
        0x00, 0x09, 0x01, 0x61, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0x78,
        0x01, 0x08, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
        0x00, 0x0a, 0x02, 0x61, 0x62, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0x79, 0x7a,
        0, 0, 0, 0, 0x18, 0, 0, 0, 0x02, 0, 0, 0,
    ];

    #[test]
    fn golden_bytes_of_a_small_block() {
        let contents = golden_block();
        assert_eq!(contents, GOLDEN_BLOCK);
        let mut raw = contents.clone();
        write_trailer(&contents, &mut raw);
        assert_eq!(&raw[51..], [0x00, 0xda, 0xa8, 0xf9, 0x1a]);
        // The CRC is CRC-32 (IEEE) of contents ++ 0x00, masked.
        let mut plain = contents.clone();
        plain.push(0);
        assert_eq!(
            u32::from_le_bytes([raw[52], raw[53], raw[54], raw[55]]),
            crate::sst::mask_crc(crc32fast::hash(&plain))
        );
        assert_eq!(check_trailer(&raw).unwrap(), &contents[..]);
    }

    #[test]
    fn golden_block_reads_back() {
        let block = Block::decode(Bytes::from(golden_block())).unwrap();
        assert_eq!(block.num_restarts(), 2);
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        let mut got = Vec::new();
        while it.valid() {
            got.push((it.key().to_vec(), it.value().to_vec()));
            it.advance().unwrap();
        }
        assert_eq!(
            got,
            vec![
                (ikey(b"a", 2, ValueKind::Put), b"x".to_vec()),
                (ikey(b"a", 1, ValueKind::Delete), Vec::new()),
                (ikey(b"ab", 5, ValueKind::Put), b"yz".to_vec()),
            ]
        );
    }

    #[test]
    fn seek_finds_the_first_key_at_or_after_the_target() {
        for interval in [1, 2, 3, 16] {
            let mut b = BlockBuilder::new(interval);
            let keys: Vec<Vec<u8>> = (0..50u32)
                .map(|i| ikey(format!("k{:03}", i * 2).as_bytes(), 7, ValueKind::Put))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                b.add(k, format!("v{i}").as_bytes());
            }
            let block = Block::decode(Bytes::from(b.finish())).unwrap();
            let mut it = block.iter();
            for probe in 0..102u32 {
                let target = ikey(format!("k{probe:03}").as_bytes(), 7, ValueKind::Put);
                it.seek(&target).unwrap();
                let want = keys
                    .iter()
                    .position(|k| compare_internal(k, &target) != std::cmp::Ordering::Less);
                match want {
                    Some(i) => {
                        assert!(it.valid());
                        assert_eq!(it.key(), &keys[i][..]);
                        assert_eq!(it.value(), format!("v{i}").as_bytes());
                        assert_eq!(it.value_bytes(), format!("v{i}").as_bytes());
                    }
                    None => assert!(!it.valid()),
                }
            }
            // Before everything.
            it.seek(b"").unwrap();
            assert_eq!(it.key(), &keys[0][..]);
        }
    }

    #[test]
    fn bad_trailers_are_errors() {
        let contents = golden_block();
        let mut raw = contents.clone();
        write_trailer(&contents, &mut raw);
        assert!(check_trailer(&raw[..4]).is_err());
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            assert!(check_trailer(&bad).is_err(), "flip at {i}");
        }
        // A valid CRC over an unknown compression type.
        let mut other = contents.clone();
        other.push(1);
        other.extend_from_slice(&masked_crc(&[&contents, &[1]]).to_le_bytes());
        let err = check_trailer(&other).unwrap_err();
        assert!(err.reason.contains("compression"), "{err}");
    }

    #[test]
    fn bad_restart_arrays_are_errors() {
        assert!(Block::decode(Bytes::from_static(&[0; 7])).is_err());
        // n = 0.
        assert!(Block::decode(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0])).is_err());
        // n too large for the block.
        assert!(Block::decode(Bytes::from_static(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])).is_err());
        // First restart not 0.
        let mut b = golden_block();
        b[39] = 1;
        assert!(Block::decode(Bytes::from(b)).is_err());
        // Restarts not increasing.
        let mut b = golden_block();
        b[43] = 0;
        assert!(Block::decode(Bytes::from(b)).is_err());
        // Restart past the entries.
        let mut b = golden_block();
        b[43] = 39;
        assert!(Block::decode(Bytes::from(b)).is_err());
    }

    #[test]
    fn bad_entries_are_errors_not_panics() {
        // `shared` larger than the previous key.
        let mut b = golden_block();
        b[13] = 0x7f;
        let block = Block::decode(Bytes::from(b)).unwrap();
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        assert!(it.advance().is_err());
        assert!(!it.valid());
        // A restart point that shares bytes.
        let mut b = golden_block();
        b[24] = 1;
        let block = Block::decode(Bytes::from(b)).unwrap();
        assert!(block.iter().seek(&ikey(b"b", 0, ValueKind::Put)).is_err());
        // A value running past the entries.
        let mut b = golden_block();
        b[26] = 0x40;
        let block = Block::decode(Bytes::from(b)).unwrap();
        let mut it = block.iter();
        it.seek_to_first().unwrap();
        it.advance().unwrap();
        assert!(it.advance().is_err());
    }

    /// Decoding arbitrary and mutated bytes never panics (an in-crate
    /// stand-in for the fuzz target).
    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let golden = golden_block();
        for round in 0..20_000 {
            let mut data = if round % 2 == 0 {
                golden.clone()
            } else {
                (0..rnd() % 64).map(|_| rnd() as u8).collect()
            };
            for _ in 0..(rnd() % 4) {
                if !data.is_empty() {
                    let i = (rnd() as usize) % data.len();
                    data[i] = rnd() as u8;
                }
            }
            let _ = check_trailer(&data);
            let _ = BlockHandle::decode(&data);
            if let Ok(block) = Block::decode(Bytes::from(data)) {
                let mut it = block.iter();
                let _ = it.seek(&ikey(b"a", 1, ValueKind::Put));
                if it.seek_to_first().is_ok() {
                    for _ in 0..100 {
                        if !it.valid() || it.advance().is_err() {
                            break;
                        }
                        let _ = (it.key(), it.value(), it.value_bytes());
                    }
                }
            }
        }
    }
}
