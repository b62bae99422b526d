//! Partition creation and drop on the simulated file system: concurrent
//! creates share manifest fsyncs and agree on one partition per name, a
//! create is visible only once durable, the WAL is synced before a catalogue
//! change only when an acknowledged write is not yet durable, and reopening
//! leaves no WAL file behind per session.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kalamdb_lsm::fs::{Fs, SimFs};
use kalamdb_lsm::wal::writer::parse_wal_file_name;
use kalamdb_lsm::{Db, Options, WriteOp};

const DIR: &str = "/db";
const WAIT: Duration = Duration::from_secs(30);

fn open(sim: &SimFs) -> Db {
    Db::open(
        DIR,
        Options {
            fs: Arc::new(sim.clone()),
            ..Options::default()
        },
    )
    .expect("open")
}

fn put<'a>(partition: &'a str, key: &[u8]) -> WriteOp<&'a str> {
    WriteOp {
        partition,
        key: key.to_vec(),
        value: Some(b"v".to_vec()),
    }
}

/// Eight threads create the same 60 names in different orders: every name
/// ends up created once (one id), visible in every thread's view and after
/// a crash.
#[test]
fn concurrent_creates_of_the_same_names_agree() {
    let sim = SimFs::new();
    let db = Arc::new(open(&sim));
    let names: Vec<String> = (0..60).map(|i| format!("p{i:02}")).collect();
    let threads: Vec<_> = (0..8usize)
        .map(|t| {
            let db = db.clone();
            let mut order = names.clone();
            order.rotate_left(t * 7);
            if t % 2 == 1 {
                order.reverse();
            }
            std::thread::spawn(move || {
                for name in &order {
                    db.create_partition(name).expect("create");
                    assert!(
                        db.partition_exists(name),
                        "{name} not visible after create returned"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(db.list_partitions(), names);
    assert_eq!(db.stats().partitions, 60);
    drop(db);
    sim.crash(7);
    let db = open(&sim);
    assert_eq!(db.list_partitions(), names, "creates are durable on return");
    // Each name is one partition: a write to each lands in its own.
    for name in &names {
        db.write([put(name, name.as_bytes())], None).expect("write");
    }
    for name in &names {
        let mut it = db.scan(name, None, None).expect("scan");
        let first = it.next().expect("one item").expect("read");
        assert_eq!(first.0, name.as_bytes());
        assert!(it.next().is_none(), "{name} holds another partition's data");
    }
}

/// While a create's manifest fsync is held, the partition is not visible
/// (a write to it could otherwise be acknowledged and then lost with the
/// partition), and a second create of the same name waits for the same
/// fsync; once it completes, the partition is visible.
#[test]
fn a_create_is_visible_only_once_durable() {
    let sim = SimFs::new();
    let db = Arc::new(open(&sim));
    let gate = sim.pause_syncs();
    let creator = {
        let db = db.clone();
        std::thread::spawn(move || db.create_partition("late").expect("create"))
    };
    assert!(gate.wait_for_blocked(1, WAIT), "the create never synced");
    assert!(!db.partition_exists("late"));
    assert!(db.write([put("late", b"k")], None).is_err());
    // A second create of the same name finds the first one's edit pending:
    // it must not return before that edit is durable either.
    let second = {
        let db = db.clone();
        std::thread::spawn(move || {
            db.create_partition("late").expect("create");
            assert!(
                db.partition_exists("late"),
                "visible when the second create returns"
            );
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !second.is_finished(),
        "the second create returned before the edit was durable"
    );
    gate.release();
    creator.join().expect("thread");
    second.join().expect("second thread");
    assert!(db.partition_exists("late"));
    assert_eq!(db.list_partitions(), ["late"]);
}

/// A create or drop syncs the WAL first only when an acknowledged write is
/// not durable yet: otherwise the manifest's fsync is the only one.
#[test]
fn the_wal_is_synced_before_ddl_only_when_needed() {
    let sim = SimFs::new();
    let db = open(&sim);
    let syncs = || sim.sync_counts().sync_data + sim.sync_counts().sync_all;

    let before = syncs();
    db.create_partition("a").expect("create");
    assert_eq!(
        syncs() - before,
        1,
        "nothing written: the manifest's fsync only"
    );

    db.write([put("a", b"k1")], Some(false)).expect("write");
    let before = syncs();
    db.create_partition("b").expect("create");
    assert_eq!(
        syncs() - before,
        2,
        "an unsynced write: the WAL's, then the manifest's"
    );

    let before = syncs();
    db.drop_partition("b").expect("drop");
    assert_eq!(
        syncs() - before,
        1,
        "the WAL is durable since the last create"
    );

    db.write([put("a", b"k2")], Some(true)).expect("sync write");
    let before = syncs();
    db.create_partition("c").expect("create");
    assert_eq!(syncs() - before, 1, "the last write was synced");
}

/// Reopening when every write is in tables leaves just the new WAL file
/// (before, each open added one that only a later flush removed).
#[test]
fn reopens_do_not_pile_up_wal_files() {
    let sim = SimFs::new();
    let wal_files = || {
        sim.read_dir(Path::new(DIR))
            .expect("read_dir")
            .iter()
            .filter(|n| parse_wal_file_name(n).is_some())
            .count()
    };
    let db = open(&sim);
    db.create_partition("a").expect("create");
    db.write([put("a", b"k")], None).expect("write");
    db.flush().expect("flush");
    drop(db);
    for session in 0..5 {
        let db = open(&sim);
        assert_eq!(db.get("a", b"k").expect("get"), Some(b"v".to_vec()));
        assert_eq!(wal_files(), 1, "session {session}");
        drop(db);
    }
}
