//! `SharedMemory`: a block of bytes in shared memory, named or anonymous.
//!
//! The bytes are the payload at the start of an object segment; the
//! object's header slot (at the segment's tail) records the size the user
//! asked for:
//!
//! ```text
//! word64 6 (words 12, 13)  size in bytes (the payload is rounded up to pages)
//! words 14, 15             kind header (`object`)
//! ```
//!
//! This module also holds the copy routines that `ShareableList` uses: every
//! byte is copied through an 8-byte `AtomicU64` of the segment, so copies
//! never race in Rust's sense, and no two copies ever touch the same memory
//! with atomics of different sizes.
//!
//! # Safety
//!
//! The only `unsafe` here is [`SharedMemory::as_slice`] and
//! [`SharedMemory::as_mut_slice`], which make a slice of the payload: the
//! payload starts at offset 0 of the segment (page aligned, never null) and
//! spans at least `size` bytes before the arena (the segment was created for
//! it, and an opened or received one is checked against the header), it is
//! always initialized (shared memory is zero-filled, and any byte is a valid
//! `u8`), and it stays mapped while the handle, which owns the segment,
//! lives. Whether other accesses overlap the slice's lifetime is the
//! caller's promise, stated in each function's `# Safety` section.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arena::Slot;
use crate::named;
use crate::object::{self, Kind};
use crate::shm::Segment;

/// `word64` 6 of the header slot (words 12 and 13): the size in bytes.
const SIZE: usize = 6;

/// A block of shared memory, named or anonymous: Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// The bytes are zero-filled when created and their [`size`](Self::size)
/// is fixed. [`read_at`](Self::read_at) and [`write_at`](Self::write_at)
/// copy bytes in and out safely, whatever other processes do at the same
/// time (concurrent writes to the same bytes may interleave, as with any
/// memory without a lock; use a [`Lock`](crate::sync::Lock) when that
/// matters); [`as_slice`](Self::as_slice) and
/// [`as_mut_slice`](Self::as_mut_slice) give zero-copy access under a
/// protocol of the caller's.
///
/// A handle is cheap to clone, and travels to a spawned process in its
/// arguments (with its name, if it has one). An anonymous block lives until
/// the last handle in every process is gone; a named one can also be opened
/// by programs that did not spawn each other (see [`crate::named`]).
///
/// # Closing and unlinking
///
/// Python's `close()` is dropping the handle: the memory stays mapped while
/// any clone in this process lives. Python's `unlink()` is
/// [`unlink`](Self::unlink). A named block's name is also removed when the
/// process that created it drops its last handle (the job of Python's
/// resource tracker); a name left behind by a creator that was killed is
/// reported by [`named::is_stale`] and removed by [`named::remove`].
///
/// # Examples
///
/// ```
/// use aiop_core::shared::SharedMemory;
///
/// let shm = SharedMemory::new(100)?;
/// shm.write_at(10, b"hello")?;
/// let mut buf = [0u8; 5];
/// shm.read_at(10, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert_eq!(shm.size(), 100);
/// // Out of range is an error, never a panic.
/// assert!(shm.write_at(98, b"xyz").is_err());
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    slot: Slot,
    size: usize,
    name: Option<Arc<str>>,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size)
            .finish()
    }
}

impl SharedMemory {
    /// Creates an anonymous block of `size` zeroed bytes.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `size` is 0 (Python's `ValueError`) or too large;
    /// the kernel's error when the memory cannot be allocated.
    pub fn new(size: usize) -> io::Result<SharedMemory> {
        Self::create(None, size)
    }

    /// Creates a block of `size` zeroed bytes that other programs can open
    /// by `name` (Python's `SharedMemory(name, create=True, size=size)`).
    ///
    /// The name is removed by [`unlink`](Self::unlink), or when this
    /// process drops its last handle.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `size` is 0 or the name is invalid;
    /// `AlreadyExists` when the name is taken (also by a stale object, which
    /// the message says).
    pub fn create_named(name: &str, size: usize) -> io::Result<SharedMemory> {
        Self::create(Some(name), size)
    }

    /// Opens a block another program created by name (Python's
    /// `SharedMemory(name)`).
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name; `InvalidData` when the
    /// object is not a `SharedMemory` (or its header is damaged).
    pub fn open_named(name: &str) -> io::Result<SharedMemory> {
        let slot = object::open_named(name, Kind::SharedMemory)?;
        Self::from_slot(slot, Some(name.into()))
    }

    fn create(name: Option<&str>, size: usize) -> io::Result<SharedMemory> {
        if size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a SharedMemory must have a positive size",
            ));
        }
        let slot = object::new_with_payload(size, name)?;
        slot.word64(SIZE).store(size as u64, Ordering::Relaxed);
        // Release inside: whoever sees the header sees the size.
        object::stamp(&slot, Kind::SharedMemory);
        Ok(SharedMemory {
            slot,
            size,
            name: name.map(Arc::from),
        })
    }

    /// Checks a received or opened object's header.
    fn from_slot(slot: Slot, name: Option<Arc<str>>) -> io::Result<SharedMemory> {
        object::check(&slot, Kind::SharedMemory)?;
        let size = slot.word64(SIZE).load(Ordering::Relaxed);
        match usize::try_from(size) {
            Ok(size) if size > 0 && size <= object::payload_len(&slot) => {
                Ok(SharedMemory { slot, size, name })
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a valid SharedMemory: its size {size} does not fit its memory"),
            )),
        }
    }

    /// The name given at creation or opening, `None` when anonymous.
    ///
    /// This is the user's name, not the file in `/dev/shm` (which is
    /// [`named::PREFIX`] followed by the name).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The size in bytes, as given at creation.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Removes the name, as Python's `unlink()`: the memory stays usable by
    /// every process that has a handle, but nobody can open it by name any
    /// more. Anonymous memory has no name, and unlinking it does nothing
    /// (it is freed when the last handle is gone, which is what unlinking
    /// arranges for a named block).
    ///
    /// # Errors
    ///
    /// `NotFound` when the name was removed already, or now belongs to
    /// another object (which is left alone).
    pub fn unlink(&self) -> io::Result<()> {
        unlink(self.name(), self.slot.segment())
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// Each byte is read atomically: a copy concurrent with a write to the
    /// same bytes may see some old and some new bytes, never undefined
    /// behaviour.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `offset..offset + buf.len()` passes
    /// [`size`](Self::size); nothing is read then.
    #[doc(alias = "buf")]
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.check_range(offset, buf.len())?;
        load(self.slot.segment(), offset, buf);
        Ok(())
    }

    /// Copies `buf` into the bytes starting at `offset`.
    ///
    /// Each byte is written atomically (see [`read_at`](Self::read_at)).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `offset..offset + buf.len()` passes
    /// [`size`](Self::size); nothing is written then.
    pub fn write_at(&self, offset: usize, buf: &[u8]) -> io::Result<()> {
        self.check_range(offset, buf.len())?;
        store(self.slot.segment(), offset, buf);
        Ok(())
    }

    fn check_range(&self, offset: usize, len: usize) -> io::Result<()> {
        if offset.checked_add(len).is_some_and(|end| end <= self.size) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "bytes {offset}..{} are out of range for a SharedMemory of {} bytes",
                    offset.saturating_add(len),
                    self.size
                ),
            ))
        }
    }

    /// The address of the first byte in this process (page aligned; valid
    /// for [`size`](Self::size) bytes while this handle lives).
    ///
    /// Reading or writing through it is `unsafe`, under the rules of
    /// [`as_slice`](Self::as_slice) and [`as_mut_slice`](Self::as_mut_slice).
    pub fn as_ptr(&self) -> *mut u8 {
        self.slot.segment().as_ptr()
    }

    /// The bytes, borrowed in place (Python's `buf`, read-only).
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, nothing may write to the bytes: not
    /// this process (through [`write_at`](Self::write_at),
    /// [`as_mut_slice`](Self::as_mut_slice) or [`as_ptr`](Self::as_ptr) of
    /// any handle to this memory) and not any other process. Other readers
    /// (`read_at`, other `as_slice` slices, in any process) are fine. Other
    /// processes are outside the compiler's view, so this takes a protocol
    /// that every writer follows: a [`Lock`](crate::sync::Lock) held while
    /// the slice lives and by every writer, or a phase of the program in
    /// which nobody writes (after a [`Barrier`](crate::sync::Barrier), say).
    #[doc(alias = "buf")]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the pointer is page aligned, non-null and valid for
        // `size` initialized bytes while `self` (which owns the mapping)
        // lives (module Safety); the caller promises no writes during the
        // borrow, in this process or any other.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size) }
    }

    /// The bytes, borrowed in place and mutably (Python's `buf`).
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, it must be the only access to the
    /// bytes: nothing else may read or write them, through any handle
    /// (`read_at`, `write_at`, another slice, [`as_ptr`](Self::as_ptr)),
    /// in this process or any other. As for
    /// [`as_slice`](Self::as_slice), that takes a protocol every process
    /// follows, such as a [`Lock`](crate::sync::Lock) that every access
    /// holds.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as in `as_slice` for the pointer; the caller promises that
        // this slice is the only access for its whole lifetime, which is
        // what a `&mut` needs.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size) }
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.slot, self.name()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedMemory, D::Error> {
        let (slot, name) = <(Slot, Option<String>)>::deserialize(deserializer)?;
        SharedMemory::from_slot(slot, name.map(Arc::from)).map_err(serde::de::Error::custom)
    }
}

/// Removes `name` if it still names `seg` (nothing for an anonymous object).
pub(super) fn unlink(name: Option<&str>, seg: &Segment) -> io::Result<()> {
    let Some(name) = name else {
        return Ok(());
    };
    let gone = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot unlink the aiop object named {name:?}: {why}"),
        ))
    };
    match named::identity(&format!("{}{name}", named::PREFIX)) {
        Ok(key) if key == seg.key() => named::remove(name),
        Ok(_) => gone("the name now belongs to another object"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => gone("the name was removed already"),
        Err(e) => Err(e),
    }
}

/// The 8-aligned word that holds byte `at`, and where `at` sits in it.
fn word_of(at: usize) -> (usize, usize) {
    (at & !7, at & 7)
}

/// Copies `out.len()` bytes at `offset` of `seg` into `out`, through the
/// aligned `AtomicU64`s that hold them.
///
/// # Panics
///
/// If a word that holds the range lies outside `seg` (callers check their
/// ranges against payloads, which are whole pages, so never).
pub(super) fn load(seg: &Segment, offset: usize, out: &mut [u8]) {
    let mut done = 0;
    while done < out.len() {
        let (word, skip) = word_of(offset + done);
        let n = (8 - skip).min(out.len() - done);
        // Relaxed per word, with the Acquire fence below: a copy that reads
        // a word written by a `store` after its Release fence sees what
        // that store's caller wrote before it.
        let bytes = seg.atomic_u64(word).load(Ordering::Relaxed).to_ne_bytes();
        out[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
        done += n;
    }
    fence(Ordering::Acquire);
}

/// Copies `src` into the bytes at `offset` of `seg`: whole words are
/// stored, partial ones updated by compare-and-swap, so bytes next to the
/// range (which another process may be writing) are left as they are.
///
/// # Panics
///
/// As [`load`].
pub(super) fn store(seg: &Segment, offset: usize, src: &[u8]) {
    // Release: pairs with the Acquire fence of a `load` that sees our bytes.
    fence(Ordering::Release);
    let mut done = 0;
    while done < src.len() {
        let (word, skip) = word_of(offset + done);
        let n = (8 - skip).min(src.len() - done);
        let part = &src[done..done + n];
        let w = seg.atomic_u64(word);
        if n == 8 {
            let v = u64::from_ne_bytes(part.try_into().expect("eight bytes"));
            w.store(v, Ordering::Relaxed);
        } else {
            // Relaxed: ordering comes from the fence; the exchange only
            // keeps the other bytes of the word intact.
            let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let mut bytes = old.to_ne_bytes();
                bytes[skip..skip + n].copy_from_slice(part);
                Some(u64::from_ne_bytes(bytes))
            });
        }
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_at_every_alignment_match_a_plain_buffer() {
        let seg = Segment::new(4096).unwrap();
        let mut model = vec![0u8; 64];
        let mut fill = 1u8;
        for offset in 0..24 {
            for len in 0..=24 {
                let src: Vec<u8> = (0..len)
                    .map(|_| {
                        fill = fill.wrapping_mul(31).wrapping_add(7);
                        fill
                    })
                    .collect();
                store(&seg, offset, &src);
                model[offset..offset + len].copy_from_slice(&src);
                let mut all = vec![0u8; 64];
                load(&seg, 0, &mut all);
                assert_eq!(all, model, "after storing {len} bytes at {offset}");
                let mut part = vec![0u8; len];
                load(&seg, offset, &mut part);
                assert_eq!(part, src);
            }
        }
    }

    #[test]
    fn zero_size_is_refused() {
        let err = SharedMemory::new(0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_size_that_does_not_fit_its_memory_is_invalid_data() {
        let shm = SharedMemory::new(10).unwrap();
        let slot = shm.slot.clone();
        assert_eq!(
            SharedMemory::from_slot(slot.clone(), None).unwrap().size(),
            10
        );
        for bad in [0, 4097, u64::MAX] {
            slot.word64(SIZE).store(bad, Ordering::Relaxed);
            let err = SharedMemory::from_slot(slot.clone(), None).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad}: {err}");
        }
    }
}
