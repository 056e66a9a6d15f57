//! memory: heap accounting for `memory_limit`.
//!
//! Owns: a global allocator wrapper that counts live heap bytes (installed
//! by the `midge` binary) and the counter the broker reads.
//!
//! Must not: refuse allocations itself. Mosquitto's allocator returns NULL
//! past the limit and lets the failure surface anywhere; midge instead
//! checks the count where a client asks for more (a PUBLISH) and refuses
//! there, so nothing else ever sees an allocation failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static USED: AtomicUsize = AtomicUsize::new(0);

/// Live heap bytes allocated through `CountingAlloc` (0 when it is not the
/// global allocator, e.g. in unit tests).
pub fn used() -> usize {
    USED.load(Ordering::Relaxed)
}

/// The system allocator, counting.
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the same arguments and
// only adds bookkeeping on an atomic counter, so `System`'s guarantees hold.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds alloc's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            USED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; ptr came from this allocator.
        unsafe { System.dealloc(ptr, layout) };
        USED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            USED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; ptr/layout came from this allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            USED.fetch_sub(layout.size(), Ordering::Relaxed);
            USED.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}
