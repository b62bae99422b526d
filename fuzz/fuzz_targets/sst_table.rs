//! Whole tables: `Table::open` over arbitrary bytes, then a full scan, a
//! scan from a key, and point reads. Never panics. Each input is tried as
//! given and with its checksums rewritten (see the crate docs), so that
//! mutations get past the CRCs into the footer, properties, filter, index
//! and data-block decoders.
#![no_main]

use std::path::PathBuf;
use std::sync::Arc;

use kalamdb_lsm::sst::{Table, MAX_SEQ};
use kalamdb_store_fuzz::{fix_table_checksums, MemFile};
use libfuzzer_sys::fuzz_target;

/// Scans and reads at most this many entries of a table.
const MAX_ENTRIES: usize = 10_000;

fn exercise(data: Vec<u8>) {
    let size = data.len() as u64;
    let Ok(table) = Table::open(Arc::new(MemFile(data)), PathBuf::from("fuzz.sst"), size) else {
        return;
    };
    let table = Arc::new(table);
    let mut keys = Vec::new();
    for entry in table.iter(None).take(MAX_ENTRIES) {
        let Ok(entry) = entry else { break };
        keys.push((entry.key, entry.seq));
    }
    let props = table.properties().clone();
    let mut probes: Vec<&[u8]> = vec![b"", &props.smallest_key, &props.largest_key];
    probes.extend(keys.iter().step_by(7).map(|(k, _)| k.as_ref()));
    for key in probes {
        let _ = table.may_contain(key);
        for snapshot in [0, 1, MAX_SEQ, u64::MAX] {
            let _ = table.get(key, snapshot);
        }
        let _ = table.iter(Some(key)).take(3).count();
    }
    for (key, seq) in keys.iter().step_by(5) {
        let _ = table.get(key, *seq);
        let _ = table.get(key, seq.saturating_sub(1));
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data.to_vec());
    let mut fixed = data.to_vec();
    fix_table_checksums(&mut fixed);
    if fixed != data {
        exercise(fixed);
    }
});
