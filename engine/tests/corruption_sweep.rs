//! Corruption sweep (issue 7, part 1): a small database, built
//! deterministically with a recorded history, is damaged one byte at a time
//! — every byte of every file gets one bit flipped, is set to `0x00`, and is
//! set to `0xFF`; the WAL files are also cut at every offset, and the
//! manifest at every offset inside its last record. Each damaged copy is
//! opened, every partition scanned and every key ever written read back.
//!
//! Allowed: `Error::Corruption` naming the damaged file (the store maps it
//! to `corruption: <file> at …`), or reads that all equal the model after
//! one and the same prefix of the history. Never: a wrong value, a
//! resurrected key, a panic (on any thread), an allocation sized by a
//! corrupt length (this binary's allocator records every request above
//! [`ALLOC_LIMIT`]).
//!
//! The database is tiny (SSTable blocks of 128 bytes, a few short files) so
//! that CI runs every byte of every file. `CORRUPTION_STRIDE=n` visits only
//! every n-th byte (a quicker local run); `CORRUPTION_VERBOSE=1` prints the
//! files and per-test counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use kalamdb_lsm::fs::{Fs, SimFs};
use kalamdb_lsm::wal::reader::read_log;
use kalamdb_lsm::{Db, Error, Options, WriteOp};

// ---------------------------------------------------------------------------
// Guards: allocations sized by a corrupt length, panics on any thread.

/// Largest single allocation the engine may request while reading this
/// database (its files total a few KiB; any request this large was sized by
/// a damaged length field).
const ALLOC_LIMIT: usize = 64 << 20;

/// The largest request above `ALLOC_LIMIT` seen so far (0: none).
static OVERSIZED: AtomicUsize = AtomicUsize::new(0);

struct LimitAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the bookkeeping touches only an atomic.
unsafe impl GlobalAlloc for LimitAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    if size > ALLOC_LIMIT {
        OVERSIZED.fetch_max(size, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: LimitAlloc = LimitAlloc;

/// Panics on any thread (the engine's background threads included).
static PANICS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

#[test]
fn the_allocation_guard_sees_large_requests() {
    // The guard must work, or the sweep proves nothing about allocations.
    let before = OVERSIZED.load(Ordering::Relaxed);
    let v: Vec<u8> = Vec::with_capacity(ALLOC_LIMIT + 1);
    drop(std::hint::black_box(v));
    assert!(OVERSIZED.load(Ordering::Relaxed) > ALLOC_LIMIT);
    OVERSIZED.store(before, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// The history and its model.

const DIR: &str = "/db";

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;
/// Partition name → its contents.
type State = BTreeMap<String, Rows>;

enum Step {
    Create(&'static str),
    Drop(&'static str),
    Put(&'static str, String, String),
    Delete(&'static str, String),
    Flush,
    FlushPartition(&'static str),
    Compact(&'static str),
    Reopen,
}

fn key(i: u32) -> String {
    format!("k{i:02}")
}

fn value(i: u32, round: u32) -> String {
    format!(
        "v{i:02}.{round}{}",
        "x".repeat((i as usize * 7 + round as usize) % 9)
    )
}

/// The history: partitions created, dropped and re-created; puts,
/// overwrites and deletes spread over flushed tables (level 0 and, after a
/// compaction, level 1), memtables flushed in one partition while another's
/// writes are interleaved in the same WAL, and writes left only in the WAL
/// across a reopen (two WAL files).
fn history() -> Vec<Step> {
    use Step::*;
    let mut h = vec![Create("a"), Create("b"), Create("c")];
    for i in 0..12 {
        h.push(Put("a", key(i), value(i, 0)));
        if i % 2 == 0 {
            h.push(Put("b", key(i), value(i, 0)));
        }
        if i % 4 == 1 {
            h.push(Put("c", key(i), value(i, 0)));
        }
    }
    h.push(Delete("a", key(3)));
    h.push(Put("a", key(5), value(5, 1)));
    h.push(Flush); // level-0 tables in a, b, c
    for i in (0..12).step_by(3) {
        h.push(Put("a", key(i), value(i, 2)));
        h.push(Put("b", key(i + 1), value(i + 1, 2)));
    }
    h.push(Delete("a", key(7)));
    h.push(Delete("b", key(4)));
    h.push(FlushPartition("a")); // b's writes stay in the WAL
    h.push(Compact("a")); // a: level 1, two tables
    h.push(Put("a", key(2), value(2, 3)));
    h.push(Delete("a", key(4))); // a tombstone in level 0 over level 1
    h.push(Put("a", key(13), value(13, 3)));
    h.push(FlushPartition("a")); // a: level 0 over level 1
    h.push(Drop("c"));
    h.push(Put("b", key(20), value(20, 3)));
    h.push(Create("c")); // same name, new partition: must come back empty
    h.push(Put("c", key(30), value(30, 3)));
    h.push(Reopen); // the WAL written so far is kept; a new one starts
    h.push(Put("a", key(3), value(3, 4))); // over a tombstone in a table
    h.push(Delete("a", key(0))); // a key held by a level-1 table
    h.push(Put("b", key(2), value(2, 4)));
    h.push(Delete("c", key(30)));
    h.push(Create("d"));
    h.push(Put("d", key(1), value(1, 4)));
    h.push(Put("a", key(5), value(5, 5)));
    h
}

/// The model after each prefix of `history` (`states[0]` is empty).
fn states(history: &[Step]) -> Vec<State> {
    let mut s = State::new();
    let mut out = vec![s.clone()];
    for step in history {
        match step {
            Step::Create(p) => {
                s.insert(p.to_string(), Rows::new());
            }
            Step::Drop(p) => {
                s.remove(*p);
            }
            Step::Put(p, k, v) => {
                s.get_mut(*p)
                    .expect("live")
                    .insert(k.clone().into_bytes(), v.clone().into_bytes());
            }
            Step::Delete(p, k) => {
                s.get_mut(*p).expect("live").remove(k.as_bytes());
            }
            Step::Flush | Step::FlushPartition(_) | Step::Compact(_) | Step::Reopen => {}
        }
        out.push(s.clone());
    }
    out
}

fn options(sim: &SimFs) -> Options {
    Options {
        fs: Arc::new(sim.clone()),
        memtable_size: 1 << 20,
        block_size: 128,
        bloom_bits_per_key: 10,
        target_file_size: 320,
        // Rotations: files that start with a previous-WAL record.
        wal_file_size: 512,
        // Each WAL file ends in preallocated zeros, which are swept too.
        wal_preallocate: 768,
        // Compaction runs only when the history asks; reads after damage
        // see exactly the files on disk.
        disable_auto_compactions: true,
        block_cache_size: 1 << 16,
        ..Options::default()
    }
}

fn run(db: &Db, step: &Step) {
    let write = |p: &str, k: &str, v: Option<&str>| {
        db.write(
            [WriteOp {
                partition: p,
                key: k.as_bytes().to_vec(),
                value: v.map(|v| v.as_bytes().to_vec()),
            }],
            None,
        )
        .expect("write");
    };
    match step {
        Step::Create(p) => db.create_partition(p).expect("create"),
        Step::Drop(p) => db.drop_partition(p).expect("drop"),
        Step::Put(p, k, v) => write(p, k, Some(v)),
        Step::Delete(p, k) => write(p, k, None),
        Step::Flush => db.flush().expect("flush"),
        Step::FlushPartition(p) => db.flush_partition(p).expect("flush partition"),
        Step::Compact(p) => db.compact(p).expect("compact"),
        Step::Reopen => unreachable!("handled by the caller"),
    }
}

/// Every file of the database: path → bytes.
type Files = BTreeMap<PathBuf, Vec<u8>>;

fn snapshot(sim: &SimFs, dir: &Path, files: &mut Files, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_path_buf());
    let mut names = sim.read_dir(dir).expect("read_dir");
    names.sort();
    for name in names {
        let path = dir.join(name);
        match sim.contents(&path) {
            Some(bytes) => {
                files.insert(path, bytes);
            }
            None => snapshot(sim, &path, files, dirs),
        }
    }
}

struct Fixture {
    files: Files,
    dirs: Vec<PathBuf>,
    states: Vec<State>,
    /// Every partition name and every key the history ever used.
    names: Vec<String>,
    keys: Vec<Vec<u8>>,
}

fn build() -> Fixture {
    let history = history();
    let sim = SimFs::new();
    let mut db = Some(Db::open(DIR, options(&sim)).expect("open"));
    for step in &history {
        if let Step::Reopen = step {
            drop(db.take());
            db = Some(Db::open(DIR, options(&sim)).expect("reopen"));
        } else {
            run(db.as_ref().expect("open"), step);
        }
    }
    drop(db);
    let (mut files, mut dirs) = (Files::new(), Vec::new());
    snapshot(&sim, Path::new(DIR), &mut files, &mut dirs);
    let mut names: Vec<String> = Vec::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for step in &history {
        match step {
            Step::Create(p) => names.push(p.to_string()),
            Step::Put(_, k, _) | Step::Delete(_, k) => keys.push(k.clone().into_bytes()),
            _ => {}
        }
    }
    names.sort();
    names.dedup();
    keys.sort();
    keys.dedup();
    Fixture {
        files,
        dirs,
        states: states(&history),
        names,
        keys,
    }
}

// ---------------------------------------------------------------------------
// Reading a damaged copy back and judging it.

/// What one read returned (errors apart).
#[derive(Clone, PartialEq, Eq)]
enum Outcome {
    Partitions(Vec<String>),
    NoPartition,
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
    Value(Option<Vec<u8>>),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Outcome::Partitions(names) => write!(f, "partitions {names:?}"),
            Outcome::NoPartition => write!(f, "no such partition"),
            Outcome::Rows(rows) => {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|(k, v)| format!("{}={}", text(k), text(v)))
                    .collect();
                write!(f, "rows [{}]", rows.join(" "))
            }
            Outcome::Value(None) => write!(f, "no value"),
            Outcome::Value(Some(v)) => write!(f, "value {}", text(v)),
        }
    }
}

#[derive(Clone)]
enum Read {
    List,
    Scan(String),
    Get(String, Vec<u8>),
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Read::List => write!(f, "list"),
            Read::Scan(p) => write!(f, "scan {p}"),
            Read::Get(p, k) => write!(f, "get {p}/{}", String::from_utf8_lossy(k)),
        }
    }
}

fn expected(state: &State, read: &Read) -> Outcome {
    match read {
        Read::List => Outcome::Partitions(state.keys().cloned().collect()),
        Read::Scan(p) => match state.get(p) {
            None => Outcome::NoPartition,
            Some(rows) => Outcome::Rows(rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        },
        Read::Get(p, k) => match state.get(p) {
            None => Outcome::NoPartition,
            Some(rows) => Outcome::Value(rows.get(k).cloned()),
        },
    }
}

fn perform(db: &Db, read: &Read) -> Result<Outcome, Error> {
    let absent = |e: Error| match e {
        Error::PartitionNotFound(_) => Ok(Outcome::NoPartition),
        e => Err(e),
    };
    match read {
        Read::List => Ok(Outcome::Partitions(db.list_partitions())),
        Read::Scan(p) => match db.scan(p, None, None) {
            Err(e) => absent(e),
            Ok(iter) => iter
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Vec<_>, Error>>()
                .map(Outcome::Rows),
        },
        Read::Get(p, k) => match db.get(p, k) {
            Err(e) => absent(e),
            Ok(v) => Ok(Outcome::Value(v)),
        },
    }
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Open or some read reported corruption of the damaged file.
    Detected,
    /// Everything read equals the state after this many steps.
    Prefix(usize),
}

/// Checks that `e` is a corruption error naming `damaged`.
fn is_corruption_of(e: &Error, damaged: &Path) -> Result<(), String> {
    let named = e.to_string().contains(&damaged.display().to_string());
    match e {
        Error::Corruption { file, .. } if file == damaged && named => Ok(()),
        other => Err(format!(
            "error is not corruption naming {}: {other:?} ({other})",
            damaged.display()
        )),
    }
}

/// Opens a copy of the database with `damaged` replaced by `bytes` (or
/// removed, if `None`) and judges what it reads.
fn check_case(fx: &Fixture, damaged: &Path, bytes: Option<&[u8]>) -> Result<Verdict, String> {
    let sim = SimFs::new();
    for d in &fx.dirs {
        sim.create_dir_all(d).map_err(|e| e.to_string())?;
    }
    for (path, original) in &fx.files {
        let data = if path == damaged {
            match bytes {
                Some(b) => b,
                None => continue,
            }
        } else {
            original.as_slice()
        };
        let mut f = sim.create(path).map_err(|e| e.to_string())?;
        f.append(data).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
    }
    for d in &fx.dirs {
        sim.sync_dir(d).map_err(|e| e.to_string())?;
    }
    let panics = PANICS.load(Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(|| judge(fx, &sim, damaged)));
    let verdict = match result {
        Ok(v) => v,
        Err(_) => Err("panicked".to_string()),
    };
    if PANICS.load(Ordering::SeqCst) != panics {
        return Err("a thread panicked".into());
    }
    let oversized = OVERSIZED.swap(0, Ordering::Relaxed);
    if oversized != 0 {
        return Err(format!("allocation of {oversized} bytes"));
    }
    verdict
}

fn judge(fx: &Fixture, sim: &SimFs, damaged: &Path) -> Result<Verdict, String> {
    let db = match Db::open(DIR, options(sim)) {
        Ok(db) => db,
        Err(e) => {
            is_corruption_of(&e, damaged).map_err(|why| format!("open: {why}"))?;
            return Ok(Verdict::Detected);
        }
    };
    let mut reads = vec![Read::List];
    for p in &fx.names {
        reads.push(Read::Scan(p.clone()));
        for k in &fx.keys {
            reads.push(Read::Get(p.clone(), k.clone()));
        }
    }
    let mut candidates: Vec<usize> = (0..fx.states.len()).collect();
    let mut detected = false;
    for read in &reads {
        match perform(&db, read) {
            Err(e) => {
                is_corruption_of(&e, damaged).map_err(|why| format!("{read:?}: {why}"))?;
                detected = true;
            }
            Ok(got) => {
                let before = candidates.clone();
                candidates.retain(|&i| expected(&fx.states[i], read) == got);
                if candidates.is_empty() {
                    let last = before.last().copied().unwrap_or(0);
                    return Err(format!(
                        "{read:?} returned {got:?}, which no prefix of the history \
                         consistent with the earlier reads gives (e.g. after {last} \
                         steps: {:?}; candidates were {before:?})",
                        expected(&fx.states[last], read)
                    ));
                }
            }
        }
    }
    drop(db);
    Ok(if detected {
        Verdict::Detected
    } else {
        // The longest consistent prefix (steps that change nothing leave
        // equal states).
        Verdict::Prefix(candidates.last().copied().unwrap_or(0))
    })
}

// ---------------------------------------------------------------------------
// The sweep.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wal,
    Manifest,
    Current,
    Table,
    Other,
}

fn kind_of(path: &Path) -> Kind {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".wal") {
        Kind::Wal
    } else if name.starts_with("MANIFEST-") {
        Kind::Manifest
    } else if name == "CURRENT" {
        Kind::Current
    } else if name.ends_with(".sst") {
        Kind::Table
    } else {
        Kind::Other
    }
}

fn stride() -> usize {
    std::env::var("CORRUPTION_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n >= 1)
        .unwrap_or(1)
}

fn verbose() -> bool {
    std::env::var_os("CORRUPTION_VERBOSE").is_some()
}

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    /// Damage that changed nothing (e.g. setting a zero byte to 0x00).
    unchanged: u64,
    detected: u64,
    /// Reads equal the final state: the damage was harmless (or repaired).
    full: u64,
    /// Reads equal an earlier state (a cut-off tail).
    earlier: u64,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: String, result: Result<Verdict, String>, last: usize) {
        self.cases += 1;
        match result {
            Ok(Verdict::Detected) => self.detected += 1,
            Ok(Verdict::Prefix(n)) if n == last => self.full += 1,
            Ok(Verdict::Prefix(_)) => self.earlier += 1,
            Err(why) => self.failures.push(format!("{what}: {why}")),
        }
    }

    fn finish(self, test: &str) {
        if verbose() || !self.failures.is_empty() {
            eprintln!(
                "{test}: {} cases ({} detected, {} whole state, {} earlier prefix, {} failed; \
                 {} no-op damages skipped)",
                self.cases,
                self.detected,
                self.full,
                self.earlier,
                self.failures.len(),
                self.unchanged
            );
        }
        assert!(self.cases > 0, "{test}: no case ran");
        assert!(
            self.failures.is_empty(),
            "{test}: {} of {} cases failed; first ones:\n{}",
            self.failures.len(),
            self.cases,
            self.failures
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Flips, zeroes and saturates every byte `select(path, offset)` picks.
fn sweep_bytes(test: &str, select: impl Fn(&Path, usize) -> bool) -> Tally {
    count_panics();
    let fx = build();
    let last = fx.states.len() - 1;
    let mut tally = Tally::default();
    let step = stride();
    for (path, original) in &fx.files {
        if verbose() {
            eprintln!("{test}: {} ({} bytes)", path.display(), original.len());
        }
        for at in (0..original.len()).step_by(step) {
            if !select(path, at) {
                continue;
            }
            let b = original[at];
            for (shape, new) in [
                ("flip", b ^ (1 << (at % 8))),
                ("zero", 0x00),
                ("ones", 0xff),
            ] {
                if new == b {
                    tally.unchanged += 1;
                    continue;
                }
                let mut data = original.clone();
                data[at] = new;
                let result = check_case(&fx, path, Some(&data));
                tally.record(
                    format!(
                        "{} byte {at} {shape} ({b:#04x} -> {new:#04x})",
                        path.display()
                    ),
                    result,
                    last,
                );
            }
        }
    }
    tally
}

/// Cuts `path` at every offset from `from(len, bytes)` to its length.
fn sweep_cuts(test: &str, kind: Kind, from: impl Fn(&[u8]) -> usize) -> Tally {
    count_panics();
    let fx = build();
    let last = fx.states.len() - 1;
    let mut tally = Tally::default();
    let step = stride();
    for (path, original) in fx.files.iter().filter(|(p, _)| kind_of(p) == kind) {
        let start = from(original);
        if verbose() {
            eprintln!(
                "{test}: {} ({} bytes, cuts from {start})",
                path.display(),
                original.len()
            );
        }
        for cut in (start..original.len()).step_by(step) {
            let result = check_case(&fx, path, Some(&original[..cut]));
            tally.record(format!("{} cut at {cut}", path.display()), result, last);
        }
    }
    tally
}

#[test]
fn the_fixture_reopens_to_the_final_state_and_stays_small() {
    count_panics();
    let fx = build();
    let kinds: Vec<Kind> = fx.files.keys().map(|p| kind_of(p)).collect();
    for k in [Kind::Wal, Kind::Manifest, Kind::Current, Kind::Table] {
        assert!(kinds.contains(&k), "no {k:?} file: {:?}", fx.files.keys());
    }
    assert!(
        kinds.iter().filter(|k| **k == Kind::Wal).count() >= 2,
        "two WAL files"
    );
    for (path, bytes) in &fx.files {
        assert!(
            bytes.len() <= 32 << 10,
            "{} is {} bytes",
            path.display(),
            bytes.len()
        );
    }
    let last = fx.states.len() - 1;
    // The undamaged copy, and one with the lock file gone, read the final
    // state.
    let (lock, _) = fx
        .files
        .iter()
        .find(|(p, _)| kind_of(p) == Kind::Other)
        .expect("the lock file");
    for removed in [None, Some(lock)] {
        let path = removed.cloned().unwrap_or_else(|| PathBuf::from("/none"));
        assert_eq!(
            check_case(&fx, &path, None),
            Ok(Verdict::Prefix(last)),
            "{removed:?}"
        );
    }
    if verbose() {
        for (path, bytes) in &fx.files {
            eprintln!("{} {}", bytes.len(), path.display());
        }
    }
}

#[test]
fn every_byte_of_the_wal_files() {
    sweep_bytes("wal bytes", |p, _| kind_of(p) == Kind::Wal).finish("wal bytes");
}

#[test]
fn every_cut_of_the_wal_files() {
    sweep_cuts("wal cuts", Kind::Wal, |_| 0).finish("wal cuts");
}

#[test]
fn every_byte_of_the_manifest_and_current() {
    sweep_bytes("manifest bytes", |p, _| {
        matches!(kind_of(p), Kind::Manifest | Kind::Current | Kind::Other)
    })
    .finish("manifest bytes");
}

#[test]
fn every_cut_inside_the_last_manifest_record() {
    sweep_cuts("manifest cuts", Kind::Manifest, |data| {
        let mut last = 0;
        read_log(data, |offset, _| {
            last = offset;
            Ok(())
        })
        .expect("the manifest reads");
        usize::try_from(last).expect("small")
    })
    .finish("manifest cuts");
}

/// Table bytes are split over several tests (by offset) so nextest runs
/// them in parallel.
const TABLE_SHARDS: usize = 4;

fn sweep_tables(shard: usize) {
    let name = format!("table bytes {shard}/{TABLE_SHARDS}");
    sweep_bytes(&name, |p, at| {
        kind_of(p) == Kind::Table && at / 64 % TABLE_SHARDS == shard
    })
    .finish(&name);
}

#[test]
fn every_byte_of_the_tables_0() {
    sweep_tables(0);
}

#[test]
fn every_byte_of_the_tables_1() {
    sweep_tables(1);
}

#[test]
fn every_byte_of_the_tables_2() {
    sweep_tables(2);
}

#[test]
fn every_byte_of_the_tables_3() {
    sweep_tables(3);
}

// ---------------------------------------------------------------------------
// Regressions: each shape the sweep found, on its own.

/// Opens a fresh database on `sim`, runs `steps`, closes it.
fn session(sim: &SimFs, steps: &[Step]) {
    let db = Db::open(DIR, options(sim)).expect("open");
    for s in steps {
        run(&db, s);
    }
}

fn put(p: &'static str, k: u32) -> Step {
    Step::Put(p, key(k), value(k, 0))
}

/// Start offsets of the records of the log file `path`.
fn record_offsets(sim: &SimFs, path: &Path) -> Vec<usize> {
    let data = sim.contents(path).expect("file");
    let mut offsets = Vec::new();
    read_log(&data, |o, _| {
        offsets.push(usize::try_from(o).expect("small"));
        Ok(())
    })
    .expect("reads");
    offsets
}

fn replace(sim: &SimFs, path: &Path, bytes: &[u8]) {
    let mut f = sim.create(path).expect("create");
    f.append(bytes).expect("append");
    f.sync_data().expect("sync");
}

fn open_corruption(sim: &SimFs) -> (PathBuf, String) {
    match Db::open(DIR, options(sim)) {
        Err(Error::Corruption { file, reason, .. }) => (file, reason),
        Err(e) => panic!("expected corruption, got {e:?}"),
        Ok(db) => panic!(
            "expected corruption, but it opened: a = {:?}, b = {:?}",
            db.scan("a", None, None)
                .map(|i| i.filter_map(Result::ok).count()),
            db.scan("b", None, None)
                .map(|i| i.filter_map(Result::ok).count())
        ),
    }
}

fn wal(n: u64) -> PathBuf {
    Path::new(DIR).join(format!("{n:06}.wal"))
}

#[test]
fn wal_cut_below_a_flushed_write_is_corruption() {
    // a's flushed table holds a write made after b's write, which only the
    // WAL holds: cutting that write off (at a record boundary, or inside
    // it) used to read as a torn tail, a state with a later write but
    // without an earlier one.
    for inside in [false, true] {
        let sim = SimFs::new();
        session(
            &sim,
            &[
                Step::Create("a"),
                Step::Create("b"),
                put("a", 1),
                put("b", 1),
                put("a", 2),
                Step::FlushPartition("a"),
            ],
        );
        let offsets = record_offsets(&sim, &wal(1));
        let data = sim.contents(&wal(1)).expect("wal");
        let cut = offsets[1] + usize::from(inside) * 3;
        replace(&sim, &wal(1), &data[..cut]);
        let (file, reason) = open_corruption(&sim);
        assert_eq!(file, wal(1), "{reason}");
        assert!(reason.contains("records were lost"), "{reason}");
    }
}

#[test]
fn wal_cut_below_a_partition_create_is_corruption() {
    // Creating a partition syncs the WAL first, and now records how far
    // (LastSequence): losing writes made before the create is not a torn
    // write.
    let sim = SimFs::new();
    session(
        &sim,
        &[
            Step::Create("a"),
            put("a", 1),
            put("a", 2),
            Step::Create("b"),
        ],
    );
    let offsets = record_offsets(&sim, &wal(1));
    let data = sim.contents(&wal(1)).expect("wal");
    replace(&sim, &wal(1), &data[..offsets[1]]);
    let (file, reason) = open_corruption(&sim);
    assert_eq!(file, wal(1), "{reason}");
    assert!(reason.contains("records were lost"), "{reason}");
}

#[test]
fn wal_cut_before_a_later_open_is_corruption() {
    // The second open synced the first file whole and continued its
    // sequence numbers in a new file: cutting the first file, at a record
    // boundary or inside a record, loses acknowledged, durable writes.
    for inside in [false, true] {
        let sim = SimFs::new();
        session(&sim, &[Step::Create("a"), put("a", 1), put("a", 2)]);
        session(&sim, &[put("a", 3)]);
        let offsets = record_offsets(&sim, &wal(1));
        let data = sim.contents(&wal(1)).expect("wal");
        let cut = offsets[1] + usize::from(inside) * 3;
        replace(&sim, &wal(1), &data[..cut]);
        let (file, reason) = open_corruption(&sim);
        assert_eq!(file, wal(1), "{reason}");
        assert!(
            reason.contains("records were lost") || reason.contains("started by a later open"),
            "{reason}"
        );
    }
}

#[test]
fn a_write_to_a_partition_the_manifest_lost_is_manifest_corruption() {
    // The manifest's last edit (creating b) damaged: it used to be dropped
    // as never acknowledged, and b's writes in the WAL skipped silently.
    let sim = SimFs::new();
    session(&sim, &[Step::Create("a"), put("a", 1)]);
    session(&sim, &[Step::Create("b"), put("b", 1)]);
    let current = sim
        .contents(&Path::new(DIR).join("CURRENT"))
        .expect("CURRENT");
    let name = String::from_utf8(current).expect("UTF-8");
    let manifest = Path::new(DIR).join(name.trim_end());
    let offsets = record_offsets(&sim, &manifest);
    let data = sim.contents(&manifest).expect("manifest");
    let last = *offsets.last().expect("records");
    replace(&sim, &manifest, &data[..last + 2]);
    let (file, reason) = open_corruption(&sim);
    assert_eq!(file, manifest, "{reason}");
    assert!(reason.contains("never created"), "{reason}");
}

#[test]
fn oldest_wal_emptied_whole_is_corruption_when_it_held_durable_writes() {
    // Nothing is left in the file to compare with the manifest: the manifest
    // now records where an open-started WAL file's sequence numbers begin
    // (WalStart), so a file emptied whole, or cut inside its first record,
    // is found. It used to read as a WAL that never held anything, keeping
    // a's flushed later write without b's earlier one.
    for keep in [0, 3] {
        let sim = SimFs::new();
        session(
            &sim,
            &[
                Step::Create("a"),
                Step::Create("b"),
                put("b", 1),
                put("a", 1),
                Step::FlushPartition("a"),
            ],
        );
        let data = sim.contents(&wal(1)).expect("wal");
        replace(&sim, &wal(1), &data[..keep]);
        let (file, reason) = open_corruption(&sim);
        assert_eq!(file, wal(1), "{reason}");
        assert!(reason.contains("records were lost"), "{reason}");
    }
}

#[test]
fn an_emptied_wal_without_durable_writes_reads_as_a_prefix() {
    // The same damage where the manifest records nothing durable in the
    // file (no flush or partition change after the writes) is what a crash
    // before the first sync leaves: the open succeeds without those writes.
    let sim = SimFs::new();
    session(&sim, &[Step::Create("a"), put("a", 1), put("a", 2)]);
    replace(&sim, &wal(1), &[]);
    let db = Db::open(DIR, options(&sim)).expect("open");
    assert_eq!(db.list_partitions(), ["a"]);
    assert_eq!(db.get("a", key(1).as_bytes()).expect("get"), None);
    assert_eq!(
        db.scan("a", None, None).expect("scan").count(),
        0,
        "nothing of the lost writes"
    );
}

#[test]
fn oldest_rotated_wal_emptied_whole_is_corruption() {
    // As above, for a file a rotation started whose predecessors were all
    // released: the release records where it starts (WalStart with the
    // LogNumber).
    let sim = SimFs::new();
    let mut steps = vec![Step::Create("a"), Step::Create("b")];
    steps.extend((0..16).map(|i| put("a", i))); // past wal_file_size: rotates
    steps.push(Step::Flush); // every memtable flushed: older files released
    steps.extend([put("b", 1), put("a", 1), Step::FlushPartition("a")]);
    session(&sim, &steps);
    let mut wals: Vec<PathBuf> = sim
        .read_dir(Path::new(DIR))
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .map(|n| Path::new(DIR).join(n))
        .collect();
    wals.sort();
    let oldest = wals.first().expect("a WAL file").clone();
    assert_ne!(oldest, wal(1), "the first file was released");
    let first = sim.contents(&oldest).expect("wal");
    assert_eq!(first[HEADER], 2, "starts with a previous-WAL record");
    replace(&sim, &oldest, &[]);
    let (file, reason) = open_corruption(&sim);
    assert_eq!(file, oldest, "{reason}");
    assert!(reason.contains("records were lost"), "{reason}");
}

/// Offset of a record's payload after its fragment header.
const HEADER: usize = 7;

#[test]
fn a_file_after_a_lost_unsynced_tail_is_dropped_not_judged() {
    // A crash keeps a rotated file but loses the unsynced tail of the file
    // before it (its previous-WAL record names the longer length): the
    // rotated file is dropped, so the jump over the lost sequence numbers
    // in it is no corruption. (The crash loop found this one, seed 654, in
    // a first version of the jump check.)
    let sim = SimFs::new();
    let mut steps = vec![Step::Create("a")];
    steps.extend((0..16).map(|i| put("a", i)));
    session(&sim, &steps);
    assert!(sim.contents(&wal(2)).is_some(), "rotated");
    let offsets = record_offsets(&sim, &wal(1));
    let data = sim.contents(&wal(1)).expect("wal");
    let kept = offsets.len() - 2;
    replace(&sim, &wal(1), &data[..offsets[kept]]);
    let db = Db::open(DIR, options(&sim)).expect("opens");
    let rows = db.scan("a", None, None).expect("scan").count();
    assert_eq!(rows, kept, "the writes before the lost tail");
    drop(db);
    assert!(
        sim.contents(&wal(2)).is_none(),
        "the rotated file was dropped"
    );
}
