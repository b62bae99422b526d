//! [`CountingFs`]: an [`Fs`] that delegates to another and counts the
//! operations that cost the most — syncs, file creations and opens — for
//! benchmarks and tests that bound them (e.g. "creating 10,000 empty
//! partitions concurrently takes far fewer than 10,000 fsyncs"). It can also
//! add a latency to every sync, so that a test on a tmpfs (where an fsync
//! costs nothing) sees the batching a real disk would give.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{FileLock, Fs, ReadableFile, WritableFile};

/// Counters of a [`CountingFs`], shared by its clones and the handles it
/// opened.
#[derive(Debug, Default)]
pub struct FsCounters {
    sync_data: AtomicU64,
    sync_all: AtomicU64,
    sync_dir: AtomicU64,
    creates: AtomicU64,
    opens: AtomicU64,
    dirs_created: AtomicU64,
}

/// A snapshot of [`FsCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsCounts {
    /// `WritableFile::sync_data` calls.
    pub sync_data: u64,
    /// `WritableFile::sync_all` calls.
    pub sync_all: u64,
    /// `Fs::sync_dir` calls.
    pub sync_dir: u64,
    /// `Fs::create` calls (new or truncated files).
    pub creates: u64,
    /// `Fs::open_append` and `Fs::open_read` calls.
    pub opens: u64,
    /// `Fs::create_dir_all` calls.
    pub dirs_created: u64,
}

impl FsCounts {
    /// Every sync: file data, file data and metadata, and directory.
    pub fn syncs(&self) -> u64 {
        self.sync_data + self.sync_all + self.sync_dir
    }

    /// The counts from `earlier` to `self`.
    pub fn since(&self, earlier: &FsCounts) -> FsCounts {
        FsCounts {
            sync_data: self.sync_data - earlier.sync_data,
            sync_all: self.sync_all - earlier.sync_all,
            sync_dir: self.sync_dir - earlier.sync_dir,
            creates: self.creates - earlier.creates,
            opens: self.opens - earlier.opens,
            dirs_created: self.dirs_created - earlier.dirs_created,
        }
    }
}

/// Delegates every operation to `F` and counts syncs, creates and opens.
/// Clones share the counters.
#[derive(Debug, Clone)]
pub struct CountingFs<F> {
    inner: F,
    counters: Arc<FsCounters>,
    sync_latency: Duration,
}

impl<F: Fs> CountingFs<F> {
    /// Wraps `inner` with fresh counters.
    pub fn new(inner: F) -> Self {
        CountingFs {
            inner,
            counters: Arc::new(FsCounters::default()),
            sync_latency: Duration::ZERO,
        }
    }

    /// Makes every sync (file or directory) take at least `latency` more,
    /// like a disk's flush.
    pub fn with_sync_latency(mut self, latency: Duration) -> Self {
        self.sync_latency = latency;
        self
    }

    /// The counts so far.
    pub fn counts(&self) -> FsCounts {
        let c = &self.counters;
        FsCounts {
            sync_data: c.sync_data.load(Ordering::Relaxed),
            sync_all: c.sync_all.load(Ordering::Relaxed),
            sync_dir: c.sync_dir.load(Ordering::Relaxed),
            creates: c.creates.load(Ordering::Relaxed),
            opens: c.opens.load(Ordering::Relaxed),
            dirs_created: c.dirs_created.load(Ordering::Relaxed),
        }
    }

    fn wrap(&self, file: Box<dyn WritableFile>) -> Box<dyn WritableFile> {
        Box::new(CountingFile {
            inner: file,
            counters: self.counters.clone(),
            sync_latency: self.sync_latency,
        })
    }
}

impl<F: Fs> Fs for CountingFs<F> {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.counters.dirs_created.fetch_add(1, Ordering::Relaxed);
        self.inner.create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.counters.creates.fetch_add(1, Ordering::Relaxed);
        Ok(self.wrap(self.inner.create(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        Ok(self.wrap(self.inner.open_append(path)?))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        self.inner.open_read(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.read_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.counters.sync_dir.fetch_add(1, Ordering::Relaxed);
        wait(self.sync_latency);
        self.inner.sync_dir(path)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
}

fn wait(latency: Duration) {
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
}

#[derive(Debug)]
struct CountingFile {
    inner: Box<dyn WritableFile>,
    counters: Arc<FsCounters>,
    sync_latency: Duration,
}

impl WritableFile for CountingFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.inner.preallocate(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.counters.sync_data.fetch_add(1, Ordering::Relaxed);
        wait(self.sync_latency);
        self.inner.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.counters.sync_all.fetch_add(1, Ordering::Relaxed);
        wait(self.sync_latency);
        self.inner.sync_all()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{write_file_atomic, SimFs};

    #[test]
    fn counts_syncs_creates_and_opens() -> io::Result<()> {
        let fs = CountingFs::new(SimFs::new());
        let start = fs.counts();
        fs.create_dir_all(Path::new("/d"))?;
        let mut f = fs.create(Path::new("/d/a"))?;
        f.append(b"x")?;
        f.sync_data()?;
        f.sync_data()?;
        drop(f);
        write_file_atomic(&fs, Path::new("/d/b"), b"y")?;
        fs.open_read(Path::new("/d/b"))?;
        let c = fs.counts().since(&start);
        assert_eq!(
            c,
            FsCounts {
                sync_data: 2,
                sync_all: 1,
                sync_dir: 1,
                creates: 2,
                opens: 1,
                dirs_created: 1,
            }
        );
        assert_eq!(c.syncs(), 4);
        // Clones share the counters.
        fs.clone().sync_dir(Path::new("/d"))?;
        assert_eq!(fs.counts().sync_dir, 2);
        Ok(())
    }

    #[test]
    fn sync_latency_delays_syncs() -> io::Result<()> {
        let fs = CountingFs::new(SimFs::new()).with_sync_latency(Duration::from_millis(20));
        let mut f = fs.create(Path::new("/a"))?;
        let started = std::time::Instant::now();
        f.sync_data()?;
        fs.sync_dir(Path::new("/"))?;
        assert!(started.elapsed() >= Duration::from_millis(40));
        Ok(())
    }
}
