//! The shared state behind every clone and handle of one [`SimFs`](super::SimFs).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::fault::{FaultPlan, Fired, OpKind};
use super::tree::{Ino, Tree};

/// How many syncs were called on live handles and directories (including
/// ones that then failed by an injected fault).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// `WritableFile::sync_data` calls.
    pub sync_data: u64,
    /// `WritableFile::sync_all` calls.
    pub sync_all: u64,
    /// `Fs::sync_dir` calls.
    pub sync_dir: u64,
}

/// A file's size and how much of it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    /// Bytes in the file now.
    pub len: u64,
    /// Bytes that survive a crash (a prefix of the file).
    pub synced_len: u64,
}

/// Everything mutable, behind one mutex.
#[derive(Debug)]
pub(super) struct State {
    pub(super) tree: Tree,
    /// Bumped by each crash; handles and `SimFs` clones of an older
    /// generation belong to the dead process.
    pub(super) generation: u64,
    /// Operations begun on live handles (failed ones included).
    pub(super) ops: u64,
    /// `ops` per class, indexed like [`OpKind::ALL`].
    pub(super) ops_by_kind: [u64; OpKind::ALL.len()],
    pub(super) syncs: SyncCounts,
    pub(super) faults: FaultPlan,
    /// Lock-file inode → token of the handle holding it.
    pub(super) locks: HashMap<Ino, u64>,
    pub(super) next_lock_token: u64,
    /// Open `SyncGate`s; file syncs block while this is non-zero.
    pub(super) sync_pauses: usize,
    /// File syncs blocked by a gate now.
    pub(super) syncs_blocked: usize,
}

/// What a failed operation reports: the error, and whether a failed write
/// should leave a prefix behind.
#[derive(Debug)]
pub(super) struct OpError {
    pub(super) error: io::Error,
    pub(super) partial_write: bool,
}

impl From<OpError> for io::Error {
    fn from(e: OpError) -> Self {
        e.error
    }
}

impl From<io::Error> for OpError {
    fn from(error: io::Error) -> Self {
        Self {
            error,
            partial_write: false,
        }
    }
}

impl From<Fired> for OpError {
    fn from(f: Fired) -> Self {
        Self {
            error: f.error,
            partial_write: f.partial_write,
        }
    }
}

impl State {
    /// Fails if `generation` is from before a crash.
    pub(super) fn check_alive(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(io::Error::other(
                "simulated crash: this handle belongs to a process that crashed",
            ))
        }
    }

    /// Starts operation `op` on `paths` for a handle of `generation`: fails
    /// if the handle is dead, counts the operation, and fails it if an
    /// injected fault is due.
    pub(super) fn begin(
        &mut self,
        generation: u64,
        op: OpKind,
        paths: &[&Path],
    ) -> Result<(), OpError> {
        self.check_alive(generation)?;
        self.ops += 1;
        self.ops_by_kind[op as usize] += 1;
        match self.faults.check(op, paths) {
            Some(fired) => Err(fired.into()),
            None => Ok(()),
        }
    }
}

/// The mutex-guarded state and the condition variable for sync gates.
pub(super) struct Shared {
    state: Mutex<State>,
    /// Signalled when `sync_pauses`, `syncs_blocked` or `generation` change.
    pub(super) changed: Condvar,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                tree: Tree::new(),
                generation: 0,
                ops: 0,
                ops_by_kind: [0; OpKind::ALL.len()],
                syncs: SyncCounts::default(),
                faults: FaultPlan::default(),
                locks: HashMap::new(),
                next_lock_token: 0,
                sync_pauses: 0,
                syncs_blocked: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Locks the state. A panic while it was held (a failing test thread)
    /// does not make the simulated disk unusable: every mutation leaves it
    /// consistent.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
