//! Recovery at open: replay the WAL files into memtables.
//!
//! WAL files are replayed in number order. Records of partitions no longer in
//! the catalogue (dropped) are skipped. A torn tail — the end of a file that
//! a crash left incomplete — is cut off durably; since a sync write is only
//! acknowledged after every earlier byte of every WAL is durable, anything in
//! later files after a torn tail was never acknowledged as durable, and those
//! files are deleted so that the recovered state is a prefix of history.
//! A bad record followed by valid ones is `Corruption`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::batch::decode_batch;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::memtable::SeqNo;
use crate::partition::PartitionState;
use crate::wal::reader::{read_log, LogEnd};
use crate::wal::writer::parse_wal_file_name;

/// What replay found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Highest sequence number replayed (0 if none).
    pub last_seq: SeqNo,
    /// Number for the next WAL file.
    pub next_wal_number: u64,
    /// Records replayed.
    pub records: u64,
}

/// Replays every WAL file in `dir` into the partitions' memtables.
///
/// # Errors
/// I/O errors; `Corruption` with the file and offset.
pub fn replay(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    partitions: &HashMap<String, Arc<PartitionState>>,
    memtable_size: usize,
) -> Result<Recovered> {
    let by_id: HashMap<u64, &Arc<PartitionState>> =
        partitions.values().map(|p| (p.id(), p)).collect();
    let mut numbers: Vec<u64> = fs
        .read_dir(dir)?
        .iter()
        .filter_map(|name| parse_wal_file_name(name))
        .collect();
    numbers.sort_unstable();
    let mut out = Recovered {
        last_seq: 0,
        next_wal_number: numbers.last().map_or(1, |n| n + 1),
        records: 0,
    };
    let mut cut_after: Option<usize> = None;
    for (i, number) in numbers.iter().enumerate() {
        let path = dir.join(crate::wal::writer::wal_file_name(*number));
        let file = fs.open_read(&path)?;
        let len = usize::try_from(file.len()?)
            .map_err(|_| Error::Io(std::io::Error::other("WAL too large")))?;
        let mut data = vec![0; len];
        file.read_exact_at(&mut data, 0)?;
        drop(file);
        let end = read_log(&data, |_, payload| {
            decode_batch(payload, |op| {
                if op.seq <= out.last_seq && out.last_seq != 0 {
                    return Err(format!("sequence {} after {}", op.seq, out.last_seq));
                }
                out.last_seq = op.seq;
                if let Some(p) = by_id.get(&op.partition) {
                    p.insert(op.key, op.seq, op.value, memtable_size);
                }
                Ok(())
            })?;
            out.records += 1;
            Ok(())
        })
        .map_err(|c| Error::Corruption {
            file: path.clone(),
            offset: c.offset,
            reason: c.reason,
        })?;
        if let LogEnd::TornTail { offset } = end {
            fs.truncate(&path, offset)?;
            cut_after = Some(i);
            break;
        }
    }
    if let Some(i) = cut_after {
        let later = &numbers[i + 1..];
        for n in later {
            fs.remove_file(&dir.join(crate::wal::writer::wal_file_name(*n)))?;
        }
        if !later.is_empty() {
            fs.sync_dir(dir)?;
        }
    }
    Ok(out)
}
