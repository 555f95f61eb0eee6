//! `ConditionProxy`: a condition variable served by the manager, with its
//! own re-entrant lock (Python's `manager.Condition()`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::time::deadline_after;

use super::lock::{
    LockOps, Reentrant, acquire_reentrant, lock_guard, lock_methods, release_reentrant,
    retake_reentrant,
};
use super::{decode, enc};
use crate::manager::proxy::typed_proxy;
use crate::manager::{
    Call, CallError, ClientId, Manager, ManagerError, Monitor, Proxy, Registry, RemoteError, Served,
};

const KIND: &str = "aiop.Condition";

pub(super) fn register(r: &mut Registry) {
    r.register(KIND, |(): ()| Ok(Condition::default()));
}

/// The served condition: its lock and the calls waiting in `wait`.
struct Condition {
    m: Monitor<CondState>,
}

impl Default for Condition {
    fn default() -> Condition {
        Condition {
            m: Monitor::new(CondState {
                lock: Reentrant::default(),
                waiters: VecDeque::new(),
                next_waiter: 0,
            }),
        }
    }
}

struct CondState {
    lock: Reentrant,
    /// In the order they started waiting.
    waiters: VecDeque<Waiter>,
    next_waiter: u64,
}

/// One call in `wait`. It removes itself when it stops waiting.
struct Waiter {
    id: u64,
    client: ClientId,
    notified: bool,
}

impl CondState {
    /// Notifies up to `n` waiters not notified yet, oldest first; returns
    /// how many.
    fn notify(&mut self, n: u64) -> u64 {
        let mut done = 0;
        for w in self.waiters.iter_mut().filter(|w| !w.notified) {
            if done == n {
                break;
            }
            w.notified = true;
            done += 1;
        }
        done
    }

    /// Removes waiter `id`; `None` when `client_gone` removed it already.
    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let at = self.waiters.iter().position(|w| w.id == id)?;
        self.waiters.remove(at)
    }
}

fn the_lock(s: &mut CondState) -> &mut Reentrant {
    &mut s.lock
}

fn not_owner(what: &str) -> CallError {
    RemoteError::new(RemoteError::NOT_OWNER, what.to_string()).into()
}

impl Condition {
    /// A waiter that stopped waiting without returning to its caller
    /// (cancelled, interrupted): removes it and, if it had been notified,
    /// passes the notification on so that it is not lost.
    fn abandon(&self, id: u64) {
        let mut s = self.m.lock();
        if s.remove(id).is_some_and(|w| w.notified) {
            s.notify(1);
        }
        drop(s);
        self.m.notify_all();
    }

    /// `wait`: releases every level of the caller, waits for a notify (or
    /// the deadline), takes the same levels back, and returns whether it
    /// was notified and how many levels it holds again.
    fn wait(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let timeout: Option<Duration> = call.args()?;
        let me = call.owner();
        let deadline = call.deadline(timeout);
        let mut s = self.m.lock();
        if !s.lock.owned_by(me) {
            return Err(not_owner(
                "wait on a condition whose lock the caller does not hold",
            ));
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            // Released and taken back at once: nothing changes.
            return call.reply(&(false, s.lock.depth(), s.lock.epoch()));
        }
        if !call.can_block() {
            return Err(call.must_block());
        }
        let levels = s.lock.give_back_all(me);
        let id = s.next_waiter;
        s.next_waiter += 1;
        s.waiters.push_back(Waiter {
            id,
            client: call.client(),
            notified: false,
        });
        self.m.notify_all();
        let waited = call.wait_until(&self.m, s, deadline, |s| {
            s.waiters
                .iter()
                .find(|w| w.id == id)
                .is_none_or(|w| w.notified)
        });
        let (s, notified) = match waited {
            Ok((mut s, _)) => match s.remove(id) {
                Some(w) => (s, w.notified),
                None => {
                    return Err(RemoteError::new(
                        RemoteError::CANCELLED,
                        "the caller's connection ended",
                    )
                    .into());
                }
            },
            Err(e) => {
                self.abandon(id);
                return Err(e);
            }
        };
        match retake_reentrant(call, &self.m, s, the_lock, levels) {
            Ok(s) => {
                let epoch = s.lock.epoch();
                drop(s);
                self.m.notify_all();
                call.reply(&(notified, levels, epoch))
            }
            Err(e) => {
                // Interrupted while taking the lock back: it stays released,
                // and the notification goes to another waiter.
                if notified {
                    let mut s = self.m.lock();
                    s.notify(1);
                    drop(s);
                }
                self.m.notify_all();
                Err(e)
            }
        }
    }
}

impl Served for Condition {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        match call.method() {
            "acquire" => acquire_reentrant(call, &self.m, self.m.lock(), the_lock),
            "release" => release_reentrant(call, &self.m, self.m.lock(), the_lock),
            "wait" => self.wait(call),
            "unwait" => {
                // The undo of a `wait` whose future was dropped: pass on the
                // notification it got, and give back the levels it took
                // back, unless the caller has let that hold go since (say
                // by dropping its guard and taking the lock again: that
                // later hold is not the wait's to release).
                let (notified, levels, epoch): (bool, u32, u64) = call.args()?;
                let mut s = self.m.lock();
                if notified {
                    s.notify(1);
                }
                s.lock.give_back_in(call.owner(), levels, epoch);
                drop(s);
                self.m.notify_all();
                call.reply(&())
            }
            "notify" => {
                let n: u64 = call.args()?;
                let mut s = self.m.lock();
                if !s.lock.owned_by(call.owner()) {
                    return Err(not_owner(
                        "notify on a condition whose lock the caller does not hold",
                    ));
                }
                s.notify(n);
                drop(s);
                self.m.notify_all();
                call.reply(&())
            }
            _ => Err(call.no_such_method()),
        }
    }

    fn client_gone(&self, client: ClientId) {
        let mut s = self.m.lock();
        let mut changed = s.lock.client_gone(client);
        let mut passed = 0;
        s.waiters.retain(|w| {
            if w.client == client {
                changed = true;
                passed += u64::from(w.notified);
                false
            } else {
                true
            }
        });
        s.notify(passed);
        drop(s);
        if changed {
            self.m.notify_all();
        }
    }
}

/// A proxy to a condition variable served by a manager: Python's
/// `manager.Condition()`.
///
/// The condition has its own re-entrant lock, owned as an
/// [`RLockProxy`](crate::manager::RLockProxy) is: by the thread for
/// `_blocking` methods, by the proxy value for async ones (so wait and
/// notify through the same proxy value that took the lock). A caller that
/// holds the lock [`wait`](ConditionProxy::wait)s: the server releases every
/// level, waits for a [`notify`](ConditionProxy::notify), and takes the
/// same levels back before the call returns. When a process exits or dies,
/// the server frees the lock if it held it and forgets its waiters.
///
/// Python's `acquire()`, `release()`, `with cond:`, `wait()`,
/// `wait(timeout)`, `wait_for(pred)`, `notify(n)` and `notify_all()` are
/// [`acquire`](ConditionProxy::acquire) (and its `_timeout` / `try_`
/// forms), [`release`](ConditionProxy::release),
/// [`lock`](ConditionProxy::lock) (a guard), [`wait`](ConditionProxy::wait),
/// [`wait_timeout`](ConditionProxy::wait_timeout),
/// [`wait_for`](ConditionProxy::wait_for),
/// [`notify`](ConditionProxy::notify) and
/// [`notify_all`](ConditionProxy::notify_all).
///
/// # A wait that fails leaves the lock released
///
/// If a wait is cancelled (its future dropped), interrupted (the server
/// shuts down) or fails, the caller **no longer holds the lock** when it
/// returns, whatever it held before: unlike Python, there is no way to
/// give it back to the caller then. A guard still held from before ends by
/// sending a release that the server refuses (and that is ignored), unless
/// the same owner took the lock again meanwhile, in which case the guard's
/// drop releases that. After a failed wait, drop the guard before taking
/// the lock again.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let cond = manager.condition_blocking()?;
/// let guard = cond.lock_blocking()?;
/// // Nobody notifies: the wait times out, holding the lock again.
/// assert!(!cond.wait_timeout_blocking(std::time::Duration::from_millis(10))?);
/// drop(guard);
/// # Ok(()) }
/// ```
pub struct ConditionProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { ConditionProxy<>, KIND }

lock_guard! {
    /// Holds one level of a [`ConditionProxy`]'s lock and releases it when
    /// dropped, for the owner that took it, without waiting for the
    /// server's answer. Made by [`ConditionProxy::lock`].
    ConditionProxyGuard
}

impl ConditionProxy {
    lock_methods!(ConditionProxyGuard);

    /// Releases one level of the lock (Python's `release()`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::NOT_OWNER`] when the caller (this thread, or this
    /// proxy value for the async method) does not hold it; otherwise as
    /// [`acquire`](Self::acquire).
    pub async fn release(&self) -> Result<(), ManagerError> {
        LockOps(&self.proxy).query("release").await
    }

    /// [`release`](Self::release), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release).
    pub fn release_blocking(&self) -> Result<(), ManagerError> {
        LockOps(&self.proxy).query_blocking("release")
    }

    async fn wait_raw(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let r = self
            .proxy
            .call_raw("wait", enc(&timeout)?, Some(("unwait", None)))
            .await?;
        decode::<(bool, u32, u64)>(&r).map(|(notified, _, _)| notified)
    }

    fn wait_raw_blocking(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let r = self.proxy.call_raw_blocking("wait", enc(&timeout)?)?;
        decode::<(bool, u32, u64)>(&r).map(|(notified, _, _)| notified)
    }

    /// Releases the lock, waits for a [`notify`](Self::notify), and takes
    /// the lock back (as many levels as the caller held) before returning
    /// (Python's `wait()`). The caller must hold the lock.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the lock released (see [the type's
    /// docs](ConditionProxy#a-wait-that-fails-leaves-the-lock-released)):
    /// if the server had taken it back for the dropped future, the proxy
    /// releases those levels. A notification the dropped wait had received
    /// goes to another waiter.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NOT_OWNER`] when the caller does not hold the lock
    /// (then nothing changed); [`RemoteError::CANCELLED`] /
    /// [`RemoteError::SHUTTING_DOWN`] when the server interrupts the wait;
    /// otherwise as [`acquire`](Self::acquire). After an error other than
    /// `NOT_OWNER`, the caller does not hold the lock.
    pub async fn wait(&self) -> Result<(), ManagerError> {
        self.wait_raw(None).await.map(drop)
    }

    /// [`wait`](Self::wait), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_blocking(&self) -> Result<(), ManagerError> {
        self.wait_raw_blocking(None).map(drop)
    }

    /// [`wait`](Self::wait) for a notify for at most `timeout`; false when
    /// none came (Python's `wait(timeout)`). Either way the lock is taken
    /// back before it returns (which may take longer than `timeout`).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.wait_raw(Some(timeout)).await
    }

    /// [`wait_timeout`](Self::wait_timeout), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_blocking(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.wait_raw_blocking(Some(timeout))
    }

    /// Waits until `pred` returns true (Python's `wait_for(pred)`): checks
    /// it, and [`wait`](Self::wait)s after each false. `pred` runs in this
    /// process, holding the lock.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_for(&self, mut pred: impl FnMut() -> bool) -> Result<(), ManagerError> {
        while !pred() {
            self.wait().await?;
        }
        Ok(())
    }

    /// [`wait_for`](Self::wait_for), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for_blocking(&self, mut pred: impl FnMut() -> bool) -> Result<(), ManagerError> {
        while !pred() {
            self.wait_blocking()?;
        }
        Ok(())
    }

    /// [`wait_for`](Self::wait_for) for at most `timeout` in all; returns
    /// the last result of `pred` (Python's `wait_for(pred, timeout)`).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_for_timeout(
        &self,
        mut pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, ManagerError> {
        let deadline = deadline_after(timeout);
        loop {
            if pred() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_timeout(left).await?;
        }
    }

    /// [`wait_for_timeout`](Self::wait_for_timeout), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for_timeout_blocking(
        &self,
        mut pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, ManagerError> {
        let deadline = deadline_after(timeout);
        loop {
            if pred() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_timeout_blocking(left)?;
        }
    }

    /// Wakes up to `n` waiting callers, those waiting longest first
    /// (Python's `notify(n)`). The caller must hold the lock; the woken
    /// take it in turn once it is released.
    ///
    /// # Errors
    ///
    /// [`RemoteError::NOT_OWNER`] when the caller does not hold the lock;
    /// otherwise as [`acquire`](Self::acquire).
    pub async fn notify(&self, n: usize) -> Result<(), ManagerError> {
        decode(
            &self
                .proxy
                .call_raw("notify", enc(&(n as u64))?, None)
                .await?,
        )
    }

    /// [`notify`](Self::notify), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_blocking(&self, n: usize) -> Result<(), ManagerError> {
        decode(&self.proxy.call_raw_blocking("notify", enc(&(n as u64))?)?)
    }

    /// Wakes one waiting caller (Python's `notify()`).
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub async fn notify_one(&self) -> Result<(), ManagerError> {
        self.notify(1).await
    }

    /// [`notify_one`](Self::notify_one), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_one_blocking(&self) -> Result<(), ManagerError> {
        self.notify_blocking(1)
    }

    /// Wakes every waiting caller (Python's `notify_all()`).
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub async fn notify_all(&self) -> Result<(), ManagerError> {
        self.notify(usize::MAX).await
    }

    /// [`notify_all`](Self::notify_all), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_all_blocking(&self) -> Result<(), ManagerError> {
        self.notify_blocking(usize::MAX)
    }
}

impl Manager {
    /// Creates a condition variable with its own re-entrant lock on the
    /// server (Python's `manager.Condition()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn condition(&self) -> Result<ConditionProxy, ManagerError> {
        ConditionProxy::from_proxy(self.create(KIND, &()).await?)
    }

    /// [`condition`](Manager::condition), blocking.
    ///
    /// # Errors
    ///
    /// As [`condition`](Manager::condition).
    pub fn condition_blocking(&self) -> Result<ConditionProxy, ManagerError> {
        ConditionProxy::from_proxy(self.create_blocking(KIND, &())?)
    }
}
