//! The partition catalogue: which partitions exist, their ids, and the next
//! id to hand out (ids are never reused).
//!
//! A log file `CATALOG` in the database directory, framed like the WAL
//! ([`wal::format`](crate::wal::format)). Record payloads:
//!
//! ```text
//! tag 3 = header:  next_id: u64 LE               (first record of a file)
//! tag 1 = create:  id: u64 LE, name: varint len + UTF-8 bytes
//! tag 2 = drop:    id: u64 LE
//! ```
//!
//! Every change is appended and synced before it takes effect. At open the
//! log is replayed and rewritten as a compact snapshot (header + one create
//! per live partition) through write-temp, fsync, rename, fsync-directory.
//! This is the part-1 catalogue; the manifest of the SSTable stage replaces it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::coding::{put_varint, Reader};
use crate::error::{Error, Result};
use crate::fs::{write_file_atomic, Fs, WritableFile};
use crate::wal::format::{encode_record, BLOCK_SIZE};
use crate::wal::reader::{read_log, LogEnd};

/// File name of the catalogue inside the database directory.
pub const CATALOG_FILE: &str = "CATALOG";

const TAG_CREATE: u8 = 1;
const TAG_DROP: u8 = 2;
const TAG_HEADER: u8 = 3;

/// The first id handed out.
pub const FIRST_PARTITION_ID: u64 = 1;

/// The durable catalogue. Not thread-safe by itself: the engine serialises
/// changes through a mutex.
///
/// Invariants: `partitions` holds exactly the creates not followed by a drop
/// in the file; every id in it is below `next_id`.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    file: Box<dyn WritableFile>,
    block_offset: usize,
    partitions: BTreeMap<String, u64>,
    next_id: u64,
    /// Set after a failed append or sync: the file may end in a partial
    /// record, so nothing more may be appended until reopen.
    failed: Option<String>,
}

fn read_whole(fs: &dyn Fs, path: &Path) -> Result<Vec<u8>> {
    let file = fs.open_read(path)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| Error::Io(std::io::Error::other("file too large")))?;
    let mut data = vec![0; len];
    file.read_exact_at(&mut data, 0)?;
    Ok(data)
}

fn corruption(path: &Path, offset: u64, reason: String) -> Error {
    Error::Corruption {
        file: path.to_path_buf(),
        offset,
        reason,
    }
}

impl Catalog {
    /// Opens (or creates) the catalogue of the database in `dir`.
    ///
    /// # Errors
    /// I/O errors, or `Corruption` naming the file and offset.
    pub fn open(fs: &Arc<dyn Fs>, dir: &Path) -> Result<Catalog> {
        let path = dir.join(CATALOG_FILE);
        let mut partitions = BTreeMap::new();
        let mut next_id = FIRST_PARTITION_ID;
        if fs.exists(&path)? {
            let data = read_whole(fs.as_ref(), &path)?;
            let mut by_id: BTreeMap<u64, String> = BTreeMap::new();
            let end = read_log(&data, |_, payload| {
                apply_record(payload, &mut partitions, &mut by_id, &mut next_id)
            })
            .map_err(|c| corruption(&path, c.offset, c.reason))?;
            // A torn tail is an unacknowledged change: the rewrite drops it.
            let _: LogEnd = end;
        }
        let snapshot = encode_snapshot(&partitions, next_id);
        write_file_atomic(fs.as_ref(), &path, &snapshot)?;
        let file = fs.open_append(&path)?;
        Ok(Catalog {
            path,
            file,
            block_offset: snapshot.len() % BLOCK_SIZE,
            partitions,
            next_id,
            failed: None,
        })
    }

    /// Live partitions: name → id.
    pub fn partitions(&self) -> &BTreeMap<String, u64> {
        &self.partitions
    }

    /// The id the next created partition gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Durably records a new partition and returns its id. The caller checks
    /// the name is not live.
    ///
    /// # Errors
    /// I/O errors; after one, every later change fails until reopen.
    pub fn create(&mut self, name: &str) -> Result<u64> {
        let id = self.next_id;
        let mut payload = vec![TAG_CREATE];
        payload.extend_from_slice(&id.to_le_bytes());
        put_varint(&mut payload, name.len() as u64);
        payload.extend_from_slice(name.as_bytes());
        self.append(&payload)?;
        self.next_id += 1;
        self.partitions.insert(name.to_string(), id);
        Ok(id)
    }

    /// Durably records the drop of a live partition.
    ///
    /// # Errors
    /// `PartitionNotFound`, I/O errors (after which changes fail until reopen).
    pub fn drop_partition(&mut self, name: &str) -> Result<u64> {
        let id = *self
            .partitions
            .get(name)
            .ok_or_else(|| Error::PartitionNotFound(name.to_string()))?;
        let mut payload = vec![TAG_DROP];
        payload.extend_from_slice(&id.to_le_bytes());
        self.append(&payload)?;
        self.partitions.remove(name);
        Ok(id)
    }

    fn append(&mut self, payload: &[u8]) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(Error::Poisoned(format!(
                "poisoned: partition catalogue {} after an earlier failure ({why}); reopen the database",
                self.path.display()
            )));
        }
        let mut buf = Vec::with_capacity(payload.len() + 16);
        let mut offset = self.block_offset;
        encode_record(&mut offset, payload, &mut buf);
        let result = self.file.append(&buf).and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.block_offset = offset;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(Error::Io(e))
            }
        }
    }
}

fn encode_snapshot(partitions: &BTreeMap<String, u64>, next_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut header = vec![TAG_HEADER];
    header.extend_from_slice(&next_id.to_le_bytes());
    encode_record(&mut offset, &header, &mut out);
    for (name, id) in partitions {
        let mut payload = vec![TAG_CREATE];
        payload.extend_from_slice(&id.to_le_bytes());
        put_varint(&mut payload, name.len() as u64);
        payload.extend_from_slice(name.as_bytes());
        encode_record(&mut offset, &payload, &mut out);
    }
    out
}

fn apply_record(
    payload: &[u8],
    partitions: &mut BTreeMap<String, u64>,
    by_id: &mut BTreeMap<u64, String>,
    next_id: &mut u64,
) -> std::result::Result<(), String> {
    let mut r = Reader::new(payload);
    match r.u8("catalogue tag")? {
        TAG_HEADER => {
            *next_id = (*next_id).max(r.u64_le("next id")?);
        }
        TAG_CREATE => {
            let id = r.u64_le("partition id")?;
            let name = std::str::from_utf8(r.length_prefixed("partition name")?)
                .map_err(|_| "partition name is not UTF-8".to_string())?;
            if partitions.contains_key(name) || by_id.contains_key(&id) || id < FIRST_PARTITION_ID {
                return Err(format!(
                    "duplicate or invalid create of {name:?} as id {id}"
                ));
            }
            partitions.insert(name.to_string(), id);
            by_id.insert(id, name.to_string());
            *next_id = (*next_id).max(id.saturating_add(1));
        }
        TAG_DROP => {
            let id = r.u64_le("partition id")?;
            let name = by_id
                .remove(&id)
                .ok_or_else(|| format!("drop of unknown partition id {id}"))?;
            partitions.remove(&name);
        }
        other => return Err(format!("unknown catalogue record tag {other}")),
    }
    if !r.is_empty() {
        return Err("trailing bytes in a catalogue record".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::SimFs;

    fn sim() -> (SimFs, Arc<dyn Fs>) {
        let sim = SimFs::new();
        let fs: Arc<dyn Fs> = Arc::new(sim.clone());
        fs.create_dir_all(Path::new("/db")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        (sim, fs)
    }

    #[test]
    fn ids_are_never_reused_across_reopen() {
        let (_sim, fs) = sim();
        let dir = Path::new("/db");
        let mut c = Catalog::open(&fs, dir).unwrap();
        assert_eq!(c.create("a").unwrap(), 1);
        assert_eq!(c.create("b").unwrap(), 2);
        assert_eq!(c.drop_partition("b").unwrap(), 2);
        assert_eq!(c.create("b").unwrap(), 3);
        c.drop_partition("b").unwrap();
        drop(c);
        let mut c = Catalog::open(&fs, dir).unwrap();
        assert_eq!(
            c.partitions()
                .iter()
                .map(|(n, i)| (n.as_str(), *i))
                .collect::<Vec<_>>(),
            [("a", 1)]
        );
        assert_eq!(c.create("c").unwrap(), 4);
        assert!(matches!(
            c.drop_partition("zz"),
            Err(Error::PartitionNotFound(_))
        ));
    }

    #[test]
    fn acknowledged_changes_survive_a_crash() {
        let (sim, fs) = sim();
        let dir = Path::new("/db");
        let mut c = Catalog::open(&fs, dir).unwrap();
        c.create("x").unwrap();
        c.create("y").unwrap();
        c.drop_partition("x").unwrap();
        sim.crash(7);
        let fs: Arc<dyn Fs> = Arc::new(sim.clone());
        let c = Catalog::open(&fs, dir).unwrap();
        assert_eq!(c.partitions().keys().collect::<Vec<_>>(), ["y"]);
        assert_eq!(c.next_id(), 3);
    }

    #[test]
    fn damaged_catalogue_is_corruption_naming_the_file() {
        let (_sim, fs) = sim();
        let dir = Path::new("/db");
        let mut c = Catalog::open(&fs, dir).unwrap();
        for i in 0..5 {
            c.create(&format!("p{i}")).unwrap();
        }
        drop(c);
        let path = dir.join(CATALOG_FILE);
        let mut data = read_whole(fs.as_ref(), &path).unwrap();
        data[10] ^= 0x20;
        write_file_atomic(fs.as_ref(), &path, &data).unwrap();
        match Catalog::open(&fs, dir) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
