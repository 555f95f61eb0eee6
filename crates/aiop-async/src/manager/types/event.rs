//! (being written)

use crate::manager::Registry;

pub(super) fn register(_: &mut Registry) {}
