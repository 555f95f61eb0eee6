//! Regression tests from a review of the pool engine: each one failed
//! before its bug was fixed (more than 127 workers, set-aside readers,
//! deaths the kernel's robust-list walk does not reach, a worker that execs,
//! a plain task ahead of async ones, chunks cut past a task's limit,
//! overflowing arguments).

aiop::test_support!();

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aiop::AsyncFn;
use aiop::arena::Slot;
use aiop::blocking::pool::{Pool as BPool, PoolError};
use aiop::blocking::sync::Lock;
use common::{park_forever, set_and_wake, wait_nonzero};
use futures_lite::{StreamExt, future};

// ---------------------------------------------------------------------------
// Helpers

/// Runs `f` on a thread of its own; panics if it has not returned within
/// `limit` (the thread is left behind).
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not done within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().unwrap_err())
        }
    }
}

fn kill_myself() -> ! {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
    park_forever()
}

fn square(x: u64) -> u64 {
    x * x
}

async fn async_square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

static SLOT: OnceLock<Slot> = OnceLock::new();

fn keep_slot(slot: Slot) {
    assert!(SLOT.set(slot).is_ok(), "the initializer ran twice");
}

// ---------------------------------------------------------------------------
// 1. Patience is reset by every poll: an async waiter that is polled often
//    (a `select!` loop with a ticker) never takes the reader role from a
//    result future that was polled once and set aside.

#[test]
fn an_async_waiter_polled_often_takes_over_from_a_set_aside_reader() {
    let pool = aiop::Pool::new(2).unwrap();
    async_io::block_on(async {
        // `a` becomes the reader (its task takes a minute), then is set aside.
        let mut a = Box::pin(pool.apply(sleep_ms, 60_000));
        assert!(future::poll_once(&mut a).await.is_none());
        // `b` runs on the other worker and is done in microseconds; its
        // future is polled every 2 ms, as in a loop that also awaits a ticker.
        let mut b = Box::pin(pool.apply(square, 7));
        let start = Instant::now();
        let mut got = None;
        while start.elapsed() < Duration::from_secs(3) {
            if let Some(v) = future::poll_once(&mut b).await {
                got = Some(v);
                break;
            }
            async_io::Timer::after(Duration::from_millis(2)).await;
        }
        assert!(
            matches!(got, Some(Ok(49))),
            "b: {got:?} after {:?} (its result sits in the ring; nobody reads it)",
            start.elapsed()
        );
        drop(a);
    });
    pool.terminate();
}

// 1b. The same with the blocking face: `ready()` and short `get_timeout`s
//     never take the role either.

#[test]
fn polling_ready_takes_over_from_a_set_aside_reader() {
    let pool = aiop::Pool::new(2).unwrap();
    let mut a = Box::pin(pool.apply(sleep_ms, 60_000));
    assert!(future::block_on(future::poll_once(&mut a)).is_none());
    let mut r = pool.as_blocking().apply_async(square, 7).unwrap();
    let start = Instant::now();
    while !r.ready() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = r.ready();
    drop(a);
    pool.terminate();
    assert!(ready, "ready() stayed false for {:?}", start.elapsed());
}

#[test]
fn short_get_timeouts_take_over_from_a_set_aside_reader() {
    let pool = aiop::Pool::new(2).unwrap();
    let mut a = Box::pin(pool.apply(sleep_ms, 60_000));
    assert!(future::block_on(future::poll_once(&mut a)).is_none());
    let mut r = pool.as_blocking().apply_async(square, 7).unwrap();
    let start = Instant::now();
    let mut got = Err(PoolError::Timeout);
    while start.elapsed() < Duration::from_secs(3) {
        got = r.get_timeout(Duration::from_millis(5));
        if !matches!(got, Err(PoolError::Timeout)) {
            break;
        }
    }
    drop(a);
    pool.terminate();
    assert!(
        matches!(got, Ok(49)),
        "{got:?} after {:?} of 5 ms get_timeouts",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 2. The blocking reader sleeps on at most 128 words (futex_waitv): the life
//    words of workers past the 127th are not watched, so such a worker's
//    death is never noticed while the others are busy.

fn die_if_chosen(_: u32) -> u32 {
    let s = SLOT.get().unwrap();
    s.word(1).fetch_add(1, Ordering::SeqCst);
    let _ = aiop::futex::wake_all(s.word(1));
    let chosen = wait_nonzero(s, 0);
    if chosen == std::process::id() {
        // Let the reader see this worker running and go back to sleep.
        std::thread::sleep(Duration::from_millis(300));
        kill_myself()
    }
    park_forever()
}

#[test]
fn the_death_of_the_128th_worker_is_noticed() {
    const N: usize = 128;
    let slot = Slot::new().unwrap();
    let pool = BPool::builder()
        .processes(N)
        .initializer(keep_slot, slot.clone())
        .build()
        .unwrap();
    let p = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut m = p.map_unordered(die_if_chosen, 0..N as u32).chunksize(1);
        let _ = tx.send(m.next());
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while slot.word(1).load(Ordering::SeqCst) < N as u32 {
        assert!(Instant::now() < deadline, "the tasks did not all start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids = pool.pids();
    assert_eq!(pids.len(), N);
    // The worker of the last slot dies.
    set_and_wake(&slot, 0, pids[N - 1]);
    let got = rx.recv_timeout(Duration::from_secs(10));
    pool.terminate();
    match got {
        Ok(Some(Err(PoolError::WorkerDied { .. }))) => {}
        Ok(other) => panic!("unexpected: {other:?}"),
        Err(_) => panic!(
            "worker {} (slot {}) died and the map was not told within 10 s",
            pids[N - 1],
            N - 1
        ),
    }
}

// ---------------------------------------------------------------------------
// 3. The kernel walks at most 2048 robust-list entries: a worker that holds
//    more lock handles than that when it dies never has its life lock
//    released, and its task is never answered.

fn hold_locks_and_die(n: u32) -> u32 {
    let locks: Vec<Lock> = (0..n).map(|_| Lock::new().unwrap()).collect();
    std::hint::black_box(&locks);
    kill_myself()
}

#[test]
fn a_worker_that_dies_holding_many_lock_handles_is_noticed() {
    let pool = BPool::new(1).unwrap();
    // The mechanism works with a few handles...
    let p = pool.clone();
    let r = bounded("apply (100 locks)", Duration::from_secs(10), move || {
        p.apply(hold_locks_and_die, 100)
    });
    assert!(matches!(r, Err(PoolError::WorkerDied { .. })), "{r:?}");
    // ... but not with more than the kernel walks.
    let p = pool.clone();
    let r = bounded("apply (2100 locks)", Duration::from_secs(10), move || {
        p.apply(hold_locks_and_die, 2100)
    });
    assert!(matches!(r, Err(PoolError::WorkerDied { .. })), "{r:?}");
    pool.terminate();
}

// ---------------------------------------------------------------------------
// 4. A task that `exec`s frees its worker's life lock (the sentinel thread
//    dies in de_thread) while the process lives on: the reader then calls
//    `Process::join` on it with the engine's state mutex held, and every
//    other use of the pool blocks until that program ends.

fn exec_sleep(secs: u32) -> u32 {
    use std::os::unix::process::CommandExt;
    // Let the reader see this worker running first (a worker that execs
    // before that is only polled with `try_join`).
    std::thread::sleep(Duration::from_millis(200));
    let e = std::process::Command::new("sleep")
        .arg(secs.to_string())
        .exec();
    panic!("exec: {e}")
}

#[test]
fn a_task_that_execs_does_not_freeze_the_pool() {
    let pool = BPool::new(2).unwrap();
    let p = pool.clone();
    let t = std::thread::spawn(move || p.apply(exec_sleep, 6));
    // The task execs, the reader wakes on the freed life lock.
    std::thread::sleep(Duration::from_millis(900));
    let p = pool.clone();
    let start = Instant::now();
    let pids = bounded("pids", Duration::from_secs(20), move || p.pids());
    let took = start.elapsed();
    let r = t.join().unwrap();
    eprintln!("apply of the exec'ing task: {r:?}; pids {pids:?}");
    pool.terminate();
    assert!(
        took < Duration::from_secs(1),
        "pool.pids() was blocked {took:?} (the state mutex is held across Process::join of a live process)"
    );
}

// ---------------------------------------------------------------------------
// 5. A chunk's size is checked against the task limit only after it is
//    cut: items that each fit fail together with `Encode`, and an oversized
//    item fails the items before it in its chunk.

#[test]
fn items_that_fit_one_by_one_do_not_fail_because_they_share_a_chunk() {
    let pool = BPool::new(2).unwrap();
    let items = vec![vec![0u8; 250_000], vec![1u8; 1_900_000]];
    for it in &items {
        assert_eq!(pool.apply(len_of, it.clone()).unwrap(), it.len());
    }
    let got: Vec<_> = pool.map(len_of, items.clone()).chunksize(2).collect();
    pool.terminate();
    let summary: Vec<_> = got
        .iter()
        .map(|r| {
            r.as_ref()
                .map_err(|e| format!("{e:?}").chars().take(60).collect::<String>())
        })
        .collect();
    assert!(got.iter().all(Result::is_ok), "{summary:?}");
}

#[test]
fn an_oversized_item_fails_alone() {
    let pool = BPool::new(2).unwrap();
    let items = vec![vec![0u8; 10], vec![0u8; 3_000_000], vec![0u8; 10]];
    let got: Vec<_> = pool.map(len_of, items).chunksize(3).collect();
    pool.terminate();
    assert!(
        matches!(got[1], Err(PoolError::Encode(_))),
        "{:?}",
        got[1].as_ref().map_err(|_| ())
    );
    assert!(
        got[0].is_ok() && got[2].is_ok(),
        "item 0: {:?}, item 2: {:?}",
        got[0]
            .as_ref()
            .map_err(|e| format!("{e:?}").chars().take(40).collect::<String>()),
        got[2].as_ref().map_err(|_| ())
    );
}

// ---------------------------------------------------------------------------
// 6. Panics reachable from arguments.

#[test]
fn get_timeout_with_a_huge_timeout_does_not_panic() {
    let pool = BPool::new(1).unwrap();
    let mut r = pool.apply_async(square, 3).unwrap();
    let got = std::panic::catch_unwind(AssertUnwindSafe(|| r.get_timeout(Duration::MAX)));
    pool.terminate();
    assert!(matches!(got, Ok(Ok(9))), "panicked: {}", got.is_err());
}

#[test]
fn a_huge_child_concurrency_does_not_panic_a_map() {
    let pool = aiop::Pool::builder()
        .processes(2)
        .child_concurrency(usize::MAX)
        .build()
        .unwrap();
    let got = std::panic::catch_unwind(AssertUnwindSafe(|| {
        future::block_on(pool.map(AsyncFn(async_square), 0..4u64).collect::<Vec<_>>())
    }));
    pool.terminate();
    assert!(got.is_ok(), "the map panicked");
}

// ---------------------------------------------------------------------------
// 9. Dispatch is strictly FIFO: a plain task at the front of the backlog
//    (it needs an idle worker) holds back async tasks behind it although a
//    worker has async room; an async task that waits for one of them then
//    deadlocks the pool until it gives up.

static EV: OnceLock<aiop::sync::Event> = OnceLock::new();

fn keep_event(e: aiop::sync::Event) {
    assert!(EV.set(e).is_ok(), "the initializer ran twice");
}

async fn wait_for_event(secs: u64) -> bool {
    EV.get()
        .unwrap()
        .wait_timeout(Duration::from_secs(secs))
        .await
}

async fn set_event(_: u64) -> u64 {
    EV.get().unwrap().set();
    1
}

#[test]
fn a_plain_task_does_not_hold_back_async_tasks_that_have_room() {
    let ev = aiop::sync::Event::new().unwrap();
    let pool = aiop::Pool::builder()
        .processes(1)
        .child_concurrency(16)
        .initializer(keep_event, ev.clone())
        .build()
        .unwrap();
    let a1 = pool.apply_async(AsyncFn(wait_for_event), 20).unwrap();
    let p = pool.apply_async(square, 3).unwrap();
    let a2 = pool.apply_async(AsyncFn(set_event), 0).unwrap();
    let start = Instant::now();
    let got = async_io::block_on(async {
        future::or(async { Some(a1.await) }, async {
            async_io::Timer::after(Duration::from_secs(5)).await;
            None
        })
        .await
    });
    drop((p, a2));
    pool.terminate();
    assert!(
        matches!(got, Some(Ok(true))),
        "a1: {got:?} after {:?} (a2, which sets the event, waits behind the plain task)",
        start.elapsed()
    );
}
