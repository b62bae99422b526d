//! Bloom filter decoding and probes: never panics on any bytes.
#![no_main]

use kalamdb_lsm::sst::BloomFilter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(filter) = BloomFilter::decode(data) {
        for key in [&b""[..], b"a", data] {
            let _ = filter.may_contain(key);
        }
    }
});
