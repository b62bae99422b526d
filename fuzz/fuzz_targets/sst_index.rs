//! Index block decoding and lookups: never panics on any bytes.
#![no_main]

use kalamdb_lsm::sst::index::IndexBlock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&end, rest)) = data.split_first() else {
        return;
    };
    let Ok(index) = IndexBlock::decode(bytes::Bytes::copy_from_slice(rest), u64::from(end) << 8) else {
        return;
    };
    let _ = index.seek(rest.get(..rest.len().min(12)).unwrap_or_default());
    let _ = index.last_key();
});
