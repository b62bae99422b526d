//! The footer: the fixed-size last 64 bytes of a table.
//!
//! ```text
//! +-----------------------+-----------------------+-----------------------+
//! | index: offset u64, size u64 | filter: ...     | properties: ...       |
//! +-----------------------+-----------------------+-----------------------+
//! | format_version: u32   | crc: u32              | magic: u64            |
//! +-----------------------+-----------------------+-----------------------+
//! ```
//!
//! All fields little-endian. Each handle is the offset and size (without the
//! 5-byte trailer) of a block's contents. A filter handle of offset 0 and
//! size 0 means the table has no filter. `crc` is the masked CRC-32 of the 52
//! bytes before it. `magic` is the bytes `kalamSST`.
//!
//! Example (the footer of the one-entry table in `docs/format/sstable.md`:
//! index at 61 size 22, filter at 26 size 9, properties at 40 size 16):
//!
//! ```text
//! 3d 00 00 00 00 00 00 00  16 00 00 00 00 00 00 00   index
//! 1a 00 00 00 00 00 00 00  09 00 00 00 00 00 00 00   filter
//! 28 00 00 00 00 00 00 00  10 00 00 00 00 00 00 00   properties
//! 01 00 00 00  27 52 7f 86  6b 61 6c 61 6d 53 53 54  version 1, crc, magic
//! ```
//!
//! (pinned by `golden_bytes_of_a_footer`).

use super::handle::BlockHandle;
use super::{masked_crc, DecodeError};
use crate::coding::Reader;

/// Width of a fixed-size handle: offset and size, u64 LE each.
pub const FIXED_HANDLE_LEN: usize = 16;
/// Width of the format version.
pub const VERSION_LEN: usize = 4;
/// Width of the footer CRC.
pub const CRC_LEN: usize = 4;
/// Width of the magic number.
pub const MAGIC_LEN: usize = 8;
/// Bytes covered by the footer CRC.
pub const CRC_COVERED_LEN: usize = 3 * FIXED_HANDLE_LEN + VERSION_LEN;
/// The footer's size.
pub const FOOTER_LEN: usize = CRC_COVERED_LEN + CRC_LEN + MAGIC_LEN;
const _: () = assert!(FIXED_HANDLE_LEN == 2 * std::mem::size_of::<u64>());
const _: () = assert!(CRC_COVERED_LEN == 52);
const _: () = assert!(FOOTER_LEN == 64);

/// The last 8 bytes of every table: `kalamSST`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"kalamSST");
/// The table format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where a table's metadata blocks are, and its format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The bloom filter, if the table has one.
    pub filter: Option<BlockHandle>,
    /// The properties block.
    pub properties: BlockHandle,
    /// The format version (only [`FORMAT_VERSION`] is readable).
    pub format_version: u32,
}

fn put_handle(out: &mut Vec<u8>, h: BlockHandle) {
    out.extend_from_slice(&h.offset.to_le_bytes());
    out.extend_from_slice(&h.size.to_le_bytes());
}

fn get_handle(r: &mut Reader<'_>, what: &str) -> Result<BlockHandle, DecodeError> {
    let at = r.position();
    let offset = r.u64_le(what).map_err(|e| DecodeError::new(at, e))?;
    let size = r.u64_le(what).map_err(|e| DecodeError::new(at, e))?;
    Ok(BlockHandle { offset, size })
}

impl Footer {
    /// The footer's [`FOOTER_LEN`] bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        put_handle(&mut out, self.index);
        put_handle(&mut out, self.filter.unwrap_or_default());
        put_handle(&mut out, self.properties);
        out.extend_from_slice(&self.format_version.to_le_bytes());
        let crc = masked_crc(&[&out]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        debug_assert_eq!(out.len(), FOOTER_LEN);
        out
    }

    /// Decodes a footer; checks, in order, the length, the magic, the CRC
    /// and the format version.
    ///
    /// # Errors
    /// Any of those checks fails. Offsets are relative to the footer start.
    pub fn decode(data: &[u8]) -> Result<Footer, DecodeError> {
        if data.len() != FOOTER_LEN {
            return Err(DecodeError::new(
                0,
                format!("footer is {} bytes, not {FOOTER_LEN}", data.len()),
            ));
        }
        let mut r = Reader::new(data);
        let index = get_handle(&mut r, "index handle")?;
        let filter = get_handle(&mut r, "filter handle")?;
        let properties = get_handle(&mut r, "properties handle")?;
        let version_at = r.position();
        let format_version = r
            .u32_le("format version")
            .map_err(|e| DecodeError::new(version_at, e))?;
        let crc_at = r.position();
        let stored = r
            .u32_le("footer crc")
            .map_err(|e| DecodeError::new(crc_at, e))?;
        let magic_at = r.position();
        let magic = r
            .u64_le("magic")
            .map_err(|e| DecodeError::new(magic_at, e))?;
        if magic != MAGIC {
            return Err(DecodeError::new(
                magic_at,
                format!("bad magic {magic:#018x}: not an SSTable, or truncated"),
            ));
        }
        let covered = data.get(..CRC_COVERED_LEN).unwrap_or_default();
        let actual = masked_crc(&[covered]);
        if stored != actual {
            return Err(DecodeError::new(
                crc_at,
                format!("footer checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
            ));
        }
        if format_version != FORMAT_VERSION {
            return Err(DecodeError::new(
                version_at,
                format!("unsupported table format version {format_version} (this build reads {FORMAT_VERSION})"),
            ));
        }
        Ok(Footer {
            index,
            filter: (filter != BlockHandle::default()).then_some(filter),
            properties,
            format_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Footer {
        Footer {
            index: BlockHandle {
                offset: 61,
                size: 22,
            },
            filter: Some(BlockHandle {
                offset: 26,
                size: 9,
            }),
            properties: BlockHandle {
                offset: 40,
                size: 16,
            },
            format_version: FORMAT_VERSION,
        }
    }

    #[test]
    fn golden_bytes_of_a_footer() {
        let bytes = example().encode();
        #[rustfmt::skip]
        let expected: [u8; FOOTER_LEN] = [
            0x3d, 0, 0, 0, 0, 0, 0, 0, 0x16, 0, 0, 0, 0, 0, 0, 0,
            0x1a, 0, 0, 0, 0, 0, 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0,
            0x28, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0,
            0x01, 0, 0, 0, 0x27, 0x52, 0x7f, 0x86,
            b'k', b'a', b'l', b'a', b'm', b'S', b'S', b'T',
        ];
        assert_eq!(bytes, expected);
        assert_eq!(
            u32::from_le_bytes([bytes[52], bytes[53], bytes[54], bytes[55]]),
            crate::sst::mask_crc(crc32fast::hash(&bytes[..52]))
        );
    }

    #[test]
    fn round_trips() {
        let f = example();
        assert_eq!(Footer::decode(&f.encode()).unwrap(), f);
        let no_filter = Footer {
            filter: None,
            ..example()
        };
        assert_eq!(Footer::decode(&no_filter.encode()).unwrap(), no_filter);
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let bytes = example().encode();
        for i in 0..FOOTER_LEN {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(Footer::decode(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
        assert!(Footer::decode(&bytes[1..]).is_err());
        assert!(Footer::decode(&[]).is_err());
    }

    #[test]
    fn errors_name_the_failed_check() {
        let mut bad = example().encode();
        bad[63] ^= 1;
        assert!(Footer::decode(&bad).unwrap_err().reason.contains("magic"));
        let mut bad = example().encode();
        bad[0] ^= 1;
        let err = Footer::decode(&bad).unwrap_err();
        assert!(err.reason.contains("checksum"), "{err}");
        assert_eq!(err.offset, 52);
        let v2 = Footer {
            format_version: 2,
            ..example()
        };
        let err = Footer::decode(&v2.encode()).unwrap_err();
        assert!(err.reason.contains("version 2"), "{err}");
        assert_eq!(err.offset, 48);
    }
}
