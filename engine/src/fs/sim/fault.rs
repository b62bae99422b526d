//! Error injection for [`SimFs`](super::SimFs): which operation fails, when,
//! and with what error.

use std::io;
use std::path::{Path, PathBuf};

/// A class of file-system operation, for counting and error injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `create`, `create_dir_all`.
    Create,
    /// `open_append`, `open_read`.
    Open,
    /// `ReadableFile::read_at` (and each call `read_exact_at` makes).
    Read,
    /// `WritableFile::append`.
    Write,
    /// `WritableFile::sync_data`, `WritableFile::sync_all`.
    Sync,
    /// `Fs::sync_dir`.
    SyncDir,
    /// `Fs::rename`.
    Rename,
    /// `Fs::remove_file`, `Fs::remove_dir_all`.
    Remove,
    /// `Fs::truncate`.
    Truncate,
    /// `Fs::file_size`, `Fs::exists`, `Fs::read_dir`, `ReadableFile::len`.
    Metadata,
    /// `Fs::lock`.
    Lock,
}

impl OpKind {
    /// Every class, in declaration order.
    pub const ALL: [OpKind; 11] = [
        OpKind::Create,
        OpKind::Open,
        OpKind::Read,
        OpKind::Write,
        OpKind::Sync,
        OpKind::SyncDir,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::Truncate,
        OpKind::Metadata,
        OpKind::Lock,
    ];
}

/// The error an injected fault returns. `io::Error` is not `Clone`, so a
/// fault keeps the recipe and builds a fresh error each time it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// `io::Error::new(kind, "injected fault: ...")`.
    Kind(io::ErrorKind),
    /// `io::Error::from_raw_os_error(code)`, e.g. [`FaultError::NO_SPACE`].
    Os(i32),
}

impl FaultError {
    /// ENOSPC ("No space left on device"; kind `StorageFull`).
    pub const NO_SPACE: Self = Self::Os(28);
    /// EIO ("Input/output error").
    pub const EIO: Self = Self::Os(5);

    fn to_io(self, op: OpKind, path: Option<&Path>) -> io::Error {
        match self {
            Self::Kind(kind) => io::Error::new(
                kind,
                format!(
                    "injected fault: {op:?} on {}",
                    path.map_or_else(String::new, |p| p.display().to_string())
                ),
            ),
            Self::Os(code) => io::Error::from_raw_os_error(code),
        }
    }
}

impl From<io::ErrorKind> for FaultError {
    fn from(kind: io::ErrorKind) -> Self {
        Self::Kind(kind)
    }
}

/// A fault to inject: fail the `nth` matching operation from now on.
///
/// Built with [`Fault::on`] or [`Fault::any`] and refined with the builder
/// methods; armed with [`SimFs::inject`](super::SimFs::inject).
#[derive(Debug, Clone)]
pub struct Fault {
    op: Option<OpKind>,
    path: Option<PathBuf>,
    nth: u64,
    persistent: bool,
    partial_write: bool,
    error: FaultError,
}

impl Fault {
    /// Fails the next operation of class `op` with `error`, once.
    pub fn on(op: OpKind, error: impl Into<FaultError>) -> Self {
        Self {
            op: Some(op),
            path: None,
            nth: 1,
            persistent: false,
            partial_write: false,
            error: error.into(),
        }
    }

    /// Fails the next operation of any class with `error`, once.
    pub fn any(error: impl Into<FaultError>) -> Self {
        Self {
            op: None,
            ..Self::on(OpKind::Create, error)
        }
    }

    /// Fails the `n`th matching operation instead of the next one (1 is the
    /// next). 0 is treated as 1.
    pub fn nth(mut self, n: u64) -> Self {
        self.nth = n.max(1);
        self
    }

    /// Keeps failing every later matching operation too, until
    /// [`SimFs::clear_faults`](super::SimFs::clear_faults).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Matches only operations on `path` or below it (a rename matches if
    /// either of its paths does).
    pub fn on_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// When the fault fails a write, the first half of the data (rounded
    /// down) is appended before the error is returned: a short write.
    pub fn partial_write(mut self) -> Self {
        self.partial_write = true;
        self
    }

    fn matches(&self, op: OpKind, paths: &[&Path]) -> bool {
        self.op.is_none_or(|o| o == op)
            && self
                .path
                .as_ref()
                .is_none_or(|want| paths.iter().any(|p| p.starts_with(want)))
    }
}

/// An injected error, with whether a write should leave a prefix behind.
#[derive(Debug)]
pub(super) struct Fired {
    pub(super) error: io::Error,
    pub(super) partial_write: bool,
}

/// The armed faults.
#[derive(Debug, Default)]
pub(super) struct FaultPlan {
    armed: Vec<(Fault, u64)>,
    pub(super) fired: u64,
    /// Every operation a fault failed, oldest first: its class and first
    /// path.
    pub(super) fired_log: Vec<(OpKind, PathBuf)>,
}

impl FaultPlan {
    pub(super) fn arm(&mut self, fault: Fault) {
        self.armed.push((fault, 0));
    }

    pub(super) fn clear(&mut self) {
        self.armed.clear();
    }

    /// Counts `op` against every matching fault; returns the error of the
    /// first one due. A transient fault is disarmed when it fires.
    pub(super) fn check(&mut self, op: OpKind, paths: &[&Path]) -> Option<Fired> {
        let mut due = None;
        for (i, (fault, seen)) in self.armed.iter_mut().enumerate() {
            if fault.matches(op, paths) {
                *seen += 1;
                if *seen >= fault.nth && due.is_none() {
                    due = Some(i);
                }
            }
        }
        let i = due?;
        let (fault, _) = &self.armed[i];
        let fired = Fired {
            error: fault.error.to_io(op, paths.first().copied()),
            partial_write: fault.partial_write && op == OpKind::Write,
        };
        if !fault.persistent {
            self.armed.remove(i);
        }
        self.fired += 1;
        self.fired_log.push((
            op,
            paths.first().map(|p| p.to_path_buf()).unwrap_or_default(),
        ));
        Some(fired)
    }
}
