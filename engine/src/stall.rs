//! Backpressure: writes to a partition whose flushes or level-0
//! compactions fall behind are slowed, then stopped, *before* they enter the
//! group-commit queue.
//!
//! Per partition (a hot partition stalls only the writes that touch it):
//! - **stop** while it has `max_immutable_memtables` memtables waiting for a
//!   flush, or (with background compaction on) `l0_stop_writes_trigger`
//!   level-0 tables;
//! - **slow down** from `l0_slowdown_writes_trigger` level-0 tables: each
//!   write first waits 1 ms per table above the trigger (at most 50 ms).
//!
//! A stopped writer waits on a [`Completion`] that the engine resolves after
//! every flush or compaction install, partition drop and shutdown; it then
//! checks again. Async callers await it (no tokio worker blocks); the
//! blocking [`Db::write`](crate::Db::write) waits on the thread. If the
//! stopped partition's last flush (or level-0 compaction) failed, its writer
//! gets that error (`stalled: …`) instead of waiting for work that may never
//! succeed, and the work is queued again; the failure is the partition's own
//! (cleared by its next success), so other partitions' writers are not
//! affected. Time spent stalled is counted in `Stats::stall_micros`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::completion::{completion, Completer, Completion};
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::partition::PartitionState;

/// What a writer must do before submitting.
#[derive(Debug)]
pub enum Stall {
    /// Go ahead.
    Go,
    /// Wait this long, then submit (slowdown).
    Delay(Duration),
    /// Wait for this completion (a flush or compaction finished), then ask
    /// again.
    Wait(Completion<()>),
}

/// The failed background work a stopped partition waits for.
enum Failure {
    Flush(String),
    Compaction(String),
}

/// Most a slowed-down write waits.
const MAX_DELAY: Duration = Duration::from_millis(50);

/// Writers stopped until the next install.
#[derive(Default)]
pub(crate) struct Stalled {
    waiters: Vec<Completer<()>>,
}

impl Inner {
    /// The stall a write to `p` is subject to.
    fn partition_stall(&self, p: &PartitionState) -> Option<Duration> {
        // A dropped partition never flushes or compacts again: a writer
        // that looked it up before the drop must not wait for it (the
        // drop's wake-up may have come before the writer began to wait).
        // It goes on to `submit`, which finds the partition gone (or a new
        // one of the same name).
        if p.is_dropped() {
            return None;
        }
        let o = &self.options;
        if p.immutable_count() >= o.max_immutable_memtables.max(1) {
            return Some(Duration::MAX);
        }
        if o.disable_auto_compactions {
            return None;
        }
        let l0 = p.l0_count();
        if l0 >= o.l0_stop_writes_trigger.max(1) {
            return Some(Duration::MAX);
        }
        let slowdown = o.l0_slowdown_writes_trigger.max(1);
        if l0 >= slowdown {
            let ms = (l0 - slowdown + 1) as u64;
            return Some(Duration::from_millis(ms).min(MAX_DELAY));
        }
        None
    }

    /// The failure of the background work that would resume the stopped
    /// partition `p`, if that work failed last time.
    fn stop_failure(&self, p: &PartitionState) -> Option<Failure> {
        if p.immutable_count() >= self.options.max_immutable_memtables.max(1) {
            p.flush_failure().map(Failure::Flush)
        } else {
            p.compaction_failure().map(Failure::Compaction)
        }
    }

    /// The stall for a write touching `partitions` (the worst of theirs).
    pub(crate) fn stall(&self, partitions: &[Arc<PartitionState>]) -> Result<Stall> {
        let worst = partitions
            .iter()
            .filter_map(|p| self.partition_stall(p))
            .max();
        match worst {
            None => Ok(Stall::Go),
            Some(Duration::MAX) => {
                let mut stalled = lock(&self.stalled);
                // Checked again under the lock: an install that happened
                // since the check above has already woken the old waiters.
                let stopped: Vec<&Arc<PartitionState>> = partitions
                    .iter()
                    .filter(|p| self.partition_stall(p) == Some(Duration::MAX))
                    .collect();
                if stopped.is_empty() {
                    return Ok(Stall::Go);
                }
                // A stopped partition whose flush (or level-0 compaction)
                // failed: its writers get that error rather than wait for
                // work that may never succeed, and the work is queued
                // again, so that a passing failure (a full disk that was
                // cleaned up) clears on a later write. Other partitions'
                // writers wait on as usual.
                if let Some((p, failure)) = stopped
                    .iter()
                    .find_map(|p| self.stop_failure(p).map(|f| (*p, f)))
                {
                    drop(stalled);
                    let what = match failure {
                        Failure::Flush(e) => {
                            self.schedule_flush(vec![p.clone()]);
                            format!("its flush failed: {e}")
                        }
                        Failure::Compaction(e) => {
                            self.schedule_compaction(p);
                            format!("its level-0 compaction failed: {e}")
                        }
                    };
                    return Err(Error::Stalled(format!(
                        "stalled: writes to partition {:?} are stopped and {what}",
                        p.name()
                    )));
                }
                // Make sure the memtables that stop the writers are queued.
                let waiting: Vec<Arc<PartitionState>> = partitions
                    .iter()
                    .filter(|p| p.immutable_count() > 0)
                    .cloned()
                    .collect();
                if !waiting.is_empty() {
                    self.schedule_flush(waiting);
                }
                if self.closing() {
                    return Err(Error::Closed);
                }
                let (completer, completion) = completion();
                stalled.waiters.push(completer);
                Ok(Stall::Wait(completion))
            }
            Some(d) => Ok(Stall::Delay(d)),
        }
    }

    /// Wakes every stopped writer to check again (after a flush or
    /// compaction install, a drop, shutdown).
    pub(crate) fn wake_stalled(&self) {
        let waiters = std::mem::take(&mut lock(&self.stalled).waiters);
        for w in waiters {
            w.complete(());
        }
    }

    /// Adds time a writer spent stalled to the stats.
    pub(crate) fn note_stall(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.stats.stall_micros.fetch_add(micros, Ordering::Relaxed);
        self.stats.stalls.fetch_add(1, Ordering::Relaxed);
    }
}
