//! Async twins of the cross-process synchronization primitives of
//! [`aiop_core::sync`], with Python's semantics.
//!
//! Each type wraps its blocking twin (same shared object, same wire form:
//! a handle can be sent to a child and used there with either API). The
//! plain verbs are async; `_blocking` forms run the core's blocking wait on
//! the calling thread.
//!
//! # Relationship with aioprocessing
//!
//! | aioprocessing | aiop |
//! |---|---|
//! | `AioEvent().coro_wait()` | [`Event::wait`]`().await` |

mod event;

pub use aiop_core::sync::{
    BrokenBarrierError, LockResult, NotOwnerError, OverReleaseError, OwnerDied, TryLockError,
    TryLockResult, set_spinning,
};
pub use event::Event;
