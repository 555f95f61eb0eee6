//! The process-level calls that rustix does not offer safely: `fork`,
//! `_exit`, environment removal, and `O_ASYNC` parent-death signalling.
//!
//! # Safety
//!
//! * [`fork`] is only called by the Fork start method (after it checked that
//!   the process has exactly one thread) and by the fork server, whose own
//!   code runs single-threaded. In the child only the calling thread exists,
//!   so no lock can be held by a thread that no longer exists, except locks
//!   the caller holds itself, and the callers hold none across the call.
//! * [`exit_now`] is `_exit(2)`: it runs no destructors and no `atexit`
//!   handlers, which is what a forked child must do so that it never returns
//!   into code (a test harness, say) that belongs to its parent.
//! * [`remove_env`] is called once, by `init()`, before any user code runs in
//!   the child.
//! * `fcntl` with `F_SETOWN` / `F_SETSIG` takes plain integers.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// What [`fork`] returned in this process.
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// Why [`fork_single_threaded`] did not fork.
#[derive(Debug)]
pub(crate) enum ForkError {
    /// The process has this many threads.
    Threads(usize),
    /// The kernel refused.
    Io(io::Error),
}

/// `fork(2)`, refused unless this process has exactly one thread besides
/// the parked `aiop-robust` sentinel (which holds no lock, and which the
/// child replaces with its own on first use).
///
/// The check cannot race: with one thread, only the caller could start
/// another. Callers hold no lock across the call and end the child with
/// [`exit_now`].
pub(crate) fn fork_single_threaded() -> Result<Forked, ForkError> {
    match thread_count() {
        Ok(n) if n == 1 + super::robust::sentinel_threads() => {}
        Ok(n) => return Err(ForkError::Threads(n)),
        Err(e) => return Err(ForkError::Io(e)),
    }
    raw_fork().map_err(ForkError::Io)
}

/// `fork(2)` for the fork server's loop.
///
/// The fork server is a process started only to run that loop: its one
/// working thread is the caller. In a test binary the harness's main thread
/// also exists, parked waiting for the entry test (the server) to finish; it
/// holds no lock while parked, so a forked copy of the server is consistent.
/// The loop holds no lock across the call and ends each child with
/// [`exit_now`].
pub(crate) fn fork_for_server() -> io::Result<Forked> {
    raw_fork()
}

fn raw_fork() -> io::Result<Forked> {
    // SAFETY: both callers guarantee that no other thread of this process is
    // running code that could hold a lock (see their docs); fork(2) then
    // duplicates a consistent process. glibc's fork also runs its own atfork
    // handlers (malloc's locks are reset in the child).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends this process at once with `code`: no destructors, no `atexit`.
/// Has the C library run `hook` when the process exits normally (`exit`,
/// or `main` returning); false when its table is full.
pub(crate) fn on_exit(hook: extern "C" fn()) -> bool {
    // SAFETY: `atexit` only records the pointer; `hook` is a plain function
    // that lives as long as the program. The caller's hook must not unwind
    // (it is called from C).
    unsafe { libc::atexit(hook) == 0 }
}

pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit(2) never returns and is async-signal-safe; skipping
    // destructors is the point (see the module docs).
    unsafe { libc::_exit(code) }
}

/// Removes `key` from this process's environment.
///
/// Called by `init()` in a fresh child before user code runs, so that the
/// child's own spawns do not look like children of children.
pub(crate) fn remove_env(key: &str) {
    // SAFETY: `set_var`/`remove_var` are unsafe because another thread may
    // read the environment concurrently. `init()` calls this only when the
    // process has one thread, or in the test harness's child entry, while the
    // harness's main thread is parked waiting for that test.
    unsafe { std::env::remove_var(key) }
}

/// The number of threads of this process (`/proc/self/task` entries).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// `F_SETSIG` from `<fcntl.h>` (Linux; the libc crate does not export it).
const F_SETSIG: libc::c_int = 10;

fn fcntl_int(fd: BorrowedFd<'_>, cmd: libc::c_int, arg: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: F_SETOWN, F_SETSIG, F_GETFL and F_SETFL take an integer argument
    // (fcntl(2)); the descriptor is borrowed, so it is open for the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, arg) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Asks the kernel to SIGKILL this process when `sock` becomes readable or
/// hung up, which on a control socket that the parent never writes to again
/// means: the parent closed its end, usually because it died.
///
/// `O_ASYNC` with `F_SETSIG` delivers the chosen signal from the socket's
/// wake-up path (`sk_wake_async`), so no thread has to watch the socket, and
/// unlike `PR_SET_PDEATHSIG` it does not depend on which *thread* of the
/// parent created the child. Returns `Ok(false)` if the peer was already gone
/// when the signal was armed (the caller then exits itself).
pub(crate) fn kill_self_on_hangup(sock: impl AsFd) -> io::Result<bool> {
    let fd = sock.as_fd();
    fcntl_int(fd, libc::F_SETOWN, std::process::id() as libc::c_int)?;
    fcntl_int(fd, F_SETSIG, libc::SIGKILL)?;
    let fl = fcntl_int(fd, libc::F_GETFL, 0)?;
    fcntl_int(fd, libc::F_SETFL, fl | libc::O_ASYNC)?;
    // The peer may have gone before O_ASYNC was set: look once.
    let mut pfd = [rustix::event::PollFd::from_borrowed_fd(
        fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let n = rustix::event::poll(&mut pfd, Some(&zero))?;
    Ok(n == 0)
}

/// Turns [`kill_self_on_hangup`] off again (before the child writes its reply,
/// since write-space wake-ups also raise the signal).
pub(crate) fn disarm_hangup(sock: impl AsFd) -> io::Result<()> {
    let fd = sock.as_fd();
    let fl = fcntl_int(fd, libc::F_GETFL, 0)?;
    fcntl_int(fd, libc::F_SETFL, fl & !libc::O_ASYNC)?;
    Ok(())
}

/// Closes descriptor number `fd` in a freshly forked child.
///
/// The parent's handles that own these numbers were copied into the child
/// with the rest of its memory, but the child never runs their destructors
/// (it ends with [`exit_now`]), so closing the numbers here is the only close
/// they get in the child. Only the fork paths call this, with numbers taken
/// from live owners in the parent's registry.
pub(crate) fn close_inherited(fd: std::os::fd::RawFd) {
    use std::os::fd::FromRawFd;
    // SAFETY: see above: in the forked child, `fd` is open (it was open in the
    // parent at fork time, under the registry lock that guards its owner's
    // removal) and no live owner will use or close it again.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// Whether this process runs with elevated privileges (setuid, setgid or
/// file capabilities): the kernel's `AT_SECURE`.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel passed.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Waits for (reaps) child `pid`, retrying `EINTR`; errors are ignored.
pub(crate) fn wait_pid(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        while let Err(rustix::io::Errno::INTR) =
            rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty())
        {}
    }
}
