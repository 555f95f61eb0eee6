//! Shared (cross-process) futex wait, wake and waitv.
//!
//! Every call here uses *shared* futexes (no `FUTEX_PRIVATE_FLAG`): the words
//! live in `MAP_SHARED` memory that other processes map, and a private futex is
//! keyed by (mm, address), so a private wake would never reach a waiter in
//! another process (verified in `probes/rustix_probe`, check 5).
//!
//! Timed waits use absolute `CLOCK_MONOTONIC` deadlines (`FUTEX_WAIT_BITSET`
//! and `futex_waitv` both take absolute times), so a wait interrupted by a
//! signal (`EINTR`) is simply retried with the same deadline: no drift, no
//! timeout arithmetic in the retry loop.
//!
//! This module has no `unsafe` code: rustix's futex functions take
//! `&AtomicU32`, and [`waitv`] builds its `futex_waitv` array from references.

use std::io;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;
use rustix::time::{ClockId, Timespec, clock_gettime};

/// The most words one [`waitv`] call may wait on (the kernel's `FUTEX_WAITV_MAX`).
pub const WAITV_MAX: usize = 128;

/// How long a futex wait may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Wait until woken.
    Never,
    /// Wait at most this long from the call.
    After(Duration),
    /// Wait until this instant at the latest.
    At(Instant),
}

impl Timeout {
    /// The absolute deadline of this timeout, computed once at the start of a wait.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Timeout::Never => None,
            // An overflowing duration is as good as no deadline.
            Timeout::After(d) => Instant::now().checked_add(d),
            Timeout::At(t) => Some(t),
        }
    }
}

impl From<Option<Duration>> for Timeout {
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Timeout::Never, Timeout::After)
    }
}

/// Why a [`wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A wake-up arrived (or a spurious one: callers re-check their condition).
    Woken,
    /// The word did not hold the expected value when the kernel looked.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Converts an `Instant` deadline to an absolute `CLOCK_MONOTONIC` timespec.
///
/// `Instant` is `CLOCK_MONOTONIC` on Linux, but its raw value is private, so
/// the deadline is re-expressed relative to a fresh reading of the clock.
fn monotonic_timespec(deadline: Instant) -> Timespec {
    let now_ts = clock_gettime(ClockId::Monotonic);
    let left = deadline.saturating_duration_since(Instant::now());
    let mut sec = now_ts.tv_sec.saturating_add(left.as_secs() as i64);
    let mut nsec = now_ts.tv_nsec + i64::from(left.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Sleeps while `word == expected`, until woken or until `timeout` passes.
///
/// Uses `FUTEX_WAIT_BITSET` with a match-any mask, which takes an absolute
/// monotonic deadline. `EINTR` is retried with the same deadline.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Timeout) -> io::Result<Wake> {
    wait_until(word, expected, timeout.deadline())
}

/// [`wait`] with an absolute deadline (`None` waits forever).
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> io::Result<Wake> {
    let ts = deadline.map(monotonic_timespec);
    loop {
        match futex::wait_bitset(
            word,
            futex::Flags::empty(),
            expected,
            ts.as_ref(),
            NonZeroU32::MAX,
        ) {
            Ok(()) => return Ok(Wake::Woken),
            Err(Errno::AGAIN) => return Ok(Wake::Changed),
            Err(Errno::TIMEDOUT) => return Ok(Wake::TimedOut),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Wakes at most `n` waiters sleeping on `word`; returns how many woke.
pub fn wake(word: &AtomicU32, n: u32) -> io::Result<usize> {
    Ok(futex::wake(word, futex::Flags::empty(), n)?)
}

/// Wakes every waiter sleeping on `word`; returns how many woke.
pub fn wake_all(word: &AtomicU32) -> io::Result<usize> {
    wake(word, i32::MAX as u32)
}

/// Why a [`waitv`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeV {
    /// The word at this index was woken (or one of the words had changed:
    /// callers re-check every word).
    Woken(usize),
    /// At least one word did not hold its expected value.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps on several words at once (`futex_waitv`, Linux 5.16+) until one is
/// woken, one no longer holds its expected value, or the deadline passes.
///
/// `words` pairs each word with its expected value; at most [`WAITV_MAX`].
///
/// # Errors
///
/// `InvalidInput` for an empty list or more than [`WAITV_MAX`] words; the
/// kernel's error otherwise (`ENOSYS` before Linux 5.16).
pub fn waitv(words: &[(&AtomicU32, u32)], timeout: Timeout) -> io::Result<WakeV> {
    if words.is_empty() || words.len() > WAITV_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "futex waitv takes 1 to {WAITV_MAX} words, got {}",
                words.len()
            ),
        ));
    }
    let mut waits = [futex::Wait::new(); WAITV_MAX];
    for (slot, (word, val)) in waits.iter_mut().zip(words) {
        slot.val = u64::from(*val);
        slot.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
        slot.flags = futex::WaitFlags::SIZE_U32;
    }
    let ts = timeout.deadline().map(monotonic_timespec);
    loop {
        match futex::waitv(
            &waits[..words.len()],
            futex::WaitvFlags::empty(),
            ts.as_ref(),
            ClockId::Monotonic,
        ) {
            Ok(i) => return Ok(WakeV::Woken(i)),
            Err(Errno::AGAIN) => return Ok(WakeV::Changed),
            Err(Errno::TIMEDOUT) => return Ok(WakeV::TimedOut),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
