//! `EventProxy`: a flag served by the manager that callers wait for
//! (Python's `manager.Event()`).

use std::marker::PhantomData;
use std::time::Duration;

use super::{decode, enc};
use crate::manager::proxy::typed_proxy;
use crate::manager::{Call, CallError, Manager, ManagerError, Monitor, Proxy, Registry, Served};

const KIND: &str = "aiop.Event";

pub(super) fn register(r: &mut Registry) {
    r.register(KIND, |(): ()| Ok(Event::default()));
}

/// The served event.
struct Event {
    m: Monitor<EventState>,
}

impl Default for Event {
    fn default() -> Event {
        Event {
            m: Monitor::new(EventState {
                set: false,
                sets: 0,
            }),
        }
    }
}

struct EventState {
    set: bool,
    /// How many times it was set: a waiter that saw it clear returns once
    /// this changes, even if it was cleared again before the waiter woke
    /// (as Python's `Event.wait` does).
    sets: u64,
}

impl Served for Event {
    fn call(&self, call: &Call<'_>) -> Result<Vec<u8>, CallError> {
        let mut s = self.m.lock();
        match call.method() {
            "set" => {
                if !s.set {
                    s.set = true;
                    s.sets = s.sets.wrapping_add(1);
                    drop(s);
                    self.m.notify_all();
                }
                call.reply(&())
            }
            "clear" => {
                s.set = false;
                drop(s);
                self.m.notify_all();
                call.reply(&())
            }
            "is_set" => call.reply(&s.set),
            "wait" => {
                let timeout: Option<Duration> = call.args()?;
                let deadline = call.deadline(timeout);
                let seen = s.sets;
                let (s, ok) = call.wait_until(&self.m, s, deadline, |s| s.set || s.sets != seen)?;
                drop(s);
                call.reply(&ok)
            }
            _ => Err(call.no_such_method()),
        }
    }
}

/// A proxy to an event served by a manager: Python's `manager.Event()`.
///
/// A flag, clear at first, that [`set`](EventProxy::set) raises and
/// [`clear`](EventProxy::clear) lowers; [`wait`](EventProxy::wait) returns
/// once it is set. A waiter that saw it clear is woken by a `set` even if a
/// `clear` follows before it runs. Python's `set()`, `clear()`, `is_set()`,
/// `wait()` and `wait(timeout)` are [`set`](EventProxy::set),
/// [`clear`](EventProxy::clear), [`is_set`](EventProxy::is_set),
/// [`wait`](EventProxy::wait) and [`wait_timeout`](EventProxy::wait_timeout).
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), aiop_async::manager::ManagerError> {
/// let manager = aiop_async::manager::Manager::start()?;
/// let event = manager.event_blocking()?;
/// assert!(!event.wait_timeout_blocking(std::time::Duration::from_millis(10))?);
/// event.set_blocking()?;
/// event.wait_blocking()?;
/// # Ok(()) }
/// ```
pub struct EventProxy {
    proxy: Proxy,
    _types: PhantomData<()>,
}

typed_proxy! { EventProxy<>, KIND }

impl EventProxy {
    async fn call<R: serde::de::DeserializeOwned>(&self, method: &str) -> Result<R, ManagerError> {
        decode(&self.proxy.call_raw(method, enc(&())?, None).await?)
    }

    fn call_blocking<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
    ) -> Result<R, ManagerError> {
        decode(&self.proxy.call_raw_blocking(method, enc(&())?)?)
    }

    /// Sets the flag and wakes every waiter (Python's `set()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the other
    /// errors of [`Proxy::call`].
    pub async fn set(&self) -> Result<(), ManagerError> {
        self.call("set").await
    }

    /// [`set`](Self::set), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn set_blocking(&self) -> Result<(), ManagerError> {
        self.call_blocking("set")
    }

    /// Clears the flag (Python's `clear()`).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn clear(&self) -> Result<(), ManagerError> {
        self.call("clear").await
    }

    /// [`clear`](Self::clear), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn clear_blocking(&self) -> Result<(), ManagerError> {
        self.call_blocking("clear")
    }

    /// Whether the flag is set (Python's `is_set()`).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn is_set(&self) -> Result<bool, ManagerError> {
        self.call("is_set").await
    }

    /// [`is_set`](Self::is_set), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn is_set_blocking(&self) -> Result<bool, ManagerError> {
        self.call_blocking("is_set")
    }

    /// Waits until the flag is set (Python's `wait()`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a wait takes nothing.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); [`RemoteError::SHUTTING_DOWN`](crate::manager::RemoteError::SHUTTING_DOWN)
    /// when the server shuts down while this waits.
    pub async fn wait(&self) -> Result<(), ManagerError> {
        let r = self
            .proxy
            .call_raw("wait", enc(&None::<Duration>)?, None)
            .await?;
        decode::<bool>(&r).map(drop)
    }

    /// [`wait`](Self::wait), blocking the thread.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_blocking(&self) -> Result<(), ManagerError> {
        let r = self
            .proxy
            .call_raw_blocking("wait", enc(&None::<Duration>)?)?;
        decode::<bool>(&r).map(drop)
    }

    /// Waits at most `timeout` for the flag; false when it stayed clear
    /// (Python's `wait(timeout)`).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
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
    /// As [`wait`](Self::wait).
    pub fn wait_timeout_blocking(&self, timeout: Duration) -> Result<bool, ManagerError> {
        decode(&self.proxy.call_raw_blocking("wait", enc(&Some(timeout))?)?)
    }
}

impl Manager {
    /// Creates an event, clear, on the server (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub async fn event(&self) -> Result<EventProxy, ManagerError> {
        EventProxy::from_proxy(self.create(KIND, &()).await?)
    }

    /// [`event`](Manager::event), blocking.
    ///
    /// # Errors
    ///
    /// As [`event`](Manager::event).
    pub fn event_blocking(&self) -> Result<EventProxy, ManagerError> {
        EventProxy::from_proxy(self.create_blocking(KIND, &())?)
    }
}
