//! Async processes: spawn a function in a child process and await its
//! result on any executor.
//!
//! Spawning does not wait for another party, so it stays synchronous
//! ([`Process::spawn`], or the core [`Builder`] and [`Process::from`]);
//! joining is async ([`Process::join`]). Everything else is the core's
//! [`aiop_core::process`], re-exported here so this module is complete.
//!
//! # Relationship with Python (aioprocessing)
//!
//! | Python / aioprocessing | aiop |
//! |---|---|
//! | `AioProcess(target=f, args=(x,)).start()` | [`Process::spawn`]`(f, x)` |
//! | `p.coro_join()` | [`Process::join`]`().await` (returns `f`'s result) |
//! | `p.join()` | [`Process::join_blocking`] |
//! | `p.join(timeout)` | [`Process::join_timeout`]`(d).await` |
//! | `p.is_alive()`, `p.exitcode`, `p.pid`, `p.name`, `p.daemon` | [`Process::is_alive`], [`Process::exitcode`], [`Process::pid`], [`Process::name`], [`Process::daemon`] |
//! | `p.terminate()`, `p.kill()`, `p.close()`, `p.sentinel` | [`Process::terminate`], [`Process::kill`], [`Process::close`], [`Process::sentinel`] |
//!
//! # Implementation
//!
//! [`Process`] wraps the core [`Process`](aiop_core::process::Process). An
//! async join calls the core's non-blocking
//! [`try_join`](aiop_core::process::Process::try_join), which reads what has
//! arrived of the child's reply into the process handle (not the future)
//! and reaps the child once it has ended. Between calls it awaits, through
//! async-io's reactor, the readability of the child's pidfd (or the fork
//! server's status socket) and of the control socket while the reply is
//! still coming, so a result larger than the socket buffer flows while the
//! child runs. Those two descriptors are duplicated and registered on the
//! first join, and closed when the join completes or the handle is closed
//! or dropped.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::process::ExitStatus;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::future;
use serde::Serialize;
use serde::de::DeserializeOwned;

use aiop_core::process as core;
pub use aiop_core::process::{
    Builder, ParseStartMethodError, ProcessError, ProcessInfo, StartMethod, active_children,
    cpu_count, current_process, init, parent_process, set_start_method, start_method,
};

/// A child process running `fn(A) -> R`, whose result is awaited with
/// [`join`](Process::join): aioprocessing's `AioProcess`.
///
/// # Examples
///
/// ```no_run
/// use aiop_async::process::Process;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> Result<(), aiop_async::process::ProcessError> {
///     aiop_async::process::init(); // a spawned child takes over here
///     let mut p = Process::spawn(square, 12)?;
///     let n = futures_lite::future::block_on(p.join())?;
///     assert_eq!(n, 144);
///     Ok(())
/// }
/// ```
pub struct Process<R = ()> {
    inner: core::Process<R>,
    /// The registered duplicates of the exit descriptor and (while the
    /// reply is awaited) the control socket.
    exit_fd: Option<Async<OwnedFd>>,
    ctl_fd: Option<Async<OwnedFd>>,
}

impl<R: Serialize + DeserializeOwned> Process<R> {
    /// Starts `f(args)` in a child process with the default start method
    /// (see the core's [`spawn`](aiop_core::process::Process::spawn)).
    ///
    /// # Errors
    ///
    /// As the core's `spawn`.
    pub fn spawn<A>(f: fn(A) -> R, args: A) -> Result<Process<R>, ProcessError>
    where
        A: Serialize + DeserializeOwned,
    {
        core::Process::spawn(f, args).map(Process::from)
    }
}

impl Process<()> {
    /// A [`Builder`] for name, daemon flag and start method; turn what it
    /// spawns into this type with [`Process::from`].
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<R> From<core::Process<R>> for Process<R> {
    fn from(inner: core::Process<R>) -> Process<R> {
        Process {
            inner,
            exit_fd: None,
            ctl_fd: None,
        }
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// The core process, borrowed.
    pub fn get_ref(&self) -> &core::Process<R> {
        &self.inner
    }

    /// The core process (a partial reply read so far stays in it).
    pub fn into_core(self) -> core::Process<R> {
        self.inner
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.inner.daemon()
    }

    /// The start method it was started with.
    pub fn start_method(&self) -> StartMethod {
        self.inner.start_method()
    }

    /// Its name, pid and daemon flag.
    pub fn info(&self) -> &ProcessInfo {
        self.inner.info()
    }

    /// A pidfd readable once the child has ended (Python's `sentinel`).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.inner.sentinel()
    }

    /// Whether the child is still running (reaps it if it has ended).
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// The exit code: `None` while running, negative for a signal.
    pub fn exitcode(&self) -> Option<i32> {
        self.inner.exitcode()
    }

    /// The exit status, once ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.exit_status()
    }

    /// Sends `SIGTERM`.
    ///
    /// # Errors
    ///
    /// The error of `pidfd_send_signal(2)` (none once the child has ended).
    pub fn terminate(&self) -> io::Result<()> {
        self.inner.terminate()
    }

    /// Sends `SIGKILL`.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Process::terminate).
    pub fn kill(&self) -> io::Result<()> {
        self.inner.kill()
    }

    /// Releases the handle's resources once the child has ended (Python's `close`).
    ///
    /// # Errors
    ///
    /// [`ProcessError::StillRunning`] while the child runs.
    pub fn close(&mut self) -> Result<(), ProcessError> {
        self.exit_fd = None;
        self.ctl_fd = None;
        self.inner.close()
    }

    /// Waits for the child to end and returns its result (aioprocessing's
    /// `coro_join`).
    ///
    /// While the child runs, its reply is read as it arrives, so a large
    /// result never blocks the child (nor the executor).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing. The child keeps
    /// running, the part of its reply that has arrived stays in this
    /// handle, and a later `join` (async or blocking) returns the result.
    ///
    /// # Errors
    ///
    /// As the core's [`join`](aiop_core::process::Process::join): the
    /// child's panic, exit code or signal, [`ProcessError::AlreadyJoined`],
    /// [`ProcessError::Closed`], or the reactor's error as
    /// [`ProcessError::Io`].
    #[doc(alias = "coro_join")]
    pub async fn join(&mut self) -> Result<R, ProcessError> {
        loop {
            if let Some(r) = self.inner.try_join()? {
                self.exit_fd = None;
                self.ctl_fd = None;
                return Ok(r);
            }
            self.register()?;
            let (exit, ctl) = (&self.exit_fd, &self.ctl_fd);
            future::poll_fn(|cx| {
                if let Some(e) = exit {
                    if let Poll::Ready(r) = e.poll_readable(cx) {
                        return Poll::Ready(r);
                    }
                }
                if let Some(c) = ctl {
                    if let Poll::Ready(r) = c.poll_readable(cx) {
                        return Poll::Ready(r);
                    }
                }
                Poll::Pending
            })
            .await?;
        }
    }

    /// Registers duplicates of the descriptors `try_join` progresses on.
    fn register(&mut self) -> io::Result<()> {
        let (exit, ctl) = self.inner.join_fds();
        let ctl = ctl.map(|c| c.try_clone_to_owned()).transpose()?;
        if self.exit_fd.is_none() {
            self.exit_fd = Some(Async::new_nonblocking(exit.try_clone_to_owned()?)?);
        }
        match ctl {
            None => self.ctl_fd = None,
            Some(c) if self.ctl_fd.is_none() => self.ctl_fd = Some(Async::new_nonblocking(c)?),
            Some(_) => {}
        }
        Ok(())
    }

    /// [`join`](Process::join) that gives up with [`ProcessError::Timeout`]
    /// after `timeout` (the child keeps running; join again later).
    ///
    /// # Cancel safety
    ///
    /// As [`join`](Process::join).
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join), and [`ProcessError::Timeout`].
    pub async fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.join_deadline(d).await,
            None => self.join().await,
        }
    }

    /// [`join_timeout`](Process::join_timeout) with a deadline.
    ///
    /// # Cancel safety
    ///
    /// As [`join`](Process::join).
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Process::join_timeout).
    pub async fn join_deadline(&mut self, deadline: Instant) -> Result<R, ProcessError> {
        future::or(self.join(), async {
            Timer::at(deadline).await;
            Err(ProcessError::Timeout)
        })
        .await
    }

    /// [`join`](Process::join) without waiting: `Ok(None)` while the child runs.
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join).
    pub fn try_join(&mut self) -> Result<Option<R>, ProcessError> {
        self.inner.try_join()
    }

    /// Waits for the child, blocking the thread, and returns its result.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread until the child ends: do not call it from
    /// async code.
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join).
    #[doc(alias = "join")]
    pub fn join_blocking(&mut self) -> Result<R, ProcessError> {
        self.exit_fd = None;
        self.ctl_fd = None;
        self.inner.join()
    }

    /// [`join_timeout`](Process::join_timeout), blocking the thread.
    ///
    /// # Blocking
    ///
    /// Blocks the calling thread up to `timeout`: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Process::join_timeout).
    pub fn join_timeout_blocking(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        self.inner.join_timeout(timeout)
    }
}

impl<R: DeserializeOwned> aiop_core::connection::Waitable for Process<R> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
    }
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Process").field(&self.inner).finish()
    }
}
