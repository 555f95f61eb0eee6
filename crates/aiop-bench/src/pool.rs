//! Process pools: the round trip of `apply` through a warm pool, the rate of
//! `map` with one item per task and with the automatic chunk size, and the
//! time to start a pool.
//!
//! A pool task crosses two queues, as a `queue/pingpong` round trip does:
//! the task goes to the worker through its task queue (the ping) and the
//! reply comes back through the pool's result queue (the pong). The pool
//! adds the call's encoding, the bookkeeping of who waits for what, and the
//! worker's dispatch to the function, which is what the ratio of
//! `pool/apply_rtt` to `queue/pingpong` (measured in the same run) shows.

use std::time::{Duration, Instant};

use aiop_core::pool::Pool;
use aiop_core::process::StartMethod;

use crate::report::{Results, env_usize, iters, pin_child, unpin_inherited};

/// The pool function of the maps.
fn double(x: u64) -> u64 {
    x * 2
}

/// The initializer of the workers: spinning on, as `queue/pingpong` sets it
/// in both processes (aiop's default on a machine of several CPUs, which a
/// process pinned to one CPU would otherwise turn off for itself); and, for
/// a one-worker pool (`pin`), the worker pinned to the CPU after the
/// benchmark's when `AIOP_BENCH_PIN` is set, as a two-process benchmark's
/// child. The workers of a larger pool undo the pinning they inherited.
fn init_worker(pin: bool) {
    aiop_core::sync::set_spinning(true);
    if pin {
        pin_child();
    } else {
        unpin_inherited();
    }
}

/// A warm pool of `processes` workers started with the default method.
fn warm_pool(processes: usize) -> Pool {
    aiop_core::sync::set_spinning(true);
    let pool = Pool::builder()
        .processes(processes)
        .initializer(init_worker, processes == 1)
        .build()
        .expect("pool");
    // Every worker up and through a task before anything is timed.
    let warm: u64 = pool
        .map(double, 0..64 * processes as u64)
        .chunksize(1)
        .map(|r| r.expect("map"))
        .sum();
    assert_eq!(warm, (64 * processes as u64) * (64 * processes as u64 - 1));
    pool
}

fn finish(pool: Pool) {
    pool.close();
    pool.join().expect("join");
}

fn apply_rtt_n(results: &mut Results, name: &'static str, processes: usize) {
    let pool = warm_pool(processes);
    let n = iters(200) * 100;
    let mut i = 0u64;
    results.latency_n(name, n / 20, n, || {
        let r = pool.apply(|x: u64| x + 1, i).expect("apply");
        debug_assert_eq!(r, i + 1);
        i = r;
    });
    finish(pool);
}

/// `pool/apply_rtt`: `pool.apply(|x: u64| x + 1, i)` one at a time on a
/// warm one-worker pool; round trip in µs.
pub(crate) fn apply_rtt(results: &mut Results) {
    apply_rtt_n(results, "pool/apply_rtt", 1);
}

/// `pool/apply_rtt_2proc`: the same on a warm two-worker pool.
pub(crate) fn apply_rtt_2proc(results: &mut Results) {
    apply_rtt_n(results, "pool/apply_rtt_2proc", 2);
}

/// Items per automatic-chunk map run (`AIOP_BENCH_POOL_ITEMS`); the
/// one-item-per-task map takes a fiftieth of it.
fn items() -> u64 {
    env_usize("AIOP_BENCH_POOL_ITEMS", 4_000_000) as u64
}

/// Timed runs per map benchmark, of which the median rate is reported
/// (`AIOP_BENCH_POOL_RUNS`).
fn runs() -> usize {
    env_usize("AIOP_BENCH_POOL_RUNS", 5).max(1)
}

/// Runs `double` over `0..n` on a warm two-worker pool `runs()` times,
/// consuming every result in order; the median rate in items/s.
fn map_rate(n: u64, chunksize: Option<usize>) -> f64 {
    let pool = warm_pool(2);
    let mut rates: Vec<f64> = (0..runs())
        .map(|_| {
            let t = Instant::now();
            let map = pool.map(double, 0..n);
            let map = match chunksize {
                Some(c) => map.chunksize(c),
                None => map,
            };
            let sum: u64 = map.map(|r| r.expect("map")).sum();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(sum, n * (n - 1));
            n as f64 / secs
        })
        .collect();
    finish(pool);
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// `pool/map_chunk1`: `pool.map(double, 0..N).chunksize(1)` on a warm
/// two-worker pool, consumed in order; Mitems/s (median of the runs).
pub(crate) fn map_chunk1(results: &mut Results) {
    let rate = map_rate((items() / 50).max(2), Some(1));
    results.value("pool/map_chunk1", "Mitems/s", rate / 1e6, None);
}

/// `pool/map_auto`: `pool.map(double, 0..N)` with the automatic chunk size
/// on a warm two-worker pool, consumed in order; Mitems/s (median of the
/// runs).
pub(crate) fn map_auto(results: &mut Results) {
    let rate = map_rate(items().max(2), None);
    results.value("pool/map_auto", "Mitems/s", rate / 1e6, None);
}

/// `pool/start`: start a two-worker pool with the Spawn method and get the
/// first `apply` result back; µs (median, p99). Tearing the pool down is not
/// timed.
pub(crate) fn start(results: &mut Results) {
    let once = || {
        let t = Instant::now();
        let pool = Pool::builder()
            .processes(2)
            .start_method(StartMethod::SPAWN)
            .build()
            .expect("pool");
        let r = pool.apply(|x: u64| x + 1, 1).expect("apply");
        let took = t.elapsed();
        assert_eq!(r, 2);
        drop(pool);
        took
    };
    for _ in 0..env_usize("AIOP_BENCH_WARMUP", 10) {
        once();
    }
    let mut samples: Vec<Duration> = (0..iters(200)).map(|_| once()).collect();
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let median = us(samples[samples.len() / 2]);
    let p99 = us(samples[(samples.len() * 99 / 100).min(samples.len() - 1)]);
    results.value("pool/start", "us", median, Some(p99));
}

/// `async/pool_apply_rtt`: `pool.apply(|x: u64| x + 1, i).await` one at a
/// time on a warm one-worker async pool (`aiop::Pool`, workers on their own
/// executor), driven by `futures_lite::future::block_on`; round trip in µs.
pub(crate) fn async_apply_rtt(results: &mut Results) {
    aiop_core::sync::set_spinning(true);
    let pool = aiop_async::pool::Pool::builder()
        .processes(1)
        .initializer(init_worker, true)
        .build()
        .expect("pool");
    futures_lite::future::block_on(async {
        for i in 0..64u64 {
            assert_eq!(pool.apply(double, i).await.expect("apply"), 2 * i);
        }
    });
    let n = iters(200) * 100;
    let mut i = 0u64;
    results.latency_n("async/pool_apply_rtt", n / 20, n, || {
        let r = futures_lite::future::block_on(pool.apply(|x: u64| x + 1, i)).expect("apply");
        debug_assert_eq!(r, i + 1);
        i = r;
    });
    pool.close();
    pool.join_blocking().expect("join");
}

/// `async/pool_map_chunk1`: a two-worker async pool's `map` stream of
/// `double` with one item per task, consumed in order; Mitems/s (median of
/// the runs).
pub(crate) fn async_map_chunk1(results: &mut Results) {
    use futures_lite::StreamExt;
    aiop_core::sync::set_spinning(true);
    let pool = aiop_async::pool::Pool::builder()
        .processes(2)
        .initializer(init_worker, false)
        .build()
        .expect("pool");
    let n = (items() / 50).max(1);
    let mut rates: Vec<f64> = (0..runs())
        .map(|_| {
            futures_lite::future::block_on(async {
                let t = std::time::Instant::now();
                let sum = pool
                    .map(double, 0..n)
                    .chunksize(1)
                    .fold(0u64, |a, r| a + r.expect("map"))
                    .await;
                let rate = n as f64 / t.elapsed().as_secs_f64() / 1e6;
                assert_eq!(sum, n * (n - 1));
                rate
            })
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    results.value(
        "async/pool_map_chunk1",
        "Mitems/s",
        rates[rates.len() / 2],
        None,
    );
    pool.close();
    pool.join_blocking().expect("join");
}
