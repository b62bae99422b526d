//! Appending to WAL files, and their names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{Fs, WritableFile};
use crate::wal::format::{encode_record, BLOCK_SIZE};

/// Extension of WAL files: `000042.wal`.
pub const WAL_EXTENSION: &str = "wal";

/// Largest preallocation step: larger ones are cut to it.
pub const MAX_PREALLOCATE: u64 = 1 << 30;

/// File name of WAL number `n`.
pub fn wal_file_name(n: u64) -> String {
    format!("{n:06}.{WAL_EXTENSION}")
}

/// The number of a WAL file name, if it is one (exactly as
/// [`wal_file_name`] spells it, at most [`MAX_NUMBER`](crate::coding::MAX_NUMBER)).
pub fn parse_wal_file_name(name: &str) -> Option<u64> {
    crate::coding::parse_padded_number(name.strip_suffix(".wal")?)
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
        crate::coding::check_new_number("WAL", number).map_err(std::io::Error::other)?;
        let path = dir.join(wal_file_name(number));
        let file = fs.create(&path)?;
        Ok(WalWriter {
            number,
            path,
            file,
            block_offset: 0,
            buf: Vec::new(),
            preallocate: preallocate.min(MAX_PREALLOCATE),
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
            // Preallocation only speeds syncs up: if the file system cannot
            // do it (or the step overflows), the file grows as written.
            let size = end.div_ceil(self.preallocate).checked_mul(self.preallocate);
            match size.map(|size| (size, self.file.preallocate(size))) {
                Some((size, Ok(()))) => self.allocated = size,
                _ => self.preallocate = 0,
            }
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
    use crate::wal::reader::{read_log, LogEnd};

    /// A file that cannot be preallocated.
    #[derive(Debug, Default)]
    struct NoPreallocation(Vec<u8>, std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl WritableFile for NoPreallocation {
        fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
            self.0.extend_from_slice(data);
            self.1.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn preallocate(&mut self, _len: u64) -> std::io::Result<()> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no preallocation here",
            ))
        }
        fn sync_data(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn sync_all(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
    }

    #[test]
    fn a_file_that_cannot_be_preallocated_grows_as_written() {
        let written = std::sync::Arc::default();
        let mut w = WalWriter {
            number: 1,
            path: PathBuf::from("/x/000001.wal"),
            file: Box::new(NoPreallocation(Vec::new(), std::sync::Arc::clone(&written))),
            block_offset: 0,
            buf: Vec::new(),
            preallocate: 1 << 20,
            allocated: 0,
        };
        w.append([&b"one"[..]]).unwrap();
        assert_eq!(w.preallocate, 0, "preallocation is given up");
        w.append([&b"two"[..], &b"three"[..]]).unwrap();
        let data = written.lock().unwrap().clone();
        assert_eq!(w.len(), data.len() as u64);
        let mut got = Vec::new();
        let end = read_log(&data, |_, r| {
            got.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(end, LogEnd::Clean);
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    }

    #[test]
    fn steps_are_whole_multiples_and_capped() {
        let fs: Arc<dyn Fs> = Arc::new(crate::fs::SimFs::new());
        fs.create_dir_all(Path::new("/w")).unwrap();
        let mut w = WalWriter::create(&fs, Path::new("/w"), 7, 100).unwrap();
        w.append([&[1u8; 150][..]]).unwrap();
        assert_eq!(fs.file_size(w.path()).unwrap(), 200);
        assert_eq!(w.len(), 157);
        w.append([&[2u8; 10][..]]).unwrap();
        assert_eq!(fs.file_size(w.path()).unwrap(), 200, "inside the step");
        let huge = WalWriter::create(&fs, Path::new("/w"), 8, u64::MAX).unwrap();
        assert_eq!(huge.preallocate, MAX_PREALLOCATE);
    }

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
            // Not the engine's spelling of 42: would alias 000042.wal.
            "42.wal",
            "0000042.wal",
            // At or past the end of the numbers.
            "4611686018427387904.wal",
            "18446744073709551615.wal",
        ] {
            assert_eq!(parse_wal_file_name(bad), None, "{bad}");
        }
    }
}
