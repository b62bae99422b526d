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
//! was never acknowledged; so is damage followed by valid records when it
//! has the shape of lost writes and no sync mark after it covers it — see
//! [`SYNC_MARK`] — otherwise it is corruption)
//! and always starts a fresh manifest holding one snapshot record, so the
//! log never grows across opens. While open, [`Manifest::log`] appends an
//! edit and makes it durable before returning; concurrent callers share
//! fsyncs (group commit: an fsync covers every edit appended before it
//! started). A caller that must not hold its own lock across the fsync
//! splits the two: [`Manifest::append_with`], then [`Manifest::commit`].
//! When the file passes `rollover_size` — and its edits take at least as
//! many bytes as the snapshot it starts with, so a large state is not
//! rewritten at every edit — it is replaced by a fresh snapshot the same way.
//!
//! Applying an edit costs what it touches, not the size of the state
//! (100,000 partitions make no edit slower).
//!
//! After a failed append or fsync the manifest refuses further edits
//! (`poisoned:`) until the database is reopened.

pub mod edit;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

pub use edit::{Change, TableRecord, VersionEdit};
pub use state::{ManifestState, PartitionRecord};

use crate::error::{corruption, Error, Result};
use crate::fs::{write_file_atomic, Fs, WritableFile};
use crate::locks::lock;
use crate::wal::format::{encode_record, BLOCK_SIZE};
use crate::wal::reader::{lost_write_shape, read_log, salvage_from};

/// Name of the file naming the live manifest.
pub const CURRENT_FILE: &str = "CURRENT";

/// File name of manifest number `n`.
pub fn manifest_file_name(n: u64) -> String {
    format!("MANIFEST-{n:06}")
}

/// The number of a manifest file name, if it is one (exactly as
/// [`manifest_file_name`] spells it, at most [`MAX_NUMBER`](crate::coding::MAX_NUMBER)).
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    crate::coding::parse_padded_number(name.strip_prefix("MANIFEST-")?)
}

/// The start of a sync mark record: an edit of no changes, then a tag byte.
/// [`VersionEdit::decode`] refuses it (trailing bytes), so no edit reads as
/// one. After the tag, the offset (`u64` LE) in the manifest file through
/// which a completed sync made it durable. The first edit appended after
/// each sync is preceded by one. A power loss can keep a later page of
/// unsynced edits and lose an earlier one; edits after such a hole were
/// never acknowledged (each is acknowledged after a sync, which covers every
/// earlier byte) unless a sync covered the hole too — and then a mark after
/// the hole says so.
pub const SYNC_MARK: [u8; 2] = [0, 0xff];

/// Encodes a sync mark: the manifest file is durable up to `offset`.
pub fn encode_sync_mark(offset: u64) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[..2].copy_from_slice(&SYNC_MARK);
    out[2..].copy_from_slice(&offset.to_le_bytes());
    out
}

/// Decodes a sync mark; `None` for any other record.
pub fn decode_sync_mark(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(&SYNC_MARK)?;
    Some(u64::from_le_bytes(rest.try_into().ok()?))
}

struct Writer {
    number: u64,
    file: Box<dyn WritableFile>,
    block_offset: usize,
    /// Bytes appended to the current file.
    file_len: u64,
    /// Bytes of the snapshot record the current file starts with.
    snapshot_len: u64,
    /// Bytes appended over the manifest's life (all files): sync positions.
    appended: u64,
    /// `appended` when the current file's snapshot was written.
    file_start: u64,
    /// The sync position the last sync mark in the current file recorded.
    marked: u64,
    state: ManifestState,
    failed: Option<String>,
}

/// A fresh manifest file: writer, its length, and a sync handle.
type Rolled = (Box<dyn WritableFile>, u64, Box<dyn WritableFile>);

struct Syncer {
    /// The handle fsyncs go through; `None` while a caller is syncing with
    /// it (the lock is not held across the fsync).
    handle: Option<Box<dyn WritableFile>>,
}

/// The open manifest. Thread-safe: `log` may be called concurrently.
pub struct Manifest {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    rollover_size: u64,
    /// The manifest file `open` replayed (`None` for a new database).
    replayed: Option<PathBuf>,
    writer: Mutex<Writer>,
    syncer: Mutex<Syncer>,
    /// Every byte appended up to this position is durable. Changed under
    /// the syncer's lock; read also without it, for sync marks (under the
    /// writer's lock, which comes after the syncer's).
    synced: AtomicU64,
    /// Signalled when a sync ends (the handle is back).
    sync_done: Condvar,
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
            // A manifest's name and a newline; anything longer is damage
            // (and is not read into memory whole).
            let len = fs.file_size(&current_path)?;
            if len > 64 {
                return Err(corruption(
                    &current_path,
                    0,
                    format!("CURRENT is {len} bytes, too long to name a manifest"),
                ));
            }
            let text = crate::fs::read_file(fs.as_ref(), &current_path)?;
            let name = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.strip_suffix('\n'))
                .filter(|n| parse_manifest_file_name(n).is_some())
                .ok_or_else(|| corruption(&current_path, 0, "CURRENT does not name a manifest"))?;
            let number = parse_manifest_file_name(name).unwrap_or_default();
            let path = dir.join(name);
            // CURRENT is replaced atomically and always names a complete
            // manifest: a missing one means CURRENT (or the directory) is
            // damaged, not that the database is new.
            if !fs.exists(&path)? {
                return Err(corruption(
                    &current_path,
                    0,
                    format!("CURRENT names {name}, which does not exist"),
                ));
            }
            let data = crate::fs::read_file(fs.as_ref(), &path)?;
            let read = read_log(&data, |offset, payload| {
                if let Some(through) = decode_sync_mark(payload) {
                    // A mark follows the bytes it says are durable.
                    if through > offset {
                        return Err(format!(
                            "sync mark through offset {through} at offset {offset}"
                        ));
                    }
                    return Ok(());
                }
                let edit = VersionEdit::decode(payload)?;
                state.apply(&edit)
            });
            if let Err(c) = read {
                // Edits up to the damage are applied; the ones after it
                // were never acknowledged if it is a hole of lost writes
                // that no sync covered (see `SYNC_MARK`).
                let Some(hole) = c.hole else {
                    return Err(corruption(&path, c.offset, c.reason));
                };
                let mut src: &[u8] = &data;
                if !lost_write_shape(&mut src, hole)? {
                    return Err(corruption(&path, c.offset, c.reason));
                }
                let covering = salvage_from(&mut src, hole.resumes_at, |at, payload| {
                    decode_sync_mark(payload)
                        .filter(|&through| through > c.offset)
                        .map(|through| (at, through))
                })?;
                if let Some((at, through)) = covering {
                    return Err(corruption(
                        &path,
                        c.offset,
                        format!(
                            "{}, but the sync mark at offset {at} records a completed sync \
                             through offset {through}: durable edits were lost",
                            c.reason
                        ),
                    ));
                }
            }
            old_number = Some(number);
        }
        let replayed = old_number.map(|n| dir.join(manifest_file_name(n)));
        let number = old_number.map_or(1, |n| n + 1);
        crate::coding::check_new_number("manifest", number)
            .map_err(|why| corruption(&current_path, 0, why))?;
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
            replayed,
            writer: Mutex::new(Writer {
                number,
                file,
                block_offset: (len as usize) % BLOCK_SIZE,
                file_len: len,
                snapshot_len: len,
                appended: 0,
                file_start: 0,
                marked: 0,
                state,
                failed: None,
            }),
            syncer: Mutex::new(Syncer {
                handle: Some(handle),
            }),
            synced: AtomicU64::new(0),
            sync_done: Condvar::new(),
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

    /// Fails with `poisoned:` if an earlier failure made the manifest refuse
    /// edits; its state may then hold an edit the partitions' versions lack.
    ///
    /// # Errors
    /// `Poisoned` after an earlier failure.
    pub fn ensure_writable(&self) -> Result<()> {
        match &lock(&self.writer).failed {
            Some(why) => Err(poisoned(why)),
            None => Ok(()),
        }
    }

    /// The live manifest file's number.
    pub fn number(&self) -> u64 {
        lock(&self.writer).number
    }

    /// The manifest file [`open`](Self::open) replayed (`None` if it
    /// created the database): the file to name when what it held turns out
    /// inconsistent with the WAL. (Open has already replaced it by a fresh
    /// snapshot.)
    pub fn replayed_path(&self) -> Option<&Path> {
        self.replayed.as_deref()
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
        let (position, edit) = self.append_with(make)?;
        self.commit(position)?;
        Ok(edit)
    }

    /// Validates the edit `make` builds from the current state, applies it
    /// and appends it, without waiting for it to be durable: returns the
    /// position to pass to [`commit`](Self::commit) and the edit. Until then
    /// a crash may lose it.
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub fn append_with(
        &self,
        make: impl FnOnce(&ManifestState) -> VersionEdit,
    ) -> Result<(u64, VersionEdit)> {
        let mut w = lock(&self.writer);
        if let Some(why) = &w.failed {
            return Err(poisoned(why));
        }
        let edit = make(&w.state);
        w.state
            .apply(&edit)
            .map_err(|why| Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, why)))?;
        let mut payload = Vec::new();
        edit.encode(&mut payload);
        let mut bytes = Vec::with_capacity(payload.len() + 40);
        let mut offset = w.block_offset;
        // A sync completed since the last mark: say so first.
        let synced = self.synced.load(Ordering::Acquire);
        let mark = synced > w.marked && synced > w.file_start;
        if mark {
            let through = w.snapshot_len + (synced - w.file_start);
            encode_record(&mut offset, &encode_sync_mark(through), &mut bytes);
        }
        encode_record(&mut offset, &payload, &mut bytes);
        if let Err(e) = w.file.append(&bytes) {
            // The state now holds an edit the file may lack: refuse every
            // later edit (the next open reads the file, not this state).
            w.failed = Some(e.to_string());
            return Err(Error::Io(e));
        }
        w.block_offset = offset;
        w.file_len += bytes.len() as u64;
        w.appended += bytes.len() as u64;
        if mark {
            w.marked = synced;
        }
        Ok((w.appended, edit))
    }

    /// Position of everything appended so far, for [`commit`](Self::commit).
    pub fn appended(&self) -> u64 {
        lock(&self.writer).appended
    }

    /// Returns once every edit appended up to `position` is durable (sharing
    /// an fsync with concurrent callers), then rolls the manifest over if it
    /// is due.
    ///
    /// A failed rollover does not fail the commit: the edit is durable by
    /// then (`CURRENT` still names the old, complete manifest, or already
    /// the new snapshot holding it), and a caller told otherwise would undo
    /// it — a flush would delete the table the manifest now lists. The
    /// manifest refuses later edits instead (`poisoned:`).
    ///
    /// # Errors
    /// I/O errors of the sync (after which the manifest is poisoned);
    /// `Poisoned` after an earlier failure.
    pub fn commit(&self, position: u64) -> Result<()> {
        self.sync_to(position)?;
        // On failure `maybe_roll_over` has poisoned the manifest.
        let _ = self.maybe_roll_over();
        Ok(())
    }

    /// Returns once every byte up to `position` is durable, syncing if no
    /// other caller's sync already covered it.
    ///
    /// Group commit: one caller at a time syncs, without holding the lock,
    /// everything appended when its sync began; callers arriving meanwhile
    /// wait for it and return at once if it covered them, or one of them
    /// syncs next for all the others. (Holding the lock across the fsync
    /// would make each covered caller queue behind the next fsync.)
    fn sync_to(&self, position: u64) -> Result<()> {
        let mut s = lock(&self.syncer);
        loop {
            if self.synced.load(Ordering::Acquire) >= position {
                return Ok(());
            }
            let Some(mut handle) = s.handle.take() else {
                s = self.wait_sync(s);
                continue;
            };
            // Lock order: syncer, then writer.
            let target = {
                let w = lock(&self.writer);
                if let Some(why) = &w.failed {
                    s.handle = Some(handle);
                    return Err(poisoned(why));
                }
                w.appended
            };
            drop(s);
            let synced = handle.sync_data();
            s = lock(&self.syncer);
            s.handle = Some(handle);
            self.sync_done.notify_all();
            if let Err(e) = synced {
                lock(&self.writer).failed = Some(e.to_string());
                return Err(Error::Io(e));
            }
            self.synced.fetch_max(target, Ordering::Release);
        }
    }

    fn wait_sync<'a>(&self, s: MutexGuard<'a, Syncer>) -> MutexGuard<'a, Syncer> {
        self.sync_done
            .wait(s)
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn roll_over_due(&self, w: &Writer) -> bool {
        w.failed.is_none()
            && w.file_len >= self.rollover_size
            && w.file_len - w.snapshot_len >= w.snapshot_len
    }

    fn maybe_roll_over(&self) -> Result<()> {
        if !self.roll_over_due(&lock(&self.writer)) {
            return Ok(());
        }
        // Lock order: syncer, then writer (as in `sync_to`); no sync may be
        // running on the old file's handle while it is replaced.
        let mut s = lock(&self.syncer);
        while s.handle.is_none() {
            s = self.wait_sync(s);
        }
        let mut w = lock(&self.writer);
        if !self.roll_over_due(&w) {
            return Ok(()); // another caller rolled it over meanwhile
        }
        // Out of numbers: refused before anything is written, the manifest
        // stays writable.
        let number = crate::coding::check_new_number("manifest", w.number + 1)
            .map_err(|why| Error::Io(std::io::Error::other(why)))?;
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
                w.snapshot_len = len;
                w.block_offset = (len as usize) % BLOCK_SIZE;
                w.file_start = w.appended;
                w.marked = w.appended;
                s.handle = Some(handle);
                self.synced.fetch_max(w.appended, Ordering::Release);
                drop(w);
                drop(s);
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
