//! The pinned configuration every backend gets, and how it maps onto each
//! backend's own options. [`settings`] lists what is applied, for the report.

use serde::{Deserialize, Serialize};

use crate::backends::Kind;

/// The budgets shared by every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Memtable (write buffer) size per partition: 64 MiB.
    pub write_buffer: usize,
    /// Block / page cache budget, smaller than the data set: 32 MiB.
    pub block_cache: usize,
    /// Bloom filter bits per key: 10.
    pub bloom_bits_per_key: u32,
    /// Background threads for flushes and compactions: 2.
    pub background_threads: usize,
    /// Data block size where the backend has one: 4 KiB.
    pub block_size: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            write_buffer: 64 << 20,
            block_cache: 32 << 20,
            bloom_bits_per_key: 10,
            background_threads: 2,
            block_size: 4096,
        }
    }
}

/// `n` bytes as `64 MiB`.
pub fn mib(n: usize) -> String {
    format!("{} MiB", n >> 20)
}

/// What each backend is given, as (setting, value) pairs for the report.
pub fn settings(kind: Kind, cfg: &BenchConfig) -> Vec<(&'static str, String)> {
    let wb = mib(cfg.write_buffer);
    let cache = mib(cfg.block_cache);
    let bloom = format!("{} bits/key", cfg.bloom_bits_per_key);
    let bg = cfg.background_threads.to_string();
    let block = format!("{} KiB", cfg.block_size >> 10);
    match kind {
        Kind::Lsm => vec![
            ("memtable_size", wb),
            (
                "block_cache_size",
                format!("{cache} (LRU; every open table's index and filter charged to it)"),
            ),
            ("bloom_bits_per_key", bloom),
            ("block_size", block),
            ("compression", "none (the engine has none)".into()),
            (
                "WAL",
                "on; a write returns once handed to the OS; fillsync: sync_writes".into(),
            ),
            (
                "background threads",
                "1 committer + 1 flusher + 1 compaction thread (fixed)".into(),
            ),
            (
                "compaction",
                "leveled, level 0 → base level at 4 files, dynamic level sizes ×10, \
                 64 MiB target files (engine defaults)"
                    .into(),
            ),
        ],
        Kind::RocksDb => vec![
            ("write_buffer_size", wb),
            (
                "block cache (LRU)",
                format!("{cache}; index and filter blocks charged to it, L0's pinned"),
            ),
            (
                "index / filters",
                "partitioned (two-level index, partitioned filters, top level pinned): \
                 RocksDB's setting for a cache smaller than its index and filters"
                    .into(),
            ),
            ("bloom", bloom),
            ("block_size", "4 KiB (RocksDB default)".into()),
            ("compression", "none".into()),
            ("WAL", "on, no sync; fillsync: sync per write".into()),
            ("max_background_jobs", bg),
            (
                "compaction",
                "leveled, dynamic level bytes (RocksDB defaults)".into(),
            ),
        ],
        Kind::Fjall => vec![
            ("max_memtable_size", wb),
            ("cache_size", cache),
            ("filter", bloom),
            ("data block size", block),
            (
                "compression",
                "none (data and index blocks; built without lz4)".into(),
            ),
            (
                "journal",
                "on, flushed to the OS per write; fillsync: persist(SyncData) per write".into(),
            ),
            ("worker_threads", bg),
        ],
        Kind::Sled => vec![
            ("cache_capacity", cache),
            ("mode", "HighThroughput".into()),
            (
                "log",
                "flush_every_ms 500 (sled default); fillsync: flush() per write".into(),
            ),
            (
                "memtable / bloom / compression",
                "not applicable (sled is a B-tree over a log)".into(),
            ),
        ],
        Kind::Redb => vec![
            ("cache_size", cache),
            (
                "durability",
                "Durability::None per write (redb has no WAL); fillsync: Immediate".into(),
            ),
            (
                "memtable / bloom / compression",
                "not applicable (copy-on-write B-tree)".into(),
            ),
        ],
        Kind::Memory => vec![("everything", "in memory; no disk, no durability".into())],
    }
}

/// The LSM engine's options for `cfg`: every engine knob that has a
/// counterpart in [`BenchConfig`] (memtable size, block size, bloom bits,
/// block-cache budget).
pub fn lsm_options(cfg: &BenchConfig, sync: bool) -> kalamdb_store::LsmOptions {
    kalamdb_store::LsmOptions {
        sync_writes: sync,
        memtable_size: cfg.write_buffer,
        block_size: cfg.block_size,
        bloom_bits_per_key: cfg.bloom_bits_per_key,
        block_cache_size: cfg.block_cache,
        ..Default::default()
    }
}

/// RocksDB's options for `cfg`.
#[cfg(feature = "rocksdb")]
pub fn rocksdb_options(cfg: &BenchConfig, sync: bool) -> kalamdb_store::RocksDbOptions {
    kalamdb_store::RocksDbOptions {
        sync_writes: sync,
        block_cache_bytes: cfg.block_cache,
        bloom_bits_per_key: f64::from(cfg.bloom_bits_per_key),
        write_buffer_size: cfg.write_buffer,
        max_background_jobs: i32::try_from(cfg.background_threads).unwrap_or(2),
        partitioned_index_filters: true,
    }
}

/// sled's options for `cfg`.
pub fn sled_options(cfg: &BenchConfig) -> kalamdb_store::SledOptions {
    kalamdb_store::SledOptions {
        cache_capacity: cfg.block_cache as u64,
        high_throughput: true,
        flush_every_ms: Some(500),
    }
}
