//! Many empty partitions: what creating, reopening and listing them costs on
//! `LsmBackend`, through the `StorageBackend` trait.
//!
//! ```text
//! cargo run --release --example partitions_bench -- [N] [DIR]
//! ```
//!
//! `N` partitions (default 100,000) are created on the real file system in
//! `DIR` (default: a new directory under `$TMPDIR`, removed at the end; use a
//! directory on a real disk, a tmpfs makes fsync free):
//!
//! 1. concurrently — one tokio task per partition, so the manifest's group
//!    commit can share fsyncs between them;
//! 2. the backend is dropped, then reopened and the partitions listed in a
//!    fresh child process (as at a real start-up, and so that its resident
//!    memory is what the open database holds);
//! 3. sequentially, one after another, in a second database (`N` again, or
//!    `PARTITIONS_BENCH_SEQUENTIAL` if set: one fsync each makes this the
//!    slow phase on a real disk).
//!
//! It reports times, fsyncs (counted by a [`CountingFs`] around the real
//! file system), bytes and files on disk, open file descriptors
//! (`/proc/self/fd`) and resident memory. A measurement, not a test: it
//! fails only if a partition goes missing.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_lsm::fs::{CountingFs, FsCounts, RealFs};
use kalamdb_store::{LsmBackend, LsmOptions, Partition, StorageBackend};

type Fs = CountingFs<RealFs>;

fn name(i: usize) -> String {
    format!("table_{i:06}")
}

fn options(fs: &Fs) -> LsmOptions {
    LsmOptions {
        fs: Arc::new(fs.clone()),
        ..LsmOptions::default()
    }
}

/// Entries in `/proc/self/fd` (0 where there is no procfs).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident set size in KiB (0 where there is no procfs).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Files, directories, apparent bytes and allocated bytes under `dir`.
#[derive(Debug, Default)]
struct DiskUsage {
    files: u64,
    dirs: u64,
    bytes: u64,
    allocated: u64,
}

fn disk_usage(dir: &Path) -> std::io::Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DiskUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                usage.dirs += 1;
                stack.push(entry.path());
            } else {
                usage.files += 1;
                usage.bytes += meta.len();
                usage.allocated += meta.blocks() * 512;
            }
        }
    }
    Ok(usage)
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn syncs(c: &FsCounts) -> String {
    format!(
        "{} (fdatasync {}, fsync {}, dir {})",
        c.syncs(),
        c.sync_data,
        c.sync_all,
        c.sync_dir
    )
}

struct Created {
    elapsed: Duration,
    counts: FsCounts,
}

async fn create_concurrently(
    backend: &LsmBackend,
    fs: &Fs,
    n: usize,
) -> Result<Created, Box<dyn Error>> {
    let before = fs.counts();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            let p = Partition::new(name(i))?;
            backend.create_partition(&p).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(Created {
        elapsed: started.elapsed(),
        counts: fs.counts().since(&before),
    })
}

async fn create_sequentially(
    backend: &LsmBackend,
    fs: &Fs,
    n: usize,
) -> Result<Created, Box<dyn Error>> {
    let before = fs.counts();
    let started = Instant::now();
    for i in 0..n {
        backend.create_partition(&Partition::new(name(i))?).await?;
    }
    Ok(Created {
        elapsed: started.elapsed(),
        counts: fs.counts().since(&before),
    })
}

fn report_created(what: &str, n: usize, c: &Created) {
    println!(
        "{what}: {n} partitions in {:.2?} ({:.0}/s); syncs {} = {:.4} per partition",
        c.elapsed,
        per_second(n, c.elapsed),
        syncs(&c.counts),
        c.counts.syncs() as f64 / n.max(1) as f64,
    );
}

fn report_disk(dir: &Path, n: usize) -> Result<(), Box<dyn Error>> {
    let u = disk_usage(dir)?;
    println!(
        "on disk: {} files, {} directories, {} bytes ({:.1} per partition), {} bytes allocated ({:.1} per partition)",
        u.files,
        u.dirs,
        u.bytes,
        u.bytes as f64 / n.max(1) as f64,
        u.allocated,
        u.allocated as f64 / n.max(1) as f64,
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    println!("  entries: {}", names.join(" "));
    Ok(())
}

/// Set in the child process that reopens the database named by its value.
const REOPEN_ENV: &str = "PARTITIONS_BENCH_REOPEN";

/// The child: reopens `dir`, lists its `n` partitions, reports.
async fn reopen(dir: &Path, n: usize) -> Result<(), Box<dyn Error>> {
    let fs = CountingFs::new(RealFs::new());
    let rss_before = rss_kib();
    let fds_before = open_fds();
    let started = Instant::now();
    let backend = LsmBackend::new(dir, options(&fs))?;
    let reopened = started.elapsed();
    let counts = fs.counts();
    let started = Instant::now();
    let listed = backend.list_partitions().await?;
    let list_time = started.elapsed();
    assert_eq!(listed.len(), n, "partitions listed after reopen");
    assert!(
        listed.iter().enumerate().all(|(i, p)| p.name() == name(i)),
        "every partition listed, in order"
    );
    let rss = rss_kib();
    println!(
        "reopen (fresh process): {reopened:.2?} ({} syncs, {} files opened); list: {list_time:.2?} for {} partitions",
        counts.syncs(),
        counts.opens,
        listed.len(),
    );
    println!(
        "  open fds: {fds_before} before, {} after reopen; resident memory: {rss_before} KiB before, {rss} KiB after ({:.0} bytes per partition)",
        open_fds(),
        (rss.saturating_sub(rss_before) * 1024) as f64 / n.max(1) as f64
    );
    drop(backend);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if let Some(dir) = std::env::var_os(REOPEN_ENV) {
        let n: usize = std::env::var("PARTITIONS_BENCH_N")?.parse()?;
        return reopen(Path::new(&dir), n).await;
    }
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let (root, remove) = match args.next() {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("kalamdb-partitions-bench-{}", std::process::id())),
            true,
        ),
    };
    let sequential: usize = std::env::var("PARTITIONS_BENCH_SEQUENTIAL")
        .ok()
        .map_or(Ok(n), |v| v.parse())?;
    let concurrent_dir = root.join("concurrent");
    let sequential_dir = root.join("sequential");
    for d in [&concurrent_dir, &sequential_dir] {
        if d.exists() {
            return Err(format!("{} exists; give a fresh directory", d.display()).into());
        }
    }
    println!("partitions_bench: {n} partitions in {}", root.display());

    // 1. Concurrent creation.
    let fs = CountingFs::new(RealFs::new());
    let fds_before = open_fds();
    let rss_before = rss_kib();
    let backend = LsmBackend::new(&concurrent_dir, options(&fs))?;
    let fds_open = open_fds();
    let created = create_concurrently(&backend, &fs, n).await?;
    report_created("create (concurrent, 1 task each)", n, &created);
    let fds_created = open_fds();
    println!(
        "open fds: {fds_before} before open, {fds_open} after open, {fds_created} after creating ({:+} for {n} partitions)",
        fds_created as i64 - fds_open as i64
    );
    println!(
        "resident memory: {} KiB before, {} KiB after ({:.0} bytes per partition)",
        rss_before,
        rss_kib(),
        (rss_kib().saturating_sub(rss_before) * 1024) as f64 / n.max(1) as f64
    );
    let stats = backend.stats();
    assert_eq!(stats.partitions, n, "partitions after creation");
    drop(backend);
    report_disk(&concurrent_dir, n)?;

    // 2. Reopen and list, in a fresh process.
    let status = std::process::Command::new(std::env::current_exe()?)
        .env(REOPEN_ENV, &concurrent_dir)
        .env("PARTITIONS_BENCH_N", n.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("reopen child failed: {status}").into());
    }
    report_disk(&concurrent_dir, n)?;

    // 3. Sequential creation, for comparison.
    if sequential > 0 {
        let fs = CountingFs::new(RealFs::new());
        let backend = LsmBackend::new(&sequential_dir, options(&fs))?;
        let created = create_sequentially(&backend, &fs, sequential).await?;
        report_created("create (sequential)", sequential, &created);
        drop(backend);
    }

    if remove {
        std::fs::remove_dir_all(&root)?;
    }
    Ok(())
}
