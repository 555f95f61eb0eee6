//! Async twins of the cross-process synchronization primitives of
//! [`aiop_core::sync`], with Python's semantics.
//!
//! Each type wraps its blocking twin (same shared object, same wire form:
//! a handle can be sent to a child and used there with either API; `From`
//! converts both ways and `as_blocking()` borrows the twin). The plain
//! verbs are async; `_blocking` forms run the core's blocking wait on the
//! calling thread; `try_` forms never wait; `_timeout` / `_deadline` forms
//! give up in time.
//!
//! # Waiting
//!
//! An async wait calls only the core's non-blocking `try_` path. When that
//! fails it registers the primitive's futex word with the process's watcher
//! thread and tries once more before it sleeps on an `event_listener`
//! notification; no thread is parked per task, and nothing is handed to a
//! thread pool. Dropping a waiting future therefore loses nothing, except
//! for [`Barrier::wait`], where an arrival counts (see [`Barrier`]).
//!
//! # Ownership
//!
//! A [`Lock`] belongs to the process, so any task of it may release it. A
//! task has no thread of its own, so the async [`RLock`] and
//! [`Condition`] lock belong to their *guard*: re-entry goes through
//! [`RLockGuard::reenter`], and no thread may re-enter or release a level
//! a task holds.
//!
//! # Relationship with aioprocessing
//!
//! | aioprocessing | aiop |
//! |---|---|
//! | `AioLock()`, `coro_acquire()`, `release()` | [`Lock::new`], [`Lock::acquire`]`().await`, [`Lock::release`] |
//! | `async with lock:` | [`Lock::lock`]`().await` (a guard) |
//! | `lock.acquire()` (blocking) | [`Lock::lock_blocking`], [`Lock::acquire_blocking`] |
//! | `AioRLock().coro_acquire()` | [`RLock::lock`]`().await`, re-entry with [`RLockGuard::reenter`] |
//! | `AioSemaphore(n).coro_acquire()`, `release()`, `get_value()` | [`Semaphore::acquire`]`().await`, [`Semaphore::release`], [`Semaphore::get_value`] |
//! | `AioBoundedSemaphore(n)` | [`BoundedSemaphore`] |
//! | `AioEvent().coro_wait()`, `set()`, `clear()`, `is_set()` | [`Event::wait`]`().await`, [`Event::set`], [`Event::clear`], [`Event::is_set`] |
//! | `AioCondition().coro_wait()` | [`Condition::wait`]`(guard).await` |
//! | `AioCondition().coro_wait_for(pred)` | [`Condition::wait_for`]`(guard, pred).await` |
//! | `AioCondition().notify(n)`, `notify_all()` | [`Condition::notify`], [`Condition::notify_all`] |
//! | `AioBarrier(n).coro_wait()` | [`Barrier::wait`]`().await` |
//! | `coro_acquire(timeout=t)` / `coro_wait(timeout=t)` | `lock_timeout`, `acquire_timeout`, `wait_timeout` (`.await`) |

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use aiop_core::sync::{
    BrokenBarrierError, LockGuard, LockResult, NotOwnerError, OverReleaseError, OwnerDied,
    TryLockError, TryLockResult, set_spinning, spinning,
};
pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::Lock;
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};
