//! Async `Condition`.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use aiop_core::sync::{LockResult, OwnerDied, TryLockError, TryLockResult};
use serde::{Deserialize, Serialize};

use super::{Lock, RLock};
use crate::time::{deadline_after, until};
use crate::watcher;

/// A condition variable shared between processes, awaited by tasks:
/// Python's `multiprocessing.Condition`, aioprocessing's `AioCondition`.
///
/// The same shared object as [`aiop_core::sync::Condition`] (see
/// [`as_blocking`](Condition::as_blocking)): tasks and threads of any
/// process may wait on it and notify it, each with either API.
///
/// Take the lock with [`lock`](Condition::lock)`().await`, then hand the
/// guard to [`wait`](Condition::wait) or [`wait_for`](Condition::wait_for),
/// which give the lock up while waiting and give back a guard that holds
/// it again. The guard is taken *by value*: if the wait is dropped midway,
/// the guard goes with it and nobody is left holding a guard that no
/// longer holds the lock.
///
/// As with the blocking `Condition`, the lock taken by a task belongs to no
/// thread (for the default re-entrant lock, see [`RLock`]); it is held by
/// this process on behalf of the [`ConditionGuard`].
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let cond = aiop_async::sync::Condition::new()?;
/// let guard = cond.lock().await.unwrap();
/// let guard = cond.wait_for(guard, || true).await.unwrap();
/// cond.notify_all();
/// drop(guard);
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Condition {
    inner: aiop_core::sync::Condition,
}

/// Holds an async [`Condition`]'s lock; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cond.inner.unlock_detached();
    }
}

impl<'a> ConditionGuard<'a> {
    /// Gives the lock up without dropping a guard; returns the depth to
    /// restore.
    fn unlock(self) -> u32 {
        let depth = self.cond.inner.unlock_detached().unwrap_or(1);
        std::mem::forget(self);
        depth
    }
}

/// A guard, or the same guard inside [`OwnerDied`].
fn outcome(cond: &Condition, died: bool) -> LockResult<ConditionGuard<'_>> {
    let guard = ConditionGuard { cond };
    if died {
        Err(OwnerDied::new(guard))
    } else {
        Ok(guard)
    }
}

impl Condition {
    /// Creates a condition with a re-entrant lock of its own.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new() -> io::Result<Condition> {
        aiop_core::sync::Condition::new().map(Condition::from)
    }

    /// Creates a condition that waits under `lock`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn with_lock(lock: Lock) -> io::Result<Condition> {
        aiop_core::sync::Condition::with_lock(lock.into()).map(Condition::from)
    }

    /// Creates a condition that waits under `lock`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn with_rlock(lock: RLock) -> io::Result<Condition> {
        aiop_core::sync::Condition::with_rlock(lock.into()).map(Condition::from)
    }

    /// Creates a condition that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Condition::create_named`].
    pub fn create_named(name: &str) -> io::Result<Condition> {
        aiop_core::sync::Condition::create_named(name).map(Condition::from)
    }

    /// Opens a condition another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Condition::open_named`].
    pub fn open_named(name: &str) -> io::Result<Condition> {
        aiop_core::sync::Condition::open_named(name).map(Condition::from)
    }

    /// Takes the condition's lock (Python's `async with cond:`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous holder died.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lock is taken only in the step that completes the
    /// future.
    #[doc(alias = "coro_acquire")]
    pub async fn lock(&self) -> LockResult<ConditionGuard<'_>> {
        self.relock(1).await
    }

    /// Takes the lock at `depth`, waiting as long as it takes.
    async fn relock(&self, depth: u32) -> LockResult<ConditionGuard<'_>> {
        let died = watcher::wait_for(
            || self.inner.try_relock_detached(depth),
            || self.inner.watch_lock(),
        )
        .await;
        outcome(self, died)
    }

    /// Takes the condition's lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when anyone holds it;
    /// [`TryLockError::OwnerDied`] as for [`lock`](Condition::lock).
    pub fn try_lock(&self) -> TryLockResult<ConditionGuard<'_>> {
        match self.inner.try_lock_detached() {
            None => Err(TryLockError::WouldBlock),
            Some(died) => outcome(self, died).map_err(TryLockError::OwnerDied),
        }
    }

    /// Takes the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Condition::lock).
    pub async fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
        match until(deadline_after(timeout), self.lock()).await {
            Some(r) => r.map_err(TryLockError::OwnerDied),
            None => self.try_lock(),
        }
    }

    /// Gives up the lock, waits for a notification, and takes the lock
    /// again; returns the guard. A wait may end without a notification
    /// meant for it (use [`wait_for`](Condition::wait_for)).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when, while this task waited, a
    /// holder of the lock died holding it.
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops `guard` with it: before the first poll,
    /// that releases the lock as dropping the guard would; after it, the
    /// lock has been given up already and is not taken again. Either way
    /// the caller holds nothing, and no notification is consumed on behalf
    /// of the dropped task (a notification wakes every task of this
    /// process that waits).
    #[doc(alias = "coro_wait")]
    pub async fn wait<'a>(&'a self, guard: ConditionGuard<'a>) -> LockResult<ConditionGuard<'a>> {
        match self.wait_until(guard, None).await {
            Ok((g, _)) => Ok(g),
            Err(d) => Err(d.map(|(g, _)| g)),
        }
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; also returns
    /// whether the wait ended before the time ran out (the lock is held
    /// again either way).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Condition::wait).
    #[doc(alias = "coro_wait")]
    pub async fn wait_timeout<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        timeout: Duration,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_until(guard, deadline_after(timeout)).await
    }

    async fn wait_until<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Option<Instant>,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        assert!(
            self.same_as(guard.cond),
            "Condition::wait called with the guard of another condition"
        );
        // Register for the notification while still holding the lock: a
        // notify after the release below changes the watched word.
        let listen = watcher::listen(vec![self.inner.watch_notify()]);
        let depth = guard.unlock();
        let woken = until(deadline, listen).await.is_some();
        match self.relock(depth).await {
            Ok(g) => Ok((g, woken)),
            Err(d) => Err(d.map(|g| (g, woken))),
        }
    }

    /// Waits until `pred()` holds, checking it under the lock before each
    /// wait; returns the guard.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait); the predicate is checked again after
    /// such an error is reported, not before.
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Condition::wait).
    #[doc(alias = "coro_wait_for")]
    pub async fn wait_for<'a>(
        &'a self,
        mut guard: ConditionGuard<'a>,
        mut pred: impl FnMut() -> bool,
    ) -> LockResult<ConditionGuard<'a>> {
        while !pred() {
            guard = self.wait(guard).await?;
        }
        Ok(guard)
    }

    /// As [`wait_for`](Condition::wait_for), for at most `timeout`; also
    /// returns the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Condition::wait).
    #[doc(alias = "coro_wait_for")]
    pub async fn wait_for_timeout<'a>(
        &'a self,
        mut guard: ConditionGuard<'a>,
        timeout: Duration,
        mut pred: impl FnMut() -> bool,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        let deadline = deadline_after(timeout);
        loop {
            if pred() {
                return Ok((guard, true));
            }
            let (g, woken) = self.wait_until(guard, deadline).await?;
            guard = g;
            if !woken {
                let ok = pred();
                return Ok((guard, ok));
            }
        }
    }

    /// Wakes up to `n` waiters (every waiting task of a process counts as
    /// one: they all wake and re-check).
    pub fn notify(&self, n: u32) {
        self.inner.notify(n);
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.inner.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.inner.notify_all();
    }

    /// Takes the lock on the calling thread (the core's guard).
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`lock`](Condition::lock).
    #[doc(alias = "acquire")]
    pub fn lock_blocking(&self) -> LockResult<aiop_core::sync::ConditionGuard<'_>> {
        self.inner.lock()
    }

    /// Waits on the calling thread (see [`aiop_core::sync::Condition::wait`]).
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    #[doc(alias = "wait")]
    pub fn wait_blocking(&self, guard: &mut aiop_core::sync::ConditionGuard<'_>) -> LockResult<()> {
        self.inner.wait(guard)
    }

    /// Waits on the calling thread until `pred()` holds.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    #[doc(alias = "wait_for")]
    pub fn wait_for_blocking(
        &self,
        guard: &mut aiop_core::sync::ConditionGuard<'_>,
        pred: impl FnMut() -> bool,
    ) -> LockResult<()> {
        self.inner.wait_for(guard, pred)
    }

    /// The blocking twin of this condition (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::sync::Condition {
        &self.inner
    }

    /// Whether both handles refer to the same condition.
    pub fn same_as(&self, other: &Condition) -> bool {
        std::ptr::eq(self, other) || self.inner.same_as(&other.inner)
    }
}

impl From<aiop_core::sync::Condition> for Condition {
    fn from(inner: aiop_core::sync::Condition) -> Condition {
        Condition { inner }
    }
}

impl From<Condition> for aiop_core::sync::Condition {
    fn from(c: Condition) -> aiop_core::sync::Condition {
        c.inner
    }
}
