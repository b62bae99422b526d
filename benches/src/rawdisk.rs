//! The disk's own synced-write rate, the yardstick for `fillsync`: records of
//! the workloads' size (16 + 100 bytes) written one after another into a
//! preallocated file, each followed by `fdatasync`. With several threads each
//! appends to its own region of the file and syncs on its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use kalamdb_store::Result;

use crate::cell::{CellResult, CellSpec};
use crate::keys::RECORD_LEN;
use crate::measure::{self, Histogram};
use crate::workloads::{FILLSYNC_OPS, FILLSYNC_SECS};

/// Measures the raw rate for `spec.tasks` threads.
///
/// # Errors
/// I/O errors.
pub fn run(spec: &CellSpec) -> Result<CellResult> {
    std::fs::create_dir_all(&spec.dir)?;
    let path = spec.dir.join("raw.dat");
    let tasks = spec.tasks.max(1) as u64;
    let per_task = FILLSYNC_OPS.div_ceil(tasks);
    let region = per_task * RECORD_LEN;
    {
        // Preallocate by writing zeros, so the timed writes change no file
        // metadata (like a recycled WAL file).
        let mut f = File::create(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = region * tasks;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
    }
    let file = Arc::new(OpenOptions::new().write(true).open(&path)?);
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(FILLSYNC_SECS);
    let cpu0 = measure::cpu_secs();
    let start = Instant::now();
    let threads: Vec<_> = (0..tasks)
        .map(|t| {
            let file = file.clone();
            std::thread::spawn(move || -> std::io::Result<(Histogram, u64)> {
                let record = [0x5au8; RECORD_LEN as usize];
                let mut hist = Histogram::default();
                let mut ops = 0;
                while ops < per_task && Instant::now() < deadline {
                    let t0 = Instant::now();
                    file.write_all_at(&record, t * region + ops * RECORD_LEN)?;
                    file.sync_data()?;
                    hist.record(t0.elapsed());
                    ops += 1;
                }
                Ok((hist, ops))
            })
        })
        .collect();
    let mut hist = Histogram::default();
    let mut ops = 0;
    for t in threads {
        let (h, n) = t
            .join()
            .map_err(|_| std::io::Error::other("raw disk thread panicked"))??;
        hist.merge(&h);
        ops += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = measure::cpu_secs() - cpu0;
    Ok(CellResult {
        ops,
        secs,
        ops_per_sec: ops as f64 / secs,
        p50_us: hist.quantile_us(0.5),
        p99_us: hist.quantile_us(0.99),
        p999_us: hist.quantile_us(0.999),
        cpu_us_per_op: (ops > 0).then(|| cpu * 1e6 / ops as f64),
        note: Some(format!(
            "{RECORD_LEN}-byte pwrite + fdatasync, preallocated file"
        )),
        ..CellResult::default()
    })
}
