//! The error type every backend returns.
//!
//! The variants and their messages are the contract's. Errors that are not
//! I/O and not about partitions are [`Error::Backend`] with a stable prefix
//! (see [`BackendErrorKind`]), so callers and tests can tell them apart without
//! parsing free text.

/// Storage backend errors.
///
/// I/O errors stay [`Error::Io`]. Every other failure of a backend is
/// [`Error::Backend`] whose message starts with one of the prefixes of
/// [`BackendErrorKind`] (`limit: `, `corruption: `, `poisoned: `, `locked: `,
/// `rocksdb: `, `sled: `).
///
/// The built-in backends never return [`Error::PartitionAlreadyExists`] (create
/// is idempotent) nor [`Error::KeyNotFound`] (a missing key is `Ok(None)`); the
/// variants exist because the contract defines them for other backends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The named partition does not exist.
    #[error("Partition not found: {0}")]
    PartitionNotFound(String),

    /// The named partition already exists (never returned by the built-in
    /// backends: their `create_partition` is idempotent).
    #[error("Partition already exists: {0}")]
    PartitionAlreadyExists(String),

    /// A partition name failed validation; the payload says why.
    #[error("Invalid partition name: {0}")]
    InvalidPartitionName(String),

    /// A key was required but absent (never returned by the built-in backends).
    #[error("Key not found")]
    KeyNotFound,

    /// A batch could not be applied; nothing of it was written.
    #[error("Batch operation failed: {0}")]
    BatchFailed(String),

    /// The backend does not support the operation.
    #[error("Operation not supported: {0}")]
    NotSupported(String),

    /// Any other backend failure; the message starts with a stable prefix,
    /// see [`BackendErrorKind`].
    #[error("Backend error: {0}")]
    Backend(String),
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The stable prefixes of [`Error::Backend`] messages.
///
/// ```
/// use kalamdb_store::{BackendErrorKind, Error};
///
/// let err = BackendErrorKind::Limit.error("key of 70000 bytes exceeds 65536");
/// assert_eq!(err.to_string(), "Backend error: limit: key of 70000 bytes exceeds 65536");
/// assert_eq!(err.backend_kind(), Some(BackendErrorKind::Limit));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendErrorKind {
    /// A size limit was exceeded (`limit: `); nothing was written.
    Limit,
    /// Stored bytes failed a check (`corruption: <file> at <offset>: …`).
    Corruption,
    /// Writes are refused after an earlier failed write or fsync (`poisoned: `);
    /// reopen to recover. Reads keep working.
    Poisoned,
    /// The data directory is already open in another handle or process (`locked: `).
    Locked,
    /// An error reported by RocksDB (`rocksdb: `).
    RocksDb,
    /// An error reported by sled (`sled: `).
    Sled,
    /// A write refused before anything was written because its partition's
    /// writes are stopped by backpressure and the background flush or
    /// compaction that would resume them failed (`stalled: `). Retry later.
    Stalled,
}

impl BackendErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [BackendErrorKind; 7] = [
        BackendErrorKind::Limit,
        BackendErrorKind::Corruption,
        BackendErrorKind::Poisoned,
        BackendErrorKind::Locked,
        BackendErrorKind::RocksDb,
        BackendErrorKind::Sled,
        BackendErrorKind::Stalled,
    ];

    /// The prefix, including the trailing `": "`.
    pub const fn prefix(self) -> &'static str {
        match self {
            BackendErrorKind::Limit => "limit: ",
            BackendErrorKind::Corruption => "corruption: ",
            BackendErrorKind::Poisoned => "poisoned: ",
            BackendErrorKind::Locked => "locked: ",
            BackendErrorKind::RocksDb => "rocksdb: ",
            BackendErrorKind::Sled => "sled: ",
            BackendErrorKind::Stalled => "stalled: ",
        }
    }

    /// Builds an [`Error::Backend`] with this prefix.
    pub fn error(self, detail: impl std::fmt::Display) -> Error {
        Error::Backend(format!("{}{}", self.prefix(), detail))
    }
}

impl Error {
    /// The prefix kind of an [`Error::Backend`], or `None` for other variants
    /// and for backend messages without a known prefix.
    pub fn backend_kind(&self) -> Option<BackendErrorKind> {
        match self {
            Error::Backend(msg) => BackendErrorKind::ALL
                .into_iter()
                .find(|k| msg.starts_with(k.prefix())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_the_contract() {
        let io = Error::from(std::io::Error::other("boom"));
        assert_eq!(io.to_string(), "I/O error: boom");
        assert_eq!(
            Error::PartitionNotFound("p".into()).to_string(),
            "Partition not found: p"
        );
        assert_eq!(
            Error::PartitionAlreadyExists("p".into()).to_string(),
            "Partition already exists: p"
        );
        assert_eq!(
            Error::InvalidPartitionName("empty".into()).to_string(),
            "Invalid partition name: empty"
        );
        assert_eq!(Error::KeyNotFound.to_string(), "Key not found");
        assert_eq!(
            Error::BatchFailed("x".into()).to_string(),
            "Batch operation failed: x"
        );
        assert_eq!(
            Error::NotSupported("x".into()).to_string(),
            "Operation not supported: x"
        );
        assert_eq!(Error::Backend("x".into()).to_string(), "Backend error: x");
    }

    #[test]
    fn backend_kinds_round_trip_through_the_message() {
        for kind in BackendErrorKind::ALL {
            assert_eq!(kind.error("detail").backend_kind(), Some(kind));
        }
        assert_eq!(Error::Backend("other".into()).backend_kind(), None);
        assert_eq!(Error::KeyNotFound.backend_kind(), None);
    }
}
