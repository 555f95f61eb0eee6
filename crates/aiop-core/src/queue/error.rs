//! The queues' error types, in the async-channel manner: a failed put gives
//! the item back.

use std::error::Error;
use std::fmt;
use std::io;

use super::get::GetFail;
use super::put::PutFail;

/// Why [`put`](super::Queue::put) failed; the item comes back.
pub enum PutError<T> {
    /// The queue is closed.
    Closed(T),
    /// The item cannot be encoded (its `Serialize` failed, for instance
    /// because it holds an aiop handle): an `InvalidData` error. Nothing
    /// was enqueued.
    Encode(T, io::Error),
}

/// Why [`try_put`](super::Queue::try_put),
/// [`put_timeout`](super::Queue::put_timeout) or
/// [`put_deadline`](super::Queue::put_deadline) failed; the item comes back.
pub enum TryPutError<T> {
    /// No room (`maxsize` items, or no ring space) in time: Python's `Full`.
    Full(T),
    /// The queue is closed.
    Closed(T),
    /// The item cannot be encoded (see [`PutError::Encode`]).
    Encode(T, io::Error),
}

/// Why [`get`](super::Queue::get) failed.
#[derive(Debug)]
pub enum GetError {
    /// The queue is closed and empty.
    Closed,
    /// The next record does not decode as the item type (it was put as
    /// another type, say): an `InvalidData` error. The record was dropped;
    /// the next get takes the next item.
    Decode(io::Error),
}

/// Why [`try_get`](super::Queue::try_get),
/// [`get_timeout`](super::Queue::get_timeout) or
/// [`get_deadline`](super::Queue::get_deadline) failed.
#[derive(Debug)]
pub enum TryGetError {
    /// No item in time: Python's `Empty`.
    Empty,
    /// The queue is closed and empty.
    Closed,
    /// The next record does not decode (see [`GetError::Decode`]).
    Decode(io::Error),
}

/// For async layers: why a `try_get_now` or `try_put_now` failed.
#[derive(Debug)]
pub struct NotNow<E> {
    /// The error as the `try_` form reports it (`Empty` or `Full` also
    /// when the side's lock was busy).
    pub error: E,
    /// Whether another process or thread held the side's lock: the caller
    /// must watch the lock word too (it is in `watch_get`/`watch_put` while
    /// held), since the ring was not looked at.
    pub busy: bool,
}

impl NotNow<TryGetError> {
    pub(super) fn get<T>(r: Result<T, GetFail>) -> Result<T, NotNow<TryGetError>> {
        r.map_err(|f| NotNow {
            busy: matches!(f, GetFail::Busy),
            error: TryGetError::from_fail(f),
        })
    }
}

impl<T> NotNow<TryPutError<T>> {
    pub(super) fn put(r: Result<(), PutFail>, item: T) -> Result<(), NotNow<TryPutError<T>>> {
        r.map_err(|f| NotNow {
            busy: matches!(f, PutFail::Busy),
            error: TryPutError::from_fail(f, item),
        })
    }
}

/// [`task_done`](super::JoinableQueue::task_done) was called more times
/// than items were put: Python's `ValueError`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskDoneError;

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Closed(t) | PutError::Encode(t, _) => t,
        }
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }

    pub(super) fn from_fail(f: PutFail, item: T) -> PutError<T> {
        match f {
            PutFail::Encode(e) => PutError::Encode(item, e),
            // `put` waits without a deadline, so never `Full`.
            PutFail::Closed | PutFail::Full | PutFail::Busy => PutError::Closed(item),
        }
    }
}

impl<T> TryPutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(t) | TryPutError::Closed(t) | TryPutError::Encode(t, _) => t,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPutError::Closed(_))
    }

    pub(super) fn from_fail(f: PutFail, item: T) -> TryPutError<T> {
        match f {
            PutFail::Full | PutFail::Busy => TryPutError::Full(item),
            PutFail::Closed => TryPutError::Closed(item),
            PutFail::Encode(e) => TryPutError::Encode(item, e),
        }
    }
}

impl GetError {
    pub(super) fn from_fail(f: GetFail) -> GetError {
        match f {
            GetFail::Decode(e) => GetError::Decode(e),
            // `get` waits without a deadline, so never `Empty`.
            GetFail::Closed | GetFail::Empty | GetFail::Busy => GetError::Closed,
        }
    }
}

impl TryGetError {
    /// Whether the queue was empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }

    /// Whether the queue was closed and empty.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryGetError::Closed)
    }

    pub(super) fn from_fail(f: GetFail) -> TryGetError {
        match f {
            GetFail::Empty | GetFail::Busy => TryGetError::Empty,
            GetFail::Closed => TryGetError::Closed,
            GetFail::Decode(e) => TryGetError::Decode(e),
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Encode(_, e) => f.debug_tuple("Encode").field(&"..").field(e).finish(),
        }
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("Full(..)"),
            TryPutError::Closed(_) => f.write_str("Closed(..)"),
            TryPutError::Encode(_, e) => f.debug_tuple("Encode").field(&"..").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str("putting into a closed queue"),
            PutError::Encode(_, e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("putting into a full queue"),
            TryPutError::Closed(_) => f.write_str("putting into a closed queue"),
            TryPutError::Encode(_, e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => f.write_str("getting from an empty and closed queue"),
            GetError::Decode(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("getting from an empty queue"),
            TryGetError::Closed => f.write_str("getting from an empty and closed queue"),
            TryGetError::Decode(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done called more times than items were put")
    }
}

impl<T> Error for PutError<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PutError::Encode(_, e) => Some(e),
            PutError::Closed(_) => None,
        }
    }
}

impl<T> Error for TryPutError<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TryPutError::Encode(_, e) => Some(e),
            _ => None,
        }
    }
}

impl Error for GetError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GetError::Decode(e) => Some(e),
            GetError::Closed => None,
        }
    }
}

impl Error for TryGetError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TryGetError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl Error for TaskDoneError {}
