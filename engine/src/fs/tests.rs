//! `write_file_atomic` under crashes and faults, on [`SimFs`]; the
//! `preallocate` contract (run on [`RealFs`](super::RealFs) by its tests).

use std::io;
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::sim::{CrashMode, Fault};
use super::{write_file_atomic, Fs, SimFs};

const MODES: [CrashMode; 3] = [
    CrashMode::DropUnsynced,
    CrashMode::TearTail,
    CrashMode::TearAndGarble,
];

fn current(fs: &SimFs) -> Option<Vec<u8>> {
    fs.contents(Path::new("/db/CURRENT"))
}

/// A file system whose durable `/db/CURRENT` holds `old`.
fn with_current(old: &[u8]) -> io::Result<SimFs> {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/db"))?;
    fs.sync_dir(Path::new("/"))?;
    write_file_atomic(&fs, Path::new("/db/CURRENT"), old)?;
    Ok(fs)
}

#[test]
fn survives_a_crash_right_after_it_returns() -> io::Result<()> {
    for mode in MODES {
        for seed in 0..16 {
            let fs = with_current(b"MANIFEST-000001\n")?;
            let before = fs.op_count();
            write_file_atomic(&fs, Path::new("/db/CURRENT"), b"MANIFEST-000002\n")?;
            assert_eq!(
                fs.op_count() - before,
                5,
                "create, append, sync, rename, sync_dir"
            );
            fs.crash_with(mode, seed);
            assert_eq!(
                current(&fs).as_deref(),
                Some(&b"MANIFEST-000002\n"[..]),
                "{mode:?} seed {seed}"
            );
        }
    }
    Ok(())
}

#[test]
fn works_with_a_relative_bare_name() -> io::Result<()> {
    let fs = SimFs::new();
    write_file_atomic(&fs, Path::new("CURRENT"), b"x")?;
    fs.crash_with(CrashMode::DropUnsynced, 0);
    assert_eq!(fs.contents(Path::new("/CURRENT")), Some(b"x".to_vec()));
    Ok(())
}

#[test]
fn a_failure_at_any_step_then_a_crash_leaves_the_old_content() -> io::Result<()> {
    for n in 1..=5 {
        for mode in MODES {
            let fs = with_current(b"old")?;
            fs.inject(Fault::any(io::ErrorKind::Other).nth(n));
            let result = write_file_atomic(&fs, Path::new("/db/CURRENT"), b"new");
            assert!(result.is_err(), "step {n} failed, so must the call");
            fs.crash_with(mode, n);
            assert_eq!(
                current(&fs).as_deref(),
                Some(&b"old"[..]),
                "step {n}, {mode:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_crash_during_its_fsync_leaves_the_old_content() -> io::Result<()> {
    let fs = with_current(b"old")?;
    let engine_fs = fs.clone();
    let gate = fs.pause_syncs();
    let writer =
        thread::spawn(move || write_file_atomic(&engine_fs, Path::new("/db/CURRENT"), b"new"));
    assert!(
        gate.wait_for_blocked(1, Duration::from_secs(30)),
        "fsync never started"
    );
    fs.crash(7);
    let result = writer
        .join()
        .map_err(|_| io::Error::other("writer panicked"))?;
    assert!(
        result.is_err(),
        "the crashed writer must not report success"
    );
    drop(gate);
    assert_eq!(current(&fs).as_deref(), Some(&b"old"[..]));
    Ok(())
}

#[test]
fn rename_without_the_directory_sync_would_not_survive() -> io::Result<()> {
    // The counter-example the helper exists for: skip its last step.
    let fs = with_current(b"old")?;
    let mut tmp = fs.create(Path::new("/db/CURRENT.tmp"))?;
    tmp.append(b"new")?;
    tmp.sync_all()?;
    fs.rename(Path::new("/db/CURRENT.tmp"), Path::new("/db/CURRENT"))?;
    fs.crash(0);
    assert_eq!(current(&fs).as_deref(), Some(&b"old"[..]));
    Ok(())
}

/// What every file system must do for `preallocate`: zeros after the
/// position, appends overwrite them, the position and the size are apart,
/// and an append handle refuses. Run on `RealFs` by its own tests.
pub(super) fn preallocate_contract(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let path = dir.join("wal");
    let mut file = fs.create(&path)?;
    file.append(b"abc")?;
    file.preallocate(64)?;
    assert_eq!(file.len(), 3, "the position does not move");
    assert_eq!(fs.file_size(&path)?, 64);
    file.append(b"defg")?;
    file.preallocate(16)?; // smaller than the file: nothing changes
    file.sync_data()?;
    assert_eq!(file.len(), 7);
    assert_eq!(fs.file_size(&path)?, 64);
    let mut expected = b"abcdefg".to_vec();
    expected.resize(64, 0);
    let reader = fs.open_read(&path)?;
    let mut got = vec![0xee; 64];
    reader.read_exact_at(&mut got, 0)?;
    assert_eq!(got, expected);
    // Appends past the preallocated end extend the file.
    file.append(&[9; 100])?;
    assert_eq!(file.len(), 107);
    assert_eq!(fs.file_size(&path)?, 107);
    drop(file);
    let mut append = fs.open_append(&path)?;
    assert_eq!(
        append.preallocate(4096).err().map(|e| e.kind()),
        Some(io::ErrorKind::Unsupported)
    );
    assert_eq!(fs.file_size(&path)?, 107);
    Ok(())
}

#[test]
fn preallocate_on_the_simulated_fs() -> io::Result<()> {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/db"))?;
    preallocate_contract(&fs, Path::new("/db"))
}

#[test]
fn a_crash_keeps_synced_preallocated_bytes_and_tears_later_overwrites() -> io::Result<()> {
    for mode in MODES {
        for seed in 0..32 {
            let fs = with_current(b"x")?;
            let path = Path::new("/db/wal");
            let mut file = fs.create(path)?;
            file.append(b"synced")?;
            file.preallocate(32)?;
            file.sync_data()?;
            fs.sync_dir(Path::new("/db"))?;
            file.append(b"later")?;
            let state = fs
                .file_state(path)
                .ok_or_else(|| io::Error::other("no file"))?;
            assert_eq!(
                (state.len, state.synced_len),
                (32, 6),
                "cut back to the overwrite"
            );
            fs.crash_with(mode, seed);
            let got = fs
                .contents(path)
                .ok_or_else(|| io::Error::other("file lost"))?;
            assert!(
                got.len() >= 6 && got.len() <= 32,
                "{mode:?} seed {seed}: {got:?}"
            );
            assert_eq!(&got[..6], b"synced", "{mode:?} seed {seed}");
            if mode != CrashMode::TearAndGarble {
                let mut written = b"syncedlater".to_vec();
                written.resize(32, 0);
                assert_eq!(got[..], written[..got.len()], "{mode:?} seed {seed}");
            }
        }
    }
    Ok(())
}
