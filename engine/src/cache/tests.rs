//! Block cache tests (the LRU has its own; table-cache behaviour is tested
//! through `Db` in `engine/tests/read_path.rs`).

use bytes::Bytes;

use super::*;
use crate::sst::block::BlockBuilder;

fn block(fill: u8, len: usize) -> Block {
    let mut b = BlockBuilder::new(16);
    b.add(&[fill; 9], &vec![fill; len]);
    match Block::decode(Bytes::from(b.finish())) {
        Ok(b) => b,
        Err(e) => panic!("{e:?}"),
    }
}

fn key(file: u64, offset: u64) -> BlockKey {
    BlockKey {
        namespace: 1,
        file,
        offset,
    }
}

#[test]
fn hits_after_insert_and_counts() {
    let cache = BlockCache::new(1 << 20);
    assert!(cache.get(&key(1, 0)).is_none());
    cache.insert(key(1, 0), block(7, 100));
    let got = cache.get(&key(1, 0)).map(|b| b.contents().clone());
    assert_eq!(got, Some(block(7, 100).contents().clone()));
    assert!(cache.get(&key(2, 0)).is_none(), "other file");
    assert!(cache.get(&key(1, 4096)).is_none(), "other offset");
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts, s.blocks), (1, 3, 1, 1));
}

#[test]
fn usage_stays_within_the_budget() {
    let cap = 64 << 10;
    let cache = BlockCache::new(cap);
    for i in 0..1000 {
        cache.insert(key(1, i * 4096), block(1, 1000));
        assert!(cache.stats().usage <= cap, "after {i}: {:?}", cache.stats());
    }
    let s = cache.stats();
    // Most of the budget is used: the shards are not starved.
    assert!(s.usage > cap / 2, "{s:?}");
    assert!(s.blocks < 1000);
}

#[test]
fn zero_capacity_caches_nothing() {
    let cache = BlockCache::new(0);
    cache.insert(key(1, 0), block(1, 10));
    assert!(cache.get(&key(1, 0)).is_none());
    assert_eq!(cache.stats().blocks, 0);
}

#[test]
fn pinned_metadata_shrinks_room_for_data_and_is_released() {
    let cap = 160 << 10;
    let cache = Arc::new(BlockCache::new(cap));
    for i in 0..200 {
        cache.insert(key(1, i * 4096), block(1, 900));
    }
    let full = cache.stats();
    let pin = cache.pin(120 << 10);
    let s = cache.stats();
    assert_eq!(s.pinned, 120 << 10);
    assert!(s.usage <= cap, "{s:?}");
    assert!(
        s.blocks < full.blocks,
        "data blocks were evicted: {s:?} vs {full:?}"
    );
    drop(pin);
    assert_eq!(cache.stats().pinned, 0);
    for i in 0..200 {
        cache.insert(key(2, i * 4096), block(2, 900));
    }
    assert!(cache.stats().blocks >= full.blocks * 9 / 10);
}

#[test]
fn namespaces_are_distinct() {
    let cache = BlockCache::new(1 << 20);
    let a = cache.new_namespace();
    let b = cache.new_namespace();
    assert_ne!(a, b);
    let k = |namespace| BlockKey {
        namespace,
        file: 5,
        offset: 0,
    };
    cache.insert(k(a), block(1, 10));
    assert!(cache.get(&k(b)).is_none());
    assert!(cache.get(&k(a)).is_some());
}

#[test]
fn a_released_block_buffer_is_reused_for_a_block_of_its_class() {
    let pool = Arc::new(BufferPool::default());
    let mut buf = pool.take(4101);
    assert_eq!(buf.len(), 4101);
    assert_eq!(buf.capacity(), 4101_usize.next_multiple_of(BUFFER_ALIGN));
    buf[0] = 42;
    let ptr = buf.as_ptr();
    let shared = pool.share(buf);
    let slice = shared.slice(..10);
    drop(shared);
    assert!(pool.is_empty(), "a slice still holds the buffer");
    drop(slice);
    assert_eq!(pool.len(), 1);
    // Another block of the class gets the same memory, old bytes and all
    // (the read overwrites them).
    let again = pool.take(4200);
    assert_eq!((again.as_ptr(), again.len(), again[0]), (ptr, 4200, 42));
    assert!(pool.is_empty());
}

#[test]
fn blocks_of_another_class_get_a_new_buffer() {
    let pool = Arc::new(BufferPool::default());
    drop(pool.share(pool.take(4096)));
    assert_eq!(pool.len(), 1);
    let small = pool.take(100);
    assert_eq!(small.capacity(), BUFFER_ALIGN);
    let big = pool.take(4097);
    assert_eq!(big.capacity(), 4096 + BUFFER_ALIGN);
    assert_eq!(
        pool.len(),
        1,
        "the 4096-byte buffer still waits for its class"
    );
    // Too large to keep: freed on release.
    drop(pool.share(pool.take(MAX_POOLED + 1)));
    assert_eq!(pool.len(), 1);
    // A buffer `take` did not allocate (not a whole class) is not kept.
    drop(pool.share(Vec::with_capacity(100)));
    assert_eq!(pool.len(), 1);
}

#[test]
fn the_pool_keeps_a_bounded_number_of_bytes() {
    let pool = Arc::new(BufferPool::with_limit(100_000));
    let held: Vec<Bytes> = (0..200)
        .map(|i| pool.share(pool.take(1000 + i * 300)))
        .collect();
    drop(held);
    assert!(pool.bytes() <= 100_000, "{}", pool.bytes());
    assert!(pool.bytes() > 100_000 - MAX_POOLED, "{}", pool.bytes());
    // Taking a buffer gives its bytes back to the limit.
    let kept = pool.len();
    let buf = pool.take(1000);
    assert_eq!(pool.len(), kept - 1);
    drop(pool.share(buf));
    assert_eq!(pool.len(), kept);
}

/// The pool's free buffers are part of the cache's budget: blocks, pinned
/// metadata and free buffers together stay within it.
#[test]
fn the_pool_is_reserved_out_of_the_cache_budget() {
    let cap = 4 << 20;
    let cache = Arc::new(BlockCache::new(cap));
    let reserve = cap / 64;
    for i in 0..2000u64 {
        cache.insert(key(1, i * 4096), block(1, 4000));
    }
    let s = cache.stats();
    assert!(s.usage <= cap - reserve, "{s:?}");
    // Released buffers fill the pool up to the reserve.
    let held: Vec<Bytes> = (0..100)
        .map(|_| cache.buffers().share(cache.buffers().take(4101)))
        .collect();
    drop(held);
    let s = cache.stats();
    assert!(cache.buffers().bytes() <= reserve);
    assert!(cache.buffers().bytes() > reserve / 2);
    assert!(s.usage <= cap, "{s:?}");
}

#[test]
fn a_block_read_through_the_cache_is_charged_its_buffer() {
    let cache = BlockCache::new(1 << 20);
    let b = block(1, 100);
    let len = b.contents().len();
    cache.insert_sized(key(1, 0), b, len.next_multiple_of(BUFFER_ALIGN));
    assert_eq!(
        cache.stats().usage,
        len.next_multiple_of(BUFFER_ALIGN) + ENTRY_OVERHEAD
    );
}
