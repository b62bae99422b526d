//! kalamdb-bench: the side-by-side comparison harness of kalamdb-store.
//!
//! The same workloads run through the `StorageBackend` trait on the LSM
//! engine, RocksDB, fjall, sled, redb and the memory backend, each backend ×
//! workload cell in a process of its own (`benches/compare.rs` starts this
//! executable again with `--cell`). See `benches/README.md` for the workloads,
//! metrics and commands, and `docs/BENCHMARKS.md` for the latest results.

pub mod adapters;
pub mod backends;
pub mod cell;
pub mod config;
pub mod keys;
pub mod measure;
pub mod rawdisk;
pub mod report;
pub mod resume;
pub mod runner;
pub mod workloads;
