//! [`RealFs`]: the [`Fs`] seam on `std::fs`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{FileLock, Fs, ReadableFile, WritableFile};

/// The host file system, through `std::fs`.
///
/// Stateless and `Send + Sync`. Directory fsync opens the directory and calls
/// `fsync` on it (Linux and the BSDs accept this). Locks are `flock(2)` locks
/// (`File::try_lock`): they conflict between open file descriptions, so a
/// second [`Fs::lock`] of the same file fails even within one process.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// A handle on the host file system.
    pub fn new() -> Self {
        Self
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // Readable too: a shared writable mapping needs it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealWritable {
            file,
            len: 0,
            size: 0,
            append_mode: false,
            map: None,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(RealWritable {
            file,
            len,
            size: len,
            append_mode: true,
            map: None,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        Ok(Arc::new(RealReadable {
            file: File::open(path)?,
        }))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        let size = file.metadata()?.len();
        if len > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "truncate {} to {len} bytes: the file has only {size}",
                    path.display()
                ),
            ));
        }
        file.set_len(len)?;
        file.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock { _file: file })),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is locked: the database is open in another process or by another handle in this one",
                    path.display()
                ),
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A write handle on a host file. A handle from `create` writes at its
/// file cursor (the position, which `set_len` does not move); one from
/// `open_append` has `O_APPEND` and always writes at the end.
#[derive(Debug)]
struct RealWritable {
    file: File,
    /// Bytes written.
    len: u64,
    /// The file's size (beyond `len` when preallocated).
    size: u64,
    append_mode: bool,
    /// The preallocated space after `len`, mapped: appends are copied into
    /// the page cache without a system call (see `preallocate`).
    map: Option<Mapped>,
}

/// A shared writable mapping of the file from `start` (a page boundary).
#[derive(Debug)]
struct Mapped {
    start: u64,
    map: memmap2::MmapMut,
}

/// The page size assumed for the mapping's offset (a multiple of the real
/// one on every Linux platform the engine runs on).
const MAP_ALIGN: u64 = 64 << 10;

impl RealWritable {
    /// Allocates the file's blocks up to `len` (not sparse), so that
    /// storing into a mapping of them cannot fail for want of space (that
    /// would be a SIGBUS, not an error). `Ok(false)` when the file system
    /// cannot.
    #[cfg(target_os = "linux")]
    fn allocate(&self, len: u64) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(add)) = (
            libc::off_t::try_from(self.size),
            libc::off_t::try_from(len - self.size),
        ) else {
            return Ok(false);
        };
        // SAFETY: fallocate takes no pointers; the descriptor is ours and
        // open for writing.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset, add) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(false),
            _ => Err(err),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn allocate(&self, _len: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether stores into allocated blocks of this file cannot fail for
    /// want of space: ext4, XFS and tmpfs. On a copy-on-write file system
    /// (btrfs, ZFS) a store into preallocated space may still need new
    /// blocks, and failing to get them is a SIGBUS, not an error.
    #[cfg(target_os = "linux")]
    fn mappable(&self) -> bool {
        use std::os::fd::AsRawFd;
        const EXT4: i128 = 0xef53;
        const XFS: i128 = 0x5846_5342;
        const TMPFS: i128 = 0x0102_1994;
        // SAFETY: fstatfs writes one statfs into the zeroed buffer we own.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatfs(self.file.as_raw_fd(), &mut st) };
        rc == 0 && [EXT4, XFS, TMPFS].contains(&i128::from(st.f_type))
    }

    #[cfg(not(target_os = "linux"))]
    fn mappable(&self) -> bool {
        false
    }

    /// Maps the file from the page holding `len` to its end.
    fn remap(&mut self) -> io::Result<()> {
        self.map = None;
        let start = self.len - self.len % MAP_ALIGN;
        let Ok(map_len) = usize::try_from(self.size - start) else {
            return Ok(());
        };
        // SAFETY: the mapping lies inside the file (its blocks allocated
        // above), and the engine neither truncates nor shrinks a file it is
        // writing: a WAL file is cut only at recovery, before it is written
        // again, and deleted only after its writer is gone (an unlinked
        // file's pages stay mapped). Only this handle writes through it.
        // Another process truncating the file would make stores fault
        // (SIGBUS); the directory lock keeps the engine's own processes out.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(map_len)
                .map_mut(&self.file)?
        };
        self.map = Some(Mapped { start, map });
        Ok(())
    }
}

impl WritableFile for RealWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let end = self.len + data.len() as u64;
        if let Some(m) = &mut self.map {
            // In the mapping: `start <= len` and `end <= size`, the
            // mapping's end.
            if let (Ok(from), Ok(to)) = (
                usize::try_from(self.len - m.start),
                usize::try_from(end - m.start),
            ) {
                if let Some(dst) = m.map.get_mut(from..to) {
                    dst.copy_from_slice(data);
                    self.len = end;
                    return Ok(());
                }
            }
        }
        if self.append_mode {
            self.file.write_all(data)?;
        } else {
            self.file.write_all_at(data, self.len)?;
        }
        self.len = end;
        self.size = self.size.max(self.len);
        Ok(())
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if self.append_mode {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "preallocate on a handle opened for appending",
            ));
        }
        if len > self.size {
            if self.mappable() && self.allocate(len)? {
                self.size = len;
                // Appends up to `len` now go through a mapping: no system
                // call per write (a synced write pays the same fdatasync).
                // A failed mapping leaves none, and appends to pwrite.
                let _ = self.remap();
            } else {
                // A sparse extension: ext4 and XFS then commit no size
                // change when a later append inside it is synced (measured:
                // about 1.5× the synced appends per second of writing past
                // the end). Not mapped: a store into a hole the file system
                // cannot fill would fault.
                self.map = None;
                self.file.set_len(len)?;
                self.size = len;
            }
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        // fdatasync writes the file's dirty pages, those stored through the
        // mapping included.
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// A positional-read handle on a host file.
#[derive(Debug)]
struct RealReadable {
    file: File,
}

impl ReadableFile for RealReadable {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn map(&self) -> io::Result<Option<bytes::Bytes>> {
        // SAFETY: the mapping is read-only and the engine only maps table
        // files, which it never writes, truncates or replaces after they are
        // synced (a file is deleted only when unused, and an unlinked file's
        // pages stay mapped). Another process changing the file would make
        // reads see the change or fault (SIGBUS); `Options::mmap_reads`
        // documents that, which is why mapping is opt-in.
        let map = unsafe { memmap2::Mmap::map(&self.file)? };
        Ok(Some(bytes::Bytes::from_owner(map)))
    }
}

/// A held `flock`; closing the file releases it.
#[derive(Debug)]
struct RealLock {
    _file: File,
}

impl FileLock for RealLock {}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::fs::write_file_atomic;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> io::Result<Self> {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("kalamdb-lsm-fs-{}-{n}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(Self(dir))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read_all(fs: &RealFs, path: &Path) -> io::Result<Vec<u8>> {
        let file = fs.open_read(path)?;
        let mut buf = vec![0; usize::try_from(file.len()?).map_err(io::Error::other)?];
        file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    #[test]
    fn preallocate_keeps_the_position_and_extends_with_zeros() -> io::Result<()> {
        let dir = TempDir::new("prealloc")?;
        crate::fs::tests::preallocate_contract(&RealFs::new(), &dir.0)
    }

    /// Appends stored through the mapping of preallocated space, across
    /// steps (each remapped), straddling a step's end (written with pwrite
    /// past the mapping) and after a failed step, read back by another
    /// handle, before and after the writer is dropped.
    #[test]
    fn appends_into_preallocated_space_read_back_whole() -> io::Result<()> {
        let dir = TempDir::new("mapped")?;
        let fs = RealFs::new();
        let path = dir.0.join("000001.wal");
        let mut file = fs.create(&path)?;
        let mut expected = Vec::new();
        let step = 200_000u64; // not a multiple of the page size
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..3000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let chunk: Vec<u8> = (0..(x % 700) as usize)
                .map(|j| (i as usize + j) as u8)
                .collect();
            let end = file.len() + chunk.len() as u64;
            // Like the WAL writer, but every fifth step is left out, so
            // some appends run past the preallocated end.
            if i % 5 != 0 && end > fs.file_size(&path)? {
                file.preallocate(end.div_ceil(step) * step)?;
            }
            file.append(&chunk)?;
            expected.extend_from_slice(&chunk);
            if i % 1000 == 999 {
                file.sync_data()?;
            }
        }
        assert_eq!(file.len(), expected.len() as u64);
        let size = fs.file_size(&path)?;
        assert!(size >= expected.len() as u64);
        let mut whole = expected.clone();
        whole.resize(usize::try_from(size).map_err(io::Error::other)?, 0);
        assert_eq!(
            read_all(&fs, &path)?,
            whole,
            "read while the writer is open"
        );
        drop(file);
        assert_eq!(read_all(&fs, &path)?, whole, "read after it is dropped");
        Ok(())
    }

    #[test]
    fn create_append_sync_and_read_at() -> io::Result<()> {
        let dir = TempDir::new("append")?;
        let fs = RealFs::new();
        let path = dir.0.join("a.log");
        let mut file = fs.create(&path)?;
        assert!(file.is_empty());
        file.append(b"hello ")?;
        file.append(b"world")?;
        file.sync_data()?;
        file.sync_all()?;
        assert_eq!(file.len(), 11);
        fs.sync_dir(&dir.0)?;

        let reader = fs.open_read(&path)?;
        assert_eq!(reader.len()?, 11);
        let mut buf = [0u8; 5];
        assert_eq!(reader.read_at(&mut buf, 6)?, 5);
        assert_eq!(&buf, b"world");
        assert_eq!(reader.read_at(&mut buf, 11)?, 0);
        let err = reader.read_exact_at(&mut buf, 8).err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(fs.file_size(&path)?, 11);
        Ok(())
    }

    #[test]
    fn open_append_continues_at_the_end_and_create_truncates() -> io::Result<()> {
        let dir = TempDir::new("reopen")?;
        let fs = RealFs::new();
        let path = dir.0.join("wal");
        fs.create(&path)?.append(b"abc")?;
        let mut file = fs.open_append(&path)?;
        assert_eq!(file.len(), 3);
        file.append(b"def")?;
        assert_eq!(file.len(), 6);
        drop(file);
        assert_eq!(read_all(&fs, &path)?, b"abcdef");

        let file = fs.create(&path)?;
        assert_eq!(file.len(), 0);
        assert_eq!(fs.file_size(&path)?, 0);
        let missing = fs.open_append(&dir.0.join("missing")).err();
        assert_eq!(missing.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        Ok(())
    }

    #[test]
    fn rename_remove_read_dir_exists() -> io::Result<()> {
        let dir = TempDir::new("entries")?;
        let fs = RealFs::new();
        fs.create_dir_all(&dir.0.join("sub/deeper"))?;
        fs.create(&dir.0.join("b"))?.append(b"old")?;
        fs.create(&dir.0.join("a"))?.append(b"new")?;
        assert_eq!(fs.read_dir(&dir.0)?, ["a", "b", "sub"]);

        fs.rename(&dir.0.join("a"), &dir.0.join("b"))?;
        assert_eq!(read_all(&fs, &dir.0.join("b"))?, b"new");
        assert!(!fs.exists(&dir.0.join("a"))?);
        fs.remove_file(&dir.0.join("b"))?;
        assert!(!fs.exists(&dir.0.join("b"))?);
        fs.remove_dir_all(&dir.0.join("sub"))?;
        assert!(fs.read_dir(&dir.0)?.is_empty());
        assert!(fs.exists(&dir.0)?);
        Ok(())
    }

    #[test]
    fn truncate_shrinks_and_refuses_to_grow() -> io::Result<()> {
        let dir = TempDir::new("truncate")?;
        let fs = RealFs::new();
        let path = dir.0.join("wal");
        fs.create(&path)?.append(b"0123456789")?;
        fs.truncate(&path, 4)?;
        assert_eq!(read_all(&fs, &path)?, b"0123");
        let err = fs.truncate(&path, 5).err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::InvalidInput));
        assert_eq!(fs.file_size(&path)?, 4);
        Ok(())
    }

    #[test]
    fn lock_is_exclusive_within_one_process() -> io::Result<()> {
        let dir = TempDir::new("lock")?;
        let fs = RealFs::new();
        let path = dir.0.join("LOCK");
        let held = fs.lock(&path)?;
        let second = fs.lock(&path).err();
        assert_eq!(
            second.map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock),
            "a second flock in the same process must conflict"
        );
        drop(held);
        let again = fs.lock(&path)?;
        drop(again);
        Ok(())
    }

    #[test]
    fn write_file_atomic_replaces_content() -> io::Result<()> {
        let dir = TempDir::new("atomic")?;
        let fs = RealFs::new();
        let path = dir.0.join("CURRENT");
        write_file_atomic(&fs, &path, b"MANIFEST-1\n")?;
        write_file_atomic(&fs, &path, b"MANIFEST-2\n")?;
        assert_eq!(read_all(&fs, &path)?, b"MANIFEST-2\n");
        assert_eq!(fs.read_dir(&dir.0)?, ["CURRENT"]);
        Ok(())
    }
}
