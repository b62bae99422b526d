//! Index block decoding, lookups and iteration: never panics on any bytes.
//! Input: the data region's length (u32 LE), then the index block's
//! contents.
#![no_main]

use kalamdb_lsm::sst::index::IndexBlock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((end, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let data_end = u64::from(u32::from_le_bytes(*end));
    let Ok(index) = IndexBlock::decode(bytes::Bytes::copy_from_slice(rest), data_end) else {
        return;
    };
    let _ = index.seek(rest.get(..rest.len().min(12)).unwrap_or_default());
    let _ = index.seek(index.last_key());
    let mut it = index.iter();
    let mut ok = it.seek_to_first().is_ok();
    let mut n = 0u64;
    while ok && n <= index.len() {
        match it.handle() {
            Ok(Some(_)) => ok = it.advance().is_ok(),
            _ => break,
        }
        n += 1;
    }
    assert!(n <= index.len(), "the iterator outlives the index");
});
