//! `SemaphoreProxy` and `BoundedSemaphoreProxy`: counting semaphores served
//! by the manager (Python's `manager.Semaphore(n)` and
//! `manager.BoundedSemaphore(n)`).

use std::marker::PhantomData;
use std::time::Duration;

use super::lock::expect_acquired;
use super::{bool_or_timeout, timed_out};
use super::{decode, enc};
use crate::manager::proxy::typed_proxy;
use crate::manager::{
    Call, CallError, Manager, ManagerError, Monitor, Proxy, Registry, RemoteError, Served,
};

const SEMAPHORE: &str = "aiop.Semaphore";
const BOUNDED: &str = "aiop.BoundedSemaphore";

pub(super) fn register(r: &mut Registry) {
    r.register(SEMAPHORE, |value: u32| Ok(Semaphore::new(value, None)));
    r.register(BOUNDED, |value: u32| Ok(Semaphore::new(value, Some(value))));
}

/// The served semaphore: its count, and for a bounded one the count it may
/// not exceed (its initial value).
struct Semaphore {
    m: Monitor<u32>,
    bound: Option<u32>,
}

impl Semaphore {
    fn new(value: u32, bound: Option<u32>) -> Semaphore {
        Semaphore {
            m: Monitor::new(value),
            bound,
        }
    }
}

impl Served for Semaphore {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let value = self.m.lock();
        match call.method() {
            "acquire" => {
                let timeout: Option<Duration> = call.args()?;
                let deadline = call.deadline(timeout);
                let (mut value, ok) = call.wait_until(&self.m, value, deadline, |v| *v > 0)?;
                if !ok {
                    return Err(timed_out("the semaphore stayed at zero"));
                }
                *value -= 1;
                drop(value);
                self.m.notify_all();
                call.reply(&())
            }
            "release" => {
                let n: u32 = call.args()?;
                let mut value = value;
                if n == 0 {
                    return Err(RemoteError::new(
                        RemoteError::INVALID_VALUE,
                        "a semaphore is released by one or more",
                    )
                    .into());
                }
                let released = value
                    .checked_add(n)
                    .filter(|v| self.bound.is_none_or(|b| *v <= b));
                let Some(released) = released else {
                    return Err(RemoteError::new(
                        RemoteError::INVALID_VALUE,
                        match self.bound {
                            Some(b) => format!(
                                "releasing {n} would take the semaphore from {} past its bound {b}",
                                *value
                            ),
                            None => format!(
                                "releasing {n} would take the semaphore from {} past {}",
                                *value,
                                u32::MAX
                            ),
                        },
                    )
                    .into());
                };
                *value = released;
                drop(value);
                self.m.notify_all();
                call.reply(&())
            }
            "get_value" => call.reply(&*value),
            _ => Err(call.no_such_method()),
        }
    }
}

/// The methods of both semaphore proxies, on the untyped proxy.
struct Ops<'a>(&'a Proxy);

impl Ops<'_> {
    async fn acquire(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        let undo = Some(("release", Some(enc(&1u32)?)));
        bool_or_timeout(self.0.call_raw("acquire", enc(&timeout)?, undo).await)
    }

    fn acquire_blocking(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        bool_or_timeout(self.0.call_raw_blocking("acquire", enc(&timeout)?))
    }

    async fn release(&self, n: u32) -> Result<(), ManagerError> {
        decode(&self.0.call_raw("release", enc(&n)?, None).await?)
    }

    fn release_blocking(&self, n: u32) -> Result<(), ManagerError> {
        decode(&self.0.call_raw_blocking("release", enc(&n)?)?)
    }

    async fn get_value(&self) -> Result<u32, ManagerError> {
        decode(&self.0.call_raw("get_value", enc(&())?, None).await?)
    }

    fn get_value_blocking(&self) -> Result<u32, ManagerError> {
        decode(&self.0.call_raw_blocking("get_value", enc(&())?)?)
    }
}

macro_rules! semaphore_methods {
    () => {
        /// Takes one permit, waiting while there is none (Python's
        /// `acquire()`).
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: if the server gave a permit to a dropped future,
        /// the proxy gives it back.
        ///
        /// # Errors
        ///
        /// [`ManagerError::ServerGone`] when the server is gone (or shuts
        /// down while this waits); the other errors of [`Proxy::call`].
        pub async fn acquire(&self) -> Result<(), ManagerError> {
            Ops(&self.proxy).acquire(None).await.map(expect_acquired)
        }

        /// [`acquire`](Self::acquire), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn acquire_blocking(&self) -> Result<(), ManagerError> {
            Ops(&self.proxy).acquire_blocking(None).map(expect_acquired)
        }

        /// Takes one permit, waiting at most `timeout`; false when none
        /// came (Python's `acquire(timeout=t)`).
        ///
        /// # Cancel safety
        ///
        /// As [`acquire`](Self::acquire).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
            Ops(&self.proxy).acquire(Some(timeout)).await
        }

        /// [`acquire_timeout`](Self::acquire_timeout), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn acquire_timeout_blocking(&self, timeout: Duration) -> Result<bool, ManagerError> {
            Ops(&self.proxy).acquire_blocking(Some(timeout))
        }

        /// Takes one permit if there is one now; false otherwise (Python's
        /// `acquire(blocking=False)`). One round trip, no waiting on the
        /// server.
        ///
        /// # Cancel safety
        ///
        /// As [`acquire`](Self::acquire).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn try_acquire(&self) -> Result<bool, ManagerError> {
            Ops(&self.proxy).acquire(Some(Duration::ZERO)).await
        }

        /// [`try_acquire`](Self::try_acquire), blocking the thread for the
        /// round trip.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn try_acquire_blocking(&self) -> Result<bool, ManagerError> {
            Ops(&self.proxy).acquire_blocking(Some(Duration::ZERO))
        }

        /// The number of permits now (Python's `get_value()`).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub async fn get_value(&self) -> Result<u32, ManagerError> {
            Ops(&self.proxy).get_value().await
        }

        /// [`get_value`](Self::get_value), blocking the thread.
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn get_value_blocking(&self) -> Result<u32, ManagerError> {
            Ops(&self.proxy).get_value_blocking()
        }
    };
}

/// A proxy to a counting semaphore served by a manager: Python's
/// `manager.Semaphore(value)`.
///
/// Any process may release, whether it acquired or not. Permits taken by a
/// process that exits or dies are **not** given back: a semaphore may
/// count things handed from one process to another (items produced and
/// consumed), which the server cannot tell apart from permits held.
///
/// Python's `acquire()`, `acquire(timeout=t)`, `acquire(blocking=False)`,
/// `release(n)` and `get_value()` are [`acquire`](SemaphoreProxy::acquire),
/// [`acquire_timeout`](SemaphoreProxy::acquire_timeout),
/// [`try_acquire`](SemaphoreProxy::try_acquire),
/// [`release`](SemaphoreProxy::release) / [`release_n`](SemaphoreProxy::release_n)
/// and [`get_value`](SemaphoreProxy::get_value).
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let sem = manager.semaphore_blocking(1)?;
/// sem.acquire_blocking()?;
/// assert!(!sem.try_acquire_blocking()?);
/// sem.release_blocking()?;
/// assert_eq!(sem.get_value_blocking()?, 1);
/// # Ok(()) }
/// ```
pub struct SemaphoreProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { SemaphoreProxy<>, SEMAPHORE }

impl SemaphoreProxy {
    semaphore_methods!();

    /// Gives back one permit, waking a waiter (Python's `release()`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when the count would pass
    /// `u32::MAX`; otherwise as [`acquire`](Self::acquire).
    pub async fn release(&self) -> Result<(), ManagerError> {
        Ops(&self.proxy).release(1).await
    }

    /// [`release`](Self::release), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release).
    pub fn release_blocking(&self) -> Result<(), ManagerError> {
        Ops(&self.proxy).release_blocking(1)
    }

    /// Gives back `n` permits at once (Python's `release(n)`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when `n` is 0 or the count would
    /// pass `u32::MAX` (nothing changes then); otherwise as
    /// [`acquire`](Self::acquire).
    pub async fn release_n(&self, n: u32) -> Result<(), ManagerError> {
        Ops(&self.proxy).release(n).await
    }

    /// [`release_n`](Self::release_n), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`release_n`](Self::release_n).
    pub fn release_n_blocking(&self, n: u32) -> Result<(), ManagerError> {
        Ops(&self.proxy).release_blocking(n)
    }
}

/// A proxy to a semaphore that may not be released past its initial value,
/// served by a manager: Python's `manager.BoundedSemaphore(value)`.
///
/// As [`SemaphoreProxy`] (permits of a process that dies are not given
/// back either), except that a release that would take the count past the
/// initial value fails with [`RemoteError::INVALID_VALUE`] and changes
/// nothing (Python's `ValueError`). The Python names map as for
/// [`SemaphoreProxy`].
pub struct BoundedSemaphoreProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { BoundedSemaphoreProxy<>, BOUNDED }

impl BoundedSemaphoreProxy {
    semaphore_methods!();

    /// Gives back one permit, waking a waiter (Python's `release()`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when the count is at its initial
    /// value already (nothing changes then); otherwise as
    /// [`acquire`](Self::acquire).
    pub async fn release(&self) -> Result<(), ManagerError> {
        Ops(&self.proxy).release(1).await
    }

    /// [`release`](Self::release), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`release`](Self::release).
    pub fn release_blocking(&self) -> Result<(), ManagerError> {
        Ops(&self.proxy).release_blocking(1)
    }

    /// Gives back `n` permits at once (Python's `release(n)`).
    ///
    /// # Errors
    ///
    /// [`RemoteError::INVALID_VALUE`] when `n` is 0 or the count would
    /// pass its initial value (nothing changes then); otherwise as
    /// [`acquire`](Self::acquire).
    pub async fn release_n(&self, n: u32) -> Result<(), ManagerError> {
        Ops(&self.proxy).release(n).await
    }

    /// [`release_n`](Self::release_n), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`release_n`](Self::release_n).
    pub fn release_n_blocking(&self, n: u32) -> Result<(), ManagerError> {
        Ops(&self.proxy).release_blocking(n)
    }
}

impl Manager {
    /// Creates a semaphore holding `value` permits on the server (Python's
    /// `manager.Semaphore(value)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn semaphore(&self, value: u32) -> Result<SemaphoreProxy, ManagerError> {
        SemaphoreProxy::from_proxy(self.create(SEMAPHORE, &value).await?)
    }

    /// [`semaphore`](Manager::semaphore), blocking.
    ///
    /// # Errors
    ///
    /// As [`semaphore`](Manager::semaphore).
    pub fn semaphore_blocking(&self, value: u32) -> Result<SemaphoreProxy, ManagerError> {
        SemaphoreProxy::from_proxy(self.create_blocking(SEMAPHORE, &value)?)
    }

    /// Creates a semaphore holding `value` permits, and never more, on the
    /// server (Python's `manager.BoundedSemaphore(value)`).
    ///
    /// # Errors
    ///
    /// As [`semaphore`](Manager::semaphore).
    pub async fn bounded_semaphore(
        &self,
        value: u32,
    ) -> Result<BoundedSemaphoreProxy, ManagerError> {
        BoundedSemaphoreProxy::from_proxy(self.create(BOUNDED, &value).await?)
    }

    /// [`bounded_semaphore`](Manager::bounded_semaphore), blocking.
    ///
    /// # Errors
    ///
    /// As [`semaphore`](Manager::semaphore).
    pub fn bounded_semaphore_blocking(
        &self,
        value: u32,
    ) -> Result<BoundedSemaphoreProxy, ManagerError> {
        BoundedSemaphoreProxy::from_proxy(self.create_blocking(BOUNDED, &value)?)
    }
}
