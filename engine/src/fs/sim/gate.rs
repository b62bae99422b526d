//! [`SyncGate`]: hold file syncs until the test lets them through.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::state::Shared;

/// While a `SyncGate` exists, every `sync_data`/`sync_all` on a
/// [`SimFs`](super::SimFs) file blocks. Dropping the gate (or
/// [`SyncGate::release`]) lets them complete.
///
/// A blocked sync makes durable the bytes written before it was called (not
/// the ones appended while it waits). A crash wakes blocked syncs of the dead
/// process, which then fail. Gates nest: syncs proceed once every gate is
/// released.
#[derive(Debug)]
#[must_use = "syncs are released when the gate is dropped"]
pub struct SyncGate {
    pub(super) shared: Arc<Shared>,
}

impl SyncGate {
    /// How many syncs are blocked now (by this or any other gate).
    pub fn blocked(&self) -> usize {
        self.shared.lock().syncs_blocked
    }

    /// Waits until at least `n` syncs are blocked; `false` if `timeout`
    /// passes first. The timeout only keeps a broken test from hanging.
    pub fn wait_for_blocked(&self, n: usize, timeout: Duration) -> bool {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| s.syncs_blocked < n)
            .unwrap_or_else(PoisonError::into_inner);
        state.syncs_blocked >= n
    }

    /// Lets the blocked syncs (and later ones) through.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for SyncGate {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sync_pauses = state.sync_pauses.saturating_sub(1);
        drop(state);
        self.shared.changed.notify_all();
    }
}
