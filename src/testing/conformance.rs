//! The conformance suite: one public async function per behaviour.
//!
//! Every function takes a fresh [`Harness`] and panics with a message on a
//! violation. [`conformance_tests!`](crate::conformance_tests) turns each
//! into a named `#[test]`; [`run_all`] runs them in sequence.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::limits::{MAX_BATCH_BYTES, MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::testing::{alloc, Harness};
use crate::{BackendErrorKind, Error, KvPair, Operation, Partition, Result, StorageBackend};

/// Every test of the suite, by name, in the order [`run_all`] runs them.
pub const TESTS: &[&str] = &[
    "put_then_get",
    "get_missing_key_is_none",
    "put_overwrites",
    "delete_removes_and_missing_delete_is_ok",
    "empty_key_and_empty_value",
    "binary_and_long_keys",
    "key_and_value_at_limit_are_accepted",
    "over_limit_writes_are_refused_and_write_nothing",
    "limits_are_checked_before_the_partition",
    "missing_partition_is_not_found_everywhere",
    "create_is_idempotent",
    "concurrent_create_of_one_name_is_ok",
    "partition_lifecycle",
    "list_partitions_is_sorted",
    "drop_then_recreate_is_empty",
    "partitions_are_isolated",
    "name_default_behaves_like_any_other",
    "partition_size_and_compact",
    "scan_bounds_every_combination",
    "scan_start_not_below_end_is_empty",
    "scan_prefix_with_correct_bound",
    "scan_order_is_bytewise",
    "scan_is_a_snapshot",
    "scan_survives_partition_drop",
    "scan_survives_backend_drop",
    "scan_streams",
    "batch_applies_in_order",
    "batch_across_partitions",
    "empty_batch_is_ok",
    "batch_with_missing_partition_applies_nothing",
    "batch_over_limit_applies_nothing",
    "batches_are_atomic_to_scans",
    "concurrent_writers_and_readers",
    "persists_across_reopen",
    "second_open_is_locked",
];

/// Runs every test of the suite, each on a harness from `make`.
pub async fn run_all<H: Harness>(mut make: impl FnMut() -> H) {
    put_then_get(make()).await;
    get_missing_key_is_none(make()).await;
    put_overwrites(make()).await;
    delete_removes_and_missing_delete_is_ok(make()).await;
    empty_key_and_empty_value(make()).await;
    binary_and_long_keys(make()).await;
    key_and_value_at_limit_are_accepted(make()).await;
    over_limit_writes_are_refused_and_write_nothing(make()).await;
    limits_are_checked_before_the_partition(make()).await;
    missing_partition_is_not_found_everywhere(make()).await;
    create_is_idempotent(make()).await;
    concurrent_create_of_one_name_is_ok(make()).await;
    partition_lifecycle(make()).await;
    list_partitions_is_sorted(make()).await;
    drop_then_recreate_is_empty(make()).await;
    partitions_are_isolated(make()).await;
    name_default_behaves_like_any_other(make()).await;
    partition_size_and_compact(make()).await;
    scan_bounds_every_combination(make()).await;
    scan_start_not_below_end_is_empty(make()).await;
    scan_prefix_with_correct_bound(make()).await;
    scan_order_is_bytewise(make()).await;
    scan_is_a_snapshot(make()).await;
    scan_survives_partition_drop(make()).await;
    scan_survives_backend_drop(make()).await;
    scan_streams(make()).await;
    batch_applies_in_order(make()).await;
    batch_across_partitions(make()).await;
    empty_batch_is_ok(make()).await;
    batch_with_missing_partition_applies_nothing(make()).await;
    batch_over_limit_applies_nothing(make()).await;
    batches_are_atomic_to_scans(make()).await;
    concurrent_writers_and_readers(make()).await;
    persists_across_reopen(make()).await;
    second_open_is_locked(make()).await;
}

/// Generates one `#[test]` per conformance test for the harness expression.
///
/// ```ignore
/// mod rocksdb {
///     kalamdb_store::conformance_tests!(kalamdb_store::testing::RocksDbHarness::new());
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_each!($make;
            put_then_get,
            get_missing_key_is_none,
            put_overwrites,
            delete_removes_and_missing_delete_is_ok,
            empty_key_and_empty_value,
            binary_and_long_keys,
            key_and_value_at_limit_are_accepted,
            over_limit_writes_are_refused_and_write_nothing,
            limits_are_checked_before_the_partition,
            missing_partition_is_not_found_everywhere,
            create_is_idempotent,
            concurrent_create_of_one_name_is_ok,
            partition_lifecycle,
            list_partitions_is_sorted,
            drop_then_recreate_is_empty,
            partitions_are_isolated,
            name_default_behaves_like_any_other,
            partition_size_and_compact,
            scan_bounds_every_combination,
            scan_start_not_below_end_is_empty,
            scan_prefix_with_correct_bound,
            scan_order_is_bytewise,
            scan_is_a_snapshot,
            scan_survives_partition_drop,
            scan_survives_backend_drop,
            scan_streams,
            batch_applies_in_order,
            batch_across_partitions,
            empty_batch_is_ok,
            batch_with_missing_partition_applies_nothing,
            batch_over_limit_applies_nothing,
            batches_are_atomic_to_scans,
            concurrent_writers_and_readers,
            persists_across_reopen,
            second_open_is_locked,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::run($crate::testing::conformance::$name($make));
            }
        )*
    };
}

// ---------------------------------------------------------------- helpers

fn part(name: &str) -> Partition {
    Partition::new(name).expect("valid test partition name")
}

fn open<H: Harness>(h: &mut H) -> H::Backend {
    h.open().expect("open the backend")
}

async fn fresh<H: Harness>(h: &mut H, names: &[&str]) -> (H::Backend, Vec<Partition>) {
    let backend = open(h);
    let mut parts = Vec::new();
    for name in names {
        let p = part(name);
        backend
            .create_partition(&p)
            .await
            .expect("create partition");
        parts.push(p);
    }
    (backend, parts)
}

async fn scan_all<B: StorageBackend + ?Sized>(
    b: &B,
    p: &Partition,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
) -> Vec<KvPair> {
    b.scan(p, start, end)
        .await
        .expect("scan")
        .collect::<Result<Vec<_>>>()
        .expect("scan item")
}

fn kv(k: &[u8], v: &[u8]) -> KvPair {
    (k.to_vec(), v.to_vec())
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(r: Result<T>, p: &Partition, what: &str) {
    match r {
        Err(Error::PartitionNotFound(name)) if name == p.name() => {}
        other => panic!(
            "{what} on missing partition {p}: expected PartitionNotFound({p}), got {other:?}"
        ),
    }
}

#[track_caller]
fn assert_limit<T: std::fmt::Debug>(r: Result<T>, what: &str) {
    match &r {
        Err(e) if e.backend_kind() == Some(BackendErrorKind::Limit) => {}
        other => panic!("{what}: expected a `limit:` error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- CRUD

/// A put is read back by get.
pub async fn put_then_get<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    b.put(&ps[0], b"k", b"v").await.unwrap();
    assert_eq!(b.get(&ps[0], b"k").await.unwrap(), Some(b"v".to_vec()));
}

/// Get of a key never written is `Ok(None)`, never `KeyNotFound`.
pub async fn get_missing_key_is_none<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    assert_eq!(b.get(&ps[0], b"nope").await.unwrap(), None);
    b.put(&ps[0], b"a", b"1").await.unwrap();
    assert_eq!(b.get(&ps[0], b"a\0").await.unwrap(), None);
    assert_eq!(b.get(&ps[0], b"").await.unwrap(), None);
}

/// A second put of a key replaces the value.
pub async fn put_overwrites<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    b.put(&ps[0], b"k", b"first").await.unwrap();
    b.put(&ps[0], b"k", b"second, longer").await.unwrap();
    b.put(&ps[0], b"k", b"3").await.unwrap();
    assert_eq!(b.get(&ps[0], b"k").await.unwrap(), Some(b"3".to_vec()));
    assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![kv(b"k", b"3")]);
}

/// Delete removes a key; deleting a missing key is a no-op.
pub async fn delete_removes_and_missing_delete_is_ok<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    b.put(&ps[0], b"a", b"1").await.unwrap();
    b.put(&ps[0], b"b", b"2").await.unwrap();
    b.delete(&ps[0], b"a").await.unwrap();
    b.delete(&ps[0], b"never").await.unwrap();
    b.delete(&ps[0], b"a").await.unwrap();
    assert_eq!(b.get(&ps[0], b"a").await.unwrap(), None);
    assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![kv(b"b", b"2")]);
    b.put(&ps[0], b"a", b"again").await.unwrap();
    assert_eq!(b.get(&ps[0], b"a").await.unwrap(), Some(b"again".to_vec()));
}

/// The empty key and the empty value are ordinary data.
pub async fn empty_key_and_empty_value<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    b.put(&ps[0], b"", b"empty key").await.unwrap();
    b.put(&ps[0], b"k", b"").await.unwrap();
    assert_eq!(
        b.get(&ps[0], b"").await.unwrap(),
        Some(b"empty key".to_vec())
    );
    assert_eq!(b.get(&ps[0], b"k").await.unwrap(), Some(Vec::new()));
    assert_eq!(
        scan_all(&b, &ps[0], None, None).await,
        vec![kv(b"", b"empty key"), kv(b"k", b"")]
    );
    // An empty start bound includes the empty key; an empty end excludes everything.
    assert_eq!(scan_all(&b, &ps[0], Some(b""), None).await.len(), 2);
    assert_eq!(scan_all(&b, &ps[0], None, Some(b"")).await, vec![]);
    b.delete(&ps[0], b"").await.unwrap();
    assert_eq!(b.get(&ps[0], b"").await.unwrap(), None);
}

/// Keys made of 0x00 and 0xFF bytes, and long keys, round-trip exactly.
pub async fn binary_and_long_keys<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let keys: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0, 0],
        vec![0xff],
        vec![0xff, 0xff, 0xff],
        vec![0, 0xff, 0],
        vec![b'x'; 1000],
        (0..=255u8).collect(),
        vec![0xff; 4096],
    ];
    for (i, k) in keys.iter().enumerate() {
        b.put(&ps[0], k, &[i as u8, 0, 0xff]).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            b.get(&ps[0], k).await.unwrap(),
            Some(vec![i as u8, 0, 0xff]),
            "key {k:?}"
        );
    }
    let mut sorted = keys.clone();
    sorted.sort();
    let scanned: Vec<Vec<u8>> = scan_all(&b, &ps[0], None, None)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(scanned, sorted);
}

/// A key of exactly 64 KiB and a value of exactly 64 MiB are accepted.
pub async fn key_and_value_at_limit_are_accepted<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let key = vec![7u8; MAX_KEY_LEN];
    b.put(&ps[0], &key, b"v").await.unwrap();
    assert_eq!(b.get(&ps[0], &key).await.unwrap(), Some(b"v".to_vec()));
    let value = vec![9u8; MAX_VALUE_LEN];
    b.put(&ps[0], b"big", &value).await.unwrap();
    assert!(
        b.get(&ps[0], b"big").await.unwrap() == Some(value),
        "64 MiB value round-trips"
    );
    b.delete(&ps[0], &key).await.unwrap();
    assert_eq!(b.get(&ps[0], &key).await.unwrap(), None);
}

/// Keys over 64 KiB and values over 64 MiB are refused with `limit:` and
/// nothing is written.
pub async fn over_limit_writes_are_refused_and_write_nothing<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let p = &ps[0];
    let long_key = vec![1u8; MAX_KEY_LEN + 1];
    assert_limit(b.put(p, &long_key, b"v").await, "put with a long key");
    assert_limit(b.get(p, &long_key).await, "get with a long key");
    assert_limit(b.delete(p, &long_key).await, "delete with a long key");
    let big = vec![2u8; MAX_VALUE_LEN + 1];
    assert_limit(b.put(p, b"k", &big).await, "put with a big value");
    assert_eq!(b.get(p, b"k").await.unwrap(), None);
    assert_eq!(scan_all(&b, p, None, None).await, vec![]);
}

/// With a missing partition and an over-limit key, the limit error wins:
/// limits are checked first on every backend.
pub async fn limits_are_checked_before_the_partition<H: Harness>(mut h: H) {
    let b = open(&mut h);
    let missing = part("missing");
    let long_key = vec![1u8; MAX_KEY_LEN + 1];
    assert_limit(b.put(&missing, &long_key, b"v").await, "put");
    assert_limit(b.get(&missing, &long_key).await, "get");
    assert_limit(b.delete(&missing, &long_key).await, "delete");
    assert_limit(
        b.batch(vec![Operation::put(missing.clone(), long_key, vec![])])
            .await,
        "batch",
    );
    assert_not_found(b.put(&missing, b"k", b"v").await, &missing, "put");
}

/// Every operation on a partition that does not exist is `PartitionNotFound`.
pub async fn missing_partition_is_not_found_everywhere<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["present"]).await;
    let m = part("absent");
    assert_not_found(b.get(&m, b"k").await, &m, "get");
    assert_not_found(b.put(&m, b"k", b"v").await, &m, "put");
    assert_not_found(b.delete(&m, b"k").await, &m, "delete");
    assert_not_found(b.scan(&m, None, None).await.map(|_| ()), &m, "scan");
    assert_not_found(
        b.scan(&m, Some(b"b"), Some(b"a")).await.map(|_| ()),
        &m,
        "empty-range scan",
    );
    assert_not_found(
        b.batch(vec![Operation::delete(m.clone(), b"k".to_vec())])
            .await,
        &m,
        "batch",
    );
    assert_not_found(b.drop_partition(&m).await, &m, "drop_partition");
    assert_not_found(b.partition_size(&m).await, &m, "partition_size");
    assert_not_found(b.compact(&m).await, &m, "compact");
    assert!(!b.partition_exists(&m).await.unwrap());
    assert_eq!(b.list_partitions().await.unwrap(), ps);
}

/// Creating an existing partition is `Ok` and keeps its data.
pub async fn create_is_idempotent<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    b.put(&ps[0], b"k", b"v").await.unwrap();
    for _ in 0..3 {
        b.create_partition(&ps[0]).await.unwrap();
    }
    assert_eq!(b.get(&ps[0], b"k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(b.list_partitions().await.unwrap(), ps);
}

/// Many tasks creating the same partition at once all get `Ok`.
pub async fn concurrent_create_of_one_name_is_ok<H: Harness>(mut h: H) {
    let b = Arc::new(open(&mut h));
    for round in 0..4 {
        let p = part(&format!("raced_{round}"));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (b, p) = (b.clone(), p.clone());
                tokio::spawn(async move { b.create_partition(&p).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("concurrent create");
        }
        assert!(b.partition_exists(&p).await.unwrap());
    }
    assert_eq!(b.list_partitions().await.unwrap().len(), 4);
}

/// exists/list follow create and drop.
pub async fn partition_lifecycle<H: Harness>(mut h: H) {
    let b = open(&mut h);
    let p = part("life");
    assert!(!b.partition_exists(&p).await.unwrap());
    assert_eq!(b.list_partitions().await.unwrap(), vec![]);
    b.create_partition(&p).await.unwrap();
    assert!(b.partition_exists(&p).await.unwrap());
    assert_eq!(b.list_partitions().await.unwrap(), vec![p.clone()]);
    b.put(&p, b"k", b"v").await.unwrap();
    b.drop_partition(&p).await.unwrap();
    assert!(!b.partition_exists(&p).await.unwrap());
    assert_eq!(b.list_partitions().await.unwrap(), vec![]);
    assert_not_found(b.get(&p, b"k").await, &p, "get after drop");
    assert_not_found(b.drop_partition(&p).await, &p, "second drop");
}

/// `list_partitions` is in ascending order of name (code points).
pub async fn list_partitions_is_sorted<H: Harness>(mut h: H) {
    let names = [
        "zeta", "Alpha", "sys_meta", "default", "_under", "a1", "a", "ünï", "名前", "Z9",
    ];
    let (b, _) = fresh(&mut h, &names).await;
    let mut expected: Vec<Partition> = names.iter().map(|n| part(n)).collect();
    expected.sort_by(|x, y| x.name().cmp(y.name()));
    assert_eq!(b.list_partitions().await.unwrap(), expected);
}

/// Dropping and re-creating a name gives an empty partition.
pub async fn drop_then_recreate_is_empty<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    for i in 0..100u32 {
        b.put(&ps[0], &i.to_be_bytes(), b"old").await.unwrap();
    }
    b.drop_partition(&ps[0]).await.unwrap();
    b.create_partition(&ps[0]).await.unwrap();
    assert_eq!(b.get(&ps[0], &7u32.to_be_bytes()).await.unwrap(), None);
    assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![]);
    b.put(&ps[0], b"new", b"1").await.unwrap();
    assert_eq!(
        scan_all(&b, &ps[0], None, None).await,
        vec![kv(b"new", b"1")]
    );
}

/// The same key in two partitions holds two values.
pub async fn partitions_are_isolated<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["one", "two", "one_"]).await;
    b.put(&ps[0], b"k", b"1").await.unwrap();
    b.put(&ps[1], b"k", b"2").await.unwrap();
    assert_eq!(b.get(&ps[0], b"k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(b.get(&ps[1], b"k").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(b.get(&ps[2], b"k").await.unwrap(), None);
    b.delete(&ps[0], b"k").await.unwrap();
    assert_eq!(b.get(&ps[1], b"k").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(scan_all(&b, &ps[2], None, None).await, vec![]);
    b.drop_partition(&ps[1]).await.unwrap();
    b.put(&ps[0], b"k", b"1").await.unwrap();
    assert_eq!(b.get(&ps[0], b"k").await.unwrap(), Some(b"1".to_vec()));
}

/// `default` (RocksDB's built-in column family name) is an ordinary name.
pub async fn name_default_behaves_like_any_other<H: Harness>(mut h: H) {
    let b = open(&mut h);
    let d = part("default");
    assert!(!b.partition_exists(&d).await.unwrap());
    assert_not_found(b.get(&d, b"k").await, &d, "get on default before create");
    b.create_partition(&d).await.unwrap();
    b.put(&d, b"k", b"v").await.unwrap();
    assert_eq!(b.list_partitions().await.unwrap(), vec![d.clone()]);
    b.drop_partition(&d).await.unwrap();
    assert!(!b.partition_exists(&d).await.unwrap());
    assert_eq!(b.list_partitions().await.unwrap(), vec![]);
    b.create_partition(&d).await.unwrap();
    assert_eq!(b.get(&d, b"k").await.unwrap(), None);
}

/// `partition_size` is non-zero for a partition holding data, and `compact`
/// keeps the data intact.
pub async fn partition_size_and_compact<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let value = vec![0xabu8; 1024];
    for i in 0..200u32 {
        b.put(&ps[0], &i.to_be_bytes(), &value).await.unwrap();
    }
    for i in (0..200u32).step_by(2) {
        b.delete(&ps[0], &i.to_be_bytes()).await.unwrap();
    }
    assert!(b.partition_size(&ps[0]).await.unwrap() > 0);
    b.compact(&ps[0]).await.unwrap();
    let after = scan_all(&b, &ps[0], None, None).await;
    assert_eq!(after.len(), 100);
    assert!(after.iter().all(|(k, v)| k[3] % 2 == 1 && *v == value));
}

// ---------------------------------------------------------------- scans

/// Every combination of start/end bounds (unbounded, below all keys, equal to
/// a key, between keys, above all keys) returns exactly the keys in
/// `[start, end)`.
pub async fn scan_bounds_every_combination<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let keys: [&[u8]; 6] = [b"b", b"bb", b"c", b"d\x00", b"e", b"e\xff"];
    for k in keys {
        b.put(&ps[0], k, k).await.unwrap();
    }
    let points: [&[u8]; 10] = [
        b"", b"a", b"b", b"b\x00", b"bb", b"c", b"ca", b"d", b"e\xff", b"f",
    ];
    let mut bounds: Vec<Option<&[u8]>> = vec![None];
    bounds.extend(points.iter().map(|p| Some(*p)));
    for start in &bounds {
        for end in &bounds {
            let expected: Vec<KvPair> = keys
                .iter()
                .filter(|k| start.is_none_or(|s| **k >= s) && end.is_none_or(|e| **k < e))
                .map(|k| kv(k, k))
                .collect();
            let got = scan_all(&b, &ps[0], *start, *end).await;
            assert_eq!(got, expected, "scan({start:?}, {end:?})");
        }
    }
}

/// `start >= end` gives an empty iterator, not an error.
pub async fn scan_start_not_below_end_is_empty<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    for k in [b"a", b"b", b"c"] {
        b.put(&ps[0], k, b"v").await.unwrap();
    }
    assert_eq!(scan_all(&b, &ps[0], Some(b"b"), Some(b"b")).await, vec![]);
    assert_eq!(scan_all(&b, &ps[0], Some(b"c"), Some(b"a")).await, vec![]);
    assert_eq!(scan_all(&b, &ps[0], Some(b"\xff"), Some(b"")).await, vec![]);
}

/// The prefix `user:123:` ends before `user:123;`, which excludes
/// `user:123;abc` (the contract's `user:123;\xFF` bound would not).
pub async fn scan_prefix_with_correct_bound<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    for k in [
        "user:122:z",
        "user:123:",
        "user:123:a",
        "user:123:\u{ff}",
        "user:123;",
        "user:123;abc",
        "user:124:a",
    ] {
        b.put(&ps[0], k.as_bytes(), b"v").await.unwrap();
    }
    let keys: Vec<Vec<u8>> = scan_all(&b, &ps[0], Some(b"user:123:"), Some(b"user:123;"))
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            b"user:123:".to_vec(),
            b"user:123:a".to_vec(),
            "user:123:\u{ff}".as_bytes().to_vec()
        ]
    );
}

/// Keys come in ascending bytewise (unsigned, shorter-prefix-first) order.
pub async fn scan_order_is_bytewise<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let mut keys: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"ab".to_vec(),
        b"\x7f".to_vec(),
        b"\x80".to_vec(),
        b"\xff".to_vec(),
        b"A".to_vec(),
        b"".to_vec(),
        b"\x00\x00".to_vec(),
    ];
    // Insert in a scrambled order.
    for i in [4, 0, 8, 2, 6, 1, 7, 3, 5] {
        b.put(&ps[0], &keys[i], b"v").await.unwrap();
    }
    keys.sort();
    let got: Vec<Vec<u8>> = scan_all(&b, &ps[0], None, None)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(got, keys);
}

/// A scan sees the partition as of the call: later puts, overwrites, deletes
/// and batches, before or after its cursor, are not seen.
pub async fn scan_is_a_snapshot<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let p = &ps[0];
    for i in (0..100u32).step_by(2) {
        b.put(p, &i.to_be_bytes(), b"old").await.unwrap();
    }
    let mut iter = b.scan(p, None, None).await.unwrap();
    let first = iter.next().unwrap().unwrap();
    assert_eq!(first, kv(&0u32.to_be_bytes(), b"old"));
    for i in 0..100u32 {
        match i % 4 {
            0 => b.put(p, &i.to_be_bytes(), b"new").await.unwrap(),
            1 => b.put(p, &i.to_be_bytes(), b"inserted").await.unwrap(),
            2 => b.delete(p, &i.to_be_bytes()).await.unwrap(),
            _ => b
                .batch(vec![Operation::put(
                    p.clone(),
                    i.to_be_bytes().to_vec(),
                    b"batched".to_vec(),
                )])
                .await
                .unwrap(),
        }
    }
    let rest: Vec<KvPair> = iter.collect::<Result<_>>().unwrap();
    let expected: Vec<KvPair> = (2..100u32)
        .step_by(2)
        .map(|i| kv(&i.to_be_bytes(), b"old"))
        .collect();
    assert_eq!(rest, expected);
    // A new scan sees the new state.
    assert_eq!(scan_all(&b, p, None, None).await.len(), 75);
}

/// An iterator keeps returning its snapshot after its partition is dropped
/// (and re-created).
pub async fn scan_survives_partition_drop<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let p = &ps[0];
    let expected: Vec<KvPair> = (0..500u32)
        .map(|i| kv(&i.to_be_bytes(), &[7; 100]))
        .collect();
    for (k, v) in &expected {
        b.put(p, k, v).await.unwrap();
    }
    let mut iter = b.scan(p, None, None).await.unwrap();
    let mut got = vec![iter.next().unwrap().unwrap()];
    b.drop_partition(p).await.unwrap();
    b.create_partition(p).await.unwrap();
    b.put(p, &3u32.to_be_bytes(), b"new").await.unwrap();
    got.extend(iter.map(|r| r.unwrap()));
    assert_eq!(got, expected);
}

/// An iterator keeps returning its snapshot after the backend is dropped.
pub async fn scan_survives_backend_drop<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let expected: Vec<KvPair> = (0..500u32).map(|i| kv(&i.to_be_bytes(), b"v")).collect();
    for (k, v) in &expected {
        b.put(&ps[0], k, v).await.unwrap();
    }
    let mut iter = b.scan(&ps[0], None, None).await.unwrap();
    let mut got = vec![iter.next().unwrap().unwrap()];
    drop(b);
    got.extend(iter.map(|r| r.unwrap()));
    assert_eq!(got, expected);
}

/// A scan streams: opening a scan over ~20 MB and taking ten items
/// allocates far less than the partition (checked when the test binary's
/// global allocator is [`alloc::CountingAlloc`]).
pub async fn scan_streams<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let value = vec![0x5au8; 1024];
    let n = 20_000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let ops = chunk
            .iter()
            .map(|i| Operation::put(ps[0].clone(), i.to_be_bytes().to_vec(), value.clone()))
            .collect();
        b.batch(ops).await.unwrap();
    }
    let before = alloc::allocated_on_this_thread();
    let ten: Vec<KvPair> = b
        .scan(&ps[0], Some(&100u32.to_be_bytes()), None)
        .await
        .unwrap()
        .take(10)
        .collect::<Result<_>>()
        .unwrap();
    let after = alloc::allocated_on_this_thread();
    let expected: Vec<KvPair> = (100..110u32)
        .map(|i| kv(&i.to_be_bytes(), &value))
        .collect();
    assert_eq!(ten, expected);
    match (before, after) {
        (Some(before), Some(after)) => {
            let spent = after - before;
            let budget = 2 * 1024 * 1024;
            assert!(
                spent < budget,
                "scan(..).take(10) allocated {spent} bytes over a {} byte partition: it does not stream",
                n as usize * value.len()
            );
        }
        _ => eprintln!(
            "scan_streams: CountingAlloc is not the global allocator; checked results only"
        ),
    }
}

// ---------------------------------------------------------------- batches

/// Operations apply in order: a later operation on the same key wins.
pub async fn batch_applies_in_order<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let p = ps[0].clone();
    b.put(&p, b"pre", b"existing").await.unwrap();
    b.batch(vec![
        Operation::put(p.clone(), b"a".to_vec(), b"1".to_vec()),
        Operation::put(p.clone(), b"a".to_vec(), b"2".to_vec()),
        Operation::put(p.clone(), b"b".to_vec(), b"1".to_vec()),
        Operation::delete(p.clone(), b"b".to_vec()),
        Operation::delete(p.clone(), b"c".to_vec()),
        Operation::put(p.clone(), b"c".to_vec(), b"3".to_vec()),
        Operation::delete(p.clone(), b"pre".to_vec()),
    ])
    .await
    .unwrap();
    assert_eq!(
        scan_all(&b, &p, None, None).await,
        vec![kv(b"a", b"2"), kv(b"c", b"3")]
    );
}

/// One batch writes to several partitions.
pub async fn batch_across_partitions<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["x", "y", "z"]).await;
    let ops = ps
        .iter()
        .flat_map(|p| {
            [
                Operation::put(p.clone(), b"k".to_vec(), p.name().as_bytes().to_vec()),
                Operation::put(p.clone(), b"gone".to_vec(), b"v".to_vec()),
                Operation::delete(p.clone(), b"gone".to_vec()),
            ]
        })
        .collect();
    b.batch(ops).await.unwrap();
    for p in &ps {
        assert_eq!(
            scan_all(&b, p, None, None).await,
            vec![kv(b"k", p.name().as_bytes())]
        );
    }
}

/// An empty batch is `Ok(())`.
pub async fn empty_batch_is_ok<H: Harness>(mut h: H) {
    let b = open(&mut h);
    b.batch(Vec::new()).await.unwrap();
}

/// A batch naming a missing partition fails with `PartitionNotFound`, and
/// none of its operations apply.
pub async fn batch_with_missing_partition_applies_nothing<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let p = ps[0].clone();
    let missing = part("missing");
    b.put(&p, b"keep", b"old").await.unwrap();
    let r = b
        .batch(vec![
            Operation::put(p.clone(), b"new".to_vec(), b"v".to_vec()),
            Operation::put(p.clone(), b"keep".to_vec(), b"overwritten".to_vec()),
            Operation::put(missing.clone(), b"k".to_vec(), b"v".to_vec()),
            Operation::delete(p.clone(), b"keep".to_vec()),
        ])
        .await;
    assert_not_found(r, &missing, "batch");
    assert_eq!(
        scan_all(&b, &p, None, None).await,
        vec![kv(b"keep", b"old")]
    );
    assert!(!b.partition_exists(&missing).await.unwrap());
}

/// A batch over a size limit fails with `limit:` and applies nothing.
pub async fn batch_over_limit_applies_nothing<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["p"]).await;
    let p = ps[0].clone();
    let r = b
        .batch(vec![
            Operation::put(p.clone(), b"ok".to_vec(), b"v".to_vec()),
            Operation::put(p.clone(), vec![0; MAX_KEY_LEN + 1], b"v".to_vec()),
        ])
        .await;
    assert_limit(r, "batch with a long key");
    // Five values of ~52 MiB: each under the value limit, together over 256 MiB.
    let chunk = MAX_BATCH_BYTES / 5 + 1;
    let ops: Vec<Operation> = (0..5u8)
        .map(|i| Operation::put(p.clone(), vec![i], vec![i; chunk]))
        .collect();
    assert_limit(b.batch(ops).await, "batch over 256 MiB");
    assert_eq!(scan_all(&b, &p, None, None).await, vec![]);
}

/// Concurrent batches that set K keys to one value are seen whole by scans.
pub async fn batches_are_atomic_to_scans<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["left", "right"]).await;
    let b = Arc::new(b);
    const K: u32 = 16;
    let write = |b: Arc<H::Backend>, ps: Vec<Partition>, writer: u32| async move {
        for round in 0..50u32 {
            let value = format!("{writer}:{round}").into_bytes();
            let ops = ps
                .iter()
                .flat_map(|p| {
                    (0..K)
                        .map(|i| Operation::put(p.clone(), i.to_be_bytes().to_vec(), value.clone()))
                })
                .collect();
            b.batch(ops).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    let read = |b: Arc<H::Backend>, ps: Vec<Partition>| async move {
        for _ in 0..100 {
            for p in &ps {
                let items = b
                    .scan(p, None, None)
                    .await
                    .unwrap()
                    .collect::<Result<Vec<_>>>()
                    .unwrap();
                if items.is_empty() {
                    continue;
                }
                assert_eq!(items.len(), K as usize, "a scan saw part of a batch");
                assert!(
                    items.iter().all(|(_, v)| *v == items[0].1),
                    "a scan saw a torn batch: {items:?}"
                );
            }
            tokio::task::yield_now().await;
        }
    };
    let mut tasks = Vec::new();
    for w in 0..3 {
        tasks.push(tokio::spawn(write(b.clone(), ps.clone(), w)));
    }
    for _ in 0..3 {
        tasks.push(tokio::spawn(read(b.clone(), ps.clone())));
    }
    for t in tasks {
        t.await.expect("task panicked");
    }
}

/// Tasks writing and reading concurrently lose nothing.
pub async fn concurrent_writers_and_readers<H: Harness>(mut h: H) {
    let (b, ps) = fresh(&mut h, &["a", "b"]).await;
    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let (b, ps) = (b.clone(), ps.clone());
        tasks.push(tokio::spawn(async move {
            let p = &ps[(t % 2) as usize];
            for i in 0..200u32 {
                let key = [t.to_be_bytes(), i.to_be_bytes()].concat();
                b.put(p, &key, &i.to_le_bytes()).await.unwrap();
                assert_eq!(
                    b.get(p, &key).await.unwrap(),
                    Some(i.to_le_bytes().to_vec())
                );
                if i % 3 == 0 {
                    b.delete(p, &key).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task panicked");
    }
    for (pi, p) in ps.iter().enumerate() {
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            scan_all(&*b, p, None, None).await.into_iter().collect();
        let mut expected = BTreeMap::new();
        for t in (0..8u32).filter(|t| (t % 2) as usize == pi) {
            for i in (0..200u32).filter(|i| i % 3 != 0) {
                expected.insert(
                    [t.to_be_bytes(), i.to_be_bytes()].concat(),
                    i.to_le_bytes().to_vec(),
                );
            }
        }
        assert_eq!(got, expected, "partition {p}");
    }
}

// ---------------------------------------------------------------- durability

/// Data, deletions, partitions and drops survive dropping and reopening the
/// backend (durable backends only).
pub async fn persists_across_reopen<H: Harness>(mut h: H) {
    if !h.persistent() {
        return;
    }
    let names = ["kept", "default", "dropped", "recreated"];
    let (b, ps) = fresh(&mut h, &names).await;
    b.put(&ps[0], b"a", b"1").await.unwrap();
    b.put(&ps[0], b"b", b"2").await.unwrap();
    b.delete(&ps[0], b"a").await.unwrap();
    b.batch(vec![
        Operation::put(ps[1].clone(), b"d".to_vec(), b"x".to_vec()),
        Operation::put(ps[3].clone(), b"old".to_vec(), b"x".to_vec()),
    ])
    .await
    .unwrap();
    b.drop_partition(&ps[2]).await.unwrap();
    b.drop_partition(&ps[3]).await.unwrap();
    b.create_partition(&ps[3]).await.unwrap();
    b.put(&ps[3], b"new", b"y").await.unwrap();
    drop(b);
    for _ in 0..2 {
        let b = open(&mut h);
        let mut expected = vec![ps[0].clone(), ps[1].clone(), ps[3].clone()];
        expected.sort();
        assert_eq!(b.list_partitions().await.unwrap(), expected);
        assert_eq!(scan_all(&b, &ps[0], None, None).await, vec![kv(b"b", b"2")]);
        assert_eq!(scan_all(&b, &ps[1], None, None).await, vec![kv(b"d", b"x")]);
        assert_eq!(
            scan_all(&b, &ps[3], None, None).await,
            vec![kv(b"new", b"y")]
        );
        assert_not_found(
            b.get(&ps[2], b"k").await,
            &ps[2],
            "get on a dropped partition after reopen",
        );
    }
}

/// A second open of the same location while the first is open fails with
/// `locked:`, and the first keeps working (durable backends only).
pub async fn second_open_is_locked<H: Harness>(mut h: H) {
    if !h.persistent() {
        return;
    }
    let (b, ps) = fresh(&mut h, &["p"]).await;
    b.put(&ps[0], b"k", b"v").await.unwrap();
    match h.open() {
        Err(e) if e.backend_kind() == Some(BackendErrorKind::Locked) => {}
        Err(e) => panic!("second open: expected a `locked:` error, got {e:?}"),
        Ok(_) => panic!("second open of an open location succeeded"),
    }
    b.put(&ps[0], b"k2", b"v2").await.unwrap();
    assert_eq!(scan_all(&b, &ps[0], None, None).await.len(), 2);
    drop(b);
    let b = open(&mut h);
    assert_eq!(scan_all(&b, &ps[0], None, None).await.len(), 2);
}
