//! Scheduling priority of background threads (see `flashrent_projections::priority`).

use std::cell::Cell;

pub use flashrent_projections::priority::lower_this_thread;

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// [`lower_this_thread`], once per thread: for threads a library starts (an HTTP server's
/// workers), lowered from the first request they serve.
pub fn lower_this_thread_once(nice: u8) {
    if nice > 0 && !LOWERED.get() {
        LOWERED.set(true);
        lower_this_thread(nice);
    }
}
