//! Leveled compaction, per partition, on a background thread.
//!
//! # Shape
//! Level 0 holds flushed tables (newest first, ranges overlapping); levels
//! 1 to 6 are sorted runs. Level sizes are *dynamic*: the largest level sets
//! the scale and each level above it targets a tenth
//! (`level_size_multiplier`) of the one below; the highest level whose
//! target still exceeds `level_base_size` is the *base level*, into which
//! level 0 compacts. No level from the base down targets less than what
//! one level-0 compaction brings (`l0_compaction_trigger` memtables), up to
//! `level_base_size` (RocksDB's floor is `level_base_size` itself): a base
//! level of a tenth of a bottom just past the threshold would be emptied
//! into the bottom after every level-0 compaction, each of its bytes
//! rewriting several of the bottom's (the harness's overwrite run at 5M
//! keys: write amplification 6.39 with that, 4.22 without, RocksDB 4.07).
//! A young partition has only level 0 and level 6; levels appear above
//! level 6 as it grows. Levels above the base level are expected empty
//! (they hold data only after the partition shrank) and are drained first.
//!
//! # Scores and picking
//! Level 0 scores `files / l0_compaction_trigger`; a level from the base
//! level down to level 5 scores `bytes / target`. Tables holding more
//! tombstones than live entries count extra bytes for what they will free
//! below ([`compensated`]), and level 0 holding such tables also scores by
//! that size against `level_base_size`. The highest score `>= 1` is
//! compacted: all of level 0 with the base-level tables it overlaps, or one
//! table of level `n` with the tables of level `n + 1` it overlaps: the
//! table overlapping the fewest bytes there for its size ([`pick_table`]).
//! Inputs that overlap neither one another nor anything at the output
//! level are moved (a manifest edit, no rewrite) — unless nothing deeper
//! overlaps them and they hold tombstones, which the rewrite drops. Outputs
//! are cut at `target_file_size`, and, above level 6, also where the key
//! passes the end of a table of the level below the output once an output
//! holds half the target: each then overlaps as few tables there as it can
//! when its turn comes to be compacted down. The background thread picks,
//! across the partitions with pending work, the one with the greatest
//! score.
//!
//! # Seek compaction
//! When nothing is due by size, a table whose seek allowance reads spent
//! is compacted ([`plan_seek`]; LevelDB's `allowed_seeks`): a get that read
//! data blocks of two tables, or a scan positioned in more than one sorted
//! run, charges the first table it read; a table is allowed a seek per
//! [`SEEK_COST_BYTES`](crate::table_file::SEEK_COST_BYTES) of its size.
//! At zero, the compaction that would take it down (all of level 0 into
//! the base level, or the table into the next level) runs if the seeks
//! charged also pay for every byte it rewrites at that rate; else the
//! allowance is raised to that and the table is due again once reads have
//! paid. A read-mostly partition left with level-0 tables under the
//! trigger so ends as one sorted run.
//!
//! # What a compaction drops
//! Iterators pin the tables they read, so no older version is needed by
//! anyone once a newer one of the same key is in a table: outputs keep only
//! the newest version of each key. At the bottom (no table of a deeper
//! level overlaps the compaction's key range) tombstones are dropped and
//! sequence numbers set to 0. A read never sees a table with entries above
//! its sequence number ([`PartitionState::read_set_at`]), so the versions
//! dropped are never the ones it needs.
//!
//! # Failure and races
//! Outputs are written, synced and their directory synced before the
//! manifest edit that installs them (removing the inputs); a failure before
//! the edit deletes them and changes nothing. A failed fsync of the edit
//! keeps them (the edit may be durable; the manifest is poisoned, and the
//! next open deletes them if it was not). From then on every compaction
//! fails with `poisoned:` before it plans or writes anything: the
//! manifest's state may be ahead of the versions. A partition dropped
//! meanwhile has its edit refused: nothing is installed. Flushes keep
//! adding level-0 tables during a compaction; they are newer than its
//! inputs and stay.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;

use crate::db::Inner;
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::manifest::{Change, TableRecord, VersionEdit};
use crate::memtable::Value;
use crate::merge::{MergeIter, Source};
use crate::partition::{LevelSource, PartitionState, NUM_LEVELS};
use crate::sst::TableBuilder;
use crate::table_file::{table_file_name, EntryCounts, TableFile};

/// The deepest level.
pub const BOTTOM: usize = NUM_LEVELS - 1;

/// Tables of a partition by level (as [`PartitionState::levels`] returns).
pub type Levels = [Vec<Arc<TableFile>>; NUM_LEVELS];

/// Compaction settings (from [`Options`](crate::Options)).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Level-0 files that trigger a compaction.
    pub l0_trigger: usize,
    /// Size of the base level's target at most.
    pub level_base: u64,
    /// Growth factor between levels.
    pub multiplier: u64,
    /// Size at which an output table is cut.
    pub target_file_size: u64,
    /// About what one level-0 compaction brings into the base level
    /// (`l0_trigger` memtables).
    pub l0_bytes: u64,
}

/// Level targets: the base level and each level's target size (0 above the
/// base level and for level 0).
pub fn targets(bytes: &[u64; NUM_LEVELS], t: &Tuning) -> (usize, [u64; NUM_LEVELS]) {
    let mut targets = [0u64; NUM_LEVELS];
    let largest = bytes[1..].iter().copied().max().unwrap_or(0);
    let multiplier = t.multiplier.max(2);
    let mut size = largest.max(1);
    let mut level = BOTTOM;
    targets[BOTTOM] = size;
    while level > 1 && size > t.level_base {
        size /= multiplier;
        level -= 1;
        targets[level] = size.max(1);
    }
    // No level from the base down targets less than one level-0
    // compaction's worth (nor more than `level_base`): a base level of a
    // tenth of a bottom just over `level_base` would be emptied into the
    // bottom after every level-0 compaction, each byte rewriting several of
    // the bottom's.
    let floor = t.l0_bytes.min(t.level_base);
    for target in &mut targets[level..BOTTOM] {
        *target = (*target).max(floor);
    }
    (level, targets)
}

/// What to compact.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The level compacted from.
    pub level: usize,
    /// Where the outputs go.
    pub output_level: usize,
    /// Input tables with their levels.
    pub inputs: Vec<(usize, Arc<TableFile>)>,
    /// No deeper table overlaps the inputs: tombstones can go.
    pub bottom: bool,
    /// Inputs that overlap neither each other nor anything at the output
    /// level: move them (a manifest edit, no rewrite).
    pub trivial_move: bool,
}

/// The most urgent compaction of `levels` and its score (`>= 1` means due),
/// or `None` if nothing is due. `cursors` holds, per level, the largest key
/// of the last table picked there (round robin among equals).
pub fn pick(
    levels: &Levels,
    t: &Tuning,
    cursors: &[Option<Bytes>; NUM_LEVELS],
) -> Option<(f64, Plan)> {
    let due = score(levels, t)?;
    let cursor = cursors[due.level].as_deref();
    Some((
        due.score,
        plan_level(levels, due.level, due.base, cursor, due.average),
    ))
}

/// The most urgent level to compact, from [`score`].
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// Its score, `>= 1`.
    pub score: f64,
    /// The level to compact.
    pub level: usize,
    /// The base level (where level 0 goes).
    base: usize,
    /// The partition's bytes per live entry for compensation.
    average: u64,
}

/// The most urgent level of `levels` to compact, or `None` if nothing is
/// due; what [`pick`] plans, without planning it.
pub fn score(levels: &Levels, t: &Tuning) -> Option<Due> {
    let bytes = level_bytes(levels);
    let (base, targets) = targets(&bytes, t);
    let average = average_entry_bytes(levels, &bytes);
    let scored = compensated(levels, &bytes, average);
    let mut best: Option<(f64, usize)> = None;
    let mut consider = |score: f64, level: usize| {
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    };
    consider(levels[0].len() as f64 / t.l0_trigger.max(1) as f64, 0);
    if scored[0] > bytes[0] {
        // Level-0 tables of tombstones: also by what they would free, against
        // the base level's size (as RocksDB scores level 0 by size too). A
        // deleting writer otherwise leaves up to `l0_trigger - 1` tables of
        // them, and all the data they delete, in place.
        consider(scored[0] as f64 / t.level_base.max(1) as f64, 0);
    }
    // Tombstones that would free at least a `multiplier`-th of the data
    // below them are due whatever their level's size: a level-0 table of
    // them scored against `level_base_size` alone (256 MiB) stayed while
    // it deleted most of a bottom level that had shrunk under it (the
    // harness's deleteheavy run kept 465 MiB on disk).
    let multiplier = t.multiplier.max(2) as f64;
    let mut below: u64 = 0;
    for level in (0..BOTTOM).rev() {
        below = below.saturating_add(bytes[level + 1]);
        let frees = scored[level] - bytes[level];
        if frees > 0 && below > 0 {
            consider(frees as f64 * multiplier / below as f64, level);
        }
    }
    for level in 1..BOTTOM {
        if bytes[level] == 0 {
            continue;
        }
        if level < base {
            // Above the base level: drain it (it should be empty).
            consider(1e9, level);
        } else {
            consider(scored[level] as f64 / targets[level] as f64, level);
        }
    }
    let (score, level) = best?;
    Some(Due {
        score,
        level,
        base,
        average,
    })
}

/// The bytes of each level's tables.
fn level_bytes(levels: &Levels) -> [u64; NUM_LEVELS] {
    std::array::from_fn(|l| levels[l].iter().map(|f| f.size()).sum())
}

/// Each level's bytes for its score: its tables' sizes plus, for a table
/// holding more tombstones than live entries, an average entry's bytes per
/// tombstone in excess (as RocksDB compensates file sizes). Such a table
/// frees about that much below it once compacted down, and without the
/// bonus a level of tombstones stays under its target: deleting everything
/// left the whole data set on disk (612 MiB of 578 at N = 5M in the
/// harness's `deleteheavy`) until a manual `compact`. The average is over
/// the partition's live entries.
fn compensated(levels: &Levels, bytes: &[u64; NUM_LEVELS], average: u64) -> [u64; NUM_LEVELS] {
    if average == 0 {
        return *bytes;
    }
    std::array::from_fn(|l| {
        levels[l]
            .iter()
            .map(|f| compensated_size(f, average))
            .fold(0, u64::saturating_add)
    })
}

/// A table's size plus `average` bytes per tombstone in excess: what
/// [`compensated`] counts for it.
fn compensated_size(f: &TableFile, average: u64) -> u64 {
    f.size()
        .saturating_add(excess(f.counts()).saturating_mul(average))
}

/// Tombstones of a table beyond its live entries.
fn excess(c: EntryCounts) -> u64 {
    c.tombstones.saturating_mul(2).saturating_sub(c.entries)
}

/// The partition's bytes per live entry, what [`compensated`] counts per
/// excess tombstone; 0 if no table holds more tombstones than live entries
/// (no compensation).
fn average_entry_bytes(levels: &Levels, bytes: &[u64; NUM_LEVELS]) -> u64 {
    if levels.iter().flatten().all(|f| excess(f.counts()) == 0) {
        return 0;
    }
    let live: u64 = levels
        .iter()
        .flatten()
        .map(|f| {
            let c = f.counts();
            c.entries.saturating_sub(c.tombstones)
        })
        .fold(0, u64::saturating_add);
    bytes.iter().sum::<u64>().checked_div(live).unwrap_or(0)
}

/// The table of a sorted run to compact into the next level: the one whose
/// overlap there is smallest for its size (its size compensated for
/// tombstones, as in [`compensated`]), as RocksDB's default
/// `kMinOverlappingRatio` picks. It rewrites the fewest bytes of the next
/// level per byte it pushes down: in the harness's overwrite run at 5M keys,
/// round robin by key had the base level's tables each merge with a quarter
/// of the bottom. Ties go to the first table after `cursor` (the largest
/// key of the last table picked at this level), round robin.
fn pick_table(
    run: &[Arc<TableFile>],
    next: &[Arc<TableFile>],
    cursor: Option<&[u8]>,
    average: u64,
) -> Option<usize> {
    let start = cursor.map_or(0, |c| run.partition_point(|f| f.smallest() <= c));
    let ranges: Vec<(&[u8], &[u8], u64)> = next
        .iter()
        .map(|f| (f.smallest(), f.largest(), f.size()))
        .collect();
    let candidates = run
        .iter()
        .map(|f| (f.smallest(), f.largest(), compensated_size(f, average)));
    least_overlap(candidates, &ranges, start)
}

/// Index of the candidate `(smallest, largest, size)` with the least bytes
/// of `next` (a sorted run of `(smallest, largest, size)`) overlapping it
/// per byte of its own size; ties go to the first from `start` on,
/// wrapping around. `None` if there is no candidate.
fn least_overlap<'a>(
    candidates: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8], u64)>,
    next: &[(&[u8], &[u8], u64)],
    start: usize,
) -> Option<usize> {
    let n = candidates.len();
    let costs: Vec<(u64, u64)> = candidates
        .map(|(smallest, largest, size)| {
            let from = next.partition_point(|(_, l, _)| *l < smallest);
            let to = next.partition_point(|(s, _, _)| *s <= largest);
            let overlap = next[from..to.max(from)]
                .iter()
                .map(|(_, _, size)| *size)
                .fold(0, u64::saturating_add);
            (overlap, size.max(1))
        })
        .collect();
    let mut best: Option<usize> = None;
    for i in (0..n).map(|k| (start + k) % n) {
        let (overlap, size) = costs[i];
        // overlap / size < best overlap / best size, without division.
        let better = best.is_none_or(|b| {
            let (bo, bs) = costs[b];
            u128::from(overlap) * u128::from(bs) < u128::from(bo) * u128::from(size)
        });
        if better {
            best = Some(i);
        }
    }
    best
}

/// Plans a compaction out of `level` (level 0 into `base`, others into the
/// next level).
fn plan_level(
    levels: &Levels,
    level: usize,
    base: usize,
    cursor: Option<&[u8]>,
    average: u64,
) -> Plan {
    let (inputs, output_level): (Vec<(usize, Arc<TableFile>)>, usize) = if level == 0 {
        (levels[0].iter().map(|f| (0, f.clone())).collect(), base)
    } else {
        let run = &levels[level];
        let next = levels.get(level + 1).map_or(&[][..], Vec::as_slice);
        let file = pick_table(run, next, cursor, average).and_then(|i| run.get(i));
        (
            file.map(|f| (level, f.clone())).into_iter().collect(),
            level + 1,
        )
    };
    plan_inputs(levels, level, inputs, output_level)
}

/// Plans the compaction of `table`, found at `level` of `levels` (above the
/// bottom), whose seek allowance ran out: all of level 0 into the base
/// level if it is there (level-0 tables overlap: one alone cannot go
/// down), else the table into the next level. `None` if `table` is not in
/// `levels` above the bottom.
pub fn plan_seek(levels: &Levels, table: &Arc<TableFile>, t: &Tuning) -> Option<Plan> {
    let level = levels[..BOTTOM]
        .iter()
        .position(|run| run.iter().any(|f| Arc::ptr_eq(f, table)))?;
    if level == 0 {
        let (base, _) = targets(&level_bytes(levels), t);
        return Some(plan_level(levels, 0, base, None, 0));
    }
    Some(plan_inputs(
        levels,
        level,
        vec![(level, table.clone())],
        level + 1,
    ))
}

/// Completes a plan of `inputs` out of `level` into `output_level`: adds the
/// output level's overlapping tables and decides between a move and a
/// rewrite.
fn plan_inputs(
    levels: &Levels,
    level: usize,
    inputs: Vec<(usize, Arc<TableFile>)>,
    output_level: usize,
) -> Plan {
    let Some((smallest, largest)) = key_range(inputs.iter().map(|(_, f)| f)) else {
        return Plan {
            level,
            output_level,
            inputs,
            bottom: false,
            trivial_move: false,
        };
    };
    let overlapping: Vec<(usize, Arc<TableFile>)> = levels[output_level]
        .iter()
        .filter(|f| f.overlaps(&smallest, &largest))
        .map(|f| (output_level, f.clone()))
        .collect();
    // Level-0 tables of disjoint ranges (a sequential fill flushes such
    // tables) move together: rewriting them would only copy them.
    let movable = overlapping.is_empty() && disjoint(inputs.iter().map(|(_, f)| f));
    let tombstones = inputs.iter().any(|(_, f)| f.counts().tombstones > 0);
    let mut all = inputs;
    all.extend(overlapping);
    let (smallest, largest) = key_range(all.iter().map(|(_, f)| f)).unwrap_or((smallest, largest));
    let bottom = levels[output_level + 1..]
        .iter()
        .flatten()
        .all(|f| !f.overlaps(&smallest, &largest));
    // Not tombstones with nothing below them: moved, they would stay for
    // good (nothing rewrites a table that overlaps nothing); rewritten, they
    // go.
    let trivial_move = movable && !(bottom && tombstones);
    Plan {
        level,
        output_level,
        inputs: all,
        bottom,
        trivial_move,
    }
}

/// Whether the tables' key ranges are pairwise disjoint (no user key in two
/// of them).
fn disjoint<'a>(files: impl Iterator<Item = &'a Arc<TableFile>>) -> bool {
    let mut ranges: Vec<(&[u8], &[u8])> = files.map(|f| (f.smallest(), f.largest())).collect();
    ranges.sort_unstable_by(|a, b| crate::coding::compare_bytes(a.0, b.0));
    ranges
        .windows(2)
        .all(|w| crate::coding::compare_bytes(w[0].1, w[1].0) == std::cmp::Ordering::Less)
}

/// The union of the tables' key ranges.
fn key_range<'a>(
    files: impl Iterator<Item = &'a Arc<TableFile>> + Clone,
) -> Option<(Bytes, Bytes)> {
    let smallest = files.clone().map(|f| f.smallest()).min()?;
    let largest = files.map(|f| f.largest()).max()?;
    Some((
        Bytes::copy_from_slice(smallest),
        Bytes::copy_from_slice(largest),
    ))
}

/// The largest keys of the tables of a sorted run, walked in key order
/// by a compaction writing the run above it.
#[derive(Default)]
struct Boundaries {
    ends: Vec<Bytes>,
    /// Tables of the run ending before the last key seen.
    passed: usize,
}

impl Boundaries {
    fn new(run: &[Arc<TableFile>]) -> Boundaries {
        Boundaries {
            ends: run
                .iter()
                .map(|f| Bytes::copy_from_slice(f.largest()))
                .collect(),
            passed: 0,
        }
    }

    /// Whether `key` (no smaller than the keys seen before) is past the
    /// end of a table that ended at or after the previous key.
    fn crossed(&mut self, key: &[u8]) -> bool {
        let before = self.passed;
        while self
            .ends
            .get(self.passed)
            .is_some_and(|end| end.as_ref() < key)
        {
            self.passed += 1;
        }
        self.passed > before
    }
}

/// Partitions with possible compaction work, under `Inner::compaction`.
#[derive(Default)]
pub struct CompactionQueue {
    /// By partition id: the partition and a generation bumped at every
    /// schedule (so a stale "nothing to do" does not drop new work).
    pub(crate) pending: HashMap<u64, (Arc<PartitionState>, u64)>,
    pub(crate) generation: u64,
    pub(crate) shutdown: bool,
    /// A compaction is running on the background thread.
    pub(crate) running: bool,
}

impl Inner {
    pub(crate) fn tuning(&self) -> Tuning {
        Tuning {
            l0_trigger: self.options.l0_compaction_trigger,
            level_base: self.options.level_base_size,
            multiplier: self.options.level_size_multiplier,
            target_file_size: self.options.target_file_size,
            l0_bytes: (self.options.l0_compaction_trigger as u64)
                .saturating_mul(self.options.memtable_size as u64),
        }
    }

    /// Blocks until the compaction thread has nothing left to do (no
    /// partition pending, none running) or shuts down.
    pub(crate) fn wait_for_compactions(&self) {
        let mut q = lock(&self.compaction);
        while !q.shutdown && (q.running || !q.pending.is_empty()) {
            q = self
                .compaction_wake
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Tells the compaction thread that `p` may have work.
    pub(crate) fn schedule_compaction(&self, p: &Arc<PartitionState>) {
        if self.options.disable_auto_compactions {
            return;
        }
        let mut q = lock(&self.compaction);
        q.generation += 1;
        let generation = q.generation;
        q.pending.insert(p.id(), (p.clone(), generation));
        self.compaction_wake.notify_all();
    }

    /// The compaction thread: runs the most urgent compaction across the
    /// pending partitions, one at a time.
    pub(crate) fn compaction_loop(&self) {
        loop {
            let candidates: Vec<(Arc<PartitionState>, u64)> = {
                let mut q = lock(&self.compaction);
                loop {
                    if q.shutdown {
                        return;
                    }
                    if !q.pending.is_empty() {
                        break;
                    }
                    q = self
                        .compaction_wake
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                q.pending.values().cloned().collect()
            };
            let tuning = self.tuning();
            let mut best: Option<(f64, Arc<PartitionState>, u64)> = None;
            let mut idle = Vec::new();
            for (p, generation) in candidates {
                // Gone includes a drop whose manifest edit is applied but
                // failed to sync (the partition is not marked dropped): its
                // compactions would be refused forever.
                let score = if self.partition_gone(&p) {
                    None
                } else {
                    score(&p.levels().levels, &tuning)
                        .map(|due| due.score)
                        // Due by seeks: the least urgent of what is due.
                        .or_else(|| p.seek_due().map(|_| 1.0))
                };
                match score {
                    Some(s) if best.as_ref().is_none_or(|(b, _, _)| s > *b) => {
                        best = Some((s, p, generation));
                    }
                    Some(_) => {}
                    None => idle.push((p.id(), generation)),
                }
            }
            {
                let mut q = lock(&self.compaction);
                for (id, generation) in idle {
                    if q.pending.get(&id).is_some_and(|(_, g)| *g == generation) {
                        q.pending.remove(&id);
                    }
                }
                q.running = best.is_some();
                self.compaction_wake.notify_all();
            }
            let Some((_, p, generation)) = best else {
                continue;
            };
            // A partition dropped meanwhile (its directory may be gone) is
            // no compaction failure.
            let result = match self.compact_step(&p) {
                Err(_) if self.partition_gone(&p) => Ok(false),
                r => r,
            };
            // Let go of the partition before reporting idle: a waiter (e.g.
            // after a drop) may expect the dropped partition's directory,
            // which goes with the last holder, to be gone once it wakes.
            let id = p.id();
            drop(p);
            let mut q = lock(&self.compaction);
            q.running = false;
            if matches!(result, Ok(false))
                && q.pending.get(&id).is_some_and(|(_, g)| *g == generation)
            {
                // Nothing was due after all (the partition went meanwhile):
                // idle until new work is scheduled, not a hot loop.
                q.pending.remove(&id);
            }
            if result.is_err() {
                // Dropped from the queue: retried at the partition's next
                // flush or when a writer stopped on its level 0 asks again,
                // not in a hot loop. (`compact_step` recorded the error on
                // the partition.)
                q.pending.remove(&id);
                drop(q);
                // Writers stopped on level 0 get the error rather than wait.
                self.wake_stalled();
                self.compaction_wake.notify_all();
                continue;
            }
            self.compaction_wake.notify_all();
        }
    }

    /// Runs the most urgent compaction of `p`, if any is due; `false` if
    /// none was.
    ///
    /// # Errors
    /// I/O or corruption; the partition is unchanged.
    pub(crate) fn compact_step(&self, p: &Arc<PartitionState>) -> Result<bool> {
        let result = self.compact_step_unrecorded(p);
        match &result {
            Ok(_) => p.set_compaction_failure(None),
            // A partition dropped meanwhile has no writers left to tell.
            Err(_) if self.partition_gone(p) => {}
            Err(e) => p.set_compaction_failure(Some(e.to_string())),
        }
        result
    }

    /// [`compact_step`](Self::compact_step) without recording its outcome
    /// on the partition.
    fn compact_step_unrecorded(&self, p: &Arc<PartitionState>) -> Result<bool> {
        let mut guard = p.lock_compaction();
        // A dropped partition keeps its tables (its iterators may read
        // them) but has nothing due: a compaction of it would be refused
        // and change nothing, and `compact_due` would pick it forever.
        if self.partition_gone(p) {
            return Ok(false);
        }
        // After a failed edit the manifest refuses every later one, and its
        // state may be ahead of the versions: plan nothing on that state and
        // write no outputs only to delete them.
        self.manifest.ensure_writable()?;
        let tuning = self.tuning();
        let version = p.levels();
        if let Some((_, plan)) = pick(&version.levels, &tuning, &guard.cursors) {
            if plan.level > 0 {
                if let Some((_, f)) = plan.inputs.first() {
                    guard.cursors[plan.level] = Some(Bytes::copy_from_slice(f.largest()));
                }
            }
            self.run_plan(p, &plan)?;
            return Ok(true);
        }
        // Nothing due by size: a table that reads paid for enough?
        let Some(plan) = self.seek_plan(p, &version.levels, &tuning) else {
            return Ok(false);
        };
        self.run_plan(p, &plan)?;
        p.clear_seek_due();
        self.stats.seek_compactions.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The compaction of `p`'s table due by seeks, if there is one, it is
    /// still in `levels` above the bottom, and the seeks charged to it pay
    /// for the bytes the compaction rewrites (else its allowance is raised
    /// to that: it is due again once reads have paid).
    fn seek_plan(&self, p: &PartitionState, levels: &Levels, tuning: &Tuning) -> Option<Plan> {
        let table = p.seek_due()?;
        let plan = plan_seek(levels, &table, tuning).filter(|plan| {
            let rewrites: u64 = if plan.trivial_move {
                0
            } else {
                plan.inputs.iter().map(|(_, f)| f.size()).sum()
            };
            table.seeks_cover(rewrites)
        });
        if plan.is_none() {
            p.clear_seek_due();
        }
        plan
    }

    /// Compacts every table of `p` into one sorted run at the bottom level,
    /// tombstones and shadowed versions dropped (after the caller flushed
    /// its memtables).
    ///
    /// # Errors
    /// I/O or corruption; the partition is unchanged.
    pub(crate) fn compact_all(&self, p: &Arc<PartitionState>) -> Result<()> {
        let _guard = p.lock_compaction();
        self.manifest.ensure_writable()?;
        let version = p.levels();
        let inputs: Vec<(usize, Arc<TableFile>)> = version
            .levels
            .iter()
            .enumerate()
            .flat_map(|(l, run)| run.iter().map(move |f| (l, f.clone())))
            .collect();
        let clean = match inputs.as_slice() {
            [] => true,
            // Written by a bottom-level compaction (all sequence numbers
            // zeroed, so no shadowed versions) and without tombstones.
            [(BOTTOM, f)] => {
                let props = f.table()?.properties().clone();
                props.tombstone_count == 0 && props.max_seq == 0
            }
            _ => false,
        };
        if clean {
            return Ok(());
        }
        let plan = Plan {
            level: 0,
            output_level: BOTTOM,
            inputs,
            bottom: true,
            trivial_move: false,
        };
        self.run_plan(p, &plan)
    }

    /// Executes `plan`: writes the outputs (or moves the inputs), logs the
    /// manifest edit, installs.
    fn run_plan(&self, p: &Arc<PartitionState>, plan: &Plan) -> Result<()> {
        if plan.trivial_move {
            return self.trivial_move(p, plan);
        }
        let read: u64 = plan.inputs.iter().map(|(_, f)| f.size()).sum();
        let outputs = self.write_outputs(p, plan)?;
        let mut changes: Vec<Change> = plan
            .inputs
            .iter()
            .map(|(level, f)| Change::RemoveTable {
                partition: p.id(),
                level: *level as u8,
                file: f.number(),
            })
            .collect();
        let max_file = outputs.iter().map(|r| r.file).max();
        if let Some(n) = max_file {
            changes.insert(0, Change::NextFileNumber(n + 1));
        }
        changes.extend(outputs.iter().map(|r| Change::AddTable(r.clone())));
        let position = match self.manifest.append_with(|_| VersionEdit { changes }) {
            Ok((position, _)) => position,
            Err(e) => {
                // Refused or not appended: nothing refers to the outputs.
                self.remove_tables(p, outputs.iter().map(|r| r.file));
                return if self.partition_gone(p) {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        };
        // A failed sync leaves the edit in the file, perhaps durable: the
        // outputs stay (the manifest is poisoned now; if the edit did not
        // survive, the next open deletes them as orphans).
        if let Err(e) = self.manifest.commit(position) {
            return if self.partition_gone(p) {
                Ok(())
            } else {
                Err(e)
            };
        }
        let written: u64 = outputs.iter().map(|r| r.size).sum();
        let files: Vec<Arc<TableFile>> = outputs
            .iter()
            .map(|r| TableFile::from_record(r, p.dir().clone(), self.tables.clone()))
            .collect();
        let removed: Vec<(usize, u64)> =
            plan.inputs.iter().map(|(l, f)| (*l, f.number())).collect();
        p.install_compaction(&removed, plan.output_level, files);
        for (_, f) in &plan.inputs {
            f.mark_obsolete();
        }
        if p.is_dropped() {
            p.mark_dropped();
        }
        self.wake_stalled();
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        self.stats
            .compaction_bytes_read
            .fetch_add(read, Ordering::Relaxed);
        self.stats
            .compaction_bytes_written
            .fetch_add(written, Ordering::Relaxed);
        if let Some(to) = self
            .stats
            .compaction_bytes_written_to
            .get(plan.output_level)
        {
            to.fetch_add(written, Ordering::Relaxed);
        }
        Ok(())
    }

    fn trivial_move(&self, p: &Arc<PartitionState>, plan: &Plan) -> Result<()> {
        // After a failed edit the manifest's state may already hold an
        // earlier move of these tables that the version lacks (its fsync
        // failed): refuse rather than read that state as a dropped partition
        // and report progress forever.
        self.manifest.ensure_writable()?;
        let records = self.manifest.with_state(|s| {
            let partition = s.partitions.get(&p.id())?;
            plan.inputs
                .iter()
                .map(|(level, file)| {
                    partition
                        .table(file.number())
                        .filter(|t| usize::from(t.level) == *level)
                        .cloned()
                })
                .collect::<Option<Vec<_>>>()
        });
        let Some(records) = records.filter(|r| !r.is_empty()) else {
            // Dropped meanwhile (its tables left the manifest).
            if self.partition_gone(p) {
                return Ok(());
            }
            // Never `Ok` without a change: the caller would pick this move
            // again at once.
            return Err(Error::Io(std::io::Error::other(format!(
                "partition {}: the manifest does not list the tables of a move where their version has them",
                p.id()
            ))));
        };
        let mut changes = Vec::with_capacity(2 * records.len());
        for mut record in records {
            changes.push(Change::RemoveTable {
                partition: p.id(),
                level: record.level,
                file: record.file,
            });
            record.level = plan.output_level as u8;
            changes.push(Change::AddTable(record));
        }
        if let Err(e) = self.manifest.log(&VersionEdit { changes }) {
            return if self.partition_gone(p) {
                Ok(())
            } else {
                Err(e)
            };
        }
        let removed: Vec<(usize, u64)> = plan
            .inputs
            .iter()
            .map(|(level, f)| (*level, f.number()))
            .collect();
        let moved = plan.inputs.iter().map(|(_, f)| f.clone()).collect();
        p.install_compaction(&removed, plan.output_level, moved);
        self.wake_stalled();
        self.stats
            .trivial_moves
            .fetch_add(plan.inputs.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Merges the inputs into new tables cut at the target file size, and
    /// where the key passes the end of a table of the level below the
    /// output once a table holds half the target.
    fn write_outputs(&self, p: &Arc<PartitionState>, plan: &Plan) -> Result<Vec<TableRecord>> {
        let mut outputs: Vec<TableRecord> = Vec::new();
        let mut created: Vec<u64> = Vec::new();
        match self.write_outputs_into(p, plan, &mut outputs, &mut created) {
            Ok(()) => Ok(outputs),
            Err(e) => {
                // Finished or not, no file of a failed compaction stays.
                self.remove_tables(p, created);
                Err(e)
            }
        }
    }

    /// Deletes table files `numbers` of `p` (outputs nothing refers to).
    fn remove_tables(&self, p: &PartitionState, numbers: impl IntoIterator<Item = u64>) {
        for n in numbers {
            let _ = self
                .fs
                .remove_file(&p.dir().path().join(table_file_name(n)));
        }
    }

    fn write_outputs_into(
        &self,
        p: &Arc<PartitionState>,
        plan: &Plan,
        outputs: &mut Vec<TableRecord>,
        created: &mut Vec<u64>,
    ) -> Result<()> {
        // Sources newest first: level 0 (newest first), then each level.
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for level in 0..NUM_LEVELS {
            let run: Vec<Arc<TableFile>> = plan
                .inputs
                .iter()
                .filter(|(l, _)| *l == level)
                .map(|(_, f)| f.clone())
                .collect();
            if run.is_empty() {
                continue;
            }
            if level == 0 {
                for f in run {
                    sources.push(Box::new(f.source(None, false)?));
                }
            } else {
                sources.push(Box::new(LevelSource::new(run, None, false)));
            }
        }
        let options = self.table_options();
        let mut boundaries = if plan.output_level < BOTTOM {
            Boundaries::new(&p.levels().levels[plan.output_level + 1])
        } else {
            Boundaries::default()
        };
        let mut current: Option<(TableBuilder, u64)> = None;
        let mut last_key: Option<Bytes> = None;
        for (n, entry) in MergeIter::new(sources).enumerate() {
            if n % 1024 == 0 && self.closing() {
                return Err(Error::Closed);
            }
            let entry = entry?;
            if last_key.as_ref() == Some(&entry.key) {
                continue; // an older version of a key already written
            }
            last_key = Some(entry.key.clone());
            if plan.bottom && matches!(entry.value, Value::Delete) {
                continue;
            }
            let seq = if plan.bottom { 0 } else { entry.seq };
            // Past the end of a table of the level below the output, an
            // output of at least half the target size ends: it overlaps no
            // more of that level than it must when it is compacted down in
            // turn (RocksDB cuts its outputs at these boundaries too).
            if boundaries.crossed(&entry.key) {
                let half = self.options.target_file_size / 2;
                if current
                    .as_ref()
                    .is_some_and(|(b, _)| b.estimated_size() >= half)
                {
                    if let Some((builder, number)) = current.take() {
                        outputs.push(self.finish_table(p, builder, number, plan.output_level)?);
                    }
                }
            }
            if current.is_none() {
                let number = self.allocate_file_number()?;
                let path = p.dir().path().join(table_file_name(number));
                created.push(number);
                let file = self.fs.create(&path)?;
                current = Some((TableBuilder::new(file, path, p.id(), &options), number));
            }
            if let Some((builder, _)) = &mut current {
                builder.add(&entry.key, seq, &entry.value)?;
                if builder.estimated_size() >= self.options.target_file_size {
                    if let Some((builder, number)) = current.take() {
                        outputs.push(self.finish_table(p, builder, number, plan.output_level)?);
                    }
                }
            }
        }
        if let Some((builder, number)) = current.take() {
            outputs.push(self.finish_table(p, builder, number, plan.output_level)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, SimFs};
    use crate::{Db, Options, WriteOp};

    /// Regression (found by the model test under load: a later write got
    /// "stalled: … compaction failed: table 2 removed from unknown
    /// partition 4"): a drop logs its manifest edit before it marks the
    /// partition dropped; a compaction whose edit the manifest refused in
    /// between reported an error, which stopped writers of other
    /// partitions took as the compaction thread's failure. It is now no
    /// error, and its outputs are deleted.
    /// A database (auto compactions off) whose partition `a` holds two
    /// level-0 tables of the same key — a compaction is due, and it is no
    /// trivial move — and that partition.
    fn two_overlapping_tables(sim: &SimFs) -> (Db, Arc<PartitionState>) {
        let db = Db::open(
            "/db",
            Options {
                fs: Arc::new(sim.clone()),
                disable_auto_compactions: true,
                l0_compaction_trigger: 2,
                ..Options::default()
            },
        )
        .expect("open");
        db.create_partition("a").expect("create");
        for i in 0..2u8 {
            db.write(
                [WriteOp {
                    partition: "a",
                    key: vec![7],
                    value: Some(vec![i; 8]),
                }],
                Some(false),
            )
            .expect("write");
            db.flush_partition("a").expect("flush");
        }
        let p = db
            .inner()
            .partitions_snapshot()
            .into_iter()
            .find(|p| p.name() == "a")
            .expect("partition a");
        (db, p)
    }

    #[test]
    fn a_compaction_refused_by_a_concurrent_drop_is_no_error() {
        let sim = SimFs::new();
        let (db, p) = two_overlapping_tables(&sim);
        let inner = db.inner();
        let dir = p.dir().path().to_path_buf();
        let tables = |sim: &SimFs| sim.read_dir(&dir).expect("read_dir").len();
        assert_eq!(tables(&sim), 2);
        // Planned before the drop.
        let (_, plan) = pick(&p.levels().levels, &inner.tuning(), &Default::default())
            .expect("a compaction is due");
        // The first half of a drop: logged, not yet marked.
        inner
            .manifest
            .log(&VersionEdit::one(Change::DropPartition { id: p.id() }))
            .expect("log the drop");
        assert!(!p.is_dropped());
        let result = inner.run_plan(&p, &plan);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(
            tables(&sim),
            2,
            "the refused compaction's outputs are deleted"
        );
        // Nothing is due in a dropped partition: `compact_due` stops (it
        // looped forever while a step reported progress it did not make).
        assert!(matches!(inner.compact_step(&p), Ok(false)));
        db.compact_due().expect("compact_due");
    }

    /// Regression (found by the op_sequence fuzz target: a `wait_for_compactions`
    /// that never returned): a partition whose drop is in the manifest's state
    /// but not marked (the drop's fsync failed, or it is half done) stayed
    /// pending; each pass picked it, its compaction was refused (or, now,
    /// found nothing due), and the thread spun without ever going idle. Such
    /// a partition is now idle.
    #[test]
    fn a_partition_gone_from_the_manifest_does_not_keep_the_thread_busy() {
        let sim = SimFs::new();
        let (db, p) = two_overlapping_tables(&sim);
        let inner = db.inner().clone();
        assert!(score(&p.levels().levels, &inner.tuning()).is_some(), "due");
        inner
            .manifest
            .log(&VersionEdit::one(Change::DropPartition { id: p.id() }))
            .expect("log the drop");
        assert!(!p.is_dropped());
        // What scheduling does (auto compactions are off, so that nothing
        // ran before the drop).
        {
            let mut q = lock(&inner.compaction);
            q.generation += 1;
            let generation = q.generation;
            q.pending.insert(p.id(), (p.clone(), generation));
            inner.compaction_wake.notify_all();
        }
        drop(p);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            inner.wait_for_compactions();
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("wait_for_compactions returns");
        waiter.join().expect("waiter");
    }

    const MB: u64 = 1 << 20;

    fn tuning() -> Tuning {
        Tuning {
            l0_trigger: 4,
            level_base: 256 * MB,
            multiplier: 10,
            target_file_size: 64 * MB,
            l0_bytes: 256 * MB,
        }
    }

    #[test]
    fn a_small_partition_compacts_level0_into_the_bottom_level() {
        let (base, t) = targets(&[0; NUM_LEVELS], &tuning());
        assert_eq!(base, BOTTOM);
        assert_eq!(t[BOTTOM], 1);
        let mut bytes = [0; NUM_LEVELS];
        bytes[BOTTOM] = 200 * MB;
        assert_eq!(targets(&bytes, &tuning()).0, BOTTOM);
    }

    #[test]
    fn levels_appear_above_the_bottom_as_it_grows() {
        let mut bytes = [0; NUM_LEVELS];
        bytes[BOTTOM] = 1000 * MB;
        let (base, t) = targets(&bytes, &tuning());
        // A tenth of the bottom is 100 MiB: the base level gets the floor.
        assert_eq!((base, t[5]), (5, 256 * MB));
        bytes[BOTTOM] = 100_000 * MB;
        let (base, t) = targets(&bytes, &tuning());
        assert_eq!(base, 3);
        assert_eq!((t[3], t[4], t[5]), (256 * MB, 1000 * MB, 10_000 * MB));
        bytes[BOTTOM] = 5_000 * MB;
        let (base, t) = targets(&bytes, &tuning());
        assert_eq!((base, t[4], t[5]), (4, 256 * MB, 500 * MB));
        // Smaller memtables: the floor is one level-0 compaction's worth.
        let small = Tuning {
            l0_bytes: 40 * MB,
            ..tuning()
        };
        bytes[BOTTOM] = 1000 * MB;
        assert_eq!(
            targets(&bytes, &small),
            (5, {
                let mut t = [0; NUM_LEVELS];
                (t[5], t[6]) = (100 * MB, 1000 * MB);
                t
            })
        );
        bytes[BOTTOM] = 300 * MB;
        assert_eq!(targets(&bytes, &small).1[5], 40 * MB);
        assert_eq!((t[1], t[2]), (0, 0), "above the base level");
        // The largest level sets the scale even if it is not the bottom.
        let mut moved = [0; NUM_LEVELS];
        moved[4] = 1000 * MB;
        assert_eq!(targets(&moved, &tuning()).0, 5);
    }

    #[test]
    fn the_table_overlapping_least_for_its_size_is_picked() {
        let next: Vec<(&[u8], &[u8], u64)> = vec![
            (b"a", b"c", 100),
            (b"d", b"f", 10),
            (b"g", b"i", 100),
            (b"p", b"r", 50),
        ];
        let pick = |candidates: &[(&'static [u8], &'static [u8], u64)], start: usize| {
            least_overlap(candidates.iter().copied(), &next, start)
        };
        // Overlaps 210 (a..h), 10 (e), 0 (j..o), 50 (q..z) bytes.
        let run: [(&[u8], &[u8], u64); 4] = [
            (b"a", b"h", 64),
            (b"e", b"e", 64),
            (b"j", b"o", 64),
            (b"q", b"z", 64),
        ];
        assert_eq!(pick(&run, 0), Some(2), "no overlap wins");
        // Without it: 10 bytes for 64 beats 50 for 64.
        assert_eq!(pick(&[run[0], run[1], run[3]], 0), Some(1));
        // For its size: 210 bytes under a 1000-byte table (0.21) beats 10
        // under a 20-byte one (0.5).
        let sized: [(&[u8], &[u8], u64); 2] = [(b"a", b"h", 1000), (b"e", b"e", 20)];
        assert_eq!(pick(&sized, 0), Some(0));
        // Boundaries: a table ending where a next-level table starts, or
        // starting where one ends, overlaps it (else each would tie with
        // the table overlapping nothing, and win as the first).
        assert_eq!(pick(&[(b"j", b"p", 1), (b"s", b"z", 1)], 0), Some(1));
        assert_eq!(pick(&[(b"c", b"c", 1), (b"s", b"z", 1)], 0), Some(1));
        // Ties go round robin from `start`.
        let ties: [(&[u8], &[u8], u64); 3] = [(b"j", b"k", 8), (b"l", b"m", 8), (b"s", b"t", 8)];
        assert_eq!(pick(&ties, 0), Some(0));
        assert_eq!(pick(&ties, 1), Some(1));
        assert_eq!(pick(&ties, 2), Some(2));
        assert_eq!(pick(&ties, 3), Some(0), "start past the end wraps");
        assert_eq!(pick(&[], 0), None);
        // An empty next level: every ratio is 0, round robin.
        assert_eq!(least_overlap(run.iter().copied(), &[], 3), Some(3));
    }

    #[test]
    fn boundaries_are_crossed_once_past_a_table_end() {
        let mut b = Boundaries {
            ends: vec![
                Bytes::from_static(b"c"),
                Bytes::from_static(b"f"),
                Bytes::from_static(b"g"),
            ],
            passed: 0,
        };
        assert!(!b.crossed(b"a"));
        assert!(!b.crossed(b"c"), "the table's own largest key");
        assert!(b.crossed(b"d"));
        assert!(!b.crossed(b"e"));
        assert!(b.crossed(b"h"), "past two ends at once");
        assert!(!b.crossed(b"z"), "past the last");
        let mut none = Boundaries::default();
        assert!(!none.crossed(b"a"));
    }

    #[test]
    fn level1_is_the_highest_base_level() {
        let mut bytes = [0; NUM_LEVELS];
        bytes[BOTTOM] = u64::MAX / 2;
        let (base, t) = targets(&bytes, &tuning());
        assert_eq!(base, 1);
        assert!(t[1] > 256 * MB);
    }
}
