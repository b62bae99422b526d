use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::fs::sim::{CrashMode, Fault, FaultError};
use crate::fs::SimFs;
use crate::wal::format::HEADER_LEN;

const DIR: &str = "/db";

fn sim() -> SimFs {
    let sim = SimFs::new();
    let fs: Arc<dyn Fs> = Arc::new(sim.clone());
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    sim
}

fn fs_of(sim: &SimFs) -> Arc<dyn Fs> {
    Arc::new(sim.clone())
}

fn create(id: u64) -> VersionEdit {
    VersionEdit::one(Change::CreatePartition {
        id,
        name: format!("p{id}"),
    })
}

#[test]
fn edits_survive_reopen_and_a_crash() {
    let sim = sim();
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    for id in 1..=5 {
        m.log(&create(id)).unwrap();
    }
    m.log(&VersionEdit::one(Change::DropPartition { id: 2 }))
        .unwrap();
    let want = m.state();
    drop(m);
    sim.crash(3);
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    assert_eq!(m.state(), want);
    assert_eq!(m.state().partitions.len(), 4);
    assert_eq!(m.state().next_partition_id, 6);
}

#[test]
fn an_edit_that_does_not_fit_is_refused_and_not_written() {
    let sim = sim();
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    m.log(&create(1)).unwrap();
    assert!(m.log(&create(1)).is_err());
    assert!(m
        .log(&VersionEdit::one(Change::DropPartition { id: 7 }))
        .is_err());
    m.log(&create(2)).unwrap();
    drop(m);
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    assert_eq!(m.state().partitions.len(), 2);
}

#[test]
fn rollover_keeps_the_state_and_removes_old_files() {
    let sim = sim();
    let fs = fs_of(&sim);
    let m = Manifest::open(&fs, Path::new(DIR), 512).unwrap();
    let first = m.number();
    for id in 1..=200 {
        m.log(&create(id)).unwrap();
        if id % 3 == 0 {
            m.log(&VersionEdit::one(Change::DropPartition { id }))
                .unwrap();
        }
    }
    assert!(m.number() > first + 5, "rolled over");
    let want = m.state();
    let manifests: Vec<String> = fs
        .read_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| parse_manifest_file_name(n).is_some())
        .collect();
    assert_eq!(manifests, [manifest_file_name(m.number())]);
    drop(m);
    sim.crash(9);
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 512).unwrap();
    assert_eq!(m.state(), want);
}

#[test]
fn concurrent_edits_share_fsyncs() {
    let sim = sim();
    let m = Arc::new(Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 30).unwrap());
    let before = sim.sync_counts().sync_data;
    // Hold the first sync so that the other edits pile up behind it.
    let gate = sim.pause_syncs();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                m.log_with(|s| {
                    VersionEdit::one(Change::CreatePartition {
                        id: s.next_partition_id,
                        name: format!("t{t}"),
                    })
                })
                .unwrap();
            })
        })
        .collect();
    assert!(gate.wait_for_blocked(1, std::time::Duration::from_secs(10)));
    while m.state().partitions.len() < 8 {
        std::thread::yield_now();
    }
    gate.release();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = sim.sync_counts().sync_data - before;
    assert!(syncs <= 2, "8 concurrent edits took {syncs} fsyncs");
    assert_eq!(m.state().next_partition_id, 9);
}

#[test]
fn a_failed_sync_poisons_until_reopen() {
    let sim = sim();
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    m.log(&create(1)).unwrap();
    sim.inject(Fault::on(crate::fs::sim::OpKind::Sync, FaultError::EIO));
    assert!(matches!(m.log(&create(2)), Err(Error::Io(_))));
    match m.log(&create(3)) {
        Err(Error::Poisoned(msg)) => assert!(msg.starts_with("poisoned: "), "{msg}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    drop(m);
    sim.clear_faults();
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    // Edit 2 reached the OS before its fsync failed: present or absent.
    assert!(m.state().partitions.contains_key(&1));
    m.log_with(|s| {
        VersionEdit::one(Change::CreatePartition {
            id: s.next_partition_id,
            name: "after".into(),
        })
    })
    .unwrap();
}

#[test]
fn damage_is_corruption_naming_the_file() {
    let sim = sim();
    let fs = fs_of(&sim);
    let m = Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap();
    for id in 1..=20 {
        m.log(&create(id)).unwrap();
    }
    let path = Path::new(DIR).join(manifest_file_name(m.number()));
    drop(m);
    let mut data = sim.contents(&path).unwrap();
    data[20] ^= 0x40;
    write_file_atomic(fs.as_ref(), &path, &data).unwrap();
    match Manifest::open(&fs, Path::new(DIR), 1 << 20) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        other => panic!("expected corruption, got {other:?}"),
    }
    write_file_atomic(fs.as_ref(), &Path::new(DIR).join(CURRENT_FILE), b"garbage").unwrap();
    assert!(matches!(
        Manifest::open(&fs, Path::new(DIR), 1 << 20),
        Err(Error::Corruption { .. })
    ));
}

/// Crash at every file operation of a workload with rollovers: the reopened
/// state holds every acknowledged edit and is a prefix of the edits tried.
#[test]
fn crash_at_every_file_operation_keeps_acknowledged_edits() {
    for n in 1..400u64 {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::TearTail,
            CrashMode::TearAndGarble,
        ] {
            let sim = sim();
            let m = match Manifest::open(&fs_of(&sim), Path::new(DIR), 300) {
                Ok(m) => m,
                Err(e) => panic!("{e}"),
            };
            sim.inject(Fault::any(FaultError::EIO).nth(n).persistent());
            let mut acked = 0u64;
            let mut tried = 0u64;
            for id in 1..=40u64 {
                tried = id;
                if m.log(&create(id)).is_err() {
                    break;
                }
                acked = id;
            }
            drop(m);
            sim.crash_with(mode, n);
            sim.clear_faults();
            let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 300)
                .unwrap_or_else(|e| panic!("n={n} {mode:?}: reopen failed: {e}"));
            let got = m.state().partitions.len() as u64;
            assert!(
                got >= acked && got <= tried,
                "n={n} {mode:?}: {got} partitions, {acked} acknowledged, {tried} tried"
            );
            let ids: Vec<u64> = m.state().partitions.keys().copied().collect();
            assert_eq!(
                ids,
                (1..=got).collect::<Vec<_>>(),
                "n={n} {mode:?}: not a prefix"
            );
        }
    }
}

/// A state whose snapshot is larger than `rollover_size` is not rewritten at
/// every edit: a rollover waits until the edits are as large as the
/// snapshot, so the bytes written stay proportional to the edits.
#[test]
fn a_large_state_rolls_over_in_proportion_to_its_edits() {
    let sim = sim();
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 256).unwrap();
    let first = m.number();
    for id in 1..=2000 {
        m.log(&create(id)).unwrap();
    }
    // Each edit is ~25 bytes and the snapshot grows by as much per
    // partition: rolling over at every edit past 256 bytes would take ~2,000
    // rollovers, doubling takes a dozen or so.
    let rollovers = m.number() - first;
    assert!(
        (3..=20).contains(&rollovers),
        "{rollovers} rollovers for 2,000 edits"
    );
    let want = m.state();
    drop(m);
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 256).unwrap();
    assert_eq!(m.state(), want);
}

/// Many threads logging edits while the manifest keeps rolling over: every
/// edit lands once (and no lock-order deadlock between the fsync of one
/// caller and the rollover of another).
#[test]
fn concurrent_edits_with_rollovers() {
    let sim = sim();
    let m = Arc::new(Manifest::open(&fs_of(&sim), Path::new(DIR), 200).unwrap());
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let (position, _) = m
                        .append_with(|s| {
                            VersionEdit::one(Change::CreatePartition {
                                id: s.next_partition_id,
                                name: format!("t{t}-{i}"),
                            })
                        })
                        .unwrap();
                    m.commit(position).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let want = m.state();
    assert_eq!(want.partitions.len(), 900);
    assert!(m.number() > 3, "rolled over");
    drop(m);
    sim.crash(1);
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 200).unwrap();
    assert_eq!(m.state(), want, "every committed edit survives a crash");
}

// Named shapes of damage to the manifest and CURRENT (one each), with the
// exact outcome.

/// A database directory whose manifest 1 holds `edits` as records, each
/// given as raw payload bytes, and whose CURRENT names it. Returns the
/// manifest's path and each record's offset.
fn hand_written(sim: &SimFs, payloads: &[Vec<u8>]) -> (std::path::PathBuf, Vec<u64>) {
    hand_written_as(sim, 1, payloads)
}

/// [`hand_written`], as manifest `number`.
fn hand_written_as(
    sim: &SimFs,
    number: u64,
    payloads: &[Vec<u8>],
) -> (std::path::PathBuf, Vec<u64>) {
    let fs = fs_of(sim);
    let path = Path::new(DIR).join(manifest_file_name(number));
    let (bytes, offsets) = framed(payloads);
    write_file_atomic(fs.as_ref(), &path, &bytes).unwrap();
    set_current(&fs, Path::new(DIR), number).unwrap();
    (path, offsets)
}

/// `payloads` framed as records from the start of a file, and the offset
/// of each.
fn framed(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
    let (mut off, mut bytes, mut offsets) = (0, Vec::new(), Vec::new());
    for p in payloads {
        offsets.push(bytes.len() as u64);
        encode_record(&mut off, p, &mut bytes);
    }
    (bytes, offsets)
}

fn payload(edit: &VersionEdit) -> Vec<u8> {
    let mut out = Vec::new();
    edit.encode(&mut out);
    out
}

fn open_err(sim: &SimFs) -> (std::path::PathBuf, u64, String) {
    match Manifest::open(&fs_of(sim), Path::new(DIR), 1 << 20) {
        Err(Error::Corruption {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn current_naming_a_missing_manifest_is_corruption_of_current() {
    // Regression: this was an I/O "not found" error naming the manifest,
    // not corruption, and did not say CURRENT was what pointed there.
    let sim = sim();
    let fs = fs_of(&sim);
    drop(Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap());
    let current = Path::new(DIR).join(CURRENT_FILE);
    write_file_atomic(fs.as_ref(), &current, b"MANIFEST-000042\n").unwrap();
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (current, 0));
    assert_eq!(
        reason,
        "CURRENT names MANIFEST-000042, which does not exist"
    );
}

#[test]
fn current_with_garbage_is_corruption_of_current() {
    let sim = sim();
    let fs = fs_of(&sim);
    drop(Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap());
    let current = Path::new(DIR).join(CURRENT_FILE);
    for garbage in [
        &b"garbage"[..],
        b"",
        b"MANIFEST-000002",      // no newline
        b"MANIFEST-00000x\n",    // not a number
        b"MANIFEST-000002\n\n",  // extra line
        b"\xff\xfeMANIFEST-1\n", // not UTF-8
    ] {
        write_file_atomic(fs.as_ref(), &current, garbage).unwrap();
        let (file, offset, reason) = open_err(&sim);
        assert_eq!((&file, offset), (&current, 0), "{garbage:?}");
        assert_eq!(reason, "CURRENT does not name a manifest", "{garbage:?}");
    }
}

#[test]
fn truncated_last_edit_is_dropped_as_never_acknowledged() {
    let sim = sim();
    let records = [create(1), create(2), create(3)].map(|e| payload(&e));
    let (_, offsets) = hand_written(&sim, &records);
    let path = Path::new(DIR).join(manifest_file_name(1));
    let full = sim.contents(&path).unwrap();
    for cut in offsets[2] as usize..full.len() {
        hand_written(&sim, &records);
        let fs = fs_of(&sim);
        write_file_atomic(fs.as_ref(), &path, &full[..cut]).unwrap();
        let m = Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap();
        let ids: Vec<u64> = m.state().partitions.keys().copied().collect();
        assert_eq!(ids, [1, 2], "cut at {cut}");
    }
}

#[test]
fn corrupt_edit_payload_followed_by_edits_is_corruption_at_that_edit() {
    let sim = sim();
    let records = [create(1), create(2), create(3)].map(|e| payload(&e));
    let (path, offsets) = hand_written(&sim, &records);
    let mut data = sim.contents(&path).unwrap();
    data[offsets[1] as usize + HEADER_LEN + 3] ^= 0x10; // inside edit 2's id
    write_file_atomic(fs_of(&sim).as_ref(), &path, &data).unwrap();
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]));
    assert!(reason.starts_with("checksum mismatch"), "{reason}");
}

#[test]
fn unknown_edit_tag_is_corruption() {
    let sim = sim();
    let (path, offsets) = hand_written(&sim, &[payload(&create(1)), vec![1, 99]]);
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]));
    assert_eq!(reason, "unknown version edit tag 99");
}

#[test]
fn oversized_field_lengths_are_corruption() {
    let sim = sim();
    // CreatePartition with a name length of 2^62 (no allocation of that).
    let mut huge = vec![1, 1];
    huge.extend_from_slice(&7u64.to_le_bytes());
    crate::coding::put_varint(&mut huge, 1 << 62);
    huge.extend_from_slice(b"p7");
    let (path, offsets) = hand_written(&sim, &[payload(&create(1)), huge, payload(&create(2))]);
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]));
    assert!(reason.contains("partition name"), "{reason}");
    // A change count far beyond the bytes present.
    let sim2 = self::sim();
    let mut count = Vec::new();
    crate::coding::put_varint(&mut count, u64::MAX);
    let (path, offsets) = hand_written(&sim2, &[payload(&create(1)), count]);
    let (file, offset, reason) = open_err(&sim2);
    assert_eq!((file, offset), (path, offsets[1]));
    assert!(reason.contains("change tag"), "{reason}");
}

#[test]
fn duplicate_fields_that_contradict_the_state_are_corruption() {
    let sim = sim();
    // The same partition id created twice.
    let (path, offsets) = hand_written(&sim, &[payload(&create(1)), payload(&create(1))]);
    let (file, offset, _) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]));
    // A drop of a partition that was never created.
    let sim = self::sim();
    let drop9 = VersionEdit::one(Change::DropPartition { id: 9 });
    let (path, offsets) = hand_written(&sim, &[payload(&create(1)), payload(&drop9)]);
    let (file, offset, _) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]));
}

#[test]
fn wal_starts_survive_snapshots_and_go_with_their_files() {
    let sim = sim();
    let fs = fs_of(&sim);
    let m = Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap();
    m.log(&VersionEdit::one(Change::WalStart { wal: 3, seq: 10 }))
        .unwrap();
    m.log(&VersionEdit::one(Change::WalStart { wal: 5, seq: 40 }))
        .unwrap();
    drop(m);
    let m = Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap();
    let starts: Vec<(u64, u64)> = m.state().wal_starts.into_iter().collect();
    assert_eq!(starts, [(3, 10), (5, 40)], "kept by the snapshot");
    // Files below the log number are gone: so are their starts, and a start
    // below it is refused (nothing written).
    m.log(&VersionEdit::one(Change::LogNumber(4))).unwrap();
    assert!(m
        .log(&VersionEdit::one(Change::WalStart { wal: 2, seq: 1 }))
        .is_err());
    let starts: Vec<(u64, u64)> = m.state().wal_starts.into_iter().collect();
    assert_eq!(starts, [(5, 40)]);
    // A refused edit that pruned leaves the starts as they were.
    let refused = VersionEdit {
        changes: vec![Change::LogNumber(9), Change::DropPartition { id: 77 }],
    };
    assert!(m.log(&refused).is_err());
    assert_eq!(m.state().wal_starts.len(), 1);
}

#[test]
fn numbers_no_engine_writes_are_corruption() {
    // Each would overflow where the engine counts on from it (the next
    // sequence number, file number, partition id), or wrap around and
    // reuse the name of a live file.
    use crate::coding::MAX_NUMBER;
    use crate::sst::MAX_SEQ;
    let table = |file: u64, max_seq: u64| {
        Change::AddTable(TableRecord {
            partition: 1,
            level: 6,
            file,
            size: 100,
            smallest: b"a".to_vec(),
            largest: b"b".to_vec(),
            min_seq: 0,
            max_seq,
            entries: 1,
            tombstones: 0,
        })
    };
    let bad = [
        Change::LastSequence(MAX_SEQ + 1),
        Change::NextFileNumber(u64::MAX),
        Change::NextPartitionId(MAX_NUMBER + 1),
        Change::LogNumber(u64::MAX),
        Change::WalStart {
            wal: 2,
            seq: u64::MAX,
        },
        Change::Flushed {
            partition: 1,
            seq: MAX_SEQ + 1,
        },
        table(u64::MAX - 1, 5),
        table(7, MAX_SEQ + 1),
    ];
    for change in bad {
        let sim = sim();
        let edit = VersionEdit::one(change.clone());
        let (path, offsets) = hand_written(&sim, &[payload(&create(1)), payload(&edit)]);
        let (file, offset, reason) = open_err(&sim);
        assert_eq!((file, offset), (path, offsets[1]), "{change:?}: {reason}");
        assert!(reason.contains("above"), "{change:?}: {reason}");
    }
    // The largest accepted values open, and what the open writes back
    // opens again.
    let sim = sim();
    let good = VersionEdit {
        changes: vec![
            Change::LastSequence(MAX_SEQ),
            Change::NextFileNumber(MAX_NUMBER),
            Change::WalStart {
                wal: MAX_NUMBER - 1,
                seq: MAX_SEQ + 1,
            },
            table(MAX_NUMBER - 1, MAX_SEQ),
        ],
    };
    hand_written(&sim, &[payload(&create(1)), payload(&good)]);
    for _ in 0..3 {
        let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
        m.with_state(|s| {
            assert_eq!(s.last_sequence, MAX_SEQ);
            assert_eq!(s.next_file_number, MAX_NUMBER);
        });
    }
}

#[test]
fn an_oversize_current_is_corruption_and_is_not_read() {
    let sim = sim();
    let fs = fs_of(&sim);
    drop(Manifest::open(&fs, Path::new(DIR), 1 << 20).unwrap());
    let current = Path::new(DIR).join(CURRENT_FILE);
    let mut long = b"MANIFEST-".to_vec();
    long.extend(std::iter::repeat_n(b'0', 100));
    long.extend_from_slice(b"2\n");
    write_file_atomic(fs.as_ref(), &current, &long).unwrap();
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (current, 0));
    assert!(reason.contains("too long"), "{reason}");
}

#[test]
fn a_manifest_at_the_end_of_the_numbers_is_corruption_and_is_kept() {
    use crate::coding::MAX_NUMBER;
    assert_eq!(parse_manifest_file_name("MANIFEST-000042"), Some(42));
    for bad in [
        "MANIFEST-42",
        "MANIFEST-0000042",
        "MANIFEST-4611686018427387904",
    ] {
        assert_eq!(parse_manifest_file_name(bad), None, "{bad}");
    }
    // The last number a manifest can have: the open would write the next
    // one, whose name would not be read back.
    let sim = sim();
    let (path, _) = hand_written_as(&sim, MAX_NUMBER - 1, &[payload(&create(1))]);
    let bytes = sim.contents(&path).unwrap();
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (Path::new(DIR).join(CURRENT_FILE), 0));
    assert!(reason.contains("exhausted"), "{reason}");
    assert_eq!(sim.contents(&path), Some(bytes), "the manifest is kept");
}

/// A partition creation with a name of `len` bytes: a record that spans
/// sectors.
fn create_named(id: u64, len: usize) -> VersionEdit {
    VersionEdit::one(Change::CreatePartition {
        id,
        name: format!("p{id}-{}", "n".repeat(len)),
    })
}

/// Where [`with_lost_second_edit`] puts a sync mark.
#[derive(Clone, Copy)]
enum Mark {
    None,
    /// After the second edit, saying the first is durable.
    ThroughFirst,
    /// After the second edit, saying both are durable.
    ThroughSecond,
}

/// Hand-writes creations of partitions 1, 2 and 3 (each record over a
/// sector long), with a sync mark between the second and third as `mark`
/// says; then zeroes from the second record's start to the end of its
/// sector (a lost write: the sector it shares with the first record kept
/// only the first record's bytes). Returns the manifest's path.
fn with_lost_second_edit(sim: &SimFs, mark: Mark) -> std::path::PathBuf {
    let edits = [
        payload(&create_named(1, 700)),
        payload(&create_named(2, 700)),
    ];
    // Where the first edit ends and the second: the second's offset, and
    // the file's length.
    let (bytes, offsets) = framed(&edits);
    let ends = [offsets[1], bytes.len() as u64];
    let mut payloads = edits.to_vec();
    match mark {
        Mark::None => {}
        Mark::ThroughFirst => payloads.push(encode_sync_mark(ends[0]).to_vec()),
        Mark::ThroughSecond => payloads.push(encode_sync_mark(ends[1]).to_vec()),
    }
    payloads.push(payload(&create_named(3, 700)));
    let (path, offsets) = hand_written(sim, &payloads);
    let mut data = sim.contents(&path).unwrap();
    let second = usize::try_from(offsets[1]).unwrap();
    let sector_end = second.div_ceil(512) * 512;
    assert!(sector_end < usize::try_from(offsets[2]).unwrap());
    data[second..sector_end].fill(0);
    write_file_atomic(fs_of(sim).as_ref(), &path, &data).unwrap();
    path
}

/// A power loss can keep a later page of unsynced edits and lose an earlier
/// one: the edits from the lost one on were never acknowledged (no sync
/// covered them), so the manifest opens with the edits before it.
#[test]
fn a_lost_write_no_sync_covered_ends_the_manifest_there() {
    for mark in [Mark::None, Mark::ThroughFirst] {
        let sim = sim();
        with_lost_second_edit(&sim, mark);
        let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
        let ids: Vec<u64> = m.state().partitions.keys().copied().collect();
        assert_eq!(ids, [1]);
    }
}

/// The same damage with a sync mark after it that covers it: the damaged
/// bytes were durable, so it is corruption, and nothing is changed.
#[test]
fn a_lost_write_a_sync_covered_is_corruption() {
    let sim = sim();
    let path = with_lost_second_edit(&sim, Mark::ThroughSecond);
    let before = sim.contents(&path).unwrap();
    let (file, _, reason) = open_err(&sim);
    assert_eq!(file, path, "{reason}");
    assert!(reason.contains("records a completed sync"), "{reason}");
    assert_eq!(sim.contents(&path).unwrap(), before);
}

/// A sync mark claiming bytes after itself is corruption.
#[test]
fn a_mark_past_its_own_offset_is_corruption() {
    let sim = sim();
    let (path, offsets) = hand_written(
        &sim,
        &[
            payload(&create(1)),
            encode_sync_mark(1000).to_vec(),
            payload(&create(2)),
        ],
    );
    let (file, offset, reason) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]), "{reason}");
    assert!(reason.contains("sync mark"), "{reason}");
}

/// Damage that is not zeros (a flipped bit) is corruption even where no
/// sync covered it.
#[test]
fn damage_that_is_not_a_lost_write_is_corruption() {
    let sim = sim();
    let (path, offsets) = hand_written(
        &sim,
        &[
            payload(&create_named(1, 700)),
            payload(&create_named(2, 700)),
            payload(&create_named(3, 700)),
        ],
    );
    let mut data = sim.contents(&path).unwrap();
    data[usize::try_from(offsets[1]).unwrap() + 100] ^= 0x10;
    write_file_atomic(fs_of(&sim).as_ref(), &path, &data).unwrap();
    let (file, offset, _) = open_err(&sim);
    assert_eq!((file, offset), (path, offsets[1]));
}

/// The first edit after a completed sync is preceded by a mark saying how
/// far the file is durable; edits appended before a sync completes are not.
#[test]
fn edits_after_a_sync_carry_a_mark_of_it() {
    let sim = sim();
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    m.log(&create(1)).unwrap();
    let synced = sim.contents(&m.path()).unwrap().len() as u64;
    let (p2, _) = m.append_with(|_| create(2)).unwrap();
    m.append_with(|_| create(3)).unwrap();
    m.commit(p2).unwrap();
    let data = sim.contents(&m.path()).unwrap();
    let mut marks = Vec::new();
    let mut edits = 0;
    read_log(&data, |offset, payload| {
        match decode_sync_mark(payload) {
            Some(through) => marks.push((offset, through)),
            None => edits += 1,
        }
        Ok(())
    })
    .unwrap();
    // The snapshot and three edits; one mark, before the second edit.
    assert_eq!(edits, 4);
    assert_eq!(marks, [(synced, synced)]);
    drop(m);
    let m = Manifest::open(&fs_of(&sim), Path::new(DIR), 1 << 20).unwrap();
    assert_eq!(m.state().partitions.len(), 3);
}
