//! The built-in backends. Their types are re-exported at the crate root.

pub mod lsm;
pub mod memory;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
#[cfg(feature = "sled")]
pub mod sled;
