//! Properties block decoding: never panics on any bytes.
#![no_main]

use kalamdb_lsm::sst::TableProperties;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TableProperties::decode(data);
});
