//! Manifest edit decoding and state replay: never panics on any bytes, and
//! whatever decodes re-encodes to the same bytes.
#![no_main]

use kalamdb_lsm::manifest::{ManifestState, VersionEdit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(edit) = VersionEdit::decode(data) {
        let mut again = Vec::new();
        edit.encode(&mut again);
        assert_eq!(again, data);
        let _ = ManifestState::default().apply(&edit);
    }
});
