//! The properties block: what a table holds, readable without scanning it.
//!
//! Fields in this fixed order (varints are unsigned LEB128):
//!
//! ```text
//! format_version: u32 LE
//! partition_id: varint     entry_count: varint     tombstone_count: varint
//! data_block_count: varint raw_key_bytes: varint   raw_value_bytes: varint
//! min_seq: varint          max_seq: varint
//! smallest_key: varint length + bytes
//! largest_key: varint length + bytes
//! ```
//!
//! `raw_key_bytes` sums the user-key lengths of all entries, `raw_value_bytes`
//! the value lengths of all puts. The keys are user keys. The record must be
//! consumed exactly; it is stored like a block (followed by the 5-byte
//! trailer: compression 0, masked CRC-32).
//!
//! Example: one put `k` = `v` at sequence 5 in partition 3, one data block:
//! `01 00 00 00 | 03 01 00 01 01 01 05 05 | 01 6b | 01 6b`
//! (pinned by `golden_bytes_of_properties`).

use bytes::Bytes;

use super::internal_key::MAX_SEQ;
use super::DecodeError;
use crate::coding::{put_varint, Reader};
use crate::memtable::SeqNo;

/// What a table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProperties {
    /// The table format version (equal to the footer's).
    pub format_version: u32,
    /// The partition the table belongs to.
    pub partition_id: u64,
    /// Entries (versions) in the table, tombstones included.
    pub entry_count: u64,
    /// Entries that are tombstones.
    pub tombstone_count: u64,
    /// Data blocks.
    pub data_block_count: u64,
    /// Sum of the user-key lengths of all entries.
    pub raw_key_bytes: u64,
    /// Sum of the value lengths of all puts.
    pub raw_value_bytes: u64,
    /// The smallest sequence number in the table.
    pub min_seq: SeqNo,
    /// The largest sequence number in the table.
    pub max_seq: SeqNo,
    /// The smallest user key.
    pub smallest_key: Bytes,
    /// The largest user key.
    pub largest_key: Bytes,
}

impl TableProperties {
    /// The encoded record (without the block trailer).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.smallest_key.len() + self.largest_key.len());
        out.extend_from_slice(&self.format_version.to_le_bytes());
        for v in [
            self.partition_id,
            self.entry_count,
            self.tombstone_count,
            self.data_block_count,
            self.raw_key_bytes,
            self.raw_value_bytes,
            self.min_seq,
            self.max_seq,
        ] {
            put_varint(&mut out, v);
        }
        for k in [&self.smallest_key, &self.largest_key] {
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k);
        }
        out
    }

    /// Decodes a record and checks that its fields are consistent (see
    /// [`validate`](Self::validate)).
    ///
    /// # Errors
    /// Truncated or trailing bytes, bad varints, or inconsistent fields.
    pub fn decode(data: &[u8]) -> Result<TableProperties, DecodeError> {
        let mut r = Reader::new(data);
        let at = |r: &Reader<'_>, e: String| DecodeError::new(r.position(), e);
        let format_version = r.u32_le("format version").map_err(|e| at(&r, e))?;
        let mut nums = [0u64; 8];
        let names = [
            "partition id",
            "entry count",
            "tombstone count",
            "data block count",
            "raw key bytes",
            "raw value bytes",
            "min seq",
            "max seq",
        ];
        for (slot, name) in nums.iter_mut().zip(names) {
            *slot = r.varint(name).map_err(|e| at(&r, e))?;
        }
        let smallest_key = r.length_prefixed("smallest key").map_err(|e| at(&r, e))?;
        let largest_key = r.length_prefixed("largest key").map_err(|e| at(&r, e))?;
        if !r.is_empty() {
            return Err(DecodeError::new(
                r.position(),
                format!("{} bytes after the properties", r.remaining()),
            ));
        }
        let [partition_id, entry_count, tombstone_count, data_block_count, raw_key_bytes, raw_value_bytes, min_seq, max_seq] =
            nums;
        let props = TableProperties {
            format_version,
            partition_id,
            entry_count,
            tombstone_count,
            data_block_count,
            raw_key_bytes,
            raw_value_bytes,
            min_seq,
            max_seq,
            smallest_key: Bytes::copy_from_slice(smallest_key),
            largest_key: Bytes::copy_from_slice(largest_key),
        };
        props.validate().map_err(|e| DecodeError::new(0, e))?;
        Ok(props)
    }

    /// Checks what any table's properties satisfy: at least one entry and
    /// one data block, no more tombstones than entries nor more blocks than
    /// entries, `min_seq <= max_seq <= MAX_SEQ`, `smallest_key <=
    /// largest_key`.
    ///
    /// # Errors
    /// The first violated rule.
    pub fn validate(&self) -> Result<(), String> {
        let rules = [
            (self.entry_count >= 1, "a table holds at least one entry"),
            (
                self.tombstone_count <= self.entry_count,
                "more tombstones than entries",
            ),
            (
                self.data_block_count >= 1 && self.data_block_count <= self.entry_count,
                "data block count not within 1..=entries",
            ),
            (self.min_seq <= self.max_seq, "min seq above max seq"),
            (self.max_seq <= MAX_SEQ, "max seq above 2^56 - 1"),
            (
                self.smallest_key <= self.largest_key,
                "smallest key above largest key",
            ),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(format!("properties: {why}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example() -> TableProperties {
        TableProperties {
            format_version: 1,
            partition_id: 3,
            entry_count: 1,
            tombstone_count: 0,
            data_block_count: 1,
            raw_key_bytes: 1,
            raw_value_bytes: 1,
            min_seq: 5,
            max_seq: 5,
            smallest_key: Bytes::from_static(b"k"),
            largest_key: Bytes::from_static(b"k"),
        }
    }

    #[test]
    fn golden_bytes_of_properties() {
        assert_eq!(
            example().encode(),
            [1, 0, 0, 0, 3, 1, 0, 1, 1, 1, 5, 5, 1, b'k', 1, b'k']
        );
    }

    #[test]
    fn round_trips() {
        let p = example();
        assert_eq!(TableProperties::decode(&p.encode()).unwrap(), p);
        let big = TableProperties {
            partition_id: u64::MAX,
            entry_count: u64::MAX,
            tombstone_count: u64::MAX,
            data_block_count: 1 << 40,
            raw_key_bytes: 1 << 50,
            raw_value_bytes: 0,
            min_seq: 0,
            max_seq: MAX_SEQ,
            smallest_key: Bytes::new(),
            largest_key: Bytes::from(vec![0xff; 300]),
            ..example()
        };
        assert_eq!(TableProperties::decode(&big.encode()).unwrap(), big);
    }

    #[test]
    fn bad_records_are_errors() {
        let bytes = example().encode();
        for n in 0..bytes.len() {
            assert!(TableProperties::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(TableProperties::decode(&long).is_err());
        for bad in [
            TableProperties {
                entry_count: 0,
                ..example()
            },
            TableProperties {
                tombstone_count: 2,
                ..example()
            },
            TableProperties {
                data_block_count: 0,
                ..example()
            },
            TableProperties {
                min_seq: 6,
                ..example()
            },
            TableProperties {
                min_seq: MAX_SEQ + 1,
                max_seq: MAX_SEQ + 1,
                ..example()
            },
            TableProperties {
                smallest_key: Bytes::from_static(b"z"),
                ..example()
            },
        ] {
            assert!(TableProperties::decode(&bad.encode()).is_err(), "{bad:?}");
        }
    }
}
