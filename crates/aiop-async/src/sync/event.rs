//! Async `Event`.

use std::io;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::time::{deadline_after, until};
use crate::watcher;

/// A flag shared between processes, awaited by tasks: Python's
/// `multiprocessing.Event`, aioprocessing's `AioEvent`.
///
/// The same shared object as [`aiop_core::sync::Event`] (see
/// [`as_blocking`](Event::as_blocking)); a handle travels to spawned
/// children in their arguments.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let ev = aiop_async::sync::Event::new()?;
/// ev.set();
/// ev.wait().await;
/// assert!(ev.is_set());
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event {
    inner: aiop_core::sync::Event,
}

impl Event {
    /// Creates a cleared event.
    ///
    /// # Errors
    ///
    /// When shared memory cannot be allocated.
    pub fn new() -> io::Result<Event> {
        aiop_core::sync::Event::new().map(Event::from)
    }

    /// Creates a cleared event that other programs can open by `name`.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Event::create_named`].
    pub fn create_named(name: &str) -> io::Result<Event> {
        aiop_core::sync::Event::create_named(name).map(Event::from)
    }

    /// Opens an event another program created by name.
    ///
    /// # Errors
    ///
    /// As [`aiop_core::sync::Event::open_named`].
    pub fn open_named(name: &str) -> io::Result<Event> {
        aiop_core::sync::Event::open_named(name).map(Event::from)
    }

    /// Sets the flag and wakes every waiter, task or thread, in any process.
    pub fn set(&self) {
        self.inner.set();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Waits until the flag is set.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: waiting changes nothing, so dropping the future loses
    /// nothing.
    #[doc(alias = "coro_wait")]
    pub async fn wait(&self) {
        watcher::wait_for(|| self.inner.is_set().then_some(()), || self.inner.watch()).await
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`wait`](Event::wait).
    pub async fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(deadline_after(timeout)).await
    }

    /// Waits until `deadline` at the latest; returns whether the flag is set.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`wait`](Event::wait).
    pub async fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_until(Some(deadline)).await
    }

    async fn wait_until(&self, deadline: Option<Instant>) -> bool {
        until(deadline, self.wait()).await.is_some() || self.is_set()
    }

    /// Waits on the calling thread until the flag is set.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    #[doc(alias = "wait")]
    pub fn wait_blocking(&self) {
        self.inner.wait();
    }

    /// Waits on the calling thread at most `timeout`; returns whether the
    /// flag is set.
    ///
    /// # Blocking
    ///
    /// Blocks the thread: do not call it from async code.
    pub fn wait_timeout_blocking(&self, timeout: Duration) -> bool {
        self.inner.wait_timeout(timeout)
    }

    /// The blocking twin of this event (the same shared object).
    pub fn as_blocking(&self) -> &aiop_core::sync::Event {
        &self.inner
    }

    /// Whether both handles refer to the same event.
    pub fn same_as(&self, other: &Event) -> bool {
        self.inner.same_as(&other.inner)
    }
}

impl From<aiop_core::sync::Event> for Event {
    fn from(inner: aiop_core::sync::Event) -> Event {
        Event { inner }
    }
}

impl From<Event> for aiop_core::sync::Event {
    fn from(e: Event) -> aiop_core::sync::Event {
        e.inner
    }
}
