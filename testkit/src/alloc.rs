//! A counting global allocator, for the tests that pin "this allocates nothing".
//!
//! Install it in the test binary, then count the heap calls of a closure:
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: testkit::CountingAllocator = testkit::CountingAllocator;
//!
//! let (answer, calls) = testkit::heap_calls(|| worker.bid(...));
//! assert_eq!(calls, 0);
//! ```
//!
//! Only heap calls (alloc, zeroed alloc, realloc; frees are not counted) made by the
//! calling thread inside [`heap_calls`] count, so the harness's other threads cannot
//! disturb a count. Set `ALLOC_BACKTRACE=1` to print the backtrace of each counted call:
//! that names the culprit when a test fails.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised, no destructor: touching these never allocates.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static TRACE: Cell<bool> = const { Cell::new(false) };
}

/// Forwards every call to the system allocator and counts heap calls made inside
/// [`heap_calls`] windows.
pub struct CountingAllocator;

fn note_heap_call() {
    // `try_with` fails only during thread teardown, when nothing is measured.
    let _ = ARMED.try_with(|armed| {
        if !armed.get() {
            return;
        }
        CALLS.with(|c| c.set(c.get() + 1));
        if TRACE.with(Cell::get) {
            // Disarmed while capturing: the backtrace allocates.
            armed.set(false);
            eprintln!(
                "heap call inside a counted window:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
            armed.set(true);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the bookkeeping touches only const-initialised thread-locals
// and never allocates while counting (tracing disarms first).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_heap_call();
        // SAFETY: the caller's layout, per `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_heap_call();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_heap_call();
        // SAFETY: `ptr` and `layout` came from this allocator, which got them from System.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` came from this allocator, which got them from System.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result and the heap calls it made on this thread. Only
/// meaningful in a binary whose `#[global_allocator]` is a [`CountingAllocator`]: the
/// caller should also check the count can be non-zero (see
/// [`counting_allocator_is_installed`]), or a missing allocator reads as "no calls".
pub fn heap_calls<R>(f: impl FnOnce() -> R) -> (R, u64) {
    TRACE.with(|t| t.set(std::env::var_os("ALLOC_BACKTRACE").is_some()));
    let was_armed = ARMED.with(|a| a.replace(true));
    let before = CALLS.with(Cell::get);
    let result = f();
    let calls = CALLS.with(Cell::get) - before;
    ARMED.with(|a| a.set(was_armed));
    (result, calls)
}

/// True when this binary counts heap calls: one deliberate allocation is seen.
pub fn counting_allocator_is_installed() -> bool {
    let (v, calls) = heap_calls(|| std::hint::black_box(Vec::<u8>::with_capacity(16)));
    drop(v);
    calls == 1
}
