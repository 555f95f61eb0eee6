//! `Condition`: wait for a state change under a lock.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{LockResult, NotOwnerError, OwnerDied, TryLockError, TryLockResult};
use super::lock::RawLock;
use super::{Lock, LockGuard, RLock, RLockGuard, Sleepers, anyone_sleeping, deadline_after};
use crate::arena::Slot;
use crate::object::{self, Kind};

/// Slot words of the condition itself. Words 0 to 3 hold its own `RLock`
/// when it has no lock given from outside.
const SEQ: usize = 4;
const SLEEPERS: usize = 5;

/// Which lock a condition waits under.
#[derive(Clone, Serialize, Deserialize)]
enum Which {
    /// The `RLock` in the condition's own slot (the default).
    Own,
    /// A `Lock` given at creation.
    Lock(Lock),
    /// An `RLock` given at creation.
    RLock(RLock),
}

#[derive(Clone)]
enum Held {
    Lock(Lock),
    RLock(RLock),
}

/// A condition variable shared between processes: Python's
/// `multiprocessing.Condition`.
///
/// It waits under a lock: an [`RLock`] of its own by default, or a [`Lock`]
/// or `RLock` given with [`with_lock`](Condition::with_lock) /
/// [`with_rlock`](Condition::with_rlock). Take the lock with
/// [`lock`](Condition::lock), then [`wait`](Condition::wait) with the guard,
/// which releases the lock while waiting and takes it again before
/// returning.
///
/// A wait may end without a notification (a spurious wake-up, or a
/// notification meant for a waiter that came later), as with
/// `std::sync::Condvar`; [`wait_for`](Condition::wait_for) re-checks a
/// predicate and is what most callers want.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use aiop_core::sync::Condition;
/// let cond = Condition::new()?;
/// let ready = AtomicBool::new(true); // in real use: shared state
/// let mut guard = cond.lock().unwrap();
/// cond.wait_for(&mut guard, || ready.load(Ordering::Relaxed)).unwrap();
/// cond.notify_all();
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct Condition {
    slot: Slot,
    which: Which,
    lock: Held,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}

/// Holds a [`Condition`]'s lock; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _guard: GuardKind<'a>,
}

enum GuardKind<'a> {
    Lock(#[allow(dead_code)] LockGuard<'a>),
    RLock(#[allow(dead_code)] RLockGuard<'a>),
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl Condition {
    /// Creates a condition with an `RLock` of its own.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new() -> io::Result<Condition> {
        Self::create(None, Which::Own)
    }

    /// Creates a condition that waits under `lock`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn with_lock(lock: Lock) -> io::Result<Condition> {
        Self::create(None, Which::Lock(lock))
    }

    /// Creates a condition that waits under `lock`.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn with_rlock(lock: RLock) -> io::Result<Condition> {
        Self::create(None, Which::RLock(lock))
    }

    /// Creates a condition (with its own `RLock`) that other programs can
    /// open by `name` (see [`crate::named`]).
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`](super::Lock::create_named).
    pub fn create_named(name: &str) -> io::Result<Condition> {
        Self::create(Some(name), Which::Own)
    }

    /// Opens a condition another program created by name.
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name, `InvalidData` when it is not
    /// a `Condition`.
    pub fn open_named(name: &str) -> io::Result<Condition> {
        let slot = object::open_named(name, Kind::Condition)?;
        Self::assemble(slot, Which::Own)
    }

    fn create(name: Option<&str>, which: Which) -> io::Result<Condition> {
        let slot = object::new_small(name)?;
        object::stamp(&slot, Kind::Condition);
        Self::assemble(slot, which)
    }

    fn assemble(slot: Slot, which: Which) -> io::Result<Condition> {
        let lock = match &which {
            Which::Own => Held::RLock(RLock::on_slot(RawLock::new(slot.clone())?)),
            Which::Lock(l) => Held::Lock(l.clone()),
            Which::RLock(l) => Held::RLock(l.clone()),
        };
        Ok(Condition { slot, which, lock })
    }

    fn seq(&self) -> &AtomicU32 {
        self.slot.word(SEQ)
    }

    fn guard<'a>(&'a self, kind: GuardKind<'a>) -> ConditionGuard<'a> {
        ConditionGuard {
            cond: self,
            _guard: kind,
        }
    }

    /// Takes the condition's lock.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous holder died.
    pub fn lock(&self) -> LockResult<ConditionGuard<'_>> {
        match &self.lock {
            Held::Lock(l) => l
                .lock()
                .map(|g| self.guard(GuardKind::Lock(g)))
                .map_err(|d| d.map(|g| self.guard(GuardKind::Lock(g)))),
            Held::RLock(l) => l
                .lock()
                .map(|g| self.guard(GuardKind::RLock(g)))
                .map_err(|d| d.map(|g| self.guard(GuardKind::RLock(g)))),
        }
    }

    /// Takes the condition's lock if it is free.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> TryLockResult<ConditionGuard<'_>> {
        self.lock_until_opt(None, true)
    }

    /// Takes the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
        self.lock_until_opt(deadline_after(timeout), false)
    }

    fn lock_until_opt(
        &self,
        deadline: Option<Instant>,
        try_only: bool,
    ) -> TryLockResult<ConditionGuard<'_>> {
        match &self.lock {
            Held::Lock(l) => {
                let r = if try_only {
                    l.try_lock()
                } else {
                    match deadline {
                        Some(d) => l.lock_deadline(d),
                        None => l.lock().map_err(TryLockError::from),
                    }
                };
                r.map(|g| self.guard(GuardKind::Lock(g)))
                    .map_err(|e| e.map(|g| self.guard(GuardKind::Lock(g))))
            }
            Held::RLock(l) => {
                let r = if try_only {
                    l.try_lock()
                } else {
                    match deadline {
                        Some(d) => l.lock_deadline(d),
                        None => l.lock().map_err(TryLockError::from),
                    }
                };
                r.map(|g| self.guard(GuardKind::RLock(g)))
                    .map_err(|e| e.map(|g| self.guard(GuardKind::RLock(g))))
            }
        }
    }

    /// Python's `acquire()`: takes the lock without a guard.
    ///
    /// # Errors
    ///
    /// As [`lock`](Condition::lock).
    pub fn acquire(&self) -> LockResult<()> {
        match &self.lock {
            Held::Lock(l) => l.acquire(),
            Held::RLock(l) => l.acquire(),
        }
    }

    /// Python's `release()`.
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when the caller does not hold the lock.
    pub fn release(&self) -> Result<(), NotOwnerError> {
        match &self.lock {
            Held::Lock(l) => l.release(),
            Held::RLock(l) => l.release(),
        }
    }

    /// Releases the lock, waits for a notification, and takes the lock again.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when, while this caller waited, a holder of the lock
    /// died holding it; the lock is held again all the same.
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    pub fn wait(&self, guard: &mut ConditionGuard<'_>) -> LockResult<()> {
        self.wait_until(guard, None)
            .map(|_| ())
            .map_err(|d| d.map(|_| ()))
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; returns `false`
    /// when the time ran out (the lock is held again either way).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    pub fn wait_timeout(
        &self,
        guard: &mut ConditionGuard<'_>,
        timeout: Duration,
    ) -> LockResult<bool> {
        self.wait_until(guard, deadline_after(timeout))
    }

    /// As [`wait`](Condition::wait), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    pub fn wait_deadline(
        &self,
        guard: &mut ConditionGuard<'_>,
        deadline: Instant,
    ) -> LockResult<bool> {
        self.wait_until(guard, Some(deadline))
    }

    /// Waits until `pred()` holds, checking it under the lock before each wait.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait); the predicate is checked again after
    /// such an error is reported, not before.
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    pub fn wait_for(
        &self,
        guard: &mut ConditionGuard<'_>,
        mut pred: impl FnMut() -> bool,
    ) -> LockResult<()> {
        while !pred() {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// As [`wait_for`](Condition::wait_for), for at most `timeout`; returns
    /// the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    ///
    /// # Panics
    ///
    /// If `guard` belongs to another condition.
    pub fn wait_for_timeout(
        &self,
        guard: &mut ConditionGuard<'_>,
        timeout: Duration,
        mut pred: impl FnMut() -> bool,
    ) -> LockResult<bool> {
        let deadline = deadline_after(timeout);
        loop {
            if pred() {
                return Ok(true);
            }
            if !self
                .wait_until(guard, deadline)
                .map_err(|d| d.map(|_| false))?
            {
                return Ok(pred());
            }
        }
    }

    fn wait_until(
        &self,
        guard: &mut ConditionGuard<'_>,
        deadline: Option<Instant>,
    ) -> LockResult<bool> {
        assert!(
            std::ptr::eq(guard.cond, self) || guard.cond.slot.same_as(&self.slot),
            "Condition::wait called with the guard of another condition"
        );
        let seq = self.seq();
        // Read the sequence while still holding the lock: a notify after we
        // release changes it, so the futex wait below cannot miss it.
        let s = seq.load(Ordering::SeqCst);
        let sleepers = Sleepers::enter(self.slot.word(SLEEPERS));
        let woken;
        let died;
        match &self.lock {
            Held::Lock(l) => {
                let raw = l.raw();
                let _ = raw.release();
                woken = super::sleep(seq, s, deadline);
                drop(sleepers);
                died = raw.acquire(None).expect("no deadline");
            }
            Held::RLock(l) => {
                let depth = l.release_all().unwrap_or(1);
                woken = super::sleep(seq, s, deadline);
                drop(sleepers);
                died = l.restore(depth, None).expect("no deadline");
            }
        }
        if died {
            Err(OwnerDied::new(woken))
        } else {
            Ok(woken)
        }
    }

    /// For async layers: the notification word with its value now. Take it
    /// while holding the lock, before giving the lock up to wait: any
    /// notification after that changes the word (see [`crate::wait`]).
    pub fn watch_notify(&self) -> crate::wait::Watch {
        // SeqCst: the snapshot is ordered before the release of the lock
        // and pairs with the notifier's increment.
        let s = self.seq().load(Ordering::SeqCst);
        // A notifier wakes `n` sleepers: a watcher that consumed a wake for
        // tasks that no longer wait passes it on.
        crate::wait::Watch::counted(&self.slot, SEQ, s, SLEEPERS, true)
    }

    /// For async layers: takes the condition's lock if it is free, held by
    /// this process but by no thread (a task's hold; see
    /// [`RLock::try_acquire_detached`]). `Some(owner_died)` on success,
    /// `None` while someone holds it.
    pub fn try_lock_detached(&self) -> Option<bool> {
        match &self.lock {
            Held::Lock(l) => l.raw().try_acquire(),
            Held::RLock(l) => l.try_acquire_detached(),
        }
    }

    /// For async layers: gives up a detached hold of the lock entirely (to
    /// wait, or when the task's guard is dropped), returning its depth.
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when this process holds no detached level.
    pub fn unlock_detached(&self) -> Result<u32, NotOwnerError> {
        match &self.lock {
            Held::Lock(l) => l.release().map(|()| 1),
            Held::RLock(l) => l.release_all_detached().ok_or(NotOwnerError),
        }
    }

    /// For async layers: takes the lock again at `depth` (from
    /// [`unlock_detached`](Condition::unlock_detached)) if it is free.
    pub fn try_relock_detached(&self, depth: u32) -> Option<bool> {
        match &self.lock {
            Held::Lock(l) => l.raw().try_acquire(),
            Held::RLock(l) => l.try_restore_detached(depth),
        }
    }

    /// For async layers: the lock word to watch while the lock is held,
    /// `None` when it is free (see [`crate::wait`]).
    pub fn watch_lock(&self) -> Option<crate::wait::Watch> {
        match &self.lock {
            Held::Lock(l) => l.watch(),
            Held::RLock(l) => l.watch_word(),
        }
    }

    /// Whether both handles refer to the same condition.
    pub fn same_as(&self, other: &Condition) -> bool {
        self.slot.same_as(&other.slot)
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) {
        // SeqCst: ordered before the sleeper check (see `Sleepers`).
        self.seq().fetch_add(1, Ordering::SeqCst);
        if n > 0 && anyone_sleeping(self.slot.word(SLEEPERS)) {
            super::wake(self.seq(), n);
        }
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq().fetch_add(1, Ordering::SeqCst);
        if anyone_sleeping(self.slot.word(SLEEPERS)) {
            super::wake_all(self.seq());
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.slot, &self.which).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Condition, D::Error> {
        let (slot, which) = <(Slot, Which)>::deserialize(deserializer)?;
        object::check(&slot, Kind::Condition).map_err(serde::de::Error::custom)?;
        Condition::assemble(slot, which).map_err(serde::de::Error::custom)
    }
}
