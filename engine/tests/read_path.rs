//! The engine's read path through the caches: the table cache bounds open
//! table files (`max_open_files`) and opens tables lazily; the block cache
//! serves repeated reads within its byte budget, with index and filter
//! charged; memory-mapped reads (`mmap_reads`); tables missing or of the
//! wrong size are corruption at open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kalamdb_lsm::fs::{Fs, RealFs, SimFs};
use kalamdb_lsm::{Db, Error, Options, WriteOp};

const DIR: &str = "/db";

fn sim_options(sim: &SimFs) -> Options {
    Options {
        fs: Arc::new(sim.clone()),
        block_size: 256,
        // The tests count tables; compaction would merge them.
        disable_auto_compactions: true,
        ..Options::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat((i % 40) as usize)).into_bytes()
}

fn put(db: &Db, partition: &str, k: Vec<u8>, v: Vec<u8>) {
    db.write(
        [WriteOp {
            partition,
            key: k,
            value: Some(v),
        }],
        None,
    )
    .expect("write");
}

/// Writes `tables` flushed tables into partition `p`, each overwriting a
/// third of the keys `0..keys` and adding its own; returns the model.
fn fill(db: &Db, p: &str, tables: u32, keys: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.create_partition(p).expect("create");
    let mut model = BTreeMap::new();
    for round in 0..tables {
        for i in (round % 3..keys).step_by(3) {
            let (k, v) = (key(i), value(i, round));
            put(db, p, k.clone(), v.clone());
            model.insert(k, v);
        }
        db.flush().expect("flush");
    }
    model
}

fn check(db: &Db, p: &str, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for (k, v) in model {
        assert_eq!(db.get(p, k).expect("get").as_deref(), Some(v.as_slice()));
    }
    let scanned: Vec<(Vec<u8>, Vec<u8>)> = db
        .scan(p, None, None)
        .expect("scan")
        .map(|r| r.expect("scan entry"))
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scanned, expected);
}

/// Creates partition `p` of `tables` flushed tables over keys 0..300,
/// table `r` holding the keys `i` with `i % tables == r` (a read may need
/// any table); returns what it holds.
fn interleaved_tables(db: &Db, tables: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.create_partition("p").expect("create");
    let mut model = BTreeMap::new();
    for round in 0..tables {
        for i in (round..300).step_by(tables as usize) {
            put(db, "p", key(i), value(i, round));
            model.insert(key(i), value(i, round));
        }
        db.flush().expect("flush");
    }
    model
}

#[test]
fn open_table_files_stay_within_max_open_files() {
    let sim = SimFs::new();
    let options = Options {
        max_open_files: 3,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options.clone()).expect("open");
    let model = interleaved_tables(&db, 12);
    assert_eq!(db.stats().tables, 12);
    let opened_by_flushes = db.stats().table_cache.opens;
    for (k, v) in &model {
        assert_eq!(db.get("p", k).expect("get").as_deref(), Some(v.as_slice()));
        let s = db.stats().table_cache;
        assert!(s.open <= 3, "{s:?}");
    }
    let s = db.stats().table_cache;
    assert!(
        s.evictions > 0 && s.opens > opened_by_flushes,
        "tables were closed and reopened: {s:?}"
    );
    // A scan needs all 12 at once: it holds them beyond the bound and the
    // cache itself stays bounded.
    check(&db, "p", &model);
    assert!(db.stats().table_cache.open <= 3);
    drop(db);

    // After reopen nothing is opened until a read needs it.
    let db = Db::open(DIR, options).expect("reopen");
    let s = db.stats().table_cache;
    assert_eq!((s.open, s.opens), (0, 0), "{s:?}");
    let (k, v) = model.iter().next().expect("a key");
    assert_eq!(db.get("p", k).expect("get").as_deref(), Some(v.as_slice()));
    assert!(db.stats().table_cache.opens >= 1);
    check(&db, "p", &model);
}

/// Flushes and compactions check the tables they write by opening them, but
/// keep none open: a table's index and filter come into memory with its
/// first read (a write-only load holds none), and a compaction reads its
/// inputs without loading their filters.
#[test]
fn written_tables_are_opened_by_their_first_read() {
    let sim = SimFs::new();
    let db = Db::open(DIR, sim_options(&sim)).expect("open");
    let model = interleaved_tables(&db, 3);
    let held = |db: &Db| {
        let s = db.stats();
        (s.table_cache.open, s.block_cache.pinned)
    };
    assert_eq!(db.stats().tables, 3);
    assert_eq!(held(&db), (0, 0), "flushes keep nothing open");
    // One table open (by a read) and two not: the compaction reads all three.
    assert_eq!(
        db.get("p", &key(0)).expect("get").as_deref(),
        Some(value(0, 0).as_slice())
    );
    let (open, pinned) = held(&db);
    assert!(open == 1 && pinned > 0, "{open} {pinned}");
    db.compact("p").expect("compact");
    assert_eq!(db.stats().tables, 1);
    assert_eq!(
        held(&db),
        (0, 0),
        "the inputs are closed, the output not opened"
    );
    for (k, v) in &model {
        assert_eq!(db.get("p", k).expect("get").as_deref(), Some(v.as_slice()));
    }
    let (open, pinned) = held(&db);
    assert!(open == 1 && pinned > 0, "{open} {pinned}");
    check(&db, "p", &model);
}

#[test]
fn repeated_reads_hit_the_block_cache() {
    let sim = SimFs::new();
    let db = Db::open(DIR, sim_options(&sim)).expect("open");
    let model = fill(&db, "p", 1, 500);
    let (k, v) = model.iter().nth(100).expect("a key");
    assert_eq!(db.get("p", k).expect("get").as_deref(), Some(v.as_slice()));
    let before = db.stats().block_cache;
    for _ in 0..10 {
        assert_eq!(db.get("p", k).expect("get").as_deref(), Some(v.as_slice()));
    }
    let after = db.stats().block_cache;
    assert_eq!(after.hits - before.hits, 10, "{before:?} -> {after:?}");
    assert_eq!(after.misses, before.misses);
    // A key that is not there is answered by the bloom filter (or the
    // index) without a data block lookup most of the time.
    for i in 0..200 {
        assert_eq!(db.get("p", &key(100_000 + i)).expect("get"), None);
    }
    let missing = db.stats().block_cache;
    assert!(
        missing.hits + missing.misses - after.hits - after.misses < 20,
        "{after:?} -> {missing:?}"
    );
}

#[test]
fn block_cache_respects_its_budget_with_metadata_charged() {
    let sim = SimFs::new();
    let budget = 28 << 10;
    let options = Options {
        block_cache_size: budget,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options).expect("open");
    let model = fill(&db, "p", 4, 2000);
    check(&db, "p", &model);
    let s = db.stats().block_cache;
    assert!(
        s.pinned > 0,
        "open tables charge their index and filter: {s:?}"
    );
    assert!(s.usage <= budget.max(s.pinned), "{s:?}");
    assert!(
        s.blocks > 0 && s.inserts > s.blocks as u64,
        "evicted: {s:?}"
    );
}

/// Readers on several threads, a cache far smaller than the data: blocks
/// are evicted all the time and their buffers reused for other blocks
/// (`BufferPool`) while scans and other readers may still hold them.
#[test]
fn concurrent_readers_through_a_small_cache_read_what_was_written() {
    let sim = SimFs::new();
    let options = Options {
        block_cache_size: 48 << 10,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options).expect("open");
    let model = fill(&db, "p", 4, 3000);
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (db, model, keys) = (&db, &model, &keys);
            s.spawn(move || {
                // A scan held open across the point reads.
                let mut scan = db.scan("p", None, None).expect("scan");
                let mut scanned = model.iter();
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..3000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = keys[(x % keys.len() as u64) as usize];
                    let got = db.get("p", k).expect("get");
                    assert_eq!(got.as_deref(), model.get(k).map(Vec::as_slice));
                    if let Some(entry) = scan.next() {
                        let (sk, sv) = entry.expect("scan entry");
                        let (mk, mv) = scanned.next().expect("model entry");
                        assert_eq!((&sk[..], &sv[..]), (&mk[..], &mv[..]));
                    }
                }
            });
        }
    });
    let s = db.stats().block_cache;
    assert!(s.inserts > s.blocks as u64, "blocks were evicted: {s:?}");
}

#[test]
fn zero_budget_block_cache_still_reads_correctly() {
    let sim = SimFs::new();
    let options = Options {
        block_cache_size: 0,
        max_open_files: 1,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options).expect("open");
    let model = fill(&db, "p", 3, 400);
    check(&db, "p", &model);
    assert_eq!(db.stats().block_cache.blocks, 0);
}

#[test]
fn mmap_reads_on_the_real_file_system() {
    let dir = std::env::temp_dir().join(format!("kalamdb-mmap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = Options {
        fs: Arc::new(RealFs::new()),
        mmap_reads: true,
        block_size: 512,
        max_open_files: 2,
        disable_auto_compactions: true,
        ..Options::default()
    };
    let db = Db::open(&dir, options.clone()).expect("open");
    let model = fill(&db, "p", 5, 600);
    check(&db, "p", &model);
    // Mapped tables bypass the block cache for data blocks.
    let s = db.stats().block_cache;
    assert_eq!((s.blocks, s.inserts), (0, 0), "{s:?}");
    drop(db);
    let db = Db::open(&dir, options).expect("reopen");
    check(&db, "p", &model);
    drop(db);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn mmap_reads_on_the_simulated_file_system() {
    let sim = SimFs::new();
    let options = Options {
        mmap_reads: true,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options).expect("open");
    let model = fill(&db, "p", 3, 300);
    check(&db, "p", &model);
    assert_eq!(db.stats().block_cache.blocks, 0);
}

/// The one table file of partition `p` (whose id directory is the only one).
fn only_table(sim: &SimFs) -> std::path::PathBuf {
    let dirs: Vec<String> = sim
        .read_dir(Path::new(DIR))
        .expect("read_dir")
        .into_iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let pdir = Path::new(DIR).join(&dirs[0]);
    let tables = sim.read_dir(&pdir).expect("read_dir");
    assert_eq!(tables.len(), 1, "{tables:?}");
    pdir.join(&tables[0])
}

#[test]
fn a_missing_or_resized_table_is_corruption_at_open() {
    for damage in ["remove", "truncate"] {
        let sim = SimFs::new();
        let db = Db::open(DIR, sim_options(&sim)).expect("open");
        fill(&db, "p", 1, 50);
        drop(db);
        let table = only_table(&sim);
        match damage {
            "remove" => sim.remove_file(&table).expect("remove"),
            _ => {
                let len = sim.file_size(&table).expect("size");
                sim.truncate(&table, len - 1).expect("truncate");
            }
        }
        match Db::open(DIR, sim_options(&sim)) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, table, "{damage}"),
            other => panic!("{damage}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn a_table_damaged_after_open_is_an_error_on_read_not_a_wrong_value() {
    let sim = SimFs::new();
    let options = Options {
        block_cache_size: 0,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options.clone()).expect("open");
    let model = fill(&db, "p", 1, 200);
    drop(db);
    let table = only_table(&sim);
    // Flip one byte in the middle of the data region; the size is unchanged
    // so open succeeds and the damage is found by the block's CRC.
    let data = kalamdb_lsm::fs::read_file(&sim, &table).expect("read");
    let mut bad = data.clone();
    bad[100] ^= 0x40;
    let mut f = sim.create(&table).expect("create");
    f.append(&bad).expect("append");
    f.sync_all().expect("sync");
    drop(f);
    let db = Db::open(DIR, options).expect("open succeeds: size matches");
    let mut errors = 0;
    for (k, v) in &model {
        match db.get("p", k) {
            Ok(Some(got)) => assert_eq!(&got, v),
            Ok(None) => panic!("key lost without an error"),
            Err(Error::Corruption { file, .. }) => {
                assert_eq!(file, table);
                errors += 1;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(errors > 0, "the damaged block was read");
}

#[test]
fn dropping_a_partition_removes_its_directory_once_no_iterator_reads_it() {
    let sim = SimFs::new();
    let db = Db::open(DIR, sim_options(&sim)).expect("open");
    let model = fill(&db, "p", 2, 100);
    let table = only_table_dirs(&sim);
    assert_eq!(table.len(), 1);
    let mut iter = db.scan("p", None, None).expect("scan");
    db.drop_partition("p").expect("drop");
    // The iterator still reads the dropped partition's tables.
    let first = iter.next().expect("an entry").expect("readable");
    assert_eq!(
        model.iter().next().map(|(k, _)| k.as_slice()),
        Some(&first.0[..])
    );
    assert_eq!(iter.count(), model.len() - 1);
    // Consumed (and dropped): the files and the directory are gone.
    assert!(
        only_table_dirs(&sim).is_empty(),
        "{:?}",
        only_table_dirs(&sim)
    );
    // A partition of the same name starts empty, in a new directory.
    db.create_partition("p").expect("create");
    assert_eq!(db.scan("p", None, None).expect("scan").count(), 0);
}

/// The partition directories (named by id) in the database directory.
fn only_table_dirs(sim: &SimFs) -> Vec<String> {
    sim.read_dir(Path::new(DIR))
        .expect("read_dir")
        .into_iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

/// Regression (found by the `op_sequence` fuzz target): an iterator that
/// outlived its `Db` failed with "no such file" once the directory was
/// reopened and the new `Db` deleted table files the iterator had not
/// opened yet (a level's tables open one at a time, and with a small
/// `max_open_files` none stays in the table cache). Closing now opens the
/// tables that live iterators still hold, so their reads no longer depend
/// on the file names: both tables of the current version (which the new
/// `Db` compacts away) and tables the old one already compacted away
/// (which the new `Db` removes as orphans at open).
#[test]
fn an_iterator_outlives_a_reopen_that_deletes_its_tables() {
    let sim = SimFs::new();
    let options = Options {
        max_open_files: 1,
        target_file_size: 2048,
        ..sim_options(&sim)
    };
    let db = Db::open(DIR, options.clone()).expect("open");
    let old = fill(&db, "p", 4, 300);
    db.compact("p").expect("compact");
    let runs = |db: &Db| db.stats().levels.iter().skip(1).map(|l| l.0).max();
    assert!(
        runs(&db) > Some(3),
        "a run of tables: {:?}",
        db.stats().levels
    );
    // Reads that run, which the next compaction makes obsolete.
    let mut before = db.scan("p", None, None).expect("scan");
    let mut new = old.clone();
    for i in (0..300).step_by(7) {
        put(&db, "p", key(i), value(i, 99));
        new.insert(key(i), value(i, 99));
    }
    db.compact("p").expect("compact");
    // Reads the new run.
    let mut after = db.scan("p", None, None).expect("scan");
    let list = |m: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let (old, new) = (list(&old), list(&new));
    assert_eq!(
        before.next().map(|r| r.expect("entry")),
        old.first().cloned()
    );
    assert_eq!(
        after.next().map(|r| r.expect("entry")),
        new.first().cloned()
    );
    drop(db);

    // A new instance on the directory deletes every table the iterators
    // read: the obsolete ones at open, the others by compacting.
    let db = Db::open(DIR, options).expect("reopen");
    put(&db, "p", key(0), b"newest".to_vec());
    db.compact("p").expect("compact after reopen");
    assert_eq!(db.get("p", &key(0)).expect("get"), Some(b"newest".to_vec()));

    for (name, iter, expected) in [("before", before, &old), ("after", after, &new)] {
        let rest: Vec<(Vec<u8>, Vec<u8>)> = iter
            .map(|r| r.unwrap_or_else(|e| panic!("iterator {name}: {e}")))
            .collect();
        assert_eq!(rest.as_slice(), &expected[1..], "iterator {name}");
    }
}
