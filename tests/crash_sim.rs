//! Simulated-crash loop: per seed, a random workload on `LsmBackend` over the
//! simulated file system, cut short by a crash at a random file operation
//! (every file operation from then on fails, then unsynced data is dropped,
//! the last writes torn, or sectors of them lost before sectors kept,
//! non-durable directory entries reverted); sometimes
//! a second crash hits during recovery. Then reopen and check the oracle:
//!
//! Each seed runs one of four configurations (see [`Config`]), so crashes
//! also land in explicit flushes, in manifest rollovers (a tiny
//! `manifest_rollover_size`) and in the flush that recovery itself starts
//! for oversized memtables.
//!
//! - the recovered state equals the model after some prefix of the history
//!   (no holes; every batch all-or-nothing since a batch is one history step);
//! - that prefix contains every acknowledged sync write, `sync_wal` and
//!   partition create/drop (those are durable when acknowledged);
//! - reopening again gives the same state.
//!
//! Scans (from their own generator) are checked against the model during
//! the workload too, and the tiny levels of the manifest-pressure
//! configuration make background compactions run under crashes.
//!
//! `CRASH_SEEDS` sets the number of seeds (default 4,000, split over one
//! test per configuration); `CRASH_SEED` runs one. A failing seed is
//! printed; add it to `REGRESSION_SEEDS`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kalamdb_lsm::fs::sim::{CrashMode, Fault, FaultError};
use kalamdb_lsm::fs::SimFs;
use kalamdb_store::testing::differential::dump;
use kalamdb_store::{
    BackendErrorKind, LsmBackend, LsmOptions, Operation, Partition, StorageBackend, WriteOptions,
};

/// Seeds that once failed, with their configuration, replayed first.
/// 3250 (classic): a rotated WAL lost its unsynced tail at a record boundary
/// while the next WAL kept a later (failed) sync write: a hole, fixed by the
/// previous-WAL record that starts every rotated WAL file.
const REGRESSION_SEEDS: &[(u64, Config)] = &[(3250, Config::Classic)];

/// What a seed exercises besides the random workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    /// Small memtables and WAL files (background flushes, WAL rotation);
    /// the workload only writes, syncs and changes partitions.
    Classic,
    /// As classic, plus explicit flushes (`LsmBackend::flush`, and
    /// `compact`, which flushes one partition) between steps.
    Flushes,
    /// Explicit flushes, smaller memtables and 256-byte blocks, a manifest
    /// that rolls over every few hundred bytes, and tiny levels: crashes
    /// land in flush and compaction edits and in rollovers (snapshot,
    /// `CURRENT` switch).
    ManifestPressure,
    /// Memtables large enough that the workload never flushes, and reopens
    /// after the crash with tiny ones: recovery finds oversized memtables
    /// and flushes them at open. The second crash (during recovery) is
    /// likely and waits for that flush, so it lands in it.
    RecoveryFlush,
}

impl Config {
    /// The configuration of a seed (from its own generator, so a classic
    /// seed's workload is what it was before configurations existed).
    fn of(seed: u64) -> Config {
        match Rng(seed ^ 0xc0f1_6000_0000_0001).below(4) {
            0 => Config::Classic,
            1 => Config::Flushes,
            2 => Config::ManifestPressure,
            _ => Config::RecoveryFlush,
        }
    }

    /// Per mille of steps preceded by an explicit flush.
    fn flush_rate(self) -> u64 {
        match self {
            Config::Classic | Config::RecoveryFlush => 0,
            Config::Flushes => 50,
            Config::ManifestPressure => 100,
        }
    }
}

/// When a database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first open and the clean reopens of the workload.
    Workload,
    /// Every open after the crash.
    Recovery,
}

const NAMES: [&str; 3] = ["a", "b", "default"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Debug, Clone)]
enum Step {
    Create(usize),
    Drop(usize),
    /// (partition, key, value or delete), applied atomically.
    Write(Vec<(usize, Vec<u8>, Option<Vec<u8>>)>, bool),
    SyncWal,
    /// Flush every partition (`None`) or one (`compact`). Changes no
    /// contents and promises no durability.
    Flush(Option<usize>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Returned Ok: applied, but durable only if the step is a sync write or
    /// `sync_wal` (and, by the prefix rule, so is everything before it).
    Acked,
    /// Returned Ok and changed the set of partitions: durable.
    AckedDdl,
    /// Failed with an I/O error: may or may not have been applied.
    Maybe,
}

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

fn apply(model: &mut Model, step: &Step) {
    match step {
        Step::Create(p) => {
            model.entry(NAMES[*p].to_string()).or_default();
        }
        Step::Drop(p) => {
            model.remove(NAMES[*p]);
        }
        Step::Write(ops, _) => {
            if ops.iter().any(|(p, _, _)| !model.contains_key(NAMES[*p])) {
                return; // PartitionNotFound: nothing applied
            }
            for (p, k, v) in ops {
                let m = model.get_mut(NAMES[*p]).expect("checked above");
                match v {
                    Some(v) => m.insert(k.clone(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        Step::SyncWal | Step::Flush(_) => {}
    }
}

fn durable(step: &Step, status: Status) -> bool {
    match status {
        Status::AckedDdl => true,
        Status::Acked => matches!(step, Step::SyncWal | Step::Write(_, true)),
        Status::Maybe => false,
    }
}

fn random_step(rng: &mut Rng) -> Step {
    match rng.below(100) {
        0..=5 => Step::Create(rng.below(3) as usize),
        6..=7 => Step::Drop(rng.below(3) as usize),
        8..=10 => Step::SyncWal,
        _ => {
            let width = if rng.chance(300) { 6 } else { 1 };
            let n = 1 + rng.below(width) as usize;
            let ops = (0..n)
                .map(|_| {
                    let p = rng.below(3) as usize;
                    let key = vec![b'k', rng.below(24) as u8];
                    let value = if rng.chance(150) {
                        None
                    } else {
                        let len = if rng.chance(50) {
                            3000
                        } else {
                            1 + rng.below(40) as usize
                        };
                        Some(vec![rng.below(256) as u8; len])
                    };
                    (p, key, value)
                })
                .collect();
            Step::Write(ops, rng.chance(300))
        }
    }
}

fn part(i: usize) -> Partition {
    Partition::new(NAMES[i]).expect("valid name")
}

async fn execute(backend: &LsmBackend, step: &Step) -> Result<(), kalamdb_store::Error> {
    match step {
        Step::Create(p) => backend.create_partition(&part(*p)).await,
        Step::Drop(p) => backend.drop_partition(&part(*p)).await,
        Step::SyncWal => backend.sync_wal().await,
        Step::Flush(None) => backend.flush().await,
        Step::Flush(Some(p)) => backend.compact(&part(*p)).await,
        Step::Write(ops, sync) => {
            let ops = ops
                .iter()
                .map(|(p, k, v)| match v {
                    Some(v) => Operation::put(part(*p), k.clone(), v.clone()),
                    None => Operation::delete(part(*p), k.clone()),
                })
                .collect();
            backend.batch_with(ops, WriteOptions { sync: *sync }).await
        }
    }
}

/// The options of a seed: its configuration's, and for odd seeds also a
/// tiny write-buffer budget and WAL limit, so flushes the flush thread
/// chooses (largest memtable first; every partition in the oldest WAL file)
/// run under crashes too.
fn options(fs: &SimFs, config: Config, phase: Phase, rollover: u64, seed: u64) -> LsmOptions {
    let chosen = config_options(fs, config, phase, rollover);
    if seed % 2 == 1 {
        LsmOptions {
            write_buffer_size: 3072,
            max_total_wal_size: 8192,
            ..chosen
        }
    } else {
        chosen
    }
}

fn config_options(fs: &SimFs, config: Config, phase: Phase, rollover: u64) -> LsmOptions {
    let classic = LsmOptions {
        fs: Arc::new(fs.clone()),
        memtable_size: 2048,
        wal_file_size: 4096,
        ..LsmOptions::default()
    };
    match (config, phase) {
        (Config::Classic | Config::Flushes, _) => classic,
        (Config::ManifestPressure, _) => LsmOptions {
            memtable_size: 1024,
            block_size: 256,
            manifest_rollover_size: rollover,
            // Background leveled compactions: two level-0 tables trigger
            // one, and tiny levels push data further down.
            l0_compaction_trigger: 2,
            level_base_size: 4096,
            level_size_multiplier: 2,
            target_file_size: 2048,
            ..classic
        },
        (Config::RecoveryFlush, Phase::Workload) => LsmOptions {
            memtable_size: 1 << 20,
            wal_file_size: 8192,
            block_size: 256,
            ..classic
        },
        (Config::RecoveryFlush, Phase::Recovery) => LsmOptions {
            memtable_size: 256,
            wal_file_size: 8192,
            block_size: 256,
            ..classic
        },
    }
}

async fn state(backend: &LsmBackend) -> Model {
    dump(backend)
        .await
        .expect("read the recovered state")
        .into_iter()
        .map(|(p, items)| (p.name().to_string(), items.into_iter().collect()))
        .collect()
}

/// Runs one seed; `Err` describes an oracle violation.
/// What a seed exercised, summed over a run to show the coverage.
#[derive(Debug, Default, Clone, Copy)]
struct SeedStats {
    /// Scans checked against the model.
    scans: u64,
    /// Compactions (and trivial moves) the last session before the crash
    /// ran, background ones included.
    compactions: u64,
    /// Table flushes of that session.
    flushes: u64,
}

/// The models the history allows now: every acknowledged step applied,
/// each failed one applied or not (`None` if too many failed).
fn candidates(history: &[(Step, Status)]) -> Option<Vec<Model>> {
    let maybes: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, (_, st))| *st == Status::Maybe)
        .map(|(i, _)| i)
        .collect();
    if maybes.len() > 6 {
        return None;
    }
    Some(
        (0u32..1 << maybes.len())
            .map(|mask| {
                let mut model = Model::new();
                for (i, (step, status)) in history.iter().enumerate() {
                    let skip = *status == Status::Maybe
                        && maybes
                            .iter()
                            .position(|&m| m == i)
                            .is_some_and(|bit| mask & (1 << bit) == 0);
                    if !skip {
                        apply(&mut model, step);
                    }
                }
                model
            })
            .collect(),
    )
}

/// Scans partition `p` and compares it with the models the history allows:
/// `None` if the scan failed (every operation fails after the crash point)
/// or the history is too uncertain to check.
async fn scan_matches(
    backend: &LsmBackend,
    p: usize,
    history: &[(Step, Status)],
) -> Option<Result<(), String>> {
    let models = candidates(history)?;
    let items: Result<Vec<(Vec<u8>, Vec<u8>)>, _> = match backend.scan(&part(p), None, None).await {
        Ok(iter) => iter.collect(),
        Err(kalamdb_store::Error::PartitionNotFound(_)) => {
            return Some(if models.iter().any(|m| !m.contains_key(NAMES[p])) {
                Ok(())
            } else {
                Err(format!("scan: partition {} not found", NAMES[p]))
            });
        }
        Err(_) => return None,
    };
    let got: BTreeMap<Vec<u8>, Vec<u8>> = items.ok()?.into_iter().collect();
    Some(if models.iter().any(|m| m.get(NAMES[p]) == Some(&got)) {
        Ok(())
    } else {
        Err(format!(
            "a scan of {} read {} keys, no model after {} steps matches: {}",
            NAMES[p],
            got.len(),
            history.len(),
            diff(
                &models[0],
                &Model::from([(NAMES[p].to_string(), got.clone())])
            )
        ))
    })
}

fn run_seed(
    seed: u64,
    config: Config,
    scans: bool,
    lose_sectors: bool,
) -> Result<SeedStats, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut rng = Rng(seed);
        // Decisions of the configuration come from their own generator.
        let mut extra = Rng(seed ^ 0x0e47_7a00_0000_0002);
        let mut reads = Rng(seed ^ 0x5ca0_0000_0000_0003);
        let mut stats = SeedStats::default();
        let rollover = 64 + extra.below(512);
        let sim = SimFs::new();
        let opts = |phase| options(&sim, config, phase, rollover, seed);
        let dir = "/db";
        let mut backend = Some(LsmBackend::new(dir, opts(Phase::Workload)).map_err(|e| format!("first open: {e}"))?);
        let base_ops = sim.op_count();
        let steps = 20 + rng.below(280) as usize;
        // The crash point, counted in file operations after open; sometimes
        // beyond the workload (a crash after everything completed).
        let crash_after = 1 + rng.below(steps as u64 * 4);
        let mode = match rng.below(3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::TearTail,
            _ => CrashMode::TearAndGarble,
        };
        // A quarter of the seeds lose sectors of unsynced writes before
        // sectors kept (from their own generator, so that the other choices of
        // a seed stay what they were).
        let mode = if lose_sectors && Rng(seed ^ 0x1057_9a6e_0000_0004).chance(250) {
            CrashMode::LoseSectors
        } else {
            mode
        };
        sim.inject(Fault::any(FaultError::EIO).nth(crash_after).persistent());
        let mut history: Vec<(Step, Status)> = Vec::new();
        // Everything acknowledged so far, to tell which DDL changed state.
        let mut current = Model::new();
        // After a DDL step failed with an I/O error, whether later creates
        // and drops changed anything is unknown: they no longer count as
        // durability points.
        let mut ddl_uncertain = false;
        for _ in 0..steps {
            // Now and then a clean close and reopen, so that later sessions
            // must make earlier sessions' unsynced writes durable too.
            if rng.chance(20) {
                drop(backend.take());
                match LsmBackend::new(dir, opts(Phase::Workload)) {
                    Ok(b) => backend = Some(b),
                    // The injected failure hit the reopen: that is the crash.
                    Err(_) => break,
                }
            }
            let Some(open) = backend.as_ref() else { break };
            if extra.chance(config.flush_rate()) {
                let which = extra.below(4);
                let step = Step::Flush((which < 3).then_some(which as usize));
                // Ok or not, a flush changes no contents; a failure (the
                // crash) shows in the steps after it.
                let _ = execute(open, &step).await;
                history.push((step, Status::Acked));
            }
            // Scans, from their own generator (the workload of a seed stays
            // what it was before scans existed).
            if scans && reads.chance(60) {
                let p = reads.below(3) as usize;
                if let Some(result) = scan_matches(open, p, &history).await {
                    stats.scans += 1;
                    result?;
                }
            }
            let step = random_step(&mut rng);
            match execute(open, &step).await {
                Ok(()) => {
                    let before: Vec<String> = current.keys().cloned().collect();
                    apply(&mut current, &step);
                    let changed = current.keys().cloned().collect::<Vec<_>>() != before;
                    let ddl = matches!(step, Step::Create(_) | Step::Drop(_)) && changed && !ddl_uncertain;
                    history.push((step, if ddl { Status::AckedDdl } else { Status::Acked }));
                }
                Err(kalamdb_store::Error::PartitionNotFound(_)) => {}
                // Refused up front: certainly not applied.
                Err(e)
                    if matches!(
                        e.backend_kind(),
                        Some(BackendErrorKind::Poisoned | BackendErrorKind::Stalled)
                    ) => {}
                Err(_) => {
                    ddl_uncertain |= matches!(step, Step::Create(_) | Step::Drop(_));
                    apply(&mut current, &step);
                    history.push((step, Status::Maybe));
                }
            }
            if sim.op_count() - base_ops > crash_after + 20 {
                break;
            }
        }
        if let Some(open) = &backend {
            let s = open.stats();
            stats.compactions = s.compactions + s.trivial_moves;
            stats.flushes = s.flushes;
        }
        sim.crash_with(mode, rng.next());
        drop(backend);
        sim.clear_faults();

        // Sometimes crash again while recovering.
        if config == Config::RecoveryFlush && extra.chance(700) {
            // Anywhere in the open or in the flush it starts, which the
            // crash waits for: ~35 operations to open, then ~20 per
            // partition flushed (35 to 115 in all without a fault).
            sim.inject(Fault::any(FaultError::EIO).nth(1 + extra.below(110)).persistent());
            let attempt = LsmBackend::new(dir, opts(Phase::Recovery));
            if let Ok(open) = &attempt {
                let _ = open.flush().await;
            }
            sim.crash_with(mode, rng.next());
            drop(attempt);
            sim.clear_faults();
        } else if rng.chance(300) {
            sim.inject(Fault::any(FaultError::EIO).nth(1 + rng.below(30)).persistent());
            let attempt = LsmBackend::new(dir, opts(Phase::Recovery));
            sim.crash_with(mode, rng.next());
            drop(attempt);
            sim.clear_faults();
        }

        let backend = LsmBackend::new(dir, opts(Phase::Recovery)).map_err(|e| format!("reopen: {e}"))?;
        let recovered = state(&backend).await;
        drop(backend);
        let backend = LsmBackend::new(dir, opts(Phase::Recovery)).map_err(|e| format!("second reopen: {e}"))?;
        let again = state(&backend).await;
        if again != recovered {
            return Err(format!("two reopens differ:\n{recovered:?}\n{again:?}"));
        }

        // The shortest prefix that must be recovered.
        let required = history
            .iter()
            .rposition(|(s, st)| durable(s, *st))
            .map_or(0, |i| i + 1);
        let maybes: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, (_, st))| *st == Status::Maybe)
            .map(|(i, _)| i)
            .collect();
        if maybes.len() > 10 {
            return Err(format!("{} failed steps: the engine did not poison itself", maybes.len()));
        }
        for len in required..=history.len() {
            let in_prefix: Vec<usize> = maybes.iter().copied().filter(|&i| i < len).collect();
            for mask in 0u32..(1 << in_prefix.len()) {
                let mut model = Model::new();
                for (i, (step, status)) in history[..len].iter().enumerate() {
                    let skip = *status == Status::Maybe
                        && in_prefix.iter().position(|&m| m == i).is_some_and(|bit| mask & (1 << bit) == 0);
                    if !skip {
                        apply(&mut model, step);
                    }
                }
                if model == recovered {
                    return Ok(stats);
                }
            }
        }
        let mut expected = Model::new();
        for (step, _) in &history[..required] {
            apply(&mut expected, step);
        }
        // Every partition change and failed step, with its index: what a
        // missing or unexpected partition comes from.
        let ddl_and_failures = history
            .iter()
            .enumerate()
            .filter(|(_, (s, st))| matches!(s, Step::Create(_) | Step::Drop(_)) || *st == Status::Maybe)
            .map(|(i, (s, st))| format!("{i}:{}{st:?}", short(s)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "recovered state is no prefix of the history (required prefix {required} of {} steps, crash after {crash_after} ops, {mode:?});\nvs the required prefix: {}\nlast steps: {}\npartition changes and failed steps: {ddl_and_failures}",
            history.len(),
            diff(&expected, &recovered),
            history[required.saturating_sub(6)..].iter().map(|(s, st)| format!("{}{st:?}", short(s))).collect::<Vec<_>>().join(", ")
        ))
    })
}

fn short(step: &Step) -> String {
    match step {
        Step::Write(ops, sync) => format!(
            "Write{}[{}]",
            if *sync { "Sync" } else { "" },
            ops.iter()
                .map(|(p, k, v)| format!(
                    "{}/{}={}",
                    NAMES[*p],
                    k[1],
                    v.as_ref().map_or("del".to_string(), |v| format!(
                        "{}x{}",
                        v.first().copied().unwrap_or(0),
                        v.len()
                    ))
                ))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => format!("{other:?}"),
    }
}

fn diff(expected: &Model, got: &Model) -> String {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(got.keys()).collect();
    for name in names {
        match (expected.get(name), got.get(name)) {
            (Some(_), None) => out.push(format!("partition {name} missing")),
            (None, Some(_)) => out.push(format!("partition {name} unexpected")),
            (Some(e), Some(g)) => {
                for k in e
                    .keys()
                    .chain(g.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let (a, b) = (e.get(k), g.get(k));
                    if a != b {
                        let show = |v: Option<&Vec<u8>>| {
                            v.map_or("absent".to_string(), |v| {
                                format!("{}x{}", v.first().copied().unwrap_or(0), v.len())
                            })
                        };
                        out.push(format!("{name}/{}: want {} got {}", k[1], show(a), show(b)));
                    }
                }
            }
            (None, None) => {}
        }
    }
    out.join("; ")
}

/// Runs the seeds of `config` among `0..CRASH_SEEDS` (default
/// [`DEFAULT_SEEDS`]), or `CRASH_SEED` alone if it is of this configuration.
fn crash_loop(config: Config) {
    let one: Option<u64> = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let seeds: Vec<u64> = match one {
        Some(one) if REGRESSION_SEEDS.iter().any(|(s, _)| *s == one) => return,
        Some(one) => vec![one],
        None => {
            let n: u64 = std::env::var("CRASH_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            (0..n).collect()
        }
    };
    let seeds: Vec<u64> = seeds
        .into_iter()
        .filter(|&s| Config::of(s) == config)
        .collect();
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut total = SeedStats::default();
    for &seed in &seeds {
        match run_seed(seed, config, true, true) {
            Ok(s) => {
                total.scans += s.scans;
                total.compactions += s.compactions;
                total.flushes += s.flushes;
            }
            Err(e) => {
                eprintln!("seed {seed} ({config:?}) FAILED: {e}\n");
                failures.push(seed);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing seeds (rerun with CRASH_SEED=n): {failures:?}"
    );
    eprintln!(
        "{config:?}: {} crash seeds held the oracle ({} scans checked; {} flushes, {} compactions in the sessions that crashed) in {:.1?}",
        seeds.len(),
        total.scans,
        total.flushes,
        total.compactions,
        started.elapsed()
    );
    // The workload reaches what it is meant to.
    if seeds.len() >= 100 {
        assert!(total.scans > 0, "no scan was checked");
        assert!(total.flushes > 0, "no flush ran");
        if matches!(config, Config::Flushes | Config::ManifestPressure) {
            assert!(total.compactions > 0, "no compaction ran");
        }
    }
}

/// Seeds per CI run, over the four configurations (one test each, so
/// nextest runs them in parallel).
const DEFAULT_SEEDS: u64 = 4000;

#[test]
fn crash_loop_classic() {
    crash_loop(Config::Classic);
}

#[test]
fn crash_loop_flushes() {
    crash_loop(Config::Flushes);
}

#[test]
fn crash_loop_manifest_pressure() {
    crash_loop(Config::ManifestPressure);
}

#[test]
fn crash_loop_recovery_flush() {
    crash_loop(Config::RecoveryFlush);
}

/// [`REGRESSION_SEEDS`], replayed as they failed (without the scans and
/// lost sectors added since, which would move the crash point or change the
/// crash); `CRASH_SEED` of one of them runs it alone.
#[test]
fn crash_loop_regression_seeds() {
    let one: Option<u64> = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    for &(seed, config) in REGRESSION_SEEDS {
        if one.is_some_and(|o| o != seed) {
            continue;
        }
        if let Err(e) = run_seed(seed, config, false, false) {
            panic!("regression seed {seed} ({config:?}) failed: {e}");
        }
    }
}
