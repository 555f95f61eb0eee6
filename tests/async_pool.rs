//! The async process pool (`aiop::Pool`), with real worker processes, on
//! every executor (smol, async-std, tokio multi-thread inside
//! `tokio::spawn`, tokio current-thread, `async_io::block_on`).
//!
//! What is proven (each test names its claim):
//!
//! 1. `apply`, `apply_async`, `map`, `map_unordered` (sorted), `starmap` and
//!    `map_stream` (from a stream that is sometimes not ready, and from a
//!    channel fed by another task) give the serial results, with one item
//!    per task and automatic chunks, for plain and `AsyncFn` functions.
//! 2. A worker runs its async tasks at once: 8 tasks of one worker pass an
//!    8-party aiop `Barrier` together; tasks await an aiop `Queue` and
//!    `Semaphore` handed over by the initializer.
//! 3. A task that SIGKILLs its worker fails with `WorkerDied`; the other
//!    tasks complete (with one task per worker, and with the default 16:
//!    plain tasks queued behind the victim are not lost), the pool keeps
//!    its size and goes on. With async tasks, every task in flight in the
//!    dead worker fails, the others complete.
//! 4. Panics (in an async task, before its first await, in a plain task)
//!    come back as `TaskPanicked` with the message; the worker survives.
//! 5. `terminate` on a busy pool returns, every pending future (running
//!    plain and async tasks, queued ones, a map; one of them asleep as the
//!    reader) gives `Terminated`, and every worker has been reaped.
//! 6. CPU-bound plain tasks run on both workers at once.
//! 7. Dropping a `MapStream` halfway withdraws its queued tasks: after the
//!    drop, no task starts beyond those already handed to a worker.
//! 8. Dropping an `apply` future (by a timeout, after a first poll) loses
//!    nothing else; dropping the reader hands the role to a waiter. And a
//!    result future that was polled and then set aside (neither polled nor
//!    dropped, as `&mut r` in a `select!` loop) stalls no other waiter,
//!    whether it holds the reader role or was merely waiting (see
//!    `a_result_set_aside_stalls_no_other_waiter`).
//! 9. Arguments that do not serialize fail at submission with `Encode`, and
//!    nothing runs.
//! 10. `max_tasks_per_child` replaces the workers, loses nothing, and the
//!     initializer runs once in every worker (including a worker that
//!     answers its last task and exits before the reader ever saw it
//!     running: its reply in the result ring counts, not `WorkerDied`).
//! 11. `join().await` waits for the tasks of outstanding `apply_async`
//!     results (running and queued), keeps their results, and reaps every
//!     worker.
//! 12. 200 concurrent applies from 200 tasks on one pool all complete
//!     correctly.
//!
//! Every test ends its pool with `finish` (close, join, every worker reaped)
//! or `terminate`; a failing test drops its pool, which kills the workers.
aiop::test_support!();

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aiop::arena::Slot;
use aiop::pool::{AsyncResult, PoolError};
use aiop::queue::Queue;
use aiop::sync::{Barrier, Event, Semaphore};
use aiop::{AsyncFn, Pool};
use common::{GENEROUS, assert_reaped, executor_tests, join_all, park_forever, pidfd, run_all};
use futures_lite::{Stream, StreamExt, future};
use serde::{Deserialize, Serialize};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

// ---------------------------------------------------------------------------
// Helpers

/// `fut`'s output; panics if it takes longer than [`GENEROUS`] (a hang).
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(what, GENEROUS, fut).await
}

/// `fut`'s output; panics if it takes longer than `limit` (a hang).
async fn within_for<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    let r = future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(limit).await;
        None
    })
    .await;
    match r {
        Some(v) => v,
        None => panic!("{what}: not done within {limit:?}"),
    }
}

/// The values of `results`, panicking on the first error.
fn oks<T: Debug>(results: Vec<Result<T, PoolError>>) -> Vec<T> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("result {i}: {e:?}")))
        .collect()
}

/// This process's id (a worker's, in a task).
fn my_pid() -> u32 {
    std::process::id()
}

/// Pidfds for the current workers of `pool` (alive: not reaped yet).
fn worker_fds(pool: &Pool) -> Vec<(u32, OwnedFd)> {
    pool.pids().into_iter().map(|p| (p, pidfd(p))).collect()
}

/// Closes and joins `pool`, then checks that every worker it had (and
/// every process of `also`: workers that ended earlier) has been reaped.
async fn finish(pool: Pool, also: Vec<(u32, OwnedFd)>) {
    let fds = worker_fds(&pool);
    pool.close();
    within("join", pool.join()).await.expect("join");
    assert!(pool.pids().is_empty(), "workers left: {:?}", pool.pids());
    for (pid, fd) in fds.iter().chain(also.iter()) {
        assert_reaped(*pid, fd);
    }
}

/// Kills the calling process (a worker) with `SIGKILL`.
fn kill_myself() -> ! {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .expect("kill");
    park_forever()
}

/// Adds one to word `i` of a counter slot shared with the parent.
fn bump(slot: &Slot, i: usize) -> u32 {
    slot.word(i).fetch_add(1, Ordering::SeqCst) + 1
}

// ---------------------------------------------------------------------------
// Pool functions used by several tests

fn square(x: u64) -> u64 {
    x * x + 1
}

async fn async_square(x: u64) -> u64 {
    // A real suspension: the task goes back to the worker's executor.
    future::yield_now().await;
    x * x + 1
}

fn mul(a: u64, b: u32) -> u64 {
    a * u64::from(b) + 3
}

/// A stream that is not ready every other poll (it wakes itself, as a
/// stream waiting on I/O would be woken).
struct Stutter<S> {
    inner: S,
    ready: bool,
}

impl<S: Stream + Unpin> Stream for Stutter<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.ready = !self.ready;
        if !self.ready {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

fn stutter<S: Stream + Unpin>(inner: S) -> Stutter<S> {
    Stutter {
        inner,
        ready: false,
    }
}

// ---------------------------------------------------------------------------
// Claim 1: results match the serial map.

const N: u64 = 300;

executor_tests! {
    async fn apply_and_apply_async_match_the_serial_results() {
        let pool = Pool::new(2).unwrap();
        for x in [0u64, 1, 7, 1 << 20] {
            assert_eq!(
                within("apply", pool.apply(square, x)).await.unwrap(),
                square(x)
            );
            let want = async_square(x).await;
            assert_eq!(
                within("apply", pool.apply(AsyncFn(async_square), x))
                    .await
                    .unwrap(),
                want
            );
            // A closure returning a future, capturing nothing.
            let r = pool
                .apply(
                    AsyncFn(|s: String| async move { s.len() }),
                    "four".repeat(x as usize % 5),
                )
                .await;
            assert_eq!(r.unwrap(), "four".repeat(x as usize % 5).len());
        }
        // Many at once: submitted before any is awaited.
        let plain: Vec<AsyncResult<u64>> = (0..20)
            .map(|x| pool.apply_async(square, x).unwrap())
            .collect();
        let asyncs: Vec<AsyncResult<u64>> = (0..20)
            .map(|x| pool.apply_async(AsyncFn(async_square), x).unwrap())
            .collect();
        let got = within("apply_async results", join_all(plain)).await;
        assert_eq!(oks(got), (0..20).map(square).collect::<Vec<_>>());
        let got = within("apply_async results", join_all(asyncs)).await;
        let mut want = Vec::new();
        for x in 0..20 {
            want.push(async_square(x).await);
        }
        assert_eq!(oks(got), want);
        finish(pool, Vec::new()).await;
    }

    async fn map_matches_the_serial_map() {
        let pool = Pool::new(2).unwrap();
        let serial: Vec<u64> = (0..N).map(square).collect();
        let mut serial_async = Vec::new();
        for x in 0..N {
            serial_async.push(async_square(x).await);
        }
        // map: one item per task, and the automatic chunk size.
        let got = within(
            "map",
            pool.map(square, 0..N).chunksize(1).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), serial);
        let got = within("map", pool.map(square, 0..N).collect::<Vec<_>>()).await;
        assert_eq!(oks(got), serial);
        let got = within(
            "map",
            pool.map(AsyncFn(async_square), 0..N)
                .chunksize(1)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), serial_async);
        let got = within(
            "map",
            pool.map(AsyncFn(async_square), 0..N)
                .chunksize(7)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), serial_async);
        let got = within(
            "map",
            pool.map(AsyncFn(async_square), 0..N).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), serial_async);
        // map_unordered: the same results, in some order.
        for chunk in [Some(1), None] {
            let s = pool.map_unordered(square, 0..N);
            let s = match chunk {
                Some(c) => s.chunksize(c),
                None => s,
            };
            let mut got = oks(within("map_unordered", s.collect::<Vec<_>>()).await);
            got.sort_unstable();
            assert_eq!(got, serial);
            let s = pool.map_unordered(AsyncFn(async_square), 0..N);
            let s = match chunk {
                Some(c) => s.chunksize(c),
                None => s,
            };
            let mut got = oks(within("map_unordered", s.collect::<Vec<_>>()).await);
            got.sort_unstable();
            assert_eq!(got, serial_async);
        }
        // starmap: tuples spread over the arguments.
        let pairs: Vec<(u64, u32)> = (0..N).map(|i| (i, (i % 13) as u32)).collect();
        let want: Vec<u64> = pairs.iter().map(|&(a, b)| mul(a, b)).collect();
        let got = within(
            "starmap",
            pool.starmap(mul, pairs.clone())
                .chunksize(1)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), want);
        let got = within(
            "starmap",
            pool.starmap(mul, pairs.clone()).collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), want);
        let async_mul = AsyncFn(|a: u64, b: u32| async move {
            future::yield_now().await;
            mul(a, b)
        });
        let got = within(
            "starmap",
            pool.starmap(async_mul, pairs.clone())
                .chunksize(1)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), want);
        let got = within(
            "starmap",
            pool.starmap(async_mul, pairs)
                .chunksize(5)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(oks(got), want);
        // An empty input gives an empty stream.
        let got = within("map", pool.map(square, 0..0).collect::<Vec<_>>()).await;
        assert!(got.is_empty());
        finish(pool, Vec::new()).await;
    }

    async fn map_stream_reads_an_async_input() {
        let pool = Pool::new(2).unwrap();
        let serial: Vec<u64> = (0..N).map(square).collect();
        let mut serial_async = Vec::new();
        for x in 0..N {
            serial_async.push(async_square(x).await);
        }
        // An input that is not ready every other poll.
        for chunk in [Some(1), None] {
            let s = pool.map_stream(square, stutter(futures_lite::stream::iter(0..N)));
            let s = match chunk {
                Some(c) => s.chunksize(c),
                None => s,
            };
            assert_eq!(
                oks(within("map_stream", s.collect::<Vec<_>>()).await),
                serial
            );
            let s = pool.map_stream(
                AsyncFn(async_square),
                stutter(futures_lite::stream::iter(0..N)),
            );
            let s = match chunk {
                Some(c) => s.chunksize(c),
                None => s,
            };
            assert_eq!(
                oks(within("map_stream", s.collect::<Vec<_>>()).await),
                serial_async
            );
        }
        // An input fed by another task through a small channel: its length
        // is unknown, so the automatic chunks grow from one item.
        for (chunk, is_async) in [
            (Some(1), false),
            (None, false),
            (Some(1), true),
            (None, true),
        ] {
            let (tx, rx) = smol::channel::bounded::<u64>(3);
            let producer: BoxFuture<Vec<u64>> = Box::pin(async move {
                for x in 0..N {
                    tx.send(x).await.unwrap();
                    if x % 7 == 0 {
                        future::yield_now().await;
                    }
                }
                Vec::new()
            });
            let p = pool.clone();
            let consumer: BoxFuture<Vec<u64>> = Box::pin(async move {
                let got = if is_async {
                    let s = p.map_stream(AsyncFn(async_square), rx);
                    let s = match chunk {
                        Some(c) => s.chunksize(c),
                        None => s,
                    };
                    s.collect::<Vec<_>>().await
                } else {
                    let s = p.map_stream(square, rx);
                    let s = match chunk {
                        Some(c) => s.chunksize(c),
                        None => s,
                    };
                    s.collect::<Vec<_>>().await
                };
                oks(got)
            });
            let mut out = within(
                "map_stream from a channel",
                run_all(vec![producer, consumer]),
            )
            .await;
            let want = if is_async { &serial_async } else { &serial };
            assert_eq!(
                &out.pop().unwrap(),
                want,
                "chunk {chunk:?}, async {is_async}"
            );
        }
        finish(pool, Vec::new()).await;
    }
}

/// The blocking face of the async pool, outside any executor.
#[test]
fn blocking_calls_match_the_serial_results() {
    let pool = Pool::new(2).unwrap();
    let serial_async: Vec<u64> = (0..N).map(|x| future::block_on(async_square(x))).collect();
    assert_eq!(pool.apply_blocking(square, 9).unwrap(), square(9));
    assert_eq!(
        pool.apply_blocking(AsyncFn(async_square), 9).unwrap(),
        serial_async[9]
    );
    let rs: Vec<AsyncResult<u64>> = (0..10)
        .map(|x| pool.apply_async(AsyncFn(async_square), x).unwrap())
        .collect();
    let got: Vec<u64> = rs.into_iter().map(|r| r.get_blocking().unwrap()).collect();
    assert_eq!(got, serial_async[..10]);
    let got: Vec<u64> = pool
        .as_blocking()
        .map(square, 0..N)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, (0..N).map(square).collect::<Vec<_>>());
    let got: Vec<u64> = pool
        .map(AsyncFn(async_square), 0..N)
        .into_blocking_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, serial_async);
    let fds = worker_fds(&pool);
    pool.close();
    pool.join_blocking().unwrap();
    for (pid, fd) in &fds {
        assert_reaped(*pid, fd);
    }
}

// ---------------------------------------------------------------------------
// Claim 2: async tasks of one worker run at once, and aiop's async
// primitives work inside them.

/// Handed to the worker by the initializer: an 8-party barrier, a
/// semaphore the tasks release when they start, a queue they take from.
type MeetHandles = (Barrier, Semaphore, Queue<u64>);
static MEET: OnceLock<MeetHandles> = OnceLock::new();

fn init_meet(h: MeetHandles) {
    assert!(MEET.set(h).is_ok(), "the initializer ran twice");
}

/// Waits at the barrier: it opens only once 8 tasks wait there together.
async fn meet(i: u32) -> (u32, u32, u32) {
    let (barrier, _, _) = MEET.get().expect("initialized");
    let index = barrier.wait().await.expect("the barrier is not broken");
    (i, index, my_pid())
}

/// Says it started, then awaits an item of the queue.
async fn take_one(tag: u64) -> (u64, u64) {
    let (_, started, q) = MEET.get().expect("initialized");
    started.release();
    (tag, q.get().await.expect("an item"))
}

executor_tests! {
    async fn async_tasks_of_one_worker_run_at_once() {
        let handles = (
            Barrier::new(8).unwrap(),
            Semaphore::new(0).unwrap(),
            Queue::new(0).unwrap(),
        );
        let pool = Pool::builder()
            .processes(1)
            .child_concurrency(8)
            .initializer(init_meet, handles.clone())
            .build()
            .unwrap();
        let worker = pool.pids()[0];
        // 8 tasks pass an 8-party barrier: impossible unless all 8 wait at
        // it at the same time, in the one worker.
        let got = oks(within(
            "8 tasks at a barrier",
            pool.map(AsyncFn(meet), 0..8).collect::<Vec<_>>(),
        )
        .await);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        let indices: BTreeSet<u32> = got.iter().map(|g| g.1).collect();
        assert_eq!(
            indices,
            (0..8).collect::<BTreeSet<u32>>(),
            "each arrival has its own index"
        );
        assert!(
            got.iter().all(|g| g.2 == worker),
            "{got:?} ran outside worker {worker}"
        );
        // Again, through apply_async: the barrier serves a second round.
        let rs: Vec<AsyncResult<(u32, u32, u32)>> = (10..18)
            .map(|i| pool.apply_async(AsyncFn(meet), i).unwrap())
            .collect();
        let got = oks(within("8 applies at a barrier", join_all(rs)).await);
        assert_eq!(got.iter().map(|g| g.1).collect::<BTreeSet<u32>>(), indices);

        // Tasks awaiting an aiop queue in the worker: all three have
        // started (the semaphore says so) while the queue is still empty,
        // and each gets one of the items put afterwards.
        let (_, started, q) = &handles;
        let rs: Vec<AsyncResult<(u64, u64)>> = (0..3)
            .map(|t| pool.apply_async(AsyncFn(take_one), t).unwrap())
            .collect();
        for _ in 0..3 {
            within("a task starts", started.acquire()).await;
        }
        assert!(q.is_empty());
        let items: Vec<u64> = (0..3).map(|i| 1000 + 17 * i).collect();
        for &it in &items {
            q.put(it).await.unwrap();
        }
        let got = oks(within("queue takers", join_all(rs)).await);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        let mut taken: Vec<u64> = got.iter().map(|g| g.1).collect();
        taken.sort_unstable();
        assert_eq!(taken, items);
        finish(pool, Vec::new()).await;
    }
}

// ---------------------------------------------------------------------------
// Claim 3: a worker killed mid-task.

const VICTIM: u32 = 7;

/// Kills its own worker for item `VICTIM`.
fn die_at(i: u32) -> (u32, u32) {
    if i == VICTIM {
        kill_myself();
    }
    (i, my_pid())
}

/// The async tasks of the kill test: a barrier that 8 tasks in flight pass
/// together, and the event that lets the survivors finish.
type InFlightHandles = (Barrier, Event);
static IN_FLIGHT: OnceLock<InFlightHandles> = OnceLock::new();

fn init_in_flight(h: InFlightHandles) {
    assert!(IN_FLIGHT.set(h).is_ok(), "the initializer ran twice");
}

/// Waits until 8 tasks are in flight; task `VICTIM` then kills its
/// worker, the others wait for the event.
async fn in_flight(i: u32) -> (u32, u32) {
    let (barrier, go) = IN_FLIGHT.get().expect("initialized");
    barrier.wait().await.expect("the barrier is not broken");
    if i == VICTIM {
        kill_myself();
    }
    go.wait().await;
    (i, my_pid())
}

fn assert_killed(r: &Result<(u32, u32), PoolError>, among: &[u32]) -> u32 {
    match r {
        Err(PoolError::WorkerDied { pid, how }) => {
            assert!(among.contains(pid), "pid {pid} not a worker of {among:?}");
            assert!(how.contains("signal 9"), "{how}");
            *pid
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

executor_tests! {
    async fn a_killed_worker_fails_only_its_task() {
        // child_concurrency 1, then the default (16, for async tasks: a
        // plain task still has its worker to itself, so none queues behind
        // the victim).
        for concurrency in [Some(1), None] {
            let builder = Pool::builder().processes(2);
            let builder = match concurrency {
                Some(c) => builder.child_concurrency(c),
                None => builder,
            };
            let pool = builder.build().unwrap();
            let fds = worker_fds(&pool);
            let before = pool.pids();
            let got = within(
                "map",
                pool.map(die_at, 0..20).chunksize(1).collect::<Vec<_>>(),
            )
            .await;
            // The pool keeps its size, without the dead worker, and goes on.
            assert_eq!(pool.pids().len(), 2);
            let dead = assert_killed(&got[VICTIM as usize], &before);
            assert!(!pool.pids().contains(&dead));
            assert_eq!(
                within("apply", pool.apply(square, 5)).await.unwrap(),
                square(5)
            );
            let again = oks(within("map", pool.map(die_at, 100..120).collect::<Vec<_>>()).await);
            assert_eq!(
                again.iter().map(|g| g.0).collect::<Vec<_>>(),
                (100..120).collect::<Vec<_>>()
            );
            // Every other task completed.
            for (i, r) in got.iter().enumerate() {
                if i != VICTIM as usize {
                    match r {
                        Ok((j, _)) => assert_eq!(*j, i as u32),
                        Err(e) => panic!(
                            "child_concurrency {concurrency:?}: task {i} (not the victim) failed: {e:?}"
                        ),
                    }
                }
            }
            finish(pool, fds).await;
        }
    }

    async fn a_killed_async_worker_fails_every_task_in_flight_there() {
        let handles = (Barrier::new(8).unwrap(), Event::new().unwrap());
        let pool = Pool::builder()
            .processes(2)
            .child_concurrency(4)
            .initializer(init_in_flight, handles.clone())
            .build()
            .unwrap();
        let fds = worker_fds(&pool);
        let before = pool.pids();
        // 8 tasks, 4 per worker: all in flight at the barrier before the
        // victim kills its worker.
        let mut rs: Vec<Option<AsyncResult<(u32, u32)>>> = (0..8)
            .map(|i| Some(pool.apply_async(AsyncFn(in_flight), i).unwrap()))
            .collect();
        let victim = rs[VICTIM as usize].take().unwrap();
        let dead = assert_killed(&within("the victim", victim).await, &before);
        // Only now may the survivors finish.
        handles.1.set();
        let rest = within("the others", join_all(rs.into_iter().flatten().collect())).await;
        let mut died = 0;
        let mut done = Vec::new();
        for r in &rest {
            match r {
                Err(PoolError::WorkerDied { pid, .. }) => {
                    assert_eq!(*pid, dead, "a task died with another worker");
                    died += 1;
                }
                Ok((i, pid)) => {
                    assert_ne!(*pid, dead);
                    assert!(before.contains(pid));
                    done.push(*i);
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        // The victim's 3 companions died with it; the other worker's 4
        // tasks completed.
        assert_eq!(died, 3, "{rest:?}");
        assert_eq!(done.len(), 4, "{rest:?}");
        // The pool keeps its size; the new worker runs 4 tasks at once too
        // (8 tasks meet at the barrier again).
        assert_eq!(pool.pids().len(), 2);
        assert!(!pool.pids().contains(&dead));
        let got = oks(within(
            "a second round",
            pool.map(AsyncFn(in_flight), 100..108).collect::<Vec<_>>(),
        )
        .await);
        let pids: BTreeSet<u32> = got.iter().map(|g| g.1).collect();
        assert_eq!(pids, pool.pids().into_iter().collect::<BTreeSet<_>>());
        finish(pool, fds).await;
    }
}

// ---------------------------------------------------------------------------
// Claim 4: panics.

async fn async_boom(x: u32) -> u32 {
    future::yield_now().await;
    if x % 3 == 1 {
        panic!("async boom {x}");
    }
    x
}

fn plain_boom(x: u32) -> u32 {
    if x % 3 == 1 {
        panic!("plain boom {x}");
    }
    x
}

fn assert_panics(got: &[Result<u32, PoolError>], inputs: std::ops::Range<u32>, word: &str) {
    assert_eq!(got.len(), inputs.len());
    for (x, r) in inputs.zip(got) {
        if x % 3 == 1 {
            match r {
                Err(PoolError::TaskPanicked(m)) => assert_eq!(m, &format!("{word} boom {x}")),
                other => panic!("item {x}: expected a panic, got {other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().ok(), Some(&x), "item {x}: {r:?}");
        }
    }
}

executor_tests! {
    async fn panics_come_back_with_their_message() {
        let pool = Pool::new(2).unwrap();
        let before = pool.pids();
        match within("apply", pool.apply(AsyncFn(async_boom), 4)).await {
            Err(PoolError::TaskPanicked(m)) => assert_eq!(m, "async boom 4"),
            other => panic!("{other:?}"),
        }
        match within("apply", pool.apply(plain_boom, 7)).await {
            Err(e) => assert_eq!(e.panic_message(), Some("plain boom 7")),
            other => panic!("{other:?}"),
        }
        // A closure that panics before it makes its future.
        let early = AsyncFn(|x: u32| {
            assert!(x != 2, "early boom {x}");
            async move { x }
        });
        match within("apply", pool.apply(early, 2)).await {
            Err(PoolError::TaskPanicked(m)) => assert_eq!(m, "early boom 2"),
            other => panic!("{other:?}"),
        }
        assert_eq!(within("apply", pool.apply(early, 3)).await.unwrap(), 3);
        // In maps, a panic fails its item only.
        let got = within(
            "map",
            pool.map(AsyncFn(async_boom), 0..30).collect::<Vec<_>>(),
        )
        .await;
        assert_panics(&got, 0..30, "async");
        let got = within(
            "map",
            pool.map(plain_boom, 0..30).chunksize(4).collect::<Vec<_>>(),
        )
        .await;
        assert_panics(&got, 0..30, "plain");
        let got = within(
            "map",
            pool.map(plain_boom, 0..30).chunksize(1).collect::<Vec<_>>(),
        )
        .await;
        assert_panics(&got, 0..30, "plain");
        // No worker died of it.
        assert_eq!(pool.pids(), before);
        finish(pool, Vec::new()).await;
    }
}

// ---------------------------------------------------------------------------
// Claim 5: terminate while busy.

static STARTED: OnceLock<Semaphore> = OnceLock::new();

fn init_started(s: Semaphore) {
    assert!(STARTED.set(s).is_ok(), "the initializer ran twice");
}

/// Says it started and never returns (blocks its worker).
fn hang_plain(_: u32) -> u32 {
    STARTED.get().expect("initialized").release();
    park_forever()
}

/// Says it started and never returns (waits forever).
async fn hang_async(_: u32) -> u32 {
    STARTED.get().expect("initialized").release();
    future::pending().await
}

fn assert_terminated<T: Debug>(what: &str, r: &Result<T, PoolError>) {
    assert!(
        matches!(r, Err(PoolError::Terminated)),
        "{what}: expected Terminated, got {r:?}"
    );
}

executor_tests! {
    async fn terminate_while_busy_fails_every_pending_future() {
        let started = Semaphore::new(0).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .child_concurrency(2)
            .initializer(init_started, started.clone())
            .build()
            .unwrap();
        let fds = worker_fds(&pool);
        // A plain task has a worker to itself; the other worker runs two
        // async tasks: 3 running. Then a plain task and an async one wait
        // in the parent (no worker has room for them).
        let running: Vec<AsyncResult<u32>> = vec![
            pool.apply_async(hang_plain, 0).unwrap(),
            pool.apply_async(AsyncFn(hang_async), 1).unwrap(),
            pool.apply_async(AsyncFn(hang_async), 2).unwrap(),
        ];
        let queued = vec![
            pool.apply_async(hang_plain, 3).unwrap(),
            pool.apply_async(AsyncFn(hang_async), 4).unwrap(),
        ];
        // The first awaited result reads for everyone (asleep on the
        // workers), the others wait for it, and a map waits too.
        let mut waiters: Vec<BoxFuture<Vec<Result<u32, PoolError>>>> = Vec::new();
        for r in running.into_iter().chain(queued) {
            waiters.push(Box::pin(async move { vec![r.await] }));
        }
        let p = pool.clone();
        waiters.push(Box::pin(async move {
            p.map(AsyncFn(hang_async), 0..50)
                .chunksize(1)
                .collect::<Vec<_>>()
                .await
        }));
        let p = pool.clone();
        waiters.push(Box::pin(async move {
            for _ in 0..3 {
                within("a task starts", started.acquire()).await;
            }
            let t = Instant::now();
            p.terminate();
            let took = t.elapsed();
            assert!(took < GENEROUS, "terminate took {took:?}");
            Vec::new()
        }));
        let outs = within("every pending future", run_all(waiters)).await;
        for (i, out) in outs[..5].iter().enumerate() {
            assert_eq!(out.len(), 1);
            assert_terminated(&format!("result {i}"), &out[0]);
        }
        assert!(!outs[5].is_empty(), "the map gave nothing");
        for r in &outs[5] {
            assert_terminated("a map item", r);
        }
        // No worker is left, and the pool takes no more work.
        assert!(pool.pids().is_empty(), "{:?}", pool.pids());
        for (pid, fd) in &fds {
            assert_reaped(*pid, fd);
        }
        assert_terminated(
            "apply_async after terminate",
            &pool.apply_async(square, 1).map(|_| ()),
        );
        assert_terminated("apply after terminate", &pool.apply(square, 1).await);
        // Terminating again, or joining, changes nothing.
        pool.terminate();
        within("join", pool.join()).await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// Claim 6: CPU-bound plain tasks use both workers.

static FAIR: OnceLock<Slot> = OnceLock::new();

fn init_fair(s: Slot) {
    assert!(FAIR.set(s).is_ok(), "the initializer ran twice");
}

fn crunch(seed: u64) -> u64 {
    (0..2_000_000u64).fold(seed, |a, b| {
        a.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(b)
    })
}

/// Counts itself in, spins until a second task has started (which cannot
/// happen in this worker while this task runs), then works.
fn cpu_task(seed: u64) -> (u64, u32, bool) {
    let slot = FAIR.get().expect("initialized");
    bump(slot, 0);
    let deadline = Instant::now() + GENEROUS;
    let mut partner = false;
    while Instant::now() < deadline {
        if slot.word(0).load(Ordering::SeqCst) >= 2 {
            partner = true;
            break;
        }
        std::hint::spin_loop();
    }
    (crunch(seed), my_pid(), partner)
}

executor_tests! {
    async fn cpu_bound_tasks_run_on_both_workers_at_once() {
        let slot = Slot::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_fair, slot.clone())
            .build()
            .unwrap();
        let got = oks(within(
            "4 CPU-bound tasks",
            pool.map(cpu_task, 0..4).chunksize(1).collect::<Vec<_>>(),
        )
        .await);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            (0..4).map(crunch).collect::<Vec<_>>()
        );
        // The first task spun until a second one started: two ran at once,
        // which one worker cannot do with plain tasks, so both workers ran
        // them.
        assert!(got.iter().all(|g| g.2), "a task ran alone: {got:?}");
        let pids: BTreeSet<u32> = got.iter().map(|g| g.1).collect();
        assert_eq!(pids.len(), 2, "{got:?}");
        assert_eq!(slot.word(0).load(Ordering::SeqCst), 4);
        finish(pool, Vec::new()).await;
    }
}

// ---------------------------------------------------------------------------
// Claim 7: dropping a MapStream halfway.

/// Items below this complete at once; the others wait for the gate.
const TAKE: u32 = 6;

type GateHandles = (Slot, Event);
static GATED: OnceLock<GateHandles> = OnceLock::new();

fn init_gated(h: GateHandles) {
    assert!(GATED.set(h).is_ok(), "the initializer ran twice");
}

fn gated_plain(i: u32) -> u32 {
    let (slot, gate) = GATED.get().expect("initialized");
    bump(slot, 0);
    if i >= TAKE {
        assert!(gate.wait_timeout_blocking(GENEROUS), "the gate stayed shut");
    }
    i
}

async fn gated_async(i: u32) -> u32 {
    let (slot, gate) = GATED.get().expect("initialized");
    bump(slot, 0);
    if i >= TAKE {
        assert!(gate.wait_timeout(GENEROUS).await, "the gate stayed shut");
    }
    i
}

executor_tests! {
    async fn a_dropped_map_starts_no_further_task() {
        for (concurrency, is_async) in [(1usize, false), (2, true)] {
            let handles = (Slot::new().unwrap(), Event::new().unwrap());
            let pool = Pool::builder()
                .processes(2)
                .child_concurrency(concurrency)
                .initializer(init_gated, handles.clone())
                .build()
                .unwrap();
            let max_in_flight = 16;
            // Take the first TAKE results; the items after them hold the
            // workers (until the gate opens) and fill the map's window.
            {
                let mut s = if is_async {
                    pool.map(AsyncFn(gated_async), 0..10_000)
                        .chunksize(1)
                        .max_in_flight(max_in_flight)
                } else {
                    pool.map(gated_plain, 0..10_000)
                        .chunksize(1)
                        .max_in_flight(max_in_flight)
                };
                for k in 0..TAKE {
                    assert_eq!(within("a result", s.next()).await.unwrap().unwrap(), k);
                }
            }
            handles.1.set();
            // The pool goes on.
            assert_eq!(
                within("apply", pool.apply(square, 3)).await.unwrap(),
                square(3)
            );
            let got = within(
                "map",
                pool.map(AsyncFn(async_square), 0..20).collect::<Vec<_>>(),
            )
            .await;
            assert_eq!(oks(got), (0..20).map(square).collect::<Vec<_>>());
            // Once every task is done: those that started are the ones
            // taken and at most those that workers held when the stream
            // was dropped (one per task slot of each worker). Without the
            // withdrawal, the window (16) would have started too.
            finish(pool.clone(), Vec::new()).await;
            let started = handles.0.word(0).load(Ordering::SeqCst);
            let bound = TAKE as usize + 2 * concurrency;
            assert!(
                started as usize >= TAKE as usize && started as usize <= bound,
                "{started} tasks started (bound {bound}, async {is_async})"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Claim 8: cancel safety of apply.

static HELD: OnceLock<Event> = OnceLock::new();

fn init_held(e: Event) {
    assert!(HELD.set(e).is_ok(), "the initializer ran twice");
}

/// Waits (without blocking its worker) until the gate opens.
async fn held(x: u64) -> u64 {
    assert!(
        HELD.get()
            .expect("initialized")
            .wait_timeout(GENEROUS)
            .await,
        "the gate stayed shut"
    );
    x
}

fn maybe_slow((i, j): (u64, u64)) -> u64 {
    if (i + j) % 5 == 0 {
        crunch(i) % 7 + square(j)
    } else {
        square(i * 100 + j)
    }
}

fn maybe_slow_serial((i, j): (u64, u64)) -> u64 {
    maybe_slow((i, j))
}

executor_tests! {
    async fn a_dropped_reader_hands_the_role_over() {
        let gate = Event::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_held, gate.clone())
            .build()
            .unwrap();
        // Dropped by a timeout: the task had been handed to a worker.
        let r = future::or(async { Some(pool.apply(AsyncFn(held), 1).await) }, async {
            async_io::Timer::after(Duration::from_millis(20)).await;
            None
        })
        .await;
        assert!(r.is_none(), "the held task finished: {r:?}");
        // A fresh apply reads for itself.
        assert_eq!(
            within("apply", pool.apply(square, 4)).await.unwrap(),
            square(4)
        );

        // `a` reads for everyone (its task is held, so it is still waiting
        // after its first poll); `bs` wait behind it. (Async tasks: both
        // workers hold a task, so a plain one would wait for the gate.)
        let mut a = Box::pin(pool.apply(AsyncFn(held), 2));
        assert!(future::poll_once(&mut a).await.is_none());
        let mut bs: Vec<_> = (0..8u64)
            .map(|i| Box::pin(pool.apply(AsyncFn(async_square), i)))
            .collect();
        for b in bs.iter_mut() {
            assert!(
                future::poll_once(b).await.is_none(),
                "a result came without a reader"
            );
        }
        // Dropping the reader must wake a waiter to take its place.
        drop(a);
        let got = within("the waiters, after the reader left", join_all(bs)).await;
        assert_eq!(oks(got), (0..8).map(square).collect::<Vec<_>>());
        assert_eq!(
            within("apply", pool.apply(AsyncFn(async_square), 5))
                .await
                .unwrap(),
            square(5)
        );
        gate.set();
        finish(pool, Vec::new()).await;
    }

    async fn dropped_applies_lose_nothing_else() {
        let pool = Pool::new(2).unwrap();
        // 8 tasks, 25 applies each; every third future is dropped after its
        // first poll (sometimes while it reads for the others).
        let futs: Vec<BoxFuture<Vec<(u64, u64, u64)>>> = (0..8u64)
            .map(|i| {
                let pool = pool.clone();
                Box::pin(async move {
                    let mut kept = Vec::new();
                    for j in 0..25u64 {
                        if (i * 25 + j) % 3 == 0 {
                            let mut f = Box::pin(pool.apply(maybe_slow, (i, j)));
                            let _ = future::poll_once(&mut f).await;
                            drop(f);
                        } else if j % 2 == 0 {
                            kept.push((i, j, pool.apply(maybe_slow, (i, j)).await.unwrap()));
                        } else {
                            let f = AsyncFn(|a: (u64, u64)| async move { maybe_slow(a) });
                            kept.push((i, j, pool.apply(f, (i, j)).await.unwrap()));
                        }
                    }
                    kept
                }) as BoxFuture<_>
            })
            .collect();
        let got = within("the kept applies", run_all(futs)).await;
        let mut n = 0;
        for (i, j, v) in got.into_iter().flatten() {
            assert_eq!(v, maybe_slow_serial((i, j)), "({i}, {j})");
            n += 1;
        }
        assert_eq!(n, (0..200).filter(|k| k % 3 != 0).count());
        assert_eq!(
            within("apply", pool.apply(square, 11)).await.unwrap(),
            square(11)
        );
        finish(pool, Vec::new()).await;
    }

    async fn a_result_set_aside_stalls_no_other_waiter() {
        let gate = Event::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_held, gate.clone())
            .build()
            .unwrap();
        // A `select!` loop over `&mut r` and other work: `r` is polled, is
        // not ready (its task is held), and is set aside, neither polled
        // nor dropped, while the same task uses the pool for other work.
        // (Async tasks throughout: a plain one needs a worker that holds
        // nothing, and held tasks occupy the workers here.)
        let mut r = pool.apply_async(AsyncFn(held), 1).unwrap();
        for k in 0..3u64 {
            assert!(
                future::poll_once(&mut r).await.is_none(),
                "the held task finished"
            );
            let v = within(
                "an apply while another result is set aside",
                pool.apply(AsyncFn(async_square), k),
            )
            .await;
            assert_eq!(v.unwrap(), square(k));
        }
        // The same across tasks, with `r2` set aside as a plain waiter (not
        // the reader): `r1` reads, `r2` and another task's `b` wait; `r1`
        // is dropped; `b` must still get its result while `r2` stays aside.
        let (to_b, b_go) = smol::channel::bounded::<()>(1);
        let (b_waits, b_waiting) = smol::channel::bounded::<()>(1);
        let p = pool.clone();
        let other: BoxFuture<u64> = Box::pin(async move {
            b_go.recv().await.unwrap();
            let mut b = Box::pin(p.apply(AsyncFn(async_square), 5));
            assert!(
                future::poll_once(&mut b).await.is_none(),
                "a result came without a reader"
            );
            b_waits.send(()).await.unwrap();
            within("another task's apply", b).await.unwrap()
        });
        let p = pool.clone();
        let g = gate.clone();
        let setter: BoxFuture<u64> = Box::pin(async move {
            let mut r1 = p.apply_async(AsyncFn(held), 2).unwrap();
            assert!(future::poll_once(&mut r1).await.is_none());
            let mut r2 = p.apply_async(AsyncFn(held), 3).unwrap();
            assert!(future::poll_once(&mut r2).await.is_none());
            to_b.send(()).await.unwrap();
            b_waiting.recv().await.unwrap();
            drop(r1);
            // Wait for the other task (it returns), keeping `r2` aside.
            let _ = b_waiting.recv().await;
            g.set();
            within("r2", r2).await.unwrap()
        });
        // (The tasks bound their own waits; this bound is only a backstop.)
        let got = within_for("both tasks", 3 * GENEROUS, run_all(vec![other, setter])).await;
        assert_eq!(got, vec![square(5), 3]);
        gate.set();
        assert_eq!(within("r", r).await.unwrap(), 1);
        finish(pool, Vec::new()).await;
    }
}

// ---------------------------------------------------------------------------
// Claim 9: arguments that do not serialize.

/// Serializes unless it holds `BAD`.
#[derive(Debug, Deserialize)]
struct Picky(u32);

const BAD: u32 = 3;

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == BAD {
            return Err(serde::ser::Error::custom("refuses to serialize"));
        }
        s.serialize_u32(self.0)
    }
}

static RUNS: OnceLock<Slot> = OnceLock::new();

fn init_runs(s: Slot) {
    assert!(RUNS.set(s).is_ok(), "the initializer ran twice");
}

fn count_picky(p: Picky) -> u32 {
    bump(RUNS.get().expect("initialized"), 0);
    p.0 * 2
}

async fn count_picky_async(p: Picky) -> u32 {
    bump(RUNS.get().expect("initialized"), 0);
    p.0 * 2
}

fn takes_event(e: Event) -> bool {
    e.is_set()
}

fn assert_encode<T: Debug>(r: Result<T, PoolError>) -> String {
    match r {
        Err(PoolError::Encode(m)) => m,
        other => panic!("expected Encode, got {other:?}"),
    }
}

executor_tests! {
    async fn arguments_that_do_not_serialize_fail_at_submission() {
        let runs = Slot::new().unwrap();
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_runs, runs.clone())
            .build()
            .unwrap();
        // apply_async refuses at once, apply at its first poll.
        assert_encode(pool.apply_async(count_picky, Picky(BAD)));
        assert_encode(pool.apply_async(AsyncFn(count_picky_async), Picky(BAD)));
        assert_encode(within("apply", pool.apply(count_picky, Picky(BAD))).await);
        assert_encode(within("apply", pool.apply(AsyncFn(count_picky_async), Picky(BAD))).await);
        // An aiop handle cannot ride in the arguments.
        let m = assert_encode(pool.apply_async(takes_event, Event::new().unwrap()));
        assert!(m.contains("initializer"), "{m}");
        // In a map, the item fails in its place, whatever the chunks.
        for chunk in [1, 2, 4] {
            let got = within(
                "map",
                pool.map(count_picky, (0..8).map(Picky))
                    .chunksize(chunk)
                    .collect::<Vec<_>>(),
            )
            .await;
            for (x, r) in (0..8u32).zip(got) {
                if x == BAD {
                    assert_encode(r);
                } else {
                    assert_eq!(r.unwrap(), x * 2);
                }
            }
        }
        let got = within(
            "map",
            pool.map(AsyncFn(count_picky_async), (0..8).map(Picky))
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 7);
        assert_encode(got.into_iter().nth(BAD as usize).unwrap());
        finish(pool, Vec::new()).await;
        // Nothing that failed ran: only the 4 maps' 7 good items did.
        assert_eq!(runs.word(0).load(Ordering::SeqCst), 4 * 7);
    }
}

// ---------------------------------------------------------------------------
// Claim 10: max_tasks_per_child.

static INIT_LOG: OnceLock<Queue<u32>> = OnceLock::new();

/// Records this worker's pid in the parent's queue.
fn init_log(q: Queue<u32>) {
    q.put_blocking(my_pid()).expect("put");
    assert!(INIT_LOG.set(q).is_ok(), "the initializer ran twice");
}

fn whoami(i: u32) -> (u32, u32) {
    (i, my_pid())
}

async fn whoami_async(i: u32) -> (u32, u32) {
    future::yield_now().await;
    (i, my_pid())
}

executor_tests! {
    async fn max_tasks_per_child_replaces_workers_and_loses_nothing() {
        // (max tasks per worker, plain items); then 4 async applies and an
        // async map of 16 items.
        for (max, plain) in [(2u32, 40u32), (1, 20)] {
            let log: Queue<u32> = Queue::new(0).unwrap();
            let pool = Pool::builder()
                .processes(2)
                .max_tasks_per_child(u64::from(max))
                .initializer(init_log, log.clone())
                .build()
                .unwrap();
            let initial = pool.pids();
            let fds = worker_fds(&pool);
            let mut got = oks(within(
                "map",
                pool.map(whoami, 0..plain).chunksize(1).collect::<Vec<_>>(),
            )
            .await);
            let rs: Vec<AsyncResult<(u32, u32)>> = (plain..plain + 4)
                .map(|i| pool.apply_async(AsyncFn(whoami_async), i).unwrap())
                .collect();
            got.extend(oks(within("applies", join_all(rs)).await));
            let s = pool.map(AsyncFn(whoami_async), plain + 4..plain + 20);
            got.extend(oks(within("map", s.collect::<Vec<_>>()).await));
            // Nothing lost, each result in its place.
            assert_eq!(
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                (0..plain + 20).collect::<Vec<_>>()
            );
            // No worker ran more than `max` tasks, so many workers ran them.
            let mut per_pid: HashMap<u32, u32> = HashMap::new();
            for (_, pid) in &got {
                *per_pid.entry(*pid).or_default() += 1;
            }
            assert!(per_pid.values().all(|&n| n <= max), "{per_pid:?}");
            assert!(per_pid.len() >= got.len() / max as usize, "{per_pid:?}");
            let last = pool.pids();
            assert_eq!(last.len(), 2);
            assert!(
                last.iter().all(|p| !initial.contains(p)),
                "{initial:?} {last:?}"
            );
            finish(pool, fds).await;
            // The initializer ran once in every worker there was: those
            // that ran tasks and the last two.
            let mut inits = Vec::new();
            while let Ok(pid) = log.try_get() {
                inits.push(pid);
            }
            let distinct: BTreeSet<u32> = inits.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                inits.len(),
                "an initializer ran twice: {inits:?}"
            );
            let workers: BTreeSet<u32> =
                per_pid.keys().copied().chain(last).chain(initial).collect();
            assert_eq!(distinct, workers);
        }
    }
}

// ---------------------------------------------------------------------------
// Claim 11: join waits for apply_async tasks.

type JoinHandles = (Slot, Event);
static JOINED: OnceLock<JoinHandles> = OnceLock::new();

fn init_joined(h: JoinHandles) {
    assert!(JOINED.set(h).is_ok(), "the initializer ran twice");
}

fn slow_triple(i: u32) -> u32 {
    let (slot, gate) = JOINED.get().expect("initialized");
    assert!(gate.wait_timeout_blocking(GENEROUS), "the gate stayed shut");
    bump(slot, 0);
    i * 3
}

async fn slow_triple_async(i: u32) -> u32 {
    let (slot, gate) = JOINED.get().expect("initialized");
    assert!(gate.wait_timeout(GENEROUS).await, "the gate stayed shut");
    bump(slot, 0);
    i * 3
}

executor_tests! {
    async fn join_waits_for_outstanding_tasks_and_reaps_the_workers() {
        let handles = (Slot::new().unwrap(), Event::new().unwrap());
        let pool = Pool::builder()
            .processes(2)
            .child_concurrency(1)
            .initializer(init_joined, handles.clone())
            .build()
            .unwrap();
        let fds = worker_fds(&pool);
        // 2 tasks run (held by the gate), 4 wait in the parent.
        let rs: Vec<AsyncResult<u32>> = (0..6)
            .map(|i| {
                if i % 2 == 0 {
                    pool.apply_async(slow_triple, i).unwrap()
                } else {
                    pool.apply_async(AsyncFn(slow_triple_async), i).unwrap()
                }
            })
            .collect();
        let mut join = Box::pin(pool.join());
        assert!(
            future::poll_once(&mut join).await.is_none(),
            "join returned with tasks running"
        );
        assert!(matches!(
            pool.apply_async(square, 1),
            Err(PoolError::Closed)
        ));
        assert_eq!(handles.0.word(0).load(Ordering::SeqCst), 0);
        handles.1.set();
        within("join", join).await.unwrap();
        // Every task, queued ones too, finished before join returned.
        assert_eq!(handles.0.word(0).load(Ordering::SeqCst), 6);
        assert!(pool.pids().is_empty());
        for (pid, fd) in &fds {
            assert_reaped(*pid, fd);
        }
        // Their results are kept for their futures.
        let got = oks(within("results after join", join_all(rs)).await);
        assert_eq!(got, (0..6).map(|i| i * 3).collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------
// Claim 12: many concurrent tasks share a pool.

executor_tests! {
    async fn two_hundred_concurrent_applies_all_complete() {
        let pool = Pool::new(2).unwrap();
        let futs: Vec<BoxFuture<(u64, u64)>> = (0..200u64)
            .map(|i| {
                let pool = pool.clone();
                Box::pin(async move {
                    let v = if i % 2 == 0 {
                        pool.apply(square, i).await
                    } else {
                        pool.apply(AsyncFn(async_square), i).await
                    };
                    (i, v.unwrap())
                }) as BoxFuture<_>
            })
            .collect();
        let got = within("200 applies", run_all(futs)).await;
        for (k, (i, v)) in got.into_iter().enumerate() {
            assert_eq!(i, k as u64);
            assert_eq!(v, square(i));
        }
        finish(pool, Vec::new()).await;
    }
}
