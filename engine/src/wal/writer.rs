//! Appending to WAL files, and their names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{Fs, WritableFile};
use crate::wal::format::{encode_record, BLOCK_SIZE};

/// Extension of WAL files: `000042.wal`.
pub const WAL_EXTENSION: &str = "wal";

/// File name of WAL number `n`.
pub fn wal_file_name(n: u64) -> String {
    format!("{n:06}.{WAL_EXTENSION}")
}

/// The number of a WAL file name, if it is one.
pub fn parse_wal_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The open WAL file being appended to.
///
/// Not thread-safe: the group-commit leader owns it while writing. Syncing
/// goes through a second handle ([`WalWriter::sync_handle`]) so a sync never
/// waits for, or blocks, an append.
///
/// The file grows in steps of `preallocate` bytes of zeros (when non-zero):
/// a synced append inside the file commits no size change, so it costs one
/// device write instead of two. Recovery reads the zeros after the last
/// record as the log's clean end ([`LogEnd::ZeroTail`](super::reader::LogEnd)).
#[derive(Debug)]
pub struct WalWriter {
    number: u64,
    path: PathBuf,
    file: Box<dyn WritableFile>,
    block_offset: usize,
    buf: Vec<u8>,
    /// Step of preallocation (0: none).
    preallocate: u64,
    /// The file's size including preallocated zeros.
    allocated: u64,
}

impl WalWriter {
    /// Creates WAL number `number` in `dir`, to grow in steps of
    /// `preallocate` bytes (0: as written). The directory entry is not yet
    /// durable: the caller syncs `dir` before relying on it.
    ///
    /// # Errors
    /// I/O errors from the file system.
    pub fn create(
        fs: &Arc<dyn Fs>,
        dir: &Path,
        number: u64,
        preallocate: u64,
    ) -> std::io::Result<WalWriter> {
        let path = dir.join(wal_file_name(number));
        let file = fs.create(&path)?;
        Ok(WalWriter {
            number,
            path,
            file,
            block_offset: 0,
            buf: Vec::new(),
            preallocate,
            allocated: 0,
        })
    }

    /// A second handle on the same file, used only to sync it.
    ///
    /// # Errors
    /// I/O errors from the file system.
    pub fn sync_handle(&self, fs: &Arc<dyn Fs>) -> std::io::Result<Box<dyn WritableFile>> {
        fs.open_append(&self.path)
    }

    /// The WAL's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The WAL's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of records in the file (preallocated zeros after them do not
    /// count).
    pub fn len(&self) -> u64 {
        self.file.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one record per payload with a single write.
    ///
    /// After an error the file may end in a partial record; the caller must
    /// not append to it again (the engine poisons itself).
    ///
    /// # Errors
    /// I/O errors from the file system.
    pub fn append<'a>(
        &mut self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> std::io::Result<()> {
        self.buf.clear();
        let mut offset = self.block_offset;
        for p in payloads {
            encode_record(&mut offset, p, &mut self.buf);
        }
        let end = self.file.len() + self.buf.len() as u64;
        if self.preallocate > 0 && end > self.allocated {
            let size = end.div_ceil(self.preallocate) * self.preallocate;
            self.file.preallocate(size)?;
            self.allocated = size;
        }
        self.file.append(&self.buf)?;
        self.block_offset = offset;
        if self.buf.capacity() > 4 * BLOCK_SIZE * 32 {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(wal_file_name(42), "000042.wal");
        assert_eq!(parse_wal_file_name("000042.wal"), Some(42));
        assert_eq!(parse_wal_file_name("1234567.wal"), Some(1_234_567));
        for bad in [
            "42.log",
            ".wal",
            "x1.wal",
            "000042.wal.tmp",
            "-1.wal",
            "CATALOG",
        ] {
            assert_eq!(parse_wal_file_name(bad), None, "{bad}");
        }
    }
}
