//! `Lock`: a robust, process-owned mutual-exclusion lock.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{LockResult, NotOwnerError, OwnerDied, TryLockError, TryLockResult};
use super::{LOCK_SPIN, deadline_after, sleep, spin, wake};
use crate::arena::Slot;
use crate::object::{self, Kind};
use crate::sys::robust::{self, Linked, OWNER_DIED, TID_MASK, WAITERS};
use std::sync::atomic::Ordering;

/// The lock word protocol, shared by `Lock`, `RLock`, `Condition` and the
/// locks of `Value` and `Array`: word 0 of a slot, a robust futex holding
/// the owner process's sentinel id (`TID_MASK`), `OWNER_DIED` and `WAITERS`.
#[derive(Clone, Debug)]
pub(crate) struct RawLock {
    linked: Linked,
}

/// The owner id of this process, for a lock operation.
///
/// # Panics
///
/// If the sentinel thread cannot be restarted after a `fork` (the first
/// lock handle of a process started it already, so only a forked child
/// that has run out of threads or memory gets here).
fn me() -> u32 {
    robust::owner().unwrap_or_else(|e| panic!("aiop: cannot start the aiop-robust thread: {e}"))
}

impl RawLock {
    pub(crate) fn new(slot: Slot) -> io::Result<RawLock> {
        Ok(RawLock {
            linked: Linked::new(slot)?,
        })
    }

    pub(crate) fn slot(&self) -> &Slot {
        self.linked.slot()
    }

    /// Takes the lock if it is free. `Some(owner_died)` on success.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<bool> {
        let word = self.linked.word();
        let me = me();
        // Acquire: the previous holder's writes happen-before ours.
        match word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Some(false),
            Err(w) => self.try_slow(w, me, 0),
        }
    }

    /// Takes a free lock whose word is `w` (possibly with `OWNER_DIED` or
    /// `WAITERS`), adding `extra` bits. `None` while someone holds it.
    fn try_slow(&self, mut w: u32, me: u32, extra: u32) -> Option<bool> {
        let word = self.linked.word();
        while w & TID_MASK == 0 {
            match word.compare_exchange(
                w,
                me | (w & WAITERS) | extra,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(w & OWNER_DIED != 0),
                Err(cur) => w = cur,
            }
        }
        None
    }

    /// Takes the lock, waiting until `deadline`. `None` when it passed.
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> Option<bool> {
        if let Some(died) = self.try_acquire() {
            return Some(died);
        }
        let word = self.linked.word();
        let me = me();
        let mut got = None;
        if spin(LOCK_SPIN, || {
            let w = word.load(Ordering::Relaxed);
            w & TID_MASK == 0 && {
                got = self.try_slow(w, me, 0);
                got.is_some()
            }
        }) {
            return got;
        }
        loop {
            let w = word.load(Ordering::Relaxed);
            if w & TID_MASK == 0 {
                // We may not be the only sleeper: keep WAITERS set, so that
                // our release wakes the next one.
                if let Some(died) = self.try_slow(w, me, WAITERS) {
                    return Some(died);
                }
                continue;
            }
            if w & WAITERS == 0
                && word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if !sleep(word, w | WAITERS, deadline) {
                // One last look: the lock may have come free as time ran out.
                return self.try_slow(word.load(Ordering::Relaxed), me, WAITERS);
            }
        }
    }

    /// Releases the lock held by this process.
    #[inline]
    pub(crate) fn release(&self) -> Result<(), NotOwnerError> {
        let word = self.linked.word();
        let me = me();
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & TID_MASK != me {
                return Err(NotOwnerError);
            }
            // A compare-and-swap, not a swap: two threads of this process
            // releasing at once must not free a lock that another process
            // took in between. Release: our writes under the lock
            // happen-before the next holder's.
            match word.compare_exchange_weak(w, 0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        if w & WAITERS != 0 {
            wake(word, 1);
        }
        Ok(())
    }

    /// What to watch while the lock is held (`None`: it is free now).
    pub(crate) fn watch(&self) -> Option<crate::wait::Watch> {
        let w = self.linked.word().load(Ordering::Relaxed);
        (w & TID_MASK != 0).then(|| crate::wait::Watch::lock_word(self.slot(), w))
    }

    /// Whether any process holds the lock.
    pub(crate) fn is_locked(&self) -> bool {
        self.linked.word().load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// Whether anyone ever held the lock (a fresh lock's word is zero;
    /// one whose holder died keeps `OWNER_DIED`).
    pub(crate) fn was_held(&self) -> bool {
        self.linked.word().load(Ordering::Acquire) != 0
    }

    /// Whether this process holds the lock.
    pub(crate) fn held_here(&self) -> bool {
        self.linked.word().load(Ordering::Relaxed) & TID_MASK == me()
    }
}

/// A lock shared between processes: Python's `multiprocessing.Lock`, robust.
///
/// The lock belongs to the *process* that took it: any thread of that
/// process may release it, no thread of another process can. If the holder
/// process dies, also by `SIGKILL`, the next acquirer gets [`OwnerDied`]
/// with the guard, at once, without waiting for a timeout.
///
/// A handle is cheap to clone, and can be sent to a spawned process in its
/// arguments (or, later, through a connection); every handle refers to the
/// same lock. Taking a free lock is one atomic instruction.
///
/// # Limits
///
/// The kernel looks at no more than 2048 robust locks of a dying process,
/// so death is reported for at most 2048 distinct `Lock`s, `RLock`s,
/// `Condition`s, `Value`s and `Array`s that the process holds handles to
/// at once (the most recently obtained ones).
///
/// # Examples
///
/// ```
/// use aiop_core::sync::Lock;
/// let lock = Lock::new()?;
/// {
///     let _guard = lock.lock().unwrap();
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(lock.try_lock().is_ok());
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct Lock {
    raw: RawLock,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Err only if another thread of this process released the lock under
        // our feet (with `release`), which leaves nothing to do.
        let _ = self.lock.raw.release();
    }
}

impl<'a> LockGuard<'a> {
    /// Keeps the lock held after the guard is gone; release it with
    /// [`Lock::release`] (from any thread of this process).
    pub fn leak(self) {
        std::mem::forget(self);
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }
}

fn outcome<G>(died: bool, guard: G) -> LockResult<G> {
    if died {
        Err(OwnerDied::new(guard))
    } else {
        Ok(guard)
    }
}

fn try_outcome<G>(got: Option<bool>, guard: impl FnOnce() -> G) -> TryLockResult<G> {
    match got {
        None => Err(TryLockError::WouldBlock),
        Some(died) => outcome(died, guard()).map_err(TryLockError::OwnerDied),
    }
}

impl Lock {
    /// Creates an unlocked lock.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated, or the process's robust-list
    /// thread cannot be started.
    pub fn new() -> io::Result<Lock> {
        Self::create(None)
    }

    /// Creates an unlocked lock that other programs can open by `name`
    /// (see [`crate::named`]). The name is removed when this process drops
    /// its last handle.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` when the name is taken (also by a stale object, which
    /// the message says); `InvalidInput` for an invalid name.
    pub fn create_named(name: &str) -> io::Result<Lock> {
        Self::create(Some(name))
    }

    /// Opens the lock another program created with [`Lock::create_named`].
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name, `InvalidData` when the
    /// object is not a `Lock`.
    pub fn open_named(name: &str) -> io::Result<Lock> {
        let slot = object::open_named(name, Kind::Lock)?;
        Ok(Lock {
            raw: RawLock::new(slot)?,
        })
    }

    fn create(name: Option<&str>) -> io::Result<Lock> {
        let slot = object::new_small(name)?;
        object::stamp(&slot, Kind::Lock);
        Ok(Lock {
            raw: RawLock::new(slot)?,
        })
    }

    /// Takes the lock, waiting as long as it takes; the guard releases it.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous holder died
    /// holding the lock.
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        let died = self.raw.acquire(None).expect("no deadline");
        outcome(died, LockGuard { lock: self })
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when it is held;
    /// [`TryLockError::OwnerDied`] as for [`lock`](Lock::lock).
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        try_outcome(self.raw.try_acquire(), || LockGuard { lock: self })
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out;
    /// [`TryLockError::OwnerDied`] as for [`lock`](Lock::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        try_outcome(self.raw.acquire(deadline_after(timeout)), || LockGuard {
            lock: self,
        })
    }

    /// Takes the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Lock::lock_timeout).
    pub fn lock_deadline(&self, deadline: Instant) -> TryLockResult<LockGuard<'_>> {
        try_outcome(self.raw.acquire(Some(deadline)), || LockGuard {
            lock: self,
        })
    }

    /// Python's `acquire()`: takes the lock without a guard; release it
    /// with [`release`](Lock::release).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when the previous holder died holding it (the lock is
    /// held all the same).
    #[doc(alias = "acquire_blocking")]
    pub fn acquire(&self) -> LockResult<()> {
        self.lock()
            .map(LockGuard::leak)
            .map_err(|d| d.map(LockGuard::leak))
    }

    /// Python's `acquire(block=False)`: takes the lock if it is free.
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Lock::try_lock).
    pub fn try_acquire(&self) -> TryLockResult<()> {
        self.try_lock()
            .map(LockGuard::leak)
            .map_err(|e| e.map(LockGuard::leak))
    }

    /// Python's `acquire(timeout=t)`: takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Lock::lock_timeout).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<()> {
        self.lock_timeout(timeout)
            .map(LockGuard::leak)
            .map_err(|e| e.map(LockGuard::leak))
    }

    /// Releases the lock, which this process must hold (any of its threads
    /// may release it).
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when this process does not hold the lock.
    pub fn release(&self) -> Result<(), NotOwnerError> {
        self.raw.release()
    }

    /// For async layers: the word to watch while the lock is held, `None`
    /// when it is free now (see [`crate::wait`]).
    pub fn watch(&self) -> Option<crate::wait::Watch> {
        self.raw.watch()
    }

    /// Whether some process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether this process holds the lock.
    pub fn is_held_here(&self) -> bool {
        self.raw.held_here()
    }

    /// Whether both handles refer to the same lock.
    pub fn same_as(&self, other: &Lock) -> bool {
        self.raw.slot().same_as(other.raw.slot())
    }

    pub(crate) fn from_raw(raw: RawLock) -> Lock {
        Lock { raw }
    }

    pub(crate) fn raw(&self) -> &RawLock {
        &self.raw
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.slot().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Lock, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        object::check(&slot, Kind::Lock).map_err(serde::de::Error::custom)?;
        RawLock::new(slot)
            .map(Lock::from_raw)
            .map_err(serde::de::Error::custom)
    }
}
