//! The comparison harness: `cargo bench -p kalamdb-bench --bench compare -- --quick`.
//! Options are listed by `--help`; `benches/README.md` explains them.

use std::path::PathBuf;

use kalamdb_bench::backends::Kind;
use kalamdb_bench::config::BenchConfig;
use kalamdb_bench::report::{self, Machine, RunInfo};
use kalamdb_bench::runner::{self, RunOptions};

const HELP: &str = "\
compare [--quick] [--n N] [--reads R] [--reps K] [--max-secs S]
        [--backends lsm,rocksdb,...] [--only fillseq,readrandom,...]
        [--dir DATA_DIR] [--out RESULTS_DIR] [--write-docs]

  --quick       N = 1,000,000, 1 repetition (default: N = 5,000,000, 3 repetitions)
  --only        run only workloads whose label starts with one of these
  --dir         where the databases go (default: $TMPDIR/kalamdb-bench; use a real disk)
  --out         where results.md, results.json and results.svg go (default: DATA_DIR-results)
  --write-docs  also write docs/BENCHMARKS.md and docs/benchmarks.svg";

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
    }))
}

fn run(cmd: Cmd, args: &[String]) {
    let o = &cmd.opts;
    let shown: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let machine = Machine::probe(&o.data_dir);
    let mut info = RunInfo {
        command: std::env::var("KALAMDB_BENCH_COMMAND").unwrap_or_else(|_| {
            format!(
                "cargo bench -p kalamdb-bench --bench compare -- {}",
                shown.join(" ")
            )
            .trim_end()
            .to_string()
        }),
        n: o.n,
        reads: o.reads,
        reps: o.reps,
        machine,
        config: o.config,
        date: date(),
        commit: commit(),
        backends: o.backends.clone(),
        load: (report::loadavg(), String::new()),
    };
    eprintln!(
        "N = {}, {} reads per cell, {} repetition(s), data in {} ({})",
        o.n,
        o.reads,
        o.reps,
        o.data_dir.display(),
        info.machine.filesystem
    );
    if info.machine.filesystem.starts_with("tmpfs") {
        eprintln!("warning: the data directory is on tmpfs: fdatasync costs nothing there");
    }
    let results = runner::run(o);
    info.load.1 = report::loadavg();
    let sums = report::summarize(&results);
    let md = report::markdown(&info, &sums);
    let svg = report::svg(&info, &sums);
    let json = report::json(&info, &results, &sums);
    println!("{md}");
    let write = |path: PathBuf, text: &str| match std::fs::write(&path, text) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    };
    if let Err(e) = std::fs::create_dir_all(&cmd.out) {
        eprintln!("cannot create {}: {e}", cmd.out.display());
    }
    write(cmd.out.join("results.md"), &md);
    write(cmd.out.join("results.json"), &json);
    write(cmd.out.join("results.svg"), &svg);
    if cmd.write_docs {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
        write(docs.join("benchmarks.svg"), &svg);
        let page = docs.join("BENCHMARKS.md");
        let kept = std::fs::read_to_string(&page).ok().and_then(|old| {
            old.find(KEPT_MARKER)
                .map(|at| old[at..].to_string())
        });
        write(page, &docs_page(&md, kept.as_deref()));
    }
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
         -O2, RocksDB's own default). Written by `--write-docs`.\n\n\
         ![ops/s relative to RocksDB](benchmarks.svg)\n\n{md}{kept}"
    )
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn commit() -> String {
    std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
