//! Version edits: the records of the manifest.
//!
//! A manifest record is one [`VersionEdit`]: a list of changes applied
//! atomically. Payload grammar (integers little-endian unless "varint"):
//!
//! ```text
//! edit    := count: varint, change × count
//! change  := tag: u8, fields
//! tag 1  CreatePartition  id: u64, name: varint len + UTF-8
//! tag 2  DropPartition    id: u64
//! tag 3  AddTable         partition: u64, level: u8, file: u64, size: u64,
//!                         smallest: varint len + bytes, largest: varint len + bytes,
//!                         min_seq: u64, max_seq: u64, entries: u64, tombstones: u64
//! tag 4  RemoveTable      partition: u64, level: u8, file: u64
//! tag 5  LogNumber        wal: u64      (WAL files below it are not needed)
//! tag 6  NextFileNumber   n: u64
//! tag 7  NextPartitionId  n: u64
//! tag 8  LastSequence     seq: u64
//! tag 9  Flushed          partition: u64, seq: u64 (entries of the partition
//!                         up to seq are in tables)
//! ```
//!
//! Tags are explicit and never reused. `smallest`/`largest` are user keys.
//! Example: `CreatePartition { id: 1, name: "a" }` alone encodes as
//! `01 | 01 | 01 00 00 00 00 00 00 00 | 01 61` (pinned by a golden test).

use crate::coding::{put_varint, Reader};

/// Highest level number a table may have.
pub const MAX_LEVEL: u8 = 15;

/// A table as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRecord {
    /// Owning partition id.
    pub partition: u64,
    /// Level (0 = freshly flushed).
    pub level: u8,
    /// File number (`<partition>/<file>.sst`).
    pub file: u64,
    /// File size in bytes.
    pub size: u64,
    /// Smallest user key.
    pub smallest: Vec<u8>,
    /// Largest user key.
    pub largest: Vec<u8>,
    /// Smallest sequence number in the table.
    pub min_seq: u64,
    /// Largest sequence number in the table.
    pub max_seq: u64,
    /// Entries (versions) in the table.
    pub entries: u64,
    /// Tombstones in the table.
    pub tombstones: u64,
}

/// One change of a [`VersionEdit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A partition came into being.
    CreatePartition {
        /// Its id (never reused).
        id: u64,
        /// Its name.
        name: String,
    },
    /// A partition was dropped (its tables go with it).
    DropPartition {
        /// Its id.
        id: u64,
    },
    /// A table was added.
    AddTable(TableRecord),
    /// A table was removed (compacted away).
    RemoveTable {
        /// Owning partition id.
        partition: u64,
        /// Its level.
        level: u8,
        /// Its file number.
        file: u64,
    },
    /// WAL files numbered below this hold nothing unflushed.
    LogNumber(u64),
    /// The next file number to hand out is at least this.
    NextFileNumber(u64),
    /// The next partition id to hand out is at least this.
    NextPartitionId(u64),
    /// Sequence numbers up to this were used.
    LastSequence(u64),
    /// Every entry of `partition` with a sequence number up to `seq` is in
    /// its tables.
    Flushed {
        /// Partition id.
        partition: u64,
        /// Flushed up to here.
        seq: u64,
    },
    /// WAL file `wal`, started by an open, holds the sequence numbers from
    /// `seq` on: its first write batch, if any, starts there. With
    /// `LastSequence`, recovery knows which records that file must hold.
    WalStart {
        /// The WAL file's number.
        wal: u64,
        /// Sequence number of its first write batch.
        seq: u64,
    },
}

const TAG_CREATE: u8 = 1;
const TAG_DROP: u8 = 2;
const TAG_ADD_TABLE: u8 = 3;
const TAG_REMOVE_TABLE: u8 = 4;
const TAG_LOG_NUMBER: u8 = 5;
const TAG_NEXT_FILE: u8 = 6;
const TAG_NEXT_PARTITION: u8 = 7;
const TAG_LAST_SEQ: u8 = 8;
const TAG_FLUSHED: u8 = 9;
const TAG_WAL_START: u8 = 10;

/// An atomic group of changes: one manifest record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// The changes, applied in order.
    pub changes: Vec<Change>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

impl VersionEdit {
    /// An edit of one change.
    pub fn one(change: Change) -> Self {
        VersionEdit {
            changes: vec![change],
        }
    }

    /// Appends the record payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.changes.len() as u64);
        for c in &self.changes {
            match c {
                Change::CreatePartition { id, name } => {
                    out.push(TAG_CREATE);
                    out.extend_from_slice(&id.to_le_bytes());
                    put_bytes(out, name.as_bytes());
                }
                Change::DropPartition { id } => {
                    out.push(TAG_DROP);
                    out.extend_from_slice(&id.to_le_bytes());
                }
                Change::AddTable(t) => {
                    out.push(TAG_ADD_TABLE);
                    out.extend_from_slice(&t.partition.to_le_bytes());
                    out.push(t.level);
                    out.extend_from_slice(&t.file.to_le_bytes());
                    out.extend_from_slice(&t.size.to_le_bytes());
                    put_bytes(out, &t.smallest);
                    put_bytes(out, &t.largest);
                    for v in [t.min_seq, t.max_seq, t.entries, t.tombstones] {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
                Change::RemoveTable {
                    partition,
                    level,
                    file,
                } => {
                    out.push(TAG_REMOVE_TABLE);
                    out.extend_from_slice(&partition.to_le_bytes());
                    out.push(*level);
                    out.extend_from_slice(&file.to_le_bytes());
                }
                Change::LogNumber(n) => {
                    out.push(TAG_LOG_NUMBER);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Change::NextFileNumber(n) => {
                    out.push(TAG_NEXT_FILE);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Change::NextPartitionId(n) => {
                    out.push(TAG_NEXT_PARTITION);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Change::LastSequence(n) => {
                    out.push(TAG_LAST_SEQ);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Change::Flushed { partition, seq } => {
                    out.push(TAG_FLUSHED);
                    out.extend_from_slice(&partition.to_le_bytes());
                    out.extend_from_slice(&seq.to_le_bytes());
                }
                Change::WalStart { wal, seq } => {
                    out.push(TAG_WAL_START);
                    out.extend_from_slice(&wal.to_le_bytes());
                    out.extend_from_slice(&seq.to_le_bytes());
                }
            }
        }
    }

    /// Decodes a record payload.
    ///
    /// # Errors
    /// A description of the first malformed field. No allocation is sized by
    /// an unchecked length: the change count only bounds a loop, and every
    /// length is checked against the bytes left.
    pub fn decode(payload: &[u8]) -> Result<VersionEdit, String> {
        let mut r = Reader::new(payload);
        let count = r.varint("change count")?;
        let mut changes = Vec::new();
        for _ in 0..count {
            let change = match r.u8("change tag")? {
                TAG_CREATE => {
                    let id = r.u64_le("partition id")?;
                    let name = std::str::from_utf8(r.length_prefixed("partition name")?)
                        .map_err(|_| "partition name is not UTF-8".to_string())?
                        .to_string();
                    Change::CreatePartition { id, name }
                }
                TAG_DROP => Change::DropPartition {
                    id: r.u64_le("partition id")?,
                },
                TAG_ADD_TABLE => {
                    let partition = r.u64_le("partition id")?;
                    let level = r.u8("level")?;
                    if level > MAX_LEVEL {
                        return Err(format!("level {level} above {MAX_LEVEL}"));
                    }
                    let file = r.u64_le("file number")?;
                    let size = r.u64_le("file size")?;
                    let smallest = r.length_prefixed("smallest key")?.to_vec();
                    let largest = r.length_prefixed("largest key")?.to_vec();
                    let min_seq = r.u64_le("min seq")?;
                    let max_seq = r.u64_le("max seq")?;
                    let entries = r.u64_le("entries")?;
                    let tombstones = r.u64_le("tombstones")?;
                    if smallest > largest || min_seq > max_seq || tombstones > entries {
                        return Err(format!("inconsistent table record for file {file}"));
                    }
                    Change::AddTable(TableRecord {
                        partition,
                        level,
                        file,
                        size,
                        smallest,
                        largest,
                        min_seq,
                        max_seq,
                        entries,
                        tombstones,
                    })
                }
                TAG_REMOVE_TABLE => {
                    let partition = r.u64_le("partition id")?;
                    let level = r.u8("level")?;
                    let file = r.u64_le("file number")?;
                    Change::RemoveTable {
                        partition,
                        level,
                        file,
                    }
                }
                TAG_LOG_NUMBER => Change::LogNumber(r.u64_le("log number")?),
                TAG_NEXT_FILE => Change::NextFileNumber(r.u64_le("next file number")?),
                TAG_NEXT_PARTITION => Change::NextPartitionId(r.u64_le("next partition id")?),
                TAG_LAST_SEQ => Change::LastSequence(r.u64_le("last sequence")?),
                TAG_FLUSHED => Change::Flushed {
                    partition: r.u64_le("partition id")?,
                    seq: r.u64_le("flushed sequence")?,
                },
                TAG_WAL_START => Change::WalStart {
                    wal: r.u64_le("WAL number")?,
                    seq: r.u64_le("WAL start sequence")?,
                },
                other => return Err(format!("unknown version edit tag {other}")),
            };
            changes.push(change);
        }
        if !r.is_empty() {
            return Err(format!("{} trailing bytes after the edit", r.remaining()));
        }
        Ok(VersionEdit { changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(file: u64) -> TableRecord {
        TableRecord {
            partition: 7,
            level: 0,
            file,
            size: 4096,
            smallest: b"a".to_vec(),
            largest: b"z\xff".to_vec(),
            min_seq: 3,
            max_seq: 90,
            entries: 100,
            tombstones: 4,
        }
    }

    fn every_change() -> VersionEdit {
        VersionEdit {
            changes: vec![
                Change::CreatePartition {
                    id: 1,
                    name: "ünï_1".into(),
                },
                Change::DropPartition { id: 9 },
                Change::AddTable(table(12)),
                Change::RemoveTable {
                    partition: 7,
                    level: 3,
                    file: 11,
                },
                Change::LogNumber(5),
                Change::NextFileNumber(13),
                Change::NextPartitionId(10),
                Change::LastSequence(u64::MAX >> 8),
                Change::Flushed {
                    partition: 7,
                    seq: 90,
                },
                Change::WalStart { wal: 12, seq: 91 },
            ],
        }
    }

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        VersionEdit::one(Change::CreatePartition {
            id: 1,
            name: "a".into(),
        })
        .encode(&mut out);
        assert_eq!(out, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, b'a']);
    }

    #[test]
    fn every_change_round_trips() {
        let edit = every_change();
        let mut out = Vec::new();
        edit.encode(&mut out);
        assert_eq!(VersionEdit::decode(&out).unwrap(), edit);
        let mut empty = Vec::new();
        VersionEdit::default().encode(&mut empty);
        assert_eq!(empty, [0]);
        assert_eq!(VersionEdit::decode(&empty).unwrap(), VersionEdit::default());
    }

    #[test]
    fn every_truncation_and_damage_is_an_error_or_a_valid_edit() {
        let mut out = Vec::new();
        every_change().encode(&mut out);
        for cut in 0..out.len() {
            assert!(VersionEdit::decode(&out[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..out.len() {
            for v in [0u8, 0xff, out[i] ^ 0x10] {
                let mut d = out.clone();
                d[i] = v;
                // Never panics; whatever decodes re-encodes to the same bytes.
                if let Ok(edit) = VersionEdit::decode(&d) {
                    let mut again = Vec::new();
                    edit.encode(&mut again);
                    assert_eq!(again, d, "byte {i} = {v}");
                }
            }
        }
    }

    #[test]
    fn huge_counts_and_lengths_fail_without_allocating() {
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert!(VersionEdit::decode(&out).is_err());
        let mut out = vec![1, TAG_CREATE];
        out.extend_from_slice(&1u64.to_le_bytes());
        put_varint(&mut out, u64::MAX >> 1);
        assert!(VersionEdit::decode(&out).is_err());
    }

    #[test]
    fn bad_levels_and_inconsistent_tables_are_errors() {
        let mut t = table(1);
        t.level = MAX_LEVEL + 1;
        let mut out = Vec::new();
        VersionEdit::one(Change::AddTable(t)).encode(&mut out);
        assert!(VersionEdit::decode(&out).is_err());
        let mut t = table(1);
        t.min_seq = 100;
        let mut out = Vec::new();
        VersionEdit::one(Change::AddTable(t)).encode(&mut out);
        assert!(VersionEdit::decode(&out).is_err());
    }
}
