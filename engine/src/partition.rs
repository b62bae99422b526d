//! In-memory state of one partition: its memtables and its tables.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use bytes::Bytes;

use crate::error::Result;
use crate::locks::{lock, read, write};
use crate::memtable::{Memtable, SeqNo, Value};
use crate::merge::{Entry, Source};
use crate::table_file::{PartitionDir, TableFile, TableSource};
use crate::write_buffer::MemoryUsage;

/// What [`PartitionState::insert`] did to the memtables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    /// The active memtable had reached `memtable_size` and was rotated to
    /// immutable before the insert (to be flushed).
    pub rotated: bool,
    /// The active memtable has reached `memtable_size` with this insert:
    /// the next one rotates it.
    pub full: bool,
}

/// One partition: an id (never reused), its name, its memtables and tables.
///
/// A partition with no data has no memtable, no table and no directory: the
/// active memtable is created by the first write, the directory by the first
/// flush. Thread-safety: `Send + Sync`; inserts come from the single
/// group-commit leader (or recovery), reads from any thread, flushes from the
/// flush thread.
///
/// Invariant: for each key, a newer memtable or table only holds newer
/// versions than an older one (inserts follow sequence order per partition;
/// recovery inserts each key's versions oldest first), so a read may stop at
/// the first memtable or table that knows the key.
///
/// Memory accounting: every change to the memtables (insert, rotation,
/// flush installed, drop) updates the shared [`MemoryUsage`] while holding
/// the partition's lock, so the global counters stay exact even when a
/// write or a flush races with a drop.
#[derive(Debug)]
pub struct PartitionState {
    id: u64,
    name: String,
    tables: RwLock<Tables>,
    dropped: AtomicBool,
    /// Entries up to this sequence number are in tables.
    flushed_seq: AtomicU64,
    /// The directory of its tables.
    dir: Arc<PartitionDir>,
    /// Held while a compaction of the partition runs.
    compaction: Mutex<CompactionState>,
    /// The database's memtable byte counters.
    usage: Arc<MemoryUsage>,
    /// The partition waits in the flush queue.
    queued: AtomicBool,
    /// The errors of its last background flush and compaction, if they
    /// failed; cleared by the next that succeeds.
    failures: Mutex<Failures>,
    /// Reads charge tables seeks ([`Options::seek_compaction`](crate::Options::seek_compaction)).
    charge_seeks: bool,
    /// The table whose seek allowance ran out, due for a compaction (see
    /// [`TableFile::charge_seek`]); one at a time.
    seek_due: Mutex<Option<Weak<TableFile>>>,
    /// `seek_due` is set (a check without the lock for readers charging
    /// seeks); changed only with `seek_due`, under its lock.
    seek_pending: AtomicBool,
    /// A table became due since the last
    /// [`take_seek_signal`](Self::take_seek_signal).
    seek_signal: AtomicBool,
}

/// A partition's background failures (see [`PartitionState::flush_failure`]).
#[derive(Debug, Default)]
struct Failures {
    flush: Option<Box<str>>,
    compaction: Option<Box<str>>,
}

/// Per-partition compaction state, under the partition's compaction lock.
#[derive(Debug, Default)]
pub struct CompactionState {
    /// Per level, the largest key of the table last compacted out of it.
    pub cursors: [Option<Bytes>; NUM_LEVELS],
}

#[derive(Debug, Default)]
struct Tables {
    active: Option<Arc<Memtable>>,
    /// Full memtables, oldest first.
    immutables: Vec<Arc<Memtable>>,
    /// The current version: the tables by level. Replaced, never changed
    /// in place, so a reader takes it with one `Arc` clone.
    version: Arc<Version>,
}

/// The tables of a partition at one moment.
///
/// Level 0: newest first, ranges may overlap. Levels 1..: each a sorted
/// run, ordered by key, ranges disjoint. For any key, a table in a
/// lower-numbered level holds only newer versions than one in a
/// higher-numbered level.
#[derive(Debug, Default, Clone)]
pub struct Version {
    /// Tables by level.
    pub levels: [Vec<Arc<TableFile>>; NUM_LEVELS],
    /// The largest sequence number flushed into a table since open (0 for
    /// tables found at open: everything then is visible). Compaction adds no
    /// new entries, so it does not change it.
    pub max_seq: SeqNo,
}

/// Number of levels (0 to 6).
pub const NUM_LEVELS: usize = 7;

/// A partition's readable state at one moment, newest first.
pub struct ReadSet {
    memtables: Vec<Arc<Memtable>>,
    version: Arc<Version>,
}

impl PartitionState {
    /// A partition with no data whose tables go to `dir`, charging its
    /// memtables to `usage`.
    pub fn new(id: u64, name: String, dir: Arc<PartitionDir>, usage: Arc<MemoryUsage>) -> Self {
        PartitionState {
            id,
            name,
            tables: RwLock::new(Tables::default()),
            dropped: AtomicBool::new(false),
            flushed_seq: AtomicU64::new(0),
            dir,
            compaction: Mutex::new(CompactionState::default()),
            usage,
            queued: AtomicBool::new(false),
            failures: Mutex::new(Failures::default()),
            charge_seeks: true,
            seek_due: Mutex::new(None),
            seek_pending: AtomicBool::new(false),
            seek_signal: AtomicBool::new(false),
        }
    }

    /// The partition with reads charging seeks (the default) or not.
    #[must_use]
    pub fn charging_seeks(mut self, on: bool) -> Self {
        self.charge_seeks = on;
        self
    }

    /// The error of the partition's last flush if it failed (no flush has
    /// succeeded since). Its writers stopped on memtables waiting for a
    /// flush get it instead of waiting.
    pub(crate) fn flush_failure(&self) -> Option<String> {
        lock(&self.failures).flush.as_deref().map(str::to_owned)
    }

    /// Records the outcome of a flush of this partition.
    pub(crate) fn set_flush_failure(&self, error: Option<String>) {
        lock(&self.failures).flush = error.map(String::into_boxed_str);
    }

    /// The error of the partition's last compaction if it failed (none has
    /// succeeded since). Its writers stopped on level 0 get it instead of
    /// waiting.
    pub(crate) fn compaction_failure(&self) -> Option<String> {
        lock(&self.failures)
            .compaction
            .as_deref()
            .map(str::to_owned)
    }

    /// Records the outcome of a compaction step of this partition.
    pub(crate) fn set_compaction_failure(&self, error: Option<String>) {
        lock(&self.failures).compaction = error.map(String::into_boxed_str);
    }

    /// The directory of the partition's tables.
    pub fn dir(&self) -> &Arc<PartitionDir> {
        &self.dir
    }

    /// The partition's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The partition's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the partition dropped: its tables are deleted once no iterator
    /// holds them, a flush in progress installs nothing, and its memtables
    /// stop counting in the memory usage.
    pub fn mark_dropped(&self) {
        let tables = write(&self.tables);
        if !self.dropped.swap(true, Ordering::AcqRel) {
            if let Some(a) = &tables.active {
                self.usage.rotated(a.approximate_size());
                self.usage.released(a.approximate_size());
            }
            for m in &tables.immutables {
                self.usage.released(m.approximate_size());
            }
        }
        // Also on a second call: a compaction that installed tables after
        // the drop marks them too.
        self.dir.mark_dropped();
        for t in tables.version.levels.iter().flatten() {
            t.mark_obsolete();
        }
    }

    /// Marks the partition queued for a flush; `false` if it already was.
    pub fn mark_queued(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// The flush thread took the partition off the queue.
    pub fn clear_queued(&self) {
        self.queued.store(false, Ordering::Release);
    }

    /// Whether the partition was dropped.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Entries up to this sequence number are in tables.
    pub fn flushed_seq(&self) -> SeqNo {
        self.flushed_seq.load(Ordering::Acquire)
    }

    /// Sets the flushed point (at open).
    pub fn set_flushed_seq(&self, seq: SeqNo) {
        self.flushed_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// Adds a table found in the manifest at open (level-0 tables oldest
    /// first, that is in increasing file number).
    pub fn push_table(&self, level: usize, table: Arc<TableFile>) {
        let mut tables = write(&self.tables);
        let version = Arc::make_mut(&mut tables.version);
        let Some(run) = version.levels.get_mut(level) else {
            return;
        };
        if level == 0 {
            run.insert(0, table);
        } else {
            let at = run.partition_point(|t| t.smallest() < table.smallest());
            run.insert(at, table);
        }
    }

    /// Serialises compactions of this partition.
    pub fn lock_compaction(&self) -> MutexGuard<'_, CompactionState> {
        lock(&self.compaction)
    }

    /// The tables by level, now.
    pub fn levels(&self) -> Arc<Version> {
        read(&self.tables).version.clone()
    }

    /// Replaces compacted tables: removes `removed` (level, file number)
    /// and adds `added` to `level` in key order, atomically for readers.
    pub fn install_compaction(
        &self,
        removed: &[(usize, u64)],
        level: usize,
        added: Vec<Arc<TableFile>>,
    ) {
        let mut tables = write(&self.tables);
        let version = Arc::make_mut(&mut tables.version);
        for (l, number) in removed {
            if let Some(run) = version.levels.get_mut(*l) {
                run.retain(|t| t.number() != *number);
            }
        }
        // A table due by seeks that this compaction took is no longer due:
        // another table may become due now.
        self.forget_seek_due_if(|t| removed.iter().any(|(_, n)| *n == t.number()));
        if let Some(run) = version.levels.get_mut(level) {
            for t in added {
                if level == 0 {
                    run.push(t);
                } else {
                    let at = run.partition_point(|x| x.smallest() < t.smallest());
                    run.insert(at, t);
                }
            }
        }
    }

    /// Files and bytes per level.
    pub fn level_shape(&self) -> [(usize, u64); NUM_LEVELS] {
        let tables = read(&self.tables);
        std::array::from_fn(|l| {
            let run = &tables.version.levels[l];
            (run.len(), run.iter().map(|t| t.size()).sum())
        })
    }

    /// Checks that every level from 1 is a sorted run of disjoint tables.
    ///
    /// # Errors
    /// A description of the first overlap.
    pub fn check_levels(&self) -> std::result::Result<(), String> {
        let tables = read(&self.tables);
        for (level, run) in tables.version.levels.iter().enumerate().skip(1) {
            for pair in run.windows(2) {
                if pair[0].largest() >= pair[1].smallest() {
                    return Err(format!(
                        "tables {} and {} of level {level} overlap",
                        pair[0].number(),
                        pair[1].number()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Inserts one version (the memtable copies the bytes); says whether the
    /// active memtable was rotated to immutable first (it had reached
    /// `memtable_size`) and whether it has reached it now. A new memtable
    /// records `wal`, the WAL file the entry was written to.
    pub fn insert(
        &self,
        key: &[u8],
        seq: SeqNo,
        value: Option<&[u8]>,
        memtable_size: usize,
        wal: u64,
    ) -> Inserted {
        self.insert_with(|m| m.insert(key, seq, value), memtable_size, wal)
    }

    /// Inserts a batch of versions, in internal-key order (see
    /// [`Memtable::insert_sorted`]), into one memtable; otherwise as
    /// [`insert`](Self::insert). A batch that would carry the active
    /// memtable past `memtable_size` goes in one version at a time, in
    /// sequence order, so that the memtable rotates where it fills (no
    /// memtable grows past its size by more than about one entry: a batch
    /// is planned at [`ENTRY_OVERHEAD`](crate::memtable::ENTRY_OVERHEAD) per
    /// entry, its nodes are charged their exact size) and no version
    /// lands in an older memtable than an older version of its key.
    pub fn insert_sorted(
        &self,
        entries: &[crate::memtable::Version<'_>],
        memtable_size: usize,
        wal: u64,
    ) -> Inserted {
        let charge = || -> usize {
            entries
                .iter()
                .map(|(key, _, value)| {
                    key.len() + value.map_or(0, <[u8]>::len) + crate::memtable::ENTRY_OVERHEAD
                })
                .sum()
        };
        if entries.len() > 1 && self.active_size().saturating_add(charge()) > memtable_size {
            let mut by_seq = entries.to_vec();
            by_seq.sort_unstable_by_key(|(_, seq, _)| *seq);
            let mut out = Inserted::default();
            for (key, seq, value) in by_seq {
                let inserted = self.insert(key, seq, value, memtable_size, wal);
                out.rotated |= inserted.rotated;
                out.full |= inserted.full;
            }
            return out;
        }
        self.insert_with(|m| m.insert_sorted(entries), memtable_size, wal)
    }

    /// Runs `insert` (which returns its charge) on the active memtable,
    /// rotating it first if full; see [`insert`](Self::insert).
    fn insert_with(
        &self,
        insert: impl FnOnce(&Memtable) -> usize,
        memtable_size: usize,
        wal: u64,
    ) -> Inserted {
        // The insert happens under the lock (shared: concurrent inserts
        // proceed) so that the accounting cannot interleave with a rotation
        // or a drop.
        {
            let tables = read(&self.tables);
            if let Some(a) = tables
                .active
                .as_ref()
                .filter(|a| a.approximate_size() < memtable_size)
            {
                let charge = insert(a);
                self.charge(charge);
                return Inserted {
                    rotated: false,
                    full: a.approximate_size() >= memtable_size,
                };
            }
        }
        let mut tables = write(&self.tables);
        let mut rotated = false;
        let active = match tables.active.take() {
            Some(a) if a.approximate_size() < memtable_size => a,
            full => {
                if let Some(full) = full.filter(|f| !f.is_empty()) {
                    if !self.is_dropped() {
                        self.usage.rotated(full.approximate_size());
                    }
                    tables.immutables.push(full);
                    rotated = true;
                }
                Arc::new(Memtable::for_wal(wal))
            }
        };
        let charge = insert(&active);
        let full = active.approximate_size() >= memtable_size;
        tables.active = Some(active);
        self.charge(charge);
        Inserted { rotated, full }
    }

    /// Counts inserted bytes (the caller holds the lock, shared or not).
    fn charge(&self, bytes: usize) {
        if !self.is_dropped() {
            self.usage.inserted(bytes);
        }
    }

    /// Makes the active memtable immutable (to flush it); `false` if there
    /// is none or it is empty.
    pub fn rotate(&self) -> bool {
        self.rotate_if(|_| true).is_some()
    }

    /// Makes the active memtable immutable if it is not empty and `pick`
    /// accepts it; returns its size.
    pub fn rotate_if(&self, pick: impl FnOnce(&Memtable) -> bool) -> Option<usize> {
        let mut tables = write(&self.tables);
        match tables.active.take() {
            Some(a) if !a.is_empty() && pick(&a) => {
                let size = a.approximate_size();
                if !self.is_dropped() {
                    self.usage.rotated(size);
                }
                tables.immutables.push(a);
                Some(size)
            }
            other => {
                tables.active = other;
                None
            }
        }
    }

    /// Bytes of the active memtable (0 if none).
    pub fn active_size(&self) -> usize {
        read(&self.tables)
            .active
            .as_ref()
            .map_or(0, |a| a.approximate_size())
    }

    /// The oldest immutable memtable, the next to flush.
    pub fn oldest_immutable(&self) -> Option<Arc<Memtable>> {
        read(&self.tables).immutables.first().cloned()
    }

    /// Replaces a flushed memtable by its table, atomically for readers.
    pub fn install_flushed(&self, memtable: &Arc<Memtable>, table: Arc<TableFile>) {
        let mut tables = write(&self.tables);
        let version = Arc::make_mut(&mut tables.version);
        version.levels[0].insert(0, table);
        version.max_seq = version.max_seq.max(memtable.max_seq());
        let before = tables.immutables.len();
        tables.immutables.retain(|m| !Arc::ptr_eq(m, memtable));
        if tables.immutables.len() < before && !self.is_dropped() {
            self.usage.released(memtable.approximate_size());
        }
    }

    /// The oldest WAL file holding entries of a memtable of this partition.
    pub fn min_wal(&self) -> Option<u64> {
        let tables = read(&self.tables);
        tables
            .active
            .iter()
            .chain(tables.immutables.iter())
            .filter(|m| !m.is_empty())
            .map(|m| m.wal())
            .min()
    }

    /// What a read sees now: memtables and tables, newest first.
    pub fn read_set(&self) -> ReadSet {
        let tables = read(&self.tables);
        ReadSet {
            memtables: tables
                .active
                .iter()
                .chain(tables.immutables.iter().rev())
                .cloned()
                .collect(),
            version: tables.version.clone(),
        }
    }

    /// What a read at the current sequence number sees, and that number.
    ///
    /// The sequence number is read *before* the memtables and tables: a
    /// batch published later is then invisible as a whole, even if a
    /// memtable rotation split its entries between two memtables. But a
    /// table installed in between could hold entries above it — and
    /// compaction may have dropped the older versions they shadow — so if
    /// the version's newest flushed entry is above the number, the read
    /// starts over: every entry of an installed table was visible before the
    /// install, so the next attempt succeeds unless yet another table was
    /// installed meanwhile.
    pub fn read_set_at(&self, visible: &AtomicU64) -> (ReadSet, SeqNo) {
        loop {
            let snapshot = visible.load(Ordering::Acquire);
            let set = self.read_set();
            if set.version.max_seq <= snapshot {
                return (set, snapshot);
            }
        }
    }

    /// The newest version of `key` visible now (see
    /// [`read_set_at`](Self::read_set_at)): `Some(Some(v))` a value,
    /// `Some(None)` deleted, `None` unknown.
    ///
    /// # Errors
    /// I/O or corruption reading a table.
    pub fn get(&self, key: &[u8], visible: &AtomicU64) -> Result<Option<Option<Bytes>>> {
        let (set, snapshot) = self.read_set_at(visible);
        for m in &set.memtables {
            match m.get(key, snapshot) {
                Some(Value::Put(v)) => return Ok(Some(Some(v))),
                Some(Value::Delete) => return Ok(Some(None)),
                None => {}
            }
        }
        let candidates = set.version.levels[0].iter().chain(
            set.version.levels[1..]
                .iter()
                .filter_map(|run| table_for_key(run, key)),
        );
        // The first table whose data block was read, until a second is read
        // (then it is charged a seek, as LevelDB does).
        let mut first_read: Option<&Arc<TableFile>> = None;
        let mut charged = false;
        for t in candidates {
            let (found, read) = t.get(key, snapshot)?;
            if read && !charged {
                match first_read {
                    None => first_read = Some(t),
                    Some(first) => {
                        self.charge_seek(first);
                        charged = true;
                    }
                }
            }
            match found {
                Some(Value::Put(v)) => return Ok(Some(Some(v))),
                Some(Value::Delete) => return Ok(Some(None)),
                None => {}
            }
        }
        Ok(None)
    }

    /// Charges `table` a wasted seek; once its allowance is spent, it is
    /// the partition's table due for a seek compaction (unless another
    /// already is) and the seek signal is raised.
    fn charge_seek(&self, table: &Arc<TableFile>) {
        if !self.charge_seeks || !table.charge_seek() || self.seek_pending.load(Ordering::Relaxed) {
            return;
        }
        let mut due = lock(&self.seek_due);
        if due.is_none() {
            *due = Some(Arc::downgrade(table));
            self.seek_pending.store(true, Ordering::Relaxed);
            self.seek_signal.store(true, Ordering::Release);
        }
    }

    /// Whether a table became due for a seek compaction since the last call
    /// (then the caller schedules the partition's compaction).
    pub fn take_seek_signal(&self) -> bool {
        self.seek_signal.load(Ordering::Relaxed) && self.seek_signal.swap(false, Ordering::Acquire)
    }

    /// The table due for a seek compaction, if any. One gone meanwhile
    /// (another compaction took it and nothing holds it) is forgotten, so
    /// that another table can become due.
    pub fn seek_due(&self) -> Option<Arc<TableFile>> {
        if !self.seek_pending.load(Ordering::Relaxed) {
            return None;
        }
        let table = lock(&self.seek_due).as_ref().and_then(Weak::upgrade);
        if table.is_none() {
            self.forget_seek_due_if(|_| false);
        }
        table
    }

    /// Forgets the table due for a seek compaction (compacted, gone, or its
    /// allowance raised); another table may become due.
    pub fn clear_seek_due(&self) {
        self.forget_seek_due_if(|_| true);
    }

    /// Forgets the table due for a seek compaction if it is gone or `taken`
    /// says so.
    fn forget_seek_due_if(&self, taken: impl FnOnce(&TableFile) -> bool) {
        if !self.seek_pending.load(Ordering::Relaxed) {
            return;
        }
        let mut due = lock(&self.seek_due);
        if due
            .as_ref()
            .and_then(Weak::upgrade)
            .is_none_or(|t| taken(&t))
        {
            *due = None;
            self.seek_pending.store(false, Ordering::Relaxed);
        }
    }

    /// Iterator sources from `start`, newest first (pinned: they hold the
    /// memtables and table files they read), and the sequence number to
    /// read them at (see [`read_set_at`](Self::read_set_at)).
    ///
    /// # Errors
    /// I/O or corruption opening a table.
    pub fn sources(
        &self,
        start: Option<&[u8]>,
        visible: &AtomicU64,
    ) -> Result<(Vec<Box<dyn Source>>, SeqNo)> {
        let (set, snapshot) = self.read_set_at(visible);
        self.charge_scan(&set.version, start);
        let mut out: Vec<Box<dyn Source>> =
            Vec::with_capacity(set.memtables.len() + set.version.levels[0].len() + NUM_LEVELS);
        for m in &set.memtables {
            out.push(Box::new(m.iter(start)));
        }
        for t in &set.version.levels[0] {
            out.push(Box::new(t.source(start, true)?));
        }
        for run in &set.version.levels[1..] {
            if !run.is_empty() {
                out.push(Box::new(LevelSource::new(run.clone(), start, true)));
            }
        }
        Ok((out, snapshot))
    }

    /// Charges a scan from `start` a seek: if more than one sorted run of
    /// `version` holds keys from `start` on (each is read to position the
    /// scan), the first of them (the newest) is charged.
    fn charge_scan(&self, version: &Version, start: Option<&[u8]>) {
        let from = |t: &&Arc<TableFile>| start.is_none_or(|s| t.largest() >= s);
        let mut runs =
            version.levels[0]
                .iter()
                .filter(from)
                .chain(version.levels[1..].iter().filter_map(|run| match start {
                    None => run.first(),
                    Some(s) => run.get(run.partition_point(|t| t.largest() < s)),
                }));
        if let (Some(first), Some(_)) = (runs.next(), runs.next()) {
            self.charge_seek(first);
        }
    }

    /// Approximate bytes held in memtables.
    pub fn memory(&self) -> usize {
        let tables = read(&self.tables);
        tables
            .active
            .iter()
            .chain(tables.immutables.iter())
            .map(|t| t.approximate_size())
            .sum()
    }

    /// Bytes of the partition's table files.
    pub fn table_bytes(&self) -> u64 {
        read(&self.tables)
            .version
            .levels
            .iter()
            .flatten()
            .map(|t| t.size())
            .sum()
    }

    /// Number of table files.
    pub fn table_count(&self) -> usize {
        read(&self.tables).version.levels.iter().map(Vec::len).sum()
    }

    /// Number of memtables (active + immutable).
    pub fn memtable_count(&self) -> usize {
        let tables = read(&self.tables);
        usize::from(tables.active.is_some()) + tables.immutables.len()
    }

    /// Number of immutable memtables waiting for a flush.
    pub fn immutable_count(&self) -> usize {
        read(&self.tables).immutables.len()
    }

    /// Number of level-0 tables.
    pub fn l0_count(&self) -> usize {
        read(&self.tables).version.levels[0].len()
    }
}

/// The table of a sorted run (level >= 1) whose key range holds `key`.
fn table_for_key<'a>(run: &'a [Arc<TableFile>], key: &[u8]) -> Option<&'a Arc<TableFile>> {
    let i = run.partition_point(|t| t.largest() < key);
    run.get(i).filter(|t| t.smallest() <= key)
}

/// A streaming source over a sorted run of tables: opens one table at a
/// time, in key order, starting at the table that may hold `start`.
pub struct LevelSource {
    run: Vec<Arc<TableFile>>,
    next: usize,
    current: Option<TableSource>,
    start: Option<Vec<u8>>,
    fill_cache: bool,
    failed: bool,
}

impl LevelSource {
    /// A source over `run` (sorted, disjoint) from `start`.
    pub fn new(run: Vec<Arc<TableFile>>, start: Option<&[u8]>, fill_cache: bool) -> Self {
        let next = start.map_or(0, |s| run.partition_point(|t| t.largest() < s));
        LevelSource {
            run,
            next,
            current: None,
            start: start.map(<[u8]>::to_vec),
            fill_cache,
            failed: false,
        }
    }
}

impl Source for LevelSource {
    fn next_entry(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(cur) = &mut self.current {
                match cur.next_entry() {
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    Some(ok) => return Some(ok),
                    None => self.current = None,
                }
            }
            let file = self.run.get(self.next)?.clone();
            self.next += 1;
            // Only the first table can hold keys below `start`.
            let start = self.start.take();
            match file.source(start.as_deref(), self.fill_cache) {
                Ok(src) => self.current = Some(src),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
