//! Concurrency stress of `LsmBackend` on a multi-threaded runtime with more
//! tasks than cores, tiny memtables and levels (flushes and compactions run
//! all the time), on the real file system.
//!
//! What the engine promises (README, `docs/DESIGN.md`): a batch is atomic
//! across partitions and becomes visible as a whole; a get sees every batch
//! acknowledged before it started; a scan is a snapshot taken at the call,
//! which stays valid across flushes, compactions, the drop of its partition
//! and the drop of the backend. So:
//!
//! - [`batches_stay_whole_and_reads_never_go_back`]: writers each set the
//!   same `K` keys, spread over three partitions, to one value per batch
//!   (`writer:counter`, the counter increasing per writer; some batches
//!   delete all `K`). Every scan of a partition sees its keys all equal (or
//!   all absent); a reader that has seen `writer:c` never sees `writer:c'`
//!   with `c' < c` again (that batch was overwritten before `writer:c` was
//!   written), in any later get or scan. Iterators held across flushes and
//!   compactions still return one whole batch. At the end every key holds
//!   the last batch of one writer, also after a reopen.
//! - [`partition_drop_and_create_race_reads_and_writes`]: one task drops
//!   and re-creates a partition while others write batches that span it and
//!   a stable partition, read, scan, hold iterators, flush and compact it.
//!   Every operation returns `Ok` or `PartitionNotFound`; a batch that
//!   failed changed nothing (the stable partition's key shows it); every
//!   scan sees one whole batch or nothing; a re-created partition is empty.
//! - [`iterators_outlive_the_backend`]: iterators opened while writers run
//!   are partly read, the backend is dropped, the directory reopened and
//!   compacted (deleting every table the iterators read), and the
//!   iterators still return one whole batch each.
//!
//! `STRESS_SECONDS` (default 4) is the duration of each of the first two
//! tests; the third runs a quarter of it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env_or;
use kalamdb_store::{Error, LsmBackend, LsmOptions, Operation, Partition, StorageBackend};
use tokio::sync::RwLock;

/// Options that keep flushes and compactions busy: 4 KiB memtables, 256-byte
/// blocks, compaction from two level-0 tables into a 16 KiB base level.
fn options() -> LsmOptions {
    LsmOptions {
        memtable_size: 4096,
        block_size: 256,
        wal_file_size: 64 << 10,
        write_buffer_size: 64 << 10,
        l0_compaction_trigger: 2,
        level_base_size: 16 << 10,
        level_size_multiplier: 4,
        target_file_size: 4 << 10,
        ..LsmOptions::default()
    }
}

fn seconds() -> Duration {
    Duration::from_secs_f64(env_or("STRESS_SECONDS", 4.0))
}

/// Awaits every task, failing (instead of hanging) if they are not all done
/// a minute after `deadline`: a writer left waiting forever is a bug.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>, deadline: Instant) -> Vec<T> {
    let limit = deadline + Duration::from_secs(60);
    let mut out = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let left = limit.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t).await {
            Ok(r) => out.push(r.expect("task")),
            Err(_) => panic!("task {i} still runs a minute after the deadline"),
        }
    }
    out
}

fn part(name: &str) -> Partition {
    Partition::new(name).expect("valid name")
}

/// splitmix64, for per-task choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// A batch's value: writer and counter, padded (so that batches fill the
/// memtables quickly).
fn value(writer: u64, counter: u64) -> Vec<u8> {
    let mut v = format!("{writer:03}:{counter:012}:").into_bytes();
    v.resize(64, b'.');
    v
}

/// The writer and counter of a value.
fn parse(v: &[u8]) -> (u64, u64) {
    let s = std::str::from_utf8(&v[..17]).expect("utf-8 value");
    (
        s[..3].parse().expect("writer"),
        s[4..16].parse().expect("counter"),
    )
}

/// What one task has seen of each writer: the newest counter. A later read
/// that shows an older batch of the same writer went back in time.
#[derive(Default)]
struct Floors(BTreeMap<u64, u64>);

impl Floors {
    fn observe(&mut self, v: &[u8], what: &str) {
        let (w, c) = parse(v);
        let floor = self.0.entry(w).or_insert(0);
        assert!(
            c >= *floor,
            "{what}: saw batch {w}:{c} after having seen {w}:{floor}"
        );
        *floor = c;
    }
}

/// Every entry of a scan holds the same value, and the keys are all of
/// `keys` (or there are none: a deleting batch).
fn whole_batch(entries: &[(Vec<u8>, Vec<u8>)], keys: &[Vec<u8>], what: &str) -> Option<Vec<u8>> {
    if entries.is_empty() {
        return None;
    }
    let got: Vec<&Vec<u8>> = entries.iter().map(|(k, _)| k).collect();
    let want: Vec<&Vec<u8>> = keys.iter().collect();
    assert_eq!(got, want, "{what}: not every key of the batch");
    let first = &entries[0].1;
    for (k, v) in entries {
        assert_eq!(
            parse(v),
            parse(first),
            "{what}: {} holds another batch than {}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(&entries[0].0)
        );
    }
    Some(first.clone())
}

const GROUP: [&str; 3] = ["g0", "g1", "g2"];
/// Keys of the group, spread over its partitions: key `i` in `GROUP[i % 3]`.
const K: usize = 24;
const WRITERS: u64 = 4;
const READERS: u64 = 3;

fn group_key(i: usize) -> (Partition, Vec<u8>) {
    (part(GROUP[i % 3]), format!("key{i:03}").into_bytes())
}

/// The group's keys in partition `p`, in order.
fn keys_of(p: usize) -> Vec<Vec<u8>> {
    (0..K)
        .filter(|i| i % 3 == p)
        .map(|i| group_key(i).1)
        .collect()
}

async fn scan_all(
    backend: &LsmBackend,
    p: &Partition,
) -> kalamdb_store::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    backend.scan(p, None, None).await?.collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_stay_whole_and_reads_never_go_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = LsmBackend::new(dir.path(), options()).expect("open");
    for name in GROUP {
        backend.create_partition(&part(name)).await.expect("create");
    }
    // Writer 0 writes the first batch, before anyone reads.
    let batch = |w: u64, c: u64| -> Vec<Operation> {
        (0..K)
            .map(|i| {
                let (p, k) = group_key(i);
                // Every tenth batch deletes the keys.
                if c % 10 == 9 {
                    Operation::delete(p, k)
                } else {
                    Operation::put(p, k, value(w, c))
                }
            })
            .collect()
    };
    backend.batch(batch(0, 0)).await.expect("first batch");
    let deadline = Instant::now() + seconds();
    let last: Arc<Vec<AtomicU64>> = Arc::new((0..=WRITERS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();

    for w in 1..=WRITERS {
        let (backend, last) = (backend.clone(), last.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = 0;
            let mut floors = Floors::default();
            while Instant::now() < deadline {
                c += 1;
                backend.batch(batch(w, c)).await.expect("batch");
                last[w as usize].store(c, Ordering::Release);
                // Reads its own write (or a later batch).
                let (p, k) = group_key(c as usize % K);
                // (None: this or a later batch deleted the keys.)
                if let Some(v) = backend.get(&p, &k).await.expect("get") {
                    floors.observe(&v, "writer's get");
                    let (w2, c2) = parse(&v);
                    assert!(w2 != w || c2 == c, "writer {w} wrote {c}, read {c2}");
                }
                if c % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            c
        }));
    }

    let scans = Arc::new(AtomicU64::new(0));
    let gets = Arc::new(AtomicU64::new(0));
    for r in 0..READERS {
        let (backend, scans, gets) = (backend.clone(), scans.clone(), gets.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(r);
            let mut floors = Floors::default();
            while Instant::now() < deadline {
                if rng.below(2) == 0 {
                    // Each get separately: each sees a batch at least as new
                    // as everything seen before.
                    for i in 0..K {
                        let (p, k) = group_key(i);
                        if let Some(v) = backend.get(&p, &k).await.expect("get") {
                            floors.observe(&v, "get");
                        }
                        gets.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    for (i, name) in GROUP.iter().enumerate() {
                        let entries = scan_all(&backend, &part(name)).await.expect("scan");
                        if let Some(v) = whole_batch(&entries, &keys_of(i), "scan") {
                            floors.observe(&v, "scan");
                        }
                        scans.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
            0
        }));
    }

    // Iterators held while flushes and compactions run.
    let held_across = Arc::new(AtomicU64::new(0));
    {
        let (backend, held_across) = (backend.clone(), held_across.clone());
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0;
            while Instant::now() < deadline {
                let before = backend.stats();
                let mut iters = Vec::new();
                for name in GROUP {
                    iters.push(backend.scan(&part(name), None, None).await.expect("scan"));
                }
                let mut entries: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); 3];
                loop {
                    let mut any = false;
                    for (it, out) in iters.iter_mut().zip(&mut entries) {
                        if let Some(e) = it.next() {
                            out.push(e.expect("held iterator entry"));
                            any = true;
                        }
                    }
                    if !any {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                let after = backend.stats();
                if after.flushes > before.flushes && after.compactions > before.compactions {
                    held_across.fetch_add(1, Ordering::Relaxed);
                }
                for (i, out) in entries.iter().enumerate() {
                    whole_batch(out, &keys_of(i), "held iterator");
                }
                rounds += 1;
            }
            rounds
        }));
    }

    let results = join_all(tasks, deadline).await;
    let batches: u64 = results[..WRITERS as usize].iter().sum();
    let stats = backend.stats();
    eprintln!(
        "{batches} batches of {K} keys, {} gets, {} partition scans, {} held-iterator rounds \
         ({} across a flush and a compaction); {} flushes, {} compactions, {} trivial moves, \
         {} stalls",
        gets.load(Ordering::Relaxed),
        scans.load(Ordering::Relaxed),
        results[results.len() - 1],
        held_across.load(Ordering::Relaxed),
        stats.flushes,
        stats.compactions,
        stats.trivial_moves,
        stats.stalls
    );
    assert!(
        held_across.load(Ordering::Relaxed) > 0,
        "no iterator was held across a flush and a compaction"
    );

    // The state is the last batch of some writer: the last batch committed.
    let check = |state: Vec<Vec<(Vec<u8>, Vec<u8>)>>| {
        let mut values = Vec::new();
        for (i, entries) in state.iter().enumerate() {
            values.push(whole_batch(entries, &keys_of(i), "final scan").map(|v| parse(&v)));
        }
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "final batches differ: {values:?}"
        );
        if let Some((w, c)) = values[0] {
            assert_eq!(
                c,
                last[w as usize].load(Ordering::Acquire),
                "not writer {w}'s last batch"
            );
        }
        values[0]
    };
    let mut state = Vec::new();
    for name in GROUP {
        state.push(scan_all(&backend, &part(name)).await.expect("scan"));
    }
    let before = check(state);
    drop(backend);
    let backend = LsmBackend::new(dir.path(), options()).expect("reopen");
    let mut state = Vec::new();
    for name in GROUP {
        state.push(scan_all(&backend, &part(name)).await.expect("scan"));
    }
    assert_eq!(check(state), before, "the reopen changed the state");
}

const CHURN_KEYS: usize = 8;

fn churn_keys() -> Vec<Vec<u8>> {
    (0..CHURN_KEYS)
        .map(|i| format!("c{i}").into_bytes())
        .collect()
}

/// `Ok`, or `PartitionNotFound` (counted); anything else fails the test.
fn ok_or_missing<T>(r: kalamdb_store::Result<T>, what: &str, missing: &AtomicU64) -> Option<T> {
    match r {
        Ok(t) => Some(t),
        Err(Error::PartitionNotFound(_)) => {
            missing.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_drop_and_create_race_reads_and_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = LsmBackend::new(dir.path(), options()).expect("open");
    let (churn, stable) = (part("churn"), part("stable"));
    backend.create_partition(&churn).await.expect("create");
    backend.create_partition(&stable).await.expect("create");
    let deadline = Instant::now() + seconds();
    // Writers hold it shared around each batch; half of the re-creates hold
    // it exclusively, to check that the new partition starts empty.
    let gate = Arc::new(RwLock::new(()));
    let missing = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();

    // Drops and re-creates `churn`.
    {
        let (backend, gate, churn, done) =
            (backend.clone(), gate.clone(), churn.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(7);
            let mut cycles = 0;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_micros(rng.below(3000))).await;
                backend.drop_partition(&churn).await.expect("drop");
                assert!(!backend.partition_exists(&churn).await.expect("exists"));
                tokio::time::sleep(Duration::from_micros(rng.below(1000))).await;
                if cycles % 2 == 0 {
                    let _exclusive = gate.write().await;
                    backend.create_partition(&churn).await.expect("create");
                    let entries = scan_all(&backend, &churn).await.expect("scan");
                    assert!(
                        entries.is_empty(),
                        "a re-created partition holds {entries:?}"
                    );
                    for k in churn_keys() {
                        assert_eq!(backend.get(&churn, &k).await.expect("get"), None);
                    }
                } else {
                    backend.create_partition(&churn).await.expect("create");
                }
                cycles += 1;
            }
            done.store(true, Ordering::Release);
            cycles
        }));
    }

    // Writers: batches over every churn key and the writer's stable key.
    let ok_batches = Arc::new(AtomicU64::new(0));
    for w in 1..=3u64 {
        let (backend, gate, churn, stable, missing, ok_batches) = (
            backend.clone(),
            gate.clone(),
            churn.clone(),
            stable.clone(),
            missing.clone(),
            ok_batches.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mine = format!("w{w}").into_bytes();
            let mut acknowledged: Option<Vec<u8>> = None;
            let mut c = 0;
            while Instant::now() < deadline {
                c += 1;
                let v = value(w, c);
                let mut ops: Vec<Operation> = churn_keys()
                    .into_iter()
                    .map(|k| Operation::put(churn.clone(), k, v.clone()))
                    .collect();
                ops.push(Operation::put(stable.clone(), mine.clone(), v.clone()));
                let result = {
                    let _shared = gate.read().await;
                    backend.batch(ops).await
                };
                if ok_or_missing(result, "batch", &missing).is_some() {
                    acknowledged = Some(v);
                    ok_batches.fetch_add(1, Ordering::Relaxed);
                }
                // All or nothing: the stable key shows the last batch that
                // returned Ok.
                assert_eq!(
                    backend.get(&stable, &mine).await.expect("get stable"),
                    acknowledged,
                    "writer {w}, batch {c}"
                );
                if c % 8 == 0 {
                    // A single write racing the drops (of a key no batch
                    // writes, so that scans still see whole batches).
                    let r = backend.delete(&churn, b"single").await;
                    ok_or_missing(r, "delete", &missing);
                    // Whole batches again, for the scans.
                    let r = {
                        let _shared = gate.read().await;
                        backend
                            .batch(
                                churn_keys()
                                    .into_iter()
                                    .map(|k| Operation::delete(churn.clone(), k))
                                    .collect(),
                            )
                            .await
                    };
                    ok_or_missing(r, "delete batch", &missing);
                }
            }
            c
        }));
    }

    // Readers: gets, scans, iterators held across drops.
    let held = Arc::new(AtomicU64::new(0));
    for r in 0..2u64 {
        let (backend, churn, missing, held) = (
            backend.clone(),
            churn.clone(),
            missing.clone(),
            held.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(100 + r);
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                match rng.below(4) {
                    0 => {
                        for k in churn_keys() {
                            let _ = ok_or_missing(backend.get(&churn, &k).await, "get", &missing);
                        }
                    }
                    1 => {
                        if let Some(entries) =
                            ok_or_missing(scan_all(&backend, &churn).await, "scan", &missing)
                        {
                            whole_batch(&entries, &churn_keys(), "churn scan");
                        }
                    }
                    2 => {
                        // Held for a while: across drops and re-creates.
                        let Some(it) =
                            ok_or_missing(backend.scan(&churn, None, None).await, "scan", &missing)
                        else {
                            continue;
                        };
                        let mut entries = Vec::new();
                        for e in it {
                            entries.push(e.expect("held iterator entry"));
                            tokio::time::sleep(Duration::from_micros(500)).await;
                        }
                        whole_batch(&entries, &churn_keys(), "held churn iterator");
                        held.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        let _ =
                            ok_or_missing(backend.partition_size(&churn).await, "size", &missing);
                        let _ = backend.partition_exists(&churn).await.expect("exists");
                        let listed = backend.list_partitions().await.expect("list");
                        assert!(listed.contains(&part("stable")), "{listed:?}");
                    }
                }
                tokio::task::yield_now().await;
            }
            n
        }));
    }

    // Flushes and compactions racing the drops.
    {
        let (backend, churn, missing) = (backend.clone(), churn.clone(), missing.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                if n % 2 == 0 {
                    backend.flush().await.expect("flush");
                } else {
                    let _ = ok_or_missing(backend.compact(&churn).await, "compact", &missing);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        }));
    }

    let results = join_all(tasks, deadline).await;
    assert!(done.load(Ordering::Acquire));
    eprintln!(
        "{} drop/create cycles, {} batches acknowledged, {} PartitionNotFound, {} held iterators; \
         {:?}",
        results[0],
        ok_batches.load(Ordering::Relaxed),
        missing.load(Ordering::Relaxed),
        held.load(Ordering::Relaxed),
        backend.stats().flushes
    );
    assert!(results[0] > 2, "too few drop/create cycles: {}", results[0]);
    assert!(ok_batches.load(Ordering::Relaxed) > 0 && missing.load(Ordering::Relaxed) > 0);

    // The same after a reopen: the stable keys hold the last acknowledged
    // batches, and the partition (if it holds anything) one whole batch.
    let stable_before = scan_all(&backend, &stable).await.expect("scan");
    let churn_before = scan_all(&backend, &churn).await.expect("scan");
    drop(backend);
    let backend = LsmBackend::new(dir.path(), options()).expect("reopen");
    assert_eq!(
        scan_all(&backend, &stable).await.expect("scan"),
        stable_before
    );
    let churn_after = scan_all(&backend, &churn).await.expect("scan");
    assert_eq!(churn_after, churn_before);
    whole_batch(&churn_after, &churn_keys(), "churn after reopen");
}

const ROWS: usize = 300;

fn row(i: usize) -> Vec<u8> {
    format!("row{i:05}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iterators_outlive_the_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Few open tables: most tables the iterators will read are closed (a
    // table open in the old table cache stays readable after its deletion).
    let options = || LsmOptions {
        max_open_files: 2,
        ..options()
    };
    let backend = LsmBackend::new(dir.path(), options()).expect("open");
    let parts: Vec<Partition> = (0..3).map(|i| part(&format!("it{i}"))).collect();
    let all_rows: Vec<Vec<u8>> = (0..ROWS).map(row).collect();
    for p in &parts {
        backend.create_partition(p).await.expect("create");
    }
    let deadline = Instant::now() + seconds() / 4;
    // Writers overwrite every row of a partition per batch.
    let mut writers = Vec::new();
    for (w, p) in parts.iter().enumerate() {
        let (backend, p) = (backend.clone(), p.clone());
        writers.push(tokio::spawn(async move {
            let mut c = 0;
            while c < 3 || Instant::now() < deadline {
                c += 1;
                let ops = (0..ROWS)
                    .map(|i| Operation::put(p.clone(), row(i), value(w as u64, c)))
                    .collect();
                backend.batch(ops).await.expect("batch");
            }
            c
        }));
    }
    // Iterators opened while the writers run, from several start keys, each
    // read a little.
    let mut iters = Vec::new();
    let mut rng = Rng(3);
    while iters.len() < 24 {
        let p = rng.below(3) as usize;
        let start = rng.below(ROWS as u64) as usize;
        let mut it = backend
            .scan(&parts[p], Some(&row(start)), None)
            .await
            .expect("scan");
        let first: Vec<(Vec<u8>, Vec<u8>)> =
            it.by_ref().take(5).map(|e| e.expect("entry")).collect();
        iters.push((p, start, first, it));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    join_all(writers, deadline).await;
    drop(backend);

    // Reopened and compacted: every table the iterators read is deleted.
    let backend = LsmBackend::new(dir.path(), options()).expect("reopen");
    for p in &parts {
        backend
            .put(p, &row(0), &value(9, 9))
            .await
            .expect("put after reopen");
        backend.compact(p).await.expect("compact");
    }
    let finishing: Vec<_> = iters
        .into_iter()
        .map(|(p, start, first, it)| {
            let rows = all_rows[start..].to_vec();
            tokio::task::spawn_blocking(move || {
                let mut entries = first;
                entries.extend(it.map(|e| e.expect("entry after the backend was dropped")));
                whole_batch(
                    &entries,
                    &rows,
                    &format!("iterator on it{p} from row {start}"),
                );
            })
        })
        .collect();
    for f in finishing {
        f.await.expect("iterator task");
    }
    for p in &parts {
        let entries = scan_all(&backend, p).await.expect("scan");
        assert_eq!(entries.len(), ROWS);
        assert_eq!(entries[0].1, value(9, 9));
        whole_batch(&entries[1..], &all_rows[1..], "after reopen");
    }
}
