//! Async `Barrier`.

use std::io;
use std::time::{Duration, Instant};

use aiop_core::sync::{Arrival, BrokenBarrierError};
use serde::{Deserialize, Serialize};

use crate::time::{deadline_after, until};
use crate::watcher;

/// A barrier shared between processes, awaited by tasks: Python's
/// `multiprocessing.Barrier`, aioprocessing's `AioBarrier`.
///
/// The same shared object as [`aiop_core::sync::Barrier`] (see
/// [`as_blocking`](Barrier::as_blocking)): tasks, threads and processes
/// may meet at the same barrier, each with either API.
///
/// # Cancellation breaks the barrier
///
/// A party that has arrived counts towards the generation; it cannot
/// un-arrive, since the others may have seen the count already. So
/// dropping a [`wait`](Barrier::wait) future after its arrival and before
/// the generation ended **breaks the barrier** for everyone, exactly as an
/// expiring `wait_timeout` does in Python and in the core: every waiter
/// gets [`BrokenBarrierError`], and so does every later `wait` until
/// [`reset`](Barrier::reset). A future dropped before its first poll has
/// not arrived and changes nothing.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let barrier = aiop_async::sync::Barrier::new(1)?;
/// assert_eq!(barrier.wait().await, Ok(0));
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Barrier {
    inner: aiop_core::sync::Barrier,
}

/// Aborts the barrier unless the arrival's outcome was seen (the future
/// that holds it was dropped midway).
struct Pending<'a> {
    barrier: &'a aiop_core::sync::Barrier,
    arrival: Arrival,
    settled: bool,
}

impl Pending<'_> {
    /// The outcome, once known; marks the arrival settled.
    fn outcome(&mut self) -> Option<Result<u32, BrokenBarrierError>> {
        let r = self.barrier.outcome(&self.arrival);
        self.settled |= r.is_some();
        r
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.settled && self.barrier.outcome(&self.arrival).is_none() {
            self.barrier.abort();
        }
    }
}

impl Barrier {
    /// Creates a barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Barrier::new`].
    pub fn new(parties: u32) -> io::Result<Barrier> {
        aiop_core::sync::Barrier::new(parties).map(Barrier::from)
    }

    /// Creates a barrier that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Barrier::create_named`].
    pub fn create_named(name: &str, parties: u32) -> io::Result<Barrier> {
        aiop_core::sync::Barrier::create_named(name, parties).map(Barrier::from)
    }

    /// Opens a barrier another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Barrier::open_named`].
    pub fn open_named(name: &str) -> io::Result<Barrier> {
        aiop_core::sync::Barrier::open_named(name).map(Barrier::from)
    }

    /// Waits for every party; returns this caller's arrival index (0 for
    /// the first).
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] when the barrier is or becomes broken.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the first poll arrives at the barrier, and dropping
    /// the future after that and before the generation ends breaks the
    /// barrier for every party (see [the type's docs](Barrier)). Dropping
    /// it before its first poll changes nothing.
    #[doc(alias = "coro_wait")]
    pub async fn wait(&self) -> Result<u32, BrokenBarrierError> {
        self.wait_with_action(|| ()).await
    }

    /// As [`wait`](Barrier::wait); if this caller arrives last, it runs
    /// `action` before the others are released (Python's `action`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Barrier::wait).
    #[doc(alias = "coro_wait")]
    pub async fn wait_with_action(&self, action: impl FnOnce()) -> Result<u32, BrokenBarrierError> {
        let mut pending = self.arrive(action)?;
        self.settle(&mut pending).await
    }

    fn arrive(&self, action: impl FnOnce()) -> Result<Pending<'_>, BrokenBarrierError> {
        Ok(Pending {
            barrier: &self.inner,
            arrival: self.inner.arrive_with_action(action)?,
            settled: false,
        })
    }

    /// Waits for the outcome of an arrival.
    async fn settle(&self, pending: &mut Pending<'_>) -> Result<u32, BrokenBarrierError> {
        loop {
            if let Some(r) = pending.outcome() {
                return r;
            }
            let Some(watch) = self.inner.watch(&pending.arrival) else {
                continue;
            };
            let listen = watcher::listen(vec![watch]);
            if let Some(r) = pending.outcome() {
                return r;
            }
            listen.await;
        }
    }

    /// Waits at most `timeout`; when the time runs out, the barrier breaks
    /// for everyone, as in Python.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrierError`] when the barrier is or becomes broken,
    /// including by this timeout.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Barrier::wait).
    #[doc(alias = "coro_wait")]
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<u32, BrokenBarrierError> {
        self.wait_until(deadline_after(timeout)).await
    }

    /// Waits until `deadline` at the latest; see
    /// [`wait_timeout`](Barrier::wait_timeout).
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Barrier::wait_timeout).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Barrier::wait).
    pub async fn wait_deadline(&self, deadline: Instant) -> Result<u32, BrokenBarrierError> {
        self.wait_until(Some(deadline)).await
    }

    async fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BrokenBarrierError> {
        let mut pending = self.arrive(|| ())?;
        match until(deadline, self.settle(&mut pending)).await {
            Some(r) => r,
            // One last look; otherwise dropping `pending` breaks the
            // barrier, as a timeout does.
            None => pending.outcome().unwrap_or(Err(BrokenBarrierError)),
        }
    }

    /// Waits for every party on the calling thread.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    #[doc(alias = "wait")]
    pub fn wait_blocking(&self) -> Result<u32, BrokenBarrierError> {
        self.inner.wait()
    }

    /// Waits on the calling thread at most `timeout`.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Barrier::wait_timeout).
    #[doc(alias = "wait")]
    pub fn wait_timeout_blocking(&self, timeout: Duration) -> Result<u32, BrokenBarrierError> {
        self.inner.wait_timeout(timeout)
    }

    /// Breaks the barrier: every waiter, and every later `wait` until
    /// [`reset`](Barrier::reset), gets [`BrokenBarrierError`].
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`BrokenBarrierError`].
    pub fn reset(&self) {
        self.inner.reset();
    }

    /// The number of parties that must arrive.
    pub fn parties(&self) -> u32 {
        self.inner.parties()
    }

    /// How many parties are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.inner.n_waiting()
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.inner.broken()
    }

    /// The blocking twin of this barrier (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::sync::Barrier {
        &self.inner
    }

    /// Whether both handles refer to the same barrier.
    pub fn same_as(&self, other: &Barrier) -> bool {
        self.inner.same_as(&other.inner)
    }
}

impl From<aiop_core::sync::Barrier> for Barrier {
    fn from(inner: aiop_core::sync::Barrier) -> Barrier {
        Barrier { inner }
    }
}

impl From<Barrier> for aiop_core::sync::Barrier {
    fn from(b: Barrier) -> aiop_core::sync::Barrier {
        b.inner
    }
}
