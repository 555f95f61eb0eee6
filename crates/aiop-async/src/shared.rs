//! Shared state with async locking: [`Value`] and [`Array`], whose
//! `lock().await` waits for the lock without blocking the executor, and the
//! core's lock-free types re-exported as they are.
//!
//! [`Value`] and [`Array`] wrap their blocking twins (the same shared
//! object and wire form; `From` converts both ways, `as_blocking()`
//! borrows). Every operation that takes the lock follows the async naming:
//! `lock().await`, `get().await`, `set(v).await` wait asynchronously for the
//! lock; `lock_blocking()`, `get_blocking()`, `set_blocking(v)` block the
//! thread; `try_lock()` never waits. [`RawValue`], [`RawArray`],
//! [`SharedMemory`] and [`ShareableList`] never wait, so they are the
//! core's types.
//!
//! # Relationship with aioprocessing and Python
//!
//! | Python | aiop |
//! |---|---|
//! | `Value('d', 0.0)`, `.value`, `.value = v` | [`Value::new`]`(0.0f64)`, [`Value::get`]`().await`, [`Value::set`]`(v).await` |
//! | `with v.get_lock():` | [`Value::lock`]`().await` (a guard that derefs to the value) |
//! | `Array('i', 10)`, `a[i]`, `a[i] = v` | [`Array::new`]`(10)`, [`Array::get`]`(i).await`, [`Array::set`]`(i, v).await` |

use std::future::Future;
use std::io;
use std::time::Duration;

use aiop_core::sync::{LockResult, TryLockError, TryLockResult};
use bytemuck::Pod;
use serde::{Deserialize, Serialize};

pub use aiop_core::shared::{
    ArrayGuard, Item, RawArray, RawValue, ShareableList, SharedMemory, TooLongError, ValueGuard,
};

use crate::sync::{Lock, OwnerDied};
use crate::time::{deadline_after, until};
use crate::watcher;

/// Takes `lock` through `try_lock` (which builds the guard), waiting on
/// the watcher between tries.
async fn lock_with<G>(
    lock: &aiop_core::sync::Lock,
    try_lock: impl Fn() -> TryLockResult<G>,
) -> LockResult<G> {
    watcher::lock_for(try_lock, || lock.watch()).await
}

/// `lock_with` until `timeout`, with one last try.
async fn lock_timeout_with<G, F: Future<Output = LockResult<G>>>(
    timeout: Duration,
    fut: F,
    try_lock: impl FnOnce() -> TryLockResult<G>,
) -> TryLockResult<G> {
    match until(deadline_after(timeout), fut).await {
        Some(r) => r.map_err(TryLockError::OwnerDied),
        None => try_lock(),
    }
}

/// One plain-data value shared between processes, with a lock that tasks
/// await: Python's `multiprocessing.Value`.
///
/// The same shared object as [`aiop_core::shared::Value`].
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let counter = aiop_async::shared::Value::new(0u64)?;
/// *counter.lock().await.unwrap() += 1;
/// assert_eq!(counter.get().await, 1);
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent, bound = "T: Pod")]
pub struct Value<T: Pod> {
    inner: aiop_core::shared::Value<T>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Pod> Value<T> {
    /// Creates a shared value holding `v`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(v: T) -> io::Result<Value<T>> {
        aiop_core::shared::Value::new(v).map(Value::from)
    }

    /// Creates a shared value that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::shared::Value::create_named`].
    pub fn create_named(name: &str, v: T) -> io::Result<Value<T>> {
        aiop_core::shared::Value::create_named(name, v).map(Value::from)
    }

    /// Opens a shared value another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::shared::Value::open_named`].
    pub fn open_named(name: &str) -> io::Result<Value<T>> {
        aiop_core::shared::Value::open_named(name).map(Value::from)
    }

    /// Takes the lock and gives access to the value.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when a process died holding the
    /// lock: the value may be half-written.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the step that completes the
    /// future.
    #[doc(alias = "get_lock")]
    pub async fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        lock_with(self.inner.get_lock(), || self.inner.try_lock()).await
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held; `OwnerDied` as for
    /// [`lock`](Value::lock).
    pub fn try_lock(&self) -> TryLockResult<ValueGuard<'_, T>> {
        self.inner.try_lock()
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Value::lock).
    pub async fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ValueGuard<'_, T>> {
        lock_timeout_with(timeout, self.lock(), || self.inner.try_lock()).await
    }

    /// Reads the value under the lock (Python's `.value`). A lock whose
    /// holder died is taken over silently; use [`lock`](Value::lock) to
    /// learn about it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: reading changes nothing.
    pub async fn get(&self) -> T {
        *self.lock().await.unwrap_or_else(OwnerDied::into_inner)
    }

    /// Writes the value under the lock (Python's `.value = v`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the value is written in the step that completes the
    /// future, or not at all.
    pub async fn set(&self, v: T) {
        *self.lock().await.unwrap_or_else(OwnerDied::into_inner) = v;
    }

    /// Takes the lock on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock`](Value::lock).
    #[doc(alias = "get_lock")]
    pub fn lock_blocking(&self) -> LockResult<ValueGuard<'_, T>> {
        self.inner.lock()
    }

    /// Reads the value on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread while another holds the lock: do not call it from
    /// async code.
    #[doc(alias = "value")]
    pub fn get_blocking(&self) -> T {
        self.inner.get()
    }

    /// Writes the value on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread while another holds the lock: do not call it from
    /// async code.
    #[doc(alias = "value")]
    pub fn set_blocking(&self, v: T) {
        self.inner.set(v);
    }

    /// The value's lock (Python's `get_lock()`), as an async [`Lock`].
    pub fn get_lock(&self) -> Lock {
        Lock::from(self.inner.get_lock().clone())
    }

    /// The blocking twin of this value (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::shared::Value<T> {
        &self.inner
    }
}

impl<T: Pod> From<aiop_core::shared::Value<T>> for Value<T> {
    fn from(inner: aiop_core::shared::Value<T>) -> Value<T> {
        Value { inner }
    }
}

impl<T: Pod> From<Value<T>> for aiop_core::shared::Value<T> {
    fn from(v: Value<T>) -> aiop_core::shared::Value<T> {
        v.inner
    }
}

/// A fixed-length array of plain data shared between processes, with a
/// lock that tasks await: Python's `multiprocessing.Array`.
///
/// The same shared object as [`aiop_core::shared::Array`].
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let a = aiop_async::shared::Array::from_slice(&[1u32, 2, 3])?;
/// a.lock().await.unwrap()[0] = 10;
/// assert_eq!(a.to_vec().await, [10, 2, 3]);
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent, bound = "T: Pod")]
pub struct Array<T: Pod> {
    inner: aiop_core::shared::Array<T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Pod> Array<T> {
    /// Creates a shared array of `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::shared::Array::new`].
    pub fn new(len: usize) -> io::Result<Array<T>> {
        aiop_core::shared::Array::new(len).map(Array::from)
    }

    /// Creates a shared array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::shared::Array::from_slice`].
    pub fn from_slice(items: &[T]) -> io::Result<Array<T>> {
        aiop_core::shared::Array::from_slice(items).map(Array::from)
    }

    /// Creates a shared array that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::shared::Array::create_named`].
    pub fn create_named(name: &str, items: &[T]) -> io::Result<Array<T>> {
        aiop_core::shared::Array::create_named(name, items).map(Array::from)
    }

    /// Opens a shared array another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::shared::Array::open_named`].
    pub fn open_named(name: &str) -> io::Result<Array<T>> {
        aiop_core::shared::Array::open_named(name).map(Array::from)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Takes the lock and gives access to the elements.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when a process died holding the
    /// lock: the elements may be half-written.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the step that completes the
    /// future.
    #[doc(alias = "get_lock")]
    pub async fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        lock_with(self.inner.get_lock(), || self.inner.try_lock()).await
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held; `OwnerDied` as for
    /// [`lock`](Array::lock).
    pub fn try_lock(&self) -> TryLockResult<ArrayGuard<'_, T>> {
        self.inner.try_lock()
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Array::lock).
    pub async fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ArrayGuard<'_, T>> {
        lock_timeout_with(timeout, self.lock(), || self.inner.try_lock()).await
    }

    async fn locked(&self) -> ArrayGuard<'_, T> {
        self.lock().await.unwrap_or_else(OwnerDied::into_inner)
    }

    /// Reads element `i` under the lock.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: reading changes nothing.
    pub async fn get(&self, i: usize) -> T {
        self.locked().await[i]
    }

    /// Writes element `i` under the lock.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the element is written in the step that completes the
    /// future, or not at all.
    pub async fn set(&self, i: usize, v: T) {
        self.locked().await[i] = v;
    }

    /// Copies every element out under the lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: reading changes nothing.
    pub async fn to_vec(&self) -> Vec<T> {
        self.locked().await.to_vec()
    }

    /// Takes the lock on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock`](Array::lock).
    #[doc(alias = "get_lock")]
    pub fn lock_blocking(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.inner.lock()
    }

    /// Reads element `i` on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread while another holds the lock: do not call it from
    /// async code.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn get_blocking(&self, i: usize) -> T {
        self.inner.get(i)
    }

    /// Writes element `i` on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread while another holds the lock: do not call it from
    /// async code.
    ///
    /// # Panics
    ///
    /// If `i >= len`.
    pub fn set_blocking(&self, i: usize, v: T) {
        self.inner.set(i, v);
    }

    /// Copies every element out on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread while another holds the lock: do not call it from
    /// async code.
    pub fn to_vec_blocking(&self) -> Vec<T> {
        self.inner.to_vec()
    }

    /// The array's lock (Python's `get_lock()`), as an async [`Lock`].
    pub fn get_lock(&self) -> Lock {
        Lock::from(self.inner.get_lock().clone())
    }

    /// The blocking twin of this array (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::shared::Array<T> {
        &self.inner
    }
}

impl<T: Pod> From<aiop_core::shared::Array<T>> for Array<T> {
    fn from(inner: aiop_core::shared::Array<T>) -> Array<T> {
        Array { inner }
    }
}

impl<T: Pod> From<Array<T>> for aiop_core::shared::Array<T> {
    fn from(a: Array<T>) -> aiop_core::shared::Array<T> {
        a.inner
    }
}
