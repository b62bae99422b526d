//! The whole-file bloom filter over a table's user keys.
//!
//! ```text
//! +----------------------+--------+
//! | bits: m B            | k: u8  |
//! +----------------------+--------+
//! ```
//!
//! `bits` is a bit array of `8·m` bits (bit `i` is bit `i % 8` of byte
//! `i / 8`), `k` the number of probes, 1 to 30. A key sets the bits
//! `(h + j·δ) mod 8m` for `j` in `0..k` (wrapping u64 arithmetic), where
//! `h = hash64(user key)` and `δ = h.rotate_left(32) | 1` (double hashing:
//! Kirsch and Mitzenmacher). With `b` bits per key the writer picks
//! `k = round(b·ln 2)` clamped to 1..=30 and `m = ceil(max(n·b, 64) / 8)`
//! for `n` distinct keys, which gives about 1% false positives at 10 bits
//! per key. The filter is stored like a block: followed by the 5-byte
//! trailer (compression 0, masked CRC-32).
//!
//! [`hash64`] is part of the format: it must never change for format
//! version 1. It reads the key in 8-byte little-endian words (the last one
//! zero-padded) and mixes the length in, so `"a"` and `"a\0"` differ.
//!
//! Example: the filter of the single key `k` at 10 bits per key is 8 bytes
//! of bits and `k = 7`:
//! `00 88 00 10 01 20 00 44 | 07` (pinned by `golden_bytes_of_a_filter`).

use super::DecodeError;

/// Fewest bits in a filter (so tiny tables still filter well).
const MIN_BITS: u64 = 64;
/// Most probes per key.
pub const MAX_PROBES: u8 = 30;
/// Most bits per key a writer uses (more would only grow the filter: `k`
/// reaches its cap of 30 at 43 bits per key).
pub const MAX_BITS_PER_KEY: u32 = 100;
/// Width of the probe count.
pub const PROBES_LEN: usize = 1;

const P1: u64 = 0x9e37_79b1_85eb_ca87;
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const P3: u64 = 0x1656_67b1_9e37_79f9;
const SEED: u64 = 0x6b61_6c61_6d64_6221;

/// Mixes one 8-byte word into the state (xxHash64's round).
fn round(h: u64, word: u64) -> u64 {
    let h = h ^ word.wrapping_mul(P2).rotate_left(31).wrapping_mul(P1);
    h.rotate_left(27).wrapping_mul(P1).wrapping_add(P3)
}

/// The 64-bit hash of a user key used by the filter (part of the format).
#[must_use]
pub fn hash64(data: &[u8]) -> u64 {
    let mut h = SEED ^ (data.len() as u64).wrapping_mul(P1);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = round(h, u64::from_le_bytes(b));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = round(h, u64::from_le_bytes(b));
    }
    // MurmurHash3's 64-bit finaliser: every input bit affects every output
    // bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Bytes of bit array for `keys` keys at `bits_per_key` bits each.
fn filter_len(keys: u64, bits_per_key: u32) -> u64 {
    keys.saturating_mul(u64::from(bits_per_key))
        .max(MIN_BITS)
        .div_ceil(8)
}

/// The largest bit array (in bytes) a writer makes for a table of
/// `entries` entries: readers reject larger filters as corrupt.
#[must_use]
pub fn max_filter_len(entries: u64) -> u64 {
    filter_len(entries, MAX_BITS_PER_KEY)
}

/// Probes for `k = round(bits_per_key · ln 2)`, clamped to 1..=30.
#[must_use]
pub fn probes_for(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    // In range after the clamp, so the cast is exact.
    k.clamp(1.0, f64::from(MAX_PROBES)) as u8
}

/// The bit positions probed for `hash` in a filter of `nbits` bits.
fn probes(hash: u64, k: u8, nbits: u64) -> impl Iterator<Item = u64> {
    let delta = hash.rotate_left(32) | 1;
    let mut h = hash;
    (0..k).map(move |_| {
        let bit = h % nbits;
        h = h.wrapping_add(delta);
        bit
    })
}

/// Collects key hashes while a table is written, then lays out the filter.
#[derive(Debug)]
pub struct BloomBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl BloomBuilder {
    /// A builder for `bits_per_key` bits per key (clamped to
    /// `1..=MAX_BITS_PER_KEY`).
    #[must_use]
    pub fn new(bits_per_key: u32) -> Self {
        BloomBuilder {
            bits_per_key: bits_per_key.clamp(1, MAX_BITS_PER_KEY),
            hashes: Vec::new(),
        }
    }

    /// Adds a user key. The caller adds each distinct key once (duplicates
    /// only waste bits).
    pub fn add_key(&mut self, user_key: &[u8]) {
        self.hashes.push(hash64(user_key));
    }

    /// The filter's bytes (bit array, then `k`), without the block trailer.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        let nbytes = filter_len(self.hashes.len() as u64, self.bits_per_key);
        let nbits = nbytes * 8;
        let k = probes_for(self.bits_per_key);
        let mut out = vec![0u8; nbytes as usize + PROBES_LEN];
        for h in self.hashes {
            for bit in probes(h, k, nbits) {
                if let Some(b) = out.get_mut((bit / 8) as usize) {
                    *b |= 1 << (bit % 8);
                }
            }
        }
        if let Some(last) = out.last_mut() {
            *last = k;
        }
        out
    }
}

/// A decoded bloom filter. `Send + Sync`; immutable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomFilter {
    bits: Vec<u8>,
    k: u8,
}

impl BloomFilter {
    /// Decodes filter bytes (without the block trailer).
    ///
    /// # Errors
    /// No bit array, or `k` outside 1..=30.
    pub fn decode(data: &[u8]) -> Result<BloomFilter, DecodeError> {
        let Some((&k, bits)) = data.split_last() else {
            return Err(DecodeError::new(0, "empty bloom filter"));
        };
        if bits.is_empty() {
            return Err(DecodeError::new(0, "bloom filter has no bits"));
        }
        if k == 0 || k > MAX_PROBES {
            return Err(DecodeError::new(
                bits.len(),
                format!("bloom filter probe count {k} is outside 1..={MAX_PROBES}"),
            ));
        }
        Ok(BloomFilter {
            bits: bits.to_vec(),
            k,
        })
    }

    /// `false` if `user_key` is certainly not in the table; `true` if it may
    /// be.
    #[must_use]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        let nbits = self.bits.len() as u64 * 8;
        probes(hash64(user_key), self.k, nbits).all(|bit| {
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    /// Bytes held in memory (for cache accounting).
    #[must_use]
    pub fn size(&self) -> usize {
        self.bits.len()
    }

    /// Number of probes per key.
    #[must_use]
    pub fn probes(&self) -> u8 {
        self.k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(keys: &[&[u8]], bits: u32) -> Vec<u8> {
        let mut b = BloomBuilder::new(bits);
        for k in keys {
            b.add_key(k);
        }
        b.finish()
    }

    #[test]
    fn golden_hashes() {
        // Pinned: the hash is part of the on-disk format.
        assert_eq!(hash64(b""), 0x5659_4660_5939_ec51);
        assert_eq!(hash64(b"k"), 0x02cd_f790_27e9_f03a);
        assert_eq!(hash64(b"a\0"), 0x2f22_9301_e83b_701f);
        assert_eq!(hash64(b"0123456789abcdef!"), 0xed46_d74b_f04d_7f23);
        assert_ne!(hash64(b"a"), hash64(b"a\0"));
    }

    #[test]
    fn golden_bytes_of_a_filter() {
        assert_eq!(
            filter(&[b"k"], 10),
            [0x00, 0x88, 0x00, 0x10, 0x01, 0x20, 0x00, 0x44, 0x07]
        );
    }

    #[test]
    fn filter_sizes_are_bounded() {
        assert_eq!(max_filter_len(0), 8);
        assert_eq!(max_filter_len(1), 13);
        assert_eq!(max_filter_len(u64::MAX), u64::MAX.div_ceil(8));
        let mut b = BloomBuilder::new(u32::MAX);
        b.add_key(b"a");
        assert_eq!(b.finish().len() as u64, max_filter_len(1) + 1);
    }

    #[test]
    fn probe_counts() {
        assert_eq!(probes_for(0), 1);
        assert_eq!(probes_for(1), 1);
        assert_eq!(probes_for(10), 7);
        assert_eq!(probes_for(20), 14);
        assert_eq!(probes_for(1000), 30);
    }

    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives() {
        let keys: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| format!("key{i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let f = BloomFilter::decode(&filter(&refs, 10)).unwrap();
        assert_eq!(f.probes(), 7);
        assert_eq!(f.size(), 12_500);
        for k in &keys {
            assert!(f.may_contain(k));
        }
        let probes = 100_000u32;
        let fp = (0..probes)
            .filter(|i| f.may_contain(format!("other{i}").as_bytes()))
            .count();
        let rate = fp as f64 / f64::from(probes);
        assert!(rate < 0.02, "false-positive rate {rate}");
        assert!(
            rate > 0.002,
            "false-positive rate {rate} is implausibly low"
        );
        // Binary keys sharing long prefixes behave too.
        let keys: Vec<Vec<u8>> = (0..10_000u64)
            .map(|i| [vec![0xff; 20], i.to_be_bytes().to_vec()].concat())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let f = BloomFilter::decode(&filter(&refs, 10)).unwrap();
        let fp = (10_000..110_000u64)
            .filter(|i| f.may_contain(&[vec![0xff; 20], i.to_be_bytes().to_vec()].concat()))
            .count();
        assert!(fp < 2_000, "{fp} false positives in 100000");
    }

    #[test]
    fn empty_filter_rejects_everything_it_can() {
        let f = BloomFilter::decode(&filter(&[], 10)).unwrap();
        assert_eq!(f.size(), 8);
        assert!(!f.may_contain(b"x"));
    }

    #[test]
    fn bad_filters_are_errors() {
        assert!(BloomFilter::decode(&[]).is_err());
        assert!(BloomFilter::decode(&[7]).is_err());
        assert!(BloomFilter::decode(&[0xff, 0]).is_err());
        assert!(BloomFilter::decode(&[0xff, 31]).is_err());
        assert!(BloomFilter::decode(&[0xff, 30]).is_ok());
        // Any bytes: decode and probe without panicking.
        for len in 0..40usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            if let Ok(f) = BloomFilter::decode(&data) {
                let _ = f.may_contain(b"probe");
            }
        }
    }
}
