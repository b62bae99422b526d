//! Sync gates: a sync that blocks until the test releases it.

use std::io;
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::with_db;
use crate::fs::Fs;

/// Long enough never to expire in a passing run; it only bounds a broken one.
const WAIT: Duration = Duration::from_secs(30);

fn synced(fs: &crate::fs::SimFs) -> Option<u64> {
    fs.file_state(Path::new("/db/wal")).map(|s| s.synced_len)
}

#[test]
fn paused_sync_blocks_until_released() -> io::Result<()> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    file.append(b"group")?;
    let gate = fs.pause_syncs();
    assert!(
        !gate.wait_for_blocked(1, Duration::from_millis(1)),
        "no sync is running yet"
    );
    let syncer = thread::spawn(move || file.sync_data().map(|()| file));
    assert!(gate.wait_for_blocked(1, WAIT), "the sync never blocked");
    assert_eq!(gate.blocked(), 1);
    assert_eq!(
        synced(&fs),
        Some(0),
        "a blocked sync has not made anything durable"
    );
    // Bytes appended while the sync waits are not covered by it.
    fs.open_append(Path::new("/db/wal"))?.append(b"-late")?;
    gate.release();
    let file = syncer
        .join()
        .map_err(|_| io::Error::other("syncer panicked"))??;
    assert_eq!(synced(&fs), Some(5));
    assert_eq!(file.len(), 5);
    Ok(())
}

#[test]
fn crash_fails_a_blocked_sync() -> io::Result<()> {
    let fs = with_db()?;
    let engine_fs = fs.clone();
    let mut file = engine_fs.create(Path::new("/db/wal"))?;
    fs.sync_dir(Path::new("/db"))?;
    file.append(b"lost")?;
    let gate = fs.pause_syncs();
    let syncer = thread::spawn(move || file.sync_data());
    assert!(gate.wait_for_blocked(1, WAIT));
    fs.crash(1);
    let result = syncer
        .join()
        .map_err(|_| io::Error::other("syncer panicked"))?;
    assert!(result.is_err(), "a sync of a crashed process must fail");
    assert_eq!(gate.blocked(), 0);
    drop(gate);
    Ok(())
}

#[test]
fn a_paused_sync_does_not_cover_preallocated_bytes_overwritten_while_it_waits() -> io::Result<()> {
    let fs = with_db()?;
    let mut writer = fs.create(Path::new("/db/wal"))?;
    fs.sync_dir(Path::new("/db"))?;
    writer.append(b"a")?;
    writer.preallocate(64)?;
    let mut syncer = fs.open_append(Path::new("/db/wal"))?;
    let gate = fs.pause_syncs();
    let sync = thread::spawn(move || syncer.sync_data());
    assert!(gate.wait_for_blocked(1, WAIT), "the sync never blocked");
    // Lands inside the 64 bytes the sync saw when it began.
    writer.append(b"bcd")?;
    gate.release();
    sync.join()
        .map_err(|_| io::Error::other("syncer panicked"))??;
    assert_eq!(
        synced(&fs),
        Some(1),
        "only the bytes unchanged since the sync began are durable"
    );
    fs.crash_with(crate::fs::sim::CrashMode::DropUnsynced, 0);
    assert_eq!(fs.contents(Path::new("/db/wal")), Some(b"a".to_vec()));
    Ok(())
}
