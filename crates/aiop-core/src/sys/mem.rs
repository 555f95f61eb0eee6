//! memfd segments: create, size, map, unmap.
//!
//! # Safety
//!
//! This module owns the only `mmap` / `munmap` calls of the crate. A
//! [`Mapping`] is created from a file descriptor and a length that was read
//! from the descriptor itself (`fstat`) or that the descriptor was just sized
//! to; it unmaps exactly that range in `Drop`, and nothing else unmaps it.
//! Segments are sealed against shrinking (`F_SEAL_SHRINK`), so no process can
//! truncate the file under another process's mapping and turn an access into
//! `SIGBUS`. Memory handed out of a mapping is only ever accessed through
//! atomics or through raw pointers whose users document their own protocol.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// Bytes of private memory mapped after every segment (see [`Mapping::map`]).
pub(crate) const SHADOW_LEN: usize = 64 * 1024;

/// A shared, read-write mapping of a whole memfd (or any shared-memory file).
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range of `MAP_SHARED` memory. It has no
// thread affinity; every access to its contents goes through atomics or
// through raw-pointer APIs whose callers take responsibility for races, exactly
// as if the memory were shared with another process (which it is).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out the base pointer and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared and read-write, followed by
    /// [`SHADOW_LEN`] bytes of private anonymous memory (the shadow).
    ///
    /// The shadow gives every word of the last `SHADOW_LEN` bytes of the
    /// segment a process-private twin at a fixed distance, which is where
    /// the robust-futex list keeps its nodes (see `sys::robust`): the
    /// kernel finds a lock word from its node by one constant offset.
    pub(crate) fn map(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty segment",
            ));
        }
        let total = len
            .checked_add(SHADOW_LEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        // SAFETY: a null hint lets the kernel choose a fresh range, so no
        // existing mapping of this process is replaced. mmap(2): "The address
        // of the new mapping is returned as the result".
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        // SAFETY: `base..base+len` lies inside the private range reserved
        // just above, which belongs to this `Mapping` alone; MAP_FIXED
        // replaces exactly that part of it with the file. The descriptor is
        // borrowed for the call.
        let mapped = unsafe {
            rustix::mm::mmap(
                base,
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                fd.as_fd(),
                0,
            )
        };
        if let Err(e) = mapped {
            // SAFETY: the reservation above is ours and nothing refers to it.
            let _ = unsafe { rustix::mm::munmap(base, total) };
            return Err(e.into());
        }
        let ptr = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len+SHADOW_LEN` is exactly the range `map`
        // obtained, it is unmapped only here, and every borrow of memory
        // inside it is tied to the lifetime of the owner of this `Mapping`
        // (robust-list nodes in the shadow are unlinked before their lock
        // handles, which keep this mapping alive, are dropped).
        let r = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len + SHADOW_LEN) };
        debug_assert!(r.is_ok(), "munmap failed: {r:?}");
    }
}

/// Creates an anonymous memfd of `len` bytes, sealed against resizing.
///
/// The descriptor is `CLOEXEC`; the memory is zero-filled and freed when the
/// last descriptor and the last mapping of it are gone.
pub(crate) fn memfd(len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("aiop", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// The identity of the file behind `fd`: (device, inode) and its size.
pub(crate) fn file_identity(fd: &OwnedFd) -> io::Result<((u64, u64), usize)> {
    let st = rustix::fs::fstat(fd)?;
    let size = usize::try_from(st.st_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative file size"))?;
    Ok(((st.st_dev, st.st_ino), size))
}

impl Mapping {
    /// The 32-bit atomic at byte `offset` of the mapping.
    ///
    /// # Panics
    ///
    /// If `offset` is not 4-aligned or the word does not fit in the mapping.
    pub(crate) fn atomic_u32(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(
            offset % 4 == 0 && offset.checked_add(4).is_some_and(|end| end <= self.len),
            "u32 word at offset {offset} is misaligned or outside a segment of {} bytes",
            self.len
        );
        // SAFETY: the word lies inside the live mapping (checked above) and is
        // 4-aligned (the mapping is page-aligned and `offset` is a multiple of
        // 4). `AtomicU32` has the size and alignment of `u32` and permits
        // concurrent access from any thread or process. The reference cannot
        // outlive `self`, which keeps the range mapped.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .wrapping_add(offset)
                .cast::<std::sync::atomic::AtomicU32>()
        }
    }

    /// The 64-bit atomic at byte `offset` of the mapping.
    ///
    /// # Panics
    ///
    /// If `offset` is not 8-aligned or the word does not fit in the mapping.
    pub(crate) fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(
            offset % 8 == 0 && offset.checked_add(8).is_some_and(|end| end <= self.len),
            "u64 word at offset {offset} is misaligned or outside a segment of {} bytes",
            self.len
        );
        // SAFETY: as in `atomic_u32`, for an 8-aligned in-bounds word.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .wrapping_add(offset)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }
}

/// Checks that a received segment cannot change size under our mapping: a
/// peer that could truncate it would turn our accesses into `SIGBUS`.
pub(crate) fn check_sealed(fd: &OwnedFd) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("received a descriptor that is not a sealed memfd: {e}"),
        )
    })?;
    if seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "received a segment that is not sealed against resizing",
        ))
    }
}
