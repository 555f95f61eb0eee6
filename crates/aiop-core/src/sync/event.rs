//! `Event`: a flag that processes wait on.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{SPIN, Sleepers, anyone_sleeping, deadline_after, sleep, spin, wake_all};
use crate::arena::Slot;
use crate::object::{self, Kind};

/// Slot words: the flag (0 or 1) and the number of sleepers.
const FLAG: usize = 0;
const SLEEPERS: usize = 1;

/// A flag shared between processes: Python's `multiprocessing.Event`.
///
/// `set` wakes every waiter (one system call, and none when nobody sleeps);
/// `wait` returns at once while the flag is set.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aiop_core::sync::Event;
/// let ev = Event::new()?;
/// assert!(!ev.wait_timeout(Duration::from_millis(1)));
/// ev.set();
/// ev.wait();
/// assert!(ev.is_set());
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct Event {
    slot: Slot,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// Creates a cleared event.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new() -> io::Result<Event> {
        Self::create(None)
    }

    /// Creates a cleared event that other programs can open by `name` (see
    /// [`crate::named`]).
    ///
    /// # Errors
    ///
    /// As [`Lock::create_named`](super::Lock::create_named).
    pub fn create_named(name: &str) -> io::Result<Event> {
        Self::create(Some(name))
    }

    /// Opens an event another program created by name.
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name, `InvalidData` when it is
    /// not an `Event`.
    pub fn open_named(name: &str) -> io::Result<Event> {
        Ok(Event {
            slot: object::open_named(name, Kind::Event)?,
        })
    }

    fn create(name: Option<&str>) -> io::Result<Event> {
        let slot = object::new_small(name)?;
        object::stamp(&slot, Kind::Event);
        Ok(Event { slot })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let flag = self.slot.word(FLAG);
        // SeqCst: ordered before the sleeper check (see `Sleepers`); also a
        // release for whatever the setter wrote before.
        if flag.swap(1, Ordering::SeqCst) == 0 && anyone_sleeping(self.slot.word(SLEEPERS)) {
            wake_all(flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.slot.word(FLAG).store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with `set`.
        self.slot.word(FLAG).load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(deadline_after(timeout))
    }

    /// Waits until `deadline` at the latest; returns whether the flag is set.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_until(Some(deadline))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() || spin(SPIN, || self.is_set()) {
            return true;
        }
        let flag = self.slot.word(FLAG);
        loop {
            if self.is_set() {
                return true;
            }
            let _s = Sleepers::enter(self.slot.word(SLEEPERS));
            if !sleep(flag, 0, deadline) {
                return self.is_set();
            }
        }
    }

    /// For async layers: the word to watch while the flag is clear, `None`
    /// when it is set (see [`crate::wait`]).
    pub fn watch(&self) -> Option<crate::wait::Watch> {
        (!self.is_set()).then(|| crate::wait::Watch::counted(&self.slot, FLAG, 0, SLEEPERS, false))
    }

    /// Whether both handles refer to the same event.
    pub fn same_as(&self, other: &Event) -> bool {
        self.slot.same_as(&other.slot)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.slot.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        object::check(&slot, Kind::Event).map_err(serde::de::Error::custom)?;
        Ok(Event { slot })
    }
}
