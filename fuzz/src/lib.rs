//! Helpers shared by the fuzz targets and the seed generator
//! (`examples/seed_corpus.rs`).
//!
//! Random mutations almost never produce a valid CRC-32, so a target fed only
//! raw bytes would spend its time on checksum rejections. The targets that
//! read checksummed structures therefore decode each input twice: as given
//! (the checksum checks themselves), and after [`fix_table_checksums`] or
//! [`fix_log_checksums`] rewrote every checksum the reader will look at, so
//! that mutations reach the decoders behind the checksums.

pub mod db_open;
pub mod op_sequence;

use std::io;

use kalamdb_lsm::coding::masked_crc;
use kalamdb_lsm::fs::ReadableFile;
use kalamdb_lsm::sst::footer::{CRC_COVERED_LEN, CRC_LEN, FOOTER_LEN};
use kalamdb_lsm::sst::handle::{BlockHandle, BLOCK_TRAILER_LEN};
use kalamdb_lsm::sst::Block;
use kalamdb_lsm::wal::format::{fragment_crc, BLOCK_SIZE, HEADER_LEN};

/// An immutable in-memory file for `Table::open`.
#[derive(Debug)]
pub struct MemFile(pub Vec<u8>);

impl ReadableFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = self.0.get(start..).unwrap_or_default();
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// Rewrites the footer CRC of a footer (the 64 bytes at the end of `footer`).
pub fn fix_footer_checksum(footer: &mut [u8]) {
    let Some(at) = footer.len().checked_sub(FOOTER_LEN) else {
        return;
    };
    let f = &mut footer[at..];
    let crc = masked_crc(&[&f[..CRC_COVERED_LEN]]);
    f[CRC_COVERED_LEN..CRC_COVERED_LEN + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the trailer CRC of the block at `h` (keeping its compression
/// byte), if the block and its trailer lie inside `data[..end]`.
fn fix_block(data: &mut [u8], end: usize, h: BlockHandle) {
    let (Ok(start), Ok(size)) = (usize::try_from(h.offset), usize::try_from(h.size)) else {
        return;
    };
    let Some(trailer) = start.checked_add(size) else {
        return;
    };
    if trailer.saturating_add(BLOCK_TRAILER_LEN) > end {
        return;
    }
    let crc = masked_crc(&[&data[start..trailer], &data[trailer..trailer + 1]]);
    data[trailer + 1..trailer + BLOCK_TRAILER_LEN].copy_from_slice(&crc.to_le_bytes());
}

fn handle_at(data: &[u8], at: usize) -> BlockHandle {
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[i..i + 8]);
        u64::from_le_bytes(b)
    };
    BlockHandle {
        offset: u64_at(at),
        size: u64_at(at + 8),
    }
}

/// Rewrites every checksum `Table::open` and the table's readers check:
/// each data block the index points to, the filter, properties and index
/// blocks the footer points to, and the footer's own CRC. Everything else
/// (magic, version, layout, contents) is left as the fuzzer made it.
pub fn fix_table_checksums(data: &mut [u8]) {
    let Some(footer_at) = data.len().checked_sub(FOOTER_LEN) else {
        return;
    };
    let index = handle_at(data, footer_at);
    let filter = handle_at(data, footer_at + 16);
    let properties = handle_at(data, footer_at + 32);
    // Data blocks first: the index's own bytes do not change afterwards.
    let index_contents = usize::try_from(index.offset)
        .ok()
        .zip(usize::try_from(index.size).ok())
        .and_then(|(s, n)| Some(s..s.checked_add(n)?))
        .and_then(|r| data.get(r))
        .map(bytes::Bytes::copy_from_slice);
    if let Some(Ok(block)) = index_contents.map(Block::decode) {
        let mut it = block.iter();
        let mut ok = it.seek_to_first().is_ok();
        let mut n = 0;
        while ok && it.valid() && n < 100_000 {
            if let Ok(h) = BlockHandle::decode(it.value()) {
                fix_block(data, footer_at, h);
            }
            ok = it.advance().is_ok();
            n += 1;
        }
    }
    for h in [filter, properties, index] {
        fix_block(data, footer_at, h);
    }
    fix_footer_checksum(data);
}

/// Rewrites the CRC of every fragment header the log reader would parse,
/// walking the log the way it does (headers never start in the last six
/// bytes of a 32 KiB block). Zeroed headers (unwritten space) stay zero; the
/// walk stops at the first length that does not fit.
pub fn fix_log_checksums(data: &mut [u8]) {
    let mut pos = 0usize;
    loop {
        let left = BLOCK_SIZE - pos % BLOCK_SIZE;
        if left < HEADER_LEN {
            pos += left;
            continue;
        }
        let Some(header) = data.get(pos..pos + HEADER_LEN) else {
            return;
        };
        if header.iter().all(|&b| b == 0) {
            return;
        }
        let len = usize::from(u16::from_le_bytes([header[4], header[5]]));
        let kind = header[6];
        let end = pos + HEADER_LEN + len;
        if len > left - HEADER_LEN || end > data.len() {
            return;
        }
        let crc = fragment_crc(kind, &data[pos + HEADER_LEN..end]);
        data[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}
