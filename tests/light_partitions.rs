//! Many light partitions (issue: "100,000 partitions with a few keys each
//! written, reopened, scanned and compacted with memory and open files
//! bounded by the options"), through the `StorageBackend` trait on real
//! files.
//!
//! `LIGHT_PARTITIONS` sets the count (default 10,000 — the CI size; the
//! figures for 100,000 in docs/BENCHMARKS.md come from
//! `LIGHT_PARTITIONS=100000 cargo test --release --features testing --test
//! light_partitions -- --nocapture`).

use std::time::Instant;

use kalamdb_store::testing::run;
use kalamdb_store::{LsmBackend, LsmOptions, Operation, Partition, StorageBackend};

const KEYS: usize = 3;
const MAX_OPEN_FILES: usize = 64;

mod common;

use common::{open_fds, rss_kib};

fn count() -> usize {
    common::env_or("LIGHT_PARTITIONS", 10_000)
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    common::file_bytes(dir, |_| true)
}

fn options() -> LsmOptions {
    LsmOptions {
        max_open_files: MAX_OPEN_FILES,
        block_cache_size: 4 << 20,
        ..LsmOptions::default()
    }
}

fn partition(i: usize) -> Partition {
    Partition::new(format!("t{i:06}")).expect("name")
}

fn key(k: usize) -> Vec<u8> {
    format!("row{k}").into_bytes()
}

fn value(i: usize, k: usize) -> Vec<u8> {
    format!("value of row {k} in partition {i}").into_bytes()
}

async fn check_all(b: &LsmBackend, n: usize) {
    for i in 0..n {
        let p = partition(i);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = b
            .scan(&p, None, None)
            .await
            .expect("scan")
            .collect::<kalamdb_store::Result<_>>()
            .expect("rows");
        let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..KEYS).map(|k| (key(k), value(i, k))).collect();
        assert_eq!(rows, expected, "partition {i}");
    }
}

#[test]
fn many_light_partitions_stay_within_memory_and_open_file_bounds() {
    run(async {
        let n = count();
        let dir = std::env::temp_dir().join(format!("kalamdb-light-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fds_before = open_fds();
        let rss_before = rss_kib();

        let t = Instant::now();
        let b = LsmBackend::new(&dir, options()).expect("open");
        for i in 0..n {
            b.create_partition(&partition(i)).await.expect("create");
        }
        let create = t.elapsed();
        let t = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let ops = chunk
                .iter()
                .flat_map(|&i| {
                    (0..KEYS).map(move |k| Operation::put(partition(i), key(k), value(i, k)))
                })
                .collect();
            b.batch(ops).await.expect("batch");
        }
        let write = t.elapsed();
        let t = Instant::now();
        b.flush().await.expect("flush");
        let flush = t.elapsed();
        let s = b.stats();
        assert_eq!(s.tables, n, "one table per partition");
        assert!(s.table_cache.open <= MAX_OPEN_FILES, "{:?}", s.table_cache);
        assert!(
            open_fds() <= fds_before + MAX_OPEN_FILES + 16,
            "descriptors: {} before, {} now",
            fds_before,
            open_fds()
        );
        drop(b);

        let t = Instant::now();
        let b = LsmBackend::new(&dir, options()).expect("reopen");
        let reopen = t.elapsed();
        let rss_open = rss_kib().saturating_sub(rss_before);
        assert_eq!(b.list_partitions().await.expect("list").len(), n);
        let t = Instant::now();
        check_all(&b, n).await;
        let scan = t.elapsed();
        let s = b.stats();
        assert!(s.table_cache.open <= MAX_OPEN_FILES, "{:?}", s.table_cache);
        assert!(s.table_cache.evictions > 0 || n <= MAX_OPEN_FILES);
        let fds_scan = open_fds();
        assert!(
            fds_scan <= fds_before + MAX_OPEN_FILES + 16,
            "{fds_scan} descriptors"
        );

        let t = Instant::now();
        for i in 0..n {
            b.compact(&partition(i)).await.expect("compact");
        }
        let compact = t.elapsed();
        b.wait_for_background_work().await.expect("quiet");
        let s = b.stats();
        assert_eq!(s.tables, n);
        assert_eq!(
            s.levels[6].0, n,
            "each partition one bottom-level table: {:?}",
            s.levels
        );
        check_all(&b, n).await;
        let bytes = disk_bytes(&dir);
        println!(
            "{n} partitions x {KEYS} keys: create {create:.2?}, write {write:.2?}, flush {flush:.2?}, \
             reopen {reopen:.2?}, scan all {scan:.2?}, compact all {compact:.2?}; \
             {:.0} B on disk per partition; RSS after reopen +{} KiB ({:.0} B per partition); \
             open fds {fds_before} before, {fds_scan} while scanning (max_open_files {MAX_OPEN_FILES}); \
             table cache {:?}",
            bytes as f64 / n as f64,
            rss_open,
            rss_open as f64 * 1024.0 / n as f64,
            s.table_cache
        );
        drop(b);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    });
}
