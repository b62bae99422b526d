//! Engine options.

use std::sync::Arc;

use crate::fs::{Fs, RealFs};

/// Options of a [`Db`](crate::Db).
#[derive(Debug, Clone)]
pub struct Options {
    /// The file system (the real one by default; tests pass a `SimFs`).
    pub fs: Arc<dyn Fs>,
    /// Default durability of writes. `false` (default): a write returns once
    /// its WAL record is handed to the OS — it survives a process crash, not
    /// power loss. `true`: every write returns only after `fdatasync` — it
    /// survives power loss. Per-write options override it.
    pub sync_writes: bool,
    /// Size at which a partition's memtable becomes immutable and is flushed
    /// to a level-0 table (default 32 MiB).
    pub memtable_size: usize,
    /// Budget for the memtables holding unflushed data (active and
    /// immutable), across partitions (default 256 MiB; 0 disables). When it
    /// is exceeded (and the active memtables exceed 7/8 of it), the flush
    /// thread flushes the largest active memtables first until they are at
    /// most 3/4 of it. Flushed memtables that iterators still hold do not
    /// count. It schedules flushes only and never slows writers: if flushes
    /// fall behind, usage exceeds it. `Stats::memtable_bytes` shows usage.
    pub write_buffer_size: usize,
    /// Most bytes of live WAL files (default 0: 4 × `write_buffer_size`,
    /// unlimited if that is 0 too). When exceeded, every memtable holding
    /// data in the oldest WAL file is flushed, however small, so that file
    /// can be deleted: a partition written once does not keep WAL files
    /// forever. Checked at each group commit; not a hard limit (the file
    /// being written, and flushes in progress, may keep usage above it).
    pub max_total_wal_size: u64,
    /// Size at which the WAL moves to a new file (default 64 MiB).
    pub wal_file_size: u64,
    /// Step in which WAL files grow ahead of their records (default 1 MiB;
    /// 0 grows them as written). A synced write then lands inside the file
    /// and its `fdatasync` commits no size change: about 1.5× the synced
    /// writes per second on ext4. On Linux the step's blocks are allocated
    /// (`fallocate`) and mapped, and appends are copied into the mapping
    /// with no system call per write (1.7–1.9× the fillseq rate); elsewhere,
    /// or where the file system cannot allocate, the file is extended
    /// sparsely and written with `pwrite`. Steps above 1 GiB are cut to
    /// 1 GiB; 0 also turns the mapping off.
    pub wal_preallocate: u64,
    /// Most bytes of write batches one group commit takes (default 4 MiB).
    pub max_group_bytes: usize,
    /// Target size of an SSTable data block (default 4 KiB).
    pub block_size: usize,
    /// Bloom filter bits per key in SSTables (default 10; 0 disables).
    pub bloom_bits_per_key: u32,
    /// Size at which the manifest is rewritten as a snapshot (default 4 MiB).
    pub manifest_rollover_size: u64,
    /// Byte budget of the block cache (default 32 MiB): cached data blocks
    /// plus the index and filter blocks of every open table, which stay
    /// charged while the table is open, plus a reserve of a 64th (at most
    /// 256 KiB) for free block buffers kept for reuse. 0 caches no data
    /// block. Long scans read ahead outside the cache.
    pub block_cache_size: usize,
    /// Most table files kept open (default 1,000; at least 1): the least
    /// recently used table is closed beyond it and reopened on demand.
    /// Iterators keep their tables open beyond the bound; the WAL, manifest
    /// and lock file take a few more descriptors.
    pub max_open_files: usize,
    /// Read table files through a memory map instead of `pread` + block
    /// cache (default `false`). Data blocks then live in the OS page cache
    /// (not charged to `block_cache_size`); CRCs are still checked on every
    /// read. Safe only if nothing but this engine writes the directory's
    /// files: a table file truncated by another process while mapped makes
    /// reads fault (SIGBUS).
    pub mmap_reads: bool,
    /// Level-0 tables of a partition that trigger a compaction into the
    /// base level (default 4).
    pub l0_compaction_trigger: usize,
    /// Level-size threshold (default 256 MiB): level 0 compacts into the
    /// highest level whose target exceeds it, and no level above the bottom
    /// targets less; see [`compaction`](crate::compaction).
    pub level_base_size: u64,
    /// Growth factor of level targets (default 10).
    pub level_size_multiplier: u64,
    /// Size at which compaction cuts an output table (default 64 MiB).
    pub target_file_size: u64,
    /// No background compaction (default `false`); `Db::compact` and
    /// `Db::compact_due` still work.
    pub disable_auto_compactions: bool,
    /// Compact a table that reads keep paying for (default `true`): a get
    /// or scan that has to read more than one sorted run charges the first
    /// table it read a seek, and a table charged one seek per 16 KiB of
    /// what its compaction would rewrite (at least its own size) is
    /// compacted into the level below, as LevelDB's seek compaction does. A
    /// read-mostly partition left with a few level-0 tables under
    /// `l0_compaction_trigger` then ends as one sorted run instead of
    /// reading every table at every seek. Off, only sizes trigger
    /// compactions (RocksDB's behaviour).
    pub seek_compaction: bool,
    /// Level-0 tables of a partition from which its writes are slowed down
    /// (default 20; see [`stall`](crate::stall)).
    pub l0_slowdown_writes_trigger: usize,
    /// Level-0 tables of a partition at which its writes stop until
    /// compaction catches up (default 36; not applied when
    /// `disable_auto_compactions`).
    pub l0_stop_writes_trigger: usize,
    /// Memtables of a partition waiting for a flush at which its writes
    /// stop until a flush completes (default 4).
    pub max_immutable_memtables: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: Arc::new(RealFs::new()),
            sync_writes: false,
            memtable_size: 32 << 20,
            write_buffer_size: 256 << 20,
            max_total_wal_size: 0,
            wal_file_size: 64 << 20,
            wal_preallocate: 1 << 20,
            max_group_bytes: 4 << 20,
            block_size: 4096,
            bloom_bits_per_key: 10,
            manifest_rollover_size: 4 << 20,
            block_cache_size: 32 << 20,
            max_open_files: 1000,
            mmap_reads: false,
            l0_compaction_trigger: 4,
            level_base_size: 256 << 20,
            level_size_multiplier: 10,
            target_file_size: 64 << 20,
            disable_auto_compactions: false,
            seek_compaction: true,
            l0_slowdown_writes_trigger: 20,
            l0_stop_writes_trigger: 36,
            max_immutable_memtables: 4,
        }
    }
}
