//! Table-level tests: golden bytes of a whole table, round trips against a
//! `BTreeMap` model, corruption and truncation of every byte, bloom-filter
//! I/O avoidance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::error::Error;
use crate::fs::{ReadableFile, WritableFile};
use crate::memtable::{SeqNo, Value};
use crate::merge::{Entry, MergeIter, SnapshotIter, Source};

/// An in-memory append-only file for the builder; clones share the bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemFile {
    data: Arc<Mutex<Vec<u8>>>,
    fail: Arc<AtomicBool>,
}

impl MemFile {
    pub(crate) fn contents(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    pub(crate) fn fail_appends(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

impl WritableFile for MemFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write error"));
        }
        self.data.lock().unwrap().extend_from_slice(data);
        Ok(())
    }
    fn preallocate(&mut self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "tables are not preallocated",
        ))
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
}

/// A readable in-memory file that counts reads.
#[derive(Debug)]
struct ReadFile {
    data: Vec<u8>,
    reads: AtomicUsize,
}

impl ReadFile {
    fn new(data: Vec<u8>) -> Arc<ReadFile> {
        Arc::new(ReadFile {
            data,
            reads: AtomicUsize::new(0),
        })
    }
}

impl ReadableFile for ReadFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(src) = self.data.get(start..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}

/// xorshift64*: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model: internal order is `(user key, Reverse(seq))`; `None` is a
/// tombstone.
type Model = BTreeMap<(Vec<u8>, Reverse<SeqNo>), Option<Vec<u8>>>;

fn value_of(v: &Option<Vec<u8>>) -> Value {
    match v {
        Some(v) => Value::Put(Bytes::copy_from_slice(v)),
        None => Value::Delete,
    }
}

/// Builds `model` into a table through [`TableBuilder::add`], and again
/// through [`TableBuilder::add_entry`], which must write the same bytes.
fn build(model: &Model, partition: u64, opts: &TableOptions) -> (Vec<u8>, TableMeta) {
    let built = |borrowed: bool| {
        let file = MemFile::default();
        let mut b = TableBuilder::new(
            Box::new(file.clone()),
            PathBuf::from("test.sst"),
            partition,
            opts,
        );
        for ((k, Reverse(seq)), v) in model {
            if borrowed {
                b.add_entry(k, *seq, v.as_deref()).unwrap();
            } else {
                b.add(k, *seq, &value_of(v)).unwrap();
            }
        }
        let (meta, _file) = b.finish().unwrap();
        (file.contents(), meta)
    };
    let (bytes, meta) = built(false);
    let (again, meta_again) = built(true);
    assert!(bytes == again, "add_entry wrote other bytes than add");
    assert_eq!(meta, meta_again);
    (bytes, meta)
}

/// Opens the whole of `file` as a table (it must be a valid one).
fn open_file(file: Arc<dyn ReadableFile>) -> Arc<Table> {
    let size = file.len().unwrap();
    Arc::new(Table::open(file, PathBuf::from("t"), size).unwrap())
}

fn open(bytes: &[u8]) -> crate::error::Result<Arc<Table>> {
    let file = ReadFile::new(bytes.to_vec());
    Table::open(file, PathBuf::from("test.sst"), bytes.len() as u64).map(Arc::new)
}

fn model_get(model: &Model, key: &[u8], snapshot: SeqNo) -> Option<Value> {
    model
        .range((key.to_vec(), Reverse(snapshot))..)
        .next()
        .filter(|((k, _), _)| k == key)
        .map(|(_, v)| value_of(v))
}

fn model_entries(model: &Model, start: Option<&[u8]>) -> Vec<Entry> {
    model
        .iter()
        .filter(|((k, _), _)| start.is_none_or(|s| k.as_slice() >= s))
        .map(|((k, Reverse(seq)), v)| Entry {
            key: Bytes::copy_from_slice(k),
            seq: *seq,
            value: value_of(v),
        })
        .collect()
}

const KEYS: &[&[u8]] = &[
    b"",
    b"\x00",
    b"a",
    b"a\x00",
    b"ab",
    b"abc",
    b"abcd",
    b"b",
    b"ba",
    b"c",
    b"\xfe",
    b"\xff",
    b"\xff\xff",
    b"\xff\xff\xff",
];

fn random_key(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => KEYS[rng.below(KEYS.len() as u64) as usize].to_vec(),
        1 => (0..rng.below(4))
            .map(|_| [0u8, 0x61, 0x62, 0xff][rng.below(4) as usize])
            .collect(),
        _ => format!("key{:05}", rng.below(2000)).into_bytes(),
    }
}

fn random_model(rng: &mut Rng, bottom: bool) -> Model {
    let mut model = Model::new();
    let n = 1 + rng.below(400);
    let mut seq = rng.below(1000);
    for _ in 0..n {
        let key = random_key(rng);
        let value = if rng.below(4) == 0 {
            None
        } else {
            let len = match rng.below(20) {
                0 => 5000 + rng.below(5000) as usize,
                1..=3 => 0,
                _ => rng.below(40) as usize,
            };
            Some((0..len).map(|i| (i as u8) ^ (seq as u8)).collect())
        };
        seq += 1 + rng.below(3);
        // At the bottom level sequence numbers are zeroed: one version per
        // key, all at 0.
        let s = if bottom { 0 } else { seq };
        if bottom {
            model.retain(|(k, _), _| *k != key);
        }
        model.insert((key, Reverse(s)), value);
    }
    model
}

fn random_opts(rng: &mut Rng) -> TableOptions {
    TableOptions {
        block_size: [1, 64, 128, 512, 4096][rng.below(5) as usize],
        restart_interval: [1, 2, 3, 16][rng.below(4) as usize],
        bloom_bits_per_key: [0, 1, 10, 20][rng.below(4) as usize],
    }
}

#[test]
fn tables_match_a_btreemap_model() {
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let bottom = rng.below(5) == 0;
        let model = random_model(&mut rng, bottom);
        let opts = random_opts(&mut rng);
        let (bytes, meta) = build(&model, seed, &opts);
        assert_eq!(meta.file_size, bytes.len() as u64);
        let table = open(&bytes).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let props = table.properties();
        assert_eq!(props, &meta.properties);
        assert_eq!(props.entry_count, model.len() as u64, "seed {seed}");
        assert_eq!(
            props.tombstone_count,
            model.values().filter(|v| v.is_none()).count() as u64
        );
        let max_seq = model.keys().map(|(_, Reverse(s))| *s).max().unwrap();
        assert_eq!(props.max_seq, max_seq);

        // Full scan and scans from random starts.
        let all: Vec<Entry> = table.iter(None).collect::<Result<_, _>>().unwrap();
        assert_eq!(all, model_entries(&model, None), "seed {seed} {opts:?}");
        for _ in 0..20 {
            let start = random_key(&mut rng);
            let got: Vec<Entry> = table.iter(Some(&start)).collect::<Result<_, _>>().unwrap();
            assert_eq!(
                got,
                model_entries(&model, Some(&start)),
                "seed {seed} start {start:?}"
            );
        }

        // Point reads of present and absent keys at many snapshots.
        let mut probes: Vec<Vec<u8>> = model.keys().map(|(k, _)| k.clone()).collect();
        probes.extend((0..50).map(|_| random_key(&mut rng)));
        for key in &probes {
            for snapshot in [0, 1, max_seq / 2, max_seq, max_seq + 1, SeqNo::MAX]
                .into_iter()
                .chain((0..3).map(|_| rng.below(max_seq + 2)))
            {
                assert_eq!(
                    table.get(key, snapshot).unwrap(),
                    model_get(&model, key, snapshot),
                    "seed {seed} key {key:?} snapshot {snapshot}"
                );
            }
        }

        // The table as a merge source, read as of a snapshot.
        let snapshot = rng.below(max_seq + 2);
        let mut view = BTreeMap::new();
        for ((k, Reverse(s)), v) in model.iter().rev() {
            if *s <= snapshot {
                match v {
                    Some(v) => view.insert(k.clone(), v.clone()),
                    None => view.remove(k),
                };
            }
        }
        let sources: Vec<Box<dyn Source>> = vec![Box::new(table.iter(None))];
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            SnapshotIter::new(MergeIter::new(sources), snapshot, None, None)
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(got, view.into_iter().collect::<Vec<_>>(), "seed {seed}");
    }
}

#[test]
fn scans_start_before_between_and_after_keys() {
    let mut model = Model::new();
    for (i, k) in [&b"b"[..], b"d", b"d\x00", b"f"].iter().enumerate() {
        model.insert((k.to_vec(), Reverse(10 + i as u64)), Some(b"new".to_vec()));
        model.insert((k.to_vec(), Reverse(i as u64)), None);
    }
    for block_size in [1, 4096] {
        let opts = TableOptions {
            block_size,
            ..TableOptions::default()
        };
        let (bytes, _) = build(&model, 0, &opts);
        let table = open(&bytes).unwrap();
        let keys = |start: &[u8]| -> Vec<(Vec<u8>, SeqNo)> {
            table
                .iter(Some(start))
                .map(|e| {
                    let e = e.unwrap();
                    (e.key.to_vec(), e.seq)
                })
                .collect()
        };
        assert_eq!(keys(b"").len(), 8);
        assert_eq!(keys(b"a").len(), 8);
        assert_eq!(keys(b"b")[0], (b"b".to_vec(), 10));
        assert_eq!(keys(b"c")[0], (b"d".to_vec(), 11));
        assert_eq!(keys(b"d").len(), 6);
        assert_eq!(keys(b"d\x00")[0], (b"d\x00".to_vec(), 12));
        assert_eq!(keys(b"e"), vec![(b"f".to_vec(), 13), (b"f".to_vec(), 3)]);
        assert_eq!(keys(b"f").len(), 2);
        assert!(keys(b"f\x00").is_empty());
        assert!(keys(b"\xff").is_empty());
    }
}

#[test]
fn big_values_span_blocks() {
    let mut model = Model::new();
    for i in 0..20u64 {
        let len = [0, 1, 4095, 4096, 4097, 100_000][i as usize % 6];
        model.insert(
            (format!("k{i:02}").into_bytes(), Reverse(i)),
            Some(vec![i as u8; len]),
        );
    }
    let (bytes, meta) = build(&model, 0, &TableOptions::default());
    assert!(meta.properties.data_block_count >= 8);
    let table = open(&bytes).unwrap();
    for ((k, Reverse(s)), v) in &model {
        assert_eq!(table.get(k, *s).unwrap(), Some(value_of(v)));
        if *s > 0 {
            assert_eq!(table.get(k, s - 1).unwrap(), None);
        }
    }
    let all: Vec<Entry> = table.iter(None).collect::<Result<_, _>>().unwrap();
    assert_eq!(all, model_entries(&model, None));
}

/// The one-entry table `k`@5 = `v`, partition 3, default options.
fn tiny_table() -> Vec<u8> {
    let mut model = Model::new();
    model.insert((b"k".to_vec(), Reverse(5)), Some(b"v".to_vec()));
    build(&model, 3, &TableOptions::default()).0
}

#[rustfmt::skip]
const GOLDEN_TABLE: &[u8] = &[
    // data block @0: one entry, restarts [0], n = 1; trailer
    0x00, 0x09, 0x01, 0x6b, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0x76,
    0, 0, 0, 0, 0x01, 0, 0, 0,
    0x00, 0x85, 0xc2, 0x3b, 0xb1,
    // filter @26: one 64-byte block of bits (as in
    // bloom::tests::golden_bytes_of_a_filter), tag 0x40 | k = 7; trailer
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0x08, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0,
    0, 0x84, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x47,
    0x00, 0x9b, 0xab, 0xb5, 0x38,
    // properties @96; trailer
    0x01, 0, 0, 0, 0x03, 0x01, 0x00, 0x01, 0x01, 0x01, 0x05, 0x05, 0x01, 0x6b, 0x01, 0x6b,
    0x00, 0x70, 0xfb, 0x04, 0x57,
    // index @117: last key k@5 -> handle (0, 21); restarts [0], n = 1; trailer
    0x00, 0x09, 0x02, 0x6b, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0x00, 0x15,
    0, 0, 0, 0, 0x01, 0, 0, 0,
    0x00, 0xe5, 0xbf, 0x02, 0xbf,
    // footer @144: index (117, 22), filter (26, 65), properties (96, 16)
    0x75, 0, 0, 0, 0, 0, 0, 0, 0x16, 0, 0, 0, 0, 0, 0, 0,
    0x1a, 0, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 0, 0, 0, 0, 0,
    0x60, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0,
    0x01, 0, 0, 0, 0x4d, 0x3f, 0x1c, 0x17,
    b'k', b'a', b'l', b'a', b'm', b'S', b'S', b'T',
];

/// The same table as written before the blocked bloom layout: its filter
/// is flat (8 bytes of bits, tag k = 7). Readers must keep accepting it.
#[rustfmt::skip]
const FLAT_FILTER_GOLDEN_TABLE: &[u8] = &[
    // data block @0: one entry, restarts [0], n = 1; trailer
    0x00, 0x09, 0x01, 0x6b, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0x76,
    0, 0, 0, 0, 0x01, 0, 0, 0,
    0x00, 0x85, 0xc2, 0x3b, 0xb1,
    // filter @26: 8 bytes of bits, k = 7 (flat layout); trailer
    0x00, 0x88, 0x00, 0x10, 0x01, 0x20, 0x00, 0x44, 0x07,
    0x00, 0x04, 0xc2, 0xad, 0xd5,
    // properties @40; trailer
    0x01, 0, 0, 0, 0x03, 0x01, 0x00, 0x01, 0x01, 0x01, 0x05, 0x05, 0x01, 0x6b, 0x01, 0x6b,
    0x00, 0x70, 0xfb, 0x04, 0x57,
    // index @61: last key k@5 -> handle (0, 21); restarts [0], n = 1; trailer
    0x00, 0x09, 0x02, 0x6b, 0x01, 0x05, 0, 0, 0, 0, 0, 0, 0x00, 0x15,
    0, 0, 0, 0, 0x01, 0, 0, 0,
    0x00, 0xe5, 0xbf, 0x02, 0xbf,
    // footer @88
    0x3d, 0, 0, 0, 0, 0, 0, 0, 0x16, 0, 0, 0, 0, 0, 0, 0,
    0x1a, 0, 0, 0, 0, 0, 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0,
    0x28, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0,
    0x01, 0, 0, 0, 0x27, 0x52, 0x7f, 0x86,
    b'k', b'a', b'l', b'a', b'm', b'S', b'S', b'T',
];

#[test]
fn golden_bytes_of_a_tiny_table() {
    let bytes = tiny_table();
    assert_eq!(bytes, GOLDEN_TABLE, "\n{bytes:02x?}");
    let table = open(GOLDEN_TABLE).unwrap();
    assert_eq!(
        table.get(b"k", 5).unwrap(),
        Some(Value::Put(Bytes::from_static(b"v")))
    );
    assert_eq!(table.get(b"k", 4).unwrap(), None);
    assert_eq!(table.properties().partition_id, 3);
    let filter = BloomFilter::decode(&GOLDEN_TABLE[26..91]).unwrap();
    assert!(filter.is_blocked());
    // Index block, its search array (one word, prefix "k") and its one
    // sampled word, filter.
    assert_eq!(table.metadata_size(), 22 + 8 + 8 + 1 + 64);
}

/// Tables whose filter has the flat layout (written before the blocked one)
/// still open and answer, through that filter.
#[test]
fn tables_with_a_flat_filter_still_read() {
    let table = open(FLAT_FILTER_GOLDEN_TABLE).unwrap();
    let filter = BloomFilter::decode(&FLAT_FILTER_GOLDEN_TABLE[26..35]).unwrap();
    assert!(!filter.is_blocked());
    assert_eq!(table.metadata_size(), 22 + 8 + 8 + 1 + 8);
    assert!(table.may_contain(b"k"));
    assert_eq!(
        table.get(b"k", 5).unwrap(),
        Some(Value::Put(Bytes::from_static(b"v")))
    );
    assert_eq!(table.get(b"k", 4).unwrap(), None);
    assert_eq!(table.properties().partition_id, 3);
    // Only the filter differs from what is written now.
    assert_eq!(FLAT_FILTER_GOLDEN_TABLE[..26], GOLDEN_TABLE[..26]);
    assert_eq!(FLAT_FILTER_GOLDEN_TABLE[40..88], GOLDEN_TABLE[96..144]);
    // Every flipped byte of the old table is still caught or harmless.
    let mut model = Model::new();
    model.insert((b"k".to_vec(), Reverse(5)), Some(b"v".to_vec()));
    for i in 0..FLAT_FILTER_GOLDEN_TABLE.len() {
        let mut bad = FLAT_FILTER_GOLDEN_TABLE.to_vec();
        bad[i] ^= 0x20;
        check_against_model(&bad, bad.len() as u64, &model, &format!("flip {i}"));
    }
}

/// Every error, or a value the model agrees with; never a panic. Returns
/// whether an error was seen.
fn check_against_model(bytes: &[u8], size: u64, model: &Model, what: &str) -> bool {
    let file = ReadFile::new(bytes.to_vec());
    let table = match Table::open(file, PathBuf::from("test.sst"), size) {
        Ok(t) => Arc::new(t),
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, PathBuf::from("test.sst"), "{what}");
            assert!(offset <= size, "{what}: offset {offset}");
            return true;
        }
        Err(e) => panic!("{what}: not corruption: {e}"),
    };
    let mut errored = false;
    let expected = model_entries(model, None);
    let mut n = 0;
    for e in table.iter(None) {
        match e {
            Ok(e) => {
                assert_eq!(Some(&e), expected.get(n), "{what}: entry {n}");
                n += 1;
            }
            Err(Error::Corruption { .. }) => errored = true,
            Err(e) => panic!("{what}: not corruption: {e}"),
        }
    }
    errored |= n != expected.len();
    for (k, _) in model.keys() {
        for snapshot in [0, 3, 7, SeqNo::MAX] {
            match table.get(k, snapshot) {
                Ok(v) => assert_eq!(v, model_get(model, k, snapshot), "{what}: {k:?}@{snapshot}"),
                Err(Error::Corruption { .. }) => errored = true,
                Err(e) => panic!("{what}: not corruption: {e}"),
            }
        }
    }
    errored
}

fn small_model() -> Model {
    let mut model = Model::new();
    for (k, s, v) in [
        (&b""[..], 2, Some(&b"empty"[..])),
        (b"a", 9, None),
        (b"a", 4, Some(b"a4")),
        (b"ab", 7, Some(b"ab7")),
        (b"abc", 1, Some(b"")),
        (b"\xff", 5, Some(b"ff")),
    ] {
        model.insert((k.to_vec(), Reverse(s)), v.map(<[u8]>::to_vec));
    }
    model
}

#[test]
fn every_flipped_byte_is_detected_and_never_yields_a_wrong_value() {
    let model = small_model();
    for opts in [
        TableOptions {
            block_size: 32,
            restart_interval: 2,
            ..TableOptions::default()
        },
        TableOptions {
            bloom_bits_per_key: 0,
            ..TableOptions::default()
        },
    ] {
        let (bytes, _) = build(&model, 1, &opts);
        assert!(!check_against_model(
            &bytes,
            bytes.len() as u64,
            &model,
            "intact"
        ));
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                let what = format!("byte {i} ^ {flip:#x} ({opts:?})");
                // CRC-32 catches every single-byte change.
                assert!(
                    check_against_model(&bad, bad.len() as u64, &model, &what),
                    "{what} went unnoticed"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_corruption() {
    let model = small_model();
    let opts = TableOptions {
        block_size: 32,
        ..TableOptions::default()
    };
    let (bytes, _) = build(&model, 1, &opts);
    for len in 0..bytes.len() {
        let what = format!("truncated to {len}");
        // The file is cut, and the size recorded is its new size.
        assert!(
            check_against_model(&bytes[..len], len as u64, &model, &what),
            "{what}"
        );
        // The file is cut, but the recorded size is the old one.
        assert!(
            check_against_model(&bytes[..len], bytes.len() as u64, &model, &what),
            "{what} (full size recorded)"
        );
    }
}

#[test]
fn random_damage_never_panics_or_lies() {
    let model = small_model();
    let opts = TableOptions {
        block_size: 32,
        ..TableOptions::default()
    };
    let (bytes, _) = build(&model, 1, &opts);
    let mut rng = Rng::new(7);
    for round in 0..3000 {
        let mut bad = bytes.clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(bad.len() as u64) as usize;
            bad[i] = rng.next() as u8;
        }
        check_against_model(&bad, bad.len() as u64, &model, &format!("round {round}"));
    }
}

/// Every decoder on arbitrary bytes and on damaged versions of real
/// structures: errors, never panics (an in-crate stand-in for the fuzz
/// targets of block, index, filter, properties and footer decoding).
#[test]
fn decoders_never_panic_on_arbitrary_bytes() {
    use super::handle::check_trailer;
    use super::index::IndexBlock;
    use super::internal_key::parse_internal_key;

    let probe_key: &[u8] = b"k\x01\x05\0\0\0\0\0\0";
    let table = GOLDEN_TABLE;
    let seeds: [&[u8]; 6] = [
        &table[..21],                      // data block
        &table[117..139],                  // index block
        &table[26..91],                    // filter
        &FLAT_FILTER_GOLDEN_TABLE[26..35], // flat filter
        &table[96..112],                   // properties
        &table[144..208],                  // footer
    ];
    let mut rng = Rng::new(99);
    for round in 0..50_000u64 {
        let mut data: Vec<u8> = if round % 3 == 0 {
            (0..rng.below(80)).map(|_| rng.next() as u8).collect()
        } else {
            seeds[rng.below(seeds.len() as u64) as usize].to_vec()
        };
        for _ in 0..rng.below(4) {
            if data.is_empty() {
                break;
            }
            let i = rng.below(data.len() as u64) as usize;
            match rng.below(3) {
                0 => data[i] = rng.next() as u8,
                1 => data.truncate(i),
                _ => data.insert(i, rng.next() as u8),
            }
        }
        let _ = check_trailer(&data);
        let _ = Footer::decode(&data);
        let _ = TableProperties::decode(&data);
        let _ = BlockHandle::decode(&data);
        let _ = parse_internal_key(&data);
        let _ = compare_internal(&data, probe_key);
        if let Ok(f) = BloomFilter::decode(&data) {
            let _ = f.may_contain(b"k");
        }
        if let Ok(idx) = IndexBlock::decode(Bytes::from(data.clone()), rng.below(64)) {
            let _ = idx.seek(probe_key);
        }
        if let Ok(block) = Block::decode(Bytes::from(data)) {
            let mut it = block.iter();
            let _ = it.seek(b"a");
            let mut steps = 0;
            let mut ok = it.seek_to_first().is_ok();
            while ok && it.valid() && steps < 100 {
                let _ = parse_internal_key(it.key());
                ok = it.advance().is_ok();
                steps += 1;
            }
        }
    }
}

#[test]
fn oversized_filters_are_corruption() {
    let mut model = Model::new();
    model.insert((b"k".to_vec(), Reverse(5)), Some(b"v".to_vec()));
    let opts = TableOptions {
        bloom_bits_per_key: 100,
        ..TableOptions::default()
    };
    let (bytes, _) = build(&model, 3, &opts);
    assert!(open(&bytes).is_ok(), "100 bits per key is the most allowed");
    // Rewrite everything from the filter on, with one more 64-byte block of
    // filter than one entry could need, and valid CRCs and footer.
    let f = Footer::decode(&bytes[bytes.len() - 64..]).unwrap();
    let fh = f.filter.unwrap();
    let start = fh.offset as usize;
    let mut filter = bytes[start..start + fh.size as usize].to_vec();
    filter.splice(0..0, [0u8; 64]);
    let mut out = bytes[..start].to_vec();
    let put = |contents: &[u8], out: &mut Vec<u8>| {
        let h = BlockHandle {
            offset: out.len() as u64,
            size: contents.len() as u64,
        };
        out.extend_from_slice(contents);
        handle::write_trailer(contents, out);
        h
    };
    let filter_h = put(&filter, &mut out);
    let props = &bytes[f.properties.offset as usize..][..f.properties.size as usize];
    let props_h = put(props, &mut out);
    let index = &bytes[f.index.offset as usize..][..f.index.size as usize];
    let index_h = put(index, &mut out);
    out.extend_from_slice(
        &Footer {
            index: index_h,
            filter: Some(filter_h),
            properties: props_h,
            format_version: FORMAT_VERSION,
        }
        .encode(),
    );
    let err = open(&out).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}

/// Keys `key0000`..`key0999`, one put each at sequence number 1, of
/// `value(i)`.
fn thousand_keys(value: impl Fn(u32) -> Vec<u8>) -> Model {
    (0..1000u32)
        .map(|i| {
            (
                (format!("key{i:04}").into_bytes(), Reverse(1)),
                Some(value(i)),
            )
        })
        .collect()
}

#[test]
fn get_skips_data_blocks_when_the_filter_says_no() {
    let model = thousand_keys(|_| b"v".to_vec());
    let (bytes, _) = build(&model, 0, &TableOptions::default());
    let file = ReadFile::new(bytes.clone());
    let table = Table::open(
        Arc::clone(&file) as Arc<dyn ReadableFile>,
        PathBuf::from("t"),
        bytes.len() as u64,
    )
    .unwrap();
    assert_eq!(file.reads.load(Ordering::SeqCst), 2, "footer + metadata");
    let mut skipped = 0;
    for i in 0..1000u32 {
        // Inside the key range, so only the filter can say no.
        let absent = format!("key{i:04}x");
        let before = file.reads.load(Ordering::SeqCst);
        let filtered = !table.may_contain(absent.as_bytes());
        assert_eq!(table.get(absent.as_bytes(), 5).unwrap(), None);
        let reads = file.reads.load(Ordering::SeqCst) - before;
        if filtered {
            assert_eq!(reads, 0);
            skipped += 1;
        } else {
            assert_eq!(reads, 1);
        }
    }
    assert!(skipped > 950, "{skipped}");
    let before = file.reads.load(Ordering::SeqCst);
    assert!(table.get(b"key0500", 5).unwrap().is_some());
    assert_eq!(file.reads.load(Ordering::SeqCst) - before, 1);
    // Outside the key range nothing is read, filter or not.
    assert_eq!(table.get(b"zzz", 5).unwrap(), None);
    assert_eq!(file.reads.load(Ordering::SeqCst) - before, 1);
}

#[test]
fn tables_without_a_filter_still_answer() {
    let mut model = Model::new();
    for i in 0..100u32 {
        model.insert((format!("{i:03}").into_bytes(), Reverse(1)), None);
    }
    let opts = TableOptions {
        bloom_bits_per_key: 0,
        ..TableOptions::default()
    };
    let (bytes, _) = build(&model, 0, &opts);
    let table = open(&bytes).unwrap();
    assert!(table.footer().filter.is_none());
    assert_eq!(table.get(b"050", 1).unwrap(), Some(Value::Delete));
    assert_eq!(table.get(b"050", 0).unwrap(), None);
    assert_eq!(table.get(b"050x", 1).unwrap(), None);
}

#[test]
fn io_errors_stay_io_errors() {
    #[derive(Debug)]
    struct Failing;
    impl ReadableFile for Failing {
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn len(&self) -> io::Result<u64> {
            Ok(1000)
        }
    }
    let err = Table::open(Arc::new(Failing), PathBuf::from("t"), 1000).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
}

#[test]
fn the_table_iterator_is_a_source_and_streams() {
    let mut model = Model::new();
    for i in 0..2000u32 {
        model.insert(
            (format!("{i:05}").into_bytes(), Reverse(1)),
            Some(vec![1; 100]),
        );
    }
    let (bytes, meta) = build(&model, 0, &TableOptions::default());
    assert!(meta.properties.data_block_count > 40);
    let file = ReadFile::new(bytes.clone());
    let table = open_file(Arc::clone(&file) as Arc<dyn ReadableFile>);
    let before = file.reads.load(Ordering::SeqCst);
    let mut it: Box<dyn Source> = Box::new(table.iter(Some(b"01000")));
    assert_eq!(file.reads.load(Ordering::SeqCst), before, "lazy");
    for i in 1000..1010u32 {
        let e = it.next_entry().unwrap().unwrap();
        assert_eq!(e.key, format!("{i:05}").as_bytes());
    }
    // Ten entries of ~110 bytes: at most two 4 KiB blocks were read.
    assert!(file.reads.load(Ordering::SeqCst) - before <= 2);
}

/// A table opened for a scan (`skip_filter`) neither reads nor checks its
/// filter: a damaged filter, which a normal open reports, goes unnoticed,
/// nothing of it is held, and every read still answers right.
#[test]
fn a_table_opened_without_its_filter_reads_none_of_it() {
    let model = thousand_keys(|i| format!("value{i}").into_bytes());
    let (mut bytes, _) = build(&model, 0, &TableOptions::default());
    let whole = open(&bytes).unwrap();
    let fh = whole.footer().filter.expect("a filter");
    bytes[fh.offset as usize + 3] ^= 0x10;
    assert!(matches!(open(&bytes), Err(Error::Corruption { .. })));
    let table = Arc::new(
        Table::open_with(
            ReadFile::new(bytes.clone()),
            PathBuf::from("t"),
            bytes.len() as u64,
            TableReadOptions {
                skip_filter: true,
                ..TableReadOptions::default()
            },
        )
        .unwrap(),
    );
    assert!(table.footer().filter.is_some());
    assert_eq!(
        whole.metadata_size() - table.metadata_size(),
        fh.size as usize - 1,
        "the filter's bits (its block less the tag byte) are not held"
    );
    let scanned: Vec<Entry> = table.iter_with(None, false).map(|e| e.unwrap()).collect();
    assert_eq!(scanned, model_entries(&model, None));
    for i in (0..1000u32).step_by(7) {
        let key = format!("key{i:04}");
        assert_eq!(
            table.get(key.as_bytes(), 1).unwrap(),
            Some(Value::Put(Bytes::from(format!("value{i}"))))
        );
        assert_eq!(table.get(format!("{key}x").as_bytes(), 1).unwrap(), None);
    }
}

/// A scan that keeps reading blocks reads ahead in growing windows, and
/// the blocks of its windows stay out of the block cache; point reads and
/// short scans cache as before.
#[test]
fn a_long_scan_reads_ahead_and_leaves_the_cache_alone() {
    use crate::cache::BlockCache;
    let model = thousand_keys(|i| vec![i as u8; 100]);
    let (bytes, meta) = build(&model, 0, &TableOptions::default());
    let blocks = meta.properties.data_block_count;
    assert!(blocks > 25, "{blocks} data blocks");
    let file = ReadFile::new(bytes.clone());
    let cache = Arc::new(BlockCache::new(4 << 20));
    let table = Arc::new(
        Table::open_with(
            Arc::clone(&file) as Arc<dyn ReadableFile>,
            PathBuf::from("t"),
            bytes.len() as u64,
            TableReadOptions {
                block_cache: Some((Arc::clone(&cache), 1, 1)),
                ..TableReadOptions::default()
            },
        )
        .unwrap(),
    );
    let reads = || file.reads.load(Ordering::SeqCst);
    let opened = reads();
    let expected = model_entries(&model, None);

    // Two blocks: two reads, no window; both cached.
    let short: Vec<Entry> = table.iter(None).take(60).map(|e| e.unwrap()).collect();
    assert_eq!(short, expected[..60]);
    assert_eq!(reads() - opened, 2);
    assert_eq!(cache.stats().blocks, 2);

    // The first two blocks come from the cache, and continue the sequence:
    // windows of 8, 16, 32, 64 KiB from the third block on.
    let before = reads();
    let all: Vec<Entry> = table.iter(None).map(|e| e.unwrap()).collect();
    assert_eq!(all, expected);
    let scan_reads = reads() - before;
    assert!(scan_reads <= 5, "{scan_reads} reads for {blocks} blocks");
    assert_eq!(cache.stats().blocks, 2, "window blocks are not cached");

    // Again: the same windows, read from the file. The iterator holds a
    // window while it scans, and none once it is done (a merge keeps
    // finished sources until the scan ends).
    let before = reads();
    let mut it = table.iter(None);
    let mut count = 0;
    while let Some(e) = it.next() {
        e.unwrap();
        count += 1;
        if count == 900 {
            assert!(it.window_bytes() > 0);
        }
    }
    assert_eq!(count, model.len());
    assert_eq!(reads() - before, scan_reads);
    assert_eq!(it.window_bytes(), 0, "a finished iterator holds no window");

    // A point read caches its block.
    assert!(table.get(b"key0500", 5).unwrap().is_some());
    assert_eq!(cache.stats().blocks, 3);
}

/// A window that fails to read (a bad sector ahead of the scan) does not
/// end the scan: each block is then read alone, and every entry comes back.
#[test]
fn a_failed_window_read_falls_back_to_single_blocks() {
    #[derive(Debug)]
    struct NoLongReads(Vec<u8>, AtomicUsize);
    impl ReadableFile for NoLongReads {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            // The footer and metadata reads at open are let through.
            if buf.len() > 5000 && offset < 100_000 {
                self.1.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::other("injected: bad sector ahead"));
            }
            let start = usize::try_from(offset).unwrap();
            let n = buf.len().min(self.0.len().saturating_sub(start));
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }
        fn len(&self) -> io::Result<u64> {
            Ok(self.0.len() as u64)
        }
    }
    let model = thousand_keys(|i| vec![i as u8; 100]);
    let (bytes, _) = build(&model, 0, &TableOptions::default());
    assert!(bytes.len() > 100_000);
    let file = Arc::new(NoLongReads(bytes.clone(), AtomicUsize::new(0)));
    let table = open_file(Arc::clone(&file) as Arc<dyn ReadableFile>);
    let all: Vec<Entry> = table.iter(None).map(|e| e.unwrap()).collect();
    assert_eq!(all, model_entries(&model, None));
    assert!(file.1.load(Ordering::SeqCst) > 0, "windows were tried");
}
