//! Many light partitions: `N` partitions with a few keys each, written and
//! flushed, then reopened, scanned and compacted **in a fresh process**, so
//! the resident memory and open descriptors it reports are what the open
//! database holds (not what the writing phase left in the allocator).
//!
//! ```text
//! cargo run --release --example light_partitions_bench -- [N] [DIR]
//! ```
//!
//! `N` defaults to 100,000; `DIR` to a new directory under `$TMPDIR`,
//! removed at the end. Options bound what the open database may hold:
//! `max_open_files` 64 and a 4 MiB block cache. A measurement, not a test
//! (the test is `tests/light_partitions.rs`); it still fails if a row is
//! wrong or missing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use kalamdb_store::{LsmBackend, LsmOptions, Operation, Partition, StorageBackend};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{allocated_bytes, file_bytes, open_fds, peak_rss_kib, rss_kib};

const KEYS: usize = 3;
const MAX_OPEN_FILES: usize = 64;
/// The system allocator, counting the bytes currently allocated: the live
/// heap, which RSS overstates by what the allocator keeps after frees.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to `System` with the caller's arguments; the
// counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes.
fn heap() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Set in the child process, to the database directory.
const CHILD_ENV: &str = "LIGHT_PARTITIONS_BENCH_DIR";

fn options() -> LsmOptions {
    LsmOptions {
        max_open_files: MAX_OPEN_FILES,
        block_cache_size: 4 << 20,
        ..LsmOptions::default()
    }
}

fn partition(i: usize) -> Result<Partition, Box<dyn Error>> {
    Ok(Partition::new(format!("t{i:06}"))?)
}

fn key(k: usize) -> Vec<u8> {
    format!("row{k}").into_bytes()
}

fn value(i: usize, k: usize) -> Vec<u8> {
    format!("value of row {k} in partition {i}").into_bytes()
}

/// Bytes per partition, of a KiB figure.
fn per(kib: u64, n: usize) -> f64 {
    (kib * 1024) as f64 / n.max(1) as f64
}

/// Scans every partition and checks its rows; returns the most descriptors
/// seen open along the way.
async fn scan_all(b: &LsmBackend, n: usize) -> Result<usize, Box<dyn Error>> {
    let mut max_fds = 0;
    for i in 0..n {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = b
            .scan(&partition(i)?, None, None)
            .await?
            .collect::<kalamdb_store::Result<_>>()?;
        let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..KEYS).map(|k| (key(k), value(i, k))).collect();
        if rows != expected {
            return Err(format!("partition {i}: {rows:?}").into());
        }
        if i % 500 == 0 {
            max_fds = max_fds.max(open_fds());
        }
    }
    Ok(max_fds.max(open_fds()))
}

/// The parent: creates, writes and flushes `n` partitions in `dir`.
async fn build(dir: &Path, n: usize) -> Result<(), Box<dyn Error>> {
    let b = LsmBackend::new(dir, options())?;
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let b = b.clone();
            let p = partition(i)?;
            tasks.push(tokio::spawn(async move { b.create_partition(&p).await }));
        }
        for task in tasks {
            task.await??;
        }
    }
    let create = t.elapsed();
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut ops = Vec::with_capacity(chunk.len() * KEYS);
        for &i in chunk {
            for k in 0..KEYS {
                ops.push(Operation::put(partition(i)?, key(k), value(i, k)));
            }
        }
        b.batch(ops).await?;
    }
    let write = t.elapsed();
    let t = Instant::now();
    b.flush().await?;
    let flush = t.elapsed();
    let s = b.stats();
    println!(
        "build: {n} partitions x {KEYS} keys: create {create:.2?} (1,000 tasks at a time), \
         write {write:.2?} (batches over 100 partitions), flush {flush:.2?}; {} tables, {:.0} B on disk per partition",
        s.tables,
        file_bytes(dir, |_| true) as f64 / n.max(1) as f64
    );
    Ok(())
}

/// The child: reopens, scans and compacts, reporting memory and descriptors.
async fn measure(dir: &Path, n: usize) -> Result<(), Box<dyn Error>> {
    let rss0 = rss_kib();
    let heap0 = heap();
    let fds0 = open_fds();
    let t = Instant::now();
    let b = LsmBackend::new(dir, options())?;
    let open = t.elapsed();
    let listed = b.list_partitions().await?.len();
    if listed != n {
        return Err(format!("{listed} partitions listed, {n} expected").into());
    }
    let rss_open = rss_kib().saturating_sub(rss0);
    let fds_open = open_fds();
    println!(
        "open (fresh process): {open:.2?}; RSS +{rss_open} KiB ({:.0} B per partition), \
         live heap {:.0} B per partition; descriptors {fds0} before, {fds_open} after",
        per(rss_open, n),
        heap().saturating_sub(heap0) as f64 / n.max(1) as f64,
    );

    let t = Instant::now();
    let fds_scan = scan_all(&b, n).await?;
    let scan = t.elapsed();
    let s = b.stats();
    let rss_scan = rss_kib().saturating_sub(rss0);
    println!(
        "scan every partition: {scan:.2?}; RSS +{rss_scan} KiB ({:.0} B per partition), peak {} KiB, \
         live heap {:.0} B per partition; descriptors at most {fds_scan} (max_open_files {MAX_OPEN_FILES}); \
         table cache {} open, {} evictions; block cache {} KiB used",
        per(rss_scan, n),
        peak_rss_kib(),
        heap().saturating_sub(heap0) as f64 / n.max(1) as f64,
        s.table_cache.open,
        s.table_cache.evictions,
        s.block_cache.usage >> 10,
    );

    let t = Instant::now();
    for i in 0..n {
        b.compact(&partition(i)?).await?;
    }
    b.wait_for_background_work().await?;
    let compact = t.elapsed();
    let s = b.stats();
    if s.levels[6].0 != n {
        return Err(format!("bottom level after compaction: {:?}", s.levels).into());
    }
    let fds_compact = scan_all(&b, n).await?;
    let rss_compact = rss_kib().saturating_sub(rss0);
    println!(
        "compact every partition: {compact:.2?}; RSS +{rss_compact} KiB ({:.0} B per partition), \
         peak {} KiB, live heap {:.0} B per partition; descriptors at most {fds_compact}; \
         {:.0} B of files per partition, {:.0} B of disk (du) per partition",
        per(rss_compact, n),
        peak_rss_kib(),
        heap().saturating_sub(heap0) as f64 / n.max(1) as f64,
        file_bytes(dir, |_| true) as f64 / n.max(1) as f64,
        allocated_bytes(dir)? as f64 / n.max(1) as f64,
    );
    drop(b);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let n: usize = std::env::var("LIGHT_PARTITIONS_BENCH_N")?.parse()?;
        return measure(Path::new(&dir), n).await;
    }
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let (dir, remove) = match args.next() {
        Some(d) => (Path::new(&d).to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("kalamdb-light-bench-{}", std::process::id())),
            true,
        ),
    };
    if dir.exists() {
        return Err(format!("{} exists; give a fresh directory", dir.display()).into());
    }
    println!(
        "light_partitions_bench: {n} partitions in {}",
        dir.display()
    );
    build(&dir, n).await?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, &dir)
        .env("LIGHT_PARTITIONS_BENCH_N", n.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("measuring child failed: {status}").into());
    }
    if remove {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
