//! The read caches: the [`BlockCache`] (data blocks, with a byte budget that
//! also carries the index and filter blocks of open tables) and the
//! [`TableCache`] (open table files, bounded by `max_open_files`).
//!
//! # Budget
//! The block cache's capacity is one number of bytes. Every open table
//! *pins* its index and bloom filter against it ([`BlockCache::pin`]) for as
//! long as the table is open; data blocks share what is left and are
//! evicted least recently used first. Pinned bytes are never evicted (a
//! table cannot be read without them), so when open tables' metadata alone
//! exceeds the budget no data block stays cached; the table cache's
//! `max_open_files` bounds how much can be pinned.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::locks::lock;
use crate::sst::Block;

pub mod lru;
mod table_cache;

pub use table_cache::{TableCache, TableCacheStats};

use lru::Lru;

/// Shards of the block cache: lookups of different blocks rarely contend.
const SHARDS: usize = 16;

/// Bytes charged per cached block beyond its contents (map slot, list
/// links, the block's own header).
const ENTRY_OVERHEAD: usize = 96;

/// Identifies a data block: the database's namespace in the cache (see
/// [`BlockCache::new_namespace`]), the table's file number and the block's
/// offset in the file. Table files are immutable and their numbers never
/// reused within a database, so a key names the same bytes for as long as
/// the file exists — also across the table being closed and reopened by
/// the table cache. Blocks of deleted files age out like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// The database's namespace.
    pub namespace: u64,
    /// The table's file number.
    pub file: u64,
    /// The block's offset in the table file.
    pub offset: u64,
}

/// A sharded LRU cache of decoded (checked) data blocks with a byte budget.
///
/// # Thread safety
/// `Send + Sync`; shared by every table of a database through an `Arc`.
/// Each shard is a mutex around an [`Lru`].
#[derive(Debug)]
pub struct BlockCache {
    shards: Box<[Mutex<Lru<BlockKey, Block>>]>,
    capacity: usize,
    pinned: AtomicUsize,
    /// Serialises shard resizes so the last one sees the last `pinned`.
    resize: Mutex<()>,
    next_namespace: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
}

/// Counters of a [`BlockCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    /// The budget in bytes.
    pub capacity: usize,
    /// Bytes charged now: cached data blocks plus pinned metadata.
    pub usage: usize,
    /// Bytes of index and filter blocks pinned by open tables.
    pub pinned: usize,
    /// Data blocks cached now.
    pub blocks: usize,
    /// Lookups that found the block.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blocks inserted.
    pub inserts: u64,
}

impl BlockCache {
    /// A cache of `capacity` bytes; 0 caches nothing (every read goes to
    /// the file) but still accounts pinned metadata.
    pub fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Lru::new(capacity / SHARDS)))
            .collect();
        BlockCache {
            shards,
            capacity,
            pinned: AtomicUsize::new(0),
            resize: Mutex::new(()),
            next_namespace: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        }
    }

    /// A fresh namespace for a database using this cache: file numbers of
    /// different databases sharing one cache never collide.
    pub fn new_namespace(&self) -> u64 {
        self.next_namespace.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, key: &BlockKey) -> &Mutex<Lru<BlockKey, Block>> {
        // splitmix64's finaliser over both halves of the key.
        let mut z = (key.file ^ key.namespace.rotate_left(40)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ key.offset;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        &self.shards[(z % SHARDS as u64) as usize]
    }

    /// The cached block, if any (and marks it recently used).
    pub fn get(&self, key: &BlockKey) -> Option<Block> {
        let found = lock(self.shard(key)).get(key);
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Caches `block` (already checked). Blocks evicted to make room are
    /// dropped after the shard's lock is released.
    pub fn insert(&self, key: BlockKey, block: Block) {
        if self.capacity == 0 {
            return;
        }
        let charge = block.contents().len() + ENTRY_OVERHEAD;
        self.inserts.fetch_add(1, Ordering::Relaxed);
        let evicted = lock(self.shard(&key)).insert(key, block, charge);
        drop(evicted);
    }

    /// Charges `bytes` of metadata until the returned guard is dropped,
    /// shrinking what data blocks may use.
    pub fn pin(self: &Arc<Self>, bytes: usize) -> Pinned {
        self.pinned.fetch_add(bytes, Ordering::AcqRel);
        self.resize_shards();
        Pinned {
            cache: Arc::clone(self),
            bytes,
        }
    }

    fn resize_shards(&self) {
        let _serial = lock(&self.resize);
        let per_shard = self
            .capacity
            .saturating_sub(self.pinned.load(Ordering::Acquire))
            / SHARDS;
        for shard in self.shards.iter() {
            let evicted = lock(shard).set_capacity(per_shard);
            drop(evicted);
        }
    }

    /// The counters.
    pub fn stats(&self) -> BlockCacheStats {
        let (mut usage, mut blocks) = (0, 0);
        for shard in self.shards.iter() {
            let s = lock(shard);
            usage += s.usage();
            blocks += s.len();
        }
        let pinned = self.pinned.load(Ordering::Acquire);
        BlockCacheStats {
            capacity: self.capacity,
            usage: usage + pinned,
            pinned,
            blocks,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
        }
    }
}

/// Metadata bytes charged to a [`BlockCache`] while held.
#[derive(Debug)]
pub struct Pinned {
    cache: Arc<BlockCache>,
    bytes: usize,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.cache.pinned.fetch_sub(self.bytes, Ordering::AcqRel);
        self.cache.resize_shards();
    }
}

#[cfg(test)]
mod tests;
