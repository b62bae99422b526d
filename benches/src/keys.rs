//! Keys, values and the random streams of the workloads.
//!
//! Keys are 16 bytes: the 15 decimal digits of an index, then a tag byte.
//! Written keys end in `0`; [`missing_key`] ends in `1`, so missing keys
//! interleave with written ones and only a filter (not a table's key range)
//! can answer them. Index order is key order, so `fillseq` writes ascending
//! keys. Values are 100 bytes taken from a fixed pseudo-random buffer
//! (compression is off everywhere, so their content does not matter).

/// Bytes of a key.
pub const KEY_LEN: usize = 16;
/// Bytes of a value.
pub const VALUE_LEN: usize = 100;
/// Bytes of one record as the user sees it (key + value).
pub const RECORD_LEN: u64 = (KEY_LEN + VALUE_LEN) as u64;
const DIGITS: usize = KEY_LEN - 1;
const _: () = assert!(KEY_LEN == 16 && VALUE_LEN == 100);

/// The key of index `i` (`i < 10^15`).
pub fn key(i: u64) -> [u8; KEY_LEN] {
    tagged(i, b'0')
}

/// A key that is never written: it sorts right after [`key(i)`](key).
pub fn missing_key(i: u64) -> [u8; KEY_LEN] {
    tagged(i, b'1')
}

fn tagged(mut i: u64, tag: u8) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    k[DIGITS] = tag;
    for d in k[..DIGITS].iter_mut().rev() {
        *d = b'0' + (i % 10) as u8;
        i /= 10;
    }
    k
}

/// Source of 100-byte values.
pub struct Values {
    buf: Vec<u8>,
}

impl Default for Values {
    fn default() -> Self {
        let mut rng = Rng::new(0x5eed);
        let buf = (0..4096).map(|_| rng.next_u64() as u8).collect();
        Values { buf }
    }
}

impl Values {
    /// The value written for index `i` (any deterministic slice will do).
    pub fn get(&self, i: u64) -> &[u8] {
        let start = (i.wrapping_mul(131) % (self.buf.len() - VALUE_LEN) as u64) as usize;
        &self.buf[start..start + VALUE_LEN]
    }
}

/// SplitMix64: small, fast, good enough to pick keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A pseudo-random permutation of `[0, n)` without a table: a 4-round Feistel
/// network on the smallest even number of bits covering `n`, walking the
/// cycle until the result falls below `n`.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    seed: u64,
}

impl Permutation {
    /// A permutation of `[0, n)` chosen by `seed`.
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = 64 - n.max(2).saturating_sub(1).leading_zeros();
        Permutation {
            n,
            half_bits: bits.div_ceil(2).max(1),
            seed,
        }
    }

    /// The image of `i` (`i < n`).
    pub fn get(&self, i: u64) -> u64 {
        let mut x = i;
        loop {
            x = self.round_trip(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn round_trip(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for round in 0..4u64 {
            let f = mix(r ^ self.seed.wrapping_add(round.wrapping_mul(0x9e37_79b9))) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half_bits) | r
    }
}

/// Zipfian ranks over `[0, n)` with constant 0.99 (YCSB's default), from the
/// closed-form method of Gray et al., "Quickly generating billion-record
/// synthetic databases" (SIGMOD 1994). Ranks are scrambled by a hash so the
/// popular keys spread over the key space, as YCSB's scrambled zipfian does.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    /// The distribution over `[0, n)`. Takes O(n) once (the zeta sum).
    pub fn new(n: u64) -> Self {
        let theta = 0.99;
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// The next index: a zipfian rank, scrambled.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        let rank = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            ((self.n as f64) * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64
        };
        mix(rank.min(self.n - 1) ^ 0x2545_f491_4f6c_dd1d) % self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_index_and_missing_keys_interleave() {
        assert_eq!(&key(42), b"0000000000000420");
        assert_eq!(&missing_key(42), b"0000000000000421");
        assert!(key(9) < key(10));
        assert!(key(10) < missing_key(10) && missing_key(10) < key(11));
    }

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1, 2, 3, 1000, 4097] {
            let p = Permutation::new(n, 7);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = p.get(i) as usize;
                assert!(!seen[j], "n={n}: {j} twice");
                seen[j] = true;
            }
        }
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let z = Zipf::new(10_000);
        let mut rng = Rng::new(1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let k = z.next(&mut rng);
            assert!(k < 10_000);
            *counts.entry(k).or_insert(0u32) += 1;
        }
        let max = counts.values().copied().max().unwrap_or(0);
        // The hottest of 10,000 keys gets far more than its uniform share (10).
        assert!(max > 1_000, "max count {max}");
    }
}
