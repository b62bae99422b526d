//! One cell: a backend × workload pair, run in a process of its own. The
//! parent passes a [`CellSpec`] as JSON; the cell prints one [`CellResult`]
//! line prefixed by [`RESULT_PREFIX`] on stdout.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backends::Kind;
use crate::config::BenchConfig;
use crate::workloads::{self, Workload};

/// Prefix of the result line a cell prints on stdout.
pub const RESULT_PREFIX: &str = "@@cell ";

/// What a cell runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSpec {
    /// The backend; `None` for the raw disk measurement.
    pub backend: Option<Kind>,
    /// The workload.
    pub workload: Workload,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Read the compacted copy of the filled directory.
    pub compacted: bool,
    /// Keys in the data set (N).
    pub n: u64,
    /// Operations of the read and YCSB workloads.
    pub reads: u64,
    /// Cap on a timed phase, seconds.
    pub max_secs: f64,
    /// Cap on waiting for background work to stop, seconds.
    pub quiet_cap_secs: f64,
    /// The cell's own directory (created by the cell, removed by the parent).
    pub dir: PathBuf,
    /// The backend's filled directory (made by `fillrandom` with `keep_base`).
    pub base: PathBuf,
    /// The compacted copy of `base` (made by the `compact` cell).
    pub base_compacted: PathBuf,
    /// `fillrandom` only: keep the filled directory as `base`.
    pub keep_base: bool,
    /// Repetition number.
    pub rep: u32,
    /// The pinned configuration.
    pub config: BenchConfig,
}

impl CellSpec {
    /// The row label: workload, `(compacted)`, `/tasks` where it varies.
    pub fn label(&self) -> String {
        workloads::label(self.workload, self.tasks, self.compacted)
    }
}

/// What a cell measured. `None` means not measured or not applicable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CellResult {
    /// Backend name (`disk` for the raw disk rate).
    pub backend: String,
    /// Row label.
    pub workload: String,
    /// Repetition number.
    pub rep: u32,
    /// Operations timed.
    pub ops: u64,
    /// Seconds of the timed phase.
    pub secs: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Median latency of one operation (a batch for `batch`), µs.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<f64>,
    /// 99.9th percentile latency, µs.
    pub p999_us: Option<f64>,
    /// CPU time of the whole process (all threads) per operation, µs.
    pub cpu_us_per_op: Option<f64>,
    /// Peak anonymous resident memory of the process, bytes (sampled).
    pub peak_rss_anon: Option<u64>,
    /// Peak resident memory including file-backed pages (`VmHWM`), bytes.
    pub vm_hwm: Option<u64>,
    /// Live user bytes (keys + values) at the end.
    pub logical_bytes: Option<u64>,
    /// Bytes on disk at the end (after background work went quiet).
    pub disk_bytes: Option<u64>,
    /// Bytes on disk after a full `compact`.
    pub disk_bytes_after_compact: Option<u64>,
    /// Seconds the full `compact` took.
    pub compact_secs: Option<f64>,
    /// Seconds from the end of the writes until the files stopped changing.
    pub quiet_secs: Option<f64>,
    /// Seconds to open (reopen) the backend before the timed phase.
    pub open_secs: Option<f64>,
    /// Seconds to set the cell up before opening: copying (linking) the
    /// filled directory, or the memory backend's in-process fill.
    pub setup_secs: Option<f64>,
    /// Bytes of the filled directory hard-linked into the cell's (files the
    /// backend never changes in place) and copied (the rest).
    pub base_bytes_linked_copied: Option<(u64, u64)>,
    /// Bytes the process sent to storage / logical bytes written.
    pub write_amp: Option<f64>,
    /// Anything worth knowing about this cell.
    pub note: Option<String>,
    /// Why the cell does not apply to this backend.
    pub na: Option<String>,
    /// The error that stopped the cell.
    pub error: Option<String>,
}

/// Runs the cell described by the JSON `spec` and prints its result line.
pub fn main(spec: &str) -> i32 {
    let spec: CellSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bad cell spec: {e}");
            return 2;
        }
    };
    let mut result = match workloads::run(&spec) {
        Ok(r) => r,
        Err(e) => CellResult {
            error: Some(e.to_string()),
            ..CellResult::default()
        },
    };
    result.backend = spec.backend.map_or("disk", Kind::name).to_string();
    result.workload = spec.label();
    result.rep = spec.rep;
    match serde_json::to_string(&result) {
        Ok(line) => {
            println!("{RESULT_PREFIX}{line}");
            0
        }
        Err(e) => {
            eprintln!("cannot encode the result: {e}");
            2
        }
    }
}
