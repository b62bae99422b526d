//! Model test: random operation sequences (put, delete, batch, get, scan,
//! create, drop, reopen, …) against `LsmBackend` and the `MemoryBackend`
//! reference, every result compared.
//!
//! `MODEL_CASES` overrides the number of cases (default 1,000 × 200 ops).
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

/// Small memtables, WAL files and blocks, so sequences rotate both often
/// and tables span several blocks.
fn tiny() -> LsmOptions {
    LsmOptions {
        memtable_size: 512,
        wal_file_size: 2048,
        block_size: 128,
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
}
