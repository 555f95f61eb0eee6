//! Async `Semaphore` and `BoundedSemaphore`.

use std::io;
use std::time::{Duration, Instant};

use aiop_core::sync::OverReleaseError;
use serde::{Deserialize, Serialize};

use crate::time::{deadline_after, until};
use crate::watcher;

macro_rules! semaphore_api {
    ($ty:ident) => {
        impl $ty {
            /// Creates a semaphore with `value` permits.
            ///
            /// # Errors
            ///
            /// When shared memory cannot be allocated.
            pub fn new(value: u32) -> io::Result<$ty> {
                aiop_core::sync::$ty::new(value).map($ty::from)
            }

            /// Creates a semaphore with `value` permits that other programs
            /// can open by `name`.
            ///
            /// # Errors
            ///
            /// As [`aiop_core::sync::Lock::create_named`].
            pub fn create_named(name: &str, value: u32) -> io::Result<$ty> {
                aiop_core::sync::$ty::create_named(name, value).map($ty::from)
            }

            /// Opens a semaphore another program created by name.
            ///
            /// # Errors
            ///
            /// `NotFound` when no object has that name, `InvalidData` when
            /// it is not of this type.
            pub fn open_named(name: &str) -> io::Result<$ty> {
                aiop_core::sync::$ty::open_named(name).map($ty::from)
            }

            /// Takes a permit, waiting as long as it takes.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe: the permit is taken only in the step that
            /// completes the future, so dropping the future before then
            /// consumes no permit.
            #[doc(alias = "coro_acquire")]
            pub async fn acquire(&self) {
                watcher::wait_for(
                    || self.inner.try_acquire().then_some(()),
                    || self.inner.watch(),
                )
                .await
            }

            /// Takes a permit if one is free; never waits.
            pub fn try_acquire(&self) -> bool {
                self.inner.try_acquire()
            }

            /// Takes a permit, waiting at most `timeout`; `false` when the
            /// time ran out (no permit taken).
            ///
            /// # Cancel safety
            ///
            /// Cancel safe, as [`acquire`]($ty::acquire).
            #[must_use = "`false` means no permit was taken"]
            #[doc(alias = "coro_acquire")]
            pub async fn acquire_timeout(&self, timeout: Duration) -> bool {
                self.acquire_until(deadline_after(timeout)).await
            }

            /// Takes a permit, waiting until `deadline` at the latest.
            ///
            /// # Cancel safety
            ///
            /// Cancel safe, as [`acquire`]($ty::acquire).
            #[must_use = "`false` means no permit was taken"]
            pub async fn acquire_deadline(&self, deadline: Instant) -> bool {
                self.acquire_until(Some(deadline)).await
            }

            async fn acquire_until(&self, deadline: Option<Instant>) -> bool {
                until(deadline, self.acquire()).await.is_some() || self.inner.try_acquire()
            }

            /// Takes a permit on the calling thread, waiting as long as it
            /// takes.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            #[doc(alias = "acquire")]
            pub fn acquire_blocking(&self) {
                self.inner.acquire()
            }

            /// Takes a permit on the calling thread, waiting at most
            /// `timeout`; `false` when the time ran out.
            ///
            /// # Blocking
            ///
            /// Blocks the thread: do not call it from async code.
            #[doc(alias = "acquire")]
            pub fn acquire_timeout_blocking(&self, timeout: Duration) -> bool {
                self.inner.acquire_timeout(timeout)
            }

            /// The number of free permits (a snapshot): Python's `get_value()`.
            pub fn get_value(&self) -> u32 {
                self.inner.get_value()
            }

            /// The blocking twin of this semaphore (the same shared object).
            pub fn as_blocking(&self) -> &aiop_core::sync::$ty {
                &self.inner
            }

            /// Whether both handles refer to the same semaphore.
            pub fn same_as(&self, other: &$ty) -> bool {
                self.inner.same_as(&other.inner)
            }
        }

        impl From<aiop_core::sync::$ty> for $ty {
            fn from(inner: aiop_core::sync::$ty) -> $ty {
                $ty { inner }
            }
        }

        impl From<$ty> for aiop_core::sync::$ty {
            fn from(s: $ty) -> aiop_core::sync::$ty {
                s.inner
            }
        }
    };
}

/// A counting semaphore shared between processes, acquired by tasks:
/// Python's `multiprocessing.Semaphore`, aioprocessing's `AioSemaphore`.
///
/// The same shared object as [`aiop_core::sync::Semaphore`] (see
/// [`as_blocking`](Semaphore::as_blocking)). Permits have no owner: any
/// task, thread or process may release.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let sem = aiop_async::sync::Semaphore::new(1)?;
/// sem.acquire().await;
/// assert!(!sem.try_acquire());
/// sem.release();
/// assert_eq!(sem.get_value(), 1);
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Semaphore {
    inner: aiop_core::sync::Semaphore,
}

semaphore_api!(Semaphore);

impl Semaphore {
    /// Gives back a permit, waking one waiter (task or thread, in any
    /// process).
    ///
    /// # Panics
    ///
    /// If the count would pass `u32::MAX`.
    pub fn release(&self) {
        self.inner.release();
    }

    /// Gives back `n` permits (Python's `release(n)`).
    ///
    /// # Panics
    ///
    /// If the count would pass `u32::MAX`.
    pub fn release_n(&self, n: u32) {
        self.inner.release_n(n);
    }
}

/// A semaphore that refuses to be released past its initial value:
/// Python's `multiprocessing.BoundedSemaphore`, aioprocessing's
/// `AioBoundedSemaphore`.
///
/// # Examples
///
/// ```
/// # futures_lite::future::block_on(async {
/// let sem = aiop_async::sync::BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err());
/// sem.acquire().await;
/// assert!(sem.release().is_ok());
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedSemaphore {
    inner: aiop_core::sync::BoundedSemaphore,
}

semaphore_api!(BoundedSemaphore);

impl BoundedSemaphore {
    /// Gives back a permit.
    ///
    /// # Errors
    ///
    /// [`OverReleaseError`] when the count is already at its initial value.
    pub fn release(&self) -> Result<(), OverReleaseError> {
        self.inner.release()
    }

    /// Gives back `n` permits, all or none.
    ///
    /// # Errors
    ///
    /// [`OverReleaseError`] when that would pass the initial value.
    pub fn release_n(&self, n: u32) -> Result<(), OverReleaseError> {
        self.inner.release_n(n)
    }

    /// The initial value, which the count never passes.
    pub fn bound(&self) -> u32 {
        self.inner.bound()
    }
}
