//! Real `kill -9` crash test of `LsmBackend` (DESIGN.md §5, crash tests).
//!
//! The test binary re-executes itself as the child: the parent runs
//! `current_exe() child_writer --exact --ignored`, and `child_writer` (an
//! ignored test that does nothing unless `KILL9_CHILD_DIR` is set) opens the
//! backend, creates three partitions and writes multi-partition batches
//! forever, printing `ACK <writer> <counter> <sync> <keys>` once each batch
//! returned `Ok`. The parent SIGKILLs it after a random 5–150 ms, reopens the
//! directory and checks the state against a model it builds from the acks:
//!
//! - every acknowledged batch is present, sync or not (an ordinary write is
//!   in the OS page cache before it returns, and a process crash does not
//!   lose the page cache);
//! - every batch is all-or-nothing;
//! - nothing unacknowledged appears beyond the one batch per writer that was
//!   in flight; more precisely, each writer's keys hold exactly the state
//!   after a prefix of that writer's batches: all acknowledged ones, plus
//!   possibly the one in flight.
//!
//! Every batch is a pure function of (round seed, writer, counter), so the
//! parent recomputes the keys and value of any batch, acknowledged or not.
//! Writers own disjoint keys (key index modulo `WRITERS`), so the per-writer
//! prefix rule is exact even though writers share group commits. Rounds reuse
//! one directory: data and WAL files accumulate across crashes.
//!
//! Tiny memtables, WAL files and levels keep flushes and compactions running,
//! so kills land in them; before each reopen the parent reads the manifest
//! and the partition directories to count the rounds killed while a table
//! was being written (a file the manifest does not list yet).
//!
//! `KILL9_ROUNDS` overrides the number of rounds (default 120), `KILL9_SEED`
//! the base seed; each round prints its seed (run with `--nocapture`).
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kalamdb_store::{
    BackendErrorKind, Error, LsmBackend, LsmOptions, Operation, Partition, StorageBackend,
    WriteOptions,
};

/// Rounds (child runs killed) unless `KILL9_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: u64 = 120;
/// Base seed unless `KILL9_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x6b69_6c6c_392d_3031;
/// The partitions every batch spans.
const PARTITIONS: [&str; 3] = ["kill9_a", "kill9_b", "kill9_c"];
/// Keys per partition: a bounded key space, rewritten over and over.
const KEYS_PER_PARTITION: u32 = 200;
/// Concurrent writer tasks in the child; writer `w` owns the keys whose
/// index is `w` modulo `WRITERS`.
const WRITERS: u32 = 2;
/// Keys per batch: `MIN_KEYS..=MAX_KEYS`, at least one in every partition.
const MIN_KEYS: usize = 3;
const MAX_KEYS: usize = 8;
/// One batch in `SYNC_ONE_IN` is a sync write.
const SYNC_ONE_IN: u64 = 4;
/// Values carry `0..MAX_FILLER` filler bytes so records vary in size.
const MAX_FILLER: u64 = 48;
/// Kill delay range, in milliseconds.
const MIN_KILL_MS: u64 = 5;
const MAX_KILL_MS: u64 = 150;
/// How long the parent waits for a child to open the database.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A child exits on its own after this long, should its parent be gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(90);
const SIGKILL: i32 = 9;

const ENV_DIR: &str = "KILL9_CHILD_DIR";
const ENV_ROUND: &str = "KILL9_CHILD_ROUND";
const ENV_SEED: &str = "KILL9_CHILD_SEED";

// ---------------------------------------------------------------------------
// The deterministic workload, shared by child and parent.
// ---------------------------------------------------------------------------

/// splitmix64: small, fast, and the same in both processes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed of a round, from the base seed.
fn round_seed(base: u64, round: u64) -> u64 {
    Rng(base ^ round.wrapping_mul(0xa076_1d64_78bd_642f)).next()
}

/// A key: (partition index, key index).
type Key = (usize, u32);

fn key_bytes(key: Key) -> Vec<u8> {
    format!("k{:03}", key.1).into_bytes()
}

fn key_name(key: Key) -> String {
    format!("{}/k{:03}", key.0, key.1)
}

fn owner(key: Key) -> u32 {
    key.1 % WRITERS
}

fn partition(index: usize) -> Partition {
    Partition::new(PARTITIONS[index]).expect("valid partition name")
}

/// One batch of one writer: the keys it sets, all to the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    keys: BTreeSet<Key>,
    sync: bool,
    filler: usize,
}

impl Plan {
    /// The batch `counter` (1, 2, …) of `writer` in the round with `seed`.
    fn new(seed: u64, writer: u32, counter: u64) -> Plan {
        let mut rng = Rng(seed ^ (u64::from(writer) << 56) ^ counter.wrapping_mul(0x2545_f491));
        let n = MIN_KEYS + rng.below((MAX_KEYS - MIN_KEYS + 1) as u64) as usize;
        let per_writer = u64::from(KEYS_PER_PARTITION / WRITERS);
        let mut keys = BTreeSet::new();
        let mut p = 0;
        while keys.len() < n {
            // The first picks cover every partition; the rest go anywhere.
            let part = if p < PARTITIONS.len() {
                p
            } else {
                rng.below(PARTITIONS.len() as u64) as usize
            };
            p += 1;
            keys.insert((part, writer + WRITERS * rng.below(per_writer) as u32));
        }
        Plan {
            keys,
            sync: rng.below(SYNC_ONE_IN) == 0,
            filler: rng.below(MAX_FILLER) as usize,
        }
    }

    fn value(&self, stamp: Stamp, writer: u32) -> Vec<u8> {
        format!(
            "{}:{}:{}:{}",
            stamp.round,
            writer,
            stamp.counter,
            "x".repeat(self.filler)
        )
        .into_bytes()
    }

    fn key_list(&self) -> String {
        let names: Vec<String> = self.keys.iter().map(|&k| key_name(k)).collect();
        names.join(",")
    }
}

/// Which batch wrote a value: ordered by round, then counter (one writer's
/// batches are totally ordered this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    round: u64,
    counter: u64,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.round, self.counter)
    }
}

// ---------------------------------------------------------------------------
// Child processes.
// ---------------------------------------------------------------------------

/// Options of the writing child: tiny memtables, WAL files and levels, so
/// the kills also land in memtable and WAL rotations, flushes and (leveled,
/// background) compactions, which run all the time. The bounded key space
/// keeps the data, and the WAL limit the log, small: disk use stays flat.
fn child_options() -> LsmOptions {
    LsmOptions {
        memtable_size: 8 << 10,
        write_buffer_size: 64 << 10,
        max_total_wal_size: 128 << 10,
        wal_file_size: 32 << 10,
        l0_compaction_trigger: 2,
        level_base_size: 32 << 10,
        level_size_multiplier: 4,
        target_file_size: 16 << 10,
        ..LsmOptions::default()
    }
}

/// What the files in the directory say about the moment of the kill (read
/// before the reopen, which deletes what the manifest does not list).
#[derive(Debug, Default, Clone, Copy)]
struct AtKill {
    /// A table file numbered at or beyond the manifest's next file number:
    /// a flush or compaction was writing it.
    table_in_progress: bool,
    /// A table file below it that the manifest no longer lists: a
    /// compaction had just installed its outputs and not yet deleted its
    /// inputs (or a failed write was being cleaned up).
    compacted_inputs_left: bool,
    /// Table files listed by the manifest, and on disk in all.
    listed: usize,
    on_disk: usize,
}

/// Reads the manifest (read-only: `CURRENT`, then the live manifest file,
/// replayed) and the partition directories.
fn at_kill(dir: &Path) -> AtKill {
    use kalamdb_lsm::manifest::{ManifestState, VersionEdit};
    let mut state = ManifestState::default();
    let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap_or_default();
    let Ok(data) = std::fs::read(dir.join(current.trim())) else {
        return AtKill::default();
    };
    // A torn tail is fine here; the reopen checks the manifest properly.
    let _ = kalamdb_lsm::wal::reader::read_log(&data, |_, payload| {
        state.apply(&VersionEdit::decode(payload)?)
    });
    let listed: BTreeSet<(u64, u64)> = state
        .partitions
        .iter()
        .flat_map(|(&id, p)| p.tables.iter().map(move |t| (id, t.file)))
        .collect();
    let mut out = AtKill {
        listed: listed.len(),
        ..AtKill::default()
    };
    for &id in state.partitions.keys() {
        let Ok(entries) = std::fs::read_dir(dir.join(id.to_string())) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(file) = name
                .to_str()
                .and_then(kalamdb_lsm::table_file::parse_table_file_name)
            else {
                continue;
            };
            out.on_disk += 1;
            if listed.contains(&(id, file)) {
                continue;
            }
            if file >= state.next_file_number {
                out.table_in_progress = true;
            } else {
                out.compacted_inputs_left = true;
            }
        }
    }
    out
}

/// Writes one line to stdout (the parent's pipe) with one `write`: a line
/// shorter than `PIPE_BUF` reaches the pipe whole or not at all. Exits if the
/// parent is gone.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let line = format!("{line}\n");
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(2);
    }
}

fn env_u64(name: &str) -> u64 {
    let raw = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    raw.parse()
        .unwrap_or_else(|e| panic!("{name}={raw:?} is not a number: {e}"))
}

/// The child of `acknowledged_writes_survive_kill_9`; does nothing unless
/// `KILL9_CHILD_DIR` is set.
#[test]
#[ignore = "child process of acknowledged_writes_survive_kill_9"]
fn child_writer() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let round = env_u64(ENV_ROUND);
    let seed = env_u64(ENV_SEED);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child: build a tokio runtime");
    runtime.block_on(async move {
        let backend = LsmBackend::new(&dir, child_options()).expect("child: open the backend");
        for index in 0..PARTITIONS.len() {
            backend
                .create_partition(&partition(index))
                .await
                .expect("child: create a partition");
        }
        say("READY");
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(write_forever(backend.clone(), round, seed, w)))
            .collect();
        for w in writers {
            w.await.expect("child: a writer task panicked");
        }
    });
}

async fn write_forever(backend: LsmBackend, round: u64, seed: u64, writer: u32) {
    let deadline = Instant::now() + CHILD_LIFETIME;
    for counter in 1.. {
        if Instant::now() > deadline {
            std::process::exit(3);
        }
        let plan = Plan::new(seed, writer, counter);
        let value = plan.value(Stamp { round, counter }, writer);
        let ops = plan
            .keys
            .iter()
            .map(|&k| Operation::put(partition(k.0), key_bytes(k), value.clone()))
            .collect();
        backend
            .batch_with(ops, WriteOptions { sync: plan.sync })
            .await
            .unwrap_or_else(|e| panic!("child: batch {writer}:{counter} failed: {e}"));
        say(&format!(
            "ACK {writer} {counter} {} {}",
            u8::from(plan.sync),
            plan.key_list()
        ));
    }
}

/// The child of `a_second_process_is_locked_out`: opens the backend, writes
/// two keys (one synced, one not), says `READY` and waits to be killed.
#[test]
#[ignore = "child process of a_second_process_is_locked_out"]
fn child_holder() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("child: build a tokio runtime");
    runtime.block_on(async move {
        let backend = LsmBackend::new(&dir, LsmOptions::default()).expect("child: open");
        let p = partition(0);
        backend.create_partition(&p).await.expect("child: create");
        let sync = WriteOptions { sync: true };
        backend
            .put_with(&p, b"synced", b"1", sync)
            .await
            .expect("child: put");
        backend
            .put(&p, b"unsynced", b"2")
            .await
            .expect("child: put");
        say("READY");
        tokio::time::sleep(CHILD_LIFETIME).await;
        drop(backend);
        std::process::exit(3);
    });
}

/// A running child; killed (SIGKILL) and reaped when dropped, so a failing
/// parent leaves no process behind.
struct ChildProcess {
    child: Child,
    lines: Option<JoinHandle<Vec<String>>>,
    ready: mpsc::Receiver<()>,
}

impl ChildProcess {
    /// Runs the ignored test `name` of this binary as a child process.
    fn spawn(name: &str, dir: &Path, env: &[(&str, String)]) -> ChildProcess {
        let exe = std::env::current_exe().expect("the test binary's path");
        let args: [OsString; 6] = [
            name.into(),
            "--exact".into(),
            "--ignored".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
            "--quiet".into(),
        ];
        let mut command = Command::new(exe);
        command
            .args(args)
            .env(ENV_DIR, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn the child process");
        let stdout = child.stdout.take().expect("the child's stdout");
        let (ready_tx, ready) = mpsc::channel();
        let lines = Some(thread::spawn(move || read_lines(stdout, ready_tx)));
        ChildProcess {
            child,
            lines,
            ready,
        }
    }

    /// Waits until the child printed `READY`; `false` on timeout or if the
    /// child ended first.
    fn wait_ready(&self, timeout: Duration) -> bool {
        self.ready.recv_timeout(timeout).is_ok()
    }

    /// SIGKILLs the child, reaps it, and returns its exit status and every
    /// complete line it printed.
    fn kill(mut self) -> (ExitStatus, Vec<String>) {
        self.child.kill().expect("kill the child");
        let status = self.child.wait().expect("reap the child");
        let lines = self
            .lines
            .take()
            .map(|t| t.join().expect("the pipe reader panicked"))
            .unwrap_or_default();
        (status, lines)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects the child's complete lines until EOF; a last line without its
/// newline (a write cut by the kill) is dropped: it acknowledges nothing.
fn read_lines(stdout: ChildStdout, ready: mpsc::Sender<()>) -> Vec<String> {
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if buf.pop() != Some(b'\n') {
                    break;
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if line == "READY" {
                    let _ = ready.send(());
                }
                lines.push(line);
            }
        }
    }
    lines
}

fn assert_killed(status: ExitStatus, what: &str) {
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "{what}: the child ended on its own ({status}) instead of being killed; see its stderr above"
    );
}

// ---------------------------------------------------------------------------
// The parent's oracle.
// ---------------------------------------------------------------------------

/// Everything the parent knows across rounds.
struct Oracle {
    /// Round seeds, indexed by round (index 0 unused).
    seeds: Vec<u64>,
    /// The state found after the previous round: key → batch.
    state: BTreeMap<Key, Stamp>,
    /// Partitions seen so far: they must never disappear.
    partitions_seen: BTreeSet<String>,
}

/// What one round's child acknowledged.
#[derive(Debug, Default)]
struct Acks {
    /// Per writer: the last acknowledged counter (0: none).
    last: Vec<u64>,
    batches: u64,
    sync: u64,
}

impl Acks {
    /// Parses and checks the ack lines of the round with `seed`: per writer
    /// the counters run 1, 2, … and the keys and sync flag match the plan.
    fn parse(lines: &[String], seed: u64) -> Acks {
        let mut acks = Acks {
            last: vec![0; WRITERS as usize],
            ..Acks::default()
        };
        for line in lines.iter().filter(|l| l.starts_with("ACK ")) {
            let fields: Vec<&str> = line.split(' ').collect();
            let [_, writer, counter, sync, keys] = fields[..] else {
                panic!("malformed ack line {line:?}");
            };
            let writer: u32 = writer.parse().expect("ack writer");
            let counter: u64 = counter.parse().expect("ack counter");
            let last = &mut acks.last[writer as usize];
            assert_eq!(counter, *last + 1, "acks out of order: {line:?}");
            *last = counter;
            let plan = Plan::new(seed, writer, counter);
            assert_eq!(
                (sync, keys),
                (if plan.sync { "1" } else { "0" }, plan.key_list().as_str()),
                "the child's batch differs from the parent's plan: {line:?}"
            );
            acks.batches += 1;
            acks.sync += u64::from(plan.sync);
        }
        acks
    }
}

impl Oracle {
    fn plan(&self, stamp: Stamp, writer: u32) -> Plan {
        Plan::new(self.seeds[stamp.round as usize], writer, stamp.counter)
    }

    /// Reads every partition; checks that names and values are well formed
    /// (each value is the value of a batch that wrote this key).
    fn read_state(
        &mut self,
        backend: &LsmBackend,
        runtime: &tokio::runtime::Runtime,
        round: u64,
        errors: &mut Vec<String>,
    ) -> BTreeMap<Key, Stamp> {
        let mut state = BTreeMap::new();
        let listed: BTreeSet<String> = runtime
            .block_on(backend.list_partitions())
            .expect("list partitions")
            .into_iter()
            .map(|p| p.name().to_string())
            .collect();
        for name in &listed {
            if !PARTITIONS.contains(&name.as_str()) {
                errors.push(format!("unexpected partition {name:?}"));
            }
        }
        for name in &self.partitions_seen {
            if !listed.contains(name) {
                errors.push(format!("partition {name} disappeared"));
            }
        }
        self.partitions_seen.extend(listed.iter().cloned());
        for (index, name) in PARTITIONS.iter().enumerate() {
            if !listed.contains(*name) {
                continue;
            }
            let scan = runtime
                .block_on(backend.scan(&partition(index), None, None))
                .expect("scan a partition");
            for item in scan {
                let (k, v) = item.expect("scan item");
                match self.decode(index, &k, &v, round) {
                    Ok((key, stamp)) => {
                        state.insert(key, stamp);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        state
    }

    fn decode(&self, index: usize, k: &[u8], v: &[u8], round: u64) -> Result<(Key, Stamp), String> {
        let shown = || {
            format!(
                "{}/{:?} = {:?}",
                index,
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        };
        let key_index = std::str::from_utf8(k)
            .ok()
            .and_then(|s| s.strip_prefix('k'))
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&i| i < KEYS_PER_PARTITION && k.len() == 4)
            .ok_or_else(|| format!("unexpected key {}", shown()))?;
        let key = (index, key_index);
        let text = std::str::from_utf8(v).map_err(|_| format!("non-UTF-8 value {}", shown()))?;
        let fields: Vec<&str> = text.splitn(4, ':').collect();
        let [r, w, c, _] = fields[..] else {
            return Err(format!("malformed value {}", shown()));
        };
        let (Ok(r), Ok(w), Ok(c)) = (r.parse::<u64>(), w.parse::<u32>(), c.parse::<u64>()) else {
            return Err(format!("malformed value {}", shown()));
        };
        if r == 0 || r > round || c == 0 || w != owner(key) {
            return Err(format!("impossible value {}", shown()));
        }
        let stamp = Stamp {
            round: r,
            counter: c,
        };
        let plan = self.plan(stamp, w);
        if !plan.keys.contains(&key) || plan.value(stamp, w) != v {
            return Err(format!(
                "value {} was never written to this key (batch {stamp} of writer {w} sets {})",
                shown(),
                plan.key_list()
            ));
        }
        Ok((key, stamp))
    }

    /// The state of `writer`'s keys after the previous rounds plus batches
    /// `1..=upto` of `round`.
    fn expected(&self, round: u64, writer: u32, upto: u64) -> BTreeMap<Key, Stamp> {
        let mut state: BTreeMap<Key, Stamp> = self
            .state
            .iter()
            .filter(|(&k, _)| owner(k) == writer)
            .map(|(&k, &s)| (k, s))
            .collect();
        for counter in 1..=upto {
            let stamp = Stamp { round, counter };
            for key in self.plan(stamp, writer).keys {
                state.insert(key, stamp);
            }
        }
        state
    }

    /// Checks the state found after `round` against the acks. Returns how
    /// many unacknowledged (in-flight) batches landed.
    fn check(
        &mut self,
        round: u64,
        acks: &Acks,
        found: BTreeMap<Key, Stamp>,
        errors: &mut Vec<String>,
    ) -> u64 {
        let mut landed = 0;
        for writer in 0..WRITERS {
            let acked = acks.last[writer as usize];
            let mine: BTreeMap<Key, Stamp> = found
                .iter()
                .filter(|(&k, _)| owner(k) == writer)
                .map(|(&k, &s)| (k, s))
                .collect();
            let expected = self.expected(round, writer, acked);
            if mine == expected {
                continue;
            }
            if mine == self.expected(round, writer, acked + 1) {
                landed += 1;
                continue;
            }
            self.explain(round, writer, acked, &expected, &mine, errors);
        }
        self.state = found;
        landed
    }

    /// Says why `found` is no allowed prefix of `writer`'s history.
    fn explain(
        &self,
        round: u64,
        writer: u32,
        acked: u64,
        expected: &BTreeMap<Key, Stamp>,
        found: &BTreeMap<Key, Stamp>,
        errors: &mut Vec<String>,
    ) {
        let before = errors.len();
        // 1. Every acknowledged batch is present.
        for (&key, &want) in expected {
            let got = found.get(&key);
            if got.is_none_or(|&g| g < want) {
                let sync = if want.round == round {
                    if self.plan(want, writer).sync {
                        " (a sync write)"
                    } else {
                        " (a non-sync write)"
                    }
                } else {
                    " (found after an earlier round)"
                };
                errors.push(format!(
                    "lost acknowledged write: key {} should hold batch {want} or newer{sync}, found {}",
                    key_name(key),
                    got.map_or("nothing".to_string(), Stamp::to_string)
                ));
            }
        }
        // 2. Batches are atomic; 3. nothing beyond the batch in flight.
        let stamps: BTreeSet<Stamp> = found.values().copied().collect();
        for stamp in stamps {
            if stamp.round == round && stamp.counter > acked + 1 {
                errors.push(format!(
                    "batch {stamp} of writer {writer} is present, but only {acked} were acknowledged and one was in flight"
                ));
            }
            let plan = self.plan(stamp, writer);
            let torn: Vec<String> = plan
                .keys
                .iter()
                .filter(|k| found.get(k).is_none_or(|&g| g < stamp))
                .map(|&k| key_name(k))
                .collect();
            if !torn.is_empty() {
                errors.push(format!(
                    "torn batch {stamp} of writer {writer}: it set {}, but {} hold older values or nothing",
                    plan.key_list(),
                    torn.join(",")
                ));
            }
        }
        if errors.len() == before {
            let diff: Vec<String> = expected
                .keys()
                .chain(found.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| expected.get(k) != found.get(k))
                .take(10)
                .map(|&k| {
                    format!(
                        "{}: expected {:?}, found {:?}",
                        key_name(k),
                        expected.get(&k),
                        found.get(&k)
                    )
                })
                .collect();
            errors.push(format!(
                "writer {writer}: the state is no prefix of its batches (acked {acked}): {}",
                diff.join("; ")
            ));
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(raw) => {
            let raw = raw.trim();
            let parsed = match raw.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => raw.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={raw:?}: {e}"))
        }
        Err(_) => default,
    }
}

/// ≥ 100 rounds of: run the writing child, SIGKILL it at a random moment,
/// reopen, check every acknowledged batch is there and every batch whole.
#[test]
fn acknowledged_writes_survive_kill_9() {
    let rounds = env_or("KILL9_ROUNDS", DEFAULT_ROUNDS);
    let base_seed = env_or("KILL9_SEED", DEFAULT_SEED);
    let dir = kalamdb_store::testing::temp_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    let mut oracle = Oracle {
        seeds: vec![0],
        state: BTreeMap::new(),
        partitions_seen: BTreeSet::new(),
    };
    let (mut total, mut total_sync, mut total_landed) = (0u64, 0u64, 0u64);
    let (mut in_progress, mut inputs_left, mut max_tables) = (0u64, 0u64, 0usize);
    let started = Instant::now();
    eprintln!(
        "kill9: {rounds} rounds in {}, base seed {base_seed:#x}",
        dir.path().display()
    );
    for round in 1..=rounds {
        let seed = round_seed(base_seed, round);
        oracle.seeds.push(seed);
        let mut rng = Rng(seed ^ 0x6b69_6c6c);
        let delay = Duration::from_millis(MIN_KILL_MS + rng.below(MAX_KILL_MS - MIN_KILL_MS + 1));
        // Most rounds count from READY (the child is writing); one in four
        // counts from the spawn, so kills also land in open and recovery.
        let from_spawn = round > 1 && rng.below(4) == 0;
        let repro = format!(
            "round {round} (seed {seed:#x}; the same workload again, with other kill timings: KILL9_SEED={base_seed:#x} KILL9_ROUNDS={round})"
        );

        let child = ChildProcess::spawn(
            "child_writer",
            dir.path(),
            &[(ENV_ROUND, round.to_string()), (ENV_SEED, seed.to_string())],
        );
        let spawned = Instant::now();
        if !from_spawn {
            assert!(
                child.wait_ready(READY_TIMEOUT),
                "{repro}: the child did not open the database (see its stderr above)"
            );
        }
        let startup = spawned.elapsed();
        thread::sleep(delay);
        let (status, lines) = child.kill();
        assert_killed(status, &repro);
        let acks = Acks::parse(&lines, seed);
        let files = at_kill(dir.path());
        in_progress += u64::from(files.table_in_progress);
        inputs_left += u64::from(files.compacted_inputs_left);
        max_tables = max_tables.max(files.on_disk);

        let reopening = Instant::now();
        let backend = LsmBackend::new(dir.path(), LsmOptions::default())
            .unwrap_or_else(|e| panic!("{repro}: reopening after kill -9 failed: {e}"));
        let reopen = reopening.elapsed();
        let mut errors = Vec::new();
        let found = oracle.read_state(&backend, &runtime, round, &mut errors);
        if acks.batches > 0 && oracle.partitions_seen.len() < PARTITIONS.len() {
            errors.push("a partition created before the first ack is missing".into());
        }
        let landed = oracle.check(round, &acks, found, &mut errors);
        drop(backend);
        eprintln!(
            "kill9: round {round:2} seed {seed:#018x}: killed {:3} ms after {}{}{}, acked {:5} batches ({:4} sync), {landed} unacknowledged landed; {} of {} tables listed; child ready in {:.0?}, reopen {:.0?}",
            delay.as_millis(),
            if from_spawn { "spawn" } else { "READY" },
            if files.table_in_progress { ", writing a table" } else { "" },
            if files.compacted_inputs_left { ", compacted inputs left" } else { "" },
            acks.batches,
            acks.sync,
            files.listed,
            files.on_disk,
            startup,
            reopen,
        );
        assert!(
            errors.is_empty(),
            "{repro}: {} violation(s) after kill -9 (acked per writer: {:?}):\n{}",
            errors.len(),
            acks.last,
            errors
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        total += acks.batches;
        total_sync += acks.sync;
        total_landed += landed;
    }
    eprintln!(
        "kill9: {rounds} rounds, {total} acknowledged batches ({total_sync} sync), {total_landed} unacknowledged batches landed, {} keys live; killed while a flush or compaction wrote a table in {in_progress} rounds, with compacted inputs not yet deleted in {inputs_left}; at most {max_tables} table files; {:.1?}",
        oracle.state.len(),
        started.elapsed()
    );
    // The tiny memtables and levels make flushes and compactions run all
    // the time: some kills must land in them.
    assert!(
        rounds < 50 || in_progress > 0,
        "no kill landed while a table was being written in {rounds} rounds"
    );
    assert!(
        total > 0,
        "no child acknowledged any batch: nothing was tested"
    );
    assert!(
        total_sync > 0 || total < 50,
        "no sync batch was acknowledged out of {total}"
    );
}

/// A second process cannot open a directory that is open; once the holder
/// is killed, the directory opens and holds what the holder wrote.
#[test]
fn a_second_process_is_locked_out() {
    let dir = kalamdb_store::testing::temp_dir();
    let child = ChildProcess::spawn("child_holder", dir.path(), &[]);
    assert!(
        child.wait_ready(READY_TIMEOUT),
        "the child did not open the database (see its stderr above)"
    );
    match LsmBackend::new(dir.path(), LsmOptions::default()) {
        Ok(_) => panic!("a second process opened a directory that is open"),
        Err(e) => {
            assert!(
                matches!(&e, Error::Backend(m) if m.starts_with("locked:")),
                "expected a locked: error, got {e:?}"
            );
            assert_eq!(e.backend_kind(), Some(BackendErrorKind::Locked));
        }
    }
    let (status, _) = child.kill();
    assert_killed(status, "lock holder");
    let backend = LsmBackend::new(dir.path(), LsmOptions::default())
        .expect("the directory opens once its holder is dead");
    let p = partition(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio runtime");
    let get = |key: &[u8]| runtime.block_on(backend.get(&p, key)).expect("get");
    assert_eq!(get(b"synced"), Some(b"1".to_vec()));
    assert_eq!(get(b"unsynced"), Some(b"2".to_vec()));
}
