//! # kalamdb-store
//!
//! Pluggable key-value storage for KalamDB: one async [`StorageBackend`] trait
//! with partitions (named keyspaces), point reads and writes, snapshot range
//! scans and atomic multi-partition batches, and several backends behind it:
//!
//! | backend | feature | what it is |
//! |---|---|---|
//! | [`LsmBackend`] | always | the pure-Rust LSM engine (crate `kalamdb-lsm`): the embedded default |
//! | [`MemoryBackend`] | always | the in-memory reference model; for tests |
//! | `RocksDbBackend` | `rocksdb` | RocksDB through column families (builds C++) |
//! | `SledBackend` | `sled` | sled 0.34, one tree per partition |
//!
//! The default build compiles no C or C++. The README's "Durability" section
//! says what a returned write survives on each backend.
//!
//! Every backend behaves the same (see [`StorageBackend`]); the public
//! conformance suite (`kalamdb_store::testing`, feature `testing`) checks any
//! backend, your own included, in one line.
//!
//! ```
//! use kalamdb_store::{MemoryBackend, Operation, Partition, StorageBackend};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kalamdb_store::Result<()> {
//! let backend = MemoryBackend::new();
//! let messages = Partition::new("messages")?;
//! backend.create_partition(&messages).await?;
//!
//! backend.put(&messages, b"msg:123", b"Hello, world!").await?;
//! assert_eq!(backend.get(&messages, b"msg:123").await?, Some(b"Hello, world!".to_vec()));
//!
//! backend.batch(vec![
//!     Operation::put(messages.clone(), b"msg:124".to_vec(), b"hi".to_vec()),
//!     Operation::delete(messages.clone(), b"msg:123".to_vec()),
//! ]).await?;
//!
//! let all: Vec<_> = backend.scan(&messages, None, None).await?.collect::<Result<_, _>>()?;
//! assert_eq!(all, vec![(b"msg:124".to_vec(), b"hi".to_vec())]);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod backend;
pub mod backends;
mod error;
pub mod iter;
pub mod limits;
mod operation;
mod partition;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::StorageBackend;
pub use backends::lsm::{LsmBackend, LsmOptions, LsmPartitionStats, LsmStats, WriteOptions};
pub use backends::memory::MemoryBackend;
#[cfg(feature = "rocksdb")]
pub use backends::rocksdb::{RocksDbBackend, RocksDbOptions};
#[cfg(feature = "sled")]
pub use backends::sled::{SledBackend, SledOptions};
pub use error::{BackendErrorKind, Error, Result};
pub use iter::{KvPair, ScanIterator};
pub use operation::Operation;
pub use partition::{Partition, MAX_PARTITION_NAME_LEN};
