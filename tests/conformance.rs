//! The public conformance suite, run against every built-in backend.

#[global_allocator]
static ALLOC: kalamdb_store::testing::alloc::CountingAlloc =
    kalamdb_store::testing::alloc::CountingAlloc;

mod lsm {
    kalamdb_store::conformance_tests!(kalamdb_store::testing::LsmHarness::new());
}

/// Small memtables, WAL files, blocks and caches: data spreads over many
/// tables of many blocks, the WAL rotates often, the block cache evicts and
/// the table cache closes and reopens tables.
mod lsm_tiny_memtables {
    kalamdb_store::conformance_tests!(kalamdb_store::testing::LsmHarness::with_options(
        kalamdb_store::LsmOptions {
            memtable_size: 64 * 1024,
            wal_file_size: 256 * 1024,
            block_size: 256,
            block_cache_size: 16 * 1024,
            max_open_files: 2,
            ..Default::default()
        }
    ));
}

/// Tables read through memory maps.
mod lsm_mmap {
    kalamdb_store::conformance_tests!(kalamdb_store::testing::LsmHarness::with_options(
        kalamdb_store::LsmOptions {
            memtable_size: 64 * 1024,
            block_size: 1024,
            mmap_reads: true,
            ..Default::default()
        }
    ));
}

mod memory {
    kalamdb_store::conformance_tests!(kalamdb_store::testing::MemoryHarness::new());
}

#[cfg(feature = "rocksdb")]
mod rocksdb {
    kalamdb_store::conformance_tests!(kalamdb_store::testing::RocksDbHarness::new());
}

#[cfg(feature = "sled")]
mod sled {
    kalamdb_store::conformance_tests!(kalamdb_store::testing::SledHarness::new());
}

/// `run_all` and the macro cover the same tests: the name list is complete.
#[test]
fn suite_lists_every_test_once() {
    let names = kalamdb_store::testing::conformance::TESTS;
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    let source = include_str!("../src/testing/conformance.rs");
    for name in names {
        assert!(
            source.contains(&format!("pub async fn {name}<")),
            "{name} has no function"
        );
        assert_eq!(
            source.matches(&format!("            {name},\n")).count(),
            1,
            "{name} must appear once in conformance_tests!"
        );
        assert!(
            source.contains(&format!("    {name}(make()).await;")),
            "{name} missing from run_all"
        );
    }
    assert_eq!(
        source.matches("pub async fn ").count(),
        names.len() + 1,
        "a test is missing from TESTS"
    );
}
