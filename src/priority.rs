//! Scheduling priority of background threads: work that can wait (fulfilment, the
//! in-process devnet standing in for a remote node) gives the CPU to taking orders when it
//! is short, and runs at full speed when it is not.

use std::cell::Cell;

/// Lowers the calling thread's priority to `nice` (0 leaves it as it is). On Linux the nice
/// value is per thread; elsewhere this lowers the whole process, so it is done on Linux only.
pub fn lower_this_thread(nice: u8) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let nice = i32::from(nice);
        // PRIO_PROCESS with 0 is the calling thread alone (a thread is a task to Linux).
        // SAFETY: setpriority only reads its integer arguments.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if rc != 0 {
            tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower a background thread's priority");
        }
    }
}

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
