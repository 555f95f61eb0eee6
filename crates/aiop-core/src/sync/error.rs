//! The error types of the synchronization primitives.

use std::error::Error;
use std::fmt;

/// The lock was acquired, but the process that held it before died holding
/// it: the state the lock protects may be half-updated.
///
/// The lock *is* held: [`into_inner`](OwnerDied::into_inner) gives the guard
/// (or `()` for the guard-less `acquire` forms). Repair the state, then keep
/// or release the lock as usual; the next acquirer sees an ordinary lock.
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    /// Wraps `guard`, held after an owner's death (for layers that build
    /// their own guards on this crate's locks).
    pub fn new(guard: G) -> OwnerDied<G> {
        OwnerDied { guard }
    }

    /// The guard of the lock, which this call holds.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// Turns the guard into another (a wrapper of it).
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied::new(f(self.guard))
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the lock was acquired, but its previous owner died holding it")
    }
}

impl<G> Error for OwnerDied<G> {}

/// What taking a lock gives: the guard, or the guard inside [`OwnerDied`].
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// Why a `try_` or `_timeout` acquisition did not simply succeed.
pub enum TryLockError<G> {
    /// The lock is held by someone else (for `_timeout`: until the time ran out).
    WouldBlock,
    /// The lock was acquired, but its previous owner died holding it.
    OwnerDied(OwnerDied<G>),
}

impl<G> TryLockError<G> {
    /// Whether the lock was not acquired.
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryLockError::WouldBlock)
    }

    /// Turns the guard of an [`OwnerDied`] into another.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> TryLockError<H> {
        match self {
            TryLockError::WouldBlock => TryLockError::WouldBlock,
            TryLockError::OwnerDied(d) => TryLockError::OwnerDied(d.map(f)),
        }
    }
}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(d: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(d)
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::OwnerDied(d) => fmt::Debug::fmt(d, f),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("the lock is held by someone else"),
            TryLockError::OwnerDied(d) => fmt::Display::fmt(d, f),
        }
    }
}

impl<G> Error for TryLockError<G> {}

/// What a `try_` or `_timeout` acquisition gives.
pub type TryLockResult<G> = Result<G, TryLockError<G>>;

/// A release by a process (or, for an `RLock`, a thread) that does not hold
/// the lock: Python's `RuntimeError: cannot release un-acquired lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotOwnerError;

impl fmt::Display for NotOwnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot release a lock that the caller does not hold")
    }
}

impl Error for NotOwnerError {}

/// A `BoundedSemaphore` released more often than it was acquired: Python's
/// `ValueError: Semaphore released too many times`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverReleaseError;

impl fmt::Display for OverReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bounded semaphore was released too many times")
    }
}

impl Error for OverReleaseError {}

/// The barrier is broken: it was aborted, reset, or a wait timed out, while
/// or before this caller waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenBarrierError;

impl fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the barrier is broken")
    }
}

impl Error for BrokenBarrierError {}
