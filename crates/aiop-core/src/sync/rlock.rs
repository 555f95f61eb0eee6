//! `RLock`: a re-entrant robust lock, owned by one thread of one process.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::deadline_after;
use super::error::{LockResult, NotOwnerError, OwnerDied, TryLockError, TryLockResult};
use super::lock::RawLock;
use crate::arena::Slot;
use crate::object::{self, Kind};

/// Slot word holding the recursion depth.
const DEPTH: usize = 1;
/// Slot `word64` holding the owning thread's token (words 2 and 3).
const THREAD: usize = 1;

/// A number that names the calling thread within this process (never 0).
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// A re-entrant lock shared between processes: Python's
/// `multiprocessing.RLock`.
///
/// The owner is one thread of one process: it may take the lock again
/// without blocking, and must release it as many times. A release by any
/// other thread or process is a [`NotOwnerError`]. Like [`Lock`](super::Lock),
/// it is robust: when the owning process dies, the next acquirer gets
/// [`OwnerDied`] with a guard, at depth 1.
///
/// # Examples
///
/// ```
/// use aiop_core::sync::RLock;
/// let lock = RLock::new()?;
/// let outer = lock.lock().unwrap();
/// let inner = lock.lock().unwrap(); // the same thread may re-enter
/// drop(inner);
/// drop(outer);
/// assert!(lock.release().is_err()); // not held any more
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct RLock {
    raw: RawLock,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.raw.is_locked())
            .finish()
    }
}

/// Holds one level of an [`RLock`]; releases it when dropped.
///
/// Not `Send`: the level belongs to the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl RLockGuard<'_> {
    fn leak(self) {
        std::mem::forget(self);
    }
}

impl RLock {
    /// Creates an unlocked re-entrant lock.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated, or the process's robust-list
    /// thread cannot be started.
    pub fn new() -> io::Result<RLock> {
        Self::create(None)
    }

    /// Creates an unlocked re-entrant lock that other programs can open by
    /// `name` (see [`crate::named`]).
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`](super::Lock::create_named).
    pub fn create_named(name: &str) -> io::Result<RLock> {
        Self::create(Some(name))
    }

    /// Opens the re-entrant lock another program created by name.
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name, `InvalidData` when it is
    /// not an `RLock`.
    pub fn open_named(name: &str) -> io::Result<RLock> {
        let slot = object::open_named(name, Kind::RLock)?;
        Ok(RLock {
            raw: RawLock::new(slot)?,
        })
    }

    fn create(name: Option<&str>) -> io::Result<RLock> {
        let slot = object::new_small(name)?;
        object::stamp(&slot, Kind::RLock);
        Ok(RLock {
            raw: RawLock::new(slot)?,
        })
    }

    /// An `RLock` on the words 0 to 3 of another object's slot (a
    /// `Condition`'s own lock).
    pub(crate) fn on_slot(raw: RawLock) -> RLock {
        RLock { raw }
    }

    fn depth(&self) -> &std::sync::atomic::AtomicU32 {
        self.raw.slot().word(DEPTH)
    }

    fn owner_thread(&self) -> &AtomicU64 {
        self.raw.slot().word64(THREAD)
    }

    /// Whether the calling thread holds the lock. The fields are written
    /// only by the holder, so a thread that reads its own token (and this
    /// process's id in the lock word) reads what it wrote itself.
    fn mine(&self) -> bool {
        self.raw.held_here() && self.owner_thread().load(Ordering::Relaxed) == thread_token()
    }

    /// After taking the lock word: become the owning thread at depth 1.
    fn enter(&self) {
        self.owner_thread().store(thread_token(), Ordering::Relaxed);
        self.depth().store(1, Ordering::Relaxed);
    }

    fn reenter(&self) -> Option<RLockGuard<'_>> {
        if self.mine() {
            self.depth().fetch_add(1, Ordering::Relaxed);
            Some(self.guard())
        } else {
            None
        }
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        }
    }

    fn take(&self, got: Option<bool>) -> TryLockResult<RLockGuard<'_>> {
        match got {
            None => Err(TryLockError::WouldBlock),
            Some(died) => {
                self.enter();
                if died {
                    Err(TryLockError::OwnerDied(OwnerDied::new(self.guard())))
                } else {
                    Ok(self.guard())
                }
            }
        }
    }

    /// Takes one level of the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous owner process
    /// died holding the lock.
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        match self.take(self.raw.acquire(None)) {
            Ok(g) => Ok(g),
            Err(TryLockError::OwnerDied(d)) => Err(d),
            Err(TryLockError::WouldBlock) => unreachable!("no deadline"),
        }
    }

    /// Takes one level of the lock if the caller owns it or it is free.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when another thread or process holds it.
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        self.take(self.raw.try_acquire())
    }

    /// Takes one level of the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] when the time ran out.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        self.lock_until(deadline_after(timeout))
    }

    /// Takes one level of the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](RLock::lock_timeout).
    pub fn lock_deadline(&self, deadline: Instant) -> TryLockResult<RLockGuard<'_>> {
        self.lock_until(Some(deadline))
    }

    fn lock_until(&self, deadline: Option<Instant>) -> TryLockResult<RLockGuard<'_>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        self.take(self.raw.acquire(deadline))
    }

    /// Python's `acquire()`: one level, without a guard; give it back with
    /// [`release`](RLock::release) from the same thread.
    ///
    /// # Errors
    ///
    /// As [`lock`](RLock::lock); the level is held all the same.
    pub fn acquire(&self) -> LockResult<()> {
        self.lock()
            .map(RLockGuard::leak)
            .map_err(|d| d.map(RLockGuard::leak))
    }

    /// Python's `acquire(block=False)`.
    ///
    /// # Errors
    ///
    /// As [`try_lock`](RLock::try_lock).
    pub fn try_acquire(&self) -> TryLockResult<()> {
        self.try_lock()
            .map(RLockGuard::leak)
            .map_err(|e| e.map(RLockGuard::leak))
    }

    /// Python's `acquire(timeout=t)`.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](RLock::lock_timeout).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<()> {
        self.lock_timeout(timeout)
            .map(RLockGuard::leak)
            .map_err(|e| e.map(RLockGuard::leak))
    }

    /// Gives back one level; the last one frees the lock.
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when the calling thread does not own the lock.
    pub fn release(&self) -> Result<(), NotOwnerError> {
        if !self.mine() {
            return Err(NotOwnerError);
        }
        if self.depth().fetch_sub(1, Ordering::Relaxed) == 1 {
            self.owner_thread().store(0, Ordering::Relaxed);
            self.raw.release()?;
        }
        Ok(())
    }

    /// For async layers: the word to watch while another owner holds the
    /// lock, `None` when it is free or the caller's (see [`crate::wait`]).
    pub fn watch(&self) -> Option<crate::wait::Watch> {
        if self.mine() { None } else { self.raw.watch() }
    }

    /// Whether the calling thread owns the lock.
    pub fn is_owned(&self) -> bool {
        self.mine()
    }

    /// Whether both handles refer to the same lock.
    pub fn same_as(&self, other: &RLock) -> bool {
        self.raw.slot().same_as(other.raw.slot())
    }

    /// For async layers: takes the lock if it is free, held by this process
    /// but by no thread, at depth 1: a task's hold, which no thread may
    /// re-enter or release (tasks move between threads). Re-entry and
    /// release go through [`reenter_detached`](RLock::reenter_detached) and
    /// [`release_detached`](RLock::release_detached). `Some(owner_died)` on
    /// success, `None` while someone holds the lock.
    pub fn try_acquire_detached(&self) -> Option<bool> {
        let got = self.raw.try_acquire();
        if got.is_some() {
            // Written only by the holder (see `mine`): 0 is no thread's token.
            self.owner_thread().store(0, Ordering::Relaxed);
            self.depth().store(1, Ordering::Relaxed);
        }
        got
    }

    /// For async layers: adds a level to a detached hold of this process.
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when this process holds no detached level.
    pub fn reenter_detached(&self) -> Result<(), NotOwnerError> {
        if !self.detached_here() {
            return Err(NotOwnerError);
        }
        self.depth().fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// For async layers: gives back one level of a detached hold; the last
    /// one frees the lock.
    ///
    /// # Errors
    ///
    /// [`NotOwnerError`] when this process holds no detached level.
    pub fn release_detached(&self) -> Result<(), NotOwnerError> {
        if !self.detached_here() {
            return Err(NotOwnerError);
        }
        if self.depth().fetch_sub(1, Ordering::Relaxed) == 1 {
            self.raw.release()?;
        }
        Ok(())
    }

    /// Whether this process holds the lock with no owning thread.
    fn detached_here(&self) -> bool {
        self.raw.held_here()
            && self.owner_thread().load(Ordering::Relaxed) == 0
            && self.depth().load(Ordering::Relaxed) > 0
    }

    /// For a `Condition` wait of a task: frees a detached hold entirely,
    /// returning its depth.
    pub(crate) fn release_all_detached(&self) -> Option<u32> {
        if !self.detached_here() {
            return None;
        }
        let depth = self.depth().swap(0, Ordering::Relaxed);
        let _ = self.raw.release();
        Some(depth)
    }

    /// Re-takes a detached hold at `depth` if the lock is free.
    pub(crate) fn try_restore_detached(&self, depth: u32) -> Option<bool> {
        let got = self.try_acquire_detached();
        if got.is_some() {
            self.depth().store(depth.max(1), Ordering::Relaxed);
        }
        got
    }

    /// For async layers: the lock word to watch while the lock is held
    /// (by anyone, the caller included), `None` when it is free.
    pub fn watch_word(&self) -> Option<crate::wait::Watch> {
        self.raw.watch()
    }

    /// Releases every level the calling thread holds, returning how many
    /// (a `Condition` wait); `None` when the thread does not own the lock.
    pub(crate) fn release_all(&self) -> Option<u32> {
        if !self.mine() {
            return None;
        }
        let depth = self.depth().swap(0, Ordering::Relaxed);
        self.owner_thread().store(0, Ordering::Relaxed);
        let _ = self.raw.release();
        Some(depth)
    }

    /// Takes the lock again at `depth` after [`release_all`](Self::release_all).
    pub(crate) fn restore(&self, depth: u32, deadline: Option<Instant>) -> Option<bool> {
        let got = self.raw.acquire(deadline);
        if got.is_some() {
            self.enter();
            self.depth().store(depth.max(1), Ordering::Relaxed);
        }
        got
    }
}

impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.slot().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RLock, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        object::check(&slot, Kind::RLock).map_err(serde::de::Error::custom)?;
        RawLock::new(slot)
            .map(|raw| RLock { raw })
            .map_err(serde::de::Error::custom)
    }
}
