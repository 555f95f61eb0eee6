//! Async `RLock`: re-entry through the guard, not through the thread.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use aiop_core::sync::{LockResult, OwnerDied, TryLockError, TryLockResult};
use serde::{Deserialize, Serialize};

use crate::time::{deadline_after, until};
use crate::watcher;

/// A re-entrant robust lock shared between processes, taken by tasks:
/// Python's `multiprocessing.RLock`, aioprocessing's `AioRLock`.
///
/// The same shared object as [`aiop_core::sync::RLock`] (see
/// [`as_blocking`](RLock::as_blocking)).
///
/// # Who owns it
///
/// The blocking `RLock` belongs to a *thread*, which may take it again. A
/// task has no such identity: a multi-thread executor moves it between
/// threads, and several tasks share one thread. So a lock taken with
/// [`lock`](RLock::lock)`().await` belongs to no thread: it is held by
/// this process on behalf of the [`RLockGuard`], and re-entry goes through
/// the guard ([`RLockGuard::reenter`]), which adds a level that its own
/// guard gives back. A second `lock().await` by the same task waits, like
/// one by any other task; no thread, including the one the task runs on,
/// can re-enter or release it. The guard is `Send`: it may be dropped on
/// any thread. The blocking twins ([`lock_blocking`](RLock::lock_blocking))
/// keep the core's per-thread ownership.
///
/// When the holder process dies, the next acquirer gets [`OwnerDied`] with
/// a guard at depth 1.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let lock = aiop_async::sync::RLock::new()?;
/// let outer = lock.lock().await.unwrap();
/// let inner = outer.reenter();
/// assert!(lock.try_lock().is_err()); // re-entry is through the guard only
/// drop(outer);
/// assert!(lock.is_locked()); // `inner` still holds a level
/// drop(inner);
/// assert!(lock.try_lock().is_ok());
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLock {
    inner: aiop_core::sync::RLock,
}

/// Holds one level of an async [`RLock`]; gives it back when dropped.
#[must_use = "the level is given back as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl<'a> RLockGuard<'a> {
    /// Takes one more level of the lock this guard holds (Python's
    /// re-entrant `acquire()`); never waits.
    pub fn reenter(&self) -> RLockGuard<'a> {
        self.lock
            .inner
            .reenter_detached()
            .expect("an RLockGuard holds its lock");
        RLockGuard { lock: self.lock }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a RLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.inner.release_detached();
    }
}

impl RLock {
    /// Creates an unlocked re-entrant lock.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::RLock::new`].
    pub fn new() -> io::Result<RLock> {
        aiop_core::sync::RLock::new().map(RLock::from)
    }

    /// Creates an unlocked re-entrant lock that other programs can open by
    /// `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::RLock::create_named`].
    pub fn create_named(name: &str) -> io::Result<RLock> {
        aiop_core::sync::RLock::create_named(name).map(RLock::from)
    }

    /// Opens a re-entrant lock another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::RLock::open_named`].
    pub fn open_named(name: &str) -> io::Result<RLock> {
        aiop_core::sync::RLock::open_named(name).map(RLock::from)
    }

    /// Takes the lock (depth 1), waiting as long as it takes; re-enter with
    /// [`RLockGuard::reenter`].
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous owner process
    /// died holding the lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the step that completes the
    /// future, so dropping the future before then holds nothing.
    #[doc(alias = "coro_acquire")]
    pub async fn lock(&self) -> LockResult<RLockGuard<'_>> {
        watcher::lock_for(|| self.try_lock(), || self.inner.watch_word()).await
    }

    /// Takes the lock if it is free, without waiting (also when the caller
    /// holds it already: re-enter through the guard).
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when anyone holds it;
    /// [`TryLockError::OwnerDied`] as for [`lock`](RLock::lock).
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        match self.inner.try_acquire_detached() {
            None => Err(TryLockError::WouldBlock),
            Some(false) => Ok(RLockGuard { lock: self }),
            Some(true) => Err(TryLockError::OwnerDied(OwnerDied::new(RLockGuard {
                lock: self,
            }))),
        }
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](RLock::lock).
    #[doc(alias = "coro_acquire")]
    pub async fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        self.lock_until(deadline_after(timeout)).await
    }

    /// Takes the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](RLock::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](RLock::lock).
    pub async fn lock_deadline(&self, deadline: Instant) -> TryLockResult<RLockGuard<'_>> {
        self.lock_until(Some(deadline)).await
    }

    async fn lock_until(&self, deadline: Option<Instant>) -> TryLockResult<RLockGuard<'_>> {
        match until(deadline, self.lock()).await {
            Some(r) => r.map_err(TryLockError::OwnerDied),
            None => self.try_lock(),
        }
    }

    /// Takes one level of the lock on the calling thread, which owns it
    /// and may re-enter it (the core's per-thread ownership).
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock`](RLock::lock).
    #[doc(alias = "acquire")]
    pub fn lock_blocking(&self) -> LockResult<aiop_core::sync::RLockGuard<'_>> {
        self.inner.lock()
    }

    /// Takes one level on the calling thread, waiting at most `timeout`.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](RLock::lock_timeout).
    #[doc(alias = "acquire")]
    pub fn lock_timeout_blocking(
        &self,
        timeout: Duration,
    ) -> TryLockResult<aiop_core::sync::RLockGuard<'_>> {
        self.inner.lock_timeout(timeout)
    }

    /// Whether some process (or a task or thread of this one) holds the
    /// lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.inner.watch_word().is_some()
    }

    /// The blocking twin of this lock (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::sync::RLock {
        &self.inner
    }

    /// Whether both handles refer to the same lock.
    pub fn same_as(&self, other: &RLock) -> bool {
        self.inner.same_as(&other.inner)
    }
}

impl From<aiop_core::sync::RLock> for RLock {
    fn from(inner: aiop_core::sync::RLock) -> RLock {
        RLock { inner }
    }
}

impl From<RLock> for aiop_core::sync::RLock {
    fn from(l: RLock) -> aiop_core::sync::RLock {
        l.inner
    }
}
