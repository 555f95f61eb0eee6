//! aiop: Python's `multiprocessing` for Rust, blocking and async.
//!
//! Cross-process locks, events, queues, pipes, processes, pools and managers,
//! built on futexes in shared memory and on Unix sockets, each with a
//! blocking API and an async one that runs on any executor.
//!
//! This facade holds documentation and re-exports only: the async layer,
//! [`aiop_async`], is the main API, and the blocking core, [`aiop_core`], is
//! also reachable as [`blocking`].
//!
//! # Getting started
//!
//! A program that starts processes calls [`init`] first thing in `main`:
//! with the default start method a child re-executes the program, and
//! `init` is where the child takes over. Waiting operations are async
//! (`join().await`, `get().await`, `lock().await`) and run on any
//! executor; each has a `_blocking` twin for plain threads and children.
//!
//! ```no_run
//! use aiop::process::Process;
//!
//! fn add((a, b): (u64, u64)) -> u64 {
//!     a + b
//! }
//!
//! fn main() -> Result<(), aiop::process::ProcessError> {
//!     aiop::init();
//!     let mut child = Process::spawn(add, (40, 2))?;
//!     let sum = futures_lite::future::block_on(child.join())?;
//!     println!("{} says {sum}", child.name());
//!     Ok(())
//! }
//! ```
//!
//! Test crates that spawn call [`test_support!`] once at their root.
//!
//! # Platform
//!
//! Linux 5.16 or later (`futex_waitv`, pidfds), x86_64 or aarch64.
//!
//! # Relationship with Python multiprocessing
//!
//! | Python (multiprocessing / aioprocessing) | aiop |
//! |---|---|
//! | `Process`, `AioProcess.coro_join` | [`process::Process`], `join().await` |
//! | `set_start_method` | [`process::set_start_method`] |
//! | `current_process`, `parent_process`, `active_children`, `cpu_count` | the functions of [`process`] |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier` (and `Aio*`) | [`sync`] |
//! | `Value`, `Array`, `RawValue`, `RawArray`, `shared_memory` | [`shared`] |
//! | `Queue`, `SimpleQueue`, `JoinableQueue` (and `AioQueue.coro_get` ...) | [`queue`] |
//! | `Pipe`, `connection.Listener`, `Client`, `wait` | [`connection`] |
//! | `Pool`, `AioPool.coro_map`, `aiomultiprocess.Pool` | [`Pool`], [`pool`] ([`AsyncFn`] for async workers) |
//! | `Manager`, `SyncManager`, `BaseManager.register`, proxies, `RemoteError` | [`manager`] |
//!
//! docs/python-migration.md in the repository maps every name.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub use aiop_async::pool::{AsyncFn, Pool, PoolError};
pub use aiop_async::{
    arena, connection, futex, manager, named, pool, process, queue, shared, shm, sync, transfer,
};
pub use aiop_core::{init, test_support};

/// The blocking core, [`aiop_core`]: every type with plain blocking verbs
/// (`lock()` blocks), for programs and threads that do not use async.
pub use aiop_core as blocking;
