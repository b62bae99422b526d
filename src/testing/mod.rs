//! Test kit for any [`StorageBackend`]: the public conformance suite, a
//! differential harness, and harnesses for the built-in backends.
//!
//! Enabled by the `testing` feature. Run the whole conformance suite against
//! a backend, yours included, with one line per backend; each behaviour
//! becomes its own named `#[test]`:
//!
//! ```ignore
//! mod memory {
//!     kalamdb_store::conformance_tests!(kalamdb_store::testing::MemoryHarness::new());
//! }
//! ```
//!
//! The expression is evaluated once per test and must produce a [`Harness`]:
//! something that opens (and, for durable backends, reopens) a backend on a
//! fresh location. Tests run on a multi-threaded tokio runtime built by
//! [`run`], so the calling crate needs no tokio set-up.
//!
//! One test, `scan_streams`, measures how much a scan allocates. It can only
//! do so when [`alloc::CountingAlloc`] is the global allocator of the test
//! binary; without it the test checks results only and says so on stderr:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: kalamdb_store::testing::alloc::CountingAlloc =
//!     kalamdb_store::testing::alloc::CountingAlloc;
//! ```

pub mod alloc;
pub mod conformance;
pub mod differential;

use std::future::Future;

use crate::{MemoryBackend, Result, StorageBackend};

/// Opens a backend at a location owned by the harness, for the tests.
///
/// `open` is called once per test to get the backend, and again after the
/// previous backend was dropped to test persistence (only when
/// [`persistent`](Harness::persistent) is true). The location must be fresh
/// (empty) when the harness is created.
pub trait Harness: Send + 'static {
    /// The backend under test.
    type Backend: StorageBackend + 'static;

    /// Opens the backend at the harness's location.
    fn open(&mut self) -> Result<Self::Backend>;

    /// Whether a reopened backend sees the data of the previous one; also
    /// whether opening a second handle while one is open must fail with
    /// `locked:`.
    fn persistent(&self) -> bool {
        true
    }
}

/// Runs a future to completion on a fresh multi-threaded tokio runtime
/// (4 worker threads), on the calling thread.
///
/// # Panics
/// If the runtime cannot be built.
pub fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
        .block_on(future)
}

/// A fresh directory for a durable backend, under `$TMPDIR`.
///
/// # Panics
/// If the directory cannot be created.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kalamdb-store-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Harness for [`MemoryBackend`]: every `open` gives a new, empty backend.
#[derive(Debug, Default)]
pub struct MemoryHarness;

impl MemoryHarness {
    /// Creates the harness.
    pub fn new() -> Self {
        MemoryHarness
    }
}

impl Harness for MemoryHarness {
    type Backend = MemoryBackend;

    fn open(&mut self) -> Result<MemoryBackend> {
        Ok(MemoryBackend::new())
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Harness for [`LsmBackend`](crate::LsmBackend) in a temporary directory.
#[derive(Debug)]
pub struct LsmHarness {
    dir: tempfile::TempDir,
    options: crate::LsmOptions,
}

impl LsmHarness {
    /// A harness with default options.
    pub fn new() -> Self {
        Self::with_options(crate::LsmOptions::default())
    }

    /// A harness with the given options (e.g. tiny memtables, or a
    /// simulated file system).
    pub fn with_options(options: crate::LsmOptions) -> Self {
        LsmHarness {
            dir: temp_dir(),
            options,
        }
    }
}

impl Default for LsmHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for LsmHarness {
    type Backend = crate::LsmBackend;

    fn open(&mut self) -> Result<crate::LsmBackend> {
        crate::LsmBackend::new(self.dir.path(), self.options.clone())
    }
}

/// Harness for [`RocksDbBackend`](crate::RocksDbBackend) in a temporary directory.
#[cfg(feature = "rocksdb")]
#[derive(Debug)]
pub struct RocksDbHarness {
    dir: tempfile::TempDir,
    options: crate::RocksDbOptions,
}

#[cfg(feature = "rocksdb")]
impl RocksDbHarness {
    /// A harness with default options.
    pub fn new() -> Self {
        Self::with_options(crate::RocksDbOptions::default())
    }

    /// A harness with the given options.
    pub fn with_options(options: crate::RocksDbOptions) -> Self {
        RocksDbHarness {
            dir: temp_dir(),
            options,
        }
    }
}

#[cfg(feature = "rocksdb")]
impl Default for RocksDbHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "rocksdb")]
impl Harness for RocksDbHarness {
    type Backend = crate::RocksDbBackend;

    fn open(&mut self) -> Result<crate::RocksDbBackend> {
        crate::RocksDbBackend::new(self.dir.path(), self.options.clone())
    }
}

/// Harness for [`SledBackend`](crate::SledBackend) in a temporary directory.
#[cfg(feature = "sled")]
#[derive(Debug)]
pub struct SledHarness {
    dir: tempfile::TempDir,
}

#[cfg(feature = "sled")]
impl SledHarness {
    /// Creates the harness.
    pub fn new() -> Self {
        SledHarness { dir: temp_dir() }
    }
}

#[cfg(feature = "sled")]
impl Default for SledHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "sled")]
impl Harness for SledHarness {
    type Backend = crate::SledBackend;

    fn open(&mut self) -> Result<crate::SledBackend> {
        crate::SledBackend::new(self.dir.path())
    }
}
