//! The write-buffer budget (`Options::write_buffer_size`) and the WAL limit
//! (`Options::max_total_wal_size`), on the simulated file system: the
//! largest memtable is flushed first, unflushed bytes return under the
//! budget, flushed memtables held by iterators do not count, memory
//! accounting stays exact under concurrent writes and drops, and a partition
//! written once does not pin WAL files — with everything readable before and
//! after reopen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kalamdb_lsm::fs::{Fs, SimFs};
use kalamdb_lsm::wal::writer::parse_wal_file_name;
use kalamdb_lsm::{Db, Error, Options, WriteOp};

const DIR: &str = "/db";

/// Large memtables and no WAL limit: only the budget flushes.
fn budget_options(sim: &SimFs, budget: usize) -> Options {
    Options {
        fs: Arc::new(sim.clone()),
        memtable_size: 1 << 20,
        write_buffer_size: budget,
        max_total_wal_size: u64::MAX,
        ..Options::default()
    }
}

fn open(sim: &SimFs, options: &Options) -> Db {
    let _ = sim;
    Db::open(DIR, options.clone()).expect("open")
}

fn put(db: &Db, partition: &str, key: &[u8], value: &[u8]) {
    db.write(
        [WriteOp {
            partition,
            key: key.to_vec(),
            value: Some(value.to_vec()),
        }],
        None,
    )
    .expect("write");
}

fn key(i: usize) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("v{i}-").into_bytes();
    v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
    v
}

fn scan_all(db: &Db, partition: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.scan(partition, None, None)
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("scan item")
}

fn tables(db: &Db, partition: &str) -> usize {
    db.partition_stats(partition).expect("partition").tables
}

/// Numbers of the WAL files in the directory.
fn wal_files(sim: &SimFs) -> Vec<u64> {
    sim.read_dir(Path::new(DIR))
        .expect("read_dir")
        .iter()
        .filter_map(|n| parse_wal_file_name(n))
        .collect()
}

#[test]
fn the_largest_active_memtable_is_flushed_first() {
    const BUDGET: usize = 64 << 10;
    let sim = SimFs::new();
    let db = open(&sim, &budget_options(&sim, BUDGET));
    for p in ["a", "b", "c"] {
        db.create_partition(p).expect("create");
    }
    // a ≈ 36 KiB, b ≈ 18 KiB; then c, the partition being written, until
    // the total crosses the budget: a alone must go.
    for i in 0..36 {
        put(&db, "a", &key(i), &value(i, 1000));
    }
    for i in 0..18 {
        put(&db, "b", &key(i), &value(i, 1000));
    }
    let mut i = 0;
    // Crossed: the bytes are over the budget, or the flush thread already
    // rotated (it counts the rotation before the flush lowers the bytes).
    let crossed = |db: &Db| {
        let stats = db.stats();
        stats.memtable_bytes > BUDGET || stats.budget_rotations > 0
    };
    while !crossed(&db) {
        put(&db, "c", &key(i), &value(i, 1000));
        i += 1;
        assert!(i < 100, "the budget is never crossed");
    }
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    assert_eq!(stats.budget_rotations, 1, "{stats:?}");
    assert_eq!(
        (tables(&db, "a"), tables(&db, "b"), tables(&db, "c")),
        (1, 0, 0)
    );
    assert_eq!(db.partition_stats("a").expect("a").memtable_bytes, 0);
    assert!(stats.memtable_bytes <= BUDGET, "{stats:?}");
    assert_eq!(stats.memtable_bytes, stats.active_memtable_bytes);
    // Everything reads back, also after reopen.
    let expect = |n: usize| -> BTreeMap<Vec<u8>, Vec<u8>> {
        (0..n).map(|i| (key(i), value(i, 1000))).collect()
    };
    drop(db);
    let db = open(&sim, &budget_options(&sim, BUDGET));
    assert_eq!(scan_all(&db, "a"), expect(36));
    assert_eq!(scan_all(&db, "b"), expect(18));
    assert_eq!(scan_all(&db, "c"), expect(i));
}

/// Writes a skewed random workload over 16 partitions; checks the budget
/// after every 100 writes; returns the model.
fn skewed_workload(db: &Db, budget: usize) -> BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut model: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for p in 0..16 {
        let name = format!("p{p:02}");
        db.create_partition(&name).expect("create");
        model.insert(name, BTreeMap::new());
    }
    for i in 0..3000 {
        // Partition p gets ~1/(p+1) of the writes.
        let r = next();
        let p = (0..16).find(|p| r % (p + 2) == 0).unwrap_or(15);
        let name = format!("p{p:02}");
        let k = key((next() % 400) as usize);
        let v = value(i, 10 + (next() % 300) as usize);
        put(db, &name, &k, &v);
        model.get_mut(&name).expect("model").insert(k, v);
        if i % 100 == 99 && budget > 0 {
            db.wait_for_flushes().expect("flushes");
            let stats = db.stats();
            assert!(
                stats.memtable_bytes <= budget,
                "after {i} writes: {stats:?}"
            );
            assert_eq!(stats.memtable_bytes, stats.active_memtable_bytes);
        }
    }
    model
}

#[test]
fn unflushed_bytes_return_under_the_budget() {
    const BUDGET: usize = 32 << 10;
    let sim = SimFs::new();
    let options = budget_options(&sim, BUDGET);
    let db = open(&sim, &options);
    let model = skewed_workload(&db, BUDGET);
    let stats = db.stats();
    assert!(stats.budget_rotations > 10, "{stats:?}");
    assert!(stats.tables > 10, "{stats:?}");
    for (name, want) in &model {
        assert_eq!(&scan_all(&db, name), want, "{name}");
    }
    // The accounting is the sum over partitions.
    let sum: usize = model
        .keys()
        .map(|n| db.partition_stats(n).expect("p").memtable_bytes)
        .sum();
    assert_eq!(stats.memtable_bytes, sum);
    db.flush().expect("flush");
    let stats = db.stats();
    assert_eq!((stats.memtable_bytes, stats.active_memtable_bytes), (0, 0));
    drop(db);
    let db = open(&sim, &options);
    for (name, want) in &model {
        assert_eq!(&scan_all(&db, name), want, "{name} after reopen");
    }

    // The same workload without a budget flushes nothing (1 MiB memtables):
    // the checks above are not vacuous.
    let sim = SimFs::new();
    let db = open(&sim, &budget_options(&sim, 0));
    skewed_workload(&db, 0);
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    assert_eq!((stats.budget_rotations, stats.tables), (0, 0));
    assert!(stats.memtable_bytes > 4 * BUDGET, "{stats:?}");
}

#[test]
fn memtables_held_by_iterators_do_not_count() {
    const BUDGET: usize = 64 << 10;
    let sim = SimFs::new();
    let db = open(&sim, &budget_options(&sim, BUDGET));
    db.create_partition("a").expect("create");
    for i in 0..50 {
        put(&db, "a", &key(i), &value(i, 1000));
    }
    let mut held = db.scan("a", None, None).expect("scan");
    assert_eq!(
        held.next().transpose().expect("first item"),
        Some((key(0), value(0, 1000)))
    );
    db.flush().expect("flush");
    let stats = db.stats();
    assert_eq!(stats.memtable_bytes, 0, "{stats:?}");
    assert!(stats.pinned_memtable_bytes >= 50_000, "{stats:?}");

    // 40 KiB more: with the pinned ~51 KiB counted this would cross the
    // budget and flush.
    for i in 0..40 {
        put(&db, "a", &key(i), &value(i + 1000, 1000));
    }
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    assert_eq!(stats.budget_rotations, 0, "{stats:?}");
    assert_eq!(stats.tables, 1, "{stats:?}");
    assert!(stats.memtable_bytes >= 40_000, "{stats:?}");

    // The iterator still reads its snapshot.
    let rest: Vec<(Vec<u8>, Vec<u8>)> = held.collect::<Result<_, _>>().expect("rest");
    let want: Vec<(Vec<u8>, Vec<u8>)> = (1..50).map(|i| (key(i), value(i, 1000))).collect();
    assert_eq!(rest, want);
    assert_eq!(db.stats().pinned_memtable_bytes, 0);

    // Crossing the budget with unflushed bytes does flush.
    for i in 40..80 {
        put(&db, "a", &key(i), &value(i + 1000, 1000));
    }
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    assert_eq!(stats.budget_rotations, 1, "{stats:?}");
    assert!(stats.memtable_bytes <= BUDGET, "{stats:?}");
}

#[test]
fn accounting_is_exact_under_concurrent_writes_and_drops() {
    const BUDGET: usize = 16 << 10;
    let sim = SimFs::new();
    let mut options = budget_options(&sim, BUDGET);
    options.memtable_size = 4 << 10;
    let db = Arc::new(open(&sim, &options));
    let names: Vec<String> = (0..6).map(|p| format!("p{p}")).collect();
    for n in &names {
        db.create_partition(n).expect("create");
    }
    std::thread::scope(|s| {
        for t in 0..3 {
            let db = db.clone();
            let names = names.clone();
            s.spawn(move || {
                for i in 0..1500 {
                    let name = &names[(i * 7 + t) % names.len()];
                    match db.write(
                        [WriteOp {
                            partition: name.as_str(),
                            key: key(i % 97),
                            value: Some(value(i, 50 + i % 200)),
                        }],
                        None,
                    ) {
                        Ok(()) | Err(Error::PartitionNotFound(_)) => {}
                        Err(e) => panic!("write: {e}"),
                    }
                }
            });
        }
        let db = db.clone();
        let names = names.clone();
        s.spawn(move || {
            for round in 0..60 {
                let name = &names[round % names.len()];
                match db.drop_partition(name) {
                    Ok(()) | Err(Error::PartitionNotFound(_)) => {}
                    Err(e) => panic!("drop: {e}"),
                }
                db.create_partition(name).expect("create");
                std::thread::yield_now();
            }
        });
    });
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    let per_partition: Vec<_> = db
        .list_partitions()
        .iter()
        .map(|n| db.partition_stats(n).expect("p"))
        .collect();
    let unflushed: usize = per_partition.iter().map(|p| p.memtable_bytes).sum();
    let active: usize = per_partition.iter().map(|p| p.active_memtable_bytes).sum();
    assert_eq!(
        (stats.memtable_bytes, stats.active_memtable_bytes),
        (unflushed, active)
    );
    assert!(stats.memtable_bytes <= BUDGET, "{stats:?}");
    for n in db.list_partitions() {
        db.drop_partition(&n).expect("drop");
    }
    let stats = db.stats();
    assert_eq!((stats.memtable_bytes, stats.active_memtable_bytes), (0, 0));
}

/// Tiny WAL files and a 16 KiB WAL limit; large memtables and budget, so
/// only the WAL limit flushes.
fn wal_options(sim: &SimFs, limit: u64) -> Options {
    Options {
        fs: Arc::new(sim.clone()),
        memtable_size: 1 << 20,
        write_buffer_size: 64 << 20,
        wal_file_size: 4 << 10,
        max_total_wal_size: limit,
        ..Options::default()
    }
}

/// One write to `cold`, then 2,000 writes of ~500 bytes to `hot`; calls
/// `check` every 20 writes.
fn cold_and_hot(db: &Db, mut check: impl FnMut(&Db, usize)) {
    db.create_partition("cold").expect("create");
    db.create_partition("hot").expect("create");
    put(db, "cold", b"once", b"never again");
    for i in 0..2000 {
        put(db, "hot", &key(i % 700), &value(i, 500));
        if i % 20 == 19 {
            check(db, i);
        }
    }
}

#[test]
fn a_partition_written_once_does_not_pin_wal_files() {
    const LIMIT: u64 = 16 << 10;
    let sim = SimFs::new();
    let options = wal_options(&sim, LIMIT);
    let db = open(&sim, &options);
    let bounded = |db: &Db, sim: &SimFs, when: &str| {
        db.wait_for_flushes().expect("flushes");
        let stats = db.stats();
        // Every rotated file holds ≥ 4 KiB, so ≤ 4 of them fit in 16 KiB,
        // plus the file being written.
        assert!(stats.wal_files_bytes <= LIMIT, "{when}: {stats:?}");
        assert!(stats.wal_files <= 5, "{when}: {stats:?}");
        assert_eq!(wal_files(sim).len(), stats.wal_files, "{when}");
    };
    cold_and_hot(&db, |db, i| bounded(db, &sim, &format!("after write {i}")));
    let stats = db.stats();
    assert!(stats.wal_limit_rotations > 10, "{stats:?}");
    assert!(tables(&db, "cold") >= 1, "the cold partition was flushed");
    let hot: BTreeMap<Vec<u8>, Vec<u8>> = (1300..2000)
        .map(|i| (key(i % 700), value(i, 500)))
        .collect();
    let check = |db: &Db| {
        assert_eq!(
            db.get("cold", b"once").expect("get"),
            Some(b"never again".to_vec())
        );
        assert_eq!(scan_all(db, "hot"), hot);
    };
    check(&db);
    drop(db);
    let db = open(&sim, &options);
    check(&db);
    bounded(&db, &sim, "after reopen");
    // Writing on after the reopen keeps the bound.
    for i in 0..200 {
        put(&db, "hot", &key(i), &value(i + 5000, 500));
    }
    bounded(&db, &sim, "after writes since reopen");
    drop(db);
    let db = open(&sim, &options);
    assert_eq!(
        db.get("hot", &key(199)).expect("get"),
        Some(value(5199, 500))
    );
    assert_eq!(
        db.get("hot", &key(200)).expect("get"),
        hot.get(&key(200)).cloned()
    );

    // Without the limit the cold partition keeps every WAL file alive.
    let sim = SimFs::new();
    let db = open(&sim, &wal_options(&sim, u64::MAX));
    cold_and_hot(&db, |_, _| {});
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    assert!(stats.wal_files > 100, "{stats:?}");
    assert_eq!(stats.wal_limit_rotations, 0);
}

#[test]
fn the_wal_limit_defaults_to_four_write_buffers() {
    let sim = SimFs::new();
    let options = Options {
        write_buffer_size: 8 << 10,
        max_total_wal_size: 0,
        ..wal_options(&sim, 0)
    };
    let db = open(&sim, &options);
    cold_and_hot(&db, |_, _| {});
    db.wait_for_flushes().expect("flushes");
    let stats = db.stats();
    assert!(stats.wal_files_bytes <= 32 << 10, "{stats:?}");
    assert!(tables(&db, "cold") >= 1, "{stats:?}");
}
