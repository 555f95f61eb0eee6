//! Async queues between processes: [`Queue`], [`SimpleQueue`] and
//! [`JoinableQueue`], the twins of [`aiop_core::queue`]'s.
//!
//! Each is the same shared object as its blocking twin (see
//! `as_blocking` and the `From` conversions; a handle serializes the same
//! way), so a process may put with the blocking API and another get with
//! this one. The plain verbs are async (`put(item).await`,
//! `get().await`, `join().await`); `_blocking` twins serve threads without
//! an executor; `try_` forms never wait; `_timeout` and `_deadline` forms
//! give up in time, a put giving its item back.
//!
//! # Waiting
//!
//! An async put or get calls only the core's non-blocking attempt
//! ([`aiop_core::queue::Queue::try_get_now`]), which neither spins nor
//! sleeps for the side's lock. When it fails, the task registers with the
//! process's watcher thread the "items available" epoch word (or "space
//! available" for a put) with its sleeper count, plus the side's lock word
//! when another process or thread holds it (a blocking getter holds the
//! consumers' lock while it sleeps on an empty queue), tries once more,
//! and sleeps until one of the words changes.
//!
//! # Large items
//!
//! An item larger than half the ring is streamed through it in chunks
//! (see [`aiop_core::queue`]). The stream is not resumable across
//! `.await`s, so it is the one place where an async call blocks its thread
//! briefly: a `get` that has taken the first chunk of such an item waits
//! for the rest while its producer writes it, and a `put` whose first chunk
//! went in waits for consumers to free room for the next ones. So a large
//! item must have its peer in another thread or process (a producer and a
//! consumer task of one single-threaded executor would wait for each
//! other); items up to half the ring never block.
//!
//! # Cancel safety
//!
//! A `get` future dropped at any `.await` has removed no item: only the
//! core attempt that returns an item removes it, and it runs within one
//! poll. A `put` future dropped before it completes has enqueued nothing:
//! the item is dropped with the future (`put_timeout` gives it back
//! instead). No lock is held across an `.await`.
//!
//! # Relationship with Python multiprocessing and aioprocessing
//!
//! | Python / aioprocessing | aiop |
//! |---|---|
//! | `Queue(maxsize)`, `AioQueue(maxsize)` | [`Queue::new`], [`Queue::with_capacity`] |
//! | `AioQueue.coro_put(obj)` | [`Queue::put`]`(obj).await` |
//! | `AioQueue.coro_get()` | [`Queue::get`]`().await` |
//! | `coro_put(obj, timeout=t)`, `coro_get(timeout=t)` | [`Queue::put_timeout`], [`Queue::get_timeout`] |
//! | `put(obj)`, `get()` (blocking) | [`Queue::put_blocking`], [`Queue::get_blocking`] |
//! | `put_nowait`, `get_nowait` | [`Queue::try_put`], [`Queue::try_get`] |
//! | `qsize()`, `empty()`, `full()`, `close()` | [`Queue::qsize`], [`Queue::is_empty`], [`Queue::is_full`], [`Queue::close`] |
//! | `AioSimpleQueue.coro_put`, `coro_get` | [`SimpleQueue::put`], [`SimpleQueue::get`] |
//! | `AioJoinableQueue.coro_join()` | [`JoinableQueue::join`]`().await` |
//! | `JoinableQueue.join()`, `task_done()` | [`JoinableQueue::join_blocking`], [`JoinableQueue::task_done`] |
//!
//! Unlike aioprocessing, nothing runs on a thread pool: a dropped `coro_get`
//! there may still take an item on its thread and lose it; here it cannot.
//!
//! # Examples
//!
//! ```
//! # futures_lite::future::block_on(async {
//! use aiop_async::queue::Queue;
//!
//! let q = Queue::new(0)?;
//! q.put("hello".to_string()).await.unwrap();
//! assert_eq!(q.get().await.unwrap(), "hello");
//! assert!(q.try_get().unwrap_err().is_empty());
//! # std::io::Result::Ok(())
//! # }).unwrap();
//! ```

mod joinable;
mod simple;
mod wait;

pub use aiop_core::queue::{
    DEFAULT_CAPACITY, GetError, PutError, TaskDoneError, TryGetError, TryPutError,
};
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `GetError` from the async loop's result (without a deadline it never
/// ends with `Empty`).
fn get_error(e: TryGetError) -> GetError {
    match e {
        TryGetError::Decode(e) => GetError::Decode(e),
        TryGetError::Closed | TryGetError::Empty => GetError::Closed,
    }
}

/// `PutError` from the async loop's result (without a deadline it never
/// ends with `Full`).
fn put_error<T>(e: TryPutError<T>) -> PutError<T> {
    match e {
        TryPutError::Encode(t, e) => PutError::Encode(t, e),
        TryPutError::Closed(t) | TryPutError::Full(t) => PutError::Closed(t),
    }
}

/// The trait implementations every async queue has: Clone, Debug, `From`
/// both ways, `as_blocking`, `same_as`.
macro_rules! twin {
    ($ty:ident) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    inner: self.inner.clone(),
                }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.inner, f)
            }
        }

        impl<T> From<aiop_core::queue::$ty<T>> for $ty<T> {
            fn from(inner: aiop_core::queue::$ty<T>) -> $ty<T> {
                $ty { inner }
            }
        }

        impl<T> From<$ty<T>> for aiop_core::queue::$ty<T> {
            fn from(q: $ty<T>) -> aiop_core::queue::$ty<T> {
                q.inner
            }
        }

        impl<T> $ty<T> {
            /// The blocking twin of this queue (the same shared object).
            pub fn as_blocking(&self) -> &aiop_core::queue::$ty<T> {
                &self.inner
            }

            /// Whether both handles refer to the same queue.
            pub fn same_as(&self, other: &$ty<T>) -> bool {
                self.inner.same_as(&other.inner)
            }

            /// Closes the queue, for every process: puts fail from now on,
            /// gets take what is left and then fail, and every waiter, task
            /// or thread, wakes.
            pub fn close(&self) {
                self.inner.close();
            }

            /// Whether the queue holds no item (Python's `empty()`).
            #[doc(alias = "empty")]
            pub fn is_empty(&self) -> bool {
                self.inner.is_empty()
            }
        }
    };
}

/// The methods of `Queue` and `JoinableQueue`.
macro_rules! queue_methods {
    ($ty:ident) => {
        impl<T> $ty<T> {
            /// The number of items in the queue (exact at the instant it
            /// reads; others may change it at once).
            pub fn qsize(&self) -> usize {
                self.inner.qsize()
            }

            /// Whether the queue holds `maxsize` items (Python's `full()`);
            /// never for an unbounded queue.
            #[doc(alias = "full")]
            pub fn is_full(&self) -> bool {
                self.inner.is_full()
            }

            /// The most items the queue holds (0: no limit).
            pub fn maxsize(&self) -> usize {
                self.inner.maxsize()
            }

            /// The ring's size in bytes.
            pub fn capacity(&self) -> usize {
                self.inner.capacity()
            }

            /// Whether the queue is closed.
            pub fn is_closed(&self) -> bool {
                self.inner.is_closed()
            }
        }

        impl<T: Serialize + DeserializeOwned + Send> $ty<T> {
            /// Puts `item` at the end of the queue, waiting as long as it
            /// takes for room (`maxsize`, and ring space).
            ///
            /// # Cancel safety
            ///
            /// The item is enqueued whole or not at all: if the future is
            /// dropped before it completes, nothing was enqueued and the
            /// item is dropped with it. Use
            /// [`put_timeout`](Self::put_timeout) to get the item back
            /// when there is no room in time.
            ///
            /// # Errors
            ///
            /// [`PutError::Closed`] when the queue is closed;
            /// [`PutError::Encode`] when the item cannot be encoded. Both
            /// give the item back.
            #[doc(alias = "coro_put")]
            pub async fn put(&self, item: T) -> Result<(), PutError<T>> {
                wait::put(&self.inner, item, None).await.map_err(put_error)
            }

            /// Puts `item` if there is room now (Python's `put_nowait`); never
            /// waits for the producers' lock or for room.
            ///
            /// # Errors
            ///
            /// [`TryPutError::Full`] when there is no room now, or another
            /// producer holds the ring; `Closed` and `Encode` as for
            /// [`put`](Self::put). The item comes back.
            #[doc(alias = "put_nowait")]
            pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
                self.inner.try_put_now(item).map_err(|e| e.error)
            }

            /// Puts `item`, waiting at most `timeout` for room.
            ///
            /// # Cancel safety
            ///
            /// As [`put`](Self::put): if the future is dropped, nothing was
            /// enqueued and the item is dropped with it.
            ///
            /// # Errors
            ///
            /// [`TryPutError::Full`] with the item when the time ran out;
            /// `Closed` and `Encode` as for [`put`](Self::put).
            pub async fn put_timeout(
                &self,
                item: T,
                timeout: std::time::Duration,
            ) -> Result<(), TryPutError<T>> {
                wait::put(&self.inner, item, crate::time::deadline_after(timeout)).await
            }

            /// Puts `item`, waiting until `deadline` at the latest.
            ///
            /// # Cancel safety
            ///
            /// As [`put`](Self::put).
            ///
            /// # Errors
            ///
            /// As [`put_timeout`](Self::put_timeout).
            pub async fn put_deadline(
                &self,
                item: T,
                deadline: std::time::Instant,
            ) -> Result<(), TryPutError<T>> {
                wait::put(&self.inner, item, Some(deadline)).await
            }

            /// Puts `item` on the calling thread, waiting as long as it takes.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            ///
            /// # Errors
            ///
            /// As [`put`](Self::put).
            #[doc(alias = "put")]
            pub fn put_blocking(&self, item: T) -> Result<(), PutError<T>> {
                self.inner.put(item)
            }

            /// Puts `item` on the calling thread, waiting at most `timeout`.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            ///
            /// # Errors
            ///
            /// As [`put_timeout`](Self::put_timeout).
            pub fn put_timeout_blocking(
                &self,
                item: T,
                timeout: std::time::Duration,
            ) -> Result<(), TryPutError<T>> {
                self.inner.put_timeout(item, timeout)
            }

            /// Puts `item` on the calling thread, waiting until `deadline`.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            ///
            /// # Errors
            ///
            /// As [`put_timeout`](Self::put_timeout).
            pub fn put_deadline_blocking(
                &self,
                item: T,
                deadline: std::time::Instant,
            ) -> Result<(), TryPutError<T>> {
                self.inner.put_deadline(item, deadline)
            }

            /// Takes the item at the front of the queue, waiting as long as
            /// it takes for one.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: if the future is dropped before it completes,
            /// no item was taken from the queue (an item leaves the ring
            /// only in the poll that returns it).
            ///
            /// # Errors
            ///
            /// [`GetError::Closed`] when the queue is closed and empty;
            /// [`GetError::Decode`] when the front record is not a `T` (it
            /// is dropped).
            #[doc(alias = "coro_get")]
            pub async fn get(&self) -> Result<T, GetError> {
                wait::get(&self.inner, None).await.map_err(get_error)
            }

            /// Takes the front item if there is one now (Python's
            /// `get_nowait`); never waits for the consumers' lock or for an
            /// item (an item streamed in chunks is finished once begun, see
            /// the [module docs](crate::queue)).
            ///
            /// # Errors
            ///
            /// [`TryGetError::Empty`] when there is no item now, or another
            /// consumer holds the ring; `Closed` and `Decode` as for
            /// [`get`](Self::get).
            #[doc(alias = "get_nowait")]
            pub fn try_get(&self) -> Result<T, TryGetError> {
                self.inner.try_get_now().map_err(|e| e.error)
            }

            /// Takes the front item, waiting at most `timeout` for one.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe, as [`get`](Self::get).
            ///
            /// # Errors
            ///
            /// [`TryGetError::Empty`] when the time ran out; `Closed` and
            /// `Decode` as for [`get`](Self::get).
            pub async fn get_timeout(
                &self,
                timeout: std::time::Duration,
            ) -> Result<T, TryGetError> {
                wait::get(&self.inner, crate::time::deadline_after(timeout)).await
            }

            /// Takes the front item, waiting until `deadline` at the latest.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe, as [`get`](Self::get).
            ///
            /// # Errors
            ///
            /// As [`get_timeout`](Self::get_timeout).
            pub async fn get_deadline(
                &self,
                deadline: std::time::Instant,
            ) -> Result<T, TryGetError> {
                wait::get(&self.inner, Some(deadline)).await
            }

            /// Takes the front item on the calling thread, waiting as long
            /// as it takes.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            ///
            /// # Errors
            ///
            /// As [`get`](Self::get).
            #[doc(alias = "get")]
            pub fn get_blocking(&self) -> Result<T, GetError> {
                self.inner.get()
            }

            /// Takes the front item on the calling thread, waiting at most
            /// `timeout`.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            ///
            /// # Errors
            ///
            /// As [`get_timeout`](Self::get_timeout).
            pub fn get_timeout_blocking(
                &self,
                timeout: std::time::Duration,
            ) -> Result<T, TryGetError> {
                self.inner.get_timeout(timeout)
            }

            /// Takes the front item on the calling thread, waiting until
            /// `deadline` at the latest.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            ///
            /// # Errors
            ///
            /// As [`get_timeout`](Self::get_timeout).
            pub fn get_deadline_blocking(
                &self,
                deadline: std::time::Instant,
            ) -> Result<T, TryGetError> {
                self.inner.get_deadline(deadline)
            }
        }
    };
}

use {queue_methods, twin};

/// A multi-producer, multi-consumer FIFO queue between processes, awaited
/// by tasks: Python's `multiprocessing.Queue`, aioprocessing's `AioQueue`.
///
/// The same shared object as [`aiop_core::queue::Queue`] (see
/// [`as_blocking`](Queue::as_blocking)); a handle travels to spawned
/// children in their arguments, and they may use either API. See the
/// [module docs](self) for waiting, large items and cancel safety.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// use std::time::Duration;
/// use aiop_async::queue::Queue;
///
/// let q = Queue::new(1)?; // at most one item
/// q.put(1u32).await.unwrap();
/// let back = q.put_timeout(2, Duration::from_millis(1)).await.unwrap_err();
/// assert_eq!(back.into_inner(), 2);
/// assert_eq!(q.get().await.unwrap(), 1);
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Queue<T> {
    inner: aiop_core::queue::Queue<T>,
}

twin!(Queue);
queue_methods!(Queue);

impl<T> Queue<T> {
    /// Creates a queue of at most `maxsize` items (0: no limit) on a ring of
    /// [`DEFAULT_CAPACITY`] bytes.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(maxsize: usize) -> io::Result<Queue<T>> {
        aiop_core::queue::Queue::new(maxsize).map(Queue::from)
    }

    /// Creates a queue of at most `maxsize` items (0: no limit) on a ring of
    /// `capacity` bytes, as [`aiop_core::queue::Queue::with_capacity`].
    ///
    /// # Errors
    ///
    /// As [`aiop_core::queue::Queue::with_capacity`].
    pub fn with_capacity(maxsize: usize, capacity: usize) -> io::Result<Queue<T>> {
        aiop_core::queue::Queue::with_capacity(maxsize, capacity).map(Queue::from)
    }
}
