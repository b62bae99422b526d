//! Many empty partitions on `LsmBackend` (the CI-sized version of
//! `examples/partitions_bench.rs`): 10,000 created concurrently through the
//! `StorageBackend` trait, then reopened and listed.
//!
//! Checks what must not grow with the number of partitions:
//! - fsyncs: concurrent creates share manifest fsyncs (group commit) — far
//!   fewer than one per create;
//! - files: an empty partition has no directory, no file and no open file
//!   descriptor; reopening opens no per-partition file;
//! - bytes: a few dozen bytes of manifest per partition.
//!
//! Every sync sleeps 2 ms (a disk's flush; on a tmpfs an fsync costs
//! nothing and no two creates would ever share one).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_lsm::fs::{CountingFs, RealFs};
use kalamdb_store::{LsmBackend, LsmOptions, Partition, StorageBackend};

const PARTITIONS: usize = 10_000;
/// Creates in flight at once: the batches a group commit can form.
const IN_FLIGHT: usize = 256;

fn name(i: usize) -> String {
    format!("table_{i:05}")
}

fn options(fs: &CountingFs<RealFs>) -> LsmOptions {
    LsmOptions {
        fs: Arc::new(fs.clone()),
        ..LsmOptions::default()
    }
}

mod common;

use common::open_fds;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the database directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .collect();
    names.sort();
    names
}

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read the database directory")
        .map(|e| {
            e.expect("directory entry")
                .metadata()
                .expect("metadata")
                .len()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_empty_partitions() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("db");
    let fs = CountingFs::new(RealFs::new()).with_sync_latency(Duration::from_millis(2));
    let backend = LsmBackend::new(&dir, options(&fs)).expect("open");
    let fds_open = open_fds();

    // Concurrent creation, IN_FLIGHT at a time.
    let before = fs.counts();
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(PARTITIONS);
    for i in 0..PARTITIONS {
        let backend = backend.clone();
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        tasks.push(tokio::spawn(async move {
            let p = Partition::new(name(i)).expect("valid name");
            let created = backend.create_partition(&p).await;
            drop(permit);
            created
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("create");
    }
    let created = fs.counts().since(&before);
    eprintln!(
        "created {PARTITIONS} partitions concurrently in {:.2?}: {} syncs",
        started.elapsed(),
        created.syncs()
    );
    // One fsync per create (or two, with the WAL's) would be >= 10,000;
    // group commit with 256 creates in flight gives ~150 here, ~700 with
    // the CPU oversubscribed three times over.
    assert!(
        created.syncs() < (PARTITIONS / 4) as u64,
        "{} syncs for {PARTITIONS} concurrent creates: no group commit",
        created.syncs()
    );
    assert_eq!(created.creates, 0, "an empty partition creates no file");
    assert_eq!(
        created.dirs_created, 0,
        "an empty partition has no directory"
    );
    assert!(
        open_fds() <= fds_open + 2,
        "open file descriptors grew from {fds_open} to {}",
        open_fds()
    );
    assert_eq!(
        backend.list_partitions().await.expect("list").len(),
        PARTITIONS
    );
    drop(backend);

    // Nothing per partition on disk: the lock, CURRENT, one manifest, one WAL.
    let names = entries(&dir);
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names.iter().all(|n| n == "LOCK"
            || n == "CURRENT"
            || n.starts_with("MANIFEST-")
            || n.ends_with(".wal")),
        "{names:?}"
    );
    let bytes = bytes_under(&dir);
    assert!(
        bytes < 64 * PARTITIONS as u64,
        "{bytes} bytes on disk for {PARTITIONS} empty partitions"
    );

    // Reopen and list: every partition, no file opened per partition.
    let before = fs.counts();
    let started = Instant::now();
    let backend = LsmBackend::new(&dir, options(&fs)).expect("reopen");
    let reopened = fs.counts().since(&before);
    let listed = backend.list_partitions().await.expect("list");
    eprintln!(
        "reopened and listed {} partitions in {:.2?}",
        listed.len(),
        started.elapsed()
    );
    let want: Vec<String> = (0..PARTITIONS).map(name).collect();
    let got: Vec<&str> = listed.iter().map(Partition::name).collect();
    assert_eq!(got, want);
    assert!(
        reopened.opens < 10,
        "reopen opened {} files",
        reopened.opens
    );
    for i in [0, PARTITIONS / 2, PARTITIONS - 1] {
        let p = Partition::new(name(i)).expect("valid name");
        assert!(backend.partition_exists(&p).await.expect("exists"));
    }

    // The control: one after another, creates cannot share fsyncs, so the
    // counter above could have seen one per create.
    let before = fs.counts();
    for i in 0..50 {
        let p = Partition::new(format!("sequential_{i}")).expect("valid name");
        backend.create_partition(&p).await.expect("create");
    }
    let sequential = fs.counts().since(&before);
    assert!(
        sequential.syncs() >= 50,
        "50 sequential creates took only {} syncs",
        sequential.syncs()
    );
    drop(backend);
    let dirs: Vec<String> = entries(&dir)
        .into_iter()
        .filter(|n| dir.join(n).is_dir())
        .collect();
    assert!(dirs.is_empty(), "directories after reopen: {dirs:?}");
}
