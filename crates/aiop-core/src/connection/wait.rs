//! [`wait`]: block until one of several connections, sockets or process
//! sentinels is ready.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;

use super::{Connection, Listener};
use crate::process::Process;

/// Something [`wait`] can wait on: it is ready when its descriptor is
/// readable (a message or end of stream on a connection, a pending
/// connection on a listener, the end of a process) or when it already holds
/// something that needs no waiting.
pub trait Waitable {
    /// The descriptor whose readability means "ready".
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Whether it is ready without looking at the descriptor (a
    /// [`Connection`] holding a message kept by `recv_bytes_into`).
    fn ready_now(&self) -> bool {
        false
    }
}

impl Waitable for Connection {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn ready_now(&self) -> bool {
        self.has_pending()
    }
}

/// Ready when a client is waiting to be accepted.
impl Waitable for Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Ready when the process has ended (its [`sentinel`](Process::sentinel)).
impl<R: serde::de::DeserializeOwned> Waitable for Process<R> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
    }
}

macro_rules! waitable_fd {
    ($($t:ty),*) => {$(
        impl Waitable for $t {
            fn wait_fd(&self) -> BorrowedFd<'_> {
                self.as_fd()
            }
        }
    )*};
}

waitable_fd!(
    BorrowedFd<'_>,
    OwnedFd,
    UnixStream,
    UnixListener,
    TcpStream,
    TcpListener
);

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit), and returns the indexes of the ready ones, in order;
/// empty on timeout. Python's `multiprocessing.connection.wait`, with
/// indexes in place of the objects.
///
/// A connection is ready when a message or its end of stream can be
/// received; a process (or its [`sentinel`](Process::sentinel), a pidfd)
/// when it has ended; a listener when a client is waiting.
///
/// # Errors
///
/// The error of `poll(2)`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aiop_core::connection::{pipe, wait};
///
/// let (a1, b1) = pipe(true)?;
/// let (a2, b2) = pipe(true)?;
/// assert!(wait(&[&b1, &b2], Some(Duration::ZERO))?.is_empty());
/// a2.send(&1u8)?;
/// assert_eq!(wait(&[&b1, &b2], None)?, [1]);
/// # drop((a1, b1));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let ready: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].ready_now())
        .collect();
    let deadline = match ready.is_empty() {
        true => timeout.map(deadline_after),
        // Something is ready: just look at the others.
        false => Some(Instant::now()),
    };
    let mut fds: Vec<PollFd<'_>> = objects
        .iter()
        .map(|o| PollFd::from_borrowed_fd(o.wait_fd(), PollFlags::IN))
        .collect();
    poll_until(&mut fds, deadline)?;
    Ok((0..objects.len())
        .filter(|&i| ready.contains(&i) || !fds[i].revents().is_empty())
        .collect())
}

/// `now + timeout`, or far in the future when that overflows.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// `poll(2)` until something is ready or `deadline` passes (`None`: no
/// limit), retrying `EINTR`; returns how many entries are ready.
pub(crate) fn poll_until(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: left.subsec_nanos() as i64,
            }
        });
        match poll(fds, ts.as_ref()) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `fd` is readable (or at end of stream, or in error) by `deadline`.
pub(crate) fn readable_by(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    Ok(poll_until(&mut fds, deadline)? > 0)
}

/// Whether `fd` is writable (or in error) by `deadline` (`None`: no limit).
pub(crate) fn writable_by(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
    Ok(poll_until(&mut fds, deadline)? > 0)
}
