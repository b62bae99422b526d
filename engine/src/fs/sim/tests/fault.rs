//! Error injection: which operation fails, how often, with what error.

use std::io;
use std::path::Path;

use super::{kind, read, with_db, write};
use crate::fs::sim::{Fault, FaultError, OpKind};
use crate::fs::Fs;

#[test]
fn transient_fault_fails_once() -> io::Result<()> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    fs.fail_next(OpKind::Sync, 1, false, io::ErrorKind::Other);
    file.append(b"a")?;
    assert_eq!(kind(file.sync_data()), Some(io::ErrorKind::Other));
    assert_eq!(
        fs.file_state(Path::new("/db/wal")).map(|s| s.synced_len),
        Some(0)
    );
    file.sync_data()?;
    assert_eq!(fs.faults_fired(), 1);
    assert_eq!(
        fs.file_state(Path::new("/db/wal")).map(|s| s.synced_len),
        Some(1)
    );
    Ok(())
}

#[test]
fn persistent_fault_fails_until_cleared() -> io::Result<()> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    fs.fail_next(OpKind::Write, 2, true, FaultError::EIO);
    file.append(b"1")?;
    for _ in 0..3 {
        assert_eq!(
            file.append(b"2").err().and_then(|e| e.raw_os_error()),
            Some(5)
        );
    }
    file.sync_data()?;
    fs.clear_faults();
    file.append(b"3")?;
    assert_eq!(fs.contents(Path::new("/db/wal")), Some(b"13".to_vec()));
    assert_eq!(fs.faults_fired(), 3);
    Ok(())
}

#[test]
fn nth_counts_only_matching_operations() -> io::Result<()> {
    let fs = with_db()?;
    fs.inject(Fault::on(OpKind::Create, io::ErrorKind::PermissionDenied).nth(3));
    write(&fs, "/db/1", b"", false)?;
    fs.sync_dir(Path::new("/db"))?;
    let _ = fs.exists(Path::new("/db/1"))?;
    write(&fs, "/db/2", b"", false)?;
    assert_eq!(
        kind(write(&fs, "/db/3", b"", false)),
        Some(io::ErrorKind::PermissionDenied)
    );
    write(&fs, "/db/3", b"", false)?;
    Ok(())
}

#[test]
fn path_filter_and_rename_matching() -> io::Result<()> {
    let fs = with_db()?;
    fs.create_dir_all(Path::new("/db/p1"))?;
    fs.inject(
        Fault::on(OpKind::Rename, io::ErrorKind::Other)
            .on_path("/db/p1")
            .persistent(),
    );
    write(&fs, "/db/a", b"", false)?;
    fs.rename(Path::new("/db/a"), Path::new("/db/b"))?;
    assert!(
        fs.rename(Path::new("/db/b"), Path::new("/db/p1/b"))
            .is_err(),
        "the target matches"
    );
    fs.inject(Fault::any(io::ErrorKind::Other).on_path("/db/p1/"));
    write(&fs, "/db/c", b"", false)?;
    assert!(fs.create(Path::new("/db/p1/c")).is_err());
    Ok(())
}

#[test]
fn enospc_has_the_os_error_and_kind() -> io::Result<()> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    fs.inject(Fault::on(OpKind::Write, FaultError::NO_SPACE));
    let err = file.append(b"data").err();
    assert_eq!(err.as_ref().and_then(|e| e.raw_os_error()), Some(28));
    assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::StorageFull));
    assert_eq!(fs.file_state(Path::new("/db/wal")).map(|s| s.len), Some(0));
    Ok(())
}

#[test]
fn partial_write_leaves_a_prefix() -> io::Result<()> {
    let fs = with_db()?;
    let mut file = fs.create(Path::new("/db/wal"))?;
    fs.inject(Fault::on(OpKind::Write, FaultError::NO_SPACE).partial_write());
    assert!(file.append(b"abcdefg").is_err());
    assert_eq!(fs.contents(Path::new("/db/wal")), Some(b"abc".to_vec()));
    assert_eq!(file.len(), 3);
    Ok(())
}

#[test]
fn metadata_and_any_class_faults() -> io::Result<()> {
    let fs = with_db()?;
    write(&fs, "/db/f", b"xyz", false)?;
    fs.fail_next(OpKind::Metadata, 1, false, io::ErrorKind::TimedOut);
    assert_eq!(
        kind(fs.file_size(Path::new("/db/f"))),
        Some(io::ErrorKind::TimedOut)
    );
    assert_eq!(fs.file_size(Path::new("/db/f"))?, 3);
    fs.inject(Fault::any(io::ErrorKind::Interrupted).nth(2));
    let reader = fs.open_read(Path::new("/db/f"))?;
    assert_eq!(
        kind(reader.read_at(&mut [0u8; 3], 0)),
        Some(io::ErrorKind::Interrupted)
    );
    assert_eq!(read(&fs, "/db/f")?, b"xyz");
    Ok(())
}

/// A small workload: create a WAL, write, sync, rename, sync the directory.
fn workload(fs: &dyn Fs) -> io::Result<()> {
    let mut file = fs.create(Path::new("/db/000001.log"))?;
    file.append(b"record")?;
    file.sync_data()?;
    fs.rename(Path::new("/db/000001.log"), Path::new("/db/000002.log"))?;
    fs.sync_dir(Path::new("/db"))?;
    let _ = fs.file_size(Path::new("/db/000002.log"))?;
    Ok(())
}

#[test]
fn sweeping_the_nth_operation_fails_each_in_turn() -> io::Result<()> {
    let clean = with_db()?;
    let start = clean.op_count();
    workload(&clean)?;
    let total = clean.op_count() - start;
    assert_eq!(total, 6);
    for n in 1..=total {
        let fs = with_db()?;
        fs.inject(Fault::any(io::ErrorKind::Other).nth(n));
        assert!(
            workload(&fs).is_err(),
            "failing op {n} must fail the workload"
        );
        assert_eq!(fs.faults_fired(), 1);
    }
    let fs = with_db()?;
    fs.inject(Fault::any(io::ErrorKind::Other).nth(total + 1));
    workload(&fs)?;
    assert_eq!(fs.faults_fired(), 0);
    Ok(())
}

#[test]
fn op_counts_per_class_and_the_log_of_fired_faults() -> io::Result<()> {
    let fs = with_db()?;
    let before: Vec<u64> = OpKind::ALL.iter().map(|&k| fs.op_count_of(k)).collect();
    // `OpKind::ALL` lists each class once.
    for (i, k) in OpKind::ALL.iter().enumerate() {
        assert_eq!(*k as usize, i);
    }
    let mut file = fs.create(Path::new("/db/a"))?;
    file.append(b"x")?;
    file.append(b"y")?;
    fs.inject(Fault::on(OpKind::Sync, FaultError::NO_SPACE));
    assert!(file.sync_data().is_err());
    fs.rename(Path::new("/db/a"), Path::new("/db/b"))?;
    let delta = |k: OpKind| fs.op_count_of(k) - before[k as usize];
    assert_eq!(
        (
            delta(OpKind::Create),
            delta(OpKind::Write),
            delta(OpKind::Sync),
            delta(OpKind::Rename),
            delta(OpKind::Read)
        ),
        (1, 2, 1, 1, 0)
    );
    assert_eq!(
        fs.fired_faults(),
        vec![(OpKind::Sync, Path::new("/db/a").to_path_buf())]
    );
    fs.clear_faults();
    assert_eq!(fs.fired_faults().len(), 1, "the log outlives clear_faults");
    Ok(())
}
