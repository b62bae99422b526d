//! Write batches: the payload of a WAL record.
//!
//! ```text
//! tag: u8 = 1 (write batch)
//! first_seq: u64 LE        sequence number of the first operation
//! count: u32 LE            number of operations; operation i has first_seq + i
//! count × operation:
//!   kind: u8               1 = put, 0 = delete
//!   partition: varint      partition id
//!   key: varint len, bytes
//!   value: varint len, bytes   (puts only)
//! ```
//!
//! Example: put `k`=`v` into partition 3 with sequence 7 encodes as
//! `01 | 07 00 00 00 00 00 00 00 | 01 00 00 00 | 01 03 01 6b 01 76`.

use crate::coding::{put_varint, Reader};
use crate::memtable::check_entry_size;
use crate::sst::MAX_SEQ;

/// Tag of a write-batch record.
pub const TAG_WRITE_BATCH: u8 = 1;
/// Tag of the first record of a WAL file started by rotation: the previous
/// file's number and length (`u64` LE each). Recovery checks that the
/// previous file still has that many bytes; if its unsynced tail was lost,
/// everything from this file on is discarded (nothing in it was acknowledged
/// as durable), keeping the recovered state a prefix of history.
pub const TAG_PREVIOUS_WAL: u8 = 2;

/// Tag of a sync mark: a WAL number and an offset in it (`u64` LE each).
/// A sync that completed made that file durable up to the offset, and every
/// earlier WAL file whole (the committer syncs rotated files first). The
/// group-commit leader writes one in front of the first group after each
/// sync. Recovery reads them only past damage: a mark beyond a damaged spot
/// shows the damaged bytes were durable (corruption), while damage no mark
/// covers may be writes a power loss was allowed to lose (see `recovery`).
pub const TAG_SYNCED: u8 = 3;

/// Length of a record holding a tag and two `u64`s.
const PAIR_LEN: usize = 17;

fn encode_pair(tag: u8, a: u64, b: u64) -> [u8; PAIR_LEN] {
    let mut out = [0u8; PAIR_LEN];
    out[0] = tag;
    out[1..9].copy_from_slice(&a.to_le_bytes());
    out[9..].copy_from_slice(&b.to_le_bytes());
    out
}

fn decode_pair(payload: &[u8], tag: u8, what: &'static str) -> Result<Option<(u64, u64)>, String> {
    if payload.first() != Some(&tag) {
        return Ok(None);
    }
    let mut r = Reader::new(&payload[1..]);
    let a = r.u64_le(what)?;
    let b = r.u64_le(what)?;
    if !r.is_empty() {
        return Err(format!("trailing bytes after the {what} record"));
    }
    Ok(Some((a, b)))
}

/// Encodes a [`TAG_PREVIOUS_WAL`] record payload.
pub fn encode_previous_wal(number: u64, len: u64) -> [u8; PAIR_LEN] {
    encode_pair(TAG_PREVIOUS_WAL, number, len)
}

/// Decodes a [`TAG_PREVIOUS_WAL`] payload; `None` for any other record.
///
/// # Errors
/// A malformed record with that tag.
pub fn decode_previous_wal(payload: &[u8]) -> Result<Option<(u64, u64)>, String> {
    decode_pair(payload, TAG_PREVIOUS_WAL, "previous-WAL")
}

/// Encodes a [`TAG_SYNCED`] record payload: WAL `number` was durable up to
/// `offset`.
pub fn encode_synced(number: u64, offset: u64) -> [u8; PAIR_LEN] {
    encode_pair(TAG_SYNCED, number, offset)
}

/// Decodes a [`TAG_SYNCED`] payload; `None` for any other record.
///
/// # Errors
/// A malformed record with that tag.
pub fn decode_synced(payload: &[u8]) -> Result<Option<(u64, u64)>, String> {
    decode_pair(payload, TAG_SYNCED, "sync mark")
}

/// Kind of one operation (explicit discriminants: they are on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// A tombstone.
    Delete = 0,
    /// A value.
    Put = 1,
}

impl From<OpKind> for u8 {
    fn from(k: OpKind) -> u8 {
        k as u8
    }
}

impl TryFrom<u8> for OpKind {
    type Error = String;

    fn try_from(b: u8) -> Result<Self, String> {
        match b {
            0 => Ok(OpKind::Delete),
            1 => Ok(OpKind::Put),
            other => Err(format!("unknown operation kind {other}")),
        }
    }
}

/// One operation of a batch, addressed by partition id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOp {
    /// Partition id.
    pub partition: u64,
    /// User key.
    pub key: Vec<u8>,
    /// `Some(value)` for a put, `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl BatchOp {
    /// Bytes this operation adds to an encoded batch, at most.
    pub fn encoded_len_hint(&self) -> usize {
        1 + 10 + 10 + self.key.len() + 10 + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// A decoded operation, borrowing from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedOp<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Partition id.
    pub partition: u64,
    /// User key.
    pub key: &'a [u8],
    /// `Some(value)` for a put, `None` for a delete.
    pub value: Option<&'a [u8]>,
}

/// Byte range of `first_seq` in an encoded batch: the group-commit leader
/// patches it once sequence numbers are assigned.
pub const FIRST_SEQ_RANGE: std::ops::Range<usize> = 1..9;

/// Appends the record for `ops`, numbered from `first_seq`, to `out`.
///
/// # Panics
/// If there are more than `u32::MAX` operations (batches are limited far below).
pub fn encode_batch<'a>(
    first_seq: u64,
    ops: impl ExactSizeIterator<Item = &'a BatchOp>,
    out: &mut Vec<u8>,
) {
    #[expect(
        clippy::expect_used,
        reason = "batch size limits keep counts far below u32::MAX"
    )]
    let count = u32::try_from(ops.len()).expect("batch operation count fits u32");
    out.push(TAG_WRITE_BATCH);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for op in ops {
        let kind = if op.value.is_some() {
            OpKind::Put
        } else {
            OpKind::Delete
        };
        out.push(kind.into());
        put_varint(out, op.partition);
        put_varint(out, op.key.len() as u64);
        out.extend_from_slice(&op.key);
        if let Some(v) = &op.value {
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
}

/// Decodes a write-batch record, calling `f` for each operation in order.
///
/// # Errors
/// A description of the first malformed field; nothing is trusted before it
/// is bounds-checked, and no allocation is sized by a field. A sequence
/// number above [`MAX_SEQ`], or a key or value longer than a memtable holds,
/// is malformed too.
pub fn decode_batch<'a>(
    payload: &'a [u8],
    mut f: impl FnMut(DecodedOp<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = Reader::new(payload);
    let tag = r.u8("record tag")?;
    if tag != TAG_WRITE_BATCH {
        return Err(format!("unknown WAL record tag {tag}"));
    }
    let first_seq = r.u64_le("first sequence number")?;
    let count = r.u32_le("operation count")?;
    for i in 0..u64::from(count) {
        let kind = OpKind::try_from(r.u8("operation kind")?)?;
        let partition = r.varint("partition id")?;
        let key = r.length_prefixed("key")?;
        let value = match kind {
            OpKind::Put => Some(r.length_prefixed("value")?),
            OpKind::Delete => None,
        };
        let seq = first_seq
            .checked_add(i)
            .filter(|&s| s <= MAX_SEQ)
            .ok_or_else(|| format!("sequence number above {MAX_SEQ}"))?;
        // The engine refuses such entries at `submit`: here they can only
        // be damage.
        check_entry_size(key, value)?;
        f(DecodedOp {
            seq,
            partition,
            key,
            value,
        })?;
    }
    if !r.is_empty() {
        return Err(format!("{} trailing bytes after the batch", r.remaining()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(payload: &[u8]) -> Result<Vec<DecodedOp<'_>>, String> {
        let mut out = Vec::new();
        decode_batch(payload, |op| {
            out.push(op);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        let ops = [BatchOp {
            partition: 3,
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
        }];
        encode_batch(7, ops.iter(), &mut out);
        assert_eq!(
            out,
            [1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 3, 1, b'k', 1, b'v']
        );
    }

    #[test]
    fn round_trip_with_per_operation_sequence_numbers() {
        let ops = vec![
            BatchOp {
                partition: 1,
                key: b"a".to_vec(),
                value: Some(vec![0xff; 300]),
            },
            BatchOp {
                partition: 1 << 40,
                key: vec![],
                value: None,
            },
            BatchOp {
                partition: 0,
                key: vec![0; 200],
                value: Some(vec![]),
            },
        ];
        let mut out = Vec::new();
        encode_batch(MAX_SEQ - 5, ops.iter(), &mut out);
        let got = decode(&out).unwrap();
        assert_eq!(got.len(), 3);
        for (i, (d, o)) in got.iter().zip(&ops).enumerate() {
            assert_eq!(d.seq, MAX_SEQ - 5 + i as u64);
            assert_eq!(d.partition, o.partition);
            assert_eq!(d.key, &o.key[..]);
            assert_eq!(d.value, o.value.as_deref());
        }
        assert!(out.len() <= 13 + ops.iter().map(BatchOp::encoded_len_hint).sum::<usize>());
    }

    #[test]
    fn every_truncation_and_bad_tag_is_an_error() {
        let ops = [BatchOp {
            partition: 9,
            key: b"key".to_vec(),
            value: Some(b"value".to_vec()),
        }];
        let mut out = Vec::new();
        encode_batch(1, ops.iter(), &mut out);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut {cut}");
        }
        let mut extra = out.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut tag = out.clone();
        tag[0] = 2;
        assert!(decode(&tag).is_err());
        let mut kind = out;
        kind[13] = 9;
        assert!(decode(&kind).is_err());
    }

    #[test]
    fn out_of_range_sequence_numbers_and_oversize_keys_are_errors() {
        use crate::memtable::MAX_NODE_KEY;
        let op = |key: Vec<u8>| BatchOp {
            partition: 1,
            key,
            value: Some(b"v".to_vec()),
        };
        let two = [op(b"a".to_vec()), op(b"b".to_vec())];
        for (first, ok) in [(MAX_SEQ - 1, true), (MAX_SEQ, false), (u64::MAX, false)] {
            let mut out = Vec::new();
            encode_batch(first, two.iter(), &mut out);
            assert_eq!(decode(&out).is_ok(), ok, "first_seq {first}");
        }
        for (len, ok) in [(MAX_NODE_KEY, true), (MAX_NODE_KEY + 1, false)] {
            let mut out = Vec::new();
            encode_batch(1, [op(vec![7; len])].iter(), &mut out);
            assert_eq!(decode(&out).is_ok(), ok, "key of {len} bytes");
        }
    }

    #[test]
    fn huge_count_with_no_data_fails_without_allocating() {
        let mut out = vec![1];
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&out).is_err());
    }
}
