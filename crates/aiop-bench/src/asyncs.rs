//! The async layer: the cost of an uncontended `lock().await`, of serving
//! 10,000 parked tasks, and the async ping-pongs (event, queue, pipe) against
//! the blocking ones and the floors, in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aiop_async::queue::Queue;
use aiop_async::sync::{Event, Lock};
use aiop_core::process::{Builder, StartMethod};
use futures_lite::future::{self, block_on};

use crate::report::{Results, iters, pin_child};
use crate::sync::per_op;

/// `async/lock_uncontended`: `Lock::lock().await` + guard drop on
/// `futures_lite::future::block_on`, ns (measured as `lock/uncontended`).
pub(crate) fn lock_uncontended(results: &mut Results) {
    let lock = Lock::new().expect("lock");
    per_op(results, "async/lock_uncontended", || {
        drop(std::hint::black_box(block_on(lock.lock())));
    });
}

const TASKS: usize = 10_000;
const EVENTS: usize = 100;
const ROUNDS: usize = 11;

/// Sets every event each time `go` is set.
fn setter((go, events): (Event, Vec<Event>)) {
    pin_child();
    for _ in 0..ROUNDS {
        go.wait_blocking();
        go.clear();
        for e in &events {
            e.set();
        }
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// `async/waiters_10k`: 10,000 tasks of a `smol::LocalExecutor` parked on
/// 100 events that a fork-server child sets; µs from the parent's signal to
/// the child until every task has been served (the median of 11 rounds).
/// `async/waiters_10k_threads`: the threads the parked tasks added to the
/// process.
pub(crate) fn waiters_10k(results: &mut Results) {
    let go = Event::new().expect("event");
    let events: Vec<Event> = (0..EVENTS).map(|_| Event::new().expect("event")).collect();
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(setter, (go.clone(), events.clone()))
        .expect("spawn");
    let before = threads();
    let mut added = 0;
    let mut samples = Vec::with_capacity(ROUNDS);
    let ex = smol::LocalExecutor::new();
    for _ in 0..ROUNDS {
        for e in &events {
            e.clear();
        }
        let started = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let (ev, started) = (events[i % EVENTS].clone(), started.clone());
                ex.spawn(async move {
                    let mut wait = Box::pin(ev.wait());
                    let done = future::poll_once(&mut wait).await.is_some();
                    started.fetch_add(1, Ordering::Relaxed);
                    if !done {
                        wait.await;
                    }
                })
            })
            .collect();
        // Park them all: run the executor until every task has polled once.
        while started.load(Ordering::Relaxed) < TASKS {
            ex.try_tick();
        }
        added = added.max(threads().saturating_sub(before));
        let t = Instant::now();
        go.set();
        block_on(ex.run(async {
            for task in tasks {
                task.await;
            }
        }));
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    child.join().expect("join");
    samples.sort_by(f64::total_cmp);
    results.value(
        "async/waiters_10k",
        "us",
        samples[ROUNDS / 2],
        Some(samples[ROUNDS - 1]),
    );
    results.value("async/waiters_10k_threads", "threads", added as f64, None);
}

/// `async/event_pingpong`: `event/pingpong` with this process awaiting
/// `Event::wait` on `futures_lite::future::block_on` (the child uses the
/// blocking API); round trip in µs.
pub(crate) fn event_pingpong(results: &mut Results) {
    let ping = Event::new().expect("event");
    let pong = Event::new().expect("event");
    let n = iters(200) * 100;
    let warm = n / 20;
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(
            crate::sync::event_child,
            (
                ping.as_blocking().clone(),
                pong.as_blocking().clone(),
                (warm + n) as u64,
                true,
            ),
        )
        .expect("spawn");
    results.latency_n("async/event_pingpong", warm, n, || {
        block_on(async {
            ping.set();
            pong.wait().await;
            pong.clear();
        });
    });
    child.join().expect("join");
}

/// `async/queue_pingpong`: a `u64` there and back through two queues
/// between this process, awaiting `put` and `get` on
/// `futures_lite::future::block_on`, and a fork-server child using the
/// blocking API; round trip in µs.
pub(crate) fn queue_pingpong(results: &mut Results) {
    let ping = Queue::<u64>::new(0).expect("queue");
    let pong = Queue::<u64>::new(0).expect("queue");
    let n = iters(200) * 100;
    let warm = n / 20;
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(
            crate::queue::pong_child,
            (
                ping.as_blocking().clone(),
                pong.as_blocking().clone(),
                (warm + n) as u64,
                true,
            ),
        )
        .expect("spawn");
    let mut i = 0u64;
    results.latency_n("async/queue_pingpong", warm, n, || {
        block_on(async {
            ping.put(i).await.expect("put");
            i = pong.get().await.expect("get");
        });
    });
    child.join().expect("join");
}

/// `async/pipe_pingpong`: `pipe/pingpong` with this process awaiting
/// `send` and `recv` of an async `Connection` on
/// `futures_lite::future::block_on` (the child uses the blocking API);
/// round trip in µs.
pub(crate) fn pipe_pingpong(results: &mut Results) {
    let (here, there) = aiop_core::connection::pipe(true).expect("pipe");
    let here = aiop_async::connection::Connection::new(here).expect("async connection");
    let n = iters(200) * 100;
    let warm = n / 20;
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(crate::pipe::echo_child, (there, (warm + n) as u64))
        .expect("spawn");
    let mut i = 0u64;
    results.latency_n("async/pipe_pingpong", warm, n, || {
        block_on(async {
            here.send(&i).await.expect("send");
            let back: u64 = here.recv().await.expect("recv");
            debug_assert_eq!(back, i);
        });
        i += 1;
    });
    child.join().expect("join");
}
