//! Queues between processes: [`Queue`], [`SimpleQueue`] and
//! [`JoinableQueue`], for any serde type, on shared-memory rings.
//!
//! Items are encoded with postcard straight into a ring of shared memory
//! (1 MiB unless [`Queue::with_capacity`] says otherwise) and decoded in
//! place: no thread, no pipe, no system call unless someone has to sleep or
//! be woken. Any number of processes may put and get at once; each item is
//! delivered once, and the items of one producer arrive in the order it put
//! them. A queue is bounded by item count (`maxsize`, 0 for none, as in
//! Python) and by the ring's bytes; an item larger than half the ring
//! still goes through, streamed in chunks (the ring's memory stays as it
//! is; only the consumer holds the whole item).
//!
//! A handle is cheap to clone and travels to a spawned process in its
//! arguments. Items themselves are plain postcard: an aiop handle inside an
//! item fails to encode (with [`crate::transfer::HANDLE_OUTSIDE_TRANSFER`]),
//! as Python refuses to pickle a `Lock` into a `Queue`.
//!
//! # Closing
//!
//! [`close`](Queue::close) closes the queue for every process: puts fail
//! with `Closed` (giving the item back), gets take what is left, then fail
//! with `Closed`; a getter asleep on an empty queue wakes with `Closed`.
//!
//! # Crashes
//!
//! Producers take a robust lock, consumers another. A record becomes
//! visible only when its producer publishes the new end of the ring with
//! one atomic store after writing it, and a consumer frees a record only
//! after decoding it. So a process killed in the middle of a put or a get,
//! even by `SIGKILL`, costs at most the one item it was moving: the next
//! process to take its lock finishes or undoes its bookkeeping, a
//! half-written item is never seen, and a half-taken item is taken again
//! by the next consumer (the dead one never returned it). An item streamed
//! in chunks whose producer dies is dropped by its consumer, which notices
//! the death while it waits for the next chunk.
//!
//! # Relationship with Python multiprocessing
//!
//! | Python | aiop |
//! |---|---|
//! | `Queue(maxsize=0)` | [`Queue::new`], [`Queue::with_capacity`] (ring bytes) |
//! | `put(obj)`, `put(obj, timeout=t)`, `put_nowait(obj)` | [`Queue::put`], [`Queue::put_timeout`], [`Queue::try_put`] |
//! | `get()`, `get(timeout=t)`, `get_nowait()` | [`Queue::get`], [`Queue::get_timeout`], [`Queue::try_get`] |
//! | `queue.Full`, `queue.Empty` | [`TryPutError::Full`], [`TryGetError::Empty`] |
//! | `qsize()`, `empty()`, `full()` | [`Queue::qsize`], [`Queue::is_empty`], [`Queue::is_full`] |
//! | `close()` (then `ValueError` on use) | [`Queue::close`] (then `Closed`) |
//! | `join_thread()`, `cancel_join_thread()` | not needed: no feeder thread |
//! | `SimpleQueue()`: `put`, `get`, `empty`, `close` | [`SimpleQueue`] |
//! | `JoinableQueue(maxsize)`: `task_done()`, `join()` | [`JoinableQueue::task_done`], [`JoinableQueue::join`] |
//! | `ValueError: task_done() called too many times` | [`TaskDoneError`] |
//!
//! Differences: items are serde values, not pickles; `close` is shared by
//! every process, not per handle; `qsize` is exact at the instant it reads
//! (and works on every platform); a put is complete when it returns (no
//! feeder thread, so nothing is lost when the putting process exits).
//!
//! # Examples
//!
//! ```
//! use aiop_core::queue::Queue;
//!
//! let q = Queue::new(0)?;
//! q.put(("hello".to_string(), 42u32)).unwrap();
//! assert_eq!(q.qsize(), 1);
//! assert_eq!(q.get().unwrap(), ("hello".to_string(), 42));
//! assert!(q.try_get().unwrap_err().is_empty());
//! # std::io::Result::Ok(())
//! ```

mod basic;
mod error;
mod get;
mod joinable;
mod put;
mod ring;
mod simple;

pub use basic::Queue;
pub use error::{GetError, NotNow, PutError, TaskDoneError, TryGetError, TryPutError};
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

/// The ring size when none is given: 1 MiB.
pub const DEFAULT_CAPACITY: usize = ring::DEFAULT_CAPACITY;
