//! The read caches: the [`BlockCache`] (data blocks, with a byte budget that
//! also carries the index and filter blocks of open tables) and the
//! [`TableCache`] (open table files, bounded by `max_open_files`).
//!
//! # Budget
//! The block cache's capacity is one number of bytes. Every open table
//! *pins* its index and bloom filter against it ([`BlockCache::pin`]) for as
//! long as the table is open, and the [`BufferPool`]'s free buffers have a
//! reserve of a 64th of it (at most [`POOL_BYTES`]); data blocks share what
//! is left and are evicted least recently used first. Pinned bytes are never evicted (a
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

/// Block buffers are allocated in multiples of this many bytes (a size
/// class), so that a buffer released by one block fits later blocks of
/// about the same size.
pub const BUFFER_ALIGN: usize = 128;

/// Buffers larger than this are not kept for reuse.
const MAX_POOLED: usize = 64 << 10;

/// Bytes of free buffers a pool keeps at most (all sizes together); a
/// cache reserves a 64th of its budget at most for its pool.
pub const POOL_BYTES: usize = 256 << 10;

/// Buffers of data blocks no longer used (evicted from the cache and
/// released by every reader), kept for the next block read.
///
/// A miss of the block cache reads a block into a new buffer and usually
/// evicts another block, whose buffer is freed. With glibc, each thread
/// allocates from its own malloc arena: a block read by one reader and
/// evicted by another goes back to the first one's arena, so with many
/// readers every arena keeps a share of the block cache's churn resident
/// (the 8-task YCSB cells of the harness peaked 20 MiB higher than with one
/// arena). A new buffer is also zeroed, and a free merges the chunk with its
/// neighbours in the heap, memory no longer in the CPU cache. Reusing the
/// buffers of evicted blocks, by size class, avoids all three.
///
/// The free buffers are part of the cache's budget: the cache reserves the
/// pool's limit (see [`BlockCache::new`]).
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<PoolLists>,
    /// Bytes of free buffers kept at most.
    limit: usize,
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::with_limit(POOL_BYTES)
    }
}

/// Free buffers by size class (`capacity / BUFFER_ALIGN - 1`).
#[derive(Debug, Default)]
struct PoolLists {
    by_class: Vec<Vec<Vec<u8>>>,
    count: usize,
    /// Capacity of the free buffers, in bytes.
    bytes: usize,
}

/// The size class of a buffer of `len` bytes, if it is pooled: buffers of
/// class `c` hold `(c + 1) * BUFFER_ALIGN` bytes.
fn class_of(len: usize) -> Option<usize> {
    (len > 0 && len <= MAX_POOLED).then(|| len.div_ceil(BUFFER_ALIGN) - 1)
}

impl BufferPool {
    /// A pool keeping at most `limit` bytes of free buffers.
    #[must_use]
    pub fn with_limit(limit: usize) -> Self {
        BufferPool {
            free: Mutex::default(),
            limit,
        }
    }

    /// A buffer of `len` bytes, allocated in whole size classes: a released
    /// one of the same class if there is one (its old bytes are left for
    /// the caller to overwrite).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let recycled = class_of(len).and_then(|c| {
            let mut free = lock(&self.free);
            let buf = free.by_class.get_mut(c)?.pop()?;
            free.count -= 1;
            free.bytes -= buf.capacity();
            Some(buf)
        });
        let mut buf =
            recycled.unwrap_or_else(|| Vec::with_capacity(len.next_multiple_of(BUFFER_ALIGN)));
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }

    /// `buf` as shared bytes; when the last reference goes, `buf` returns
    /// to the pool.
    pub fn share(self: &Arc<Self>, buf: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }

    fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        // Only buffers of a whole class (those `take` allocated).
        let Some(c) = class_of(cap).filter(|_| cap.is_multiple_of(BUFFER_ALIGN)) else {
            return;
        };
        let mut free = lock(&self.free);
        if free.bytes + cap > self.limit {
            return; // freed
        }
        if free.by_class.len() <= c {
            free.by_class.resize_with(c + 1, Vec::new);
        }
        free.by_class[c].push(buf);
        free.count += 1;
        free.bytes += cap;
    }

    /// Buffers free now.
    pub fn len(&self) -> usize {
        lock(&self.free).count
    }

    /// Bytes of the free buffers.
    pub fn bytes(&self) -> usize {
        lock(&self.free).bytes
    }

    /// Whether no buffer is free.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pooled buffer behind a [`bytes::Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

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
    buffers: Arc<BufferPool>,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
}

/// Counters of a [`BlockCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    /// The budget in bytes.
    pub capacity: usize,
    /// Bytes charged now: cached data blocks, pinned metadata and the
    /// buffer pool's free buffers.
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
    ///
    /// Up to a 64th of `capacity` (at most [`POOL_BYTES`]) is reserved
    /// for the free buffers of its [`BufferPool`]; data blocks get the rest,
    /// less the pinned metadata.
    pub fn new(capacity: usize) -> Self {
        let buffers = Arc::new(BufferPool::with_limit((capacity / 64).min(POOL_BYTES)));
        let data = capacity - buffers.limit;
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Lru::new(data / SHARDS)))
            .collect();
        BlockCache {
            shards,
            capacity,
            pinned: AtomicUsize::new(0),
            resize: Mutex::new(()),
            next_namespace: AtomicU64::new(1),
            buffers,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        }
    }

    /// Where blocks read for this cache get their buffers.
    pub fn buffers(&self) -> &Arc<BufferPool> {
        &self.buffers
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
        let len = block.contents().len();
        self.insert_sized(key, block, len);
    }

    /// [`insert`](Self::insert) for a block whose buffer holds `allocated`
    /// bytes, which are what it is charged.
    pub fn insert_sized(&self, key: BlockKey, block: Block, allocated: usize) {
        if self.capacity == 0 {
            return;
        }
        let charge = allocated + ENTRY_OVERHEAD;
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
            .saturating_sub(self.buffers.limit)
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
            usage: usage + pinned + self.buffers.bytes(),
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
