//! Sorted string tables (SSTables): immutable files of versioned entries in
//! internal-key order. The byte format is specified in
//! `docs/format/sstable.md`; each on-disk structure has its own module:
//!
//! ```text
//! +--------------+-----+--------------+--------+------------+-------+--------+
//! | data block 0 | ... | data block n | filter | properties | index | footer |
//! +--------------+-----+--------------+--------+------------+-------+--------+
//!   block.rs                            bloom.rs  properties.rs index.rs footer.rs
//! ```
//!
//! - [`internal_key`]: keys in tables are `user key ++ 8-byte trailer`
//!   (sequence number and kind), ordered by [`compare_internal`].
//! - [`block`]: prefix-compressed entries with restart points; data blocks
//!   and the index block share it.
//! - [`handle`]: a [`BlockHandle`] locates a block; every block, filter and
//!   properties record on disk is followed by a 5-byte trailer (compression
//!   type and masked CRC-32).
//! - [`index`]: one entry per data block (its last key and its
//!   [`BlockHandle`]).
//! - [`bloom`]: one bloom filter over the table's user keys.
//! - [`properties`]: counts, key and sequence ranges, partition id.
//! - [`footer`]: fixed 64 bytes at the end: handles, format version, CRC,
//!   magic.
//! - [`builder`]: [`TableBuilder`] writes a table; [`table`]: [`Table`] reads
//!   one ([`Table::get`], [`Table::iter`]).
//!
//! Decoders take bytes from disk and never panic; a decoder's error is a
//! [`DecodeError`] (offset relative to the bytes it was given), which the
//! table turns into [`Error::Corruption`] naming the file and the absolute
//! offset.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use crate::error::Error;

pub mod block;
pub mod bloom;
pub mod builder;
pub mod footer;
pub mod handle;
pub mod index;
pub mod internal_key;
pub mod properties;
mod readahead;
pub mod table;

#[cfg(test)]
mod tests;

pub use block::{Block, BlockIter};
pub use bloom::BloomFilter;
pub use builder::{TableBuilder, TableMeta, TableOptions};
pub use footer::{Footer, FORMAT_VERSION, MAGIC};
pub use handle::BlockHandle;
pub use internal_key::{compare_internal, InternalKey, ValueKind, MAX_SEQ};
pub use properties::TableProperties;
pub use table::{Table, TableIter, TableReadOptions};

/// Why bytes from disk did not decode: an offset relative to the start of
/// the bytes handed to the decoder, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the damage within the decoded bytes.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl DecodeError {
    /// An error at `offset` of the decoded bytes.
    pub fn new(offset: usize, reason: impl Into<String>) -> Self {
        DecodeError {
            offset: offset as u64,
            reason: reason.into(),
        }
    }

    /// The corruption error of `file` when the decoded bytes started at
    /// `base` in that file.
    pub fn at(self, file: &Path, base: u64) -> Error {
        Error::Corruption {
            file: file.to_path_buf(),
            offset: base.saturating_add(self.offset),
            reason: self.reason,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.offset, self.reason)
    }
}

pub use crate::coding::{mask_crc, masked_crc};

pub(crate) use crate::error::corruption;
