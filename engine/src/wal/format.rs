//! Record framing shared by the WAL and the partition catalogue.
//!
//! A log file is a sequence of 32 KiB blocks. A record (an opaque payload) is
//! split into fragments that never cross a block boundary. Each fragment:
//!
//! ```text
//! +-----------+-----------+---------+-----------------+
//! | crc: u32  | len: u16  | type:u8 | payload: len B  |
//! +-----------+-----------+---------+-----------------+
//!   little-endian          1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST
//! ```
//!
//! `crc` is CRC-32 (IEEE, crc32fast) of the type byte followed by the
//! payload, masked (rotated right by 15 bits, plus `0xa282ead8`) so that a
//! payload holding CRCs of its own does not produce valid-looking headers.
//! When fewer than 7 bytes are left in a block, they are zero-filled and the
//! next fragment starts at the next block. Type 0 is never written: a zero
//! header means unwritten (or zeroed) space.
//!
//! Example: the record `"hi"` at the start of a file is
//! `6b ba 6f b9 02 00 01 68 69`: masked CRC `0xb96fba6b`, length 2, FULL,
//! `h`, `i` (the golden test below pins these bytes).

/// Size of a block: fragments never cross a multiple of this offset.
pub const BLOCK_SIZE: usize = 32 * 1024;
/// CRC field width.
pub const CRC_LEN: usize = 4;
/// Length field width.
pub const LEN_LEN: usize = 2;
/// Type field width.
pub const TYPE_LEN: usize = 1;
/// Fragment header size.
pub const HEADER_LEN: usize = CRC_LEN + LEN_LEN + TYPE_LEN;
const _: () = assert!(HEADER_LEN == 7);
const _: () = assert!(BLOCK_SIZE - HEADER_LEN <= u16::MAX as usize);

/// Fragment types (explicit discriminants: they are on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FragmentType {
    /// A whole record.
    Full = 1,
    /// The first fragment of a record.
    First = 2,
    /// A middle fragment.
    Middle = 3,
    /// The last fragment.
    Last = 4,
}

impl From<FragmentType> for u8 {
    fn from(t: FragmentType) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for FragmentType {
    type Error = u8;

    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            1 => Ok(FragmentType::Full),
            2 => Ok(FragmentType::First),
            3 => Ok(FragmentType::Middle),
            4 => Ok(FragmentType::Last),
            other => Err(other),
        }
    }
}

/// Masked CRC of a fragment's type byte and payload.
pub fn fragment_crc(kind: u8, payload: &[u8]) -> u32 {
    crate::coding::masked_crc(&[&[kind], payload])
}

/// Appends the fragments of one record to `out`.
///
/// `block_offset` is the position within the current block where `out`'s
/// bytes will land in the file; it is advanced past the record.
pub fn encode_record(block_offset: &mut usize, payload: &[u8], out: &mut Vec<u8>) {
    let mut rest = payload;
    let mut first = true;
    loop {
        let left = BLOCK_SIZE - *block_offset;
        if left < HEADER_LEN {
            out.resize(out.len() + left, 0);
            *block_offset = 0;
            continue;
        }
        let room = left - HEADER_LEN;
        let n = rest.len().min(room);
        let last = n == rest.len();
        let kind = match (first, last) {
            (true, true) => FragmentType::Full,
            (true, false) => FragmentType::First,
            (false, false) => FragmentType::Middle,
            (false, true) => FragmentType::Last,
        };
        let (chunk, tail) = rest.split_at(n);
        out.extend_from_slice(&fragment_crc(kind.into(), chunk).to_le_bytes());
        // `n <= BLOCK_SIZE - HEADER_LEN`, checked to fit a u16 above.
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.push(kind.into());
        out.extend_from_slice(chunk);
        *block_offset += HEADER_LEN + n;
        rest = tail;
        first = false;
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_of_a_small_record() {
        let mut off = 0;
        let mut out = Vec::new();
        encode_record(&mut off, b"hi", &mut out);
        let crc = fragment_crc(1, b"hi");
        let expected = [0x6b, 0xba, 0x6f, 0xb9, 0x02, 0x00, 0x01, b'h', b'i'];
        assert_eq!(out, expected);
        assert_eq!(off, 9);
        // The CRC itself is pinned: CRC-32("\x01hi") masked.
        assert_eq!(crc, crate::coding::mask_crc(0x67c9_8b76));
        assert_eq!(crc32fast::hash(b"\x01hi"), 0x67c9_8b76);
    }

    #[test]
    fn fragments_never_cross_blocks_and_trailers_are_zero() {
        let mut off = BLOCK_SIZE - 10;
        let mut out = Vec::new();
        // 3 bytes of room in this block after a header: FIRST of 3 bytes.
        encode_record(&mut off, &[7u8; 5], &mut out);
        assert_eq!(out[6], FragmentType::First as u8);
        assert_eq!(&out[4..6], &[3, 0]);
        assert_eq!(out[HEADER_LEN + 3 + 6], FragmentType::Last as u8);
        assert_eq!(off, HEADER_LEN + 2);
        // Fewer than HEADER_LEN bytes left: zero trailer, next block.
        let mut off = BLOCK_SIZE - 6;
        let mut out = Vec::new();
        encode_record(&mut off, b"x", &mut out);
        assert_eq!(&out[..6], &[0; 6]);
        assert_eq!(out[6 + 6], FragmentType::Full as u8);
        assert_eq!(off, HEADER_LEN + 1);
    }

    #[test]
    fn empty_record_is_a_bare_header() {
        let mut off = 0;
        let mut out = Vec::new();
        encode_record(&mut off, b"", &mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(out[6], 1);
    }

    #[test]
    fn fragment_type_round_trips() {
        for t in [
            FragmentType::Full,
            FragmentType::First,
            FragmentType::Middle,
            FragmentType::Last,
        ] {
            assert_eq!(FragmentType::try_from(u8::from(t)), Ok(t));
        }
        assert_eq!(FragmentType::try_from(0), Err(0));
        assert_eq!(FragmentType::try_from(5), Err(5));
    }
}
