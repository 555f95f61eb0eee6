//! Names for shared objects, so that programs that did not spawn each other
//! can share a lock, an event, a value or a block of memory.
//!
//! Every primitive has `create_named(name, ...)` and `open_named(name)`. The
//! object lives in a POSIX shared-memory file, `/dev/shm/aiop.<name>`, mode
//! 0600, created exclusively (a name in use is an error, never reused).
//!
//! # Lifetime of a name
//!
//! The process that created a name removes it when its last handle to the
//! object is dropped (handles it opened by name count too: one process maps
//! a file once); processes that opened the object keep their mapping
//! (the memory lives on until the last of them drops it) but the name is
//! gone, so nobody new can open it. [`remove`] removes a name at any time.
//!
//! The creator holds a `flock` on the file for as long as it holds the object.
//! A name whose creator died without cleaning up (`kill -9`) is therefore
//! recognisable: `create_named` refuses it with an error that says it is
//! stale, [`stale`] lists such names, and [`remove`] deletes them.
//!
//! # Examples
//!
//! ```
//! use aiop_core::sync::Lock;
//! let name = format!("doc-lock-{}", std::process::id());
//! let lock = Lock::create_named(&name)?;
//! let other = Lock::open_named(&name)?; // as another program would
//! drop(other.lock().unwrap());
//! drop(other);
//! drop(lock); // the creating process's last handle: the name is gone
//! assert_eq!(Lock::open_named(&name).unwrap_err().kind(), std::io::ErrorKind::NotFound);
//! # std::io::Result::Ok(())
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{FlockOperation, Mode};
use rustix::io::Errno;
use rustix::shm::OFlags;

use crate::shm::{Segment, SegmentKey};

/// What every aiop name starts with in `/dev/shm`.
pub const PREFIX: &str = "aiop.";

/// The longest name accepted (the file name is [`PREFIX`] plus the name).
pub const MAX_NAME_LEN: usize = 200;

/// The shared-memory file name of a user's name, after checking it.
fn file_name(name: &str) -> io::Result<String> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid aiop object name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 200 bytes");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or a NUL byte");
    }
    Ok(format!("{PREFIX}{name}"))
}

/// `NotFound` naming the object for `ENOENT`; the error itself otherwise.
fn missing(e: Errno, name: &str) -> io::Error {
    if e == Errno::NOENT {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no aiop object named {name:?}"),
        )
    } else {
        e.into()
    }
}

/// Creates the file for a new named object of `len` bytes and maps it; the
/// caller formats it. The creator's `flock` marks the name as alive.
///
/// # Errors
///
/// `AlreadyExists` when the name is taken (the message says when the
/// holder is gone and the name is stale); `InvalidInput` for a bad name.
pub(crate) fn create(name: &str, len: usize) -> io::Result<Segment> {
    let file = file_name(name)?;
    let fd = match rustix::shm::open(
        file.as_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    ) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => {
            let why = if is_stale(name).unwrap_or(false) {
                format!(
                    "an aiop object named {name:?} already exists and is stale: the process that created it died without removing it; remove it with aiop::named::remove({name:?})"
                )
            } else {
                format!("an aiop object named {name:?} already exists")
            };
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, why));
        }
        Err(e) => return Err(e.into()),
    };
    // Lock before sizing: an empty, unlocked file is a creator that died
    // half-way, an empty locked one a creator at work.
    let made = rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)
        .and_then(|()| rustix::fs::ftruncate(&fd, len as u64))
        .map_err(io::Error::from)
        .and_then(|()| Segment::from_named_fd(fd, Some(&file)));
    if made.is_err() {
        let _ = rustix::shm::unlink(file.as_str());
    }
    made
}

/// Opens and maps the named object's file.
///
/// # Errors
///
/// `NotFound` when no object has that name.
pub(crate) fn open(name: &str) -> io::Result<Segment> {
    let file = file_name(name)?;
    let fd = rustix::shm::open(file.as_str(), OFlags::RDWR, Mode::empty())
        .map_err(|e| missing(e, name))?;
    Segment::from_named_fd(fd, None)
}

/// Removes a name: the object stays usable by every process that has it,
/// but nobody can open it by name any more.
///
/// # Errors
///
/// `NotFound` when no object has that name.
pub fn remove(name: &str) -> io::Result<()> {
    let file = file_name(name)?;
    rustix::shm::unlink(file.as_str()).map_err(|e| missing(e, name))
}

/// Whether the named object's creator is gone without having removed it.
///
/// # Errors
///
/// `NotFound` when no object has that name.
pub fn is_stale(name: &str) -> io::Result<bool> {
    let file = file_name(name)?;
    let fd = rustix::shm::open(file.as_str(), OFlags::RDONLY, Mode::empty())
        .map_err(|e| missing(e, name))?;
    stale_fd(&fd)
}

fn stale_fd(fd: &OwnedFd) -> io::Result<bool> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockShared) {
        // Nobody holds the creator's lock: the creator is gone. Our own lock
        // goes with `fd`.
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names of stale aiop objects: created by processes that died without
/// removing them (see [`is_stale`]). Remove them with [`remove`].
///
/// # Errors
///
/// When `/dev/shm` cannot be read.
pub fn stale() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(name) = file.strip_prefix(PREFIX) else {
            continue;
        };
        if is_stale(name).unwrap_or(false) {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// The (device, inode) the shared-memory file `file` currently names.
pub(crate) fn identity(file: &str) -> io::Result<SegmentKey> {
    let st = rustix::fs::stat(format!("/dev/shm/{file}").as_str())?;
    Ok((st.st_dev, st.st_ino))
}

/// Whether `fd` is an aiop named object's file (which, unlike a memfd,
/// cannot be sealed).
pub(crate) fn is_named_file(fd: &OwnedFd) -> bool {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    std::fs::read_link(link)
        .ok()
        .and_then(|p| p.to_str().map(|s| s.starts_with("/dev/shm/aiop.")))
        .unwrap_or(false)
}
