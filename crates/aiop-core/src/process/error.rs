//! What can go wrong when starting or joining a process.

use std::fmt;
use std::io;

/// Why a process could not be started, or did not return a result.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// An operating-system error while starting or talking to the child.
    Io(io::Error),
    /// The arguments (or the initializer's) could not be serialized.
    Encode(String),
    /// The function panicked in the child; this is the panic message.
    Panicked(String),
    /// The child could not run the function (its arguments did not
    /// deserialize, its result did not serialize, the executable changed).
    Failed(String),
    /// The child exited with this code without returning a result.
    ///
    /// Besides a function that calls `std::process::exit`, this is what a
    /// Spawn child reports when the program does not call
    /// [`init`](crate::init) first thing in `main` (a test crate: when it lacks
    /// [`test_support!`](crate::test_support)): the child then ran the
    /// program from the start instead of the function, and its own spawns
    /// failed with [`ProcessError::Failed`].
    Exited(i32),
    /// A signal (this number) ended the child before it returned a result.
    Signaled(i32),
    /// `join_timeout` expired; the child is still running and can be joined again.
    Timeout,
    /// The result was already taken by an earlier `join`.
    AlreadyJoined,
    /// The handle was closed with [`Process::close`](crate::process::Process::close).
    Closed,
    /// [`Process::close`](crate::process::Process::close) was called while the child was still running.
    StillRunning,
    /// The fork start method was requested in a process with more than one thread.
    ForkRefused {
        /// The number of threads the process had.
        threads: usize,
    },
}

impl ProcessError {
    /// The panic message, if the child panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            ProcessError::Panicked(m) => Some(m),
            _ => None,
        }
    }

    /// The signal that ended the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ProcessError::Signaled(s) => Some(*s),
            _ => None,
        }
    }

    /// Whether this is a `join_timeout` expiry.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProcessError::Timeout)
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Io(e) => write!(f, "process i/o failed: {e}"),
            ProcessError::Encode(m) => write!(f, "could not serialize the arguments: {m}"),
            ProcessError::Panicked(m) => write!(f, "the child panicked: {m}"),
            ProcessError::Failed(m) => f.write_str(m),
            ProcessError::Exited(c) => write!(
                f,
                "the child exited with code {c} before returning a result"
            ),
            ProcessError::Signaled(s) => {
                write!(f, "the child was ended by signal {s} ({})", signal_name(*s))
            }
            ProcessError::Timeout => f.write_str("timed out waiting for the child"),
            ProcessError::AlreadyJoined => {
                f.write_str("the child's result was already taken by an earlier join")
            }
            ProcessError::Closed => f.write_str("the process handle is closed"),
            ProcessError::StillRunning => f.write_str("the child is still running"),
            ProcessError::ForkRefused { threads } => write!(
                f,
                "the fork start method is refused: this process has {threads} threads, and a forked child would inherit locks held by threads that do not exist in it (use spawn or forkserver)"
            ),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ProcessError {
    fn from(e: io::Error) -> Self {
        ProcessError::Io(e)
    }
}
