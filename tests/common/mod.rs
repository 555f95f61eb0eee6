//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aiop::arena::Slot;
use aiop::futex::{self, Timeout};
use aiop::process::Process;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod manager;

/// A deadline far enough away that only a real hang reaches it.
pub const GENEROUS: Duration = Duration::from_secs(30);

/// Waits until word `i` of `slot` is not zero (futex wait, no polling);
/// returns its value, or panics at the deadline.
pub fn wait_nonzero(slot: &Slot, i: usize) -> u32 {
    let deadline = Instant::now() + GENEROUS;
    loop {
        let v = slot.word(i).load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        let r = futex::wait(slot.word(i), 0, Timeout::At(deadline)).expect("futex wait");
        assert_ne!(
            r,
            futex::Wake::TimedOut,
            "word {i} stayed zero for {GENEROUS:?}"
        );
    }
}

/// Stores `v` in word `i` of `slot` and wakes its waiters.
pub fn set_and_wake(slot: &Slot, i: usize, v: u32) {
    slot.word(i).store(v, Ordering::Release);
    futex::wake_all(slot.word(i)).expect("futex wake");
}

/// Parks the calling thread forever (a child that must be ended from outside).
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// A pidfd for `pid`, which the caller knows to be alive.
pub fn pidfd(pid: u32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open")
}

/// Whether the process behind `pidfd` ends within `within`.
pub fn ends_within(pidfd: &OwnedFd, within: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Arguments that serialize but refuse to deserialize in the child.
#[derive(Debug)]
pub struct RefusesToDeserialize;

impl serde::Serialize for RefusesToDeserialize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> serde::Deserialize<'de> for RefusesToDeserialize {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("refused on purpose"))
    }
}

/// Waits (with the [`GENEROUS`] deadline) until `cond` holds, yielding the
/// CPU between looks; for states no futex announces (another process's
/// thread going to sleep, a waiter count).
pub fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + GENEROUS;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// Whether thread `tid` of this process is asleep in a `futex` system call.
pub fn in_futex_wait(tid: i32) -> bool {
    in_syscall(tid, &[libc::SYS_futex])
}

/// A thread of this process that is known to be asleep in a blocking call.
pub struct Blocked<T> {
    result: std::sync::mpsc::Receiver<T>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Runs `call` on a new thread and returns once that thread is asleep in a
/// futex wait inside `call` (not before it: the thread raises a flag just
/// before the call, and nothing between the flag and the call can sleep).
///
/// # Panics
///
/// If `call` returns without sleeping, or the thread is not asleep within
/// [`GENEROUS`].
pub fn blocked<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Blocked<T> {
    blocked_in(&[libc::SYS_futex], call)
}

impl<T> Blocked<T> {
    /// Whether the call has returned (or panicked) by now.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The call's result, once it returns.
    ///
    /// # Panics
    ///
    /// If it is still blocked after [`GENEROUS`], or it panicked.
    pub fn join(mut self) -> T {
        use std::sync::mpsc::RecvTimeoutError;
        match self.result.recv_timeout(GENEROUS) {
            Ok(v) => {
                self.thread.take().unwrap().join().unwrap();
                v
            }
            Err(RecvTimeoutError::Timeout) => panic!("still blocked after {GENEROUS:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(self.thread.take().unwrap().join().unwrap_err())
            }
        }
    }
}

/// Whether thread `tid` of this process is asleep in one of the system
/// calls numbered `nrs`.
pub fn in_syscall(tid: i32, nrs: &[libc::c_long]) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).is_ok_and(|s| {
        s.split_whitespace()
            .next()
            .is_some_and(|n| nrs.iter().any(|nr| n == nr.to_string()))
    })
}

/// [`blocked`] for a call that sleeps in one of the system calls `nrs`
/// (`recvmsg`, `poll`, `accept4`, ...) rather than in a futex.
pub fn blocked_in<T: Send + 'static>(
    nrs: &'static [libc::c_long],
    call: impl FnOnce() -> T + Send + 'static,
) -> Blocked<T> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU8;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (tx, rx) = std::sync::mpsc::channel();
    let stage = Arc::new(AtomicU8::new(0));
    let seen = stage.clone();
    let thread = std::thread::spawn(move || {
        tid_tx
            .send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        stage.store(1, Ordering::SeqCst);
        let r = call();
        stage.store(2, Ordering::SeqCst);
        let _ = tx.send(r);
    });
    let tid = tid_rx.recv().expect("the thread starts");
    until("the thread sleeps in its blocking call", || {
        match seen.load(Ordering::SeqCst) {
            1 => in_syscall(tid, nrs),
            2 => true,
            _ => false,
        }
    });
    assert_ne!(
        seen.load(Ordering::SeqCst),
        2,
        "the call returned without blocking"
    );
    Blocked {
        result: rx,
        thread: Some(thread),
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty directory whose name contains `tag`, the pid and a counter.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("aiop-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether every thread of process `pid` is asleep in a `futex` system
/// call (a child blocked in a wait, its other threads parked).
pub fn all_threads_in_futex(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let futex = libc::SYS_futex.to_string();
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("syscall"))
            .is_ok_and(|s| s.split_whitespace().next() == Some(futex.as_str()))
    })
}

/// Runs an async test body on every executor aiop supports: smol,
/// async-std, tokio multi-thread (the body inside `tokio::spawn`), tokio
/// current-thread, and `async_io::block_on`. Each becomes its own `#[test]`
/// in a module named after the test.
///
/// ```ignore
/// executor_tests! {
///     async fn event_wakes_a_task() {
///         let ev = aiop::blocking::sync::Event::new().unwrap();
///         ev.set();
///         ev.wait().await;
///     }
/// }
/// ```
#[allow(unused_macros)]
macro_rules! executor_tests {
    ($(async fn $name:ident() $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[test]
            fn smol() {
                ::smol::block_on(body())
            }

            #[test]
            fn async_std() {
                ::async_std::task::block_on(body())
            }

            #[test]
            fn tokio_multi_thread() {
                ::tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async { ::tokio::spawn(body()).await.unwrap() })
            }

            #[test]
            fn tokio_current_thread() {
                ::tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(body())
            }

            #[test]
            fn async_io() {
                ::async_io::block_on(body())
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use executor_tests;

/// Runs every future as a task of the executor under test (tokio's when a
/// tokio runtime is current, so that tasks may move between threads;
/// otherwise an `async_executor` driven by the calling task) and returns
/// their outputs in order.
pub async fn run_all<F, T>(futs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let handles: Vec<_> = futs.into_iter().map(|f| rt.spawn(f)).collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("task panicked"));
        }
        out
    } else {
        let ex = smol::Executor::new();
        let handles: Vec<_> = futs.into_iter().map(|f| ex.spawn(f)).collect();
        ex.run(async {
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(h.await);
            }
            out
        })
        .await
    }
}

/// The pid as rustix takes it.
pub fn raw_pid(pid: u32) -> rustix::process::Pid {
    rustix::process::Pid::from_raw(pid as i32).expect("a pid")
}

/// Asserts that the process behind `fd` has ended and was reaped: not even
/// a zombie is left. The pidfd cannot name a recycled pid, and `waitid` on
/// it fails with `ECHILD` once nobody is left to reap (it would reap a
/// zombie, and report a live process as not ended). Also, as Python's
/// tests check: `kill(pid, 0)` fails with `ESRCH`.
pub fn assert_reaped(pid: u32, fd: &OwnedFd) {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    use std::os::fd::AsFd;
    assert!(
        ends_within(fd, Duration::ZERO),
        "worker {pid} is still running"
    );
    match waitid(
        WaitId::PidFd(fd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    ) {
        Err(rustix::io::Errno::CHILD) => {}
        Ok(Some(_)) => panic!("worker {pid} was left as a zombie"),
        other => panic!("worker {pid}: unexpected waitid result {other:?}"),
    }
    assert_eq!(
        rustix::process::test_kill_process(raw_pid(pid)),
        Err(rustix::io::Errno::SRCH),
        "pid {pid} still exists"
    );
}

/// Polls every future until all are done (a join_all that needs no
/// executor), returning their outputs in order.
pub async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Option<std::pin::Pin<Box<F>>>> =
        futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx: &mut std::task::Context<'_>| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *o = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("done")).collect()
}

/// A small xorshift generator: random short timeouts without a crate.
pub fn rng(seed: u64) -> impl FnMut() -> u64 {
    let s = std::cell::Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    move || {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    }
}

/// `fut`, or `None` when `after` passes first (and `fut` is dropped).
pub async fn or_timeout<T>(
    fut: impl std::future::Future<Output = T>,
    after: Duration,
) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(after).await;
        None
    })
    .await
}

/// A random short delay for a future to be dropped after: zero a third of
/// the time (dropped right after its request went out), otherwise up to
/// about a round trip or a few.
pub fn short_delay(next: &mut impl FnMut() -> u64) -> Duration {
    match next() % 3 {
        0 => Duration::ZERO,
        1 => Duration::from_micros(next() % 300),
        _ => Duration::from_micros(next() % 2000),
    }
}

/// A spawned daemon child with a pidfd, to prove it reaped.
pub struct Child<R> {
    pub p: Process<R>,
    pub fd: OwnedFd,
}

pub fn spawn<A, R>(f: fn(A) -> R, args: A) -> Child<R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let p = Process::from(
        Process::builder()
            .daemon(true)
            .spawn(f, args)
            .expect("spawn a child"),
    );
    let fd = pidfd(p.pid());
    Child { p, fd }
}

impl<R: DeserializeOwned> Child<R> {
    pub fn pid(&self) -> u32 {
        self.p.pid()
    }

    /// Joins (bounded) and checks that the child is reaped.
    pub fn join(mut self) -> R {
        let r = self
            .p
            .join_timeout_blocking(GENEROUS)
            .expect("the child succeeds");
        assert_reaped(self.p.pid(), &self.fd);
        r
    }

    /// SIGKILLs the child, joins it and checks that it is reaped.
    pub fn kill(mut self) {
        self.p.kill().expect("kill");
        let r = self.p.join_timeout_blocking(GENEROUS);
        assert!(r.is_err(), "a killed child has no result");
        assert_reaped(self.p.pid(), &self.fd);
    }
}
