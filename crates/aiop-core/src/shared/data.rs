//! The typed payload of a `Value` or an `Array`: `len` plain-data `T`s at
//! the start of an object segment.
//!
//! # Safety
//!
//! The payload lives at offset 0 of the object's segment, which is page
//! aligned (so aligned for any `T` whose alignment is at most 4096, checked
//! at creation) and at least `len * size_of::<T>()` bytes long (the segment
//! was created for it, and a received or opened one is checked against the
//! header, which records the element size, alignment and count). `T: Pod`
//! makes every bit pattern a valid `T`, so bytes written by any process
//! read back as a valid value.
//!
//! Two kinds of access exist:
//!
//! * Unlocked copies ([`Data::load`], [`Data::store`]) go byte by byte
//!   through `AtomicU8`: concurrent writers may tear a value, as in Python's
//!   `RawValue`, but no access is a data race in Rust's model.
//! * References ([`Data::slice_locked`], [`Data::slice_locked_mut`]) are
//!   handed out only against a guard of the object's own lock, and a locked
//!   payload is never accessed any other way (the header records whether a
//!   payload is raw or locked, and the two kinds never open each other).
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

use bytemuck::Pod;

use crate::arena::Slot;
use crate::object::{self, Kind};
use crate::sync::LockGuard;

/// Header words (in the object's slot) that describe the payload.
const ELEM_SIZE: usize = 10;
const ELEM_ALIGN: usize = 11;
/// 1 for the lock-free `RawValue` / `RawArray`, 0 for the locked types:
/// the two access protocols must never meet on one payload.
const RAW: usize = 9;
/// `word64` 6 (words 12 and 13): the element count.
const COUNT: usize = 6;

pub(crate) struct Data<T> {
    slot: Slot,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Data<T> {
    fn clone(&self) -> Self {
        Data {
            slot: self.slot.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Data<T> {
    /// A new payload of `len` elements copied from `init` (or zeroed when
    /// `init` is empty), anonymous or named; stamped as `kind`.
    pub(crate) fn create(
        name: Option<&str>,
        len: usize,
        init: &[T],
        kind: Kind,
        raw: bool,
    ) -> io::Result<Data<T>> {
        if std::mem::align_of::<T>() > 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared values need an alignment of at most 4096",
            ));
        }
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "array too large"))?;
        let slot = object::new_with_payload(bytes, name)?;
        slot.word(ELEM_SIZE)
            .store(std::mem::size_of::<T>() as u32, Ordering::Relaxed);
        slot.word(ELEM_ALIGN)
            .store(std::mem::align_of::<T>() as u32, Ordering::Relaxed);
        slot.word64(COUNT).store(len as u64, Ordering::Relaxed);
        slot.word(RAW).store(u32::from(raw), Ordering::Relaxed);
        let data = Data {
            slot,
            len,
            _t: PhantomData,
        };
        if !init.is_empty() {
            data.store_from(0, init);
        }
        // After the initial contents: whoever sees the header sees them.
        object::stamp(&data.slot, kind);
        Ok(data)
    }

    /// Checks a received or opened object's header against `T` and `kind`.
    pub(crate) fn from_slot(slot: Slot, kind: Kind, raw: bool) -> io::Result<Data<T>> {
        object::check(&slot, kind)?;
        if slot.word(RAW).load(Ordering::Relaxed) != u32::from(raw) {
            let what = |r: bool| if r { "raw (lock-free)" } else { "locked" };
            return Err(object::invalid_data(format!(
                "the shared object is {}, not {}",
                what(!raw),
                what(raw)
            )));
        }
        let size = slot.word(ELEM_SIZE).load(Ordering::Relaxed) as usize;
        let align = slot.word(ELEM_ALIGN).load(Ordering::Relaxed) as usize;
        let len = usize::try_from(slot.word64(COUNT).load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if size != std::mem::size_of::<T>() || align != std::mem::align_of::<T>() {
            return Err(object::invalid_data(format!(
                "the shared {} holds elements of {size} bytes (alignment {align}), not of {} bytes (alignment {})",
                if kind == Kind::Array {
                    "array"
                } else {
                    "value"
                },
                std::mem::size_of::<T>(),
                std::mem::align_of::<T>()
            )));
        }
        if len
            .checked_mul(size)
            .is_none_or(|b| b > object::payload_len(&slot))
        {
            return Err(object::invalid_data(
                "the shared array's length does not fit its memory",
            ));
        }
        Ok(Data {
            slot,
            len,
            _t: PhantomData,
        })
    }

    pub(crate) fn slot(&self) -> &Slot {
        &self.slot
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn base(&self) -> *mut T {
        self.slot.segment().as_ptr().cast::<T>()
    }

    fn byte(&self, i: usize) -> &AtomicU8 {
        debug_assert!(i < self.len * std::mem::size_of::<T>());
        // SAFETY: `i` is inside the payload (see the module's Safety
        // section); `AtomicU8` has no alignment requirement and allows
        // concurrent access from any process.
        unsafe {
            &*self
                .slot
                .segment()
                .as_ptr()
                .wrapping_add(i)
                .cast::<AtomicU8>()
        }
    }

    /// Copies element `i` out, byte by byte (may tear under a concurrent write).
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub(crate) fn load(&self, i: usize) -> T {
        assert!(
            i < self.len,
            "index {i} out of range for length {}",
            self.len
        );
        let mut v = T::zeroed();
        let size = std::mem::size_of::<T>();
        for (k, b) in bytemuck::bytes_of_mut(&mut v).iter_mut().enumerate() {
            *b = self.byte(i * size + k).load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        v
    }

    /// Copies `v` into element `i`, byte by byte.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub(crate) fn store(&self, i: usize, v: T) {
        self.store_from(i, std::slice::from_ref(&v));
    }

    /// Copies `src` into elements `start..start + src.len()`.
    ///
    /// # Panics
    ///
    /// If the range passes the end.
    pub(crate) fn store_from(&self, start: usize, src: &[T]) {
        assert!(
            start.checked_add(src.len()).is_some_and(|e| e <= self.len),
            "range {start}..{} out of range for length {}",
            start.saturating_add(src.len()),
            self.len
        );
        std::sync::atomic::fence(Ordering::Release);
        let size = std::mem::size_of::<T>();
        for (k, b) in bytemuck::cast_slice::<T, u8>(src).iter().enumerate() {
            self.byte(start * size + k).store(*b, Ordering::Relaxed);
        }
    }

    /// The elements, for the holder of the object's lock: `proof` is a
    /// guard of the lock on this object's slot.
    ///
    /// # Panics
    ///
    /// If `proof` guards another lock.
    pub(crate) fn slice_locked<'s>(&'s self, proof: &'s LockGuard<'_>) -> &'s [T] {
        self.check_proof(proof);
        // SAFETY: in bounds and aligned (module Safety). The caller holds
        // this object's lock (checked above); a `&mut` to the elements only
        // comes from `slice_locked_mut`, which borrows the same guard
        // exclusively, so none is alive while `proof` is shared.
        unsafe { std::slice::from_raw_parts(self.base(), self.len) }
    }

    /// The elements, mutably, for the holder of the object's lock: `proof`
    /// is the guard, borrowed exclusively for as long as the slice lives.
    ///
    /// # Panics
    ///
    /// If `proof` guards another lock.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn slice_locked_mut<'s>(&'s self, proof: &'s mut LockGuard<'_>) -> &'s mut [T] {
        self.check_proof(proof);
        // SAFETY: in bounds and aligned (module Safety). The caller holds
        // this object's lock (checked above), which keeps every other
        // process and thread out, and the exclusive borrow of the one guard
        // makes this the only reference in this process.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.len) }
    }

    fn check_proof(&self, proof: &LockGuard<'_>) {
        assert!(
            proof.lock().raw().slot().same_as(&self.slot),
            "a guard of another lock was offered for a shared value"
        );
    }
}
