//! Simulated power loss: what survives a crash.

use super::tree::{Node, Tree};

/// What a crash does to bytes appended but not yet synced.
///
/// In every mode, synced bytes survive and directories revert to their
/// entries as of their last `sync_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// Each file keeps a seeded pseudo-random prefix of its unsynced bytes
    /// (possibly none, possibly all): a torn tail. The choice is biased
    /// towards the extremes: none and all are each picked a quarter of the
    /// time.
    #[default]
    TearTail,
    /// As [`CrashMode::TearTail`], and when a file keeps at least one
    /// unsynced byte, its last 1 to 8 kept bytes are garbled (each XORed
    /// with a non-zero value). Synced bytes are never garbled.
    TearAndGarble,
    /// As [`CrashMode::TearTail`], and then each [`SECTOR`]-byte sector of
    /// the file (by offset) that holds kept unsynced bytes loses them with
    /// probability 1/4: they read back as zeros, while bytes after them
    /// survive. A file system writes dirty pages back in no promised order,
    /// and a device writes no more than a sector atomically, so a power
    /// loss can keep a later unsynced write and lose an earlier one. Synced
    /// bytes always survive.
    LoseSectors,
}

/// The unit [`CrashMode::LoseSectors`] loses.
pub const SECTOR: usize = 512;

/// splitmix64: a tiny, seedable generator. Not for anything but tests.
#[derive(Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..=max`, uniformly (up to a negligible modulo bias).
    pub(super) fn up_to(&mut self, max: usize) -> usize {
        let span = (max as u64).wrapping_add(1);
        if span == 0 {
            return self.next_u64() as usize;
        }
        (self.next_u64() % span) as usize
    }

    /// How many of `unsynced` bytes to keep: 0 or all a quarter of the time
    /// each, otherwise uniform.
    fn torn_len(&mut self, unsynced: usize) -> usize {
        match self.next_u64() % 4 {
            0 => 0,
            1 => unsynced,
            _ => self.up_to(unsynced),
        }
    }
}

impl Tree {
    /// Applies a power loss: directories revert to their durable entries,
    /// files keep their synced prefix plus what `mode` keeps of the rest, and
    /// unreachable inodes are dropped. Inodes are visited in number order, so
    /// the outcome depends only on the tree and `seed`.
    pub(super) fn crash(&mut self, mode: CrashMode, seed: u64) {
        let mut rng = Rng::new(seed);
        for node in self.nodes.values_mut() {
            match node {
                Node::Dir(dir) => dir.current = dir.durable.clone(),
                Node::File(file) => {
                    let unsynced = file.data.len().saturating_sub(file.synced_len);
                    let keep = match mode {
                        CrashMode::DropUnsynced => 0,
                        CrashMode::TearTail | CrashMode::TearAndGarble | CrashMode::LoseSectors
                            if unsynced > 0 =>
                        {
                            rng.torn_len(unsynced)
                        }
                        _ => 0,
                    };
                    let len = file.synced_len + keep;
                    file.data.truncate(len);
                    if mode == CrashMode::TearAndGarble && keep > 0 {
                        let garbled = 1 + rng.up_to(keep.min(8) - 1);
                        for byte in &mut file.data[len - garbled..] {
                            *byte ^= (rng.next_u64() as u8) | 1;
                        }
                    }
                    if mode == CrashMode::LoseSectors && keep > 0 {
                        let synced = file.synced_len;
                        let mut sector = synced - synced % SECTOR;
                        while sector < len {
                            let end = (sector + SECTOR).min(len);
                            if rng.next_u64().is_multiple_of(4) {
                                file.data[sector.max(synced)..end].fill(0);
                            }
                            sector += SECTOR;
                        }
                    }
                    // What reached the medium is all that exists now.
                    file.synced_len = file.data.len();
                }
            }
        }
        self.collect_garbage();
    }
}
