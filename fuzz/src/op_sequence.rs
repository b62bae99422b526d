//! The `op_sequence` target: a fuzz input decoded into a sequence of engine
//! operations, run against `kalamdb_lsm::Db` over the simulated file system
//! with tiny options (memtables, blocks, WAL files, levels), every read
//! compared with a model (a `BTreeMap` per partition).
//!
//! # Input
//! Two option bytes (see [`options`]), then operations: an opcode byte
//! (`% OPCODES`) followed by its argument bytes (see [`Op::decode`]). An
//! operation cut short by the end of the input is dropped.
//!
//! # Oracle
//! - Without a crash pending, every get, scan, prefix scan and step of a
//!   held iterator returns exactly what the model says; a write, create or
//!   drop returns `Ok`, or `PartitionNotFound` exactly when the model has
//!   no such partition; a clean reopen recovers exactly the model.
//! - A crash (power loss on the simulated file system, with a seeded torn
//!   and possibly garbled tail) recovers the model after some prefix of the
//!   history that contains every durability point: an acknowledged sync
//!   write, `sync_wal`, or a create or drop that changed the partitions.
//! - `FaultCrash(n)` arms an I/O error on every file operation from the
//!   `n`th on; until the crash that follows (the next `Crash`, `Reopen` or
//!   the end), reads must not panic and values that held iterators return
//!   must be right, while writes that fail may or may not have been applied
//!   (the crash oracle tries both).
//!
//! The engine's background threads (flush, compaction, committer) run;
//! results do not depend on their timing, only coverage does. Crashes
//! optionally wait for background work first, so most are reproducible.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use kalamdb_lsm::fs::sim::{CrashMode, Fault, FaultError};
use kalamdb_lsm::fs::SimFs;
use kalamdb_lsm::merge::SnapshotIter;
use kalamdb_lsm::{Db, Error, Options, WriteOp};

/// Partition names: `p0` and `p1` exist at the start, `p2` does not.
pub const NAMES: [&str; 3] = ["p0", "p1", "p2"];
/// Distinct opcodes; an opcode byte is taken modulo this.
pub const OPCODES: u8 = 25;
/// Most operations run per input.
pub const MAX_OPS: usize = 400;
/// Most iterators held at a time.
const MAX_ITERS: usize = 4;
/// Failed steps beyond which the engine cannot have poisoned itself.
const MAX_MAYBES: usize = 12;
const DIR: &str = "/db";

type Part = BTreeMap<Vec<u8>, Vec<u8>>;
/// Partition name -> contents; a missing name is a missing partition.
pub type Model = BTreeMap<String, Part>;

/// The key a byte stands for: one of 52 keys, `a`..`d` followed by zero to
/// three copies of `0`..`3`, so that keys share prefixes.
pub fn key(b: u8) -> Vec<u8> {
    let mut k = vec![b'a' + (b & 3)];
    k.extend(std::iter::repeat_n(
        b'0' + ((b >> 4) & 3),
        usize::from((b >> 2) & 3),
    ));
    k
}

/// `None` for 0xff, else [`key`].
fn bound(b: u8) -> Option<Vec<u8>> {
    (b != 0xff).then(|| key(b))
}

/// The value a write at operation `at` with byte `b` puts: empty for 0,
/// a few hundred bytes for `b >= 0xe0` (to fill tiny memtables), else a
/// short string that names the operation (so a stale read shows).
pub fn value(at: usize, b: u8) -> Vec<u8> {
    if b == 0 {
        return Vec::new();
    }
    let mut v = format!("{at}.{b}").into_bytes();
    if b >= 0xe0 {
        v.resize(200 + usize::from(b & 0x1f) * 40, b);
    }
    v
}

/// One operation of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `(partition, key byte, value byte or None to delete)` written as one
    /// atomic batch; `sync` waits for `fdatasync`.
    Write {
        /// The batch.
        ops: Vec<(usize, u8, Option<u8>)>,
        /// Durable on return.
        sync: bool,
    },
    /// A point read.
    Get(usize, u8),
    /// A scan of `[start, end)` (0xff: unbounded), drained at once.
    Scan(usize, u8, u8),
    /// A scan of every key starting with the key of the byte, truncated to
    /// `len` (1..=3) bytes.
    PrefixScan(usize, u8, u8),
    /// `Db::flush`.
    Flush,
    /// `Db::flush_partition`.
    FlushPartition(usize),
    /// `Db::compact`: flush, then merge everything into the last level.
    Compact(usize),
    /// `Db::compact_due` on the calling thread.
    CompactDue,
    /// Create a partition (`Ok` if it exists).
    Create(usize),
    /// Drop a partition.
    Drop(usize),
    /// `Db::sync_wal`.
    SyncWal,
    /// Power loss: `mode` (0..3), crash `seed`; `quiesce` waits for
    /// background work first; `recovery_fault` (non-zero) fails the
    /// `recovery_fault`th file operation of the first reopen and every one
    /// after it, then crashes again.
    Crash {
        /// 0: drop unsynced bytes, 1: torn tail, 2: torn and garbled, 3:
        /// sectors lost before sectors kept.
        mode: u8,
        /// Seed of the torn lengths.
        seed: u8,
        /// Wait for background flushes and compactions before crashing.
        quiesce: bool,
        /// 0: none; else the first failing file operation of a recovery
        /// that then crashes.
        recovery_fault: u8,
    },
    /// Clean close and reopen; the recovered state must be the model.
    Reopen,
    /// Opens an iterator over `[start, end)` and holds it.
    OpenIter(usize, u8, u8),
    /// Takes up to `n` entries from held iterator `i % held`.
    StepIter(u8, u8),
    /// Every file operation from the `n`th on fails (EIO) until the next
    /// crash.
    FaultCrash(u8),
    /// Waits for background flushes and compactions.
    WaitBackground,
}

/// Reads an input byte by byte.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

impl Op {
    fn decode(r: &mut Reader<'_>) -> Option<Op> {
        let code = r.byte()? % OPCODES;
        let p = |b: u8| usize::from(b % 3);
        Some(match code {
            0..=3 => {
                let pb = r.byte()?;
                let (k, v) = (r.byte()?, r.byte()?);
                Op::Write {
                    ops: vec![(p(pb), k, Some(v))],
                    sync: pb & 0x80 != 0,
                }
            }
            4 | 5 => {
                let pb = r.byte()?;
                Op::Write {
                    ops: vec![(p(pb), r.byte()?, None)],
                    sync: pb & 0x80 != 0,
                }
            }
            6 | 7 => {
                let nb = r.byte()?;
                let mut ops = Vec::new();
                for _ in 0..1 + nb % 6 {
                    let (pb, k, v) = (r.byte()?, r.byte()?, r.byte()?);
                    ops.push((p(pb), k, (v % 7 != 0).then_some(v)));
                }
                Op::Write {
                    ops,
                    sync: nb & 0x80 != 0,
                }
            }
            8 | 9 => Op::Get(p(r.byte()?), r.byte()?),
            10 => Op::Scan(p(r.byte()?), r.byte()?, r.byte()?),
            11 => Op::PrefixScan(p(r.byte()?), r.byte()?, 1 + r.byte()? % 3),
            12 => Op::Flush,
            13 => Op::FlushPartition(p(r.byte()?)),
            14 => Op::Compact(p(r.byte()?)),
            15 => Op::CompactDue,
            16 => Op::Create(p(r.byte()?)),
            17 => Op::Drop(p(r.byte()?)),
            18 => Op::SyncWal,
            19 => {
                let flags = r.byte()?;
                Op::Crash {
                    mode: flags % 4,
                    seed: r.byte()?,
                    quiesce: flags & 0x80 != 0,
                    recovery_fault: if flags & 0x40 != 0 { r.byte()? } else { 0 },
                }
            }
            20 => Op::Reopen,
            21 => Op::OpenIter(p(r.byte()?), r.byte()?, r.byte()?),
            22 => Op::StepIter(r.byte()?, r.byte()?),
            23 => Op::FaultCrash(r.byte()?),
            _ => Op::WaitBackground,
        })
    }

    /// Appends the bytes that decode to this operation.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let pb = |p: usize, sync: bool| p as u8 | if sync { 0x80 } else { 0 };
        match self {
            Op::Write { ops, sync } => match ops.as_slice() {
                [(p, k, Some(v))] => out.extend([0, pb(*p, *sync), *k, *v]),
                [(p, k, None)] => out.extend([4, pb(*p, *sync), *k]),
                _ => {
                    assert!((1..=6).contains(&ops.len()), "1 to 6 writes in a batch");
                    out.extend([6, pb(ops.len() - 1, *sync)]);
                    for (p, k, v) in ops {
                        // A value byte divisible by 7 deletes.
                        let v = v.unwrap_or(0);
                        assert!(v % 7 != 0 || v == 0, "value byte {v} would delete");
                        out.extend([*p as u8, *k, v]);
                    }
                }
            },
            Op::Get(p, k) => out.extend([8, *p as u8, *k]),
            Op::Scan(p, s, e) => out.extend([10, *p as u8, *s, *e]),
            Op::PrefixScan(p, k, len) => out.extend([11, *p as u8, *k, len - 1]),
            Op::Flush => out.push(12),
            Op::FlushPartition(p) => out.extend([13, *p as u8]),
            Op::Compact(p) => out.extend([14, *p as u8]),
            Op::CompactDue => out.push(15),
            Op::Create(p) => out.extend([16, *p as u8]),
            Op::Drop(p) => out.extend([17, *p as u8]),
            Op::SyncWal => out.push(18),
            Op::Crash {
                mode,
                seed,
                quiesce,
                recovery_fault,
            } => {
                let flags = mode
                    | if *quiesce { 0x80 } else { 0 }
                    | if *recovery_fault != 0 { 0x40 } else { 0 };
                out.extend([19, flags, *seed]);
                if *recovery_fault != 0 {
                    out.push(*recovery_fault);
                }
            }
            Op::Reopen => out.push(20),
            Op::OpenIter(p, s, e) => out.extend([21, *p as u8, *s, *e]),
            Op::StepIter(i, n) => out.extend([22, *i, *n]),
            Op::FaultCrash(n) => out.extend([23, *n]),
            Op::WaitBackground => out.push(24),
        }
    }
}

/// The options two bytes choose: always tiny levels and target files (so
/// compactions run), tiny or small memtables, blocks and WAL files, with or
/// without filters, block cache, background compaction, a manifest that
/// rolls over often, a write-buffer budget and a WAL limit.
pub fn options(fs: &SimFs, a: u8, b: u8) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        memtable_size: [256, 1024, 4096, 64 << 10][usize::from(a & 3)],
        block_size: [64, 256, 1024, 4096][usize::from((a >> 2) & 3)],
        bloom_bits_per_key: if a & 0x10 != 0 { 0 } else { 10 },
        disable_auto_compactions: a & 0x20 != 0,
        max_open_files: if a & 0x40 != 0 { 1 } else { 100 },
        block_cache_size: if a & 0x80 != 0 { 0 } else { 64 << 10 },
        wal_file_size: [256, 1024, 8192, 1 << 20][usize::from(b & 3)],
        manifest_rollover_size: if b & 4 != 0 { 200 } else { 1 << 20 },
        write_buffer_size: if b & 8 != 0 { 2048 } else { 256 << 20 },
        max_total_wal_size: if b & 0x10 != 0 { 4096 } else { 0 },
        l0_compaction_trigger: if b & 0x20 != 0 { 2 } else { 4 },
        level_base_size: if b & 0x40 != 0 { 1024 } else { 8192 },
        level_size_multiplier: if b & 0x80 != 0 { 2 } else { 4 },
        target_file_size: 1024,
        // Never sleep in a fuzz run: slow down only far beyond what an input
        // can build up.
        l0_slowdown_writes_trigger: 1000,
        l0_stop_writes_trigger: 2000,
        ..Options::default()
    }
}

/// Decodes an input: its option bytes and operations.
pub fn decode(data: &[u8]) -> Option<((u8, u8), Vec<Op>)> {
    let mut r = Reader(data);
    let opts = (r.byte()?, r.byte()?);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        match Op::decode(&mut r) {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    Some((opts, ops))
}

/// Encodes option bytes and operations into an input.
pub fn encode(opts: (u8, u8), ops: &[Op]) -> Vec<u8> {
    let mut out = vec![opts.0, opts.1];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A step of the history since the last durability point, for the crash
/// oracle.
#[derive(Debug, Clone)]
enum Step {
    Write(Vec<(usize, Vec<u8>, Option<Vec<u8>>)>, bool),
    Create(usize),
    Drop(usize),
    SyncWal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Returned `Ok`; durable if a sync write or `sync_wal`.
    Acked,
    /// A create or drop that returned `Ok` and changed the partitions.
    AckedDdl,
    /// Failed with an I/O error: may or may not be applied.
    Maybe,
}

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
                return;
            }
            for (p, k, v) in ops {
                if let Some(part) = model.get_mut(NAMES[*p]) {
                    match v {
                        Some(v) => part.insert(k.clone(), v.clone()),
                        None => part.remove(k),
                    };
                }
            }
        }
        Step::SyncWal => {}
    }
}

fn durable(step: &Step, status: Status) -> bool {
    match status {
        Status::AckedDdl => true,
        Status::Acked => matches!(step, Step::SyncWal | Step::Write(_, true)),
        Status::Maybe => false,
    }
}

/// A held iterator and what it has still to return.
struct Held {
    iter: SnapshotIter,
    expected: VecDeque<(Vec<u8>, Vec<u8>)>,
    what: String,
}

/// Everything one input runs with.
struct Run {
    sim: SimFs,
    opts: (u8, u8),
    db: Option<Db>,
    /// The model after every acknowledged step (and failed ones, while
    /// doomed).
    current: Model,
    /// The model as of the last durability point.
    base: Model,
    /// Steps since then.
    tail: Vec<(Step, Status)>,
    held: Vec<Held>,
    /// A fault is armed: a crash will follow.
    doomed: bool,
    /// A create or drop failed while doomed: later ones no longer count as
    /// durability points.
    ddl_uncertain: bool,
    /// Operations run so far (for messages).
    log: Vec<String>,
}

fn range(part: &Part, start: Option<&[u8]>, end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    part.iter()
        .filter(|(k, _)| {
            start.is_none_or(|s| k.as_slice() >= s) && end.is_none_or(|e| k.as_slice() < e)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn dump(db: &Db) -> Result<Model, Error> {
    let mut out = Model::new();
    for name in db.list_partitions() {
        let items = db
            .scan(&name, None, None)?
            .collect::<Result<Part, Error>>()?;
        out.insert(name, items);
    }
    Ok(out)
}

impl Run {
    fn fail(&self, what: String) -> ! {
        let from = self.log.len().saturating_sub(40);
        panic!(
            "op_sequence: {what}\noptions {:?}; last operations:\n  {}",
            self.opts,
            self.log[from..].join("\n  ")
        );
    }

    fn db(&self) -> &Db {
        match &self.db {
            Some(db) => db,
            None => self.fail("no open database".into()),
        }
    }

    fn open(&self) -> Result<Db, Error> {
        Db::open(DIR, options(&self.sim, self.opts.0, self.opts.1))
    }

    /// Records a step that returned `result`, checking the result against
    /// the model unless doomed.
    fn record(&mut self, step: Step, result: Result<(), Error>) {
        let exists = |m: &Model, p: usize| m.contains_key(NAMES[p]);
        let missing = match &step {
            Step::Write(ops, _) => ops.iter().any(|(p, _, _)| !exists(&self.current, *p)),
            Step::Drop(p) => !exists(&self.current, *p),
            Step::Create(_) | Step::SyncWal => false,
        };
        let is_ddl = matches!(step, Step::Create(_) | Step::Drop(_));
        if !self.doomed {
            match (&result, missing) {
                (Ok(()), false) | (Err(Error::PartitionNotFound(_)), true) => {}
                (r, _) => self.fail(format!(
                    "{step:?} returned {r:?}; the model {} the partition",
                    if missing { "lacks" } else { "has" }
                )),
            }
        }
        let status = match result {
            Ok(()) => {
                let before: Vec<String> = self.current.keys().cloned().collect();
                apply(&mut self.current, &step);
                let changed = self.current.keys().cloned().collect::<Vec<_>>() != before;
                if is_ddl && changed && !self.ddl_uncertain {
                    Status::AckedDdl
                } else {
                    Status::Acked
                }
            }
            Err(Error::PartitionNotFound(_) | Error::Poisoned(_) | Error::Stalled(_)) => return,
            Err(_) => {
                self.ddl_uncertain |= is_ddl;
                apply(&mut self.current, &step);
                Status::Maybe
            }
        };
        if !self.doomed && durable(&step, status) {
            self.base = self.current.clone();
            self.tail.clear();
        } else {
            self.tail.push((step, status));
        }
    }

    fn write(&mut self, at: usize, ops: &[(usize, u8, Option<u8>)], sync: bool) {
        let resolved: Vec<(usize, Vec<u8>, Option<Vec<u8>>)> = ops
            .iter()
            .map(|&(p, k, v)| (p, key(k), v.map(|v| value(at, v))))
            .collect();
        let result = self.db().write(
            resolved.iter().map(|(p, k, v)| WriteOp {
                partition: NAMES[*p],
                key: k.clone(),
                value: v.clone(),
            }),
            Some(sync),
        );
        self.record(Step::Write(resolved, sync), result);
    }

    /// Checks a read's result against the model (unless doomed).
    fn check_scan(&self, p: usize, start: Option<&[u8]>, end: Option<&[u8]>) {
        let got = self
            .db()
            .scan(NAMES[p], start, end)
            .and_then(|it| it.collect::<Result<Vec<_>, Error>>());
        if self.doomed {
            return;
        }
        match (got, self.current.get(NAMES[p])) {
            (Ok(got), Some(part)) => {
                let want = range(part, start, end);
                if got != want {
                    self.fail(format!(
                        "scan {} [{start:?}, {end:?}) returned {} entries, want {}: {}",
                        NAMES[p],
                        got.len(),
                        want.len(),
                        first_difference(&got, &want)
                    ));
                }
            }
            (Err(Error::PartitionNotFound(_)), None) => {}
            (got, part) => self.fail(format!(
                "scan {} returned {:?} with the partition {}",
                NAMES[p],
                got.map(|v| v.len()),
                if part.is_some() { "present" } else { "absent" }
            )),
        }
    }

    fn step_iter(&mut self, i: u8, n: u8) {
        if self.held.is_empty() {
            return;
        }
        let i = usize::from(i) % self.held.len();
        let doomed = self.doomed;
        let mut failure = None;
        let mut ended = false;
        {
            let h = &mut self.held[i];
            for _ in 0..n {
                match (h.iter.next(), h.expected.pop_front()) {
                    (None, None) => {
                        ended = true;
                        break;
                    }
                    (Some(Ok(got)), Some(want)) if got == want => {}
                    // A fault may end it early with an error, never with
                    // wrong data or a premature end.
                    (Some(Err(_)), _) if doomed => {
                        ended = true;
                        break;
                    }
                    (got, want) => {
                        failure = Some(format!(
                            "held iterator {} returned {:?}, want {:?}",
                            h.what,
                            got.map(|r| r.map(|(k, v)| (show(&k), show(&v)))),
                            want.map(|(k, v)| (show(&k), show(&v)))
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(f) = failure {
            self.fail(f);
        }
        if ended {
            self.held.remove(i);
        }
    }

    /// Power loss, then recovery; checks the prefix oracle and makes the
    /// recovered state the new model.
    fn crash(&mut self, mode: u8, seed: u8, quiesce: bool, recovery_fault: u8) {
        if quiesce && !self.doomed {
            if let Some(db) = &self.db {
                if let Err(e) = db.wait_for_flushes() {
                    self.fail(format!("background flush failed: {e}"));
                }
                db.wait_for_compactions();
            }
        }
        let mode = match mode {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::TearTail,
            2 => CrashMode::TearAndGarble,
            _ => CrashMode::LoseSectors,
        };
        let seed = u64::from(seed) * 0x9e37_79b9 + self.log.len() as u64;
        self.held.clear();
        self.sim.crash_with(mode, seed);
        drop(self.db.take());
        self.sim.clear_faults();
        if recovery_fault != 0 {
            self.sim.inject(
                Fault::any(FaultError::EIO)
                    .nth(u64::from(recovery_fault))
                    .persistent(),
            );
            let attempt = self.open();
            if let Ok(db) = &attempt {
                // Recovery may have started flushes: let the fault reach them.
                let _ = db.wait_for_flushes();
            }
            self.sim.crash_with(mode, seed ^ 0x5555);
            drop(attempt);
            self.sim.clear_faults();
        }
        let db = match self.open() {
            Ok(db) => db,
            Err(e) => self.fail(format!("reopen after a crash ({mode:?}) failed: {e}")),
        };
        let recovered = match dump(&db) {
            Ok(m) => m,
            Err(e) => self.fail(format!("reading the recovered state failed: {e}")),
        };
        self.db = Some(db);
        self.check_prefix(&recovered, mode);
        self.current = recovered.clone();
        self.base = recovered;
        self.tail.clear();
        self.doomed = false;
        self.ddl_uncertain = false;
    }

    fn check_prefix(&self, recovered: &Model, mode: CrashMode) {
        let required = self
            .tail
            .iter()
            .rposition(|(s, st)| durable(s, *st))
            .map_or(0, |i| i + 1);
        let maybes: Vec<usize> = (0..self.tail.len())
            .filter(|&i| self.tail[i].1 == Status::Maybe)
            .collect();
        if maybes.len() > MAX_MAYBES {
            self.fail(format!(
                "{} writes failed before the crash: the engine did not poison itself",
                maybes.len()
            ));
        }
        for len in required..=self.tail.len() {
            let in_prefix: Vec<usize> = maybes.iter().copied().filter(|&i| i < len).collect();
            for mask in 0u32..(1 << in_prefix.len()) {
                let mut model = self.base.clone();
                for (i, (step, status)) in self.tail[..len].iter().enumerate() {
                    let skip = *status == Status::Maybe
                        && in_prefix
                            .iter()
                            .position(|&m| m == i)
                            .is_some_and(|bit| mask & (1 << bit) == 0);
                    if !skip {
                        apply(&mut model, step);
                    }
                }
                if &model == recovered {
                    return;
                }
            }
        }
        let mut expected = self.base.clone();
        for (step, _) in &self.tail[..required] {
            apply(&mut expected, step);
        }
        self.fail(format!(
            "the state recovered after a crash ({mode:?}) is no prefix of the history \
             (required {required} of {} steps since the last durability point): {}",
            self.tail.len(),
            model_difference(&expected, recovered)
        ));
    }

    fn reopen(&mut self) {
        if self.doomed {
            self.crash(0, 0, false, 0);
            return;
        }
        drop(self.db.take());
        let db = match self.open() {
            Ok(db) => db,
            Err(e) => self.fail(format!("clean reopen failed: {e}")),
        };
        match dump(&db) {
            Ok(m) if m == self.current => {}
            Ok(m) => self.fail(format!(
                "clean reopen recovered another state: {}",
                model_difference(&self.current, &m)
            )),
            Err(e) => self.fail(format!("reading the reopened state failed: {e}")),
        }
        self.db = Some(db);
    }

    fn run_op(&mut self, at: usize, op: &Op) {
        match op {
            Op::Write { ops, sync } => self.write(at, ops, *sync),
            Op::Get(p, k) => {
                let k = key(*k);
                let got = self.db().get(NAMES[*p], &k);
                if self.doomed {
                    return;
                }
                match (got, self.current.get(NAMES[*p])) {
                    (Ok(v), Some(part)) if v.as_ref() == part.get(&k) => {}
                    (Err(Error::PartitionNotFound(_)), None) => {}
                    (got, part) => self.fail(format!(
                        "get {}/{} returned {:?}, want {:?}",
                        NAMES[*p],
                        show(&k),
                        got.map(|v| v.map(|v| show(&v))),
                        part.map(|m| m.get(&k).map(|v| show(v)))
                    )),
                }
            }
            Op::Scan(p, s, e) => {
                let (s, e) = (bound(*s), bound(*e));
                self.check_scan(*p, s.as_deref(), e.as_deref());
            }
            Op::PrefixScan(p, k, len) => {
                let mut prefix = key(*k);
                prefix.truncate(usize::from(*len));
                let mut end = prefix.clone();
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                self.check_scan(*p, Some(&prefix), Some(&end));
            }
            Op::Flush => {
                let r = self.db().flush();
                self.expect_ok("flush", r);
            }
            Op::FlushPartition(p) => {
                let r = self.db().flush_partition(NAMES[*p]);
                self.expect_ok_or_missing("flush_partition", *p, r);
            }
            Op::Compact(p) => {
                let r = self.db().compact(NAMES[*p]);
                self.expect_ok_or_missing("compact", *p, r);
            }
            Op::CompactDue => {
                let r = self.db().compact_due();
                self.expect_ok("compact_due", r);
            }
            Op::Create(p) => {
                let r = self.db().create_partition(NAMES[*p]);
                self.record(Step::Create(*p), r);
            }
            Op::Drop(p) => {
                let r = self.db().drop_partition(NAMES[*p]);
                self.record(Step::Drop(*p), r);
            }
            Op::SyncWal => {
                let r = self
                    .db()
                    .sync_wal()
                    .and_then(|c| c.wait().unwrap_or(Err(Error::Closed)));
                self.record(Step::SyncWal, r);
            }
            Op::Crash {
                mode,
                seed,
                quiesce,
                recovery_fault,
            } => self.crash(*mode, *seed, *quiesce, *recovery_fault),
            Op::Reopen => self.reopen(),
            Op::OpenIter(p, s, e) => {
                if self.held.len() >= MAX_ITERS {
                    self.held.remove(0);
                }
                let (s, e) = (bound(*s), bound(*e));
                let it = self.db().scan(NAMES[*p], s.as_deref(), e.as_deref());
                match (it, self.current.get(NAMES[*p])) {
                    (Ok(iter), Some(part)) if !self.doomed => {
                        let expected = range(part, s.as_deref(), e.as_deref()).into();
                        let what = format!(
                            "{} [{:?}, {:?}) opened at op {at}",
                            NAMES[*p],
                            s.as_deref().map(show),
                            e.as_deref().map(show)
                        );
                        self.held.push(Held {
                            iter,
                            expected,
                            what,
                        });
                    }
                    (Err(Error::PartitionNotFound(_)), None) => {}
                    _ if self.doomed => {}
                    (it, part) => self.fail(format!(
                        "scan {} returned {} with the partition {}",
                        NAMES[*p],
                        if it.is_ok() { "Ok" } else { "Err" },
                        if part.is_some() { "present" } else { "absent" }
                    )),
                }
            }
            Op::StepIter(i, n) => self.step_iter(*i, *n),
            Op::FaultCrash(n) => {
                if !self.doomed {
                    self.doomed = true;
                    self.sim.inject(
                        Fault::any(FaultError::EIO)
                            .nth(1 + u64::from(*n))
                            .persistent(),
                    );
                }
            }
            Op::WaitBackground => {
                let r = self.db().wait_for_flushes();
                self.expect_ok("background flush", r);
                self.db().wait_for_compactions();
            }
        }
    }

    fn expect_ok(&self, what: &str, r: Result<(), Error>) {
        if let Err(e) = r {
            if !self.doomed {
                self.fail(format!("{what} failed: {e}"));
            }
        }
    }

    fn expect_ok_or_missing(&self, what: &str, p: usize, r: Result<(), Error>) {
        let missing = !self.current.contains_key(NAMES[p]);
        match r {
            Ok(()) if !missing => {}
            Err(Error::PartitionNotFound(_)) if missing => {}
            _ if self.doomed => {}
            r => self.fail(format!("{what} {} returned {r:?}", NAMES[p])),
        }
    }
}

fn show(b: &[u8]) -> String {
    if b.len() > 24 {
        format!("{}..({} bytes)", String::from_utf8_lossy(&b[..16]), b.len())
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

fn first_difference(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)]) -> String {
    for i in 0..got.len().max(want.len()) {
        let (g, w) = (got.get(i), want.get(i));
        if g != w {
            let s =
                |e: Option<&(Vec<u8>, Vec<u8>)>| e.map(|(k, v)| format!("{}={}", show(k), show(v)));
            return format!("entry {i}: got {:?}, want {:?}", s(g), s(w));
        }
    }
    String::new()
}

fn model_difference(want: &Model, got: &Model) -> String {
    let mut out = Vec::new();
    for name in want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (want.get(name), got.get(name)) {
            (Some(_), None) => out.push(format!("{name} missing")),
            (None, Some(_)) => out.push(format!("{name} unexpected")),
            (Some(w), Some(g)) => {
                for k in w
                    .keys()
                    .chain(g.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    if w.get(k) != g.get(k) {
                        out.push(format!(
                            "{name}/{}: want {:?} got {:?}",
                            show(k),
                            w.get(k).map(|v| show(v)),
                            g.get(k).map(|v| show(v))
                        ));
                    }
                }
            }
            (None, None) => {}
        }
    }
    out.join("; ")
}

/// Runs one input; panics on any difference from the model.
pub fn run(data: &[u8]) {
    let Some((opts, ops)) = decode(data) else {
        return;
    };
    let sim = SimFs::new();
    let mut run = Run {
        sim,
        opts,
        db: None,
        current: Model::new(),
        base: Model::new(),
        tail: Vec::new(),
        held: Vec::new(),
        doomed: false,
        ddl_uncertain: false,
        log: Vec::new(),
    };
    let db = match run.open() {
        Ok(db) => db,
        Err(e) => run.fail(format!("first open failed: {e}")),
    };
    for name in &NAMES[..2] {
        if let Err(e) = db.create_partition(name) {
            run.fail(format!("creating {name} failed: {e}"));
        }
        run.current.insert(name.to_string(), Part::new());
    }
    run.base = run.current.clone();
    run.db = Some(db);
    for (at, op) in ops.iter().enumerate() {
        run.log.push(format!("{at}: {op:?}"));
        run.run_op(at, op);
    }
    // Held iterators are drained to the end, then one last check: a crash
    // if one is pending, else a clean reopen.
    for i in 0..run.held.len() {
        let _ = i;
        run.step_iter(0, u8::MAX);
    }
    run.held.clear();
    run.log.push("end: Reopen".into());
    run.reopen();
}
