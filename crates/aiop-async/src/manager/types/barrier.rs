//! `BarrierProxy`: a meeting point for a fixed number of parties, served by
//! the manager (Python's `manager.Barrier(parties)`).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::{decode, enc};
use crate::manager::proxy::typed_proxy;
use crate::manager::{
    Call, CallError, ClientId, Manager, ManagerError, Monitor, Proxy, Registry, RemoteError, Served,
};

const KIND: &str = "aiop.Barrier";

pub(super) fn register(r: &mut Registry) {
    r.register(KIND, |parties: u32| {
        if parties == 0 {
            return Err(RemoteError::new(
                RemoteError::INVALID_VALUE,
                "a barrier needs at least one party",
            ));
        }
        Ok(Barrier::new(parties))
    });
}

/// The served barrier.
struct Barrier {
    m: Monitor<BarrierState>,
}

struct BarrierState {
    parties: u32,
    broken: bool,
    /// The calls in `wait`, of the current generation (`done` is `None`)
    /// and of ended ones that have not returned yet. Each removes itself.
    waiters: Vec<Waiter>,
    /// How many waiters of the current generation there are.
    count: u32,
    next_waiter: u64,
}

struct Waiter {
    id: u64,
    client: ClientId,
    /// How its generation ended: released (true) or broken (false).
    done: Option<bool>,
}

impl BarrierState {
    /// Ends the current generation: its waiters return (`released`) or
    /// fail (not `released`).
    fn end_generation(&mut self, released: bool) {
        for w in self.waiters.iter_mut().filter(|w| w.done.is_none()) {
            w.done = Some(released);
        }
        self.count = 0;
    }

    /// Breaks the barrier: the waiters fail, and so does every later wait
    /// until a reset.
    fn break_it(&mut self) {
        self.end_generation(false);
        self.broken = true;
    }

    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let at = self.waiters.iter().position(|w| w.id == id)?;
        Some(self.waiters.swap_remove(at))
    }
}

fn broken(why: &str) -> CallError {
    RemoteError::new(RemoteError::BROKEN_BARRIER, why.to_string()).into()
}

impl Barrier {
    fn new(parties: u32) -> Barrier {
        Barrier {
            m: Monitor::new(BarrierState {
                parties,
                broken: false,
                waiters: Vec::new(),
                count: 0,
                next_waiter: 0,
            }),
        }
    }

    fn wait(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let timeout: Option<Duration> = call.args()?;
        let deadline = call.deadline(timeout);
        let mut s = self.m.lock();
        if s.broken {
            return Err(broken("the barrier is broken"));
        }
        let index = s.count;
        if index + 1 >= s.parties {
            // The last party: release the others.
            s.end_generation(true);
            drop(s);
            self.m.notify_all();
            return call.reply(&index);
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            // A wait that times out breaks the barrier, as in Python.
            s.break_it();
            drop(s);
            self.m.notify_all();
            return Err(broken("the wait timed out, which broke the barrier"));
        }
        if !call.can_block() {
            return Err(call.must_block());
        }
        let id = s.next_waiter;
        s.next_waiter += 1;
        s.waiters.push(Waiter {
            id,
            client: call.client(),
            done: None,
        });
        s.count += 1;
        call.hold();
        let waited = call.wait_until(&self.m, s, deadline, |s| {
            s.waiters
                .iter()
                .find(|w| w.id == id)
                .is_none_or(|w| w.done.is_some())
        });
        match waited {
            Ok((mut s, _)) => {
                let done = s.remove(id).and_then(|w| w.done);
                match done {
                    Some(true) => call.reply(&index),
                    Some(false) => Err(broken("the barrier broke while this waited")),
                    None => {
                        // Timed out: this waiter gives up, and breaks it.
                        s.count = s.count.saturating_sub(1);
                        s.break_it();
                        drop(s);
                        self.m.notify_all();
                        Err(broken("the wait timed out, which broke the barrier"))
                    }
                }
            }
            Err(e) => {
                // Interrupted (cancelled, or the caller or the server going
                // away): a party will not arrive, so the barrier breaks,
                // unless its generation ended already.
                let mut s = self.m.lock();
                if s.remove(id).is_some_and(|w| w.done.is_none()) {
                    s.count = s.count.saturating_sub(1);
                    s.break_it();
                }
                drop(s);
                self.m.notify_all();
                Err(e)
            }
        }
    }
}

impl Served for Barrier {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        match call.method() {
            "wait" => self.wait(call),
            "abort" => {
                let mut s = self.m.lock();
                s.break_it();
                drop(s);
                self.m.notify_all();
                call.reply(&())
            }
            "reset" => {
                let mut s = self.m.lock();
                s.end_generation(false);
                s.broken = false;
                drop(s);
                self.m.notify_all();
                call.reply(&())
            }
            "parties" => call.reply(&self.m.lock().parties),
            "n_waiting" => call.reply(&self.m.lock().count),
            "broken" => call.reply(&self.m.lock().broken),
            _ => Err(call.no_such_method()),
        }
    }

    fn client_gone(&self, client: ClientId) {
        let mut s = self.m.lock();
        if s.waiters
            .iter()
            .any(|w| w.client == client && w.done.is_none())
        {
            s.break_it();
            drop(s);
            self.m.notify_all();
        }
    }
}

/// A proxy to a barrier served by a manager: Python's
/// `manager.Barrier(parties)`.
///
/// `parties` callers [`wait`](BarrierProxy::wait); the last to arrive
/// releases them all, and each gets its arrival index (0 for the first,
/// `parties - 1` for the last, as in Python). The barrier then serves the
/// next `parties` callers. It **breaks** when it is
/// [`abort`](BarrierProxy::abort)ed, when a waiter times out, when a
/// waiting call is cancelled (its future dropped) or interrupted, or when a
/// waiting process dies; the waiters then fail with
/// [`RemoteError::BROKEN_BARRIER`], and so does every later wait until
/// [`reset`](BarrierProxy::reset). A reset while callers wait fails them
/// too, but leaves the barrier whole.
///
/// Python's `wait()`, `wait(timeout)`, `abort()`, `reset()`, `parties`,
/// `n_waiting` and `broken` are [`wait`](BarrierProxy::wait),
/// [`wait_timeout`](BarrierProxy::wait_timeout),
/// [`abort`](BarrierProxy::abort), [`reset`](BarrierProxy::reset),
/// [`parties`](BarrierProxy::parties),
/// [`n_waiting`](BarrierProxy::n_waiting) and
/// [`broken`](BarrierProxy::broken); Python's `BrokenBarrierError` is a
/// [`ManagerError::Remote`] of kind [`RemoteError::BROKEN_BARRIER`].
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let barrier = manager.barrier_blocking(1)?;
/// assert_eq!(barrier.wait_blocking()?, 0);
/// barrier.abort_blocking()?;
/// assert!(barrier.wait_blocking().is_err());
/// barrier.reset_blocking()?;
/// assert_eq!(barrier.wait_blocking()?, 0);
/// # Ok(()) }
/// ```
pub struct BarrierProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { BarrierProxy<>, KIND }

impl BarrierProxy {
    async fn call<R: serde::de::DeserializeOwned>(&self, method: &str) -> Result<R, ManagerError> {
        decode(&self.proxy.call_raw(method, enc(&())?, None).await?)
    }

    fn call_blocking<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
    ) -> Result<R, ManagerError> {
        decode(&self.proxy.call_raw_blocking(method, enc(&())?)?)
    }

    /// Waits until every party has arrived; returns this caller's arrival
    /// index (Python's `wait()`).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits breaks the barrier (as a
    /// timeout does): the party it stood for will not arrive. Once the
    /// barrier has released it, dropping it changes nothing.
    ///
    /// # Errors
    ///
    /// [`RemoteError::BROKEN_BARRIER`] when the barrier is broken, or
    /// breaks or is reset while this waits; [`ManagerError::ServerGone`]
    /// when the server is gone (or shuts down while this waits); the other
    /// errors of [`Proxy::call`].
    pub async fn wait(&self) -> Result<u32, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("wait", enc(&None::<Duration>)?, None)
                .await?,
        )
    }

    /// [`wait`](Self::wait), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_blocking(&self) -> Result<u32, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw_blocking("wait", enc(&None::<Duration>)?)?,
        )
    }

    /// [`wait`](Self::wait) for at most `timeout`; if the others have not
    /// all arrived by then, the barrier breaks, for every waiter (Python's
    /// `wait(timeout)`).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), including
    /// [`RemoteError::BROKEN_BARRIER`] when this wait timed out.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<u32, ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("wait", enc(&Some(timeout))?, None)
                .await?,
        )
    }

    /// [`wait_timeout`](Self::wait_timeout), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_timeout_blocking(&self, timeout: Duration) -> Result<u32, ManagerError> {
        decode(&self.proxy.call_raw_blocking("wait", enc(&Some(timeout))?)?)
    }

    /// Breaks the barrier: the waiters fail, and so does every wait until
    /// [`reset`](Self::reset) (Python's `abort()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`].
    pub async fn abort(&self) -> Result<(), ManagerError> {
        self.call("abort").await
    }

    /// [`abort`](Self::abort), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub fn abort_blocking(&self) -> Result<(), ManagerError> {
        self.call_blocking("abort")
    }

    /// Returns the barrier to its first state: not broken, nobody waiting;
    /// callers waiting now fail with [`RemoteError::BROKEN_BARRIER`]
    /// (Python's `reset()`).
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub async fn reset(&self) -> Result<(), ManagerError> {
        self.call("reset").await
    }

    /// [`reset`](Self::reset), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub fn reset_blocking(&self) -> Result<(), ManagerError> {
        self.call_blocking("reset")
    }

    /// The number of parties (Python's `parties`).
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub async fn parties(&self) -> Result<u32, ManagerError> {
        self.call("parties").await
    }

    /// [`parties`](Self::parties), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub fn parties_blocking(&self) -> Result<u32, ManagerError> {
        self.call_blocking("parties")
    }

    /// How many callers wait now (Python's `n_waiting`).
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub async fn n_waiting(&self) -> Result<u32, ManagerError> {
        self.call("n_waiting").await
    }

    /// [`n_waiting`](Self::n_waiting), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub fn n_waiting_blocking(&self) -> Result<u32, ManagerError> {
        self.call_blocking("n_waiting")
    }

    /// Whether the barrier is broken (Python's `broken`).
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub async fn broken(&self) -> Result<bool, ManagerError> {
        self.call("broken").await
    }

    /// [`broken`](Self::broken), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`abort`](Self::abort).
    pub fn broken_blocking(&self) -> Result<bool, ManagerError> {
        self.call_blocking("broken")
    }
}

impl Manager {
    /// Creates a barrier for `parties` parties on the server (Python's
    /// `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when `parties` is 0;
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn barrier(&self, parties: u32) -> Result<BarrierProxy, ManagerError> {
        BarrierProxy::from_proxy(self.create(KIND, &parties).await?)
    }

    /// [`barrier`](Manager::barrier), blocking.
    ///
    /// # Errors
    ///
    /// As [`barrier`](Manager::barrier).
    pub fn barrier_blocking(&self, parties: u32) -> Result<BarrierProxy, ManagerError> {
        BarrierProxy::from_proxy(self.create_blocking(KIND, &parties)?)
    }
}
