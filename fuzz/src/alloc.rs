//! Counting the bytes a target allocates, so that "no unbounded allocation" is checked, not
//! hoped for.
//!
//! [`CountingAlloc`] wraps the system allocator and keeps, per thread, the bytes live and the
//! highest mark since [`reset_peak`]. Per thread, because `cargo test` runs tests on several
//! threads at once and each target runs on one. A binary opts in with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;`; without it [`peak_since_reset`]
//! answers `None` and the driver checks panics only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct CountingAlloc;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialised cells without destructors: reading them never allocates, so they are
    // safe to use from inside the allocator.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(bytes as isize);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

fn shrink(bytes: usize) {
    // Memory freed on another thread than the one that allocated it only lowers this thread's
    // count: the peak stays an upper bound of what the target held.
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(bytes as isize)));
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping touches only
// thread-local cells and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrink(layout.size());
            grow(new_size);
        }
        new
    }
}

/// Starts a new measurement on this thread: the peak becomes what is live now.
pub fn reset_peak() {
    let live = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(live));
}

/// The most bytes this thread held at once since [`reset_peak`], above what it held then;
/// `None` when [`CountingAlloc`] is not the global allocator.
pub fn peak_since_reset(baseline: isize) -> Option<usize> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    Some(PEAK.with(Cell::get).saturating_sub(baseline).max(0) as usize)
}

/// The bytes this thread holds now (the baseline for [`peak_since_reset`]).
pub fn live() -> isize {
    LIVE.with(Cell::get)
}
