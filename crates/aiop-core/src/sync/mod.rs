//! Cross-process synchronization with Python's semantics: [`Lock`],
//! [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`]
//! and [`Barrier`].
//!
//! Every primitive is a few futex words in shared memory (a 64-byte slot of
//! a shared arena), a handle that is `Clone + Send + Sync`, travels to a
//! spawned process in its arguments, and can also be created by name for
//! programs that did not spawn each other (see [`crate::named`]).
//!
//! # Waiting
//!
//! No operation makes a system call unless it has to sleep or to wake a
//! sleeper: a waker only calls `FUTEX_WAKE` when a waiter count or the
//! `WAITERS` bit says someone sleeps. Before sleeping, a waiter spins
//! briefly (a few microseconds, and not at all on a one-CPU machine).
//! Every wait has a `_timeout` and a `_deadline` form, and a `try_` form
//! that never waits.
//!
//! # Robust ownership
//!
//! [`Lock`] and [`RLock`] (and so a [`Condition`]'s lock) belong to the
//! process that holds them, not to a thread: any thread of that process may
//! release a `Lock`. When the holder process dies, also by `SIGKILL`, the
//! kernel marks the lock word (a robust futex; see the crate's
//! architecture document), and the next acquirer gets [`OwnerDied`] carrying
//! its guard: the lock is held, the protected state may be half-updated,
//! recover it and go on. Semaphores, events and barriers have no owner and
//! cannot report a death, as in Python.
//!
//! # Relationship with Python multiprocessing
//!
//! | Python | aiop |
//! |---|---|
//! | `Lock()`, `acquire()`, `acquire(False)`, `acquire(timeout=t)`, `release()` | [`Lock::new`], [`Lock::acquire`], [`Lock::try_acquire`], [`Lock::acquire_timeout`], [`Lock::release`] |
//! | `with lock:` | [`Lock::lock`] (a guard) |
//! | `RLock()` | [`RLock`] |
//! | `Semaphore(n)`, `BoundedSemaphore(n)`, `get_value()` | [`Semaphore`], [`BoundedSemaphore`], `get_value` |
//! | `Event()`: `set`, `clear`, `is_set`, `wait(timeout)` | [`Event`] |
//! | `Condition(lock)`: `wait`, `wait_for`, `notify(n)`, `notify_all` | [`Condition`] |
//! | `Barrier(parties, action, timeout)`: `wait`, `abort`, `reset`, `parties`, `n_waiting`, `broken` | [`Barrier`] |
//! | `BrokenBarrierError` | [`BrokenBarrierError`] |

mod barrier;
mod condition;
mod error;
mod event;
pub(crate) mod lock;
mod rlock;
mod semaphore;

pub use barrier::{Arrival, Barrier, MAX_PARTIES};
pub use condition::{Condition, ConditionGuard};
pub use error::{
    BrokenBarrierError, LockResult, NotOwnerError, OverReleaseError, OwnerDied, TryLockError,
    TryLockResult,
};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::futex::{self, Timeout, Wake};

/// How long a waiter spins before it sleeps. Long enough to catch a peer
/// that is running on another CPU and about to signal (a ping-pong round
/// trip between two running processes is well under a microsecond), short
/// enough not to starve a two-CPU machine.
pub(crate) const SPIN: Duration = Duration::from_micros(8);
/// Locks spin less: a holder in a tight loop re-takes the lock at once.
pub(crate) const LOCK_SPIN: Duration = Duration::from_micros(2);

/// 0: decide from the CPU count; 1: spin; 2: never spin.
static SPINNING: AtomicU8 = AtomicU8::new(0);

/// Turns brief spinning before sleeping on or off for this process.
///
/// By default, waiters spin for a few microseconds before they sleep when
/// the process may run on more than one CPU: a peer on another CPU usually
/// signals within that time, and a wake-up from the kernel costs several
/// microseconds more. On a machine with more busy processes than CPUs,
/// spinning only burns the time slice that the peer needs; turn it off
/// there. The setting covers every primitive of this process, and the
/// connections of `aiop::manager` (whose readers spin longer, polling the
/// socket, before they sleep in the receive; a manager server process that
/// this process starts takes the setting along).
pub fn set_spinning(on: bool) {
    SPINNING.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether waiters of this process spin before they sleep: the setting of
/// [`set_spinning`], or by default whether the process may run on more
/// than one CPU.
pub fn spinning() -> bool {
    may_spin()
}

/// The setting made by [`set_spinning`] in this process, if any (`None`:
/// the default, decided by the CPU count).
pub fn spinning_setting() -> Option<bool> {
    match SPINNING.load(Ordering::Relaxed) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

/// Whether spinning can help at all: not with a single CPU.
fn may_spin() -> bool {
    use std::sync::OnceLock;
    static MULTI: OnceLock<bool> = OnceLock::new();
    match SPINNING.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => *MULTI.get_or_init(|| crate::process::cpu_count() > 1),
    }
}

/// Spins until `ready()` holds or `budget` runs out; returns whether it holds.
#[inline]
pub(crate) fn spin(budget: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if !may_spin() {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        if start.elapsed() >= budget {
            return false;
        }
    }
}

/// The absolute deadline of a relative timeout (`None`: never).
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Timeout::After(d).deadline()
}

/// Sleeps on `word` while it holds `expected`, until `deadline`. Returns
/// `false` only when the deadline passed.
pub(crate) fn sleep(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    match futex::wait_until(word, expected, deadline) {
        Ok(Wake::TimedOut) => false,
        Ok(_) => true,
        // Only EFAULT or EINVAL remain, which a valid shared word cannot
        // produce; treat them as a spurious wake-up (callers re-check).
        Err(_) => true,
    }
}

/// Wakes up to `n` sleepers on `word`.
fn wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, n);
}

/// Wakes every sleeper on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    let _ = futex::wake_all(word);
}

/// A waiter count that tells wakers whether a system call is needed.
///
/// The waiter registers (SeqCst) before it re-checks the futex word in the
/// kernel; the waker changes the word, then reads the count (SeqCst). Either
/// the waker sees the waiter and wakes it, or the waiter's futex wait sees
/// the changed word and does not sleep.
pub(crate) struct Sleepers<'a>(&'a AtomicU32);

impl<'a> Sleepers<'a> {
    pub(crate) fn enter(word: &'a AtomicU32) -> Sleepers<'a> {
        word.fetch_add(1, Ordering::SeqCst);
        Sleepers(word)
    }
}

impl Drop for Sleepers<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether anyone sleeps, read after the waker's change (SeqCst).
pub(crate) fn anyone_sleeping(count: &AtomicU32) -> bool {
    count.load(Ordering::SeqCst) != 0
}
