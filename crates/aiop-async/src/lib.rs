//! The async twins of [`aiop_core`]'s primitives, for any executor.
//!
//! This crate grows with the async layer: one per-process futex watcher
//! feeding `event_listener` notifications, connections on `async_io`, and
//! process join on a pidfd. It never parks a thread per waiting task and never
//! hands a blocking call to a thread pool, so every async operation is cancel
//! safe. For now it re-exports the executor-free core that everything else
//! builds on.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub use aiop_core::{arena, connection, futex, named, process, queue, shared, shm, sync, transfer};
