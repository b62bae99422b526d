//! Locating and checking blocks on disk: block handles and block trailers.
//!
//! A [`BlockHandle`] locates a block's contents: two varints, offset then
//! size, where `size` excludes the trailer. Example: offset 300, size 5 is
//! `ac 02 05`.
//!
//! Every block (data, index, filter, properties) is followed on disk by a
//! 5-byte trailer:
//!
//! ```text
//! +----------------+-------------------+
//! | compression:u8 | crc: u32 LE       |
//! +----------------+-------------------+
//!   0 = none         masked CRC-32 of contents ++ compression byte
//! ```
//!
//! The CRC is checked before the compression type, so a damaged type byte
//! reads as a checksum mismatch; a valid CRC over an unknown type is an
//! unsupported compression type. Either is corruption.

use super::{masked_crc, DecodeError};
use crate::coding::{put_varint, Reader};

/// Width of the compression-type byte of a block trailer.
pub const COMPRESSION_LEN: usize = 1;
/// Width of the CRC of a block trailer.
pub const CRC_LEN: usize = 4;
/// The trailer after every block on disk.
pub const BLOCK_TRAILER_LEN: usize = COMPRESSION_LEN + CRC_LEN;
const _: () = assert!(BLOCK_TRAILER_LEN == 5);
/// The longest varint (a u64).
pub const MAX_VARINT_LEN: usize = 10;
/// The longest encoded [`BlockHandle`].
pub const MAX_HANDLE_LEN: usize = 2 * MAX_VARINT_LEN;

/// Block compression types (explicit discriminants: on disk). Only `None`
/// is written or read; other values are corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Contents stored as is.
    None = 0,
}

impl From<Compression> for u8 {
    fn from(c: Compression) -> u8 {
        c as u8
    }
}

impl TryFrom<u8> for Compression {
    type Error = u8;

    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(Compression::None),
            other => Err(other),
        }
    }
}

/// Appends the trailer of `contents` (compression none, masked CRC) to
/// `out`.
pub fn write_trailer(contents: &[u8], out: &mut Vec<u8>) {
    let kind = u8::from(Compression::None);
    out.push(kind);
    out.extend_from_slice(&masked_crc(&[contents, &[kind]]).to_le_bytes());
}

/// Checks a block read from disk (`contents ++ trailer`) and returns its
/// contents.
///
/// # Errors
/// Shorter than a trailer, CRC mismatch, or a compression type other than
/// none. Offsets are relative to the start of `raw`.
pub fn check_trailer(raw: &[u8]) -> Result<&[u8], DecodeError> {
    let Some(n) = raw.len().checked_sub(BLOCK_TRAILER_LEN) else {
        return Err(DecodeError::new(
            0,
            format!("block of {} bytes is shorter than its trailer", raw.len()),
        ));
    };
    let (contents, trailer) = raw.split_at(n);
    let mut r = Reader::new(trailer);
    let kind = r
        .u8("compression type")
        .map_err(|e| DecodeError::new(n, e))?;
    let stored = r.u32_le("block crc").map_err(|e| DecodeError::new(n, e))?;
    let actual = masked_crc(&[contents, &[kind]]);
    if stored != actual {
        return Err(DecodeError::new(
            n,
            format!("block checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
        ));
    }
    Compression::try_from(kind)
        .map_err(|k| DecodeError::new(n, format!("unsupported compression type {k}")))?;
    Ok(contents)
}

/// Where a block's contents lie in the file (the trailer follows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the first byte of the contents.
    pub offset: u64,
    /// Length of the contents, without the trailer.
    pub size: u64,
}

impl BlockHandle {
    /// Appends the handle as two varints.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        put_varint(out, self.offset);
        put_varint(out, self.size);
    }

    /// The handle as two varints.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_HANDLE_LEN);
        self.encode_to(&mut out);
        out
    }

    /// Decodes a handle that must fill `bytes` exactly.
    ///
    /// # Errors
    /// Bad varints or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<BlockHandle, DecodeError> {
        let mut r = Reader::new(bytes);
        let at = |r: &Reader<'_>, e: String| DecodeError::new(r.position(), e);
        let offset = r.varint("handle offset").map_err(|e| at(&r, e))?;
        let size = r.varint("handle size").map_err(|e| at(&r, e))?;
        if !r.is_empty() {
            return Err(DecodeError::new(
                r.position(),
                format!("{} bytes after a block handle", r.remaining()),
            ));
        }
        Ok(BlockHandle { offset, size })
    }

    /// The offset just past the block's trailer, if it does not overflow.
    #[must_use]
    pub fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_have_golden_bytes() {
        let h = BlockHandle {
            offset: 300,
            size: 5,
        };
        assert_eq!(h.encode(), [0xac, 0x02, 0x05]);
        assert_eq!(BlockHandle::decode(&h.encode()).unwrap(), h);
        for h in [
            BlockHandle::default(),
            BlockHandle {
                offset: u64::MAX,
                size: u64::MAX,
            },
        ] {
            assert_eq!(BlockHandle::decode(&h.encode()).unwrap(), h);
            assert!(h.encode().len() <= MAX_HANDLE_LEN);
        }
        assert!(BlockHandle::decode(&[0xac, 0x02]).is_err());
        assert!(BlockHandle::decode(&[1, 2, 3]).is_err());
        assert_eq!(
            BlockHandle {
                offset: u64::MAX,
                size: 1
            }
            .end_with_trailer(),
            None
        );
    }

    #[test]
    fn golden_bytes_of_a_trailer() {
        let mut out = Vec::new();
        write_trailer(b"", &mut out);
        // CRC-32 of the single byte 0x00 is 0xd202ef8d, masked.
        assert_eq!(crc32fast::hash(&[0]), 0xd202_ef8d);
        assert_eq!(out[0], 0);
        assert_eq!(
            u32::from_le_bytes([out[1], out[2], out[3], out[4]]),
            crate::sst::mask_crc(0xd202_ef8d)
        );
        assert_eq!(check_trailer(&out).unwrap(), b"");
        let none = Compression::None;
        assert_eq!(Compression::try_from(u8::from(none)), Ok(none));
        assert_eq!(Compression::try_from(1), Err(1));
    }
}
