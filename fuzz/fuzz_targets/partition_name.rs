//! Partition names from arbitrary bytes: validation never panics, accepts
//! exactly the contract's rule, and serde agrees with `Partition::new`.
#![no_main]

use kalamdb_store::Partition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    let direct = Partition::new(name);
    assert_eq!(direct.is_ok(), valid, "{name:?}");
    let json = serde_json::json!({ "name": name }).to_string();
    let via_serde = serde_json::from_str::<Partition>(&json);
    assert_eq!(via_serde.is_ok(), valid, "{json}");
    if let (Ok(a), Ok(b)) = (direct, via_serde) {
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), json);
    }
});
