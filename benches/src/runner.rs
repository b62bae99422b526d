//! The parent process: plans the cells, runs each in a child process (this
//! same executable with `--cell <spec>`), prints progress, collects results.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::backends::Kind;
use crate::cell::{CellResult, CellSpec, RESULT_PREFIX};
use crate::config::BenchConfig;
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

/// One planned cell: (workload, tasks, compacted).
type Step = (Workload, usize, bool);

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

/// Runs every cell; returns all results (including "n/a" ones).
pub fn run(opts: &RunOptions) -> Vec<CellResult> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot find this executable: {e}");
            return Vec::new();
        }
    };
    let _ = std::fs::remove_dir_all(&opts.data_dir);
    let steps: Vec<Step> = plan()
        .into_iter()
        .filter(|(w, t, c)| {
            let l = label(*w, *t, *c);
            opts.only.is_empty() || opts.only.iter().any(|o| l.starts_with(o.as_str()))
        })
        .collect();
    let total = opts.reps as usize * steps.len() * opts.backends.len();
    let mut done = 0;
    let mut results = Vec::new();
    let started = Instant::now();
    for rep in 0..opts.reps {
        let mut order = opts.backends.clone();
        if rep % 2 == 1 {
            order.reverse();
        }
        for step in &steps {
            let (w, tasks, compacted) = *step;
            // The raw disk rate is one cell per step, not one per backend.
            let kinds: Vec<Option<Kind>> = if w == Workload::RawSync {
                vec![None]
            } else {
                order.iter().copied().map(Some).collect()
            };
            for kind in kinds {
                done += if kind.is_none() {
                    opts.backends.len()
                } else {
                    1
                };
                let name = kind.map_or("disk", Kind::name);
                let l = label(w, tasks, compacted);
                if let Some(why) = kind.and_then(|k| not_applicable(k, step)) {
                    if rep == 0 {
                        results.push(CellResult {
                            backend: name.into(),
                            workload: l,
                            na: Some(why),
                            ..CellResult::default()
                        });
                    }
                    continue;
                }
                // The filled directory and its compacted copy are made once.
                if rep > 0 && w == Workload::Compact {
                    continue;
                }
                let dir = opts.data_dir.join(name);
                let spec = CellSpec {
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
                };
                eprint!(
                    "\r[{done:>4}/{total}] {:>5.0}s rep {}/{} {name:<8} {l:<28}",
                    started.elapsed().as_secs_f64(),
                    rep + 1,
                    opts.reps,
                );
                let r = run_child(&exe, &spec);
                let _ = std::fs::remove_dir_all(&spec.dir);
                eprintln!("{}", summary(&r));
                results.push(r);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&opts.data_dir);
    eprintln!(
        "{} cells in {:.0} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    results
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
    let child = Command::new(exe)
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
