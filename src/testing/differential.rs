//! Differential testing: the same random operation sequence applied to two
//! backends, every result compared.
//!
//! Results compare exactly, errors by [`ErrorClass`] (variant, partition name
//! and `Error::Backend` prefix — never the free text). After the sequence,
//! every partition of both backends is scanned in full and compared.
//!
//! ```ignore
//! use kalamdb_store::testing::{differential, run, MemoryHarness, RocksDbHarness};
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #[test]
//!     fn memory_vs_rocksdb(ops in differential::ops(200)) {
//!         let outcome = run(differential::compare(MemoryHarness::new(), RocksDbHarness::new(), &ops));
//!         prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
//!     }
//! }
//! ```

use proptest::prelude::*;

use crate::limits::MAX_KEY_LEN;
use crate::testing::Harness;
use crate::{Error, KvPair, Operation, Partition, Result, StorageBackend};

/// The partition names the generated operations use: few, so operations
/// collide, and including the names that need care (`default`, `sys_*`).
pub const PARTITIONS: [&str; 4] = ["p0", "p1", "default", "sys_x"];

/// One generated operation. Partitions are indices into [`PARTITIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `create_partition`.
    Create(usize),
    /// `drop_partition`.
    Drop(usize),
    /// `partition_exists`.
    Exists(usize),
    /// `list_partitions`.
    List,
    /// `put`.
    Put(usize, Vec<u8>, Vec<u8>),
    /// `delete`.
    Delete(usize, Vec<u8>),
    /// `get`.
    Get(usize, Vec<u8>),
    /// `put` with a key one byte over the limit (must fail with `limit:`).
    PutOversizeKey(usize),
    /// `batch`: (partition, key, `Some(value)` for put / `None` for delete).
    Batch(Vec<(usize, Vec<u8>, Option<Vec<u8>>)>),
    /// `scan(start, end)`, reading at most `limit` items.
    Scan {
        /// Partition index.
        partition: usize,
        /// Inclusive start.
        start: Option<Vec<u8>>,
        /// Exclusive end.
        end: Option<Vec<u8>>,
        /// Items read before the iterator is dropped.
        limit: usize,
    },
    /// `compact`.
    Compact(usize),
    /// Drop the backend and open it again (durable backends only; a
    /// non-durable backend keeps its instance).
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xffu8)],
        0..4,
    )
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..12),
        1 => prop::collection::vec(any::<u8>(), 100..400),
    ]
}

fn partition() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize), 1 => Just(3usize)]
}

/// Strategy for one operation, weighted towards writes and reads.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => partition().prop_map(Op::Create),
        1 => partition().prop_map(Op::Drop),
        1 => partition().prop_map(Op::Exists),
        1 => Just(Op::List),
        12 => (partition(), key(), value()).prop_map(|(p, k, v)| Op::Put(p, k, v)),
        4 => (partition(), key()).prop_map(|(p, k)| Op::Delete(p, k)),
        6 => (partition(), key()).prop_map(|(p, k)| Op::Get(p, k)),
        1 => partition().prop_map(Op::PutOversizeKey),
        4 => prop::collection::vec((partition(), key(), prop::option::weighted(0.75, value())), 0..8)
            .prop_map(Op::Batch),
        4 => (partition(), prop::option::of(key()), prop::option::of(key()), 0usize..20)
            .prop_map(|(partition, start, end, limit)| Op::Scan { partition, start, end, limit }),
        1 => partition().prop_map(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Strategy for a sequence of exactly `len` operations.
pub fn ops(len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), len)
}

/// How errors compare across backends: the variant, the partition name for
/// partition errors, the prefix for `Error::Backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// [`Error::Io`].
    Io,
    /// [`Error::PartitionNotFound`] with its name.
    PartitionNotFound(String),
    /// [`Error::Backend`] with its prefix (`"limit"`, `"corruption"`, …), or
    /// `"?"` for an unknown prefix.
    Backend(String),
    /// Any other variant, by name.
    Other(&'static str),
}

impl ErrorClass {
    /// Classifies an error.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::Io(_) => ErrorClass::Io,
            Error::PartitionNotFound(name) => ErrorClass::PartitionNotFound(name.clone()),
            Error::Backend(_) => {
                ErrorClass::Backend(error.backend_kind().map_or("?".to_string(), |k| {
                    k.prefix().trim_end_matches(": ").to_string()
                }))
            }
            Error::PartitionAlreadyExists(_) => ErrorClass::Other("PartitionAlreadyExists"),
            Error::InvalidPartitionName(_) => ErrorClass::Other("InvalidPartitionName"),
            Error::KeyNotFound => ErrorClass::Other("KeyNotFound"),
            Error::BatchFailed(_) => ErrorClass::Other("BatchFailed"),
            Error::NotSupported(_) => ErrorClass::Other("NotSupported"),
        }
    }
}

/// The comparable result of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `Ok(())`.
    Done,
    /// `get`'s value.
    Value(Option<Vec<u8>>),
    /// `partition_exists`.
    Exists(bool),
    /// `list_partitions`.
    Partitions(Vec<Partition>),
    /// Items read from a scan, and the error that ended it early, if any.
    Items(Vec<KvPair>, Option<ErrorClass>),
    /// An error.
    Failed(ErrorClass),
}

fn outcome<T>(r: Result<T>, f: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => f(v),
        Err(e) => Outcome::Failed(ErrorClass::of(&e)),
    }
}

fn part(i: usize) -> Partition {
    Partition::new(PARTITIONS[i % PARTITIONS.len()]).expect("valid partition name")
}

fn drain(iter: impl Iterator<Item = Result<KvPair>>, limit: usize) -> Outcome {
    let mut items = Vec::new();
    for item in iter.take(limit) {
        match item {
            Ok(kv) => items.push(kv),
            Err(e) => return Outcome::Items(items, Some(ErrorClass::of(&e))),
        }
    }
    Outcome::Items(items, None)
}

/// Applies one operation (other than [`Op::Reopen`]) and returns its outcome.
pub async fn apply<B: StorageBackend + ?Sized>(backend: &B, op: &Op) -> Outcome {
    match op {
        Op::Create(p) => outcome(backend.create_partition(&part(*p)).await, |()| {
            Outcome::Done
        }),
        Op::Drop(p) => outcome(backend.drop_partition(&part(*p)).await, |()| Outcome::Done),
        Op::Exists(p) => outcome(backend.partition_exists(&part(*p)).await, Outcome::Exists),
        Op::List => outcome(backend.list_partitions().await, Outcome::Partitions),
        Op::Put(p, k, v) => outcome(backend.put(&part(*p), k, v).await, |()| Outcome::Done),
        Op::Delete(p, k) => outcome(backend.delete(&part(*p), k).await, |()| Outcome::Done),
        Op::Get(p, k) => outcome(backend.get(&part(*p), k).await, Outcome::Value),
        Op::PutOversizeKey(p) => outcome(
            backend
                .put(&part(*p), &vec![b'k'; MAX_KEY_LEN + 1], b"v")
                .await,
            |()| Outcome::Done,
        ),
        Op::Batch(ops) => {
            let ops = ops
                .iter()
                .map(|(p, k, v)| match v {
                    Some(v) => Operation::put(part(*p), k.clone(), v.clone()),
                    None => Operation::delete(part(*p), k.clone()),
                })
                .collect();
            outcome(backend.batch(ops).await, |()| Outcome::Done)
        }
        Op::Scan {
            partition,
            start,
            end,
            limit,
        } => match backend
            .scan(&part(*partition), start.as_deref(), end.as_deref())
            .await
        {
            Ok(iter) => drain(iter, *limit),
            Err(e) => Outcome::Failed(ErrorClass::of(&e)),
        },
        Op::Compact(p) => outcome(backend.compact(&part(*p)).await, |()| Outcome::Done),
        Op::Reopen => Outcome::Done,
    }
}

/// Every partition with its full contents, for the final comparison.
pub async fn dump<B: StorageBackend + ?Sized>(
    backend: &B,
) -> Result<Vec<(Partition, Vec<KvPair>)>> {
    let mut out = Vec::new();
    for p in backend.list_partitions().await? {
        let items = backend
            .scan(&p, None, None)
            .await?
            .collect::<Result<Vec<_>>>()?;
        out.push((p, items));
    }
    Ok(out)
}

fn reopen<H: Harness>(h: &mut H, slot: &mut Option<H::Backend>) -> std::result::Result<(), String> {
    if h.persistent() {
        drop(slot.take());
        *slot = Some(h.open().map_err(|e| format!("reopen failed: {e}"))?);
    }
    Ok(())
}

/// Applies `ops` to a backend from each harness and compares every outcome
/// and the final contents. `Err` describes the first divergence.
pub async fn compare<A: Harness, B: Harness>(
    mut a: A,
    mut b: B,
    ops: &[Op],
) -> std::result::Result<(), String> {
    let mut left = Some(a.open().map_err(|e| format!("open A: {e}"))?);
    let mut right = Some(b.open().map_err(|e| format!("open B: {e}"))?);
    for (i, op) in ops.iter().enumerate() {
        if *op == Op::Reopen {
            reopen(&mut a, &mut left)?;
            reopen(&mut b, &mut right)?;
            continue;
        }
        let (Some(l), Some(r)) = (left.as_ref(), right.as_ref()) else {
            return Err("backend missing".into());
        };
        let (x, y) = (apply(l, op).await, apply(r, op).await);
        if x != y {
            return Err(format!("op #{i} {op:?}: A gave {x:?}, B gave {y:?}"));
        }
    }
    let (Some(l), Some(r)) = (left.as_ref(), right.as_ref()) else {
        return Err("backend missing".into());
    };
    let (x, y) = (dump(l).await, dump(r).await);
    match (x, y) {
        (Ok(x), Ok(y)) if x == y => Ok(()),
        (x, y) => Err(format!("final contents differ:\nA: {x:?}\nB: {y:?}")),
    }
}

/// Number of cases for a proptest run: `$var` if set, else `default`.
pub fn cases_from_env(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
