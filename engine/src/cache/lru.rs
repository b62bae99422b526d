//! A least-recently-used map with a charge per entry and a capacity in the
//! same unit (bytes for the block cache, files for the table cache).
//!
//! Not synchronised: callers wrap it in a lock (the block cache shards it).
//! Entries live in a slab (`Vec`) linked into a recency list by index, so
//! lookups and updates allocate nothing once the slab has grown.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A multiply-rotate hasher for the caches' integer keys (file numbers,
/// block offsets): the engine chooses them, so SipHash's resistance to
/// chosen keys buys nothing, and it showed up in read profiles (~1.5%).
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finaliser: hashbrown uses the top bits too.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    charge: usize,
    /// Towards the most recently used end.
    newer: usize,
    /// Towards the least recently used end.
    older: usize,
}

/// An LRU map whose entries each carry a charge; inserting evicts the least
/// recently used entries while the total charge exceeds the capacity.
///
/// # Invariants
/// - `map[k] = i` exactly when `slots[i]` is `Some` with key `k`;
/// - the recency list (from `newest` along `older`) visits every occupied
///   slot once; `usage` is the sum of their charges.
#[derive(Debug)]
pub struct Lru<K, V> {
    map: HashMap<K, usize, BuildHasherDefault<IntHasher>>,
    slots: Vec<Option<Node<K, V>>>,
    free: Vec<usize>,
    newest: usize,
    oldest: usize,
    usage: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty map holding at most `capacity` charge.
    pub fn new(capacity: usize) -> Self {
        Lru {
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            usage: 0,
            capacity,
        }
    }

    /// Total charge of the entries.
    pub fn usage(&self) -> usize {
        self.usage
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity, evicting as needed; returns the evicted values.
    pub fn set_capacity(&mut self, capacity: usize) -> Vec<V> {
        self.capacity = capacity;
        self.evict_over_capacity()
    }

    fn node(&self, i: usize) -> &Node<K, V> {
        match &self.slots[i] {
            Some(n) => n,
            None => unreachable!("recency list points at a free slot"),
        }
    }

    fn node_mut(&mut self, i: usize) -> &mut Node<K, V> {
        match &mut self.slots[i] {
            Some(n) => n,
            None => unreachable!("recency list points at a free slot"),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = {
            let n = self.node(i);
            (n.newer, n.older)
        };
        if newer == NIL {
            self.newest = older;
        } else {
            self.node_mut(newer).older = older;
        }
        if older == NIL {
            self.oldest = newer;
        } else {
            self.node_mut(older).newer = newer;
        }
    }

    fn push_newest(&mut self, i: usize) {
        let old_newest = self.newest;
        {
            let n = self.node_mut(i);
            n.newer = NIL;
            n.older = old_newest;
        }
        if old_newest == NIL {
            self.oldest = i;
        } else {
            self.node_mut(old_newest).newer = i;
        }
        self.newest = i;
    }

    /// The value of `key`, marking it most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let i = *self.map.get(key)?;
        if self.newest != i {
            self.unlink(i);
            self.push_newest(i);
        }
        Some(self.node(i).value.clone())
    }

    /// Whether `key` is present (does not change its recency).
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces `key` as the most recently used entry, then evicts
    /// least recently used entries (possibly this one, if its charge alone
    /// exceeds the capacity) until the usage fits. Returns the values that
    /// left the map (a replaced value included).
    pub fn insert(&mut self, key: K, value: V, charge: usize) -> Vec<V> {
        let mut out = Vec::new();
        if let Some(old) = self.remove(&key) {
            out.push(old);
        }
        let node = Node {
            key: key.clone(),
            value,
            charge,
            newer: NIL,
            older: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(node);
                i
            }
            None => {
                self.slots.push(Some(node));
                self.slots.len() - 1
            }
        };
        self.map.insert(key, i);
        self.push_newest(i);
        self.usage += charge;
        out.extend(self.evict_over_capacity());
        out
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.map.remove(key)?;
        Some(self.take_slot(i))
    }

    fn take_slot(&mut self, i: usize) -> V {
        self.unlink(i);
        let node = match self.slots[i].take() {
            Some(n) => n,
            None => unreachable!("map points at a free slot"),
        };
        self.free.push(i);
        self.usage -= node.charge;
        node.value
    }

    /// Evicts least recently used entries while over capacity.
    fn evict_over_capacity(&mut self) -> Vec<V> {
        let mut out = Vec::new();
        while self.usage > self.capacity && self.oldest != NIL {
            let i = self.oldest;
            let key = self.node(i).key.clone();
            self.map.remove(&key);
            out.push(self.take_slot(i));
        }
        out
    }

    /// Keys from most to least recently used (tests).
    #[cfg(test)]
    pub fn keys_by_recency(&self) -> Vec<K> {
        let mut out = Vec::new();
        let mut i = self.newest;
        while i != NIL {
            let n = self.node(i);
            out.push(n.key.clone());
            i = n.older;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut lru = Lru::new(3);
        assert!(lru.insert(1, "a", 1).is_empty());
        assert!(lru.insert(2, "b", 1).is_empty());
        assert!(lru.insert(3, "c", 1).is_empty());
        assert_eq!(lru.get(&1), Some("a")); // 2 is now the oldest
        assert_eq!(lru.insert(4, "d", 1), vec!["b"]);
        assert_eq!(lru.keys_by_recency(), vec![4, 1, 3]);
        assert_eq!(lru.usage(), 3);
    }

    #[test]
    fn charges_are_summed_and_an_oversized_entry_does_not_stay() {
        let mut lru = Lru::new(10);
        lru.insert("x", 1, 6);
        assert_eq!(lru.insert("y", 2, 6), vec![1]);
        assert_eq!(lru.usage(), 6);
        assert_eq!(lru.insert("big", 3, 11), vec![2, 3]);
        assert!(lru.is_empty());
        assert_eq!(lru.usage(), 0);
    }

    #[test]
    fn replace_and_shrink() {
        let mut lru = Lru::new(10);
        lru.insert(1, 10, 4);
        assert_eq!(lru.insert(1, 11, 5), vec![10]);
        lru.insert(2, 20, 5);
        assert_eq!(lru.usage(), 10);
        assert_eq!(lru.set_capacity(5), vec![11]);
        assert_eq!(lru.get(&2), Some(20));
        assert_eq!(lru.remove(&2), Some(20));
        assert!(lru.is_empty());
    }

    proptest! {
        /// Against a naive model: a list ordered by recency.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..4, 0u8..12, 1usize..5), 1..300)) {
            let mut lru = Lru::new(10);
            let mut model: Vec<(u8, (u32, usize))> = Vec::new(); // newest first
            let mut stamp = 0u32;
            for (op, key, charge) in ops {
                stamp += 1;
                match op {
                    0 | 1 => {
                        lru.insert(key, stamp, charge);
                        model.retain(|(k, _)| *k != key);
                        model.insert(0, (key, (stamp, charge)));
                        while model.iter().map(|(_, (_, c))| c).sum::<usize>() > 10 {
                            model.pop();
                        }
                    }
                    2 => {
                        let got = lru.get(&key);
                        let pos = model.iter().position(|(k, _)| *k == key);
                        prop_assert_eq!(got, pos.map(|p| model[p].1 .0));
                        if let Some(p) = pos {
                            let e = model.remove(p);
                            model.insert(0, e);
                        }
                    }
                    _ => {
                        let got = lru.remove(&key);
                        let pos = model.iter().position(|(k, _)| *k == key);
                        prop_assert_eq!(got, pos.map(|p| model.remove(p).1 .0));
                    }
                }
                let keys: Vec<u8> = model.iter().map(|(k, _)| *k).collect();
                prop_assert_eq!(lru.keys_by_recency(), keys);
                prop_assert_eq!(lru.usage(), model.iter().map(|(_, (_, c))| c).sum::<usize>());
                let distinct: BTreeMap<u8, ()> = model.iter().map(|(k, _)| (*k, ())).collect();
                prop_assert_eq!(lru.len(), distinct.len());
            }
        }
    }
}
