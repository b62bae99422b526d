//! The state a manifest describes, rebuilt by applying its edits in order.

use std::collections::{BTreeMap, HashMap};

use super::edit::{Change, TableRecord, VersionEdit};
use crate::coding::MAX_NUMBER;
use crate::sst::MAX_SEQ;

/// One partition as the manifest knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRecord {
    /// Its name.
    pub name: String,
    /// Its tables, sorted by file number (each record names its level). A
    /// vector, not a map: with many light partitions of one or two tables
    /// each, a map's node per partition was most of the manifest's memory.
    pub tables: Vec<TableRecord>,
    /// Entries up to this sequence number are in tables.
    pub flushed_seq: u64,
}

impl PartitionRecord {
    /// The table with file number `file`, at any level.
    #[must_use]
    pub fn table(&self, file: u64) -> Option<&TableRecord> {
        self.tables
            .binary_search_by_key(&file, |t| t.file)
            .ok()
            .map(|i| &self.tables[i])
    }

    /// Its tables by level, then by file number (oldest first in a level).
    #[must_use]
    pub fn tables_by_level(&self) -> Vec<&TableRecord> {
        let mut tables: Vec<&TableRecord> = self.tables.iter().collect();
        tables.sort_by_key(|t| (t.level, t.file));
        tables
    }
}

/// Everything the manifest records.
///
/// Invariants (checked by [`ManifestState::apply`]): partition ids are never
/// reused and below `next_partition_id`; live names are unique; a file number
/// appears once; `log_number` and each `flushed_seq` never go back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestState {
    /// Live partitions by id.
    pub partitions: BTreeMap<u64, PartitionRecord>,
    /// Live partition names → id.
    pub names: HashMap<String, u64>,
    /// WAL files below this number are no longer needed.
    pub log_number: u64,
    /// Next file number to hand out.
    pub next_file_number: u64,
    /// Next partition id to hand out.
    pub next_partition_id: u64,
    /// Highest sequence number recorded.
    pub last_sequence: u64,
    /// WAL files started by an open (at or above `log_number`) → the
    /// sequence number of their first write batch.
    pub wal_starts: BTreeMap<u64, u64>,
}

impl Default for ManifestState {
    fn default() -> Self {
        ManifestState {
            partitions: BTreeMap::new(),
            names: HashMap::new(),
            log_number: 0,
            next_file_number: 1,
            next_partition_id: 1,
            last_sequence: 0,
            wal_starts: BTreeMap::new(),
        }
    }
}

/// The partition a change creates, drops or modifies.
fn touched_partition(change: &Change) -> Option<u64> {
    match change {
        Change::CreatePartition { id, .. } | Change::DropPartition { id } => Some(*id),
        Change::AddTable(t) => Some(t.partition),
        Change::RemoveTable { partition, .. } | Change::Flushed { partition, .. } => {
            Some(*partition)
        }
        Change::LogNumber(_)
        | Change::NextFileNumber(_)
        | Change::NextPartitionId(_)
        | Change::LastSequence(_)
        | Change::WalStart { .. } => None,
    }
}

impl ManifestState {
    /// Applies an edit, all or nothing.
    ///
    /// # Errors
    /// Why the edit does not fit the state (a corrupt or inconsistent
    /// manifest); the state is then unchanged.
    ///
    /// Costs what the edit touches, not the size of the state: the state is
    /// changed in place, and on a refused change the partitions the edit
    /// touched are put back as they were (each change checks before it
    /// mutates, so a refused change itself changed nothing).
    pub fn apply(&mut self, edit: &VersionEdit) -> Result<(), String> {
        let counters = (
            self.log_number,
            self.next_file_number,
            self.next_partition_id,
            self.last_sequence,
        );
        // A few entries at most (files started by opens since the oldest
        // one still needed).
        let wal_starts = edit
            .changes
            .iter()
            .any(|c| matches!(c, Change::LogNumber(_) | Change::WalStart { .. }))
            .then(|| self.wal_starts.clone());
        // Each touched partition as it was before the edit (`None`: absent).
        let mut before: HashMap<u64, Option<PartitionRecord>> = HashMap::new();
        for change in &edit.changes {
            if let Some(id) = touched_partition(change) {
                before
                    .entry(id)
                    .or_insert_with(|| self.partitions.get(&id).cloned());
            }
            if let Err(why) = self.apply_one(change) {
                self.restore(before);
                (
                    self.log_number,
                    self.next_file_number,
                    self.next_partition_id,
                    self.last_sequence,
                ) = counters;
                if let Some(starts) = wal_starts {
                    self.wal_starts = starts;
                }
                return Err(why);
            }
        }
        Ok(())
    }

    /// Puts the partitions in `before` back as they were.
    fn restore(&mut self, before: HashMap<u64, Option<PartitionRecord>>) {
        // Names first leave with their current records (an edit may have
        // dropped a partition and created another of the same name), then
        // come back with the old ones.
        for id in before.keys() {
            if let Some(now) = self.partitions.remove(id) {
                if self.names.get(&now.name) == Some(id) {
                    self.names.remove(&now.name);
                }
            }
        }
        for (id, record) in before {
            if let Some(record) = record {
                self.names.insert(record.name.clone(), id);
                self.partitions.insert(id, record);
            }
        }
    }

    fn apply_one(&mut self, change: &Change) -> Result<(), String> {
        check_bounds(change)?;
        match change {
            Change::CreatePartition { id, name } => {
                if *id < self.next_partition_id && self.partitions.contains_key(id) {
                    return Err(format!("partition id {id} created twice"));
                }
                if *id < self.next_partition_id {
                    return Err(format!(
                        "partition id {id} reused (next is {})",
                        self.next_partition_id
                    ));
                }
                if self.names.contains_key(name) {
                    return Err(format!("partition {name:?} created while it exists"));
                }
                self.partitions.insert(
                    *id,
                    PartitionRecord {
                        name: name.clone(),
                        ..PartitionRecord::default()
                    },
                );
                self.names.insert(name.clone(), *id);
                self.next_partition_id = id
                    .checked_add(1)
                    .ok_or_else(|| format!("partition id {id} leaves no next id"))?;
            }
            Change::DropPartition { id } => {
                let p = self
                    .partitions
                    .remove(id)
                    .ok_or_else(|| format!("drop of unknown partition id {id}"))?;
                self.names.remove(&p.name);
            }
            Change::AddTable(t) => {
                let p = self.partitions.get_mut(&t.partition).ok_or_else(|| {
                    format!("table {} for unknown partition {}", t.file, t.partition)
                })?;
                let Err(at) = p.tables.binary_search_by_key(&t.file, |r| r.file) else {
                    return Err(format!("table {} added twice", t.file));
                };
                let after = t
                    .file
                    .checked_add(1)
                    .ok_or_else(|| format!("table file number {} leaves no next number", t.file))?;
                if p.tables.len() < 8 {
                    // Most partitions hold few tables: no spare capacity.
                    p.tables.reserve_exact(1);
                }
                p.tables.insert(at, t.clone());
                self.next_file_number = self.next_file_number.max(after);
            }
            Change::RemoveTable {
                partition,
                level,
                file,
            } => {
                let p = self.partitions.get_mut(partition).ok_or_else(|| {
                    format!("table {file} removed from unknown partition {partition}")
                })?;
                let at = p
                    .tables
                    .binary_search_by_key(file, |t| t.file)
                    .ok()
                    .filter(|&i| p.tables[i].level == *level)
                    .ok_or_else(|| format!("table {file} not at level {level}"))?;
                p.tables.remove(at);
                if p.tables.len() < p.tables.capacity() / 4 {
                    p.tables.shrink_to(p.tables.len() * 2);
                }
            }
            Change::LogNumber(n) => {
                if *n < self.log_number {
                    return Err(format!(
                        "log number went back from {} to {n}",
                        self.log_number
                    ));
                }
                self.log_number = *n;
                self.wal_starts = self.wal_starts.split_off(n);
            }
            Change::WalStart { wal, seq } => {
                if *wal < self.log_number {
                    return Err(format!(
                        "start of WAL {wal}, below the log number {}",
                        self.log_number
                    ));
                }
                self.wal_starts.insert(*wal, *seq);
            }
            Change::NextFileNumber(n) => self.next_file_number = self.next_file_number.max(*n),
            Change::NextPartitionId(n) => self.next_partition_id = self.next_partition_id.max(*n),
            Change::LastSequence(n) => self.last_sequence = self.last_sequence.max(*n),
            Change::Flushed { partition, seq } => {
                let p = self
                    .partitions
                    .get_mut(partition)
                    .ok_or_else(|| format!("flush of unknown partition {partition}"))?;
                if *seq < p.flushed_seq {
                    return Err(format!("partition {partition} flushed point went back"));
                }
                p.flushed_seq = *seq;
            }
        }
        Ok(())
    }

    /// An edit that recreates this state from nothing: the content of a
    /// fresh manifest after a rollover.
    pub fn snapshot(&self) -> VersionEdit {
        let mut changes = vec![
            Change::NextFileNumber(self.next_file_number),
            Change::LogNumber(self.log_number),
            Change::LastSequence(self.last_sequence),
        ];
        changes.extend(
            self.wal_starts
                .iter()
                .map(|(&wal, &seq)| Change::WalStart { wal, seq }),
        );
        for (id, p) in &self.partitions {
            // Ids must be created in increasing order: the snapshot lists them
            // so, and restores `next_partition_id` at the end.
            changes.push(Change::CreatePartition {
                id: *id,
                name: p.name.clone(),
            });
            changes.extend(
                p.tables_by_level()
                    .into_iter()
                    .cloned()
                    .map(Change::AddTable),
            );
            if p.flushed_seq > 0 {
                changes.push(Change::Flushed {
                    partition: *id,
                    seq: p.flushed_seq,
                });
            }
        }
        changes.push(Change::NextPartitionId(self.next_partition_id));
        VersionEdit { changes }
    }
}

/// Refuses numbers no engine writes (see [`MAX_NUMBER`]): a file, WAL or
/// partition number at or above `MAX_NUMBER`, a counter of the next one or
/// an entry count above it, a sequence number above [`MAX_SEQ`] (the start
/// of a WAL: above `MAX_SEQ + 1`). The engine does arithmetic on what the
/// manifest says; such a value could only come from damage, and would
/// overflow there, or name a file that is never read back.
fn check_bounds(change: &Change) -> Result<(), String> {
    let id = |n: u64| {
        if n >= MAX_NUMBER {
            return Err(format!("number {n} at or above {MAX_NUMBER}"));
        }
        Ok(())
    };
    let counter = |n: u64| {
        if n > MAX_NUMBER {
            return Err(format!("count {n} above {MAX_NUMBER}"));
        }
        Ok(())
    };
    let seq = |n: u64, max: u64| {
        if n > max {
            return Err(format!("sequence number {n} above {max}"));
        }
        Ok(())
    };
    match change {
        Change::CreatePartition { id: p, .. } | Change::DropPartition { id: p } => id(*p),
        Change::AddTable(t) => {
            id(t.partition)?;
            id(t.file)?;
            counter(t.entries)?;
            counter(t.tombstones)?;
            seq(t.min_seq, MAX_SEQ)?;
            seq(t.max_seq, MAX_SEQ)
        }
        Change::RemoveTable {
            partition, file, ..
        } => {
            id(*partition)?;
            id(*file)
        }
        Change::LogNumber(n) => id(*n),
        Change::NextFileNumber(n) | Change::NextPartitionId(n) => counter(*n),
        Change::WalStart { wal, seq: s } => {
            id(*wal)?;
            seq(*s, MAX_SEQ + 1)
        }
        Change::LastSequence(n) => seq(*n, MAX_SEQ),
        Change::Flushed { partition, seq: s } => {
            id(*partition)?;
            seq(*s, MAX_SEQ)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(partition: u64, level: u8, file: u64) -> Change {
        Change::AddTable(TableRecord {
            partition,
            level,
            file,
            size: 100,
            smallest: b"a".to_vec(),
            largest: b"b".to_vec(),
            min_seq: 1,
            max_seq: 2,
            entries: 2,
            tombstones: 0,
        })
    }

    fn create(id: u64, name: &str) -> Change {
        Change::CreatePartition {
            id,
            name: name.into(),
        }
    }

    #[test]
    fn lifecycle_and_snapshot_round_trip() {
        let mut s = ManifestState::default();
        s.apply(&VersionEdit {
            changes: vec![create(1, "a"), create(2, "b"), add(1, 0, 5), add(1, 0, 6)],
        })
        .unwrap();
        s.apply(&VersionEdit {
            changes: vec![
                Change::RemoveTable {
                    partition: 1,
                    level: 0,
                    file: 5,
                },
                add(1, 1, 7),
                Change::Flushed {
                    partition: 1,
                    seq: 2,
                },
                Change::LogNumber(3),
            ],
        })
        .unwrap();
        s.apply(&VersionEdit::one(Change::DropPartition { id: 2 }))
            .unwrap();
        s.apply(&VersionEdit::one(create(3, "b"))).unwrap();
        assert_eq!(s.next_file_number, 8);
        assert_eq!(s.names.get("b"), Some(&3));
        let mut rebuilt = ManifestState::default();
        rebuilt.apply(&s.snapshot()).unwrap();
        assert_eq!(rebuilt, s);
    }

    #[test]
    fn inconsistent_edits_are_refused_whole() {
        let mut s = ManifestState::default();
        s.apply(&VersionEdit::one(create(1, "a"))).unwrap();
        let before = s.clone();
        for bad in [
            vec![create(2, "x"), create(1, "y")],
            vec![create(2, "a")],
            vec![Change::DropPartition { id: 9 }],
            vec![add(9, 0, 1)],
            vec![add(1, 0, 1), add(1, 2, 1)],
            vec![Change::RemoveTable {
                partition: 1,
                level: 0,
                file: 4,
            }],
            vec![Change::LogNumber(5), Change::LogNumber(4)],
            vec![
                Change::Flushed {
                    partition: 1,
                    seq: 5,
                },
                Change::Flushed {
                    partition: 1,
                    seq: 4,
                },
            ],
        ] {
            assert!(
                s.apply(&VersionEdit {
                    changes: bad.clone()
                })
                .is_err(),
                "{bad:?}"
            );
            assert_eq!(s, before, "{bad:?} left a partial change");
        }
    }

    /// Regression (found by the `manifest_edit` fuzz target, input
    /// `fuzz/corpus/manifest_edit/regression-partition-id-overflow`): a
    /// partition id or table file number of `u64::MAX` overflowed computing
    /// the next one (a panic with overflow checks, a wrap to 0 and reused
    /// ids without). Such edits are refused whole.
    #[test]
    fn ids_and_file_numbers_from_max_number_on_are_refused() {
        use crate::coding::MAX_NUMBER;
        let mut s = ManifestState::default();
        for id in [MAX_NUMBER, u64::MAX] {
            assert!(s.apply(&VersionEdit::one(create(id, "a"))).is_err());
            assert_eq!(s, ManifestState::default());
        }
        let last = MAX_NUMBER - 1;
        s.apply(&VersionEdit::one(create(last, "a"))).unwrap();
        assert_eq!(s.next_partition_id, MAX_NUMBER);
        let before = s.clone();
        for file in [MAX_NUMBER, u64::MAX] {
            assert!(s.apply(&VersionEdit::one(add(last, 0, file))).is_err());
            assert_eq!(s, before);
        }
        s.apply(&VersionEdit::one(add(last, 0, last))).unwrap();
        assert_eq!(s.next_file_number, MAX_NUMBER);
        // What the state writes back (a snapshot) is accepted again.
        let mut again = ManifestState::default();
        again.apply(&s.snapshot()).unwrap();
        assert_eq!(again, s);
        let decoded =
            VersionEdit::decode(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0])
                .unwrap();
        assert!(ManifestState::default().apply(&decoded).is_err());
    }

    #[test]
    fn a_refused_edit_puts_back_what_earlier_changes_of_it_did() {
        let mut s = ManifestState::default();
        s.apply(&VersionEdit {
            changes: vec![create(1, "a"), create(2, "b"), add(1, 0, 5)],
        })
        .unwrap();
        let before = s.clone();
        // Drop "a", reuse its name, move tables around and bump counters;
        // the last change is refused, so none of it may stay.
        let err = s.apply(&VersionEdit {
            changes: vec![
                Change::DropPartition { id: 1 },
                create(3, "a"),
                add(3, 0, 9),
                add(2, 0, 10),
                Change::RemoveTable {
                    partition: 2,
                    level: 0,
                    file: 10,
                },
                Change::Flushed {
                    partition: 2,
                    seq: 7,
                },
                Change::LogNumber(4),
                Change::LastSequence(99),
                Change::DropPartition { id: 2 },
                Change::DropPartition { id: 2 },
            ],
        });
        assert!(err.is_err());
        assert_eq!(s, before);
        assert_eq!(s.names.get("a"), Some(&1));
        assert_eq!(s.next_partition_id, 3);
    }

    #[test]
    fn ids_are_never_reused() {
        let mut s = ManifestState::default();
        s.apply(&VersionEdit::one(create(1, "a"))).unwrap();
        s.apply(&VersionEdit::one(Change::DropPartition { id: 1 }))
            .unwrap();
        assert!(s.apply(&VersionEdit::one(create(1, "a"))).is_err());
        s.apply(&VersionEdit::one(create(2, "a"))).unwrap();
        let mut rebuilt = ManifestState::default();
        rebuilt.apply(&s.snapshot()).unwrap();
        assert_eq!(rebuilt.next_partition_id, 3);
    }
}
