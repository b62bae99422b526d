//! The two limits that make the flush thread flush a memtable before it is
//! full: the global write-buffer budget ([`Options::write_buffer_size`]) and
//! the WAL size limit ([`Options::max_total_wal_size`]).
//!
//! - [`MemoryUsage`] counts the bytes of memtables that hold unflushed data:
//!   *active* (mutable) ones and immutable ones waiting for their flush. A
//!   flushed memtable that an iterator still holds counts for nothing.
//! - [`WalSpace`] knows the live WAL files and their sizes.
//!
//! The commit leader checks both after each group with a few atomic loads
//! and, when a limit is exceeded, asks the flush thread to act; the flush
//! thread picks what to rotate (see `Inner::enforce_limits` in `flush.rs`).
//! Neither limit slows writers down: when flushes cannot keep up, memory and
//! WAL grow past them (write stalls are a separate mechanism).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::locks::lock;
use crate::options::Options;

/// Bytes of memtables that hold unflushed data, across partitions.
///
/// Updated only by `PartitionState` while it holds its own lock, together
/// with the change to its memtables (insert, rotate, flush installed,
/// partition dropped), so the counters are exact sums of
/// `Memtable::approximate_size` — they never drift.
#[derive(Debug, Default)]
pub struct MemoryUsage {
    /// Active and immutable memtables not yet flushed.
    unflushed: AtomicUsize,
    /// Active memtables only.
    active: AtomicUsize,
}

impl MemoryUsage {
    /// Bytes of active and immutable memtables not yet flushed: what
    /// counts against `write_buffer_size`.
    pub fn unflushed(&self) -> usize {
        self.unflushed.load(Ordering::Acquire)
    }

    /// Bytes of active memtables: the usage once the flushes already
    /// scheduled complete.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// `bytes` were inserted into an active memtable.
    pub(crate) fn inserted(&self, bytes: usize) {
        self.unflushed.fetch_add(bytes, Ordering::AcqRel);
        self.active.fetch_add(bytes, Ordering::AcqRel);
    }

    /// An active memtable of `bytes` became immutable.
    pub(crate) fn rotated(&self, bytes: usize) {
        sub(&self.active, bytes);
    }

    /// An immutable memtable of `bytes` was flushed (or its partition
    /// dropped).
    pub(crate) fn released(&self, bytes: usize) {
        sub(&self.unflushed, bytes);
    }
}

fn sub(counter: &AtomicUsize, bytes: usize) {
    let before = counter.fetch_sub(bytes, Ordering::AcqRel);
    debug_assert!(before >= bytes, "memory accounting underflow");
}

/// What rotations for the budget bring the active bytes down to: 3/4 of
/// the budget.
pub fn budget_target(budget: usize) -> usize {
    budget - budget / 4
}

/// Whether the budget asks for rotations: the unflushed bytes exceed it and
/// the active ones exceed 7/8 of it. When the active bytes are lower, the
/// flushes already scheduled bring usage under the budget. The gap between
/// 7/8 (trigger) and 3/4 ([`budget_target`]) makes each round of rotations
/// free at least 1/8 of the budget, so the flush thread does not rescan the
/// partitions at every write while its flushes lag behind.
pub fn over_budget(usage: &MemoryUsage, budget: usize) -> bool {
    budget > 0 && usage.unflushed() > budget && usage.active() > budget - budget / 8
}

/// Chooses memtables to rotate for the budget: `candidates` are
/// `(active bytes, partition)`; the largest go first until the projected
/// active bytes are at most `target`. Returns the chosen ones, largest first.
pub fn pick_largest<T>(
    mut candidates: Vec<(usize, T)>,
    mut projected: usize,
    target: usize,
) -> Vec<(usize, T)> {
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut chosen = Vec::new();
    for (size, item) in candidates {
        if projected <= target || size == 0 {
            break;
        }
        projected = projected.saturating_sub(size);
        chosen.push((size, item));
    }
    chosen
}

/// The WAL size limit in effect: `max_total_wal_size`, or 4 ×
/// `write_buffer_size` when it is 0 (unlimited when both are 0).
pub fn max_total_wal_size(options: &Options) -> u64 {
    match options.max_total_wal_size {
        0 if options.write_buffer_size == 0 => u64::MAX,
        0 => (options.write_buffer_size as u64).saturating_mul(4),
        n => n,
    }
}

/// The live WAL files: every file from the oldest one a memtable may still
/// need up to the one being written.
#[derive(Debug)]
pub struct WalSpace {
    /// Number → size; the file being written maps to 0 until it is rotated.
    files: Mutex<BTreeMap<u64, u64>>,
    /// Total size of the live files other than the one being written.
    closed_bytes: AtomicU64,
    /// Number of the oldest live file.
    oldest: AtomicU64,
    /// Highest file number whose partitions were already made to flush
    /// because of the size limit (not asked again).
    forced: AtomicU64,
    /// Live file number → sequence number of its first write batch, where
    /// known (recorded in the manifest as `WalStart` when the file becomes
    /// the oldest one needed).
    starts: Mutex<BTreeMap<u64, u64>>,
}

impl WalSpace {
    /// The files kept by recovery (number → size) and the new current one.
    pub fn new(mut closed: BTreeMap<u64, u64>, current: u64) -> Self {
        let closed_bytes = closed.values().sum();
        closed.insert(current, 0);
        let oldest = closed.keys().next().copied().unwrap_or(current);
        WalSpace {
            files: Mutex::new(closed),
            closed_bytes: AtomicU64::new(closed_bytes),
            oldest: AtomicU64::new(oldest),
            forced: AtomicU64::new(0),
            starts: Mutex::new(BTreeMap::new()),
        }
    }

    /// File `number`'s first write batch has (or will have) sequence number
    /// `seq`.
    pub fn started(&self, number: u64, seq: u64) {
        lock(&self.starts).insert(number, seq);
    }

    /// The sequence number file `number` starts at, if known.
    pub fn start_of(&self, number: u64) -> Option<u64> {
        lock(&self.starts).get(&number).copied()
    }

    /// The WAL moved from file `old` (final size `old_len`) to `new`.
    pub fn rotated(&self, old: u64, old_len: u64, new: u64) {
        let mut files = lock(&self.files);
        files.insert(old, old_len);
        files.insert(new, 0);
        self.closed_bytes.fetch_add(old_len, Ordering::AcqRel);
    }

    /// Live files numbered below `needed`, ascending.
    pub fn below(&self, needed: u64) -> Vec<u64> {
        lock(&self.files).range(..needed).map(|(n, _)| *n).collect()
    }

    /// File `number` was deleted.
    pub fn removed(&self, number: u64) {
        let mut files = lock(&self.files);
        if let Some(size) = files.remove(&number) {
            self.closed_bytes.fetch_sub(size, Ordering::AcqRel);
        }
        if let Some(first) = files.keys().next() {
            self.oldest.store(*first, Ordering::Release);
        }
        drop(files);
        lock(&self.starts).remove(&number);
    }

    /// Number of live files.
    pub fn count(&self) -> usize {
        lock(&self.files).len()
    }

    /// Total size of the live files other than the one being written.
    pub fn closed_bytes(&self) -> u64 {
        self.closed_bytes.load(Ordering::Acquire)
    }

    /// Number of the oldest live file.
    pub fn oldest(&self) -> u64 {
        self.oldest.load(Ordering::Acquire)
    }

    /// Whether the live files exceed `limit` while the oldest one — not the
    /// file being written (`current`, `current_len` bytes so far) — was not
    /// forced yet.
    pub fn over_limit(&self, current: u64, current_len: u64, limit: u64) -> bool {
        let oldest = self.oldest();
        oldest < current
            && oldest > self.forced.load(Ordering::Acquire)
            && self.closed_bytes().saturating_add(current_len) > limit
    }

    /// If [`over_limit`](Self::over_limit), marks the oldest file forced and
    /// returns its number: the caller flushes every memtable holding data in
    /// it.
    pub fn claim_oldest(&self, current: u64, current_len: u64, limit: u64) -> Option<u64> {
        if !self.over_limit(current, current_len, limit) {
            return None;
        }
        let oldest = self.oldest();
        self.forced.fetch_max(oldest, Ordering::AcqRel);
        Some(oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_first_until_the_target() {
        let candidates = vec![(10, 'c'), (40, 'a'), (0, 'z'), (20, 'b'), (5, 'd')];
        // 75 active bytes, target 56: `a` alone brings it to 35.
        let chosen: Vec<char> = pick_largest(candidates.clone(), 75, 56)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        assert_eq!(chosen, vec!['a']);
        // Target 10: a (→35), b (→15), c (→5).
        let chosen: Vec<char> = pick_largest(candidates.clone(), 75, 10)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        assert_eq!(chosen, vec!['a', 'b', 'c']);
        // Already under the target: nothing; empty memtables never.
        assert!(pick_largest(candidates.clone(), 50, 56).is_empty());
        assert_eq!(pick_largest(candidates, 1000, 0).len(), 4);
    }

    #[test]
    fn budget_trigger_and_target() {
        let usage = MemoryUsage::default();
        usage.inserted(900);
        assert!(!over_budget(&usage, 1000));
        assert!(!over_budget(&usage, 0), "0 disables the budget");
        usage.inserted(200);
        assert!(over_budget(&usage, 1000));
        // Rotated: the active bytes (what remains after the scheduled
        // flushes) are under the target, so nothing more to rotate.
        usage.rotated(800);
        assert_eq!((usage.unflushed(), usage.active()), (1100, 300));
        assert!(!over_budget(&usage, 1000));
        usage.released(800);
        assert_eq!(usage.unflushed(), 300);
        assert_eq!(budget_target(1000), 750);
        // Over the budget with active bytes between 3/4 and 7/8: the
        // immutable ones will do.
        usage.inserted(820);
        usage.rotated(300);
        assert_eq!((usage.unflushed(), usage.active()), (1120, 820));
        assert!(!over_budget(&usage, 1000));
        usage.inserted(60);
        assert!(over_budget(&usage, 1000));
    }

    #[test]
    fn wal_limit_defaults_to_four_write_buffers() {
        let mut o = Options {
            write_buffer_size: 100,
            ..Options::default()
        };
        assert_eq!(max_total_wal_size(&o), 400);
        o.max_total_wal_size = 7;
        assert_eq!(max_total_wal_size(&o), 7);
        o.max_total_wal_size = 0;
        o.write_buffer_size = 0;
        assert_eq!(max_total_wal_size(&o), u64::MAX);
    }

    #[test]
    fn oldest_wal_is_claimed_once() {
        let space = WalSpace::new(BTreeMap::from([(3, 100), (4, 100)]), 5);
        assert_eq!(
            (space.count(), space.closed_bytes(), space.oldest()),
            (3, 200, 3)
        );
        assert!(
            !space.over_limit(5, 50, 250),
            "250 bytes is within the limit"
        );
        assert!(space.over_limit(5, 51, 250));
        assert_eq!(space.claim_oldest(5, 51, 250), Some(3));
        assert_eq!(space.claim_oldest(5, 51, 250), None, "3 is already forced");
        assert_eq!(space.below(5), vec![3, 4]);
        space.removed(3);
        assert_eq!((space.closed_bytes(), space.oldest()), (100, 4));
        assert_eq!(space.claim_oldest(5, 200, 250), Some(4));
        space.removed(4);
        space.rotated(5, 300, 6);
        assert_eq!(
            (space.count(), space.closed_bytes(), space.oldest()),
            (2, 300, 5)
        );
        // Only the file being written would be left: never claimed.
        let only = WalSpace::new(BTreeMap::new(), 9);
        assert!(!only.over_limit(9, u64::MAX, 1));
    }
}
