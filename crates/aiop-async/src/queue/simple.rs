//! Async `SimpleQueue<T>`.

use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_CAPACITY, GetError, PutError, get_error, put_error, twin, wait};

/// An unbounded queue between processes with only `put`, `get`,
/// `is_empty` and `close`: Python's `multiprocessing.SimpleQueue`,
/// aioprocessing's `AioSimpleQueue`.
///
/// The same shared object as [`aiop_core::queue::SimpleQueue`].
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let q = aiop_async::queue::SimpleQueue::new()?;
/// q.put(1.5f64).await.unwrap();
/// assert_eq!(q.get().await.unwrap(), 1.5);
/// q.close();
/// assert!(q.get().await.is_err());
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct SimpleQueue<T> {
    inner: aiop_core::queue::SimpleQueue<T>,
}

twin!(SimpleQueue);

impl<T> SimpleQueue<T> {
    /// Creates a queue on a ring of [`DEFAULT_CAPACITY`] bytes.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new() -> io::Result<SimpleQueue<T>> {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// Creates a queue on a ring of `capacity` bytes, as
    /// [`aiop_core::queue::Queue::with_capacity`].
    ///
    /// # Errors
    ///
    /// As [`aiop_core::queue::Queue::with_capacity`].
    pub fn with_capacity(capacity: usize) -> io::Result<SimpleQueue<T>> {
        aiop_core::queue::SimpleQueue::with_capacity(capacity).map(SimpleQueue::from)
    }
}

impl<T: Serialize + DeserializeOwned + Send> SimpleQueue<T> {
    /// Puts `item` at the end of the queue, waiting for ring space if needed.
    ///
    /// # Cancel safety
    ///
    /// The item is enqueued whole or not at all: if the future is dropped
    /// before it completes, nothing was enqueued and the item is dropped
    /// with it.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`](super::Queue::put).
    #[doc(alias = "coro_put")]
    pub async fn put(&self, item: T) -> Result<(), PutError<T>> {
        wait::put(&self.inner, item, None).await.map_err(put_error)
    }

    /// Takes the item at the front, waiting as long as it takes for one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no item
    /// was taken from the queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`](super::Queue::get).
    #[doc(alias = "coro_get")]
    pub async fn get(&self) -> Result<T, GetError> {
        wait::get(&self.inner, None).await.map_err(get_error)
    }

    /// Puts `item` on the calling thread, waiting for ring space if needed.
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

    /// Takes the front item on the calling thread, waiting as long as it
    /// takes.
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
}
