//! The memtable: an in-memory, concurrent, multi-version sorted map.
//!
//! Every write gets its own sequence number ([`SeqNo`]). The memtable keeps
//! every version of every key, ordered by *internal key*: user key ascending
//! (bytewise), then sequence number **descending**, so the newest version of
//! a key comes first. A reader "as of" snapshot `S` sees, for each key, the
//! first version in that order whose sequence number is `<= S`.
//!
//! The map is a skip list whose nodes live in an arena owned by the table:
//! memory comes in chunks of [`CHUNK_SIZE`] bytes (an entry too large for a
//! chunk gets one of its own), is bump-allocated, is never freed piecemeal
//! (nothing is ever removed from a memtable) and goes back to the allocator,
//! a few large blocks at once, when the table is dropped. A node holds its
//! whole entry, key and value inline:
//!
//! ```text
//!   [next[h-1]] … [next[1]] [next[0]] | seq u64 | height u8 | key_len varint | key | value_tag varint | value | pad to 8
//!                                     ^ node pointer (8-byte aligned)
//! ```
//!
//! The tower of `h` next-links sits *below* the node pointer, so the header
//! and the key are at fixed offsets whatever the height, and a visit on the
//! search path (load `next[l]`, compare the next node's key) touches the
//! bytes around one node pointer. The lengths are LEB128 varints: a key
//! shorter than 128 bytes starts at offset 10. `value_tag` is 0 for a
//! tombstone and the value's length plus one otherwise. A 16-byte key with a
//! 100-byte value takes 136 bytes with a one-link tower (a fixed 16-byte
//! header took 144): a memtable of a given size holds 6% more such entries.
//!
//! A search is a chain of dependent cache misses (each node's address comes
//! from the previous node), so [`Memtable::insert_sorted`] runs the searches
//! of up to [`LANES`] entries of a sorted batch side by side, prefetching
//! each one's next node while the others take their steps, and then links
//! the entries in order, each after the last one linked where that is later
//! than the predecessor its search found.
//!
//! # Concurrency
//! Readers ([`Memtable::get`], [`MemtableIter`]) take no lock and run
//! concurrently with inserts. Inserts are serialised by a mutex (in the
//! engine one thread inserts at a time, so it is uncontended). An insert
//! writes the whole node — header, key, value, its own next-links — with
//! plain (or relaxed) stores, then publishes it with `Release` stores into
//! its predecessors' links, bottom level first. Readers load every link with
//! `Acquire`, so a reader that obtains a node pointer from a link
//! synchronises with the `Release` store that wrote it and sees the fully
//! initialised node; after that only the node's links ever change (atomics,
//! each again a `Release` store of an initialised node). Nodes are never
//! unlinked except when the same `(key, seq)` is inserted twice, where the
//! new node takes the old one's place at every level; the old node stays in
//! the arena, valid, its links still pointing forward into the list, so a
//! reader standing on it carries on correctly.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::mem::{size_of, ManuallyDrop};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use memmap2::MmapMut;

use crate::coding::{encode_varint, varint_len};
use crate::mem::MAP_AT_LEAST;
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

/// Bytes of one arena chunk. Chunks of 128 KiB or more (this size, and
/// large single nodes) are anonymous mappings (see `mem.rs`; the heap if a
/// mapping fails), so their pages go back to the OS when the table drops.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Nodes larger than this get a chunk of their own (the current chunk keeps
/// its free tail), so a large entry never wastes more than this.
const OWN_CHUNK: usize = CHUNK_SIZE / 4;

/// The tallest tower; with a branching factor of 4, enough for 4^16 entries.
const MAX_HEIGHT: usize = 16;

/// Bytes of one next-link.
const LINK: usize = size_of::<AtomicPtr<u8>>();

/// Offset of a node's tower height byte (after the sequence number).
const HEIGHT_AT: usize = 8;

/// Offset of a node's key length varint.
const KEY_LEN_AT: usize = 9;

/// Alignment of nodes (and of the header's `u64`).
const ALIGN: usize = 8;

/// `value_tag` of a tombstone.
const TOMBSTONE: u64 = 0;

/// The longest key a memtable takes: a cap far above the engine's 64 KiB
/// limit (the varint length itself has no such bound).
pub const MAX_NODE_KEY: usize = (1 << 24) - 1;

/// The longest value a node can hold (the engine's limit is 64 MiB).
pub const MAX_NODE_VALUE: usize = u32::MAX as usize - 1;

/// An estimate of the bytes a node takes beyond its key and value, for
/// planning (a batch's size before it is inserted): the 11-byte header of
/// short keys and values, the tower (8 bytes a level; 4/3 levels on average
/// with a branching factor of 4, so ~10.7 bytes) and the padding to 8 bytes
/// (3.5 on average), rounded up. What an insert charges
/// ([`Memtable::approximate_size`]) is the node's exact size.
pub const ENTRY_OVERHEAD: usize = 26;

/// How many entries a [`MemtableIter`] copies out of the skip list per refill.
const ITER_BATCH: usize = 32;

/// A refill stops once it has copied this many key and value bytes.
const ITER_BATCH_BYTES: usize = 64 << 10;

/// The unit of arena memory: 8 bytes, 8-byte aligned on every target.
#[repr(C, align(8))]
struct Word([u8; ALIGN]);

/// One block of arena memory, owned through a raw pointer (it is written
/// through pointers derived from it while readers hold others).
struct Chunk {
    ptr: *mut Word,
    /// Capacity in words.
    words: usize,
    /// The anonymous mapping that holds the block; `None`: the block is a
    /// leaked `Vec<Word>` (a small chunk, or a failed mapping).
    map: Option<MmapMut>,
}

// SAFETY: a `Chunk` owns its block exclusively (like a `Box<[Word]>`); the
// raw pointer is only there to keep derived pointers valid under aliasing
// rules. Moving the owner to another thread moves the block with it.
unsafe impl Send for Chunk {}

impl Chunk {
    /// A chunk of at least `bytes` bytes (uninitialised: nodes are written
    /// before anything reads them).
    fn new(bytes: usize) -> Chunk {
        let words = bytes.div_ceil(ALIGN);
        if words * ALIGN >= MAP_AT_LEAST {
            if let Ok(mut map) = MmapMut::map_anon(words * ALIGN) {
                // A mapping is page-aligned, so aligned for `Word`.
                return Chunk {
                    ptr: map.as_mut_ptr().cast::<Word>(),
                    words,
                    map: Some(map),
                };
            }
        }
        let mut v = ManuallyDrop::new(Vec::<Word>::with_capacity(words));
        Chunk {
            ptr: v.as_mut_ptr(),
            words: v.capacity(),
            map: None,
        }
    }

    fn bytes(&self) -> usize {
        self.words * ALIGN
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.map.is_some() {
            return; // unmapped when `map` drops
        }
        // SAFETY: `ptr` and `words` are the pointer and capacity of a
        // `Vec<Word>` leaked in `Chunk::new`, freed only here; length 0, as
        // `Word` has no drop glue. The table (and so every reader) is gone.
        drop(unsafe { Vec::from_raw_parts(self.ptr, 0, self.words) });
    }
}

/// The inserting side's state, behind the table's mutex.
struct Writer {
    /// The chunk being filled.
    current: Option<Chunk>,
    /// Bytes of `current` handed out.
    used: usize,
    /// Full chunks and chunks of single large nodes.
    full: Vec<Chunk>,
    /// State of the xorshift generator that draws tower heights.
    rng: u64,
}

impl Writer {
    /// Reserves `size` bytes (a multiple of [`ALIGN`]); returns an 8-byte
    /// aligned pointer to them and the bytes of a chunk tail abandoned for
    /// it (to be charged), plus the bytes of any chunk it allocated.
    fn alloc(&mut self, size: usize) -> (*mut u8, usize, usize) {
        debug_assert_eq!(size % ALIGN, 0);
        if size > OWN_CHUNK {
            let chunk = Chunk::new(size);
            let (p, bytes) = (chunk.ptr.cast::<u8>(), chunk.bytes());
            self.full.push(chunk);
            return (p, 0, bytes);
        }
        let (mut wasted, mut allocated) = (0, 0);
        let base = match &self.current {
            Some(chunk) if chunk.bytes() - self.used >= size => chunk.ptr,
            _ => {
                let chunk = Chunk::new(CHUNK_SIZE);
                allocated = chunk.bytes();
                let base = chunk.ptr;
                if let Some(old) = self.current.replace(chunk) {
                    wasted = old.bytes() - self.used;
                    self.full.push(old);
                }
                self.used = 0;
                base
            }
        };
        // SAFETY: `used + size` is at most the current chunk's size, so the
        // result and the `size` bytes after it are inside its block.
        let p = unsafe { base.cast::<u8>().add(self.used) };
        self.used += size;
        (p, wasted, allocated)
    }

    /// A tower height: `h` with probability (3/4)·(1/4)^(h-1), capped.
    fn random_height(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let mut height = 1;
        while height < MAX_HEIGHT && x & 3 == 0 {
            height += 1;
            x >>= 2;
        }
        height
    }
}

/// One version to insert: key, sequence number, value (`None`: a
/// tombstone).
pub type Version<'a> = (&'a [u8], SeqNo, Option<&'a [u8]>);

/// Searches [`Memtable::insert_sorted`] runs side by side.
pub const LANES: usize = 8;

/// Whether a memtable can hold an entry: `Err` (what is too long) for a
/// key longer than [`MAX_NODE_KEY`] or a value longer than
/// [`MAX_NODE_VALUE`]. The engine refuses such writes at `submit` and such
/// WAL records at replay, so an insert never sees one.
///
/// # Errors
/// The key's or the value's length against its maximum.
pub fn check_entry_size(key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
    if key.len() > MAX_NODE_KEY {
        return Err(format!(
            "key of {} bytes exceeds the memtable's maximum of {MAX_NODE_KEY}",
            key.len()
        ));
    }
    if let Some(v) = value.filter(|v| v.len() > MAX_NODE_VALUE) {
        return Err(format!(
            "value of {} bytes exceeds the memtable's maximum of {MAX_NODE_VALUE}",
            v.len()
        ));
    }
    Ok(())
}

/// Checks an entry against the node format's limits.
///
/// # Panics
/// If [`check_entry_size`] refuses it.
fn check_entry(key: &[u8], value: Option<&[u8]>) {
    if let Err(why) = check_entry_size(key, value) {
        panic!("memtable entry too long: {why}");
    }
}

/// Accounting of inserts made under the writer lock, published at once.
#[derive(Default)]
struct Added {
    len: usize,
    allocated: usize,
    charge: usize,
    max_seq: SeqNo,
}

/// Asks the CPU to start loading what a search step reads of `node` (null:
/// nothing): its link at `level` and its header and key.
#[inline]
fn prefetch(node: *const u8, level: usize) {
    if node.is_null() {
        return;
    }
    // Miri has no prefetch; it checks the searches without it.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint: it never faults nor changes
        // memory, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(node.wrapping_sub((level + 1) * LINK).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(node.wrapping_add(KEY_LEN_AT + 8).cast::<i8>());
        }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    let _ = level;
}

/// The link of `node` at `level`.
///
/// # Safety
/// `node` is the head's pseudo-node or a node published in (or being built
/// by the writer into) this table's arena, and `level` is below its height.
/// The returned reference must not outlive the table.
#[inline]
unsafe fn link<'a>(node: *const u8, level: usize) -> &'a AtomicPtr<u8> {
    // SAFETY: the tower's links sit right below the node pointer, level 0
    // highest, each an initialised, 8-byte aligned `AtomicPtr` (the caller
    // guarantees `level` is in the tower).
    unsafe { &*node.sub((level + 1) * LINK).cast::<AtomicPtr<u8>>() }
}

/// A published node's sequence number.
///
/// # Safety
/// `node` is a published node of a table that outlives the call.
#[inline]
unsafe fn node_seq(node: *const u8) -> SeqNo {
    // SAFETY: the header starts at the 8-byte aligned node pointer and was
    // written before the node was published.
    unsafe { node.cast::<u64>().read() }
}

/// A published node's tower height.
///
/// # Safety
/// As for [`node_seq`].
#[inline]
unsafe fn node_height(node: *const u8) -> usize {
    // SAFETY: as in `node_seq`.
    usize::from(unsafe { node.add(HEIGHT_AT).read() })
}

/// Reads a LEB128 varint that an insert wrote at `at`
/// ([`encode_varint`]); returns it and the address after it.
///
/// # Safety
/// `at` points to a varint an insert wrote (the memtable's own bytes, never
/// read from disk).
#[inline]
unsafe fn read_varint(at: *const u8) -> (u64, *const u8) {
    // SAFETY: the varint's bytes are readable, up to the one without the
    // continuation bit (the caller's contract).
    unsafe {
        let first = at.read();
        if first < 0x80 {
            return (u64::from(first), at.add(1));
        }
        let (mut v, mut shift, mut p) = (u64::from(first & 0x7f), 7, at.add(1));
        loop {
            let b = p.read();
            p = p.add(1);
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return (v, p);
            }
            shift += 7;
        }
    }
}

/// A published node's key: its length and the address of its first byte.
///
/// # Safety
/// As for [`node_seq`].
#[inline]
unsafe fn node_key_at(node: *const u8) -> (usize, *const u8) {
    // SAFETY: the key length varint follows the height byte; it was written
    // before the node was published. A length fits `usize` (`check_entry`).
    let (len, at) = unsafe { read_varint(node.add(KEY_LEN_AT)) };
    (len as usize, at)
}

/// A published node's user key.
///
/// # Safety
/// As for [`node_seq`]; the slice must not outlive the table.
#[inline]
unsafe fn node_key<'a>(node: *const u8) -> &'a [u8] {
    // SAFETY: the key's bytes follow its length; they were written before
    // the node was published and are never written again.
    unsafe {
        let (len, at) = node_key_at(node);
        std::slice::from_raw_parts(at, len)
    }
}

/// A published node's value, `None` for a tombstone.
///
/// # Safety
/// As for [`node_key`].
#[inline]
unsafe fn node_value<'a>(node: *const u8) -> Option<&'a [u8]> {
    // SAFETY: as in `node_key`; the value's tag and bytes follow the key's.
    // The pointers are derived from `node` (not from the key slice, whose
    // provenance covers the key alone).
    unsafe {
        let (key_len, key_at) = node_key_at(node);
        let (tag, value_at) = read_varint(key_at.add(key_len));
        if tag == TOMBSTONE {
            return None;
        }
        Some(std::slice::from_raw_parts(value_at, (tag - 1) as usize))
    }
}

/// Whether `node` comes before the internal key `(key, seq)`.
///
/// # Safety
/// As for [`node_seq`].
#[inline]
unsafe fn node_before(node: *const u8, key: &[u8], seq: SeqNo) -> bool {
    // SAFETY: forwarded.
    match crate::coding::compare_bytes(unsafe { node_key(node) }, key) {
        Ordering::Less => true,
        // Same user key: larger sequence numbers come first.
        Ordering::Equal => (unsafe { node_seq(node) }) > seq,
        Ordering::Greater => false,
    }
}

/// An in-memory sorted table of versioned writes.
///
/// # Thread safety
/// `Send + Sync`. Any number of threads may call [`insert`](Self::insert)
/// concurrently (inserts take turns on an internal mutex), and reads
/// ([`get`](Self::get), iterators) take no lock and run concurrently with
/// writes, so readers never block writers nor the other way round.
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
pub struct Memtable {
    /// The head's tower, highest level first: the head pseudo-node is the
    /// address just past its end (see [`Memtable::head`]). Boxed so that it
    /// does not move with the table.
    head: Box<[AtomicPtr<u8>; MAX_HEIGHT]>,
    /// Levels in use (1..=MAX_HEIGHT); levels above have null head links.
    height: AtomicUsize,
    /// The arena and the height generator; serialises inserts.
    writer: Mutex<Writer>,
    len: AtomicUsize,
    size: AtomicUsize,
    arena_bytes: AtomicUsize,
    max_seq: AtomicU64,
    /// Number of the oldest WAL file that may hold this table's entries.
    wal: u64,
}

impl fmt::Debug for Memtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memtable")
            .field("len", &self.len())
            .field("approximate_size", &self.approximate_size())
            .field("arena_bytes", &self.arena_bytes())
            .field("max_seq", &self.max_seq())
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
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
    /// later (the WAL may be deleted only once the table is flushed). It
    /// allocates its first arena chunk on the first insert.
    #[must_use]
    pub fn for_wal(wal: u64) -> Self {
        Memtable {
            head: Box::new(std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut()))),
            height: AtomicUsize::new(1),
            writer: Mutex::new(Writer {
                current: None,
                used: 0,
                full: Vec::new(),
                rng: 0x9e37_79b9_7f4a_7c15 ^ wal,
            }),
            len: AtomicUsize::new(0),
            size: AtomicUsize::new(0),
            arena_bytes: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            wal,
        }
    }

    /// Number of the oldest WAL file that may hold this table's entries.
    pub fn wal(&self) -> u64 {
        self.wal
    }

    /// The head pseudo-node: its level `l` link is `head[MAX_HEIGHT - 1 - l]`,
    /// as [`link`] computes; nothing else of it is ever read.
    #[inline]
    fn head(&self) -> *const u8 {
        self.head.as_ptr().wrapping_add(MAX_HEIGHT).cast::<u8>()
    }

    /// Records version `seq` of `key`: `Some(value)` is a put, `None` a
    /// delete (tombstone). The bytes are copied into the table's arena.
    /// Returns the bytes it added to [`approximate_size`](Self::approximate_size).
    ///
    /// # Panics
    /// If `key` is longer than [`MAX_NODE_KEY`] or the value longer than
    /// [`MAX_NODE_VALUE`] (far above the engine's limits).
    pub fn insert(&self, key: &[u8], seq: SeqNo, value: Option<&[u8]>) -> usize {
        check_entry(key, value);
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // A panic under the lock cannot leave a half-published node: nodes
        // are linked only by the atomic stores at the end of `link_in`, after
        // which nothing can panic. So a poisoned lock is safe to reuse.

        // The predecessor at every level: the last node before (key, seq).
        let mut preds = [self.head(); MAX_HEIGHT];
        let list_height = self.height.load(AtomicOrdering::Relaxed);
        // SAFETY: the head and nodes reached through links are valid for
        // `self`'s lifetime; `seek` keeps levels below each node's height.
        unsafe { self.seek(key, seq, list_height, &mut preds) };
        let mut added = Added::default();
        // SAFETY: `preds` holds, at every level, the last node before
        // (key, seq) (the head above the list's height), and the lock is held.
        unsafe { self.link_in(&mut w, key, seq, value, &preds, &mut added) };
        drop(w);
        self.account(&added)
    }

    /// Records a batch of versions, each as [`insert`](Self::insert) would,
    /// and returns the bytes added to the size estimate. `entries` should be
    /// in strictly increasing internal-key order (key ascending, sequence
    /// number descending): the searches of up to [`LANES`] entries then run
    /// side by side, so their cache misses overlap instead of following one
    /// another. Entries out of that order are inserted one at a time.
    ///
    /// # Panics
    /// As [`insert`](Self::insert).
    pub fn insert_sorted(&self, entries: &[Version<'_>]) -> usize {
        for (key, _, value) in entries {
            check_entry(key, *value);
        }
        let ordered = entries.windows(2).all(|pair| {
            let ((k0, s0, _), (k1, s1, _)) = (&pair[0], &pair[1]);
            match crate::coding::compare_bytes(k0, k1) {
                Ordering::Less => true,
                Ordering::Equal => s0 > s1,
                Ordering::Greater => false,
            }
        });
        if !ordered || entries.len() < 2 {
            return entries
                .iter()
                .map(|(key, seq, value)| self.insert(key, *seq, *value))
                .sum();
        }
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = Added::default();
        let mut preds = [[self.head(); MAX_HEIGHT]; LANES];
        for chunk in entries.chunks(LANES) {
            let list_height = self.height.load(AtomicOrdering::Relaxed);
            for p in &mut preds {
                *p = [self.head(); MAX_HEIGHT];
            }
            // SAFETY: as in `insert`; `preds` has a row per entry of `chunk`.
            unsafe { self.seek_lanes(chunk, list_height, &mut preds) };
            // The searches saw the list before any entry of `chunk` went in:
            // the last node linked so far at each level, `last[l]`, comes
            // before every later entry of the chunk (they are ordered) and
            // may come after the predecessor that was found for it.
            let mut last: [*const u8; MAX_HEIGHT] = [ptr::null(); MAX_HEIGHT];
            for ((key, seq, value), found) in chunk.iter().zip(&mut preds) {
                for (pred, &l) in found.iter_mut().zip(&last) {
                    if l.is_null() {
                        continue;
                    }
                    // `l` wins unless `*pred` comes after it. A node that `l`
                    // replaced (same key and seq) is out of the list: `l`
                    // wins on a tie.
                    // SAFETY: both are the head or published nodes of `self`.
                    if *pred == self.head()
                        || !unsafe { node_before(l, node_key(*pred), node_seq(*pred)) }
                    {
                        *pred = l;
                    }
                }
                // SAFETY: `found` now holds the last node before (key, seq) at
                // every level (the head above the list's height); the lock
                // is held.
                let (node, height) =
                    unsafe { self.link_in(&mut w, key, *seq, *value, found, &mut added) };
                for l in &mut last[..height] {
                    *l = node;
                }
            }
        }
        drop(w);
        self.account(&added)
    }

    /// Links a new node for `(key, seq, value)` after `preds` (replacing
    /// the node of the same key and seq, if `preds[0]` is followed by one)
    /// and adds its accounting to `added`; returns the node and its height.
    ///
    /// # Safety
    /// The caller holds the writer lock (`w`), and `preds[l]` is, at every
    /// level `l`, the head or a published node whose tower has level `l` and
    /// which is the last node of level `l` before `(key, seq)`.
    unsafe fn link_in(
        &self,
        w: &mut Writer,
        key: &[u8],
        seq: SeqNo,
        value: Option<&[u8]>,
        preds: &[*const u8; MAX_HEIGHT],
        added: &mut Added,
    ) -> (*const u8, usize) {
        let value_len = value.map_or(0, <[u8]>::len);
        // Only the writer, holding the lock, stores links, so relaxed loads
        // see the latest values.
        // SAFETY: `preds[0]` is the head or a published node (level 0 is in
        // every tower).
        let succ = unsafe { link(preds[0], 0) }.load(AtomicOrdering::Relaxed);
        // SAFETY: `succ` is null or a published node.
        let replaces = !succ.is_null() && unsafe { node_seq(succ) == seq && node_key(succ) == key };
        let height = if replaces {
            // SAFETY: `succ` is a published node.
            unsafe { node_height(succ) }
        } else {
            w.random_height()
        };
        if height > self.height.load(AtomicOrdering::Relaxed) {
            // `preds` above the old height are the head. Readers that see the
            // new height before the links find null links there and step
            // down.
            self.height.store(height, AtomicOrdering::Relaxed);
        }

        let tower = (height * LINK).next_multiple_of(ALIGN);
        let tag = value.map_or(TOMBSTONE, |v| v.len() as u64 + 1);
        let body =
            KEY_LEN_AT + varint_len(key.len() as u64) + key.len() + varint_len(tag) + value_len;
        let size = (tower + body).next_multiple_of(ALIGN);
        let (mem, wasted, allocated) = w.alloc(size);
        // SAFETY: `mem` is 8-byte aligned and `size` bytes of it are ours
        // alone: no reader can reach them before the publishing stores
        // below. The sequence number is 8-byte aligned; the height fits its
        // byte (`height <= MAX_HEIGHT < 256`); the varints, key and value
        // are the `body` bytes counted above, written through a slice of
        // exactly those bytes.
        let node = unsafe {
            let node = mem.add(tower);
            node.cast::<u64>().write(seq);
            node.add(HEIGHT_AT).write(height as u8);
            let fields = std::slice::from_raw_parts_mut(node.add(KEY_LEN_AT), body - KEY_LEN_AT);
            let mut at = encode_varint(fields, key.len() as u64);
            fields[at..at + key.len()].copy_from_slice(key);
            at += key.len();
            at += encode_varint(&mut fields[at..], tag);
            if let Some(v) = value {
                fields[at..].copy_from_slice(v);
            }
            for (level, pred) in preds.iter().enumerate().take(height) {
                // The new node's successor: the old node's (replacing it) or
                // its predecessor's.
                let next = if replaces {
                    link(succ, level).load(AtomicOrdering::Relaxed)
                } else {
                    link(*pred, level).load(AtomicOrdering::Relaxed)
                };
                node.sub((level + 1) * LINK)
                    .cast::<AtomicPtr<u8>>()
                    .write(AtomicPtr::new(next));
            }
            node
        };
        for (level, pred) in preds.iter().enumerate().take(height) {
            // Publish, bottom level first, so that a node reachable at some
            // level is already in level 0 (the list's membership). `Release`
            // orders every write above before the store: a reader that loads
            // `node` from this link with `Acquire` sees it initialised.
            // (Replacing: `pred`'s link at `level` pointed to the old node,
            // which is at every level below its height.)
            // SAFETY: `pred` is the head or a published node whose height
            // exceeds `level` (the caller's contract).
            unsafe { link(*pred, level) }.store(node, AtomicOrdering::Release);
        }
        if !replaces {
            added.len += 1;
        }
        added.allocated += allocated;
        added.charge += size + wasted;
        added.max_seq = added.max_seq.max(seq);
        (node, height)
    }

    /// Publishes the accounting of inserts made under the lock; returns the
    /// bytes they added to the size estimate.
    fn account(&self, added: &Added) -> usize {
        if added.len > 0 {
            self.len.fetch_add(added.len, AtomicOrdering::Relaxed);
        }
        if added.allocated > 0 {
            self.arena_bytes
                .fetch_add(added.allocated, AtomicOrdering::Relaxed);
        }
        self.size.fetch_add(added.charge, AtomicOrdering::Relaxed);
        self.max_seq
            .fetch_max(added.max_seq, AtomicOrdering::Relaxed);
        added.charge
    }

    /// [`seek`](Self::seek) for each entry of `chunk` (at most [`LANES`]),
    /// the searches taking turns one step at a time: each step loads the
    /// next node's link and prefetches the node it points to, whose key the
    /// search compares on its next turn, after the other searches' steps.
    ///
    /// # Safety
    /// As for [`seek`](Self::seek); `preds` has a row per entry of `chunk`.
    unsafe fn seek_lanes(
        &self,
        chunk: &[Version<'_>],
        levels: usize,
        preds: &mut [[*const u8; MAX_HEIGHT]; LANES],
    ) {
        debug_assert!(chunk.len() <= LANES && levels >= 1);
        // Per lane: the node the search stands on, the level it walks and
        // the node after it at that level; `None` once the search is done.
        let mut lanes: [Option<(*const u8, usize, *const u8)>; LANES] = [None; LANES];
        for lane in lanes.iter_mut().take(chunk.len()) {
            let head = self.head();
            // SAFETY: the head's tower has every level.
            let next = unsafe { link(head, levels - 1) }.load(AtomicOrdering::Acquire);
            prefetch(next, levels - 1);
            *lane = Some((head, levels - 1, next));
        }
        let mut active = chunk.len();
        while active > 0 {
            for ((lane, (key, seq, _)), found) in lanes.iter_mut().zip(chunk).zip(preds.iter_mut())
            {
                let Some((mut x, mut level, next)) = *lane else {
                    continue;
                };
                // SAFETY: a non-null link points to a published node.
                if !next.is_null() && unsafe { node_before(next, key, *seq) } {
                    x = next;
                } else {
                    found[level] = x;
                    if level == 0 {
                        *lane = None;
                        active -= 1;
                        continue;
                    }
                    level -= 1;
                }
                // SAFETY: `x` is the head or a node reached at `level` or
                // above, so its tower has `level`; `Acquire` as in `seek`.
                let next = unsafe { link(x, level) }.load(AtomicOrdering::Acquire);
                prefetch(next, level);
                *lane = Some((x, level, next));
            }
        }
    }

    /// Walks down from the top `levels` levels to the first node at or after
    /// the internal key `(key, seq)` (null if none), recording in `preds`
    /// the last node before it at each level walked.
    ///
    /// # Safety
    /// `levels <= MAX_HEIGHT`. The returned pointer is null or a node of
    /// `self`, valid as long as `self`.
    unsafe fn seek(
        &self,
        key: &[u8],
        seq: SeqNo,
        levels: usize,
        preds: &mut [*const u8; MAX_HEIGHT],
    ) -> *const u8 {
        let mut x = self.head();
        let mut next = ptr::null();
        for level in (0..levels).rev() {
            loop {
                // SAFETY: `x` is the head or a node reached at `level` (or
                // above), so its tower has `level`. `Acquire` pairs with the
                // `Release` that published `next`: its bytes are visible.
                next = unsafe { link(x, level) }.load(AtomicOrdering::Acquire);
                // SAFETY: a non-null link points to a published node.
                if next.is_null() || !unsafe { node_before(next, key, seq) } {
                    break;
                }
                x = next;
            }
            if let Some(p) = preds.get_mut(level) {
                *p = x;
            }
        }
        next
    }

    /// The first node at or after `(key, seq)`, or null.
    fn lower_bound(&self, key: &[u8], seq: SeqNo) -> *const u8 {
        let mut preds = [ptr::null(); MAX_HEIGHT];
        let levels = self.height.load(AtomicOrdering::Relaxed).min(MAX_HEIGHT);
        // SAFETY: `levels <= MAX_HEIGHT`.
        unsafe { self.seek(key, seq, levels, &mut preds) }
    }

    /// The newest version of `key` with sequence number `<= snapshot`.
    ///
    /// `Some(Value::Delete)` means a tombstone decides the key (older tables
    /// must not be consulted); `None` means this table knows nothing about
    /// the key as of `snapshot`. The value is copied out of the arena.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Option<Value> {
        // The first entry at or after (key, snapshot) is the newest version of
        // `key` with seq <= snapshot, if `key` has one; else a larger key.
        let node = self.lower_bound(key, snapshot);
        if node.is_null() {
            return None;
        }
        // SAFETY: `node` is a published node of `self`; the slices are
        // copied before `self`'s borrow ends.
        unsafe {
            if node_key(node) != key {
                return None;
            }
            Some(match node_value(node) {
                Some(v) => Value::Put(Bytes::copy_from_slice(v)),
                None => Value::Delete,
            })
        }
    }

    /// Bytes of the nodes inserted (towers, headers, keys, values, padding)
    /// plus the arena chunk tails left unused: the arena bytes in use.
    pub fn approximate_size(&self) -> usize {
        self.size.load(AtomicOrdering::Relaxed)
    }

    /// Bytes of arena memory allocated (whole chunks, the current one
    /// included).
    pub fn arena_bytes(&self) -> usize {
        self.arena_bytes.load(AtomicOrdering::Relaxed)
    }

    /// The number of entries (versions, tombstones included).
    pub fn len(&self) -> usize {
        self.len.load(AtomicOrdering::Relaxed)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest sequence number inserted, 0 if none.
    pub fn max_seq(&self) -> SeqNo {
        self.max_seq.load(AtomicOrdering::Relaxed)
    }

    /// Calls `f` with every entry (key, sequence number, value; `None` for
    /// a tombstone) in internal-key order, borrowing them from the arena:
    /// nothing is copied or allocated. For a flush, which reads a table no
    /// one inserts into any more; entries inserted concurrently may or may
    /// not be visited. Stops at the first error `f` returns.
    ///
    /// # Errors
    /// The first error of `f`.
    pub fn for_each<E>(
        &self,
        mut f: impl FnMut(&[u8], SeqNo, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        // SAFETY: level 0 is in the head's tower; `Acquire` as in `seek`.
        let mut node = unsafe { link(self.head(), 0) }.load(AtomicOrdering::Acquire);
        while !node.is_null() {
            // SAFETY: `node` was loaded (with `Acquire`) from a link of this
            // table, which `&self` keeps alive for the whole walk: a
            // published node, whose key and value are never written again
            // and whose level-0 link exists. The borrows end with `f`'s call.
            unsafe {
                f(node_key(node), node_seq(node), node_value(node))?;
                node = link(node, 0).load(AtomicOrdering::Acquire);
            }
        }
        Ok(())
    }

    /// A streaming iterator over every version of every key `>= start`
    /// (all keys if `None`), in internal-key order. It holds the table alive.
    #[must_use]
    pub fn iter(self: &Arc<Self>, start: Option<&[u8]>) -> MemtableIter {
        let first = match start {
            // (start, SeqNo::MAX) is the smallest internal key with user key
            // `start`.
            Some(start) => self.lower_bound(start, SeqNo::MAX),
            // SAFETY: level 0 is in the head's tower; `Acquire` as in `seek`.
            None => unsafe { link(self.head(), 0) }.load(AtomicOrdering::Acquire),
        };
        MemtableIter {
            _table: Arc::clone(self),
            next: NodeRef(first),
            buf: VecDeque::with_capacity(ITER_BATCH),
            batch: 1,
        }
    }
}

/// A pointer to a node of the table a [`MemtableIter`] holds, or null.
#[derive(Debug)]
struct NodeRef(*const u8);

// SAFETY: the pointer is only read through, and only while the iterator's
// `Arc<Memtable>` keeps the arena alive; the table is `Sync`, so reading it
// from any thread is sound.
unsafe impl Send for NodeRef {}

/// An owned, streaming iterator over a [`Memtable`]'s entries, in
/// internal-key order, every version included (snapshot filtering is the
/// reader's job, see [`crate::merge::SnapshotIter`]).
///
/// # Thread safety
/// `Send`; holds an `Arc` of its table. It walks the skip list's bottom
/// level; each refill copies up to 32 entries (at most ~64 KiB, at least
/// one) into one buffer that the entries' keys and values slice, so work
/// per `next` is bounded.
///
/// # Invariants
/// Entries come in strictly increasing internal-key order: no duplicates, and
/// every entry present when the iterator was created (at or after `start`) is
/// returned. Entries inserted concurrently may or may not appear; once `next`
/// has returned `None` it always does.
#[derive(Debug)]
pub struct MemtableIter {
    /// Keeps the arena that `next` points into alive.
    _table: Arc<Memtable>,
    /// The next node to copy out; null once the table is exhausted.
    next: NodeRef,
    buf: VecDeque<Entry>,
    /// Entries the next refill copies: 1 at first, doubling up to
    /// `ITER_BATCH`, so that opening a merge over many tables stays cheap.
    batch: usize,
}

impl MemtableIter {
    /// Copies the next batch of entries out of the skip list into `buf`.
    fn refill(&mut self) {
        let take = self.batch;
        self.batch = (self.batch * 2).min(ITER_BATCH);
        // (key start, value start, end, seq, is a put) in `data`.
        let mut raw: Vec<(usize, usize, usize, SeqNo, bool)> = Vec::with_capacity(take);
        let mut data: Vec<u8> = Vec::new();
        let mut node = self.next.0;
        while !node.is_null() && raw.len() < take && data.len() < ITER_BATCH_BYTES {
            // SAFETY: `node` was loaded (with `Acquire`) from a link of
            // `self._table`, which `self` keeps alive: a published node. Its
            // key and value are copied before the borrow ends; its level-0
            // link exists (every tower has it).
            unsafe {
                let key_at = data.len();
                data.extend_from_slice(node_key(node));
                let value_at = data.len();
                let value = node_value(node);
                if let Some(v) = value {
                    data.extend_from_slice(v);
                }
                raw.push((
                    key_at,
                    value_at,
                    data.len(),
                    node_seq(node),
                    value.is_some(),
                ));
                node = link(node, 0).load(AtomicOrdering::Acquire);
            }
        }
        self.next = NodeRef(node);
        let data = Bytes::from(data);
        self.buf
            .extend(raw.into_iter().map(|(k, v, end, seq, put)| Entry {
                key: data.slice(k..v),
                seq,
                value: if put {
                    Value::Put(data.slice(v..end))
                } else {
                    Value::Delete
                },
            }));
    }
}

impl Iterator for MemtableIter {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.buf.is_empty() {
            if self.next.0.is_null() {
                return None;
            }
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

    /// Every entry from `start`, through the iterator; from the start, the
    /// borrowing walk ([`Memtable::for_each`]) must visit the same.
    fn all(t: &Arc<Memtable>, start: Option<&[u8]>) -> Vec<(Vec<u8>, SeqNo, Value)> {
        let entries: Vec<_> = t
            .iter(start)
            .map(|e| (e.key.to_vec(), e.seq, e.value))
            .collect();
        if start.is_none() {
            let mut walked = Vec::new();
            t.for_each(|key, seq, value| {
                let value = value.map_or(Value::Delete, |v| Value::Put(Bytes::copy_from_slice(v)));
                walked.push((key.to_vec(), seq, value));
                Ok::<_, ()>(())
            })
            .expect("no error");
            assert_eq!(walked, entries, "for_each and iter differ");
        }
        entries
    }

    #[test]
    fn for_each_stops_at_the_first_error() {
        let t = Memtable::new();
        for k in 0..10u8 {
            t.insert(&[k], 1, Some(&[k]));
        }
        let mut seen = Vec::new();
        let r = t.for_each(|key, _, _| {
            seen.push(key[0]);
            if key[0] == 3 {
                Err(key[0])
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(3));
        assert_eq!(seen, [0, 1, 2, 3]);
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
            t.insert(k, i as SeqNo + 1, Some(k));
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

    /// The arena bytes of the node of `(key, seq)`: its tower and its body
    /// (sequence number, height, key length, key, value tag, value), padded
    /// to 8 bytes.
    fn node_bytes(t: &Memtable, key: &[u8], seq: SeqNo) -> usize {
        let node = t.lower_bound(key, seq);
        assert!(!node.is_null());
        // SAFETY: a published node of `t`.
        let (k, height, value) = unsafe { (node_key(node), node_height(node), node_value(node)) };
        assert_eq!(k, key);
        let tag = value.map_or(0, |v| v.len() as u64 + 1);
        let body = 8 + 1 + varint_len(key.len() as u64) + key.len() + varint_len(tag);
        (8 * height + body + value.map_or(0, <[u8]>::len)).next_multiple_of(8)
    }

    #[test]
    fn node_layout() {
        let t = Memtable::new();
        t.insert(b"k", 0x0102, Some(b"vv"));
        let node = t.lower_bound(b"k", SeqNo::MAX);
        // SAFETY: a published node of `t`, 14 bytes long before its padding.
        let (bytes, height) = unsafe {
            (
                std::slice::from_raw_parts(node, 14).to_vec(),
                node_height(node),
            )
        };
        let want = [2, 1, 0, 0, 0, 0, 0, 0, height as u8, 1, b'k', 3, b'v', b'v'];
        assert_eq!(bytes, want);
        assert_eq!(t.approximate_size(), (8 * height + 14).next_multiple_of(8));
    }

    /// Lengths on both sides of each varint width, empty values (not
    /// tombstones) and tombstones.
    #[test]
    fn key_and_value_lengths_at_varint_boundaries() {
        let t = Arc::new(Memtable::new());
        // A value's tag is its length plus one: 126 and 16,382 bytes take
        // the last tag of one and two bytes.
        let key_lengths = [0usize, 1, 127, 128, 16_383, 16_384];
        let value_lengths = [0usize, 1, 126, 127, 16_382, 16_383, 70_000];
        let mut want = Vec::new();
        let mut seq = 0;
        for &key_len in &key_lengths {
            for &value_len in &value_lengths {
                seq += 1;
                // Keys of one length differ in their sequence numbers.
                let key = vec![b'k'; key_len];
                let value = (value_len != 70_000).then(|| vec![seq as u8; value_len]);
                t.insert(&key, seq, value.as_deref());
                assert_eq!(
                    t.get(&key, seq),
                    Some(
                        value
                            .as_ref()
                            .map_or(Value::Delete, |v| Value::Put(Bytes::from(v.clone())))
                    ),
                    "key {key_len}, value {value_len}"
                );
                want.push((key, seq, value));
            }
        }
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::from(u32::MAX)), 5);
        want.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let got = all(&t, None);
        assert_eq!(got.len(), want.len());
        for ((k, s, v), (wk, ws, wv)) in got.iter().zip(&want) {
            assert_eq!((k, *s), (wk, *ws));
            assert_eq!(
                v,
                &wv.as_ref()
                    .map_or(Value::Delete, |v| Value::Put(Bytes::from(v.clone())))
            );
        }
        let charged: usize = want.iter().map(|(k, s, _)| node_bytes(&t, k, *s)).sum();
        assert!(t.approximate_size() >= charged, "{t:?}");
    }

    #[test]
    fn size_len_and_max_seq_accounting() {
        let t = Memtable::new();
        assert!(t.is_empty());
        assert_eq!((t.len(), t.approximate_size(), t.max_seq()), (0, 0, 0));
        let charge = t.insert(b"abc", 7, Some(b"12345"));
        assert_eq!(charge, node_bytes(&t, b"abc", 7));
        assert_eq!(t.approximate_size(), charge);
        assert_eq!((t.len(), t.max_seq()), (1, 7));
        t.insert(b"abc", 3, None);
        let both = node_bytes(&t, b"abc", 7) + node_bytes(&t, b"abc", 3);
        assert_eq!(t.approximate_size(), both);
        assert_eq!((t.len(), t.max_seq()), (2, 7));
        let before = t.approximate_size();
        t.insert(b"x", 9, Some(&[0u8; 1000]));
        assert!(t.approximate_size() >= before + 1001);
        assert_eq!((t.len(), t.max_seq()), (3, 9));
        assert!(!t.is_empty());
    }

    /// A xorshift generator for the randomized tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    type Model = std::collections::BTreeMap<(Vec<u8>, std::cmp::Reverse<SeqNo>), Option<Vec<u8>>>;

    /// Keys of 0..200 bytes over {0x00, 0x01, 0x7f, 0xff}, mostly short so
    /// that keys repeat and share prefixes.
    fn random_key(rng: &mut Rng) -> Vec<u8> {
        const ALPHABET: [u8; 4] = [0x00, 0x01, 0x7f, 0xff];
        let len = if rng.below(8) == 0 {
            rng.below(200)
        } else {
            rng.below(4)
        };
        (0..len).map(|_| ALPHABET[rng.below(4) as usize]).collect()
    }

    fn model_get(model: &Model, key: &[u8], snapshot: SeqNo) -> Option<Value> {
        let ((k, _), v) = model
            .range((key.to_vec(), std::cmp::Reverse(snapshot))..)
            .next()?;
        (k.as_slice() == key).then(|| match v {
            Some(v) => Value::Put(Bytes::copy_from_slice(v)),
            None => Value::Delete,
        })
    }

    fn model_from(model: &Model, start: Option<&[u8]>) -> Vec<(Vec<u8>, SeqNo, Value)> {
        let from = (
            start.unwrap_or_default().to_vec(),
            std::cmp::Reverse(SeqNo::MAX),
        );
        model
            .range(from..)
            .map(|((k, s), v)| {
                let value = match v {
                    Some(v) => Value::Put(Bytes::copy_from_slice(v)),
                    None => Value::Delete,
                };
                (k.clone(), s.0, value)
            })
            .collect()
    }

    #[test]
    fn randomized_against_a_btreemap_model() {
        randomized(false);
    }

    #[test]
    fn randomized_sorted_batches_against_a_btreemap_model() {
        randomized(true);
    }

    /// A random entry: few sequence numbers, so (key, seq) repeats now and
    /// then, which replaces the value.
    fn random_entry(rng: &mut Rng) -> (Vec<u8>, SeqNo, Option<Vec<u8>>) {
        let key = random_key(rng);
        let seq = rng.below(400);
        let value: Option<Vec<u8>> = if rng.below(5) == 0 {
            None
        } else {
            let len = if rng.below(20) == 0 {
                rng.below(5000)
            } else {
                rng.below(40)
            };
            Some((0..len).map(|_| rng.next() as u8).collect())
        };
        (key, seq, value)
    }

    /// Inserts (one at a time, or in batches through `insert_sorted`),
    /// reads and scans, checking every answer against a model.
    fn randomized(batched: bool) {
        // Miri runs a slice: one seed, a tenth of the operations.
        let (seeds, scale): (u64, u32) = if cfg!(miri) { (1, 10) } else { (12, 1) };
        for seed in 1..=seeds {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let t = Arc::new(Memtable::new());
            let mut model = Model::new();
            let mut size = 0;
            // Batches hold 12 entries on average: fewer operations keep the
            // scans as short as those of the one-at-a-time run.
            let ops = if batched { 600 } else { 3000u32 } / scale;
            for op in 0..ops {
                match rng.below(10) {
                    0..=5 if batched => {
                        let n = 1 + rng.below(3 * LANES as u64);
                        let mut batch: Vec<(Vec<u8>, SeqNo, Option<Vec<u8>>)> =
                            (0..n).map(|_| random_entry(&mut rng)).collect();
                        match rng.below(6) {
                            // Unordered, maybe with repeats: one at a time.
                            0 => {}
                            // Ordered with a repeated (key, seq): one at a time.
                            1 => {
                                batch.sort_by(|a, b| (&a.0, b.1).cmp(&(&b.0, a.1)));
                                let i = rng.below(n) as usize;
                                batch.insert(i, batch[i].clone());
                            }
                            // Strictly ordered, often replacing entries of
                            // the table.
                            _ => {
                                if rng.below(2) == 0 && !model.is_empty() {
                                    for e in batch.iter_mut().take(3) {
                                        let i = rng.below(model.len() as u64) as usize;
                                        let k = model.keys().nth(i).unwrap();
                                        (e.0, e.1) = (k.0.clone(), k.1 .0);
                                    }
                                }
                                batch.sort_by(|a, b| (&a.0, b.1).cmp(&(&b.0, a.1)));
                                batch.dedup_by(|a, b| (&a.0, a.1) == (&b.0, b.1));
                            }
                        }
                        let entries: Vec<Version<'_>> = batch
                            .iter()
                            .map(|(k, s, v)| (k.as_slice(), *s, v.as_deref()))
                            .collect();
                        size += t.insert_sorted(&entries);
                        for (key, seq, value) in batch {
                            model.insert((key, std::cmp::Reverse(seq)), value);
                        }
                    }
                    0..=5 => {
                        let (key, seq, value) = random_entry(&mut rng);
                        size += t.insert(&key, seq, value.as_deref());
                        model.insert((key, std::cmp::Reverse(seq)), value);
                    }
                    6..=8 => {
                        // A key likely present, or a random one.
                        let key = if rng.below(2) == 0 && !model.is_empty() {
                            let i = rng.below(model.len() as u64) as usize;
                            model.keys().nth(i).map(|k| k.0.clone()).unwrap()
                        } else {
                            random_key(&mut rng)
                        };
                        let snapshot = match rng.below(3) {
                            0 => SeqNo::MAX,
                            _ => rng.below(420),
                        };
                        assert_eq!(
                            t.get(&key, snapshot),
                            model_get(&model, &key, snapshot),
                            "seed {seed} op {op}: get {key:?} at {snapshot}"
                        );
                    }
                    _ => {
                        let start = (rng.below(4) != 0).then(|| random_key(&mut rng));
                        assert_eq!(
                            all(&t, start.as_deref()),
                            model_from(&model, start.as_deref()),
                            "seed {seed} op {op}: iter from {start:?}"
                        );
                    }
                }
                assert_eq!(t.len(), model.len());
            }
            assert_eq!(all(&t, None), model_from(&model, None));
            assert_eq!(t.approximate_size(), size);
            assert_eq!(t.max_seq(), model.keys().map(|k| k.1 .0).max().unwrap_or(0));
        }
    }

    #[test]
    fn replacing_a_key_and_seq_keeps_one_entry() {
        let t = Arc::new(Memtable::new());
        t.insert(b"a", 1, Some(b"a1"));
        t.insert(b"b", 5, Some(b"old"));
        t.insert(b"c", 1, Some(b"c1"));
        let mut it = t.iter(None);
        assert_eq!(it.next().map(|e| e.seq), Some(1));
        let before = t.approximate_size();
        let charge = t.insert(b"b", 5, None);
        assert_eq!(charge, node_bytes(&t, b"b", 5));
        assert_eq!(t.approximate_size(), before + charge);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(b"b", 5), Some(Value::Delete));
        let got = all(&t, None);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (b"b".to_vec(), 5, Value::Delete));
        // An iterator opened before sees one version of (b, 5), either one.
        let rest: Vec<(Bytes, SeqNo)> = it.map(|e| (e.key, e.seq)).collect();
        assert_eq!(
            rest,
            vec![(Bytes::from_static(b"b"), 5), (Bytes::from_static(b"c"), 1)]
        );
    }

    #[test]
    fn entries_larger_than_a_chunk() {
        let t = Arc::new(Memtable::new());
        let big_key = vec![0xabu8; 64 * 1024];
        let big_value: Vec<u8> = (0..3 * CHUNK_SIZE + 5).map(|i| i as u8).collect();
        let mid_value = vec![7u8; OWN_CHUNK]; // just over the own-chunk limit with its header
        let edge_value = vec![8u8; OWN_CHUNK - 64]; // fits in the shared chunk
        t.insert(b"small1", 1, Some(b"x"));
        t.insert(&big_key, 2, Some(&big_value));
        t.insert(b"small2", 3, Some(b"y"));
        t.insert(b"mid", 4, Some(&mid_value));
        t.insert(b"edge", 5, Some(&edge_value));
        for i in 0..20_000u32 {
            t.insert(
                format!("fill{i:06}").as_bytes(),
                10 + u64::from(i),
                Some(&[1u8; 100]),
            );
        }
        t.insert(&big_key, 6, None);
        assert_eq!(t.get(&big_key, 2), put(&big_value));
        assert_eq!(t.get(&big_key, 10), Some(Value::Delete));
        assert_eq!(t.get(b"mid", 4), put(&mid_value));
        assert_eq!(t.get(b"edge", 5), put(&edge_value));
        assert_eq!(t.get(b"small1", 1), put(b"x"));
        assert_eq!(t.get(b"small2", 3), put(b"y"));
        assert_eq!(t.get(b"fill019999", SeqNo::MAX), put(&[1u8; 100]));
        let got = all(&t, None);
        assert_eq!(got.len(), 20_000 + 6);
        let (k, s, v) = got.iter().find(|e| e.1 == 2).unwrap();
        assert_eq!((k, *s), (&big_key, 2));
        assert_eq!(v, &Value::Put(Bytes::from(big_value.clone())));
        // Every byte charged sits in the arena; the arena is not much more.
        let data: usize = big_key.len() * 2 + big_value.len() + mid_value.len();
        assert!(t.approximate_size() > data);
        assert!(t.arena_bytes() >= data);
        assert!(
            t.arena_bytes() < t.approximate_size() + 2 * CHUNK_SIZE,
            "{t:?}"
        );
    }

    #[test]
    fn readers_run_concurrently_with_one_writer() {
        const N: u64 = 30_000;
        // A fixed random order of distinct keys; entry i has seq i + 1.
        let key = |i: u64| {
            let h = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut k = h.to_be_bytes()[..(1 + (h % 8) as usize)].to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            k
        };
        let t = Arc::new(Memtable::new());
        let done = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (t, done) = (Arc::clone(&t), Arc::clone(&done));
            thread::spawn(move || {
                for i in 0..N {
                    t.insert(&key(i), i + 1, Some(&key(i)));
                    done.store(i as usize + 1, AtomicOrdering::Release);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (t, done) = (Arc::clone(&t), Arc::clone(&done));
                thread::spawn(move || {
                    let mut rng = Rng(r + 7);
                    let mut rounds = 0;
                    loop {
                        let n = done.load(AtomicOrdering::Acquire) as u64;
                        let mut seen = vec![false; N as usize];
                        let mut prev: Option<Bytes> = None;
                        for e in t.iter(None) {
                            if let Some(p) = &prev {
                                assert!(p < &e.key, "out of order: {p:?} then {:?}", e.key);
                            }
                            assert_eq!(e.value, Value::Put(e.key.clone()));
                            seen[(e.seq - 1) as usize] = true;
                            prev = Some(e.key);
                        }
                        let missing = seen.iter().take(n as usize).filter(|s| !**s).count();
                        assert_eq!(missing, 0, "{missing} of the first {n} entries not seen");
                        for _ in 0..200 {
                            let n = done.load(AtomicOrdering::Acquire) as u64;
                            if n > 0 {
                                let i = rng.below(n);
                                assert_eq!(t.get(&key(i), SeqNo::MAX), put(&key(i)));
                            }
                        }
                        rounds += 1;
                        if n == N && rounds >= 3 {
                            return rounds;
                        }
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap() >= 3);
        }
        assert_eq!(t.len(), N as usize);
    }

    #[test]
    fn many_threads_insert_concurrently() {
        const THREADS: u64 = 8;
        const EACH: u64 = 3000;
        let t = Arc::new(Memtable::new());
        let sizes: Vec<usize> = (0..THREADS)
            .map(|w| {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    let mut size = 0;
                    for i in 0..EACH {
                        let seq = i * THREADS + w + 1;
                        let k = format!("k{:05}", (i * 7 + w * 13) % 1000);
                        size += t.insert(k.as_bytes(), seq, Some(&seq.to_be_bytes()));
                    }
                    size
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let n = (THREADS * EACH) as usize;
        assert_eq!(t.len(), n);
        assert_eq!(t.approximate_size(), sizes.iter().sum::<usize>());
        assert_eq!(t.max_seq(), THREADS * EACH);
        let got = all(&t, None);
        assert_eq!(got.len(), n);
        for w in got.windows(2) {
            assert!(w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 > w[1].1));
        }
        for (k, seq, v) in &got {
            assert_eq!(v, &Value::Put(Bytes::copy_from_slice(&seq.to_be_bytes())));
            assert_eq!(t.get(k, *seq), Some(v.clone()));
        }
    }

    /// Heap per entry for 16-byte keys and 100-byte values (run with
    /// `--nocapture` to see the numbers).
    #[test]
    fn bytes_per_entry_for_small_entries() {
        const N: usize = 200_000;
        let t = Memtable::new();
        let mut rng = Rng(99);
        for i in 0..N {
            let k = rng.next().to_be_bytes();
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&k);
            key[8..].copy_from_slice(&(i as u64).to_be_bytes());
            t.insert(&key, i as u64 + 1, Some(&[0x5a; 100]));
        }
        let (size, arena) = (t.approximate_size() / N, t.arena_bytes() / N);
        eprintln!("approximate_size/entry = {size} B, arena bytes/entry = {arena} B");
        // 116 bytes of data, 11 of header, ~10.7 of tower, 1 of padding
        // (a fixed 16-byte header made it 144–152).
        assert!((134..=142).contains(&size), "{size}");
        assert!((134..=145).contains(&arena), "{arena}");
    }
}
