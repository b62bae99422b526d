//! Backpressure: a partition whose flushes fall behind stops its own
//! writers (not other partitions'); level-0 pile-up slows writes down;
//! stalls are counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_lsm::fs::SimFs;
use kalamdb_lsm::{Db, Options, WriteOp};

const DIR: &str = "/db";

fn put(db: &Db, p: &str, key: String, value: Vec<u8>) {
    db.write(
        [WriteOp {
            partition: p,
            key: key.into_bytes(),
            value: Some(value),
        }],
        None,
    )
    .expect("write");
}

#[test]
fn a_partition_behind_on_flushes_stops_only_its_own_writers() {
    let sim = SimFs::new();
    let options = Options {
        fs: Arc::new(sim.clone()),
        memtable_size: 1024,
        max_immutable_memtables: 2,
        disable_auto_compactions: true,
        ..Options::default()
    };
    let db = Arc::new(Db::open(DIR, options).expect("open"));
    db.create_partition("hot").expect("create");
    db.create_partition("cold").expect("create");
    // Flushes block at their first fsync.
    let gate = sim.pause_syncs();
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..60 {
                put(&db, "hot", format!("k{i:03}"), vec![b'h'; 100]);
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // The hot writer fills two memtables and a bit, then stops.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = done.load(Ordering::SeqCst);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let stopped_at = done.load(Ordering::SeqCst);
    assert!(stopped_at < 60, "the hot writer was stopped ({stopped_at})");
    assert!(db.stats().memtables >= 2);
    // Another partition's writes go through meanwhile.
    for i in 0..5 {
        put(&db, "cold", format!("c{i}"), vec![b'c'; 10]);
    }
    assert_eq!(done.load(Ordering::SeqCst), stopped_at, "still stopped");
    gate.release();
    writer.join().expect("writer");
    assert_eq!(done.load(Ordering::SeqCst), 60);
    let s = db.stats();
    assert!(s.stalls >= 1 && s.stall_micros >= 100_000, "{s:?}");
    for i in 0..60 {
        let got = db.get("hot", format!("k{i:03}").as_bytes()).expect("get");
        assert_eq!(got, Some(vec![b'h'; 100]));
    }
}

#[test]
fn level0_pile_up_slows_writes_down() {
    let sim = SimFs::new();
    let options = Options {
        fs: Arc::new(sim.clone()),
        l0_compaction_trigger: 1000,
        l0_slowdown_writes_trigger: 2,
        l0_stop_writes_trigger: 1000,
        ..Options::default()
    };
    let db = Db::open(DIR, options).expect("open");
    db.create_partition("p").expect("create");
    db.create_partition("q").expect("create");
    put(&db, "p", "a".into(), vec![1]);
    assert_eq!(db.stats().stalls, 0);
    for i in 0..4 {
        put(&db, "p", format!("k{i}"), vec![1]);
        db.flush().expect("flush");
    }
    assert_eq!(db.stats().levels[0].0, 4);
    let before = db.stats();
    let t = Instant::now();
    for i in 0..10 {
        put(&db, "p", format!("x{i}"), vec![2]);
    }
    // 4 tables, trigger 2: 3 ms per write.
    assert!(
        t.elapsed() >= Duration::from_millis(30),
        "{:?}",
        t.elapsed()
    );
    let after = db.stats();
    assert_eq!(after.stalls - before.stalls, 10);
    assert!(after.stall_micros - before.stall_micros >= 30_000);
    // The other partition is not slowed.
    for i in 0..10 {
        put(&db, "q", format!("y{i}"), vec![3]);
    }
    assert_eq!(db.stats().stalls, after.stalls);
}
