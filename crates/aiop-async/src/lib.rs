//! The async twins of [`aiop_core`]'s primitives, for any executor.
//!
//! Every process, primitive, queue and connection of the core has a twin
//! here whose plain verb is async (`lock().await`, `get().await`,
//! `recv().await`, `join().await`), with a `_blocking` twin for threads
//! that do not run an executor, a `try_` form that never waits, and
//! `_timeout` / `_deadline` forms. The `aiop` facade re-exports this crate
//! as its main API.
//!
//! # Implementation
//!
//! Nothing here parks a thread per waiting task, and nothing hands a
//! blocking call to a thread pool. An async operation calls only the
//! core's non-blocking `try_` path; when that fails, it registers the futex
//! word it is waiting for with the process's watcher thread (one
//! `aiop-watcher` thread sleeping in `futex_waitv` on up to 127 words, a
//! second only past that) and awaits an `event_listener` notification.
//! Dropping such a future loses nothing: no lock is taken, no item removed,
//! no permit consumed until the `try_` call that succeeds. Connections,
//! listeners and process join use `async_io::Async` readiness (epoll through
//! async-io's reactor, which drives itself from its own thread when the
//! executor is not async-io's).
//!
//! The crate uses no executor's API: it runs on smol, async-std, tokio
//! (multi-thread and current-thread) and a bare `async_io::block_on`, which
//! the test suite checks.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod connection;
pub mod manager;
pub mod pool;
pub mod process;
pub mod queue;
pub mod shared;
pub mod sync;
mod time;
mod watcher;

pub use aiop_core::{arena, futex, named, shm, transfer};
#[doc(hidden)]
pub use watcher::__watcher_threads;
