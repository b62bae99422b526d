//! Group commit: the write path from a caller's batch to a visible write.
//!
//! Execution model (DESIGN.md §4):
//! - A writer encodes its batch on its own thread, then joins the queue. If no
//!   leader is active it becomes the leader *inline*: it takes the queued
//!   batches as one group, assigns sequence numbers, writes the group to the
//!   WAL with a single `write`, inserts it into the memtables and — when no
//!   member asked for a sync and nothing earlier awaits one — publishes it
//!   (advances the visible sequence number) and completes every member.
//! - A group that needs `fdatasync` (or that follows one still waiting) is
//!   handed to the committer thread, which syncs the WAL once for everything
//!   written so far, then publishes the groups in order. Writers waiting for
//!   it hold a [`Completion`](crate::completion::Completion): async callers
//!   await it and never block a runtime worker on an fsync.
//! - Before a sync the committer may wait briefly for the writers that were
//!   active in the previous one ([`Linger`]), so that concurrent sync
//!   writers share one fsync instead of alternating between two.
//! - A leader runs at most [`MAX_LEADER_ROUNDS`] groups, then hands the role
//!   to the committer thread so no caller leads forever.
//! - A write becomes visible only after it is durable to its level: in the
//!   OS (written) for ordinary writes, on disk (synced) for sync writes.
//!   Visibility follows sequence order.
//! - After a failed WAL write or sync the engine is poisoned: every later
//!   write fails with `poisoned:` until reopen; reads keep working.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::batch::{BatchOp, FIRST_SEQ_RANGE};
use crate::completion::Completer;
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::fs::WritableFile;
use crate::locks::lock;
use crate::memtable::SeqNo;
use crate::partition::{Inserted, PartitionState};
use crate::sst::MAX_SEQ;
use crate::wal::writer::WalWriter;

/// Groups a leader commits before handing its role to the committer thread.
pub const MAX_LEADER_ROUNDS: usize = 4;

/// A shared handle used only to sync one WAL file.
pub type SyncHandle = Arc<Mutex<Box<dyn WritableFile>>>;

/// A WAL file rotated away: its sync handle, and its number and final
/// length.
pub type RotatedWal = (SyncHandle, (u64, u64));

/// Syncs WAL files rotated away; returns the number and final length of the
/// last, now durable whole.
fn sync_rotated(old: &[RotatedWal]) -> std::io::Result<Option<(u64, u64)>> {
    for (f, _) in old {
        lock(f).sync_data()?;
    }
    Ok(old.iter().map(|o| o.1).max())
}

/// One operation resolved to its partition.
#[derive(Debug)]
pub struct ResolvedOp {
    /// Where it goes.
    pub target: Arc<PartitionState>,
    /// The operation (its partition id is `target`'s).
    pub op: BatchOp,
}

/// A writer waiting in the queue.
pub struct Pending {
    /// The operations.
    pub ops: Vec<ResolvedOp>,
    /// The encoded WAL record (sequence number patched by the leader);
    /// empty for a pure sync request.
    pub payload: Vec<u8>,
    /// Whether the writer needs an fsync before completion.
    pub sync: bool,
    /// Completes the writer.
    pub done: Completer<Result<()>>,
}

/// A group written to the WAL, waiting for a sync or for earlier groups.
pub struct Group {
    last_seq: SeqNo,
    /// The WAL file written and its length after the group.
    wal_end: (u64, u64),
    needs_sync: bool,
    members: Vec<Completer<Result<()>>>,
}

/// State of the pipeline, under `Inner::commit`.
pub struct CommitState {
    pub(crate) queue: VecDeque<Pending>,
    pub(crate) leader_active: bool,
    /// Leadership was handed to the committer thread.
    pub(crate) handoff: bool,
    pub(crate) next_seq: SeqNo,
    /// Every write with a sequence number up to this is durable (synced).
    pub(crate) durable_seq: SeqNo,
    /// The last completed sync made this WAL file durable up to this
    /// length (and every earlier WAL file whole).
    pub(crate) synced_wal: Option<(u64, u64)>,
    /// The last sync mark written to the WAL (see `batch::TAG_SYNCED`).
    pub(crate) marked_wal: Option<(u64, u64)>,
    pub(crate) unpublished: VecDeque<Group>,
    /// Sync handle of the WAL being written.
    pub(crate) current_sync: SyncHandle,
    /// WALs rotated away whose tails are not known durable, with their
    /// numbers and final lengths.
    pub(crate) to_sync: Vec<RotatedWal>,
    /// A WAL file was created since the directory was last synced.
    pub(crate) dir_unsynced: bool,
    pub(crate) next_wal_number: u64,
    pub(crate) poisoned: Option<String>,
    pub(crate) shutdown: bool,
    /// The committer thread sleeps on `committer_wake` (only then is it
    /// signalled: a `notify_all` is a system call even with nobody waiting).
    pub(crate) committer_sleeping: bool,
    /// Writers the next sync waits for (see [`Linger`]).
    pub(crate) linger: Linger,
}

/// The longest a sync waits for writers expected to join it.
const MAX_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Waiting for concurrent sync writers before a sync.
///
/// Without it, `n` writers that each wait for their sync before writing
/// again settle into two alternating halves: the writers acknowledged by one
/// sync come back while the next (holding the other half) is running, so
/// each sync carries about `n / 2` writes. After each sync the committer
/// counts the writers that took part in it or arrived during it — the
/// writers active now — and lets the next sync wait (polling, at most as
/// long as the last sync took) until that many are queued: `n` writes per
/// sync. A single writer does not wait (it is the only one expected). A
/// writer that does not come back — one that stopped, a flush's sync
/// request, a write that needed no sync — costs one wait at most (≤ 1 ms),
/// after which the count drops to the writers that did.
#[derive(Debug, Default)]
pub(crate) struct Linger {
    /// Writers (queued members) expected before the next sync.
    expected: usize,
    /// How long the last sync took.
    last_sync: std::time::Duration,
    /// When the current wait gives up (set when it starts).
    deadline: Option<std::time::Instant>,
}

fn poisoned_error(why: &str) -> Error {
    Error::Poisoned(format!(
        "poisoned: writes are refused after an earlier WAL failure ({why}); reopen the database"
    ))
}

impl Inner {
    /// Queues a writer; leads if no leader is active. Called by `Db::submit`.
    pub(crate) fn enqueue(&self, pending: Pending) {
        let mut st = lock(&self.commit);
        if let Some(why) = &st.poisoned {
            let err = poisoned_error(why);
            drop(st);
            pending.done.complete(Err(err));
            return;
        }
        st.queue.push_back(pending);
        if st.leader_active {
            return;
        }
        st.leader_active = true;
        self.lead(st);
    }

    /// Makes every write so far durable (a sync request through the queue)
    /// and waits for it. For engine threads (flush), never async callers.
    pub(crate) fn sync_wal_and_wait(&self) -> Result<()> {
        let (done, completion) = crate::completion::completion();
        self.enqueue(Pending {
            ops: Vec::new(),
            payload: Vec::new(),
            sync: true,
            done,
        });
        completion.wait().unwrap_or(Err(Error::Closed))
    }

    /// Makes every acknowledged write, and every write up to `through`,
    /// durable before a change that must not overtake them (a catalogue
    /// change; a flush of entries up to `through`, which may not be visible
    /// yet) becomes durable itself — otherwise a power loss could keep the
    /// change but lose earlier writes, a hole in history (the crash loop
    /// found both). Skips the sync when there is nothing to
    /// make durable: every such write is already synced and no rotated WAL
    /// awaits its sync. Engine threads and blocking DDL only, never async
    /// callers.
    /// [`sync_acknowledged`](Self::sync_acknowledged) before a partition
    /// create or drop; returns a sequence number that is now durable, for
    /// the manifest edit to record (`LastSequence`): recovery then knows
    /// that the WAL must hold every write up to it, and treats a WAL that
    /// ends earlier as corruption instead of a torn write — a state with
    /// the catalogue change but without writes acknowledged before it is
    /// not a prefix of history.
    pub(crate) fn durable_before_ddl(&self) -> Result<SeqNo> {
        let visible = self.visible_seq.load(Ordering::Acquire);
        self.sync_acknowledged(visible)?;
        Ok(visible)
    }

    pub(crate) fn sync_acknowledged(&self, through: SeqNo) -> Result<()> {
        // Visible first: a write published after this load was not
        // acknowledged before the caller's change began.
        let needed = self.visible_seq.load(Ordering::Acquire).max(through);
        {
            let st = lock(&self.commit);
            if let Some(why) = &st.poisoned {
                return Err(poisoned_error(why));
            }
            if st.durable_seq >= needed && st.to_sync.is_empty() && !st.dir_unsynced {
                return Ok(());
            }
        }
        self.sync_wal_and_wait()
    }

    /// Runs the leader loop until the queue is empty (or hands off).
    pub(crate) fn lead<'a>(&'a self, mut st: MutexGuard<'a, CommitState>) {
        let mut rounds = 0;
        loop {
            if let Some(why) = st.poisoned.clone() {
                fail_queue(&mut st, &why);
                st.leader_active = false;
                return;
            }
            if st.queue.is_empty() {
                st.leader_active = false;
                return;
            }
            if rounds == MAX_LEADER_ROUNDS {
                st.handoff = true;
                self.wake_committer(&st);
                return;
            }
            rounds += 1;

            // Take a group: at least one writer, then up to max_group_bytes.
            let mut group = Vec::new();
            let mut bytes = 0usize;
            while let Some(front) = st.queue.front() {
                if !group.is_empty() && bytes + front.payload.len() > self.options.max_group_bytes {
                    break;
                }
                bytes += front.payload.len();
                if let Some(p) = st.queue.pop_front() {
                    group.push(p);
                }
            }
            let ops: u64 = group.iter().map(|p| p.ops.len() as u64).sum();
            if ops > 0 && st.next_seq.saturating_add(ops - 1) > MAX_SEQ {
                // Only a damaged manifest or WAL starts near the end: refuse
                // rather than write numbers that no table can hold.
                let why = format!(
                    "sequence numbers exhausted (the next is {}, the largest {MAX_SEQ})",
                    st.next_seq
                );
                st.poisoned.get_or_insert(why.clone());
                for p in group {
                    p.done.complete(Err(poisoned_error(&why)));
                }
                continue; // the loop fails the queue and steps down
            }
            let first_seq = st.next_seq;
            st.next_seq += ops;
            let last_seq = st.next_seq - 1;
            let needs_sync = group.iter().any(|p| p.sync);
            // A sync completed since the last mark: the group says so first
            // (only a group with records; a mark of an empty file says
            // nothing the file's start does not).
            let mark = st
                .synced_wal
                .filter(|&(_, len)| ops > 0 && len > 0 && st.marked_wal != st.synced_wal);
            if mark.is_some() {
                st.marked_wal = mark;
            }
            drop(st);

            let (wal_number, wal_len) = match self.write_group(&mut group, first_seq, mark) {
                Ok(n) => n,
                Err(e) => {
                    let why = e.to_string();
                    st = lock(&self.commit);
                    st.poisoned.get_or_insert(why.clone());
                    for p in group {
                        p.done.complete(Err(e.duplicate()));
                    }
                    continue; // the loop fails the queue and steps down
                }
            };

            let mut rotated: Vec<Arc<PartitionState>> = Vec::new();
            let mut filled = false;
            let mut note = |target: &Arc<PartitionState>, inserted: Inserted| {
                if inserted.rotated {
                    rotated.push(target.clone());
                }
                filled |= inserted.full;
            };
            let user_bytes: u64 = group
                .iter()
                .flat_map(|p| &p.ops)
                .map(|r| (r.op.key.len() + r.op.value.as_ref().map_or(0, |v| v.len())) as u64)
                .sum();
            let mut resolved = group.iter().flat_map(|p| &p.ops);
            if ops == 1 {
                if let Some(r) = resolved.next() {
                    let value = r.op.value.as_deref();
                    let size = self.options.memtable_size;
                    let inserted = r
                        .target
                        .insert(&r.op.key, first_seq, value, size, wal_number);
                    note(&r.target, inserted);
                }
            } else {
                // Sorted by partition, then in internal-key order: each
                // partition's operations go in as one batch, whose skip-list
                // searches overlap their cache misses.
                let mut all: Vec<(&ResolvedOp, SeqNo)> = resolved.zip(first_seq..).collect();
                all.sort_unstable_by(|(a, sa), (b, sb)| {
                    Arc::as_ptr(&a.target)
                        .cmp(&Arc::as_ptr(&b.target))
                        .then_with(|| crate::coding::compare_bytes(&a.op.key, &b.op.key))
                        .then_with(|| sb.cmp(sa))
                });
                let mut entries = Vec::with_capacity(all.len());
                for run in all.chunk_by(|(a, _), (b, _)| Arc::ptr_eq(&a.target, &b.target)) {
                    entries.clear();
                    entries.extend(
                        run.iter()
                            .map(|(r, s)| (r.op.key.as_slice(), *s, r.op.value.as_deref())),
                    );
                    let target = &run[0].0.target;
                    note(
                        target,
                        target.insert_sorted(&entries, self.options.memtable_size, wal_number),
                    );
                }
            }
            if !rotated.is_empty() {
                self.schedule_flush(rotated);
            }
            if filled {
                // The full memtable rotates at its next insert, which then
                // goes to a new WAL file: once it is flushed no later
                // memtable needs the old file, and it is deleted. Without
                // this a WAL file held the tail of one memtable and the head
                // of the next, and outlived the flush by a whole memtable
                // (the harness's overwrite run had about 60 MiB of such WAL
                // on disk beside 110 MiB of data).
                self.wal_rotation_wanted.store(true, Ordering::Relaxed);
            }
            if self.limits_exceeded(wal_number, wal_len) {
                self.request_limit_check();
            }
            self.stats
                .writes
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            self.stats.groups.fetch_add(1, Ordering::Relaxed);
            self.stats
                .user_bytes
                .fetch_add(user_bytes, Ordering::Relaxed);

            st = lock(&self.commit);
            let members = group.into_iter().map(|p| p.done).collect();
            if st.unpublished.is_empty() && !needs_sync {
                self.publish(last_seq, members);
            } else {
                st.unpublished.push_back(Group {
                    last_seq,
                    wal_end: (wal_number, wal_len),
                    needs_sync,
                    members,
                });
                self.wake_committer(&st);
            }
        }
    }

    /// Patches sequence numbers into the group's records and writes them to
    /// the WAL with one write (after a sync mark, if `mark`), rotating the
    /// WAL first if it is full, or if a
    /// memtable filled and the file holds at least [`min_wal_rotation`]
    /// bytes (so many partitions filling in turn do not make many tiny
    /// files). Returns
    /// the number of the WAL file written and its size after the write.
    fn write_group(
        &self,
        group: &mut [Pending],
        first_seq: SeqNo,
        mark: Option<(u64, u64)>,
    ) -> Result<(u64, u64)> {
        let mut seq = first_seq;
        for p in group.iter_mut() {
            if let Some(slot) = p.payload.get_mut(FIRST_SEQ_RANGE) {
                slot.copy_from_slice(&seq.to_le_bytes());
            }
            seq += p.ops.len() as u64;
        }
        let mut wal = lock(&self.wal);
        let wanted = self.wal_rotation_wanted.load(Ordering::Relaxed)
            && self.wal_rotation_wanted.swap(false, Ordering::Relaxed);
        if wal.len() >= self.options.wal_file_size
            || (wanted && wal.len() >= min_wal_rotation(&self.options))
        {
            self.rotate(&mut wal, first_seq)?;
        }
        let mark = mark.map(|(number, len)| crate::batch::encode_synced(number, len));
        let payloads = mark.iter().map(|m| m.as_slice()).chain(
            group
                .iter()
                .filter(|p| !p.ops.is_empty())
                .map(|p| p.payload.as_slice()),
        );
        let before = wal.len();
        wal.append(payloads)?;
        self.stats
            .wal_bytes
            .fetch_add(wal.len() - before, Ordering::Relaxed);
        Ok((wal.number(), wal.len()))
    }

    /// Starts a new WAL file; the old one is synced by the committer before
    /// any later sync write is acknowledged.
    /// `first_seq` is the sequence number of the first batch it will hold.
    fn rotate(&self, wal: &mut WalWriter, first_seq: SeqNo) -> Result<()> {
        let number = lock(&self.commit).next_wal_number;
        let mut fresh =
            WalWriter::create(&self.fs, &self.dir, number, self.options.wal_preallocate)?;
        // The new file starts by naming the old one's length, so recovery can
        // tell if the old file lost its unsynced tail (see batch::TAG_PREVIOUS_WAL).
        let header = crate::batch::encode_previous_wal(wal.number(), wal.len());
        fresh.append([header.as_slice()])?;
        let handle: SyncHandle = Arc::new(Mutex::new(fresh.sync_handle(&self.fs)?));
        self.wals.rotated(wal.number(), wal.len(), number);
        self.wals.started(number, first_seq);
        let mut st = lock(&self.commit);
        st.next_wal_number = number + 1;
        let old = std::mem::replace(&mut st.current_sync, handle);
        st.to_sync.push((old, (wal.number(), wal.len())));
        st.dir_unsynced = true;
        self.wake_committer(&st);
        drop(st);
        *wal = fresh;
        Ok(())
    }

    /// Makes writes up to `last_seq` visible and completes their writers.
    fn publish(&self, last_seq: SeqNo, members: Vec<Completer<Result<()>>>) {
        self.visible_seq.fetch_max(last_seq, Ordering::AcqRel);
        for m in members {
            m.complete(Ok(()));
        }
    }

    /// The committer thread: syncs and publishes handed-over groups, takes
    /// over leadership when handed off, exits at shutdown once idle.
    pub(crate) fn committer_loop(&self) {
        let mut st = lock(&self.commit);
        loop {
            if st.handoff {
                st.handoff = false;
                self.lead(st);
                st = lock(&self.commit);
                continue;
            }
            if !st.unpublished.is_empty() {
                if let Some(deadline) = linger_deadline(&mut st) {
                    st = self.poll(st, deadline);
                    continue;
                }
                st = self.sync_and_publish(st);
                continue;
            }
            if !st.to_sync.is_empty() && st.poisoned.is_none() {
                // Rotated-away WALs: make their tails durable in the background.
                let old = std::mem::take(&mut st.to_sync);
                drop(st);
                let synced = sync_rotated(&old);
                st = lock(&self.commit);
                match synced {
                    Ok(rotated) => st.synced_wal = st.synced_wal.max(rotated),
                    Err(e) => {
                        let why = e.to_string();
                        st.poisoned.get_or_insert(why.clone());
                        fail_queue(&mut st, &why);
                    }
                }
                continue;
            }
            if st.shutdown && !st.leader_active && st.queue.is_empty() {
                return;
            }
            st.committer_sleeping = true;
            st = self
                .committer_wake
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.committer_sleeping = false;
        }
    }

    /// Signals the committer thread: through [`Inner::commit_signals`],
    /// which it watches while polling, and by waking it if it sleeps.
    pub(crate) fn wake_committer(&self, st: &CommitState) {
        self.commit_signals.fetch_add(1, Ordering::Release);
        if st.committer_sleeping {
            self.committer_wake.notify_all();
        }
    }

    /// Releases the pipeline's lock until the committer is signalled or
    /// `until`, yielding the processor meanwhile (the writers it waits for
    /// may need it), and takes the lock again.
    fn poll<'a>(
        &'a self,
        st: MutexGuard<'a, CommitState>,
        until: Instant,
    ) -> MutexGuard<'a, CommitState> {
        let seen = self.commit_signals.load(Ordering::Acquire);
        drop(st);
        while self.commit_signals.load(Ordering::Acquire) == seen && Instant::now() < until {
            std::thread::yield_now();
        }
        lock(&self.commit)
    }

    fn sync_and_publish<'a>(
        &'a self,
        mut st: MutexGuard<'a, CommitState>,
    ) -> MutexGuard<'a, CommitState> {
        let n = st.unpublished.len();
        if st.unpublished.iter().any(|g| g.needs_sync) {
            // These groups were written before the sync starts: it covers them.
            let covered = st.unpublished.iter().map(|g| g.last_seq).max();
            let covered_wal = st.unpublished.iter().map(|g| g.wal_end).max();
            let old = std::mem::take(&mut st.to_sync);
            let current = st.current_sync.clone();
            let dir_unsynced = std::mem::replace(&mut st.dir_unsynced, false);
            drop(st);
            let started = Instant::now();
            let synced = self.sync_wals(&old, dir_unsynced, &current);
            let took = started.elapsed();
            st = lock(&self.commit);
            let rotated = match synced {
                Ok(rotated) => rotated,
                Err(e) => {
                    let why = e.to_string();
                    st.poisoned.get_or_insert(why.clone());
                    for g in st.unpublished.drain(..) {
                        for m in g.members {
                            m.complete(Err(e.duplicate()));
                        }
                    }
                    fail_queue(&mut st, &why);
                    return st;
                }
            };
            if let Some(seq) = covered {
                st.durable_seq = st.durable_seq.max(seq);
            }
            st.synced_wal = st.synced_wal.max(covered_wal).max(rotated);
            // The writers active now: those this sync acknowledges and those
            // that queued while it ran.
            st.linger = Linger {
                expected: st.unpublished.iter().map(|g| g.members.len()).sum(),
                last_sync: took,
                deadline: None,
            };
        }
        let groups: Vec<Group> = st.unpublished.drain(..n).collect();
        // Visible in order, under the lock; the writers are completed after
        // it is released: a writer woken while the committer still held it
        // blocked on it at its next write, and was woken a second time.
        if let Some(last) = groups.iter().map(|g| g.last_seq).max() {
            self.visible_seq.fetch_max(last, Ordering::AcqRel);
        }
        drop(st);
        for m in groups.into_iter().flat_map(|g| g.members) {
            m.complete(Ok(()));
        }
        lock(&self.commit)
    }

    /// Syncs the rotated files `old`, the directory if a file was created
    /// in it, then the current file; returns what [`sync_rotated`] does.
    fn sync_wals(
        &self,
        old: &[RotatedWal],
        dir_unsynced: bool,
        current: &SyncHandle,
    ) -> Result<Option<(u64, u64)>> {
        let rotated = sync_rotated(old)?;
        if dir_unsynced {
            self.fs.sync_dir(&self.dir)?;
        }
        lock(current).sync_data()?;
        self.stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
        Ok(rotated)
    }
}

/// The smallest WAL file rotated early because a memtable filled: a
/// quarter of a memtable, at least 1 MiB, at most `wal_file_size`.
pub fn min_wal_rotation(options: &crate::options::Options) -> u64 {
    let quarter = u64::try_from(options.memtable_size / 4).unwrap_or(u64::MAX);
    quarter.max(1 << 20).min(options.wal_file_size)
}

/// When the next sync should wait for more writers ([`Linger`]): `None` to
/// sync now.
fn linger_deadline(st: &mut CommitState) -> Option<Instant> {
    let queued: usize = st.unpublished.iter().map(|g| g.members.len()).sum();
    if queued >= st.linger.expected
        || st.shutdown
        || st.poisoned.is_some()
        || !st.unpublished.iter().any(|g| g.needs_sync)
    {
        st.linger.deadline = None;
        return None;
    }
    let now = Instant::now();
    let wait = st.linger.last_sync.min(MAX_LINGER);
    let deadline = *st.linger.deadline.get_or_insert(now + wait);
    if now >= deadline {
        // Fewer came; the sync counts the writers again.
        st.linger.deadline = None;
        return None;
    }
    Some(deadline)
}

fn fail_queue(st: &mut CommitState, why: &str) {
    for p in st.queue.drain(..) {
        p.done.complete(Err(poisoned_error(why)));
    }
}
