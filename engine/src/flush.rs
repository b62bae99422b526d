//! Flushes: immutable memtables become level-0 tables, on a background
//! thread.
//!
//! A flush writes the table (`<dir>/<partition id>/<file>.sst`, the partition
//! directory created and its parent synced at the first flush), syncs it and
//! its directory, then records it in the manifest together with the
//! partition's new flushed point — only then do readers switch from the
//! memtable to the table. If the partition was dropped meanwhile the
//! manifest refuses the edit and the file is deleted: nothing is installed.
//! A failed flush leaves no manifest edit; the memtable stays and the flush
//! is retried on the next signal. (A failed fsync of the edit itself
//! poisons the manifest and keeps the table: the edit may be durable, and
//! if it is not, the next open deletes the file as an orphan; later flushes
//! fail with `poisoned:` before they write anything.) After each
//! flush, WAL files that no memtable needs any more are recorded
//! (`LogNumber`) and deleted.
//!
//! What gets flushed, besides memtables that reached `memtable_size`: when
//! the commit leader sees a limit exceeded (see [`write_buffer`]) it asks the
//! flush thread for a check, and the thread, before its next flush:
//! - **write-buffer budget**: when the memtables holding unflushed data
//!   exceed `write_buffer_size` and the active ones 7/8 of it, rotates the
//!   largest active memtables first until the active bytes are at most 3/4
//!   of the budget — once the scheduled flushes complete, usage is back
//!   under the budget;
//! - **WAL limit**: when the live WAL files exceed `max_total_wal_size`,
//!   rotates every active memtable holding data in the oldest live WAL file
//!   (however small: a partition written once must not pin WAL files
//!   forever), so that file is deleted after their flushes.
//!
//! The thread checks again whenever its queue runs empty, so the WAL limit
//! converges without further writes. Nothing here stalls writers.
//!
//! [`write_buffer`]: crate::write_buffer

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};

use crate::db::Inner;
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::manifest::{Change, TableRecord, VersionEdit};
use crate::memtable::Memtable;
use crate::partition::PartitionState;
use crate::sst::{TableBuilder, TableOptions};
use crate::table_file::{table_file_name, TableFile};
use crate::wal::writer::wal_file_name;
use crate::write_buffer::{budget_target, max_total_wal_size, over_budget, pick_largest};

/// Partitions waiting for a flush, under `Inner::flush`.
#[derive(Default)]
pub struct FlushQueue {
    pub(crate) pending: VecDeque<Arc<PartitionState>>,
    pub(crate) shutdown: bool,
    /// A check of the write-buffer budget and the WAL limit is requested.
    pub(crate) check: bool,
    /// The flush thread is working (flushing or checking).
    pub(crate) busy: bool,
    /// The last flush error, reported by `Db::wait_for_flushes`.
    pub(crate) last_error: Option<String>,
}

/// The flush thread's next job.
enum Job {
    Check,
    Flush(Arc<PartitionState>),
}

impl Inner {
    /// Queues partitions whose memtables rotated (each once).
    pub(crate) fn schedule_flush(&self, partitions: Vec<Arc<PartitionState>>) {
        let mut q = lock(&self.flush);
        q.pending
            .extend(partitions.into_iter().filter(|p| p.mark_queued()));
        self.flush_wake.notify_all();
    }

    /// Asks the flush thread to check the budget and the WAL limit.
    pub(crate) fn request_limit_check(&self) {
        let mut q = lock(&self.flush);
        if !q.check {
            q.check = true;
            self.flush_wake.notify_all();
        }
    }

    /// Whether a limit asks for a check: cheap enough for every group
    /// commit. `wal` is the WAL file being written and `wal_len` its size.
    pub(crate) fn limits_exceeded(&self, wal: u64, wal_len: u64) -> bool {
        over_budget(&self.usage, self.options.write_buffer_size)
            || self
                .wals
                .over_limit(wal, wal_len, max_total_wal_size(&self.options))
    }

    /// The flush thread.
    pub(crate) fn flush_loop(&self) {
        let mut q = lock(&self.flush);
        loop {
            let job = match self.next_job(q) {
                Some(job) => job,
                None => return,
            };
            match job {
                Job::Check => {
                    let (picked, claimed) = self.enforce_limits();
                    q = lock(&self.flush);
                    // A WAL file claimed with nothing to flush was released
                    // right away: the next oldest may be over the limit too.
                    if claimed && picked.is_empty() {
                        q.check = true;
                    }
                    q.pending
                        .extend(picked.into_iter().filter(|p| p.mark_queued()));
                }
                Job::Flush(p) => {
                    p.clear_queued();
                    let result = self.flush_partition(&p);
                    drop(p);
                    release_free_memory();
                    q = lock(&self.flush);
                    if let Err(e) = result {
                        q.last_error = Some(e.to_string());
                        // Writers stopped on this partition get the error
                        // rather than waiting for a flush that failed.
                        drop(q);
                        self.wake_stalled();
                        q = lock(&self.flush);
                    }
                    // Check again once the queue runs empty: the flushes may
                    // have freed the oldest WAL file while the limit is still
                    // exceeded.
                    if q.pending.is_empty() {
                        q.check = true;
                    }
                }
            }
            self.flush_wake.notify_all();
        }
    }

    /// Waits for a job; `None` at shutdown. Marks the thread idle (and tells
    /// waiters) while it waits.
    fn next_job(&self, mut q: MutexGuard<'_, FlushQueue>) -> Option<Job> {
        loop {
            if q.shutdown {
                q.busy = false;
                self.flush_wake.notify_all();
                return None;
            }
            if q.check {
                q.check = false;
                q.busy = true;
                return Some(Job::Check);
            }
            if let Some(p) = q.pending.pop_front() {
                q.busy = true;
                return Some(Job::Flush(p));
            }
            if q.busy {
                q.busy = false;
                self.flush_wake.notify_all();
            }
            q = self
                .flush_wake
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Rotates the memtables that the budget and the WAL limit ask to
    /// flush; returns their partitions (largest first for the budget) and
    /// whether the oldest WAL file was claimed for the limit.
    fn enforce_limits(&self) -> (Vec<Arc<PartitionState>>, bool) {
        let mut picked = Vec::new();
        let budget = self.options.write_buffer_size;
        if over_budget(&self.usage, budget) {
            let candidates: Vec<(usize, Arc<PartitionState>)> = self
                .partitions_snapshot()
                .into_iter()
                .map(|p| (p.active_size(), p))
                .filter(|(size, _)| *size > 0)
                .collect();
            let chosen = pick_largest(candidates, self.usage.active(), budget_target(budget));
            for (_, p) in chosen {
                if p.rotate() {
                    self.stats.budget_rotations.fetch_add(1, Ordering::Relaxed);
                    picked.push(p);
                }
            }
        }
        let (current, current_len) = {
            let wal = lock(&self.wal);
            (wal.number(), wal.len())
        };
        let limit = max_total_wal_size(&self.options);
        let claimed = self.wals.claim_oldest(current, current_len, limit);
        if let Some(oldest) = claimed {
            let before = picked.len();
            for p in self.partitions_snapshot() {
                if p.rotate_if(|m| m.wal() <= oldest).is_some() {
                    self.stats.wal_rotations.fetch_add(1, Ordering::Relaxed);
                    picked.push(p);
                }
            }
            if picked.len() == before {
                // No active memtable holds data in it: the file may already
                // be unneeded (its partitions flushed or dropped).
                let _one_at_a_time = lock(&self.flush_lock);
                if let Err(e) = self.release_wals() {
                    lock(&self.flush).last_error = Some(e.to_string());
                }
            }
        }
        (picked, claimed.is_some())
    }

    /// Flushes every immutable memtable of `p`, oldest first, then releases
    /// WAL files no memtable needs.
    pub(crate) fn flush_partition(&self, p: &Arc<PartitionState>) -> Result<()> {
        let _one_at_a_time = lock(&self.flush_lock);
        let flushed = self.flush_memtables(p);
        // Recorded on the partition: its stopped writers get this error
        // instead of waiting, while other partitions' writers wait on.
        p.set_flush_failure(flushed.as_ref().err().map(ToString::to_string));
        flushed?;
        self.release_wals()
    }

    /// Flushes every immutable memtable of `p`, oldest first. The caller
    /// holds `flush_lock`.
    pub(crate) fn flush_memtables(&self, p: &Arc<PartitionState>) -> Result<()> {
        while let Some(memtable) = p.oldest_immutable() {
            if p.is_dropped() || !self.flush_memtable(p, &memtable)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Flushes one memtable; `Ok(false)` if the partition was dropped
    /// meanwhile (nothing installed).
    fn flush_memtable(&self, p: &Arc<PartitionState>, memtable: &Arc<Memtable>) -> Result<bool> {
        // A table the manifest would refuse is not worth writing.
        self.manifest.ensure_writable()?;
        let number = self.allocate_file_number()?;
        let pdir = p.dir().path().to_path_buf();
        // Until its entry is synced, the partition directory may vanish in a
        // crash with the tables in it. Tracked rather than inferred from its
        // existence: after a failed sync the directory exists, and the retry
        // must sync it still.
        if !p.dir().is_durable() {
            if !self.fs.exists(&pdir)? {
                self.fs.create_dir_all(&pdir)?;
            }
            self.fs.sync_dir(&self.dir)?;
            p.dir().set_durable();
        }
        let path = pdir.join(table_file_name(number));
        let built = self.build_table(p, memtable, &path);
        let record = match built {
            Ok(t) => t,
            Err(e) => {
                let _ = self.fs.remove_file(&path);
                return Err(e);
            }
        };
        let edit = VersionEdit {
            changes: vec![
                Change::NextFileNumber(number + 1),
                Change::AddTable(record.clone()),
                Change::Flushed {
                    partition: p.id(),
                    seq: memtable.max_seq(),
                },
                Change::LastSequence(memtable.max_seq()),
            ],
        };
        // Once the edit is logged the table survives a power loss; every
        // write before the table's entries must too (no holes across
        // partitions), so the WAL is synced first.
        if let Err(e) = self.sync_acknowledged(memtable.max_seq()) {
            let _ = self.fs.remove_file(&path);
            return Err(e);
        }
        let position = match self.manifest.append_with(|_| edit) {
            Ok((position, _)) => position,
            Err(e) => {
                // Refused (partition dropped meanwhile) or not appended:
                // nothing refers to the file.
                let _ = self.fs.remove_file(&path);
                return if self.partition_gone(p) {
                    Ok(false)
                } else {
                    Err(e)
                };
            }
        };
        // A failed sync leaves the edit in the file, perhaps durable: the
        // table stays (the manifest is poisoned now; if the edit did not
        // survive, the next open deletes the file as an orphan).
        self.manifest.commit(position)?;
        let file = TableFile::from_record(&record, p.dir().clone(), self.tables.clone());
        if p.is_dropped() {
            file.mark_obsolete();
        }
        p.set_flushed_seq(memtable.max_seq());
        p.install_flushed(memtable, file);
        self.schedule_compaction(p);
        self.retire(memtable);
        self.wake_stalled();
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn build_table(
        &self,
        p: &PartitionState,
        memtable: &Arc<Memtable>,
        path: &std::path::Path,
    ) -> Result<TableRecord> {
        let file = self.fs.create(path)?;
        let mut builder =
            TableBuilder::new(file, path.to_path_buf(), p.id(), &self.table_options());
        memtable.for_each(|key, seq, value| builder.add_entry(key, seq, value))?;
        let record = self.finish_table(p, builder, number_of(path)?, 0)?;
        self.stats
            .flush_bytes
            .fetch_add(record.size, Ordering::Relaxed);
        Ok(record)
    }

    /// Options of the tables the engine writes.
    pub(crate) fn table_options(&self) -> TableOptions {
        TableOptions {
            block_size: self.options.block_size,
            bloom_bits_per_key: self.options.bloom_bits_per_key,
            ..TableOptions::default()
        }
    }

    /// Finishes table `number` of `p` (for `level`): writes its metadata,
    /// syncs it and its directory, and reads back and checks its metadata
    /// by opening it. The table is not kept open: its index and filter come
    /// into memory with its first read (a write-only load holds none of
    /// them). Returns its manifest record. The file is removed if any step
    /// fails.
    ///
    /// # Errors
    /// I/O errors; corruption reading back what was written.
    pub(crate) fn finish_table(
        &self,
        p: &PartitionState,
        builder: TableBuilder,
        number: u64,
        level: usize,
    ) -> Result<TableRecord> {
        let path = p.dir().path().join(table_file_name(number));
        let result = (|| {
            let (meta, mut file) = builder.finish()?;
            file.sync_data()?;
            drop(file);
            self.fs.sync_dir(p.dir().path())?;
            let props = &meta.properties;
            let record = TableRecord {
                partition: p.id(),
                level: level as u8,
                file: number,
                size: meta.file_size,
                smallest: props.smallest_key.to_vec(),
                largest: props.largest_key.to_vec(),
                min_seq: props.min_seq,
                max_seq: props.max_seq,
                entries: props.entry_count,
                tombstones: props.tombstone_count,
            };
            self.tables.open_uncached(number, &path, meta.file_size)?;
            Ok(record)
        })();
        if result.is_err() {
            let _ = self.fs.remove_file(&path);
        }
        result
    }

    /// Keeps a flushed memtable in the list of those iterators may still
    /// hold (for `Stats::pinned_memtable_bytes`), forgetting freed ones.
    fn retire(&self, memtable: &Arc<Memtable>) {
        let mut retired = lock(&self.retired);
        retired.retain(|m| m.strong_count() > 0);
        retired.push(Arc::downgrade(memtable));
    }

    /// Records and deletes WAL files that no memtable needs any more. The
    /// caller holds `flush_lock`.
    pub(crate) fn release_wals(&self) -> Result<()> {
        let current = lock(&self.wal).number();
        let needed = self
            .partitions_snapshot()
            .iter()
            .filter_map(|p| p.min_wal())
            .min()
            .unwrap_or(current)
            .min(current);
        let obsolete = self.wals.below(needed);
        if obsolete.is_empty() {
            return Ok(());
        }
        let (logged, start_known) = self
            .manifest
            .with_state(|s| (s.log_number, s.wal_starts.contains_key(&needed)));
        if needed > logged {
            let mut changes = vec![Change::LogNumber(needed)];
            // The oldest file needed from now on: where it starts (files an
            // open started have it recorded already), so that recovery can
            // tell if it lost durable writes even with no earlier file left.
            if let Some(seq) = self.wals.start_of(needed).filter(|_| !start_known) {
                changes.push(Change::WalStart { wal: needed, seq });
            }
            self.manifest.log(&VersionEdit { changes })?;
        }
        for n in obsolete {
            self.fs.remove_file(&self.dir.join(wal_file_name(n)))?;
            self.wals.removed(n);
        }
        Ok(())
    }
}

fn number_of(path: &std::path::Path) -> Result<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::table_file::parse_table_file_name)
        .ok_or_else(|| {
            Error::Io(std::io::Error::other(format!(
                "bad table path {}",
                path.display()
            )))
        })
}

/// Hands the heap memory freed by a flushed memtable back to the OS.
///
/// A memtable is hundreds of thousands of small allocations freed at once;
/// glibc's allocator keeps such freed chunks in its arenas (only the top of
/// a heap shrinks by itself), so the process's resident memory would stay
/// at its peak of two memtables. `malloc_trim` releases free pages anywhere
/// in the arenas. It costs a walk of the free lists, once per flush.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and is thread-safe; any
    // return value is fine (0 only means nothing was released).
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
