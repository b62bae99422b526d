//! Reports: a markdown summary with ratios to RocksDB and a detail table,
//! JSON with every cell, and an SVG bar chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::backends::Kind;
use crate::cell::CellResult;
use crate::config::{settings, BenchConfig};
use crate::resume::CellRecord;

/// Everything about the run that is not a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The command, as typed (modulo quoting).
    pub command: String,
    /// Keys in the data set.
    pub n: u64,
    /// Operations per read / YCSB cell.
    pub reads: u64,
    /// Repetitions.
    pub reps: u32,
    /// The machine.
    pub machine: Machine,
    /// The pinned configuration.
    pub config: BenchConfig,
    /// When (UTC, from the system clock): the invocations that measured
    /// cells (a resumed run has several).
    pub sessions: Vec<String>,
    /// The commits the cells measured (more than one: a warning).
    pub commits: Vec<String>,
    /// Cells that have a result, of those that apply (a run stopped by its
    /// time budget has fewer).
    pub done: (usize, usize),
    /// Backends in column order.
    pub backends: Vec<Kind>,
    /// /proc/loadavg when the run started and when it ended (other jobs on
    /// the machine show up here).
    pub load: (String, String),
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// CPUs available to the process.
    pub cpus: usize,
    /// Total memory, bytes.
    pub memory: u64,
    /// Kernel release.
    pub kernel: String,
    /// File system type and device of the data directory.
    pub filesystem: String,
}

impl Machine {
    /// Reads what /proc says about this machine; `data_dir` picks the mount.
    pub fn probe(data_dir: &std::path::Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let mut dir = data_dir.to_path_buf();
        while !dir.exists() {
            if !dir.pop() {
                break;
            }
        }
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let filesystem = read("/proc/mounts")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && dir.starts_with(f[1]))
                    .then(|| (f[1].len(), format!("{} ({})", f[2], f[0])))
            })
            .max()
            .map(|(_, s)| s)
            .unwrap_or_default();
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            filesystem,
        }
    }
}

/// The cells of one (workload, backend) over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Row label.
    pub workload: String,
    /// Backend.
    pub backend: String,
    /// Median ops/s over the repetitions.
    pub ops_per_sec: f64,
    /// (max − min) / median of ops/s, percent; `None` with one repetition.
    pub spread_pct: Option<f64>,
    /// The repetition with the median ops/s (its other metrics are shown).
    pub median: CellResult,
}

/// Groups results by (workload, backend) in first-seen order.
pub fn summarize(results: &[CellResult]) -> Vec<Summary> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&CellResult>> = BTreeMap::new();
    for r in results {
        let k = (r.workload.clone(), r.backend.clone());
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    order
        .into_iter()
        .filter_map(|k| {
            let mut cells = groups.remove(&k)?;
            cells.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            let ok: Vec<&&CellResult> = cells
                .iter()
                .filter(|c| c.error.is_none() && c.na.is_none())
                .collect();
            let median = if ok.is_empty() {
                (*cells[cells.len() / 2]).clone()
            } else {
                (**ok[ok.len() / 2]).clone()
            };
            let spread_pct = (ok.len() > 1 && median.ops_per_sec > 0.0).then(|| {
                let lo = ok.first().map_or(0.0, |c| c.ops_per_sec);
                let hi = ok.last().map_or(0.0, |c| c.ops_per_sec);
                (hi - lo) / median.ops_per_sec * 100.0
            });
            Some(Summary {
                workload: k.0,
                backend: k.1,
                ops_per_sec: median.ops_per_sec,
                spread_pct,
                median,
            })
        })
        .collect()
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

fn bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{:.1} MiB", b as f64 / 1048576.0),
        None => "–".into(),
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// Workload labels in first-seen order.
fn workloads(sums: &[Summary]) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    for s in sums {
        if !w.contains(&s.workload) {
            w.push(s.workload.clone());
        }
    }
    w
}

fn find<'a>(sums: &'a [Summary], workload: &str, backend: &str) -> Option<&'a Summary> {
    sums.iter()
        .find(|s| s.workload == workload && s.backend == backend)
}

/// The markdown report: run facts, configuration, summary, details.
pub fn markdown(info: &RunInfo, sums: &[Summary]) -> String {
    let mut md = String::new();
    let m = &info.machine;
    let _ = writeln!(md, "- Command: `{}`", info.command);
    if info.done.0 < info.done.1 {
        let _ = writeln!(
            md,
            "- **Partial run: {} of {} cells measured** (continue it with `--resume`)",
            info.done.0, info.done.1
        );
    }
    let commits: Vec<String> = info.commits.iter().map(|c| format!("`{c}`")).collect();
    let dates = match info.sessions.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} to {last} ({} invocations)", info.sessions.len()),
    };
    let _ = writeln!(
        md,
        "- N = {} keys (16-byte keys, 100-byte values), {} ops per read/YCSB cell, {} repetition(s); commit {}, {}",
        info.n,
        info.reads,
        info.reps,
        commits.join(", "),
        dates
    );
    if info.commits.len() > 1 {
        let _ = writeln!(
            md,
            "- **Warning: the cells were measured at {} different commits** ({}): the run was resumed on changed code; `results.json` has each cell's commit",
            info.commits.len(),
            commits.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "- Machine: {} × {}, {:.1} GiB RAM, Linux {}, data on {}",
        m.cpus,
        m.cpu,
        m.memory as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.filesystem
    );
    let _ = writeln!(
        md,
        "- Load average (1/5/15 min) at the start: {}; at the end: {}{}",
        info.load.0,
        info.load.1,
        if info.sessions.len() > 1 {
            " (of the last invocation; `results.json` has the load after each cell)"
        } else {
            ""
        }
    );
    if let (Some(r1), Some(r16)) = (
        find(sums, "rawsync/1", "disk"),
        find(sums, "rawsync/16", "disk"),
    ) {
        let _ = writeln!(
            md,
            "- Raw disk (116-byte pwrite + fdatasync, preallocated file): {} syncs/s at 1 thread (p50 {} µs), {} at 16 threads",
            rate(r1.ops_per_sec),
            opt(r1.median.p50_us, 0),
            rate(r16.ops_per_sec)
        );
    }
    md.push_str("\n### Throughput (ops/s; × = ratio to RocksDB)\n\n");
    let backends: Vec<&str> = info.backends.iter().map(|k| k.name()).collect();
    let _ = writeln!(md, "| workload | {} |", backends.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(backends.len()));
    for w in workloads(sums) {
        if w.starts_with("rawsync") || w == "compact" {
            continue;
        }
        let base = find(sums, &w, "rocksdb")
            .filter(|s| s.median.error.is_none() && s.median.na.is_none())
            .map(|s| s.ops_per_sec);
        let mut row = format!("| {w} |");
        for b in &backends {
            let cell = match find(sums, &w, b) {
                None => "".into(),
                Some(s) if s.median.na.is_some() => "n/a".into(),
                Some(s) if s.median.error.is_some() => "error".into(),
                Some(s) => {
                    let mut c = rate(s.ops_per_sec);
                    if let Some(sp) = s.spread_pct {
                        let _ = write!(c, " ±{sp:.0}%");
                    }
                    if let Some(base) = base.filter(|b| *b > 0.0) {
                        let _ = write!(c, " ({:.2}×)", s.ops_per_sec / base);
                    }
                    c
                }
            };
            let _ = write!(row, " {cell} |");
        }
        let _ = writeln!(md, "{row}");
    }
    md.push_str("\n### Details (the median repetition of each cell)\n\n");
    md.push_str("Latency in µs (per batch for `batch`); CPU is all threads of the process per op; RSS is the sampled peak of anonymous memory; disk is after background work went quiet; WA = bytes the process sent to storage / logical bytes written; quiet = seconds from the last write until the files stopped changing.\n\n");
    md.push_str("| workload | backend | ops/s | p50 | p99 | p99.9 | CPU µs/op | peak anon RSS | logical | disk | disk after compact | compact s | WA | quiet s | note |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for w in workloads(sums) {
        for s in sums.iter().filter(|s| s.workload == w) {
            let r = &s.median;
            if let Some(na) = &r.na {
                let _ = writeln!(
                    md,
                    "| {w} | {} | n/a | | | | | | | | | | | | {na} |",
                    s.backend
                );
                continue;
            }
            if let Some(e) = &r.error {
                let _ = writeln!(
                    md,
                    "| {w} | {} | error | | | | | | | | | | | | {} |",
                    s.backend,
                    e.replace('|', "/")
                );
                continue;
            }
            let _ = writeln!(
                md,
                "| {w} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.backend,
                rate(s.ops_per_sec),
                opt(r.p50_us, 1),
                opt(r.p99_us, 1),
                opt(r.p999_us, 1),
                opt(r.cpu_us_per_op, 2),
                bytes(r.peak_rss_anon),
                bytes(r.logical_bytes),
                bytes(r.disk_bytes),
                bytes(r.disk_bytes_after_compact),
                opt(r.compact_secs, 1),
                opt(r.write_amp, 2),
                opt(r.quiet_secs, 1),
                r.note.as_deref().unwrap_or("").replace('|', "/"),
            );
        }
    }
    md.push_str("\n### Configuration (pinned; the same budgets for every backend)\n\n");
    for k in &info.backends {
        let _ = writeln!(
            md,
            "- **{}**: {}",
            k.name(),
            settings(*k, &info.config)
                .iter()
                .map(|(a, b)| format!("{a} = {b}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    md
}

/// The JSON report. `records`: how each cell was run (commit, invocation,
/// wall time, load), as in the journal minus the fingerprint.
pub fn json(
    info: &RunInfo,
    results: &[CellResult],
    sums: &[Summary],
    records: &[CellRecord],
) -> String {
    #[derive(Serialize)]
    struct Run<'a> {
        rep: u32,
        backend: &'a str,
        workload: &'a str,
        commit: &'a str,
        session: &'a str,
        wall_secs: f64,
        load: &'a str,
    }
    #[derive(Serialize)]
    struct Report<'a> {
        run: &'a RunInfo,
        settings: BTreeMap<&'static str, Vec<(&'static str, String)>>,
        summary: &'a [Summary],
        cells: &'a [CellResult],
        runs: Vec<Run<'a>>,
    }
    let runs = records
        .iter()
        .map(|r| Run {
            rep: r.rep,
            backend: &r.result.backend,
            workload: &r.result.workload,
            commit: &r.commit,
            session: &r.session,
            wall_secs: r.wall_secs,
            load: &r.load,
        })
        .collect();
    let settings = info
        .backends
        .iter()
        .map(|k| (k.name(), settings(*k, &info.config)))
        .collect();
    serde_json::to_string_pretty(&Report {
        run: info,
        settings,
        summary: sums,
        cells: results,
        runs,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal grouped bar chart: per workload, each backend's ops/s as a
/// ratio to RocksDB on a log₂ axis from 1/16× to 16× (bars start at 1×).
pub fn svg(info: &RunInfo, sums: &[Summary]) -> String {
    let rows: Vec<String> = workloads(sums)
        .into_iter()
        .filter(|w| !w.starts_with("rawsync") && w != "compact")
        .collect();
    let backends: Vec<&str> = info.backends.iter().map(|k| k.name()).collect();
    let (left, plot_w, bar_h, gap, top) = (190.0, 640.0, 5.0, 8.0, 60.0);
    let group_h = bar_h * backends.len() as f64 + gap;
    let height = top + group_h * rows.len() as f64 + 40.0;
    let width = left + plot_w + 30.0;
    let x = |ratio: f64| left + (ratio.log2().clamp(-4.0, 4.0) + 4.0) / 8.0 * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="13">ops/s relative to RocksDB (log scale), N = {}</text>"#,
        info.n
    );
    for (i, b) in backends.iter().enumerate() {
        let lx = left + i as f64 * 100.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{}</text>"#,
            COLORS[i % COLORS.len()],
            lx + 14.0,
            esc(b)
        );
    }
    for e in -4..=4 {
        let gx = x(2f64.powi(e));
        let label = if e >= 0 {
            format!("{}×", 1 << e)
        } else {
            format!("1/{}", 1 << -e)
        };
        let _ = writeln!(
            s,
            r##"<line x1="{gx}" y1="{}" x2="{gx}" y2="{}" stroke="{}" stroke-width="{}"/><text x="{gx}" y="{}" text-anchor="middle" fill="#555">{label}</text>"##,
            top - 5.0,
            height - 35.0,
            if e == 0 { "#000" } else { "#ddd" },
            if e == 0 { 1.2 } else { 0.6 },
            height - 22.0
        );
    }
    for (r, w) in rows.iter().enumerate() {
        let gy = top + r as f64 * group_h;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            gy + group_h / 2.0,
            esc(w)
        );
        let base = find(sums, w, "rocksdb")
            .filter(|s| s.median.error.is_none() && s.median.na.is_none() && s.ops_per_sec > 0.0)
            .map(|s| s.ops_per_sec);
        for (i, b) in backends.iter().enumerate() {
            let Some(sm) = find(sums, w, b) else { continue };
            let (Some(base), true) = (
                base,
                sm.median.error.is_none() && sm.median.na.is_none() && sm.ops_per_sec > 0.0,
            ) else {
                continue;
            };
            let ratio = sm.ops_per_sec / base;
            let (x0, x1) = (x(1.0), x(ratio));
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} {}: {:.0} ops/s ({:.2}×)</title></rect>"#,
                x0.min(x1),
                gy + i as f64 * bar_h,
                (x1 - x0).abs().max(0.5),
                bar_h - 0.5,
                COLORS[i % COLORS.len()],
                esc(w),
                esc(b),
                sm.ops_per_sec,
                ratio
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(backend: &str, workload: &str, rep: u32, ops_per_sec: f64) -> CellResult {
        CellResult {
            backend: backend.into(),
            workload: workload.into(),
            rep,
            ops: 100,
            secs: 1.0,
            ops_per_sec,
            ..CellResult::default()
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            command: "compare".into(),
            n: 10,
            reads: 2,
            reps: 3,
            machine: Machine {
                cpu: "cpu".into(),
                cpus: 2,
                memory: 1 << 30,
                kernel: "k".into(),
                filesystem: "ext4".into(),
            },
            config: BenchConfig::default(),
            sessions: vec!["2026-01-01 10:00 UTC".into()],
            commits: vec!["abc1234".into()],
            done: (4, 4),
            backends: vec![Kind::Lsm, Kind::RocksDb],
            load: (String::new(), String::new()),
        }
    }

    #[test]
    fn summary_takes_the_median_and_the_spread() {
        let results = [
            cell("lsm", "fillseq", 0, 90.0),
            cell("lsm", "fillseq", 1, 110.0),
            cell("lsm", "fillseq", 2, 100.0),
        ];
        let sums = summarize(&results);
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].ops_per_sec, 100.0);
        assert_eq!(sums[0].median.rep, 2);
        assert_eq!(sums[0].spread_pct, Some(20.0));
    }

    #[test]
    fn markdown_gives_ratios_to_rocksdb_and_marks_na() {
        let mut na = cell("lsm", "readrandom (compacted)", 0, 0.0);
        na.na = Some("no compaction".into());
        let results = [
            cell("lsm", "fillseq", 0, 150.0),
            cell("rocksdb", "fillseq", 0, 100.0),
            na,
            cell("rocksdb", "readrandom (compacted)", 0, 50.0),
        ];
        let sums = summarize(&results);
        let md = markdown(&info(), &sums);
        assert!(
            md.contains("| fillseq | 150.0 (1.50×) | 100.0 (1.00×) |"),
            "{md}"
        );
        assert!(
            md.contains("| readrandom (compacted) | n/a | 50.0 (1.00×) |"),
            "{md}"
        );
        assert!(
            md.contains("commit `abc1234`, 2026-01-01 10:00 UTC"),
            "{md}"
        );
        assert!(!md.contains("Warning") && !md.contains("Partial"), "{md}");
        let svg = svg(&info(), &sums);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("fillseq"));
    }

    #[test]
    fn markdown_warns_of_several_commits_and_a_partial_run() {
        let mut info = info();
        info.commits.push("def5678-dirty".into());
        info.sessions.push("2026-01-01 13:00 UTC".into());
        info.done = (3, 4);
        let sums = summarize(&[cell("lsm", "fillseq", 0, 150.0)]);
        let md = markdown(&info, &sums);
        assert!(md.contains("Partial run: 3 of 4 cells"), "{md}");
        assert!(
            md.contains("commit `abc1234`, `def5678-dirty`, 2026-01-01 10:00 UTC to 2026-01-01 13:00 UTC (2 invocations)"),
            "{md}"
        );
        assert!(
            md.contains("Warning: the cells were measured at 2 different commits"),
            "{md}"
        );
    }
}
