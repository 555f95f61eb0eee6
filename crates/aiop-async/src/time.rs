//! Deadlines for async waits, on async-io's timers (no executor needed).

use std::future::Future;
use std::time::{Duration, Instant};

/// The deadline `timeout` from now (`None`: too far to represent).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Runs `fut` until `deadline`; `None` when the deadline came first (and
/// `fut` was dropped).
pub(crate) async fn until<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match deadline {
        None => Some(fut.await),
        Some(at) => {
            futures_lite::future::or(async { Some(fut.await) }, async {
                async_io::Timer::at(at).await;
                None
            })
            .await
        }
    }
}
