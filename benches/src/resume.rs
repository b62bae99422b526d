//! Resumable runs: every finished cell is appended to `OUT/cells.jsonl` (one
//! JSON line, flushed and synced), tagged with the run's [`Fingerprint`], its
//! repetition and the engine commit. `--resume` reads the file back, refuses
//! it if it belongs to another run, and skips the cells it holds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backends::Kind;
use crate::cell::CellResult;
use crate::config::BenchConfig;

/// Name of the cell journal in the results directory.
pub const JOURNAL: &str = "cells.jsonl";
/// Name of the run's fingerprint in the data directory (its bases were made
/// by that run).
pub const DATA_FINGERPRINT: &str = "run.json";

/// What makes two invocations the same run: a cell measured under one is
/// comparable with a cell measured under the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
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
    /// The `--only` filter.
    pub only: Vec<String>,
    /// The pinned configuration.
    pub config: BenchConfig,
}

impl Fingerprint {
    /// The fields that differ from `other`, as `name: this vs other`.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name}: {a} vs {b}"));
            }
        };
        check("n", self.n.to_string(), other.n.to_string());
        check("reads", self.reads.to_string(), other.reads.to_string());
        check("reps", self.reps.to_string(), other.reps.to_string());
        check(
            "max-secs",
            self.max_secs.to_string(),
            other.max_secs.to_string(),
        );
        check(
            "quiet cap",
            self.quiet_cap_secs.to_string(),
            other.quiet_cap_secs.to_string(),
        );
        let names = |k: &[Kind]| k.iter().map(|k| k.name()).collect::<Vec<_>>().join(",");
        check("backends", names(&self.backends), names(&other.backends));
        check("only", self.only.join(","), other.only.join(","));
        check(
            "config",
            format!("{:?}", self.config),
            format!("{:?}", other.config),
        );
        d
    }
}

/// One line of the journal: a finished cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRecord {
    /// The run it belongs to.
    pub fingerprint: Fingerprint,
    /// Repetition (also in `result.rep`).
    pub rep: u32,
    /// The engine commit the cell measured (`git rev-parse --short HEAD`,
    /// `-dirty` with uncommitted changes).
    pub commit: String,
    /// When the invocation that ran it started (UTC).
    pub session: String,
    /// Wall time of the whole cell as the parent saw it (setup, timed
    /// phase, waits, the compaction after), seconds.
    pub wall_secs: f64,
    /// /proc/loadavg (1, 5, 15 min) when the cell ended.
    pub load: String,
    /// What the cell measured.
    pub result: CellResult,
}

/// A cell's identity within a run: (repetition, backend, label).
pub type CellKey = (u32, String, String);

impl CellRecord {
    /// The cell it records.
    pub fn key(&self) -> CellKey {
        (
            self.rep,
            self.result.backend.clone(),
            self.result.workload.clone(),
        )
    }
}

/// The records of a journal's text that belong to `fp`, the latest per cell
/// in file order, and how many lines could not be read (a line cut short by
/// a killed process).
///
/// # Errors
/// A record of another run: the message names the differences.
pub fn parse(text: &str, fp: &Fingerprint) -> Result<(Vec<CellRecord>, usize), String> {
    let mut records: Vec<CellRecord> = Vec::new();
    let mut at: HashMap<CellKey, usize> = HashMap::new();
    let mut unreadable = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: CellRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let diff = rec.fingerprint.differences(fp);
        if !diff.is_empty() {
            return Err(format!(
                "line {} was measured by another run ({}; recorded vs this invocation)",
                i + 1,
                diff.join("; ")
            ));
        }
        match at.get(&rec.key()) {
            Some(&j) => records[j] = rec,
            None => {
                at.insert(rec.key(), records.len());
                records.push(rec);
            }
        }
    }
    Ok((records, unreadable))
}

/// Reads the journal at `path` (none yet: no records).
///
/// # Errors
/// I/O errors other than a missing file; a record of another run.
pub fn load(path: &Path, fp: &Fingerprint) -> Result<Vec<CellRecord>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let (records, unreadable) = parse(&text, fp).map_err(|e| format!("{}: {e}", path.display()))?;
    if unreadable > 0 {
        eprintln!(
            "{}: {unreadable} unreadable line(s) skipped (a cell cut short)",
            path.display()
        );
    }
    Ok(records)
}

/// The journal, open for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (creates) the journal at `path` for appending. A last line cut
    /// short is ended first, so the next record starts on a line of its own.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `rec` as one line and makes it durable.
    ///
    /// # Errors
    /// I/O and encoding errors.
    pub fn append(&mut self, rec: &CellRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_string(rec).map_err(std::io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.file.sync_data()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fingerprint() -> Fingerprint {
        Fingerprint {
            n: 1000,
            reads: 200,
            reps: 3,
            max_secs: 30.0,
            quiet_cap_secs: 120.0,
            backends: vec![Kind::Lsm, Kind::Memory],
            only: Vec::new(),
            config: BenchConfig::default(),
        }
    }

    fn record(fp: &Fingerprint, rep: u32, backend: &str, workload: &str, ops: u64) -> String {
        let rec = CellRecord {
            fingerprint: fp.clone(),
            rep,
            commit: "abc".into(),
            session: "s".into(),
            wall_secs: 1.0,
            load: String::new(),
            result: CellResult {
                backend: backend.into(),
                workload: workload.into(),
                rep,
                ops,
                ..CellResult::default()
            },
        };
        serde_json::to_string(&rec).unwrap_or_default()
    }

    #[test]
    fn parse_keeps_the_latest_record_per_cell_and_skips_a_torn_line() {
        let fp = fingerprint();
        let text = format!(
            "{}\n{}\n{}\n{}",
            record(&fp, 0, "lsm", "fillseq", 1),
            record(&fp, 0, "memory", "fillseq", 2),
            record(&fp, 0, "lsm", "fillseq", 3),
            &record(&fp, 1, "lsm", "fillseq", 4)[..40],
        );
        let (records, unreadable) = parse(&text, &fp).expect("same run");
        assert_eq!(unreadable, 1);
        let got: Vec<(u32, &str, u64)> = records
            .iter()
            .map(|r| (r.rep, r.result.backend.as_str(), r.result.ops))
            .collect();
        assert_eq!(got, [(0, "lsm", 3), (0, "memory", 2)]);
    }

    #[test]
    fn parse_refuses_another_runs_records() {
        let fp = fingerprint();
        let mut other = fp.clone();
        other.n = 5000;
        other.backends = vec![Kind::Lsm];
        let text = format!(
            "{}\n{}\n",
            record(&fp, 0, "lsm", "fillseq", 1),
            record(&other, 0, "lsm", "fillrandom", 1)
        );
        let err = parse(&text, &fp).expect_err("another run");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("n: 5000 vs 1000"), "{err}");
        assert!(err.contains("backends: lsm vs lsm,memory"), "{err}");
        assert!(!err.contains("reads"), "{err}");
        // Each field counts.
        for change in [
            |f: &mut Fingerprint| f.reads += 1,
            |f: &mut Fingerprint| f.reps += 1,
            |f: &mut Fingerprint| f.max_secs += 1.0,
            |f: &mut Fingerprint| f.quiet_cap_secs += 1.0,
            |f: &mut Fingerprint| f.only.push("fill".into()),
            |f: &mut Fingerprint| f.config.block_cache *= 2,
            |f: &mut Fingerprint| f.backends.reverse(),
        ] {
            let mut other = fp.clone();
            change(&mut other);
            assert_eq!(other.differences(&fp).len(), 1, "{other:?}");
            assert!(parse(&record(&other, 0, "lsm", "fillseq", 1), &fp).is_err());
        }
    }

    #[test]
    fn the_journal_appends_whole_lines_after_a_torn_one() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("kb-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(JOURNAL);
        let fp = fingerprint();
        let first = record(&fp, 0, "lsm", "fillseq", 1);
        // A session killed while writing its second record.
        std::fs::write(&path, format!("{first}\n{{\"fingerprint\": {{\"n\""))?;
        let rec: CellRecord = serde_json::from_str(&record(&fp, 0, "memory", "fillseq", 2))
            .map_err(std::io::Error::other)?;
        let mut j = Journal::open(&path)?;
        j.append(&rec)?;
        drop(j);
        let loaded = load(&path, &fp).map_err(std::io::Error::other)?;
        let got: Vec<&str> = loaded.iter().map(|r| r.result.backend.as_str()).collect();
        assert_eq!(got, ["lsm", "memory"]);
        // Missing: no records.
        assert!(load(&dir.join("none"), &fp)
            .map_err(std::io::Error::other)?
            .is_empty());
        std::fs::remove_dir_all(&dir)
    }
}
