//! Recovery at open: replay the WAL files into memtables.
//!
//! WAL files are replayed in number order. Records of partitions no longer in
//! the catalogue (dropped) are skipped. A torn tail — the end of a file that
//! a crash left incomplete — is cut off durably; anything in later files was
//! never acknowledged as durable (a sync write is acknowledged only after
//! every earlier byte of every WAL is durable), so those files are deleted and
//! the recovered state is a prefix of history.
//!
//! Damage followed by valid records is not always corruption: a power loss
//! can keep a later page of unsynced writes and lose an earlier one (the
//! file system writes pages back in no promised order). A sync covers
//! every byte written before it, so valid records after a lost spot were
//! unsynced unless a sync covered the spot too — and each sync leaves a mark
//! in the WAL (`batch::TAG_SYNCED`, written with the next group). A lost
//! write reads back as zeros, a sector at a time (WAL files are new, never
//! recycled: see `reader::lost_write_shape`). So damage of that shape is cut
//! like a torn tail, and everything after it dropped, unless a mark after it
//! (in that file or a later one) shows the damaged bytes were durable;
//! otherwise it is `Corruption`. So is damage before a sequence number the
//! manifest records as durable.
//!
//! Every WAL file kept is synced before the engine accepts writes: the
//! previous process may have died (or closed) with its last writes only in
//! the OS page cache, and a sync write of this session must not become
//! durable while they are not.
//!
//! Replay validates every file first (pass 1), then applies them (pass 2,
//! reading each again). Both read a file a window of [`REPLAY_WINDOW`] bytes
//! at a time, never whole. Pass 2 gathers the operations of about
//! [`REPLAY_BATCH_BYTES`] of records, sorts them by partition and internal
//! key (key, then sequence number descending) and inserts each partition's
//! run through [`Memtable::insert_sorted`](crate::memtable::Memtable::insert_sorted),
//! as skip-list inserts in key order are several times faster than in log
//! order. Batches go in log order, and replay never rotates a memtable, so
//! where a key's versions land does not depend on the order within a
//! batch. Besides the memtables, replay holds one window and one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::decode_batch;
use crate::error::{corruption, Result};
use crate::fs::Fs;
use crate::memtable::SeqNo;
use crate::partition::PartitionState;
use crate::wal::format::BLOCK_SIZE;
use crate::wal::reader::{
    lost_write_shape, read_log_from, salvage_from, FileSource, Hole, LogCorruption, LogEnd,
    LogSource, ReadLogError,
};
use crate::wal::writer::{parse_wal_file_name, wal_file_name};

/// What replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Highest sequence number replayed (0 if none).
    pub last_seq: SeqNo,
    /// Number for the next WAL file.
    pub next_wal_number: u64,
    /// Records replayed.
    pub records: u64,
    /// The WAL files kept: number → size.
    pub wal_files: std::collections::BTreeMap<u64, u64>,
    /// Kept WAL files → the sequence number of their first write batch,
    /// where known (a batch read, or the number after the previous file's
    /// last one).
    pub wal_starts: std::collections::BTreeMap<u64, SeqNo>,
}

/// Bytes of a WAL file read at a time.
pub const REPLAY_WINDOW: usize = 1 << 20;

/// Bytes of keys and values gathered, sorted and inserted at a time.
pub const REPLAY_BATCH_BYTES: usize = 4 << 20;

/// One operation found in a WAL file; its key and value are in the batch's
/// arena.
struct Replayed {
    partition: u64,
    /// The key's first 8 bytes, big-endian, zero-padded: most comparisons
    /// of the sort end here without touching the arena.
    prefix: u64,
    seq: SeqNo,
    key: std::ops::Range<usize>,
    value: Option<std::ops::Range<usize>>,
}

/// Operations gathered from the WAL, not yet inserted.
#[derive(Default)]
struct ReplayBatch {
    ops: Vec<Replayed>,
    arena: Vec<u8>,
}

impl ReplayBatch {
    /// Memory held: keys and values, and the operations (which dominate
    /// for deletes of short keys).
    fn bytes(&self) -> usize {
        self.arena.len() + self.ops.len() * std::mem::size_of::<Replayed>()
    }

    fn push(&mut self, partition: u64, seq: SeqNo, key: &[u8], value: Option<&[u8]>) {
        let mut copy = |bytes: &[u8]| {
            let r = self.arena.len()..self.arena.len() + bytes.len();
            self.arena.extend_from_slice(bytes);
            r
        };
        let key_range = copy(key);
        let value = value.map(copy);
        let mut head = [0u8; 8];
        let n = key.len().min(8);
        head[..n].copy_from_slice(&key[..n]);
        self.ops.push(Replayed {
            partition,
            prefix: u64::from_be_bytes(head),
            seq,
            key: key_range,
            value,
        });
    }

    /// Inserts the gathered operations sorted by (partition, key, sequence)
    /// and empties the batch. Memtables do not rotate during replay
    /// (`usize::MAX`); oversized ones are flushed after the open.
    fn apply(&mut self, by_id: &HashMap<u64, &Arc<PartitionState>>, first_wal: u64) {
        let arena = &self.arena;
        self.ops.sort_unstable_by(|a, b| {
            a.partition
                .cmp(&b.partition)
                .then_with(|| a.prefix.cmp(&b.prefix))
                .then_with(|| arena[a.key.clone()].cmp(&arena[b.key.clone()]))
                .then_with(|| b.seq.cmp(&a.seq))
        });
        // Each partition's operations, now in internal-key order, go in as
        // one sorted batch.
        let mut entries = Vec::new();
        for run in self.ops.chunk_by(|a, b| a.partition == b.partition) {
            if let Some(p) = by_id.get(&run[0].partition) {
                entries.clear();
                entries.extend(run.iter().map(|op| {
                    let value = op.value.clone().map(|v| &arena[v]);
                    (&arena[op.key.clone()], op.seq, value)
                }));
                p.insert_sorted(&entries, usize::MAX, first_wal);
            }
        }
        self.ops.clear();
        self.arena.clear();
    }
}

/// Inserts the operations of one validated WAL file (its first `len`
/// bytes) that belong to live partitions and are not yet in their tables.
fn apply_file(
    fs: &Arc<dyn Fs>,
    path: &Path,
    len: u64,
    by_id: &HashMap<u64, &Arc<PartitionState>>,
    first_wal: u64,
) -> Result<()> {
    let file = fs.open_read(path)?;
    let actual = file.len()?;
    if actual < len {
        return Err(corruption(
            path,
            actual,
            format!("the file shrank to {actual} bytes during recovery (was {len})"),
        ));
    }
    let mut src = FileSource::new(file, len, REPLAY_WINDOW);
    let mut batch = ReplayBatch::default();
    read_log_from(&mut src, |_, payload| {
        if crate::batch::decode_previous_wal(payload)?.is_some()
            || crate::batch::decode_synced(payload)?.is_some()
        {
            return Ok(());
        }
        decode_batch(payload, |op| {
            let live = by_id
                .get(&op.partition)
                .is_some_and(|p| op.seq > p.flushed_seq());
            if live {
                batch.push(op.partition, op.seq, op.key, op.value);
            }
            Ok(())
        })?;
        if batch.bytes() >= REPLAY_BATCH_BYTES {
            batch.apply(by_id, first_wal);
        }
        Ok(())
    })
    .map_err(|e| log_error(path, e))?;
    batch.apply(by_id, first_wal);
    Ok(())
}

/// A log read error as the engine's error, naming the file.
fn log_error(path: &Path, e: ReadLogError) -> crate::error::Error {
    match e {
        ReadLogError::Io(e) => e.into(),
        ReadLogError::Corrupt(c) => corruption(path, c.offset, c.reason),
    }
}

/// What the manifest says that the WAL must agree with.
#[derive(Debug, Clone)]
pub struct ManifestFacts {
    /// The manifest file these facts come from (named in errors).
    pub path: PathBuf,
    /// WAL files numbered below this hold nothing unflushed.
    pub log_number: u64,
    /// Partition ids below this were handed out; the WAL never writes to a
    /// higher one.
    pub next_partition_id: u64,
    /// Sequence numbers up to this were durable in the WAL when the
    /// manifest recorded them (a flush syncs the WAL before logging its
    /// table), so a torn tail never loses them.
    pub last_sequence: SeqNo,
    /// WAL files started by an open → the sequence number of their first
    /// write batch.
    pub wal_starts: std::collections::BTreeMap<u64, SeqNo>,
}

/// What the WAL file at `path` starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstRecord {
    /// A write batch: the file was created by an open (a rotation starts a
    /// file with a previous-WAL record), and that open synced every earlier
    /// WAL file it kept — after truncating any torn tail — so none of them
    /// can end torn.
    Batch,
    /// A previous-WAL record: the file was started by a rotation, when WAL
    /// `number` held `len` bytes of records.
    PreviousWal { number: u64, len: u64 },
    /// Nothing readable.
    Other,
}

fn first_record(fs: &Arc<dyn Fs>, path: &Path) -> Result<FirstRecord> {
    let mut src = FileSource::open(fs.as_ref(), path, BLOCK_SIZE)?;
    let mut first = FirstRecord::Other;
    // Only the first record matters: stop there (the "corruption" is ours).
    // A read error is not: taken for "nothing readable", it would make
    // recovery drop the later files.
    let read = read_log_from(&mut src, |_, payload| {
        if matches!(crate::batch::decode_synced(payload), Ok(Some(_))) {
            return Ok(()); // a sync mark is not what starts a file
        }
        first = match crate::batch::decode_previous_wal(payload) {
            Ok(Some((number, len))) => FirstRecord::PreviousWal { number, len },
            _ if payload.first() == Some(&crate::batch::TAG_WRITE_BATCH) => FirstRecord::Batch,
            _ => FirstRecord::Other,
        };
        Err(String::new())
    });
    if let Err(ReadLogError::Io(e)) = read {
        return Err(e.into());
    }
    Ok(first)
}

/// Durably cuts the WAL file at `path`, `len` bytes long, at `offset`.
fn cut_at(fs: &Arc<dyn Fs>, path: &Path, len: &mut u64, offset: u64) -> Result<()> {
    fs.truncate(path, offset)?;
    *len = offset.min(*len);
    Ok(())
}

/// A sync mark showing that bytes lost from a WAL file were durable.
struct DurableMark {
    /// The file holding the mark, and the mark's offset in it.
    path: PathBuf,
    at: u64,
    /// The WAL file and length the mark says a sync made durable.
    number: u64,
    len: u64,
}

impl DurableMark {
    fn describe(&self) -> String {
        format!(
            "{} at offset {} records a completed sync of WAL {} through offset {}",
            self.path.display(),
            self.at,
            wal_file_name(self.number),
            self.len
        )
    }
}

/// Looks for a sync mark showing that WAL `number` was durable beyond
/// `offset`: a mark for that file past `offset`, or a mark for any later
/// file (the committer syncs every earlier file whole before a later one).
/// Reads file `number` from `from`, going past damage, and the files
/// `later` whole. Only on the path of a damaged log.
fn durable_beyond(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    number: u64,
    offset: u64,
    from: Option<u64>,
    later: &[u64],
) -> Result<Option<DurableMark>> {
    let files = from
        .map(|f| (number, f))
        .into_iter()
        .chain(later.iter().map(|&n| (n, 0)));
    for (n, start) in files {
        let path = dir.join(wal_file_name(n));
        let mut src = FileSource::open(fs.as_ref(), &path, REPLAY_WINDOW)?;
        let start = start.min(src.len());
        let found = salvage_from(&mut src, start, |at, payload| {
            let (m, len) = crate::batch::decode_synced(payload).ok()??;
            // Past (`number`, `offset`) in the order of WAL bytes.
            ((m, len) > (number, offset)).then(|| DurableMark {
                path: path.clone(),
                at,
                number: m,
                len,
            })
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Replays every WAL file in `dir` into the partitions' memtables.
///
/// Besides each file's own framing and sequence order, two checks tie the
/// WAL to the manifest, so that a damaged file never yields a state that is
/// not a prefix of history: a write to a partition the manifest never
/// created means the manifest lost an acknowledged edit (corruption of the
/// manifest); and a torn tail right after sequence `s` with
/// `s < last_sequence` lost records that were durable (sequence numbers are
/// consecutive, so the first record lost is `s + 1`): corruption of that
/// WAL file, not a torn write. A jump in sequence numbers is corruption
/// too, and where a file started by an open begins (`WalStart`) gives `s`
/// when no earlier record is left.
///
/// # Errors
/// I/O errors; `Corruption` with the file and offset.
pub fn replay(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    partitions: &HashMap<String, Arc<PartitionState>>,
    manifest: &ManifestFacts,
) -> Result<Recovered> {
    let log_number = manifest.log_number;
    let mut numbers: Vec<u64> = fs
        .read_dir(dir)?
        .iter()
        .filter_map(|name| parse_wal_file_name(name))
        .filter(|n| *n >= log_number)
        .collect();
    numbers.sort_unstable();
    let next_wal_number = numbers.last().map_or(log_number.max(1), |n| n + 1);

    // Pass 1: read and validate every file; cut a torn tail and drop the
    // files after it.
    // The files kept, with their lengths (after any cut).
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    let mut last_seq: SeqNo = 0;
    // The sequence number known to come right before the next write batch:
    // the last one replayed, or where a file started by an open begins.
    let mut known: Option<SeqNo> = None;
    let mut records = 0u64;
    let mut wal_starts = std::collections::BTreeMap::new();
    for (i, number) in numbers.iter().enumerate() {
        let path = dir.join(wal_file_name(*number));
        let mut src = FileSource::open(fs.as_ref(), &path, REPLAY_WINDOW)?;
        let mut len = src.len();
        let seq_before = last_seq;
        let known_before = known;
        if known.is_none() {
            if let Some(&start) = manifest.wal_starts.get(number) {
                known = Some(start.saturating_sub(1));
            }
        }
        // Where this file's batches start: right after what precedes them
        // (the first batch read confirms it, or is a gap).
        let start = known.map(|k| k + 1);
        let mut first_batch: Option<SeqNo> = None;
        let mut previous_len: Option<(u64, u64)> = None;
        // A write to a partition the manifest never created: (id, offset).
        let mut unknown_partition: Option<(u64, u64)> = None;
        // Durable sequence numbers missing: (last before, next found, offset).
        let mut gap: Option<(u64, u64, u64)> = None;
        let end = read_log_from(&mut src, |offset, payload| {
            if let Some(prev) = crate::batch::decode_previous_wal(payload)? {
                if offset != 0 {
                    return Err("previous-WAL record not at the start of the file".into());
                }
                previous_len = Some(prev);
                return Ok(());
            }
            if let Some((n, len)) = crate::batch::decode_synced(payload)? {
                // A mark names this file before itself, or an earlier file.
                if (n, len) > (*number, offset) {
                    return Err(format!(
                        "sync mark for WAL {n} through offset {len} in WAL {number} at offset \
                         {offset}"
                    ));
                }
                return Ok(());
            }
            decode_batch(payload, |op| {
                // The engine numbers writes from 1: a 0 would pass the order
                // check below any number of times.
                if op.seq == 0 {
                    return Err("sequence number 0".into());
                }
                if last_seq != 0 && op.seq <= last_seq {
                    return Err(format!("sequence number {} after {last_seq}", op.seq));
                }
                // Sequence numbers are consecutive across the kept WAL files:
                // within a session; across a rotation; and across an open,
                // which continues from the last one recovered (a torn tail
                // it cut is gone from the file). A jump is records cut out,
                // e.g. a file truncated at a record boundary.
                if let Some(prev) = known.filter(|&k| op.seq > k + 1) {
                    gap = Some((prev, op.seq, offset));
                    return Err("gap in sequence numbers".into());
                }
                if op.partition >= manifest.next_partition_id {
                    unknown_partition = Some((op.partition, offset));
                    return Err("write to an unknown partition".into());
                }
                last_seq = op.seq;
                known = Some(op.seq);
                first_batch.get_or_insert(op.seq);
                Ok(())
            })?;
            records += 1;
            Ok(())
        });
        // The previous file lost bytes that existed when this one started:
        // its unsynced tail is gone, so nothing from this file on is replayed
        // (and nothing in it, such as a jump over the lost numbers, is held
        // against the log).
        let previous_short = match (previous_len, files.last()) {
            (Some((prev_number, prev_len)), Some((_, prev_data_len))) => {
                i > 0 && numbers[i - 1] == prev_number && *prev_data_len < prev_len
            }
            _ => false,
        };
        if previous_short {
            unknown_partition = None;
            gap = None;
        }
        if let Some((id, offset)) = unknown_partition {
            return Err(corruption(
                &manifest.path,
                0,
                format!(
                    "{} at offset {offset} writes to partition {id}, which the manifest \
                     never created (partition ids below {} only): the manifest lost an edit",
                    path.display(),
                    manifest.next_partition_id
                ),
            ));
        }
        if let Some((before, next, offset)) = gap {
            // The records lost end the previous file when this file starts
            // with the jump.
            let (damaged, at) = match files.last() {
                Some((prev, prev_data_len)) if known_before == Some(before) => {
                    (prev.clone(), *prev_data_len)
                }
                _ => (path.clone(), offset),
            };
            return Err(corruption(
                &damaged,
                at,
                format!(
                    "sequence numbers {} to {} are missing before {} at offset {offset}: \
                     records were lost",
                    before + 1,
                    next - 1,
                    path.display()
                ),
            ));
        }
        // (A file dropped below is never replayed: what it holds is not
        // judged.)
        drop(src);
        // Damage followed by valid records: judged below as a torn tail at
        // the first record lost (see the module docs), with why it stopped.
        let mut damage: Option<(String, Hole)> = None;
        let end = match end {
            Err(ReadLogError::Corrupt(_)) if previous_short => LogEnd::Clean,
            Err(ReadLogError::Corrupt(LogCorruption {
                offset,
                reason,
                hole: Some(hole),
            })) => {
                // A lost write reads back as zeros; anything else is damage.
                let mut src = FileSource::open(fs.as_ref(), &path, REPLAY_WINDOW)?;
                if !lost_write_shape(&mut src, hole)? {
                    return Err(corruption(&path, offset, reason));
                }
                damage = Some((reason, hole));
                LogEnd::TornTail { offset }
            }
            end => end.map_err(|e| log_error(&path, e))?,
        };
        // Preallocated space never written: the log ends cleanly where the
        // zeros start. They are cut, so a kept file holds only its records
        // and its length is the one a later file's previous-WAL record names.
        let end = match end {
            LogEnd::ZeroTail { offset } => {
                cut_at(fs, &path, &mut len, offset)?;
                LogEnd::Clean
            }
            end => end,
        };
        if let Some(seq) = first_batch.or(start) {
            wal_starts.insert(*number, seq);
        }
        // The log ends (or, below, the files after it are dropped) right
        // after `last_seq`: if the manifest knows a later sequence number as
        // durable, synced records were lost.
        let lost_durable = |offset: u64| -> Result<()> {
            if let Some(k) = known.filter(|&k| k < manifest.last_sequence) {
                return Err(corruption(
                    &path,
                    offset,
                    format!(
                        "the log ends after sequence {k}, but sequence numbers up to \
                         {} were durable (recorded in {}): records were lost",
                        manifest.last_sequence,
                        manifest.path.display()
                    ),
                ));
            }
            Ok(())
        };
        // The previous file lost bytes that existed when this one started:
        // its unsynced tail is gone, so nothing from here on may be replayed.
        if let (Some((prev_number, prev_len)), Some((prev_path, prev_data_len))) =
            (previous_len, files.last())
        {
            let prev_is_that_file = i > 0 && numbers[i - 1] == prev_number;
            if prev_is_that_file && *prev_data_len < prev_len {
                if let Some(mark) =
                    durable_beyond(fs, dir, prev_number, *prev_data_len, None, &numbers[i..])?
                {
                    return Err(corruption(
                        prev_path,
                        *prev_data_len,
                        format!(
                            "{prev_len} bytes when {} started, but only {prev_data_len} are \
                             left, and {}: durable records were lost",
                            path.display(),
                            mark.describe()
                        ),
                    ));
                }
                // Nothing of this file is replayed: its sequence numbers are
                // not used (the next open continues after the previous file).
                last_seq = seq_before;
                known = known_before;
                if let Some(k) = known.filter(|&k| k < manifest.last_sequence) {
                    return Err(corruption(
                        prev_path,
                        *prev_data_len,
                        format!(
                            "{prev_len} bytes when {} started, but it ends after sequence \
                             {k} and sequence numbers up to {} were durable",
                            path.display(),
                            manifest.last_sequence
                        ),
                    ));
                }
                for n in &numbers[i..] {
                    fs.remove_file(&dir.join(wal_file_name(*n)))?;
                }
                fs.sync_dir(dir)?;
                break;
            }
        }
        if let LogEnd::TornTail { offset } = end {
            let next = match numbers.get(i + 1) {
                Some(n) => {
                    let next_path = dir.join(wal_file_name(*n));
                    let first = first_record(fs, &next_path)?;
                    Some((next_path, first))
                }
                None => None,
            };
            // The next file was started when this one held `written` bytes
            // of records, and they are all here: what follows them was never
            // written (damage in unused space, such as preallocated zeros),
            // so nothing is lost. Cut it and go on to the next file.
            if let Some((
                _,
                FirstRecord::PreviousWal {
                    number: prev,
                    len: written,
                },
            )) = &next
            {
                if prev == number && offset >= *written {
                    // Valid records after what the file held at rotation
                    // are none the engine wrote.
                    if let Some((reason, _)) = damage {
                        return Err(corruption(
                            &path,
                            offset,
                            format!(
                                "{reason}, after the {written} bytes the file held when the \
                                 next WAL file started"
                            ),
                        ));
                    }
                    cut_at(fs, &path, &mut len, offset)?;
                    files.push((path, len));
                    continue;
                }
            }
            lost_durable(offset)?;
            // Marks past the damage: from where valid data resumes (after a
            // plain torn tail nothing in this file is valid).
            let from = damage.as_ref().map(|(_, hole)| hole.resumes_at);
            let what = damage.map_or_else(
                || "the log is torn".to_string(),
                |(reason, _)| format!("records are lost from offset {offset} ({reason})"),
            );
            if let Some((next_path, first)) = &next {
                if *first == FirstRecord::Batch {
                    return Err(corruption(
                        &path,
                        offset,
                        format!(
                            "{what}, but {} was started by a later open, which \
                             had synced this file whole: records were lost",
                            next_path.display()
                        ),
                    ));
                }
            }
            if let Some(mark) = durable_beyond(fs, dir, *number, offset, from, &numbers[i + 1..])? {
                return Err(corruption(
                    &path,
                    offset,
                    format!("{what}, but {}: durable records were lost", mark.describe()),
                ));
            }
            cut_at(fs, &path, &mut len, offset)?;
            files.push((path, len));
            let later = &numbers[i + 1..];
            for n in later {
                fs.remove_file(&dir.join(wal_file_name(*n)))?;
            }
            if !later.is_empty() {
                fs.sync_dir(dir)?;
            }
            break;
        }
        files.push((path, len));
    }

    // However the log ends, it holds every durable sequence number (the
    // checks above cover a torn tail; this one a log cut at a record
    // boundary, which reads as a clean end).
    if let (Some((path, data_len)), Some(k)) =
        (files.last(), known.filter(|&k| k < manifest.last_sequence))
    {
        return Err(corruption(
            path,
            *data_len,
            format!(
                "the log ends after sequence {k}, but sequence numbers up to {} \
                 were durable (recorded in {}): records were lost",
                manifest.last_sequence,
                manifest.path.display()
            ),
        ));
    }

    // Make what is kept durable before this session acknowledges anything.
    for (path, _) in &files {
        fs.open_append(path)?.sync_data()?;
    }

    let kept: std::collections::BTreeMap<u64, u64> = numbers
        .iter()
        .zip(&files)
        .map(|(n, (_, len))| (*n, *len))
        .collect();
    let first_wal = kept.keys().next().copied().unwrap_or(next_wal_number);

    // Pass 2: collect the operations of live partitions a batch at a
    // time, sort, insert.
    let by_id: HashMap<u64, &Arc<PartitionState>> =
        partitions.values().map(|p| (p.id(), p)).collect();
    for (path, len) in &files {
        apply_file(fs, path, *len, &by_id, first_wal)?;
    }
    Ok(Recovered {
        last_seq,
        next_wal_number,
        records,
        wal_files: kept,
        wal_starts,
    })
}
