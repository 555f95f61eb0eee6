//! Shared-memory segments: anonymous memfds mapped `MAP_SHARED`.
//!
//! A [`Segment`] has no name in any file system, so it cannot leak into
//! `/dev/shm`: the kernel frees it with the last descriptor and the last
//! mapping, also after `kill -9`. It reaches another process only with its
//! descriptor: in the arguments or result of a spawned process (see
//! [`crate::transfer`]) and, later, through connections.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::mem::{self, Mapping};
use crate::transfer;

/// (device, inode): what makes two descriptors the same segment.
pub(crate) type SegmentKey = (u64, u64);

/// Every segment this process has mapped, so that a segment that comes back
/// (a child returns a handle the parent sent it) reuses the first mapping.
static MAPPED: Mutex<Option<HashMap<SegmentKey, Weak<Inner>>>> = Mutex::new(None);

struct Inner {
    key: SegmentKey,
    // Field order matters: the mapping goes before the descriptor closes
    // (either order is sound; this one keeps the file alive to the end).
    map: Mapping,
    fd: OwnedFd,
    /// Set in the process that created a named segment: its name goes away
    /// with this mapping.
    owned_name: Option<OwnedName>,
}

/// The name of a named segment, owned by the process that created it.
struct OwnedName {
    name: String,
    pid: u32,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(owned) = &self.owned_name {
            // Not in a forked copy of the creator; and only if the name
            // still means this file (someone may have removed it and made
            // another).
            if owned.pid == std::process::id()
                && crate::named::identity(&owned.name).is_ok_and(|k| k == self.key)
            {
                let _ = rustix::shm::unlink(owned.name.as_str());
            }
        }
        let mut reg = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = reg.as_mut() {
            // Remove our entry unless a newer mapping of the same file took it.
            if map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&self.key);
            }
        }
    }
}

/// A shared-memory segment: a memfd mapped shared and read-write.
///
/// Cloning is cheap (a reference count); the mapping lives while any clone
/// does. The memory is zero-filled when created, its size is fixed (the file
/// is sealed against growing and shrinking), and it is freed by the kernel
/// when every process has dropped it.
///
/// A `Segment` is `Serialize + Deserialize`, but only inside a transfer that
/// carries its descriptor along (a [`Process`](crate::process::Process)'s
/// arguments or result); serializing it anywhere else is an error.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::Ordering;
/// let seg = aiop_core::shm::Segment::new(4096)?;
/// seg.atomic_u32(0).store(7, Ordering::Relaxed);
/// assert_eq!(seg.clone().atomic_u32(0).load(Ordering::Relaxed), 7);
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.len())
            .field("inode", &self.inner.key.1)
            .finish()
    }
}

impl Segment {
    /// Creates a zero-filled segment of `len` bytes.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero length; the kernel's error when the memfd
    /// cannot be created, sized or mapped (`ENOMEM`, `EMFILE`).
    pub fn new(len: usize) -> io::Result<Segment> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a segment cannot be empty",
            ));
        }
        let fd = mem::memfd(len)?;
        Self::from_fd(fd)
    }

    /// Maps a segment from a descriptor received from another process.
    ///
    /// If this process already maps the same file, the existing mapping is
    /// shared and `fd` is closed.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Segment> {
        let (key, len) = mem::file_identity(&fd)?;
        let mut reg = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
        let reg = reg.get_or_insert_with(HashMap::new);
        if let Some(inner) = reg.get(&key).and_then(Weak::upgrade) {
            return Ok(Segment { inner });
        }
        if let Err(e) = mem::check_sealed(&fd) {
            // Named segments (shm_open) cannot be sealed; they are as
            // exposed as their name is, to the same user (mode 0600).
            if !crate::named::is_named_file(&fd) {
                return Err(e);
            }
        }
        let map = Mapping::map(&fd, len)?;
        let inner = Arc::new(Inner {
            key,
            map,
            fd,
            owned_name: None,
        });
        reg.insert(key, Arc::downgrade(&inner));
        Ok(Segment { inner })
    }

    /// Maps a named segment that this process just created (`owned`) or
    /// opened; the caller holds the `MAPPED` registry's identity rules.
    pub(crate) fn from_named_fd(fd: OwnedFd, owned: Option<&str>) -> io::Result<Segment> {
        let (key, len) = mem::file_identity(&fd)?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an aiop object: the shared memory is empty",
            ));
        }
        let mut reg = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
        let reg = reg.get_or_insert_with(HashMap::new);
        if owned.is_none() {
            if let Some(inner) = reg.get(&key).and_then(Weak::upgrade) {
                return Ok(Segment { inner });
            }
        }
        let map = Mapping::map(&fd, len)?;
        let inner = Arc::new(Inner {
            key,
            map,
            fd,
            owned_name: owned.map(|name| OwnedName {
                name: name.to_owned(),
                pid: std::process::id(),
            }),
        });
        reg.insert(key, Arc::downgrade(&inner));
        Ok(Segment { inner })
    }

    /// The size of the segment in bytes.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The address of the first byte in this process.
    ///
    /// Reading or writing through it is `unsafe`: other processes may access
    /// the same bytes at any time, so the caller needs its own protocol
    /// (atomics, or a lock held by every writer).
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.map.as_ptr()
    }

    /// The 32-bit atomic word at byte `offset`, shared with every process
    /// that maps this segment (also usable as a futex word).
    ///
    /// # Panics
    ///
    /// If `offset` is not a multiple of 4 or the word lies outside the segment.
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.inner.map.atomic_u32(offset)
    }

    /// The 64-bit atomic word at byte `offset`.
    ///
    /// # Panics
    ///
    /// If `offset` is not a multiple of 8 or the word lies outside the segment.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.inner.map.atomic_u64(offset)
    }

    /// Whether both handles refer to the same segment.
    pub fn same_as(&self, other: &Segment) -> bool {
        self.inner.key == other.inner.key
    }

    pub(crate) fn key(&self) -> SegmentKey {
        self.inner.key
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = transfer::push_segment(self).map_err(serde::ser::Error::custom)?;
        serializer.serialize_u32(index)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Segment, D::Error> {
        let index = u32::deserialize(deserializer)?;
        transfer::segment_at(index).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::MemfdFlags;

    #[test]
    fn an_unsealed_descriptor_is_refused() {
        // What a buggy or hostile peer could send: a memfd it may still truncate.
        let fd = rustix::fs::memfd_create("not-aiop", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        let err = Segment::from_fd(fd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A descriptor that is no memfd at all.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = Segment::from_fd(OwnedFd::from(a)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_segment_received_twice_shares_one_mapping() {
        let seg = Segment::new(8192).unwrap();
        let dup = seg.inner.fd.try_clone().unwrap();
        let again = Segment::from_fd(dup).unwrap();
        assert_eq!(again.as_ptr(), seg.as_ptr());
        assert!(again.same_as(&seg));
    }
}
