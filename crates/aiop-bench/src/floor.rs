//! The physical floors of process creation, measured in the same run.

use std::process::Command;

use crate::report::{Results, iters};

const NOOP_ENV: &str = "AIOP_BENCH_NOOP";

/// In the `floor/exec_self` child: exit at once.
pub(crate) fn exit_if_noop_child() {
    if std::env::var_os(NOOP_ENV).is_some() {
        std::process::exit(0);
    }
}

/// `floor/fork_waitpid`: `fork`, `_exit(0)` in the child, `waitpid`.
pub(crate) fn fork_waitpid(results: &mut Results) {
    results.latency("floor/fork_waitpid", iters(200), raw_fork_exit_wait);
}

#[allow(unsafe_code)]
fn raw_fork_exit_wait() {
    // SAFETY: the benchmark process is single-threaded when this runs, and the
    // child calls only the async-signal-safe `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: `_exit` never returns and is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
}

/// `floor/exec_true`: `Command::new("/bin/true")` + wait.
pub(crate) fn exec_true(results: &mut Results) {
    results.latency("floor/exec_true", iters(200), || {
        assert!(
            Command::new("/bin/true")
                .status()
                .expect("exec /bin/true")
                .success()
        );
    });
}

/// `floor/exec_self`: re-execute this binary, which exits at once, + wait:
/// what Spawn costs before aiop does anything.
pub(crate) fn exec_self(results: &mut Results) {
    results.latency("floor/exec_self", iters(200), || {
        let st = Command::new("/proc/self/exe")
            .env(NOOP_ENV, "1")
            .status()
            .expect("exec self");
        assert!(st.success());
    });
}
