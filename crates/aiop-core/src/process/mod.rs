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
mod builder;
mod child;
pub(crate) use child::same_image;
mod error;
mod exit;
mod forkserver;
mod info;
mod reap;
mod registry;
mod start_method;
pub(crate) mod wire;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::Signal;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::Builder;
#[doc(hidden)]
pub use child::__enable_test_mode;
pub use child::init;
pub use error::ProcessError;
pub use exit::at_exit;
pub use info::{ProcessInfo, active_children, cpu_count, current_process, parent_process};
pub use start_method::{ParseStartMethodError, StartMethod, set_start_method, start_method};

use crate::sys::fdpass::{self, Frame};
use crate::transfer::{self, Inbound};
use reap::{Exit, Reaper};

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
    /// The part of the reply that has arrived (kept across gave-up waits).
    partial: fdpass::PartialFrame,
    exit: Option<Exit>,
}

impl State {
    /// Reads the reply frame, if a complete one is there; blocking only while
    /// the child lives (it writes its whole reply before exiting).
    /// Reads what has arrived of the reply, without waiting; a reply not
    /// complete yet is kept in `partial`, unless `exited` (then it never
    /// will be).
    fn read_reply(&mut self, ctl: Option<&UnixStream>, exited: bool) {
        if self.reply.is_some() {
            return;
        }
        let Some(ctl) = ctl else {
            self.reply = Some(Reply::Missing);
            return;
        };
        self.reply = Some(match self.partial.read(ctl.as_fd(), wire::MAX_FRAME) {
            Ok(Some(frame)) => Reply::parse(frame),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !exited => return,
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
        self.read_reply(ctl, true);
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
                st.read_reply(self.ctl.as_ref(), false);
            }
            if exited {
                st.collect_exit(&self.pidfd, self.ctl.as_ref());
            }
        }
        Ok(())
    }

    /// [`join`](Process::join) without waiting: reads what has arrived of
    /// the child's reply (keeping a partial one in this handle) and, if the
    /// child has ended, returns its result. `Ok(None)`: still running.
    ///
    /// An async join calls this whenever one of [`join_fds`](Process::join_fds)
    /// is readable, so a result larger than the socket buffer flows while
    /// the child runs, and a wait that is given up loses nothing.
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join).
    pub fn try_join(&mut self) -> Result<Option<R>, ProcessError> {
        self.usable()?;
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.exit.is_none() {
            st.read_reply(self.ctl.as_ref(), false);
            if reap::readable(st.reaper.ready_fd(&self.pidfd)) {
                st.collect_exit(&self.pidfd, self.ctl.as_ref());
            }
        }
        if st.exit.is_none() {
            return Ok(None);
        }
        self.result().map(Some)
    }

    /// The descriptors whose readability means that
    /// [`try_join`](Process::try_join) can make progress: the one that
    /// becomes readable when the child ends (its pidfd, or the fork
    /// server's status socket for it), and the control socket while the
    /// child's reply is awaited. For registering with an event loop; do not
    /// read from them.
    pub fn join_fds(&mut self) -> (BorrowedFd<'_>, Option<BorrowedFd<'_>>) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let ctl = match st.reply {
            None => self.ctl.as_ref().map(|c| c.as_fd()),
            Some(_) => None,
        };
        (st.reaper.ready_fd(&self.pidfd), ctl)
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
