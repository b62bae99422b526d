//! The parent process: plans the cells, runs each in a child process (this
//! same executable with `--cell <spec>`), prints progress, collects results.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::backends::Kind;
use crate::cell::{CellResult, CellSpec, RESULT_PREFIX};
use crate::config::BenchConfig;
use crate::resume::{self, CellKey, CellRecord, Fingerprint, Journal, DATA_FINGERPRINT, JOURNAL};
use crate::workloads::{label, Workload};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Keys in the data set.
    pub n: u64,
    /// Operations of each read and YCSB cell.
    pub reads: u64,
    /// Repetitions.
    pub reps: u32,
    /// Cap on a timed phase, seconds.
    pub max_secs: f64,
    /// Cap on waiting for background work to stop, seconds.
    pub quiet_cap_secs: f64,
    /// Backends, in the order of the first repetition.
    pub backends: Vec<Kind>,
    /// Only workloads whose label starts with one of these (all if empty).
    pub only: Vec<String>,
    /// Where the cells put their databases.
    pub data_dir: PathBuf,
    /// The pinned configuration.
    pub config: BenchConfig,
}

/// One planned step: (workload, tasks, compacted).
pub type Step = (Workload, usize, bool);

/// The workloads in the order they run within a repetition. `fillrandom`
/// comes before everything that reads its directory, `compact` before the
/// compacted reads.
pub fn plan() -> Vec<Step> {
    use Workload::*;
    let mut steps = vec![
        (FillSeq, 1, false),
        (FillRandom, 1, false),
        (Overwrite, 1, false),
        (Batch, 1, false),
        (Compact, 1, false),
    ];
    for compacted in [false, true] {
        for w in [ReadRandom, ReadMissing, SeekRandom, ReadSeq] {
            steps.push((w, 1, compacted));
        }
    }
    for tasks in [1, 16] {
        steps.push((RawSync, tasks, false));
        steps.push((FillSync, tasks, false));
    }
    for w in [YcsbA, YcsbB, YcsbC, YcsbE] {
        for tasks in [1, 8] {
            steps.push((w, tasks, false));
        }
    }
    steps.push((DeleteHeavy, 1, false));
    steps
}

/// Why a cell does not apply, if it does not.
fn not_applicable(kind: Kind, step: &Step) -> Option<String> {
    let (w, _, compacted) = *step;
    if !kind.available() {
        return Some("built without the rocksdb feature".into());
    }
    if (w == Workload::Compact || compacted) && kind.no_compaction().is_some() {
        return kind.no_compaction().map(str::to_string);
    }
    if w == Workload::FillSync && !kind.persistent() {
        return Some("in memory: nothing to sync".into());
    }
    None
}

/// One cell of the plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Repetition.
    pub rep: u32,
    /// The backend; `None` for the raw disk rate (one cell per step).
    pub kind: Option<Kind>,
    /// (workload, tasks, compacted).
    pub step: Step,
    /// Why it does not apply (then it is reported, not run; repetition 0 only).
    pub na: Option<String>,
}

impl Planned {
    /// The backend's name (`disk` for the raw disk rate).
    pub fn backend(&self) -> &'static str {
        self.kind.map_or("disk", Kind::name)
    }

    /// The row label.
    pub fn label(&self) -> String {
        label(self.step.0, self.step.1, self.step.2)
    }

    /// Its identity in the journal.
    pub fn key(&self) -> CellKey {
        (self.rep, self.backend().to_string(), self.label())
    }
}

/// Every cell of the run in the order they run: per repetition the steps of
/// [`plan`] (filtered by `--only`), each over the backends, whose order is
/// reversed in odd repetitions. `compact` (it makes the compacted base) runs
/// in repetition 0 only; cells that do not apply appear in repetition 0 only,
/// with the reason.
pub fn plan_cells(opts: &RunOptions) -> Vec<Planned> {
    let steps: Vec<Step> = plan()
        .into_iter()
        .filter(|(w, t, c)| {
            let l = label(*w, *t, *c);
            opts.only.is_empty() || opts.only.iter().any(|o| l.starts_with(o.as_str()))
        })
        .collect();
    let mut cells = Vec::new();
    for rep in 0..opts.reps {
        let mut order = opts.backends.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        for step in &steps {
            let w = step.0;
            if rep > 0 && w == Workload::Compact {
                continue;
            }
            let kinds: Vec<Option<Kind>> = if w == Workload::RawSync {
                vec![None]
            } else {
                order.iter().copied().map(Some).collect()
            };
            for kind in kinds {
                let na = kind.and_then(|k| not_applicable(k, step));
                if na.is_some() && rep > 0 {
                    continue;
                }
                cells.push(Planned {
                    rep,
                    kind,
                    step: *step,
                    na,
                });
            }
        }
    }
    cells
}

/// The cells of `plan` still to run: those that apply and have no result
/// without an error in `records` (a cell that failed runs again).
pub fn pending<'a>(plan: &'a [Planned], records: &[CellRecord]) -> Vec<&'a Planned> {
    let done: HashSet<CellKey> = records
        .iter()
        .filter(|r| r.result.error.is_none())
        .map(CellRecord::key)
        .collect();
    plan.iter()
        .filter(|p| p.na.is_none() && !done.contains(&p.key()))
        .collect()
}

/// The results of `plan` in plan order: the recorded cells (the latest
/// record of each) and the cells that do not apply. Cells not run yet are
/// left out.
pub fn assemble(plan: &[Planned], records: &[CellRecord]) -> Vec<CellResult> {
    let by_key: HashMap<CellKey, &CellRecord> = records.iter().map(|r| (r.key(), r)).collect();
    plan.iter()
        .filter_map(|p| match &p.na {
            Some(why) => Some(CellResult {
                backend: p.backend().into(),
                workload: p.label(),
                na: Some(why.clone()),
                ..CellResult::default()
            }),
            None => by_key.get(&p.key()).map(|r| r.result.clone()),
        })
        .collect()
}

/// The base directories a cell of `kind` reads: the filled one (made by
/// `fillrandom` in repetition 0), and for the compacted reads also the
/// compacted one (made by `compact`). The memory backend has none.
fn bases_needed(kind: Kind, step: &Step) -> Vec<Workload> {
    let (w, _, compacted) = *step;
    if !kind.persistent() {
        return Vec::new();
    }
    if w == Workload::Compact || (w.reads_base() && !compacted) {
        vec![Workload::FillRandom]
    } else if w.reads_base() && compacted {
        vec![Workload::FillRandom, Workload::Compact]
    } else {
        Vec::new()
    }
}

/// How this invocation runs the plan.
#[derive(Debug, Clone)]
pub struct Control {
    /// Continue the run recorded in `out/cells.jsonl` (else start over).
    pub resume: bool,
    /// The results directory (holds the journal).
    pub out: PathBuf,
    /// No cell starts after this, nor one that took longer than the time
    /// left in an earlier repetition.
    pub deadline: Option<Instant>,
    /// The commit measured (recorded with every cell).
    pub commit: String,
    /// When this invocation started (UTC), recorded with every cell.
    pub session: String,
}

/// What a run (or this part of it) produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Results of the whole run so far (earlier invocations included), in
    /// plan order.
    pub results: Vec<CellResult>,
    /// Every record of the run, in journal order.
    pub records: Vec<CellRecord>,
    /// Cells that apply, and how many of them have a result.
    pub total: usize,
    /// See `total`.
    pub done: usize,
    /// Why the run stopped before the end (the time budget).
    pub stopped: Option<String>,
    /// Seconds the cells still to run took in earlier repetitions (where
    /// known), and how many have no such estimate.
    pub left_estimate: (f64, usize),
}

impl Outcome {
    /// The commits the cells measured, in first-seen order.
    pub fn commits(&self) -> Vec<String> {
        let mut c: Vec<String> = Vec::new();
        for r in &self.records {
            if !c.contains(&r.commit) {
                c.push(r.commit.clone());
            }
        }
        c
    }

    /// The invocations that measured cells, in first-seen order.
    pub fn sessions(&self) -> Vec<String> {
        let mut s: Vec<String> = Vec::new();
        for r in &self.records {
            if !s.contains(&r.session) {
                s.push(r.session.clone());
            }
        }
        s
    }
}

/// The fingerprint of the run `opts` describes.
pub fn fingerprint(opts: &RunOptions) -> Fingerprint {
    Fingerprint {
        n: opts.n,
        reads: opts.reads,
        reps: opts.reps,
        max_secs: opts.max_secs,
        quiet_cap_secs: opts.quiet_cap_secs,
        backends: opts.backends.clone(),
        only: opts.only.clone(),
        config: opts.config,
    }
}

/// Wall seconds a cell of (backend, label) took in other repetitions: the
/// smallest (a cell "clearly overruns" when even that does not fit).
fn shortest_seen(records: &[CellRecord], backend: &str, workload: &str) -> Option<f64> {
    records
        .iter()
        .filter(|r| {
            r.result.error.is_none() && r.result.backend == backend && r.result.workload == workload
        })
        .map(|r| r.wall_secs)
        .min_by(f64::total_cmp)
}

/// Seconds the cells `left` took in other repetitions (the shortest of
/// each), and how many have not run in any.
fn estimate(left: &[&Planned], records: &[CellRecord]) -> (f64, usize) {
    let mut e = (0.0, 0);
    for p in left {
        match shortest_seen(records, p.backend(), &p.label()) {
            Some(s) => e.0 += s,
            None => e.1 += 1,
        }
    }
    e
}

/// `secs` as minutes, for people.
pub fn minutes(secs: f64) -> String {
    if secs < 600.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

/// Whether a cell of (backend, label) may start now.
///
/// # Errors
/// Why not: past the deadline, or it took longer than the time left before.
pub fn may_start(
    deadline: Option<Instant>,
    now: Instant,
    records: &[CellRecord],
    backend: &str,
    workload: &str,
) -> Result<(), String> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    let Some(left) = deadline
        .checked_duration_since(now)
        .filter(|d| !d.is_zero())
    else {
        return Err("the time budget is spent".into());
    };
    match shortest_seen(records, backend, workload) {
        Some(secs) if secs > left.as_secs_f64() => Err(format!(
            "{backend} {workload} took {secs:.0} s in another repetition and {:.0} s are left",
            left.as_secs_f64()
        )),
        _ => Ok(()),
    }
}

/// Prepares the data directory: kept on resume if it holds the bases of this
/// same run, else emptied; either way it is marked with `fp`.
fn prepare_data_dir(dir: &Path, fp: &Fingerprint, resume: bool) -> Result<(), String> {
    let marker = dir.join(DATA_FINGERPRINT);
    let same_run = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| serde_json::from_str::<Fingerprint>(&t).ok())
        .is_some_and(|f| f.differences(fp).is_empty());
    if resume && same_run {
        eprintln!(
            "resuming: keeping the filled directories in {}",
            dir.display()
        );
    } else {
        if resume && dir.exists() {
            eprintln!(
                "resuming: {} holds no bases of this run; emptied (the cells that fill them run again)",
                dir.display()
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let text = serde_json::to_string(fp).map_err(|e| e.to_string())?;
    std::fs::write(&marker, text).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

/// Runs the cells of the plan that have no result yet (all of them unless
/// `ctl.resume`), appending each result to `ctl.out/cells.jsonl`; stops
/// before a cell that would start past `ctl.deadline`.
///
/// # Errors
/// A journal of another run (on resume), or one that cannot be written.
pub fn run(opts: &RunOptions, ctl: &Control) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let fp = fingerprint(opts);
    std::fs::create_dir_all(&ctl.out)
        .map_err(|e| format!("cannot create {}: {e}", ctl.out.display()))?;
    let journal_path = ctl.out.join(JOURNAL);
    let mut records = if ctl.resume {
        let r = resume::load(&journal_path, &fp).map_err(|e| {
            format!(
                "cannot resume: {e}\nResume with the options of that run, or start over without --resume."
            )
        })?;
        eprintln!(
            "resuming: {} cell(s) recorded in {}",
            r.len(),
            journal_path.display()
        );
        r
    } else {
        if journal_path.exists() {
            let old = ctl.out.join(format!("{JOURNAL}.old"));
            std::fs::rename(&journal_path, &old)
                .map_err(|e| format!("cannot move {}: {e}", journal_path.display()))?;
            eprintln!(
                "starting over: the previous journal is now {}",
                old.display()
            );
        }
        Vec::new()
    };
    prepare_data_dir(&opts.data_dir, &fp, ctl.resume)?;
    let mut journal = Journal::open(&journal_path)
        .map_err(|e| format!("cannot open {}: {e}", journal_path.display()))?;

    let plan = plan_cells(opts);
    let total = plan.iter().filter(|p| p.na.is_none()).count();
    let todo: Vec<Planned> = pending(&plan, &records).into_iter().cloned().collect();
    let mut done = total - todo.len();
    if done > 0 {
        let (secs, unknown) = estimate(&todo.iter().collect::<Vec<_>>(), &records);
        if unknown == todo.len() {
            eprintln!("{} of {total} cells to run", todo.len());
        } else {
            eprintln!(
                "{} of {total} cells to run; {} of them took {} in other repetitions",
                todo.len(),
                todo.len() - unknown,
                minutes(secs)
            );
        }
    }
    let started = Instant::now();
    let mut remade: HashSet<(Kind, Workload)> = HashSet::new();
    let mut stopped = None;
    'cells: for p in &todo {
        // A base this cell reads is missing (a new data directory, or the
        // cell that makes it failed): make it first, once per invocation.
        if let Some(kind) = p.kind {
            for base in bases_needed(kind, &p.step) {
                let spec = cell_spec(opts, 0, Some(kind), &(base, 1, false));
                let path = if base == Workload::Compact {
                    &spec.base_compacted
                } else {
                    &spec.base
                };
                if path.exists() || !remade.insert((kind, base)) {
                    continue;
                }
                let l = spec.label();
                if let Err(why) = may_start(ctl.deadline, Instant::now(), &records, kind.name(), &l)
                {
                    stopped = Some(why);
                    break 'cells;
                }
                eprint!(
                    "\r{:>17} {:<8} {:<28}",
                    format!(
                        "(no {})",
                        path.file_name().and_then(|f| f.to_str()).unwrap_or("base")
                    ),
                    kind.name(),
                    format!("{l}, repetition 1"),
                );
                let rec = run_recorded(&exe, &spec, ctl, &fp, &mut journal)?;
                eprintln!("{}", summary(&rec.result));
                records.push(rec);
            }
        }
        let l = p.label();
        if let Err(why) = may_start(ctl.deadline, Instant::now(), &records, p.backend(), &l) {
            stopped = Some(why);
            break;
        }
        done += 1;
        eprint!(
            "\r[{done:>4}/{total}] {:>5.0}s rep {}/{} {:<8} {l:<28}",
            started.elapsed().as_secs_f64(),
            p.rep + 1,
            opts.reps,
            p.backend(),
        );
        let spec = cell_spec(opts, p.rep, p.kind, &p.step);
        let rec = run_recorded(&exe, &spec, ctl, &fp, &mut journal)?;
        eprintln!("{}", summary(&rec.result));
        if rec.result.error.is_some() {
            done -= 1;
        }
        records.push(rec);
    }
    // The latest record of each cell.
    let mut latest: Vec<CellRecord> = Vec::new();
    let mut at: HashMap<CellKey, usize> = HashMap::new();
    for r in records {
        match at.get(&r.key()) {
            Some(&j) => latest[j] = r,
            None => {
                at.insert(r.key(), latest.len());
                latest.push(r);
            }
        }
    }
    let left = pending(&plan, &latest);
    let left_estimate = estimate(&left, &latest);
    if left.is_empty() && std::env::var_os("KALAMDB_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&opts.data_dir);
    }
    eprintln!(
        "{done} of {total} cells done; this invocation: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome {
        results: assemble(&plan, &latest),
        done: total - left.len(),
        total,
        stopped,
        left_estimate,
        records: latest,
    })
}

/// The spec of one cell (directories under the data directory).
fn cell_spec(opts: &RunOptions, rep: u32, kind: Option<Kind>, step: &Step) -> CellSpec {
    let (w, tasks, compacted) = *step;
    let dir = opts.data_dir.join(kind.map_or("disk", Kind::name));
    CellSpec {
        backend: kind,
        workload: w,
        tasks,
        compacted,
        n: opts.n,
        reads: opts.reads,
        max_secs: opts.max_secs,
        quiet_cap_secs: opts.quiet_cap_secs,
        dir: dir.join("cell"),
        base: dir.join("base"),
        base_compacted: dir.join("base-compacted"),
        keep_base: rep == 0 && w == Workload::FillRandom,
        rep,
        config: opts.config,
    }
}

/// Runs one cell in a child process and appends its record to the journal.
fn run_recorded(
    exe: &Path,
    spec: &CellSpec,
    ctl: &Control,
    fp: &Fingerprint,
    journal: &mut Journal,
) -> Result<CellRecord, String> {
    // Leftovers of an invocation that was killed, and the directory this
    // cell makes (it is renamed into place at the end).
    let _ = std::fs::remove_dir_all(&spec.dir);
    if spec.keep_base && spec.backend.is_some_and(Kind::persistent) {
        let _ = std::fs::remove_dir_all(&spec.base);
    }
    if spec.workload == Workload::Compact {
        let _ = std::fs::remove_dir_all(&spec.base_compacted);
    }
    let t = Instant::now();
    let result = run_child(exe, spec);
    let wall_secs = t.elapsed().as_secs_f64();
    if std::env::var_os("KALAMDB_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&spec.dir);
    }
    let rec = CellRecord {
        fingerprint: fp.clone(),
        rep: spec.rep,
        commit: ctl.commit.clone(),
        session: ctl.session.clone(),
        wall_secs,
        load: crate::report::loadavg(),
        result,
    };
    journal
        .append(&rec)
        .map_err(|e| format!("cannot append to {}: {e}", journal.path().display()))?;
    Ok(rec)
}

fn summary(r: &CellResult) -> String {
    if let Some(e) = &r.error {
        return format!("ERROR {e}");
    }
    format!("{:>12.0} ops/s  ({:.1} s)", r.ops_per_sec, r.secs)
}

/// Runs one cell in a child process and reads its result line.
fn run_child(exe: &std::path::Path, spec: &CellSpec) -> CellResult {
    let failed = |e: String| CellResult {
        backend: spec.backend.map_or("disk", Kind::name).into(),
        workload: spec.label(),
        rep: spec.rep,
        error: Some(e),
        ..CellResult::default()
    };
    let json = match serde_json::to_string(spec) {
        Ok(j) => j,
        Err(e) => return failed(e.to_string()),
    };
    // KALAMDB_BENCH_PERF=DIR profiles every cell: the child runs under
    // `perf record` and leaves DIR/<backend>-<workload>-<rep>.data.
    let mut command = match std::env::var_os("KALAMDB_BENCH_PERF") {
        Some(dir) => {
            let name: String = format!(
                "{}-{}-{}.data",
                spec.backend.map_or("disk", Kind::name),
                spec.label(),
                spec.rep
            )
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
            let mut c = Command::new("perf");
            c.args([
                "record",
                "-q",
                "-F",
                "499",
                "--call-graph",
                "dwarf,32768",
                "-o",
            ])
            .arg(std::path::Path::new(&dir).join(name))
            .arg("--")
            .arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let child = command
        .arg("--cell")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(format!("spawn: {e}")),
    };
    let mut result = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
                result = Some(serde_json::from_str::<CellResult>(json));
            }
        }
    }
    let status = child.wait();
    match (result, status) {
        (Some(Ok(r)), _) => r,
        (Some(Err(e)), _) => failed(format!("bad result line: {e}")),
        (None, Ok(s)) => failed(format!("no result (exit {s})")),
        (None, Err(e)) => failed(format!("wait: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn opts(reps: u32, only: &[&str]) -> RunOptions {
        RunOptions {
            n: 1000,
            reads: 100,
            reps,
            max_secs: 1.0,
            quiet_cap_secs: 1.0,
            backends: vec![Kind::Lsm, Kind::Sled, Kind::Memory],
            only: only.iter().map(|s| s.to_string()).collect(),
            data_dir: std::env::temp_dir().join(format!("kb-runner-{}", std::process::id())),
            config: BenchConfig::default(),
        }
    }

    fn record(o: &RunOptions, p: &Planned, wall_secs: f64, error: bool) -> CellRecord {
        CellRecord {
            fingerprint: fingerprint(o),
            rep: p.rep,
            commit: "c1".into(),
            session: "s1".into(),
            wall_secs,
            load: String::new(),
            result: CellResult {
                backend: p.backend().into(),
                workload: p.label(),
                rep: p.rep,
                ops: 1,
                error: error.then(|| "boom".to_string()),
                ..CellResult::default()
            },
        }
    }

    fn keys(cells: &[&Planned]) -> Vec<(u32, String, String)> {
        cells.iter().map(|p| p.key()).collect()
    }

    #[test]
    fn the_plan_alternates_the_order_and_compacts_once() {
        let o = opts(3, &["fillseq", "compact", "readrandom"]);
        let plan = plan_cells(&o);
        let of = |rep: u32, label: &str| -> Vec<&str> {
            plan.iter()
                .filter(|p| p.rep == rep && p.label() == label)
                .map(Planned::backend)
                .collect()
        };
        assert_eq!(of(0, "fillseq"), ["lsm", "sled", "memory"]);
        assert_eq!(of(1, "fillseq"), ["memory", "sled", "lsm"]);
        assert_eq!(of(2, "fillseq"), ["lsm", "sled", "memory"]);
        // compact: repetition 0 only; sled's and memory's reported n/a once.
        assert_eq!(of(0, "compact"), ["lsm", "sled", "memory"]);
        assert!(of(1, "compact").is_empty() && of(2, "compact").is_empty());
        // Cells that do not apply: reported once (repetition 0).
        let na: Vec<(u32, &str, String)> = plan
            .iter()
            .filter(|p| p.na.is_some())
            .map(|p| (p.rep, p.backend(), p.label()))
            .collect();
        let compacted = "readrandom (compacted)".to_string();
        assert_eq!(
            na,
            [
                (0, "sled", "compact".to_string()),
                (0, "memory", "compact".to_string()),
                (0, "sled", compacted.clone()),
                (0, "memory", compacted.clone()),
            ]
        );
        assert_eq!(of(2, &compacted), ["lsm"]);
        assert_eq!(plan.iter().filter(|p| p.label() == "readrandom").count(), 9);
    }

    #[test]
    fn pending_skips_recorded_cells_and_runs_failed_ones_again() {
        let o = opts(2, &["fillseq", "compact", "readrandom"]);
        let plan = plan_cells(&o);
        let runnable: Vec<&Planned> = plan.iter().filter(|p| p.na.is_none()).collect();
        assert_eq!(keys(&pending(&plan, &[])), keys(&runnable));
        // The first five cells are recorded, the third one with an error.
        let records: Vec<CellRecord> = runnable[..5]
            .iter()
            .enumerate()
            .map(|(i, p)| record(&o, p, 1.0, i == 2))
            .collect();
        let left = pending(&plan, &records);
        let mut expected = vec![runnable[2]];
        expected.extend(&runnable[5..]);
        assert_eq!(keys(&left), keys(&expected));
        // A later record of the failed cell without an error completes it.
        let mut records = records;
        records.push(record(&o, runnable[2], 1.0, false));
        let latest_ok = pending(&plan, &records);
        assert_eq!(keys(&latest_ok), keys(&runnable[5..]));
        // Everything recorded: nothing left (n/a cells never run).
        let all: Vec<CellRecord> = runnable.iter().map(|p| record(&o, p, 1.0, false)).collect();
        assert!(pending(&plan, &all).is_empty());
    }

    #[test]
    fn assemble_orders_results_by_the_plan_whatever_the_journal_order() {
        let o = opts(2, &["fillseq", "compact"]);
        let plan = plan_cells(&o);
        let runnable: Vec<&Planned> = plan.iter().filter(|p| p.na.is_none()).collect();
        // Recorded backwards (two invocations, the second first), one cell
        // missing (not run yet).
        let mut records: Vec<CellRecord> = runnable[1..]
            .iter()
            .rev()
            .map(|p| record(&o, p, 1.0, false))
            .collect();
        records[0].commit = "c2".into();
        let results = assemble(&plan, &records);
        let got: Vec<(u32, &str, &str, bool)> = results
            .iter()
            .map(|r| {
                (
                    r.rep,
                    r.backend.as_str(),
                    r.workload.as_str(),
                    r.na.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "sled", "fillseq", false),
                (0, "memory", "fillseq", false),
                (0, "lsm", "compact", false),
                (0, "sled", "compact", true),
                (0, "memory", "compact", true),
                (1, "memory", "fillseq", false),
                (1, "sled", "fillseq", false),
                (1, "lsm", "fillseq", false),
            ]
        );
    }

    #[test]
    fn cells_that_read_a_base_make_it_first_if_it_is_missing() {
        let compacted = (Workload::ReadRandom, 1, true);
        assert_eq!(
            bases_needed(Kind::Lsm, &compacted),
            [Workload::FillRandom, Workload::Compact]
        );
        assert_eq!(
            bases_needed(Kind::Lsm, &(Workload::YcsbA, 8, false)),
            [Workload::FillRandom]
        );
        assert_eq!(
            bases_needed(Kind::Lsm, &(Workload::Compact, 1, false)),
            [Workload::FillRandom]
        );
        assert!(bases_needed(Kind::Lsm, &(Workload::FillRandom, 1, false)).is_empty());
        assert!(bases_needed(Kind::Lsm, &(Workload::DeleteHeavy, 1, false)).is_empty());
        assert!(bases_needed(Kind::Memory, &(Workload::ReadRandom, 1, false)).is_empty());
    }

    #[test]
    fn no_cell_starts_past_the_deadline_or_when_it_clearly_overruns() {
        let o = opts(3, &["fillseq"]);
        let plan = plan_cells(&o);
        let lsm: Vec<&Planned> = plan.iter().filter(|p| p.backend() == "lsm").collect();
        let now = Instant::now();
        let at = |secs: u64| Some(now + Duration::from_secs(secs));
        // Not seen before: it starts whenever time is left.
        assert!(may_start(None, now, &[], "lsm", "fillseq").is_ok());
        assert!(may_start(at(1), now, &[], "lsm", "fillseq").is_ok());
        assert!(may_start(Some(now), now, &[], "lsm", "fillseq").is_err());
        // Repetitions took 100 s and 60 s (and a failed one 1 s, ignored):
        // it starts only with at least 60 s left.
        let records = [
            record(&o, lsm[0], 100.0, false),
            record(&o, lsm[1], 60.0, false),
            record(&o, lsm[2], 1.0, true),
        ];
        assert!(may_start(at(59), now, &records, "lsm", "fillseq").is_err());
        assert!(may_start(at(61), now, &records, "lsm", "fillseq").is_ok());
        assert!(may_start(at(59), now, &records, "sled", "fillseq").is_ok());
        // What is left: lsm's known (60 s, the shortest), sled's not.
        let sled = plan.iter().find(|p| p.backend() == "sled");
        let left: Vec<&Planned> = [lsm[2]].into_iter().chain(sled).collect();
        assert_eq!(estimate(&left, &records), (60.0, 1));
    }

    #[test]
    fn resume_refuses_a_journal_of_another_run() {
        let o = opts(3, &["fillseq"]);
        let out = std::env::temp_dir().join(format!("kb-refuse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::create_dir_all(&out);
        let mut other = o.clone();
        other.n *= 2;
        let plan = plan_cells(&other);
        let line = serde_json::to_string(&record(&other, &plan[0], 1.0, false)).unwrap_or_default();
        let _ = std::fs::write(out.join(JOURNAL), format!("{line}\n"));
        let ctl = Control {
            resume: true,
            out: out.clone(),
            deadline: None,
            commit: "c".into(),
            session: "s".into(),
        };
        let err = run(&o, &ctl).expect_err("another run's journal");
        assert!(
            err.contains("cannot resume") && err.contains("n: 2000 vs 1000"),
            "{err}"
        );
        // Nothing was touched: the journal is as it was, no data directory.
        assert_eq!(
            std::fs::read_to_string(out.join(JOURNAL)).unwrap_or_default(),
            format!("{line}\n")
        );
        assert!(!o.data_dir.exists());
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn the_data_directory_is_kept_only_for_a_resume_of_the_same_run() -> Result<(), String> {
        let o = opts(1, &[]);
        let dir = o.data_dir.with_extension("prep");
        let fp = fingerprint(&o);
        let base = dir.join("lsm/base");
        let fill = || std::fs::create_dir_all(&base).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        fill()?;
        // No marker yet (another run's leftovers): emptied even on resume.
        prepare_data_dir(&dir, &fp, true)?;
        assert!(!base.exists());
        fill()?;
        prepare_data_dir(&dir, &fp, true)?;
        assert!(base.exists(), "same run, resumed: kept");
        let mut other = fp.clone();
        other.n += 1;
        prepare_data_dir(&dir, &other, true)?;
        assert!(!base.exists(), "another run: emptied");
        fill()?;
        prepare_data_dir(&dir, &other, false)?;
        assert!(!base.exists(), "not resumed: emptied");
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())
    }

    #[test]
    fn the_plan_fills_and_compacts_before_it_reads() {
        let steps = plan();
        let at = |w: Workload, compacted: bool| {
            steps
                .iter()
                .position(|s| s.0 == w && s.2 == compacted)
                .unwrap_or(usize::MAX)
        };
        let fill = at(Workload::FillRandom, false);
        let compact = at(Workload::Compact, false);
        assert!(fill < compact);
        for (w, _, compacted) in &steps {
            if w.reads_base() {
                assert!(fill < at(*w, *compacted), "{w:?} before fillrandom");
            }
            if *compacted {
                assert!(compact < at(*w, true), "{w:?} before compact");
            }
        }
    }
}
