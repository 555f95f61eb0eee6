//! The async synchronization primitives and shared values across real
//! processes, on every executor (smol, async-std, tokio multi-thread and
//! current-thread, `async_io::block_on`).
//!
//! Children use the blocking API on the same shared objects (the async
//! handles travel in their arguments: same wire form). Waits on another
//! process are waits on a primitive, with [`GENEROUS`] as a hang guard only.
//!
//! What is proven:
//!
//! * `Lock`: while a child holds it, `try_lock` is `WouldBlock` and a
//!   pending `lock().await` completes when the child releases; a child
//!   SIGKILLed holding it makes a pending `lock().await` return `OwnerDied`
//!   with the guard, after which the lock is an ordinary lock.
//! * `Semaphore` / `BoundedSemaphore`: pending `acquire().await`s are served
//!   by a child's releases, one permit each; over-release is refused.
//! * `Event`: a child's `set` completes a pending `wait().await`.
//! * `Condition`: tasks in `wait_for` (known to wait: they announce
//!   themselves under the lock, which they give up only inside the wait)
//!   are woken by a child's `notify(1)` and `notify_all`.
//! * `Barrier` of two tasks and a child process, over several generations;
//!   dropping a `wait` future after its arrival breaks the barrier for the
//!   other waiters (a child gets `BrokenBarrierError`).
//! * `RLock`: re-entry through the guard, no re-entry by a second
//!   `lock()`, guards dropped on other threads (tokio multi-thread).
//! * `Value` / `Array`: `lock().await` waits for a child's hold; a child's
//!   and many tasks' increments add up exactly.
//! * Cancel safety under stress: 2,400 tasks acquire a `Lock`, a
//!   `Semaphore`, wait on an `Event` and in `Condition::wait_for`, each
//!   wait raced against a random 0–2 ms timer (the losing future dropped
//!   midway), while a child takes the same lock, releases permits, notifies
//!   and sets the event. At the end the counts add up exactly (each of the
//!   child's 600 permits was taken once, the locked counter equals the
//!   child's plus the tasks' increments), every permit is back, and every
//!   lock can be taken.
//! * Two tasks of one process contending on one `Lock` and one `Barrier`
//!   both make progress, also on current-thread executors.
//! * 10,000 tasks waiting on 100 `Event`s (in a child process running the
//!   executor under test) add at most 4 threads, and all are served when the
//!   parent sets the events.
//! * (The executor-never-blocked ticker test is tests/async_ticker.rs, alone
//!   in its binary because it is the suite's one timing assertion.)
//! * A child that leaves many waits pending in detached tasks and dropped
//!   futures, drops its runtime and returns, exits (join succeeds); the
//!   barrier arrival it abandoned is broken.

aiop::test_support!();

mod common;

use common::run_all;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aiop::blocking::process::{Builder, Process};
use aiop::shared::{Array, RawValue, Value};
use aiop::sync::{
    Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Event, Lock, RLock, Semaphore,
    TryLockError,
};
use common::{GENEROUS, executor_tests, park_forever};
use futures_lite::future;

/// Options for a child: a daemon, so that a failing test cannot leave it
/// behind.
fn child() -> Builder {
    Process::builder().daemon(true)
}

/// Polls `fut` once and asserts that it is pending.
async fn assert_pending<F: Future + Unpin>(fut: &mut F) {
    assert!(
        future::poll_once(fut).await.is_none(),
        "the future completed before the event it waits for"
    );
}

/// A small deterministic random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A timer of 0 to 2 ms.
    fn timer(&mut self) -> async_io::Timer {
        async_io::Timer::after(Duration::from_micros(self.next() % 2000))
    }
}

/// Races `fut` against `timer`; `None` (and `fut` dropped) when the timer
/// fires first.
async fn or_timeout<T>(fut: impl Future<Output = T>, timer: async_io::Timer) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        timer.await;
        None
    })
    .await
}

// ---- children (blocking API on the same objects) ----

fn hold_lock_until((lock, held, go): (Lock, Event, Event)) {
    let g = lock.lock_blocking().expect("lock");
    held.set();
    go.wait_blocking();
    drop(g);
}

fn hold_lock_and_park((lock, held): (Lock, Event)) {
    lock.lock_blocking().expect("lock").leak();
    held.set();
    park_forever();
}

fn release_permits((sem, go, n): (Semaphore, Event, u32)) {
    go.wait_blocking();
    for _ in 0..n {
        sem.release();
    }
}

fn set_event(ev: Event) {
    ev.set();
}

/// Waits until `ready` has `waiters` permits, then under the condition's
/// lock sets the state to `value` and notifies (`all` or one).
fn notify_after(
    (cond, state, ready, waiters, value, all): (
        Condition,
        RawValue<u32>,
        Semaphore,
        u32,
        u32,
        bool,
    ),
) {
    for _ in 0..waiters {
        ready.acquire_blocking();
    }
    let g = cond.lock_blocking().expect("lock");
    state.set(value);
    if all {
        cond.notify_all();
    } else {
        cond.notify(1);
    }
    drop(g);
}

fn barrier_party((barrier, rounds): (Barrier, u32)) -> Vec<u32> {
    (0..rounds)
        .map(|_| barrier.wait_blocking().expect("barrier"))
        .collect()
}

/// Whether the child's wait ended with `BrokenBarrierError`.
fn barrier_wait_once(barrier: Barrier) -> bool {
    barrier.wait_blocking() == Err(BrokenBarrierError)
}

fn value_increments((v, a, n): (Value<u64>, Array<u64>, u64)) {
    for _ in 0..n {
        *v.lock_blocking().expect("lock") += 1;
        a.lock_blocking().expect("lock")[1] += 1;
    }
}

// ---- per-primitive semantics ----

executor_tests! {
    async fn lock_waits_for_a_child() {
        let lock = Lock::new().unwrap();
        let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
        let mut c = child()
            .spawn(hold_lock_until, (lock.clone(), held.clone(), go.clone()))
            .unwrap();
        assert!(held.wait_timeout(GENEROUS).await);
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(lock.is_locked() && !lock.is_held_here());
        let mut fut = Box::pin(lock.lock());
        assert_pending(&mut fut).await;
        go.set();
        let guard = fut.await.expect("not an owner death");
        assert!(lock.is_held_here());
        drop(guard);
        assert!(lock.try_lock().is_ok());
        c.join().unwrap();
    }

    async fn lock_reports_owner_death() {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let mut c = child()
            .spawn(hold_lock_and_park, (lock.clone(), held.clone()))
            .unwrap();
        assert!(held.wait_timeout(GENEROUS).await);
        let mut fut = Box::pin(lock.lock());
        assert_pending(&mut fut).await;
        c.kill().unwrap();
        let died = fut.await.expect_err("the holder died");
        let guard = died.into_inner();
        assert!(lock.is_held_here());
        drop(guard);
        assert!(lock.try_lock().is_ok());
        assert!(c.join().is_err());
    }

    async fn lock_timeout_expires_and_acquire_release() {
        let lock = Lock::new().unwrap();
        lock.acquire().await.unwrap();
        assert!(lock.lock_timeout(Duration::from_millis(5)).await.unwrap_err().is_would_block());
        lock.release().unwrap();
        assert!(lock.release().is_err());
        assert!(lock.acquire_timeout(Duration::from_millis(5)).await.is_ok());
        lock.release().unwrap();
    }

    async fn semaphore_served_by_child_releases() {
        let sem = Semaphore::new(0).unwrap();
        let go = Event::new().unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = sem.clone();
                async move { s.acquire().await }
            })
            .collect();
        let mut c = child().spawn(release_permits, (sem.clone(), go.clone(), 3)).unwrap();
        let mut all = Box::pin(run_all(waiters));
        assert_pending(&mut all).await;
        assert!(!sem.try_acquire());
        go.set();
        assert_eq!(all.await.len(), 3);
        assert_eq!(sem.get_value(), 0);
        assert!(!sem.acquire_timeout(Duration::from_millis(2)).await);
        c.join().unwrap();

        let bounded = BoundedSemaphore::new(2).unwrap();
        assert!(bounded.release().is_err());
        bounded.acquire().await;
        assert_eq!(bounded.get_value(), 1);
        bounded.release().unwrap();
        assert!(bounded.release().is_err());
        assert_eq!(bounded.get_value(), bounded.bound());
    }

    async fn event_set_by_child() {
        let ev = Event::new().unwrap();
        let mut fut = Box::pin(ev.wait());
        assert_pending(&mut fut).await;
        let mut c = child().spawn(set_event, ev.clone()).unwrap();
        fut.await;
        assert!(ev.is_set());
        c.join().unwrap();
    }

    async fn condition_notify_and_notify_all_from_child() {
        let cond = Condition::new().unwrap();
        let state = RawValue::new(0u32).unwrap();
        let ready = Semaphore::new(0).unwrap();
        // One waiter, woken by notify(1).
        let mut c = child()
            .spawn(notify_after, (cond.clone(), state.clone(), ready.clone(), 1, 1, false))
            .unwrap();
        let g = cond.lock().await.unwrap();
        ready.release(); // announced under the lock
        let g = cond.wait_for(g, || state.get() >= 1).await.unwrap();
        assert_eq!(state.get(), 1);
        drop(g);
        c.join().unwrap();
        // Three waiters, woken at once by notify_all.
        let mut c = child()
            .spawn(notify_after, (cond.clone(), state.clone(), ready.clone(), 3, 2, true))
            .unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (cond, state, ready) = (cond.clone(), state.clone(), ready.clone());
                async move {
                    let g = cond.lock().await.unwrap();
                    ready.release();
                    let g = cond.wait_for(g, || state.get() >= 2).await.unwrap();
                    drop(g);
                    state.get()
                }
            })
            .collect();
        assert_eq!(run_all(waiters).await, [2, 2, 2]);
        assert!(cond.try_lock().is_ok());
        c.join().unwrap();
    }

    async fn condition_wait_timeout_and_cancelled_wait_release_the_lock() {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let g = cond.lock().await.unwrap();
        let (g, woken) = cond.wait_timeout(g, Duration::from_millis(2)).await.unwrap();
        assert!(!woken);
        // A wait dropped midway leaves the lock free.
        let mut fut = Box::pin(cond.wait(g));
        assert_pending(&mut fut).await;
        drop(fut);
        assert!(cond.try_lock().is_ok());
    }

    async fn barrier_of_two_tasks_and_a_child() {
        let barrier = Barrier::new(3).unwrap();
        let mut c = child().spawn(barrier_party, (barrier.clone(), 5)).unwrap();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                async move {
                    let mut idx = Vec::new();
                    for _ in 0..5 {
                        idx.push(b.wait().await.unwrap());
                    }
                    idx
                }
            })
            .collect();
        let mine = run_all(tasks).await;
        let theirs = c.join().unwrap();
        for round in 0..5 {
            let mut got = vec![mine[0][round], mine[1][round], theirs[round]];
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2]);
        }
    }

    async fn dropping_a_barrier_wait_breaks_it() {
        let barrier = Barrier::new(3).unwrap();
        let mut c = child().spawn(barrier_wait_once, barrier.clone()).unwrap();
        let mut fut = Box::pin(barrier.wait());
        assert_pending(&mut fut).await;
        // Our arrival counts: wait until the child's does too, then give up.
        common::until("the child arrives", || barrier.n_waiting() >= 2);
        drop(fut);
        assert!(barrier.broken());
        assert!(c.join().unwrap(), "the child's wait broke");
        assert_eq!(barrier.wait().await, Err(BrokenBarrierError));
        barrier.reset();
        assert!(!barrier.broken());
        // A future never polled has not arrived.
        drop(barrier.wait());
        assert_eq!(barrier.n_waiting(), 0);
    }

    async fn rlock_reenters_through_the_guard() {
        let lock = RLock::new().unwrap();
        let outer = lock.lock().await.unwrap();
        let inner = outer.reenter();
        assert!(lock.try_lock().is_err());
        assert!(lock.as_blocking().try_lock().is_err(), "no thread owns a task's hold");
        assert!(lock.as_blocking().release().is_err());
        // The guards may be dropped on another thread.
        std::thread::scope(|t| {
            t.spawn(move || drop(outer));
        });
        assert!(lock.is_locked());
        drop(inner);
        assert!(!lock.is_locked());
        let g = lock.lock_timeout(Duration::from_millis(5)).await.unwrap();
        assert!(lock.lock_timeout(Duration::from_millis(2)).await.is_err());
        drop(g);
        // A thread's hold keeps the core's ownership.
        let tg = lock.lock_blocking().unwrap();
        assert!(lock.try_lock().is_err());
        drop(tg);
        assert!(lock.try_lock().is_ok());
    }

    async fn value_and_array_lock_across_processes() {
        let v = Value::new(0u64).unwrap();
        let a = Array::<u64>::new(2).unwrap();
        let mut c = child().spawn(value_increments, (v.clone(), a.clone(), 500)).unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (v, a) = (v.clone(), a.clone());
                async move {
                    for _ in 0..10 {
                        *v.lock().await.unwrap() += 1;
                        a.lock().await.unwrap()[1] += 1;
                    }
                }
            })
            .collect();
        run_all(tasks).await;
        c.join().unwrap();
        assert_eq!(v.get().await, 1000);
        assert_eq!(a.to_vec().await, [0, 1000]);
        a.set(0, 7).await;
        assert_eq!(a.get(0).await, 7);
        v.set(3).await;
        assert_eq!(v.get_blocking(), 3);
        let g = v.lock().await.unwrap();
        assert!(v.try_lock().is_err());
        assert!(v.lock_timeout(Duration::from_millis(2)).await.is_err());
        drop(g);
    }
}

// ---- cancel safety under stress ----

const STRESS_TASKS: u32 = 600;
const CHILD_LOCKS: u64 = 600;
const COND_STEPS: u32 = 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stress {
    lock: Lock,
    counter: RawValue<u64>,
    limiter: Semaphore,
    produced: Semaphore,
    ev: Event,
    cond: Condition,
    level: RawValue<u32>,
    go: Event,
}

/// The producer: takes the lock `CHILD_LOCKS` times (incrementing the
/// counter under it), releases `STRESS_TASKS` permits, raises the
/// condition's level step by step with `notify_all`, and sets the event.
fn stress_child(s: Stress) {
    s.go.wait_blocking();
    let mut step = 0;
    for i in 0..CHILD_LOCKS.max(u64::from(STRESS_TASKS)) {
        if i < CHILD_LOCKS {
            let g = s.lock.lock_blocking().expect("lock");
            s.counter.set(s.counter.get() + 1);
            drop(g);
        }
        if i < u64::from(STRESS_TASKS) {
            s.produced.release();
        }
        if i % 30 == 0 && step < COND_STEPS {
            step += 1;
            let g = s.cond.lock_blocking().expect("lock");
            s.level.set(step);
            s.cond.notify_all();
            drop(g);
        }
    }
    while step < COND_STEPS {
        step += 1;
        let g = s.cond.lock_blocking().expect("lock");
        s.level.set(step);
        s.cond.notify_all();
        drop(g);
    }
    s.ev.set();
}

executor_tests! {
    async fn cancel_safety_under_stress() {
        let s = Arc::new(Stress {
            lock: Lock::new().unwrap(),
            counter: RawValue::new(0u64).unwrap(),
            limiter: Semaphore::new(3).unwrap(),
            produced: Semaphore::new(0).unwrap(),
            ev: Event::new().unwrap(),
            cond: Condition::new().unwrap(),
            level: RawValue::new(0u32).unwrap(),
            go: Event::new().unwrap(),
        });
        let got_permits = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut tasks: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
        for i in 0..STRESS_TASKS {
            // Lock: increment the shared counter under the lock.
            let (st, d) = (s.clone(), dropped.clone());
            tasks.push(Box::pin(async move {
                let mut rng = Rng(u64::from(i) * 7919 + 1);
                loop {
                    match or_timeout(st.lock.lock(), rng.timer()).await {
                        Some(g) => {
                            let _g = g.unwrap();
                            st.counter.set(st.counter.get() + 1);
                            return;
                        }
                        None => {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
            // Semaphores: take one produced permit, passing through the limiter.
            let (st, n, d) = (s.clone(), got_permits.clone(), dropped.clone());
            tasks.push(Box::pin(async move {
                let mut rng = Rng(u64::from(i) * 104_729 + 3);
                loop {
                    if or_timeout(st.limiter.acquire(), rng.timer()).await.is_none() {
                        d.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let got = or_timeout(st.produced.acquire(), rng.timer()).await.is_some();
                    st.limiter.release();
                    if got {
                        n.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }));
            // Event.
            let (st, d) = (s.clone(), dropped.clone());
            tasks.push(Box::pin(async move {
                let mut rng = Rng(u64::from(i) * 15_485_863 + 5);
                while or_timeout(st.ev.wait(), rng.timer()).await.is_none() {
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }));
            // Condition: wait for a level, the wait (and its guard) dropped midway.
            let (st, d) = (s.clone(), dropped.clone());
            let target = 1 + i % COND_STEPS;
            tasks.push(Box::pin(async move {
                let mut rng = Rng(u64::from(i) * 32_452_843 + 7);
                loop {
                    let attempt = async {
                        let g = st.cond.lock().await.unwrap();
                        let g = st.cond.wait_for(g, || st.level.get() >= target).await.unwrap();
                        drop(g);
                    };
                    if or_timeout(attempt, rng.timer()).await.is_some() {
                        return;
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let mut c = child().spawn(stress_child, Stress {
            lock: s.lock.clone(),
            counter: s.counter.clone(),
            limiter: s.limiter.clone(),
            produced: s.produced.clone(),
            ev: s.ev.clone(),
            cond: s.cond.clone(),
            level: s.level.clone(),
            go: s.go.clone(),
        }).unwrap();
        // The child starts producing once every task has started.
        let n = tasks.len();
        let started = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = tasks
            .into_iter()
            .map(|t| {
                let (started, go) = (started.clone(), s.go.clone());
                async move {
                    if started.fetch_add(1, Ordering::SeqCst) + 1 == n {
                        go.set();
                    }
                    t.await
                }
            })
            .collect();
        assert_eq!(run_all(tasks).await.len(), n);
        c.join().unwrap();
        // Every produced permit was taken exactly once, none is left.
        assert_eq!(got_permits.load(Ordering::Relaxed), u64::from(STRESS_TASKS));
        assert_eq!(s.produced.get_value(), 0);
        // Every limiter permit is back.
        assert_eq!(s.limiter.get_value(), 3);
        // Every increment under the lock happened exactly once.
        assert_eq!(s.counter.get(), CHILD_LOCKS + u64::from(STRESS_TASKS));
        // Every lock can be taken.
        assert!(s.lock.try_lock().is_ok());
        assert!(s.cond.try_lock().is_ok());
        assert!(s.ev.is_set());
        assert_eq!(s.level.get(), COND_STEPS);
        // Futures were in fact dropped midway.
        assert!(dropped.load(Ordering::Relaxed) > 0);
    }
}

// ---- two tasks of one process ----

executor_tests! {
    async fn two_tasks_contending_make_progress() {
        let lock = Lock::new().unwrap();
        let barrier = Barrier::new(2).unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (lock, barrier, counter) = (lock.clone(), barrier.clone(), counter.clone());
                async move {
                    let mut indexes = Vec::new();
                    for _ in 0..100 {
                        let g = lock.lock().await.unwrap();
                        // Hold the lock across a yield: the other task must wait.
                        future::yield_now().await;
                        counter.fetch_add(1, Ordering::Relaxed);
                        drop(g);
                        indexes.push(barrier.wait().await.unwrap());
                    }
                    indexes
                }
            })
            .collect();
        let out = run_all(tasks).await;
        assert_eq!(counter.load(Ordering::Relaxed), 200);
        assert_eq!(out[0].len(), 100);
        for (a, b) in out[0].iter().zip(&out[1]) {
            let mut got = [*a, *b];
            got.sort_unstable();
            assert_eq!(got, [0, 1]);
        }
    }
}

// ---- 10,000 waiters on 100 primitives, in a child ----

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Exec {
    Smol,
    AsyncStd,
    TokioMulti,
    TokioCurrent,
    AsyncIo,
}

fn run_on<T: Send + 'static>(exec: Exec, fut: impl Future<Output = T> + Send + 'static) -> T {
    match exec {
        Exec::Smol => smol::block_on(fut),
        Exec::AsyncStd => async_std::task::block_on(fut),
        Exec::TokioMulti => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(fut).await.unwrap() }),
        Exec::TokioCurrent => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut),
        Exec::AsyncIo => async_io::block_on(fut),
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

const WAITERS: usize = 10_000;
const PRIMITIVES: usize = 100;

/// Parks 10,000 tasks on 100 events, reports when they all wait, and
/// returns (threads before, threads while waiting, tasks served, watcher
/// threads).
fn ten_thousand_waiters(
    (exec, events, waiting): (Exec, Vec<Event>, Event),
) -> (usize, usize, usize, usize) {
    run_on(exec, async move {
        let before = threads();
        let started = Arc::new(AtomicUsize::new(0));
        let all_started = Event::new().unwrap();
        let tasks: Vec<_> = (0..WAITERS)
            .map(|i| {
                let (ev, started, all) = (
                    events[i % PRIMITIVES].clone(),
                    started.clone(),
                    all_started.clone(),
                );
                async move {
                    let mut wait = Box::pin(ev.wait());
                    // The first poll registers with the watcher.
                    let done = future::poll_once(&mut wait).await.is_some();
                    if started.fetch_add(1, Ordering::SeqCst) + 1 == WAITERS {
                        all.set();
                    }
                    if !done {
                        wait.await;
                    }
                }
            })
            .collect();
        let served = async { run_all(tasks).await.len() };
        let report = async {
            all_started.wait().await;
            let during = threads();
            waiting.set();
            during
        };
        let (served, during) = future::zip(served, report).await;
        (before, during, served, aiop_async::__watcher_threads())
    })
}

fn waiters_10k(exec: Exec) {
    let events: Vec<Event> = (0..PRIMITIVES).map(|_| Event::new().unwrap()).collect();
    let waiting = Event::new().unwrap();
    let mut c = child()
        .spawn(
            ten_thousand_waiters,
            (exec, events.clone(), waiting.clone()),
        )
        .unwrap();
    assert!(
        waiting.wait_timeout_blocking(GENEROUS),
        "the child's tasks never all waited"
    );
    for ev in &events {
        ev.set();
    }
    let (before, during, served, watchers) = c.join().unwrap();
    assert_eq!(served, WAITERS);
    assert!(
        during <= before + 4,
        "{exec:?}: {WAITERS} waiting tasks took the process from {before} to {during} threads"
    );
    assert_eq!(watchers, 1, "100 words fit one watcher thread");
}

#[test]
fn waiters_10k_smol() {
    waiters_10k(Exec::Smol);
}

#[test]
fn waiters_10k_async_std() {
    waiters_10k(Exec::AsyncStd);
}

#[test]
fn waiters_10k_tokio_multi_thread() {
    waiters_10k(Exec::TokioMulti);
}

#[test]
fn waiters_10k_tokio_current_thread() {
    waiters_10k(Exec::TokioCurrent);
}

#[test]
fn waiters_10k_async_io() {
    waiters_10k(Exec::AsyncIo);
}

// ---- a program that drops pending waits exits ----

#[derive(serde::Serialize, serde::Deserialize)]
struct Never {
    lock: Lock,
    sem: Semaphore,
    ev: Event,
    cond: Condition,
    barrier: Barrier,
}

/// Starts waits that never complete in detached tasks of a runtime, and
/// futures that it drops, then drops the runtime and returns.
fn abandon_waits((exec, n): (Exec, Never)) -> usize {
    let started = Arc::new(AtomicUsize::new(0));
    let count = started.clone();
    let body = async move {
        // Futures dropped while pending.
        for _ in 0..100 {
            let mut f = Box::pin(n.ev.wait());
            assert!(future::poll_once(&mut f).await.is_none());
        }
        // Detached tasks, pending when the runtime goes.
        let spawn = |f: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                drop(rt.spawn(f));
            } else {
                smol::spawn(f).detach();
            }
        };
        // Each task counts itself once its waits are registered (first poll).
        let all_started = Event::new().unwrap();
        let counted = |st: &AtomicUsize, all: &Event| {
            if st.fetch_add(1, Ordering::SeqCst) + 1 == 401 {
                all.set();
            }
        };
        for _ in 0..200 {
            let (l, s, e, c) = (n.lock.clone(), n.sem.clone(), n.ev.clone(), n.cond.clone());
            let (st, all) = (started.clone(), all_started.clone());
            spawn(Box::pin(async move {
                let mut w = Box::pin(future::zip(l.lock(), future::zip(s.acquire(), e.wait())));
                assert!(future::poll_once(&mut w).await.is_none());
                counted(&st, &all);
                let _ = w.await;
            }));
            let (st, all) = (started.clone(), all_started.clone());
            spawn(Box::pin(async move {
                let g = c.lock().await.unwrap();
                let mut w = Box::pin(c.wait_for(g, || false));
                assert!(future::poll_once(&mut w).await.is_none());
                counted(&st, &all);
                let _ = w.await;
            }));
        }
        let b = n.barrier.clone();
        let (st, all) = (started.clone(), all_started.clone());
        spawn(Box::pin(async move {
            let mut w = Box::pin(b.wait());
            assert!(future::poll_once(&mut w).await.is_none());
            counted(&st, &all);
            let _ = w.await;
        }));
        all_started.wait().await;
        assert_eq!(n.barrier.n_waiting(), 1);
    };
    match exec {
        Exec::TokioMulti | Exec::TokioCurrent => {
            let rt = if matches!(exec, Exec::TokioMulti) {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .unwrap()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
            };
            rt.block_on(body);
            drop(rt);
        }
        other => run_on(other, body),
    }
    count.load(Ordering::SeqCst)
}

fn exits_with_pending_waits(exec: Exec) {
    let lock = Lock::new().unwrap();
    let _held = lock.try_lock().unwrap();
    let never = Never {
        lock: lock.clone(),
        sem: Semaphore::new(0).unwrap(),
        ev: Event::new().unwrap(),
        cond: Condition::new().unwrap(),
        barrier: Barrier::new(2).unwrap(),
    };
    let barrier = never.barrier.clone();
    let mut c = child().spawn(abandon_waits, (exec, never)).unwrap();
    let started = c.join_timeout(GENEROUS).expect("the child exits");
    assert_eq!(started, 401);
    // Its tokio runtime dropped the pending barrier task: the arrival it
    // abandoned broke the barrier (smol's detached tasks are never dropped:
    // the process ended under them).
    if matches!(exec, Exec::TokioMulti | Exec::TokioCurrent) {
        assert!(barrier.broken());
    }
}

#[test]
fn exits_with_pending_waits_tokio_multi_thread() {
    exits_with_pending_waits(Exec::TokioMulti);
}

#[test]
fn exits_with_pending_waits_tokio_current_thread() {
    exits_with_pending_waits(Exec::TokioCurrent);
}

#[test]
fn exits_with_pending_waits_smol() {
    exits_with_pending_waits(Exec::Smol);
}
