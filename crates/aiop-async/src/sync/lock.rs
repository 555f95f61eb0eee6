//! Async `Lock`.

use std::io;
use std::time::{Duration, Instant};

use aiop_core::sync::{LockGuard, LockResult, NotOwnerError, TryLockError, TryLockResult};
use serde::{Deserialize, Serialize};

use crate::time::{deadline_after, until};
use crate::watcher;

/// A robust lock shared between processes, taken by tasks: Python's
/// `multiprocessing.Lock`, aioprocessing's `AioLock`.
///
/// The same shared object as [`aiop_core::sync::Lock`] (see
/// [`as_blocking`](Lock::as_blocking)): the lock belongs to the *process*
/// that took it, so any task or thread of that process may release it, and
/// when the holder process dies, also by `SIGKILL`, the next acquirer gets
/// [`OwnerDied`](aiop_core::sync::OwnerDied) carrying the guard.
///
/// [`lock`](Lock::lock)`().await` is Python's `async with lock:`; the guard
/// is the core's [`LockGuard`], which releases the lock when dropped.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let lock = aiop_async::sync::Lock::new()?;
/// {
///     let _guard = lock.lock().await.unwrap();
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(lock.try_lock().is_ok());
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lock {
    inner: aiop_core::sync::Lock,
}

impl Lock {
    /// Creates an unlocked lock.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated, or the process's robust-list
    /// thread cannot be started.
    pub fn new() -> io::Result<Lock> {
        aiop_core::sync::Lock::new().map(Lock::from)
    }

    /// Creates an unlocked lock that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Lock::create_named`].
    pub fn create_named(name: &str) -> io::Result<Lock> {
        aiop_core::sync::Lock::create_named(name).map(Lock::from)
    }

    /// Opens a lock another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Lock::open_named`].
    pub fn open_named(name: &str) -> io::Result<Lock> {
        aiop_core::sync::Lock::open_named(name).map(Lock::from)
    }

    /// Takes the lock, waiting as long as it takes; the guard releases it
    /// (Python's `async with lock:`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](aiop_core::sync::OwnerDied) (holding the guard) when
    /// the previous holder died holding the lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the step that completes the
    /// future, so dropping the future before then loses nothing and holds
    /// nothing (at most, the lock's next release makes one spare wake-up).
    #[doc(alias = "coro_acquire")]
    pub async fn lock(&self) -> LockResult<LockGuard<'_>> {
        watcher::lock_for(|| self.try_lock(), || self.inner.watch()).await
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held;
    /// [`TryLockError::OwnerDied`] as for [`lock`](Lock::lock).
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        self.inner.try_lock()
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out;
    /// [`TryLockError::OwnerDied`] as for [`lock`](Lock::lock).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Lock::lock).
    #[doc(alias = "coro_acquire")]
    pub async fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        self.lock_until(deadline_after(timeout)).await
    }

    /// Takes the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Lock::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Lock::lock).
    pub async fn lock_deadline(&self, deadline: Instant) -> TryLockResult<LockGuard<'_>> {
        self.lock_until(Some(deadline)).await
    }

    async fn lock_until(&self, deadline: Option<Instant>) -> TryLockResult<LockGuard<'_>> {
        match until(deadline, self.lock()).await {
            Some(r) => r.map_err(TryLockError::OwnerDied),
            // One last look: the lock may have come free as time ran out.
            None => self.try_lock(),
        }
    }

    /// Python's `acquire()`: takes the lock without a guard; release it
    /// with [`release`](Lock::release) (from any task or thread of this
    /// process).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](aiop_core::sync::OwnerDied) when the previous holder
    /// died holding it (the lock is held all the same).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Lock::lock).
    #[doc(alias = "coro_acquire")]
    pub async fn acquire(&self) -> LockResult<()> {
        self.lock()
            .await
            .map(LockGuard::leak)
            .map_err(|d| d.map(LockGuard::leak))
    }

    /// Python's `acquire(block=False)`: takes the lock if it is free.
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Lock::try_lock).
    pub fn try_acquire(&self) -> TryLockResult<()> {
        self.inner.try_acquire()
    }

    /// Python's `acquire(timeout=t)`: takes the lock without a guard,
    /// waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Lock::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Lock::lock).
    pub async fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<()> {
        self.lock_timeout(timeout)
            .await
            .map(LockGuard::leak)
            .map_err(|e| e.map(LockGuard::leak))
    }

    /// Releases the lock, which this process must hold (any of its tasks
    /// or threads may release it).
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when this process does not hold the lock.
    pub fn release(&self) -> Result<(), NotOwnerError> {
        self.inner.release()
    }

    /// Takes the lock on the calling thread, waiting as long as it takes.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock`](Lock::lock).
    #[doc(alias = "acquire")]
    pub fn lock_blocking(&self) -> LockResult<LockGuard<'_>> {
        self.inner.lock()
    }

    /// Takes the lock on the calling thread, waiting at most `timeout`.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Lock::lock_timeout).
    #[doc(alias = "acquire")]
    pub fn lock_timeout_blocking(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        self.inner.lock_timeout(timeout)
    }

    /// Python's `acquire()` on the calling thread, without a guard.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    #[doc(alias = "acquire")]
    pub fn acquire_blocking(&self) -> LockResult<()> {
        self.inner.acquire()
    }

    /// Whether some process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Whether this process holds the lock.
    pub fn is_held_here(&self) -> bool {
        self.inner.is_held_here()
    }

    /// The blocking twin of this lock (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::sync::Lock {
        &self.inner
    }

    /// Whether both handles refer to the same lock.
    pub fn same_as(&self, other: &Lock) -> bool {
        self.inner.same_as(&other.inner)
    }
}

impl From<aiop_core::sync::Lock> for Lock {
    fn from(inner: aiop_core::sync::Lock) -> Lock {
        Lock { inner }
    }
}

impl From<Lock> for aiop_core::sync::Lock {
    fn from(l: Lock) -> aiop_core::sync::Lock {
        l.inner
    }
}
