//! `Barrier`: a meeting point for a fixed number of parties.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::BrokenBarrierError;
use super::{SPIN, Sleepers, anyone_sleeping, deadline_after, sleep, spin, wake_all};
use crate::arena::Slot;
use crate::object::{self, Kind};

/// Slot words: the state, the number of sleepers, the number of parties.
const STATE: usize = 0;
const SLEEPERS: usize = 1;
const PARTIES: usize = 2;

// The state word: arrivals in this generation, broken, how the previous
// generation ended (`PREV_RESET`: by a reset of a waited-on or broken
// barrier, so its waiters fail), and the generation number. Waiters sleep
// on it; every change of generation or of `BROKEN` wakes them.
const COUNT_MASK: u32 = 0x7fff;
const BROKEN: u32 = 1 << 15;
const PREV_RESET: u32 = 1 << 16;
const GEN_SHIFT: u32 = 17;
const GEN_MASK: u32 = u32::MAX << GEN_SHIFT;

fn generation(s: u32) -> u32 {
    s >> GEN_SHIFT
}

/// The state that opens generation `gen + 1`.
fn next_generation(s: u32, reset: bool) -> u32 {
    let g = (s & GEN_MASK).wrapping_add(1 << GEN_SHIFT);
    if reset { g | PREV_RESET } else { g }
}

/// The largest number of parties a barrier supports.
pub const MAX_PARTIES: u32 = COUNT_MASK;

/// A party that has arrived at a [`Barrier`] (see [`Barrier::arrive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    generation: u32,
    index: u32,
    last: bool,
}

impl Arrival {
    /// This party's arrival index (0 for the first).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether this party arrived last, ending the generation itself.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// How the generation ended, given the state word `s`; `None` while it
    /// goes on.
    fn outcome(&self, s: u32) -> Option<Result<u32, BrokenBarrierError>> {
        if self.last {
            return Some(Ok(self.index));
        }
        let g = generation(s);
        if g != self.generation {
            let reset = g == (self.generation + 1) & (GEN_MASK >> GEN_SHIFT) && s & PREV_RESET != 0;
            Some(if reset {
                Err(BrokenBarrierError)
            } else {
                Ok(self.index)
            })
        } else if s & BROKEN != 0 {
            Some(Err(BrokenBarrierError))
        } else {
            None
        }
    }
}

/// A barrier shared between processes: Python's `multiprocessing.Barrier`.
///
/// `parties` processes (or threads) call [`wait`](Barrier::wait); the last
/// to arrive releases them all, and each gets its arrival index (0 for the
/// first). [`abort`](Barrier::abort), [`reset`](Barrier::reset) and a wait
/// that times out break the barrier for every waiter, who get
/// [`BrokenBarrierError`]; after `abort` or a timeout it stays broken until
/// `reset`.
///
/// With more callers than parties, a waiter that is slow to wake after its
/// generation ended may see a later generation end too; it then returns
/// its index as if released normally, even if that later generation was
/// reset. Python avoids this by holding new arrivals back until the old
/// generation has drained; use one barrier per group of `parties` callers.
///
/// Python's `action` is [`wait_with_action`](Barrier::wait_with_action):
/// the last arrival runs it before the others are released. A closure cannot
/// travel between processes, so each caller passes its own.
///
/// # Examples
///
/// ```
/// use aiop_core::sync::Barrier;
/// let barrier = Barrier::new(1)?;
/// assert_eq!(barrier.wait(), Ok(0));
/// barrier.abort();
/// assert!(barrier.wait().is_err());
/// barrier.reset();
/// assert_eq!(barrier.wait(), Ok(0));
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    slot: Slot,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
    /// Creates a barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 parties or more than [`MAX_PARTIES`]; otherwise
    /// when shared memory cannot be allocated.
    pub fn new(parties: u32) -> io::Result<Barrier> {
        Self::create(None, parties)
    }

    /// Creates a barrier that other programs can open by `name` (see
    /// [`crate::named`]).
    ///
    /// # Errors
    ///
    /// As [`new`](Barrier::new) and [`Lock::create_named`](super::Lock::create_named).
    pub fn create_named(name: &str, parties: u32) -> io::Result<Barrier> {
        Self::create(Some(name), parties)
    }

    /// Opens a barrier another program created by name.
    ///
    /// # Errors
    ///
    /// `NotFound` when no object has that name, `InvalidData` when it is not
    /// a `Barrier`.
    pub fn open_named(name: &str) -> io::Result<Barrier> {
        Ok(Barrier {
            slot: object::open_named(name, Kind::Barrier)?,
        })
    }

    fn create(name: Option<&str>, parties: u32) -> io::Result<Barrier> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a barrier takes 1 to {MAX_PARTIES} parties, not {parties}"),
            ));
        }
        let slot = object::new_small(name)?;
        slot.word(PARTIES).store(parties, Ordering::Relaxed);
        object::stamp(&slot, Kind::Barrier);
        Ok(Barrier { slot })
    }

    fn state(&self) -> &AtomicU32 {
        self.slot.word(STATE)
    }

    /// The number of parties that must arrive.
    pub fn parties(&self) -> u32 {
        self.slot.word(PARTIES).load(Ordering::Relaxed)
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> u32 {
        let s = self.state().load(Ordering::Acquire);
        if s & BROKEN != 0 { 0 } else { s & COUNT_MASK }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state().load(Ordering::Acquire) & BROKEN != 0
    }

    /// Waits for every party; returns this caller's arrival index.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] when the barrier is or becomes broken.
    pub fn wait(&self) -> Result<u32, BrokenBarrierError> {
        self.wait_until(None, || ())
    }

    /// Waits at most `timeout`; when the time runs out, the barrier breaks
    /// (for everyone, as in Python).
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] when the barrier is or becomes broken,
    /// including by this timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BrokenBarrierError> {
        self.wait_until(deadline_after(timeout), || ())
    }

    /// Waits until `deadline` at the latest; see [`wait_timeout`](Barrier::wait_timeout).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Barrier::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<u32, BrokenBarrierError> {
        self.wait_until(Some(deadline), || ())
    }

    /// Waits for every party; if this caller arrives last, it runs `action`
    /// before releasing the others (Python's `action`). If `action` panics,
    /// the barrier breaks and the panic goes on.
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    pub fn wait_with_action(&self, action: impl FnOnce()) -> Result<u32, BrokenBarrierError> {
        self.wait_until(None, action)
    }

    fn wait_until(
        &self,
        deadline: Option<Instant>,
        action: impl FnOnce(),
    ) -> Result<u32, BrokenBarrierError> {
        let arrival = self.arrive_with_action(action)?;
        let state = self.state();
        let mut found = None;
        if spin(SPIN, || {
            found = arrival.outcome(state.load(Ordering::Acquire));
            found.is_some()
        }) {
            return found.expect("spin found an outcome");
        }
        loop {
            let s = state.load(Ordering::Acquire);
            if let Some(r) = arrival.outcome(s) {
                return r;
            }
            let _sl = Sleepers::enter(self.slot.word(SLEEPERS));
            if !sleep(state, s, deadline) {
                let s = state.load(Ordering::Acquire);
                if let Some(r) = arrival.outcome(s) {
                    return r;
                }
                self.abort();
                return Err(BrokenBarrierError);
            }
        }
    }

    /// For async layers: arrives at the barrier without waiting. The last
    /// party ends the generation here (its [`Arrival`] is complete at
    /// once); the others then watch for its end with
    /// [`outcome`](Barrier::outcome) and [`watch`](Barrier::watch). An
    /// arrival that gives up before its outcome is known must
    /// [`abort`](Barrier::abort) the barrier, as a timeout does.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] when the barrier is broken.
    pub fn arrive(&self) -> Result<Arrival, BrokenBarrierError> {
        self.arrive_with_action(|| ())
    }

    /// As [`arrive`](Barrier::arrive); the last party runs `action` before
    /// ending the generation (see [`wait_with_action`](Barrier::wait_with_action)).
    ///
    /// # Errors
    ///
    /// As [`arrive`](Barrier::arrive).
    pub fn arrive_with_action(&self, action: impl FnOnce()) -> Result<Arrival, BrokenBarrierError> {
        let parties = self.parties();
        let state = self.state();
        let mut action = Some(action);
        loop {
            let s = state.load(Ordering::Acquire);
            if s & BROKEN != 0 {
                return Err(BrokenBarrierError);
            }
            let index = s & COUNT_MASK;
            if index + 1 >= parties {
                if let Some(a) = action.take() {
                    struct BreakOnPanic<'a>(&'a Barrier);
                    impl Drop for BreakOnPanic<'_> {
                        fn drop(&mut self) {
                            if std::thread::panicking() {
                                self.0.abort();
                            }
                        }
                    }
                    let guard = BreakOnPanic(self);
                    a();
                    std::mem::forget(guard);
                }
                // AcqRel: the others see what we (and they) wrote before.
                if state
                    .compare_exchange(
                        s,
                        next_generation(s, false),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    if anyone_sleeping(self.slot.word(SLEEPERS)) {
                        wake_all(state);
                    }
                    return Ok(Arrival {
                        generation: generation(s),
                        index,
                        last: true,
                    });
                }
                continue;
            }
            if state
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Arrival {
                    generation: generation(s),
                    index,
                    last: false,
                });
            }
        }
    }

    /// For async layers: how `arrival`'s generation ended (its index, or
    /// [`BrokenBarrierError`]); `None` while it goes on.
    pub fn outcome(&self, arrival: &Arrival) -> Option<Result<u32, BrokenBarrierError>> {
        arrival.outcome(self.state().load(Ordering::Acquire))
    }

    /// For async layers: the word to watch while `arrival`'s generation
    /// goes on, `None` once it has ended (see [`crate::wait`]).
    pub fn watch(&self, arrival: &Arrival) -> Option<crate::wait::Watch> {
        let s = self.state().load(Ordering::Acquire);
        arrival
            .outcome(s)
            .is_none()
            .then(|| crate::wait::Watch::counted(&self.slot, STATE, s, SLEEPERS, false))
    }

    /// Breaks the barrier: every waiter, and every later `wait` until
    /// [`reset`](Barrier::reset), gets [`BrokenBarrierError`].
    pub fn abort(&self) {
        let state = self.state();
        let mut s = state.load(Ordering::Relaxed);
        loop {
            let next = (s & !COUNT_MASK) | BROKEN;
            match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => s = c,
            }
        }
        wake_all(state);
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`BrokenBarrierError`].
    pub fn reset(&self) {
        let state = self.state();
        let mut s = state.load(Ordering::Relaxed);
        loop {
            // A broken barrier may still have waiters that have not seen
            // `BROKEN` yet (`abort` forgets the count): they must fail too,
            // not take the new generation for the end of theirs.
            let fail_waiters = s & BROKEN != 0 || s & COUNT_MASK > 0;
            let next = next_generation(s, fail_waiters);
            match state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => s = c,
            }
        }
        wake_all(state);
    }

    /// Whether both handles refer to the same barrier.
    pub fn same_as(&self, other: &Barrier) -> bool {
        self.slot.same_as(&other.slot)
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.slot.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Barrier, D::Error> {
        let slot = Slot::deserialize(deserializer)?;
        object::check(&slot, Kind::Barrier).map_err(serde::de::Error::custom)?;
        Ok(Barrier { slot })
    }
}
