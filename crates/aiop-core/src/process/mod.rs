//! Processes: start a function in a child process, with serde arguments and a
//! typed result, under one of three start methods.
//!
//! ```no_run
//! use aiop_core::process::Process;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), aiop_core::process::ProcessError> {
//!     aiop_core::init(); // a spawned child takes over here
//!     let mut p = Process::spawn(square, 12)?;
//!     assert_eq!(p.join()?, 144);
//!     assert_eq!(p.exitcode(), Some(0));
//!     Ok(())
//! }
//! ```
//!
//! # Start methods
//!
//! * [`StartMethod::SPAWN`] (the default) re-executes the program
//!   (`/proc/self/exe`). The child is recognised by [`init`] at
//!   the top of `main` (or by [`test_support!`](crate::test_support) in test
//!   binaries), which reads the function to run, as an offset from an anchor
//!   function in the same executable, and its arguments from a control
//!   socket that the child received as its stdin.
//! * [`StartMethod::FORK_SERVER`] asks a fork server, a re-executed copy of
//!   the program started once per process, to fork a child. The server is
//!   single-threaded and small, so this is the fast path.
//! * [`StartMethod::fork`] forks the calling process itself. It is an
//!   `unsafe` opt-in, and refused while the process has more than one thread.
//!
//! # Lifetimes
//!
//! A child's control socket is its lifeline: a *daemon* child is killed by
//! the kernel (`SIGKILL`, through `O_ASYNC` on that socket) as soon as its
//! parent's end closes, also when the parent is `SIGKILL`ed. Children are
//! reaped by [`Process::join`], [`Process::is_alive`] and friends once they
//! have ended; a `Process` dropped while its child runs keeps the child's
//! control socket open (so a daemon lives on with its parent) and the child is
//! reaped by a later spawn or [`active_children`], as in Python.
//!
//! # Relationship with Python
//!
//! | Python | aiop |
//! |---|---|
//! | `Process(target=f, args=(x,)).start()` | `Process::spawn(f, x)` |
//! | `Process(name=.., daemon=True)` | `Process::builder().name(..).daemon(true).spawn(f, x)` |
//! | `p.join()`, `p.join(timeout)` | [`Process::join`] (returns `f`'s result), [`Process::join_timeout`] |
//! | `p.exitcode`, `p.is_alive()` | [`Process::exitcode`], [`Process::is_alive`] |
//! | `p.terminate()`, `p.kill()`, `p.close()` | [`Process::terminate`], [`Process::kill`], [`Process::close`] |
//! | `p.sentinel` | [`Process::sentinel`] (a pidfd) |
//! | `set_start_method('forkserver')` | [`set_start_method`]`(StartMethod::FORK_SERVER)` |
//! | `current_process()`, `parent_process()` | [`current_process`], [`parent_process`] |
//! | `active_children()`, `cpu_count()` | [`active_children`], [`cpu_count`] |

mod child;
mod forkserver;
mod reap;
mod registry;
pub(crate) mod wire;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use child::__enable_test_mode;
pub use child::init;

use crate::sys::call;
use crate::sys::fdpass::{self, Frame};
use crate::transfer::{self, Inbound, Outbound};
use reap::{Exit, Reaper};
use wire::{Call, ExeId, Role, Start};

// ---------------------------------------------------------------------------
// Start methods

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Method {
    Spawn,
    ForkServer,
    Fork,
}

/// How a child process is started. See the [module docs](self#start-methods).
///
/// `SPAWN` and `FORK_SERVER` are constants; the fork method is only
/// available through the `unsafe` [`StartMethod::fork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StartMethod(Method);

impl StartMethod {
    /// Re-execute the program (the default).
    pub const SPAWN: StartMethod = StartMethod(Method::Spawn);
    /// Fork from a small single-threaded fork server started on first use.
    pub const FORK_SERVER: StartMethod = StartMethod(Method::ForkServer);

    /// Fork the calling process.
    ///
    /// Spawning with this method is refused ([`ProcessError::ForkRefused`])
    /// while the process has more than one thread.
    ///
    /// # Safety
    ///
    /// The child is a copy of the parent's memory with only the calling
    /// thread. The caller asserts that nothing the child function uses
    /// depends on state that a copy breaks: an async runtime or thread pool
    /// started in the parent (its threads do not exist in the child),
    /// descriptors whose peer counts on a single reader, random generators
    /// that must not repeat. Prefer `SPAWN` or `FORK_SERVER`.
    #[allow(unsafe_code)] // an unsafe marker only: the body does nothing unsafe
    pub const unsafe fn fork() -> StartMethod {
        StartMethod(Method::Fork)
    }

    /// Python's name for the method: `"spawn"`, `"forkserver"` or `"fork"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Method::Spawn => "spawn",
            Method::ForkServer => "forkserver",
            Method::Fork => "fork",
        }
    }
}

impl Default for StartMethod {
    fn default() -> Self {
        StartMethod::SPAWN
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`StartMethod`] from a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseStartMethodError {
    name: String,
}

impl fmt::Display for ParseStartMethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == "fork" {
            write!(
                f,
                "the fork start method is an unsafe opt-in: use `unsafe {{ StartMethod::fork() }}`"
            )
        } else {
            write!(
                f,
                "unknown start method {:?} (expected \"spawn\" or \"forkserver\")",
                self.name
            )
        }
    }
}

impl std::error::Error for ParseStartMethodError {}

impl FromStr for StartMethod {
    type Err = ParseStartMethodError;

    /// Parses `"spawn"` or `"forkserver"`. `"fork"` is refused: it needs
    /// the `unsafe` [`StartMethod::fork`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(StartMethod::SPAWN),
            "forkserver" => Ok(StartMethod::FORK_SERVER),
            _ => Err(ParseStartMethodError {
                name: s.to_string(),
            }),
        }
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method used by spawns that do not choose one.
pub fn set_start_method(method: StartMethod) {
    let v = match method.0 {
        Method::Spawn => 0,
        Method::ForkServer => 1,
        Method::Fork => 2,
    };
    DEFAULT_METHOD.store(v, Ordering::Relaxed);
}

/// The start method used by spawns that do not choose one.
pub fn start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::FORK_SERVER,
        2 => StartMethod(Method::Fork),
        _ => StartMethod::SPAWN,
    }
}

// ---------------------------------------------------------------------------
// Errors

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
    /// [`init`] first thing in `main` (a test crate: when it lacks
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
    /// The handle was closed with [`Process::close`].
    Closed,
    /// [`Process::close`] was called while the child was still running.
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

// ---------------------------------------------------------------------------
// Process identity

/// Who a process is: its name, pid, daemon flag and identity (its position in
/// the tree of processes started by aiop, as Python's `_identity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
    ident: Vec<u32>,
}

impl ProcessInfo {
    fn new(name: String, pid: u32, daemon: bool, ident: Vec<u32>) -> ProcessInfo {
        ProcessInfo {
            name,
            pid,
            daemon,
            ident,
        }
    }

    /// The process's name (`MainProcess`, `Process-1`, `Process-1:2`, or a chosen one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is a daemon (ends when its parent ends).
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The position in the process tree: empty for the main process, `[1]`
    /// for its first child, `[1, 2]` for that child's second child.
    pub fn ident(&self) -> &[u32] {
        &self.ident
    }
}

struct Identity {
    me: ProcessInfo,
    parent: Option<ProcessInfo>,
}

static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);

fn set_identity(me: ProcessInfo, parent: ProcessInfo) {
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Identity {
        me,
        parent: Some(parent),
    });
}

/// The current process.
pub fn current_process() -> ProcessInfo {
    let guard = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    let mut me = guard
        .as_ref()
        .map(|i| i.me.clone())
        .unwrap_or_else(|| ProcessInfo::new("MainProcess".into(), 0, false, Vec::new()));
    me.pid = std::process::id();
    me
}

/// The process that started this one, or `None` in the main process.
pub fn parent_process() -> Option<ProcessInfo> {
    IDENTITY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|i| i.parent.clone())
}

/// The children of this process that are still running; reaps those that
/// ended after their `Process` handle was dropped.
pub fn active_children() -> Vec<ProcessInfo> {
    registry::active()
}

/// The number of CPUs this process may run on (`sched_getaffinity` and cgroup
/// quotas considered), at least 1.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------
// Starting

type InitEncoder = Arc<dyn Fn(&mut Vec<u8>, &mut Outbound) -> io::Result<()> + Send + Sync>;

#[derive(Clone)]
struct Initializer {
    /// (trampoline, function), or why the function cannot be called in a child.
    offsets: Result<(i64, i64), String>,
    encode: InitEncoder,
}

/// Options for starting a process: name, daemon flag, start method and an
/// initializer.
///
/// ```no_run
/// use aiop_core::process::{Process, StartMethod};
///
/// fn setup(level: u8) { /* configure logging in the child */ }
/// fn work(n: u32) -> u32 { n + 1 }
///
/// let mut p = Process::builder()
///     .name("worker")
///     .daemon(true)
///     .start_method(StartMethod::FORK_SERVER)
///     .initializer(setup, 3)
///     .spawn(work, 41)?;
/// assert_eq!(p.join()?, 42);
/// # Ok::<(), aiop_core::process::ProcessError>(())
/// ```
#[derive(Clone, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    init: Option<Initializer>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .field("initializer", &self.init.is_some())
            .finish()
    }
}

impl Builder {
    /// Default options: a generated name, not a daemon, the global start method.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the child (default: `Process-N`, numbered per parent).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Makes the child a daemon: it is killed as soon as its parent ends,
    /// however the parent ends.
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Chooses the start method for this child (default: [`start_method()`]).
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in the child before the main function. If it panics,
    /// the main function does not run and `join` reports the panic.
    pub fn initializer<I>(mut self, f: fn(I), args: I) -> Builder
    where
        I: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let offsets = call::offsets(f);
        let args = Arc::new(args);
        self.init = Some(Initializer {
            offsets,
            encode: Arc::new(move |buf, out| transfer::encode(&*args, buf, out)),
        });
        self
    }

    /// Starts `f(args)` in a new process.
    ///
    /// `f` is a function or a closure that captures nothing; its arguments
    /// and result cross the process boundary with serde (postcard), and
    /// aiop handles among them take their descriptors along.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Encode`] when the arguments do not serialize (nothing
    /// is started), [`ProcessError::ForkRefused`] for the fork method in a
    /// multi-threaded process, [`ProcessError::Io`] when the system refuses,
    /// and [`ProcessError::Failed`] when this process is itself a spawned
    /// child that skipped [`init`].
    pub fn spawn<A, R>(&self, f: fn(A) -> R, args: A) -> Result<Process<R>, ProcessError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        registry::reap_detached();
        if child::skipped_init() {
            return Err(ProcessError::Failed(
                "this process was started by aiop but never called aiop::init() (call it first thing in main, or use aiop::test_support!() in tests); refusing to spawn".into(),
            ));
        }
        let method = self.method.unwrap_or_else(start_method);
        if method.0 == Method::Fork {
            // Refuse before anything is encoded or started.
            fork_allowed()?;
        }
        // Check and encode everything first: a failure here starts nothing.
        let (trampoline, function) = call::offsets(f).map_err(ProcessError::Failed)?;
        let mut out = Outbound::default();
        let mut init_args = Vec::new();
        let init = match &self.init {
            Some(i) => {
                let (trampoline, function) = i
                    .offsets
                    .clone()
                    .map_err(|m| ProcessError::Failed(format!("initializer: {m}")))?;
                (i.encode)(&mut init_args, &mut out)
                    .map_err(|e| ProcessError::Encode(format!("initializer: {e}")))?;
                Some(Call {
                    trampoline,
                    function,
                    args_len: init_args.len() as u64,
                })
            }
            None => None,
        };
        let mut call_args = Vec::new();
        transfer::encode(&args, &mut call_args, &mut out)
            .map_err(|e| ProcessError::Encode(e.to_string()))?;
        drop(args);
        let call = Call {
            trampoline,
            function,
            args_len: call_args.len() as u64,
        };

        let me = current_process();
        let mut ident = me.ident.clone();
        ident.push(registry::next_number());
        let name = self.name.clone().unwrap_or_else(|| {
            let parts: Vec<String> = ident.iter().map(u32::to_string).collect();
            format!("Process-{}", parts.join(":"))
        });

        let mut args = init_args;
        args.extend_from_slice(&call_args);
        drop(call_args);
        let mut start = Start::new(Role::Call, name.clone(), ident.clone(), self.daemon)?;
        start.init = init;
        start.call = Some(call);
        start.stdout_attached = method == StartMethod::SPAWN && child::test_entry().is_some();
        start
            .check_fits(&args, &out)
            .map_err(|e| ProcessError::Encode(e.to_string()))?;

        let (ctl, launch) = match method.0 {
            Method::Spawn => {
                let (pid, pidfd, ctl) = exec_child()?;
                (ctl, Launch::Ready(pid, pidfd))
            }
            Method::ForkServer => {
                let (ctl, theirs) = UnixStream::pair()?;
                (
                    ctl,
                    Launch::Forking(forkserver::request(OwnedFd::from(theirs))?),
                )
            }
            Method::Fork => {
                let (pid, pidfd, ctl) = fork_child()?;
                (ctl, Launch::Ready(pid, pidfd))
            }
        };
        // Sent before the fork server has answered: the child reads it when born.
        start.refs = out.refs();
        let sent = start.send(&ctl, &args, &out);
        if sent.is_ok() {
            // The counts the arguments carry now belong to the child.
            out.delivered();
        } else {
            drop(out);
        }
        let (pid, pidfd, reaper) = match launch {
            Launch::Ready(pid, pidfd) => (pid, pidfd, Reaper::Direct),
            Launch::Forking(pending) => {
                let (pid, pidfd, status) = pending.started()?;
                (pid, pidfd, Reaper::Server(status))
            }
        };
        let mut process = Process {
            info: ProcessInfo::new(name, pid, self.daemon, ident),
            method,
            pidfd: Arc::new(pidfd),
            ctl: Some(ctl),
            state: Mutex::new(State {
                reaper,
                reply: None,
                exit: None,
            }),
            taken: false,
            closed: false,
            _result: PhantomData,
        };
        let fds = process.parent_fds();
        registry::add(process.info.clone(), process.pidfd.clone(), fds);
        if let Err(e) = sent {
            // The child cannot have its start message: make sure it sees the
            // end of it (it exits), then report how it ended if it said why.
            if let Some(ctl) = &process.ctl {
                let _ = ctl.shutdown(std::net::Shutdown::Write);
            }
            return match process.wait(None).and_then(|()| process.result()) {
                Err(failed @ ProcessError::Failed(_)) => Err(failed),
                _ => Err(ProcessError::Io(e)),
            };
        }
        Ok(process)
    }
}

/// A child being started: ready, or being forked by the fork server.
enum Launch {
    Ready(u32, OwnedFd),
    Forking(forkserver::Pending),
}

impl Start {
    /// A start message from this process, for a child with these traits.
    fn new(role: Role, name: String, ident: Vec<u32>, daemon: bool) -> io::Result<Start> {
        let me = current_process();
        Ok(Start {
            protocol: wire::PROTOCOL,
            exe: ExeId::current()?,
            role,
            name,
            ident,
            daemon,
            parent_pid: me.pid,
            parent_name: me.name,
            parent_ident: me.ident,
            init: None,
            call: None,
            stdout_attached: false,
            refs: Vec::new(),
        })
    }

    /// Checks, before anything is started, that the message can be framed:
    /// its size and its number of descriptors are within the limits.
    fn check_fits(&self, args: &[u8], out: &Outbound) -> io::Result<()> {
        let n = out.fds().len();
        if n > fdpass::MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the arguments hold {n} descriptors; a message carries at most {}",
                    fdpass::MAX_FDS
                ),
            ));
        }
        let limit = wire::MAX_FRAME - 4096;
        if args.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the arguments take {} bytes, over the limit of {limit} (put large data in shared memory)",
                    args.len()
                ),
            ));
        }
        Ok(())
    }

    /// Sends this message: the header, then `args` (the initializer's and
    /// the function's arguments, back to back) with `out`'s descriptors,
    /// then, if `stdout_attached`, a frame carrying this process's stdout.
    fn send(&self, ctl: &UnixStream, args: &[u8], out: &Outbound) -> io::Result<()> {
        let header = postcard::to_allocvec(self)
            .map_err(|e| io::Error::other(format!("start header: {e}")))?;
        fdpass::send_frame(ctl, &[&header, args], &out.fds())?;
        if self.stdout_attached {
            // In a frame of its own, so that arguments keep every descriptor place.
            fdpass::send_frame(ctl, &[], &[std::io::stdout().as_fd()])?;
        }
        Ok(())
    }
}

/// Re-executes this program as a child; returns its pid, pidfd and our end
/// of its control socket (which the child receives as its stdin).
fn exec_child() -> io::Result<(u32, OwnedFd, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let test_entry = child::test_entry();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    if let Some(entry) = &test_entry {
        cmd.args([
            entry.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        // The harness prints a banner before its entry runs: send it to
        // /dev/null; `send_start` hands the child the real stdout.
        cmd.stdout(Stdio::null());
    }
    cmd.env(child::ENV_CHILD, "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    let mut spawned = cmd.spawn()?;
    drop(cmd);
    let pid = spawned.id();
    match open_pidfd(pid) {
        // Not waited through `Child` from here on: the pidfd reaps it.
        Ok(pidfd) => Ok((pid, pidfd, ours)),
        Err(e) => {
            let _ = spawned.kill();
            let _ = spawned.wait();
            Err(e)
        }
    }
}

fn open_pidfd(pid: u32) -> io::Result<OwnedFd> {
    let p = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("invalid child pid"))?;
    // Race-free: the child is ours (or the fork server's) and not yet reaped,
    // so its pid cannot have been reused.
    Ok(rustix::process::pidfd_open(p, PidfdFlags::empty())?)
}

/// The fork start method: fork this process, after checking it has one thread.
/// Refuses the fork method unless this process has exactly one thread.
fn fork_allowed() -> Result<(), ProcessError> {
    match crate::sys::proc::thread_count()? {
        1 => Ok(()),
        threads => Err(ProcessError::ForkRefused { threads }),
    }
}

fn fork_child() -> Result<(u32, OwnedFd, UnixStream), ProcessError> {
    use crate::sys::proc::{ForkError, Forked};
    let (ours, theirs) = UnixStream::pair()?;
    // Whatever sits in our stdout buffer would be written twice otherwise.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // Descriptors of this process's other children and of its own parent
    // line, which the forked child must not keep open.
    let mut extra = forkserver::server_fds();
    extra.extend(child::own_ctl());
    extra.push(ours.as_raw_fd());
    match crate::sys::proc::fork_single_threaded() {
        Err(ForkError::Threads(threads)) => Err(ProcessError::ForkRefused { threads }),
        Err(ForkError::Io(e)) => Err(e.into()),
        Ok(Forked::Child) => {
            registry::forget_in_forked_child(&extra);
            forkserver::forget_in_forked_child();
            std::mem::forget(ours);
            child::run(OwnedFd::from(theirs), child::Entry::Forked)
        }
        Ok(Forked::Parent(pid)) => {
            drop(theirs);
            match open_pidfd(pid as u32) {
                Ok(pidfd) => Ok((pid as u32, pidfd, ours)),
                Err(e) => {
                    // The child reads end-of-file instead of a start message
                    // and exits; reap it.
                    drop(ours);
                    crate::sys::proc::wait_pid(pid);
                    Err(e.into())
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The handle

enum Reply {
    /// A result, still encoded; its `Inbound` gives back the counts of any
    /// slot in it if nobody decodes it.
    Returned(Vec<u8>, Inbound),
    Panicked(String),
    Failed(String),
    Missing,
}

impl Reply {
    fn parse(frame: Frame) -> Reply {
        match wire::split_reply(&frame.payload) {
            Some((wire::REPLY_OK, refs, body)) => {
                Reply::Returned(body.to_vec(), Inbound::new(frame.fds, refs))
            }
            Some((wire::REPLY_PANIC, _, msg)) => {
                Reply::Panicked(String::from_utf8_lossy(msg).into_owned())
            }
            Some((wire::REPLY_FAILED, _, msg)) => {
                Reply::Failed(String::from_utf8_lossy(msg).into_owned())
            }
            _ => Reply::Failed("the child sent a malformed reply".into()),
        }
    }
}

/// What is known of a child's end: its reply and its exit status.
struct State {
    reaper: Reaper,
    reply: Option<Reply>,
    exit: Option<Exit>,
}

impl State {
    /// Reads the reply frame, if a complete one is there; blocking only while
    /// the child lives (it writes its whole reply before exiting).
    fn read_reply(&mut self, ctl: Option<&UnixStream>, blocking: bool) {
        if self.reply.is_some() {
            return;
        }
        let Some(ctl) = ctl else {
            self.reply = Some(Reply::Missing);
            return;
        };
        let read = if blocking {
            fdpass::recv_frame
        } else {
            fdpass::try_recv_frame
        };
        self.reply = Some(match read(ctl, wire::MAX_FRAME) {
            Ok(Some(frame)) => Reply::parse(frame),
            // End of stream, a cut-off reply, or garbage (an oversized one,
            // say): no result. Stop reading for good, so that a child still
            // writing gets EPIPE instead of blocking forever.
            Ok(None) | Err(_) => {
                let _ = ctl.shutdown(std::net::Shutdown::Read);
                Reply::Missing
            }
        });
    }

    /// Reaps a child whose status is ready, then reads what it wrote.
    fn collect_exit(&mut self, pidfd: &OwnedFd, ctl: Option<&UnixStream>) {
        if self.exit.is_some() {
            return;
        }
        self.exit = match self.reaper.reap(pidfd) {
            Ok(None) => return,
            Ok(Some(exit)) => Some(exit),
            Err(_) => Some(Exit::Lost),
        };
        // Every byte the child wrote is in our socket buffer now.
        self.read_reply(ctl, false);
    }
}

/// A child process running a function whose result is an `R`.
///
/// Created by [`Process::spawn`] or [`Builder::spawn`]. See the
/// [module docs](self) for start methods and lifetimes.
pub struct Process<R = ()> {
    info: ProcessInfo,
    method: StartMethod,
    pidfd: Arc<OwnedFd>,
    ctl: Option<UnixStream>,
    state: Mutex<State>,
    taken: bool,
    closed: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.info.name)
            .field("pid", &self.info.pid)
            .field("daemon", &self.info.daemon)
            .field("method", &self.method)
            .field(
                "exit",
                &self.state.lock().unwrap_or_else(|e| e.into_inner()).exit,
            )
            .finish()
    }
}

impl Process<()> {
    /// Options for a new process.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Starts `f(args)` in a new process with default options.
    ///
    /// See [`Builder::spawn`].
    pub fn spawn<A>(f: fn(A) -> R, args: A) -> Result<Process<R>, ProcessError>
    where
        A: Serialize + DeserializeOwned,
    {
        Builder::new().spawn(f, args)
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// The child's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.info.daemon
    }

    /// The start method the child was started with.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// The child's identity as [`ProcessInfo`].
    pub fn info(&self) -> &ProcessInfo {
        &self.info
    }

    /// A descriptor (a pidfd) that becomes readable when the child ends, for
    /// `poll`, `epoll` or `connection::wait` (Python's `sentinel`).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the child is still running (reaps it if it has ended).
    pub fn is_alive(&self) -> bool {
        let mut st = self.lock();
        if st.exit.is_none() && reap::readable(st.reaper.ready_fd(&self.pidfd)) {
            st.collect_exit(&self.pidfd, self.ctl.as_ref());
        }
        st.exit.is_none()
    }

    /// How the child ended, once it has (reaping it if needed).
    fn exit(&self) -> Option<Exit> {
        self.is_alive();
        self.lock().exit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Python's `exitcode`: `None` while running, the exit code once exited,
    /// or minus the signal number if a signal ended it.
    pub fn exitcode(&self) -> Option<i32> {
        match self.exit()? {
            Exit::Code(c) => Some(c),
            Exit::Signal(s) => Some(-s),
            Exit::Lost => None,
        }
    }

    /// The exit status as `std` reports it, once the child has ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self.exit()? {
            Exit::Code(c) => Some(ExitStatus::from_raw((c & 0xff) << 8)),
            Exit::Signal(s) => Some(ExitStatus::from_raw(s & 0x7f)),
            Exit::Lost => None,
        }
    }

    /// Waits for the child to end and returns its function's result.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Panicked`] with the panic message, [`ProcessError::Signaled`]
    /// if a signal ended the child, [`ProcessError::Exited`] if it exited
    /// without a result, [`ProcessError::Failed`] if it could not run the
    /// function, [`ProcessError::AlreadyJoined`] on a second join.
    pub fn join(&mut self) -> Result<R, ProcessError> {
        self.usable()?;
        self.wait(None)?;
        self.result()
    }

    /// [`join`](Self::join), giving up after `timeout` with
    /// [`ProcessError::Timeout`]; the child can then be joined again.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        self.usable()?;
        self.wait(Instant::now().checked_add(timeout))?;
        self.result()
    }

    /// Sends `SIGTERM` (Python's `terminate`). Does nothing if the child has ended.
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM)
    }

    /// Sends `SIGKILL` (Python's `kill`). Does nothing if the child has ended.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }

    fn signal(&self, sig: Signal) -> io::Result<()> {
        match rustix::process::pidfd_send_signal(&*self.pidfd, sig) {
            // Already ended (and reaped): as in Python, nothing to do.
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases the handle's resources; an error while the child is running.
    /// Afterwards `join` reports [`ProcessError::Closed`].
    pub fn close(&mut self) -> Result<(), ProcessError> {
        if self.closed {
            return Ok(());
        }
        if self.is_alive() {
            return Err(ProcessError::StillRunning);
        }
        self.ctl = None;
        self.state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .reply = None;
        self.closed = true;
        // The pidfd (and any status socket) stay open until the handle is
        // dropped, so the registry keeps them for forked children to close.
        let fds = self.parent_fds();
        registry::set_fds(&self.pidfd, fds);
        Ok(())
    }

    /// The parent-side descriptors of this child that a forked child must
    /// close (besides the pidfd): the control socket and any status socket.
    fn parent_fds(&mut self) -> Vec<std::os::fd::RawFd> {
        let mut fds: Vec<_> = self.ctl.iter().map(|c| c.as_raw_fd()).collect();
        match &self
            .state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .reaper
        {
            Reaper::Server(s) | Reaper::Orphan(s) => fds.push(s.as_raw_fd()),
            Reaper::Direct => {}
        }
        fds
    }

    fn usable(&self) -> Result<(), ProcessError> {
        if self.closed {
            Err(ProcessError::Closed)
        } else if self.taken {
            Err(ProcessError::AlreadyJoined)
        } else {
            Ok(())
        }
    }

    /// Waits until the child has ended and its reply (if any) is read.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<(), ProcessError> {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        while st.exit.is_none() {
            let want_reply = st.reply.is_none() && self.ctl.is_some();
            let (ctl_ready, exited) = {
                let mut fds = vec![PollFd::from_borrowed_fd(
                    st.reaper.ready_fd(&self.pidfd),
                    PollFlags::IN,
                )];
                if want_reply {
                    fds.push(PollFd::new(
                        self.ctl.as_ref().expect("checked"),
                        PollFlags::IN,
                    ));
                }
                if reap::poll(&mut fds, deadline)? == 0 {
                    return Err(ProcessError::Timeout);
                }
                (
                    fds.get(1).is_some_and(|p| !p.revents().is_empty()),
                    !fds[0].revents().is_empty(),
                )
            };
            if ctl_ready {
                st.read_reply(self.ctl.as_ref(), true);
            }
            if exited {
                st.collect_exit(&self.pidfd, self.ctl.as_ref());
            }
        }
        Ok(())
    }

    /// Turns the reply and exit status into the result (once).
    fn result(&mut self) -> Result<R, ProcessError> {
        self.taken = true;
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        match st.reply.take() {
            Some(Reply::Returned(body, inbound)) => {
                transfer::decode::<R>(&body, inbound).0.map_err(|e| {
                    ProcessError::Failed(format!("could not decode the child's result: {e}"))
                })
            }
            Some(Reply::Panicked(m)) => Err(ProcessError::Panicked(m)),
            Some(Reply::Failed(m)) => Err(ProcessError::Failed(m)),
            _ => match st.exit {
                Some(Exit::Signal(s)) => Err(ProcessError::Signaled(s)),
                Some(Exit::Code(c)) => Err(ProcessError::Exited(c)),
                _ => Err(ProcessError::Failed(
                    "the child ended, and its exit status was lost with the fork server".into(),
                )),
            },
        }
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.exit.is_none() && !reap::pidfd_exited(&self.pidfd) {
            // Still running: keep its line open (a daemon lives as long as
            // its parent) and reap it later. Nobody will read its reply, so
            // let a large one fail instead of blocking the child forever
            // (this does not raise a daemon's hang-up signal).
            if let Some(ctl) = &self.ctl {
                let _ = ctl.shutdown(std::net::Shutdown::Read);
            }
            let reaper = std::mem::replace(&mut st.reaper, Reaper::Direct);
            registry::detach(
                &self.pidfd,
                registry::Detached {
                    _ctl: self.ctl.take(),
                    reaper,
                },
            );
            return;
        }
        // Reaps it if needed, and reads a result nobody joined, so that the
        // slot counts it carries are given back when `st` goes.
        st.collect_exit(&self.pidfd, self.ctl.as_ref());
        registry::remove(&self.pidfd);
    }
}
