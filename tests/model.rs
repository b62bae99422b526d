//! Model test: random operation sequences (put, delete, batch, get, scan,
//! create, drop, reopen, …) against `LsmBackend` and the `MemoryBackend`
//! reference, every result compared.
//!
//! Two configurations: tiny memtables and WAL files, and a tiny write-buffer
//! budget and WAL limit (flushes chosen by the flush thread).
//!
//! `MODEL_CASES` overrides the number of cases (default 1,000 × 200 ops each).
//! Failing inputs are printed by proptest and persisted in
//! `tests/model.proptest-regressions`, replayed first on every run.

use kalamdb_store::testing::differential::{cases_from_env, compare, ops};
use kalamdb_store::testing::{run, LsmHarness, MemoryHarness};
use kalamdb_store::LsmOptions;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases_from_env("MODEL_CASES", default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Tiny memtables, blocks, caches, tables and levels: data reaches several
/// level-0 tables of many blocks and compaction runs concurrently, through
/// several levels; the block cache evicts and the table cache closes and
/// reopens tables.
fn tiny() -> LsmOptions {
    LsmOptions {
        memtable_size: 512,
        wal_file_size: 2048,
        block_size: 64,
        block_cache_size: 2048,
        max_open_files: 2,
        target_file_size: 1024,
        level_base_size: 2048,
        l0_compaction_trigger: 2,
        ..LsmOptions::default()
    }
}

/// Large memtables, but a tiny write-buffer budget and WAL limit: the flush
/// thread rotates memtables early (largest first, and those pinning the
/// oldest WAL file) while the sequence runs.
fn tiny_budget() -> LsmOptions {
    LsmOptions {
        memtable_size: 64 << 10,
        write_buffer_size: 1024,
        wal_file_size: 1024,
        max_total_wal_size: 3072,
        ..LsmOptions::default()
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn lsm_matches_the_model(ops in ops(200)) {
        let outcome = run(compare(MemoryHarness::new(), LsmHarness::with_options(tiny()), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }

    #[test]
    fn lsm_with_a_tiny_write_buffer_matches_the_model(ops in ops(200)) {
        let outcome = run(compare(MemoryHarness::new(), LsmHarness::with_options(tiny_budget()), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

proptest! {
    #![proptest_config(config(250))]

    /// Tables read through memory maps.
    #[test]
    fn lsm_with_mmap_reads_matches_the_model(ops in ops(200)) {
        let options = LsmOptions { mmap_reads: true, ..tiny() };
        let outcome = run(compare(MemoryHarness::new(), LsmHarness::with_options(options), &ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
