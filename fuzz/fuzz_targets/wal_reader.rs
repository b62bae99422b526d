//! WAL reading (framing + write-batch decoding): never panics, and every
//! record delivered passes its checksum and decodes.
#![no_main]

use kalamdb_lsm::batch::decode_batch;
use kalamdb_lsm::wal::reader::read_log;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_log(data, |_, payload| decode_batch(payload, |_| Ok(())));
});
