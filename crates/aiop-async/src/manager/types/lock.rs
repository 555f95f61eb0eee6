//! `LockProxy` and `RLockProxy`: locks served by the manager (Python's
//! `manager.Lock()` and `manager.RLock()`), and the re-entrant lock state
//! that [`ConditionProxy`](crate::manager::ConditionProxy) shares.

use std::marker::PhantomData;
use std::sync::MutexGuard;
use std::time::Duration;

use super::{bool_or_timeout, decode, enc, timed_out};
use crate::manager::proxy::typed_proxy;
use crate::manager::{
    Call, CallError, ClientId, Manager, ManagerError, Monitor, Proxy, Registry, RemoteError, Served,
};

const LOCK: &str = "aiop.Lock";
const RLOCK: &str = "aiop.RLock";

pub(super) fn register(r: &mut Registry) {
    r.register(LOCK, |(): ()| Ok(Lock::default()));
    r.register(RLOCK, |(): ()| Ok(RLock::default()));
}

fn not_owner(what: &str) -> CallError {
    RemoteError::new(RemoteError::NOT_OWNER, what.to_string()).into()
}

/// The served lock: the client connection holding it, if any.
struct Lock {
    m: Monitor<Option<ClientId>>,
}

impl Default for Lock {
    fn default() -> Lock {
        Lock {
            m: Monitor::new(None),
        }
    }
}

impl Served for Lock {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let holder = self.m.lock();
        match call.method() {
            "acquire" => {
                let timeout: Option<Duration> = call.args()?;
                let deadline = call.deadline(timeout);
                let (mut holder, ok) =
                    call.wait_until(&self.m, holder, deadline, |h| h.is_none())?;
                if !ok {
                    return Err(timed_out("the lock stayed locked"));
                }
                *holder = Some(call.client());
                drop(holder);
                call.hold();
                self.m.notify_all();
                call.reply(&())
            }
            "release" => {
                let mut holder = holder;
                if *holder != Some(call.client()) {
                    return Err(not_owner(if holder.is_none() {
                        "release of an unlocked lock"
                    } else {
                        "release of a lock another process holds"
                    }));
                }
                *holder = None;
                drop(holder);
                self.m.notify_all();
                call.reply(&())
            }
            "is_locked" => call.reply(&holder.is_some()),
            _ => Err(call.no_such_method()),
        }
    }

    fn client_gone(&self, client: ClientId) {
        let mut holder = self.m.lock();
        if *holder == Some(client) {
            *holder = None;
            drop(holder);
            self.m.notify_all();
        }
    }
}

/// A re-entrant lock's state: who holds it (a client and a caller within
/// it, see [`Call::owner`]) and how many times.
#[derive(Debug, Default)]
pub(super) struct Reentrant {
    owner: Option<(ClientId, u64)>,
    depth: u32,
    /// Counts the times the lock went from free to held: one hold of an
    /// owner is told from a later one (a condition's `unwait` gives back
    /// only the hold its `wait` took).
    epoch: u64,
}

impl Reentrant {
    /// Whether `me` can take a level now.
    pub(super) fn can_take(&self, me: (ClientId, u64)) -> bool {
        self.owner.is_none_or(|o| o == me)
    }

    /// Whether `me` holds it.
    pub(super) fn owned_by(&self, me: (ClientId, u64)) -> bool {
        self.owner == Some(me)
    }

    /// How many levels its owner holds (0 when free).
    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    pub(super) fn is_locked(&self) -> bool {
        self.owner.is_some()
    }

    /// Takes `levels` more levels for `me` (who [can take](Self::can_take)).
    fn take(&mut self, me: (ClientId, u64), levels: u32) -> Result<(), RemoteError> {
        debug_assert!(self.can_take(me));
        let depth = if self.owner == Some(me) {
            self.depth.checked_add(levels).ok_or_else(|| {
                RemoteError::new(
                    RemoteError::INVALID_VALUE,
                    "the lock is held too many times",
                )
            })?
        } else {
            levels
        };
        if depth > 0 {
            if self.owner != Some(me) {
                self.epoch = self.epoch.wrapping_add(1);
            }
            self.owner = Some(me);
            self.depth = depth;
        }
        Ok(())
    }

    /// Which hold this is (see the field).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Gives back up to `levels` levels of `me` if `me` still holds the
    /// lock in `epoch` (has not let it go since); whether it did.
    pub(super) fn give_back_in(&mut self, me: (ClientId, u64), levels: u32, epoch: u64) -> bool {
        self.epoch == epoch && self.give_back(me, levels)
    }

    /// Gives back up to `levels` levels of `me`; false when `me` does not
    /// hold it.
    fn give_back(&mut self, me: (ClientId, u64), levels: u32) -> bool {
        if self.owner != Some(me) {
            return false;
        }
        self.depth = self.depth.saturating_sub(levels);
        if self.depth == 0 {
            self.owner = None;
        }
        true
    }

    /// Gives back every level of `me` (who holds it); returns how many.
    pub(super) fn give_back_all(&mut self, me: (ClientId, u64)) -> u32 {
        debug_assert!(self.owned_by(me));
        let levels = self.depth;
        self.owner = None;
        self.depth = 0;
        levels
    }

    /// Frees it if an owner of `client` holds it; true if it did.
    pub(super) fn client_gone(&mut self, client: ClientId) -> bool {
        if self.owner.is_some_and(|(c, _)| c == client) {
            self.owner = None;
            self.depth = 0;
            true
        } else {
            false
        }
    }
}

/// The `acquire` of a served object holding a [`Reentrant`] (found in its
/// state by `lock`): takes one level for the caller, waiting at most the
/// timeout of the arguments.
pub(super) fn acquire_reentrant<S: Send + 'static>(
    call: &Call<'_>,
    m: &Monitor<S>,
    state: MutexGuard<'_, S>,
    lock: fn(&mut S) -> &mut Reentrant,
) -> Result<Vec<u8>, CallError> {
    let timeout: Option<Duration> = call.args()?;
    let me = call.owner();
    let deadline = call.deadline(timeout);
    let (mut state, ok) = call.wait_until(m, state, deadline, |s| lock(s).can_take(me))?;
    if !ok {
        return Err(timed_out("the lock stayed held by another owner"));
    }
    lock(&mut state).take(me, 1)?;
    drop(state);
    call.hold();
    m.notify_all();
    call.reply(&())
}

/// Takes `levels` levels back for the caller after a condition's wait,
/// waiting (without a deadline) until it can.
pub(super) fn retake_reentrant<'m, S: Send + 'static>(
    call: &Call<'_>,
    m: &'m Monitor<S>,
    state: MutexGuard<'m, S>,
    lock: fn(&mut S) -> &mut Reentrant,
    levels: u32,
) -> Result<MutexGuard<'m, S>, CallError> {
    let me = call.owner();
    let (mut state, _) = call.wait_until(m, state, None, |s| lock(s).can_take(me))?;
    lock(&mut state).take(me, levels)?;
    call.hold();
    Ok(state)
}

/// The `release` of a served object holding a [`Reentrant`]: gives back
/// one level of the caller.
pub(super) fn release_reentrant<S: Send + 'static>(
    call: &Call<'_>,
    m: &Monitor<S>,
    mut state: MutexGuard<'_, S>,
    lock: fn(&mut S) -> &mut Reentrant,
) -> Result<Vec<u8>, CallError> {
    let l = lock(&mut state);
    let locked = l.is_locked();
    if !l.give_back(call.owner(), 1) {
        return Err(not_owner(if locked {
            "release of a lock another owner holds"
        } else {
            "release of an unlocked lock"
        }));
    }
    drop(state);
    m.notify_all();
    call.reply(&())
}

/// The served re-entrant lock.
struct RLock {
    m: Monitor<Reentrant>,
}

impl Default for RLock {
    fn default() -> RLock {
        RLock {
            m: Monitor::new(Reentrant::default()),
        }
    }
}

fn itself(r: &mut Reentrant) -> &mut Reentrant {
    r
}

impl Served for RLock {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let state = self.m.lock();
        match call.method() {
            "acquire" => acquire_reentrant(call, &self.m, state, itself),
            "release" => release_reentrant(call, &self.m, state, itself),
            "is_locked" => call.reply(&state.is_locked()),
            _ => Err(call.no_such_method()),
        }
    }

    fn client_gone(&self, client: ClientId) {
        let mut state = self.m.lock();
        if state.client_gone(client) {
            drop(state);
            self.m.notify_all();
        }
    }
}

/// The methods of the lock proxies, on the untyped proxy.
pub(super) struct LockOps<'a>(pub(super) &'a Proxy);

impl LockOps<'_> {
    pub(super) async fn acquire(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let undo = Some(("release", Some(enc(&())?)));
        bool_or_timeout(self.0.call_raw("acquire", enc(&timeout)?, undo).await)
    }

    pub(super) fn acquire_blocking(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        bool_or_timeout(self.0.call_raw_blocking("acquire", enc(&timeout)?))
    }

    pub(super) async fn query<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
    ) -> Result<R, ManagerError> {
        decode(&self.0.call_raw(method, enc(&())?, None).await?)
    }

    pub(super) fn query_blocking<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
    ) -> Result<R, ManagerError> {
        decode(&self.0.call_raw_blocking(method, enc(&())?)?)
    }

    /// Releases for `owner` without waiting for the reply (a guard's drop).
    pub(super) fn post_release(&self, owner: u64) {
        self.0
            .post_raw("release", enc(&()).unwrap_or_default(), owner);
    }
}

pub(super) fn expect_acquired(acquired: bool) {
    debug_assert!(
        acquired,
        "an acquire without a timeout returns only once it holds"
    );
}

/// The methods common to [`LockProxy`], [`RLockProxy`] and
/// [`ConditionProxy`](crate::manager::ConditionProxy); `$guard` is the
/// guard type.
macro_rules! lock_methods {
    ($guard:ident) => {
        /// Takes the lock, waiting while it is held (Python's `acquire()`).
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: if the server gave the lock to a dropped future,
        /// the proxy releases it.
        ///
        /// # Errors
        ///
        /// [`ManagerError::ServerGone`] when the server is gone (or shuts
        /// down while this waits); the other errors of [`Proxy::call`].
        pub async fn acquire(&self) -> Result<(), ManagerError> {
            $crate::manager::types::lock::LockOps(&self.proxy)
                .acquire(None)
                .await
                .map($crate::manager::types::lock::expect_acquired)
        }

        /// [`acquire`](Self::acquire), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn acquire_blocking(&self) -> Result<(), ManagerError> {
            $crate::manager::types::lock::LockOps(&self.proxy)
                .acquire_blocking(None)
                .map($crate::manager::types::lock::expect_acquired)
        }

        /// Takes the lock, waiting at most `timeout`; false when it stayed
        /// held (Python's `acquire(timeout=t)`).
        ///
        /// # Cancel safety
        ///
        /// As [`acquire`](Self::acquire).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
            $crate::manager::types::lock::LockOps(&self.proxy)
                .acquire(Some(timeout))
                .await
        }

        /// [`acquire_timeout`](Self::acquire_timeout), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn acquire_timeout_blocking(&self, timeout: Duration) -> Result<bool, ManagerError> {
            $crate::manager::types::lock::LockOps(&self.proxy).acquire_blocking(Some(timeout))
        }

        /// Takes the lock if it is free now; false when it is held
        /// (Python's `acquire(blocking=False)`). One round trip, no waiting
        /// on the server.
        ///
        /// # Cancel safety
        ///
        /// As [`acquire`](Self::acquire).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn try_acquire(&self) -> Result<bool, ManagerError> {
            $crate::manager::types::lock::LockOps(&self.proxy)
                .acquire(Some(Duration::ZERO))
                .await
        }

        /// [`try_acquire`](Self::try_acquire), blocking the thread for the
        /// round trip.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn try_acquire_blocking(&self) -> Result<bool, ManagerError> {
            $crate::manager::types::lock::LockOps(&self.proxy)
                .acquire_blocking(Some(Duration::ZERO))
        }

        /// Takes the lock (as [`acquire`](Self::acquire)) and returns a
        /// guard that releases it when dropped (Python's `with lock:`).
        ///
        /// # Cancel safety
        ///
        /// As [`acquire`](Self::acquire).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn lock(&self) -> Result<$guard<'_>, ManagerError> {
            self.acquire().await?;
            Ok($guard {
                proxy: &self.proxy,
                owner: self.proxy.async_owner(),
            })
        }

        /// [`lock`](Self::lock), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn lock_blocking(&self) -> Result<$guard<'_>, ManagerError> {
            self.acquire_blocking()?;
            Ok($guard {
                proxy: &self.proxy,
                owner: Proxy::blocking_owner(),
            })
        }
    };
}
pub(super) use lock_methods;

/// A guard type that releases its lock (posting `release` for the owner
/// that took it) when dropped.
macro_rules! lock_guard {
    ($(#[$doc:meta])* $guard:ident) => {
        $(#[$doc])*
        #[must_use = "the lock is released as soon as the guard is dropped"]
        pub struct $guard<'a> {
            proxy: &'a Proxy,
            /// The owner that took the lock (the thread, or the proxy value).
            owner: u64,
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                $crate::manager::types::lock::LockOps(self.proxy).post_release(self.owner);
            }
        }

        impl std::fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("proxy", self.proxy)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(super) use lock_guard;

/// A proxy to a lock served by a manager: Python's `manager.Lock()`.
///
/// The holder is the **process** (its connection to the manager), not a
/// thread or a task: any thread or task of the process that holds it may
/// [`release`](LockProxy::release) it, and another acquire from the same
/// process waits, as for any other process (the lock is not re-entrant; see
/// [`RLockProxy`]). When the holder's process exits or dies, the server
/// releases the lock and the next waiter takes it.
///
/// Python's `acquire()`, `acquire(timeout=t)`, `acquire(blocking=False)`,
/// `release()` and `with lock:` are [`acquire`](LockProxy::acquire),
/// [`acquire_timeout`](LockProxy::acquire_timeout),
/// [`try_acquire`](LockProxy::try_acquire), [`release`](LockProxy::release)
/// and [`lock`](LockProxy::lock) (a guard); `locked()` is
/// [`is_locked`](LockProxy::is_locked).
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let lock = manager.lock_blocking()?;
/// {
///     let _guard = lock.lock_blocking()?;
///     assert!(lock.is_locked_blocking()?);
/// }
/// assert!(lock.try_acquire_blocking()?);
/// lock.release_blocking()?;
/// # Ok(()) }
/// ```
pub struct LockProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { LockProxy<>, LOCK }

lock_guard! {
    /// Holds a [`LockProxy`] and releases it when dropped, without waiting
    /// for the server's answer (the release reaches the server before any
    /// later call of this process). Made by [`LockProxy::lock`].
    LockProxyGuard
}

impl LockProxy {
    lock_methods!(LockProxyGuard);

    /// Releases the lock (Python's `release()`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::NOT_OWNER`] when this process does not hold it;
    /// otherwise as [`acquire`](Self::acquire).
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

    /// Whether some process holds the lock (Python's `locked()`).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub async fn is_locked(&self) -> Result<bool, ManagerError> {
        LockOps(&self.proxy).query("is_locked").await
    }

    /// [`is_locked`](Self::is_locked), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn is_locked_blocking(&self) -> Result<bool, ManagerError> {
        LockOps(&self.proxy).query_blocking("is_locked")
    }
}

/// A proxy to a re-entrant lock served by a manager: Python's
/// `manager.RLock()`.
///
/// The owner is the caller: the thread for `_blocking` methods, the proxy
/// value for async ones (each clone of a proxy is a distinct owner; see
/// [`Proxy`]'s owners). The owner may take it again; it is free once
/// released as many times as taken. Only the owner may release it. When
/// the owner's process exits or dies, the server frees it.
///
/// Python's `acquire()`, `acquire(timeout=t)`, `acquire(blocking=False)`,
/// `release()` and `with rlock:` are [`acquire`](RLockProxy::acquire),
/// [`acquire_timeout`](RLockProxy::acquire_timeout),
/// [`try_acquire`](RLockProxy::try_acquire),
/// [`release`](RLockProxy::release) and [`lock`](RLockProxy::lock) (a
/// guard).
pub struct RLockProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { RLockProxy<>, RLOCK }

lock_guard! {
    /// Holds one level of an [`RLockProxy`] and releases it when dropped,
    /// for the owner that took it, without waiting for the server's answer.
    /// Made by [`RLockProxy::lock`].
    RLockProxyGuard
}

impl RLockProxy {
    lock_methods!(RLockProxyGuard);

    /// Releases one level (Python's `release()`).
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

    /// Whether some owner holds the lock.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub async fn is_locked(&self) -> Result<bool, ManagerError> {
        LockOps(&self.proxy).query("is_locked").await
    }

    /// [`is_locked`](Self::is_locked), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn is_locked_blocking(&self) -> Result<bool, ManagerError> {
        LockOps(&self.proxy).query_blocking("is_locked")
    }
}

impl Manager {
    /// Creates a lock on the server (Python's `manager.Lock()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn lock(&self) -> Result<LockProxy, ManagerError> {
        LockProxy::from_proxy(self.create(LOCK, &()).await?)
    }

    /// [`lock`](Manager::lock), blocking.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn lock_blocking(&self) -> Result<LockProxy, ManagerError> {
        LockProxy::from_proxy(self.create_blocking(LOCK, &())?)
    }

    /// Creates a re-entrant lock on the server (Python's `manager.RLock()`).
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub async fn rlock(&self) -> Result<RLockProxy, ManagerError> {
        RLockProxy::from_proxy(self.create(RLOCK, &()).await?)
    }

    /// [`rlock`](Manager::rlock), blocking.
    ///
    /// # Errors
    ///
    /// As [`lock`](Manager::lock).
    pub fn rlock_blocking(&self) -> Result<RLockProxy, ManagerError> {
        RLockProxy::from_proxy(self.create_blocking(RLOCK, &())?)
    }
}
