//! The comparison harness: `cargo bench -p kalamdb-bench --bench compare -- --quick`.
//! Options are listed by `--help`; `benches/README.md` explains them.

use std::path::PathBuf;

use kalamdb_bench::backends::Kind;
use kalamdb_bench::config::BenchConfig;
use kalamdb_bench::report::{self, Machine, RunInfo};
use kalamdb_bench::runner::{self, Control, RunOptions};

const HELP: &str = "\
compare [--quick] [--n N] [--reads R] [--reps K] [--max-secs S]
        [--backends lsm,rocksdb,...] [--only fillseq,readrandom,...]
        [--dir DATA_DIR] [--out RESULTS_DIR] [--write-docs]
        [--resume] [--stop-after MINUTES | --deadline HH:MM]

  --quick       N = 1,000,000, 1 repetition (default: N = 5,000,000, 3 repetitions)
  --only        run only workloads whose label starts with one of these
  --dir         where the databases go (default: $TMPDIR/kalamdb-bench; use a real disk)
  --out         where results.md, results.json, results.svg and the cell journal
                cells.jsonl go (default: DATA_DIR-results)
  --write-docs  also write docs/BENCHMARKS.md and docs/benchmarks.svg (complete runs only)
  --resume      continue the run recorded in RESULTS_DIR/cells.jsonl (same options,
                same --dir): skip the cells it holds, reuse the filled directories
  --stop-after  start no cell after this many minutes (nor one that took longer than
                the time left in another repetition); exit 0 with partial results
  --deadline    the same at a time of day (UTC, today)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--cell") {
        let spec = args.get(i + 1).map_or("", String::as_str);
        std::process::exit(kalamdb_bench::cell::main(spec));
    }
    match parse(&args) {
        Ok(Some(cmd)) => run(cmd, &args),
        Ok(None) => println!("{HELP}"),
        Err(e) => {
            eprintln!("{e}\n\n{HELP}");
            std::process::exit(2);
        }
    }
}

struct Cmd {
    opts: RunOptions,
    out: PathBuf,
    write_docs: bool,
    resume: bool,
    /// Seconds from now until no cell may start.
    budget_secs: Option<f64>,
}

fn parse(args: &[String]) -> Result<Option<Cmd>, String> {
    let quick = args.iter().any(|a| a == "--quick");
    let n = if quick { 1_000_000 } else { 5_000_000 };
    let mut opts = RunOptions {
        n,
        reads: 0,
        reps: if quick { 1 } else { 3 },
        max_secs: if quick { 5.0 } else { 30.0 },
        quiet_cap_secs: if quick { 15.0 } else { 120.0 },
        backends: Kind::ALL.to_vec(),
        only: Vec::new(),
        data_dir: std::env::temp_dir().join("kalamdb-bench"),
        config: BenchConfig::default(),
    };
    let mut out = None;
    let mut write_docs = false;
    let mut resume = false;
    let mut budget_secs = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" | "--bench" => {}
            "--help" | "-h" => return Ok(None),
            "--n" => opts.n = value()?.parse().map_err(|e| format!("--n: {e}"))?,
            "--reads" => opts.reads = value()?.parse().map_err(|e| format!("--reads: {e}"))?,
            "--reps" => opts.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--max-secs" => {
                opts.max_secs = value()?.parse().map_err(|e| format!("--max-secs: {e}"))?;
            }
            "--backends" => {
                opts.backends = value()?
                    .split(',')
                    .map(|b| Kind::parse(b).ok_or(format!("unknown backend {b}")))
                    .collect::<Result<_, _>>()?;
            }
            "--only" => opts.only = value()?.split(',').map(str::to_string).collect(),
            "--dir" => opts.data_dir = PathBuf::from(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--write-docs" => write_docs = true,
            "--resume" => resume = true,
            "--stop-after" => {
                let m: f64 = value()?.parse().map_err(|e| format!("--stop-after: {e}"))?;
                if !m.is_finite() || m < 0.0 {
                    return Err("--stop-after: minutes must be a number >= 0".into());
                }
                budget_secs = Some(m * 60.0);
            }
            "--deadline" => budget_secs = Some(until_utc(&value()?)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if opts.reads == 0 {
        opts.reads = (opts.n / 5).max(1);
    }
    let out = out.unwrap_or_else(|| {
        let mut name = opts.data_dir.as_os_str().to_owned();
        name.push("-results");
        PathBuf::from(name)
    });
    Ok(Some(Cmd {
        opts,
        out,
        write_docs,
        resume,
        budget_secs,
    }))
}

/// Seconds from now until `hh:mm` UTC today.
fn until_utc(hhmm: &str) -> Result<f64, String> {
    let bad = || format!("--deadline: {hhmm:?} is not HH:MM (UTC)");
    let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
    let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64()
        % 86_400.0;
    let target = (h * 3600 + m * 60) as f64;
    if target <= now {
        return Err(format!(
            "--deadline: {hhmm} UTC has passed (now {:02}:{:02} UTC); use --stop-after across midnight",
            (now / 3600.0) as u64,
            (now % 3600.0 / 60.0) as u64
        ));
    }
    Ok(target - now)
}

fn run(cmd: Cmd, args: &[String]) {
    let o = &cmd.opts;
    let started = std::time::Instant::now();
    let shown: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let command = std::env::var("KALAMDB_BENCH_COMMAND").unwrap_or_else(|_| {
        format!(
            "cargo bench -p kalamdb-bench --bench compare -- {}",
            shown.join(" ")
        )
        .trim_end()
        .to_string()
    });
    let machine = Machine::probe(&o.data_dir);
    let load_start = report::loadavg();
    eprintln!(
        "N = {}, {} reads per cell, {} repetition(s), data in {} ({})",
        o.n,
        o.reads,
        o.reps,
        o.data_dir.display(),
        machine.filesystem
    );
    if machine.filesystem.starts_with("tmpfs") {
        eprintln!("warning: the data directory is on tmpfs: fdatasync costs nothing there");
    }
    let ctl = Control {
        resume: cmd.resume,
        out: cmd.out.clone(),
        deadline: cmd
            .budget_secs
            .map(|s| started + std::time::Duration::from_secs_f64(s)),
        commit: commit(),
        session: date("+%Y-%m-%d %H:%M:%S UTC"),
    };
    let outcome = match runner::run(o, &ctl) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let info = RunInfo {
        // How to repeat the run (in one invocation).
        command: session_args_removed(&command).join(" "),
        n: o.n,
        reads: o.reads,
        reps: o.reps,
        machine,
        config: o.config,
        sessions: outcome.sessions(),
        commits: outcome.commits(),
        done: (outcome.done, outcome.total),
        backends: o.backends.clone(),
        load: (load_start, report::loadavg()),
    };
    if info.commits.len() > 1 {
        eprintln!(
            "warning: the cells were measured at {} different commits: {}",
            info.commits.len(),
            info.commits.join(", ")
        );
    }
    let sums = report::summarize(&outcome.results);
    let md = report::markdown(&info, &sums);
    let svg = report::svg(&info, &sums);
    let json = report::json(&info, &outcome.results, &sums, &outcome.records);
    let complete = outcome.done == outcome.total;
    if complete {
        println!("{md}");
    }
    let write = |path: PathBuf, text: &str| match std::fs::write(&path, text) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    };
    write(cmd.out.join("results.md"), &md);
    write(cmd.out.join("results.json"), &json);
    write(cmd.out.join("results.svg"), &svg);
    if cmd.write_docs && complete {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
        write(docs.join("benchmarks.svg"), &svg);
        let page = docs.join("BENCHMARKS.md");
        let kept = std::fs::read_to_string(&page)
            .ok()
            .and_then(|old| old.find(KEPT_MARKER).map(|at| old[at..].to_string()));
        write(page, &docs_page(&md, kept.as_deref()));
    }
    if !complete {
        let why = outcome
            .stopped
            .as_deref()
            .unwrap_or("some cells failed (they run again on resume)");
        let (secs, unknown) = outcome.left_estimate;
        let mut resume_cmd = session_args_removed(&command);
        resume_cmd.extend(["--resume", "--stop-after", "MINUTES"]);
        eprintln!(
            "\nstopped: {why}.\n{} of {} cells done{}; partial results in {}{}.\n\
             The run is recorded in {}; continue it (same options, same --dir and --out) with\n  {}",
            outcome.done,
            outcome.total,
            match (outcome.total - outcome.done, unknown) {
                (0, _) => String::new(),
                (left, u) if u == left => format!("; none of the {left} left has run yet"),
                (left, 0) => format!(
                    "; the {left} left took about {} in other repetitions",
                    runner::minutes(secs)
                ),
                (left, u) => format!(
                    "; {} of the {left} left took about {} in other repetitions ({u} have not run yet)",
                    left - u,
                    runner::minutes(secs)
                ),
            },
            cmd.out.display(),
            if cmd.write_docs {
                " (docs/ is written when the run completes)"
            } else {
                ""
            },
            cmd.out.join(kalamdb_bench::resume::JOURNAL).display(),
            resume_cmd.join(" ")
        );
    }
}

/// The words of `command` without those that only concern one invocation
/// (`--resume`, `--stop-after M`, `--deadline T`).
fn session_args_removed(command: &str) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut it = command.split(' ');
    while let Some(a) = it.next() {
        match a {
            "--resume" => {}
            "--stop-after" | "--deadline" => {
                it.next();
            }
            _ => kept.push(a),
        }
    }
    kept
}

/// `docs/BENCHMARKS.md` from this line on is not the harness's: measurements
/// of other tools (such as `examples/light_partitions_bench.rs`), kept as
/// they are when the harness rewrites the page.
const KEPT_MARKER: &str = "<!-- Below: not written by the harness";

fn docs_page(md: &str, kept: Option<&str>) -> String {
    let kept = kept.map_or(String::new(), |k| format!("\n{k}"));
    format!(
        "# Benchmarks\n\n\
         The latest recorded run of the comparison harness (`benches/`, see\n\
         `benches/README.md` for the workloads, metrics and method; `--quick`\n\
         is N = 1M and one repetition, the full run N = 5M and three). Every\n\
         backend runs the same workloads through the `StorageBackend` trait,\n\
         each backend × workload cell in its own process, with the pinned\n\
         configuration listed at the end. `scripts/bench.sh` builds the Rust\n\
         code at opt-level 3 and reuses the test suite's RocksDB build (C++ at\n\
         -O2, RocksDB's own default). Written by `--write-docs`; a full\n\
         run may span several invocations (`--resume`): the header lists\n\
         them and every commit measured.\n\n\
         ![ops/s relative to RocksDB](benchmarks.svg)\n\n{md}{kept}"
    )
}

fn date(format: &str) -> String {
    std::process::Command::new("date")
        .args(["-u", format])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit measured: `git rev-parse --short HEAD`, with `-dirty` when
/// tracked files have uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let mut c = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
        c.push_str("-dirty");
    }
    c
}
