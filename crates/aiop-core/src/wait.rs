//! What an async waiter watches: the futex word behind a `try_` operation.
//!
//! The async layer (`aiop-async`) never blocks a thread per waiting task.
//! When a `try_` operation fails, it asks the primitive for a [`Watch`]:
//! the word whose change means "try again", the value it holds now, and
//! how to make wakers issue `FUTEX_WAKE` for it (a waiter count, or the
//! `WAITERS` bit of a lock word). One watcher thread per process sleeps on
//! every watched word at once (`futex_waitv`) and wakes the tasks when one
//! changes.
//!
//! The protocol, for a task:
//!
//! 1. `try_x()`; on failure, `watch = primitive.watch_x()` (`None` means the
//!    state changed already: try again);
//! 2. [`Watch::announce`] (done by the watcher's registration), which raises
//!    the waiter count (SeqCst) or sets `WAITERS`;
//! 3. `try_x()` again: a change made before step 2 is seen here;
//! 4. sleep until the watcher reports a change of the word; a change made
//!    after step 2 either wakes the watcher (the waker saw the count) or
//!    makes its `futex_waitv` return at once (the word no longer holds the
//!    expected value).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::arena::Slot;
use crate::shm::Segment;
use crate::sys::robust::{TID_MASK, WAITERS};

/// The low bit of an epoch word under the wake-once protocol: set by a
/// waiter about to sleep on the word's value, cleared by the first waker,
/// which alone makes the `FUTEX_WAKE` call. The epoch counts in steps of 2.
///
/// Without it, every change made while a waiter's count is raised costs a
/// system call, and the count stays raised until the woken waiter runs
/// again: tens of microseconds on a loaded or virtual machine, during which
/// a fast producer would make a call per item.
pub(crate) const ARMED: u32 = 1;

/// Whether to wake after moving an epoch word on: the waker's step of the
/// wake-once protocol. Adds 2 to the epoch and clears [`ARMED`] in one
/// atomic step; returns whether the bit was set (a waiter sleeps on the old
/// value, or is about to).
pub(crate) fn advance_armed(word: &AtomicU32) -> bool {
    let prev = word
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
            Some((cur & !ARMED).wrapping_add(2))
        })
        .unwrap_or_else(|cur| cur);
    prev & ARMED != 0
}

/// The waiter's step of the wake-once protocol: arms `word`, which held
/// `seen` when the waiter last looked. Returns the value to sleep on, or
/// `None` when the epoch moved on meanwhile (look again).
pub(crate) fn arm(word: &AtomicU32, seen: u32) -> Option<u32> {
    if seen & ARMED != 0 {
        return Some(seen);
    }
    word.compare_exchange(seen, seen | ARMED, Ordering::SeqCst, Ordering::SeqCst)
        .ok()
        .map(|_| seen | ARMED)
}

/// How wakers learn that a watched word has waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Announce {
    /// A waiter count at this byte offset of the segment.
    Sleepers(usize),
    /// A waiter count at this byte offset, and the [`ARMED`] bit of the
    /// watched word (an epoch that counts in steps of 2): wakers make the
    /// wake-up call only when they find the bit set, and clear it.
    ArmedSleepers(usize),
    /// The `WAITERS` bit of a robust lock word.
    WaitersBit,
}

/// A futex word in shared memory that a waiter watches for a change.
///
/// It keeps the segment mapped, and the object's slot allocated, for as
/// long as it lives: a slot freed and reused by another object while a
/// watch on it lived would let the watch's waiter count (given back on
/// drop) land in the new object's words.
pub struct Watch {
    seg: Segment,
    _slot: Option<Slot>,
    offset: usize,
    expected: u32,
    announce: Announce,
    wakes_one: bool,
    announced: bool,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("offset", &self.offset)
            .field("expected", &self.expected)
            .field("announce", &self.announce)
            .finish()
    }
}

impl Watch {
    /// Watches word `word` of `slot`, which now holds `expected`; wakers
    /// learn of waiters from the count in word `sleepers` of the slot.
    /// `wakes_one`: wakers wake one waiter per change (a semaphore's
    /// release), so a watcher that consumes a wake must pass it on.
    pub(crate) fn counted(
        slot: &Slot,
        word: usize,
        expected: u32,
        sleepers: usize,
        wakes_one: bool,
    ) -> Watch {
        Watch {
            seg: slot.segment().clone(),
            _slot: Some(slot.clone()),
            offset: slot.word_offset(word),
            expected,
            announce: Announce::Sleepers(slot.word_offset(sleepers)),
            wakes_one,
            announced: false,
        }
    }

    /// Watches an epoch word of any segment (a queue's control page) with
    /// the waiter count at byte `sleepers` of the same segment and the
    /// wake-once protocol of [`ARMED`].
    pub(crate) fn armed_at(
        seg: &Segment,
        offset: usize,
        expected: u32,
        sleepers: usize,
        wakes_one: bool,
    ) -> Watch {
        Watch {
            seg: seg.clone(),
            _slot: None,
            offset,
            expected,
            announce: Announce::ArmedSleepers(sleepers),
            wakes_one,
            announced: false,
        }
    }

    /// Watches the robust lock word of `slot` (word 0), held now as `expected`.
    pub(crate) fn lock_word(slot: &Slot, expected: u32) -> Watch {
        Watch {
            seg: slot.segment().clone(),
            _slot: Some(slot.clone()),
            offset: slot.word_offset(0),
            expected,
            announce: Announce::WaitersBit,
            wakes_one: true,
            announced: false,
        }
    }

    /// The watched word.
    pub fn word(&self) -> &AtomicU32 {
        self.seg.atomic_u32(self.offset)
    }

    /// The value the word held when the watch was taken (after
    /// [`announce`](Watch::announce), the value to sleep on).
    pub fn expected(&self) -> u32 {
        self.expected
    }

    /// What identifies the word across handles in this process: the
    /// segment's (device, inode) and the word's offset.
    pub fn key(&self) -> (u64, u64, usize) {
        let (dev, ino) = self.seg.key();
        (dev, ino, self.offset)
    }

    /// Whether a waker wakes only one waiter per change, so that a watcher
    /// that saw the change for tasks that no longer want it must wake the
    /// next waiter itself (`FUTEX_WAKE` of one).
    pub fn wakes_one(&self) -> bool {
        self.wakes_one
    }

    /// Makes every later change of the word come with a `FUTEX_WAKE`.
    /// Returns `false` when the word no longer holds the expected value
    /// (the waiter should try again instead of sleeping).
    pub fn announce(&mut self) -> bool {
        if self.announced {
            return self.word().load(Ordering::SeqCst) == self.expected;
        }
        match self.announce {
            Announce::Sleepers(at) => {
                // SeqCst: ordered before the waiter's re-check, as the
                // waker's change is before its read of the count.
                self.seg.atomic_u32(at).fetch_add(1, Ordering::SeqCst);
                self.announced = true;
                self.word().load(Ordering::SeqCst) == self.expected
            }
            Announce::ArmedSleepers(at) => {
                self.seg.atomic_u32(at).fetch_add(1, Ordering::SeqCst);
                self.announced = true;
                let cur = self.word().load(Ordering::SeqCst);
                if cur | ARMED != self.expected | ARMED {
                    return false;
                }
                match arm(self.word(), cur) {
                    Some(armed) => {
                        self.expected = armed;
                        true
                    }
                    None => false,
                }
            }
            Announce::WaitersBit => {
                let w = self.expected;
                if w & TID_MASK == 0 {
                    return false;
                }
                if w & WAITERS == 0 {
                    match self.word().compare_exchange(
                        w,
                        w | WAITERS,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => self.expected = w | WAITERS,
                        Err(_) => return false,
                    }
                }
                self.announced = true;
                true
            }
        }
    }

    /// Gives back what [`announce`](Watch::announce) took (the waiter
    /// count; a `WAITERS` bit stays, costing its lock's next release one
    /// wake-up at most). Dropping the watch does the same.
    pub fn retract(&mut self) {
        if std::mem::take(&mut self.announced) {
            if let Announce::Sleepers(at) | Announce::ArmedSleepers(at) = self.announce {
                self.seg.atomic_u32(at).fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.retract();
    }
}

/// Blocks the calling thread until one of `watches` changes, or until
/// `deadline`: the blocking counterpart of the async watcher, one
/// `futex_waitv` over every word.
///
/// After announcing every watch it calls `recheck` (step 3 of the
/// protocol in the [module docs](self)): a change made before the
/// announcement is seen there, and `true` returns without sleeping. It also
/// returns at once when a word changed already. Callers re-check their
/// conditions after it returns (a return is a hint, not a promise). At most
/// [`WAITV_MAX`](crate::futex::WAITV_MAX) words are slept on; a longer list
/// sleeps on its first ones only.
///
/// # Errors
///
/// The kernel's, when `futex_waitv` is refused (`ENOSYS` before Linux 5.16).
pub fn wait_any(
    watches: &mut [Watch],
    deadline: Option<std::time::Instant>,
    recheck: impl FnOnce() -> bool,
) -> std::io::Result<()> {
    let n = watches.len().min(crate::futex::WAITV_MAX);
    let watches = &mut watches[..n];
    for w in watches.iter_mut() {
        if !w.announce() {
            return Ok(());
        }
    }
    if recheck() {
        return Ok(());
    }
    if watches.is_empty() {
        if let Some(d) = deadline {
            std::thread::sleep(d.saturating_duration_since(std::time::Instant::now()));
        }
        return Ok(());
    }
    let words: Vec<(&AtomicU32, u32)> = watches.iter().map(|w| (w.word(), w.expected())).collect();
    let woke = crate::futex::waitv(
        &words,
        deadline.map_or(crate::futex::Timeout::Never, crate::futex::Timeout::At),
    );
    drop(words);
    // A wake-one word whose wake we took may owe it to another waiter.
    if let Ok(crate::futex::WakeV::Woken(i)) = woke {
        if let Some(w) = watches.get(i) {
            if w.wakes_one() {
                let _ = crate::futex::wake(w.word(), 1);
            }
        }
    }
    for w in watches.iter_mut() {
        w.retract();
    }
    woke.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{ARMED, advance_armed, arm};
    use crate::sync::Event;

    #[test]
    fn only_the_waker_that_disarms_makes_the_call() {
        let word = AtomicU32::new(8 | ARMED);
        assert!(advance_armed(&word), "a waiter armed the word: wake it");
        assert_eq!(
            word.load(Ordering::SeqCst),
            10,
            "epoch moved on, bit cleared"
        );
        assert!(!advance_armed(&word), "nobody re-armed it: no call");
        assert_eq!(word.load(Ordering::SeqCst), 12, "the epoch still moves on");
        // A waiter arms the value it saw; one that saw an old epoch must
        // look again instead of sleeping.
        assert_eq!(arm(&word, 12), Some(12 | ARMED));
        assert_eq!(arm(&word, 12 | ARMED), Some(12 | ARMED), "armed already");
        assert!(advance_armed(&word));
        assert_eq!(arm(&word, 12), None, "the epoch moved on to 14");
        assert_eq!(
            word.load(Ordering::SeqCst),
            14,
            "a failed arm changes nothing"
        );
        // The epoch wraps without touching the bit.
        let word = AtomicU32::new(u32::MAX);
        assert!(advance_armed(&word));
        assert_eq!(word.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_watched_slot_is_not_reused_while_the_watch_lives() {
        let ev = Event::new().unwrap();
        let watch = ev.watch().expect("a clear event has a watch");
        let key = watch.key();
        drop(ev);
        // Were the slot free, one of these would take it (slots are reused
        // first-fit); its waiter count would then be the one `watch` gives
        // back when it drops.
        let others: Vec<Event> = (0..2000).map(|_| Event::new().unwrap()).collect();
        assert!(
            others.iter().all(|o| o.watch().unwrap().key() != key),
            "a slot under watch was handed to a new object"
        );
        drop(watch);
    }
}
