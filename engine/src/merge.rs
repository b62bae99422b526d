//! Merging sorted sources of versioned entries, and reading them as of a
//! snapshot.
//!
//! A [`Source`] yields [`Entry`]s in internal-key order (user key ascending,
//! sequence number descending). [`MergeIter`] merges any number of sources
//! into one stream in that order, every version included. [`SnapshotIter`]
//! turns that stream into the user's view as of one sequence number: for
//! each key, the newest version at or below the snapshot decides, and
//! tombstones hide the key.
//!
//! Everything streams: each `next` pulls at most one entry from one source
//! (plus one per source on the first call), so `take(10)` costs about ten
//! entries, not the whole range.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use bytes::Bytes;

use crate::error::Result;
use crate::memtable::{MemtableIter, SeqNo, Value};

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The user key.
    pub key: Bytes,
    /// The sequence number of the write that made this version.
    pub seq: SeqNo,
    /// What the write did.
    pub value: Value,
}

impl Entry {
    /// The internal-key order: user key ascending, then sequence number
    /// descending (newest first). Values are not compared.
    pub fn cmp_internal(&self, other: &Entry) -> Ordering {
        crate::coding::compare_bytes(&self.key, &other.key).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A sorted stream of entries: a memtable iterator, an `SSTable` iterator, or
/// another merge.
///
/// Contract: entries come in strictly increasing internal-key order (see
/// [`Entry::cmp_internal`]). After `Some(Err(_))` the caller stops asking;
/// [`MergeIter`] never calls a source again after an error or after `None`.
/// `MergeIter` does not check the order: each source checks its own (a table
/// reports entries out of order as corruption).
pub trait Source: Send {
    /// The next entry, `None` at the end, or the error that stopped the
    /// stream.
    fn next_entry(&mut self) -> Option<Result<Entry>>;
}

impl Source for MemtableIter {
    fn next_entry(&mut self) -> Option<Result<Entry>> {
        self.next().map(Ok)
    }
}

/// A heap slot: the current head entry of source `src`.
#[derive(Debug)]
struct Head {
    entry: Entry,
    src: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    /// Internal-key order; equal internal keys (which should not happen)
    /// are ordered by source index, lower first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.entry
            .cmp_internal(&other.entry)
            .then_with(|| self.src.cmp(&other.src))
    }
}

/// Where a [`MergeIter`] stands.
#[derive(Debug)]
enum MergeState {
    /// No source has been read yet.
    Unprimed,
    /// Running. `refill` is the source whose head was last returned: its
    /// next entry is pulled lazily, at the start of the next call. (Sources
    /// check their own order: a table reports entries out of order as
    /// corruption.)
    Running { refill: Option<usize> },
    /// Ended, by exhaustion or after yielding an error.
    Fused,
}

/// A k-way merge of [`Source`]s into one stream in internal-key order, every
/// version included.
///
/// # Thread safety
/// `Send` (every source is), not `Sync`; one thread drives it at a time.
///
/// # Invariants
/// - The heap holds at most one entry per source: the smallest entry of that
///   source not yet returned. A source is read only when its previous head
///   was returned, and only on the next call, so work per `next` is one pull.
/// - Ties on equal `(key, seq)` are broken by source index, lower first.
/// - An error from a source is yielded once; after it, and after the end,
///   `next` returns `None`.
pub struct MergeIter {
    sources: Vec<Box<dyn Source>>,
    heap: BinaryHeap<Reverse<Head>>,
    state: MergeState,
}

impl std::fmt::Debug for MergeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeIter")
            .field("sources", &self.sources.len())
            .field("heap", &self.heap)
            .field("state", &self.state)
            .finish()
    }
}

impl MergeIter {
    /// A merge of `sources`. Nothing is read until the first `next`.
    #[must_use]
    pub fn new(sources: Vec<Box<dyn Source>>) -> Self {
        let heap = BinaryHeap::with_capacity(sources.len());
        MergeIter {
            sources,
            heap,
            state: MergeState::Unprimed,
        }
    }

    /// The next entry of source `src` as a heap slot (`None` at its end).
    fn read(&mut self, src: usize) -> Result<Option<Head>> {
        let Some(source) = self.sources.get_mut(src) else {
            return Ok(None);
        };
        match source.next_entry() {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(entry)) => Ok(Some(Head { entry, src })),
        }
    }
}

impl Iterator for MergeIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        let pulled = match std::mem::replace(&mut self.state, MergeState::Fused) {
            MergeState::Fused => return None,
            MergeState::Unprimed => (0..self.sources.len()).try_for_each(|i| {
                if let Some(head) = self.read(i)? {
                    self.heap.push(Reverse(head));
                }
                Ok(())
            }),
            MergeState::Running { refill: None } => Ok(()),
            MergeState::Running { refill: Some(src) } => match self.read(src) {
                Ok(Some(head)) => {
                    // Still the smallest (one source, or a run of one
                    // source's keys): returned without a trip through the
                    // heap.
                    let next = match self.heap.peek_mut() {
                        // The top is next: put the new head in its place
                        // (one sift down as `top` drops, instead of a push
                        // and a pop).
                        Some(mut top) if head.cmp(&top.0) != Ordering::Less => {
                            std::mem::replace(&mut *top, Reverse(head)).0
                        }
                        _ => head,
                    };
                    self.state = MergeState::Running {
                        refill: Some(next.src),
                    };
                    return Some(Ok(next.entry));
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };
        // The state stays `Fused` on an error and at the end.
        if let Err(e) = pulled {
            self.heap.clear();
            return Some(Err(e));
        }
        let Reverse(head) = self.heap.pop()?;
        self.state = MergeState::Running {
            refill: Some(head.src),
        };
        Some(Ok(head.entry))
    }
}

impl Source for MergeIter {
    fn next_entry(&mut self) -> Option<Result<Entry>> {
        self.next()
    }
}

/// The user's view of a [`MergeIter`] as of a snapshot: `(key, value)` pairs
/// in ascending key order, within `[start, end)`.
///
/// For each user key the first entry with `seq <= snapshot` decides: a put
/// yields the pair, a tombstone hides the key. Entries newer than the
/// snapshot are ignored.
///
/// # Thread safety
/// `Send`, not `Sync`.
///
/// # Invariants
/// - Keys are strictly increasing; each is `>= start` and `< end`. The
///   sources should already be positioned at `start`; entries below it are
///   skipped anyway.
/// - Work per `next` is bounded apart from skipping versions newer than the
///   snapshot, shadowed versions and tombstones. The first key `>= end` ends
///   the scan without reading further.
/// - After an `Err` item, or the end, `next` returns `None`.
#[derive(Debug)]
pub struct SnapshotIter {
    merge: MergeIter,
    snapshot: SeqNo,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    /// The last user key decided (yielded or hidden by a tombstone): its
    /// older versions are skipped.
    decided: Option<Bytes>,
    done: bool,
}

impl SnapshotIter {
    /// The view of `merge` as of `snapshot`, restricted to keys `>= start`
    /// (if given) and `< end` (if given). `start >= end` yields nothing.
    #[must_use]
    pub fn new(
        merge: MergeIter,
        snapshot: SeqNo,
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
    ) -> Self {
        SnapshotIter {
            merge,
            snapshot,
            start,
            end,
            decided: None,
            done: false,
        }
    }
}

impl Iterator for SnapshotIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let entry = match self.merge.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(entry)) => entry,
            };
            if let Some(end) = &self.end {
                if entry.key.as_ref() >= end.as_slice() {
                    self.done = true;
                    return None;
                }
            }
            if let Some(start) = &self.start {
                if entry.key.as_ref() < start.as_slice() {
                    continue;
                }
            }
            if entry.seq > self.snapshot || self.decided.as_ref() == Some(&entry.key) {
                continue;
            }
            self.decided = Some(entry.key.clone());
            // A tombstone hides the key: go on to the next one.
            if let Value::Put(v) = entry.value {
                return Some(Ok((entry.key.to_vec(), v.to_vec())));
            }
        }
    }
}

impl std::iter::FusedIterator for SnapshotIter {}

const _: () = {
    const fn send<T: Send>() {}
    send::<MergeIter>();
    send::<SnapshotIter>();
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::memtable::Memtable;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::sync::Arc;

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

    /// A scripted source: yields its items in order, counting pulls.
    struct Scripted {
        items: std::vec::IntoIter<Result<Entry>>,
        pulls: Arc<AtomicUsize>,
    }

    impl Source for Scripted {
        fn next_entry(&mut self) -> Option<Result<Entry>> {
            self.pulls.fetch_add(1, AtomicOrdering::Relaxed);
            self.items.next()
        }
    }

    fn entry(key: &[u8], seq: SeqNo, value: Option<&[u8]>) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key),
            seq,
            value: value.map_or(Value::Delete, |v| Value::Put(Bytes::copy_from_slice(v))),
        }
    }

    fn scripted(items: Vec<Result<Entry>>) -> (Box<dyn Source>, Arc<AtomicUsize>) {
        let pulls = Arc::new(AtomicUsize::new(0));
        let src = Scripted {
            items: items.into_iter(),
            pulls: Arc::clone(&pulls),
        };
        (Box::new(src), pulls)
    }

    fn io_error(msg: &str) -> Error {
        Error::Io(std::io::Error::other(msg.to_string()))
    }

    const KEYS: &[&[u8]] = &[
        b"",
        b"\x00",
        b"a",
        b"a\x00",
        b"ab",
        b"b",
        b"ba",
        b"c",
        b"\xfe",
        b"\xff",
        b"\xff\xff",
    ];

    fn random_key(rng: &mut Rng) -> Vec<u8> {
        if rng.below(4) == 0 {
            // An arbitrary short key, to exercise more prefixes.
            (0..rng.below(3))
                .map(|_| rng.below(4) as u8 * 0x55)
                .collect()
        } else {
            KEYS[rng.below(KEYS.len() as u64) as usize].to_vec()
        }
    }

    fn random_bound(rng: &mut Rng) -> Option<Vec<u8>> {
        if rng.below(3) == 0 {
            None
        } else {
            Some(random_key(rng))
        }
    }

    #[test]
    fn merged_snapshot_reads_match_a_btreemap_model() {
        for seed in 0..300u64 {
            let mut rng = Rng::new(seed);
            let n_tables = 1 + rng.below(4) as usize;
            let tables: Vec<Arc<Memtable>> =
                (0..n_tables).map(|_| Arc::new(Memtable::new())).collect();
            // History of (seq, key, value); seq = index + 1.
            let mut history: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            let n_ops = 1 + rng.below(200);
            for i in 0..n_ops {
                let key = random_key(&mut rng);
                let value = if rng.below(3) == 0 {
                    None
                } else {
                    Some(format!("v{i}").into_bytes())
                };
                let t = &tables[rng.below(n_tables as u64) as usize];
                t.insert(&key, i + 1, value.as_deref());
                history.push((key, value));
            }
            for _ in 0..10 {
                let snapshot = rng.below(n_ops + 2);
                let start = random_bound(&mut rng);
                let end = random_bound(&mut rng);
                let mut model = BTreeMap::new();
                for (key, value) in history.iter().take(snapshot as usize) {
                    match value {
                        Some(v) => model.insert(key.clone(), v.clone()),
                        None => model.remove(key),
                    };
                }
                let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                    .into_iter()
                    .filter(|(k, _)| start.as_ref().is_none_or(|s| k >= s))
                    .filter(|(k, _)| end.as_ref().is_none_or(|e| k < e))
                    .collect();
                // Half the time position the sources at `start`; otherwise
                // SnapshotIter's defensive skip must do it.
                let positioned = rng.below(2) == 0;
                let sources: Vec<Box<dyn Source>> = tables
                    .iter()
                    .map(|t| {
                        let s = if positioned { start.as_deref() } else { None };
                        Box::new(t.iter(s)) as Box<dyn Source>
                    })
                    .collect();
                let got: Vec<(Vec<u8>, Vec<u8>)> = SnapshotIter::new(
                    MergeIter::new(sources),
                    snapshot,
                    start.clone(),
                    end.clone(),
                )
                .collect::<Result<_>>()
                .unwrap();
                assert_eq!(
                    got, expected,
                    "seed {seed}, snapshot {snapshot}, start {start:?}, end {end:?}"
                );
                // Point reads agree with the model too (newest table wins).
                for key in KEYS {
                    let want = history
                        .iter()
                        .take(snapshot as usize)
                        .rev()
                        .find(|(k, _)| k.as_slice() == *key)
                        .map(|(_, v)| match v {
                            Some(v) => Value::Put(Bytes::copy_from_slice(v)),
                            None => Value::Delete,
                        });
                    let got = tables
                        .iter()
                        .filter_map(|t| {
                            let (seq, value) = t.iter(Some(key)).find_map(|e| {
                                (e.key.as_ref() == *key && e.seq <= snapshot)
                                    .then_some((e.seq, e.value))
                            })?;
                            assert_eq!(t.get(key, snapshot), Some(value.clone()));
                            Some((seq, value))
                        })
                        .max_by_key(|(seq, _)| *seq)
                        .map(|(_, v)| v);
                    assert_eq!(got, want, "seed {seed}, key {key:?}, snapshot {snapshot}");
                }
            }
        }
    }

    #[test]
    fn merge_yields_every_version_in_internal_key_order() {
        let mut rng = Rng::new(7);
        let tables: Vec<Arc<Memtable>> = (0..3).map(|_| Arc::new(Memtable::new())).collect();
        let mut expected = Vec::new();
        for seq in 1..=500u64 {
            let key = random_key(&mut rng);
            tables[rng.below(3) as usize].insert(&key, seq, Some(b"v"));
            expected.push((key, seq));
        }
        expected.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let sources = tables
            .iter()
            .map(|t| Box::new(t.iter(None)) as Box<dyn Source>)
            .collect();
        let got: Vec<(Vec<u8>, SeqNo)> = MergeIter::new(sources)
            .map(|e| e.map(|e| (e.key.to_vec(), e.seq)))
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn ties_are_broken_by_source_index() {
        let (s0, _) = scripted(vec![Ok(entry(b"k", 5, Some(b"zero")))]);
        let (s1, _) = scripted(vec![Ok(entry(b"k", 5, Some(b"one")))]);
        let (s2, _) = scripted(vec![Ok(entry(b"k", 5, Some(b"two")))]);
        let got: Vec<Value> = MergeIter::new(vec![s2, s0, s1])
            .map(|e| e.unwrap().value)
            .collect();
        let v = |b: &'static [u8]| Value::Put(Bytes::from_static(b));
        assert_eq!(got, vec![v(b"two"), v(b"zero"), v(b"one")]);
    }

    #[test]
    fn source_error_is_yielded_once_then_fused() {
        let (ok, _) = scripted(vec![
            Ok(entry(b"a", 1, Some(b"1"))),
            Ok(entry(b"d", 1, Some(b"1"))),
            Ok(entry(b"e", 1, Some(b"1"))),
        ]);
        let (failing, failing_pulls) = scripted(vec![
            Ok(entry(b"b", 2, Some(b"2"))),
            Err(io_error("disk on fire")),
            Ok(entry(b"c", 2, Some(b"2"))),
        ]);
        let mut m = MergeIter::new(vec![ok, failing]);
        assert_eq!(m.next().unwrap().unwrap().key.as_ref(), b"a");
        assert_eq!(m.next().unwrap().unwrap().key.as_ref(), b"b");
        match m.next() {
            Some(Err(Error::Io(e))) => assert_eq!(e.to_string(), "disk on fire"),
            other => panic!("expected the error, got {other:?}"),
        }
        for _ in 0..3 {
            assert!(m.next().is_none());
        }
        // The failing source was never asked again after its error.
        assert_eq!(failing_pulls.load(AtomicOrdering::Relaxed), 2);
    }

    #[test]
    fn error_while_priming_is_yielded_once() {
        let (ok, _) = scripted(vec![Ok(entry(b"a", 1, Some(b"1")))]);
        let (failing, _) = scripted(vec![Err(io_error("bad header"))]);
        let mut m = MergeIter::new(vec![ok, failing]);
        assert!(matches!(m.next(), Some(Err(Error::Io(_)))));
        assert!(m.next().is_none());
        assert!(m.next().is_none());
    }

    #[test]
    fn snapshot_iter_yields_error_once_then_fuses() {
        let (ok, _) = scripted(vec![
            Ok(entry(b"a", 1, Some(b"1"))),
            Ok(entry(b"z", 1, Some(b"1"))),
        ]);
        let (failing, _) = scripted(vec![
            Ok(entry(b"b", 1, None)),
            Err(io_error("checksum")),
            Ok(entry(b"c", 1, Some(b"1"))),
        ]);
        let mut it = SnapshotIter::new(MergeIter::new(vec![ok, failing]), 10, None, None);
        assert_eq!(it.next().unwrap().unwrap().0, b"a");
        // "b" is a tombstone: skipped, then the error.
        assert!(matches!(it.next(), Some(Err(Error::Io(_)))));
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }

    #[test]
    fn snapshot_iter_versions_tombstones_and_bounds() {
        let (s, _) = scripted(vec![
            Ok(entry(b"a", 9, Some(b"a9"))),
            Ok(entry(b"a", 3, Some(b"a3"))),
            Ok(entry(b"b", 6, None)),
            Ok(entry(b"b", 2, Some(b"b2"))),
            Ok(entry(b"c", 4, None)),
            Ok(entry(b"d", 7, Some(b"d7"))),
            Ok(entry(b"e", 1, Some(b"e1"))),
        ]);
        let mut it = SnapshotIter::new(MergeIter::new(vec![s]), 6, None, Some(b"e".to_vec()));
        assert_eq!(it.next().unwrap().unwrap(), (b"a".to_vec(), b"a3".to_vec()));
        // b: the tombstone at 6 decides; c: deleted; d: too new; e: past end.
        assert!(it.next().is_none());

        let (s, _) = scripted(vec![
            Ok(entry(b"a", 1, Some(b"a1"))),
            Ok(entry(b"b", 2, Some(b"b2"))),
            Ok(entry(b"c", 3, Some(b"c3"))),
        ]);
        // An unpositioned source: keys below start are skipped.
        let got: Vec<_> = SnapshotIter::new(MergeIter::new(vec![s]), 10, Some(b"b".to_vec()), None)
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(got, vec![b"b".to_vec(), b"c".to_vec()]);

        // start >= end: empty.
        let (s, _) = scripted(vec![Ok(entry(b"b", 2, Some(b"b2")))]);
        let mut it = SnapshotIter::new(
            MergeIter::new(vec![s]),
            10,
            Some(b"b".to_vec()),
            Some(b"a".to_vec()),
        );
        assert!(it.next().is_none());
    }

    #[test]
    fn snapshot_iter_streams() {
        let items: Vec<Result<Entry>> = (0..10_000u32)
            .map(|i| Ok(entry(format!("{i:06}").as_bytes(), 1, Some(b"v"))))
            .collect();
        let (s1, pulls1) = scripted(
            items
                .iter()
                .step_by(2)
                .map(|r| Ok(r.as_ref().unwrap().clone()))
                .collect(),
        );
        let (s2, pulls2) = scripted(items.into_iter().skip(1).step_by(2).collect());
        let got: Vec<_> = SnapshotIter::new(MergeIter::new(vec![s1, s2]), 5, None, None)
            .take(10)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got.len(), 10);
        let pulls = pulls1.load(AtomicOrdering::Relaxed) + pulls2.load(AtomicOrdering::Relaxed);
        assert!(pulls <= 12, "took 10 entries but pulled {pulls}");

        // The end bound stops reading at the first key past it.
        let (s, pulls) = scripted(
            (0..1000u32)
                .map(|i| Ok(entry(format!("{i:06}").as_bytes(), 1, Some(b"v"))))
                .collect(),
        );
        let n =
            SnapshotIter::new(MergeIter::new(vec![s]), 5, None, Some(b"000005".to_vec())).count();
        assert_eq!(n, 5);
        assert_eq!(pulls.load(AtomicOrdering::Relaxed), 6);
    }

    #[test]
    fn memtable_iter_is_a_source() {
        let t = Arc::new(Memtable::new());
        t.insert(b"x", 1, Some(b"1"));
        t.insert(b"x", 2, None);
        let mut src: Box<dyn Source> = Box::new(t.iter(None));
        assert_eq!(src.next_entry().unwrap().unwrap(), entry(b"x", 2, None));
        assert_eq!(
            src.next_entry().unwrap().unwrap(),
            entry(b"x", 1, Some(b"1"))
        );
        assert!(src.next_entry().is_none());
    }
}
