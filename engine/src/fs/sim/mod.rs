//! [`SimFs`]: an in-memory file system for crash and fault tests.
//!
//! # Model
//! - A file is an inode: its bytes and `synced_len`, the prefix known
//!   durable. `append` adds bytes that are not durable; `sync_data` or
//!   `sync_all` on any handle of the file makes every byte it held when the
//!   sync was called durable. `preallocate` adds zeros that are not durable;
//!   an append that overwrites bytes of the durable prefix cuts the prefix
//!   back to where it starts (a crash may keep none of it, nor anything
//!   after it). `truncate` is durable. `create` of an existing
//!   file empties it durably (the engine never relies on that).
//! - A directory keeps its current entries (name → inode) and its durable
//!   entries, as of its last `sync_dir`. `create`, `create_dir_all`,
//!   `rename`, `remove_file` and `remove_dir_all` change only current
//!   entries. A new directory is itself an entry of its parent.
//! - [`SimFs::crash`] is a power loss: every directory reverts to its durable
//!   entries and every file keeps its synced bytes plus, per [`CrashMode`],
//!   none, a prefix, a garbled prefix of the rest, or a prefix with whole
//!   pages lost (zeros) before pages kept. Locks are released, and
//!   the crashed "process" is dead: every handle opened before, and every
//!   `SimFs` clone other than the one `crash` was called on, fails each later
//!   operation.
//! - Paths are normalised (`/a/b`, `a/b` and `a/./b` are the same entry).
//!
//! # Test hooks
//! Counters ([`SimFs::op_count`], [`SimFs::sync_counts`]), inspection that
//! counts as no operation ([`SimFs::file_state`], [`SimFs::contents`],
//! [`SimFs::is_durable`]), error injection ([`SimFs::inject`]) and sync gates
//! ([`SimFs::pause_syncs`]).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{FileLock, Fs, ReadableFile, WritableFile};

pub mod crash;
mod fault;
mod gate;
mod handle;
mod state;
mod tree;

pub use crash::CrashMode;
pub use fault::{Fault, FaultError, OpKind};
pub use gate::SyncGate;
pub use state::{FileState, SyncCounts};

use handle::{SimLock, SimReadable, SimWritable};
use state::{Shared, State};
use tree::error;

/// An in-memory, crashable, fault-injecting file system.
///
/// Thread safety: `Send + Sync`; all state is behind one mutex, so
/// operations are linearizable. Clones share the same disk (an `Arc`
/// inside): a test keeps one clone while the engine owns another.
pub struct SimFs {
    shared: Arc<Shared>,
    /// The generation this clone lives in; older than the disk's after a
    /// crash that another clone survived.
    generation: AtomicU64,
}

impl Clone for SimFs {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            generation: AtomicU64::new(self.generation()),
        }
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty file system holding only its root directory.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared::new()),
            generation: AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Simulates a power loss with [`CrashMode::TearTail`]; see
    /// [`SimFs::crash_with`].
    pub fn crash(&self, seed: u64) {
        self.crash_with(CrashMode::TearTail, seed);
    }

    /// Simulates a power loss: directories revert to their durable entries,
    /// files keep their synced bytes plus what `mode` keeps of the rest
    /// (chosen from `seed`), locks are released and armed faults stay armed.
    /// Every handle opened before and every other clone of this `SimFs` fail
    /// all later operations; this clone is the survivor (clone it again to
    /// reopen the engine).
    pub fn crash_with(&self, mode: CrashMode, seed: u64) {
        let mut state = self.shared.lock();
        state.tree.crash(mode, seed);
        state.locks.clear();
        state.generation += 1;
        self.generation.store(state.generation, Ordering::Release);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Arms `fault`. Several faults may be armed; each counts the matching
    /// operations from now on.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.arm(fault);
    }

    /// Shorthand for [`SimFs::inject`]: fails the `nth` next operation of
    /// class `op` with `error` (an `io::ErrorKind` or a [`FaultError`]);
    /// if `persistent`, also every later one.
    pub fn fail_next(&self, op: OpKind, nth: u64, persistent: bool, error: impl Into<FaultError>) {
        let fault = Fault::on(op, error).nth(nth);
        self.inject(if persistent {
            fault.persistent()
        } else {
            fault
        });
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many operations injected faults have failed so far.
    pub fn faults_fired(&self) -> u64 {
        self.shared.lock().faults.fired
    }

    /// How many operations live handles have begun so far, failed ones
    /// included. Sweep `Fault::any(..).nth(n)` for `n` in `1..=op_count()` of
    /// a fault-free run to fail each operation in turn.
    pub fn op_count(&self) -> u64 {
        self.shared.lock().ops
    }

    /// How many operations of class `op` live handles have begun so far,
    /// failed ones included: `Fault::on(op, ..).nth(n)` for `n` in
    /// `1..=op_count_of(op)` of a fault-free run fails each in turn.
    pub fn op_count_of(&self, op: OpKind) -> u64 {
        self.shared.lock().ops_by_kind[op as usize]
    }

    /// Every operation an injected fault failed so far, oldest first: its
    /// class and (first) path. Not cleared by [`SimFs::clear_faults`].
    pub fn fired_faults(&self) -> Vec<(OpKind, std::path::PathBuf)> {
        self.shared.lock().faults.fired_log.clone()
    }

    /// The sync calls made so far.
    pub fn sync_counts(&self) -> SyncCounts {
        self.shared.lock().syncs
    }

    /// Size and durable size of the file `path` (`None` if it is missing or
    /// a directory). Not an operation: never counted, never faulted.
    pub fn file_state(&self, path: &Path) -> Option<FileState> {
        let state = self.shared.lock();
        let file = state.tree.file(state.tree.lookup(path).ok()??).ok()?;
        Some(FileState {
            len: file.data.len() as u64,
            synced_len: file.synced_len as u64,
        })
    }

    /// The current bytes of the file `path`. Not an operation.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.shared.lock();
        let file = state.tree.file(state.tree.lookup(path).ok()??).ok()?;
        Some(file.data.clone())
    }

    /// Whether a crash now would leave the entry `path` as it is (naming the
    /// same file or directory, or absent if it is absent) — that is, whether
    /// its creation, rename or removal is durable in every directory along
    /// the path. Says nothing about the file's bytes (see
    /// [`SimFs::file_state`]). Not an operation.
    pub fn is_durable(&self, path: &Path) -> bool {
        self.shared.lock().tree.is_durable(path).unwrap_or(false)
    }

    /// Blocks every file sync until the returned gate is released or dropped.
    pub fn pause_syncs(&self) -> SyncGate {
        self.shared.lock().sync_pauses += 1;
        SyncGate {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Begins `op` on `paths` (alive check, counting, faults), then runs `f`.
    fn run<T>(
        &self,
        op: OpKind,
        paths: &[&Path],
        f: impl FnOnce(&mut State) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.shared.lock();
        state.begin(self.generation(), op, paths)?;
        f(&mut state)
    }

    fn writable(
        &self,
        ino: tree::Ino,
        path: &Path,
        len: usize,
        append_mode: bool,
    ) -> Box<dyn WritableFile> {
        Box::new(SimWritable {
            shared: Arc::clone(&self.shared),
            generation: self.generation(),
            ino,
            path: path.to_path_buf(),
            len: len as u64,
            append_mode,
        })
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.run(OpKind::Create, &[path], |s| s.tree.create_dir_all(path))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let ino = self.run(OpKind::Create, &[path], |s| s.tree.create_file(path, true))?;
        Ok(self.writable(ino, path, 0, false))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let (ino, len) = self.run(OpKind::Open, &[path], |s| {
            let ino = s.tree.open_file(path)?;
            Ok((ino, s.tree.file(ino)?.data.len()))
        })?;
        Ok(self.writable(ino, path, len, true))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let ino = self.run(OpKind::Open, &[path], |s| s.tree.open_file(path))?;
        Ok(Arc::new(SimReadable {
            shared: Arc::clone(&self.shared),
            generation: self.generation(),
            ino,
            path: path.to_path_buf(),
        }))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.run(OpKind::Metadata, &[path], |s| s.tree.read_dir(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(OpKind::Rename, &[from, to], |s| s.tree.rename(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.run(OpKind::Remove, &[path], |s| s.tree.remove_file(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.run(OpKind::Remove, &[path], |s| s.tree.remove_dir_all(path))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.check_alive(self.generation())?;
        state.syncs.sync_dir += 1;
        state.begin(self.generation(), OpKind::SyncDir, &[path])?;
        state.tree.sync_dir(path)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.run(OpKind::Metadata, &[path], |s| {
            let ino = s.tree.open_file(path)?;
            Ok(s.tree.file(ino)?.data.len() as u64)
        })
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.run(OpKind::Metadata, &[path], |s| {
            Ok(s.tree.lookup(path)?.is_some())
        })
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.run(OpKind::Truncate, &[path], |s| {
            let ino = s.tree.open_file(path)?;
            let file = s.tree.file_mut(ino)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= file.data.len())
                .ok_or_else(|| {
                    error(
                        io::ErrorKind::InvalidInput,
                        path,
                        &format!("cannot truncate {} bytes to {len}", file.data.len()),
                    )
                })?;
            file.data.truncate(len);
            file.synced_len = len;
            Ok(())
        })
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let (ino, token) = self.run(OpKind::Lock, &[path], |s| {
            let ino = s.tree.create_file(path, false)?;
            if s.locks.contains_key(&ino) {
                return Err(error(
                    io::ErrorKind::WouldBlock,
                    path,
                    "locked: the database is open in another process or by another handle in this one",
                ));
            }
            let token = s.next_lock_token;
            s.next_lock_token += 1;
            s.locks.insert(ino, token);
            Ok((ino, token))
        })?;
        Ok(Box::new(SimLock {
            shared: Arc::clone(&self.shared),
            ino,
            token,
        }))
    }
}

#[cfg(test)]
mod tests;
