//! The async queues, on every executor, across real processes.
//!
//! Children use the blocking API on the same shared queues; every body runs
//! on smol, async-std, tokio (multi-thread and current-thread) and
//! `async_io::block_on`. What is proven:
//!
//! * `get().await`, `put().await` (a put asleep on a full queue released by
//!   a child's get), `maxsize` (`try_put`/`put_timeout` give `Full` with the
//!   item back), `close` (gets drain, then `Closed`; a task asleep in `get`
//!   wakes with `Closed` when a child closes).
//! * An async get waits correctly behind a blocking getter of another
//!   process that sleeps holding the consumers' lock (the lock word is
//!   watched too): both get an item, none is lost.
//! * `JoinableQueue::join().await` waits for a child's last `task_done`.
//! * `SimpleQueue` both ways.
//! * Cancel safety under stress: a thousand get tasks under random short
//!   timeouts (futures dropped midway) take what producer children put;
//!   a few hundred put tasks under random timeouts feed consumer children,
//!   retrying an item only when its future was dropped. Every item is
//!   delivered exactly once, and in each producer's order per consumer.
//! * Two tasks of one process contending on one queue both make progress,
//!   on the current-thread executors too.
//! * An 8 MiB item goes through a 1 MiB ring to and from a child.
aiop::test_support!();

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aiop::blocking::process::Process;
use aiop::blocking::queue as blocking;
use aiop::blocking::sync::Event;
use aiop::queue::{
    GetError, JoinableQueue, PutError, Queue, SimpleQueue, TryGetError, TryPutError,
};
use common::{GENEROUS, executor_tests, join_all, or_timeout, rng};
use serde::de::DeserializeOwned;

const SHORT: Duration = Duration::from_millis(20);

fn child() -> aiop::blocking::process::Builder {
    Process::builder().daemon(true)
}

fn join_ok<R: DeserializeOwned>(p: &mut Process<R>) -> R {
    p.join_timeout(GENEROUS).expect("the child succeeds")
}

// ---------------------------------------------------------------------------
// Children (blocking API)

type Msg = (u32, u32);

fn produce((q, id, n): (blocking::Queue<Msg>, u32, u32)) {
    for seq in 0..n {
        q.put((id, seq)).unwrap();
    }
}

fn consume(q: blocking::Queue<Msg>) -> Vec<Msg> {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(m) => got.push(m),
            Err(blocking::GetError::Closed) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

fn get_one(q: blocking::Queue<u32>) -> u32 {
    q.get().unwrap()
}

fn get_one_signalled((q, started): (blocking::Queue<u32>, Event)) -> u32 {
    started.set();
    q.get().unwrap()
}

fn close_it(q: blocking::Queue<u32>) {
    q.close();
}

fn work(q: blocking::JoinableQueue<u32>) -> u32 {
    let mut sum = 0;
    for _ in 0..3 {
        sum += q.get().unwrap();
        q.task_done().unwrap();
    }
    sum
}

fn echo(q: blocking::SimpleQueue<String>) {
    let s = q.get().unwrap();
    q.put(format!("{s}!")).unwrap();
}

/// Bytes that serialize as one byte string.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Blob(Vec<u8>);

impl serde::Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        serde_bytes_vec(d).map(Blob)
    }
}

fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_byte_buf(V)
}

fn pattern(seed: u64, len: usize) -> Blob {
    let mut next = rng(seed);
    Blob((0..len).map(|_| next() as u8).collect())
}

const BIG: usize = 8 << 20;

fn put_big((q, seed): (blocking::Queue<Blob>, u64)) {
    q.put(pattern(seed, BIG)).unwrap();
}

fn get_big(q: blocking::Queue<Blob>) -> bool {
    q.get().unwrap() == pattern(11, BIG)
}

/// Checks that every (producer, seq) of `producers` × `each` is in `runs`
/// exactly once, and increasing per producer within each run.
fn exactly_once_in_order(runs: &[Vec<Msg>], producers: u32, each: u32) {
    let mut seen = vec![vec![false; each as usize]; producers as usize];
    let mut total = 0;
    for run in runs {
        let mut last = vec![None; producers as usize];
        for &(id, seq) in run {
            let i = id as usize;
            assert!(
                last[i] < Some(seq),
                "producer {id}: {seq} after {:?}",
                last[i]
            );
            last[i] = Some(seq);
            assert!(!seen[i][seq as usize], "({id}, {seq}) delivered twice");
            seen[i][seq as usize] = true;
            total += 1;
        }
    }
    assert_eq!(total, producers * each, "items were lost");
}

executor_tests! {
    async fn get_put_maxsize_and_close_across_processes() {
        // A child's puts wait on maxsize while we get.
        let q = Queue::<Msg>::new(2).unwrap();
        let mut p = child().spawn(produce, (q.as_blocking().clone(), 0, 200)).unwrap();
        for seq in 0..200 {
            assert_eq!(q.get().await.unwrap(), (0, seq));
        }
        join_ok(&mut p);
        assert!(q.is_empty());

        // maxsize: Full with the item back; a put asleep on a full queue is
        // released by a child's get.
        let q = Queue::<u32>::new(2).unwrap();
        q.put(1).await.unwrap();
        q.put(2).await.unwrap();
        assert!(q.is_full());
        assert_eq!(q.qsize(), 2);
        assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
        let e = q.put_timeout(3, SHORT).await.unwrap_err();
        assert_eq!(e.into_inner(), 3);
        let mut p = child().spawn(get_one, q.as_blocking().clone()).unwrap();
        q.put(3).await.unwrap();
        assert_eq!(join_ok(&mut p), 1);
        assert_eq!(q.get().await.unwrap(), 2);
        assert_eq!(q.get_timeout(GENEROUS).await.unwrap(), 3);
        assert!(q.try_get().unwrap_err().is_empty());
        assert!(q.get_timeout(SHORT).await.unwrap_err().is_empty());

        // close: a task asleep in get wakes with Closed; puts give the item
        // back; items put before are still delivered.
        let mut p = child().spawn(close_it, q.as_blocking().clone()).unwrap();
        assert!(matches!(q.get().await, Err(GetError::Closed)));
        join_ok(&mut p);
        assert!(matches!(q.put(5).await, Err(PutError::Closed(5))));
        let q = Queue::<u32>::new(0).unwrap();
        q.put(1).await.unwrap();
        let mut p = child().spawn(close_it, q.as_blocking().clone()).unwrap();
        join_ok(&mut p);
        assert!(q.try_put(2).unwrap_err().is_closed());
        assert_eq!(q.get().await.unwrap(), 1);
        assert!(matches!(q.get().await, Err(GetError::Closed)));
        assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    }

    async fn an_async_get_waits_behind_a_blocking_getter_of_another_process() {
        // The child sleeps in a blocking get holding the consumers' lock.
        let q = Queue::<u32>::new(0).unwrap();
        let started = Event::new().unwrap();
        let mut p = child()
            .spawn(get_one_signalled, (q.as_blocking().clone(), started.clone()))
            .unwrap();
        assert!(started.wait_timeout(GENEROUS));
        let q2 = q.clone();
        let (mine, ()) = futures_lite::future::zip(q.get(), async move {
            q2.put(1).await.unwrap();
            q2.put(2).await.unwrap();
        })
        .await;
        let theirs = join_ok(&mut p);
        let mut both = [mine.unwrap(), theirs];
        both.sort();
        assert_eq!(both, [1, 2]);
        assert!(q.is_empty());
    }

    async fn join_waits_for_a_childs_last_task_done() {
        let q = JoinableQueue::<u32>::new(0).unwrap();
        for i in 1..=3 {
            q.put(i).await.unwrap();
        }
        assert_eq!(q.unfinished(), 3);
        assert!(!q.join_timeout(SHORT).await);
        let mut p = child().spawn(work, q.as_blocking().clone()).unwrap();
        q.join().await;
        assert_eq!(q.unfinished(), 0);
        assert_eq!(join_ok(&mut p), 6);
        assert!(q.task_done().is_err());
        assert!(q.join_timeout(SHORT).await);
    }

    async fn a_simple_queue_carries_items_both_ways() {
        let q = SimpleQueue::<String>::new().unwrap();
        let mut p = child().spawn(echo, q.as_blocking().clone()).unwrap();
        q.put("hi".to_string()).await.unwrap();
        join_ok(&mut p);
        assert_eq!(q.get().await.unwrap(), "hi!");
        assert!(q.is_empty());
        q.close();
        assert!(matches!(q.get().await, Err(GetError::Closed)));
    }

    async fn a_thousand_get_tasks_under_random_timeouts_lose_and_duplicate_nothing() {
        const PRODUCERS: u32 = 3;
        const EACH: u32 = 1000;
        const TASKS: usize = 1000;
        let total = (PRODUCERS * EACH) as usize;
        let q = Queue::<Msg>::with_capacity(16, 64 * 1024).unwrap();
        let got = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let tasks = (0..TASKS).map(|t| {
            let (q, got, dropped) = (q.clone(), got.clone(), dropped.clone());
            async move {
                let mut next = rng(t as u64 + 1);
                let mut run = Vec::new();
                while got.load(Ordering::SeqCst) < total {
                    let after = Duration::from_micros(next() % 400);
                    match or_timeout(q.get(), after).await {
                        Some(m) => {
                            run.push(m.unwrap());
                            got.fetch_add(1, Ordering::SeqCst);
                        }
                        None => {
                            dropped.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                run
            }
        });
        // The producers start once a get future was dropped midway.
        let start = async {
            while dropped.load(Ordering::SeqCst) == 0 {
                futures_lite::future::yield_now().await;
            }
            (0..PRODUCERS)
                .map(|id| child().spawn(produce, (q.as_blocking().clone(), id, EACH)).unwrap())
                .collect::<Vec<_>>()
        };
        let (runs, mut producers) = futures_lite::future::zip(join_all(tasks.collect()), start).await;
        for p in &mut producers {
            join_ok(p);
        }
        exactly_once_in_order(&runs, PRODUCERS, EACH);
        assert!(dropped.load(Ordering::Relaxed) > 0, "no future was dropped midway");
        assert!(q.is_empty());
        assert!(q.try_get().unwrap_err().is_empty());
    }

    async fn put_tasks_under_random_timeouts_enqueue_each_item_exactly_once() {
        const TASKS: u32 = 300;
        const EACH: u32 = 10;
        let q = Queue::<Msg>::with_capacity(4, 64 * 1024).unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let tasks = (0..TASKS).map(|id| {
            let (q, dropped) = (q.clone(), dropped.clone());
            async move {
                let mut next = rng(u64::from(id) + 77);
                let mut seq = 0;
                while seq < EACH {
                    let after = Duration::from_micros(next() % 400);
                    // A put whose future is dropped enqueued nothing: the
                    // same item is put again.
                    match or_timeout(q.put((id, seq)), after).await {
                        Some(r) => {
                            r.unwrap();
                            seq += 1;
                        }
                        None => {
                            dropped.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        });
        // The consumers start once a put future was dropped midway (the
        // queue holds 4 items, so the other puts wait).
        let start = async {
            while dropped.load(Ordering::SeqCst) == 0 {
                futures_lite::future::yield_now().await;
            }
            (0..2)
                .map(|_| child().spawn(consume, q.as_blocking().clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let (_, mut consumers) = futures_lite::future::zip(join_all(tasks.collect()), start).await;
        q.close();
        let runs: Vec<_> = consumers.iter_mut().map(join_ok).collect();
        exactly_once_in_order(&runs, TASKS, EACH);
        assert!(dropped.load(Ordering::Relaxed) > 0, "no future was dropped midway");
    }

    async fn two_tasks_of_one_process_contending_on_one_queue_both_progress() {
        const N: u32 = 2000;
        // A producer and a consumer task through a one-item queue: each
        // waits for the other at every step.
        let q = Queue::<u32>::new(1).unwrap();
        let q2 = q.clone();
        let (sum, ()) = futures_lite::future::zip(
            async {
                let mut sum = 0u64;
                for i in 0..N {
                    let v = q.get().await.unwrap();
                    assert_eq!(v, i);
                    sum += u64::from(v);
                }
                sum
            },
            async move {
                for i in 0..N {
                    q2.put(i).await.unwrap();
                }
            },
        )
        .await;
        assert_eq!(sum, u64::from(N) * u64::from(N - 1) / 2);

        // Two getter tasks each need half of a child's items: both finish
        // only if neither starves the other.
        let q = Queue::<Msg>::new(0).unwrap();
        let mut p = child().spawn(produce, (q.as_blocking().clone(), 0, 2 * N)).unwrap();
        let take_half = || async {
            let mut run = Vec::new();
            for _ in 0..N {
                run.push(q.get().await.unwrap());
            }
            run
        };
        let (a, b) = futures_lite::future::zip(take_half(), take_half()).await;
        join_ok(&mut p);
        exactly_once_in_order(&[a, b], 1, 2 * N);
    }

    async fn an_8_mib_item_goes_through_a_1_mib_ring_both_ways() {
        let q = Queue::<Blob>::with_capacity(0, 1 << 20).unwrap();
        let mut p = child().spawn(put_big, (q.as_blocking().clone(), 7)).unwrap();
        let got = q.get().await.unwrap();
        join_ok(&mut p);
        assert_eq!(got.0.len(), BIG);
        assert!(got == pattern(7, BIG), "the item arrived altered");

        let mut p = child().spawn(get_big, q.as_blocking().clone()).unwrap();
        q.put(pattern(11, BIG)).await.unwrap();
        assert!(join_ok(&mut p), "the child got the item altered");
        assert!(q.is_empty());
    }
}

fn put_via_async_handle(q: Queue<u32>) {
    q.put_blocking(9).unwrap();
}

#[test]
fn a_handle_converts_both_ways_and_travels_to_a_child() {
    let q = Queue::<u32>::new(3).unwrap();
    let b: blocking::Queue<u32> = q.clone().into();
    assert!(b.same_as(q.as_blocking()));
    let mut p = child().spawn(put_via_async_handle, q.clone()).unwrap();
    join_ok(&mut p);
    assert_eq!(b.get().unwrap(), 9);
    let back: Queue<u32> = Queue::from(b);
    assert!(back.same_as(&q));
    back.put_blocking(4).unwrap();
    assert_eq!(q.get_blocking().unwrap(), 4);
    assert_eq!(q.maxsize(), 3);
}

// ---------------------------------------------------------------------------
// The wake-once protocol of the epoch words

fn echo_sleeping((ping, pong, n): (blocking::Queue<u32>, blocking::Queue<u32>, u32)) {
    aiop::blocking::sync::set_spinning(false);
    for _ in 0..n {
        let v = ping.get().unwrap();
        pong.put(v + 1).unwrap();
    }
}

/// With spinning off in both processes, every hand-over goes to a waiter
/// that armed the epoch word and sleeps: in the child a blocking `get`, in
/// this process an async `get` (through the watcher) and a blocking one in
/// turn, on the same queues. Only the first waker of each sleep makes the
/// wake-up call, so a lost wake-up would stall the exchange: every answer
/// arrives before the deadline.
#[test]
fn armed_sleepers_blocking_and_async_in_turn_lose_no_wakeup() {
    aiop::blocking::sync::set_spinning(false);
    const N: u32 = 2000;
    let ping = Queue::<u32>::new(0).unwrap();
    let pong = Queue::<u32>::new(0).unwrap();
    let mut p = child()
        .spawn(
            echo_sleeping,
            (ping.as_blocking().clone(), pong.as_blocking().clone(), N),
        )
        .unwrap();
    for i in 0..N {
        if i % 2 == 0 {
            futures_lite::future::block_on(async {
                ping.put(i).await.unwrap();
                let v = or_timeout(pong.get(), GENEROUS)
                    .await
                    .expect("the answer arrives")
                    .unwrap();
                assert_eq!(v, i + 1);
            });
        } else {
            ping.put_blocking(i).unwrap();
            assert_eq!(pong.get_timeout_blocking(GENEROUS).unwrap(), i + 1);
        }
    }
    join_ok(&mut p);
    aiop::blocking::sync::set_spinning(true);
}
