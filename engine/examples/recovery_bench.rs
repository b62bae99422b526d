//! Recovery time: how long `Db::open` takes to replay ~64 MiB of WAL.
//!
//! Writes ~64 MiB of WAL on the real file system (16-byte random keys,
//! 100-byte values, 4 partitions, batches of 100 operations, not synced),
//! drops the database, then times `Db::open` (median of 3, each in a fresh
//! child process, as at a real start-up, on a fresh copy of the directory:
//! an open flushes what it replays) and prints the child's peak RSS. It then repeats
//! the phases of recovery by hand through the engine's public modules — read
//! the files, check the framing (CRC), decode the batches, insert into
//! memtables — to show where the time goes.
//!
//! ```text
//! cargo run --release -p kalamdb-lsm --example recovery_bench [DIR] [MIB]
//! ```
//!
//! `DIR` (default: a new directory under `$TMPDIR`, removed at the end) is
//! written if it does not exist and kept; if it exists, its WAL is reused
//! without writing (handy under a profiler). `MIB` is the WAL size to write
//! (default 64). `RECOVERY_BENCH_KEYS=sequential` writes ascending keys
//! instead of random ones. A measurement, not a test: it asserts nothing
//! about time.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_lsm::batch::decode_batch;
use kalamdb_lsm::fs::RealFs;
use kalamdb_lsm::partition::PartitionState;
use kalamdb_lsm::table_file::PartitionDir;
use kalamdb_lsm::wal::reader::read_log;
use kalamdb_lsm::wal::writer::parse_wal_file_name;
use kalamdb_lsm::{Db, Options, WriteOp};

const PARTITIONS: [&str; 4] = ["events", "users", "orders", "metrics"];
const BATCH: usize = 100;
const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
const OPENS: usize = 3;

/// splitmix64: deterministic pseudo-random keys and values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The WAL files of `dir`, in number order.
fn wal_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut numbered = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(parse_wal_file_name) {
            numbered.push((n, dir.join(name)));
        }
    }
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, p)| p).collect())
}

fn write_wal(dir: &Path, target: u64) -> Result<u64, Box<dyn Error>> {
    let db = Db::open(dir, Options::default())?;
    for p in PARTITIONS {
        db.create_partition(p)?;
    }
    let mut rng = Rng(42);
    let mut entries = 0u64;
    let sequential = std::env::var("RECOVERY_BENCH_KEYS").as_deref() == Ok("sequential");
    let started = Instant::now();
    while db.stats().wal_bytes_written < target {
        let ops: Vec<WriteOp<&str>> = (0..BATCH)
            .map(|i| WriteOp {
                partition: PARTITIONS[(rng.next() % PARTITIONS.len() as u64) as usize],
                key: if sequential {
                    let k = entries + i as u64;
                    [k.to_be_bytes(), k.to_be_bytes()].concat()
                } else {
                    rng.bytes(KEY_LEN)
                },
                value: Some(rng.bytes(VALUE_LEN)),
            })
            .collect();
        db.write(ops, Some(false))?;
        entries += BATCH as u64;
    }
    let elapsed = started.elapsed();
    let stats = db.stats();
    println!(
        "wrote {entries} entries ({} keys, {:.1} MiB of WAL, {} groups) in {:.2} s",
        if sequential { "sequential" } else { "random" },
        mib(stats.wal_bytes_written),
        stats.write_groups,
        secs(elapsed)
    );
    Ok(entries)
}

/// Recovery again, phase by phase, with the engine's own decoders.
fn phases(dir: &Path) -> Result<(), Box<dyn Error>> {
    let files = wal_files(dir)?;

    let t = Instant::now();
    let mut data = Vec::new();
    for f in &files {
        data.push(std::fs::read(f)?);
    }
    let read = t.elapsed();

    let t = Instant::now();
    let mut records = 0u64;
    for d in &data {
        read_log(d, |_, _| {
            records += 1;
            Ok(())
        })
        .map_err(|c| format!("{c:?}"))?;
    }
    let framing = t.elapsed();

    let t = Instant::now();
    let mut ops = 0u64;
    for d in &data {
        read_log(d, |_, payload| {
            decode_batch(payload, |_| {
                ops += 1;
                Ok(())
            })
        })
        .map_err(|c| format!("{c:?}"))?;
    }
    let decode = t.elapsed();

    let usage = std::sync::Arc::new(kalamdb_lsm::write_buffer::MemoryUsage::default());
    let partitions: HashMap<u64, PartitionState> = (1..=PARTITIONS.len() as u64)
        .map(|id| {
            let dir = Arc::new(PartitionDir::new(
                PathBuf::from(format!("/nonexistent/{id}")),
                Arc::new(RealFs::new()),
            ));
            (
                id,
                PartitionState::new(id, format!("p{id}"), dir, usage.clone()),
            )
        })
        .collect();
    let t = Instant::now();
    for d in &data {
        read_log(d, |_, payload| {
            decode_batch(payload, |op| {
                if let Some(p) = partitions.get(&op.partition) {
                    p.insert(
                        op.key,
                        op.seq,
                        op.value,
                        Options::default().memtable_size,
                        0,
                    );
                }
                Ok(())
            })
        })
        .map_err(|c| format!("{c:?}"))?;
    }
    let insert = t.elapsed();
    let memtables: usize = partitions.values().map(|p| p.memtable_count()).sum();
    let t = Instant::now();
    drop(partitions);
    let free = t.elapsed();

    println!("phases (by hand, same decoders):");
    println!("  read files            {:.3} s", secs(read));
    println!(
        "  framing + CRC         {:.3} s  ({records} records)",
        secs(framing)
    );
    println!("  + decode batches      {:.3} s  ({ops} ops)", secs(decode));
    println!(
        "  + memtable inserts    {:.3} s  (inserts alone ≈ {:.3} s, {memtables} memtables)",
        secs(insert),
        secs(insert.saturating_sub(decode))
    );
    println!("  (freeing the memtables afterwards: {:.3} s)", secs(free));
    Ok(())
}

/// `--open-once DIR`: one timed open in this (fresh) process; prints
/// `seconds visible_sequence memtables memtable_bytes peak_rss_bytes`.
fn open_once(dir: &Path) -> Result<(), Box<dyn Error>> {
    let t = Instant::now();
    let db = Db::open(dir, Options::default())?;
    let elapsed = t.elapsed();
    let stats = db.stats();
    println!(
        "{} {} {} {} {}",
        secs(elapsed),
        stats.visible_sequence,
        stats.memtables,
        stats.memtable_bytes,
        peak_rss()
    );
    Ok(())
}

/// This process's peak resident set (`VmHWM`), in bytes; 0 if unknown.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A copy of the files of `from` (flat: the WAL, the manifest, `CURRENT`
/// and the partitions' empty directories) in a fresh `to`: an open flushes
/// what it recovers and deletes the WAL, so every timed open starts from a
/// copy of the same state.
fn copy_dir(from: &Path, to: &Path) -> Result<(), Box<dyn Error>> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// What a child's open reports: time, visible sequence number, memtables
/// and their bytes after the open, peak RSS in bytes.
type OpenReport = (Duration, u64, usize, usize, u64);

/// Times one open in a child process: a fresh heap, as at a real start-up
/// (in-process reopens pay for the previous instance's freed heap: glibc's
/// `malloc_consolidate` shows up in the profile).
fn timed_open(dir: &Path) -> Result<OpenReport, Box<dyn Error>> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--open-once")
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "child open failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8(out.stdout)?;
    let f: Vec<&str> = text.split_whitespace().collect();
    match f.as_slice() {
        [t, seq, tables, bytes, rss] => Ok((
            Duration::from_secs_f64(t.parse()?),
            seq.parse()?,
            tables.parse()?,
            bytes.parse()?,
            rss.parse()?,
        )),
        _ => Err(format!("unexpected child output {text:?}").into()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--open-once") {
        let dir = args.nth(1).ok_or("--open-once DIR")?;
        return open_once(Path::new(&dir));
    }
    let (dir, remove_after) = match args.next() {
        Some(p) => (PathBuf::from(p), false),
        None => (
            std::env::temp_dir().join(format!("kalamdb-recovery-bench-{}", std::process::id())),
            true,
        ),
    };
    let target: u64 = match args.next() {
        Some(m) => m.parse::<u64>()? << 20,
        None => 64 << 20,
    };
    let mut entries = if dir.exists() {
        if wal_files(&dir)?.is_empty() {
            return Err(format!("{} exists and holds no WAL", dir.display()).into());
        }
        println!("reusing the WAL in {}", dir.display());
        None
    } else {
        Some(write_wal(&dir, target)?)
    };
    let files = wal_files(&dir)?;
    let wal_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<Result<_, _>>()?;

    let mut times = Vec::new();
    let scratch = dir.with_extension("open");
    for i in 0..OPENS {
        copy_dir(&dir, &scratch)?;
        let (elapsed, seq, memtables, memtable_bytes, rss) = timed_open(&scratch)?;
        let entries = *entries.get_or_insert(seq);
        if seq != entries {
            return Err(
                format!("open {i}: recovered up to sequence {seq}, wrote {entries}").into(),
            );
        }
        println!(
            "open {} (fresh process): {:.3} s ({memtables} memtables, {:.1} MiB in memtables \
             after the open; peak RSS {:.1} MiB)",
            i + 1,
            secs(elapsed),
            mib(memtable_bytes as u64),
            mib(rss),
        );
        times.push(elapsed);
    }
    times.sort();
    let median = times[OPENS / 2];
    println!(
        "recovered {:.1} MiB of WAL ({} entries, {} files) in {:.2} s (median of {OPENS} opens)",
        mib(wal_bytes),
        entries.unwrap_or_default(),
        files.len(),
        secs(median)
    );
    std::fs::remove_dir_all(&scratch)?;
    phases(&dir)?;

    if remove_after {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
