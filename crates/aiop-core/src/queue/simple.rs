//! `SimpleQueue<T>`: Python's unbounded queue with the fewest methods.

use std::io;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::basic::queue_impls;
use super::ring::{Ring, Wait};
use super::{GetError, NotNow, PutError, TryGetError, TryPutError};
use crate::object::Kind;

/// An unbounded queue between processes with only `put`, `get`,
/// `is_empty` and `close`: Python's `multiprocessing.SimpleQueue`.
///
/// It is the same ring as a [`Queue`](super::Queue) without `maxsize`
/// (a put waits only for ring space), with the same crash behaviour.
///
/// # Examples
///
/// ```
/// use aiop_core::queue::SimpleQueue;
///
/// let q = SimpleQueue::new()?;
/// q.put(1.5f64).unwrap();
/// assert!(!q.is_empty());
/// assert_eq!(q.get().unwrap(), 1.5);
/// q.close();
/// assert!(q.get().is_err());
/// # std::io::Result::Ok(())
/// ```
pub struct SimpleQueue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

queue_impls!(SimpleQueue, Kind::SimpleQueue);

impl<T> SimpleQueue<T> {
    /// Creates a queue on a ring of
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY) bytes.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new() -> io::Result<SimpleQueue<T>> {
        Self::with_capacity(super::DEFAULT_CAPACITY)
    }

    /// Creates a queue on a ring of `capacity` bytes, as
    /// [`Queue::with_capacity`](super::Queue::with_capacity).
    ///
    /// # Errors
    ///
    /// As [`Queue::with_capacity`](super::Queue::with_capacity).
    pub fn with_capacity(capacity: usize) -> io::Result<SimpleQueue<T>> {
        Ring::create(Kind::SimpleQueue, capacity, 0).map(|ring| SimpleQueue {
            ring,
            _t: PhantomData,
        })
    }

    /// Whether the queue holds no item (Python's `empty()`).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.ring.len() == 0
    }

    /// Closes the queue for every process (see [`Queue::close`](super::Queue::close)).
    pub fn close(&self) {
        self.ring.close();
    }

    /// Whether both handles refer to the same queue.
    pub fn same_as(&self, other: &SimpleQueue<T>) -> bool {
        self.ring.same_as(&other.ring)
    }

    /// For async layers: as [`Queue::spin_get`](super::Queue::spin_get).
    pub fn spin_get(&self) -> bool {
        self.ring.spin_for(super::ring::Epoch::Avail)
    }

    /// For async layers: as [`Queue::spin_put`](super::Queue::spin_put).
    pub fn spin_put(&self) -> bool {
        self.ring.spin_for(super::ring::Epoch::Space)
    }

    /// For async layers: as [`Queue::watch_get`](super::Queue::watch_get).
    pub fn watch_get(&self) -> Vec<crate::wait::Watch> {
        self.ring.watch_get()
    }

    /// For async layers: as [`Queue::watch_put`](super::Queue::watch_put).
    pub fn watch_put(&self) -> Vec<crate::wait::Watch> {
        self.ring.watch_put()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Puts `item` at the end of the queue, waiting for ring space if needed.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`](super::Queue::put).
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.ring
            .put(&item, Wait::Until(None))
            .map_err(|f| PutError::from_fail(f, item))
    }

    /// Takes the item at the front, waiting as long as it takes for one.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`](super::Queue::get).
    pub fn get(&self) -> Result<T, GetError> {
        self.ring
            .get(Wait::Until(None))
            .map_err(GetError::from_fail)
    }

    /// For async layers: as [`Queue::try_get_now`](super::Queue::try_get_now).
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get_now`](super::Queue::try_get_now).
    pub fn try_get_now(&self) -> Result<T, NotNow<TryGetError>> {
        NotNow::get(self.ring.get(Wait::Now))
    }

    /// For async layers: as [`Queue::try_put_now`](super::Queue::try_put_now).
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put_now`](super::Queue::try_put_now).
    pub fn try_put_now(&self, item: T) -> Result<(), NotNow<TryPutError<T>>> {
        NotNow::put(self.ring.put(&item, Wait::Now), item)
    }
}
