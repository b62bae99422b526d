//! Backpressure: a partition whose flushes fall behind stops its own
//! writers (not other partitions'); level-0 pile-up slows writes down;
//! stalls are counted; a partition whose flushes fail fails only its own
//! stopped writers, and recovers once the failure passes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamdb_lsm::fs::sim::{Fault, OpKind};
use kalamdb_lsm::fs::{Fs, SimFs};
use kalamdb_lsm::{Db, Error, Options, WriteOp};

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

/// Waits until the writer counting in `done` makes no progress for 100 ms
/// (or `finished`, or 20 s pass).
fn wait_until_stuck(done: &AtomicUsize, finished: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = done.load(Ordering::SeqCst);
        if now == last || Instant::now() > deadline || finished() {
            break;
        }
        last = now;
    }
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
    wait_until_stuck(&done, || false);
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

fn try_put(db: &Db, p: &str, key: String, value: Vec<u8>) -> Result<(), Error> {
    db.write(
        [WriteOp {
            partition: p,
            key: key.into_bytes(),
            value: Some(value),
        }],
        None,
    )
    .map(|_| ())
}

/// The table directories under [`DIR`] (named by partition id).
fn partition_dirs(sim: &SimFs) -> Vec<String> {
    let mut dirs: Vec<String> = sim
        .read_dir(std::path::Path::new(DIR))
        .expect("read_dir")
        .into_iter()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    dirs.sort();
    dirs
}

/// Regression for a database-wide "last background error": one
/// partition's failed flush made every stopped writer of every partition
/// fail ("stalled: ... flush failed") until someone called
/// `wait_for_flushes`, and the failed flush was never retried.
#[test]
fn a_failing_partition_fails_only_its_own_stopped_writers_and_recovers() {
    let sim = SimFs::new();
    let options = Options {
        fs: Arc::new(sim.clone()),
        memtable_size: 1024,
        max_immutable_memtables: 2,
        disable_auto_compactions: true,
        ..Options::default()
    };
    let db = Arc::new(Db::open(DIR, options).expect("open"));
    db.create_partition("bad").expect("create");
    put(&db, "bad", "first".into(), vec![b'b'; 10]);
    db.flush().expect("flush");
    let bad_dir = match partition_dirs(&sim).as_slice() {
        [one] => format!("{DIR}/{one}"),
        other => panic!("expected one partition directory, found {other:?}"),
    };
    db.create_partition("good").expect("create");

    // Every file creation in bad's directory fails: its flushes fail.
    sim.inject(
        Fault::on(OpKind::Create, std::io::ErrorKind::Other)
            .on_path(&bad_dir)
            .persistent(),
    );
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        match try_put(&db, "bad", format!("k{i:03}"), vec![b'b'; 100]) {
            Ok(()) => acknowledged.push(i),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("bad's writer is stopped and told why");
    let message = refused.to_string();
    assert!(
        matches!(refused, Error::Stalled(_))
            && message.contains("\"bad\"")
            && message.contains("flush failed"),
        "{message}"
    );
    assert!(sim.faults_fired() >= 1);

    // Another partition's writers, stopped by their own flushes falling
    // behind (held at their first sync), wait and then go through: bad's
    // failure is not theirs.
    let gate = sim.pause_syncs();
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..60 {
                try_put(&db, "good", format!("g{i:03}"), vec![b'g'; 100])?;
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<(), Error>(())
        })
    };
    wait_until_stuck(&done, || writer.is_finished());
    if writer.is_finished() {
        gate.release();
        panic!("good's writer did not wait: {:?}", writer.join());
    }
    assert!(
        done.load(Ordering::SeqCst) < 60,
        "good's writer was stopped"
    );
    gate.release();
    writer
        .join()
        .expect("writer thread")
        .expect("good's writes all succeed");

    // Bad keeps refusing while the failure lasts ...
    let again = try_put(&db, "bad", "more".into(), vec![b'b'; 100]);
    assert!(matches!(again, Err(Error::Stalled(_))), "{again:?}");
    // ... and recovers once it passes: the stopped write queued the flush
    // again.
    sim.clear_faults();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_put(&db, "bad", "after".into(), vec![b'a'; 10]) {
            Ok(()) => break,
            Err(Error::Stalled(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bad did not recover: {e}"),
        }
    }
    db.flush().expect("flush after recovery");
    for i in acknowledged {
        let got = db.get("bad", format!("k{i:03}").as_bytes()).expect("get");
        assert_eq!(got, Some(vec![b'b'; 100]), "k{i:03}");
    }
    for i in 0..60 {
        let got = db.get("good", format!("g{i:03}").as_bytes()).expect("get");
        assert_eq!(got, Some(vec![b'g'; 100]));
    }
    assert_eq!(db.get("bad", b"after").expect("get"), Some(vec![b'a'; 10]));
}
