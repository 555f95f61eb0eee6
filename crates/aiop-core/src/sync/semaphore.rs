//! `Semaphore` and `BoundedSemaphore`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::OverReleaseError;
use super::{SPIN, Sleepers, anyone_sleeping, deadline_after, sleep, spin, wake};
use crate::arena::Slot;
use crate::object::{self, Kind};

/// Slot words: the count, the number of sleepers, the bound.
const VALUE: usize = 0;
const SLEEPERS: usize = 1;
const BOUND: usize = 2;

/// The shared state of both semaphores.
#[derive(Clone, Debug)]
struct Sem {
    slot: Slot,
}

impl Sem {
    fn create(name: Option<&str>, value: u32, kind: Kind) -> io::Result<Sem> {
        let slot = object::new_small(name)?;
        slot.word(VALUE).store(value, Ordering::Relaxed);
        slot.word(BOUND).store(value, Ordering::Relaxed);
        object::stamp(&slot, kind);
        Ok(Sem { slot })
    }

    fn open(name: &str, kind: Kind) -> io::Result<Sem> {
        Ok(Sem {
            slot: object::open_named(name, kind)?,
        })
    }

    fn value(&self) -> &AtomicU32 {
        self.slot.word(VALUE)
    }

    fn try_acquire(&self) -> bool {
        let v = self.value();
        let mut n = v.load(Ordering::Relaxed);
        while n > 0 {
            // Acquire: whatever the releaser did before releasing is visible.
            match v.compare_exchange_weak(n, n - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(cur) => n = cur,
            }
        }
        false
    }

    fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        let v = self.value();
        if spin(SPIN, || v.load(Ordering::Relaxed) > 0 && self.try_acquire()) {
            return true;
        }
        loop {
            if self.try_acquire() {
                return true;
            }
            let _s = Sleepers::enter(self.slot.word(SLEEPERS));
            if !sleep(v, 0, deadline) {
                return self.try_acquire();
            }
        }
    }

    /// Adds `n`, refusing to go past the bound when `bounded`.
    fn release(&self, n: u32, bounded: bool) -> Result<(), OverReleaseError> {
        let v = self.value();
        if bounded {
            let bound = self.slot.word(BOUND).load(Ordering::Relaxed);
            let mut cur = v.load(Ordering::Relaxed);
            loop {
                let next = cur
                    .checked_add(n)
                    .filter(|&x| x <= bound)
                    .ok_or(OverReleaseError)?;
                match v.compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(c) => cur = c,
                }
            }
        } else {
            // SeqCst: ordered before the sleeper check (see `Sleepers`).
            let cur = v.fetch_add(n, Ordering::SeqCst);
            if cur.checked_add(n).is_none() {
                v.fetch_sub(n, Ordering::SeqCst);
                return Err(OverReleaseError);
            }
        }
        if anyone_sleeping(self.slot.word(SLEEPERS)) {
            wake(v, n);
        }
        Ok(())
    }
}

macro_rules! semaphore_api {
    ($ty:ident, $kind:expr) => {
        impl $ty {
            /// Creates a semaphore with `value` permits.
            ///
            /// # Errors
            ///
            /// When shared memory cannot be allocated.
            pub fn new(value: u32) -> io::Result<$ty> {
                Sem::create(None, value, $kind).map(|sem| $ty { sem })
            }

            /// Creates a semaphore with `value` permits that other programs
            /// can open by `name` (see [`crate::named`]).
            ///
            /// # Errors
            ///
            /// As [`Lock::create_named`](super::Lock::create_named).
            pub fn create_named(name: &str, value: u32) -> io::Result<$ty> {
                Sem::create(Some(name), value, $kind).map(|sem| $ty { sem })
            }

            /// Opens a semaphore another program created by name.
            ///
            /// # Errors
            ///
            /// `NotFound` when no object has that name, `InvalidData` when
            /// it is not of this type.
            pub fn open_named(name: &str) -> io::Result<$ty> {
                Sem::open(name, $kind).map(|sem| $ty { sem })
            }

            /// Takes a permit, waiting as long as it takes.
            pub fn acquire(&self) {
                self.sem.acquire(None);
            }

            /// Takes a permit if one is free; never waits.
            pub fn try_acquire(&self) -> bool {
                self.sem.try_acquire()
            }

            /// Takes a permit, waiting at most `timeout`; `false` when the
            /// time ran out.
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                self.sem.acquire(deadline_after(timeout))
            }

            /// Takes a permit, waiting until `deadline` at the latest.
            pub fn acquire_deadline(&self, deadline: Instant) -> bool {
                self.sem.acquire(Some(deadline))
            }

            /// For async layers: the word to watch while no permit is free,
            /// `None` when one is (see [`crate::wait`]).
            pub fn watch(&self) -> Option<crate::wait::Watch> {
                (self.get_value() == 0)
                    .then(|| crate::wait::Watch::counted(&self.sem.slot, VALUE, 0, SLEEPERS, true))
            }

            /// The number of free permits (a snapshot): Python's `get_value()`.
            pub fn get_value(&self) -> u32 {
                self.sem.value().load(Ordering::Relaxed)
            }

            /// Whether both handles refer to the same semaphore.
            pub fn same_as(&self, other: &$ty) -> bool {
                self.sem.slot.same_as(&other.sem.slot)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("value", &self.get_value())
                    .finish()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.sem.slot.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
                let slot = Slot::deserialize(deserializer)?;
                object::check(&slot, $kind).map_err(serde::de::Error::custom)?;
                Ok($ty { sem: Sem { slot } })
            }
        }
    };
}

/// A counting semaphore shared between processes: Python's
/// `multiprocessing.Semaphore`.
///
/// Permits have no owner: any process may release, and a process that dies
/// holding permits does not give them back (as in Python).
///
/// # Examples
///
/// ```
/// use aiop_core::sync::Semaphore;
/// let sem = Semaphore::new(2)?;
/// assert!(sem.try_acquire() && sem.try_acquire());
/// assert!(!sem.try_acquire());
/// sem.release();
/// assert_eq!(sem.get_value(), 1);
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    sem: Sem,
}

semaphore_api!(Semaphore, Kind::Semaphore);

impl Semaphore {
    /// Gives back a permit, waking one waiter.
    ///
    /// # Panics
    ///
    /// If the count would pass `u32::MAX`.
    pub fn release(&self) {
        self.release_n(1);
    }

    /// Gives back `n` permits (Python's `release(n)`), waking up to `n` waiters.
    ///
    /// # Panics
    ///
    /// If the count would pass `u32::MAX`.
    pub fn release_n(&self, n: u32) {
        self.sem
            .release(n, false)
            .expect("semaphore count overflows u32");
    }
}

/// A semaphore that refuses to be released past its initial value: Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// # Examples
///
/// ```
/// use aiop_core::sync::BoundedSemaphore;
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err()); // nothing was acquired
/// sem.acquire();
/// assert!(sem.release().is_ok());
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Sem,
}

semaphore_api!(BoundedSemaphore, Kind::BoundedSemaphore);

impl BoundedSemaphore {
    /// Gives back a permit.
    ///
    /// # Errors
    ///
    /// [`OverReleaseError`] when the count is already at its initial value
    /// (nothing changes).
    pub fn release(&self) -> Result<(), OverReleaseError> {
        self.sem.release(1, true)
    }

    /// Gives back `n` permits, all or none.
    ///
    /// # Errors
    ///
    /// [`OverReleaseError`] when that would pass the initial value.
    pub fn release_n(&self, n: u32) -> Result<(), OverReleaseError> {
        self.sem.release(n, true)
    }

    /// The initial value, which the count never passes.
    pub fn bound(&self) -> u32 {
        self.sem.slot.word(BOUND).load(Ordering::Relaxed)
    }
}
