//! The ForkServer start method.
//!
//! The first ForkServer spawn of a process starts a fork server: a fresh
//! re-executed copy of the program whose only job is to fork. Because it
//! does nothing else, it stays small and single-threaded, so forking it is
//! cheap and safe, whatever threads and state the requesting process has.
//!
//! A request is one frame on the server's control socket carrying two
//! descriptors: the child's end of a new control socketpair, and a status
//! socket. The server forks; the child takes the control socket and reads its
//! `Start` from the requesting process exactly as a Spawn child does (so the
//! requester talks to its child directly, and a daemon child sees the
//! requester's death directly). On the status socket the server answers the
//! child's pid with a pidfd, and, once it has reaped the child, its exit
//! status.
//!
//! The server exits when its control socket reaches end-of-file, that is
//! when the requesting process is gone. It does not kill its children then:
//! daemon children end on their own (their parent's control socket closed),
//! the others run on, as with any start method.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags};

use super::child::{self, Entry};
use super::reap::{self, Exit, wait_pidfd};
use super::wire::{Role, Start};
use super::{ProcessError, registry};
use crate::sys::{fdpass, proc};
use crate::transfer::Outbound;

struct Server {
    /// The process that started this server (a forked child needs its own).
    owner: u32,
    req: UnixStream,
    pidfd: OwnedFd,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The raw descriptor of this process's fork-server socket (for forked children to close).
pub(super) fn server_fds() -> Vec<i32> {
    let guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .as_ref()
        .map(|s| vec![s.req.as_raw_fd(), s.pidfd.as_raw_fd()])
        .unwrap_or_default()
}

/// In a forked child: forget the parent's server without closing anything
/// twice (the descriptors were closed by `registry::forget_in_forked_child`).
pub(super) fn forget_in_forked_child() {
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.take() {
        std::mem::forget(s);
    }
}

/// Asks the fork server (started on first use) for a child that will run on
/// the other end of `ctl_child`.
pub(super) fn request(ctl_child: OwnedFd) -> Result<Pending, ProcessError> {
    let (status_mine, status_theirs) = UnixStream::pair()?;
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id();
    for attempt in 0..2 {
        if guard.as_ref().is_none_or(|s| s.owner != me) {
            if let Some(inherited) = guard.take() {
                // A server inherited through a fork belongs to the parent:
                // its descriptors were closed in this child already.
                std::mem::forget(inherited);
            }
            *guard = Some(start()?);
        }
        let server = guard.as_ref().expect("server started");
        if attempt == 0 && has_ended(&server.pidfd) {
            // Killed from outside. Its request socket may still be open in
            // a child it forked a moment ago (which closes it once it runs),
            // so a request sent there would be accepted and never read:
            // look at the pidfd first, and start another server.
            let old = guard.take().expect("server present");
            let _ = wait_pidfd(&old.pidfd);
            continue;
        }
        match fdpass::send_frame(
            &server.req,
            &[],
            &[ctl_child.as_fd(), status_theirs.as_fd()],
        ) {
            Ok(()) => break,
            // The server died (killed from outside): start another, once.
            Err(e) if attempt == 0 && e.kind() == io::ErrorKind::BrokenPipe => {
                let old = guard.take().expect("server present");
                let _ = wait_pidfd(&old.pidfd);
            }
            Err(e) => return Err(e.into()),
        }
    }
    drop(guard);
    Ok(Pending {
        status: status_mine,
    })
}

/// Whether the process behind `pidfd` has ended (its pidfd is readable).
fn has_ended(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// A fork request on its way: the requester can talk to the child (send its
/// `Start`) before the server has even answered.
#[derive(Debug)]
pub(super) struct Pending {
    status: UnixStream,
}

impl Pending {
    /// Waits for the server's answer: the child's pid, its pidfd, and the
    /// socket that will carry its exit status.
    pub(super) fn started(self) -> Result<(u32, OwnedFd, UnixStream), ProcessError> {
        started(self.status)
    }
}

fn started(status_mine: UnixStream) -> Result<(u32, OwnedFd, UnixStream), ProcessError> {
    let frame = fdpass::recv_frame(&status_mine, 64)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the fork server closed the request without forking",
        )
    })?;
    let pid = match <[u8; 4]>::try_from(frame.payload.as_slice()) {
        Ok(b) => u32::from_le_bytes(b),
        Err(_) => {
            return Err(
                io::Error::new(io::ErrorKind::InvalidData, "malformed fork server reply").into(),
            );
        }
    };
    let pidfd = frame.fds.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "fork server reply without a pidfd",
        )
    })?;
    Ok((pid, pidfd, status_mine))
}

fn start() -> Result<Server, ProcessError> {
    let (_pid, pidfd, req) = super::builder::exec_child()?;
    let mut hello = Start::new(
        &super::current_process(),
        Role::ForkServer,
        "ForkServer".into(),
        Vec::new(),
        false,
    )?;
    hello.stdout_attached = child::test_entry().is_some();
    if let Err(e) = hello.send(&req, &[], &Outbound::default()) {
        // Close our end first: a server still waiting for its start message
        // then reads end-of-file and exits, so the wait cannot hang.
        drop(req);
        let _ = wait_pidfd(&pidfd);
        return Err(e.into());
    }
    Ok(Server {
        owner: std::process::id(),
        req,
        pidfd,
    })
}

/// The fork server's loop. Never returns.
pub(super) fn serve(req: UnixStream) -> ! {
    // (pidfd, status socket) of each living child.
    let mut kids: Vec<(OwnedFd, UnixStream)> = Vec::new();
    loop {
        let (req_ready, done) = {
            let mut fds = Vec::with_capacity(kids.len() + 1);
            fds.push(PollFd::new(&req, PollFlags::IN));
            fds.extend(kids.iter().map(|(p, _)| PollFd::new(p, PollFlags::IN)));
            if reap::poll(&mut fds, None).is_err() {
                proc::exit_now(1);
            }
            let done: Vec<usize> = (1..fds.len())
                .filter(|&i| !fds[i].revents().is_empty())
                .map(|i| i - 1)
                .collect();
            (!fds[0].revents().is_empty(), done)
        };
        for &i in done.iter().rev() {
            let (pidfd, status) = kids.swap_remove(i);
            let exit = wait_pidfd(&pidfd).unwrap_or(Exit::Lost);
            // The requester may be gone; then nobody needs the status.
            let _ = fdpass::send_frame(&status, &[&exit.to_wire()], &[]);
        }
        if !req_ready {
            continue;
        }
        let frame = match fdpass::recv_frame(&req, 0) {
            Ok(Some(f)) => f,
            // The requesting process is gone: so is the server.
            Ok(None) | Err(_) => proc::exit_now(0),
        };
        let mut fds = frame.fds.into_iter();
        let (Some(ctl), Some(status), None) = (fds.next(), fds.next(), fds.next()) else {
            continue;
        };
        let status = UnixStream::from(status);
        match proc::fork_for_server() {
            Ok(proc::Forked::Child) => {
                drop(req);
                drop(status);
                drop(kids);
                registry::forget_in_forked_child(&[]);
                child::run(ctl, Entry::Forked)
            }
            Ok(proc::Forked::Parent(pid)) => {
                drop(ctl);
                let Some(p) = Pid::from_raw(pid) else {
                    continue;
                };
                match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
                    Ok(pidfd) => {
                        let _ = fdpass::send_frame(
                            &status,
                            &[&(pid as u32).to_le_bytes()],
                            &[pidfd.as_fd()],
                        );
                        kids.push((pidfd, status));
                    }
                    Err(_) => drop(status),
                }
            }
            Err(_) => drop(status),
        }
    }
}
