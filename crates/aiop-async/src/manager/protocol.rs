//! The manager's wire: what a client sends and what the server answers.
//!
//! Every message is one frame of [`aiop_core::connection`], encoded with
//! postcard. Arguments and results are themselves postcard bytes, opaque to
//! the framing, so the server never needs the proxies' Rust types.

use serde::{Deserialize, Serialize};

use super::error::RemoteError;

/// A client's message. `id` 0 asks for no reply (fire and forget); any
/// other `id` gets exactly one [`Reply`] with the same `id`, unless the
/// connection ends first.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Makes a served object of the registered type `kind` from `args`; the
    /// reply is its id (postcard `u64`), referenced once by this connection.
    Create {
        id: u64,
        kind: String,
        args: Vec<u8>,
    },
    /// Calls `method` of `object`. `owner` names the caller for
    /// ownership-tracking objects (the thread or the proxy value).
    Call {
        id: u64,
        object: u64,
        method: String,
        owner: u64,
        args: Vec<u8>,
    },
    /// Interrupts the waiting call `id` of this connection, if it still
    /// waits; its reply (an error, or a result that raced the cancel) still
    /// comes.
    Cancel { id: u64 },
    /// Drops one reference of this connection to `object`.
    DecRef { object: u64 },
    /// Moves one reference to `object` into transit under `token`, for a
    /// proxy being serialized; [`Request::Adopt`] takes it over.
    Lend { object: u64, token: u128 },
    /// Takes one reference to `object` for this connection, from the transit
    /// reference `token` if it is (or later arrives) there.
    Adopt { object: u64, token: u128 },
    /// Binds `name` to `object` (holding a reference of the server's own),
    /// or removes the name (`None`); the reply is `bool`: whether the name
    /// was bound before.
    Publish {
        id: u64,
        name: String,
        object: Option<u64>,
    },
    /// The object bound to `name`, as postcard `Option<(u64, String)>` (id
    /// and type); a found object gains a reference of this connection.
    Lookup { id: u64, name: String },
    /// How many objects the server holds and how many clients are connected
    /// (postcard `(u64, u64)`).
    Stats { id: u64 },
    /// Stops the server: every waiting call ends with an error and every
    /// connection is closed, after this request is answered.
    Shutdown { id: u64 },
}

/// The server's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) id: u64,
    pub(crate) result: Result<Vec<u8>, RemoteError>,
}

/// Encodes `value` with postcard.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a whole postcard message; trailing bytes are an error, so a
/// mismatch of types on the two sides is caught rather than misread.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!(
            "{} bytes left over after the value: the two sides disagree on the type",
            rest.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// How long a manager connection's reader polls before it sleeps in the
/// receive. A round trip between two spinning sides on different CPUs takes
/// a few microseconds, and one that wakes a sleeping side tens of them
/// (most of it the wake-up), so a reply or request that comes within this
/// budget is caught while it is cheap; a longer wait costs the budget once.
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Threads of this process polling a manager connection now.
static SPINNERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Receives one message on a connection this thread alone receives from:
/// first polling for up to [`SPIN`] without sleeping (when this process
/// spins at all, `aiop_core::sync::spinning`, and fewer threads of it poll
/// than it has other CPUs), then inside the receive. A message that arrives
/// while the thread polls costs no wake-up of it.
pub(crate) fn spin_then_recv<T: serde::de::DeserializeOwned>(
    conn: &aiop_core::connection::Connection,
) -> Result<T, aiop_core::connection::RecvError> {
    use std::sync::atomic::Ordering;
    if aiop_core::sync::spinning() {
        // Looked up once: the CPU count reads the affinity and cgroup
        // limits, which takes longer than a round trip.
        static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let limit = *LIMIT.get_or_init(|| aiop_core::process::cpu_count().saturating_sub(1).max(1));
        let got = (SPINNERS.fetch_add(1, Ordering::Relaxed) < limit).then(|| poll_for::<T>(conn));
        SPINNERS.fetch_sub(1, Ordering::Relaxed);
        if let Some(Some(got)) = got {
            return got;
        }
    }
    conn.recv_exclusive::<T>()
}

/// Tries to receive for up to [`SPIN`]; `None` when nothing came.
fn poll_for<T: serde::de::DeserializeOwned>(
    conn: &aiop_core::connection::Connection,
) -> Option<Result<T, aiop_core::connection::RecvError>> {
    let start = std::time::Instant::now();
    loop {
        match conn.try_recv::<T>() {
            Err(aiop_core::connection::RecvError::Empty) => {}
            other => return Some(other),
        }
        if start.elapsed() >= SPIN {
            return None;
        }
        std::hint::spin_loop();
    }
}
