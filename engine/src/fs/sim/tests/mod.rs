//! Tests of the simulated file system: basic operations and crash
//! semantics. Fault injection and sync gates have their own files.

use std::io;
use std::path::Path;

use super::*;

mod fault;
mod gate;

/// Creates `path` holding `data`; syncs the data if `sync`. Does not sync
/// the directory.
pub(super) fn write(fs: &SimFs, path: &str, data: &[u8], sync: bool) -> io::Result<()> {
    let mut file = fs.create(Path::new(path))?;
    file.append(data)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// The whole file, through the `Fs` interface.
pub(super) fn read(fs: &dyn Fs, path: &str) -> io::Result<Vec<u8>> {
    let file = fs.open_read(Path::new(path))?;
    let mut buf = vec![0; usize::try_from(file.len()?).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The error kind of `r`, if it failed.
pub(super) fn kind<T>(r: io::Result<T>) -> Option<io::ErrorKind> {
    r.err().map(|e| e.kind())
}

/// A file system with the durable directory `/db`.
pub(super) fn with_db() -> io::Result<SimFs> {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/db"))?;
    fs.sync_dir(Path::new("/"))?;
    Ok(fs)
}

#[test]
fn basic_operations() -> io::Result<()> {
    let fs = with_db()?;
    write(&fs, "/db/b", b"bee", false)?;
    write(&fs, "/db/a", b"ay", false)?;
    fs.create_dir_all(Path::new("/db/sub/deeper"))?;
    assert_eq!(fs.read_dir(Path::new("/db"))?, ["a", "b", "sub"]);
    assert_eq!(fs.file_size(Path::new("/db/b"))?, 3);
    assert!(
        fs.exists(Path::new("db/./sub/../b"))?,
        "paths are normalised"
    );

    let mut file = fs.open_append(Path::new("/db/b"))?;
    assert_eq!(file.len(), 3);
    file.append(b"s")?;
    assert_eq!(read(&fs, "/db/b")?, b"bees");
    let reader = fs.open_read(Path::new("/db/b"))?;
    let mut buf = [0u8; 4];
    assert_eq!(reader.read_at(&mut buf, 2)?, 2);
    assert_eq!(&buf[..2], b"es");
    assert_eq!(
        kind(reader.read_exact_at(&mut buf, 1)),
        Some(io::ErrorKind::UnexpectedEof)
    );

    assert_eq!(fs.create(Path::new("/db/b"))?.len(), 0, "create truncates");
    assert_eq!(fs.file_size(Path::new("/db/b"))?, 0);
    assert_eq!(
        kind(fs.create(Path::new("/nope/x"))),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(fs.open_read(Path::new("/db/x"))),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(fs.rename(Path::new("/db/x"), Path::new("/db/y"))),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(fs.remove_file(Path::new("/db/sub"))),
        Some(io::ErrorKind::IsADirectory)
    );
    fs.remove_dir_all(Path::new("/db/sub"))?;
    assert!(!fs.exists(Path::new("/db/sub/deeper"))?);
    Ok(())
}

#[test]
fn lock_is_exclusive_and_released_on_drop() -> io::Result<()> {
    let fs = with_db()?;
    let held = fs.lock(Path::new("/db/LOCK"))?;
    let other = fs.clone();
    assert_eq!(
        kind(other.lock(Path::new("/db/LOCK"))),
        Some(io::ErrorKind::WouldBlock)
    );
    drop(held);
    let _again = other.lock(Path::new("/db/LOCK"))?;
    Ok(())
}

#[test]
fn unsynced_bytes_are_lost_and_synced_bytes_kept() -> io::Result<()> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    fs.sync_dir(Path::new("/db"))?;
    file.append(b"synced|")?;
    file.sync_data()?;
    file.append(b"not synced")?;
    let state = fs.file_state(Path::new("/db/wal"));
    assert_eq!(
        state,
        Some(FileState {
            len: 17,
            synced_len: 7
        })
    );

    fs.crash_with(CrashMode::DropUnsynced, 1);
    assert_eq!(read(&fs, "/db/wal")?, b"synced|");
    assert_eq!(
        fs.file_state(Path::new("/db/wal")),
        Some(FileState {
            len: 7,
            synced_len: 7
        })
    );
    Ok(())
}

#[test]
fn truncate_is_durable() -> io::Result<()> {
    let fs = with_db()?;
    write(&fs, "/db/wal", b"0123456789", true)?;
    fs.sync_dir(Path::new("/db"))?;
    fs.open_append(Path::new("/db/wal"))?.append(b"torn")?;
    fs.truncate(Path::new("/db/wal"), 12)?;
    assert_eq!(
        kind(fs.truncate(Path::new("/db/wal"), 13)),
        Some(io::ErrorKind::InvalidInput)
    );
    fs.crash_with(CrashMode::DropUnsynced, 0);
    assert_eq!(read(&fs, "/db/wal")?, b"0123456789to");
    Ok(())
}

/// Crashes a file holding 8 synced and 64 unsynced bytes with `seed`; returns
/// what is left.
fn crash_torn(mode: CrashMode, seed: u64) -> io::Result<Vec<u8>> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    fs.sync_dir(Path::new("/db"))?;
    file.append(b"SYNCED!!")?;
    file.sync_data()?;
    file.append(&[0xAA; 64])?;
    fs.crash_with(mode, seed);
    read(&fs, "/db/wal")
}

#[test]
fn torn_tail_keeps_a_seeded_prefix_of_the_unsynced_bytes() -> io::Result<()> {
    let mut lens = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let data = crash_torn(CrashMode::TearTail, seed)?;
        assert!(
            data.len() >= 8 && data.len() <= 72,
            "seed {seed}: len {}",
            data.len()
        );
        assert_eq!(&data[..8], b"SYNCED!!", "seed {seed}");
        assert!(
            data[8..].iter().all(|&b| b == 0xAA),
            "seed {seed}: not a prefix"
        );
        assert_eq!(
            crash_torn(CrashMode::TearTail, seed)?,
            data,
            "seed {seed} not reproducible"
        );
        lens.insert(data.len());
    }
    assert!(lens.contains(&8), "some seed must drop every unsynced byte");
    assert!(
        lens.contains(&72),
        "some seed must keep every unsynced byte"
    );
    assert!(lens.len() > 4, "torn lengths must vary: {lens:?}");
    Ok(())
}

#[test]
fn tear_and_garble_damages_only_unsynced_bytes() -> io::Result<()> {
    let mut garbled = 0;
    for seed in 0..64 {
        let data = crash_torn(CrashMode::TearAndGarble, seed)?;
        assert_eq!(&data[..8], b"SYNCED!!", "seed {seed}: synced bytes damaged");
        let tail = &data[8..];
        if let Some(last) = tail.last() {
            assert_ne!(*last, 0xAA, "seed {seed}: last kept byte not garbled");
            garbled += 1;
        }
    }
    assert!(garbled > 0, "no seed kept any unsynced byte");
    Ok(())
}

#[test]
fn lose_sectors_zeroes_whole_unsynced_sectors_and_keeps_later_ones() -> io::Result<()> {
    use crate::fs::sim::crash::SECTOR;
    // 100 synced bytes, then 6 sectors' worth of unsynced ones (each byte
    // non-zero: its sector number plus one).
    let synced = 100;
    let crash = |seed| -> io::Result<Vec<u8>> {
        let fs = with_db()?;
        let mut file = fs.create(Path::new("/db/wal"))?;
        fs.sync_dir(Path::new("/db"))?;
        file.append(&[0xEE; 100])?;
        file.sync_data()?;
        let rest: Vec<u8> = (synced..6 * SECTOR)
            .map(|i| (i / SECTOR) as u8 + 1)
            .collect();
        file.append(&rest)?;
        fs.crash_with(CrashMode::LoseSectors, seed);
        read(&fs, "/db/wal")
    };
    let mut holes = 0;
    for seed in 0..64 {
        let data = crash(seed)?;
        assert_eq!(data, crash(seed)?, "seed {seed} not reproducible");
        assert!(
            data[..synced].iter().all(|&b| b == 0xEE),
            "seed {seed}: synced bytes lost"
        );
        let mut lost_before_kept = false;
        let mut lost = false;
        for (i, &b) in data.iter().enumerate().skip(synced) {
            let sector = i / SECTOR;
            // Every byte is what was written or zero, a whole sector at a time.
            assert!(
                b == sector as u8 + 1 || b == 0,
                "seed {seed}: byte {i} = {b}"
            );
            let first_of_sector = (sector * SECTOR).max(synced);
            assert_eq!(
                b == 0,
                data[first_of_sector] == 0,
                "seed {seed}: sector {sector} split"
            );
            lost |= b == 0;
            lost_before_kept |= lost && b != 0;
        }
        holes += usize::from(lost_before_kept);
    }
    assert!(
        holes > 5,
        "only {holes} seeds lost a sector before a kept one"
    );
    Ok(())
}

#[test]
fn created_file_vanishes_at_crash_without_sync_dir() -> io::Result<()> {
    let fs = with_db()?;
    write(&fs, "/db/000001.sst", b"table", true)?;
    assert!(!fs.is_durable(Path::new("/db/000001.sst")));
    fs.create_dir_all(Path::new("/db/p7"))?;
    write(&fs, "/db/p7/000002.sst", b"table", true)?;
    fs.sync_dir(Path::new("/db/p7"))?;
    assert!(
        !fs.is_durable(Path::new("/db/p7/000002.sst")),
        "/db/p7 itself is not durable"
    );
    fs.crash(3);
    assert!(!fs.exists(Path::new("/db/000001.sst"))?);
    assert!(!fs.exists(Path::new("/db/p7"))?);

    write(&fs, "/db/000003.sst", b"table", true)?;
    fs.sync_dir(Path::new("/db"))?;
    assert!(fs.is_durable(Path::new("/db/000003.sst")));
    fs.crash(3);
    assert_eq!(read(&fs, "/db/000003.sst")?, b"table");
    Ok(())
}

#[test]
fn rename_reverts_at_crash_until_sync_dir() -> io::Result<()> {
    let fs = with_db()?;
    write(&fs, "/db/CURRENT", b"old", true)?;
    write(&fs, "/db/CURRENT.tmp", b"new", true)?;
    fs.sync_dir(Path::new("/db"))?;
    fs.rename(Path::new("/db/CURRENT.tmp"), Path::new("/db/CURRENT"))?;
    assert_eq!(read(&fs, "/db/CURRENT")?, b"new");
    assert!(!fs.is_durable(Path::new("/db/CURRENT")));
    fs.crash(5);
    assert_eq!(read(&fs, "/db/CURRENT")?, b"old");
    assert_eq!(read(&fs, "/db/CURRENT.tmp")?, b"new");

    fs.rename(Path::new("/db/CURRENT.tmp"), Path::new("/db/CURRENT"))?;
    fs.sync_dir(Path::new("/db"))?;
    fs.crash(5);
    assert_eq!(read(&fs, "/db/CURRENT")?, b"new");
    assert!(!fs.exists(Path::new("/db/CURRENT.tmp"))?);
    Ok(())
}

#[test]
fn remove_reverts_at_crash_until_sync_dir() -> io::Result<()> {
    let fs = with_db()?;
    write(&fs, "/db/000001.log", b"wal", true)?;
    fs.create_dir_all(Path::new("/db/p1"))?;
    fs.sync_dir(Path::new("/db"))?;
    fs.remove_file(Path::new("/db/000001.log"))?;
    fs.remove_dir_all(Path::new("/db/p1"))?;
    assert!(!fs.exists(Path::new("/db/000001.log"))?);
    fs.crash(9);
    assert_eq!(read(&fs, "/db/000001.log")?, b"wal", "the file comes back");
    assert!(fs.exists(Path::new("/db/p1"))?, "the directory comes back");

    fs.remove_file(Path::new("/db/000001.log"))?;
    fs.sync_dir(Path::new("/db"))?;
    assert!(
        fs.is_durable(Path::new("/db/000001.log")),
        "absence is durable"
    );
    fs.crash(9);
    assert!(!fs.exists(Path::new("/db/000001.log"))?);
    Ok(())
}

#[test]
fn stale_handles_and_clones_fail_after_crash() -> io::Result<()> {
    let fs = with_db()?;
    let engine_fs = fs.clone();
    let mut writer = engine_fs.create(Path::new("/db/wal"))?;
    let reader = engine_fs.open_read(Path::new("/db/wal"))?;
    let lock = engine_fs.lock(Path::new("/db/LOCK"))?;
    fs.crash(0);

    assert!(writer.append(b"x").is_err());
    assert!(writer.sync_data().is_err());
    assert!(reader.read_at(&mut [0u8; 1], 0).is_err());
    assert!(reader.len().is_err());
    assert!(
        engine_fs.exists(Path::new("/db")).is_err(),
        "the crashed process's Fs is dead"
    );
    assert!(engine_fs.sync_dir(Path::new("/db")).is_err());

    let reopened = fs.clone();
    let new_lock = reopened.lock(Path::new("/db/LOCK"))?;
    drop(lock);
    assert_eq!(
        kind(fs.lock(Path::new("/db/LOCK"))),
        Some(io::ErrorKind::WouldBlock),
        "a dead lock's drop must not release the new one"
    );
    drop(new_lock);
    reopened.create(Path::new("/db/wal"))?.append(b"ok")?;
    Ok(())
}

#[test]
fn sync_counts_and_op_count() -> io::Result<()> {
    let fs = SimFs::new();
    let before = fs.op_count();
    let mut file = fs.create(Path::new("/f"))?;
    file.append(b"a")?;
    file.sync_data()?;
    file.sync_data()?;
    file.sync_all()?;
    fs.sync_dir(Path::new("/"))?;
    assert_eq!(fs.op_count() - before, 6);
    assert_eq!(
        fs.sync_counts(),
        SyncCounts {
            sync_data: 2,
            sync_all: 1,
            sync_dir: 1
        }
    );
    let _ = fs.file_state(Path::new("/f"));
    let _ = fs.contents(Path::new("/f"));
    assert_eq!(fs.op_count() - before, 6, "inspection is not an operation");
    Ok(())
}
