//! The memtable: an in-memory, concurrent, multi-version sorted map.
//!
//! Every write gets its own sequence number ([`SeqNo`]). The memtable keeps
//! every version of every key, ordered by *internal key*: user key ascending
//! (bytewise), then sequence number **descending**, so the newest version of
//! a key comes first. A reader "as of" snapshot `S` sees, for each key, the
//! first version in that order whose sequence number is `<= S`.
//!
//! The map is a lock-free `crossbeam_skiplist::SkipMap`. Point lookups probe it
//! with a borrowed `(&[u8], SeqNo)` through a `dyn KeyRef` trait object, so a
//! `get` allocates nothing. Scans use [`MemtableIter`], an owned streaming
//! cursor that copies a few entries at a time (cheap `Bytes` clones).
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;

use crate::merge::Entry;

/// A sequence number. Every write operation has its own; larger is newer.
pub type SeqNo = u64;

/// What one version of a key says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// The key holds these bytes (possibly empty).
    Put(Bytes),
    /// A tombstone: the key is deleted as of this version.
    Delete,
}

/// Bytes charged per entry on top of its key and value bytes: the skip-list
/// node's key and value structs plus an estimate of the node header and
/// tower (refcount/height word and ~1.33 tower pointers on average, rounded
/// up for allocator slack).
const NODE_OVERHEAD: usize = 32;

/// The per-entry overhead that [`Memtable::approximate_size`] adds to each
/// entry's key and value length.
pub const ENTRY_OVERHEAD: usize =
    std::mem::size_of::<InternalKey>() + std::mem::size_of::<Value>() + NODE_OVERHEAD;

/// How many entries a [`MemtableIter`] copies out of the skip list per refill.
const ITER_BATCH: usize = 32;

/// User keys up to this many bytes are stored inside the skip-list node.
const INLINE_KEY: usize = 30;

/// A user key as the skip list stores it: short keys inside the node, so a
/// comparison on the search path touches one cache line instead of chasing a
/// pointer to the key bytes (the memtable's inserts and lookups are bound by
/// those cache misses); longer keys in a shared buffer.
#[derive(Clone, Debug)]
enum UserKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Shared(Bytes),
}

impl UserKey {
    /// Copies a short key into the node; shares a long one.
    fn new(key: Bytes) -> UserKey {
        Self::inline(&key).unwrap_or(UserKey::Shared(key))
    }

    /// Copies `key` (the node holds it, or a new buffer does).
    fn copy_from(key: &[u8]) -> UserKey {
        Self::inline(key).unwrap_or_else(|| UserKey::Shared(Bytes::copy_from_slice(key)))
    }

    fn inline(key: &[u8]) -> Option<UserKey> {
        let mut bytes = [0u8; INLINE_KEY];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(UserKey::Inline {
            len: key.len() as u8,
            bytes,
        })
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            UserKey::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            UserKey::Shared(b) => b,
        }
    }
}

/// A stored key: user key plus sequence number.
///
/// Invariant: its `Ord` is the one of `dyn KeyRef` (see [`compare_keys`]), so
/// the skip list can be probed with borrowed keys.
#[derive(Clone, Debug)]
struct InternalKey {
    user_key: UserKey,
    seq: SeqNo,
}

/// A view of an internal key, implemented by the stored [`InternalKey`] and by
/// a borrowed `(&[u8], SeqNo)` probe. `dyn KeyRef` is the skip list's
/// `Borrow` target, which lets lookups avoid building an `InternalKey`.
trait KeyRef {
    /// The user key.
    fn user_key(&self) -> &[u8];
    /// The sequence number.
    fn seq(&self) -> SeqNo;
}

impl KeyRef for InternalKey {
    fn user_key(&self) -> &[u8] {
        self.user_key.as_slice()
    }
    fn seq(&self) -> SeqNo {
        self.seq
    }
}

impl KeyRef for (&[u8], SeqNo) {
    fn user_key(&self) -> &[u8] {
        self.0
    }
    fn seq(&self) -> SeqNo {
        self.1
    }
}

/// The internal-key order: user key ascending, then sequence number
/// descending (newest first).
fn compare_keys(a: &dyn KeyRef, b: &dyn KeyRef) -> Ordering {
    crate::coding::compare_bytes(a.user_key(), b.user_key()).then_with(|| b.seq().cmp(&a.seq()))
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        compare_keys(self, other) == Ordering::Equal
    }
}

impl Eq for dyn KeyRef + '_ {}

impl PartialOrd for dyn KeyRef + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyRef + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(self, other)
    }
}

impl PartialEq for InternalKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InternalKey {}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(self, other)
    }
}

impl<'a> Borrow<dyn KeyRef + 'a> for InternalKey {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

/// An in-memory sorted table of versioned writes.
///
/// # Thread safety
/// `Send + Sync`. Any number of threads may call [`insert`](Self::insert)
/// concurrently, and reads ([`get`](Self::get), iterators) run concurrently
/// with writes; nothing takes a lock, so readers never block writers.
///
/// # Invariants
/// - Entries are ordered by internal key (user key ascending, sequence number
///   descending); each `(user key, seq)` pair is present at most once.
/// - Nothing is ever removed: the table only grows until it is dropped.
/// - The caller gives each write its own sequence number. Inserting the same
///   `(key, seq)` twice replaces the value (and the size estimate counts both).
/// - Once all inserts have returned, [`approximate_size`](Self::approximate_size)
///   and [`max_seq`](Self::max_seq) account for every one of them; while inserts
///   are in flight they may lag or lead the skip list by those inserts.
#[derive(Debug)]
pub struct Memtable {
    map: SkipMap<InternalKey, Value>,
    size: AtomicUsize,
    max_seq: AtomicU64,
    /// Number of the oldest WAL file that may hold this table's entries.
    wal: u64,
}

impl Default for Memtable {
    fn default() -> Self {
        Self::new()
    }
}

impl Memtable {
    /// An empty memtable.
    #[must_use]
    pub fn new() -> Self {
        Self::for_wal(0)
    }

    /// An empty memtable whose entries live in WAL files numbered `wal` and
    /// later (the WAL may be deleted only once the table is flushed).
    #[must_use]
    pub fn for_wal(wal: u64) -> Self {
        Memtable {
            map: SkipMap::new(),
            size: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            wal,
        }
    }

    /// Number of the oldest WAL file that may hold this table's entries.
    pub fn wal(&self) -> u64 {
        self.wal
    }

    /// Records version `seq` of `key`: `Some(value)` is a put, `None` a
    /// delete (tombstone). The bytes are copied. Returns the bytes it added
    /// to [`approximate_size`](Self::approximate_size).
    pub fn insert(&self, key: &[u8], seq: SeqNo, value: Option<&[u8]>) -> usize {
        self.insert_key(
            UserKey::copy_from(key),
            seq,
            value.map(Bytes::copy_from_slice),
        )
    }

    /// As [`insert`](Self::insert), taking shared buffers without copying
    /// (recovery slices one buffer holding every replayed key and value).
    pub fn insert_shared(&self, key: Bytes, seq: SeqNo, value: Option<Bytes>) -> usize {
        self.insert_key(UserKey::new(key), seq, value)
    }

    fn insert_key(&self, key: UserKey, seq: SeqNo, value: Option<Bytes>) -> usize {
        let value = match value {
            Some(v) => Value::Put(v),
            None => Value::Delete,
        };
        let value_len = match &value {
            Value::Put(v) => v.len(),
            Value::Delete => 0,
        };
        let charge = key.as_slice().len() + value_len + ENTRY_OVERHEAD;
        self.map.insert(InternalKey { user_key: key, seq }, value);
        self.size.fetch_add(charge, AtomicOrdering::Relaxed);
        self.max_seq.fetch_max(seq, AtomicOrdering::Relaxed);
        charge
    }

    /// The newest version of `key` with sequence number `<= snapshot`.
    ///
    /// `Some(Value::Delete)` means a tombstone decides the key (older tables
    /// must not be consulted); `None` means this table knows nothing about
    /// the key as of `snapshot`.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Option<Value> {
        // The first entry at or after (key, snapshot) is the newest version of
        // `key` with seq <= snapshot, if `key` has one; else a larger key.
        let probe = (key, snapshot);
        let found = self
            .map
            .lower_bound(Bound::Included(&probe as &dyn KeyRef))?;
        if found.key().user_key.as_slice() == key {
            Some(found.value().clone())
        } else {
            None
        }
    }

    /// Bytes of keys and values plus [`ENTRY_OVERHEAD`] per inserted entry.
    pub fn approximate_size(&self) -> usize {
        self.size.load(AtomicOrdering::Relaxed)
    }

    /// The number of entries (versions, tombstones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The largest sequence number inserted, 0 if none.
    pub fn max_seq(&self) -> SeqNo {
        self.max_seq.load(AtomicOrdering::Relaxed)
    }

    /// A streaming iterator over every version of every key `>= start`
    /// (all keys if `None`), in internal-key order. It holds the table alive.
    #[must_use]
    pub fn iter(self: &Arc<Self>, start: Option<&[u8]>) -> MemtableIter {
        MemtableIter {
            table: Arc::clone(self),
            buf: VecDeque::with_capacity(ITER_BATCH),
            cursor: Cursor::Start(start.map(Bytes::copy_from_slice)),
            batch: 1,
        }
    }
}

/// Where a [`MemtableIter`]'s next refill starts.
#[derive(Debug)]
enum Cursor {
    /// Nothing read yet: at the first entry whose user key is `>= start`.
    Start(Option<Bytes>),
    /// Just after this internal key, the last one copied out.
    After(Bytes, SeqNo),
    /// The table was exhausted; the iterator is fused.
    Done,
}

/// An owned, streaming iterator over a [`Memtable`]'s entries, in
/// internal-key order, every version included (snapshot filtering is the
/// reader's job, see [`crate::merge::SnapshotIter`]).
///
/// # Thread safety
/// `Send`; holds an `Arc` of its table. Each refill copies up to 32 entries
/// (cheap `Bytes` clones) starting just after the last internal key
/// returned, so work per `next` is bounded.
///
/// # Invariants
/// Entries come in strictly increasing internal-key order: no duplicates, and
/// every entry present when the iterator was created (at or after `start`) is
/// returned. Entries inserted concurrently may or may not appear; once `next`
/// has returned `None` it always does.
#[derive(Debug)]
pub struct MemtableIter {
    table: Arc<Memtable>,
    buf: VecDeque<Entry>,
    cursor: Cursor,
    /// Entries the next refill copies: 1 at first, doubling up to
    /// `ITER_BATCH`, so that opening a merge over many tables stays cheap.
    batch: usize,
}

impl MemtableIter {
    /// Copies the next batch of entries out of the skip list into `buf`.
    fn refill(&mut self) {
        let map = &self.table.map;
        let buf = &mut self.buf;
        let take = self.batch;
        self.batch = (self.batch * 2).min(ITER_BATCH);
        // Keys stored in the nodes are copied out into one buffer per refill
        // (`keys`), then sliced: one allocation per batch, not per entry.
        let mut raw: Vec<(Option<Bytes>, std::ops::Range<usize>, SeqNo, Value)> =
            Vec::with_capacity(take);
        let mut keys: Vec<u8> = Vec::new();
        let mut copy = |e: crossbeam_skiplist::map::Entry<'_, InternalKey, Value>| {
            let k = e.key();
            let shared = match &k.user_key {
                UserKey::Shared(b) => Some(b.clone()),
                UserKey::Inline { .. } => None,
            };
            let start = keys.len();
            if shared.is_none() {
                keys.extend_from_slice(k.user_key.as_slice());
            }
            raw.push((shared, start..keys.len(), k.seq, e.value().clone()));
        };
        match &self.cursor {
            Cursor::Done => return,
            Cursor::Start(None) => map.iter().take(take).for_each(&mut copy),
            Cursor::Start(Some(start)) => {
                // (start, SeqNo::MAX) is the smallest internal key with user
                // key `start`.
                let probe = (start.as_ref(), SeqNo::MAX);
                let range = (
                    Bound::Included(&probe as &dyn KeyRef),
                    Bound::<&dyn KeyRef>::Unbounded,
                );
                map.range::<dyn KeyRef, _>(range)
                    .take(take)
                    .for_each(&mut copy);
            }
            Cursor::After(key, seq) => {
                let probe = (key.as_ref(), *seq);
                let range = (
                    Bound::Excluded(&probe as &dyn KeyRef),
                    Bound::<&dyn KeyRef>::Unbounded,
                );
                map.range::<dyn KeyRef, _>(range)
                    .take(take)
                    .for_each(&mut copy);
            }
        }
        let keys = Bytes::from(keys);
        buf.extend(raw.into_iter().map(|(shared, at, seq, value)| Entry {
            key: shared.unwrap_or_else(|| keys.slice(at)),
            seq,
            value,
        }));
        self.cursor = match buf.back() {
            Some(last) => Cursor::After(last.key.clone(), last.seq),
            None => Cursor::Done,
        };
    }
}

impl Iterator for MemtableIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.buf.is_empty() {
            self.refill();
        }
        self.buf.pop_front()
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Memtable>();
    send::<MemtableIter>();
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    fn put(v: &[u8]) -> Option<Value> {
        Some(Value::Put(Bytes::copy_from_slice(v)))
    }

    fn all(t: &Arc<Memtable>, start: Option<&[u8]>) -> Vec<(Vec<u8>, SeqNo, Value)> {
        t.iter(start)
            .map(|e| (e.key.to_vec(), e.seq, e.value))
            .collect()
    }

    #[test]
    fn get_sees_newest_version_at_or_below_snapshot() {
        let t = Memtable::new();
        t.insert(b"k", 5, Some(b"v5"));
        t.insert(b"k", 10, Some(b"v10"));
        t.insert(b"k", 7, Some(b"v7"));
        t.insert(b"j", 3, Some(b"j3"));
        t.insert(b"l", 1, Some(b"l1"));
        assert_eq!(t.get(b"k", 4), None);
        assert_eq!(t.get(b"k", 5), put(b"v5"));
        assert_eq!(t.get(b"k", 6), put(b"v5"));
        assert_eq!(t.get(b"k", 7), put(b"v7"));
        assert_eq!(t.get(b"k", 9), put(b"v7"));
        assert_eq!(t.get(b"k", 10), put(b"v10"));
        assert_eq!(t.get(b"k", SeqNo::MAX), put(b"v10"));
        assert_eq!(t.get(b"j", 2), None);
        assert_eq!(t.get(b"j", 3), put(b"j3"));
        assert_eq!(t.get(b"kk", 100), None);
        assert_eq!(t.get(b"a", 100), None);
        assert_eq!(t.get(b"z", 100), None);
    }

    #[test]
    fn tombstones_decide_the_key() {
        let t = Memtable::new();
        t.insert(b"k", 1, Some(b"old"));
        t.insert(b"k", 2, None);
        t.insert(b"k", 3, Some(b""));
        assert_eq!(t.get(b"k", 1), put(b"old"));
        assert_eq!(t.get(b"k", 2), Some(Value::Delete));
        assert_eq!(t.get(b"k", 3), put(b""));
        t.insert(b"only-deleted", 4, None);
        assert_eq!(t.get(b"only-deleted", 4), Some(Value::Delete));
        assert_eq!(t.get(b"only-deleted", 3), None);
    }

    #[test]
    fn empty_and_ff_keys() {
        let t = Arc::new(Memtable::new());
        t.insert(b"\xff\xff", 1, Some(b"ffff"));
        t.insert(b"", 2, Some(b"empty"));
        t.insert(b"\xff", 3, Some(b"ff"));
        t.insert(b"\x00", 4, Some(b"zero"));
        assert_eq!(t.get(b"", 10), put(b"empty"));
        assert_eq!(t.get(b"", 1), None);
        assert_eq!(t.get(b"\xff", 10), put(b"ff"));
        assert_eq!(t.get(b"\xff\xff", 10), put(b"ffff"));
        assert_eq!(t.get(b"\xff\xff\xff", 10), None);
        let keys: Vec<Vec<u8>> = all(&t, None).into_iter().map(|e| e.0).collect();
        assert_eq!(
            keys,
            vec![
                b"".to_vec(),
                b"\x00".to_vec(),
                b"\xff".to_vec(),
                b"\xff\xff".to_vec()
            ]
        );
        let from_empty: Vec<Vec<u8>> = all(&t, Some(b"")).into_iter().map(|e| e.0).collect();
        assert_eq!(from_empty, keys);
    }

    #[test]
    fn prefix_keys_order_bytewise() {
        let t = Arc::new(Memtable::new());
        t.insert(b"ab", 1, Some(b"3"));
        t.insert(b"a\0", 2, Some(b"2"));
        t.insert(b"a", 3, Some(b"1"));
        t.insert(b"a", 4, None);
        let got: Vec<(Vec<u8>, SeqNo)> = all(&t, None).into_iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), 4),
                (b"a".to_vec(), 3),
                (b"a\0".to_vec(), 2),
                (b"ab".to_vec(), 1)
            ]
        );
        assert_eq!(t.get(b"a", 3), put(b"1"));
        assert_eq!(t.get(b"a\0", 1), None);
    }

    #[test]
    fn iter_from_start_includes_every_version_of_start() {
        let t = Arc::new(Memtable::new());
        for (i, k) in [b"b", b"d", b"f"].iter().enumerate() {
            for s in 0..3u64 {
                t.insert(*k, (i as u64) * 10 + s, Some(b"x"));
            }
        }
        let got = all(&t, Some(b"d"));
        assert_eq!(got.len(), 6);
        assert_eq!((got[0].0.as_slice(), got[0].1), (&b"d"[..], 12));
        assert_eq!((got[2].0.as_slice(), got[2].1), (&b"d"[..], 10));
        assert_eq!((got[3].0.as_slice(), got[3].1), (&b"f"[..], 22));
        // Start between keys.
        let got = all(&t, Some(b"c"));
        assert_eq!(got[0].0, b"d");
        assert_eq!(got.len(), 6);
        // Start before all / after all.
        assert_eq!(all(&t, Some(b"a")).len(), 9);
        assert!(all(&t, Some(b"g")).is_empty());
        // Empty table.
        assert!(all(&Arc::new(Memtable::new()), None).is_empty());
    }

    #[test]
    fn inline_and_shared_keys_mix_in_one_order() {
        // Lengths around the inline limit, sharing prefixes, inserted in a
        // scrambled order through both insert paths.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for len in [0, 1, 8, 29, 30, 31, 32, 64, 200] {
            for fill in [0u8, 7, 0xff] {
                keys.push(vec![fill; len]);
                let mut k = vec![7u8; len];
                k.push(1);
                keys.push(k);
            }
        }
        keys.sort();
        keys.dedup();
        let t = Arc::new(Memtable::new());
        for (i, k) in keys.iter().enumerate().rev().step_by(2) {
            t.insert(k, i as SeqNo + 1, Some(k));
        }
        for (i, k) in keys.iter().enumerate().step_by(2) {
            t.insert_shared(
                Bytes::copy_from_slice(k),
                i as SeqNo + 1,
                Some(Bytes::copy_from_slice(k)),
            );
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.get(k, SeqNo::MAX), put(k), "key of {} bytes", k.len());
            assert_eq!(t.get(k, i as SeqNo), None, "before its write");
        }
        let got: Vec<Vec<u8>> = all(&t, None).into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(got, keys);
        let from: Vec<Vec<u8>> = all(&t, Some(&[7u8; 30]))
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        let expect: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| k.as_slice() >= &[7u8; 30][..])
            .cloned()
            .collect();
        assert_eq!(from, expect);
    }

    #[test]
    fn iter_crosses_refill_batches_without_gaps_or_dups() {
        // Many versions of one key straddle several refills: the cursor must
        // resume by (key, seq), not by key.
        let t = Arc::new(Memtable::new());
        let mut expected = Vec::new();
        for k in 0..5u8 {
            for s in 0..(ITER_BATCH as u64 * 2 + 3) {
                let seq = u64::from(k) * 1000 + s;
                t.insert(&[k], seq, Some(&seq.to_be_bytes()));
                expected.push((vec![k], seq));
            }
        }
        expected.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let got: Vec<(Vec<u8>, SeqNo)> = all(&t, None).into_iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(got, expected);
        let got: Vec<(Vec<u8>, SeqNo)> = all(&t, Some(&[2]))
            .into_iter()
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(got, expected[expected.len() * 2 / 5..].to_vec());
    }

    #[test]
    fn iter_is_fused_and_holds_the_table() {
        let t = Arc::new(Memtable::new());
        t.insert(b"a", 1, Some(b"1"));
        let mut it = t.iter(None);
        drop(t);
        assert_eq!(it.next().map(|e| e.seq), Some(1));
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }

    #[test]
    fn iter_while_inserting_concurrently() {
        let t = Arc::new(Memtable::new());
        // Pre-existing: even keys.
        let key = |i: u32| format!("key{i:08}").into_bytes();
        for i in (0..4000u32).step_by(2) {
            t.insert(&key(i), u64::from(i) + 1, Some(b"pre"));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let t = Arc::clone(&t);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                // Odd keys, and new versions of even keys.
                let mut seq = 1_000_000u64;
                let mut n = 0u32;
                while !stop.load(AtomicOrdering::Relaxed) && n < 200_000 {
                    let i = (n * 7919) % 4000;
                    t.insert(&key(i), seq, Some(b"new"));
                    seq += 1;
                    n += 1;
                }
            })
        };
        let mut seen = 0;
        for _ in 0..20 {
            let mut prev: Option<(Bytes, SeqNo)> = None;
            let mut pre_seen = 0;
            for e in t.iter(None) {
                if let Some((pk, ps)) = &prev {
                    let ordered = pk.as_ref() < e.key.as_ref() || (pk == &e.key && *ps > e.seq);
                    assert!(
                        ordered,
                        "out of order or duplicate: {pk:?}/{ps} then {:?}/{}",
                        e.key, e.seq
                    );
                }
                if e.seq < 1_000_000 {
                    pre_seen += 1;
                }
                seen += 1;
                prev = Some((e.key, e.seq));
            }
            assert_eq!(pre_seen, 2000, "a pre-existing entry was skipped");
        }
        stop.store(true, AtomicOrdering::Relaxed);
        writer.join().unwrap();
        assert!(seen >= 20 * 2000);
    }

    #[test]
    fn concurrent_inserts_from_several_threads() {
        let t = Arc::new(Memtable::new());
        let threads: Vec<_> = (0..4u64)
            .map(|w| {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    for i in 0..1000u64 {
                        let seq = i * 4 + w + 1;
                        t.insert(
                            format!("k{}", i % 100).as_bytes(),
                            seq,
                            Some(&seq.to_le_bytes()),
                        );
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.len(), 4000);
        assert_eq!(t.max_seq(), 4000);
        assert_eq!(all(&t, None).len(), 4000);
        // Newest version of k0 is the largest seq whose i % 100 == 0.
        let newest = (900 * 4 + 3 + 1) as u64;
        assert_eq!(t.get(b"k0", SeqNo::MAX), put(&newest.to_le_bytes()));
    }

    #[test]
    fn size_len_and_max_seq_accounting() {
        let t = Memtable::new();
        assert!(t.is_empty());
        assert_eq!((t.len(), t.approximate_size(), t.max_seq()), (0, 0, 0));
        t.insert(b"abc", 7, Some(b"12345"));
        assert_eq!(t.approximate_size(), 3 + 5 + ENTRY_OVERHEAD);
        assert_eq!((t.len(), t.max_seq()), (1, 7));
        t.insert(b"abc", 3, None);
        assert_eq!(t.approximate_size(), 3 + 5 + 3 + 2 * ENTRY_OVERHEAD);
        assert_eq!((t.len(), t.max_seq()), (2, 7));
        let before = t.approximate_size();
        t.insert(b"x", 9, Some(&[0u8; 1000]));
        assert!(t.approximate_size() >= before + 1001);
        assert_eq!((t.len(), t.max_seq()), (3, 9));
        assert!(!t.is_empty());
    }
}
