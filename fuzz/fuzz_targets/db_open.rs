//! A database directory whose manifest and WAL are arbitrary bytes: opening
//! it never panics, and one that opened reopens to the same state; see
//! `kalamdb_store_fuzz::db_open` for the input format.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _opened = kalamdb_store_fuzz::db_open::run(data);
});
