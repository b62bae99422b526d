//! Space reclamation through the `StorageBackend` trait on `LsmBackend`
//! (real files): deleting everything and compacting frees the partition's
//! disk; random overwrites keep table bytes near the live data.
//!
//! `SPACE_MB` sets the bytes written by each test (default 200 MB; the
//! churn test overwrites a key space a tenth of that). Long mode:
//! `SPACE_MB=2000`.

use kalamdb_store::testing::run;
use kalamdb_store::{LsmBackend, LsmOptions, Operation, Partition, StorageBackend};

const VALUE: usize = 1000;
const KEY: usize = 16;

mod common;

fn megabytes() -> u64 {
    common::env_or("SPACE_MB", 200)
}

fn options() -> LsmOptions {
    LsmOptions {
        memtable_size: 2 << 20,
        write_buffer_size: 16 << 20,
        target_file_size: 4 << 20,
        level_base_size: 16 << 20,
        ..LsmOptions::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("{i:016}").into_bytes()
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = vec![(i ^ round) as u8; VALUE];
    v[..8].copy_from_slice(&round.to_le_bytes());
    v
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kalamdb-space-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Bytes of the `.sst` files under `dir`.
fn sst_bytes(dir: &std::path::Path) -> u64 {
    common::file_bytes(dir, |p| p.extension().is_some_and(|x| x == "sst"))
}

async fn write_batch(
    b: &LsmBackend,
    p: &Partition,
    keys: impl Iterator<Item = (u64, Option<Vec<u8>>)>,
) {
    let ops = keys
        .map(|(i, v)| match v {
            Some(v) => Operation::put(p.clone(), key(i), v),
            None => Operation::delete(p.clone(), key(i)),
        })
        .collect();
    b.batch(ops).await.expect("batch");
}

#[test]
fn deleting_everything_and_compacting_frees_the_partition() {
    run(async {
        let dir = temp_dir("delete");
        let b = LsmBackend::new(&dir, options()).expect("open");
        let p = Partition::new("big").expect("name");
        b.create_partition(&p).await.expect("create");
        let n = megabytes() * 1_000_000 / (KEY + VALUE) as u64;
        for start in (0..n).step_by(100) {
            write_batch(
                &b,
                &p,
                (start..(start + 100).min(n)).map(|i| (i, Some(value(i, 0)))),
            )
            .await;
        }
        b.wait_for_background_work().await.expect("quiet");
        let peak = b.partition_size(&p).await.expect("size");
        assert!(peak >= n * (KEY + VALUE) as u64 / 2, "{peak}");
        for start in (0..n).step_by(100) {
            write_batch(&b, &p, (start..(start + 100).min(n)).map(|i| (i, None))).await;
        }
        b.compact(&p).await.expect("compact");
        let size = b.partition_size(&p).await.expect("size");
        let s = b.stats();
        println!(
            "wrote {n} keys, peak {peak} B, after delete + compact {size} B; \
             flush {} B, compaction {} B written",
            s.flush_bytes_written, s.compaction_bytes_written
        );
        assert!(size * 100 < peak, "{size} of {peak}");
        assert_eq!(b.scan(&p, None, None).await.expect("scan").count(), 0);
        assert_eq!(
            sst_bytes(&dir),
            0,
            "the partition's tables are gone from disk"
        );
        drop(b);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    });
}

#[test]
fn overwrite_churn_keeps_tables_near_the_live_data() {
    run(async {
        let dir = temp_dir("churn");
        let writes = megabytes() * 1_000_000 / (KEY + VALUE) as u64;
        let keys = writes / 10;
        let live = keys * (KEY + VALUE) as u64;
        // Memtables small against the key space (as with RocksDB's 64 MiB
        // memtables over a multi-GB key space): level 0 then holds little
        // beside the sorted run.
        let memtable = (live / 16).max(256 << 10) as usize;
        let options = LsmOptions {
            memtable_size: memtable,
            target_file_size: memtable as u64 * 2,
            ..options()
        };
        let b = LsmBackend::new(&dir, options).expect("open");
        let p = Partition::new("churn").expect("name");
        b.create_partition(&p).await.expect("create");
        let mut rng = 0x1234_5678_u64;
        let mut written = 0u64;
        let mut worst = 0f64;
        while written < writes {
            let batch: Vec<(u64, Option<Vec<u8>>)> = (0..100)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let i = rng % keys;
                    (i, Some(value(i, written)))
                })
                .collect();
            write_batch(&b, &p, batch.into_iter()).await;
            written += 100;
            if written.is_multiple_of(5000) && written >= keys * 2 {
                let s = b.stats();
                worst = worst.max(s.table_bytes as f64 / (keys * (KEY + VALUE) as u64) as f64);
            }
        }
        b.wait_for_background_work().await.expect("quiet");
        let s = b.stats();
        let ratio = s.table_bytes as f64 / live as f64;
        let user = written * (KEY + VALUE) as u64;
        assert_eq!(
            s.user_bytes_written, user,
            "the engine counts what was written"
        );
        let amp = s.write_amplification();
        println!(
            "{written} writes over {keys} keys, memtables of {memtable} B: tables {} B = {ratio:.2} x live ({worst:.2} x at \
             worst while writing), write amplification {amp:.2} (WAL + flush + compaction / user), \
             levels {:?}",
            s.table_bytes, s.levels
        );
        assert!(ratio <= 1.5, "tables {} B vs live {live} B", s.table_bytes);
        assert_eq!(sst_bytes(&dir), s.table_bytes, "no stray table files");
        let ps = b.partition_stats(&p).expect("partition stats");
        assert_eq!(ps.levels, s.levels, "the only partition holds every level");
        assert!(amp > 1.0, "WAL and tables both write every byte: {amp}");
        drop(b);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    });
}
