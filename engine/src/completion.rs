//! A one-shot completion that a thread can block on or a task can await.
//!
//! The engine's write path hands each waiting writer a [`Completion`]; the
//! thread that finishes the work (the group-commit leader or the WAL syncer)
//! fulfils it through the paired [`Completer`]. Async callers `.await` it and
//! never block a runtime worker; synchronous callers call [`Completion::wait`].
//! The engine does not depend on any async runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// Set when the completer was dropped without a value.
    abandoned: bool,
    /// A thread sleeps in [`Completion::wait`]: only then does finishing
    /// signal the condition variable (a `notify_all` is a futex system call
    /// even with nobody waiting; async waiters are woken by their waker).
    blocked: bool,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

/// The receiving half: a future, or a blocking [`wait`](Completion::wait).
///
/// Resolves to `Some(value)`, or `None` if the completer was dropped without
/// completing (the engine shut down).
pub struct Completion<T> {
    shared: Arc<Shared<T>>,
}

/// The sending half; completing consumes it. Dropping it unfulfilled wakes
/// the waiter with `None`.
pub struct Completer<T> {
    shared: Option<Arc<Shared<T>>>,
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}

impl<T> std::fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completer")
    }
}

/// A connected pair.
pub fn completion<T>() -> (Completer<T>, Completion<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            waker: None,
            abandoned: false,
            blocked: false,
        }),
        ready: Condvar::new(),
    });
    (
        Completer {
            shared: Some(shared.clone()),
        },
        Completion { shared },
    )
}

impl<T> Shared<T> {
    fn finish(&self, value: Option<T>) {
        let (waker, blocked) = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            match value {
                Some(v) => slot.value = Some(v),
                None => slot.abandoned = true,
            }
            (slot.waker.take(), slot.blocked)
        };
        if blocked {
            self.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Completer<T> {
    /// Fulfils the completion.
    pub fn complete(mut self, value: T) {
        if let Some(shared) = self.shared.take() {
            shared.finish(Some(value));
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.finish(None);
        }
    }
}

impl<T> Completion<T> {
    /// Blocks the calling thread until completed.
    pub fn wait(self) -> Option<T> {
        let mut slot = self
            .shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = slot.value.take() {
                return Some(v);
            }
            if slot.abandoned {
                return None;
            }
            slot.blocked = true;
            slot = self
                .shared
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = self
            .shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Some(v));
        }
        if slot.abandoned {
            return Poll::Ready(None);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(Mutex<bool>);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            *self.0.lock().unwrap() = true;
        }
    }

    #[test]
    fn wait_gets_the_value_from_another_thread() {
        let (tx, rx) = completion();
        let t = std::thread::spawn(move || tx.complete(42));
        assert_eq!(rx.wait(), Some(42));
        t.join().unwrap();
    }

    #[test]
    fn dropped_completer_resolves_to_none() {
        let (tx, rx) = completion::<u8>();
        drop(tx);
        assert_eq!(rx.wait(), None);
    }

    #[test]
    fn poll_registers_the_waker_and_is_woken() {
        let (tx, mut rx) = completion();
        let flag = Arc::new(Flag(Mutex::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        assert!(!*flag.0.lock().unwrap());
        tx.complete("done");
        assert!(*flag.0.lock().unwrap());
        assert_eq!(Pin::new(&mut rx).poll(&mut cx), Poll::Ready(Some("done")));
    }
}
