//! `JoinableQueue<T>`: a `Queue` that counts finished items.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TaskDoneError;
use super::basic::{queue_impls, queue_info, queue_methods};
use super::ring::{Epoch, Ring, Wait};
use crate::object::Kind;

/// A [`Queue`](super::Queue) whose consumers report each item done, and
/// whose `join` waits until every item put is done: Python's
/// `multiprocessing.JoinableQueue`.
///
/// The count of unfinished items is the count of items put minus the count
/// of [`task_done`](Self::task_done) calls, both in shared memory, so it
/// holds across processes. An item lost with a process that was killed
/// while taking it is never marked done; a `join` then needs a deadline
/// ([`join_timeout`](Self::join_timeout)), as in Python.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aiop_core::queue::JoinableQueue;
///
/// let q = JoinableQueue::new(0)?;
/// q.put("job".to_string()).unwrap();
/// assert!(!q.join_timeout(Duration::from_millis(1)));
/// assert_eq!(q.get().unwrap(), "job");
/// q.task_done().unwrap();
/// q.join();
/// assert!(q.task_done().is_err()); // one too many
/// # std::io::Result::Ok(())
/// ```
pub struct JoinableQueue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

queue_impls!(JoinableQueue, Kind::JoinableQueue);

impl<T> JoinableQueue<T> {
    /// Creates a queue of at most `maxsize` items (0: no limit) on a ring of
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY) bytes.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(maxsize: usize) -> io::Result<JoinableQueue<T>> {
        Self::with_capacity(maxsize, super::DEFAULT_CAPACITY)
    }

    /// Creates a queue on a ring of `capacity` bytes, as
    /// [`Queue::with_capacity`](super::Queue::with_capacity).
    ///
    /// # Errors
    ///
    /// As [`Queue::with_capacity`](super::Queue::with_capacity).
    pub fn with_capacity(maxsize: usize, capacity: usize) -> io::Result<JoinableQueue<T>> {
        Ring::create(Kind::JoinableQueue, capacity, maxsize).map(|ring| JoinableQueue {
            ring,
            _t: PhantomData,
        })
    }

    queue_info!(JoinableQueue);

    /// Marks one item taken from the queue as done, in any process; the
    /// last one wakes every `join`.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when every item put is done already (the count is
    /// left as it is).
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let done = self.ring.done();
        let mut d = done.load(Ordering::SeqCst);
        loop {
            if d >= self.ring.puts() {
                return Err(TaskDoneError);
            }
            // SeqCst: ordered before the sleeper count read of `notify`.
            match done.compare_exchange(d, d + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(cur) => d = cur,
            }
        }
        if d + 1 >= self.ring.puts() {
            self.ring.notify(Epoch::Joined);
        }
        Ok(())
    }

    /// The items put and not yet marked done (a snapshot).
    pub fn unfinished(&self) -> usize {
        let done = self.ring.done().load(Ordering::SeqCst);
        self.ring.puts().saturating_sub(done) as usize
    }

    /// Waits until every item put so far is marked done.
    pub fn join(&self) {
        self.join_until(None);
    }

    /// Waits at most `timeout` for every item to be done; returns whether
    /// they all are.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(crate::sync::deadline_after(timeout))
    }

    /// Waits until `deadline` at the latest for every item to be done;
    /// returns whether they all are.
    pub fn join_deadline(&self, deadline: Instant) -> bool {
        self.join_until(Some(deadline))
    }

    /// For async layers: the word to watch while items are unfinished
    /// (`None`: all are done now).
    pub fn watch_join(&self) -> Option<crate::wait::Watch> {
        let w = self.ring.watch_epoch(Epoch::Joined);
        (self.unfinished() > 0).then_some(w)
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let all_done = || self.ring.done().load(Ordering::SeqCst) >= self.ring.puts();
        self.ring
            .wait_for(Epoch::Joined, Wait::Until(deadline), all_done)
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    queue_methods!(JoinableQueue);
}
