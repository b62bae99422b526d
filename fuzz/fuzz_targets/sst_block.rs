//! Data/index block decoding and iteration: never panics on any bytes.
#![no_main]

use kalamdb_lsm::sst::Block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(block) = Block::decode(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut it = block.iter();
    if it.seek_to_first().is_err() {
        return;
    }
    let mut steps = 0;
    while it.valid() && steps < 100_000 {
        let _ = (it.key(), it.value());
        if it.advance().is_err() {
            break;
        }
        steps += 1;
    }
    let mut it = block.iter();
    let _ = it.seek(data.get(..data.len().min(16)).unwrap_or_default());
});
