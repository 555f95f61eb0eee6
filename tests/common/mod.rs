//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aiop::arena::Slot;
use aiop::futex::{self, Timeout};

/// A deadline far enough away that only a real hang reaches it.
pub const GENEROUS: Duration = Duration::from_secs(30);

/// Waits until word `i` of `slot` is not zero (futex wait, no polling);
/// returns its value, or panics at the deadline.
pub fn wait_nonzero(slot: &Slot, i: usize) -> u32 {
    let deadline = Instant::now() + GENEROUS;
    loop {
        let v = slot.word(i).load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        let r = futex::wait(slot.word(i), 0, Timeout::At(deadline)).expect("futex wait");
        assert_ne!(
            r,
            futex::Wake::TimedOut,
            "word {i} stayed zero for {GENEROUS:?}"
        );
    }
}

/// Stores `v` in word `i` of `slot` and wakes its waiters.
pub fn set_and_wake(slot: &Slot, i: usize, v: u32) {
    slot.word(i).store(v, Ordering::Release);
    futex::wake_all(slot.word(i)).expect("futex wake");
}

/// Parks the calling thread forever (a child that must be ended from outside).
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// A pidfd for `pid`, which the caller knows to be alive.
pub fn pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open")
}

/// Whether the process behind `pidfd` ends within `within`.
pub fn ends_within(pidfd: &OwnedFd, within: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Arguments that serialize but refuse to deserialize in the child.
#[derive(Debug)]
pub struct RefusesToDeserialize;

impl serde::Serialize for RefusesToDeserialize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for RefusesToDeserialize {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("refused on purpose"))
    }
}
