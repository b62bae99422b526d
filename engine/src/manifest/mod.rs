//! The manifest: a durable log of [`VersionEdit`]s describing partitions,
//! their tables, and which WAL files are still needed.
//!
//! Files in the database directory (format: `docs/format/manifest.md`):
//! - `MANIFEST-NNNNNN`: records framed like the WAL
//!   ([`wal::format`](crate::wal::format)), each one edit. The first record
//!   of a file is a snapshot of the whole state.
//! - `CURRENT`: the name of the live manifest file and a newline, replaced
//!   by write-temp, fsync, rename, fsync-directory.
//!
//! [`Manifest::open`] replays the live manifest (a torn tail is an edit that
//! was never acknowledged; damage followed by valid records is corruption)
//! and always starts a fresh manifest holding one snapshot record, so the
//! log never grows across opens. While open, [`Manifest::log`] appends an
//! edit and makes it durable before returning; concurrent callers share
//! fsyncs (group commit: an fsync covers every edit appended before it
//! started). When the file passes `rollover_size` it is replaced by a fresh
//! snapshot the same way.
//!
//! After a failed append or fsync the manifest refuses further edits
//! (`poisoned:`) until the database is reopened.

pub mod edit;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use edit::{Change, TableRecord, VersionEdit};
pub use state::{ManifestState, PartitionRecord};

use crate::error::{corruption, Error, Result};
use crate::fs::{write_file_atomic, Fs, WritableFile};
use crate::locks::lock;
use crate::wal::format::{encode_record, BLOCK_SIZE};
use crate::wal::reader::read_log;

/// Name of the file naming the live manifest.
pub const CURRENT_FILE: &str = "CURRENT";

/// File name of manifest number `n`.
pub fn manifest_file_name(n: u64) -> String {
    format!("MANIFEST-{n:06}")
}

/// The number of a manifest file name, if it is one.
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("MANIFEST-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

struct Writer {
    number: u64,
    file: Box<dyn WritableFile>,
    block_offset: usize,
    /// Bytes appended to the current file.
    file_len: u64,
    /// Bytes appended over the manifest's life (all files): sync positions.
    appended: u64,
    state: ManifestState,
    failed: Option<String>,
}

/// A fresh manifest file: writer, its length, and a sync handle.
type Rolled = (Box<dyn WritableFile>, u64, Box<dyn WritableFile>);

struct Syncer {
    handle: Box<dyn WritableFile>,
    /// Every byte appended up to this position is durable.
    synced: u64,
}

/// The open manifest. Thread-safe: `log` may be called concurrently.
pub struct Manifest {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    rollover_size: u64,
    writer: Mutex<Writer>,
    syncer: Mutex<Syncer>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Writes manifest `number` holding one snapshot of `state`, synced, with
/// its directory entry synced. Returns the open file and its length.
fn write_snapshot(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    number: u64,
    state: &ManifestState,
) -> Result<(Box<dyn WritableFile>, u64)> {
    let mut payload = Vec::new();
    state.snapshot().encode(&mut payload);
    let mut bytes = Vec::with_capacity(payload.len() + 64);
    let mut offset = 0;
    encode_record(&mut offset, &payload, &mut bytes);
    let path = dir.join(manifest_file_name(number));
    let mut file = fs.create(&path)?;
    file.append(&bytes)?;
    file.sync_data()?;
    fs.sync_dir(dir)?;
    Ok((file, bytes.len() as u64))
}

/// Points `CURRENT` at manifest `number` (durably).
fn set_current(fs: &Arc<dyn Fs>, dir: &Path, number: u64) -> Result<()> {
    let text = format!("{}\n", manifest_file_name(number));
    write_file_atomic(fs.as_ref(), &dir.join(CURRENT_FILE), text.as_bytes())?;
    Ok(())
}

impl Manifest {
    /// Opens the manifest of the database in `dir` (creating one if `CURRENT`
    /// does not exist), replays it, and starts a fresh manifest file with a
    /// snapshot. Returns the manifest; [`Manifest::state`] gives what it holds.
    ///
    /// # Errors
    /// I/O errors; `Corruption` naming the file for a damaged `CURRENT` or
    /// manifest, or edits that contradict each other.
    pub fn open(fs: &Arc<dyn Fs>, dir: &Path, rollover_size: u64) -> Result<Manifest> {
        let current_path = dir.join(CURRENT_FILE);
        let mut state = ManifestState::default();
        let mut old_number = None;
        if fs.exists(&current_path)? {
            let text = crate::fs::read_file(fs.as_ref(), &current_path)?;
            let name = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.strip_suffix('\n'))
                .filter(|n| parse_manifest_file_name(n).is_some())
                .ok_or_else(|| corruption(&current_path, 0, "CURRENT does not name a manifest"))?;
            let number = parse_manifest_file_name(name).unwrap_or_default();
            let path = dir.join(name);
            let data = crate::fs::read_file(fs.as_ref(), &path)?;
            read_log(&data, |_, payload| {
                let edit = VersionEdit::decode(payload)?;
                state.apply(&edit)
            })
            .map_err(|c| corruption(&path, c.offset, c.reason))?;
            old_number = Some(number);
        }
        let number = old_number.map_or(1, |n| n + 1);
        let (file, len) = write_snapshot(fs, dir, number, &state)?;
        set_current(fs, dir, number)?;
        // Manifests other than the new one are obsolete (including leftovers
        // of a crash between writing a snapshot and switching CURRENT).
        for name in fs.read_dir(dir)? {
            if parse_manifest_file_name(&name).is_some_and(|n| n != number) {
                fs.remove_file(&dir.join(&name))?;
            }
        }
        let handle = fs.open_append(&dir.join(manifest_file_name(number)))?;
        Ok(Manifest {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            rollover_size,
            writer: Mutex::new(Writer {
                number,
                file,
                block_offset: (len as usize) % BLOCK_SIZE,
                file_len: len,
                appended: 0,
                state,
                failed: None,
            }),
            syncer: Mutex::new(Syncer { handle, synced: 0 }),
        })
    }

    /// A copy of the state (as of the last logged edit).
    pub fn state(&self) -> ManifestState {
        lock(&self.writer).state.clone()
    }

    /// Reads the state without copying it.
    pub fn with_state<T>(&self, f: impl FnOnce(&ManifestState) -> T) -> T {
        f(&lock(&self.writer).state)
    }

    /// The live manifest file's number.
    pub fn number(&self) -> u64 {
        lock(&self.writer).number
    }

    /// The live manifest file's path (to name it in errors).
    pub fn path(&self) -> PathBuf {
        self.dir.join(manifest_file_name(self.number()))
    }

    /// Validates `edit` against the state, appends it and makes it durable.
    /// Concurrent callers share fsyncs.
    ///
    /// # Errors
    /// `Corruption`-free: an edit that does not fit the state is refused with
    /// `Error::Io(InvalidInput)` and nothing is written; I/O errors (after
    /// which the manifest is poisoned); `Poisoned` after an earlier failure.
    pub fn log(&self, edit: &VersionEdit) -> Result<()> {
        self.log_with(|_| edit.clone()).map(drop)
    }

    /// As [`log`](Self::log), building the edit from the current state under
    /// the manifest's lock (e.g. to take the next partition id); returns the
    /// edit logged.
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub fn log_with(
        &self,
        make: impl FnOnce(&ManifestState) -> VersionEdit,
    ) -> Result<VersionEdit> {
        let (position, edit) = {
            let mut w = lock(&self.writer);
            if let Some(why) = &w.failed {
                return Err(poisoned(why));
            }
            let edit = make(&w.state);
            let edit = &edit;
            let mut next = w.state.clone();
            next.apply(edit).map_err(|why| {
                Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, why))
            })?;
            let mut payload = Vec::new();
            edit.encode(&mut payload);
            let mut bytes = Vec::with_capacity(payload.len() + 16);
            let mut offset = w.block_offset;
            encode_record(&mut offset, &payload, &mut bytes);
            if let Err(e) = w.file.append(&bytes) {
                w.failed = Some(e.to_string());
                return Err(Error::Io(e));
            }
            w.block_offset = offset;
            w.file_len += bytes.len() as u64;
            w.appended += bytes.len() as u64;
            w.state = next;
            (w.appended, edit.clone())
        };
        self.sync_to(position)?;
        self.maybe_roll_over()?;
        Ok(edit)
    }

    /// Returns once every byte up to `position` is durable, syncing if no
    /// other caller's sync already covered it.
    fn sync_to(&self, position: u64) -> Result<()> {
        let mut s = lock(&self.syncer);
        if s.synced >= position {
            return Ok(());
        }
        let target = {
            let w = lock(&self.writer);
            if let Some(why) = &w.failed {
                return Err(poisoned(why));
            }
            w.appended
        };
        if let Err(e) = s.handle.sync_data() {
            lock(&self.writer).failed = Some(e.to_string());
            return Err(Error::Io(e));
        }
        s.synced = target;
        Ok(())
    }

    fn maybe_roll_over(&self) -> Result<()> {
        let mut w = lock(&self.writer);
        if w.file_len < self.rollover_size || w.failed.is_some() {
            return Ok(());
        }
        let mut s = lock(&self.syncer);
        let number = w.number + 1;
        let rolled = (|| -> Result<Rolled> {
            let (file, len) = write_snapshot(&self.fs, &self.dir, number, &w.state)?;
            set_current(&self.fs, &self.dir, number)?;
            let handle = self
                .fs
                .open_append(&self.dir.join(manifest_file_name(number)))?;
            Ok((file, len, handle))
        })();
        match rolled {
            Ok((file, len, handle)) => {
                let old = self.dir.join(manifest_file_name(w.number));
                w.number = number;
                w.file = file;
                w.file_len = len;
                w.block_offset = (len as usize) % BLOCK_SIZE;
                s.handle = handle;
                s.synced = w.appended;
                drop(s);
                drop(w);
                // The old file is unreferenced; failing to delete it only
                // leaves garbage that the next open removes.
                let _ = self.fs.remove_file(&old);
                Ok(())
            }
            Err(e) => {
                // CURRENT still names the old, complete manifest; stop
                // appending to be safe.
                w.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

fn poisoned(why: &str) -> Error {
    Error::Poisoned(format!(
        "poisoned: the manifest refuses edits after an earlier failure ({why}); reopen the database"
    ))
}

#[cfg(test)]
mod tests;
