//! Waiting for a child to end and collecting its exit status.
//!
//! Every child has a pidfd: it becomes readable when the child ends, and
//! signals sent through it can never reach a recycled pid. A child of this
//! process (Spawn, Fork) is reaped with `waitid(P_PIDFD)`. A child of the
//! fork server is the server's to reap; the server sends its status on a
//! per-child status socket.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{WaitId, WaitIdOptions};

use crate::sys::fdpass;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ended, but the fork server that could tell how is gone.
    Lost,
}

impl Exit {
    pub(crate) fn to_wire(self) -> [u8; 5] {
        let (k, v) = match self {
            Exit::Code(c) => (0u8, c),
            Exit::Signal(s) => (1, s),
            Exit::Lost => (2, 0),
        };
        let mut b = [k, 0, 0, 0, 0];
        b[1..].copy_from_slice(&v.to_le_bytes());
        b
    }

    fn from_wire(b: &[u8]) -> Exit {
        match b {
            [0, v @ ..] if v.len() == 4 => Exit::Code(i32::from_le_bytes(v.try_into().expect("4"))),
            [1, v @ ..] if v.len() == 4 => {
                Exit::Signal(i32::from_le_bytes(v.try_into().expect("4")))
            }
            _ => Exit::Lost,
        }
    }
}

/// Who collects the exit status.
#[derive(Debug)]
pub(crate) enum Reaper {
    /// This process is the parent.
    Direct,
    /// The fork server is the parent and reports on this socket.
    Server(UnixStream),
    /// The fork server went away before reporting: only the pidfd is left.
    /// (The dead server's socket is kept open until the handle goes, so that
    /// the descriptor numbers the registry recorded stay valid.)
    Orphan(UnixStream),
}

impl Reaper {
    /// The descriptor that becomes readable when the status can be collected:
    /// the fork server's status socket, or the pidfd.
    pub(crate) fn ready_fd<'a>(&'a self, pidfd: &'a OwnedFd) -> BorrowedFd<'a> {
        match self {
            Reaper::Server(sock) => sock.as_fd(),
            Reaper::Direct | Reaper::Orphan(_) => pidfd.as_fd(),
        }
    }

    /// Collects the exit status once [`ready_fd`](Self::ready_fd) is readable;
    /// `None` if the child turns out to be still running (its fork server
    /// died, so the pidfd is watched from now on).
    pub(crate) fn reap(&mut self, pidfd: &OwnedFd) -> io::Result<Option<Exit>> {
        match self {
            Reaper::Direct => wait_pidfd(pidfd).map(Some),
            Reaper::Orphan(_) => Ok(pidfd_exited(pidfd).then_some(Exit::Lost)),
            Reaper::Server(sock) => match fdpass::recv_frame(sock, 64) {
                Ok(Some(f)) => Ok(Some(Exit::from_wire(&f.payload))),
                Ok(None) | Err(_) => {
                    let Reaper::Server(sock) = std::mem::replace(self, Reaper::Direct) else {
                        unreachable!("matched Server above")
                    };
                    *self = Reaper::Orphan(sock);
                    Ok(pidfd_exited(pidfd).then_some(Exit::Lost))
                }
            },
        }
    }
}

/// Whether `fd` is readable now.
pub(crate) fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut p = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    matches!(poll(&mut p, Some(Instant::now())), Ok(n) if n > 0)
}

/// `waitid(P_PIDFD, WEXITED)` on a child of this process.
pub(crate) fn wait_pidfd(pidfd: &OwnedFd) -> io::Result<Exit> {
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                return Ok(if let Some(sig) = st.terminating_signal() {
                    Exit::Signal(sig)
                } else {
                    Exit::Code(st.exit_status().unwrap_or(0))
                });
            }
            Ok(None) => continue,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the process behind `pidfd` has ended (without waiting).
pub(crate) fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    readable(pidfd.as_fd())
}

/// `poll(2)` until `deadline` (`None`: forever), retrying `EINTR`.
/// Returns the number of ready descriptors; 0 means the deadline passed.
pub(crate) fn poll(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match rustix::event::poll(fds, ts.as_ref()) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
