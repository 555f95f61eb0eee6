//! The executor is never blocked: on a current-thread executor (tokio's and
//! `async_io::block_on`), a 1 ms ticker task keeps ticking, with no gap over
//! 10 ms, while 50 tasks contend on a lock that a child process takes and
//! releases 20,000 times. The only timing assertion of the suite, so it
//! runs alone in its own test binary, one executor after the other.

aiop::test_support!();

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiop::blocking::process::Process;
use aiop::sync::Lock;
use common::run_all;
use futures_lite::future;

fn lock_churn((lock, n): (Lock, u32)) {
    for _ in 0..n {
        let g = lock.lock_blocking().expect("lock");
        std::hint::black_box(&g);
        drop(g);
    }
}

/// On a current-thread executor: 50 tasks contend on a lock that a child
/// takes and releases, while a 1 ms ticker records its largest gap.
async fn ticker_during_contention() -> (Duration, u64) {
    let lock = Lock::new().unwrap();
    let mut c = Process::builder()
        .daemon(true)
        .spawn(lock_churn, (lock.clone(), 20_000))
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (lock, done) = (lock.clone(), done.clone());
            async move {
                for _ in 0..40 {
                    let g = lock.lock().await.unwrap();
                    future::yield_now().await;
                    drop(g);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .collect();
    let ticker = {
        let done = done.clone();
        async move {
            use futures_lite::StreamExt;
            let mut interval = async_io::Timer::interval(Duration::from_millis(1));
            let mut last = Instant::now();
            let mut max_gap = Duration::ZERO;
            let mut ticks = 0u64;
            while ticks < 300 || done.load(Ordering::SeqCst) < 50 {
                interval.next().await;
                let now = Instant::now();
                max_gap = max_gap.max(now - last);
                last = now;
                ticks += 1;
            }
            (max_gap, ticks)
        }
    };
    let (_, r) = future::zip(run_all(tasks), ticker).await;
    c.join().unwrap();
    r
}

#[test]
fn a_current_thread_executor_is_never_blocked() {
    let (gap, ticks) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ticker_during_contention());
    assert!(ticks >= 300);
    assert!(
        gap < Duration::from_millis(10),
        "tokio: largest tick gap {gap:?}"
    );
    let (gap, ticks) = async_io::block_on(ticker_during_contention());
    assert!(ticks >= 300);
    assert!(
        gap < Duration::from_millis(10),
        "async-io: largest tick gap {gap:?}"
    );
}
