//! The engine's error type.

use std::io;
use std::path::{Path, PathBuf};

/// Errors of the engine. `kalamdb-store` maps them onto its public `Error`
/// (`Io` stays I/O; the others become `Error::Backend` with the prefixes
/// `corruption: `, `poisoned: `, `locked: ` or `limit: ` (`TooLarge`), or
/// `PartitionNotFound`).
#[derive(Debug)]
pub enum Error {
    /// An I/O error from the file system.
    Io(io::Error),
    /// Stored bytes failed a check.
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage (or of the first record lost to it).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writes are refused after an earlier failed WAL write or sync; reopen.
    Poisoned(String),
    /// The directory is in use by another handle or process.
    Locked(String),
    /// A write was refused before it was queued: its partition's writes are
    /// stopped (backpressure) and the background work that would resume
    /// them failed. Nothing was written.
    Stalled(String),
    /// A key or value longer than the engine takes; nothing was written.
    TooLarge(String),
    /// No partition has this name.
    PartitionNotFound(String),
    /// The engine is shutting down.
    Closed,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Corruption {
                file,
                offset,
                reason,
            } => write!(f, "{} at {offset}: {reason}", file.display()),
            Error::Poisoned(why) => write!(f, "{why}"),
            Error::Locked(why) => write!(f, "{why}"),
            Error::Stalled(why) => write!(f, "{why}"),
            Error::TooLarge(why) => write!(f, "{why}"),
            Error::PartitionNotFound(name) => write!(f, "partition not found: {name}"),
            Error::Closed => write!(f, "the engine is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl Error {
    /// A copy of the error, for reporting one failure to every writer of a
    /// group (`io::Error` is not `Clone`; the copy keeps kind and message).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io(e) => Error::Io(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
            Error::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::Poisoned(s) => Error::Poisoned(s.clone()),
            Error::Locked(s) => Error::Locked(s.clone()),
            Error::Stalled(s) => Error::Stalled(s.clone()),
            Error::TooLarge(s) => Error::TooLarge(s.clone()),
            Error::PartitionNotFound(s) => Error::PartitionNotFound(s.clone()),
            Error::Closed => Error::Closed,
        }
    }
}

/// A corruption error naming the file and offset.
pub(crate) fn corruption(file: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, Error>;
