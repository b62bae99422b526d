//! WAL reading (framing + write-batch decoding): never panics, and every
//! record delivered passes its checksum and decodes. Each input is read as
//! given and with its fragment checksums rewritten, so mutations also reach
//! the fragment reassembly and the batch decoder.
#![no_main]

use kalamdb_lsm::batch::{decode_batch, decode_previous_wal};
use kalamdb_lsm::wal::reader::read_log;
use kalamdb_store_fuzz::fix_log_checksums;
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8]) {
    let _ = read_log(data, |_, payload| {
        if decode_previous_wal(payload)?.is_some() {
            return Ok(());
        }
        decode_batch(payload, |_| Ok(()))
    });
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let mut fixed = data.to_vec();
    fix_log_checksums(&mut fixed);
    if fixed != data {
        read(&fixed);
    }
});
