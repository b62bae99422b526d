//! Large buffers kept out of `malloc`.
//!
//! glibc serves an allocation of 128 KiB or more with its own `mmap`, whose
//! pages go back to the OS on `free` — but each such `free` raises that
//! threshold to the freed size (up to 32 MiB). After the first memtable is
//! dropped (1 MiB chunks), every later chunk, table index, readahead window
//! and read buffer below the new threshold comes from a malloc arena. Each
//! thread allocates from its own arena, and an arena returns little of what
//! is freed inside it: in the harness's YCSB-E cell at 8 tasks the process's
//! anonymous memory peaked at 84 MiB with the default threshold and at 52
//! MiB with it pinned at 128 KiB (`MALLOC_MMAP_THRESHOLD_=131072`).
//!
//! The engine's large buffers are mapped here instead (anonymous, private
//! mappings from `memmap2`): they are returned to the OS when dropped,
//! whichever thread drops them, and glibc never sees them (a scan's
//! readahead windows reuse one spare mapping until the scan of that table
//! ends, see `sst/readahead.rs`). A mapping that fails falls back to the
//! heap.

use bytes::Bytes;
use memmap2::MmapMut;

/// Buffers of at least this many bytes are mapped.
pub const MAP_AT_LEAST: usize = 128 << 10;

/// A zeroed buffer of `len` bytes: mapped if it is large (see the module
/// docs), else from the heap.
pub enum Buffer {
    /// An anonymous mapping of exactly `len` bytes.
    Mapped(MmapMut),
    /// A heap allocation.
    Heap(Vec<u8>),
}

impl Buffer {
    /// A zeroed buffer of `len` bytes.
    #[must_use]
    pub fn zeroed(len: usize) -> Buffer {
        if len >= MAP_AT_LEAST {
            if let Ok(map) = MmapMut::map_anon(len) {
                return Buffer::Mapped(map);
            }
        }
        Buffer::Heap(vec![0; len])
    }

    /// A copy of `data`.
    #[must_use]
    pub fn copy_of(data: &[u8]) -> Buffer {
        if data.len() >= MAP_AT_LEAST {
            let mut b = Buffer::zeroed(data.len());
            b.copy_from_slice(data);
            return b;
        }
        Buffer::Heap(data.to_vec())
    }

    /// The buffer as shared bytes (no copy); a mapping is unmapped when the
    /// last reference goes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        match self {
            Buffer::Mapped(map) => Bytes::from_owner(map),
            Buffer::Heap(v) => Bytes::from(v),
        }
    }

    /// Whether the buffer is a mapping.
    #[must_use]
    pub fn is_mapped(&self) -> bool {
        matches!(self, Buffer::Mapped(_))
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Mapped(map) => map,
            Buffer::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::Mapped(map) => map,
            Buffer::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "heap" };
        write!(f, "Buffer({kind}, {} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_mapped_small_ones_are_not() {
        let small = Buffer::zeroed(MAP_AT_LEAST - 1);
        assert!(!small.is_mapped());
        let mut large = Buffer::zeroed(MAP_AT_LEAST);
        assert!(large.is_mapped());
        assert!(large.iter().all(|&b| b == 0));
        large[MAP_AT_LEAST - 1] = 7;
        let bytes = large.into_bytes();
        assert_eq!(bytes.len(), MAP_AT_LEAST);
        assert_eq!(bytes[MAP_AT_LEAST - 1], 7);
    }

    #[test]
    fn copies_keep_the_bytes() {
        for len in [0, 10, MAP_AT_LEAST, MAP_AT_LEAST + 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let b = Buffer::copy_of(&data);
            assert_eq!(b.is_mapped(), len >= MAP_AT_LEAST);
            let bytes = b.into_bytes();
            assert_eq!(&bytes[..], &data[..]);
            // A slice outlives the handle it came from.
            let tail = bytes.slice(len / 2..);
            drop(bytes);
            assert_eq!(&tail[..], &data[len / 2..]);
        }
    }
}
