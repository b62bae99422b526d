//! The `db_open` target: a database directory whose manifest and WAL are
//! arbitrary bytes, opened by `kalamdb_lsm::Db`.
//!
//! Input: the WAL file's number (one byte), the manifest's length (`u16`
//! LE) and bytes, the WAL's length (`u16` LE) and bytes, then any number of
//! table files, each a partition id and a file number (one byte each), a
//! length (`u16` LE) and the bytes. The manifest and the WAL get their
//! record checksums rewritten ([`fix_log_checksums`]), the tables theirs
//! ([`fix_table_checksums`]), so that mutations reach the edit, batch and
//! block decoders, the manifest's state checks, WAL replay into memtables,
//! and the open's use of what they say (next sequence and file numbers,
//! WAL starts, table sizes, orphan removal). `CURRENT` names manifest 1.
//!
//! Checks: no panic; a database that opened reopens after a clean close,
//! with the same partitions and, for every partition that could be read
//! the first time, the same entries.

use std::path::Path;
use std::sync::Arc;

use kalamdb_lsm::fs::{write_file_atomic, Fs, SimFs};
use kalamdb_lsm::manifest::manifest_file_name;
use kalamdb_lsm::table_file::table_file_name;
use kalamdb_lsm::wal::writer::wal_file_name;
use kalamdb_lsm::{Db, Options};

use crate::{fix_log_checksums, fix_table_checksums};

/// Where the database is, on the simulated file system.
pub const DIR: &str = "/db";

/// A table file of an input: partition id, file number, contents.
pub type TableInput<'a> = (u8, u8, &'a [u8]);

/// An input for [`run`].
///
/// # Panics
/// If the manifest, the WAL or a table is longer than `u16::MAX` bytes.
pub fn encode(wal_number: u8, manifest: &[u8], wal: &[u8], tables: &[TableInput<'_>]) -> Vec<u8> {
    let len = |b: &[u8]| u16::try_from(b.len()).expect("files of at most 64 KiB");
    let mut out = vec![wal_number];
    for part in [manifest, wal] {
        out.extend_from_slice(&len(part).to_le_bytes());
        out.extend_from_slice(part);
    }
    for &(partition, file, bytes) in tables {
        out.extend_from_slice(&[partition, file]);
        out.extend_from_slice(&len(bytes).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Splits a `u16` LE length and that many bytes off `data`.
fn part(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len));
    Some((rest.get(..len)?, rest.get(len..)?))
}

struct Input<'a> {
    wal_number: u64,
    manifest: &'a [u8],
    wal: &'a [u8],
    tables: Vec<TableInput<'a>>,
}

fn decode(data: &[u8]) -> Option<Input<'_>> {
    let (&wal_number, rest) = data.split_first()?;
    let (manifest, rest) = part(rest)?;
    let (wal, mut rest) = part(rest)?;
    let mut tables = Vec::new();
    while let Some((&[partition, file], after)) = rest.split_first_chunk::<2>() {
        let Some((bytes, after)) = part(after) else {
            break;
        };
        tables.push((partition, file, bytes));
        rest = after;
    }
    Some(Input {
        wal_number: u64::from(wal_number),
        manifest,
        wal,
        tables,
    })
}

fn fixed(bytes: &[u8], fix: fn(&mut [u8])) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    fix(&mut bytes);
    bytes
}

fn options(sim: &SimFs) -> Options {
    Options {
        fs: Arc::new(sim.clone()),
        disable_auto_compactions: true,
        ..Options::default()
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn read_all(db: &Db, partition: &str) -> kalamdb_lsm::Result<Entries> {
    db.scan(partition, None, None)?.collect()
}

/// Runs one input (see the module docs); whether the database opened.
///
/// # Panics
/// On a panic of the engine, or if a database that opened does not reopen
/// to the same state.
pub fn run(data: &[u8]) -> bool {
    let Some(input) = decode(data) else {
        return false;
    };
    let mut files = vec![
        (
            Path::new(DIR).join("CURRENT"),
            b"MANIFEST-000001\n".to_vec(),
        ),
        (
            Path::new(DIR).join(manifest_file_name(1)),
            fixed(input.manifest, fix_log_checksums),
        ),
        (
            Path::new(DIR).join(wal_file_name(input.wal_number)),
            fixed(input.wal, fix_log_checksums),
        ),
    ];
    for (partition, file, bytes) in input.tables {
        let path = Path::new(DIR)
            .join(partition.to_string())
            .join(table_file_name(u64::from(file)));
        files.push((path, fixed(bytes, fix_table_checksums)));
    }
    let sim = SimFs::new();
    for (path, bytes) in &files {
        let written = path
            .parent()
            .map_or(Ok(()), |d| sim.create_dir_all(d))
            .and_then(|()| write_file_atomic(&sim, path, bytes));
        written.expect("writing the input's files to the simulated file system");
    }
    let Ok(db) = Db::open(DIR, options(&sim)) else {
        return false;
    };
    let mut partitions = db.list_partitions();
    partitions.sort();
    let before: Vec<Option<Entries>> = partitions.iter().map(|p| read_all(&db, p).ok()).collect();
    drop(db);
    let db = match Db::open(DIR, options(&sim)) {
        Ok(db) => db,
        Err(e) => panic!("a database that opened does not reopen after a clean close: {e}"),
    };
    let mut again = db.list_partitions();
    again.sort();
    assert_eq!(again, partitions, "partitions after a clean reopen");
    for (p, before) in partitions.iter().zip(before) {
        if let Some(before) = before {
            match read_all(&db, p) {
                Ok(now) => assert_eq!(now, before, "partition {p:?} after a clean reopen"),
                Err(e) => panic!("partition {p:?} was readable, and after a clean reopen: {e}"),
            }
        }
    }
    true
}
