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

/// Encodes a proxy method's argument.
pub(crate) fn enc<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, super::ManagerError> {
    super::protocol::encode(value).map_err(|e| super::ManagerError::Encode(e.to_string()))
}
