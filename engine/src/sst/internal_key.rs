//! Internal keys: how a version of a user key is spelled inside a table.
//!
//! ```text
//! +----------------+-------------------------------------+
//! | user key: n B  | trailer: u64 LE = seq << 8 | kind   |
//! +----------------+-------------------------------------+
//! ```
//!
//! `seq` is at most [`MAX_SEQ`] (2^56 − 1); `kind` is a [`ValueKind`]
//! (0 delete, 1 put). Internal keys are ordered by [`compare_internal`]: user
//! key ascending (bytewise), then trailer **descending**, so the newest
//! version of a key comes first. This is not the bytewise order of the
//! encoded keys: `"a" ++ trailer` vs `"ab" ++ trailer` would compare a trailer
//! byte with `b`.
//!
//! Example: user key `k`, sequence 5, put is `6b 01 05 00 00 00 00 00 00`
//! (trailer `0x0501` little-endian).

use std::cmp::Ordering;

use bytes::Bytes;

use super::DecodeError;
use crate::memtable::SeqNo;

/// Trailer width: sequence number and kind in one little-endian u64.
pub const TRAILER_LEN: usize = 8;
/// Bits of the trailer holding the kind.
const KIND_BITS: u32 = 8;
/// The largest sequence number a table can hold: the trailer keeps 56 bits.
pub const MAX_SEQ: SeqNo = (1 << (64 - KIND_BITS)) - 1;
const _: () = assert!(TRAILER_LEN == std::mem::size_of::<u64>());
const _: () = assert!(MAX_SEQ == 0x00ff_ffff_ffff_ffff);

/// The kind byte of an internal key (explicit discriminants: on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// A tombstone; the entry's value is empty.
    Delete = 0,
    /// A put; the entry's value is the user value.
    Put = 1,
}

/// The kind in a seek key: larger than every real kind, so for equal user
/// key and sequence number the seek key sorts before the entries.
const SEEK_KIND: u8 = 0xff;

impl From<ValueKind> for u8 {
    fn from(k: ValueKind) -> u8 {
        k as u8
    }
}

impl TryFrom<u8> for ValueKind {
    type Error = u8;

    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(ValueKind::Delete),
            1 => Ok(ValueKind::Put),
            other => Err(other),
        }
    }
}

/// An owned, decoded internal key (a table's smallest or largest key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalKey {
    /// The user key.
    pub user_key: Bytes,
    /// The sequence number.
    pub seq: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
}

impl InternalKey {
    /// The encoded key: user key followed by the trailer.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user_key.len() + TRAILER_LEN);
        encode_internal_key(&mut out, &self.user_key, self.seq, self.kind);
        out
    }

    /// Decodes an encoded internal key (copying the user key).
    ///
    /// # Errors
    /// As [`parse_internal_key`].
    pub fn decode(key: &[u8]) -> Result<InternalKey, DecodeError> {
        let p = parse_internal_key(key)?;
        Ok(InternalKey {
            user_key: Bytes::copy_from_slice(p.user_key),
            seq: p.seq,
            kind: p.kind,
        })
    }
}

/// A borrowed view of an encoded internal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The user key.
    pub user_key: &'a [u8],
    /// The sequence number.
    pub seq: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
}

/// The trailer of `seq` and `kind`. `seq` must be at most [`MAX_SEQ`]; the
/// builder checks it before calling.
fn trailer(seq: SeqNo, kind: u8) -> u64 {
    debug_assert!(seq <= MAX_SEQ, "sequence number {seq} exceeds MAX_SEQ");
    (seq << KIND_BITS) | u64::from(kind)
}

/// Appends the internal key `(user_key, seq, kind)` to `out`.
///
/// # Panics
/// In debug builds, if `seq > MAX_SEQ` (the builder rejects such entries
/// with an error before encoding them).
pub fn encode_internal_key(out: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: ValueKind) {
    out.extend_from_slice(user_key);
    out.extend_from_slice(&trailer(seq, kind.into()).to_le_bytes());
}

/// The seek key for "the newest version of `user_key` visible at
/// `snapshot`": every entry of `user_key` with `seq <= snapshot` and every
/// larger user key sorts at or after it, everything else before it.
/// Snapshots above [`MAX_SEQ`] are clamped (no table holds a larger seq).
#[must_use]
pub fn seek_key(user_key: &[u8], snapshot: SeqNo) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&trailer(snapshot.min(MAX_SEQ), SEEK_KIND).to_le_bytes());
    out
}

/// [`seek_key`] into a stack buffer (for point lookups, which should not
/// allocate).
#[must_use]
pub fn seek_key_buf(user_key: &[u8], snapshot: SeqNo) -> crate::coding::KeyBuf {
    let mut out = crate::coding::KeyBuf::default();
    out.extend_from_slice(user_key);
    out.extend_from_slice(&trailer(snapshot.min(MAX_SEQ), SEEK_KIND).to_le_bytes());
    out
}

/// Splits `key` into user key and trailer; keys shorter than a trailer are
/// all user key with trailer 0 (only [`compare_internal`] sees those, on
/// corrupt input, and must not panic).
pub(crate) fn split(key: &[u8]) -> (&[u8], u64) {
    match key.len().checked_sub(TRAILER_LEN) {
        Some(n) => {
            let (user, t) = key.split_at(n);
            let mut b = [0u8; TRAILER_LEN];
            b.copy_from_slice(t);
            (user, u64::from_le_bytes(b))
        }
        None => (key, 0),
    }
}

/// Decodes an encoded internal key.
///
/// # Errors
/// The key is shorter than a trailer, or its kind byte is unknown.
pub fn parse_internal_key(key: &[u8]) -> Result<ParsedKey<'_>, DecodeError> {
    if key.len() < TRAILER_LEN {
        return Err(DecodeError::new(
            0,
            format!(
                "internal key of {} bytes is shorter than its {TRAILER_LEN}-byte trailer",
                key.len()
            ),
        ));
    }
    let (user_key, t) = split(key);
    let kind = ValueKind::try_from(t as u8)
        .map_err(|k| DecodeError::new(user_key.len(), format!("unknown value kind {k} in key")))?;
    Ok(ParsedKey {
        user_key,
        seq: t >> KIND_BITS,
        kind,
    })
}

/// The internal-key order of two encoded keys: user key ascending, then
/// trailer (sequence number, then kind) descending. Total on all inputs and
/// never panics; keys shorter than a trailer compare as user keys with
/// trailer 0.
#[must_use]
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    let (ua, ta) = split(a);
    let (ub, tb) = split(b);
    crate::coding::compare_bytes(ua, ub).then_with(|| tb.cmp(&ta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &[u8], seq: SeqNo, kind: ValueKind) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(&mut out, user, seq, kind);
        out
    }

    #[test]
    fn golden_bytes() {
        assert_eq!(seek_key_buf(b"k", 5).as_slice(), seek_key(b"k", 5));
        assert_eq!(
            key(b"k", 5, ValueKind::Put),
            [0x6b, 0x01, 0x05, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            key(b"", MAX_SEQ, ValueKind::Delete),
            [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn round_trips() {
        for (user, seq, kind) in [
            (&b""[..], 0, ValueKind::Put),
            (b"abc", 1, ValueKind::Delete),
            (b"\xff\xff", MAX_SEQ, ValueKind::Put),
        ] {
            let k = key(user, seq, kind);
            let p = parse_internal_key(&k).unwrap();
            assert_eq!((p.user_key, p.seq, p.kind), (user, seq, kind));
            let owned = InternalKey::decode(&k).unwrap();
            assert_eq!(owned.encode(), k);
        }
        for kind in [ValueKind::Put, ValueKind::Delete] {
            assert_eq!(ValueKind::try_from(u8::from(kind)), Ok(kind));
        }
        assert_eq!(ValueKind::try_from(2), Err(2));
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(parse_internal_key(b"1234567").is_err());
        let mut k = key(b"a", 3, ValueKind::Put);
        k[1] = 7;
        assert!(parse_internal_key(&k).is_err());
    }

    #[test]
    fn order_is_user_key_then_newest_first_even_for_prefixes() {
        let ordered = [
            key(b"", 9, ValueKind::Put),
            key(b"", 0, ValueKind::Delete),
            key(b"a", MAX_SEQ, ValueKind::Put),
            key(b"a", 300, ValueKind::Put),
            key(b"a", 2, ValueKind::Put),
            key(b"a\x00", 7, ValueKind::Put),
            key(b"ab", 1, ValueKind::Put),
            key(b"b", 1, ValueKind::Put),
            key(b"\xff", 1, ValueKind::Put),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_internal(a, b), i.cmp(&j), "{i} vs {j}");
            }
        }
        // Bytewise order of the encodings disagrees: on a user key that is
        // a prefix of another (the kind byte meets the longer key's byte),
        // and on sequence numbers (little-endian).
        assert!(ordered[4] > ordered[5]);
        assert!(ordered[3] > ordered[4]);
    }

    #[test]
    fn seek_key_sorts_before_visible_versions() {
        let s = seek_key(b"a", 5);
        assert_eq!(
            compare_internal(&s, &key(b"a", 6, ValueKind::Put)),
            Ordering::Greater
        );
        assert_eq!(
            compare_internal(&s, &key(b"a", 5, ValueKind::Put)),
            Ordering::Less
        );
        assert_eq!(
            compare_internal(&s, &key(b"a", 5, ValueKind::Delete)),
            Ordering::Less
        );
        assert_eq!(
            compare_internal(&s, &key(b"\x00", 0, ValueKind::Put)),
            Ordering::Greater
        );
        assert_eq!(
            compare_internal(&s, &key(b"a\x00", MAX_SEQ, ValueKind::Put)),
            Ordering::Less
        );
        assert_eq!(
            compare_internal(
                &seek_key(b"a", u64::MAX),
                &key(b"a", MAX_SEQ, ValueKind::Put)
            ),
            Ordering::Less
        );
        // Short (corrupt) keys compare without panicking.
        let _ = compare_internal(b"ab", b"");
    }
}
