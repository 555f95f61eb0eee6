//! Shared state: plain data in shared memory, with Python's names:
//! [`Value`], [`Array`], their lock-free [`RawValue`] and [`RawArray`],
//! [`SharedMemory`] and [`ShareableList`].
//!
//! Each object has a segment of its own (the data first, then a small
//! header with the object's kind, element size and lock), so it costs one
//! descriptor; each can be created by name for programs that did not spawn
//! each other (see [`crate::named`]).
//!
//! # Relationship with Python multiprocessing
//!
//! | Python | aiop |
//! |---|---|
//! | `Value('d', 0.0)`, `.value`, `get_lock()` | [`Value::new`]`(0.0f64)`, [`Value::get`] / [`Value::set`] / [`Value::lock`], [`Value::get_lock`] |
//! | `Array('i', 10)`, `Array('i', [1, 2])` | [`Array::new`]`(10)`, [`Array::from_slice`] |
//! | `RawValue`, `RawArray` | [`RawValue`], [`RawArray`] |
//! | `shared_memory.SharedMemory(name, create, size)` | [`SharedMemory`] |
//! | `shared_memory.ShareableList(seq, name)` | [`ShareableList`] |

mod array;
mod data;
mod list;
mod memory;
mod value;

pub use array::{Array, ArrayGuard, RawArray};
pub use list::{Item, ShareableList, TooLongError};
pub use memory::SharedMemory;
pub use value::{RawValue, Value, ValueGuard};
