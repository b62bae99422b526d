//! Sequences of engine operations (writes, batches, reads, scans, held
//! iterators, flushes, compactions, partition create and drop, WAL syncs,
//! clean reopens, crashes and injected I/O faults) against a model; see
//! `kalamdb_store_fuzz::op_sequence` for the input format and the oracle.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kalamdb_store_fuzz::op_sequence::run(data);
});
