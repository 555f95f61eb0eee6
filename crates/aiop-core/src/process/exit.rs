//! Work a process finishes before it exits.
//!
//! Parts of aiop that hold state on behalf of other processes (the
//! manager's client, whose cancelled calls may still owe the server an
//! undo) register a hook with [`at_exit`]. The hooks run once per process:
//! when it exits normally (`main` returns or `std::process::exit`, through
//! the C library's `atexit`), and when a child started by aiop ends, forked
//! ones included (which leave by `_exit`). A process killed by a signal, or
//! one that aborts, runs none.

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
static INSTALLED: Once = Once::new();
/// The process that ran the hooks (a forked copy runs its own).
static RAN_IN: AtomicU32 = AtomicU32::new(0);

/// Registers `hook` to run when this process exits (see the module docs).
/// Hooks must be quick and bounded: the exit waits for them. A hook that
/// panics is skipped. Register each hook once.
#[doc(hidden)]
pub fn at_exit(hook: fn()) {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
    INSTALLED.call_once(|| {
        // Should the table be full, the hooks still run when a child
        // started by aiop ends.
        let _ = crate::sys::proc::on_exit(run_at_exit);
    });
}

/// Called from C: never unwinds (the hooks' panics are caught).
extern "C" fn run_at_exit() {
    run_exit_hooks();
}

/// Runs the registered hooks, once per process.
pub(crate) fn run_exit_hooks() {
    let pid = std::process::id();
    if RAN_IN.swap(pid, Ordering::SeqCst) == pid {
        return;
    }
    // `try_lock`: in a forked copy, a lock held by a thread of the parent
    // at the fork is held forever; registration is rare, so skipping then
    // is better than hanging.
    let hooks = match HOOKS.try_lock() {
        Ok(h) => h.clone(),
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for hook in hooks {
        let _ = catch_unwind(hook);
    }
}
