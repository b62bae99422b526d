//! Little helpers for on-disk encodings: LEB128 varints and a bounds-checked
//! reader that never panics on bad input.

/// Added to rotated CRCs (LevelDB's constant): a CRC stored next to data
/// that itself holds CRCs does not look valid by chance.
pub const CRC_MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC-32 for storage: rotate right by 15 bits, add
/// [`CRC_MASK_DELTA`] (wrapping). Used by the WAL framing and SSTables.
#[must_use]
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(CRC_MASK_DELTA)
}

/// The masked CRC-32 (IEEE, crc32fast) of the concatenation of `parts`.
#[must_use]
pub fn masked_crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    mask_crc(h.finalize())
}

/// Where file, WAL, manifest and partition numbers end: far beyond any
/// count the engine reaches, and low enough that the `+ 1`s that follow
/// such numbers cannot overflow. A number naming something (a file, a
/// partition) is below it; a counter of the next one is at most it; the
/// engine refuses to hand out a number at or above it, so everything it
/// writes it can read back.
pub const MAX_NUMBER: u64 = 1 << 62;

/// `n` if the engine may name a new file (or partition) with it, else
/// what ran out: a number at or above [`MAX_NUMBER`] would not be read
/// back (only a damaged manifest starts near it).
///
/// # Errors
/// `"<what> numbers exhausted (the next is <n>)"`.
pub fn check_new_number(what: &str, n: u64) -> Result<u64, String> {
    if n >= MAX_NUMBER {
        return Err(format!("{what} numbers exhausted (the next is {n})"));
    }
    Ok(n)
}

/// The number `n` whose `{n:06}` form (the one file names use) is `digits`:
/// ASCII digits only, at least six, no leading zero beyond the padding;
/// below [`MAX_NUMBER`]. `None` for anything else, so a stray file cannot
/// alias a real one (`7.wal` is not `000007.wal`).
pub fn parse_padded_number(digits: &str) -> Option<u64> {
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 6 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok().filter(|&n| n < MAX_NUMBER)
}

/// Bytewise order of two byte strings: the same result as `a.cmp(b)`.
///
/// Keys are mostly short (16 to 40 bytes), where a call into `memcmp` costs
/// more than the comparison: the common prefix of up to 32 bytes is compared
/// here 8 bytes at a time as big-endian words, longer strings go to `memcmp`.
#[inline]
#[must_use]
pub fn compare_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    if n > 32 {
        return a.cmp(b);
    }
    let (mut a8, mut b8) = (a, b);
    while let (Some((x, ra)), Some((y, rb))) =
        (a8.split_first_chunk::<8>(), b8.split_first_chunk::<8>())
    {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        a8 = ra;
        b8 = rb;
    }
    // Fewer than 8 bytes left in the shorter one: compare what is left of the
    // common prefix as one zero-padded word, then the lengths.
    let m = a8.len().min(b8.len());
    let word = |s: &[u8]| {
        let mut w = [0u8; 8];
        w[..m].copy_from_slice(&s[..m]);
        u64::from_be_bytes(w)
    };
    word(a8).cmp(&word(b8)).then(a.len().cmp(&b.len()))
}

/// A byte buffer that keeps up to 64 bytes on the stack and moves to the heap
/// past that: the scratch key of a point lookup, which should not allocate.
#[derive(Debug, Clone)]
pub struct KeyBuf {
    len: usize,
    inline: [u8; 64],
    heap: Option<Vec<u8>>,
}

impl Default for KeyBuf {
    fn default() -> Self {
        KeyBuf {
            len: 0,
            inline: [0; 64],
            heap: None,
        }
    }
}

impl KeyBuf {
    /// The bytes.
    #[inline]
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        match &self.heap {
            Some(v) => v,
            None => self.inline.get(..self.len).unwrap_or_default(),
        }
    }

    /// Keeps the first `n` bytes (all of them if `n` is larger).
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        match &mut self.heap {
            Some(v) => v.truncate(n),
            None => self.len = self.len.min(n),
        }
    }

    /// Appends `bytes`.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if let Some(v) = &mut self.heap {
            v.extend_from_slice(bytes);
            return;
        }
        let end = self.len + bytes.len();
        if let Some(dst) = self.inline.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        } else {
            let mut v = Vec::with_capacity(end.max(128));
            v.extend_from_slice(self.inline.get(..self.len).unwrap_or_default());
            v.extend_from_slice(bytes);
            self.heap = Some(v);
        }
    }
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; MAX_VARINT_LEN];
    let n = encode_varint(&mut buf, v);
    out.extend_from_slice(&buf[..n]);
}

/// The longest unsigned LEB128 varint of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// Bytes of `v` as an unsigned LEB128 varint: one per 7 bits, at least one.
pub const fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes `v` as an unsigned LEB128 varint at the start of `out`; returns
/// the bytes written ([`varint_len`]`(v)`).
///
/// # Panics
/// If `out` is shorter than that.
pub fn encode_varint(out: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        n += 1;
        v >>= 7;
    }
    out[n] = v as u8;
    n + 1
}

/// A cursor over bytes from disk: every read checks bounds and returns an
/// error message instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{what}: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes(1, what)?[0])
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self, what: &str) -> Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian u64.
    pub fn u64_le(&mut self, what: &str) -> Result<u64, String> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// An unsigned LEB128 varint of at most 10 bytes that fits a u64.
    pub fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(format!(
                    "{what}: varint overflows 64 bits at offset {}",
                    self.pos
                ));
            }
            // Only the shortest encoding is valid: one value, one byte string.
            if i > 0 && b == 0 {
                return Err(format!("{what}: overlong varint at offset {}", self.pos));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!(
            "{what}: varint longer than 10 bytes at offset {}",
            self.pos
        ))
    }

    /// A varint length followed by that many bytes; the length is checked
    /// against the bytes left before anything is allocated or sliced.
    pub fn length_prefixed(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| format!("{what}: length {len} too large"))?;
        self.bytes(len, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_padded_form_of_a_number_parses() {
        for (digits, want) in [
            ("000007", Some(7)),
            ("000000", Some(0)),
            ("123456", Some(123_456)),
            ("1234567", Some(1_234_567)),
            ("7", None),
            ("00007", None),
            ("0000007", None),
            ("+00007", None),
            ("-00007", None),
            ("00000x", None),
            ("", None),
            ("18446744073709551615", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(parse_padded_number(digits), want, "{digits:?}");
        }
        let last = (MAX_NUMBER - 1).to_string();
        assert_eq!(parse_padded_number(&last), Some(MAX_NUMBER - 1));
        assert_eq!(parse_padded_number(&MAX_NUMBER.to_string()), None);
        for n in [0, 1, 999_999, 1_000_000, 123_456_789, MAX_NUMBER - 1] {
            assert_eq!(parse_padded_number(&format!("{n:06}")), Some(n));
        }
    }

    #[test]
    fn compare_bytes_agrees_with_slice_order() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let la = (next() % 48) as usize;
            let lb = (next() % 48) as usize;
            // A small alphabet and a shared prefix make ties and prefixes common.
            let a: Vec<u8> = (0..la).map(|_| (next() % 3) as u8).collect();
            let mut b: Vec<u8> = a.iter().take(lb).copied().collect();
            while b.len() < lb {
                b.push((next() % 3) as u8);
            }
            if next() % 4 == 0 && !b.is_empty() {
                let i = (next() as usize) % b.len();
                b[i] = (next() % 256) as u8;
            }
            assert_eq!(compare_bytes(&a, &b), a.cmp(&b), "{a:?} vs {b:?}");
            assert_eq!(compare_bytes(&b, &a), b.cmp(&a), "{b:?} vs {a:?}");
            checked += 1;
        }
        assert_eq!(checked, 200_000);
        assert_eq!(compare_bytes(b"", b""), std::cmp::Ordering::Equal);
        assert_eq!(compare_bytes(b"a\0", b"a"), std::cmp::Ordering::Greater);
        assert_eq!(
            compare_bytes(b"abcdefgh\0", b"abcdefgh"),
            std::cmp::Ordering::Greater
        );
        assert_eq!(
            compare_bytes(&[0xff; 9], &[0xff; 8]),
            std::cmp::Ordering::Greater
        );
    }

    #[test]
    fn key_buf_acts_like_a_vec_across_the_inline_limit() {
        let mut b = KeyBuf::default();
        let mut v: Vec<u8> = Vec::new();
        let mut longest = 0;
        let mut x = 7u8;
        for step in 0..400usize {
            if step % 5 == 4 {
                let n = (step * 31) % (v.len() + 3);
                b.truncate(n);
                v.truncate(n);
            } else {
                let add: Vec<u8> = (0..step % 23)
                    .map(|_| {
                        x = x.wrapping_mul(31).wrapping_add(1);
                        x
                    })
                    .collect();
                b.extend_from_slice(&add);
                v.extend_from_slice(&add);
            }
            assert_eq!(b.as_slice(), v.as_slice(), "step {step}");
            longest = longest.max(v.len());
        }
        assert!(longest > 64, "the test must cross the inline limit");
    }

    #[test]
    fn varints_round_trip_and_have_golden_bytes() {
        let mut out = Vec::new();
        put_varint(&mut out, 0);
        put_varint(&mut out, 127);
        put_varint(&mut out, 128);
        put_varint(&mut out, 300);
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xac, 0x02]);
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v").unwrap(), v);
            assert!(r.is_empty());
        }
    }

    /// Found by the manifest_edit fuzz target: `80 00` decoded as 0.
    #[test]
    fn overlong_varints_are_errors() {
        assert!(Reader::new(&[0x80, 0x00]).varint("v").is_err());
        assert!(Reader::new(&[0xff, 0x80, 0x00]).varint("v").is_err());
        assert_eq!(Reader::new(&[0x00]).varint("v").unwrap(), 0);
        assert_eq!(Reader::new(&[0x80, 0x01]).varint("v").unwrap(), 128);
    }

    #[test]
    fn bad_varints_are_errors() {
        assert!(Reader::new(&[0x80]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 11]).varint("v").is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint("v")
                .is_err()
        );
    }

    #[test]
    fn lengths_are_checked_before_slicing() {
        let mut data = Vec::new();
        put_varint(&mut data, u64::MAX);
        assert!(Reader::new(&data).length_prefixed("k").is_err());
        let mut r = Reader::new(&[3, b'a', b'b']);
        assert!(r.length_prefixed("k").is_err());
        let mut r = Reader::new(&[2, b'a', b'b']);
        assert_eq!(r.length_prefixed("k").unwrap(), b"ab");
    }
}
