//! `Array<T>` and `RawArray<T>`: a fixed-length array of plain data in
//! shared memory.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::data::Data;
use crate::arena::Slot;
use crate::object::{self, Kind};
use crate::sync::lock::RawLock;
use crate::sync::{Lock, LockGuard, LockResult, OwnerDied, TryLockError, TryLockResult};

/// A fixed-length array of plain data shared between processes, with a
/// lock: Python's `multiprocessing.Array`.
///
/// The elements sit in a segment of their own. [`get`](Array::get),
/// [`set`](Array::set) and [`to_vec`](Array::to_vec) take the lock for one
/// access; [`lock`](Array::lock) gives the whole slice under the lock.
///
/// # Examples
///
/// ```
/// let a = aiop_core::shared::Array::from_slice(&[1u32, 2, 3])?;
/// a.lock().unwrap()[0] = 10;
/// assert_eq!(a.to_vec(), [10, 2, 3]);
/// # std::io::Result::Ok(())
/// ```
pub struct Array<T> {
    data: Data<T>,
    lock: Lock,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            data: self.data.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Holds an [`Array`]'s lock and gives access to its elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    lock: LockGuard<'a>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.array.data.slice_locked(&self.lock)
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.array.data.slice_locked_mut(&mut self.lock)
    }
}

impl<T: Pod> Array<T> {
    /// Creates a shared array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(len: usize) -> io::Result<Array<T>> {
        Self::assemble(Data::create(None, len, &[], Kind::Array, false)?)
    }

    /// Creates a shared array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn from_slice(items: &[T]) -> io::Result<Array<T>> {
        Self::assemble(Data::create(None, items.len(), items, Kind::Array, false)?)
    }

    /// Creates a shared array holding a copy of `items` that other programs
    /// can open by `name` (see [`crate::named`]).
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`].
    pub fn create_named(name: &str, items: &[T]) -> io::Result<Array<T>> {
        Self::assemble(Data::create(
            Some(name),
            items.len(),
            items,
            Kind::Array,
            false,
        )?)
    }

    /// Opens a shared array another program created by name.
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name; `InvalidData` when it is not
    /// an `Array`, or one of elements of another size or alignment than `T`.
    pub fn open_named(name: &str) -> io::Result<Array<T>> {
        let slot = object::open_named(name, Kind::Array)?;
        Self::assemble(Data::from_slot(slot, Kind::Array, false)?)
    }

    fn assemble(data: Data<T>) -> io::Result<Array<T>> {
        let lock = Lock::from_raw(RawLock::new(data.slot().clone())?);
        Ok(Array { data, lock })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held;
    /// [`TryLockError::OwnerDied`] (holding the guard) when a process died
    /// holding it.
    pub fn try_lock(&self) -> TryLockResult<ArrayGuard<'_, T>> {
        match self.lock.try_lock() {
            Ok(lock) => Ok(ArrayGuard { array: self, lock }),
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
            Err(TryLockError::OwnerDied(d)) => {
                Err(TryLockError::OwnerDied(OwnerDied::new(ArrayGuard {
                    array: self,
                    lock: d.into_inner(),
                })))
            }
        }
    }

    /// Takes the lock and gives access to the elements.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when a process died holding the
    /// lock: the elements may be half-written.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.lock.lock() {
            Ok(lock) => Ok(ArrayGuard { array: self, lock }),
            Err(d) => Err(OwnerDied::new(ArrayGuard {
                array: self,
                lock: d.into_inner(),
            })),
        }
    }

    fn locked(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    /// Reads element `i` under the lock.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn get(&self, i: usize) -> T {
        self.locked()[i]
    }

    /// Writes element `i` under the lock.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn set(&self, i: usize, v: T) {
        self.locked()[i] = v;
    }

    /// Copies every element out under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        self.locked().to_vec()
    }

    /// The array's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.slot().serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Array<T>, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        Data::from_slot(slot, Kind::Array, false)
            .and_then(Array::assemble)
            .map_err(serde::de::Error::custom)
    }
}

/// A fixed-length array of plain data shared between processes, without a
/// lock: Python's `multiprocessing.RawArray`.
///
/// Element reads and writes copy bytes one by one: a read concurrent with a
/// write of the same element may see a torn value, never undefined
/// behaviour.
///
/// # Examples
///
/// ```
/// let a = aiop_core::shared::RawArray::<u8>::new(4)?;
/// a.set(1, 7);
/// assert_eq!(a.to_vec(), [0, 7, 0, 0]);
/// # std::io::Result::Ok(())
/// ```
pub struct RawArray<T> {
    data: Data<T>,
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            data: self.data.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RawArray<T> {
    /// Creates a shared array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(len: usize) -> io::Result<RawArray<T>> {
        Data::create(None, len, &[], Kind::Array, true).map(|data| RawArray { data })
    }

    /// Creates a shared array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn from_slice(items: &[T]) -> io::Result<RawArray<T>> {
        Data::create(None, items.len(), items, Kind::Array, true).map(|data| RawArray { data })
    }

    /// Creates a shared array that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`].
    pub fn create_named(name: &str, items: &[T]) -> io::Result<RawArray<T>> {
        Data::create(Some(name), items.len(), items, Kind::Array, true)
            .map(|data| RawArray { data })
    }

    /// Opens a shared array another program created by name.
    ///
    /// # Errors
    ///
    /// As [`Array::open_named`].
    pub fn open_named(name: &str) -> io::Result<RawArray<T>> {
        let slot = object::open_named(name, Kind::Array)?;
        Data::from_slot(slot, Kind::Array, true).map(|data| RawArray { data })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn get(&self, i: usize) -> T {
        self.data.load(i)
    }

    /// Writes element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn set(&self, i: usize, v: T) {
        self.data.store(i, v);
    }

    /// Copies every element out.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.data.load(i)).collect()
    }
}

impl<T: Pod> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.slot().serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawArray<T>, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        Data::from_slot(slot, Kind::Array, true)
            .map(|data| RawArray { data })
            .map_err(serde::de::Error::custom)
    }
}
