//! A CPU-bound `map` over a process pool, with a progress line.
//!
//! An async pool ([`aiop::Pool`], one worker per CPU) counts the primes in 200
//! ranges of 50,000 numbers above 10^12, each a few thousand Miller-Rabin
//! tests. The results come back with `map_unordered`, each as soon as its
//! range is done, and a progress line (ranges done, rate) is redrawn in
//! place while they stream in. A sample of the ranges is then counted again
//! in this process, to check the pool's answers and to estimate how long
//! the whole job would have taken without the pool. The pool is closed and
//! joined at the end, so no worker outlives the program.
//!
//! Run it with `cargo run --example pool` (`--release` is about twice as
//! fast). An argument sets the number of ranges:
//! `cargo run --release --example pool -- 1000`.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use aiop::Pool;
use aiop::pool::PoolError;
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};

/// Where the first range starts.
const FIRST: u64 = 1_000_000_000_000;
/// Numbers per range.
const SPAN: u64 = 50_000;
/// Ranges when no argument says otherwise.
const DEFAULT_RANGES: u64 = 200;
/// Every `SAMPLE_EVERY`th range is counted again in this process.
const SAMPLE_EVERY: u64 = 25;

/// One item of work: a range of numbers, and its place in the job.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Range {
    index: u64,
    start: u64,
    len: u64,
}

/// The range with number `index`.
fn range(index: u64) -> Range {
    Range {
        index,
        start: FIRST + index * SPAN,
        len: SPAN,
    }
}

/// The pool function: runs in a worker process. It returns the range's
/// index with its count, since `map_unordered` answers in completion order.
fn count_primes(r: Range) -> (u64, u64) {
    let count = (r.start..r.start + r.len).filter(|&n| is_prime(n)).count();
    (r.index, count as u64)
}

/// Deterministic Miller-Rabin: these bases decide every `u64`.
fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in BASES {
        if n % p == 0 {
            return n == p;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for a in BASES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    (u128::from(a) * u128::from(b) % u128::from(m)) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    acc
}

/// The CPU time this thread has used.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Redraws the progress line in place (`\r`, no newline).
fn progress(done: u64, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    print!(
        "\r  {done:>5}/{total} ranges  {:>3}%  {rate:>7.1} ranges/s  {secs:>5.1} s",
        done * 100 / total.max(1)
    );
    let _ = std::io::stdout().flush();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A pool worker re-executes this program and takes over here.
    aiop::init();

    let ranges: u64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("not a number of ranges: {a}"))?,
        None => DEFAULT_RANGES,
    };

    // Any executor drives the async pool; async-io's `block_on` is enough.
    let (counts, elapsed, workers) = async_io::block_on(async {
        // One worker per CPU (the default). A plain function's task has its
        // worker to itself, so tasks wait in this process until a worker is
        // idle, which balances uneven work.
        let started = Instant::now();
        let pool = Pool::new(0)?;
        println!(
            "{} workers {:?} spawned in {:.1?}",
            pool.processes(),
            pool.pids(),
            started.elapsed()
        );
        println!("counting the primes in {ranges} ranges of {SPAN} numbers from {FIRST}");

        let started = Instant::now();
        let mut counts = HashMap::new();
        // Each range is a task of its own (chunksize 1): the work is coarse
        // enough, and the progress line moves one range at a time.
        let mut results = pool
            .map_unordered(count_primes, (0..ranges).map(range))
            .chunksize(1);
        let mut drawn = Instant::now();
        progress(0, ranges, started);
        while let Some(result) = results.next().await {
            let (index, count) = result?;
            counts.insert(index, count);
            if drawn.elapsed() >= Duration::from_millis(50) {
                progress(counts.len() as u64, ranges, started);
                drawn = Instant::now();
            }
        }
        progress(counts.len() as u64, ranges, started);
        println!();
        let elapsed = started.elapsed();

        // Let the workers finish and reap them.
        pool.close();
        pool.join().await?;
        Ok::<_, PoolError>((counts, elapsed, pool.processes()))
    })?;
    assert_eq!(counts.len() as u64, ranges, "one result per range");
    let total: u64 = counts.values().sum();

    // Count a sample again in this process, one range after the other,
    // timing it in CPU time (other programs running meanwhile do not count).
    let sample: Vec<u64> = (0..ranges).step_by(SAMPLE_EVERY as usize).collect();
    let started = cpu_time();
    for &i in &sample {
        let (index, count) = count_primes(range(i));
        assert_eq!(
            counts[&index], count,
            "the pool and this process disagree on range {index}"
        );
    }
    let per_range = (cpu_time() - started) / sample.len().max(1) as u32;
    let serial = per_range.mul_f64(ranges as f64);

    println!(
        "{total} primes in [{FIRST}, {}); the prime number theorem expects about {:.0}",
        FIRST + ranges * SPAN,
        (ranges * SPAN) as f64 / (FIRST as f64).ln()
    );
    println!(
        "{} sampled ranges recounted in this process: all agree",
        sample.len()
    );
    println!(
        "{workers} workers: {:.2} s; one process: about {:.2} s ({per_range:.1?} of CPU \
         per range), {:.1} times as long",
        elapsed.as_secs_f64(),
        serial.as_secs_f64(),
        serial.as_secs_f64() / elapsed.as_secs_f64()
    );
    Ok(())
}
