//! Async `JoinableQueue<T>`.

use std::io;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wait::{self, sleep};
use super::{
    DEFAULT_CAPACITY, GetError, PutError, TaskDoneError, TryGetError, TryPutError, get_error,
    put_error, queue_methods, twin,
};
use crate::watcher;

/// A [`Queue`](super::Queue) whose consumers report each item done, and
/// whose `join().await` waits until every item put is done: Python's
/// `multiprocessing.JoinableQueue`, aioprocessing's `AioJoinableQueue`.
///
/// The same shared object as [`aiop_core::queue::JoinableQueue`]; the
/// count of unfinished items holds across processes.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// use aiop_async::queue::JoinableQueue;
///
/// let q = JoinableQueue::new(0)?;
/// q.put("job".to_string()).await.unwrap();
/// assert_eq!(q.get().await.unwrap(), "job");
/// q.task_done().unwrap();
/// q.join().await;
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct JoinableQueue<T> {
    inner: aiop_core::queue::JoinableQueue<T>,
}

twin!(JoinableQueue);
queue_methods!(JoinableQueue);

impl<T> JoinableQueue<T> {
    /// Creates a queue of at most `maxsize` items (0: no limit) on a ring of
    /// [`DEFAULT_CAPACITY`] bytes.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(maxsize: usize) -> io::Result<JoinableQueue<T>> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// Creates a queue on a ring of `capacity` bytes, as
    /// [`aiop_core::queue::Queue::with_capacity`].
    ///
    /// # Errors
    ///
    /// As [`aiop_core::queue::Queue::with_capacity`].
    pub fn with_capacity(maxsize: usize, capacity: usize) -> io::Result<JoinableQueue<T>> {
        aiop_core::queue::JoinableQueue::with_capacity(maxsize, capacity).map(JoinableQueue::from)
    }

    /// Marks one item taken from the queue as done, in any process; the
    /// last one wakes every `join`, task or thread.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when every item put is done already.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.inner.task_done()
    }

    /// The items put and not yet marked done (a snapshot).
    pub fn unfinished(&self) -> usize {
        self.inner.unfinished()
    }

    /// Waits until every item put so far is marked done.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: waiting changes nothing, so dropping the future loses
    /// nothing.
    #[doc(alias = "coro_join")]
    pub async fn join(&self) {
        self.join_until(None).await;
    }

    /// Waits at most `timeout` for every item to be done; returns whether
    /// they all are.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`join`](Self::join).
    pub async fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(crate::time::deadline_after(timeout)).await
    }

    /// Waits until `deadline` at the latest for every item to be done;
    /// returns whether they all are.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`join`](Self::join).
    pub async fn join_deadline(&self, deadline: Instant) -> bool {
        self.join_until(Some(deadline)).await
    }

    async fn join_until(&self, deadline: Option<Instant>) -> bool {
        let mut timer = deadline.map(async_io::Timer::at);
        loop {
            let Some(watch) = self.inner.watch_join() else {
                return true;
            };
            let listen = watcher::listen(vec![watch]);
            if self.inner.unfinished() == 0 {
                return true;
            }
            if !sleep(listen, timer.as_mut()).await {
                return self.inner.unfinished() == 0;
            }
        }
    }

    /// Waits on the calling thread until every item put is done.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    #[doc(alias = "join")]
    pub fn join_blocking(&self) {
        self.inner.join();
    }

    /// Waits on the calling thread at most `timeout` for every item to be
    /// done; returns whether they all are.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    pub fn join_timeout_blocking(&self, timeout: Duration) -> bool {
        self.inner.join_timeout(timeout)
    }

    /// Waits on the calling thread until `deadline` at the latest for every
    /// item to be done; returns whether they all are.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    pub fn join_deadline_blocking(&self, deadline: Instant) -> bool {
        self.inner.join_deadline(deadline)
    }
}
