//! The workloads, in db_bench and YCSB vocabulary, run through the
//! `StorageBackend` trait.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_store::{Error, Operation, Partition, Result};
use serde::{Deserialize, Serialize};

use crate::backends::{self, Kind, Opened};
use crate::cell::{CellResult, CellSpec};
use crate::keys::{key, missing_key, Permutation, Rng, Values, Zipf, RECORD_LEN};
use crate::measure::{self, Histogram, PeakAnon};
use crate::rawdisk;

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// N puts in ascending key order, into an empty backend.
    FillSeq,
    /// N puts, each key once in random order, into an empty backend.
    FillRandom,
    /// N puts of random existing keys into the filled backend.
    Overwrite,
    /// N puts in atomic batches of 100 spread over 4 partitions.
    Batch,
    /// A full `compact` of the filled backend.
    Compact,
    /// Point reads of random written keys.
    ReadRandom,
    /// Point reads of keys never written (between written ones).
    ReadMissing,
    /// Scans of 10 entries from random written keys.
    SeekRandom,
    /// One scan of the whole partition.
    ReadSeq,
    /// Puts, each durable before it returns.
    FillSync,
    /// The disk's own rate: same-size appends + fdatasync to a preallocated file.
    RawSync,
    /// YCSB A: 50% reads, 50% updates, zipfian keys.
    YcsbA,
    /// YCSB B: 95% reads, 5% updates.
    YcsbB,
    /// YCSB C: 100% reads.
    YcsbC,
    /// YCSB E: 95% short scans (1–100 entries), 5% inserts.
    YcsbE,
    /// Fill N, then delete all N, compact; space after each.
    DeleteHeavy,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::Batch => "batch",
            Workload::Compact => "compact",
            Workload::ReadRandom => "readrandom",
            Workload::ReadMissing => "readmissing",
            Workload::SeekRandom => "seekrandom",
            Workload::ReadSeq => "readseq",
            Workload::FillSync => "fillsync",
            Workload::RawSync => "rawsync",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbE => "ycsb-e",
            Workload::DeleteHeavy => "deleteheavy",
        }
    }

    /// Whether it reads a copy of the filled directory.
    pub fn reads_base(self) -> bool {
        matches!(
            self,
            Workload::Overwrite
                | Workload::ReadRandom
                | Workload::ReadMissing
                | Workload::SeekRandom
                | Workload::ReadSeq
                | Workload::YcsbA
                | Workload::YcsbB
                | Workload::YcsbC
                | Workload::YcsbE
        )
    }
}

/// The report label of a workload run.
pub fn label(w: Workload, tasks: usize, compacted: bool) -> String {
    let mut s = w.name().to_string();
    if matches!(
        w,
        Workload::FillSync
            | Workload::RawSync
            | Workload::YcsbA
            | Workload::YcsbB
            | Workload::YcsbC
            | Workload::YcsbE
    ) {
        s.push_str(&format!("/{tasks}"));
    }
    if compacted {
        s.push_str(" (compacted)");
    }
    s
}

/// The partition every single-partition workload uses.
fn main_partition() -> Partition {
    Partition::new("bench").unwrap_or_else(|_| unreachable!("valid name"))
}

/// Ops of `fillsync` (and `rawsync`) per cell at most...
pub const FILLSYNC_OPS: u64 = 20_000;
/// ... or seconds, whichever comes first.
pub const FILLSYNC_SECS: f64 = 10.0;

/// Runs one cell.
///
/// # Errors
/// The backend's errors; a read that found the wrong thing.
pub fn run(spec: &CellSpec) -> Result<CellResult> {
    if spec.workload == Workload::RawSync {
        return rawdisk::run(spec);
    }
    let kind = spec
        .backend
        .ok_or_else(|| Error::Backend("no backend".into()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.tasks.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run_async(kind, spec))
}

async fn run_async(kind: Kind, spec: &CellSpec) -> Result<CellResult> {
    let mut out = CellResult::default();
    let values = Arc::new(Values::default());
    let peak = PeakAnon::start();
    let sync = spec.workload == Workload::FillSync;
    // The base a cell hard-linked files from, and its fingerprint before:
    // checked after the cell (a backend that changed a linked file in place
    // would have changed the base of every later cell).
    let mut linked_from = None;
    let opened = if spec.workload.reads_base() {
        open_filled(kind, spec, &values, &mut out, &mut linked_from).await?
    } else if spec.workload == Workload::Compact {
        place_base(kind, &spec.base, spec, &mut out, &mut linked_from)?;
        out.disk_bytes = Some(measure::disk_bytes(&spec.dir));
        backends::open(kind, &spec.dir, &spec.config, false)?
    } else {
        let o = backends::open(kind, &spec.dir, &spec.config, sync)?;
        o.store.create_partition(&main_partition()).await?;
        o
    };
    let opened = Arc::new(opened);
    let timed = match spec.workload {
        Workload::FillSeq => fill(&opened, spec, &values, Order::Sequential).await?,
        Workload::FillRandom => fill(&opened, spec, &values, Order::Random).await?,
        Workload::Overwrite => overwrite(&opened, spec, &values).await?,
        Workload::Batch => batch(&opened, spec, &values).await?,
        Workload::Compact => compact_base(&opened, spec, &mut out).await?,
        Workload::ReadRandom | Workload::ReadMissing | Workload::SeekRandom => {
            point_reads(&opened, spec).await?
        }
        Workload::ReadSeq => read_seq(&opened, spec).await?,
        Workload::FillSync => fill_sync(&opened, spec, &values).await?,
        Workload::YcsbA | Workload::YcsbB | Workload::YcsbC | Workload::YcsbE => {
            ycsb(&opened, spec, &values).await?
        }
        Workload::DeleteHeavy => delete_heavy(&opened, spec, &values, &mut out).await?,
        Workload::RawSync => unreachable!("handled in run"),
    };
    timed.fill(&mut out);

    let writes = matches!(
        spec.workload,
        Workload::FillSeq
            | Workload::FillRandom
            | Workload::Overwrite
            | Workload::Batch
            | Workload::DeleteHeavy
    );
    if writes && kind.persistent() {
        let (quiet, settled) = wait_quiet(&spec.dir, spec.quiet_cap_secs);
        out.quiet_secs = Some(quiet.as_secs_f64());
        if !settled {
            let note = format!(
                "files still changing after {:.0} s (the cap)",
                spec.quiet_cap_secs
            );
            out.note = Some(match out.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
    }
    if matches!(
        spec.workload,
        Workload::FillSeq | Workload::FillRandom | Workload::Overwrite | Workload::Batch
    ) {
        out.logical_bytes = Some(spec.n * RECORD_LEN);
    }
    if let Some(note) = opened.engine_note() {
        out.note = Some(match out.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
    }
    let opened = Arc::try_unwrap(opened)
        .map_err(|_| Error::Backend("backend still shared after the workload".into()))?;
    // Closed (everything written made durable): the space and the bytes
    // written are those of the data at rest, whatever each backend buffers.
    opened.close().await?;
    if let Some((base, before)) = linked_from {
        if measure::dir_fingerprint(&base) != before {
            return Err(Error::Backend(format!(
                "{} changed a file it shares with {} (hard link): Kind::immutable_file must not accept it",
                kind.name(),
                base.display()
            )));
        }
    }
    out.peak_rss_anon = Some(peak.finish());
    out.vm_hwm = measure::vm_hwm();
    if writes && kind.persistent() {
        out.disk_bytes = Some(measure::disk_bytes(&spec.dir));
        if let (Some(io0), Some(io1)) = (timed.io_write_bytes, measure::io_write_bytes()) {
            let logical = timed.ops * RECORD_LEN;
            if logical > 0 {
                out.write_amp = Some(io1.saturating_sub(io0) as f64 / logical as f64);
            }
        }
    }
    if spec.workload == Workload::Compact {
        out.disk_bytes_after_compact = Some(measure::disk_bytes(&spec.dir));
    }
    let compact_after = matches!(
        spec.workload,
        Workload::FillSeq | Workload::Overwrite | Workload::Batch | Workload::DeleteHeavy
    ) || (spec.workload == Workload::FillRandom && !spec.keep_base);
    if compact_after && kind.no_compaction().is_none() {
        let o = backends::open(kind, &spec.dir, &spec.config, false)?;
        let started = Instant::now();
        for p in o.store.list_partitions().await? {
            o.store.compact(&p).await?;
        }
        out.compact_secs = Some(started.elapsed().as_secs_f64());
        o.close().await?;
        out.disk_bytes_after_compact = Some(measure::disk_bytes(&spec.dir));
    }
    if spec.keep_base && kind.persistent() {
        std::fs::rename(&spec.dir, &spec.base)?;
    }
    if spec.workload == Workload::Compact {
        std::fs::rename(&spec.dir, &spec.base_compacted)?;
    }
    Ok(out)
}

/// Opens a copy of the filled directory (the memory backend is filled here,
/// untimed).
async fn open_filled(
    kind: Kind,
    spec: &CellSpec,
    values: &Values,
    out: &mut CellResult,
    linked_from: &mut Option<(PathBuf, u64)>,
) -> Result<Opened> {
    if !kind.persistent() {
        let started = Instant::now();
        let o = backends::open(kind, &spec.dir, &spec.config, false)?;
        out.open_secs = Some(started.elapsed().as_secs_f64());
        let p = main_partition();
        o.store.create_partition(&p).await?;
        let perm = Permutation::new(spec.n, 1);
        for i in 0..spec.n {
            let k = perm.get(i);
            o.store.put(&p, &key(k), values.get(k)).await?;
        }
        out.setup_secs = Some(started.elapsed().as_secs_f64());
        out.note = Some("filled in-process (no disk)".into());
        return Ok(o);
    }
    let from = if spec.compacted {
        &spec.base_compacted
    } else {
        &spec.base
    };
    place_base(kind, from, spec, out, linked_from)?;
    let started = Instant::now();
    let o = backends::open(kind, &spec.dir, &spec.config, false)?;
    out.open_secs = Some(started.elapsed().as_secs_f64());
    Ok(o)
}

/// Makes the cell's directory a copy of `from`, hard-linking the files the
/// backend never changes in place (see [`Kind::immutable_file`]).
fn place_base(
    kind: Kind,
    from: &Path,
    spec: &CellSpec,
    out: &mut CellResult,
    linked_from: &mut Option<(PathBuf, u64)>,
) -> Result<()> {
    let started = Instant::now();
    let before = measure::dir_fingerprint(from);
    let placed = measure::link_or_copy_dir(from, &spec.dir, &|p| kind.immutable_file(p))?;
    if placed.linked > 0 {
        *linked_from = Some((from.to_path_buf(), before));
    }
    out.base_bytes_linked_copied = Some((placed.linked, placed.copied));
    out.setup_secs = Some(started.elapsed().as_secs_f64());
    Ok(())
}

/// What a timed phase measured.
#[derive(Default)]
struct Timed {
    hist: Histogram,
    ops: u64,
    secs: f64,
    cpu_secs: f64,
    io_write_bytes: Option<u64>,
    note: Option<String>,
}

impl Timed {
    fn fill(&self, out: &mut CellResult) {
        out.ops = self.ops;
        out.secs = self.secs;
        out.ops_per_sec = if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        };
        out.p50_us = self.hist.quantile_us(0.5);
        out.p99_us = self.hist.quantile_us(0.99);
        out.p999_us = self.hist.quantile_us(0.999);
        if self.ops > 0 {
            out.cpu_us_per_op = Some(self.cpu_secs * 1e6 / self.ops as f64);
        }
        if self.note.is_some() {
            out.note.clone_from(&self.note);
        }
    }
}

/// One task's tally.
#[derive(Default)]
struct TaskOut {
    hist: Histogram,
    ops: u64,
    /// Reads that found a value, entries scanned.
    hits: u64,
}

/// Runs `tasks` tasks made by `make` and times them together.
async fn timed<F, Fut>(tasks: usize, make: F) -> Result<(Timed, u64)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<TaskOut>> + Send + 'static,
{
    let io0 = measure::io_write_bytes();
    let cpu0 = measure::cpu_secs();
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks.max(1)).map(|t| tokio::spawn(make(t))).collect();
    let mut result = Timed {
        io_write_bytes: io0,
        ..Timed::default()
    };
    let mut hits = 0;
    for h in handles {
        let out = h
            .await
            .map_err(|e| Error::Backend(format!("task failed: {e}")))??;
        result.hist.merge(&out.hist);
        result.ops += out.ops;
        hits += out.hits;
    }
    result.secs = start.elapsed().as_secs_f64();
    result.cpu_secs = measure::cpu_secs() - cpu0;
    Ok((result, hits))
}

#[derive(Clone, Copy)]
enum Order {
    Sequential,
    Random,
}

async fn fill(
    o: &Arc<Opened>,
    spec: &CellSpec,
    values: &Arc<Values>,
    order: Order,
) -> Result<Timed> {
    let (o, values, n) = (o.clone(), values.clone(), spec.n);
    let (t, _) = timed(1, move |_| {
        let (o, values) = (o.clone(), values.clone());
        async move {
            let p = main_partition();
            let perm = Permutation::new(n, 1);
            let mut out = TaskOut::default();
            for i in 0..n {
                let k = match order {
                    Order::Sequential => i,
                    Order::Random => perm.get(i),
                };
                let t = Instant::now();
                o.store.put(&p, &key(k), values.get(k)).await?;
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            Ok(out)
        }
    })
    .await?;
    Ok(t)
}

async fn overwrite(o: &Arc<Opened>, spec: &CellSpec, values: &Arc<Values>) -> Result<Timed> {
    let (o, values, n) = (o.clone(), values.clone(), spec.n);
    let (t, _) = timed(1, move |_| {
        let (o, values) = (o.clone(), values.clone());
        async move {
            let p = main_partition();
            let mut rng = Rng::new(2);
            let mut out = TaskOut::default();
            for i in 0..n {
                let k = rng.below(n);
                let t = Instant::now();
                o.store.put(&p, &key(k), values.get(k ^ i)).await?;
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            Ok(out)
        }
    })
    .await?;
    Ok(t)
}

/// Partitions of the batch workload.
const BATCH_PARTITIONS: usize = 4;
/// Operations per batch.
const BATCH_OPS: u64 = 100;

async fn batch(o: &Arc<Opened>, spec: &CellSpec, values: &Arc<Values>) -> Result<Timed> {
    let parts: Vec<Partition> = (0..BATCH_PARTITIONS)
        .map(|i| Partition::new(format!("batch_{i}")))
        .collect::<Result<_>>()?;
    for p in &parts {
        o.store.create_partition(p).await?;
    }
    let (o, values, n) = (o.clone(), values.clone(), spec.n);
    let parts = Arc::new(parts);
    let (mut t, _) = timed(1, move |_| {
        let (o, values, parts) = (o.clone(), values.clone(), parts.clone());
        async move {
            let perm = Permutation::new(n, 3);
            let mut out = TaskOut::default();
            let mut i = 0;
            while i < n {
                let end = (i + BATCH_OPS).min(n);
                let ops: Vec<Operation> = (i..end)
                    .map(|j| {
                        let k = perm.get(j);
                        let p = parts[(j % BATCH_PARTITIONS as u64) as usize].clone();
                        Operation::put(p, key(k).to_vec(), values.get(k).to_vec())
                    })
                    .collect();
                let t = Instant::now();
                o.store.batch(ops).await?;
                out.hist.record(t.elapsed());
                out.ops += end - i;
                i = end;
            }
            Ok(out)
        }
    })
    .await?;
    t.note = Some("latency per batch of 100".into());
    Ok(t)
}

async fn compact_base(o: &Arc<Opened>, spec: &CellSpec, out: &mut CellResult) -> Result<Timed> {
    out.logical_bytes = Some(spec.n * RECORD_LEN);
    let p = main_partition();
    let cpu0 = measure::cpu_secs();
    let start = Instant::now();
    o.store.compact(&p).await?;
    let secs = start.elapsed().as_secs_f64();
    out.compact_secs = Some(secs);
    let mut hist = Histogram::default();
    hist.record(Duration::from_secs_f64(secs));
    Ok(Timed {
        hist,
        ops: 1,
        secs,
        cpu_secs: measure::cpu_secs() - cpu0,
        io_write_bytes: None,
        note: Some("one full compaction of the filled data (ops = 1)".into()),
    })
}

/// A shared budget of operations and time for the tasks of a cell.
struct Budget {
    next: AtomicU64,
    ops: u64,
    deadline: Instant,
}

impl Budget {
    fn new(ops: u64, secs: f64) -> Arc<Self> {
        Arc::new(Budget {
            next: AtomicU64::new(0),
            ops,
            deadline: Instant::now() + Duration::from_secs_f64(secs),
        })
    }

    /// The next operation's number, or `None` when the budget is spent.
    /// Time is checked every 64 operations.
    fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.ops || (i.is_multiple_of(64) && Instant::now() >= self.deadline) {
            self.next.store(self.ops, Ordering::Relaxed);
            return None;
        }
        Some(i)
    }
}

async fn point_reads(o: &Arc<Opened>, spec: &CellSpec) -> Result<Timed> {
    let budget = Budget::new(spec.reads, spec.max_secs);
    let (o, n, w) = (o.clone(), spec.n, spec.workload);
    let (mut t, hits) = timed(spec.tasks, move |task| {
        let (o, budget) = (o.clone(), budget.clone());
        async move {
            let p = main_partition();
            let mut rng = Rng::new(10 + task as u64);
            let mut out = TaskOut::default();
            while budget.take().is_some() {
                let k = rng.below(n);
                let t = Instant::now();
                match w {
                    Workload::ReadRandom => {
                        if o.store.get(&p, &key(k)).await?.is_some() {
                            out.hits += 1;
                        }
                    }
                    Workload::ReadMissing => {
                        if o.store.get(&p, &missing_key(k)).await?.is_some() {
                            out.hits += 1;
                        }
                    }
                    _ => {
                        let iter = o.store.scan(&p, Some(&key(k)), None).await?;
                        for item in iter.take(10) {
                            item?;
                            out.hits += 1;
                        }
                    }
                }
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            Ok(out)
        }
    })
    .await?;
    let right = match w {
        Workload::ReadRandom => hits == t.ops,
        Workload::ReadMissing => hits == 0,
        // Every scan starts at a written key; the last few run out of keys.
        _ => hits >= t.ops && hits <= 10 * t.ops,
    };
    if !right {
        return Err(Error::Backend(format!(
            "{}: {hits} hits in {} reads",
            w.name(),
            t.ops
        )));
    }
    if w == Workload::SeekRandom {
        t.note = Some(format!("{hits} entries"));
    }
    Ok(t)
}

async fn read_seq(o: &Arc<Opened>, spec: &CellSpec) -> Result<Timed> {
    let (o, n) = (o.clone(), spec.n);
    let (t, _) = timed(1, move |_| {
        let o = o.clone();
        async move {
            let p = main_partition();
            let mut out = TaskOut::default();
            let mut iter = o.store.scan(&p, None, None).await?;
            loop {
                let t = Instant::now();
                let Some(item) = iter.next() else { break };
                item?;
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            if out.ops != n {
                return Err(Error::Backend(format!(
                    "readseq saw {} of {n} keys",
                    out.ops
                )));
            }
            Ok(out)
        }
    })
    .await?;
    Ok(t)
}

async fn fill_sync(o: &Arc<Opened>, spec: &CellSpec, values: &Arc<Values>) -> Result<Timed> {
    let budget = Budget::new(FILLSYNC_OPS, FILLSYNC_SECS);
    let (o, values) = (o.clone(), values.clone());
    let (t, _) = timed(spec.tasks, move |_| {
        let (o, values, budget) = (o.clone(), values.clone(), budget.clone());
        async move {
            let p = main_partition();
            let perm = Permutation::new(FILLSYNC_OPS, 4);
            let mut out = TaskOut::default();
            while let Some(i) = budget.take() {
                let k = perm.get(i);
                let t = Instant::now();
                o.put(&p, &key(k), values.get(k)).await?;
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            Ok(out)
        }
    })
    .await?;
    Ok(t)
}

async fn ycsb(o: &Arc<Opened>, spec: &CellSpec, values: &Arc<Values>) -> Result<Timed> {
    let budget = Budget::new(spec.reads, spec.max_secs);
    let zipf = Arc::new(Zipf::new(spec.n));
    let (o, values, n, w) = (o.clone(), values.clone(), spec.n, spec.workload);
    let read_share = match w {
        Workload::YcsbA => 0.5,
        Workload::YcsbB | Workload::YcsbE => 0.95,
        _ => 1.0,
    };
    let (t, _) = timed(spec.tasks, move |task| {
        let (o, values, budget, zipf) = (o.clone(), values.clone(), budget.clone(), zipf.clone());
        async move {
            let p = main_partition();
            let mut rng = Rng::new(100 + task as u64);
            let mut out = TaskOut::default();
            while let Some(i) = budget.take() {
                let k = zipf.next(&mut rng);
                let read = rng.unit() < read_share;
                let t = Instant::now();
                match (w, read) {
                    (Workload::YcsbE, true) => {
                        let len = 1 + rng.below(100) as usize;
                        let iter = o.store.scan(&p, Some(&key(k)), None).await?;
                        for item in iter.take(len) {
                            item?;
                            out.hits += 1;
                        }
                    }
                    (Workload::YcsbE, false) => {
                        // Inserts: new keys past the filled range.
                        let k = n + i;
                        o.store.put(&p, &key(k), values.get(k)).await?;
                    }
                    (_, true) => {
                        if o.store.get(&p, &key(k)).await?.is_none() {
                            return Err(Error::Backend(format!("key {k} missing")));
                        }
                    }
                    (_, false) => o.store.put(&p, &key(k), values.get(k ^ i)).await?,
                }
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            Ok(out)
        }
    })
    .await?;
    Ok(t)
}

async fn delete_heavy(
    o: &Arc<Opened>,
    spec: &CellSpec,
    values: &Arc<Values>,
    out: &mut CellResult,
) -> Result<Timed> {
    let p = main_partition();
    let perm = Permutation::new(spec.n, 5);
    for i in 0..spec.n {
        let k = perm.get(i);
        o.store.put(&p, &key(k), values.get(k)).await?;
    }
    let filled = o
        .kind()
        .persistent()
        .then(|| measure::disk_bytes(&spec.dir));
    let (o2, n) = (o.clone(), spec.n);
    let (mut t, _) = timed(1, move |_| {
        let o = o2.clone();
        async move {
            let p = main_partition();
            let perm = Permutation::new(n, 6);
            let mut out = TaskOut::default();
            for i in 0..n {
                let t = Instant::now();
                o.store.delete(&p, &key(perm.get(i))).await?;
                out.hist.record(t.elapsed());
                out.ops += 1;
            }
            Ok(out)
        }
    })
    .await?;
    out.logical_bytes = Some(0);
    if o.store.scan(&p, None, None).await?.next().is_some() {
        return Err(Error::Backend(
            "deleteheavy: keys left after deleting all".into(),
        ));
    }
    t.note = filled.map(|b| format!("{:.1} MiB on disk before the deletes", b as f64 / 1048576.0));
    Ok(t)
}

/// Waits until the files under `dir` stop changing (no change for 2 s), at
/// most `cap_secs`; returns the time from the call to the last change seen,
/// and whether they did stop.
fn wait_quiet(dir: &Path, cap_secs: f64) -> (Duration, bool) {
    let start = Instant::now();
    let cap = Duration::from_secs_f64(cap_secs);
    let mut last = measure::dir_fingerprint(dir);
    let mut last_change = Duration::ZERO;
    while start.elapsed() < cap && start.elapsed() - last_change < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
        let now = measure::dir_fingerprint(dir);
        if now != last {
            last = now;
            last_change = start.elapsed();
        }
    }
    let settled = start.elapsed() - last_change >= Duration::from_secs(2);
    (last_change, settled)
}
