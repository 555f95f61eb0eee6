//! `Value<T>` and `RawValue<T>`: one plain-data value in shared memory.

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

/// One plain-data value shared between processes, with a lock: Python's
/// `multiprocessing.Value`.
///
/// `T` is any [`bytemuck::Pod`] type (integers, floats, arrays of them,
/// `#[repr(C)]` structs of them). [`get`](Value::get) and
/// [`set`](Value::set) take the lock for one access; [`lock`](Value::lock)
/// holds it across several, for a read-modify-write. The lock is a robust
/// [`Lock`] (Python uses an `RLock`): a guard gives `&mut T`, which a
/// re-entrant lock could hand out twice.
///
/// # Examples
///
/// ```
/// let counter = aiop_core::shared::Value::new(0u64)?;
/// *counter.lock().unwrap() += 1;
/// assert_eq!(counter.get(), 1);
/// # std::io::Result::Ok(())
/// ```
pub struct Value<T> {
    data: Data<T>,
    lock: Lock,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            data: self.data.clone(),
            lock: self.lock.clone(),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").finish_non_exhaustive()
    }
}

/// Holds a [`Value`]'s lock and gives access to the value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    lock: LockGuard<'a>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value.data.slice_locked(&self.lock)[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value.data.slice_locked_mut(&mut self.lock)[0]
    }
}

impl<T: Pod> Value<T> {
    /// Creates a shared value holding `v`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(v: T) -> io::Result<Value<T>> {
        Self::assemble(Data::create(None, 1, &[v], Kind::Value, false)?)
    }

    /// Creates a shared value that other programs can open by `name` (see
    /// [`crate::named`]).
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`].
    pub fn create_named(name: &str, v: T) -> io::Result<Value<T>> {
        Self::assemble(Data::create(Some(name), 1, &[v], Kind::Value, false)?)
    }

    /// Opens a shared value another program created by name.
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name; `InvalidData` when it is not
    /// a `Value`, or one of another size or alignment than `T`.
    pub fn open_named(name: &str) -> io::Result<Value<T>> {
        let slot = object::open_named(name, Kind::Value)?;
        Self::assemble(Data::from_slot(slot, Kind::Value, false)?)
    }

    fn assemble(data: Data<T>) -> io::Result<Value<T>> {
        let lock = Lock::from_raw(RawLock::new(data.slot().clone())?);
        Ok(Value { data, lock })
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held;
    /// [`TryLockError::OwnerDied`] (holding the guard) when a process died
    /// holding it.
    pub fn try_lock(&self) -> TryLockResult<ValueGuard<'_, T>> {
        match self.lock.try_lock() {
            Ok(lock) => Ok(ValueGuard { value: self, lock }),
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
            Err(TryLockError::OwnerDied(d)) => {
                Err(TryLockError::OwnerDied(OwnerDied::new(ValueGuard {
                    value: self,
                    lock: d.into_inner(),
                })))
            }
        }
    }

    /// Takes the lock and gives access to the value.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when a process died holding the
    /// lock: the value may be half-written.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        match self.lock.lock() {
            Ok(g) => Ok(ValueGuard {
                value: self,
                lock: g,
            }),
            Err(d) => Err(OwnerDied::new(ValueGuard {
                value: self,
                lock: d.into_inner(),
            })),
        }
    }

    /// Reads the value under the lock (Python's `.value`).
    ///
    /// A lock whose holder died is taken over silently here; use
    /// [`lock`](Value::lock) to learn about it.
    pub fn get(&self) -> T {
        *self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    /// Writes the value under the lock (Python's `.value = v`).
    pub fn set(&self, v: T) {
        *self.lock().unwrap_or_else(OwnerDied::into_inner) = v;
    }

    /// The value's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.slot().serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value<T>, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        Data::from_slot(slot, Kind::Value, false)
            .and_then(Value::assemble)
            .map_err(serde::de::Error::custom)
    }
}

/// One plain-data value shared between processes, without a lock: Python's
/// `multiprocessing.RawValue`.
///
/// Reads and writes copy the bytes one by one: a read concurrent with a
/// write may see a mix of old and new bytes (a torn value), never undefined
/// behaviour. Use [`Value`] when that matters.
///
/// # Examples
///
/// ```
/// let v = aiop_core::shared::RawValue::new(1.5f64)?;
/// v.set(2.5);
/// assert_eq!(v.get(), 2.5);
/// # std::io::Result::Ok(())
/// ```
pub struct RawValue<T> {
    data: Data<T>,
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            data: self.data.clone(),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: Pod> RawValue<T> {
    /// Creates a shared value holding `v`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(v: T) -> io::Result<RawValue<T>> {
        Data::create(None, 1, &[v], Kind::Value, true).map(|data| RawValue { data })
    }

    /// Creates a shared value that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`].
    pub fn create_named(name: &str, v: T) -> io::Result<RawValue<T>> {
        Data::create(Some(name), 1, &[v], Kind::Value, true).map(|data| RawValue { data })
    }

    /// Opens a shared value another program created by name.
    ///
    /// # Errors
    ///
    /// As [`Value::open_named`].
    pub fn open_named(name: &str) -> io::Result<RawValue<T>> {
        let slot = object::open_named(name, Kind::Value)?;
        Data::from_slot(slot, Kind::Value, true).map(|data| RawValue { data })
    }

    /// Reads the value.
    pub fn get(&self) -> T {
        self.data.load(0)
    }

    /// Writes the value.
    pub fn set(&self, v: T) {
        self.data.store(0, v);
    }
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.slot().serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawValue<T>, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        Data::from_slot(slot, Kind::Value, true)
            .map(|data| RawValue { data })
            .map_err(serde::de::Error::custom)
    }
}
