//! Thin [`StorageBackend`](kalamdb_store::StorageBackend) adapters for the
//! peers that kalamdb-store does not ship: fjall and redb. Bench-only.

mod fjall;
mod redb;

pub use self::fjall::FjallBackend;
pub use self::redb::RedbBackend;
