//! The synchronization primitives and shared values across real processes.
//!
//! Every claim here is checked with children started by `Process` (Spawn, and
//! where the start method matters also ForkServer and Fork), and every wait
//! on another process is a wait on a primitive, an `Event` or a join, with
//! [`GENEROUS`] as a hang guard only: no sleeps, no timing assertions.
//!
//! What is proven:
//!
//! * `Lock`: a child's hold makes the parent's `try_lock` / `try_acquire` and
//!   an expiring `lock_timeout` / `acquire_timeout` give `WouldBlock`;
//!   parent threads asleep in `lock_timeout` and `acquire_timeout` get the
//!   lock in turn when the child releases it. Any thread of the holding process may `release`; another
//!   process gets `NotOwnerError` and the holder keeps the lock.
//! * Robust ownership, for `Lock`, `RLock`, `Value`, `Array` and a
//!   `Condition`'s own lock, with Spawn and ForkServer children: when the
//!   holder is SIGKILLed, a parent thread already asleep in `lock()` wakes
//!   with `OwnerDied` (no timeout involved), and with nobody waiting the
//!   next `lock()` reports `OwnerDied`; after the guard is dropped the lock
//!   is an ordinary lock again. An `RLock` taken over this way is held at
//!   depth 1. A child that returns while still holding a lock (a leaked
//!   guard) hands it on as `OwnerDied` too.
//! * `RLock`: re-entry to depth 3 needs 3 releases; another thread of the
//!   owning process and another process can neither take nor release it.
//! * `Semaphore` counts across processes, a parent asleep in `acquire` is
//!   woken by a child's `release`, `acquire_timeout` expires with `false`;
//!   `BoundedSemaphore` refuses an over-release, in the parent and in a
//!   child, and leaves the count unchanged.
//! * `Event`: a child's `set` wakes a parent asleep in `wait`; `wait_timeout`
//!   is `false` while clear; `clear` in a child is seen by the parent.
//! * `Condition` (its own `RLock`, and `with_lock(Lock)`): children waiting
//!   in `wait_for` on a predicate over a shared `Array` are woken by
//!   `notify(1)` (one waiter) and `notify_all` (three waiters at once); the
//!   parent knows they wait because each child announced itself under the
//!   condition's lock, which a waiter only gives up inside `wait`. A wait at
//!   `RLock` depth 2 comes back at depth 2.
//! * `Barrier` of three processes: arrival indexes are {0, 1, 2} in every one
//!   of several generations; `abort` and an expiring `wait_timeout` break it
//!   for every waiter; `reset` fails the current waiters and the barrier
//!   works again at once; `wait_with_action` runs the action exactly once per
//!   generation, before anyone is released; a waiter that has not yet seen
//!   an `abort` when a `reset` follows still gets `BrokenBarrierError`.
//! * `Value` / `Array`: 4 processes × 10 000 locked increments give the exact
//!   total, in every element; `RawValue` / `RawArray` carry writes both ways.
//! * Bad input: a handle received as another kind (a `Lock` as an `Event`,
//!   a `Value<u64>` as a `Value<u32>`, a `RawValue` as a `Value`, ...) fails
//!   the child's argument decoding with a message naming both.
//! * The Fork start method, from a single-threaded fork-server child that
//!   already runs its robust sentinel thread: the forked child is not taken
//!   for the owner of its parent's lock, and its death while holding a lock
//!   is reported as `OwnerDied`.

aiop::test_support!();

mod common;

use std::marker::PhantomData;
use std::time::Duration;

use aiop::blocking::process::{Builder, Process, ProcessError, StartMethod};
use aiop::blocking::shared::{Array, RawArray, RawValue, Value};
use aiop::blocking::sync::{
    Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Event, Lock, LockResult,
    NotOwnerError, OverReleaseError, RLock, Semaphore, TryLockError, TryLockResult,
};
use common::{GENEROUS, blocked, park_forever, until};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const METHODS: [StartMethod; 2] = [StartMethod::SPAWN, StartMethod::FORK_SERVER];

/// A timeout that is meant to run out.
const SHORT: Duration = Duration::from_millis(20);

/// Options for a child that may park: a daemon, so that a failing test
/// cannot leave it behind once the test binary ends.
fn child(method: StartMethod) -> Builder {
    Process::builder().daemon(true).start_method(method)
}

/// Waits for `ev` (the hang guard is GENEROUS).
fn expect_event(ev: &Event, what: &str) {
    assert!(ev.wait_timeout(GENEROUS), "timed out waiting until {what}");
}

/// Kills a child and checks that SIGKILL is what ended it.
fn kill_and_join<R: DeserializeOwned + std::fmt::Debug>(p: &mut Process<R>) {
    p.kill().unwrap();
    let err = p.join().unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGKILL), "{err}");
}

// ---------------------------------------------------------------------------
// Lock

fn hold_until_told((lock, held, release): (Lock, Event, Event)) {
    let guard = lock.lock().unwrap();
    held.set();
    expect_event(&release, "the parent lets go");
    drop(guard);
}

#[test]
fn a_lock_held_by_a_child_blocks_the_parent_until_the_child_releases_it() {
    let lock = Lock::new().unwrap();
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = child(StartMethod::SPAWN)
        .spawn(
            hold_until_told,
            (lock.clone(), held.clone(), release.clone()),
        )
        .unwrap();
    expect_event(&held, "the child holds the lock");
    assert!(lock.is_locked());
    assert!(!lock.is_held_here());
    assert!(lock.try_lock().unwrap_err().is_would_block());
    assert!(lock.try_acquire().unwrap_err().is_would_block());
    // Timeouts that run out while the child holds the lock.
    assert!(lock.lock_timeout(SHORT).unwrap_err().is_would_block());
    assert!(lock.acquire_timeout(SHORT).unwrap_err().is_would_block());
    assert!(!lock.is_held_here());
    // Parent threads asleep in lock_timeout and acquire_timeout get it, one
    // after the other, when the child lets go.
    let l = lock.clone();
    let by_guard = blocked(move || {
        let g = l.lock_timeout(GENEROUS);
        (g.is_ok(), l.is_held_here())
    });
    let l = lock.clone();
    let guardless = blocked(move || {
        let got = l.acquire_timeout(GENEROUS).is_ok();
        (got && l.is_held_here(), l.release().is_ok())
    });
    release.set();
    assert_eq!(by_guard.join(), (true, true));
    assert_eq!(guardless.join(), (true, true));
    p.join().unwrap();
    assert!(!lock.is_locked());
}

/// Tries to release a lock this process does not hold.
fn release_someone_elses(lock: Lock) -> (bool, bool, bool) {
    (
        lock.is_held_here(),
        lock.release() == Err(NotOwnerError),
        lock.try_lock().is_err_and(|e| e.is_would_block()),
    )
}

#[test]
fn any_thread_of_the_holder_may_release_a_lock_and_no_other_process_can() {
    let lock = Lock::new().unwrap();
    // Taken on one thread, released on another.
    let l = lock.clone();
    std::thread::spawn(move || l.acquire().unwrap())
        .join()
        .unwrap();
    assert!(lock.is_held_here());
    let l = lock.clone();
    assert_eq!(
        std::thread::spawn(move || l.release()).join().unwrap(),
        Ok(())
    );
    assert!(!lock.is_locked());
    assert_eq!(lock.release(), Err(NotOwnerError), "released twice");

    // Another process cannot release it: the parent keeps it.
    lock.acquire().unwrap();
    let got = Process::spawn(release_someone_elses, lock.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (false, true, true));
    assert!(lock.is_held_here());
    lock.release().unwrap();
    assert!(!lock.is_locked());
}

// ---------------------------------------------------------------------------
// Robust ownership

/// What an acquisition found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got {
    /// An ordinary lock, taken.
    Took,
    /// Taken, from a holder that died.
    OwnerDied,
    /// Held by someone else.
    WouldBlock,
}

fn got<G>(r: LockResult<G>) -> Got {
    match r {
        Ok(_) => Got::Took,
        Err(_) => Got::OwnerDied,
    }
}

fn try_got<G>(r: TryLockResult<G>) -> Got {
    match r {
        Ok(_) => Got::Took,
        Err(TryLockError::OwnerDied(_)) => Got::OwnerDied,
        Err(TryLockError::WouldBlock) => Got::WouldBlock,
    }
}

/// What a half-done update leaves in a `Value` or `Array` whose holder dies.
const HALF_WRITTEN: u64 = 0xdead;

/// The robust locks, seen alike by the owner-death tests. Each acquisition
/// releases what it took before returning.
trait Robust: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    fn make() -> Self;
    /// Takes the lock and never gives it back (for a child that will die).
    fn take_for_good(&self);
    /// `lock()`; after `OwnerDied`, repairs what the dead holder left.
    fn lock_once(&self) -> Got;
    /// `try_lock()`.
    fn try_once(&self) -> Got;
}

impl Robust for Lock {
    fn make() -> Self {
        Lock::new().unwrap()
    }
    fn take_for_good(&self) {
        self.lock().unwrap().leak();
    }
    fn lock_once(&self) -> Got {
        got(self.lock())
    }
    fn try_once(&self) -> Got {
        try_got(self.try_lock())
    }
}

impl Robust for RLock {
    fn make() -> Self {
        RLock::new().unwrap()
    }
    fn take_for_good(&self) {
        for _ in 0..3 {
            self.acquire().unwrap();
        }
    }
    fn lock_once(&self) -> Got {
        match self.lock() {
            Ok(_) => Got::Took,
            Err(died) => {
                // Taken over at depth 1 (not the dead owner's 3): one
                // release frees it for another thread.
                let other = || std::thread::scope(|s| s.spawn(|| self.try_once()).join().unwrap());
                assert!(self.is_owned());
                assert_eq!(other(), Got::WouldBlock);
                drop(died);
                assert!(!self.is_owned());
                assert_eq!(other(), Got::Took);
                Got::OwnerDied
            }
        }
    }
    fn try_once(&self) -> Got {
        try_got(self.try_lock())
    }
}

impl Robust for Value<u64> {
    fn make() -> Self {
        Value::new(0).unwrap()
    }
    fn take_for_good(&self) {
        let mut g = self.lock().unwrap();
        *g = HALF_WRITTEN;
        std::mem::forget(g);
    }
    fn lock_once(&self) -> Got {
        match self.lock() {
            Ok(g) => {
                assert_eq!(*g, 0, "not repaired");
                Got::Took
            }
            Err(died) => {
                let mut g = died.into_inner();
                assert_eq!(*g, HALF_WRITTEN);
                *g = 0;
                Got::OwnerDied
            }
        }
    }
    fn try_once(&self) -> Got {
        try_got(self.get_lock().try_lock())
    }
}

impl Robust for Array<u64> {
    fn make() -> Self {
        Array::new(3).unwrap()
    }
    fn take_for_good(&self) {
        let mut g = self.lock().unwrap();
        g[1] = HALF_WRITTEN;
        std::mem::forget(g);
    }
    fn lock_once(&self) -> Got {
        match self.lock() {
            Ok(g) => {
                assert_eq!(*g, [0, 0, 0], "not repaired");
                Got::Took
            }
            Err(died) => {
                let mut g = died.into_inner();
                assert_eq!(*g, [0, HALF_WRITTEN, 0]);
                g[1] = 0;
                Got::OwnerDied
            }
        }
    }
    fn try_once(&self) -> Got {
        try_got(self.get_lock().try_lock())
    }
}

impl Robust for Condition {
    fn make() -> Self {
        Condition::new().unwrap()
    }
    fn take_for_good(&self) {
        self.acquire().unwrap();
    }
    fn lock_once(&self) -> Got {
        got(self.lock())
    }
    fn try_once(&self) -> Got {
        try_got(self.try_lock())
    }
}

/// Takes the lock, says so, and waits to be killed.
fn hold_for_good<L: Robust>((lock, held): (L, Event)) {
    lock.take_for_good();
    held.set();
    park_forever()
}

/// A parent thread asleep in `lock()` when the holder is SIGKILLed wakes
/// with `OwnerDied`; then, with nobody waiting, the next `lock()` after
/// another holder's death reports `OwnerDied`; each time the lock then works
/// as an ordinary one.
fn owner_death<L: Robust>() {
    for method in METHODS {
        let lock = L::make();
        let held = Event::new().unwrap();

        // A waiter already asleep when the holder dies.
        let mut p = child(method)
            .spawn(hold_for_good::<L>, (lock.clone(), held.clone()))
            .unwrap();
        expect_event(&held, "the child holds the lock");
        assert_eq!(lock.try_once(), Got::WouldBlock, "{method}");
        let l = lock.clone();
        let waiter = blocked(move || l.lock_once());
        kill_and_join(&mut p);
        assert_eq!(waiter.join(), Got::OwnerDied, "{method}");
        assert_eq!(lock.lock_once(), Got::Took, "{method}");
        assert_eq!(lock.try_once(), Got::Took, "{method}");

        // Nobody waiting: the next lock() reports the death.
        held.clear();
        let mut p = child(method)
            .spawn(hold_for_good::<L>, (lock.clone(), held.clone()))
            .unwrap();
        expect_event(&held, "the child holds the lock");
        assert_eq!(lock.try_once(), Got::WouldBlock, "{method}");
        kill_and_join(&mut p);
        assert_eq!(lock.lock_once(), Got::OwnerDied, "{method}");
        assert_eq!(lock.lock_once(), Got::Took, "{method}");
        assert_eq!(lock.try_once(), Got::Took, "{method}");
    }
}

#[test]
fn owner_death_lock() {
    owner_death::<Lock>();
}

#[test]
fn owner_death_rlock() {
    owner_death::<RLock>();
}

#[test]
fn owner_death_value() {
    owner_death::<Value<u64>>();
}

#[test]
fn owner_death_array() {
    owner_death::<Array<u64>>();
}

#[test]
fn owner_death_condition() {
    owner_death::<Condition>();
}

#[test]
fn try_and_guardless_forms_report_owner_death_too() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut p = child(StartMethod::SPAWN)
        .spawn(hold_for_good::<Lock>, (lock.clone(), held.clone()))
        .unwrap();
    expect_event(&held, "the child holds the lock");
    kill_and_join(&mut p);
    // try_acquire takes the lock, reporting the death; release recovers it.
    assert!(matches!(
        lock.try_acquire(),
        Err(TryLockError::OwnerDied(_))
    ));
    assert!(lock.is_held_here());
    lock.release().unwrap();
    assert!(lock.try_acquire().is_ok());
    lock.release().unwrap();
}

/// Takes the lock and returns without releasing it.
fn return_holding(lock: Lock) {
    lock.lock().unwrap().leak();
}

#[test]
fn a_child_that_returns_holding_a_lock_hands_it_on_as_owner_died() {
    let lock = Lock::new().unwrap();
    Process::spawn(return_holding, lock.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(lock.lock_once(), Got::OwnerDied);
    assert_eq!(lock.lock_once(), Got::Took);
}

// ---------------------------------------------------------------------------
// RLock

/// (try_lock would block, release is NotOwnerError, is_owned)
fn foreign_rlock(lock: RLock) -> (bool, bool, bool) {
    (
        lock.try_lock().is_err_and(|e| e.is_would_block()),
        lock.release() == Err(NotOwnerError),
        lock.is_owned(),
    )
}

#[test]
fn an_rlock_belongs_to_one_thread_of_one_process() {
    let lock = RLock::new().unwrap();
    let other_thread = |l: &RLock| {
        let l = l.clone();
        std::thread::spawn(move || foreign_rlock(l)).join().unwrap()
    };
    // Re-entry to depth 3 on this thread.
    lock.acquire().unwrap();
    let g2 = lock.lock().unwrap();
    let g3 = lock.try_lock().unwrap();
    assert!(lock.is_owned());
    // Another thread of this process can neither take nor release it.
    assert_eq!(other_thread(&lock), (true, true, false));
    // Nor can another process.
    let got = Process::spawn(foreign_rlock, lock.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (true, true, false));
    // Three levels need three releases.
    drop(g3);
    drop(g2);
    assert!(lock.is_owned());
    assert_eq!(other_thread(&lock), (true, true, false));
    lock.release().unwrap();
    assert!(!lock.is_owned());
    assert_eq!(lock.release(), Err(NotOwnerError));
    // Free: a child takes it now (and releases it on return).
    let took = Process::spawn(|l: RLock| l.try_lock().is_ok(), lock.clone())
        .unwrap()
        .join()
        .unwrap();
    assert!(took);
    assert!(lock.try_lock().is_ok());
}

// ---------------------------------------------------------------------------
// Semaphores

fn take_two_until_told((sem, took, go): (Semaphore, Event, Event)) {
    assert!(sem.try_acquire() && sem.try_acquire());
    took.set();
    expect_event(&go, "the parent lets go");
    sem.release_n(2);
}

#[test]
fn a_semaphore_counts_across_processes() {
    let sem = Semaphore::new(3).unwrap();
    let (took, go) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = child(StartMethod::SPAWN)
        .spawn(take_two_until_told, (sem.clone(), took.clone(), go.clone()))
        .unwrap();
    expect_event(&took, "the child took two permits");
    assert_eq!(sem.get_value(), 1);
    sem.acquire();
    assert_eq!(sem.get_value(), 0);
    assert!(!sem.try_acquire());
    assert!(!sem.acquire_timeout(SHORT), "no permit is free");
    go.set();
    assert!(sem.acquire_timeout(GENEROUS), "the child gave two back");
    p.join().unwrap();
    assert_eq!(sem.get_value(), 1);
    sem.release_n(2);
    assert_eq!(sem.get_value(), 3);
}

#[test]
fn a_parent_asleep_in_acquire_is_woken_by_a_childs_release() {
    for method in METHODS {
        let sem = Semaphore::new(0).unwrap();
        let s = sem.clone();
        let waiter = blocked(move || s.acquire());
        Process::builder()
            .start_method(method)
            .spawn(|s: Semaphore| s.release(), sem.clone())
            .unwrap()
            .join()
            .unwrap();
        waiter.join();
        assert_eq!(sem.get_value(), 0);
    }
}

/// Releases a bounded semaphore three times: (first, second, third, value).
fn over_release(sem: BoundedSemaphore) -> (bool, bool, bool, u32) {
    let first = sem.release().is_ok();
    let second = sem.release() == Err(OverReleaseError);
    let third = sem.release_n(2) == Err(OverReleaseError);
    (first, second, third, sem.get_value())
}

#[test]
fn a_bounded_semaphore_refuses_over_release_in_any_process() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.bound(), 2);
    assert_eq!(sem.release(), Err(OverReleaseError));
    assert_eq!(sem.get_value(), 2);
    sem.acquire();
    assert_eq!(sem.get_value(), 1);
    let got = Process::spawn(over_release, sem.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (true, true, true, 2));
    assert_eq!(sem.get_value(), 2);
    // All or nothing.
    assert!(sem.try_acquire() && sem.try_acquire());
    assert_eq!(sem.release_n(3), Err(OverReleaseError));
    assert_eq!(sem.get_value(), 0);
    sem.release_n(2).unwrap();
    assert_eq!(sem.get_value(), 2);
}

// ---------------------------------------------------------------------------
// Event

#[test]
fn an_event_set_in_a_child_wakes_a_parent_asleep_in_wait() {
    for method in METHODS {
        let ev = Event::new().unwrap();
        assert!(!ev.wait_timeout(SHORT));
        let e = ev.clone();
        let waiter = blocked(move || e.wait());
        Process::builder()
            .start_method(method)
            .spawn(|e: Event| e.set(), ev.clone())
            .unwrap()
            .join()
            .unwrap();
        waiter.join();
        assert!(ev.is_set());
    }
}

/// Sees the flag set, clears it, and waits for it briefly.
fn see_and_clear(ev: Event) -> (bool, bool) {
    let was = ev.is_set();
    ev.clear();
    (was, ev.wait_timeout(SHORT))
}

#[test]
fn an_event_cleared_in_a_child_is_clear_for_the_parent() {
    let ev = Event::new().unwrap();
    ev.set();
    let got = Process::spawn(see_and_clear, ev.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (true, false));
    assert!(!ev.is_set());
    assert!(!ev.wait_timeout(SHORT));
    // A wait that times out in a child, then succeeds once set.
    let got = Process::spawn(|e: Event| (e.wait_timeout(SHORT), e.is_set()), ev.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (false, false));
    ev.set();
    assert!(
        Process::spawn(|e: Event| e.wait_timeout(GENEROUS), ev.clone())
            .unwrap()
            .join()
            .unwrap()
    );
}

// ---------------------------------------------------------------------------
// Condition

/// The shared state of the condition tests: `[arrived, go]`.
const ARRIVED: usize = 0;
const GO: usize = 1;

/// Announces itself under the condition's lock, then waits for `go`.
fn wait_for_go((cond, state): (Condition, Array<u32>)) -> u32 {
    let mut g = cond.lock().unwrap();
    state.lock().unwrap()[ARRIVED] += 1;
    cond.notify_all();
    cond.wait_for(&mut g, || state.get(GO) != 0).unwrap();
    state.get(GO)
}

/// As `wait_for_go`, waiting at `RLock` depth 2 (a default condition):
/// returns `go` and whether the lock came back at depth 2.
fn wait_for_go_at_depth_two((cond, state): (Condition, Array<u32>)) -> (u32, bool) {
    let outer = cond.lock().unwrap();
    let mut g = cond.lock().unwrap();
    state.lock().unwrap()[ARRIVED] += 1;
    cond.notify_all();
    cond.wait_for(&mut g, || state.get(GO) != 0).unwrap();
    drop(g);
    let other = || std::thread::scope(|s| s.spawn(|| cond.try_lock().is_ok()).join().unwrap());
    // Still held at depth 1; free after one more release.
    let depth_two = !other();
    drop(outer);
    (state.get(GO), depth_two && other())
}

/// Holds the condition's lock until `n` children wait in it, then sets `go`
/// and notifies (one waiter with `notify(1)`, else `notify_all`).
fn release_waiters(cond: &Condition, state: &Array<u32>, n: u32, go: u32) {
    let mut g = cond.lock().unwrap();
    // A child gives up the lock only inside `wait`, after it announced
    // itself: seeing `n` arrivals under the lock means all `n` wait.
    assert!(
        cond.wait_for_timeout(&mut g, GENEROUS, || state.get(ARRIVED) == n)
            .unwrap(),
        "the children did not all arrive"
    );
    state.set(GO, go);
    if n == 1 {
        cond.notify(1);
    } else {
        cond.notify_all();
    }
}

fn conditions() -> [(&'static str, Condition); 2] {
    [
        ("own RLock", Condition::new().unwrap()),
        (
            "with_lock",
            Condition::with_lock(Lock::new().unwrap()).unwrap(),
        ),
    ]
}

#[test]
fn condition_notify_wakes_a_child_waiting_for_a_predicate() {
    for (what, cond) in conditions() {
        let state = Array::<u32>::new(2).unwrap();
        let mut p = Process::spawn(wait_for_go, (cond.clone(), state.clone())).unwrap();
        release_waiters(&cond, &state, 1, 7);
        assert_eq!(p.join().unwrap(), 7, "{what}");
    }
    // At RLock depth 2.
    let cond = Condition::new().unwrap();
    let state = Array::<u32>::new(2).unwrap();
    let mut p = Process::spawn(wait_for_go_at_depth_two, (cond.clone(), state.clone())).unwrap();
    release_waiters(&cond, &state, 1, 9);
    assert_eq!(p.join().unwrap(), (9, true));
}

#[test]
fn condition_notify_all_wakes_three_children_waiting_at_once() {
    for (what, cond) in conditions() {
        let state = Array::<u32>::new(2).unwrap();
        let mut ps: Vec<Process<u32>> = [
            StartMethod::SPAWN,
            StartMethod::FORK_SERVER,
            StartMethod::SPAWN,
        ]
        .into_iter()
        .map(|m| {
            Process::builder()
                .start_method(m)
                .spawn(wait_for_go, (cond.clone(), state.clone()))
                .unwrap()
        })
        .collect();
        release_waiters(&cond, &state, 3, 5);
        for p in &mut ps {
            assert_eq!(p.join().unwrap(), 5, "{what}");
        }
    }
}

#[test]
fn a_condition_wait_with_a_value_predicate_and_a_timeout() {
    // wait_for_timeout gives the predicate's value when time runs out.
    let cond = Condition::new().unwrap();
    let flag = Value::new(0u32).unwrap();
    let got = Process::spawn(
        |(c, v): (Condition, Value<u32>)| {
            let mut g = c.lock().unwrap();
            c.wait_for_timeout(&mut g, SHORT, || v.get() == 1).unwrap()
        },
        (cond.clone(), flag.clone()),
    )
    .unwrap()
    .join()
    .unwrap();
    assert!(!got);
    flag.set(1);
    let got = Process::spawn(
        |(c, v): (Condition, Value<u32>)| {
            let mut g = c.lock().unwrap();
            c.wait_for_timeout(&mut g, GENEROUS, || v.get() == 1)
                .unwrap()
        },
        (cond, flag),
    )
    .unwrap()
    .join()
    .unwrap();
    assert!(got);
}

// ---------------------------------------------------------------------------
// Barrier

fn barrier_rounds((b, rounds): (Barrier, u32)) -> Vec<u32> {
    (0..rounds).map(|_| b.wait().unwrap()).collect()
}

fn broken_wait(b: Barrier) -> bool {
    b.wait() == Err(BrokenBarrierError)
}

/// Checks that the indexes of each generation are a permutation of 0..3.
fn assert_generations(indexes: &[&[u32]], rounds: usize) {
    for r in 0..rounds {
        let mut generation: Vec<u32> = indexes.iter().map(|v| v[r]).collect();
        generation.sort_unstable();
        assert_eq!(generation, [0, 1, 2], "generation {r}: {indexes:?}");
    }
}

#[test]
fn a_barrier_of_three_processes_gives_distinct_indexes_in_every_generation() {
    const ROUNDS: u32 = 8;
    let b = Barrier::new(3).unwrap();
    assert_eq!(b.parties(), 3);
    let mut ps: Vec<Process<Vec<u32>>> = METHODS
        .into_iter()
        .map(|m| {
            Process::builder()
                .start_method(m)
                .spawn(barrier_rounds, (b.clone(), ROUNDS))
                .unwrap()
        })
        .collect();
    let mine: Vec<u32> = (0..ROUNDS)
        .map(|_| b.wait_timeout(GENEROUS).unwrap())
        .collect();
    let theirs: Vec<Vec<u32>> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
    assert_generations(&[&mine, &theirs[0], &theirs[1]], ROUNDS as usize);
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
}

/// Starts two children that wait once and report whether they got
/// `BrokenBarrierError`; returns once both wait.
fn two_waiters(b: &Barrier) -> Vec<Process<bool>> {
    let ps = METHODS
        .into_iter()
        .map(|m| child(m).spawn(broken_wait, b.clone()).unwrap())
        .collect();
    until("both children wait at the barrier", || b.n_waiting() == 2);
    ps
}

#[test]
fn abort_breaks_a_barrier_for_everyone_until_reset() {
    let b = Barrier::new(3).unwrap();
    let mut ps = two_waiters(&b);
    b.abort();
    for p in &mut ps {
        assert!(p.join().unwrap(), "a waiter did not see the abort");
    }
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
    assert_eq!(b.wait(), Err(BrokenBarrierError));
    // A child arriving now is refused at once too.
    assert!(
        Process::spawn(broken_wait, b.clone())
            .unwrap()
            .join()
            .unwrap()
    );
    b.reset();
    assert!(!b.broken());
    let mut ps: Vec<Process<Vec<u32>>> = (0..2)
        .map(|_| Process::spawn(barrier_rounds, (b.clone(), 2)).unwrap())
        .collect();
    let mine: Vec<u32> = (0..2).map(|_| b.wait_timeout(GENEROUS).unwrap()).collect();
    let theirs: Vec<Vec<u32>> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
    assert_generations(&[&mine, &theirs[0], &theirs[1]], 2);
}

/// Waits, expecting the barrier to be reset under it, then waits again.
fn reset_then_again(b: Barrier) -> (bool, u32) {
    let first = b.wait() == Err(BrokenBarrierError);
    (first, b.wait().expect("the barrier works after reset"))
}

#[test]
fn reset_fails_the_waiters_and_the_barrier_works_again() {
    let b = Barrier::new(3).unwrap();
    let mut ps: Vec<Process<(bool, u32)>> = METHODS
        .into_iter()
        .map(|m| child(m).spawn(reset_then_again, b.clone()).unwrap())
        .collect();
    until("both children wait at the barrier", || b.n_waiting() == 2);
    b.reset();
    assert!(!b.broken());
    // The same two children come back for the next generation.
    let mine = b.wait_timeout(GENEROUS).unwrap();
    let theirs: Vec<(bool, u32)> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
    assert!(theirs.iter().all(|t| t.0), "{theirs:?}");
    assert_generations(&[&[mine], &[theirs[0].1], &[theirs[1].1]], 1);
    assert!(!b.broken());
}

#[test]
fn an_expired_wait_timeout_breaks_the_barrier_for_everyone() {
    let b = Barrier::new(3).unwrap();
    let mut p = child(StartMethod::SPAWN)
        .spawn(broken_wait, b.clone())
        .unwrap();
    until("the child waits at the barrier", || b.n_waiting() == 1);
    // Only two of three parties ever come: the wait must time out.
    assert_eq!(b.wait_timeout(SHORT), Err(BrokenBarrierError));
    assert!(b.broken());
    assert!(p.join().unwrap(), "the other waiter did not see the break");
    assert!(b.broken());
    b.reset();
    assert!(!b.broken());
}

/// Waits `rounds` times, each with an action that counts in `count`;
/// returns the count seen after each wait.
fn rounds_with_action((b, count, rounds): (Barrier, Value<u32>, u32)) -> Vec<u32> {
    (0..rounds)
        .map(|_| {
            b.wait_with_action(|| *count.lock().unwrap() += 1).unwrap();
            count.get()
        })
        .collect()
}

#[test]
fn wait_with_action_runs_the_action_once_per_generation_before_the_release() {
    const ROUNDS: u32 = 6;
    let b = Barrier::new(3).unwrap();
    let count = Value::new(0u32).unwrap();
    let mut ps: Vec<Process<Vec<u32>>> = METHODS
        .into_iter()
        .map(|m| {
            Process::builder()
                .start_method(m)
                .spawn(rounds_with_action, (b.clone(), count.clone(), ROUNDS))
                .unwrap()
        })
        .collect();
    let mine = rounds_with_action((b.clone(), count.clone(), ROUNDS));
    // Nobody leaves generation r before its action ran, and generation r+1
    // cannot end without everyone: each party sees exactly r+1.
    let expected: Vec<u32> = (1..=ROUNDS).collect();
    assert_eq!(mine, expected);
    for p in &mut ps {
        assert_eq!(p.join().unwrap(), expected);
    }
    assert_eq!(count.get(), ROUNDS);
}

#[test]
fn a_waiter_that_has_not_seen_an_abort_before_a_reset_still_gets_broken_barrier_error() {
    use rustix::process::{Signal, WaitId, WaitIdOptions, pidfd_send_signal, waitid};
    let b = Barrier::new(3).unwrap();
    // A direct child (Spawn), so that this process can wait for it to stop.
    let mut p = child(StartMethod::SPAWN)
        .spawn(broken_wait, b.clone())
        .unwrap();
    until("the child waits at the barrier", || b.n_waiting() == 1);
    // Stop it, so that it sees neither the abort nor the reset until both
    // are done.
    pidfd_send_signal(p.sentinel(), Signal::STOP).unwrap();
    let stopped = waitid(WaitId::PidFd(p.sentinel()), WaitIdOptions::STOPPED).unwrap();
    assert!(
        stopped.is_some_and(|s| s.stopped()),
        "the child did not stop"
    );
    b.abort();
    b.reset();
    assert!(!b.broken());
    pidfd_send_signal(p.sentinel(), Signal::CONT).unwrap();
    assert!(
        p.join().unwrap(),
        "a waiter of the aborted generation was released as if it had completed"
    );
}

// ---------------------------------------------------------------------------
// Value, Array, RawValue, RawArray

const INCREMENTS: u64 = 10_000;

fn add_to_value(v: Value<u64>) {
    for _ in 0..INCREMENTS {
        *v.lock().unwrap() += 1;
    }
}

fn add_to_every_element(a: Array<u64>) {
    for _ in 0..INCREMENTS {
        for x in a.lock().unwrap().iter_mut() {
            *x += 1;
        }
    }
}

/// Runs `f(arg)` in four children at once, two per start method, and joins them.
fn run_four<A: Clone + serde::Serialize + serde::de::DeserializeOwned>(f: fn(A), arg: &A) {
    let mut ps: Vec<Process<()>> = [METHODS, METHODS]
        .concat()
        .into_iter()
        .map(|m| {
            Process::builder()
                .start_method(m)
                .spawn(f, arg.clone())
                .unwrap()
        })
        .collect();
    for p in &mut ps {
        p.join().unwrap();
    }
}

#[test]
fn four_processes_incrementing_a_value_under_its_lock_give_the_exact_total() {
    let v = Value::new(0u64).unwrap();
    run_four(add_to_value, &v);
    assert_eq!(v.get(), 4 * INCREMENTS);
}

#[test]
fn four_processes_incrementing_an_array_under_its_lock_give_the_exact_totals() {
    let a = Array::<u64>::new(5).unwrap();
    run_four(add_to_every_element, &a);
    assert_eq!(a.to_vec(), [4 * INCREMENTS; 5]);
    assert_eq!(a.len(), 5);
}

/// Reads what the parent wrote, writes its own.
fn swap_raw((v, a): (RawValue<f64>, RawArray<u16>)) -> (f64, Vec<u16>) {
    let seen = (v.get(), a.to_vec());
    v.set(-2.5);
    for i in 0..a.len() {
        a.set(i, a.get(i) * 10);
    }
    seen
}

#[test]
fn raw_values_and_arrays_carry_writes_both_ways() {
    let v = RawValue::new(1.25f64).unwrap();
    let a = RawArray::from_slice(&[1u16, 2, 3, 4]).unwrap();
    let z = RawArray::<u16>::new(3).unwrap();
    assert_eq!(z.to_vec(), [0, 0, 0]);
    a.set(3, 40);
    let (seen_v, seen_a) = Process::spawn(swap_raw, (v.clone(), a.clone()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!((seen_v, seen_a), (1.25, vec![1, 2, 3, 40]));
    assert_eq!(v.get(), -2.5);
    assert_eq!(a.to_vec(), [10, 20, 30, 400]);
}

// ---------------------------------------------------------------------------
// Bad input

/// Serializes as an `S`, deserializes as an `R`: a handle that arrives as
/// the wrong type (both are a slot on the wire, as every handle is).
struct SentAs<S, R> {
    sent: Option<S>,
    _received: PhantomData<fn() -> R>,
}

impl<S, R> SentAs<S, R> {
    fn new(sent: S) -> Self {
        SentAs {
            sent: Some(sent),
            _received: PhantomData,
        }
    }
}

impl<S: Serialize, R> Serialize for SentAs<S, R> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        self.sent
            .as_ref()
            .ok_or_else(|| serde::ser::Error::custom("nothing to send"))?
            .serialize(s)
    }
}

impl<'de, S, R: Deserialize<'de>> Deserialize<'de> for SentAs<S, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        R::deserialize(d)?;
        Ok(SentAs {
            sent: None,
            _received: PhantomData,
        })
    }
}

/// Spawns a child that receives `sent` as an `R`; returns the join error.
fn receive_as<S, R>(sent: S) -> ProcessError
where
    S: Serialize + DeserializeOwned,
    R: DeserializeOwned,
{
    let mut p = Process::spawn(|_: SentAs<S, R>| (), SentAs::new(sent)).unwrap();
    let err = p.join_timeout(GENEROUS).unwrap_err();
    assert!(matches!(err, ProcessError::Failed(_)), "{err}");
    assert!(
        err.to_string().contains("could not decode its arguments"),
        "{err}"
    );
    err
}

#[test]
fn a_handle_received_as_another_kind_fails_clearly() {
    let err = receive_as::<Lock, Event>(Lock::new().unwrap());
    assert!(
        err.to_string()
            .contains("the object is a Lock, not an Event"),
        "{err}"
    );
    let err = receive_as::<Event, RLock>(Event::new().unwrap());
    assert!(
        err.to_string()
            .contains("the object is an Event, not an RLock"),
        "{err}"
    );
    let err = receive_as::<Semaphore, BoundedSemaphore>(Semaphore::new(1).unwrap());
    assert!(
        err.to_string()
            .contains("the object is a Semaphore, not a BoundedSemaphore"),
        "{err}"
    );
    // A payload of another element type or protocol.
    let err = receive_as::<Value<u64>, Value<u32>>(Value::new(1u64).unwrap());
    assert!(
        err.to_string()
            .contains("holds elements of 8 bytes (alignment 8), not of 4 bytes (alignment 4)"),
        "{err}"
    );
    let err = receive_as::<RawValue<u64>, Value<u64>>(RawValue::new(1u64).unwrap());
    assert!(
        err.to_string()
            .contains("the shared object is raw (lock-free), not locked"),
        "{err}"
    );
    let err = receive_as::<Array<u8>, RawArray<u8>>(Array::new(1).unwrap());
    assert!(
        err.to_string()
            .contains("the shared object is locked, not raw (lock-free)"),
        "{err}"
    );
    let err = receive_as::<Value<u64>, Array<u64>>(Value::new(1u64).unwrap());
    assert!(
        err.to_string()
            .contains("the object is a Value, not an Array"),
        "{err}"
    );
    let err = receive_as::<Condition, Barrier>(Condition::new().unwrap());
    assert!(
        err.to_string()
            .contains("the object is a Condition, not a Barrier"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// The Fork start method

/// Runs in a fork-server child (one thread until the first lock starts the
/// robust sentinel): forks children that use a lock this process holds, or
/// die holding it.
fn fork_and_use_locks(_: ()) -> ((bool, bool, bool), bool, bool, bool) {
    // SAFETY: this process is a fork-server child running only this
    // function; its only other thread is aiop's robust sentinel, which the
    // fork start method allows.
    let fork = unsafe { StartMethod::fork() };
    let lock = Lock::new().unwrap();
    // A forked copy of the holder is not the holder.
    lock.acquire().unwrap();
    let foreign = Process::builder()
        .start_method(fork)
        .spawn(release_someone_elses, lock.clone())
        .unwrap()
        .join()
        .unwrap();
    let still_mine = lock.is_held_here();
    lock.release().unwrap();
    // A forked child that dies holding the lock.
    let held = Event::new().unwrap();
    let mut p = Process::builder()
        .start_method(fork)
        .spawn(hold_for_good::<Lock>, (lock.clone(), held.clone()))
        .unwrap();
    expect_event(&held, "the forked child holds the lock");
    let blocked = lock.try_lock().is_err_and(|e| e.is_would_block());
    kill_and_join(&mut p);
    let died = lock.lock_once() == Got::OwnerDied && lock.lock_once() == Got::Took;
    (foreign, still_mine, blocked, died)
}

#[test]
fn fork_start_method_children_and_robust_locks() {
    let mut p = Process::builder()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(fork_and_use_locks, ())
        .unwrap();
    assert_eq!(p.join().unwrap(), ((false, true, true), true, true, true));
}
