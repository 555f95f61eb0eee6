//! The shared ring under every queue: its layout, its two robust locks, its
//! commit protocol and the only access to its bytes.
//!
//! ```text
//! object segment:  [ control page (4 KiB) | ring (capacity bytes) | arena (64 KiB) ]
//! header slot 0:   words 0..3  the producers' robust lock
//!                  word64 2    capacity in bytes       word64 3  maxsize (0: none)
//!                  words 14,15 kind header
//! get slot:        words 0..3  the consumers' robust lock (a slot of a shared arena)
//! control page, one cache line each:
//!   0    producer side: head, puts, stream state, and the commit intent
//!   64   "items available": epoch word, sleeper count
//!   128  consumer side: tail, gets, stream state, and the commit intent
//!   192  "space available": epoch word, sleeper count
//!   256  closed flag
//!   320  JoinableQueue: task_done count, "all done" epoch word, sleeper count
//! ```
//!
//! `head` and `tail` are monotonic byte counters (`u64`, so they never wrap
//! in practice); byte `n` of the stream lives at `n % capacity`. Records are
//! 8-byte aligned: an 8-byte header (`u32` payload length, `u32` kind) and
//! the payload, padded to 8.
//!
//! # Safety
//!
//! The ring's bytes are read and written in place, not through atomics. No
//! two processes ever access the same byte concurrently with one of them
//! writing, because every access keeps this protocol, which this module
//! checks at run time on every access it hands out:
//!
//! * bytes are written only through [`PutHeld::region`], by the holder of
//!   the producers' lock, and only in the free range `head..tail + capacity`;
//! * bytes are read only through [`GetHeld::committed`], by the holder of the
//!   consumers' lock, and only in the committed range `tail..head`;
//! * `head` only moves forward, by the producers' lock holder, with a
//!   SeqCst store *after* the bytes below it are written; `tail` only moves
//!   forward, by the consumers' lock holder, with a SeqCst store *after* the
//!   bytes below it were last read. A reader's Acquire load of `head` (a
//!   writer's of `tail`) orders its access after the other side's.
//!
//! Within this process, a mutable region borrows the [`PutHeld`] token
//! exclusively and a committed slice borrows the [`GetHeld`] token, whose
//! `commit` takes it exclusively: no `&mut` aliases another reference, and
//! no committed slice outlives the tail move that frees its bytes. A
//! process that dies leaves its lock marked by the kernel, and its
//! uncommitted bytes are never read. The ring is inside the segment (created
//! with room for it, or checked against its size when received), which
//! stays mapped while the `Ring` (which owns a handle to it) lives.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::arena::Slot;
use crate::object::{self, Kind};
use crate::sync::lock::RawLock;
use crate::sync::{LOCK_SPIN, SPIN, Sleepers, anyone_sleeping, sleep, spin, wake_all};
use crate::sys::robust::{OWNER_DIED, TID_MASK};
use crate::wait::{Watch, advance_armed, arm};

/// The control page before the ring.
const CONTROL: usize = 4096;
/// Byte offsets of the sides' lines in the control page.
const PUT_SIDE: usize = 0;
const GET_SIDE: usize = 128;
/// Offsets in a side's line: position (head or tail), record count (puts or
/// gets), stream state, and the intent of the commit in progress.
const POS: usize = 0;
const COUNT: usize = 8;
const STATE: usize = 16;
const BASE_COUNT: usize = 24;
const BASE_STATE: usize = 32;
const INTENT_POS: usize = 40;
const INTENT_COUNT: usize = 48;
const INTENT_STATE: usize = 56;
/// Epoch words and sleeper counts.
const AVAIL: usize = 64;
const GET_SLEEPERS: usize = 68;
const SPACE: usize = 192;
const PUT_SLEEPERS: usize = 196;
const CLOSED: usize = 256;
const DONE: usize = 320;
const JOINED: usize = 328;
const JOIN_SLEEPERS: usize = 332;

/// Header slot `word64`s.
const CAPACITY: usize = 2;
const MAXSIZE: usize = 3;

/// Record kinds.
pub(super) const FULL: u32 = 1;
pub(super) const CHUNK: u32 = 2;
pub(super) const LAST: u32 = 3;
pub(super) const ABORT: u32 = 4;
pub(super) const SKIP: u32 = 5;

/// A side's stream state: a message is half-way through the ring at this
/// side's position (the producer must still finish or abort it; the
/// consumer must still finish or discard it).
pub(super) const OPEN: u64 = 1;

/// The smallest and the default ring.
pub(super) const MIN_CAPACITY: usize = 4096;
pub(super) const DEFAULT_CAPACITY: usize = 1 << 20;
const MAX_CAPACITY: usize = 1 << 32;

/// How long to wait at most: not at all, or until a deadline (`None`: forever).
#[derive(Clone, Copy, Debug)]
pub(super) enum Wait {
    /// No sleep; a brief spin for a side's lock.
    No,
    /// The async layer's attempt: no spin for a side's lock (a held lock
    /// fails with `Busy`), no sleep for an item or for room. Only an item
    /// streamed in chunks, once its first chunk has moved, is finished with
    /// blocking waits for the peer (see the async layer's docs).
    Now,
    Until(Option<Instant>),
}

impl Wait {
    /// Whether the time is up (never for `Until(None)`).
    pub(super) fn expired(self) -> bool {
        match self {
            Wait::No | Wait::Now => true,
            Wait::Until(None) => false,
            Wait::Until(Some(d)) => Instant::now() >= d,
        }
    }
}

/// Which epoch word a waiter sleeps on.
#[derive(Clone, Copy, Debug)]
pub(super) enum Epoch {
    /// Items were committed (or the queue closed).
    Avail,
    /// Space was freed (or the queue closed).
    Space,
    /// Every item was marked done.
    Joined,
}

impl Epoch {
    fn words(self) -> (usize, usize) {
        match self {
            Epoch::Avail => (AVAIL, GET_SLEEPERS),
            Epoch::Space => (SPACE, PUT_SLEEPERS),
            Epoch::Joined => (JOINED, JOIN_SLEEPERS),
        }
    }
}

/// A queue's shared state: the object slot (producers' lock), the
/// consumers' lock, and the ring's geometry.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    put_lock: RawLock,
    get_lock: RawLock,
    cap: usize,
    maxsize: u64,
}

impl Ring {
    /// A new ring of at least `capacity` bytes (rounded up to pages), for an
    /// object of kind `kind`.
    pub(super) fn create(kind: Kind, capacity: usize, maxsize: usize) -> io::Result<Ring> {
        let cap = capacity
            .max(MIN_CAPACITY)
            .checked_next_multiple_of(4096)
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "queue capacity too large")
            })?;
        let slot = object::new_with_payload(CONTROL + cap, None)?;
        slot.word64(CAPACITY).store(cap as u64, Ordering::Relaxed);
        slot.word64(MAXSIZE)
            .store(maxsize as u64, Ordering::Relaxed);
        let get = Slot::new()?;
        object::stamp(&get, kind);
        // Release inside: whoever sees the header sees the geometry.
        object::stamp(&slot, kind);
        Ok(Ring {
            put_lock: RawLock::new(slot)?,
            get_lock: RawLock::new(get)?,
            cap,
            maxsize: maxsize as u64,
        })
    }

    /// Checks a received ring's slots against `kind` and its geometry
    /// against its segment.
    pub(super) fn from_slots(slot: Slot, get: Slot, kind: Kind) -> io::Result<Ring> {
        object::check(&slot, kind)?;
        object::check(&get, kind)?;
        let cap = slot.word64(CAPACITY).load(Ordering::Relaxed);
        let fits = usize::try_from(cap).ok().filter(|&c| {
            c >= MIN_CAPACITY && c % 4096 == 0 && c + CONTROL <= object::payload_len(&slot)
        });
        let Some(cap) = fits else {
            return Err(object::invalid_data(format!(
                "not a valid queue: its capacity {cap} does not fit its memory"
            )));
        };
        let maxsize = slot.word64(MAXSIZE).load(Ordering::Relaxed);
        Ok(Ring {
            put_lock: RawLock::new(slot)?,
            get_lock: RawLock::new(get)?,
            cap,
            maxsize,
        })
    }

    /// The two slots a handle serializes as.
    pub(super) fn slots(&self) -> (&Slot, &Slot) {
        (self.put_lock.slot(), self.get_lock.slot())
    }

    pub(super) fn same_as(&self, other: &Ring) -> bool {
        self.put_lock.slot().same_as(other.put_lock.slot())
    }

    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    pub(super) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.put_lock.slot().segment().atomic_u64(off)
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.put_lock.slot().segment().atomic_u32(off)
    }

    /// The committed end of the stream (Acquire: the bytes below it are written).
    pub(super) fn head(&self) -> u64 {
        self.u64_at(PUT_SIDE + POS).load(Ordering::Acquire)
    }

    /// The consumed end of the stream (Acquire: the bytes below it are read).
    pub(super) fn tail(&self) -> u64 {
        self.u64_at(GET_SIDE + POS).load(Ordering::Acquire)
    }

    /// Items committed so far (SeqCst: compared with `gets` and `done`
    /// across processes).
    pub(super) fn puts(&self) -> u64 {
        self.u64_at(PUT_SIDE + COUNT).load(Ordering::SeqCst)
    }

    /// Items taken so far.
    pub(super) fn gets(&self) -> u64 {
        self.u64_at(GET_SIDE + COUNT).load(Ordering::SeqCst)
    }

    /// Items in the ring (a snapshot).
    pub(super) fn len(&self) -> u64 {
        // Read gets first: both only grow, so this never underflows.
        let gets = self.gets();
        self.puts().saturating_sub(gets)
    }

    /// Whether the stream state at this side's position is open.
    fn state(&self, side: usize) -> u64 {
        self.u64_at(side + STATE).load(Ordering::Relaxed)
    }

    pub(super) fn closed(&self) -> bool {
        // SeqCst: ordered with the epoch protocol of the waiters.
        self.u32_at(CLOSED).load(Ordering::SeqCst) != 0
    }

    /// Closes the queue and wakes every waiter.
    pub(super) fn close(&self) {
        self.u32_at(CLOSED).store(1, Ordering::SeqCst);
        for e in [Epoch::Avail, Epoch::Space] {
            let (word, _) = e.words();
            advance_armed(self.u32_at(word));
            wake_all(self.u32_at(word));
        }
    }

    /// Wakes the sleepers of `epoch`, if any. The caller's state change was
    /// a SeqCst store or read-modify-write (see [`Sleepers`]).
    pub(super) fn notify(&self, epoch: Epoch) {
        let (word, sleepers) = epoch.words();
        // Wake once per sleep: a waiter arms the word before it sleeps, and
        // only the waker that disarms it makes the call. The others only
        // move the epoch on, which a waiter about to arm notices (its
        // compare-exchange fails) before it could sleep on a stale value.
        if anyone_sleeping(self.u32_at(sleepers)) && advance_armed(self.u32_at(word)) {
            wake_all(self.u32_at(word));
        }
    }

    /// Waits until `ready()` or the deadline; returns `ready()`'s last
    /// answer. `ready` must read what it checks with SeqCst loads.
    pub(super) fn wait_for(
        &self,
        epoch: Epoch,
        wait: Wait,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if ready() {
            return true;
        }
        let Wait::Until(deadline) = wait else {
            return false;
        };
        if spin(SPIN, &mut ready) {
            return true;
        }
        let (word, sleepers) = epoch.words();
        let word = self.u32_at(word);
        loop {
            let _s = Sleepers::enter(self.u32_at(sleepers));
            let seen = word.load(Ordering::SeqCst);
            if ready() {
                return true;
            }
            // Arm the word for the waker (see `notify`); if the epoch moved
            // on meanwhile, look again.
            let Some(armed) = arm(word, seen) else {
                continue;
            };
            if !sleep(word, armed, deadline) {
                return ready();
            }
        }
    }

    /// For the async layer: the epoch word of `epoch` as it is now, counted
    /// with its sleepers.
    pub(super) fn watch_epoch(&self, epoch: Epoch) -> Watch {
        let (word, sleepers) = epoch.words();
        let seg = self.put_lock.slot().segment();
        let now = self.u32_at(word).load(Ordering::SeqCst);
        Watch::armed_at(seg, word, now, sleepers, false)
    }

    /// For the async layer: spins as briefly as a blocking waiter does
    /// before it sleeps (and only where spinning is on) until `epoch` may
    /// have changed: records past the tail or space freed since the call
    /// began, or the queue closed. Returns whether it saw such a change.
    pub(super) fn spin_for(&self, epoch: Epoch) -> bool {
        let tail = self.tail();
        spin(SPIN, || match epoch {
            Epoch::Avail => self.head() != self.tail() || self.closed(),
            Epoch::Space => self.tail() != tail || self.closed(),
            Epoch::Joined => false,
        })
    }

    /// For the async layer: what to watch after a failed non-blocking get
    /// (the "items available" epoch, and the consumers' lock while held).
    pub(super) fn watch_get(&self) -> Vec<Watch> {
        let mut w = vec![self.watch_epoch(Epoch::Avail)];
        w.extend(self.get_lock.watch());
        w
    }

    /// For the async layer: what to watch after a failed non-blocking put
    /// (the "space available" epoch, and the producers' lock while held).
    pub(super) fn watch_put(&self) -> Vec<Watch> {
        let mut w = vec![self.watch_epoch(Epoch::Space)];
        w.extend(self.put_lock.watch());
        w
    }

    /// The JoinableQueue's count of `task_done` calls.
    pub(super) fn done(&self) -> &AtomicU64 {
        self.u64_at(DONE)
    }

    /// Takes the producers' lock. `None` when the wait ran out; the flag
    /// says whether its previous holder died holding it.
    pub(super) fn lock_put(&self, wait: Wait) -> Option<(PutHeld<'_>, bool)> {
        take(&self.put_lock, wait).map(|died| (PutHeld { ring: self }, died))
    }

    /// Takes the consumers' lock, as [`lock_put`](Ring::lock_put).
    pub(super) fn lock_get(&self, wait: Wait) -> Option<(GetHeld<'_>, bool)> {
        take(&self.get_lock, wait).map(|died| (GetHeld { ring: self }, died))
    }

    /// Whether the producers' lock is free with its holder dead, or free
    /// although a message is half-written (both mean nobody will finish it).
    pub(super) fn producer_gone(&self) -> bool {
        let w = self.put_lock.slot().word(0).load(Ordering::Relaxed);
        w & TID_MASK == 0 && (w & OWNER_DIED != 0 || self.state(PUT_SIDE) == OPEN)
    }

    /// Repairs `side` after its lock holder died: completes or undoes the
    /// commit it was in (see [`commit`](Ring::commit)).
    fn repair(&self, side: usize) {
        let at = |o: usize| self.u64_at(side + o);
        let r = Ordering::Relaxed;
        let (count, state) = if at(POS).load(r) == at(INTENT_POS).load(r) {
            (at(INTENT_COUNT).load(r), at(INTENT_STATE).load(r))
        } else {
            (at(BASE_COUNT).load(r), at(BASE_STATE).load(r))
        };
        at(COUNT).store(count, Ordering::SeqCst);
        at(STATE).store(state, r);
    }

    /// Moves `side`'s position to `pos`, its count to `count` and its stream
    /// state to `state`, such that a death at any instant can be repaired:
    /// the intent names the new position, and the position is stored last.
    fn commit(&self, side: usize, pos: u64, count: u64, state: u64) {
        let at = |o: usize| self.u64_at(side + o);
        // Relaxed under the lock: the next holder (also after a death, which
        // the kernel reports through the lock word) sees them all.
        let r = Ordering::Relaxed;
        at(BASE_COUNT).store(at(COUNT).load(r), r);
        at(BASE_STATE).store(at(STATE).load(r), r);
        at(INTENT_POS).store(pos, r);
        at(INTENT_COUNT).store(count, r);
        at(INTENT_STATE).store(state, r);
        // SeqCst: a `task_done` or `qsize` that sees the new position sees
        // the new count.
        at(COUNT).store(count, Ordering::SeqCst);
        at(STATE).store(state, r);
        // SeqCst: publishes the bytes (a release) and is ordered before the
        // sleeper count read of `notify`.
        at(POS).store(pos, Ordering::SeqCst);
    }
}

/// Takes `lock` within `wait`; `Some(owner_died)` on success.
fn take(lock: &RawLock, wait: Wait) -> Option<bool> {
    match wait {
        Wait::Until(deadline) => lock.acquire(deadline),
        Wait::Now => lock.try_acquire(),
        Wait::No => lock.try_acquire().or_else(|| {
            // A brief spin, no sleep: holders of a ring lock usually let go
            // within a record's copy.
            let mut got = None;
            spin(LOCK_SPIN, || {
                !lock.is_locked() && {
                    got = lock.try_acquire();
                    got.is_some()
                }
            });
            got
        }),
    }
}

/// How long a consumer in the middle of a message waits before it checks
/// whether the message's producer died.
pub(super) const POLL: Duration = Duration::from_millis(20);

/// Rounds a record length up to the ring's 8-byte alignment.
pub(super) fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

/// The producers' lock, held: the right to write free bytes and move `head`.
#[derive(Debug)]
pub(super) struct PutHeld<'r> {
    ring: &'r Ring,
}

impl Drop for PutHeld<'_> {
    fn drop(&mut self) {
        // Err only if another thread of this process released the lock by
        // hand, which the queue never does.
        let _ = self.ring.put_lock.release();
    }
}

impl PutHeld<'_> {
    /// Our own `head` (only the lock holder moves it).
    pub(super) fn head(&self) -> u64 {
        self.ring.u64_at(PUT_SIDE + POS).load(Ordering::Relaxed)
    }

    pub(super) fn puts(&self) -> u64 {
        self.ring.u64_at(PUT_SIDE + COUNT).load(Ordering::Relaxed)
    }

    pub(super) fn stream_open(&self) -> bool {
        self.ring.state(PUT_SIDE) == OPEN
    }

    /// Completes or undoes the commit of a producer that died.
    pub(super) fn repair(&mut self) {
        self.ring.repair(PUT_SIDE);
    }

    /// Publishes everything written below `head`, and wakes consumers.
    pub(super) fn commit(&mut self, head: u64, puts: u64, state: u64) {
        self.ring.commit(PUT_SIDE, head, puts, state);
        self.ring.notify(Epoch::Avail);
    }

    /// Free bytes `pos..pos + len`, contiguous in the ring, to write.
    ///
    /// # Panics
    ///
    /// If the range is not free (outside `head..tail + capacity`) or wraps
    /// around the ring's end: a bug of the queue, never of its input.
    pub(super) fn region(&mut self, pos: u64, len: usize) -> &mut [u8] {
        let cap = self.ring.cap;
        let off = (pos % cap as u64) as usize;
        let tail = self.ring.tail();
        assert!(
            pos >= self.head() && pos + len as u64 <= tail + cap as u64 && off + len <= cap,
            "queue ring: write of {len} bytes at {pos} outside the free range"
        );
        // SAFETY: `off + len <= cap`, so the range lies in the ring, inside
        // the segment that `self.ring` keeps mapped (module Safety). The
        // bytes are free: no process reads them until `head` passes them,
        // which only this lock holder does, after this borrow of `self`
        // ends; no other writer exists while we hold the lock, and the
        // exclusive borrow of the token makes this the only reference here.
        unsafe { std::slice::from_raw_parts_mut(self.ring.base().wrapping_add(off), len) }
    }
}

/// The consumers' lock, held: the right to read committed bytes and move `tail`.
#[derive(Debug)]
pub(super) struct GetHeld<'r> {
    ring: &'r Ring,
}

impl Drop for GetHeld<'_> {
    fn drop(&mut self) {
        let _ = self.ring.get_lock.release();
    }
}

impl GetHeld<'_> {
    /// Our own `tail` (only the lock holder moves it).
    pub(super) fn tail(&self) -> u64 {
        self.ring.u64_at(GET_SIDE + POS).load(Ordering::Relaxed)
    }

    pub(super) fn gets(&self) -> u64 {
        self.ring.u64_at(GET_SIDE + COUNT).load(Ordering::Relaxed)
    }

    pub(super) fn stream_open(&self) -> bool {
        self.ring.state(GET_SIDE) == OPEN
    }

    /// Completes or undoes the commit of a consumer that died.
    pub(super) fn repair(&mut self) {
        self.ring.repair(GET_SIDE);
    }

    /// Frees everything below `tail`, and wakes producers.
    pub(super) fn commit(&mut self, tail: u64, gets: u64, state: u64) {
        self.ring.commit(GET_SIDE, tail, gets, state);
        self.ring.notify(Epoch::Space);
    }

    /// Drops every committed byte (a corrupt ring cannot be parsed on).
    pub(super) fn discard_all(&mut self) {
        let head = self.ring.head();
        let gets = self.ring.puts();
        self.commit(head, gets, 0);
    }

    /// Committed bytes `pos..pos + len`, contiguous in the ring, to read.
    ///
    /// # Panics
    ///
    /// If the range is not committed (outside `tail..head`) or wraps around
    /// the ring's end: a bug of the queue, never of its input (callers check
    /// record lengths first).
    pub(super) fn committed(&self, pos: u64, len: usize) -> &[u8] {
        let cap = self.ring.cap;
        let off = (pos % cap as u64) as usize;
        let head = self.ring.head();
        assert!(
            pos >= self.tail() && pos + len as u64 <= head && off + len <= cap,
            "queue ring: read of {len} bytes at {pos} outside the committed range"
        );
        // SAFETY: in the ring, inside the mapped segment (module Safety).
        // The bytes are committed: no process writes them until `tail`
        // passes them, which only this lock holder does, through `commit`,
        // which borrows `self` exclusively and so ends this borrow first.
        unsafe { std::slice::from_raw_parts(self.ring.base().wrapping_add(off), len) }
    }
}

impl Ring {
    fn base(&self) -> *mut u8 {
        // In bounds: the segment holds the control page and the ring.
        self.put_lock
            .slot()
            .segment()
            .as_ptr()
            .wrapping_add(CONTROL)
    }

    /// Takes over a dead consumer's or a dead producer's half-finished
    /// commit and, for the producer side, closes a message it left open
    /// with an `ABORT` record, so consumers can drop its beginning.
    pub(super) fn recover_put(&self, held: &mut PutHeld<'_>) {
        held.repair();
        if held.stream_open() {
            let head = held.head();
            // Room for it is reserved by every commit of an open message.
            write_header(held, head, 0, ABORT);
            let puts = held.puts();
            held.commit(head + 8, puts, 0);
        }
    }
}

/// Writes a record header at `pos`.
pub(super) fn write_header(held: &mut PutHeld<'_>, pos: u64, len: u32, kind: u32) {
    let h = held.region(pos, 8);
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&kind.to_le_bytes());
}

/// Reads the record header at `pos`: (payload length, kind).
pub(super) fn read_header(held: &GetHeld<'_>, pos: u64) -> (u32, u32) {
    let h = held.committed(pos, 8);
    (
        u32::from_le_bytes(h[..4].try_into().expect("four bytes")),
        u32::from_le_bytes(h[4..].try_into().expect("four bytes")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stores of [`Ring::commit`], in its order; a process killed
    /// after `done` of them made only those.
    fn commit_killed(ring: &Ring, side: usize, (pos, count, state): (u64, u64, u64), done: usize) {
        let at = |o: usize| ring.u64_at(side + o);
        let r = Ordering::Relaxed;
        let (c, s) = (at(COUNT).load(r), at(STATE).load(r));
        let stores = [
            (BASE_COUNT, c),
            (BASE_STATE, s),
            (INTENT_POS, pos),
            (INTENT_COUNT, count),
            (INTENT_STATE, state),
            (COUNT, count),
            (STATE, state),
            (POS, pos),
        ];
        for &(o, v) in &stores[..done] {
            at(o).store(v, Ordering::SeqCst);
        }
    }

    fn side_now(ring: &Ring, side: usize) -> (u64, u64, u64) {
        let at = |o: usize| ring.u64_at(side + o).load(Ordering::SeqCst);
        (at(POS), at(COUNT), at(STATE))
    }

    #[test]
    fn a_commit_killed_after_any_store_is_completed_or_undone_by_repair() {
        let ring = Ring::create(Kind::Queue, 4096, 0).unwrap();
        // A small xorshift: deaths at every step, also one after another.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for side in [PUT_SIDE, GET_SIDE] {
            let mut now = side_now(&ring, side);
            for _ in 0..5000 {
                let next = (now.0 + 8 * (1 + rand(4)), now.1 + rand(2), rand(2));
                let done = rand(9) as usize;
                commit_killed(&ring, side, next, done);
                ring.repair(side);
                let got = side_now(&ring, side);
                if done == 8 {
                    now = next;
                }
                assert_eq!(got, now, "killed after {done} stores");
                // Repair again (a second death before any commit) changes nothing.
                ring.repair(side);
                assert_eq!(side_now(&ring, side), now);
            }
        }
    }
}
