//! `Queue<T>`, and the methods it shares with `JoinableQueue<T>`.

use std::io;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ring::Ring;
use crate::object::Kind;

/// The methods of `Queue` and `JoinableQueue`: `$ty` has a `ring: Ring`.
macro_rules! queue_methods {
    ($ty:ident) => {
        /// Puts `item` at the end of the queue, waiting as long as it takes
        /// for room (`maxsize`, and ring space).
        ///
        /// # Errors
        ///
        /// [`PutError::Closed`](crate::queue::PutError::Closed) when the queue is closed;
        /// [`PutError::Encode`](crate::queue::PutError::Encode) when the item cannot be encoded. Both give
        /// the item back.
        #[doc(alias = "put_blocking")]
        pub fn put(&self, item: T) -> Result<(), $crate::queue::PutError<T>> {
            use $crate::queue::ring::Wait;
            self.ring
                .put(&item, Wait::Until(None))
                .map_err(|f| $crate::queue::PutError::from_fail(f, item))
        }

        /// Puts `item` if there is room now (Python's `put_nowait`).
        ///
        /// It spins briefly for the producers' lock but never sleeps. An
        /// item larger than half the ring goes in only if the free space
        /// takes all of it.
        ///
        /// # Errors
        ///
        /// [`TryPutError::Full`](crate::queue::TryPutError::Full) when there is no room (or another producer
        /// holds the ring), `Closed` and `Encode` as for `put`.
        #[doc(alias = "put_nowait")]
        pub fn try_put(&self, item: T) -> Result<(), $crate::queue::TryPutError<T>> {
            self.put_with(item, $crate::queue::ring::Wait::No)
        }

        /// Puts `item`, waiting at most `timeout` for room.
        ///
        /// # Errors
        ///
        /// [`TryPutError::Full`](crate::queue::TryPutError::Full) when the time ran out (an item that was
        /// being streamed is withdrawn: no consumer gets part of it),
        /// `Closed` and `Encode` as for `put`.
        pub fn put_timeout(
            &self,
            item: T,
            timeout: std::time::Duration,
        ) -> Result<(), $crate::queue::TryPutError<T>> {
            let deadline = $crate::sync::deadline_after(timeout);
            self.put_with(item, $crate::queue::ring::Wait::Until(deadline))
        }

        /// Puts `item`, waiting until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// As [`put_timeout`](Self::put_timeout).
        pub fn put_deadline(
            &self,
            item: T,
            deadline: std::time::Instant,
        ) -> Result<(), $crate::queue::TryPutError<T>> {
            self.put_with(item, $crate::queue::ring::Wait::Until(Some(deadline)))
        }

        fn put_with(
            &self,
            item: T,
            wait: $crate::queue::ring::Wait,
        ) -> Result<(), $crate::queue::TryPutError<T>> {
            self.ring
                .put(&item, wait)
                .map_err(|f| $crate::queue::TryPutError::from_fail(f, item))
        }

        /// Takes the item at the front of the queue, waiting as long as it
        /// takes for one.
        ///
        /// # Errors
        ///
        /// [`GetError::Closed`](crate::queue::GetError::Closed) when the
        /// queue is closed and empty;
        /// [`GetError::Decode`](crate::queue::GetError::Decode) when the
        /// front record is not a `T` (it is dropped).
        #[doc(alias = "get_blocking")]
        pub fn get(&self) -> Result<T, $crate::queue::GetError> {
            use $crate::queue::ring::Wait;
            self.ring
                .get(Wait::Until(None))
                .map_err($crate::queue::GetError::from_fail)
        }

        /// Takes the front item if there is one now (Python's `get_nowait`).
        ///
        /// It spins briefly for the consumers' lock but never sleeps to
        /// wait for an item. An item that is being streamed through the
        /// ring is taken whole: once its first chunk is taken, the rest is
        /// waited for.
        ///
        /// # Errors
        ///
        /// [`TryGetError::Empty`](crate::queue::TryGetError::Empty) when there is no item (or another consumer
        /// holds the ring, as in Python); `Closed` and `Decode` as for `get`.
        #[doc(alias = "get_nowait")]
        pub fn try_get(&self) -> Result<T, $crate::queue::TryGetError> {
            self.get_with($crate::queue::ring::Wait::No)
        }

        /// Takes the front item, waiting at most `timeout` for one.
        ///
        /// # Errors
        ///
        /// [`TryGetError::Empty`](crate::queue::TryGetError::Empty) when the time ran out; `Closed` and
        /// `Decode` as for `get`. As Python does, an item whose first part
        /// arrived in time is waited for to the end.
        pub fn get_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> Result<T, $crate::queue::TryGetError> {
            let deadline = $crate::sync::deadline_after(timeout);
            self.get_with($crate::queue::ring::Wait::Until(deadline))
        }

        /// Takes the front item, waiting until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// As [`get_timeout`](Self::get_timeout).
        pub fn get_deadline(
            &self,
            deadline: std::time::Instant,
        ) -> Result<T, $crate::queue::TryGetError> {
            self.get_with($crate::queue::ring::Wait::Until(Some(deadline)))
        }

        /// For async layers: takes the front item if there is one now,
        /// without spinning for the consumers' lock (see
        /// [`NotNow`](crate::queue::NotNow)). An item being streamed is
        /// finished once its first chunk is taken, as in `try_get`.
        ///
        /// # Errors
        ///
        /// As `try_get`, with whether another consumer held the ring.
        pub fn try_get_now(&self) -> Result<T, $crate::queue::NotNow<$crate::queue::TryGetError>> {
            $crate::queue::NotNow::get(self.ring.get($crate::queue::ring::Wait::Now))
        }

        /// For async layers: puts `item` if there is room now, without
        /// spinning for the producers' lock (see
        /// [`NotNow`](crate::queue::NotNow)). An item larger than half the
        /// ring starts only if its first chunk fits, and is then finished,
        /// waiting for consumers to make room.
        ///
        /// # Errors
        ///
        /// As `try_put`, with whether another producer held the ring.
        pub fn try_put_now(
            &self,
            item: T,
        ) -> Result<(), $crate::queue::NotNow<$crate::queue::TryPutError<T>>> {
            $crate::queue::NotNow::put(self.ring.put(&item, $crate::queue::ring::Wait::Now), item)
        }

        fn get_with(
            &self,
            wait: $crate::queue::ring::Wait,
        ) -> Result<T, $crate::queue::TryGetError> {
            self.ring
                .get(wait)
                .map_err($crate::queue::TryGetError::from_fail)
        }
    };
}

/// The methods that need no bounds on `T`.
macro_rules! queue_info {
    ($ty:ident) => {
        /// The number of items in the queue (exact at the instant it reads;
        /// others may change it at once).
        pub fn qsize(&self) -> usize {
            self.ring.len() as usize
        }

        /// Whether the queue holds no item (Python's `empty()`).
        #[doc(alias = "empty")]
        pub fn is_empty(&self) -> bool {
            self.ring.len() == 0
        }

        /// Whether the queue holds `maxsize` items (Python's `full()`);
        /// never for an unbounded queue.
        #[doc(alias = "full")]
        pub fn is_full(&self) -> bool {
            let max = self.ring.maxsize();
            max > 0 && self.ring.len() >= max
        }

        /// The most items the queue holds (0: no limit).
        pub fn maxsize(&self) -> usize {
            self.ring.maxsize() as usize
        }

        /// The ring's size in bytes.
        pub fn capacity(&self) -> usize {
            self.ring.capacity()
        }

        /// Closes the queue, for every process: puts fail from now on, gets
        /// take what is left and then fail, and every waiter wakes.
        pub fn close(&self) {
            self.ring.close();
        }

        /// Whether the queue is closed.
        pub fn is_closed(&self) -> bool {
            self.ring.closed()
        }

        /// Whether both handles refer to the same queue.
        pub fn same_as(&self, other: &$ty<T>) -> bool {
            self.ring.same_as(&other.ring)
        }

        /// For async layers: after a failed `try_get_now`, spins as briefly
        /// as a blocking get does before it sleeps (not at all where
        /// spinning is off) until an item may be there; returns whether it
        /// saw one (or the close).
        pub fn spin_get(&self) -> bool {
            self.ring.spin_for($crate::queue::ring::Epoch::Avail)
        }

        /// For async layers: after a failed `try_put_now`, spins as
        /// briefly as `spin_get` until a consumer freed space; returns
        /// whether it saw that (or the close).
        pub fn spin_put(&self) -> bool {
            self.ring.spin_for($crate::queue::ring::Epoch::Space)
        }

        /// For async layers: the words to watch after a failed
        /// `try_get_now` (see [`crate::wait`]).
        pub fn watch_get(&self) -> Vec<$crate::wait::Watch> {
            self.ring.watch_get()
        }

        /// For async layers: the words to watch after a failed
        /// `try_put_now` (see [`crate::wait`]).
        pub fn watch_put(&self) -> Vec<$crate::wait::Watch> {
            self.ring.watch_put()
        }
    };
}

/// The common trait implementations: Clone, Debug, serde as the two slots.
macro_rules! queue_impls {
    ($ty:ident, $kind:expr) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    ring: self.ring.clone(),
                    _t: std::marker::PhantomData,
                }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("len", &self.ring.len())
                    .field("maxsize", &self.ring.maxsize())
                    .field("capacity", &self.ring.capacity())
                    .field("closed", &self.ring.closed())
                    .finish()
            }
        }

        impl<T> serde::Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.ring.slots(), s)
            }
        }

        impl<'de, T> serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty<T>, D::Error> {
                let (slot, get) =
                    <($crate::arena::Slot, $crate::arena::Slot) as serde::Deserialize>::deserialize(d)?;
                $crate::queue::ring::Ring::from_slots(slot, get, $kind)
                    .map(|ring| $ty {
                        ring,
                        _t: std::marker::PhantomData,
                    })
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(super) use {queue_impls, queue_info, queue_methods};

/// A multi-producer, multi-consumer FIFO queue between processes: Python's
/// `multiprocessing.Queue`.
///
/// `T` is any serde type; items travel as postcard. See the [module
/// docs](super) for closing, crash behaviour and large items.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aiop_core::queue::Queue;
///
/// let q = Queue::new(1)?; // at most one item
/// q.put(vec![1u8, 2, 3]).unwrap();
/// assert!(q.is_full());
/// let back = q.put_timeout(vec![4], Duration::from_millis(1)).unwrap_err();
/// assert!(back.is_full());
/// assert_eq!(back.into_inner(), [4]);
/// assert_eq!(q.get().unwrap(), [1, 2, 3]);
/// q.close();
/// assert!(q.try_put(vec![5]).unwrap_err().is_closed());
/// # std::io::Result::Ok(())
/// ```
pub struct Queue<T> {
    ring: Ring,
    _t: PhantomData<fn(T) -> T>,
}

queue_impls!(Queue, Kind::Queue);

impl<T> Queue<T> {
    /// Creates a queue of at most `maxsize` items (0: no limit) on a ring of
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY) bytes.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new(maxsize: usize) -> io::Result<Queue<T>> {
        Self::with_capacity(maxsize, super::DEFAULT_CAPACITY)
    }

    /// Creates a queue of at most `maxsize` items (0: no limit) on a ring of
    /// `capacity` bytes (rounded up to whole pages, at least one). Items up
    /// to half the ring go in one piece; larger ones are streamed.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `capacity` passes 4 GiB; the kernel's error when
    /// shared memory cannot be allocated.
    pub fn with_capacity(maxsize: usize, capacity: usize) -> io::Result<Queue<T>> {
        Ring::create(Kind::Queue, capacity, maxsize).map(|ring| Queue {
            ring,
            _t: PhantomData,
        })
    }

    queue_info!(Queue);
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    queue_methods!(Queue);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{GetError, TryGetError, TryPutError};

    #[test]
    fn items_come_out_in_order_across_the_ring_end() {
        let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
        for round in 0..200u32 {
            let a = vec![round as u8; (round as usize * 7) % 1500];
            q.put(a.clone()).unwrap();
            q.put(vec![1, 2]).unwrap();
            assert_eq!(q.qsize(), 2);
            assert_eq!(q.get().unwrap(), a);
            assert_eq!(q.get().unwrap(), [1, 2]);
        }
        assert!(q.is_empty());
    }

    #[test]
    fn a_large_item_streams_through_a_small_ring() {
        let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 31) as u8).collect();
        let q2 = q.clone();
        let b2 = big.clone();
        let t = std::thread::spawn(move || q2.put(b2).unwrap());
        assert_eq!(q.get().unwrap(), big);
        t.join().unwrap();
        // Without a consumer, a streamed item does not fit: withdrawn.
        let e = q.try_put(big.clone()).unwrap_err();
        assert!(e.is_full());
        assert!(q.try_get().unwrap_err().is_empty());
        q.put(vec![7]).unwrap();
        assert_eq!(q.get().unwrap(), [7]);
    }

    #[test]
    fn close_drains_then_reports_closed() {
        let q = Queue::new(0).unwrap();
        q.put(1u32).unwrap();
        q.close();
        assert!(matches!(q.try_put(2), Err(TryPutError::Closed(2))));
        assert_eq!(q.get().unwrap(), 1);
        assert!(matches!(q.get(), Err(GetError::Closed)));
        assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    }

    #[test]
    fn a_record_of_another_type_is_invalid_data_and_dropped() {
        let q = Queue::<(u64, u64)>::new(0).unwrap();
        q.put((1, 2)).unwrap();
        q.put((3, 4)).unwrap();
        let as_u8 = Queue::<u8>::from_ring(q.ring.clone());
        match as_u8.get() {
            Err(GetError::Decode(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.get().unwrap(), (3, 4));
    }

    impl<T> Queue<T> {
        fn from_ring(ring: Ring) -> Queue<T> {
            Queue {
                ring,
                _t: PhantomData,
            }
        }
    }
}
