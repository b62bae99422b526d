//! A counting global allocator, so tests can check that scans stream.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    // Const-initialised and without a destructor: safe to touch from inside
    // the allocator, even while a thread is being torn down.
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes each thread allocates.
///
/// Install it as the `#[global_allocator]` of a test binary to let
/// [`allocated_on_this_thread`] report figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

fn count(bytes: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    let _ = ALLOCATED.try_with(|c| c.set(c.get().wrapping_add(bytes as u64)));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counting touches only a const-initialised thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` via this type.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes allocated so far by the calling thread, or `None` when
/// [`CountingAlloc`] is not the global allocator.
pub fn allocated_on_this_thread() -> Option<u64> {
    // Allocate once so that INSTALLED is set if we are the allocator.
    drop(std::hint::black_box(Box::new(0u8)));
    if INSTALLED.load(Ordering::Relaxed) {
        ALLOCATED.try_with(Cell::get).ok()
    } else {
        None
    }
}
