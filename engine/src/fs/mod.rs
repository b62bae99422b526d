//! The file-system seam: every file operation of the engine goes through
//! [`Fs`].
//!
//! Implementations:
//! - [`RealFs`]: `std::fs` on the host file system.
//! - [`CountingFs`]: wraps another and counts syncs, creates and opens.
//! - [`SimFs`]: an in-memory file system for crash and fault tests. It tracks
//!   which bytes and which directory entries are durable, simulates power loss
//!   ([`SimFs::crash`]), injects errors ([`SimFs::inject`]) and can hold syncs
//!   until a test releases them ([`SimFs::pause_syncs`]).
//!
//! # Durability contract
//! The engine may assume only what POSIX promises:
//! - Appended bytes are durable after [`WritableFile::sync_data`] or
//!   [`WritableFile::sync_all`] on a handle of that file returns `Ok`.
//! - A directory entry created, renamed or removed in a directory is durable
//!   after [`Fs::sync_dir`] of that directory returns `Ok`. A new file is not
//!   reachable after a crash until its parent directory is synced, however
//!   often the file itself was synced.
//! - [`Fs::rename`] atomically replaces the target: after a crash the target
//!   holds the old or the new file, never a mix.
//! - [`Fs::truncate`] is durable when it returns.
//!
//! [`write_file_atomic`] is the named helper for "replace a small file
//! durably" (write temp, fsync, rename, fsync directory).
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod counting;
pub mod real;
pub mod sim;

pub use counting::{CountingFs, FsCounts};
pub use real::RealFs;
pub use sim::SimFs;

/// A file system: the only way the engine touches files.
///
/// Object safe; the engine holds an `Arc<dyn Fs>`. Implementations are
/// `Send + Sync`: any method may be called from any thread concurrently.
/// Paths are used as given (the engine passes paths under its directory).
pub trait Fs: Send + Sync + Debug + 'static {
    /// Creates `path` and every missing parent directory. New directories are
    /// not durable until their parents are synced with [`Fs::sync_dir`].
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Creates `path` (truncating it if it exists) and opens it for appending.
    /// The parent directory must exist. The new entry is not durable until
    /// [`Fs::sync_dir`] of the parent.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Opens the existing file `path` for appending at its end (to continue a
    /// WAL after recovery).
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;

    /// Opens the existing file `path` for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;

    /// Names of the entries (files and directories) in the directory `path`,
    /// sorted. Names that are not UTF-8 are skipped: the engine creates none.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Renames `from` to `to`, atomically replacing a file at `to`. Durable
    /// after [`Fs::sync_dir`] of both parents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path`. Durable after [`Fs::sync_dir`] of the parent.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes the directory `path` and everything under it. Durable after
    /// [`Fs::sync_dir`] of the parent.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Fsyncs the directory `path`, making the entries created, renamed or
    /// removed in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Size in bytes of the file `path`.
    fn file_size(&self, path: &Path) -> io::Result<u64>;

    /// Whether `path` exists (file or directory).
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Durably shrinks the file `path` to `len` bytes (truncate, then fsync),
    /// e.g. to cut a torn WAL tail. `len` greater than the file's size is an
    /// `InvalidInput` error.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;

    /// Creates the lock file `path` if needed and takes an exclusive,
    /// non-blocking lock on it. If the lock is held — by another process or
    /// by another handle in this process — returns an error of kind
    /// [`io::ErrorKind::WouldBlock`]. Dropping the returned box releases the
    /// lock.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>>;
}

/// A file open for appending.
///
/// Thread safety: `Send`, not `Sync`; one owner writes at a time (the WAL
/// writer serialises its callers). Appends are unbuffered: each `append` is
/// handed to the file system before it returns (it survives a process crash,
/// not a power loss, until synced).
///
/// A handle from [`Fs::create`] writes at its *position*: every byte
/// appended through it so far ([`WritableFile::len`]), which is the end of
/// the file unless [`WritableFile::preallocate`] extended it. A handle from
/// [`Fs::open_append`] always writes at the end of the file.
pub trait WritableFile: Send + Debug {
    /// Writes all of `data` at the handle's position (at the end of the
    /// file for an append handle) and advances it. On error a prefix of
    /// `data` may have been written.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;

    /// Makes the file at least `len` bytes long, the new bytes reading as
    /// zeros, without moving the handle's position: later appends overwrite
    /// the zeros. On a real disk this makes a synced append inside the file
    /// cheaper than one past its end, which must also commit the new file
    /// size. The new size is durable once the file is synced. Only handles
    /// from [`Fs::create`] support it; a handle from [`Fs::open_append`]
    /// fails with [`io::ErrorKind::Unsupported`].
    fn preallocate(&mut self, len: u64) -> io::Result<()>;

    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;

    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;

    /// The handle's position: the file's size when opened plus every byte
    /// appended through this handle since (preallocated zeros beyond it do
    /// not count).
    fn len(&self) -> u64;

    /// Whether [`WritableFile::len`] is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file open for positional reads (`pread`).
///
/// Thread safety: `Send + Sync`; reads take `&self` and may run concurrently
/// (an SSTable is read by many threads through one handle).
pub trait ReadableFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at or past the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Fills `buf` from `offset`, or fails with
    /// [`io::ErrorKind::UnexpectedEof`] if the file ends first.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The file's current size in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The whole file mapped into memory, for a file that will not change
    /// while mapped (an SSTable); `Ok(None)` if this file system cannot map
    /// (the default), and callers fall back to [`read_at`](Self::read_at).
    fn map(&self) -> io::Result<Option<bytes::Bytes>> {
        Ok(None)
    }
}

/// A held exclusive lock on a lock file; dropping it releases the lock.
pub trait FileLock: Send + Debug {}

/// Durably replaces the file `path` with `data`: writes `<path>.tmp` in the
/// same directory, fsyncs it, renames it over `path`, then fsyncs the
/// directory. After `Ok`, a crash leaves `data` at `path`; after an error or
/// a crash before it returns, `path` holds its old content or `data`, never a
/// mix. A leftover `.tmp` file may remain; the next call overwrites it.
pub fn write_file_atomic(fs: &dyn Fs, path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path)?;
    let mut file = fs.create(&tmp)?;
    file.append(data)?;
    file.sync_all()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(parent_dir(path))
}

/// Reads a whole file into memory (WAL replay, manifest, `CURRENT`).
pub fn read_file(fs: &dyn Fs, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open_read(path)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::other(format!("{} is too large to read", path.display())))?;
    let mut data = vec![0; len];
    file.read_exact_at(&mut data, 0)?;
    Ok(data)
}

/// `path` with `.tmp` appended to its file name.
fn tmp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no file name in {}", path.display()),
        )
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    Ok(path.with_file_name(tmp_name))
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests;
