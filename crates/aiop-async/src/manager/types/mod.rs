//! The built-in served types and their proxies.
//!
//! Each module holds one family: the served object (private), its proxy,
//! and the [`Manager`](super::Manager) methods that create it.

mod barrier;
mod condition;
mod dict;
mod event;
mod list;
mod lock;
mod namespace;
mod queue;
mod semaphore;
mod value;

pub use barrier::*;
pub use condition::*;
pub use dict::*;
pub use event::*;
pub use list::*;
pub use lock::*;
pub use namespace::*;
pub use queue::*;
pub use semaphore::*;
pub use value::*;

use super::Registry;

pub(crate) fn register_builtins(r: &mut Registry) {
    barrier::register(r);
    condition::register(r);
    dict::register(r);
    event::register(r);
    list::register(r);
    lock::register(r);
    namespace::register(r);
    queue::register(r);
    semaphore::register(r);
    value::register(r);
}

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use super::proxy::{decode_result as decode, encode_args as enc};
use super::{CallError, ManagerError, RemoteError};

/// Decodes a reply that is an optional encoded value.
fn opt<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, ManagerError> {
    match decode::<Option<Vec<u8>>>(bytes)? {
        Some(v) => decode(&v).map(Some),
        None => Ok(None),
    }
}

/// Decodes a reply that is a list of encoded values.
fn items<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, ManagerError> {
    decode::<Vec<Vec<u8>>>(bytes)?
        .iter()
        .map(|b| decode(b))
        .collect()
}

/// Encodes each value on its own, as the server stores them.
fn encode_all<'a, T: Serialize + 'a>(
    values: impl IntoIterator<Item = &'a T>,
) -> Result<Vec<Vec<u8>>, ManagerError> {
    values.into_iter().map(enc).collect()
}

/// The arguments of a method on the item at `index`.
fn at<T: Serialize>(index: usize, item: &T) -> Result<Vec<u8>, ManagerError> {
    enc(&(index as u64, enc(item)?))
}

/// The error of an index past the end of a sequence of `len` items.
fn out_of_range(index: u64, len: usize, what: &str) -> CallError {
    RemoteError::new(
        RemoteError::OUT_OF_RANGE,
        format!("index {index} is out of range for {what} of length {len}"),
    )
    .into()
}

/// The error of a wait whose deadline passed. A timed-out wait is an
/// error on the server, not a `false` result, so that the result of a
/// dropped call is only ever a success to undo.
fn timed_out(what: &str) -> CallError {
    RemoteError::new(RemoteError::TIMED_OUT, what.to_string()).into()
}

/// The client side of [`timed_out`]: `()` is true, `TIMED_OUT` false.
fn bool_or_timeout(r: Result<Vec<u8>, ManagerError>) -> Result<bool, ManagerError> {
    match r {
        Ok(bytes) => decode::<()>(&bytes).map(|()| true),
        Err(e) if e.is_remote(RemoteError::TIMED_OUT) => Ok(false),
        Err(e) => Err(e),
    }
}
