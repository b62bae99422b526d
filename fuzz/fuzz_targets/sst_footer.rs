//! Footer decoding: never panics on any bytes.
#![no_main]

use kalamdb_lsm::sst::Footer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Footer::decode(data);
});
