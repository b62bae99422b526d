//! A sync write blocked in `fdatasync` does not stop other tasks on a
//! single-threaded tokio runtime, and sync writes issued meanwhile share the
//! next `fdatasync` (group commit).
//!
//! Deterministic: the simulated file system holds every file sync until the
//! test releases it ([`SimFs::pause_syncs`]); the test waits for conditions
//! (a sync blocked, writes in the WAL), never for time. A watchdog thread
//! releases the syncs if the test makes no progress for [`WATCHDOG`]: if the
//! engine ran the `fdatasync` on the caller's (the runtime's only) thread, the
//! test would otherwise hang; with the watchdog it fails its assertions.

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use kalamdb_lsm::fs::SimFs;
use kalamdb_store::{LsmBackend, LsmOptions, Partition, StorageBackend, WriteOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bounds every wait of a broken run; never reached by a passing one.
const WAIT: Duration = Duration::from_secs(30);
/// Releases the syncs when the test thread sends no command for this long.
const WATCHDOG: Duration = Duration::from_secs(30);

enum Cmd {
    WaitBlocked(usize, oneshot::Sender<bool>),
    Release,
}

/// A [`SyncGate`](kalamdb_lsm::fs::sim::SyncGate) owned by a thread of its
/// own, so that waiting for a blocked sync never blocks the runtime, and so
/// that a runtime thread stuck in a sync is eventually freed (the watchdog).
struct Gate {
    cmds: mpsc::Sender<Cmd>,
    thread: thread::JoinHandle<bool>,
}

impl Gate {
    /// Pauses every file sync of `sim` from now on.
    fn pause(sim: &SimFs) -> Gate {
        let gate = sim.pause_syncs();
        let (cmds, rx) = mpsc::channel();
        let thread = thread::spawn(move || loop {
            match rx.recv_timeout(WATCHDOG) {
                Ok(Cmd::WaitBlocked(n, reply)) => {
                    let _ = reply.send(gate.wait_for_blocked(n, WAIT));
                }
                Ok(Cmd::Release) => {
                    gate.release();
                    return true;
                }
                Err(_) => {
                    eprintln!("watchdog: no progress for {WATCHDOG:?}; releasing the syncs");
                    gate.release();
                    return false;
                }
            }
        });
        Gate { cmds, thread }
    }

    /// Waits, without blocking the runtime, until `n` syncs are blocked.
    async fn wait_blocked(&self, n: usize) -> bool {
        let (reply, answer) = oneshot::channel();
        self.cmds
            .send(Cmd::WaitBlocked(n, reply))
            .expect("gate thread");
        answer.await.expect("gate thread")
    }

    /// Lets the syncs through; `false` if the watchdog had to do it.
    fn release(self) -> bool {
        let _ = self.cmds.send(Cmd::Release);
        self.thread.join().expect("gate thread")
    }
}

/// Polls `cond`, yielding to the other tasks of the runtime in between.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn backend(sim: &SimFs) -> LsmBackend {
    LsmBackend::new(
        "/db",
        LsmOptions {
            fs: Arc::new(sim.clone()),
            ..Default::default()
        },
    )
    .expect("open")
}

fn sync_put(
    backend: &LsmBackend,
    partition: &Partition,
    key: &'static [u8],
    value: &'static [u8],
) -> JoinHandle<kalamdb_store::Result<()>> {
    let (b, p) = (backend.clone(), partition.clone());
    tokio::spawn(async move {
        b.put_with(&p, key, value, WriteOptions { sync: true })
            .await
    })
}

async fn scan_all(backend: &LsmBackend, partition: &Partition) -> Vec<(Vec<u8>, Vec<u8>)> {
    backend
        .scan(partition, None, None)
        .await
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("scan item")
}

#[test]
fn sync_write_blocked_in_fdatasync_does_not_stop_other_tasks() {
    runtime().block_on(async {
        let sim = SimFs::new();
        let backend = backend(&sim);
        let hot = Partition::new("hot").unwrap();
        let other = Partition::new("other").unwrap();
        backend.create_partition(&hot).await.unwrap();
        backend.create_partition(&other).await.unwrap();
        backend.put(&hot, b"old", b"1").await.unwrap();
        backend.put(&other, b"old", b"1").await.unwrap();
        let syncs_before = sim.sync_counts().sync_data;
        let wal_syncs_before = backend.stats().wal_syncs;
        let writes_before = backend.stats().writes;

        let gate = Gate::pause(&sim);
        let sync_write = sync_put(&backend, &hot, b"durable", b"yes");
        assert!(
            gate.wait_blocked(1).await,
            "the sync write never reached fdatasync"
        );

        // The engine's committer thread is inside fdatasync; this runtime's
        // only thread is free. Other tasks run to completion on it.
        assert!(!sync_write.is_finished(), "acknowledged before its fsync");
        let (b, p) = (backend.clone(), other.clone());
        let reader = tokio::spawn(async move {
            let got = b.get(&p, b"old").await.unwrap();
            let listed = b.list_partitions().await.unwrap().len();
            (got, listed, scan_all(&b, &p).await)
        });
        let (got, listed, scanned) = reader.await.unwrap();
        assert_eq!(got, Some(b"1".to_vec()));
        assert_eq!(listed, 2);
        assert_eq!(scanned, vec![(b"old".to_vec(), b"1".to_vec())]);
        let spinner = tokio::spawn(async {
            for _ in 0..1000 {
                tokio::task::yield_now().await;
            }
            1000
        });
        assert_eq!(spinner.await.unwrap(), 1000);
        tokio::time::timeout(WAIT, tokio::time::sleep(Duration::from_millis(1)))
            .await
            .expect("timers fire while the sync is blocked");

        // A non-sync write to another partition is accepted without blocking
        // this thread: it reaches the WAL (handed to the OS) at once. It is
        // ordered after the unsynced write and visibility follows sequence
        // order, so it is acknowledged and visible together with it.
        let (b, p) = (backend.clone(), other.clone());
        let plain_write = tokio::spawn(async move { b.put(&p, b"fresh", b"2").await });
        wait_until("the non-sync write to reach the WAL", || {
            backend.stats().writes == writes_before + 2
        })
        .await;

        // Reads still answer, with the state before the blocked write.
        assert_eq!(
            backend.get(&hot, b"old").await.unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            backend.get(&hot, b"durable").await.unwrap(),
            None,
            "a sync write is visible before it is durable"
        );
        assert_eq!(
            scan_all(&backend, &hot).await,
            vec![(b"old".to_vec(), b"1".to_vec())]
        );
        assert_eq!(backend.get(&other, b"fresh").await.unwrap(), None);
        // Still exactly one fsync, in flight, and the sync write pending.
        assert_eq!(sim.sync_counts().sync_data, syncs_before + 1);
        assert_eq!(backend.stats().wal_syncs, wal_syncs_before);
        assert!(!sync_write.is_finished(), "acknowledged before its fsync");
        assert!(!plain_write.is_finished());

        assert!(
            gate.release(),
            "the watchdog had to release the sync: the runtime's thread was blocked"
        );
        tokio::time::timeout(WAIT, sync_write)
            .await
            .expect("the sync write completes once the fsync returns")
            .unwrap()
            .unwrap();
        plain_write.await.unwrap().unwrap();
        assert_eq!(
            backend.get(&hot, b"durable").await.unwrap(),
            Some(b"yes".to_vec())
        );
        assert_eq!(
            backend.get(&other, b"fresh").await.unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(backend.stats().wal_syncs, wal_syncs_before + 1);
    });
}

#[test]
fn sync_writes_issued_during_a_blocked_fdatasync_share_the_next_one() {
    const WRITERS: usize = 10;
    const KEYS: [&[u8]; WRITERS] = [
        b"w0", b"w1", b"w2", b"w3", b"w4", b"w5", b"w6", b"w7", b"w8", b"w9",
    ];
    runtime().block_on(async {
        let sim = SimFs::new();
        let backend = backend(&sim);
        let p = Partition::new("p").unwrap();
        backend.create_partition(&p).await.unwrap();
        let syncs_before = sim.sync_counts().sync_data;
        let wal_syncs_before = backend.stats().wal_syncs;
        let writes_before = backend.stats().writes;

        let gate = Gate::pause(&sim);
        let first = sync_put(&backend, &p, b"first", b"1");
        assert!(gate.wait_blocked(1).await, "the first sync never started");
        let writers: Vec<_> = KEYS
            .iter()
            .map(|k| sync_put(&backend, &p, k, b"v"))
            .collect();
        wait_until("every sync writer to reach the WAL", || {
            backend.stats().writes == writes_before + 1 + WRITERS as u64
        })
        .await;
        // Eleven sync writes in the WAL; one fdatasync begun, none finished,
        // nothing acknowledged, nothing visible.
        assert_eq!(sim.sync_counts().sync_data, syncs_before + 1);
        assert_eq!(backend.stats().wal_syncs, wal_syncs_before);
        assert!(!first.is_finished());
        assert!(writers.iter().all(|w| !w.is_finished()));
        assert_eq!(scan_all(&backend, &p).await, vec![]);

        assert!(gate.release(), "the watchdog had to release the sync");
        first.await.unwrap().unwrap();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let fsyncs = sim.sync_counts().sync_data - syncs_before;
        let wal_syncs = backend.stats().wal_syncs - wal_syncs_before;
        println!(
            "{} sync writes: {fsyncs} fdatasyncs ({wal_syncs} counted by the engine)",
            1 + WRITERS
        );
        // The first write's own fsync, then at most two for all ten (without
        // group commit: eleven).
        assert!(
            fsyncs <= 3,
            "{fsyncs} fdatasyncs for {} writes",
            1 + WRITERS
        );
        assert!(wal_syncs <= 3, "{wal_syncs} WAL syncs");
        let all = scan_all(&backend, &p).await;
        assert_eq!(all.len(), 1 + WRITERS);
    });
}
