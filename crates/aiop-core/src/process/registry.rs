//! This process's children: for `active_children()`, for reaping children
//! whose `Process` handle was dropped while they ran, and for closing the
//! parent-side descriptors in a forked child (which is nobody's parent yet).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::ProcessInfo;
use super::reap::{Reaper, pidfd_exited, readable};

/// A child whose handle was dropped while it ran: kept so that its control
/// socket stays open (a daemon child lives as long as its parent) and so that
/// it is reaped once it ends.
pub(super) struct Detached {
    /// Held open for its `Drop`: the child's lifeline.
    pub(super) _ctl: Option<UnixStream>,
    pub(super) reaper: Reaper,
}

struct Entry {
    info: ProcessInfo,
    pidfd: Arc<OwnedFd>,
    /// Descriptors a forked child must close: this entry's control socket,
    /// status socket and pidfd (raw numbers; the owners close them here).
    fds: Vec<RawFd>,
    detached: Option<Detached>,
}

static CHILDREN: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
/// Numbers the children of this process (`Process-1`, `Process-2`, ...).
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn children() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn next_number() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

/// Records a child. `fds` are the parent-side descriptors a forked child
/// must close besides the pidfd (control socket, status socket).
pub(super) fn add(info: ProcessInfo, pidfd: Arc<OwnedFd>, fds: Vec<RawFd>) {
    let mut fds = fds;
    fds.push(pidfd.as_raw_fd());
    children().push(Entry {
        info,
        pidfd,
        fds,
        detached: None,
    });
}

/// The entry of the child behind `pidfd` (pids can be reused; pidfds cannot).
fn find<'a>(list: &'a mut [Entry], pidfd: &Arc<OwnedFd>) -> Option<&'a mut Entry> {
    list.iter_mut().find(|e| Arc::ptr_eq(&e.pidfd, pidfd))
}

/// Replaces the descriptors recorded for a child (some were closed).
pub(super) fn set_fds(pidfd: &Arc<OwnedFd>, fds: Vec<RawFd>) {
    if let Some(e) = find(&mut children(), pidfd) {
        e.fds = fds;
        e.fds.push(pidfd.as_raw_fd());
    }
}

/// Forgets a child whose handle is going away after it ended.
pub(super) fn remove(pidfd: &Arc<OwnedFd>) {
    children().retain(|e| !Arc::ptr_eq(&e.pidfd, pidfd));
}

/// Keeps a still-running child whose handle is being dropped.
pub(super) fn detach(pidfd: &Arc<OwnedFd>, detached: Detached) {
    if let Some(e) = find(&mut children(), pidfd) {
        e.detached = Some(detached);
    }
}

/// Reaps detached children that have ended. Called on every spawn and by
/// `active_children()`, as Python's `multiprocessing` does. Never blocks: a
/// child is reaped only once its status is ready.
pub(super) fn reap_detached() {
    let mut list = children();
    list.retain_mut(|e| match &mut e.detached {
        Some(d) if readable(d.reaper.ready_fd(&e.pidfd)) => {
            // The status is not wanted; reaping is the point.
            !matches!(d.reaper.reap(&e.pidfd), Ok(Some(_)) | Err(_))
        }
        _ => true,
    });
}

/// The children of this process that are still running.
pub(super) fn active() -> Vec<ProcessInfo> {
    reap_detached();
    children()
        .iter()
        .filter(|e| !pidfd_exited(&e.pidfd))
        .map(|e| e.info.clone())
        .collect()
}

/// In a freshly forked child: close every descriptor that belongs to the
/// parent's children and forget them, without running any destructor that
/// could touch the parent's state.
pub(super) fn forget_in_forked_child(extra: &[RawFd]) {
    let mut list = children();
    let entries = std::mem::take(&mut *list);
    drop(list);
    for e in &entries {
        for &fd in &e.fds {
            close_raw(fd);
        }
    }
    // The descriptors are closed already: the owners must never drop.
    std::mem::forget(entries);
    for &fd in extra {
        close_raw(fd);
    }
    COUNTER.store(0, Ordering::Relaxed);
}

fn close_raw(fd: RawFd) {
    crate::sys::proc::close_inherited(fd);
}
