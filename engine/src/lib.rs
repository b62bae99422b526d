//! kalamdb-lsm: the pure-Rust LSM-tree storage engine behind `kalamdb-store`.
//!
//! A synchronous core ([`Db`]) that `kalamdb-store`'s `LsmBackend` drives
//! from async code: reads run inline; writes run inline up to a group-commit
//! queue and hand back a [`Completion`](completion::Completion) to await.
//!
//! Built so far (DESIGN.md §4; `docs/DESIGN.md` records where it differs):
//! the [`fs`] seam with a crash-simulating test file system, one WAL shared by
//! all partitions ([`wal`], format in `docs/format/wal.md`), group commit with
//! durability levels ([`commit`]), per-partition memtables on a lock-free skip
//! list ([`memtable`]), a merge iterator for snapshot scans ([`merge`]),
//! SSTables ([`sst`], `docs/format/sstable.md`), flushes of memtables to
//! level-0 tables ([`flush`]) scheduled by size, by the global write-buffer
//! budget and by the WAL size limit ([`write_buffer`]), leveled compaction
//! ([`compaction`]), the manifest ([`manifest`], `docs/format/manifest.md`),
//! recovery ([`recovery`]) and the block and table caches ([`cache`]).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

pub mod batch;
pub mod cache;
pub mod coding;
pub mod commit;
pub mod compaction;
pub mod completion;
pub mod db;
pub mod error;
pub mod flush;
pub mod fs;
mod locks;
pub mod manifest;
pub mod mem;
pub mod memtable;
pub mod merge;
pub mod options;
pub mod partition;
pub mod recovery;
pub mod sst;
pub mod stall;
pub mod table_file;
pub mod wal;
pub mod write_buffer;

pub use completion::Completion;
pub use db::{Db, PartitionStats, Stats, WriteOp};
pub use error::{Error, Result};
pub use options::Options;
