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
//! is retried on the next signal. After each flush, WAL files that no
//! memtable needs any more are recorded (`LogNumber`) and deleted.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use crate::db::Inner;
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::manifest::{Change, TableRecord, VersionEdit};
use crate::memtable::Memtable;
use crate::partition::PartitionState;
use crate::sst::{Table, TableBuilder, TableOptions};
use crate::table_file::{table_file_name, TableFile};
use crate::wal::writer::wal_file_name;

/// Partitions waiting for a flush, under `Inner::flush`.
#[derive(Default)]
pub struct FlushQueue {
    pub(crate) pending: VecDeque<Arc<PartitionState>>,
    pub(crate) shutdown: bool,
    /// Flushes completed (for waiters such as `Db::flush`).
    pub(crate) done: u64,
    /// The last flush error, reported by `Db::flush`.
    pub(crate) last_error: Option<String>,
}

impl Inner {
    /// Queues partitions whose memtables rotated.
    pub(crate) fn schedule_flush(&self, partitions: Vec<Arc<PartitionState>>) {
        let mut q = lock(&self.flush);
        q.pending.extend(partitions);
        self.flush_wake.notify_all();
    }

    /// The flush thread.
    pub(crate) fn flush_loop(&self) {
        loop {
            let next = {
                let mut q = lock(&self.flush);
                loop {
                    if q.shutdown {
                        return;
                    }
                    if let Some(p) = q.pending.pop_front() {
                        break p;
                    }
                    q = self
                        .flush_wake
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let result = self.flush_partition(&next);
            let mut q = lock(&self.flush);
            q.done += 1;
            if let Err(e) = result {
                q.last_error = Some(e.to_string());
            }
            self.flush_wake.notify_all();
        }
    }

    /// Flushes every immutable memtable of `p`, oldest first, then releases
    /// WAL files no memtable needs.
    pub(crate) fn flush_partition(&self, p: &Arc<PartitionState>) -> Result<()> {
        let _one_at_a_time = lock(&self.flush_lock);
        self.flush_memtables(p)?;
        self.release_wals()
    }

    /// Flushes every immutable memtable of `p`, oldest first. The caller
    /// holds `flush_lock`.
    pub(crate) fn flush_memtables(&self, p: &Arc<PartitionState>) -> Result<()> {
        while let Some(memtable) = p.oldest_immutable() {
            if p.is_dropped() {
                return Ok(());
            }
            self.flush_memtable(p, &memtable)?;
        }
        Ok(())
    }

    fn flush_memtable(&self, p: &Arc<PartitionState>, memtable: &Arc<Memtable>) -> Result<()> {
        let number = self.next_file.fetch_add(1, Ordering::AcqRel);
        let pdir = self.dir.join(p.id().to_string());
        if !self.fs.exists(&pdir)? {
            self.fs.create_dir_all(&pdir)?;
            self.fs.sync_dir(&self.dir)?;
        }
        let path = pdir.join(table_file_name(number));
        let built = self.build_table(p, memtable, &path);
        let (record, table) = match built {
            Ok(t) => t,
            Err(e) => {
                let _ = self.fs.remove_file(&path);
                return Err(e);
            }
        };
        let edit = VersionEdit {
            changes: vec![
                Change::NextFileNumber(number + 1),
                Change::AddTable(record),
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
        if let Err(e) = self.manifest.log(&edit) {
            // Refused (partition dropped meanwhile) or failed: nothing refers
            // to the file.
            let _ = self.fs.remove_file(&path);
            return if p.is_dropped() { Ok(()) } else { Err(e) };
        }
        let file = Arc::new(TableFile::new(table, number, path, self.fs.clone()));
        if p.is_dropped() {
            file.mark_obsolete();
        }
        p.set_flushed_seq(memtable.max_seq());
        p.install_flushed(memtable, file);
        let freed = memtable.approximate_size();
        let _ = self
            .memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(m.saturating_sub(freed))
            });
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn build_table(
        &self,
        p: &PartitionState,
        memtable: &Arc<Memtable>,
        path: &std::path::Path,
    ) -> Result<(TableRecord, Table)> {
        let file = self.fs.create(path)?;
        let options = TableOptions {
            block_size: self.options.block_size,
            bloom_bits_per_key: self.options.bloom_bits_per_key,
            ..TableOptions::default()
        };
        let mut builder = TableBuilder::new(file, path.to_path_buf(), p.id(), &options);
        for e in memtable.iter(None) {
            builder.add(&e.key, e.seq, &e.value)?;
        }
        let (meta, mut file) = builder.finish()?;
        file.sync_data()?;
        drop(file);
        if let Some(parent) = path.parent() {
            self.fs.sync_dir(parent)?;
        }
        self.stats
            .flush_bytes
            .fetch_add(meta.file_size, Ordering::Relaxed);
        let props = &meta.properties;
        let record = TableRecord {
            partition: p.id(),
            level: 0,
            file: number_of(path)?,
            size: meta.file_size,
            smallest: props.smallest_key.to_vec(),
            largest: props.largest_key.to_vec(),
            min_seq: props.min_seq,
            max_seq: props.max_seq,
            entries: props.entry_count,
            tombstones: props.tombstone_count,
        };
        let table = Table::open(self.fs.open_read(path)?, path.to_path_buf(), meta.file_size)?;
        Ok((record, table))
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
        let obsolete: Vec<u64> = lock(&self.wal_files)
            .iter()
            .copied()
            .filter(|n| *n < needed)
            .collect();
        if obsolete.is_empty() {
            return Ok(());
        }
        let logged = self.manifest.with_state(|s| s.log_number);
        if needed > logged {
            self.manifest
                .log(&VersionEdit::one(Change::LogNumber(needed)))?;
        }
        for n in obsolete {
            self.fs.remove_file(&self.dir.join(wal_file_name(n)))?;
            lock(&self.wal_files).remove(&n);
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
