//! Locks and events against the futex floors, in the same run.
//!
//! The floors are the anchors' (`crates/aiop-bench/peers`): a bare
//! futex ping-pong between two processes through shared memory, and a bare
//! three-state futex mutex, each measured here so that aiop's figures can
//! be quoted as same-run ratios.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aiop_core::futex;
use aiop_core::process::{Builder, StartMethod};
use aiop_core::shm::Segment;
use aiop_core::sync::{Event, Lock};

use crate::report::{Results, iters, pin_child};

/// Round trips per ping-pong sample set (`AIOP_BENCH_ITERS` scales it).
fn rounds() -> usize {
    iters(200) * 100
}

/// How long each side of a contended run loops (`AIOP_BENCH_DUR_MS`).
fn duration() -> Duration {
    Duration::from_millis(crate::report::env_usize("AIOP_BENCH_DUR_MS", 1000) as u64)
}

/// Runs `child` in a forked copy of this process, which then `_exit`s.
#[allow(unsafe_code)]
pub(crate) fn fork_raw(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark's main thread is the only thread that runs code
    // (the aiop-robust sentinel, if started, is parked and holds no lock),
    // and the child ends with `_exit` after running `child`, which touches
    // only shared memory, futexes and its own end of a socket pair.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        pin_child();
        child();
        // SAFETY: `_exit` never returns and runs no destructors.
        unsafe { libc::_exit(0) }
    }
    pid
}

#[allow(unsafe_code)]
pub(crate) fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
}

/// The anchors' wait: spin `spin` times, then futex-wait with a waiter count.
fn floor_wait(word: &AtomicU32, waiters: &AtomicU32, want: u32) {
    loop {
        if word.load(Ordering::Acquire) == want {
            return;
        }
        waiters.fetch_add(1, Ordering::SeqCst);
        let cur = word.load(Ordering::SeqCst);
        if cur != want {
            let _ = futex::wait(word, cur, futex::Timeout::Never);
        }
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn floor_post(word: &AtomicU32, waiters: &AtomicU32, v: u32) {
    word.store(v, Ordering::SeqCst);
    if waiters.load(Ordering::SeqCst) > 0 {
        let _ = futex::wake_all(word);
    }
}

/// `floor/futex_pingpong`: the anchors' futex ping-pong (no spinning)
/// between this process and a forked child; round trip in µs.
pub(crate) fn futex_pingpong(results: &mut Results) {
    let seg = Segment::new(4096).expect("segment");
    let (seq, waiters) = (seg.atomic_u32(0), seg.atomic_u32(64));
    let n = rounds();
    let warm = n / 20;
    let total = (warm + n) as u32;
    let child = fork_raw(|| {
        for i in 0..total {
            floor_wait(seq, waiters, 2 * i + 1);
            floor_post(seq, waiters, 2 * i + 2);
        }
    });
    let mut i = 0u32;
    results.latency_n("floor/futex_pingpong", warm, n, || {
        floor_post(seq, waiters, 2 * i + 1);
        floor_wait(seq, waiters, 2 * i + 2);
        i += 1;
    });
    reap(child);
}

/// `floor/spin_pingpong`: pure busy polling, the cache-line transfer floor
/// (what a ping-pong costs when both sides spin on their own CPU).
pub(crate) fn spin_pingpong(results: &mut Results) {
    let seg = Segment::new(4096).expect("segment");
    let seq = seg.atomic_u32(0);
    let n = rounds();
    let warm = n / 20;
    let total = (warm + n) as u32;
    let child = fork_raw(|| {
        for i in 0..total {
            while seq.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            seq.store(2 * i + 2, Ordering::Release);
        }
    });
    let mut i = 0u32;
    results.latency_n("floor/spin_pingpong", warm, n, || {
        seq.store(2 * i + 1, Ordering::Release);
        while seq.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
        i += 1;
    });
    reap(child);
}

pub(crate) fn event_child((ping, pong, rounds, spin): (Event, Event, u64, bool)) {
    pin_child();
    aiop_core::sync::set_spinning(spin);
    for _ in 0..rounds {
        ping.wait();
        ping.clear();
        pong.set();
    }
}

/// `event/pingpong`: two aiop `Event`s between this process and a child
/// started by the fork server; round trip in µs.
pub(crate) fn event_pingpong(results: &mut Results) {
    events(results, "event/pingpong", true);
}

/// `event/pingpong_nospin`: the same with spinning off in both processes,
/// so that every hand-over goes through the kernel, as in the futex floor.
pub(crate) fn event_pingpong_nospin(results: &mut Results) {
    events(results, "event/pingpong_nospin", false);
    aiop_core::sync::set_spinning(true);
}

fn events(results: &mut Results, name: &'static str, spin: bool) {
    aiop_core::sync::set_spinning(spin);
    let ping = Event::new().expect("event");
    let pong = Event::new().expect("event");
    let n = rounds();
    let warm = n / 20;
    let mut child = Builder::new()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(
            event_child,
            (ping.clone(), pong.clone(), (warm + n) as u64, spin),
        )
        .expect("spawn");
    results.latency_n(name, warm, n, || {
        ping.set();
        pong.wait();
        pong.clear();
    });
    child.join().expect("join");
}

/// Times `batches` batches of `per` calls of `op`; reports ns per call.
pub(crate) fn per_op(results: &mut Results, name: &'static str, mut op: impl FnMut()) {
    let per = 100_000;
    for _ in 0..per {
        op();
    }
    let mut samples: Vec<f64> = (0..31)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per {
                op();
            }
            t.elapsed().as_nanos() as f64 / per as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    results.value(
        name,
        "ns",
        samples[samples.len() / 2],
        Some(samples[samples.len() * 99 / 100]),
    );
}

/// The anchors' three-state futex mutex (the floor of a lock).
struct FloorMutex<'a>(&'a AtomicU32);

impl FloorMutex<'_> {
    #[inline]
    fn lock(&self) {
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        while self.0.swap(2, Ordering::Acquire) != 0 {
            let _ = futex::wait(self.0, 2, futex::Timeout::Never);
        }
    }

    #[inline]
    fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            let _ = futex::wake(self.0, 1);
        }
    }
}

/// `floor/lock_uncontended`: lock + unlock of the floor mutex, ns.
pub(crate) fn floor_lock_uncontended(results: &mut Results) {
    let seg = Segment::new(4096).expect("segment");
    let m = FloorMutex(seg.atomic_u32(0));
    per_op(results, "floor/lock_uncontended", || {
        m.lock();
        m.unlock();
    });
}

/// `lock/uncontended`: `Lock::lock` + guard drop, ns.
pub(crate) fn lock_uncontended(results: &mut Results) {
    let lock = Lock::new().expect("lock");
    per_op(results, "lock/uncontended", || {
        drop(std::hint::black_box(lock.lock()));
    });
}

/// Both processes loop `{ lock; counter += 1; unlock }` for `duration()`,
/// in batches of 64 as the anchors do; returns acquisitions per second.
fn contended(
    mut run: impl FnMut(Duration) -> (u64, Duration),
    name: &'static str,
    results: &mut Results,
) {
    let (total, elapsed) = run(duration());
    results.value(name, "ops/s", total as f64 / elapsed.as_secs_f64(), None);
}

fn hammer(op: &impl Fn(), d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        for _ in 0..64 {
            op();
        }
    }
}

/// `floor/lock_contended_2proc`: the floor mutex, two processes.
pub(crate) fn floor_lock_contended(results: &mut Results) {
    let seg = Segment::new(4096).expect("segment");
    let (word, go, counter) = (seg.atomic_u32(0), seg.atomic_u32(64), seg.atomic_u64(128));
    contended(
        |d| {
            let m = FloorMutex(word);
            let op = || {
                m.lock();
                counter.fetch_add(1, Ordering::Relaxed);
                m.unlock();
            };
            let child = fork_raw(|| {
                floor_wait(go, seg.atomic_u32(192), 1);
                hammer(&op, d);
            });
            let t = Instant::now();
            floor_post(go, seg.atomic_u32(192), 1);
            hammer(&op, d);
            reap(child);
            (counter.swap(0, Ordering::SeqCst), t.elapsed())
        },
        "floor/lock_contended_2proc",
        results,
    );
}

fn lock_child((lock, go, counter, ms): (Lock, Event, Segment, u64)) {
    pin_child();
    let c = counter.atomic_u64(0);
    go.wait();
    hammer(
        &|| {
            let _g = lock.lock();
            c.fetch_add(1, Ordering::Relaxed);
        },
        Duration::from_millis(ms),
    );
}

/// `lock/contended_2proc`: aiop `Lock`, this process and a fork-server
/// child, acquisitions per second.
pub(crate) fn lock_contended(results: &mut Results) {
    let lock = Lock::new().expect("lock");
    let go = Event::new().expect("event");
    let seg = Segment::new(4096).expect("segment");
    contended(
        |d| {
            let mut child = Builder::new()
                .start_method(StartMethod::FORK_SERVER)
                .spawn(
                    lock_child,
                    (lock.clone(), go.clone(), seg.clone(), d.as_millis() as u64),
                )
                .expect("spawn");
            let c = seg.atomic_u64(0);
            let t = Instant::now();
            go.set();
            hammer(
                &|| {
                    let _g = lock.lock();
                    c.fetch_add(1, Ordering::Relaxed);
                },
                d,
            );
            child.join().expect("join");
            (c.swap(0, Ordering::SeqCst), t.elapsed())
        },
        "lock/contended_2proc",
        results,
    );
}
