//! Footer decoding: never panics on any bytes. Each input is decoded as
//! given and with its CRC rewritten, so mutations also reach the checks
//! behind the checksum (the format version).
#![no_main]

use kalamdb_lsm::sst::Footer;
use kalamdb_store_fuzz::fix_footer_checksum;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Footer::decode(data);
    let mut fixed = data.to_vec();
    fix_footer_checksum(&mut fixed);
    if let Ok(footer) = Footer::decode(&fixed) {
        // A decoded footer re-encodes to the bytes it came from (a zero
        // filter handle is "no filter" both ways).
        assert_eq!(footer.encode(), fixed);
    }
});
