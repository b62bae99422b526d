//! Open-file handles of [`SimFs`](super::SimFs).
//!
//! A handle names an inode (so it keeps working after the file is renamed or
//! unlinked, as on POSIX) and the generation it was opened in (so it fails
//! once that "process" has crashed).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use super::fault::OpKind;
use super::state::{OpError, Shared};
use super::tree::Ino;
use crate::fs::{FileLock, ReadableFile, WritableFile};

/// An append handle.
#[derive(Debug)]
pub(super) struct SimWritable {
    pub(super) shared: Arc<Shared>,
    pub(super) generation: u64,
    pub(super) ino: Ino,
    /// The path it was opened by: for fault matching and messages.
    pub(super) path: PathBuf,
    /// The position: where the next append writes.
    pub(super) len: u64,
    /// Opened by `open_append`: writes go to the end of the file.
    pub(super) append_mode: bool,
}

impl SimWritable {
    /// `sync_data` and `sync_all` alike: the simulation has no metadata
    /// apart from directory entries, which only `sync_dir` makes durable.
    fn sync(&mut self, all: bool) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.check_alive(self.generation)?;
        if all {
            state.syncs.sync_all += 1;
        } else {
            state.syncs.sync_data += 1;
        }
        state.begin(self.generation, OpKind::Sync, &[&self.path])?;
        let mut target = state.tree.file(self.ino)?.data.len();
        if state.sync_pauses > 0 {
            // What the sync covers is the bytes present when it began: an
            // append that overwrites some of them (preallocated zeros) while
            // it waits is not covered.
            let before = state.tree.file(self.ino)?.data[..target].to_vec();
            state.syncs_blocked += 1;
            self.shared.changed.notify_all();
            let generation = self.generation;
            state = self
                .shared
                .changed
                .wait_while(state, |s| s.sync_pauses > 0 && s.generation == generation)
                .unwrap_or_else(PoisonError::into_inner);
            state.syncs_blocked -= 1;
            self.shared.changed.notify_all();
            state.check_alive(self.generation)?;
            let now = &state.tree.file(self.ino)?.data;
            target = before
                .iter()
                .zip(now.iter())
                .take_while(|(a, b)| a == b)
                .count();
        }
        let file = state.tree.file_mut(self.ino)?;
        file.synced_len = file.synced_len.max(target.min(file.data.len()));
        Ok(())
    }
}

impl WritableFile for SimWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut state = self.shared.lock();
        let (data, result) = match state.begin(self.generation, OpKind::Write, &[&self.path]) {
            Ok(()) => (data, Ok(())),
            Err(OpError {
                error,
                partial_write: true,
            }) => (&data[..data.len() / 2], Err(error)),
            Err(OpError { error, .. }) => return Err(error),
        };
        let file = state.tree.file_mut(self.ino)?;
        if self.append_mode {
            self.len = file.data.len() as u64;
        }
        let at = usize::try_from(self.len)
            .map_err(|_| io::Error::other("position beyond memory"))?
            .min(file.data.len());
        if !data.is_empty() {
            file.synced_len = file.synced_len.min(at);
        }
        let overlap = data.len().min(file.data.len() - at);
        file.data[at..at + overlap].copy_from_slice(&data[..overlap]);
        file.data.extend_from_slice(&data[overlap..]);
        self.len = (at + data.len()) as u64;
        result
    }

    /// Not an operation for fault injection (a fault armed for the next
    /// write hits the append that follows), but a dead process's handle
    /// fails.
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.check_alive(self.generation)?;
        if self.append_mode {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "preallocate on a handle opened for appending",
            ));
        }
        let len =
            usize::try_from(len).map_err(|_| io::Error::other("preallocation beyond memory"))?;
        let file = state.tree.file_mut(self.ino)?;
        if len > file.data.len() {
            file.data.resize(len, 0);
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync(false)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync(true)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// A positional-read handle; sees appends made after it was opened.
#[derive(Debug)]
pub(super) struct SimReadable {
    pub(super) shared: Arc<Shared>,
    pub(super) generation: u64,
    pub(super) ino: Ino,
    pub(super) path: PathBuf,
}

impl ReadableFile for SimReadable {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.shared.lock();
        state.begin(self.generation, OpKind::Read, &[&self.path])?;
        let data = &state.tree.file(self.ino)?.data;
        let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.shared.lock();
        state.begin(self.generation, OpKind::Metadata, &[&self.path])?;
        Ok(state.tree.file(self.ino)?.data.len() as u64)
    }

    /// A copy of the file's current bytes: what a map of a file that is
    /// not changed afterwards shows.
    fn map(&self) -> io::Result<Option<bytes::Bytes>> {
        let mut state = self.shared.lock();
        state.begin(self.generation, OpKind::Read, &[&self.path])?;
        let data = &state.tree.file(self.ino)?.data;
        Ok(Some(bytes::Bytes::copy_from_slice(data)))
    }
}

/// A held lock; dropping it releases the lock unless a crash already did.
#[derive(Debug)]
pub(super) struct SimLock {
    pub(super) shared: Arc<Shared>,
    pub(super) ino: Ino,
    pub(super) token: u64,
}

impl FileLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.locks.get(&self.ino) == Some(&self.token) {
            state.locks.remove(&self.ino);
        }
    }
}
