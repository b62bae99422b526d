//! Differential runs: random operation sequences against two backends.
//!
//! `DIFF_CASES` overrides the number of cases. Failing inputs are printed by
//! proptest and persisted in `tests/differential.proptest-regressions`,
//! which is committed and replayed first on every run.

use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(any(feature = "rocksdb", feature = "sled"))]
use kalamdb_store::testing::differential::{cases_from_env, ops};
use kalamdb_store::testing::differential::{compare, Op};
use kalamdb_store::testing::{run, Harness, MemoryHarness};
use kalamdb_store::{MemoryBackend, Operation, Partition, Result, ScanIterator, StorageBackend};
#[cfg(any(feature = "rocksdb", feature = "sled"))]
use proptest::prelude::*;
#[cfg(any(feature = "rocksdb", feature = "sled"))]
use proptest::test_runner::FileFailurePersistence;

#[cfg(any(feature = "rocksdb", feature = "sled"))]
fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases_from_env("DIFF_CASES", default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// A backend that silently loses every 5th put: the harness must notice.
struct LossyBackend {
    inner: MemoryBackend,
    puts: AtomicUsize,
}

#[async_trait::async_trait]
impl StorageBackend for LossyBackend {
    async fn get(&self, p: &Partition, k: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(p, k).await
    }
    async fn put(&self, p: &Partition, k: &[u8], v: &[u8]) -> Result<()> {
        if self.puts.fetch_add(1, Ordering::Relaxed) % 5 == 4 {
            return Ok(());
        }
        self.inner.put(p, k, v).await
    }
    async fn delete(&self, p: &Partition, k: &[u8]) -> Result<()> {
        self.inner.delete(p, k).await
    }
    async fn scan(
        &self,
        p: &Partition,
        s: Option<&[u8]>,
        e: Option<&[u8]>,
    ) -> Result<ScanIterator> {
        self.inner.scan(p, s, e).await
    }
    async fn batch(&self, ops: Vec<Operation>) -> Result<()> {
        self.inner.batch(ops).await
    }
    async fn create_partition(&self, p: &Partition) -> Result<()> {
        self.inner.create_partition(p).await
    }
    async fn partition_exists(&self, p: &Partition) -> Result<bool> {
        self.inner.partition_exists(p).await
    }
    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.inner.list_partitions().await
    }
    async fn drop_partition(&self, p: &Partition) -> Result<()> {
        self.inner.drop_partition(p).await
    }
    async fn partition_size(&self, p: &Partition) -> Result<u64> {
        self.inner.partition_size(p).await
    }
    async fn compact(&self, p: &Partition) -> Result<()> {
        self.inner.compact(p).await
    }
}

struct LossyHarness;

impl Harness for LossyHarness {
    type Backend = LossyBackend;
    fn open(&mut self) -> Result<LossyBackend> {
        Ok(LossyBackend {
            inner: MemoryBackend::new(),
            puts: AtomicUsize::new(0),
        })
    }
    fn persistent(&self) -> bool {
        false
    }
}

/// The harness reports a divergence (and where) when one backend loses writes.
#[test]
fn harness_detects_a_lost_write() {
    let p = 0;
    let mut ops = vec![Op::Create(p)];
    for i in 0..10u8 {
        ops.push(Op::Put(p, vec![i], vec![i]));
    }
    let err = run(compare(MemoryHarness::new(), LossyHarness, &ops)).unwrap_err();
    assert!(err.contains("final contents differ"), "{err}");
    ops.push(Op::Get(p, vec![4]));
    let err = run(compare(MemoryHarness::new(), LossyHarness, &ops)).unwrap_err();
    assert!(err.starts_with("op #11 Get"), "{err}");
}

#[cfg(feature = "rocksdb")]
proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn memory_vs_rocksdb(ops in ops(200)) {
        let outcome = run(compare(MemoryHarness::new(), kalamdb_store::testing::RocksDbHarness::new(), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

#[cfg(feature = "rocksdb")]
proptest! {
    #![proptest_config(config(256))]

    /// The LSM engine (small memtables and WAL files, so they rotate) against
    /// RocksDB, both durable: `Reopen` really reopens both.
    #[test]
    fn lsm_vs_rocksdb(ops in ops(200)) {
        let lsm = kalamdb_store::testing::LsmHarness::with_options(kalamdb_store::LsmOptions {
            memtable_size: 1024,
            wal_file_size: 4096,
            ..Default::default()
        });
        let outcome = run(compare(lsm, kalamdb_store::testing::RocksDbHarness::new(), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

#[cfg(feature = "rocksdb")]
proptest! {
    #![proptest_config(config(256))]

    /// The LSM engine with 64-byte blocks, 256-byte memtables and a manifest
    /// that rolls over every 512 bytes against RocksDB: a table spans many
    /// blocks (a 100–400-byte value fills one alone), a partition gathers
    /// many level-0 tables, and `compact` (a flush of the partition, for
    /// now) cuts memtables at random points.
    #[test]
    fn lsm_tiny_blocks_vs_rocksdb(ops in ops(200)) {
        let lsm = kalamdb_store::testing::LsmHarness::with_options(kalamdb_store::LsmOptions {
            memtable_size: 256,
            wal_file_size: 2048,
            block_size: 64,
            manifest_rollover_size: 512,
            ..Default::default()
        });
        let outcome = run(compare(lsm, kalamdb_store::testing::RocksDbHarness::new(), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

#[cfg(feature = "sled")]
proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn memory_vs_sled(ops in ops(200)) {
        let outcome = run(compare(MemoryHarness::new(), kalamdb_store::testing::SledHarness::new(), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
