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
