//! The one async state machine of every queue: try, watch, try again, sleep.

use std::time::Instant;

use aiop_core::queue::{self as core, NotNow, TryGetError, TryPutError};
use aiop_core::wait::Watch;
use async_io::Timer;
use futures_lite::future;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::watcher::{self, Listen};

/// The core's non-blocking queue operations, the same on the three queues.
pub(super) trait Ring<T> {
    fn try_get_now(&self) -> Result<T, NotNow<TryGetError>>;
    fn try_put_now(&self, item: T) -> Result<(), NotNow<TryPutError<T>>>;
    fn watch_get(&self) -> Vec<Watch>;
    fn watch_put(&self) -> Vec<Watch>;
    fn spin_get(&self) -> bool;
    fn spin_put(&self) -> bool;
}

macro_rules! ring {
    ($($ty:ident),*) => {$(
        impl<T: Serialize + DeserializeOwned> Ring<T> for core::$ty<T> {
            fn try_get_now(&self) -> Result<T, NotNow<TryGetError>> {
                core::$ty::try_get_now(self)
            }
            fn try_put_now(&self, item: T) -> Result<(), NotNow<TryPutError<T>>> {
                core::$ty::try_put_now(self, item)
            }
            fn watch_get(&self) -> Vec<Watch> {
                core::$ty::watch_get(self)
            }
            fn watch_put(&self) -> Vec<Watch> {
                core::$ty::watch_put(self)
            }
            fn spin_get(&self) -> bool {
                core::$ty::spin_get(self)
            }
            fn spin_put(&self) -> bool {
                core::$ty::spin_put(self)
            }
        }
    )*};
}

ring!(Queue, SimpleQueue, JoinableQueue);

/// Waits for `listen`, or for `timer` when there is one; `false` when the
/// timer fired first.
pub(super) async fn sleep(listen: Listen, timer: Option<&mut Timer>) -> bool {
    match timer {
        None => {
            listen.await;
            true
        }
        Some(t) => {
            future::or(
                async {
                    listen.await;
                    true
                },
                async {
                    t.await;
                    false
                },
            )
            .await
        }
    }
}

/// Takes the front item, waiting until `deadline` (`None`: as long as it
/// takes). Only `try_get_now` removes an item, and it runs to its end
/// within one poll, so dropping this future at an `.await` removes nothing.
pub(super) async fn get<T, Q: Ring<T>>(q: &Q, deadline: Option<Instant>) -> Result<T, TryGetError> {
    let mut timer = deadline.map(Timer::at);
    let mut spun = false;
    loop {
        match q.try_get_now() {
            Err(e) if e.error.is_empty() => {}
            r => return r.map_err(|e| e.error),
        }
        // Once per call, the blocking waiter's brief spin (a few µs, off
        // where spinning is off): a round trip with a peer that answers at
        // once then costs no watcher wake-up.
        if !std::mem::replace(&mut spun, true) && q.spin_get() {
            continue;
        }
        // The epoch word (and the consumers' lock word if it is held) as
        // they are now; registering announces us, so that every later
        // commit, close or release wakes the watcher.
        let watches = q.watch_get();
        let lock_watched = watches.len() > 1;
        let listen = watcher::listen(watches);
        // Try again: what happened before the announcement is seen here.
        match q.try_get_now() {
            Err(e) if e.error.is_empty() => {
                if e.busy && !lock_watched {
                    // Another consumer took the lock after we looked at it:
                    // its release would not wake us. Look again.
                    drop(listen);
                    future::yield_now().await;
                    continue;
                }
            }
            r => return r.map_err(|e| e.error),
        }
        if !sleep(listen, timer.as_mut()).await {
            return q.try_get_now().map_err(|e| e.error);
        }
    }
}

/// Puts `item`, waiting until `deadline` (`None`: as long as it takes).
/// The item stays in this future until a `try_put_now` enqueues it whole
/// (within one poll) or gives it back.
pub(super) async fn put<T, Q: Ring<T>>(
    q: &Q,
    mut item: T,
    deadline: Option<Instant>,
) -> Result<(), TryPutError<T>> {
    let mut timer = deadline.map(Timer::at);
    let mut spun = false;
    loop {
        match q.try_put_now(item) {
            Err(NotNow {
                error: TryPutError::Full(back),
                ..
            }) => item = back,
            r => return r.map_err(|e| e.error),
        }
        if !std::mem::replace(&mut spun, true) && q.spin_put() {
            continue;
        }
        let watches = q.watch_put();
        let lock_watched = watches.len() > 1;
        let listen = watcher::listen(watches);
        match q.try_put_now(item) {
            Err(NotNow {
                error: TryPutError::Full(back),
                busy,
            }) => {
                item = back;
                if busy && !lock_watched {
                    drop(listen);
                    future::yield_now().await;
                    continue;
                }
            }
            r => return r.map_err(|e| e.error),
        }
        if !sleep(listen, timer.as_mut()).await {
            return q.try_put_now(item).map_err(|e| e.error);
        }
    }
}
